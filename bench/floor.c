/* The floor for vmm-stub's startup benchmark: the least a KVM process can
 * do — open /dev/kvm, create a VM with one page of RAM holding `hlt`, create
 * a vCPU (left in real mode at that page) and run it until KVM_EXIT_HLT.
 * Build: gcc -O2 -static -o floor floor.c   Run: ./floor [ram_mib] */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t ram = argc > 1 ? (size_t)atoi(argv[1]) << 20 : 4096;
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) return 2;
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    unsigned char *mem = mmap(0, ram, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (vm < 0 || mem == MAP_FAILED) return 3;
    mem[0] = 0xf4; /* hlt */
    struct kvm_userspace_memory_region r = {.slot = 0, .guest_phys_addr = 0, .memory_size = ram, .userspace_addr = (unsigned long)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r)) return 4;
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_run *run = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (vcpu < 0 || run == MAP_FAILED) return 5;
    struct kvm_sregs s;
    ioctl(vcpu, KVM_GET_SREGS, &s);
    s.cs.base = 0, s.cs.selector = 0;
    ioctl(vcpu, KVM_SET_SREGS, &s);
    struct kvm_regs g = {.rip = 0, .rflags = 2};
    ioctl(vcpu, KVM_SET_REGS, &g);
    while (ioctl(vcpu, KVM_RUN, 0) == 0)
        if (run->exit_reason == KVM_EXIT_HLT) return 0;
    return 6;
}
