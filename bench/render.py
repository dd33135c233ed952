#!/usr/bin/env python3
"""Renders bench/run's results.json into README.md and SVG bar charts next to it.

  bench/render.py docs/bench/results.json
"""
import json, os, sys
from html import escape


def bars(path, title, unit, rows, fmt="{:.1f}"):
    """A horizontal bar chart (hand-written SVG): rows = [(label, value, note)]."""
    w, left, bar_h, gap, top = 720, 170, 22, 10, 40
    h = top + len(rows) * (bar_h + gap) + 20
    vmax = max(v for _, v, _ in rows) or 1
    span = w - left - 150
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           'font-family="sans-serif" font-size="13">',
           f'<rect width="{w}" height="{h}" fill="#fff"/>',
           f'<text x="10" y="24" font-size="15" font-weight="bold">{escape(title)}</text>']
    for i, (label, v, note) in enumerate(rows):
        y = top + i * (bar_h + gap)
        bw = max(1.0, v / vmax * span)
        color = "#2b7bb9" if label.startswith(("vmm-stub", "smolvm")) else "#9aa5b1"
        out += [f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>',
                f'<rect x="{left}" y="{y}" width="{bw:.1f}" height="{bar_h}" fill="{color}"/>',
                f'<text x="{left + bw + 6:.1f}" y="{y + 16}">{escape(fmt.format(v))} {escape(unit)}'
                f'{escape("  " + note) if note else ""}</text>']
    out.append("</svg>\n")
    with open(path, "w") as f:
        f.write("\n".join(out))


def headline(d):
    """The table README.md quotes: one line per question, smolvm beside its peer."""
    st, bt, de, sz = d.get("startup"), d.get("boot"), d.get("density"), d.get("size")
    rows = []
    if st and "qemu-microvm" in st:
        s, q = st["vmm-stub"], st["qemu-microvm"]
        rows.append(f"| VMM start-up, exec → trivial guest → exit (median) | {s['median_ms']:.1f} ms "
                    f"({s['vs_floor']:.1f}× KVM floor) | {q['median_ms']:.1f} ms ({q['vs_floor']:.1f}× floor) | "
                    f"{q['median_ms'] / s['median_ms']:.1f}× faster |")
        rows.append(f"| VMM peak RSS | {s['peak_rss_kib'] / 1024:.1f} MiB | {q['peak_rss_kib'] / 1024:.1f} MiB | "
                    f"{q['peak_rss_kib'] / s['peak_rss_kib']:.0f}× smaller |")
    lb = (d.get("lab") or {}).get("boot") or {}
    a, b = lb.get(LAB_OURS, {}).get("first_s"), lb.get(LAB_DEBIAN, {}).get("first_s")
    if a and b:
        rows.append(f"| Boot → app's first output, KVM lab (median): image vs QEMU + Debian kernel + initramfs | "
                    f"{a['median']:.2f} s | {b['median']:.2f} s | {b['median'] / a['median']:.1f}× faster |")
    a, b = lb.get(LAB_OURS_VMLINUX, {}).get("first_s"), lb.get(LAB_QEMU_SMOL, {}).get("first_s")
    if a and b:
        rows.append(f"| Boot → app's first output, KVM lab (median): same vmlinux + smol-init + app, stub vs QEMU | "
                    f"{a['median']:.2f} s | {b['median']:.2f} s | {b['median'] / a['median']:.1f}× faster |")
    if bt and "smolvm kernel" in bt and "Debian kernel" in bt:
        a, b = bt["smolvm kernel"]["host_s"]["median"], bt["Debian kernel"]["host_s"]["median"]
        rows.append(f"| Kernel boot → app's first output, QEMU TCG, same busybox initramfs (median) | {a:.2f} s | "
                    f"{b:.2f} s (Debian 6.1) | {b / a:.1f}× faster |")
    io = (d.get("lab") or {}).get("io") or {}
    s_io, q_io = (io.get("smolvm") or {}).get("median") or {}, (io.get("qemu") or {}).get("median") or {}
    for key, label in IO_ROWS:
        if s_io.get(key) and q_io.get(key):
            rows.append(f"| {label}, KVM lab (median) | {io_fmt(key, s_io[key])} | {io_fmt(key, q_io[key])} | "
                        f"{io_ratio(io, key, s_io[key] / q_io[key])} QEMU's |")
    if de and "qemu-microvm" in de:
        s, q = de["vmm-stub"], de["qemu-microvm"]
        rows.append(f"| Idle VMs per GiB (VMM cost by PSS, {s['vms']} concurrent each) | {s['vms_per_gib']} | "
                    f"{q['vms_per_gib']} | {s['vms_per_gib'] / q['vms_per_gib']:.0f}× denser |")
    ld = (d.get("lab") or {}).get("density") or {}
    a, b = (ld.get(LAB_OURS_VMLINUX) or {}).get("pss_kib"), (ld.get(LAB_QEMU_SMOL) or {}).get("pss_kib")
    if a and b:
        rows.append(f"| Idle Linux app VM, host memory by PSS, KVM lab ({ld[LAB_QEMU_SMOL]['vms']} at once; same vmlinux "
                    f"+ smol-init + app) | {a / 1024:.1f} MiB | {b / 1024:.1f} MiB | {b / a:.1f}× smaller |")
    if sz:
        dh = sz.get("default_hello")
        if dh:
            rows.append(f"| hello-world image, default build (stub + kernel `{dh.get('kernel_format_option', '?')}` + "
                        f"init + {dh['rootfs_format']} app) | {kib(dh['total'])} | — | — |")
        hello = next((r for r in sz["images"] if r["app"] == "hello" and r["format"] == "initramfs"), None)
        if hello:
            rows.append(f"| hello-world image with the raw vmlinux kernel (`--kernel $(smolvm kernel path)`) | "
                        f"{kib(hello['total'])} | — | — |")
        rows.append(f"| vmm-stub / smol-init binaries | {kib(sz['stub_bytes'])} / {kib(sz['init_bytes'])} | — | — |")
    if not rows:
        return []
    return ["## Headline", "", "| | smolvm | peer (QEMU) | ratio |", "|---|---:|---:|---:|", *rows, ""]


