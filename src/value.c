/* Encoding and checking of the stored value header.  Every field has a
 * fixed offset and little-endian byte order, so values written on one
 * machine read on another (docs/value-format.md). */
#include "config.h"
#include <endian.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "value.h"

static const uint8_t magic[4] = {0xCA, 0xC4, 'E', 'T'};

/* Fixed-width little-endian fields, read and written with one load or
 * store each (memcpy of 8 bytes compiles to a mov): this is on every get. */
static void put_le64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

void cachet_value_header(uint8_t hdr[CACHET_VALUE_HDR], const cachet_value_meta *m, size_t len)
{
    memcpy(hdr, magic, 4);
    hdr[4] = CACHET_VALUE_VERSION;
    hdr[5] = m->flags;
    {
        uint16_t ct = cachet_value_creator_encode(m->creator_ns);
        hdr[6] = (uint8_t)(ct & 0xff);
        hdr[7] = (uint8_t)(ct >> 8);
    }
    put_le64(hdr + 8, (uint64_t)m->created_ns);
    put_le64(hdr + 16, (uint64_t)len);
    put_le64(hdr + 24, (m->flags & CACHET_VF_KEY_BOUND) ? m->key_check : 0);
    put_le64(hdr + 32, (uint64_t)m->lifetime_ns);
}

cachet_status cachet_value_decode(const void *buf, size_t len, uint64_t want_check,
                                  cachet_value_meta *m)
{
    const uint8_t *p = buf;
    size_t hdr;

    if (len < CACHET_VALUE_HDR_V1)
        return cachet__error(CACHET_ECORRUPT, "stored value is %zu bytes, shorter than any "
                             "cachet header", len);
    if (memcmp(p, magic, 4) != 0)
        return cachet__error(CACHET_ECORRUPT, "stored value has no cachet header (foreign bytes)");
    if (p[4] != 1 && p[4] != CACHET_VALUE_VERSION)
        return cachet__error(CACHET_ECORRUPT, "stored value has format version %u, this cachet "
                             "reads 1 and %u", p[4], CACHET_VALUE_VERSION);
    if (p[4] == 1 && want_check)
        return cachet__error(CACHET_ECORRUPT, "stored value has format version 1, which is not "
                             "bound to its key: not trusted on a networked backend");
    hdr = p[4] == 1 ? CACHET_VALUE_HDR_V1 : CACHET_VALUE_HDR;
    if (len < hdr || get_le64(p + 16) != len - hdr)
        return cachet__error(CACHET_ECORRUPT, "stored value is %zu bytes after its header, the "
                             "header says %llu (truncated?)", len < hdr ? 0 : len - hdr,
                             (unsigned long long)get_le64(p + 16));
    if (p[4] == CACHET_VALUE_VERSION && (p[5] & CACHET_VF_COMPRESSED))
        return cachet__error(CACHET_ECORRUPT, "stored value is compressed and was not "
                             "decompressed (no compress proxy in cachet_proxies, or bytes "
                             "that do not decompress)");
    if (!cachet_value_valid(buf, len, want_check, m))
        return cachet__error(CACHET_ECORRUPT, "stored value was stored under another key "
                             "(a reply that belongs to another request)");
    return CACHET_OK;
}
