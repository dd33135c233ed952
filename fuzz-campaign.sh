#!/bin/sh
# Fuzzing campaign: runs every `cargo fuzz` target of the project and prints
# one line per target: executions this run, cumulative executions (ledger),
# crashes (0 or 1: libFuzzer stops at the first) and the crash file.
#   ./fuzz-campaign.sh [SECONDS] [RSS_LIMIT_MB] [TIMEOUT_S]
# SECONDS (default 60) caps each target's run time. Environment:
#   FUZZ_RUNS=N      run each target until its cumulative executions (ledger)
#                    reach N (libFuzzer -runs=N-done), still capped by SECONDS;
#                    a target already at N is skipped.
#   FUZZ_TARGETS="vmm-stub/fuzz/p9_ops fuzz/image_trailer ..."  which targets,
#                    in this order (default: all, as `cargo fuzz list` finds them).
#   FUZZ_MAX_LEN=N   libFuzzer -max_len (default: libFuzzer's own choice).
# The ledger $CARGO_TARGET_DIR/campaign-ledger holds "dir/target executions"
# per line, summed over every run of this script with that target dir.
# Targets are found with `cargo fuzz list` in every fuzz/ directory. New
# inputs go to $CARGO_TARGET_DIR/campaign-corpus/<dir>/<target> (kept
# between runs); the checked-in <dir>/corpus/<target> seeds are only read.
# Exit status 1 when any target crashed or failed to build. Needs
# cargo-fuzz; nightly is not installed, so RUSTC_BOOTSTRAP=1 lets the stable
# compiler take -Zsanitizer.
set -u
secs=${1:-60}
rss=${2:-2048}
timeout=${3:-10}
root=$(cd "$(dirname "$0")" && pwd)
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/fuzz-campaign}"
mkdir -p "$CARGO_TARGET_DIR"
ledger="$CARGO_TARGET_DIR/campaign-ledger"
touch "$ledger"
log=$(mktemp -d)
total=0
crashed=0

if [ -z "${FUZZ_TARGETS:-}" ]; then
    FUZZ_TARGETS=
    for dir in "$root/fuzz" "$root"/*/fuzz; do
        [ -f "$dir/Cargo.toml" ] || continue
        rel=${dir#"$root"/}
        for t in $(cd "$dir" && cargo fuzz list 2>/dev/null); do
            FUZZ_TARGETS="$FUZZ_TARGETS $rel/$t"
        done
    done
fi

done_so_far() {
    awk -v t="$1" '$1 == t { n = $2 } END { print n + 0 }' "$ledger"
}

printf '%-32s %12s %12s %8s  %s\n' target executions cumulative crashes artifact
for name in $FUZZ_TARGETS; do
    rel=${name%/*}
    t=${name##*/}
    dir="$root/$rel"
    out="$log/$(echo "$rel" | tr / _)_$t.log"
    before=$(done_so_far "$name")
    runs=
    if [ -n "${FUZZ_RUNS:-}" ]; then
        left=$((FUZZ_RUNS - before))
        if [ "$left" -le 0 ]; then
            printf '%-32s %12s %12s %8s  %s\n' "$name" 0 "$before" 0 "goal reached"
            continue
        fi
        runs="-runs=$left"
    fi
    if ! (cd "$dir" && cargo fuzz build -O "$t" >"$out" 2>&1); then
        printf '%-32s %12s %12s %8s  %s\n' "$name" - "$before" - "build failed: $out"
        crashed=$((crashed + 1))
        continue
    fi
    corpus="$CARGO_TARGET_DIR/campaign-corpus/$rel/$t"
    mkdir -p "$corpus"
    seeds=
    [ -d "$dir/corpus/$t" ] && seeds="$dir/corpus/$t"
    maxlen=
    [ -n "${FUZZ_MAX_LEN:-}" ] && maxlen="-max_len=$FUZZ_MAX_LEN"
    # shellcheck disable=SC2086 # optional flags expand to nothing
    (cd "$dir" && cargo fuzz run -O "$t" "$corpus" $seeds -- -max_total_time="$secs" $runs $maxlen \
        -rss_limit_mb="$rss" -timeout="$timeout" -print_final_stats=1) >"$out" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n1)
    execs=${execs:-0}
    art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out" | tail -n1)
    n=0
    if [ "$rc" -ne 0 ] || [ -n "$art" ]; then n=1; crashed=$((crashed + 1)); fi
    cum=$((before + execs))
    awk -v t="$name" '$1 != t' "$ledger" >"$ledger.new" && echo "$name $cum" >>"$ledger.new" &&
        mv "$ledger.new" "$ledger"
    total=$((total + execs))
    printf '%-32s %12s %12s %8s  %s\n' "$name" "$execs" "$cum" "$n" "${art:-}"
done
printf '%-32s %12s %12s %8s\n' total "$total" "$(awk '{ n += $2 } END { print n + 0 }' "$ledger")" "$crashed"
echo "logs: $log"
[ "$crashed" -eq 0 ]
