/*
 * plan.h -- planning a restore from an archive manifest.
 *
 * A plan names the snapshot to start from (or the empty database, when the
 * archive holds the log from TXID 1) and the fewest segment objects that
 * cover the TXIDs after it up to the target, in apply order.  It does no
 * I/O; fetching and applying the objects is the caller's job.  Rules:
 * docs/FORMAT.md, "Planning a restore".
 *
 * Cost: O(log n) to pick the snapshot plus one pass over the (already
 * sorted) segments; nothing is sorted while planning.
 *
 * Ownership: a struct plan is the caller's; plan_make fills it and
 * plan_free releases the segment array.  The snapshot and segment
 * pointers are borrowed from the manifest and valid until it is modified
 * or freed.
 */
#ifndef PLAN_H
#define PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "archive/manifest.h"

enum plan_kind {
    PLAN_LATEST = 0, /* the last TXID in the archive */
    PLAN_TXID = 1,   /* the database as of TXID txid */
    PLAN_TIME = 2,   /* the database as of time_us: after the last commit at or before it */
};

struct plan_target {
    enum plan_kind kind; /* which of the fields below is used */
    uint64_t txid;       /* PLAN_TXID: target TXID, >= 1 */
    int64_t time_us;     /* PLAN_TIME: microseconds since the epoch */
};

#define PLAN_ALLOW_PARTIAL 0x1 /* on a coverage gap, plan up to the last TXID before it */

/* Why planning failed (plan.fail). */
enum plan_fail {
    PLAN_OK = 0,
    PLAN_FAIL_EMPTY,  /* no segments and no snapshots: LV_ENOENT */
    PLAN_FAIL_BEFORE, /* target before the earliest restorable point: LV_ENOENT */
    PLAN_FAIL_BEYOND, /* TXID target after the last TXID: LV_ENOENT */
    PLAN_FAIL_GAP,    /* no segment chain reaches the target: LV_EGAP, gap_first..gap_last */
    PLAN_FAIL_INVAL,  /* bad target (TXID 0, unknown kind): LV_EINVAL */
    PLAN_FAIL_NOMEM,  /* out of memory: LV_ENOMEM */
};

struct plan {
    const struct manifest_snap *snap;  /* snapshot to start from (borrowed); NULL: empty database */
    uint64_t start_txid;               /* snap->txid, or 0 for the empty database */
    const struct manifest_seg **segs;  /* segments in apply order (array owned, entries borrowed) */
    size_t nsegs;                      /* entries in segs */
    size_t objects;                    /* objects to fetch: nsegs + (snap != NULL) */
    uint64_t bytes;                    /* their total size */
    uint64_t target_txid;              /* last TXID to apply: exact, or the upper bound if resolve_by_time */
    uint64_t target_min_txid;          /* lower bound of the final TXID (== target_txid unless resolve_by_time) */
    int resolve_by_time;               /* 1: the boundary lies inside segs[nsegs-1]; while applying, stop
                                        * before the first record committed after time_us */
    int64_t time_us;                   /* PLAN_TIME target (copied), else 0 */
    int partial;                       /* 1: PLAN_ALLOW_PARTIAL cut the plan short at a gap */
    uint64_t gap_first, gap_last;      /* missing TXIDs when fail == PLAN_FAIL_GAP or partial */
    enum plan_fail fail;               /* PLAN_OK on success */
    char msg[256];                     /* why it failed / what partial left out, "" otherwise */
};

/* Plan a restore of m to *t.  flags: PLAN_ALLOW_PARTIAL.  Always fills *p
 * (call plan_free afterwards, also on failure).  0 on success, else
 * LV_ENOENT (empty, before, beyond), LV_EGAP (gap; p->gap_first/last name
 * the missing TXIDs), LV_EINVAL (bad target) or LV_ENOMEM, with p->fail and
 * p->msg set.  The manifest is trusted to satisfy manifest_check. */
int plan_make(const struct manifest *m, const struct plan_target *t, int flags, struct plan *p);

/* Release p's array and zero it. */
void plan_free(struct plan *p);

#endif /* PLAN_H */
