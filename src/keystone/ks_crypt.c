/* keystonemiddleware's key derivation, MAC and encryption, with OpenSSL's
 * libcrypto (HMAC-SHA384, SHA-256, AES-128-CBC with PKCS#7 padding,
 * CRYPTO_memcmp, RAND_bytes).  What each step must produce is written in
 * docs/keystone.md and checked against keystonemiddleware itself by
 * tests/test_keystone.c. */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include "ks_crypt.h"

#define DIGEST_LEN 48          /* SHA-384 */
#define MAC_B64_LEN 64         /* base64 of 48 bytes, what a value starts with */
#define IV_LEN 16
#define BLOCK 16
/* a cached token is a few KiB of JSON; PKI tokens were tens: far below */
#define KS_MAX_VALUE (64u << 20)

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding (Python's base64.b64encode). */
static size_t b64_encode(const unsigned char *in, size_t n, char *out)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Strict base64 (canonical padding, no other bytes): what b64encode makes.
 * Returns the decoded length, or (size_t)-1. */
static size_t b64_decode(const char *in, size_t n, unsigned char *out)
{
    size_t pad = 0;
    int r;
    if (n % 4 != 0)
        return (size_t)-1;
    if (n == 0)
        return 0;
    pad = in[n - 1] == '=' ? (in[n - 2] == '=' ? 2 : 1) : 0;
    for (size_t i = 0; i < n - pad; i++)
        if (!memchr(b64_alphabet, in[i], 64) || in[i] == '\0')
            return (size_t)-1;
    r = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (r < 0 || (size_t)r < pad)
        return (size_t)-1;
    return (size_t)r - pad;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
}

cachet_status ks_cache_key(const ks_params *p, const char *token, size_t tlen, ks_keys *k,
                           char out[KS_KEY_MAX], size_t *outlen)
{
    unsigned char d[DIGEST_LEN];
    unsigned int dlen = 0;
    size_t o;

    memcpy(out, "tokens/", 7);
    o = 7;
    if (!p->protect) {
        /* TokenCache: 'tokens/%s' % sha256(token).hexdigest() */
        SHA256((const unsigned char *)token, tlen, d);
        hex(d, 32, out + o);
        o += 64;
    } else {
        /* derive_keys: HMAC-SHA384(secret, token + strategy), split in
         * three; the key is 'tokens/%s' % b64encode(CACHE_KEY), and Python 3
         * formats those bytes as b'...' */
        unsigned char *msg = malloc(tlen + p->strategy_len + 1);
        if (!msg)
            return CACHET_ENOMEM;
        memcpy(msg, token, tlen);
        memcpy(msg + tlen, p->strategy, p->strategy_len);
        if (!HMAC(EVP_sha384(), p->secret, (int)p->secret_len, msg, tlen + p->strategy_len, d,
                  &dlen) || dlen != DIGEST_LEN) {
            OPENSSL_cleanse(msg, tlen + p->strategy_len);
            free(msg);
            return CACHET_ENOMEM;
        }
        OPENSSL_cleanse(msg, tlen + p->strategy_len);
        free(msg);
        memcpy(k->cache_key, d, 16);
        memcpy(k->mac, d + 16, 16);
        memcpy(k->enc, d + 32, 16);
        memcpy(out + o, "b'", 2);
        o += 2;
        o += b64_encode(k->cache_key, 16, out + o);
        out[o++] = '\'';
    }
    OPENSSL_cleanse(d, sizeof d);
    out[o] = '\0';
    *outlen = o;
    return CACHET_OK;
}

/* base64(HMAC-SHA384(mac key, text)): 64 characters into out. */
static int sign(const ks_keys *k, const void *text, size_t n, char out[MAC_B64_LEN + 1])
{
    unsigned char mac[DIGEST_LEN];
    unsigned int mlen = 0;
    if (!HMAC(EVP_sha384(), k->mac, 16, text, n, mac, &mlen) || mlen != DIGEST_LEN)
        return -1;
    b64_encode(mac, DIGEST_LEN, out);
    return 0;
}

static int aes_cbc(int enc, const unsigned char key[16], const unsigned char iv[16],
                   const unsigned char *in, size_t n, unsigned char *out, size_t *outlen)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0, ok;
    if (!ctx)
        return -1;
    ok = EVP_CipherInit_ex(ctx, EVP_aes_128_cbc(), NULL, key, iv, enc) == 1 &&
         EVP_CipherUpdate(ctx, out, &l1, in, (int)n) == 1 &&
         EVP_CipherFinal_ex(ctx, out + l1, &l2) == 1;   /* PKCS#7, checked on decrypt */
    EVP_CIPHER_CTX_free(ctx);
    if (!ok)
        return -1;
    *outlen = (size_t)l1 + (size_t)l2;
    return 0;
}

