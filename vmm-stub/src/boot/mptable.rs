//! An Intel MP table (MP spec 1.4) in the EBDA: without ACPI it is how Linux
//! finds the in-kernel IOAPIC. Without one the guest falls back to the 8259
//! PIC ("virtual wire mode"): every virtio interrupt then costs five or six
//! PIC port accesses (mask, EOI, unmask: each a VM exit), and IRQs >= 16
//! (device slots 11 and up) cannot be raised at all.

use super::layout::EBDA_START;
use crate::mem::{GuestAddress, GuestMemory};

const IOAPIC_ID: u8 = 1;
/// Pins of KVM's in-kernel IOAPIC: ISA IRQ `n` goes to pin `n`.
const PINS: usize = 24;
/// Floating pointer, then the configuration table: header, processor, bus,
/// IOAPIC, one interrupt source per pin, two local interrupts.
const LEN: usize = 16 + 44 + 20 + 8 + 8 + PINS * 8 + 2 * 8;

/// The whole structure, built at compile time (one copy at boot).
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

// Every cast below is of a small constant (the table is < 1 KiB, 24 pins,
// below 1 MiB): checked here, at compile time.
const _: () = assert!(LEN <= 1024 && PINS < 256 && EBDA_START + 16 < 1 << 20);

#[allow(clippy::cast_possible_truncation)]
const fn build() -> [u8; LEN] {
    let mut t = [0u8; LEN];
    let c = 16; // the configuration table
    let config_at = (EBDA_START + 16) as u32;
    let a = config_at.to_le_bytes();
    // Floating pointer: table address, length 1 (x16 bytes), revision 1.4.
    put(&mut t, 0, &[b'_', b'M', b'P', b'_', a[0], a[1], a[2], a[3], 1, 4]);
    let len = ((LEN - 16) as u16).to_le_bytes();
    let entries = ((3 + PINS + 2) as u16).to_le_bytes();
    put(&mut t, c, &[b'P', b'C', b'M', b'P', len[0], len[1], 4, 0, b'S', b'M', b'O', b'L', b'V', b'M']);
    put(&mut t, c + 34, &[entries[0], entries[1], 0x00, 0x00, 0xe0, 0xfe]); // LAPIC at 0xfee00000
    // Processor: LAPIC 0, version 0x14, enabled + bootstrap; FPU + APIC.
    put(&mut t, c + 44, &[0, 0, 0x14, 3, 0, 6, 0, 0, 0x01, 0x02]);
    // Bus 0: ISA. The IOAPIC: version 0x11, enabled, at 0xfec00000.
    put(&mut t, c + 64, &[1, 0, b'I', b'S', b'A', b' ', b' ', b' ', 2, IOAPIC_ID, 0x11, 1, 0, 0, 0xc0, 0xfe]);
    let mut at = c + 80;
    let mut pin = 0;
    while pin < PINS {
        // INT, the bus's default polarity and trigger (edge: the stub pulses lines).
        put(&mut t, at, &[3, 0, 0, 0, 0, pin as u8, IOAPIC_ID, pin as u8]);
        at += 8;
        pin += 1;
    }
    // ExtINT to LINT0 and NMI to LINT1 of every LAPIC.
    put(&mut t, at, &[4, 3, 0, 0, 0, 0, 0xff, 0, 4, 1, 0, 0, 0, 0, 0xff, 1]);
    t[c + 7] = checksum(&t, c, LEN);
    t[10] = checksum(&t, 0, 16);
    t
}

/// Writes the table at `EBDA_START` (reserved in the e820 map; Linux scans
/// its first KiB for the floating pointer).
pub fn write(mem: &mut GuestMemory) -> Option<()> {
    mem.write_slice(GuestAddress(EBDA_START), &TABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_layout() {
        let sum = |b: &[u8]| b.iter().fold(0u8, |s, &x| s.wrapping_add(x));
        assert_eq!(sum(&TABLE[..16]), 0);
        assert_eq!(sum(&TABLE[16..]), 0);
        assert_eq!(&TABLE[..4], b"_MP_");
        assert_eq!(&TABLE[4..8], &0x9fc10u32.to_le_bytes());
        assert_eq!(&TABLE[16..20], b"PCMP");
        assert_eq!(usize::from(u16::from_le_bytes([TABLE[20], TABLE[21]])), LEN - 16);
        // Entry types in order: processor, bus, IOAPIC, 24 x interrupt, 2 x local.
        let mut at = 16 + 44;
        let mut kinds = std::vec::Vec::new();
        while at < LEN {
            kinds.push(TABLE[at]);
            at += if TABLE[at] == 0 { 20 } else { 8 };
        }
        assert_eq!(at, LEN);
        assert_eq!(kinds.len(), usize::from(u16::from_le_bytes([TABLE[50], TABLE[51]])));
        assert_eq!(&kinds[..3], &[0, 1, 2]);
        assert!(kinds[3..27].iter().all(|&k| k == 3) && kinds[27..] == [4, 4]);
    }
}
