#!/bin/sh
# Fuzzing campaign: runs every `cargo fuzz` target of the project for
# SECONDS each (default 60) and prints one line per target: executions,
# crashes (0 or 1: libFuzzer stops at the first) and the crash file.
#   ./fuzz-campaign.sh [SECONDS] [RSS_LIMIT_MB] [TIMEOUT_S]
# Targets are found with `cargo fuzz list` in every fuzz/ directory. New
# inputs go to $CARGO_TARGET_DIR/campaign-corpus/<dir>/<target> (kept
# between runs); the checked-in <dir>/corpus/<target> seeds are only read.
# Exit status 1
# when any target crashed. Needs cargo-fuzz; nightly is not installed, so
# RUSTC_BOOTSTRAP=1 lets the stable compiler take -Zsanitizer.
set -u
secs=${1:-60}
rss=${2:-2048}
timeout=${3:-10}
root=$(cd "$(dirname "$0")" && pwd)
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/fuzz-campaign}"
log=$(mktemp -d)
total=0
crashed=0
printf '%-40s %14s %8s  %s\n' target executions crashes artifact
for dir in "$root/fuzz" "$root"/*/fuzz; do
    [ -f "$dir/Cargo.toml" ] || continue
    rel=${dir#"$root"/}
    for t in $(cd "$dir" && cargo fuzz list 2>/dev/null); do
        out="$log/$(echo "$rel" | tr / _)_$t.log"
        if ! (cd "$dir" && cargo fuzz build -O "$t" >"$out" 2>&1); then
            printf '%-40s %14s %8s  %s\n' "$rel/$t" "-" "-" "build failed: $out"
            crashed=$((crashed + 1))
            continue
        fi
        corpus="$CARGO_TARGET_DIR/campaign-corpus/$rel/$t"
        mkdir -p "$corpus"
        seeds=
        [ -d "$dir/corpus/$t" ] && seeds="$dir/corpus/$t"
        (cd "$dir" && cargo fuzz run -O "$t" "$corpus" $seeds -- -max_total_time="$secs" \
            -rss_limit_mb="$rss" -timeout="$timeout" -print_final_stats=1) >"$out" 2>&1
        rc=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n1)
        execs=${execs:-0}
        art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out" | tail -n1)
        n=0
        if [ "$rc" -ne 0 ] || [ -n "$art" ]; then n=1; crashed=$((crashed + 1)); fi
        total=$((total + execs))
        printf '%-40s %14s %8s  %s\n' "$rel/$t" "$execs" "$n" "${art:-}"
    done
done
printf '%-40s %14s %8s\n' total "$total" "$crashed"
echo "logs: $log"
[ "$crashed" -eq 0 ]
