//! Installing a seccomp filter (`seccomp(2)`, which rustix does not wrap).
//! The filter program itself is `crate::seccomp`'s.

use super::syscall::{syscall, SYS_SECCOMP};
use rustix::io::Errno;

/// One classic-BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

const SECCOMP_SET_MODE_FILTER: usize = 1;
const SECCOMP_FILTER_FLAG_TSYNC: usize = 1;

/// `PR_SET_NO_NEW_PRIVS`, then `program` on every thread of the process
/// (TSYNC); tasks cloned later inherit it. `AGAIN` if a thread could not
/// be synchronised.
pub fn install_filter(program: &[SockFilter]) -> Result<(), Errno> {
    rustix::thread::set_no_new_privs(true)?;
    let prog = SockFprog { len: u16::try_from(program.len()).map_err(|_| Errno::INVAL)?, filter: program.as_ptr() };
    // SAFETY: seccomp(2) reads `prog` and the instructions it points to, both alive for the call; it writes no memory.
    let ret = unsafe {
        syscall(SYS_SECCOMP, [SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog as *const SockFprog as usize, 0])
    }?;
    if ret == 0 { Ok(()) } else { Err(Errno::AGAIN) }
}
