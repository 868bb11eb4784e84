/* A fixed number of get hits on the memory region (20k keys, 100-byte
 * values, keys visited with a stride), for tools that count rather than
 * time: cachegrind's instructions and misses per get, /usr/bin/time.
 *   bench/region_gets N [backend_argument]
 * Run it twice (N and 0) and subtract to leave out the setup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cachet/cachet.h>

#define NKEYS 20000

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000, hits = 0;
    cachet_config *c = cachet_config_new();
    cachet_region *r;
    static char keys[NKEYS][32];
    char val[100];

    cachet_config_set(c, "enabled", "true");
    cachet_config_set(c, "backend", "memory");
    if (argc > 2)
        cachet_config_set(c, "backend_argument", argv[2]);
    if (cachet_region_open(c, &r) != CACHET_OK) {
        fprintf(stderr, "region_gets: %s\n", cachet_errmsg());
        return 2;
    }
    memset(val, 'x', sizeof val);
    for (size_t i = 0; i < NKEYS; i++) {
        snprintf(keys[i], sizeof keys[i], "key:%zu", i);
        cachet_set(r, keys[i], val, sizeof val);
    }
    for (size_t i = 0; i < n; i++) {
        void *v;
        size_t len;
        if (cachet_get(r, keys[(i * 7919) % NKEYS], &v, &len) == CACHET_OK) {
            hits++;
            cachet_free(v);
        }
    }
    printf("%zu hits\n", hits);
    cachet_region_close(r);
    cachet_config_free(c);
    return hits == n ? 0 : 1;
}
