//! virtio-blk (virtio 1.x §5.2) served straight from a host file with
//! `pread`/`pwrite` into and out of guest RAM: no copy of the disk in RAM.
//!
//! One device per disk: the rootfs (the image's squashfs section: a window
//! `[offset, offset + len)` of the image file, read-only) and extra disks
//! (`--smolvm-disk`), read-write unless `:ro`, where FLUSH is `fdatasync`.
//!
//! Every request is checked: header (16 bytes) device-readable, status byte
//! the last device-writable byte, data direction matching the type,
//! `sector * 512 + len` computed with checked arithmetic and inside the
//! disk. Anything else is answered IOERR (UNSUPP for unknown types); a
//! chain without room for a status byte is returned with length 0. Host I/O
//! errors are IOERR too. Only a malformed *queue* stops the device.

use super::queue::{Queue, QueueError};
use super::{id, read_config_bytes, Irq, Reader, VirtioDevice, Writer};
use crate::mem::{bytes_of, GuestMemory};
use crate::sys::io;
use rustix::fd::BorrowedFd;
use rustix::io::Errno;

pub const SECTOR: u64 = 512;
const QUEUE_SIZE: u16 = 128;

const F_SEG_MAX: u64 = 1 << 2;
const F_RO: u64 = 1 << 5;
const F_BLK_SIZE: u64 = 1 << 6;
const F_FLUSH: u64 = 1 << 9;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;

const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

crate::guest_struct! {
    /// `struct virtio_blk_config` (virtio 1.x §5.2.4) up to `blk_size`, the
    /// last field a negotiated feature (BLK_SIZE) needs.
    struct BlkConfig {
        /// In 512-byte sectors.
        capacity: u64,
        size_max: u32,
        seg_max: u32,
        geometry: u32,
        blk_size: u32,
    }
}

/// Length of the GET_ID answer (virtio: 20 bytes, NUL-padded).
const ID_LEN: usize = 20;
/// Largest single host I/O, so one `pread` cannot be asked for gigabytes.
const IO_CHUNK: usize = 1 << 20;

/// A disk: `len` bytes of `fd` starting at `offset`.
pub struct Block<'f> {
    fd: BorrowedFd<'f>,
    offset: u64,
    len: u64,
    read_only: bool,
    id: [u8; ID_LEN],
    config: BlkConfig,
}

