//! virtio-console, single port (virtio 1.x §5.3, no MULTIPORT): the guest
//! sees `/dev/hvcN`. Used for the app's stdout (+ stdin in terminal mode,
//! `abi::slot::CONSOLE_STDIO`) and stderr (`CONSOLE_STDERR`).
//!
//! Output: each transmit chain is written to the host fd straight from
//! guest memory ([`Output`]). Input (terminal mode only): host stdin bytes
//! go into receive chains as they arrive ([`Input`]). With a terminal,
//! VIRTIO_CONSOLE_F_SIZE carries the window size; SIGWINCH updates it.

use super::queue::{Queue, QueueError};
use super::{id, read_config_bytes, Irq, Reader, VirtioDevice, Writer};
use crate::hostio::{self, signals};
use crate::mem::{bytes_of, GuestMemory};
use rustix::fd::BorrowedFd;
use rustix::io::Errno;

crate::guest_struct! {
    /// `struct virtio_console_config` (virtio 1.x §5.3.4), also the
    /// multiport control device's.
    pub struct ConsoleConfig {
        pub cols: u16,
        pub rows: u16,
        pub max_nr_ports: u32,
        pub emerg_wr: u32,
    }
}

/// Transmit (guest → host) queues cost the guest nothing until it writes.
const TX_QUEUE_SIZE: u16 = 64;
/// Linux fills every receive queue with one page buffer per slot when the
/// port appears (virtio_console `fill_queue`: a kmalloc'd page each, ~14 %
/// of the guest's boot work with 64-slot queues everywhere), so receive
/// queues are only as deep as their input needs: terminal input is typed.
pub const INPUT_QUEUE_SIZE: u16 = 16;
/// A receive queue no host data ever goes to (size 1 = 2^0 is valid).
pub const IDLE_QUEUE_SIZE: u16 = 1;
const RX: usize = 0;
const TX: usize = 1;
const F_SIZE: u64 = 1 << 0;
/// Most bytes moved by one host read or write.
const IO_CHUNK: usize = 1 << 16;

/// A host fd the guest writes to. After `EPIPE` (the reader went away) the
/// output is dropped and SIGPIPE is forwarded to the app once, like a
/// native process writing to a closed pipe; other write errors also drop it.
pub struct Output<'f> {
    /// `None`: discard (after an error, or a port nobody listens to).
    fd: Option<BorrowedFd<'f>>,
}

impl<'f> Output<'f> {
    pub fn new(fd: BorrowedFd<'f>) -> Self {
        Output { fd: Some(fd) }
    }

    /// An output that drops everything the guest writes.
    pub fn discard() -> Self {
        Output { fd: None }
    }

    /// Writes every available transmit chain of `q` to the host.
    pub fn drain(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<Irq, QueueError> {
        let mut irq = Irq::NONE;
        while let Some(chain) = q.pop(mem)? {
            let mut r = Reader::new(&chain);
            while let Some(chunk) = r.chunk(mem, IO_CHUNK) {
                let n = chunk.len();
                if let Some(fd) = self.fd {
                    if let Err(e) = hostio::write_all(fd, chunk.io()) {
                        self.fd = None;
                        if e == Errno::PIPE {
                            signals::forward(signals::SIGPIPE);
                        }
                    }
                }
                r.advance(n);
            }
            q.add_used(mem, chain.head, 0)?;
            irq = Irq::VRING;
        }
        Ok(if q.interrupts_suppressed(mem) { Irq::NONE } else { irq })
    }
}

/// A host fd (stdin) read into receive chains only when the guest has
/// posted buffers and the fd has data, so no byte is ever read that the
/// guest has no room for. When it has nothing, the stdin watcher is armed.
pub struct Input<'f> {
    fd: BorrowedFd<'f>,
    eof: bool,
    /// Head indexes (< 64) of the receive buffers the driver has posted:
    /// Linux recycles the same buffers, so this counts what it holds when
    /// we have none.
    heads_seen: u64,
}

impl<'f> Input<'f> {
    pub fn new(fd: BorrowedFd<'f>) -> Self {
        Input { fd, eof: false, heads_seen: 0 }
    }

    /// Whether stdin ended (read returned 0 or failed).
    pub fn eof(&self) -> bool {
        self.eof
    }

