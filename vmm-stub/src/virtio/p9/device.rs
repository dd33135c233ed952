//! virtio-9p (virtio 1.x §5.11) glue: one request queue; each chain carries
//! a 9P request (device-readable) followed by room for the reply
//! (device-writable). The request is copied into a bounce buffer, so the
//! guest cannot change it under the parser, served by [`Server::handle`],
//! and the reply copied back: a copy of at most msize each way, which keeps
//! the server transport-agnostic. A Twrite's data is the exception: nothing
//! parses it, so it goes from guest RAM to the file with one `pwritev`
//! (only its 23-byte head is copied and checked, see `wire::WriteOp`).

use super::wire::{WriteOp, MAX_MSIZE, TWRITE_HEAD};
use super::Server;
use crate::mem::{bytes_of, GuestMemory};
use crate::out::Line;
use crate::sys::io::IoBuf;
use crate::sys::mm::Anon;
use crate::virtio::queue::{DescriptorChain, Queue, QueueError};
use crate::virtio::{id, read_config_bytes, Irq, Reader, VirtioDevice, Writer};
use linker::abi::SHARE_TAG_PREFIX;
use rustix::io::Errno;

/// Feature: config space holds the mount tag.
const F_MOUNT_TAG: u64 = 1;
const QUEUE_SIZE: u16 = 128;
/// Room for the mount tag: "smolvm" + up to 20 digits.
const TAG_MAX: usize = 32;
const MSIZE: usize = MAX_MSIZE as usize;
/// Guest buffers one Twrite's data may span for the `pwritev` (a 256 KiB
/// write is 64-65 pages); more take the copying path.
const MAX_IOV: usize = QUEUE_SIZE as usize;

crate::guest_struct! {
    /// `struct virtio_9p_config` (virtio 1.x §5.11.4): the mount tag is the
    /// first `tag_len` bytes of `tag` (the rest are zeros).
    struct P9Config {
        tag_len: u16,
        tag: [u8; TAG_MAX],
    }
}

pub struct P9Device {
    server: Server,
    config: P9Config,
    /// Request buffer then reply buffer, `MAX_MSIZE` each: an anonymous
    /// mapping (not guest-visible) whose pages cost nothing until used.
    bounce: Anon,
}

impl P9Device {
    /// Share number `index` (mount tag `smolvm<index>`) served by `server`.
    pub fn new(server: Server, index: usize) -> Result<Self, Errno> {
        let mut name = Line::bare();
        name.s(SHARE_TAG_PREFIX).u(index as u64);
        let name = name.as_bytes();
        let mut config = P9Config { tag_len: u16::try_from(name.len()).map_err(|_| Errno::INVAL)?, ..P9Config::default() };
        config.tag.get_mut(..name.len()).ok_or(Errno::INVAL)?.copy_from_slice(name);
        let bounce = Anon::new(2 * MSIZE, 4096)?;
        Ok(Self { server, config, bounce })
    }

    /// Serves one chain; returns the reply length written.
    fn serve(&mut self, mem: &GuestMemory, chain: &DescriptorChain) -> u32 {
        let w = &mut Writer::new(chain);
        if let Some(n) = self.write_direct(mem, chain, w) {
            return n;
        }
        let r = &mut Reader::new(chain);
        // The `else` branches below guard invariants (the bounce buffer is
        // 2 * MSIZE, `got <= want <= MSIZE`, `room <= MSIZE`, `handle`
        // answers inside `reply`): debug builds stop there; a release build
        // returns the chain with nothing written rather than panicking.
        let Some((request, reply)) = self.bounce.bytes_mut().split_first_chunk_mut::<MSIZE>() else {
            debug_assert!(false, "the bounce buffer holds two MSIZE halves");
            return 0;
        };
        // Bytes past msize are never needed: the header check refuses them.
        let want = usize::try_from(r.available()).unwrap_or(MSIZE).min(MSIZE);
        let got = r.read(mem, request.get_mut(..want).unwrap_or_default()); // want <= MSIZE: the min
        let room = usize::try_from(w.available()).unwrap_or(MSIZE).min(MSIZE);
        let (Some(request), Some(reply)) = (request.get(..got), reply.get_mut(..room)) else {
            debug_assert!(false, "got <= want and room <= MSIZE = reply.len()");
            return 0;
        };
        let len = self.server.handle(request, reply);
        let Some(out) = reply.get(..len) else {
            debug_assert!(false, "Server::handle returned more than the reply room");
            return 0;
        };
        w.write(mem, out);
        w.written()
    }

