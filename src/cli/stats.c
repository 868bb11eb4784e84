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

/* ---- stats ---- */

typedef struct {
    const char *name, *help;
    size_t      offset;
} counter;

#define C(f, h) { #f, h, offsetof(cachet_stat_counters, f) }
static const counter counters[] = {
    C(hits, "gets that found a fresh value"),
    C(misses, "gets that found nothing, an expired or an invalidated value"),
    C(sets, "values stored"),
    C(deletes, "keys deleted"),
    C(errors, "backend failures returned or absorbed"),
    C(creator_calls, "get_or_create creator calls"),
    C(lock_waits, "get_or_create callers that waited for another caller's creator"),
    C(stale_served, "old values served while another caller regenerates"),
    C(corrupt, "stored values without a valid cachet header"),
    C(fallbacks, "get_or_create calls that bypassed a failing backend"),
};
#undef C

/* Prometheus label values escape backslash, quote and newline. */
static void print_label(const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            printf("\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", stdout);
        else
            putchar(*s);
    }
}

static void prom_report_line(void *arg, const char *name, const char *value)
{
    fputs("cachet_backend_info{backend=\"", stdout);
    print_label(arg);
    fputs("\",name=\"", stdout);
    print_label(name);
    fputs("\",value=\"", stdout);
    print_label(value);
    fputs("\"} 1\n", stdout);
}

int cli_stats(cachet_region *r, int argc, char **argv)
{
    cachet_stat_counters s;
    int prom = 0;
    cachet_status st;
    const char *backend = cachet_region_backend(r);

    if (argc == 1) {
        if (strcmp(argv[0], "--prometheus") != 0) {
            fprintf(stderr, "cachet: stats: unknown option '%s' (expected --prometheus)\n", argv[0]);
            return CLI_ERROR;
        }
        prom = 1;
    }
    if ((st = cachet_stats(r, &s)) != CACHET_OK)
        return cli_fail("stats", st);
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        uint64_t v = *(const uint64_t *)((const char *)&s + counters[i].offset);
        if (prom) {
            printf("# HELP cachet_%s_total %s.\n# TYPE cachet_%s_total counter\n",
                   counters[i].name, counters[i].help, counters[i].name);
            printf("cachet_%s_total{backend=\"", counters[i].name);
            print_label(backend);
            printf("\"} %llu\n", (unsigned long long)v);
        } else {
            printf("%-14s %llu\n", counters[i].name, (unsigned long long)v);
        }
    }
    if (prom) {
        printf("# HELP cachet_backend_info The backend's own report, one series per line.\n"
               "# TYPE cachet_backend_info gauge\n");
        st = cachet_backend_report(r, prom_report_line, (void *)backend);
    } else {
        printf("backend        %s\n", backend);
        st = cachet_backend_report(r, print_report_line, NULL);
    }
    if (st != CACHET_OK && st != CACHET_ENOTSUP)
        return cli_fail("stats: backend report", st);
    return CLI_OK;
}
