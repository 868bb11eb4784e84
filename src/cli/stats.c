/* `cachet check` and `cachet stats`: what an operator asks first — does the
 * configured cache work, and what does the backend say about its servers. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_report_line(void *arg, const char *name, const char *value)
{
    printf("  %s: %s\n", name, value);
}

/* The backend's servers, each with its state, failures and time since its
 * last change (the report's "server" lines), then its other lines. */
static void print_servers(cachet_region *r)
{
    cachet_status st = cachet_backend_report(r, print_report_line, NULL);
    if (st != CACHET_OK && st != CACHET_ENOTSUP)
        cli_fail("check: backend report", st);
}

/* The probe key's round trip; CLI_OK or CLI_ERROR (the message printed). */
static int probe(cachet_region *r, double t0)
{
    char key[128], value[64];
    void *got = NULL;
    size_t len = 0;
    cachet_status st;

    /* a key of this host and process, so two checks cannot see each
     * other's probe */
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    snprintf(key, sizeof key, "cachet-check:%s:%ld", host, (long)getpid());
    snprintf(value, sizeof value, "probe %ld %.6f", (long)getpid(), t0);

    if ((st = cachet_set(r, key, value, strlen(value))) != CACHET_OK)
        return cli_fail("check: set of the probe key", st);
    st = cachet_get(r, key, &got, &len);
    if (st == CACHET_MISS && strcmp(cachet_region_backend(r), "null") == 0) {
        printf("probe:   the null backend stores nothing (enabled = false?): ok\n");
    } else if (st != CACHET_OK) {
        cachet_delete(r, key);
        return cli_fail("check: get of the probe key", st);
    } else {
        int same = len == strlen(value) && memcmp(got, value, len) == 0;
        cachet_free(got);
        if (!same) {
            cachet_delete(r, key);
            fprintf(stderr, "cachet: check: the probe key came back with other bytes\n");
            return CLI_ERROR;
        }
    }
    if ((st = cachet_delete(r, key)) != CACHET_OK)
        return cli_fail("check: delete of the probe key", st);
    printf("probe:   set, get, delete ok in %.3f ms\n", (now() - t0) * 1e3);
    return CLI_OK;
}

/* The servers are printed whether or not the probe worked: a dead host is
 * what an operator runs check for. */
int cli_check(cachet_region *r, const char *described)
{
    int rc;

    printf("config:  %s\n", described);
    printf("backend: %s\n", cachet_region_backend(r));
    rc = probe(r, now());
    if (rc != CLI_OK)
        printf("probe:   failed (see above)\n");
    print_servers(r);
    return rc;
}

/* ---- stats ----
 *
 * An operator asks what the cache holds and how its servers are: the
 * backend's report first (each server's state and its own figures --
 * memcached's curr_items, bytes, evictions; redis's used_memory, keys --
 * which the backends ask their servers for), then this run's own counters,
 * which are those of a region just opened (zeros, unless a proxy such as
 * near reports more).  --prometheus writes cachet_metrics_prometheus(),
 * the text a service exports: the same figures as samples of their own. */

typedef struct {
    const char *name;
    size_t      offset;
} counter;

#define C(f) { #f, offsetof(cachet_stat_counters, f) }
static const counter counters[] = {
    C(hits), C(misses), C(sets), C(deletes), C(errors), C(creator_calls), C(lock_waits),
    C(stale_served), C(corrupt), C(fallbacks), C(early_refreshes), C(background_refreshes),
};
#undef C

static void print_stat_line(void *arg, const char *name, const char *value)
{
    (void)arg;
    printf("  %-30s %s\n", name, value);
}

static int print_prometheus(cachet_region *r)
{
    size_t n = cachet_metrics_prometheus(r, NULL, 0), m;
    char *buf;
    /* the text may grow between the two calls (a server's figure appears) */
    for (size_t room = n + 4096;; room = m + 4096) {
        if (!(buf = malloc(room))) {
            fprintf(stderr, "cachet: stats: out of memory\n");
            return CLI_ERROR;
        }
        m = cachet_metrics_prometheus(r, buf, room);
        if (m < room)
            break;
        free(buf);
    }
    fputs(buf, stdout);
    free(buf);
    return CLI_OK;
}

int cli_stats(cachet_region *r, int argc, char **argv)
{
    cachet_stat_counters s;
    cachet_status st;

    if (argc == 1) {
        if (strcmp(argv[0], "--prometheus") != 0) {
            fprintf(stderr, "cachet: stats: unknown option '%s' (expected --prometheus)\n", argv[0]);
            return CLI_ERROR;
        }
        return print_prometheus(r);
    }
    printf("backend: %s\n", cachet_region_backend(r));
    st = cachet_backend_report(r, print_stat_line, NULL);
    if (st != CACHET_OK && st != CACHET_ENOTSUP)
        return cli_fail("stats: backend report", st);
    if ((st = cachet_stats(r, &s)) != CACHET_OK)
        return cli_fail("stats", st);
    printf("this run's region (opened for this command):\n");
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        uint64_t v = *(const uint64_t *)((const char *)&s + counters[i].offset);
        printf("  %-30s %llu\n", counters[i].name, (unsigned long long)v);
    }
    return CLI_OK;
}
