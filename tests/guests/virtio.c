/* Bare-metal virtio-mmio test guests for vmm-stub (built by build.sh with
 * GUEST_SRC=virtio.c; driven by tests/tests/virtio_guests.rs). A minimal
 * polling driver: no interrupts (IF stays clear), the stub completes each
 * request during the notify exit, so the used ring is read right after.
 * Exit status 0 = every check passed, else the number of the failed check.
 * Guest code is emulated at ~1 us/instruction on nested hosts: keep it short. */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define MODE_ECHO 1    /* stdin (control device port 1) -> stdout (hvc0), until EOF */
#define MODE_BLK 2     /* rootfs reads, RO/range/id checks, disk write + flush */
#define MODE_HOSTILE 3 /* CASE=n: one malformed queue -> NEEDS_RESET, then recovery */
#define MODE_SIGNALS 4 /* listens on the control port as init does: "signal N" on hvc0 per forwarded signal */
#define MODE_SMP_BLK 5 /* --smolvm-cpus=N: rootfs reads on the BSP while every AP hammers the same device */

#define MMIO(slot) (0xd0000000UL + (u64)(slot) * 0x1000UL)
#define RAM_END (64UL << 20)

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
static inline u32 rd32(u64 a) { return *(volatile u32 *)a; }
static inline void wr32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void wr64(u64 a, u64 v) { *(volatile u64 *)a = v; }
static void copy(u64 dst, const void *src, u32 n) { for (u32 i = 0; i < n; i++) ((volatile u8 *)dst)[i] = ((const u8 *)src)[i]; }

/* A queue: desc at base, avail at base + 0x800, used at base + 0x1000. */
struct vq { u64 m; u32 index; u16 size; u16 next_avail; u16 seen; u64 desc, avail, used; };

static void vq_init(struct vq *q, u64 m, u32 index, u16 size, u64 base) {
    q->m = m; q->index = index; q->size = size; q->next_avail = 0; q->seen = 0;
    q->desc = base; q->avail = base + 0x800; q->used = base + 0x1000;
    for (u64 a = base; a < base + 0x2000; a += 8) wr64(a, 0);
}

static void vq_enable(struct vq *q) {
    u64 m = q->m;
    w32(m, 0x30, q->index);
    w32(m, 0x38, q->size);
    w32(m, 0x80, (u32)q->desc); w32(m, 0x84, (u32)(q->desc >> 32));
    w32(m, 0x90, (u32)q->avail); w32(m, 0x94, (u32)(q->avail >> 32));
    w32(m, 0xa0, (u32)q->used); w32(m, 0xa4, (u32)(q->used >> 32));
    w32(m, 0x44, 1);
}

static void desc(struct vq *q, u16 i, u64 addr, u32 len, u16 flags, u16 next) {
    u64 d = q->desc + 16 * (u64)i;
    wr64(d, addr); wr32(d + 8, len); wr16(d + 12, flags); wr16(d + 14, next);
}
#define F_NEXT 1
#define F_WRITE 2

static void publish(struct vq *q, u16 head) {
    wr16(q->avail + 4 + 2 * (u64)(q->next_avail % q->size), head);
    q->next_avail++;
    __asm__ volatile("" ::: "memory");
    wr16(q->avail + 2, q->next_avail);
}
static void notify(struct vq *q) { w32(q->m, 0x50, q->index); }

/* Next used element: 1 and its id/len, or 0 if none. */
static int used(struct vq *q, u32 *id, u32 *len) {
    if (rd16(q->used + 2) == q->seen) return 0;
    u64 e = q->used + 4 + 8 * (u64)(q->seen % q->size);
    *id = rd32(e); *len = rd32(e + 4);
    q->seen++;
    return 1;
}

/* ACK, DRIVER, features (VERSION_1 + `lo`), FEATURES_OK. */
static int dev_begin(u64 m, u32 id, u32 lo) {
    if (r32(m, 0) != 0x74726976 || r32(m, 4) != 2 || r32(m, 8) != id) return 0;
    w32(m, 0x70, 0); w32(m, 0x70, 1); w32(m, 0x70, 3);
    w32(m, 0x24, 0); w32(m, 0x20, lo);
    w32(m, 0x24, 1); w32(m, 0x20, 1);
    w32(m, 0x70, 0xb);
    return (r32(m, 0x70) & 8) != 0;
}
static void dev_ok(u64 m) { w32(m, 0x70, 0xf); }

