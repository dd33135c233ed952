//! Safe, fd-owning wrappers over the KVM ioctls the stub uses: [`Kvm`]
//! (/dev/kvm), [`Vm`] and [`Vcpu`], whose [`Vcpu::run`] returns an [`Exit`]
//! borrowing the shared `kvm_run` page.

use crate::bus::Interrupts;
use crate::sys::ioctl::{IntRet, Run};
use crate::sys::kvm::*;
use core::ptr::NonNull;
use rustix::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use rustix::fs::{self, Mode, OFlags};
use rustix::io::{self, Errno};
use rustix::ioctl::{ioctl, Getter, Setter, Updater};
use rustix::mm::{self, MapFlags, ProtFlags};

fn fd_from(raw: u32) -> io::Result<OwnedFd> {
    let raw = RawFd::try_from(raw).map_err(|_| Errno::BADF)?;
    // SAFETY: KVM just returned `raw` as a new file descriptor that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// An open `/dev/kvm`.
pub struct Kvm {
    fd: OwnedFd,
}

impl Kvm {
    pub fn open() -> io::Result<Kvm> {
        let fd = fs::open("/dev/kvm", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Kvm { fd })
    }

    pub fn api_version(&self) -> io::Result<u32> {
        // SAFETY: KVM_GET_API_VERSION takes no argument and writes nothing.
        unsafe { ioctl(&self.fd, IntRet::<KVM_GET_API_VERSION>::new(0)) }
    }

    /// `KVM_CHECK_EXTENSION`: 0 if `cap` is unsupported, else a positive value.
    pub fn check_extension(&self, cap: u32) -> io::Result<u32> {
        // SAFETY: integer argument, integer result, writes nothing.
        unsafe { ioctl(&self.fd, IntRet::<KVM_CHECK_EXTENSION>::new(cap as usize)) }
    }

    /// Fills `cpuid` with the CPUID leaves KVM can virtualize.
    pub fn supported_cpuid(&self, cpuid: &mut KvmCpuid2) -> io::Result<()> {
        cpuid.header.nent = MAX_CPUID_ENTRIES as u32;
        // SAFETY: `cpuid` is a kvm_cpuid2 whose `nent` tells the kernel how
        // many entries it may write; the buffer holds exactly that many.
        unsafe { ioctl(&self.fd, Updater::<KVM_GET_SUPPORTED_CPUID, KvmCpuid2>::new(cpuid)) }
    }

    pub fn create_vm(&self) -> io::Result<Vm> {
        // SAFETY: KVM_CREATE_VM takes the machine type (0) and returns an fd.
        let raw = unsafe { ioctl(&self.fd, IntRet::<KVM_CREATE_VM>::new(0))? };
        // SAFETY: no argument, returns the size of the vCPU's run mapping.
        let run_size = unsafe { ioctl(&self.fd, IntRet::<KVM_GET_VCPU_MMAP_SIZE>::new(0))? };
        Ok(Vm { fd: fd_from(raw)?, run_size: run_size as usize })
    }
}

/// A virtual machine.
pub struct Vm {
    fd: OwnedFd,
    run_size: usize,
}

impl Vm {
    /// Maps `size` bytes of host memory at `host_addr` as guest RAM at `gpa`.
    ///
    /// # Safety
    /// `[host_addr, host_addr + size)` must stay mapped for the VM's lifetime
    /// and be accessed by the host only through `mem::GuestMemory`.
    pub unsafe fn set_user_memory_region(
        &self,
        slot: u32,
        gpa: u64,
        size: u64,
        host_addr: u64,
    ) -> io::Result<()> {
        let region = KvmUserspaceMemoryRegion {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host_addr,
        };
        // SAFETY: the struct is read by the kernel; the mapping it names is
        // guaranteed live by this function's contract.
        unsafe { ioctl(&self.fd, Setter::<KVM_SET_USER_MEMORY_REGION, _>::new(region)) }
    }

    /// In-kernel PIC, IOAPIC and per-vCPU local APICs.
    pub fn create_irqchip(&self) -> io::Result<()> {
        // SAFETY: no argument.
        unsafe { ioctl(&self.fd, IntRet::<KVM_CREATE_IRQCHIP>::new(0)).map(drop) }
    }

    /// In-kernel i8254 PIT (the kernel calibrates its clocks against it).
    pub fn create_pit2(&self) -> io::Result<()> {
        let cfg = KvmPitConfig::default();
        // SAFETY: the kernel reads the config struct.
        unsafe { ioctl(&self.fd, Setter::<KVM_CREATE_PIT2, _>::new(cfg)) }
    }

    pub fn irq_line(&self, irq: u32, level: bool) -> io::Result<()> {
        let l = KvmIrqLevel { irq, level: u32::from(level) };
        // SAFETY: the kernel reads the struct (this is KVM_IRQ_LINE, not the
        // _STATUS variant that writes back).
        unsafe { ioctl(&self.fd, Setter::<KVM_IRQ_LINE, _>::new(l)) }
    }

    /// Makes a write to the eventfd `fd` raise GSI `gsi` (for device threads).
    pub fn irqfd(&self, fd: rustix::fd::BorrowedFd<'_>, gsi: u32) -> io::Result<()> {
        use rustix::fd::AsRawFd;
        let raw = u32::try_from(fd.as_raw_fd()).map_err(|_| Errno::BADF)?;
        let req = KvmIrqfd { fd: raw, gsi, ..Default::default() };
        // SAFETY: the kernel reads the struct.
        unsafe { ioctl(&self.fd, Setter::<KVM_IRQFD, _>::new(req)) }
    }

    /// The VM fd's number (the reaper keeps it open past the stub's exit).
    pub fn raw_fd(&self) -> RawFd {
        use rustix::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    pub fn create_vcpu(&self, id: u32) -> io::Result<Vcpu> {
        // SAFETY: integer argument (vCPU id), returns a new fd.
        let fd = fd_from(unsafe { ioctl(&self.fd, IntRet::<KVM_CREATE_VCPU>::new(id as usize))? })?;
        if self.run_size < core::mem::size_of::<KvmRun>() {
            return Err(Errno::INVAL);
        }
        // SAFETY: a fresh shared mapping of the vCPU fd at an address the
        // kernel picks aliases nothing; `Vcpu` unmaps it on drop.
        let ptr = unsafe {
            mm::mmap(
                core::ptr::null_mut(),
                self.run_size,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let run = NonNull::new(ptr.cast::<u8>()).ok_or(Errno::NOMEM)?;
        Ok(Vcpu { fd, run, run_size: self.run_size })
    }
}

impl Interrupts for Vm {
    fn trigger(&self, irq: u32) {
        let _ = self.irq_line(irq, true);
        let _ = self.irq_line(irq, false);
    }

    fn set_level(&self, irq: u32, level: bool) {
        let _ = self.irq_line(irq, level);
    }
}

/// Why `KVM_RUN` returned.
#[derive(Debug)]
pub enum Exit<'a> {
    /// `in` from `port`: fill `data` (`size` bytes per access).
    IoIn { port: u16, size: usize, data: &'a mut [u8] },
    /// `out` to `port`.
    IoOut { port: u16, size: usize, data: &'a [u8] },
    MmioRead { addr: u64, data: &'a mut [u8] },
    MmioWrite { addr: u64, data: &'a [u8] },
    Hlt,
    /// Triple fault (or a guest-requested shutdown).
    Shutdown,
    FailEntry { reason: u64 },
    InternalError { suberror: u32 },
    SystemEvent { kind: u32 },
    /// A signal interrupted `KVM_RUN` (`EINTR` or `KVM_EXIT_INTR`).
    Interrupted,
    Other(u32),
}

/// A virtual CPU and its shared `kvm_run` page.
pub struct Vcpu {
    fd: OwnedFd,
    run: NonNull<u8>,
    run_size: usize,
}

impl Vcpu {
    pub fn get_regs(&self) -> io::Result<KvmRegs> {
        // SAFETY: the kernel writes one kvm_regs into the getter's buffer.
        unsafe { ioctl(&self.fd, Getter::<KVM_GET_REGS, KvmRegs>::new()) }
    }

    pub fn set_regs(&self, regs: &KvmRegs) -> io::Result<()> {
        // SAFETY: the kernel reads one kvm_regs.
        unsafe { ioctl(&self.fd, Setter::<KVM_SET_REGS, _>::new(*regs)) }
    }

    pub fn get_sregs(&self) -> io::Result<KvmSregs> {
        // SAFETY: the kernel writes one kvm_sregs.
        unsafe { ioctl(&self.fd, Getter::<KVM_GET_SREGS, KvmSregs>::new()) }
    }

    pub fn set_sregs(&self, sregs: &KvmSregs) -> io::Result<()> {
        // SAFETY: the kernel reads one kvm_sregs.
        unsafe { ioctl(&self.fd, Setter::<KVM_SET_SREGS, _>::new(*sregs)) }
    }

    /// Sets the guest's CPUID leaves (`nent` of `cpuid` entries are used).
    pub fn set_cpuid2(&self, cpuid: &KvmCpuid2) -> io::Result<()> {
        if cpuid.header.nent as usize > MAX_CPUID_ENTRIES {
            return Err(Errno::INVAL);
        }
        // SAFETY: the kernel reads `nent` entries, all inside the struct.
        unsafe { ioctl(&self.fd, Setter::<KVM_SET_CPUID2, KvmCpuid2>::new(*cpuid)) }
    }

    /// Writes MSRs; returns how many were set (KVM stops at the first it refuses).
    pub fn set_msrs<const N: usize>(&self, msrs: &KvmMsrs<N>) -> io::Result<u32> {
        if msrs.header.nmsrs as usize > N {
            return Err(Errno::INVAL);
        }
        let mut copy = *msrs;
        struct SetMsrs<'a, const N: usize>(&'a mut KvmMsrs<N>);
        // SAFETY: the kernel reads `nmsrs` (≤ N) entries of the struct and
        // returns the number written; it writes no user memory.
        unsafe impl<const N: usize> rustix::ioctl::Ioctl for SetMsrs<'_, N> {
            type Output = u32;
            const IS_MUTATING: bool = false;
            fn opcode(&self) -> rustix::ioctl::Opcode {
                KVM_SET_MSRS
            }
            fn as_ptr(&mut self) -> *mut core::ffi::c_void {
                (self.0 as *mut KvmMsrs<N>).cast()
            }
            unsafe fn output_from_ptr(
                out: rustix::ioctl::IoctlOutput,
                _: *mut core::ffi::c_void,
            ) -> io::Result<u32> {
                u32::try_from(out).map_err(|_| Errno::INVAL)
            }
        }
        // SAFETY: see the impl above.
        unsafe { ioctl(&self.fd, SetMsrs(&mut copy)) }
    }

    pub fn get_lapic(&self) -> io::Result<KvmLapicState> {
        // SAFETY: the kernel writes one kvm_lapic_state.
        unsafe { ioctl(&self.fd, Getter::<KVM_GET_LAPIC, KvmLapicState>::new()) }
    }

    pub fn set_lapic(&self, lapic: &KvmLapicState) -> io::Result<()> {
        // SAFETY: the kernel reads one kvm_lapic_state.
        unsafe { ioctl(&self.fd, Setter::<KVM_SET_LAPIC, _>::new(*lapic)) }
    }

    fn run_head(&self) -> KvmRun {
        // SAFETY: the run page is at least size_of::<KvmRun>() bytes
        // (checked in create_vcpu), page aligned, and the kernel does not
        // write it outside KVM_RUN, which needs `&mut self`.
        unsafe { self.run.as_ptr().cast::<KvmRun>().read() }
    }

    /// Asks the next `KVM_RUN` to return at once with `EINTR` (used with a
    /// signal handler to stop the vCPU promptly).
    pub fn set_immediate_exit(&mut self, on: bool) {
        // SAFETY: offset 1 (`immediate_exit`) lies in the run page; `&mut self`
        // excludes a concurrent KVM_RUN from this thread.
        unsafe { self.run.as_ptr().add(1).write_volatile(u8::from(on)) }
    }

    /// Raw pointer to the `immediate_exit` byte, for a signal handler.
    pub fn immediate_exit_ptr(&self) -> *mut u8 {
        // SAFETY: offset 1 is inside the run page.
        unsafe { self.run.as_ptr().add(1) }
    }

    /// Runs the vCPU until the next exit.
    pub fn run(&mut self) -> io::Result<Exit<'_>> {
        // SAFETY: KVM_RUN takes no argument; it writes the run page we own.
        match unsafe { ioctl(&self.fd, Run) } {
            Ok(()) => {}
            Err(Errno::INTR) | Err(Errno::AGAIN) => return Ok(Exit::Interrupted),
            Err(e) => return Err(e),
        }
        let head = self.run_head();
        let view = |i: usize| head.exit.get(i).copied().unwrap_or(0);
        Ok(match head.exit_reason {
            KVM_EXIT_IO => {
                // SAFETY: the io view is a 16-byte POD prefix of the union.
                let io: KvmRunIo = unsafe { head.exit.as_ptr().cast::<KvmRunIo>().read() };
                let size = usize::from(io.size);
                let len = size.checked_mul(io.count as usize).ok_or(Errno::INVAL)?;
                let start = usize::try_from(io.data_offset).map_err(|_| Errno::INVAL)?;
                let end = start.checked_add(len).ok_or(Errno::INVAL)?;
                if end > self.run_size || len == 0 {
                    return Err(Errno::INVAL);
                }
                // SAFETY: [start, end) lies inside the run page (checked) and
                // the returned borrow of `self` excludes another KVM_RUN.
                let data = unsafe {
                    core::slice::from_raw_parts_mut(self.run.as_ptr().add(start), len)
                };
                if io.direction == KVM_EXIT_IO_OUT {
                    Exit::IoOut { port: io.port, size, data }
                } else {
                    Exit::IoIn { port: io.port, size, data }
                }
            }
            KVM_EXIT_MMIO => {
                // SAFETY: the mmio view is a POD prefix of the union.
                let m: KvmRunMmio = unsafe { head.exit.as_ptr().cast::<KvmRunMmio>().read() };
                let len = (m.len as usize).min(8);
                let off = core::mem::offset_of!(KvmRun, exit) + core::mem::offset_of!(KvmRunMmio, data);
                // SAFETY: `data` is 8 bytes inside the run page; borrow as above.
                let data = unsafe {
                    core::slice::from_raw_parts_mut(self.run.as_ptr().add(off), len)
                };
                if m.is_write != 0 {
                    Exit::MmioWrite { addr: m.phys_addr, data }
                } else {
                    Exit::MmioRead { addr: m.phys_addr, data }
                }
            }
            KVM_EXIT_HLT => Exit::Hlt,
            KVM_EXIT_SHUTDOWN => Exit::Shutdown,
            KVM_EXIT_FAIL_ENTRY => Exit::FailEntry { reason: view(0) },
            KVM_EXIT_INTERNAL_ERROR => Exit::InternalError { suberror: view(0) as u32 },
            KVM_EXIT_SYSTEM_EVENT => Exit::SystemEvent { kind: view(0) as u32 },
            KVM_EXIT_INTR => Exit::Interrupted,
            other => Exit::Other(other),
        })
    }

    pub fn as_fd(&self) -> rustix::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Vcpu {
    fn drop(&mut self) {
        // SAFETY: `run`/`run_size` describe the mapping made in create_vcpu;
        // no borrow of it outlives `self`.
        let _ = unsafe { mm::munmap(self.run.as_ptr().cast(), self.run_size) };
    }
}
