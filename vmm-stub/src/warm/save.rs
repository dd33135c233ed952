//! Saving a snapshot (feature `warm-save`: the stub `smolvm warm` runs, not
//! the one in images). `SMOLVM_WARM_SAVE=DIR` opens `DIR/state` and
//! `DIR/memory` before the seccomp filter; when the guest then writes
//! [`linker::abi::SNAPSHOT_PORT`] (its safe point), the vCPU's exit handler
//! writes the machine state and every non-zero page there, in the
//! `linker::warm` layouts, and the run ends with status 0. A guest that
//! never asks leaves both files empty.
//!
//! One vCPU only for now (a consistent snapshot of several needs the
//! others stopped first). Every virtio transport is saved; a device a
//! driver uses must keep no state beyond its transport (disks do; the
//! consoles, 9p, network and balloon do not yet: the run loop refuses).

use crate::mem::{GuestAddress, GuestMemory, PAGE_SIZE};
use crate::sys::cell::WriteOnce;
use crate::sys::kvm::*;
use crate::sys::path::{c_path, PATH_MAX};
use linker::warm::{self, Layout, Run};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self, Mode, OFlags};
use rustix::io::{self, Errno};

struct Files {
    state: OwnedFd,
    memory: OwnedFd,
}

static FILES: WriteOnce<Files> = WriteOnce::new();
/// A page, as an array length.
const PAGE: usize = 4096;
static_assertions::const_assert_eq!(PAGE as u64, PAGE_SIZE);
/// The CPUID the stub gave vCPU 0. Not read back with KVM_GET_CPUID2:
/// kvm_pvm answers that with the host's leaves (128 of them, with features
/// KVM_GET_SUPPORTED_CPUID does not offer), not the ones set.
static CPUID: WriteOnce<KvmCpuid2> = WriteOnce::new();

/// Keeps the CPUID set on vCPU 0 for the snapshot (`start::create_vm`).
pub fn remember_cpuid(cpuid: &KvmCpuid2) {
    CPUID.set(*cpuid);
}

/// Opens the snapshot files when `SMOLVM_WARM_SAVE=DIR` is set (before the
/// filter, which allows no open). `Ok(false)` when it is not.
pub fn prepare(mut env: crate::sys::process::CStrings, cpus: usize) -> io::Result<bool> {
    let Some(dir) = env.find_map(|v| v.strip_prefix(b"SMOLVM_WARM_SAVE=")) else { return Ok(false) };
    if cpus != 1 {
        return Err(Errno::NOTSUP);
    }
    let mut buf = [0u8; PATH_MAX];
    let dir = fs::open(c_path(dir, &mut buf)?, OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::PATH, Mode::empty())?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC;
    let state = fs::openat(&dir, c"state", flags, Mode::from_raw_mode(0o644))?;
    let memory = fs::openat(&dir, c"memory", flags, Mode::from_raw_mode(0o644))?;
    Ok(FILES.set(Files { state, memory }))
}

/// Whether a snapshot request is honoured in this run.
pub fn armed() -> bool {
    FILES.is_set()
}

