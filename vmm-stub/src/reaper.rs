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

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicI32, Ordering};
use rustix::fd::RawFd;

const STACK_SIZE: usize = 4096;

#[repr(C, align(16))]
struct Stack(UnsafeCell<[u8; STACK_SIZE]>);
// SAFETY: only the reaper process uses this memory, as its stack.
unsafe impl Sync for Stack {}
static STACK: Stack = Stack(UnsafeCell::new([0; STACK_SIZE]));

/// The stub's pid (the reaper's parent) and the two fds it keeps.
static PARENT: AtomicI32 = AtomicI32::new(0);
static KEEP_LO: AtomicI32 = AtomicI32::new(-1);
static KEEP_HI: AtomicI32 = AtomicI32::new(-1);

const CLONE_VM: usize = 0x100;
const SYS_RT_SIGPROCMASK: usize = 14;
const SYS_PAUSE: usize = 34;
const SYS_CLONE: usize = 56;
const SYS_EXIT: usize = 60;
const SYS_CLOSE: usize = 3;
const SYS_CLOSE_RANGE: usize = 436;

/// # Safety
/// `nr` must be a system call that, with these arguments, touches no memory
/// other than what the caller owns.
unsafe fn syscall3(nr: usize, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    // SAFETY: per the contract; the syscall instruction clobbers rcx/r11.
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a, in("rsi") b,
                         in("rdx") c, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// Starts the reaper keeping `vm_fd` and `vcpu_fd`. Failure only costs the
/// fast exit, so it is not reported.
pub fn start(vm_fd: RawFd, vcpu_fd: RawFd) {
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    PARENT.store(pid, Ordering::Release);
    KEEP_LO.store(vm_fd.min(vcpu_fd), Ordering::Release);
    KEEP_HI.store(vm_fd.max(vcpu_fd), Ordering::Release);
    let top = STACK.0.get().cast::<u8>().wrapping_add(STACK_SIZE);
    let all: u64 = !0;
    let mut old: u64 = 0;
    // The child inherits the signal mask: it starts with everything blocked.
    // SAFETY: rt_sigprocmask(SIG_BLOCK, &all, &old, 8) reads/writes one u64 each.
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") SYS_RT_SIGPROCMASK as isize => _,
                         in("rdi") 0usize, in("rsi") &all as *const u64, in("rdx") &mut old as *mut u64,
                         in("r10") 8usize, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    // SAFETY: clone(CLONE_VM, top): the child runs on `top` (16-byte aligned, the end of a static stack nothing else uses) and calls `reaper`, which never returns; the parent continues here (only rax, rcx, r11 change). Exit signal 0: the parent is never notified of the reaper's death.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") SYS_CLONE as isize => _,
            in("rdi") CLONE_VM, in("rsi") top, in("rdx") 0usize, in("r10") 0usize, in("r8") 0usize,
            in("r12") reaper as *const () as usize,
            lateout("rcx") _, lateout("r11") _,
        );
    }
    // SAFETY: restores the mask saved above (reads one u64).
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") SYS_RT_SIGPROCMASK as isize => _,
                         in("rdi") 2usize, in("rsi") &old as *const u64, in("rdx") 0usize,
                         in("r10") 8usize, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
}

fn close_range(lo: i32, hi: i32) {
    if lo > hi {
        return;
    }
    let (lo, hi) = (lo as usize, hi as u32 as usize);
    // SAFETY: close_range only closes descriptors of this process's own (unshared: no CLONE_FILES) table.
    if unsafe { syscall3(SYS_CLOSE_RANGE, lo, hi, 0) } < 0 {
        // Kernels before 5.9: close the usual range one by one.
        for fd in lo..=hi.min(4095) {
            // SAFETY: as above, our own fd table.
            unsafe { syscall3(SYS_CLOSE, fd, 0, 0) };
        }
    }
}

extern "C" fn reaper() -> ! {
    // Die with the stub; if it already died, go now.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    if parent == PARENT.load(Ordering::Acquire) {
        let (lo, hi) = (KEEP_LO.load(Ordering::Acquire), KEEP_HI.load(Ordering::Acquire));
        // fds are far below i32::MAX: saturating only to spare panic paths.
        close_range(0, lo.saturating_sub(1));
        close_range(lo.saturating_add(1), hi.saturating_sub(1));
        close_range(hi.saturating_add(1), i32::MAX);
        loop {
            // SAFETY: pause takes no arguments; only SIGKILL ends it.
            unsafe { syscall3(SYS_PAUSE, 0, 0, 0) };
        }
    }
    // SAFETY: exit ends only this task and never returns; it touches no memory.
    unsafe {
        core::arch::asm!("syscall", in("rax") SYS_EXIT, in("rdi") 0usize, options(noreturn, nostack));
    }
}
