#!/usr/bin/env python3
"""The hostile parts of bench/hostile/run.sh, each a subcommand that runs for --seconds and prints
one JSON object: slow-loris connections, oversized bodies, bad tokens and made-up methods, a
writer that checks nothing acknowledged is lost, and a probe of /healthz latency and the
registry's memory. Standard library only."""
import argparse
import http.client
import json
import os
import random
import socket
import threading
import time


def quantile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def slowloris(a):
    """Opens --conns connections, each sending a request header one byte every --interval
    seconds, and reopens those the registry closes. Reports how long the registry let a
    half-sent request live and how many it closed."""
    conns = {}
    opened = closed = refused = 0
    lifetimes = []
    end = time.monotonic() + a.seconds
    header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100000

    def connect():
        nonlocal opened, refused
        try:
            s = socket.create_connection(("127.0.0.1", a.port), timeout=2)
            s.setblocking(False)
            conns[s] = [time.monotonic(), 0]
            opened += 1
        except OSError:
            refused += 1

    for _ in range(a.conns):
        connect()
    while time.monotonic() < end:
        for s, state in list(conns.items()):
            try:
                s.send(header[state[1]:state[1] + 1])
                state[1] += 1
                # A closed connection shows as readable with b"" (or an error answer).
                try:
                    if s.recv(4096, socket.MSG_PEEK) is not None:
                        raise ConnectionError
                except BlockingIOError:
                    pass
            except (OSError, ConnectionError):
                lifetimes.append(time.monotonic() - state[0])
                closed += 1
                s.close()
                del conns[s]
                connect()
        time.sleep(a.interval)
    for s in conns:
        s.close()
    print(json.dumps({"conns": a.conns, "opened": opened, "closed_by_registry": closed, "refused": refused,
                      "lifetime_p50_s": quantile(lifetimes, 0.5), "lifetime_max_s": max(lifetimes, default=None)}))


def request(port, method, path, headers=None, body=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        r.read()
        return r.status
    except (OSError, http.client.HTTPException):
        return "error"
    finally:
        c.close()


def oversized(a):
    """Bodies larger than the registry takes: a 20 MB JSON configuration and a blob upload that
    claims 100 GB, sent as fast as answers come back."""
    counts = {}
    end = time.monotonic() + a.seconds
    big_json = b'{"name":"x","layers":[' + b'{"component":"web","version":"1.0.0"},' * 500000 + b'{}]}'
    auth = {"Authorization": f"Bearer {a.token}"}
    while time.monotonic() < end:
        status = request(a.port, "POST", "/api/v1/configs",
                         {**auth, "Content-Type": "application/json"}, big_json)
        counts[f"json-20MB:{status}"] = counts.get(f"json-20MB:{status}", 0) + 1
        c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
        try:
            c.putrequest("PUT", "/api/v1/blobs/sha256:" + "0" * 64)
            c.putheader("Authorization", f"Bearer {a.token}")
            c.putheader("Content-Length", str(100 * 10**9))
            c.endheaders()
            for _ in range(64):
                c.send(os.urandom(65536))
            status = c.getresponse().status
        except (OSError, http.client.HTTPException):
            status = "closed"
        finally:
            c.close()
        counts[f"blob-100GB:{status}"] = counts.get(f"blob-100GB:{status}", 0) + 1
    print(json.dumps(counts))


def badtokens(a):
    """Requests with made-up tokens and made-up 100 KB methods, as fast as answers come back."""
    counts = {}
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        token = "".join(random.choice("abcdef0123456789") for _ in range(40))
        status = request(a.port, "GET", "/api/v1/configs/prod", {"Authorization": f"Bearer admin.{token}"})
        counts[f"bad-token:{status}"] = counts.get(f"bad-token:{status}", 0) + 1
        method = "X" + "".join(random.choice("ABCDEFGH") for _ in range(100000))
        status = request(a.port, method, "/healthz")
        counts[f"made-up-method:{status}"] = counts.get(f"made-up-method:{status}", 0) + 1
    print(json.dumps(counts))


def writer(a):
    """Writes the configuration over and over (alternating two layer versions, each write
    expecting the revision it read), remembers every revision the registry acknowledged, and
    at the end checks each is in the history with the layers it was given."""
    acked = {}
    errors = 0
    end = time.monotonic() + a.seconds
    auth = {"Authorization": f"Bearer {a.token}", "Content-Type": "application/json"}
    c = None
    while time.monotonic() < end:
        try:
            c = c or http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
            c.request("GET", "/api/v1/configs/prod", headers=auth)
            current = json.loads(c.getresponse().read())
            version = "2.0.0" if current["layers"][0]["version"] == "1.0.0" else "1.0.0"
            body = json.dumps({"layers": [{"component": "web", "version": version}],
                               "expect_revision": current["revision"]})
            c.request("PATCH", "/api/v1/configs/prod", body=body, headers=auth)
            r = c.getresponse()
            answer = json.loads(r.read())
            if r.status == 200:
                acked[answer["revision"]] = version
            else:
                errors += 1
        except (OSError, http.client.HTTPException, ValueError, KeyError):
            errors += 1
            c = None
            time.sleep(0.05)
    c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)
    c.request("GET", "/api/v1/configs/prod/history", headers=auth)
    history = {e["revision"]: e for e in json.loads(c.getresponse().read())}
    lost = [rev for rev, version in acked.items()
            if rev not in history or version not in json.dumps(history[rev])]
    print(json.dumps({"acknowledged": len(acked), "errors": errors, "lost": len(lost)}))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def probe(a):
    """GET /healthz on a new connection every --every seconds (its latency, or a failure), and
    the registry's resident memory every 5 s."""
    latencies, failures, rss = [], 0, []
    end = time.monotonic() + a.seconds
    last_rss = 0
    while time.monotonic() < end:
        t = time.monotonic()
        status = request(a.port, "GET", "/healthz", timeout=5)
        took = (time.monotonic() - t) * 1000
        if status == 200:
            latencies.append(took)
        else:
            failures += 1
        if t - last_rss >= 5:
            rss.append((round(t - (end - a.seconds)), rss_kb(a.pid)))
            last_rss = t
        time.sleep(max(0, a.every - (time.monotonic() - t)))
    over = sum(1 for l in latencies if l >= 100)
    print(json.dumps({"probes": len(latencies) + failures, "failures": failures, "over_100ms": over,
                      "p50_ms": round(quantile(latencies, 0.5) or 0, 1),
                      "p99_ms": round(quantile(latencies, 0.99) or 0, 1),
                      "max_ms": round(max(latencies, default=0), 1), "rss_kb": rss}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("slowloris", "oversized", "badtokens", "writer", "probe"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--seconds", type=float, required=True)
        p.add_argument("--token", default="")
        p.add_argument("--conns", type=int, default=1100)
        p.add_argument("--interval", type=float, default=10)
        p.add_argument("--pid", type=int, default=0)
        p.add_argument("--every", type=float, default=0.25)
    a = ap.parse_args()
    globals()[a.cmd](a)


if __name__ == "__main__":
    main()
