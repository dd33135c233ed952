//! Starting a helper program (passt) without libc: [`spawn`] forks (a
//! `clone` with only the exit signal), and the child wires its descriptors
//! and `execve`s a path and argument vector built by the parent before the
//! fork, so the child only makes system calls. The unsafe fork stays here:
//! callers get a safe function.

use super::syscall::{syscall, SYS_CLONE, SYS_DUP3, SYS_EXECVE, SYS_EXIT_GROUP};
use core::ffi::CStr;
use rustix::fd::{AsRawFd, BorrowedFd};
use rustix::io::Errno;

const SIGCHLD: usize = 17;

/// Starts `exe` with `argv` and `envp` as a child whose descriptors are
/// exactly `fds`, numbered 0, 1, 2, ... in order, and which the kernel kills
/// (SIGKILL) when the stub dies by any path. Returns its pid. A source fd
/// must already have its target number or be numbered above all targets
/// (else an earlier dup could overwrite it): `Errno::INVAL` otherwise. The
/// child exits 125 if it cannot wire its fds, 127 if the exec fails. Call
/// before other threads exist and before the seccomp filter.
pub fn spawn<const A: usize, const E: usize>(
    exe: &CStr,
    argv: &CStrVec<'_, A>,
    envp: &CStrVec<'_, E>,
    fds: &[BorrowedFd<'_>],
) -> Result<i32, Errno> {
    let placeable = fds.iter().enumerate().all(|(target, fd)| {
        let raw = usize::try_from(fd.as_raw_fd()).unwrap_or(0);
        raw == target || raw >= fds.len()
    });
    if !placeable {
        return Err(Errno::INVAL);
    }
    let parent = rustix::process::getpid();
    // SAFETY: the child branch only makes system calls (child_exec), then execs or exits.
    match unsafe { fork() }? {
        Forked::Parent { pid } => Ok(pid),
        Forked::Child => child_exec(exe, argv, envp, fds, parent),
    }
}

/// The child's side of [`spawn`].
fn child_exec<const A: usize, const E: usize>(
    exe: &CStr,
    argv: &CStrVec<'_, A>,
    envp: &CStrVec<'_, E>,
    fds: &[BorrowedFd<'_>],
    parent: rustix::process::Pid,
) -> ! {
    use rustix::process::{getppid, set_parent_process_death_signal, Signal};
    // A stub that died before the death signal was armed is not our parent any more.
    if set_parent_process_death_signal(Some(Signal::KILL)).is_err() || getppid() != Some(parent) {
        exit_child(125);
    }
    for (target, fd) in fds.iter().enumerate() {
        // An fd already at its number (the stub's stdio) is inherited as it is.
        let in_place = usize::try_from(fd.as_raw_fd()).is_ok_and(|raw| raw == target);
        if !in_place && child_dup_to(*fd, target).is_err() {
            exit_child(125);
        }
    }
    super::process::close_range(u32::try_from(fds.len()).unwrap_or(u32::MAX), u32::MAX);
    let _ = execve(exe, argv, envp);
    exit_child(127)
}

/// Which side of a [`fork`] we are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forked {
    Child,
    Parent { pid: i32 },
}

/// `fork(2)`: a copy of this process (only the calling thread), reported to
/// the parent by SIGCHLD, which the stub leaves at its default (the zombie
/// stays until the stub exits).
///
/// # Safety
/// The child must only make system calls and then [`execve`] or
/// [`exit_child`]: other threads' state (none hold locks in the stub) is
/// copied mid-flight. Call before the seccomp filter (it forbids this).
unsafe fn fork() -> Result<Forked, Errno> {
    // SAFETY: clone with only an exit signal and no new stack is fork(): each side returns normally from here on its own copy of this stack; no pointer is passed.
    match unsafe { syscall(SYS_CLONE, [SIGCHLD, 0, 0, 0]) }? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent { pid: i32::try_from(pid).unwrap_or(i32::MAX) }),
    }
}

/// A NULL-terminated array of pointers to NUL-terminated strings (argv,
/// envp) for [`execve`], holding at most `N - 1` strings.
pub struct CStrVec<'s, const N: usize> {
    ptrs: [*const u8; N],
    len: usize,
    _strings: core::marker::PhantomData<&'s CStr>,
}

impl<const N: usize> Default for CStrVec<'_, N> {
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
fn execve<const A: usize, const E: usize>(path: &CStr, argv: &CStrVec<'_, A>, envp: &CStrVec<'_, E>) -> Errno {
    let args = [path.as_ptr() as usize, argv.ptrs.as_ptr() as usize, envp.ptrs.as_ptr() as usize, 0];
    // SAFETY: `path` is NUL-terminated; `argv` and `envp` are NULL-terminated pointer arrays (CStrVec keeps its last slot NULL) whose strings outlive the call (the CStrVec borrows them); the kernel only reads them. On success the call does not return.
    match unsafe { syscall(SYS_EXECVE, args) } {
        Err(e) => e,
        Ok(_) => Errno::INVAL,
    }
}

/// `dup3(fd, target, 0)`: `target` becomes a copy of `fd` without
/// close-on-exec, closing what `target` was. Only for a forked child about
/// to [`execve`] (it takes over fd numbers nothing in it uses any more).
fn child_dup_to(fd: BorrowedFd<'_>, target: usize) -> Result<(), Errno> {
    let fd = usize::try_from(fd.as_raw_fd()).map_err(|_| Errno::BADF)?;
    // SAFETY: dup3 takes integers and reads no memory; replacing `target` is what a child about to exec wants (this function's contract): no Rust owner of it runs afterwards.
    unsafe { syscall(SYS_DUP3, [fd, target, 0, 0]) }.map(drop)
}

/// Ends a forked child at once (`exit_group`), touching nothing the
/// parent owns (no terminal restore, unlike `sys::exit`).
fn exit_child(code: u8) -> ! {
    // SAFETY: exit_group takes one integer and never returns.
    let _ = unsafe { syscall(SYS_EXIT_GROUP, [usize::from(code), 0, 0, 0]) };
    // Unreachable: exit_group does not return.
    loop {
        core::hint::spin_loop();
    }
}
