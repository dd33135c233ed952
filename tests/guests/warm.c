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
#define MODE_BLK 3         /* as MODE_WARM, reading the rootfs disk (slot 3) before and after */
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

#if MODE == MODE_BLK
/* A minimal virtio-blk driver (as tests/guests/virtio.c), polling: the
 * stub completes a request within its notify. */
#define MMIO3 0xd0003000UL
#define QBASE 0x840000UL
#define HDR 0xa00000UL
#define STATUS 0xa00100UL
#define DATA(k) (0xa01000UL + 0x1000UL * (k))
static inline void w32(u32 off, u32 v) { *(volatile u32 *)(MMIO3 + off) = v; }
static inline u32 r32(u32 off) { return *(volatile u32 *)(MMIO3 + off); }
static u16 next_avail, seen;
static void wr64(u64 a, u64 v) { *(volatile u64 *)a = v; }
static void blk_begin(void) {
    for (u64 a = QBASE; a < QBASE + 0x2000; a += 8) wr64(a, 0);
    w32(0x70, 0); w32(0x70, 1); w32(0x70, 3);
    w32(0x24, 1); w32(0x20, 1); /* VERSION_1 */
    w32(0x70, 0xb);
    w32(0x30, 0); w32(0x38, 32);
    w32(0x80, QBASE); w32(0x84, 0); w32(0x90, QBASE + 0x800); w32(0x94, 0); w32(0xa0, QBASE + 0x1000); w32(0xa4, 0);
    w32(0x44, 1);
    w32(0x70, 0xf);
}
static void desc(u16 i, u64 addr, u32 len, u16 flags, u16 next) {
    u64 d = QBASE + 16 * (u64)i;
    wr64(d, addr); *(volatile u32 *)(d + 8) = len; *(volatile u16 *)(d + 12) = flags; *(volatile u16 *)(d + 14) = next;
}
/* Reads 1 KiB at `sector` into DATA(k): 0 when the device answered it. */
static int blk_read(u64 sector, u32 k) {
    *(volatile u32 *)HDR = 0; *(volatile u32 *)(HDR + 4) = 0; wr64(HDR + 8, sector);
    *(volatile u8 *)STATUS = 0xff;
    u16 h = (u16)(next_avail * 3 % 30);
    desc(h, HDR, 16, 1, h + 1);
    desc(h + 1, DATA(k), 1024, 3, h + 2);
    desc(h + 2, STATUS, 1, 2, 0);
    *(volatile u16 *)(QBASE + 0x800 + 4 + 2 * (u64)(next_avail % 32)) = h;
    next_avail++;
    __asm__ volatile("" ::: "memory");
    *(volatile u16 *)(QBASE + 0x800 + 2) = next_avail;
    w32(0x50, 0);
    if (*(volatile u16 *)(QBASE + 0x1000 + 2) != (u16)(seen + 1)) return 1;
    u32 id = *(volatile u32 *)(QBASE + 0x1000 + 4 + 8 * (u64)(seen % 32));
    seen++;
    return id != h || *(volatile u8 *)STATUS != 0;
}
/* The test fills the rootfs section with byte i = i*7+3 (as virtio_guests). */
static int data_ok(u32 k, u64 sector) {
    for (u32 i = 0; i < 1024; i += 61)
        if (*(volatile u8 *)(DATA(k) + i) != (u8)((sector * 512 + i) * 7 + 3)) return 0;
    return 1;
}
#endif

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
#if MODE == MODE_BLK
    blk_begin();
    check(blk_read(1, 0) == 0 && data_ok(0, 1), "blk before");
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
#if MODE == MODE_BLK
    /* The device resumes at the next avail entry: the first request (into
     * DATA(0), cleared now) is not served again. */
    for (u32 i = 0; i < 1024; i++) *(volatile u8 *)(DATA(0) + i) = 0;
    int blk = blk_read(2, 1) == 0 && data_ok(1, 2) && *(volatile u8 *)(DATA(0) + 61) == 0;
    ok &= check(blk && (r32(0x70) & 0x40) == 0, "blk after");
#endif
    finish(ok ? 0 : 1);
}
