/* cachet's redis region against raw hiredis making the same calls on one
 * connection: get hit, set, get_multi(100).  One thread, 1000 keys,
 * 100-byte values (raw hiredis stores the same 124 bytes cachet stores:
 * header + payload).  Prints `impl op ops_per_second cpu_us_per_op`.
 * Usage: bench/redis PORT [SECONDS]   (bench/run-redis starts the server) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <hiredis/hiredis.h>
#include <cachet/cachet.h>
#include "bench_util.h"

#define NKEYS 1000
#define VSIZE 100
#define MULTI 100

enum { GET, SET, MGET };

static double cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static char keys[NKEYS][32];
static char value[VSIZE + 24];

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench/redis: %s: %s\n", what, detail);
    exit(2);
}

/* one op on the region; i selects the key(s) */
static void cachet_op(cachet_region *r, int op, size_t i)
{
    cachet_status st = CACHET_OK;
    void *v;
    size_t n;
    if (op == GET) {
        st = cachet_get(r, keys[i % NKEYS], &v, &n);
        if (st == CACHET_OK)
            cachet_free(v);
    } else if (op == SET) {
        st = cachet_set(r, keys[i % NKEYS], value, VSIZE);
    } else {
        cachet_item items[MULTI];
        for (size_t k = 0; k < MULTI; k++)
            items[k] = (cachet_item){keys[(i * MULTI + k) % NKEYS], NULL, 0, 0};
        st = cachet_get_multi(r, items, MULTI);
        for (size_t k = 0; k < MULTI; k++)
            if (items[k].status == CACHET_OK)
                cachet_free(items[k].value);
            else
                st = items[k].status;
    }
    if (st != CACHET_OK)
        die("cachet", cachet_errmsg());
}

static void raw_op(redisContext *c, int op, size_t i)
{
    redisReply *rep;
    if (op == GET) {
        const char *argv[2] = {"GET", keys[i % NKEYS]};
        size_t lens[2] = {3, strlen(argv[1])};
        rep = redisCommandArgv(c, 2, argv, lens);
        if (!rep || rep->type != REDIS_REPLY_STRING)
            die("hiredis GET", c->errstr);
    } else if (op == SET) {
        const char *argv[3] = {"SET", keys[i % NKEYS], value};
        size_t lens[3] = {3, strlen(argv[1]), VSIZE + 24};
        rep = redisCommandArgv(c, 3, argv, lens);
        if (!rep || rep->type != REDIS_REPLY_STATUS)
            die("hiredis SET", c->errstr);
    } else {
        const char *argv[MULTI + 1];
        size_t lens[MULTI + 1];
        argv[0] = "MGET";
        lens[0] = 4;
        for (size_t k = 0; k < MULTI; k++) {
            argv[k + 1] = keys[(i * MULTI + k) % NKEYS];
            lens[k + 1] = strlen(argv[k + 1]);
        }
        rep = redisCommandArgv(c, MULTI + 1, argv, lens);
        if (!rep || rep->type != REDIS_REPLY_ARRAY)
            die("hiredis MGET", c->errstr);
    }
    freeReplyObject(rep);
}

/* cachet and raw hiredis in alternating slices (10 of each, after a warm-up
 * slice each), so that load from other processes on the machine falls on
 * both alike. */
static void report(const char *op, double secs, int which, cachet_region *r, redisContext *c)
{
    double el[2] = {0, 0}, cp[2] = {0, 0};
    size_t ops[2] = {0, 0};
    for (int slice = -1; slice < 10; slice++) {
        for (int impl = 0; impl < 2; impl++) {
            size_t n = 0;
            double t0 = bench_now(), c0 = cpu(), end = t0 + secs / 10;
            do {
                for (int k = 0; k < 50; k++, n++)
                    impl == 0 ? cachet_op(r, which, n) : raw_op(c, which, n);
            } while (bench_now() < end);
            if (slice >= 0) {
                el[impl] += bench_now() - t0;
                cp[impl] += cpu() - c0;
                ops[impl] += n;
            }
        }
    }
    for (int impl = 0; impl < 2; impl++)
        printf("%s %s %.0f %.2f\n", impl == 0 ? "cachet" : "hiredis", op,
               (double)ops[impl] / el[impl], cp[impl] * 1e6 / (double)ops[impl]);
}

int main(int argc, char **argv)
{
    char text[512];
    int port = argc > 1 ? atoi(argv[1]) : 0;
    double secs = argc > 2 ? atof(argv[2]) : 1.0;
    cachet_config *cfg;
    cachet_region *r;
    redisContext *c;
    struct timeval tv = {5, 0};

    if (port <= 0)
        die("usage", "bench/redis PORT [SECONDS]");
    for (size_t i = 0; i < NKEYS; i++)
        snprintf(keys[i], sizeof keys[i], "bench:%zu", i);
    memset(value, 'x', sizeof value);
    snprintf(text, sizeof text, "[cache]\nenabled = true\nbackend = dogpile.cache.redis\n"
             "backend_argument = url:redis://127.0.0.1:%d/0\n", port);
    cfg = cachet_config_new();
    if (cachet_config_parse(cfg, text, NULL) != CACHET_OK || cachet_region_open(cfg, &r) != CACHET_OK)
        die("open", cachet_errmsg());
    cachet_config_free(cfg);
    c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err)
        die("hiredis connect", c ? c->errstr : "out of memory");
    redisSetTimeout(c, tv);
    /* the region writes its keys; the raw client reads the same bytes */
    for (size_t i = 0; i < NKEYS; i++)
        cachet_op(r, SET, i);
    report("set", secs, SET, r, c);
    for (size_t i = 0; i < NKEYS; i++)
        cachet_op(r, SET, i);   /* raw SETs wrote header-less bytes: put cachet's back */
    report("get", secs, GET, r, c);
    report("get_multi100", secs, MGET, r, c);
    redisFree(c);
    cachet_region_close(r);
    return 0;
}
