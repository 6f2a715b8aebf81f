/*
 * restore.c -- point-in-time restore of one database from an archive.
 * Specification: docs/FORMAT.md, "Current lineage pointer" and "Restore".
 *
 * STEPS
 *   1. PATH checks: --if-db-not-exists and PATH exists -> done (skipped);
 *      PATH non-empty, or PATH-wal / PATH-shm present -> refused unless
 *      --force (which replaces PATH and removes them just before publishing).
 *   2. Lineage: --lineage ID, else <db>/current.json, else LIST <db>/ and
 *      take the lineage whose manifest has the newest commit (warned).
 *   3. Manifest: <db>/<id>/manifest.json, decoded and verified
 *      (manifest_decode: checksum and cross-entry rules), and it must name
 *      db and id.
 *   3b. Tail: the manifest may lag behind the stored level-0 segments (up
 *      to the archiver's manifest-interval).  One LIST of
 *      <db>/<id>/seg/0/ and archive/tail.c add the objects that continue
 *      the manifest's chain to the in-memory manifest, each downloaded and
 *      verified completely first (their real size and XXH3 then guard the
 *      second download).  A gap or a damaged tail object stops the tail:
 *      a target beyond it fails naming the object (LV_EGAP / the check's
 *      error), or with --allow-partial restores the last TXID before it.
 *   4. Plan: plan_make (PLAN_ALLOW_PARTIAL with --allow-partial).
 *   5. Fetch: restore/fetch.c downloads the objects in apply order with N
 *      workers, a bounded look-ahead window and byte budget, verifying each
 *      object's size and XXH3-64 against the manifest.
 *   6. Apply, object by object, into PATH.tmp with txlog_apply_record
 *      (src/txlog.c, shared with `log replay`): every record's header and
 *      payload checksums (reader), TXID continuity within and across
 *      objects, pre == previous post, page-size rule, post checksum after
 *      each record.  Records of a segment at or below the TXID reached are
 *      skipped (their headers and chain are still checked by the reader).
 *      Also checked against the manifest: a snapshot object holds exactly
 *      one SNAPSHOT record at its TXID whose post checksum is db_checksum;
 *      a segment object starts at first_txid with pre_checksum and, read to
 *      its end, ends at last_txid with post_checksum.  Application stops
 *      after target_txid, or (resolve_by_time) before the first record
 *      committed after the target time.
 *   7. Finish: fsync, re-read PATH.tmp and compare its database checksum
 *      with the last post checksum; PRAGMA integrity_check (read-only,
 *      immutable URI: no -wal/-shm are created); publish (publish_adopt +
 *      publish_commit: fsync, rename to PATH, fsync the directory).
 *
 * DAMAGE (any failed check in 5-7): without --allow-partial the restore
 * fails with a message naming the object key and TXID and PATH.tmp is
 * removed.  With --allow-partial, let L be the last record applied
 * completely:
 *   - object missing (or unreadable): stop at L;
 *   - object size/XXH3 wrong: apply its records anyway (each record is
 *     checked on its own) and stop at the first bad one;
 *   - a record fails before touching the file (header, continuity, chain,
 *     manifest mismatch): stop at L;
 *   - a record fails after writing pages (payload damage found at the
 *     trailer, post checksum): the file is dirty, so the restore starts
 *     over with target TXID L (at most once);
 *   - nothing applied (damaged snapshot): fail, nothing is restorable.
 * The result says partial, the TXID reached, and why.
 */
#include "restore/restore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cksum.h"
#include "archive/current.h"
#include "restore/fetch.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/publish.h"
#include "store/store.h"
#include "base/sys.h"
#include "archive/tail.h"
#include "log/txlog.h"

#define RESTORE_RETRY 1  /* internal: start over with a lower target */
#define RESTORE_REPLAN 2 /* internal: drop a damaged snapshot from the manifest and plan again */

/* ---------------------------------------------------------------- lineage and manifest */

int restore_load_manifest(struct store *st, const char *db, const char *dbid, struct manifest *m, char *err,
                          size_t errlen)
{
    char *key = NULL, merr[512] = "";
    void *buf = NULL;
    size_t len = 0;
    int rc;

    memset(m, 0, sizeof *m);
    if (asprintf(&key, "%s/%s/%s", db, dbid, MANIFEST_OBJECT) < 0)
        return LV_ENOMEM;
    rc = store_get(st, key, 0, 0, &buf, &len);
    if (rc == LV_ENOENT) {
        lv_seterr(err, errlen, "%s: no manifest %s: lineage %s of database '%s' is not in the archive", store_url(st),
               key, dbid, db);
        goto out;
    }
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot read %s: %s (%s)", store_url(st), key, lv_strerror(rc),
               store_last_error(st) ? store_last_error(st) : "");
        goto out;
    }
    rc = manifest_decode(buf, len, m, merr, sizeof merr);
    if (rc) {
        lv_seterr(err, errlen, "%s: manifest %s is %s: %s", store_url(st), key,
               rc == LV_EVERSION ? "of an unsupported version" : "corrupt", merr);
        goto out;
    }
    if (strcmp(m->dbid, dbid) != 0 || strcmp(m->name, db) != 0) {
        lv_seterr(err, errlen, "%s: manifest %s names database '%s' lineage %s; expected '%s' lineage %s",
               store_url(st), key, m->name, m->dbid, db, dbid);
        manifest_free(m);
        rc = LV_ECORRUPT;
    }