impl<'f> Block<'f> {
    /// A disk over `fd[offset .. offset + len)`. The capacity is `len`
    /// rounded up to whole sectors; the tail of the last sector reads as
    /// zeros (and cannot be written). `id` is the GET_ID answer (≤ 20 bytes).
    pub fn new(fd: BorrowedFd<'f>, offset: u64, len: u64, read_only: bool, id: &[u8]) -> Block<'f> {
        let config = BlkConfig {
            capacity: len.div_ceil(SECTOR),
            // A chain's data buffers: the queue minus header and status.
            seg_max: u32::from(QUEUE_SIZE) - 2,
            blk_size: 512, // SECTOR
            ..BlkConfig::default()
        };
        let mut idb = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        idb[..n].copy_from_slice(&id[..n]);
        Block { fd, offset, len, read_only, id: idb, config }
    }

    /// Checked `[start, end)` byte range of a request inside the disk.
    fn range(&self, sector: u64, len: u64) -> Option<(u64, u64)> {
        let start = sector.checked_mul(SECTOR)?;
        let end = start.checked_add(len)?;
        (end <= self.len.div_ceil(SECTOR) * SECTOR).then_some((start, end))
    }

    /// Host file position of disk byte `pos`.
    fn host_pos(&self, pos: u64) -> Result<u64, Errno> {
        self.offset.checked_add(pos).ok_or(Errno::OVERFLOW)
    }

    fn read_into(&self, mem: &GuestMemory, w: &mut Writer<'_>, mut pos: u64) -> Result<(), Errno> {
        while let Some(chunk) = w.chunk(mem, IO_CHUNK) {
            // Bytes of this chunk that exist in the file; the rest is the zero tail.
            let in_file = usize::try_from(self.len.saturating_sub(pos)).unwrap_or(usize::MAX).min(chunk.len());
            // in_file <= chunk.len(): the min above.
            let Some((file_part, tail)) = chunk.split_at(in_file) else { return Err(Errno::IO) };
            // A file shorter than the disk is EIO.
            io::pread_exact(self.fd, file_part.io_mut(), self.host_pos(pos)?)?;
            tail.fill(0);
            w.advance(chunk.len());
            pos += chunk.len() as u64;
        }
        Ok(())
    }

    fn write_from(&self, mem: &GuestMemory, r: &mut Reader<'_>, mut pos: u64) -> Result<(), Errno> {
        // Refused before any byte is written; an empty write writes nothing,
        // so it is fine anywhere `range` allows (up to the rounded-up end).
        if r.available() != 0 && pos.checked_add(r.available()).is_none_or(|end| end > self.len) {
            return Err(Errno::NOSPC); // the zero tail of a partial last sector
        }
        while let Some(chunk) = r.chunk(mem, IO_CHUNK) {
            io::pwrite_all(self.fd, chunk.io(), self.host_pos(pos)?)?;
            r.advance(chunk.len());
            pos += chunk.len() as u64;
        }
        Ok(())
    }

    /// Serves one request; returns the status byte.
    fn serve(&self, mem: &GuestMemory, r: &mut Reader<'_>, w: &mut Writer<'_>) -> u8 {
        let Some(hdr) = r.read_array::<16>(mem) else { return S_IOERR };
        let kind = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let mut sector = [0u8; 8];
        sector.copy_from_slice(&hdr[8..16]);
        let sector = u64::from_le_bytes(sector);
        let ok = |res: Result<(), Errno>| if res.is_ok() { S_OK } else { S_IOERR };
        match kind {
            T_IN => {
                let Some((start, _)) = self.range(sector, w.available()) else { return S_IOERR };
                if r.available() != 0 {
                    return S_IOERR;
                }
                ok(self.read_into(mem, w, start))
            }
            T_OUT => {
                let Some((start, _)) = self.range(sector, r.available()) else { return S_IOERR };
                if self.read_only || w.available() != 0 {
                    return S_IOERR;
                }
                ok(self.write_from(mem, r, start))
            }
            T_FLUSH if self.read_only => S_OK,
            T_FLUSH => ok(rustix::fs::fdatasync(self.fd)),
            T_GET_ID => {
                let n = usize::try_from(w.available()).unwrap_or(ID_LEN).min(ID_LEN);
                w.write(mem, &self.id[..n]);
                S_OK
            }
            _ => S_UNSUPP,
        }
    }
}

impl VirtioDevice for Block<'_> {
    fn device_id(&self) -> u32 {
        id::BLOCK
    }

