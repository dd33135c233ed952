//! 8250 UART at I/O port 0x3f8 (COM1, IRQ 4): the guest kernel's console.
//!
//! Transmit only (the app's stdin arrives over virtio-console). Every byte
//! the guest sends is kept in a small ring so the last lines can be shown
//! when the guest crashes, and is forwarded to the host per [`Sink`].
//! Register behaviour follows the 16450 closely enough for Linux's probe
//! (scratch register, loopback MSR) and its THRE-interrupt driven output.

use crate::bus::Interrupts;
use rustix::fd::BorrowedFd;

pub const COM1_BASE: u16 = 0x3f8;
pub const COM1_IRQ: u32 = 4;
/// Bytes of console output kept for the crash report.
pub const TAIL_LEN: usize = 4096;
const LINE_LEN: usize = 512;

const IER_THRI: u8 = 0x02;
const IIR_NONE: u8 = 0x01;
const IIR_THRI: u8 = 0x02;
const LCR_DLAB: u8 = 0x80;
const MCR_LOOP: u8 = 0x10;
const LSR_THRE_TEMT: u8 = 0x60;

/// Where console bytes go besides the tail ring.
#[derive(Clone, Copy, Debug)]
pub enum Sink {
    /// Nowhere else (a virtio console carries the app's output).
    Discard,
    /// To this host fd (stdout when there is no virtio console, stderr for
    /// `SMOLVM_LOG=kernel`).
    Fd(BorrowedFd<'static>),
}

/// The last `TAIL_LEN` bytes written, oldest first when read out.
pub struct Tail {
    buf: [u8; TAIL_LEN],
    /// Total bytes ever pushed (the write position is `total % TAIL_LEN`).
    total: u64,
}

impl Tail {
    pub const fn new() -> Tail {
        Tail { buf: [0; TAIL_LEN], total: 0 }
    }

    pub fn push(&mut self, b: u8) {
        self.buf[(self.total % TAIL_LEN as u64) as usize] = b;
        // A u64 byte count never wraps (centuries at any console speed).
        self.total = self.total.wrapping_add(1);
    }

    /// The kept bytes as two slices, oldest first.
    pub fn as_slices(&self) -> (&[u8], &[u8]) {
        let at = (self.total % TAIL_LEN as u64) as usize;
        let (older, newer) = self.buf.split_at_checked(at).unwrap_or((&self.buf, &[]));
        if self.total < TAIL_LEN as u64 {
            (older, &[])
        } else {
            (newer, older)
        }
    }

    /// The last `max_lines` (≥ 1) lines, the last one possibly partial,
    /// without the final newline, copied into `out`.
    pub fn last_lines<'o>(&self, max_lines: usize, out: &'o mut [u8; TAIL_LEN]) -> &'o [u8] {
        let (older, newer) = self.as_slices();
        let mut n = 0;
        for (o, &c) in out.iter_mut().zip(older.iter().chain(newer)) {
            *o = c;
            n += 1;
        }
        let text = out.get(..n).unwrap_or(&[]);
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        // Back over `max_lines` newlines; fewer: the whole text.
        let mut end = text.len();
        for _ in 0..max_lines {
            match text.get(..end).and_then(|t| t.iter().rposition(|&c| c == b'\n')) {
                Some(i) => end = i,
                None => return text,
            }
        }
        text.get(end.wrapping_add(1)..).unwrap_or(&[])
    }
}

impl Default for Tail {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Serial {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    thr_interrupt: bool,
    sink: Sink,
    line: heapless::Vec<u8, LINE_LEN>,
    pub tail: Tail,
}

impl Serial {
    pub fn new(sink: Sink) -> Serial {
        Serial {
            ier: 0,
            lcr: 0x03,
            mcr: 0x08,
            scr: 0,
            dll: 0x0c,
            dlm: 0,
            thr_interrupt: false,
            sink,
            line: heapless::Vec::new(),
            tail: Tail::new(),
        }
    }

    /// Whether `port` belongs to this UART.
    pub fn claims(port: u16) -> bool {
        (COM1_BASE..COM1_BASE + 8).contains(&port)
    }

    fn raise_thr(&mut self, irq: &dyn Interrupts) {
        if self.ier & IER_THRI != 0 {
            self.thr_interrupt = true;
            irq.trigger(COM1_IRQ);
        }
    }

    fn transmit(&mut self, b: u8) {
        self.tail.push(b);
        if let Sink::Fd(_) = self.sink {
            if self.line.push(b).is_err() {
                self.flush();
                let _ = self.line.push(b);
            }
            if b == b'\n' {
                self.flush();
            }
        }
    }

