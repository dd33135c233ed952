//! The raw system calls and port I/O rustix does not offer (or hides behind
//! its `runtime` feature). Every `unsafe` of the library lives here; callers
//! get safe functions. x86_64 Linux only: the guest is always that.

use core::arch::asm;
use core::ffi::{c_char, CStr};
use rustix::fd::BorrowedFd;
use rustix::io::Errno;

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("smol-init runs as PID 1 of an x86_64 Linux guest");

const SYS_IOCTL: usize = 16;
const SYS_RT_SIGPROCMASK: usize = 14;
const SYS_SOCKET: usize = 41;
const SYS_CONNECT: usize = 42;
const SYS_CLONE: usize = 56;
const SYS_FCNTL: usize = 72;
const F_GETFD: usize = 1;
const SYS_EXECVE: usize = 59;
const SYS_KILL: usize = 62;
const SYS_IOPERM: usize = 173;
const SYS_CLOCK_GETTIME: usize = 228;
const SYS_EXIT_GROUP: usize = 231;
const SYS_SIGNALFD4: usize = 289;
const SYS_SYSLOG: usize = 103;
/// `syslog(2)` action: read the newest bytes of the ring buffer.
const SYSLOG_ACTION_READ_ALL: usize = 3;

const SIGCHLD: usize = 17;
const SIG_SETMASK: usize = 2;
const CLOCK_MONOTONIC: usize = 1;
const O_CLOEXEC: usize = 0o2_000_000;
/// The kernel's sigset is 64 bits (signals 1..=64).
const SIGSET_SIZE: usize = 8;

/// # Safety
/// The arguments must be valid for system call `nr` (pointers point to what
/// the kernel will read or write for that call).
unsafe fn syscall4(nr: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> isize {
    let ret: isize;
    // SAFETY: the `syscall` instruction clobbers only rcx, r11 and rax; the caller vouches for the arguments.
    unsafe {
        asm!("syscall", inlateout("rax") nr.cast_signed() => ret, in("rdi") a1, in("rsi") a2,
             in("rdx") a3, in("r10") a4, lateout("rcx") _, lateout("r11") _,
             options(nostack));
    }
    ret
}

fn result(ret: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&ret) {
        // The range check above makes this fit in i32.
        Err(Errno::from_raw_os_error(i32::try_from(-ret).unwrap_or(0)))
    } else {
        Ok(ret.unsigned_abs())
    }
}

/// Whether descriptor `fd` is open.
pub fn fd_is_open(fd: u8) -> bool {
    // SAFETY: fcntl(F_GETFD) takes integers and only reads the fd table.
    result(unsafe { syscall4(SYS_FCNTL, usize::from(fd), F_GETFD, 0, 0) }).is_ok()
}

/// Fds 0, 1 and 2. Init never closes them: `console::fill_std_fds` opens
/// /dev/null on any the kernel left closed, and later they are only
/// replaced with `dup2`, which is atomic. Before `fill_std_fds` runs a write
/// to a closed fd 2 merely fails with EBADF (nothing else is open yet).
pub fn stdin() -> BorrowedFd<'static> {
    // SAFETY: see above: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

pub fn stderr() -> BorrowedFd<'static> {
    // SAFETY: see `stdin`: fd 2 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(2) }
}

/// `fork()` as `clone(SIGCHLD)`: returns `None` in the child, the child's pid
/// in the parent.
pub fn fork() -> Result<Option<i32>, Errno> {
    // SAFETY: init is single-threaded (it never creates threads), so the child's copy of the address space holds no lock another thread owns; with a zero stack pointer the child continues on its copy of our stack, exactly like fork(). No pointers are passed.
    let ret = unsafe { syscall4(SYS_CLONE, SIGCHLD, 0, 0, 0) };
    let pid = result(ret)?;
    Ok(if pid == 0 { None } else { Some(i32::try_from(pid).unwrap_or(i32::MAX)) })
}

/// `execve(path, argv, envp)`; returns only on failure. `argv` and `envp`
/// must end with a null pointer and every other element point to a C string
/// that outlives the call; both are checked or guaranteed by the types below.
pub fn execve(path: &CStr, argv: &CPtrs<'_>, envp: &CPtrs<'_>) -> Errno {
    // SAFETY: `path` is a C string; `CPtrs` guarantees null-terminated arrays of pointers to C strings borrowed for its lifetime (see `CPtrs::new`).
    let ret = unsafe {
        syscall4(
            SYS_EXECVE,
            path.as_ptr() as usize,
            argv.ptrs.as_ptr() as usize,
            envp.ptrs.as_ptr() as usize,
            0,
        )
    };
    match result(ret) {
        Err(e) => e,
        Ok(_) => Errno::INVAL,
    }
}

/// A null-terminated array of C-string pointers for `execve`, borrowing the
/// strings so they cannot be freed while the array lives.
pub struct CPtrs<'a> {
    ptrs: alloc::vec::Vec<*const c_char>,
    _strings: core::marker::PhantomData<&'a CStr>,
}

