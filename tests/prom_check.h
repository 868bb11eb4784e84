/* A strict checker of the Prometheus text exposition format 0.0.4, for
 * the metrics tests: Debian's prometheus package (promtool) is ~100 MB and
 * a server, too heavy for CI, so the rules promtool's `check metrics`
 * applies are checked here instead.  Returns NULL when text is valid, else
 * a static message naming the line and the rule it breaks. */
#ifndef CACHET_TEST_PROM_CHECK_H
#define CACHET_TEST_PROM_CHECK_H

#include <stddef.h>

const char *prom_check(const char *text);

/* The value of the sample whose name and labels are exactly series (e.g.
 * `cachet_hits_total{backend="memory"}`); returns 1 when found. */
int prom_value(const char *text, const char *series, double *v);

#endif
