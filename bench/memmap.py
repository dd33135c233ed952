#!/usr/bin/env python3
"""Where the host memory of an idle smolvm VM goes (issue 19): a map of every resident
guest page, by what the guest uses it for.

  bench/memmap.py                                  # hello + http-echo, bzImage + vmlinux, 64/256/1024 MiB
  bench/memmap.py --mem 256 --apps hello --formats bzimage --balloon no
  bench/memmap.py --kernel-dir ~/.cache/smolvm/kernel/<key>   # another cached kernel
  bench/memmap.py --json out.json                  # the raw figures too

Method (docs/bench/memory.md has it in full):
- host side, one image per app and kernel format: the app is wrapped by bench/memprobe.c
  (static, in the rootfs): it starts the app, waits 3 s (idle), prints /proc/meminfo and the
  class of every guest page frame from the guest's /proc/kpageflags (free, reserved, slab,
  page table, anon, page cache, shmem, other kernel), then sleeps;
- in the KVM lab (tests/lab/run; directly on hardware KVM), `--inside` starts `--copies`
  VMs of the image (default 2, so the image's page cache pages are shared as in a fleet),
  waits for the probe's dump, then reads the first VM's /proc/PID/maps (guest RAM: the run
  of adjacent mappings, 2 MiB aligned, exactly the RAM size), /proc/PID/pagemap (present,
  file-backed) and every VM's smaps_rollup;
- each guest page frame N is guest-physical address N * 4096 = offset N * 4096 in that
  mapping (RAM below 3.25 GiB). Reserved pages are split by address: the kernel's text,
  rodata, data, bss (System.map of the image's kernel: `nm vmlinux`), the boot data below
  1 MiB, the rest (memmap = struct pages, early page tables, ...). Free pages are split by
  where they were touched: the bzImage's payload and decompression area (16 MiB ..
  16 MiB + init_size), the initramfs (the kernel's `RAMDISK:` line, --smolvm-log=kernel),
  freed init memory, elsewhere.
Needs: make build && make kernel, musl-gcc, busybox-static, /dev/kvm or the lab.
"""
import argparse, json, os, re, select, signal, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR", "target"), "release")
SMOLVM = os.path.join(TARGET, "smolvm")
PAGE = 4096
MIB = 1 << 20
KERNEL_BASE = 0xffffffff80000000  # __START_KERNEL_map: our kernel is not relocatable
PRESENT, FILE = 1 << 63, 1 << 61


