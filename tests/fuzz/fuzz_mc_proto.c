/* libFuzzer targets: the memcached reply parsers, ASCII (mc_text.c; built
 * as fuzz_mc_text) and binary (mc_bin.c; built with -DFUZZ_MC_BINARY as
 * fuzz_mc_bin).  The first byte picks the request the parser answers (get,
 * gets, a multi-get of "a b a", a write's or delete's reply, and for the
 * binary protocol SASL); the rest is the server's answer.  Whatever it is,
 * the parser must not read outside the bytes, must not allocate past
 * max_value_size, and a value it returns must be one asked for. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mc_proto.h"

#ifdef FUZZ_MC_BINARY
#define PROTO mc_bin
#define NOPS  6            /* the binary protocol also has SASL */
#else
#define PROTO mc_text
#define NOPS  5
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXVAL 4096

static int hit(void *arg, size_t idx, void *value, size_t len)
{
    size_t *count = arg;
    if (idx >= 3 || len > MAXVAL)
        abort();
    (*count)++;
    free(value);
    return MC_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mc_sock s;
    void *v = NULL;
    size_t len = 0, count = 0;
    uint64_t cas;
    int rc, op;
    static const char *const keys[] = {"a", "b", "a"};
    static const size_t klens[] = {1, 1, 1};

    if (size < 1)
        return 0;
    op = data[0] % NOPS;
    mc_sock_init(&s);
    if (mc_sock_feed(&s, data + 1, size - 1) != MC_OK)
        return 0;
    switch (op) {
    case 0:
    case 1:
        rc = PROTO.get(&s, "key", 3, MAXVAL, 1e18, &v, &len, op ? &cas : NULL);
        if (rc == MC_OK ? (!v || len > MAXVAL) : v != NULL)
            abort();
        free(v);
        break;
    case 2:
        if (PROTO.mget_send(&s, keys, klens, 3, 1e18) == MC_OK &&
            mc_sock_flush(&s, 1e18) == MC_OK)
            PROTO.mget_recv(&s, keys, klens, 3, MAXVAL, 1e18, hit, &count);
        if (count > 3)
            abort();
        break;
    case 3:
        if (PROTO.store_queue(&s, 0, "key", 3, "v", 1, 0, 1e18) == MC_OK &&
            mc_sock_flush(&s, 1e18) == MC_OK)
            while (PROTO.reply(&s, 1e18) >= 0)
                ;
        break;
#ifdef FUZZ_MC_BINARY
    case 5:
        mc_bin_sasl(&s, "user", "pass", 1e18);
        break;
#endif
    default:
        if (PROTO.del_queue(&s, "key", 3, 0) == MC_OK && mc_sock_flush(&s, 1e18) == MC_OK)
            while (PROTO.reply(&s, 1e18) >= 0)
                ;
        break;
    }
    mc_sock_close(&s);
    return 0;
}
