//! Init's own output: one-line messages on stderr, and the debug log (each
//! step with a CLOCK_MONOTONIC timestamp). No `core::fmt`: it would be most
//! of the binary.

use crate::sys;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use rustix::io::Errno;

static DEBUG: AtomicBool = AtomicBool::new(false);

/// Turns the debug log on (it is off by default: init is silent).
pub fn enable_debug() {
    DEBUG.store(true, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// One message line, built piece by piece and written with one `write`.
pub struct Line(Vec<u8>);

impl Line {
    /// A line starting with `smolvm: `.
    pub fn new() -> Line {
        Line(Vec::from(*b"smolvm: "))
    }

    /// Adds text.
    pub fn s(mut self, text: &str) -> Line {
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    /// Adds guest- or user-supplied bytes (a path, an argument), escaping
    /// control bytes so the message stays on one line.
    pub fn b(mut self, bytes: &[u8]) -> Line {
        for &c in bytes {
            if c < 0x20 || c == 0x7f {
                self.0.extend_from_slice(b"\\x");
                self.0.push(HEX[usize::from(c >> 4)]);
                self.0.push(HEX[usize::from(c & 15)]);
            } else {
                self.0.push(c);
            }
        }
        self
    }

    /// Adds a decimal number.
    pub fn n(mut self, value: u64) -> Line {
        push_decimal(&mut self.0, value, 1);
        self
    }

    /// Adds a description of `err`.
    pub fn e(self, err: Errno) -> Line {
        match describe(err) {
            Some(text) => self.s(text),
            None => self.s("error ").n(u64::from(err.raw_os_error().unsigned_abs())),
        }
    }

    /// The finished line, newline included.
    pub fn bytes(mut self) -> Vec<u8> {
        self.0.push(b'\n');
        self.0
    }

    /// Writes the line to stderr.
    pub fn print(self) {
        write_all_stderr(&self.bytes());
    }

    /// Writes the line to stderr with a timestamp, if the debug log is on.
    pub fn debug(self) {
        if debug_enabled() {
            self.debug_at(sys::monotonic_ns());
        }
    }

    /// Writes the line to stderr with the timestamp `ns`, if the debug log is on.
    pub fn debug_at(self, ns: u64) {
        if debug_enabled() {
            let mut out = Vec::from(*b"smolvm: [");
            push_timestamp(&mut out, ns);
            out.extend_from_slice(b"] ");
            out.extend_from_slice(&self.0[b"smolvm: ".len()..]);
            out.push(b'\n');
            write_all_stderr(&out);
        }
    }
}

impl Default for Line {
    fn default() -> Self {
        Line::new()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Decimal digits of `value`, at least `width` of them (zero padded).
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut n = 0;
    while value > 0 || n < width {
        digits[n] = b'0' + u8::try_from(value % 10).unwrap_or(0);
        value /= 10;
        n += 1;
        if n == digits.len() {
            break;
        }
    }
    out.extend(digits[..n].iter().rev());
}

/// `seconds.micros`, like the kernel log: `   1.234567`.
fn push_timestamp(out: &mut Vec<u8>, ns: u64) {
    let secs = ns / 1_000_000_000;
    if secs < 10_000 {
        out.extend_from_slice(&b"    "[..4 - decimal_len(secs)]);
    }
    push_decimal(out, secs, 1);
    out.push(b'.');
    push_decimal(out, ns % 1_000_000_000 / 1000, 6);
}

fn decimal_len(mut value: u64) -> usize {
    let mut n = 1;
    while value >= 10 {
        value /= 10;
        n += 1;
    }
    n
}

/// Writes all of `bytes` to stderr (what cannot be written is dropped).
pub fn write_stderr(bytes: &[u8]) {
    write_all_stderr(bytes);
}

fn write_all_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match rustix::io::write(sys::stderr(), bytes) {
            Ok(0) => return,
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

/// strerror for the errors init can meet.
fn describe(err: Errno) -> Option<&'static str> {
    Some(match err {
        Errno::PERM => "operation not permitted",
        Errno::NOENT => "no such file or directory",
        Errno::IO => "input/output error",
        Errno::NOEXEC => "exec format error",
        Errno::NOMEM => "out of memory",
        Errno::ACCESS => "permission denied",
        Errno::BUSY => "device or resource busy",
        Errno::EXIST => "file exists",
        Errno::NODEV => "no such device",
        Errno::NOTDIR => "not a directory",
        Errno::ISDIR => "is a directory",
        Errno::INVAL => "invalid argument",
        Errno::TXTBSY => "text file busy",
        Errno::NOSPC => "no space left on device",
        Errno::ROFS => "read-only file system",
        Errno::TOOBIG => "argument list too long",
        Errno::NAMETOOLONG => "file name too long",
        Errno::LOOP => "too many levels of symbolic links",
        Errno::NXIO => "no such device or address",
        Errno::LIBBAD => "accessing a corrupted shared library",
        Errno::FBIG => "file too large",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_single_lines_with_escaped_control_bytes() {
        let line = Line::new().s("x ").b(b"a\nb\x7f").s(" ").n(0).s(" ").n(1234).bytes();
        assert_eq!(line, b"smolvm: x a\\x0ab\\x7f 0 1234\n");
    }

    #[test]
    fn errno_descriptions() {
        assert_eq!(Line::new().e(Errno::NOENT).bytes(), b"smolvm: no such file or directory\n");
        assert_eq!(Line::new().e(Errno::XDEV).bytes(), b"smolvm: error 18\n");
    }

    #[test]
    fn timestamps_look_like_the_kernel_log() {
        let mut out = Vec::new();
        push_timestamp(&mut out, 1_234_567_890);
        assert_eq!(out, b"   1.234567");
        out.clear();
        push_timestamp(&mut out, 12_000_001_000);
        assert_eq!(out, b"  12.000001");
    }
}
