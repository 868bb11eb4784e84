/* Parsing the url argument into the host table. */
#define _GNU_SOURCE
#include "mc_internal.h"
#include "../common/hostport.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- url parsing ---- */

static cachet_status add_host(mc_inst *m, const char *spec, size_t len)
{
    char buf[400], *p, *weight = NULL;
    mc_host *h, *nh;
    long pv = 11211, wv = 1;

    while (len && (*spec == ' ' || *spec == '\t'))
        spec++, len--;
    while (len && (spec[len - 1] == ' ' || spec[len - 1] == '\t'))
        len--;
    if (len == 0)
        return CACHET_OK;
    if (len >= sizeof buf)
        return cachet_backend_error(CACHET_EINVAL, "backend %s: url: server \"%.*s\" is too "
                                    "long", m->backend, (int)len, spec);
    memcpy(buf, spec, len);
    buf[len] = 0;
    if (!(nh = realloc(m->hosts, (m->nhosts + 1) * sizeof *nh)))
        return cachet_backend_error(CACHET_ENOMEM, "backend %s: out of memory", m->backend);
    m->hosts = nh;
    h = &m->hosts[m->nhosts];
    memset(h, 0, sizeof *h);
    h->changed_at = -1;
    p = buf;
    if (strncmp(p, "unix:", 5) == 0 || p[0] == '/') {
        if (p[0] != '/')
            p += 5;
        if (p[0] != '/')
            return cachet_backend_error(CACHET_EINVAL, "backend %s: url: \"%s\": a unix "
                                        "socket needs an absolute path", m->backend, buf);
        snprintf(h->name, sizeof h->name, "%s", p);
        snprintf(h->label, sizeof h->label, "unix:%s", p);
        h->port = 0;
        h->weight = 1;
    } else {
        char *after, *colon, *wsep;
        size_t hpl;
        int port, rc;
        if (strncmp(p, "inet6:", 6) == 0)
            p += 6;
        else if (strncmp(p, "inet:", 5) == 0)
            p += 5;
        hpl = strlen(p);
        /* ":weight" follows the port: the ':' after the port's own ':' */
        after = p[0] == '[' ? strchr(p, ']') : p;
        if (after && (colon = strchr(after, ':')) != NULL && (wsep = strchr(colon + 1, ':')))
            hpl = (size_t)(wsep - p), weight = wsep + 1;
        rc = cachet_hostport_parse(p, hpl, 11211, h->name, sizeof h->name, &port);
        if (rc == CACHET_HP_NO_CLOSE)
            return cachet_backend_error(CACHET_EINVAL, "backend %s: url: \"%s\": "
                                        "missing ]", m->backend, buf);
        if (rc == CACHET_HP_AFTER_CLOSE)
            return cachet_backend_error(CACHET_EINVAL, "backend %s: url: \"%s\": "
                                        "expected :port after ]", m->backend, buf);
        if (rc == CACHET_HP_BAD_PORT)
            return cachet_backend_error(CACHET_EINVAL, "backend %s: url: \"%.*s\": bad "
                                        "port", m->backend, (int)len, spec);
        if (rc == CACHET_HP_TOO_LONG)
            return cachet_backend_error(CACHET_EINVAL, "backend %s: url: \"%.*s\": host "
                                        "name too long", m->backend, (int)len, spec);
        if (rc != CACHET_HP_OK)
            return cachet_backend_error(CACHET_EINVAL, "backend %s: url: \"%.*s\": no host",
                                        m->backend, (int)len, spec);
        pv = port;
        if (weight) {
            char *end;
            errno = 0;
            wv = strtol(weight, &end, 10);
            if (!*weight || *end || errno || wv < 1 || wv > 1000000)
                return cachet_backend_error(CACHET_EINVAL, "backend %s: url: \"%.*s\": bad "
                                            "weight", m->backend, (int)len, spec);
        }
        h->port = (in_port_t)pv;
        h->weight = (uint32_t)wv;
        snprintf(h->label, sizeof h->label, strchr(h->name, ':') ? "[%s]:%u" : "%s:%u",
                 h->name, (unsigned)h->port);
    }
    /* (the array may still move while hosts are added: glibc's unused
     * mutexes and condvars are plain memory, so that is safe) */
    pthread_mutex_init(&h->mu, NULL);
    mc_cond_init(&h->probe_done);
    m->nhosts++;
    return CACHET_OK;
}

cachet_status mc_parse_url(mc_inst *m, const char *url)
{
    const char *p = url;
    cachet_status st;

    if (strncmp(p, "memcached://", 12) == 0)
        p += 12;
    while (*p) {
        size_t n = strcspn(p, ",;");
        if ((st = add_host(m, p, n)) != CACHET_OK)
            return st;
        p += n;
        if (*p)
            p++;
    }
    if (m->nhosts == 0)
        return cachet_backend_error(CACHET_EINVAL, "backend %s: url: no server in \"%s\"",
                                    m->backend, url);
    return CACHET_OK;
}
