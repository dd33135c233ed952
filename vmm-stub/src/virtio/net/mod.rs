//! virtio-net (virtio 1.x §5.1) over a [`link::Link`]: one receive and one
//! transmit queue, features VERSION_1, MAC, MTU and STATUS, and nothing
//! else: no checksum or segmentation offloads (the backends take whole,
//! finished frames, so an offload would oblige the stub to finish
//! checksums and segments itself), no MRG_RXBUF (every received frame fits
//! one chain; its header says `num_buffers = 1`): measured side by side in
//! the KVM lab it gave no consistent gain either way for 512 B of stub
//! (the implementation and figures: git history, "virtio-net: MRG_RXBUF").
//!
//! The guest is hostile. Each transmit chain must be a 12-byte header plus
//! an Ethernet frame of 14..=MTU+18 bytes in its device-readable part;
//! anything else (runts, oversize frames, write-only chains) is dropped and
//! the chain returned. A receive chain too small for the frame at hand
//! (or with no writable part) is returned empty and the frame dropped.
//!
//! Fairness and memory: each call moves at most [`BUDGET`] frames per
//! direction, then asks for another pass ([`net_watch::kick_soon`]) so
//! stdin and the other devices get their turn. Frames are read from the
//! backend only when the guest has posted a receive buffer, and no
//! transmit chain is taken while a frame is stuck in the link: a side that
//! does not keep up stops the other, nothing queues up in between.

pub mod guard;
pub mod link;

use super::queue::{Queue, QueueError};
use super::{read_config_bytes, Irq, Reader, VirtioDevice, Writer};
use crate::hostio::net_watch;
use crate::mem::GuestMemory;
use guard::GatewayGuard;
use link::{Link, LinkError, ETH_HLEN, VNET_HDR_LEN};

/// virtio device id of a network card.
pub const DEVICE_ID: u32 = 1;
const F_MTU: u64 = 1 << 3;
const F_MAC: u64 = 1 << 5;
const F_STATUS: u64 = 1 << 16;
/// `virtio_net_config.status`: the link is up.
const S_LINK_UP: u16 = 1;
/// `num_buffers` in every received header (no MRG_RXBUF).
const ONE_BUFFER: u16 = 1;

const RX: usize = 0;
const TX: usize = 1;
/// Linux posts big receive buffers (an MTU above 1500 makes it use
/// chains of up to 19 descriptors each), so a full-size ring holds ~13.
pub const QUEUE_SIZE: u16 = 256;
/// Most frames moved per direction per call.
pub const BUDGET: u32 = 64;

/// The guest's MAC: locally administered, unicast ("\x02smol" + 1).
pub const MAC: [u8; 6] = [0x02, b's', b'm', b'o', b'l', 0x01];

/// What was counted (for tests and `SMOLVM_LOG=debug`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub tx_frames: u64,
    /// Malformed transmit chains dropped.
    pub tx_dropped: u64,
    /// Frames the gateway guard kept from the backend.
    pub tx_refused: u64,
    pub rx_frames: u64,
    /// Frames dropped because the receive chain was too small.
    pub rx_dropped: u64,
}

pub struct Net<'b> {
    link: Link<'b>,
    mtu: u16,
    /// Set once the link failed: frames are then dropped, the guest sees
    /// the link down (STATUS) after a config interrupt.
    down: Option<LinkError>,
    /// The down state was not yet announced to the guest.
    announce_down: bool,
    pub stats: Stats,
    sizes: [u16; 2],
    /// Set when passt maps the gateway to the host's loopback only for UDP
    /// replies' sake (see `guard`).
    guard: Option<GatewayGuard>,
}

impl<'b> Net<'b> {
    /// A card on `link` offering `mtu` (at most [`link::PASST_MTU`]).
    pub fn new(link: Link<'b>, mtu: u16) -> Self {
        let mtu = mtu.clamp(68, link::PASST_MTU);
        Net { link, mtu, down: None, announce_down: false, stats: Stats::default(), sizes: [QUEUE_SIZE; 2], guard: None }
    }

    /// Drops the guest frames `guard` refuses before they reach the backend.
    pub fn with_guard(mut self, guard: Option<GatewayGuard>) -> Self {
        self.guard = guard;
        self
    }

    /// Why the link went down, if it did.
    pub fn link_error(&self) -> Option<LinkError> {
        self.down
    }

    /// Largest frame the guest may send: the MTU plus an Ethernet header
    /// and one VLAN tag.
    fn max_frame(&self) -> usize {
        usize::from(self.mtu) + ETH_HLEN + 4
    }

    fn fail(&mut self, e: LinkError) {
        if self.down.is_none() {
            self.down = Some(e);
            self.announce_down = true;
            let why = match e {
                LinkError::Closed => "closed the connection",
                LinkError::BadLength(_) => "sent a malformed frame",
                LinkError::Io(_) => "failed",
            };
            crate::out::Line::new().s("the network backend ").s(why).s("; the guest's network is down").emit();
        }
    }