cachet_status ks_protect(const ks_params *p, const ks_keys *k, const void *data, size_t len,
                         void **out, size_t *outlen)
{
    unsigned char *clear = (unsigned char *)data, *ct = NULL;
    size_t clen = len, b64len;
    char *v;

    if (!p->protect) {
        if (!(v = malloc(len + 1)))
            return CACHET_ENOMEM;
        if (len)
            memcpy(v, data, len);
        v[len] = '\0';
        *out = v;
        *outlen = len;
        return CACHET_OK;
    }
    if (len > KS_MAX_VALUE)
        return CACHET_ETOOBIG;
    if (p->encrypt) {
        /* iv (16 random bytes) + AES-CBC(enc key, PKCS#7(data)) */
        size_t n = 0;
        if (!(ct = malloc(IV_LEN + len + BLOCK)))
            return CACHET_ENOMEM;
        if (RAND_bytes(ct, IV_LEN) != 1 ||
            aes_cbc(1, k->enc, ct, data, len, ct + IV_LEN, &n) != 0) {
            free(ct);
            return CACHET_EBACKEND;
        }
        clear = ct;
        clen = IV_LEN + n;
    }
    /* signature + encoded_data, signature = b64(HMAC(mac key, encoded_data)) */
    b64len = 4 * ((clen + 2) / 3);
    if (!(v = malloc(MAC_B64_LEN + b64len + 1))) {
        free(ct);
        return CACHET_ENOMEM;
    }
    b64_encode(clear, clen, v + MAC_B64_LEN);
    free(ct);
    {
        char sig[MAC_B64_LEN + 1];
        if (sign(k, v + MAC_B64_LEN, b64len, sig) != 0) {
            free(v);
            return CACHET_EBACKEND;
        }
        memcpy(v, sig, MAC_B64_LEN);
    }
    v[MAC_B64_LEN + b64len] = '\0';
    *out = v;
    *outlen = MAC_B64_LEN + b64len;
    return CACHET_OK;
}

cachet_status ks_unprotect(const ks_params *p, const ks_keys *k, const void *val, size_t len,
                           void **out, size_t *outlen, const char **why)
{
    const char *s = val;
    char sig[MAC_B64_LEN + 1];
    unsigned char *raw, *res;
    size_t rlen, n;

    *why = NULL;
    if (!p->protect) {                  /* None: the bytes are the data */
        if (!(res = malloc(len + 1)))
            return CACHET_ENOMEM;
        if (len)
            memcpy(res, val, len);
        res[len] = '\0';
        *out = res;
        *outlen = len;
        return CACHET_OK;
    }
    if (len < MAC_B64_LEN)
        return *why = "shorter than its MAC", CACHET_ECORRUPT;
    if (len > KS_MAX_VALUE)
        return *why = "larger than a cached token can be", CACHET_ECORRUPT;
    if (sign(k, s + MAC_B64_LEN, len - MAC_B64_LEN, sig) != 0)
        return CACHET_ENOMEM;
    if (CRYPTO_memcmp(sig, s, MAC_B64_LEN) != 0)
        return *why = "its MAC does not verify (tampered, truncated, or written with "
                      "another memcache_secret_key or strategy)", CACHET_ECORRUPT;
    if (!(raw = malloc((len - MAC_B64_LEN) / 4 * 3 + 1)))
        return CACHET_ENOMEM;
    rlen = b64_decode(s + MAC_B64_LEN, len - MAC_B64_LEN, raw);
    if (rlen == (size_t)-1) {
        free(raw);
        return *why = "its data is not base64", CACHET_ECORRUPT;
    }
    if (!p->encrypt) {
        raw[rlen] = '\0';
        *out = raw;
        *outlen = rlen;
        return CACHET_OK;
    }
    if (rlen < IV_LEN + BLOCK || (rlen - IV_LEN) % BLOCK != 0) {
        free(raw);
        return *why = "its ciphertext is not whole AES blocks after the IV", CACHET_ECORRUPT;
    }
    if (!(res = malloc(rlen - IV_LEN + BLOCK + 1))) {
        free(raw);
        return CACHET_ENOMEM;
    }
    if (aes_cbc(0, k->enc, raw, raw + IV_LEN, rlen - IV_LEN, res, &n) != 0) {
        free(raw);
        free(res);
        return *why = "it does not decrypt (bad padding)", CACHET_ECORRUPT;
    }
    OPENSSL_cleanse(raw, rlen);
    free(raw);
    res[n] = '\0';
    *out = res;
    *outlen = n;
    return CACHET_OK;
}

/* ---- the legacy [data, expires] form ---- */

static size_t skip_ws(const char *b, size_t len, size_t i)
{
    while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
        i++;
    return i;
}

/* The end of the JSON string starting at b[i] == '"', or 0. */
static size_t skip_string(const char *b, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (b[i] == '\\')
            i++;
        else if (b[i] == '"')
            return i + 1;
    }
    return 0;
}

/* The end of the JSON value at b[i] (not validated beyond its extent:
 * strings, nesting, literals), or 0. */
static size_t skip_value(const char *b, size_t len, size_t i)
{
    size_t depth = 0, start = i;
    if (i >= len)
        return 0;
    if (b[i] == '"')
        return skip_string(b, len, i);
    if (b[i] == '{' || b[i] == '[') {
        while (i < len) {
            if (b[i] == '"') {
                if (!(i = skip_string(b, len, i)))
                    return 0;
                continue;
            }
            if (b[i] == '{' || b[i] == '[')
                depth++;
            else if ((b[i] == '}' || b[i] == ']') && --depth == 0)
                return i + 1;
            i++;
        }
        return 0;
    }
    while (i < len && (memchr("+-.eE", b[i], 5) || (b[i] >= '0' && b[i] <= '9') ||
                       (b[i] >= 'a' && b[i] <= 'z')))
        i++;
    return i > start ? i : 0;
}

int ks_legacy_span(const char *b, size_t len, size_t *off, size_t *n)
{
    size_t i = skip_ws(b, len, 0), s, e;
    if (i >= len || b[i] != '[')
        return 0;
    s = skip_ws(b, len, i + 1);
    if (!(e = skip_value(b, len, s)))
        return 0;
    i = skip_ws(b, len, e);
    if (i >= len || b[i] != ',')
        return 0;
    i = skip_ws(b, len, i + 1);
    if (!(i = skip_value(b, len, i)))
        return 0;
    i = skip_ws(b, len, i);
    if (i >= len || b[i] != ']' || skip_ws(b, len, i + 1) != len)
        return 0;
    *off = s;
    *n = e - s;
    return 1;
}
