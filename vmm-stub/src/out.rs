//! Output to the host: whole-buffer writes to stdout/stderr and one-line
//! `smolvm: ...` messages built without `core::fmt` (it costs kilobytes).

use core::sync::atomic::{AtomicBool, Ordering};
use linker::abi::status::SMOLVM_FAILED;
use rustix::fd::BorrowedFd;
use rustix::io::{self, Errno};

pub use crate::sys::fd::{stderr, stdin, stdout};

/// Writes all of `bytes`, retrying short writes and EINTR.
pub fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match io::write(fd, bytes) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => bytes = bytes.get(n..).unwrap_or(&[]),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `--smolvm-log=debug`: the stub notes its steps on stderr.
static DEBUG: AtomicBool = AtomicBool::new(false);

/// Turns the debug notes on (once options are parsed).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// Whether debug notes are on.
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// A message line: `smolvm: ` + parts + `\n`, truncated at 256 bytes.
/// Built in place (`&mut self` methods: moving the 264-byte value at every
/// step costs the stub hundreds of bytes of copies).
pub struct Line {
    buf: heapless::Vec<u8, 256>,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    pub fn new() -> Line {
        let mut l = Line { buf: heapless::Vec::new() };
        l.push(b"smolvm: ");
        l
    }

    /// A debug note: `smolvm: debug: ` + parts (emit it only when
    /// [`debug_enabled`]).
    pub fn debug() -> Line {
        let mut l = Line::new();
        l.push(b"debug: ");
        l
    }

    /// A line without the `smolvm: ` prefix.
    pub fn bare() -> Line {
        Line { buf: heapless::Vec::new() }
    }

    fn push(&mut self, b: &[u8]) {
        for &c in b {
            if self.buf.push(c).is_err() {
                break;
            }
        }
    }

    pub fn s(&mut self, s: &str) -> &mut Line {
        self.push(s.as_bytes());
        self
    }

    /// Bytes from the user or the image: control characters become `?`
    /// (a newline would split the one-line message; an escape sequence
    /// in a hostile image's manifest would reach the terminal).
    pub fn b(&mut self, b: &[u8]) -> &mut Line {
        for &c in b {
            if self.buf.push(if c < b' ' || c == 0x7f { b'?' } else { c }).is_err() {
                break;
            }
        }
        self
    }

    /// Decimal.
    /// An IPv4 address as `a.b.c.d`.
    pub fn ipv4(&mut self, ip: [u8; 4]) -> &mut Line {
        let [a, b, c, d] = ip;
        self.u(a.into()).s(".").u(b.into()).s(".").u(c.into()).s(".").u(d.into())
    }

    pub fn u(&mut self, mut v: u64) -> &mut Line {
        let mut digits = [0u8; 20];
        let mut start = 0;
        for i in (0..digits.len()).rev() {
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                start = i;
                break;
            }
        }
        self.push(digits.get(start..).unwrap_or(&[]));
        self
    }

    /// `0x`-prefixed hexadecimal.
    pub fn x(&mut self, v: u64) -> &mut Line {
        self.push(b"0x");
        let mut started = false;
        for shift in (0..16).rev() {
            let d = ((v >> (shift * 4)) & 0xf) as u8;
            if d != 0 || started || shift == 0 {
                started = true;
                self.push(&[b"0123456789abcdef"[usize::from(d)]]);
            }
        }
        self
    }

    /// ` (errno N` (the caller closes the parenthesis).
    pub fn errno(&mut self, e: Errno) -> &mut Line {
        self.s(" (errno ").u(u64::from(e.raw_os_error().unsigned_abs()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Writes the line (with `\n`) to stderr.
    pub fn emit(&mut self) {
        if self.buf.last() != Some(&b'\n') {
            if self.buf.is_full() {
                self.buf.pop();
            }
            let _ = self.buf.push(b'\n');
        }
        let _ = write_all(stderr(), &self.buf);
    }

    /// Writes the line to stdout (for `--smolvm-info`/`--smolvm-help`).
    pub fn print(&mut self) {
        if self.buf.is_full() {
            self.buf.pop();
        }
        let _ = self.buf.push(b'\n');
        let _ = write_all(stdout(), &self.buf);
    }

    /// Writes the line and exits with status 125 (smolvm failed).
    pub fn fail(&mut self) -> ! {
        self.emit();
        crate::sys::exit(SMOLVM_FAILED)
    }
}

/// Prints the one-line message of `msg` and exits 125.
pub fn fail(msg: &str) -> ! {
    Line::new().s(msg).fail()
}

/// Prints `msg (errno N)` and exits 125.
pub fn fail_errno(msg: &str, e: Errno) -> ! {
    Line::new().s(msg).errno(e).s(")").fail()
}

/// The panic handler's line: where the stub failed, then status 125.
pub fn panic_line(location: Option<(&str, u32)>) -> ! {
    let mut l = Line::new();
    l.s("internal error (please report)");
    if let Some((file, line)) = location {
        l.s(" at ").s(file).s(":").u(u64::from(line));
    }
    l.fail()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_like_fmt() {
        for v in [0u64, 7, 10, 255, 4096, u64::MAX] {
            let mut l = Line::bare();
            l.u(v).s(" ").x(v);
            assert_eq!(l.as_bytes(), std::format!("{v} {v:#x}").as_bytes());
        }
    }

    #[test]
    fn control_characters_in_user_bytes_become_question_marks() {
        let mut l = Line::new();
        l.s("bad value in ").b(b"--smolvm-mem=1\nx\x1b]0;t\x07\x7f\t\xc3\xa9");
        assert_eq!(l.as_bytes(), "smolvm: bad value in --smolvm-mem=1?x?]0;t???\u{e9}".as_bytes());
    }

    #[test]
    fn errno_suffix() {
        let mut l = Line::new();
        l.s("cannot open /dev/kvm").errno(Errno::ACCESS).s(")");
        assert_eq!(l.as_bytes(), b"smolvm: cannot open /dev/kvm (errno 13)");
    }

    #[test]
    fn long_lines_are_truncated_not_overflowed() {
        let mut l = Line::new();
        l.b(&[b'a'; 400]);
        assert_eq!(l.as_bytes().len(), 256);
    }
}
