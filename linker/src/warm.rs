//! Warm images: the two section kinds that hold a booted guest (issue #20),
//! [`Kind::MachineState`](crate::image::Kind::MachineState) and
//! [`Kind::GuestMemory`](crate::image::Kind::GuestMemory). `no_std`, no
//! allocation: the stub validates both before it creates a VM. Both are
//! hostile input, checked like the trailer: magic, version, exact length,
//! counts bounded, every address inside guest RAM, no overlaps. A reader
//! returns an error for anything it does not fully understand.
//!
//! # Machine state (version 1, little-endian, fixed layouts)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0  | 8 | magic `b"SMOLSTAT"` |
//! | 8  | 4 | version, `1` |
//! | 12 | 4 | vCPUs, `1..=MAX_CPUS` |
//! | 16 | 8 | guest RAM size in bytes (page multiple; the run must use the same) |
//! | 24 | 4 | XSAVE area length per vCPU ([`MIN_XSAVE_LEN`]`..=`[`MAX_XSAVE_LEN`], 64-byte multiple) |
//! | 28 | 4 | CPUID entries, `..=`[`MAX_CPUID`] |
//! | 32 | 8 | XSAVE feature mask (XCR0 bits the saving host supported: CPUID 0xD.0 EDX:EAX) |
//! | 40 | 4 | MSRs per vCPU, `..=`[`MAX_MSRS`] |
//! | 44 | 4 | device records, `..=MMIO_MAX_SLOTS` |
//! | 48 | 4 | guest TSC frequency in kHz (0: unknown) |
//! | 52 | 12 | reserved, zero |
//!
//! Then, in this order, each a KVM x86-64 ABI struct's bytes as the kernel
//! returns them (`<linux/kvm.h>`; the stub pins its structs to these sizes):
//! * VM: `kvm_irqchip` PIC master, PIC slave, IOAPIC ([`IRQCHIP_LEN`] each),
//!   `kvm_pit_state2` ([`PIT_LEN`]), `kvm_clock_data` ([`CLOCK_LEN`]);
//! * the CPUID the guest saw: `kvm_cpuid_entry2` × CPUID entries;
//! * per vCPU ([`Layout::vcpu_len`]): `kvm_regs`, `kvm_sregs`, `kvm_xcrs`,
//!   `kvm_lapic_state`, `kvm_vcpu_events`, `kvm_mp_state` (+4 zero bytes),
//!   `kvm_debugregs`, `kvm_msr_entry` × MSRs (indices from [`SAVED_MSRS`],
//!   strictly increasing), the XSAVE area;
//! * device records ([`DEVICE_LEN`] each, [`Device`]): the virtio-mmio
//!   transport and its queues, in increasing slot order.
//!
//! # Guest memory (version 1)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0  | 8 | magic `b"SMOLMEM\0"` |
//! | 8  | 4 | version, `1` |
//! | 12 | 4 | runs, `..=`[`MAX_RUNS`] |
//! | 16 | 8 | guest RAM size (equal to the state's) |
//! | 24 | 8 | reserved, zero |
//! | 32 | 24 × runs | run: guest-physical address, pages, offset of its data in the section |
//!
//! Page data starts at the first 4 KiB boundary after the table. Runs are in
//! increasing guest-address order, page aligned, each inside one RAM range
//! (low RAM below `MMIO_BASE`, high RAM from 4 GiB), never overlapping; their
//! data is in the same order, page aligned (sections start on 4 KiB, so the
//! stub can `mmap` it `MAP_PRIVATE` over guest RAM), non-overlapping, and the
//! section ends exactly where the last run's data does. Pages not in a run
//! are zero.

use crate::abi::{MAX_CPUS, MMIO_BASE, MMIO_MAX_SLOTS};
use crate::image::{u32_at, u64_at};
use static_assertions::const_assert_eq;

pub const PAGE: u64 = 4096;
pub const STATE_MAGIC: [u8; 8] = *b"SMOLSTAT";
pub const MEMORY_MAGIC: [u8; 8] = *b"SMOLMEM\0";
pub const STATE_VERSION: u32 = 1;
pub const MEMORY_VERSION: u32 = 1;
pub const STATE_HEADER_LEN: usize = 64;
pub const MEMORY_HEADER_LEN: usize = 32;
pub const RUN_LEN: usize = 24;