fn put(fd: &OwnedFd, bytes: &[u8], at: impl TryInto<u64>) -> io::Result<()> {
    let at: u64 = at.try_into().map_err(|_| Errno::FBIG)?;
    let mut done = 0;
    while done < bytes.len() {
        match io::pwrite(fd.as_fd(), &bytes[done..], at + done as u64) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes the snapshot of the VM whose only vCPU is `vcpu`, which has just
/// exited on the snapshot port.
pub fn save(vm: &Vm, vcpu: &mut Vcpu, mem: &GuestMemory, devices: impl Iterator<Item = warm::Device>) -> io::Result<()> {
    let files = FILES.get().ok_or(Errno::BADF)?;
    // Complete the port write (KVM finishes an exit's instruction on the
    // next KVM_RUN): with immediate_exit set it returns at once, and the
    // state read below is the one after the `out`.
    vcpu.set_immediate_exit(true);
    let done = vcpu.run().map(drop);
    vcpu.set_immediate_exit(false);
    done?;

    let cpuid = CPUID.get().ok_or(Errno::NOENT)?;
    let ncpuid = (cpuid.header.nent as usize).min(MAX_CPUID_ENTRIES);
    let xsave_leaf = cpuid.entries[..ncpuid].iter().find(|e| e.function == 0xd && e.index == 0);
    // Every MSR of the list this KVM knows, in order (KVM_GET_MSRS stops at
    // the first it does not, so one at a time).
    let mut msrs = KvmMsrs::<{ warm::SAVED_MSRS.len() }> { header: KvmMsrsHeader::default(), entries: [KvmMsrEntry::default(); warm::SAVED_MSRS.len()] };
    let mut nmsrs = 0;
    for index in warm::SAVED_MSRS {
        let mut one = KvmMsrs::<1> { header: KvmMsrsHeader { nmsrs: 1, pad: 0 }, entries: [KvmMsrEntry { index, reserved: 0, data: 0 }] };
        if vcpu.get_msrs(&mut one)? == 1 {
            msrs.entries[nmsrs] = one.entries[0];
            nmsrs += 1;
        }
    }
    let mut records = heapless::Vec::<warm::Device, { linker::abi::MMIO_MAX_SLOTS }>::new();
    for d in devices {
        records.push(d).map_err(|_| Errno::TOOBIG)?;
    }
    let l = Layout {
        vcpus: 1,
        mem_size: mem.len(),
        xsave_len: super::XSAVE_LEN,
        cpuid_count: u32::try_from(ncpuid).map_err(|_| Errno::INVAL)?,
        xsave_features: xsave_leaf.map_or(0, |e| u64::from(e.eax) | u64::from(e.edx) << 32),
        msr_count: u32::try_from(nmsrs).map_err(|_| Errno::INVAL)?,
        device_count: u32::try_from(records.len()).map_err(|_| Errno::INVAL)?,
        tsc_khz: vcpu.tsc_khz().unwrap_or(0),
    };
    let fd = &files.state;
    put(fd, &l.header(), 0)?;
    let vm_at = l.vm_at();
    let mut buf = [0u8; super::XSAVE_LEN as usize];
    let chips = [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC];
    for (i, chip) in (0..).zip(chips) {
        let b = &mut buf[..warm::IRQCHIP_LEN];
        b.fill(0);
        b[..4].copy_from_slice(&chip.to_le_bytes());
        vm.state_ioctl(KVM_GET_IRQCHIP, b)?;
        put(fd, b, vm_at + i * warm::IRQCHIP_LEN)?;
    }
    for (op, len, at) in [(KVM_GET_PIT2, warm::PIT_LEN, warm::vm_at::PIT), (KVM_GET_CLOCK, warm::CLOCK_LEN, warm::vm_at::CLOCK)] {
        vm.state_ioctl(op, &mut buf[..len])?;
        put(fd, &buf[..len], vm_at + at)?;
    }
    for (i, e) in cpuid.entries[..ncpuid].iter().enumerate() {
        let mut b = [0u8; warm::CPUID_ENTRY_LEN];
        for (w, v) in b.chunks_exact_mut(4).zip([e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx]) {
            w.copy_from_slice(&v.to_le_bytes());
        }
        put(fd, &b, l.cpuid_at() + i * warm::CPUID_ENTRY_LEN)?;
    }

    use warm::vcpu_at;
    let at = l.vcpu_at(0);
    let parts = [
        (KVM_GET_REGS, warm::REGS_LEN, vcpu_at::REGS),
        (KVM_GET_SREGS, warm::SREGS_LEN, vcpu_at::SREGS),
        (KVM_GET_XCRS, warm::XCRS_LEN, vcpu_at::XCRS),
        (KVM_GET_LAPIC, warm::LAPIC_LEN, vcpu_at::LAPIC),
        (KVM_GET_VCPU_EVENTS, warm::EVENTS_LEN, vcpu_at::EVENTS),
        (KVM_GET_DEBUGREGS, warm::DEBUGREGS_LEN, vcpu_at::DEBUGREGS),
        (KVM_GET_XSAVE, super::XSAVE_LEN as usize, l.xsave_at(0) - at),
    ];
    for (op, len, part_at) in parts {
        vcpu.state_ioctl(op, &mut buf[..len])?;
        put(fd, &buf[..len], at + part_at)?;
    }
    put(fd, &u64::from(vcpu.get_mp_state()?).to_le_bytes(), at + vcpu_at::MP_STATE)?;
    for (j, e) in msrs.entries[..nmsrs].iter().enumerate() {
        let mut b = [0u8; warm::MSR_LEN];
        b[..4].copy_from_slice(&e.index.to_le_bytes());
        b[8..].copy_from_slice(&e.data.to_le_bytes());
        put(fd, &b, at + vcpu_at::MSRS + j * warm::MSR_LEN)?;
    }
    for (i, d) in (0..).zip(&records) {
        put(fd, &d.encode(), l.device_at(i))?;
    }
    save_memory(&files.memory, mem)
}

/// Calls `f` with each run of non-zero pages, in guest-address order.
fn each_run(mem: &GuestMemory, mut f: impl FnMut(Run) -> io::Result<()>) -> io::Result<()> {
    let mut page = [0u8; PAGE];
    for (gpa, size, _) in mem.ranges() {
        let mut run: Option<Run> = None;
        for p in 0..size / PAGE_SIZE {
            let addr = gpa + p * PAGE_SIZE;
            mem.read_slice(GuestAddress(addr), &mut page).ok_or(Errno::FAULT)?;
            let used = page.iter().any(|&b| b != 0);
            match (&mut run, used) {
                (Some(r), true) => r.pages += 1,
                (None, true) => run = Some(Run { gpa: addr, pages: 1, offset: 0 }),
                (Some(_), false) => f(run.take().ok_or(Errno::FAULT)?)?,
                (None, false) => {}
            }
        }
        if let Some(r) = run {
            f(r)?;
        }
    }
    Ok(())
}

/// The memory section: the runs of non-zero pages (zero pages are left
/// out: a restored guest reads zeros there), each with its data.
fn save_memory(fd: &OwnedFd, mem: &GuestMemory) -> io::Result<()> {
    let mut count = 0u32;
    each_run(mem, |_| {
        count += 1;
        Ok(())
    })?;
    if count > warm::MAX_RUNS {
        return Err(Errno::TOOBIG);
    }
    put(fd, &warm::memory_header(count, mem.len()), 0)?;
    let mut i = 0usize;
    let mut offset = warm::memory_data_start(count);
    let mut page = [0u8; PAGE];
    each_run(mem, |mut r| {
        r.offset = offset;
        put(fd, &warm::encode_run(&r), warm::MEMORY_HEADER_LEN + i * warm::RUN_LEN)?;
        for p in 0..r.pages {
            mem.read_slice(GuestAddress(r.gpa + p * PAGE_SIZE), &mut page).ok_or(Errno::FAULT)?;
            put(fd, &page, offset + p * PAGE_SIZE)?;
        }
        offset += r.len();
        i += 1;
        Ok(())
    })?;
    // The section ends where the last run's data does: the file (created
    // empty) already does when there are runs; without runs, it is the
    // header page. (No ftruncate: the filter allows it only with shares.)
    if count == 0 {
        put(fd, &[0], offset - 1)?;
    }
    Ok(())
}
