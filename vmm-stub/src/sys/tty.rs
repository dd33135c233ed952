//! The terminal ioctls (`struct termios2` and the window size) and the
//! terminal state saved before raw mode, which [`restore`] puts back: it is
//! async-signal-safe (one ioctl on saved state) and idempotent, and
//! `sys::exit` calls it, so no exit path leaves the terminal raw (only
//! SIGKILL can). The raw-mode policy is `hostio::tty`'s.

use super::cell::WriteOnce;
use super::fd;
use super::ioctl::{arg, arg_ro, raw};
use rustix::fd::BorrowedFd;
use rustix::io::{self, Errno};

/// The kernel's `struct termios2` (x86_64). Our own rather than rustix's
/// `Termios`, whose `TCGETS` fallback decodes baud rates the stub never
/// looks at (that decoder alone is ~330 bytes of the stub).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Termios2 {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    pub cc: [u8; 19],
    pub ispeed: u32,
    pub ospeed: u32,
}
static_assertions::const_assert_eq!(core::mem::size_of::<Termios2>(), 44);

pub const TIOCGWINSZ: u32 = 0x5413;
pub const TCGETS: u32 = 0x5401;
pub const TCSETS: u32 = 0x5402;
pub const TCGETS2: u32 = 0x802c_542a;
pub const TCSETS2: u32 = 0x402c_542b;
const CBAUD: u32 = 0o010017;
const BOTHER: u32 = 0o010000;

/// `tcgetattr`: `TCGETS2`, or the old `TCGETS` (no speed fields) where a
/// kernel or sandbox refuses it with `ENOTTY`/`EACCES`, as rustix does.
pub fn get(fd: BorrowedFd<'_>) -> io::Result<Termios2> {
    let mut t = Termios2::default();
    // SAFETY: TCGETS2 writes one termios2 into `t`.
    match unsafe { raw(fd, TCGETS2, arg(&mut t)) } {
        Err(Errno::NOTTY | Errno::ACCESS) => {
            // SAFETY: TCGETS writes a struct termios, the first 36 bytes of `t`.
            unsafe { raw(fd, TCGETS, arg(&mut t)) }?
        }
        r => r?,
    };
    Ok(t)
}

/// `tcsetattr(TCSANOW)`: `TCSETS2`, or `TCSETS` as in [`get`] (refused
/// with `ERANGE` for a custom speed, which `TCSETS` cannot carry).
pub fn set(fd: BorrowedFd<'_>, t: &Termios2) -> io::Result<()> {
    // SAFETY: TCSETS2 reads one termios2.
    match unsafe { raw(fd, TCSETS2, arg_ro(t)) } {
        Err(Errno::NOTTY | Errno::ACCESS) => {
            if t.cflag & CBAUD == BOTHER || (t.cflag >> 16) & CBAUD == BOTHER {
                return Err(Errno::RANGE);
            }
            // SAFETY: TCSETS reads a struct termios, a prefix of `t`.
            unsafe { raw(fd, TCSETS, arg_ro(t)) }.map(drop)
        }
        r => r.map(drop),
    }
}

/// `TIOCGWINSZ`: the size of the terminal on `fd` as `(rows, cols)`, `None`
/// if it is not one (rustix's `isatty` is this same call).
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = [0u16; 4]; // struct winsize: rows, cols, xpixel, ypixel
    // SAFETY: TIOCGWINSZ writes one struct winsize (four u16) into `ws`.
    unsafe { raw(fd, TIOCGWINSZ, arg(&mut ws)) }.ok()?;
    Some((ws[0], ws[1]))
}

/// Stdin's terminal state before raw mode.
static SAVED: WriteOnce<Termios2> = WriteOnce::new();

/// Saves `t` as the state [`restore`] puts back on stdin. Only the first
/// call counts; returns whether this one did.
pub fn save_for_restore(t: Termios2) -> bool {
    SAVED.set(t)
}

/// Whether a state to restore was saved (the terminal went raw).
pub fn has_saved() -> bool {
    SAVED.is_set()
}

/// Puts stdin's terminal back as saved. Safe to call from a signal handler
/// and more than once.
pub fn restore() {
    if let Some(t) = SAVED.get() {
        let _ = set(fd::stdin(), t);
    }
}
