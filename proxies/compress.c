/* The compress proxy: payloads of at least compress:min_size bytes are
 * stored as a zstd frame (compress:level), marked by the value header's
 * CACHET_VF_COMPRESSED flag (src/value.h, docs/value-format.md); the size
 * field then counts the compressed bytes.  Reading hands the region the
 * value as it was before compression (flag cleared), so nothing above
 * knows.  Arguments:
 *   compress:min_size          bytes of payload from which to compress (1024)
 *   compress:level             zstd level (3; negative = faster)
 *   compress:max_decompressed  largest payload a frame may declare (64 MiB):
 *                              checked before allocating, so a frame that
 *                              claims gigabytes costs nothing
 *
 * What it does not compress passes as it is: values without a version-2
 * header (foreign bytes: the region judges them), payloads under min_size,
 * and payloads that do not shrink.  So values written before the proxy was
 * in the chain still read, and turning it off later makes the compressed
 * values misses (the region refuses the flag), never garbage.
 *
 * A compressed value that does not decompress (a truncated frame, a size
 * that does not match, bytes over max_decompressed) is passed up as it was
 * stored: the region refuses it (the flag) and counts it corrupt: a miss.
 * Counters: compress_compressed_total, compress_stored_as_is_total (did
 * not shrink), compress_decompressed_total, compress_corrupt_total,
 * compress_bytes_in_total / compress_bytes_out_total (payload bytes before
 * and after compression). */
#include "config.h"
#include <endian.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <cachet/backend.h>
#include "proxies.h"
#include "value.h"

typedef struct {
    cachet_layer *below;
    long          min_size, level, max_out;
    _Atomic uint64_t compressed, as_is, decompressed, corrupt, bytes_in, bytes_out;
} compress_proxy;

/* One compression and one decompression context per thread, shared by
 * every compress proxy of the process (a context is ~1 MB at level 3:
 * allocating it per call would cost more than compressing a small value). */
typedef struct {
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
} zctx;

static pthread_key_t zkey;
static pthread_once_t zonce = PTHREAD_ONCE_INIT;
static int zkey_ok;

static void zctx_free(void *p)
{
    zctx *z = p;
    ZSTD_freeCCtx(z->c);
    ZSTD_freeDCtx(z->d);
    free(z);
}

static void zkey_make(void)
{
    zkey_ok = pthread_key_create(&zkey, zctx_free) == 0;
}

