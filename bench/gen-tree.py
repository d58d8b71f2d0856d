#!/usr/bin/env python3
"""Deterministic generator of a realistic release tree for depot's benchmarks (stdlib only).

    gen-tree.py OUT [--scale S] [--seed N]
        Writes a tree of ~20,000 files and ~1 GiB at scale 1 into OUT (which must not exist or be
        empty): many small source-like text files, medium assets (bundles, JSON, images, fonts),
        a few large random (incompressible) blobs, nested directories, some executables, a few
        symlinks and some duplicated files. Scale multiplies file counts and sizes (0.05 for a
        quick smoke run).

    gen-tree.py OUT --mutate-from DIR [--percent P] [--seed N]
        Makes OUT a copy of DIR in which P% (default 1) of the regular files, chosen uniformly,
        have new content (same size class). Unchanged files are hardlinked from DIR (no bytes
        written) unless --copy is given; changed files are always new inodes, so DIR is never
        modified.

The same arguments give the same tree, byte for byte (for a given Python 3 minor version).
A JSON summary is printed on stdout.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import sys

MIB = 1 << 20

# Scale-1 budget: ~20,000 files, ~1 GiB.
SMALL_FILES = 18_300  # source-like text, ~125 MiB in all
MEDIUM_FILES = 1_650  # assets, ~400 MiB in all
EXEC_FILES = 40  # bin/ scripts and a few binaries
LARGE_SIZES_MIB = [120, 100, 90, 80, 60, 50]  # random blobs, ~500 MiB in all
DIRS = 1_300
DUPLICATE_FRACTION = 0.02  # identical copies (licences, empty __init__.py, vendored copies)

WORDS = (
    "account action adapter agent alloc apply archive array async auth backend batch bind block "
    "buffer build bundle cache call channel check chunk client close codec column commit config "
    "connect context cursor data decode default delete deploy digest dispatch drain encode engine "
    "entry error event field filter flush format frame handle handler hash header health index "
    "init input item iter join key layer limit link list load lock log lookup manifest map match "
    "merge message meta metric mode module mount node offset open option order output packet page "
    "parse path peer pending pipe pool port prefix probe queue range read record release remote "
    "render report request reset resolve result retry route rule scan schema scope session shard "
    "signal size slot snapshot source span spec stage state status store stream sync table task "
    "template tenant text timer token trace tree update upload user value version view watch "
    "window worker write"
).split()
TYPES = "u8 u16 u32 u64 i32 i64 usize bool String Vec<u8> Option<u64> Result<()> Path Duration".split()


def ident(rng, parts=None):
    n = parts or rng.choice((1, 2, 2, 3))
    return "_".join(rng.choice(WORDS) for _ in range(n))


def camel(rng):
    return "".join(w.capitalize() for w in ident(rng).split("_"))


def make_line_pools(rng):
    """Pools of source-like lines per language; files draw lines from them (plus unique lines)."""
    pools = {}
    n = 6_000
    rs = []
    for _ in range(n):
        t = rng.randrange(9)
        ind = "    " * rng.randrange(0, 4)
        if t == 0:
            rs.append(f"{ind}let {ident(rng)} = {ident(rng)}(&{ident(rng)}, {rng.randrange(1000)})?;")
        elif t == 1:
            rs.append(f"{ind}pub fn {ident(rng)}(&self, {ident(rng, 1)}: {rng.choice(TYPES)}) -> {rng.choice(TYPES)} {{")
        elif t == 2:
            rs.append(f"{ind}// {' '.join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12)))}.")
        elif t == 3:
            rs.append(f"{ind}if {ident(rng)}.{ident(rng)}() > {rng.randrange(64)} {{")
        elif t == 4:
            rs.append(f"{ind}}}")
        elif t == 5:
            rs.append(f"{ind}self.{ident(rng)}.insert({ident(rng)}.clone(), {camel(rng)}::new());")
        elif t == 6:
            rs.append(f"use crate::{ident(rng, 1)}::{{{camel(rng)}, {camel(rng)}}};")
        elif t == 7:
            rs.append(f"{ind}return Err(Error::{camel(rng)} {{ {ident(rng, 1)}: {ident(rng, 1)}.to_owned() }});")
        else:
            rs.append("")
    pools["rs"] = rs
    py = []
    for _ in range(n):
        t = rng.randrange(8)
        ind = "    " * rng.randrange(0, 3)
        if t == 0:
            py.append(f"{ind}def {ident(rng)}(self, {ident(rng, 1)}, {ident(rng, 1)}=None):")
        elif t == 1:
            py.append(f"{ind}{ident(rng)} = self.{ident(rng)}.get({ident(rng, 1)!r}, {rng.randrange(100)})")
        elif t == 2:
            py.append(f"{ind}# {' '.join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12)))}")
        elif t == 3:
            py.append(f"{ind}if not {ident(rng)}:")
        elif t == 4:
            py.append(f"{ind}    raise {camel(rng)}Error(f\"{ident(rng)} {{{ident(rng, 1)}}} failed\")")
        elif t == 5:
            py.append(f"from .{ident(rng, 1)} import {camel(rng)}, {ident(rng)}")
        elif t == 6:
            py.append(f"{ind}return [{ident(rng, 1)} for {ident(rng, 1)} in {ident(rng)} if {ident(rng, 1)}]")
        else:
            py.append("")
    pools["py"] = py
    js = []
    for _ in range(n):
        t = rng.randrange(7)
        ind = "  " * rng.randrange(0, 4)
        if t == 0:
            js.append(f"{ind}const {camel(rng)} = require('./{ident(rng)}');")
        elif t == 1:
            js.append(f"{ind}export function {ident(rng)}({ident(rng, 1)}, {ident(rng, 1)}) {{")
        elif t == 2:
            js.append(f"{ind}if ({ident(rng, 1)}.{ident(rng, 1)} === {rng.randrange(100)}) return null;")
        elif t == 3:
            js.append(f"{ind}{ident(rng, 1)}.{ident(rng)} = {{ {ident(rng, 1)}: {rng.randrange(10000)}, {ident(rng, 1)}: '{ident(rng)}' }};")
        elif t == 4:
            js.append(f"{ind}}}")
        elif t == 5:
            js.append(f"{ind}/* {' '.join(rng.choice(WORDS) for _ in range(rng.randrange(3, 10)))} */")
        else:
            js.append(f"{ind}await this.{ident(rng)}({ident(rng, 1)});")
    pools["js"] = js
    web = []
    for _ in range(n):
        t = rng.randrange(5)
        if t == 0:
            web.append(f'  <div class="{ident(rng)} {ident(rng)}" data-{ident(rng, 1)}="{rng.randrange(999)}">')
        elif t == 1:
            web.append(f"  {{{{ {ident(rng)} | {ident(rng, 1)} }}}}</div>")
        elif t == 2:
            web.append(f".{ident(rng)} {{ margin: {rng.randrange(40)}px; color: #{rng.randrange(1 << 24):06x}; }}")
        elif t == 3:
            web.append(f'  "{ident(rng)}": {{"{ident(rng, 1)}": {rng.randrange(100000)}, "{ident(rng, 1)}": "{ident(rng)}"}},')
        else:
            web.append(f"msgid \"{' '.join(rng.choice(WORDS) for _ in range(rng.randrange(2, 8)))}\"")
    pools["web"] = web
    return pools


SMALL_KINDS = [  # (extension, pool, weight)
    ("rs", "rs", 3), ("py", "py", 4), ("js", "js", 3), ("ts", "js", 2), ("html", "web", 1),
    ("css", "web", 1), ("json", "web", 1), ("po", "web", 1), ("txt", "py", 1), ("toml", "web", 1),
]
MEDIUM_TEXT = [("min.js", "js"), ("bundle.js", "js"), ("json", "web"), ("css", "web"), ("svg", "web"), ("sql", "py")]
MEDIUM_BIN = ["png", "jpg", "woff2", "jar", "wasm", "gz"]


def text_bytes(rng, pools, pool, size, header):
    """About `size` bytes of source-like text: lines drawn from a pool, 10% made unique."""
    lines = pools[pool]
    k = max(1, size // 36)
    chosen = rng.choices(lines, k=k)
    for i in range(0, k, 10):
        chosen[i] = f"{chosen[i]} // {rng.getrandbits(32):08x}"
    data = (header + "\n" + "\n".join(chosen) + "\n").encode()
    if len(data) < size:
        data += b"\n" * (size - len(data))
    return data[:size]


def random_bytes(rng, size):
    """Incompressible bytes, deterministic from the generator's state."""
    out = bytearray()
    while len(out) < size:
        n = min(16 * MIB, size - len(out))
        out += hashlib.shake_256(rng.getrandbits(128).to_bytes(16, "little")).digest(n)
    return bytes(out)


