//! The stdin watcher: a second thread (raw `clone`, no libc) that waits for
//! stdin to become readable *only when a device asked* ([`arm`]), then
//! kicks the vCPU thread with [`SIG_KICK`] so `KVM_RUN` returns and the
//! device reads stdin itself. The thread owns no data: it polls, kicks,
//! and waits on a futex to be armed again. All signals stay blocked in it,
//! so process-directed signals (SIGINT, ...) land on the vCPU thread.

use super::signals::{block_all, syscall4, SIG_KICK};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use rustix::thread::futex;

/// 1 while a device waits for stdin; the watcher clears it when it kicks.
static ARMED: AtomicU32 = AtomicU32::new(0);
static STARTED: AtomicBool = AtomicBool::new(false);
static PID: AtomicI32 = AtomicI32::new(0);
static VCPU_TID: AtomicI32 = AtomicI32::new(0);

const STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack(UnsafeCell<[u8; STACK_SIZE]>);
// SAFETY: only the watcher thread uses this memory, as its stack.
unsafe impl Sync for Stack {}
static STACK: Stack = Stack(UnsafeCell::new([0; STACK_SIZE]));

const CLONE_VM: usize = 0x100;
const CLONE_FS: usize = 0x200;
const CLONE_FILES: usize = 0x400;
const CLONE_SIGHAND: usize = 0x800;
const CLONE_THREAD: usize = 0x1_0000;
const CLONE_SYSVSEM: usize = 0x4_0000;

/// Starts the watcher. Call once, from the vCPU thread, after
/// `signals::install`.
pub fn start() -> Result<(), Errno> {
    if STARTED.load(Ordering::Acquire) {
        return Ok(());
    }
    // SAFETY: getpid/gettid take no arguments.
    let (pid, tid) = unsafe { (syscall4(39, 0, 0, 0, 0), syscall4(186, 0, 0, 0, 0)) };
    PID.store(i32::try_from(pid).map_err(|_| Errno::INVAL)?, Ordering::Release);
    VCPU_TID.store(i32::try_from(tid).map_err(|_| Errno::INVAL)?, Ordering::Release);
    let flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    let top = STACK.0.get().cast::<u8>().wrapping_add(STACK_SIZE);
    // The new thread inherits the signal mask: block everything around clone.
    block_all(true);
    let ret: isize;
    // SAFETY: clone gives the child `top` (16-byte aligned, the end of a static stack nothing else uses) as its stack; the child never returns into this frame: it calls `watcher`, which never returns either. The parent continues normally (only rax, rcx, r11 change).
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") 56isize => ret,
            in("rdi") flags, in("rsi") top, in("rdx") 0usize, in("r10") 0usize, in("r8") 0usize,
            in("r12") watcher as *const () as usize,
            lateout("rcx") _, lateout("r11") _,
        );
    }
    block_all(false);
    if ret < 0 {
        return Err(Errno::from_raw_os_error(i32::try_from(ret.unsigned_abs()).unwrap_or(0)));
    }
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
    // SAFETY: fd 0 is never closed by the stub; if it is not open, poll reports POLLNVAL and the device's read then sees EBADF and stops.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    loop {
        while ARMED.load(Ordering::Acquire) == 0 {
            let _ = futex::wait(&ARMED, futex::Flags::PRIVATE, 0, None);
        }
        let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
        if let Err(Errno::INTR) = poll(&mut fds, None) {
            continue;
        }
        ARMED.store(0, Ordering::Release);
        let pid = usize::try_from(PID.load(Ordering::Acquire)).unwrap_or(0);
        let tid = usize::try_from(VCPU_TID.load(Ordering::Acquire)).unwrap_or(0);
        // SAFETY: tgkill(pid, tid, sig) sends a signal to our own vCPU thread; it reads no memory.
        unsafe { syscall4(234, pid, tid, SIG_KICK as usize, 0) };
    }
}
