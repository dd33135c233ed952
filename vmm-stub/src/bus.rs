//! MMIO dispatch: the run loop hands every `KVM_EXIT_MMIO` to [`Bus`], which
//! routes it to the device in the addressed virtio-mmio slot
//! (`abi::MMIO_BASE + slot * abi::MMIO_SLOT_SIZE`). Devices live on the
//! stub's stack (no allocator) and are attached by `&mut` reference.

use crate::mem::GuestMemory;
use crate::sys::kvm::Vm;
use linker::abi::{MMIO_BASE, MMIO_FIRST_IRQ, MMIO_MAX_SLOTS, MMIO_SLOT_SIZE};

/// Raises interrupt lines on the VM's in-kernel irqchip.
pub trait Interrupts {
    /// Pulses GSI `irq` (edge: level 1 then 0) so the guest sees one interrupt.
    fn trigger(&self, irq: u32);
    /// Sets GSI `irq` to `level` (for level-triggered devices).
    fn set_level(&self, irq: u32, level: bool);
}

/// The VM's in-kernel irqchip (`KVM_IRQ_LINE`).
impl Interrupts for Vm {
    fn trigger(&self, irq: u32) {
        let _ = self.irq_line(irq, true);
        let _ = self.irq_line(irq, false);
    }

    fn set_level(&self, irq: u32, level: bool) {
        let _ = self.irq_line(irq, level);
    }
}

/// What a device may touch while it handles an access.
pub struct Ctx<'a> {
    /// Guest RAM, through its checked accessors.
    pub mem: &'a GuestMemory,
    /// The VM's interrupt lines.
    pub irq: &'a dyn Interrupts,
}

