//! Safe, fd-owning wrappers over the KVM ioctls the stub uses: [`Kvm`]
//! (/dev/kvm), [`Vm`] and [`Vcpu`], whose [`Vcpu::run`] returns an [`Exit`]
//! borrowing the shared `kvm_run` page. The ABI structs and request
//! numbers are in [`abi`] (re-exported here).

mod abi;
#[cfg(feature = "warm")]
mod state;

pub use abi::*;
use super::fd::owned_from_new as fd_from;
use super::ioctl::{arg, arg_ro, int, raw};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use rustix::fs::{self, Mode, OFlags};
use rustix::io::{self, Errno};
use rustix::mm::{self, MapFlags, ProtFlags};

/// `ioctl(fd, opcode, arg)` on one of our KVM fds.
///
/// # Safety
/// As [`raw`]: `arg` is what `opcode` expects.
unsafe fn kvm_ioctl(fd: &OwnedFd, opcode: u32, arg: *mut core::ffi::c_void) -> io::Result<u32> {
    let fd: BorrowedFd<'_> = fd.as_fd();
    // SAFETY: per this function's contract.
    unsafe { raw(fd, opcode, arg) }
}

/// An open `/dev/kvm`.
pub struct Kvm {
    fd: OwnedFd,
}

impl Kvm {
    pub fn open() -> io::Result<Kvm> {
        let fd = fs::open(c"/dev/kvm", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Kvm { fd })
    }

    pub fn api_version(&self) -> io::Result<u32> {
        // SAFETY: KVM_GET_API_VERSION takes no argument and writes nothing.
        unsafe { kvm_ioctl(&self.fd, KVM_GET_API_VERSION, int(0)) }
    }

    /// `KVM_CHECK_EXTENSION`: 0 if `cap` is unsupported, else a positive value.
    pub fn check_extension(&self, cap: u32) -> io::Result<u32> {
        // SAFETY: integer argument, integer result, writes nothing.
        unsafe { kvm_ioctl(&self.fd, KVM_CHECK_EXTENSION, int(cap as usize)) }
    }

    /// Fills `cpuid` with the CPUID leaves KVM can virtualize.
    pub fn supported_cpuid(&self, cpuid: &mut KvmCpuid2) -> io::Result<()> {
        cpuid.header.nent = MAX_CPUID_ENTRIES as u32;
        // SAFETY: `cpuid` is a kvm_cpuid2 whose `nent` tells the kernel how many entries it may write; the buffer holds exactly that many.
        unsafe { kvm_ioctl(&self.fd, KVM_GET_SUPPORTED_CPUID, arg(cpuid)).map(drop) }
    }

    pub fn create_vm(&self) -> io::Result<Vm> {
        // SAFETY: KVM_CREATE_VM takes the machine type (0) and returns an fd.
        let raw = unsafe { kvm_ioctl(&self.fd, KVM_CREATE_VM, int(0))? };
        // SAFETY: no argument, returns the size of the vCPU's run mapping.
        let run_size = unsafe { kvm_ioctl(&self.fd, KVM_GET_VCPU_MMAP_SIZE, int(0))? };
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
        let mut region = KvmUserspaceMemoryRegion {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host_addr,
        };
        // SAFETY: the struct is read by the kernel; the mapping it names is guaranteed live by this function's contract.
        unsafe { kvm_ioctl(&self.fd, KVM_SET_USER_MEMORY_REGION, arg(&mut region)).map(drop) }
    }

    /// In-kernel PIC, IOAPIC and per-vCPU local APICs.
    pub fn create_irqchip(&self) -> io::Result<()> {
        // SAFETY: no argument.
        unsafe { kvm_ioctl(&self.fd, KVM_CREATE_IRQCHIP, int(0)).map(drop) }
    }

    /// In-kernel i8254 PIT (the kernel calibrates its clocks against it).
    pub fn create_pit2(&self) -> io::Result<()> {
        let mut cfg = KvmPitConfig::default();
        // SAFETY: the kernel reads the config struct.
        unsafe { kvm_ioctl(&self.fd, KVM_CREATE_PIT2, arg(&mut cfg)).map(drop) }
    }

