#!/usr/bin/env bash
# Delta benchmark: a 1% change of the ~1 GiB tree reaching an agent, as the frames it has not
# staged before, against a full download and deploy of the same release, on loopback and through
# a 100 Mbit/s cap that the benchmark applies (bench/delta/throttle.py, a TCP proxy). One registry,
# 127.0.0.1 only; every wait is bounded; it stops the processes it started. Raw results go to
# $WORK/results-*/ (machine.txt, params.txt, archives.jsonl, index.jsonl, calibrate.json,
# rounds.jsonl, cpu.txt, quiet.txt, top.txt, logs/, summary.md); the summary replaces the block
# between <!-- delta:begin --> and <!-- delta:end --> in docs/benchmarks.md.
#
#   bench/delta/run.sh                          # scale 1 (~1 GiB), 3 rounds: 7-20 minutes once the trees exist
#   bench/delta/run.sh --scale 0.05 --no-doc    # smoke run (~50 MiB), docs untouched
#   bench/delta/run.sh --help                   # every option
#
# A round is four measurements, in an order rotated from round to round: for each network
# (loopback, capped), FULL (a fresh release root deploys B: the whole archive is downloaded) and
# DELTA (a fresh root deploys A, untimed and over loopback, then B, timed: only the frames of B it
# has not staged are fetched). Each is one `depot agent --once`, timed whole (bench/delta/measure.py).
# Needs python3 and curl, and a depot binary: DEPOT=BIN, or target/release/depot (copied first).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/delta/run.sh [OPTIONS]

  --scale S       tree size factor: 1 = ~20,000 files, ~1 GiB (default 1; env SCALE)
  --rounds N      measurements of each (network, full/delta) pair (default 3; env ROUNDS)
  --mbit M        the cap, megabits a second each way (default 100; env MBIT)
  --percent P     share of files changed between release A and B (default 1; env PERCENT)
  --seed N        generator seed (default 42; env SEED)
  --doc FILE      the report (default docs/benchmarks.md; env DOC)
  --no-doc        do not write the report into a document (DOC=)
  --keep-roots    keep the release roots and the registry's data at the end (KEEP_ROOTS=1)
  -h, --help      this help

Environment: WORK (/tmp/deltabench-run), DEPOT (a depot binary; default: a copy of
target/release/depot in WORK), DEPOT_SOURCE (what DEPOT was built from, for the report; default:
this checkout's commit), TREE_CACHE (bench/work/trees: the trees bench/run.sh keeps, reused when
their stamp matches), QUIET_WAIT (30: seconds to wait, before each measurement, for the rest of
the machine to use less than QUIET_MAX (25) % of one core; the run goes on, noting it, when it
does not), RETRIES (2) and NOISE_MAX (10): a measurement during which processes other than the
benchmark's used more than NOISE_MAX % of the machine in user space is done again, on another
fresh root, at most RETRIES times; the report keeps the last attempt. VERIFY (1: compare each
delta-deployed release with tree B, untimed; 0: skip).
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# log, stop_pid, cpu_snapshot, busy_centicores, wait_quiet, top_cpu
# shellcheck source=../lib.sh source-path=SCRIPTDIR
source "$HERE/../lib.sh"
SCALE=${SCALE:-1}
ROUNDS=${ROUNDS:-3}
MBIT=${MBIT:-100}
PERCENT=${PERCENT:-1}
SEED=${SEED:-42}
DOC=${DOC-$ROOT/docs/benchmarks.md}
KEEP_ROOTS=${KEEP_ROOTS:-}
WORK=${WORK:-/tmp/deltabench-run}
TREE_CACHE=${TREE_CACHE:-$ROOT/bench/work/trees}
QUIET_WAIT=${QUIET_WAIT:-30}
QUIET_MAX=${QUIET_MAX:-25}
VERIFY=${VERIFY:-1}
RETRIES=${RETRIES:-2}
NOISE_MAX=${NOISE_MAX:-10}
while (($#)); do
    case $1 in
        --scale) SCALE=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --mbit) MBIT=$2; shift 2 ;;
        --percent) PERCENT=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --doc) DOC=$(realpath -m "$2"); shift 2 ;;
        --no-doc) DOC=; shift ;;
        --keep-roots) KEEP_ROOTS=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rounds must be a positive number" >&2; exit 2; }
