#!/usr/bin/env bash
# Rollout benchmark: what a rolling rollout (canary 0, batches of 10%, bake 0) costs over the
# agents' own deploy time, against the same change sent to every agent at once, with N agents
# (100) following one configuration of two small layers. The two strategies alternate on the same
# registry and agents, change after change. 127.0.0.1 only; every loop and wait is bounded; it
# stops the processes it started. Raw results go to $WORK/results-*/ (machine.txt, params.txt,
# layers.jsonl, setup.jsonl, calibrate.json, probe.json, changes.jsonl, stop.jsonl, strategy.log,
# cpu.txt, quiet.txt, top.txt, summary.md); the summary replaces the block between
# <!-- rollout:begin --> and <!-- rollout:end --> in docs/benchmarks.md.
#
#   bench/rollout/run.sh                          # 100 agents, 5 changes per strategy (~1 minute when quiet)
#   AGENTS=20 PAIRS=2 DOC= bench/rollout/run.sh   # smoke run, docs untouched
#
# Settings (environment): AGENTS (100), PAIRS (5: measured changes per strategy, alternating),
# WARMUP (3: unmeasured changes per strategy first, so that every measured change finds the
# agents past their default of 5 kept releases, pruning), BATCH (10%: the rolling strategy's
# --batch), WORK (/tmp/rolloutbench-run), DEPOT (a depot binary; default: a copy of target/release/depot in
# WORK), DEPOT_SOURCE (what DEPOT was built from, for the report; default: this checkout's commit),
# DOC (docs/benchmarks.md; empty: do not write it), POLL_MS (100: status poll interval),
# KEEP_HOSTS (non-empty: keep the agents' release roots), QUIET_WAIT (30: seconds to wait, before
# each change, for the rest of the machine to use less than QUIET_MAX (25) % of one core; the run
# goes on, noting it, when it does not), RETRIES (1) and NOISE_MAX (10): a change during which
# processes other than the benchmark's (and the kernel's threads) used more than NOISE_MAX % of the
# machine's CPU is done again, at most RETRIES times; the report keeps the last attempt.
#
# Steps: a fresh `depot serve`, the layers pushed, configuration `bench` created, one agent token,
# N `depot agent` processes named h001, h002, ... (no hooks, no health check), each with its own
# release root; the first deploy. Then each change: the strategy set (`depot config rollout bench
# --all`, or `--canary 0 --batch BATCH --bake 0s`; untimed), a quiet machine waited for, and
# `depot config set bench base:1.0.0 app:1.0.K` (an app version not seen before) measured by
# change.py until all N are active on the new revision. Needs a release build
# (cargo build --release -p depot) and python3.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# log, stop_pid, cpu_snapshot, busy_centicores, wait_quiet, top_cpu
# shellcheck source=../lib.sh source-path=SCRIPTDIR
source "$HERE/../lib.sh"
WORK=${WORK:-/tmp/rolloutbench-run}
AGENTS=${AGENTS:-100}
PAIRS=${PAIRS:-5}
WARMUP=${WARMUP:-3}
BATCH=${BATCH:-10%}
POLL_MS=${POLL_MS:-100}
RETRIES=${RETRIES:-1}
NOISE_MAX=${NOISE_MAX:-10}
QUIET_WAIT=${QUIET_WAIT:-30}
QUIET_MAX=${QUIET_MAX:-25}
DOC=${DOC-$ROOT/docs/benchmarks.md}
RESULTS=${RESULTS:-$WORK/results-$(date -u +%Y%m%dT%H%M%SZ)}
STARTED=$EPOCHREALTIME
# change.py imports bench/agents/rounds.py: leave no __pycache__ in the checkout.
export PYTHONDONTWRITEBYTECODE=1

