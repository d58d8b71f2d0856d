#!/usr/bin/env python3
"""A TCP proxy that caps the bandwidth between depot's agents and a registry (stdlib only).

    throttle.py --target 127.0.0.1:PORT [--rate BYTES_PER_S] [--burst BYTES]

Listens on 127.0.0.1 (an unused port) and forwards every connection to --target. Each direction
is one link shared by all the connections, limited to --rate bytes a second (default 12,500,000:
100 Mbit/s) by a token bucket of --burst bytes (default 64 KiB, 5 ms at 100 Mbit/s); --rate 0
forwards without a limit. No latency is added. Prints one line on stdout once it listens:

    listening on http://127.0.0.1:P, forwarding to 127.0.0.1:PORT; stats on http://127.0.0.1:S

and answers any HTTP request on the stats port with the counters since it started, as JSON:
{"up": bytes towards the target, "down": bytes back, "connections": accepted connections,
"requests": HTTP/1.1 request lines seen towards the target}.
SIGTERM or SIGINT stops it.
"""
import argparse
import asyncio
import json
import signal

CHUNK = 16 * 1024

STATS = {"up": 0, "down": 0, "connections": 0, "requests": 0}
# How an HTTP/1.1 request line ends: counted in the bytes towards the target, it counts requests.
REQUEST_LINE_END = b" HTTP/1.1\r\n"


class Link:
    """One direction of the capped network: a token bucket that every connection draws from."""

    def __init__(self, rate, burst):
        self.rate = rate
        self.burst = burst
        # When the link has sent everything it was given (event loop time).
        self.free_at = 0.0

    async def send(self, n):
        if not self.rate:
            return
        now = asyncio.get_running_loop().time()
        # An idle link has saved up at most `burst` bytes.
        start = max(self.free_at, now - self.burst / self.rate)
        self.free_at = start + n / self.rate
        delay = self.free_at - now
        if delay > 0:
            await asyncio.sleep(delay)


async def pipe(reader, writer, link, counter):
    # The end of the previous chunk, so that a request line cut in two is still counted.
    tail = b""
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            await link.send(len(data))
            writer.write(data)
            await writer.drain()
            STATS[counter] += len(data)
            if counter == "up":
                seen = tail + data
                STATS["requests"] += seen.count(REQUEST_LINE_END)
                tail = seen[-(len(REQUEST_LINE_END) - 1):]
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def forward(client_reader, client_writer, target, up, down):
    STATS["connections"] += 1
    host, port = target
    try:
        target_reader, target_writer = await asyncio.open_connection(host, port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        pipe(client_reader, target_writer, up, "up"),
        pipe(target_reader, client_writer, down, "down"),
    )
    for w in (target_writer, client_writer):
        w.close()
        try:
            await w.wait_closed()
        except (ConnectionError, OSError):
            pass


async def stats(reader, writer):
    try:
        # The request itself does not matter: read its head, answer with the counters.
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
        pass
    body = json.dumps(STATS).encode()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n%s" % (len(body), body))
    try:
        await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True, help="HOST:PORT to forward to")
    p.add_argument("--rate", type=float, default=12.5e6, help="bytes a second, each direction (0: no limit)")
    p.add_argument("--burst", type=int, default=64 * 1024, help="bytes an idle link may send at once")
    a = p.parse_args()
    host, _, port = a.target.rpartition(":")
    target = (host, int(port))
    up, down = Link(a.rate, a.burst), Link(a.rate, a.burst)

    proxy = await asyncio.start_server(lambda r, w: forward(r, w, target, up, down), "127.0.0.1", 0)
    control = await asyncio.start_server(stats, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    stats_port = control.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}, forwarding to {a.target}; stats on http://127.0.0.1:{stats_port}",
          flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    proxy.close()
    control.close()


if __name__ == "__main__":
    asyncio.run(main())
