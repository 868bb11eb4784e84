/* The near proxy's table: bytes under keys, bounded by count and by size,
 * each entry stamped with when it was put, least recently used evicted
 * first.  Sharded (one lock per shard) so that threads reading different
 * keys do not queue on one mutex.  Kept behind this small interface so
 * that another table (the memory backend's) can replace it.
 *
 * Fill tickets close the race between a read that fills the table from
 * the layer below and a write of the same key: near_table_ticket() before
 * reading below, near_table_fill() after; the fill is dropped when a put,
 * delete or clear touched the key's slot in between, so an older value
 * never overwrites a newer one; writes do the same with near_table_write(),
 * so of two overlapping writes of one key neither is kept. */
#ifndef CACHET_NEAR_TABLE_H
#define CACHET_NEAR_TABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct near_table near_table;

/* 0 = unbounded for either limit (not both: near.c refuses that). */
near_table *near_table_new(size_t max_count, size_t max_size);
void        near_table_free(near_table *t);

/* A copy (malloc, len + 1 bytes, NUL at [len]) of the value under key when
 * it was put at or after not_before (ns, monotonic): 1; else 0 (an entry
 * older than that is dropped). */
int      near_table_get(near_table *t, const char *key, size_t klen, int64_t not_before,
                        void **value, size_t *len);
/* Stores a copy stamped now; a value over max_size is not kept (and the
 * old one goes).  Returns 0, or -1 without memory (the key then holds
 * nothing). */
int      near_table_put(near_table *t, const char *key, size_t klen, const void *value,
                        size_t len, int64_t now);
uint64_t near_table_ticket(near_table *t, const char *key, size_t klen);
void     near_table_fill(near_table *t, const char *key, size_t klen, uint64_t ticket,
                         const void *value, size_t len, int64_t now);
/* After a write below that began with ticket: stores the value written
 * when no other write touched the key's slot since (else drops the key:
 * two writes that overlapped may have reached the backend in either order,
 * and the next read asks it); counts as a write for tickets either way. */
void     near_table_write(near_table *t, const char *key, size_t klen, uint64_t ticket,
                          const void *value, size_t len, int64_t now);
void     near_table_del(near_table *t, const char *key, size_t klen);
void     near_table_clear(near_table *t);

typedef struct {
    size_t   count, bytes;
    uint64_t evictions;
} near_table_stats;
void     near_table_stat(near_table *t, near_table_stats *out);

/* fork(): every shard lock taken, then released in parent and child. */
void     near_table_lock_all(near_table *t);
void     near_table_unlock_all(near_table *t);

#endif
