#!/usr/bin/python3
"""The peer for bench/region.c: dogpile.cache's memory region on the same
workload (get hit, set, get_or_create hit; N keys, V-byte values, one
thread).  Run with Debian's /usr/bin/python3 and python3-dogpile.cache.
Prints two lines per op: `op ops_per_second` (wall time) and
`op_cpu ops_per_cpu_second` (process CPU time)."""
import sys
import time

from dogpile.cache import make_region


def main():
    keys = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    region = make_region().configure("dogpile.cache.memory", expiration_time=600)
    names = ["key:%d" % i for i in range(keys)]
    value = b"x" * size
    for k in names:
        region.set(k, value)

    def creator():
        return value

    def run(name, op):
        n = 0
        end = time.perf_counter() + seconds
        start = time.perf_counter()
        cpu0 = time.process_time()
        while True:
            # 1000 ops between clock reads keeps timing out of the rate
            chunk = names[(n % keys):(n % keys) + 1000]
            for k in chunk:
                op(k)
            n += len(chunk)
            if time.perf_counter() >= end:
                break
        # the rate per second of wall time, and per second of this
        # process's CPU time (steadier on a loaded machine)
        print("%s %.0f" % (name, n / (time.perf_counter() - start)))
        print("%s_cpu %.0f" % (name, n / (time.process_time() - cpu0)))

    run("get", region.get)
    run("set", lambda k: region.set(k, value))
    run("goc", lambda k: region.get_or_create(k, creator))


if __name__ == "__main__":
    main()
