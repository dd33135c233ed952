//! virtio-blk requests from a hostile driver against a real file backend
//! (a window of a temp file, read-only or not, possibly longer than the
//! file), through the real queue, chain and `blk::Block` code. The input
//! builds up to 8 requests: type, sector, header length, data buffers
//! (lengths, directions, wild addresses), status byte. Each is served on
//! its own so a model of the disk can predict it. Checks:
//! - never a panic; the device answers every chain;
//! - bytes outside the disk window never change; a read-only disk never changes;
//! - a well-formed request gets exactly the status the virtio spec asks for
//!   (range, direction, read-only, short file), a read returns the file's
//!   bytes (zeros in the tail of a partial last sector), a write lands
//!   byte for byte, GET_ID returns the id.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use vmm_stub::mem::{GuestAddress, GuestMemory};
use vmm_stub::virtio::blk::{Block, SECTOR};
use vmm_stub::virtio::queue::testdriver::{self, publish, set_desc, F_NEXT, F_WRITE, USED};
use vmm_stub::virtio::VirtioDevice;

/// Guest RAM: every u16 is an address in it, so wild buffers hit the
/// rings (the test driver's, 0x1000..0x3100) and the request's buffers.
const RAM: u64 = 1 << 16;
const QSIZE: u16 = 16;
const HDR: u64 = 0x4000;
const DATA: u64 = 0x5000;
const STATUS: u64 = 0xf000;
const _: () = assert!(testdriver::USED + 6 + 8 * QSIZE as u64 <= HDR);
/// Backing file: a disk window inside it, guard bytes around.
const FILE: usize = 3 * 4096;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

struct Rig {
    mem: GuestMemory,
    file: File,
}

thread_local! {
    static RIG: RefCell<Rig> = RefCell::new(Rig {
        mem: GuestMemory::new(RAM).expect("mmap"),
        file: {
            // tmpfs when there is one: FLUSH (fdatasync) then costs no disk I/O.
            let shm = std::path::Path::new("/dev/shm");
            let dir = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
            let p = dir.join(format!("blk-fuzz-{}", std::process::id()));
            let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&p).expect("tmp");
            let _ = std::fs::remove_file(&p);
            f
        },
    });
}

/// The file's initial bytes. Built once: per-byte loops in the harness are
/// instrumented too and would dominate the run time.
fn pattern() -> &'static [u8] {
    static P: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    P.get_or_init(|| (0..FILE).map(|i| (i * 7 + 3) as u8).collect())
}

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

fn file_bytes(f: &File) -> Vec<u8> {
    let len = f.metadata().expect("fstat").len();
    let mut v = vec![0u8; usize::try_from(len).expect("small")];
    f.read_exact_at(&mut v, 0).expect("pread");
    v
}

fuzz_target!(|data: &[u8]| {
    RIG.with(|r| run(&mut r.borrow_mut(), data));
});

