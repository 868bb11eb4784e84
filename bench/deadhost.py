#!/usr/bin/python3
"""The dead-host stall count with prefork workers, the Python peers' side
(cachet's: bench/deadhost.c; both run by bench/run-deadhost):
dogpile.cache.memcached and oslo_cache.memcache_pool, configured in the
parent (socket_timeout 1 s, dead_retry 30 s), which makes no call, then
forked into W workers that each make N gets (a key of their own each time,
5 ms apart).  A stall is a get that took >= 0.5 s.  Run with Debian's
/usr/bin/python3 (python3-dogpile.cache, python3-oslo.cache,
python3-memcache).

    deadhost.py --servers H:P,H:P,H:P --impl dogpile|oslo [--workers 8] [--gets 40]

Prints STALLS <impl> <stalls> <gets> <seconds>.
"""
import argparse
import os
import struct
import time


def dogpile_region(servers):
    from dogpile.cache import make_region
    return make_region().configure(
        "dogpile.cache.memcached",
        arguments={"url": servers, "socket_timeout": 1.0, "dead_retry": 30})


def oslo_region(servers):
    from oslo_config import cfg
    from oslo_cache import core as cache
    conf = cfg.ConfigOpts()
    cache.configure(conf)
    conf([], project="bench", default_config_files=[])
    conf.set_override("enabled", True, group="cache")
    conf.set_override("backend", "oslo_cache.memcache_pool", group="cache")
    conf.set_override("memcache_servers", servers, group="cache")
    conf.set_override("memcache_socket_timeout", 1.0, group="cache")
    conf.set_override("memcache_dead_retry", 30, group="cache")
    region = cache.create_region()
    cache.configure_cache_region(conf, region)
    return region


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", required=True)
    ap.add_argument("--impl", choices=["dogpile", "oslo"], required=True)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--gets", type=int, default=40)
    a = ap.parse_args()
    servers = a.servers.split(",")
    region = dogpile_region(servers) if a.impl == "dogpile" else oslo_region(servers)
    name = "dogpile.cache.memcached" if a.impl == "dogpile" else "oslo_cache.memcache_pool"
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()
    kids = []
    for w in range(a.workers):
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.read(go_r, 1)              # EOF: every worker starts now
            slow = 0
            for i in range(a.gets):
                t = time.monotonic()
                try:
                    region.get("dh-%d-%d-%d" % (os.getppid(), w, i))
                except Exception:
                    pass
                if time.monotonic() - t >= 0.5:
                    slow += 1
                time.sleep(0.005)
            os.write(res_w, struct.pack("i", slow))
            os._exit(0)
        kids.append(pid)
    t0 = time.monotonic()
    os.close(go_r)
    os.close(go_w)
    os.close(res_w)
    total = 0
    for _ in kids:
        total += struct.unpack("i", os.read(res_r, 4))[0]
    for pid in kids:
        os.waitpid(pid, 0)
    print("STALLS %s %d %d %.2f" % (name, total, a.workers * a.gets, time.monotonic() - t0),
          flush=True)


if __name__ == "__main__":
    main()
