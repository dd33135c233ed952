/* The guest half of bench/memmap.py (issue 19): runs the app, waits until it
 * is idle (3 s), then classifies every guest page frame by its kernel flags
 * (/proc/kpageflags) and prints the runs on stdout:
 *   MEMPROBE <first pfn> <count> <class>
 *   MEMPROBE-DONE
 * then sleeps, so the host reads the VM's pagemap while the guest is idle.
 * Also prints /proc/meminfo lines as "MEMINFO <line>". With MEMPROBE_REPORT_ORDER=N
 * in its environment it first sets the guest's free page reporting order (Linux 6.1
 * fixes it at pageblock_order, 4 MiB, when the balloon registers; the module
 * parameter stays writable), to measure what smaller reports would give back.
 * MEMPROBE_IDLE=S waits S seconds instead of 3.
 * Build: musl-gcc -Os -static -o memprobe bench/memprobe.c */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* linux/kernel-page-flags.h */
#define KPF_LRU 5
#define KPF_SLAB 7
#define KPF_BUDDY 10
#define KPF_MMAP 11
#define KPF_ANON 12
#define KPF_SWAPBACKED 14
#define KPF_UNEVICTABLE 18
#define KPF_NOPAGE 20
#define KPF_PGTABLE 26
#define KPF_RESERVED 32
#define B(f) (1ull << (f))

static const char *classify(uint64_t f) {
    if (f & B(KPF_NOPAGE)) return "hole";
    if (f & B(KPF_BUDDY)) return "free";
    if (f & B(KPF_RESERVED)) return "reserved";
    if (f & B(KPF_SLAB)) return "slab";
    if (f & B(KPF_PGTABLE)) return "pagetable";
    if (f & B(KPF_ANON)) return "anon";
    if ((f & B(KPF_SWAPBACKED)) || ((f & B(KPF_UNEVICTABLE)) && !(f & B(KPF_LRU)))) return "shmem";
    if (f & (B(KPF_LRU) | B(KPF_UNEVICTABLE))) return (f & B(KPF_MMAP)) ? "cache-mapped" : "cache";
    return "kernel-other";
}

static uint64_t buf[8192];

int main(int argc, char **argv) {
    const char *order = getenv("MEMPROBE_REPORT_ORDER");
    if (order) {
        int o = open("/sys/module/page_reporting/parameters/page_reporting_order", O_WRONLY);
        if (o < 0 || write(o, order, strlen(order)) < 0) perror("memprobe: page_reporting_order");
        if (o >= 0) close(o);
    }
    if (argc > 1 && fork() == 0) {
        execv(argv[1], argv + 1);
        _exit(127);
    }
    const char *idle = getenv("MEMPROBE_IDLE"); /* seconds; default 3 */
    sleep(idle ? (unsigned)atoi(idle) : 3);
    char line[256];
    FILE *mi = fopen("/proc/meminfo", "r");
    while (mi && fgets(line, sizeof line, mi)) printf("MEMINFO %s", line);
    if (mi) fclose(mi);
    int fd = open("/proc/kpageflags", O_RDONLY);
    if (fd < 0) { perror("memprobe: /proc/kpageflags"); return 1; }
    const char *cur = 0;
    uint64_t start = 0, pfn = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n / 8; i++, pfn++) {
            const char *c = classify(buf[i]);
            if (c != cur) {
                if (cur) printf("MEMPROBE %llu %llu %s\n", (unsigned long long)start, (unsigned long long)(pfn - start), cur);
                cur = c;
                start = pfn;
            }
        }
    }
    if (cur) printf("MEMPROBE %llu %llu %s\n", (unsigned long long)start, (unsigned long long)(pfn - start), cur);
    printf("MEMPROBE-DONE\n");
    fflush(stdout);
    close(fd);
    for (;;) pause();
}
