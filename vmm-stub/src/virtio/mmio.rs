//! virtio-mmio transport, version 2 (virtio 1.x §4.2.2): the register file,
//! the device-status state machine and feature negotiation. Only this file
//! touches registers; the device behind it sees queues and chains.
//!
//! The guest chooses every offset, width and value. Registers accept only
//! aligned 32-bit accesses (others read 0 / are ignored); config space
//! accepts any width. Queue registers can be changed only between
//! FEATURES_OK and DRIVER_OK while the queue is disabled. A queue whose
//! layout is bad, or a device whose queue turns out malformed, gets
//! NEEDS_RESET and a config interrupt, and is not served until reset;
//! under `--smolvm-log=debug` the stub says which device, queue and
//! [`QueueError`] that was.

use super::queue::{Queue, QueueError};
use super::{Irq, VirtioDevice, F_EVENT_IDX, F_VERSION_1};
use crate::bus::{Ctx, MmioDevice};
use crate::mem::GuestMemory;
use crate::out::{self, Line};

/// Most queues one device may have (the multiport control device uses 12).
pub const MAX_QUEUES: usize = 12;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR: u32 = 0x4c4f_4d53; // "SMOL"

mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// Device status bits (virtio 1.x §2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}
use status::*;

/// The driver's path through initialisation: `(from, to)` pairs of the
/// driver-owned status bits. Writing 0 (reset) and setting FAILED are
/// accepted from any state; every other write is ignored.
const TRANSITIONS: [(u32, u32); 4] = [
    (0, ACKNOWLEDGE),
    (ACKNOWLEDGE, ACKNOWLEDGE | DRIVER),
    (ACKNOWLEDGE | DRIVER, ACKNOWLEDGE | DRIVER | FEATURES_OK),
    (ACKNOWLEDGE | DRIVER | FEATURES_OK, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK),
];

/// One virtio device behind a virtio-mmio register file, raising `irq`.
pub struct MmioTransport<'d> {
    dev: &'d mut dyn VirtioDevice,
    irq: u32,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: [Queue; MAX_QUEUES],
    nqueues: usize,
    interrupt_status: u32,
    config_generation: u32,
    /// Why the device last went to NEEDS_RESET: the queue (`None`: found
    /// during host-side work, not tied to one notify) and the error.
    reset_reason: Option<(Option<u32>, QueueError)>,
}

impl<'d> MmioTransport<'d> {
    /// Wraps `dev`; interrupts go to GSI `irq` (`bus::slot_irq(slot)`).
    pub fn new(dev: &'d mut dyn VirtioDevice, irq: u32) -> Self {
        let mut queues = [Queue::new(0); MAX_QUEUES];
        let sizes = dev.queue_max_sizes();
        let nqueues = sizes.len().min(MAX_QUEUES);
        for (q, &max) in queues.iter_mut().zip(sizes) {
            *q = Queue::new(max);
        }
        MmioTransport {
            dev,
            irq,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues,
            nqueues,
            interrupt_status: 0,
            config_generation: 0,
            reset_reason: None,
        }
    }

    /// The device status register (for tests and diagnostics).
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Why the device last went to NEEDS_RESET (kept across the reset).
    pub fn reset_reason(&self) -> Option<(Option<u32>, QueueError)> {
        self.reset_reason
    }

    /// The debug note for a device going to NEEDS_RESET.
    fn reset_note(&self, queue: Option<u32>, why: QueueError) -> Line {
        let mut l = Line::debug();
        l.s("virtio ").s(device_name(self.dev.device_id())).s(" (irq ").u(u64::from(self.irq)).s(")");
        match queue {
            Some(q) => l.s(" queue ").u(u64::from(q)),
            None => l.s(" host work"),
        };
        l.s(": ").s(why.name()).s(", device needs reset");
        l
    }

    fn offered(&self) -> u64 {
        self.dev.features() | F_VERSION_1
    }

    fn live(&self) -> bool {
        self.status & (DRIVER_OK | NEEDS_RESET | FAILED) == DRIVER_OK
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        let i = usize::try_from(self.queue_sel).ok()?;
        first(&mut self.queues, self.nqueues).get_mut(i)
    }

