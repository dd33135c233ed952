//! [`Lock`]: the one mutex of the stub, a futex word in three states
//! (Drepper, "Futexes are tricky", mutex 2). It serialises every device
//! exit of the vCPU threads (`vmm.rs`). Uncontended, taking and releasing
//! it is one atomic exchange each and no system call.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};
use rustix::thread::futex;

const FREE: u32 = 0;
const TAKEN: u32 = 1;
/// Taken, and a thread may sleep on the word: the release must wake one.
const WAITED: u32 = 2;

/// A value only one thread at a time reaches, through [`Lock::lock`].
pub struct Lock<T> {
    word: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached through a `Guard`, and `lock` hands out one guard at a time (the word leaves FREE only by the exchange of the thread that gets it; Acquire there pairs with the Release in `drop`, so each holder sees the previous holder's writes). As with std's Mutex this would need `T: Send`; it is not asked because the stub's device state is `!Send` only by the compiler's conservative rule for raw pointers and trait objects (guest RAM's mapping, `&mut dyn` devices): the stub is no_std without allocator or thread-locals, so no value of it is tied to the thread that made it.
unsafe impl<T> Sync for Lock<T> {}

impl<T> Lock<T> {
    pub const fn new(value: T) -> Self {
        Lock { word: AtomicU32::new(FREE), value: UnsafeCell::new(value) }
    }

    /// Waits until no other thread holds the value, then holds it until
    /// the guard drops. Not reentrant: a thread that locks twice waits
    /// forever (the stub never does; signal handlers never lock).
    pub fn lock(&self) -> Guard<'_, T> {
        if self.word.compare_exchange(FREE, TAKEN, Ordering::Acquire, Ordering::Relaxed).is_err() {
            // Mark it waited-for, then sleep while it stays so; whoever
            // gets it this way keeps WAITED, so its release wakes the next.
            while self.word.swap(WAITED, Ordering::Acquire) != FREE {
                // EAGAIN (the word changed) or EINTR (a signal): look again.
                let _ = futex::wait(&self.word, futex::Flags::PRIVATE, WAITED, None);
            }
        }
        Guard { lock: self }
    }
}

/// Access to a [`Lock`]'s value; dropping it releases the lock.
pub struct Guard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (see `Sync` above) and lives no longer than the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        if self.lock.word.swap(FREE, Ordering::Release) == WAITED {
            let _ = futex::wake(&self.lock.word, futex::Flags::PRIVATE, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_never_overlap_and_no_update_is_lost() {
        // A non-atomic read-modify-write with a yield inside: any overlap
        // of two holders loses an increment.
        static L: Lock<u64> = Lock::new(0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for i in 0..20_000 {
                        let mut g = L.lock();
                        let v = *g;
                        if i % 1000 == 0 {
                            std::thread::yield_now();
                        }
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        assert_eq!(*L.lock(), 80_000);
        assert_eq!(L.word.load(Ordering::Relaxed), FREE);
    }
}