/* ---- console output on hvc0 ---- */
static struct vq con_tx;
#define CON_BUF 0x900000UL
static void con_init(void) {
    u64 m = MMIO(0);
    CHECK(1, dev_begin(m, 3, 0));
    vq_init(&con_tx, m, 1, 8, 0x800000);
    vq_enable(&con_tx);
    dev_ok(m);
}
static void con_write(u64 addr, u32 len) {
    desc(&con_tx, 0, addr, len, 0, 0);
    publish(&con_tx, 0);
    notify(&con_tx);
    u32 id, l;
    CHECK(2, used(&con_tx, &id, &l));
}

#if MODE == MODE_ECHO || MODE == MODE_SIGNALS
/* Control device (slot 2): multiport, queues 2/3 control in/out, 6 = port 2 (stdin) rx. */
static struct vq cin, cout, rx;
#define CIN_BUF 0xa00000UL
#define COUT_BUF 0xa80000UL
#define RX_BUF 0xb00000UL

static void send_ctrl(u32 id, u16 event, u16 value) {
    u64 b = COUT_BUF + 16 * (u64)(cout.next_avail % 8);
    wr32(b, id); wr16(b + 4, event); wr16(b + 6, value);
    u16 i = cout.next_avail % 8;
    desc(&cout, i, b, 8, 0, 0);
    publish(&cout, i);
    notify(&cout);
}
static void post_cin(u16 i) { desc(&cin, i, CIN_BUF + 64 * (u64)i, 64, F_WRITE, 0); publish(&cin, i); }
static void post_rx(u16 i) { desc(&rx, i, RX_BUF + 256 * (u64)i, 256, F_WRITE, 0); publish(&rx, i); }

/* Next control message from the host: event/value/id; 0 if none. */
static u64 last_msg; /* buffer of the last message (PORT_NAME carries a name) */
static int recv_ctrl(u32 *pid, u16 *event, u16 *value) {
    u32 id, len;
    if (!used(&cin, &id, &len)) return 0;
    u64 b = CIN_BUF + 64 * (u64)id;
    last_msg = b;
    *pid = rd32(b); *event = rd16(b + 4); *value = rd16(b + 6);
    post_cin((u16)id);
    notify(&cin);
    return 1;
}

#endif

#if MODE == MODE_ECHO
static __attribute__((noreturn)) void echo(void) {
    con_init();
    u64 m = MMIO(2);
    CHECK(10, dev_begin(m, 3, 1 << 1 /* MULTIPORT */));
    vq_init(&cin, m, 2, 16, 0x810000);
    vq_init(&cout, m, 3, 8, 0x820000);
    vq_init(&rx, m, 6, 8, 0x830000);
    vq_enable(&cin); vq_enable(&cout); vq_enable(&rx);
    dev_ok(m);
    for (u16 i = 0; i < 16; i++) post_cin(i);
    notify(&cin);
    send_ctrl(0xffffffffu, 0 /* DEVICE_READY */, 1);
    u32 id; u16 ev, val;
    CHECK(11, recv_ctrl(&id, &ev, &val) && ev == 1 /* PORT_ADD */ && id == 1);
    CHECK(12, recv_ctrl(&id, &ev, &val) && ev == 1 && id == 2);
    CHECK(19, recv_ctrl(&id, &ev, &val) && ev == 1 && id == 3); /* stdout port */
    CHECK(19, recv_ctrl(&id, &ev, &val) && ev == 1 && id == 4); /* stderr port */
    for (u16 i = 0; i < 8; i++) post_rx(i);
    notify(&rx);
    send_ctrl(2, 3 /* PORT_READY */, 1);
    CHECK(13, recv_ctrl(&id, &ev, &val) && ev == 7 /* PORT_NAME */ && id == 2);
    CHECK(14, rd32(last_msg + 8) == 0x6c6f6d73 /* "smol" */);
    CHECK(15, recv_ctrl(&id, &ev, &val) && ev == 6 /* PORT_OPEN */ && id == 2 && val == 1);
    send_ctrl(2, 6 /* PORT_OPEN */, 1); /* the "app" opens stdin */
    for (;;) {
        u32 len;
        while (used(&rx, &id, &len)) {
            CHECK(16, len > 0 && len <= 256);
            con_write(RX_BUF + 256 * (u64)id, len);
            post_rx((u16)id);
            notify(&rx);
        }
        if (recv_ctrl(&id, &ev, &val)) {
            CHECK(17, ev == 6 && id == 2 && val == 0);
            CHECK(18, !used(&rx, &id, &len)); /* all data came before the EOF */
            finish(0);
        }
        __asm__ volatile("pause");
    }
}
#endif

