//! KVM's x86_64 userspace ABI (`<linux/kvm.h>`): the structs we pass to
//! ioctls and the request numbers. Layouts are pinned here with
//! `static_assertions` and checked field by field against `kvm-bindings`
//! in the tests (a dev-dependency only: it needs `std`).

use rustix::ioctl::{opcode, Opcode};
use static_assertions::const_assert_eq;

const KVMIO: u8 = 0xae;

/// `KVM_GET_API_VERSION` must return this.
pub const KVM_API_VERSION: i32 = 12;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmSegment {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    pub type_: u8,
    pub present: u8,
    pub dpl: u8,
    pub db: u8,
    pub s: u8,
    pub l: u8,
    pub g: u8,
    pub avl: u8,
    pub unusable: u8,
    pub padding: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmDtable {
    pub base: u64,
    pub limit: u16,
    pub padding: [u16; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmSregs {
    pub cs: KvmSegment,
    pub ds: KvmSegment,
    pub es: KvmSegment,
    pub fs: KvmSegment,
    pub gs: KvmSegment,
    pub ss: KvmSegment,
    pub tr: KvmSegment,
    pub ldt: KvmSegment,
    pub gdt: KvmDtable,
    pub idt: KvmDtable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub apic_base: u64,
    pub interrupt_bitmap: [u64; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmUserspaceMemoryRegion {
    pub slot: u32,
    pub flags: u32,
    pub guest_phys_addr: u64,
    pub memory_size: u64,
    pub userspace_addr: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmCpuidEntry2 {
    pub function: u32,
    pub index: u32,
    pub flags: u32,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
    pub padding: [u32; 3],
}

/// Header of `struct kvm_cpuid2` (followed by `nent` entries).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmCpuid2Header {
    pub nent: u32,
    pub padding: u32,
}

/// Most CPUID entries we handle (KVM reports ~50-80 on current CPUs).
pub const MAX_CPUID_ENTRIES: usize = 128;

/// `struct kvm_cpuid2` with room for `MAX_CPUID_ENTRIES` entries.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KvmCpuid2 {
    pub header: KvmCpuid2Header,
    pub entries: [KvmCpuidEntry2; MAX_CPUID_ENTRIES],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmMsrEntry {
    pub index: u32,
    pub reserved: u32,
    pub data: u64,
}

/// Header of `struct kvm_msrs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmMsrsHeader {
    pub nmsrs: u32,
    pub pad: u32,
}

/// `struct kvm_msrs` with `N` entries.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KvmMsrs<const N: usize> {
    pub header: KvmMsrsHeader,
    pub entries: [KvmMsrEntry; N],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmPitConfig {
    pub flags: u32,
    pub pad: [u32; 15],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmIrqLevel {
    pub irq: u32,
    pub level: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmIrqfd {
    pub fd: u32,
    pub gsi: u32,
    pub flags: u32,
    pub resamplefd: u32,
    pub pad: [u8; 16],
}

/// `struct kvm_lapic_state`: the local APIC's 1 KiB register page.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KvmLapicState {
    pub regs: [u8; 1024],
}

/// A KVM state struct kept as its bytes (8-aligned, exactly its size): the
/// warm image format stores these structs whole (`linker::warm`), so the
/// stub never needs their fields, only their sizes (checked against
/// `kvm-bindings` in the tests).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub struct Blob<const N: usize>(pub [u8; N]);

impl<const N: usize> Blob<N> {
    pub const ZERO: Self = Blob([0; N]);
}

/// `struct kvm_irqchip` (chip id, pad, the 512-byte PIC or IOAPIC state).
pub type KvmIrqchip = Blob<{ linker::warm::IRQCHIP_LEN }>;
/// `struct kvm_pit_state2`.
pub type KvmPitState2 = Blob<{ linker::warm::PIT_LEN }>;
/// `struct kvm_clock_data`.
pub type KvmClockData = Blob<{ linker::warm::CLOCK_LEN }>;
/// `struct kvm_xsave` (the legacy 4 KiB area; `KVM_CAP_XSAVE2` may want more).
pub type KvmXsave = Blob<4096>;
/// `struct kvm_xcrs`.
pub type KvmXcrs = Blob<{ linker::warm::XCRS_LEN }>;
/// `struct kvm_vcpu_events`.
pub type KvmVcpuEvents = Blob<{ linker::warm::EVENTS_LEN }>;
/// `struct kvm_debugregs`.
pub type KvmDebugregs = Blob<{ linker::warm::DEBUGREGS_LEN }>;
/// `kvm_irqchip.chip_id` values.
pub const KVM_IRQCHIP_PIC_MASTER: u32 = 0;
pub const KVM_IRQCHIP_PIC_SLAVE: u32 = 1;
pub const KVM_IRQCHIP_IOAPIC: u32 = 2;

/// The fixed head of the vCPU's shared `struct kvm_run` page. The exit
/// union at offset 32 is read through the typed views below.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KvmRun {
    pub request_interrupt_window: u8,
    pub immediate_exit: u8,
    pub padding1: [u8; 6],
    pub exit_reason: u32,
    pub ready_for_interrupt_injection: u8,
    pub if_flag: u8,
    pub flags: u16,
    pub cr8: u64,
    pub apic_base: u64,
    /// The 256-byte exit union.
    pub exit: [u64; 32],
    pub kvm_valid_regs: u64,
    pub kvm_dirty_regs: u64,
}

/// `kvm_run.io` (KVM_EXIT_IO). Data lives at `data_offset` in the run page.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KvmRunIo {
    pub direction: u8,
    pub size: u8,
    pub port: u16,
    pub count: u32,
    pub data_offset: u64,
}
pub const KVM_EXIT_IO_IN: u8 = 0;
pub const KVM_EXIT_IO_OUT: u8 = 1;

/// `kvm_run.mmio` (KVM_EXIT_MMIO).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KvmRunMmio {
    pub phys_addr: u64,
    pub data: [u8; 8],
    pub len: u32,
    pub is_write: u8,
}

/// `kvm_run.fail_entry` (KVM_EXIT_FAIL_ENTRY).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KvmRunFailEntry {
    pub hardware_entry_failure_reason: u64,
    pub cpu: u32,
}

/// Head of `kvm_run.internal` (KVM_EXIT_INTERNAL_ERROR).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KvmRunInternal {
    pub suberror: u32,
    pub ndata: u32,
}

