/* The keystone proxy: the layer that makes a region keystonemiddleware's
 * token cache.  Above it the region's key is a token id and its value the
 * token data (the region stores it with no header of its own: see the
 * foreign_values flag, set by reading a [keystone_authtoken] section);
 * below it are keystonemiddleware's memcache key and its stored bytes
 * (src/keystone/ks_crypt.c), written with keystonemiddleware's TTL,
 * token_cache_time.  A value that fails its MAC or does not decrypt is
 * CACHET_ECORRUPT, which the region counts and turns into a miss.
 *
 * Arguments, set by src/keystone/ks_section.c:
 *   strategy:S          memcache_security_strategy as written (None, MAC, ENCRYPT)
 *   secret_key:K        memcache_secret_key (copied, wiped at close, never logged)
 *   token_cache_time:N  seconds; 0 = no expiry; < 0 = nothing is stored */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <cachet/backend.h>
#include "proxies.h"
#include "keystone/ks_crypt.h"

typedef struct {
    cachet_layer *below;
    ks_params     p;
    long          cache_time;
} ks_proxy;

static void ks_close(void *state)
{
    ks_proxy *k = state;
    if (!k)
        return;
    if (k->p.secret) {
        OPENSSL_cleanse(k->p.secret, k->p.secret_len);
        free(k->p.secret);
    }
    free(k->p.strategy);
    free(k);
}

static cachet_status ks_open(const cachet_backend_params *params, cachet_layer *below,
                             void **state)
{
    static const char *const known[] = {"strategy", "secret_key", "token_cache_time", NULL};
    const char *strategy, *secret;
    ks_proxy *k;
    long ttl;
    cachet_status st = cachet_backend_args_check(params, "proxy keystone", known);

    if (st != CACHET_OK)
        return st;
    if ((st = cachet_backend_arg_long(params, "proxy keystone", "token_cache_time", 300,
                                      -2147483648L, 2147483647L, &ttl)) != CACHET_OK)
        return st;
    strategy = cachet_backend_arg_get(params, "strategy");
    secret = cachet_backend_arg_get(params, "secret_key");
    if (!strategy)
        strategy = "None";
    if (strcasecmp(strategy, "None") != 0 && strcasecmp(strategy, "MAC") != 0 &&
        strcasecmp(strategy, "ENCRYPT") != 0)
        return cachet_backend_error(CACHET_EINVAL, "proxy keystone: argument strategy: \"%.40s\" "
                                    "is not None, MAC or ENCRYPT", strategy);
    if (strcasecmp(strategy, "None") != 0 && (!secret || !*secret))
        return cachet_backend_error(CACHET_EINVAL, "proxy keystone: argument secret_key: must be "
                                    "set when the strategy is %s", strategy);
    if (!(k = calloc(1, sizeof *k)))
        return cachet_backend_error(CACHET_ENOMEM, "proxy keystone: out of memory");
    k->below = below;
    k->cache_time = ttl;
    k->p.protect = strcasecmp(strategy, "None") != 0;
    k->p.encrypt = strcmp(strategy, "ENCRYPT") == 0;   /* exactly: _memcache_crypt's test */
    k->p.strategy_len = strlen(strategy);
    k->p.strategy = malloc(k->p.strategy_len + 1);
    if (k->p.strategy)
        memcpy(k->p.strategy, strategy, k->p.strategy_len + 1);
    if (k->p.protect) {
        k->p.secret_len = strlen(secret);
        if ((k->p.secret = malloc(k->p.secret_len + 1)))
            memcpy(k->p.secret, secret, k->p.secret_len + 1);
    }
    if (!k->p.strategy || (k->p.protect && !k->p.secret)) {
        ks_close(k);
        return cachet_backend_error(CACHET_ENOMEM, "proxy keystone: out of memory");
    }
    *state = k;
    return CACHET_OK;
}

/* The memcache key of a token id.  Token ids are credentials: messages
 * name the derived key, never the token. */
static cachet_status mkey(const ks_proxy *k, const char *token, size_t tlen, ks_keys *keys,
                          char out[KS_KEY_MAX], size_t *olen)
{
    if (ks_cache_key(&k->p, token, tlen, keys, out, olen) != CACHET_OK)
        return cachet_backend_error(CACHET_ENOMEM, "proxy keystone: out of memory");
    return CACHET_OK;
}

