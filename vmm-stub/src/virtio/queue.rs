//! Split virtqueue (virtio 1.x §2.7), driven by a hostile guest.
//!
//! The driver's three rings live in guest RAM and change whenever the guest
//! runs. Every value read from them is checked before use:
//! - at enable time ([`Queue::validate`]): size a non-zero power of two
//!   `<= max_size`, rings aligned (16/2/4) and wholly inside RAM;
//! - per pop ([`Queue::pop`]): the avail index may run ahead of ours by at most
//!   `size`; heads and `next` links are `< size`; a chain has at most `size`
//!   descriptors (a loop ends there); each buffer's `addr + len` lies inside RAM;
//!   readable buffers precede writable ones; the total length fits in `u32`.
//!
//! Any violation is a [`QueueError`]: the transport then marks the device
//! NEEDS_RESET and stops serving it. Nothing here panics on guest input.
//!
//! Other vCPUs run while a device works (`mem.rs` says why the accesses are
//! sound), so every guest value is read once, checked, then used from the
//! copy (a head, each descriptor's four fields), and the ring accesses are
//! ordered as virtio 1.x §2.7.13 and §2.7.10 want:
//! - after reading `avail.idx`, an acquire fence: the ring slots and
//!   descriptors the driver wrote before publishing that index are read
//!   after it, not earlier (x86 keeps loads in order; the fence stops the
//!   compiler);
//! - before writing `used.idx`, a release fence: the used element is visible
//!   first;
//! - between a write the driver must see (`used.idx`, `avail_event`) and the
//!   read that decides whether to interrupt or to sleep (`avail.flags`,
//!   `avail.idx`), a full fence (`mfence`: x86 may otherwise let the read
//!   pass the write, and a driver that just re-enabled interrupts, or
//!   published a buffer without notifying, would wait forever).

use crate::mem::{GuestAddress, GuestMemory};
use core::sync::atomic::{fence, Ordering};

/// Largest queue any device here offers. Bounds the on-stack chain.
pub const QUEUE_MAX: u16 = 256;

const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;
/// `avail.flags`: the driver does not want an interrupt.
const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Why a queue stopped being served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// Size zero, not a power of two, or above the device maximum.
    BadSize,
    /// A ring is misaligned or not wholly inside guest RAM.
    BadRing,
    /// The avail index moved more than `size` past the last one seen.
    AvailJump,
    /// A head or `next` descriptor index is `>= size`.
    IndexOutOfRange,
    /// The chain has more than `size` descriptors (it loops).
    ChainLoop,
    /// A buffer is outside guest RAM or its `addr + len` wraps.
    BufferOutsideRam,
    /// The chain's buffers add up to more than `u32::MAX` bytes.
    ChainTooLong,
    /// A device-readable buffer follows a device-writable one.
    ReadableAfterWritable,
    /// An indirect descriptor (the feature is not offered).
    Indirect,
    /// The queue is used before the driver enabled it.
    NotReady,
    /// A request whose shape the device cannot accept at all (device-specific).
    BadRequest,
}

impl QueueError {
    /// The variant's name, for the debug log.
    pub fn name(self) -> &'static str {
        match self {
            QueueError::BadSize => "BadSize",
            QueueError::BadRing => "BadRing",
            QueueError::AvailJump => "AvailJump",
            QueueError::IndexOutOfRange => "IndexOutOfRange",
            QueueError::ChainLoop => "ChainLoop",
            QueueError::BufferOutsideRam => "BufferOutsideRam",
            QueueError::ChainTooLong => "ChainTooLong",
            QueueError::ReadableAfterWritable => "ReadableAfterWritable",
            QueueError::Indirect => "Indirect",
            QueueError::NotReady => "NotReady",
            QueueError::BadRequest => "BadRequest",
        }
    }
}

/// One guest buffer of a chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub addr: u64,
    pub len: u32,
}

/// A validated descriptor chain: readable segments first, then writable ones.
/// Every segment lies inside guest RAM (checked when popped).
pub struct DescriptorChain {
    /// Head index: what goes back in the used ring.
    pub head: u16,
    segs: heapless::Vec<Segment, { QUEUE_MAX as usize }>,
    /// Number of leading device-readable segments.
    readable: usize,
}

impl DescriptorChain {
    /// The device-readable segments, in order.
    pub fn readable(&self) -> &[Segment] {
        // readable <= segs.len(): `walk` counts only segments it pushed.
        self.segs.get(..self.readable).unwrap_or_default()
    }

