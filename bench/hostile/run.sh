#!/usr/bin/env bash
# The registry under hostile load: oha holds it at its measured capacity (authenticated
# reads of a configuration) while, at the same time, 1,100 slow-loris connections, oversized
# bodies, made-up tokens and made-up 100 KB methods arrive, and a writer checks that every
# configuration write the registry acknowledged is in the history. A probe asks /healthz every
# 250 ms on a new connection and reads the registry's resident memory every 5 s. The registry
# runs with an open-file limit of 1,024 (a shell's default) so that connections, not memory,
# are the scarce resource. Writes the section "Hostile load" of docs/benchmarks.md.
#
#   bench/hostile/run.sh              # 10 minutes of hostile load
#   bench/hostile/run.sh --quick      # 30 seconds
#   LOAD_PERCENT=80 bench/hostile/run.sh   # oha at 80% of the capacity instead of 100%
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/hostile
source bench/lib.sh

DURATION=600
if [ "${1:-}" = "--quick" ]; then DURATION=30; fi

WORK=$(mktemp -d /tmp/depot-bench-hostile.XXXXXX)
RESULTS=$WORK/results; mkdir -p "$RESULTS"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if ! command -v oha >/dev/null; then
    log "installing oha (cargo install oha --locked)"
    cargo install oha --locked >/dev/null 2>&1
fi
log "building depot (release)"
cargo build --release -p depot >/dev/null 2>&1
DEPOT=$PWD/target/release/depot

(ulimit -n 1024; exec "$DEPOT" serve --listen 127.0.0.1:0 --data "$WORK/data") 2>"$WORK/serve.log" &
SERVE=$!; PIDS+=($SERVE)
for _ in $(seq 100); do grep -q "listening on" "$WORK/serve.log" && break; sleep 0.1; done
PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$WORK/serve.log" | grep -o '[0-9]*$')
TOKEN=$(cat "$WORK/data/admin.token")
export DEPOT_REGISTRY=http://127.0.0.1:$PORT DEPOT_TOKEN=$TOKEN
SRC=$WORK/src; mkdir -p "$SRC/1" "$SRC/2"; echo one >"$SRC/1/app.txt"; echo two >"$SRC/2/app.txt"
"$DEPOT" push web 1.0.0 "$SRC/1" >/dev/null 2>&1
"$DEPOT" push web 2.0.0 "$SRC/2" >/dev/null 2>&1
"$DEPOT" config create prod --layer web:1.0.0 >/dev/null 2>&1
URL=http://127.0.0.1:$PORT/api/v1/configs/prod

log "capacity: oha, 32 connections, 15 s, GET $URL"
oha --no-tui --output-format json -z 15s -c 32 -H "Authorization: Bearer $TOKEN" "$URL" >"$RESULTS/capacity.json"
CAPACITY=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["summary"]["requestsPerSec"]))' "$RESULTS/capacity.json")
RATE=$(( CAPACITY * ${LOAD_PERCENT:-100} / 100 ))
RSS_BEFORE=$(awk '/VmRSS/ {print $2}' /proc/$SERVE/status)
log "capacity $CAPACITY requests/s; hostile load for ${DURATION}s at $RATE requests/s"

cpu_snapshot start
oha --no-tui --output-format json -z "${DURATION}s" -c 32 -q "$RATE" -H "Authorization: Bearer $TOKEN" "$URL" \
    >"$RESULTS/load.json" &
LOAD=$!
python3 $HERE/hostile.py slowloris --port "$PORT" --seconds "$DURATION" --conns 1100 >"$RESULTS/slowloris.json" &
SLOW=$!
python3 $HERE/hostile.py oversized --port "$PORT" --seconds "$DURATION" --token "$TOKEN" >"$RESULTS/oversized.json" &
BIG=$!
python3 $HERE/hostile.py badtokens --port "$PORT" --seconds "$DURATION" >"$RESULTS/badtokens.json" &
BAD=$!
python3 $HERE/hostile.py writer --port "$PORT" --seconds "$DURATION" --token "$TOKEN" >"$RESULTS/writer.json" &
WRITER=$!
python3 $HERE/hostile.py probe --port "$PORT" --seconds "$DURATION" --pid "$SERVE" >"$RESULTS/probe.json"
wait $LOAD $SLOW $BIG $BAD $WRITER
cpu_snapshot end
top_cpu after
RSS_AFTER=$(awk '/VmRSS/ {print $2}' /proc/$SERVE/status)
kill -0 "$SERVE" || { echo "run.sh: the registry died" >&2; tail -20 "$WORK/serve.log" >&2; exit 1; }
DB_BYTES=$(( $(stat -c %s "$WORK/data/depot.db") + $(stat -c %s "$WORK/data/depot.db-wal" 2>/dev/null || echo 0) ))
printf 'capacity: %s\nrate: %s\nduration: %s\nrss_before_kb: %s\nrss_after_kb: %s\nnproc: %s\nclk_tck: %s\ndb_bytes: %s\n' \
    "$CAPACITY" "$RATE" "$DURATION" "$RSS_BEFORE" "$RSS_AFTER" "$(nproc)" "$(getconf CLK_TCK)" "$DB_BYTES" >"$RESULTS/machine.txt"
python3 $HERE/report.py --results "$RESULTS" --doc docs/benchmarks.md
log "wrote docs/benchmarks.md (Hostile load)"
