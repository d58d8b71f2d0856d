#!/usr/bin/env python3
"""Measurement client of bench/rollout/run.sh (stdlib only; reuses bench/agents/rounds.py).

    change.py calibrate --url U --token T --config C --server-pid PID [--polls N]
        What one status poll (`GET /api/v1/configs/C/agents`) costs the registry in CPU: N polls
        back to back, the registry's CPU over them divided by N (and its CPU over an idle second
        before, for comparison). Prints one JSON object.

    change.py probe --url U --token T --digest HEX [--n N]
        Downloads one blob N times on one kept-alive connection, then N times on a new connection
        each, and prints each download's time: a small response that sometimes waits ~40 ms on a
        kept-alive connection but never on a new one (which starts in quick-ACK mode) points at a
        delayed acknowledgement meeting Nagle's algorithm on the sending side (Python's
        http.client sets TCP_NODELAY on its own side).

    change.py change --url U --token T --config C --n N --depot BIN --strategy all|rolling
                     --layer COMPONENT:VERSION... [--pids FILE] [--server-pid PID] [--poll-ms MS]
                     [--timeout S] [--busy-before PCT] [--noise-max PCT] [--label L] [--attempt K]
        One measured change: checks the configuration's strategy, reads the CPU counters, notes
        the time t0, runs `depot config set C LAYER...`, then polls the agents every --poll-ms
        until all N are `active` on the new revision (or one failed, or the deadline passed), reads
        the CPU counters again, and (rolling) reads `depot rollout status C --json`. Prints one
        JSON object with every host's times and, for a rolling change, each batch's.

Clocks: t0 (CLOCK_REALTIME just before `config set`), the agents' `reported_at`, the registry's
`last_seen` and the rollout's step times all come from this machine's clock. An agent "had the new
configuration" at `reported_at − timings_ms.total` of its `active` report (when its deploy cycle
began, right after its blocking query answered).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "agents"))
from benchlib import quantile  # noqa: E402
from rounds import Registry, cpu_seconds, kernel_threads_cpu, machine_busy, parse_time, settled  # noqa: E402


def log(msg):
    print(f"change.py: {msg}", file=sys.stderr, flush=True)


def ms(seconds):
    return round(seconds * 1000, 1)


def strategy_kind(config):
    s = config.get("strategy") or {"kind": "all"}
    return s.get("kind", "all"), s


def cmd_calibrate(a):
    reg = Registry(a.url, a.token)
    reg.agents(a.config)  # the connection open
    c0 = cpu_seconds(a.server_pid)
    time.sleep(1.0)
    idle = cpu_seconds(a.server_pid) - c0
    c0, t0 = cpu_seconds(a.server_pid), time.time()
    for _ in range(a.polls):
        reg.agents(a.config)
    c1, t1 = cpu_seconds(a.server_pid), time.time()
    print(json.dumps({
        "polls": a.polls,
        "seconds": round(t1 - t0, 3),
        "registry_cpu_s": round(c1 - c0, 3),
        "registry_cpu_per_poll_ms": round(1000 * (c1 - c0) / a.polls, 3),
        "registry_idle_cpu_per_s": round(idle, 3),
    }))


def cmd_probe(a):
    path = f"/api/v1/blobs/sha256:{a.digest}"
    kept = Registry(a.url, a.token)
    kept.get(path)  # the connection open
    keepalive = []
    for _ in range(a.n):
        t = time.perf_counter()
        body = kept.get(path)
        keepalive.append(ms(time.perf_counter() - t))
    fresh = []
    for _ in range(a.n):
        reg = Registry(a.url, a.token)
        t = time.perf_counter()
        reg.get(path)
        fresh.append(ms(time.perf_counter() - t))
        reg.conn.close()
    print(json.dumps({"bytes": len(body), "n": a.n, "keepalive_ms": keepalive, "fresh_ms": fresh}))


def batches_of(status, hosts, t0):
    """Each batch of a completed rollout: when it started (its step, registry time), when its
    hosts had the new configuration, when they reported active, the slowest agent's own time, and
    the handoff from the batch before (see the module's docstring)."""
    starts = {}
    for step in status.get("steps", []):
        text = step["summary"]
        at = ms(parse_time(step["at"]) - t0)
        if " began: " in text and "batch 1 started" in text:
            starts.setdefault(1, at)
        elif text.startswith("batch ") and " started: " in text:
            starts.setdefault(int(text.split()[1]), at)
    out = []
    prev = None
    for batch in status["batches"]:
        k = batch["number"]
        rows = [hosts[h["host"]] for h in batch["hosts"] if h["host"] in hosts]
        if not rows:
            out.append({"number": k, "hosts": 0})
            continue
        last = max(rows, key=lambda r: r["active_ms"])
        slowest = max(rows, key=lambda r: r["total_ms"])
        b = {
            "number": k,
            "hosts": len(rows),
            "step_ms": starts.get(k),
            "first_start_ms": min(r["start_ms"] for r in rows),
            "median_start_ms": statistics.median(r["start_ms"] for r in rows),
            "last_start_ms": max(r["start_ms"] for r in rows),
            "end_ms": last["active_ms"],
            "last_host": last["host"],
            "last_seen_ms": last["last_seen_ms"],
            "slowest_total_ms": slowest["total_ms"],
            "slowest_host": slowest["host"],
            "median_total_ms": statistics.median(r["total_ms"] for r in rows),
        }
        # The batch's own length from its first host's start, and what it holds beyond its
        # slowest agent's own time (its hosts did not all start at once, or the slowest was not
        # the last).
        b["from_first_start_ms"] = round(b["end_ms"] - b["first_start_ms"], 1)
        b["stagger_ms"] = round(b["end_ms"] - b["first_start_ms"] - b["slowest_total_ms"], 1)
        if b["step_ms"] is not None:
            b["from_step_ms"] = round(b["end_ms"] - b["step_ms"], 1)
        if prev is not None:
            # The handoff: from the last `active` report of the batch before to the first host of
            # this one having the new configuration, in three parts that add up to it.
            b["gap_ms"] = round(b["first_start_ms"] - prev["end_ms"], 1)
            b["gap_median_host_ms"] = round(b["median_start_ms"] - prev["end_ms"], 1)
            b["delivery_ms"] = round(prev["last_seen_ms"] - prev["end_ms"], 1)
            if b["step_ms"] is not None:
                b["step_after_report_ms"] = round(b["step_ms"] - prev["last_seen_ms"], 1)
                b["answer_ms"] = round(b["first_start_ms"] - b["step_ms"], 1)
        out.append(b)
        prev = b
    return out


def cmd_change(a):
    reg = Registry(a.url, a.token)
    pids = []
    if a.pids:
        with open(a.pids) as f:
            pids = [int(x) for x in f.read().split()]
    config = reg.config(a.config)
    kind, strategy = strategy_kind(config)
    if kind != a.strategy:
        log(f"configuration {a.config} has strategy {kind}, not {a.strategy}")
        sys.exit(1)
    before_rev = config["revision"]
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
    others_user = max(0.0, (busy1 - busy0) - agents_cpu - server_cpu - own - kthreads)
    noisy = others_user > max(0.05, a.noise_max / 100 * (total1 - total0))

    hosts = {}
    for x in active:
        at = parse_time(x["reported_at"]) - t0
        t = x.get("timings_ms", {})
        total = t.get("total")
        if total is None:
            continue
        hosts[x["host"]] = {
            "host": x["host"],
            "active_ms": ms(at),
            "total_ms": total,
            "start_ms": round(ms(at) - total, 1),
            "download_ms": t.get("download"),
            "deploy_ms": t.get("deploy"),
            "last_seen_ms": ms(parse_time(x["last_seen"]) - t0),
        }
    rows = sorted(hosts.values(), key=lambda r: r["host"])
    out = {
        "label": a.label,
        "attempt": a.attempt,
        "strategy": a.strategy,
        "strategy_detail": strategy,
        "n": a.n,
        "layers": a.layer,
        "revision": revision,
        "outcome": outcome,
        "active": len(active),
        "t0": t0,
        "config_set_ms": ms(t_set - t0),
        "all_active_ms": max(r["active_ms"] for r in rows) if rows and outcome == "all-active" else None,
        "seen_ms": ms(seen - t0) if seen else None,
        "polls": polls,
        "first_start_ms": min(r["start_ms"] for r in rows) if rows else None,
        "median_start_ms": statistics.median(r["start_ms"] for r in rows) if rows else None,
        "slowest_total_ms": max(r["total_ms"] for r in rows) if rows else None,
        "median_total_ms": statistics.median(r["total_ms"] for r in rows) if rows else None,
        "p90_total_ms": quantile([r["total_ms"] for r in rows], 0.9) if rows else None,
        "delivery_ms": {  # registry's last_seen − the agent's reported_at, over the hosts
            "median": statistics.median(r["last_seen_ms"] - r["active_ms"] for r in rows) if rows else None,
            "max": max(r["last_seen_ms"] - r["active_ms"] for r in rows) if rows else None,
        },
        "busy_before": a.busy_before,
        "agents_cpu_s": round(agents_cpu, 3),
        "server_cpu_s": round(server_cpu, 3),
        "client_cpu_s": round(own, 3),
        "machine_busy_s": round(busy1 - busy0, 3),
        "kernel_threads_cpu_s": round(kthreads, 3),
        "others_user_cpu_s": round(others_user, 3),
        "noisy": noisy,
        "machine_total_s": round(total1 - total0, 3),
        "steal_s": round(steal1 - steal0, 3),
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "hosts": rows,
    }
    if a.strategy == "rolling":
        # After the measured window: the rollout as the registry recorded it.
        st = subprocess.run([a.depot, "rollout", "status", a.config, "--json"], env=env,
                            capture_output=True, timeout=60)
        if st.returncode != 0:
            log(f"depot rollout status failed: {st.stderr.decode(errors='replace')}")
            sys.exit(1)
        status = json.loads(st.stdout)
        out["rollout"] = {
            "from": status["from"],
            "to": status["to"],
            "phase": status["phase"],
            "started_batches": status["started_batches"],
            "batch_sizes": [len(b["hosts"]) for b in status["batches"]],
            "steps": [{"at_ms": ms(parse_time(s["at"]) - t0), "actor": s["actor"], "summary": s["summary"][:120]}
                      for s in status.get("steps", [])],
        }
        if status["to"] != revision:
            log(f"the rollout is of revision {status['to']}, not {revision}")
            outcome = out["outcome"] = f"rollout of revision {status['to']}, not {revision}"
        elif status["phase"] != "completed":
            out["outcome"] = f"rollout {status['phase']} with all agents active"
        out["batches"] = batches_of(status, hosts, t0)
    print(json.dumps(out))
    if out["outcome"] != "all-active":
        sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calibrate")
    pr = sub.add_parser("probe")
    ch = sub.add_parser("change")
    for p in (c, pr, ch):
        p.add_argument("--url", required=True)
        p.add_argument("--token", required=True)
    for p in (c, ch):
        p.add_argument("--config", required=True)
    c.add_argument("--server-pid", type=int, required=True)
    c.add_argument("--polls", type=int, default=300)
    pr.add_argument("--digest", required=True)
    pr.add_argument("--n", type=int, default=50)
    ch.add_argument("--n", type=int, required=True)
    ch.add_argument("--depot", required=True)
    ch.add_argument("--strategy", choices=("all", "rolling"), required=True)
    ch.add_argument("--layer", action="append", required=True)
    ch.add_argument("--label", default="")
    ch.add_argument("--attempt", type=int, default=0)
    ch.add_argument("--pids")
    ch.add_argument("--server-pid", type=int)
    ch.add_argument("--poll-ms", type=float, default=100)
    ch.add_argument("--timeout", type=float, default=180)
    ch.add_argument("--busy-before", type=int)
    ch.add_argument("--noise-max", type=float, default=10)
    a = ap.parse_args()
    {"calibrate": cmd_calibrate, "probe": cmd_probe, "change": cmd_change}[a.cmd](a)


if __name__ == "__main__":
    main()
