/* The demo app: a static hello-world without libc (a few hundred bytes),
 * so hello.vm shows what the VM itself costs. */
static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

void _start(void) {
    static const char msg[] = "Hello from smolvm!\n";
    sys3(1, 1, (long)msg, sizeof msg - 1); /* write(1, msg, len) */
    sys3(231, 0, 0, 0);                    /* exit_group(0) */
    for (;;) {}
}
