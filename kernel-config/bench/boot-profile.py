#!/usr/bin/env python3
"""Boot profile of the smolvm guest path under QEMU TCG (`-M microvm,acpi=off`).

Boots kernel + smol-init + a probe app (bench/probe.c, static, no libc) N times per
variant and reports medians on the guest's printk clock (seconds since kernel entry):
  initcall0  first initcall            (variants with initcall_debug)
  run_init   the kernel's "Run /init"
  init       smol-init's first instruction (its CLOCK_MONOTONIC "init started",
             moved onto the printk clock; variants with `log debug` only)
  app        the app's first instruction: the probe reads CLOCK_MONOTONIC first thing,
             then stamps a line into the kernel log (same clock as Run /init)
  app mono   that CLOCK_MONOTONIC reading itself (the issue's clock)
  vm         the app's first instruction on the TSC, which under TCG counts from the VM's
             start: firmware + bzImage decompression + kernel + init (the whole path)
  host       wall clock from QEMU start to QEMU exit (includes bzImage decompression,
             which the guest clock does not see)
  free init  from the log line before "Freeing unused kernel image (initmem)" to it:
             mostly the poisoning of the freed init memory, which under TCG runs
             through QEMU's self-modifying-code path (BOOT-PROFILE.md)
  cpu        QEMU's user+system CPU time for the whole run: the work, nearly independent
             of machine load (guest and wall clocks are not: compare variants on this)
plus the 15 most expensive initcalls (median usecs over the initcall_debug boots).
With --icount QEMU counts instructions (`-icount shift=0,sleep=off`): the guest clock
then advances 1 ns per guest instruction, so the same boot gives the same figures on a
loaded or an idle host, and the figures measure the guest's own work (what it will cost
under hardware KVM), free of TCG's translation and self-modifying-code overheads. Use it
to attribute cuts; use the default (real-time TCG) for the issue's wall-clock figures.
Guest points come from the kernel log buffer, which the probe dumps to its stdout: no
console output is needed, so `quiet` variants are measured like the others.

The root filesystem is what the product uses by default: a squashfs on virtio-blk
(/dev/vda), `--rootfs initramfs` for the initramfs form. Memory: -m 128 (the stub's
default, linker::abi::DEFAULT_MEM_MIB). Every (kernel, variant) pair boots once per
round, rounds interleaved, so machine load hits all alike. A boot that times out or
does not reach the app counts as failed ("ok" column): `-n 100` is the hang check.

  kernel-config/bench/boot-profile.py                      # default variants, 11 rounds
  kernel-config/bench/boot-profile.py -n 100 --only tcg    # hang check
  kernel-config/bench/boot-profile.py --kernel old=DIR --kernel new=DIR --only tcg
  kernel-config/bench/boot-profile.py --formats --only tcg # + bzImage lz4/zstd/xz
  kernel-config/bench/boot-profile.py --variant 'x=<extra cmdline>'

Comparing with other kernels (BOOT-PROFILE.md, "Side by side"): `--init probe` boots the
probe itself as /init from a bare initramfs (no smol-init, no devices but the serial
console; its output is read from the serial port), so any kernel with a serial console
can be measured to its first user instruction; `--machine pc` boots on QEMU's `-M pc`
instead (needs `--init probe`: pc has no virtio-mmio); `--acpi LABEL` boots that kernel
on `-M microvm` with ACPI tables, for kernels that find virtio-mmio devices only through
ACPI (Firecracker's config leaves VIRTIO_MMIO_CMDLINE_DEVICES unset), so smol-init's
devices exist for it too.

  kernel-config/bench/boot-profile.py --init probe --machine pc --only base,tcg \
      --kernel smolvm=DIR --kernel firecracker=/work/tgt/fc-kernel/vmlinux

A benchmark, not a test. Needs qemu-system-x86, gcc, mksquashfs, smol-init
(SMOLVM_INIT or target/release/smol-init) and the cached kernel (`smolvm kernel path`,
SMOLVM_BIN or target/release/smolvm) unless --kernel is given.
"""
import argparse, os, re, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
# The stub's base command line (vmm-stub/src/cmdline.rs) with reboot=t instead of =k
# (QEMU's microvm ends on a triple fault with -no-reboot), plus `quiet`, which the stub
# adds unless kernel logging is asked for, and printk.time=1 for the timestamps.
BASE = "console=ttyS0 reboot=t panic=-1 8250.nr_uarts=1 quiet printk.time=1"
TS = re.compile(r"\[\s*(\d+\.\d+)\]")
CALL = re.compile(r"initcall (\S+?)\+0x\S+ returned -?\d+ after (\d+) usecs")
PROBE = re.compile(r"\[\s*(\d+\.\d+)\] smolvm-probe: app started, monotonic (\d+\.\d+) tsc (\d+)")


