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

/// Adjusts KVM's supported CPUID for one vCPU with APIC id 0: sets the
/// hypervisor bit (the KVM paravirt leaves 0x4000_00xx come from KVM) and,
/// when KVM emulates it (`KVM_CAP_TSC_DEADLINE_TIMER`, which
/// KVM_GET_SUPPORTED_CPUID does not report), the TSC-deadline timer bit:
/// Linux then needs no LAPIC timer calibration against the PIT.
pub fn patch_cpuid(cpuid: &mut KvmCpuid2, tsc_deadline: bool) {
    let n = (cpuid.header.nent as usize).min(MAX_CPUID_ENTRIES);
    for e in &mut cpuid.entries[..n] {
        match e.function {
            1 => {
                e.ecx |= 1 << 31;
                if tsc_deadline {
                    e.ecx |= 1 << 24;
                }
                // APIC id 0, one logical processor, keep CLFLUSH size.
                e.ebx = (e.ebx & 0xffff) | (1 << 16);
            }
            0xb | 0x1f => e.edx = 0, // x2APIC id
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
        patch_cpuid(&mut c, false);
        assert_eq!((c.entries[0].ecx, c.entries[0].ebx), (1 << 31, 0x0001_0800));
        assert_eq!(c.entries[1].ecx, 0, "entries past nent are untouched");
        patch_cpuid(&mut c, true);
        assert_eq!(c.entries[0].ecx, (1 << 31) | (1 << 24));
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
