/* The memory region's get hit across threads: one thread on a region, two
 * threads on one region, two threads on a region each, measured in
 * alternating blocks (so that the machine's load falls on all three
 * alike), ROUNDS rounds, medians printed with the ratios the embedded
 * backends issue targets (2 threads on one region / 1 thread >= 1.8,
 * / two private regions >= 0.85).  Keys are drawn uniformly or by Zipf.
 *   bench/memory [keys] [value_size] [seconds_per_block] [rounds] [backend_argument...]
 * A backend argument (max_count:N) bounds the region.  The same blocks are
 * then run on the backend's table alone (memtable, unbounded): what scales
 * there and not through the region is the region's doing. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cachet/cachet.h>
#include "evict_trace.h"
#include "memtable.h"
#include "bench_util.h"

#define TRACE_LEN (1 << 20)

static size_t nkeys, value_len;
static double seconds;
static char **keys;

typedef struct {
    cachet_region   *r;
    memtable        *t;         /* set: the backend's table alone, no region */
    const uint32_t  *ids;       /* TRACE_LEN key indexes */
    double           rate;      /* gets per second of wall time */
    double           cpu_rate;  /* gets per second of this thread's CPU time */
    pthread_barrier_t *go;
} worker;

static double cpu_now(void)
{
    return bench_clock_s(CLOCK_THREAD_CPUTIME_ID);
}

static void *work(void *arg)
{
    worker *w = arg;
    size_t n = 0;
    double start, end, t, cpu0;

    pthread_barrier_wait(w->go);
    cpu0 = cpu_now();
    start = bench_now();
    end = start + seconds;
    do {
        for (size_t i = 0; i < 1000; i++, n++) {
            void *v;
            size_t len;
            const char *k = keys[w->ids[n % TRACE_LEN]];
            if (w->t ? memtable_get(w->t, k, strlen(k), &v, &len) != CACHET_OK
                     : cachet_get(w->r, k, &v, &len) != CACHET_OK) {
                fprintf(stderr, "memory: get missed: %s\n", cachet_errmsg());
                exit(2);
            }
            if (w->t)
                free(v);
            else
                cachet_free(v);
        }
    } while ((t = bench_now()) < end);
    w->rate = (double)n / (t - start);
    w->cpu_rate = (double)n / (cpu_now() - cpu0);
    return NULL;
}

/* Total get rate of `threads` threads, the i-th on regions[i]; *cpu gets
 * the sum of their rates per CPU second (what they would do with a core
 * each: a loaded machine cannot show scaling in wall time, and a lock's
 * contention shows in CPU time as spinning and cache-line transfers). */
static double block(cachet_region **regions, memtable **tables, int threads, uint32_t **ids,
                    double *cpu)
{
    pthread_t th[2];
    worker w[2];
    pthread_barrier_t go;
    double total = 0;

    *cpu = 0;
    pthread_barrier_init(&go, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){.r = regions ? regions[i] : NULL, .t = tables ? tables[i] : NULL,
                        .ids = ids[i], .go = &go};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += w[i].rate;
        *cpu += w[i].cpu_rate;
    }
    pthread_barrier_destroy(&go);
    return total;
}

static cachet_region *open_region(int argc, char **argv)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    char *val = malloc(value_len);

    memset(val, 'x', value_len);
    cachet_config_set(c, "enabled", "true");
    cachet_config_set(c, "backend", "memory");
    for (int i = 5; i < argc; i++)
        cachet_config_set(c, "backend_argument", argv[i]);
    if (cachet_region_open(c, &r) != CACHET_OK) {
        fprintf(stderr, "memory: %s\n", cachet_errmsg());
        exit(2);
    }
    for (size_t i = 0; i < nkeys; i++)
        cachet_set(r, keys[i], val, value_len);
    cachet_config_free(c);
    free(val);
    return r;
}