// KVM x86-64 ABI struct sizes (checked against the stub's own structs).
pub const IRQCHIP_LEN: usize = 520;
pub const PIT_LEN: usize = 112;
pub const CLOCK_LEN: usize = 48;
pub const CPUID_ENTRY_LEN: usize = 40;
pub const REGS_LEN: usize = 144;
pub const SREGS_LEN: usize = 312;
pub const XCRS_LEN: usize = 392;
pub const LAPIC_LEN: usize = 1024;
pub const EVENTS_LEN: usize = 64;
pub const MP_STATE_LEN: usize = 8;
pub const DEBUGREGS_LEN: usize = 128;
pub const MSR_LEN: usize = 16;
/// `kvm_xsave` is 4 KiB; `KVM_CAP_XSAVE2` may report more (AMX).
pub const MIN_XSAVE_LEN: u32 = 4096;
pub const MAX_XSAVE_LEN: u32 = 64 * 1024;
pub const MAX_CPUID: u32 = 128;
#[allow(clippy::cast_possible_truncation)] // 20
pub const MAX_MSRS: u32 = SAVED_MSRS.len() as u32;
/// Largest `KVM_MP_STATE_*` value (`KVM_MP_STATE_AP_RESET_HOLD`).
pub const MAX_MP_STATE: u32 = 9;
/// The most `kvm_xcrs` entries (`KVM_MAX_XCRS`).
pub const MAX_XCRS: u32 = 16;
/// The most page runs in a memory section.
pub const MAX_RUNS: u32 = 1 << 16;

/// The MSRs a snapshot may carry, in the order saved (increasing index).
/// The architectural ones Linux sets up (syscall entry, PAT, TSC deadline,
/// misc enable), the TSC itself, and KVM's paravirtual ones (kvmclock
/// system time and wall clock, async PF, steal time, PV EOI, poll
/// control). EFER is in `kvm_sregs`, FS/GS base in the segments. A saving
/// host that lacks one leaves it out; a state naming any other MSR is
/// refused: a snapshot cannot make the stub write an arbitrary MSR.
pub const SAVED_MSRS: [u32; 20] = [
    0x10,        // IA32_TSC
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0x1a0,       // IA32_MISC_ENABLE
    0x277,       // IA32_PAT
    0x6e0,       // IA32_TSC_DEADLINE
    0x4b56_4d00, // KVM wall clock (new)
    0x4b56_4d01, // KVM system time (new)
    0x4b56_4d02, // KVM async PF enable
    0x4b56_4d03, // KVM steal time
    0x4b56_4d04, // KVM PV EOI enable
    0x4b56_4d05, // KVM poll control
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SYSCALL_MASK
    0xc000_0102, // KERNEL_GS_BASE
    0xc000_0103, // TSC_AUX
    0xc001_0015, // AMD HWCR
];

/// Upper bound of a state section (every count at its ceiling): ~4.3 MiB.
pub const MAX_STATE_LEN: u64 = (STATE_HEADER_LEN + VM_LEN + MAX_CPUID as usize * CPUID_ENTRY_LEN
    + MAX_CPUS * (vcpu_at::MSRS + SAVED_MSRS.len() * MSR_LEN + MAX_XSAVE_LEN as usize)
    + MMIO_MAX_SLOTS * DEVICE_LEN) as u64;

/// The VM block: three irqchips, the PIT, the clock.
pub const VM_LEN: usize = 3 * IRQCHIP_LEN + PIT_LEN + CLOCK_LEN;
const_assert_eq!(VM_LEN, 1720);

/// Most queues one transport record holds (the stub's `mmio::MAX_QUEUES`).
pub const MAX_QUEUES: usize = 12;
pub const DEVICE_HEADER_LEN: usize = 48;
/// Device-specific state (e.g. a console's open ports), opaque here.
pub const DEVICE_PRIVATE_LEN: usize = 64;
pub const QUEUE_LEN: usize = 32;
pub const DEVICE_LEN: usize = DEVICE_HEADER_LEN + DEVICE_PRIVATE_LEN + MAX_QUEUES * QUEUE_LEN;
const_assert_eq!(DEVICE_LEN, 496);