[[ $RETRIES =~ ^[0-9]+$ ]] || { echo "run.sh: RETRIES must be a number" >&2; exit 2; }
[[ $SCALE =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "run.sh: --scale must be a positive number" >&2; exit 2; }
[[ $MBIT =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "run.sh: --mbit must be a positive number" >&2; exit 2; }
for tool in python3 curl sha256sum findmnt diff; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 1; }
done
RATE=$(python3 -c "import sys; print(int(float(sys.argv[1]) * 1e6 / 8))" "$MBIT")  # bytes a second
RESULTS=$WORK/results-$(date -u +%Y%m%dT%H%M%SZ)
STARTED=$EPOCHREALTIME
export PYTHONDONTWRITEBYTECODE=1

mkdir -p "$WORK" "$RESULTS/logs"
DEPOT_GIVEN=${DEPOT:-}
# Our own copy, so that someone else's rebuild cannot change the binary mid-run.
if [[ -z ${DEPOT:-} ]]; then
    DEPOT=$WORK/depot
    [[ -x $ROOT/target/release/depot ]] || { echo "build first: cargo build --release -p depot" >&2; exit 1; }
    if ! cmp -s "$ROOT/target/release/depot" "$DEPOT"; then
        cp "$ROOT/target/release/depot" "$DEPOT.tmp" && mv "$DEPOT.tmp" "$DEPOT"
    fi
fi
[[ -x $DEPOT ]] || { echo "run.sh: $DEPOT is not an executable" >&2; exit 1; }
"$DEPOT" agent --help >/dev/null 2>&1 || { echo "run.sh: $DEPOT has no \`agent\` command: rebuild it" >&2; exit 1; }

PIDS=()  # the registry and the proxy
cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# The trees: A, and B with PERCENT% of A's files changed. bench/run.sh's cached trees are reused
# when their stamp (generator hash and arguments) matches; otherwise they are generated, into that
# cache when the key is free there, else into WORK.
GEN=$ROOT/bench/gen-tree.py
KEY=scale-$SCALE-seed-$SEED-pct-$PERCENT
STAMP="$(sha256sum "$GEN" | cut -c1-16) scale=$SCALE seed=$SEED percent=$PERCENT"
TREES=$TREE_CACHE/$KEY
if [[ ! -f $TREES/stamp || $(cat "$TREES/stamp") != "$STAMP" ]]; then
    [[ -e $TREES ]] && TREES=$WORK/trees/$KEY
fi
if [[ -f $TREES/stamp && $(cat "$TREES/stamp") == "$STAMP" ]]; then
    log "reusing the trees in $TREES"
else
    rm -rf "$TREES"; mkdir -p "$TREES"
    log "generating release tree A (scale $SCALE) in $TREES"
    python3 "$GEN" "$TREES/a" --scale "$SCALE" --seed "$SEED" >"$TREES/a.json"
    log "generating release tree B ($PERCENT% of A's files changed)"
    python3 "$GEN" "$TREES/b" --mutate-from "$TREES/a" --percent "$PERCENT" --seed "$SEED" >"$TREES/b.json"
    echo "$STAMP" >"$TREES/stamp"
fi
cp "$TREES/a.json" "$RESULTS/tree-a.json"
cp "$TREES/b.json" "$RESULTS/tree-b.json"

# Every measurement's root is kept until the end (deleting many files right before creating many
# others slows the creation down on this machine's ext4): 4 roots a round, each about one tree.
# A repeated measurement needs another root (measure checks the room left before each repeat).
ROOT_KIB=$(python3 -c "import json, sys; print(int(json.load(open(sys.argv[1]))['bytes'] * 1.1 / 1024))" "$TREES/a.json")
need_kib=$(( (4 * ROUNDS + 4) * ROOT_KIB + 1024 * 1024 ))
free_kib=$(df -Pk "$WORK" | awk 'NR == 2 {print $4}')
if ((free_kib < need_kib)); then
    echo "run.sh: $((free_kib / 1024)) MiB free under $WORK; $((need_kib / 1024)) MiB needed" >&2; exit 1
fi

log "packing A and B"
ARCH=$WORK/archives
rm -rf "$ARCH" "$WORK/roots" "$WORK/registry" "$WORK/registry.secrets.key"
mkdir -p "$ARCH" "$WORK/roots"
"$DEPOT" pack "$TREES/a" --version 1.0.0 -o "$ARCH/web-1.0.0.tar.zst" --json >"$ARCH/a.json"
"$DEPOT" pack "$TREES/b" --version 1.1.0 -o "$ARCH/web-1.1.0.tar.zst" --json >"$ARCH/b.json"

# The agents read no settings file but this empty one (not /etc/depot/agent.toml).
: >"$WORK/agent.toml"

if [[ -n ${DEPOT_SOURCE:-} ]]; then
    commit=$DEPOT_SOURCE
elif [[ -n $DEPOT_GIVEN ]]; then
    commit="prebuilt $DEPOT_GIVEN, source not given (DEPOT_SOURCE); this checkout is at $(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
else
    commit="checkout at $(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
    [[ -n $(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null) ]] \
        && commit="$commit (working tree with uncommitted changes to the crates)"
fi
dev=$(findmnt -no SOURCE -T "$WORK" 2>/dev/null || echo '?')
{
    echo "date: $(date -u +%FT%TZ)"
    echo "nproc: $(nproc)"
    echo "clk_tck: $(getconf CLK_TCK)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    echo "filesystem: $(findmnt -no FSTYPE -T "$WORK" 2>/dev/null) on $dev ($(findmnt -no OPTIONS -T "$WORK" 2>/dev/null))"
    echo "depot: $("$DEPOT" --version 2>/dev/null || echo unknown), binary built $(date -u -r "$DEPOT" +%FT%TZ), $commit"
    echo "python: $(python3 --version 2>&1 | cut -d' ' -f2)"
    echo "curl: $(curl --version | head -1 | cut -d' ' -f1-2)"
    echo "loadavg_start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RESULTS/machine.txt"
{
    echo "scale: $SCALE"
    echo "rounds: $ROUNDS"
    echo "mbit: $MBIT"
    echo "rate: $RATE"
    echo "percent: $PERCENT"
    echo "seed: $SEED"
    echo "trees: $TREES"
    echo "quiet: up to $QUIET_WAIT s for < $QUIET_MAX% of a core"
    echo "verify: $VERIFY"
    echo "retries: $RETRIES"
    echo "noise_max: $NOISE_MAX"
    cmd="bench/delta/run.sh --scale $SCALE --rounds $ROUNDS --mbit $MBIT"
    [[ $PERCENT == 1 ]] || cmd+=" --percent $PERCENT"
    [[ $SEED == 42 ]] || cmd+=" --seed $SEED"
    [[ -n $DOC ]] || cmd+=" --no-doc"
    echo "command: $cmd"
} >"$RESULTS/params.txt"
cat "$RESULTS/machine.txt" >&2
: >"$RESULTS/cpu.txt"
: >"$RESULTS/rounds.jsonl"
top_cpu start
cpu_snapshot start

# ---------------------------------------------------------------------------------------------
# The registry: A as web 1.0.0, B as web 1.1.0, configuration web-prod, one agent token.
log "starting the registry"
DATA=$WORK/registry
mkdir -p "$DATA"
"$DEPOT" serve --listen 127.0.0.1:0 --data "$DATA" 2>"$RESULTS/logs/registry.log" &
SRV_PID=$!; PIDS+=("$SRV_PID")
SRV_URL=
for _ in $(seq 100); do
    SRV_URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$RESULTS/logs/registry.log" || true)
    [[ -n $SRV_URL && -s $DATA/admin.token ]] && break
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
done
[[ -n $SRV_URL && -s $DATA/admin.token ]] || { echo "depot serve did not start:" >&2; cat "$RESULTS/logs/registry.log" >&2; exit 1; }
TOKEN=$(cat "$DATA/admin.token")
admin() { DEPOT_REGISTRY=$SRV_URL DEPOT_TOKEN=$TOKEN timeout 600 "$DEPOT" "$@"; }
setup_failed() { echo "run.sh: setting up the registry failed:" >&2; cat "$RESULTS/logs/setup.log" >&2; exit 1; }
DIGEST_A=$(admin push web 1.0.0 "$ARCH/web-1.0.0.tar.zst" 2>>"$RESULTS/logs/setup.log") || setup_failed
DIGEST_B=$(admin push web 1.1.0 "$ARCH/web-1.1.0.tar.zst" 2>>"$RESULTS/logs/setup.log") || setup_failed
admin config create web-prod --layer web:1.0.0 >/dev/null 2>>"$RESULTS/logs/setup.log" || setup_failed
AGENT_TOKEN=$(admin token create bench --role agent --config 'web-*' 2>>"$RESULTS/logs/setup.log") || setup_failed
for v in a b; do
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); d["layer"] = sys.argv[2]; print(json.dumps(d))' \
        "$ARCH/$v.json" "$v"
done >"$RESULTS/archives.jsonl"
ARCHIVE_B_BYTES=$(stat -c %s "$ARCH/web-1.1.0.tar.zst")

# The frame indexes: the registry computes one on its first request. Their cold time is noted;
# the measurements find them computed, as a fleet's second host would. The agent requests B's
# index before fetching frames, so its size counts as transferred.
for v in a b; do
    digest=$DIGEST_A; [[ $v == b ]] && digest=$DIGEST_B
    cold=$(curl -sS --max-time 300 -o "$RESULTS/index-$v.json" -w '%{http_code} %{time_total}' \
        -H "Authorization: Bearer $TOKEN" "$SRV_URL/api/v1/blobs/$digest/frames")
    warm=$(curl -sS --max-time 60 -o /dev/null -w '%{http_code} %{time_total} %{size_download}' \
        -H "Authorization: Bearer $TOKEN" "$SRV_URL/api/v1/blobs/$digest/frames")
    [[ ${cold%% *} == 200 && ${warm%% *} == 200 ]] || { echo "run.sh: GET .../frames of $v answered $cold / $warm" >&2; exit 1; }
    python3 - "$RESULTS/index-$v.json" "$v" "$digest" "$cold" "$warm" <<'EOF'
import json, statistics, sys
index = json.load(open(sys.argv[1]))
cold, warm = sys.argv[4].split(), sys.argv[5].split()
frames = index["frames"]
print(json.dumps({"layer": sys.argv[2], "digest": sys.argv[3], "frames": len(frames), "size": index.get("size"),
                  "median_frame_bytes": statistics.median(f["compressed"] for f in frames),
                  "median_frame_decoded": statistics.median(f["decoded"] for f in frames),
                  "cold_s": float(cold[1]), "warm_s": float(warm[1]), "bytes": int(warm[2])}))
EOF
done >"$RESULTS/index.jsonl"
INDEX_B_BYTES=$(python3 -c 'import json, sys; print([json.loads(l) for l in open(sys.argv[1])][1]["bytes"])' "$RESULTS/index.jsonl")
cat "$RESULTS/archives.jsonl" "$RESULTS/index.jsonl" >&2

# ---------------------------------------------------------------------------------------------
# The cap: throttle.py between the agent and the registry, checked with one large range of B.
log "starting the $MBIT Mbit/s proxy"
python3 "$HERE/throttle.py" --target "${SRV_URL#http://}" --rate "$RATE" >"$RESULTS/logs/proxy.log" 2>&1 &
PROXY_PID=$!; PIDS+=("$PROXY_PID")
PROXY_URL=; STATS_URL=
for _ in $(seq 100); do
    if grep -q '^listening on' "$RESULTS/logs/proxy.log"; then
        PROXY_URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$RESULTS/logs/proxy.log" | head -1)
        STATS_URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$RESULTS/logs/proxy.log" | tail -1)
        break
    fi
    kill -0 "$PROXY_PID" 2>/dev/null || break
    sleep 0.1
done
[[ -n $PROXY_URL ]] || { echo "throttle.py did not start:" >&2; cat "$RESULTS/logs/proxy.log" >&2; exit 1; }
probe=$(( ARCHIVE_B_BYTES < 25000000 ? ARCHIVE_B_BYTES : 25000000 ))
got=$(curl -sS --max-time 120 -o /dev/null -r "0-$((probe - 1))" -w '%{http_code} %{size_download} %{time_total}' \
    -H "Authorization: Bearer $TOKEN" "$PROXY_URL/api/v1/blobs/$DIGEST_B")
read -r code size secs <<<"$got"
python3 - "$code" "$size" "$secs" "$RATE" "$probe" >"$RESULTS/calibrate.json" <<'EOF'
import json, sys
code, size, secs, rate, probe = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
print(json.dumps({"http": code, "asked": probe, "bytes": size, "seconds": secs, "rate": rate,
                  "bytes_per_s": round(size / secs) if secs else None, "of_cap": round(size / secs / rate, 3) if secs else None}))
EOF
cat "$RESULTS/calibrate.json" >&2
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
ok = d["http"] == 206 and d["bytes"] == d["asked"] and 0.8 <= d["of_cap"] <= 1.05
sys.exit(0 if ok else "run.sh: the cap does not hold (a range through the proxy: %s)" % d)' "$RESULTS/calibrate.json"

# ---------------------------------------------------------------------------------------------
# The measurements.
sync
top_cpu "before the rounds"
# A full deploy through the cap takes the archive's time at the cap; a loopback one seconds.
CAP_TIMEOUT=$(( ARCHIVE_B_BYTES * 3 / RATE + 300 ))
agent_untimed() { # ROOT NAME
    DEPOT_REGISTRY=$SRV_URL DEPOT_TOKEN=$AGENT_TOKEN DEPOT_AGENT_SETTINGS=$WORK/agent.toml timeout 600 \
        "$DEPOT" agent --config web-prod --name "$2" --once --root "$1" >/dev/null 2>>"$RESULTS/logs/$2.prepare.log"
}
# measure_once NETWORK KIND ROUND ATTEMPT: one measurement on a fresh root; appends its row to
# rounds.jsonl and sets NOISY (true when other processes used more than NOISE_MAX % of the machine
# in user space).
measure_once() {
    local net=$1 kind=$2 round=$3 attempt=$4 url=$SRV_URL stats=() timeout=300 rc=0
    local name=$net-$kind-r$round
    ((attempt == 0)) || name+=-again$attempt
    local root=$WORK/roots/$name
    if [[ $net == capped ]]; then
        url=$PROXY_URL; stats=(--stats "$STATS_URL" --proxy-pid "$PROXY_PID"); timeout=$CAP_TIMEOUT
    fi
    if [[ $kind == delta ]]; then
        # The host's earlier release: A, untimed, over loopback.
        admin config set web-prod web:1.0.0 >/dev/null 2>>"$RESULTS/logs/setup.log" || setup_failed
        agent_untimed "$root" "$name" || { echo "run.sh: deploying A on $root failed:" >&2; cat "$RESULTS/logs/$name.prepare.log" >&2; exit 1; }
    fi
    admin config set web-prod web:1.1.0 >/dev/null 2>>"$RESULTS/logs/setup.log" || setup_failed
    sync
    wait_quiet "$name"
    top_cpu "$name"
    log "round $round: $kind deploy of B over $net$( ((attempt)) && echo ", again ($attempt)")"
    python3 "$HERE/measure.py" --depot "$DEPOT" --url "$url" --registry "$SRV_URL" --admin-token "$TOKEN" \
        --agent-token "$AGENT_TOKEN" --root "$root" --name "$name" --settings "$WORK/agent.toml" \
        --stderr "$RESULTS/logs/$name.log" --network "$net" --kind "$kind" --round "$round" --attempt "$attempt" \
        --noise-max "$NOISE_MAX" --timeout "$timeout" --server-pid "$SRV_PID" --busy-before "$QUIET_BUSY" \
        "${stats[@]+"${stats[@]}"}" >"$RESULTS/row.json" || rc=$?
    cat "$RESULTS/row.json" >&2
    grep -h -e 'frames' -e 'whole' "$RESULTS/logs/$name.log" >&2 || true
    if ((rc != 0)); then
        echo "run.sh: the agent on $root did not activate B:" >&2; cat "$RESULTS/logs/$name.log" >&2; exit 1
    fi
    # The release the agent made is B's tree (plus the VERSION file depot adds); untimed.
    local verified=skipped
    if [[ $VERIFY == 1 && $kind == delta ]]; then
        if timeout 600 diff -rq --no-dereference -x VERSION "$TREES/b" "$root/releases/current/" \
            >"$RESULTS/logs/$name.diff" 2>&1; then
            verified=same
        else
            verified=differs
            echo "run.sh: the release on $root differs from tree B:" >&2; head -20 "$RESULTS/logs/$name.diff" >&2
        fi
    fi
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); d["verified"] = sys.argv[2]; d["index_bytes"] = int(sys.argv[3]); print(json.dumps(d))' \
        "$RESULTS/row.json" "$verified" "$INDEX_B_BYTES" >>"$RESULTS/rounds.jsonl"
    NOISY=false
    grep -q '"noisy": true' "$RESULTS/row.json" && NOISY=true
    rm -f "$RESULTS/row.json"
}
# measure NETWORK KIND ROUND: a measurement during which other processes used much of the machine
# is done again, on another fresh root, at most RETRIES times while the disk has room for it.
measure() {
    local attempt free_kib
    for attempt in $(seq 0 "$RETRIES"); do
        measure_once "$@" "$attempt"
        [[ $NOISY == true ]] || break
        ((attempt < RETRIES)) || break
        free_kib=$(df -Pk "$WORK" | awk 'NR == 2 {print $4}')
        if ((free_kib < ROOT_KIB + 2 * 1024 * 1024)); then
            log "other processes used more than $NOISE_MAX% of the machine, but the disk has no room to measure again"
            break
        fi
        log "other processes used more than $NOISE_MAX% of the machine during that measurement: again"
    done
}