def newc(entries):
    """A cpio newc archive from (name, mode, data, rdevmajor, rdevminor) tuples."""
    out = bytearray()
    for ino, (name, mode, data, major, minor) in enumerate(entries + [("TRAILER!!!", 0, b"", 0, 0)], 1):
        nb = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, major, minor, len(nb), 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + nb
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def cfg(*fields):
    """A linker::config record file: magic, then NUL-terminated fields."""
    return b"SMOLCFG1" + b"".join(f.encode() + b"\0" for f in fields)


def images(work, init, rootfs):
    """initrd-<log>.cpio for log in (off, debug), and the squashfs when asked for."""
    probe = os.path.join(work, "probe")
    subprocess.run(["gcc", "-Os", "-static", "-nostdlib", "-fno-asynchronous-unwind-tables",
                    "-fno-stack-protector", "-s", "-Wl,-n", "-Wl,--build-id=none", "-o", probe,
                    os.path.join(HERE, "probe.c")], check=True, stderr=subprocess.DEVNULL)
    rd = lambda p: open(p, "rb").read()
    d = lambda name: (name, 0o040755, b"", 0, 0)
    tree = [d(x) for x in ("bin", "dev", "proc", "sys", "tmp", "run", "mnt", "data")]
    app = ("bin/probe", 0o100755, rd(probe), 0, 0)
    if rootfs == "squashfs":
        root = os.path.join(work, "root")
        for name, mode, data, _, _ in tree + [app]:
            p = os.path.join(root, name)
            if mode & 0o040000:
                os.makedirs(p, exist_ok=True)
            else:
                open(p, "wb").write(data)
                os.chmod(p, 0o755)
        subprocess.run(["mksquashfs", root, os.path.join(work, "rootfs.sqfs"), "-noappend", "-quiet",
                        "-no-progress", "-all-root", "-comp", "zstd"], check=True, stdout=subprocess.DEVNULL)
        rootfs_entries = []
    else:
        rootfs_entries = [d("rootfs")] + [("rootfs/" + e[0],) + e[1:] for e in tree + [app]]
    # --init probe: the probe is /init; its stdout is /dev/console, the serial port, and it
    # stamps its start through /dev/kmsg (no devtmpfs mounted before /init runs).
    with open(os.path.join(work, "initrd-probe.cpio"), "wb") as f:
        f.write(newc([d("dev"), ("dev/console", 0o020600, b"", 5, 1), ("dev/kmsg", 0o020644, b"", 1, 11),
                      ("init", 0o100755, rd(probe), 0, 0)]))
    for log in ("off", "debug"):
        entries = [d("dev"), ("dev/console", 0o020600, b"", 5, 1), ("init", 0o100755, rd(init), 0, 0),
                   d("smolvm"), ("smolvm/manifest", 0o100644, cfg("entry", "/bin/probe", "rootfs", rootfs), 0, 0),
                   ("smolvm/run", 0o100644, cfg("log", log), 0, 0)] + rootfs_entries
        with open(os.path.join(work, f"initrd-{log}.cpio"), "wb") as f:
            f.write(newc(sorted(entries)))


