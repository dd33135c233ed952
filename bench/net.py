#!/usr/bin/env python3
"""Network benchmark (issue 18): the HTTP echo server (examples/http-echo) in a smolvm
image with the stub + passt, beside QEMU `-M microvm` running the SAME kernel, initramfs
(smol-init + the image's manifest + the runtime config the stub would write), rootfs and
app with `-netdev stream` + passt given the same options (the stub's: 10.0.2.15/24,
gateway 10.0.2.2, DNS forward 10.0.2.3, MTU 65520, the same published port). One L1 run
(tests/lab/run), the VMMs interleaved round by round; directly on hardware KVM.

  bench/net.py [--rounds 3]          # on the host: builds, runs, prints the table,
                                     # writes docs/bench/net.json
  bench/net.py --rounds 1 --quick --stub mrg=/tmp/vmm-stub-mrg --out /tmp/net.json
                                     # A/B: the same image with other stubs beside the
                                     # built one and QEMU + passt only
  bench/net.py --quick --down-only --rounds 3 --stub base=/tmp/vmm-stub-base --out /tmp/net.json
                                     # guest -> host only (boot, idle PSS, then the download):
                                     # ~2 min for 3 rounds x 3 VMMs
  bench/net.py --inner PLAN.json     # where the VMs run (called by the above)

Per round and VMM, one boot of the server, measured from the host side of the link:
  first answer   exec of the VMM (and passt for QEMU) until a GET succeeds (polled every 50 ms,
                 1 s per try: connections passt accepted before the guest listens are dropped)
  idle PSS       3 s after that: PSS of the VMM process, and of passt (smaps_rollup)
  req/s 1, 32    keep-alive POSTs of 64 bytes for 4 s over 1 and 32 connections
  MB/s up, down  32 MiB POST /discard (host -> guest), GET /zeros/32 MiB (guest -> host)
"""
import argparse, json, os, socket, statistics, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
HOST_PORT = 18080
GUEST_PORT = 8080
MTU = 65520
BULK = 32 << 20