    /// Guest → backend: at most [`BUDGET`] chains.
    fn transmit(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<Irq, QueueError> {
        let mut used = false;
        for _ in 0..BUDGET {
            if self.down.is_none() {
                match self.link.tx_flush() {
                    Ok(true) => {}
                    Ok(false) => break, // full: wait for room (below)
                    Err(e) => self.fail(e),
                }
            }
            let Some(chain) = q.pop(mem)? else { break };
            let mut r = Reader::new(&chain);
            let frame_len = r.available().checked_sub(VNET_HDR_LEN as u64);
            let ok_len = frame_len.and_then(|n| usize::try_from(n).ok()).filter(|n| (ETH_HLEN..=self.max_frame()).contains(n));
            match (ok_len, self.down) {
                (Some(len), None) => {
                    // Skip the header: no offloads, nothing in it to honour.
                    let _ = r.read_array::<VNET_HDR_LEN>(mem);
                    let slot = self.link.tx_slot().and_then(|s| s.get_mut(..len));
                    let copied = slot.is_some_and(|s| r.read_exact(mem, s).is_some());
                    let refused = copied
                        && self.guard.as_ref().is_some_and(|g| {
                            self.link.tx_slot().and_then(|s| s.get(..len)).is_some_and(|f| !g.allows(f))
                        });
                    if refused {
                        self.stats.tx_refused += 1;
                    } else if copied {
                        self.stats.tx_frames += 1;
                        if let Err(e) = self.link.tx_commit(len) {
                            self.fail(e);
                        }
                    } else {
                        self.stats.tx_dropped += 1;
                    }
                }
                (Some(_), Some(_)) => {} // link down: the frame goes nowhere
                (None, _) => self.stats.tx_dropped += 1,
            }
            q.add_used(mem, chain.head, 0)?;
            used = true;
        }
        // Whatever ended the batch, a frame left in the link (the socket
        // was full, even for the batch's last frame) waits for room; else
        // if the budget ran out, come back after the others had their turn.
        if self.down.is_none() && self.link.tx_pending() {
            net_watch::want(net_watch::WRITABLE);
        } else if q.has_available(mem)? {
            net_watch::kick_soon();
        }
        Ok(Self::irq(q, mem, used))
    }

    /// Backend → guest: at most [`BUDGET`] frames, only into posted buffers.
    fn receive(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<Irq, QueueError> {
        let mut used = false;
        for _ in 0..BUDGET {
            if self.down.is_some() || !q.has_available(mem)? {
                // No buffer: leave frames in the backend (the guest
                // notifies the queue when it posts more).
                return Ok(Self::irq(q, mem, used));
            }
            let frame = match self.link.rx_frame() {
                Ok(Some(f)) => f,
                Ok(None) => {
                    net_watch::want(net_watch::READABLE);
                    return Ok(Self::irq(q, mem, used));
                }
                Err(e) => {
                    self.fail(e);
                    return Ok(Self::irq(q, mem, used));
                }
            };
            let Some(chain) = q.pop(mem)? else { return Ok(Self::irq(q, mem, used)) };
            let mut w = Writer::new(&chain);
            let fits = w.available() >= (VNET_HDR_LEN + frame.len()) as u64;
            let mut len = 0;
            if fits {
                let [n0, n1] = ONE_BUFFER.to_le_bytes();
                // flags 0, GSO_NONE, hdr_len, gso_size, csum_start, csum_offset, num_buffers.
                let hdr = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n0, n1];
                if w.write_all(mem, &hdr).is_some() && w.write_all(mem, frame).is_some() {
                    len = w.written();
                    self.stats.rx_frames += 1;
                }
            }
            if len == 0 {
                self.stats.rx_dropped += 1;
            }
            self.link.rx_consume();
            q.add_used(mem, chain.head, len)?;
            used = true;
        }
        net_watch::kick_soon();
        Ok(Self::irq(q, mem, used))
    }

    fn irq(q: &Queue, mem: &GuestMemory, used: bool) -> Irq {
        if used && !q.interrupts_suppressed(mem) { Irq::VRING } else { Irq::NONE }
    }

    fn pump(&mut self, queues: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError> {
        let [rx, tx, ..] = queues else { return Err(QueueError::NotReady) };
        let mut irq = self.transmit(tx, mem)?;
        irq |= self.receive(rx, mem)?;
        if core::mem::take(&mut self.announce_down) {
            irq |= Irq::CONFIG;
        }
        Ok(irq)
    }
}

impl VirtioDevice for Net<'_> {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        F_MAC | F_MTU | F_STATUS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_net_config { u8 mac[6]; le16 status; le16 max_virtqueue_pairs; le16 mtu; }
        let [s0, s1] = (if self.down.is_none() { S_LINK_UP } else { 0 }).to_le_bytes();
        let [m0, m1] = self.mtu.to_le_bytes();
        let [a, b, c, d, e, f] = MAC;
        let cfg = [a, b, c, d, e, f, s0, s1, 1, 0, m0, m1];
        read_config_bytes(&cfg, offset, data);
    }

    fn activate(&mut self, _features: u64, queues: &mut [Queue], mem: &GuestMemory) -> Irq {
        // Frames may already wait (the guest posted buffers before DRIVER_OK).
        self.pump(queues, mem).unwrap_or(Irq::NONE)
    }

    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError> {
        match index {
            RX | TX => self.pump(queues, mem),
            _ => Ok(Irq::NONE),
        }
    }

    fn poll_host(&mut self, queues: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError> {
        self.pump(queues, mem)
    }
}

#[cfg(test)]
mod tests;
