/* Bare-metal virtio-net test guests for vmm-stub (built by build.sh with
 * GUEST_SRC=net.c; driven by tests/tests/net_guests.rs). A minimal polling
 * driver for the network device in the first dynamic slot (4): interrupts
 * stay off, the guest reads the used rings and the interrupt status.
 * CASE selects one scenario; exit status 0 = every check passed, else the
 * number of the failed check. The backend is real passt (CASE_ARP) or a
 * socketpair end the test holds (every other case). */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define CASE_ARP 1        /* passt answers an ARP request for the gateway */
#define CASE_ECHO 2       /* frames both ways, up to the largest the MTU allows */
#define CASE_HOSTILE_TX 3 /* malformed transmit chains dropped, valid ones pass */
#define CASE_HOSTILE_RX 4 /* receive chains too small / read-only get nothing */
#define CASE_NO_RX 5      /* never posts receive buffers; transmits forever */
#define CASE_TX_FLOOD 6   /* 3000 frames through a 16-entry ring, one notify per refill */
#define CASE_LINK_DOWN 7  /* the backend goes away: link down, config interrupt */

#define MMIO(slot) (0xd0000000UL + (u64)(slot) * 0x1000UL)
#define NET MMIO(4)
#define QSIZE 16
#define HDR 12
#ifndef MTU
#define MTU 65520 /* passt's; a TAP offers 1500 (-DMTU=1500) */
#endif
/* ARP case: our address and the one asked for (passt's gateway by default). */
#ifndef ARP_SELF
#define ARP_SELF 10, 0, 2, 15
#define ARP_TARGET 10, 0, 2, 2
#endif
#define MAX_FRAME (MTU + 14 + 4)
#define TX_BUF(i) (0x1000000UL + (u64)(i) * 0x20000UL)
#define RX_BUF(i) (0x1400000UL + (u64)(i) * 0x20000UL)

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static __attribute__((noreturn)) void finish(u8 status) {
    outb(0xf4, status);
    for (;;) __asm__ volatile("hlt");
}
#define CHECK(n, cond) do { if (!(cond)) finish(n); } while (0)

static inline void w32(u64 m, u32 off, u32 v) { *(volatile u32 *)(m + off) = v; }
static inline u32 r32(u64 m, u32 off) { return *(volatile u32 *)(m + off); }
static inline u8 rd8(u64 a) { return *(volatile u8 *)a; }
static inline void wr8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline u16 rd16(u64 a) { return *(volatile u16 *)a; }
static inline void wr16(u64 a, u16 v) { *(volatile u16 *)a = v; }
static inline u32 rd32(u64 a) { return *(volatile u32 *)a; }
static inline void wr32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void wr64(u64 a, u64 v) { *(volatile u64 *)a = v; }

struct vq { u32 index; u16 next_avail; u16 seen; u64 desc, avail, used; };
static struct vq rxq, txq;

static void vq_setup(struct vq *q, u32 index, u64 base) {
    q->index = index; q->next_avail = 0; q->seen = 0;
    q->desc = base; q->avail = base + 0x800; q->used = base + 0x1000;
    for (u64 a = base; a < base + 0x2000; a += 8) wr64(a, 0);
    w32(NET, 0x30, index);
    w32(NET, 0x38, QSIZE);
    w32(NET, 0x80, (u32)q->desc); w32(NET, 0x84, 0);
    w32(NET, 0x90, (u32)q->avail); w32(NET, 0x94, 0);
    w32(NET, 0xa0, (u32)q->used); w32(NET, 0xa4, 0);
    w32(NET, 0x44, 1);
}
static void desc(struct vq *q, u16 i, u64 addr, u32 len, u16 flags, u16 next) {
    u64 d = q->desc + 16 * (u64)i;
    wr64(d, addr); wr32(d + 8, len); wr16(d + 12, flags); wr16(d + 14, next);
}
#define F_NEXT 1
#define F_WRITE 2
static void publish(struct vq *q, u16 head) {
    wr16(q->avail + 4 + 2 * (u64)(q->next_avail % QSIZE), head);
    q->next_avail++;
    __asm__ volatile("" ::: "memory");
    wr16(q->avail + 2, q->next_avail);
}
static void notify(struct vq *q) { w32(NET, 0x50, q->index); }
static int used(struct vq *q, u32 *id, u32 *len) {
    if (rd16(q->used + 2) == q->seen) return 0;
    u64 e = q->used + 4 + 8 * (u64)(q->seen % QSIZE);
    *id = rd32(e); *len = rd32(e + 4);
    q->seen++;
    return 1;
}
static void wait_used(struct vq *q, u32 *id, u32 *len) {
    while (!used(q, id, len)) __asm__ volatile("pause");
}

