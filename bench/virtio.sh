#!/usr/bin/env bash
# virtio throughput benchmark (issue 7), run where a Linux guest can boot
# under KVM (tests/lab/run: directly on hardware KVM, else inside the lab's
# L1 guest). Builds one busybox image with a 64 MiB incompressible file in
# its squashfs root and reports, each as (time of a run that moves N bytes
# - time of the same run moving nothing), medians of RUNS:
#   * guest -> host stdout:  dd if=/dev/zero bs=64k  | host > /dev/null
#   * host -> guest stdin:   head -c N /dev/zero | app 'wc -c'
#   * block sequential read: dd if=/dev/vda of=/dev/null bs=1M (the image's
#     rootfs section, served by pread from the image file)
# Usage: bench/virtio.sh [RUNS] [MIB]     (default 3 runs, 64 MiB)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
mib=${2:-64}
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d /tmp/smolvm-vbench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# One package per cargo run (feature unification would link std into the
# no_std binaries).
for p in vmm-stub smol-init builder; do cargo build --release -q -p $p; done
kernel=$("$target/release/smolvm" kernel path)

root=$work/rootfs
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
cp /bin/busybox "$root/bin/"
for a in sh dd head wc cat; do ln -s busybox "$root/bin/$a"; done
head -c $((mib << 20)) /dev/urandom > "$root/blob"
"$target/release/smolvm" build --rootfs "$root" --entry /bin/sh --mem 256M --kernel "$kernel" \
    --stub "$target/release/vmm-stub" --init "$target/release/smol-init" -o "$work/app.vm" >/dev/null

# Runs inside the lab: each measurement is a pair (empty, full) per run.
cat > "$work/measure.sh" <<SCRIPT
set -eu
app=$work/app.vm
n=$((mib << 20))
ns() { date +%s%N; }
t() { local s=\$(ns); "\$@" >/dev/null; echo \$(( \$(ns) - s )); }
echo "vda \$(\$app -c 'wc -c < /dev/vda')"
for i in \$(seq $runs); do
  out0=\$(t \$app -c 'dd if=/dev/zero bs=64k count=0 2>/dev/null')
  out1=\$(t \$app -c "dd if=/dev/zero bs=64k count=$((mib * 16)) 2>/dev/null")
  in0=\$(t sh -c "head -c 0 /dev/zero | \$app -c 'wc -c'")
  in1=\$(t sh -c "head -c \$n /dev/zero | \$app -c 'wc -c'")
  blk0=\$(t \$app -c 'dd if=/dev/vda of=/dev/null bs=1M count=0 2>/dev/null')
  blk1=\$(t \$app -c 'dd if=/dev/vda of=/dev/null bs=1M 2>/dev/null')
  echo "run \$i out \$out0 \$out1 in \$in0 \$in1 blk \$blk0 \$blk1"
done
SCRIPT
size=$(stat -c %s "$work/app.vm")
echo "image: $((size >> 20)) MiB (rootfs with a ${mib} MiB incompressible file), runs: $runs"
tests/lab/run -t 3000 -- sh "$work/measure.sh" | tee "$work/raw.txt"
python3 - "$work/raw.txt" "$mib" "$size" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.startswith("run ")]
mib = int(sys.argv[2])
def mbps(a, b, nbytes):
    d = (int(b) - int(a)) / 1e9
    return nbytes / d / 1e6 if d > 0 else float("inf")
out = [mbps(r[3], r[4], mib << 20) for r in rows]
inp = [mbps(r[6], r[7], mib << 20) for r in rows]
# dd reads the whole rootfs section: its size, as the guest sees /dev/vda.
vda = int(next(l.split()[1] for l in open(sys.argv[1]) if l.startswith("vda ")))
blk = [mbps(r[9], r[10], vda) for r in rows]
for name, v in (("guest -> host stdout", out), ("host -> guest stdin", inp), ("block sequential read", blk)):
    print(f"{name:24s} median {statistics.median(v):8.1f} MB/s   (runs: {', '.join(f'{x:.1f}' for x in v)})")
PY
