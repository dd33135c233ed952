//! The boot vCPU's state for the 64-bit boot protocol: long mode with a
//! flat GDT (`__BOOT_CS` = 0x10, `__BOOT_DS` = 0x18), identity-mapped page
//! tables for the low 4 GiB, `rsi` = zero page; plus CPUID, MSRs and LAPIC.

use super::layout::*;
use crate::mem::{GuestAddress, GuestMemory};
use crate::sys::kvm::*;

const CR0_PE: u64 = 1;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// GDT: null, null, 64-bit code (0x10), data (0x18), a 16-byte TSS (0x20).
pub const GDT: [u64; 6] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0x0000_8b00_0000_0067, 0];
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;
const BOOT_TSS: u16 = 0x20;

/// Writes the GDT and the identity page tables (2 MiB pages, 0..4 GiB).
pub fn write_tables(mem: &mut GuestMemory) -> Option<()> {
    mem.write_obj(GuestAddress(GDT_ADDR), GDT)?;
    mem.write_obj(GuestAddress(PML4_ADDR), PDPT_ADDR | 3)?;
    for g in 0..4u64 {
        let pd = PD_ADDR + g * 4096;
        mem.write_obj(GuestAddress(PDPT_ADDR + g * 8), pd | 3)?;
        let mut entries = [0u64; 512];
        for (j, e) in entries.iter_mut().enumerate() {
            // Present | writable | 2 MiB page.
            *e = (g << 30) | ((j as u64) << 21) | 0x83; // j < 512: the fields do not overlap
        }
        mem.write_obj(GuestAddress(pd), entries)?;
    }
    Some(())
}

const fn segment(selector: u16, type_: u8, s: u8, l: u8, db: u8, g: u8, limit: u32) -> KvmSegment {
    KvmSegment {
        base: 0, limit, selector, type_, present: 1, dpl: 0, db, s, l, g, avl: 0, unusable: 0, padding: 0,
    }
}

// Constants: copying them costs the stub less than storing each field.
const CODE: KvmSegment = segment(BOOT_CS, 0xb, 1, 1, 0, 1, 0xffff_ffff);
const DATA: KvmSegment = segment(BOOT_DS, 0x3, 1, 0, 1, 1, 0xffff_ffff);
const TSS: KvmSegment = segment(BOOT_TSS, 0xb, 0, 0, 0, 0, 0x67);

/// Long-mode system registers, set over the vCPU's reset state.
pub fn long_mode_sregs(sregs: &mut KvmSregs) {
    sregs.cs = CODE;
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (DATA, DATA, DATA, DATA, DATA);
    sregs.tr = TSS;
    sregs.gdt = KvmDtable { base: GDT_ADDR, limit: (GDT.len() * 8 - 1) as u16, padding: [0; 3] };
    // No IDT: any exception before the kernel installs one triple-faults,
    // which the stub reports as a guest crash.
    sregs.idt = KvmDtable::default();
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG;
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.efer = EFER_LME | EFER_LMA;
}

/// General registers at the kernel's 64-bit entry.
pub fn boot_regs(entry: u64) -> KvmRegs {
    KvmRegs {
        rip: entry,
        rsi: ZERO_PAGE_ADDR,
        rsp: BOOT_STACK_TOP,
        rbp: BOOT_STACK_TOP,
        rflags: 2,
        ..Default::default()
    }
}

