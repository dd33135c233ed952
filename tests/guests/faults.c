/* Bare-metal guests for the host-fault tests (tests/tests/security_faults.rs),
 * built by build.sh with GUEST_SRC=faults.c. A minimal polling virtio-mmio
 * driver (as in virtio.c); progress goes to the serial port, which the test
 * reads with SMOLVM_LOG=kernel. Guest code is emulated at ~1 us/instruction
 * on nested hosts: keep it short.
 *
 * MODE_DISK: writes numbered 4 KiB blocks to the first extra disk (vdb), each
 *   followed by FLUSH, and prints "ack N" once both succeeded. On the first
 *   IOERR it prints "ioerr N", reads back every acknowledged block, checks
 *   it and exits 7 (3 if an acknowledged block came back wrong). Exits 0
 *   after BLOCKS blocks without an error.
 * MODE_SHARE: 9P2000.L on the first share: creates files f0, f1, ... in the
 *   share's root, printing "ok N" or "err N <errno>"; after the first error
 *   it tries getattr, walk and mkdir on the root (printing each result) and
 *   exits 0 (9 if no error came within MAX_FILES).
 * MODE_MMIO_EXEC: jumps into a virtio-mmio register page: an instruction
 *   fetch from MMIO, which KVM cannot emulate. */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define MODE_DISK 1
#define MODE_SHARE 2
#define MODE_MMIO_EXEC 3

#ifndef BLOCKS
#define BLOCKS 1000000
#endif
#ifndef MAX_FILES
#define MAX_FILES 3000
#endif

#define MMIO(slot) (0xd0000000UL + (u64)(slot) * 0x1000UL)

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static void put(const char *s) { while (*s) outb(0x3f8, (u8)*s++); }
static void putn(u32 n) {
    char b[11]; int i = 10; b[i] = 0;
    do { b[--i] = (char)('0' + n % 10); n /= 10; } while (n);
    put(b + i);
}
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

/* One queue of size 8: desc at base, avail at base + 0x800, used at base + 0x1000. */
struct vq { u64 m; u16 next_avail, seen; u64 desc, avail, used; };
static struct vq q;

/* ACK, DRIVER, features (VERSION_1 + `lo`), FEATURES_OK, queue 0, DRIVER_OK. */
static void dev_start(u64 m, u32 id, u32 lo) {
    CHECK(20, r32(m, 0) == 0x74726976 && r32(m, 4) == 2 && r32(m, 8) == id);
    w32(m, 0x70, 0); w32(m, 0x70, 1); w32(m, 0x70, 3);
    w32(m, 0x24, 0); w32(m, 0x20, lo);
    w32(m, 0x24, 1); w32(m, 0x20, 1);
    w32(m, 0x70, 0xb);
    CHECK(21, (r32(m, 0x70) & 8) != 0);
    u64 base = 0x840000;
    for (u64 a = base; a < base + 0x2000; a += 8) wr64(a, 0);
    q.m = m; q.next_avail = 0; q.seen = 0;
    q.desc = base; q.avail = base + 0x800; q.used = base + 0x1000;
    w32(m, 0x30, 0); w32(m, 0x38, 8);
    w32(m, 0x80, (u32)q.desc); w32(m, 0x84, 0);
    w32(m, 0x90, (u32)q.avail); w32(m, 0x94, 0);
    w32(m, 0xa0, (u32)q.used); w32(m, 0xa4, 0);
    w32(m, 0x44, 1);
    w32(m, 0x70, 0xf);
}

static void desc(u16 i, u64 addr, u32 len, u16 flags, u16 next) {
    u64 d = q.desc + 16 * (u64)i;
    wr64(d, addr); wr32(d + 8, len); wr16(d + 12, flags); wr16(d + 14, next);
}
#define F_NEXT 1
#define F_WRITE 2

/* Publishes the chain at descriptor 0, notifies, returns the used length
 * (the stub completes requests during the notify exit). */
static u32 submit(void) {
    wr16(q.avail + 4 + 2 * (u64)(q.next_avail % 8), 0);
    q.next_avail++;
    __asm__ volatile("" ::: "memory");
    wr16(q.avail + 2, q.next_avail);
    w32(q.m, 0x50, 0);
    CHECK(22, rd16(q.used + 2) != q.seen);
    u32 len = rd32(q.used + 4 + 8 * (u64)(q.seen % 8) + 4);
    q.seen++;
    return len;
}

#if MODE == MODE_DISK
#define HDR 0xa00000UL
#define STATUS 0xa00100UL
#define DATA 0xa01000UL
#define BLOCK 4096

/* Byte i of block n (its first 4 bytes are n itself). */
static u8 pattern(u32 n, u32 i) { return i < 4 ? (u8)(n >> (8 * i)) : (u8)(n * 31 + i); }

static u8 blk_req(u32 type, u64 sector, u32 len, int data_writable) {
    wr32(HDR, type); wr32(HDR + 4, 0); wr64(HDR + 8, sector);
    *(volatile u8 *)STATUS = 0xff;
    if (len) {
        desc(0, HDR, 16, F_NEXT, 1);
        desc(1, DATA, len, F_NEXT | (data_writable ? F_WRITE : 0), 2);
        desc(2, STATUS, 1, F_WRITE, 0);
    } else {
        desc(0, HDR, 16, F_NEXT, 1);
        desc(1, STATUS, 1, F_WRITE, 0);
    }
    submit();
    return *(volatile u8 *)STATUS;
}