    fn features(&self) -> u64 {
        F_SEG_MAX | F_BLK_SIZE | if self.read_only { F_RO } else { F_FLUSH }
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(bytes_of(&self.config), offset, data);
    }

    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError> {
        let q = queues.get_mut(index).ok_or(QueueError::NotReady)?;
        let mut irq = Irq::NONE;
        while let Some(chain) = q.pop(mem)? {
            let mut r = Reader::new(&chain);
            let mut w = Writer::new(&chain);
            let used = match w.split_tail(1) {
                Some(mut status) => {
                    let s = self.serve(mem, &mut r, &mut w);
                    status.write_all(mem, &[s]);
                    w.written().saturating_add(1)
                }
                None => 0, // no room to answer: hand the chain back untouched
            };
            q.add_used(mem, chain.head, used)?;
            irq = Irq::VRING;
        }
        if q.interrupts_suppressed(mem) {
            irq = Irq::NONE;
        }
        Ok(irq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::GuestAddress;
    use crate::virtio::queue::testdriver::*;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    const HDR: u64 = DATA;
    const BUF: u64 = DATA + 0x1000;
    const STATUS: u64 = DATA + 0x100;
    /// Ring size of the rig: room for the longest chain the device allows.
    const QS: u16 = QUEUE_SIZE;

    struct Rig {
        mem: GuestMemory,
        q: Queue,
        n: u16,
    }

    impl Rig {
        fn new() -> Rig {
            let mem = GuestMemory::new(1 << 22).expect("mmap");
            let q = queue(&mem, QS);
            Rig { mem, q, n: 0 }
        }
        /// Sends one request; returns (status, used len).
        fn req(&mut self, dev: &mut Block<'_>, kind: u32, sector: u64, bufs: &[(u64, u32, bool)]) -> (u8, u32) {
            let mut hdr = [0u8; 16];
            hdr[..4].copy_from_slice(&kind.to_le_bytes());
            hdr[8..].copy_from_slice(&sector.to_le_bytes());
            self.mem.write_slice(GuestAddress(HDR), &hdr).expect("ram");
            self.mem.write_obj(GuestAddress(STATUS), 0xffu8).expect("ram");
            let mut all = vec![(HDR, 16, false)];
            all.extend_from_slice(bufs);
            all.push((STATUS, 1, true));
            chain(&self.mem, QS, 0, &all);
            let mut qs = [self.q];
            dev.process_queue(0, &mut qs, &self.mem).expect("queue ok");
            self.q = qs[0];
            let (idx, _, len) = used(&self.mem, self.n % QS);
            self.n += 1;
            assert_eq!(idx, self.n);
            (self.mem.read_obj(GuestAddress(STATUS)).expect("ram"), len)
        }
    }

    fn disk(bytes: &[u8]) -> std::fs::File {
        let mut f = tempfile();
        f.write_all(bytes).expect("write");
        f
    }

    fn tempfile() -> std::fs::File {
        let dir = std::env::temp_dir();
        let p = dir.join(format!("smolvm-blk-{}-{:?}", std::process::id(), std::thread::current().id()));
        let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&p).expect("tmp");
        std::fs::remove_file(&p).expect("unlink");
        f
    }

    #[test]
    fn reads_a_window_of_the_file() {
        let mut content = vec![0xeeu8; 4096];
        content.extend((0..2048u32).map(|i| (i % 251) as u8));
        content.extend([0xee; 512]);
        let f = disk(&content);
        let mut dev = Block::new(f.as_fd(), 4096, 2048, true, b"smolvm-rootfs");
        let mut rig = Rig::new();
        assert_eq!(rig.req(&mut dev, T_IN, 1, &[(BUF, 1024, true)]), (S_OK, 1025));
        assert_eq!(rig.mem.to_vec(GuestAddress(BUF), 1024).as_deref(), Some(&content[4096 + 512..4096 + 1536]));
        // GET_ID
        assert_eq!(rig.req(&mut dev, T_GET_ID, 0, &[(BUF, 20, true)]), (S_OK, 21));
        assert_eq!(rig.mem.to_vec(GuestAddress(BUF), 14).as_deref(), Some(&b"smolvm-rootfs\0"[..]));
        // Past the end, and a sector number whose byte offset overflows.
        assert_eq!(rig.req(&mut dev, T_IN, 4, &[(BUF, 512, true)]).0, S_IOERR);
        assert_eq!(rig.req(&mut dev, T_IN, 3, &[(BUF, 1024, true)]).0, S_IOERR);
        assert_eq!(rig.req(&mut dev, T_IN, u64::MAX / 256, &[(BUF, 512, true)]).0, S_IOERR);
        assert_eq!(rig.req(&mut dev, T_IN, u64::MAX, &[(BUF, 512, true)]).0, S_IOERR);
        // Read-only: writes refused, file untouched; flush is a no-op.
        assert_eq!(rig.req(&mut dev, T_OUT, 0, &[(BUF, 512, false)]).0, S_IOERR);
        assert_eq!(rig.req(&mut dev, T_FLUSH, 0, &[]).0, S_OK);
        assert_eq!(rig.req(&mut dev, 77, 0, &[]).0, S_UNSUPP);
        assert_eq!(dev.features() & F_RO, F_RO);
        let mut cap = [0u8; 8];
        dev.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 4);
    }

    #[test]
    fn partial_last_sector_reads_zeros() {
        let f = disk(&[7u8; 700]);
        let mut dev = Block::new(f.as_fd(), 0, 700, true, b"x");
        let mut rig = Rig::new();
        assert_eq!(rig.req(&mut dev, T_IN, 1, &[(BUF, 512, true)]), (S_OK, 513));
        let got = rig.mem.to_vec(GuestAddress(BUF), 512).expect("ram");
        assert!(got[..188].iter().all(|&b| b == 7) && got[188..].iter().all(|&b| b == 0));
    }