    /// Sends buffered output to the sink (before exiting or blocking).
    pub fn flush(&mut self) {
        if let Sink::Fd(fd) = self.sink {
            // A broken host pipe must not stop the guest: drop the bytes.
            let _ = crate::out::write_all(fd, &self.line);
        }
        self.line.clear();
    }

    pub fn read(&mut self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            0 if dlab => self.dll,
            0 => 0, // receive buffer: no input on this port
            1 if dlab => self.dlm,
            1 => self.ier,
            2 => {
                // Reading IIR acknowledges a THR-empty interrupt.
                if core::mem::take(&mut self.thr_interrupt) {
                    IIR_THRI
                } else {
                    IIR_NONE
                }
            }
            3 => self.lcr,
            4 => self.mcr,
            5 => LSR_THRE_TEMT,
            6 => {
                if self.mcr & MCR_LOOP != 0 {
                    // Loopback: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD.
                    let m = self.mcr;
                    ((m & 1) << 5) | ((m & 2) << 3) | ((m & 4) << 4) | ((m & 8) << 4)
                } else {
                    0xb0 // DCD | DSR | CTS
                }
            }
            _ => self.scr,
        }
    }

    pub fn write(&mut self, offset: u16, v: u8, irq: &dyn Interrupts) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            0 if dlab => self.dll = v,
            0 => {
                if self.mcr & MCR_LOOP == 0 {
                    self.transmit(v);
                }
                // The byte left at once: the holding register is empty again.
                self.raise_thr(irq);
            }
            1 if dlab => self.dlm = v,
            1 => {
                let was = self.ier;
                self.ier = v & 0x0f;
                if was & IER_THRI == 0 {
                    self.raise_thr(irq);
                } else if self.ier & IER_THRI == 0 {
                    // Linux stops transmit interrupts when its buffer drained.
                    self.thr_interrupt = false;
                    self.flush();
                }
            }
            2 => {} // FIFO control: no FIFO
            3 => self.lcr = v,
            4 => self.mcr = v & 0x1f,
            5 | 6 => {}
            _ => self.scr = v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    #[derive(Default)]
    struct Count(Cell<u32>);
    impl Interrupts for Count {
        fn trigger(&self, irq: u32) {
            assert_eq!(irq, COM1_IRQ);
            self.0.set(self.0.get() + 1);
        }
        fn set_level(&self, _: u32, _: bool) {}
    }

    #[test]
    fn probe_registers_behave_like_a_16450() {
        let irq = Count::default();
        let mut s = Serial::new(Sink::Discard);
        s.write(7, 0xa5, &irq);
        assert_eq!(s.read(7), 0xa5);
        s.write(4, MCR_LOOP | 0x0a, &irq);
        assert_eq!(s.read(6) & 0xf0, 0x90);
        s.write(3, LCR_DLAB, &irq);
        s.write(0, 1, &irq);
        s.write(1, 2, &irq);
        assert_eq!((s.read(0), s.read(1)), (1, 2));
        assert_eq!(s.read(5) & 0x60, 0x60);
    }

    #[test]
    fn thr_empty_interrupts_and_tail() {
        let irq = Count::default();
        let mut s = Serial::new(Sink::Discard);
        s.write(0, b'a', &irq);
        assert_eq!(irq.0.get(), 0);
        s.write(1, IER_THRI, &irq);
        assert_eq!(irq.0.get(), 1);
        assert_eq!(s.read(2), IIR_THRI);
        assert_eq!(s.read(2), IIR_NONE);
        s.write(0, b'\n', &irq);
        assert_eq!(irq.0.get(), 2);
        assert_eq!(s.tail.as_slices(), (&b"a\n"[..], &b""[..]));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::new();
        for i in 0..2000u32 {
            for b in std::format!("line {i}\n").bytes() {
                t.push(b);
            }
        }
        let mut out = [0u8; TAIL_LEN];
        assert_eq!(t.last_lines(3, &mut out), b"line 1997\nline 1998\nline 1999");
        let mut t = Tail::new();
        b"only".iter().for_each(|&b| t.push(b));
        assert_eq!(t.last_lines(3, &mut out), b"only");
        b"\n\ntwo\n".iter().for_each(|&b| t.push(b));
        assert_eq!(t.last_lines(3, &mut out), b"only\n\ntwo");
        assert_eq!(t.last_lines(1, &mut out), b"two");
        assert_eq!(Tail::new().last_lines(3, &mut out), b"");
    }
}