for tool in python3 findmnt; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 1; }
done
[[ $AGENTS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: AGENTS must be a positive number" >&2; exit 1; }
(( AGENTS <= 999 )) || { echo "run.sh: at most 999 agents (names h001 to h999)" >&2; exit 1; }
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: PAIRS must be a positive number" >&2; exit 1; }
[[ $WARMUP =~ ^[0-9]+$ ]] || { echo "run.sh: WARMUP must be a number" >&2; exit 1; }
[[ $RETRIES =~ ^[0-9]+$ ]] || { echo "run.sh: RETRIES must be a number" >&2; exit 1; }
[[ $BATCH =~ ^[1-9][0-9]*%?$ ]] || { echo "run.sh: BATCH must be a number of hosts or a percentage" >&2; exit 1; }

mkdir -p "$WORK" "$RESULTS"
# Our own copy, so that someone else's rebuild cannot change the binary mid-run (-p keeps the build's
# time, which the report shows).
if [[ -z ${DEPOT:-} ]]; then
    DEPOT=$WORK/depot
    [[ -x $ROOT/target/release/depot ]] || { echo "build first: cargo build --release -p depot" >&2; exit 1; }
    if ! cmp -s "$ROOT/target/release/depot" "$DEPOT"; then
        cp -p "$ROOT/target/release/depot" "$DEPOT.tmp" && mv "$DEPOT.tmp" "$DEPOT"
    fi
fi
[[ -x $DEPOT ]] || { echo "run.sh: $DEPOT is not an executable" >&2; exit 1; }
"$DEPOT" config rollout --help >/dev/null 2>&1 \
    || { echo "run.sh: $DEPOT has no \`config rollout\` command: rebuild it" >&2; exit 1; }

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < 4 * AGENTS + 256 )); then
    echo "run.sh: open-file limit $(ulimit -n) is too low for $AGENTS agents" >&2; exit 1
fi

