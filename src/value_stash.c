/* The blocks of values a thread gave back with cachet_free(), kept for
 * the next value a get hands it.
 *
 * A get hit on the memory backend is a malloc, a memcpy and, in the
 * caller's cachet_free(), a free: glibc's malloc and free were 130 of the
 * 627 instructions of a whole get (callgrind, bench/region_gets).  A
 * thread that gets and frees values in turn -- what a service does with a
 * cached value -- reuses its own last blocks instead, for about 20.
 *
 * The blocks are ordinary malloc() blocks, so whoever ends up holding one
 * may free() it: the plugin ABI's rule (a value comes from malloc and its
 * taker frees it with free) stands, and a plugin that mallocs its values
 * itself is as right as before.  This is not an allocator: a few blocks a
 * thread, of one size class, taken back in LIFO order; glibc does the rest.
 *
 * Bounds: at most STASH_BLOCKS blocks of at most STASH_MAX_BLOCK bytes a
 * thread (8 KiB), freed when the thread exits.  If libcachet is unloaded
 * (dlclose) while other threads live, their stashes (8 KiB each at most)
 * are lost: their destructor must not run code that is gone.
 *
 * Under AddressSanitizer the stash is off, so that a use after
 * cachet_free() is still reported. */
#include "config.h"
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "value.h"

#if defined(__SANITIZE_ADDRESS__)
#define STASH_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STASH_OFF 1
#endif
#endif

#define STASH_BLOCKS    4
#define STASH_MAX_BLOCK 2048

/* What a kept block holds at its start (a value block is always at least
 * the 40-byte header, so this fits). */
typedef struct kept {
    struct kept *next;
    size_t       cap;           /* malloc_usable_size */
} kept;

enum { UNREGISTERED, REGISTERED, CLOSED };

/* initial-exec: a get must not call __tls_get_addr; 16 bytes fit the
 * static TLS surplus a dlopen()ed libcachet can count on (src/error.c). */
static _Thread_local struct {
    kept    *head;
    unsigned char n, state;
} stash __attribute__((tls_model("initial-exec")));

static pthread_key_t  stash_key;
static int            stash_key_ok;
static pthread_once_t stash_once = PTHREAD_ONCE_INIT;

static void stash_drain(void)
{
    kept *k = stash.head;
    stash.head = NULL;
    stash.n = 0;
    while (k) {
        kept *next = k->next;
        free(k);
        k = next;
    }
}

/* pthread's destructor at thread exit: what the thread kept goes back,
 * and what it frees after this (a later destructor) goes straight to free. */
static void stash_thread_exit(void *unused)
{
    (void)unused;
    stash_drain();
    stash.state = CLOSED;
}

static void stash_init(void)
{
    stash_key_ok = pthread_key_create(&stash_key, stash_thread_exit) == 0;
}

__attribute__((destructor)) static void stash_fini(void)
{
    if (stash_key_ok) {
        pthread_key_delete(stash_key);    /* no destructor runs after this */
        stash_key_ok = 0;
    }
    stash_drain();
    stash.state = CLOSED;
}

/* The first block this thread keeps: registers the exit destructor. */
static __attribute__((noinline)) int stash_register(void)
{
    pthread_once(&stash_once, stash_init);
    if (!stash_key_ok || pthread_setspecific(stash_key, &stash) != 0) {
        stash.state = CLOSED;
        return 0;
    }
    stash.state = REGISTERED;
    return 1;
}

void cachet__value_block_free(void *block)
{
#ifndef STASH_OFF
    if (block && stash.n < STASH_BLOCKS && stash.state != CLOSED) {
        size_t cap = malloc_usable_size(block);
        if (cap >= sizeof(kept) && cap <= STASH_MAX_BLOCK &&
            (stash.state == REGISTERED || stash_register())) {
            kept *k = block;
            k->next = stash.head;
            k->cap = cap;
            stash.head = k;
            stash.n++;
            return;
        }
    }
#endif
    free(block);
}

/* Inline in both exported functions: a call between them would go
 * through the PLT (they are exported, so interposable). */
static inline __attribute__((always_inline)) void *stash_alloc(size_t n)
{
#ifndef STASH_OFF
    kept *k = stash.head;
    /* the last block kept, if it fits and is not much too big (a small
     * value must not pin a large block) */
    if (k && k->cap >= n && k->cap <= 2 * n + 64) {
        stash.head = k->next;
        stash.n--;
        return k;
    }
#endif
    return malloc(n);
}

CACHET_EXPORT void *cachet_backend_value_alloc(size_t n)
{
    return stash_alloc(n);
}

/* One call a get where the backend had two (alloc and memcpy), and none
 * of the backend's registers to keep across a second one.
 *
 * The region reads the copy's first bytes, its value header, a few
 * instructions after the copy.  glibc's memcpy writes a 129-256 byte copy
 * as two overlapping runs of 32-byte stores, so a header field can
 * straddle two stores, and a load that needs bytes of two stores in
 * flight waits until both reach the cache (store-to-load forwarding
 * fails).  The header's 40 bytes are written with 8-byte moves first, so
 * that each of the region's loads is served by one store: 2.5 ns of a 44
 * ns memory-backend get hit (bench/region_gets, docs/benchmarks.md).
 * Unrolled: gcc -O2 kept the five moves a loop, 16 more instructions a
 * get (callgrind: 492 -> 476 a get). */
CACHET_EXPORT void *cachet_backend_value_copy(const void *bytes, size_t n)
{
    char *v = n < SIZE_MAX ? stash_alloc(n + 1) : NULL;
    if (!v)
        return NULL;
    v[n] = '\0';
    if (n < CACHET_VALUE_HDR)
        return n ? memcpy(v, bytes, n) : v;
#pragma GCC unroll 5
    for (size_t i = 0; i < CACHET_VALUE_HDR; i += 8) {
        uint64_t w;
        memcpy(&w, (const char *)bytes + i, 8);
        memcpy(v + i, &w, 8);
    }
    memcpy(v + CACHET_VALUE_HDR, (const char *)bytes + CACHET_VALUE_HDR, n - CACHET_VALUE_HDR);
    return v;
}