    /// A well-formed Twrite: its data from the guest's buffers to the file
    /// in one `pwritev`, then Rwrite (or Rlerror). `None` before any effect
    /// for anything else (the copying path answers it, errors included).
    fn write_direct(&mut self, mem: &GuestMemory, chain: &DescriptorChain, w: &mut Writer<'_>) -> Option<u32> {
        let mut r = Reader::new(chain);
        let len = r.available();
        let head: [u8; TWRITE_HEAD] = r.read_array(mem)?;
        let op = WriteOp::parse(&head, len, self.server.msize())?;
        let mut data: heapless::Vec<IoBuf<'_>, MAX_IOV> = heapless::Vec::new();
        let mut left = op.count as usize;
        while left > 0 {
            // In the chain: parse checked count <= size <= len.
            let piece = r.chunk(mem, left)?;
            r.advance(piece.len());
            left -= piece.len();
            data.push(piece.io()).ok()?;
        }
        let reply = op.reply(self.server.write_at(op.fid, op.offset, &data));
        drop(data);
        w.write(mem, &reply);
        Some(w.written())
    }
}

impl VirtioDevice for P9Device {
    fn device_id(&self) -> u32 {
        id::P9
    }

    fn features(&self) -> u64 {
        F_MOUNT_TAG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(bytes_of(&self.config), offset, data);
    }