static const u8 MAC[6] = {0x02, 's', 'm', 'o', 'l', 0x01};

/* Negotiates VERSION_1 + MAC + MTU + STATUS, checks the config space, sets
 * up both queues, DRIVER_OK. */
static void net_init(void) {
    u64 m = NET;
    CHECK(1, r32(m, 0) == 0x74726976 && r32(m, 4) == 2 && r32(m, 8) == 1);
    w32(m, 0x70, 0); w32(m, 0x70, 1); w32(m, 0x70, 3);
    w32(m, 0x14, 0);
    u32 f = r32(m, 0x10);
    CHECK(2, (f & (1 << 3)) && (f & (1 << 5)) && !(f & 1) && !(f & (1 << 15))); /* MTU, MAC; no CSUM, no MRG_RXBUF */
    w32(m, 0x14, 1);
    CHECK(3, r32(m, 0x10) & 1); /* VERSION_1 */
    w32(m, 0x24, 0); w32(m, 0x20, (1 << 3) | (1 << 5) | (1 << 16));
    w32(m, 0x24, 1); w32(m, 0x20, 1);
    w32(m, 0x70, 0xb);
    CHECK(4, r32(m, 0x70) & 8);
    for (int i = 0; i < 6; i++) CHECK(5, rd8(m + 0x100 + i) == MAC[i]);
    CHECK(6, rd16(m + 0x106) == 1);   /* LINK_UP */
    CHECK(7, rd16(m + 0x10a) == MTU);
    w32(m, 0x30, 0);
    CHECK(8, r32(m, 0x34) >= QSIZE);
    vq_setup(&rxq, 0, 0x800000);
    vq_setup(&txq, 1, 0x810000);
    w32(m, 0x70, 0xf);
}

/* A frame of `len` bytes at TX_BUF(slot) + HDR: broadcast Ethernet header,
 * ethertype 0x88b5 (local experimental), payload byte i = seed + i * 7
 * from byte 14 on, a 4-byte sequence number at 14. */
static void make_frame(u64 at, u32 len, u8 seed, u32 seq) {
    for (int i = 0; i < 6; i++) { wr8(at + i, 0xff); wr8(at + 6 + i, MAC[i]); }
    wr8(at + 12, 0x88); wr8(at + 13, 0xb5);
    for (u32 i = 14; i < len; i++) wr8(at + i, (u8)(seed + i * 7));
    if (len >= 18) wr32(at + 14, seq);
}
static void zero_hdr(u64 at) { for (int i = 0; i < HDR; i++) wr8(at + i, 0); }

/* Sends one well-formed frame through descriptor `slot` and waits for it. */
static void send_frame(u16 slot, u32 len, u8 seed, u32 seq) {
    u64 b = TX_BUF(slot);
    zero_hdr(b);
    make_frame(b + HDR, len, seed, seq);
    desc(&txq, slot, b, HDR + len, 0, 0);
    publish(&txq, slot);
    notify(&txq);
    u32 id, l;
    wait_used(&txq, &id, &l);
    CHECK(20, id == slot && l == 0);
}

static void post_rx(u16 slot, u32 len, u16 flags) {
    desc(&rxq, slot, RX_BUF(slot), len, flags, 0);
    publish(&rxq, slot);
}

static void no_needs_reset(void) { CHECK(9, (r32(NET, 0x70) & 0x40) == 0); }

