"""Side-by-side benchmarks that need a Linux guest under KVM (issue 12, sections 2 and 3):
smolvm's stub beside `qemu-system-x86_64 -M microvm,acpi=off -accel kvm` running the SAME
guest: the same kernel (vmlinux), the same initramfs (smol-init + the image's manifest,
plus the runtime config the stub would append), the same squashfs rootfs (the image file
itself, at the rootfs section's offset), the same app and workload. Only the VMM and its
devices differ:

  device          smolvm stub                       QEMU (virtio-mmio, microvm)
  hvc0, hvc1      virtio-console (tty mode only)    virtio-serial-device + virtconsole, each
  control device  multiport virtio-console:         virtio-serial-device, virtserialport
                  port 2 stdin, 3 stdout, 4 stderr  nr=1 (control), 2, 3, 4 the same way
                  (not a tty: `stdio ports` record)
  /dev/vda        virtio-blk, pread of the image    virtio-blk-device, raw file at an offset
  /data           virtio-9p server (--smolvm-share) virtio-9p-device, fsdev local

On this workplace they run inside the KVM lab's L1 (tests/lab/run: TCG L1 with kvm_amd);
on a host with hardware KVM, directly. Used by bench/run; the plan runs in
bench/lab_driver.py.

The I/O workload is one boot per VMM and round: the guest times each step itself with
/proc/uptime (10 ms ticks; shell builtins, no fork around the clock reads) and prints
`T name start end amount` on stderr, so boot time does not blur the rates.
"""
import json, os, re, statistics, subprocess

MARKER = "SMOLVM-BOOT-MARKER"
# The app of every boot row: print the marker with the guest's uptime (as boot-time.py's /init).
BOOT_APP = 'read up _ </proc/uptime; echo "' + MARKER + ' uptime=$up"'
STDIN_WARM = 1 << 20
OURS_DEFAULT = "smolvm image (default kernel format)"
IDLE_APP = BOOT_APP + "; exec sleep 100000"
CMDLINE = "console=ttyS0 reboot=k panic=-1 8250.nr_uarts=1 quiet"  # vmm-stub's (cmdline.rs BASE + quiet)


def io_script(sz):
    """The guest side of the I/O benchmark (busybox sh). Sizes in bytes / files; every step
    runs sz["reps"] times in the boot (the host takes each step's median over them)."""
    t = lambda name, amount: f'read b _ </proc/uptime; echo "T {name} $a $b {amount}" >&2'
    a = "read a _ </proc/uptime"
    return "\n".join([
        "set -e",
        # The host may fill the port's receive buffers (QEMU: 128 x 4 KiB) before anyone reads:
        # an untimed first MiB reaches the steady state, then each timed part is a whole step.
        f"head -c {STDIN_WARM} >/dev/null",
        # Each rep reads its own slice of the disk: a slice read before would come from the
        # guest's page cache.
        f"slice=$(( $(cat /sys/block/vda/size) * 512 / 1048576 / {sz['reps']} ))",
        f"r=0; while [ $r -lt {sz['reps']} ]; do",
        f"{a}; head -c {sz['stdin']} >/dev/null; {t('console-in', sz['stdin'])}",
        f"{a}; dd if=/dev/zero bs=65536 count={sz['console'] // 65536} 2>/dev/null; {t('console-out', sz['console'])}",
        f"{a}; dd if=/dev/vda of=/dev/null bs=1M skip=$((r * slice)) count=$slice 2>/dev/null; "
        f"{t('blk-read', '$((slice * 1048576))')}",
        f"{a}; dd if=/dev/zero of=/data/f bs=65536 count={sz['p9'] // 65536} conv=fsync 2>/dev/null; "
        f"{t('9p-write', sz['p9'])}",
        f"{a}; dd if=/data/f of=/dev/null bs=65536 2>/dev/null; {t('9p-read', sz['p9'])}",
        "mkdir /tmp/d",  # the same loops on the guest's tmpfs: what the shell costs without 9p
        f"{a}; i=0; while [ $i -lt {sz['files']} ]; do : >/tmp/d/f$i; i=$((i+1)); done; {t('tmpfs-create', sz['files'])}",
        f"{a}; i=0; while [ $i -lt {sz['files']} ]; do [ -e /tmp/d/f$i ]; i=$((i+1)); done; {t('tmpfs-stat', sz['files'])}",
        "rm -r /tmp/d; mkdir /data/d",
        f"{a}; i=0; while [ $i -lt {sz['files']} ]; do : >/data/d/f$i; i=$((i+1)); done; {t('9p-create', sz['files'])}",
        f"{a}; i=0; while [ $i -lt {sz['files']} ]; do [ -e /data/d/f$i ]; i=$((i+1)); done; {t('9p-stat', sz['files'])}",
        f"{a}; rm -r /data/d /data/f; {t('9p-unlink', sz['files'] + 1)}",
        "r=$((r+1)); done",
        "echo 'T done' >&2",
    ])


