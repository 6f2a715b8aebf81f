/*
 * fetch.h -- parallel, bounded, in-order download of archive objects.
 *
 * The caller lists the objects (key, expected size and XXH3-64) in the
 * order it will consume them.  N worker threads download them with
 * store_get, at most `window` objects ahead of the consumer and within a
 * byte budget counted beyond the object being consumed, and
 * verify size and XXH3 against the expected values.  The consumer takes
 * object i with fetch_wait(i) (in order), uses the bytes, then calls
 * fetch_release(i), which frees them and lets the workers move on.  So at
 * most the object being consumed plus `budget` bytes are held at once.
 *
 * Ownership: the fetcher owns the buffers until fetch_release; keys are
 * copied.  The store is borrowed (it is thread-safe).
 */
#ifndef FETCH_H
#define FETCH_H

#include <stddef.h>
#include <stdint.h>

struct store;
struct fetch;

/* One object to fetch (input). */
struct fetch_obj {
    const char *key;   /* full store key (copied) */
    uint64_t size;     /* expected bytes */
    uint64_t xxh3;     /* expected XXH3-64 (seed 0) */
};

/* Result of one object (borrowed from the fetcher until fetch_release). */
struct fetch_res {
    int rc;            /* 0; LV_ENOENT missing; LV_EMISMATCH size or checksum differs (buf kept);
                          other LV_E* download failure */
    const char *key;   /* the key */
    const void *buf;   /* object bytes (NULL if none) */
    size_t len;        /* their length */
    const char *err;   /* message naming the key when rc != 0 */
};

/* Progress counters (snapshot). */
struct fetch_progress {
    uint64_t bytes_done;   /* bytes downloaded so far, counted per chunk as they arrive */
    uint64_t bytes_total;  /* expected bytes of all objects */
    size_t objs_done;      /* objects downloaded */
    size_t objs_total;     /* objects */
};

/* Start fetching n objects with `parallel` workers (>= 1), `window`
 * objects ahead (0: 2 * parallel) and a byte budget (0: 256 MiB).  *out is
 * freed by fetch_stop.  0 or LV_ENOMEM / LV_EIO (thread creation). */
int fetch_start(struct store *st, const struct fetch_obj *objs, size_t n, int parallel, size_t window,
                uint64_t budget, struct fetch **out);

/* Wait for object i (the next unreleased one) up to timeout_ms (-1: no
 * limit).  1 with *res filled when it is ready, 0 on timeout. */
int fetch_wait(struct fetch *f, size_t i, int timeout_ms, struct fetch_res *res);

/* Done with object i: free its bytes, let the workers continue. */
void fetch_release(struct fetch *f, size_t i);

/* Objects larger than bytes (0: the default, 8 MiB) are downloaded in
 * ranged requests of that size, counted in bytes_done as each arrives.
 * Process-wide; set before fetch_start (tests use small chunks). */
void fetch_set_chunk(size_t bytes);

/* Current progress (bytes_done moves during a large object's download). */
void fetch_get_progress(struct fetch *f, struct fetch_progress *p);

/* Stop the workers (pending downloads finish first), join them, free everything. */
void fetch_stop(struct fetch *f);

#endif /* FETCH_H */
