/*
 * fetch.c -- parallel in-order object download for restore and verify.
 *
 * Slots move  QUEUED -> RUNNING (a worker downloads) -> DONE -> RELEASED.
 * Workers take slots in index order.  A worker may start slot i only when
 *   i < released + window                       (bounded look-ahead), and
 *   i == released or ahead + size(i) <= budget  (bounded bytes in memory),
 * where `released` counts slots released by the consumer (slot `released`
 * is the one being consumed or awaited), `held` sums the sizes of started,
 * unreleased slots and `ahead` is held minus the size of slot `released`
 * if started.  The consumer waits for slot `released` (in order), which is
 * always admissible: no deadlock.  Memory stays within the object being
 * consumed plus the budget, and a large object (a snapshot) does not stop
 * the small ones behind it from downloading while it is applied.
 *
 * Invariants (assert_fetch_state, checked at every transition, as SQLite's
 * assert_pager_state):
 *   F1. released <= next <= n.
 *   F2. slots [next, n) are QUEUED; slots [0, released) are RELEASED (the
 *       consumer releases in order: fetch_release(i) only for i == released).
 *   F3. slots [released, next) are RUNNING or DONE, and held is the sum of
 *       their sizes.
 *   F4. a slot is DONE or RELEASED once its rc, buf and len are final; buf
 *       is NULL once RELEASED.
 *   F5. bytes_done counts bytes as they arrive: an object larger than one
 *       chunk (fetch_set_chunk, 8 MiB) is fetched in ranged requests and
 *       each counts when it lands, so the progress bar moves during a big
 *       snapshot instead of jumping when it ends.
 * Transitions: worker_main QUEUED->RUNNING->DONE, fetch_release
 * DONE->RELEASED.
 *
 * Threads: the downloaders are worker.h workers (checked start, named
 * threads); they wait for work on cv, not in worker_nap, so fetch_stop sets
 * stop, broadcasts, and then stops (joins) each worker.
 *
 * Locking: one mutex (mu) guards every field below it in struct fetch;
 * one condition variable (cv, on CLOCK_MONOTONIC: lv_cond_init) is
 * broadcast on every state change.  store_get runs without the lock.
 */
#include "restore/fetch.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "base/lv.h"
#include "base/worker.h"
#include "store/store.h"

enum { SLOT_QUEUED = 0, SLOT_RUNNING, SLOT_DONE, SLOT_RELEASED };

struct slot {
    char *key;          /* full key (owned; immutable after start) */
    uint64_t size;      /* expected size (immutable) */
    uint64_t xxh3;      /* expected checksum (immutable) */
    int state;          /* SLOT_* (mu) */
    int rc;             /* result (mu, written before DONE) */
    void *buf;          /* bytes (owned; mu) */
    size_t len;         /* their length */
    char err[512];      /* message when rc != 0 */
};

struct fetch {
    struct store *st;        /* store (borrowed, thread-safe) */
    struct worker **th;      /* downloaders (fetch_start/fetch_stop) */
    int nth;                 /* downloaders started */
    size_t n;                /* slots */
    size_t window;           /* look-ahead in objects */
    uint64_t budget;         /* byte budget */
    pthread_mutex_t mu;      /* guards everything below */
    pthread_cond_t cv;       /* broadcast on every change */
    struct slot *slots;      /* n slots */
    size_t next;             /* next slot to start */
    size_t released;         /* slots 0..released-1 are released */
    uint64_t held;           /* bytes of started, unreleased slots */
    uint64_t bytes_done;     /* downloaded bytes */
    uint64_t bytes_total;    /* expected total */
    size_t objs_done;        /* downloaded objects */
    int stop;                /* 1: workers exit */
};

/* Bytes per ranged request of a large object (fetch_set_chunk). */
static size_t g_chunk = 8u << 20;

void fetch_set_chunk(size_t bytes) { g_chunk = bytes ? bytes : 8u << 20; }

/* n more bytes of s have arrived: count them for the progress bar (F5). */
static void count_bytes(struct fetch *f, size_t n)
{
    pthread_mutex_lock(&f->mu);
    f->bytes_done += n;
    pthread_mutex_unlock(&f->mu);
}

/* s in one request, counted when it lands. */
static int download_whole(struct fetch *f, struct slot *s, void **bufp, size_t *lenp)
{
    int rc = store_get(f->st, s->key, 0, 0, bufp, lenp);

    if (rc == 0)
        count_bytes(f, *lenp);
    return rc;
}