/// virtio status bits a transport may hold (ACKNOWLEDGE, DRIVER,
/// DRIVER_OK, FEATURES_OK, NEEDS_RESET, FAILED).
pub const VIRTIO_STATUS_BITS: u32 = 0x01 | 0x02 | 0x04 | 0x08 | 0x40 | 0x80;
/// Queue record flags.
pub const QUEUE_READY: u16 = 1;
pub const QUEUE_EVENT_IDX: u16 = 2;
/// The largest split queue (virtio 1.x).
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Why a warm section was refused. Each has a one-line [`message`](Self::message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarmError {
    BadMagic,
    UnsupportedVersion(u32),
    BadReserved,
    /// A count is zero where it must not be, or above its ceiling.
    BadCount,
    /// The section's length is not the one its header implies.
    BadLength,
    /// The RAM size is zero, not a page multiple, or differs between sections.
    BadMemSize,
    BadXsave,
    /// An MSR outside [`SAVED_MSRS`], repeated or out of order.
    BadMsr,
    BadVcpuField,
    BadDevice,
    /// A queue's size or ring addresses are invalid or outside RAM.
    BadQueue,
    /// A run is unaligned, empty, outside RAM, overlapping or out of order.
    BadRun,
    /// A run's data is unaligned, overlapping or outside the section.
    BadRunData,
}

impl WarmError {
    pub fn message(self) -> &'static str {
        use WarmError::*;
        match self {
            BadMagic => "warm image: bad state/memory section magic (corrupted)",
            UnsupportedVersion(_) => "warm image: unsupported snapshot version (rebuild it with this smolvm)",
            BadReserved => "warm image: reserved snapshot bytes not zero (corrupted or newer format)",
            BadCount => "warm image: snapshot count out of range",
            BadLength => "warm image: snapshot section length does not match its header",
            BadMemSize => "warm image: bad or inconsistent guest RAM size",
            BadXsave => "warm image: bad XSAVE area size",
            BadMsr => "warm image: snapshot names an MSR it may not set",
            BadVcpuField => "warm image: bad vCPU state field",
            BadDevice => "warm image: bad device record",
            BadQueue => "warm image: virtqueue state outside guest RAM or invalid",
            BadRun => "warm image: memory run unaligned, overlapping or outside guest RAM",
            BadRunData => "warm image: memory run data misplaced in its section",
        }
    }
}

impl core::fmt::Display for WarmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())?;
        match *self {
            WarmError::UnsupportedVersion(v) => write!(f, ": {v}"),
            _ => Ok(()),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}


/// Whether `[gpa, gpa + len)` lies inside one RAM range of a guest with
/// `mem_size` bytes of RAM: `[0, min(mem, MMIO_BASE))` or, for the rest,
/// `[4 GiB, 4 GiB + mem - MMIO_BASE)` (the stub's `mem.rs` layout).
pub fn ram_contains(mem_size: u64, gpa: u64, len: u64) -> bool {
    let Some(end) = gpa.checked_add(len) else { return false };
    let low = mem_size.min(MMIO_BASE);
    let high_base = 1u64 << 32;
    end <= low || (gpa >= high_base && end - high_base <= mem_size - low)
}

/// The counts that fix a state section's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub vcpus: u32,
    pub mem_size: u64,
    pub xsave_len: u32,
    pub cpuid_count: u32,
    pub xsave_features: u64,
    pub msr_count: u32,
    pub device_count: u32,
    pub tsc_khz: u32,
}

/// Offsets inside one vCPU block.
pub mod vcpu_at {
    use super::*;
    pub const REGS: usize = 0;
    pub const SREGS: usize = REGS + REGS_LEN;
    pub const XCRS: usize = SREGS + SREGS_LEN;
    pub const LAPIC: usize = XCRS + XCRS_LEN;
    pub const EVENTS: usize = LAPIC + LAPIC_LEN;
    pub const MP_STATE: usize = EVENTS + EVENTS_LEN;
    pub const DEBUGREGS: usize = MP_STATE + MP_STATE_LEN;
    pub const MSRS: usize = DEBUGREGS + DEBUGREGS_LEN;
}

