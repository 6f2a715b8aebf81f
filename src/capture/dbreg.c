/*
 * dbreg.c -- the registry of databases: one struct db per database file
 * under data.dir/files, found by the start-up scan (scan_dir, which loads
 * each SQLite database: db_load) or created at a file's first use
 * (dbreg_get with create).  It serves the FUSE layer (get/put, rename,
 * unlink), the daemon (open/close, state saving, log syncing on directory
 * fsync) and the read side (status JSON, metrics, dbreg_list).
 *
 * LIFETIME: a db is referenced by the table while it is live and by each
 * dbreg_get; db_put frees a db that is retired (unlinked, or replaced by a
 * rename) once its last reference goes.  A rename moves the metadata
 * directory with the name, so a database keeps its history and ID; an
 * unlink moves it to data.dir/retired/ (nothing is thrown away).
 *
 * LOCKING: r->mu guards the table and each db's name, refs and retired;
 * it is taken before d->mu (db.c).  Functions ending in _locked run with
 * r->mu held.
 */
#include "capture/db.h"
#include "capture/db_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/cksum.h"
#include "base/dbhdr.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/metrics.h"
#include "base/publish.h"
#include "base/sys.h"
#include "base/worker.h"
#include "log/txlog.h"

static unsigned name_hash(const char *s)
{
    unsigned h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h % DB_NBUCKETS;
}


