/* Boot-profile probe app (kernel-config/bench/boot-profile.py): reads the TSC and
 * CLOCK_MONOTONIC as its first actions (the TSC counts from the VM's start under QEMU TCG,
 * so it also covers firmware and bzImage decompression), stamps a line into the kernel log (so the app's start is on the same clock
 * as "Run /init" and the initcalls), then dumps the kernel log buffer to stdout, which works
 * under `quiet` too (the buffer keeps what the console did not print). Static, no libc. */
static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

struct timespec { long sec, nsec; };
static char log[1 << 18];

static char *num(char *p, unsigned long v, int width) {
    char t[24];
    int n = 0;
    do { t[n++] = (char)('0' + v % 10); v /= 10; } while (v || n < width);
    while (n) *p++ = t[--n];
    return p;
}

void _start(void) {
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    struct timespec ts;
    sys3(228, 1, (long)&ts, 0); /* clock_gettime(CLOCK_MONOTONIC) */
    char line[128], *p = line;
    static const char tag[] = "smolvm-probe: app started, monotonic ";
    for (const char *s = tag; *s; s++) *p++ = *s;
    p = num(p, (unsigned long)ts.sec, 1);
    *p++ = '.';
    p = num(p, (unsigned long)ts.nsec / 1000, 6);
    static const char tsc[] = " tsc ";
    for (const char *s = tsc; *s; s++) *p++ = *s;
    p = num(p, ((unsigned long)hi << 32) | lo, 1);
    *p++ = '\n';
    long fd = sys3(2, (long)"/dev/kmsg", 1, 0); /* open(O_WRONLY) */
    if (fd >= 0) {
        sys3(1, fd, (long)line, p - line);
        sys3(3, fd, 0, 0);
    }
    sys3(1, 1, (long)line, p - line);
    long n = sys3(103, 3, (long)log, sizeof log); /* syslog(SYSLOG_ACTION_READ_ALL) */
    if (n > 0) sys3(1, 1, (long)log, n);
    static const char msg[] = "Hello from smolvm!\n";
    sys3(1, 1, (long)msg, sizeof msg - 1);
    /* tcdrain(1): as /init on a serial console (boot-profile.py --init probe), the
     * kernel panics and resets the VM the moment init exits, losing what the UART has
     * not sent yet. ENOTTY on a virtio console or file, which is fine. */
    sys3(16, 1, 0x5409, 1); /* ioctl(TCSBRK, 1) */
    sys3(231, 0, 0, 0); /* exit_group(0) */
    for (;;) {}
}