    /// Moves available host bytes into `q`'s chains. Never returns a chain
    /// with zero bytes (a generic port would read that as end of file).
    ///
    /// With `VIRTIO_F_EVENT_IDX`, once every buffer is filled the driver is
    /// asked to notify only after it has reposted half of the buffers it
    /// holds: one exit per half ring of stdin instead of one per buffer,
    /// and the guest still has the other half to read meanwhile.
    pub fn fill(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<Irq, QueueError> {
        let mut irq = Irq::NONE;
        while !self.eof && q.has_available(mem)? {
            if !hostio::readable(self.fd) {
                hostio::stdin_watch::arm();
                break;
            }
            let Some(chain) = q.pop(mem)? else { break };
            self.heads_seen |= 1u64.checked_shl(u32::from(chain.head)).unwrap_or(0);
            let mut w = Writer::new(&chain);
            if let Some(buf) = w.chunk(mem, IO_CHUNK) {
                match crate::sys::io::read(self.fd, buf.io_mut()) {
                    Ok(0) => self.eof = true,
                    Ok(n) => w.advance(n),
                    Err(Errno::INTR | Errno::AGAIN) => {}
                    Err(_) => self.eof = true,
                }
            }
            if w.written() == 0 {
                q.unpop();
                if !self.eof {
                    hostio::stdin_watch::arm();
                }
                break;
            }
            q.add_used(mem, chain.head, w.written())?;
            irq = Irq::VRING;
        }
        if irq != Irq::NONE && !self.eof && !q.has_available(mem)? {
            let held = u16::try_from(self.heads_seen.count_ones()).unwrap_or(1);
            q.notify_after(mem, held / 2)?;
        }
        Ok(if q.interrupts_suppressed(mem) { Irq::NONE } else { irq })
    }
}

/// A single-port console: output to a host fd, optional input.
pub struct Console<'f> {
    out: Output<'f>,
    input: Option<Input<'f>>,
    /// Terminal size `(rows, cols)` when the console is a terminal.
    size: Option<(u16, u16)>,
    /// Receive and transmit queue sizes.
    sizes: [u16; 2],
}

impl<'f> Console<'f> {
    /// `input`: host stdin in terminal mode; `size`: the terminal's
    /// `(rows, cols)` (offers VIRTIO_CONSOLE_F_SIZE and follows SIGWINCH).
    pub fn new(out: BorrowedFd<'f>, input: Option<BorrowedFd<'f>>, size: Option<(u16, u16)>) -> Self {
        let rx = if input.is_some() { INPUT_QUEUE_SIZE } else { IDLE_QUEUE_SIZE };
        Console { out: Output::new(out), input: input.map(Input::new), size, sizes: [rx, TX_QUEUE_SIZE] }
    }

    fn pump(&mut self, queues: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError> {
        let [rx, tx, ..] = queues else { return Err(QueueError::NotReady) };
        let mut irq = self.out.drain(tx, mem)?;
        if let Some(input) = &mut self.input {
            irq |= input.fill(rx, mem)?;
        }
        Ok(irq)
    }
}

impl VirtioDevice for Console<'_> {
    fn device_id(&self) -> u32 {
        id::CONSOLE
    }

    fn features(&self) -> u64 {
        if self.size.is_some() { F_SIZE } else { 0 }
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let (rows, cols) = self.size.unwrap_or((0, 0));
        let cfg = ConsoleConfig { cols, rows, ..ConsoleConfig::default() };
        read_config_bytes(bytes_of(&cfg), offset, data);
    }

    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError> {
        match index {
            RX | TX => self.pump(queues, mem),
            _ => Ok(Irq::NONE),
        }
    }

