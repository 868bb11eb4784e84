#!/usr/bin/python3
"""The peer for bench/redis.c: dogpile.cache's redis backend (redis-py) on
the same workload: get hit, set, get_multi(100); 1000 keys, 100-byte
values, one thread.  Run with Debian's /usr/bin/python3 (python3-redis,
python3-dogpile.cache).  Usage: dogpile_redis.py PORT [SECONDS]
Prints `dogpile op ops_per_second cpu_us_per_op`."""
import sys
import time

from dogpile.cache import make_region


def main():
    port = int(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    region = make_region().configure(
        "dogpile.cache.redis", expiration_time=600,
        arguments={"url": "redis://127.0.0.1:%d/0" % port})
    names = ["dpbench:%d" % i for i in range(1000)]
    value = b"x" * 100
    for k in names:
        region.set(k, value)

    def run(name, op):
        n = 0
        start, c0 = time.perf_counter(), time.process_time()
        end = start + seconds
        while time.perf_counter() < end:
            for _ in range(200):
                op(n)
                n += 1
        el = time.perf_counter() - start
        print("dogpile %s %.0f %.2f" % (name, n / el, (time.process_time() - c0) * 1e6 / n))

    run("set", lambda i: region.set(names[i % 1000], value))
    run("get", lambda i: region.get(names[i % 1000]))
    run("get_multi100", lambda i: region.get_multi(
        [names[(i * 100 + k) % 1000] for k in range(100)]))


if __name__ == "__main__":
    main()
