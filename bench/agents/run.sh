#!/usr/bin/env bash
# Agents benchmark: time from `depot config set` to every agent `active`, for N agents following
# one configuration of three layers (base ~32 MiB, app ~4 MiB, conf a few small files), and the
# bytes each agent downloads when only the small layer changes. 127.0.0.1 only; every loop and wait
# is bounded; it stops the processes it started. Raw results go to $WORK/results-*/ (machine.txt,
# setup.jsonl, rounds.jsonl, stop.jsonl, cpu.txt, quiet.txt, top.txt, summary.md); the summary
# replaces the block between <!-- agents:begin --> and <!-- agents:end --> in docs/benchmarks.md.
#
#   bench/agents/run.sh                                   # N = 1, 10, 100; 5 rounds each (3 minutes when quiet)
#   AGENTS="1 10" ROUNDS=2 DOC= bench/agents/run.sh       # smoke run, docs untouched
#
# Settings (environment): AGENTS ("1 10 100"), ROUNDS (5: configuration changes per N), WORK
# (/tmp/agentbench-run), DEPOT (a depot binary; default: a copy of target/release/depot in WORK),
# DEPOT_SOURCE (what DEPOT was built from, for the report; default: this checkout's commit), DOC
# (docs/benchmarks.md; empty: do not write it), POLL_MS (25: status poll interval), KEEP_HOSTS
# (non-empty: keep the agents' release roots), QUIET_WAIT (60: seconds to wait, before each
# measurement, for the rest of the machine to use less than QUIET_MAX (25) % of one core; the run
# goes on, noting it, when it does not), RETRIES (2) and NOISE_MAX (10): a change during which
# processes other than the benchmark's (and the kernel's threads) used more than NOISE_MAX % of the
# machine's CPU is done again, at most RETRIES times; the report keeps the last attempt.
#
# For each N: a fresh `depot serve`, the layers pushed, configuration `bench` created, one agent
# token, N `depot agent` processes (no hooks, no health check), each with its own release root.
# Once all are active, ROUNDS times: `depot config set bench base:1.0.0 app:1.0.0 conf:1.0.K`
# (a conf version not seen before) and poll until all N are active on the new revision (see
# rounds.py; a noisy change is repeated with the next K). Then SIGTERM to the agents and the
# registry. Needs a release build (cargo build --release -p depot) and python3.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# log, stop_pid, cpu_snapshot, busy_centicores, wait_quiet, top_cpu
source "$HERE/../lib.sh"
WORK=${WORK:-/tmp/agentbench-run}
AGENTS=${AGENTS:-"1 10 100"}
ROUNDS=${ROUNDS:-5}
POLL_MS=${POLL_MS:-25}
RETRIES=${RETRIES:-2}
NOISE_MAX=${NOISE_MAX:-10}
QUIET_WAIT=${QUIET_WAIT:-60}
QUIET_MAX=${QUIET_MAX:-25}
DOC=${DOC-$ROOT/docs/benchmarks.md}
RESULTS=${RESULTS:-$WORK/results-$(date -u +%Y%m%dT%H%M%SZ)}
STARTED=$EPOCHREALTIME


for tool in python3 sha256sum findmnt; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 1; }
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: ROUNDS must be a positive number" >&2; exit 1; }
[[ $RETRIES =~ ^[0-9]+$ ]] || { echo "run.sh: RETRIES must be a number" >&2; exit 1; }
for n in $AGENTS; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: AGENTS must be positive numbers (got $n)" >&2; exit 1; }
done

mkdir -p "$WORK" "$RESULTS"
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

# Each agent holds one long-poll connection (and briefly a download or a report); the registry one
# socket per agent.
max_n=0; total_n=0
for n in $AGENTS; do (( n > max_n )) && max_n=$n; total_n=$((total_n + n)); done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < 4 * max_n + 256 )); then
    echo "run.sh: open-file limit $(ulimit -n) is too low for $max_n agents" >&2; exit 1
fi

PIDS=()        # the registry
AGENT_PIDS=()  # the agents of the current N
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

