/*
 * catchup.c -- before a newly elected primary opens writes, it applies the
 * records that the archive holds beyond its own log.
 *
 * WHY.  The archive is fed by the primary, independently of the replicas:
 * a primary that dies may have archived records that no surviving replica
 * received (every replica was reconnecting, or lagging).  Those records
 * were confirmed somewhere durable; a promotion that ignored them would
 * fork the history, and the archive would continue in a derived lineage.
 * So promotion (src/daemon/daemon.c, promote) calls catchup_from_archive
 * after the replication client stopped and before writes open.
 *
 * WHAT, per database of the registry (dbreg_list):
 *   1. the lineage: <name>/current.json, as restore finds it
 *      (restore_find_lineage); the manifest and the level-0 segments
 *      stored after it (restore_load_manifest, restore_load_tail);
 *   2. the chain of segments after the database's TXID T: repeatedly the
 *      segment (any level) that holds T+1 and reaches furthest; a gap
 *      ends the chain (what lies beyond it cannot be applied anyway);
 *   3. the segment objects are downloaded (restore/fetch.c: two at a
 *      time, each checked against the manifest's size and XXH3-64), and
 *      their records, from
 *      T+1 on, checked one by one (txlog_record_check) and applied in
 *      batches through dbreg_apply -- the replica's applier, which checks
 *      the database ID, the TXID and checksum chain, every post checksum
 *      and the terms (a deposed primary's records are refused), takes
 *      SQLite's locks through the mount and appends the records unchanged
 *      to the local log.
 * A database whose archive does not continue it (LV_ECHAIN, LV_EGAP,
 * another database ID, LV_EREFUSED) keeps its own history: the node's log
 * is what replicas acknowledged, and the archiver will continue in a
 * derived lineage (DESIGN.md, "Lineages").  This is logged as a warning.
 *
 * INVARIANTS
 *   K1. Nothing is applied that dbreg_apply would not accept from a
 *       primary: the archive is as untrusted as a peer.
 *   K2. Records are applied in TXID order, each batch continuing the
 *       database's last TXID (dbreg_apply refuses anything else).
 *   K3. One database's failure never stops the others; only failing to
 *       open the archive is an error of the whole call.
 *
 * COST.  One GET of current.json, one of the manifest, one LIST of the
 * tail per database, then only the segments after T (usually one or two
 * level-0 objects, or nothing): a local-directory archive adds
 * milliseconds to a failover, an object store a few round trips.
 */
#include "restore/catchup.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive/archiver.h"
#include "archive/manifest.h"
#include "archive/tail.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "capture/db.h"
#include "log/txlog.h"
#include "restore/fetch.h"
#include "restore/restore.h"
#include "store/store.h"

#define CU_BATCH_RECS 1024          /* records per dbreg_apply */
#define CU_BATCH_BYTES (8u << 20)   /* record bytes per dbreg_apply */
#define CU_BUSY_TRIES 50            /* dbreg_apply calls that may find readers holding the locks */

/* The segment of m that holds TXID next and reaches furthest, or NULL. */
static const struct manifest_seg *next_seg(const struct manifest *m, uint64_t next)
{
    const struct manifest_seg *best = NULL;

    for (size_t i = 0; i < m->nsegs; i++) {
        const struct manifest_seg *s = &m->segs[i];
        if (s->first_txid <= next && s->last_txid >= next && (!best || s->last_txid > best->last_txid))
            best = s;
    }
    return best;
}

/* Apply recs[0..n) to database name, waiting out readers.  0 or negative (err). */
static int apply_batch(struct dbreg *reg, const char *name, const struct db_rec *recs, size_t n, int wait_ms,
                       char *err, size_t errlen)
{
    struct db_apply_stats st;
    int rc = LV_EBUSY;

    for (int i = 0; i < CU_BUSY_TRIES && rc == LV_EBUSY; i++)
        rc = dbreg_apply(reg, name, recs, n, wait_ms, &st, err, errlen);
    return rc;
}

int catchup_apply_records(struct dbreg *reg, const char *name, const char *what, const uint8_t *buf, size_t len,
                          uint64_t *txid, int wait_ms, uint64_t *applied, char *err, size_t errlen)
{
    struct db_rec recs[CU_BATCH_RECS];
    size_t n = 0, bytes = 0, off = 0;
    char why[256];
    int rc = 0;

    while (off < len && rc == 0) {
        struct txlog_hdr h;
        if (len - off < TXLOG_HDR_SIZE + TXLOG_TRAILER_SIZE || txlog_hdr_decode(buf + off, &h) != 0 ||
            h.stored_len > len - off - TXLOG_HDR_SIZE - TXLOG_TRAILER_SIZE) {
            snprintf(err, errlen, "%s: %s: no valid record at offset %zu", name, what, off);
            return LV_ECORRUPT;
        }
        size_t rl = TXLOG_HDR_SIZE + (size_t)h.stored_len + TXLOG_TRAILER_SIZE;
        if (h.txid > *txid + n) {
            if ((rc = txlog_record_check(buf + off, rl, &recs[n].h, why, sizeof why)) != 0) {
                snprintf(err, errlen, "%s: %s at offset %zu: %s", name, what, off, why);
                return rc;
            }
            recs[n].raw = buf + off;
            recs[n].len = rl;
            n++;
            bytes += rl;
        }
        off += rl;
        if (n == CU_BATCH_RECS || bytes >= CU_BATCH_BYTES || (off >= len && n > 0)) {
            rc = apply_batch(reg, name, recs, n, wait_ms, err, errlen);
            if (rc == 0) {
                *txid = recs[n - 1].h.txid;
                *applied += n;
            }
            n = 0;
            bytes = 0;
        }
    }
    return rc;
}

