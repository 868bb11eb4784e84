/* `cachet bench`: ops/s and latency percentiles of get hits, sets and
 * get_or_create hits on the configured region, from N threads.
 *
 * Every operation is timed (two clock reads, ~40 ns, small next to any
 * backend but memory, where the figures are then a lower bound — bench/
 * has the clock-free rate for memory).  Latencies go into a log-linear
 * histogram (16 sub-buckets per power of two, so a percentile is within
 * 1/16 of the truth) instead of a sample array, so a long run costs no
 * memory. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cli.h"

#define SUB_BITS 4
#define SUBS     (1u << SUB_BITS)
#define NBUCKETS (64 * SUBS)

typedef enum { OP_GET, OP_SET, OP_GOC } op_kind;
static const char *const op_names[] = { "get", "set", "get_or_create" };

typedef struct {
    size_t  keys, value_size, threads;
    double  duration;
    int     ops[3];
} bench_params;

typedef struct {
    cachet_region      *r;
    const bench_params *p;
    char              **keys;
    const char         *value;
    op_kind             op;
    unsigned            seed;
    /* results */
    uint64_t            n, failures, misses;
    cachet_status       first_error;
    char                first_errmsg[256];
    uint64_t            hist[NBUCKETS];
} worker;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned bucket_of(uint64_t ns)
{
    if (ns < SUBS)
        return (unsigned)ns;
    unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
    unsigned sub = (unsigned)(ns >> (msb - SUB_BITS)) & (SUBS - 1);
    return (msb - SUB_BITS + 1) * SUBS + sub;
}

/* The middle of a bucket, in ns. */
static double bucket_value(unsigned b)
{
    if (b < SUBS)
        return b;
    unsigned msb = b / SUBS + SUB_BITS - 1, sub = b % SUBS;
    double lo = ldexp(1.0, (int)msb) + sub * ldexp(1.0, (int)(msb - SUB_BITS));
    return lo + ldexp(1.0, (int)(msb - SUB_BITS)) / 2;
}

static const char *bench_value;
static size_t bench_value_len;

static cachet_status creator(void *arg, const char *key, void **v, size_t *len)
{
    if (!(*v = malloc(bench_value_len)))
        return CACHET_ENOMEM;
    memcpy(*v, bench_value, bench_value_len);
    *len = bench_value_len;
    return CACHET_OK;
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    uint64_t end = now_ns() + (uint64_t)(w->p->duration * 1e9);
    unsigned x = w->seed;
    void *v;
    size_t len;

    for (;;) {
        uint64_t t0 = now_ns(), t1;
        if (t0 >= end)
            break;
        x = x * 1103515245u + 12345u;          /* a cheap LCG picks the key */
        const char *k = w->keys[(x >> 8) % w->p->keys];
        cachet_status st;
        switch (w->op) {
        case OP_GET:
            st = cachet_get(w->r, k, &v, &len);
            if (st == CACHET_OK)
                cachet_free(v);
            break;
        case OP_SET:
            st = cachet_set(w->r, k, w->value, w->p->value_size);
            break;
        default:
            st = cachet_get_or_create(w->r, k, creator, NULL, &v, &len);
            if (st == CACHET_OK)
                cachet_free(v);
            break;
        }
        t1 = now_ns();
        w->hist[bucket_of(t1 - t0)]++;
        w->n++;
        if (st == CACHET_MISS) {
            w->misses++;               /* not a failure: the null backend, expiration 0 */
        } else if (st != CACHET_OK) {
            if (!w->failures++) {
                w->first_error = st;
                snprintf(w->first_errmsg, sizeof w->first_errmsg, "%s", cachet_errmsg());
            }
        }
    }
    return NULL;
}

static double percentile(const uint64_t *hist, uint64_t total, double q)
{
    uint64_t want = (uint64_t)ceil(q * (double)total), seen = 0;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        seen += hist[b];
        if (seen >= want && hist[b])
            return bucket_value(b);
    }
    return 0;
}