    /// The selected queue, if the driver may configure it now.
    fn configurable(&mut self) -> Option<&mut Queue> {
        if self.status & (FEATURES_OK | DRIVER_OK | FAILED) != FEATURES_OK {
            return None;
        }
        self.selected().filter(|q| !q.ready)
    }

    fn reset(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.dev.reset();
    }

    fn raise(&mut self, ctx: &mut Ctx<'_>, irq: Irq) {
        if irq.0 & Irq::CONFIG.0 != 0 {
            self.config_generation = self.config_generation.wrapping_add(1);
        }
        if irq.0 != 0 {
            self.interrupt_status |= irq.0;
            ctx.irq.set_level(self.irq, true);
        }
    }

    /// The line is level-triggered: high while any interrupt status bit is
    /// set. A pulse (edge) would be lost when it lands while the guest has
    /// the IOAPIC pin masked, which with several vCPUs happens (another
    /// CPU's interrupt handler moving the IRQ): the driver then waits
    /// forever. A level stays pending through the mask.
    fn lower_when_acked(&self, ctx: &mut Ctx<'_>) {
        if self.interrupt_status == 0 {
            ctx.irq.set_level(self.irq, false);
        }
    }

    /// A malformed queue (`queue`, or `None` for host-side work): stop
    /// serving the device, tell the driver, and say why in the debug log.
    fn needs_reset(&mut self, ctx: &mut Ctx<'_>, queue: Option<u32>, why: QueueError) {
        if self.status & NEEDS_RESET == 0 {
            self.status |= NEEDS_RESET;
            self.reset_reason = Some((queue, why));
            if out::debug_enabled() {
                self.reset_note(queue, why).emit();
            }
            self.raise(ctx, Irq::CONFIG);
        }
    }

    fn outcome(&mut self, ctx: &mut Ctx<'_>, queue: Option<u32>, r: Result<Irq, QueueError>) {
        match r {
            Ok(irq) => self.raise(ctx, irq),
            Err(e) => self.needs_reset(ctx, queue, e),
        }
    }

    fn write_status(&mut self, ctx: &mut Ctx<'_>, new: u32) {
        if new == 0 {
            self.reset();
            return self.lower_when_acked(ctx);
        }
        if new & FAILED != 0 {
            self.status |= FAILED;
            return;
        }
        let cur = self.status & !NEEDS_RESET;
        if !TRANSITIONS.contains(&(cur, new)) {
            return;
        }
        if new & FEATURES_OK != 0 && cur & FEATURES_OK == 0 {
            let f = self.driver_features;
            if f & F_VERSION_1 == 0 || f & !self.offered() != 0 {
                return; // FEATURES_OK stays clear: the driver reads back and fails.
            }
        }
        self.status = new | (self.status & NEEDS_RESET);
        if new & DRIVER_OK != 0 && cur & DRIVER_OK == 0 && self.live() {
            let queues = first(&mut self.queues, self.nqueues);
            for q in &mut *queues {
                q.event_idx = self.driver_features & F_EVENT_IDX != 0;
            }
            let irq = self.dev.activate(self.driver_features, queues, ctx.mem);
            self.raise(ctx, irq);
        }
    }

    fn set_queue_ready(&mut self, ctx: &mut Ctx<'_>, on: bool) {
        if !on {
            if let Some(q) = self.selected() {
                q.ready = false;
            }
            return;
        }
        let mem: &GuestMemory = ctx.mem;
        let queue = self.queue_sel;
        let Some(q) = self.configurable() else { return };
        match q.validate(mem) {
            Ok(()) => q.ready = true,
            Err(e) => self.needs_reset(ctx, Some(queue), e),
        }
    }

    fn notify(&mut self, ctx: &mut Ctx<'_>, index: u32) {
        let Ok(i) = usize::try_from(index) else { return };
        if !self.live() {
            return;
        }
        let queues = first(&mut self.queues, self.nqueues);
        if !queues.get(i).is_some_and(|q| q.ready) {
            return;
        }
        let r = self.dev.process_queue(i, queues, ctx.mem);
        self.outcome(ctx, Some(index), r);
    }

