//! Starting a helper program (passt) without libc: `fork` (a `clone` with
//! only the exit signal), then in the child `execve` of a path and argument
//! vector built by the parent before the fork, so the child only makes
//! system calls.

use core::ffi::CStr;
use rustix::io::Errno;

const SYS_CLONE: usize = 56;
const SYS_EXECVE: usize = 59;
const SYS_EXIT_GROUP: usize = 231;
const SYS_CLOSE_RANGE: usize = 436;
const SIGCHLD: usize = 17;

/// Which side of a [`fork`] we are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forked {
    Child,
    Parent { pid: i32 },
}

/// `fork(2)`: a copy of this process (only the calling thread) that the
/// parent learns about through SIGCHLD (which the stub leaves at its
/// default: ignored, and the kernel keeps the zombie until we exit).
///
/// # Safety
/// The child must only make system calls and then `execve` or
/// [`exit_child`]: other threads' state (none hold locks in the stub) is
/// copied mid-flight.
pub unsafe fn fork() -> Result<Forked, Errno> {
    let ret: isize;
    // SAFETY: clone with no CLONE_VM and a null stack is fork(): the child continues on its own copy of this stack, so both sides return normally from here; only rax, rcx, r11 change.
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") SYS_CLONE as isize => ret,
                         in("rdi") SIGCHLD, in("rsi") 0usize, in("rdx") 0usize, in("r10") 0usize, in("r8") 0usize,
                         lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    match ret {
        0 => Ok(Forked::Child),
        r if r > 0 => Ok(Forked::Parent { pid: i32::try_from(r).unwrap_or(i32::MAX) }),
        r => Err(Errno::from_raw_os_error(i32::try_from(r.unsigned_abs()).unwrap_or(0))),
    }
}

/// A NULL-terminated array of pointers to NUL-terminated strings (argv,
/// envp) for [`execve`], holding at most `N - 1` strings.
pub struct CStrVec<'s, const N: usize> {
    ptrs: [*const u8; N],
    len: usize,
    _strings: core::marker::PhantomData<&'s CStr>,
}

impl<'s, const N: usize> Default for CStrVec<'s, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'s, const N: usize> CStrVec<'s, N> {
    pub const fn new() -> Self {
        CStrVec { ptrs: [core::ptr::null(); N], len: 0, _strings: core::marker::PhantomData }
    }

    /// Appends `s`; `false` when full (the last slot stays NULL).
    pub fn push(&mut self, s: &'s CStr) -> bool {
        if self.len.wrapping_add(1) >= N {
            return false;
        }
        match self.ptrs.get_mut(self.len) {
            Some(p) => *p = s.as_ptr().cast(),
            None => return false,
        }
        self.len = self.len.wrapping_add(1);
        true
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `execve(path, argv, envp)`: returns only on failure.
pub fn execve<const A: usize, const E: usize>(path: &CStr, argv: &CStrVec<'_, A>, envp: &CStrVec<'_, E>) -> Errno {
    let ret: isize;
    // SAFETY: `path` is NUL-terminated; `argv` and `envp` are NULL-terminated pointer arrays (CStrVec keeps its last slot NULL) whose strings outlive the call (the CStrVec borrows them). On success the call does not return.
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") SYS_EXECVE as isize => ret,
                         in("rdi") path.as_ptr(), in("rsi") argv.ptrs.as_ptr(), in("rdx") envp.ptrs.as_ptr(),
                         lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    Errno::from_raw_os_error(i32::try_from(ret.unsigned_abs()).unwrap_or(0))
}

/// Closes every fd from `first` on (`close_range`), so a helper inherits
/// only what it is given.
pub fn close_from(first: u32) {
    let _ret: isize;
    // SAFETY: close_range takes integers and reads no memory; closing fds the process no longer uses (the child is about to exec) breaks no invariant.
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") SYS_CLOSE_RANGE as isize => _ret,
                         in("rdi") first as usize, in("rsi") u32::MAX as usize, in("rdx") 0usize,
                         lateout("rcx") _, lateout("r11") _, options(nostack));
    }
}

/// Ends a forked child at once (`exit_group`), touching nothing the
/// parent owns (no terminal restore, unlike `sys::exit`).
pub fn exit_child(code: u8) -> ! {
    // SAFETY: exit_group takes one integer and never returns.
    unsafe {
        core::arch::asm!("syscall", in("rax") SYS_EXIT_GROUP, in("rdi") usize::from(code), options(noreturn, nostack));
    }
}

/// `dup3(fd, target, 0)`: `target` becomes a copy of `fd` without
/// close-on-exec, closing what `target` was. Only for a forked child about
/// to `execve` (it takes over fd numbers nothing else in it uses).
pub fn child_dup_to(fd: rustix::fd::BorrowedFd<'_>, target: i32) -> Result<(), Errno> {
    use rustix::fd::AsRawFd;
    const SYS_DUP3: usize = 292;
    let ret: isize;
    // SAFETY: dup3 takes integers and reads no memory; replacing `target` is what a child about to exec wants (the caller's contract above), no Rust owner of it runs afterwards.
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") SYS_DUP3 as isize => ret,
                         in("rdi") fd.as_raw_fd() as isize, in("rsi") target as isize, in("rdx") 0usize,
                         lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    if ret < 0 {
        return Err(Errno::from_raw_os_error(i32::try_from(ret.unsigned_abs()).unwrap_or(0)));
    }
    Ok(())
}
