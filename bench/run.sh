#!/usr/bin/env bash
# depot's benchmarks: pack, full and incremental deploy, and rollback, measured against tar, zstd
# and gzip in one run, and written up in docs/benchmarks.md.
#
#   bench/run.sh                      full scale: ~20,000 files, ~1 GiB (about 10-13 minutes)
#   bench/run.sh --scale 0.05         quick smoke run (~1,000 files, ~50 MiB)
#   bench/run.sh --help               every option
#
# Everything it generates lives under bench/work/ (gitignored). The trees are kept between runs
# (keyed by scale, seed and the generator's hash); the per-run scratch (archives, extractions,
# release roots: ~32 GiB at full scale) is deleted at the end of the run (which takes minutes).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/run.sh [OPTIONS]

  --scale S           tree size factor: 1 = ~20,000 files, ~1 GiB (default 1)
  --runs N            repetitions of each pack and deploy measurement (default 5)
  --gzip-runs N       repetitions of `tar -czf` (slow: ~70 s a run at scale 1) (default 3)
  --rollback-runs N   rollbacks timed in each direction (default 100)
  --seed N            generator seed (default 42)
  --percent P         share of files changed between release A and B (default 1)
  --output FILE       the report (default docs/benchmarks.md in the repository)
  --keep-scratch      keep bench/work/scratch-* (archives, extractions, roots) after the run
  --no-hyperfine      time rollback with the bash loop even when hyperfine is there
  --depot BIN         benchmark this prebuilt depot binary instead of building the working tree
                      (e.g. one built from a clean export of a commit); set DEPOT_COMMIT to say
                      which commit it is, for the report
  -h, --help          this help

The report is written only when every measurement succeeded.
EOF
}

SCALE=1
RUNS=5
GZIP_RUNS=3
ROLLBACK_RUNS=100
SEED=42
PERCENT=1
KEEP_SCRATCH=0
USE_HYPERFINE=1
DEPOT=
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUTPUT=$REPO/docs/benchmarks.md

while (($#)); do
    case $1 in
        --scale) SCALE=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --gzip-runs) GZIP_RUNS=$2; shift 2 ;;
        --rollback-runs) ROLLBACK_RUNS=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --percent) PERCENT=$2; shift 2 ;;
        --output) OUTPUT=$(realpath -m "$2"); shift 2 ;;
        --keep-scratch) KEEP_SCRATCH=1; shift ;;
        --no-hyperfine) USE_HYPERFINE=0; shift ;;
        --depot) DEPOT=$(realpath "$2"); shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
((RUNS >= 1 && GZIP_RUNS >= 1 && GZIP_RUNS <= RUNS && ROLLBACK_RUNS >= 2)) || {
    echo "run.sh: need --runs >= 1, 1 <= --gzip-runs <= --runs, --rollback-runs >= 2" >&2
    exit 2
}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

for tool in python3 tar zstd gzip cargo git; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 1; }
done

STARTED=$EPOCHREALTIME
WORK=$HERE/work
TRASH=$WORK/trash
mkdir -p "$WORK" "$TRASH"

# Deleting many files right before creating many others makes the creation several times slower
# on this machine's ext4 (no journal, online discard). So nothing is deleted before or between the
# measurements: leftovers of an interrupted run are moved to trash/ and everything is deleted at
# the very end.
for old in "$WORK"/scratch-*; do
    [[ -e $old ]] && mv "$old" "$TRASH/"
done

# ---------------------------------------------------------------------------------------------
if [[ -z $DEPOT ]]; then
    log "building depot (release)"
    (cd "$REPO" && cargo build --release -p depot --quiet)
    DEPOT=${CARGO_TARGET_DIR:-$REPO/target}/release/depot
else
    log "using the prebuilt $DEPOT"
fi
[[ -x $DEPOT ]] || { echo "run.sh: $DEPOT is not an executable" >&2; exit 1; }

HYPERFINE=$(command -v hyperfine || true)
if ((!USE_HYPERFINE)); then
    HYPERFINE=
