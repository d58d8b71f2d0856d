#!/usr/bin/env python3
"""Measurement client of bench/agents/run.sh (stdlib only).

    rounds.py wait  --url U --token T --config C --n N [--timeout S]
        Waits until N agents report `active` on the configuration's current revision; prints one
        JSON object (how long it took, the agents' timings).

    rounds.py round --url U --token T --config C --n N --depot BIN --layer COMPONENT:VERSION...
                    [--pids FILE] [--server-pid PID] [--poll-ms MS] [--timeout S]
        One measured change: reads the registry's /metrics and the CPU counters, notes the time,
        runs `depot config set C LAYER...`, then polls `GET /api/v1/configs/C/agents` (what
        `depot status C --json` prints) every --poll-ms until all N agents are `active` on the new
        revision, or one has failed, or the deadline passes. Prints one JSON object.

Times: `t0` is CLOCK_REALTIME just before `depot config set` starts. An agent's time is the
`reported_at` of its `active` report (the agent's own clock, the same machine's) minus t0; the
round's time-to-all-active is the largest. `seen_ms` is when the poll first saw them all (a
cross-check, late by up to one poll interval plus a request). Every wait has a deadline.
"""
import argparse
import calendar
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchlib import quantile  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"rounds.py: {msg}", file=sys.stderr, flush=True)


def parse_time(text):
    """RFC 3339 (UTC, `Z` or `+00:00`, up to nanoseconds) in seconds since the epoch."""
    text = text.replace("+00:00", "Z")
    if not text.endswith("Z"):
        raise ValueError(f"not a UTC time: {text}")
    body = text[:-1]
    whole, _, frac = body.partition(".")
    secs = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return secs + (int(frac) / 10 ** len(frac) if frac else 0.0)


class Registry:
    def __init__(self, url, token):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.token = token
        self.conn = None

    def get(self, path, auth=True):
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
                self.conn.request("GET", path, headers=headers)
                r = self.conn.getresponse()
                body = r.read()
                if r.status != 200:
                    raise RuntimeError(f"GET {path}: HTTP {r.status}: {body[:200]!r}")
                return body
            except (http.client.HTTPException, OSError):
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def agents(self, config):
        return json.loads(self.get(f"/api/v1/configs/{config}/agents"))

    def config(self, config):
        return json.loads(self.get(f"/api/v1/configs/{config}"))

    def metric(self, name):
        for line in self.get("/metrics", auth=False).decode().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in (name, name + "_total"):
                return float(parts[1])
        raise RuntimeError(f"/metrics has no {name}")


def cpu_seconds(pid):
    """User + system CPU of a process (all its threads), in seconds; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


PF_KTHREAD = 0x00200000


def kernel_threads_cpu():
    """CPU seconds used so far by all kernel threads (writeback, softirq, ...): long-lived, so a
    difference of two readings is what they used in between."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[6]) & PF_KTHREAD:
                total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / CLK_TCK


