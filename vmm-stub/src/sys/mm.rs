//! Read-only mappings of a file (the image's sections), and giving pages of
//! a mapping back to the host ([`discard`]).

use core::ptr::NonNull;
use rustix::fd::BorrowedFd;
use rustix::io::{self, Errno};
use rustix::mm::{self, MapFlags, ProtFlags};

/// A read-only private mapping of part of a file, unmapped on drop.
pub struct Mapped {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapped {
    /// Maps `len` bytes of `fd` at `offset` (page aligned). The range must
    /// lie inside the file: reading a page past its end raises SIGBUS.
    pub fn new(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<Mapped> {
        let len = usize::try_from(len).map_err(|_| Errno::NOMEM)?;
        if len == 0 {
            return Ok(Mapped { ptr: NonNull::dangling(), len: 0 });
        }
        // SAFETY: a new read-only mapping at a kernel-chosen address aliases nothing; `Mapped` unmaps it on drop.
        let p = unsafe { mm::mmap(core::ptr::null_mut(), len, ProtFlags::READ, MapFlags::PRIVATE, fd, offset)? };
        Ok(Mapped { ptr: NonNull::new(p.cast()).ok_or(Errno::NOMEM)?, len })
    }

    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes for the lifetime of self (a range past the file's end would fault, not read wrong memory).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: the mapping made in `new`; no borrow outlives self.
            let _ = unsafe { mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// `madvise(MADV_DONTNEED)`: the host frees the pages of `[ptr, ptr + len)`
/// now; the next touch reads zeros (or the file's bytes in a private file
/// mapping). The virtio-balloon returns the pages the guest reported free.
///
/// # Safety
/// `[ptr, ptr + len)` is page aligned, lies inside one mapping the caller
/// owns, and no Rust reference into it is alive (its bytes change).
pub unsafe fn discard(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: the caller's contract above: our own memory, no borrow that could see the change.
    unsafe { mm::madvise(ptr.cast(), len, mm::Advice::LinuxDontNeed) }
}
