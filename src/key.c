/* Key prefixing and mangling.  Mangling is SHA-1 hex of the prefixed key,
 * as dogpile.cache's sha1_mangle_key, so it is the same on every machine;
 * the prefix is hashed along with the key (not kept in clear) so that the
 * result always fits the backend's length limit. */
#include "config.h"
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "key.h"

void cachet_sha1_hex(const void *data, size_t len, char out[41])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1(data, len, md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
}

static int key_acceptable(const cachet_key_policy *pol, const char *k, size_t len)
{
    if (pol->max_len && len > pol->max_len)
        return 0;
    if (!pol->rules)
        return 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)k[i];
        if ((pol->rules & CACHET_KEY_NO_SPACE) && c == ' ')
            return 0;
        if ((pol->rules & CACHET_KEY_NO_CONTROL) && (c < 0x20 || c == 0x7f))
            return 0;
    }
    return 1;
}

int cachet_key_make_slow(const cachet_key_policy *pol, const char *key, cachet_key *out)
{
    size_t klen = strlen(key);
    size_t total = pol->prefix_len + klen;
    char *p;

    out->heap = NULL;
    if (pol->prefix_len == 0 && key_acceptable(pol, key, klen)) {
        out->key = key;              /* the common case costs no copy */
        out->klen = klen;
        return CACHET_OK;
    }
    if (total < sizeof out->buf) {
        p = out->buf;
    } else {
        p = out->heap = malloc(total + 1);
        if (!p)
            return CACHET_ENOMEM;
    }
    memcpy(p, pol->prefix, pol->prefix_len);
    memcpy(p + pol->prefix_len, key, klen + 1);
    if (!key_acceptable(pol, p, total)) {
        char hex[41];
        cachet_sha1_hex(p, total, hex);
        free(out->heap);
        out->heap = NULL;
        memcpy(out->buf, hex, sizeof hex);
        p = out->buf;
        total = 40;
    }
    out->key = p;
    out->klen = total;
    return CACHET_OK;
}