/* Stored bytes -> token data; the legacy [data, expires] form gives data. */
static cachet_status decode(const ks_proxy *k, const ks_keys *keys, const char *mk, void *raw,
                            size_t rlen, void **value, size_t *len)
{
    const char *why;
    void *out;
    size_t n, off, dn;
    cachet_status st = ks_unprotect(&k->p, keys, raw, rlen, &out, &n, &why);

    free(raw);
    if (st == CACHET_ECORRUPT) {
        cachet_backend_log(CACHET_LOG_WARNING, "cachet keystone: the value under %s is refused: "
                           "%s", mk, why);
        return cachet_backend_error(CACHET_ECORRUPT, "proxy keystone: the value under %s is "
                                    "refused: %s", mk, why);
    }
    if (st != CACHET_OK)
        return cachet_backend_error(st, "proxy keystone: out of memory");
    if (ks_legacy_span(out, n, &off, &dn)) {
        memmove(out, (char *)out + off, dn);
        ((char *)out)[dn] = '\0';
        n = dn;
    }
    *value = out;
    *len = n;
    return CACHET_OK;
}

static cachet_status ks_get(void *state, const char *key, size_t klen, void **value, size_t *len)
{
    ks_proxy *k = state;
    ks_keys keys;
    char mk[KS_KEY_MAX];
    size_t mlen, rlen;
    void *raw;
    cachet_status st;

    if ((st = mkey(k, key, klen, &keys, mk, &mlen)) != CACHET_OK)
        return st;
    st = cachet_layer_get(k->below, mk, mlen, &raw, &rlen);
    if (st == CACHET_OK)
        st = decode(k, &keys, mk, raw, rlen, value, len);
    OPENSSL_cleanse(&keys, sizeof keys);
    return st;
}

/* What a write stores and for how long: keystonemiddleware's TTL unless the
 * caller gave one (cachet_set_ex). *skip: token_cache_time < 0, where
 * memcached drops what keystonemiddleware writes at once (a negative
 * exptime): nothing is stored, and set deletes the old value. */
static cachet_status encode(const ks_proxy *k, const char *key, size_t klen, const void *value,
                            size_t len, double ttl, char mk[KS_KEY_MAX], size_t *mlen,
                            void **out, size_t *olen, double *sttl, int *skip)
{
    ks_keys keys;
    cachet_status st;

    *skip = ttl <= 0 && k->cache_time < 0;
    *sttl = ttl > 0 ? ttl : (double)(k->cache_time > 0 ? k->cache_time : 0);
    if ((st = mkey(k, key, klen, &keys, mk, mlen)) != CACHET_OK)
        return st;
    st = *skip ? CACHET_OK : ks_protect(&k->p, &keys, value, len, out, olen);
    OPENSSL_cleanse(&keys, sizeof keys);
    if (st == CACHET_ETOOBIG)
        return cachet_backend_error(st, "proxy keystone: a token's data of %zu bytes is over "
                                    "what keystonemiddleware's cache is meant for", len);
    if (st != CACHET_OK)
        return cachet_backend_error(st, "proxy keystone: %s", st == CACHET_ENOMEM
                                    ? "out of memory" : "the cipher failed (libcrypto)");
    return CACHET_OK;
}

/* The layer call a write goes down by: cachet_layer_set or cachet_layer_add. */
typedef cachet_status (*ks_write_fn)(cachet_layer *below, const char *key, size_t klen,
                                     const void *value, size_t len, double ttl);

/* set and add: encode, then write down. A skipped write (token_cache_time < 0)
 * stores nothing; set also deletes the old value, as memcached does with a
 * negative exptime, while add leaves it (add never replaces). */
static cachet_status ks_write(ks_proxy *k, ks_write_fn down, int skip_deletes, const char *key,
                              size_t klen, const void *value, size_t len, double ttl)
{
    char mk[KS_KEY_MAX];
    size_t mlen, olen = 0;
    void *out = NULL;
    double sttl;
    int skip;
    cachet_status st = encode(k, key, klen, value, len, ttl, mk, &mlen, &out, &olen, &sttl,
                              &skip);
    if (st != CACHET_OK)
        return st;
    if (skip)
        return skip_deletes ? cachet_layer_del(k->below, mk, mlen) : CACHET_OK;
    st = down(k->below, mk, mlen, out, olen, sttl);
    free(out);
    return st;
}

static cachet_status ks_set(void *state, const char *key, size_t klen, const void *value,
                            size_t len, double ttl)
{
    return ks_write(state, cachet_layer_set, 1, key, klen, value, len, ttl);
}

static cachet_status ks_add(void *state, const char *key, size_t klen, const void *value,
                            size_t len, double ttl)
{
    return ks_write(state, cachet_layer_add, 0, key, klen, value, len, ttl);
}

/* The memcache key alone, for the calls that carry no value: the token's
 * MAC and cipher keys are wiped at once. */
static cachet_status mkey_only(const ks_proxy *k, const char *token, size_t tlen,
                               char out[KS_KEY_MAX], size_t *olen)
{
    ks_keys keys;
    cachet_status st = mkey(k, token, tlen, &keys, out, olen);
    OPENSSL_cleanse(&keys, sizeof keys);
    return st;
}

