#!/usr/bin/env python3
"""Host side of tests/tests/net_e2e.rs: runs a smolvm image (argv after
`--`) and plays the client or the server it talks to. Runs where the image
runs: inside the KVM lab's L1, or on a host with hardware KVM. Only loopback
and lab-internal addresses are used.

  client.py publish PORT -- VM...      GET, 1 MiB POST, 32x20 keep-alive
                                        requests via PORT
  client.py udp ADDR PORT -- VM...     a UDP echo via ADDR:PORT (sent from ADDR)
  client.py get PORT -- VM...          one GET via PORT
  client.py serve ADDR PORT -- VM...   HTTP server on ADDR:PORT while VM runs
                                        to its end
  client.py dns BIND NAME ADDR -- VM... DNS server on BIND:53 (NAME -> ADDR)
                                        while VM runs to its end
  client.py hold PORT -- VM...         PORT taken on 127.0.0.1 while VM runs
  client.py kill9 PORT -- VM...        SIGKILL the VM once it answers on PORT,
                                        then count passt processes
  client.py bulk PORT MIB ROUNDS -- VM...  ROUNDS x (MIB MiB up, MIB MiB down,
                                        MIB MiB echoed both ways at once, byte-exact);
                                        no progress for STALL_S seconds is a stall

Each prints its findings one per line; the VM's exit status and stderr
come last where they matter.
"""
import hashlib
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

BOOT_DEADLINE = 150  # s: a VM boot inside L1 (nested TCG) on a busy host


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def start(vm):
    return subprocess.Popen(vm, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request(port, method="GET", body=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request(method, "/", body)
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}")
    return data


def wait_http(port, vm):
    """The first answered GET (passt accepts before the guest listens: poll)."""
    end = time.time() + BOOT_DEADLINE
    while time.time() < end:
        if vm.poll() is not None:
            fail(f"the VM ended ({vm.returncode}) before answering: {vm.stderr.read().decode(errors='replace')}")
        try:
            return request(port, conn=http.client.HTTPConnection("127.0.0.1", port, timeout=5))
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)
    fail(f"no answer on port {port} within {BOOT_DEADLINE} s")


def publish(port, vm):
    proc = start(vm)
    try:
        print("get:", wait_http(port, proc).decode(errors="replace").strip(), flush=True)
        body = random.Random(7).randbytes(1 << 20)
        echoed = request(port, "POST", body)
        same = hashlib.sha256(echoed).digest() == hashlib.sha256(body).digest()
        print(f"post: {len(echoed)} bytes, {'identical' if same else 'DIFFERENT'}", flush=True)
        good = []

        def client(n):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            for i in range(20):
                want = f"client {n} request {i} ".encode() * (1 + (n * 20 + i) % 50)
                try:
                    if request(port, "POST", want, conn) == want:
                        good.append(1)
                except (OSError, http.client.HTTPException, RuntimeError) as e:
                    print(f"client {n} request {i}: {e}", flush=True)
                    return

        threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"concurrent: {len(good)}/640 correct", flush=True)
    finally:
        stop(proc)


def udp(addr, port, vm):
    proc = start(vm)
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((addr, 0))
        u.settimeout(1)
        answer = b""
        end = time.time() + BOOT_DEADLINE
        while time.time() < end and proc.poll() is None:  # until the guest listens
            u.sendto(b"udp ping", (addr, port))
            try:
                answer = u.recv(100)
                break
            except socket.timeout:
                pass
        print("udp:", answer.decode(errors="replace"), flush=True)
    finally:
        stop(proc)


def get(port, vm):
    proc = start(vm)
    try:
        print("get:", wait_http(port, proc).decode(errors="replace").strip(), flush=True)
    finally:
        stop(proc)