/* Download s into *bufp and *lenp: in one request when it is at most one
 * chunk, else in ranged requests of one chunk each, counted as they
 * arrive (F5).  An object whose size is not the manifest's (store_head),
 * or that changes while it is read, is read whole as before, so the size
 * check and --allow-partial's salvage see all its bytes.  0 or the
 * store's error. */
static int download_bytes(struct fetch *f, struct slot *s, void **bufp, size_t *lenp)
{
    struct store_obj info = {0};
    uint64_t off = 0, counted = 0;
    char *buf = NULL;
    int rc;

    if (s->size <= g_chunk)
        return download_whole(f, s, bufp, lenp);
    rc = store_head(f->st, s->key, &info);
    if (rc == LV_ENOENT)
        return rc;
    if (rc || info.size != s->size)
        return download_whole(f, s, bufp, lenp);
    buf = malloc(s->size);
    if (!buf)
        return LV_ENOMEM;
    while (off < s->size) {
        uint64_t want = s->size - off < g_chunk ? s->size - off : g_chunk;
        void *piece = NULL;
        size_t plen = 0;
        rc = store_get(f->st, s->key, off, want, &piece, &plen);
        if (rc == 0 && plen == want)
            memcpy(buf + off, piece, plen);
        free(piece);
        if (rc || plen != want)
            goto out_whole;
        off += plen;
        count_bytes(f, plen);
    }
    *bufp = buf;
    *lenp = (size_t)off;
    return 0;
out_whole:
    free(buf);
    if (rc == LV_ENOENT)
        return rc;
    counted = off; /* read it again whole; do not count those bytes twice */
    pthread_mutex_lock(&f->mu);
    f->bytes_done -= counted;
    pthread_mutex_unlock(&f->mu);
    return download_whole(f, s, bufp, lenp);
}

static void download(struct fetch *f, struct slot *s)
{
    void *buf = NULL;
    size_t len = 0;
    int rc = download_bytes(f, s, &buf, &len);

    if (rc == LV_ENOENT) {
        snprintf(s->err, sizeof s->err, "object %s is missing from the store", s->key);
    } else if (rc) {
        snprintf(s->err, sizeof s->err, "object %s: download failed: %s (%s)", s->key, lv_strerror(rc),
                 store_last_error(f->st) ? store_last_error(f->st) : "");
    } else if (len != s->size) {
        rc = LV_EMISMATCH;
        snprintf(s->err, sizeof s->err, "object %s: size %zu differs from the manifest's %" PRIu64, s->key, len,
                 s->size);
    } else {
        uint64_t h = XXH3_64bits(buf, len);
        if (h != s->xxh3) {
            rc = LV_EMISMATCH;
            snprintf(s->err, sizeof s->err, "object %s: XXH3 %016" PRIx64 " differs from the manifest's %016" PRIx64,
                     s->key, h, s->xxh3);
        }
    }
    s->rc = rc;
    s->buf = buf;
    s->len = len;
}

/* F1-F4 of the design comment, over the window [released, next]; mu held.
 * Compiled out of release builds. */
static void assert_fetch_state(const struct fetch *f)
{
#if LV_ASSERTS
    uint64_t held = 0;

    LV_ASSERT(f->released <= f->next && f->next <= f->n); /* F1 */
    LV_ASSERT(f->next == f->n || f->slots[f->next].state == SLOT_QUEUED); /* F2 */
    LV_ASSERT(f->released == 0 || f->slots[f->released - 1].state == SLOT_RELEASED); /* F2 */
    for (size_t i = f->released; i < f->next; i++) {
        const struct slot *s = &f->slots[i];
        LV_ASSERT(s->state == SLOT_RUNNING || s->state == SLOT_DONE); /* F3 */
        held += s->size;
    }
    LV_ASSERT(held == f->held); /* F3 */
#else
    LV_UNUSED(f);
#endif
}

/* Whether slot f->next may start now (rules above); called with mu held. */
static int admissible(const struct fetch *f)
{
    uint64_t ahead = f->held;

    if (f->next >= f->released + f->window)
        return 0;
    if (f->next == f->released)
        return 1;
    if (f->released < f->n && f->slots[f->released].state != SLOT_QUEUED)
        ahead -= f->slots[f->released].size;
    return ahead + f->slots[f->next].size <= f->budget;
}