/// Adjusts KVM's supported CPUID for vCPU `id` of `count` (its APIC id is
/// `id`): sets the hypervisor bit (the KVM paravirt leaves 0x4000_00xx come
/// from KVM) and, when KVM emulates it (`KVM_CAP_TSC_DEADLINE_TIMER`, which
/// KVM_GET_SUPPORTED_CPUID does not report), the TSC-deadline timer bit:
/// Linux then needs no LAPIC timer calibration against the PIT.
///
/// Topology, as Firecracker and crosvm normalise it: one package of `count`
/// cores, one thread each, instead of the host's. KVM passes the host's
/// cache and topology leaves through, so without this every vCPU would
/// claim the host's APIC id layout and core count.
#[inline(never)]
pub fn patch_cpuid(cpuid: &mut KvmCpuid2, tsc_deadline: bool, id: u32, count: u32) {
    let n = (cpuid.header.nent as usize).min(MAX_CPUID_ENTRIES);
    // The highest core number, and the APIC id bits that hold it.
    let last = count.saturating_sub(1);
    let core_bits = u32::BITS - last.leading_zeros();
    for e in &mut cpuid.entries[..n] {
        match e.function {
            1 => {
                e.ecx |= 1 << 31;
                if tsc_deadline {
                    e.ecx |= 1 << 24;
                }
                // APIC id, logical processors in the package (valid with
                // HTT), keep CLFLUSH size.
                e.ebx = (e.ebx & 0xffff) | (count << 16) | (id << 24);
                if count > 1 {
                    e.edx |= 1 << 28;
                }
            }
            // Deterministic cache parameters: cores in the package; an L3
            // is shared by all of them, L1 and L2 by one.
            4 => {
                let sharing = if (e.eax >> 5) & 7 >= 3 { last } else { 0 };
                e.eax = (e.eax & 0x3fff) | (sharing << 14) | (last << 26);
            }
            // x2APIC topology: level 0 the thread (1 per core), level 1 the
            // core (`count` per package), then none.
            0xb | 0x1f => {
                (e.eax, e.ebx, e.ecx) = match e.index {
                    0 => (0, 1, 1 << 8),
                    1 => (core_bits, count, 2 << 8 | 1),
                    i => (0, 0, i),
                };
                e.edx = id;
            }
            // AMD: cores in the package and their APIC id bits; extended
            // APIC id, core id, one thread per core, one node.
            0x8000_0008 => e.ecx = (e.ecx & !0xf0ff) | (core_bits << 12) | last,
            0x8000_001e => (e.eax, e.ebx, e.ecx) = (id, id, 0),
            _ => {}
        }
    }
}

const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;

/// Boot MSRs: fast string operations on, MTRRs enabled with write-back default.
pub fn boot_msrs() -> KvmMsrs<2> {
    KvmMsrs {
        header: KvmMsrsHeader { nmsrs: 2, pad: 0 },
        entries: [
            KvmMsrEntry { index: MSR_IA32_MISC_ENABLE, reserved: 0, data: 1 },
            KvmMsrEntry { index: MSR_MTRR_DEF_TYPE, reserved: 0, data: (1 << 11) | 6 },
        ],
    }
}

const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 4;
const APIC_MODE_EXTINT: u32 = 7;