/// Head of `kvm_run.system_event` (KVM_EXIT_SYSTEM_EVENT).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KvmRunSystemEvent {
    pub type_: u32,
    pub ndata: u32,
}

const_assert_eq!(core::mem::size_of::<KvmRegs>(), 144);
const_assert_eq!(core::mem::size_of::<KvmSegment>(), 24);
const_assert_eq!(core::mem::size_of::<KvmDtable>(), 16);
const_assert_eq!(core::mem::size_of::<KvmSregs>(), 312);
const_assert_eq!(core::mem::size_of::<KvmUserspaceMemoryRegion>(), 32);
const_assert_eq!(core::mem::size_of::<KvmCpuidEntry2>(), 40);
const_assert_eq!(core::mem::size_of::<KvmCpuid2Header>(), 8);
const_assert_eq!(core::mem::size_of::<KvmMsrEntry>(), 16);
const_assert_eq!(core::mem::size_of::<KvmMsrsHeader>(), 8);
const_assert_eq!(core::mem::size_of::<KvmPitConfig>(), 64);
const_assert_eq!(core::mem::size_of::<KvmIrqLevel>(), 8);
const_assert_eq!(core::mem::size_of::<KvmIrqfd>(), 32);
const_assert_eq!(core::mem::size_of::<KvmLapicState>(), 1024);
const_assert_eq!(core::mem::offset_of!(KvmRun, exit), 32);
const_assert_eq!(core::mem::offset_of!(KvmRun, kvm_valid_regs), 288);
const_assert_eq!(core::mem::size_of::<KvmRunIo>(), 16);
const_assert_eq!(core::mem::size_of::<KvmRunMmio>(), 24);
const_assert_eq!(core::mem::size_of::<KvmRunFailEntry>(), 16);

// Exit reasons (`KVM_EXIT_*`).
pub const KVM_EXIT_IO: u32 = 2;
pub const KVM_EXIT_MMIO: u32 = 6;
pub const KVM_EXIT_SHUTDOWN: u32 = 8;
pub const KVM_EXIT_FAIL_ENTRY: u32 = 9;
pub const KVM_EXIT_INTR: u32 = 10;
pub const KVM_EXIT_INTERNAL_ERROR: u32 = 17;
pub const KVM_EXIT_SYSTEM_EVENT: u32 = 24;

