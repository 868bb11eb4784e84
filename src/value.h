/* The header the region puts in front of every stored payload; the byte
 * layout is documented in docs/value-format.md. */
#ifndef CACHET_VALUE_H
#define CACHET_VALUE_H

#include <endian.h>
#include <stddef.h>
#include <string.h>
#include <stdint.h>
#include <cachet/cachet.h>

#define CACHET_VALUE_HDR     40  /* bytes (version 2); payloads start 8-byte aligned */
#define CACHET_VALUE_HDR_V1  24  /* version 1, still read where values are not key-bound */
#define CACHET_VALUE_VERSION 2

/* flags */
#define CACHET_VF_KEY_BOUND 0x01 /* key_check holds the check of the key it was stored under */
/* The payload is a zstd frame (the compress proxy, proxies/compress.c);
 * the size field counts the compressed bytes.  The proxy hands the region
 * the value decompressed with this flag cleared, so a value that still
 * carries it when read (no compress proxy in the chain, or bytes that did
 * not decompress) is refused like any undecodable value. */
#define CACHET_VF_COMPRESSED 0x02

typedef struct {
    int64_t  created_ns;         /* CLOCK_REALTIME, nanoseconds since the epoch */
    uint8_t  flags;
    uint8_t  version;            /* as read: 1 or 2 */
    uint64_t key_check;          /* cachet_value_key_check() of the key, when KEY_BOUND */
    int64_t  lifetime_ns;        /* the value's own lifetime: 0 = the reader's rule, -1 never */
    int64_t  creator_ns;         /* its creator's measured time (bytes 6-7), 0 = unknown;
                                  * for the writer: cachet_value_valid does not decode it
                                  * (a get has no use for it; get_or_create's early
                                  * refresh reads it with cachet_value_creator_ns) */
} cachet_value_meta;

/* Bytes 6-7 of the version-2 header: the creator's measured time (what
 * XFetch's early refresh weighs), as an 11-bit mantissa and a 5-bit
 * exponent of microseconds: m << e, 1 us to ~50 days within 0.1 %.  0 =
 * not measured (values written before, and writes other than
 * get_or_create's). */
static inline uint16_t cachet_value_creator_encode(int64_t ns)
{
    uint64_t us = ns > 0 ? ((uint64_t)ns + 999) / 1000 : 0;
    unsigned e = 0;
    while (us > 2047 && e < 31) {
        us = (us + 1) >> 1;
        e++;
    }
    if (us > 2047)
        us = 2047;
    return (uint16_t)((e << 11) | us);
}

static inline int64_t cachet_value_creator_decode(uint16_t c)
{
    return (int64_t)((uint64_t)(c & 2047) << (c >> 11)) * 1000;
}

/* The creator time of a version-2 header (little-endian bytes 6-7). */
static inline int64_t cachet_value_creator_ns(const uint8_t *hdr)
{
    return cachet_value_creator_decode((uint16_t)(hdr[6] | (hdr[7] << 8)));
}


/* The check that binds a value to the key it is stored under: 64-bit
 * FNV-1a of the key's bytes (as the backend stores them), never 0.  Not a
 * MAC: it catches a reply that belongs to another request (a desynchronised
 * connection, a misrouting proxy), not a server that forges values. */
static inline uint64_t cachet_value_key_check(const char *key, size_t klen)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ (unsigned char)key[i]) * 0x100000001b3ULL;
    return h ? h : 1;
}

/* Writes the version-2 header for a payload of len bytes into hdr (m's
 * created_ns, flags, key_check and lifetime_ns). */
void cachet_value_header(uint8_t hdr[CACHET_VALUE_HDR], const cachet_value_meta *m, size_t len);

/* The check of every read, inline.  want_check: the key check the value
 * must carry, or 0 where values are not bound to keys (the backend keeps
 * its own bytes: memory, dbm).  Returns the header's size (32 for version
 * 2; 24 for version 1, accepted only when want_check is 0) when buf holds
 * a value whose length matches its header (and fills m), else 0. */
static inline size_t cachet_value_valid(const void *buf, size_t len, uint64_t want_check,
                                        cachet_value_meta *m)
{
    const uint8_t *p = buf;
    static const uint8_t magic[4] = {0xCA, 0xC4, 'E', 'T'};
    uint64_t created, size, check;
    if (len < CACHET_VALUE_HDR_V1 || memcmp(p, magic, 4) != 0)
        return 0;
    memcpy(&size, p + 16, 8);
    memcpy(&created, p + 8, 8);
    m->created_ns = (int64_t)le64toh(created);
    m->flags = p[5];
    m->version = p[4];
    if (p[4] == CACHET_VALUE_VERSION) {
        if (len < CACHET_VALUE_HDR || le64toh(size) != len - CACHET_VALUE_HDR ||
            (m->flags & CACHET_VF_COMPRESSED))
            return 0;
        memcpy(&check, p + 24, 8);
        m->key_check = le64toh(check);
        memcpy(&check, p + 32, 8);
        m->lifetime_ns = (int64_t)le64toh(check);
        if (want_check && (!(m->flags & CACHET_VF_KEY_BOUND) || m->key_check != want_check))
            return 0;
        return CACHET_VALUE_HDR;
    }
    if (p[4] == 1 && !want_check && le64toh(size) == len - CACHET_VALUE_HDR_V1) {
        m->key_check = 0;
        m->lifetime_ns = 0;
        m->creator_ns = 0;
        return CACHET_VALUE_HDR_V1;
    }
    return 0;
}

/* The same check, with a message in cachet_errmsg() saying what was wrong
 * (wrong magic, unknown version, length mismatch, short, stored under
 * another key).  CACHET_OK or CACHET_ECORRUPT. */
cachet_status cachet_value_decode(const void *buf, size_t len, uint64_t want_check,
                                  cachet_value_meta *m);

/* Values handed to the caller are backend buffers offset by the header, so
 * that a get costs no copy; cachet_free() undoes the offset. */
static inline void *cachet_value_payload(void *buf) { return (uint8_t *)buf + CACHET_VALUE_HDR; }

#endif
