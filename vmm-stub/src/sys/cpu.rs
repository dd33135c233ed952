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
