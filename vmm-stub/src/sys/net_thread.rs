//! Helper threads without libc: a raw `clone` onto a static stack, and the
//! directed signal (`tgkill`) a helper uses to kick the vCPU thread out of
//! `KVM_RUN`.

use core::cell::UnsafeCell;
use rustix::io::Errno;

const SYS_CLONE: usize = 56;
const SYS_TGKILL: usize = 234;

const CLONE_VM: usize = 0x100;
const CLONE_FS: usize = 0x200;
const CLONE_FILES: usize = 0x400;
const CLONE_SIGHAND: usize = 0x800;
const CLONE_THREAD: usize = 0x1_0000;
const CLONE_SYSVSEM: usize = 0x4_0000;
/// A thread of this process sharing everything (what pthreads uses).
const THREAD_FLAGS: usize = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;

/// Stack memory for one helper thread, in .bss (free until touched).
#[repr(C, align(16))]
pub struct ThreadStack<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: the memory is only ever used as the stack of the one thread `spawn` gives it to (see `spawn`'s contract).
unsafe impl<const N: usize> Sync for ThreadStack<N> {}

impl<const N: usize> ThreadStack<N> {
    pub const fn new() -> Self {
        ThreadStack(UnsafeCell::new([0; N]))
    }
}

impl<const N: usize> Default for ThreadStack<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts a thread running `entry` on `stack`. The caller blocks signals
/// around the call if the thread must not take them (it inherits the mask).
///
/// # Safety
/// `stack` is given to one thread only, ever (call this once per stack).
pub unsafe fn spawn<const N: usize>(stack: &'static ThreadStack<N>, entry: extern "C" fn() -> !) -> Result<(), Errno> {
    let top = stack.0.get().cast::<u8>().wrapping_add(N);
    let ret: isize;
    // SAFETY: clone gives the child `top` (16-byte aligned, the end of a static stack no one else uses, per this function's contract) as its stack; the child never returns into this frame: it calls `entry`, which never returns either. The parent continues normally (only rax, rcx, r11 change).
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") SYS_CLONE as isize => ret,
            in("rdi") THREAD_FLAGS, in("rsi") top, in("rdx") 0usize, in("r10") 0usize, in("r8") 0usize,
            in("r12") entry as *const () as usize,
            lateout("rcx") _, lateout("r11") _,
        );
    }
    if ret < 0 {
        return Err(Errno::from_raw_os_error(i32::try_from(ret.unsigned_abs()).unwrap_or(0)));
    }
    Ok(())
}

/// Sends `sig` to thread `tid` of process `pid` (`tgkill`). Errors (the
/// thread is gone) are ignored: a kick is advisory.
pub fn tgkill(pid: i32, tid: i32, sig: u32) {
    let _ret: isize;
    // SAFETY: tgkill takes three integers and reads no memory of ours.
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") SYS_TGKILL as isize => _ret,
                         in("rdi") pid as isize, in("rsi") tid as isize, in("rdx") sig as usize,
                         lateout("rcx") _, lateout("r11") _, options(nostack));
    }
}
