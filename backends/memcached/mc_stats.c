/* The servers' own figures for the report (`cachet stats`, metrics): one
 * text-protocol `stats` per server on a connection of its own, so that a
 * report never touches the connections operations use nor the host
 * table's health (a report is not an operation: it neither marks a host
 * dead nor revives one).  One deadline (socket_timeout) per server, at
 * most MAX_LINES reply lines, each bounded by MC_LINE_MAX; a host marked
 * dead is not asked.  Each figure of a fixed set is a report line named
 * "HOST:PORT NAME" (cachet_metrics_prometheus makes it
 * cachet_backend_server_NAME{server="HOST:PORT"}).  With SASL the text
 * protocol cannot authenticate: the servers are not asked. */
#include "config.h"
#include <stdio.h>
#include <string.h>
#include "mc_internal.h"
#include "mc_sock.h"

#define MAX_LINES 400            /* memcached 1.6 sends ~90 */

static const char *const fields[] = {
    "curr_items", "bytes", "limit_maxbytes", "evictions", "curr_connections", "get_hits",
    "get_misses", "uptime", NULL,
};

static int wanted(const char *name)
{
    for (int i = 0; fields[i]; i++)
        if (strcmp(fields[i], name) == 0)
            return 1;
    return 0;
}

/* 1 when host i answered its stats (the lines are given to fn). */
static int host_stats(mc_inst *m, size_t i, cachet_backend_report_fn fn, void *arg)
{
    mc_host *h = &m->hosts[i];
    mc_sock s;
    double dl = mc_clock() + m->socket_timeout;
    char *line, name[480];
    size_t len;
    int ok = 0;

    mc_sock_init(&s);
    if (mc_sock_connect(&s, h->name, h->port, dl) != MC_OK ||
        mc_sock_send(&s, "stats\r\n", 7, dl) != MC_OK)
        goto out;
    for (int n = 0; n < MAX_LINES; n++) {
        char *sp, *val;
        if (mc_sock_line(&s, MC_LINE_MAX, dl, &line, &len) != MC_OK)
            goto out;
        if (strcmp(line, "END") == 0) {
            ok = 1;
            goto out;
        }
        /* "STAT name value": anything else is not a stats reply */
        if (strncmp(line, "STAT ", 5) != 0 || !(sp = strchr(line + 5, ' ')))
            goto out;
        *sp = '\0';
        val = sp + 1;
        if (!wanted(line + 5) || val[strspn(val, "0123456789")] != '\0' || !*val)
            continue;
        snprintf(name, sizeof name, "%s %s", h->label, line + 5);
        fn(arg, name, val);
    }
out:
    mc_sock_close(&s);
    return ok;
}

void mc_stats_report(mc_inst *m, int *answered, cachet_backend_report_fn fn, void *arg)
{
    for (size_t i = 0; i < m->nhosts; i++) {
        mc_host *h = &m->hosts[i];
        char name[480];
        answered[i] = 0;
        /* a host marked down is the prober's: a report never waits on it */
        if (cachet_host_state(&h->h) == CACHET_HOST_DOWN || m->sasl_user)
            continue;
        if (!(answered[i] = host_stats(m, i, fn, arg))) {
            snprintf(name, sizeof name, "%s stats", h->label);
            fn(arg, name, "unavailable");
        }
    }
}
