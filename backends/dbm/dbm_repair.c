/* Before recovering a file whose writer was killed: raise gdbm's stale
 * next_block so that gdbm_recover can read every bucket the dead writer
 * left behind.
 *
 * gdbm writes one store in this order: the value, the changed buckets, the
 * directory, and the header (with next_block, the first unallocated byte)
 * last.  A writer killed before the header leaves the old next_block.  Two
 * kinds of space lie past it, and gdbm refuses a whole bucket ("Malformed
 * avail_block") if one of its free-space entries ends past next_block:
 *
 *  - space that was written: values and buckets taken from the end of the
 *    file.  It lies inside the file.
 *  - space that was allocated but never written.  When gdbm splits a
 *    bucket, it gives the new second bucket a whole free block taken from
 *    the end of the file.  Only the header's next_block and a final
 *    extension of the file (after the header) account for that block, so
 *    after the kill it lies past the end of the file, and the new bucket,
 *    with every completed key that moved into it, is refused.
 *
 * Raising next_block to the end of the file fixes the first kind only.  So
 * the repair reads the directory and the free-space table of every bucket
 * it names, and raises next_block past the furthest free block as well.
 * Recovery copies the keys into a new file, so these free tables are never
 * used for allocation: they only have to pass gdbm's check.
 *
 * Only the native 64-bit format that cachet creates is read (gdbm's file
 * layout with a 64-bit off_t, in this host's byte order). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "dbm_internal.h"

#define GDBM_MAGIC64_NATIVE 0x13579acfu
#define BUCKET_AVAIL        6     /* free-space entries in a bucket */
#define MIN_BLOCK_SIZE      512   /* gdbm's smallest block */
#define MAX_BLOCK_SIZE      (1 << 24)
/* One store splits a bucket at most once per hash bit (31), and each split
 * leaves one unwritten block: a free block further past the end of the
 * file than this is not something a writer left, but a torn bucket (which
 * is lost anyway). */
#define MAX_UNWRITTEN_BLOCKS 32

/* gdbm's on-disk structures (gdbmdefs.h), as far as the repair reads them.
 * Natural alignment gives gdbm's layout. */
typedef struct {
    uint32_t magic;
    int32_t  block_size;
    int64_t  dir;           /* the directory: an array of bucket addresses */
    int32_t  dir_size;      /* in bytes */
    int32_t  dir_bits;
    int32_t  bucket_size;
    int32_t  bucket_elems;
    int64_t  next_block;    /* the first byte not allocated */
} disk_header;

typedef struct {
    int32_t  av_size;
    int64_t  av_adr;
} disk_avail;

typedef struct {            /* the start of a bucket */
    int32_t    av_count;
    disk_avail avail[BUCKET_AVAIL];
} disk_bucket_head;

_Static_assert(sizeof(disk_header) == 40, "gdbm's 64-bit header is 40 bytes");
_Static_assert(sizeof(disk_avail) == 16, "gdbm's avail_elem is 16 bytes");
_Static_assert(sizeof(disk_bucket_head) == 104, "gdbm's bucket avail ends at 104");

static int64_t round_up(int64_t n, int64_t block)
{
    return (n + block - 1) / block * block;
}

/* The furthest end of a free block in the bucket at adr, or 0. */
static int64_t bucket_avail_end(int fd, const disk_header *h, int64_t adr, int64_t limit)
{
    disk_bucket_head b;
    int64_t end = 0;

    if (pread(fd, &b, sizeof b, adr) != (ssize_t)sizeof b)
        return 0;
    if (b.av_count < 0 || b.av_count > BUCKET_AVAIL)
        return 0;
    for (int i = 0; i < b.av_count; i++) {
        const disk_avail *a = &b.avail[i];
        if (a->av_size <= 0 || a->av_adr < h->bucket_size || a->av_adr > limit - a->av_size)
            continue;           /* garbage: leave it for gdbm to refuse */
        if (a->av_adr + a->av_size > end)
            end = a->av_adr + a->av_size;
    }
    return end;
}

/* The furthest end of any free block in the buckets the directory names,
 * not past limit; 0 when the directory cannot be read. */
static int64_t furthest_avail(int fd, const disk_header *h, int64_t size, int64_t limit)
{
    size_t n = (size_t)h->dir_size / sizeof(int64_t);
    int64_t *dir, end = 0, prev = -1;

    if (h->dir <= 0 || h->dir_size <= 0 || h->dir_size % sizeof(int64_t) != 0 ||
        h->dir > size - h->dir_size)
        return 0;
    if (!(dir = malloc((size_t)h->dir_size)))
        return 0;
    if (pread(fd, dir, (size_t)h->dir_size, h->dir) == (ssize_t)h->dir_size) {
        for (size_t i = 0; i < n; i++) {
            int64_t e;
            if (dir[i] == prev)  /* buckets take runs of directory entries */
                continue;
            prev = dir[i];
            if (dir[i] < h->bucket_size || dir[i] > size - h->bucket_size)
                continue;
            if ((e = bucket_avail_end(fd, h, dir[i], limit)) > end)
                end = e;
        }
    }
    free(dir);
    return end;
}

void dbm_repair_next_block(const char *path)
{
    disk_header h;
    struct stat sb;
    int64_t want, limit, avail_end;
    int fd = open(path, O_RDWR | O_CLOEXEC);

    if (fd < 0)
        return;
    if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || fstat(fd, &sb) != 0 ||
        h.magic != GDBM_MAGIC64_NATIVE || h.block_size < MIN_BLOCK_SIZE ||
        h.block_size > MAX_BLOCK_SIZE || h.bucket_size < (int32_t)sizeof(disk_bucket_head) ||
        h.next_block <= 0) {
        close(fd);
        return;
    }
    want = round_up(sb.st_size, h.block_size);
    limit = want + (int64_t)MAX_UNWRITTEN_BLOCKS * h.block_size;
    if ((avail_end = furthest_avail(fd, &h, sb.st_size, limit)) > want)
        want = avail_end;
    if (want > h.next_block &&
        pwrite(fd, &want, sizeof want, offsetof(disk_header, next_block)) == sizeof want)
        cachet_backend_log(CACHET_LOG_INFO, "backend " BACKEND ": %s: raised the header's "
                           "next_block from %lld to %lld (file size %lld, free space of the "
                           "buckets up to %lld)", path, (long long)h.next_block,
                           (long long)want, (long long)sb.st_size, (long long)avail_end);
    close(fd);
}