def lognormal_size(rng, median, sigma, lo, hi):
    import math

    return int(min(hi, max(lo, rng.lognormvariate(math.log(median), sigma))))


class Writer:
    def __init__(self, root):
        self.root = root
        self.files = 0
        self.bytes = 0
        self.executables = 0
        self.symlinks = 0
        self.duplicates = 0
        self.dirs = set()
        self.by_kind = {}

    def write(self, rel, data, mode=0o644, kind="other"):
        self.by_kind[kind] = self.by_kind.get(kind, 0) + len(data)
        path = os.path.join(self.root, rel)
        parent = os.path.dirname(path)
        if parent not in self.dirs:
            os.makedirs(parent, exist_ok=True)
            self.dirs.add(parent)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        self.files += 1
        self.bytes += len(data)
        if mode & 0o111:
            self.executables += 1

    def symlink(self, target, rel):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.makedirs(os.path.normpath(os.path.join(os.path.dirname(path), target)) if target.startswith("..") else os.path.dirname(path), exist_ok=True)
        os.symlink(target, path)
        self.symlinks += 1


def make_dirs(rng, count):
    """A nested directory layout under a few top-level folders, depth up to 7."""
    tops = ["src", "lib", "static", "templates", "vendor", "locale", "docs", "plugins", "migrations", "app"]
    dirs = list(tops)
    while len(dirs) < count:
        parent = rng.choice(dirs)
        if parent.count("/") >= 6:
            continue
        name = ident(rng, rng.choice((1, 1, 2)))
        candidate = f"{parent}/{name}"
        if candidate not in dirs:
            dirs.append(candidate)
    return dirs


