//! The state ioctls of a warm image (cargo feature `warm`): restoring with
//! `KVM_SET_*`, and, with `warm-save`, saving with `KVM_GET_*`. The structs
//! travel as bytes of exactly the kernel's size; what they hold is the
//! format's business (`linker::warm`), and KVM validates every value it is
//! given (a bad one is an error, never host memory).

use super::*;
use rustix::ioctl::Opcode;

/// The payload size an ioctl request number encodes (bits 16..30).
const fn opcode_size(op: Opcode) -> usize {
    ((op >> 16) & 0x3fff) as usize
}

/// The largest state struct (`kvm_xsave`).
const MAX_STATE: usize = 4096;

/// A state ioctl on `fd` whose struct is `bytes`: exactly the size the
/// request number encodes, else `EINVAL` (so no request can make the
/// kernel read or write past it). The kernel's answer, for a `KVM_GET_*`,
/// is copied back into `bytes`.
fn state_ioctl(fd: &OwnedFd, op: Opcode, bytes: &mut [u8]) -> io::Result<()> {
    let n = opcode_size(op);
    if n != bytes.len() || n > MAX_STATE {
        return Err(Errno::INVAL);
    }
    let mut buf = Blob::<MAX_STATE>::ZERO;
    buf.0[..n].copy_from_slice(bytes);
    // SAFETY: the request's struct is n bytes (its size is part of the request number, checked above) and `buf` holds MAX_STATE >= n writable, 8-aligned bytes; the kernel reads and/or writes only the first n.
    unsafe { kvm_ioctl(fd, op, arg(&mut buf))? };
    bytes.copy_from_slice(&buf.0[..n]);
    Ok(())
}

impl Kvm {
    /// The first capability of `caps` this KVM lacks, if any.
    pub fn missing_cap(&self, caps: &[u32]) -> Option<u32> {
        caps.iter().copied().find(|&c| self.check_extension(c).unwrap_or(0) == 0)
    }
}

impl Vm {
    /// A VM state ioctl (`KVM_SET_IRQCHIP`, `_PIT2`, `_CLOCK`; with
    /// `warm-save` the `KVM_GET_*` ones too) on a struct kept as bytes.
    pub fn state_ioctl(&self, op: Opcode, bytes: &mut [u8]) -> io::Result<()> {
        state_ioctl(&self.fd, op, bytes)
    }
}

impl Vcpu {
    /// As [`Vm::state_ioctl`], for the vCPU's state: regs, sregs, XSAVE,
    /// XCRs, LAPIC, events, debug registers.
    pub fn state_ioctl(&self, op: Opcode, bytes: &mut [u8]) -> io::Result<()> {
        state_ioctl(&self.fd, op, bytes)
    }

    pub fn set_mp_state(&self, state: u32) -> io::Result<()> {
        let mut s = state;
        // SAFETY: kvm_mp_state is one u32, which the kernel reads.
        unsafe { kvm_ioctl(&self.fd, KVM_SET_MP_STATE, arg(&mut s)).map(drop) }
    }

    /// The guest TSC frequency in kHz (`KVM_GET_TSC_KHZ`).
    pub fn tsc_khz(&self) -> io::Result<u32> {
        // SAFETY: no argument; returns the frequency.
        unsafe { kvm_ioctl(&self.fd, KVM_GET_TSC_KHZ, int(0)) }
    }

    /// Makes the guest TSC run at `khz` (`KVM_SET_TSC_KHZ`, with
    /// `KVM_CAP_TSC_CONTROL`: the host scales it).
    pub fn set_tsc_khz(&self, khz: u32) -> io::Result<()> {
        // SAFETY: integer argument, writes nothing.
        unsafe { kvm_ioctl(&self.fd, KVM_SET_TSC_KHZ, int(khz as usize)).map(drop) }
    }
}

#[cfg(feature = "warm-save")]
impl Vcpu {
    pub fn get_mp_state(&self) -> io::Result<u32> {
        let mut s = 0u32;
        // SAFETY: kvm_mp_state is one u32, which the kernel writes.
        unsafe { kvm_ioctl(&self.fd, KVM_GET_MP_STATE, arg(&mut s))? };
        Ok(s)
    }

    /// Reads the MSRs whose indices `msrs` names (`nmsrs` of them); returns
    /// how many were read (KVM stops at the first it does not know).
    pub fn get_msrs<const N: usize>(&self, msrs: &mut KvmMsrs<N>) -> io::Result<u32> {
        if msrs.header.nmsrs as usize > N {
            return Err(Errno::INVAL);
        }
        // SAFETY: the kernel reads `nmsrs` (≤ N) indices and writes as many values, all inside the struct.
        unsafe { kvm_ioctl(&self.fd, KVM_GET_MSRS, arg(msrs)) }
    }
}