static memtable *open_table(void)
{
    memtable *t = memtable_new(0, 0);
    char *val = malloc(value_len);
    memset(val, 'x', value_len);
    for (size_t i = 0; t && i < nkeys; i++)
        memtable_set(t, keys[i], strlen(keys[i]), val, value_len, 0);
    free(val);
    if (!t)
        exit(2);
    return t;
}

int main(int argc, char **argv)
{
    nkeys = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
    value_len = argc > 2 ? strtoul(argv[2], NULL, 10) : 100;
    seconds = argc > 3 ? atof(argv[3]) : 1.0;
    int rounds = argc > 4 ? atoi(argv[4]) : 5;
    cachet_region *shared, *priv[2];
    memtable *tshared, *tpriv[2];
    uint32_t *ids[2][2];            /* [uniform, zipf][thread] */
    const char *dist[2] = {"uniform", "zipf0.99"};
    uint64_t seed = 1;

    if (rounds < 1 || rounds > 99 || nkeys == 0)
        return 2;
    keys = calloc(nkeys, sizeof *keys);
    for (size_t i = 0; i < nkeys; i++) {
        keys[i] = malloc(32);
        snprintf(keys[i], 32, "key:%zu", i);
    }
    for (int th = 0; th < 2; th++) {
        evict_trace t;
        ids[0][th] = malloc(TRACE_LEN * sizeof **ids);
        for (size_t i = 0; i < TRACE_LEN; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            ids[0][th][i] = (uint32_t)((seed >> 33) % nkeys);
        }
        if (evict_trace_make(&t, nkeys, 0.99, TRACE_LEN, 0, 0, 7 + (uint64_t)th) != 0)
            return 2;
        ids[1][th] = t.ids;
    }
    shared = open_region(argc, argv);
    priv[0] = open_region(argc, argv);
    priv[1] = open_region(argc, argv);
    tshared = open_table();
    tpriv[0] = open_table();
    tpriv[1] = open_table();
    printf("memory region get hit, %zu keys, %zu-byte values, blocks of %.1fs, median of %d "
           "rounds\n", nkeys, value_len, seconds, rounds);
    printf("%-21s %12s %12s %12s %8s %8s\n", "layer, keys, clock", "1T/s", "2T_shared/s",
           "2T_private/s", "2Ts/1T", "2Ts/2Tp");
    /* the region, then the backend's table alone (what the region adds
     * on top shows as the difference) */
    for (int layer = 0; layer < 2; layer++)
        for (int d = 0; d < 2; d++) {
            double one[99], two[99], sep[99], cone[99], ctwo[99], csep[99];
            const char *name = layer ? "table" : "region";
            for (int i = 0; i < rounds; i++) {
                cachet_region *s2[2] = {shared, shared};
                memtable *t2[2] = {tshared, tshared};
                if (layer == 0) {
                    one[i] = block(&shared, NULL, 1, ids[d], &cone[i]);
                    two[i] = block(s2, NULL, 2, ids[d], &ctwo[i]);
                    sep[i] = block(priv, NULL, 2, ids[d], &csep[i]);
                } else {
                    one[i] = block(NULL, &tshared, 1, ids[d], &cone[i]);
                    two[i] = block(NULL, t2, 2, ids[d], &ctwo[i]);
                    sep[i] = block(NULL, tpriv, 2, ids[d], &csep[i]);
                }
            }
            double a = bench_median(one, rounds), b = bench_median(two, rounds), c = bench_median(sep, rounds);
            printf("%-6s %-9s wall %12.0f %12.0f %12.0f %8.2f %8.2f\n", name, dist[d], a, b, c,
                   b / a, b / c);
            a = bench_median(cone, rounds), b = bench_median(ctwo, rounds), c = bench_median(csep, rounds);
            printf("%-6s %-9s cpu  %12.0f %12.0f %12.0f %8.2f %8.2f\n", name, dist[d], a, b, c,
                   b / a, b / c);
        }
    cachet_region_close(shared);
    cachet_region_close(priv[0]);
    cachet_region_close(priv[1]);
    memtable_free(tshared);
    memtable_free(tpriv[0]);
    memtable_free(tpriv[1]);
    return 0;
}
