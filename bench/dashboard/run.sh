#!/usr/bin/env bash
# Dashboard benchmark (issue 19): the server-side time of the overview page (`GET /ui/`) of a
# registry with 50 pipelines of 3 stages (150 configurations), 50 standalone configurations (200
# in all) and 10 agents reporting on each (2,000), against the JSON API calls a client makes for
# the same information (`GET /api/v1/pipelines/{name}` per pipeline, `GET
# /api/v1/configs/{name}/agents` per standalone configuration, and the two lists), measured in the
# same run, alternating. 127.0.0.1 only; every loop and wait is bounded; it stops the registry it
# started. Raw results go to $WORK/results-*/ (machine.txt, params.txt, seed.json, page.jsonl,
# api.jsonl, calls.jsonl, measure.json, overview.html, cpu.txt, quiet.txt, top.txt, summary.md); the
# summary replaces the block between <!-- dashboard:begin --> and <!-- dashboard:end --> in
# docs/benchmarks.md (appended at the end when the markers are missing).
#
#   bench/dashboard/run.sh                                  # 50 samples of each (about 10 s when quiet)
#   PIPELINES=5 STANDALONE=5 REQUESTS=5 DOC= bench/dashboard/run.sh   # smoke run, docs untouched
#
# Settings (environment): PIPELINES (50), STANDALONE (50), AGENTS_PER_CONFIG (10), REQUESTS (50:
# measured samples of each kind), WARMUP (5: unmeasured samples of each first), THREADS (4:
# seeding's parallel clients), WORK (/tmp/dashbench-run), DEPOT (a depot binary; default: a copy
# of target/release/depot in WORK), DEPOT_SOURCE (what DEPOT was built from, for the report;
# default: this checkout's commit), DOC (docs/benchmarks.md; empty: do not write it), QUIET_WAIT
# (30: seconds to wait, before measuring, for the rest of the machine to use less than QUIET_MAX
# (25) % of one core; the run goes on, noting it, when it does not), AIM_MS (200).
#
# Steps: a fresh `depot serve` (SQLite, default settings); seed.py pushes the components, creates
# the pipelines and configurations with the CLI and sends every agent's report with the admin
# token; measure.py signs in to the dashboard with the admin token and times the page and the API
# calls (see its docstring); report.py writes the section. Needs a release build
# (cargo build --release -p depot) and python3.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# log, stop_pid, cpu_snapshot, busy_centicores, wait_quiet, top_cpu
# shellcheck source=../lib.sh source-path=SCRIPTDIR
source "$HERE/../lib.sh"
WORK=${WORK:-/tmp/dashbench-run}
PIPELINES=${PIPELINES:-50}
STANDALONE=${STANDALONE:-50}
AGENTS_PER_CONFIG=${AGENTS_PER_CONFIG:-10}
REQUESTS=${REQUESTS:-50}
WARMUP=${WARMUP:-5}
THREADS=${THREADS:-4}
QUIET_WAIT=${QUIET_WAIT:-30}
QUIET_MAX=${QUIET_MAX:-25}
AIM_MS=${AIM_MS:-200}
DOC=${DOC-$ROOT/docs/benchmarks.md}
RESULTS=${RESULTS:-$WORK/results-$(date -u +%Y%m%dT%H%M%SZ)}
STARTED=$EPOCHREALTIME
# report.py imports bench/benchlib.py: leave no __pycache__ in the checkout.
export PYTHONDONTWRITEBYTECODE=1

