/* Turning a config's cachet_proxies / cachet_proxy_argument into the
 * proxies dispatch.c opens. */
#ifndef CACHET_CHAIN_H
#define CACHET_CHAIN_H

#include "dispatch.h"

struct cachet_config;

typedef struct {
    cachet_proxy_spec     *specs;    /* n, outermost first: for cachet__below_open */
    size_t                 n;
    char                 **names;
    cachet_backend_arg   **args;     /* per proxy; the strings point into the config */
    cachet_backend_params *params;
} cachet_chain;

cachet_status cachet__chain_make(const struct cachet_config *c, cachet_chain *out);
void          cachet__chain_free(cachet_chain *ch);

#endif
