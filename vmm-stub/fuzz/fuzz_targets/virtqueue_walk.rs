//! A hostile driver's split virtqueue: the input chooses the queue size and
//! ring addresses, fills the descriptor table, the avail ring and the rest of
//! a small guest RAM, then keeps rewriting guest memory between rounds of
//! `pop` (as a guest running between notifications would). Every chain is
//! consumed through the real `Reader`/`Writer` and returned with `add_used`.
//! Checks: no panic, every popped segment lies inside RAM, readable segments
//! come first, a chain has at most `size` descriptors and at most
//! `u32::MAX` bytes, readers/writers move exactly the chain's bytes, and
//! each round ends (at most `size` chains per avail window).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use vmm_stub::mem::{GuestAddress, GuestMemory};
use vmm_stub::virtio::queue::QUEUE_MAX;
use vmm_stub::virtio::{Queue, Reader, Writer};

/// Guest RAM: small so that fuzzed addresses land inside it often.
const RAM: u64 = 1 << 16;

thread_local! {
    // One mapping reused by every input (zeroed first): no mmap per run.
    static MEM: RefCell<GuestMemory> = RefCell::new(GuestMemory::new(RAM).expect("mmap"));
}

struct In<'a>(&'a [u8]);

impl In<'_> {
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | u16::from(self.u8()) << 8
    }
    /// A guest address: mostly inside RAM, sometimes near or past its end
    /// or near `u64::MAX`.
    fn addr(&mut self) -> u64 {
        let a = u64::from(self.u16());
        match self.u8() % 8 {
            0 => RAM - (a % 64),
            1 => u64::MAX - a,
            2 => a << 16,
            _ => a,
        }
    }
}

/// Copies `src` into RAM at `addr`, clipped to RAM.
fn fill(mem: &mut GuestMemory, addr: u64, src: &[u8]) {
    let Some(room) = RAM.checked_sub(addr) else { return };
    let n = src.len().min(usize::try_from(room).unwrap_or(usize::MAX));
    mem.write_slice(GuestAddress(addr), &src[..n]).expect("clipped to RAM");
}

fuzz_target!(|data: &[u8]| {
    MEM.with(|m| run(&mut m.borrow_mut(), data));
});

fn run(mem: &mut GuestMemory, data: &[u8]) {
    let mut i = In(data);
    mem.range(GuestAddress(0), RAM).expect("ram").fill(0);
    let max_size = [QUEUE_MAX, 128, 16, 1][usize::from(i.u8() % 4)];
    let mut q = Queue::new(max_size);
    q.size = match i.u8() % 4 {
        0 => i.u16(),                 // anything, mostly refused
        s => 1 << (i.u8() % (s * 3)), // powers of two, small ones more often
    };
    q.desc = i.addr();
    q.avail = i.addr();
    q.used = i.addr();
    let size = u64::from(q.size);
    // The tables themselves, then anything else the driver wrote.
    let desc = i.bytes(usize::try_from(16 * size).unwrap_or(0)).to_vec();
    fill(mem, q.desc, &desc);
    let avail = i.bytes(usize::try_from(4 + 2 * size).unwrap_or(0)).to_vec();
    fill(mem, q.avail, &avail);
    if q.validate(mem).is_err() {
        return;
    }
    q.ready = true;
    let rounds = 1 + i.u8() % 4;
    for _ in 0..rounds {
        let mut popped = 0u64;
        loop {
            let chain = match q.pop(mem) {
                Ok(Some(c)) => c,
                Ok(None) | Err(_) => break,
            };
            popped += 1;
            assert!(popped <= size, "more chains than the avail window holds");
            let (rd, wr) = (chain.readable(), chain.writable());
            assert!(rd.len() + wr.len() <= usize::from(q.size), "chain longer than the queue");
            let mut total = 0u64;
            for s in rd.iter().chain(wr) {
                assert!(mem.range(GuestAddress(s.addr), u64::from(s.len)).is_some(), "segment outside RAM");
                total += u64::from(s.len);
            }
            assert!(total <= u64::from(u32::MAX));
            let mut r = Reader::new(&chain);
            let want = r.available();
            assert_eq!(want, rd.iter().map(|s| u64::from(s.len)).sum::<u64>());
            let mut got = 0u64;
            let mut buf = [0u8; 97];
            loop {
                let n = r.read(mem, &mut buf);
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            assert_eq!(got, want, "reader lost bytes");
            let mut w = Writer::new(&chain);
            let room = w.available();
            let tail = u64::from(i.u8() % 4);
            let mut status = w.split_tail(tail);
            assert_eq!(status.is_some(), tail <= room);
            let mut written = 0u64;
            while w.write(mem, b"0123456789abcdef") > 0 {
                written = u64::from(w.written());
            }
            assert_eq!(written, room - if status.is_some() { tail } else { 0 });
            if let Some(s) = status.as_mut() {
                assert_eq!(s.write(mem, &[0xee; 3]) as u64, tail.min(3));
            }
            if i.u8() % 8 == 0 {
                q.unpop(); // handed back untouched: the next pop sees it again
                break;
            }
            let len = u32::try_from(written).unwrap_or(u32::MAX);
            if q.add_used(mem, chain.head, len).is_err() {
                break;
            }
        }
        // The guest runs: it may rewrite anything, rings included.
        for _ in 0..i.u8() % 8 {
            let at = u64::from(i.u16());
            let v = i.u16();
            fill(mem, at, &v.to_le_bytes());
        }
        let _ = q.interrupts_suppressed(mem);
    }
}