static zctx *thread_ctx(void)
{
    zctx *z;
    pthread_once(&zonce, zkey_make);
    if (!zkey_ok)
        return NULL;
    if ((z = pthread_getspecific(zkey)))
        return z;
    if (!(z = calloc(1, sizeof *z)))
        return NULL;
    z->c = ZSTD_createCCtx();
    z->d = ZSTD_createDCtx();
    if (!z->c || !z->d || pthread_setspecific(zkey, z) != 0) {
        zctx_free(z);
        return NULL;
    }
    return z;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

static void put_le64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

/* A version-2 header whose size field matches len: the bytes the region
 * wrote (anything else passes untouched). */
static int region_value(const uint8_t *p, size_t len)
{
    static const uint8_t magic[4] = {0xCA, 0xC4, 'E', 'T'};
    return len >= CACHET_VALUE_HDR && memcmp(p, magic, 4) == 0 &&
           p[4] == CACHET_VALUE_VERSION && get_le64(p + 16) == len - CACHET_VALUE_HDR;
}

/* The bytes to store for value: *out is value itself (nothing to do) or a
 * new buffer the caller frees.  Never fails: without memory or a context
 * the value is stored as it is. */
static void pack(compress_proxy *cp, const void *value, size_t len, const void **out,
                 size_t *outlen)
{
    const uint8_t *v = value;
    size_t plen = len - CACHET_VALUE_HDR, bound, n;
    uint8_t *buf;
    zctx *z;

    *out = value;
    *outlen = len;
    if (!region_value(v, len) || (v[5] & CACHET_VF_COMPRESSED) || plen < (size_t)cp->min_size)
        return;
    bound = ZSTD_compressBound(plen);
    /* only a result smaller than the payload is kept: no need for more room */
    if (bound > plen)
        bound = plen;
    if (!(z = thread_ctx()) || !(buf = malloc(CACHET_VALUE_HDR + bound)))
        return;
    n = ZSTD_compressCCtx(z->c, buf + CACHET_VALUE_HDR, bound, v + CACHET_VALUE_HDR, plen,
                          (int)cp->level);
    if (ZSTD_isError(n) || n >= plen) {        /* did not shrink (or did not fit) */
        free(buf);
        atomic_fetch_add_explicit(&cp->as_is, 1, memory_order_relaxed);
        return;
    }
    memcpy(buf, v, CACHET_VALUE_HDR);
    buf[5] |= CACHET_VF_COMPRESSED;
    put_le64(buf + 16, n);
    atomic_fetch_add_explicit(&cp->compressed, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&cp->bytes_in, plen, memory_order_relaxed);
    atomic_fetch_add_explicit(&cp->bytes_out, n, memory_order_relaxed);
    *out = buf;
    *outlen = CACHET_VALUE_HDR + n;
}

/* A value read from below: decompressed in place of *value when it is
 * compressed (the stored buffer freed); left as it is when it is not, or
 * when it does not decompress (the region then refuses it as corrupt). */
static void unpack(compress_proxy *cp, void **value, size_t *len)
{
    const uint8_t *v = *value;
    size_t clen;
    unsigned long long size;
    uint8_t *buf;
    zctx *z;
    size_t n;

    if (!region_value(v, *len) || !(v[5] & CACHET_VF_COMPRESSED))
        return;
    clen = *len - CACHET_VALUE_HDR;
    size = ZSTD_getFrameContentSize(v + CACHET_VALUE_HDR, clen);
    /* one whole frame, of a declared size within bounds, before any allocation */
    if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR ||
        size > (unsigned long long)cp->max_out ||
        ZSTD_findFrameCompressedSize(v + CACHET_VALUE_HDR, clen) != clen)
        goto corrupt;
    if (!(z = thread_ctx()) || !(buf = malloc(CACHET_VALUE_HDR + (size_t)size + 1)))
        goto corrupt;
    n = ZSTD_decompressDCtx(z->d, buf + CACHET_VALUE_HDR, (size_t)size, v + CACHET_VALUE_HDR, clen);
    if (ZSTD_isError(n) || n != size) {
        free(buf);
        goto corrupt;
    }
    memcpy(buf, v, CACHET_VALUE_HDR);
    buf[5] &= (uint8_t)~CACHET_VF_COMPRESSED;
    put_le64(buf + 16, size);
    buf[CACHET_VALUE_HDR + size] = '\0';        /* every value handed up ends in a NUL */
    free(*value);
    *value = buf;
    *len = CACHET_VALUE_HDR + (size_t)size;
    atomic_fetch_add_explicit(&cp->decompressed, 1, memory_order_relaxed);
    return;
corrupt:
    atomic_fetch_add_explicit(&cp->corrupt, 1, memory_order_relaxed);
    cachet_backend_log(CACHET_LOG_WARNING, "cachet %s: proxy compress: a compressed value of "
                       "%zu bytes does not decompress (declared %llu bytes, limit %ld): a miss",
                       cachet_layer_backend(cp->below), clen, size, cp->max_out);
}

static cachet_status c_open(const cachet_backend_params *p, cachet_layer *below, void **state)
{
    static const char *const known[] = {"min_size", "level", "max_decompressed", NULL};
    compress_proxy *cp;
    long min_size, level, max_out;
    cachet_status st;

    if ((st = cachet_backend_args_check(p, "proxy compress", known)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, "proxy compress", "min_size", 1024, 0, LONG_MAX,
                                      &min_size)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, "proxy compress", "level", 3, ZSTD_minCLevel(),
                                      ZSTD_maxCLevel(), &level)) != CACHET_OK ||
        (st = cachet_backend_arg_long(p, "proxy compress", "max_decompressed", 64L << 20, 1,
                                      1L << 30, &max_out)) != CACHET_OK)
        return st;
    if (!(cp = calloc(1, sizeof *cp)))
        return cachet_backend_error(CACHET_ENOMEM, "proxy compress: out of memory");
    cp->below = below;
    cp->min_size = min_size;
    cp->level = level;
    cp->max_out = max_out;
    *state = cp;
    return CACHET_OK;
}

