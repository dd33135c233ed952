//! File descriptors the stub did not open itself: its stdio, and the new
//! descriptors KVM returns as ioctl results.

use rustix::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use rustix::io::{self, Errno};

/// The process's standard input.
pub fn stdin() -> BorrowedFd<'static> {
    // SAFETY: the stub never closes fds 0-2; one that is not open only makes calls on it fail with EBADF, which every caller handles.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// The process's standard output.
pub fn stdout() -> BorrowedFd<'static> {
    // SAFETY: as for stdin, fd 1.
    unsafe { BorrowedFd::borrow_raw(1) }
}

/// The process's standard error.
pub fn stderr() -> BorrowedFd<'static> {
    // SAFETY: as for stdin, fd 2.
    unsafe { BorrowedFd::borrow_raw(2) }
}

/// Takes ownership of `raw`, a descriptor a system call just created (e.g.
/// `KVM_CREATE_VM`'s result). Only for that: nothing else may own it.
pub(super) fn owned_from_new(raw: u32) -> io::Result<OwnedFd> {
    let raw = RawFd::try_from(raw).map_err(|_| Errno::BADF)?;
    // SAFETY: per this function's contract the kernel just returned `raw` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Test builds only (feature `test-hooks`): takes over fd `raw`, which the
/// test that started the stub left open for it (`SMOLVM_TEST_NET_FD`), as
/// a close-on-exec duplicate; `None` if it is not open.
#[cfg(feature = "test-hooks")]
pub fn adopt_inherited(raw: i32) -> Option<OwnedFd> {
    if raw < 3 {
        return None;
    }
    // SAFETY: borrowed only for the fcntl below, which fails harmlessly (EBADF) if `raw` is not open; the stub never closes `raw` itself.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    rustix::io::fcntl_dupfd_cloexec(fd, 0).ok()
}
