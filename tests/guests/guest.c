/* Bare-metal test guests for vmm-stub, one per MODE (see build.sh and
 * tests/tests/stub_guests.rs). Entered by the stub like a Linux kernel via
 * the 64-bit boot protocol: long mode, identity-mapped low 4 GiB,
 * rsi = boot_params, a small stack. No IDT: any fault triple-faults.
 * Guest kernel code is emulated at ~1 us/instruction on nested hosts, so
 * every mode does as little as it can. */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define MODE_HELLO 1
#define MODE_EXIT 2
#define MODE_BOOTPARAMS 3
#define MODE_TRIPLE 4
#define MODE_SPIN 5
#define MODE_UNKNOWN_IO 6
#define MODE_RESET 7

#ifndef EXPECT_MEM_MIB
#define EXPECT_MEM_MIB 64
#endif
#ifndef STATUS
#define STATUS 0
#endif

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) {
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static void put(const char *s) {
    while (*s) outb(0x3f8, (u8)*s++);
}

static __attribute__((noreturn)) void finish(u8 status) {
    outb(0xf4, status);
    for (;;) __asm__ volatile("hlt");
}

static u32 rd32(const u8 *p) { return p[0] | p[1] << 8 | p[2] << 16 | (u32)p[3] << 24; }
static u64 rd64(const u8 *p) { return rd32(p) | (u64)rd32(p + 4) << 32; }

static int has_prefix(const u8 *s, const char *p) {
    while (*p)
        if (*s++ != (u8)*p++) return 0;
    return 1;
}

/* Whether hay[0..len) contains the n bytes of needle (which may hold NULs). */
static int contains(const u8 *hay, u64 len, const char *needle, u64 n) {
    for (u64 i = 0; i + n <= len; i++) {
        u64 j = 0;
        while (j < n && hay[i + j] == (u8)needle[j]) j++;
        if (j == n) return 1;
    }
    return 0;
}
#define CONTAINS(hay, len, lit) contains(hay, len, lit, sizeof(lit) - 1)

/* Maps guest-physical GiB `gib` 1:1 with 2 MiB pages through a page
 * directory at `pd` (free low RAM), in the stub's page tables. */
static void map_gib(u64 gib, u64 pd) {
    u64 cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    u64 *pdpt = (u64 *)(*(u64 *)(cr3 & ~0xfffUL) & ~0xfffUL);
    for (u64 j = 0; j < 512; j++) ((u64 *)pd)[j] = ((gib << 30) + (j << 21)) | 0x83;
    pdpt[gib] = pd | 3;
    __asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory");
}

/* RAM above 4 GiB: its first and last words hold what we write, and they
 * do not alias the top of low RAM. */
static int high_ram_works(u64 low, u64 high) {
    map_gib(4, 0x10000);
    map_gib(((1UL << 32) + high - 8) >> 30, 0x11000);
    volatile u64 *top_low = (u64 *)(low - 8), *first = (u64 *)(1UL << 32);
    volatile u64 *last = (u64 *)((1UL << 32) + high - 8);
    *top_low = 0x1111;
    *first = 0x2222;
    *last = 0x3333;
    return *top_low == 0x1111 && *first == 0x2222 && *last == 0x3333;
}

/* Checks what the stub promised in boot_params; exits with the number of
 * the first failed check (so the test names it), 0 when all hold. */
static __attribute__((noreturn)) void check_boot_params(const u8 *bp) {
    /* Setup header signature and loader type. */
    if (rd32(bp + 0x202) != 0x53726448 || bp[0x210] != 0xff) finish(10);
    /* e820: low RAM, then RAM from 1 MiB to the end of guest memory
     * (EXPECT_MEM_MIB) or to the virtio-mmio window at 0xd0000000 and the
     * rest from 4 GiB, nothing overlapping. */
    u64 mem = (u64)EXPECT_MEM_MIB << 20;
    u64 low = mem < 0xd0000000UL ? mem : 0xd0000000UL, high = mem - low;
    u8 n = bp[0x1e8];
    if (n < 2 || n > 128) finish(11);
    const u8 *e = bp + 0x2d0;
    if (rd64(e) != 0 || rd32(e + 16) != 1) finish(12);
    const u8 *ram = e + 20 * (n - (high ? 2 : 1));
    if (rd64(ram) != 0x100000 || rd32(ram + 16) != 1) finish(13);
    if (rd64(ram) + rd64(ram + 8) != low) finish(14);
    if (high) {
        const u8 *last = e + 20 * (n - 1);
        if (rd64(last) != 1UL << 32 || rd64(last + 8) != high || rd32(last + 16) != 1) finish(20);
        if (!high_ram_works(low, high)) finish(21);
    }
    /* Command line: ours, NUL-terminated within cmdline_size. */
    const u8 *cmd = (const u8 *)(u64)rd32(bp + 0x228);
    u32 cmd_size = rd32(bp + 0x238);
    if (!cmd || !has_prefix(cmd, "console=ttyS0") || cmd_size == 0 || cmd[cmd_size - 1] != 0) finish(15);
    /* initrd: page aligned, inside RAM, above us, an initramfs cpio at its
     * start and the stub's runtime archive (with our args) after it. */
    u64 rd = rd32(bp + 0x218) | (u64)rd32(bp + 0xc0) << 32;
    u64 rd_len = rd32(bp + 0x21c) | (u64)rd32(bp + 0xc4) << 32;
    if (rd % 4096 || rd_len == 0 || rd < 0x300000 || rd + rd_len > low) finish(16);
    if (!has_prefix((const u8 *)rd, "070701")) finish(17);
    if (!CONTAINS((const u8 *)rd, rd_len, "smolvm/run\0")) finish(18);
    /* The runtime config: magic, then one `arg` record per app argument. */
    if (!CONTAINS((const u8 *)rd, rd_len, "SMOLCFG1arg\0MARKER-one\0arg\0two words\0")) finish(19);
    put("boot_params ok\n");
    finish(0);
}

void _start(const u8 *boot_params) __attribute__((noreturn, section(".text.start")));
void _start(const u8 *boot_params) {
    /* rsi holds boot_params (64-bit boot protocol); the System V ABI's
     * first argument is rdi, so fetch it explicitly. */
    __asm__ volatile("" : "=S"(boot_params));
#if MODE != MODE_BOOTPARAMS
    (void)check_boot_params;
#endif
#if MODE == MODE_HELLO
    (void)boot_params;
    put("hello from the guest\n");
    finish(0);
#elif MODE == MODE_EXIT
    (void)boot_params;
    put("exiting\n");
    finish(STATUS);
#elif MODE == MODE_BOOTPARAMS
    check_boot_params(boot_params);
#elif MODE == MODE_TRIPLE
    (void)boot_params;
    put("guest: about to triple fault\n");
    __asm__ volatile("ud2");
    finish(3);
#elif MODE == MODE_UNKNOWN_IO
    /* Nothing answers port 0x99 or the last (empty) virtio-mmio slot:
     * reads must return all-ones and writes must be ignored. */
    (void)boot_params;
    outb(0x99, 0x12);
    if (inb(0x99) != 0xff) finish(1);
    volatile u32 *mmio = (volatile u32 *)0xd000f000UL;
    *mmio = 0x12345678;
    if (*mmio != 0xffffffff) finish(2);
    put("unknown io ok\n");
    finish(0);
#elif MODE == MODE_RESET
    (void)boot_params;
    put("guest: resetting through the i8042\n");
    outb(0x64, 0xfe);
    finish(3);
#elif MODE == MODE_SPIN
    (void)boot_params;
    put("spinning\n");
    for (;;) __asm__ volatile("pause");
#else
#error unknown MODE
#endif
}
