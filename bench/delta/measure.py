#!/usr/bin/env python3
"""One measurement of bench/delta/run.sh: one timed `depot agent --once` on a release root, and
what crossed the network meanwhile (stdlib only).

    measure.py --depot BIN --url URL --registry URL --admin-token T --agent-token T --root ROOT
               --name HOST --network NAME --kind full|delta --round N [--stats URL] [...]

Prints one JSON line: the agent's wall time (the whole process) and CPU, its outcome, the blob
bytes the registry sent (its `depot_blob_sent_bytes_total`), the bytes the proxy forwarded
(--stats: throttle.py's counters), the agent's "fetched X of Y frames (B of S bytes)" line, its
own download and deploy timings (as reported to the registry), and the CPU of the registry, the
proxy and every other process meanwhile (noisy: the others used more than --noise-max % of the
machine in user space), and the size of the agent's blob cache before and after. Exits 1 when the agent did not activate the configuration.
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
import urllib.request

FETCHED = re.compile(r"layer (sha256:[0-9a-f]+): fetched (\d+) of (\d+) frames \((\d+) of (\d+) bytes\)")


def get(url, token=None, timeout=10):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def blob_sent(registry):
    for line in get(f"{registry}/metrics").decode().splitlines():
        if line.startswith("depot_blob_sent_bytes_total"):
            return int(float(line.split()[-1]))
    sys.exit("measure.py: the registry has no depot_blob_sent_bytes_total metric")


def cpu_s(pid, user_only=False):
    """User + system (or user) CPU seconds of a process (/proc/PID/stat); None when it is gone."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + (0 if user_only else int(fields[12]))) / os.sysconf("SC_CLK_TCK")


def machine_s():
    """CPU seconds the whole machine has been busy (/proc/stat: all but idle and iowait), and of
    them in user space (user and nice)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    hz = os.sysconf("SC_CLK_TCK")
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz, (v[0] + v[1]) / hz


def dir_bytes(path):
    """Bytes of the regular files right inside `path` (the agent's blob cache); 0 when missing."""
    try:
        return sum(e.stat().st_size for e in os.scandir(path) if e.is_file(follow_symlinks=False))
    except OSError:
        return 0


def delta(after, before):
    return None if after is None or before is None else round(after - before, 3)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depot", required=True)
    p.add_argument("--url", required=True, help="the registry URL the agent is given (the proxy's when capped)")
    p.add_argument("--registry", required=True, help="the registry's own URL (metrics, status)")
    p.add_argument("--admin-token", required=True)
    p.add_argument("--agent-token", required=True)
    p.add_argument("--config", default="web-prod")
    p.add_argument("--root", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--settings", required=True, help="the agent's (empty) settings file")
    p.add_argument("--stderr", required=True, help="where the agent's stderr goes")
    p.add_argument("--stats", help="throttle.py's stats URL")
    p.add_argument("--network", required=True)
    p.add_argument("--kind", required=True, choices=("full", "delta"))
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--attempt", type=int, default=0)
    p.add_argument("--noise-max", type=float, default=10,
                   help="noisy: other processes used more than this % of the machine, in user space, while the agent ran")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--server-pid", type=int)
    p.add_argument("--proxy-pid", type=int)
    p.add_argument("--busy-before", type=int, help="the rest of the machine, % of a core, just before")
    a = p.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPOT_")}
    env.update(DEPOT_REGISTRY=a.url, DEPOT_TOKEN=a.agent_token, DEPOT_AGENT_SETTINGS=a.settings)
    cmd = [a.depot, "agent", "--config", a.config, "--name", a.name, "--once", "--root", a.root, "--json"]

    cache = os.path.join(a.root, ".depot", "agent", "blobs")
    cache0 = dir_bytes(cache)
    sent0 = blob_sent(a.registry)
    proxy0 = json.loads(get(a.stats)) if a.stats else None
    server0, proxy_cpu0 = cpu_s(a.server_pid), cpu_s(a.proxy_pid)
    server_user0, proxy_user0 = cpu_s(a.server_pid, True), cpu_s(a.proxy_pid, True)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, user0 = machine_s()
    with open(a.stderr, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err)
        try:
            out, _ = proc.communicate(timeout=a.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            timed_out = True
        t1 = time.monotonic()
    busy1, user1 = machine_s()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server1, proxy_cpu1 = cpu_s(a.server_pid), cpu_s(a.proxy_pid)
    server_user1, proxy_user1 = cpu_s(a.server_pid, True), cpu_s(a.proxy_pid, True)
    proxy1 = json.loads(get(a.stats)) if a.stats else None
    sent1 = blob_sent(a.registry)
    cache1 = dir_bytes(cache)

    try:
        once = json.loads(out)
    except ValueError:
        once = {}
    stderr = open(a.stderr, errors="replace").read()
    m = FETCHED.search(stderr)
    fetched = None
    if m:
        fetched = {"layer": m[1], "frames": int(m[2]), "of_frames": int(m[3]), "bytes": int(m[4]),
                   "of_bytes": int(m[5]), "line": m[0]}

    # The agent's own timings, as it reported them (depot status CONFIG --json).
    timings = None
    try:
        for agent in json.loads(get(f"{a.registry}/api/v1/configs/{a.config}/agents", a.admin_token)):
            if agent.get("host") == a.name:
                timings = agent.get("timings_ms")
    except (OSError, ValueError):
        pass

    agent_cpu = children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime
    ours = agent_cpu + (delta(server1, server0) or 0) + (delta(proxy_cpu1, proxy_cpu0) or 0)
    others = max(0.0, busy1 - busy0 - ours)
    # In user space only: the kernel's share, writeback of the agent's own writes above all, is
    # left out (a full deploy writes a whole tree).
    ours_user = (children1.ru_utime - children0.ru_utime + (delta(server_user1, server_user0) or 0)
                 + (delta(proxy_user1, proxy_user0) or 0))
    others_user = max(0.0, user1 - user0 - ours_user)
    row = {
        "network": a.network,
        "kind": a.kind,
        "round": a.round,
        "attempt": a.attempt,
        "host": a.name,
        "wall_s": round(t1 - t0, 3),
        "exit": None if timed_out else proc.returncode,
        "timed_out": timed_out,
        "outcome": once.get("outcome"),
        "blob_bytes": sent1 - sent0,
        "proxy": None if proxy0 is None else {k: proxy1[k] - proxy0[k] for k in ("up", "down", "connections", "requests")},
        "fetched": fetched,
        # The agent's cache of whole archives (.depot/agent/blobs), before and after.
        "blob_cache_before": cache0,
        "blob_cache_after": cache1,
        "timings_ms": timings,
        "agent_cpu_s": round(agent_cpu, 3),
        "server_cpu_s": delta(server1, server0),
        "proxy_cpu_s": delta(proxy_cpu1, proxy_cpu0),
        # Everything else the machine ran meanwhile, kernel threads included (writeback of the
        # agent's own writes among them).
        "others_cpu_s": round(others, 3),
        "others_user_cpu_s": round(others_user, 3),
        "noisy": others_user > a.noise_max / 100 * (t1 - t0) * len(os.sched_getaffinity(0)),
        "busy_before": a.busy_before,
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }
    print(json.dumps(row))
    sys.exit(0 if row["outcome"] == "activated" and row["exit"] == 0 else 1)


if __name__ == "__main__":
    main()
