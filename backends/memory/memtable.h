/* memtable: a thread-safe table of byte keys to byte values in this
 * process, optionally bounded by entry count and by bytes, evicting with
 * S3-FIFO (Yang et al., SOSP 2023).  The memory backend is a vtable over it;
 * a near-cache proxy can reuse it as it is.
 *
 * Bounds follow Cinder's image-cache rules: 0 is unlimited; an entry
 * larger than max_size (key + value bytes) is refused, and whatever was
 * under its key is dropped, so a failed set never leaves a stale value.
 *
 * Gets take no lock (see memtable.c): what a write unlinks is freed once
 * the gets already inside have left, so up to 16 removed entries or 64 KiB
 * a shard may outlive their removal for a moment.
 *
 * Statuses are cachet's; the table sets no error message (its caller knows
 * which backend or proxy it is and names it). */
#ifndef CACHET_MEMTABLE_H
#define CACHET_MEMTABLE_H

#include <stddef.h>
#include <stdint.h>
#include <cachet/cachet.h>

typedef struct memtable memtable;

typedef struct {
    size_t   entries;
    size_t   bytes;            /* key + value bytes of the live entries */
    uint64_t evictions;
} memtable_stats;

/* The longest key, and the longest value, one entry may hold. */
#define MEMTABLE_MAX_PART ((size_t)UINT32_MAX - 64)

/* NULL when out of memory. */
memtable *memtable_new(size_t max_count, size_t max_size);
void      memtable_free(memtable *t);
/* What makes the copy a get returns (a malloc'd copy unless set): any
 * function returning a block that free() releases, holding the n bytes and
 * a NUL after them, e.g. cachet_backend_value_copy; NULL when out of memory. */
void      memtable_set_copy(memtable *t, void *(*copy)(const void *bytes, size_t n));

/* CACHET_OK with *value from the table's copy (len + 1 bytes, NUL at value[len]),
 * or CACHET_MISS, or CACHET_ENOMEM. */
cachet_status memtable_get(memtable *t, const void *key, size_t klen, void **value, size_t *len);
/* ttl > 0: the entry is dropped ttl seconds from now.  CACHET_OK,
 * CACHET_ETOOBIG (see memtable_fits; the old entry is dropped) or
 * CACHET_ENOMEM (likewise). */
cachet_status memtable_set(memtable *t, const void *key, size_t klen, const void *value,
                           size_t len, double ttl);
/* Stores only if no live entry is under key: CACHET_OK or CACHET_EXISTS,
 * the check and the store one step; CACHET_ETOOBIG/ENOMEM store nothing. */
cachet_status memtable_add(memtable *t, const void *key, size_t klen, const void *value,
                           size_t len, double ttl);
void          memtable_del(memtable *t, const void *key, size_t klen);
/* CACHET_OK if an entry of these sizes may be stored; CACHET_ETOOBIG else. */
cachet_status memtable_fits(const memtable *t, size_t klen, size_t len);

/* Visits every live entry; drops the expired ones and those keep() refuses.
 * keep runs with the entry's shard locked: it must not call the table. */
size_t memtable_sweep(memtable *t, int (*keep)(void *arg, const void *value, size_t len),
                      void *arg);
void   memtable_stats_get(memtable *t, memtable_stats *out);
size_t memtable_max_count(const memtable *t);
size_t memtable_max_size(const memtable *t);

/* fork(): take every lock before, release them after (parent and child). */
void memtable_lock_all(memtable *t);
void memtable_unlock_all(memtable *t);

#endif
