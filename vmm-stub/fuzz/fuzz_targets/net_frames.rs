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
const DATA: u64 = 0x10000;
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
    /// (head, writable room) of each published chain, in order.
    chains: Vec<(u16, u64)>,
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
        self.chains.push((head, room));
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

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let mut i = In(data);
    let mut mem = GuestMemory::new(RAM).expect("mmap");
    let (a, peer) = socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC, None)
        .expect("socketpair");
    let bufs: &'static mut Buffers = Box::leak(Box::new(Buffers::new()));
    let bufs_ptr: *mut Buffers = bufs;
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
    let mut data_at = DATA;
    let mut stopped = false;

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
                if data_at + u64::from(hdr_len) + flen as u64 > RAM {
                    data_at = DATA;
                }
                let frame = pattern(flen, step);
                let at = data_at;
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
                data_at = (at + u64::from(hdr_len) + flen as u64 + 15) & !15;
                let well_formed = !flip && !wild_addr && hdr_len as usize == VNET_HDR_LEN && (ETH_HLEN..=max_frame).contains(&flen);
                if well_formed {
                    sent_ok.push(frame);
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
                if data_at + u64::from(room) > RAM {
                    data_at = DATA;
                }
                rx.post(&mut mem, &[(data_at, room, !flip)]);
                data_at = (data_at + u64::from(room) + 15) & !15;
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
            }
            5 => {
                if net.poll_host(&mut queues, &mut mem).is_err() {
                    stopped = true;
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
        assert!(rest.len() >= len, "torn frame on the wire");
        got.push(rest[..len].to_vec());
        w = &rest[len..];
    }
    if net.link_error().is_none() && !stopped {
        assert_eq!(got.len(), net.stats.tx_frames as usize);
        assert!(sent_ok.starts_with(&got), "backend got other frames than the guest sent");
    }
    // Receive: each used chain holds 0 bytes or header + the next frame.
    let mut expect = peer_sent.iter();
    for n in 0..rx_used {
        let (head, len) = rx.used(&mem, n);
        let Some(&(h, room)) = rx.chains.get(usize::from(n)) else { panic!("used without a chain") };
        assert_eq!(head, u32::from(h), "chains returned in order");
        assert!(u64::from(len) <= room, "wrote past the chain's room");
        if bogus_stream {
            continue;
        }
        let Some(f) = expect.next() else { panic!("a frame nobody sent") };
        if len == 0 {
            continue; // dropped: the chain was too small
        }
        assert_eq!(len as usize, VNET_HDR_LEN + f.len());
        let d = mem.read_obj::<u64>(GuestAddress(RINGS[0] + 16 * u64::from(h))).expect("ram");
        let hdr = mem.slice(GuestAddress(d), VNET_HDR_LEN as u64).expect("ram");
        assert_eq!(&hdr[10..12], &[1, 0], "num_buffers");
        assert_eq!(mem.slice(GuestAddress(d + VNET_HDR_LEN as u64), f.len() as u64), Some(&f[..]));
    }
    drop(net);
    // SAFETY: the link that borrowed the buffers is gone; free them.
    drop(unsafe { Box::from_raw(bufs_ptr) });
}