def generate(out, scale, seed):
    rng = random.Random(seed)
    pools = make_line_pools(rng)
    w = Writer(out)
    dirs = make_dirs(rng, max(12, int(DIRS * scale)))
    kinds = [k for k in SMALL_KINDS for _ in range(k[2])]
    used = set()

    def unique(rel):
        base, n = rel, 1
        while rel in used:
            n += 1
            root, ext = os.path.splitext(base)
            rel = f"{root}_{n}{ext}"
        used.add(rel)
        return rel

    # Small source-like files; some are duplicates of earlier ones.
    small = []
    for i in range(max(10, round(SMALL_FILES * scale))):
        ext, pool, _ = rng.choice(kinds)
        rel = unique(f"{rng.choice(dirs)}/{ident(rng)}.{ext}")
        if small and rng.random() < DUPLICATE_FRACTION:
            data = rng.choice(small)
            w.duplicates += 1
        else:
            size = lognormal_size(rng, 4096, 1.0, 60, 256 * 1024)
            data = text_bytes(rng, pools, pool, size, f"// {rel}")
            if len(small) < 200:
                small.append(data)
        w.write(rel, data, kind="small_text")

    # Medium assets: compressible bundles and poorly compressible images/fonts/archives.
    for i in range(max(4, round(MEDIUM_FILES * scale))):
        size = lognormal_size(rng, 160 * 1024, 0.9, 32 * 1024, 4 * MIB)
        if rng.random() < 0.6:
            ext, pool = rng.choice(MEDIUM_TEXT)
            rel = unique(f"{rng.choice(dirs)}/{ident(rng)}.{ext}")
            w.write(rel, text_bytes(rng, pools, pool, size, f"/* {rel} */"), kind="medium_text")
        else:
            ext = rng.choice(MEDIUM_BIN)
            rel = unique(f"{rng.choice(dirs)}/{ident(rng)}.{ext}")
            w.write(rel, random_bytes(rng, size), kind="medium_binary")

    # Executables: scripts and a few native binaries.
    n_exec = max(2, round(EXEC_FILES * scale))
    for i in range(n_exec):
        if i % 8 == 7:
            rel = unique(f"bin/{ident(rng)}")
            data = b"\x7fELF\x02\x01\x01" + random_bytes(rng, lognormal_size(rng, 2 * MIB, 0.5, 256 * 1024, 8 * MIB))
        else:
            rel = unique(f"bin/{ident(rng)}{rng.choice(('', '.sh', '.py'))}")
            data = b"#!/bin/sh\nset -eu\n" + text_bytes(rng, pools, "py", lognormal_size(rng, 3000, 0.7, 200, 40000), "# script")
        w.write(rel, data, 0o755, kind="executable")

    # Large blobs (models, databases, native libraries): random bytes.
    n_large = max(1, round(len(LARGE_SIZES_MIB) * scale))
    total_large = sum(LARGE_SIZES_MIB) * MIB * scale
    weights = LARGE_SIZES_MIB[:n_large]
    names = ["lib/native/libcore.so.3", "data/models/encoder.bin", "data/geo/cities.db", "data/models/ranker.bin",
             "vendor/blobs/assets.pak", "data/index/search.idx"]
    for i in range(n_large):
        size = int(total_large * weights[i] / sum(weights))
        w.write(names[i], random_bytes(rng, size), kind="large_random")

    # A few symlinks, all pointing inside the tree.
    w.symlink("libcore.so.3", "lib/native/libcore.so")
    if n_exec:
        first_bin = sorted(r for r in used if r.startswith("bin/"))[0]
        w.symlink(os.path.basename(first_bin), "bin/run")
    w.symlink("../templates", "static/templates")

    return {
        "files": w.files,
        "bytes": w.bytes,
        "dirs": len(set(d for d in w.dirs)),
        "executables": w.executables,
        "symlinks": w.symlinks,
        "duplicates": w.duplicates,
        "bytes_by_kind": dict(sorted(w.by_kind.items())),
        "scale": scale,
        "seed": seed,
    }


