//! The app's stdio and the host's control channel. Init makes its own fds
//! 0/1/2 the app's (the child inherits them): stdin+stdout on hvc0, stderr on
//! hvc1, or /dev/console for all three when there are no virtio consoles.

use crate::out::Line;
use crate::sys;
use crate::plan::TtySize;
use linker::abi;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::termios::{tcgetattr, tcsetattr, tcsetwinsize, OptionalActions, Termios, Winsize};

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

/// The app's streams as set up by [`open_stdio`].
pub struct Stdio {
    /// Terminal modes of stdin and of the stderr port before they were made
    /// raw, to give back when the host has a terminal.
    cooked: [Option<Termios>; 2],
}

/// Puts fds 0-2 on the app's streams, raw (so that even init's first
/// message passes unchanged; see [`Stdio::set_modes`]).
pub fn open_stdio() -> Stdio {
    let stdio = open(abi::GUEST_STDIO_TTY, OFlags::RDWR);
    let on_hvc = stdio.is_some();
    let stdio = stdio.or_else(|| open("/dev/console", OFlags::RDWR));
    let stderr = if on_hvc { open(abi::GUEST_STDERR_TTY, OFlags::WRONLY) } else { None };
    if let Some(stdio) = &stdio {
        let _ = rustix::stdio::dup2_stdin(stdio);
        let _ = rustix::stdio::dup2_stdout(stdio);
        let _ = rustix::stdio::dup2_stderr(stderr.as_ref().unwrap_or(stdio));
    }
    let cooked = [make_raw(sys::stdin()), if stderr.is_some() { make_raw(sys::stderr()) } else { None }];
    Line::new()
        .s(if on_hvc { "stdio on hvc0" } else { "stdio on /dev/console" })
        .s(if stderr.is_some() { ", stderr on hvc1" } else { "" })
        .debug();
    Stdio { cooked }
}

impl Stdio {
    /// With a host terminal (`tty`), the guest side does the line
    /// discipline (echo, ^C, CR/LF) and learns the window size. Otherwise,
    /// as under `docker run` without `-t`, no stream is a terminal: stdin,
    /// stdout and stderr move to the control device's generic ports (binary
    /// safe; stdin's `read` returns end-of-file where host stdin ended:
    /// abi::GUEST_STDIN_PORT), or stay on the raw hvc consoles without it.
    /// stdout and stderr move only when the host says it serves them
    /// (`stdio_ports`: a harness without those ports costs no wait).
    pub fn set_modes(&self, tty: Option<TtySize>, stdio_ports: bool) {
        let Some(size) = tty else {
            if multiport_control_device() {
                move_to_port(abi::GUEST_STDIN_PORT, OFlags::RDONLY, 0);
                if stdio_ports {
                    move_to_port(abi::GUEST_STDOUT_PORT, OFlags::WRONLY, 1);
                    move_to_port(abi::GUEST_STDERR_PORT, OFlags::WRONLY, 2);
                }
            }
            return;
        };
        for (fd, cooked) in [sys::stdin(), sys::stderr()].into_iter().zip(&self.cooked) {
            if let Some(termios) = cooked {
                let _ = tcsetattr(fd, OptionalActions::Now, termios);
            }
        }
        let winsize = Winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
        let _ = tcsetwinsize(sys::stdin(), winsize);
    }
}

/// Puts std fd `fd` (0, 1 or 2) on a port of the control device; it stays
/// on its console if the port does not appear.
fn move_to_port(path: &str, flags: OFlags, fd: u8) {
    let Some(port) = open_port(path, flags) else {
        Line::new().s("no ").s(path).s("; fd ").n(u64::from(fd)).s(" stays on its console").debug();
        return;
    };
    let _ = match fd {
        0 => rustix::stdio::dup2_stdin(&port),
        1 => rustix::stdio::dup2_stdout(&port),
        _ => rustix::stdio::dup2_stderr(&port),
    };
    Line::new().s("fd ").n(u64::from(fd)).s(" on ").s(path).debug();
}

/// Makes a terminal raw; returns its previous modes (None if not a terminal).
fn make_raw(fd: impl AsFd) -> Option<Termios> {
    let cooked = tcgetattr(&fd).ok()?;
    let mut raw = cooked.clone();
    raw.make_raw();
    tcsetattr(&fd, OptionalActions::Now, &raw).ok()?;
    Some(cooked)
}

/// Test harnesses (QEMU) may give the control channel as a third console,
/// `/dev/hvc2`; then there is no stdin port. (The node exists whenever any
/// hvc console does; only opening it tells whether a port backs it.)
const LEGACY_CONTROL_TTY: &str = "/dev/hvc2";

/// Whether the control slot holds a multiport virtio-console (the stub's
/// control device): virtio device 2 is a console (id 3) with feature bit 1
/// (VIRTIO_CONSOLE_F_MULTIPORT) negotiated.
fn multiport_control_device() -> bool {
    let read = |path: &str, buf: &mut [u8]| -> usize {
        let Ok(fd) = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else { return 0 };
        rustix::io::read(&fd, buf).unwrap_or(0)
    };
    let mut id = [0u8; 8];
    let mut features = [0u8; 4];
    let id_len = read("/sys/bus/virtio/devices/virtio2/device", &mut id);
    let features_len = read("/sys/bus/virtio/devices/virtio2/features", &mut features);
    id[..id_len].starts_with(b"0x0003") && features_len > 1 && features[1] == b'1'
}

/// Opens a port of the multiport control device. Its ports appear a little
/// after the device probes (the host answers the driver's DEVICE_READY; a
/// kernel worker then creates them, which takes seconds when the guest
/// kernel is emulated, as in the KVM lab), so wait up to ~10 s for the node
/// (only called once the multiport device is known to be there).
fn open_port(path: &str, flags: OFlags) -> Option<OwnedFd> {
    let tick = rustix::thread::Timespec { tv_sec: 0, tv_nsec: 10_000_000 };
    for _ in 0..1000 {
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

/// The host → init control channel, non-blocking, if present: port 1 of
/// the control device (a generic virtio port: no tty layer), or a third
/// console in test harnesses (made raw so every byte arrives at once).
pub fn open_control() -> Option<OwnedFd> {
    let (path, fd) = if let Some(fd) = open(LEGACY_CONTROL_TTY, OFlags::RDONLY | OFlags::NONBLOCK) {
        let _ = make_raw(&fd);
        (LEGACY_CONTROL_TTY, fd)
    } else if multiport_control_device() {
        (abi::GUEST_CONTROL_TTY, open_port(abi::GUEST_CONTROL_TTY, OFlags::RDONLY | OFlags::NONBLOCK)?)
    } else {
        return None;
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
