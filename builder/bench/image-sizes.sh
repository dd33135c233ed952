#!/bin/bash
# Per-section sizes of images for a static hello-world (demo/hello.c) and for
# busybox (Debian busybox-static), in both rootfs formats.
#   builder/bench/image-sizes.sh [KERNEL]
# Uses target/release/{smolvm,vmm-stub,smol-init} unless SMOLVM, SMOLVM_STUB,
# SMOLVM_INIT are set; KERNEL defaults to `smolvm kernel path`.
set -euo pipefail
cd "$(dirname "$0")/../.."
smolvm=${SMOLVM:-target/release/smolvm}
kernel=${1:-$("$smolvm" kernel path)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/hello/bin" "$work/busybox/bin"
gcc -Os -static -nostdlib -fno-asynchronous-unwind-tables -fno-stack-protector -s -Wl,-n -Wl,--build-id=none \
    -o "$work/hello/bin/hello" demo/hello.c
cp /bin/busybox "$work/busybox/bin/busybox"
ln -s busybox "$work/busybox/bin/sh"
printf '%-8s %-9s' app rootfs
for k in stub kernel initramfs rootfs manifest kernel-info; do printf ' %10s' "$k"; done
printf ' %10s\n' total
for app in hello busybox; do
    entry=/bin/$app
    for fmt in squashfs initramfs; do
        "$smolvm" build --rootfs "$work/$app" --entry "$entry" --rootfs-format "$fmt" \
            --kernel "$kernel" -o "$work/$app-$fmt.vm"
        "$smolvm" inspect --json "$work/$app-$fmt.vm" | python3 -c '
import json, sys
d = json.load(sys.stdin)
sizes = {s["kind"]: s["length"] for s in d["sections"]}
cols = ["stub", "kernel", "initramfs", "rootfs", "manifest", "kernel-info"]
print("%-8s %-9s" % (sys.argv[1], sys.argv[2]) + "".join(" %10s" % sizes.get(c, "-") for c in cols) + " %10d" % d["size"])
' "$app" "$fmt"
    done
done
