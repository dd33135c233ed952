//! Warm images (issue #20, docs/WARM.md): a booted guest saved in the image
//! (`linker::warm` has the format) and resumed instead of a cold boot.
//! `restore` (cargo feature `warm`) validates the snapshot, decides whether
//! this host can resume it (else the run boots cold, saying why under
//! `--smolvm-log=debug`), maps the saved pages `MAP_PRIVATE` from the
//! image and puts the VM and vCPU state back in the order KVM needs.
//! `save` (feature `warm-save`) writes such a snapshot.

pub mod restore;
#[cfg(feature = "warm-save")]
pub mod save;

use crate::sys::kvm::*;

/// The KVM capabilities a restore needs; a host without one boots cold.
pub const NEEDED_CAPS: [u32; 8] = [
    KVM_CAP_IRQCHIP,
    KVM_CAP_MP_STATE,
    KVM_CAP_ADJUST_CLOCK,
    KVM_CAP_VCPU_EVENTS,
    KVM_CAP_PIT_STATE2,
    KVM_CAP_DEBUGREGS,
    KVM_CAP_XSAVE,
    KVM_CAP_XCRS,
];

/// The XSAVE area the stub saves and restores (`KVM_GET_XSAVE`).
pub const XSAVE_LEN: u32 = 4096;

/// A CPUID register the guest may read feature bits from: (leaf, subleaf,
/// register 0..4 = eax, ebx, ecx, edx, the bits the stub sets itself and
/// so need not come from the host).
/// KVM sets some bits itself as the guest runs (OSXSAVE and OSPKE mirror
/// CR4, APIC the APIC base's enable bit): those are not features either.
const FEATURE_REGS: [(u32, u32, usize, u32); 7] = [
    // Leaf 1: hypervisor, TSC deadline, HTT are the stub's (boot::cpu).
    (1, 0, 2, 1 << 31 | 1 << 27 | 1 << 24),
    (1, 0, 3, 1 << 28 | 1 << 9),
    (7, 0, 1, 0),
    (7, 0, 2, 1 << 4),
    (7, 0, 3, 0),
    (0x8000_0001, 0, 2, 0),
    (0x8000_0001, 0, 3, 0),
];

fn reg(e: &KvmCpuidEntry2, r: usize) -> u32 {
    [e.eax, e.ebx, e.ecx, e.edx].get(r).copied().unwrap_or(0)
}

fn find(entries: &[KvmCpuidEntry2], leaf: u32, sub: u32) -> Option<&KvmCpuidEntry2> {
    entries.iter().find(|e| e.function == leaf && e.index == sub)
}

/// Whether every CPU feature the snapshot's guest was shown is one this
/// host's KVM can give it (`supported`: KVM_GET_SUPPORTED_CPUID), XSAVE
/// components included: the guest may already use any of them.
pub fn cpu_features_fit(saved: &[KvmCpuidEntry2], supported: &[KvmCpuidEntry2], xsave_features: u64) -> bool {
    let fits = FEATURE_REGS.iter().all(|&(leaf, sub, r, ours)| {
        let want = find(saved, leaf, sub).map_or(0, |e| reg(e, r)) & !ours;
        let have = find(supported, leaf, sub).map_or(0, |e| reg(e, r));
        want & !have == 0
    });
    let host_xsave = find(supported, 0xd, 0).map_or(0, |e| u64::from(e.eax) | u64::from(e.edx) << 32);
    fits && xsave_features & !host_xsave == 0
}

/// One `kvm_cpuid_entry2` from its 40 little-endian bytes.
pub fn cpuid_entry(b: &[u8]) -> KvmCpuidEntry2 {
    let w = |i: usize| b.get(i * 4..i * 4 + 4).map_or(0, |x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]));
    KvmCpuidEntry2 { function: w(0), index: w(1), flags: w(2), eax: w(3), ebx: w(4), ecx: w(5), edx: w(6), padding: [0; 3] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(function: u32, index: u32, regs: [u32; 4]) -> KvmCpuidEntry2 {
        KvmCpuidEntry2 { function, index, eax: regs[0], ebx: regs[1], ecx: regs[2], edx: regs[3], ..Default::default() }
    }

    #[test]
    fn a_feature_the_host_lacks_means_a_cold_boot() {
        let host = [e(1, 0, [0, 0, 0b1111, 0xff]), e(7, 0, [0, 0b101, 0, 0]), e(0xd, 0, [0x7, 0, 0, 0])];
        let same = [e(1, 0, [0, 0, 0b0101 | 1 << 31 | 1 << 24, 0x0f]), e(7, 0, [0, 0b100, 0, 0])];
        assert!(cpu_features_fit(&same, &host, 0x3));
        let avx512 = [e(7, 0, [0, 0b110, 0, 0])];
        assert!(!cpu_features_fit(&avx512, &host, 0x3));
        let more_ecx = [e(1, 0, [0, 0, 1 << 20, 0])];
        assert!(!cpu_features_fit(&more_ecx, &host, 0x3));
        assert!(!cpu_features_fit(&same, &host, 0xe7)); // AVX-512 state
        assert!(cpu_features_fit(&[], &host, 0));
    }

    #[test]
    fn cpuid_entries_decode_little_endian() {
        let mut b = [0u8; 40];
        b[0] = 7;
        b[16] = 0x20; // ebx bit 5
        let x = cpuid_entry(&b);
        assert_eq!((x.function, x.index, x.ebx), (7, 0, 0x20));
        assert_eq!(cpuid_entry(&b[..3]).function, 0);
    }
}
