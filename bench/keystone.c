/* cachet's side of bench/run-keystone: set and get-hit calls/s of a
 * [keystone_authtoken] region (keystonemiddleware's format, one strategy)
 * on the memcached bench/run-keystone started.
 *   bench/keystone SERVERS STRATEGY N */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cachet/cachet.h>
#include "bench_util.h"

/* a validated token's data, about the size of a fernet token's without a catalog */
static const char data[] = "{\"token\": {\"methods\": [\"password\"], \"user\": {\"domain\": "
    "{\"id\": \"default\", \"name\": \"Default\"}, \"id\": \"3ec3164f750146be97f21559ee4d9c51\", "
    "\"name\": \"nova\", \"password_expires_at\": null}, \"audit_ids\": [\"yRt0UrxJSs6-WYJgwEMMmg\"], "
    "\"expires_at\": \"2030-01-01T00:00:00.000000Z\", \"issued_at\": \"2029-12-31T23:00:00.000000Z\", "
    "\"project\": {\"domain\": {\"id\": \"default\", \"name\": \"Default\"}, \"id\": "
    "\"a6944d763bf64ee6a275f1263fae0352\", \"name\": \"service\"}, \"is_domain\": false, \"roles\": "
    "[{\"id\": \"51cc68287d524c759f47c811e6463340\", \"name\": \"admin\"}]}}";

int main(int argc, char **argv)
{
    char conf[1024], tok[256];
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    long n;
    double t0;

    if (argc != 4 || (n = atol(argv[3])) <= 0) {
        fprintf(stderr, "usage: %s SERVERS STRATEGY N\n", argv[0]);
        return 2;
    }
    snprintf(conf, sizeof conf, "[keystone_authtoken]\nmemcached_servers = %s\n"
             "memcache_security_strategy = %s\nmemcache_secret_key = bench-secret\n",
             argv[1], argv[2]);
    if (cachet_config_parse(c, conf, "keystone_authtoken") != CACHET_OK ||
        cachet_region_open(c, &r) != CACHET_OK) {
        fprintf(stderr, "%s\n", cachet_errmsg());
        return 2;
    }
    cachet_config_free(c);
    t0 = bench_now();
    for (long i = 0; i < n; i++) {
        snprintf(tok, sizeof tok, "gAAAAABbench-token-%ld", i % 1000);
        if (cachet_set(r, tok, data, sizeof data - 1) != CACHET_OK)
            return fprintf(stderr, "set: %s\n", cachet_errmsg()), 1;
    }
    printf("set %.0f\n", (double)n / (bench_now() - t0));
    t0 = bench_now();
    for (long i = 0; i < n; i++) {
        void *v;
        size_t len;
        snprintf(tok, sizeof tok, "gAAAAABbench-token-%ld", i % 1000);
        if (cachet_get(r, tok, &v, &len) != CACHET_OK || len != sizeof data - 1)
            return fprintf(stderr, "get: not a hit: %s\n", cachet_errmsg()), 1;
        cachet_free(v);
    }
    printf("get_hit %.0f\n", (double)n / (bench_now() - t0));
    cachet_region_close(r);
    return 0;
}
