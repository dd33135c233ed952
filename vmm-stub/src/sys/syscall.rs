//! x86_64 system call numbers, for the calls the stub makes itself and for
//! the seccomp allow-list (which names the calls rustix makes too), and the
//! one raw system call helper, [`syscall`].

pub const SYS_READ: u32 = 0;
pub const SYS_WRITE: u32 = 1;
pub const SYS_CLOSE: u32 = 3;
pub const SYS_FSTAT: u32 = 5;
pub const SYS_LSEEK: u32 = 8;
pub const SYS_RT_SIGACTION: u32 = 13;
pub const SYS_RT_SIGPROCMASK: u32 = 14;
pub const SYS_RT_SIGRETURN: u32 = 15;
pub const SYS_IOCTL: u32 = 16;
pub const SYS_PREAD64: u32 = 17;
pub const SYS_PWRITE64: u32 = 18;
pub const SYS_MADVISE: u32 = 28;
pub const SYS_PAUSE: u32 = 34;
pub const SYS_ALARM: u32 = 37;
pub const SYS_GETPID: u32 = 39;
pub const SYS_BIND: u32 = 49;
pub const SYS_CLONE: u32 = 56;
pub const SYS_EXECVE: u32 = 59;
pub const SYS_EXIT: u32 = 60;
pub const SYS_FCNTL: u32 = 72;
pub const SYS_FSYNC: u32 = 74;
pub const SYS_FDATASYNC: u32 = 75;
pub const SYS_FTRUNCATE: u32 = 77;
pub const SYS_GETPPID: u32 = 110;
pub const SYS_FSTATFS: u32 = 138;
pub const SYS_PRCTL: u32 = 157;
pub const SYS_GETTID: u32 = 186;
pub const SYS_FUTEX: u32 = 202;
pub const SYS_SCHED_GETAFFINITY: u32 = 204;
pub const SYS_GETDENTS64: u32 = 217;
pub const SYS_RESTART_SYSCALL: u32 = 219;
pub const SYS_EXIT_GROUP: u32 = 231;
pub const SYS_TGKILL: u32 = 234;
pub const SYS_OPENAT: u32 = 257;
pub const SYS_MKDIRAT: u32 = 258;
pub const SYS_MKNODAT: u32 = 259;
pub const SYS_FCHOWNAT: u32 = 260;
pub const SYS_UNLINKAT: u32 = 263;
pub const SYS_LINKAT: u32 = 265;
pub const SYS_SYMLINKAT: u32 = 266;
pub const SYS_READLINKAT: u32 = 267;
pub const SYS_FCHMODAT: u32 = 268;
pub const SYS_PPOLL: u32 = 271;
pub const SYS_UTIMENSAT: u32 = 280;
pub const SYS_DUP3: u32 = 292;
pub const SYS_PWRITEV: u32 = 296;
pub const SYS_RENAMEAT2: u32 = 316;
pub const SYS_SECCOMP: u32 = 317;
pub const SYS_CLOSE_RANGE: u32 = 436;
pub const SYS_OPENAT2: u32 = 437;

/// A raw system call with up to four arguments (every call made through
/// here needs at most four), returning the kernel's result: a value, or
/// the error number of a failed call.
///
/// # Safety
/// The arguments must be valid for system call `nr`: any pointer among them
/// points to memory the kernel may read or write for that call, and the
/// call must not otherwise break memory safety (unmap our memory, end the
/// process without the exit paths, ...).
pub unsafe fn syscall(nr: u32, args: [usize; 4]) -> Result<usize, rustix::io::Errno> {
    let [a, b, c, d] = args;
    let ret: usize;
    // SAFETY: the caller vouches for the arguments; the `syscall` instruction clobbers only rax (the result), rcx and r11.
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") nr as usize => ret, in("rdi") a, in("rsi") b,
                         in("rdx") c, in("r10") d, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    result(ret.cast_signed())
}

/// The kernel's return convention: -4095..=-1 is `-errno`, anything else a value.
pub(super) fn result(ret: isize) -> Result<usize, rustix::io::Errno> {
    if (-4095..0).contains(&ret) {
        // The range check above makes the number fit in i32.
        Err(rustix::io::Errno::from_raw_os_error(i32::try_from(ret.unsigned_abs()).unwrap_or(0)))
    } else {
        Ok(ret.cast_unsigned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_errors() {
        assert_eq!(result(0), Ok(0));
        assert_eq!(result(5), Ok(5));
        assert_eq!(result(-2), Err(rustix::io::Errno::NOENT));
        assert_eq!(result(-4095).err().map(|e| e.raw_os_error()), Some(4095));
        // SAFETY: getpid takes no arguments and touches no memory.
        let pid = unsafe { syscall(SYS_GETPID, [0; 4]) };
        assert_eq!(pid, Ok(std::process::id() as usize));
    }
}
