//! Whether this host can run the image, answered before any VM exists:
//! /dev/kvm present and ours to open, the KVM API and capabilities the stub
//! uses, and a CPU with hardware virtualization. Each refusal is one line
//! naming the cause and the remedy (exit 125).

use crate::out::{fail, fail_errno, Line};
use crate::sys::kvm::{
    Kvm, KVM_API_VERSION, KVM_CAP_EXT_CPUID, KVM_CAP_IMMEDIATE_EXIT, KVM_CAP_IRQCHIP, KVM_CAP_PIT2, KVM_CAP_USER_MEMORY,
};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// The capabilities the stub uses (the message names the missing one's number).
const NEEDED: [u32; 5] = [KVM_CAP_USER_MEMORY, KVM_CAP_IRQCHIP, KVM_CAP_PIT2, KVM_CAP_EXT_CPUID, KVM_CAP_IMMEDIATE_EXIT];

/// Faults the tests inject (`test-hooks` builds only): `missing-cap` makes the
/// last needed capability look absent, `no-hw-virt` hides VMX/SVM.
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
    for cap in NEEDED {
        let injected = faults.missing_cap && cap == KVM_CAP_IMMEDIATE_EXIT;
        if injected || !kvm.check_extension(cap).is_ok_and(|v| v > 0) {
            Line::new().s("KVM lacks capability ").u(u64::from(cap)).s(" (KVM_CAP_*) that smolvm needs: use a newer host kernel").fail();
        }
    }
    let hw_virt = !faults.no_hw_virt && crate::sys::cpu::hardware_virtualization();
    if linux && !force && !hw_virt {
        fail("/dev/kvm cannot run Linux here (no VMX/SVM: a paravirtual KVM, e.g. kvm_pvm): use a host with hardware \
              virtualization or enable nested virtualization (--smolvm-force tries anyway)")
    }
    kvm
}

/// /dev/kvm refused us: name the group that may open it, or say that only
/// its owner may.
fn no_permission() -> ! {
    let mut l = Line::new();
    l.s("no permission to open /dev/kvm: ");
    match rustix::fs::stat(c"/dev/kvm") {
        Ok(st) if st.st_mode & 0o060 == 0o060 => {
            let mut buf = [0u8; 4096];
            l.s("add the user to group `");
            match group_name(st.st_gid, &mut buf) {
                Some(name) => l.b(name),
                None => l.s("gid ").u(u64::from(st.st_gid)),
            };
            l.s("` (usermod -aG GROUP $USER) and log in again")
        }
        _ => l.s("only its owner may; run as that user, or let group kvm use it (chgrp kvm /dev/kvm; chmod 660 /dev/kvm)"),
    };
    l.fail()
}

/// The name of group `gid` from the first 4 KiB of /etc/group.
fn group_name(gid: u32, buf: &mut [u8; 4096]) -> Option<&[u8]> {
    let fd = rustix::fs::open(c"/etc/group", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let n = rustix::io::read(&fd, &mut buf[..]).ok()?;
    let mut want = Line::bare();
    want.u(u64::from(gid));
    buf.get(..n)?.split(|&b| b == b'\n').find_map(|line| {
        let mut fields = line.split(|&b| b == b':');
        let name = fields.next()?;
        fields.next()?;
        (fields.next()? == want.as_bytes() && !name.is_empty()).then_some(name)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn group_names_come_from_etc_group() {
        let mut buf = [0u8; 4096];
        assert_eq!(super::group_name(0, &mut buf), Some(&b"root"[..]));
        assert_eq!(super::group_name(4_000_000_000, &mut buf), None);
    }
}
