/*
 * plan.c -- restore planning: which snapshot and which segment objects to
 * fetch for a target (latest, a TXID, or a point in time).  Rules also in
 * docs/FORMAT.md, "Planning a restore".
 *
 * Inputs the manifest guarantees (manifest_check): segments sorted by
 * (first_txid, last_txid, level), snapshots by txid, and commit times
 * non-decreasing in TXID order, so snapshots are sorted by time as well.
 *
 * 1. Resolve the target to a goal TXID.
 *      latest: goal = last TXID of any segment or snapshot.
 *      txid N: goal = N (error if N is after the last TXID).
 *      time T: from the commit times the manifest knows (each segment's
 *        first and last record, each snapshot) take
 *          lo = largest known TXID committed at or before T,
 *          hi = (smallest known TXID committed after T) - 1, or the last TXID.
 *        The answer R, the last commit at or before T, lies in lo..hi.  If
 *        lo == hi it is exact.  Otherwise no known point lies in lo+1..hi,
 *        so one segment holds all of lo+1..hi (its first record is <= lo and
 *        its last > hi): the plan reaches hi and sets resolve_by_time; the
 *        applier stops before the first record committed after T.
 * 2. Start point: the newest snapshot with txid <= goal (for a time target:
 *    with time <= T; the same snapshot, times being monotonic), else the
 *    empty database (TXID 0) when a segment begins at TXID 1, else the
 *    target is before the earliest restorable point.
 * 3. Cover start+1..goal with the fewest segments (greedy interval cover,
 *    optimal for the count): with `next` the first TXID still needed, among
 *    segments with first_txid <= next <= last_txid take the one reaching
 *    farthest, reach counted up to goal so that among segments that finish
 *    the job the smallest wins; ties -> fewer bytes.  One pass: segments
 *    are visited in first_txid order and each is looked at once, because a
 *    segment passed over can never reach farther than the one chosen.
 *    If no segment holds `next`, TXIDs next..(start of the following
 *    segment - 1, at most goal) are missing: LV_EGAP, or with
 *    PLAN_ALLOW_PARTIAL a successful plan ending at next - 1.
 */
#include "restore/plan.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lv.h"

static void fail(struct plan *p, enum plan_fail why, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct plan *p, enum plan_fail why, const char *fmt, ...)
{
    va_list ap;

    p->fail = why;
    va_start(ap, fmt);
    vsnprintf(p->msg, sizeof p->msg, fmt, ap);
    va_end(ap);
}

