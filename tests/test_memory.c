/* The memory and null backends through their raw vtables, loaded with
 * dlopen() from the build tree as the loader would: round trips, bounds
 * and LRU order, refusals, argument errors, multi-operations, sweep, and
 * invariants after many threads hammer one instance. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cachet/backend.h>
#include "helpers.h"

static void *handles[2];

static const cachet_backend_ops *load(const char *name)
{
    char path[4096];
    void *h;
    cachet_backend_entry_fn entry;
    const cachet_backend_ops *ops;
    int slot = strcmp(name, "memory") == 0 ? 0 : 1;

    snprintf(path, sizeof path, TEST_BUILDDIR "/backends/.libs/%s.so", name);
    if (!handles[slot] && !(handles[slot] = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
        fail_msg("dlopen %s: %s", path, dlerror());
    h = handles[slot];
    *(void **)&entry = dlsym(h, CACHET_BACKEND_ENTRY_SYMBOL);
    assert_non_null(entry);
    ops = entry();
    assert_non_null(ops);
    assert_int_equal(ops->abi_version, CACHET_BACKEND_ABI_VERSION);
    assert_string_equal(ops->name, name);
    return ops;
}

static int teardown_all(void **state)
{
    for (int i = 0; i < 2; i++)
        if (handles[i])
            dlclose(handles[i]);
    return 0;
}

/* args: name, value, name, value, ..., NULL */
static cachet_status open_with(const cachet_backend_ops *ops, void **inst, ...)
{
    cachet_backend_arg args[8];
    cachet_backend_params p = {args, 0, 0};
    const char *name;
    va_list ap;

    va_start(ap, inst);
    while ((name = va_arg(ap, const char *)) != NULL) {
        assert_true(p.nargs < 8);
        args[p.nargs].name = name;
        args[p.nargs].value = va_arg(ap, const char *);
        p.nargs++;
    }
    va_end(ap);
    *inst = NULL;
    return ops->open(&p, inst);
}

static void *open_memory(const cachet_backend_ops **ops, const char *max_count,
                         const char *max_size)
{
    void *m;
    *ops = load("memory");
    if (max_count && max_size)
        assert_int_equal(open_with(*ops, &m, "max_count", max_count, "max_size", max_size, NULL),
                         CACHET_OK);
    else if (max_count)
        assert_int_equal(open_with(*ops, &m, "max_count", max_count, NULL), CACHET_OK);
    else if (max_size)
        assert_int_equal(open_with(*ops, &m, "max_size", max_size, NULL), CACHET_OK);
    else
        assert_int_equal(open_with(*ops, &m, NULL), CACHET_OK);
    assert_non_null(m);
    return m;
}

/* ---- small helpers over the vtable, with C-string keys ---- */

static cachet_status put(const cachet_backend_ops *ops, void *m, const char *k,
                         const void *v, size_t n)
{
    return ops->set(m, k, strlen(k), v, n, 0);
}

static void assert_value(const cachet_backend_ops *ops, void *m, const char *k,
                         const void *want, size_t wlen)
{
    void *v = (void *)1;
    size_t n = 12345;
    cachet_status st = ops->get(m, k, strlen(k), &v, &n);
    if (st != CACHET_OK)
        fail_msg("get %s: status %d, want a hit", k, st);
    assert_non_null(v);
    assert_int_equal(n, wlen);
    if (wlen)
        assert_memory_equal(v, want, wlen);
    free(v);
}

static void assert_miss(const cachet_backend_ops *ops, void *m, const char *k)
{
    void *v = NULL;
    size_t n = 0;
    cachet_status st = ops->get(m, k, strlen(k), &v, &n);
    if (st != CACHET_MISS)
        fail_msg("get %s: status %d, want a miss", k, st);
}

typedef struct {
    long entries, bytes, max_count, max_size;
    int seen;
} report;

static void on_report(void *arg, const char *name, const char *value)
{
    report *r = arg;
    char *end;
    long n = strtol(value, &end, 10);
    if (*value == '\0' || *end != '\0')
        return;             /* not a decimal: leaves the field unseen */
    if (strcmp(name, "entries") == 0)
        r->entries = n, r->seen |= 1;
    else if (strcmp(name, "bytes") == 0)
        r->bytes = n, r->seen |= 2;
    else if (strcmp(name, "max_count") == 0)
        r->max_count = n, r->seen |= 4;
    else if (strcmp(name, "max_size") == 0)
        r->max_size = n, r->seen |= 8;
}

static report get_report(const cachet_backend_ops *ops, void *m)
{
    report r = {-1, -1, -1, -1, 0};
    assert_non_null(ops->report);
    assert_int_equal(ops->report(m, on_report, &r), CACHET_OK);
    assert_int_equal(r.seen, 15);
    return r;
}

/* ---- tests ---- */

