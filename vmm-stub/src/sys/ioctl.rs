//! `Ioctl` request types rustix's patterns do not cover: requests whose
//! integer return value matters (KVM_CREATE_VM returns an fd,
//! KVM_CHECK_EXTENSION a count) and KVM_RUN, which writes the shared
//! `kvm_run` page and so must be marked mutating.

use core::ffi::c_void;
use rustix::io;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};

/// An ioctl with an integer argument whose non-negative result is returned.
pub struct IntRet<const OPCODE: Opcode> {
    arg: usize,
}

impl<const OPCODE: Opcode> IntRet<OPCODE> {
    /// # Safety
    /// `OPCODE` must take an integer (or no) argument and not write memory
    /// of this process.
    pub const unsafe fn new(arg: usize) -> Self {
        IntRet { arg }
    }
}

// SAFETY: the argument is passed by value (the pointer is the integer
// itself) and, per `new`'s contract, the request writes no user memory.
unsafe impl<const OPCODE: Opcode> Ioctl for IntRet<OPCODE> {
    type Output = u32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        OPCODE
    }

    fn as_ptr(&mut self) -> *mut c_void {
        self.arg as *mut c_void
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> io::Result<u32> {
        u32::try_from(out).map_err(|_| io::Errno::INVAL)
    }
}

/// `KVM_RUN`: no argument, but the kernel writes the vCPU's mmapped
/// `kvm_run` page (and, through the guest, guest RAM).
pub struct Run;

// SAFETY: KVM_RUN takes no argument; IS_MUTATING = true tells rustix the
// call writes memory, so it is not reordered as a pure read.
unsafe impl Ioctl for Run {
    type Output = ();
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        super::kvm::KVM_RUN
    }

    fn as_ptr(&mut self) -> *mut c_void {
        core::ptr::null_mut()
    }

    unsafe fn output_from_ptr(_: IoctlOutput, _: *mut c_void) -> io::Result<()> {
        Ok(())
    }
}
