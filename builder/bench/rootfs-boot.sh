#!/bin/bash
# Which rootfs format boots faster? Builds a busybox image in each format
# (app: `sh -c true`), then boots each image's own sections under QEMU TCG
# (microvm; the squashfs served from inside the image file at its offset,
# as the stub does) and compares boot-to-exit time with hyperfine.
#   builder/bench/rootfs-boot.sh [KERNEL] [RUNS]
# Uses target/release/{smolvm,smol-init} unless SMOLVM / SMOLVM_INIT are set.
# Measures the guest side only (TCG, no KVM); the stub is not run.
set -euo pipefail
cd "$(dirname "$0")/../.."
smolvm=${SMOLVM:-target/release/smolvm}
kernel=${1:-$("$smolvm" kernel path)}
runs=${2:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/bin"
cp /bin/busybox "$work/root/bin/busybox"
ln -s busybox "$work/root/bin/sh"
printf '\x7fELF placeholder stub (not run)' > "$work/stub"
cmds=()
for fmt in squashfs initramfs; do
    "$smolvm" build --rootfs "$work/root" --entry /bin/sh --arg -c --arg true --rootfs-format "$fmt" \
        --kernel "$kernel" --stub "$work/stub" -o "$work/$fmt.vm"
    # "<initramfs offset> <length> [<rootfs offset> <length>]"
    read -r ioff ilen roff rlen < <("$smolvm" inspect --json "$work/$fmt.vm" | python3 -c '
import json, sys
s = {x["kind"]: x for x in json.load(sys.stdin)["sections"]}
out = [s["initramfs"]["offset"], s["initramfs"]["length"]]
if "rootfs" in s: out += [s["rootfs"]["offset"], s["rootfs"]["length"]]
print(*out)')
    python3 -c 'import sys; f=open(sys.argv[1],"rb"); f.seek(int(sys.argv[2])); open(sys.argv[4],"wb").write(f.read(int(sys.argv[3])))' \
        "$work/$fmt.vm" "$ioff" "$ilen" "$work/$fmt.initrd"
    drive=""
    if [ -n "${roff:-}" ]; then
        drive="-drive file=$work/$fmt.vm,format=raw,if=none,id=vda,readonly=on,offset=$roff,size=$rlen -device virtio-blk-device,drive=vda"
    fi
    cmds+=("qemu-system-x86_64 -M microvm,acpi=off -accel tcg -cpu max -nodefaults -no-user-config -nographic -no-reboot \
-m 256M -kernel $kernel -initrd $work/$fmt.initrd -append 'console=ttyS0 quiet reboot=t panic=-1' \
-device isa-debug-exit,iobase=0xf4,iosize=1 -device virtio-serial-device,max_ports=4 \
-chardev null,id=hvc0 -device virtconsole,chardev=hvc0,nr=0 -chardev null,id=hvc1 -device virtconsole,chardev=hvc1,nr=1 $drive")
done
ls -l "$work"/*.vm "$work"/*.initrd
# isa-debug-exit makes QEMU exit with (status << 1) | 1 = 1 for `true`.
hyperfine -N --runs "$runs" -i -n squashfs "${cmds[0]}" -n initramfs "${cmds[1]}"
