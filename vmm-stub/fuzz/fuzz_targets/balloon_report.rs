//! virtio-balloon free page reports from a hostile driver, through the real
//! queue, chain and `balloon::Balloon` code, on a real anonymous mapping
//! (so `madvise(MADV_DONTNEED)` really runs). The input builds up to 8
//! chains on the inflate, deflate or reporting queue, each of up to 6
//! buffers with hostile addresses (unaligned, past the end of RAM, wrapping),
//! lengths and directions. A model predicts every byte of guest RAM:
//! - never a panic; a chain with a buffer outside RAM (or a misordered one)
//!   is a queue error, every other chain is answered with used length 0;
//! - exactly the device-writable, page-aligned, non-empty ranges inside RAM
//!   of report chains read as zeros after; every other byte keeps its value
//!   (the rings, which the model sets aside, excepted).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use vmm_stub::mem::{GuestAddress, GuestMemory};
use vmm_stub::virtio::balloon::{Balloon, REPORTING_QUEUE};
use vmm_stub::virtio::queue::testdriver::{self, publish, set_desc, F_NEXT, F_WRITE, USED};
use vmm_stub::virtio::queue::Queue;
use vmm_stub::virtio::VirtioDevice;

const PAGE: u64 = 4096;
/// 64 pages of RAM; the rings live in pages 1..4 (testdriver), the rest is "free" data.
const RAM: u64 = 64 * PAGE;
const DATA: u64 = 4 * PAGE;
const QSIZE: u16 = 32;

thread_local! {
    static MEM: RefCell<GuestMemory> = RefCell::new(GuestMemory::new(RAM).expect("mmap"));
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

fn fill(mem: &GuestMemory) {
    let data: Vec<u8> = (0..RAM - DATA).map(|k| (k as u8).wrapping_mul(13) | 1).collect(); // never zero
    mem.write_slice(GuestAddress(DATA), &data).expect("ram");
}

fuzz_target!(|data: &[u8]| {
    MEM.with(|m| run(&mut m.borrow_mut(), data));
});

fn run(mem: &mut GuestMemory, data: &[u8]) {
    let mut i = In(data);
    mem.range(GuestAddress(0), DATA).expect("ram").fill(0);
    fill(mem);
    let mut model = mem.to_vec(GuestAddress(DATA), RAM - DATA).expect("ram");
    let mut dev = Balloon::new();
    // One set of rings, handed to whichever queue the input notifies.
    let mut q = testdriver::queue(mem, QSIZE);
    for n in 1..=8u16 {
        if i.0.is_empty() {
            break;
        }
        let which = usize::from(i.u8() % 3);
        let mut bufs = Vec::new();
        let mut ok = true;
        let mut seen_write = false;
        for _ in 0..=i.u8() % 6 {
            let shape = i.u8();
            let addr = match shape % 4 {
                0 => DATA + u64::from(i.u8() % 60) * PAGE,
                1 => u64::from(i.u16()) * 16,
                2 => u64::MAX - u64::from(i.u16()),
                _ => RAM - PAGE * u64::from(i.u8() % 3),
            };
            let len = match (shape >> 2) % 4 {
                0 => u32::from(i.u8() % 5) * PAGE as u32,
                1 => u32::from(i.u16()),
                2 => 0,
                _ => u32::MAX - u32::from(i.u8()),
            };
            let write = shape & 0x40 == 0;
            let inside = addr.checked_add(u64::from(len)).is_some_and(|e| e <= RAM);
            ok &= inside && (write || !seen_write);
            seen_write |= write;
            bufs.push((addr, len, write));
        }
        let first = (n - 1) * 6 % (QSIZE - 6);
        for (k, &(addr, len, write)) in bufs.iter().enumerate() {
            let d = first + k as u16;
            let more = k + 1 < bufs.len();
            set_desc(mem, d, addr, len, if write { F_WRITE } else { 0 } | if more { F_NEXT } else { 0 }, d + 1);
        }
        publish(mem, QSIZE, first);
        let mut qs = [Queue::new(QSIZE); 3];
        qs[which] = q;
        let res = dev.process_queue(which, &mut qs, mem);
        q = qs[which];
        // A report of the driver's own ring pages zeroes them: the queue is then
        // whatever zeros mean (a refused jump, or nothing more to do).
        let gives = |&(addr, len, write): &(u64, u32, bool)| {
            write && addr % PAGE == 0 && u64::from(len) % PAGE == 0 && len > 0
        };
        let rings_gone = which == REPORTING_QUEUE && ok && bufs.iter().any(|b| gives(b) && b.0 < DATA);
        if !ok {
            assert!(res.is_err(), "malformed chain accepted: {bufs:x?}");
            let now = mem.to_vec(GuestAddress(DATA), RAM - DATA).expect("ram");
            assert!(now == &model[..], "a refused chain changed guest RAM: {bufs:x?}");
            return; // the transport would now mark the device NEEDS_RESET
        }
        if !rings_gone {
            assert!(res.is_ok(), "well-formed chain refused: {res:?} {bufs:x?}");
            assert_eq!(mem.read_obj::<u16>(GuestAddress(USED + 2)), Some(n), "every chain answered");
            let e = USED + 4 + 8 * u64::from((n - 1) % QSIZE);
            assert_eq!(mem.read_obj::<u32>(GuestAddress(e + 4)), Some(0), "used length 0");
        }
        if which == REPORTING_QUEUE {
            for b in bufs.iter().filter(|b| gives(b)) {
                // Pages below DATA (the rings) are the driver's business.
                for a in (b.0.max(DATA)..b.0 + u64::from(b.1)).map(|a| (a - DATA) as usize) {
                    model[a] = 0;
                }
            }
        }
        let now = mem.to_vec(GuestAddress(DATA), RAM - DATA).expect("ram");
        assert!(now == &model[..], "guest RAM differs from the model after chain {n}: {bufs:x?}");
        if rings_gone {
            return; // the driver gave its own rings away: they read as zeros now
        }
    }
}
