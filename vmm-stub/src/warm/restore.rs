//! Resuming a warm image's snapshot (feature `warm`). Order of the work:
//! validate both sections (a damaged or hostile one fails the run with
//! 125, like any damaged section), decide whether this run and host can
//! resume it (else `None`: the caller boots cold, and `--smolvm-log=debug`
//! says why), then map the saved pages and put the state back.

use crate::bus::{Bus, Ctx};
use crate::mem::{GuestAddress, GuestMemory};
use crate::out::{self, Line};
use crate::payload::{Mapped, Payload};
use crate::sys::kvm::*;
use linker::image::{Kind, Section};
use linker::warm::{self, MachineState, MemoryRuns};

/// A validated snapshot this host can resume.
pub struct Snapshot {
    state: Mapped,
    memory: Mapped,
    memory_section: Section,
}

/// Why this run boots cold: one debug line.
fn cold(why: &str) -> Option<Snapshot> {
    if out::debug_enabled() {
        Line::debug().s("warm image: booting cold: ").s(why).emit();
    }
    None
}

fn damaged(e: warm::WarmError) -> ! {
    Line::new().s(e.message()).s("; rebuild it with `smolvm warm`").fail()
}

/// The image's snapshot, if it has one that this run (`mem_len` bytes of
/// RAM, `cpus` vCPUs) can resume on this host.
pub fn open(payload: &Payload, kvm: &Kvm, mem_len: u64, cpus: usize) -> Option<Snapshot> {
    let (Some(state_section), Some(memory_section)) = (payload.section(Kind::MachineState), payload.section(Kind::GuestMemory)) else {
        return None;
    };
    let map = |s: &Section| payload.map_checked(s).unwrap_or_else(|e| match e {
        crate::payload::PayloadError::Io(e) => out::fail_errno("cannot map the warm snapshot", e),
        crate::payload::PayloadError::Image(e) => Line::new().s(e.message()).fail(),
    });
    let state = map(&state_section);
    let memory = map(&memory_section);
    let s = MachineState::parse(state.bytes()).unwrap_or_else(|e| damaged(e));
    let l = s.layout;
    MemoryRuns::parse(memory.bytes(), memory_section.len, l.mem_size).unwrap_or_else(|e| damaged(e));
    if l.mem_size != mem_len {
        return cold("the run asks for a different memory size than the snapshot's");
    }
    if l.vcpus as usize != cpus {
        return cold("the run asks for a different number of vCPUs than the snapshot's");
    }
    if kvm.missing_cap(&super::NEEDED_CAPS).is_some() {
        return cold("KVM here lacks a capability restoring needs (MP state, clock, events, PIT, debug registers or XSAVE)");
    }
    if l.xsave_len != super::XSAVE_LEN {
        return cold("the snapshot's XSAVE area is larger than this stub restores");
    }
    if !tsc_fits(kvm, l.tsc_khz) {
        return cold("this host's TSC runs at another frequency than the snapshot's, and KVM here cannot scale it");
    }
    let mut supported = KvmCpuid2 { header: KvmCpuid2Header::default(), entries: [KvmCpuidEntry2::default(); MAX_CPUID_ENTRIES] };
    if kvm.supported_cpuid(&mut supported).is_err() {
        return cold("KVM_GET_SUPPORTED_CPUID failed");
    }
    let mut saved = [KvmCpuidEntry2::default(); MAX_CPUID_ENTRIES];
    for (e, b) in saved.iter_mut().zip(s.cpuid().chunks_exact(warm::CPUID_ENTRY_LEN)) {
        *e = super::cpuid_entry(b);
    }
    let n = (supported.header.nent as usize).min(MAX_CPUID_ENTRIES);
    if !super::cpu_features_fit(&saved[..l.cpuid_count as usize], &supported.entries[..n], l.xsave_features) {
        return cold("this host's CPU lacks features the snapshot's guest may use");
    }
    Some(Snapshot { state, memory, memory_section })
}

/// KVM's own tolerance for a TSC frequency it does not scale
/// (`tsc_tolerance_ppm`).
const TSC_TOLERANCE_PPM: u64 = 250;

/// Whether the guest's clocks keep their rate here: the snapshot's TSC
/// frequency is unknown (0), KVM scales the TSC (`KVM_CAP_TSC_CONTROL`:
/// `restore` sets it), or this host's runs within KVM's tolerance of it.
/// Without scaling, the host's rate is read from a throwaway vCPU.
fn tsc_fits(kvm: &Kvm, saved_khz: u32) -> bool {
    if saved_khz == 0 || kvm.missing_cap(&[KVM_CAP_TSC_CONTROL]).is_none() {
        return true;
    }
    let Some(host) = kvm.create_vm().and_then(|vm| vm.create_vcpu(0)?.tsc_khz()).ok() else { return false };
    rates_match(saved_khz, host)
}