static void round_trip_binary_and_empty(void **state)
{
    const cachet_backend_ops *ops;
    void *m = open_memory(&ops, NULL, NULL);
    static const char bin[] = {'a', '\0', 'b', '\0', '\xff', '\0'};
    static const char k1[] = {'k', '\0', '1'}, k2[] = {'k', '\0', '2'};
    void *v;
    size_t n;

    assert_int_equal(put(ops, m, "text", "hello", 5), CACHET_OK);
    assert_int_equal(put(ops, m, "bin", bin, sizeof bin), CACHET_OK);
    assert_int_equal(put(ops, m, "empty", "", 0), CACHET_OK);
    assert_value(ops, m, "text", "hello", 5);
    assert_value(ops, m, "bin", bin, sizeof bin);
    assert_value(ops, m, "empty", "", 0);       /* a hit with a non-NULL pointer */

    /* keys are bytes too: NULs inside, and a prefix is not the key */
    assert_int_equal(ops->set(m, k1, sizeof k1, "one", 3, 0), CACHET_OK);
    assert_int_equal(ops->set(m, k2, sizeof k2, "two", 3, 0), CACHET_OK);
    assert_int_equal(ops->get(m, k1, sizeof k1, &v, &n), CACHET_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(v, "one", 3);
    free(v);
    assert_int_equal(ops->get(m, k2, sizeof k2, &v, &n), CACHET_OK);
    assert_memory_equal(v, "two", 3);
    free(v);
    assert_int_equal(ops->get(m, k1, 1, &v, &n), CACHET_MISS);
    assert_miss(ops, m, "tex");

    report r = get_report(ops, m);
    assert_int_equal(r.entries, 5);
    assert_int_equal(r.bytes, (4 + 5) + (3 + 6) + (5 + 0) + (3 + 3) * 2);
    assert_int_equal(r.max_count, 0);
    assert_int_equal(r.max_size, 0);
    ops->close(m);
}

static void overwrite_keeps_accounting_exact(void **state)
{
    const cachet_backend_ops *ops;
    void *m = open_memory(&ops, NULL, NULL);

    assert_int_equal(put(ops, m, "k", "0123456789", 10), CACHET_OK);
    assert_int_equal(put(ops, m, "k", "abc", 3), CACHET_OK);
    assert_value(ops, m, "k", "abc", 3);
    report r = get_report(ops, m);
    assert_int_equal(r.entries, 1);
    assert_int_equal(r.bytes, 1 + 3);
    assert_int_equal(put(ops, m, "k", "a longer value", 14), CACHET_OK);
    assert_value(ops, m, "k", "a longer value", 14);
    r = get_report(ops, m);
    assert_int_equal(r.entries, 1);
    assert_int_equal(r.bytes, 1 + 14);
    ops->close(m);
}

static void delete_and_miss(void **state)
{
    const cachet_backend_ops *ops;
    void *m = open_memory(&ops, "10", NULL);

    assert_miss(ops, m, "absent");
    assert_int_equal(ops->del(m, "absent", 6), CACHET_OK);
    assert_int_equal(put(ops, m, "k", "v", 1), CACHET_OK);
    assert_int_equal(put(ops, m, "other", "w", 1), CACHET_OK);
    assert_int_equal(ops->del(m, "k", 1), CACHET_OK);
    assert_miss(ops, m, "k");
    assert_value(ops, m, "other", "w", 1);
    assert_int_equal(ops->del(m, "k", 1), CACHET_OK);       /* twice is fine */
    report r = get_report(ops, m);
    assert_int_equal(r.entries, 1);
    assert_int_equal(r.bytes, 5 + 1);
    assert_int_equal(ops->del(m, "other", 5), CACHET_OK);
    r = get_report(ops, m);
    assert_int_equal(r.entries, 0);
    assert_int_equal(r.bytes, 0);
    ops->close(m);
}

/* S3-FIFO (backends/memory/memtable.c): a new entry waits in the small
 * FIFO; one hit there moves it to main when it reaches the tail, one never
 * hit is the first to go. */
static void max_count_evicts_the_never_hit_first(void **state)
{
    const cachet_backend_ops *ops;
    void *m = open_memory(&ops, "3", NULL);

    assert_int_equal(put(ops, m, "a", "1", 1), CACHET_OK);
    assert_int_equal(put(ops, m, "b", "2", 1), CACHET_OK);
    assert_int_equal(put(ops, m, "c", "3", 1), CACHET_OK);
    assert_value(ops, m, "a", "1", 1);          /* a was hit: it moves to main */
    assert_int_equal(put(ops, m, "d", "4", 1), CACHET_OK);
    assert_miss(ops, m, "b");                   /* b, oldest never hit, went */
    assert_value(ops, m, "a", "1", 1);
    assert_value(ops, m, "c", "3", 1);
    assert_value(ops, m, "d", "4", 1);
    /* overwriting a present key at the bound evicts nothing */
    assert_int_equal(put(ops, m, "c", "33", 2), CACHET_OK);
    assert_value(ops, m, "a", "1", 1);
    assert_value(ops, m, "d", "4", 1);
    assert_value(ops, m, "c", "33", 2);
    report r = get_report(ops, m);
    assert_int_equal(r.entries, 3);
    assert_int_equal(r.bytes, (1 + 1) + (1 + 1) + (1 + 2));
    assert_int_equal(r.max_count, 3);
    /* the newest entry is never its own victim */
    assert_int_equal(put(ops, m, "e", "5", 1), CACHET_OK);
    assert_value(ops, m, "e", "5", 1);
    assert_int_equal(get_report(ops, m).entries, 3);
    ops->close(m);
}

static void max_size_evicts_the_never_hit_first(void **state)
{
    const cachet_backend_ops *ops;
    void *m = open_memory(&ops, NULL, "30");
    const char *nine = "123456789";
    const char *nineteen = "1234567890123456789";

    /* 1-byte keys + 9-byte values: 10 bytes each, exactly max_size for 3 */
    assert_int_equal(put(ops, m, "a", nine, 9), CACHET_OK);
    assert_int_equal(put(ops, m, "b", nine, 9), CACHET_OK);
    assert_int_equal(put(ops, m, "c", nine, 9), CACHET_OK);
    assert_int_equal(get_report(ops, m).bytes, 30);
    assert_value(ops, m, "a", nine, 9);
    assert_int_equal(put(ops, m, "d", nine, 9), CACHET_OK);
    assert_miss(ops, m, "b");
    /* c and d were never hit; 20 bytes more must push out both, not a */
    assert_int_equal(put(ops, m, "e", nineteen, 19), CACHET_OK);
    assert_miss(ops, m, "c");
    assert_miss(ops, m, "d");
    assert_value(ops, m, "a", nine, 9);
    assert_value(ops, m, "e", nineteen, 19);
    report r = get_report(ops, m);
    assert_int_equal(r.entries, 2);
    assert_int_equal(r.bytes, 30);
    assert_int_equal(r.max_size, 30);
    /* exactly max_size on its own fits, and evicts everything else */
    assert_int_equal(put(ops, m, "f", "12345678901234567890123456789", 29), CACHET_OK);
    r = get_report(ops, m);
    assert_int_equal(r.entries, 1);
    assert_int_equal(r.bytes, 30);
    assert_value(ops, m, "f", "12345678901234567890123456789", 29);
    ops->close(m);
}

/* Keys hit twice survive a scan of ten times the bound in one-time keys
 * (exact LRU would have none of them left), on one shard and on many. */
static void hot_keys_survive_a_scan(void **state)
{
    static const struct { const char *max_count; unsigned hot, scan; } cases[] = {
        {"100", 20, 1000},
        {"20000", 500, 200000},    /* 20000 entries: the table is sharded */
    };
    const cachet_backend_ops *ops;
    char k[32];

    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        void *m = open_memory(&ops, cases[c].max_count, NULL);
        long max = atol(cases[c].max_count);
        for (unsigned i = 0; i < cases[c].hot; i++) {
            snprintf(k, sizeof k, "hot:%u", i);
            assert_int_equal(put(ops, m, k, "h", 1), CACHET_OK);
        }
        for (int round = 0; round < 2; round++)
            for (unsigned i = 0; i < cases[c].hot; i++) {
                snprintf(k, sizeof k, "hot:%u", i);
                assert_value(ops, m, k, "h", 1);
            }
        for (unsigned i = 0; i < cases[c].scan; i++) {
            snprintf(k, sizeof k, "scan:%u", i);
            assert_int_equal(put(ops, m, k, "s", 1), CACHET_OK);
        }
        for (unsigned i = 0; i < cases[c].hot; i++) {
            snprintf(k, sizeof k, "hot:%u", i);
            assert_value(ops, m, k, "h", 1);
        }
        assert_int_equal(get_report(ops, m).entries, max);
        ops->close(m);
    }
}