    /// The device-writable segments, in order.
    pub fn writable(&self) -> &[Segment] {
        self.segs.get(self.readable..).unwrap_or_default()
    }
}

/// Driver-configured state of one virtqueue plus the device's ring cursors.
#[derive(Clone, Copy, Debug)]
pub struct Queue {
    /// Largest size the device accepts (`QueueNumMax`).
    pub max_size: u16,
    /// Size chosen by the driver (`QueueNum`).
    pub size: u16,
    /// `QueueReady`: set only after [`Queue::validate`] passed.
    pub ready: bool,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    /// The driver accepted `VIRTIO_F_EVENT_IDX` (set when the device goes
    /// live): it notifies only when it crosses our `avail_event`.
    pub event_idx: bool,
    next_avail: u16,
    next_used: u16,
}

impl Queue {
    pub const fn new(max_size: u16) -> Queue {
        Queue { max_size, size: max_size, ready: false, desc: 0, avail: 0, used: 0, event_idx: false, next_avail: 0, next_used: 0 }
    }

    /// Back to the reset state (keeps `max_size`).
    pub fn reset(&mut self) {
        *self = Queue::new(self.max_size);
    }

    /// Checks the driver's configuration before the queue goes live.
    /// The alignment makes every ring field naturally aligned, so each is
    /// read and written whole (`GuestMemory::read_obj`).
    pub fn validate(&self, mem: &GuestMemory) -> Result<(), QueueError> {
        let n = u64::from(self.size);
        if self.size == 0 || !self.size.is_power_of_two() || self.size > self.max_size {
            return Err(QueueError::BadSize);
        }
        let rings = [(self.desc, 16, 16 * n), (self.avail, 2, 6 + 2 * n), (self.used, 4, 6 + 8 * n)];
        for (addr, align, len) in rings {
            if !addr.is_multiple_of(align) || mem.range(GuestAddress(addr), len).is_none() {
                return Err(QueueError::BadRing);
            }
        }
        Ok(())
    }

    fn read_u16(mem: &GuestMemory, addr: u64) -> Result<u16, QueueError> {
        mem.read_obj::<u16>(GuestAddress(addr)).ok_or(QueueError::BadRing)
    }

    /// `avail.idx` as the driver last published it; what it published
    /// before it is read after it (acquire).
    fn avail_idx(&self, mem: &GuestMemory) -> Result<u16, QueueError> {
        let idx = Self::read_u16(mem, self.avail + 2)?;
        fence(Ordering::Acquire);
        Ok(idx)
    }

    /// Whether the driver asked not to be interrupted (`VRING_AVAIL_F_NO_INTERRUPT`),
    /// read after every used element written so far is visible (a driver
    /// that clears the flag then checks `used.idx` sees them, or we see the
    /// cleared flag).
    pub fn interrupts_suppressed(&self, mem: &GuestMemory) -> bool {
        fence(Ordering::SeqCst);
        Self::read_u16(mem, self.avail).is_ok_and(|f| f & AVAIL_F_NO_INTERRUPT != 0)
    }

    /// Whether the driver has made buffers available that we have not taken.
    pub fn has_available(&self, mem: &GuestMemory) -> Result<bool, QueueError> {
        if !self.ready {
            return Ok(false);
        }
        let pending = self.avail_idx(mem)?.wrapping_sub(self.next_avail);
        if pending > self.size {
            return Err(QueueError::AvailJump);
        }
        Ok(pending != 0)
    }

