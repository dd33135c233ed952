//! The control device (`abi::slot::CONSOLE_CONTROL`): a virtio-console with
//! VIRTIO_CONSOLE_F_MULTIPORT and four generic ports (no tty layer, binary
//! safe), found by init as `/dev/vport2p1` … `/dev/vport2p4`
//! (`abi::GUEST_CONTROL_TTY`, `abi::GUEST_STDIN_PORT`, `GUEST_STDOUT_PORT`,
//! `GUEST_STDERR_PORT`), or by name under `/sys/class/virtio-ports/*/name`.
//! Port 0 is never added: QEMU reserves it for consoles, and keeping 1..4
//! lets a QEMU `virtserialport` setup mirror the same guest paths.
//!
//! - port 1, [`CONTROL_PORT_NAME`]: host → init, one byte per signal
//!   (`1..=abi::CONTROL_MAX_SIGNAL`) for init to send to the app.
//! - port 2, [`STDIN_PORT_NAME`]: the app's stdin when the stub is not in
//!   terminal mode. When host stdin ends, the host "disconnects" the port
//!   (VIRTIO_CONSOLE_PORT_OPEN value 0) after the last byte: Linux then
//!   returns end-of-file from `read` once the data is consumed, so the app
//!   sees EOF exactly where host stdin ended (`cat` terminates).
//! - ports 3 and 4, [`STDOUT_PORT_NAME`] and [`STDERR_PORT_NAME`]: the app's
//!   stdout and stderr when not in terminal mode (so they are not ttys in
//!   the guest); written to host fds 1 and 2 (dropped in terminal mode).
//!
//! Host data is sent to a port only after the guest opened it (Linux drops
//! data for unopened generic ports): stdin is not read before the app's
//! side opens the port, and signals stay pending until init listens.
//!
//! Control protocol (virtio 1.x §5.3.6.2): guest DEVICE_READY → host
//! PORT_ADD for each port; guest PORT_READY → host PORT_NAME + PORT_OPEN;
//! guest PORT_OPEN tracks whether the guest has the port open.

use super::console::{ConsoleConfig, Input, Output};
use super::queue::{Queue, QueueError};
use super::{id, read_config_bytes, Irq, Reader, VirtioDevice, Writer, F_EVENT_IDX};
use crate::hostio::signals;
use crate::mem::{bytes_of, GuestMemory};
use linker::abi::CONTROL_MAX_SIGNAL;
use rustix::fd::BorrowedFd;

pub const CONTROL_PORT_NAME: &str = "smolvm.control";
pub const STDIN_PORT_NAME: &str = "smolvm.stdin";
pub const STDOUT_PORT_NAME: &str = "smolvm.stdout";
pub const STDERR_PORT_NAME: &str = "smolvm.stderr";

const F_MULTIPORT: u64 = 1 << 1;
/// `max_nr_ports`: ports 0 (unused) and 1..=4.
const PORTS: u32 = 5;
const CONTROL_PORT: usize = 1;
const STDIN_PORT: usize = 2;
const STDOUT_PORT: usize = 3;
const STDERR_PORT: usize = 4;
const PORT_NAMES: [&str; PORTS as usize] = ["", CONTROL_PORT_NAME, STDIN_PORT_NAME, STDOUT_PORT_NAME, STDERR_PORT_NAME];

// Queue layout for MULTIPORT (Linux init_vqs): port 0 rx/tx, control
// rx/tx, then port n rx/tx at 2 + 2n / 3 + 2n.
const Q_PORT0_TX: usize = 1;
const Q_CTRL_IN: usize = 2; // host → guest control messages
const Q_CTRL_OUT: usize = 3; // guest → host control messages
const Q_CONTROL_RX: usize = 4;
const Q_CONTROL_TX: usize = 5;
const Q_STDIN_RX: usize = 6;
const Q_STDIN_TX: usize = 7;
const Q_STDOUT_TX: usize = 3 + 2 * STDOUT_PORT;
const Q_STDERR_TX: usize = 3 + 2 * STDERR_PORT;
/// Receive queues are as deep as their input needs (Linux fills each with a
/// page per slot when the port appears, see `console::INPUT_QUEUE_SIZE`):
/// control messages come a dozen at a time, signals one byte at a time,
/// stdin in bulk; port 0 is never added, and only stdout/stderr transmit.
const QUEUE_SIZES: [u16; 12] = [1, 1, 16, 16, 4, 1, 32, 1, 1, 64, 1, 64];

