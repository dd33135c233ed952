/* Bare-metal SMP test guests for vmm-stub (tests/tests/smp_guests.rs), run
 * with --smolvm-cpus=N. The BSP starts the other vCPUs with INIT/SIPI
 * (smp.h); each AP records its APIC ids and does some work in its own slot.
 * CASE (build define):
 *   1 count:  the BSP waits for every AP, prints one line per CPU, exits 0
 *   2 exit:   the AP with APIC id 1 ends the VM through the exit port (7)
 *   3 triple: the AP with APIC id 1 triple-faults
 *   4 spin:   every CPU spins after "spinning" (for SIGTERM/SIGKILL)
 *   5 serial: every CPU writes its letter to the UART ROUNDS times
 *   6 exits:  (benchmark) the BSP alone reads the UART scratch register
 *             EXITS times, then exits 0: the cost of handling an exit
 * Output goes to the serial console (--smolvm-log=kernel shows it). */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#include "smp.h"

#define ROUNDS 400

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) {
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static __attribute__((noreturn)) void finish(u8 status) {
    outb(0xf4, status);
    for (;;) __asm__ volatile("hlt");
}

/* One CPU at a time on the console, so lines do not interleave. */
static volatile u32 console_lock;
static void lock(void) { while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE)) __asm__ volatile("pause"); }
static void unlock(void) { __atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE); }
static void put(const char *s) { while (*s) outb(0x3f8, (u8)*s++); }
static void put_dec(u64 v) {
    char b[21];
    int i = 20;
    b[i] = 0;
    do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    put(b + i);
}

static volatile u32 aps_done;
/* Per APIC id: CPUID APIC id + 1 (0: nobody), LAPIC register id, x2APIC id, work. */
static volatile u32 seen_apic[64], seen_lapic[64], seen_x2apic[64];
static volatile u64 work[64];

/* What each CPU records: its ids, then work only it does (a sum the test recomputes). */
static void record(void) {
    u32 id = apic_id() & 63, r[4];
    seen_lapic[id] = lapic_r(0x20) >> 24;
    cpuid(0, 0, r);
    seen_x2apic[id] = 0xffffffff;          /* no leaf 0xB (AMD hosts may lack it) */
    if (r[0] >= 0xb) {
        cpuid(0xb, 0, r);
        if ((r[2] >> 8) & 0xff) seen_x2apic[id] = r[3];
    }
    u64 sum = 0;
    for (u64 i = 0; i < 1000; i++) sum += i * (id + 1);
    work[id] = sum;
    seen_apic[id] = id + 1;
}

static void hammer_serial(void) {
    char c = (char)('a' + apic_id());
    for (u32 i = 0; i < ROUNDS; i++) outb(0x3f8, (u8)c);
}

void ap_main(u32 index) {
    (void)index;
    record();
    __atomic_fetch_add(&aps_done, 1, __ATOMIC_RELEASE);
#if CASE == 2
    if (apic_id() == 1) finish(7);
#elif CASE == 3
    if (apic_id() == 1) {
        lock();
        put("ap 1: about to triple fault\n");
        unlock();
        __asm__ volatile("ud2");
    }
#elif CASE == 4
    for (;;) __asm__ volatile("pause");
#elif CASE == 5
    hammer_serial();
    __atomic_fetch_add(&aps_done, 1, __ATOMIC_RELEASE);
#endif
    for (;;) __asm__ volatile("cli; hlt");
}

void _start(void) __attribute__((noreturn, section(".text.start")));
void _start(void) {
#if CASE == 6
    for (u32 i = 0; i < EXITS; i++) (void)inb(0x3ff);
    finish(0);
#endif
    u32 n = cpu_count();
    if (n < 1 || n > 64) finish(90);
    record();
    start_aps();
    if (!wait_for(&aps_done, n - 1)) {
        put("timeout: ");
        put_dec(aps_done);
        put(" APs up\n");
        finish(91);
    }
#if CASE == 1
    put("cpus ");
    put_dec(n);
    put("\n");
    for (u32 id = 0; id < 64; id++) {
        if (!seen_apic[id]) continue;
        put("cpu apic ");
        put_dec(seen_apic[id] - 1);
        put(" lapic ");
        put_dec(seen_lapic[id]);
        put(" x2apic ");
        put_dec(seen_x2apic[id]);
        put(" work ");
        put_dec(work[id]);
        put("\n");
    }
    finish(0);
#elif CASE == 2 || CASE == 3
    for (;;) __asm__ volatile("pause");
#elif CASE == 4
    put("spinning\n");
    for (;;) __asm__ volatile("pause");
#elif CASE == 5 || CASE == 6
    hammer_serial();
    if (!wait_for(&aps_done, 2 * (n - 1))) finish(92);
    put("\nserial done\n");
    finish(0);
#else
#error unknown CASE
#endif
}