    /// Takes the next available chain, fully validated, or `None` if the
    /// driver has not published one.
    pub fn pop(&mut self, mem: &GuestMemory) -> Result<Option<DescriptorChain>, QueueError> {
        if !self.has_available(mem)? {
            return Ok(None);
        }
        let size = self.size;
        // size != 0: `ready` queues passed `validate`.
        let slot = u64::from(self.next_avail.checked_rem(size).ok_or(QueueError::BadSize)?);
        let head = Self::read_u16(mem, self.avail + 4 + 2 * slot)?;
        let chain = self.walk(mem, head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(Some(chain))
    }

    fn walk(&self, mem: &GuestMemory, head: u16) -> Result<DescriptorChain, QueueError> {
        let mut chain = DescriptorChain { head, segs: heapless::Vec::new(), readable: 0 };
        let mut index = head;
        let mut total: u64 = 0;
        loop {
            if index >= self.size {
                return Err(QueueError::IndexOutOfRange);
            }
            // At most `size` descriptors: a longer chain must revisit one.
            if chain.segs.len() >= usize::from(self.size) {
                return Err(QueueError::ChainLoop);
            }
            let d = self.desc + 16 * u64::from(index);
            let addr = mem.read_obj::<u64>(GuestAddress(d)).ok_or(QueueError::BadRing)?;
            let len = mem.read_obj::<u32>(GuestAddress(d + 8)).ok_or(QueueError::BadRing)?;
            let flags = Self::read_u16(mem, d + 12)?;
            let next = Self::read_u16(mem, d + 14)?;
            if flags & DESC_F_INDIRECT != 0 {
                return Err(QueueError::Indirect);
            }
            if mem.range(GuestAddress(addr), u64::from(len)).is_none() {
                return Err(QueueError::BufferOutsideRam);
            }
            total += u64::from(len);
            if total > u64::from(u32::MAX) {
                return Err(QueueError::ChainTooLong);
            }
            if flags & DESC_F_WRITE == 0 {
                if chain.readable != chain.segs.len() {
                    return Err(QueueError::ReadableAfterWritable);
                }
                chain.readable += 1;
            }
            chain.segs.push(Segment { addr, len }).map_err(|_| QueueError::ChainLoop)?;
            if flags & DESC_F_NEXT == 0 {
                return Ok(chain);
            }
            index = next;
        }
    }

    /// Puts back the chain the last `pop` took (nothing was written to it),
    /// so the next `pop` returns it again.
    pub fn unpop(&mut self) {
        self.next_avail = self.next_avail.wrapping_sub(1);
    }

    /// With `VIRTIO_F_EVENT_IDX`: asks the driver to notify us once it has
    /// made `after` (≥ 1) more buffers available than we have taken.
    /// [`Queue::add_used`] asks for the next one, so a device that takes
    /// every available buffer before it waits for more is always notified.
    /// The next read of `avail.idx` comes after the write (full fence): a
    /// driver that then publishes without notifying (it saw the old
    /// `avail_event`) has its buffer found by that read.
    pub fn notify_after(&self, mem: &GuestMemory, after: u16) -> Result<(), QueueError> {
        if !self.event_idx {
            return Ok(());
        }
        let avail_event = self.used + 4 + 8 * u64::from(self.size);
        let at = self.next_avail.wrapping_add(after.max(1) - 1);
        mem.write_obj(GuestAddress(avail_event), at).ok_or(QueueError::BadRing)?;
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// Returns chain `head` to the driver with `len` bytes written into it.
    pub fn add_used(&mut self, mem: &GuestMemory, head: u16, len: u32) -> Result<(), QueueError> {
        if !self.ready {
            return Err(QueueError::NotReady);
        }
        // size != 0, as in `pop`.
        let slot = u64::from(self.next_used.checked_rem(self.size).ok_or(QueueError::BadSize)?);
        let elem = self.used + 4 + 8 * slot;
        mem.write_obj(GuestAddress(elem), u32::from(head)).ok_or(QueueError::BadRing)?;
        mem.write_obj(GuestAddress(elem + 4), len).ok_or(QueueError::BadRing)?;
        self.next_used = self.next_used.wrapping_add(1);
        // The element must be visible before the index that publishes it.
        fence(Ordering::Release);
        mem.write_obj(GuestAddress(self.used + 2), self.next_used).ok_or(QueueError::BadRing)?;
        self.notify_after(mem, 1)
    }
}

/// Test helper: a driver side that lays out rings and chains in a
/// [`GuestMemory`], as a (possibly hostile) guest would.
/// A minimal driver for tests and fuzz targets (feature `test-utils`, and
/// the crate's own unit tests): a queue at fixed ring addresses, and
/// helpers that write descriptors and publish chains as a guest would.
/// Its functions panic on addresses outside guest RAM: test code only.
#[cfg(any(test, feature = "test-utils"))]
pub mod testdriver {
    use super::*;

    /// Descriptor flags (virtio 1.x §2.7.5).
    pub const F_NEXT: u16 = DESC_F_NEXT;
    pub const F_WRITE: u16 = DESC_F_WRITE;
    pub const F_INDIRECT: u16 = DESC_F_INDIRECT;

    pub const DESC: u64 = 0x1000;
    pub const AVAIL: u64 = 0x2000;
    pub const USED: u64 = 0x3000;
    pub const DATA: u64 = 0x10000;

    /// A ready queue of `size` at the fixed ring addresses above (they fit
    /// guest RAM of 16 KiB and more; data from `DATA` needs more).
    pub fn queue(mem: &GuestMemory, size: u16) -> Queue {
        let mut q = Queue::new(QUEUE_MAX);
        q.size = size;
        q.desc = DESC;
        q.avail = AVAIL;
        q.used = USED;
        q.validate(mem).expect("valid test queue");
        q.ready = true;
        q
    }

    /// Writes descriptor `i` of the table at `DESC`.
    pub fn set_desc(mem: &GuestMemory, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = DESC + 16 * u64::from(i);
        mem.write_obj(GuestAddress(d), addr).expect("ram");
        mem.write_obj(GuestAddress(d + 8), len).expect("ram");
        mem.write_obj(GuestAddress(d + 12), flags).expect("ram");
        mem.write_obj(GuestAddress(d + 14), next).expect("ram");
    }

    /// Publishes `head` in the avail ring and bumps `avail.idx`.
    pub fn publish(mem: &GuestMemory, size: u16, head: u16) {
        let idx = mem.read_obj::<u16>(GuestAddress(AVAIL + 2)).expect("ram");
        mem.write_obj(GuestAddress(AVAIL + 4 + 2 * u64::from(idx % size)), head).expect("ram");
        mem.write_obj(GuestAddress(AVAIL + 2), idx.wrapping_add(1)).expect("ram");
    }

    /// Builds a chain from `bufs` (addr, len, writable) at descriptors
    /// `first..` and publishes it.
    pub fn chain(mem: &GuestMemory, size: u16, first: u16, bufs: &[(u64, u32, bool)]) {
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = first + k as u16;
            let more = k + 1 < bufs.len();
            let flags = if w { F_WRITE } else { 0 } | if more { F_NEXT } else { 0 };
            set_desc(mem, i, addr, len, flags, i + 1);
        }
        publish(mem, size, first);
    }

    /// The used ring's `idx` and element `n`.
    pub fn used(mem: &GuestMemory, n: u16) -> (u16, u32, u32) {
        let idx = mem.read_obj::<u16>(GuestAddress(USED + 2)).expect("ram");
        let e = USED + 4 + 8 * u64::from(n);
        (idx, mem.read_obj(GuestAddress(e)).expect("ram"), mem.read_obj(GuestAddress(e + 4)).expect("ram"))
    }
}

/// A warm image's queue record (`linker::warm::QueueState`).
#[cfg(feature = "warm")]
impl Queue {
    pub fn record(&self) -> linker::warm::QueueState {
        let flags = if self.ready { linker::warm::QUEUE_READY } else { 0 } | if self.event_idx { linker::warm::QUEUE_EVENT_IDX } else { 0 };
        if !self.ready {
            // An idle queue keeps only its size (the format's rule).
            return linker::warm::QueueState { size: self.size, ..Default::default() };
        }
        linker::warm::QueueState { desc: self.desc, avail: self.avail, used: self.used, size: self.size, flags, next_avail: self.next_avail, next_used: self.next_used }
    }