fn run(rig: &mut Rig, data: &[u8]) {
    let mut i = In(data);
    let mem = &mut rig.mem;
    mem.range(GuestAddress(0), RAM).expect("ram").fill(0);
    rig.file.set_len(FILE as u64).expect("truncate");
    rig.file.write_all_at(pattern(), 0).expect("reset");

    let mode = i.u8();
    let offset = if mode & 1 == 0 { 0 } else { 4096u64 };
    let read_only = mode & 2 != 0;
    // Up to 1 KiB past the end of the file: a disk the file is too short for.
    let len = u64::from(i.u16()) % (FILE as u64 - offset + 1024);
    let id: Vec<u8> = (0..i.u8() % 24).map(|k| b'a' + k).collect();
    let mut dev = Block::new(rig.file.as_fd(), offset, len, read_only, &id);
    let cap = len.div_ceil(SECTOR) * SECTOR;

    let mut q = testdriver::queue(mem, QSIZE);

    for n in 1..=8u16 {
        if i.0.is_empty() {
            break;
        }
        let shape = i.u8();
        let kind = match shape % 8 {
            0 | 1 => T_IN,
            2 | 3 => T_OUT,
            4 => T_FLUSH,
            5 => T_GET_ID,
            6 => u32::from(i.u8()),
            _ => u32::from(i.u16()) << 16 | u32::from(i.u8()),
        };
        let sector = match i.u8() % 4 {
            0 => u64::from(i.u8() % 32),
            1 => (len / SECTOR).wrapping_sub(u64::from(i.u8() % 4)),
            2 => u64::MAX - u64::from(i.u8()),
            _ => u64::from(i.u16()) << 48 | u64::from(i.u8()),
        };
        // Hostile shapes: wrong header length, wrong data direction, a wild
        // buffer, a missing or longer status.
        let hostile = shape & 0x80 != 0;
        let hdr_len = if hostile && i.u8() % 2 == 0 { u32::from(i.u8() % 24) } else { 16 };
        let mut hdr = [0u8; 16];
        hdr[..4].copy_from_slice(&kind.to_le_bytes());
        hdr[8..].copy_from_slice(&sector.to_le_bytes());
        mem.write_slice(GuestAddress(HDR), &hdr).expect("ram");
        mem.write_obj(GuestAddress(STATUS), 0xffu8).expect("ram");

        let mut d = 0u16;
        set_desc(mem, d, HDR, hdr_len, F_NEXT, d + 1);
        d += 1;
        let data_write = kind != T_OUT;
        let mut segs: Vec<(u64, u32)> = Vec::new();
        let mut at = DATA;
        let mut well_formed = hdr_len == 16;
        let mut any_wild = false;
        for _ in 0..i.u8() % 4 {
            let seg_len = u32::from(i.u16()) % 4097;
            let flip = hostile && i.u8() % 4 == 0;
            let wild = hostile && i.u8() % 4 == 0;
            let addr = if wild { u64::from(i.u16()) } else { at };
            well_formed &= !flip && !wild;
            any_wild |= wild;
            let w = data_write != flip;
            set_desc(mem, d, addr, seg_len, F_NEXT | if w { F_WRITE } else { 0 }, d + 1);
            d += 1;
            if !wild {
                segs.push((addr, seg_len));
                // Data the guest wants written: distinct per request.
                let from = usize::from(shape) + usize::from(n);
                mem.write_slice(GuestAddress(addr), &pattern()[from..from + seg_len as usize]).expect("ram");
                at += u64::from(seg_len);
            }
        }
        let status_len = if hostile && i.u8() % 4 == 0 { u32::from(i.u8() % 3) } else { 1 };
        well_formed &= status_len == 1;
        set_desc(mem, d, STATUS, status_len, F_WRITE, d + 1);
        publish(mem, QSIZE, 0);

        let before = file_bytes(&rig.file);
        let mut qs = [q];
        let served = dev.process_queue(0, &mut qs, mem);
        q = qs[0];
        let after = file_bytes(&rig.file);
        // Only a malformed chain (misordered or outside RAM) stops the queue.
        assert!(served.is_ok() || !well_formed, "well-formed chain refused: {served:?}");
        let status_at = STATUS + u64::from(status_len.max(1)) - 1;
        let status = mem.read_obj::<u8>(GuestAddress(status_at)).expect("ram");

        // The window [offset, offset + len) is all a request may change.
        let win = usize::try_from(offset).expect("small")..usize::try_from(offset + len).expect("small");
        if read_only {
            assert_eq!(before, after, "read-only disk written");
        }
        assert!(after.len() <= before.len().max(win.end), "file grew past the disk");
        let shared = before.len().min(after.len());
        let (lo, hi) = (win.start.min(shared), win.end.min(shared));
        assert!(before[..lo] == after[..lo] && before[hi..shared] == after[hi..shared], "bytes outside the disk changed");
        if served.is_err() {
            return; // the transport would now mark the device NEEDS_RESET
        }
        if any_wild {
            // A wild buffer may overlap the rings: a read into it can rewrite
            // avail.idx or the used ring (the device then serves what the
            // "guest" published), so ring counts and the status byte are the
            // guest's own business from here on.
            return;
        }
        assert_eq!(mem.read_obj::<u16>(GuestAddress(USED + 2)), Some(n), "every chain answered");
        if !well_formed {
            // The status byte is the last writable byte, when there is one.
            assert!(status_len == 0 || status <= S_UNSUPP, "status {status}");
            continue;
        }
        let total: u64 = segs.iter().map(|s| u64::from(s.1)).sum();
        let range = sector.checked_mul(SECTOR).and_then(|s| Some((s, s.checked_add(total)?)));
        let in_disk = range.filter(|&(_, end)| end <= cap);
        let expect = match kind {
            T_IN => match in_disk {
                Some((start, end)) => {
                    let need = offset + end.min(len);
                    if start < end.min(len) && need > before.len() as u64 { S_IOERR } else { S_OK }
                }
                None => S_IOERR,
            },
            T_OUT => match in_disk {
                Some((_, end)) if !read_only && (end <= len || total == 0) => S_OK,
                _ => S_IOERR,
            },
            T_FLUSH | T_GET_ID => S_OK,
            _ => S_UNSUPP,
        };
        assert_eq!(status, expect, "kind {kind} sector {sector} len {total} disk {len} ro {read_only}");
        if status != S_OK {
            if kind == T_IN || kind == T_GET_ID {
                continue;
            }
            if kind == T_OUT && in_disk.is_none_or(|_| read_only) {
                assert_eq!(before, after, "a refused write changed the disk");
            }
            continue;
        }
        // What the guest's data buffers hold now, in order.
        let mut guest = Vec::new();
        for &(a, l) in &segs {
            guest.extend_from_slice(&mem.to_vec(GuestAddress(a), u64::from(l)).expect("ram"));
        }
        match kind {
            T_IN => {
                let (start, end) = in_disk.expect("ok");
                // The file's bytes, then zeros past the disk's length.
                let (s, e) = (start.min(len), end.min(len));
                let mut want = if s < e { before[(offset + s) as usize..(offset + e) as usize].to_vec() } else { Vec::new() };
                want.resize(guest.len(), 0);
                assert!(guest == want, "read returned other bytes");
            }
            T_OUT if total > 0 => {
                let (start, end) = in_disk.expect("ok");
                let s = usize::try_from(offset + start).expect("small");
                let e = usize::try_from(offset + end).expect("small");
                // (A disk longer than its file grows the file: `after` may be
                // longer than `before`; bytes outside the window were checked above.)
                assert_eq!(&after[s..e], &guest[..], "written bytes");
            }
            T_GET_ID => {
                let n = guest.len().min(20);
                let mut want = id.clone();
                want.resize(20, 0);
                assert_eq!(&guest[..n], &want[..n], "id");
            }
            _ => {}
        }
    }
}