out:
    free(buf);
    free(key);
    return rc;
}

/* Step 3c: note the archive's end, and whether a time target lies after
 * it (the latest is then restored; with --strict it is an error, since the
 * node may have committed transactions that never reached the archive). */
static int check_after_end(const struct restore_opts *o, const struct manifest *m, struct restore_result *res,
                           char *err, size_t errlen)
{
    char tb[40], lb[40];

    manifest_last(m, &res->archive_last_txid, &res->archive_last_time_us);
    res->after_end = o->target.kind == PLAN_TIME && res->archive_last_txid > 0 &&
                     o->target.time_us > res->archive_last_time_us;
    if (!res->after_end || !o->strict)
        return 0;
    lv_seterr(err, errlen, "%s: the target %s lies after the last archived transaction of '%s', TXID %" PRIu64
              " committed at %s: later transactions, if any, are not in the archive (--strict; without it the "
              "restore gives TXID %" PRIu64 ")", o->url, lv_fmt_time(o->target.time_us, tb, sizeof tb),
              o->db, res->archive_last_txid, lv_fmt_time(res->archive_last_time_us, lb, sizeof lb),
              res->archive_last_txid);
    return LV_ENOENT;
}

int restore_open_archive(const char *url, const struct store_opts *so, struct store **out, int *empty, char *err,
                         size_t errlen)
{
    struct store_opts o = {0}; /* as store_open with NULL options */
    char perr[1024] = "";
    int rc, e = 0;

    *out = NULL;
    if (so)
        o = *so;
    o.no_create = 1;
    rc = store_open(url, &o, out, err, errlen);
    if (rc)
        return rc;
    rc = store_probe(*out, &e, perr, sizeof perr);
    if (rc == LV_ENOENT)
        lv_seterr(err, errlen, "%s; check the archive URL (--from, or the config's archive: url)", perr);
    else if (rc)
        lv_seterr(err, errlen, "%s: cannot read the archive: %s", url, perr);
    if (rc) {
        store_close(*out);
        *out = NULL;
        return rc;
    }
    if (empty)
        *empty = e;
    return 0;
}

int restore_deleted(struct store *st, const char *db, const char *lineage, int64_t *when, char *reason)
{
    struct archive_deleted t;
    char *key = archive_deleted_key(db), derr[256] = "";
    void *buf = NULL;
    size_t len = 0;
    int rc;

    *when = 0;
    if (reason)
        reason[0] = '\0';
    if (!key)
        return LV_ENOMEM;
    rc = store_get(st, key, 0, 0, &buf, &len);
    if (rc == LV_ENOENT) {
        rc = 0;
    } else if (rc == 0) {
        if (archive_deleted_decode(buf, len, &t, derr, sizeof derr) != 0) {
            LV_WARN("%s: %s is unreadable (%s); taking %s as not deleted", store_url(st), key, derr, db);
        } else if (strcmp(t.dbid, lineage) == 0) {
            *when = t.deleted_us;
            if (reason)
                snprintf(reason, 16, "%s", t.reason);
            rc = 1;
        }
    }
    free(buf);
    free(key);
    return rc;
}

int restore_find_lineage(struct store *st, const char *db, const char *want, char out[MANIFEST_ID_HEX + 1],
                         int *listed, char *err, size_t errlen)
{
    struct archive_current cur;
    struct store_list l = {0};
    char *key = NULL, *prefix = NULL, cerr[256] = "", best_t[40];
    void *buf = NULL;
    size_t len = 0, i, plen, ncand = 0;
    int64_t best_time = INT64_MIN;
    int rc;

    *listed = 0;
    out[0] = '\0';
    if (want) {
        if (!manifest_id_ok(want)) {
            lv_seterr(err, errlen, "lineage '%s' is not a database ID (32 lower-case hex digits)", want);
            return LV_EINVAL;
        }
        memcpy(out, want, MANIFEST_ID_HEX + 1);
        return 0;
    }
    key = archive_current_key(db);
    if (!key)
        return LV_ENOMEM;
    rc = store_get(st, key, 0, 0, &buf, &len);
    if (rc == 0) {
        rc = archive_current_decode(buf, len, &cur, cerr, sizeof cerr);
        if (rc == 0) {
            memcpy(out, cur.dbid, MANIFEST_ID_HEX + 1);
            goto out;
        }
        LV_WARN("restore: %s: %s is unreadable (%s); looking for lineages by listing %s/", store_url(st), key, cerr,
                db);
    } else if (rc != LV_ENOENT) {
        lv_seterr(err, errlen, "%s: cannot read %s: %s (%s)", store_url(st), key, lv_strerror(rc),
               store_last_error(st) ? store_last_error(st) : "");
        goto out;
    }

    /* No usable pointer: LIST <db>/ for <db>/<id>/manifest.json. */
    if (asprintf(&prefix, "%s/", db) < 0) {
        prefix = NULL;
        rc = LV_ENOMEM;
        goto out;
    }
    rc = store_list_err(st, prefix, &l, err, errlen);
    if (rc)
        goto out;
    plen = strlen(prefix);
    for (i = 0; i < l.n; i++) {
        const char *rest = l.v[i].key + plen;
        char id[MANIFEST_ID_HEX + 1], merr[512];
        struct manifest m;
        int64_t t;

        if (strncmp(l.v[i].key, prefix, plen) != 0 || strlen(rest) != MANIFEST_ID_HEX + 1 + strlen(MANIFEST_OBJECT) ||
            rest[MANIFEST_ID_HEX] != '/' || strcmp(rest + MANIFEST_ID_HEX + 1, MANIFEST_OBJECT) != 0)
            continue;
        memcpy(id, rest, MANIFEST_ID_HEX);
        id[MANIFEST_ID_HEX] = '\0';
        if (!manifest_id_ok(id))
            continue;
        ncand++;
        if (restore_load_manifest(st, db, id, &m, merr, sizeof merr) != 0) {
            LV_WARN("restore: skipping lineage %s: %s", id, merr);
            continue;
        }
        t = manifest_last_time(&m);
        manifest_free(&m);
        if (!out[0] || t > best_time) {
            best_time = t;
            memcpy(out, id, sizeof id);
        }
    }
    if (!out[0]) {
        rc = LV_ENOENT;
        if (ncand)
            lv_seterr(err, errlen, "%s: database '%s': no readable manifest in its %zu lineage(s)", store_url(st), db,
                   ncand);
        else
            lv_seterr(err, errlen, "%s: database '%s' is not in the archive (no %s and no lineages under %s)",
                   store_url(st), db, key, prefix);
        goto out;
    }
    *listed = 1;
    LV_WARN("restore: %s: no usable %s; chose lineage %s, the newest (last commit %s) of %zu found by listing",
            store_url(st), key, out, lv_fmt_time(best_time, best_t, sizeof best_t), ncand);
    rc = 0;
out:
    store_list_free(&l);
    free(buf);
    free(key);
    free(prefix);
    return rc;
}

