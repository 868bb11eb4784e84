/* The dbm region against raw gdbm on the same file: N keys (100-byte
 * values; raw stores as many bytes as the region does, its header
 * included), get hit and set in a random order of the keys that both use,
 * alternating blocks of each, ROUNDS rounds, medians and ratios printed.
 * Raw gdbm is used the plain way (gdbm_open as a writer with its default
 * flags, memory-mapped reads, gdbm's own lock taken once at open), with
 * GDBM_NOMMAP (cachet's reads: a file another process truncates must give
 * an error, not a SIGBUS) in a second column.
 *   bench/dbm_raw DIR [keys] [seconds_per_block] [rounds] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <gdbm.h>
#include <cachet/cachet.h>
#include "bench_util.h"

#define VALUE_LEN 100

static size_t nkeys, *order;
static char **keys;
static double seconds;

static void die(const char *what, const char *why)
{
    fprintf(stderr, "dbm_raw: %s: %s\n", what, why);
    exit(2);
}

static cachet_region *open_region(const char *path)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    char arg[4200];
    snprintf(arg, sizeof arg, "filename:%s", path);
    cachet_config_set(c, "enabled", "true");
    cachet_config_set(c, "backend", "dbm");
    cachet_config_set(c, "backend_argument", arg);
    if (cachet_region_open(c, &r) != CACHET_OK)
        die("region open", cachet_errmsg());
    cachet_config_free(c);
    return r;
}

enum { GET, SET };

static double run_cachet(const char *path, int op, const char *value)
{
    cachet_region *r = open_region(path);
    size_t n = 0;
    double start = bench_now(), end = start + seconds, t;
    do {
        for (size_t i = 0; i < 200; i++, n++) {
            const char *k = keys[order[n % nkeys]];
            void *v;
            size_t len;
            if (op == GET) {
                if (cachet_get(r, k, &v, &len) != CACHET_OK)
                    die("cachet get", cachet_errmsg());
                cachet_free(v);
            } else if (cachet_set(r, k, value, VALUE_LEN) != CACHET_OK) {
                die("cachet set", cachet_errmsg());
            }
        }
    } while ((t = bench_now()) < end);
    cachet_region_close(r);
    return (double)n / (t - start);
}

static double run_raw(const char *path, int op, int flags, const void *stored, size_t stored_len)
{
    GDBM_FILE db = gdbm_open(path, 0, GDBM_WRITER | flags, 0600, NULL);
    size_t n = 0;
    double start = bench_now(), end = start + seconds, t;

    if (!db)
        die("gdbm_open", gdbm_strerror(gdbm_errno));
    do {
        for (size_t i = 0; i < 200; i++, n++) {
            const char *k = keys[order[n % nkeys]];
            datum key = {(char *)k, (int)strlen(k)};
            if (op == GET) {
                datum v = gdbm_fetch(db, key);
                if (!v.dptr)
                    die("gdbm_fetch", k);
                free(v.dptr);
            } else {
                datum v = {(char *)stored, (int)stored_len};
                if (gdbm_store(db, key, v, GDBM_REPLACE) != 0)
                    die("gdbm_store", gdbm_strerror(gdbm_errno));
            }
        }
    } while ((t = bench_now()) < end);
    gdbm_close(db);
    return (double)n / (t - start);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: dbm_raw DIR [keys] [seconds_per_block] [rounds]\n");
        return 2;
    }
    char path[4096], value[VALUE_LEN];
    nkeys = argc > 2 ? strtoul(argv[2], NULL, 10) : 100000;
    seconds = argc > 3 ? atof(argv[3]) : 1.0;
    int rounds = argc > 4 ? atoi(argv[4]) : 3;
    uint64_t seed = 12345;
    cachet_region *r;
    void *stored;
    size_t stored_len;

    if (nkeys == 0 || rounds < 1 || rounds > 99)
        return 2;
    snprintf(path, sizeof path, "%s/dbm_raw.db", argv[1]);
    memset(value, 'x', sizeof value);
    keys = calloc(nkeys, sizeof *keys);
    order = calloc(nkeys, sizeof *order);
    r = open_region(path);
    for (size_t i = 0; i < nkeys; i++) {
        keys[i] = malloc(32);
        snprintf(keys[i], 32, "key:%zu", i);
        order[i] = i;
    }
    for (size_t i = 0; i < nkeys; i += 1000) {   /* in batches: quicker to fill */
        cachet_item items[1000];
        size_t m = nkeys - i < 1000 ? nkeys - i : 1000;
        for (size_t j = 0; j < m; j++)
            items[j] = (cachet_item){.key = keys[i + j], .value = value, .len = VALUE_LEN};
        if (cachet_set_multi(r, items, m) != CACHET_OK)
            die("fill", cachet_errmsg());
    }
    cachet_region_close(r);
    for (size_t i = nkeys - 1; i > 0; i--) {      /* one random order, both sides */
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t j = (size_t)(seed >> 33) % (i + 1), x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    {   /* the bytes the region stored: raw sets store as many */
        GDBM_FILE db = gdbm_open(path, 0, GDBM_READER, 0600, NULL);
        datum k = {keys[0], (int)strlen(keys[0])}, v;
        if (!db || !(v = gdbm_fetch(db, k)).dptr)
            die("gdbm", "cannot read back the region's value");
        stored = v.dptr;
        stored_len = (size_t)v.dsize;
        gdbm_close(db);
    }
    printf("dbm: %zu keys, %d-byte values (%zu stored), random order, blocks of %.1fs, median "
           "of %d rounds\n", nkeys, VALUE_LEN, stored_len, seconds, rounds);
    printf("peer: raw gdbm %d.%d.%d on the same file\n", GDBM_VERSION_MAJOR, GDBM_VERSION_MINOR,
           GDBM_VERSION_PATCH);
    printf("%-5s %12s %12s %14s %8s %14s\n", "op", "cachet/s", "raw/s", "raw_nommap/s",
           "c/raw", "c/raw_nommap");
    for (int op = GET; op <= SET; op++) {
        double c[99], g[99], gn[99];
        for (int i = 0; i < rounds; i++) {
            c[i] = run_cachet(path, op, value);
            g[i] = run_raw(path, op, 0, stored, stored_len);
            gn[i] = run_raw(path, op, GDBM_NOMMAP, stored, stored_len);
        }
        double a = bench_median(c, rounds), b = bench_median(g, rounds), d = bench_median(gn, rounds);
        printf("%-5s %12.0f %12.0f %14.0f %8.2f %14.2f\n", op == GET ? "get" : "set", a, b, d,
               a / b, a / d);
    }
    free(stored);
    return 0;
}