static struct db *db_new(struct dbreg *r, const char *name)
{
    struct db *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->name = strdup(name);
    if (!d->name) {
        free(d);
        return NULL;
    }
    d->reg = r;
    d->fd = -1;
    d->mnt_fd = -1;
    if (lv_cond_init(&d->img_cv) != 0) {
        free(d->name);
        free(d);
        return NULL;
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_mutex_init(&d->img_mu, NULL);
    cksum_map_init(&d->map);
    return d;
}

void db_free(struct db *d)
{
    if (d->log)
        txlog_close(d->log);
    if (d->fd >= 0)
        close(d->fd);
    if (d->mnt_fd >= 0)
        close(d->mnt_fd);
    cksum_map_free(&d->map);
    free(d->wal_keep.buf);
    free(d->dirty);
    free(d->name);
    pthread_mutex_destroy(&d->mu);
    pthread_mutex_destroy(&d->img_mu);
    pthread_cond_destroy(&d->img_cv);
    free(d);
}

static struct db *find_locked(struct dbreg *r, const char *name)
{
    for (struct db *d = r->buckets[name_hash(name)]; d; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

static void insert_locked(struct dbreg *r, struct db *d)
{
    unsigned b = name_hash(d->name);
    d->next = r->buckets[b];
    r->buckets[b] = d;
}

static void remove_locked(struct dbreg *r, struct db *d)
{
    struct db **pp = &r->buckets[name_hash(d->name)];
    while (*pp && *pp != d)
        pp = &(*pp)->next;
    if (*pp)
        *pp = d->next;
    d->next = NULL;
}


static void scan_dir(struct dbreg *r, const char *rel)
{
    int dfd = rel[0] ? openat(r->rootfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : dup(r->rootfd);
    if (dfd < 0)
        return;
    DIR *dir = fdopendir(dfd);
    if (!dir) {
        close(dfd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        char path[PATH_MAX], dbname[PATH_MAX];
        enum db_filekind k;
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        if (fstatat(r->rootfd, path, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            scan_dir(r, path);
            continue;
        }
        if (!S_ISREG(st.st_mode) || db_classify(path, &k, dbname, sizeof dbname) != 0 || k != DBF_MAIN)
            continue;
        struct db *d = dbreg_get(r, path, 1);
        if (!d)
            continue;
        pthread_mutex_lock(&d->mu);
        uint8_t h[100];
        int fd = db_main_fd(d);
        if (st.st_size == 0) {
            d->kind = DBK_UNKNOWN;
        } else if (fd >= 0 && pread(fd, h, sizeof h, 0) >= 16 && dbhdr_magic_ok(h)) {
            d->hdr_wal = h[18] == 2;
            db_load(d);
        } else {
            d->kind = DBK_PLAIN;
        }
        pthread_mutex_unlock(&d->mu);
        db_put(d);
    }
    closedir(dir);
}

int dbreg_open(const struct dbreg_opts *cfg, struct dbreg **out, char *err, size_t errlen)
{
    struct dbreg *r = calloc(1, sizeof *r);
    int rc;
    if (!r)
        return LV_ENOMEM;
    snprintf(r->data_dir, sizeof r->data_dir, "%s", cfg->data_dir);
    r->segment_size = (uint64_t)cfg->segment_size;
    r->verify_files = cfg->verify_files;
    r->deleted_notes = cfg->deleted_notes;
    r->rootfd = -1;
    r->lockfd = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->apply_mu, NULL);
    pthread_mutex_init(&r->url_mu, NULL);
    pthread_mutex_init(&r->seq_mu, NULL);
    if (lv_cond_init(&r->seq_cv) != 0) {
        free(r);
        return LV_ENOMEM;
    }
    snprintf(r->files, sizeof r->files, "%s/files", cfg->data_dir);
    snprintf(r->meta, sizeof r->meta, "%s/meta", cfg->data_dir);
    snprintf(r->retired, sizeof r->retired, "%s/retired", cfg->data_dir);
    const char *dirs[] = {r->files, r->meta, r->retired};
    for (size_t i = 0; i < 3; i++) {
        rc = sys_mkdir_p(dirs[i]);
        if (rc) {
            snprintf(err, errlen, "data.dir %s: cannot create %s (%s); check that it exists and is writable",
                     cfg->data_dir, dirs[i], lv_strerror(rc));
            goto out_free;
        }
    }
    char lockp[PATH_MAX + 32];
    snprintf(lockp, sizeof lockp, "%s/lock", cfg->data_dir);
    r->lockfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (r->lockfd < 0 || flock(r->lockfd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "data.dir %s is in use by another litevault process (%s is locked); stop it or "
                 "choose another data.dir", cfg->data_dir, lockp);
        rc = LV_EBUSY;
        goto out_free;
    }
    char probe[PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/.write-probe", r->meta);
    int pfd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (pfd < 0) {
        snprintf(err, errlen, "data.dir %s is not writable (%s); fix its permissions or set data.dir elsewhere",
                 cfg->data_dir, strerror(errno));
        rc = LV_EPERM;
        goto out_free;
    }
    close(pfd);
    unlink(probe);
    r->rootfd = open(r->files, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r->rootfd < 0) {
        snprintf(err, errlen, "data.dir: cannot open %s: %s", r->files, strerror(errno));
        rc = LV_EIO;
        goto out_free;
    }
    db_syncer_start(r);
    scan_dir(r, "");
    *out = r;
    return 0;
out_free:
    if (r->rootfd >= 0)
        close(r->rootfd);
    if (r->lockfd >= 0)
        close(r->lockfd);
    free(r);
    return rc;
}

void dbreg_close(struct dbreg *r)
{
    if (!r)
        return;
    db_watch_stop(r);
    dbreg_save_states(r, 1);
    db_syncer_stop(r);
    for (int b = 0; b < DB_NBUCKETS; b++) {
        struct db *d = r->buckets[b];
        while (d) {
            struct db *n = d->next;
            pthread_mutex_lock(&d->mu);
            if (d->kind == DBK_SQLITE && d->log && d->hdr_wal && !d->broken)
                db_wal_capture(d); /* the last commits the watcher may not have reached */
            if (d->log && d->log_unsynced)
                txlog_sync(d->log);
            pthread_mutex_unlock(&d->mu);
            db_free(d);
            d = n;
        }
    }
    close(r->rootfd);
    close(r->lockfd);
    free(r->primary_url);
    pthread_cond_destroy(&r->seq_cv);
    free(r);
}

const char *dbreg_data_dir(const struct dbreg *r)
{
    return r->data_dir;
}

int dbreg_rootfd(const struct dbreg *r) { return r->rootfd; }

struct db *dbreg_get(struct dbreg *r, const char *name, int create)
{
    struct db *d;
    pthread_mutex_lock(&r->mu);
    d = find_locked(r, name);
    if (!d && create) {
        d = db_new(r, name);
        if (d)
            insert_locked(r, d);
    }
    if (d)
        d->refs++;
    pthread_mutex_unlock(&r->mu);
    return d;
}

void db_put(struct db *d)
{
    struct dbreg *r;
    int free_it;
    if (!d)
        return;
    r = d->reg;
    pthread_mutex_lock(&r->mu);
    free_it = --d->refs == 0 && d->retired;
    pthread_mutex_unlock(&r->mu);
    if (free_it)
        db_free(d);
}

/* Notes of names databases left (dbreg_deleted_note), gathered under r->mu
 * and written after it is released: each is an fsynced publish, and a
 * directory rename may move many databases. */
struct noteq {
    struct { char *name; uint8_t id[16]; int reason; } *v; /* entries (names owned; reason DBREG_LEFT_*) */
    size_t n, cap;
};

/* Queue the note that database id left name for reason (DBREG_LEFT_*; a
 * failure is logged: only the note is lost, as when writing it fails). */
static void noteq_push(struct dbreg *r, struct noteq *q, const char *name, const uint8_t id[16], int reason)
{
    char *nm;

    if (!r->deleted_notes)
        return;
    if (lv_grow((void **)&q->v, &q->cap, q->n, sizeof *q->v, 4) != 0 || !(nm = strdup(name))) {
        LV_WARN("%s: out of memory noting that it left this name; the archiver notices it at its next round",
                name);
        return;
    }
    q->v[q->n].name = nm;
    memcpy(q->v[q->n].id, id, 16);
    q->v[q->n].reason = reason;
    q->n++;
}

/* Write the queued notes (caller does not hold r->mu) and free q's entries. */
static void noteq_flush(struct dbreg *r, struct noteq *q)
{
    for (size_t i = 0; i < q->n; i++) {
        dbreg_deleted_note(r, q->v[i].name, q->v[i].id, q->v[i].reason); /* the archive's tombstone */
        free(q->v[i].name);
    }
    free(q->v);
    q->v = NULL;
    q->n = q->cap = 0;
}

/* Move a database's metadata to retired/, queueing the note of the name it
 * left, for reason (DBREG_LEFT_DELETED or _REPLACED), in q (caller holds
 * r->mu). */
static void retire_locked(struct dbreg *r, struct db *d, int reason, struct noteq *q)
{
    char hex[33];
    remove_locked(r, d);
    d->retired = 1;
    pthread_mutex_lock(&d->mu);
    if (d->kind == DBK_SQLITE) {
        if (d->log && d->hdr_wal && !d->broken)
            db_wal_capture(d); /* commits its -wal still holds go into the kept log */
        if (d->log && d->log_unsynced)
            txlog_sync(d->log);
        lv_hex(d->id, 16, hex);
        if (db_retire_dir(r, d->metadir, hex) == 0)
            LV_INFO("%s: deleted; its log is kept under %s", d->name, r->retired);
        noteq_push(r, q, d->name, d->id, reason);
        if (d->log) {
            txlog_close(d->log);
            d->log = NULL;
        }
    }
    d->kind = DBK_PLAIN;
    pthread_mutex_unlock(&d->mu);
}

void dbreg_unlinked(struct dbreg *r, const char *name)
{
    struct noteq q = {0};
    pthread_mutex_lock(&r->mu);
    struct db *d = find_locked(r, name);
    if (d) {
        retire_locked(r, d, DBREG_LEFT_DELETED, &q);
        if (d->refs == 0) {
            pthread_mutex_unlock(&r->mu);
            db_free(d);
            noteq_flush(r, &q);
            dbreg_bump_seq(r);
            return;
        }
    }
    pthread_mutex_unlock(&r->mu);
    noteq_flush(r, &q);
    if (d)
        dbreg_bump_seq(r);
}

/* Rename one database's entry and metadata, queueing the notes of the
 * names left in q (caller holds r->mu). */
static void rename_one_locked(struct dbreg *r, struct db *d, const char *to, struct noteq *q)
{
    struct db *old = find_locked(r, to);
    if (old && old != d) {
        retire_locked(r, old, DBREG_LEFT_REPLACED, q);
        if (old->refs == 0)
            db_free(old);
    }
    remove_locked(r, d);
    pthread_mutex_lock(&d->mu);
    char *nn = strdup(to);
    if (nn) {
        char oldmeta[PATH_MAX];
        LV_INFO("%s: renamed to %s", d->name, to);
        if (d->kind == DBK_SQLITE)
            noteq_push(r, q, d->name, d->id, DBREG_LEFT_RENAMED); /* the archive's tombstone of that name */
        free(d->name);
        d->name = nn;
        if (d->kind == DBK_SQLITE) {
            memcpy(oldmeta, d->metadir, sizeof oldmeta);
            db_set_metadir(d);
            if (rename(oldmeta, d->metadir) != 0)
                LV_ERROR("rename %s -> %s: %s", oldmeta, d->metadir, strerror(errno));
        } else {
            db_set_metadir(d);
        }
    }
    pthread_mutex_unlock(&d->mu);
    insert_locked(r, d);
}

void dbreg_renamed(struct dbreg *r, const char *from, const char *to)
{
    struct noteq q = {0};
    size_t fl = strlen(from);
    pthread_mutex_lock(&r->mu);
    struct db *d = find_locked(r, from);
    if (d) {
        rename_one_locked(r, d, to, &q);
    } else {
        /* A directory: move every database below it (all of them: the
         * list is taken first, as each move rehashes). */
        struct db **moved = NULL;
        size_t n = 0, cap = 0;
        int oom = 0;
        for (int b = 0; b < DB_NBUCKETS; b++)
            for (struct db *e = r->buckets[b]; e; e = e->next)
                if (strncmp(e->name, from, fl) == 0 && e->name[fl] == '/') {
                    if (lv_grow((void **)&moved, &cap, n, sizeof *moved, 64) != 0) {
                        oom = 1;
                        continue;
                    }
                    moved[n++] = e;
                }
        if (oom)
            LV_ERROR("%s renamed to %s: out of memory listing the databases below it; some keep their old names "
                     "here until the daemon restarts", from, to);
        for (size_t i = 0; i < n; i++) {
            char nn[PATH_MAX];
            snprintf(nn, sizeof nn, "%s%s", to, moved[i]->name + fl);
            rename_one_locked(r, moved[i], nn, &q);
        }
        free(moved);
    }
    pthread_mutex_unlock(&r->mu);
    noteq_flush(r, &q);
    dbreg_bump_seq(r);
}

void dbreg_save_states(struct dbreg *r, int force)
{
    struct db *list[4096];
    size_t n = 0;
    pthread_mutex_lock(&r->mu);
    for (int b = 0; b < DB_NBUCKETS; b++)
        for (struct db *d = r->buckets[b]; d && n < LV_ARRAY_LEN(list); d = d->next) {
            d->refs++;
            list[n++] = d;
        }
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < n; i++) {
        struct db *d = list[i];
        struct cksum_map copy;
        uint64_t txid = 0;
        int want = 0;
        char path[PATH_MAX + 8];
        cksum_map_init(&copy);
        pthread_mutex_lock(&d->mu);
        if (d->kind == DBK_SQLITE && !d->broken && d->txid > 0 && (d->txid != d->saved_txid || force) &&
            cksum_map_copy(&copy, &d->map) == 0) {
            want = 1;
            txid = d->txid;
            snprintf(path, sizeof path, "%s/state", d->metadir);
        }
        uint8_t id[16];
        memcpy(id, d->id, 16);
        pthread_mutex_unlock(&d->mu);
        pthread_mutex_lock(&d->mu);
        enum jmode jm = d->kind == DBK_SQLITE && d->jmode != d->jmode_saved ? d->jmode : JM_UNKNOWN;
        char jpath[PATH_MAX + 16];
        snprintf(jpath, sizeof jpath, "%s/journal-mode", d->metadir);
        pthread_mutex_unlock(&d->mu);
        if (jm != JM_UNKNOWN && publish_buf(jpath, db_jmode_names[jm], strlen(db_jmode_names[jm])) == 0) {
            pthread_mutex_lock(&d->mu);
            d->jmode_saved = jm;
            pthread_mutex_unlock(&d->mu);
        }
        if (want && cksum_state_save(path, &copy, id, txid) == 0) {
            pthread_mutex_lock(&d->mu);
            d->saved_txid = txid;
            d->saved_valid = 1;
            pthread_mutex_unlock(&d->mu);
        }
        cksum_map_free(&copy);
        db_put(d);
    }
}

/* fsync d's log if it holds records not fsynced yet (takes d->mu). */
static void db_sync_log(struct db *d)
{
    pthread_mutex_lock(&d->mu);
    if (d->kind == DBK_SQLITE && !d->broken && d->log_unsynced) {
        if (txlog_sync(d->log) == 0) {
            db_log_synced(d);
        } else {
            db_fail(d, "fsync of the transaction log failed");
        }
    }
    pthread_mutex_unlock(&d->mu);
}

/* Does the application's fsync of the -wal make d's commits durable (a
 * synchronous=FULL writer), with no commit hook holding commits in their
 * write (then records are streamed before that fsync)?  Caller holds d->mu. */
static int wal_fsync_covers(struct dbreg *r, const struct db *d)
{
    return db_wal_syncs_commits(d) && !__atomic_load_n(&r->commit_hook, __ATOMIC_ACQUIRE);
}

int dbreg_durable_limit(struct dbreg *r, const char *name, int mode, uint64_t *limit, int64_t *retry_us)
{
    struct txlog_syncjob j;
    struct txlog *l;
    struct db *d = dbreg_get(r, name, 0);
    int rc = 0, have, wal_syncs;
    int64_t now = lv_mono_us();
    uint64_t upto;

    *retry_us = 0;
    *limit = 0;
    if (!d)
        return LV_ENOENT;
    pthread_mutex_lock(&d->mu);
    if (d->kind != DBK_SQLITE || !d->log || d->broken) {
        rc = d->broken ? LV_EBROKEN : LV_ENOENT;
        goto out_unlock;
    }
    *limit = d->txid;
    wal_syncs = wal_fsync_covers(r, d);
    if (d->durable_txid >= d->txid || !dbreg_durable_wait(mode, wal_syncs))
        goto out_unlock; /* (auto: the application did not ask for more than SQLite's own commit) */
    *limit = d->durable_txid;
    d->stream_waits++;
    d->durable_wanted = 1;
    if (d->durable_syncing)
        goto out_unlock; /* its end raises durable_txid and moves the sequence */
    if (wal_syncs && now - d->undurable_mono < DBREG_DURABLE_WAIT_US) {
        *retry_us = d->undurable_mono + DBREG_DURABLE_WAIT_US; /* the -wal's fsync is about to cover it */
        goto out_unlock;
    }
    upto = d->txid;
    l = d->log;
    have = txlog_sync_begin(l, &j);
    if (have < 0) { /* broken already, or out of file descriptors or memory: the stream tries again */
        rc = have;
        goto out_unlock;
    }
    if (have) {
        d->stream_fsyncs++;
        d->durable_syncing = 1;
        pthread_mutex_unlock(&d->mu);
        rc = txlog_sync_run(&j);
        pthread_mutex_lock(&d->mu);
        d->durable_syncing = 0;
        if (d->log != l || d->broken) { /* retired or failed meanwhile: nothing to account */
            txlog_sync_release(&j);
            dbreg_bump_seq(r); /* the streams that waited for this fsync look again */
            goto out_unlock;
        }
        rc = txlog_sync_end(l, &j, rc);
        if (rc) {
            db_fail(d, "fsync of the transaction log failed");
            dbreg_bump_seq(r);
            goto out_unlock;
        }
    }
    if (upto == d->txid)
        db_log_synced(d);
    else
        db_durable_to(d, upto);
    *limit = d->durable_txid;
out_unlock:
    pthread_mutex_unlock(&d->mu);
    db_put(d);
    return rc;
}

/* A reference to every database of the registry, taken under r->mu alone
 * (*out: malloc'ed, caller frees; db_put each; *n of them).  0, or
 * LV_ENOMEM with nothing referenced. */
static int db_refs(struct dbreg *r, struct db ***out, size_t *n)
{
    struct db **dv = NULL;
    size_t nd = 0, cap = 0;
    int rc = 0;

    pthread_mutex_lock(&r->mu);
    for (int b = 0; b < DB_NBUCKETS; b++)
        for (struct db *d = r->buckets[b]; d; d = d->next) {
            if (lv_grow((void **)&dv, &cap, nd, sizeof *dv, 16) != 0) {
                for (size_t k = 0; k < nd; k++)
                    dv[k]->refs--;
                nd = 0;
                rc = LV_ENOMEM;
                goto out_unlock;
            }
            d->refs++;
            dv[nd++] = d;
        }
out_unlock:
    pthread_mutex_unlock(&r->mu);
    *out = dv;
    *n = nd;
    return rc;
}

void dbreg_sync_logs(struct dbreg *r)
{
    struct db **dv = NULL;
    size_t nd = 0;

    /* References first, under r->mu alone; each fsync then holds only its
     * database's mu, so lookups in the registry never wait for a disk. */
    if (db_refs(r, &dv, &nd) != 0) {
        /* out of memory: every log is still fsynced, r->mu held meanwhile */
        pthread_mutex_lock(&r->mu);
        for (int b = 0; b < DB_NBUCKETS; b++)
            for (struct db *d = r->buckets[b]; d; d = d->next)
                db_sync_log(d);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    for (size_t k = 0; k < nd; k++) {
        db_sync_log(dv[k]);
        db_put(dv[k]);
    }
    free(dv);
}

/* Log the commits every WAL-mode database's -wal holds (passthrough: the
 * watcher may not have reached them yet), and those a passthrough journal's
 * header shows, each under its own mu only. */
static void capture_wal_all(struct dbreg *r)
{
    struct db **dv = NULL;
    size_t nd = 0;

    db_refs(r, &dv, &nd); /* out of memory: nothing captured now; the watcher and fsyncs still do */
    for (size_t k = 0; k < nd; k++) {
        pthread_mutex_lock(&dv[k]->mu);
        db_capture_pending(dv[k]);
        pthread_mutex_unlock(&dv[k]->mu);
        db_put(dv[k]);
    }
    free(dv);
}

char *dbreg_status_json(struct dbreg *r)
{
    json_t *arr = json_array();
    capture_wal_all(r);
    pthread_mutex_lock(&r->mu);
    for (int b = 0; b < DB_NBUCKETS; b++)
        for (struct db *d = r->buckets[b]; d; d = d->next) {
            char hex[17], t[40], idh[33];
            pthread_mutex_lock(&d->mu);
            if (d->kind == DBK_SQLITE || d->broken) {
                json_t *o = json_object();
                lv_hex(d->id, 16, idh);
                json_object_set_new(o, "name", json_string(d->name));
                json_object_set_new(o, "id", json_string(idh));
                json_object_set_new(o, "txid", json_integer((json_int_t)d->txid));
                json_object_set_new(o, "checksum", json_string(cksum_hex(d->map.total, hex)));
                json_object_set_new(o, "page_size", json_integer(d->map.page_size));
                json_object_set_new(o, "pages", json_integer(d->map.npages));
                enum jmode jm = d->jmode ? d->jmode : (d->hdr_wal ? JM_WAL : JM_UNKNOWN);
                json_object_set_new(o, "journal_mode", json_string(db_jmode_names[jm]));
                json_object_set_new(o, "last_commit",
                                    d->txid ? json_string(lv_fmt_time(d->last_time, t, sizeof t)) : json_null());
                json_object_set_new(o, "last_commit_us", json_integer(d->last_time));
                json_object_set_new(o, "status", json_string(d->broken ? "broken" : d->wal_stalled ? "stalled" : "ok"));
                if (d->broken)
                    json_object_set_new(o, "error", json_string(d->why));
                else if (d->wal_stalled)
                    json_object_set_new(o, "error", json_string("committed WAL transactions cannot be logged (see "
                                                                "the daemon's log); they stay in the WAL and "
                                                                "checkpoints are refused until they are"));
                json_array_append_new(arr, o);
            }
            pthread_mutex_unlock(&d->mu);
        }
    pthread_mutex_unlock(&r->mu);
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}

static int info_cmp(const void *a, const void *b)
{
    return strcmp(((const struct db_info *)a)->name, ((const struct db_info *)b)->name);
}

void dbreg_set_log_full(struct dbreg *r, int full)
{
    __atomic_store_n(&r->log_full, full ? 1 : 0, __ATOMIC_RELAXED);
}

/* dbreg_list and dbreg_list_logged: capture = 1 first logs the commits
 * each -wal (and passthrough journal) holds. */
static int list_dbs(struct dbreg *r, struct db_info **out, size_t *n, int capture)
{
    struct db_info *v = NULL;
    struct db **dv = NULL;
    size_t cnt = 0, nd = 0;
    /* References first, under r->mu alone; then each database under its
     * own mu without r->mu: a commit holds d->mu across its fsyncs, and
     * r->mu held meanwhile would stall every lookup in the registry. */
    int rc = db_refs(r, &dv, &nd);

    if (rc == 0 && nd > 0 && !(v = malloc(nd * sizeof *v)))
        rc = LV_ENOMEM;
    for (size_t k = 0; k < nd; k++) {
        struct db *d = dv[k];
        int listed = 0;
        pthread_mutex_lock(&d->mu);
        if (capture && rc == 0)
            db_capture_pending(d);
        if (rc == 0 && (d->kind == DBK_SQLITE || d->broken)) {
            struct db_info *i = &v[cnt++];
            listed = 1;
            memset(i, 0, sizeof *i);
            snprintf(i->name, sizeof i->name, "%s", d->name);
            memcpy(i->id, d->id, 16);
            snprintf(i->logdir, sizeof i->logdir, "%s/log", d->metadir);
            i->txid = d->txid;
            i->durable_txid = d->durable_txid;
            i->syncs_commits = wal_fsync_covers(r, d);
            i->time_us = d->last_time;
            i->page_size = d->map.page_size;
            i->db_pages = d->map.npages;
            i->cksum = d->map.total;
            i->term = d->log ? txlog_last_term(d->log) : 0;
            i->saved_txid = d->saved_valid ? d->saved_txid : 0;
            i->broken = d->broken;
        }
        pthread_mutex_unlock(&d->mu);
        /* Unlinked (or replaced by a rename) since the first pass: not live. */
        pthread_mutex_lock(&r->mu);
        if (listed && d->retired)
            cnt--;
        pthread_mutex_unlock(&r->mu);
        db_put(d);
    }
    free(dv);
    if (rc != 0) {
        free(v);
        v = NULL;
        cnt = 0;
    } else if (cnt > 1) {
        qsort(v, cnt, sizeof *v, info_cmp);
    }
    *out = v;
    *n = cnt;
    return rc;
}

int dbreg_list(struct dbreg *r, struct db_info **out, size_t *n)
{
    return list_dbs(r, out, n, 1);
}

int dbreg_list_logged(struct dbreg *r, struct db_info **out, size_t *n)
{
    return list_dbs(r, out, n, 0);
}

int dbreg_txid(struct dbreg *r, const char *name, uint64_t *txid)
{
    struct db *d = dbreg_get(r, name, 0);
    int rc = LV_ENOENT;

    *txid = 0;
    if (!d)
        return rc;
    pthread_mutex_lock(&d->mu);
    db_capture_pending(d);
    if (d->kind == DBK_SQLITE) {
        *txid = d->txid;
        rc = 0;
    }
    pthread_mutex_unlock(&d->mu);
    db_put(d);
    return rc;
}

int dbreg_stalled(struct dbreg *r, char *names, size_t n)
{
    int cnt = 0;
    size_t at = 0;

    if (n)
        names[0] = 0;
    pthread_mutex_lock(&r->mu);
    for (int b = 0; b < DB_NBUCKETS; b++)
        for (struct db *d = r->buckets[b]; d; d = d->next) {
            /* wal_stalled is read without d->mu, which a capture or an
             * fsync may hold for long: r->mu must not wait for it */
            if (__atomic_load_n(&d->wal_stalled, __ATOMIC_RELAXED)) {
                cnt++;
                if (at < n)
                    at += (size_t)snprintf(names + at, n - at, "%s%s", at ? ", " : "", d->name);
            }
        }
    pthread_mutex_unlock(&r->mu);
    return cnt;
}

int dbreg_retired_id(struct dbreg *r, const uint8_t id[16], char *what, size_t n)
{
    char hex[34];
    struct dirent *e;
    DIR *dir;
    int found = 0;

    if (n)
        what[0] = 0;
    hex[0] = '.';
    lv_hex(id, 16, hex + 1);
    dir = opendir(r->retired);
    if (!dir) {
        found = errno == ENOENT ? 0 : lv_from_errno(errno);
        goto out;
    }
    while (!found && (e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name), hl = strlen(hex);
        if (len > hl && strcmp(e->d_name + len - hl, hex) == 0) { /* retire_locked's <escaped name>.<id> */
            snprintf(what, n, "%s/%s", r->retired, e->d_name);
            found = 1;
        }
    }
    closedir(dir);
out:
    return found;
}

int dbreg_metrics(struct dbreg *r, char **buf, size_t *len, size_t *cap)
{
    int rc = 0;
    static const char *const names[][3] = {
        {"litevault_db_txid", "gauge", "Last TXID logged."},
        {"litevault_db_commits_total", "counter", "Records written since start."},
        {"litevault_db_logged_bytes_total", "counter", "Page bytes logged since start."},
        {"litevault_db_logged_pages_total", "counter", "Pages logged since start."},
        {"litevault_db_pages", "gauge", "Database size in pages."},
        {"litevault_db_refused_writes_total", "counter", "Writes refused (OFF/MEMORY journal, garbled header)."},
        {"litevault_db_broken", "gauge", "1 if the database refuses access."},
        {"litevault_db_checkpoint_mismatch_total", "counter", "Checkpointed pages that disagreed with the log."},
        {"litevault_db_durable_txid", "gauge", "Last TXID durable on this node (fsynced log, or a -wal the application fsynced)."},
        {"litevault_db_stream_waits_total", "counter",
         "Times a replication stream found records it must not send before they are durable (replication.wait-durable)."},
        {"litevault_db_stream_log_fsyncs_total", "counter",
         "Log fsyncs run for replication streams waiting for durable records (replication.wait-durable)."},
        {"litevault_db_wal_presyncs_total", "counter",
         "fdatasyncs of the -wal run while a synchronous=FULL commit waited for replicas (replication.sync-replicas)."},
        {"litevault_db_wal_presync_hits_total", "counter",
         "Application fsyncs of the -wal that such an fdatasync had already done."},
    };
    for (size_t m = 0; m < LV_ARRAY_LEN(names) && rc == 0; m++) {
        rc = metrics_appendf(buf, len, cap, "# HELP %s %s\n# TYPE %s %s\n", names[m][0], names[m][2], names[m][0],
                             names[m][1]);
        pthread_mutex_lock(&r->mu);
        for (int b = 0; b < DB_NBUCKETS && rc == 0; b++)
            for (struct db *d = r->buckets[b]; d && rc == 0; d = d->next) {
                pthread_mutex_lock(&d->mu);
                if (d->kind == DBK_SQLITE || d->broken) {
                    uint64_t v[] = {d->txid, d->commits, d->bytes_logged, d->pages_logged, d->map.npages,
                                    d->refused, (uint64_t)d->broken, d->ckpt_mismatch, d->durable_txid,
                                    d->stream_waits, d->stream_fsyncs,
                                    __atomic_load_n(&d->wal_presyncs, __ATOMIC_RELAXED),
                                    __atomic_load_n(&d->wal_presync_hits, __ATOMIC_RELAXED)};
                    json_t *js = json_string(d->name); /* escape quotes safely */
                    const char *nm = json_string_value(js);
                    char esc[PATH_MAX * 2];
                    size_t j = 0;
                    for (const char *p = nm; *p && j + 3 < sizeof esc; p++) {
                        if (*p == '"' || *p == '\\')
                            esc[j++] = '\\';
                        esc[j++] = *p == '\n' ? ' ' : *p;
                    }
                    esc[j] = 0;
                    json_decref(js);
                    rc = metrics_appendf(buf, len, cap, "%s{db=\"%s\"} %llu\n", names[m][0], esc,
                                         (unsigned long long)v[m]);
                }
                pthread_mutex_unlock(&d->mu);
            }
        pthread_mutex_unlock(&r->mu);
    }
    return rc;
}


/* ---- data.dir/tmp, where images are written ---- */

void dbreg_tmp_dir(const char *data_dir, char *out, size_t n)
{
    snprintf(out, n, "%s/tmp", data_dir);
}

void dbreg_clear_tmp(const char *data_dir)
{
    char dir[PATH_MAX];
    dbreg_tmp_dir(data_dir, dir, sizeof dir);
    DIR *dp = opendir(dir);
    struct dirent *e;
    char p[PATH_MAX + 300];
    if (!dp)
        return;
    while ((e = readdir(dp)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) == 0)
            LV_INFO("removed %s, left by an earlier run", p);
    }
    closedir(dp);
}
