/* The completion fd of an async queue: one eventfd, non-blocking and
 * close-on-exec.  Workers add to its counter when completions are waiting;
 * dispatch reads it back to zero before taking them. */
#include "config.h"
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "async.h"

int cachet__async_notify_open(void)
{
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

void cachet__async_notify_signal(int efd)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is at its maximum: readable anyway */
    while (write(efd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

void cachet__async_notify_drain(int efd)
{
    uint64_t n;
    while (read(efd, &n, sizeof n) < 0 && errno == EINTR)
        ;
}

void cachet__async_notify_wait(int efd, int ms)
{
    struct pollfd p = {.fd = efd, .events = POLLIN};
    poll(&p, 1, ms);
}