/* The bounds are the table's, not a shard's: with many shards the count
 * and the bytes hold after every write, and one entry of max_size takes
 * the room of all the others, wherever they were. */
static void bounds_hold_across_shards(void **state)
{
    const cachet_backend_ops *ops;
    void *m = open_memory(&ops, "10000", NULL);
    char k[32], *val;
    enum { VAL = 1000, MAX_SIZE = 32 << 20 };

    for (unsigned i = 0; i < 50000; i++) {
        snprintf(k, sizeof k, "key:%u", i);
        assert_int_equal(put(ops, m, k, "v", 1), CACHET_OK);
        if (i % 997 == 0)
            assert_true(get_report(ops, m).entries <= 10000);
    }
    assert_int_equal(get_report(ops, m).entries, 10000);
    ops->close(m);

    m = open_memory(&ops, NULL, "33554432");
    assert_non_null(val = malloc(MAX_SIZE));
    memset(val, 'v', MAX_SIZE);
    for (unsigned i = 0; i < 50000; i++) {
        snprintf(k, sizeof k, "key:%05u", i);      /* 9-byte keys: 1009 bytes an entry */
        assert_int_equal(put(ops, m, k, val, VAL), CACHET_OK);
        if (i % 997 == 0)
            assert_true(get_report(ops, m).bytes <= MAX_SIZE);
    }
    report r = get_report(ops, m);
    assert_true(r.bytes <= MAX_SIZE);
    assert_true(r.bytes > MAX_SIZE - 1009);
    assert_int_equal(put(ops, m, "big", val, MAX_SIZE - 3), CACHET_OK);
    r = get_report(ops, m);
    assert_int_equal(r.entries, 1);
    assert_int_equal(r.bytes, MAX_SIZE);
    assert_value(ops, m, "big", val, MAX_SIZE - 3);
    free(val);
    ops->close(m);
}