def machine_busy():
    """Busy and total CPU seconds of the whole machine (/proc/stat), and steal."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return busy / CLK_TCK, (busy + v[3] + v[4]) / CLK_TCK, v[7] / CLK_TCK if len(v) > 7 else 0.0


def settled(agents, revision, n):
    """(done, active, failed): done when n agents are active on `revision`."""
    active = [a for a in agents if a["revision"] == revision and a["state"] == "active" and a.get("current")]
    failed = [a for a in agents if a["revision"] == revision and a["state"] in ("failed", "rolled-back", "rolled_back")]
    return len(active) >= n, active, failed


def summarize_timings(active):
    out = {}
    keys = sorted({k for a in active for k in a.get("timings_ms", {})})
    for k in keys:
        xs = [a["timings_ms"][k] for a in active if k in a.get("timings_ms", {})]
        out[k] = {"median": statistics.median(xs), "p90": quantile(xs, 0.9), "max": max(xs)}
    return out


def cmd_wait(a):
    reg = Registry(a.url, a.token)
    start = time.time()
    deadline = start + a.timeout
    revision = reg.config(a.config)["revision"]
    last_log = start
    while True:
        agents = reg.agents(a.config)
        done, active, failed = settled(agents, revision, a.n)
        if done:
            break
        if failed:
            log(f"{len(failed)} agents failed: {failed[0].get('error')}")
            sys.exit(1)
        now = time.time()
        if now > deadline:
            states = {}
            for x in agents:
                states[f"{x['state']}@{x['revision']}"] = states.get(f"{x['state']}@{x['revision']}", 0) + 1
            log(f"timeout after {a.timeout} s: {len(active)} of {a.n} active on revision {revision}; {states}")
            sys.exit(1)
        if now - last_log > 15:
            log(f"{len(active)} of {a.n} agents active on revision {revision} after {now - start:.0f} s")
            last_log = now
        time.sleep(0.2)
    print(json.dumps({"n": a.n, "revision": revision, "seconds": round(time.time() - start, 3),
                      "timings_ms": summarize_timings(active)}))


def cmd_round(a):
    reg = Registry(a.url, a.token)
    pids = []
    if a.pids:
        with open(a.pids) as f:
            pids = [int(x) for x in f.read().split()]
    before_rev = reg.config(a.config)["revision"]
    bytes0 = reg.metric("depot_blob_sent_bytes")
    agents_cpu0 = sum(cpu_seconds(p) for p in pids)
    server_cpu0 = cpu_seconds(a.server_pid) if a.server_pid else 0.0
    kthreads0 = kernel_threads_cpu()
    busy0, total0, steal0 = machine_busy()
    self0 = os.times()
    env = dict(os.environ, DEPOT_REGISTRY=a.url, DEPOT_TOKEN=a.token)

    t0 = time.time()
    p = subprocess.run([a.depot, "config", "set", a.config, *a.layer, "--json"], env=env,
                       capture_output=True, timeout=60)
    t_set = time.time()
    if p.returncode != 0:
        log(f"depot config set failed: {p.stderr.decode(errors='replace')}")
        sys.exit(1)
    revision = json.loads(p.stdout)["revision"]
    if revision <= before_rev:
        log(f"depot config set did not make a new revision ({before_rev} -> {revision})")
        sys.exit(1)

    deadline = t0 + a.timeout
    polls = 0
    seen = None
    outcome = "all-active"
    while True:
        agents = reg.agents(a.config)
        polls += 1
        now = time.time()
        done, active, failed = settled(agents, revision, a.n)
        if done:
            seen = now
            break
        if failed:
            outcome = f"{len(failed)} failed: {failed[0].get('error', '')[:300]}"
            break
        if now > deadline:
            outcome = f"timeout after {a.timeout} s: {len(active)} of {a.n} active"
            break
        time.sleep(a.poll_ms / 1000)

    busy1, total1, steal1 = machine_busy()
    kthreads = kernel_threads_cpu() - kthreads0
    agents_cpu = sum(cpu_seconds(p) for p in pids) - agents_cpu0
    server_cpu = (cpu_seconds(a.server_pid) - server_cpu0) if a.server_pid else 0.0
    self1 = os.times()
    own = (self1.user - self0.user) + (self1.system - self0.system) \
        + (self1.children_user - self0.children_user) + (self1.children_system - self0.children_system)
    bytes_out = reg.metric("depot_blob_sent_bytes") - bytes0
    others_user = max(0.0, (busy1 - busy0) - agents_cpu - server_cpu - own - kthreads)
    noisy = others_user > max(0.05, a.noise_max / 100 * (total1 - total0))

    per_host = {}
    starts = {}
    for x in active:
        at = parse_time(x["reported_at"])
        per_host[x["host"]] = (at - t0) * 1000
        total = x.get("timings_ms", {}).get("total")
        if total is not None:
            # When the agent began its cycle: it had the new configuration then.
            starts[x["host"]] = (at - t0) * 1000 - total
    times = sorted(per_host.values())
    out = {
        "n": a.n,
        "round": a.round,
        "attempt": a.attempt,
        "layers": a.layer,
        "revision": revision,
        "outcome": outcome,
        "active": len(active),
        "config_set_ms": round((t_set - t0) * 1000, 1),
        "all_active_ms": round(times[-1], 1) if times and outcome == "all-active" else None,
        "first_active_ms": round(times[0], 1) if times else None,
        "median_host_ms": round(statistics.median(times), 1) if times else None,
        "seen_ms": round((seen - t0) * 1000, 1) if seen else None,
        "polls": polls,
        "cycle_start_ms": {  # when the agents had the new configuration (reported_at - total - t0)
            "median": round(statistics.median(starts.values()), 1) if starts else None,
            "max": round(max(starts.values()), 1) if starts else None,
        },
        "timings_ms": summarize_timings(active),
        "bytes_out": int(bytes_out),
        "bytes_per_agent": bytes_out / a.n,
        "expect_bytes_per_agent": a.expect_bytes,
        "busy_before": a.busy_before,
        "agents_cpu_s": round(agents_cpu, 3),
        "server_cpu_s": round(server_cpu, 3),
        "client_cpu_s": round(own, 3),
        "machine_busy_s": round(busy1 - busy0, 3),
        # What the rest of the machine used meanwhile (kernel threads included: writeback for the
        # agents' writes counts here).
        "others_cpu_s": round(max(0.0, (busy1 - busy0) - agents_cpu - server_cpu - own), 3),
        "kernel_threads_cpu_s": round(kthreads, 3),
        # Other user processes: what is left once the benchmark's processes and the kernel threads
        # are taken out. A change during which they used more than --noise-max % of the machine is
        # `noisy` (run.sh repeats it, a bounded number of times).
        "others_user_cpu_s": round(others_user, 3),
        "noisy": noisy,
        "machine_total_s": round(total1 - total0, 3),
        "steal_s": round(steal1 - steal0, 3),
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "per_host_ms": {h: round(v, 1) for h, v in sorted(per_host.items())},
    }
    print(json.dumps(out))
    if outcome != "all-active":
        sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("wait", "round"):
        p = sub.add_parser(name)
        p.add_argument("--url", required=True)
        p.add_argument("--token", required=True)
        p.add_argument("--config", required=True)
        p.add_argument("--n", type=int, required=True)
        p.add_argument("--timeout", type=float, default=300)
    r = sub.choices["round"]
    r.add_argument("--depot", required=True)
    r.add_argument("--layer", action="append", required=True)
    r.add_argument("--round", type=int, default=0)
    r.add_argument("--attempt", type=int, default=0)
    r.add_argument("--noise-max", type=float, default=10,
                   help="%% of the machine's CPU other user processes may use before the change counts as noisy")
    r.add_argument("--pids")
    r.add_argument("--server-pid", type=int)
    r.add_argument("--poll-ms", type=float, default=25)
    r.add_argument("--expect-bytes", type=int, help="the size of the changed layer's archive (recorded)")
    r.add_argument("--busy-before", type=int, help="%% of a core the machine used just before (recorded)")
    a = ap.parse_args()
    {"wait": cmd_wait, "round": cmd_round}[a.cmd](a)


if __name__ == "__main__":
    main()