    #[test]
    fn writes_and_flushes() {
        let mut f = disk(&[0u8; 8192]);
        let mut dev = Block::new(f.as_fd(), 0, 8192, false, b"smolvm-disk0");
        let mut rig = Rig::new();
        rig.mem.write_slice(GuestAddress(BUF), &[0xab; 1024]).expect("ram");
        assert_eq!(rig.req(&mut dev, T_OUT, 2, &[(BUF, 1000, false), (BUF + 1000, 24, false)]), (S_OK, 1));
        assert_eq!(rig.req(&mut dev, T_FLUSH, 0, &[]), (S_OK, 1));
        // Data direction must match: a writable data buffer on a write, a
        // readable one on a read.
        assert_eq!(rig.req(&mut dev, T_OUT, 0, &[(BUF, 512, true)]).0, S_IOERR);
        assert_eq!(rig.req(&mut dev, T_IN, 0, &[(BUF, 512, false)]).0, S_IOERR);
        assert_eq!(rig.req(&mut dev, T_OUT, 15, &[(BUF, 1024, false)]).0, S_IOERR);
        let mut back = vec![0u8; 8192];
        f.seek(std::io::SeekFrom::Start(0)).expect("seek");
        f.read_exact(&mut back).expect("read");
        assert!(back[1024..2048].iter().all(|&b| b == 0xab));
        assert!(back[..1024].iter().chain(&back[2048..]).all(|&b| b == 0));
    }

    #[test]
    fn host_errors_are_ioerr() {
        let f = std::fs::File::open("/").expect("dir"); // pread on a directory: EISDIR
        let mut dev = Block::new(f.as_fd(), 0, 4096, false, b"x");
        let mut rig = Rig::new();
        assert_eq!(rig.req(&mut dev, T_IN, 0, &[(BUF, 512, true)]).0, S_IOERR);
        assert_eq!(rig.req(&mut dev, T_OUT, 0, &[(BUF, 512, false)]).0, S_IOERR);
        // A file shorter than the disk claims.
        let f = disk(&[1u8; 100]);
        let mut dev = Block::new(f.as_fd(), 0, 4096, false, b"x");
        assert_eq!(rig.req(&mut dev, T_IN, 1, &[(BUF, 512, true)]).0, S_IOERR);
    }

    #[test]
    fn malformed_requests_get_an_answer() {
        let f = disk(&[0u8; 4096]);
        let mut dev = Block::new(f.as_fd(), 0, 4096, false, b"x");
        let rig = Rig::new();
        // Header shorter than 16 bytes.
        let mut qs = [rig.q];
        chain(&rig.mem, QS, 0, &[(HDR, 8, false), (STATUS, 1, true)]);
        dev.process_queue(0, &mut qs, &rig.mem).expect("queue ok");
        assert_eq!(rig.mem.read_obj::<u8>(GuestAddress(STATUS)), Some(S_IOERR));
        // No writable byte at all: returned with length 0.
        chain(&rig.mem, QS, 0, &[(HDR, 16, false)]);
        dev.process_queue(0, &mut qs, &rig.mem).expect("queue ok");
        assert_eq!(used(&rig.mem, 1), (2, 0, 0));
    }