static void worker_main(struct worker *w, void *arg)
{
    struct fetch *f = arg;

    LV_UNUSED(w);
    pthread_mutex_lock(&f->mu);
    for (;;) {
        struct slot *s;

        while (!f->stop && f->next < f->n && !admissible(f))
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->stop || f->next >= f->n)
            break;
        s = &f->slots[f->next++];
        LV_ASSERT(s->state == SLOT_QUEUED);
        s->state = SLOT_RUNNING;
        f->held += s->size;
        assert_fetch_state(f);
        pthread_mutex_unlock(&f->mu);
        download(f, s);
        pthread_mutex_lock(&f->mu);
        LV_ASSERT(s->state == SLOT_RUNNING);
        s->state = SLOT_DONE;
        f->objs_done++; /* its bytes were counted as they arrived (F5) */
        assert_fetch_state(f);
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
}

int fetch_start(struct store *st, const struct fetch_obj *objs, size_t n, int parallel, size_t window,
                uint64_t budget, struct fetch **out)
{
    struct fetch *f;
    size_t i;
    int t;

    *out = NULL;
    if (parallel < 1)
        parallel = 1;
    f = calloc(1, sizeof *f);
    if (!f)
        return LV_ENOMEM;
    f->st = st;
    f->n = n;
    f->window = window ? window : 2 * (size_t)parallel;
    f->budget = budget ? budget : 256ull << 20;
    f->slots = calloc(n ? n : 1, sizeof *f->slots);
    f->th = calloc((size_t)parallel, sizeof *f->th);
    pthread_mutex_init(&f->mu, NULL);
    if (lv_cond_init(&f->cv) != 0 || !f->slots || !f->th)
        goto out_nomem;
    for (i = 0; i < n; i++) {
        f->slots[i].key = strdup(objs[i].key);
        if (!f->slots[i].key)
            goto out_nomem;
        f->slots[i].size = objs[i].size;
        f->slots[i].xxh3 = objs[i].xxh3;
        f->bytes_total += objs[i].size;
    }
    for (t = 0; t < parallel && (size_t)t < (n ? n : 1); t++) {
        if (worker_start("lv-fetch", worker_main, f, &f->th[t]) != 0) {
            fetch_stop(f);
            return LV_EIO;
        }
        f->nth++;
    }
    *out = f;
    return 0;
out_nomem:
    fetch_stop(f);
    return LV_ENOMEM;
}

int fetch_wait(struct fetch *f, size_t i, int timeout_ms, struct fetch_res *res)
{
    int64_t deadline = lv_mono_us() + (int64_t)timeout_ms * 1000;
    int ready;

    pthread_mutex_lock(&f->mu);
    LV_ASSERT(i == f->released); /* F2: in order */
    while (f->slots[i].state != SLOT_DONE) {
        if (timeout_ms < 0)
            pthread_cond_wait(&f->cv, &f->mu);
        else if (lv_cond_wait_us(&f->cv, &f->mu, deadline - lv_mono_us()) == ETIMEDOUT)
            break;
    }
    ready = f->slots[i].state == SLOT_DONE;
    if (ready) {
        struct slot *s = &f->slots[i];
        res->rc = s->rc;
        res->key = s->key;
        res->buf = s->buf;
        res->len = s->len;
        res->err = s->err;
    }
    pthread_mutex_unlock(&f->mu);
    return ready;
}

void fetch_release(struct fetch *f, size_t i)
{
    pthread_mutex_lock(&f->mu);
    if (f->slots[i].state == SLOT_DONE) {
        LV_ASSERT(i == f->released); /* F2: in order */
        free(f->slots[i].buf);
        f->slots[i].buf = NULL;
        f->slots[i].state = SLOT_RELEASED;
        f->held -= f->slots[i].size;
        if (i + 1 > f->released)
            f->released = i + 1;
        assert_fetch_state(f);
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
}

void fetch_get_progress(struct fetch *f, struct fetch_progress *p)
{
    pthread_mutex_lock(&f->mu);
    p->bytes_done = f->bytes_done;
    p->bytes_total = f->bytes_total;
    p->objs_done = f->objs_done;
    p->objs_total = f->n;
    pthread_mutex_unlock(&f->mu);
}

void fetch_stop(struct fetch *f)
{
    size_t i;
    int t;

    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    for (t = 0; t < f->nth; t++)
        worker_stop(f->th[t]);
    for (i = 0; f->slots && i < f->n; i++) {
        free(f->slots[i].key);
        free(f->slots[i].buf);
    }
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f->slots);
    free(f->th);
    free(f);
}