static void too_big_is_refused_and_drops_the_old_value(void **state)
{
    const cachet_backend_ops *ops;
    void *m = open_memory(&ops, NULL, "16");
    char big[32];

    memset(big, 'x', sizeof big);
    assert_int_equal(put(ops, m, "k", "small", 5), CACHET_OK);
    assert_int_equal(put(ops, m, "keep", "v", 1), CACHET_OK);
    assert_int_equal(put(ops, m, "k", big, 16), CACHET_ETOOBIG);   /* 1 + 16 > 16 */
    th_assert_contains(cachet_errmsg(), "max_size");
    th_assert_contains(cachet_errmsg(), "17");
    assert_miss(ops, m, "k");                   /* nothing stale survives */
    assert_value(ops, m, "keep", "v", 1);       /* and nothing else was evicted */
    report r = get_report(ops, m);
    assert_int_equal(r.entries, 1);
    assert_int_equal(r.bytes, 4 + 1);
    assert_int_equal(put(ops, m, "new", big, sizeof big), CACHET_ETOOBIG);
    assert_miss(ops, m, "new");
    assert_int_equal(get_report(ops, m).entries, 1);
    ops->close(m);

    /* without max_size there is no such refusal */
    m = open_memory(&ops, "2", NULL);
    assert_int_equal(put(ops, m, "k", big, sizeof big), CACHET_OK);
    assert_value(ops, m, "k", big, sizeof big);
    ops->close(m);
}

static void bad_arguments_name_the_argument(void **state)
{
    const cachet_backend_ops *ops = load("memory");
    void *m;

    assert_int_equal(open_with(ops, &m, "max_cont", "3", NULL), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "max_cont");
    assert_int_equal(open_with(ops, &m, "max_count", "abc", NULL), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "max_count");
    th_assert_contains(cachet_errmsg(), "abc");
    assert_int_equal(open_with(ops, &m, "max_size", "12kb", NULL), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "max_size");
    assert_int_equal(open_with(ops, &m, "max_size", "-1", NULL), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "max_size");
    assert_int_equal(open_with(ops, &m, "max_count", "", NULL), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "max_count");
    /* explicit zeros are the unlimited defaults */
    assert_int_equal(open_with(ops, &m, "max_count", "0", "max_size", "0", NULL), CACHET_OK);
    report r = get_report(ops, m);
    assert_int_equal(r.max_count, 0);
    assert_int_equal(r.max_size, 0);
    ops->close(m);
}

static void instances_do_not_share_data(void **state)
{
    const cachet_backend_ops *ops;
    void *a = open_memory(&ops, NULL, NULL), *b = open_memory(&ops, NULL, NULL);

    assert_int_equal(put(ops, a, "k", "in a", 4), CACHET_OK);
    assert_miss(ops, b, "k");
    assert_int_equal(put(ops, b, "k", "in b", 4), CACHET_OK);
    assert_value(ops, a, "k", "in a", 4);
    ops->close(a);
    assert_value(ops, b, "k", "in b", 4);
    ops->close(b);
}

static void many_keys_grow_the_table(void **state)
{
    const cachet_backend_ops *ops;
    void *m = open_memory(&ops, NULL, NULL);
    enum { N = 50000 };
    char k[32];

    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "key:%d", i);
        assert_int_equal(put(ops, m, k, &i, sizeof i), CACHET_OK);
    }
    assert_int_equal(get_report(ops, m).entries, N);
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "key:%d", i);
        assert_value(ops, m, k, &i, sizeof i);
    }
    for (int i = 0; i < N; i += 2) {
        snprintf(k, sizeof k, "key:%d", i);
        assert_int_equal(ops->del(m, k, strlen(k)), CACHET_OK);
    }
    assert_int_equal(get_report(ops, m).entries, N / 2);
    snprintf(k, sizeof k, "key:%d", 2);
    assert_miss(ops, m, k);
    int three = 3;
    snprintf(k, sizeof k, "key:%d", 3);
    assert_value(ops, m, k, &three, sizeof three);
    ops->close(m);
}

