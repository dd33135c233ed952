//! The guest kernel command line: console on the UART, reboot through the
//! i8042 (which the stub traps), no pause on panic, and one
//! `virtio_mmio.device=` entry per attached device, in slot order.

use crate::boot::layout::CMDLINE_MAX;
use crate::bus::{slot_base, slot_irq};

/// Always present. `reboot=k`: a panicking or rebooting kernel writes 0xfe
/// to port 0x64, which ends the VM at once (no firmware to reboot into).
/// `random.trust_cpu=on`: the CRNG is seeded from RDRAND at boot. Without it
/// a guest with no other entropy source waits for timer jitter, which an idle
/// host under nested TCG did not give: getrandom() blocked and python3 hung.
pub const BASE: &str = "console=ttyS0 reboot=k panic=-1 8250.nr_uarts=1 random.trust_cpu=on";

pub struct Cmdline {
    buf: heapless::Vec<u8, CMDLINE_MAX>,
}

impl Cmdline {
    pub fn new(quiet: bool) -> Cmdline {
        let mut c = Cmdline { buf: heapless::Vec::new() };
        c.push(BASE.as_bytes());
        if quiet {
            c.push(b" quiet");
        }
        c
    }

    fn push(&mut self, b: &[u8]) -> bool {
        // Keep one byte for the terminating NUL.
        if b.len() >= CMDLINE_MAX.saturating_sub(self.buf.len()) {
            return false;
        }
        self.buf.extend_from_slice(b).is_ok()
    }

    /// Appends ` virtio_mmio.device=4K@0x<base>:<irq>` for `slot`.
    pub fn add_virtio_mmio(&mut self, slot: usize) -> bool {
        let mut l = crate::out::Line::bare();
        l.s(" virtio_mmio.device=4K@").x(slot_base(slot)).s(":").u(u64::from(slot_irq(slot)));
        self.push(l.as_bytes())
    }

    /// The command line without its NUL.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_listed_in_slot_order() {
        let mut c = Cmdline::new(true);
        assert!(c.add_virtio_mmio(0));
        assert!(c.add_virtio_mmio(3));
        let s = std::str::from_utf8(c.as_bytes()).expect("ascii");
        assert!(s.starts_with(BASE));
        assert!(s.ends_with(
            " quiet virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0003000:8"
        ));
    }

    #[test]
    fn overflow_is_refused_not_truncated() {
        let mut c = Cmdline::new(false);
        let mut n = 0;
        while c.add_virtio_mmio(0) {
            n += 1;
        }
        assert!(n > 10);
        assert!(c.as_bytes().len() < CMDLINE_MAX);
    }
}