impl<'a> CPtrs<'a> {
    pub fn new(strings: impl Iterator<Item = &'a CStr>) -> Self {
        let mut ptrs: alloc::vec::Vec<*const c_char> = strings.map(CStr::as_ptr).collect();
        ptrs.push(core::ptr::null());
        CPtrs { ptrs, _strings: core::marker::PhantomData }
    }
}

/// Ends the calling process (the forked child) with `status`, immediately.
pub fn exit_group(status: u8) -> ! {
    // SAFETY: exit_group takes an integer and does not return.
    unsafe {
        syscall4(SYS_EXIT_GROUP, usize::from(status), 0, 0, 0);
    }
    // exit_group cannot fail; this loop only satisfies the type checker.
    #[allow(clippy::empty_loop)]
    loop {}
}

/// `kill(pid, sig)` with a raw pid: `-1` means every process but init.
pub fn kill(pid: i32, sig: i32) -> Result<(), Errno> {
    // Sign-extending casts: the kernel reads these registers as ints.
    #[allow(clippy::cast_sign_loss)]
    let (pid, sig) = (pid as isize as usize, sig as isize as usize);
    // SAFETY: kill takes two integers, no pointers.
    result(unsafe { syscall4(SYS_KILL, pid, sig, 0, 0) }).map(drop)
}

/// A set of signals 1..=64 in the kernel's layout (bit `n-1` = signal `n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigSet(pub u64);

impl SigSet {
    pub const EMPTY: SigSet = SigSet(0);
    pub const ALL: SigSet = SigSet(u64::MAX);
}

/// Replaces the calling thread's signal mask.
pub fn set_signal_mask(set: SigSet) -> Result<(), Errno> {
    let set = set.0;
    // SAFETY: `set` is a live 8-byte sigset the kernel only reads; the old mask is not requested (null).
    let ret = unsafe {
        syscall4(SYS_RT_SIGPROCMASK, SIG_SETMASK, core::ptr::from_ref(&set) as usize, 0, SIGSET_SIZE)
    };
    result(ret).map(drop)
}

/// A new close-on-exec signalfd that reports the signals in `set` (which the
/// caller must have blocked).
pub fn signalfd(set: SigSet) -> Result<rustix::fd::OwnedFd, Errno> {
    let set = set.0;
    // SAFETY: `set` is a live 8-byte sigset the kernel only reads; fd -1 asks for a new descriptor.
    let ret = unsafe {
        syscall4(SYS_SIGNALFD4, usize::MAX, core::ptr::from_ref(&set) as usize, SIGSET_SIZE, O_CLOEXEC)
    };
    let fd = i32::try_from(result(ret)?).map_err(|_| Errno::BADF)?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { <rustix::fd::OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(fd) })
}

/// The newest `buf.len()` bytes of the kernel log (`syslog(2)` READ_ALL;
/// init is root, so it has CAP_SYSLOG): `<level>text` lines, oldest first.
pub fn kernel_log_tail(buf: &mut [u8]) -> &[u8] {
    // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes; the kernel writes at most that many.
    let n = result(unsafe { syscall4(SYS_SYSLOG, SYSLOG_ACTION_READ_ALL, buf.as_mut_ptr() as usize, buf.len(), 0) });
    buf.get(..n.unwrap_or(0)).unwrap_or_default()
}

/// CLOCK_MONOTONIC in nanoseconds (0 if the clock cannot be read).
pub fn monotonic_ns() -> u64 {
    let mut ts = [0i64; 2];
    // SAFETY: `ts` is a live, writable `struct timespec` (two 64-bit words).
    let ret = unsafe {
        syscall4(SYS_CLOCK_GETTIME, CLOCK_MONOTONIC, core::ptr::from_mut(&mut ts) as usize, 0, 0)
    };
    if result(ret).is_err() {
        return 0;
    }
    let secs = u64::try_from(ts[0]).unwrap_or(0);
    let nanos = u64::try_from(ts[1]).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Writes `value` to I/O port `port` after asking the kernel for access to
/// it (`ioperm`). The hypervisor's exit device ends the VM on this write.
pub fn outb_port(port: u16, value: u8) -> Result<(), Errno> {
    // SAFETY: ioperm takes integers; it only changes this process's I/O permission bitmap.
    result(unsafe { syscall4(SYS_IOPERM, usize::from(port), 1, 1, 0) })?;
    // SAFETY: ioperm succeeded, so the CPU lets this process write `port`; the write touches no memory. The port is the hypervisor's exit device.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nostack, nomem, preserves_flags));
    }
    Ok(())
}

const AF_INET: usize = 2;
const SOCK_DGRAM: usize = 2;
const SOCK_CLOEXEC: usize = O_CLOEXEC;

