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
 * LV_EREFUSED) keeps its own history: the node's log is what replicas
 * acknowledged, and the archiver will continue in a derived lineage
 * (DESIGN.md, "Lineages").  So does one whose archive lineage holds
 * another database of that name (its records carry another database ID:
 * the old primary deleted this node's and made a new one; LV_EEXIST): it
 * is not touched, and stays restorable with restore --lineage.  Each is
 * logged as a warning naming the database.
 *
 * DATABASES ONLY THE ARCHIVE HOLDS.  The old primary may have created a
 * database and archived its records before any replica received them (the
 * peers' catch-up, src/replica/peer_catchup.c P4, creates those that some
 * node holds).  Then, for every database the archive holds (one LIST:
 * seed_archive_names, as `restore --seed` finds them) and the registry has
 * no database of that name for (dbreg_list, after the peers' catch-up):
 *   4. its current lineage, manifest and tail as in 1; a lineage with no
 *      record yet is left;
 *   5. the database ID its records carry, from the first record header of
 *      one of its objects (a ranged GET of 176 bytes: a derived lineage's
 *      ID is not its records');
 *   6. it is rebuilt at the archive's latest TXID and installed as seeding
 *      installs it (restore/seed.c seed_add_to_registry: restore_run into
 *      data.dir/tmp, verified; then capture's dbreg_seed_add:
 *      db_seed_install and the registry loads it as at start-up), so it
 *      has the archive's database ID, TXIDs and checksum, its log
 *      continues at the archive's TXID + 1 without holding a record, and
 *      both the archiver (same lineage) and the replicas (an image) carry
 *      it on from there.
 *   C1. A database is never created twice: not when its records' ID is a
 *       local database's (renamed here, the archive still holds it under
 *       its old name), nor when this node deleted that ID (its metadata is
 *       in data.dir/retired: dbreg_retired_id).  Both are skipped with a
 *       warning.  Nor when the archive says it was deleted: the archiver
 *       of the node that deleted it wrote <name>/deleted.json naming its
 *       lineage (FORMAT.md, "Deleted databases"), so a database deleted on
 *       the old primary does not come back here even when this node never
 *       knew it (created and deleted while this node lagged).  Only one
 *       deleted before that archiver could write the object (a crash right
 *       after the unlink) comes back; nothing is lost, the user deletes it
 *       again.
 *   C2. Nothing is created that restore would not restore: every object's
 *       size and XXH3, every record's checksums, TXID continuity, the
 *       checksum chain, terms never going back, and the rebuilt file's
 *       checksum are checked (restore.c), and the records must carry the
 *       ID found in 5.  A failure installs nothing and is logged; writes
 *       open without that database (`litevault restore` still rebuilds it).
 * A database being created has no SQLite readers (its file did not exist),
 * so wait_ms plays no part there; the time it takes is a restore's, during
 * which writes stay closed: that is the price of a failover that loses
 * nothing the archive holds.
 *
 * INVARIANTS
 *   K1. Nothing is applied that dbreg_apply would not accept from a
 *       primary: the archive is as untrusted as a peer.  A database made
 *       from the archive passes restore's checks instead (C2).
 *   K2. Records are applied in TXID order, each batch continuing the
 *       database's last TXID (dbreg_apply refuses anything else).  A
 *       database made from the archive starts at its latest TXID and
 *       continues from there.
 *   K3. One database's failure never stops the others; only failing to
 *       open the archive is an error of the whole call (failing to list
 *       its databases only skips step 4-6, logged).
 *
 * COST.  One GET of current.json, one of the manifest, one LIST of the
 * tail per database, then only the segments after T (usually one or two
 * level-0 objects, or nothing): a local-directory archive adds
 * milliseconds to a failover, an object store a few round trips.  A
 * database whose lineage is not named by its own ID costs one ranged GET
 * more.  Databases only the archive holds cost one LIST of the archive,
 * then per such database the same GETs and LIST plus a ranged GET --
 * including each database deleted or renamed long ago, which the archive
 * keeps (skipped after those requests) -- and, for each one created, a
 * full restore (its newest snapshot and the segments after it).
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
#include "restore/seed.h"
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

/* The database ID that the records of lineage `lineage` of database name
 * carry (the lineage's own ID, unless it was derived after a divergence):
 * read from the first record header of one object that m names (a ranged
 * GET of its first bytes; the header's checksum is checked).  0, LV_ENOENT
 * (m names no object), or the GET's error / LV_ECORRUPT with err. */
static int lineage_rec_id(struct store *st, const char *name, const char *lineage, const struct manifest *m,
                          uint8_t id[16], char *err, size_t errlen)
{
    const char *okey = m->nsegs ? m->segs[m->nsegs - 1].key : m->nsnaps ? m->snaps[m->nsnaps - 1].key : NULL;
    struct txlog_hdr h;
    char *key = NULL;
    void *buf = NULL;
    size_t len = 0;
    int rc;

    if (!okey) {
        rc = LV_ENOENT;
        goto out;
    }
    if (asprintf(&key, "%s/%s/%s", name, lineage, okey) < 0) {
        key = NULL;
        rc = LV_ENOMEM;
        goto out;
    }
    rc = store_get(st, key, 0, TXLOG_SEG_HDR_SIZE + TXLOG_HDR_SIZE, &buf, &len);
    if (rc) {
        snprintf(err, errlen, "%s: cannot read %s: %s (%s)", store_url(st), key, lv_strerror(rc),
                 store_last_error(st) ? store_last_error(st) : "");
    } else if (len < TXLOG_SEG_HDR_SIZE + TXLOG_HDR_SIZE ||
               txlog_hdr_decode((const uint8_t *)buf + TXLOG_SEG_HDR_SIZE, &h) != 0) {
        snprintf(err, errlen, "%s: object %s does not start with a valid record", store_url(st), key);
        rc = LV_ECORRUPT;
    } else {
        memcpy(id, h.dbid, 16);
    }
out:
    free(buf);
    free(key);
    return rc;
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
    char lineage[MANIFEST_ID_HEX + 1], idh[MANIFEST_ID_HEX + 1], ridh[MANIFEST_ID_HEX + 1], err[1024] = "";
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
    lv_hex(d->id, 16, idh);
    if (rc == 0 && strcmp(lineage, idh) != 0 && manifest_last_txid(&m) > 0) {
        /* Not this database's own lineage: a derived one of it, or another
         * database of the same name (created on the old primary after
         * this node's was deleted there). */
        uint8_t rid[16];
        rc = lineage_rec_id(st, d->name, lineage, &m, rid, err, sizeof err);
        if (rc == 0 && memcmp(rid, d->id, 16) != 0) {
            lv_hex(rid, 16, ridh);
            snprintf(err, sizeof err, "the archive's lineage %s holds another database of that name (database ID "
                     "%s; this node's is %s)", lineage, ridh, idh);
            rc = LV_EEXIST;
        }
    }
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
                : rc == LV_EEXIST ? "; this node's database keeps its history, which the archiver continues in a "
                                    "lineage of its own (the other one stays restorable with restore --lineage)"
                                  : "");
        return rc;
    }
    if (txid > from)
        LV_INFO("catch-up: %s advanced from TXID %" PRIu64 " to %" PRIu64 " with the archive's records (lineage %s)",
                d->name, from, txid, lineage);
    return txid > from;
}

