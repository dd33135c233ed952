//! The stdin watcher: a second thread (`sys::thread::spawn`, no libc) that waits for
//! stdin to become readable *only when a device asked* ([`arm`]), then
//! kicks the vCPU thread with [`SIG_KICK`] so `KVM_RUN` returns and the
//! device reads stdin itself. The thread owns no data: it polls, kicks,
//! and waits on a futex to be armed again. All signals stay blocked in it,
//! so process-directed signals (SIGINT, ...) land on a vCPU thread. With
//! several vCPUs the kick goes to vCPU 0's thread, which is enough:
//! `net_watch` says why.

use super::signals::SIG_KICK;
use crate::sys::thread::{self, Stack, Task};
use crate::sys::{fd, signal};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::thread::futex;

/// 1 while a device waits for stdin; the watcher clears it when it kicks.
static ARMED: AtomicU32 = AtomicU32::new(0);
static STARTED: AtomicBool = AtomicBool::new(false);
static PID: AtomicI32 = AtomicI32::new(0);
static VCPU_TID: AtomicI32 = AtomicI32::new(0);

static STACK: Stack<{ 16 * 1024 }> = Stack::new();

/// Starts the watcher. Call once, from the vCPU thread, after
/// `signals::install`.
pub fn start() -> Result<(), Errno> {
    if STARTED.load(Ordering::Acquire) {
        return Ok(());
    }
    PID.store(rustix::process::getpid().as_raw_nonzero().get(), Ordering::Release);
    VCPU_TID.store(rustix::thread::gettid().as_raw_nonzero().get(), Ordering::Release);
    // All signals stay blocked in the thread (spawn starts it so).
    thread::spawn(Task::Thread, &STACK, watcher)?;
    STARTED.store(true, Ordering::Release);
    Ok(())
}

/// A device wants stdin and found nothing to read: kick the vCPU when there is.
pub fn arm() {
    if STARTED.load(Ordering::Acquire) && ARMED.swap(1, Ordering::AcqRel) == 0 {
        let _ = futex::wake(&ARMED, futex::Flags::PRIVATE, 1);
    }
}

extern "C" fn watcher() -> ! {
    // If fd 0 is not open, poll reports POLLNVAL and the device's read
    // then sees EBADF and stops.
    let stdin = fd::stdin();
    loop {
        while ARMED.load(Ordering::Acquire) == 0 {
            let _ = futex::wait(&ARMED, futex::Flags::PRIVATE, 0, None);
        }
        let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
        if let Err(Errno::INTR) = poll(&mut fds, None) {
            continue;
        }
        ARMED.store(0, Ordering::Release);
        let _ = signal::tgkill(PID.load(Ordering::Acquire), VCPU_TID.load(Ordering::Acquire), SIG_KICK);
    }
}
