/* Turns a caller's key into the key the backend stores: region prefix
 * first, then SHA-1 hex (dogpile's sha1_mangle_key) when the backend cannot
 * take the result as it is. */
#ifndef CACHET_KEY_H
#define CACHET_KEY_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cachet/backend.h>

#define CACHET_KEY_INLINE 256

typedef struct {
    const char *key;                 /* what to send the backend */
    size_t      klen;
    char       *heap;                /* set when key did not fit in buf */
    char        buf[CACHET_KEY_INLINE];
} cachet_key;

typedef struct {
    const char *prefix;
    size_t      prefix_len;
    size_t      max_len;             /* 0: no limit */
    unsigned    rules;               /* CACHET_KEY_* */
} cachet_key_policy;

/* CACHET_OK or CACHET_ENOMEM. */
int  cachet_key_make_slow(const cachet_key_policy *pol, const char *key, cachet_key *out);
/* Inline for the backends with no key rules and no prefix (memory, dbm,
 * redis): the key is the caller's, uncopied -- a call and the rules'
 * checks were a tenth of a memory get. */
static inline int cachet_key_make(const cachet_key_policy *pol, const char *key, cachet_key *out)
{
    if (pol->prefix_len == 0 && pol->rules == 0 && pol->max_len == 0) {
        out->heap = NULL;
        out->key = key;
        out->klen = strlen(key);
        return CACHET_OK;
    }
    return cachet_key_make_slow(pol, key, out);
}
static inline void cachet_key_release(cachet_key *k)
{
    if (k->heap) {                   /* rare: only long prefixed keys */
        free(k->heap);
        k->heap = NULL;
    }
}

/* 40 hex digits + NUL of SHA-1(data). */
void cachet_sha1_hex(const void *data, size_t len, char out[41]);

#endif