/* Database name, which the archive st holds and this node lacks (no local
 * database of that name among dbs[0..n)): create it from the archive (C1,
 * C2).  1 created, 0 nothing to create (the archive holds no record of
 * it), negative: skipped (logged here). */
static int catchup_new_db(struct store *st, struct dbreg *reg, const struct archiver_dest *archive,
                          const struct store_opts *so, const char *name, const struct db_info *dbs, size_t n,
                          struct catchup_result *res)
{
    char lineage[MANIFEST_ID_HEX + 1], idh[MANIFEST_ID_HEX + 1], err[1024] = "", what[4200];
    struct manifest m;
    struct tail_result tail;
    struct seed_db sd;
    uint8_t id[16];
    char tb[40];
    int listed = 0, rc;

    memset(&m, 0, sizeof m);
    memset(&tail, 0, sizeof tail);
    memset(&sd, 0, sizeof sd);
    rc = restore_find_lineage(st, name, NULL, lineage, &listed, err, sizeof err);
    if (rc == LV_ENOENT) {
        LV_DEBUG("catch-up: %s: the archive names it but holds no lineage of it", name);
        rc = 0;
        goto out_free;
    }
    if (rc == 0) {
        int64_t when = 0;
        int del = restore_deleted(st, name, lineage, &when, NULL);
        if (del > 0) { /* C1 */
            LV_INFO("catch-up: %s is in the archive (lineage %s), deleted there at %s: not created again "
                    "(`litevault restore --db %s` still rebuilds it)", name, lineage, lv_fmt_time(when, tb, sizeof tb),
                    name);
            rc = LV_EREFUSED;
            goto out_free;
        }
        if (del < 0)
            LV_WARN("catch-up: %s: cannot tell whether it was deleted (%s/deleted.json: %s); creating it", name, name,
                    lv_strerror(del));
    }
    if (rc == 0)
        rc = restore_load_manifest(st, name, lineage, &m, err, sizeof err);
    if (rc == 0)
        rc = restore_load_tail(st, name, lineage, &m, &tail, err, sizeof err);
    if (rc == 0 && manifest_last_txid(&m) == 0) {
        LV_DEBUG("catch-up: %s: its lineage %s in the archive holds no record yet", name, lineage);
        goto out_free;
    }
    if (rc == 0)
        rc = lineage_rec_id(st, name, lineage, &m, id, err, sizeof err);
    if (rc) {
        LV_WARN("catch-up: %s is in the archive but not on this node, and the archive cannot be read to create it "
                "(%s); writes open without it (`litevault restore --db %s` rebuilds it from the archive)",
                name, err[0] ? err : lv_strerror(rc), name);
        goto out_free;
    }
    lv_hex(id, 16, idh);
    for (size_t i = 0; i < n; i++) /* C1 */
        if (memcmp(dbs[i].id, id, 16) == 0) {
            LV_WARN("catch-up: %s is in the archive (lineage %s, database ID %s) but is this node's %s, renamed "
                    "since: not created again under its old name", name, lineage, idh, dbs[i].name);
            rc = LV_EEXIST;
            goto out_free;
        }
    rc = dbreg_retired_id(reg, id, what, sizeof what); /* C1 */
    if (rc > 0) {
        LV_WARN("catch-up: %s is in the archive (lineage %s, database ID %s), but this node deleted it (its "
                "metadata is in %s): not created again; the archive keeps it (`litevault restore --db %s` "
                "rebuilds it)", name, lineage, idh, what, name);
        rc = LV_EREFUSED;
        goto out_free;
    }
    if (rc < 0)
        LV_WARN("catch-up: %s: cannot tell whether this node deleted database ID %s (%s is unreadable: %s); "
                "creating it", name, idh, what[0] ? what : "data.dir/retired", lv_strerror(rc));
    LV_INFO("catch-up: %s is in the archive (lineage %s, database ID %s, up to TXID %" PRIu64 ") but not on this "
            "node: creating it from the archive before writes open", name, lineage, idh, manifest_last_txid(&m));
    rc = seed_add_to_registry(reg, archive->url, so, name, lineage, id, &sd, err, sizeof err); /* C2 */
    if (rc == LV_EBROKEN) {
        LV_WARN("catch-up: %s was created from the archive but is broken: %s", name, err);
        goto out_free;
    }
    if (rc) {
        LV_WARN("catch-up: %s could not be created from the archive (%s); writes open without it (`litevault "
                "restore --db %s` rebuilds it from the archive)", name, err[0] ? err : lv_strerror(rc), name);
        goto out_free;
    }
    res->bytes += sd.bytes;
    LV_INFO("catch-up: %s created from the archive at TXID %" PRIu64 " (committed %s, checksum %016" PRIx64
            ", lineage %s, %" PRIu64 " bytes downloaded in %.2f s); its next record is TXID %" PRIu64,
            name, sd.txid, lv_fmt_time(sd.time_us, tb, sizeof tb), sd.cksum, sd.lineage, sd.bytes, sd.seconds,
            sd.txid + 1);
    rc = 1;
out_free:
    free(sd.name);
    tail_result_free(&tail);
    manifest_free(&m);
    return rc;
}