/// A close-on-exec `AF_INET` datagram socket: the handle the kernel's
/// interface and route ioctls are issued on.
pub fn inet_socket() -> Result<rustix::fd::OwnedFd, Errno> {
    // SAFETY: socket takes three integers, no pointers.
    let ret = unsafe { syscall4(SYS_SOCKET, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0, 0) };
    let fd = i32::try_from(result(ret)?).map_err(|_| Errno::BADF)?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { <rustix::fd::OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(fd) })
}

const SOCK_STREAM: usize = 1;
/// `sizeof(struct sockaddr_in)`.
const SOCKADDR_IN_SIZE: usize = 16;

/// Whether a TCP connection to 127.0.0.1:`port` succeeds (a service's
/// readiness). On loopback, connect completes or is refused at once.
pub fn loopback_port_accepts(port: u16) -> bool {
    // SAFETY: socket takes three integers, no pointers.
    let Ok(fd) = result(unsafe { syscall4(SYS_SOCKET, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0, 0) }) else {
        return false;
    };
    // struct sockaddr_in: family, port (big endian), 127.0.0.1, zero padding.
    let mut addr = [0u8; SOCKADDR_IN_SIZE];
    addr[..2].copy_from_slice(&2u16.to_ne_bytes());
    addr[2..4].copy_from_slice(&port.to_be_bytes());
    addr[4..8].copy_from_slice(&[127, 0, 0, 1]);
    // SAFETY: `addr` is a live sockaddr_in of the size passed; the kernel only reads it.
    let connected = result(unsafe { syscall4(SYS_CONNECT, fd, addr.as_ptr() as usize, SOCKADDR_IN_SIZE, 0) }).is_ok();
    let Ok(fd) = i32::try_from(fd) else { return connected };
    // SAFETY: the kernel returned `fd` above as a new descriptor that nothing else owns; dropping it closes it.
    drop(unsafe { <rustix::fd::OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(fd) });
    connected
}

/// `sizeof(struct ifreq)` on x86_64: the name, then a 24-byte union.
pub const IFREQ_SIZE: usize = 40;
/// `sizeof(struct rtentry)` on x86_64.
pub const RTENTRY_SIZE: usize = 120;

/// The interface ioctls init issues; each one reads or writes exactly one
/// `struct ifreq` (its address says which by the request number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum IfRequest {
    GetFlags = 0x8913,
    SetFlags = 0x8914,
    SetAddr = 0x8916,
    SetNetmask = 0x891c,
    SetMtu = 0x8922,
}

/// An interface ioctl on `struct ifreq` bytes (built by `net::ifreq`).
pub fn if_ioctl(sock: BorrowedFd<'_>, request: IfRequest, ifr: &mut [u8; IFREQ_SIZE]) -> Result<(), Errno> {
    let fd = usize::try_from(rustix::fd::AsRawFd::as_raw_fd(&sock)).map_err(|_| Errno::BADF)?;
    // SAFETY: every `IfRequest` reads and/or writes one `struct ifreq`, and `ifr` is a live, writable buffer of exactly that size (no pointers inside it: the ifreq union members used hold values, not addresses).
    result(unsafe { syscall4(SYS_IOCTL, fd, request as usize, ifr.as_mut_ptr() as usize, 0) }).map(drop)
}

/// `SIOCADDRT`: adds the route in `rt` (`struct rtentry` bytes, built by
/// `net::rtentry`). Its `rt_dev` pointer is cleared here.
pub fn add_route(sock: BorrowedFd<'_>, mut rt: [u8; RTENTRY_SIZE]) -> Result<(), Errno> {
    const SIOCADDRT: usize = 0x890b;
    const RT_DEV: core::ops::Range<usize> = 88..96;
    rt[RT_DEV].fill(0);
    let fd = usize::try_from(rustix::fd::AsRawFd::as_raw_fd(&sock)).map_err(|_| Errno::BADF)?;
    // SAFETY: SIOCADDRT reads one `struct rtentry`; `rt` is a live buffer of exactly that size. Its only pointer field (rt_dev, bytes 88..96) was zeroed just above, so the kernel follows no pointer out of it.
    result(unsafe { syscall4(SYS_IOCTL, fd, SIOCADDRT, rt.as_ptr() as usize, 0) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn errors_are_decoded() {
        assert_eq!(result(-2), Err(Errno::NOENT));
        assert_eq!(result(5), Ok(5));
        assert_eq!(kill(i32::MAX, 0), Err(Errno::SRCH));
    }

    #[test]
    fn loopback_probe_sees_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(loopback_port_accepts(port));
        drop(listener);
        assert!(!loopback_port_accepts(port));
    }

    #[test]
    fn execve_reports_missing_files() {
        let argv = CPtrs::new([c"/nonexistent/x"].into_iter());
        let envp = CPtrs::new(core::iter::empty());
        assert_eq!(execve(c"/nonexistent/x", &argv, &envp), Errno::NOENT);
    }
}

/// `struct signalfd_siginfo` is 128 bytes; `ssi_signo` is its first u32.
pub const SIGINFO_SIZE: usize = 128;
