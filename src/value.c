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
    hdr[6] = 0;
    hdr[7] = 0;
    put_le64(hdr + 8, (uint64_t)m->created_ns);
    put_le64(hdr + 16, (uint64_t)len);
}

cachet_status cachet_value_decode(const void *buf, size_t len, cachet_value_meta *m)
{
    const uint8_t *p = buf;
    uint32_t word, want;
    if (len < CACHET_VALUE_HDR)
        return cachet__error(CACHET_ECORRUPT, "stored value is %zu bytes, shorter than the %d-byte header",
                             len, CACHET_VALUE_HDR);
    memcpy(&word, p, 4);
    memcpy(&want, magic, 4);
    if (word != want)
        return cachet__error(CACHET_ECORRUPT, "stored value has no cachet header (foreign bytes)");
    if (p[4] != CACHET_VALUE_VERSION)
        return cachet__error(CACHET_ECORRUPT, "stored value has format version %u, this cachet reads %u",
                             p[4], CACHET_VALUE_VERSION);
    if (get_le64(p + 16) != len - CACHET_VALUE_HDR)
        return cachet__error(CACHET_ECORRUPT, "stored value is %zu bytes, its header says %llu (truncated?)",
                             len - CACHET_VALUE_HDR, (unsigned long long)get_le64(p + 16));
    m->flags = p[5];
    m->created_ns = (int64_t)get_le64(p + 8);
    return CACHET_OK;
}