/* Index of the first snapshot committed after t (snapshots are in time order). */
static size_t snap_after_time(const struct manifest *m, int64_t t)
{
    size_t lo = 0, hi = m->nsnaps;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->snaps[mid].time_us <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Bounds lo..hi of the last TXID committed at or before t (see step 1),
 * given the start point's TXID (already known to be committed <= t). */
static void time_bounds(const struct manifest *m, int64_t t, uint64_t start, uint64_t latest, uint64_t *lo,
                        uint64_t *hi)
{
    uint64_t l = start, after = latest + 1; /* smallest known TXID committed after t */
    size_t i, k;

    for (i = 0; i < m->nsegs; i++) {
        const struct manifest_seg *s = &m->segs[i];
        if (s->first_time_us <= t) {
            if (s->first_txid > l)
                l = s->first_txid;
        } else if (s->first_txid < after) {
            after = s->first_txid;
        }
        if (s->last_time_us <= t) {
            if (s->last_txid > l)
                l = s->last_txid;
        } else if (s->last_txid < after) {
            after = s->last_txid;
        }
    }
    k = snap_after_time(m, t);
    if (k > 0 && m->snaps[k - 1].txid > l)
        l = m->snaps[k - 1].txid;
    if (k < m->nsnaps && m->snaps[k].txid < after)
        after = m->snaps[k].txid;
    *lo = l;
    *hi = after - 1 < l ? l : after - 1; /* only a non-monotonic manifest could invert them */
}

static int push(struct plan *p, size_t *cap, const struct manifest_seg *s)
{
    if (lv_grow((void **)&p->segs, cap, p->nsegs, sizeof *p->segs, 8) != 0)
        return LV_ENOMEM;
    p->segs[p->nsegs++] = s;
    p->bytes += s->size;
    return 0;
}

/* Resolve a TXID target (PLAN_TXID, or PLAN_LATEST when latest): the
 * snapshot to start from into p->snap, the goal into *goal and *lo.  0 or
 * negative with p's failure set. */
static int plan_txid_target(const struct manifest *m, const struct plan_target *t, uint64_t latest, int have_empty,
                            struct plan *p, uint64_t *goal, uint64_t *lo)
{
    *goal = t->kind == PLAN_LATEST ? latest : t->txid;
    if (*goal == 0) {
        fail(p, PLAN_FAIL_INVAL, "TXID 0 is not a target (TXIDs start at 1)");
        return LV_EINVAL;
    }
    if (*goal > latest) {
        fail(p, PLAN_FAIL_BEYOND, "TXID %" PRIu64 " is beyond the last archived TXID %" PRIu64, *goal, latest);
        return LV_ENOENT;
    }
    p->snap = manifest_snapshot_at(m, *goal);
    if (!p->snap && !have_empty) {
        if (m->nsnaps)
            fail(p, PLAN_FAIL_BEFORE, "TXID %" PRIu64 " is before the earliest restorable point, snapshot TXID %" PRIu64,
                 *goal, m->snaps[0].txid);
        else
            fail(p, PLAN_FAIL_BEFORE, "TXID %" PRIu64 " is not restorable: no snapshots and the log starts at TXID %" PRIu64,
                 *goal, m->segs[0].first_txid);
        return LV_ENOENT;
    }
    *lo = *goal;
    return 0;
}

/* Resolve a time target: the snapshot into p->snap, the TXIDs that may be
 * the last commit at or before the time into *lo..*goal.  0 or negative
 * with p's failure set. */
static int plan_time_target(const struct manifest *m, const struct plan_target *t, uint64_t latest, int have_empty,
                            struct plan *p, uint64_t *goal, uint64_t *lo)
{
    size_t k = snap_after_time(m, t->time_us);
    char tb[40], tb2[40];

    *goal = *lo = 0;
    p->time_us = t->time_us;
    p->snap = k > 0 ? &m->snaps[k - 1] : NULL;
    if (p->snap || have_empty)
        time_bounds(m, t->time_us, p->snap ? p->snap->txid : 0, latest, lo, goal);
    if ((!p->snap && !have_empty) || *goal == 0) {
        if (have_empty)
            fail(p, PLAN_FAIL_BEFORE, "%s is before the first commit (TXID 1 at %s)",
                 lv_fmt_time(t->time_us, tb, sizeof tb), lv_fmt_time(m->segs[0].first_time_us, tb2, sizeof tb2));
        else if (m->nsnaps)
            fail(p, PLAN_FAIL_BEFORE, "%s is before the earliest restorable point, snapshot TXID %" PRIu64 " at %s",
                 lv_fmt_time(t->time_us, tb, sizeof tb), m->snaps[0].txid,
                 lv_fmt_time(m->snaps[0].time_us, tb2, sizeof tb2));
        else
            fail(p, PLAN_FAIL_BEFORE, "%s is not restorable: no snapshots and the log starts at TXID %" PRIu64,
                 lv_fmt_time(t->time_us, tb, sizeof tb), m->segs[0].first_txid);
        return LV_ENOENT;
    }
    p->resolve_by_time = *lo < *goal;
    return 0;
}

/* The fewest segments from p->start_txid + 1 to *goal (greedy: the one
 * reaching furthest, the smaller on a tie).  A gap fails, or with
 * PLAN_ALLOW_PARTIAL ends the plan before it (*goal and *lo lowered).
 * 0 or negative with p's failure set. */
static int plan_chain(const struct manifest *m, int flags, struct plan *p, uint64_t *goal, uint64_t *lo)
{
    uint64_t next = p->start_txid + 1;
    size_t i = 0, cap = 0;

    while (next <= *goal) {
        const struct manifest_seg *best = NULL;
        uint64_t best_reach = 0;

        for (; i < m->nsegs && m->segs[i].first_txid <= next; i++) {
            const struct manifest_seg *s = &m->segs[i];
            uint64_t reach = s->last_txid < *goal ? s->last_txid : *goal;
            if (s->last_txid < next)
                continue;
            if (!best || reach > best_reach || (reach == best_reach && s->size < best->size)) {
                best = s;
                best_reach = reach;
            }
        }
        if (!best) {
            p->gap_first = next;
            p->gap_last = i < m->nsegs && m->segs[i].first_txid - 1 < *goal ? m->segs[i].first_txid - 1 : *goal;
            if (!(flags & PLAN_ALLOW_PARTIAL)) {
                fail(p, PLAN_FAIL_GAP,
                     "no segment holds TXIDs %" PRIu64 "..%" PRIu64 " (needed to go from TXID %" PRIu64 " to %" PRIu64 ")",
                     p->gap_first, p->gap_last, p->start_txid, *goal);
                return LV_EGAP;
            }
            p->partial = 1;
            p->resolve_by_time = 0;
            *goal = *lo = next - 1;
            snprintf(p->msg, sizeof p->msg, "partial: stopped at TXID %" PRIu64 "; no segment holds TXIDs %" PRIu64
                     "..%" PRIu64, *goal, p->gap_first, p->gap_last);
            return 0;
        }
        if (push(p, &cap, best) != 0) {
            fail(p, PLAN_FAIL_NOMEM, "out of memory");
            return LV_ENOMEM;
        }
        next = best->last_txid + 1;
    }
    return 0;
}

int plan_make(const struct manifest *m, const struct plan_target *t, int flags, struct plan *p)
{
    uint64_t latest, goal = 0, lo = 0;
    int have_empty, rc;

    memset(p, 0, sizeof *p);
    if (m->nsegs == 0 && m->nsnaps == 0) {
        fail(p, PLAN_FAIL_EMPTY, "the archive of %s holds no segments or snapshots", m->name ? m->name : "?");
        return LV_ENOENT;
    }
    latest = manifest_last_txid(m);
    have_empty = m->nsegs > 0 && m->segs[0].first_txid == 1;
    if (t->kind == PLAN_LATEST || t->kind == PLAN_TXID) {
        rc = plan_txid_target(m, t, latest, have_empty, p, &goal, &lo);
    } else if (t->kind == PLAN_TIME) {
        rc = plan_time_target(m, t, latest, have_empty, p, &goal, &lo);
    } else {
        fail(p, PLAN_FAIL_INVAL, "unknown target kind %d", (int)t->kind);
        rc = LV_EINVAL;
    }
    if (rc)
        return rc;
    p->start_txid = p->snap ? p->snap->txid : 0;
    if (p->snap)
        p->bytes = p->snap->size;
    rc = plan_chain(m, flags, p, &goal, &lo);
    if (rc) {
        free(p->segs);
        p->segs = NULL;
        p->nsegs = 0;
        p->bytes = 0;
        return rc;
    }
    p->target_txid = goal;
    p->target_min_txid = lo;
    p->objects = p->nsegs + (p->snap ? 1 : 0);
    return 0;
}

void plan_free(struct plan *p)
{
    free(p->segs);
    memset(p, 0, sizeof *p);
}
