/* libFuzzer target: the redis url and host:port parsers
 * (backends/redis/redis_url.c) on arbitrary text.  They must accept or refuse
 * without reading outside it; what they accept is in range (ports
 * 1..65535, hosts non-empty and short); a message quoting a url with an
 * '@' never shows what precedes its last '@'. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_addr(const raddr *a)
{
    size_t hl = strnlen(a->host, sizeof a->host);
    if (hl == 0 || hl >= sizeof a->host || a->port < 1 || a->port > 65535)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s, out[2048];
    const char *start, *at;
    rcfg cfg;
    raddr a, *list = NULL;
    size_t n = 0;

    if (size < 1)
        return 0;
    s = malloc(size);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    memset(&cfg, 0, sizeof cfg);
    cfg.name = "redis";
    cfg.mode = data[0] % 3;
    if (rurl_parse(&cfg, s) == CACHET_OK && !cfg.unix_path) {
        raddr h;
        memcpy(h.host, cfg.host, sizeof h.host);
        h.port = cfg.port;
        check_addr(&h);
    }
    free(cfg.username);
    free(cfg.password);
    free(cfg.unix_path);
    rurl_redact(s, out, sizeof out);
    start = strstr(s, "://");
    start = start ? start + 3 : s;
    if ((at = strrchr(start, '@')) != NULL) {
        size_t pre = (size_t)(start - s);
        if (strncmp(out, s, pre) != 0 || strncmp(out + pre, "***@", 4) != 0)
            abort();
    }
    if (raddr_parse(s, 6379, &a) == 0)
        check_addr(&a);
    if (raddr_list_parse(&cfg, "startup_nodes", s, &list, &n) == CACHET_OK) {
        for (size_t i = 0; i < n; i++)
            check_addr(&list[i]);
        free(list);
    }
    free(s);
    return 0;
}
