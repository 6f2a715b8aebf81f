/*
 * plan.h -- the pure decisions of replication, kept apart from I/O so that
 * they can be tested on their own (tests/unit_replica.c):
 *
 *   - which databases of a replica to drop or rename so that its names
 *     match the primary's (repl_plan_names);
 *   - where to start streaming a database to a replica: nothing to do,
 *     records after its TXID (if the primary's log still holds them), or a
 *     snapshot (repl_plan_start);
 *   - how far the archiver may prune a log while replicas still read it,
 *     within replication.max-retain bytes (repl_retain_point);
 *   - the replica's reconnect backoff (repl_backoff_next).
 *
 * No locks, no allocation except repl_plan_names' output.
 */
#ifndef REPL_PLAN_H
#define REPL_PLAN_H

#include <stddef.h>
#include <stdint.h>

/* One database as a side sees it: name, ID, position. */
struct repl_pos {
    char name[1024];     /* name relative to the mount root */
    uint8_t id[16];      /* database ID */
    uint64_t txid;       /* last TXID it holds (0: none) */
    uint64_t cksum;      /* database checksum after it */
    int resync;          /* replica: its copy failed to apply; it asks for a snapshot */
};

/* What a replica must do to its names before records flow. */
enum repl_name_op { RN_DROP = 1, RN_RENAME = 2 };

struct repl_name_action {
    enum repl_name_op op;  /* RN_DROP: delete name; RN_RENAME: name -> to */
    char name[1024];
    char to[1024];
};

/* Compare the replica's databases rep[0..nrep) with the primary's
 * prim[0..nprim) (by ID, then name) and list in *out (malloc'ed, caller
 * frees; NULL when none) the DROPs and RENAMEs, in the order they must
 * be applied, that leave every replica database either under the
 * primary's name of the same ID or gone:
 *   - a replica database whose ID the primary has under the same name stays;
 *   - one whose ID the primary has under another name is renamed there,
 *     unless that name stays occupied (by a replica database kept or
 *     renamed there first): then it is dropped (and re-sent);
 *   - every other one is dropped (the primary deleted it, or it is another
 *     database under a name the primary reuses).
 * rep is updated in place to the state after the actions (renamed names;
 * dropped entries get name[0] = 0).  0 or LV_ENOMEM. */
int repl_plan_names(struct repl_pos *rep, size_t nrep, const struct repl_pos *prim, size_t nprim,
                    struct repl_name_action **out, size_t *nout);

/* How to bring one database of a replica up to the primary. */
enum repl_start {
    RST_WAIT = 0,     /* nothing to send yet (the primary logged nothing, or the replica is current) */
    RST_RECORDS = 1,  /* records from *from (the caller checks the log still holds them, else snapshot) */
    RST_SNAPSHOT = 2, /* the replica's copy cannot continue: send an image */
};

/* Decide for the primary's database prim and the replica's copy rep
 * (NULL when the replica lacks it; same name and ID otherwise).  For
 * RST_RECORDS, *from is the first TXID to send: the caller reads the
 * primary's log from there and sends records only if the first one it
 * finds continues the replica's copy (repl_continues); otherwise (pruned,
 * or another history) a snapshot. */
enum repl_start repl_plan_start(const struct repl_pos *prim, const struct repl_pos *rep, uint64_t *from);

/* Does the record of header h continue a copy at TXID txid whose checksum
 * is cksum?  Its TXID must be txid + 1 and its pre checksum cksum (a copy
 * at TXID 0 is empty: any TXID 1 record continues it; a SNAPSHOT record
 * at txid + 1 continues anything, since it replaces every page).  This is
 * the primary's log agreeing with the replica's record of TXID txid: by
 * the chain invariant, that record's post checksum is h's pre checksum. */
struct txlog_hdr;
int repl_continues(const struct txlog_hdr *h, uint64_t txid, uint64_t cksum);

/* A segment of a local log: first TXID and size in bytes. */
struct repl_seg {
    uint64_t first;
    uint64_t bytes;
};

/* The archiver would prune the log made of segs[0..n) (sorted by first
 * TXID; the last one is never pruned) up to TXID upto; connected replicas
 * still need the records after want (want < upto).  Returns the prune
 * point to use: want, moved forward (never past upto) only as far as
 * needed for the segments kept for replicas alone to hold at most
 * max_bytes.  *cut (may be NULL) is set to 1 when want had to move. */
uint64_t repl_retain_point(const struct repl_seg *segs, size_t n, uint64_t upto, uint64_t want,
                           uint64_t max_bytes, int *cut);

#define REPL_BACKOFF_MIN_US 100000    /* first retry after 100 ms */
#define REPL_BACKOFF_MAX_US 5000000   /* doubling up to 5 s */

/* The delay before the next reconnect attempt after one of cur_us (0:
 * the first failure): 100 ms, doubling, at most 5 s. */
int64_t repl_backoff_next(int64_t cur_us);

#endif /* REPL_PLAN_H */
