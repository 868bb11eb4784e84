#!/usr/bin/python3
"""The peer for bench/dbm.c: dogpile.cache's dbm region on the same workload
(get hit, set; N keys, V-byte values, one thread) with its default lock
files, on a file in DIR.  Run with Debian's /usr/bin/python3 and
python3-dogpile.cache.  Prints one line per op: `op ops_per_second`.
Usage: dogpile_dbm.py DIR [keys] [value_size] [seconds]"""
import os
import sys
import time

from dogpile.cache import make_region


def main():
    directory = sys.argv[1]
    keys = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    region = make_region().configure(
        "dogpile.cache.dbm", expiration_time=600,
        arguments={"filename": os.path.join(directory, "dogpile-bench.db")})
    names = ["key:%d" % i for i in range(keys)]
    value = b"x" * size
    for k in names:
        region.set(k, value)

    def run(op):
        n = 0
        end = time.perf_counter() + seconds
        start = time.perf_counter()
        while True:
            # 1000 ops between clock reads keeps timing out of the rate
            chunk = names[(n % keys):(n % keys) + 1000]
            for k in chunk:
                op(k)
            n += len(chunk)
            if time.perf_counter() >= end:
                break
        return n / (time.perf_counter() - start)

    print("get %.0f" % run(region.get))
    print("set %.0f" % run(lambda k: region.set(k, value)))


if __name__ == "__main__":
    main()
