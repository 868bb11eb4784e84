/* The value format's key binding: a value that comes back under another
 * key (a desynchronised connection, a misrouting proxy) is a miss and a
 * counted corruption, never handed to the caller; version-1 values still
 * read where values are not bound (dbm), and are refused where they are. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <cachet/cachet.h>
#include "config.h"
#include "helpers.h"
#ifdef HAVE_GDBM_H
#include <gdbm.h>
#endif

#define PLUGIN(n) TEST_BUILDDIR "/tests/plugins/.libs/" n ".so"

/* A region on backend with up to two backend_argument lines. */
static cachet_region *open_exp(const char *backend, const char *arg1, const char *arg2,
                               const char *expiration_time)
{
    const char *opts[7] = {"expiration_time", expiration_time};
    size_t n = 2;
    if (arg1) {
        opts[n++] = "backend_argument";
        opts[n++] = arg1;
    }
    if (arg2) {
        opts[n++] = "backend_argument";
        opts[n++] = arg2;
    }
    return th_open(backend, opts);
}

static cachet_region *open_opts(const char *backend, const char *arg1, const char *arg2)
{
    return open_exp(backend, arg1, arg2, "-1");
}

static uint64_t corrupt_count(cachet_region *r)
{
    cachet_stat_counters s;
    assert_int_equal(cachet_stats(r, &s), CACHET_OK);
    return s.corrupt;
}

static cachet_status make_fresh(void *arg, const char *key, void **value, size_t *len)
{
    (void)arg, (void)key;
    *value = strdup("fresh");
    *len = 5;
    return *value ? CACHET_OK : CACHET_ENOMEM;
}

/* The plugin answers every get with the one value it holds, whatever key is
 * asked: the secret must never reach a caller who asked for another key. */