/* items with a literal key, and a value to set or none; 99 shows an untouched status */
#define ITEM(k, v) {k, sizeof k - 1, (void *)(v), strlen(v), (cachet_status)99, 0}
#define KEY(k)     {k, sizeof k - 1, NULL, 0, (cachet_status)99, 0}

static void multi_operations_set_each_status(void **state)
{
    const cachet_backend_ops *ops;
    void *m = open_memory(&ops, NULL, "20");
    char big[40];

    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_non_null(ops->get_multi);
    assert_non_null(ops->set_multi);
    assert_non_null(ops->delete_multi);
    assert_int_equal(put(ops, m, "b", "old", 3), CACHET_OK);

    cachet_backend_item set[] = {ITEM("a", "one"), ITEM("b", big), ITEM("c", "")};
    assert_int_equal(ops->set_multi(m, set, 3), CACHET_ETOOBIG);
    assert_int_equal(set[0].status, CACHET_OK);
    assert_int_equal(set[1].status, CACHET_ETOOBIG);
    assert_int_equal(set[2].status, CACHET_OK);
    th_assert_contains(cachet_errmsg(), "max_size");

    cachet_backend_item get[] = {KEY("a"), KEY("b"), KEY("c"), KEY("zz")};
    assert_int_equal(ops->get_multi(m, get, 4), CACHET_OK);    /* misses are handled */
    assert_int_equal(get[0].status, CACHET_OK);
    assert_int_equal(get[0].len, 3);
    assert_memory_equal(get[0].value, "one", 3);
    assert_int_equal(get[1].status, CACHET_MISS);               /* old value dropped */
    assert_null(get[1].value);
    assert_int_equal(get[2].status, CACHET_OK);
    assert_non_null(get[2].value);
    assert_int_equal(get[2].len, 0);
    assert_int_equal(get[3].status, CACHET_MISS);
    for (int i = 0; i < 4; i++)
        free(get[i].value);

    cachet_backend_item del[] = {KEY("a"), KEY("nope")};
    assert_int_equal(ops->delete_multi(m, del, 2), CACHET_OK);
    assert_int_equal(del[0].status, CACHET_OK);
    assert_int_equal(del[1].status, CACHET_OK);
    assert_miss(ops, m, "a");
    assert_value(ops, m, "c", "", 0);
    report r = get_report(ops, m);
    assert_int_equal(r.entries, 1);
    assert_int_equal(r.bytes, 1);
    ops->close(m);

    /* a batch evicts as the same sets one by one would, and duplicates
     * within it end with the last value */
    m = open_memory(&ops, "2", NULL);
    cachet_backend_item batch[] = {ITEM("a", "1"), ITEM("b", "2"), ITEM("a", "3"),
                                   ITEM("c", "4")};
    assert_int_equal(ops->set_multi(m, batch, 4), CACHET_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(batch[i].status, CACHET_OK);
    assert_miss(ops, m, "b");
    assert_value(ops, m, "a", "3", 1);
    assert_value(ops, m, "c", "4", 1);
    assert_int_equal(ops->set_multi(m, batch, 0), CACHET_OK);
    assert_int_equal(get_report(ops, m).entries, 2);
    ops->close(m);
}

static int keep_lowercase(void *arg, const void *value, size_t len)
{
    ++*(int *)arg;
    return len > 0 && *(const char *)value >= 'a' && *(const char *)value <= 'z';
}

static void sweep_removes_what_keep_refuses(void **state)
{
    const cachet_backend_ops *ops;
    void *m = open_memory(&ops, "4", NULL);
    size_t removed = 99;
    int calls = 0;

    assert_non_null(ops->sweep);
    assert_int_equal(put(ops, m, "1", "alive", 5), CACHET_OK);
    assert_int_equal(put(ops, m, "2", "DEAD", 4), CACHET_OK);
    assert_int_equal(put(ops, m, "3", "", 0), CACHET_OK);
    assert_int_equal(put(ops, m, "4", "also", 4), CACHET_OK);
    assert_int_equal(ops->sweep(m, keep_lowercase, &calls, &removed), CACHET_OK);
    assert_int_equal(calls, 4);
    assert_int_equal(removed, 2);
    assert_value(ops, m, "1", "alive", 5);
    assert_value(ops, m, "4", "also", 4);
    assert_miss(ops, m, "2");
    assert_miss(ops, m, "3");
    report r = get_report(ops, m);
    assert_int_equal(r.entries, 2);
    assert_int_equal(r.bytes, 6 + 5);
    /* the queues survived the sweep: 1 and 4 were hit, so once two more
     * fill the bound a third pushes out 5, the oldest never hit */
    assert_int_equal(put(ops, m, "5", "e", 1), CACHET_OK);
    assert_int_equal(put(ops, m, "6", "f", 1), CACHET_OK);
    assert_int_equal(get_report(ops, m).entries, 4);
    assert_int_equal(put(ops, m, "7", "g", 1), CACHET_OK);
    assert_miss(ops, m, "5");
    assert_value(ops, m, "1", "alive", 5);
    assert_value(ops, m, "4", "also", 4);
    assert_value(ops, m, "6", "f", 1);
    assert_int_equal(get_report(ops, m).entries, 4);
    ops->close(m);
}

/* ---- threads ---- */

enum { THREADS = 8, OPS = 20000, KEYS = 256, MAX_COUNT = 100, MAX_SIZE = 6000 };

typedef struct {
    const cachet_backend_ops *ops;
    void *m;
    unsigned id;
    long bad;               /* values that no thread could have written */
    long errors;            /* unexpected statuses */
    long hits;
} worker;

static void key_of(char *k, unsigned i)
{
    snprintf(k, 8, "k%03u", i);
}

/* A value encodes its key, so a torn or misplaced value shows:
 * [0..1] key index, [2] writer, [3] length, then a fill byte from all three. */
static size_t value_of(unsigned char *v, unsigned key, unsigned writer, unsigned rnd)
{
    size_t n = 4 + rnd % 60;
    v[0] = (unsigned char)(key >> 8);
    v[1] = (unsigned char)key;
    v[2] = (unsigned char)writer;
    v[3] = (unsigned char)n;
    memset(v + 4, (key * 7 + writer * 13 + (unsigned)n) & 0xff, n - 4);
    return n;
}

static int value_ok(const unsigned char *v, size_t n, unsigned key)
{
    if (n < 4 || n > 63 || v[3] != n || ((unsigned)v[0] << 8 | v[1]) != key || v[2] >= THREADS)
        return 0;
    for (size_t i = 4; i < n; i++)
        if (v[i] != ((key * 7 + v[2] * 13u + (unsigned)n) & 0xff))
            return 0;
    return 1;
}

static void *hammer(void *arg)
{
    worker *w = arg;
    uint32_t x = 2463534242u * (w->id + 1);
    unsigned char val[64];
    char k[8];

    for (int i = 0; i < OPS; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;        /* xorshift32 */
        unsigned key = x % KEYS, op = (x >> 8) % 100;
        void *v;
        size_t n;
        cachet_status st;

        key_of(k, key);
        if (op < 55) {
            st = w->ops->get(w->m, k, 4, &v, &n);
            if (st == CACHET_OK) {
                w->hits++;
                w->bad += !value_ok(v, n, key);
                free(v);
            } else if (st != CACHET_MISS) {
                w->errors++;
            }
        } else if (op < 85) {
            n = value_of(val, key, w->id, x >> 16);
            w->errors += w->ops->set(w->m, k, 4, val, n, 0) != CACHET_OK;
        } else if (op < 92) {
            w->errors += w->ops->del(w->m, k, 4) != CACHET_OK;
        } else if (op < 96) {
            char ks[4][8];
            unsigned char vs[4][64];
            cachet_backend_item items[4];
            for (unsigned j = 0; j < 4; j++) {
                key_of(ks[j], (key + j) % KEYS);
                items[j] = (cachet_backend_item){ks[j], 4, vs[j],
                                                 value_of(vs[j], (key + j) % KEYS, w->id, x >> j),
                                                 CACHET_EBACKEND, 0};
            }
            st = w->ops->set_multi(w->m, items, 4);
            w->errors += st != CACHET_OK;
            for (unsigned j = 0; j < 4; j++)
                w->errors += items[j].status != CACHET_OK;
        } else {
            char ks[4][8];
            cachet_backend_item items[4];
            for (unsigned j = 0; j < 4; j++) {
                key_of(ks[j], (key + j) % KEYS);
                items[j] = (cachet_backend_item){ks[j], 4, NULL, 0, CACHET_EBACKEND, 0};
            }
            w->errors += w->ops->get_multi(w->m, items, 4) != CACHET_OK;
            for (unsigned j = 0; j < 4; j++) {
                if (items[j].status == CACHET_OK) {
                    w->hits++;
                    w->bad += !value_ok(items[j].value, items[j].len, (key + j) % KEYS);
                    free(items[j].value);
                } else if (items[j].status != CACHET_MISS) {
                    w->errors++;
                }
            }
        }
    }
    return NULL;
}

static void threads_keep_the_invariants(void **state)
{
    const cachet_backend_ops *ops;
    char mc[16], ms[16];
    snprintf(mc, sizeof mc, "%d", MAX_COUNT);
    snprintf(ms, sizeof ms, "%d", MAX_SIZE);
    void *m = open_memory(&ops, mc, ms);
    pthread_t t[THREADS];
    worker w[THREADS];
    long hits = 0;

    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (worker){ops, m, i, 0, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].bad, 0);
        assert_int_equal(w[i].errors, 0);
        hits += w[i].hits;
    }
    assert_true(hits > 0);      /* the gets saw data, so the checks meant something */

    report r = get_report(ops, m);
    assert_true(r.entries > 0);
    assert_true(r.entries <= MAX_COUNT);
    assert_true(r.bytes <= MAX_SIZE);
    /* what is there adds up to what the report says, and is all valid */
    long entries = 0, bytes = 0;
    for (unsigned i = 0; i < KEYS; i++) {
        char k[8];
        void *v;
        size_t n;
        key_of(k, i);
        cachet_status st = ops->get(m, k, 4, &v, &n);
        if (st == CACHET_MISS)
            continue;
        assert_int_equal(st, CACHET_OK);
        assert_true(value_ok(v, n, i));
        free(v);
        entries++;
        bytes += 4 + (long)n;
    }
    assert_int_equal(entries, r.entries);
    assert_int_equal(bytes, r.bytes);
    ops->close(m);
}