def cfg(records):
    """linker::config's record format: magic, then every field NUL-terminated."""
    return b"SMOLCFG1" + b"".join(f.encode() + b"\0" for r in records for f in r)


def sections(smolvm, image):
    d = json.loads(subprocess.run([smolvm, "inspect", "--json", image], check=True, capture_output=True).stdout)
    return {s["kind"]: s for s in d["sections"]}


def qemu_initrd(smolvm, image, args, shares, path, newc):
    """The image's initramfs + the runtime cpio the stub would append (args, shares)."""
    s = sections(smolvm, image)["initramfs"]
    with open(image, "rb") as f:
        f.seek(s["offset"])
        ini = f.read(s["length"])
    # As the stub writes it outside terminal mode: stdout/stderr on ports 3/4 of the control device.
    run = cfg([("arg", a) for a in args] + [("share", *sh) for sh in shares] + [("stdio", "ports")])
    rt = newc([("smolvm", 0o040755, b"", 0, 0), ("smolvm/run", 0o100644, run, 0, 0)])
    with open(path, "wb") as f:
        f.write(ini + b"\0" * (-len(ini) % 4) + rt)


def qemu_smolinit(smolvm, accel, kernel, initrd, image, mem, out, err, stdin_stdio, share=None):
    """QEMU microvm booting our kernel + smol-init with the stub's device layout (virtio0..2
    consoles, virtio3 the rootfs, virtio4 a 9p share). out: "stdio" or a file path; the app's
    stdout and stderr go to ports 3 and 4 of the control device, as with the stub."""
    root = sections(smolvm, image)["rootfs"]
    cpu = "max" if accel == "tcg" else "host"
    cmd = ["qemu-system-x86_64", "-M", "microvm,acpi=off", "-accel", accel, "-cpu", cpu, "-m", f"{mem}M",
           "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
           "-kernel", kernel, "-initrd", initrd, "-append", CMDLINE, "-serial", "null",
           "-device", "virtio-serial-device,max_ports=1,id=s0",
           "-chardev", "null,id=c0", "-device", "virtconsole,chardev=c0,bus=s0.0",
           "-device", "virtio-serial-device,max_ports=1,id=s1",
           "-chardev", "null,id=c1", "-device", "virtconsole,chardev=c1,bus=s1.0",
           "-device", "virtio-serial-device,max_ports=5,id=s2",
           "-chardev", "null,id=c2", "-device", "virtserialport,chardev=c2,bus=s2.0,nr=1",
           "-chardev", "stdio,id=c3" if stdin_stdio else "null,id=c3",
           "-device", "virtserialport,chardev=c3,bus=s2.0,nr=2",
           # A file chardev stays connected (a generic port blocks writes while the host side is
           # not); QEMU's stdio backend disconnects when its stdin ends.
           # (/proc/self/fd/1: the lab's L1 has no /dev/stdout link.)
           "-chardev", f"file,id=c4,path={'/proc/self/fd/1' if out == 'stdio' else out}",
           "-device", "virtserialport,chardev=c4,bus=s2.0,nr=3",
           "-chardev", f"file,id=c5,path={err}", "-device", "virtserialport,chardev=c5,bus=s2.0,nr=4",
           "-drive", f"file={image},format=raw,offset={root['offset']},size={root['length']},readonly=on,if=none,id=vda",
           "-device", "virtio-blk-device,drive=vda",
           "-device", "isa-debug-exit,iobase=0xf4,iosize=1"]
    if share:
        cmd += ["-fsdev", f"local,id=fs0,path={share},security_model=none",
                "-device", "virtio-9p-device,fsdev=fs0,mount_tag=smolvm0"]
    return cmd


def qemu_busybox(accel, kernel, initrd, mem):
    """A kernel + boot-time.py's busybox initramfs (/init prints the marker on the serial console)."""
    return ["qemu-system-x86_64", "-M", "microvm,acpi=off", "-accel", accel, "-cpu", "max" if accel == "tcg" else "host",
            "-m", f"{mem}M", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 reboot=t panic=-1 quiet",
            "-serial", "stdio"]


