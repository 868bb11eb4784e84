/* get_or_create on one hot key under three refresh strategies: dogpile's
 * (a caller regenerates an expired value, the others get the old one),
 * early refresh (cachet_early_refresh = 1, XFetch) and refresh threads
 * (cachet_refresh_threads = 1, with early refresh).  Memory backend,
 * expiration_time 1 s, a 10 ms creator, N threads for S seconds.  Prints
 * one line per mode: `mode p50_us p99_us max_us calls creator_runs_in_callers`.
 * bench/run-refresh runs it beside dogpile.cache's own loop
 * (bench/dogpile_refresh.py). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cachet/cachet.h>
#include "bench_util.h"

static _Thread_local int is_caller;
static atomic_long in_callers;

static cachet_status create(void *arg, const char *key, void **value, size_t *len)
{
    struct timespec ms10 = {0, 10 * 1000000L};
    (void)arg;
    (void)key;
    if (is_caller)
        atomic_fetch_add(&in_callers, 1);
    nanosleep(&ms10, NULL);
    *value = malloc(8);
    memcpy(*value, "payload!", 8);
    *len = 8;
    return CACHET_OK;
}

typedef struct {
    cachet_region *r;
    double         end;
    double        *lat;      /* seconds per call */
    size_t         n, cap;
} worker;

static void *run(void *p)
{
    worker *w = p;
    is_caller = 1;
    while (bench_now() < w->end) {
        void *v;
        size_t len;
        double t0 = bench_now();
        if (cachet_get_or_create(w->r, "hot", create, NULL, &v, &len) == CACHET_OK)
            cachet_free(v);
        double dt = bench_now() - t0;
        if (w->n == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 1 << 16;
            w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
            if (!w->lat)
                exit(2);
        }
        w->lat[w->n++] = dt;
    }
    return NULL;
}

static void mode(const char *name, const char *beta, const char *threads, int nthreads, double secs)
{
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    worker *w = calloc((size_t)nthreads, sizeof *w);
    pthread_t *th = calloc((size_t)nthreads, sizeof *th);
    double *all;
    size_t total = 0, k = 0;
    if (cachet_config_set(c, "enabled", "true") || cachet_config_set(c, "backend", "memory") ||
        cachet_config_set(c, "expiration_time", "1") ||
        cachet_config_set(c, "cachet_early_refresh", beta) ||
        cachet_config_set(c, "cachet_refresh_threads", threads) || cachet_region_open(c, &r)) {
        fprintf(stderr, "refresh: %s\n", cachet_errmsg());
        exit(2);
    }
    {   /* the first fill, outside the measurement */
        void *v;
        size_t len;
        if (cachet_get_or_create(r, "hot", create, NULL, &v, &len) == CACHET_OK)
            cachet_free(v);
    }
    atomic_store(&in_callers, 0);
    double end = bench_now() + secs;
    for (int i = 0; i < nthreads; i++) {
        w[i] = (worker){.r = r, .end = end};
        pthread_create(&th[i], NULL, run, &w[i]);
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        total += w[i].n;
    }
    all = malloc(total * sizeof *all);
    for (int i = 0; i < nthreads; i++) {
        memcpy(all + k, w[i].lat, w[i].n * sizeof *all);
        k += w[i].n;
        free(w[i].lat);
    }
    qsort(all, total, sizeof *all, bench_cmp_double);
    printf("%s %.1f %.1f %.1f %zu %ld\n", name, all[total / 2] * 1e6,
           all[(size_t)((double)total * 0.99)] * 1e6, all[total - 1] * 1e6, total,
           atomic_load(&in_callers));
    free(all);
    free(w);
    free(th);
    cachet_region_close(r);
    cachet_config_free(c);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    double secs = argc > 2 ? atof(argv[2]) : 10;
    const char *only = argc > 3 ? argv[3] : NULL;
    if (threads < 1 || !(secs > 0)) {
        fprintf(stderr, "usage: refresh [THREADS] [SECONDS] [dogpile|early|threads]\n");
        return 2;
    }
    if (!only || !strcmp(only, "dogpile"))
        mode("dogpile", "0", "0", threads, secs);
    if (!only || !strcmp(only, "early"))
        mode("early", "1", "0", threads, secs);
    if (!only || !strcmp(only, "threads"))
        mode("threads", "1", "1", threads, secs);
    return 0;
}
