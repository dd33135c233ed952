#!/usr/bin/env python3
"""virtio-9p A/B in the KVM lab: stub builds side by side with QEMU's virtio-9p, interleaved.

  bench/p9_ab.py WORKDIR ROUNDS REPS NAME=PATH/TO/vmm-stub [NAME=...]
      env: NOQEMU=1  stub variants only
           MIB=N     file size per rep (default 4; /proc/uptime ticks are 10 ms)

Every variant boots the same guest (our kernel, smol-init, a busybox rootfs) built into an
image with its own stub; QEMU microvm boots the same guest with `virtio-9p-device` +
`-fsdev local` (bench/lab.py's layout). Both shares live on L1's tmpfs; smol-init mounts
them alike (init/src/mounts.rs NINEP_OPTIONS). One boot per VMM and round, the order
rotated each round; each boot repeats REPS times, MIB (4) MiB each, timed by the guest
(/proc/uptime):
  9p-write / 9p-write128  dd of zeros, bs=64k / 128k, conv=fsync (make bench uses 64k)
  9p-read  / 9p-read128   dd of that file back, same block size
The first rep of a boot warms up and is dropped. Prints each case's median and, per round,
every variant's ratio to the first one (the host's load moves all of a round alike, so
the per-round ratios are steadier than the medians). smolvm and smol-init come from
$CARGO_TARGET_DIR/release (default target/release).
"""
import json, os, re, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import lab  # noqa: E402
import importlib.util  # noqa: E402
_spec = importlib.util.spec_from_file_location("bt", os.path.join(ROOT, "kernel-config/bench/boot-time.py"))
bt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bt)

SIZE = int(os.environ.get("MIB", "4")) << 20
SHM = "/dev/shm/smolvm-p9-ab"  # L1's private tmpfs
CASES = ("9p-write", "9p-read", "9p-write128", "9p-read128")


def script(reps):
    t = lambda name: f'read b _ </proc/uptime; echo "T {name} $a $b {SIZE}" >&2'
    a = "read a _ </proc/uptime"
    steps = []
    for bs, sfx in ((65536, ""), (131072, "128")):
        steps += [f"{a}; dd if=/dev/zero of=/data/f bs={bs} count={SIZE // bs} conv=fsync 2>/dev/null; {t('9p-write' + sfx)}",
                  f"{a}; dd if=/data/f of=/dev/null bs={bs} 2>/dev/null; {t('9p-read' + sfx)}", "rm /data/f"]
    return "\n".join(["set -e", "i=0", f"while [ $i -lt {reps} ]; do", *steps, "i=$((i+1)); done"])


def rates(run, case):
    out = [SIZE / (float(m.group(2)) - float(m.group(1))) / 1e6
           for m in re.finditer(rf"^T {case} ([\d.]+) ([\d.]+) \d+\s*$", run["err"], re.M)
           if float(m.group(2)) > float(m.group(1))]
    return out[1:] if len(out) > 2 else out


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    work, rounds, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    variants = [a.split("=", 1) for a in sys.argv[4:]]
    target = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR", "target"), "release")
    smolvm = os.path.join(target, "smolvm")
    vmlinux = subprocess.run([smolvm, "kernel", "path"], capture_output=True, text=True, check=True).stdout.strip()
    os.makedirs(work, exist_ok=True)
    lab.busybox_rootfs(f"{work}/root")
    s = script(reps)
    cases = []
    for name, stub in variants:
        image = f"{work}/{name}.vm"
        subprocess.run([smolvm, "build", "--rootfs", f"{work}/root", "--entry", "/bin/sh", "--mem", "256M",
                        "--stub", stub, "--init", f"{target}/smol-init", "--kernel", vmlinux, "-o", image],
                       check=True, capture_output=True)
        cases.append({"name": name, "argv": [image, f"--smolvm-share={SHM}/{name}:/data", "-c", s],
                      "fresh_dirs": [f"{SHM}/{name}"], "timeout": 900})
    if not os.environ.get("NOQEMU"):
        initrd = f"{work}/qemu.cpio"
        lab.qemu_initrd(smolvm, image, ["-c", s], [("smolvm0", "/data", "rw")], initrd, bt.newc)
        argv = lab.qemu_smolinit(smolvm, "kvm", vmlinux, initrd, image, 256, "/dev/null", f"{SHM}/qemu-err", False, f"{SHM}/qemu")
        cases.append({"name": "qemu", "argv": argv, "fresh_dirs": [f"{SHM}/qemu"], "err_file": f"{SHM}/qemu-err", "timeout": 900})
    with open(f"{work}/plan.json", "w") as f:
        json.dump({"rounds": rounds, "sets": [{"name": "9p", "cases": cases}]}, f)
    p = subprocess.run([os.path.join(ROOT, "tests/lab/run"), "-t", "3000", "--", "python3",
                        os.path.join(ROOT, "bench/lab_driver.py"), f"{work}/plan.json"], capture_output=True, text=True)
    try:
        raw = json.loads(p.stdout)["results"]
    except ValueError:
        sys.exit(f"lab exit {p.returncode}: {(p.stderr or p.stdout)[-600:]}")
    with open(f"{work}/raw.json", "w") as f:
        json.dump(raw, f)
    base = cases[0]["name"]
    for case in CASES:
        for c in cases:
            runs = raw[c["name"]]
            failed = sum(1 for r in runs if "T 9p-read128" not in r["err"])
            all_rates = [x for r in runs for x in rates(r, case)]
            med = statistics.median(all_rates) if all_rates else 0
            line = f"{case:11} {c['name']:10} median {med:6.2f} MB/s (n={len(all_rates)}{f', {failed} failed' if failed else ''})"
            if c["name"] != base:
                ratios = [statistics.median(b) / statistics.median(a) for ra, rb in zip(raw[base], runs)
                          for a, b in [(rates(ra, case), rates(rb, case))] if a and b]
                if ratios:
                    line += f"  / {base} per round: median {statistics.median(ratios):.2f} [{' '.join(f'{x:.2f}' for x in ratios)}]"
            print(line)


if __name__ == "__main__":
    main()
