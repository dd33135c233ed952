#!/usr/bin/env python3
"""Runs a benchmark plan where Linux guests can boot under KVM: inside the KVM lab's L1
(tests/lab/run) or directly on a host with hardware KVM. Written by bench/lab.py.

  python3 bench/lab_driver.py PLAN.json      # results as JSON on stdout

The plan has `rounds` and `sets` of cases. Every round runs every set's cases one after
the other, the order rotated each round, so the peers are interleaved and share the
same conditions. Per run of a case it records the wall time, the time until `marker`
appeared on stdout (the app's first output), the exit status, and stderr (or the
file a QEMU chardev wrote it to), which carries the guest's own timing lines.
Nothing else runs meanwhile: L1 has one vCPU, so this process only sleeps in reads.
"""
import json, os, select, shutil, signal, statistics, subprocess, sys, threading, time


def run_case(c):
    for d in c.get("fresh_dirs", []):  # a 9p share starts empty every run
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    if c.get("err_file"):
        try:
            os.unlink(c["err_file"])
        except FileNotFoundError:
            pass
    stdin = open(c["stdin"], "rb") if c.get("stdin") else subprocess.DEVNULL
    out = subprocess.PIPE if c.get("marker") else subprocess.DEVNULL
    t0 = time.monotonic()
    p = subprocess.Popen(c["argv"], stdin=stdin, stdout=out, stderr=subprocess.PIPE, start_new_session=True)
    first, seen = None, b""
    marker = c.get("marker", "").encode()
    killed = []
    def kill():  # a guest that hangs: its whole process group goes
        killed.append(1)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    watchdog = threading.Timer(c.get("timeout", 300), kill)
    watchdog.start()
    if marker:
        while True:  # blocking reads: this process sleeps while the guest boots
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            if first is None or b"\n" not in seen[seen.find(marker):]:  # keep the marker's whole line
                seen = (seen + chunk)[-4096:]
                if first is None and marker in seen:
                    first = time.monotonic() - t0
    err = p.communicate()[1]
    wall = time.monotonic() - t0
    watchdog.cancel()
    if c.get("stdin"):
        stdin.close()
    if c.get("err_file") and os.path.exists(c["err_file"]):
        with open(c["err_file"], "rb") as f:
            err += f.read()
    return {"wall": wall, "first": first, "out": seen.decode(errors="replace")[-300:], "rc": p.returncode, "timed_out": bool(killed),
            "err": err.decode(errors="replace")[-3000:]}


def rollup(pid):
    d = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            x = line.split()
            if len(x) == 3 and x[2] == "kB":
                d[x[0].rstrip(":")] = int(x[1])
    return d


def run_density(c, n):
    """n copies of an idle app VM at once; once every one printed the marker, the
    memory of each VMM process (guest RAM it touched included) from smaps_rollup."""
    procs = [subprocess.Popen(c["argv"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, start_new_session=True) for _ in range(n)]
    up = 0
    try:
        deadline = time.monotonic() + c.get("timeout", 600)
        for p in procs:
            seen = b""
            while c["marker"].encode() not in seen and time.monotonic() < deadline:
                r, _, _ = select.select([p.stdout], [], [], max(0.1, deadline - time.monotonic()))
                chunk = os.read(p.stdout.fileno(), 4096) if r else b""
                if not chunk:
                    break
                seen = (seen + chunk)[-4096:]
            up += c["marker"].encode() in seen
        time.sleep(3)  # let the guests settle into idle
        mem = [rollup(p.pid) for p in procs if p.poll() is None]
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    med = lambda k: statistics.median(m.get(k, 0) for m in mem) if mem else None
    return {"vms": n, "up": up, "alive": len(mem), "rss_kib": med("Rss"), "pss_kib": med("Pss"),
            "private_kib": statistics.median(m.get("Private_Clean", 0) + m.get("Private_Dirty", 0) for m in mem)
            if mem else None, "sum_pss_kib": sum(m.get("Pss", 0) for m in mem)}


def main():
    plan = json.load(open(sys.argv[1]))
    res = {}
    t0 = time.monotonic()
    for r in range(plan["rounds"]):
        for s in plan["sets"]:
            cases = s["cases"]
            k = r % len(cases)
            for c in cases[k:] + cases[:k]:
                x = run_case(c)
                x["round"] = r
                res.setdefault(c["name"], []).append(x)
                print(f"round {r + 1} {c['name']}: {x['wall']:.1f} s rc {x['rc']}", file=sys.stderr, flush=True)
    density = {}
    d = plan.get("density")
    for c in (d or {}).get("cases", []):
        density[c["name"]] = run_density(c, d["n"])
        print(f"density {c['name']}: {density[c['name']]}", file=sys.stderr, flush=True)
    json.dump({"results": res, "density": density, "l1_seconds": time.monotonic() - t0, "uname": os.uname().release}, sys.stdout)


if __name__ == "__main__":
    main()