def log(msg):
    print(f"[bench net {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- where the VMs run ------------------------------------------------------------------

def http_get(path, timeout=5):
    s = socket.create_connection(("127.0.0.1", HOST_PORT), timeout=timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s, read_response(s)


def read_response(s, sink=False):
    """Reads one response with a Content-Length body; returns the body (or its length)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the head")
        head += chunk
    head, rest = head.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head[:40])
    n = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
    if sink:
        got = len(rest)
        buf = bytearray(1 << 20)
        while got < n:
            k = s.recv_into(buf)
            if not k:
                raise ConnectionError("short body")
            got += k
        return got
    body = rest
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            raise ConnectionError("short body")
        body += chunk
    return body


def first_answer(proc, t0, deadline=240):
    while time.monotonic() - t0 < deadline:
        if proc.poll() is not None:
            return None
        try:
            s, _ = http_get("/", timeout=1)
            s.close()
            return time.monotonic() - t0
        except (OSError, ConnectionError, ValueError, StopIteration):
            time.sleep(0.05)
    return None


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
    except (OSError, StopIteration):
        return None


def children_named(ppid, name):
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
            comm = st[st.index("(") + 1 : st.rindex(")")]
            if comm.startswith(name) and int(st[st.rindex(")") + 2 :].split()[1]) == ppid:
                out.append(int(pid))
        except (OSError, ValueError):
            pass
    return out


def rps(conns, seconds=4.0):
    body = b"x" * 64
    req = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    counts = [0] * conns
    stop = time.monotonic() + seconds

    def worker(i):
        s = socket.create_connection(("127.0.0.1", HOST_PORT), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while time.monotonic() < stop:
            s.sendall(req)
            if read_response(s) != body:
                raise ConnectionError("wrong echo")
            counts[i] += 1
        s.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def upload():
    s = socket.create_connection(("127.0.0.1", HOST_PORT), timeout=120)
    chunk = b"\0" * (1 << 20)
    t0 = time.monotonic()
    s.sendall(f"POST /discard HTTP/1.1\r\nHost: x\r\nContent-Length: {BULK}\r\n\r\n".encode())
    for _ in range(BULK // len(chunk)):
        s.sendall(chunk)
    answer = read_response(s)
    dt = time.monotonic() - t0
    s.close()
    if answer != f"{BULK} bytes\n".encode():
        raise ConnectionError(f"upload answer {answer!r}")
    return BULK / dt / 1e6


def download():
    s = socket.create_connection(("127.0.0.1", HOST_PORT), timeout=120)
    t0 = time.monotonic()
    s.sendall(f"GET /zeros/{BULK} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    n = read_response(s, sink=True)
    dt = time.monotonic() - t0
    s.close()
    if n != BULK:
        raise ConnectionError("short download")
    return BULK / dt / 1e6


def wait_socket(path, deadline=30):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if os.path.exists(path):
            return True
        time.sleep(0.01)
    return False


def run_one(case):
    """One boot: start the VMM (QEMU: passt first), measure, stop everything."""
    res = {}
    procs = []
    t0 = time.monotonic()
    try:
        if case.get("passt"):
            sock = case["passt_socket"]
            if os.path.exists(sock):
                os.unlink(sock)
            passt = subprocess.Popen(case["passt"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
            procs.append(passt)
            if not wait_socket(sock):
                return {"error": "passt made no socket: " + passt.stderr.read(400).decode(errors="replace")}
        vm = subprocess.Popen(case["argv"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
        procs.append(vm)
        res["first_answer_s"] = first_answer(vm, t0)
        if res["first_answer_s"] is None:
            listeners = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
            procs_now = subprocess.run(["ps", "-eo", "pid,ppid,stat,etime,comm"], capture_output=True, text=True).stdout
            os.killpg(vm.pid, 9)
            return {"error": f"no answer (rc {vm.poll()}): {vm.stderr.read()[-400:].decode(errors='replace')}\n"
                             f"{listeners}\n{procs_now[-1200:]}"}
        time.sleep(3)
        passt_pids = [p.pid for p in procs[:-1]] or children_named(vm.pid, "passt")
        res["vmm_pss_kib"] = pss_kib(vm.pid)
        res["passt_pss_kib"] = sum(filter(None, (pss_kib(p) for p in passt_pids))) or None
        if case.get("down_only"):
            res["down_mb_s"] = download()
            return res
        res["rps_1"] = rps(1)
        res["rps_32"] = rps(32)
        res["up_mb_s"] = upload()
        res["down_mb_s"] = download()
    except (OSError, ConnectionError) as e:
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        kill_all(procs)
    return res


def kill_all(procs):
    """SIGKILL each process group, newest first, and reap it."""
    for p in reversed(procs):
        try:
            os.killpg(p.pid, 9)
        except ProcessLookupError:
            pass
        p.wait()


def inner(plan_path):
    plan = json.load(open(plan_path))
    results = {c["name"]: [] for c in plan["cases"]}
    for r in range(plan["rounds"]):
        k = r % len(plan["cases"])
        cases = plan["cases"][k:] + plan["cases"][:k]
        for c in cases:
            x = run_one(c)
            log(f"round {r + 1} {c['name']}: {x}")
            results[c["name"]].append(x)
            time.sleep(1)  # TIME_WAIT and passt's exit
    json.dump({"results": results, "uname": os.uname().release}, sys.stdout)


# ---- on the host ------------------------------------------------------------------------

def passt_args(extra):
    return ["passt", "--foreground", "--quiet", "-4", "-a", "10.0.2.15", "-n", "24", "-g", "10.0.2.2",
            "--dns-forward", "10.0.2.3", "-m", str(MTU), "--no-map-gw",
            "-t", f"127.0.0.1/{HOST_PORT}:{GUEST_PORT}"] + extra


def build(work, target, smolvm, stubs=()):
    import lab  # bench/lab.py

    root = f"{work}/net-root"  # http-echo alone: the reference image
    os.makedirs(f"{root}/bin", exist_ok=True)
    subprocess.run(["musl-gcc", "-Os", "-static", "-pthread", "-s", "-o", f"{root}/bin/http-echo",
                    os.path.join(ROOT, "examples/http-echo/http-echo.c")], check=True)
    vmlinux = subprocess.run([smolvm, "kernel", "path"], check=True, capture_output=True, text=True).stdout.strip()
    image, image_vml = f"{work}/http-echo.vm", f"{work}/http-echo-vmlinux.vm"
    common = ["--rootfs", root, "--entry", "/bin/http-echo", "--arg", str(GUEST_PORT), "--mem", "256M", "--stub", f"{target}/vmm-stub",
              "--init", f"{target}/smol-init"]
    subprocess.run([smolvm, "build", *common, "-o", image], check=True, capture_output=True)
    subprocess.run([smolvm, "build", *common, "--kernel", vmlinux, "-o", image_vml], check=True, capture_output=True)
    variants = {}
    for name, stub in stubs:
        variants[name] = f"{work}/http-echo-{name}.vm"
        argv = [a if a != f"{target}/vmm-stub" else stub for a in common]
        subprocess.run([smolvm, "build", *argv, "-o", variants[name]], check=True, capture_output=True)
    return image, image_vml, vmlinux, variants


def qemu_initrd(smolvm, image, path, mtu=MTU):
    import lab
    import importlib.util

    spec = importlib.util.spec_from_file_location("bt", os.path.join(ROOT, "kernel-config/bench/boot-time.py"))
    bt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bt)
    s = lab.sections(smolvm, image)["initramfs"]
    with open(image, "rb") as f:
        f.seek(s["offset"])
        ini = f.read(s["length"])
    run = lab.cfg([("ip", "10.0.2.15/24", "10.0.2.2", str(mtu)), ("dns", "10.0.2.3"),
                   ("stdio", "ports")])
    rt = bt.newc([("smolvm", 0o040755, b"", 0, 0), ("smolvm/run", 0o100644, run, 0, 0)])
    with open(path, "wb") as f:
        f.write(ini + b"\0" * (-len(ini) % 4) + rt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--inner")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/bench/net.json"))
    ap.add_argument("--stub", action="append", default=[], metavar="NAME=PATH",
                    help="also run the image built with this vmm-stub (A/B in one run)")
    ap.add_argument("--quick", action="store_true", help="no vmlinux image, no QEMU user networking")
    ap.add_argument("--down-only", action="store_true",
                    help="measure only guest -> host MB/s (with first answer and idle PSS) per boot")
    a = ap.parse_args()
    if a.inner:
        return inner(a.inner)
    import lab

    target = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR", "target"), "release")
    smolvm = os.path.join(target, "smolvm")
    work = os.path.join(ROOT, "target/bench-net")
    os.makedirs(work, exist_ok=True)
    stubs = [tuple(x.split("=", 1)) for x in a.stub]
    if any(len(x) != 2 or not os.path.isfile(x[1]) for x in stubs):
        ap.error("--stub NAME=PATH: PATH must be a vmm-stub binary")
    image, image_vml, vmlinux, variants = build(work, target, smolvm, stubs)
    initrd, initrd_user = f"{work}/qemu-net.cpio", f"{work}/qemu-net-user.cpio"
    qemu_initrd(smolvm, image_vml, initrd)
    qemu_initrd(smolvm, image_vml, initrd_user, 1500)  # slirp's MTU
    sock = "/dev/shm/smolvm-bench-passt.sock"  # L1's private tmpfs
    qemu = lab.qemu_smolinit(smolvm, "kvm", vmlinux, initrd, image_vml, 256, "/dev/null", "/dev/null", False)
    qemu += ["-netdev", f"stream,id=n0,server=off,addr.type=unix,addr.path={sock}",
             "-device", f"virtio-net-device,netdev=n0,mac=52:54:00:12:34:56,host_mtu={MTU}"]
    # QEMU's own user networking (slirp: the same 10.0.2.x addressing), if built in.
    user = lab.qemu_smolinit(smolvm, "kvm", vmlinux, initrd_user, image_vml, 256, "/dev/null", "/dev/null", False)
    user += ["-netdev", f"user,id=n0,restrict=off,hostfwd=tcp:127.0.0.1:{HOST_PORT}-:{GUEST_PORT}",
             "-device", "virtio-net-device,netdev=n0,mac=52:54:00:12:34:56"]
    publish = f"--smolvm-publish={HOST_PORT}:{GUEST_PORT}"
    cases = [
        {"name": "smolvm (stub + passt)", "argv": [image, publish]},
        *({"name": f"smolvm {n} (stub + passt)", "argv": [v, publish]} for n, v in variants.items()),
        {"name": "smolvm vmlinux (stub + passt)", "argv": [image_vml, publish]},
        {"name": "QEMU microvm + passt (-netdev stream)", "argv": qemu,
         "passt": passt_args(["--socket", sock]), "passt_socket": sock},
    ]
    if a.quick:
        cases = [c for c in cases if "vmlinux" not in c["name"]]
    if a.down_only:
        cases = [{**c, "down_only": True} for c in cases if "slirp" not in c["name"]]
    elif "user" in subprocess.run(["qemu-system-x86_64", "-netdev", "help"], capture_output=True, text=True).stdout.split():
        cases.append({"name": "QEMU microvm + user networking (slirp)", "argv": user})
    plan = f"{work}/net-plan.json"
    json.dump({"rounds": a.rounds, "cases": cases}, open(plan, "w"), indent=1)
    log(f"{a.rounds} rounds x {len(cases)} VMMs in one L1 (tests/lab/run)")
    p = subprocess.run([os.path.join(ROOT, "tests/lab/run"), "-t", "1800", "--", "python3", os.path.abspath(__file__),
                        "--inner", plan], capture_output=True, text=True, cwd=ROOT)
    sys.stderr.write(p.stderr[-3000:])
    if p.returncode != 0:
        sys.exit(f"bench net: lab exit {p.returncode}")
    raw = json.loads(p.stdout)
    sizes = {"smolvm (stub + passt)": os.path.getsize(image), "smolvm vmlinux (stub + passt)": os.path.getsize(image_vml),
             **{f"smolvm {n} (stub + passt)": os.path.getsize(v) for n, v in variants.items()}}
    summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "l1_kernel": raw["uname"],
               "loadavg": os.getloadavg()[0], "image_bytes": sizes, "cases": {}}
    for name, runs in raw["results"].items():
        ok = [r for r in runs if "error" not in r]
        med = lambda k: statistics.median(r[k] for r in ok if r.get(k) is not None) if any(r.get(k) for r in ok) else None
        summary["cases"][name] = {"ok": len(ok), "runs": len(runs), "errors": [r["error"] for r in runs if "error" in r][:2],
                                  **{k: med(k) for k in ("first_answer_s", "vmm_pss_kib", "passt_pss_kib", "rps_1",
                                                         "rps_32", "up_mb_s", "down_mb_s")}}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(summary, open(a.out, "w"), indent=1)
    print(table(summary))
    print(ratios(summary))


def ratios(s):
    """Each smolvm case against QEMU + passt of the same run (medians)."""
    ref = s["cases"].get("QEMU microvm + passt (-netdev stream)")
    out = []
    for name, c in s["cases"].items():
        if not name.startswith("smolvm") or not ref:
            continue
        r = lambda k: "—" if not (c.get(k) and ref.get(k)) else f"{c[k] / ref[k]:.2f}"
        out.append(f"{name} / QEMU + passt: first answer {r('first_answer_s')}x, req/s {r('rps_1')}x / {r('rps_32')}x, "
                   f"host->guest {r('up_mb_s')}x, guest->host {r('down_mb_s')}x")
    return "\n".join(out)


def table(s):
    f = lambda x, d=1: "—" if x is None else f"{x:.{d}f}"
    rows = ["| VMM | image | start → first answer | idle PSS VMM + passt | req/s 1 conn | req/s 32 conn | MB/s host→guest | MB/s guest→host | runs ok |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, c in s["cases"].items():
        size = s["image_bytes"].get(name)
        size = f"{size / 2**20:.2f} MiB" if size else "kernel + initrd + rootfs files"
        pss = "—" if c["vmm_pss_kib"] is None else f"{c['vmm_pss_kib'] / 1024:.1f} + {f((c['passt_pss_kib'] or 0) / 1024)} MiB"
        rows.append(f"| {name} | {size} | {f(c['first_answer_s'], 2)} s | {pss} | {f(c['rps_1'], 0)} | {f(c['rps_32'], 0)} | "
                    f"{f(c['up_mb_s'])} | {f(c['down_mb_s'])} | {c['ok']}/{c['runs']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