/// Offsets inside the VM block.
pub mod vm_at {
    use super::*;
    pub const PIC_MASTER: usize = 0;
    pub const PIC_SLAVE: usize = IRQCHIP_LEN;
    pub const IOAPIC: usize = 2 * IRQCHIP_LEN;
    pub const PIT: usize = 3 * IRQCHIP_LEN;
    pub const CLOCK: usize = PIT + PIT_LEN;
}

impl Layout {
    /// Bytes of one vCPU's block.
    pub fn vcpu_len(&self) -> usize {
        vcpu_at::MSRS + self.msr_count as usize * MSR_LEN + self.xsave_len as usize
    }
    pub fn vm_at(&self) -> usize {
        STATE_HEADER_LEN
    }
    pub fn cpuid_at(&self) -> usize {
        STATE_HEADER_LEN + VM_LEN
    }
    pub fn vcpu_at(&self, i: u32) -> usize {
        self.cpuid_at() + self.cpuid_count as usize * CPUID_ENTRY_LEN + i as usize * self.vcpu_len()
    }
    pub fn xsave_at(&self, i: u32) -> usize {
        self.vcpu_at(i) + vcpu_at::MSRS + self.msr_count as usize * MSR_LEN
    }
    pub fn device_at(&self, i: u32) -> usize {
        self.vcpu_at(self.vcpus) + i as usize * DEVICE_LEN
    }
    /// The whole section's length.
    pub fn len(&self) -> usize {
        self.device_at(self.device_count)
    }
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Checks the counts against their ceilings (so [`Layout::len`] cannot
    /// overflow: it stays below ~5 MiB).
    pub fn check(&self) -> Result<(), WarmError> {
        if self.vcpus == 0 || self.vcpus as usize > MAX_CPUS || self.cpuid_count > MAX_CPUID
            || self.msr_count > MAX_MSRS || self.device_count as usize > MMIO_MAX_SLOTS
        {
            return Err(WarmError::BadCount);
        }
        if self.mem_size == 0 || !self.mem_size.is_multiple_of(PAGE) {
            return Err(WarmError::BadMemSize);
        }
        if !(MIN_XSAVE_LEN..=MAX_XSAVE_LEN).contains(&self.xsave_len) || !self.xsave_len.is_multiple_of(64) {
            return Err(WarmError::BadXsave);
        }
        Ok(())
    }

    /// The section's 64-byte header.
    pub fn header(&self) -> [u8; STATE_HEADER_LEN] {
        let mut h = [0u8; STATE_HEADER_LEN];
        h[0..8].copy_from_slice(&STATE_MAGIC);
        h[8..12].copy_from_slice(&STATE_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.vcpus.to_le_bytes());
        h[16..24].copy_from_slice(&self.mem_size.to_le_bytes());
        h[24..28].copy_from_slice(&self.xsave_len.to_le_bytes());
        h[28..32].copy_from_slice(&self.cpuid_count.to_le_bytes());
        h[32..40].copy_from_slice(&self.xsave_features.to_le_bytes());
        h[40..44].copy_from_slice(&self.msr_count.to_le_bytes());
        h[44..48].copy_from_slice(&self.device_count.to_le_bytes());
        h[48..52].copy_from_slice(&self.tsc_khz.to_le_bytes());
        h
    }

    /// Reads and checks a header (not the rest of the section).
    pub fn parse_header(b: &[u8]) -> Result<Layout, WarmError> {
        let h = b.get(..STATE_HEADER_LEN).ok_or(WarmError::BadLength)?;
        if h[0..8] != STATE_MAGIC {
            return Err(WarmError::BadMagic);
        }
        let version = u32_at(h, 8);
        if version != STATE_VERSION {
            return Err(WarmError::UnsupportedVersion(version));
        }
        if h[52..64].iter().any(|&x| x != 0) {
            return Err(WarmError::BadReserved);
        }
        let l = Layout {
            vcpus: u32_at(h, 12),
            mem_size: u64_at(h, 16),
            xsave_len: u32_at(h, 24),
            cpuid_count: u32_at(h, 28),
            xsave_features: u64_at(h, 32),
            msr_count: u32_at(h, 40),
            device_count: u32_at(h, 44),
            tsc_khz: u32_at(h, 48),
        };
        l.check()?;
        Ok(l)
    }
}

/// One virtqueue's transport state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueState {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub size: u16,
    /// [`QUEUE_READY`], [`QUEUE_EVENT_IDX`].
    pub flags: u16,
    pub next_avail: u16,
    pub next_used: u16,
}

