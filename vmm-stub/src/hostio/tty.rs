//! The host terminal: raw mode while the VM runs, restored on every exit.
//!
//! Terminal mode is used when both stdin and stdout are terminals: the host
//! terminal goes raw (every key, ^C and ^D included, goes to the guest,
//! whose own line discipline on /dev/hvc0 echoes and turns ^C into SIGINT,
//! as with `ssh -t`), and the window size goes to the guest. Otherwise the
//! host terminal is left alone.
//!
//! The saved state and its restore on every exit path are in `sys::tty`.

use crate::sys::fd;
use crate::sys::tty::{self as sys_tty, Termios2};

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

/// Window size as `(rows, cols)`.
pub type WinSize = (u16, u16);

/// If stdin and stdout are terminals, switches stdin's terminal to raw
/// mode and returns its size; otherwise returns `None` and changes nothing.
pub fn enter_raw() -> Option<WinSize> {
    let (stdin, stdout) = (fd::stdin(), fd::stdout());
    if sys_tty::window_size(stdin).is_none() || sys_tty::window_size(stdout).is_none() || sys_tty::has_saved() {
        return None;
    }
    let orig = sys_tty::get(stdin).ok()?;
    let mut raw = orig;
    make_raw(&mut raw);
    if !sys_tty::save_for_restore(orig) {
        return None;
    }
    sys_tty::set(stdin, &raw).ok()?;
    Some(window_size().unwrap_or((24, 80)))
}

/// The current size of the terminal on stdin.
pub fn window_size() -> Option<WinSize> {
    sys_tty::window_size(fd::stdin())
}

/// Whether the terminal is in raw mode (terminal mode is on).
pub fn is_raw() -> bool {
    sys_tty::has_saved()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::tty::{get, set, window_size as size};
    use rustix::fd::AsFd;
    use rustix::io::Errno;
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
