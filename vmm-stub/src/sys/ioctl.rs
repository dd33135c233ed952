//! One `Ioctl` request type for every ioctl the stub makes: the request
//! number and the argument (an integer or a pointer to a KVM/termios
//! struct) are run-time values, the result is the call's non-negative
//! return value (KVM_CREATE_VM returns an fd, KVM_CHECK_EXTENSION a
//! count). rustix's Getter/Setter patterns copy each struct by value and
//! are instantiated once per request: kilobytes of the stub, for nothing.

use core::ffi::c_void;
use rustix::fd::BorrowedFd;
use rustix::io;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};

struct Raw {
    opcode: Opcode,
    arg: *mut c_void,
}

// SAFETY: `raw`'s contract makes `arg` what the request expects.
// IS_MUTATING = true: the kernel may write through `arg` (and KVM_RUN
// writes the mapped `kvm_run` page and guest RAM), so no call is treated
// as a pure read.
unsafe impl Ioctl for Raw {
    type Output = u32;
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.opcode
    }

    fn as_ptr(&mut self) -> *mut c_void {
        self.arg
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> io::Result<u32> {
        u32::try_from(out).map_err(|_| io::Errno::INVAL)
    }
}

/// `ioctl(fd, opcode, arg)`.
///
/// # Safety
/// `arg` must be what `opcode` expects: an integer, or a pointer to memory
/// the kernel may read and write as that request's argument, valid for
/// the call; the request must not otherwise break memory safety.
#[inline(never)]
pub unsafe fn raw(fd: BorrowedFd<'_>, opcode: Opcode, arg: *mut c_void) -> io::Result<u32> {
    // SAFETY: per this function's contract.
    unsafe { rustix::ioctl::ioctl(fd, Raw { opcode, arg }) }
}

/// A pointer argument to a struct the kernel reads or writes.
pub fn arg<T>(v: &mut T) -> *mut c_void {
    (v as *mut T).cast()
}

/// A pointer argument to a struct the kernel only reads (the `SET`
/// requests): no copy into a mutable temporary.
pub fn arg_ro<T>(v: &T) -> *mut c_void {
    (v as *const T).cast_mut().cast()
}

/// An integer argument.
pub fn int(v: usize) -> *mut c_void {
    v as *mut c_void
}
