/*
 * plan.c -- the pure decisions of replication (see plan.h).
 *
 * NAMES (repl_plan_names).  The replica's databases are matched to the
 * primary's by database ID: an ID names one database for its whole life
 * (FORMAT.md, "Database identity"), whatever file name it has.  A replica
 * database whose ID the primary does not have is deleted there (DROP),
 * even when the primary has a database of the same name: that one is
 * another database, streamed from its beginning afterwards.  A database
 * the primary renamed is renamed on the replica (RENAME), which keeps its
 * pages and log: no snapshot.  Renames are applied one at a time, so a
 * target must be free when its rename runs; the loop renames whatever can
 * be renamed, and when the rest wait on each other (a swap of two names)
 * or on a name that stays taken, drops one of them and goes on.  Every
 * pass either renames or drops one entry, so it ends.
 *
 * START (repl_plan_start, repl_continues).  Records may continue a
 * replica's copy only if it is a prefix of the primary's history: same ID
 * (the caller matched it), a TXID the primary has reached, and the same
 * checksum after that TXID as the primary's.  The last part needs the log:
 * the caller reads the record after the replica's TXID and checks that it
 * continues the copy (its pre checksum is the copy's checksum).
 *
 * RETENTION (repl_retain_point).  Pruning deletes whole segments, oldest
 * first, never the newest (txlog_prune).  A segment i < n-1 holds TXIDs
 * segs[i].first .. segs[i+1].first - 1 and is deleted by a prune up to x
 * iff segs[i+1].first - 1 <= x.  The segments deleted at upto but kept at
 * want are a contiguous run; if they hold more than max_bytes, the oldest
 * are given up one by one.
 */
#include "replica/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lv.h"
#include "log/txlog.h"

/* Index of the primary database of ID id, or -1. */
static long find_id(const struct repl_pos *v, size_t n, const uint8_t id[16])
{
    for (size_t i = 0; i < n; i++)
        if (v[i].name[0] && memcmp(v[i].id, id, 16) == 0)
            return (long)i;
    return -1;
}

/* Is name held by a live replica entry other than skip? */
static int name_taken(const struct repl_pos *rep, size_t n, const char *name, size_t skip)
{
    for (size_t i = 0; i < n; i++)
        if (i != skip && rep[i].name[0] && strcmp(rep[i].name, name) == 0)
            return 1;
    return 0;
}

static int push_action(struct repl_name_action **out, size_t *n, size_t *cap, enum repl_name_op op,
                       const char *name, const char *to)
{
    if (lv_grow((void **)out, cap, *n, sizeof **out, 8) != 0)
        return LV_ENOMEM;
    struct repl_name_action *a = &(*out)[(*n)++];
    memset(a, 0, sizeof *a);
    a->op = op;
    snprintf(a->name, sizeof a->name, "%s", name);
    if (to)
        snprintf(a->to, sizeof a->to, "%s", to);
    return 0;
}

int repl_plan_names(struct repl_pos *rep, size_t nrep, const struct repl_pos *prim, size_t nprim,
                    struct repl_name_action **out, size_t *nout)
{
    size_t cap = 0, left = 0;
    long *target = NULL;   /* per replica entry: primary index to rename to, -1 none */
    int rc = 0;