def boot(kernel, append, log, mem, cpu, a, work, khz, acpi=False):
    """One boot: dict of the measured points (guest seconds) plus initcall costs, or None."""
    f = lambda n: os.path.join(work, n)
    for n in ("serial", "out", "err", "exit"):
        if os.path.exists(f(n)):
            os.remove(f(n))
    probe_init = a.init == "probe"
    machine = "pc" if a.machine == "pc" else "microvm" if acpi else "microvm,acpi=off"
    cmd = ["qemu-system-x86_64", "-M", machine, "-accel", "tcg", "-cpu", cpu, "-m", f"{mem}M",
           "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-kernel", kernel,
           "-initrd", f("initrd-probe.cpio" if probe_init else f"initrd-{log}.cpio"),
           "-append", f"{BASE} {append}".strip(), "-serial", f"file:{f('serial')}",
           "-chardev", f"file,id=exit,path={f('exit')}", "-device", "isa-debugcon,iobase=0xf4,chardev=exit"]
    if not probe_init:
        cmd += ["-device", "virtio-serial-device,max_ports=1,id=s0",
                "-chardev", f"file,id=hvc0,path={f('out')}", "-device", "virtconsole,chardev=hvc0,bus=s0.0",
                "-device", "virtio-serial-device,max_ports=1,id=s1",
                "-chardev", f"file,id=hvc1,path={f('err')}", "-device", "virtconsole,chardev=hvc1,bus=s1.0"]
    if a.icount:
        cmd[cmd.index("-cpu"):cmd.index("-cpu")] = ["-icount", "shift=0,sleep=off"]
    if a.rootfs == "squashfs" and not probe_init:
        cmd += ["-drive", f"file={f('rootfs.sqfs')},format=raw,if=none,id=vda,readonly=on",
                "-device", "virtio-blk-device,drive=vda"]
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        pid, _, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > a.timeout:
            p.kill()
            p.wait()
            return None
        time.sleep(0.002)
    p.returncode = 0  # reaped by wait4
    # cpu: QEMU's user+system time, all threads: the work done, much less sensitive to
    # machine load than the wall clock (and than the guest clock, which follows it).
    r = {"host": time.monotonic() - start, "cpu": ru.ru_utime + ru.ru_stime, "calls": {}}
    read = lambda n: open(f(n), "rb").read().decode(errors="replace") if os.path.exists(f(n)) else ""
    out = read("serial" if probe_init else "out")
    m = PROBE.search(out)
    if "Hello from smolvm!" not in out or not m:
        return None
    r["app"] = float(m.group(1))
    r["mono"] = float(m.group(2))
    r["vm"] = int(m.group(3)) / (int(khz) * 1000)
    offset = float(m.group(1)) - float(m.group(2))  # printk clock - CLOCK_MONOTONIC
    prev = None
    for line in out.splitlines():
        t = TS.search(line)
        if not t:
            continue
        ts = float(t.group(1))
        if "Freeing unused kernel image (initmem)" in line and prev is not None:
            r["freeinit"] = ts - prev
        prev = ts
        if "calling  " in line and "initcall0" not in r:
            r["initcall0"] = ts
        elif "Run /init" in line:
            r["run_init"] = ts
        c = CALL.search(line)
        if c:
            r["calls"][c.group(1)] = r["calls"].get(c.group(1), 0) + int(c.group(2))
    for line in read("err").splitlines():
        t = TS.search(line)
        if t and "] init started" in line:
            r["init"] = float(t.group(1)) + offset
    return r


def smolvm(*args):
    exe = os.environ.get("SMOLVM_BIN") or os.path.join(ROOT, "target/release/smolvm")
    return subprocess.run([exe, *args], check=True, capture_output=True, text=True).stdout.strip()