impl QueueState {
    pub fn ready(&self) -> bool {
        self.flags & QUEUE_READY != 0
    }

    fn encode(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.desc.to_le_bytes());
        b[8..16].copy_from_slice(&self.avail.to_le_bytes());
        b[16..24].copy_from_slice(&self.used.to_le_bytes());
        b[24..26].copy_from_slice(&self.size.to_le_bytes());
        b[26..28].copy_from_slice(&self.flags.to_le_bytes());
        b[28..30].copy_from_slice(&self.next_avail.to_le_bytes());
        b[30..32].copy_from_slice(&self.next_used.to_le_bytes());
    }

    fn decode(b: &[u8]) -> QueueState {
        QueueState {
            desc: u64_at(b, 0),
            avail: u64_at(b, 8),
            used: u64_at(b, 16),
            size: u16_at(b, 24),
            flags: u16_at(b, 26),
            next_avail: u16_at(b, 28),
            next_used: u16_at(b, 30),
        }
    }

    /// A ready queue has a power-of-two size and naturally aligned rings
    /// inside RAM (the checks `virtio::queue::Queue::validate` makes when
    /// the driver sets QueueReady); a queue that is not ready is all zero
    /// but its size.
    fn check(&self, mem_size: u64) -> Result<(), WarmError> {
        if self.flags & !(QUEUE_READY | QUEUE_EVENT_IDX) != 0 || self.size > MAX_QUEUE_SIZE {
            return Err(WarmError::BadQueue);
        }
        if !self.ready() {
            let idle = QueueState { size: self.size, ..QueueState::default() };
            return if *self == idle { Ok(()) } else { Err(WarmError::BadQueue) };
        }
        let n = u64::from(self.size);
        if n == 0 || !self.size.is_power_of_two() {
            return Err(WarmError::BadQueue);
        }
        let rings = [(self.desc, 16, 16 * n), (self.avail, 2, 6 + 2 * n), (self.used, 4, 6 + 8 * n)];
        for (addr, align, len) in rings {
            if addr % align != 0 || !ram_contains(mem_size, addr, len) {
                return Err(WarmError::BadQueue);
            }
        }
        Ok(())
    }
}

/// One virtio-mmio transport's state: a [`DEVICE_LEN`]-byte record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    pub slot: u32,
    pub device_id: u32,
    pub status: u32,
    pub interrupt_status: u32,
    pub driver_features: u64,
    pub config_generation: u32,
    pub queue_sel: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub nqueues: u32,
    pub private: [u8; DEVICE_PRIVATE_LEN],
    pub queues: [QueueState; MAX_QUEUES],
}

impl Device {
    pub fn encode(&self) -> [u8; DEVICE_LEN] {
        let mut b = [0u8; DEVICE_LEN];
        let words = [
            self.slot,
            self.device_id,
            self.status,
            self.interrupt_status,
        ];
        for (i, w) in words.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        b[16..24].copy_from_slice(&self.driver_features.to_le_bytes());
        let words = [
            self.config_generation,
            self.queue_sel,
            self.device_features_sel,
            self.driver_features_sel,
            self.nqueues,
        ];
        for (i, w) in words.iter().enumerate() {
            b[24 + i * 4..28 + i * 4].copy_from_slice(&w.to_le_bytes());
        }
        b[DEVICE_HEADER_LEN..DEVICE_HEADER_LEN + DEVICE_PRIVATE_LEN].copy_from_slice(&self.private);
        let queues = &mut b[DEVICE_HEADER_LEN + DEVICE_PRIVATE_LEN..];
        for (q, out) in self.queues.iter().zip(queues.chunks_exact_mut(QUEUE_LEN)) {
            q.encode(out);
        }
        b
    }

