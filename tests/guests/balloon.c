/* Bare-metal virtio-balloon test guest for vmm-stub (built by build.sh with
 * GUEST_SRC=balloon.c; driven by tests/tests/balloon_guests.rs). A polling
 * driver for the balloon in the first dynamic slot (4; the image has no
 * rootfs disk): free page reporting gives pages back to the host (they read
 * as zeros after), hostile reports are refused without harm, a report
 * outside RAM stops the device (NEEDS_RESET) until a reset.
 * MODE_BALLOON: the checks; MODE_ABSENT: slot 4 is empty (--smolvm-balloon=no).
 * Exit status 0 = every check passed, else the number of the failed check. */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define MODE_BALLOON 1
#define MODE_ABSENT 2

#define MMIO(slot) (0xd0000000UL + (u64)(slot) * 0x1000UL)
#define BALLOON MMIO(4)
#define RAM_END (64UL << 20)
#define PAGE 4096UL
#define FREE 0x1000000UL /* 16 MiB: pages the guest "frees" */
#define F_NEXT 1
#define F_WRITE 2

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static __attribute__((noreturn)) void finish(u8 status) {
    outb(0xf4, status);
    for (;;) __asm__ volatile("hlt");
}
#define CHECK(n, cond) do { if (!(cond)) finish(n); } while (0)

static inline void w32(u64 m, u32 off, u32 v) { *(volatile u32 *)(m + off) = v; }
static inline u32 r32(u64 m, u32 off) { return *(volatile u32 *)(m + off); }
static inline u16 rd16(u64 a) { return *(volatile u16 *)a; }
static inline void wr16(u64 a, u16 v) { *(volatile u16 *)a = v; }
static inline void wr32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void wr64(u64 a, u64 v) { *(volatile u64 *)a = v; }
static inline u8 rd8(u64 a) { return *(volatile u8 *)a; }

struct vq { u32 index; u16 size; u16 next_avail; u16 seen; u64 desc, avail, used; };

static void vq_setup(struct vq *q, u32 index, u64 base) {
    q->index = index; q->size = 32; q->next_avail = 0; q->seen = 0;
    q->desc = base; q->avail = base + 0x800; q->used = base + 0x1000;
    for (u64 a = base; a < base + 0x2000; a += 8) wr64(a, 0);
    w32(BALLOON, 0x30, index);
    CHECK(3, r32(BALLOON, 0x34) == 32); /* QueueNumMax */
    w32(BALLOON, 0x38, q->size);
    w32(BALLOON, 0x80, (u32)q->desc); w32(BALLOON, 0x84, 0);
    w32(BALLOON, 0x90, (u32)q->avail); w32(BALLOON, 0x94, 0);
    w32(BALLOON, 0xa0, (u32)q->used); w32(BALLOON, 0xa4, 0);
    w32(BALLOON, 0x44, 1);
}

static struct vq inflate, deflate, report;

/* Reset, ACK, DRIVER, VERSION_1 + REPORTING, FEATURES_OK, three queues, DRIVER_OK. */
static void begin(void) {
    u64 m = BALLOON;
    w32(m, 0x70, 0); w32(m, 0x70, 1); w32(m, 0x70, 3);
    w32(m, 0x24, 0); w32(m, 0x20, 1 << 5);
    w32(m, 0x24, 1); w32(m, 0x20, 1);
    w32(m, 0x70, 0xb);
    CHECK(2, (r32(m, 0x70) & 8) != 0);
    vq_setup(&inflate, 0, 0x800000);
    vq_setup(&deflate, 1, 0x802000);
    vq_setup(&report, 2, 0x804000);
    w32(m, 0x70, 0xf);
}

static void desc(struct vq *q, u16 i, u64 addr, u32 len, u16 flags, u16 next) {
    u64 d = q->desc + 16 * (u64)i;
    wr64(d, addr); wr32(d + 8, len); wr16(d + 12, flags); wr16(d + 14, next);
}

/* Sends one chain of `n` buffers (addr, len, flags) on `q`; 1 if it came back with length 0. */
static int send(struct vq *q, const u64 *addr, const u32 *len, const u16 *flags, u16 n) {
    u16 h = (u16)(q->next_avail * 4 % 32);
    for (u16 k = 0; k < n; k++) desc(q, h + k, addr[k], len[k], flags[k] | (k + 1 < n ? F_NEXT : 0), h + k + 1);
    wr16(q->avail + 4 + 2 * (u64)(q->next_avail % q->size), h);
    q->next_avail++;
    __asm__ volatile("" ::: "memory");
    wr16(q->avail + 2, q->next_avail);
    w32(BALLOON, 0x50, q->index);
    if (rd16(q->used + 2) == q->seen) return 0;
    u64 e = q->used + 4 + 8 * (u64)(q->seen % q->size);
    q->seen++;
    return *(volatile u32 *)e == h && *(volatile u32 *)(e + 4) == 0;
}