#if MODE == MODE_BLK || MODE == MODE_HOSTILE || MODE == MODE_SMP_BLK
static struct vq bq;
#define HDR 0xa00000UL
#define DATA 0xa01000UL
#define STATUS 0xa00100UL

static void blk_begin(u64 m, u16 size) {
    CHECK(20, dev_begin(m, 2, 0));
    vq_init(&bq, m, 0, size, 0x840000);
    vq_enable(&bq);
    dev_ok(m);
}

/* One request; returns the status byte (0xff if not answered). */
static u8 blk_req(u32 type, u64 sector, u32 len, int data_writable) {
    wr32(HDR, type); wr32(HDR + 4, 0); wr64(HDR + 8, sector);
    *(volatile u8 *)STATUS = 0xff;
    u16 h = (u16)(bq.next_avail * 3 % 30); /* 3 descriptors, queue size 32 */
    if (len) {
        desc(&bq, h, HDR, 16, F_NEXT, h + 1);
        desc(&bq, h + 1, DATA, len, F_NEXT | (data_writable ? F_WRITE : 0), h + 2);
        desc(&bq, h + 2, STATUS, 1, F_WRITE, 0);
    } else {
        desc(&bq, h, HDR, 16, F_NEXT, h + 1);
        desc(&bq, h + 1, STATUS, 1, F_WRITE, 0);
    }
    publish(&bq, h);
    notify(&bq);
    u32 id, l;
    if (!used(&bq, &id, &l) || id != h) return 0xfe;
    return *(volatile u8 *)STATUS;
}
#endif

#if MODE == MODE_BLK
static __attribute__((noreturn)) void blk(void) {
    /* vda: the image's rootfs section, filled by the test with byte i = i*7+3. */
    u64 m = MMIO(3);
    CHECK(30, r32(m, 0x34) >= 8);
    CHECK(31, (r32(m, 0x10) & (1 << 5)) != 0);                 /* offers RO */
    u64 cap = rd32(m + 0x100) | (u64)rd32(m + 0x104) << 32;
    CHECK(32, cap == 8);                                       /* 4 KiB section */
    blk_begin(m, 32);
    CHECK(33, blk_req(0 /* IN */, 1, 1024, 1) == 0);
    for (u32 i = 0; i < 1024; i += 97)
        CHECK(34, *(volatile u8 *)(DATA + i) == (u8)((512 + i) * 7 + 3));
    CHECK(35, blk_req(8 /* GET_ID */, 0, 20, 1) == 0 && rd32(DATA) == 0x6c6f6d73);
    CHECK(36, blk_req(1 /* OUT */, 0, 512, 0) == 1);           /* read-only: IOERR */
    CHECK(37, blk_req(0, 8, 512, 1) == 1);                     /* past the end */
    CHECK(38, blk_req(0, 7, 1024, 1) == 1);                    /* straddles the end */
    CHECK(39, blk_req(0, 0x80000000000000UL, 512, 1) == 1);    /* sector * 512 overflows */
    CHECK(40, blk_req(0, 0, 512, 0) == 1);                     /* data direction wrong */
    CHECK(41, blk_req(77, 0, 0, 0) == 2);                      /* unsupported */
    CHECK(42, (r32(m, 0x70) & 0x40) == 0);                     /* no NEEDS_RESET for these */
    /* vdb: an extra read-write disk; write sector 2, then flush. */
    m = MMIO(4);
    CHECK(50, (r32(m, 0x10) & (1 << 9)) != 0);                 /* offers FLUSH */
    blk_begin(m, 32);
    for (u32 i = 0; i < 512; i++) *(volatile u8 *)(DATA + i) = "smolvm-disk-write-test!\n"[i % 24];
    CHECK(51, blk_req(1, 2, 512, 0) == 0);
    CHECK(52, blk_req(4 /* FLUSH */, 0, 0, 0) == 0);
    for (u32 i = 0; i < 512; i++) *(volatile u8 *)(DATA + i) = 0;
    CHECK(53, blk_req(0, 2, 512, 1) == 0 && rd32(DATA) == 0x6c6f6d73);
    finish(0);
}
#endif