/* Steps 4-6 for every database the archive holds that no database of
 * dbs[0..n) (the registry's) is named after.  Failing to list the archive
 * is logged (K3). */
static void catchup_new_dbs(struct store *st, struct dbreg *reg, const struct archiver_dest *archive,
                            const struct store_opts *so, const struct db_info *dbs, size_t n,
                            struct catchup_result *res)
{
    char **names = NULL, err[1024] = "";
    size_t nn = 0;
    int rc;

    rc = seed_archive_names(st, &names, &nn, err, sizeof err);
    if (rc) {
        LV_WARN("catch-up: cannot list the databases of the archive %s (%s); a database only the archive holds is "
                "not created here", archive->url, err[0] ? err : lv_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < nn; i++) { /* K3 */
        int local = 0;
        for (size_t j = 0; j < n && !local; j++)
            local = strcmp(dbs[j].name, names[i]) == 0;
        if (local)
            continue;
        res->dbs++;
        rc = catchup_new_db(st, reg, archive, so, names[i], dbs, n, res);
        if (rc > 0)
            res->created++;
        else if (rc < 0)
            res->skipped++;
    }
out:
    seed_names_free(names, nn);
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
    catchup_new_dbs(st, reg, &archive[0], &so, dbs, n, res);
    free(dbs);
out_close:
    store_close(st);
out:
    res->seconds = (double)(lv_mono_us() - t0) / 1e6;
    return rc;
}
