#!/usr/bin/env python3
"""Blocking-query (watcher) benchmark client for depot's registry (stdlib only).

Opens N concurrent `GET /api/v1/configs/NAME?after=R&wait=W` requests on raw non-blocking
sockets, waits until the registry's `depot_watchers` gauge says all N are subscribed, samples the
registry's RSS (before connecting, with the N connections open but idle, and with the N requests
waiting), then sends one `PATCH /api/v1/configs/NAME` itself.

Wake-up latency is measured without the client's own speed in it: every socket has SO_TIMESTAMPNS
on, so the kernel stamps each response when it reaches the client's socket (CLOCK_REALTIME, like
the `time.time_ns()` taken just before the PATCH is written). The client stays idle while the
registry answers (it only counts readable sockets every 100 ms) and reads the responses, with
their timestamps, once all have arrived or the deadline passes. So the registry has the machine's
two cores to itself, apart from whatever else the machine is running (measured as other_cpu_s).

Prints one JSON object on stdout. Every wait has a deadline; it stops by itself.
"""
import argparse
import errno
import json
import os
import select
import socket
import struct
import sys
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; struct timespec in the cmsg
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"watchers.py: {msg}", file=sys.stderr, flush=True)


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def smaps_rollup(pid):
    """Selected fields of /proc/PID/smaps_rollup, in bytes ({} where unavailable)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Rss", "Anonymous", "Private_Dirty"):
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def proc_cpu_seconds(pid):
    """utime+stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return None