    *out = NULL;
    *nout = 0;
    if (nrep == 0)
        return 0;
    target = calloc(nrep, sizeof *target);
    if (!target)
        return LV_ENOMEM;
    /* Kept entries first, so that a duplicate ID elsewhere cannot take
     * their primary name; then the drops. */
    for (size_t i = 0; i < nrep; i++) {
        long j = rep[i].name[0] ? find_id(prim, nprim, rep[i].id) : -1;
        target[i] = -1;
        if (j >= 0 && strcmp(prim[j].name, rep[i].name) != 0) {
            target[i] = j;
            left++;
        }
    }
    for (size_t i = 0; i < nrep && rc == 0; i++) {
        if (!rep[i].name[0] || target[i] >= 0 || find_id(prim, nprim, rep[i].id) >= 0)
            continue;
        rc = push_action(out, nout, &cap, RN_DROP, rep[i].name, NULL);
        rep[i].name[0] = 0;
    }
    /* A duplicate ID kept under the primary's name elsewhere: the kept
     * one wins (its name equals the primary's); the others go. */
    for (size_t i = 0; i < nrep && rc == 0; i++) {
        if (target[i] < 0)
            continue;
        for (size_t k = 0; k < nrep; k++)
            if (k != i && rep[k].name[0] && target[k] < 0 && memcmp(rep[k].id, rep[i].id, 16) == 0) {
                rc = push_action(out, nout, &cap, RN_DROP, rep[i].name, NULL);
                rep[i].name[0] = 0;
                target[i] = -1;
                left--;
                break;
            }
    }
    while (left > 0 && rc == 0) {
        int progress = 0;
        for (size_t i = 0; i < nrep && rc == 0; i++) {
            if (target[i] < 0 || name_taken(rep, nrep, prim[target[i]].name, i))
                continue;
            rc = push_action(out, nout, &cap, RN_RENAME, rep[i].name, prim[target[i]].name);
            snprintf(rep[i].name, sizeof rep[i].name, "%s", prim[target[i]].name);
            target[i] = -1;
            left--;
            progress = 1;
        }
        if (progress || rc)
            continue;
        for (size_t i = 0; i < nrep; i++)
            if (target[i] >= 0) {
                rc = push_action(out, nout, &cap, RN_DROP, rep[i].name, NULL);
                rep[i].name[0] = 0;
                target[i] = -1;
                left--;
                break;
            }
    }
    free(target);
    if (rc) {
        free(*out);
        *out = NULL;
        *nout = 0;
    }
    return rc;
}

enum repl_start repl_plan_start(const struct repl_pos *prim, const struct repl_pos *rep, uint64_t *from)
{
    *from = 0;
    if (prim->txid == 0)
        return RST_WAIT;
    if (rep && rep->resync)
        return RST_SNAPSHOT;
    if (rep && rep->txid == prim->txid)
        return rep->cksum == prim->cksum ? RST_WAIT : RST_SNAPSHOT;
    if (rep && rep->txid > prim->txid)
        return RST_SNAPSHOT;
    *from = rep ? rep->txid + 1 : 1;
    return RST_RECORDS;
}

int repl_continues(const struct txlog_hdr *h, uint64_t txid, uint64_t cksum)
{
    if (h->txid != txid + 1)
        return 0;
    return txid == 0 || (h->flags & TXLOG_F_SNAPSHOT) || h->pre_cksum == cksum;
}

uint64_t repl_retain_point(const struct repl_seg *segs, size_t n, uint64_t upto, uint64_t want,
                           uint64_t max_bytes, int *cut)
{
    uint64_t held = 0, point = want;
    size_t a = n, b = 0;

    if (cut)
        *cut = 0;
    if (want >= upto)
        return upto;
    /* The run [a, b) of segments prunable at upto but not at want. */
    for (size_t i = 0; i + 1 < n; i++) {
        uint64_t last = segs[i + 1].first - 1;
        if (last <= upto && last > want) {
            if (a == n)
                a = i;
            b = i + 1;
            held += segs[i].bytes;
        }
    }
    for (size_t i = a; i < b && held > max_bytes; i++) {
        held -= segs[i].bytes;
        point = segs[i + 1].first - 1;
        if (cut)
            *cut = 1;
    }
    return point;
}

int64_t repl_backoff_next(int64_t cur_us)
{
    int64_t next = cur_us <= 0 ? REPL_BACKOFF_MIN_US : cur_us * 2;

    if (next < REPL_BACKOFF_MIN_US)
        next = REPL_BACKOFF_MIN_US;
    return next > REPL_BACKOFF_MAX_US ? REPL_BACKOFF_MAX_US : next;
}