def run_to_end(vm, timeout=BOOT_DEADLINE + 60):
    try:
        out = subprocess.run(vm, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        # What the VM printed before it was killed says where it stopped.
        sys.stdout.write((e.stdout or b"").decode(errors="replace"))
        sys.stdout.write((e.stderr or b"").decode(errors="replace"))
        fail(f"the VM did not end within {timeout} s")
    sys.stdout.write(out.stdout.decode(errors="replace"))
    print(f"status {out.returncode}", flush=True)
    sys.stdout.write(out.stderr.decode(errors="replace"))


def serve(addr, port, vm):
    connections = []
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(8)

    def loop():
        while True:
            c, _ = srv.accept()
            connections.append(1)
            c.settimeout(10)
            try:
                c.recv(4096)
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 13\r\n\r\nhost-says-hi\n")
            except OSError:
                pass
            c.close()

    threading.Thread(target=loop, daemon=True).start()
    run_to_end(vm)
    print(f"server connections: {len(connections)}", flush=True)


def dns_answer(query, name, addr):
    i, labels = 12, []
    while i < len(query) and query[i]:
        labels.append(query[i + 1 : i + 1 + query[i]])
        i += 1 + query[i]
    qname = b".".join(labels).decode(errors="replace").lower()
    qtype = int.from_bytes(query[i + 1 : i + 3], "big")
    question = query[12 : i + 5]
    answers, rcode = b"", 3  # NXDOMAIN
    if qname == name:
        rcode = 0
        if qtype == 1:  # A; other types: no data
            answers = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + socket.inet_aton(addr)
    flags = (0x8180 | rcode).to_bytes(2, "big")
    counts = b"\x00\x01" + (1 if answers else 0).to_bytes(2, "big") + b"\x00\x00\x00\x00"
    return query[:2] + flags + counts + question + answers


def dns(bind, name, addr, vm):
    queries = []
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((bind, 53))

    def loop():
        while True:
            q, peer = srv.recvfrom(512)
            queries.append(1)
            try:
                srv.sendto(dns_answer(q, name, addr), peer)
            except (IndexError, OSError):
                pass

    threading.Thread(target=loop, daemon=True).start()
    run_to_end(vm)
    print(f"dns queries: {'some' if queries else 'none'}", flush=True)


def hold(port, vm):
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen(1)
    run_to_end(vm)


def passt_count():
    n = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                n += f.read().startswith("passt")  # also passt.avx2, which passt re-execs
        except OSError:
            pass
    return n


def kill9(port, vm):
    proc = start(vm)
    wait_http(port, proc)
    print(f"passt before: {passt_count()}", flush=True)
    proc.kill()
    proc.wait()
    end = time.time() + 10
    while passt_count() and time.time() < end:
        time.sleep(0.1)
    print(f"passt after: {passt_count()}", flush=True)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine, a listener is not
    try:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        print("port free: yes")
    except OSError:
        print("port free: no")


STALL_S = 30  # s without a byte moving: a stall (a healthy transfer moves MB/s)


def bulk_socket(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=STALL_S)
    s.settimeout(STALL_S)  # per send/recv call, each a 64 KiB piece at most
    return s


def send_pieces(s, data):
    view = memoryview(data)
    for i in range(0, len(view), 65536):
        s.sendall(view[i : i + 65536])


def recv_exact(s, n, sink=None):
    """n bytes (or fewer if sink counts them: returns the sha256 then)."""
    h, got, buf = hashlib.sha256(), 0, bytearray(65536)
    while got < n:
        k = s.recv_into(buf, min(len(buf), n - got))
        if not k:
            raise ConnectionError(f"closed after {got} of {n} bytes")
        h.update(buf[:k])
        got += k
    return h.digest()


def recv_head(s):
    head = b""
    while b"\r\n\r\n" not in head:
        c = s.recv(1)
        if not c:
            raise ConnectionError("closed before the head")
        head += c
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head[:60])
    return int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))


def bulk(port, mib, rounds, vm):
    proc = start(vm)
    n = mib << 20
    data = random.Random(11).randbytes(n)
    zeros_sha = hashlib.sha256(bytes(n)).digest()
    data_sha = hashlib.sha256(data).digest()
    try:
        wait_http(port, proc)
        for r in range(rounds):
            phase = "up"
            try:
                t0 = time.monotonic()
                s = bulk_socket(port)
                s.sendall(f"POST /discard HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n".encode())
                send_pieces(s, data)
                length = recv_head(s)
                answer = s.recv(length)
                s.close()
                if answer != f"{n} bytes\n".encode():
                    fail(f"round {r} up: answer {answer!r}")
                t1 = time.monotonic()
                phase = "down"
                s = bulk_socket(port)
                s.sendall(f"GET /zeros/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                if recv_head(s) != n or recv_exact(s, n) != zeros_sha:
                    fail(f"round {r} down: wrong body")
                s.close()
                t2 = time.monotonic()
                phase = "echo"
                s = bulk_socket(port)
                s.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n".encode())
                errors = []

                def writer():
                    try:
                        send_pieces(s, data)
                    except OSError as e:
                        errors.append(f"send: {e}")

                w = threading.Thread(target=writer)
                w.start()
                same = recv_head(s) == n and recv_exact(s, n) == data_sha
                w.join()
                s.close()
                if errors or not same:
                    fail(f"round {r} echo: {errors or 'DIFFERENT'}")
                t3 = time.monotonic()
                print(f"round {r}: up {mib / (t1 - t0):.1f} MiB/s, down {mib / (t2 - t1):.1f} MiB/s, "
                      f"echo {mib / (t3 - t2):.1f} MiB/s", file=sys.stderr, flush=True)
            except (OSError, ConnectionError) as e:
                fail(f"round {r} {phase}: {type(e).__name__}: {e} (a stall: nothing moved for {STALL_S} s)")
        print(f"bulk: {rounds} x {mib} MiB up, down and echoed, byte-exact", flush=True)
    finally:
        stop(proc)
        sys.stderr.write(proc.stderr.read().decode(errors="replace"))


def main():
    args = sys.argv[1:]
    if "--" not in args:
        fail("usage: see the docstring")
    sep = args.index("--")
    mode, params, vm = args[0], args[1:sep], args[sep + 1 :]
    if mode == "publish":
        publish(int(params[0]), vm)
    elif mode == "udp":
        udp(params[0], int(params[1]), vm)
    elif mode == "get":
        get(int(params[0]), vm)
    elif mode == "serve":
        serve(params[0], int(params[1]), vm)
    elif mode == "dns":
        dns(params[0], params[1], params[2], vm)
    elif mode == "hold":
        hold(int(params[0]), vm)
    elif mode == "bulk":
        bulk(int(params[0]), int(params[1]), int(params[2]), vm)
    elif mode == "kill9":
        kill9(int(params[0]), vm)
    else:
        fail(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