/* ---- gets without the lock (backends/memory/memtable.c) ----
 * Readers copy values while writers replace, delete and evict the same
 * keys and grow the table: an entry a reader still copies must not be
 * freed under it (ASan sees a use after free, TSan a race), a copied value
 * must be one some writer stored whole, and a key that is only ever
 * overwritten must never miss (the new entry takes the old one's place in
 * one store; a miss while the chains are relinked is looked up again). */
#define LR_STABLE  8        /* keys set before the threads start, never deleted */
#define LR_CHURN   256      /* keys the writers also delete (and evict) */
#define LR_WRITES  20000

typedef struct {
    const cachet_backend_ops *ops;
    void *m;
    unsigned id;
    int bounded;            /* stable keys may be evicted: a miss is allowed */
    _Atomic int *writers_left;
    long bad, errors, stable_misses, hits;
} lr_worker;

static size_t lr_value(unsigned char *v, unsigned key, unsigned rnd)
{
    size_t n = 4 + rnd % 2000;
    v[0] = (unsigned char)(key >> 8);
    v[1] = (unsigned char)key;
    v[2] = (unsigned char)(n >> 8);
    v[3] = (unsigned char)n;
    memset(v + 4, (key * 7 + (unsigned)n) & 0xff, n - 4);
    return n;
}

