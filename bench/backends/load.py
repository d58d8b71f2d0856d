#!/usr/bin/env python3
"""Load for comparing depot's registry on SQLite and on PostgreSQL (stdlib only).

  load.py writes   --port P --token T --writers 50 --seconds 10 --mode shared|separate
  load.py pushes   --port P --token T --clients 20 --count 200
  load.py watchers --ports P1,P2,P3 --token T --n 10000 --patch-port P1 --patch-body JSON

Each prints one JSON object on stdout; every loop is bounded in count and time.

writes: each writer reads its configuration's revision and PATCHes it with `expect_revision`
(a read-modify-write, as two operators would), retrying on a conflict; afterwards the history
must hold exactly one revision per acknowledged write (no lost update). `shared`: all writers on
one configuration; `separate`: one configuration each.

pushes: each client uploads small distinct archives (a tar made here) and names them as versions
of a component of its own.

watchers: N blocking queries spread evenly over the replicas, then one PATCH through one of
them; the wake-up latency of each is the kernel's arrival timestamp of its answer minus the
time the PATCH was sent (see bench/registry/watchers.py, whose socket code this reuses).
"""
import argparse
import io
import json
import os
import select
import sys
import tarfile
import threading
import time
import hashlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "registry"))
from watchers import connect_all, http, pct, watchers_gauge  # noqa: E402


def writes(a):
    names = [f"w{i:02d}" for i in range(a.writers)] if a.mode == "separate" else ["shared"]
    for name in names:
        body = json.dumps({"name": name, "layers": [{"component": "web", "version": "1.0.0"}]}).encode()
        status, text = http(a.host, a.port, "POST", "/api/v1/configs", a.token, body)
        if status not in (201, 409):
            sys.exit(f"create {name}: {status} {text[:200]!r}")
    acked = [0] * a.writers
    conflicts = [0] * a.writers
    errors = [0] * a.writers
    start = time.monotonic()
    deadline = start + a.seconds

    def writer(i):
        name = names[i % len(names)]
        n = 0
        while time.monotonic() < deadline and n < 1_000_000:
            n += 1
            status, text = http(a.host, a.port, "GET", f"/api/v1/configs/{name}", a.token)
            if status != 200:
                errors[i] += 1
                continue
            revision = json.loads(text)["revision"]
            version = "2.0.0" if revision % 2 else "1.0.0"
            body = json.dumps({"layers": [{"component": "web", "version": version}],
                               "expect_revision": revision}).encode()
            status, _ = http(a.host, a.port, "PATCH", f"/api/v1/configs/{name}", a.token, body)
            if status == 200:
                acked[i] += 1
            elif status == 409:
                conflicts[i] += 1
            else:
                errors[i] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(a.writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    revisions = 0
    for name in names:
        _, text = http(a.host, a.port, "GET", f"/api/v1/configs/{name}/history", a.token)
        revisions += len(json.loads(text)) - 1  # revision 1 is the creation
    total = sum(acked)
    print(json.dumps({"mode": a.mode, "writers": a.writers, "seconds": round(elapsed, 2),
                      "acknowledged": total, "writes_per_s": round(total / elapsed, 1),
                      "conflicts": sum(conflicts), "errors": sum(errors),
                      "revisions_written": revisions, "lost_updates": total - revisions}))


def archive(seed):
    data = f"content {seed}\n".encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("app.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def pushes(a):
    per = a.count // a.clients
    times = [[] for _ in range(a.clients)]
    errors = [0] * a.clients
    start = time.monotonic()
    deadline = start + 300

    def client(i):
        for n in range(per):
            if time.monotonic() > deadline:
                return
            blob = archive(f"{os.getpid()}-{i}-{n}-{time.time_ns()}")
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            t0 = time.monotonic()
            s1, _ = http(a.host, a.port, "PUT", f"/api/v1/blobs/{digest}", a.token, blob)
            body = json.dumps({"digest": digest}).encode()
            s2, _ = http(a.host, a.port, "PUT", f"/api/v1/components/c{i:02d}/versions/1.0.{n}", a.token, body)
            if s1 in (200, 201) and s2 in (200, 201):
                times[i].append(time.monotonic() - t0)
            else:
                errors[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    all_times = sorted(x for ts in times for x in ts)
    print(json.dumps({"clients": a.clients, "pushes": len(all_times), "errors": sum(errors),
                      "seconds": round(elapsed, 2), "pushes_per_s": round(len(all_times) / elapsed, 1),
                      "p50_ms": round(pct(all_times, 50) * 1000, 1), "p99_ms": round(pct(all_times, 99) * 1000, 1)}))


def watchers(a):
    ports = [int(p) for p in a.ports.split(",")]
    deadline = time.monotonic() + 300
    _, text = http(a.host, ports[0], "GET", f"/api/v1/configs/{a.config}", a.token)
    after = json.loads(text)["revision"]
    conns = []
    per = [a.n // len(ports) + (1 if i < a.n % len(ports) else 0) for i in range(len(ports))]
    for port, n in zip(ports, per):
        cs, errors = connect_all(a.host, port, n, 200, deadline)
        if errors:
            sys.exit(f"{errors} connections to port {port} failed")
        request = (f"GET /api/v1/configs/{a.config}?after={after}&wait=120s HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {a.token}\r\n\r\n").encode()
        for c in cs:
            c.sock.sendall(request)
        conns += cs
    while sum(watchers_gauge(a.host, p, a.token) for p in ports) < a.n:
        if time.monotonic() > deadline:
            sys.exit("the watchers did not all subscribe in time")
        time.sleep(0.2)
    time.sleep(1)
    sent = time.time_ns()
    status, text = http(a.host, a.patch_port, "PATCH", f"/api/v1/configs/{a.config}", a.token, a.patch_body.encode())
    if status != 200:
        sys.exit(f"PATCH: {status} {text[:200]!r}")
    ep = select.epoll()
    by_fd = {c.sock.fileno(): c for c in conns}
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    stop = time.monotonic() + 30
    done = 0
    while done < len(conns) and time.monotonic() < stop:
        for fd, _ in ep.poll(0.1):
            c = by_fd[fd]
            c.drain()
            if c.complete or c.eof:
                ep.unregister(fd)
                done += 1
    lat = sorted((c.ts - sent) / 1e9 for c in conns if c.complete and c.status == 200 and c.ts)
    for c in conns:
        c.sock.close()
    print(json.dumps({"watchers": a.n, "replicas": len(ports), "answered": len(lat),
                      "p50_ms": round(pct(lat, 50) * 1000, 1), "p99_ms": round(pct(lat, 99) * 1000, 1),
                      "max_ms": round(lat[-1] * 1000, 1) if lat else None}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    w = sub.add_parser("writes")
    w.add_argument("--writers", type=int, default=50)
    w.add_argument("--seconds", type=float, default=10)
    w.add_argument("--mode", choices=["shared", "separate"], required=True)
    p = sub.add_parser("pushes")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--count", type=int, default=200)
    v = sub.add_parser("watchers")
    v.add_argument("--ports", required=True)
    v.add_argument("--n", type=int, default=10000)
    v.add_argument("--config", default="prod")
    v.add_argument("--patch-port", type=int, required=True)
    v.add_argument("--patch-body", required=True)
    for s in (w, p, v):
        s.add_argument("--host", default="127.0.0.1")
        s.add_argument("--token", required=True)
        if s is not v:
            s.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    {"writes": writes, "pushes": pushes, "watchers": watchers}[a.what](a)


if __name__ == "__main__":
    main()
