#!/bin/bash
# What each trim in fragments/90-trims.config saves, measured by building.
#
#   kernel-config/bench/trim-savings.sh [SCRATCH_DIR]
#
# Copies the cached kernel's object dir, then undoes the trims one group at a time,
# cumulatively (each step reverts one more
# group to what tinyconfig + the other fragments would give) and rebuilds vmlinux.
# Each row is the growth caused by undoing that group, given the groups above it are
# already undone; the rows add up to the total saving. Two measures: `size vmlinux`
# (text+data+bss; section padding can hide small changes) and "lz4": vmlinux.bin
# (`objcopy -R .comment -S`, as arch/x86/boot/compressed makes it, without the
# relocation table) compressed with `lz4 -l -9` as scripts/Makefile.lib does: the
# payload of the default bzImage-lz4, the bytes an image carries.
# Cost: the first (baseline) build in the copy recompiles everything, because objtool is
# rebuilt for the new output path and every object depends on it (~7 min on 2 idle
# cores); the steps after it are incremental, SWAP and X86_5LEVEL nearly full again.
# A trim whose option tinyconfig already leaves off (PCI, ACPI, NETDEVICES) is a guard
# that keeps it off, not a saving, and is reported as such.
set -euo pipefail
SMOLVM=${SMOLVM_BIN:-$(command -v smolvm || echo target/release/smolvm)}
SCRATCH=${1:-/tmp/smolvm-trim-savings}
entry=$(dirname "$("$SMOLVM" kernel path)")
cache=$(dirname "$entry")
source_id=$(sed -n 's/^source_id=//p' "$entry/kernel.meta")
# The object dir and source tree of this entry (one of each per source).
work=$(ls -d "$cache"/work/*/ | head -1)
src=$(ls -d "$cache"/src/*/ | head -1)
echo "entry $entry"
echo "source $source_id"

rm -rf "$SCRATCH" && mkdir -p "$SCRATCH"
cp -a "$work/." "$SCRATCH/"
cp "$entry/config" "$SCRATCH/.config"
mk() { make -s -C "$src" O="$SCRATCH" -j"$(nproc)" KBUILD_BUILD_TIMESTAMP="Thu Jan  1 00:00:00 UTC 1970" \
    KBUILD_BUILD_USER=smolvm KBUILD_BUILD_HOST=smolvm KBUILD_BUILD_VERSION=1 "$@" >>"$SCRATCH/trim.log" 2>&1; }
sizes() {
    local bin="$SCRATCH/vmlinux.bin"
    objcopy -R .comment -S "$SCRATCH/vmlinux" "$bin"
    echo "$(size -B "$SCRATCH/vmlinux" | awk 'NR==2{print $1, $2, $3}') $(lz4 -l -9 -c "$bin" | wc -c)"
}

mk olddefconfig
mk vmlinux
read -r t0 d0 b0 z0 < <(sizes)
printf '%-44s %10s %10s %10s %10s %10s\n' "undo trim (cumulative)" "text" "data" "bss" "total" "lz4"
printf '%-44s %10d %10d %10d %10d %10d\n' "(trimmed kernel)" "$t0" "$d0" "$b0" $((t0 + d0 + b0)) "$z0"
start=$((t0 + d0 + b0)) zstart=$z0

# Groups, cheapest rebuild first. Each option is set back to y (its tinyconfig value).
groups=(
    "MQ_IOSCHED_DEADLINE MQ_IOSCHED_KYBER"
    "LEGACY_PTYS"
    "X86_INTEL_MEMORY_PROTECTION_KEYS"
    "ETHTOOL_NETLINK"
    "WIRELESS"
    "INPUT SERIO HID"
    "VT"
    "SWAP"
    "X86_5LEVEL"
)
for g in "${groups[@]}"; do
    for o in $g; do
        sed -i "/^# CONFIG_$o is not set\$/d; /^CONFIG_$o=/d" "$SCRATCH/.config"
        echo "CONFIG_$o=y" >>"$SCRATCH/.config"
    done
    mk olddefconfig
    mk vmlinux
    read -r t d b z < <(sizes)
    printf '%-44s %+10d %+10d %+10d %+10d %+10d\n' "$g" $((t - t0)) $((d - d0)) $((b - b0)) $((t + d + b - t0 - d0 - b0)) $((z - z0))
    t0=$t d0=$d b0=$b z0=$z
done
end=$((t0 + d0 + b0))
echo "all trims undone: +$((end - start)) bytes of vmlinux text+data+bss, +$((z0 - zstart)) bytes of lz4 payload"
for o in PCI ACPI NETDEVICES; do
    grep -q "^CONFIG_$o=y" "$SCRATCH/.config" && echo "CONFIG_$o: on without the trim?" || echo "CONFIG_$o: already off in tinyconfig (guard, no saving)"
done