    /// Puts a record back; a ready queue must pass [`Queue::validate`] here.
    pub fn resume(&mut self, r: &linker::warm::QueueState, mem: &GuestMemory) -> Result<(), QueueError> {
        let q = Queue { max_size: self.max_size, size: r.size, ready: false, desc: r.desc, avail: r.avail, used: r.used, event_idx: r.flags & linker::warm::QUEUE_EVENT_IDX != 0, next_avail: r.next_avail, next_used: r.next_used };
        if r.size > self.max_size {
            return Err(QueueError::BadSize);
        }
        if r.ready() {
            q.validate(mem)?;
        }
        *self = Queue { ready: r.ready(), ..q };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::testdriver::*;
    use super::*;

    fn ram() -> GuestMemory {
        GuestMemory::new(1 << 20).expect("mmap")
    }

    #[test]
    fn pops_a_chain_and_returns_it() {
        let mem = ram();
        let mut q = queue(&mem, 8);
        assert!(q.pop(&mem).expect("ok").is_none());
        chain(&mem, 8, 0, &[(DATA, 16, false), (DATA + 16, 100, true), (DATA + 200, 1, true)]);
        let c = q.pop(&mem).expect("ok").expect("chain");
        assert_eq!(c.head, 0);
        assert_eq!(c.readable(), &[Segment { addr: DATA, len: 16 }]);
        assert_eq!(c.writable().len(), 2);
        q.add_used(&mem, c.head, 101).expect("used");
        assert_eq!(used(&mem, 0), (1, 0, 101));
        assert!(q.pop(&mem).expect("ok").is_none());
    }

    #[test]
    fn indexes_wrap_around_u16() {
        let mem = ram();
        let mut q = queue(&mem, 4);
        for round in 0..70_000u32 {
            chain(&mem, 4, 0, &[(DATA, 8, false)]);
            let c = q.pop(&mem).expect("ok").expect("chain");
            q.add_used(&mem, c.head, round).expect("used");
        }
        assert_eq!(used(&mem, 0).0, (70_000u32 % 65_536) as u16);
    }

    #[test]
    fn refuses_bad_sizes() {
        let mem = ram();
        for size in [0, 3, 100, QUEUE_MAX * 2] {
            let mut q = Queue::new(QUEUE_MAX);
            q.size = size;
            q.desc = DESC;
            q.avail = AVAIL;
            q.used = USED;
            assert_eq!(q.validate(&mem), Err(QueueError::BadSize), "size {size}");
        }
    }

    #[test]
    fn refuses_unaligned_or_outside_rings() {
        let mem = ram();
        let base = Queue { size: 16, desc: DESC, avail: AVAIL, used: USED, ..Queue::new(QUEUE_MAX) };
        assert_eq!(base.validate(&mem), Ok(()));
        let bad = [
            Queue { desc: DESC + 8, ..base },
            Queue { avail: AVAIL + 1, ..base },
            Queue { used: USED + 2, ..base },
            Queue { desc: (1 << 20) - 16, ..base },
            Queue { used: u64::MAX - 3, ..base },
            Queue { avail: u64::MAX - 1, ..base },
        ];
        for q in bad {
            assert_eq!(q.validate(&mem), Err(QueueError::BadRing), "{q:?}");
        }
    }

    #[test]
    fn a_looping_chain_stops_at_the_queue_size() {
        let mem = ram();
        let mut q = queue(&mem, 8);
        set_desc(&mem, 0, DATA, 1, DESC_F_NEXT, 1);
        set_desc(&mem, 1, DATA, 1, DESC_F_NEXT, 0);
        publish(&mem, 8, 0);
        assert_eq!(q.pop(&mem).err(), Some(QueueError::ChainLoop));
        // A descriptor pointing at itself.
        let mut q = queue(&mem, 8);
        set_desc(&mem, 5, DATA, 1, DESC_F_NEXT, 5);
        mem.write_obj(GuestAddress(AVAIL + 2), 0u16).expect("ram");
        publish(&mem, 8, 5);
        assert_eq!(q.pop(&mem).err(), Some(QueueError::ChainLoop));
    }

    #[test]
    fn refuses_out_of_range_indexes() {
        let mem = ram();
        let mut q = queue(&mem, 8);
        set_desc(&mem, 0, DATA, 1, DESC_F_NEXT, 8);
        publish(&mem, 8, 0);
        assert_eq!(q.pop(&mem).err(), Some(QueueError::IndexOutOfRange));
        let mut q = queue(&mem, 8);
        mem.write_obj(GuestAddress(AVAIL + 2), 0u16).expect("ram");
        publish(&mem, 8, 0xffff);
        assert_eq!(q.pop(&mem).err(), Some(QueueError::IndexOutOfRange));
    }

    #[test]
    fn refuses_buffers_outside_ram_or_wrapping() {
        for (addr, len) in [(1u64 << 20, 1u32), ((1 << 20) - 4, 5), (u64::MAX - 2, 8), (u64::MAX, 1)] {
            let mem = ram();
            let mut q = queue(&mem, 8);
            chain(&mem, 8, 0, &[(addr, len, true)]);
            assert_eq!(q.pop(&mem).err(), Some(QueueError::BufferOutsideRam), "{addr:#x}+{len}");
        }
    }

    #[test]
    fn refuses_chains_longer_than_u32() {
        // The same buffers listed many times: each fits RAM, the sum does not fit u32.
        let mem = GuestMemory::new(1 << 31).expect("mmap");
        let mut q = queue(&mem, 8);
        let big = (0x1000_0000u64, 0x7000_0000u32, true);
        chain(&mem, 8, 0, &[big, big, big]);
        assert_eq!(q.pop(&mem).err(), Some(QueueError::ChainTooLong));
    }

    #[test]
    fn refuses_avail_index_jumps() {
        let mem = ram();
        let mut q = queue(&mem, 8);
        mem.write_obj(GuestAddress(AVAIL + 2), 9u16).expect("ram");
        assert_eq!(q.pop(&mem).err(), Some(QueueError::AvailJump));
        mem.write_obj(GuestAddress(AVAIL + 2), 0xffffu16).expect("ram");
        assert_eq!(q.pop(&mem).err(), Some(QueueError::AvailJump));
        // Exactly `size` ahead is legal.
        mem.write_obj(GuestAddress(AVAIL + 2), 8u16).expect("ram");
        assert!(q.has_available(&mem).expect("ok"));
    }

    #[test]
    fn refuses_indirect_and_misordered_chains() {
        let mem = ram();
        let mut q = queue(&mem, 8);
        set_desc(&mem, 0, DATA, 32, DESC_F_INDIRECT, 0);
        publish(&mem, 8, 0);
        assert_eq!(q.pop(&mem).err(), Some(QueueError::Indirect));
        let mut q = queue(&mem, 8);
        mem.write_obj(GuestAddress(AVAIL + 2), 0u16).expect("ram");
        chain(&mem, 8, 0, &[(DATA, 4, true), (DATA, 4, false)]);
        assert_eq!(q.pop(&mem).err(), Some(QueueError::ReadableAfterWritable));
    }

    #[test]
    fn unready_queue_yields_nothing() {
        let mem = ram();
        let mut q = Queue::new(8);
        assert!(q.pop(&mem).expect("ok").is_none());
        assert_eq!(q.add_used(&mem, 0, 0), Err(QueueError::NotReady));
    }

    /// A second "vCPU" scribbles over the descriptor table and the avail
    /// ring while chains are popped: every chain that gets through obeys
    /// every rule, whatever the rings said a moment earlier.
    #[test]
    fn rings_rewritten_meanwhile_never_pass_a_bad_chain() {
        use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
        let mem = ram();
        let stop = AtomicBool::new(false);
        let (mut popped, mut refused) = (0u32, 0u32);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut x = 0x2545_f491_4f6c_dd1du64;
                while !stop.load(Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let d = DESC + 16 * ((x >> 3) % 8);
                    let _ = match (x >> 59) % 6 {
                        // Addresses inside RAM, at its end, and wrapping.
                        0 => mem.write_obj(GuestAddress(d), [DATA + (x >> 20) % 0x1000, (1 << 20) - 8, u64::MAX - 3][(x % 3) as usize]),
                        1 => mem.write_obj(GuestAddress(d + 8), [8, 4096, u32::MAX][(x % 3) as usize]),
                        2 => mem.write_obj(GuestAddress(d + 12), (x >> 32) as u16 & 7), // NEXT, WRITE, INDIRECT
                        3 => mem.write_obj(GuestAddress(d + 14), (x >> 32) as u16 % 10), // sometimes >= size
                        4 => mem.write_obj(GuestAddress(AVAIL + 4 + 2 * ((x >> 8) % 8)), (x >> 32) as u16 % 10),
                        _ => mem.write_obj(GuestAddress(AVAIL + 2), (x >> 32) as u16 % 12), // sometimes a jump
                    };
                }
            });
            let mut q = queue(&mem, 8);
            let start = std::time::Instant::now();
            while (popped < 2000 || refused < 2000) && start.elapsed().as_secs() < 20 {
                match q.pop(&mem) {
                    Ok(Some(c)) => {
                        popped += 1;
                        let segs: Vec<Segment> = c.readable().iter().chain(c.writable()).copied().collect();
                        assert!(!segs.is_empty() && segs.len() <= 8, "{segs:?}");
                        assert!(segs.iter().all(|s| mem.range(GuestAddress(s.addr), u64::from(s.len)).is_some()), "{segs:?}");
                        assert!(segs.iter().map(|s| u64::from(s.len)).sum::<u64>() <= u64::from(u32::MAX));
                        q.add_used(&mem, c.head, 0).expect("the used ring is in RAM");
                    }
                    Ok(None) => {}
                    // What the transport does: the driver must reset the queue.
                    Err(_) => {
                        refused += 1;
                        q = queue(&mem, 8);
                    }
                }
            }
            stop.store(true, Relaxed);
        });
        assert!(popped > 0 && refused > 0, "both outcomes exercised: {popped} popped, {refused} refused");
    }
}
