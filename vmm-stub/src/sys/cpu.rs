//! What the host CPU tells this process about itself.

/// Whether the CPU offers hardware virtualization to this (host) kernel:
/// VMX (Intel, CPUID.1:ECX bit 5) or SVM (AMD, CPUID.80000001h:ECX bit 2).
/// A /dev/kvm on a CPU with neither is a paravirtual KVM (kvm_pvm in a
/// cloud VM without nested virtualization): it runs simple guests by
/// emulation, not Linux.
pub fn hardware_virtualization() -> bool {
    use core::arch::x86_64::__cpuid;
    const VMX: u32 = 1 << 5;
    const SVM: u32 = 1 << 2;
    // CPUID is available on every x86_64 CPU and only reads identification registers.
    let vmx = __cpuid(1).ecx & VMX != 0;
    let svm = __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & SVM != 0;
    vmx || svm
}

/// How many host CPUs this process may run on (its affinity mask; up to
/// 1024), or `None` if the kernel does not say.
pub fn usable_cpus() -> Option<u32> {
    use super::syscall::{syscall, SYS_SCHED_GETAFFINITY};
    let mut mask = [0u64; 16];
    // sched_getaffinity returns the bytes it wrote; the rest of `mask` stays zero.
    // SAFETY: sched_getaffinity(0 = this thread, size, buf) writes at most `size` bytes into `mask`, a local of exactly that size.
    unsafe { syscall(SYS_SCHED_GETAFFINITY, [0, core::mem::size_of_val(&mask), mask.as_mut_ptr() as usize, 0]) }.ok()?;
    // Clearing the lowest set bit per step: smaller than `count_ones`
    // without the popcnt instruction, and the mask is mostly zero.
    let mut n = 0u32;
    for mut w in mask {
        while w != 0 {
            w &= w - 1;
            n = n.wrapping_add(1); // at most 1024
        }
    }
    Some(n)
}
