#!/usr/bin/env python3
"""Seeds a fresh registry for bench/dashboard/run.sh (stdlib only; the CLI for pushes, pipelines
and configurations, the HTTP API for the agents' reports).

    seed.py --url U --token T --depot BIN --work DIR [--pipelines 50] [--standalone 50]
            [--agents-per-config 10] [--threads 4] [--seed 19]

- components c01 … cNN (one per pipeline; the standalone configuration xK uses component cK too),
  each pushed as 1.0.0 (a directory of one small file);
- pipelines p01 … pNN: `depot pipeline create pK --component cK --stage dev --stage staging
  --stage prod`, so configurations pK-dev, pK-staging, pK-prod;
- standalone configurations x01 … xNN: `depot config create xK --layer cK:1.0.0`;
- then every component pushed again as 1.1.0, which takes each pipeline's first stage to revision
  2 by itself (it tracks `latest`), and `depot config set xK cK:1.1.0` (revision 2), so that some
  agents can be behind, on revision 1;
- AGENTS-PER-CONFIG agents per configuration, hosts CONFIG-01 …, each one report
  (`PUT /api/v1/configs/C/agents/H` with the admin token): a fixed pseudo-random mix (seeded) of
  active on the current revision, failed on it (with an error and an output tail), deploying the
  current revision, and, on configurations at revision 2, deploying or still active on revision 1.

Prints one JSON object: the names, the expected health totals (as the dashboard counts them:
failed = failed/rolled-back/untrusted; active = active on the current hash; the rest behind) and
how long each step took.
"""
import argparse
import concurrent.futures as cf
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

STAGES = ("dev", "staging", "prod")


def log(msg):
    print(f"seed.py: {msg}", file=sys.stderr, flush=True)


