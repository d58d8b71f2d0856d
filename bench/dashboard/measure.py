#!/usr/bin/env python3
"""Measurement client of bench/dashboard/run.sh (stdlib only).

    measure.py --url U --token T --seed SEED.json --server-pid PID --out DIR
               [--requests 50] [--warmup 5]

Signs in to the dashboard as a browser does (GET /ui/sign-in for the nonce and its cookie, POST
the form, keep the `depot_session` cookie), then, WARMUP + REQUESTS times, alternating which goes
first:

- page: one `GET /ui/` on a kept-alive connection, checked (status 200, HTML, one `data-stage=`
  per stage, one `data-config=` row per standalone configuration, every pipeline's heading, and
  the agents' counts equal to what seed.py reported: never a redirect to the sign-in page);
- api: the JSON calls a client makes for the same information, on another kept-alive connection,
  one after the other: `GET /api/v1/pipelines` and `GET /api/v1/configs` (the names; the page
  reads both lists too), `GET /api/v1/pipelines/{name}` for each pipeline and
  `GET /api/v1/configs/{name}/agents` for each configuration that is not a pipeline's stage,
  checked against the same counts.

Each sample: wall time from sending the first request to reading the last byte (the page's time to
its first byte too), the registry's CPU over it (sum of its threads' run time, schedstat), bytes.
The registry's own request-duration histogram (`/metrics`) is read before and after the loop.
Writes DIR/page.jsonl, DIR/api.jsonl, DIR/calls.jsonl, DIR/measure.json and DIR/overview.html.
"""
import argparse
import glob
import http.client
import json
import os
import re
import sys
import time
import urllib.parse

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"measure.py: {msg}", file=sys.stderr, flush=True)


class Conn:
    """A kept-alive HTTP/1.1 connection; every request timed to its first and last byte."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port or 80
        self.conn = None
        self.reconnects = -1

    def request(self, method, path, headers=None, body=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self.conn.connect()  # not timed
                self.reconnects += 1
            try:
                t0 = time.perf_counter()
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                t1 = time.perf_counter()
                data = r.read()
                t2 = time.perf_counter()
            except (http.client.HTTPException, OSError):
                self.conn = None
                if attempt:
                    raise
                continue
            if r.getheader("Connection", "").lower() == "close":
                self.conn = None
            return r, data, (t1 - t0) * 1000, (t2 - t0) * 1000
        raise AssertionError("unreachable")


def server_cpu_ns(pid):
    """CPU time of every thread of `pid` (schedstat: nanoseconds), or utime + stime when the kernel
    has no schedstat; (ns, source)."""
    total, n = 0, 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
                n += 1
        except (OSError, ValueError, IndexError):
            continue
    if n:
        return total, "schedstat"
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK, "stat"


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK, (sum(v[:8])) / CLK_TCK, v[7] / CLK_TCK


# Greedy: a route template has braces of its own (`route="/api/v1/pipelines/{name}"`).
METRIC = re.compile(r'^depot_http_request_duration_seconds_(sum|count)\{(.*)\}\s+(\S+)$')


def durations(conn):
    """The registry's request-duration histogram: {(method, route): {"sum": s, "count": n}}."""
    r, data, _, _ = conn.request("GET", "/metrics")
    if r.status != 200:
        raise SystemExit(f"measure.py: /metrics: HTTP {r.status}")
    out = {}
    for line in data.decode().splitlines():
        m = METRIC.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        key = (labels.get("method"), labels.get("route"))
        out.setdefault(key, {})[m.group(1)] = float(m.group(3))
    return out