def machine_cpu():
    """(busy, steal) CPU seconds of the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def tcp_kernel_mem_bytes():
    """Memory the kernel holds for all TCP sockets (/proc/net/sockstat, pages): not in any RSS."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                parts = line.split()
                return int(parts[parts.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    return None


def http(host, port, method, path, token, body=b"", timeout=30.0):
    """One small request on a fresh blocking connection; returns (status, body)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        req = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
               ).encode() + body
        s.sendall(req)
        return read_response(s)


def read_response(s):
    """Reads one HTTP/1.1 response from a blocking socket with a timeout (Connection: close)."""
    data = bytearray()
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        parsed = parse(data)
        if parsed is not None and parsed[2]:
            break
    parsed = parse(data)
    if parsed is None:
        raise RuntimeError(f"incomplete response: {bytes(data[:200])!r}")
    status, body, _ = parsed
    return status, body


def parse(buf):
    """(status, body, complete) of an HTTP/1.1 response in buf, or None before the headers end."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return None
    head = bytes(buf[:i]).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    need = None
    for h in head[1:]:
        k, _, v = h.partition(":")
        if k.strip().lower() == "content-length":
            need = int(v.strip())
    body = bytes(buf[i + 4:])
    return status, body, need is not None and len(body) >= need


def watchers_gauge(host, port, token):
    _, body = http(host, port, "GET", "/metrics", token)
    for line in body.decode().splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if name.split("{")[0] == "depot_watchers":
            return float(value)
    raise RuntimeError("no depot_watchers gauge in /metrics")


def pct(sorted_vals, p):
    """Nearest-rank percentile."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, -(-p * len(sorted_vals) // 100) - 1))
    return sorted_vals[int(k)]


class Conn:
    __slots__ = ("sock", "buf", "ts", "status", "complete", "eof")

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.ts = None  # kernel arrival time (ns, CLOCK_REALTIME) of the last bytes read
        self.status = None
        self.complete = False
        self.eof = False

    def drain(self):
        """Reads whatever is buffered (non-blocking), keeping the kernel's timestamp."""
        while not self.complete and not self.eof:
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(16))
            except BlockingIOError:
                return
            except OSError:
                self.eof = True
                return
            if not data:
                self.eof = True
                return
            self.buf += data
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                    sec, nsec = struct.unpack("@qq", cdata[:16])
                    self.ts = sec * 1_000_000_000 + nsec
            parsed = parse(self.buf)
            if parsed is not None:
                self.status, _, self.complete = parsed


def connect_all(host, port, n, batch, deadline):
    """N non-blocking connections, `batch` in flight at a time. Returns (conns, errors)."""
    conns, errors = [], 0
    ep = select.epoll()
    try:
        for start in range(0, n, batch):
            pending = {}
            for _ in range(start, min(n, start + batch)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                rc = s.connect_ex((host, port))
                if rc not in (0, errno.EINPROGRESS):
                    errors += 1
                    s.close()
                    continue
                pending[s.fileno()] = s
                ep.register(s.fileno(), select.EPOLLOUT)
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"connecting: {len(conns)} of {n} connected before the deadline")
                for fd, _ in ep.poll(min(left, 1.0)):
                    s = pending.pop(fd)
                    ep.unregister(fd)
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        errors += 1
                        s.close()
                    else:
                        conns.append(Conn(s))
    finally:
        ep.close()
    return conns, errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--config", default="prod")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the registry process, for RSS and CPU")
    ap.add_argument("--patch-body", required=True, help="JSON body of the PATCH that wakes everyone")
    ap.add_argument("--wait", default="120s", help="the blocking queries' wait (the registry caps it at 5m)")
    ap.add_argument("--batch", type=int, default=200, help="connections being opened at once")
    ap.add_argument("--wake-deadline", type=float, default=30.0, help="seconds after the PATCH to stop waiting")
    ap.add_argument("--pause", type=float, default=0.0,
                    help="seconds to wait before the PATCH (e.g. to attach a profiler to the registry)")
    a = ap.parse_args()
    host, port, token = a.host, a.port, a.token

    status, body = http(host, port, "GET", f"/api/v1/configs/{a.config}", token)
    if status != 200:
        raise SystemExit(f"GET config: {status} {body[:300]!r}")
    revision = json.loads(body)["revision"]
    time.sleep(0.5)
    gauge_before = watchers_gauge(host, port, token)
    rss_before = rss_bytes(a.pid)
    smaps_before = smaps_rollup(a.pid)
    tcp_mem_before = tcp_kernel_mem_bytes()

    # 1. N idle connections.
    t_conn = time.monotonic()
    conns, connect_errors = connect_all(host, port, a.n, a.batch, t_conn + 120)
    connect_s = time.monotonic() - t_conn
    time.sleep(1.0)  # let the registry accept them all and poll each one once
    rss_connected = rss_bytes(a.pid)

    # 2. One blocking query on each.
    req = (f"GET /api/v1/configs/{a.config}?after={revision}&wait={a.wait} HTTP/1.1\r\nHost: {host}\r\n"
           f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n").encode()
    send_errors = 0
    for c in conns:
        try:
            if c.sock.send(req) != len(req):
                send_errors += 1
        except OSError:
            send_errors += 1
    deadline = time.monotonic() + 120
    subscribed = 0
    while time.monotonic() < deadline:
        subscribed = watchers_gauge(host, port, token) - gauge_before
        if subscribed >= len(conns):
            break
        time.sleep(0.2)
    subscribe_s = time.monotonic() - t_conn - connect_s
    time.sleep(1.0)
    rss_after = rss_bytes(a.pid)
    smaps_after = smaps_rollup(a.pid)
    tcp_mem_after = tcp_kernel_mem_bytes()
    threads = proc_threads(a.pid)
    log(f"N={a.n}: {len(conns)} connected in {connect_s:.1f} s, {subscribed:.0f} subscribed; "
        f"RSS {rss_before / 2**20:.1f} -> {rss_connected / 2**20:.1f} (idle connections) -> "
        f"{rss_after / 2**20:.1f} MiB (waiting)")

    ep = select.epoll()
    by_fd = {}
    for c in conns:
        ep.register(c.sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        by_fd[c.sock.fileno()] = c
    early = len(ep.poll(0, maxevents=len(conns) + 1))
    if a.pause > 0:
        log(f"pausing {a.pause:g} s before the PATCH")
        time.sleep(a.pause)

    # 3. The PATCH, on a connection opened beforehand, so t0 is the moment the request is written.
    ps = socket.create_connection((host, port), timeout=30)
    ps.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pbody = a.patch_body.encode()
    preq = (f"PATCH /api/v1/configs/{a.config} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(pbody)}\r\nConnection: close\r\n\r\n"
            ).encode() + pbody
    cpu_client0 = time.process_time()
    cpu_srv0 = proc_cpu_seconds(a.pid)
    busy0, steal0 = machine_cpu()
    t0_ns = time.time_ns()
    t0 = time.monotonic()
    ps.sendall(preq)
    patch_status, patch_resp = read_response(ps)
    patch_ms = (time.monotonic() - t0) * 1000
    ps.close()
    if patch_status != 200:
        log(f"PATCH answered {patch_status}: {patch_resp[:300]!r}")

    # 4. Idle until every socket is readable (or the deadline), then read them all.
    ready = 0
    while time.monotonic() - t0 < a.wake_deadline:
        ready = len(ep.poll(0, maxevents=len(conns) + 1))
        if ready >= len(conns):
            break
        time.sleep(0.1)
    wall_ready = time.monotonic() - t0
    cpu_srv = proc_cpu_seconds(a.pid) - cpu_srv0
    busy1, steal1 = machine_cpu()
    cpu_client = time.process_time() - cpu_client0
    for c in conns:
        c.drain()
    # A response that arrived in pieces may need a moment more (bounded).
    for _ in range(10):
        if all(c.complete or c.eof for c in conns):
            break
        time.sleep(0.1)
        for c in conns:
            c.drain()
    ep.close()
    for c in conns:
        c.sock.close()

    ok = [c for c in conns if c.complete and c.status == 200]
    lat = sorted((c.ts - t0_ns) / 1e6 for c in ok if c.ts is not None)
    no_ts = sum(1 for c in ok if c.ts is None)
    statuses = {}
    for c in conns:
        if not (c.complete and c.status == 200):
            key = str(c.status) if c.status is not None else "no response"
            statuses[key] = statuses.get(key, 0) + 1
    within_1s = sum(1 for x in lat if x <= 1000)
    out = {
        "n": a.n,
        "connected": len(conns),
        "connect_errors": connect_errors,
        "send_errors": send_errors,
        "connect_seconds": round(connect_s, 3),
        "subscribe_seconds": round(subscribe_s, 3),
        "subscribed_per_gauge": subscribed,
        "answered_before_patch": early,
        "rss_before": rss_before,
        "rss_connected": rss_connected,
        "rss_after": rss_after,
        "anon_before": smaps_before.get("Anonymous"),
        "anon_after": smaps_after.get("Anonymous"),
        "bytes_per_watcher": round((rss_after - rss_before) / max(1, len(conns)), 1),
        "bytes_per_idle_connection": round((rss_connected - rss_before) / max(1, len(conns)), 1),
        "kernel_tcp_mem_per_watcher": round((tcp_mem_after - tcp_mem_before) / max(1, len(conns)), 1)
        if tcp_mem_before is not None and tcp_mem_after is not None else None,
        "server_threads": threads,
        "patch_status": patch_status,
        "patch_response_ms": round(patch_ms, 2),
        "woken": len(ok),
        "woken_within_1s": within_1s,
        "not_woken": dict(sorted(statuses.items())),
        "timestamps": "kernel (SO_TIMESTAMPNS)" if not no_ts else f"kernel, {no_ts} missing",
        "wake_min_ms": round(lat[0], 2) if lat else None,
        "wake_p50_ms": round(pct(lat, 50), 2) if lat else None,
        "wake_p99_ms": round(pct(lat, 99), 2) if lat else None,
        "wake_max_ms": round(lat[-1], 2) if lat else None,
        "wake_window_s": round(wall_ready, 3),
        "server_cpu_s_during_wake": round(cpu_srv, 3),
        "client_cpu_s_during_wake": round(cpu_client, 3),
        # CPU used by anything else on the machine in the same window (other jobs: noise).
        "other_cpu_s_during_wake": round(max(0.0, busy1 - busy0 - cpu_srv - cpu_client), 3),
        "steal_s_during_wake": round(steal1 - steal0, 3),
        "loadavg": open("/proc/loadavg").read().split()[0:3],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