int restore_load_tail(struct store *st, const char *db, const char *dbid, struct manifest *m,
                      struct tail_result *tail, char *err, size_t errlen)
{
    char *prefix = NULL;
    int rc;

    memset(tail, 0, sizeof *tail);
    if (asprintf(&prefix, "%s/%s/", db, dbid) < 0)
        return LV_ENOMEM;
    rc = tail_load(st, prefix, m, tail, err, errlen);
    if (rc == 0 && tail->n)
        LV_DEBUG("restore: %s: %zu segment(s) after the manifest's last TXID %" PRIu64 " (not yet in the manifest) "
                "reach TXID %" PRIu64, store_url(st), tail->n, tail->manifest_last, tail->last_txid);
    if (rc == 0 && tail->stop != TAIL_END)
        LV_WARN("restore: %s: the tail after the manifest stops at TXID %" PRIu64 ": %s", store_url(st),
                tail->last_txid, tail->msg);
    free(prefix);
    return rc;
}

/* ---------------------------------------------------------------- helpers */

void restore_result_free(struct restore_result *res)
{
    free(res->objs);
    res->objs = NULL;
    res->nobjs = 0;
}

static int path_exists(const char *p, struct stat *st)
{
    return lstat(p, st) == 0;
}

/* PRAGMA integrity_check on path, opened read-only and immutable (no
 * -wal/-shm are created or read).  0 or LV_ECORRUPT with the first
 * complaint in err. */
static int integrity_check(const char *path, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    char *uri;
    size_t i, n = 0;
    int rc = LV_ECORRUPT, src;

    uri = malloc(strlen(path) * 3 + 32);
    if (!uri)
        return LV_ENOMEM;
    n += (size_t)sprintf(uri, "file:");
    for (i = 0; path[i]; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '%' || c == '?' || c == '#')
            n += (size_t)sprintf(uri + n, "%%%02X", c);
        else
            uri[n++] = (char)c;
    }
    strcpy(uri + n, "?immutable=1");
    src = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    if (src != SQLITE_OK) {
        lv_seterr(err, errlen, "%s: sqlite3 cannot open the restored file: %s", path, db ? sqlite3_errmsg(db) : "?");
        goto out;
    }
    src = sqlite3_prepare_v2(db, "PRAGMA integrity_check(20)", -1, &stmt, NULL);
    if (src != SQLITE_OK) {
        lv_seterr(err, errlen, "%s: integrity_check: %s", path, sqlite3_errmsg(db));
        goto out;
    }
    src = sqlite3_step(stmt);
    if (src != SQLITE_ROW) {
        lv_seterr(err, errlen, "%s: integrity_check: %s", path, sqlite3_errmsg(db));
        goto out;
    }
    if (strcmp((const char *)sqlite3_column_text(stmt, 0), "ok") != 0) {
        lv_seterr(err, errlen, "%s: PRAGMA integrity_check failed: %s", path, (const char *)sqlite3_column_text(stmt, 0));
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    free(uri);
    return rc;
}

/* ---------------------------------------------------------------- progress */

static void fmt_bytes(uint64_t b, char *buf, size_t n)
{
    if (b >= (1ull << 30))
        snprintf(buf, n, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, n, "%.1f MiB", (double)b / (1ull << 20));
    else
        snprintf(buf, n, "%.1f KiB", (double)b / 1024);
}

/* One progress line: bytes downloaded of the total (moving per 8 MiB chunk
 * of a large object), objects, rate and ETA of the download, and the bytes
 * written into the output so far (moving per 8 MiB while applying). */
