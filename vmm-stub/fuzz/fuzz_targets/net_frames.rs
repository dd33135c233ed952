//! virtio-net from a hostile driver and a hostile backend stream, through
//! the real queue, chain, `virtio::net::Net` and `link::Link` code (stream
//! framing over a socketpair the harness holds). The input is a list of
//! steps: post a transmit chain (header length, frame length, split,
//! direction flips, wild addresses), post a receive chain, send a frame
//! (or a bogus length prefix, or raw bytes) from the backend side, notify
//! a queue, poll, drain the backend. Checks:
//! - never a panic; the used ring never runs ahead of the avail ring;
//! - transmit chains come back with length 0; receive chains with 0 or
//!   12 + the frame's length, never more than their writable room;
//! - what reaches the backend is a valid stream of frames (14..=MAX_FRAME
//!   bytes each), exactly the well-formed transmitted frames in order,
//!   while no wild buffer was used and the link is up;
//! - every delivered frame sits after a header with num_buffers = 1 and is
//!   byte for byte what the backend sent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rustix::fd::OwnedFd;
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
use vmm_stub::mem::{GuestAddress, GuestMemory};
use vmm_stub::virtio::net::link::{Buffers, Framing, Link, ETH_HLEN, MAX_FRAME, PASST_MTU, VNET_HDR_LEN};
use vmm_stub::virtio::net::Net;
use vmm_stub::virtio::{Queue, VirtioDevice};

const RAM: u64 = 1 << 20;
const QSIZE: u16 = 16;
const RINGS: [u64; 2] = [0x0, 0x1000];
/// Transmit buffers (at most 4 outstanding chains of <= 64 KiB + a bit:
/// reusing the region never overwrites one the device has not taken).
const TX_DATA: (u64, u64) = (0x10000, 0x80000);
/// Receive buffers, apart: a received frame never lands in a transmit buffer.
const RX_DATA: (u64, u64) = (0x80000, 0x100000);
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

struct In<'a>(&'a [u8]);

impl In<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | u16::from(self.u8()) << 8
    }
}

/// Driver side of one ring: descriptors used round robin.
struct Ring {
    base: u64,
    next_desc: u16,
    published: u16,
    /// (head, first buffer's address, writable room) of each published
    /// chain, in order.
    chains: Vec<(u16, u64, u64)>,
}

impl Ring {
    fn queue(&self, mem: &GuestMemory) -> Queue {
        let mut q = Queue::new(256);
        q.size = QSIZE;
        (q.desc, q.avail, q.used) = (self.base, self.base + 0x400, self.base + 0x800);
        q.validate(mem).expect("valid");
        q.ready = true;
        q
    }

