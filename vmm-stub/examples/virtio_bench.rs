//! Host-side cost of the device path (no VM): chains posted with the test
//! driver go through the queue, the chain Reader/Writer, guest-memory
//! access and the host system calls of virtio-blk and virtio-9p, as a
//! guest's requests would. For A/B comparisons of stub builds where the
//! KVM lab is too noisy; files live in $P9_BENCH_DIR (default $TMPDIR,
//! best a tmpfs such as /dev/shm).
//!
//!     cargo run --release -p vmm-stub --features test-utils --example virtio_bench [ROUNDS]
//!
//! Prints the median of ROUNDS (default 7) for each case: blk 1 MiB reads
//! and writes in 32 segments, 9p Twrite/Tread of 128 KiB in 4 KiB pages
//! (Linux's zero-copy layout), and requests/s with no I/O (a FLUSH on a
//! read-only disk: queue, chain and interrupt-suppression cost alone).

use std::os::fd::AsFd;
use std::time::Instant;
use vmm_stub::mem::{GuestAddress, GuestMemory};
use vmm_stub::virtio::blk::Block;
use vmm_stub::virtio::p9::P9Device;
use vmm_stub::virtio::p9::{wire::msg, wire::MAX_MSIZE, Server};
use vmm_stub::virtio::queue::testdriver::{chain, queue, AVAIL, DATA};
use vmm_stub::virtio::{Queue, VirtioDevice};

const QSIZE: u16 = 128;
const HDR: u64 = DATA;
const STATUS: u64 = DATA + 0x100;
const BUF: u64 = DATA + 0x10_0000;
const REPLY: u64 = DATA + 0x200;

/// Serves one chain of `bufs`.
fn serve(dev: &mut dyn VirtioDevice, mem: &mut GuestMemory, q: &mut Queue, bufs: &[(u64, u32, bool)]) {
    chain(mem, QSIZE, 0, bufs);
    let mut qs = [*q];
    dev.process_queue(0, &mut qs, mem).expect("queue ok");
    *q = qs[0];
}

