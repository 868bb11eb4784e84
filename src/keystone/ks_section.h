/* Reading keystonemiddleware's [keystone_authtoken] section unchanged:
 * config.c hands each name = value line of that section here, and at the
 * end this turns the options keystonemiddleware's token cache uses into
 * cachet's own (a memcache_pool, memcached or memory backend, the keystone
 * proxy, values in keystonemiddleware's format).  Every other option of
 * the section (auth_url, password, ...) is ignored, as it belongs to the
 * middleware, not to its cache.  docs/keystone.md says what maps to what. */
#ifndef CACHET_KS_SECTION_H
#define CACHET_KS_SECTION_H

#include <cachet/cachet.h>

#define CACHET_KS_SECTION "keystone_authtoken"

typedef struct ks_section ks_section;

ks_section   *cachet__ks_section_new(void);
void          cachet__ks_section_free(ks_section *s);   /* wipes the secret */
/* One line: continuation = it continues the option of the line before
 * (oslo.config joins such lines with "\n"). */
cachet_status cachet__ks_section_line(ks_section *s, const char *name, const char *value,
                                      int continuation, int line);
/* Checks the options (messages "label:line: option NAME: ...", never
 * quoting memcache_secret_key) and sets c's options from them; file is
 * what c's options record as where they were set. */
cachet_status cachet__ks_section_apply(ks_section *s, cachet_config *c, const char *label,
                                       const char *file);

#endif
