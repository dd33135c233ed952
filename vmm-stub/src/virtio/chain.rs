//! Byte-stream views of a validated descriptor chain: a [`Reader`] over its
//! device-readable buffers and a [`Writer`] over its device-writable ones.
//! Devices use these and never see descriptors. Both hand out slices of
//! guest RAM (`chunk`/`chunk_mut` + `advance`) so a device can `write(2)` or
//! `pread(2)` straight between a host fd and guest memory without a copy.

use super::queue::{DescriptorChain, Segment};
use crate::mem::{GuestAddress, GuestMemory};

/// A cursor over a list of guest segments (all inside RAM: checked by `pop`).
#[derive(Clone, Copy)]
struct Cursor<'c> {
    segs: &'c [Segment],
    /// Offset into `segs[0]`.
    off: u32,
    /// Bytes not yet consumed (sum of lengths minus `off`), capped by `limit`.
    left: u64,
}

impl<'c> Cursor<'c> {
    fn new(segs: &'c [Segment]) -> Self {
        // At most QUEUE_MAX segments of u32 lengths: the sum stays far below
        // u64::MAX, no overflow check needed.
        let left = segs.iter().fold(0u64, |n, s| n.wrapping_add(u64::from(s.len)));
        Cursor { segs, off: 0, left }
    }

    /// The current contiguous piece: guest address and length (≤ `max`).
    fn piece(&mut self, max: usize) -> Option<(u64, usize)> {
        while let Some((s, rest)) = self.segs.split_first() {
            if self.off < s.len && self.left > 0 {
                let n = (s.len - self.off) as usize;
                let n = n.min(max).min(usize::try_from(self.left).unwrap_or(usize::MAX));
                return Some((s.addr + u64::from(self.off), n));
            }
            self.segs = rest;
            self.off = 0;
        }
        None
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some((s, rest)) = self.segs.split_first() else { return };
            let step = ((s.len - self.off) as usize).min(n);
            // step <= s.len - off, so it fits u32.
            self.off += u32::try_from(step).unwrap_or(0);
            self.left = self.left.saturating_sub(step as u64);
            n -= step;
            if self.off == s.len {
                self.segs = rest;
                self.off = 0;
            }
        }
    }
}

/// Reads the device-readable part of a chain as one byte stream.
pub struct Reader<'c> {
    cur: Cursor<'c>,
}

impl<'c> Reader<'c> {
    pub fn new(chain: &'c DescriptorChain) -> Self {
        Reader { cur: Cursor::new(chain.readable()) }
    }

    /// Bytes left to read.
    pub fn available(&self) -> u64 {
        self.cur.left
    }

    /// Copies up to `buf.len()` bytes; returns how many.
    pub fn read(&mut self, mem: &GuestMemory, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
            let Some(chunk) = self.chunk(mem, rest.len()) else { break };
            let n = chunk.len();
            // n <= rest.len(): `chunk` caps the piece at `max`.
            let Some(head) = rest.get_mut(..n) else { break };
            head.copy_from_slice(chunk);
            self.advance(n);
            done += n;
        }
        done
    }

    /// Fills `buf` completely, or returns `None` (the chain is too short).
    pub fn read_exact(&mut self, mem: &GuestMemory, buf: &mut [u8]) -> Option<()> {
        (self.read(mem, buf) == buf.len()).then_some(())
    }

    /// Reads a little-endian `N`-byte value.
    pub fn read_array<const N: usize>(&mut self, mem: &GuestMemory) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        self.read_exact(mem, &mut b)?;
        Some(b)
    }

    /// The next contiguous readable piece (at most `max` bytes), not consumed
    /// until [`Reader::advance`]. `None` at the end of the chain.
    pub fn chunk<'m>(&mut self, mem: &'m GuestMemory, max: usize) -> Option<&'m [u8]> {
        let (addr, n) = self.cur.piece(max)?;
        mem.slice(GuestAddress(addr), n as u64)
    }

    /// Consumes `n` bytes (after a `chunk` of at least that size).
    pub fn advance(&mut self, n: usize) {
        self.cur.advance(n);
    }
}

/// Writes into the device-writable part of a chain as one byte stream and
/// counts what it wrote (the used length).
pub struct Writer<'c> {
    cur: Cursor<'c>,
    written: u32,
}

impl<'c> Writer<'c> {
    pub fn new(chain: &'c DescriptorChain) -> Self {
        Writer { cur: Cursor::new(chain.writable()), written: 0 }
    }

    /// Room left.
    pub fn available(&self) -> u64 {
        self.cur.left
    }

    /// Bytes written so far (fits `u32`: chains are capped at `u32::MAX`).
    pub fn written(&self) -> u32 {
        self.written
    }

