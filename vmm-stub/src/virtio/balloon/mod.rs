//! virtio-balloon (virtio 1.x §5.5) for free page reporting only
//! (`VIRTIO_BALLOON_F_REPORTING`): the guest kernel hands the stub blocks of
//! free pages (4 MiB each with our kernel: `pageblock_order`), the stub
//! gives them back to the host (`GuestMemory::discard`, `MADV_DONTNEED`).
//! The guest touches a page again only after allocating it, and then reads
//! zeros (free page contents are the guest's to forget). What it saves:
//! docs/bench/memory.md.
//!
//! Queues, numbered as the driver numbers the ones it uses: 0 inflate, 1
//! deflate (no target is ever set, `num_pages` stays 0: chains there are
//! returned untouched), 2 reporting. A report chain's device-writable
//! buffers are the free ranges; each must be page aligned and inside guest
//! RAM (`pop` checked the latter), else it is skipped and kept. Every chain
//! goes back with used length 0.

use super::queue::{Queue, QueueError};
use super::{id, read_config_bytes, Irq, VirtioDevice};
use crate::mem::{bytes_of, GuestAddress, GuestMemory};

/// `VIRTIO_BALLOON_F_REPORTING`.
pub const F_REPORTING: u64 = 1 << 5;
/// The driver refuses a reporting queue smaller than its batch
/// (`PAGE_REPORTING_CAPACITY`, 32 ranges).
const QUEUE_SIZE: u16 = 32;
/// Queue index of the reporting queue (after inflate and deflate).
pub const REPORTING_QUEUE: usize = 2;

crate::guest_struct! {
    /// `struct virtio_balloon_config` up to `actual` (the later fields
    /// belong to features not offered).
    struct BalloonConfig {
        num_pages: u32,
        actual: u32,
    }
}

/// The device.
#[derive(Default)]
pub struct Balloon {
    config: BalloonConfig,
}

impl Balloon {
    pub fn new() -> Balloon {
        Balloon::default()
    }

    /// Gives every free range of one report chain back to the host.
    fn report(mem: &GuestMemory, chain: &super::DescriptorChain) {
        for seg in chain.writable() {
            // A range `discard` refuses stays the guest's, untouched.
            let _ = mem.discard(GuestAddress(seg.addr), u64::from(seg.len));
        }
    }
}

impl VirtioDevice for Balloon {
    fn device_id(&self) -> u32 {
        id::BALLOON
    }

    fn features(&self) -> u64 {
        F_REPORTING
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 3]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(bytes_of(&self.config), offset, data);
    }

    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError> {
        let q = queues.get_mut(index).ok_or(QueueError::NotReady)?;
        let mut irq = Irq::NONE;
        while let Some(chain) = q.pop(mem)? {
            if index == REPORTING_QUEUE {
                Self::report(mem, &chain);
            }
            q.add_used(mem, chain.head, 0)?;
            irq = Irq::VRING;
        }
        if q.interrupts_suppressed(mem) {
            irq = Irq::NONE;
        }
        Ok(irq)
    }
}

#[cfg(test)]
mod tests;