def sign_in(conn, token):
    r, data, _, _ = conn.request("GET", "/ui/sign-in")
    if r.status != 200:
        raise SystemExit(f"measure.py: GET /ui/sign-in: HTTP {r.status}")
    m = re.search(r'name="nonce" value="([^"]+)"', data.decode())
    cookies = dict(c.split(";", 1)[0].split("=", 1) for c in r.headers.get_all("Set-Cookie") or [])
    if not m or "depot_sign_in" not in cookies:
        raise SystemExit("measure.py: the sign-in page gave no nonce or no depot_sign_in cookie")
    form = urllib.parse.urlencode({"token": token, "nonce": m.group(1), "next": "/ui/"})
    r, data, _, _ = conn.request("POST", "/ui/sign-in", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"depot_sign_in={cookies['depot_sign_in']}"})
    cookies = dict(c.split(";", 1)[0].split("=", 1) for c in r.headers.get_all("Set-Cookie") or [])
    if r.status not in (302, 303) or not cookies.get("depot_session"):
        raise SystemExit(f"measure.py: signing in: HTTP {r.status}, no session cookie: {data[:300]!r}")
    if r.getheader("Location") != "/ui/":
        raise SystemExit(f"measure.py: signing in sent to {r.getheader('Location')!r}, not /ui/")
    return cookies["depot_session"]


def check_page(r, body, seed):
    """Problems with an overview page (empty: it is the whole overview)."""
    problems = []
    if r.status != 200:
        return [f"HTTP {r.status} (Location: {r.getheader('Location')})"]
    if not (r.getheader("Content-Type") or "").startswith("text/html"):
        problems.append(f"Content-Type {r.getheader('Content-Type')}")
    text = body.decode("utf-8", "replace")
    if "Sign in to depot" in text:
        problems.append("the sign-in page")
    stages = len(seed["pipelines"]) * len(seed["stages"])
    if text.count("data-stage=") != stages:
        problems.append(f"{text.count('data-stage=')} data-stage= (want {stages})")
    if text.count("data-config=") != len(seed["standalone"]):
        problems.append(f"{text.count('data-config=')} data-config= (want {len(seed['standalone'])})")
    missing = [p for p in seed["pipelines"] if f'id="p-{p}"' not in text]
    if missing:
        problems.append(f"pipelines missing: {missing[:3]}")
    got = page_health(text)
    if got != seed["expect"]:
        problems.append(f"agents counted {got}, seeded {seed['expect']}")
    return problems


def page_health(text):
    counts = {"agents": 0, "active": 0, "failed": 0, "behind": 0}
    for a, n in re.findall(r'<span class="count">(\d+)/(\d+) active</span>', text):
        counts["active"] += int(a)
        counts["agents"] += int(n)
    counts["failed"] = sum(int(x) for x in re.findall(r'<span class="count">(\d+) failed</span>', text))
    counts["behind"] = sum(int(x) for x in re.findall(r'<span class="count">(\d+) behind</span>', text))
    return counts