static void progress_draw(const struct fetch_progress *p, uint64_t written, int64_t t0_us)
{
    char done[32], total[32], rate[32], wrote[32], eta[32] = "--";
    double secs = (double)(lv_mono_us() - t0_us) / 1e6, bps;
    int width = 24, fill;
    char bar[32];

    bps = secs > 0 ? (double)p->bytes_done / secs : 0;
    fmt_bytes(p->bytes_done, done, sizeof done);
    fmt_bytes(p->bytes_total, total, sizeof total);
    fmt_bytes((uint64_t)bps, rate, sizeof rate);
    fmt_bytes(written, wrote, sizeof wrote);
    if (bps > 0 && p->bytes_total >= p->bytes_done)
        snprintf(eta, sizeof eta, "%.0fs", (double)(p->bytes_total - p->bytes_done) / bps);
    fill = p->bytes_total ? (int)((double)p->bytes_done / (double)p->bytes_total * width) : width;
    if (fill > width)
        fill = width;
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(width - fill));
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] %s / %s  %zu/%zu objects  %s/s  ETA %s  written %s   ", bar, done, total, p->objs_done,
            p->objs_total, rate, eta, wrote);
    fflush(stderr);
}

/* ---------------------------------------------------------------- applying a plan */

/* State of one attempt. */
struct attempt {
    const struct restore_opts *o;  /* options */
    struct store *st;              /* store */
    const struct manifest *m;      /* manifest (with the tail) */
    const struct tail_result *tail; /* tail objects added to it */
    struct plan plan;              /* the plan */
    struct restore_result *res;    /* result being filled */
    const char *tmp;               /* PATH.tmp */
    struct txlog_apply *a;         /* apply handle */
    int stop;                      /* target reached: apply nothing more */
    int partial;                   /* damage accepted (--allow-partial): stop here */
    uint64_t retry_txid;           /* RESTORE_RETRY: start over with this target */
    int cur_snap;                  /* the object being applied is the plan's snapshot */
    uint64_t term;                 /* term of the last record applied: terms never go back (txlog L10), across
                                      objects too */
    char drop_key[MANIFEST_KEY_MAX]; /* RESTORE_REPLAN: manifest key of the damaged snapshot */
    char *err;                     /* message buffer */
    size_t errlen;
    struct fetch *f;               /* the downloads, for the progress bar (NULL outside attempt_run) */
    int64_t t0_us;                 /* lv_mono_us at the start, for the progress bar's rate */
    uint64_t written;              /* page bytes written into tmp so far (txlog_apply progress) */
    int drew;                      /* a progress line was drawn */
};

/* Draw the progress line of attempt at (if it shows one). */
static void attempt_progress(struct attempt *at)
{
    struct fetch_progress p;

    if (!at->o->progress || !at->f)
        return;
    fetch_get_progress(at->f, &p);
    progress_draw(&p, at->written, at->t0_us);
    at->drew = 1;
}

/* txlog_apply's progress callback: bytes written into the output so far. */
static void attempt_written(void *arg, uint64_t bytes)
{
    struct attempt *at = arg;

    at->written = bytes;
    attempt_progress(at);
}

/* Damage found (message in msg).  Returns the error, 0 to stop here
 * (partial), or RESTORE_RETRY. */
static int damage(struct attempt *at, int rc, const char *msg)
{
    struct txlog_apply_info inf;
    char tb[40];

    if (!at->o->allow_partial) {
        lv_seterr(at->err, at->errlen, "%s", msg);
        return rc;
    }
    txlog_apply_state(at->a, &inf);
    if (!inf.have && at->cur_snap) {
        /* A damaged snapshot: plan again without it (an older snapshot and the segments may still reach the
         * target exactly). */
        snprintf(at->drop_key, sizeof at->drop_key, "%s", at->plan.snap->key);
        LV_WARN("restore: %s; planning again without this snapshot (--allow-partial)", msg);
        return RESTORE_REPLAN;
    }
    if (!inf.have) {
        lv_seterr(at->err, at->errlen, "nothing restorable before the damage: %s", msg);
        return rc;
    }
    at->partial = 1;
    at->res->partial = 1;
    snprintf(at->res->partial_msg, sizeof at->res->partial_msg, "partial: stopped at TXID %" PRIu64 " (%s): %s",
             inf.txid, lv_fmt_time(inf.time_us, tb, sizeof tb), msg);
    LV_WARN("restore: %s", at->res->partial_msg);
    if (inf.dirty) {
        at->retry_txid = inf.txid;
        return RESTORE_RETRY;
    }
    return 0;
}

