/* See evict_sim.h.  Every structure is an array indexed by key id, so the
 * simulations are exact (no hashing, no fingerprints) and fast. */
#include <stdlib.h>
#include <string.h>
#include "evict_sim.h"

#define NONE UINT32_MAX

/* ---- LRU: a doubly linked list, most recent at the head ---- */

double sim_lru(const evict_trace *t, size_t cap)
{
    uint32_t *newer = malloc(t->max_id * sizeof *newer), *older = malloc(t->max_id * sizeof *older);
    unsigned char *in = calloc(t->max_id, 1);
    uint32_t head = NONE, tail = NONE;
    size_t size = 0, hits = 0;

    if (!newer || !older || !in) {
        free(newer), free(older), free(in);
        return -1;
    }
    for (size_t i = 0; i < t->n; i++) {
        uint32_t x = t->ids[i];
        if (in[x]) {
            hits++;
            if (head == x)
                continue;
            /* unlink, then to the head */
            /* x is not the head: it has a newer */
            if (older[x] != NONE)
                newer[older[x]] = newer[x];
            else
                tail = newer[x];
            older[newer[x]] = older[x];
        } else {
            if (size == cap) {
                uint32_t v = tail;
                tail = newer[v];
                if (tail != NONE)
                    older[tail] = NONE;
                else
                    head = NONE;
                in[v] = 0;
                size--;
            }
            in[x] = 1;
            size++;
        }
        newer[x] = NONE;
        older[x] = head;
        if (head != NONE)
            newer[head] = x;
        else
            tail = x;
        head = x;
    }
    free(newer), free(older), free(in);
    return (double)hits / (double)t->n;
}

/* ---- SIEVE: a FIFO list and a hand that walks it from the tail, clearing
 * visited bits, evicting the first unvisited ---- */

double sim_sieve(const evict_trace *t, size_t cap)
{
    uint32_t *newer = malloc(t->max_id * sizeof *newer), *older = malloc(t->max_id * sizeof *older);
    unsigned char *in = calloc(t->max_id, 1), *visited = calloc(t->max_id, 1);
    uint32_t head = NONE, tail = NONE, hand = NONE;
    size_t size = 0, hits = 0;

    if (!newer || !older || !in || !visited) {
        free(newer), free(older), free(in), free(visited);
        return -1;
    }
    for (size_t i = 0; i < t->n; i++) {
        uint32_t x = t->ids[i];
        if (in[x]) {
            hits++;
            visited[x] = 1;
            continue;
        }
        if (size == cap) {
            uint32_t o = hand != NONE ? hand : tail;
            while (visited[o]) {
                visited[o] = 0;
                o = newer[o] != NONE ? newer[o] : tail;
            }
            hand = newer[o];
            if (newer[o] != NONE)
                older[newer[o]] = older[o];
            else
                head = older[o];
            if (older[o] != NONE)
                newer[older[o]] = newer[o];
            else
                tail = newer[o];
            in[o] = 0;
            size--;
        }
        in[x] = 1;
        visited[x] = 0;
        size++;
        newer[x] = NONE;
        older[x] = head;
        if (head != NONE)
            newer[head] = x;
        else
            tail = x;
        head = x;
    }
    free(newer), free(older), free(in), free(visited);
    return (double)hits / (double)t->n;
}

/* ---- S3-FIFO ---- */

typedef struct {
    uint32_t *ring;
    size_t    cap, front, len;
} fifo;

static void fifo_push(fifo *q, uint32_t x)
{
    q->ring[(q->front + q->len++) % q->cap] = x;
}

static uint32_t fifo_pop(fifo *q)
{
    uint32_t x = q->ring[q->front];
    q->front = (q->front + 1) % q->cap;
    q->len--;
    return x;
}

typedef struct {
    const evict_trace *t;
    size_t         cap, small_cap, main_cap, ghost_cap;
    fifo           s, m;
    unsigned char *where;        /* 0 absent, 1 small, 2 main */
    unsigned char *freq;
    /* ghost: an exact FIFO of ids; gseq[id] is the id's insertion number
     * (0: not in the ghost), the ring keeps (id, number) pairs and skips
     * those taken out since */
    uint64_t      *gseq;
    uint32_t      *gring_id;
    uint64_t      *gring_seq;
    size_t         gfront, gback, glive;
    uint64_t       gnext;
} s3;

static void ghost_put(s3 *c, uint32_t x)
{
    if (c->ghost_cap == 0)
        return;
    if (c->glive == c->ghost_cap) {
        while (c->gseq[c->gring_id[c->gfront]] != c->gring_seq[c->gfront])
            c->gfront++;
        c->gseq[c->gring_id[c->gfront++]] = 0;
        c->glive--;
    }
    c->gring_id[c->gback] = x;
    c->gring_seq[c->gback++] = c->gseq[x] = ++c->gnext;
    c->glive++;
}

static int ghost_take(s3 *c, uint32_t x)
{
    if (!c->gseq[x])
        return 0;
    c->gseq[x] = 0;
    c->glive--;
    return 1;
}

static void evict_m(s3 *c)
{
    while (c->m.len) {
        uint32_t v = fifo_pop(&c->m);
        if (c->freq[v]) {
            c->freq[v]--;
            fifo_push(&c->m, v);
        } else {
            c->where[v] = 0;
            return;
        }
    }
}

static void evict_s(s3 *c)
{
    while (c->s.len) {
        uint32_t v = fifo_pop(&c->s);
        if (c->freq[v] >= 1) {
            c->freq[v] = 0;
            c->where[v] = 2;
            fifo_push(&c->m, v);
            if (c->m.len > c->main_cap) {
                evict_m(c);
                return;                 /* evict_m made room */
            }
        } else {
            c->where[v] = 0;
            ghost_put(c, v);
            return;
        }
    }
}

double sim_s3fifo(const evict_trace *t, size_t cap)
{
    s3 c = {.t = t, .cap = cap};
    size_t hits = 0;
    double r = -1;

    c.small_cap = cap / 10;
    c.main_cap = cap - c.small_cap;
    c.ghost_cap = c.main_cap;
    c.s.cap = c.m.cap = cap + 2;
    c.s.ring = malloc(c.s.cap * sizeof *c.s.ring);
    c.m.ring = malloc(c.m.cap * sizeof *c.m.ring);
    c.where = calloc(t->max_id, 1);
    c.freq = calloc(t->max_id, 1);
    c.gseq = calloc(t->max_id, sizeof *c.gseq);
    c.gring_id = malloc((t->n + 1) * sizeof *c.gring_id);
    c.gring_seq = malloc((t->n + 1) * sizeof *c.gring_seq);
    if (!c.s.ring || !c.m.ring || !c.where || !c.freq || !c.gseq || !c.gring_id || !c.gring_seq)
        goto out;
    for (size_t i = 0; i < t->n; i++) {
        uint32_t x = t->ids[i];
        if (c.where[x]) {
            hits++;
            if (c.freq[x] < 3)
                c.freq[x]++;
            continue;
        }
        while (c.s.len + c.m.len >= cap) {
            if (c.s.len >= c.small_cap && c.s.len)
                evict_s(&c);
            else
                evict_m(&c);
        }
        c.freq[x] = 0;
        if (ghost_take(&c, x)) {
            c.where[x] = 2;
            fifo_push(&c.m, x);
        } else {
            c.where[x] = 1;
            fifo_push(&c.s, x);
        }
    }
    r = (double)hits / (double)t->n;
out:
    free(c.s.ring), free(c.m.ring), free(c.where), free(c.freq), free(c.gseq);
    free(c.gring_id), free(c.gring_seq);
    return r;
}