#if CASE == CASE_ARP
static void arp(void) {
    net_init();
    for (u16 i = 0; i < 4; i++) post_rx(i, HDR + MAX_FRAME, F_WRITE);
    notify(&rxq);
    u64 f = TX_BUF(0) + HDR;
    zero_hdr(TX_BUF(0));
    static const u8 req[42] = {
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 's', 'm', 'o', 'l', 0x01, 0x08, 0x06,
        0, 1, 0x08, 0, 6, 4, 0, 1, 0x02, 's', 'm', 'o', 'l', 0x01, ARP_SELF,
        0, 0, 0, 0, 0, 0, ARP_TARGET};
    for (int i = 0; i < 42; i++) wr8(f + i, req[i]);
    desc(&txq, 0, TX_BUF(0), HDR + 42, 0, 0);
    publish(&txq, 0);
    notify(&txq);
    u32 id, len;
    wait_used(&txq, &id, &len);
    /* Frames until the ARP reply (a TAP also carries the host's IPv6 chatter). */
    for (;;) {
        wait_used(&rxq, &id, &len);
        CHECK(30, id < 4 && len >= HDR + 42 && len <= HDR + MAX_FRAME);
        u64 b = RX_BUF(id);
        CHECK(31, rd16(b + 10) == 1);                    /* num_buffers */
        for (int i = 0; i < 10; i++) CHECK(32, rd8(b + i) == 0);
        u64 r = b + HDR;
        if (rd8(r + 12) == 0x08 && rd8(r + 13) == 0x06 && rd8(r + 21) == 2) {
            for (int i = 0; i < 6; i++) CHECK(33, rd8(r + i) == MAC[i]);
            static const u8 target[4] = {ARP_TARGET};
            for (int i = 0; i < 4; i++) CHECK(34, rd8(r + 28 + i) == target[i]);
            finish(0);
        }
        post_rx((u16)id, HDR + MAX_FRAME, F_WRITE);
        notify(&rxq);
    }
}
#endif

#if CASE == CASE_ECHO
/* Sends a 1514-byte and a MAX_FRAME-byte frame; the test sends each back
 * with every payload byte + 1. */
static void echo(void) {
    net_init();
    u32 sizes[2] = {1514, MAX_FRAME};
    for (u16 k = 0; k < 2; k++) {
        post_rx(k, HDR + MAX_FRAME, F_WRITE);
        notify(&rxq);
        send_frame(k, sizes[k], (u8)(k + 1), k);
        u32 id, len;
        wait_used(&rxq, &id, &len);
        CHECK(40, id == k && len == HDR + sizes[k]);
        u64 r = RX_BUF(k);
        CHECK(41, rd16(r + 10) == 1);
        for (u32 i = 18; i < sizes[k]; i += 997) CHECK(42, rd8(r + HDR + i) == (u8)((u8)(k + 1 + i * 7) + 1));
    }
    no_needs_reset();
    finish(0);
}
#endif

#if CASE == CASE_HOSTILE_TX
static void hostile_tx(void) {
    net_init();
    u64 b = TX_BUF(0);
    zero_hdr(b);
    make_frame(b + HDR, MAX_FRAME + 1, 9, 0);
    /* 0: runt shorter than the header */
    desc(&txq, 0, b, 5, 0, 0); publish(&txq, 0);
    /* 1: header only */
    desc(&txq, 1, b, HDR, 0, 0); publish(&txq, 1);
    /* 2: header + a 13-byte frame (shorter than an Ethernet header) */
    desc(&txq, 2, b, HDR + 13, 0, 0); publish(&txq, 2);
    /* 3: one byte above MTU + Ethernet header + VLAN tag */
    desc(&txq, 3, b, HDR + MAX_FRAME + 1, 0, 0); publish(&txq, 3);
    /* 4: device-writable: the wrong direction for transmit */
    desc(&txq, 4, b, HDR + 100, F_WRITE, 0); publish(&txq, 4);
    /* 5-8: a valid 100-byte frame split over a header, a zero-length
     * descriptor and two pieces */
    u64 v = TX_BUF(1);
    zero_hdr(v);
    make_frame(v + HDR, 100, 0x40, 0x11111111);
    desc(&txq, 5, v, HDR, F_NEXT, 6);
    desc(&txq, 6, v + HDR, 0, F_NEXT, 7);
    desc(&txq, 7, v + HDR, 30, F_NEXT, 8);
    desc(&txq, 8, v + HDR + 30, 70, 0, 0);
    publish(&txq, 5);
    /* 9: the largest valid frame */
    u64 big = TX_BUF(2);
    zero_hdr(big);
    make_frame(big + HDR, MAX_FRAME, 0x50, 0x22222222);
    desc(&txq, 9, big, HDR + MAX_FRAME, 0, 0); publish(&txq, 9);
    notify(&txq);
    u32 id, len;
    u16 heads[7] = {0, 1, 2, 3, 4, 5, 9};
    for (int k = 0; k < 7; k++) {
        wait_used(&txq, &id, &len);
        CHECK(50 + k, id == heads[k] && len == 0);
    }
    no_needs_reset();
    finish(0);
}
#endif

