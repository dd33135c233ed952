"""Kernel features that real programs use, probed from user space in the guest.

Prints one `NAME ok` or `NAME FAILED: reason` line per feature and exits 1 if
any failed. Run by tests/tests/compat_e2e.rs; runs on a host too.
"""
import ctypes
import errno
import os
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
failed = []

NR = {"io_setup": 206, "io_destroy": 207, "io_uring_setup": 425, "seccomp": 317,
      "rseq": 334, "name_to_handle_at": 303, "unshare": 272}


def check(name, fn):
    try:
        fn()
        print(f"{name} ok")
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the probe
        failed.append(name)
        print(f"{name} FAILED: {e}")


def syscall(name, *args):
    r = libc.syscall(NR[name], *args)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{name}: {os.strerror(e)}")
    return r


def sysv_shm():
    shmid = libc.shmget(0, 4096, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
    if shmid < 0:
        raise OSError(ctypes.get_errno(), "shmget")
    libc.shmctl(shmid, 0, None)  # IPC_RMID


def posix_mq():
    libc.mq_open.restype = ctypes.c_int
    fd = libc.mq_open(b"/probe", os.O_CREAT | os.O_RDWR, 0o600, None)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "mq_open")
    os.close(fd)
    libc.mq_unlink(b"/probe")


def aio():
    ctx = ctypes.c_ulong(0)
    syscall("io_setup", 8, ctypes.byref(ctx))
    syscall("io_destroy", ctx)


def io_uring():
    params = (ctypes.c_ubyte * 120)()
    os.close(syscall("io_uring_setup", 4, params))


def seccomp():
    # SECCOMP_GET_ACTION_AVAIL for SECCOMP_RET_KILL_PROCESS: 0 when seccomp filters exist.
    action = ctypes.c_uint(0x80000000)
    syscall("seccomp", 2, 0, ctypes.byref(action))


def rseq():
    # An unaligned rseq area: EINVAL means the call exists (ENOSYS means it does not);
    # glibc has registered its own area already (EBUSY/EINVAL are both fine).
    r = libc.syscall(NR["rseq"], None, 0, 0, 0)
    if r < 0 and ctypes.get_errno() == errno.ENOSYS:
        raise OSError(errno.ENOSYS, "rseq")


def fhandle():
    buf = (ctypes.c_ubyte * 136)()
    ctypes.c_uint.from_buffer(buf).value = 128
    mount_id = ctypes.c_int(0)
    syscall("name_to_handle_at", -100, b"/tmp", buf, ctypes.byref(mount_id), 0)


def user_namespace():
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.syscall(NR["unshare"], 0x10000000 | 0x20000000) == 0 else 1)  # NEWUSER | NEWPID
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError("unshare(CLONE_NEWUSER | CLONE_NEWPID) failed")


def ipv6():
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::", 0))
        s.listen()


def unix_socketpair():
    a, b = socket.socketpair()
    a.sendall(b"x")
    assert b.recv(1) == b"x"


def pty():
    m, s = os.openpty()
    os.write(s, b"hi\n")
    got = os.read(m, 16)
    assert got == b"hi\r\n", got


def dev_shm():
    fd = os.open("/dev/shm/probe", os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.unlink("/dev/shm/probe")
    import _multiprocessing  # sem_open lives in /dev/shm
    sem = _multiprocessing.SemLock(1, 1, 1, "/probe-sem", True)
    sem.acquire()
    sem.release()


def dnotify():
    import fcntl
    fd = os.open("/tmp", os.O_RDONLY)
    try:
        fcntl.fcntl(fd, fcntl.F_NOTIFY, fcntl.DN_MULTISHOT)
    finally:
        os.close(fd)


def entropy():
    assert len(os.getrandom(16)) == 16


for name, fn in [("sysvipc", sysv_shm), ("posix_mqueue", posix_mq), ("aio", aio), ("io_uring", io_uring),
                 ("seccomp", seccomp), ("rseq", rseq), ("fhandle", fhandle), ("user_ns", user_namespace),
                 ("ipv6", ipv6), ("unix", unix_socketpair), ("pty", pty), ("dev_shm", dev_shm),
                 ("dnotify", dnotify), ("getrandom", entropy)]:
    check(name, fn)
sys.exit(1 if failed else 0)
