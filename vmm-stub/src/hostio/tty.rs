//! The host terminal: raw mode while the VM runs, restored on every exit.
//!
//! Terminal mode is used when both stdin and stdout are terminals: the host
//! terminal goes raw (every key, ^C and ^D included, goes to the guest,
//! whose own line discipline on /dev/hvc0 echoes and turns ^C into SIGINT,
//! as with `ssh -t`), and the window size goes to the guest. Otherwise the
//! host terminal is left alone.
//!
//! [`restore`] is async-signal-safe (one ioctl on saved state) and
//! idempotent: `sys::exit`, the signal handlers and the fatal-signal path
//! call it, so no exit path leaves the terminal raw. Only SIGKILL can.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use rustix::fd::BorrowedFd;
use rustix::termios::{self, OptionalActions, Termios};

struct Saved(UnsafeCell<Option<Termios>>);
// SAFETY: written once by `enter_raw` on the main thread before SAVED_SET is
// published (Release); read only after observing SAVED_SET (Acquire).
unsafe impl Sync for Saved {}

static SAVED: Saved = Saved(UnsafeCell::new(None));
static SAVED_SET: AtomicBool = AtomicBool::new(false);

fn fd(n: i32) -> BorrowedFd<'static> {
    // SAFETY: fds 0/1 are the process's stdio; we never close them, and an
    // fd that is not open only makes the termios calls fail.
    unsafe { BorrowedFd::borrow_raw(n) }
}

/// Window size as `(rows, cols)`.
pub type WinSize = (u16, u16);

/// If stdin and stdout are terminals, switches stdin's terminal to raw
/// mode and returns its size; otherwise returns `None` and changes nothing.
pub fn enter_raw() -> Option<WinSize> {
    let (stdin, stdout) = (fd(0), fd(1));
    if !termios::isatty(stdin) || !termios::isatty(stdout) || SAVED_SET.load(Ordering::Acquire) {
        return None;
    }
    let orig = termios::tcgetattr(stdin).ok()?;
    let mut raw = orig.clone();
    raw.make_raw();
    // SAFETY: single writer (main thread, before SAVED_SET is published), no
    // reader until SAVED_SET is true.
    unsafe { *SAVED.0.get() = Some(orig) };
    SAVED_SET.store(true, Ordering::Release);
    termios::tcsetattr(stdin, OptionalActions::Now, &raw).ok()?;
    Some(window_size().unwrap_or((24, 80)))
}

/// The current size of the terminal on stdin.
pub fn window_size() -> Option<WinSize> {
    let ws = termios::tcgetwinsize(fd(0)).ok()?;
    Some((ws.ws_row, ws.ws_col))
}

/// Whether the terminal is in raw mode (terminal mode is on).
pub fn is_raw() -> bool {
    SAVED_SET.load(Ordering::Acquire)
}

/// Puts the terminal back as it was. Safe to call from a signal handler
/// and more than once.
pub fn restore() {
    if SAVED_SET.load(Ordering::Acquire) {
        // SAFETY: SAVED was fully written before SAVED_SET became true and is
        // never written again.
        if let Some(t) = unsafe { &*SAVED.0.get() } {
            let _ = termios::tcsetattr(fd(0), OptionalActions::Now, t);
        }
    }
}