/// Whether `host` kHz is within [`TSC_TOLERANCE_PPM`] of `saved` kHz.
fn rates_match(saved: u32, host: u32) -> bool {
    let (saved, host) = (u64::from(saved), u64::from(host));
    saved.abs_diff(host) * 1_000_000 <= saved * TSC_TOLERANCE_PPM
}

/// A state ioctl failed after the guest's pages were mapped: too late to
/// boot cold in this process.
fn restore_failed(what: &str, e: rustix::io::Errno) -> ! {
    Line::new().s("cannot restore the warm snapshot: ").s(what).errno(e).s("); the cold image it was made from still runs)").fail()
}

/// Hands `ioctl` a copy of `bytes` (the ioctl takes `&mut`: a `KVM_GET_*`
/// would write it), failing the run with `what` on an error.
fn set(ioctl: impl Fn(&mut [u8]) -> rustix::io::Result<()>, bytes: &[u8], what: &str) {
    let mut copy = [0u8; 4096];
    let Some(b) = copy.get_mut(..bytes.len()) else { restore_failed(what, rustix::io::Errno::INVAL) };
    b.copy_from_slice(bytes);
    ioctl(b).unwrap_or_else(|e| restore_failed(what, e));
}

impl Snapshot {
    /// The saved device records (validated by `open`).
    fn devices(&self) -> impl Iterator<Item = warm::Device> + '_ {
        let s = self.state();
        (0..s.layout.device_count).filter_map(move |i| s.device(i))
    }

    /// Whether this run's devices are the snapshot's (else: boot cold).
    pub fn devices_fit(&self, bus: &Bus<'_>) -> bool {
        bus.fits(self.devices()) || cold("this run's devices differ from the snapshot's (more, fewer or other disks, shares or network)").is_some()
    }

    /// Puts the device records back, once the VM exists.
    pub fn resume_devices(&self, bus: &mut Bus<'_>, mem: &GuestMemory, vm: &Vm) {
        if !bus.resume(&mut Ctx { mem, irq: vm }, self.devices()) {
            Line::new().s("cannot restore the warm snapshot: a device record does not fit").fail();
        }
    }

    fn state(&self) -> MachineState<'_> {
        // Validated by `open` from the same mapping.
        MachineState::parse(self.state.bytes()).unwrap_or_else(|e| damaged(e))
    }

    /// Maps the saved pages over `mem` (`MAP_PRIVATE` from the image: copies
    /// share them), creates the VM and its vCPUs and restores their state.
    pub fn restore(&self, kvm: &Kvm, payload: &Payload, mem: &mut GuestMemory) -> (Vm, heapless::Vec<Vcpu, { linker::abi::MAX_CPUS }>) {
        let s = self.state();
        let runs = MemoryRuns::parse(self.memory.bytes(), self.memory_section.len, s.layout.mem_size).unwrap_or_else(|e| damaged(e));
        if out::debug_enabled() {
            Line::debug().s("warm image: resuming the snapshot (").u(runs.count() as u64).s(" page runs)").emit();
        }
        for r in runs.iter() {
            // Inside the section (validated), which lies inside the file.
            let at = self.memory_section.offset.wrapping_add(r.offset);
            mem.map_file(GuestAddress(r.gpa), r.len(), payload.fd(), at).unwrap_or_else(|e| restore_failed("mapping the saved pages", e));
        }
        let vm = kvm.create_vm().unwrap_or_else(|e| restore_failed("KVM_CREATE_VM", e));
        mem.register(&vm).unwrap_or_else(|e| restore_failed("KVM_SET_USER_MEMORY_REGION", e));
        vm.create_irqchip().unwrap_or_else(|e| restore_failed("KVM_CREATE_IRQCHIP", e));
        vm.create_pit2().unwrap_or_else(|e| restore_failed("KVM_CREATE_PIT2", e));
        // The kvmclock continues from the saved value; the flags KVM
        // reported (TSC stable, host TSC) are not ones to set.
        let mut clock = [0u8; warm::CLOCK_LEN];
        clock.copy_from_slice(s.clock());
        clock[8..12].fill(0);
        let vm_state: [(_, &[u8], _); 5] = [
            (KVM_SET_IRQCHIP, s.pic_master(), "KVM_SET_IRQCHIP (PIC master)"),
            (KVM_SET_IRQCHIP, s.pic_slave(), "KVM_SET_IRQCHIP (PIC slave)"),
            (KVM_SET_IRQCHIP, s.ioapic(), "KVM_SET_IRQCHIP (IOAPIC)"),
            (KVM_SET_PIT2, s.pit(), "KVM_SET_PIT2"),
            (KVM_SET_CLOCK, &clock, "KVM_SET_CLOCK"),
        ];
        for (op, bytes, what) in vm_state {
            set(|b| vm.state_ioctl(op, b), bytes, what);
        }

        let mut cpuid = KvmCpuid2 { header: KvmCpuid2Header::default(), entries: [KvmCpuidEntry2::default(); MAX_CPUID_ENTRIES] };
        for (e, b) in cpuid.entries.iter_mut().zip(s.cpuid().chunks_exact(warm::CPUID_ENTRY_LEN)) {
            *e = super::cpuid_entry(b);
        }
        cpuid.header.nent = s.layout.cpuid_count;
        let mut vcpus = heapless::Vec::new();
        for id in 0..s.layout.vcpus {
            let v = s.vcpu(id);
            let vcpu = vm.create_vcpu(id).unwrap_or_else(|e| restore_failed("KVM_CREATE_VCPU", e));
            // Firecracker's order: CPUID first (it fixes what the rest may
            // hold), sregs after regs (paging, EFER), XSAVE and XCRs after
            // CR4, LAPIC after sregs (APIC base), MSRs after the LAPIC
            // (writing it re-arms the TSC-deadline timer, which the MSR then
            // sets; IA32_TSC precedes TSC_DEADLINE: the list is in index
            // order), events last (a pending exception or NMI lands on the
            // state above).
            vcpu.set_cpuid2(&cpuid).unwrap_or_else(|e| restore_failed("KVM_SET_CPUID2", e));
            // Where KVM scales the TSC, the guest's runs at the saved rate
            // (elsewhere `open` checked the host's is the same).
            if s.layout.tsc_khz != 0 && kvm.missing_cap(&[KVM_CAP_TSC_CONTROL]).is_none() {
                vcpu.set_tsc_khz(s.layout.tsc_khz).unwrap_or_else(|e| restore_failed("KVM_SET_TSC_KHZ", e));
            }
            vcpu.set_mp_state(v.mp_state).unwrap_or_else(|e| restore_failed("KVM_SET_MP_STATE", e));
            let parts: [(_, &[u8], _); 6] = [
                (KVM_SET_REGS, v.regs, "KVM_SET_REGS"),
                (KVM_SET_SREGS, v.sregs, "KVM_SET_SREGS"),
                (KVM_SET_XSAVE, v.xsave, "KVM_SET_XSAVE"),
                (KVM_SET_XCRS, v.xcrs, "KVM_SET_XCRS"),
                (KVM_SET_DEBUGREGS, v.debugregs, "KVM_SET_DEBUGREGS"),
                (KVM_SET_LAPIC, v.lapic, "KVM_SET_LAPIC"),
            ];
            for (op, bytes, what) in parts {
                set(|b| vcpu.state_ioctl(op, b), bytes, what);
            }
            let mut msrs = KvmMsrs::<{ warm::SAVED_MSRS.len() }> { header: KvmMsrsHeader { nmsrs: s.layout.msr_count, pad: 0 }, entries: [KvmMsrEntry::default(); warm::SAVED_MSRS.len()] };
            for (j, e) in msrs.entries.iter_mut().enumerate() {
                if let Some((index, data)) = v.msr(j) {
                    *e = KvmMsrEntry { index, reserved: 0, data };
                }
            }
            match vcpu.set_msrs(&msrs) {
                Ok(n) if n == s.layout.msr_count => {}
                Ok(_) => restore_failed("KVM_SET_MSRS refused an MSR", rustix::io::Errno::INVAL),
                Err(e) => restore_failed("KVM_SET_MSRS", e),
            }
            set(|b| vcpu.state_ioctl(KVM_SET_VCPU_EVENTS, b), v.events, "KVM_SET_VCPU_EVENTS");
            // At most MAX_CPUS (validated).
            let _ = vcpus.push(vcpu);
        }
        (vm, vcpus)
    }
}

#[cfg(test)]
mod tests {
    use super::rates_match;

    #[test]
    fn tsc_rates_match_within_kvms_tolerance() {
        assert!(rates_match(2_596_140, 2_596_140));
        assert!(rates_match(2_000_000, 2_000_500)); // 250 ppm
        assert!(!rates_match(2_000_000, 2_000_501));
        assert!(!rates_match(2_000_000, 1_999_499));
        assert!(!rates_match(2_596_140, 5_192_280));
        assert!(!rates_match(1, u32::MAX));
    }
}
