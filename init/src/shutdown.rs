//! The end: stop what the app left running, flush file systems, hand the
//! status to the host through the exit port, and reboot if that did not end
//! the VM.

use crate::out::Line;
use crate::sys;
use linker::abi;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::process::{wait, WaitOptions};

/// How long leftover processes get between SIGTERM and SIGKILL, and how
/// long init then waits for them to disappear.
const TERM_GRACE_NS: u64 = 500_000_000;
const KILL_GRACE_NS: u64 = 1_000_000_000;

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// Reaps children until none is left (true) or `timeout_ns` passed (false).
fn reap_all(signals: &OwnedFd, timeout_ns: u64) -> bool {
    let deadline = sys::monotonic_ns().saturating_add(timeout_ns);
    let mut drain = [0u8; 128 * 8];
    loop {
        match wait(WaitOptions::NOHANG) {
            Ok(Some(_)) | Err(Errno::INTR) => continue,
            Ok(None) => {}
            Err(_) => return true,
        }
        let left = deadline.saturating_sub(sys::monotonic_ns());
        if left == 0 {
            return false;
        }
        let timeout = Timespec {
            tv_sec: i64::try_from(left / 1_000_000_000).unwrap_or(0),
            tv_nsec: i64::try_from(left % 1_000_000_000).unwrap_or(0),
        };
        // SIGCHLD (blocked, so queued on the signalfd) wakes us up.
        let mut fds = [PollFd::new(signals, PollFlags::IN)];
        if poll(&mut fds, Some(&timeout)).unwrap_or(0) > 0 {
            let _ = rustix::io::read(signals, &mut drain);
        }
    }
}

/// SIGTERM to everything left, then SIGKILL after a grace period.
fn terminate_all(signals: &OwnedFd) {
    if reap_all(signals, 0) {
        return;
    }
    Line::new().s("terminating the processes the app left").debug();
    let _ = sys::kill(-1, SIGTERM);
    if reap_all(signals, TERM_GRACE_NS) {
        return;
    }
    let _ = sys::kill(-1, SIGKILL);
    if !reap_all(signals, KILL_GRACE_NS) {
        Line::new().s("some processes did not end").debug();
    }
}

/// Ends the VM with `status`. `signals` is the signalfd (absent if init
/// failed before it had one, when there are no children either).
pub fn finish(status: u8, signals: Option<&OwnedFd>) -> ! {
    if let Some(signals) = signals {
        terminate_all(signals);
    }
    crate::disks::unmount_all();
    rustix::fs::sync();
    Line::new().s("exit status ").n(u64::from(status)).debug();
    if let Err(e) = sys::outb_port(abi::EXIT_PORT, status) {
        Line::new().s("cannot write the exit status to port 0xf4: ").e(e).print();
    }
    // Only reached when no exit device listens on the port (the status is
    // lost): restart, which hypervisors configured not to reboot turn into
    // an exit. Power-off needs ACPI, which the guest kernel does not have.
    let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
    loop {
        rustix::event::pause();
    }
}
