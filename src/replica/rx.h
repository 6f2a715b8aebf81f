/*
 * rx.h -- the replica's receiving side: decoded frames in, applies out.
 *
 * RECORD frames are batched per database and applied with one
 * dbreg_apply per batch; a batch that readers keep out (LV_EBUSY) waits
 * while the other databases go on, within a memory bound the caller
 * enforces (repl_rx_pending).  SNAP_*, DROP and RENAME are applied in
 * stream order.  Lag and state per database are kept for /status and
 * /health.  Design: rx.c.
 *
 * What rx drives is a sink (struct repl_sink): the registry's replication
 * calls in the daemon (repl_sink_dbreg), fakes in tests.
 *
 * Threads: one thread drives an rx (the replica's worker); repl_rx_stats
 * may be called from any thread.
 */
#ifndef REPL_RX_H
#define REPL_RX_H

#include <stddef.h>
#include <stdint.h>

#include "capture/db.h"
#include "replica/stream.h"

/* The calls rx makes (arg is the first argument of each). */
struct repl_sink {
    int (*apply)(void *arg, const char *name, const struct db_rec *recs, size_t n, int wait_ms,
                 struct db_apply_stats *st, char *err, size_t errlen);
    int (*snap_begin)(void *arg, const char *name, const struct db_image_info *info, struct db_snap **out,
                      char *err, size_t errlen);
    int (*snap_pages)(void *arg, struct db_snap *s, uint32_t first_pgno, uint32_t count, const void *pages,
                      char *err, size_t errlen);
    int (*snap_end)(void *arg, struct db_snap *s, int wait_ms, char *err, size_t errlen);
    void (*snap_abort)(void *arg, struct db_snap *s);
    int (*drop)(void *arg, const char *name, char *err, size_t errlen);
    int (*rename)(void *arg, const char *from, const char *to, char *err, size_t errlen);
    void *arg;
};

/* The sink that applies to registry reg (dbreg_apply, dbreg_snap_*, ...). */
void repl_sink_dbreg(struct dbreg *reg, struct repl_sink *out);

struct repl_rx_opts {
    int wait_ms;          /* replication.apply-wait: per attempt, how long readers may keep SQLite's locks */
    size_t batch_max;     /* memory of one database's batch applied in one call: its records as received
                           * plus their pages decoded (0: 16 MiB) */
};

struct repl_rx;

/* A receiver over sink s (copied).  0 or LV_ENOMEM. */
int repl_rx_new(const struct repl_sink *s, const struct repl_rx_opts *o, struct repl_rx **out);

/* A new session begins: pending records are dropped and snapshots being
 * received aborted (the primary resends from the replica's positions);
 * each database of positions (the registry's, dbreg_list) becomes
 * "applied up to its TXID".  Databases that asked for a snapshot keep
 * asking.  0 or LV_ENOMEM. */
int repl_rx_session(struct repl_rx *x, const struct db_info *positions, size_t n);

/* Take one decoded frame (RECORD, SNAP_*, DROP, RENAME, HEARTBEAT; the
 * caller handles HELLO and ERROR).  0, or negative when the session must
 * end (a protocol violation, an apply that cannot continue this
 * replica's copy: that database then asks for a snapshot on the next
 * session), with a message naming the database in err. */
int repl_rx_frame(struct repl_rx *x, const struct stream_frame *f, char *err, size_t errlen);

/* Apply what is pending: every database whose batch is due (a batch kept
 * out by readers is tried again after wait_ms; with force, at once).
 * 0 or negative as for repl_rx_frame. */
int repl_rx_flush(struct repl_rx *x, int force, char *err, size_t errlen);

/* Record bytes received and not applied yet, all databases. */
size_t repl_rx_pending(const struct repl_rx *x);

/* Did database name ask for a snapshot (an apply could not continue its copy)? */
int repl_rx_resync(const struct repl_rx *x, const char *name);

/* Where one database stands. */
struct repl_rx_stat {
    char name[1024];
    uint64_t txid;          /* last TXID applied */
    uint64_t recv_txid;     /* last TXID received (the primary's latest known) */
    int64_t lag_us;         /* see rx.c, LAG */
    const char *state;      /* "streaming", "applying", "waiting-for-readers", "snapshot", "error" */
    char error[256];        /* state "error": why */
    uint64_t records;       /* records applied */
    uint64_t busy;          /* applies kept out by readers */
    int64_t lock_wait_us;   /* time spent waiting for SQLite's locks, total */
};

/* Every database's state at wall-clock time now_us into *out (malloc'ed,
 * caller frees; sorted by name) and *n.  0 or LV_ENOMEM. */
int repl_rx_stats(struct repl_rx *x, int64_t now_us, struct repl_rx_stat **out, size_t *n);

/* Counters since start: records applied, bytes received by kind. */
struct repl_rx_totals {
    uint64_t records;
    uint64_t snapshots;
    uint64_t busy;
};
void repl_rx_totals(struct repl_rx *x, struct repl_rx_totals *t);

/* Free (aborts snapshots being received).  NULL is fine. */
void repl_rx_free(struct repl_rx *x);

#endif /* REPL_RX_H */
