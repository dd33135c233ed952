/* The guest's view of its CPUs, for the SMP tests (issue #25). Static, no shell needed.
 *
 *   cpus          prints "nproc N" (online CPUs), "cpuinfo N" (processor entries in
 *                 /proc/cpuinfo) and "affinity N" (CPUs this process may run on)
 *   cpus work L   also starts one thread per CPU of its affinity set; each pins itself to
 *                 its CPU (sched_setaffinity), then runs L rounds of a CPU-bound loop and
 *                 checks sched_getcpu() before, during and after; prints
 *                 "ran cpu=C rounds=L sum=X" when every check saw CPU C, or
 *                 "moved cpu=C seen=D" and exits 1. All threads start together (a barrier),
 *                 so the work runs in parallel; the test asserts where it ran, never timing.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_barrier_t start;
static long rounds;

struct job {
    int cpu;
    int seen; /* the first CPU that was not `cpu`, or -1 */
    unsigned long sum;
};

static void check(struct job *j) {
    int now = sched_getcpu();
    if (now != j->cpu && j->seen < 0)
        j->seen = now;
}

static void *work(void *arg) {
    struct job *j = arg;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(j->cpu, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) {
        perror("sched_setaffinity");
        exit(2);
    }
    pthread_barrier_wait(&start);
    unsigned long x = 88172645463325252UL + (unsigned long)j->cpu;
    check(j);
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < 100000; i++) { /* xorshift: CPU-bound, not optimised away */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        check(j);
    }
    j->sum = x;
    return NULL;
}

static int cpuinfo_processors(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "processor", 9) == 0)
            n++;
    fclose(f);
    return n;
}

int main(int argc, char **argv) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        perror("sched_getaffinity");
        return 2;
    }
    printf("nproc %ld\ncpuinfo %d\naffinity %d\n", sysconf(_SC_NPROCESSORS_ONLN), cpuinfo_processors(),
           CPU_COUNT(&set));
    fflush(stdout);
    if (argc < 3 || strcmp(argv[1], "work") != 0)
        return 0;
    rounds = atol(argv[2]);
    int n = CPU_COUNT(&set);
    struct job *jobs = calloc((size_t)n, sizeof *jobs);
    pthread_t *threads = calloc((size_t)n, sizeof *threads);
    if (!jobs || !threads || rounds <= 0)
        return 2;
    pthread_barrier_init(&start, NULL, (unsigned)n);
    for (int cpu = 0, k = 0; k < n; cpu++) {
        if (!CPU_ISSET(cpu, &set))
            continue;
        jobs[k] = (struct job){.cpu = cpu, .seen = -1};
        if (pthread_create(&threads[k], NULL, work, &jobs[k]) != 0) {
            perror("pthread_create");
            return 2;
        }
        k++;
    }
    int status = 0;
    for (int k = 0; k < n; k++) {
        pthread_join(threads[k], NULL);
        if (jobs[k].seen >= 0) {
            printf("moved cpu=%d seen=%d\n", jobs[k].cpu, jobs[k].seen);
            status = 1;
        } else {
            printf("ran cpu=%d rounds=%ld sum=%lx\n", jobs[k].cpu, rounds, jobs[k].sum);
        }
    }
    return status;
}