PIDS=()        # the registry
AGENT_PIDS=()
# stop_agents: SIGTERM to every agent at once, up to 30 s for all to exit, then SIGKILL; sets
# STOP_S (seconds until the last exited), STOP_KILLED and STOP_FAILED (non-zero exit codes).
stop_agents() {
    local pid t0 left rc
    STOP_KILLED=0; STOP_FAILED=0
    t0=$EPOCHREALTIME
    (( ${#AGENT_PIDS[@]} )) || { STOP_S=0; return 0; }
    kill "${AGENT_PIDS[@]}" 2>/dev/null || true
    for _ in $(seq 300); do
        left=0
        for pid in "${AGENT_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && left=$((left + 1)); done
        (( left == 0 )) && break
        sleep 0.1
    done
    STOP_S=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$t0" "$EPOCHREALTIME")
    for pid in "${AGENT_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
            STOP_KILLED=$((STOP_KILLED + 1))
        fi
        rc=0; wait "$pid" 2>/dev/null || rc=$?
        (( rc == 0 )) || STOP_FAILED=$((STOP_FAILED + 1))
    done
    (( STOP_KILLED == 0 )) || echo "run.sh: $STOP_KILLED agents did not stop in 30 s; killed them" >&2
    AGENT_PIDS=()
}
cleanup() {
    local pid
    stop_agents
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# The layers: `base` (never changes) and one `app` version per change, warm-ups and repeats
# included: app 1.0.1, 1.0.2, ... (1.0.0 is the first deploy's).
gen=$HERE/gen-layer.py
gen_hash=$(sha256sum "$gen" | cut -c1-12)
APPS=$(( 2 * (WARMUP + PAIRS * (RETRIES + 1)) ))
TREES=$WORK/trees-$gen_hash
ARCH=$WORK/archives-$gen_hash
if [[ ! -d $TREES ]]; then
    rm -rf "$WORK"/trees-* "$WORK"/archives-*
    mkdir -p "$TREES"
fi
mkdir -p "$ARCH"
[[ -d $TREES/base ]] || python3 "$gen" "$TREES/base" base >/dev/null
[[ -f $ARCH/base-1.0.0.tar.zst ]] || "$DEPOT" pack "$TREES/base" --version 1.0.0 -o "$ARCH/base-1.0.0.tar.zst" >/dev/null
for k in $(seq 0 "$APPS"); do
    [[ -d $TREES/app-1.0.$k ]] || python3 "$gen" "$TREES/app-1.0.$k" app --version "1.0.$k" >/dev/null
    [[ -f $ARCH/app-1.0.$k.tar.zst ]] \
        || "$DEPOT" pack "$TREES/app-1.0.$k" --version "1.0.$k" -o "$ARCH/app-1.0.$k.tar.zst" >/dev/null
done
{
    for layer in base app; do
        tree=$TREES/$layer; [[ $layer == app ]] && tree=$TREES/app-1.0.0
        printf '{"layer":"%s","files":%s,"tree_bytes":%s,"archive_bytes":%s}\n' "$layer" \
            "$(find "$tree" -type f | wc -l)" "$(find "$tree" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')" \
            "$(stat -c %s "$ARCH/$layer-1.0.0.tar.zst")"
    done
} > "$RESULTS/layers.jsonl"
cat "$RESULTS/layers.jsonl" >&2

# The agents read no settings file but this empty one (not /etc/depot/agent.toml).
: > "$WORK/agent.toml"

if [[ -n ${DEPOT_SOURCE:-} ]]; then
    commit=$DEPOT_SOURCE
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
    echo "open files: $(ulimit -n)"
    echo "loadavg_start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RESULTS/machine.txt"
{
    echo "agents: $AGENTS"
    echo "pairs: $PAIRS"
    echo "warmup: $WARMUP"
    echo "batch: $BATCH"
    echo "poll_ms: $POLL_MS"
    echo "quiet: up to $QUIET_WAIT s for < $QUIET_MAX% of a core"
    echo "quiet_max: $QUIET_MAX"
    echo "retries: $RETRIES"
    echo "noise_max: $NOISE_MAX"
} > "$RESULTS/params.txt"
cat "$RESULTS/machine.txt" >&2
: >"$RESULTS/cpu.txt"
: >"$RESULTS/changes.jsonl"
top_cpu start
cpu_snapshot start

# ---------------------------------------------------------------------------------------------
# The registry, the configuration and the agents.
HOSTS=$WORK/hosts
REG=$WORK/registry
rm -rf "$HOSTS" "$REG" "$REG.log"
mkdir -p "$HOSTS" "$REG"
sync

log "registry, layers, configuration"
"$DEPOT" serve --listen 127.0.0.1:0 --data "$REG" --max-versions 0 2>"$REG.log" &
SRV_PID=$!; PIDS+=("$SRV_PID")
SRV_URL=
for _ in $(seq 100); do
    SRV_URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$REG.log" || true)
    [[ -n $SRV_URL && -s $REG/admin.token ]] && break
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
done
[[ -n $SRV_URL && -s $REG/admin.token ]] || { echo "depot serve did not start:" >&2; cat "$REG.log" >&2; exit 1; }
TOKEN=$(cat "$REG/admin.token")
{
    export DEPOT_REGISTRY=$SRV_URL DEPOT_TOKEN=$TOKEN
    "$DEPOT" push base 1.0.0 "$ARCH/base-1.0.0.tar.zst"
    for k in $(seq 0 "$APPS"); do "$DEPOT" push app "1.0.$k" "$ARCH/app-1.0.$k.tar.zst"; done
    "$DEPOT" config create bench --layer base:1.0.0 --layer app:1.0.0
} >"$REG.setup.log" 2>&1 || { cat "$REG.setup.log" >&2; exit 1; }
AGENT_TOKEN=$(DEPOT_REGISTRY=$SRV_URL DEPOT_TOKEN=$TOKEN "$DEPOT" token create agents --role agent --config 'bench*' 2>>"$REG.setup.log")

log "starting $AGENTS agents"
t_start=$EPOCHREALTIME
for i in $(seq "$AGENTS"); do
    h=$(printf 'h%03d' "$i")
    DEPOT_REGISTRY=$SRV_URL DEPOT_TOKEN=$AGENT_TOKEN DEPOT_AGENT_SETTINGS=$WORK/agent.toml \
        "$DEPOT" agent --config bench --root "$HOSTS/$h" --name "$h" 2>"$HOSTS/$h.log" &
    AGENT_PIDS+=("$!")
done
printf '%s\n' "${AGENT_PIDS[@]}" > "$RESULTS/pids.txt"
if ! out=$(python3 "$HERE/../agents/rounds.py" wait --url "$SRV_URL" --token "$TOKEN" --config bench --n "$AGENTS" \
        --timeout $((120 + AGENTS))); then
    echo "run.sh: the $AGENTS agents did not all become active; their logs are in $HOSTS" >&2; exit 1
fi
T_START=$t_start python3 -c 'import json,os,sys,time; d=json.loads(sys.stdin.read()); d["from_start_s"]=round(time.time()-float(os.environ["T_START"]),3); print(json.dumps(d))' \
    <<<"$out" | tee "$RESULTS/setup.jsonl" >&2

# What one status poll costs the registry, to tell the poller's share of its CPU in a change.
sync
wait_quiet "calibration"
python3 "$HERE/change.py" calibrate --url "$SRV_URL" --token "$TOKEN" --config bench --server-pid "$SRV_PID" \
    | tee "$RESULTS/calibrate.json" >&2
# How long one download of a small archive takes, kept-alive connection or new (see change.py).
python3 "$HERE/change.py" probe --url "$SRV_URL" --token "$TOKEN" \
    --digest "$(sha256sum "$ARCH/app-1.0.0.tar.zst" | cut -d' ' -f1)" > "$RESULTS/probe.json"

# ---------------------------------------------------------------------------------------------
# The changes: warm-ups (all, then rolling), then PAIRS pairs, the order alternating from pair to
# pair (all, rolling; rolling, all; ...) so that neither strategy always goes first.
set_strategy() {
    local args=(--all)
    [[ $1 == all ]] || args=(--canary 0 --batch "$BATCH" --bake 0s)
    DEPOT_REGISTRY=$SRV_URL DEPOT_TOKEN=$TOKEN "$DEPOT" config rollout bench "${args[@]}" >>"$RESULTS/strategy.log" 2>&1 \
        || { tail -5 "$RESULTS/strategy.log" >&2; exit 1; }
}
SCHEDULE=()
for _ in $(seq "$WARMUP"); do SCHEDULE+=("warmup:all" "warmup:rolling"); done
for pair in $(seq "$PAIRS"); do
    if (( pair % 2 )); then SCHEDULE+=("$pair:all" "$pair:rolling"); else SCHEDULE+=("$pair:rolling" "$pair:all"); fi
done
k=0
for item in "${SCHEDULE[@]}"; do
    label=${item%%:*}; strategy=${item#*:}
    for attempt in $(seq 0 "$RETRIES"); do
        k=$((k + 1))
        set_strategy "$strategy"
        sync
        wait_quiet "$label $strategy"
        top_cpu "$label $strategy"
        log "change $label, $strategy$( (( attempt )) && echo ", again ($attempt)") (app:1.0.$k)"
        rc=0
        python3 "$HERE/change.py" change --url "$SRV_URL" --token "$TOKEN" --config bench --n "$AGENTS" \
            --depot "$DEPOT" --strategy "$strategy" --label "$label" --attempt "$attempt" --pids "$RESULTS/pids.txt" \
            --server-pid "$SRV_PID" --poll-ms "$POLL_MS" --timeout $((120 + AGENTS)) --busy-before "$QUIET_BUSY" \
            --noise-max "$NOISE_MAX" --layer base:1.0.0 --layer "app:1.0.$k" >> "$RESULTS/changes.jsonl" || rc=$?
        python3 -c 'import json,sys
d = json.loads(sys.stdin.readlines()[-1])
keep = ("label", "strategy", "attempt", "revision", "outcome", "all_active_ms", "seen_ms", "slowest_total_ms",
        "server_cpu_s", "agents_cpu_s", "others_user_cpu_s", "noisy")
print(json.dumps({k: d.get(k) for k in keep}))' < "$RESULTS/changes.jsonl" >&2 || true
        (( rc == 0 )) || { echo "run.sh: change $label ($strategy) did not finish (see $HOSTS/*.log)" >&2; exit 1; }
        tail -1 "$RESULTS/changes.jsonl" | grep -q '"noisy": true' || break
        if (( attempt < RETRIES )); then
            log "other processes used more than $NOISE_MAX% of the machine during that change: again"
        fi
    done
done
top_cpu end

log "stopping the agents (SIGTERM)"
stop_agents
printf '{"stop_s":%s,"killed":%d,"failed_exit":%d,"warnings":%d}\n' "$STOP_S" "$STOP_KILLED" "$STOP_FAILED" \
    "$(cat "$HOSTS"/h*.log | grep -c -i -E 'warning|error' || true)" | tee "$RESULTS/stop.jsonl" >&2
mkdir -p "$RESULTS/logs"
cp "$HOSTS/h001.log" "$HOSTS/$(printf 'h%03d' "$AGENTS").log" "$RESULTS/logs/" 2>/dev/null || true
stop_pid "$SRV_PID"; PIDS=()
cp "$REG.log" "$RESULTS/logs/registry.log" 2>/dev/null || true

cpu_snapshot end
echo "loadavg_end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS/machine.txt"
echo "duration_s: $(python3 -c "import sys; print(int(float(sys.argv[2]) - float(sys.argv[1])))" "$STARTED" "$EPOCHREALTIME")" >> "$RESULTS/machine.txt"

doc_args=()
[[ -n $DOC ]] && doc_args=(--doc "$DOC")
python3 "$HERE/report.py" "$RESULTS" "${doc_args[@]+"${doc_args[@]}"}" > "$RESULTS/summary.md"
ln -sfn "$RESULTS" "$WORK/last-results"
cat "$RESULTS/summary.md"
if (( ${#doc_args[@]} )); then log "wrote the rollout section of $DOC"; else log "docs not written (DOC empty)"; fi
if [[ -z ${KEEP_HOSTS:-} ]]; then
    log "removing the agents' roots"
    rm -rf "$HOSTS" "$REG"
fi
log "results in $RESULTS"