def mutate(src, out, percent, seed, copy):
    rng = random.Random(seed * 7919 + 1)
    files, links, dirs = [], [], []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, src)
        dirs.append(rel_dir)
        for name in sorted(filenames) + sorted(d for d in dirnames if os.path.islink(os.path.join(dirpath, d))):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if os.path.islink(os.path.join(src, rel)):
                links.append(rel)
            else:
                files.append(rel)
    files.sort()
    n = max(1, round(len(files) * percent / 100))
    changed = set(rng.sample(files, n))
    for d in dirs:
        os.makedirs(os.path.join(out, d), exist_ok=True)
    changed_bytes = total = 0
    for rel in files:
        s, d = os.path.join(src, rel), os.path.join(out, rel)
        st = os.stat(s)
        total += st.st_size
        if rel in changed:
            with open(s, "rb") as f:
                data = bytearray(f.read())
            # Rewrite a stretch at a random place and append a line: a typical edit.
            at = rng.randrange(len(data) + 1)
            patch = f"\n// changed in the next release {rng.getrandbits(64):016x}\n".encode()
            data[at : at + min(len(patch), len(data) - at)] = patch
            with open(d, "wb") as f:
                f.write(data)
            os.chmod(d, st.st_mode & 0o777)
            changed_bytes += len(data)
        elif copy:
            shutil.copy2(s, d)
        else:
            os.link(s, d)
    for rel in links:
        os.symlink(os.readlink(os.path.join(src, rel)), os.path.join(out, rel))
    return {"files": len(files), "bytes": total, "changed_files": n, "changed_bytes": changed_bytes,
            "percent": percent, "seed": seed}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output directory (must not exist, or be empty)")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies file counts and sizes (default 1: ~20k files, ~1 GiB)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--mutate-from", metavar="DIR", help="make OUT a copy of DIR with --percent of its files changed")
    p.add_argument("--percent", type=float, default=1.0, help="with --mutate-from: share of files to change (default 1)")
    p.add_argument("--copy", action="store_true", help="with --mutate-from: copy unchanged files instead of hardlinking")
    args = p.parse_args()
    if os.path.exists(args.out) and os.listdir(args.out):
        sys.exit(f"gen-tree.py: {args.out} exists and is not empty")
    if args.scale <= 0:
        sys.exit("gen-tree.py: --scale must be positive")
    os.makedirs(args.out, exist_ok=True)
    if args.mutate_from:
        summary = mutate(args.mutate_from, args.out, args.percent, args.seed, args.copy)
    else:
        summary = generate(args.out, args.scale, args.seed)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
