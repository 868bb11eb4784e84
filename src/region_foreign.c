/* Regions whose values are another program's (cachet_config's
 * foreign_values: keystonemiddleware's token cache).  Such values carry no
 * cachet header, so there is no creation time to judge them by: a value
 * is fresh for as long as the backend keeps it (memcached drops it after
 * the TTL it was written with), and cachet_invalidate does not reach
 * values read afterwards.  These two functions are the region's only
 * difference for them; the keys are left as given (region.c). */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include "region.h"

cachet_status cachet__region_accept_foreign(cachet_region *r, void **buf, size_t *blen,
                                            cachet_value_meta *m)
{
    size_t n = *blen;
    uint8_t *nb = realloc(*buf, CACHET_VALUE_HDR + n + 1);

    (void)r;
    if (!nb) {
        free(*buf);
        *buf = NULL;
        return CACHET_ENOMEM;      /* a miss: the caller cannot be handed it */
    }
    /* the layout cachet_free() expects: the payload at the header's offset */
    memmove(nb + CACHET_VALUE_HDR, nb, n);
    nb[CACHET_VALUE_HDR + n] = '\0';
    memset(nb, 0, CACHET_VALUE_HDR);
    *buf = nb;
    *blen = CACHET_VALUE_HDR + n;
    /* "created" at an invalidation-proof instant, never expiring for
     * readers: the server's TTL is the rule */
    m->created_ns = INT64_MAX;
    m->flags = 0;
    m->version = CACHET_VALUE_VERSION;
    m->key_check = 0;
    m->lifetime_ns = -1;
    return CACHET_OK;
}

void *cachet__region_encode_foreign(const void *value, size_t len, size_t *outlen)
{
    uint8_t *buf = malloc(len + 1);
    if (!buf)
        return NULL;
    if (len)
        memcpy(buf, value, len);
    buf[len] = '\0';
    *outlen = len;
    return buf;
}