    pub fn irq_line(&self, irq: u32, level: bool) -> io::Result<()> {
        let mut l = KvmIrqLevel { irq, level: u32::from(level) };
        // SAFETY: the kernel reads the struct (this is KVM_IRQ_LINE, not the _STATUS variant that writes back).
        unsafe { kvm_ioctl(&self.fd, KVM_IRQ_LINE, arg(&mut l)).map(drop) }
    }

    /// Makes a write to the eventfd `fd` raise GSI `gsi` (for device threads).
    pub fn irqfd(&self, fd: rustix::fd::BorrowedFd<'_>, gsi: u32) -> io::Result<()> {
        use rustix::fd::AsRawFd;
        let raw = u32::try_from(fd.as_raw_fd()).map_err(|_| Errno::BADF)?;
        let mut req = KvmIrqfd { fd: raw, gsi, ..Default::default() };
        // SAFETY: the kernel reads the struct.
        unsafe { kvm_ioctl(&self.fd, KVM_IRQFD, arg(&mut req)).map(drop) }
    }

    /// The VM fd's number (the reaper keeps it open past the stub's exit).
    pub fn raw_fd(&self) -> RawFd {
        use rustix::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    pub fn create_vcpu(&self, id: u32) -> io::Result<Vcpu> {
        // SAFETY: integer argument (vCPU id), returns a new fd.
        let fd = fd_from(unsafe { kvm_ioctl(&self.fd, KVM_CREATE_VCPU, int(id as usize))? })?;
        if self.run_size < core::mem::size_of::<KvmRun>() {
            return Err(Errno::INVAL);
        }
        // SAFETY: a fresh shared mapping of the vCPU fd at an address the kernel picks aliases nothing; `Vcpu` unmaps it on drop.
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

/// Why `KVM_RUN` returned.
#[derive(Debug)]
pub enum Exit<'a> {
    /// `in` from `port`: fill `data` (`size` bytes per access).
    IoIn { port: u16, size: usize, data: &'a mut [u8] },
    /// `out` to `port`.
    IoOut { port: u16, size: usize, data: &'a [u8] },
    MmioRead { addr: u64, data: &'a mut [u8] },
    MmioWrite { addr: u64, data: &'a [u8] },
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

// SAFETY: the run page is this Vcpu's own mapping, reached only through `&self`/`&mut self` (and `kick`'s byte store, which is fine from any thread); KVM lets any thread issue KVM_RUN (it follows the vCPU to its new thread).
unsafe impl Send for Vcpu {}

impl Vcpu {
    pub fn get_regs(&self) -> io::Result<KvmRegs> {
        let mut regs = KvmRegs::default();
        // SAFETY: the kernel writes one kvm_regs.
        unsafe { kvm_ioctl(&self.fd, KVM_GET_REGS, arg(&mut regs))? };
        Ok(regs)
    }

    pub fn set_regs(&self, regs: &KvmRegs) -> io::Result<()> {
        // SAFETY: the kernel reads one kvm_regs.
        unsafe { kvm_ioctl(&self.fd, KVM_SET_REGS, arg_ro(regs)).map(drop) }
    }

    pub fn get_sregs(&self) -> io::Result<KvmSregs> {
        let mut sregs = KvmSregs::default();
        // SAFETY: the kernel writes one kvm_sregs.
        unsafe { kvm_ioctl(&self.fd, KVM_GET_SREGS, arg(&mut sregs))? };
        Ok(sregs)
    }

    pub fn set_sregs(&self, sregs: &KvmSregs) -> io::Result<()> {
        // SAFETY: the kernel reads one kvm_sregs.
        unsafe { kvm_ioctl(&self.fd, KVM_SET_SREGS, arg_ro(sregs)).map(drop) }
    }

    /// Sets the guest's CPUID leaves (`nent` of `cpuid` entries are used).
    pub fn set_cpuid2(&self, cpuid: &KvmCpuid2) -> io::Result<()> {
        if cpuid.header.nent as usize > MAX_CPUID_ENTRIES {
            return Err(Errno::INVAL);
        }
        // SAFETY: the kernel reads `nent` entries, all inside the struct.
        unsafe { kvm_ioctl(&self.fd, KVM_SET_CPUID2, arg_ro(cpuid)).map(drop) }
    }

    /// Writes MSRs; returns how many were set (KVM stops at the first it refuses).
    pub fn set_msrs<const N: usize>(&self, msrs: &KvmMsrs<N>) -> io::Result<u32> {
        if msrs.header.nmsrs as usize > N {
            return Err(Errno::INVAL);
        }
        // SAFETY: the kernel reads `nmsrs` (≤ N) entries of the struct and returns the number written.
        unsafe { kvm_ioctl(&self.fd, KVM_SET_MSRS, arg_ro(msrs)) }
    }

    pub fn get_lapic(&self) -> io::Result<KvmLapicState> {
        let mut lapic = KvmLapicState { regs: [0; 1024] };
        // SAFETY: the kernel writes one kvm_lapic_state.
        unsafe { kvm_ioctl(&self.fd, KVM_GET_LAPIC, arg(&mut lapic))? };
        Ok(lapic)
    }

    pub fn set_lapic(&self, lapic: &KvmLapicState) -> io::Result<()> {
        // SAFETY: the kernel reads one kvm_lapic_state.
        unsafe { kvm_ioctl(&self.fd, KVM_SET_LAPIC, arg_ro(lapic)).map(drop) }
    }

    fn run_head(&self) -> KvmRun {
        // SAFETY: the run page is at least size_of::<KvmRun>() bytes (checked in create_vcpu), page aligned, and the kernel does not write it outside KVM_RUN, which needs `&mut self`.
        unsafe { self.run.as_ptr().cast::<KvmRun>().read() }
    }

    /// Asks the next `KVM_RUN` to return at once with `EINTR` (used with a
    /// signal handler to stop the vCPU promptly).
    pub fn set_immediate_exit(&mut self, on: bool) {
        // SAFETY: offset 1 (`immediate_exit`) lies in the run page; `&mut self` excludes a concurrent KVM_RUN from this thread.
        unsafe { self.run.as_ptr().add(1).write_volatile(u8::from(on)) }
    }

    /// Makes [`kick`] set this vCPU's `immediate_exit` from now on (for at
    /// most `MAX_CPUS` vCPUs). The run page then stays mapped for the rest
    /// of the process (drop leaves it).
    pub fn route_kicks(&self) {
        // Offset 1 (`immediate_exit`) is inside the run page.
        let p = self.run.as_ptr().wrapping_add(1);
        let _ = KICKS.iter().find(|k| k.compare_exchange(core::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire).is_ok());
    }

    /// Runs the vCPU until the next exit.
    pub fn run(&mut self) -> io::Result<Exit<'_>> {
        // SAFETY: KVM_RUN takes no argument; it writes the run page we own.
        match unsafe { kvm_ioctl(&self.fd, KVM_RUN, int(0)) } {
            Ok(_) => {}
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
                // SAFETY: [start, end) lies inside the run page (checked) and the returned borrow of `self` excludes another KVM_RUN.
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
        if KICKS.iter().any(|k| k.load(Ordering::Acquire) == self.run.as_ptr().wrapping_add(1)) {
            return; // `kick` may still write it: the page stays.
        }
        // SAFETY: `run`/`run_size` describe the mapping made in create_vcpu; no borrow of it outlives `self`, and `kick` does not use it (checked above).
        let _ = unsafe { mm::munmap(self.run.as_ptr().cast(), self.run_size) };
    }
}

/// `&kvm_run.immediate_exit` of each vCPU that [`Vcpu::route_kicks`], or null.
static KICKS: [AtomicPtr<u8>; linker::abi::MAX_CPUS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; linker::abi::MAX_CPUS];

/// Makes every vCPU's next (or current) `KVM_RUN` return `EINTR` at once:
/// sets each `immediate_exit`, which a signal that lands just before
/// `KVM_RUN` cannot make it miss. The signal that led here interrupted
/// one vCPU thread, whichever the kernel chose; marking them all makes
/// sure that one polls the devices even if it was between two `KVM_RUN`s
/// (the others poll once more, harmlessly). Async-signal-safe; does
/// nothing before [`Vcpu::route_kicks`].
pub fn kick() {
    for k in &KICKS {
        let p = k.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: a non-null entry points at the immediate_exit byte of a run page that stays mapped for the rest of the process (`route_kicks`, Drop); the kernel reads the byte, the volatile write is a plain byte store.
            unsafe { core::ptr::write_volatile(p, 1) };
        }
    }
}