static int lr_value_ok(const unsigned char *v, size_t n, unsigned key)
{
    if (n < 4 || ((size_t)v[2] << 8 | v[3]) != n || ((unsigned)v[0] << 8 | v[1]) != key ||
        v[n] != '\0')
        return 0;
    for (size_t i = 4; i < n; i++)
        if (v[i] != ((key * 7 + (unsigned)n) & 0xff))
            return 0;
    return 1;
}

static void lr_key(char *k, unsigned i)
{
    snprintf(k, 16, "lr%05u", i);
}

static void *lr_writer(void *arg)
{
    lr_worker *w = arg;
    uint32_t x = 2654435761u * (w->id + 7);
    unsigned char val[2048];
    char k[16];

    for (unsigned i = 0; i < LR_WRITES; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        unsigned op = x % 8, key;
        if (op < 3)                             /* overwrite a stable key */
            key = (x >> 8) % LR_STABLE;
        else                                    /* churn: new keys grow the table */
            key = LR_STABLE + (x >> 8) % (LR_CHURN + i / 4);
        lr_key(k, key);
        if (op == 7 && key >= LR_STABLE)
            w->errors += w->ops->del(w->m, k, strlen(k)) != CACHET_OK;
        else
            w->errors += w->ops->set(w->m, k, strlen(k), val, lr_value(val, key, x >> 16), 0) !=
                         CACHET_OK;
    }
    atomic_fetch_sub(w->writers_left, 1);
    return NULL;
}

static void *lr_reader(void *arg)
{
    lr_worker *w = arg;
    uint32_t x = 2463534242u * (w->id + 3);
    char k[16];

    while (atomic_load(w->writers_left) > 0) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        unsigned key = x % 2 ? x % LR_STABLE : LR_STABLE + (x >> 4) % LR_CHURN;
        void *v;
        size_t n;
        lr_key(k, key);
        cachet_status st = w->ops->get(w->m, k, strlen(k), &v, &n);
        if (st == CACHET_OK) {
            w->hits++;
            w->bad += !lr_value_ok(v, n, key);
            free(v);
        } else if (st == CACHET_MISS) {
            w->stable_misses += key < LR_STABLE;
        } else {
            w->errors++;
        }
    }
    return NULL;
}

/* Two writers and two readers on one instance m: returns how many reads
 * were wrong (another key's or a damaged value, an error, a stable key
 * missing from an unbounded table) and sets *hits.  No cmocka asserts
 * (a forked child runs it too). */