elif [[ -z $HYPERFINE && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing hyperfine"
    if ! apt-get install -y -qq hyperfine >/dev/null 2>&1; then
        { apt-get update -qq && apt-get install -y -qq hyperfine; } >/dev/null 2>&1 || true
    fi
    HYPERFINE=$(command -v hyperfine || true)
fi
[[ -n $HYPERFINE ]] || log "not using hyperfine: timing rollback with a bash loop"

SCRATCH=$WORK/scratch-$(date +%Y%m%d-%H%M%S)
RESULTS=$SCRATCH/results
mkdir -p "$RESULTS" "$SCRATCH/pack" "$SCRATCH/deploy"

# ---------------------------------------------------------------------------------------------
# The machine.
{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc=$(nproc)"
    echo "clk_tck=$(getconf CLK_TCK)"
    echo "cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'sha_ni|avx2|avx512f|aes' | tr '\n' ' ' | sed 's/ $//')"
    echo "memory=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel=$(uname -sr)"
    dev=$(findmnt -no SOURCE -T "$WORK")
    echo "filesystem=$(findmnt -no FSTYPE -T "$WORK") on $dev ($(findmnt -no OPTIONS -T "$WORK"))"
    if [[ $(findmnt -no FSTYPE -T "$WORK") == ext4 ]]; then
        journals=(/proc/fs/jbd2/"$(basename "$dev")"-*)
        if [[ -e ${journals[0]} ]]; then
            echo "journal=yes"
        else
            echo "journal=no"
        fi
    fi
    echo "disk_free=$(df -h --output=avail "$WORK" | tail -1 | tr -d ' ')"
    echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "tar=$(tar --version | head -1)"
    echo "zstd=$(zstd --version | head -1)"
    echo "gzip=$(gzip --version | head -1)"
    echo "python=$(python3 --version 2>&1)"
    echo "rustc=$(rustc --version 2>/dev/null || echo unknown)"
    echo "hyperfine=$([[ -n $HYPERFINE ]] && $HYPERFINE --version || echo 'not used (bash timing loop)')"
    if [[ $DEPOT != "${CARGO_TARGET_DIR:-$REPO/target}/release/depot" ]]; then
        commit="${DEPOT_COMMIT:-unknown} (prebuilt binary passed with --depot)"
    else
        commit=$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
        if [[ -n $(git -C "$REPO" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null) ]]; then
            commit="$commit (with uncommitted changes to the crates or the workspace)"
        fi
    fi
    echo "depot_commit=$commit"
    echo "depot_version=$("$DEPOT" --version)"
} >"$RESULTS/machine.env"

# ---------------------------------------------------------------------------------------------
# The trees: release A, and release B with PERCENT% of A's files changed.
GEN=$HERE/gen-tree.py
TREES=$WORK/trees/scale-$SCALE-seed-$SEED-pct-$PERCENT
STAMP="$(sha256sum "$GEN" | cut -c1-16) scale=$SCALE seed=$SEED percent=$PERCENT"
if [[ ! -f $TREES/stamp || $(cat "$TREES/stamp") != "$STAMP" ]]; then
    [[ -e $TREES ]] && mv "$TREES" "$TRASH/trees-$(date +%s%N)"
    mkdir -p "$TREES"
    log "generating release tree A (scale $SCALE)"
    python3 "$GEN" "$TREES/a" --scale "$SCALE" --seed "$SEED" >"$TREES/a.json"
    log "generating release tree B ($PERCENT% of A's files changed)"
    python3 "$GEN" "$TREES/b" --mutate-from "$TREES/a" --percent "$PERCENT" --seed "$SEED" >"$TREES/b.json"
    echo "$STAMP" >"$TREES/stamp"
else
    log "reusing the trees in $TREES"
fi
TREE_A=$TREES/a
TREE_B=$TREES/b
cp "$TREES/a.json" "$RESULTS/tree-a.json"
cp "$TREES/b.json" "$RESULTS/tree-b.json"

# The scratch holds every archive and every extraction until the end (~31 GiB at scale 1 with the
# default runs): refuse to start what would fill the disk.
need_kb=$(python3 -c "
import json; b = json.load(open('$TREES/a.json'))['bytes']
archives = (2 * $RUNS + $GZIP_RUNS + 1) * 0.75 * b   # each pack run's output, and B's archive
trees = ($RUNS * 4 + 1) * 1.05 * b                    # 4 extractions a round, B's new objects
print(int((archives + trees) / 1024 * 1.1))")
avail_kb=$(df -Pk "$WORK" | awk 'NR == 2 {print $4}')
if ((avail_kb < need_kb)); then
    echo "run.sh: the run needs about $((need_kb / 1048576)) GiB free under $WORK, there are" \
        "$((avail_kb / 1048576)) GiB; use fewer --runs or a smaller --scale" >&2
    exit 1
fi

cat >"$RESULTS/params.env" <<EOF
scale=$SCALE
runs=$RUNS
gzip_runs=$GZIP_RUNS
rollback_runs=$ROLLBACK_RUNS
seed=$SEED
percent=$PERCENT
EOF

# ---------------------------------------------------------------------------------------------
# How much of the machine others used while we measured: the CPU time all processes used
# (/proc/stat) minus what this script and its children used (`times`), and the hypervisor's steal.
cpu_snapshot() { # NAME (`times` must run in this shell, not in a subshell)
    local stat
    read -r stat </proc/stat
    times >"$RESULTS/times-now.txt"
    printf '%s %s %s %s\n' "$1" "$EPOCHREALTIME" "$stat" "$(tr '\n' ' ' <"$RESULTS/times-now.txt")" >>"$RESULTS/cpu.txt"
}
: >"$RESULTS/cpu.txt"
cpu_snapshot start

# ---------------------------------------------------------------------------------------------
# Timing. Every timed command starts on a clean page cache state (`sync` first, untimed: no dirty
# data from an earlier step is flushed on its time), and the `sync` right after it is timed
# separately (the cost of making its output durable, which depot pays inside its own time).
TIMES=$RESULTS/times.tsv
: >"$TIMES"

timed() { # LABEL ROUND COMMAND...
    local label=$1 round=$2
    shift 2
    sync
    local t0=$EPOCHREALTIME
    "$@"
    local t1=$EPOCHREALTIME
    sync
    local t2=$EPOCHREALTIME
    printf '%s\t%s\t%s\t%s\t%s\n' "$label" "$round" "$t0" "$t1" "$t2" >>"$TIMES"
}

# Runs one round of the given labelled commands, rotating their order from round to round so that
# no tool always runs first (or right after the same neighbour).
round_robin() { # ROUND LABEL...
    local round=$1
    shift
    local labels=("$@") n=$# i
    for ((i = 0; i < n; i++)); do
        local label=${labels[$(((i + round - 1) % n))]}
        "run_$label" "$round"
    done
}

# ---------------------------------------------------------------------------------------------
# Pack: depot pack (zstd) vs tar | zstd -3 -T0 vs tar -czf. Each run writes a new file (no
# overwrite, so no deletion inside a timed command).
run_pack_depot() {
    timed pack_depot "$1" "$DEPOT" pack "$TREE_A" --version 1.0.0 -o "$SCRATCH/pack/r$1-depot.tar.zst" --json \
        >"$SCRATCH/pack/r$1-depot.json"
}
tar_zstd() { tar -cf - -C "$TREE_A" . | zstd -3 -T0 -q >"$1"; }
run_pack_tar_zstd() { timed pack_tar_zstd "$1" tar_zstd "$SCRATCH/pack/r$1-tar.tar.zst"; }
run_pack_tar_gzip() { timed pack_tar_gzip "$1" tar -czf "$SCRATCH/pack/r$1-tar.tar.gz" -C "$TREE_A" .; }

for ((r = 1; r <= RUNS; r++)); do
    log "pack, round $r/$RUNS"
    if ((r <= GZIP_RUNS)); then
        round_robin "$r" pack_depot pack_tar_zstd pack_tar_gzip
    else
        round_robin "$r" pack_depot pack_tar_zstd
    fi
done
ART_A_ZST=$SCRATCH/pack/r1-depot.tar.zst
ART_A_GZ=$SCRATCH/pack/r1-tar.tar.gz
for f in "$SCRATCH"/pack/r*-depot.tar.zst; do
    cmp -s "$f" "$ART_A_ZST" || { echo "run.sh: depot pack is not reproducible ($f)" >&2; exit 1; }
done
ART_B_ZST=$SCRATCH/pack/b-depot.tar.zst
log "packing release B (untimed)"
"$DEPOT" pack "$TREE_B" --version 1.1.0 -o "$ART_B_ZST" --json >"$SCRATCH/pack/b-depot.json"
stat -c '%n %s' "$ART_A_ZST" "$SCRATCH/pack/r1-tar.tar.zst" "$ART_A_GZ" "$ART_B_ZST" |
    sed "s|$SCRATCH/pack/||" >"$RESULTS/archives.txt"

# ---------------------------------------------------------------------------------------------
# Deploy: a fresh release into a fresh root vs extracting into a fresh directory. All targets are
# created up front; nothing is deleted until the end. Then, in the same root, the incremental
# deploy of B (PERCENT% of the files changed) on top of A.
for ((r = 1; r <= RUNS; r++)); do
    mkdir -p "$SCRATCH/deploy/r$r"/{depot_zst,depot_gz,tar_zst,tar_gz}
done
run_deploy_depot_zst() {
    timed deploy_depot_zst "$1" "$DEPOT" deploy --root "$SCRATCH/deploy/r$1/depot_zst" --version 1.0.0 \
        --artifact-path "$ART_A_ZST" --json >"$RESULTS/deploy-full-r$1.json"
}
run_deploy_depot_gz() {
    timed deploy_depot_gz "$1" "$DEPOT" deploy --root "$SCRATCH/deploy/r$1/depot_gz" --version 1.0.0 \
        --artifact-path "$ART_A_GZ" --json >"$RESULTS/deploy-full-gz-r$1.json"
}
zstd_tar() { zstd -dc "$1" | tar -xf - -C "$2"; }
run_deploy_tar_zst() { timed deploy_tar_zst "$1" zstd_tar "$ART_A_ZST" "$SCRATCH/deploy/r$1/tar_zst"; }
run_deploy_tar_gz() { timed deploy_tar_gz "$1" tar -xzf "$ART_A_GZ" -C "$SCRATCH/deploy/r$1/tar_gz"; }

for ((r = 1; r <= RUNS; r++)); do
    log "deploy, round $r/$RUNS"
    round_robin "$r" deploy_depot_zst deploy_tar_zst deploy_tar_gz deploy_depot_gz
    timed deploy_incremental "$r" "$DEPOT" deploy --root "$SCRATCH/deploy/r$r/depot_zst" --version 1.1.0 \
        --artifact-path "$ART_B_ZST" --json >"$RESULTS/deploy-incremental-r$r.json"
done

# Sanity: the release depot made holds what tar extracted (file count), B is current.
R1=$SCRATCH/deploy/r1/depot_zst
want=$(find "$SCRATCH/deploy/r1/tar_zst" -type f | wc -l)
got=$(find "$R1/releases/1.0.0" -type f | wc -l)
[[ $want == "$got" ]] || { echo "run.sh: depot deployed $got files, tar extracted $want" >&2; exit 1; }
[[ $(readlink "$R1/releases/current") == 1.1.0 ]] || { echo "run.sh: current is not 1.1.0" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Rollback: the whole process, wall clock, switching between A and B with --version. Each timed
# rollback really switches (the untimed step before it switches the other way).
log "rollback, $ROLLBACK_RUNS runs each way"
rollback_to() { "$DEPOT" rollback --root "$R1" --version "$1" >/dev/null 2>>"$RESULTS/rollback-stderr.txt"; }
if [[ -n $HYPERFINE ]]; then
    "$HYPERFINE" -N --style basic --warmup 3 --runs "$ROLLBACK_RUNS" \
        --export-json "$RESULTS/rollback-hyperfine.json" \
        --prepare "$DEPOT rollback --root $R1 --version 1.1.0" \
        --command-name "rollback to 1.0.0" "$DEPOT rollback --root $R1 --version 1.0.0" \
        --prepare "$DEPOT rollback --root $R1 --version 1.0.0" \
        --command-name "rollback to 1.1.0" "$DEPOT rollback --root $R1 --version 1.1.0" \
        >"$RESULTS/rollback-hyperfine.txt"
else
    : >"$RESULTS/rollback.tsv"
    rollback_to 1.1.0
    for ((i = 1; i <= ROLLBACK_RUNS; i++)); do
        for v in 1.0.0 1.1.0; do
            t0=$EPOCHREALTIME
            rollback_to "$v"
            t1=$EPOCHREALTIME
            printf 'rollback to %s\t%s\t%s\t%s\n' "$v" "$i" "$t0" "$t1" >>"$RESULTS/rollback.tsv"
        done
    done
fi
[[ $(readlink "$R1/releases/current") == 1.1.0 ]] || { echo "run.sh: rollback did not switch" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
cpu_snapshot end
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/machine.env"
echo "duration_s=$(python3 -c "print(round($EPOCHREALTIME - $STARTED))")" >>"$RESULTS/machine.env"
log "writing $OUTPUT"
python3 "$HERE/report.py" "$RESULTS" "$OUTPUT"
cp -r "$RESULTS" "$WORK/last-results.tmp" && rm -rf "$WORK/last-results" && mv "$WORK/last-results.tmp" "$WORK/last-results"

if ((KEEP_SCRATCH)); then
    log "kept $SCRATCH (delete it yourself; wait a few minutes before the next run afterwards)"
    log "deleting $TRASH"
    rm -rf "$TRASH"
else
    log "deleting the scratch ($(du -sh "$SCRATCH" | cut -f1)); the raw results are in bench/work/last-results"
    rm -rf "$SCRATCH" "$TRASH"
    log "deleted; wait a few minutes before measuring anything else on this disk"
fi
log "done in $(python3 -c "print(round($EPOCHREALTIME - $STARTED))") s"