    /// Disk content: byte `i` is a pattern no two nearby sectors share.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i % 251) ^ (i / 512)).to_le_bytes()[0]).collect()
    }

    fn file_bytes(mut f: &std::fs::File) -> Vec<u8> {
        let mut back = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).expect("seek");
        f.read_to_end(&mut back).expect("read");
        back
    }

    /// `n` buffers of `len` bytes, scattered backwards through RAM (as a
    /// guest's page cache hands them out), each at a page of its own.
    fn scattered(n: usize, len: u32, writable: bool) -> Vec<(u64, u32, bool)> {
        (0..n).map(|k| (BUF + 0x1000 * (n - 1 - k) as u64 + 8, len, writable)).collect()
    }

    #[test]
    fn reads_into_the_most_buffers_a_chain_can_hold() {
        let seg_max = usize::from(QUEUE_SIZE) - 2; // + header + status
        let content = pattern(seg_max * 512 + 4096);
        let f = disk(&content);
        let mut dev = Block::new(f.as_fd(), 0, content.len() as u64, true, b"x");
        let mut rig = Rig::new();
        let bufs = scattered(seg_max, 512, true);
        let want = u32::try_from(seg_max * 512 + 1).expect("small");
        assert_eq!(rig.req(&mut dev, T_IN, 3, &bufs), (S_OK, want));
        for (k, &(addr, len, _)) in bufs.iter().enumerate() {
            let at = 3 * 512 + k * 512;
            assert_eq!(rig.mem.to_vec(GuestAddress(addr), u64::from(len)).as_deref(), Some(&content[at..at + 512]), "buffer {k}");
        }
    }

    #[test]
    fn overlapping_buffers_are_filled_in_chain_order() {
        // A hostile guest points two descriptors at the same bytes (and a
        // third half over them): the stream is written in chain order, so
        // the last writer wins; nothing else happens.
        let content = pattern(8192);
        let f = disk(&content);
        let mut dev = Block::new(f.as_fd(), 0, 8192, true, b"x");
        let mut rig = Rig::new();
        let bufs = [(BUF, 512, true), (BUF, 512, true), (BUF + 256, 512, true)];
        assert_eq!(rig.req(&mut dev, T_IN, 2, &bufs), (S_OK, 1537));
        let got = rig.mem.to_vec(GuestAddress(BUF), 768).expect("ram");
        assert_eq!(&got[..256], &content[3 * 512..3 * 512 + 256]);
        assert_eq!(&got[256..], &content[4 * 512..5 * 512]);
    }

    #[test]
    fn partial_last_sector_across_buffers() {
        let content = pattern(700);
        let f = disk(&content);
        let mut dev = Block::new(f.as_fd(), 0, 700, true, b"x");
        let mut rig = Rig::new();
        rig.mem.write_slice(GuestAddress(BUF), &[0x55; 0x2000]).expect("ram");
        assert_eq!(rig.req(&mut dev, T_IN, 0, &[(BUF, 300, true), (BUF + 0x1000, 724, true)]), (S_OK, 1025));
        assert_eq!(rig.mem.to_vec(GuestAddress(BUF), 300).as_deref(), Some(&content[..300]));
        let second = rig.mem.to_vec(GuestAddress(BUF + 0x1000), 724).expect("ram");
        assert_eq!(&second[..400], &content[300..]);
        assert!(second[400..].iter().all(|&b| b == 0));
        // A file shorter than the disk claims: the bytes it has, then IOERR.
        let f = disk(&content[..600]);
        let mut dev = Block::new(f.as_fd(), 0, 4096, true, b"x");
        assert_eq!(rig.req(&mut dev, T_IN, 0, &[(BUF, 512, true), (BUF + 0x1000, 512, true)]).0, S_IOERR);
        assert_eq!(rig.mem.to_vec(GuestAddress(BUF + 0x1000), 88).as_deref(), Some(&content[512..600]));
    }

    #[test]
    fn writes_from_many_buffers() {
        let f = disk(&[0u8; 128 * 512]);
        let mut dev = Block::new(f.as_fd(), 0, 128 * 512, false, b"x");
        let mut rig = Rig::new();
        let content = pattern(126 * 512);
        let bufs = scattered(126, 512, false);
        for (k, &(addr, _, _)) in bufs.iter().enumerate() {
            rig.mem.write_slice(GuestAddress(addr), &content[k * 512..(k + 1) * 512]).expect("ram");
        }
        assert_eq!(rig.req(&mut dev, T_OUT, 1, &bufs), (S_OK, 1));
        let back = file_bytes(&f);
        assert_eq!(&back[512..127 * 512], &content[..]);
        assert!(back[..512].iter().chain(&back[127 * 512..]).all(|&b| b == 0));
        // Overlapping readable buffers are fine: the same bytes written twice.
        assert_eq!(rig.req(&mut dev, T_OUT, 0, &[(bufs[0].0, 512, false), (bufs[0].0, 512, false)]), (S_OK, 1));
        let back = file_bytes(&f);
        assert_eq!(&back[..512], &content[..512]);
        assert_eq!(&back[512..1024], &content[..512]);
    }

    #[test]
    fn refused_writes_leave_the_disk_untouched() {
        let f = disk(&[0u8; 4096]);
        let mut rig = Rig::new();
        rig.mem.write_slice(GuestAddress(BUF), &[0xab; 0x3000]).expect("ram");
        let two = [(BUF, 512, false), (BUF + 0x1000, 512, false)];
        // Read-only disk.
        let mut ro = Block::new(f.as_fd(), 0, 4096, true, b"x");
        assert_eq!(rig.req(&mut ro, T_OUT, 0, &two).0, S_IOERR);
        // Past the end (the first buffer would fit), and a partial last sector.
        let mut dev = Block::new(f.as_fd(), 0, 4096, false, b"x");
        assert_eq!(rig.req(&mut dev, T_OUT, 7, &two).0, S_IOERR);
        assert_eq!(rig.req(&mut dev, T_OUT, 8, &two).0, S_IOERR);
        let mut short = Block::new(f.as_fd(), 0, 4000, false, b"x");
        assert_eq!(rig.req(&mut short, T_OUT, 6, &two).0, S_IOERR);
        assert!(file_bytes(&f).iter().all(|&b| b == 0));
        // An empty write is fine up to the rounded-up end (as reads are),
        // also on a partial last sector; past it, it is refused.
        assert_eq!(rig.req(&mut short, T_OUT, 8, &[]).0, S_OK);
        assert_eq!(rig.req(&mut short, T_OUT, 9, &[]).0, S_IOERR);
        // Reads past the end leave the buffers untouched.
        assert_eq!(rig.req(&mut dev, T_IN, 7, &[(BUF, 512, true), (BUF + 0x1000, 512, true)]).0, S_IOERR);
        assert!(rig.mem.to_vec(GuestAddress(BUF), 0x1200).expect("ram").iter().all(|&b| b == 0xab));
    }

    /// A second "vCPU" rewrites the request while the device serves it
    /// (sound now that no reference into guest RAM exists): every request
    /// is answered with a valid status, and nothing outside the disk's
    /// window of the file ever changes.
    #[test]
    fn a_guest_rewriting_its_requests_meanwhile_gets_answers() {
        use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
        let f = disk(&[0x5a; 16384]);
        let mut dev = Block::new(f.as_fd(), 4096, 8192, false, b"x");
        let mem = GuestMemory::new(1 << 22).expect("mmap");
        let mut q = queue(&mem, QS);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut x = 0x9e37_79b9_7f4a_7c15u64;
                while !stop.load(Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let kind = [T_IN, T_OUT, T_FLUSH, T_GET_ID, x as u32][(x >> 61) as usize % 5];
                    mem.write_obj(GuestAddress(HDR), kind).expect("ram");
                    mem.write_obj(GuestAddress(HDR + 8), (x >> 8) % 20).expect("ram"); // sectors 0..20: inside and past the end
                    mem.write_obj(GuestAddress(BUF + (x >> 40) % 4096), x as u8).expect("ram");
                }
            });
            for n in 1..=3000u16 {
                let write = n % 2 == 0;
                chain(&mem, QS, 0, &[(HDR, 16, false), (BUF, 4096, !write), (STATUS, 1, true)]);
                let mut qs = [q];
                dev.process_queue(0, &mut qs, &mem).expect("the queue itself is well formed");
                q = qs[0];
                assert_eq!(used(&mem, (n - 1) % QS).0, n, "every request answered");
                let status = mem.read_obj::<u8>(GuestAddress(STATUS)).expect("ram");
                assert!([S_OK, S_IOERR, S_UNSUPP].contains(&status), "status {status}");
            }
            stop.store(true, Relaxed);
        });
        let back = file_bytes(&f);
        assert_eq!(back.len(), 16384);
        assert!(back[..4096].iter().chain(&back[12288..]).all(|&b| b == 0x5a), "outside the window");
    }
}
