//! Static storage handed out once as `&'static mut`: large device state
//! (network buffers) lives in .bss, whose pages cost nothing until used,
//! instead of on the stack, where a frame that large is probed page by page.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

pub struct TakeOnce<T> {
    value: UnsafeCell<T>,
    taken: AtomicBool,
}

// SAFETY: the value is reachable only through `take`, which hands out one `&mut` ever (the atomic swap lets one caller through), so it is never shared between threads; moving that `&mut` to another thread needs `T: Send`.
unsafe impl<T: Send> Sync for TakeOnce<T> {}

impl<T> TakeOnce<T> {
    pub const fn new(value: T) -> Self {
        TakeOnce { value: UnsafeCell::new(value), taken: AtomicBool::new(false) }
    }

    /// The value, the first time; `None` after.
    pub fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the swap above lets exactly one caller past, so this is the only reference to the value ever made.
        Some(unsafe { &mut *self.value.get() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_one_reference() {
        static CELL: TakeOnce<[u8; 4]> = TakeOnce::new([0; 4]);
        let a = CELL.take().expect("first");
        a[0] = 1;
        assert!(CELL.take().is_none());
    }
}
