//! The run loop: `KVM_RUN`, then dispatch the exit to the UART, the exit
//! port, the i8042 reset line or the MMIO bus. Anything else the guest
//! touches reads as all-ones and ignores writes (a rate-limited note under
//! `SMOLVM_LOG=debug`). The loop ends only by exiting the process.

use crate::bus::{Bus, Ctx};
use crate::sys::kvm::{Exit, Vcpu, Vm};
use crate::mem::GuestMemory;
use crate::out::{self, Line};
use crate::serial::{self, Serial};
use linker::abi::{status::SMOLVM_FAILED, EXIT_PORT};

/// i8042 command port; writing 0xfe pulses the CPU reset line.
const I8042_CMD: u16 = 0x64;
const I8042_RESET: u8 = 0xfe;
/// POST diagnostic port, written by Linux as an I/O delay: silently ignored.
const POST_PORT: u16 = 0x80;
/// Console lines shown after a crash.
const CRASH_LINES: usize = 20;
/// Debug notes about unhandled accesses before they are suppressed.
const MAX_NOTES: u32 = 16;

pub struct Vmm<'d> {
    pub vm: Vm,
    pub vcpu: Vcpu,
    pub mem: GuestMemory,
    pub serial: Serial,
    pub bus: Bus<'d>,
    /// `SMOLVM_LOG=debug`: note unhandled accesses.
    pub debug: bool,
    notes: u32,
}

impl<'d> Vmm<'d> {
    pub fn new(vm: Vm, vcpu: Vcpu, mem: GuestMemory, serial: Serial, bus: Bus<'d>, debug: bool) -> Self {
        Vmm { vm, vcpu, mem, serial, bus, debug, notes: 0 }
    }

    /// Runs the guest until it exits through the exit port (that status)
    /// or fails (125 with a message). Never returns.
    pub fn run(&mut self) -> ! {
        loop {
            let Vmm { vm, vcpu, mem, serial, bus, debug, notes } = self;
            let exit = match vcpu.run() {
                Ok(e) => e,
                Err(e) => {
                    serial.flush();
                    out::fail_errno("KVM_RUN failed", e)
                }
            };
            let mut note = |what: &str, addr: u64, len: usize| {
                if *debug && *notes <= MAX_NOTES {
                    *notes += 1;
                    let mut l = Line::new();
                    if *notes > MAX_NOTES {
                        l.s("debug: further notes suppressed");
                    } else {
                        l.s("debug: unhandled ").s(what).s(" ").x(addr).s(" (").u(len as u64).s(" bytes)");
                    }
                    l.emit()
                }
            };
            match exit {
                Exit::IoOut { port: EXIT_PORT, data, .. } => {
                    serial.flush();
                    crate::sys::exit(data.first().copied().unwrap_or(0))
                }
                Exit::IoOut { port, size, data } if Serial::claims(port) => {
                    for chunk in data.chunks_exact(size.max(1)) {
                        serial.write(port - serial::COM1_BASE, chunk[0], vm);
                    }
                }
                Exit::IoIn { port, size, data } if Serial::claims(port) => {
                    for chunk in data.chunks_exact_mut(size.max(1)) {
                        chunk.fill(0);
                        chunk[0] = serial.read(port - serial::COM1_BASE);
                    }
                }
                Exit::IoOut { port: I8042_CMD, data, .. } if data.contains(&I8042_RESET) => {
                    crash(serial, "guest kernel crashed (it asked for a reset)")
                }
                // Status register: output buffer empty, input buffer empty.
                Exit::IoIn { port: I8042_CMD, data, .. } => data.fill(0),
                Exit::IoOut { port: POST_PORT, .. } => {}
                Exit::IoOut { port, data, .. } => note("port write", u64::from(port), data.len()),
                Exit::IoIn { port, data, .. } => {
                    data.fill(0xff);
                    note("port read", u64::from(port), data.len());
                }
                Exit::MmioRead { addr, data } => {
                    let mut ctx = Ctx { mem, irq: &*vm };
                    if !bus.mmio_read(&mut ctx, addr, data) {
                        data.fill(0xff);
                        note("MMIO read", addr, data.len());
                    }
                }
                Exit::MmioWrite { addr, data } => {
                    let mut ctx = Ctx { mem, irq: &*vm };
                    if !bus.mmio_write(&mut ctx, addr, data) {
                        note("MMIO write", addr, data.len());
                    }
                }
                // A signal (host stdin readable, SIGINT/TERM/HUP to forward,
                // SIGWINCH) set immediate_exit: let the devices act on it.
                Exit::Interrupted => {
                    vcpu.set_immediate_exit(false);
                    let mut ctx = Ctx { mem, irq: &*vm };
                    bus.poll(&mut ctx);
                }
                Exit::Shutdown => crash(serial, "guest kernel crashed (triple fault)"),
                Exit::SystemEvent { .. } => crash(serial, "guest kernel crashed (system event)"),
                Exit::Hlt => crash(serial, "guest stopped (halted with no interrupt controller)"),
                Exit::FailEntry { reason } => {
                    serial.flush();
                    Line::new().s("KVM could not enter the guest (hardware reason ").x(reason).s(")").fail()
                }
                Exit::InternalError { suberror } => {
                    crash_line(serial, Line::new().s("KVM internal error ").u(u64::from(suberror)).s(" while running the guest"))
                }
                Exit::Other(reason) => {
                    crash_line(serial, Line::new().s("unexpected KVM exit reason ").u(u64::from(reason)))
                }
            }
        }
    }
}

fn crash(serial: &mut Serial, what: &str) -> ! {
    crash_line(serial, Line::new().s(what))
}

/// Prints `line`, then the last console lines, and exits 125.
fn crash_line(serial: &mut Serial, line: &mut Line) -> ! {
    serial.flush();
    line.emit();
    let mut buf = [0u8; serial::TAIL_LEN];
    let lines = serial.tail.last_lines(CRASH_LINES, &mut buf);
    if !lines.is_empty() {
        Line::new().s("last guest console lines:").emit();
        let _ = out::write_all(out::stderr(), lines);
        let _ = out::write_all(out::stderr(), b"\n");
    }
    crate::sys::exit(SMOLVM_FAILED)
}
