#!/usr/bin/python3
"""keystonemiddleware's own token cache, as an oracle for tests/test_keystone.c.

Run by Debian's /usr/bin/python3 (python3-keystonemiddleware 10.1): the
cache below is keystonemiddleware's TokenCache / SecureTokenCache, built
with the arguments its AuthProtocol._token_cache_factory passes, so what it
writes and reads is what a Python service using [keystone_authtoken] does.

  keystone_oracle.py SERVERS STRATEGY SECRET CACHE_TIME COMMAND ARGS
  keystone_oracle.py serve SERVERS
      the same commands, one a line on stdin, fields separated by tabs:
      STRATEGY SECRET CACHE_TIME COMMAND ARGS; one answer line each
      (so a test pays for importing keystonemiddleware once)

SERVERS: comma list ('' = keystonemiddleware's in-process cache);
STRATEGY: None, MAC, ENCRYPT or any spelling (passed on as written);
COMMAND:
  key TOKEN           prints the memcache key (repr of the Python str)
  set TOKEN JSON      caches json.loads(JSON) for TOKEN
  opts                prints the cache options' defaults (and the deprecated
                      name and choices) as keystonemiddleware's _opts.py has them
  get TOKEN           prints json.dumps of what the cache returns, after
                      AuthProtocol.fetch_token's legacy two-element rule,
                      'MISS' for None, or 'RAISED <ExceptionType>'
"""
import json
import logging
import sys

from keystonemiddleware.auth_token import _cache

logging.basicConfig(level=logging.CRITICAL)   # keystonemiddleware logs a failed MAC
LOG = logging.getLogger('keystone_oracle')


def make_cache(servers, strategy, secret, cache_time):
    # the kwargs keystonemiddleware's _token_cache_factory builds from its
    # options, with its option defaults
    kwargs = dict(cache_time=int(cache_time), env_cache_name=None,
                  memcached_servers=[s for s in servers.split(',') if s] or None,
                  use_advanced_pool=True, dead_retry=300, maxsize=10,
                  unused_timeout=60, conn_get_timeout=10, socket_timeout=3)
    if strategy.lower() != 'none':
        c = _cache.SecureTokenCache(LOG, strategy, secret, **kwargs)
    else:
        c = _cache.TokenCache(LOG, **kwargs)
    c.initialize({})
    return c


def main(argv):
    if argv[1] == 'serve':
        for line in sys.stdin:
            fields = line.rstrip('\n').split('\t')
            try:
                main(['oracle', argv[2]] + fields)
            except Exception as e:
                print('ERROR %s: %s' % (type(e).__name__, e))
            sys.stdout.flush()
        return 0
    servers, strategy, secret, cache_time, cmd = argv[1:6]
    if cmd == 'opts':
        from keystonemiddleware.auth_token import _opts
        names = ['memcached_servers', 'memcache_security_strategy', 'token_cache_time',
                 'memcache_pool_dead_retry', 'memcache_pool_socket_timeout',
                 'memcache_pool_maxsize', 'memcache_pool_unused_timeout',
                 'memcache_pool_conn_get_timeout', 'memcache_use_advanced_pool']
        opts = {o.name: o for o in _opts._OPTS}
        out = ['%s=%s' % (n, opts[n].default) for n in names]
        out.append('memcached_servers.deprecated=%s' % ','.join(
            d.name for d in opts['memcached_servers'].deprecated_opts))
        t = opts['memcache_security_strategy'].type
        out.append('strategy.choices=%s' % ','.join(t.choices))
        out.append('strategy.ignore_case=%s' % t.ignore_case)
        print(';'.join(out))
        return 0
    c = make_cache(servers, strategy, secret, cache_time)
    if cmd == 'key':
        print(repr(c._get_cache_key(argv[6])[0]))
    elif cmd == 'set':
        c.set(argv[6], json.loads(argv[7]))
        print('STORED')
    elif cmd == 'get':
        try:
            cached = c.get(argv[6])
        except Exception as e:      # keystonemiddleware raises on a bad MAC
            print('RAISED %s' % type(e).__name__)
            return 0
        if cached is None:
            print('MISS')
            return 0
        # AuthProtocol.fetch_token: values used to be (data, expires)
        if cached and len(cached) == 2:
            cached = cached[0]
        print(json.dumps(cached))
    else:
        print('unknown command %s' % cmd, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
