#!/usr/bin/python3
"""The peer for bench/refresh.c: dogpile.cache's get_or_create on one hot
key, memory backend, expiration_time 1 s, a 10 ms creator, N threads for S
seconds, with async_creation_runner (dogpile's background regeneration: a
thread per regeneration, the callers get the old value meanwhile).  Run with
Debian's /usr/bin/python3.  Prints `dogpile_async p50_us p99_us max_us calls
creator_runs_in_callers`."""
import sys
import threading
import time

from dogpile.cache import make_region

in_callers = 0
count_lock = threading.Lock()
local = threading.local()


def creator():
    global in_callers
    if getattr(local, "caller", False):
        with count_lock:
            in_callers += 1
    time.sleep(0.010)
    return b"payload!"


def async_runner(cache, somekey, creator, mutex):
    """dogpile's documented pattern: regenerate in a thread of its own."""
    def runner():
        try:
            value = creator()
            cache.set(somekey, value)
        finally:
            mutex.release()
    threading.Thread(target=runner).start()


def main():
    global in_callers
    nthreads = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    region = make_region(async_creation_runner=async_runner).configure(
        "dogpile.cache.memory", expiration_time=1)
    region.get_or_create("hot", creator)          # the first fill
    in_callers = 0
    lat = [[] for _ in range(nthreads)]
    end = time.perf_counter() + seconds

    def work(mine):
        local.caller = True
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            region.get_or_create("hot", creator)
            mine.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=work, args=(lat[i],)) for i in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    allv = sorted(x for l in lat for x in l)
    n = len(allv)
    print("dogpile_async %.1f %.1f %.1f %d %d" % (allv[n // 2] * 1e6, allv[int(n * 0.99)] * 1e6,
                                                  allv[-1] * 1e6, n, in_callers))


if __name__ == "__main__":
    main()
