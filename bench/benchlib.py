"""What the benchmark reports share: reading run.sh's raw files (machine.txt, *.jsonl, cpu.txt,
top.txt), the CPU other processes used during a run, quantiles, and replacing a report's section
between its markers in docs/benchmarks.md."""

import json
import os
import statistics
import sys
from pathlib import Path


def read_kv(path):
    """`key: value` lines (machine.txt, params.txt) as a dict; empty when the file is missing."""
    out = {}
    path = Path(path)
    if path.exists():
        for line in path.read_text().splitlines():
            k, sep, v = line.partition(": ")
            if sep:
                out[k.strip()] = v.strip()
    return out


def rows(path):
    """A JSON-lines file as a list; empty when the file is missing."""
    path = Path(path)
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []


def parse_clock(text):
    """`1m2.345s` (bash's `times`) in seconds."""
    minutes, seconds = text.rstrip("s").split("m")
    return int(minutes) * 60 + float(seconds)


def contention(res, machine):
    """CPU used by processes other than the benchmark's, and steal, between run.sh's start and
    end snapshots (cpu.txt); None without them."""
    path = Path(res) / "cpu.txt"
    if not path.exists():
        return None
    snaps = {}
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) >= 17 and f[2] == "cpu":
            snaps[f[0]] = (float(f[1]), [int(x) for x in f[3:13]], sum(parse_clock(x) for x in f[13:17]))
    if "start" not in snaps or "end" not in snaps:
        return None
    hz = int(machine.get("clk_tck", "100"))
    ncpu = int(machine.get("nproc", "1"))
    (t0, j0, own0), (t1, j1, own1) = snaps["start"], snaps["end"]
    d = [b - a for a, b in zip(j0, j1)]
    user, nice, system, idle, iowait, irq, softirq, steal = d[:8]
    busy = (user + nice + system + irq + softirq) / hz
    own = own1 - own0
    capacity = max(1e-9, (t1 - t0) * ncpu)
    return {
        "wall": t1 - t0,
        "capacity": capacity,
        "own": own,
        "foreign": max(0.0, busy - own),
        "foreign_share": max(0.0, busy - own) / capacity,
        "steal_share": steal / hz / capacity,
        "own_share": own / capacity,
    }


def busiest_others(res, ours):
    """The commands, other than `ours`, that used the most CPU in run.sh's top samples."""
    path = Path(res) / "top.txt"
    if not path.exists():
        return None
    seen = {}
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) >= 12 and f[0].isdigit():
            try:
                cpu = float(f[8])
            except ValueError:
                continue
            cmd = f[11]
            if cmd not in ours and cpu >= 5.0:
                seen[cmd] = max(seen.get(cmd, 0.0), cpu)
    samples = sum(1 for l in path.read_text().splitlines() if l.startswith("== "))
    if not seen:
        return f"none above 5% of a core in {samples} samples"
    top = sorted(seen.items(), key=lambda kv: -kv[1])[:4]
    return ", ".join(f"{c} (up to {v:.0f}% of a core)" for c, v in top) + f", in {samples} samples"


def quantile(xs, q):
    """Linear interpolation between the closest ranks; None for no values."""
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def med(xs):
    """The median of the values that are not None; None for none."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def verdict(ok):
    return "**met**" if ok else "**not met**"


def markers(name):
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def splice(doc, block, name):
    """Replaces section `name` (between its markers) in doc, or appends it; writes atomically."""
    begin, end = markers(name)
    doc = Path(doc)
    text = doc.read_text() if doc.exists() else ""
    b = text.find(begin)
    e = text.find(end, b + len(begin)) if b >= 0 else -1
    if b >= 0 and e >= 0:
        new = text[:b] + block + text[e + len(end):]
    elif b >= 0 or text.find(end) >= 0:
        sys.exit(f"report.py: {doc} has only one of the markers {begin} / {end}; fix it by hand")
    elif text.strip():
        new = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        new = block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_name(doc.name + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, doc)