static cachet_status ks_del(void *state, const char *key, size_t klen)
{
    char mk[KS_KEY_MAX];
    size_t mlen;
    cachet_status st = mkey_only(state, key, klen, mk, &mlen);
    return st != CACHET_OK ? st : cachet_layer_del(((ks_proxy *)state)->below, mk, mlen);
}

static cachet_status ks_lock(void *state, const char *key, size_t klen, void **token)
{
    char mk[KS_KEY_MAX];
    size_t mlen;
    cachet_status st = mkey_only(state, key, klen, mk, &mlen);
    return st != CACHET_OK ? st : cachet_layer_lock(((ks_proxy *)state)->below, mk, mlen, token);
}

static cachet_status ks_unlock(void *state, const char *key, size_t klen, void *token)
{
    char mk[KS_KEY_MAX];
    size_t mlen;
    cachet_status st = mkey_only(state, key, klen, mk, &mlen);
    return st != CACHET_OK ? st : cachet_layer_unlock(((ks_proxy *)state)->below, mk, mlen, token);
}

/* ---- multi-operations: the same per item, one call below ---- */

typedef struct {
    char mk[KS_KEY_MAX];
    ks_keys keys;
} ks_slot;

static cachet_status ks_get_multi(void *state, cachet_backend_item *items, size_t n)
{
    ks_proxy *k = state;
    ks_slot *s = calloc(n ? n : 1, sizeof *s);
    cachet_backend_item *below = calloc(n ? n : 1, sizeof *below);
    cachet_status st = CACHET_OK, first = CACHET_OK;

    if (!s || !below) {
        free(s);
        free(below);
        return cachet_backend_error(CACHET_ENOMEM, "proxy keystone: out of memory");
    }
    for (size_t i = 0; i < n && st == CACHET_OK; i++) {
        size_t ml;
        st = mkey(k, items[i].key, items[i].klen, &s[i].keys, s[i].mk, &ml);
        below[i].key = s[i].mk;
        below[i].klen = ml;
    }
    if (st == CACHET_OK)
        cachet_layer_get_multi(k->below, below, n);
    for (size_t i = 0; i < n; i++) {
        items[i].value = NULL;
        items[i].len = 0;
        items[i].status = st != CACHET_OK ? st : below[i].status;
        if (st == CACHET_OK && below[i].status == CACHET_OK)
            items[i].status = decode(k, &s[i].keys, s[i].mk, below[i].value, below[i].len,
                                     &items[i].value, &items[i].len);
        else if (st == CACHET_OK)
            free(below[i].value);
        if (first == CACHET_OK && items[i].status != CACHET_OK && items[i].status != CACHET_MISS &&
            items[i].status != CACHET_ECORRUPT)
            first = items[i].status;
    }
    OPENSSL_cleanse(s, n * sizeof *s);
    free(s);
    free(below);
    return st != CACHET_OK ? st : first;
}

static cachet_status ks_set_multi(void *state, cachet_backend_item *items, size_t n)
{
    cachet_status first = CACHET_OK;
    /* the values change size under the MAC and cipher: item by item */
    for (size_t i = 0; i < n; i++) {
        items[i].status = ks_set(state, items[i].key, items[i].klen, items[i].value,
                                 items[i].len, items[i].ttl);
        if (items[i].status != CACHET_OK && first == CACHET_OK)
            first = items[i].status;
    }
    return first;
}

static cachet_status ks_delete_multi(void *state, cachet_backend_item *items, size_t n)
{
    cachet_status first = CACHET_OK;
    for (size_t i = 0; i < n; i++) {
        items[i].status = ks_del(state, items[i].key, items[i].klen);
        if (items[i].status != CACHET_OK && first == CACHET_OK)
            first = items[i].status;
    }
    return first;
}

static cachet_status ks_report(void *state, cachet_backend_report_fn fn, void *arg)
{
    ks_proxy *k = state;
    char ttl[32];
    fn(arg, "keystone_strategy", k->p.strategy);     /* never the secret */
    fn(arg, "keystone_encrypt", k->p.encrypt ? "yes" : "no");
    snprintf(ttl, sizeof ttl, "%ld", k->cache_time);
    fn(arg, "keystone_token_cache_time", ttl);
    return CACHET_OK;
}

const cachet_proxy_ops cachet__keystone_proxy = {
    .abi_version = CACHET_BACKEND_ABI_VERSION,
    .name = "keystone",
    .open = ks_open,
    .close = ks_close,
    .get = ks_get,
    .set = ks_set,
    .del = ks_del,
    .add = ks_add,
    .get_multi = ks_get_multi,
    .set_multi = ks_set_multi,
    .delete_multi = ks_delete_multi,
    .lock = ks_lock,
    .unlock = ks_unlock,
    .report = ks_report,
};