    /// Decodes and validates one record of a guest with `mem_size` bytes.
    pub fn parse(b: &[u8], mem_size: u64) -> Result<Device, WarmError> {
        let b = b.get(..DEVICE_LEN).ok_or(WarmError::BadLength)?;
        let mut private = [0u8; DEVICE_PRIVATE_LEN];
        private.copy_from_slice(&b[DEVICE_HEADER_LEN..DEVICE_HEADER_LEN + DEVICE_PRIVATE_LEN]);
        let mut queues = [QueueState::default(); MAX_QUEUES];
        let raw = &b[DEVICE_HEADER_LEN + DEVICE_PRIVATE_LEN..];
        for (q, r) in queues.iter_mut().zip(raw.chunks_exact(QUEUE_LEN)) {
            *q = QueueState::decode(r);
        }
        let d = Device {
            slot: u32_at(b, 0),
            device_id: u32_at(b, 4),
            status: u32_at(b, 8),
            interrupt_status: u32_at(b, 12),
            driver_features: u64_at(b, 16),
            config_generation: u32_at(b, 24),
            queue_sel: u32_at(b, 28),
            device_features_sel: u32_at(b, 32),
            driver_features_sel: u32_at(b, 36),
            nqueues: u32_at(b, 40),
            private,
            queues,
        };
        if u32_at(b, 44) != 0 {
            return Err(WarmError::BadReserved);
        }
        if d.slot as usize >= MMIO_MAX_SLOTS || d.device_id == 0 || d.status & !VIRTIO_STATUS_BITS != 0
            || d.interrupt_status & !3 != 0 || d.nqueues as usize > MAX_QUEUES
        {
            return Err(WarmError::BadDevice);
        }
        let (used, unused) = d.queues.split_at(d.nqueues as usize);
        if unused.iter().any(|q| *q != QueueState::default()) {
            return Err(WarmError::BadQueue);
        }
        used.iter().try_for_each(|q| q.check(mem_size))?;
        Ok(d)
    }
}

/// A validated state section (borrowing its bytes).
#[derive(Clone, Copy, Debug)]
pub struct MachineState<'a> {
    pub layout: Layout,
    bytes: &'a [u8],
}

/// One vCPU's parts, each exactly its KVM struct's size.
#[derive(Clone, Copy, Debug)]
pub struct VcpuState<'a> {
    pub regs: &'a [u8],
    pub sregs: &'a [u8],
    pub xcrs: &'a [u8],
    pub lapic: &'a [u8],
    pub events: &'a [u8],
    pub mp_state: u32,
    pub debugregs: &'a [u8],
    /// `msr_count` `kvm_msr_entry`s.
    pub msrs: &'a [u8],
    pub xsave: &'a [u8],
}

impl VcpuState<'_> {
    /// MSR `i` as (index, value).
    pub fn msr(&self, i: usize) -> Option<(u32, u64)> {
        let e = self.msrs.get(i * MSR_LEN..(i + 1) * MSR_LEN)?;
        Some((u32_at(e, 0), u64_at(e, 8)))
    }
}