    /// Splits off the last `n` bytes of room into a second writer (e.g. a
    /// virtio-blk status byte), leaving `self` with the rest. `None` if the
    /// chain has less than `n` bytes of room.
    pub fn split_tail(&mut self, n: u64) -> Option<Writer<'c>> {
        let keep = self.cur.left.checked_sub(n)?;
        let mut tail = Writer { cur: self.cur, written: 0 };
        tail.cur.advance(usize::try_from(keep).ok()?);
        self.cur.left = keep;
        Some(tail)
    }

    /// Copies as much of `data` as fits; returns how much.
    pub fn write(&mut self, mem: &mut GuestMemory, data: &[u8]) -> usize {
        let mut rest = data;
        while !rest.is_empty() {
            let Some(chunk) = self.chunk_mut(mem, rest.len()) else { break };
            let n = chunk.len();
            // n <= rest.len(): `chunk_mut` caps the piece at `max`.
            let Some((head, tail)) = rest.split_at_checked(n) else { break };
            chunk.copy_from_slice(head);
            self.advance(n);
            rest = tail;
        }
        data.len() - rest.len()
    }

    /// Writes all of `data` or returns `None` (not enough room; a prefix may
    /// have been written).
    pub fn write_all(&mut self, mem: &mut GuestMemory, data: &[u8]) -> Option<()> {
        (self.write(mem, data) == data.len()).then_some(())
    }

    /// The next contiguous writable piece (at most `max` bytes), counted only
    /// after [`Writer::advance`]. `None` when the chain is full.
    pub fn chunk_mut<'m>(&mut self, mem: &'m mut GuestMemory, max: usize) -> Option<&'m mut [u8]> {
        let (addr, n) = self.cur.piece(max)?;
        mem.slice_mut(GuestAddress(addr), n as u64)
    }

    /// Marks `n` bytes of the current chunk as written.
    pub fn advance(&mut self, n: usize) {
        let before = self.cur.left;
        self.cur.advance(n);
        let step = u32::try_from(before - self.cur.left).unwrap_or(u32::MAX);
        self.written = self.written.saturating_add(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::queue::testdriver::*;

    fn setup(bufs: &[(u64, u32, bool)]) -> (GuestMemory, DescriptorChain) {
        let mut mem = GuestMemory::new(1 << 20).expect("mmap");
        let mut q = queue(&mem, 16);
        chain(&mut mem, 16, 0, bufs);
        let c = q.pop(&mem).expect("ok").expect("chain");
        (mem, c)
    }

    #[test]
    fn reads_across_segments() {
        let (mut mem, c) = setup(&[(DATA, 3, false), (DATA + 100, 5, false), (DATA + 200, 4, true)]);
        mem.write_slice(GuestAddress(DATA), b"abc").expect("ram");
        mem.write_slice(GuestAddress(DATA + 100), b"defgh").expect("ram");
        let mut r = Reader::new(&c);
        assert_eq!(r.available(), 8);
        let mut buf = [0u8; 6];
        r.read_exact(&mem, &mut buf).expect("6 bytes");
        assert_eq!(&buf, b"abcdef");
        assert_eq!(r.read(&mem, &mut buf), 2);
        assert_eq!(&buf[..2], b"gh");
        assert!(r.read_array::<1>(&mem).is_none());
    }

    #[test]
    fn writes_across_segments_and_splits_a_status_tail() {
        let (mut mem, c) = setup(&[(DATA, 16, false), (DATA + 100, 4, true), (DATA + 200, 3, true)]);
        let mut w = Writer::new(&c);
        assert_eq!(w.available(), 7);
        let mut status = w.split_tail(1).expect("room");
        assert_eq!(w.available(), 6);
        assert_eq!(w.write(&mut mem, b"0123456789"), 6);
        assert_eq!(w.written(), 6);
        status.write_all(&mut mem, &[7]).expect("status");
        assert!(status.write_all(&mut mem, &[8]).is_none());
        assert_eq!(mem.slice(GuestAddress(DATA + 100), 4), Some(&b"0123"[..]));
        assert_eq!(mem.slice(GuestAddress(DATA + 200), 3), Some(&b"45\x07"[..]));
        assert!(Writer::new(&c).split_tail(8).is_none());
    }

    #[test]
    fn empty_and_zero_length_segments() {
        let (mut mem, c) = setup(&[(DATA, 0, false), (DATA, 2, false), (DATA, 0, true)]);
        let mut r = Reader::new(&c);
        assert_eq!(r.read_array::<2>(&mem), Some([0, 0]));
        let mut w = Writer::new(&c);
        assert_eq!(w.write(&mut mem, b"x"), 0);
        assert!(w.chunk_mut(&mut mem, 10).is_none());
    }
}