    fn poll_host(&mut self, queues: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError> {
        let mut irq = Irq::NONE;
        if self.size.is_some() && signals::take_winch() {
            if let Some(ws) = hostio::tty::window_size() {
                self.size = Some(ws);
                irq |= Irq::CONFIG;
            }
        }
        Ok(irq | self.pump(queues, mem)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::GuestAddress;
    use crate::virtio::mmio::tests::Driver;
    use crate::virtio::queue::testdriver::*;
    use crate::virtio::F_VERSION_1;
    use std::os::fd::AsFd;

    /// Queue `i` of a `Driver::init`ed device has its rings at `+ i * 1 MiB`.
    const Q1: u64 = 0x10_0000;

    fn rx_buffers(mem: &GuestMemory, n: u16, len: u32) {
        for i in 0..n {
            chain(mem, INPUT_QUEUE_SIZE, i, &[(DATA + u64::from(i) * 0x1000, len, true)]);
        }
    }

    #[test]
    fn guest_output_reaches_the_host_fd() {
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        let mem = GuestMemory::new(4 << 20).expect("mmap");
        let mut dev = Console::new(w.as_fd(), None, None);
        let mut d = Driver::new(&mut dev, &mem);
        d.init(F_VERSION_1, &[(0, IDLE_QUEUE_SIZE), (1, TX_QUEUE_SIZE)]);
        d.mem.write_slice(GuestAddress(DATA), b"hello, ").expect("ram");
        d.mem.write_slice(GuestAddress(DATA + 100), b"world\n").expect("ram");
        // Chain on queue 1 (rings shifted by Q1; descriptors point at DATA).
        for (i, (addr, len)) in [(DATA, 7u32), (DATA + 100, 6)].into_iter().enumerate() {
            let k = i as u16;
            let dsc = DESC + Q1 + 16 * u64::from(k);
            d.mem.write_obj(GuestAddress(dsc), addr).expect("ram");
            d.mem.write_obj(GuestAddress(dsc + 8), len).expect("ram");
            d.mem.write_obj(GuestAddress(dsc + 12), if i == 0 { 1u16 } else { 0 }).expect("ram");
            d.mem.write_obj(GuestAddress(dsc + 14), k + 1).expect("ram");
        }
        d.mem.write_obj(GuestAddress(AVAIL + Q1 + 4), 0u16).expect("ram");
        d.mem.write_obj(GuestAddress(AVAIL + Q1 + 2), 1u16).expect("ram");
        d.w(0x50, 1);
        let mut buf = [0u8; 64];
        let n = rustix::io::read(&r, &mut buf).expect("read");
        assert_eq!(&buf[..n], b"hello, world\n");
        assert_eq!(d.mem.read_obj::<u16>(GuestAddress(USED + Q1 + 2)), Some(1));
    }

    #[test]
    fn output_to_a_closed_pipe_is_dropped_and_sigpipe_forwarded() {
        let _g = signals::TEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        while signals::take_pending().is_some() {}
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        drop(r);
        let mem = GuestMemory::new(1 << 20).expect("mmap");
        let mut q = queue(&mem, 16);
        let mut out = Output::new(w.as_fd());
        for _ in 0..3 {
            chain(&mem, 16, 0, &[(DATA, 10, false)]);
            assert_eq!(out.drain(&mut q, &mem), Ok(Irq::VRING));
        }
        assert!(out.fd.is_none());
        assert_eq!(used(&mem, 2).0, 3);
        assert_eq!(signals::take_pending(), Some(13));
    }

    #[test]
    fn input_fills_buffers_as_data_arrives_and_stops_at_eof() {
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        let mem = GuestMemory::new(1 << 20).expect("mmap");
        let mut q = queue(&mem, 16);
        let mut input = Input::new(r.as_fd());
        // No buffers: nothing read even if data is there.
        hostio::write_all(w.as_fd(), crate::sys::io::IoBuf::from(&b"abc"[..])).expect("write");
        assert_eq!(input.fill(&mut q, &mem), Ok(Irq::NONE));
        assert!(hostio::readable(r.as_fd()));
        rx_buffers(&mem, 16, 2);
        assert_eq!(input.fill(&mut q, &mem), Ok(Irq::VRING));
        assert_eq!(used(&mem, 0), (2, 0, 2));
        assert_eq!(used(&mem, 1), (2, 1, 1));
        assert_eq!(mem.to_vec(GuestAddress(DATA), 2).as_deref(), Some(&b"ab"[..]));
        assert_eq!(mem.to_vec(GuestAddress(DATA + 0x1000), 1).as_deref(), Some(&b"c"[..]));
        // Nothing readable: no empty buffer is returned.
        assert_eq!(input.fill(&mut q, &mem), Ok(Irq::NONE));
        assert_eq!(used(&mem, 0).0, 2);
        drop(w);
        assert_eq!(input.fill(&mut q, &mem), Ok(Irq::NONE));
        assert!(input.eof());
        assert_eq!(used(&mem, 0).0, 2);
    }

    #[test]
    fn offers_size_only_with_a_terminal() {
        let (_r, w) = rustix::pipe::pipe().expect("pipe");
        let c = Console::new(w.as_fd(), None, Some((40, 120)));
        assert_eq!(c.features(), F_SIZE);
        let mut cfg = [0u8; 4];
        c.read_config(0, &mut cfg);
        assert_eq!(cfg, [120, 0, 40, 0]);
        assert_eq!(Console::new(w.as_fd(), None, None).features(), 0);
    }
}
