//! virtio-9p (virtio 1.x §5.11) glue: one request queue; each chain carries
//! a 9P request (device-readable) followed by room for the reply
//! (device-writable). The request is copied into a bounce buffer, served by
//! [`Server::handle`], and the reply copied back: a copy of at most msize
//! each way, which keeps the server transport-agnostic.

use super::wire::MAX_MSIZE;
use super::Server;
use crate::mem::{GuestAddress, GuestMemory};
use crate::virtio::queue::{Queue, QueueError};
use crate::virtio::{id, read_config_bytes, Irq, Reader, VirtioDevice, Writer};
use linker::abi::SHARE_TAG_PREFIX;
use rustix::io::Errno;

/// Feature: config space holds the mount tag.
const F_MOUNT_TAG: u64 = 1;
const QUEUE_SIZE: u16 = 128;
/// `tag_len[2]` + "smolvm" + up to 20 digits.
const CONFIG_MAX: usize = 2 + 32;
const MSIZE: usize = MAX_MSIZE as usize;

pub struct P9Device {
    server: Server,
    config: [u8; CONFIG_MAX],
    config_len: usize,
    /// Request buffer then reply buffer, `MAX_MSIZE` each: an anonymous
    /// mapping (not guest-visible) whose pages cost nothing until used.
    bounce: GuestMemory,
}

impl P9Device {
    /// Share number `index` (mount tag `smolvm<index>`) served by `server`.
    pub fn new(server: Server, index: usize) -> Result<Self, Errno> {
        let mut config = [0u8; CONFIG_MAX];
        let mut len = 2;
        for &b in SHARE_TAG_PREFIX.as_bytes() {
            config[len] = b;
            len += 1;
        }
        let mut digits = [0u8; 20];
        let (mut n, mut d) = (index, digits.len());
        loop {
            d -= 1;
            digits[d] = b'0' + u8::try_from(n % 10).unwrap_or(0);
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let digits = &digits[d..];
        config[len..len + digits.len()].copy_from_slice(digits);
        len += digits.len();
        let tag_len = u16::try_from(len - 2).map_err(|_| Errno::INVAL)?;
        config[..2].copy_from_slice(&tag_len.to_le_bytes());
        let bounce = GuestMemory::new(2 * MAX_MSIZE as u64)?;
        Ok(Self { server, config, config_len: len, bounce })
    }

    /// Serves one chain; returns the reply length written.
    fn serve(&mut self, mem: &mut GuestMemory, r: &mut Reader<'_>, w: &mut Writer<'_>) -> u32 {
        let Some(bufs) = self.bounce.slice_mut(GuestAddress(0), 2 * MAX_MSIZE as u64) else { return 0 };
        let (request, reply) = bufs.split_at_mut(MSIZE);
        // Bytes past msize are never needed: the header check refuses them.
        let want = usize::try_from(r.available()).unwrap_or(MSIZE).min(MSIZE);
        let got = r.read(mem, &mut request[..want]);
        let room = usize::try_from(w.available()).unwrap_or(MSIZE).min(MSIZE);
        let len = self.server.handle(&request[..got], &mut reply[..room]);
        w.write(mem, &reply[..len]);
        w.written()
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
        read_config_bytes(&self.config[..self.config_len], offset, data);
    }

    fn reset(&mut self) {
        self.server.reset();
    }

    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &mut GuestMemory) -> Result<Irq, QueueError> {
        let q = queues.get_mut(index).ok_or(QueueError::NotReady)?;
        let mut irq = Irq::NONE;
        while let Some(chain) = q.pop(mem)? {
            let used = self.serve(mem, &mut Reader::new(&chain), &mut Writer::new(&chain));
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
    use super::super::wire::{msg, NOFID};
    use super::*;
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
        let mut send = |mem: &mut GuestMemory, qs: &mut [Queue; 1], m: &[u8], split: u32, room: u32| {
            mem.write_slice(GuestAddress(REQ), m).expect("ram");
            let len = u32::try_from(m.len()).expect("small");
            let split = split.min(len - 1);
            let second = REQ + u64::from(split);
            chain(mem, 16, 0, &[(REQ, split, false), (second, len - split, false), (REPLY, room, true)]);
            assert_eq!(dev.process_queue(0, qs, mem).expect("queue ok"), Irq::VRING);
            let (idx, _, used) = used(mem, n);
            n += 1;
            assert_eq!(idx, n);
            mem.slice(GuestAddress(REPLY), u64::from(used)).expect("ram").to_vec()
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
}