    /// Lets the device do host-side work (stdin input, signals).
    pub fn poll_host(&mut self, ctx: &mut Ctx<'_>) {
        if self.live() {
            let r = self.dev.poll_host(first(&mut self.queues, self.nqueues), ctx.mem);
            self.outcome(ctx, None, r);
        }
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        let half = |v: u64, sel: u32| match sel {
            0 => (v & 0xffff_ffff) as u32,
            1 => (v >> 32) as u32,
            _ => 0,
        };
        match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.dev.device_id(),
            reg::VENDOR_ID => VENDOR,
            reg::DEVICE_FEATURES => half(self.offered(), self.device_features_sel),
            reg::QUEUE_NUM_MAX => self.selected().map_or(0, |q| u32::from(q.max_size)),
            reg::QUEUE_READY => self.selected().map_or(0, |q| u32::from(q.ready)),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            reg::CONFIG_GENERATION => self.config_generation,
            _ => 0,
        }
    }

    fn write_reg(&mut self, ctx: &mut Ctx<'_>, offset: u64, v: u32) {
        let set_low = |x: &mut u64, v: u32| *x = (*x & !0xffff_ffff) | u64::from(v);
        let set_high = |x: &mut u64, v: u32| *x = (*x & 0xffff_ffff) | (u64::from(v) << 32);
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            // Features may change only between DRIVER and FEATURES_OK.
            reg::DRIVER_FEATURES if self.status & !NEEDS_RESET == ACKNOWLEDGE | DRIVER => {
                match self.driver_features_sel {
                    0 => set_low(&mut self.driver_features, v),
                    1 => set_high(&mut self.driver_features, v),
                    _ => {}
                }
            }
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM => {
                if let Some(q) = self.configurable() {
                    q.size = u16::try_from(v).unwrap_or(0); // 0 fails validation
                }
            }
            reg::QUEUE_READY => self.set_queue_ready(ctx, v == 1),
            reg::QUEUE_NOTIFY => self.notify(ctx, v),
            reg::INTERRUPT_ACK => {
                self.interrupt_status &= !v;
                self.lower_when_acked(ctx);
            }
            reg::STATUS => self.write_status(ctx, v),
            reg::QUEUE_DESC_LOW => self.configurable().into_iter().for_each(|q| set_low(&mut q.desc, v)),
            reg::QUEUE_DESC_HIGH => self.configurable().into_iter().for_each(|q| set_high(&mut q.desc, v)),
            reg::QUEUE_DRIVER_LOW => self.configurable().into_iter().for_each(|q| set_low(&mut q.avail, v)),
            reg::QUEUE_DRIVER_HIGH => self.configurable().into_iter().for_each(|q| set_high(&mut q.avail, v)),
            reg::QUEUE_DEVICE_LOW => self.configurable().into_iter().for_each(|q| set_low(&mut q.used, v)),
            reg::QUEUE_DEVICE_HIGH => self.configurable().into_iter().for_each(|q| set_high(&mut q.used, v)),
            _ => {}
        }
    }

}

/// The name of virtio device `id` in debug notes.
fn device_name(id: u32) -> &'static str {
    match id {
        super::id::BLOCK => "block",
        super::id::CONSOLE => "console",
        super::id::P9 => "9p",
        super::id::BALLOON => "balloon",
        _ => "device",
    }
}

/// The device's queues: the first `n` (n <= MAX_QUEUES: `new` caps it).
fn first(queues: &mut [Queue], n: usize) -> &mut [Queue] {
    queues.get_mut(..n).unwrap_or_default()
}

