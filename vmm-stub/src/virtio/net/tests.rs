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
    fn chain(&mut self, mem: &GuestMemory, bufs: &[(u64, u32, bool)]) {
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
    rig_with(16 << 20)
}

/// A rig with `ram` bytes of guest memory.
fn rig_with(ram: u64) -> Rig {
    let (a, b) = socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC, None)
        .expect("socketpair");
    let mem = GuestMemory::new(ram).expect("mmap");
    let rx = Ring { base: RX_RING, next_desc: 0 };
    let tx = Ring { base: TX_RING, next_desc: 0 };
    let queues = [rx.queue(&mem), tx.queue(&mem)];
    Rig { mem, net: Net::new(boxed(a, Framing::Stream), link::PASST_MTU), peer: b, queues, rx, tx }
}

impl Rig {
    fn notify(&mut self, q: usize) -> Irq {
        self.net.process_queue(q, &mut self.queues, &self.mem).expect("queue ok")
    }

    /// A TX chain: header at `at`, frame bytes right after.
    fn send(&mut self, at: u64, frame: &[u8]) {
        self.mem.write_slice(GuestAddress(at), &[0; VNET_HDR_LEN]).expect("ram");
        self.mem.write_slice(GuestAddress(at + VNET_HDR_LEN as u64), frame).expect("ram");
        self.tx.chain(&self.mem, &[(at, VNET_HDR_LEN as u32, false), (at + VNET_HDR_LEN as u64, frame.len() as u32, false)]);
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
        crate::hostio::write_all(self.peer.as_fd(), crate::sys::io::IoBuf::from(&wire[..])).expect("peer write");
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
    r.tx.chain(&r.mem, &[(DATA, 5, false)]);
    r.tx.chain(&r.mem, &[(DATA, VNET_HDR_LEN as u32, false)]);
    r.tx.chain(&r.mem, &[(DATA, VNET_HDR_LEN as u32 + 13, false)]);
    r.tx.chain(&r.mem, &[(DATA, (VNET_HDR_LEN + MAX_FRAME + 1) as u32, false)]);
    r.tx.chain(&r.mem, &[(DATA, 2000, true)]);
    r.notify(TX);
    assert_eq!(r.tx.used(&r.mem, 4).0, 5, "every chain returned");
    assert_eq!(r.net.stats, Stats { tx_dropped: 5, ..Stats::default() });
    assert!(r.peer_bytes().is_empty(), "nothing reached the backend");
}

#[test]
fn received_frames_get_a_header_with_one_buffer() {
    let mut r = rig();
    r.rx.chain(&r.mem, &[(DATA, 2048, true)]);
    let f = frame(60, 2);
    r.peer_send(&f);
    assert_eq!(r.notify(RX), Irq::VRING);
    assert_eq!(r.rx.used(&r.mem, 0), (1, 0, (VNET_HDR_LEN + 60) as u32));
    let hdr = r.mem.to_vec(GuestAddress(DATA), VNET_HDR_LEN as u64).expect("ram");
    assert_eq!(hdr, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(r.mem.to_vec(GuestAddress(DATA + VNET_HDR_LEN as u64), 60).as_deref(), Some(&f[..]));
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
        r.rx.chain(&r.mem, &[(DATA + k * 0x1000, 0x1000, true)]);
    }
    r.notify(RX);
    assert_eq!(r.rx.used(&r.mem, 0).0, 8);
    for k in 0..8u16 {
        let at = DATA + u64::from(k) * 0x1000 + VNET_HDR_LEN as u64;
        assert_eq!(r.mem.to_vec(GuestAddress(at), 1000).as_deref(), Some(&frame(1000, k as u8)[..]));
    }
}

#[test]
fn a_too_small_or_read_only_receive_chain_is_returned_empty() {
    let mut r = rig();
    r.rx.chain(&r.mem, &[(DATA, 100, true)]); // too small for 200 + 12
    r.rx.chain(&r.mem, &[(DATA + 0x1000, 4096, false)]); // wrong direction
    r.rx.chain(&r.mem, &[(DATA + 0x2000, 4096, true)]);
    r.peer_send(&frame(200, 1));
    r.peer_send(&frame(200, 2));
    r.peer_send(&frame(200, 3));
    r.notify(RX);
    assert_eq!(r.rx.used(&r.mem, 0), (3, 0, 0));
    assert_eq!(r.rx.used(&r.mem, 1).2, 0);
    assert_eq!(r.rx.used(&r.mem, 2).2, 212);
    assert_eq!(r.net.stats.rx_dropped, 2);
    assert_eq!(r.mem.to_vec(GuestAddress(DATA + 0x2000 + 12), 200).as_deref(), Some(&frame(200, 3)[..]));
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
        r.net.poll_host(&mut r.queues, &r.mem).expect("ok");
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
        r.net.poll_host(&mut r.queues, &r.mem).expect("ok");
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
    r.rx.chain(&r.mem, &[(DATA, 4096, true)]);
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

/// Whether the device would run again by itself: it asked for a kick, or
/// for an fd event that is there now (what the watcher thread reports).
fn woken(fd: rustix::fd::BorrowedFd<'_>, asked: u32) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut events = PollFlags::empty();
    if asked & net_watch::READABLE != 0 {
        events |= PollFlags::IN;
    }
    if asked & net_watch::WRITABLE != 0 {
        events |= PollFlags::OUT;
    }
    let mut fds = [PollFd::new(&fd, events)];
    let zero = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
    asked & net_watch::KICKED != 0 || matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

impl Rig {
    /// The run loop's host side: polls the device as long as something it
    /// asked for (a kick, readability, writability) is there, and no more.
    fn run_events(&mut self) {
        for _ in 0..100_000 {
            let asked = net_watch::test_take();
            if !woken(self.net.link.fd(), asked) {
                return;
            }
            self.net.poll_host(&mut self.queues, &self.mem).expect("ok");
        }
        panic!("the device never settles");
    }
}

#[test]
fn a_frame_stuck_at_the_end_of_a_full_batch_goes_out_once_the_socket_drains() {
    // The last frame of a BUDGET-long batch meets a full socket and no
    // transmit chain is left: the device must still wait for writability
    // (it once only did so when a further chain was there).
    let mut r = rig();
    let wire = [0x5au8; 4 + 60]; // one skb each: the socket holds a fixed count
    let link = rustix::io::dup(r.net.link.fd()).expect("dup");
    let mut capacity = 0usize;
    while rustix::io::write(&link, &wire).is_ok() {
        capacity += 1;
    }
    assert!(capacity > BUDGET as usize, "socket holds {capacity} small frames");
    assert_eq!(r.peer_bytes().len(), capacity * wire.len());
    // Leave room for BUDGET - 1 frames, then post BUDGET of them.
    for _ in 0..capacity - (BUDGET as usize - 1) {
        rustix::io::write(&link, &wire).expect("prefill");
    }
    for k in 0..u64::from(BUDGET) {
        r.send(DATA + k * 0x100, &frame(60, k as u8));
    }
    net_watch::test_take();
    r.notify(TX);
    assert_eq!(r.tx.used(&r.mem, 0).0, BUDGET as u16, "every chain returned");
    assert!(r.net.link.tx_pending(), "the last frame waits for room");
    // The backend drains the socket; only the events the device asked for run it.
    let mut got = r.peer_bytes();
    r.run_events();
    got.extend(r.peer_bytes());
    let prefill = (capacity - (BUDGET as usize - 1)) * wire.len();
    let mut want = Vec::new();
    for k in 0..BUDGET {
        want.extend_from_slice(&60u32.to_be_bytes());
        want.extend(frame(60, k as u8));
    }
    assert_eq!(got.len(), prefill + want.len(), "every frame reached the backend");
    assert_eq!(&got[prefill..], &want[..]);
    assert!(!r.net.link.tx_pending());
}

/// Frame `n` of a bulk stream: sizes from runt-free minimum to the largest,
/// content from its number, so loss, reordering or a desynchronised length
/// prefix shows.
fn bulk_frame(n: u32) -> Vec<u8> {
    const SIZES: [usize; 7] = [MAX_FRAME, 14, 65534, 1514, 60, 9018, MAX_FRAME - 1];
    let len = SIZES[n as usize % SIZES.len()];
    let mut f = frame(len, n as u8);
    f[..4].copy_from_slice(&n.to_be_bytes());
    f
}

#[test]
fn bulk_both_ways_at_once_completes_byte_exact_driven_only_by_events() {
    // A guest that keeps up to OUTSTANDING receive buffers and transmit
    // chains posted (notifying each time, as Linux does) and a backend that
    // writes and reads without blocking (partial writes included) move
    // FRAMES frames each way. The device runs only on a notify or an event
    // it asked for: a lost wake-up stops progress and fails the test.
    const FRAMES: u32 = 600; // ~14 MiB each way
    const OUTSTANDING: u64 = 100;
    let mut r = rig_with(64 << 20);
    let peer = rustix::io::dup(&r.peer).expect("dup");
    let slot = |base: u64, k: u64| base + (k % OUTSTANDING) * 0x2_0000;
    let (rx_data, tx_data) = (DATA, DATA + OUTSTANDING * 0x2_0000);
    // Guest state.
    let (mut rx_posted, mut rx_done, mut tx_posted, mut tx_done) = (0u64, 0u64, 0u64, 0u64);
    // Backend state: the bytes it still has to write, and what it read.
    let mut out = Vec::new();
    for n in 0..FRAMES {
        let f = bulk_frame(n);
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend(f);
    }
    let (mut out_pos, mut inbox, mut in_frames) = (0usize, Vec::new(), 0u32);
    let mut buf = vec![0u8; 1 << 20];
    let mut idle = 0;
    while rx_done < u64::from(FRAMES) || in_frames < FRAMES {
        let mut moved = false;
        // Guest: post buffers and frames, notify, take what was used.
        let before = rx_posted;
        while rx_posted - rx_done < OUTSTANDING && rx_posted < u64::from(FRAMES) {
            r.rx.chain(&r.mem, &[(slot(rx_data, rx_posted), 0x2_0000, true)]);
            rx_posted += 1;
        }
        if rx_posted != before {
            r.notify(RX);
        }
        let before = tx_posted;
        while tx_posted - tx_done < OUTSTANDING && tx_posted < u64::from(FRAMES) {
            let f = bulk_frame(tx_posted as u32);
            let at = slot(tx_data, tx_posted);
            r.mem.write_slice(GuestAddress(at), &[0; VNET_HDR_LEN]).expect("ram");
            r.mem.write_slice(GuestAddress(at + VNET_HDR_LEN as u64), &f).expect("ram");
            r.tx.chain(&r.mem, &[(at, (VNET_HDR_LEN + f.len()) as u32, false)]);
            tx_posted += 1;
        }
        if tx_posted != before {
            r.notify(TX);
        }
        while u64::from(r.rx.used(&r.mem, 0).0) != rx_done & 0xffff {
            let (_, _, len) = r.rx.used(&r.mem, rx_done as u16);
            let want = bulk_frame(rx_done as u32);
            assert_eq!(len as usize, VNET_HDR_LEN + want.len(), "receive frame {rx_done}");
            let at = slot(rx_data, rx_done) + VNET_HDR_LEN as u64;
            assert!(r.mem.to_vec(GuestAddress(at), want.len() as u64).as_deref() == Some(&want[..]), "receive frame {rx_done} content");
            rx_done += 1;
            moved = true;
        }
        while u64::from(r.tx.used(&r.mem, 0).0) != tx_done & 0xffff {
            tx_done += 1;
            moved = true;
        }
        // Backend: write what the socket takes, read what is there.
        if let Some(rest) = out.get(out_pos..).filter(|r| !r.is_empty()) {
            if let Ok(n) = rustix::io::write(&peer, &rest[..rest.len().min(100_000)]) {
                out_pos += n;
                moved = true;
            }
        }
        while let Ok(n) = rustix::io::read(&peer, &mut buf) {
            inbox.extend_from_slice(&buf[..n]);
            moved = n > 0 || moved;
        }
        while let Some(p) = inbox.first_chunk::<4>() {
            let len = u32::from_be_bytes(*p) as usize;
            if inbox.len() < 4 + len {
                break;
            }
            assert!(inbox[4..4 + len] == bulk_frame(in_frames)[..], "transmit frame {in_frames}");
            inbox.drain(..4 + len);
            in_frames += 1;
        }
        // Device: only what it asked for.
        let asked = net_watch::test_take();
        if woken(r.net.link.fd(), asked) {
            r.net.poll_host(&mut r.queues, &r.mem).expect("ok");
            moved = true;
        } else {
            // Not asked: the events stay pending for the next round.
            net_watch::want(asked & (net_watch::READABLE | net_watch::WRITABLE));
        }
        idle = if moved { 0 } else { idle + 1 };
        assert!(
            idle < 1000,
            "stalled: guest received {rx_done}/{FRAMES}, backend received {in_frames}/{FRAMES}, \
             backend wrote {out_pos}/{} bytes, transmit chains done {tx_done}/{tx_posted}",
            out.len()
        );
    }
    assert_eq!(r.net.stats.tx_frames, u64::from(FRAMES));
    assert_eq!(r.net.stats.rx_frames, u64::from(FRAMES));
    assert_eq!((r.net.stats.tx_dropped, r.net.stats.rx_dropped), (0, 0));
}

