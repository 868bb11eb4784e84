/* libFuzzer target: the memcached url / server-list parser
 * (backends/memcached/mc_url.c): any string is accepted as a list of hosts with
 * ports 1-65535 and weights >= 1, or refused with a message; never read
 * past it, never leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mc_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mc_inst m;
    char *url = malloc(size + 1);
    memcpy(url, data, size);
    url[size] = 0;
    memset(&m, 0, sizeof m);
    m.backend = "memcached";
    if (mc_parse_url(&m, url) == CACHET_OK) {
        if (m.nhosts == 0)
            abort();
        for (size_t i = 0; i < m.nhosts; i++)
            if ((m.hosts[i].port == 0 && m.hosts[i].name[0] != '/') || m.hosts[i].weight < 1 ||
                !m.hosts[i].label[0])
                abort();
    }
    free(m.hosts);   /* the parser only fills names; host states are made at open */
    free(url);
    return 0;
}
