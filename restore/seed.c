/*
 * seed.c -- seeding a node's data.dir from an archive (seed.h).
 *
 * WHAT "SEEDED" MEANS: for each database, data.dir/files/NAME is the
 * database at TXID T (the archive's latest, or a chosen TXID or time for
 * one database), and data.dir/meta/<escaped NAME>/ holds its database ID
 * (the one the archive's records carry), its checksum state at T and a log
 * that continues after T without holding any record (capture/db_seed.c,
 * log/txlog_base.c).  The daemon then loads it at T with the archive's ID
 * and checksum, writes no reconcile record and no snapshot, and its next
 * record -- a local commit, or one a primary streams -- is TXID T+1 whose
 * pre checksum is the checksum at T.  A replica therefore asks its primary
 * only for the records after T.
 *
 * STEPS (seed_run)
 *   1. Lock data.dir (data.dir/lock, as the daemon does): a running daemon
 *      or another seed is refused.  Then refuse a data.dir that already
 *      holds a database (every database), or that database (--db NAME).
 *   2. Names: --db NAME, else every database of the archive: one LIST of
 *      the archive, keys <name>/current.json and <name>/<id>/manifest.json.
 *   3. Restore each database with restore_run into data.dir/tmp/seed/<i>.db
 *      (every object, record and checksum verified; the page checksums the
 *      apply computed come back in map_out, so the file is not read again).
 *      PRAGMA integrity_check is not run: the file is verified byte-exact
 *      against the primary's own checksums, and a 1 GiB check would cost
 *      more than the download (bench: seeding <= 1.2x download +
 *      decompress).
 *   4. Install them all (db_seed_install: metadata first, the file's rename
 *      last).  If one fails, those installed before it are removed again
 *      (db_seed_uninstall): a seed installs every database or none, and a
 *      database is never visible without its metadata.
 *   5. data.dir/tmp/seed is removed, whatever happened (a crash leaves it:
 *      the next seed removes it first; data.dir/tmp is not the daemon's
 *      until it starts, which needs the lock).
 * A crash (SIGKILL, power) during step 4 -- renames and small metadata
 * files, milliseconds -- can leave some databases installed and not the
 * others.  Each installed one is complete and consistent (its file's
 * rename was its commit point); the others are simply absent, so a
 * replica gets them from its primary, and a rerun with --db adds them.
 *
 * COST: one download of the planned objects and one write of the database
 * (restore's apply), one read of it (the checksum re-read of
 * txlog_apply_finish), the state file (8 bytes a page), and two renames.
 * Nothing is recompressed: the local log gets no record.
 *
 * REPLICAS (seed_if_empty): a node that is not the primary, with an
 * `archive:` and replication.seed (default true), calls it at start-up
 * before opening its registry: a data.dir whose files/ is empty is seeded
 * from the first archive destination.  On a replica the archive only
 * serves seeding; nothing is uploaded from it.  A failure leaves data.dir
 * as it was (empty): the daemon may log it and let the primary send
 * snapshots instead.
 *
 * Databases deleted on the primary stay in the archive and are seeded
 * too: a replica's primary drops them (DROP frames) when it connects.
 */
#include "restore/seed.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/archiver.h"
#include "archive/current.h"
#include "base/cksum.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"
#include "capture/db.h"
#include "restore/restore.h"
#include "store/store.h"

