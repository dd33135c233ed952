//! The run loops: one thread per vCPU, each in `KVM_RUN`, then dispatching
//! the exit to the UART, the exit port, the i8042 reset line or the MMIO
//! bus. Anything else the guest touches reads as all-ones and ignores
//! writes (a rate-limited note under `SMOLVM_LOG=debug`). A loop ends only
//! by ending the whole process (`exit_group`), whichever vCPU caused it.
//!
//! Devices are safe from any vCPU because every exit is handled under one
//! lock ([`Lock`]) around the UART, the bus with its devices and guest RAM
//! as the devices see it. The alternative, moving device work to one
//! thread (ioeventfd/irqfd), would add an eventfd, a thread and a wake-up
//! per notification, cost system calls the lock avoids, and change every
//! device; an uncontended lock is two atomic instructions and no system
//! call. Measured with tests/guests/smp.c CASE=6 (200,000 UART exits, one
//! vCPU, this nested host): median 2.607 s before the lock, 2.609 s with
//! it (~12 us an exit either way; the lock is lost in the noise). The
//! lock is never held in `KVM_RUN`, so a vCPU that does not exit to the
//! host (guest code, in-kernel LAPIC/IOAPIC/PIT work, HLT) never waits for
//! it; guests mostly exit for virtio notifies, which one device thread
//! would serialise just the same.

use crate::bus::{Bus, Ctx};
use crate::sys::kvm::{Exit, Vcpu, Vm};
use crate::sys::lock::Lock;
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

/// What the vCPU threads share.
pub struct Vmm<'d> {
    vm: Vm,
    devices: Lock<Devices<'d>>,
    /// `SMOLVM_LOG=debug`: note unhandled accesses.
    debug: bool,
}

/// Everything an exit may touch, behind the one lock.
struct Devices<'d> {
    mem: GuestMemory,
    serial: Serial,
    bus: Bus<'d>,
    notes: u32,
}

impl<'d> Vmm<'d> {
    pub fn new(vm: Vm, mem: GuestMemory, serial: Serial, bus: Bus<'d>, debug: bool) -> Self {
        Vmm { vm, devices: Lock::new(Devices { mem, serial, bus, notes: 0 }), debug }
    }

    /// Runs each vCPU of `vcpus` on its own thread (the first on this one,
    /// after `then`, the last set-up) until the guest exits through the
    /// exit port (that status) or fails (125 with a message). Never returns.
    pub fn run(&self, vcpus: &mut [Vcpu], then: impl FnOnce()) -> ! {
        crate::sys::thread::run_each(self, vcpus, run_vcpu, then, |e| out::fail_errno("cannot start a vCPU thread", e))
    }
}

fn run_vcpu(vmm: &Vmm<'_>, vcpu: &mut Vcpu) -> ! {
    let vm = &vmm.vm;
    loop {
        let result = vcpu.run();
        let mut guard = vmm.devices.lock();
        let Devices { mem, serial, bus, notes } = &mut *guard;
        let exit = match result {
            Ok(e) => e,
            Err(e) => {
                serial.flush();
                out::fail_errno("KVM_RUN failed", e)
            }
        };
        let mut note = |what: &str, addr: u64, len: usize| {
            if vmm.debug && *notes <= MAX_NOTES {
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
            // The guest's warm-image safe point, in a stub that saves one.
            #[cfg(feature = "warm-save")]
            Exit::IoOut { port: linker::abi::SNAPSHOT_PORT, .. } if crate::warm::save::armed() => {
                serial.flush();
                if bus.in_use() {
                    out::fail("cannot save the warm snapshot: a virtio device is in use (saving device state is not supported yet)");
                }
                match crate::warm::save::save(vm, vcpu, mem, bus.records()) {
                    Ok(()) => crate::sys::exit(0),
                    Err(e) => out::fail_errno("cannot save the warm snapshot", e),
                }
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
                let mut ctx = Ctx { mem, irq: vm };
                if !bus.mmio_read(&mut ctx, addr, data) {
                    data.fill(0xff);
                    note("MMIO read", addr, data.len());
                }
            }
            Exit::MmioWrite { addr, data } => {
                let mut ctx = Ctx { mem, irq: vm };
                if !bus.mmio_write(&mut ctx, addr, data) {
                    note("MMIO write", addr, data.len());
                }
            }
            // A signal (host stdin readable, SIGINT/TERM/HUP to forward,
            // SIGWINCH) set immediate_exit: let the devices act on it.
            Exit::Interrupted => {
                vcpu.set_immediate_exit(false);
                let mut ctx = Ctx { mem, irq: vm };
                bus.poll(&mut ctx);
            }
            Exit::Shutdown => crash(serial, "guest kernel crashed (triple fault)"),
            Exit::SystemEvent { .. } => crash(serial, "guest kernel crashed (system event)"),
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
