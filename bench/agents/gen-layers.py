#!/usr/bin/env python3
"""Deterministic trees for the agents benchmark's three layers (stdlib only).

    gen-layers.py OUT KIND [--version V] [--seed N]

KIND is one of:
    base   ~32 MiB: ~600 files (source-like text, JSON, binary assets, a few incompressible blobs)
    app    ~4 MiB: ~80 files of the same kinds, smaller
    conf   four small text files (< 1 KiB each); --version is written into them, so that each
           version of `conf` has different content (and so a different archive digest)

OUT must not exist or be empty. The same arguments give the same tree, byte for byte (for a given
Python 3 minor version). Prints a JSON summary (files, bytes) on stdout.
"""
import argparse
import json
import os
import random
import sys

WORDS = (
    "account action adapter agent archive batch bind block buffer bundle cache channel check chunk "
    "client codec commit config context cursor data decode deploy digest engine entry event field "
    "filter format frame handle hash header health index layer limit link lock manifest merge "
    "message metric module node offset option output page parse path pool port probe queue range "
    "record release remote report request resolve result retry route scope session signal source "
    "stage state status store stream sync table task token trace tree update upload value version "
    "watch window worker write"
).split()

# kind: (text files, text bytes each (range), binary files, binary bytes each (range), random blobs (bytes))
PLANS = {
    "base": (480, (2_000, 40_000), 110, (40_000, 160_000), [5 << 20, 4 << 20, 3 << 20]),
    "app": (60, (1_000, 20_000), 24, (20_000, 80_000), [2 << 20]),
}


def text_file(rng, size):
    lines = []
    n = 0
    while n < size:
        indent = "    " * rng.randrange(4)
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12)))
        line = f"{indent}{words}({rng.randrange(1 << 16)});\n"
        lines.append(line)
        n += len(line)
    return "".join(lines).encode()[:size]


def binary_file(rng, size):
    # Half random, half runs of repeated bytes: compresses about 2:1, like images or fonts.
    out = bytearray()
    while len(out) < size:
        if rng.random() < 0.5:
            out += rng.randbytes(rng.randrange(64, 4096))
        else:
            out += bytes([rng.randrange(256)]) * rng.randrange(64, 4096)
    return bytes(out[:size])


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("kind", choices=("base", "app", "conf"))
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    if os.path.exists(a.out) and os.listdir(a.out):
        sys.exit(f"gen-layers.py: {a.out} is not empty")
    os.makedirs(a.out, exist_ok=True)
    files = size = 0

    def put(rel, data, mode=0o644):
        nonlocal files, size
        write(os.path.join(a.out, rel), data, mode)
        files += 1
        size += len(data)

    if a.kind == "conf":
        rng = random.Random(f"{a.seed}-conf")
        for name in ("app.toml", "limits.toml", "features.json", "hosts.txt"):
            body = f"# conf {a.version}\nversion = \"{a.version}\"\n"
            body += "".join(f"{rng.choice(WORDS)}_{rng.choice(WORDS)} = {rng.randrange(1000)}\n" for _ in range(20))
            put(f"etc/{name}", body.encode())
    else:
        rng = random.Random(f"{a.seed}-{a.kind}")
        n_text, text_range, n_bin, bin_range, blobs = PLANS[a.kind]
        dirs = [f"{a.kind}/{rng.choice(WORDS)}/{rng.choice(WORDS)}" for _ in range(max(4, n_text // 12))]
        for i in range(n_text):
            ext = rng.choice(("rs", "py", "js", "html", "json", "css"))
            put(f"{rng.choice(dirs)}/{rng.choice(WORDS)}_{i}.{ext}", text_file(rng, rng.randrange(*text_range)))
        for i in range(n_bin):
            ext = rng.choice(("png", "woff2", "wasm"))
            put(f"{a.kind}/assets/{rng.choice(WORDS)}_{i}.{ext}", binary_file(rng, rng.randrange(*bin_range)))
        for i, blob in enumerate(blobs):
            put(f"{a.kind}/data/blob_{i}.bin", rng.randbytes(blob))
        put(f"{a.kind}/bin/{a.kind}", b"#!/bin/sh\necho " + a.kind.encode() + b"\n", 0o755)
    json.dump({"kind": a.kind, "version": a.version, "files": files, "bytes": size}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