static void another_keys_value_is_a_miss(void **state)
{
    cachet_region *r = open_opts(PLUGIN("abi_ok"), "any_key:true", NULL);
    void *v;
    size_t n;
    (void)state;
    assert_int_equal(cachet_set(r, "secret", "TOPSECRET", 9), CACHET_OK);
    assert_int_equal(cachet_get(r, "other", &v, &n), CACHET_MISS);
    assert_null(v);
    assert_int_equal(corrupt_count(r), 1);
    /* the key it was stored under still reads */
    assert_int_equal(cachet_get(r, "secret", &v, &n), CACHET_OK);
    assert_int_equal(n, 9);
    assert_memory_equal(v, "TOPSECRET", 9);
    cachet_free(v);

    cachet_item items[2] = {{.key = "other"}, {.key = "secret"}};
    assert_int_equal(cachet_get_multi(r, items, 2), CACHET_OK);
    assert_int_equal(items[0].status, CACHET_MISS);
    assert_null(items[0].value);
    assert_int_equal(items[1].status, CACHET_OK);
    assert_memory_equal(items[1].value, "TOPSECRET", 9);
    cachet_free(items[1].value);

    /* get_or_create regenerates instead of serving the other key's value */
    assert_int_equal(cachet_get_or_create(r, "other", make_fresh, NULL, &v, &n), CACHET_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(v, "fresh", 5);
    cachet_free(v);
    cachet_region_close(r);
}

static void hex(char *out, const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* Header bytes: version, flags, key check, payload "abc". */
static size_t header(unsigned char *b, int version, int flags, uint64_t check)
{
    static const unsigned char magic[4] = {0xCA, 0xC4, 'E', 'T'};
    size_t hdr = version == 1 ? 24 : 40;
    memset(b, 0, 48);
    memcpy(b, magic, 4);
    b[4] = (unsigned char)version;
    b[5] = (unsigned char)flags;
    b[8] = 1;                                  /* created: 1 ns after the epoch */
    b[16] = 3;                                 /* payload size */
    if (version == 2)
        for (int i = 0; i < 8; i++)
            b[24 + i] = (unsigned char)(check >> (8 * i));
    memcpy(b + hdr, "abc", 3);
    return hdr + 3;
}

/* FNV-1a 64 of the key bytes, as docs/value-format.md defines the check. */
static uint64_t fnv(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* What is refused on a networked backend: a version-1 value (not bound),
 * a version-2 value without the bound flag, one bound to another key.  A
 * value bound to its own key reads. */
static void unbound_values_are_refused_where_values_cross_a_connection(void **state)
{
    cachet_region *r = open_opts(PLUGIN("abi_ok"), NULL, NULL);
    unsigned char b[48];
    char key[160];
    void *v;
    size_t n, len;
    (void)state;

    len = header(b, 1, 0, 0);
    strcpy(key, "hex:");
    hex(key + 4, b, len);
    assert_int_equal(cachet_get(r, key, &v, &n), CACHET_MISS);
    assert_int_equal(corrupt_count(r), 1);

    /* version 2 without the bound flag */
    len = header(b, 2, 0, 0);
    hex(key + 4, b, len);
    assert_int_equal(cachet_get(r, key, &v, &n), CACHET_MISS);
    assert_int_equal(corrupt_count(r), 2);

    /* bound to another key */
    len = header(b, 2, 1, fnv("hex:somewhere-else"));
    hex(key + 4, b, len);
    assert_int_equal(cachet_get(r, key, &v, &n), CACHET_MISS);
    assert_int_equal(corrupt_count(r), 3);
    cachet_region_close(r);
}

#ifdef HAVE_GDBM_H
/* A dbm file in a new directory (dir: its template, rm -rf it after) with
 * "new" = "xyz" written through a region and then the raw bytes b under
 * raw_key written with gdbm; returns a region on it. */
static cachet_region *dbm_beside(char *dir, const char *expiration_time, const char *raw_key,
                                 const unsigned char *b, size_t len)
{
    char path[128], arg[160];
    cachet_region *r;
    GDBM_FILE db;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/cache.db", dir);
    snprintf(arg, sizeof arg, "filename:%s", path);
    r = open_exp("dbm", arg, NULL, expiration_time);
    assert_int_equal(cachet_set(r, "new", "xyz", 3), CACHET_OK);
    cachet_region_close(r);
    db = gdbm_open(path, 0, GDBM_WRITER, 0600, NULL);
    assert_non_null(db);
    datum k = {(char *)raw_key, (int)strlen(raw_key)}, d = {(char *)b, (int)len};
    assert_int_equal(gdbm_store(db, k, d, GDBM_REPLACE), 0);
    gdbm_close(db);
    return open_exp("dbm", arg, NULL, expiration_time);
}

/* Reads "new" (what dbm_beside wrote through the region), closes r and
 * removes dir. */
static void dbm_beside_done(cachet_region *r, const char *dir)
{
    char cmd[200];
    void *v;
    size_t n;
    assert_int_equal(cachet_get(r, "new", &v, &n), CACHET_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(v, "xyz", 3);
    cachet_free(v);
    assert_int_equal(corrupt_count(r), 0);
    cachet_region_close(r);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* dbm keeps its own bytes: a value a cachet of format version 1 wrote
 * still reads after the upgrade. */
static void version_1_values_still_read_on_dbm(void **state)
{
    char dir[] = "/tmp/cachet-value-XXXXXX";
    unsigned char b[48];
    size_t len = header(b, 1, 0, 0);
    cachet_region *r = dbm_beside(dir, "-1", "old", b, len);
    void *v;
    size_t n;
    (void)state;
    assert_int_equal(cachet_get(r, "old", &v, &n), CACHET_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(v, "abc", 3);
    cachet_free(v);
    dbm_beside_done(r, dir);
}

/* A creation time so far in the past that its age would not fit in int64
 * (a damaged dbm file): the value is a miss, and no signed overflow on the
 * way (the UBSan build of `make check` traps on one).  A value written
 * now, beside it, reads. */
static void an_ancient_creation_time_is_a_miss(void **state)
{
    char dir[] = "/tmp/cachet-value-XXXXXX";
    unsigned char b[48];
    size_t len = header(b, 2, 0, 0);
    cachet_region *r;
    void *v;
    size_t n;
    (void)state;
    memset(b + 8, 0, 8);
    b[15] = 0x80;                              /* created: INT64_MIN ns */
    r = dbm_beside(dir, "600", "ancient", b, len);
    assert_int_equal(cachet_get(r, "ancient", &v, &n), CACHET_MISS);
    dbm_beside_done(r, dir);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(another_keys_value_is_a_miss),
        cmocka_unit_test(unbound_values_are_refused_where_values_cross_a_connection),
#ifdef HAVE_GDBM_H
        cmocka_unit_test(version_1_values_still_read_on_dbm),
        cmocka_unit_test(an_ancient_creation_time_is_a_miss),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
