//! The heap: a bump allocator over a zero-initialised static arena (`.bss`:
//! it costs no file size, and pages are only backed once touched). Init
//! allocates a few config-sized buffers once and never runs long, so freeing
//! only the most recent block (which also makes `Vec` growth in place) is
//! enough.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};

/// Two 256 KiB configs and the argv/env built from them fit many times over.
const ARENA_SIZE: usize = 16 << 20;

#[repr(C, align(4096))]
struct Bump {
    arena: UnsafeCell<[u8; ARENA_SIZE]>,
    /// Offset of the first free byte.
    next: Cell<usize>,
}

// SAFETY: init never creates threads (a forked child gets its own copy of
// the arena), so the allocator is never used from two threads at once.
unsafe impl Sync for Bump {}

#[global_allocator]
static HEAP: Bump = Bump { arena: UnsafeCell::new([0; ARENA_SIZE]), next: Cell::new(0) };

impl Bump {
    fn base(&self) -> usize {
        self.arena.get() as usize
    }

    /// Whether `ptr..ptr+size` is the most recent allocation.
    fn is_last(&self, ptr: *mut u8, size: usize) -> bool {
        (ptr as usize).checked_add(size) == self.base().checked_add(self.next.get())
    }
}

// SAFETY: blocks are carved from the arena without overlap: `next` only
// moves back over the most recent block when it is freed or resized, and
// every block is aligned and inside the arena (checked below).
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.base();
        let start = base
            .checked_add(self.next.get())
            .and_then(|p| p.checked_next_multiple_of(layout.align()));
        let Some(start) = start else { return core::ptr::null_mut() };
        let offset = start - base;
        match offset.checked_add(layout.size()) {
            Some(end) if end <= ARENA_SIZE => {
                self.next.set(end);
                // Inside the arena: `offset + size <= ARENA_SIZE`.
                self.arena.get().cast::<u8>().wrapping_add(offset)
            }
            _ => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.is_last(ptr, layout.size()) {
            self.next.set(ptr as usize - self.base());
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let offset = ptr as usize - self.base();
        if self.is_last(ptr, layout.size()) && offset.checked_add(new_size).is_some_and(|end| end <= ARENA_SIZE) {
            self.next.set(offset + new_size);
            return ptr;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: the caller's contract for realloc covers alloc's.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct (the old one is not the last block or the new one would not fit after it) and at least min(old, new) bytes long.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: `ptr` was allocated here with `layout`.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}