// Capabilities (`KVM_CAP_*`).
pub const KVM_CAP_IRQCHIP: u32 = 0;
pub const KVM_CAP_USER_MEMORY: u32 = 3;
pub const KVM_CAP_SET_TSS_ADDR: u32 = 4;
pub const KVM_CAP_EXT_CPUID: u32 = 7;
pub const KVM_CAP_PIT2: u32 = 33;
pub const KVM_CAP_IRQFD: u32 = 32;
pub const KVM_CAP_TSC_DEADLINE_TIMER: u32 = 72;
pub const KVM_CAP_MAX_VCPUS: u32 = 66;
pub const KVM_CAP_IMMEDIATE_EXIT: u32 = 136;
// What a warm restore needs (each checked before it starts).
pub const KVM_CAP_MP_STATE: u32 = 14;
pub const KVM_CAP_ADJUST_CLOCK: u32 = 39;
pub const KVM_CAP_VCPU_EVENTS: u32 = 41;
pub const KVM_CAP_PIT_STATE2: u32 = 35;
pub const KVM_CAP_DEBUGREGS: u32 = 50;
pub const KVM_CAP_XSAVE: u32 = 55;
pub const KVM_CAP_XCRS: u32 = 56;
pub const KVM_CAP_TSC_CONTROL: u32 = 60;
pub const KVM_CAP_GET_TSC_KHZ: u32 = 61;

/// `KVM_MEM_*` flags of a memory region.
pub const KVM_MEM_READONLY: u32 = 1 << 1;

// Ioctl request numbers. System ioctls (on /dev/kvm):
pub const KVM_GET_API_VERSION: Opcode = opcode::none(KVMIO, 0x00);
pub const KVM_CREATE_VM: Opcode = opcode::none(KVMIO, 0x01);
pub const KVM_CHECK_EXTENSION: Opcode = opcode::none(KVMIO, 0x03);
pub const KVM_GET_VCPU_MMAP_SIZE: Opcode = opcode::none(KVMIO, 0x04);
pub const KVM_GET_SUPPORTED_CPUID: Opcode = opcode::read_write::<KvmCpuid2Header>(KVMIO, 0x05);
// VM ioctls:
pub const KVM_CREATE_VCPU: Opcode = opcode::none(KVMIO, 0x41);
pub const KVM_SET_USER_MEMORY_REGION: Opcode =
    opcode::write::<KvmUserspaceMemoryRegion>(KVMIO, 0x46);
