#!/usr/bin/env python3
"""Where guest -> host network time goes (issue 18): one download of 32 MiB from the HTTP echo
server under `strace -f`, in the smolvm image (stub + passt) and in QEMU microvm + passt, one
L1 run (tests/lab/run), then per VMM: frames sent and their sizes, syscalls per frame, and the
ACK-clocked cycle split in two: "ACK in -> frame out" (the guest's side: IRQ, TCP, kick) and
"frame out -> ACK in" (the VMM + passt side). strace slows every syscall (the MB/s it prints
are not the benchmark's); the counts and the split between VMMs are what to compare.

  bench/net.py --quick --down-only --rounds 1   # builds target/bench-net/ (image, QEMU plan)
  bench/net_trace.py [--image target/bench-net/http-echo.vm]
  bench/net_trace.py --inner IMAGE PLAN OUTDIR  # in L1 (called by the above)
"""
import argparse, collections, importlib.util, json, os, re, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE = "trace=ioctl,read,write,sendmsg,recvmsg,tgkill,ppoll"


def net_module():
    spec = importlib.util.spec_from_file_location("net", os.path.join(ROOT, "bench/net.py"))
    net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(net)
    return net


def traced_download(net, argv, out, passt=None):
    """Boots argv under strace (passt first, untraced, for QEMU), downloads once, kills all."""
    procs = []
    try:
        if passt:
            if os.path.exists(passt["passt_socket"]):
                os.unlink(passt["passt_socket"])
            procs.append(subprocess.Popen(passt["passt"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
            net.wait_socket(passt["passt_socket"])
        vm = subprocess.Popen(["strace", "-f", "-ttt", "-e", TRACE, "-e", "abbrev=all", "-s", "0", "-o", out, *argv],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
        procs.append(vm)
        if net.first_answer(vm, time.monotonic()) is None:
            return "no answer"
        time.sleep(1)
        return f"{net.download():.2f} MB/s under strace"
    except (OSError, ConnectionError) as e:
        return f"{type(e).__name__}: {e}"
    finally:
        net.kill_all(procs)


def inner(image, plan_path, outdir):
    net = net_module()
    qemu = next(c for c in json.load(open(plan_path))["cases"] if c["name"].startswith("QEMU"))
    res = {"smolvm": traced_download(net, [image, f"--smolvm-publish={net.HOST_PORT}:{net.GUEST_PORT}"],
                                     f"{outdir}/smolvm.strace")}
    time.sleep(1)
    res["qemu"] = traced_download(net, qemu["argv"], f"{outdir}/qemu.strace", qemu)
    json.dump(res, sys.stdout)


def events(path):
    """(time, kind, fd, result) of each finished syscall in an strace -f -ttt file."""
    done = re.compile(r"^(\d+)\s+([\d.]+)\s+(?:<\.\.\. )?(\w+)(?:\((\d+)| resumed>).*= (-?\d+)")
    started = re.compile(r"^(\d+)\s+[\d.]+\s+\w+\((\d+),.*<unfinished \.\.\.>")
    pending = {}  # pid -> fd of its unfinished call
    for line in open(path, errors="replace"):
        if m := started.match(line):
            pending[m.group(1)] = int(m.group(2))
        elif m := done.match(line):
            fd = int(m.group(4)) if m.group(4) else pending.pop(m.group(1), None)
            yield float(m.group(2)), m.group(3), fd, int(m.group(5))


def analyse(path):
    """Frames out and ACK reads on the link fd (the one with the most >1 KiB writes), and the cycle."""
    evs = list(events(path))
    sends = collections.Counter(fd for _, k, fd, r in evs if k in ("write", "sendmsg") and fd is not None and r > 1024)
    if not sends:
        return "no frames found"
    link = sends.most_common(1)[0][0]
    calls = collections.Counter(k for _, k, _, _ in evs)
    kvm_run = sum(1 for line in open(path, errors="replace") if "KVM_RUN" in line and "resumed" not in line)
    irq = sum(1 for line in open(path, errors="replace") if "KVM_IRQ_LINE" in line and "resumed" not in line)
    sizes = collections.Counter(r for _, k, fd, r in evs if k in ("write", "sendmsg") and fd == link and r > 0)
    to_guest, from_guest, per_cycle = [], [], []
    last_in = last_out = None
    n = 0
    for t, k, fd, r in evs:
        if fd != link or r <= 0:
            continue
        if k in ("read", "recvmsg"):
            if last_out is not None and n:
                from_guest.append(t - last_out)
                per_cycle.append(n)
            last_in, n = t, 0
        elif k in ("write", "sendmsg") and r > 1024:
            if n == 0 and last_in is not None:
                to_guest.append(t - last_in)
            last_out, n = t, n + 1
    frames = sum(v for s, v in sizes.items() if s > 1024)
    ms = lambda x: f"median {statistics.median(x) * 1e3:.1f} ms (n {len(x)})" if x else "—"
    return "\n".join([
        f"  frames out {frames}, commonest sizes {sizes.most_common(3)}",
        f"  per frame: KVM_RUN {kvm_run / frames:.2f}, KVM_IRQ_LINE* {irq / frames:.2f}, tgkill {calls['tgkill'] / frames:.2f}, "
        f"ppoll {calls['ppoll'] / frames:.2f}, reads {(calls['read'] + calls['recvmsg']) / frames:.2f}",
        f"  ACK in -> first frame out (guest side): {ms(to_guest)}",
        f"  last frame out -> ACK in (VMM + passt side): {ms(from_guest)}",
        f"  frames per cycle: {statistics.mean(per_cycle):.2f}" if per_cycle else "  frames per cycle: —",
    ])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inner", nargs=3, metavar=("IMAGE", "PLAN", "OUTDIR"))
    ap.add_argument("--image", default=os.path.join(ROOT, "target/bench-net/http-echo.vm"))
    a = ap.parse_args()
    if a.inner:
        return inner(*a.inner)
    plan = os.path.join(ROOT, "target/bench-net/net-plan.json")
    if not (os.path.isfile(a.image) and os.path.isfile(plan)):
        sys.exit("bench net_trace: run `bench/net.py --quick --down-only --rounds 1` first (it builds the image and the QEMU plan)")
    outdir = tempfile.mkdtemp(prefix="smolvm-net-trace-")
    p = subprocess.run([os.path.join(ROOT, "tests/lab/run"), "-t", "900", "-s", outdir, "--", "python3",
                        os.path.abspath(__file__), "--inner", os.path.abspath(a.image), plan, outdir],
                       capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        sys.exit(f"bench net_trace: lab exit {p.returncode}: {p.stderr[-1500:]}")
    res = json.loads(p.stdout)
    for name in ("smolvm", "qemu"):
        print(f"{name}: {res[name]} ({outdir}/{name}.strace)")
        path = f"{outdir}/{name}.strace"
        print(analyse(path) if os.path.exists(path) else "  no trace")


if __name__ == "__main__":
    main()