def api_set(conn, token, seed):
    """The JSON calls for the overview's information; (calls, counts)."""
    headers = {"Authorization": f"Bearer {token}"}
    calls = []

    def get(kind, path):
        r, data, _, total = conn.request("GET", path, headers=headers)
        if r.status != 200:
            raise SystemExit(f"measure.py: GET {path}: HTTP {r.status}: {data[:300]!r}")
        calls.append({"kind": kind, "ms": round(total, 3), "bytes": len(data)})
        return json.loads(data)

    pipelines = get("GET /api/v1/pipelines", "/api/v1/pipelines")
    configs = get("GET /api/v1/configs", "/api/v1/configs")
    staged = {s["config"] for p in pipelines for s in p["stages"]}
    counts = {"agents": 0, "active": 0, "failed": 0, "behind": 0}
    for p in pipelines:
        status = get("GET /api/v1/pipelines/{name}", f"/api/v1/pipelines/{p['name']}")
        for stage in status["stages"]:
            h = stage["health"]
            for k in counts:
                counts[k] += h.get("pending" if k == "behind" else k, 0)
    for c in configs:
        if c["name"] in staged:
            continue
        for agent in get("GET /api/v1/configs/{name}/agents", f"/api/v1/configs/{c['name']}/agents"):
            counts["agents"] += 1
            state, on_hash = agent["state"], agent["hash"] == c["hash"]
            if state in ("failed", "rolled-back", "untrusted"):
                counts["failed"] += 1
            elif state == "active" and on_hash:
                counts["active"] += 1
            else:
                counts["behind"] += 1
    return calls, counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--seed", required=True)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    seed = json.load(open(a.seed))
    out = a.out

    page_conn, api_conn, admin_conn = Conn(a.url), Conn(a.url), Conn(a.url)
    session = sign_in(page_conn, a.token)
    cookie = {"Cookie": f"depot_session={session}"}
    _, cpu_source = server_cpu_ns(a.server_pid)

    def page_sample():
        c0, _ = server_cpu_ns(a.server_pid)
        r, body, ttfb, total = page_conn.request("GET", "/ui/", headers=cookie)
        c1, _ = server_cpu_ns(a.server_pid)
        problems = check_page(r, body, seed)
        if problems:
            with open(os.path.join(out, "bad-page.html"), "wb") as f:
                f.write(body)
            raise SystemExit(f"measure.py: GET /ui/ is not the overview: {'; '.join(problems)} (see bad-page.html)")
        return {"ttfb_ms": round(ttfb, 3), "ms": round(total, 3), "bytes": len(body),
                "server_cpu_ms": round((c1 - c0) / 1e6, 3)}, body

    def api_sample():
        c0, _ = server_cpu_ns(a.server_pid)
        t0 = time.perf_counter()
        calls, counts = api_set(api_conn, a.token, seed)
        t1 = time.perf_counter()
        c1, _ = server_cpu_ns(a.server_pid)
        if counts != seed["expect"]:
            raise SystemExit(f"measure.py: the API's counts {counts} are not the seeded {seed['expect']}")
        return {"ms": round((t1 - t0) * 1000, 3), "calls": len(calls), "bytes": sum(c["bytes"] for c in calls),
                "calls_ms": round(sum(c["ms"] for c in calls), 3), "server_cpu_ms": round((c1 - c0) / 1e6, 3)}, calls

    files = {k: open(os.path.join(out, f"{k}.jsonl"), "w") for k in ("page", "api", "calls")}
    before = None
    busy0 = own0 = srv0 = None
    total = a.warmup + a.requests
    for i in range(total):
        warm = i < a.warmup
        if i == a.warmup:
            # The measured loop starts: the registry's histogram and the machine's counters.
            before = durations(admin_conn)
            busy0, own0, srv0 = machine_busy(), time.process_time(), server_cpu_ns(a.server_pid)[0]
            t_loop = time.perf_counter()
        order = ("page", "api") if i % 2 == 0 else ("api", "page")
        for kind in order:
            if kind == "page":
                row, body = page_sample()
                if i == 0:
                    with open(os.path.join(out, "overview.html"), "wb") as f:
                        f.write(body)
            else:
                row, calls = api_sample()
                for c in calls:
                    files["calls"].write(json.dumps({"i": i, "warmup": warm, **c}) + "\n")
            row.update(i=i, warmup=warm, first=order[0] == kind)
            files[kind].write(json.dumps(row) + "\n")
        if not warm and (i - a.warmup + 1) % 10 == 0:
            log(f"{i - a.warmup + 1} of {a.requests} samples")
    loop_s = time.perf_counter() - t_loop
    busy1, own1, srv1 = machine_busy(), time.process_time(), server_cpu_ns(a.server_pid)[0]
    after = durations(admin_conn)
    for f in files.values():
        f.close()

    hist = {}
    for key, v in after.items():
        b = before.get(key, {})
        n = v.get("count", 0) - b.get("count", 0)
        if n > 0:
            hist[f"{key[0]} {key[1]}"] = {"count": int(n), "mean_ms": round(1000 * (v["sum"] - b.get("sum", 0)) / n, 3)}
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    capacity = (busy1[1] - busy0[1]) or 1e-9
    server_s = (srv1 - srv0) / 1e9
    own_s = own1 - own0
    others = max(0.0, (busy1[0] - busy0[0]) - server_s - own_s)
    print(json.dumps({
        "requests": a.requests, "warmup": a.warmup, "loop_s": round(loop_s, 2),
        "server_cpu_source": cpu_source, "histogram": hist,
        "reconnects": {"page": page_conn.reconnects, "api": api_conn.reconnects},
        "loop_cpu": {"machine_s": round(capacity, 2), "server_s": round(server_s, 2), "client_s": round(own_s, 2),
                     "others_s": round(others, 2), "others_share": round(others / capacity, 4),
                     "steal_share": round((busy1[2] - busy0[2]) / capacity, 4)},
        "loadavg_after": " ".join(load),
    }))


if __name__ == "__main__":
    main()