for tool in python3 findmnt; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 1; }
done
for var in PIPELINES STANDALONE AGENTS_PER_CONFIG REQUESTS THREADS AIM_MS; do
    [[ ${!var} =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: $var must be a positive number" >&2; exit 1; }
done
[[ $WARMUP =~ ^[0-9]+$ ]] || { echo "run.sh: WARMUP must be a number" >&2; exit 1; }
(( PIPELINES <= 999 && STANDALONE <= 999 && AGENTS_PER_CONFIG <= 99 )) \
    || { echo "run.sh: at most 999 pipelines, 999 standalone configurations, 99 agents each" >&2; exit 1; }

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
"$DEPOT" pipeline --help >/dev/null 2>&1 || { echo "run.sh: $DEPOT has no \`pipeline\` command: rebuild it" >&2; exit 1; }

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
    echo "loadavg_start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RESULTS/machine.txt"
{
    echo "pipelines: $PIPELINES"
    echo "standalone: $STANDALONE"
    echo "agents_per_config: $AGENTS_PER_CONFIG"
    echo "requests: $REQUESTS"
    echo "warmup: $WARMUP"
    echo "threads: $THREADS"
    echo "quiet: up to $QUIET_WAIT s for < $QUIET_MAX% of a core"
    echo "aim_ms: $AIM_MS"
} > "$RESULTS/params.txt"
cat "$RESULTS/machine.txt" >&2
: >"$RESULTS/cpu.txt"
: >"$RESULTS/quiet.txt"
: >"$RESULTS/top.txt"
top_cpu start
cpu_snapshot start

# A fresh registry.
DATA=$WORK/data
rm -rf "$DATA" "$DATA.secrets.key" "$WORK/trees"
mkdir -p "$DATA"
"$DEPOT" serve --listen 127.0.0.1:0 --data "$DATA" 2>"$WORK/serve.log" &
SRV_PID=$!; PIDS+=("$SRV_PID")
SRV_URL=
for _ in $(seq 100); do
    SRV_URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$WORK/serve.log" | head -1 || true)
    [[ -n $SRV_URL && -s $DATA/admin.token ]] && break
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
done
[[ -n $SRV_URL && -s $DATA/admin.token ]] || { echo "depot serve did not start:" >&2; cat "$WORK/serve.log" >&2; exit 1; }
TOKEN=$(cat "$DATA/admin.token")
log "registry at $SRV_URL (pid $SRV_PID)"

log "seeding: $PIPELINES pipelines × 3 stages, $STANDALONE standalone configurations, $AGENTS_PER_CONFIG agents each"
t_seed=$EPOCHREALTIME
timeout 900 python3 "$HERE/seed.py" --url "$SRV_URL" --token "$TOKEN" --depot "$DEPOT" --work "$WORK" \
    --pipelines "$PIPELINES" --standalone "$STANDALONE" --agents-per-config "$AGENTS_PER_CONFIG" \
    --threads "$THREADS" > "$RESULTS/seed.json"
echo "seed_s: $(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$t_seed" "$EPOCHREALTIME")" >> "$RESULTS/machine.txt"
du -sk "$DATA" | awk '{print "data_kib: " $1}' >> "$RESULTS/machine.txt"
sync

wait_quiet "before measuring"
echo "busy_before: $QUIET_BUSY" >> "$RESULTS/machine.txt"
top_cpu "before measuring"
log "measuring: $WARMUP warm-up and $REQUESTS measured samples of the page and of the API calls"
timeout 1800 python3 "$HERE/measure.py" --url "$SRV_URL" --token "$TOKEN" --seed "$RESULTS/seed.json" \
    --server-pid "$SRV_PID" --out "$RESULTS" --requests "$REQUESTS" --warmup "$WARMUP" > "$RESULTS/measure.json"
top_cpu "after measuring"
grep -E '^(VmRSS|VmHWM|Threads):' /proc/"$SRV_PID"/status > "$RESULTS/server-status.txt" || true

cleanup
cp "$WORK/serve.log" "$RESULTS/serve.log" 2>/dev/null || true
top_cpu end
cpu_snapshot end
echo "loadavg_end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS/machine.txt"
echo "duration_s: $(python3 -c "import sys; print(int(float(sys.argv[2]) - float(sys.argv[1])))" "$STARTED" "$EPOCHREALTIME")" >> "$RESULTS/machine.txt"

doc_args=()
[[ -n $DOC ]] && doc_args=(--doc "$DOC")
python3 "$HERE/report.py" "$RESULTS" "${doc_args[@]+"${doc_args[@]}"}" > "$RESULTS/summary.md"
ln -sfn "$RESULTS" "$WORK/last-results"
cat "$RESULTS/summary.md"
if (( ${#doc_args[@]} )); then log "wrote the dashboard section of $DOC"; else log "docs not written (DOC empty)"; fi
rm -rf "$DATA" "$DATA.secrets.key" "$WORK/trees"
log "results in $RESULTS"