impl MmioDevice for MmioTransport<'_> {
    /// Any status a driver wrote (a reset device is not in use), on a
    /// device whose state is more than the transport's.
    #[cfg(feature = "warm-save")]
    fn in_use(&self) -> bool {
        self.status != 0 && !self.state_is_transport_only()
    }

    #[cfg(feature = "warm")]
    fn record(&self, slot: u32) -> Option<linker::warm::Device> {
        let mut queues = [linker::warm::QueueState::default(); linker::warm::MAX_QUEUES];
        for (r, q) in queues.iter_mut().zip(&self.queues[..self.nqueues]) {
            *r = q.record();
        }
        Some(linker::warm::Device {
            slot,
            device_id: self.dev.device_id(),
            status: self.status,
            interrupt_status: self.interrupt_status,
            driver_features: self.driver_features,
            config_generation: self.config_generation,
            queue_sel: self.queue_sel,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            nqueues: u32::try_from(self.nqueues).unwrap_or(0), // at most MAX_QUEUES
            private: self.fingerprint(),
            queues,
        })
    }

    /// The same device (id, queue count), features it offers, queue sizes
    /// it takes, and, if a driver uses it, a device whose state is the
    /// transport's with the config the driver saw (`fingerprint`).
    #[cfg(feature = "warm")]
    fn fits(&self, d: &linker::warm::Device) -> bool {
        d.device_id == self.dev.device_id() && d.nqueues as usize == self.nqueues
            && d.driver_features & !self.offered() == 0
            && (d.status == 0 || (self.state_is_transport_only() && d.private == self.fingerprint()))
            && self.queues.iter().zip(&d.queues[..self.nqueues]).all(|(q, r)| r.size <= q.max_size)
    }

    /// As [`Self::fits`], with ready queues valid in this RAM; else `false`
    /// and the transport stays reset. The interrupt line follows the
    /// restored status (the IOAPIC's own state came back with the VM).
    #[cfg(feature = "warm")]
    fn resume(&mut self, ctx: &mut Ctx<'_>, d: &linker::warm::Device) -> bool {
        if !self.fits(d) {
            return false;
        }
        for (q, r) in self.queues[..self.nqueues].iter_mut().zip(&d.queues) {
            if q.resume(r, ctx.mem).is_err() {
                self.reset();
                return false;
            }
        }
        self.status = d.status;
        self.interrupt_status = d.interrupt_status;
        self.driver_features = d.driver_features;
        self.config_generation = d.config_generation;
        self.queue_sel = d.queue_sel;
        self.device_features_sel = d.device_features_sel;
        self.driver_features_sel = d.driver_features_sel;
        if self.interrupt_status != 0 {
            ctx.irq.set_level(self.irq, true);
        }
        true
    }

    fn mmio_read(&mut self, _ctx: &mut Ctx<'_>, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            return self.dev.read_config(offset - reg::CONFIG, data);
        }
        let v = if data.len() == 4 && offset.is_multiple_of(4) { self.read_reg(offset) } else { 0 };
        let bytes = v.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(i).copied().unwrap_or(0);
        }
    }

    fn poll(&mut self, ctx: &mut Ctx<'_>) {
        self.poll_host(ctx);
    }

    fn mmio_write(&mut self, ctx: &mut Ctx<'_>, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            return self.dev.write_config(offset - reg::CONFIG, data);
        }
        if let (Ok(b), true) = (<[u8; 4]>::try_from(data), offset.is_multiple_of(4)) {
            self.write_reg(ctx, offset, u32::from_le_bytes(b));
        }
    }
}