def default_kernel_format(smolvm):
    """What `smolvm build` embeds without --kernel (e.g. bzimage-lz4), from its --help."""
    h = subprocess.run([smolvm, "build", "--help"], capture_output=True, text=True).stdout
    m = re.search(r"--kernel-format <[^>]*>.*?\[default: ([\w-]+)\]", h, re.S)
    return m.group(1) if m else "?"


def build_image(smolvm, target, rootfs, out, kernel=None, mem=256):
    cmd = [smolvm, "build", "--rootfs", rootfs, "--entry", "/bin/sh", "--mem", f"{mem}M",
           "--stub", f"{target}/vmm-stub", "--init", f"{target}/smol-init", "-o", out]
    if kernel:
        cmd += ["--kernel", kernel]
    subprocess.run(cmd, check=True, capture_output=True)


def busybox_rootfs(path, blob_mib=0):
    os.makedirs(f"{path}/bin", exist_ok=True)
    for d in ("data", "tmp", "proc", "sys", "dev"):
        os.makedirs(f"{path}/{d}", exist_ok=True)
    subprocess.run(["cp", "/bin/busybox", f"{path}/bin/busybox"], check=True)
    if not os.path.exists(f"{path}/bin/sh"):
        os.symlink("busybox", f"{path}/bin/sh")
    if blob_mib:
        with open(f"{path}/blob", "wb") as f:  # incompressible: squashfs stores it as is
            for _ in range(blob_mib):
                f.write(os.urandom(1 << 20))


def plan(work, smolvm, target, vmlinux, debian, newc, busybox_initrd, rounds, sz, mem=256, accel="kvm", density=6,
         io_only=False):
    """Builds the images and files, returns the plan for lab_driver.py (io_only: the I/O
    set alone, no boot rows or idle VMs)."""
    busybox_rootfs(f"{work}/io-root", sz["blk_mib"] * sz["reps"])
    busybox_rootfs(f"{work}/boot-root")
    io_vm, boot_vm, boot_vml = f"{work}/io.vm", f"{work}/boot.vm", f"{work}/boot-vmlinux.vm"
    build_image(smolvm, target, f"{work}/io-root", io_vm, vmlinux, mem)
    build_image(smolvm, target, f"{work}/boot-root", boot_vm, None, mem)  # the product default (a bzImage)
    build_image(smolvm, target, f"{work}/boot-root", boot_vml, vmlinux, mem)
    script = io_script(sz)
    qemu_io_initrd, qemu_boot_initrd = f"{work}/qemu-io.cpio", f"{work}/qemu-boot.cpio"
    qemu_initrd(smolvm, io_vm, ["-c", script], [("smolvm0", "/data", "rw")], qemu_io_initrd, newc)
    qemu_initrd(smolvm, boot_vml, ["-c", BOOT_APP], [], qemu_boot_initrd, newc)
    with open(f"{work}/stdin.bin", "wb") as f:
        f.write(b"\0" * (STDIN_WARM + sz["reps"] * sz["stdin"] + 65536))  # a spare: no reader ever waits on EOF
    shm = "/dev/shm/smolvm-bench"  # L1's private tmpfs (writable); the host's / is read-only there
    io = [
        {"name": "io smolvm", "argv": [io_vm, f"--smolvm-share={shm}/stub:/data", "-c", script],
         "stdin": f"{work}/stdin.bin", "fresh_dirs": [f"{shm}/stub"], "timeout": 900},
        {"name": "io qemu", "argv": qemu_smolinit(smolvm, accel, vmlinux, qemu_io_initrd, io_vm, mem, "/dev/null",
                                                  f"{shm}/qemu-err", True, f"{shm}/qemu"),
         "stdin": f"{work}/stdin.bin", "fresh_dirs": [f"{shm}/qemu"], "err_file": f"{shm}/qemu-err", "timeout": 900},
    ]
    boot = [
        {"name": OURS_DEFAULT, "argv": [boot_vm, "-c", BOOT_APP]},
        {"name": "smolvm image (vmlinux)", "argv": [boot_vml, "-c", BOOT_APP]},
        {"name": "QEMU + our kernel + smol-init", "argv": qemu_smolinit(
            smolvm, accel, vmlinux, qemu_boot_initrd, boot_vml, mem, "stdio", f"{shm}/qemu-boot-err", False)},
        {"name": "QEMU + our kernel + busybox /init", "argv": qemu_busybox(accel, vmlinux, busybox_initrd, mem)},
        {"name": "QEMU + Debian kernel + busybox /init", "argv": qemu_busybox(accel, debian, busybox_initrd, mem)},
    ]
    for c in boot:
        c.update(marker=MARKER, timeout=300)
    sets = [{"name": "io", "cases": io}] + ([] if io_only else [{"name": "boot", "cases": boot}])
    # Idle app VMs, `density` of each at once: the app prints the marker, then sleeps.
    qemu_idle_initrd = f"{work}/qemu-idle.cpio"
    qemu_initrd(smolvm, boot_vml, ["-c", IDLE_APP], [], qemu_idle_initrd, newc)
    idle = [{"name": OURS_DEFAULT, "argv": [boot_vm, "-c", IDLE_APP]},
            {"name": "smolvm image (vmlinux)", "argv": [boot_vml, "-c", IDLE_APP]},
            {"name": "QEMU + our kernel + smol-init", "argv": qemu_smolinit(
                smolvm, accel, vmlinux, qemu_idle_initrd, boot_vml, mem, "stdio", "/dev/null", False)}]
    for c in idle:
        c.update(marker=MARKER, timeout=900)
    with open(f"{work}/plan.json", "w") as f:
        json.dump({"rounds": rounds, "sets": sets, "density": None if io_only else {"n": density, "cases": idle}},
                  f, indent=1)
    return f"{work}/plan.json"


