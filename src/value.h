/* The header the region puts in front of every stored payload; the byte
 * layout is documented in docs/value-format.md. */
#ifndef CACHET_VALUE_H
#define CACHET_VALUE_H

#include <endian.h>
#include <stddef.h>
#include <string.h>
#include <stdint.h>
#include <cachet/cachet.h>

#define CACHET_VALUE_HDR 24      /* bytes; payloads start 8-byte aligned */
#define CACHET_VALUE_VERSION 1

typedef struct {
    int64_t  created_ns;         /* CLOCK_REALTIME, nanoseconds since the epoch */
    uint8_t  flags;
} cachet_value_meta;

/* Writes the header for a payload of len bytes into hdr. */
void cachet_value_header(uint8_t hdr[CACHET_VALUE_HDR], const cachet_value_meta *m, size_t len);

/* The check of every read, inline: 1 when buf holds a version-1 value
 * whose length matches its header (and fills m), else 0. */
static inline int cachet_value_valid(const void *buf, size_t len, cachet_value_meta *m)
{
    const uint8_t *p = buf;
    static const uint8_t magic[4] = {0xCA, 0xC4, 'E', 'T'};
    uint64_t created, size;
    if (len < CACHET_VALUE_HDR || memcmp(p, magic, 4) != 0 || p[4] != CACHET_VALUE_VERSION)
        return 0;
    memcpy(&size, p + 16, 8);
    if (le64toh(size) != len - CACHET_VALUE_HDR)
        return 0;
    memcpy(&created, p + 8, 8);
    m->created_ns = (int64_t)le64toh(created);
    m->flags = p[5];
    return 1;
}

/* The same check, with a message in cachet_errmsg() saying what was wrong.
 * Checks buf (len bytes, from a backend) and fills m.  CACHET_OK or
 * CACHET_ECORRUPT (wrong magic, unknown version, length mismatch, short). */
cachet_status cachet_value_decode(const void *buf, size_t len, cachet_value_meta *m);

/* Values handed to the caller are backend buffers offset by the header, so
 * that a get costs no copy; cachet_free() undoes the offset. */
static inline void *cachet_value_payload(void *buf) { return (uint8_t *)buf + CACHET_VALUE_HDR; }

#endif