/* Apply the records of one object (buf) of the plan; index i (snapshot first). */
static int apply_object(struct attempt *at, size_t i, const struct fetch_res *fr)
{
    const struct restore_obj *ob = &at->res->objs[i];
    const struct manifest_snap *snap = ob->snapshot ? at->plan.snap : NULL;
    const struct manifest_seg *seg = ob->snapshot ? NULL : at->plan.segs[i - (at->plan.snap ? 1 : 0)];
    struct txlog_reader *r = NULL;
    struct txlog_apply_info inf;
    struct txlog_hdr h;
    char msg[900], aerr[700];
    uint64_t nrec = 0, last = 0, last_post = 0;
    int rc;

    rc = txlog_reader_open_mem(fr->buf, fr->len, fr->key, &r);
    if (rc) {
        snprintf(msg, sizeof msg, "object %s: unreadable segment header: %s", fr->key,
                 r ? txlog_reader_error(r) : lv_strerror(rc));
        txlog_reader_close(r);
        return damage(at, rc, msg);
    }
    for (;;) {
        txlog_apply_state(at->a, &inf);
        rc = txlog_reader_next(r, &h);
        if (rc == LV_ENOENT)
            break;
        if (rc) {
            snprintf(msg, sizeof msg, "object %s: TXID %" PRIu64 ": %s", fr->key, inf.have ? inf.txid + 1 : 0,
                     txlog_reader_error(r)[0] ? txlog_reader_error(r) : lv_strerror(rc));
            goto out_damage;
        }
        if (nrec == 0) {
            uint64_t want = snap ? snap->txid : seg->first_txid;
            if (h.txid != want || (snap && !(h.flags & TXLOG_F_SNAPSHOT)) || (seg && h.pre_cksum != seg->pre_cksum)) {
                rc = LV_ECORRUPT;
                snprintf(msg, sizeof msg,
                         "object %s: TXID %" PRIu64 ": first record does not match the manifest (expected %s TXID %" PRIu64
                         "%s)", fr->key, h.txid, snap ? "a snapshot record at" : "", want,
                         seg ? " with its pre checksum" : "");
                goto out_damage;
            }
        } else if (snap) {
            rc = LV_ECORRUPT;
            snprintf(msg, sizeof msg, "object %s: TXID %" PRIu64 ": a snapshot object holds more than one record",
                     fr->key, h.txid);
            goto out_damage;
        }
        nrec++;
        last = h.txid;
        last_post = h.post_cksum;
        if (inf.have && h.txid <= inf.txid)
            continue; /* already applied from an earlier object */
        if (h.txid > at->plan.target_txid ||
            (at->plan.resolve_by_time && inf.have && h.time_us > at->plan.time_us)) {
            at->stop = 1;
            break;
        }
        if (inf.have && h.term < at->term) {
            rc = LV_ECORRUPT;
            snprintf(msg, sizeof msg, "object %s: TXID %" PRIu64 ": term goes back: term %" PRIu64 " after term %" PRIu64
                     " (a deposed primary's record)", fr->key, h.txid, h.term, at->term);
            goto out_damage;
        }
        at->term = h.term;
        aerr[0] = '\0';
        memcpy(at->res->rec_dbid, h.dbid, 16);
        rc = txlog_apply_record(at->a, r, &h, aerr, sizeof aerr);
        if (rc) {
            snprintf(msg, sizeof msg, "object %s: TXID %" PRIu64 ": %s", fr->key, h.txid, aerr[0] ? aerr : lv_strerror(rc));
            /* aerr usually already starts with the key; keep it readable. */
            if (strncmp(aerr, fr->key, strlen(fr->key)) == 0)
                snprintf(msg, sizeof msg, "object %s", aerr);
            goto out_damage;
        }
        if (snap && h.post_cksum != snap->db_cksum) {
            rc = LV_EMISMATCH;
            snprintf(msg, sizeof msg,
                     "object %s: TXID %" PRIu64 ": snapshot checksum %016" PRIx64 " differs from the manifest's %016" PRIx64,
                     fr->key, h.txid, h.post_cksum, snap->db_cksum);
            goto out_damage;
        }
        if (h.txid == at->plan.target_txid) {
            at->stop = 1;
            break;
        }
    }
    if (!at->stop) {
        uint64_t want = snap ? snap->txid : seg->last_txid;
        uint64_t want_post = snap ? snap->db_cksum : seg->post_cksum;
        if (nrec == 0 || last != want || last_post != want_post) {
            rc = LV_ECORRUPT;
            snprintf(msg, sizeof msg,
                     "object %s: TXID %" PRIu64 ": object ends at TXID %" PRIu64 " but the manifest says TXID %" PRIu64
                     " with post checksum %016" PRIx64, fr->key, last + 1, last, want, want_post);
            goto out_damage;
        }
    }
    txlog_reader_close(r);
    return 0;
out_damage:
    txlog_reader_close(r);
    return damage(at, rc, msg);
}

/* Commit time of TXID x if the manifest knows it (for dry runs), else 0. */
static int64_t known_time(const struct manifest *m, uint64_t x)
{
    size_t i;

    for (i = 0; i < m->nsnaps; i++)
        if (m->snaps[i].txid == x)
            return m->snaps[i].time_us;
    for (i = 0; i < m->nsegs; i++) {
        if (m->segs[i].last_txid == x)
            return m->segs[i].last_time_us;
        if (m->segs[i].first_txid == x)
            return m->segs[i].first_time_us;
    }
    return 0;
}

static int fill_objects(struct attempt *at, const char *dbid)
{
    const struct plan *p = &at->plan;
    struct restore_result *res = at->res;
    size_t i, k = 0;

    restore_result_free(res);
    res->objs = calloc(p->objects ? p->objects : 1, sizeof *res->objs);
    if (!res->objs)
        return LV_ENOMEM;
    if (p->snap) {
        struct restore_obj *ob = &res->objs[k++];
        snprintf(ob->key, sizeof ob->key, "%s/%s/%s", at->o->db, dbid, p->snap->key);
        ob->size = p->snap->size;
        ob->snapshot = 1;
        ob->first_txid = ob->last_txid = p->snap->txid;
    }
    for (i = 0; i < p->nsegs; i++) {
        struct restore_obj *ob = &res->objs[k++];
        snprintf(ob->key, sizeof ob->key, "%s/%s/%s", at->o->db, dbid, p->segs[i]->key);
        ob->size = p->segs[i]->size;
        ob->first_txid = p->segs[i]->first_txid;
        ob->last_txid = p->segs[i]->last_txid;
        ob->tail = at->tail && tail_contains(at->tail, p->segs[i]->key);
    }
    res->nobjs = k;
    res->bytes = p->bytes;
    res->start_txid = p->start_txid;
    res->target_min = p->target_min_txid;
    res->target_max = p->target_txid;
    res->target_time_us = known_time(at->m, p->target_txid);
    return 0;
}