# start_depot DIR: sets SRV_PID, SRV_URL, TOKEN.
start_depot() {
    local dir=$1
    rm -rf "$dir"; mkdir -p "$dir"
    # --max-versions 0: keep every pushed version (the run pushes more `conf` versions than the
    # default retention of 10 before the configuration uses them).
    "$DEPOT" serve --listen 127.0.0.1:0 --data "$dir" --max-versions 0 2>"$dir.log" &
    SRV_PID=$!; PIDS+=("$SRV_PID")
    SRV_URL=
    for _ in $(seq 100); do
        SRV_URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$dir.log" || true)
        [[ -n $SRV_URL && -s $dir/admin.token ]] && break
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $SRV_URL && -s $dir/admin.token ]] || { echo "depot serve did not start:" >&2; cat "$dir.log" >&2; exit 1; }
    TOKEN=$(cat "$dir/admin.token")
}
stop_depot() {
    local p keep=()
    stop_pid "$SRV_PID"
    for p in "${PIDS[@]}"; do [[ $p == "$SRV_PID" ]] || keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}


# ---------------------------------------------------------------------------------------------
# The layers: trees generated once (kept in WORK/trees, keyed by the generator's hash) and packed
# once into archives, so that every N pushes the same digests.
gen=$HERE/gen-layers.py
gen_hash=$(sha256sum "$gen" | cut -c1-12)
TREES=$WORK/trees-$gen_hash
# One `conf` version per change, repeats included: 1.0.1, 1.0.2, ... (1.0.0 is the starting one).
CONFS=$((ROUNDS * (RETRIES + 1)))
ARCH=$WORK/archives-$gen_hash-c$CONFS
if [[ ! -d $TREES ]]; then
    log "generating the layers' trees"
    rm -rf "$WORK"/trees-* "$TREES.tmp"; mkdir -p "$TREES.tmp"
    python3 "$gen" "$TREES.tmp/base" base >/dev/null
    python3 "$gen" "$TREES.tmp/app" app >/dev/null
    mv "$TREES.tmp" "$TREES"
fi
for k in $(seq 0 "$CONFS"); do
    [[ -d $TREES/conf-1.0.$k ]] || python3 "$gen" "$TREES/conf-1.0.$k" conf --version "1.0.$k" >/dev/null
done
if [[ ! -d $ARCH ]]; then
    log "packing the layers"
    rm -rf "$WORK"/archives-* "$ARCH.tmp"; mkdir -p "$ARCH.tmp"
    "$DEPOT" pack "$TREES/base" --version 1.0.0 -o "$ARCH.tmp/base-1.0.0.tar.zst" >/dev/null
    "$DEPOT" pack "$TREES/app" --version 1.0.0 -o "$ARCH.tmp/app-1.0.0.tar.zst" >/dev/null
    for k in $(seq 0 "$CONFS"); do
        "$DEPOT" pack "$TREES/conf-1.0.$k" --version "1.0.$k" -o "$ARCH.tmp/conf-1.0.$k.tar.zst" >/dev/null
    done
    mv "$ARCH.tmp" "$ARCH"
fi
{
    for layer in base app conf; do
        tree=$TREES/$layer; [[ $layer == conf ]] && tree=$TREES/conf-1.0.0
        archive=$ARCH/$layer-1.0.0.tar.zst
        printf '{"layer":"%s","files":%s,"tree_bytes":%s,"archive_bytes":%s}\n' "$layer" \
            "$(find "$tree" -type f | wc -l)" "$(find "$tree" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')" \
            "$(stat -c %s "$archive")"
    done
} > "$RESULTS/layers.jsonl"
cat "$RESULTS/layers.jsonl" >&2

# Room for every agent's root: its cached archives and the unpacked tree (the content store), times
# 1.5 for the releases' directories and the configuration changes; all N are kept until the end.
need_kib=$(python3 - "$RESULTS/layers.jsonl" "$total_n" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
per = sum(r["archive_bytes"] + r["tree_bytes"] for r in rows)
print(int(per * 1.5 * int(sys.argv[2]) / 1024) + 1024 * 1024)
EOF
)
free_kib=$(df -Pk "$WORK" | awk 'NR == 2 {print $4}')
if (( free_kib < need_kib )); then
    echo "run.sh: $((free_kib / 1024)) MiB free under $WORK; $((need_kib / 1024)) MiB needed for $total_n agents" >&2; exit 1
