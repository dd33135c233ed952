//! Raw system interface: KVM ABI structs and ioctl request types, plus the
//! one system call rustix does not expose without its runtime (`exit_group`).

pub mod ioctl;
pub mod kvm;
pub mod net;
pub mod net_thread;
pub mod once;
pub mod spawn;
pub mod static_fd;

/// Ends the process at once with `code` (no teardown: the kernel frees the
/// VM, guest RAM and every fd).
pub fn exit(code: u8) -> ! {
    // Every exit path comes through here: never leave the terminal raw.
    crate::hostio::tty::restore();
    // SAFETY: exit_group takes one integer and never returns; it touches no memory of ours.
    unsafe {
        core::arch::asm!("syscall", in("rax") 231usize, in("rdi") usize::from(code),
                         options(noreturn, nostack));
    }
}
