//! Signal system calls rustix 1.x keeps in its unstable runtime module:
//! handlers (`rt_sigaction` with our own restorer), the thread's signal
//! mask, `alarm` and `tgkill`. Signal sets are the kernel's 64-bit masks.

use super::syscall::{syscall, SYS_ALARM, SYS_RT_SIGACTION, SYS_RT_SIGPROCMASK, SYS_TGKILL};
use rustix::io::Errno;

/// A set of signals: bit `n - 1` is signal `n` (1..=64).
pub type SigSet = u64;

/// The set holding only `sig` (empty for a number outside 1..=64).
pub const fn bit(sig: u32) -> SigSet {
    if sig >= 1 && sig <= 64 {
        1 << (sig - 1)
    } else {
        0
    }
}

const SA_RESTORER: u64 = 0x0400_0000;
const SA_RESTART: u64 = 0x1000_0000;
const SIG_IGN: usize = 1;
const SIG_BLOCK: usize = 0;
const SIG_UNBLOCK: usize = 1;
const SIG_SETMASK: usize = 2;
/// The size of the kernel's sigset, which the calls take as an argument.
const SIGSET_SIZE: usize = 8;

/// The kernel's `struct sigaction` (x86_64).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: SigSet,
}

// The kernel returns from a handler through `sa_restorer`, which must call
// rt_sigreturn (x86_64 requires SA_RESTORER). 15 is SYS_RT_SIGRETURN.
core::arch::global_asm!(".globl smolvm_sigreturn", "smolvm_sigreturn:", "mov eax, 15", "syscall", "ud2");
extern "C" {
    fn smolvm_sigreturn();
}
static_assertions::const_assert_eq!(super::syscall::SYS_RT_SIGRETURN, 15);

fn sigaction(sig: u32, handler: usize, mask: SigSet) -> Result<(), Errno> {
    let act = KernelSigaction { handler, flags: SA_RESTORER | SA_RESTART, restorer: smolvm_sigreturn as *const () as usize, mask };
    // SAFETY: rt_sigaction(sig, &act, NULL, 8) only reads `act`; the handler and the restorer are functions of this program that live as long as the process.
    unsafe { syscall(SYS_RT_SIGACTION, [sig as usize, &act as *const KernelSigaction as usize, 0, SIGSET_SIZE]) }
        .map(drop)
}

/// Runs `handler` for `sig` (`SA_RESTART`: interrupted blocking calls
/// resume), with `mask` blocked while it runs.
pub fn set_handler(sig: u32, handler: extern "C" fn(i32), mask: SigSet) -> Result<(), Errno> {
    sigaction(sig, handler as *const () as usize, mask)
}

/// Ignores `sig`.
pub fn ignore(sig: u32) -> Result<(), Errno> {
    sigaction(sig, SIG_IGN, 0)
}

/// `rt_sigprocmask(how, &set, &old)`; returns the mask before the call.
fn sigprocmask(how: usize, set: SigSet) -> SigSet {
    let mut old: SigSet = 0;
    // SAFETY: rt_sigprocmask reads one sigset from `set` and writes one into `old`, both locals alive for the call. It cannot fail with these arguments.
    let _ = unsafe {
        syscall(SYS_RT_SIGPROCMASK, [how, &set as *const SigSet as usize, &mut old as *mut SigSet as usize, SIGSET_SIZE])
    };
    old
}

/// Adds `set` to the calling thread's blocked signals.
pub fn block(set: SigSet) {
    sigprocmask(SIG_BLOCK, set);
}

/// Removes `set` from the calling thread's blocked signals.
pub fn unblock(set: SigSet) {
    sigprocmask(SIG_UNBLOCK, set);
}

/// Blocks every signal for the calling thread; returns the mask before.
pub fn block_all() -> SigSet {
    sigprocmask(SIG_BLOCK, !0)
}

/// Sets the calling thread's mask (e.g. back to what [`block_all`] returned).
pub fn set_mask(set: SigSet) {
    sigprocmask(SIG_SETMASK, set);
}

/// Delivers SIGALRM to the process in `secs` seconds (async-signal-safe).
pub fn alarm(secs: u32) {
    // SAFETY: alarm takes an integer and touches no memory.
    let _ = unsafe { syscall(SYS_ALARM, [secs as usize, 0, 0, 0]) };
}

/// Sends `sig` to thread `tid` of process `pid`.
pub fn tgkill(pid: i32, tid: i32, sig: u32) -> Result<(), Errno> {
    let (pid, tid) = (usize::try_from(pid).map_err(|_| Errno::SRCH)?, usize::try_from(tid).map_err(|_| Errno::SRCH)?);
    // SAFETY: tgkill takes integers and touches no memory of ours.
    unsafe { syscall(SYS_TGKILL, [pid, tid, sig as usize, 0]) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_block_and_restore() {
        // A fresh thread: the harness's own mask is left alone.
        std::thread::spawn(|| {
            let before = block_all();
            assert_eq!(sigprocmask(SIG_BLOCK, 0) & bit(15), bit(15));
            set_mask(before);
            block(bit(10));
            assert_eq!(sigprocmask(SIG_BLOCK, 0) & bit(10), bit(10));
            unblock(bit(10));
            assert_eq!(sigprocmask(SIG_BLOCK, 0), before);
        })
        .join()
        .expect("thread");
        assert_eq!((bit(1), bit(64), bit(0), bit(65)), (1, 1 << 63, 0, 0));
    }
}
