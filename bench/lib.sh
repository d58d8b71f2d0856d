# What the benchmark scripts in bench/*/ share. The functions read the script's RESULTS (where
# cpu.txt, quiet.txt and top.txt go), QUIET_WAIT and QUIET_MAX when they are called.

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# stop_pid PID: SIGTERM, up to 15 s to exit, then SIGKILL.
stop_pid() {
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "run.sh: process $pid did not stop in 15 s; killing it" >&2
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
# cpu_snapshot NAME: machine-wide CPU time (/proc/stat) and this script's children's (`times`,
# which counts children once they have been waited for), to tell how much others used meanwhile.
cpu_snapshot() {
    local stat
    read -r stat </proc/stat
    times >"$RESULTS/times-now.txt"
    printf '%s %s %s %s\n' "$1" "$EPOCHREALTIME" "$stat" "$(tr '\n' ' ' <"$RESULTS/times-now.txt")" >>"$RESULTS/cpu.txt"
    rm -f "$RESULTS/times-now.txt"
}
# busy_centicores: CPU the whole machine uses over one second, in % of one core (/proc/stat).
busy_centicores() {
    local a b
    read -r -a a </proc/stat; sleep 1; read -r -a b </proc/stat
    local busy=$(( (b[1]+b[2]+b[3]+b[6]+b[7]) - (a[1]+a[2]+a[3]+a[6]+a[7]) ))
    local total=$(( busy + (b[4]+b[5]+b[8]) - (a[4]+a[5]+a[8]) ))
    echo $(( total > 0 ? 100 * busy * $(nproc) / total : 0 ))
}
# wait_quiet LABEL: before a measurement, wait (at most QUIET_WAIT seconds) until the rest of the
# machine uses less than QUIET_MAX % of one core (the benchmark's own processes are idle then:
# watchers and agents wait in their blocking queries). Sets QUIET_BUSY.
wait_quiet() {
    local start=$SECONDS busy
    busy=$(busy_centicores)
    while (( busy >= QUIET_MAX && SECONDS - start < QUIET_WAIT )); do busy=$(busy_centicores); done
    echo "$1: waited $((SECONDS - start)) s; then $busy% of a core busy$( (( busy >= QUIET_MAX )) && echo ' (not quiet: measured anyway)')" \
        | tee -a "$RESULTS/quiet.txt" >&2
    QUIET_BUSY=$busy
}
# top_cpu LABEL: the busiest processes over half a second (a shared machine: who else runs).
top_cpu() {
    { echo "== $1 $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
      timeout 5 top -b -n 2 -d 0.5 -w 200 2>/dev/null | awk '/^top -/ {n++} n == 2' | sed -n '7,13p' || true
    } >>"$RESULTS/top.txt"
}