/* Catch database d up from the archive st.  1 advanced, 0 nothing to do,
 * negative: skipped (logged here). */
static int catchup_db(struct store *st, struct dbreg *reg, const struct db_info *d, int wait_ms,
                      struct catchup_result *res)
{
    char lineage[MANIFEST_ID_HEX + 1], err[1024] = "";
    struct manifest m;
    struct tail_result tail;
    const struct manifest_seg *s;
    struct fetch_obj *objs = NULL; /* the segments to apply, in order (keys owned) */
    struct fetch *f = NULL;
    size_t nobjs = 0, cap = 0;
    uint64_t txid = d->txid, from = d->txid;
    int listed = 0, rc;

    memset(&m, 0, sizeof m);
    memset(&tail, 0, sizeof tail);
    rc = restore_find_lineage(st, d->name, NULL, lineage, &listed, err, sizeof err);
    if (rc == LV_ENOENT) {
        LV_DEBUG("catch-up: %s is not in the archive", d->name);
        return 0;
    }
    if (rc == 0)
        rc = restore_load_manifest(st, d->name, lineage, &m, err, sizeof err);
    if (rc == 0)
        rc = restore_load_tail(st, d->name, lineage, &m, &tail, err, sizeof err);
    /* The chain after TXID txid, fetched (size and XXH3-64 checked against
     * the manifest: restore/fetch.c) and applied in order. */
    for (uint64_t next = txid + 1; rc == 0 && (s = next_seg(&m, next)) != NULL; next = s->last_txid + 1) {
        char *k = NULL;
        if (lv_grow((void **)&objs, &cap, nobjs, sizeof *objs, 8) != 0 ||
            asprintf(&k, "%s/%s/%s", d->name, lineage, s->key) < 0) {
            rc = LV_ENOMEM;
            break;
        }
        objs[nobjs].key = k;
        objs[nobjs].size = s->size;
        objs[nobjs].xxh3 = s->xxh3;
        nobjs++;
    }
    if (rc == 0 && nobjs && (rc = fetch_start(st, objs, nobjs, 2, 0, 0, &f)) != 0)
        snprintf(err, sizeof err, "%s: cannot start fetching the archive's segments", d->name);
    for (size_t i = 0; rc == 0 && i < nobjs; i++) {
        struct fetch_res fr;
        uint64_t before = txid;
        fetch_wait(f, i, -1, &fr);
        if ((rc = fr.rc) != 0)
            snprintf(err, sizeof err, "%s", fr.err ? fr.err : lv_strerror(rc));
        else if (fr.len < TXLOG_SEG_HDR_SIZE)
            rc = LV_ECORRUPT, snprintf(err, sizeof err, "%s: object %s is shorter than a segment header", d->name,
                                       fr.key);
        else
            rc = catchup_apply_records(reg, d->name, fr.key, (const uint8_t *)fr.buf + TXLOG_SEG_HDR_SIZE,
                                       fr.len - TXLOG_SEG_HDR_SIZE, &txid, wait_ms, &res->records, err, sizeof err);
        if (rc == 0 && txid == before) { /* the manifest said it holds TXID txid + 1 */
            snprintf(err, sizeof err, "%s: object %s holds no record after TXID %" PRIu64, d->name, fr.key, txid);
            rc = LV_ECORRUPT;
        }
        if (fr.rc == 0)
            res->bytes += fr.len;
        fetch_release(f, i);
    }
    fetch_stop(f);
    for (size_t i = 0; i < nobjs; i++)
        free((char *)objs[i].key);
    free(objs);
    tail_result_free(&tail);
    manifest_free(&m);
    if (rc) {
        LV_WARN("catch-up: %s stays at TXID %" PRIu64 " (the archive's records after it were not applied: %s)%s",
                d->name, txid, err[0] ? err : lv_strerror(rc),
                rc == LV_ECHAIN || rc == LV_EGAP || rc == LV_EREFUSED
                    ? "; the archive holds another history there (a former primary's surplus); this node's own "
                      "history continues"
                    : "");
        return rc;
    }
    if (txid > from)
        LV_INFO("catch-up: %s advanced from TXID %" PRIu64 " to %" PRIu64 " with the archive's records (lineage %s)",
                d->name, from, txid, lineage);
    return txid > from;
}

int catchup_from_archive(struct dbreg *reg, const struct archiver_dest *archive, size_t narchive, int wait_ms,
                         struct catchup_result *res, char *err, size_t errlen)
{
    struct store_opts so;
    struct store *st = NULL;
    struct db_info *dbs = NULL;
    size_t n = 0;
    int64_t t0 = lv_mono_us();
    int rc;

    memset(res, 0, sizeof *res);
    if (narchive == 0)
        return 0;
    archiver_store_opts(&archive[0], &so);
    rc = restore_open_archive(archive[0].url, &so, &st, NULL, err, errlen);
    if (rc == LV_ENOENT) /* nothing archived yet */
        return 0;
    if (rc)
        goto out;
    rc = dbreg_list(reg, &dbs, &n);
    if (rc)
        goto out_close;
    for (size_t i = 0; i < n; i++) { /* K3 */
        if (dbs[i].broken)
            continue;
        res->dbs++;
        int r = catchup_db(st, reg, &dbs[i], wait_ms, res);
        if (r > 0)
            res->advanced++;
        else if (r < 0)
            res->skipped++;
    }
    free(dbs);
out_close:
    store_close(st);
out:
    res->seconds = (double)(lv_mono_us() - t0) / 1e6;
    return rc;
}
