//! An Intel MP table (MP spec 1.4) in the EBDA: without ACPI it is how Linux
//! finds the in-kernel IOAPIC. Without one the guest falls back to the 8259
//! PIC ("virtual wire mode"): every virtio interrupt then costs five or six
//! PIC port accesses (mask, EOI, unmask: each a VM exit), and IRQs >= 16
//! (device slots 11 and up) cannot be raised at all.

use super::layout::{EBDA_START, KERNEL_MIN_ADDR};
use crate::mem::{GuestAddress, GuestMemory};
use linker::abi::{MAX_CPUS, MMIO_FIRST_IRQ};

/// Above every LAPIC id (the vCPU indexes 0..MAX_CPUS).
#[allow(clippy::cast_possible_truncation)] // MAX_CPUS < 255 (asserted below)
const IOAPIC_ID: u8 = MAX_CPUS as u8;
/// MP interrupt entry flags: polarity 01 (active high), trigger 11 (level).
const LEVEL_ACTIVE_HIGH: u8 = 0b1101;
/// Pins of KVM's in-kernel IOAPIC: ISA IRQ `n` goes to pin `n`.
const PINS: usize = 24;
/// Floating pointer, then the configuration table: header, (one processor
/// per vCPU, added at run time), bus, IOAPIC, one interrupt source per pin,
/// two local interrupts.
const LEN: usize = 16 + 44 + 8 + 8 + PINS * 8 + 2 * 8;
const HEAD: usize = 16 + 44;
const PROCESSOR: usize = 20;
/// With `MAX_CPUS` processors.
pub const MAX_LEN: usize = LEN + MAX_CPUS * PROCESSOR;

/// The structure without processors, built at compile time.
const TABLE: [u8; LEN] = build();

const fn put(t: &mut [u8; LEN], at: usize, b: &[u8]) {
    let mut i = 0;
    while i < b.len() {
        t[at + i] = b[i];
        i += 1;
    }
}

/// The byte that makes `t[from..to]` sum to zero.
const fn checksum(t: &[u8; LEN], from: usize, to: usize) -> u8 {
    let (mut s, mut i) = (0u8, from);
    while i < to {
        s = s.wrapping_add(t[i]);
        i += 1;
    }
    0u8.wrapping_sub(s)
}

// Every cast below is of a small constant (the table is < 2 KiB, 24 pins,
// below 1 MiB, APIC ids < 256): checked here, at compile time. The whole
// table lies in the reserved range below the kernel.
const _: () = assert!(MAX_LEN <= 2048 && PINS < 256 && MAX_CPUS < 255 && EBDA_START + MAX_LEN as u64 <= KERNEL_MIN_ADDR);

#[allow(clippy::cast_possible_truncation)]
const fn build() -> [u8; LEN] {
    let mut t = [0u8; LEN];
    let c = 16; // the configuration table
    let config_at = (EBDA_START + 16) as u32;
    let a = config_at.to_le_bytes();
    // Floating pointer: table address, length 1 (x16 bytes), revision 1.4.
    put(&mut t, 0, &[b'_', b'M', b'P', b'_', a[0], a[1], a[2], a[3], 1, 4]);
    // Length and entry count: set with the processors (`table`).
    put(&mut t, c, &[b'P', b'C', b'M', b'P', 0, 0, 4, 0, b'S', b'M', b'O', b'L', b'V', b'M']);
    put(&mut t, c + 36, &[0x00, 0x00, 0xe0, 0xfe]); // LAPIC at 0xfee00000
    // Bus 0: ISA. The IOAPIC: version 0x11, enabled, at 0xfec00000.
    put(&mut t, c + 44, &[1, 0, b'I', b'S', b'A', b' ', b' ', b' ', 2, IOAPIC_ID, 0x11, 1, 0, 0, 0xc0, 0xfe]);
    let mut at = c + 60;
    let mut pin = 0;
    while pin < PINS {
        // INT; the legacy pins (the UART's) with the bus's default polarity
        // and trigger (edge: the stub pulses them), the virtio pins active
        // high and level-triggered (virtio/mmio.rs says why).
        let flags = if pin >= MMIO_FIRST_IRQ as usize { LEVEL_ACTIVE_HIGH } else { 0 };
        put(&mut t, at, &[3, 0, flags, 0, 0, pin as u8, IOAPIC_ID, pin as u8]);
        at += 8;
        pin += 1;
    }
    // ExtINT to LINT0 and NMI to LINT1 of every LAPIC.
    put(&mut t, at, &[4, 3, 0, 0, 0, 0, 0xff, 0, 4, 1, 0, 0, 0, 0, 0xff, 1]);
    t[10] = checksum(&t, 0, 16);
    t
}