class Api:
    """One kept-alive connection per thread."""

    def __init__(self, url, token):
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.token = u.hostname, u.port or 80, token
        self.local = threading.local()

    def call(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                conn.request(method, path, body=data, headers=headers)
                r = conn.getresponse()
                out = r.read()
            except (http.client.HTTPException, OSError):
                self.local.conn = None
                if attempt:
                    raise
                continue
            if r.status >= 300:
                raise RuntimeError(f"{method} {path}: HTTP {r.status}: {out[:300]!r}")
            return json.loads(out) if out else None
        raise AssertionError("unreachable")


def run_cli(depot, env, args):
    p = subprocess.run([depot, *args], env=env, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"depot {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()[:500]}")
    return p.stdout


def parallel(threads, fn, items):
    with cf.ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(fn, items):
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--depot", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--pipelines", type=int, default=50)
    ap.add_argument("--standalone", type=int, default=50)
    ap.add_argument("--agents-per-config", type=int, default=10)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seed", type=int, default=19)
    a = ap.parse_args()

    env = dict(os.environ, DEPOT_REGISTRY=a.url, DEPOT_TOKEN=a.token)
    api = Api(a.url, a.token)
    width = max(2, len(str(max(a.pipelines, a.standalone))))
    n_components = max(a.pipelines, a.standalone)
    comps = [f"c{i:0{width}d}" for i in range(1, n_components + 1)]
    pipes = [f"p{i:0{width}d}" for i in range(1, a.pipelines + 1)]
    alone = [f"x{i:0{width}d}" for i in range(1, a.standalone + 1)]
    steps = {}

    # Two tiny trees (one file each), the same for every component.
    trees = {}
    for version in ("1.0.0", "1.1.0"):
        d = os.path.join(a.work, "trees", version)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "app.txt"), "w") as f:
            f.write(f"app {version}\n")
        trees[version] = d

    def step(name, fn, items):
        t0 = time.perf_counter()
        parallel(a.threads, fn, items)
        steps[name] = {"items": len(items), "s": round(time.perf_counter() - t0, 2)}
        log(f"{name}: {len(items)} in {steps[name]['s']} s")

    step("push 1.0.0", lambda c: run_cli(a.depot, env, ["push", c, "1.0.0", trees["1.0.0"]]), comps)
    step("pipeline create", lambda i: run_cli(
        a.depot, env, ["pipeline", "create", pipes[i], "--component", comps[i]]
        + [x for s in STAGES for x in ("--stage", s)]), list(range(a.pipelines)))
    step("config create", lambda i: run_cli(
        a.depot, env, ["config", "create", alone[i], "--layer", f"{comps[i]}:1.0.0"]), list(range(a.standalone)))
    step("push 1.1.0", lambda c: run_cli(a.depot, env, ["push", c, "1.1.0", trees["1.1.0"]]), comps)
    step("config set", lambda i: run_cli(
        a.depot, env, ["config", "set", alone[i], f"{comps[i]}:1.1.0"]), list(range(a.standalone)))

    # What the registry has now: every configuration's revision and hash, and revision 1's hash.
    t0 = time.perf_counter()
    listed = {c["name"]: c for c in api.call("GET", "/api/v1/configs")}
    staged = [f"{p}-{s}" for p in pipes for s in STAGES]
    configs = staged + alone
    missing = [c for c in configs if c not in listed]
    if missing:
        raise SystemExit(f"seed.py: configurations missing after seeding: {missing[:5]}")
    first_hash = {}
    for name in configs:
        if listed[name]["revision"] >= 2:
            for entry in api.call("GET", f"/api/v1/configs/{name}/history"):
                if entry["revision"] == listed[name]["revision"] - 1:
                    first_hash[name] = entry["hash"]
    steps["read configurations"] = {"items": len(configs), "s": round(time.perf_counter() - t0, 2)}
    revisions = {}
    for name in configs:
        revisions[listed[name]["revision"]] = revisions.get(listed[name]["revision"], 0) + 1

    # The reports: a fixed mix, the same for every run with the same --seed.
    rng = random.Random(a.seed)
    now = datetime.now(timezone.utc)
    reports = []
    expect = {"agents": 0, "active": 0, "failed": 0, "behind": 0}
    mix = {}
    for name in configs:
        cur = listed[name]
        old = first_hash.get(name)
        for k in range(1, a.agents_per_config + 1):
            r = rng.random()
            at = now - timedelta(seconds=rng.uniform(5, 3600))
            timings = {"download": rng.randint(20, 900), "unpack": rng.randint(5, 300),
                       "hooks": rng.randint(0, 2000), "health": rng.randint(0, 500)}
            timings["total"] = sum(timings.values())
            body = {"revision": cur["revision"], "hash": cur["hash"], "state": "active",
                    "reported_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "timings_ms": timings}
            if r < 0.05:
                kind = "failed on the current revision"
                body["state"] = "failed"
                body["error"] = "health check failed: `curl -fsS http://127.0.0.1:8080/health` exited with status 7"
                body["output_tail"] = "".join(f"[post-activate] line {j}: restarting worker {j}\n" for j in range(12))
                expect["failed"] += 1
            elif r < 0.12 and old is not None:
                kind = "deploying, from revision 1"
                body.update(revision=cur["revision"] - 1, hash=old, state="deploying")
                expect["behind"] += 1
            elif r < 0.15 and old is not None:
                kind = "active on revision 1 (behind)"
                body.update(revision=cur["revision"] - 1, hash=old)
                expect["behind"] += 1
            elif r < 0.15:
                kind = "downloading the current revision"
                body["state"] = "downloading"
                expect["behind"] += 1
            else:
                kind = "active on the current revision"
                expect["active"] += 1
            expect["agents"] += 1
            mix[kind] = mix.get(kind, 0) + 1
            reports.append((name, f"{name}-{k:02d}", body))

    def report(item):
        name, host, body = item
        api.call("PUT", f"/api/v1/configs/{name}/agents/{host}", body)

    step("agent reports", report, reports)
    print(json.dumps({
        "pipelines": pipes, "standalone": alone, "stages": list(STAGES), "components": len(comps),
        "configurations": len(configs), "stage_configurations": len(staged),
        "agents_per_config": a.agents_per_config, "revisions": revisions,
        "expect": expect, "mix": mix, "seed": a.seed, "steps": steps,
    }))


if __name__ == "__main__":
    main()