static void c_close(void *state)
{
    free(state);
}

static cachet_status c_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    cachet_status st = cachet_layer_get(((compress_proxy *)state)->below, key, klen, value, len);
    if (st == CACHET_OK)
        unpack(state, value, len);
    return st;
}

/* The layer call a write goes down by: cachet_layer_set or cachet_layer_add. */
typedef cachet_status (*c_write_fn)(cachet_layer *below, const char *key, size_t klen,
                                    const void *value, size_t len, double ttl);

/* set and add: pack (compress when it pays), write down, free what pack made. */
static cachet_status c_write(compress_proxy *cp, c_write_fn down, const char *key, size_t klen,
                             const void *value, size_t len, double ttl)
{
    const void *out;
    size_t olen;
    cachet_status st;
    pack(cp, value, len, &out, &olen);
    st = down(cp->below, key, klen, out, olen, ttl);
    if (out != value)
        free((void *)out);
    return st;
}

static cachet_status c_set(void *state, const char *key, size_t klen, const void *value,
                           size_t len, double ttl)
{
    return c_write(state, cachet_layer_set, key, klen, value, len, ttl);
}

static cachet_status c_add(void *state, const char *key, size_t klen, const void *value,
                           size_t len, double ttl)
{
    return c_write(state, cachet_layer_add, key, klen, value, len, ttl);
}

static cachet_status c_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    cachet_status st = cachet_layer_get_multi(((compress_proxy *)state)->below, items, n);
    for (size_t i = 0; i < n; i++)
        if (items[i].status == CACHET_OK && items[i].value)
            unpack(state, &items[i].value, &items[i].len);
    return st;
}

static cachet_status c_set_multi(void *state, cachet_backend_item *items, size_t n)
{
    cachet_backend_item *packed = malloc((n ? n : 1) * sizeof *packed);
    cachet_status st;
    if (!packed)
        return cachet_backend_error(CACHET_ENOMEM, "proxy compress: set_multi of %zu: out of "
                                    "memory", n);
    for (size_t i = 0; i < n; i++) {
        const void *out;
        packed[i] = items[i];
        pack(state, items[i].value, items[i].len, &out, &packed[i].len);
        packed[i].value = (void *)out;
    }
    st = cachet_layer_set_multi(((compress_proxy *)state)->below, packed, n);
    for (size_t i = 0; i < n; i++) {
        items[i].status = packed[i].status;
        if (packed[i].value != items[i].value)
            free(packed[i].value);
    }
    free(packed);
    return st;
}

static cachet_status c_report(void *state, cachet_backend_report_fn fn, void *arg)
{
    compress_proxy *cp = state;
    char buf[32];
#define R(name, field) (snprintf(buf, sizeof buf, "%llu", (unsigned long long)                    \
                                 atomic_load_explicit(&cp->field, memory_order_relaxed)),        \
                        fn(arg, name, buf))
    R("compress_compressed_total", compressed);
    R("compress_stored_as_is_total", as_is);
    R("compress_decompressed_total", decompressed);
    R("compress_corrupt_total", corrupt);
    R("compress_bytes_in_total", bytes_in);
    R("compress_bytes_out_total", bytes_out);
#undef R
    return CACHET_OK;
}

const cachet_proxy_ops cachet__compress_proxy = {
    .abi_version = CACHET_BACKEND_ABI_VERSION,
    .name = "compress",
    .open = c_open,
    .close = c_close,
    .get = c_get,
    .set = c_set,
    .add = c_add,
    .get_multi = c_get_multi,
    .set_multi = c_set_multi,
    .report = c_report,
};