fi

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
    echo "rounds: $ROUNDS"
    echo "poll_ms: $POLL_MS"
    echo "quiet: up to $QUIET_WAIT s for < $QUIET_MAX% of a core"
    echo "quiet_max: $QUIET_MAX"
    echo "retries: $RETRIES"
    echo "noise_max: $NOISE_MAX"
} > "$RESULTS/params.txt"
cat "$RESULTS/machine.txt" >&2
: >"$RESULTS/cpu.txt"
: >"$RESULTS/setup.jsonl"
: >"$RESULTS/rounds.jsonl"
: >"$RESULTS/stop.jsonl"
: >"$RESULTS/status.jsonl"
top_cpu start
cpu_snapshot start

HOSTS=$WORK/hosts
rm -rf "$HOSTS" "$WORK"/registry-*
mkdir -p "$HOSTS"
sync

for n in $AGENTS; do
    log "N=$n: registry, layers, configuration"
    start_depot "$WORK/registry-$n"
    export DEPOT_REGISTRY=$SRV_URL DEPOT_TOKEN=$TOKEN
    {
        "$DEPOT" push base 1.0.0 "$ARCH/base-1.0.0.tar.zst"
        "$DEPOT" push app 1.0.0 "$ARCH/app-1.0.0.tar.zst"
        for k in $(seq 0 "$CONFS"); do "$DEPOT" push conf "1.0.$k" "$ARCH/conf-1.0.$k.tar.zst"; done
        "$DEPOT" config create bench --layer base:1.0.0 --layer app:1.0.0 --layer conf:1.0.0
    } >"$WORK/registry-$n.setup.log" 2>&1 || { cat "$WORK/registry-$n.setup.log" >&2; exit 1; }
    AGENT_TOKEN=$("$DEPOT" token create agents --role agent --config 'bench*' 2>>"$WORK/registry-$n.setup.log")
    unset DEPOT_REGISTRY DEPOT_TOKEN

    # N agents, each on its own root; one token reports for all the hosts.
    log "N=$n: starting $n agents"
    hosts=$HOSTS/n$n
    mkdir -p "$hosts"
    t_start=$EPOCHREALTIME
    for i in $(seq "$n"); do
        DEPOT_REGISTRY=$SRV_URL DEPOT_TOKEN=$AGENT_TOKEN DEPOT_AGENT_SETTINGS=$WORK/agent.toml \
            "$DEPOT" agent --config bench --root "$hosts/h$i" --name "h$i" 2>"$hosts/h$i.log" &
        AGENT_PIDS+=("$!")
    done
    printf '%s\n' "${AGENT_PIDS[@]}" > "$RESULTS/pids-$n.txt"
    # The first deploy: every agent downloads the three layers and unpacks them.
    if ! out=$(python3 "$HERE/rounds.py" wait --url "$SRV_URL" --token "$TOKEN" --config bench --n "$n" \
            --timeout $((120 + 6 * n))); then
        echo "run.sh: the $n agents did not all become active; their logs are in $hosts" >&2; exit 1
    fi
    T_START=$t_start python3 -c 'import json,os,sys,time; d=json.loads(sys.stdin.read()); d["from_start_s"]=round(time.time()-float(os.environ["T_START"]),3); print(json.dumps(d))' \
        <<<"$out" | tee -a "$RESULTS/setup.jsonl" >&2
    du -sk "$hosts/h1" | awk -v n="$n" '{printf "{\"n\":%d,\"root_kib\":%d}\n", n, $1}' >> "$RESULTS/disk.jsonl"

    k=0
    for round in $(seq "$ROUNDS"); do
        for attempt in $(seq 0 "$RETRIES"); do
            k=$((k + 1))
            sync
            wait_quiet "N=$n round $round"
            top_cpu "N=$n round $round"
            log "N=$n: round $round of $ROUNDS$( (( attempt )) && echo ", again ($attempt)") (conf:1.0.$k)"
            rc=0
            python3 "$HERE/rounds.py" round --url "$SRV_URL" --token "$TOKEN" --config bench --n "$n" \
                --depot "$DEPOT" --round "$round" --attempt "$attempt" --pids "$RESULTS/pids-$n.txt" \
                --server-pid "$SRV_PID" --poll-ms "$POLL_MS" --timeout $((60 + n)) --busy-before "$QUIET_BUSY" \
                --noise-max "$NOISE_MAX" --expect-bytes "$(stat -c %s "$ARCH/conf-1.0.$k.tar.zst")" \
                --layer base:1.0.0 --layer app:1.0.0 --layer "conf:1.0.$k" >> "$RESULTS/rounds.jsonl" || rc=$?
            python3 -c 'import json,sys; d=json.loads(sys.stdin.readlines()[-1]); d.pop("per_host_ms"); print(json.dumps(d))' \
                < "$RESULTS/rounds.jsonl" >&2 || true
            (( rc == 0 )) || { echo "run.sh: round $round with $n agents did not finish (see $hosts/*.log)" >&2; exit 1; }
            # What `depot status` says, as a cross-check of the poll.
            DEPOT_REGISTRY=$SRV_URL DEPOT_TOKEN=$TOKEN "$DEPOT" status bench --json > "$RESULTS/status-$n.json"
            N=$n ROUND=$round python3 -c 'import json,os,sys
