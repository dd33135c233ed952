//! An fd kept open for the rest of the process, readable from any thread.

use core::sync::atomic::{AtomicI32, Ordering};
use rustix::fd::{BorrowedFd, IntoRawFd, OwnedFd};

/// Holds an fd that is never closed once set (helper threads poll it).
pub struct StaticFd(AtomicI32);

impl Default for StaticFd {
    fn default() -> Self {
        Self::new()
    }
}

impl StaticFd {
    pub const fn new() -> Self {
        StaticFd(AtomicI32::new(-1))
    }

    /// Keeps `fd` open for the process's life (a second `set` is refused
    /// and closes its argument).
    pub fn set(&self, fd: OwnedFd) -> bool {
        let raw = fd.into_raw_fd();
        if self.0.compare_exchange(-1, raw, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return true;
        }
        // SAFETY: `raw` came from an OwnedFd we just released: we own it and close it once.
        drop(unsafe { <OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(raw) });
        false
    }

    pub fn get(&self) -> Option<BorrowedFd<'static>> {
        let raw = self.0.load(Ordering::Acquire);
        // SAFETY: a non-negative value was stored only by `set`, from an OwnedFd whose ownership was given up: nothing closes it again, so it stays open for the process's life.
        (raw >= 0).then(|| unsafe { BorrowedFd::borrow_raw(raw) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_once_then_borrow() {
        let s = StaticFd::new();
        assert!(s.get().is_none());
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        assert!(s.set(r));
        assert!(!s.set(w));
        assert!(s.get().is_some());
    }
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
