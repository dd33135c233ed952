//! The stub's one `clone`: a child task (the stdin thread, the reaper
//! process) on a static stack, started with every signal blocked.

use super::signal;
use super::syscall::{result, SYS_CLONE};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use rustix::io::Errno;

pub const CLONE_VM: usize = 0x100;
const CLONE_FS: usize = 0x200;
const CLONE_FILES: usize = 0x400;
const CLONE_SIGHAND: usize = 0x800;
const CLONE_THREAD: usize = 0x1_0000;
const CLONE_SYSVSEM: usize = 0x4_0000;

/// What [`spawn`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// A thread of this process (shares memory, files, signal handlers).
    Thread,
    /// A process sharing only the address space (`CLONE_VM`): its own fd
    /// table and signal state; no exit signal to the parent.
    SharedMemoryProcess,
}

impl Task {
    /// The `clone` flags (the seccomp filter allows `clone` only with
    /// `SharedMemoryProcess`'s).
    pub const fn flags(self) -> usize {
        match self {
            Task::Thread => CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM,
            Task::SharedMemoryProcess => CLONE_VM,
        }
    }
}

/// A static stack for one child task. [`spawn`] hands it out once.
#[repr(C, align(16))]
pub struct Stack<const N: usize> {
    bytes: UnsafeCell<[u8; N]>,
    taken: AtomicBool,
}

// SAFETY: the bytes are only ever used by the one task `spawn` gives them to (`taken` lets exactly one caller past); this thread never reads or writes them.
unsafe impl<const N: usize> Sync for Stack<N> {}

impl<const N: usize> Stack<N> {
    pub const fn new() -> Self {
        assert!(N.is_multiple_of(16) && N >= 4096, "the ABI wants a 16-byte aligned stack top");
        Stack { bytes: UnsafeCell::new([0; N]), taken: AtomicBool::new(false) }
    }
}

impl<const N: usize> Default for Stack<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts `entry` as a new task of kind `task` on `stack`; returns its id.
/// The child starts with every signal blocked (the calling thread's mask
/// is restored after the `clone`), and `entry` must never return.
/// `Err(BUSY)` if `stack` was handed out before.
pub fn spawn<const N: usize>(task: Task, stack: &'static Stack<N>, entry: extern "C" fn() -> !) -> Result<u32, Errno> {
    if stack.taken.swap(true, Ordering::AcqRel) {
        return Err(Errno::BUSY);
    }
    let top = stack.bytes.get().cast::<u8>().wrapping_add(N);
    // The child inherits the signal mask: it starts with everything blocked.
    let old = signal::block_all();
    let ret: usize;
    // SAFETY: clone(flags, top, 0, 0, 0). The child runs on `top`, the 16-byte aligned end of a static stack no other task uses (`taken` above), and calls `entry`, which never returns (`ud2` otherwise). The parent continues here; only rax, rcx and r11 change. No pointer the kernel writes through is passed.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") SYS_CLONE as usize => ret,
            in("rdi") task.flags(), in("rsi") top, in("rdx") 0usize, in("r10") 0usize, in("r8") 0usize,
            in("r12") entry as *const () as usize,
            lateout("rcx") _, lateout("r11") _,
        );
    }
    signal::set_mask(old);
    let id = result(ret.cast_signed())?;
    u32::try_from(id).map_err(|_| Errno::INVAL)
}

/// Ends the calling task only (`exit`; the process lives on in its other
/// tasks).
pub fn exit_task(code: u8) -> ! {
    loop {
        // SAFETY: exit takes an integer, touches no memory and does not return (the loop only satisfies the type).
        let _ = unsafe { super::syscall::syscall(super::syscall::SYS_EXIT, [usize::from(code), 0, 0, 0]) };
    }
}
