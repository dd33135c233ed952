use super::link::{tests_support::boxed, Framing, MAX_FRAME};
use super::*;
use crate::mem::GuestAddress;
use rustix::fd::{AsFd, OwnedFd};
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const SIZE: u16 = 256;

/// One split ring at `base` (descriptors, avail at +0x1000, used at +0x2000).
struct Ring {
    base: u64,
    next_desc: u16,
}

impl Ring {
    fn queue(&self, mem: &GuestMemory) -> Queue {
        let mut q = Queue::new(QUEUE_SIZE);
        q.size = SIZE;
        q.desc = self.base;
        q.avail = self.base + 0x1000;
        q.used = self.base + 0x2000;
        q.validate(mem).expect("valid");
        q.ready = true;
        q
    }

    /// Publishes a chain of `(addr, len, writable)` buffers.
    fn chain(&mut self, mem: &mut GuestMemory, bufs: &[(u64, u32, bool)]) {
        let first = self.next_desc;
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = (first + k as u16) % SIZE;
            let more = k + 1 < bufs.len();
            let d = self.base + 16 * u64::from(i);
            let flags = if w { DESC_F_WRITE } else { 0 } | if more { DESC_F_NEXT } else { 0 };
            mem.write_obj(GuestAddress(d), addr).expect("ram");
            mem.write_obj(GuestAddress(d + 8), len).expect("ram");
            mem.write_obj(GuestAddress(d + 12), flags).expect("ram");
            mem.write_obj(GuestAddress(d + 14), (i + 1) % SIZE).expect("ram");
        }
        self.next_desc = (first + bufs.len() as u16) % SIZE;
        let avail = self.base + 0x1000;
        let idx = mem.read_obj::<u16>(GuestAddress(avail + 2)).expect("ram");
        mem.write_obj(GuestAddress(avail + 4 + 2 * u64::from(idx % SIZE)), first).expect("ram");
        mem.write_obj(GuestAddress(avail + 2), idx.wrapping_add(1)).expect("ram");
    }

    /// The used ring's idx and element `n` (head, len).
    fn used(&self, mem: &GuestMemory, n: u16) -> (u16, u32, u32) {
        let u = self.base + 0x2000;
        let idx = mem.read_obj::<u16>(GuestAddress(u + 2)).expect("ram");
        let e = u + 4 + 8 * u64::from(n % SIZE);
        (idx, mem.read_obj(GuestAddress(e)).expect("ram"), mem.read_obj(GuestAddress(e + 4)).expect("ram"))
    }
}

const RX_RING: u64 = 0x10_0000;
const TX_RING: u64 = 0x20_0000;
const DATA: u64 = 0x40_0000;

struct Rig {
    mem: GuestMemory,
    net: Net<'static>,
    peer: OwnedFd,
    queues: [Queue; 2],
    rx: Ring,
    tx: Ring,
}

fn rig() -> Rig {
    let (a, b) = socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC, None)
        .expect("socketpair");
    let mem = GuestMemory::new(16 << 20).expect("mmap");
    let rx = Ring { base: RX_RING, next_desc: 0 };
    let tx = Ring { base: TX_RING, next_desc: 0 };
    let queues = [rx.queue(&mem), tx.queue(&mem)];
    Rig { mem, net: Net::new(boxed(a, Framing::Stream), link::PASST_MTU), peer: b, queues, rx, tx }
}

impl Rig {
    fn notify(&mut self, q: usize) -> Irq {
        self.net.process_queue(q, &mut self.queues, &mut self.mem).expect("queue ok")
    }

    /// A TX chain: header at `at`, frame bytes right after.
    fn send(&mut self, at: u64, frame: &[u8]) {
        self.mem.write_slice(GuestAddress(at), &[0; VNET_HDR_LEN]).expect("ram");
        self.mem.write_slice(GuestAddress(at + VNET_HDR_LEN as u64), frame).expect("ram");
        self.tx.chain(&mut self.mem, &[(at, VNET_HDR_LEN as u32, false), (at + VNET_HDR_LEN as u64, frame.len() as u32, false)]);
    }

