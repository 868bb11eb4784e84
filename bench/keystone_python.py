#!/usr/bin/python3
"""keystonemiddleware's side of bench/run-keystone: set and get-hit calls/s
of its own TokenCache / SecureTokenCache (the advanced pool, as its
defaults build it) with the same token data as bench/keystone.c.
  bench/keystone_python.py SERVERS STRATEGY N"""
import json
import logging
import sys
import time

from keystonemiddleware.auth_token import _cache

servers, strategy, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = {"token": {"methods": ["password"], "user": {"domain": {"id": "default", "name": "Default"},
        "id": "3ec3164f750146be97f21559ee4d9c51", "name": "nova", "password_expires_at": None},
        "audit_ids": ["yRt0UrxJSs6-WYJgwEMMmg"], "expires_at": "2030-01-01T00:00:00.000000Z",
        "issued_at": "2029-12-31T23:00:00.000000Z", "project": {"domain": {"id": "default",
        "name": "Default"}, "id": "a6944d763bf64ee6a275f1263fae0352", "name": "service"},
        "is_domain": False, "roles": [{"id": "51cc68287d524c759f47c811e6463340", "name": "admin"}]}}
kw = dict(cache_time=300, env_cache_name=None, memcached_servers=servers.split(','),
          use_advanced_pool=True, dead_retry=300, maxsize=10, unused_timeout=60,
          conn_get_timeout=10, socket_timeout=3)
log = logging.getLogger('bench')
if strategy.lower() != 'none':
    c = _cache.SecureTokenCache(log, strategy, 'bench-secret', **kw)
else:
    c = _cache.TokenCache(log, **kw)
c.initialize({})
t0 = time.monotonic()
for i in range(n):
    c.set('gAAAAABbench-token-%d' % (i % 1000), data)
print('set %.0f' % (n / (time.monotonic() - t0)))
t0 = time.monotonic()
for i in range(n):
    if c.get('gAAAAABbench-token-%d' % (i % 1000)) is None:
        sys.exit('get: not a hit')
print('get_hit %.0f' % (n / (time.monotonic() - t0)))