PAIRS=("loopback full" "loopback delta" "capped full" "capped delta")
for round in $(seq "$ROUNDS"); do
    for i in 0 1 2 3; do
        # shellcheck disable=SC2086 # a pair is two words
        measure ${PAIRS[$(((i + round - 1) % 4))]} "$round"
    done
done

top_cpu end
cpu_snapshot end
cleanup
echo "loadavg_end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/machine.txt"
echo "duration_s: $(python3 -c "import sys; print(int(float(sys.argv[2]) - float(sys.argv[1])))" "$STARTED" "$EPOCHREALTIME")" >>"$RESULTS/machine.txt"

doc_args=()
[[ -n $DOC ]] && doc_args=(--doc "$DOC")
python3 "$HERE/report.py" "$RESULTS" "${doc_args[@]+"${doc_args[@]}"}" >"$RESULTS/summary.md"
ln -sfn "$RESULTS" "$WORK/last-results"
cat "$RESULTS/summary.md"
if ((${#doc_args[@]})); then log "wrote the delta section of $DOC"; else log "docs not written (--no-doc)"; fi
if [[ -z $KEEP_ROOTS ]]; then
    log "removing the release roots, the registry's data and the archives"
    rm -rf "$WORK/roots" "$DATA" "$DATA.secrets.key" "$ARCH"
fi
log "results in $RESULTS"
