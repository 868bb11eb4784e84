/* Prometheus text exposition (format 0.0.4) of a region: the writer the
 * pieces share (an snprintf-like buffer that keeps counting past its end),
 * and the hooks by which the region and the built-in proxies feed it. */
#ifndef CACHET_METRICS_H
#define CACHET_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <cachet/backend.h>

struct cachet_region;

/* Writes at most size bytes of the text (always NUL-terminated when size
 * > 0) and counts every byte it would have written in len. */
typedef struct {
    char  *buf;
    size_t size;
    size_t len;
} cachet_prom;

void cachet__prom_put(cachet_prom *w, const char *s, size_t n);
void cachet__prom_str(cachet_prom *w, const char *s);
void cachet__prom_printf(cachet_prom *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A label value, escaped as the format says (backslash, quote, newline). */
void cachet__prom_label(cachet_prom *w, const char *s);
/* One HELP and TYPE pair. */
void cachet__prom_family(cachet_prom *w, const char *name, const char *type, const char *help);

/* The creator's time of a get_or_create, measured by the region: recorded
 * in the metrics proxy's "create" histogram when the chain has one, else
 * nothing. */
void cachet__metrics_creator_time(struct cachet_region *r, int64_t ns);

/* The region was invalidated: every near proxy of its chain empties its
 * L1 (the region refuses the old values anyway; an empty L1 reads values
 * written since from below). */
void cachet__proxies_invalidated(struct cachet_region *r);

/* The metrics proxy (proxies/metrics.c), for the two calls above. */
extern const cachet_proxy_ops cachet__metrics_proxy;
void cachet__metrics_proxy_observe_create(void *state, int64_t ns);
void cachet__metrics_proxy_write(void *state, cachet_prom *w, const char *backend);

#endif