    fn reset(&mut self) {
        self.server.reset();
    }

    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError> {
        let q = queues.get_mut(index).ok_or(QueueError::NotReady)?;
        let mut irq = Irq::NONE;
        while let Some(chain) = q.pop(mem)? {
            let used = self.serve(mem, &chain);
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
    extern crate std;
    use super::super::tests::{frame, TempDir, B};
    use super::super::wire::{msg, NOFID, NOTAG};
    use std::vec::Vec;
    use std::vec;
    use super::*;
    use crate::mem::GuestAddress;
    use crate::virtio::queue::testdriver::*;

    const REQ: u64 = DATA;
    const REPLY: u64 = DATA + 0x40000;

    #[test]
    fn config_space_holds_the_tag() {
        let t = TempDir::new("dev");
        let dev = P9Device::new(Server::new(t.0.as_os_str().as_encoded_bytes(), false).expect("share"), 12).expect("dev");
        let mut cfg = [0xffu8; 12];
        dev.read_config(0, &mut cfg);
        assert_eq!(&cfg, b"\x08\x00smolvm12\0\0");
        assert_eq!((dev.device_id(), dev.features()), (9, 1));
    }

    #[test]
    fn serves_requests_split_across_descriptors() {
        let t = TempDir::new("dev");
        std::fs::write(t.path("f"), "contents").expect("write");
        let mut dev = P9Device::new(Server::new(t.0.as_os_str().as_encoded_bytes(), false).expect("share"), 0).expect("dev");
        let mut mem = GuestMemory::new(1 << 20).expect("ram");
        let mut qs = [queue(&mem, 16)];
        let mut n = 0u16;
        let mut send = |mem: &GuestMemory, qs: &mut [Queue; 1], m: &[u8], split: u32, room: u32| {
            mem.write_slice(GuestAddress(REQ), m).expect("ram");
            let len = u32::try_from(m.len()).expect("small");
            let split = split.min(len - 1);
            let second = REQ + u64::from(split);
            chain(mem, 16, 0, &[(REQ, split, false), (second, len - split, false), (REPLY, room, true)]);
            assert_eq!(dev.process_queue(0, qs, mem).expect("queue ok"), Irq::VRING);
            let (idx, _, used) = used(mem, n);
            n += 1;
            assert_eq!(idx, n);
            mem.to_vec(GuestAddress(REPLY), u64::from(used)).expect("ram")
        };
        let r = send(&mut mem, &mut qs, &frame(msg::TVERSION, 0xffff, &B::default().u32(8192).s(b"9P2000.L").0), 5, 8192);
        assert_eq!(r[4], msg::TVERSION + 1);
        let attach = frame(msg::TATTACH, 1, &B::default().u32(0).u32(NOFID).s(b"").s(b"").u32(0).0);
        assert_eq!(send(&mut mem, &mut qs, &attach, 9, 8192)[4], msg::TATTACH + 1);
        let walk = frame(msg::TWALK, 2, &B::default().u32(0).u32(1).u16(1).s(b"f").0);
        assert_eq!(send(&mut mem, &mut qs, &walk, 100, 8192)[4], msg::TWALK + 1);
        let open = frame(msg::TLOPEN, 3, &B::default().u32(1).u32(0).0);
        assert_eq!(send(&mut mem, &mut qs, &open, 100, 8192)[4], msg::TLOPEN + 1);
        // A reply room smaller than the data asked for: the read is cut to fit.
        let read = frame(msg::TREAD, 4, &B::default().u32(1).u64(0).u32(100).0);
        let r = send(&mut mem, &mut qs, &read, 3, 15);
        assert_eq!((r[4], &r[7..]), (msg::TREAD + 1, &b"\x04\x00\x00\x00cont"[..]));
        // No room at all for a reply: returned with length 0, device still fine.
        assert!(send(&mut mem, &mut qs, &read, 3, 10).is_empty());
        assert_eq!(send(&mut mem, &mut qs, &read, 3, 100)[11..], *b"contents");
    }

    /// A session with fid 1 open on a new file `f`, on a 256-entry queue.
    fn write_session(t: &TempDir) -> (P9Device, GuestMemory, [Queue; 1]) {
        let mut dev = P9Device::new(Server::new(t.0.as_os_str().as_encoded_bytes(), false).expect("share"), 0).expect("dev");
        let mem = GuestMemory::new(1 << 20).expect("ram");
        let mut qs = [queue(&mem, 256)];
        for (i, m) in [
            frame(msg::TVERSION, NOTAG, &B::default().u32(MAX_MSIZE).s(b"9P2000.L").0),
            frame(msg::TATTACH, 1, &B::default().u32(0).u32(NOFID).s(b"").s(b"").u32(0).0),
            frame(msg::TWALK, 2, &B::default().u32(0).u32(1).u16(0).0),
            frame(msg::TLCREATE, 3, &B::default().u32(1).s(b"f").u32(2).u32(0o644).u32(0).0),
        ]
        .iter()
        .enumerate()
        {
            let r = call(&mut dev, &mem, &mut qs, m, &[]);
            assert_eq!(r[4], m[4] + 1, "setup step {i}");
        }
        (dev, mem, qs)
    }

    /// Sends `head` in three descriptors (split inside its fields), then the
    /// `data` pieces (guest address, length), then 64 bytes of reply room.
    fn call(dev: &mut P9Device, mem: &GuestMemory, qs: &mut [Queue; 1], head: &[u8], data: &[(u64, u32)]) -> Vec<u8> {
        mem.write_slice(GuestAddress(REQ), head).expect("ram");
        let n = u32::try_from(head.len()).expect("small");
        let mut bufs = vec![(REQ, n.min(5), false), (REQ + 5, 0, false), (REQ + 5, n.saturating_sub(5), false)];
        bufs.extend(data.iter().map(|&(a, l)| (a, l, false)));
        bufs.push((REPLY, 64, true));
        chain(mem, 256, 0, &bufs);
        let before = used(mem, 0).0;
        assert_eq!(dev.process_queue(0, qs, mem).expect("queue ok"), Irq::VRING);
        let (idx, _, len) = used(mem, before);
        assert_eq!(idx, before.wrapping_add(1));
        mem.to_vec(GuestAddress(REPLY), u64::from(len)).expect("ram")
    }

    fn twrite_head(offset: u64, count: u32, size: u32) -> Vec<u8> {
        let mut m = frame(msg::TWRITE, 7, &B::default().u32(1).u64(offset).u32(count).0);
        m[..4].copy_from_slice(&size.to_le_bytes());
        m
    }

    #[test]
    fn twrite_data_goes_from_guest_buffers_to_the_file_uncopied() {
        let t = TempDir::new("dev-write");
        let (mut dev, mem, mut qs) = write_session(&t);
        let data: Vec<u8> = (0..3000u32).map(|i| u8::try_from(i % 251).expect("byte") | 1).collect();
        // Scattered pieces, one of them empty, as a guest's pinned pages are.
        let pieces = [(DATA + 0x80000, 1000), (DATA + 0x20000, 0), (DATA + 0x48000, 1), (DATA + 0x60000, 1999)];
        let mut at = 0;
        for &(a, l) in &pieces {
            mem.write_slice(GuestAddress(a), &data[at..at + l as usize]).expect("ram");
            at += l as usize;
        }
        let r = call(&mut dev, &mem, &mut qs, &twrite_head(0, 3000, 23 + 3000), &pieces);
        assert_eq!(r, [11, 0, 0, 0, msg::TWRITE + 1, 7, 0, 0xb8, 0x0b, 0, 0]);
        assert_eq!(std::fs::read(t.path("f")).expect("file"), data);
        // (The set-up messages used its first bytes; the data has no zeros.)
        let bounce = &dev.bounce.bytes_mut()[100..3100];
        assert!(bounce.iter().all(|&b| b == 0), "the data never went through the bounce buffer");
        // Bytes after count (inside size) are ignored; at an offset.
        let r = call(&mut dev, &mem, &mut qs, &twrite_head(2999, 1, 23 + 2000), &pieces[2..]);
        assert_eq!(r[7..], [1, 0, 0, 0]);
        assert_eq!(std::fs::read(t.path("f")).expect("file")[2999], data[1000]);
    }

    #[test]
    fn twrite_the_direct_path_refuses_goes_the_copying_way() {
        let t = TempDir::new("dev-write-copy");
        let (mut dev, mem, mut qs) = write_session(&t);
        // 200 one-byte buffers: more than one pwritev takes here.
        let pieces: Vec<(u64, u32)> = (0..200).map(|i| (DATA + 0x50000 + 2 * i, 1)).collect();
        for (i, &(a, _)) in pieces.iter().enumerate() {
            mem.write_slice(GuestAddress(a), &[u8::try_from(i).expect("byte")]).expect("ram");
        }
        let r = call(&mut dev, &mem, &mut qs, &twrite_head(0, 200, 223), &pieces);
        assert_eq!(r[4..], [msg::TWRITE + 1, 7, 0, 200, 0, 0, 0]);
        assert_eq!(dev.bounce.bytes_mut()[23 + 199], 199, "copied");
        let want: Vec<u8> = (0..200u8).collect();
        assert_eq!(std::fs::read(t.path("f")).expect("file"), want);
        // A size past the chain's bytes, a count past the size, a size past
        // msize: Rlerror from the copying path, nothing written.
        for (count, size, errno) in [(100, 123, Errno::PROTO), (101, 123, Errno::PROTO), (10, MAX_MSIZE + 1, Errno::MSGSIZE)] {
            let r = call(&mut dev, &mem, &mut qs, &twrite_head(500, count, size), &pieces[..50]);
            assert_eq!(r[4..], [msg::RLERROR, 7, 0, u8::try_from(errno.raw_os_error()).expect("small"), 0, 0, 0], "count {count} size {size}");
        }
        assert_eq!(std::fs::metadata(t.path("f")).expect("file").len(), 200);
        // An unknown fid.
        let mut m = twrite_head(0, 1, 24);
        m[7] = 9;
        let r = call(&mut dev, &mem, &mut qs, &m, &pieces[..1]);
        assert_eq!(r[4..], [msg::RLERROR, 7, 0, u8::try_from(Errno::BADF.raw_os_error()).expect("small"), 0, 0, 0]);
    }
}
