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
use rustix::io::{self, Errno};
use crate::sys::ioctl::{arg, arg_ro, raw};

/// The kernel's `struct termios2` (x86_64). Our own rather than rustix's
/// `Termios`, whose `TCGETS` fallback decodes baud rates the stub never
/// looks at (that decoder alone is ~330 bytes of the stub).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Termios2 {
    iflag: u32,
    oflag: u32,
    cflag: u32,
    lflag: u32,
    line: u8,
    cc: [u8; 19],
    ispeed: u32,
    ospeed: u32,
}
static_assertions::const_assert_eq!(core::mem::size_of::<Termios2>(), 44);

const TIOCGWINSZ: u32 = 0x5413;
const TCGETS: u32 = 0x5401;
const TCSETS: u32 = 0x5402;
const TCGETS2: u32 = 0x802c_542a;
const TCSETS2: u32 = 0x402c_542b;
const CBAUD: u32 = 0o010017;
const BOTHER: u32 = 0o010000;

/// `tcgetattr`: `TCGETS2`, or the old `TCGETS` (no speed fields) where a
/// kernel or sandbox refuses it with `ENOTTY`/`EACCES`, as rustix does.
fn get(fd: BorrowedFd<'_>) -> io::Result<Termios2> {
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
fn set(fd: BorrowedFd<'_>, t: &Termios2) -> io::Result<()> {
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

/// `cfmakeraw`, as glibc, musl and rustix do it.
fn make_raw(t: &mut Termios2) {
    // IGNBRK BRKINT PARMRK ISTRIP INLCR IGNCR ICRNL IXON
    t.iflag &= !0o2753;
    t.oflag &= !0o1; // OPOST
    t.lflag &= !0o100113; // ECHO ECHONL ICANON ISIG IEXTEN
    t.cflag = (t.cflag & !0o460) | 0o60; // no CSIZE, PARENB; CS8
    t.cc[6] = 1; // VMIN
    t.cc[5] = 0; // VTIME
}

struct Saved(UnsafeCell<Option<Termios2>>);
// SAFETY: written once by `enter_raw` on the main thread before SAVED_SET is
// published (Release); read only after observing SAVED_SET (Acquire).
unsafe impl Sync for Saved {}

static SAVED: Saved = Saved(UnsafeCell::new(None));
static SAVED_SET: AtomicBool = AtomicBool::new(false);

fn fd(n: i32) -> BorrowedFd<'static> {
    // SAFETY: fds 0/1 are the process's stdio; we never close them, and an fd that is not open only makes the termios calls fail.
    unsafe { BorrowedFd::borrow_raw(n) }
}

/// Window size as `(rows, cols)`.
pub type WinSize = (u16, u16);

/// If stdin and stdout are terminals, switches stdin's terminal to raw
/// mode and returns its size; otherwise returns `None` and changes nothing.
pub fn enter_raw() -> Option<WinSize> {
    let (stdin, stdout) = (fd(0), fd(1));
    if size(stdin).is_none() || size(stdout).is_none() || SAVED_SET.load(Ordering::Acquire) {
        return None;
    }
    let orig = get(stdin).ok()?;
    let mut raw = orig;
    make_raw(&mut raw);
    // SAFETY: single writer (main thread, before SAVED_SET is published), no reader until SAVED_SET is true.
    unsafe { *SAVED.0.get() = Some(orig) };
    SAVED_SET.store(true, Ordering::Release);
    set(stdin, &raw).ok()?;
    Some(window_size().unwrap_or((24, 80)))
}

/// The current size of the terminal on stdin.
pub fn window_size() -> Option<WinSize> {
    size(fd(0))
}

/// `TIOCGWINSZ`: the size of the terminal on `fd`, `None` if it is not one
/// (rustix's `isatty` is this same call).
fn size(fd: BorrowedFd<'_>) -> Option<WinSize> {
    let mut ws = [0u16; 4]; // struct winsize: rows, cols, xpixel, ypixel
    // SAFETY: TIOCGWINSZ writes one struct winsize (four u16) into `ws`.
    unsafe { raw(fd, TIOCGWINSZ, arg(&mut ws)) }.ok()?;
    Some((ws[0], ws[1]))
}

/// Whether the terminal is in raw mode (terminal mode is on).
pub fn is_raw() -> bool {
    SAVED_SET.load(Ordering::Acquire)
}

/// Puts the terminal back as it was. Safe to call from a signal handler
/// and more than once.
pub fn restore() {
    if SAVED_SET.load(Ordering::Acquire) {
        // SAFETY: SAVED was fully written before SAVED_SET became true and is never written again.
        if let Some(t) = unsafe { &*SAVED.0.get() } {
            let _ = set(fd(0), t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;
    use rustix::termios;

    #[test]
    fn raw_mode_matches_rustix_on_a_pty() {
        let pty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/ptmx").expect("ptmx");
        let fd = pty.as_fd();
        let mut orig = get(fd).expect("TCGETS2");
        // Every input/local flag on, so a wrong mask shows.
        orig.iflag |= 0o37777;
        orig.lflag |= 0o177777;
        set(fd, &orig).expect("TCSETS2");
        let theirs = termios::tcgetattr(fd).expect("tcgetattr");
        assert_eq!(orig.cflag, theirs.control_modes.bits());
        assert_eq!(orig.lflag, theirs.local_modes.bits());
        let mut raw = orig;
        make_raw(&mut raw);
        set(fd, &raw).expect("TCSETS2");
        let mut expected = theirs.clone();
        expected.make_raw();
        let now = termios::tcgetattr(fd).expect("tcgetattr");
        assert_eq!(now.input_modes, expected.input_modes);
        assert_eq!(now.output_modes, expected.output_modes);
        assert_eq!(now.local_modes, expected.local_modes);
        assert_eq!(now.control_modes, expected.control_modes);
        use termios::SpecialCodeIndex as I;
        for i in [I::VMIN, I::VTIME, I::VINTR, I::VEOF] {
            assert_eq!(now.special_codes[i], expected.special_codes[i]);
        }
        let mine = get(fd).expect("TCGETS2");
        assert_eq!((mine.cc[6], mine.cc[5]), (1, 0));
        assert_eq!((mine.iflag, mine.cflag), (expected.input_modes.bits(), expected.control_modes.bits()));
        set(fd, &orig).expect("restore");
        assert_eq!(termios::tcgetattr(fd).expect("tcgetattr").local_modes, theirs.local_modes);
    }

    #[test]
    fn not_a_terminal() {
        let f = std::fs::File::open("/proc/self/exe").expect("open");
        assert_eq!(get(f.as_fd()).err(), Some(Errno::NOTTY));
        assert_eq!(size(f.as_fd()), None);
    }

    #[test]
    fn window_size_matches_rustix() {
        let pty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/ptmx").expect("ptmx");
        let ws = termios::tcgetwinsize(pty.as_fd()).expect("tcgetwinsize");
        assert_eq!(size(pty.as_fd()), Some((ws.ws_row, ws.ws_col)));
        assert!(termios::isatty(pty.as_fd()));
    }
}