static __attribute__((noreturn)) void disk(void) {
    dev_start(MMIO(4), 2, 1 << 9 /* FLUSH */);
    u32 n;
    for (n = 0; n < BLOCKS; n++) {
        for (u32 i = 0; i < BLOCK; i++) *(volatile u8 *)(DATA + i) = pattern(n, i);
        if (blk_req(1 /* OUT */, (u64)n * (BLOCK / 512), BLOCK, 0) != 0 || blk_req(4 /* FLUSH */, 0, 0, 0) != 0) break;
        put("ack "); putn(n); put("\n");
    }
    if (n == BLOCKS) finish(0);
    put("ioerr "); putn(n); put("\n");
    for (u32 k = 0; k < n; k++) {
        CHECK(3, blk_req(0 /* IN */, (u64)k * (BLOCK / 512), BLOCK, 1) == 0);
        for (u32 i = 0; i < BLOCK; i += 61) CHECK(3, *(volatile u8 *)(DATA + i) == pattern(k, i));
        CHECK(3, rd32(DATA) == k);
    }
    put("verified "); putn(n); put("\n");
    finish(7);
}
#endif

#if MODE == MODE_SHARE
#define REQ 0xa00000UL
#define REP 0xa02000UL
#define MSIZE 8192
static u64 at; /* write cursor in REQ */
static void b1(u8 v) { *(volatile u8 *)(REQ + at++) = v; }
static void b2(u16 v) { b1((u8)v); b1((u8)(v >> 8)); }
static void b4(u32 v) { b2((u16)v); b2((u16)(v >> 16)); }
static void b8(u64 v) { b4((u32)v); b4((u32)(v >> 32)); }
static void bs(const char *s, u16 n) { b2(n); for (u16 i = 0; i < n; i++) b1((u8)s[i]); }
static void begin(u8 type) { at = 0; b4(0); b1(type); b2(1 /* tag */); }

/* Sends the message built in REQ; returns the reply type (0 if none). */
static u8 rpc(void) {
    wr32(REQ, (u32)at);
    desc(0, REQ, (u32)at, F_NEXT, 1);
    desc(1, REP, MSIZE, F_WRITE, 0);
    *(volatile u8 *)(REP + 4) = 0;
    u32 len = submit();
    if (len < 7 || rd32(REP) != len || rd16(REP + 5) != 1) return 0;
    return *(volatile u8 *)(REP + 4);
}
/* Prints " ok" or " err <errno>" for the last reply of type `want`. */
static int report(u8 type, u8 want) {
    if (type == want) { put(" ok\n"); return 1; }
    if (type == 7 /* Rlerror */) { put(" err "); putn(rd32(REP + 7)); put("\n"); return 0; }
    put(" bad reply\n"); finish(8);
}
static void walk_root(u32 newfid) { begin(110); b4(0); b4(newfid); b2(0); CHECK(40, rpc() == 111); }
static void clunk(u32 fid) { begin(120); b4(fid); rpc(); }

static __attribute__((noreturn)) void share(void) {
    dev_start(MMIO(4), 9, 1 /* MOUNT_TAG */);
    begin(100); b4(MSIZE); bs("9P2000.L", 8); CHECK(41, rpc() == 101);
    begin(104); b4(0); b4(~0u); bs("", 0); bs("", 0); b4(0); CHECK(42, rpc() == 105);
    for (u32 n = 0; n < MAX_FILES; n++) {
        char name[12] = "f"; u32 len = 1;
        { char d[10]; int k = 0; u32 v = n; do { d[k++] = (char)('0' + v % 10); v /= 10; } while (v); while (k) name[len++] = d[--k]; }
        walk_root(1);
        begin(14); b4(1); bs(name, (u16)len); b4(01 | 0100 /* O_WRONLY|O_CREAT */); b4(0644); b4(0);
        put("create "); putn(n);
        int ok = report(rpc(), 15);
        clunk(1);
        if (!ok) {
            put("getattr"); begin(24); b4(0); b8(0x7ff); report(rpc(), 25);
            put("walk"); begin(110); b4(0); b4(2); b2(1); bs("f0", 2); report(rpc(), 111);
            put("mkdir"); begin(72); b4(0); bs("d", 1); b4(0755); b4(0); report(rpc(), 73);
            finish(0);
        }
        for (volatile u32 spin = 0; spin < 2000; spin++) {}
    }
    finish(9);
}
#endif

void _start(void) __attribute__((noreturn, section(".text.start")));
void _start(void) {
#if MODE == MODE_DISK
    disk();
#elif MODE == MODE_SHARE
    share();
#elif MODE == MODE_MMIO_EXEC
    put("jumping into MMIO\n");
    ((void (*)(void))(MMIO(0) + 0x100))();
    finish(1);
#else
#error unknown MODE
#endif
}