def log(msg):
    print(f"[memmap {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, **kw).stdout


# ---------------------------------------------------------------- host side: images

def kernel_layout(vmlinux):
    """Physical [start, end) of the kernel's sections, from its symbols."""
    syms = {}
    for line in sh("nm", vmlinux).splitlines():
        f = line.split()
        if len(f) == 3:
            syms[f[2]] = int(f[0], 16) - KERNEL_BASE
    pairs = {"kernel text": ("_text", "_etext"), "kernel rodata": ("__start_rodata", "__end_rodata_aligned"),
             "kernel data": ("_sdata", "_edata"), "kernel init (freed)": ("__init_begin", "__init_end"),
             "kernel bss": ("__bss_start", "__bss_stop"), "kernel brk": ("__brk_base", "_end")}
    out = {k: (syms[a], syms[b]) for k, (a, b) in pairs.items() if a in syms and b in syms}
    if "kernel rodata" not in out and "__end_rodata" in syms:
        out["kernel rodata"] = (syms["__start_rodata"], syms["__end_rodata"])
    return out


def bz_init_size(bzimage):
    with open(bzimage, "rb") as f:
        head = f.read(0x270)
    return int.from_bytes(head[0x260:0x264], "little")


def build_images(work, kernel_dir, apps, formats):
    """{(app, format): image path}; the memprobe wraps each app."""
    probe = f"{work}/memprobe"
    sh("musl-gcc", "-Os", "-static", "-s", "-o", probe, "bench/memprobe.c")
    roots = {}
    if "hello" in apps:
        r = f"{work}/hello-root"
        os.makedirs(f"{r}/bin")
        sh("gcc", "-Os", "-static", "-nostdlib", "-fno-asynchronous-unwind-tables", "-fno-stack-protector", "-s",
           "-Wl,-n", "-Wl,--build-id=none", "-o", f"{r}/bin/hello", "demo/hello.c")
        roots["hello"] = (r, "/bin/hello", [])
    if "http-echo" in apps:
        r = f"{work}/http-echo-root"
        os.makedirs(f"{r}/bin")
        sh("musl-gcc", "-Os", "-static", "-pthread", "-s", "-o", f"{r}/bin/http-echo", "examples/http-echo/http-echo.c")
        # passt without a published port: several copies run at once.
        roots["http-echo"] = (r, "/bin/http-echo", ["--net"])
    images = {}
    for app, (r, entry, extra) in roots.items():
        sh("cp", probe, f"{r}/bin/memprobe")
        for fmt in formats:
            kernel = f"{kernel_dir}/vmlinux" if fmt == "vmlinux" else f"{kernel_dir}/bzImage-lz4"
            out = f"{work}/{app}-{fmt}.vm"
            sh(SMOLVM, "build", "--rootfs", r, "--entry", "/bin/memprobe", "--kernel", kernel, "--stub",
               f"{TARGET}/vmm-stub", "--init", f"{TARGET}/smol-init", *extra, "--arg", entry, "-o", out)
            images[(app, fmt)] = out
    return images


# ---------------------------------------------------------------- inside the lab

def rollup(pid):
    d = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            x = line.split()
            if len(x) == 3 and x[2] == "kB":
                d[x[0].rstrip(":")] = int(x[1])
    return d


def guest_ram(pid, size):
    """(start, [(vma_start, vma_end, path)]) of the adjacent mappings that are guest RAM."""
    vmas = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            x = line.split(maxsplit=5)
            a, b = (int(v, 16) for v in x[0].split("-"))
            vmas.append((a, b, x[5].strip() if len(x) > 5 else ""))
    for i, (a, _, _) in enumerate(vmas):
        if a % (2 * MIB):
            continue
        end, j = a, i
        while j < len(vmas) and vmas[j][0] == end and end - a < size:
            end = vmas[j][1]
            j += 1
        if end - a == size:
            return a, vmas[i:j]
    raise SystemExit(f"memmap: no guest RAM mapping of {size} bytes in /proc/{pid}/maps")


def pagemap(pid, start, pages):
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(start // PAGE * 8)
        raw = f.read(pages * 8)
    return [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]


def read_until(p, marker, deadline):
    """stdout of `p` until a line equal to marker (bytes); the text, or None."""
    seen = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], max(0.1, deadline - time.monotonic()))
        chunk = os.read(p.stdout.fileno(), 65536) if r else b""
        if r and not chunk:
            return None
        seen += chunk
        if marker in seen:
            return seen.decode(errors="replace")
    return None


