/* libFuzzer target: the memcached ASCII reply parsers (backends/memcached/mc_text.c)
 * on any bytes a server might send.  The first byte picks the request
 * (get, gets, multi-get of "a b a", a write's reply); the rest is the
 * server's answer.  Whatever it is, the parser must not read outside the
 * bytes, must not allocate past max_value_size, and a value it returns
 * must be exactly what a VALUE line for the requested key declared. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mc_proto.h"

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
    op = data[0] % 5;
    mc_sock_init(&s);
    if (mc_sock_feed(&s, data + 1, size - 1) != MC_OK)
        return 0;
    switch (op) {
    case 0:
    case 1:
        rc = mc_text.get(&s, "key", 3, MAXVAL, 1e18, &v, &len, op ? &cas : NULL);
        if (rc == MC_OK ? (!v || len > MAXVAL) : v != NULL)
            abort();
        free(v);
        break;
    case 2:
        if (mc_text.mget_send(&s, keys, klens, 3, 1e18) == MC_OK &&
            mc_sock_flush(&s, 1e18) == MC_OK)
            mc_text.mget_recv(&s, keys, klens, 3, MAXVAL, 1e18, hit, &count);
        if (count > 3)
            abort();
        break;
    case 3:
        if (mc_text.store_queue(&s, 0, "key", 3, "v", 1, 0, 1e18) == MC_OK &&
            mc_sock_flush(&s, 1e18) == MC_OK)
            while (mc_text.reply(&s, 1e18) >= 0)
                ;
        break;
    default:
        if (mc_text.del_queue(&s, "key", 3, 0) == MC_OK && mc_sock_flush(&s, 1e18) == MC_OK)
            while (mc_text.reply(&s, 1e18) >= 0)
                ;
        break;
    }
    mc_sock_close(&s);
    return 0;
}