    fn peer_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = rustix::io::read(&self.peer, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    fn peer_send(&self, frame: &[u8]) {
        let mut wire = (frame.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(frame);
        crate::hostio::write_all(self.peer.as_fd(), &wire).expect("peer write");
    }
}

fn frame(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

#[test]
fn config_space_has_mac_status_and_mtu() {
    let r = rig();
    let mut cfg = [0u8; 12];
    r.net.read_config(0, &mut cfg);
    assert_eq!(&cfg[..6], &MAC);
    assert_eq!(u16::from_le_bytes([cfg[6], cfg[7]]), S_LINK_UP);
    assert_eq!(u16::from_le_bytes([cfg[10], cfg[11]]), link::PASST_MTU);
    assert_eq!(r.net.features(), F_MAC | F_MTU | F_STATUS);
}

#[test]
fn transmitted_frames_reach_the_backend_stripped_and_prefixed() {
    let mut r = rig();
    let f = frame(1514, 1);
    r.send(DATA, &f);
    assert_eq!(r.notify(TX), Irq::VRING);
    assert_eq!(r.tx.used(&r.mem, 0), (1, 0, 0));
    let wire = r.peer_bytes();
    assert_eq!(&wire[..4], &1514u32.to_be_bytes());
    assert_eq!(&wire[4..], &f[..]);
    assert_eq!(r.net.stats.tx_frames, 1);
}

#[test]
fn malformed_transmit_chains_are_dropped_and_returned() {
    let mut r = rig();
    // Runt shorter than the header; header only; header + 13-byte runt
    // frame; a frame above MTU + Ethernet header + VLAN; a write-only chain.
    r.tx.chain(&mut r.mem, &[(DATA, 5, false)]);
    r.tx.chain(&mut r.mem, &[(DATA, VNET_HDR_LEN as u32, false)]);
    r.tx.chain(&mut r.mem, &[(DATA, VNET_HDR_LEN as u32 + 13, false)]);
    r.tx.chain(&mut r.mem, &[(DATA, (VNET_HDR_LEN + MAX_FRAME + 1) as u32, false)]);
    r.tx.chain(&mut r.mem, &[(DATA, 2000, true)]);
    r.notify(TX);
    assert_eq!(r.tx.used(&r.mem, 4).0, 5, "every chain returned");
    assert_eq!(r.net.stats, Stats { tx_dropped: 5, ..Stats::default() });
    assert!(r.peer_bytes().is_empty(), "nothing reached the backend");
}

#[test]
fn received_frames_get_a_header_with_one_buffer() {
    let mut r = rig();
    r.rx.chain(&mut r.mem, &[(DATA, 2048, true)]);
    let f = frame(60, 2);
    r.peer_send(&f);
    assert_eq!(r.notify(RX), Irq::VRING);
    assert_eq!(r.rx.used(&r.mem, 0), (1, 0, (VNET_HDR_LEN + 60) as u32));
    let hdr = r.mem.slice(GuestAddress(DATA), VNET_HDR_LEN as u64).expect("ram").to_vec();
    assert_eq!(hdr, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(r.mem.slice(GuestAddress(DATA + VNET_HDR_LEN as u64), 60), Some(&f[..]));
}

#[test]
fn a_guest_without_receive_buffers_leaves_frames_in_the_backend() {
    let mut r = rig();
    for i in 0..8 {
        r.peer_send(&frame(1000, i));
    }
    assert_eq!(r.notify(RX), Irq::NONE);
    assert_eq!(r.notify(TX), Irq::NONE);
    // Nothing was read: the socket still holds every byte.
    assert!(crate::hostio::readable(r.net.link.fd()));
    let pending = rustix::io::ioctl_fionread(r.net.link.fd()).expect("FIONREAD");
    assert_eq!(pending, 8 * 1004);
    // Buffers appear: frames flow, in order.
    for k in 0..8u64 {
        r.rx.chain(&mut r.mem, &[(DATA + k * 0x1000, 0x1000, true)]);
    }
    r.notify(RX);
    assert_eq!(r.rx.used(&r.mem, 0).0, 8);
    for k in 0..8u16 {
        let at = DATA + u64::from(k) * 0x1000 + VNET_HDR_LEN as u64;
        assert_eq!(r.mem.slice(GuestAddress(at), 1000), Some(&frame(1000, k as u8)[..]));
    }
}

#[test]
fn a_too_small_or_read_only_receive_chain_is_returned_empty() {
    let mut r = rig();
    r.rx.chain(&mut r.mem, &[(DATA, 100, true)]); // too small for 200 + 12
    r.rx.chain(&mut r.mem, &[(DATA + 0x1000, 4096, false)]); // wrong direction
    r.rx.chain(&mut r.mem, &[(DATA + 0x2000, 4096, true)]);
    r.peer_send(&frame(200, 1));
    r.peer_send(&frame(200, 2));
    r.peer_send(&frame(200, 3));
    r.notify(RX);
    assert_eq!(r.rx.used(&r.mem, 0), (3, 0, 0));
    assert_eq!(r.rx.used(&r.mem, 1).2, 0);
    assert_eq!(r.rx.used(&r.mem, 2).2, 212);
    assert_eq!(r.net.stats.rx_dropped, 2);
    assert_eq!(r.mem.slice(GuestAddress(DATA + 0x2000 + 12), 200), Some(&frame(200, 3)[..]));
}

#[test]
fn a_transmit_flood_is_served_in_bounded_batches() {
    let mut r = rig();
    for k in 0..200u64 {
        r.send(DATA + k * 0x100, &frame(64, k as u8));
    }
    r.notify(TX);
    assert_eq!(r.tx.used(&r.mem, 0).0, BUDGET as u16);
    // Each later pass (the run loop's poll after the self-kick) takes the next batch.
    while r.tx.used(&r.mem, 0).0 < 200 {
        let before = r.tx.used(&r.mem, 0).0;
        r.net.poll_host(&mut r.queues, &mut r.mem).expect("ok");
        assert!(r.tx.used(&r.mem, 0).0 - before <= BUDGET as u16);
    }
    assert_eq!(r.peer_bytes().len(), 200 * (4 + 64));
}

#[test]
fn a_stalled_backend_stops_transmit_without_losing_chains() {
    let mut r = rig();
    let f = frame(MAX_FRAME - 4, 9);
    let mut posted = 0u64;
    // Far more than the socket buffer holds.
    for k in 0..40u64 {
        r.send(DATA + k * 0x2_0000, &f);
        posted += 1;
    }
    r.notify(TX);
    let taken = r.tx.used(&r.mem, 0).0;
    assert!(u64::from(taken) < posted, "stopped at the full socket");
    assert!(r.net.link.tx_pending());
    // The peer drains; each poll takes more, until all are out.
    let mut total = 0;
    for _ in 0..10_000 {
        total += r.peer_bytes().len();
        r.net.poll_host(&mut r.queues, &mut r.mem).expect("ok");
        if u64::from(r.tx.used(&r.mem, 0).0) == posted && !r.net.link.tx_pending() {
            break;
        }
    }
    total += r.peer_bytes().len();
    assert_eq!(total as u64, posted * (4 + f.len() as u64));
    assert_eq!(r.net.stats.tx_frames, posted);
}

#[test]
fn a_closed_backend_takes_the_link_down() {
    let mut r = rig();
    r.rx.chain(&mut r.mem, &[(DATA, 4096, true)]);
    let peer = core::mem::replace(&mut r.peer, rustix::io::dup(rustix::stdio::stdin()).expect("dup"));
    drop(peer);
    let irq = r.notify(RX);
    assert_eq!(irq, Irq::CONFIG);
    assert_eq!(r.net.link_error(), Some(LinkError::Closed));
    let mut status = [0u8; 2];
    r.net.read_config(6, &mut status);
    assert_eq!(status, [0, 0]);
    // Transmit chains still come back (dropped).
    r.send(DATA + 0x1000, &frame(64, 0));
    r.notify(TX);
    assert_eq!(r.tx.used(&r.mem, 0).0, 1);
    assert_eq!(r.net.stats.tx_frames, 0);
}

#[test]
fn the_gateway_guard_keeps_new_connections_to_the_host_loopback_out() {
    let mut r = rig();
    let mut udp_ports = heapless::Vec::new();
    udp_ports.push(8080).expect("room");
    r.net = core::mem::replace(&mut r.net, Net::new(boxed(rustix::io::dup(&r.peer).expect("dup"), Framing::Stream), 1500))
        .with_guard(Some(GatewayGuard { gateway: [10, 0, 2, 2], udp_ports }));
    // IPv4 to 10.0.2.2: a TCP SYN (refused), then UDP from the published port (passes).
    let ip = |proto: u8, l4: &[u8]| {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 2, 15, 10, 0, 2, 2]);
        f.extend_from_slice(l4);
        f
    };
    let mut syn = [0u8; 20];
    syn[13] = 0x02;
    r.send(DATA, &ip(6, &syn));
    r.send(DATA + 0x1000, &ip(17, &[0x1f, 0x90, 0x30, 0x39, 0, 8, 0, 0]));
    r.notify(TX);
    assert_eq!(r.tx.used(&r.mem, 0).0, 2, "both chains returned");
    assert_eq!((r.net.stats.tx_refused, r.net.stats.tx_frames), (1, 1));
    let wire = r.peer_bytes();
    assert_eq!(wire.len(), 4 + 34 + 8, "only the UDP reply went out");
}
