/* Bare-metal guest for warm images (tests/tests/warm_guests.rs): counts on
 * the serial port and, at count SNAP_AT, writes the snapshot port (0xf5,
 * linker::abi::SNAPSHOT_PORT). A saving stub saves the machine there and
 * ends the run; a stub restoring the snapshot resumes right after the
 * `out`, and the guest checks that its registers, its memory (a pattern it
 * wrote, and zeros it did not) and its LAPIC timer survived. A plain stub
 * ignores the write: the same output in one run. No IDT: any fault
 * triple-faults. No SSE: kvm_pvm emulates guest kernel-mode code and its
 * emulator fails on `movq %r15, %xmm3` (KVM internal error 1), so the
 * XSAVE area is restored but not checked from inside here. */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define MODE_WARM 1
#define MODE_LIVE_DEVICE 2 /* as MODE_WARM, after acknowledging the stdio console (slot 0) */
#ifndef SNAP_AT
#define SNAP_AT 4
#endif
#define COUNT 10
#define LAPIC 0xfee00000UL
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_INIT_COUNT 0x380
#define LAPIC_CUR_COUNT 0x390
#define LAPIC_DIVIDE 0x3e0
#define TIMER_LVT (1u << 17 | 1u << 16 | 0x40) /* periodic, masked, vector 0x40 */
#define TIMER_INIT 0x7fffffffu

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }

static void put(const char *s) {
    while (*s) outb(0x3f8, (u8)*s++);
}

static __attribute__((noreturn)) void finish(u8 status) {
    outb(0xf4, status);
    for (;;) __asm__ volatile("hlt");
}

static volatile u32 *lapic(u32 reg) { return (volatile u32 *)(LAPIC + reg); }

static u8 pattern[64 * 1024];
static u8 zeros[16 * 1024];

static int check(int ok, const char *what) {
    put(what);
    put(ok ? " ok\n" : " BAD\n");
    return ok;
}

void _start(const u8 *boot_params) __attribute__((noreturn, section(".text.start")));
void _start(const u8 *boot_params) {
    (void)boot_params;
    for (u64 i = 0; i < sizeof pattern; i++) pattern[i] = (u8)(i * 7 + 3);
#if MODE == MODE_LIVE_DEVICE
    *(volatile u32 *)(0xd0000000UL + 0x70) = 1; /* virtio-mmio status: ACKNOWLEDGE */
#endif
    *lapic(LAPIC_DIVIDE) = 0xb; /* divide by 1 */
    *lapic(LAPIC_LVT_TIMER) = TIMER_LVT;
    *lapic(LAPIC_INIT_COUNT) = TIMER_INIT;
    u64 gp = 0, other = 0;
    for (int i = 0; i < COUNT; i++) {
        char line[] = "count 0\n";
        line[6] = (char)('0' + i);
        put(line);
        if (i == SNAP_AT) {
            /* r15 and r14 hold values across the snapshot point. */
            __asm__ volatile(
                "mov %2, %%r15\n\t"
                "mov %2, %%r14\n\t"
                "not %%r14\n\t"
                "outb %%al, $0xf5\n\t"
                "mov %%r15, %0\n\t"
                "mov %%r14, %1"
                : "=&r"(gp), "=&r"(other)
                : "r"(0x5eed1234abcd9876UL), "a"(0)
                : "r14", "r15", "memory");
        }
    }
    int ok = check(gp == 0x5eed1234abcd9876UL && other == ~gp, "registers");
    int mem = 1;
    for (u64 i = 0; i < sizeof pattern; i++) mem &= pattern[i] == (u8)(i * 7 + 3);
    for (u64 i = 0; i < sizeof zeros; i++) mem &= zeros[i] == 0;
    ok &= check(mem, "memory");
    u32 a = *lapic(LAPIC_CUR_COUNT), b = *lapic(LAPIC_CUR_COUNT);
    ok &= check(*lapic(LAPIC_LVT_TIMER) == TIMER_LVT && *lapic(LAPIC_INIT_COUNT) == TIMER_INIT && a != 0 && a != b, "lapic timer");
    finish(ok ? 0 : 1);
}