/// A ready queue at the test driver's rings, with the driver's index reset.
fn fresh_queue(mem: &mut GuestMemory) -> Queue {
    mem.write_obj(GuestAddress(AVAIL + 2), 0u16).expect("ram");
    queue(mem, QSIZE)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median over `rounds` of `f`'s units per second (`f` returns the units done).
fn rate(rounds: usize, mut f: impl FnMut() -> f64) -> f64 {
    median((0..rounds).map(|_| {
        let t = Instant::now();
        let n = f();
        n / t.elapsed().as_secs_f64()
    }).collect())
}

fn s(v: &mut Vec<u8>, text: &[u8]) {
    v.extend_from_slice(&(text.len() as u16).to_le_bytes());
    v.extend_from_slice(text);
}

/// A 9P message: size, type, tag 1, body.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = ((7 + body.len()) as u32).to_le_bytes().to_vec();
    m.push(kind);
    m.extend_from_slice(&1u16.to_le_bytes());
    m.extend_from_slice(body);
    m
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(7);
    let dir = std::env::var_os("P9_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("virtio-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut mem = GuestMemory::new(64 << 20).expect("mmap");

    // virtio-blk: a 64 MiB disk, 1 MiB requests in 32 segments of 32 KiB.
    const DISK: u64 = 64 << 20;
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true)
        .open(dir.join("disk")).expect("disk");
    std::io::Write::write_all(&mut &f, &vec![0x5a; DISK as usize]).expect("disk data");
    let mut blk = Block::new(f.as_fd(), 0, DISK, false, b"bench");
    let mut q = fresh_queue(&mut mem);
    let data = |write: bool| -> Vec<(u64, u32, bool)> {
        let mut b = vec![(HDR, 16, false)];
        b.extend((0..32).map(|k| (BUF + k * 0x8000, 0x8000, !write)));
        b.push((STATUS, 1, true));
        b
    };
    let mut blk_mb = |write: bool, mem: &mut GuestMemory| {
        let bufs = data(write);
        rate(rounds, || {
            for i in 0..256u64 {
                let mut hdr = [0u8; 16];
                hdr[0] = u8::from(write); // T_OUT = 1, T_IN = 0
                hdr[8..].copy_from_slice(&((i % 64) * 2048).to_le_bytes());
                mem.write_slice(GuestAddress(HDR), &hdr).expect("ram");
                serve(&mut blk, mem, &mut q, &bufs);
                assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS)), Some(0), "status OK");
            }
            256.0 * 1.048_576
        })
    };
    let blk_read = blk_mb(false, &mut mem);
    let blk_write = blk_mb(true, &mut mem);
    println!("blk read  1 MiB x32 segs: {blk_read:8.0} MB/s");
    println!("blk write 1 MiB x32 segs: {blk_write:8.0} MB/s");

    // Requests with no I/O at all.
    let mut ro = Block::new(f.as_fd(), 0, DISK, true, b"bench");
    let mut q = fresh_queue(&mut mem);
    let flush = [(HDR, 16, false), (STATUS, 1, true)];
    let mut hdr = [0u8; 16];
    hdr[0] = 4; // T_FLUSH
    mem.write_slice(GuestAddress(HDR), &hdr).expect("ram");
    let reqs = rate(rounds, || {
        for _ in 0..100_000 {
            serve(&mut ro, &mut mem, &mut q, &flush);
        }
        100_000.0
    });
    println!("blk flush, no I/O:        {reqs:8.0} req/s");

    // virtio-9p: one file, Twrite/Tread of 128 KiB in 32 pages.
    let share = dir.join("share");
    std::fs::create_dir_all(&share).expect("share");
    let server = Server::new(share.as_os_str().as_encoded_bytes(), false).expect("server");
    let mut p9 = P9Device::new(server, 0).expect("9p");
    let mut q = fresh_queue(&mut mem);
    let mut call = |mem: &mut GuestMemory, q: &mut Queue, m: &[u8], more: &[(u64, u32, bool)]| {
        mem.write_slice(GuestAddress(HDR), m).expect("ram");
        let mut bufs = vec![(HDR, m.len() as u32, false)];
        bufs.extend_from_slice(more);
        serve(&mut p9, mem, q, &bufs);
        let mut head = [0u8; 5];
        mem.read_slice(GuestAddress(REPLY), &mut head).expect("ram");
        assert_eq!(head[4], m[4] + 1, "9P op {} failed", m[4]);
    };
    let small_reply = [(REPLY, 4096, true)];
    let mut v = MAX_MSIZE.to_le_bytes().to_vec();
    s(&mut v, b"9P2000.L");
    call(&mut mem, &mut q, &message(msg::TVERSION, &v), &small_reply);
    let mut v = [0u32.to_le_bytes(), u32::MAX.to_le_bytes()].concat();
    s(&mut v, b"");
    s(&mut v, b"");
    v.extend_from_slice(&0u32.to_le_bytes());
    call(&mut mem, &mut q, &message(msg::TATTACH, &v), &small_reply);
    let v = [&0u32.to_le_bytes()[..], &1u32.to_le_bytes(), &0u16.to_le_bytes()].concat();
    call(&mut mem, &mut q, &message(msg::TWALK, &v), &small_reply);
    let mut v = 1u32.to_le_bytes().to_vec();
    s(&mut v, b"f");
    v.extend_from_slice(&[2u32.to_le_bytes(), 0o644u32.to_le_bytes(), 0u32.to_le_bytes()].concat());
    call(&mut mem, &mut q, &message(msg::TLCREATE, &v), &small_reply);
    const COUNT: u32 = 128 << 10;
    let pages: Vec<(u64, u32, bool)> = (0..32).map(|k| (BUF + k * 0x2000, 4096, false)).collect();
    let op = |kind: u8, off: u64| {
        let body = [&1u32.to_le_bytes()[..], &off.to_le_bytes(), &COUNT.to_le_bytes()].concat();
        let mut m = message(kind, &body);
        if kind == msg::TWRITE {
            let size = m.len() as u32 + COUNT; // the data follows in `pages`
            m[..4].copy_from_slice(&size.to_le_bytes());
        }
        m
    };
    let p9_write = rate(rounds, || {
        for i in 0..256u64 {
            let mut bufs = pages.clone();
            bufs.push((REPLY, 4096, true));
            call(&mut mem, &mut q, &op(msg::TWRITE, (i % 64) * u64::from(COUNT)), &bufs);
        }
        256.0 * f64::from(COUNT) / 1e6
    });
    let reply_pages: Vec<(u64, u32, bool)> =
        std::iter::once((REPLY, 11, true)).chain(pages.iter().map(|&(a, l, _)| (a, l, true))).collect();
    let p9_read = rate(rounds, || {
        for i in 0..256u64 {
            call(&mut mem, &mut q, &op(msg::TREAD, (i % 64) * u64::from(COUNT)), &reply_pages);
        }
        256.0 * f64::from(COUNT) / 1e6
    });
    println!("9p Twrite 128 KiB x32 pg: {p9_write:8.0} MB/s");
    println!("9p Tread  128 KiB x32 pg: {p9_read:8.0} MB/s");
    let _ = std::fs::remove_dir_all(&dir);
}