static void fill(u64 at, u64 len, u8 v) { for (u64 a = at; a < at + len; a++) *(volatile u8 *)a = v; }
static int all(u64 at, u64 len, u8 v) {
    for (u64 a = at; a < at + len; a += 64) if (rd8(a) != v) return 0;
    return rd8(at + len - 1) == v;
}

#if MODE == MODE_BALLOON
static __attribute__((noreturn)) void balloon(void) {
    u64 m = BALLOON;
    CHECK(1, r32(m, 0) == 0x74726976 && r32(m, 4) == 2 && r32(m, 8) == 5);
    w32(m, 0x14, 0);
    CHECK(4, (r32(m, 0x10) & (1 << 5)) != 0);   /* offers REPORTING */
    CHECK(5, r32(m, 0x100) == 0);               /* num_pages: no target */
    begin();
    fill(FREE, 16 * PAGE, 0xaa);
    /* Two free ranges in one report: they read as zeros after, their neighbours keep their bytes. */
    {
        u64 a[] = { FREE, FREE + 4 * PAGE }; u32 l[] = { 2 * PAGE, PAGE }; u16 f[] = { F_WRITE, F_WRITE };
        CHECK(10, send(&report, a, l, f, 2));
    }
    CHECK(11, all(FREE, 2 * PAGE, 0));
    CHECK(12, all(FREE + 2 * PAGE, 2 * PAGE, 0xaa));
    CHECK(13, all(FREE + 4 * PAGE, PAGE, 0));
    CHECK(14, all(FREE + 5 * PAGE, PAGE, 0xaa));
    /* The pages are the guest's again: written, they keep what it wrote. */
    fill(FREE, PAGE, 0x55);
    CHECK(15, all(FREE, PAGE, 0x55));
    /* Hostile but well-formed: unaligned start, unaligned length, empty, read-only buffer. */
    {
        u64 a[] = { FREE + 6 * PAGE + 1, FREE + 7 * PAGE, FREE + 8 * PAGE, FREE + 9 * PAGE };
        u32 l[] = { PAGE, 100, 0, PAGE };
        u16 f[] = { F_WRITE, F_WRITE, F_WRITE, 0 };
        /* a read-only buffer after writable ones is a malformed chain: send it alone */
        CHECK(20, send(&report, a, l, f, 3));
        CHECK(21, send(&report, a + 3, l + 3, f + 3, 1));
    }
    CHECK(22, all(FREE + 6 * PAGE, 4 * PAGE, 0xaa));
    CHECK(23, (r32(m, 0x70) & 0x40) == 0);      /* no NEEDS_RESET for these */
    /* An inflate request: no target, nothing freed, the chain comes back. */
    {
        wr32(FREE + 12 * PAGE, (u32)((FREE + 13 * PAGE) / PAGE));
        u64 a[] = { FREE + 12 * PAGE }; u32 l[] = { 4 }; u16 f[] = { 0 };
        CHECK(24, send(&inflate, a, l, f, 1));
        CHECK(25, all(FREE + 13 * PAGE, PAGE, 0xaa));
    }
    /* A range past the end of RAM: a malformed queue, NEEDS_RESET, nothing freed. */
    {
        u64 a[] = { RAM_END - PAGE }; u32 l[] = { 2 * PAGE }; u16 f[] = { F_WRITE };
        CHECK(30, !send(&report, a, l, f, 1));
        CHECK(31, (r32(m, 0x70) & 0x40) != 0);
        CHECK(32, (r32(m, 0x60) & 2) != 0);     /* config-change interrupt */
    }
    /* After a reset it works again; an address that wraps is refused the same way. */
    begin();
    {
        u64 a[] = { FREE + 14 * PAGE }; u32 l[] = { PAGE }; u16 f[] = { F_WRITE };
        CHECK(40, send(&report, a, l, f, 1));
        CHECK(41, all(FREE + 14 * PAGE, PAGE, 0) && all(FREE + 15 * PAGE, PAGE, 0xaa));
        u64 w[] = { 0xfffffffffffff000UL }; u32 wl[] = { 0x2000 };
        CHECK(42, !send(&report, w, wl, f, 1));
        CHECK(43, (r32(m, 0x70) & 0x40) != 0);
    }
    finish(0);
}
#endif

void _start(void) __attribute__((noreturn, section(".text.start")));
void _start(void) {
#if MODE == MODE_BALLOON
    balloon();
#elif MODE == MODE_ABSENT
    CHECK(1, r32(BALLOON, 0) != 0x74726976 || r32(BALLOON, 8) != 5);
    finish(0);
#else
#error unknown MODE
#endif
}