impl<'a> MachineState<'a> {
    /// Validates a whole state section.
    pub fn parse(bytes: &'a [u8]) -> Result<MachineState<'a>, WarmError> {
        let layout = Layout::parse_header(bytes)?;
        if bytes.len() != layout.len() {
            return Err(WarmError::BadLength);
        }
        let s = MachineState { layout, bytes };
        for i in 0..layout.vcpus {
            s.check_vcpu(i)?;
        }
        let mut prev_slot = None;
        for i in 0..layout.device_count {
            let d = Device::parse(&bytes[layout.device_at(i)..], layout.mem_size)?;
            if prev_slot.is_some_and(|p| d.slot <= p) {
                return Err(WarmError::BadDevice);
            }
            prev_slot = Some(d.slot);
        }
        Ok(s)
    }

    fn check_vcpu(&self, i: u32) -> Result<(), WarmError> {
        let v = self.vcpu(i);
        let mut prev = None;
        for j in 0..self.layout.msr_count as usize {
            let e = &v.msrs[j * MSR_LEN..];
            let index = u32_at(e, 0);
            let in_order = prev.is_none_or(|p| index > p);
            if u32_at(e, 4) != 0 || !in_order || !SAVED_MSRS.contains(&index) {
                return Err(WarmError::BadMsr);
            }
            prev = Some(index);
        }
        // kvm_mp_state is one u32; kvm_xcrs holds at most KVM_MAX_XCRS.
        if v.mp_state > MAX_MP_STATE || u32_at(self.bytes, self.layout.vcpu_at(i) + vcpu_at::MP_STATE + 4) != 0
            || u32_at(v.xcrs, 0) > MAX_XCRS
        {
            return Err(WarmError::BadVcpuField);
        }
        Ok(())
    }

    fn part(&self, at: usize, len: usize) -> &'a [u8] {
        // In bounds: `parse` checked the length against the layout.
        &self.bytes[at..at + len]
    }

    pub fn pic_master(&self) -> &'a [u8] {
        self.part(STATE_HEADER_LEN + vm_at::PIC_MASTER, IRQCHIP_LEN)
    }
    pub fn pic_slave(&self) -> &'a [u8] {
        self.part(STATE_HEADER_LEN + vm_at::PIC_SLAVE, IRQCHIP_LEN)
    }
    pub fn ioapic(&self) -> &'a [u8] {
        self.part(STATE_HEADER_LEN + vm_at::IOAPIC, IRQCHIP_LEN)
    }
    pub fn pit(&self) -> &'a [u8] {
        self.part(STATE_HEADER_LEN + vm_at::PIT, PIT_LEN)
    }
    pub fn clock(&self) -> &'a [u8] {
        self.part(STATE_HEADER_LEN + vm_at::CLOCK, CLOCK_LEN)
    }
    /// The `cpuid_count` `kvm_cpuid_entry2`s the guest saw.
    pub fn cpuid(&self) -> &'a [u8] {
        self.part(self.layout.cpuid_at(), self.layout.cpuid_count as usize * CPUID_ENTRY_LEN)
    }

    /// vCPU `i` (< `layout.vcpus`).
    pub fn vcpu(&self, i: u32) -> VcpuState<'a> {
        let at = self.layout.vcpu_at(i.min(self.layout.vcpus - 1));
        let msrs = self.layout.msr_count as usize * MSR_LEN;
        VcpuState {
            regs: self.part(at + vcpu_at::REGS, REGS_LEN),
            sregs: self.part(at + vcpu_at::SREGS, SREGS_LEN),
            xcrs: self.part(at + vcpu_at::XCRS, XCRS_LEN),
            lapic: self.part(at + vcpu_at::LAPIC, LAPIC_LEN),
            events: self.part(at + vcpu_at::EVENTS, EVENTS_LEN),
            mp_state: u32_at(self.bytes, at + vcpu_at::MP_STATE),
            debugregs: self.part(at + vcpu_at::DEBUGREGS, DEBUGREGS_LEN),
            msrs: self.part(at + vcpu_at::MSRS, msrs),
            xsave: self.part(at + vcpu_at::MSRS + msrs, self.layout.xsave_len as usize),
        }
    }

    /// Device record `i` (< `layout.device_count`), validated by `parse`.
    pub fn device(&self, i: u32) -> Option<Device> {
        if i >= self.layout.device_count {
            return None;
        }
        Device::parse(&self.bytes[self.layout.device_at(i)..], self.layout.mem_size).ok()
    }
}

/// One run of saved pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub gpa: u64,
    pub pages: u64,
    /// Offset of the run's data from the start of the section.
    pub offset: u64,
}

impl Run {
    pub fn len(&self) -> u64 {
        self.pages.saturating_mul(PAGE)
    }
    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }
}

/// Where page data starts in a memory section with `runs` runs.
pub fn memory_data_start(runs: u32) -> u64 {
    let table = MEMORY_HEADER_LEN as u64 + u64::from(runs) * RUN_LEN as u64;
    table.div_ceil(PAGE) * PAGE
}

