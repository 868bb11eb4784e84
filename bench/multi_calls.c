/* get_multi(100) on one memcached: cachet's region against raw
 * libmemcached's mget + fetch loop, the same 100 keys (raw's hold as many
 * bytes as the region's values, header included).  Meant to run under
 * callgrind, which counts the user-space instructions of each side's
 * function (run_cachet, run_raw) apart:
 *   valgrind --tool=callgrind --callgrind-out-file=OUT bench/multi_calls [calls]
 *   callgrind_annotate --inclusive=yes OUT | grep -E 'run_(cachet|raw)'
 * (bench/run-multi does both and prints the ratio.)  Without valgrind it
 * just runs and checks the answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libmemcached/memcached.h>
#include <cachet/cachet.h>
#include "servers.h"

#define MULTI     100
#define VALUE_LEN 100

static char keys[MULTI][32], rawkeys[MULTI][32];

static void die(const char *what)
{
    fprintf(stderr, "multi_calls: %s\n", what);
    exit(2);
}

__attribute__((noinline)) static void run_cachet(cachet_region *r, int calls)
{
    cachet_item items[MULTI];
    for (int c = 0; c < calls; c++) {
        for (int i = 0; i < MULTI; i++)
            items[i] = (cachet_item){.key = keys[i]};
        if (cachet_get_multi(r, items, MULTI) != CACHET_OK)
            die(cachet_errmsg());
        for (int i = 0; i < MULTI; i++) {
            if (items[i].status != CACHET_OK || items[i].len != VALUE_LEN)
                die("cachet: a key missed");
            cachet_free(items[i].value);
        }
    }
}

__attribute__((noinline)) static void run_raw(memcached_st *mc, int calls)
{
    const char *k[MULTI];
    size_t kl[MULTI];
    for (int i = 0; i < MULTI; i++) {
        k[i] = rawkeys[i];
        kl[i] = strlen(rawkeys[i]);
    }
    memcached_result_st res;
    memcached_result_create(mc, &res);  /* one result reused, as bench/memcached does */
    for (int c = 0; c < calls; c++) {
        memcached_return_t rc;
        int got = 0;
        if (memcached_mget(mc, k, kl, MULTI) != MEMCACHED_SUCCESS)
            die("raw mget");
        while (memcached_fetch_result(mc, &res, &rc) != NULL)
            got++;
        if (got != MULTI)
            die("raw: a key missed");
    }
    memcached_result_free(&res);
}

int main(int argc, char **argv)
{
    int calls = argc > 1 ? atoi(argv[1]) : 200;
    test_server s;
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    memcached_st *mc = memcached_create(NULL);
    char url[64], value[VALUE_LEN], stored[VALUE_LEN + 64];

    if (test_memcached_start(&s, 0, NULL) != 0)
        die("cannot start memcached");
    snprintf(url, sizeof url, "127.0.0.1:%d", s.port);
    cachet_config_set(c, "enabled", "true");
    cachet_config_set(c, "backend", "memcached");
    cachet_config_set(c, "memcache_servers", url);
    if (cachet_region_open(c, &r) != CACHET_OK)
        die(cachet_errmsg());
    memset(value, 'v', sizeof value);
    memset(stored, 's', sizeof stored);
    for (int i = 0; i < MULTI; i++) {
        snprintf(keys[i], sizeof keys[i], "multi:%d", i);
        snprintf(rawkeys[i], sizeof rawkeys[i], "raw:multi:%d", i);
        if (cachet_set(r, keys[i], value, sizeof value) != CACHET_OK)
            die(cachet_errmsg());
    }
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_server_add(mc, "127.0.0.1", (in_port_t)s.port);
    for (int i = 0; i < MULTI; i++)   /* as many bytes as the region stores (~40-byte header) */
        if (memcached_set(mc, rawkeys[i], strlen(rawkeys[i]), stored, VALUE_LEN + 40, 0, 0) !=
            MEMCACHED_SUCCESS)
            die("raw set");
    run_cachet(r, 5);                 /* warm: connections, buffers */
    run_raw(mc, 5);
    run_cachet(r, calls);
    run_raw(mc, calls);
    printf("%d calls of get_multi(%d) each side: ok\n", calls, MULTI);
    memcached_free(mc);
    cachet_region_close(r);
    cachet_config_free(c);
    test_server_stop(&s);
    return 0;
}