    fn post(&mut self, mem: &mut GuestMemory, bufs: &[(u64, u32, bool)]) {
        let head = self.next_desc;
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % QSIZE;
            let d = self.base + 16 * u64::from(i);
            let flags = if w { F_WRITE } else { 0 } | if k + 1 < bufs.len() { F_NEXT } else { 0 };
            mem.write_obj(GuestAddress(d), addr).expect("ram");
            mem.write_obj(GuestAddress(d + 8), len).expect("ram");
            mem.write_obj(GuestAddress(d + 12), flags).expect("ram");
            mem.write_obj(GuestAddress(d + 14), (i + 1) % QSIZE).expect("ram");
        }
        self.next_desc = (head + bufs.len() as u16) % QSIZE;
        let avail = self.base + 0x400;
        mem.write_obj(GuestAddress(avail + 4 + 2 * u64::from(self.published % QSIZE)), head).expect("ram");
        self.published = self.published.wrapping_add(1);
        mem.write_obj(GuestAddress(avail + 2), self.published).expect("ram");
        let room = bufs.iter().filter(|b| b.2).map(|b| u64::from(b.1)).sum();
        self.chains.push((head, bufs.first().map_or(0, |b| b.0), room));
    }

    fn used_idx(&self, mem: &GuestMemory) -> u16 {
        mem.read_obj(GuestAddress(self.base + 0x800 + 2)).expect("ram")
    }

    fn used(&self, mem: &GuestMemory, n: u16) -> (u32, u32) {
        let e = self.base + 0x800 + 4 + 8 * u64::from(n % QSIZE);
        (mem.read_obj(GuestAddress(e)).expect("ram"), mem.read_obj(GuestAddress(e + 4)).expect("ram"))
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

fn drain(peer: &OwnedFd, wire: &mut Vec<u8>) {
    let mut buf = vec![0u8; 1 << 18];
    while let Ok(n) = rustix::io::read(peer, &mut buf) {
        if n == 0 {
            break;
        }
        wire.extend_from_slice(&buf[..n]);
    }
}

/// Checks the receive chains returned since the last call: in order, 0 or
/// header + the next frame the backend sent, never past their room.
#[derive(Default)]
struct RxCheck {
    checked: u16,
    /// Index of the next frame the backend sent.
    next: usize,
}

impl RxCheck {
    fn check(&mut self, mem: &GuestMemory, rx: &Ring, peer_sent: &[Vec<u8>], bogus_stream: bool) {
        while self.checked != rx.used_idx(mem) {
            let n = self.checked;
            self.checked = self.checked.wrapping_add(1);
            let (head, len) = rx.used(mem, n);
            let Some(&(h, addr, room)) = rx.chains.get(usize::from(n)) else { panic!("used without a chain") };
            assert_eq!(head, u32::from(h), "chains returned in order");
            assert!(u64::from(len) <= room, "wrote past the chain's room");
            if bogus_stream {
                continue;
            }
            let Some(f) = peer_sent.get(self.next) else { panic!("a frame nobody sent") };
            self.next += 1;
            if len == 0 {
                continue; // dropped: the chain was too small or read-only
            }
            assert_eq!(len as usize, VNET_HDR_LEN + f.len());
            let hdr = mem.to_vec(GuestAddress(addr), VNET_HDR_LEN as u64).expect("ram");
            assert_eq!(hdr, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "header, num_buffers 1");
            assert_eq!(mem.to_vec(GuestAddress(addr + VNET_HDR_LEN as u64), f.len() as u64).as_deref(), Some(&f[..]));
        }
    }
}

thread_local! {
    /// The link's buffers, reused by every run (the link tracks what is in them).
    static BUFFERS: std::cell::RefCell<Box<Buffers>> = std::cell::RefCell::new(Box::new(Buffers::new()));
}

fuzz_target!(|data: &[u8]| BUFFERS.with(|b| run(data, &mut b.borrow_mut())));

fn run(data: &[u8], bufs: &mut Buffers) {
    let mut i = In(data);
    let mut mem = GuestMemory::new(RAM).expect("mmap");
    let (a, peer) = socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC, None)
        .expect("socketpair");
    let mtu = if i.u8() % 2 == 0 { PASST_MTU } else { 1500 };
    let max_frame = usize::from(mtu) + ETH_HLEN + 4;
    let mut net = Net::new(Link::new(a, Framing::Stream, bufs), mtu);
    let mut rx = Ring { base: RINGS[0], next_desc: 0, published: 0, chains: Vec::new() };
    let mut tx = Ring { base: RINGS[1], next_desc: 0, published: 0, chains: Vec::new() };
    let mut queues = [rx.queue(&mem), tx.queue(&mem)];
    let mut sent_ok: Vec<Vec<u8>> = Vec::new(); // well-formed frames the guest sent
    let mut peer_sent: Vec<Vec<u8>> = Vec::new(); // frames the backend sent
    let mut wire = Vec::new();
    let mut wild = false;
    let mut bogus_stream = false;
    let mut tx_at = TX_DATA.0;
    let mut rx_at = RX_DATA.0;
    let mut stopped = false;
    let mut rx_check = RxCheck::default();

    for step in 0..48u8 {
        if i.0.is_empty() || stopped {
            break;
        }
        // Keep the driver within its ring: at most QSIZE chains outstanding.
        let op = i.u8();
        match op % 7 {
            0 | 1 => {
                if tx.published.wrapping_sub(tx.used_idx(&mem)) >= QSIZE / 4 {
                    continue;
                }
                // A transmit chain: header (maybe short), frame, maybe split.
                let hostile = op & 0x80 != 0;
                let hdr_len = if hostile { u32::from(i.u8() % 16) } else { VNET_HDR_LEN as u32 };
                let flen = match i.u8() % 4 {
                    0 => usize::from(i.u8()),
                    1 => 1500,
                    2 => max_frame + usize::from(i.u8() % 3),
                    _ => usize::from(i.u16()) % (MAX_FRAME + 64),
                };
                if tx_at + u64::from(hdr_len) + flen as u64 > TX_DATA.1 {
                    tx_at = TX_DATA.0;
                }
                let frame = pattern(flen, step);
                let at = tx_at;
                mem.write_slice(GuestAddress(at), &vec![0u8; hdr_len as usize]).expect("ram");
                mem.write_slice(GuestAddress(at + u64::from(hdr_len)), &frame).expect("ram");
                let split = usize::from(i.u8()) % (flen + 1);
                let flip = hostile && i.u8() % 3 == 0;
                let wild_addr = hostile && i.u8() % 4 == 0;
                let f_at = at + u64::from(hdr_len);
                let mut segs = vec![(at, hdr_len, false), (f_at, split as u32, flip), (f_at + split as u64, (flen - split) as u32, false)];
                if wild_addr {
                    segs[1].0 = u64::from(i.u16());
                    wild = true;
                }
                tx.post(&mut mem, &segs);
                tx_at = (at + u64::from(hdr_len) + flen as u64 + 15) & !15;
                // The device sees one byte stream: its first 12 bytes are the
                // header, wherever the descriptors split it.
                let mut stream = vec![0u8; hdr_len as usize];
                stream.extend_from_slice(&frame);
                let body = stream.get(VNET_HDR_LEN..).unwrap_or_default();
                if !flip && !wild_addr && (ETH_HLEN..=max_frame).contains(&body.len()) {
                    sent_ok.push(body.to_vec());
                }
            }
            2 => {
                if rx.published.wrapping_sub(rx.used_idx(&mem)) >= QSIZE / 4 {
                    continue;
                }
                let room = match i.u8() % 3 {
                    0 => u32::from(i.u8()),
                    1 => 2048,
                    _ => (VNET_HDR_LEN + MAX_FRAME) as u32,
                };
                let flip = op & 0x80 != 0 && i.u8() % 3 == 0;
                if rx_at + u64::from(room) > RX_DATA.1 {
                    rx_at = RX_DATA.0;
                }
                rx.post(&mut mem, &[(rx_at, room, !flip)]);
                rx_at = (rx_at + u64::from(room) + 15) & !15;
            }
            3 => {
                // The backend sends: a frame, a bogus length, or a raw piece.
                match i.u8() % 8 {
                    0 => {
                        let len = u32::from(i.u16()) << 8;
                        let _ = rustix::io::write(&peer, &len.to_be_bytes());
                        bogus_stream = true;
                    }
                    _ => {
                        let flen = ETH_HLEN + usize::from(i.u16()) % 3000;
                        let f = pattern(flen, step ^ 0x55);
                        let mut w = (flen as u32).to_be_bytes().to_vec();
                        w.extend_from_slice(&f);
                        if rustix::io::write(&peer, &w).ok() == Some(w.len()) {
                            peer_sent.push(f);
                        } else {
                            bogus_stream = true; // a partial write leaves a torn frame
                        }
                    }
                }
            }
            4 => {
                let q = usize::from(i.u8() % 3);
                if net.process_queue(q, &mut queues, &mut mem).is_err() {
                    stopped = true;
                }
                if !wild {
                    rx_check.check(&mem, &rx, &peer_sent, bogus_stream);
                }
            }
            5 => {
                if net.poll_host(&mut queues, &mut mem).is_err() {
                    stopped = true;
                }
                if !wild {
                    rx_check.check(&mem, &rx, &peer_sent, bogus_stream);
                }
            }
            _ => drain(&peer, &mut wire),
        }
    }
    // Let everything settle.
    for _ in 0..64 {
        if stopped || net.poll_host(&mut queues, &mut mem).is_err() {
            stopped = true;
            break;
        }
        if !wild {
            rx_check.check(&mem, &rx, &peer_sent, bogus_stream);
        }
        drain(&peer, &mut wire);
    }
    drain(&peer, &mut wire);
    if wild {
        // A wild buffer may overlap the rings: the "guest" then rewrote them.
        return;
    }
    let (tx_used, rx_used) = (tx.used_idx(&mem), rx.used_idx(&mem));
    assert!(tx_used <= tx.published && rx_used <= rx.published, "used ran ahead of avail");
    for n in 0..tx_used {
        assert_eq!(tx.used(&mem, n).1, 0, "transmit used length");
    }
    // The backend's byte stream: valid frames, exactly the well-formed ones.
    let mut got = Vec::new();
    let mut w = &wire[..];
    while let Some((len, rest)) = w.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        assert!((ETH_HLEN..=MAX_FRAME).contains(&len), "bad frame length {len} on the wire");
        if rest.len() < len {
            // A frame cut off: only when the link went down mid-frame.
            assert!(net.link_error().is_some(), "torn frame on the wire with the link up");
            break;
        }
        got.push(rest[..len].to_vec());
        w = &rest[len..];
    }
    if net.link_error().is_none() && !stopped {
        assert_eq!(got.len(), net.stats.tx_frames as usize);
        assert!(sent_ok.starts_with(&got), "backend got other frames than the guest sent");
    }
}
