/*
 * db_capture.c -- the write path: every mutating operation the FUSE layer
 * (fs.c) routes to a database, its -journal or its -wal (db_on_*), commit
 * detection, checkpoint verification, and fsync with the syncer worker.
 *
 * Each db_on_* call runs under d->mu (C3 of db.c) inside the FUSE request,
 * while the writer holds SQLite's locks (C2): it performs the operation on
 * the backing file and detects and logs commits synchronously (the rules
 * are in db.c: COMMIT DETECTION).  The transaction states (idle,
 * journal_active, bulk, ckpt_dirty) move here:
 *   write_journal      idle/bulk -> journal_active (journal magic at 0)
 *   journal_commit     journal_active -> idle (unlink, truncate, zeroing)
 *   write_main         idle -> bulk (unjournaled) or ckpt_dirty (checkpoint)
 *   db_on_truncate     idle -> bulk (a truncation below the logged size)
 *   bulk_commit        bulk -> idle (fsync, close, journal or WAL start)
 *   ckpt_verify        ckpt_dirty -> idle (the WAL is reset)
 * and every call leaves through hook_exit, which serves a waiting image
 * and checks db_assert_state.  The capture path is hot: what it checks is
 * O(1).
 */
#include "capture/db.h"
#include "capture/db_impl.h"
#include "capture/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cksum.h"
#include "base/dbhdr.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"
#include "base/worker.h"
#include "log/txlog.h"
#include "log/wal.h"

/* One log fsync handed to the syncer thread. */
struct db_sync_job {
    struct txlog *log;          /* log to fsync (its db's mu is held by the waiter) */
    int rc;                     /* result (reg->smu) */
    int done;                   /* finished (reg->smu) */
    struct db_sync_job *next;   /* queue link (reg->smu) */
};

/*
 * SYNCER.  When the application fsyncs a file of a database whose log
 * holds records not yet fsynced (the journal or main file in rollback
 * modes, C7), those records must be durable before that fsync returns.
 * Doing the log's fdatasync and the application's fsync one after the
 * other would double the latency, so the log's is handed to this worker
 * and both run at once (the filesystem can also merge them into one
 * journal commit).  A job is queued under smu and the worker woken; the
 * waiter sleeps on scv until done.  The worker drains the queue before it
 * exits, so no waiter is left behind.
 */
static void syncer_drain(struct dbreg *r)
{
    pthread_mutex_lock(&r->smu);
    while (r->sq) {
        struct db_sync_job *j = r->sq;
        r->sq = j->next;
        pthread_mutex_unlock(&r->smu);
        int rc = txlog_sync(j->log);
        pthread_mutex_lock(&r->smu);
        j->rc = rc;
        j->done = 1;
        pthread_cond_broadcast(&r->scv);
    }
    pthread_mutex_unlock(&r->smu);
}

static void syncer_main(struct worker *w, void *arg)
{
    struct dbreg *r = arg;

    while (!worker_nap(w, 1000000))
        syncer_drain(r);
    syncer_drain(r);
}

void db_syncer_start(struct dbreg *r)
{
    pthread_mutex_init(&r->smu, NULL);
    pthread_cond_init(&r->scv, NULL);
    if (worker_start("lv-syncer", syncer_main, r, &r->syncer) != 0)
        r->syncer = NULL; /* logged; log fsyncs then run inline */
}

void db_syncer_stop(struct dbreg *r)
{
    worker_stop(r->syncer);
    r->syncer = NULL;
    pthread_cond_destroy(&r->scv);
    pthread_mutex_destroy(&r->smu);
}

static int fsync_fd(int fd, int datasync)
{
    return (datasync ? fdatasync(fd) : fsync(fd)) ? -errno : 0;
}

/* The backing path of d's -wal into path.  Takes d->mu (a rename
 * replaces d->name under it): the caller must not hold it. */
static void wal_path(struct db *d, char *path, size_t n)
{
    pthread_mutex_lock(&d->mu);
    snprintf(path, n, "%s/%s-wal", d->reg->files, d->name);
    pthread_mutex_unlock(&d->mu);
}

/* fsync the -wal fd of d, without d->mu held: through the syscall seam
 * when a test arms it (fault injection, LV_TEST_SYNCED_MARKS), which needs
 * the path; a failure is logged with the path.  0 or -errno. */
static int wal_fsync(struct db *d, int fd, int datasync)
{
    char path[PATH_MAX];
    int rc;

    if (!sys_seam_active()) {
        if ((rc = fsync_fd(fd, datasync)) != 0) {
            wal_path(d, path, sizeof path);
            LV_ERROR("%s(%s): %s", datasync ? "fdatasync" : "fsync", path, strerror(-rc));
        }
        return rc;
    }
    wal_path(d, path, sizeof path);
    rc = sys_fsync(fd, datasync, path);
    return rc ? -lv_to_errno(rc) : 0;
}

void db_wal_changed(struct db *d)
{
    __atomic_add_fetch(&d->wal_wgen, 1, __ATOMIC_ACQ_REL);
}