/// Byte sum of `TABLE[16..]` (its configuration table without processors).
const TAIL_SUM: u8 = 0u8.wrapping_sub(checksum(&TABLE, 16, LEN));

/// Writes the table for `cpus` (1..=MAX_CPUS) vCPUs at `EBDA_START`
/// (reserved in the e820 map up to the kernel; Linux scans the first KiB
/// for the floating pointer, which names the configuration table right
/// after it): LAPIC ids 0.., vCPU 0 the bootstrap processor.
#[allow(clippy::cast_possible_truncation)] // ids < MAX_CPUS < 255, lengths < MAX_LEN < 2^16 (asserted above)
pub fn write(mem: &mut GuestMemory, cpus: usize) -> Option<()> {
    let cpus = cpus.clamp(1, MAX_CPUS);
    let at = |offset: usize| GuestAddress(EBDA_START + offset as u64); // < MAX_LEN
    // Processor: LAPIC id, version 0x14, enabled (+ bootstrap), family 6;
    // features FPU + APIC.
    let mut sum = TAIL_SUM;
    for id in 0..cpus as u8 {
        let flags = if id == 0 { 3 } else { 1 };
        let entry = [0, id, 0x14, flags, 0, 6, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        mem.write_obj(at(HEAD + usize::from(id) * PROCESSOR), entry)?;
        sum = sum.wrapping_add(entry.iter().fold(0, |s, &b| s.wrapping_add(b)));
    }
    let processors = cpus * PROCESSOR;
    mem.write_slice(at(0), &TABLE[..HEAD])?;
    mem.write_slice(at(HEAD + processors), &TABLE[HEAD..])?;
    // The configuration table's length and entry count (both < 2^16).
    let header = [(LEN - 16 + processors) as u16, (cpus + 2 + PINS + 2) as u16];
    mem.write_obj(at(20), header[0])?;
    mem.write_obj(at(50), header[1])?;
    for v in header {
        sum = sum.wrapping_add(v as u8).wrapping_add((v >> 8) as u8);
    }
    mem.write_obj(at(23), 0u8.wrapping_sub(sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_layout() {
        let sum = |b: &[u8]| b.iter().fold(0u8, |s, &x| s.wrapping_add(x));
        for cpus in [1, 2, 4, MAX_CPUS] {
            let mut mem = GuestMemory::new(1 << 20).expect("mmap");
            write(&mut mem, cpus).expect("fits");
            let len = LEN + cpus * PROCESSOR;
            let mut t = vec![0u8; len];
            mem.read_slice(GuestAddress(EBDA_START), &mut t).expect("in ram");
            let t = &t[..];
            assert_eq!(len, LEN + cpus * PROCESSOR);
            assert_eq!(sum(&t[..16]), 0);
            assert_eq!(sum(&t[16..]), 0);
            assert_eq!(&t[..4], b"_MP_");
            assert_eq!(&t[4..8], &0x9fc10u32.to_le_bytes());
            assert_eq!(&t[16..20], b"PCMP");
            assert_eq!(usize::from(u16::from_le_bytes([t[20], t[21]])), len - 16);
            // Entry types in order: processors, bus, IOAPIC, 24 x interrupt, 2 x local.
            let mut at = 16 + 44;
            let (mut kinds, mut cpu_ids) = (std::vec::Vec::new(), std::vec::Vec::new());
            while at < len {
                kinds.push(t[at]);
                if t[at] == 0 {
                    // LAPIC id, enabled, bootstrap only for the first.
                    cpu_ids.push(t[at + 1]);
                    assert_eq!(t[at + 3], if t[at + 1] == 0 { 3 } else { 1 });
                }
                at += if t[at] == 0 { 20 } else { 8 };
            }
            assert_eq!(at, len);
            assert_eq!(kinds.len(), usize::from(u16::from_le_bytes([t[50], t[51]])));
            assert_eq!(cpu_ids, (0..cpus as u8).collect::<Vec<_>>());
            assert!(kinds[..cpus].iter().all(|&k| k == 0));
            assert_eq!(&kinds[cpus..cpus + 2], &[1, 2]);
            assert!(kinds[cpus + 2..cpus + 26].iter().all(|&k| k == 3) && kinds[cpus + 26..] == [4, 4]);
            // The IOAPIC's id is no vCPU's.
            assert_eq!(t[16 + 44 + cpus * 20 + 9], MAX_CPUS as u8);
        }
    }
}