static int run_op(cachet_region *r, const bench_params *p, char **keys, op_kind op)
{
    worker *ws = calloc(p->threads, sizeof *ws);
    pthread_t *tids = calloc(p->threads, sizeof *tids);
    uint64_t total = 0, failures = 0, misses = 0, *hist = calloc(NBUCKETS, sizeof *hist);
    uint64_t t0, t1;
    int rc = CLI_OK;
    size_t started = 0;

    if (!ws || !tids || !hist) {
        fprintf(stderr, "cachet: bench: out of memory\n");
        rc = CLI_ERROR;
        goto out;
    }
    t0 = now_ns();
    for (size_t i = 0; i < p->threads; i++, started++) {
        ws[i] = (worker){ .r = r, .p = p, .keys = keys, .value = bench_value, .op = op,
                          .seed = (unsigned)(i * 2654435761u + 1) };
        if (pthread_create(&tids[i], NULL, run_worker, &ws[i]) != 0) {
            fprintf(stderr, "cachet: bench: cannot start thread %zu\n", i);
            rc = CLI_ERROR;
            break;
        }
    }
    for (size_t i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    t1 = now_ns();
    if (rc != CLI_OK)
        goto out;
    for (size_t i = 0; i < p->threads; i++) {
        total += ws[i].n;
        failures += ws[i].failures;
        misses += ws[i].misses;
        for (unsigned b = 0; b < NBUCKETS; b++)
            hist[b] += ws[i].hist[b];
    }
    printf("%-14s %12.0f %10.2f %10.2f %10.2f", op_names[op],
           (double)total / ((double)(t1 - t0) / 1e9),
           percentile(hist, total, 0.50) / 1e3, percentile(hist, total, 0.99) / 1e3,
           percentile(hist, total, 0.999) / 1e3);
    if (misses)
        printf("  (%llu of %llu were misses)", (unsigned long long)misses,
               (unsigned long long)total);
    if (failures) {
        for (size_t i = 0; i < p->threads; i++)
            if (ws[i].failures) {
                printf("  (%llu failed: %s: %s)", (unsigned long long)failures,
                       cachet_strerror(ws[i].first_error), ws[i].first_errmsg);
                break;
            }
        rc = CLI_ERROR;
    }
    putchar('\n');
out:
    free(ws);
    free(tids);
    free(hist);
    return rc;
}

/* Parses a positive number option value; prints why not. */
static int parse_number(const char *opt, const char *s, double min, double max, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "cachet: bench: %s '%s': expected a number from %g to %g\n", opt, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, bench_params *p)
{
    double v;
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--keys") != 0 && strcmp(o, "--value-size") != 0 &&
            strcmp(o, "--threads") != 0 && strcmp(o, "--duration") != 0 &&
            strcmp(o, "--op") != 0) {
            fprintf(stderr, "cachet: bench: unknown option '%s' (options: --keys N, "
                            "--value-size B, --threads N, --duration S, --op get|set|goc|all)\n", o);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "cachet: bench: %s needs a value\n", o);
            return -1;
        }
        const char *a = argv[++i];
        if (strcmp(o, "--keys") == 0) {
            if (parse_number(o, a, 1, 1e8, &v)) return -1;
            p->keys = (size_t)v;
        } else if (strcmp(o, "--value-size") == 0) {
            if (parse_number(o, a, 0, 256 * 1024 * 1024, &v)) return -1;
            p->value_size = (size_t)v;
        } else if (strcmp(o, "--threads") == 0) {
            if (parse_number(o, a, 1, 1024, &v)) return -1;
            p->threads = (size_t)v;
        } else if (strcmp(o, "--duration") == 0) {
            if (parse_number(o, a, 0.01, 3600, &v)) return -1;
            p->duration = v;
        } else if (strcmp(o, "--op") == 0) {
            memset(p->ops, 0, sizeof p->ops);
            if (strcmp(a, "get") == 0) p->ops[OP_GET] = 1;
            else if (strcmp(a, "set") == 0) p->ops[OP_SET] = 1;
            else if (strcmp(a, "goc") == 0 || strcmp(a, "get_or_create") == 0) p->ops[OP_GOC] = 1;
            else if (strcmp(a, "all") == 0) p->ops[OP_GET] = p->ops[OP_SET] = p->ops[OP_GOC] = 1;
            else {
                fprintf(stderr, "cachet: bench: --op '%s': expected get, set, goc or all\n", a);
                return -1;
            }
        } else {
            fprintf(stderr, "cachet: bench: unknown option '%s'\n", o);
            return -1;
        }
    }
    return 0;
}

/* Stores every key once, in batches, so the get runs are all hits. */
static int prefill(cachet_region *r, const bench_params *p, char **keys)
{
    enum { BATCH = 500 };
    cachet_item items[BATCH];
    for (size_t i = 0; i < p->keys; i += BATCH) {
        size_t n = p->keys - i < BATCH ? p->keys - i : BATCH;
        for (size_t j = 0; j < n; j++)
            items[j] = (cachet_item){ .key = keys[i + j], .value = (void *)bench_value,
                                      .len = p->value_size };
        cachet_status st = cachet_set_multi(r, items, n);
        if (st != CACHET_OK)
            return cli_fail("bench: storing the keys", st);
    }
    return CLI_OK;
}

int cli_bench(cachet_region *r, int argc, char **argv)
{
    bench_params p = { .keys = 10000, .value_size = 100, .threads = 1, .duration = 1.0,
                       .ops = { 1, 1, 1 } };
    char **keys = NULL, *value = NULL;
    int rc = CLI_ERROR;

    if (parse_args(argc, argv, &p) != 0)
        return CLI_ERROR;
    keys = calloc(p.keys, sizeof *keys);
    value = malloc(p.value_size ? p.value_size : 1);
    if (!keys || !value) {
        fprintf(stderr, "cachet: bench: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < p.value_size; i++)
        value[i] = (char)('a' + i % 26);
    bench_value = value;
    bench_value_len = p.value_size;
    for (size_t i = 0; i < p.keys; i++) {
        if (!(keys[i] = malloc(40))) {
            fprintf(stderr, "cachet: bench: out of memory\n");
            goto out;
        }
        snprintf(keys[i], 40, "cachet-bench:%zu", i);
    }
    if (prefill(r, &p, keys) != CLI_OK)
        goto out;
    printf("cachet bench: backend %s, %zu keys, %zu-byte values, %zu thread%s, %.2f s per op\n",
           cachet_region_backend(r), p.keys, p.value_size, p.threads, p.threads == 1 ? "" : "s",
           p.duration);
    printf("%-14s %12s %10s %10s %10s\n", "op", "ops/s", "p50 us", "p99 us", "p99.9 us");
    rc = CLI_OK;
    for (int op = OP_GET; op <= OP_GOC; op++)
        if (p.ops[op] && run_op(r, &p, keys, (op_kind)op) != CLI_OK)
            rc = CLI_ERROR;
    /* leave no bench keys behind in a shared cache */
    for (size_t i = 0; i < p.keys; i += 500) {
        size_t n = p.keys - i < 500 ? p.keys - i : 500;
        cachet_delete_multi(r, (const char *const *)keys + i, n);
    }
out:
    if (keys)
        for (size_t i = 0; i < p.keys; i++)
            free(keys[i]);
    free(keys);
    free(value);
    return rc;
}
