//! The app's stdio and the host's control channel. Init makes its own fds
//! 0/1/2 the app's (the child inherits them): stdin+stdout on hvc0, stderr on
//! hvc1, or /dev/console for all three when there are no virtio consoles.

use crate::out::Line;
use crate::sys;
use crate::plan::TtySize;
use linker::abi;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::termios::{tcgetattr, tcsetattr, tcsetwinsize, OptionalActions, Winsize};

fn open(path: &str, flags: OFlags) -> Option<OwnedFd> {
    rustix::fs::open(path, flags | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty()).ok()
}

/// Makes sure fds 0-2 are open (on /dev/null if the kernel could not open
/// the console), so later descriptors never land on them.
pub fn fill_std_fds() {
    for fd in 0..3 {
        if !sys::fd_is_open(fd) {
            // open() takes the lowest free number, which is `fd`; keep it open.
            if let Ok(null) = rustix::fs::open("/dev/null", OFlags::RDWR, Mode::empty()) {
                core::mem::forget(null);
            }
        }
    }
}

/// Puts fds 0-2 on the app's streams; returns whether stderr is a port of
/// its own (hvc1).
pub fn open_stdio() -> bool {
    let stdio = open(abi::GUEST_STDIO_TTY, OFlags::RDWR);
    let separate_stderr = stdio.is_some();
    let stdio = stdio.or_else(|| open("/dev/console", OFlags::RDWR));
    let stderr = if separate_stderr { open(abi::GUEST_STDERR_TTY, OFlags::WRONLY) } else { None };
    let has_stderr_port = stderr.is_some();
    if let Some(stdio) = &stdio {
        let _ = rustix::stdio::dup2_stdin(stdio);
        let _ = rustix::stdio::dup2_stdout(stdio);
        let _ = rustix::stdio::dup2_stderr(stderr.as_ref().unwrap_or(stdio));
    }
    Line::new().s(if separate_stderr { "stdio on hvc0" } else { "stdio on /dev/console" })
        .s(if has_stderr_port { ", stderr on hvc1" } else { "" })
        .debug();
    has_stderr_port
}

/// Terminal modes: with a host terminal (`tty`), the guest side does the
/// line discipline (echo, ^C, CR/LF) and learns the window size; otherwise
/// the ports are raw so bytes pass unchanged in both directions.
pub fn set_modes(tty: Option<TtySize>, stderr_port: bool) {
    let stdin = sys::stdin();
    match tty {
        Some(size) => {
            let winsize = Winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
            let _ = tcsetwinsize(stdin, winsize);
        }
        None => {
            make_raw(stdin);
            if stderr_port {
                make_raw(sys::stderr());
            }
            // Outside terminal mode the app's stdin is the control device's
            // stdin port: binary safe, and `read` returns end-of-file where
            // host stdin ended (abi::GUEST_STDIN_PORT). hvc0 stays stdout.
            let port = if legacy_control() { None } else { open_port(abi::GUEST_STDIN_PORT, OFlags::RDONLY) };
            if let Some(port) = port {
                let _ = rustix::stdio::dup2_stdin(&port);
                Line::new().s("stdin on ").s(abi::GUEST_STDIN_PORT).debug();
            }
        }
    }
}

fn make_raw(fd: impl AsFd) {
    if let Ok(mut termios) = tcgetattr(&fd) {
        termios.make_raw();
        let _ = tcsetattr(&fd, OptionalActions::Now, &termios);
    }
}

/// A single-port console as the control channel (`/dev/hvc2`, QEMU test
/// harnesses): then there is no stdin port and no waiting for ports.
const LEGACY_CONTROL_TTY: &str = "/dev/hvc2";

fn legacy_control() -> bool {
    rustix::fs::access(LEGACY_CONTROL_TTY, rustix::fs::Access::EXISTS).is_ok()
}

/// Opens a port of the multiport control device. Its ports appear a little
/// after the device probes (the host answers the driver's DEVICE_READY; a
/// kernel worker then creates them), so wait up to ~1 s for the node.
fn open_port(path: &str, flags: OFlags) -> Option<OwnedFd> {
    let tick = rustix::thread::Timespec { tv_sec: 0, tv_nsec: 10_000_000 };
    for _ in 0..100 {
        match rustix::fs::open(path, flags | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => return Some(fd),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NXIO | rustix::io::Errno::NODEV) => {
                let _ = rustix::thread::nanosleep(&tick);
            }
            Err(_) => return None,
        }
    }
    None
}

/// The host → init control channel (port 0 of the control device, a
/// generic virtio port: no tty layer), non-blocking, if present.
pub fn open_control() -> Option<OwnedFd> {
    let (path, fd) = if legacy_control() {
        let fd = open(LEGACY_CONTROL_TTY, OFlags::RDONLY | OFlags::NONBLOCK)?;
        make_raw(&fd);
        (LEGACY_CONTROL_TTY, fd)
    } else {
        (abi::GUEST_CONTROL_TTY, open_port(abi::GUEST_CONTROL_TTY, OFlags::RDONLY | OFlags::NONBLOCK)?)
    };
    Line::new().s("control channel on ").s(path).debug();
    Some(fd)
}

/// The signals asked for in control bytes: each byte `1..=CONTROL_MAX_SIGNAL`
/// is a signal number; anything else is ignored.
pub fn control_signals(bytes: &[u8]) -> impl Iterator<Item = i32> + '_ {
    bytes.iter().filter(|&&b| (1..=abi::CONTROL_MAX_SIGNAL).contains(&b)).map(|&b| i32::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_outside_the_signal_range_are_ignored() {
        let got: std::vec::Vec<i32> = control_signals(&[0, 2, 15, 64, 65, 255, 9]).collect();
        assert_eq!(got, [2, 15, 64, 9]);
    }
}
