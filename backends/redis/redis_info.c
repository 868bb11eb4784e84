/* The server's own figures for the report (`cachet stats`, metrics): one
 * INFO per server, parsed for a fixed set of fields so that the names a
 * report gives never change with the server's version.  Each figure is a
 * report line named "HOST:PORT FIELD" (cachet_metrics_prometheus makes it
 * cachet_backend_server_FIELD{server="HOST:PORT"}).  The reply is bounded
 * and checked like any other (rserver_exec: one deadline, max_value_size);
 * a server marked down is not asked (the call fails fast). */
#include "config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redis.h"

/* INFO fields reported, as INFO names them */
static const char *const fields[] = {
    "used_memory", "maxmemory", "evicted_keys", "expired_keys", "connected_clients",
    "uptime_in_seconds", NULL,
};

/* A field's value in INFO text ("name:value\r\n" lines), copied into out:
 * digits only (refuses anything else), 0 when absent or malformed. */
static int info_field(const char *text, size_t len, const char *name, char *out, size_t size)
{
    size_t n = strlen(name);
    for (const char *p = text, *end = text + len; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t l = eol ? (size_t)(eol - p) : (size_t)(end - p);
        if (l > n && memcmp(p, name, n) == 0 && p[n] == ':') {
            size_t k = 0;
            for (const char *v = p + n + 1; v < p + l && *v != '\r'; v++) {
                if (*v < '0' || *v > '9' || k + 1 >= size)
                    return 0;
                out[k++] = *v;
            }
            out[k] = '\0';
            return k > 0;
        }
        p += l + 1;
    }
    return 0;
}

/* keys and expires of database db from INFO keyspace's "dbN:keys=K,expires=E,..." */
static void keyspace(const char *text, size_t len, long db, char *keys, char *expires, size_t size)
{
    char name[32], line[200];
    snprintf(name, sizeof name, "db%ld:", db);
    snprintf(keys, size, "0");          /* no line: the database is empty */
    snprintf(expires, size, "0");
    for (const char *p = text, *end = text + len; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t l = eol ? (size_t)(eol - p) : (size_t)(end - p);
        if (l > strlen(name) && l < sizeof line && memcmp(p, name, strlen(name)) == 0) {
            unsigned long long k, e;
            memcpy(line, p, l);
            line[l] = '\0';
            if (sscanf(line + strlen(name), "keys=%llu,expires=%llu", &k, &e) == 2) {
                snprintf(keys, size, "%llu", k);
                snprintf(expires, size, "%llu", e);
            }
            return;
        }
        p += l + 1;
    }
}

void rinfo_report(rinst *in, rserver *s, cachet_backend_report_fn fn, void *arg)
{
    /* the default sections (memory, stats, keyspace among them): a few KB */
    static const char *argv[] = {"INFO"};
    size_t argvlen[] = {4};
    rcmd cmd = {1, argv, argvlen, {NULL, NULL}, RX_BULK};
    redisReply *rep = NULL;
    char server[R_HOST_MAX + 16], name[R_HOST_MAX + 64], v[32], e[32];

    pthread_mutex_lock(&s->mu);
    rserver_name(s, server, sizeof server);
    pthread_mutex_unlock(&s->mu);
    if (rserver_exec(s, &cmd, 1, &rep) != CACHET_OK || !rep) {
        snprintf(name, sizeof name, "%s info", server);
        fn(arg, name, "unavailable");        /* why is in the server line */
        return;
    }
    if (rep->type == REDIS_REPLY_STRING) {
        for (int i = 0; fields[i]; i++)
            if (info_field(rep->str, rep->len, fields[i], v, sizeof v)) {
                snprintf(name, sizeof name, "%s %s", server, fields[i]);
                fn(arg, name, v);
            }
        keyspace(rep->str, rep->len, in->cfg.db, v, e, sizeof v);
        snprintf(name, sizeof name, "%s keys", server);
        fn(arg, name, v);
        snprintf(name, sizeof name, "%s expires", server);
        fn(arg, name, e);
    }
    freeReplyObject(rep);
}
