#!/usr/bin/python3
"""The Python peers of bench/memcached: dogpile.cache.memcached and
oslo_cache.memcache_pool making the same calls (get hit, set,
get_multi of 100) on the same memcached, and the same dead-host stall
count (2 live servers and a host that accepts and never answers,
socket_timeout 1 s, dead_retry 30 s, 4 lanes x 40 gets, a new thread per
request).  Run with Debian's /usr/bin/python3 (it has python3-dogpile.cache,
python3-oslo.cache and python3-memcache).

    python_memcached.py --port P [--n N]    RESULT lines
    python_memcached.py --stalls P1,P2       STALLS lines (starts the black hole)
"""
import argparse
import resource
import socket
import sys
import threading
import time

VALUE = b"v" * 100
MULTI = 100
NKEYS = 1000
KEYS = ["bench-key-%d" % i for i in range(NKEYS)]


def cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def dogpile_region(servers, socket_timeout=1.0, dead_retry=30):
    from dogpile.cache import make_region
    return make_region().configure(
        "dogpile.cache.memcached",
        arguments={"url": servers, "socket_timeout": socket_timeout,
                   "dead_retry": dead_retry})


def oslo_region(servers, socket_timeout=1.0, dead_retry=30):
    from oslo_config import cfg
    from oslo_cache import core as cache
    conf = cfg.ConfigOpts()
    cache.configure(conf)
    conf([], project="bench", default_config_files=[])
    conf.set_override("enabled", True, group="cache")
    conf.set_override("backend", "oslo_cache.memcache_pool", group="cache")
    conf.set_override("memcache_servers", servers, group="cache")
    conf.set_override("memcache_socket_timeout", socket_timeout, group="cache")
    conf.set_override("memcache_dead_retry", dead_retry, group="cache")
    region = cache.create_region()
    cache.configure_cache_region(conf, region)
    return region


def report(impl, op, t0, c0, calls, keys):
    dt, (u1, s1) = time.monotonic() - t0, cpu()
    du, ds = u1 - c0[0], s1 - c0[1]
    print("RESULT %s %s %.0f %.0f %.2f %.2f %.2f" % (impl, op, calls / dt, keys / dt,
                                                   (du + ds) / calls * 1e6, du / calls * 1e6,
                                                   ds / calls * 1e6), flush=True)


def bench(impl, region, n):
    from dogpile.cache.api import NO_VALUE
    for k in KEYS:
        region.set(k, VALUE)
    t0, c0 = time.monotonic(), cpu()
    for i in range(n):
        if region.get(KEYS[i % NKEYS]) is NO_VALUE:
            sys.exit("%s: get missed" % impl)
    report(impl, "get", t0, c0, n, n)
    t0, c0 = time.monotonic(), cpu()
    for i in range(n):
        region.set(KEYS[i % NKEYS], VALUE)
    report(impl, "set", t0, c0, n, n)
    calls = n // 20
    t0, c0 = time.monotonic(), cpu()
    for i in range(calls):
        ks = [KEYS[(i * MULTI + k) % NKEYS] for k in range(MULTI)]
        vals = region.get_multi(ks)
        if any(v is NO_VALUE for v in vals):
            sys.exit("%s: get_multi missed" % impl)
    report(impl, "get_multi100", t0, c0, calls, calls * MULTI)


def stalls(impl, region):
    slow = [0] * 4

    def one(lane, i):
        t0 = time.monotonic()
        try:
            region.get("dh-%d-%d" % (lane, i))
        except Exception:
            pass
        if time.monotonic() - t0 >= 0.5:
            slow[lane] += 1

    def run_lane(lane):
        for i in range(40):
            t = threading.Thread(target=one, args=(lane, i))
            t.start()
            t.join()
            time.sleep(0.005)

    lanes = [threading.Thread(target=run_lane, args=(k,)) for k in range(4)]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()
    print("STALLS %s %d 160" % (impl, sum(slow)), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--stalls")
    a = ap.parse_args()
    if a.stalls:
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(1024)          # accepts nothing: connects succeed, nobody answers
        live = ["127.0.0.1:%s" % p for p in a.stalls.split(",")]
        servers = live + ["127.0.0.1:%d" % hole.getsockname()[1]]
        stalls("dogpile.cache.memcached", dogpile_region(servers))
        stalls("oslo_cache.memcache_pool", oslo_region(servers))
        hole.close()
        return
    servers = ["127.0.0.1:%d" % a.port]
    bench("dogpile.cache.memcached", dogpile_region(servers), a.n)
    bench("oslo_cache.memcache_pool", oslo_region(servers), a.n)


if __name__ == "__main__":
    main()
