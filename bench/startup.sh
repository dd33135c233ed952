#!/usr/bin/env bash
# Startup benchmark of vmm-stub (issue 6): exec -> trivial guest (one serial
# byte, then exit status 0 through port 0xf4) -> process exit, side by side
# in one hyperfine run with
#   * floor: a program that only opens /dev/kvm, creates a VM with one page
#     and a vCPU, and runs it to HLT (bench/floor.c),
#   * QEMU microvm with KVM booting the same guest (PVH entry).
# Prints medians, ratios to the floor, peak RSS, and the stub's size.
# Usage: bench/startup.sh [RUNS]      (needs /dev/kvm, gcc, hyperfine, qemu)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d /tmp/smolvm-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# One package per cargo run: built together, the builder's `linker/std`
# feature would be unified into the no_std binaries.
for p in vmm-stub smol-init builder; do cargo build --release -q -p $p; done
gcc -O2 -static -o "$work/floor" bench/floor.c
gcc -nostdlib -static -no-pie -Wl,-Ttext-segment=0x200000 -Wl,--build-id=none \
    -o "$work/trivial" bench/trivial.S

# The image: the real stub and init, the trivial guest as its kernel.
mkdir -p "$work/rootfs"
printf '#!/bin/sh\n' > "$work/rootfs/app" && chmod +x "$work/rootfs/app"
"$target/release/smolvm" build --rootfs "$work/rootfs" --entry /app --rootfs-format initramfs \
    --kernel "$work/trivial" --stub "$target/release/vmm-stub" --init "$target/release/smol-init" \
    --mem 64M -o "$work/trivial.vm" >/dev/null

qemu=(qemu-system-x86_64 -M microvm -enable-kvm -cpu host,-arch-capabilities -m 64M -nodefaults
      -no-user-config -nographic -serial stdio -kernel "$work/trivial"
      -device isa-debug-exit,iobase=0xf4,iosize=4)
# Sanity: each prints the byte and ends as expected.
[ "$("$work/trivial.vm" --smolvm-log=kernel 2>&1)" = "!" ] || { echo "stub run failed" >&2; exit 1; }
"$work/floor" || { echo "floor failed" >&2; exit 1; }
have_qemu=1
[ "$("${qemu[@]}" 2>/dev/null)" = "!" ] || { have_qemu=0; echo "(QEMU microvm with KVM unavailable: left out)" >&2; }

cmds=("$work/floor" "$work/trivial.vm")
names=(floor vmm-stub)
if [ $have_qemu = 1 ]; then cmds+=("${qemu[*]}"); names+=(qemu-microvm); fi
hyperfine -N -i -w 5 -r "$runs" --export-json "$work/h.json" "${cmds[@]}" >/dev/null 2>&1 \
    || hyperfine -i -w 5 -r "$runs" --export-json "$work/h.json" "${cmds[@]}" >/dev/null

# Peak RSS (KiB), median of 9 runs each.
rss() { for _ in 1 2 3 4 5 6 7 8 9; do { /usr/bin/time -f %M "$@" 2>&1 >/dev/null || true; } | tail -1; done | sort -n | sed -n 5p; }
rss_floor=$(rss "$work/floor")
rss_stub=$(rss "$work/trivial.vm")
rss_qemu=-
[ $have_qemu = 1 ] && rss_qemu=$(rss "${qemu[@]}")

cp "$target/release/vmm-stub" "$work/stub-stripped" && strip "$work/stub-stripped"
python3 - "$work/h.json" "$rss_floor" "$rss_stub" "$rss_qemu" "$(stat -c %s "$work/stub-stripped")" "${names[@]}" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))["results"]
rss = dict(zip(["floor", "vmm-stub", "qemu-microvm"], sys.argv[2:5]))
size, names = int(sys.argv[5]), sys.argv[6:]
floor = h[0]["median"]
print(f"{'':14} {'median':>9} {'mean±sd':>16} {'vs floor':>9} {'peak RSS':>10}")
for name, r in zip(names, h):
    print(f"{name:14} {r['median']*1e3:7.2f}ms {r['mean']*1e3:7.2f}±{r['stddev']*1e3:5.2f}ms"
          f" {r['median']/floor:8.2f}x {rss[name]:>7} KiB")
print(f"vmm-stub stripped size: {size} bytes ({size/1024:.1f} KiB; budget 64 KiB)")
PY
