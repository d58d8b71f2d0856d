#!/usr/bin/env bash
# Registry benchmarks: blocking-query watchers (memory per watcher, wake-up latency) and blob
# upload/download throughput against an nginx baseline, in one run. 127.0.0.1 only; every loop
# and wait is bounded; it stops the processes it started. Raw results go to $WORK/results-*/
# (machine.txt, watchers.jsonl, throughput.jsonl, cpu.txt, summary.md); the summary replaces the
# block between <!-- registry:begin --> and <!-- registry:end --> in docs/benchmarks.md.
#
#   bench/registry/run.sh                                          # everything (2-3 minutes; more on a busy machine)
#   WATCHERS="500" SIZE_MIB=64 ROUNDS=1 DOC= bench/registry/run.sh   # smoke run, docs untouched
#   SKIP_WATCHERS=1 / SKIP_THROUGHPUT=1                            # one half only (docs untouched)
#
# Settings (environment): WATCHERS ("1000 10000"), SIZE_MIB (1024: archive size), ROUNDS (3:
# throughput rounds), WORK (/tmp/regbench-run), DEPOT (a depot binary; default: a copy of
# target/release/depot in WORK), DOC (docs/benchmarks.md; empty: do not write it), NGINX_PORT,
# SERVER_ENV (extra environment for `depot serve`, e.g. "MALLOC_ARENA_MAX=1", for experiments),
# QUIET_WAIT (30: seconds to wait, before each measurement, for the rest of the machine to use
# less than QUIET_MAX (25) % of one core; the run goes on, noting it, when it does not).
#
# Needs: a release build (cargo build --release -p depot), python3, curl, bc and nginx; as root it
# installs the missing ones with apt.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# log, stop_pid, cpu_snapshot, busy_centicores, wait_quiet, top_cpu
source "$HERE/../lib.sh"
WORK=${WORK:-/tmp/regbench-run}
WATCHERS=${WATCHERS:-"1000 10000"}
SIZE_MIB=${SIZE_MIB:-1024}
ROUNDS=${ROUNDS:-3}
NGINX_PORT=${NGINX_PORT:-18481}
SERVER_ENV=${SERVER_ENV:-}
QUIET_WAIT=${QUIET_WAIT:-30}
QUIET_MAX=${QUIET_MAX:-25}
DOC=${DOC-$ROOT/docs/benchmarks.md}
RESULTS=${RESULTS:-$WORK/results-$(date -u +%Y%m%dT%H%M%SZ)}
STARTED=$EPOCHREALTIME


# Missing tools are installed with apt when running as root; otherwise the script says what to install.
needed=(python3 curl bc sha256sum)
[[ -n ${SKIP_THROUGHPUT:-} ]] || needed+=(nginx)
missing=()
for tool in "${needed[@]}"; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if (( ${#missing[@]} )) && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    packages=("${missing[@]/sha256sum/coreutils}")
    log "installing ${packages[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"; } >/dev/null
fi
for tool in "${needed[@]}"; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is required (apt-get install -y $tool)" >&2; exit 1; }
done

mkdir -p "$WORK" "$RESULTS"
# Our own copy, so that someone else's rebuild cannot change the binary mid-run.
# Unless DEPOT names a binary, the copy is refreshed whenever target/release/depot has changed.
if [[ -z ${DEPOT:-} ]]; then
    DEPOT=$WORK/depot
    [[ -x $ROOT/target/release/depot ]] || { echo "build first: cargo build --release -p depot" >&2; exit 1; }
    if ! cmp -s "$ROOT/target/release/depot" "$DEPOT"; then
        cp "$ROOT/target/release/depot" "$DEPOT.tmp" && mv "$DEPOT.tmp" "$DEPOT"
    fi
fi
[[ -x $DEPOT ]] || { echo "run.sh: $DEPOT is not an executable" >&2; exit 1; }

# Each watcher is one socket in the registry and one in the client (separate processes).
max_n=0; for n in $WATCHERS; do (( n > max_n )) && max_n=$n; done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < max_n + 500 )); then
    echo "run.sh: open-file limit $(ulimit -n) is too low for $max_n watchers" >&2; exit 1