/* Plan the restore to *t and list its objects in res.  0 or negative. */
static int attempt_plan(struct attempt *at, const struct plan_target *t, int flags, const char *dbid)
{
    struct restore_result *res = at->res;
    int rc = plan_make(at->m, t, flags, &at->plan);

    if (rc) {
        lv_seterr(at->err, at->errlen, "%s: database '%s' lineage %s: %s", store_url(at->st), at->o->db, dbid,
               at->plan.msg);
        return rc;
    }
    if (at->plan.partial) {
        res->partial = 1;
        snprintf(res->partial_msg, sizeof res->partial_msg, "%s", at->plan.msg);
        LV_WARN("restore: %s", at->plan.msg);
    }
    return fill_objects(at, dbid);
}

/* Start the downloads of the planned objects into *f.  0 or negative. */
static int attempt_fetch(struct attempt *at, struct fetch_obj **fo, struct fetch **f)
{
    const struct restore_result *res = at->res;
    int rc;

    *fo = calloc(res->nobjs ? res->nobjs : 1, sizeof **fo);
    if (!*fo)
        return LV_ENOMEM;
    for (size_t i = 0; i < res->nobjs; i++) {
        (*fo)[i].key = res->objs[i].key;
        (*fo)[i].size = res->objs[i].size;
        (*fo)[i].xxh3 = res->objs[i].snapshot ? at->plan.snap->xxh3
                                              : at->plan.segs[i - (at->plan.snap ? 1 : 0)]->xxh3;
    }
    rc = fetch_start(at->st, *fo, res->nobjs, at->o->parallel > 0 ? at->o->parallel : 4, 0, at->o->mem_budget, f);
    if (rc)
        lv_seterr(at->err, at->errlen, "cannot start the download workers: %s", lv_strerror(rc));
    return rc;
}

/* Wait for object i and apply it (damage handled as the design comment
 * says).  0 or negative. */
static int attempt_object(struct attempt *at, struct fetch *f, size_t i)
{
    const struct restore_opts *o = at->o;
    struct restore_result *res = at->res;
    struct txlog_apply_info inf;
    struct fetch_res fr;
    char msg[900];
    int rc;

    while (!fetch_wait(f, i, o->progress ? 200 : -1, &fr))
        attempt_progress(at);
    attempt_progress(at);
    res->bytes_fetched += fr.len;
    at->cur_snap = res->objs[i].snapshot;
    if (fr.rc && (!fr.buf || fr.rc != LV_EMISMATCH || !o->allow_partial)) {
        snprintf(msg, sizeof msg, "%s (TXIDs %" PRIu64 "..%" PRIu64 ")", fr.err, res->objs[i].first_txid,
                 res->objs[i].last_txid);
        rc = damage(at, fr.rc, msg);
    } else {
        if (fr.rc) /* size or XXH3 wrong: salvage the records that still verify */
            LV_WARN("restore: %s; applying its records that verify (--allow-partial)", fr.err);
        rc = apply_object(at, i, &fr);
        if (rc == 0 && fr.rc && !at->partial && !at->stop) {
            /* Every planned record verified although the object's hash did not: still report it. */
            txlog_apply_state(at->a, &inf);
            snprintf(msg, sizeof msg, "%s (its records up to TXID %" PRIu64 " verified)", fr.err, inf.txid);
            rc = damage(at, fr.rc, msg);
        }
    }
    fetch_release(f, i);
    return rc;
}

/* Every object applied: the planned target must be reached; finish the
 * file (checksum re-read) and fill res.  0 or negative. */
static int attempt_finish(struct attempt *at)
{
    struct restore_result *res = at->res;
    struct txlog_apply_info inf;
    char msg[900];
    int rc;

    txlog_apply_state(at->a, &inf);
    if (!at->partial && !res->partial && !(at->plan.resolve_by_time ? inf.txid >= at->plan.target_min_txid &&
                                                                          inf.txid <= at->plan.target_txid
                                                                    : inf.txid == at->plan.target_txid)) {
        lv_seterr(at->err, at->errlen, "%s: database '%s': the objects reached TXID %" PRIu64 ", not the planned %" PRIu64,
               store_url(at->st), at->o->db, inf.txid, at->plan.target_txid);
        return LV_ECORRUPT;
    }
    if (!inf.have) {
        lv_seterr(at->err, at->errlen, "%s: database '%s': no record applied", store_url(at->st), at->o->db);
        return LV_ENOENT;
    }
    rc = txlog_apply_finish(at->a, msg, sizeof msg);
    if (rc) {
        lv_seterr(at->err, at->errlen, "TXID %" PRIu64 ": %s", inf.txid, msg);
        return rc;
    }
    if (at->o->map_out) {
        cksum_map_free(at->o->map_out);
        cksum_map_init(at->o->map_out);
        rc = cksum_map_copy(at->o->map_out, txlog_apply_map(at->a));
        if (rc) {
            lv_seterr(at->err, at->errlen, "%s", lv_strerror(rc));
            return rc;
        }
    }
    res->txid = inf.txid;
    res->time_us = inf.time_us;
    res->cksum = inf.post_cksum;
    res->page_size = inf.page_size;
    res->db_pages = inf.db_pages;
    return 0;
}