static long lr_stress(const cachet_backend_ops *ops, void *m, int bounded, long *hits)
{
    unsigned char val[2048];
    char k[16];
    pthread_t t[4];
    lr_worker w[4];
    _Atomic int writers_left = 2;
    long wrong = 0;

    *hits = 0;
    for (unsigned i = 0; i < LR_STABLE; i++) {
        lr_key(k, i);
        wrong += ops->set(m, k, strlen(k), val, lr_value(val, i, i * 977), 0) != CACHET_OK;
    }
    for (unsigned i = 0; i < 4; i++) {
        w[i] = (lr_worker){ops, m, i, bounded, &writers_left, 0, 0, 0, 0};
        if (pthread_create(&t[i], NULL, i < 2 ? lr_writer : lr_reader, &w[i]) != 0)
            return wrong + 1000000;
    }
    for (unsigned i = 0; i < 4; i++) {
        wrong += pthread_join(t[i], NULL) != 0;
        wrong += w[i].bad + w[i].errors + (bounded ? 0 : w[i].stable_misses);
        *hits += w[i].hits;
    }
    return wrong;
}

static void lr_run(const char *max_count)
{
    const cachet_backend_ops *ops;
    void *m = open_memory(&ops, max_count, NULL);
    long hits;

    assert_int_equal(lr_stress(ops, m, max_count != NULL, &hits), 0);
    assert_true(hits > 0);      /* the readers did read while the writers wrote */
    ops->close(m);
}

typedef struct {
    pid_t pid;
    int   status;
} child_wait;

static int child_exited(void *arg)
{
    child_wait *c = arg;
    return waitpid(c->pid, &c->status, WNOHANG) == c->pid;
}

/* A child forked from a process whose threads read the table (so that
 * their reader slots exist) reads and writes without the lock as safely:
 * the other threads' slots are released in the child, so its writers
 * free again, and its own are fresh.  Under ASan a block freed too early
 * aborts the child. */
static void forked_child_reads_without_the_lock(void **state)
{
    const cachet_backend_ops *ops;
    void *m = open_memory(&ops, NULL, NULL);
    long hits;
    int status;
    pid_t pid;

    (void)state;
    assert_int_equal(lr_stress(ops, m, 0, &hits), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        long wrong = lr_stress(ops, m, 0, &hits);
        _exit(wrong == 0 && hits > 0 ? 0 : 1);
    }
    child_wait c = {pid, 0};
    if (!th_wait_until(child_exited, &c, 120.0)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("the forked child did not finish within 120 s");
    }
    status = c.status;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    ops->close(m);
}

static void reads_without_the_lock_unbounded(void **state)
{
    (void)state;
    lr_run(NULL);               /* grows from 8 buckets a shard while read */
}

static void reads_without_the_lock_evicting(void **state)
{
    (void)state;
    lr_run("64");               /* almost every write evicts */
}

/* ---- null ---- */

static void null_backend_stores_nothing(void **state)
{
    const cachet_backend_ops *ops = load("null");
    void *m, *v = NULL;
    size_t n = 0;

    assert_int_equal(open_with(ops, &m, "max_count", "3", NULL), CACHET_EINVAL);
    th_assert_contains(cachet_errmsg(), "max_count");
    assert_int_equal(open_with(ops, &m, NULL), CACHET_OK);
    assert_int_equal(ops->set(m, "k", 1, "v", 1, 0), CACHET_OK);
    assert_int_equal(ops->get(m, "k", 1, &v, &n), CACHET_MISS);
    assert_null(v);
    assert_int_equal(ops->del(m, "k", 1), CACHET_OK);
    ops->close(m);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_binary_and_empty),
        cmocka_unit_test(overwrite_keeps_accounting_exact),
        cmocka_unit_test(delete_and_miss),
        cmocka_unit_test(max_count_evicts_the_never_hit_first),
        cmocka_unit_test(max_size_evicts_the_never_hit_first),
        cmocka_unit_test(hot_keys_survive_a_scan),
        cmocka_unit_test(bounds_hold_across_shards),
        cmocka_unit_test(too_big_is_refused_and_drops_the_old_value),
        cmocka_unit_test(bad_arguments_name_the_argument),
        cmocka_unit_test(instances_do_not_share_data),
        cmocka_unit_test(many_keys_grow_the_table),
        cmocka_unit_test(multi_operations_set_each_status),
        cmocka_unit_test(sweep_removes_what_keep_refuses),
        cmocka_unit_test(threads_keep_the_invariants),
        cmocka_unit_test(reads_without_the_lock_unbounded),
        cmocka_unit_test(reads_without_the_lock_evicting),
        cmocka_unit_test(forked_child_reads_without_the_lock),
        cmocka_unit_test(null_backend_stores_nothing),
    };
    (void)argc;
    /* the fork test's child starts threads */
    th_tsan_allow_threads_after_fork(argv);
    return cmocka_run_group_tests(tests, NULL, teardown_all);
}