def host_tsc_khz():
    for line in open("/proc/cpuinfo"):
        if line.startswith("cpu MHz"):
            return str(int(float(line.split(":")[1]) * 1000))
    return "2000000"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--runs", type=int, default=11)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("-m", "--mem", default="128", help="guest MiB, comma-separated list (default: the stub's 128)")
    ap.add_argument("--rootfs", choices=["squashfs", "initramfs"], default="squashfs")
    ap.add_argument("--kernel", action="append", default=[], metavar="LABEL=PATH",
                    help="vmlinux or cache entry dir (repeatable; default: `smolvm kernel path`)")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=CMDLINE",
                    help="extra variant: command line added to the base (repeatable)")
    ap.add_argument("--only", help="comma-separated variant name prefixes")
    ap.add_argument("--formats", action="store_true", help="also boot each bzImage (lz4, zstd, xz)")
    ap.add_argument("--init", choices=["smol-init", "probe"], default="smol-init",
                    help="probe: the probe app is /init (bare initramfs, serial console only)")
    ap.add_argument("--machine", choices=["microvm", "pc"], default="microvm",
                    help="pc: QEMU -M pc (needs --init probe)")
    ap.add_argument("--acpi", action="append", default=[], metavar="LABEL",
                    help="boot kernel LABEL on microvm with ACPI tables (device discovery through ACPI)")
    ap.add_argument("--cpu", action="append", default=[], metavar="MODEL",
                    help="QEMU -cpu model (repeatable: one variant each; default: max)")
    ap.add_argument("--keep", metavar="DIR", help="copy the last boot's files (kernel log in out/serial) to DIR")
    ap.add_argument("--tsc-khz", help="tsc_early_khz= value (default: the host's, which TCG's TSC follows)")
    ap.add_argument("--icount", action="store_true",
                    help="-icount shift=0,sleep=off: guest time = instructions executed (1 ns each), "
                         "deterministic and independent of machine load")
    a = ap.parse_args()
    if a.machine == "pc" and a.init != "probe":
        ap.error("--machine pc needs --init probe (pc has no virtio-mmio for smol-init's devices)")
    kernels = [k.split("=", 1) for k in a.kernel] or [["kernel", smolvm("kernel", "path")]]
    kernels = [(label, os.path.join(p, "vmlinux") if os.path.isdir(p) else p) for label, p in kernels]
    khz = a.tsc_khz or ("1000000" if a.icount else host_tsc_khz())
    # TCG: the host's TSC rate (TCG has no PIT-free way to calibrate; the stub's KVM guest
    # gets it from kvmclock), no clocksource watchdog, and no LAPIC timer calibration (TCG's
    # APIC has no TSC-deadline mode; under KVM the stub's CPUID has it and the kernel skips
    # the calibration the same way): the PIT stays the tick.
    tcg = f"tsc_early_khz={khz} tsc=reliable noapictimer"
    variants = [("base", "", "off"), ("tcg", tcg, "off"),
                ("profile", f"{tcg} initcall_debug", "debug")]
    variants += [(v.split("=", 1)[0], v.split("=", 1)[1], "off") for v in a.variant]
    if a.only:
        variants = [v for v in variants if any(v[0].startswith(k) for k in a.only.split(","))]
    mems = a.mem.split(",")
    cpus = a.cpu or ["max"]
    runs = []  # (label, kernel file, cmdline, log, MiB, CPU model, ACPI)
    for klabel, vmlinux in kernels:
        pre = f"{klabel} " if len(kernels) > 1 else ""
        files = [("", vmlinux)]
        if a.formats:
            files += [(f" bzImage-{c}", os.path.join(os.path.dirname(vmlinux), f"bzImage-{c}"))
                      for c in ("lz4", "zstd", "xz")]
        for fl, kf in files:
            for name, extra, log in variants:
                for mem in mems:
                    for cpu in cpus:
                        runs.append((f"{pre}{name}{fl}" + (f" {mem}M" if len(mems) > 1 else "")
                                     + (f" {cpu}" if len(cpus) > 1 else ""), kf, extra, log, mem, cpu,
                                     klabel in a.acpi))
    init = os.environ.get("SMOLVM_INIT") or os.path.join(ROOT, "target/release/smol-init")
    results = {r[0]: [] for r in runs}
    fails = {r[0]: 0 for r in runs}
    with tempfile.TemporaryDirectory() as work:
        images(work, init, a.rootfs)
        t0 = time.monotonic()
        for i in range(a.runs):
            for name, kf, extra, log, mem, cpu, acpi in runs:
                r = boot(kf, extra, log, mem, cpu, a, work, khz, acpi)
                if r is None:
                    fails[name] += 1
                    keep = os.path.join(tempfile.gettempdir(), f"boot-profile-fail-{fails[name]}")
                    shutil.copytree(work, keep, dirs_exist_ok=True)
                    print(f"{name}: boot failed, files kept in {keep}", file=sys.stderr)
                else:
                    results[name].append(r)
            if a.keep:
                shutil.copytree(work, a.keep, dirs_exist_ok=True)
            print(f"round {i + 1}/{a.runs} done ({time.monotonic() - t0:.0f} s, load {os.getloadavg()[0]:.1f})",
                  file=sys.stderr)
    digits = 1 if a.icount else 0  # icount: 0.1 ms = 100k instructions
    med = lambda rs, key: (f"{statistics.median(x[key] for x in rs if key in x) * 1000:.{digits}f}"
                           if any(key in x for x in rs) else "-")
    clock = "guest clock = instructions (icount, 1 ns each)" if a.icount else "guest printk clock"
    what = "probe as /init (bare initramfs)" if a.init == "probe" else f"smol-init + probe, rootfs {a.rootfs}"
    print(f"{a.runs} rounds, {what}, -M {a.machine}, -m {a.mem} MiB, -cpu {' / '.join(cpus)}, load avg {os.getloadavg()[0]:.1f}; "
          f"medians in ms, {clock} (host = QEMU wall)")
    for label, k in kernels:
        acpi = ", ACPI tables" if label in a.acpi and a.machine == "microvm" else ""
        print(f"  kernel {label}: {k}{acpi}")
    for name, extra, _ in variants:
        print(f"  {name}: {BASE} {extra}".rstrip())
    print("\n| variant | initcall0 | Run /init | init start | app start | app mono | vm start → app | free init | host wall | host cpu | ok |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, *_ in runs:
        rs = results[name]
        print(f"| {name} | {med(rs, 'initcall0')} | {med(rs, 'run_init')} | {med(rs, 'init')} | "
              f"{med(rs, 'app')} | {med(rs, 'mono')} | {med(rs, 'vm')} | {med(rs, 'freeinit')} | {med(rs, 'host')} | {med(rs, 'cpu')} | {len(rs)}/{len(rs) + fails[name]} |")
    for klabel, _ in kernels:
        prof = [r for n, rs in results.items() if n.startswith(f"{klabel} profile" if len(kernels) > 1 else "profile")
                for r in rs]
        if not prof:
            continue
        names = {c for r in prof for c in r["calls"]}
        cost = {c: statistics.median(r["calls"].get(c, 0) for r in prof) for c in names}
        total = sum(cost.values())
        print(f"\nTop 15 initcalls, {klabel} (median usecs over {len(prof)} boots; all initcalls: {total / 1000:.0f} ms)\n")
        print("| initcall | usecs |")
        print("|---|---:|")
        for c in sorted(cost, key=cost.get, reverse=True)[:15]:
            print(f"| {c} | {cost[c]:.0f} |")


if __name__ == "__main__":
    main()