/* One planning + applying pass.  0, RESTORE_RETRY or a negative error. */
static int attempt_run(struct attempt *at, const struct plan_target *t, int flags, const char *dbid)
{
    struct fetch *f = NULL;
    struct fetch_obj *fo = NULL;
    int64_t t0 = lv_mono_us();
    int fd = -1, rc, drew = 0;

    rc = attempt_plan(at, t, flags, dbid);
    if (rc || at->o->dry_run) {
        plan_free(&at->plan);
        return rc;
    }
    fd = sys_open(at->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = fd;
        fd = -1;
        lv_seterr(at->err, at->errlen, "%s: cannot create: %s", at->tmp, lv_strerror(rc));
        goto out;
    }
    at->term = 0;
    rc = txlog_apply_open(fd, at->tmp, &at->a);
    if (rc == 0)
        rc = attempt_fetch(at, &fo, &f);
    at->f = f;
    at->t0_us = t0;
    at->written = 0;
    at->drew = 0;
    if (rc == 0 && at->o->progress)
        txlog_apply_set_progress(at->a, attempt_written, at);
    for (size_t i = 0; rc == 0 && i < at->res->nobjs && !at->stop && !at->partial; i++)
        rc = attempt_object(at, f, i);
    drew = at->drew;
    if (rc)
        goto out;
    attempt_progress(at); /* the final line: everything downloaded and written */
    if (drew)
        fprintf(stderr, "\n");
    at->f = NULL;
    fetch_stop(f);
    f = NULL;
    rc = attempt_finish(at);
out:
    if (drew && f)
        fprintf(stderr, "\n");
    at->f = NULL;
    fetch_stop(f);
    free(fo);
    txlog_apply_close(at->a);
    at->a = NULL;
    if (fd >= 0)
        close(fd);
    if (rc)
        unlink(at->tmp);
    plan_free(&at->plan);
    return rc;
}

/* Refuse an output that exists (unless --force), or skip it with
 * --if-db-not-exists: 1 when there is nothing to do, else 0 or negative. */
static int check_output(const struct restore_opts *o, const char *wal, const char *shm, struct restore_result *res,
                        char *err, size_t errlen)
{
    struct stat sb;

    if (path_exists(o->out_path, &sb) && o->if_not_exists) {
        res->skipped = 1;
        LV_INFO("restore: %s exists; nothing to do (--if-db-not-exists)", o->out_path);
        return 1;
    }
    if (path_exists(o->out_path, &sb) && (sb.st_size > 0 || !S_ISREG(sb.st_mode)) && !o->force) {
        lv_seterr(err, errlen, "%s exists and is not empty; use --force to replace it", o->out_path);
        return LV_EEXIST;
    }
    if ((path_exists(wal, &sb) || path_exists(shm, &sb)) && !o->force) {
        lv_seterr(err, errlen, "%s or %s exists (left by an earlier database; SQLite would apply it to the restored "
               "file); remove it or use --force", wal, shm);
        return LV_EEXIST;
    }
    return 0;
}

/* The tail after the manifest stopped early (tail->stop != TAIL_END): a
 * target beyond it fails, or with --allow-partial becomes the last TXID
 * before it (*t adjusted, res marked partial).  0 or negative. */
static int tail_damage(const struct restore_opts *o, struct store *st, const struct manifest *m,
                       const struct tail_result *tail, const char *dbid, struct plan_target *t,
                       struct restore_result *res, char *err, size_t errlen)
{
    int64_t known = manifest_last_time(m);
    int hit = t->kind == PLAN_LATEST || (t->kind == PLAN_TXID && t->txid > tail->last_txid) ||
              (t->kind == PLAN_TIME && t->time_us > known);

    if (!hit)
        return 0;
    if (!o->allow_partial) {
        lv_seterr(err, errlen, "%s: database '%s' lineage %s: TXIDs after %" PRIu64 " are not restorable: %s",
                  store_url(st), o->db, dbid, tail->last_txid, tail->msg);
        return tail->stop == TAIL_GAP ? LV_EGAP : LV_ECORRUPT;
    }
    res->partial = 1;
    snprintf(res->partial_msg, sizeof res->partial_msg, "partial: stopped at TXID %" PRIu64 ": %s", tail->last_txid,
             tail->msg);
    LV_WARN("restore: %s", res->partial_msg);
    if (t->kind == PLAN_TXID && tail->last_txid > 0)
        t->txid = tail->last_txid;
    return 0;
}

/* Attempt the restore until it succeeds or fails for good: a damaged
 * snapshot is dropped and the restore planned again (at most 16 times); a
 * damaged record that already changed the file starts it over, once, up to
 * the last good TXID.  0 or negative. */