a = json.load(sys.stdin)
print(json.dumps({"n": int(os.environ["N"]), "round": int(os.environ["ROUND"]), "agents": len(a),
                  "active_current": sum(1 for x in a if x["state"] == "active" and x["current"])}))' \
                < "$RESULTS/status-$n.json" >> "$RESULTS/status.jsonl"
            # A change during which other processes used much of the machine is done again.
            tail -1 "$RESULTS/rounds.jsonl" | grep -q '"noisy": true' || break
            if (( attempt < RETRIES )); then
                log "N=$n: other processes used more than $NOISE_MAX% of the machine during that change: again"
            fi
        done
    done
    top_cpu "N=$n end"

    log "N=$n: stopping the agents (SIGTERM)"
    stop_agents
    printf '{"n":%d,"stop_s":%s,"killed":%d,"failed_exit":%d,"warnings":%d}\n' "$n" "$STOP_S" "$STOP_KILLED" \
        "$STOP_FAILED" "$(cat "$hosts"/h*.log | grep -c -i -E 'warning|error' || true)" | tee -a "$RESULTS/stop.jsonl" >&2
    mkdir -p "$RESULTS/logs-$n"
    cp "$hosts/h1.log" "$hosts/h$n.log" "$RESULTS/logs-$n/" 2>/dev/null || true
    stop_depot
    cp "$WORK/registry-$n.log" "$RESULTS/logs-$n/registry.log" 2>/dev/null || true
done

top_cpu end
cpu_snapshot end
echo "loadavg_end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS/machine.txt"
echo "duration_s: $(python3 -c "import sys; print(int(float(sys.argv[2]) - float(sys.argv[1])))" "$STARTED" "$EPOCHREALTIME")" >> "$RESULTS/machine.txt"

doc_args=()
[[ -n $DOC ]] && doc_args=(--doc "$DOC")
python3 "$HERE/report.py" "$RESULTS" "${doc_args[@]+"${doc_args[@]}"}" > "$RESULTS/summary.md"
ln -sfn "$RESULTS" "$WORK/last-results"
cat "$RESULTS/summary.md"
if (( ${#doc_args[@]} )); then log "wrote the agents section of $DOC"; else log "docs not written (DOC empty)"; fi
if [[ -z ${KEEP_HOSTS:-} ]]; then
    log "removing the agents' roots"
    rm -rf "$HOSTS" "$WORK"/registry-*
fi
log "results in $RESULTS"
