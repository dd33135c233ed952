#!/usr/bin/env python3
"""Boot profile of the smolvm guest path under QEMU TCG (`-M microvm,acpi=off`).

Boots kernel + smol-init + a static hello app (demo/hello.c, initramfs rootfs) and
reports medians, in guest seconds (printk.time / smol-init's CLOCK_MONOTONIC with
`log debug` in the runtime config), of:
  initcall0  first initcall (only in the `initcall_debug` profile variant)
  run_init   kernel's "Run /init" line (absent under `quiet`)
  init       smol-init's first instruction ("init started")
  exec       right before execve of the app ("exec ...")
  host       wall clock from QEMU start to QEMU exit (includes bzImage decompression,
             which guest clocks do not see)
plus the 15 most expensive initcalls (median usecs over the profile boots).

Variants are interleaved (run 1 of every variant, then run 2, ...) so machine load
spreads evenly. Each variant is a kernel file + extra command line.

  kernel-config/bench/boot-profile.py                 # default variant set, 7 runs
  kernel-config/bench/boot-profile.py -n 5 --only base,quiet,lpj
  kernel-config/bench/boot-profile.py --append 'foo=1' --only base

A benchmark, not a test. Needs qemu-system-x86, gcc, target/release/{smolvm,smol-init}
(or SMOLVM_BIN / SMOLVM_INIT), and the cached kernel (`smolvm kernel path`).
"""
import argparse, os, re, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The stub's base command line (vmm-stub/src/cmdline.rs) with reboot=t: QEMU's
# microvm ends on a triple fault with -no-reboot.
BASE = "console=ttyS0 reboot=t panic=-1 8250.nr_uarts=1 printk.time=1"
TS = re.compile(r"\[\s*(\d+\.\d+)\]")
CALL = re.compile(r"initcall (\S+?)\+0x\S+ returned -?\d+ after (\d+) usecs")


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


def initramfs(path, init, work):
    hello = os.path.join(work, "hello")
    subprocess.run(["gcc", "-Os", "-static", "-nostdlib", "-fno-asynchronous-unwind-tables",
                    "-fno-stack-protector", "-s", "-Wl,-n", "-Wl,--build-id=none", "-o", hello,
                    os.path.join(ROOT, "demo/hello.c")], check=True)
    rd = lambda p: open(p, "rb").read()
    d = lambda name: (name, 0o040755, b"", 0, 0)
    entries = [d("dev"), ("dev/console", 0o020600, b"", 5, 1), ("init", 0o100755, rd(init), 0, 0),
               d("rootfs")] + [d("rootfs/" + x) for x in ("bin", "dev", "proc", "sys", "tmp", "run", "mnt", "data")] + [
               ("rootfs/bin/hello", 0o100755, rd(hello), 0, 0), d("smolvm"),
               ("smolvm/manifest", 0o100644, cfg("entry", "/bin/hello", "rootfs", "initramfs"), 0, 0),
               ("smolvm/run", 0o100644, cfg("log", "debug"), 0, 0)]
    with open(path, "wb") as f:
        f.write(newc(sorted(entries)))


def boot(kernel, initrd, append, work, timeout):
    """One boot: dict of the measured points (guest seconds) plus initcall costs."""
    for n in ("serial", "out", "err", "exit"):
        p = os.path.join(work, n)
        if os.path.exists(p):
            os.remove(p)
    f = lambda n: os.path.join(work, n)
    cmd = ["qemu-system-x86_64", "-M", "microvm,acpi=off", "-accel", "tcg", "-cpu", "max", "-m", "256M",
           "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
           "-append", f"{BASE} {append}".strip(), "-serial", f"file:{f('serial')}",
           "-chardev", f"file,id=exit,path={f('exit')}", "-device", "isa-debugcon,iobase=0xf4,chardev=exit",
           "-device", "virtio-serial-device,max_ports=1,id=s0",
           "-chardev", f"file,id=hvc0,path={f('out')}", "-device", "virtconsole,chardev=hvc0,bus=s0.0",
           "-device", "virtio-serial-device,max_ports=1,id=s1",
           "-chardev", f"file,id=hvc1,path={f('err')}", "-device", "virtconsole,chardev=hvc1,bus=s1.0"]
    start = time.monotonic()
    try:
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    r = {"host": time.monotonic() - start, "calls": {}}
    read = lambda n: open(f(n), "rb").read().decode(errors="replace") if os.path.exists(f(n)) else ""
    if "Hello from smolvm!" not in read("out"):
        return None
    for line in read("serial").splitlines():
        m = TS.search(line)
        if not m:
            continue
        t = float(m.group(1))
        if "calling  " in line and "initcall0" not in r:
            r["initcall0"] = t
        elif "Run /init" in line:
            r["run_init"] = t
        c = CALL.search(line)
        if c:
            r["calls"][c.group(1)] = r["calls"].get(c.group(1), 0) + int(c.group(2))
        if "lpj=" in line:
            r["lpj"] = re.search(r"lpj=(\d+)", line).group(1)
    for line in read("err").splitlines():
        m = TS.search(line)
        if m and "] init started" in line:
            r["init"] = float(m.group(1))
        elif m and "] exec " in line:
            r["exec"] = float(m.group(1))
    return r