pub const KVM_SET_TSS_ADDR: Opcode = opcode::none(KVMIO, 0x47);
pub const KVM_SET_IDENTITY_MAP_ADDR: Opcode = opcode::write::<u64>(KVMIO, 0x48);
pub const KVM_CREATE_IRQCHIP: Opcode = opcode::none(KVMIO, 0x60);
pub const KVM_IRQ_LINE: Opcode = opcode::write::<KvmIrqLevel>(KVMIO, 0x61);
pub const KVM_IRQFD: Opcode = opcode::write::<KvmIrqfd>(KVMIO, 0x76);
pub const KVM_CREATE_PIT2: Opcode = opcode::write::<KvmPitConfig>(KVMIO, 0x77);
// vCPU ioctls:
pub const KVM_RUN: Opcode = opcode::none(KVMIO, 0x80);
pub const KVM_GET_REGS: Opcode = opcode::read::<KvmRegs>(KVMIO, 0x81);
pub const KVM_SET_REGS: Opcode = opcode::write::<KvmRegs>(KVMIO, 0x82);
pub const KVM_GET_SREGS: Opcode = opcode::read::<KvmSregs>(KVMIO, 0x83);
pub const KVM_SET_SREGS: Opcode = opcode::write::<KvmSregs>(KVMIO, 0x84);
pub const KVM_SET_MSRS: Opcode = opcode::write::<KvmMsrsHeader>(KVMIO, 0x89);
pub const KVM_GET_LAPIC: Opcode = opcode::read::<KvmLapicState>(KVMIO, 0x8e);
pub const KVM_SET_LAPIC: Opcode = opcode::write::<KvmLapicState>(KVMIO, 0x8f);
pub const KVM_SET_CPUID2: Opcode = opcode::write::<KvmCpuid2Header>(KVMIO, 0x90);
// Warm image state (VM, then vCPU). KVM_SET_IRQCHIP is _IOR in the kernel's
// header (a historical slip the ABI keeps).
pub const KVM_GET_IRQCHIP: Opcode = opcode::read_write::<KvmIrqchip>(KVMIO, 0x62);
pub const KVM_SET_IRQCHIP: Opcode = opcode::read::<KvmIrqchip>(KVMIO, 0x63);
pub const KVM_SET_CLOCK: Opcode = opcode::write::<KvmClockData>(KVMIO, 0x7b);
pub const KVM_GET_CLOCK: Opcode = opcode::read::<KvmClockData>(KVMIO, 0x7c);
pub const KVM_GET_PIT2: Opcode = opcode::read::<KvmPitState2>(KVMIO, 0x9f);
pub const KVM_SET_PIT2: Opcode = opcode::write::<KvmPitState2>(KVMIO, 0xa0);
pub const KVM_GET_MSRS: Opcode = opcode::read_write::<KvmMsrsHeader>(KVMIO, 0x88);
pub const KVM_GET_CPUID2: Opcode = opcode::read_write::<KvmCpuid2Header>(KVMIO, 0x91);
pub const KVM_GET_MP_STATE: Opcode = opcode::read::<u32>(KVMIO, 0x98);
pub const KVM_SET_MP_STATE: Opcode = opcode::write::<u32>(KVMIO, 0x99);
pub const KVM_GET_VCPU_EVENTS: Opcode = opcode::read::<KvmVcpuEvents>(KVMIO, 0x9f);
pub const KVM_SET_VCPU_EVENTS: Opcode = opcode::write::<KvmVcpuEvents>(KVMIO, 0xa0);
pub const KVM_GET_DEBUGREGS: Opcode = opcode::read::<KvmDebugregs>(KVMIO, 0xa1);
pub const KVM_SET_DEBUGREGS: Opcode = opcode::write::<KvmDebugregs>(KVMIO, 0xa2);
pub const KVM_SET_TSC_KHZ: Opcode = opcode::none(KVMIO, 0xa2);
pub const KVM_GET_TSC_KHZ: Opcode = opcode::none(KVMIO, 0xa3);
pub const KVM_GET_XSAVE: Opcode = opcode::read::<KvmXsave>(KVMIO, 0xa4);
pub const KVM_SET_XSAVE: Opcode = opcode::write::<KvmXsave>(KVMIO, 0xa5);
pub const KVM_GET_XCRS: Opcode = opcode::read::<KvmXcrs>(KVMIO, 0xa6);
pub const KVM_SET_XCRS: Opcode = opcode::write::<KvmXcrs>(KVMIO, 0xa7);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};
    use kvm_bindings as kb;

    /// Asserts equal size and equal offset for each listed field.
    macro_rules! same_layout {
        ($ours:ty, $theirs:ty, $($f:ident : $g:ident),* $(,)?) => {
            assert_eq!(size_of::<$ours>(), size_of::<$theirs>(), stringify!($ours));
            $( assert_eq!(offset_of!($ours, $f), offset_of!($theirs, $g),
                          concat!(stringify!($ours), ".", stringify!($f))); )*
        };
    }

    #[test]
    fn structs_match_kvm_bindings() {
        same_layout!(KvmRegs, kb::kvm_regs, rax: rax, rbx: rbx, rcx: rcx, rdx: rdx, rsi: rsi,
            rdi: rdi, rsp: rsp, rbp: rbp, r8: r8, r9: r9, r10: r10, r11: r11, r12: r12,
            r13: r13, r14: r14, r15: r15, rip: rip, rflags: rflags);
        same_layout!(KvmSegment, kb::kvm_segment, base: base, limit: limit, selector: selector,
            type_: type_, present: present, dpl: dpl, db: db, s: s, l: l, g: g, avl: avl,
            unusable: unusable, padding: padding);
        same_layout!(KvmDtable, kb::kvm_dtable, base: base, limit: limit, padding: padding);
        same_layout!(KvmSregs, kb::kvm_sregs, cs: cs, ds: ds, es: es, fs: fs, gs: gs, ss: ss,
            tr: tr, ldt: ldt, gdt: gdt, idt: idt, cr0: cr0, cr2: cr2, cr3: cr3, cr4: cr4,
            cr8: cr8, efer: efer, apic_base: apic_base, interrupt_bitmap: interrupt_bitmap);
        same_layout!(KvmUserspaceMemoryRegion, kb::kvm_userspace_memory_region, slot: slot,
            flags: flags, guest_phys_addr: guest_phys_addr, memory_size: memory_size,
            userspace_addr: userspace_addr);
        same_layout!(KvmCpuidEntry2, kb::kvm_cpuid_entry2, function: function, index: index,
            flags: flags, eax: eax, ebx: ebx, ecx: ecx, edx: edx, padding: padding);
        same_layout!(KvmCpuid2Header, kb::kvm_cpuid2, nent: nent, padding: padding);
        assert_eq!(offset_of!(KvmCpuid2, entries), offset_of!(kb::kvm_cpuid2, entries));
        same_layout!(KvmMsrEntry, kb::kvm_msr_entry, index: index, reserved: reserved,
            data: data);
        same_layout!(KvmMsrsHeader, kb::kvm_msrs, nmsrs: nmsrs, pad: pad);
        assert_eq!(offset_of!(KvmMsrs<1>, entries), offset_of!(kb::kvm_msrs, entries));
        same_layout!(KvmPitConfig, kb::kvm_pit_config, flags: flags, pad: pad);
        same_layout!(KvmIrqfd, kb::kvm_irqfd, fd: fd, gsi: gsi, flags: flags,
            resamplefd: resamplefd, pad: pad);
        same_layout!(KvmLapicState, kb::kvm_lapic_state, regs: regs);
        assert_eq!(size_of::<KvmIrqLevel>(), size_of::<kb::kvm_irq_level>());
        assert_eq!(offset_of!(KvmIrqLevel, irq), offset_of!(kb::kvm_irq_level, __bindgen_anon_1));
        assert_eq!(offset_of!(KvmIrqLevel, level), offset_of!(kb::kvm_irq_level, level));
    }

    #[test]
    fn kvm_run_matches_kvm_bindings() {
        // The head fields and the union's position.
        assert_eq!(offset_of!(KvmRun, request_interrupt_window),
                   offset_of!(kb::kvm_run, request_interrupt_window));
        assert_eq!(offset_of!(KvmRun, immediate_exit), offset_of!(kb::kvm_run, immediate_exit));
        assert_eq!(offset_of!(KvmRun, exit_reason), offset_of!(kb::kvm_run, exit_reason));
        assert_eq!(offset_of!(KvmRun, ready_for_interrupt_injection),
                   offset_of!(kb::kvm_run, ready_for_interrupt_injection));
        assert_eq!(offset_of!(KvmRun, if_flag), offset_of!(kb::kvm_run, if_flag));
        assert_eq!(offset_of!(KvmRun, flags), offset_of!(kb::kvm_run, flags));
        assert_eq!(offset_of!(KvmRun, cr8), offset_of!(kb::kvm_run, cr8));
        assert_eq!(offset_of!(KvmRun, apic_base), offset_of!(kb::kvm_run, apic_base));
        assert_eq!(offset_of!(KvmRun, exit), offset_of!(kb::kvm_run, __bindgen_anon_1));
        assert_eq!(offset_of!(KvmRun, kvm_valid_regs), offset_of!(kb::kvm_run, kvm_valid_regs));
        assert_eq!(offset_of!(KvmRun, kvm_dirty_regs), offset_of!(kb::kvm_run, kvm_dirty_regs));
        assert_eq!(size_of::<[u64; 32]>(), size_of::<kb::kvm_run__bindgen_ty_1>());
        // The exit views.
        same_layout!(KvmRunIo, kb::kvm_run__bindgen_ty_1__bindgen_ty_4, direction: direction,
            size: size, port: port, count: count, data_offset: data_offset);
        same_layout!(KvmRunMmio, kb::kvm_run__bindgen_ty_1__bindgen_ty_6, phys_addr: phys_addr,
            data: data, len: len, is_write: is_write);
        same_layout!(KvmRunFailEntry, kb::kvm_run__bindgen_ty_1__bindgen_ty_2,
            hardware_entry_failure_reason: hardware_entry_failure_reason, cpu: cpu);
        assert_eq!(offset_of!(KvmRunInternal, suberror),
                   offset_of!(kb::kvm_run__bindgen_ty_1__bindgen_ty_13, suberror));
        assert_eq!(offset_of!(KvmRunInternal, ndata),
                   offset_of!(kb::kvm_run__bindgen_ty_1__bindgen_ty_13, ndata));
        let run = kb::kvm_run::default();
        let base = core::ptr::addr_of!(run.__bindgen_anon_1) as usize;
        let (io, mmio, ev) = (
            core::ptr::addr_of!(run.__bindgen_anon_1.io) as usize,
            core::ptr::addr_of!(run.__bindgen_anon_1.mmio) as usize,
            core::ptr::addr_of!(run.__bindgen_anon_1.system_event) as usize,
        );
        assert_eq!((io - base, mmio - base, ev - base), (0, 0, 0));
        assert_eq!(offset_of!(KvmRunSystemEvent, type_),
                   offset_of!(kb::kvm_run__bindgen_ty_1__bindgen_ty_19, type_));
    }

    #[test]
    fn warm_state_structs_match_kvm_bindings() {
        assert_eq!(size_of::<KvmIrqchip>(), size_of::<kb::kvm_irqchip>());
        assert_eq!(size_of::<KvmPitState2>(), size_of::<kb::kvm_pit_state2>());
        assert_eq!(size_of::<KvmClockData>(), size_of::<kb::kvm_clock_data>());
        assert_eq!(size_of::<KvmXsave>(), size_of::<kb::kvm_xsave>());
        assert_eq!(size_of::<KvmXcrs>(), size_of::<kb::kvm_xcrs>());
        assert_eq!(size_of::<KvmVcpuEvents>(), size_of::<kb::kvm_vcpu_events>());
        assert_eq!(size_of::<KvmDebugregs>(), size_of::<kb::kvm_debugregs>());
        assert_eq!(size_of::<u32>(), size_of::<kb::kvm_mp_state>());
        assert_eq!(size_of::<KvmRegs>(), linker::warm::REGS_LEN);
        assert_eq!(size_of::<KvmSregs>(), linker::warm::SREGS_LEN);
        assert_eq!(size_of::<KvmLapicState>(), linker::warm::LAPIC_LEN);
        assert_eq!(size_of::<KvmCpuidEntry2>(), linker::warm::CPUID_ENTRY_LEN);
        assert_eq!(size_of::<KvmMsrEntry>(), linker::warm::MSR_LEN);
        assert_eq!(MAX_CPUID_ENTRIES, linker::warm::MAX_CPUID as usize);
        // The fields the stub reads from the bytes.
        assert_eq!(offset_of!(kb::kvm_irqchip, chip_id), 0);
        assert_eq!(offset_of!(kb::kvm_clock_data, flags), 8);
        assert_eq!(offset_of!(kb::kvm_xcrs, nr_xcrs), 0);
        assert!(align_of::<KvmXsave>() >= align_of::<kb::kvm_xsave>());
        assert!(align_of::<KvmIrqchip>() >= align_of::<kb::kvm_irqchip>());
    }

    #[test]
    fn warm_request_numbers_match_the_kernel_headers() {
        // From <linux/kvm.h> (printed by a C program on this host).
        let expected = [
            (KVM_GET_IRQCHIP, 0xc208_ae62), (KVM_SET_IRQCHIP, 0x8208_ae63),
            (KVM_GET_CLOCK, 0x8030_ae7c), (KVM_SET_CLOCK, 0x4030_ae7b),
            (KVM_GET_PIT2, 0x8070_ae9f), (KVM_SET_PIT2, 0x4070_aea0),
            (KVM_GET_MP_STATE, 0x8004_ae98), (KVM_SET_MP_STATE, 0x4004_ae99),
            (KVM_GET_VCPU_EVENTS, 0x8040_ae9f), (KVM_SET_VCPU_EVENTS, 0x4040_aea0),
            (KVM_GET_DEBUGREGS, 0x8080_aea1), (KVM_SET_DEBUGREGS, 0x4080_aea2),
            (KVM_GET_XSAVE, 0x9000_aea4), (KVM_SET_XSAVE, 0x5000_aea5),
            (KVM_GET_XCRS, 0x8188_aea6), (KVM_SET_XCRS, 0x4188_aea7),
            (KVM_GET_MSRS, 0xc008_ae88), (KVM_GET_CPUID2, 0xc008_ae91), (KVM_GET_TSC_KHZ, 0xaea3),
            (KVM_SET_TSC_KHZ, 0xaea2),
        ];
        for (ours, theirs) in expected {
            assert_eq!(ours, theirs, "{ours:#x}");
        }
    }

    #[test]
    fn request_numbers_match_the_kernel_headers() {
        assert_eq!(KVM_CREATE_VM, 0xae01);
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_SUPPORTED_CPUID, 0xc008_ae05);
        assert_eq!(KVM_SET_USER_MEMORY_REGION, 0x4020_ae46);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_SET_SREGS, 0x4138_ae84);
        assert_eq!(KVM_SET_MSRS, 0x4008_ae89);
        assert_eq!(KVM_SET_CPUID2, 0x4008_ae90);
        assert_eq!(KVM_CREATE_PIT2, 0x4040_ae77);
        assert_eq!(KVM_IRQ_LINE, 0x4008_ae61);
        assert_eq!(KVM_SET_LAPIC, 0x4400_ae8f);
    }
}
