/* redis_cluster.so (dogpile.cache.redis_cluster): its entry point; the client
 * and the operations are libredisclient's (redis.c). */
#include "redis.h"

CACHET_BACKEND_EXPORT const cachet_backend_ops *cachet_backend_entry(void)
{
    return &redis_ops_cluster;
}
