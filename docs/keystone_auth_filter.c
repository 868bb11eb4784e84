/* An auth filter's token check on keystonemiddleware's token cache: look
 * the token up; on a miss validate it with Keystone and cache the result,
 * where the Python services behind the same memcached find it too (and
 * this filter finds theirs).  Built by `make` (docs/keystone.md);
 *   docs/keystone_auth_filter /etc/nova/nova.conf TOKEN
 * prints the token's data and where it came from. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cachet/cachet.h>

/* Stand-in for GET /v3/auth/tokens (X-Subject-Token: token): a real filter
 * asks Keystone here, and caches only tokens that validated. */
static cachet_status validate_with_keystone(void *arg, const char *token, void **data,
                                            size_t *len)
{
    static const char body[] = "{\"token\": {\"methods\": [\"password\"], \"user\": {\"id\": "
                               "\"u1\", \"name\": \"nova\"}, \"expires_at\": "
                               "\"2030-01-01T00:00:00.000000Z\"}}";
    (void)token;
    *(int *)arg = 1;                    /* say that Keystone was asked */
    if (!(*data = malloc(sizeof body)))
        return CACHET_ENOMEM;
    memcpy(*data, body, sizeof body);
    *len = sizeof body - 1;
    return CACHET_OK;                   /* an invalid token: return an error, nothing is cached */
}

int main(int argc, char **argv)
{
    cachet_config *cfg;
    cachet_region *tokens;
    void *data;
    size_t len;
    int asked = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: %s SERVICE.conf TOKEN\n", argv[0]);
        return 2;
    }
    /* the service's [keystone_authtoken] as it is: memcached_servers,
     * memcache_security_strategy, memcache_secret_key, token_cache_time */
    cfg = cachet_config_new();
    if (!cfg || cachet_config_load(cfg, argv[1], "keystone_authtoken") != CACHET_OK ||
        cachet_region_open(cfg, &tokens) != CACHET_OK) {
        fprintf(stderr, "%s\n", cachet_errmsg());      /* never shows the secret key */
        return 2;
    }
    cachet_config_free(cfg);

    /* a hit: cached by this filter or by keystonemiddleware; a miss (or a
     * tampered value, counted as corrupt): validated, then cached */
    if (cachet_get_or_create(tokens, argv[2], validate_with_keystone, &asked, &data, &len)
        != CACHET_OK) {
        fprintf(stderr, "token refused: %s\n", cachet_errmsg());
        cachet_region_close(tokens);
        return 1;
    }
    printf("%s (%s)\n", (char *)data, asked ? "validated by keystone" : "from the cache");
    cachet_free(data);
    cachet_region_close(tokens);
    return 0;
}
