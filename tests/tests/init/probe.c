/* A tiny static test app for smol-init's tests: prints what it was given, one
 * record per line, values hex-encoded so every byte survives: "arg <hex>",
 * "env <hex>", "cwd <hex>", "uid <n>", "gid <n>", "host <hex>", "tty <0|1>".
 * `probe hog MIB` instead allocates and touches MIB MiB, 1 MiB at a time (so
 * the overcommit heuristic allows each piece and the OOM killer has to act
 * when memory runs out), then prints "hogged MIB". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static void hex(const char *key, const char *value) {
    printf("%s ", key);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        printf("%02x", *p);
    printf("\n");
}

int main(int argc, char **argv) {
    char buf[4096];
    if (argc == 3 && strcmp(argv[1], "hog") == 0) {
        long mib = atol(argv[2]);
        for (long i = 0; i < mib; i++) {
            char *p = malloc(1 << 20);
            if (!p) {
                printf("malloc failed after %ld MiB\n", i);
                return 2;
            }
            memset(p, 1, 1 << 20);
        }
        printf("hogged %ld\n", mib);
        return 0;
    }
    for (int i = 0; i < argc; i++)
        hex("arg", argv[i]);
    for (char **e = environ; *e; e++)
        hex("env", *e);
    hex("cwd", getcwd(buf, sizeof buf) ? buf : "?");
    printf("uid %u\ngid %u\n", (unsigned)getuid(), (unsigned)getgid());
    hex("host", gethostname(buf, sizeof buf) == 0 ? buf : "?");
    printf("tty %d\n", isatty(0));
    return 0;
}