/// The header of a memory section.
pub fn memory_header(runs: u32, mem_size: u64) -> [u8; MEMORY_HEADER_LEN] {
    let mut h = [0u8; MEMORY_HEADER_LEN];
    h[0..8].copy_from_slice(&MEMORY_MAGIC);
    h[8..12].copy_from_slice(&MEMORY_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&runs.to_le_bytes());
    h[16..24].copy_from_slice(&mem_size.to_le_bytes());
    h
}

/// A run's 24-byte table entry.
pub fn encode_run(r: &Run) -> [u8; RUN_LEN] {
    let mut e = [0u8; RUN_LEN];
    e[0..8].copy_from_slice(&r.gpa.to_le_bytes());
    e[8..16].copy_from_slice(&r.pages.to_le_bytes());
    e[16..24].copy_from_slice(&r.offset.to_le_bytes());
    e
}

/// A validated memory section's run table (the page data stays in the
/// file: the stub maps it).
#[derive(Clone, Copy, Debug)]
pub struct MemoryRuns<'a> {
    pub mem_size: u64,
    table: &'a [u8],
}

impl<'a> MemoryRuns<'a> {
    /// Bytes the reader needs from the start of the section to parse it.
    pub fn table_len(head: &[u8]) -> Result<usize, WarmError> {
        let h = head.get(..MEMORY_HEADER_LEN).ok_or(WarmError::BadLength)?;
        let runs = u32_at(h, 12);
        if runs > MAX_RUNS {
            return Err(WarmError::BadCount);
        }
        Ok(MEMORY_HEADER_LEN + runs as usize * RUN_LEN)
    }

    /// Validates the header and run table at the start of `head` (at least
    /// [`MemoryRuns::table_len`] bytes) of a section `section_len` bytes
    /// long, for a guest of `mem_size` bytes (the state's).
    pub fn parse(head: &'a [u8], section_len: u64, mem_size: u64) -> Result<MemoryRuns<'a>, WarmError> {
        let h = head.get(..MEMORY_HEADER_LEN).ok_or(WarmError::BadLength)?;
        if h[0..8] != MEMORY_MAGIC {
            return Err(WarmError::BadMagic);
        }
        let version = u32_at(h, 8);
        if version != MEMORY_VERSION {
            return Err(WarmError::UnsupportedVersion(version));
        }
        if u64_at(h, 24) != 0 {
            return Err(WarmError::BadReserved);
        }
        if u64_at(h, 16) != mem_size || mem_size == 0 || !mem_size.is_multiple_of(PAGE) {
            return Err(WarmError::BadMemSize);
        }
        let table_len = Self::table_len(h)?;
        let table = head.get(MEMORY_HEADER_LEN..table_len).ok_or(WarmError::BadLength)?;
        let runs = MemoryRuns { mem_size, table };
        let mut prev: Option<Run> = None;
        let mut data_end = memory_data_start(u32_at(h, 12));
        for r in runs.iter() {
            let len = r.pages.checked_mul(PAGE).ok_or(WarmError::BadRun)?;
            let after_prev = prev.is_none_or(|p| p.gpa + p.len() <= r.gpa);
            if r.gpa % PAGE != 0 || r.pages == 0 || !ram_contains(mem_size, r.gpa, len) || !after_prev {
                return Err(WarmError::BadRun);
            }
            let end = r.offset.checked_add(len).ok_or(WarmError::BadRunData)?;
            if r.offset % PAGE != 0 || r.offset < data_end || end > section_len {
                return Err(WarmError::BadRunData);
            }
            data_end = end;
            prev = Some(r);
        }
        if data_end != section_len {
            return Err(WarmError::BadLength);
        }
        Ok(runs)
    }

    pub fn count(&self) -> usize {
        self.table.len() / RUN_LEN
    }

    /// The runs, in guest-address order.
    pub fn iter(&self) -> impl Iterator<Item = Run> + 'a {
        self.table.chunks_exact(RUN_LEN).map(|e| Run {
            gpa: u64_at(e, 0),
            pages: u64_at(e, 8),
            offset: u64_at(e, 16),
        })
    }
}

#[cfg(all(test, feature = "std"))]
mod tests;