#if MODE == MODE_HOSTILE
/* Each CASE breaks one rule on the rootfs disk; the device must answer with
 * NEEDS_RESET (never crash the stub, never touch memory outside RAM), and
 * work again after a reset. */
static __attribute__((noreturn)) void hostile(void) {
    u64 m = MMIO(3);
    CHECK(60, dev_begin(m, 2, 0));
    vq_init(&bq, m, 0, 16, 0x840000);
#if CASE == 11
    bq.size = 128; /* room for a chain long enough to pass 4 GiB */
#endif
#if CASE == 1      /* queue size 0 */
    bq.size = 0; vq_enable(&bq);
#elif CASE == 2    /* not a power of two */
    bq.size = 12; vq_enable(&bq);
#elif CASE == 3    /* above QueueNumMax */
    bq.size = 256; vq_enable(&bq);
#elif CASE == 4    /* misaligned descriptor table */
    bq.desc += 8; vq_enable(&bq);
#elif CASE == 5    /* used ring past the end of RAM */
    bq.used = RAM_END - 64; vq_enable(&bq);
#else
    vq_enable(&bq);
    dev_ok(m);
    wr32(HDR, 0); wr64(HDR + 8, 0);
#if CASE == 6      /* a chain that loops */
    desc(&bq, 0, HDR, 16, F_NEXT, 1);
    desc(&bq, 1, DATA, 512, F_NEXT | F_WRITE, 0);
    publish(&bq, 0);
#elif CASE == 7    /* next out of range */
    desc(&bq, 0, HDR, 16, F_NEXT, 16);
    publish(&bq, 0);
#elif CASE == 8    /* head out of range */
    publish(&bq, 40);
#elif CASE == 9    /* buffer outside RAM */
    desc(&bq, 0, HDR, 16, F_NEXT, 1);
    desc(&bq, 1, RAM_END - 256, 512, F_WRITE, 0);
    publish(&bq, 0);
#elif CASE == 10   /* address + length wraps u64 */
    desc(&bq, 0, HDR, 16, F_NEXT, 1);
    desc(&bq, 1, 0xffffffffffffff00UL, 0x200, F_WRITE, 0);
    publish(&bq, 0);
#elif CASE == 11   /* lengths summing past 2^32 (each buffer inside RAM) */
    desc(&bq, 0, HDR, 16, F_NEXT, 1);
    for (u16 i = 1; i < 128; i++) desc(&bq, i, 0x100000, 0x3f00000, F_WRITE | (i < 127 ? F_NEXT : 0), i + 1);
    publish(&bq, 0); /* 127 x 63 MiB: about 8 GiB */
#elif CASE == 12   /* avail index jumps more than the queue size */
    wr16(bq.avail + 2, 17);
#elif CASE == 13   /* indirect descriptor (not offered) */
    desc(&bq, 0, HDR, 64, 4 /* INDIRECT */, 0);
    publish(&bq, 0);
#else
#error unknown CASE
#endif
    notify(&bq);
#endif
    CHECK(61, (r32(m, 0x70) & 0x40) != 0);      /* NEEDS_RESET */
    CHECK(62, (r32(m, 0x60) & 2) != 0);         /* config-change interrupt */
    /* Reset, set up properly, and the device serves again. */
    blk_begin(m, 32);
    CHECK(63, blk_req(8, 0, 20, 1) == 0 && rd32(DATA) == 0x6c6f6d73);
    finish(0);
}
#endif

#if MODE == MODE_SIGNALS
/* Port 1 (host -> init signal bytes) rx = queue 4. Opens it as init does,
 * then prints "signal N" for each byte; runs until the host ends the VM. */
static struct vq sigq;
#define SIG_BUF 0xb80000UL
#define MSG_BUF 0xc00000UL
static void post_sig(u16 i) { desc(&sigq, i, SIG_BUF + 64 * (u64)i, 64, F_WRITE, 0); publish(&sigq, i); }
static void say(const char *text, u32 len) { copy(MSG_BUF, text, len); con_write(MSG_BUF, len); }