def kernel_path(*args):
    smolvm = os.environ.get("SMOLVM_BIN") or os.path.join(ROOT, "target/release/smolvm")
    return subprocess.run([smolvm, "kernel", "path", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def host_tsc_khz():
    for line in open("/proc/cpuinfo"):
        if line.startswith("cpu MHz"):
            return str(int(float(line.split(":")[1]) * 1000))
    return "2000000"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--runs", type=int, default=7)
    ap.add_argument("--timeout", type=float, default=90)
    ap.add_argument("--only", help="comma-separated variant names")
    ap.add_argument("--append", default="", help="extra command line for every variant")
    ap.add_argument("--tsc-khz", help="tsc_early_khz= value (default: the host's, which TCG's TSC follows)")
    ap.add_argument("--lpj", help="lpj= value (default: read from a first boot's log)")
    a = ap.parse_args()
    vmlinux = kernel_path()
    kdir = os.path.dirname(vmlinux)
    init = os.environ.get("SMOLVM_INIT") or os.path.join(ROOT, "target/release/smol-init")
    with tempfile.TemporaryDirectory() as work:
        initrd = os.path.join(work, "initrd.cpio")
        initramfs(initrd, init, work)
        lpj = a.lpj
        if not lpj:
            first = boot(vmlinux, initrd, a.append, work, a.timeout) or {}
            lpj = first.get("lpj")
        khz = a.tsc_khz or host_tsc_khz()
        fast = f"quiet lpj={lpj} tsc_early_khz={khz} tsc=reliable"
        kz = lambda c: os.path.join(kdir, "bzImage-" + c)
        variants = [
            ("base", vmlinux, ""),
            ("profile (initcall_debug, tsc clock)", vmlinux, f"initcall_debug ignore_loglevel tsc_early_khz={khz}"),
            ("quiet", vmlinux, "quiet"),
            (f"lpj={lpj}", vmlinux, f"lpj={lpj}"),
            (f"tsc_early_khz={khz}", vmlinux, f"tsc_early_khz={khz}"),
            (f"tsc_early_khz + tsc=reliable", vmlinux, f"tsc_early_khz={khz} tsc=reliable"),
            ("fast: " + fast, vmlinux, fast),
            ("bzImage-lz4 base", kz("lz4"), ""),
            ("bzImage-zstd base", kz("zstd"), ""),
            ("bzImage-xz base", kz("xz"), ""),
            ("bzImage-lz4 fast", kz("lz4"), fast),
            ("bzImage-zstd fast", kz("zstd"), fast),
            ("bzImage-xz fast", kz("xz"), fast),
        ]
        if a.only:
            keep = a.only.split(",")
            variants = [v for v in variants if any(v[0].startswith(k) for k in keep)]
        variants = [v for v in variants if os.path.exists(v[1])]
        results = {v[0]: [] for v in variants}
        fails = {v[0]: 0 for v in variants}
        for i in range(a.runs):
            for name, k, extra in variants:
                r = boot(k, initrd, f"{a.append} {extra}", work, a.timeout)
                if r is None:
                    fails[name] += 1
                else:
                    results[name].append(r)
            print(f"run {i + 1}/{a.runs} done", file=sys.stderr)
        med = lambda rs, key: (f"{statistics.median(x[key] for x in rs if key in x) * 1000:.0f}"
                               if any(key in x for x in rs) else "-")
        print(f"kernel {kdir}, {a.runs} runs per variant, medians in ms (guest clock; host = wall)\n")
        print("| variant | initcall0 | Run /init | init start | app exec | host wall | ok |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, _, _ in variants:
            rs = results[name]
            print(f"| {name} | {med(rs, 'initcall0')} | {med(rs, 'run_init')} | {med(rs, 'init')} | "
                  f"{med(rs, 'exec')} | {med(rs, 'host')} | {len(rs)}/{len(rs) + fails[name]} |")
        prof = [r for n, rs in results.items() if "initcall_debug" in n for r in rs]
        if prof:
            names = {c for r in prof for c in r["calls"]}
            cost = {c: statistics.median(r["calls"].get(c, 0) for r in prof) for c in names}
            total = sum(cost.values())
            print(f"\nTop 15 initcalls (median usecs over {len(prof)} initcall_debug boots; all initcalls: {total / 1000:.0f} ms)\n")
            print("| initcall | usecs |")
            print("|---|---:|")
            for c in sorted(cost, key=cost.get, reverse=True)[:15]:
                print(f"| {c} | {cost[c]:.0f} |")


if __name__ == "__main__":
    main()
