//! Whether this host can run the image, answered before any VM exists:
//! /dev/kvm present and ours to open, the KVM API and capabilities the stub
//! uses, and a CPU with hardware virtualization. Each refusal is one line
//! naming the cause and the remedy (exit 125).

use crate::out::{fail, fail_errno, Line};
use crate::sys::kvm::{
    Kvm, KVM_API_VERSION, KVM_CAP_EXT_CPUID, KVM_CAP_IMMEDIATE_EXIT, KVM_CAP_IRQCHIP, KVM_CAP_PIT2, KVM_CAP_USER_MEMORY,
};
use rustix::io::Errno;

/// The capabilities the stub uses (the message lists them).
const NEEDED: [u32; 5] = [KVM_CAP_USER_MEMORY, KVM_CAP_IRQCHIP, KVM_CAP_PIT2, KVM_CAP_EXT_CPUID, KVM_CAP_IMMEDIATE_EXIT];

/// Faults the tests inject (`test-hooks` builds only): `missing-cap` makes a
/// needed capability look absent, `no-hw-virt` hides VMX/SVM.
#[derive(Clone, Copy, Default)]
pub struct Faults {
    pub missing_cap: bool,
    pub no_hw_virt: bool,
}

/// Opens /dev/kvm and checks it can run this image: `linux` when the image
/// holds a Linux kernel (what a paravirtual KVM cannot run; bare test
/// guests can), `force` to try anyway.
pub fn open_kvm(linux: bool, force: bool, faults: Faults) -> Kvm {
    let kvm = Kvm::open().unwrap_or_else(|e| match e {
        Errno::NOENT | Errno::NODEV | Errno::NXIO => {
            fail("no /dev/kvm: this host has no KVM (enable virtualization in the firmware and load kvm_intel or kvm_amd)")
        }
        Errno::ACCESS | Errno::PERM => no_permission(),
        e => fail_errno("cannot open /dev/kvm", e),
    });
    match kvm.api_version() {
        Ok(v) if v == KVM_API_VERSION as u32 => {}
        Ok(v) => Line::new().s("unsupported KVM API version ").u(u64::from(v)).s(" (need 12)").fail(),
        Err(e) => fail_errno("/dev/kvm is not KVM (KVM_GET_API_VERSION failed", e),
    }
    if faults.missing_cap || NEEDED.iter().any(|&cap| !kvm.check_extension(cap).is_ok_and(|v| v > 0)) {
        fail("KVM lacks a capability smolvm needs (user memory, irqchip, PIT2, ext. CPUID, immediate exit): \
              use a newer host kernel");
    }
    let hw_virt = !faults.no_hw_virt && crate::sys::cpu::hardware_virtualization();
    if linux && !force && !hw_virt {
        fail("this KVM cannot run Linux (no VMX/SVM: kvm_pvm?): use hardware or nested virtualization \
              (--smolvm-force tries anyway)")
    }
    kvm
}

/// /dev/kvm refused us: the group to join is the one that owns it.
fn no_permission() -> ! {
    fail("no permission to open /dev/kvm: add the user to the group that owns it (ls -l /dev/kvm; usually kvm: \
          usermod -aG kvm $USER) and log in again, or run as its owner")
}