def run_case(c):
    """Starts c["copies"] VMs, maps the first, returns the raw figures."""
    procs, errs = [], []
    for k in range(c["copies"]):
        err = open(f"{c['work']}/stderr-{k}", "w+b")
        errs.append(err)
        argv = [c["image"], f"--smolvm-mem={c['mem']}", f"--smolvm-balloon={c['balloon']}"]
        if c.get("idle"):
            argv.append(f"--smolvm-env=MEMPROBE_IDLE={c['idle']}")
        if c.get("order") is not None:
            argv.append(f"--smolvm-env=MEMPROBE_REPORT_ORDER={c['order']}")
        if k == 0:
            argv.append("--smolvm-log=kernel")  # the RAMDISK line; the console costs no guest RAM
        procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                      start_new_session=True))
    try:
        t0 = time.monotonic()
        outs = [read_until(p, b"MEMPROBE-DONE", t0 + 300) for p in procs]
        boot_s = time.monotonic() - t0
        if outs[0] is None:
            errs[0].seek(0)
            return {"error": "probe did not finish: " + errs[0].read()[-600:].decode(errors="replace")}
        pid = procs[0].pid
        start, vmas = guest_ram(pid, c["mem"] * MIB)
        pm = pagemap(pid, start, c["mem"] * MIB // PAGE)
        rolls = [rollup(p.pid) for p in procs if p.poll() is None]
        errs[0].seek(0)
        klog = errs[0].read().decode(errors="replace")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    runs = [(int(a), int(b), cls) for a, b, cls in re.findall(r"^MEMPROBE (\d+) (\d+) (\S+)$", outs[0], re.M)]
    meminfo = dict(re.findall(r"^MEMINFO (\S+):\s+(\d+) kB$", outs[0], re.M))
    rd = re.search(r"RAMDISK: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]", klog)
    return {"runs": runs, "meminfo": {k: int(v) for k, v in meminfo.items()},
            "present": [i for i, e in enumerate(pm) if e & PRESENT and not e & FILE],
            "present_file": [i for i, e in enumerate(pm) if e & PRESENT and e & FILE],
            "rollups": rolls, "ramdisk": [int(rd.group(1), 16), int(rd.group(2), 16) + 1] if rd else None,
            "file_vmas": sum(1 for v in vmas if v[2]), "seconds_to_dump": boot_s,
            "klog": [l for l in klog.splitlines() if re.search(r"balloon|reporting|Memory:|Freeing|RAMDISK|virtio", l, re.I)]}


THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def boot_cost_inside(plan):
    """Wall time exec -> exit of demo/hello.vm per variant, interleaved rounds."""
    times = {v["name"]: [] for v in plan["variants"]}
    for _ in range(plan["rounds"]):
        for v in plan["variants"]:
            t0 = time.monotonic()
            p = subprocess.run(v["argv"], stdin=subprocess.DEVNULL, capture_output=True)
            if p.returncode == 0 and b"Hello" in p.stdout:
                times[v["name"]].append(time.monotonic() - t0)
    return times


def inside(plan_path):
    plan = json.load(open(plan_path))
    if "variants" in plan:
        return json.dump(boot_cost_inside(plan), sys.stdout)
    out = []
    for c in plan["cases"]:
        if c.get("thp") and os.path.exists(THP):  # the host's THP mode for guest RAM
            with open(THP, "w") as f:
                f.write(c["thp"])
        r = run_case(c)
        r["case"] = c
        out.append(r)
        print(f"{c['name']}: {'ok' if 'error' not in r else r['error'][:200]}", file=sys.stderr, flush=True)
    json.dump(out, sys.stdout)


# ---------------------------------------------------------------- the table

def regions(case, layout, init_size):
    """[(name, start, end)] of guest-physical regions that name a page's origin."""
    reg = [("boot data (< 1 MiB)", 0, MIB)]
    reg += [(k, s, e) for k, (s, e) in layout.items()]
    if case["format"] == "bzimage" and init_size:
        reg.append(("bzImage payload + decompressor", 16 * MIB, 16 * MIB + init_size))
    return reg


def classify(r, layout, init_size):
    """{row: [resident anon pages, resident file pages]} over every guest page frame."""
    guest = {}
    for start, n, cls in r["runs"]:
        for pfn in range(start, start + n):
            guest[pfn] = cls
    anon, filep = set(r["present"]), set(r["present_file"])
    reg = regions(r["case"], layout, init_size)
    rd = r["ramdisk"]

    def where(pfn):
        a = pfn * PAGE
        if rd and rd[0] <= a < rd[1]:
            return "initramfs"
        # Later regions (the decompression area) name only what the kernel regions do not.
        for name, s, e in reg:
            if s <= a < e and not name.startswith("bzImage"):
                return name
        for name, s, e in reg:
            if s <= a < e:
                return name
        return None

    rows = {}
    for pfn in sorted(anon | filep):
        cls = guest.get(pfn, "unknown")
        w = where(pfn)
        if cls == "reserved":
            row = w if w and w != "initramfs" else "reserved: memmap, early tables (memblock)"
        elif cls == "free":
            row = f"free, touched: {w}" if w else "free, touched: elsewhere"
        elif w and w.startswith("kernel") and cls == "kernel-other":
            row = w
        else:
            row = {"slab": "slab", "pagetable": "page tables", "anon": "app anon pages", "shmem": "shmem/ramfs",
                   "cache": "page cache", "cache-mapped": "page cache, mapped", "kernel-other": "other kernel allocations"}.get(cls, cls)
        x = rows.setdefault(row, [0, 0])
        x[1 if pfn in filep else 0] += 1
    return rows


def table(results, kernels):
    lines = []
    for r in results:
        c = r["case"]
        if "error" in r:
            lines.append(f"\n### {c['name']}: failed: {r['error'][:300]}\n")
            continue
        layout, init_size = kernels[c["kernel_dir"]]
        rows = classify(r, layout, init_size)
        roll = r["rollups"]
        med = lambda k: statistics.median(x.get(k, 0) for x in roll) / 1024
        priv = statistics.median((x.get("Private_Clean", 0) + x.get("Private_Dirty", 0)) for x in roll) / 1024
        lines.append(f"\n### {c['name']}\n")
        lines.append(f"{len(roll)} VMs: Rss {med('Rss'):.1f} MiB, Pss {med('Pss'):.1f} MiB, private {priv:.1f} MiB, "
                     f"anonymous {med('Anonymous'):.1f} MiB (smaps_rollup, median); the probe's dump came "
                     f"{r['seconds_to_dump']:.1f} s after the start.\n")
        lines.append("| guest page use | resident anon MiB | resident file MiB (shared) |")
        lines.append("|---|---:|---:|")
        tot = [0, 0]
        for name, (a, f) in sorted(rows.items(), key=lambda kv: -sum(kv[1])):
            lines.append(f"| {name} | {a * PAGE / MIB:.2f} | {f * PAGE / MIB:.2f} |")
            tot[0] += a
            tot[1] += f
        lines.append(f"| **total guest RAM resident** | **{tot[0] * PAGE / MIB:.2f}** | **{tot[1] * PAGE / MIB:.2f}** |")
        mi = r["meminfo"]
        keys = ["MemTotal", "MemFree", "Buffers", "Cached", "Shmem", "Slab", "PageTables", "KernelStack", "AnonPages"]
        lines.append("\nguest /proc/meminfo (KiB): " + ", ".join(f"{k} {mi[k]}" for k in keys if k in mi))
    return "\n".join(lines)


def boot_cost(a):
    kdirs = a.kernel_dir or [os.path.dirname(sh(SMOLVM, "kernel", "path").strip())]
    with tempfile.TemporaryDirectory(prefix="smolvm-memmap.") as work:
        os.makedirs(f"{work}/root/bin")
        sh("gcc", "-Os", "-static", "-nostdlib", "-fno-asynchronous-unwind-tables", "-fno-stack-protector", "-s",
           "-Wl,-n", "-Wl,--build-id=none", "-o", f"{work}/root/bin/hello", "demo/hello.c")
        variants = []
        for d in kdirs:
            image = f"{work}/hello-{os.path.basename(d)}.vm"
            sh(SMOLVM, "build", "--rootfs", f"{work}/root", "--entry", "/bin/hello", "--kernel", f"{d}/bzImage-lz4",
               "--stub", f"{TARGET}/vmm-stub", "--init", f"{TARGET}/smol-init", "-o", image)
            for b in ("yes", "no"):
                variants.append({"name": f"kernel {os.path.basename(d)}, balloon {b}",
                                 "argv": [image, f"--smolvm-balloon={b}", f"--smolvm-mem={a.mem.split(',')[0]}"]})
        plan = f"{work}/plan.json"
        json.dump({"variants": variants, "rounds": a.boot_cost}, open(plan, "w"))
        p = subprocess.run([os.path.join(ROOT, "tests/lab/run"), "-t", "3000", "--", "python3",
                            os.path.abspath(__file__), "--inside", plan], cwd=ROOT, capture_output=True, text=True)
        try:
            times = json.loads(p.stdout)
        except ValueError:
            raise SystemExit(f"memmap: lab exit {p.returncode}: {(p.stderr or p.stdout)[-800:]}")
    print("| variant | runs | median exec -> exit | min | max |")
    print("|---|---:|---:|---:|---:|")
    for name, t in times.items():
        if t:
            print(f"| {name} | {len(t)} | {statistics.median(t) * 1e3:.0f} ms | {min(t) * 1e3:.0f} ms | {max(t) * 1e3:.0f} ms |")
        else:
            print(f"| {name} | 0 | failed | | |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inside", help=argparse.SUPPRESS)
    ap.add_argument("--apps", default="hello,http-echo")
    ap.add_argument("--formats", default="bzimage,vmlinux")
    ap.add_argument("--mem", default="64,256,1024", help="guest RAM sizes in MiB")
    ap.add_argument("--balloon", default="yes", choices=["yes", "no"], help="--smolvm-balloon of every VM")
    ap.add_argument("--copies", type=int, default=2, help="VMs of each image at once (default 2)")
    ap.add_argument("--kernel-dir", action="append", help="cached kernel dir(s) (default: `smolvm kernel path`'s)")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--thp", default="always", help="host THP mode(s) to run under, e.g. always,never (set in L1)")
    ap.add_argument("--idle", default="3", help="seconds the probe waits after starting the app (default 3; several: 3,30)")
    ap.add_argument("--report-order", default="", help="also run with the guest's page_reporting_order set to these (e.g. 0,9)")
    ap.add_argument("--boot-cost", type=int, metavar="ROUNDS",
                    help="instead: exec -> exit of demo/hello.vm with the balloon on, off, and the kernel of "
                         "each --kernel-dir, ROUNDS interleaved rounds (bzImage)")
    a = ap.parse_args()
    if a.inside:
        return inside(a.inside)
    if a.boot_cost:
        return boot_cost(a)
    kdirs = a.kernel_dir or [os.path.dirname(sh(SMOLVM, "kernel", "path").strip())]
    kernels = {d: (kernel_layout(f"{d}/vmlinux"), bz_init_size(f"{d}/bzImage-lz4")) for d in kdirs}
    with tempfile.TemporaryDirectory(prefix="smolvm-memmap.") as work:
        cases = []
        for d in kdirs:
            kw = f"{work}/{os.path.basename(d)}"
            os.makedirs(kw)
            images = build_images(kw, d, a.apps.split(","), a.formats.split(","))
            for (app, fmt), image in images.items():
                for mem in (int(m) for m in a.mem.split(",")):
                    for thp in a.thp.split(","):
                        for order, idle in [(o, i) for o in [None] + [int(o) for o in a.report_order.split(",") if o]
                                            for i in a.idle.split(",")]:
                            extra = (f", report order {order}" if order is not None else "") + f", idle {idle} s"
                            cases.append({"name": f"{app}, {fmt}, {mem} MiB, balloon {a.balloon}, THP {thp}{extra}, kernel {os.path.basename(d)}",
                                          "image": image, "mem": mem, "format": fmt, "balloon": a.balloon, "thp": thp,
                                          "order": order, "idle": int(idle), "copies": a.copies, "kernel_dir": d, "work": work})
        plan = f"{work}/plan.json"
        json.dump({"cases": cases}, open(plan, "w"))
        log(f"{len(cases)} cases in the lab (tests/lab/run)")
        p = subprocess.run([os.path.join(ROOT, "tests/lab/run"), "-t", "3000", "-s", work, "--", "python3",
                            os.path.abspath(__file__), "--inside", plan], cwd=ROOT, capture_output=True, text=True)
        try:
            results = json.loads(p.stdout)
        except ValueError:
            raise SystemExit(f"memmap: lab exit {p.returncode}: {(p.stderr or p.stdout)[-800:]}")
    if a.json:
        json.dump(results, open(a.json, "w"))
    print(table(results, kernels))


if __name__ == "__main__":
    main()