/// Virtual-wire mode: LINT0 delivers the PIC's interrupts (ExtINT), LINT1 NMIs.
pub fn patch_lapic(lapic: &mut KvmLapicState) {
    for (reg, mode) in [(APIC_LVT_LINT0, APIC_MODE_EXTINT), (APIC_LVT_LINT1, APIC_MODE_NMI)] {
        // The registers are constant offsets inside the 1 KiB page.
        if let Some(r) = lapic.regs.get_mut(reg..).and_then(|r| r.first_chunk_mut::<4>()) {
            *r = ((u32::from_le_bytes(*r) & !0x700) | (mode << 8)).to_le_bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tables_identity_map_4_gib() {
        let mut m = GuestMemory::new(1 << 20).expect("mmap");
        write_tables(&mut m).expect("fits");
        let pdpt = m.read_obj::<u64>(GuestAddress(PML4_ADDR)).expect("in ram") & !0xfff;
        for gib in 0..4u64 {
            let pd = m.read_obj::<u64>(GuestAddress(pdpt + gib * 8)).expect("in ram") & !0xfff;
            let last = m.read_obj::<u64>(GuestAddress(pd + 511 * 8)).expect("in ram");
            assert_eq!(last, (gib << 30) + (511 << 21) + 0x83);
        }
        assert_eq!(m.read_obj::<u64>(GuestAddress(GDT_ADDR + 16)), Some(GDT[2]));
    }

    #[test]
    fn gdt_matches_the_segments_loaded() {
        let mut s = KvmSregs::default();
        long_mode_sregs(&mut s);
        // Access byte (bits 40..48) of the GDT entries vs. the segment fields.
        let access = |e: u64| (e >> 40) as u8;
        assert_eq!(access(GDT[usize::from(s.cs.selector / 8)]) & 0xf, s.cs.type_);
        assert_eq!(access(GDT[usize::from(s.ds.selector / 8)]) & 0xf, s.ds.type_);
        assert_eq!(access(GDT[usize::from(s.tr.selector / 8)]) & 0xf, s.tr.type_);
        assert_eq!((GDT[2] >> 53) & 1, u64::from(s.cs.l));
        assert_eq!(s.efer & EFER_LMA, EFER_LMA);
    }

    #[test]
    fn cpuid_gets_hypervisor_apic_id_0_and_optional_tsc_deadline() {
        let leaf1 = KvmCpuidEntry2 { function: 1, ebx: 0x0702_0800, ecx: 0, ..Default::default() };
        let mut c = KvmCpuid2 { header: KvmCpuid2Header { nent: 1, padding: 0 }, entries: [leaf1; MAX_CPUID_ENTRIES] };
        patch_cpuid(&mut c, false, 0, 1);
        assert_eq!((c.entries[0].ecx, c.entries[0].ebx, c.entries[0].edx), (1 << 31, 0x0001_0800, 0));
        assert_eq!(c.entries[1].ecx, 0, "entries past nent are untouched");
        patch_cpuid(&mut c, true, 0, 1);
        assert_eq!(c.entries[0].ecx, (1 << 31) | (1 << 24));
    }

    /// Each vCPU's leaves of a 4-vCPU machine as the guest sees them: its
    /// own APIC id everywhere, 4 cores of one thread in one package.
    #[test]
    fn cpuid_topology_per_vcpu() {
        let leaf = |function, index, eax, ebx, ecx, edx| KvmCpuidEntry2 { function, index, eax, ebx, ecx, edx, ..Default::default() };
        // Host values: APIC id 0x0e, 16 logical; caches shared by 2 and 32; 2 threads/core.
        let host = [
            leaf(1, 0, 0, 0x0e10_0800, 0, 0),
            leaf(4, 0, 0x1c00_4121, 0, 0, 0),  // L1d, 2 sharing, 8 cores
            leaf(4, 3, 0x1c07_c163, 0, 0, 0),  // L3, 32 sharing
            leaf(0xb, 0, 1, 2, 0x100, 0x0e),
            leaf(0xb, 1, 5, 16, 0x201, 0x0e),
            leaf(0xb, 2, 0, 0, 2, 0x0e),
            leaf(0x8000_0008, 0, 0x3030, 0, 0x700f, 0),
            leaf(0x8000_001e, 0, 0, 0, 0, 0),
        ];
        for id in 0..4u32 {
            let mut c = KvmCpuid2 { header: KvmCpuid2Header { nent: host.len() as u32, padding: 0 }, entries: [KvmCpuidEntry2::default(); MAX_CPUID_ENTRIES] };
            c.entries[..host.len()].copy_from_slice(&host);
            patch_cpuid(&mut c, false, id, 4);
            let e = &c.entries;
            assert_eq!(e[0].ebx, (id << 24) | (4 << 16) | 0x0800, "leaf 1: APIC id, 4 logical");
            assert_eq!(e[0].edx & (1 << 28), 1 << 28, "HTT: the count is valid");
            assert_eq!((e[1].eax >> 26, (e[1].eax >> 14) & 0xfff, e[1].eax & 0x3fff), (3, 0, 0x0121), "L1: 4 cores, not shared");
            assert_eq!(((e[2].eax >> 14) & 0xfff, e[2].eax & 0x3fff), (3, 0x0163), "L3: shared by all 4");
            assert_eq!((e[3].eax, e[3].ebx, e[3].ecx, e[3].edx), (0, 1, 0x100, id), "SMT level: 1 thread");
            assert_eq!((e[4].eax, e[4].ebx, e[4].ecx, e[4].edx), (2, 4, 0x201, id), "core level: 4, 2 id bits");
            assert_eq!((e[5].eax, e[5].ebx, e[5].ecx, e[5].edx), (0, 0, 2, id), "no further level");
            assert_eq!(e[6].ecx, (2 << 12) | 3, "AMD: 4 cores, 2 id bits");
            assert_eq!((e[7].eax, e[7].ebx, e[7].ecx), (id, id, 0));
        }
    }

    #[test]
    fn lapic_lint_modes() {
        let reg = |l: &KvmLapicState, at: usize| u32::from_le_bytes(l.regs[at..at + 4].try_into().expect("4"));
        let mut l = KvmLapicState { regs: [0; 1024] };
        patch_lapic(&mut l);
        assert_eq!((reg(&l, 0x350), reg(&l, 0x360)), (0x700, 0x400));
        // Other bits (mask, vector, trigger) are kept.
        let mut l = KvmLapicState { regs: [0xff; 1024] };
        patch_lapic(&mut l);
        assert_eq!((reg(&l, 0x350), reg(&l, 0x360)), (0xffff_ffff, 0xffff_fcff));
    }
}
