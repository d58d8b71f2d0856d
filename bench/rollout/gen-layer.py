#!/usr/bin/env python3
"""Small deterministic trees for the rollout benchmark's two layers (stdlib only).

    gen-layer.py OUT KIND [--version V] [--seed N]

KIND is one of:
    base   a start script and six small text files under base/ (about 2.5 KiB in all); never changes
    app    three small text files under app/ (about 1.2 KiB) that carry --version, so that each
           version has different content (and so a different archive digest)

The layers are small on purpose: a change then costs each agent its fixed work (a query answered,
a download of a few KiB, staging, `syncfs`, the switch, reports), not bulk I/O. OUT must not exist
or be empty. The same arguments give the same tree, byte for byte. Prints a JSON summary.
"""
import argparse
import json
import os
import random
import sys

WORDS = (
    "agent batch bake canary channel check config deadline deploy digest event failure halt health "
    "host layer limit manifest release report revert revision rollout stage state status step store "
    "strategy timer token version watch"
).split()


def lines(rng, n):
    return "".join(f"{rng.choice(WORDS)}_{rng.choice(WORDS)} = {rng.randrange(10_000)}\n" for _ in range(n))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("kind", choices=("base", "app"))
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    if os.path.exists(a.out) and os.listdir(a.out):
        sys.exit(f"gen-layer.py: {a.out} is not empty")
    rng = random.Random(f"{a.seed}-{a.kind}")
    files = {}
    if a.kind == "base":
        files["base/bin/serve"] = ("#!/bin/sh\nexec cat \"$(dirname \"$0\")/../share/motd.txt\"\n", 0o755)
        for name in ("motd.txt", "limits.txt", "routes.txt", "mime.txt", "users.txt", "notes.txt"):
            files[f"base/share/{name}"] = (lines(rng, 20), 0o644)
    else:
        head = f"# app {a.version}\nversion = \"{a.version}\"\n"
        for name in ("app.toml", "features.toml", "VERSION.txt"):
            files[f"app/etc/{name}"] = (head + lines(rng, 18), 0o644)
    total = 0
    for rel, (text, mode) in sorted(files.items()):
        path = os.path.join(a.out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = text.encode()
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        total += len(data)
    json.dump({"kind": a.kind, "version": a.version, "files": len(files), "bytes": total}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
