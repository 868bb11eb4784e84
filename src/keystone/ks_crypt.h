/* keystonemiddleware's token cache format (auth_token/_cache.py and
 * _memcache_crypt.py of keystonemiddleware 10.1), byte for byte: the
 * memcache key made from a token id, and the value -- as it is (strategy
 * None), or MAC'd and base64'd (MAC), or AES-CBC encrypted as well
 * (ENCRYPT).  Pure functions on bytes (no I/O), so the decoder can be
 * fuzzed; crypto is OpenSSL's libcrypto.  docs/keystone.md has the facts. */
#ifndef CACHET_KS_CRYPT_H
#define CACHET_KS_CRYPT_H

#include <stddef.h>
#include <cachet/cachet.h>

/* "tokens/" + 64 hex digits (None), or "tokens/b'" + 24 base64 + "'". */
#define KS_KEY_MAX 80

typedef struct {
    int            protect;        /* strategy is not None (any case): MAC the value */
    int            encrypt;        /* strategy is exactly "ENCRYPT": encrypt it too */
    char          *strategy;       /* as written: it is part of the key derivation */
    size_t         strategy_len;
    unsigned char *secret;         /* memcache_secret_key's bytes (never in a message) */
    size_t         secret_len;
} ks_params;

/* The three 16-byte keys HMAC-SHA384(secret, token || strategy) splits into. */
typedef struct {
    unsigned char cache_key[16], mac[16], enc[16];
} ks_keys;

/* The memcache key for token (and, when p->protect, its derived keys):
 * CACHET_OK with out holding *outlen bytes plus a NUL, or CACHET_ENOMEM. */
cachet_status ks_cache_key(const ks_params *p, const char *token, size_t tlen, ks_keys *k,
                           char out[KS_KEY_MAX], size_t *outlen);

/* The bytes to store for data: malloc'd, NUL after *outlen. */
cachet_status ks_protect(const ks_params *p, const ks_keys *k, const void *data, size_t len,
                         void **out, size_t *outlen);

/* The data in stored bytes val: CACHET_OK with *out malloc'd (NUL after
 * *outlen), CACHET_ECORRUPT with *why saying what failed (a static string:
 * no secret, no token, no data), or CACHET_ENOMEM.  Never reads outside
 * val[0..len). */
cachet_status ks_unprotect(const ks_params *p, const ks_keys *k, const void *val, size_t len,
                           void **out, size_t *outlen, const char **why);

/* keystonemiddleware's fetch_token reads a cached JSON array of exactly
 * two elements as the legacy [data, expires]: 1 with data's span in
 * [*off, *off + *n) when buf is such an array, else 0. */
int ks_legacy_span(const char *buf, size_t len, size_t *off, size_t *n);

#endif