/// Warm images: what of a device's state the transport can save.
#[cfg(feature = "warm")]
impl MmioTransport<'_> {
    /// Whether the transport and queue state is all of the device's state
    /// while a driver uses it. A disk's requests complete within their
    /// notify, so between two it is its transport plus the file; the
    /// consoles (open ports, pending input), 9p (fids), network (the
    /// link) and balloon keep state of their own, not saved yet.
    fn state_is_transport_only(&self) -> bool {
        self.dev.device_id() == super::id::BLOCK
    }

    /// What a driver may have cached from the device: the head of its
    /// config space (a disk's size, segment and block sizes). A used
    /// device resumes only where these bytes are the same.
    fn fingerprint(&self) -> [u8; linker::warm::DEVICE_PRIVATE_LEN] {
        let mut f = [0; linker::warm::DEVICE_PRIVATE_LEN];
        self.dev.read_config(0, &mut f);
        f
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bus::Interrupts;
    use crate::virtio::queue::testdriver;
    use core::cell::Cell;

    /// Counts the interrupts the guest would see (rising edges of the
    /// line) and keeps the line's level.
    #[derive(Default)]
    pub struct CountIrq(pub Cell<u32>, pub Cell<bool>);
    impl Interrupts for CountIrq {
        fn trigger(&self, _: u32) {
            self.0.set(self.0.get() + 1);
        }
        fn set_level(&self, _: u32, level: bool) {
            if level && !self.1.get() {
                self.0.set(self.0.get() + 1);
            }
            self.1.set(level);
        }
    }

    /// Echo device: copies each chain's readable bytes into its writable part.
    #[derive(Default)]
    struct Echo {
        activated: bool,
    }
    impl VirtioDevice for Echo {
        fn device_id(&self) -> u32 {
            42
        }
        fn features(&self) -> u64 {
            1 << 3
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16]
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            super::super::read_config_bytes(b"cfg!", offset, data)
        }
        fn activate(&mut self, _: u64, _: &mut [Queue], _: &GuestMemory) -> Irq {
            self.activated = true;
            Irq::NONE
        }
        fn process_queue(&mut self, i: usize, qs: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError> {
            let mut irq = Irq::NONE;
            while let Some(c) = qs[i].pop(mem)? {
                let mut buf = [0u8; 64];
                let n = crate::virtio::Reader::new(&c).read(mem, &mut buf);
                let mut w = crate::virtio::Writer::new(&c);
                w.write(mem, &buf[..n]);
                qs[i].add_used(mem, c.head, w.written())?;
                irq = Irq::VRING;
            }
            Ok(irq)
        }
    }

    /// Drives a transport like Linux's virtio_mmio driver does.
    pub struct Driver<'a, 'd> {
        pub t: MmioTransport<'d>,
        pub mem: &'a GuestMemory,
        pub irq: CountIrq,
    }

    impl<'a, 'd> Driver<'a, 'd> {
        pub fn new(dev: &'d mut dyn VirtioDevice, mem: &'a GuestMemory) -> Self {
            Driver { t: MmioTransport::new(dev, 5), mem, irq: CountIrq::default() }
        }
        pub fn r(&mut self, off: u64) -> u32 {
            let mut d = [0u8; 4];
            let mut ctx = Ctx { mem: self.mem, irq: &self.irq };
            self.t.mmio_read(&mut ctx, off, &mut d);
            u32::from_le_bytes(d)
        }
        pub fn w(&mut self, off: u64, v: u32) {
            let mut ctx = Ctx { mem: self.mem, irq: &self.irq };
            self.t.mmio_write(&mut ctx, off, &v.to_le_bytes());
        }
        pub fn poll(&mut self) {
            let mut ctx = Ctx { mem: self.mem, irq: &self.irq };
            self.t.poll_host(&mut ctx);
        }
        /// Negotiates `features`, sets up queue `i` (size, rings at the
        /// testdriver addresses + `i * 0x10000`), then DRIVER_OK.
        pub fn init(&mut self, features: u64, queues: &[(u32, u16)]) {
            self.w(reg::STATUS, 0);
            self.w(reg::STATUS, ACKNOWLEDGE);
            self.w(reg::STATUS, ACKNOWLEDGE | DRIVER);
            self.w(reg::DRIVER_FEATURES_SEL, 0);
            self.w(reg::DRIVER_FEATURES, features as u32);
            self.w(reg::DRIVER_FEATURES_SEL, 1);
            self.w(reg::DRIVER_FEATURES, (features >> 32) as u32);
            self.w(reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
            for &(i, size) in queues {
                let off = u64::from(i) * 0x10_0000;
                self.w(reg::QUEUE_SEL, i);
                self.w(reg::QUEUE_NUM, u32::from(size));
                self.w(reg::QUEUE_DESC_LOW, (testdriver::DESC + off) as u32);
                self.w(reg::QUEUE_DRIVER_LOW, (testdriver::AVAIL + off) as u32);
                self.w(reg::QUEUE_DEVICE_LOW, (testdriver::USED + off) as u32);
                self.w(reg::QUEUE_READY, 1);
            }
            self.w(reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        }
    }

    fn ram() -> GuestMemory {
        GuestMemory::new(1 << 20).expect("mmap")
    }

    #[test]
    fn identifies_itself_and_negotiates() {
        let mem = ram();
        let mut dev = Echo::default();
        let mut d = Driver::new(&mut dev, &mem);
        assert_eq!(d.r(reg::MAGIC), MAGIC);
        assert_eq!(d.r(reg::VERSION), 2);
        assert_eq!(d.r(reg::DEVICE_ID), 42);
        d.w(reg::DEVICE_FEATURES_SEL, 1);
        assert_eq!(d.r(reg::DEVICE_FEATURES), 1); // VERSION_1 (bit 32)
        d.w(reg::DEVICE_FEATURES_SEL, 0);
        assert_eq!(d.r(reg::DEVICE_FEATURES), 8);
        d.init(F_VERSION_1 | 8, &[(0, 16)]);
        assert_eq!(d.r(reg::STATUS), 0xf);
        assert_eq!(d.r(reg::QUEUE_READY), 1);
        assert_eq!(d.r(reg::CONFIG), u32::from_le_bytes(*b"cfg!"));
        assert_eq!(d.r(reg::CONFIG + 4), 0);
        drop(d);
        assert!(dev.activated);
    }

    #[test]
    fn refuses_features_without_version_1_or_not_offered() {
        for bad in [8u64, F_VERSION_1 | 16] {
            let mem = ram();
            let mut dev = Echo::default();
            let mut d = Driver::new(&mut dev, &mem);
            d.init(bad, &[(0, 16)]);
            assert_eq!(d.r(reg::STATUS), ACKNOWLEDGE | DRIVER, "features {bad:#x}");
            drop(d);
            assert!(!dev.activated);
        }
    }

    #[test]
    fn ignores_out_of_order_status_writes() {
        let mem = ram();
        let mut dev = Echo::default();
        let mut d = Driver::new(&mut dev, &mem);
        d.w(reg::STATUS, 0xf);
        assert_eq!(d.r(reg::STATUS), 0);
        d.w(reg::STATUS, ACKNOWLEDGE);
        d.w(reg::STATUS, ACKNOWLEDGE | DRIVER | DRIVER_OK);
        assert_eq!(d.r(reg::STATUS), ACKNOWLEDGE);
        d.w(reg::STATUS, ACKNOWLEDGE | FAILED);
        assert_eq!(d.r(reg::STATUS), ACKNOWLEDGE | FAILED);
        d.w(reg::STATUS, 0);
        assert_eq!(d.r(reg::STATUS), 0);
    }

    #[test]
    fn serves_a_queue_and_interrupts() {
        let mem = ram();
        let mut dev = Echo::default();
        let mut d = Driver::new(&mut dev, &mem);
        d.init(F_VERSION_1, &[(0, 16)]);
        d.mem.write_slice(crate::mem::GuestAddress(testdriver::DATA), b"ping").expect("ram");
        testdriver::chain(d.mem, 16, 0, &[(testdriver::DATA, 4, false), (testdriver::DATA + 64, 8, true)]);
        d.w(reg::QUEUE_NOTIFY, 0);
        assert_eq!(testdriver::used(d.mem, 0), (1, 0, 4));
        assert_eq!(d.mem.to_vec(crate::mem::GuestAddress(testdriver::DATA + 64), 4).as_deref(), Some(&b"ping"[..]));
        assert_eq!(d.r(reg::INTERRUPT_STATUS), 1);
        assert_eq!(d.irq.0.get(), 1);
        assert!(d.irq.1.get(), "the line stays high until the driver acknowledges");
        d.w(reg::INTERRUPT_ACK, 1);
        assert_eq!(d.r(reg::INTERRUPT_STATUS), 0);
        assert!(!d.irq.1.get(), "acknowledged: the line is low");
        // Notifying a queue that does not exist does nothing.
        d.w(reg::QUEUE_NOTIFY, 7);
        d.w(reg::QUEUE_NOTIFY, u32::MAX);
        assert_eq!(d.irq.0.get(), 1);
    }

    #[test]
    fn the_line_stays_high_until_every_status_bit_is_acknowledged_or_the_device_resets() {
        let mem = ram();
        let mut dev = Echo::default();
        let mut d = Driver::new(&mut dev, &mem);
        d.init(F_VERSION_1, &[(0, 16)]);
        for round in 0..2u16 {
            testdriver::chain(d.mem, 16, round, &[(testdriver::DATA, 4, false), (testdriver::DATA + 64, 8, true)]);
            d.w(reg::QUEUE_NOTIFY, 0);
        }
        // Two completions before the driver looked: one interrupt, still pending.
        assert_eq!((d.irq.0.get(), d.irq.1.get()), (1, true));
        d.w(reg::INTERRUPT_ACK, 2); // a bit that is not set: nothing changes
        assert_eq!((d.r(reg::INTERRUPT_STATUS), d.irq.1.get()), (1, true));
        d.w(reg::INTERRUPT_ACK, 1);
        assert!(!d.irq.1.get());
        testdriver::chain(d.mem, 16, 2, &[(testdriver::DATA, 4, false), (testdriver::DATA + 64, 8, true)]);
        d.w(reg::QUEUE_NOTIFY, 0);
        assert_eq!((d.irq.0.get(), d.irq.1.get()), (2, true));
        // A reset with the interrupt unacknowledged lowers the line.
        d.w(reg::STATUS, 0);
        assert_eq!((d.r(reg::INTERRUPT_STATUS), d.irq.1.get()), (0, false));
    }

    #[test]
    fn bad_queue_layouts_need_reset() {
        for (size, desc) in [(0u32, testdriver::DESC), (12, testdriver::DESC), (32, testdriver::DESC), (16, testdriver::DESC + 4), (16, (1 << 20) - 8)] {
            let mem = ram();
            let mut dev = Echo::default();
            let mut d = Driver::new(&mut dev, &mem);
            d.w(reg::STATUS, ACKNOWLEDGE);
            d.w(reg::STATUS, ACKNOWLEDGE | DRIVER);
            d.w(reg::DRIVER_FEATURES_SEL, 1);
            d.w(reg::DRIVER_FEATURES, 1);
            d.w(reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
            d.w(reg::QUEUE_SEL, 0);
            d.w(reg::QUEUE_NUM, size);
            d.w(reg::QUEUE_DESC_LOW, desc as u32);
            d.w(reg::QUEUE_DRIVER_LOW, testdriver::AVAIL as u32);
            d.w(reg::QUEUE_DEVICE_LOW, testdriver::USED as u32);
            d.w(reg::QUEUE_READY, 1);
            assert_eq!(d.r(reg::QUEUE_READY), 0, "size {size} desc {desc:#x}");
            assert_ne!(d.r(reg::STATUS) & NEEDS_RESET, 0);
            assert_eq!(d.r(reg::INTERRUPT_STATUS), 2);
            let why = if size == 16 { QueueError::BadRing } else { QueueError::BadSize };
            assert_eq!(d.t.reset_reason(), Some((Some(0), why)), "size {size} desc {desc:#x}");
            // A reset clears it.
            d.w(reg::STATUS, 0);
            assert_eq!(d.r(reg::STATUS), 0);
        }
    }

    #[test]
    fn a_malformed_chain_stops_the_device() {
        let mem = ram();
        let mut dev = Echo::default();
        let mut d = Driver::new(&mut dev, &mem);
        d.init(F_VERSION_1, &[(0, 16)]);
        testdriver::set_desc(d.mem, 0, testdriver::DATA, 4, 1, 0); // loops on itself
        testdriver::publish(d.mem, 16, 0);
        d.w(reg::QUEUE_NOTIFY, 0);
        assert_eq!(d.r(reg::STATUS), 0xf | NEEDS_RESET);
        assert_eq!(d.r(reg::INTERRUPT_STATUS), 2);
        // The reason is kept and is what the debug note says.
        assert_eq!(d.t.reset_reason(), Some((Some(0), QueueError::ChainLoop)));
        let note = d.t.reset_note(Some(0), QueueError::ChainLoop);
        assert_eq!(note.as_bytes(), b"smolvm: debug: virtio device (irq 5) queue 0: ChainLoop, device needs reset");
        // No longer served: a good chain is not consumed.
        testdriver::chain(d.mem, 16, 1, &[(testdriver::DATA, 4, false)]);
        d.w(reg::QUEUE_NOTIFY, 0);
        assert_eq!(testdriver::used(d.mem, 0).0, 0);
    }

    #[test]
    fn queue_registers_are_locked_outside_setup() {
        let mem = ram();
        let mut dev = Echo::default();
        let mut d = Driver::new(&mut dev, &mem);
        d.init(F_VERSION_1, &[(0, 16)]);
        d.w(reg::QUEUE_NUM, 4);
        d.w(reg::QUEUE_DESC_LOW, 0x8000);
        assert_eq!(d.t.queues[0].size, 16);
        assert_eq!(d.t.queues[0].desc, testdriver::DESC);
        // Odd widths and offsets read as zero and are ignored.
        let mut b = [0u8; 2];
        let mut ctx = Ctx { mem: d.mem, irq: &d.irq };
        d.t.mmio_read(&mut ctx, reg::MAGIC, &mut b);
        assert_eq!(b, [0, 0]);
        d.t.mmio_write(&mut ctx, reg::STATUS + 1, &[0, 0, 0, 0]);
        assert_eq!(d.t.status(), 0xf);
    }
}

#[cfg(all(test, feature = "warm"))]
mod warm_tests {
    use super::tests::Driver;
    use super::*;
    use crate::bus::MmioDevice;

    /// A device with a disk's id (state all in the transport) or another.
    struct Dev(u32);
    impl VirtioDevice for Dev {
        fn device_id(&self) -> u32 {
            self.0
        }
        fn features(&self) -> u64 {
            1 << 9
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16]
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            super::super::read_config_bytes(&self.0.to_le_bytes(), offset, data)
        }
        fn process_queue(&mut self, _: usize, _: &mut [Queue], _: &GuestMemory) -> Result<Irq, QueueError> {
            Ok(Irq::NONE)
        }
    }

    fn in_use_record(mem: &GuestMemory) -> linker::warm::Device {
        let mut dev = Dev(super::super::id::BLOCK);
        let mut d = Driver::new(&mut dev, mem);
        d.init(F_VERSION_1 | 1 << 9, &[(0, 8)]);
        d.t.record(3).expect("a transport has a record")
    }

    #[test]
    fn a_record_goes_back_onto_the_same_device() {
        let mem = GuestMemory::new(1 << 20).expect("mmap");
        let rec = in_use_record(&mem);
        assert_eq!((rec.slot, rec.status, rec.nqueues, rec.queues[0].size, rec.queues[0].ready()), (3, 0xf, 1, 8, true));
        assert_eq!(linker::warm::Device::parse(&rec.encode(), mem.len()), Ok(rec), "the format accepts it");
        let mut dev = Dev(super::super::id::BLOCK);
        let mut d = Driver::new(&mut dev, &mem);
        assert!(d.t.fits(&rec));
        let mut ctx = Ctx { mem: &mem, irq: &d.irq };
        assert!(d.t.resume(&mut ctx, &rec));
        assert_eq!((d.r(reg::STATUS), d.r(reg::QUEUE_READY)), (0xf, 1));
        assert_eq!(d.t.record(3), Some(rec));
    }

    #[test]
    fn records_that_do_not_fit_are_refused() {
        let mem = GuestMemory::new(1 << 20).expect("mmap");
        let rec = in_use_record(&mem);
        let refused = |edit: &dyn Fn(&mut linker::warm::Device), id: u32| {
            let mut r = rec;
            edit(&mut r);
            let mut dev = Dev(id);
            let mut d = Driver::new(&mut dev, &mem);
            let mut ctx = Ctx { mem: &mem, irq: &d.irq };
            let refused = !d.t.fits(&r) && !d.t.resume(&mut ctx, &r);
            refused && d.r(reg::STATUS) == 0
        };
        let disk = super::super::id::BLOCK;
        assert!(refused(&|r| r.device_id = 3, disk));
        assert!(refused(&|r| r.nqueues = 2, disk));
        assert!(refused(&|r| r.queues[0].size = 32, disk), "above the device's maximum");
        assert!(refused(&|r| r.driver_features |= 1 << 5, disk), "a feature never offered");
        assert!(refused(&|r| r.private[0] ^= 1, disk), "another config than the driver saw");
        assert!(refused(&|r| r.device_id = 42, 42), "a used device with state of its own");
        // Inside the format's bounds, outside this RAM: refused at resume,
        // the transport stays reset.
        let mut r = rec;
        r.queues[0].desc = 2 << 20;
        let mut dev = Dev(disk);
        let mut d = Driver::new(&mut dev, &mem);
        let mut ctx = Ctx { mem: &mem, irq: &d.irq };
        assert!(d.t.fits(&r) && !d.t.resume(&mut ctx, &r));
        assert_eq!((d.r(reg::STATUS), d.r(reg::QUEUE_READY)), (0, 0));
        // An idle device of any kind fits an idle record.
        let mut dev = Dev(42);
        let idle = Driver::new(&mut dev, &mem).t.record(1).expect("record");
        let mut dev = Dev(42);
        assert!(Driver::new(&mut dev, &mem).t.fits(&idle));
    }
}
