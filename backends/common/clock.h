/* The monotonic clock the backends time their deadlines and host states on
 * (memcached's mc_now_s and redis's r_now are this function). */
#ifndef CACHET_BACKEND_COMMON_CLOCK_H
#define CACHET_BACKEND_COMMON_CLOCK_H

/* Seconds on CLOCK_MONOTONIC: never steps with the wall clock. */
double cachet_clock_now(void);

#endif
