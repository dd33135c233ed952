//! The network watcher: a helper thread that waits, only when the net
//! device asked ([`want`]), for its backend fd to become readable (a frame
//! arrived while the device had none) or writable (a frame is stuck
//! behind a full socket), then kicks the vCPU thread with [`SIG_KICK`] so
//! `KVM_RUN` returns and the device moves the frames itself, as the stdin
//! watcher does for stdin. The thread owns no data and never touches
//! guest memory.
//!
//! A request that arrives while the thread already sleeps in `poll` wakes
//! it through a pipe (one byte per new request), so it can add the event.

use super::signals::SIG_KICK;
use crate::sys::cell::WriteOnce;
use crate::sys::signal;
use crate::sys::thread::{self, Stack, Task};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::pipe::{pipe_with, PipeFlags};

/// Wait for the backend to have a frame (or end of stream).
pub const READABLE: u32 = 1;
/// Wait for room in the backend to write the pending frame.
pub const WRITABLE: u32 = 2;

/// The events the device waits for; the thread clears those it reports.
static WANTED: AtomicU32 = AtomicU32::new(0);
static STARTED: AtomicBool = AtomicBool::new(false);
static PID: AtomicI32 = AtomicI32::new(0);
static VCPU_TID: AtomicI32 = AtomicI32::new(0);
/// A duplicate of the backend fd, the wake-up pipe's two ends: open for
/// the process's life once set.
static NET_FD: WriteOnce<OwnedFd> = WriteOnce::new();
static WAKE_READ: WriteOnce<OwnedFd> = WriteOnce::new();
static WAKE_WRITE: WriteOnce<OwnedFd> = WriteOnce::new();

static STACK: Stack<{ 16 * 1024 }> = Stack::new();

/// Starts the watcher for the backend: `fd` is a duplicate of its fd
/// (the thread polls it; it stays open for the process's life). Call
/// once, from the vCPU thread, after `signals::install` and before the
/// seccomp filter.
pub fn start(fd: OwnedFd) -> Result<(), Errno> {
    if STARTED.load(Ordering::Acquire) || NET_FD.is_set() {
        return Err(Errno::BUSY);
    }
    let (r, w): (OwnedFd, OwnedFd) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    PID.store(rustix::process::getpid().as_raw_nonzero().get(), Ordering::Release);
    VCPU_TID.store(rustix::thread::gettid().as_raw_nonzero().get(), Ordering::Release);
    // All three stay open for the process's life (the thread polls them).
    if !(NET_FD.set(fd) && WAKE_READ.set(r) && WAKE_WRITE.set(w)) {
        return Err(Errno::BUSY);
    }
    // All signals stay blocked in the thread (spawn starts it so), so
    // process-directed signals land on the vCPU thread.
    thread::spawn(Task::Thread, &STACK, watcher)?;
    STARTED.store(true, Ordering::Release);
    Ok(())
}

// What this thread's device asked for since the last `test_take`
// (unit tests, which have no watcher thread, drive the device by it).
#[cfg(test)]
std::thread_local! { static ASKED: core::cell::Cell<u32> = const { core::cell::Cell::new(0) } }
/// [`kick_soon`] was called (unit tests).
#[cfg(test)]
pub const KICKED: u32 = 4;

/// Takes what this thread's device asked for: [`READABLE`], [`WRITABLE`],
/// [`KICKED`] (unit tests).
#[cfg(test)]
pub fn test_take() -> u32 {
    ASKED.with(|a| a.replace(0))
}

/// The device waits for `events` ([`READABLE`], [`WRITABLE`]): kick the
/// vCPU when one of them happens. No-op before [`start`] (unit tests).
pub fn want(events: u32) {
    #[cfg(test)]
    ASKED.with(|a| a.set(a.get() | events));
    if !STARTED.load(Ordering::Acquire) {
        return;
    }
    let before = WANTED.fetch_or(events, Ordering::AcqRel);
    if before & events != events {
        if let Some(w) = WAKE_WRITE.get() {
            use rustix::fd::AsFd;
            let w = w.as_fd();
            // Full pipe (EAGAIN): a wake-up is already pending; fine.
            let _ = rustix::io::write(w, &[1]);
        }
    }
}

/// Makes the next `KVM_RUN` return at once so the devices are polled again
/// (a device stopped early to let others run and has more to do).
pub fn kick_soon() {
    #[cfg(test)]
    ASKED.with(|a| a.set(a.get() | KICKED));
    if STARTED.load(Ordering::Acquire) {
        let _ = signal::tgkill(PID.load(Ordering::Acquire), VCPU_TID.load(Ordering::Acquire), SIG_KICK);
    }
}

extern "C" fn watcher() -> ! {
    // `start` set both before it created this thread.
    use rustix::fd::AsFd;
    let (Some(net), Some(wake)) = (NET_FD.get(), WAKE_READ.get()) else { crate::sys::exit(125) };
    let (net, wake) = (net.as_fd(), wake.as_fd());
    let mut drain = [0u8; 64];
    loop {
        let wanted = WANTED.load(Ordering::Acquire);
        let mut events = PollFlags::empty();
        if wanted & READABLE != 0 {
            events |= PollFlags::IN;
        }
        if wanted & WRITABLE != 0 {
            events |= PollFlags::OUT;
        }
        let mut fds = [PollFd::new(&wake, PollFlags::IN), PollFd::new(&net, events)];
        // Nothing wanted: do not poll the backend at all (a hung-up fd
        // would report HUP at once, over and over).
        let n_fds = if wanted == 0 { 1 } else { 2 };
        if poll(fds.get_mut(..n_fds).unwrap_or_default(), None).is_err() {
            continue; // EINTR (all signals are blocked here, but be safe)
        }
        let [w, n] = &fds;
        if !w.revents().is_empty() {
            let _ = rustix::io::read(wake, &mut drain);
        }
        let got = if n_fds == 2 { n.revents() } else { PollFlags::empty() };
        let mut fired = 0;
        // Errors and hang-ups end waits of both kinds: the device sees them.
        let trouble = got.intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL);
        if got.contains(PollFlags::IN) || trouble {
            fired |= READABLE;
        }
        if got.contains(PollFlags::OUT) || trouble {
            fired |= WRITABLE;
        }
        let fired = WANTED.fetch_and(!fired, Ordering::AcqRel) & fired;
        if fired != 0 {
            let _ = signal::tgkill(PID.load(Ordering::Acquire), VCPU_TID.load(Ordering::Acquire), SIG_KICK);
        }
    }
}