/// A device in one virtio-mmio slot. `offset` is relative to the slot base
/// and `< MMIO_SLOT_SIZE`; `data` is 1, 2, 4 or 8 bytes, little endian, as the
/// guest accessed it (the guest chooses the width: validate it).
pub trait MmioDevice {
    /// Fills `data`. Unhandled offsets should read as zero.
    fn mmio_read(&mut self, ctx: &mut Ctx<'_>, offset: u64, data: &mut [u8]);
    /// Handles a guest write of `data` at `offset`.
    fn mmio_write(&mut self, ctx: &mut Ctx<'_>, offset: u64, data: &[u8]);
    /// Host-side work (stdin became readable, a signal to forward). The run
    /// loop calls it through [`Bus::poll`] when a signal interrupted `KVM_RUN`.
    fn poll(&mut self, _ctx: &mut Ctx<'_>) {}
    /// Whether a driver has started using the device (a saving stub
    /// refuses to snapshot then: device state is not saved yet).
    #[cfg(feature = "warm-save")]
    fn in_use(&self) -> bool {
        false
    }
    /// Its state as a warm image record (`slot`: where it sits).
    #[cfg(feature = "warm")]
    fn record(&self, _slot: u32) -> Option<linker::warm::Device> {
        None
    }
    /// Whether a saved record can be put back on this device.
    #[cfg(feature = "warm")]
    fn fits(&self, _record: &linker::warm::Device) -> bool {
        false
    }
    /// Puts a saved record back; `false` if it does not fit this device.
    #[cfg(feature = "warm")]
    fn resume(&mut self, _ctx: &mut Ctx<'_>, _record: &linker::warm::Device) -> bool {
        false
    }
}

/// The guest physical address of virtio-mmio slot `slot` (< MMIO_MAX_SLOTS).
pub fn slot_base(slot: usize) -> u64 {
    MMIO_BASE.wrapping_add((slot as u64).wrapping_mul(MMIO_SLOT_SIZE))
}

/// The GSI of virtio-mmio slot `slot` (< MMIO_MAX_SLOTS).
pub fn slot_irq(slot: usize) -> u32 {
    MMIO_FIRST_IRQ.wrapping_add(slot as u32)
}

/// The virtio-mmio slots, each empty or holding one device.
pub struct Bus<'d> {
    slots: [Option<&'d mut dyn MmioDevice>; MMIO_MAX_SLOTS],
}

impl Default for Bus<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'d> Bus<'d> {
    pub fn new() -> Self {
        Bus { slots: [const { None }; MMIO_MAX_SLOTS] }
    }

    /// Puts `dev` in `slot`. Returns `false` if the slot is out of range or taken.
    pub fn attach(&mut self, slot: usize, dev: &'d mut dyn MmioDevice) -> bool {
        match self.slots.get_mut(slot) {
            Some(s @ None) => {
                *s = Some(dev);
                true
            }
            _ => false,
        }
    }

    /// Indexes of the occupied slots, in order (the kernel command line lists
    /// them in this order).
    pub fn present(&self) -> impl Iterator<Item = usize> + use<'_, 'd> {
        (0..MMIO_MAX_SLOTS).filter(|&i| self.has(i))
    }

    /// Whether any device occupies `slot`.
    /// Each device's warm image record, in slot order.
    #[cfg(feature = "warm")]
    pub fn records(&self) -> impl Iterator<Item = linker::warm::Device> + use<'_, 'd> {
        (0u32..).zip(&self.slots).filter_map(|(i, d)| d.as_deref()?.record(i))
    }

    /// Whether the saved `records` fit this run's devices: each record's
    /// slot holds a device it [`MmioDevice::fits`], and each device has one
    /// (a run with more devices than the snapshot cannot resume it).
    #[cfg(feature = "warm")]
    pub fn fits(&self, records: impl Iterator<Item = linker::warm::Device>) -> bool {
        let mut seen = [false; MMIO_MAX_SLOTS];
        for r in records {
            let slot = r.slot as usize;
            match self.slots.get(slot) {
                Some(Some(dev)) if dev.fits(&r) => seen[slot] = true,
                _ => return false,
            }
        }
        self.slots.iter().zip(seen).all(|(d, s)| d.is_none() || s)
    }

    /// Puts the saved `records` back (after [`Bus::fits`]); `false` if one
    /// does not go back.
    #[cfg(feature = "warm")]
    pub fn resume(&mut self, ctx: &mut Ctx<'_>, records: impl Iterator<Item = linker::warm::Device>) -> bool {
        let mut records = records;
        records.all(|r| self.slots.get_mut(r.slot as usize).and_then(|d| d.as_deref_mut()).is_some_and(|dev| dev.resume(ctx, &r)))
    }

    /// Whether any device is [`MmioDevice::in_use`].
    #[cfg(feature = "warm-save")]
    pub fn in_use(&self) -> bool {
        self.slots.iter().flatten().any(|d| d.in_use())
    }

    pub fn has(&self, slot: usize) -> bool {
        matches!(self.slots.get(slot), Some(Some(_)))
    }

    fn route(&mut self, addr: u64, len: usize) -> Option<(&mut dyn MmioDevice, u64)> {
        let rel = addr.checked_sub(MMIO_BASE)?;
        let slot = usize::try_from(rel / MMIO_SLOT_SIZE).ok()?;
        let offset = rel % MMIO_SLOT_SIZE;
        // An access must not straddle two slots.
        if offset + len as u64 > MMIO_SLOT_SIZE {
            return None;
        }
        let dev = self.slots.get_mut(slot)?.as_deref_mut()?;
        Some((dev, offset))
    }

    /// Lets every device do its host-side work (see [`MmioDevice::poll`]).
    pub fn poll(&mut self, ctx: &mut Ctx<'_>) {
        for dev in self.slots.iter_mut().flatten() {
            dev.poll(ctx);
        }
    }

    /// Dispatches a guest read. Returns `false` if no device claims `addr`
    /// (the caller then answers all-ones).
    pub fn mmio_read(&mut self, ctx: &mut Ctx<'_>, addr: u64, data: &mut [u8]) -> bool {
        match self.route(addr, data.len()) {
            Some((dev, offset)) => {
                dev.mmio_read(ctx, offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a guest write. Returns `false` if no device claims `addr`.
    pub fn mmio_write(&mut self, ctx: &mut Ctx<'_>, addr: u64, data: &[u8]) -> bool {
        match self.route(addr, data.len()) {
            Some((dev, offset)) => {
                dev.mmio_write(ctx, offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    struct NoIrq;
    impl Interrupts for NoIrq {
        fn trigger(&self, _: u32) {}
        fn set_level(&self, _: u32, _: bool) {}
    }

    #[derive(Default)]
    struct Probe {
        last: Cell<(u64, usize)>,
    }
    impl MmioDevice for Probe {
        fn mmio_read(&mut self, _: &mut Ctx<'_>, offset: u64, data: &mut [u8]) {
            data.fill(0x5a);
            self.last.set((offset, data.len()));
        }
        fn mmio_write(&mut self, _: &mut Ctx<'_>, offset: u64, data: &[u8]) {
            self.last.set((offset, data.len()));
        }
    }

    #[test]
    fn routes_by_slot_and_refuses_strays() {
        let mut mem = GuestMemory::new(4096).expect("mmap");
        let mut ctx = Ctx { mem: &mut mem, irq: &NoIrq };
        let mut p = Probe::default();
        let mut bus = Bus::new();
        assert!(bus.attach(3, &mut p));
        assert!(bus.present().eq([3]));
        let mut d = [0u8; 4];
        assert!(bus.mmio_read(&mut ctx, slot_base(3) + 0x70, &mut d));
        assert_eq!(d, [0x5a; 4]);
        assert!(!bus.mmio_read(&mut ctx, slot_base(2), &mut d));
        assert!(!bus.mmio_write(&mut ctx, slot_base(3) + 0xffe, &[0; 4]));
        assert!(!bus.mmio_write(&mut ctx, 0, &[0]));
        assert!(!bus.mmio_write(&mut ctx, u64::MAX, &[0]));
        assert!(bus.mmio_write(&mut ctx, slot_base(3) + 0xffc, &[0; 4]));
        drop(bus);
        assert_eq!(p.last.get(), (0xffc, 4));
    }

    #[test]
    fn attach_refuses_taken_and_out_of_range_slots() {
        let (mut a, mut b, mut c) = (Probe::default(), Probe::default(), Probe::default());
        let mut bus = Bus::new();
        assert!(bus.attach(0, &mut a));
        assert!(!bus.attach(0, &mut b));
        assert!(!bus.attach(MMIO_MAX_SLOTS, &mut c));
        assert!(bus.has(0) && !bus.has(1));
    }
}