#if CASE == CASE_HOSTILE_RX
/* The test sends four 100-byte frames (seq 1..4). */
static void hostile_rx(void) {
    net_init();
    post_rx(0, 4096, 0);            /* read-only: wrong direction */
    post_rx(1, 20, F_WRITE);        /* too small for header + frame */
    post_rx(2, HDR, F_WRITE);       /* header only */
    post_rx(3, 2048, F_WRITE);
    notify(&rxq);
    u32 id, len;
    for (u32 k = 0; k < 3; k++) {
        wait_used(&rxq, &id, &len);
        CHECK(60 + k, id == k && len == 0);
    }
    wait_used(&rxq, &id, &len);
    CHECK(63, id == 3 && len == HDR + 100);
    CHECK(64, rd32(RX_BUF(3) + HDR + 14) == 4); /* the fourth frame */
    CHECK(65, rd16(RX_BUF(3) + 10) == 1);
    no_needs_reset();
    finish(0);
}
#endif

#if CASE == CASE_NO_RX
/* Never posts a receive buffer; sends a numbered frame now and then, forever. */
static void no_rx(void) {
    net_init();
    for (u32 seq = 0;; seq++) {
        send_frame((u16)(seq % QSIZE), 200, 3, seq);
        for (volatile u32 d = 0; d < 20000; d++) __asm__ volatile("pause");
    }
}
#endif

#if CASE == CASE_TX_FLOOD
#define FLOOD 3000
static void tx_flood(void) {
    net_init();
    u32 sent = 0, done = 0;
    /* Fill the ring, one notify per refill; the stub moves at most its
     * budget per pass and must come back on its own for the rest. */
    while (done < FLOOD) {
        int posted = 0;
        while (sent < FLOOD && sent - done < QSIZE) {
            u16 slot = (u16)(sent % QSIZE);
            u32 len = 64 + (sent * 37) % 1450;
            u64 b = TX_BUF(slot);
            zero_hdr(b);
            make_frame(b + HDR, len, (u8)sent, sent);
            desc(&txq, slot, b, HDR + len, 0, 0);
            publish(&txq, slot);
            sent++;
            posted = 1;
        }
        if (posted) notify(&txq);
        u32 id, len;
        while (used(&txq, &id, &len)) {
            CHECK(70, id == done % QSIZE && len == 0);
            done++;
        }
        __asm__ volatile("pause");
    }
    no_needs_reset();
    finish(0);
}
#endif

#if CASE == CASE_LINK_DOWN
/* Sends a frame; the test then closes its end. The device must report the
 * link down (STATUS) with a config interrupt and keep returning chains. */
static void link_down(void) {
    net_init();
    post_rx(0, HDR + MAX_FRAME, F_WRITE);
    notify(&rxq);
    send_frame(0, 100, 1, 7);
    while (rd16(NET + 0x106) & 1) __asm__ volatile("pause");
    CHECK(80, r32(NET, 0x60) & 2);   /* config change interrupt */
    w32(NET, 0x64, 2);
    send_frame(1, 100, 2, 8);        /* still returned */
    no_needs_reset();
    finish(0);
}
#endif

void _start(void) __attribute__((noreturn, section(".text.start")));
void _start(void) {
#if CASE == CASE_ARP
    arp();
#elif CASE == CASE_ECHO
    echo();
#elif CASE == CASE_HOSTILE_TX
    hostile_tx();
#elif CASE == CASE_HOSTILE_RX
    hostile_rx();
#elif CASE == CASE_NO_RX
    no_rx();
#elif CASE == CASE_TX_FLOOD
    tx_flood();
#elif CASE == CASE_LINK_DOWN
    link_down();
#else
#error unknown CASE
#endif
    finish(99);
}
