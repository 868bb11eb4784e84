/* The header the region puts in front of every stored payload; the byte
 * layout is documented in docs/value-format.md. */
#ifndef CACHET_VALUE_H
#define CACHET_VALUE_H

#include <stddef.h>
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

/* Checks buf (len bytes, from a backend) and fills m.  CACHET_OK or
 * CACHET_ECORRUPT (wrong magic, unknown version, length mismatch, short). */
cachet_status cachet_value_decode(const void *buf, size_t len, cachet_value_meta *m);

/* Values handed to the caller are backend buffers offset by the header, so
 * that a get costs no copy; cachet_free() undoes the offset. */
static inline void *cachet_value_payload(void *buf) { return (uint8_t *)buf + CACHET_VALUE_HDR; }

#endif
