/* Bytes per entry: the memory region against memcached holding the same
 * data, measured in one run as the growth of each process's resident set
 * while N entries (20-byte keys, 100-byte values, stored by the region
 * with its value header) go in.  memcached is started on 127.0.0.1 by the
 * test harness (tests/servers.c) with -m 2048 so that nothing is evicted.
 *   bench/memory_bytes [entries]
 * Prints cachet unbounded, cachet bounded (max_count = 2 x entries, so the
 * eviction links and the ghost are there but nothing is evicted), and
 * memcached. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cachet/cachet.h>
#include "servers.h"

#define KEY_LEN   20
#define VALUE_LEN 100

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static cachet_region *open_region(const char *backend, const char *arg, const char *servers)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    cachet_config_set(c, "enabled", "true");
    cachet_config_set(c, "backend", backend);
    if (arg)
        cachet_config_set(c, "backend_argument", arg);
    if (servers)
        cachet_config_set(c, "memcache_servers", servers);
    if (cachet_region_open(c, &r) != CACHET_OK) {
        fprintf(stderr, "memory_bytes: %s: %s\n", backend, cachet_errmsg());
        exit(2);
    }
    cachet_config_free(c);
    return r;
}

static void fill(cachet_region *r, size_t n)
{
    char key[32], value[VALUE_LEN];
    memset(value, 'v', sizeof value);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "key:%016zu", i);
        if (cachet_set(r, key, value, sizeof value) != CACHET_OK) {
            fprintf(stderr, "memory_bytes: set %s: %s\n", key, cachet_errmsg());
            exit(2);
        }
    }
}

/* Resident growth of `pid` while r takes n entries, in bytes per entry. */
static double per_entry(pid_t pid, cachet_region *r, size_t n)
{
    long before = rss_kib(pid), after;
    fill(r, n);
    after = rss_kib(pid);
    return (double)(after - before) * 1024.0 / (double)n;
}

/* The memory backend's figure, measured in a child of its own: memory a
 * closed region gave back stays in the process and would hide the next. */
static double memory_per_entry(const char *arg, size_t n)
{
    int fd[2];
    double v = -1;
    pid_t pid;

    if (pipe(fd) != 0 || (pid = fork()) < 0)
        return -1;
    if (pid == 0) {
        cachet_region *r = open_region("memory", arg, NULL);
        v = per_entry(getpid(), r, n);
        if (write(fd[1], &v, sizeof v) != (ssize_t)sizeof v)
            _exit(1);
        _exit(0);
    }
    close(fd[1]);
    if (read(fd[0], &v, sizeof v) != (ssize_t)sizeof v)
        v = -1;
    close(fd[0]);
    waitpid(pid, NULL, 0);
    return v;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 500000;
    char servers[64], arg[64];
    test_server mc;
    cachet_region *r;
    double unb, bnd, mcd;

    unb = memory_per_entry(NULL, n);
    snprintf(arg, sizeof arg, "max_count:%zu", 2 * n);
    bnd = memory_per_entry(arg, n);

    if (test_memcached_start(&mc, 0, "-m 2048") != 0) {
        fprintf(stderr, "memory_bytes: cannot start memcached\n");
        return 2;
    }
    snprintf(servers, sizeof servers, "127.0.0.1:%d", mc.port);
    r = open_region("memcached", NULL, servers);
    mcd = per_entry(mc.pid, r, n);
    cachet_region_close(r);
    test_server_stop(&mc);

    printf("%zu entries, %d-byte keys, %d-byte values (+ the region's header)\n", n, KEY_LEN,
           VALUE_LEN);
    printf("peer: memcached (resident growth of its process, same entries via the region)\n");
    printf("%-24s %10s %8s\n", "store", "bytes/entry", "ratio");
    printf("%-24s %10.1f %7.2fx\n", "cachet memory", unb, unb / mcd);
    printf("%-24s %10.1f %7.2fx\n", "cachet memory bounded", bnd, bnd / mcd);
    printf("%-24s %10.1f %7.2fx\n", "memcached", mcd, 1.0);
    return 0;
}