static int run_attempts(struct attempt *at, struct manifest *m, struct plan_target t, int flags, const char *dbid)
{
    struct restore_result *res = at->res;
    int rc;

    for (int tries = 0;; tries++) {
        char keep[sizeof res->partial_msg];
        int was_partial = res->partial;

        memcpy(keep, res->partial_msg, sizeof keep);
        at->stop = at->partial = 0;
        rc = attempt_run(at, &t, flags, dbid);
        if (was_partial && !res->partial) {
            res->partial = 1;
            memcpy(res->partial_msg, keep, sizeof keep);
        }
        if (rc == RESTORE_REPLAN && tries < 16 && manifest_remove(m, at->drop_key) == 0)
            continue;
        if (rc == RESTORE_REPLAN)
            return LV_ECORRUPT;
        if (rc != RESTORE_RETRY)
            return rc;
        if (tries >= 1) {
            lv_seterr(at->err, at->errlen, "%s", res->partial_msg);
            return LV_ECORRUPT;
        }
        /* A damaged record had already changed the file: rebuild up to the last good TXID. */
        t.kind = PLAN_TXID;
        t.txid = at->retry_txid;
        flags = 0;
        LV_INFO("restore: starting over, up to TXID %" PRIu64, t.txid);
    }
}

/* Check PATH.tmp (PRAGMA integrity_check unless disabled), remove a stale
 * -wal/-shm with --force, and publish it as PATH.  0 or negative; on
 * failure PATH.tmp is gone. */
static int finish_output(const struct restore_opts *o, const char *tmp, const char *wal, const char *shm, char *err,
                         size_t errlen)
{
    struct publish pub;
    int rc;

    if (!o->no_integrity_check) {
        rc = integrity_check(tmp, err, errlen);
        if (rc) {
            unlink(tmp);
            return rc;
        }
    }
    if (o->force) {
        if (unlink(wal) != 0 && errno != ENOENT)
            LV_WARN("restore: cannot remove %s: %s", wal, strerror(errno));
        if (unlink(shm) != 0 && errno != ENOENT)
            LV_WARN("restore: cannot remove %s: %s", shm, strerror(errno));
    }
    rc = publish_adopt(&pub, tmp, o->out_path);
    if (!rc)
        rc = publish_commit(&pub); /* fsync, rename, fsync of the directory */
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot publish the restored database: %s", o->out_path, lv_strerror(rc));
        unlink(tmp);
    }
    return rc;
}

int restore_run(const struct restore_opts *o, struct restore_result *res, char *err, size_t errlen)
{
    struct store *st = NULL;
    struct manifest m;
    struct tail_result tail;
    struct attempt at;
    struct plan_target t = o->target;
    char *tmp = NULL, *wal = NULL, *shm = NULL, dbid[MANIFEST_ID_HEX + 1];
    int64_t t0 = lv_mono_us();
    int rc;

    memset(res, 0, sizeof *res);
    memset(&m, 0, sizeof m);
    memset(&tail, 0, sizeof tail);
    if (err && errlen)
        err[0] = '\0';
    if (!o->dry_run) {
        if (!o->out_path || !o->out_path[0]) {
            lv_seterr(err, errlen, "no output path given");
            return LV_EINVAL;
        }
        if (asprintf(&tmp, "%s.tmp", o->out_path) < 0 || asprintf(&wal, "%s-wal", o->out_path) < 0 ||
            asprintf(&shm, "%s-shm", o->out_path) < 0) {
            rc = LV_ENOMEM;
            goto out;
        }
        rc = check_output(o, wal, shm, res, err, errlen);
        if (rc) {
            rc = rc > 0 ? 0 : rc;
            goto out;
        }
    }
    rc = restore_open_archive(o->url, o->sopts, &st, NULL, err, errlen);
    if (rc)
        goto out;
    rc = restore_find_lineage(st, o->db, o->lineage, dbid, &res->lineage_listed, err, errlen);
    if (rc)
        goto out;
    memcpy(res->dbid, dbid, sizeof dbid);
    if (restore_deleted(st, o->db, dbid, &res->deleted_us, NULL) < 0)
        res->deleted_us = 0; /* unreadable: restored as not deleted (it is restored either way) */
    rc = restore_load_manifest(st, o->db, dbid, &m, err, errlen);
    if (rc)
        goto out;
    rc = restore_load_tail(st, o->db, dbid, &m, &tail, err, errlen);
    if (rc)
        goto out;
    res->tail_objects = tail.n;
    res->manifest_txid = tail.manifest_last;
    if (tail.stop != TAIL_END && (rc = tail_damage(o, st, &m, &tail, dbid, &t, res, err, errlen)) != 0)
        goto out;
    rc = check_after_end(o, &m, res, err, errlen);
    if (rc)
        goto out;
    at = (struct attempt){.o = o, .st = st, .m = &m, .tail = &tail, .res = res, .tmp = tmp, .err = err,
                          .errlen = errlen};
    rc = run_attempts(&at, &m, t, o->allow_partial ? PLAN_ALLOW_PARTIAL : 0, dbid);
    if (rc == 0 && !o->dry_run)
        rc = finish_output(o, tmp, wal, shm, err, errlen);
out:
    if (rc != 0)
        restore_result_free(res); /* on failure res owns nothing */
    res->seconds = (double)(lv_mono_us() - t0) / 1e6;
    tail_result_free(&tail);
    manifest_free(&m);
    store_close(st);
    free(tmp);
    free(wal);
    free(shm);
    return rc;
}
