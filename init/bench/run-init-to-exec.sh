#!/usr/bin/env bash
# Time from the kernel's "Run /init" to the app's first instruction (smol-init's
# debug line printed right before execve), under QEMU TCG microvm, N boots.
# Both clocks are the guest's: the kernel log's timestamp (printk.time=1) and
# smol-init's CLOCK_MONOTONIC; also reported: init's own first instruction.
#
# usage: init/bench/run-init-to-exec.sh [N] [squashfs|initramfs]
#   KERNEL=vmlinux (default: SMOLVM_TEST_KERNEL or `smolvm kernel path`)
#   INIT=smol-init (default: target/release/smol-init)
set -euo pipefail
N=${1:-10}
ROOTFS=${2:-squashfs}
here=$(cd "$(dirname "$0")/../.." && pwd)
KERNEL=${KERNEL:-${SMOLVM_TEST_KERNEL:-$("$here/target/release/smolvm" kernel path)}}
INIT=${INIT:-$here/target/release/smol-init}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Config files in linker::config's record format: MAGIC then key NUL field NUL...
cfg() { printf 'SMOLCFG1'; for f in "$@"; do printf '%s\0' "$f"; done; }

mkdir -p "$work/root/bin" "$work/initrd/smolvm" "$work/initrd/dev"
for d in dev proc sys tmp run mnt data; do mkdir -p "$work/root/$d"; done
cp /bin/busybox "$work/root/bin/busybox"
cp "$INIT" "$work/initrd/init"
cfg entry /bin/busybox arg true rootfs "$ROOTFS" > "$work/initrd/smolvm/manifest"
cfg log debug > "$work/initrd/smolvm/run"
drive=()
if [ "$ROOTFS" = squashfs ]; then
    mksquashfs "$work/root" "$work/rootfs.sqfs" -noappend -quiet -no-progress -all-root -comp gzip >/dev/null
    drive=(-drive "file=$work/rootfs.sqfs,format=raw,if=none,id=vda,readonly=on" -device virtio-blk-device,drive=vda)
else
    mv "$work/root" "$work/initrd/rootfs"
fi
(cd "$work/initrd" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$work/initrd.cpio"

for i in $(seq "$N"); do
    rm -f "$work/serial" "$work/out" "$work/err" "$work/exit"
    timeout 120 qemu-system-x86_64 -M microvm,acpi=off -accel tcg -cpu max -m 256M -nodefaults \
        -no-user-config -nographic -no-reboot -kernel "$KERNEL" -initrd "$work/initrd.cpio" \
        -append "console=ttyS0 reboot=t panic=-1 printk.time=1" -serial "file:$work/serial" \
        -chardev "file,id=exit,path=$work/exit" -device isa-debugcon,iobase=0xf4,chardev=exit \
        -device virtio-serial-device,max_ports=1,id=s0 \
        -chardev "file,id=hvc0,path=$work/out" -device virtconsole,chardev=hvc0,bus=s0.0 \
        -device virtio-serial-device,max_ports=1,id=s1 \
        -chardev "file,id=hvc1,path=$work/err" -device virtconsole,chardev=hvc1,bus=s1.0 \
        "${drive[@]}"
    run=$(grep -a 'Run /init' "$work/serial" | sed 's/^\[ *\([0-9.]*\)\].*/\1/')
    start=$(grep -a '] init started' "$work/err" | sed 's/^smolvm: \[ *\([0-9.]*\)\].*/\1/')
    exec=$(grep -a '] exec ' "$work/err" | sed 's/^smolvm: \[ *\([0-9.]*\)\].*/\1/')
    echo "$run $start $exec"
done | awk '
    { n++; a[n] = ($3 - $1) * 1000; b[n] = ($2 - $1) * 1000; c[n] = ($3 - $2) * 1000
      printf "boot %2d: Run /init %.6f  init start +%.1f ms  exec +%.1f ms\n", n, $1, b[n], a[n] }
    function median(x, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
        return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
    END { printf "median over %d boots: Run /init -> app exec %.1f ms (Run /init -> init start %.1f ms, init start -> exec %.1f ms)\n",
          n, median(a, n), median(b, n), median(c, n) }'
