#!/bin/bash
# What each option group of fragments/65-net.config and 85-compat.config costs,
# measured by building.
#
#   kernel-config/bench/option-costs.sh [SCRATCH_DIR]
#
# Copies the cached kernel's object dir and config, then turns the groups off one
# at a time, cumulatively (each step removes one more group), and rebuilds vmlinux
# and the lz4 bzImage (the image default). Each row is the shrink caused by removing
# that group given the groups above it are already gone; the rows add up to the
# total cost. Order: the groups other groups depend on last (NET_NS needs NAMESPACES,
# IPC_NS needs SYSVIPC or POSIX_MQUEUE, ...).
# Cost: like trim-savings.sh, the first build in the copy recompiles everything
# (~7 min on 2 idle cores); the steps after it are incremental.
set -euo pipefail
SMOLVM=${SMOLVM_BIN:-$(command -v smolvm || echo target/release/smolvm)}
SCRATCH=${1:-/tmp/smolvm-option-costs}
entry=$(dirname "$("$SMOLVM" kernel path)")
cache=$(dirname "$entry")
source_id=$(sed -n 's/^source_id=//p' "$entry/kernel.meta")
work=$(ls -d "$cache"/work/*/ | head -1)
src=$(ls -d "$cache"/src/*/ | head -1)
echo "entry $entry"
echo "source $source_id"

rm -rf "$SCRATCH" && mkdir -p "$SCRATCH"
cp -a "$work/." "$SCRATCH/"
cp "$entry/config" "$SCRATCH/.config"
mk() { make -s -C "$src" O="$SCRATCH" -j"$(nproc)" KBUILD_BUILD_TIMESTAMP="Thu Jan  1 00:00:00 UTC 1970" \
    KBUILD_BUILD_USER=smolvm KBUILD_BUILD_HOST=smolvm KBUILD_BUILD_VERSION=1 "$@" >>"$SCRATCH/costs.log" 2>&1; }
sizes() {
    echo "$(size -B "$SCRATCH/vmlinux" | awk 'NR==2{print $1 + $2 + $3}') $(stat -c %s "$SCRATCH/arch/x86/boot/bzImage")"
}

mk olddefconfig
mk vmlinux bzImage
read -r v0 z0 < <(sizes)
printf '%-52s %12s %14s\n' "remove (cumulative)" "vmlinux t+d+b" "bzImage-lz4"
printf '%-52s %12d %14d\n' "(kernel with every group)" "$v0" "$z0"
start_v=$v0 start_z=$z0

groups=(
    "COREDUMP ELF_CORE"
    "TMPFS_XATTR"
    "OVERLAY_FS"
    "HW_RANDOM_VIRTIO HW_RANDOM"
    "EXT4_FS"
    "DNOTIFY"
    "FHANDLE"
    "RSEQ"
    "USER_NS"
    "UTS_NS IPC_NS PID_NS NET_NS TIME_NS NAMESPACES"
    "SECCOMP_FILTER SECCOMP"
    "IO_URING"
    "AIO"
    "POSIX_MQUEUE"
    "SYSVIPC"
    "IPV6"
    "VIRTIO_NET NET_CORE NETDEVICES"
)
for g in "${groups[@]}"; do
    for o in $g; do
        sed -i "/^CONFIG_$o=/d; /^# CONFIG_$o is not set\$/d" "$SCRATCH/.config"
        echo "# CONFIG_$o is not set" >>"$SCRATCH/.config"
    done
    mk olddefconfig
    for o in $g; do
        grep -q "^CONFIG_$o=" "$SCRATCH/.config" && echo "warning: CONFIG_$o is still on" >&2
    done
    mk vmlinux bzImage
    read -r v z < <(sizes)
    printf '%-52s %+12d %+14d\n' "$g" $((v - v0)) $((z - z0))
    v0=$v z0=$z
done
echo "all groups removed: vmlinux $((start_v - v0)) bytes, bzImage-lz4 $((start_z - z0)) bytes smaller"
