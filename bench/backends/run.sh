#!/usr/bin/env bash
# The registry on SQLite and on PostgreSQL, in one run: configuration writes per second with 50
# concurrent writers (one shared configuration, and one each), concurrent pushes, and 10,000
# blocking queries spread over 3 replicas on one PostgreSQL (one replica on SQLite) woken by one
# write. Starts its own PostgreSQL (initdb in a temporary directory, loopback port) and writes the
# section "Registry backends" of docs/benchmarks.md. Everything it starts is stopped at exit.
#
#   bench/backends/run.sh            # full: 50 writers × 10 s per mode, 400 pushes, 10,000 watchers
#   bench/backends/run.sh --quick    # smoke: 10 writers × 3 s, 40 pushes, 500 watchers
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/backends
source bench/lib.sh

WRITERS=50 SECONDS_PER=10 PUSHES=400 CLIENTS=20 WATCHERS=10000
if [ "${1:-}" = "--quick" ]; then WRITERS=10 SECONDS_PER=3 PUSHES=40 CLIENTS=4 WATCHERS=500; fi

WORK=$(mktemp -d /tmp/depot-bench-backends.XXXXXX)
chmod 755 "$WORK"   # initdb runs as postgres
RESULTS=$WORK/results; mkdir -p "$RESULTS"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [ -n "${PGBIN:-}" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

log "building depot (release)"
cargo build --release -p depot >/dev/null 2>&1
DEPOT=$PWD/target/release/depot

PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/pg" && chown postgres "$WORK/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg/data" -U depot --auth=trust >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $WORK/pg -c max_connections=300" start >/dev/null
log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on port $PGPORT"

# serve NAME DATA [FLAGS…]: starts a replica, sets PORT to its port.
serve() {
    local name=$1 data=$2; shift 2
    "$DEPOT" serve --listen 127.0.0.1:0 --data "$data" "$@" 2>"$WORK/$name.log" &
    PIDS+=($!)
    for _ in $(seq 100); do grep -q "listening on" "$WORK/$name.log" && break; sleep 0.1; done
    PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$WORK/$name.log" | grep -o '[0-9]*$')
}

SRC=$WORK/src; mkdir -p "$SRC/1" "$SRC/2"; echo one >"$SRC/1/app.txt"; echo two >"$SRC/2/app.txt"
for backend in sqlite postgres; do
    data=$WORK/$backend-a
    flags=()
    if [ "$backend" = postgres ]; then
        "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U depot depot
        flags=(--metadata "postgres://depot@127.0.0.1:$PGPORT/depot")
    fi
    serve "$backend-a" "$data" "${flags[@]}"; A=$PORT
    TOKEN=$(cat "$data/admin.token")
    export DEPOT_REGISTRY=http://127.0.0.1:$A DEPOT_TOKEN=$TOKEN
    "$DEPOT" push web 1.0.0 "$SRC/1" >/dev/null 2>&1
    "$DEPOT" push web 2.0.0 "$SRC/2" >/dev/null 2>&1
    "$DEPOT" config create prod --layer web:1.0.0 >/dev/null 2>&1
    for mode in shared separate; do
        log "$backend: $WRITERS writers, $mode, ${SECONDS_PER}s"
        python3 $HERE/load.py writes --port "$A" --token "$TOKEN" --writers "$WRITERS" --seconds "$SECONDS_PER" \
            --mode "$mode" >"$RESULTS/$backend-writes-$mode.json"
    done
    log "$backend: $PUSHES pushes from $CLIENTS clients"
    python3 $HERE/load.py pushes --port "$A" --token "$TOKEN" --clients "$CLIENTS" --count "$PUSHES" \
        >"$RESULTS/$backend-pushes.json"
    ports=$A
    if [ "$backend" = postgres ]; then
        serve postgres-b "$WORK/postgres-b" "${flags[@]}" --blobs "file://$data/blobs"; ports=$ports,$PORT
        serve postgres-c "$WORK/postgres-c" "${flags[@]}" --blobs "file://$data/blobs"; ports=$ports,$PORT
    fi
    log "$backend: $WATCHERS watchers over replicas $ports"
    python3 $HERE/load.py watchers --ports "$ports" --token "$TOKEN" --n "$WATCHERS" --patch-port "$A" \
        --patch-body '{"layers":[{"component":"web","version":"2.0.0"}]}' >"$RESULTS/$backend-watchers.json"
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
done

python3 $HERE/report.py --results "$RESULTS" --doc docs/benchmarks.md --writers "$WRITERS" --watchers "$WATCHERS"
log "wrote docs/benchmarks.md (section: registry backends)"
