//! virtio over MMIO: the transport, split virtqueues, and the devices the
//! stub offers (console, block; 9p lives in `p9/`, the balloon in `balloon/`).
//!
//! # Writing a device
//! A device implements [`VirtioDevice`]: its id, feature bits, queue sizes,
//! config space (declared with `crate::guest_struct!` as the spec's struct,
//! served by [`read_config_bytes`]), and [`VirtioDevice::process_queue`], called when the driver
//! notifies a queue. Inside, pop chains with [`Queue::pop`], read requests
//! with a [`Reader`], write replies with a [`Writer`], and return each chain
//! with [`Queue::add_used`] (length = `writer.written()`). Return
//! [`Irq::VRING`] when the guest should be interrupted. Return a
//! [`QueueError`] for a malformed queue: the transport then sets
//! NEEDS_RESET, raises a config interrupt and stops serving the device until
//! the driver resets it (`--smolvm-log=debug` names the device, queue and error). A well-formed request the device refuses (out of
//! range, read-only, ...) is answered in-band, never by an error here.
//!
//! Host-side events (stdin readable, a signal to forward) reach devices
//! through [`VirtioDevice::poll_host`], which the run loop calls after
//! `KVM_RUN` returns (including when a signal interrupted it).
//!
//! Wrap the device in an [`MmioTransport`] and attach that to the
//! [`crate::bus::Bus`] slot the ABI assigns (`linker::abi::slot`).


pub mod balloon;
pub mod blk;
pub mod chain;
pub mod console;
pub mod control;

pub mod mmio;
pub mod net;
pub mod p9;
pub mod queue;

pub use chain::{Reader, Writer};
pub use mmio::MmioTransport;
pub use queue::{DescriptorChain, Queue, QueueError};

use crate::mem::GuestMemory;

/// Feature bit every modern device must negotiate (virtio 1.x).
pub const F_VERSION_1: u64 = 1 << 32;
/// `VIRTIO_F_EVENT_IDX`: the device says after which buffer the driver
/// should notify it (`avail_event`, see [`queue::Queue::notify_after`]).
pub const F_EVENT_IDX: u64 = 1 << 29;

/// Device ids (virtio 1.x §5).
pub mod id {
    pub const BLOCK: u32 = 2;
    pub const CONSOLE: u32 = 3;
    pub const BALLOON: u32 = 5;
    pub const P9: u32 = 9;
}

/// Interrupt reasons (`InterruptStatus` bits), returned by device callbacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Irq(pub u32);

impl Irq {
    pub const NONE: Irq = Irq(0);
    /// A used buffer was added.
    pub const VRING: Irq = Irq(1);
    /// The configuration space changed.
    pub const CONFIG: Irq = Irq(2);
}

impl core::ops::BitOr for Irq {
    type Output = Irq;
    fn bitor(self, o: Irq) -> Irq {
        Irq(self.0 | o.0)
    }
}

impl core::ops::BitOrAssign for Irq {
    fn bitor_assign(&mut self, o: Irq) {
        self.0 |= o.0;
    }
}

/// The device half of a virtio device; the transport owns every register.
pub trait VirtioDevice {
    /// virtio device id ([`id`]).
    fn device_id(&self) -> u32;
    /// Device-specific feature bits offered (the transport adds VERSION_1).
    fn features(&self) -> u64;
    /// `QueueNumMax` of each queue; the slice length is the queue count
    /// (at most [`mmio::MAX_QUEUES`]).
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads config space at `offset` into `data`. Bytes past the end of
    /// the device's config read as zero (use [`read_config_bytes`]).
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// A driver write to config space (most devices ignore it).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver set DRIVER_OK with `features` negotiated; `queues` are live.
    fn activate(&mut self, _features: u64, _queues: &mut [Queue], _mem: &GuestMemory) -> Irq {
        Irq::NONE
    }
    /// The driver reset the device: forget per-driver state.
    fn reset(&mut self) {}
    /// The driver notified queue `index`.
    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError>;
    /// Host-side work (input became readable, a signal arrived). Called only
    /// while the device is live.
    fn poll_host(&mut self, _queues: &mut [Queue], _mem: &GuestMemory) -> Result<Irq, QueueError> {
        Ok(Irq::NONE)
    }
}

/// Copies `config[offset..]` into `data`, zero past the end (helper for
/// [`VirtioDevice::read_config`]).
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else { return };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}
