//! Statics the stub writes once: [`WriteOnce`] (set once, then read from
//! anywhere, signal handlers included) and [`TakeOnce`] (one `&'static mut`
//! handed out, ever). The only places a static is written through a shared
//! reference.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const SET: u8 = 2;

/// A value stored at most once and read after that without locks
/// (async-signal-safe: a reader sees either nothing or the whole value).
pub struct WriteOnce<T> {
    value: UnsafeCell<Option<T>>,
    state: AtomicU8,
}

// SAFETY: `value` is written once, by the caller that moved `state` from EMPTY to WRITING, before `state` becomes SET (Release); readers touch it only after seeing SET (Acquire), and nothing writes it after that. T: Sync + Send because the value is shared across threads and may be set from any.
unsafe impl<T: Sync + Send> Sync for WriteOnce<T> {}

impl<T> WriteOnce<T> {
    pub const fn new() -> Self {
        WriteOnce { value: UnsafeCell::new(None), state: AtomicU8::new(EMPTY) }
    }

    /// Stores `v` unless a value was stored (or is being stored) before;
    /// returns whether it was.
    pub fn set(&self, v: T) -> bool {
        if self.state.compare_exchange(EMPTY, WRITING, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return false;
        }
        // SAFETY: the exchange above admits one writer, ever, and no reader looks before SET.
        unsafe { *self.value.get() = Some(v) };
        self.state.store(SET, Ordering::Release);
        true
    }

    /// The value, once stored.
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) != SET {
            return None;
        }
        // SAFETY: SET is published after the only write, and nothing writes the value again.
        unsafe { (*self.value.get()).as_ref() }
    }

    /// Whether a value was stored (or is being stored).
    pub fn is_set(&self) -> bool {
        self.state.load(Ordering::Acquire) != EMPTY
    }
}

impl<T> Default for WriteOnce<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A static whose one `&'static mut` is handed out by [`TakeOnce::take`]
/// (large state that should live in .bss rather than on the stack).
pub struct TakeOnce<T> {
    value: UnsafeCell<T>,
    taken: AtomicBool,
}

// SAFETY: the only access to `value` is the one `&mut` that `take` hands out once (`taken`), so the cell is never shared. No `T: Send` bound: the value is built at compile time, not on some thread, and the `&mut T` stays on the thread that took it unless T is Send.
unsafe impl<T> Sync for TakeOnce<T> {}

impl<T> TakeOnce<T> {
    pub const fn new(value: T) -> Self {
        TakeOnce { value: UnsafeCell::new(value), taken: AtomicBool::new(false) }
    }

    /// The value, the first time; `None` after that.
    #[allow(clippy::mut_from_ref)] // one reference ever: `taken`
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
    fn write_once_keeps_the_first_value() {
        static W: WriteOnce<u32> = WriteOnce::new();
        assert_eq!((W.get(), W.is_set()), (None, false));
        assert!(W.set(7));
        assert!(!W.set(8));
        assert_eq!((W.get(), W.is_set()), (Some(&7), true));
    }

    #[test]
    fn take_once_hands_out_one_reference() {
        static T: TakeOnce<[u8; 4]> = TakeOnce::new([0; 4]);
        let a = T.take().expect("first");
        a[0] = 1;
        assert!(T.take().is_none());
        assert_eq!(a[0], 1);
    }
}
