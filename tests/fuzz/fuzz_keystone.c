/* libFuzzer target: keystonemiddleware's value decoder (src/keystone/
 * ks_crypt.c) on any bytes, under each strategy.  The first input byte
 * picks the strategy (None, MAC, ENCRYPT, lower-case encrypt), the rest is
 * what memcached handed back.  It must refuse or accept without reading
 * outside the bytes; what it accepts has a legacy span inside it; and the
 * rest, used as token data, must survive protect -> unprotect unchanged
 * while the same value with any one byte changed is refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "keystone/ks_crypt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const strategies[] = {"None", "MAC", "ENCRYPT", "encrypt"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char secret[] = "fuzz-secret";
    static const char token[] = "fuzz-token";
    ks_params p = {0};
    ks_keys k;
    char key[KS_KEY_MAX];
    size_t klen, n, off, dn, plen;
    void *out = NULL, *prot = NULL;
    const char *why;
    uint8_t *copy;
    const char *s;

    if (size < 1)
        return 0;
    s = strategies[data[0] & 3];
    p.strategy = (char *)s;
    p.strategy_len = strlen(s);
    p.protect = strcmp(s, "None") != 0;
    p.encrypt = strcmp(s, "ENCRYPT") == 0;
    p.secret = (unsigned char *)secret;
    p.secret_len = sizeof secret - 1;
    if (ks_cache_key(&p, token, sizeof token - 1, &k, key, &klen) != CACHET_OK)
        return 0;
    /* a private copy, so ASan sees any read past the end */
    size--;
    copy = malloc(size ? size : 1);
    memcpy(copy, data + 1, size);

    if (ks_unprotect(&p, &k, copy, size, &out, &n, &why) == CACHET_OK) {
        if (((char *)out)[n] != '\0')
            abort();
        if (ks_legacy_span(out, n, &off, &dn) && (off > n || dn > n - off))
            abort();
        free(out);
    } else if (!p.protect || !why) {
        abort();                 /* None takes any bytes; a refusal says why */
    }

    /* the input as token data: a round trip, and a change is refused */
    if (ks_protect(&p, &k, copy, size, &prot, &plen) == CACHET_OK) {
        if (ks_unprotect(&p, &k, prot, plen, &out, &n, &why) != CACHET_OK || n != size ||
            (size && memcmp(out, copy, size) != 0))
            abort();
        free(out);
        if (p.protect && plen) {
            ((uint8_t *)prot)[size % plen] ^= 0x01;
            if (ks_unprotect(&p, &k, prot, plen, &out, &n, &why) == CACHET_OK)
                abort();
        }
        free(prot);
    }
    free(copy);
    return 0;
}