void seed_result_free(struct seed_result *res)
{
    for (size_t i = 0; i < res->n; i++)
        free(res->dbs[i].name);
    free(res->dbs);
    res->dbs = NULL;
    res->n = 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* rm -r path (absent: fine). */
static void rm_tree(const char *path)
{
    struct stat st;

    if (lstat(path, &st) == 0 && nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        LV_WARN("seed: cannot remove %s: %s", path, strerror(errno));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Is s (len bytes) a lineage ID (32 lower-case hex digits)? */
static int is_id(const char *s, size_t len)
{
    if (len != MANIFEST_ID_HEX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* The database name a key names (<name>/current.json or
 * <name>/<id>/manifest.json): its length, or 0. */
static size_t key_db(const char *key)
{
    size_t len = strlen(key), cl = strlen(ARCHIVE_CURRENT_OBJECT), ml = strlen(MANIFEST_OBJECT);

    if (len > cl + 1 && key[len - cl - 1] == '/' && strcmp(key + len - cl, ARCHIVE_CURRENT_OBJECT) == 0)
        return len - cl - 1;
    if (len > ml + MANIFEST_ID_HEX + 2 && strcmp(key + len - ml, MANIFEST_OBJECT) == 0 && key[len - ml - 1] == '/' &&
        key[len - ml - MANIFEST_ID_HEX - 2] == '/' && is_id(key + len - ml - MANIFEST_ID_HEX - 1, MANIFEST_ID_HEX))
        return len - ml - MANIFEST_ID_HEX - 2;
    return 0;
}

void seed_names_free(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

int seed_archive_names(struct store *st, char ***names, size_t *n, char *err, size_t errlen)
{
    struct store_list l = {0};
    char **v = NULL;
    size_t k = 0, u = 0;
    int rc;

    *names = NULL;
    *n = 0;
    rc = store_list_err(st, "", &l, err, errlen);
    if (rc)
        goto out;
    v = calloc(l.n ? l.n : 1, sizeof *v);
    if (!v) {
        rc = LV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        size_t len = key_db(l.v[i].key);
        if (!len)
            continue;
        v[k] = strndup(l.v[i].key, len);
        if (!v[k]) {
            rc = LV_ENOMEM;
            goto out;
        }
        k++;
    }
    if (k > 1)
        qsort(v, k, sizeof *v, cmp_str);
    for (size_t i = 0; i < k; i++) {
        if (u && strcmp(v[u - 1], v[i]) == 0) {
            free(v[i]);
            continue;
        }
        v[u++] = v[i];
    }
    *names = v;
    *n = u;
    v = NULL;
    k = 0;
out:
    seed_names_free(v, k);
    store_list_free(&l);
    return rc;
}

/* Names of every database of the archive at o->url, sorted and unique,
 * into *out (malloc'ed array of malloc'ed strings) and *n. */
static int archive_names(const struct seed_opts *o, char ***out, size_t *n, char *err, size_t errlen)
{
    struct store *st = NULL;
    int rc, empty = 0;

    *out = NULL;
    *n = 0;
    rc = restore_open_archive(o->url, o->sopts, &st, &empty, err, errlen);
    if (rc == 0 && !empty)
        rc = seed_archive_names(st, out, n, err, errlen);
    /* Databases deleted on their primary (deleted.json names their current
     * lineage) are not seeded; --db NAME still seeds one. */
    size_t kept = 0;
    for (size_t i = 0; rc == 0 && i < *n; i++) {
        char lineage[MANIFEST_ID_HEX + 1], tb[40], ferr[256];
        int listed = 0, del = 0;
        int64_t when = 0;
        if (restore_find_lineage(st, (*out)[i], NULL, lineage, &listed, ferr, sizeof ferr) == 0)
            del = restore_deleted(st, (*out)[i], lineage, &when, NULL);
        if (del > 0) {
            LV_INFO("seed: %s was deleted at %s (%s/deleted.json): not seeded (--db %s seeds it anyway)", (*out)[i],
                    lv_fmt_time(when, tb, sizeof tb), (*out)[i], (*out)[i]);
            free((*out)[i]);
        } else {
            (*out)[kept++] = (*out)[i];
        }
    }
    if (rc == 0)
        *n = kept;
    store_close(st);
    return rc;
}

/* Step 1: may this data.dir be seeded?  0; 1: skip (if_empty); or LV_EEXIST with a message. */
static int check_data_dir(const struct seed_opts *o, struct seed_result *res, char *err, size_t errlen)
{
    static const char *const sufs[] = {"", "-wal", "-journal", "-shm"};
    char what[256];
    struct stat st;
    int used;

    if (!o->db) {
        used = db_seed_dir_used(o->data_dir, what, sizeof what);
        if (used < 0) {
            lv_seterr(err, errlen, "data.dir %s: cannot read %s/files: %s", o->data_dir, o->data_dir,
                      lv_strerror(used));
            return used;
        }
        if (used && o->if_empty) {
            res->skipped = 1;
            snprintf(res->held, sizeof res->held, "%s", what);
            return 1;
        }
        if (used) {
            lv_seterr(err, errlen, "data.dir %s already holds databases (files/%s): seeding builds the data.dir of a "
                      "new node; give an empty data.dir, or --db NAME to add a database it does not hold",
                      o->data_dir, what);
            return LV_EEXIST;
        }
        return 0;
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(sufs); i++) {
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/files/%s%s", o->data_dir, o->db, sufs[i]);
        if (lstat(path, &st) == 0) {
            lv_seterr(err, errlen, "data.dir %s already holds %s'%s%s' (%s): seeding never replaces a database",
                      o->data_dir, i ? "" : "database ", o->db, sufs[i], path);
            return LV_EEXIST;
        }
    }
    return 0;
}

/* One database restored into the staging directory, waiting to be installed. */
struct staged {
    char file[PATH_MAX + 32];  /* its file in the staging directory */
    struct cksum_map map;      /* its page checksums (owned) */
    uint8_t id[16];            /* its database ID */
    int installed;             /* db_seed_install succeeded */
};

/* Step 3 for database i: restore it (its lineage `lineage`, NULL: the
 * current one) into k->file. */
static int restore_one(const struct seed_opts *o, const char *lineage, const char *stage, size_t i, struct seed_db *d,
                       struct staged *k, char *err, size_t errlen)
{
    struct restore_opts ro = {.url = o->url, .sopts = o->sopts, .db = d->name, .lineage = lineage, .target = o->target,
                              .parallel = o->parallel, .no_integrity_check = 1, .progress = o->progress,
                              .map_out = &k->map};
    struct restore_result rr;
    char rerr[2048] = "";
    int rc;

    snprintf(k->file, sizeof k->file, "%s/%zu.db", stage, i);
    ro.out_path = k->file;
    rc = restore_run(&ro, &rr, rerr, sizeof rerr);
    if (rc) {
        lv_seterr(err, errlen, "database '%s': %s", d->name, rerr[0] ? rerr : lv_strerror(rc));
    } else {
        memcpy(k->id, rr.rec_dbid, 16);
        memcpy(d->lineage, rr.dbid, sizeof d->lineage);
        lv_hex(rr.rec_dbid, 16, d->id);
        d->txid = rr.txid;
        d->time_us = rr.time_us;
        d->cksum = rr.cksum;
        d->page_size = rr.page_size;
        d->db_pages = rr.db_pages;
        d->bytes = rr.bytes_fetched;
        d->seconds = rr.seconds;
        if (rr.partial || k->map.total != rr.cksum) { /* never: not asked for */
            lv_seterr(err, errlen, "database '%s': the restore did not reach a verified TXID", d->name);
            rc = LV_ECORRUPT;
        }
    }
    restore_result_free(&rr);
    return rc;
}

/* Step 4: install every staged database, or none. */
static int install_all(const struct seed_opts *o, const char *stage, struct seed_result *res, struct staged *k,
                       char *err, size_t errlen)
{
    int rc = 0;

    for (size_t i = 0; i < res->n && rc == 0; i++) {
        struct db_seed s = {.name = res->dbs[i].name, .txid = res->dbs[i].txid, .time_us = res->dbs[i].time_us,
                            .cksum = res->dbs[i].cksum, .map = &k[i].map};
        memcpy(s.id, k[i].id, 16);
        rc = db_seed_install(o->data_dir, &s, k[i].file, stage, err, errlen);
        k[i].installed = rc == 0;
    }
    if (rc)
        for (size_t i = res->n; i-- > 0;)
            if (k[i].installed)
                db_seed_uninstall(o->data_dir, res->dbs[i].name);
    return rc;
}

int seed_run(const struct seed_opts *o, struct seed_result *res, char *err, size_t errlen)
{
    char stage[PATH_MAX + 16], tmp[PATH_MAX];
    struct staged *k = NULL;
    char **names = NULL;
    size_t nnames = 0;
    int64_t t0 = lv_mono_us();
    int lockfd = -1, staged = 0, rc;

    memset(res, 0, sizeof *res);
    if (err && errlen)
        err[0] = '\0';
    if (!o->db && o->target.kind != PLAN_LATEST) {
        lv_seterr(err, errlen, "a TXID or time target needs one database (--db NAME)");
        return LV_EINVAL;
    }
    rc = db_seed_lock(o->data_dir, &lockfd, err, errlen);
    if (rc)
        return rc;
    rc = check_data_dir(o, res, err, errlen);
    if (rc) {
        rc = rc > 0 ? 0 : rc;
        goto out;
    }
    if (o->db) {
        names = calloc(1, sizeof *names);
        if (names && (names[0] = strdup(o->db)) != NULL)
            nnames = 1;
        else
            rc = LV_ENOMEM;
    } else {
        rc = archive_names(o, &names, &nnames, err, errlen);
    }
    if (rc)
        goto out;
    if (nnames == 0) {
        LV_INFO("seed: the archive at %s holds no database; nothing to seed", o->url);
        goto out;
    }
    res->dbs = calloc(nnames, sizeof *res->dbs);
    k = calloc(nnames, sizeof *k);
    if (!res->dbs || !k) {
        rc = LV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nnames; i++) {
        res->dbs[i].name = names[i];
        names[i] = NULL;
        cksum_map_init(&k[i].map);
    }
    res->n = nnames;
    dbreg_tmp_dir(o->data_dir, tmp, sizeof tmp);
    snprintf(stage, sizeof stage, "%s/seed", tmp);
    rm_tree(stage); /* left by a seed that crashed */
    rc = sys_mkdir_p(stage);
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot create the staging directory: %s", stage, lv_strerror(rc));
        goto out;
    }
    staged = 1;
    for (size_t i = 0; i < res->n && rc == 0; i++) {
        rc = restore_one(o, NULL, stage, i, &res->dbs[i], &k[i], err, errlen);
        res->bytes += res->dbs[i].bytes;
    }
    if (rc == 0)
        rc = install_all(o, stage, res, k, err, errlen);
out:
    if (staged)
        rm_tree(stage);
    for (size_t i = 0; k && i < res->n; i++)
        cksum_map_free(&k[i].map);
    free(k);
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    if (lockfd >= 0)
        close(lockfd);
    if (rc)
        seed_result_free(res);
    res->seconds = (double)(lv_mono_us() - t0) / 1e6;
    return rc;
}

int seed_if_empty(const char *data_dir, const struct archiver_dest *archive, size_t narchive, int is_replica,
                  int seed_enabled, struct seed_result *res, char *err, size_t errlen)
{
    struct store_opts so;
    struct seed_opts o = {.data_dir = data_dir, .target = {.kind = PLAN_LATEST}, .if_empty = 1};
    char tb[40];
    int rc;

    memset(res, 0, sizeof *res);
    if (!is_replica || !seed_enabled || !archive || narchive == 0) {
        LV_DEBUG("seed: not seeding %s (%s)", data_dir,
                 !is_replica ? "this node is the primary" : !seed_enabled ? "replication.seed is off" : "no archive");
        return 0;
    }
    archiver_store_opts(&archive[0], &so);
    o.url = archive[0].url;
    o.sopts = &so;
    rc = seed_run(&o, res, err, errlen);
    if (rc) {
        LV_ERROR("seed: seeding %s from the archive %s failed: %s", data_dir, o.url, err && errlen ? err : "");
        return rc;
    }
    if (res->skipped) {
        LV_DEBUG("seed: %s already holds databases (files/%s); not seeding", data_dir, res->held);
        return 0;
    }
    for (size_t i = 0; i < res->n; i++)
        LV_INFO("seed: %s from the archive at TXID %" PRIu64 " (committed %s, checksum %016" PRIx64 ")",
                res->dbs[i].name, res->dbs[i].txid, lv_fmt_time(res->dbs[i].time_us, tb, sizeof tb),
                res->dbs[i].cksum);
    if (res->n)
        LV_INFO("seed: seeded %zu database(s) into %s from %s in %.2f s (%" PRIu64 " bytes downloaded); the primary "
                "sends only what follows",
                res->n, data_dir, o.url, res->seconds, res->bytes);
    return 0;
}

int seed_add_to_registry(struct dbreg *reg, const char *url, const struct store_opts *so, const char *name,
                         const char *lineage, const uint8_t want_id[16], struct seed_db *out, char *err,
                         size_t errlen)
{
    struct seed_opts o = {.data_dir = dbreg_data_dir(reg), .url = url, .sopts = so, .db = name,
                          .target = {.kind = PLAN_LATEST}};
    struct staged k;
    char tmp[PATH_MAX], stage[PATH_MAX + 32], idh[MANIFEST_ID_HEX + 1];
    int rc;

    memset(out, 0, sizeof *out);
    memset(&k, 0, sizeof k);
    cksum_map_init(&k.map);
    if (err && errlen)
        err[0] = '\0';
    out->name = strdup(name);
    if (!out->name) {
        rc = LV_ENOMEM;
        goto out_free;
    }
    dbreg_tmp_dir(o.data_dir, tmp, sizeof tmp);
    snprintf(stage, sizeof stage, "%s/seed-running", tmp);
    rm_tree(stage); /* left by a daemon that died in here */
    rc = sys_mkdir_p(stage);
    if (rc) {
        lv_seterr(err, errlen, "database '%s': cannot create the staging directory %s: %s", name, stage,
                  lv_strerror(rc));
        goto out_free;
    }
    rc = restore_one(&o, lineage, stage, 0, out, &k, err, errlen);
    if (rc == 0 && want_id && memcmp(k.id, want_id, 16) != 0) {
        lv_hex(want_id, 16, idh);
        lv_seterr(err, errlen, "database '%s': the archive's records (lineage %s) carry database ID %s, not %s as "
                  "its first object said", name, out->lineage, out->id, idh);
        rc = LV_EMISMATCH;
    }
    if (rc == 0) {
        struct db_seed s = {.name = name, .txid = out->txid, .time_us = out->time_us, .cksum = out->cksum,
                            .map = &k.map};
        memcpy(s.id, k.id, 16);
        rc = dbreg_seed_add(reg, &s, k.file, stage, err, errlen);
    }
    rm_tree(stage);
out_free:
    cksum_map_free(&k.map);
    if (rc) {
        free(out->name);
        out->name = NULL;
    }
    return rc;
}
