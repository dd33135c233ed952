#!/usr/bin/env python3
"""Boot-to-marker time of the smolvm kernel under QEMU TCG (`-M microvm,acpi=off`).

Boots each kernel N times with a tiny initramfs (static busybox; /init prints a marker
with the guest's /proc/uptime and reboots) and reports medians of
  host: QEMU start -> marker line on the serial console (wall clock)
  guest: /proc/uptime when the marker is printed (time since the kernel started)

  kernel-config/bench/boot-time.py                  # vmlinux + the three bzImages, 10 runs
  kernel-config/bench/boot-time.py -n 20 KERNEL...  # given kernels

A benchmark, not a test: numbers depend on the machine's load. Needs
qemu-system-x86, busybox-static, and `smolvm` on PATH or SMOLVM_BIN (for defaults).
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time

MARKER = "SMOLVM-BOOT-MARKER"
INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
read up idle < /proc/uptime
echo "SMOLVM-BOOT-MARKER uptime=$up"
/bin/busybox reboot -f
"""


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


def initramfs(path):
    with open("/bin/busybox", "rb") as f:
        busybox = f.read()
    entries = [
        ("bin", 0o040755, b"", 0, 0),
        ("bin/busybox", 0o100755, busybox, 0, 0),
        ("dev", 0o040755, b"", 0, 0),
        ("dev/console", 0o020600, b"", 5, 1),
        ("init", 0o100755, INIT.encode(), 0, 0),
        ("proc", 0o040755, b"", 0, 0),
    ]
    with open(path, "wb") as f:
        f.write(newc(entries))


def boot(kernel, initrd, timeout, append=""):
    """(host seconds to marker, guest uptime at marker) for one boot."""
    cmd = ["qemu-system-x86_64", "-M", "microvm,acpi=off", "-accel", "tcg", "-cpu", "max",
           "-m", "256M", "-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
           "-append", ("console=ttyS0 reboot=t panic=-1 " + append).strip()]
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        host = guest = None
        for raw in p.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith(MARKER):
                host = time.monotonic() - start
                guest = float(line.split("uptime=")[1])
                break
            if time.monotonic() - start > timeout:
                break
        p.wait(timeout=timeout)
        return host, guest
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def default_kernels():
    smolvm = os.environ.get("SMOLVM_BIN") or shutil.which("smolvm") or "target/release/smolvm"
    run = lambda *a: subprocess.run([smolvm, "kernel", "path", *a], check=True, capture_output=True, text=True).stdout.strip()
    return [run()] + [run("--bzimage", "--compression", c) for c in ("lz4", "zstd", "xz")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kernels", nargs="*")
    ap.add_argument("-n", "--runs", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--append", default="", help="extra kernel command line")
    a = ap.parse_args()
    kernels = a.kernels or default_kernels()
    with tempfile.TemporaryDirectory() as d:
        initrd = os.path.join(d, "initramfs.cpio")
        initramfs(initrd)
        print(f"{'kernel':<40} {'bytes':>9} {'host median':>12} {'guest median':>13}  runs  (TCG microvm)")
        for k in kernels:
            results = [boot(k, initrd, a.timeout, a.append) for _ in range(a.runs)]
            ok = [r for r in results if r[0] is not None]
            if not ok:
                print(f"{k}: no marker in {a.runs} boots", file=sys.stderr)
                continue
            name = os.path.basename(k) if "bzImage" in k else k
            print(f"{name[-40:]:<40} {os.path.getsize(k):>9} {statistics.median(r[0] for r in ok):>11.3f}s "
                  f"{statistics.median(r[1] for r in ok):>12.3f}s  {len(ok)}/{a.runs}")


if __name__ == "__main__":
    main()
