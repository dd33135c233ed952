#!/usr/bin/env python3
"""virtio-blk A/B in the KVM lab: stub builds side by side with QEMU, interleaved rounds.

  bench/blk_ab.py WORKDIR ROUNDS NAME=PATH/TO/vmm-stub [NAME=...]
      env: THP=madvise|always|never  switch L1's transparent huge pages first
           NOQEMU=1                  stub variants only
           MIB=N                     data per step (default 16; /proc/uptime ticks are 10 ms,
                                     so more data gives finer rates)

Every variant boots the same image contents (our kernel, the image's smol-init, a busybox
rootfs with MIB (16) MiB of random data as squashfs on /dev/vda) built with its own stub; QEMU
microvm boots the same guest (bench/lab.py's device layout). The guest times itself
(/proc/uptime) and prints `T name start end bytes`:
  blk-read         dd the whole /dev/vda, bs=1M (first read: the page cache fills)
  blk-reread       the same after drop_caches
  blk-write        MIB MiB of zeros to /dev/vdb (an extra disk on L1's tmpfs), conv=fsync
  blk-read-direct  /dev/vdb back with O_DIRECT
plus the request queue limits (Q) and /sys/block/vd?/stat after the reads (S) and the
write (W). Prints per-variant medians and the per-round runs. smolvm and smol-init come
from $CARGO_TARGET_DIR/release (default target/release).
"""
import json, os, shutil, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import lab  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "kernel-config", "bench"))
import importlib.util  # noqa: E402
_spec = importlib.util.spec_from_file_location("bt", os.path.join(ROOT, "kernel-config/bench/boot-time.py"))
bt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bt)

MIB = int(os.environ.get("MIB", "16"))
SHM = "/dev/shm/smolvm-blk-ab"  # L1's private tmpfs


def script():
    t = lambda name, amount: f'read b _ </proc/uptime; echo "T {name} $a $b {amount}" >&2'
    a = "read a _ </proc/uptime"
    q = "/sys/block/vda/queue"
    return "\n".join([
        "set -e",
        f'echo "Q $(cat {q}/max_sectors_kb) $(cat {q}/max_segments) $(cat {q}/read_ahead_kb)" >&2',
        "n=$(( $(cat /sys/block/vda/size) * 512 ))",
        f"{a}; dd if=/dev/vda of=/dev/null bs=1M 2>/dev/null; {t('blk-read', '$n')}",
        'echo "S $(cat /sys/block/vda/stat)" >&2',
        "echo 3 >/proc/sys/vm/drop_caches",
        f"{a}; dd if=/dev/vda of=/dev/null bs=1M 2>/dev/null; {t('blk-reread', '$n')}",
        f"{a}; dd if=/dev/zero of=/dev/vdb bs=1M count={MIB} conv=fsync 2>/dev/null; {t('blk-write', MIB << 20)}",
        'echo "W $(cat /sys/block/vdb/stat)" >&2',
        f"{a}; dd if=/dev/vdb of=/dev/null bs=1M iflag=direct 2>/dev/null; {t('blk-read-direct', MIB << 20)}",
        'echo "T done" >&2',
    ])


def main():
    work, rounds, variants = sys.argv[1], int(sys.argv[2]), [a.split("=", 1) for a in sys.argv[3:]]
    target = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR", "target"), "release")
    smolvm = os.path.join(target, "smolvm")
    vmlinux = subprocess.run([smolvm, "kernel", "path"], check=True, capture_output=True, text=True).stdout.strip()
    os.makedirs(work, exist_ok=True)
    lab.busybox_rootfs(f"{work}/root", MIB)
    sh = script()
    cases = []
    for name, stub in variants:
        d = f"{work}/{name}"
        os.makedirs(d, exist_ok=True)
        shutil.copy(stub, f"{d}/vmm-stub")
        shutil.copy(os.path.join(target, "smol-init"), f"{d}/smol-init")
        lab.build_image(smolvm, d, f"{work}/root", f"{d}/io.vm", vmlinux, 256)
        run = f'truncate -s {MIB + 1}M {SHM}/{name}/disk && exec {d}/io.vm --smolvm-disk={SHM}/{name}/disk -c "$0"'
        cases.append({"name": f"io {name}", "argv": ["sh", "-c", run, sh], "fresh_dirs": [f"{SHM}/{name}"], "timeout": 600})
    if not os.environ.get("NOQEMU"):
        image = f"{work}/{variants[0][0]}/io.vm"
        initrd = f"{work}/qemu-io.cpio"
        lab.qemu_initrd(smolvm, image, ["-c", sh], [], initrd, bt.newc)
        q = lab.qemu_smolinit(smolvm, "kvm", vmlinux, initrd, image, 256, "/dev/null", f"{SHM}/qemu-err", False)
        i = q.index("isa-debug-exit,iobase=0xf4,iosize=1") - 1  # vdb right after vda, as the stub's slots
        q[i:i] = ["-drive", f"file={SHM}/qemu/disk,format=raw,if=none,id=vdb", "-device", "virtio-blk-device,drive=vdb"]
        cases.append({"name": "io qemu", "argv": ["sh", "-c", f'truncate -s {MIB + 1}M {SHM}/qemu/disk && exec "$@"', "sh"] + q,
                      "fresh_dirs": [f"{SHM}/qemu"], "err_file": f"{SHM}/qemu-err", "timeout": 600})
    plan = f"{work}/plan.json"
    with open(plan, "w") as f:
        json.dump({"rounds": rounds, "sets": [{"name": "io", "cases": cases}]}, f, indent=1)
    cmd = ["python3", os.path.join(ROOT, "bench/lab_driver.py"), plan]
    if os.environ.get("THP"):
        cmd = ["sh", "-c", f'echo {os.environ["THP"]} >/sys/kernel/mm/transparent_hugepage/enabled; exec "$@"', "sh"] + cmd
    p = subprocess.run([os.path.join(ROOT, "tests/lab/run"), "-t", "3000", "--"] + cmd, cwd=ROOT, capture_output=True, text=True)
    with open(f"{work}/raw.json", "w") as f:
        f.write(p.stdout)
    try:
        raw = json.loads(p.stdout)
    except ValueError:
        sys.exit(f"lab exit {p.returncode}: {(p.stderr or p.stdout)[-600:]}")
    io = lab.summarize(raw)["io"]
    base = variants[0][0]
    for vmm, r in io.items():
        print(vmm)
        for k, v in r["rates"].items():
            line = f"  {k:16} median {r['median'][k] / 1e6:7.2f} MB/s   runs {' '.join(f'{x / 1e6:.1f}' for x in v)}"
            ours, theirs = r["by_round"], io[base]["by_round"]
            ratios = [ours[n][k] / theirs[n][k] for n in ours if vmm != base and theirs.get(n, {}).get(k)]
            if ratios:
                line += f"\n  {'':16} / {base} per round: median {statistics.median(ratios):.3f} [{' '.join(f'{x:.2f}' for x in ratios)}]"
            print(line)
    for name, runs in raw["results"].items():
        for line in runs[-1]["err"].splitlines():
            if line[:2] in ("Q ", "S ", "W "):
                print(name, line)


if __name__ == "__main__":
    main()