void db_wal_released(struct db *d, int fd)
{
    if (!__atomic_load_n(&d->wal_presync_err, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&d->mu);
    if (d->wal_presync_err && d->wal_presync_fd == fd) {
        LV_WARN("%s: the -wal's descriptor closed with a failed fdatasync not reported to the application (it "
                "did not fsync again)", d->name);
        __atomic_store_n(&d->wal_presync_err, 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&d->mu);
}

void db_wal_presync(struct db *d, int fd)
{
    uint64_t gen = __atomic_load_n(&d->wal_wgen, __ATOMIC_ACQUIRE), cur;
    int rc;

    __atomic_add_fetch(&d->wal_presyncs, 1, __ATOMIC_RELAXED);
    if ((rc = wal_fsync(d, fd, 1)) != 0) {
        pthread_mutex_lock(&d->mu);
        LV_WARN("%s: the -wal's fdatasync failed: the application's next fsync of it (through the same "
                "descriptor) fails", d->name);
        if (d->wal_presync_err && d->wal_presync_fd != fd)
            LV_WARN("%s: an earlier -wal fdatasync error, owed to another descriptor, is dropped", d->name);
        d->wal_presync_fd = fd;
        __atomic_store_n(&d->wal_presync_err, rc, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&d->mu);
        return;
    }
    gen++; /* wal_presynced holds the generation covered plus one: 0 is "never" */
    cur = __atomic_load_n(&d->wal_presynced, __ATOMIC_RELAXED);
    while (cur < gen && !__atomic_compare_exchange_n(&d->wal_presynced, &cur, gen, 0, __ATOMIC_ACQ_REL,
                                                     __ATOMIC_RELAXED))
        ;
}

/* The application's fdatasync of the -wal through fd (C11 of db.c): 1 if
 * a pre-sync already made every write durable (nothing to do), 0 if it
 * must run, or the -errno a failed pre-sync through fd owes it.  Called
 * without d->mu. */
static int wal_presynced(struct db *d, int fd, int datasync)
{
    int err = 0;

    if (__atomic_load_n(&d->wal_presync_err, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&d->mu);
        if (d->wal_presync_err && d->wal_presync_fd == fd) {
            err = d->wal_presync_err;
            __atomic_store_n(&d->wal_presync_err, 0, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&d->mu);
    }
    if (err)
        return err;
    /* Not on passthrough: there, writes never reach the daemon to be counted. */
    if (!datasync || __atomic_load_n(&d->reg->wal_pt, __ATOMIC_RELAXED) ||
        __atomic_load_n(&d->wal_presynced, __ATOMIC_ACQUIRE) != __atomic_load_n(&d->wal_wgen, __ATOMIC_ACQUIRE) + 1)
        return 0;
    __atomic_add_fetch(&d->wal_presync_hits, 1, __ATOMIC_RELAXED);
    return 1;
}

/* fsync fd (the application's file) and the log of d at the same time.
 * Caller holds d->mu.  Returns 0 or -errno for fd; *log_rc gets the log's. */
static int sync_both(struct db *d, int fd, int datasync, int *log_rc)
{
    struct dbreg *r = d->reg;
    struct db_sync_job j = {d->log, 0, 0, NULL};
    struct db_sync_job **pp;
    int rc;

    if (!r->syncer) {
        *log_rc = txlog_sync(d->log);
        return fsync_fd(fd, datasync);
    }
    pthread_mutex_lock(&r->smu);
    for (pp = &r->sq; *pp; pp = &(*pp)->next)
        ;
    *pp = &j;
    pthread_mutex_unlock(&r->smu);
    worker_wake(r->syncer);
    rc = fsync_fd(fd, datasync);
    pthread_mutex_lock(&r->smu);
    while (!j.done)
        pthread_cond_wait(&r->scv, &r->smu);
    pthread_mutex_unlock(&r->smu);
    *log_rc = j.rc;
    return rc;
}

int db_check_open(struct db *d)
{
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    if (d->broken) {
        LV_ERROR("%s: refusing to open: %s", d->name, d->why);
        rc = -EIO;
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

void db_on_create(struct db *d, enum db_filekind kind)
{
    LV_UNUSED(d);
    LV_UNUSED(kind);
}

/* truncate(2) relative to a directory fd; 0 or -1 with errno set. */
static int trunc_at(int dirfd, const char *rel, off_t size)
{
    int fd = openat(dirfd, rel, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = ftruncate(fd, size);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static ssize_t do_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n = pwrite(fd, buf, len, off);
    return n < 0 ? -errno : n;
}

/* Decide the kind of an UNKNOWN main file at its first write. */
static int settle_kind(struct db *d, enum db_filekind kind, const void *buf, size_t len, off_t off)
{
    const uint8_t *b = buf;
    if (d->kind != DBK_UNKNOWN)
        return 0;
    int is_sqlite = 0;
    if (kind == DBF_MAIN) {
        if (off == 0 && len >= 16)
            is_sqlite = dbhdr_magic_ok(b);
        else {
            uint8_t h[16];
            int fd = db_main_fd(d);
            is_sqlite = fd >= 0 && pread(fd, h, 16, 0) == 16 && dbhdr_magic_ok(h);
        }
        if (!is_sqlite) {
            d->kind = DBK_PLAIN;
            LV_INFO("%s is not a SQLite database: stored as a plain file, without capture", d->name);
            return 0;
        }
    } else if (kind == DBF_JOURNAL) {
        if (!(off == 0 && len >= 8 && memcmp(b, db_journal_magic, 8) == 0))
            return 0;
    } else if (kind == DBF_WAL) {
        if (!(off == 0 && len >= 4 && (lv_get32(b) == WAL_MAGIC_LE || lv_get32(b) == WAL_MAGIC_BE)))
            return 0;
    } else {
        return 0;
    }
    int rc = db_promote(d);
    if (rc)
        db_fail(d, "cannot start its transaction log (%s)", lv_strerror(rc));
    return rc;
}

/* Are the bytes [off, off+len) of buf whole pages each equal to the
 * logged page (the map's)?  What a rollback's playback writes. */
static int write_restores_map(const struct db *d, const uint8_t *buf, size_t len, uint64_t off)
{
    uint32_t ps = d->map.page_size;

    if (!ps || len == 0 || off % ps || len % ps)
        return 0;
    for (size_t i = 0; i < len; i += ps) {
        uint32_t p = (uint32_t)((off + i) / ps + 1);
        if (p > d->map.npages || cksum_page(p, buf + i, ps) != cksum_map_get(&d->map, p))
            return 0;
    }
    return 1;
}

/*
 * RESERVATION (C9 of db.c).  A write to the main file in a rollback or
 * unjournaled transaction, before it is performed, reserves room in the
 * log for the record the transaction may need at its commit point: every
 * page dirtied so far, at most page size + 4 bytes each (txlog_reserve;
 * fallocate in 1 MiB chunks, so most writes cost a comparison).  When the
 * room cannot be had, the write is refused with ENOSPC, which SQLite
 * reports as SQLITE_FULL and answers by rolling the transaction back:
 * the transaction fails while SQLite is still writing, not at its commit
 * point (the journal's unlink, truncation or zeroing), where only an I/O
 * error could be reported.  After a refusal the transaction reserves no
 * more (resv_refused), so the rollback's own writes go through, and so do
 * writes that only put back logged pages (a hot journal rolled back by
 * another process or after a restart).  0 or -ENOSPC/-EIO.
 */
static int reserve_dirty(struct db *d, const void *buf, size_t len, off_t off)
{
    uint32_t ps = d->map.page_size, n = 0;
    int rc;

    if (len == 0)
        return 0;
    if (!ps)
        ps = off == 0 && len >= DBHDR_SIZE && dbhdr_valid(buf) ? dbhdr_page_size(buf) : 4096;
    for (uint64_t p = (uint64_t)off / ps + 1; p <= ((uint64_t)off + len - 1) / ps + 1; p++)
        if (!db_dirty_page(d, (uint32_t)p, ps))
            n++;
    if (n == 0 || d->resv_refused)
        return 0;
    rc = txlog_reserve(d->log, d->txid + 1, (uint64_t)(d->resv_pages + n) * (ps + 4));
    if (rc == 0) {
        d->resv_pages += n;
        return 0;
    }
    if (txlog_error(d->log)) {
        db_fail(d, "the transaction log failed (%s) and its state is uncertain", lv_strerror(txlog_error(d->log)));
        return -EIO;
    }
    if (write_restores_map(d, buf, len, (uint64_t)off))
        return 0;
    d->resv_refused = 1;
    d->refused++;
    LV_ERROR("%s: no room in the transaction log for this transaction (%s); the write is refused and SQLite rolls "
             "the transaction back (SQLITE_FULL)", d->name, lv_strerror(rc));
    return rc == LV_ENOSPC ? -ENOSPC : -EIO;
}

static int wal_before_drop(struct db *d);

static ssize_t write_main(struct db *d, int fd, const void *buf, size_t len, off_t off)
{
    int rc;

    if (off < 100) {
        uint8_t h[100];
        int rfd = db_main_fd(d); /* the writer's fd may be write-only */
        if (rfd < 0 || db_read_page(rfd, h, sizeof h, 0) != 0)
            return -EIO;
        size_t n = (size_t)(100 - off) < len ? (size_t)(100 - off) : len;
        memcpy(h + off, buf, n);
        struct stat st;
        int was_empty = fstat(fd, &st) == 0 && st.st_size == 0;
        if ((off == 0 || !was_empty) && !dbhdr_valid(h) && !(off > 0 && len + (size_t)off < 16)) {
            d->refused++;
            LV_ERROR("%s: refusing a write at offset %lld that would overwrite the SQLite header with invalid "
                     "data; the database is unchanged",
                     d->name, (long long)off);
            return -EIO;
        }
        if (off <= 18 && (size_t)off + len > 18)
            d->hdr_wal = h[18] == 2;
    }
    if (d->journal_active || d->bulk) {
        if ((rc = reserve_dirty(d, buf, len, off)) != 0)
            return rc;
        if (db_dirty_mark(d, (uint64_t)off, len) != 0)
            return -ENOMEM;
        return do_pwrite(fd, buf, len, off);
    }
    if (d->hdr_wal && d->map.npages > 0) {
        /* A checkpoint: the pages are logged once every commit in the WAL
         * is (wal_before_drop).  Remember them so that ckpt_verify can
         * check them once the WAL is fully copied.  (A file with no logged
         * pages whose header says WAL is being copied in -- cp of a
         * WAL-mode database -- and takes the unjournaled path below.) */
        if ((rc = wal_before_drop(d)) != 0)
            return rc;
        if (db_dirty_mark(d, (uint64_t)off, len) != 0)
            return -ENOMEM;
        d->ckpt_dirty = 1;
        return do_pwrite(fd, buf, len, off);
    }
    /* No journal and not WAL: a new file being copied in (cp), or SQLite
     * with journal_mode=OFF or MEMORY.  These writes are "unjournaled": the
     * transaction is captured when the writer fsyncs (with synchronous
     * NORMAL or FULL, SQLite fsyncs the database once per commit in these
     * modes, so that is its commit), closes the file, or starts a journaled
     * transaction.  With synchronous=OFF several transactions may merge into
     * one record. */
    if (!d->warned_nojournal && d->txid > 0) {
        d->warned_nojournal = 1;
        LV_WARN("%s: writes without an on-disk journal (journal_mode=OFF or MEMORY): transactions are captured "
                "at each fsync or close; with synchronous=OFF several may merge into one record",
                d->name);
    }
    d->bulk = 1;
    if ((rc = reserve_dirty(d, buf, len, off)) != 0)
        return rc;
    if (db_dirty_mark(d, (uint64_t)off, len) != 0)
        return -ENOMEM;
    return do_pwrite(fd, buf, len, off);
}

/* Context for ckpt_page. */
struct ckpt_ctx {
    struct db *d;         /* database */
    int fd;               /* main file */
    uint8_t *buf;         /* scratch page */
    struct changes c;     /* pages that disagree, with their actual content */
    uint32_t npages;      /* logical size of the database file */
};

static int ckpt_page(void *arg, uint32_t p)
{
    struct ckpt_ctx *k = arg;
    struct db *d = k->d;
    uint32_t ps = d->map.page_size;
    if (p > d->map.npages || p > k->npages)
        return 0;
    uint64_t off = (uint64_t)(p - 1) * ps;
    if (db_read_page(k->fd, k->buf, ps, off) != 0)
        return LV_EIO;
    uint64_t h = cksum_page(p, k->buf, ps);
    if (h == cksum_map_get(&d->map, p))
        return 0;
    if (k->c.n < 5)
        LV_ERROR("%s: page %u copied into the database by a checkpoint differs from the logged page (TXID %llu)",
                 d->name, p, (unsigned long long)d->txid);
    return db_changes_add(&k->c, p, k->fd, off, h);
}

/*
 * The WAL is being reset (restart header, truncation to 0 or unlink), so
 * SQLite has copied every frame it considers committed into the database:
 * the pages checkpoints wrote must now equal the logged state.  They differ
 * only if the WAL was damaged behind SQLite's back (a committed frame lost),
 * in which case the database no longer matches its history.  That is logged
 * and counted (litevault_db_checkpoint_mismatch_total), and a RECOVERED
 * record with the pages as they now are makes the log follow the database.
 */
static void ckpt_verify(struct db *d)
{
    uint8_t hdr[100];
    struct stat st;
    if (!d->ckpt_dirty || d->journal_active || d->bulk || d->map.page_size == 0)
        return;
    struct ckpt_ctx k = {d, db_main_fd(d), malloc(d->map.page_size), {0}, d->map.npages};
    if (k.fd >= 0 && fstat(k.fd, &st) == 0 && st.st_size >= 100 && db_read_page(k.fd, hdr, sizeof hdr, 0) == 0 &&
        dbhdr_valid(hdr) && (uint32_t)dbhdr_page_size(hdr) == d->map.page_size)
        k.npages = dbhdr_pages(hdr, (uint64_t)st.st_size, d->map.page_size);
    if (k.fd >= 0 && k.buf && db_dirty_pages(d, d->map.page_size, ckpt_page, &k) == 0 && k.c.n) {
        d->ckpt_mismatch += k.c.n;
        LV_ERROR("%s: %zu checkpointed pages disagree with the log: the WAL lost committed frames behind SQLite's "
                 "back; logging the database as it now is",
                 d->name, k.c.n);
        db_dirty_clear(d);
        db_emit(d, TXLOG_F_RECOVERED, d->map.page_size, k.npages, &k.c, 0, 0, 0);
    }
    free(k.c.v);
    free(k.buf);
    db_dirty_clear(d);
    d->ckpt_dirty = 0;
}

/* The journal's fate marked a rollback commit (unlink, truncate to 0 or a
 * zeroed header): log the transaction before the operation is performed.
 * 0, or -EIO to refuse the operation (the journal stays hot).
 *
 * The record is not fsynced here.  SQLite's own commit point, the journal's
 * unlink, truncation or zeroing, is not durable either until the
 * directory or the journal is synced (synchronous=EXTRA syncs the
 * directory; the next transaction syncs the journal).  The record becomes
 * durable with the application's next fsync of any file of this database,
 * in parallel with it (db_on_fsync), or with its directory fsync
 * (dbreg_sync_logs).  That makes it exactly as durable as the commit. */
static int journal_commit(struct db *d, enum jmode jm)
{
    LV_ASSERT(d->journal_active && !d->bulk);
    if (d->broken || (d->hot_rollback && db_dirty_free_leaves(d) != 0) || db_capture_rollback(d, 0) != 0)
        return -EIO;
    d->journal_active = 0; /* journal_active -> idle */
    d->jpt_tx = 0;
    d->hot_rollback = 0;
    d->resv_refused = 0;   /* C9: the next transaction reserves again */
    d->jmode = jm;
    d->sync_pending = 0;
    return 0;
}

/* Unjournaled writes end (a journal or WAL starts, an fsync or close):
 * log them.  bulk -> idle.  0, or -EIO to refuse the operation. */
static int bulk_commit(struct db *d)
{
    LV_ASSERT(d->bulk && !d->journal_active);
    if (db_capture_rollback(d, 0) != 0)
        return -EIO;
    d->bulk = 0;
    d->resv_refused = 0;
    return 0;
}

/* Leave a db_on_* call: set up a waiting image at this quiescent moment,
 * check the state (C3-C6 of db.c) and release d->mu. */
static void hook_exit(struct db *d)
{
    db_img_serve(d);
    db_assert_state(d);
    pthread_mutex_unlock(&d->mu);
}

/* A journal header with the magic starts a transaction: idle or bulk ->
 * journal_active (unjournaled writes before it are logged first).  jpt_tx:
 * seen in a passthrough journal's backing file (db_journal_follow) rather
 * than written through the daemon.  0, or -EIO. */
static int journal_begin(struct db *d, int jpt_tx)
{
    if (d->bulk && !d->journal_active && bulk_commit(d) != 0)
        return -EIO;
    if (d->ckpt_dirty) {
        db_dirty_clear(d);
        d->ckpt_dirty = 0;
    }
    d->journal_active = 1;
    d->jpt_tx = jpt_tx;
    d->resv_refused = 0; /* a new transaction reserves again */
    return 0;
}

/* A write to the journal (kind DBF_JOURNAL): a header with the magic
 * starts a transaction (idle or bulk -> journal_active); a zeroed header
 * over an active one is a PERSIST commit. */
static ssize_t write_journal(struct db *d, int fd, const void *buf, size_t len, off_t off)
{
    static const uint8_t zero8[8];
    ssize_t n;

    if (off == 0 && len >= 8 && memcmp(buf, db_journal_magic, 8) == 0) {
        if (journal_begin(d, 0) != 0)
            return -EIO;
    } else if (off == 0 && len >= 8 && memcmp(buf, zero8, 8) == 0 && d->journal_active) {
        /* PERSIST (or exclusive mode) commit: log, then zero the header. */
        n = journal_commit(d, JM_PERSIST);
        if (n)
            return n;
    }
    return do_pwrite(fd, buf, len, off);
}

/*
 * PASSTHROUGH JOURNALS.  A rollback journal created while passthrough is
 * allowed (fs.c asks at its CREATE: dbreg_journal_passthrough) is written
 * by the kernel straight to the backing file, so the daemon sees neither
 * the header that starts a transaction nor the zeroed header that commits
 * one in PERSIST mode or under locking_mode=EXCLUSIVE.  It follows the
 * journal's header in the backing file instead (db_journal_follow), at
 * every event that can come after those writes:
 *   - the journal's fsync (SQLite syncs the header it has just written,
 *     and, unless synchronous=OFF, the zeroed header of a commit);
 *   - each write to the main file (always after the journal's header);
 *   - the journal's truncate and unlink (the TRUNCATE and DELETE commits,
 *     seen as before), and the close of its last passthrough handle;
 *   - /status and the registry's listings (dbreg.c), and images.
 * A header names its transaction: SQLite writes each new one with a
 * random nonce (bytes 12..15) and the original database size (16..19),
 * kept in jtag.  So, with jpt > 0:
 *   idle, a header with the magic          -> journal_active, jpt_tx
 *   journal_active && jpt_tx, the header zeroed, short, gone, or of
 *   another transaction                    -> journal_commit (the
 *                                             transaction committed), then
 *                                             as idle
 * With locking_mode=EXCLUSIVE and synchronous=OFF nothing else marks a
 * commit: it is logged at the next of these events (the next write
 * transaction's first write, the connection's close, /status).
 * A header that cannot be read changes nothing: the operation is refused
 * (EIO), or, where nothing can be refused, left to the next event.  With
 * data.max-log-size reached, a transaction is refused at its first write
 * to the main file (ENOSPC: SQLITE_FULL, as C9 wants), not at the
 * journal's fsync (which SQLite would report as an I/O error).
 */

/* The backing journal's header: 1 if it starts with the magic (its bytes
 * 0..19 in h), 0 if not (zeroed, shorter, or no journal), or LV_EIO when
 * it cannot be read (logged): then nothing can be told. */
static int journal_peek(struct db *d, uint8_t h[20])
{
    char path[PATH_MAX * 2];
    ssize_t n;
    int fd, rc;

    snprintf(path, sizeof path, "%s/%s-journal", d->reg->files, d->name);
    fd = sys_open(path, O_RDONLY, 0); /* (the seam: tests make it fail; it logs failures) */
    if (fd == LV_ENOENT)
        return 0;
    if (fd < 0)
        return LV_EIO;
    n = pread(fd, h, 20, 0);
    if (n < 0)
        LV_ERROR("%s: read %s: %s", d->name, path, strerror(errno));
    rc = n < 0 ? LV_EIO : n == 20 && memcmp(h, db_journal_magic, 8) == 0;
    close(fd);
    return rc;
}

int db_journal_follow(struct db *d, int can_refuse)
{
    uint8_t h[20];
    int valid, rc, full;

    if (!d->jpt || d->kind != DBK_SQLITE || d->broken || dbreg_is_replica(d->reg))
        return 0;
    valid = journal_peek(d, h);
    if (valid < 0)
        return -EIO; /* nothing changes: the operation is refused, or the next event looks again */
    if (d->journal_active && d->jpt_tx) {
        if (valid && memcmp(h + 12, d->jtag, sizeof d->jtag) == 0)
            return 0; /* the same transaction */
        if ((rc = journal_commit(d, JM_PERSIST)) != 0) {
            /* Committed in the file already (C8 does not hold here): the
             * database no longer follows its log until start-up logs it. */
            db_fail(d, "a transaction committed by zeroing its passthrough journal's header could not be logged");
            return rc;
        }
    }
    if (d->journal_active || !valid)
        return 0;
    full = __atomic_load_n(&d->reg->log_full, __ATOMIC_RELAXED);
    if (full && !can_refuse)
        return 0; /* left to the first write to the main file, which refuses it (SQLITE_FULL) */
    if (journal_begin(d, 1) != 0)
        return -EIO;
    memcpy(d->jtag, h + 12, sizeof d->jtag);
    if (full) {
        /* data.max-log-size reached: no new rollback transaction may
         * start (as at a journal write through the daemon).  Its first
         * write to the main file is refused with ENOSPC (SQLITE_FULL),
         * and the rollback's writes go through (resv_refused; journal
         * writes of an active transaction are not refused either). */
        d->resv_refused = 1;
        d->refused++;
        return -ENOSPC;
    }
    return 0;
}

void db_capture_pending(struct db *d)
{
    if (d->kind != DBK_SQLITE)
        return;
    if (d->jpt)
        (void)db_journal_follow(d, 0);
    if (d->hdr_wal)
        db_wal_capture(d); /* a failure leaves the commits in the WAL (wal_stalled) */
}

void db_journal_pt_open(struct db *d)
{
    pthread_mutex_lock(&d->mu);
    d->jpt++;
    pthread_mutex_unlock(&d->mu);
}

void db_journal_pt_close(struct db *d)
{
    pthread_mutex_lock(&d->mu);
    (void)db_journal_follow(d, 0);
    LV_ASSERT(d->jpt > 0);
    d->jpt--;
    hook_exit(d);
}

/*
 * CAPTURE OF WAL COMMITS (db_wal_capture).  A WAL transaction is logged
 * once its commit frame is in the backing WAL: the capture reads the WAL
 * from where it stands (d->wcur, just after the last commit logged) with
 * log/wal.c's cursor, which validates frames as SQLite's recovery does
 * (salts, the cumulative checksums) and returns whole commits only, and
 * logs each as one record.  It never needs the application's write: it
 * runs
 *   - after a write through the daemon that completes a commit frame
 *     (write_wal), so that the commit's FUSE request returns with the
 *     record logged (and, with replication.sync-replicas, acknowledged);
 *   - before the application's fsync of the -wal (db_on_fsync), so that
 *     synchronous=FULL makes the record as durable as the commit;
 *   - before anything that can drop WAL frames: a write, truncate or fsync
 *     of the main file in WAL mode (a checkpoint copying frames), and a
 *     truncate or unlink of the -wal;
 *   - when asked (status, images, the WAL watcher).
 * A WAL restart (a new header, salts changed) is noticed by the cursor.
 * SQLite restarts only after a checkpoint copied every committed frame
 * into the main file, and each of the checkpoint's writes captured first,
 * so the old generation is wholly logged by then; the pages checkpoints
 * wrote are verified against the log at that point (ckpt_verify).
 *
 * A commit can no longer be refused when it is written.  When the log
 * cannot take a record (data.max-log-size reached, a failed append, a
 * broken database), the commit stays in the WAL, which SQLite keeps until
 * a checkpoint copies it: so the capture sets wal_stalled, and checkpoint
 * writes, WAL truncates and unlinks are refused (EIO) until a later
 * capture logs everything.  SQLite ignores a failed automatic checkpoint
 * and tries again later; nothing committed is lost.
 */
static void ckpt_verify(struct db *d);

#define WAL_RETRY_US 100000 /* a stalled WAL is read again at most this often */

/* Adopt the WAL generation of c->h as current, just after its header. */
static void wal_adopt(struct db *d, const struct wal_hdr *h)
{
    if (d->wal_valid)
        ckpt_verify(d); /* the WAL is restarted: checkpoints copied everything */
    d->wal_valid = 1;
    d->wal_diverged = 0;
    d->tail_in_wal = 0;    /* the last record is of an older generation */
    d->wal_anchored = 0;
    d->wal_psz = h->page_size;
    d->wal_salt1 = h->salt1;
    d->wal_salt2 = h->salt2;
    d->wal_magic = h->magic;
    d->wal_next = 0;
    memset(&d->wcur, 0, sizeof d->wcur);
    d->wcur.h = *h;
    d->wcur.s[0] = h->ck1;
    d->wcur.s[1] = h->ck2;
}

/* The frame just before the cursor is the last commit logged: SQLite never
 * rewrites it unless it disowned that commit (its WAL fsync failed after
 * the frame was written, and the next transaction wrote over it).  Then
 * the log holds a commit the database does not, and no later commit of
 * this generation continues the cursor's chain: say so, once.  The first
 * checkpoint's ckpt_verify logs the database as it is.  c: the cursor, of
 * the WAL's current header. */
static void wal_check_behind(struct db *d, int fd, const struct wal_cursor *c)
{
    uint8_t fh[WAL_FRAME_HDR_SIZE];

    if (pread(fd, fh, sizeof fh, (off_t)wal_frame_off(c->next - 1, c->h.page_size)) != (ssize_t)sizeof fh)
        return;
    if (lv_get32(fh + 8) == c->h.salt1 && lv_get32(fh + 12) == c->h.salt2 && lv_get32(fh + 16) == c->s[0] &&
        lv_get32(fh + 20) == c->s[1])
        return;
    d->wal_diverged = 1;
    LV_ERROR("%s: the WAL's frame %u, the last commit logged (TXID %llu), was written over: SQLite disowned that "
             "commit (its WAL fsync failed?); the log holds a transaction the database does not, and will be "
             "made to follow the database at the next checkpoint",
             d->name, c->next - 1, (unsigned long long)d->txid);
}

int db_wal_capture(struct db *d)
{
    char rel[PATH_MAX];
    struct wal_cursor c;
    struct wal_commit *v = NULL;
    size_t n = 0, i = 0;
    int fd, restarted = 0, rc = 0;

    if (d->kind != DBK_SQLITE || dbreg_is_replica(d->reg) || d->journal_active)
        return 0; /* (a rollback transaction is open: no WAL commit can be) */
    if (d->broken)
        return LV_EIO;
    if (d->bulk && bulk_commit(d) != 0)
        return LV_EIO; /* unjournaled writes before the WAL's commits: logged first */
    if (d->wal_stalled && lv_mono_us() < d->wal_retry_us)
        return d->wal_stall_rc; /* a stalled WAL is read again at most every WAL_RETRY_US */
    snprintf(rel, sizeof rel, "%s-wal", d->name);
    fd = openat(d->reg->rootfd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 0;
    if (fd < 0) {
        LV_ERROR("%s: open %s/%s: %s", d->name, d->reg->files, rel, strerror(errno));
        rc = LV_EIO;
        goto out_stall;
    }
    c = d->wcur;
    if (!d->wal_valid)
        memset(&c, 0, sizeof c);
    rc = wal_read_commits_keep(fd, rel, &c, &v, &n, &restarted, &d->wal_keep);
    if (rc)
        goto out_close;
    /* New commits continue the cursor's chain, so the frame before it is
     * as logged; only a read that found none needs to look (same header) */
    if (n == 0 && d->wal_valid && !restarted && c.next > 0 && !d->wal_diverged &&
        memcmp(&c.h, &d->wcur.h, sizeof c.h) == 0)
        wal_check_behind(d, fd, &c);
    if (c.h.magic && (!d->wal_valid || restarted || memcmp(&c.h, &d->wcur.h, sizeof c.h) != 0))
        wal_adopt(d, &c.h);
    for (i = 0; i < n; i++) {
        if (__atomic_load_n(&d->reg->log_full, __ATOMIC_RELAXED)) {
            rc = LV_ENOSPC; /* data.max-log-size reached: the commits wait in the WAL */
            break;
        }
        rc = db_capture_wal(d, fd, v[i].first, v[i].last, v[i].db_pages, 0, &d->wal_keep);
        if (rc)
            break;
        d->wal_next = v[i].last + 1;
        d->wcur.next = v[i].last + 1;
        d->wcur.s[0] = v[i].ck[0];
        d->wcur.s[1] = v[i].ck[1];
        d->jmode = JM_WAL;
    }
    if (i > 0)
        d->wal_captures++;
out_close:
    close(fd);
out_stall:
    free(v);
    d->wal_keep.len = 0;
    if (d->wal_keep.cap > (1u << 20)) { /* a big transaction's buffer is not kept for the next */
        free(d->wal_keep.buf);
        memset(&d->wal_keep, 0, sizeof d->wal_keep);
    }
    if (rc) {
        d->wal_retry_us = lv_mono_us() + WAL_RETRY_US;
        d->wal_stall_rc = rc;
    }
    if (rc && !d->wal_stalled) {
        __atomic_store_n(&d->wal_stalled, 1, __ATOMIC_RELAXED);
        LV_ERROR("%s: %zu committed WAL transaction(s) cannot be logged yet (%s); they stay in the WAL, and "
                 "checkpoints are refused until they are logged%s",
                 d->name, n > i ? n - i : (size_t)1, lv_strerror(rc),
                 rc == LV_ENOSPC ? " (free space for the log, or let the archive catch up)" : "");
    } else if (!rc && d->wal_stalled) {
        __atomic_store_n(&d->wal_stalled, 0, __ATOMIC_RELAXED);
        LV_INFO("%s: the WAL's commits are logged again; checkpoints go through", d->name);
    }
    return rc;
}

/* Before an operation that can drop WAL frames (a checkpoint write or
 * truncate of the main file, a truncate or unlink of the -wal): log every
 * commit first.  0, or -EIO to refuse the operation (wal_stalled). */
static int wal_before_drop(struct db *d)
{
    if (db_wal_capture(d) != 0) {
        d->refused++;
        return -EIO;
    }
    if (d->log_unsynced) {
        /* The WAL was the durable copy of the records not yet fsynced (C7):
         * the log takes over before the frames can go. */
        if (txlog_sync(d->log) != 0) {
            db_fail(d, "fsync of the transaction log failed");
            return -EIO;
        }
        db_log_synced(d);
    }
    return 0;
}

/* Does the WAL write [off, off+len), just performed, complete a commit
 * frame?  Either it ends at a frame's last byte, or it is exactly a
 * frame's 24-byte header (walRewriteChecksums rewrites the headers of the
 * frames after an in-place overwrite, the commit frame's last); in both
 * cases the frame's header, now in the file, has a database size. */
static int wal_write_commits(struct db *d, int fd, size_t len, off_t off)
{
    uint64_t fsz = WAL_FRAME_HDR_SIZE + d->wal_psz, end = (uint64_t)off + len;
    uint8_t fh[WAL_FRAME_HDR_SIZE];
    uint64_t k;

    if (!d->wal_valid || (uint64_t)off < WAL_HDR_SIZE)
        return 0;
    if ((end - WAL_HDR_SIZE) % fsz == 0)
        k = (end - WAL_HDR_SIZE) / fsz - 1;
    else if (len == WAL_FRAME_HDR_SIZE && ((uint64_t)off - WAL_HDR_SIZE) % fsz == 0)
        k = ((uint64_t)off - WAL_HDR_SIZE) / fsz;
    else
        return 0;
    return pread(fd, fh, sizeof fh, (off_t)wal_frame_off((uint32_t)k, d->wal_psz)) == (ssize_t)sizeof fh &&
           lv_get32(fh + 4) != 0;
}

/* A write to the WAL through the daemon (kind DBF_WAL; with kernel
 * passthrough the -wal never comes here): performed as asked; a header
 * write adopts the new generation, and a write that completes a commit
 * frame logs the commit before the request returns. */
static ssize_t write_wal(struct db *d, int fd, const void *buf, size_t len, off_t off)
{
    struct wal_hdr wh;
    ssize_t n;

    if (d->bulk && !d->journal_active && bulk_commit(d) != 0)
        return -EIO;
    if (off == 0 && len >= WAL_HDR_SIZE && (n = wal_before_drop(d)) != 0)
        return n; /* a restart: the old generation must be logged first */
    n = do_pwrite(fd, buf, len, off);
    db_wal_changed(d); /* even a failed write may have changed the file */
    if (n < 0)
        return n;
    d->jmode = JM_WAL;
    if (off == 0 && len >= WAL_HDR_SIZE) {
        if (wal_hdr_decode(buf, &wh) == 0)
            wal_adopt(d, &wh);
    } else if (wal_write_commits(d, fd, len, off)) {
        db_wal_capture(d); /* a failure leaves the commit in the WAL: wal_stalled */
        /* A synchronous=FULL writer fsyncs the -wal next: with a commit
         * that waits for replicas, that fsync runs during the wait. */
        if (db_wal_syncs_commits(d) && !__atomic_load_n(&d->reg->wal_pt, __ATOMIC_RELAXED))
            db_presync_arm(d, fd);
    }
    return n;
}

/* The file system under data.dir is full: SQLite fails (and rolls back)
 * this transaction with SQLITE_FULL.  Say so, at most every 10 s. */
static void nospace_warn(struct db *d, enum db_filekind kind, ssize_t n)
{
    int64_t now = lv_mono_us();

    if (d->nospace_warn_us && now - d->nospace_warn_us < 10000000)
        return;
    d->nospace_warn_us = now;
    LV_ERROR("%s: writing its %s in %s failed: %s; the application's transaction fails "
             "(SQLITE_FULL), committed transactions are kept; free space there",
             d->name, kind == DBF_WAL ? "WAL" : kind == DBF_JOURNAL ? "rollback journal" : "file", d->reg->files,
             strerror(-(int)n));
}

ssize_t db_on_write(struct db *d, enum db_filekind kind, int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n;

    if (kind == DBF_SHM)
        return do_pwrite(fd, buf, len, off);
    if (dbreg_is_replica(d->reg))
        return db_replica_refuse(d->reg, d->name);
    pthread_mutex_lock(&d->mu);
    if ((n = db_fence_refuse(d->reg, d->name)) != 0)
        goto out_unlock;
    if (d->broken || settle_kind(d, kind, buf, len, off) != 0) {
        n = -EIO;
        goto out_unlock;
    }
    if (d->kind != DBK_SQLITE) {
        n = do_pwrite(fd, buf, len, off);
        goto out_unlock;
    }
    if (kind == DBF_JOURNAL && !d->journal_active && __atomic_load_n(&d->reg->log_full, __ATOMIC_RELAXED)) {
        /* data.max-log-size reached (archive lagging): no new rollback
         * transaction may start, so no record is ever dropped.  SQLite sees
         * SQLITE_FULL.  The journal writes of a transaction already active
         * go through: its commit, or the rollback of a hot journal, must be
         * able to finish.  (WAL commits wait in the WAL: db_wal_capture.) */
        d->refused++;
        n = -ENOSPC;
        goto out_unlock;
    }
    if (kind == DBF_MAIN && d->jpt && (n = db_journal_follow(d, 1)) != 0)
        goto out_unlock; /* the header written since: a transaction started (or committed) */
    if (kind == DBF_MAIN) {
        db_img_cow_main(d, (uint64_t)off, len);
        n = write_main(d, fd, buf, len, off);
    } else if (kind == DBF_JOURNAL) {
        n = write_journal(d, fd, buf, len, off);
    } else if (kind == DBF_WAL) {
        n = write_wal(d, fd, buf, len, off);
    } else {
        n = do_pwrite(fd, buf, len, off);
    }
    if (n == -ENOSPC || n == -EDQUOT)
        nospace_warn(d, kind, n);
out_unlock:
    hook_exit(d);
    return n;
}

int db_on_truncate(struct db *d, enum db_filekind kind, int fd, const char *rel, off_t size)
{
    int rc = 0;
    if (dbreg_is_replica(d->reg) && kind != DBF_SHM) {
        /* A reader's connection may empty its -wal or -journal; nothing else. */
        if (kind == DBF_MAIN || size != 0)
            return db_replica_refuse(d->reg, d->name);
        return (fd >= 0 ? ftruncate(fd, 0) : trunc_at(d->reg->rootfd, rel, 0)) ? -errno : 0;
    }
    pthread_mutex_lock(&d->mu);
    if (kind != DBF_SHM && (rc = db_fence_refuse(d->reg, d->name)) != 0)
        goto out_unlock;
    if (d->broken && kind != DBF_SHM) {
        rc = -EIO;
        goto out_unlock;
    }
    if ((kind == DBF_MAIN || kind == DBF_JOURNAL) && d->jpt && (rc = db_journal_follow(d, 0)) != 0)
        goto out_unlock;
    if (d->kind == DBK_SQLITE) {
        if (kind == DBF_MAIN)
            db_img_cow_main(d, (uint64_t)size, 0);
        if ((kind == DBF_WAL || (kind == DBF_MAIN && d->hdr_wal)) && (rc = wal_before_drop(d)) != 0)
            goto out_unlock;
        if (kind == DBF_MAIN) {
            if (!d->journal_active && !d->bulk && (!d->hdr_wal || size == 0) &&
                (uint64_t)size < (uint64_t)d->map.npages * d->map.page_size)
                d->bulk = 1; /* unjournaled (cp over it, or journal_mode=OFF/MEMORY); SQLite
                              * never truncates a WAL-mode database to 0, cp does */
            if (d->journal_active || d->bulk)
                d->size_changed = 1;
        } else if (kind == DBF_JOURNAL && size == 0 && d->journal_active) {
            rc = journal_commit(d, JM_TRUNCATE);
            if (rc)
                goto out_unlock;
        } else if (kind == DBF_WAL && size == 0) {
            ckpt_verify(d);
        }
    }
    if (fd >= 0 ? ftruncate(fd, size) : trunc_at(d->reg->rootfd, rel, size))
        rc = -errno;
    if (kind == DBF_WAL)
        db_wal_changed(d);
    if (rc == 0 && d->kind == DBK_SQLITE && kind == DBF_WAL && size == 0)
        d->wal_valid = 0; /* only once it is gone: a failed truncate leaves the logged generation */
out_unlock:
    hook_exit(d);
    return rc;
}

int db_on_unlink(struct db *d, enum db_filekind kind, const char *rel)
{
    int rc = 0;
    if (dbreg_is_replica(d->reg)) /* a reader's connection closing: nothing to capture */
        return unlinkat(d->reg->rootfd, rel, 0) ? -errno : 0;
    pthread_mutex_lock(&d->mu);
    if (kind == DBF_JOURNAL && d->jpt && (rc = db_journal_follow(d, 0)) != 0)
        goto out_unlock;
    if (d->kind == DBK_SQLITE && kind == DBF_JOURNAL && d->journal_active &&
        (rc = db_fence_refuse(d->reg, d->name)) != 0)
        goto out_unlock; /* the commit is refused: SQLite rolls back from the journal once writes return */
    if (d->kind == DBK_SQLITE && kind == DBF_JOURNAL && d->journal_active) {
        rc = journal_commit(d, JM_DELETE);
        if (rc)
            goto out_unlock;
    }
    if (kind == DBF_WAL && d->kind == DBK_SQLITE) {
        if ((rc = wal_before_drop(d)) != 0)
            goto out_unlock;
        ckpt_verify(d);
    }
    if (unlinkat(d->reg->rootfd, rel, 0) != 0)
        rc = -errno;
    else if (kind == DBF_WAL && d->kind == DBK_SQLITE)
        d->wal_valid = 0; /* only once it is gone: a failed unlink leaves the logged generation */
out_unlock:
    hook_exit(d);
    return rc;
}

int db_close_may_commit(struct db *d)
{
    pthread_mutex_lock(&d->mu);
    /* In a WAL-mode database only a truncation to a smaller size (cp over
     * it, handled in db_on_truncate) can start unjournaled writes. */
    int settled = d->kind == DBK_SQLITE && d->hdr_wal && d->map.npages > 0 && !d->bulk && !d->journal_active;
    pthread_mutex_unlock(&d->mu);
    return !settled;
}

int db_on_flush(struct db *d, enum db_filekind kind)
{
    int rc = 0;
    if (kind != DBF_MAIN)
        return 0;
    pthread_mutex_lock(&d->mu);
    if (d->kind == DBK_SQLITE && d->bulk && !d->journal_active && !d->broken &&
        (rc = db_fence_refuse(d->reg, d->name)) == 0) /* fenced: the commit is refused, nothing logged */
        rc = bulk_commit(d);
    hook_exit(d);
    return rc;
}

/* Is no checkpoint copying this WAL now (C10 of db.c)?  A checkpointer sets the
 * wal-index's nBackfillAttempted (bytes 128..131 of the -shm, native
 * order; nBackfill is bytes 96..99) to its last frame before it fsyncs
 * the WAL, and nBackfill to the same once it has copied, so a fsync
 * while they differ may be a checkpointer's, during which another
 * connection may be appending frames.  Without that, the -wal's fsync
 * comes from the writer, which holds the WAL write lock: no frame is
 * written meanwhile.  No -shm (locking_mode=EXCLUSIVE keeps the
 * wal-index in memory): one connection, so idle.  Unreadable, or a -shm
 * not on kernel passthrough (SQLite's mmap then reaches the backing file
 * only at write-back): not idle. */
static int wal_ckpt_idle(struct db *d)
{
    char rel[PATH_MAX];
    uint32_t ck[10];
    int fd, idle = 0;

    if (!fs_passthrough_active())
        return 0;
    snprintf(rel, sizeof rel, "%s-shm", d->name);
    fd = openat(d->reg->rootfd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT;
    if (pread(fd, ck, sizeof ck, 96) == (ssize_t)sizeof ck)
        idle = ck[8] <= ck[0];
    close(fd);
    return idle;
}

int db_on_fsync(struct db *d, enum db_filekind kind, int fd, int datasync)
{
    int rc = 0, log_rc = 0, synced = 0, ckpt_idle = 0;

    /* The -wal's fsync (synchronous=FULL) comes first, without d->mu:
     * meanwhile the WAL watcher captures the commit it makes durable (its
     * write woke it), so the capture costs the commit no time.  The capture
     * below, after it, finds the commit logged or logs it. */
    if (kind == DBF_WAL) {
        ckpt_idle = wal_ckpt_idle(d);
        if ((rc = wal_presynced(d, fd, datasync)) < 0 || (rc == 0 && (rc = wal_fsync(d, fd, datasync)) != 0))
            return rc; /* SQLite fails the commit; nothing to make durable */
        rc = 0;
        synced = 1;
    }
    pthread_mutex_lock(&d->mu);
    if (kind == DBF_JOURNAL && d->jpt && (rc = db_journal_follow(d, 0)) != 0)
        goto out_unlock; /* the header it syncs: a transaction started, or a PERSIST commit */
    if (d->kind == DBK_SQLITE && !d->broken) {
        if (kind == DBF_WAL || (kind == DBF_MAIN && d->hdr_wal))
            db_wal_capture(d); /* a failure leaves the commits in the WAL (wal_stalled) */
        if (kind == DBF_MAIN && d->bulk && !d->journal_active) {
            rc = db_fence_refuse(d->reg, d->name); /* fenced: the commit is refused, nothing logged */
            if (rc == 0)
                rc = bulk_commit(d);
            if (rc)
                goto out_unlock;
        }
        if (d->journal_active)
            d->sync_pending = 1;
        /* C7.  The -wal's fsync (synchronous=FULL): its commit is captured,
         * and the WAL made durable is the durable copy of its record until
         * the log is fsynced: one fsync per commit.  Once per WAL
         * generation the log is fsynced too, so that a record of this
         * generation is durable: start-up then knows where the WAL's
         * unlogged commits begin. */
        if (d->log_unsynced && !d->broken && (kind != DBF_WAL || !d->wal_anchored)) {
            if (kind == DBF_WAL) /* once per WAL generation: the -wal is synced already */
                log_rc = txlog_sync(d->log);
            else
                rc = sync_both(d, fd, datasync, &log_rc);
            synced = 1;
            if (log_rc != 0) {
                db_fail(d, "fsync of the transaction log failed");
                rc = -EIO;
                goto out_unlock;
            }
            db_log_synced(d);
        } else if (kind == DBF_WAL && ckpt_idle) {
            /* C10: the fsync covered every commit of this WAL generation,
             * and the log holds the older ones durably. */
            db_durable_to(d, d->txid);
        }
        if (kind == DBF_WAL && ckpt_idle) { /* the writer's: after each commit at synchronous=FULL */
            d->wal_fsync_streak = d->recs_since_wal_fsync <= 2 ? d->wal_fsync_streak + 1 : 0;
            d->recs_since_wal_fsync = 0;
        }
    }
out_unlock:
    hook_exit(d);
    if (rc == 0 && !synced && (datasync ? fdatasync(fd) : fsync(fd)) != 0)
        rc = -errno;
    return rc;
}