def summarize(raw):
    """Per case: medians over rounds (I/O: rates from the guest's T lines, each boot's
    median over its reps; boot: time to marker). I/O also gets, per step, the stub / QEMU
    ratio of each round (both boots of a round share the host's load at that time), whose
    median is the headline and whose min-max is its spread."""
    res = raw["results"]
    io, boot = {}, {}
    for name, runs in res.items():
        if name.startswith("io "):
            vmm = name[3:]
            by_round = {}
            for r in runs:
                reps = {}
                for m in re.finditer(r"^T (\S+) ([\d.]+) ([\d.]+) (\d+)\s*$", r["err"], re.M):
                    dt = float(m.group(3)) - float(m.group(2))
                    if dt > 0:
                        reps.setdefault(m.group(1), []).append(int(m.group(4)) / dt)
                if "T done" in r["err"]:
                    by_round[r.get("round", len(by_round))] = {k: statistics.median(v) for k, v in reps.items()}
            rates = {}
            for rnd in sorted(by_round):
                for k, v in by_round[rnd].items():
                    rates.setdefault(k, []).append(v)
            io[vmm] = {"ok": len(by_round), "runs": len(runs),
                       "wall_s": [round(r["wall"], 2) for r in runs],
                       "rates": rates, "by_round": {str(k): v for k, v in by_round.items()},
                       "median": {k: statistics.median(v) for k, v in rates.items()},
                       "failed_tail": [r["err"][-400:] for r in runs if "T done" not in r["err"]][:1]}
        else:
            ok = [r for r in runs if r["first"] is not None]
            ups = [float(m.group(1)) for r in ok for m in [re.search(r"uptime=([\d.]+)", r["out"])] if m]
            boot[name] = {"ok": len(ok), "runs": len(runs),
                          "first_s": {"median": statistics.median(r["first"] for r in ok),
                                      "min": min(r["first"] for r in ok)} if ok else None,
                          "guest_uptime_s": statistics.median(ups) if ups else None,
                          "failed_tail": [r["err"][-300:] + r["out"][-200:] for r in runs if r["first"] is None][:1]}
    s_rounds, q_rounds = (io.get(v, {}).get("by_round", {}) for v in ("smolvm", "qemu"))
    ratios = {}
    for rnd in sorted(set(s_rounds) & set(q_rounds), key=int):
        for k, x in s_rounds[rnd].items():
            if q_rounds[rnd].get(k):
                ratios.setdefault(k, []).append(x / q_rounds[rnd][k])
    if ratios:
        io["ratios"] = {k: {"per_round": v, "median": statistics.median(v), "min": min(v), "max": max(v)}
                        for k, v in ratios.items()}
    return {"io": io, "boot": boot, "density": raw.get("density", {}), "l1_seconds": raw.get("l1_seconds"), "l1_kernel": raw.get("uname")}
