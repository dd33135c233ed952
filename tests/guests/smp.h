/* SMP bring-up for the bare-metal test guests (smp.c, virtio.c MODE_SMP_BLK).
 * start_aps() copies a real-mode trampoline to TRAMPOLINE, fills in the
 * BSP's GDT and page tables, enables the local APIC and sends INIT, then
 * SIPI (vector TRAMPOLINE >> 12) to all other CPUs, as Linux does. Each AP
 * goes from real mode straight to long mode (PE and PG set together, then
 * a far jump to the stub's 64-bit code segment 0x10), takes the next index
 * (0, 1, ... in arrival order) and calls ap_main(index) on its own stack.
 * The includer defines u8/u16/u32/u64 and ap_main, which must not return. */

#define TRAMPOLINE 0x1000UL
#define LAPIC 0xfee00000UL
#define MAX_APS 63

void ap_main(u32 index) __attribute__((used, noreturn));
u8 ap_stacks[MAX_APS][4096] __attribute__((aligned(4096)));
volatile u32 ap_next;

__asm__(
    ".pushsection .text\n"
    ".code16\n"
    "tramp_start:\n"
    "  cli\n"
    "  xorw %ax, %ax\n"
    "  movw %ax, %ds\n"
    "  lgdtl 0x1000 + (tramp_gdtr - tramp_start)\n"
    "  movl %cr4, %eax\n"
    "  orl $0x20, %eax\n"                 /* PAE */
    "  movl %eax, %cr4\n"
    "  movl 0x1000 + (tramp_cr3 - tramp_start), %eax\n"
    "  movl %eax, %cr3\n"
    "  movl $0xc0000080, %ecx\n"          /* EFER.LME */
    "  rdmsr\n"
    "  orl $0x100, %eax\n"
    "  wrmsr\n"
    "  movl %cr0, %eax\n"
    "  orl $0x80000001, %eax\n"           /* PG | PE */
    "  movl %eax, %cr0\n"
    "  ljmpl $0x10, $ap_entry64\n"
    ".balign 8\n"
    "tramp_gdtr: .word 0\n .quad 0\n"
    "tramp_cr3: .long 0\n"
    "tramp_end:\n"
    ".code64\n"
    "ap_entry64:\n"
    "  movw $0x18, %ax\n"
    "  movw %ax, %ds\n"
    "  movw %ax, %es\n"
    "  movw %ax, %ss\n"
    "  movl $1, %eax\n"
    "  lock xaddl %eax, ap_next(%rip)\n"
    "  movl %eax, %edi\n"
    "  leaq ap_stacks(%rip), %rsp\n"
    "  leal 1(%rax), %edx\n"
    "  shlq $12, %rdx\n"
    "  addq %rdx, %rsp\n"
    "  call ap_main\n"
    "1: hlt\n"
    "  jmp 1b\n"
    ".popsection\n");

extern const u8 tramp_start[], tramp_end[], tramp_gdtr[], tramp_cr3[];

static inline void lapic_w(u32 reg, u32 v) { *(volatile u32 *)(LAPIC + reg) = v; }
static inline u32 lapic_r(u32 reg) { return *(volatile u32 *)(LAPIC + reg); }
static inline void cpuid(u32 leaf, u32 sub, u32 r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}
static inline u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return lo | (u64)hi << 32;
}
static void spin(u32 n) { for (u32 i = 0; i < n; i++) __asm__ volatile("pause"); }

/* This CPU's APIC id: CPUID leaf 1 EBX[31:24]. */
static u32 apic_id(void) {
    u32 r[4];
    cpuid(1, 0, r);
    return r[1] >> 24;
}

/* Logical processors CPUID says the package has (leaf 1 EBX[23:16]). */
static u32 cpu_count(void) {
    u32 r[4];
    cpuid(1, 0, r);
    return (r[1] >> 16) & 0xff;
}

static void start_aps(void) {
    for (u64 i = 0; i < (u64)(tramp_end - tramp_start); i++) ((volatile u8 *)TRAMPOLINE)[i] = tramp_start[i];
    struct { u16 limit; u64 base; } __attribute__((packed)) gdtr;
    __asm__ volatile("sgdt %0" : "=m"(gdtr));
    u64 cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    volatile u8 *g = (volatile u8 *)(TRAMPOLINE + (u64)(tramp_gdtr - tramp_start));
    for (u32 i = 0; i < sizeof gdtr; i++) g[i] = ((const u8 *)&gdtr)[i];
    *(volatile u32 *)(TRAMPOLINE + (u64)(tramp_cr3 - tramp_start)) = (u32)cr3;
    lapic_w(0xf0, lapic_r(0xf0) | 0x100);     /* software-enable the APIC */
    lapic_w(0x310, 0);
    lapic_w(0x300, 0x000c4500);                /* INIT, all excluding self */
    spin(10000);
    for (int k = 0; k < 2; k++) {
        lapic_w(0x300, 0x000c4600 | (u32)(TRAMPOLINE >> 12)); /* SIPI */
        spin(2000);
    }
}

/* Waits until `*count` reaches `want` or about 20 s pass (TSC ~1-4 GHz); whether it did. */
static int wait_for(volatile u32 *count, u32 want) {
    u64 t0 = rdtsc();
    while (*count < want) {
        if (rdtsc() - t0 > 40000000000UL) return 0;
        __asm__ volatile("pause");
    }
    return 1;
}