static __attribute__((noreturn)) void signals(void) {
    con_init();
    u64 m = MMIO(2);
    CHECK(10, dev_begin(m, 3, 1 << 1 /* MULTIPORT */));
    vq_init(&cin, m, 2, 16, 0x810000);
    vq_init(&cout, m, 3, 8, 0x820000);
    vq_init(&sigq, m, 4, 4, 0x840000); /* the stub offers 4 entries */
    vq_enable(&cin); vq_enable(&cout); vq_enable(&sigq);
    dev_ok(m);
    for (u16 i = 0; i < 16; i++) post_cin(i);
    notify(&cin);
    for (u16 i = 0; i < 4; i++) post_sig(i);
    notify(&sigq);
    send_ctrl(0xffffffffu, 0 /* DEVICE_READY */, 1);
    send_ctrl(1, 6 /* PORT_OPEN */, 1); /* "init" listens for signals */
    say("listening\n", 10);
    for (;;) {
        u32 id, len; u16 ev, val;
        while (recv_ctrl(&id, &ev, &val)) {} /* PORT_ADD etc.: not needed here */
        while (used(&sigq, &id, &len)) {
            for (u32 k = 0; k < len && k < 64; k++) {
                u8 n = *(volatile u8 *)(SIG_BUF + 64 * (u64)id + k);
                char line[] = "signal NN\n";
                u32 at = 7;
                if (n >= 10) line[at++] = (char)('0' + n / 10);
                line[at++] = (char)('0' + n % 10);
                line[at++] = '\n';
                say(line, at);
            }
            post_sig((u16)id);
            notify(&sigq);
        }
        __asm__ volatile("pause");
    }
}
#endif

#if MODE == MODE_SMP_BLK
#include "smp.h"
#define SMP_READS 64
static volatile u32 aps_up, bsp_done;
static volatile u64 ap_exits;

/* Every AP, until the BSP is done: notify the queue (its avail ring holds
 * the BSP's requests, some in flight), read the status and config space. */
void ap_main(u32 index) {
    (void)index;
    u64 m = MMIO(3), n = 0;
    __atomic_fetch_add(&aps_up, 1, __ATOMIC_RELEASE);
    while (!bsp_done) {
        w32(m, 0x50, 0);
        (void)r32(m, 0x70);
        (void)r32(m, 0x100);
        n += 3;
    }
    __atomic_fetch_add(&ap_exits, n, __ATOMIC_RELEASE);
    __atomic_fetch_add(&aps_up, 1, __ATOMIC_RELEASE);
    for (;;) __asm__ volatile("cli; hlt");
}

/* The BSP reads each rootfs sector (byte i = i*7+3) again and again while
 * the APs hammer: every request completes exactly once with the right data. */
static __attribute__((noreturn)) void smp_blk(void) {
    u64 m = MMIO(3);
    u32 n = cpu_count();
    blk_begin(m, 32);
    start_aps();
    CHECK(70, wait_for(&aps_up, n - 1));
    for (u32 k = 0; k < SMP_READS; k++) {
        u64 sector = k % 8;
        for (u32 i = 0; i < 512; i += 4) wr32(DATA + i, 0);
        CHECK(71, blk_req(0, sector, 512, 1) == 0);
        for (u32 i = 0; i < 512; i++)
            CHECK(72, *(volatile u8 *)(DATA + i) == (u8)((512 * sector + i) * 7 + 3));
    }
    bsp_done = 1;
    CHECK(73, wait_for(&aps_up, 2 * (n - 1)));
    /* No completion lost or doubled: the used ring holds exactly ours. */
    CHECK(74, rd16(bq.used + 2) == SMP_READS && bq.seen == SMP_READS);
    CHECK(75, (r32(m, 0x70) & 0x40) == 0);                     /* no NEEDS_RESET */
    CHECK(76, n == 1 || ap_exits > 0);
    finish(0);
}
#endif

void _start(void) __attribute__((noreturn, section(".text.start")));
void _start(void) {
#if MODE == MODE_ECHO
    echo();
#elif MODE == MODE_BLK
    blk();
#elif MODE == MODE_HOSTILE
    hostile();
#elif MODE == MODE_SIGNALS
    signals();
#elif MODE == MODE_SMP_BLK
    smp_blk();
#else
#error unknown MODE
#endif
}
