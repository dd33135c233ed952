//! Deferred VM teardown. Destroying a VM (in-kernel irqchip, PIT, memory
//! slots) costs the kernel several SRCU grace periods, which on nested hosts
//! add up to ~20 ms inside `exit_group`, before the caller sees the stub's
//! exit status. So just before the first `KVM_RUN` the stub clones a
//! *reaper*: a process that shares the address space (`CLONE_VM`, no copy)
//! and keeps only the VM and vCPU fds. When the stub exits, the reaper still
//! holds the VM, so the stub's exit is immediate; the reaper is then killed
//! by its parent-death signal and the kernel tears the VM down in its exit,
//! off the caller's critical path. It holds no stdio, so pipes see EOF when
//! the stub exits; it blocks every signal but SIGKILL and only ever sleeps.

use crate::sys::process::{close_range, pause};
use crate::sys::thread::{self, Stack, Task};
use core::sync::atomic::{AtomicI32, Ordering};
use rustix::fd::RawFd;

static STACK: Stack<4096> = Stack::new();

/// The stub's pid (the reaper's parent) and the two fds it keeps.
static PARENT: AtomicI32 = AtomicI32::new(0);
static KEEP_LO: AtomicI32 = AtomicI32::new(-1);
static KEEP_HI: AtomicI32 = AtomicI32::new(-1);

/// Starts the reaper keeping `vm_fd` and `vcpu_fd`. Failure only costs the
/// fast exit, so it is not reported.
pub fn start(vm_fd: RawFd, vcpu_fd: RawFd) {
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    PARENT.store(pid, Ordering::Release);
    KEEP_LO.store(vm_fd.min(vcpu_fd), Ordering::Release);
    KEEP_HI.store(vm_fd.max(vcpu_fd), Ordering::Release);
    // Its own fd table (no CLONE_FILES), signals blocked (spawn), and no
    // exit signal to the stub.
    let _ = thread::spawn(Task::SharedMemoryProcess, &STACK, reaper);
}

/// Closes the fds in `lo..=hi` (nothing when the range is empty).
fn close_between(lo: i32, hi: i32) {
    if let (Ok(lo), Ok(hi)) = (u32::try_from(lo), u32::try_from(hi)) {
        close_range(lo, hi);
    }
}

extern "C" fn reaper() -> ! {
    // Die with the stub; if it already died, go now.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    if parent == PARENT.load(Ordering::Acquire) {
        let (lo, hi) = (KEEP_LO.load(Ordering::Acquire), KEEP_HI.load(Ordering::Acquire));
        // fds are far below i32::MAX: saturating only to spare panic paths.
        close_between(0, lo.saturating_sub(1));
        close_between(lo.saturating_add(1), hi.saturating_sub(1));
        close_between(hi.saturating_add(1), i32::MAX);
        loop {
            pause(); // only SIGKILL ends it
        }
    }
    thread::exit_task(0)
}