fi

PIDS=()
cleanup() {
    local pid
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
    # shellcheck disable=SC2086 # SERVER_ENV is a list of NAME=VALUE words
    # The largest N of watchers and a few more connections: the default cap (half the open-file
    # limit) may be below it, and at the cap a new connection is refused while every one waits.
    env $SERVER_ENV "$DEPOT" serve --listen 127.0.0.1:0 --data "$dir" --max-connections $((max_n + 200)) \
        2>"$dir.log" &
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
# forget_pid PID: drop a stopped process from the list the exit trap stops.
forget_pid() {
    local p keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}
stop_depot() {
    stop_pid "$SRV_PID"
    forget_pid "$SRV_PID"
}


commit=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null) ]] \
    && commit="$commit (working tree with uncommitted changes to the crates)"
dev=$(findmnt -no SOURCE -T "$WORK" 2>/dev/null || echo '?')
{
    echo "date: $(date -u +%FT%TZ)"
    echo "nproc: $(nproc)"
    echo "clk_tck: $(getconf CLK_TCK)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    echo "filesystem: $(findmnt -no FSTYPE -T "$WORK" 2>/dev/null) on $dev ($(findmnt -no OPTIONS -T "$WORK" 2>/dev/null))"
    echo "depot: $("$DEPOT" --version 2>/dev/null || echo unknown), binary built $(date -u -r "$DEPOT" +%FT%TZ), checkout at $commit"
    echo "nginx: $(nginx -v 2>&1 | cut -d/ -f2 || echo none)"
    echo "python: $(python3 --version 2>&1 | cut -d' ' -f2)"
    echo "curl: $(curl --version | head -1 | cut -d' ' -f2)"
    echo "open files: $(ulimit -n)"
    echo "loadavg_start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RESULTS/machine.txt"
{
    echo "watchers: $WATCHERS"
    echo "size_mib: $SIZE_MIB"
    echo "rounds: $ROUNDS"
    echo "server_env: ${SERVER_ENV:-none}"
    echo "quiet: up to $QUIET_WAIT s for < $QUIET_MAX% of a core"
} > "$RESULTS/params.txt"
cat "$RESULTS/machine.txt" >&2
: >"$RESULTS/cpu.txt"
top_cpu start
cpu_snapshot start

# ---------------------------------------------------------------------------------------------
# Watchers: for each N, a fresh registry; round 1 ("cold") measures the memory growth of a fresh
# process, round 2 ("warm") the same N again in the same process.
if [[ -z ${SKIP_WATCHERS:-} ]]; then
    : > "$RESULTS/watchers.jsonl"
    rm -rf "$WORK/small"; mkdir -p "$WORK/small"
    echo one > "$WORK/small/a"; "$DEPOT" pack "$WORK/small" --version 1.0.0 -o "$WORK/small1.tar.zst" >/dev/null
    echo two > "$WORK/small/a"; "$DEPOT" pack "$WORK/small" --version 2.0.0 -o "$WORK/small2.tar.zst" >/dev/null
    for n in $WATCHERS; do
        start_depot "$WORK/watch-$n"
        port=${SRV_URL##*:}
        DEPOT_REGISTRY=$SRV_URL DEPOT_TOKEN=$TOKEN "$DEPOT" push web 1.0.0 "$WORK/small1.tar.zst" >/dev/null
        DEPOT_REGISTRY=$SRV_URL DEPOT_TOKEN=$TOKEN "$DEPOT" push web 2.0.0 "$WORK/small2.tar.zst" >/dev/null
        curl -sS --fail-with-body --max-time 30 -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" \
            -H 'Content-Type: application/json' \
            -d '{"name":"prod","layers":[{"component":"web","version":"1.0.0"}]}' "$SRV_URL/api/v1/configs"
        round=0
        for version in 2.0.0 1.0.0; do
            round=$((round + 1))
            kind=$([[ $round == 1 ]] && echo cold || echo warm)
            log "watchers: N=$n round $round ($kind)"
            wait_quiet "watchers N=$n $kind"
            top_cpu "watchers N=$n $kind"
            out=$(timeout 300 python3 "$HERE/watchers.py" --port "$port" --token "$TOKEN" --n "$n" --pid "$SRV_PID" \
                --patch-body "{\"layers\":[{\"component\":\"web\",\"version\":\"$version\"}]}")
            KIND=$kind python3 -c 'import json,os,sys; d=json.load(sys.stdin); d["round"]=os.environ["KIND"]; print(json.dumps(d))' \
                <<<"$out" >> "$RESULTS/watchers.jsonl"
            tail -1 "$RESULTS/watchers.jsonl" >&2
            sleep 2
        done
        stop_depot
        rm -rf "$WORK/watch-$n"
    done
fi

# ---------------------------------------------------------------------------------------------
# Throughput: one ~SIZE_MIB archive uploaded and downloaded with curl, to depot and to nginx.
if [[ -z ${SKIP_THROUGHPUT:-} ]]; then
    : > "$RESULTS/throughput.jsonl"
    data=$WORK/bigdata
    archive=$WORK/big-$SIZE_MIB.tar.zst   # kept between runs
    if [[ ! -s $archive ]]; then
        log "packing a $SIZE_MIB MiB archive of random data"
        rm -rf "$data" "$archive"; mkdir -p "$data"
        for i in 1 2 3 4; do
            head -c $((SIZE_MIB * 1024 * 1024 / 4)) /dev/urandom > "$data/part$i.bin"
        done
        "$DEPOT" pack "$data" --version 1.0.0 -o "$archive.tmp" >/dev/null
        mv "$archive.tmp" "$archive"
        rm -rf "$data"
    fi
    size=$(stat -c %s "$archive")
    digest=sha256:$(sha256sum "$archive" | cut -d' ' -f1)
    echo "archive: $size bytes, $digest" | tee "$RESULTS/archive.txt" >&2

    # nginx, in the foreground of a background job: its master is ours to stop.
    ngx=$WORK/nginx
    rm -rf "$ngx"; mkdir -p "$ngx/www/files" "$ngx/www/dav" "$ngx/body"
    sed -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$NGINX_PORT|g" "$HERE/nginx.conf.in" > "$ngx/nginx.conf"
    cp "$archive" "$ngx/www/files/archive.tar.zst"
    nginx -p "$ngx" -e "$ngx/error.log" -c "$ngx/nginx.conf" &
    NGINX_PID=$!; PIDS+=("$NGINX_PID")
    for _ in $(seq 50); do
        curl -sf --max-time 5 -o /dev/null -I "http://127.0.0.1:$NGINX_PORT/files/archive.tar.zst" && break
        kill -0 "$NGINX_PID" 2>/dev/null || break
        sleep 0.1
    done
    curl -sf --max-time 5 -o /dev/null -I "http://127.0.0.1:$NGINX_PORT/files/archive.tar.zst" \
        || { echo "nginx did not start:" >&2; cat "$ngx/error.log" >&2; exit 1; }

    # record SERVER DIRECTION ROUND STATUS SECONDS
    record() {
        echo "{\"server\":\"$1\",\"direction\":\"$2\",\"round\":$3,\"bytes\":$size,\"status\":${4:-0},\"seconds\":$5,\"load1\":$(cut -d' ' -f1 /proc/loadavg)}" \
            | tee -a "$RESULTS/throughput.jsonl" >&2
    }
    # transfer CURL-ARGS...: one timed transfer (after an untimed sync, so that no transfer pays
    # for another's dirty pages); sets CODE and SECS.
    transfer() {
        local res
        sync
        res=$(curl -sS --max-time 600 -H 'Expect:' -o /dev/null -w '%{http_code} %{time_total}' "$@") || true
        CODE=${res% *}; SECS=${res#* }
        [[ $CODE =~ ^[0-9]+$ && $SECS =~ ^[0-9.]+$ ]] || { CODE=0; SECS=0; }
    }
    depot_upload() {
        transfer -X PUT -T "$archive" -H "Authorization: Bearer $TOKEN" \
            -H 'Content-Type: application/octet-stream' "$SRV_URL/api/v1/blobs/$digest"
        record depot upload "$1" "$CODE" "$SECS"
    }
    nginx_upload() {
        # nginx does not fsync a PUT: "nginx+fsync" adds the time of `sync FILE` (an fsync of
        # the uploaded copy) right after it, to compare like with like with depot's durable upload.
        local t0 t1
        rm -f "$ngx/www/dav/archive.tar.zst"
        transfer -T "$archive" "http://127.0.0.1:$NGINX_PORT/dav/archive.tar.zst"
        t0=$EPOCHREALTIME; sync "$ngx/www/dav/archive.tar.zst" 2>/dev/null || true; t1=$EPOCHREALTIME
        record nginx upload "$1" "$CODE" "$SECS"
        record nginx+fsync upload "$1" "$CODE" "$(echo "$SECS + $t1 - $t0" | bc -l | sed 's/^\./0./')"
    }
    depot_download() {
        transfer -H "Authorization: Bearer $TOKEN" "$SRV_URL/api/v1/blobs/$digest"
        record depot download "$1" "$CODE" "$SECS"
    }
    nginx_download() {
        transfer "http://127.0.0.1:$NGINX_PORT/files/archive.tar.zst"
        record nginx download "$1" "$CODE" "$SECS"
    }

    # The disk's speed bounds any upload that writes the file: a copy of the archive, then with fsync.
    sync
    t0=$EPOCHREALTIME; dd if="$archive" of="$WORK/ddtest" bs=1M status=none; t1=$EPOCHREALTIME
    sync; rm -f "$WORK/ddtest"; sync
    t2=$EPOCHREALTIME; dd if="$archive" of="$WORK/ddtest" bs=1M conv=fsync status=none; t3=$EPOCHREALTIME
    rm -f "$WORK/ddtest"; sync
    echo "disk: $(echo "$size / ($t1 - $t0) / 1000000" | bc) MB/s copying the archive with dd, $(echo "$size / ($t3 - $t2) / 1000000" | bc) MB/s with fsync (dd conv=fsync)" \
        | tee -a "$RESULTS/machine.txt" >&2

    for round in $(seq "$ROUNDS"); do
        log "throughput: round $round of $ROUNDS"
        wait_quiet "throughput round $round"
        top_cpu "throughput round $round"
        # A fresh registry per round, so that every upload stores the blob anew.
        start_depot "$WORK/tp"
        # Alternate which server goes first.
        if (( round % 2 )); then
            depot_upload "$round"; nginx_upload "$round"; depot_download "$round"; nginx_download "$round"
        else
            nginx_upload "$round"; depot_upload "$round"; nginx_download "$round"; depot_download "$round"
        fi
        stop_depot
        rm -rf "$WORK/tp"
    done
    # Integrity of the last nginx upload (depot's upload verified its own digest).
    if cmp -s "$archive" "$ngx/www/dav/archive.tar.zst"; then
        echo "nginx upload: the stored copy is identical to the archive" | tee -a "$RESULTS/archive.txt" >&2
    else
        echo "nginx upload: the stored copy DIFFERS from the archive" | tee -a "$RESULTS/archive.txt" >&2
    fi
    stop_pid "$NGINX_PID"
    forget_pid "$NGINX_PID"
    rm -rf "$ngx/www"
fi

top_cpu end
cpu_snapshot end
echo "loadavg_end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS/machine.txt"
echo "duration_s: $(echo "$EPOCHREALTIME - $STARTED" | bc | cut -d. -f1)" >> "$RESULTS/machine.txt"

doc_args=()
if [[ -n $DOC && -z ${SKIP_WATCHERS:-} && -z ${SKIP_THROUGHPUT:-} ]]; then
    doc_args=(--doc "$DOC")
fi
python3 "$HERE/report.py" "$RESULTS" "${doc_args[@]+"${doc_args[@]}"}" > "$RESULTS/summary.md"
ln -sfn "$RESULTS" "$WORK/last-results"
cat "$RESULTS/summary.md"
[[ ${#doc_args[@]} -gt 0 ]] && log "wrote the registry section of $DOC" || log "docs not written (DOC empty or a half skipped)"
log "results in $RESULTS"
