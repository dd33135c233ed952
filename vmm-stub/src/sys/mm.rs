//! Read-only mappings of a file (the image's sections), anonymous memory
//! ([`Anon`]: guest RAM, the 9p bounce buffers), and giving pages of a
//! mapping back to the host ([`discard`]).

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

/// Private anonymous read-write memory, zeroed, unmapped on drop unless
/// [`Anon::keep`] was called. `MAP_NORESERVE`: untouched pages cost nothing.
pub struct Anon {
    ptr: NonNull<u8>,
    len: usize,
    kept: bool,
}

impl Anon {
    /// `len` bytes (rounded up to whole pages, not 0) starting on an `align`
    /// boundary (a power of two, at least a page).
    pub fn new(len: usize, align: usize) -> io::Result<Anon> {
        let len = len.checked_next_multiple_of(4096).filter(|&l| l != 0).ok_or(Errno::INVAL)?;
        let extra = align.checked_sub(4096).filter(|_| align.is_power_of_two()).ok_or(Errno::INVAL)?;
        let span = len.checked_add(extra).ok_or(Errno::NOMEM)?;
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses aliases nothing; `Anon` owns it.
        let ptr = unsafe {
            mm::mmap_anonymous(core::ptr::null_mut(), span, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE | MapFlags::NORESERVE)?
        };
        let head = (ptr as usize).next_multiple_of(align) - ptr as usize;
        let ptr = ptr.cast::<u8>();
        // SAFETY: `[ptr, ptr + head)` and `[ptr + head + len, ptr + span)` are the two ends of the fresh mapping that `Anon` will not use (head <= extra, so head + len <= span).
        unsafe {
            let _ = mm::munmap(ptr.cast(), head);
            let _ = mm::munmap(ptr.add(head + len).cast(), span - head - len);
        }
        // SAFETY: head <= extra, so `ptr + head` stays inside the mapping.
        let ptr = NonNull::new(unsafe { ptr.add(head) }).ok_or(Errno::NOMEM)?;
        Ok(Anon { ptr, len, kept: false })
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole mapping, for memory the process alone uses (never guest
    /// RAM: the guest writes that concurrently, see `mem.rs`).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` maps `len` writable bytes for the lifetime of self, and `&mut self` makes this the only borrow of them.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Keeps the mapping for the rest of the process, even after `self` is
    /// dropped (a VM's memory slot points into it).
    pub fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        if !self.kept {
            // SAFETY: the mapping made in `new`; no borrow outlives self (`bytes_mut` borrows self).
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
