/* cachet_compact: the region decides which stored values are dead (the
 * backend cannot read cachet's header), the backend deletes them and
 * reclaims the space. */
#include "config.h"
#include "internal.h"
#include "region.h"
#include "region_read.h"

/* A compressed value (CACHET_VF_COMPRESSED) as stored: its header is
 * judged as if it were decompressed (the sweep sees the stored bytes, not
 * the compress proxy's output). */
static int compressed_valid(const void *value, size_t len, cachet_value_meta *m)
{
    uint8_t hdr[CACHET_VALUE_HDR];
    uint64_t size;
    if (len < CACHET_VALUE_HDR || !(((const uint8_t *)value)[5] & CACHET_VF_COMPRESSED))
        return 0;
    memcpy(hdr, value, CACHET_VALUE_HDR);
    memcpy(&size, hdr + 16, 8);
    if (le64toh(size) != len - CACHET_VALUE_HDR)       /* counts the compressed bytes */
        return 0;
    hdr[5] &= (uint8_t)~CACHET_VF_COMPRESSED;
    memset(hdr + 16, 0, 8);                            /* judged as a header alone */
    return cachet_value_valid(hdr, CACHET_VALUE_HDR, 0, m) != 0;
}

/* 1 to keep a value: decodable, not hard-invalidated, not expired under
 * the region's rule.  Soft-invalidated values are kept: get_or_create can
 * still serve them while it regenerates.  With shared invalidation the
 * store is shared with other regions (other cachet_key_prefix values, and
 * the invalidation records themselves), and the sweep does not see keys:
 * this region's hard invalidation is not applied there, values go when
 * they expire. */
static int keep_value(void *arg, const void *value, size_t len)
{
    cachet_region *r = arg;
    cachet_value_meta m;
    cachet_rule rule = cachet__region_rule(r, NULL);
    if (!cachet_value_valid(value, len, 0, &m) && !compressed_valid(value, len, &m))
        return 0;                                 /* sweep has no key: structure only */
    rule.ignore_soft = 1;
    if (r->inval.shared) {
        if (m.lifetime_ns && !rule.from_call)
            rule.expiration_ns = m.lifetime_ns;
        return rule.expiration_ns < 0 ||
               (rule.expiration_ns > 0 &&
                !cachet__region_older_than(m.created_ns, rule.expiration_ns));
    }
    return cachet__region_freshness(r, &m, rule) == FRESH;
}

CACHET_EXPORT cachet_status cachet_compact(cachet_region *r, size_t *removed)
{
    cachet_status st = CACHET_OK;
    size_t n = 0;

    if (removed)
        *removed = 0;
    if (!r)
        return cachet__error(CACHET_EINVAL, "cachet_compact: NULL region");
    if (!cachet__below_compactable(&r->below))
        return cachet__error(CACHET_ENOTSUP, "backend %s: nothing to compact (values expire on "
                             "the server or with the process)", r->backend);
    cachet__error_clear();
    st = cachet__below_sweep(&r->below, keep_value, r, &n);
    if (st == CACHET_OK)
        st = cachet__below_compact(&r->below);
    if (removed)
        *removed = n;
    if (st != CACHET_OK)
        return cachet__region_failed(r, st, "compact", "(all keys)");
    return CACHET_OK;
}