SMOL_TCG = ("smolvm vmlinux + smol-init", "smolvm default bzImage + smol-init")
LAB_OURS = "smolvm image (default kernel format)"
LAB_DEBIAN = "QEMU + Debian kernel + busybox /init"
LAB_OURS_VMLINUX = "smolvm image (vmlinux)"
LAB_QEMU_SMOL = "QEMU + our kernel + smol-init"
IO_ROWS = [("console-out", "Console guest → host (app stdout)"), ("console-in", "Console host → guest (app stdin)"),
           ("blk-read", "Block sequential read (/dev/vda)"), ("9p-read", "9p sequential read"),
           ("9p-write", "9p sequential write (+fsync)"), ("9p-create", "9p create (empty files)"),
           ("9p-stat", "9p stat"), ("9p-unlink", "9p unlink (rm -r)")]


def io_ratio(io, key, fallback):
    """The stub / QEMU ratio of one I/O step: the median of the rounds' ratios with their
    min-max (the spread a claim must beat), or `fallback` for results without rounds."""
    r = (io.get("ratios") or {}).get(key)
    if not r:
        return f"{fallback:.2f}×"
    noise = ", no clear difference" if r["min"] <= 1 <= r["max"] else ""
    return f"{r['median']:.2f}× (rounds {r['min']:.2f}–{r['max']:.2f}×{noise})"


def io_fmt(key, v):
    return f"{v:.0f} ops/s" if key in ("9p-create", "9p-stat", "9p-unlink") else f"{v / 1e6:.2f} MB/s"