mod event {
    pub const DEVICE_READY: u16 = 0;
    pub const PORT_ADD: u16 = 1;
    pub const PORT_READY: u16 = 3;
    pub const PORT_OPEN: u16 = 6;
    pub const PORT_NAME: u16 = 7;
}

crate::guest_struct! {
    /// `struct virtio_console_control` (virtio 1.x §5.3.6.2).
    struct Msg {
        id: u32,
        event: u16,
        value: u16,
    }
}

impl Msg {
    fn parse(b: [u8; 8]) -> Msg {
        let [i0, i1, i2, i3, e0, e1, v0, v1] = b;
        Msg { id: u32::from_le_bytes([i0, i1, i2, i3]), event: u16::from_le_bytes([e0, e1]), value: u16::from_le_bytes([v0, v1]) }
    }
}

pub struct Control<'f> {
    /// Host stdin (absent in terminal mode: stdin then goes to hvc0).
    stdin: Option<Input<'f>>,
    guest_open: [bool; PORTS as usize],
    eof_sent: bool,
    outbox: heapless::Deque<Msg, 16>,
    /// Guest writes to the control and stdin ports go nowhere.
    sink: Output<'f>,
    stdout: Output<'f>,
    stderr: Output<'f>,
}

impl<'f> Control<'f> {
    /// `stdio`: host stdin, stdout and stderr to serve on ports 2, 3 and 4
    /// (`None` in terminal mode: the stdin port then reads as end-of-file
    /// and output to the other two is dropped).
    pub fn new(stdio: Option<[BorrowedFd<'f>; 3]>) -> Self {
        let output = |i: usize| stdio.map_or_else(Output::discard, |fds| Output::new(fds[i]));
        Control {
            stdin: stdio.map(|fds| Input::new(fds[0])),
            guest_open: [false; PORTS as usize],
            eof_sent: false,
            outbox: heapless::Deque::new(),
            sink: Output::discard(),
            stdout: output(1),
            stderr: output(2),
        }
    }

    fn send(&mut self, id: usize, event: u16, value: u16) {
        let id = u32::try_from(id).unwrap_or(u32::MAX);
        let _ = self.outbox.push_back(Msg { id, event, value }); // full: a hostile guest's flood
    }

    fn stdin_connected(&self) -> bool {
        self.stdin.as_ref().is_some_and(|i| !i.eof())
    }

    fn on_guest_msg(&mut self, m: Msg) {
        let port = usize::try_from(m.id).ok().filter(|p| (CONTROL_PORT..=STDERR_PORT).contains(p));
        match (m.event, port) {
            (event::DEVICE_READY, _) if m.value == 1 => {
                for p in CONTROL_PORT..=STDERR_PORT {
                    self.send(p, event::PORT_ADD, 0);
                }
            }
            (event::PORT_READY, Some(p)) if m.value == 1 => {
                self.send(p, event::PORT_NAME, 0);
                // Output ports are always connected (Linux blocks writes to a
                // port the host has not opened).
                let connected = p != STDIN_PORT || self.stdin_connected();
                self.send(p, event::PORT_OPEN, u16::from(connected));
            }
            (event::PORT_OPEN, Some(p)) => {
                self.guest_open[p] = m.value == 1;
                if p == CONTROL_PORT {
                    signals::set_listening(m.value == 1);
                }
            }
            _ => {}
        }
    }

    fn read_guest_msgs(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<Irq, QueueError> {
        let mut irq = Irq::NONE;
        while let Some(chain) = q.pop(mem)? {
            if let Some(b) = Reader::new(&chain).read_array::<8>(mem) {
                self.on_guest_msg(Msg::parse(b));
            }
            q.add_used(mem, chain.head, 0)?;
            irq = Irq::VRING;
        }
        Ok(irq)
    }

    fn flush_outbox(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<Irq, QueueError> {
        let mut irq = Irq::NONE;
        while let Some(&m) = self.outbox.front() {
            let Some(chain) = q.pop(mem)? else { break };
            self.outbox.pop_front();
            let mut w = Writer::new(&chain);
            w.write(mem, bytes_of(&m));
            if m.event == event::PORT_NAME {
                let name = usize::try_from(m.id).ok().and_then(|id| PORT_NAMES.get(id)).copied().unwrap_or("");
                w.write(mem, name.as_bytes());
            }
            q.add_used(mem, chain.head, w.written())?;
            irq = Irq::VRING;
        }
        Ok(irq)
    }

    fn deliver_signals(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<Irq, QueueError> {
        let mut irq = Irq::NONE;
        while self.guest_open[CONTROL_PORT] && signals::has_pending() && q.has_available(mem)? {
            let Some(chain) = q.pop(mem)? else { break };
            let mut w = Writer::new(&chain);
            if w.available() == 0 {
                q.add_used(mem, chain.head, 0)?; // cannot carry a byte: skip it
                continue;
            }
            let Some(sig) = signals::take_pending() else {
                q.unpop();
                break;
            };
            if sig <= CONTROL_MAX_SIGNAL {
                w.write(mem, &[sig]);
            }
            q.add_used(mem, chain.head, w.written())?;
            irq = Irq::VRING;
        }
        Ok(irq)
    }

    fn pump(&mut self, queues: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError> {
        // An array: the Q_* indices below are checked at compile time.
        let Some(queues) = queues.first_chunk_mut::<{ QUEUE_SIZES.len() }>() else {
            return Err(QueueError::NotReady);
        };
        let mut irq = self.read_guest_msgs(&mut queues[Q_CTRL_OUT], mem)?;
        irq |= self.sink.drain(&mut queues[Q_PORT0_TX], mem)?;
        irq |= self.sink.drain(&mut queues[Q_CONTROL_TX], mem)?;
        irq |= self.sink.drain(&mut queues[Q_STDIN_TX], mem)?;
        irq |= self.stdout.drain(&mut queues[Q_STDOUT_TX], mem)?;
        irq |= self.stderr.drain(&mut queues[Q_STDERR_TX], mem)?;
        irq |= self.deliver_signals(&mut queues[Q_CONTROL_RX], mem)?;
        if self.guest_open[STDIN_PORT] {
            if let Some(input) = &mut self.stdin {
                irq |= input.fill(&mut queues[Q_STDIN_RX], mem)?;
            }
        }
        if self.stdin.as_ref().is_some_and(|i| i.eof()) && !self.eof_sent {
            // After the last data buffer went to the used ring: the guest
            // reads all data before it sees the disconnect.
            self.eof_sent = true;
            self.send(STDIN_PORT, event::PORT_OPEN, 0);
        }
        irq |= self.flush_outbox(&mut queues[Q_CTRL_IN], mem)?;
        Ok(irq)
    }
}

impl VirtioDevice for Control<'_> {
    fn device_id(&self) -> u32 {
        id::CONSOLE
    }

    fn features(&self) -> u64 {
        // EVENT_IDX: stdin batches its notifications (`Input::fill`); every
        // other queue here takes all it is given, so `add_used`'s default
        // (notify on the next buffer) serves it.
        F_MULTIPORT | F_EVENT_IDX
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let cfg = ConsoleConfig { max_nr_ports: PORTS, ..ConsoleConfig::default() };
        read_config_bytes(bytes_of(&cfg), offset, data);
    }

    fn reset(&mut self) {
        signals::set_listening(false);
        self.guest_open = [false; PORTS as usize];
        self.eof_sent = false;
        self.outbox.clear();
    }

    fn process_queue(&mut self, _index: usize, queues: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError> {
        self.pump(queues, mem)
    }

    fn poll_host(&mut self, queues: &mut [Queue], mem: &GuestMemory) -> Result<Irq, QueueError> {
        self.pump(queues, mem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostio;
    use crate::mem::GuestAddress;
    use crate::virtio::mmio::tests::Driver;
    use crate::virtio::F_VERSION_1;
    use std::os::fd::AsFd;

    const MB: u64 = 0x10_0000;
    const DESC: u64 = 0x1000;
    const AVAIL: u64 = 0x2000;
    const USED: u64 = 0x3000;

    /// A minimal Linux-like driver side for queue `q` (rings at `q` MiB).
    struct Ring {
        q: u64,
        size: u16,
        next: u16,
        seen: u16,
    }

    impl Ring {
        fn new(q: usize) -> Ring {
            Ring { q: q as u64 * MB, size: QUEUE_SIZES[q], next: 0, seen: 0 }
        }
        fn buf_addr(&self, i: u16) -> u64 {
            self.q + 0x8_0000 + u64::from(i) * 0x1000
        }
        /// Posts one buffer (device-writable or readable) with `data`.
        fn post(&mut self, mem: &GuestMemory, data: &[u8], len: u32, writable: bool) {
            let i = self.next % self.size;
            let addr = self.buf_addr(i);
            mem.write_slice(GuestAddress(addr), data).expect("ram");
            let d = self.q + DESC + 16 * u64::from(i);
            mem.write_obj(GuestAddress(d), addr).expect("ram");
            mem.write_obj(GuestAddress(d + 8), len).expect("ram");
            mem.write_obj(GuestAddress(d + 12), if writable { 2u16 } else { 0 }).expect("ram");
            mem.write_obj(GuestAddress(self.q + AVAIL + 4 + 2 * u64::from(i)), i).expect("ram");
            self.next = self.next.wrapping_add(1);
            mem.write_obj(GuestAddress(self.q + AVAIL + 2), self.next).expect("ram");
        }
        /// Takes the used buffers the device returned since last time.
        fn used(&mut self, mem: &GuestMemory) -> Vec<Vec<u8>> {
            let idx: u16 = mem.read_obj(GuestAddress(self.q + USED + 2)).expect("ram");
            let mut out = Vec::new();
            while self.seen != idx {
                let e = self.q + USED + 4 + 8 * u64::from(self.seen % self.size);
                let id: u32 = mem.read_obj(GuestAddress(e)).expect("ram");
                let len: u32 = mem.read_obj(GuestAddress(e + 4)).expect("ram");
                let addr = self.buf_addr(u16::try_from(id).expect("id"));
                out.push(mem.to_vec(GuestAddress(addr), u64::from(len)).expect("ram"));
                self.seen = self.seen.wrapping_add(1);
            }
            out
        }
    }

    fn msg(id: u32, event: u16, value: u16) -> [u8; 8] {
        bytes_of(&Msg { id, event, value }).try_into().expect("8 bytes")
    }

    #[test]
    fn handshake_then_stdin_data_then_eof() {
        let _g = signals::TEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        while signals::take_pending().is_some() {}
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        let mem = GuestMemory::new(16 << 20).expect("mmap");
        let (out_r, out_w) = rustix::pipe::pipe().expect("pipe");
        let (err_r, err_w) = rustix::pipe::pipe().expect("pipe");
        let mut dev = Control::new(Some([r.as_fd(), out_w.as_fd(), err_w.as_fd()]));
        let mut d = Driver::new(&mut dev, &mem);
        let qs: Vec<(u32, u16)> = (0..12).map(|i| (i, QUEUE_SIZES[i as usize])).collect();
        d.init(F_VERSION_1 | F_MULTIPORT, &qs);
        let (mut cin, mut cout) = (Ring::new(Q_CTRL_IN), Ring::new(Q_CTRL_OUT));
        let (mut sigq, mut stdin) = (Ring::new(Q_CONTROL_RX), Ring::new(Q_STDIN_RX));
        for _ in 0..8 {
            cin.post(d.mem, &[], 4096, true);
        }
        d.w(0x50, Q_CTRL_IN as u32);
        // Linux: DEVICE_READY, then PORT_READY for each added port.
        cout.post(d.mem, &msg(u32::MAX, event::DEVICE_READY, 1), 8, false);
        d.w(0x50, Q_CTRL_OUT as u32);
        let got = cin.used(d.mem);
        let added: Vec<Vec<u8>> = (1..=4).map(|p| msg(p, event::PORT_ADD, 0).to_vec()).collect();
        assert_eq!(got, added);
        cout.post(d.mem, &msg(2, event::PORT_READY, 1), 8, false);
        d.w(0x50, Q_CTRL_OUT as u32);
        let got = cin.used(d.mem);
        let mut name = msg(2, event::PORT_NAME, 0).to_vec();
        name.extend_from_slice(STDIN_PORT_NAME.as_bytes());
        assert_eq!(got, vec![name, msg(2, event::PORT_OPEN, 1).to_vec()]);

        // Data before the guest opens the port is not read.
        hostio::write_all(w.as_fd(), crate::sys::io::IoBuf::from(&b"hi\n"[..])).expect("write");
        for _ in 0..4 {
            stdin.post(d.mem, &[], 4096, true);
        }
        d.w(0x50, Q_STDIN_RX as u32);
        assert!(stdin.used(d.mem).is_empty());
        cout.post(d.mem, &msg(2, event::PORT_OPEN, 1), 8, false);
        d.w(0x50, Q_CTRL_OUT as u32);
        assert_eq!(stdin.used(d.mem), vec![b"hi\n".to_vec()]);
        // EOF: the disconnect comes after the data.
        drop(w);
        d.poll();
        assert!(stdin.used(d.mem).is_empty());
        assert_eq!(cin.used(d.mem), vec![msg(2, event::PORT_OPEN, 0).to_vec()]);

        // Signals wait until init opens the control port, one byte each.
        signals::forward(signals::SIGTERM);
        sigq.post(d.mem, &[], 4096, true);
        d.poll();
        assert!(sigq.used(d.mem).is_empty());
        cout.post(d.mem, &msg(1, event::PORT_OPEN, 1), 8, false);
        d.w(0x50, Q_CTRL_OUT as u32);
        assert_eq!(sigq.used(d.mem), vec![vec![15u8]]);
        assert!(!signals::has_pending());

        // The output ports are connected at once and reach host fds 1 and 2.
        for (port, name, q, fd, data) in
            [(3, STDOUT_PORT_NAME, Q_STDOUT_TX, &out_r, &b"out\n"[..]), (4, STDERR_PORT_NAME, Q_STDERR_TX, &err_r, b"err\0\xff")]
        {
            cin.post(d.mem, &[], 4096, true);
            cin.post(d.mem, &[], 4096, true);
            cout.post(d.mem, &msg(port, event::PORT_READY, 1), 8, false);
            d.w(0x50, Q_CTRL_OUT as u32);
            let mut named = msg(port, event::PORT_NAME, 0).to_vec();
            named.extend_from_slice(name.as_bytes());
            assert_eq!(cin.used(d.mem), vec![named, msg(port, event::PORT_OPEN, 1).to_vec()]);
            let mut tx = Ring::new(q);
            tx.post(d.mem, data, u32::try_from(data.len()).expect("len"), false);
            d.w(0x50, q as u32);
            assert_eq!(tx.used(d.mem).len(), 1);
            let mut buf = [0u8; 16];
            let n = rustix::io::read(fd, &mut buf).expect("read");
            assert_eq!(&buf[..n], data);
        }
    }

    /// `avail_event` of ring `r` (after the used ring).
    fn avail_event(mem: &GuestMemory, r: &Ring) -> u16 {
        mem.read_obj(GuestAddress(r.q + USED + 4 + 8 * u64::from(r.size))).expect("ram")
    }

    #[test]
    fn with_event_idx_stdin_asks_for_a_notification_per_half_ring() {
        let _g = signals::TEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        let mem = GuestMemory::new(16 << 20).expect("mmap");
        let mut dev = Control::new(Some([r.as_fd(), crate::out::stdout(), crate::out::stderr()]));
        let mut d = Driver::new(&mut dev, &mem);
        let qs: Vec<(u32, u16)> = (0..12).map(|i| (i, QUEUE_SIZES[i as usize])).collect();
        d.init(F_VERSION_1 | F_MULTIPORT | F_EVENT_IDX, &qs);
        let (mut cin, mut cout, mut stdin) = (Ring::new(Q_CTRL_IN), Ring::new(Q_CTRL_OUT), Ring::new(Q_STDIN_RX));
        for _ in 0..8 {
            cin.post(d.mem, &[], 4096, true);
        }
        d.w(0x50, Q_CTRL_IN as u32);
        for m in [msg(u32::MAX, event::DEVICE_READY, 1), msg(2, event::PORT_READY, 1), msg(2, event::PORT_OPEN, 1)] {
            cout.post(d.mem, &m, 8, false);
            d.w(0x50, Q_CTRL_OUT as u32);
        }
        // Queues that take everything ask to hear of the very next buffer.
        assert_eq!(avail_event(d.mem, &cout), 3);
        // More stdin than the 32 posted 1 KiB buffers hold: all filled,
        // then the driver is to notify after reposting 16 of them.
        hostio::write_all(w.as_fd(), crate::sys::io::IoBuf::from(&[7u8; 40 << 10][..])).expect("write");
        for _ in 0..32 {
            stdin.post(d.mem, &[], 1024, true);
        }
        d.w(0x50, Q_STDIN_RX as u32);
        assert_eq!(stdin.used(d.mem).len(), 32);
        assert_eq!(avail_event(d.mem, &stdin), 32 + 15);
        // The driver reposts them (it kicks at the 16th); the rest of stdin
        // (8 KiB) fills 8, and stdin then has nothing: next buffer again.
        for _ in 0..16 {
            stdin.post(d.mem, &[], 1024, true);
        }
        d.w(0x50, Q_STDIN_RX as u32);
        assert_eq!(stdin.used(d.mem).len(), 8);
        assert_eq!(avail_event(d.mem, &stdin), 32 + 8);
    }

    #[test]
    fn hostile_control_messages_are_bounded() {
        let mut dev = Control::new(None);
        for _ in 0..100 {
            dev.on_guest_msg(Msg { id: u32::MAX, event: event::DEVICE_READY, value: 1 });
            dev.on_guest_msg(Msg { id: 7, event: event::PORT_OPEN, value: 1 });
            dev.on_guest_msg(Msg { id: 0, event: event::PORT_OPEN, value: 1 });
            dev.on_guest_msg(Msg { id: 1, event: 999, value: 1 });
        }
        assert_eq!(dev.outbox.len(), 16);
        assert_eq!(dev.guest_open, [false; PORTS as usize]);
        // Without host stdin the stdin port reports "not connected": EOF.
        dev.outbox.clear();
        dev.on_guest_msg(Msg { id: 2, event: event::PORT_READY, value: 1 });
        assert_eq!(dev.outbox.back(), Some(&Msg { id: 2, event: event::PORT_OPEN, value: 0 }));
    }
}
