/* libFuzzer target: arbitrary bytes as a server's replies to 1..3
 * requests of the kinds the redis backends send.  The reply scanner
 * (backends/redis/redis_reply.c) must refuse or accept them within its bounds,
 * and whatever it accepts hiredis's reader must parse into exactly as many
 * replies as the scanner counted (else a reply could be taken for the
 * next request's), each within the request's limits.  The first bytes
 * pick the requests and how the bytes are split into reads. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_limits(const redisReply *r, const rlimits *l, int depth)
{
    if (!r)
        return;   /* an element not filled: only in a refused array */
    if ((r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
         r->type == REDIS_REPLY_ERROR) && r->len > l->max_bulk && r->len > l->max_line)
        abort();
    if (r->type == REDIS_REPLY_ARRAY) {
        if (depth >= l->max_depth || r->elements > (depth ? l->max_nested : l->max_top))
            abort();
        for (size_t i = 0; i < r->elements; i++)
            check_limits(r->element[i], l, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *keys[8] = {"GET", "k1", "k2", "k3", "k4", "k5", "k6", "k7"};
    static size_t lens[8] = {3, 2, 2, 2, 2, 2, 2, 2};
    rcmd cmds[3];
    redisReply *rep[3] = {NULL, NULL, NULL};
    size_t n, got = 0, chunk, off;
    redisReader *rd;
    rscan sc;
    int reader_failed = 0;

    if (size < 4)
        return 0;
    n = data[0] % 3 + 1;
    for (size_t i = 0; i < n; i++) {
        memset(&cmds[i], 0, sizeof cmds[i]);
        cmds[i].expect = RX_BULK + data[1 + i] % (RX_MASTER_ADDR - RX_BULK + 1);
        cmds[i].argc = 1 + data[1 + i] / 16 % 7;   /* MGET of 0..6 keys */
        cmds[i].argv = keys;
        cmds[i].argvlen = lens;
    }
    chunk = data[3] % 64 + 1;
    data += 4;
    size -= 4;
    rd = redisReaderCreateWithFunctions(&rreply_functions);
    if (!rd)
        return 0;
    rscan_init(&sc, cmds, n, 1024);   /* max_value_size 1 KiB */
    rd->privdata = &sc;
    for (off = 0; off < size && !reader_failed; off += chunk) {
        size_t k = size - off < chunk ? size - off : chunk;
        char *copy = malloc(k);   /* a private copy: ASan sees reads past it */
        long used;
        memcpy(copy, data + off, k);
        used = rscan_feed(&sc, copy, k);
        if (used > 0 && redisReaderFeed(rd, copy, (size_t)used) != REDIS_OK)
            abort();
        free(copy);
        if (used < 0)
            break;
        while (got < n) {
            void *r = NULL;
            if (redisReaderGetReply(rd, &r) != REDIS_OK) {
                if (!sc.refused) {
                    if (getenv("FUZZ_DEBUG"))
                        fprintf(stderr, "reader: %s\n", rd->errstr);
                    abort();
                }   /* the scanner let through what the reader refuses */
                reader_failed = 1;
                break;
            }
            if (!r)
                break;
            rep[got++] = r;
            sc.reader_done = got;
        }
        if (used < (long)k)
            break;   /* trailing bytes: the connection would be closed */
    }
    if (!sc.failed && !reader_failed && got != sc.done)
        abort();   /* the scanner and the reader disagree on where replies end */
    for (size_t i = 0; i < got; i++) {
        rlimits l;
        char why[200];
        rlimits_for(&cmds[i], 1024, &l);
        check_limits(rep[i], &l, 0);
        (void)rreply_check(&cmds[i], rep[i], why, sizeof why);
        freeReplyObject(rep[i]);
    }
    rd->privdata = NULL;
    redisReaderFree(rd);
    return 0;
}