def lab_sections(lb, outdir):
    """Section 2's KVM-lab table and section 3 (I/O beside QEMU), from bench/lab.py."""
    if not lb:
        return []
    if "error" in lb:
        why = f"Not measured: the lab run failed: `{lb['error'].strip()[-300:]}`"
        return ["### In the KVM lab", "", why, "", "## 3. I/O", "", why + " (side by side with QEMU)", ""]
    md = ["### In the KVM lab", "",
          f"Where a Linux guest boots under KVM: {lb['mode']} (`bench/lab.py`, run by `bench/lab_driver.py` "
          f"through `tests/lab/run`; {lb['rounds']} rounds, the cases interleaved, the order rotated each round). "
          "Host start of the VMM process → the app's marker line on its stdout, timed inside L1. Every row "
          "runs the same app (`sh -c` printing the marker with the guest's uptime) or, for the busybox rows, "
          "boot-time.py's /init printing it on the serial console (Debian's kernel has virtio only as modules; "
          "a serial console costs a port exit per byte, slow in the lab, which is why that row of our kernel "
          "trails the smol-init row); QEMU = `-M microvm,acpi=off -accel kvm -cpu host`, 256 MiB like the "
          "images.", "",
          "| what boots | VMM start → first output (median / min) | guest uptime at output | boots |",
          "|---|---:|---:|---:|"]
    for name, r in lb.get("boot", {}).items():
        f = r.get("first_s")
        up = f"{r['guest_uptime_s']:.2f} s" if r.get("guest_uptime_s") is not None else "-"
        md.append(f"| {name} | {f['median']:.2f} s / {f['min']:.2f} s | {up} | {r['ok']}/{r['runs']} |" if f
                  else f"| {name} | failed | - | 0/{r['runs']} |")
    b = lb.get("boot", {})
    if b.get(LAB_OURS, {}).get("first_s") and b.get(LAB_DEBIAN, {}).get("first_s"):
        x, y = b[LAB_OURS]["first_s"]["median"], b[LAB_DEBIAN]["first_s"]["median"]
        md += ["", f"The smolvm image reaches the app's first output **{y / x:.1f}×** sooner than Debian's "
               "kernel with an initramfs under QEMU. (Guest uptime of the default-format row, a bzImage, starts after the "
               "kernel decompressed itself; the host time includes it.)"]
    md.append("")
    io = lb.get("io", {})
    s_io, q_io = io.get("smolvm", {}), io.get("qemu", {})
    sz = lb.get("sizes", {})
    md += ["## 3. I/O", "",
           "The stub's virtio devices beside QEMU's doing the same work in the same run, in the KVM lab (as "
           "above). Both VMMs boot the **same guest**: our kernel (vmlinux), the image's initramfs "
           "(smol-init), the image's squashfs rootfs (QEMU: `-drive file=IMAGE,offset=…,size=…` on "
           "`virtio-blk-device`), the same busybox workload; QEMU gets the stub's device layout "
           "(`virtio-serial-device` + `virtconsole` for hvc0/hvc1, a third one with `virtserialport` nr=1-4 "
           "for control, stdin, stdout, stderr, as the stub's multiport control device; `virtio-9p-device` with `-fsdev local` on L1's tmpfs; ours shares a directory "
           "of that tmpfs). One boot per VMM and round, the order alternating; the guest times each step "
           "itself (`/proc/uptime`, 10 ms ticks, so every step lasts hundreds of ticks) so boot time does "
           f"not enter the rates, and repeats every step {sz.get('reps', 1)} times per boot (the boot's "
           "median counts; the block read takes a new slice of the disk each time). Each round's stub / "
           f"QEMU ratio is one sample ({lb.get('rounds', '?')} rounds): the table gives their median and "
           "min–max; a difference inside that spread is noise. Sizes per step: console "
           f"{sz.get('console', 0) >> 20} MiB out (stdout → host /dev/null), {sz.get('stdin', 0) >> 20} MiB in (stdin "
           "from a file, timed after an untimed first MiB: the host may fill the port's receive buffers before "
           "the app reads), "
           f"block: 1/{sz.get('reps', 1)} of /dev/vda (a squashfs holding {sz.get('blk_mib', 0) * sz.get('reps', 1)} MiB "
           "of random data), 9p: "
           f"{sz.get('p9', 0) >> 20} MiB file in 64 KiB `dd` blocks, {sz.get('files', 0)} files for create/stat/"
           "unlink (shell loops, no fork per file; `rm -r` for unlink).", "",
           "| path | smolvm stub | QEMU 7.2 | stub / QEMU: median (min–max) of the rounds | each round: stub / QEMU |",
           "|---|---:|---:|---:|---:|"]
    sm, qm = s_io.get("median") or {}, q_io.get("median") or {}
    chart = []
    for key, label in IO_ROWS:
        if key in sm or key in qm:
            a, q = sm.get(key), qm.get(key)
            ratio = io_ratio(io, key, a / q) if a and q else "-"
            runs = lambda r: ", ".join(io_num(key, x) for x in r.get("rates", {}).get(key, [])) or "-"
            md.append(f"| {label} | {io_fmt(key, a) if a else '-'} | {io_fmt(key, q) if q else '-'} | {ratio} | "
                      f"{runs(s_io)} / {runs(q_io)} |")
            if a and q:
                chart.append((key, ((io.get("ratios") or {}).get(key) or {}).get("median", a / q), ""))
    for vmm, r in (("stub", s_io), ("QEMU", q_io)):
        if r.get("failed_tail"):
            md += ["", f"{vmm}: {r['runs'] - r['ok']} of {r['runs']} I/O boots did not finish: "
                   f"`{r['failed_tail'][0].strip()[-200:]}`"]
    lat = []
    for op in ("create", "stat"):
        row = []
        for r in (sm, qm):
            x, base = r.get(f"9p-{op}"), r.get(f"tmpfs-{op}")
            row.append((1 / x - 1 / base) * 1e3 if x and base else None)
        if all(v is not None for v in row):
            lat.append(f"| 9p {op} | {row[0]:.1f} ms | {row[1]:.1f} ms | {row[1] / row[0]:.2f}× |"
                       if row[0] > 0 else f"| 9p {op} | {row[0]:.1f} ms | {row[1]:.1f} ms | - |")
    if lat:
        md += ["", "The create/stat loops above cost mostly the guest's own shell under emulation; the same loops "
               "on the guest's tmpfs (same boot) isolate the 9p round trips: time per op on 9p minus on tmpfs "
               "(medians of the rounds):", "", "| op | stub | QEMU | QEMU / stub |", "|---|---:|---:|---:|", *lat]
    if chart:
        md += ["", "![I/O](io.svg)"]
        bars(os.path.join(outdir, "io.svg"), "I/O in the KVM lab: smolvm stub / QEMU (1.00 = same; >1 = stub faster)",
             "×", chart, "{:.2f}")
    md += ["", "The VMs are L2 guests inside a TCG-emulated L1, so absolute MB/s are bound by the CPU emulator; "
           "the ratio is the comparison. Rates above: medians over the rounds; ratios: the median of the "
           "rounds' ratios, with their min–max.", ""]
    return md


