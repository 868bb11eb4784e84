/* Hooks for the test suites only: declared here, not in the installed
 * headers, but exported (the library keeps every cachet_* symbol) so that
 * a test program linked against libcachet can reach them. */
#ifndef CACHET_TESTHOOKS_H
#define CACHET_TESTHOOKS_H

#include <stdint.h>

/* Replaces the region's clock -- creation times and freshness checks
 * alike -- with now_ns (nanoseconds since the epoch, as CLOCK_REALTIME
 * gives), process-wide, so expiry tests can move time on instead of
 * sleeping.  NULL restores the real clocks.  Set it while no other thread
 * is inside the library. */
void cachet__clock_set(int64_t (*now_ns)(void));

#endif