def io_num(key, v):
    return f"{v:.0f}" if key in ("9p-create", "9p-stat", "9p-unlink") else f"{v / 1e6:.2f}"


def kib(b):
    return f"{b / 1024:.1f} KiB" if b < 2**20 else f"{b / 2**20:.2f} MiB"


def main():
    src = sys.argv[1]
    d = json.load(open(src))
    outdir = os.path.dirname(os.path.abspath(src))
    m = d["machine"]
    md = ["# smolvm benchmarks", "",
          "Generated by `make bench` (`bench/run`, rendered by `bench/render.py` from "
          "[results.json](results.json)); do not edit by hand.", "",
          f"**Machine**: {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, host kernel {m['kernel']}, "
          f"{m['qemu']}; /dev/kvm: **{m['kvm']}**; load average {m['loadavg_start']:.1f} at start, "
          f"{m['loadavg_end']:.1f} at end; {m['date']}, working tree at commit {m['commit']}, whole run {m['duration_s']} s.", ""]
    if m.get("nested"):
        md += ["> **The host's /dev/kvm is nested**, not hardware KVM, and the machine is shared: absolute "
               "times are not hardware numbers. The result is the *ratios* between the peers, measured "
               "interleaved in this one run.", ""]
    md += headline(d)
    st = d.get("startup")
    if st:
        names = [n for n in ("vmm-stub", "qemu-microvm", "floor", "/bin/true") if n in st]
        md += ["## 1. VMM start-up overhead", "",
               "exec → trivial guest (one serial byte, exit port 0xf4; `bench/trivial.S`) → process exit. "
               "`floor` = `bench/floor.c`: open /dev/kvm, create a VM with one page and a vCPU, run to HLT. "
               f"QEMU = `qemu-system-x86_64 -M microvm -enable-kvm`, same guest (PVH entry). "
               f"{st[names[0]]['n']} runs each, interleaved round-robin after 3 warm-up rounds; "
               "peak RSS: median of 9 runs of `/usr/bin/time -f %M`.", "",
               "| | min | median | p90 | median / floor | peak RSS |", "|---|---:|---:|---:|---:|---:|"]
        for n in names:
            r = st[n]
            md.append(f"| {n} | {r['min_ms']:.2f} ms | {r['median_ms']:.2f} ms | {r['p90_ms']:.2f} ms | "
                      f"{r['vs_floor']:.2f}× | {r['peak_rss_kib'] / 1024:.1f} MiB |")
        md += ["", "![start-up](startup.svg)", ""]
        bars(os.path.join(outdir, "startup.svg"), "Start-up: exec → trivial guest → exit (median)", "ms",
             [(n, st[n]["median_ms"], f"({st[n]['vs_floor']:.1f}× floor)") for n in names], "{:.2f}")
    bt = d.get("boot")
    if bt:
        ks = [k for k in ("smolvm kernel", "Debian kernel") if k in bt]
        md += ["## 2. Guest boot work", "", "### QEMU TCG", "",
               "QEMU `-M microvm,acpi=off -accel tcg`, the same busybox initramfs whose /init prints a marker "
               "(the app's first output; `kernel-config/bench/boot-time.py`), kernels booted interleaved. "
               "Debian's kernel is the stock 6.1 kernel the KVM lab uses (`tests/lab/prepare`). "
               "The `+ smol-init` rows are our real image path under the same QEMU: our kernel (the raw vmlinux, "
               f"and the bzImage `smolvm build` embeds by default, `--kernel-format {bt.get('default_kernel_format', '?')}`) "
               "+ smol-init (the image's "
               "initramfs, its squashfs rootfs on virtio-blk, the runtime config the stub would append, stdout "
               "on a virtconsole) + a busybox app (`sh -c`) that prints the marker.", "",
               "| what boots | kernel size | QEMU start → first output (median / min) | guest uptime at output | boots |",
               "|---|---:|---:|---:|---:|"]
        for k in ks + [k for k in SMOL_TCG if k in bt]:
            r = bt[k]
            md.append(f"| {k + ' + busybox /init' if k in ks else k} | {kib(r['bytes'])} | {r['host_s']['median']:.2f} s / {r['host_s']['min']:.2f} s | "
                      f"{r['guest_s']['median']:.2f} s | {r['ok']}/{r['runs']} |")
        if len(ks) == 2:
            a, b = bt[ks[0]]["host_s"]["median"], bt[ks[1]]["host_s"]["median"]
            md += ["", f"Debian's kernel takes **{b / a:.1f}×** as long to the app's first output."]
        si = bt.get("smol-init", {})
        if "init_to_exec_ms" in si:
            md += ["", f"smol-init's own share (kernel's `Run /init` → app `execve`, guest clock, TCG, "
                   f"initramfs rootfs, `init/bench/run-init-to-exec.sh`): **{si['init_to_exec_ms']:.1f} ms** "
                   f"median of {si['boots']} boots."]
        elif si:
            md += ["", f"smol-init's /init → exec: not measured ({si.get('error', '?')})."]
        md += ["", "![boot](boot.svg)", ""]
        bars(os.path.join(outdir, "boot.svg"), "Boot to the app's first output, QEMU TCG (median)", "s",
             [(k, bt[k]["host_s"]["median"], "") for k in ks + [k for k in SMOL_TCG if k in bt]],
             "{:.2f}")
    md += lab_sections(d.get("lab"), outdir)
    io = d.get("io")
    if io:
        md += ["### 9P server loop, host only", ""]
        if io.get("p9_bench"):
            md += ["9P server loop on the host (`cargo run --release -p vmm-stub --example p9_bench 64`; "
                   "no VM, no virtio: the cost of our server per message):", "", "```"] + io["p9_bench"] + ["```", ""]
    sz = d.get("size")
    if sz:
        dh = sz.get("default_hello")
        md += ["## 4. Size", ""]
        if dh:
            md += [f"**hello-world image as `smolvm build` makes it by default: {kib(dh['total'])}** "
                   f"({dh['total']:,} bytes: stub {kib(dh['stub'])}, kernel {kib(dh['kernel'])} "
                   f"({dh.get('kernel_format_option', dh['kernel_format'])}), initramfs {kib(dh['initramfs'])}, "
                   f"{dh['rootfs_format']} rootfs {kib(dh['rootfs'])}; static `demo/hello.c`).", ""]
        md += [f"vmm-stub {kib(sz['stub_bytes'])}, smol-init {kib(sz['init_bytes'])}, "
               f"raw kernel (vmlinux, `--kernel $(smolvm kernel path)`) {kib(sz['kernel_bytes'])}. Images with "
               "that vmlinux (`builder/bench/image-sizes.sh`; full breakdown: [docs/size.md](../size.md)):", "",
               "| app | rootfs format | stub | kernel | initramfs | rootfs section | total |", "|---|---|---:|---:|---:|---:|---:|"]
        for r in sz["images"]:
            g = lambda k: kib(r[k]) if isinstance(r.get(k), int) else "-"
            md.append(f"| {r['app']} | {r['format']} | {g('stub')} | {g('kernel')} | {g('initramfs')} | "
                      f"{g('rootfs')} | {g('total')} |")
        md.append("")
    de = d.get("density")
    if de:
        md += ["## 5. Density", "",
               f"{next(iter(de.values()))['vms']} concurrent idle VMs per VMM (all running at once), each running "
               "`bench/idle.S` (prints, then HLT forever), 64 MiB guest RAM. Memory from each process's "
               "`/proc/<pid>/smaps_rollup` once all are up (PSS splits the pages they share: the stub's mapped "
               "image, QEMU's libraries); VMs per GiB = 1 GiB / median PSS. Linux guests cannot run under this host's /dev/kvm, so the guest is the "
               "bare-metal idle loop: these numbers are the VMM's own cost (the stub maps guest RAM "
               "`MAP_NORESERVE` and the image file shared); an idle Linux app VM adds the guest memory its "
               "kernel and app touch.", "",
               "| VMM | VMs alive | RSS each | PSS each | private each | PSS of all | VMs per GiB |",
               "|---|---:|---:|---:|---:|---:|---:|"]
        for n, r in de.items():
            md.append(f"| {n} | {r['alive']}/{r['vms']} | {r['rss_kib']:.0f} KiB | {r['pss_kib']:.0f} KiB | "
                      f"{r['private_kib']:.0f} KiB | {r['sum_pss_kib'] / 1024:.1f} MiB | {r['vms_per_gib']} |")
        md += ["", "![density](density.svg)", ""]
        bars(os.path.join(outdir, "density.svg"), "Idle VMs per GiB of host RAM (by PSS)", "VMs",
             [(n, r["vms_per_gib"], "") for n, r in de.items()], "{:.0f}")
    ld = (d.get("lab") or {}).get("density") or {}
    if ld:
        n = next(iter(ld.values()))["vms"]
        md += ["### Idle Linux app VMs, in the KVM lab", "",
               f"{n} copies of each at once inside L1 (as section 2's lab rows: 256 MiB guest RAM, our kernel + "
               "smol-init + busybox `sh -c` that prints a marker then sleeps); once every copy printed it and 3 s "
               "passed, each VMM process's `/proc/<pid>/smaps_rollup`. This includes the guest memory the kernel "
               "and app touched (both VMMs allocate guest RAM lazily), and for the stub the image pages it maps "
               "from the file (the vmlinux image's kernel is mapped, shared between copies; a bzImage is "
               "decompressed into private guest RAM).", "",
               "| VM | up / alive | RSS each | PSS each | private each | PSS of all | VMs per GiB |",
               "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in ld.items():
            if r.get("pss_kib"):
                md.append(f"| {name} | {r['up']}/{r['alive']} of {r['vms']} | {r['rss_kib'] / 1024:.1f} MiB | "
                          f"{r['pss_kib'] / 1024:.1f} MiB | {r['private_kib'] / 1024:.1f} MiB | "
                          f"{r['sum_pss_kib'] / 1024:.1f} MiB | {int(2**20 // r['pss_kib'])} |")
            else:
                md.append(f"| {name} | {r['up']}/{r['alive']} of {r['vms']} | - | - | - | - | - |")
        md.append("")
    with open(os.path.join(outdir, "README.md"), "w") as f:
        f.write("\n".join(md))


if __name__ == "__main__":
    main()
