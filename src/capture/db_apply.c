/*
 * db_apply.c -- a replica applies the primary's records to its databases,
 * atomically for the SQLite readers that use its mount.
 *
 * WHAT A REPLICA IS
 * The registry turns replica with dbreg_set_replica: applications' writes
 * to a database, its -journal or its -wal are refused (EROFS, see
 * db_capture.c and fs.c); -shm traffic, reads, creating an empty -wal and
 * deleting an empty -wal or -journal still work, so readers open and read
 * as anywhere.  The only writer of the backing files is this module,
 * driven by the replication client (src/replica), one call at a time
 * (reg->apply_mu).
 *
 * ONE APPLY (dbreg_apply), in this order:
 *  1. decode every page of every record of the batch (txlog_record_pages:
 *     header, trailer, payload), before any lock is taken;
 *  2. take SQLite's locks through the mount (take_locks): the kernel keeps
 *     POSIX locks for the FUSE inodes (fs.c has no lock operations), so an
 *     open file description lock (F_OFD_SETLK) on a file opened through
 *     the mount excludes the applications' SQLite connections exactly as
 *     another SQLite process would:
 *       - EXCLUSIVE on the database file (RESERVED, PENDING, then the
 *         SHARED range, as unixLock does): no connection is reading, and
 *         none is in WAL mode (a WAL connection keeps SHARED for its
 *         life).  PENDING, once won, is kept while waiting, so new
 *         rollback-mode readers wait and the ones inside finish;
 *       - else, if some connection uses the -shm (its DMS byte is locked:
 *         WAL connections exist), the WAL lock set: DMS shared, WRITE,
 *         CKPT, RECOVER, READ0-4 exclusive (bytes 120-128), won byte by
 *         byte and kept; new WAL readers are kept out meanwhile by
 *         setting the wal-index's nBackfill != mxFrame (wal_locks_round);
 *       - else wait, up to the caller's wait_ms, then give up with
 *         LV_EBUSY having changed nothing.
 *  3. under d->mu: check the chain (TXID, pre checksum, database ID) and
 *     every post checksum against the checksum map (with an undo log, so
 *     a bad record changes nothing); write the pages to the backing file,
 *     set its size, append the records unchanged to the replica's own log;
 *  4. invalidate exactly the changed byte ranges (and the size) in the
 *     kernel's page cache (dbreg_inval, from fs.c), with d->mu released:
 *     an invalidation waits for reads in flight, which the daemon serves;
 *  5. WAL lock set only: publish a new wal-index header (iChange + 1,
 *     mxFrame 0, nPage = the new size, checksum), copy 1 then copy 0 as
 *     SQLite's walIndexWriteHdr does, so that every connection's next
 *     read transaction sees a changed header and drops its page cache;
 *  6. release the locks.
 * Readers therefore see the database before or after a batch, never in
 * between (the SQLite-reader invariant the tests check), and a lock is
 * held only for steps 3-6.
 *
 * LONG READERS.  A read transaction that outlasts wait_ms makes the apply
 * return LV_EBUSY with nothing changed; the caller keeps the records,
 * keeps receiving, and tries again, applying everything pending in one
 * batch once the reader ends.  Replication never breaks a reader's
 * snapshot; the lag this costs shows in /status (and /health past
 * replication.max-lag).
 *
 * ORDER AND CRASHES.  The file is written before the log.  A crash
 * between the two leaves the file ahead of the log; start-up reconcile
 * (db_reconcile.c) then logs the difference as one RECOVERED record whose
 * post checksum is the primary's, so the position the replica reports
 * still matches the primary's history when the batch was one record, and
 * the primary sends a snapshot otherwise.  A crash in the middle of the
 * page writes leaves a state of no TXID: reconcile's record then has a
 * checksum the primary does not know, and the primary sends a snapshot.
 *
 * INVARIANTS
 *  A1. After a successful apply, the backing file, the checksum map, the
 *      log's last record and d->txid all describe the primary's database
 *      just after the last record of the batch (C4 of db.c).
 *  A2. Nothing is written to the file or the log before every record of
 *      the batch has been decoded and its checksums verified.
 *  A3. The file is written only while SQLite's locks are held (step 2),
 *      and the locks are released only after the kernel cache and the
 *      wal-index header describe the new content.
 *  A4. d->mu is never held while the applier waits for a SQLite lock or
 *      calls into the kernel through the mount (handlers take d->mu).
 */
#include "capture/db.h"
#include "capture/db_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "base/cksum.h"
#include "base/dbhdr.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"
#include "base/worker.h"
#include "log/txlog.h"

/* SQLite's lock bytes (os_unix.c, wal.c). */
#define SQ_PENDING 0x40000000
#define SQ_RESERVED (SQ_PENDING + 1)
#define SQ_SHARED_FIRST (SQ_PENDING + 2)
#define SQ_SHARED_SIZE 510
#define SHM_LOCK_FIRST 120 /* WRITE, CKPT, RECOVER, READ0..READ4 */
#define SHM_LOCK_N 8
#define SHM_DMS 128
#define SHM_HDR 48         /* one copy of the wal-index header */
#define SHM_CKPT 96        /* WalCkptInfo: nBackfill */
#define SHM_BACKFILL_ATTEMPTED 128

/* ---------------------------------------------------------------- setup */

/* A replica's -wal files must hold no frame: readers would take them
 * over the pages the applier writes into the database file.  Frames left
 * by the time this node was a primary (logged at capture or by start-up
 * reconcile) are checkpointed into the file with SQLite itself, on the
 * backing file, before the mount serves anyone. */
static void checkpoint_wals(struct dbreg *r)
{
    for (int b = 0; b < DB_NBUCKETS; b++)
        for (struct db *d = r->buckets[b]; d; d = d->next) {
            char rel[PATH_MAX], path[PATH_MAX * 2];
            struct stat st;
            snprintf(rel, sizeof rel, "%s-wal", d->name);
            if (fstatat(r->rootfd, rel, &st, 0) != 0 || st.st_size == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", r->files, d->name);
            sqlite3 *db = NULL;
            int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
            if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
            if (rc != SQLITE_OK)
                LV_WARN("%s: could not checkpoint its -wal before serving as a replica: %s", d->name,
                        db ? sqlite3_errmsg(db) : "out of memory");
            else
                LV_INFO("%s: checkpointed its -wal (%lld bytes) before serving as a replica", d->name,
                        (long long)st.st_size);
            sqlite3_close(db);
        }
}

void dbreg_set_replica(struct dbreg *r, const char *primary_url)
{
    if (primary_url) {
        pthread_mutex_lock(&r->mu);
        checkpoint_wals(r);
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_lock(&r->url_mu);
    free(r->primary_url);
    r->primary_url = primary_url ? strdup(primary_url) : NULL;
    pthread_mutex_unlock(&r->url_mu);
    __atomic_store_n(&r->replica, primary_url != NULL, __ATOMIC_RELEASE);
}

void dbreg_set_fenced(struct dbreg *r, int fenced)
{
    int was = __atomic_exchange_n(&r->fenced, fenced != 0, __ATOMIC_ACQ_REL);

    if (!fenced || was)
        return;
    /* The barrier: every write checks the flag under its d->mu (db_fence_refuse),
     * so once each d->mu has been free, none that passed the check is left.
     * References first under r->mu, then each d->mu alone (a commit holds
     * d->mu across its fsyncs: r->mu must not wait for them), as dbreg_list. */
    struct db **dv = NULL;
    size_t nd = 0, cap = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < DB_NBUCKETS; i++)
        for (struct db *d = r->buckets[i]; d; d = d->next) {
            if (lv_grow((void **)&dv, &cap, nd, sizeof *dv, 16) != 0) {
                pthread_mutex_lock(&d->mu); /* out of memory: wait here instead */
                pthread_mutex_unlock(&d->mu);
                continue;
            }
            d->refs++;
            dv[nd++] = d;
        }
    pthread_mutex_unlock(&r->mu);
    for (size_t k = 0; k < nd; k++) {
        pthread_mutex_lock(&dv[k]->mu);
        pthread_mutex_unlock(&dv[k]->mu);
        db_put(dv[k]);
    }
    free(dv);
    dbreg_bump_seq(r); /* /v1/wait and the like look again */
}

int dbreg_is_fenced(const struct dbreg *r)
{
    int64_t at = __atomic_load_n(&r->fence_at_us, __ATOMIC_ACQUIRE);

    return __atomic_load_n(&r->fenced, __ATOMIC_ACQUIRE) || (at != 0 && lv_mono_us() >= at);
}

void dbreg_set_fence_deadline(struct dbreg *r, int64_t mono_us)
{
    __atomic_store_n(&r->fence_at_us, mono_us, __ATOMIC_RELEASE);
}

void dbreg_set_term(struct dbreg *r, uint64_t term)
{
    LV_ASSERT(term <= TXLOG_TERM_MAX);
    __atomic_store_n(&r->term, term, __ATOMIC_RELEASE);
}

uint64_t dbreg_term(const struct dbreg *r)
{
    return __atomic_load_n(&r->term, __ATOMIC_ACQUIRE);
}

/* 1 at most once every 10 s per *last (a refusal's log line; atomic). */
static int warn_due(int64_t *last_us)
{
    int64_t now = lv_mono_us(), last = __atomic_load_n(last_us, __ATOMIC_RELAXED);

    if (last != 0 && now - last <= 10000000)
        return 0;
    __atomic_store_n(last_us, now, __ATOMIC_RELAXED);
    return 1;
}

int db_fence_refuse(struct dbreg *r, const char *what)
{
    if (!dbreg_is_fenced(r))
        return 0;
    if (warn_due(&r->fence_warn_us)) {
        LV_WARN("refused a write to %s: this node lost its primary lease (fenced) and takes no writes until it "
                "renews it or another primary is elected", what);
    }
    return -EROFS;
}

int dbreg_is_replica(const struct dbreg *r) { return __atomic_load_n(&r->replica, __ATOMIC_ACQUIRE); }

void dbreg_set_mount(struct dbreg *r, const char *mountpoint)
{
    snprintf(r->mount, sizeof r->mount, "%s", mountpoint);
}

void dbreg_set_inval(struct dbreg *r, const struct dbreg_inval *iv) { r->iv = *iv; }

/* ----------------------------------------------------- commit sequence */

void dbreg_bump_seq(struct dbreg *r)
{
    pthread_mutex_lock(&r->seq_mu);
    r->seq++;
    pthread_cond_broadcast(&r->seq_cv);
    pthread_mutex_unlock(&r->seq_mu);
}

uint64_t dbreg_commit_seq(struct dbreg *r)
{
    pthread_mutex_lock(&r->seq_mu);
    uint64_t s = r->seq;
    pthread_mutex_unlock(&r->seq_mu);
    return s;
}

uint64_t dbreg_wait_commit(struct dbreg *r, uint64_t seen, int timeout_ms)
{
    int64_t deadline = lv_mono_us() + (int64_t)timeout_ms * 1000;
    uint64_t s;
    pthread_mutex_lock(&r->seq_mu);
    while (r->seq == seen) {
        int64_t left = deadline - lv_mono_us();
        if (left <= 0)
            break;
        lv_cond_wait_us(&r->seq_cv, &r->seq_mu, left);
    }
    s = r->seq;
    pthread_mutex_unlock(&r->seq_mu);
    return s;
}

/* ------------------------------------------------------ refusing writes */

int db_replica_refuse(struct dbreg *r, const char *what)
{
    if (!dbreg_is_replica(r))
        return 0;
    if (warn_due(&r->rofs_warn_us)) {
        pthread_mutex_lock(&r->url_mu);
        LV_WARN("refused a write to %s: this node is a read replica; writes belong on the primary at %s",
                what, r->primary_url ? r->primary_url : "(unknown)");
        pthread_mutex_unlock(&r->url_mu);
    }
    return -EROFS;
}

/* ------------------------------------------------------- kernel caches */

/* FUSE node ID of a path on the mount (st_ino; libfuse reports node IDs
 * there without use_ino), or 0. */
static uint64_t mount_ino(const struct dbreg *r, const char *rel)
{
    char path[PATH_MAX * 2];
    struct stat st;
    snprintf(path, sizeof path, "%s%s%s", r->mount, rel[0] ? "/" : "", rel);
    return stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* Forget the kernel's dentry for name (a file created, deleted or renamed
 * behind the kernel's back). */
static void inval_name(const struct dbreg *r, const char *name)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(name, '/');
    if (!r->iv.inval_entry)
        return;
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - name) : 0, name);
    uint64_t parent = mount_ino(r, dir);
    if (parent)
        r->iv.inval_entry(r->iv.arg, parent, slash ? slash + 1 : name);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Invalidate the pages pg[0..n-1] (page size ps; sorted here) merged into
 * runs, and everything from the smaller of the two sizes when the size
 * changed. */
static void inval_pages(const struct dbreg *r, uint64_t ino, uint32_t *pg, size_t n, uint32_t ps, uint64_t old_size,
                        uint64_t new_size)
{
    if (!r->iv.inval || ino == 0)
        return;
    qsort(pg, n, sizeof *pg, cmp_u32);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && pg[j] <= pg[j - 1] + 1)
            j++;
        r->iv.inval(r->iv.arg, ino, (int64_t)(pg[i] - 1) * ps, (int64_t)(pg[j - 1] - pg[i] + 1) * ps);
        i = j;
    }
    if (old_size != new_size)
        r->iv.inval(r->iv.arg, ino, (int64_t)(old_size < new_size ? old_size : new_size), 0);
    else if (n == 0)
        r->iv.inval(r->iv.arg, ino, -1, 0); /* attributes only */
}

/* --------------------------------------------------------------- locks */

enum lockset { LS_NONE = 0, LS_EXCL, LS_WAL };

/* The locks of one apply. */
struct applock {
    int dbfd;           /* the main file through the mount (borrowed: d->mnt_fd) */
    int shmfd;          /* the -shm through the mount (owned), or -1 */
    unsigned held;      /* -shm lock bytes held: bit i for byte 120 + i, 0x100 for DMS (shared) */
    int blocking;       /* nBackfill was set to 1 to keep new WAL readers out (wal_locks_round) */
    enum lockset set;   /* what is held */
};

static int ofd_lock(int fd, short type, off_t start, off_t len)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = start;
    fl.l_len = len;
    return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : -errno;
}

/* The main file through the mount, opened once per database (apply_mu).
 * -errno on failure. */
static int mount_fd(struct dbreg *r, struct db *d, const char *name)
{
    char path[PATH_MAX * 2];
    struct stat st;
    if (d->mnt_fd >= 0)
        return d->mnt_fd;
    snprintf(path, sizeof path, "%s/%s", r->mount, name);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        LV_ERROR("%s: cannot open %s through the mount to take SQLite's locks: %s", name, path, strerror(e));
        return -e;
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    d->mnt_fd = fd;
    d->mnt_ino = (uint64_t)st.st_ino;
    return fd;
}

/* Is some connection using the -shm (its DMS byte locked by anyone)?
 * Open it through the mount into al->shmfd if so.  Never takes a lock. */
static int wal_users(struct dbreg *r, const char *name, struct applock *al)
{
    char rel[PATH_MAX], path[PATH_MAX * 2];
    struct flock fl;
    if (al->shmfd < 0) {
        snprintf(rel, sizeof rel, "%s-shm", name);
        if (faccessat(r->rootfd, rel, F_OK, 0) != 0)
            return 0;
        snprintf(path, sizeof path, "%s/%s", r->mount, rel);
        al->shmfd = open(path, O_RDWR | O_CLOEXEC);
        if (al->shmfd < 0)
            return 0;
    }
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = SHM_DMS;
    fl.l_len = 1;
    if (fcntl(al->shmfd, F_OFD_GETLK, &fl) != 0)
        return 0;
    return fl.l_type != F_UNLCK;
}

/* One round of the WAL lock set (all held: 1).  First DMS shared and the
 * bytes no reader holds between transactions (WRITE, CKPT, RECOVER,
 * READ1-4: a replica's wal-index has mxFrame == nBackfill == 0, so every
 * reader uses READ0), keeping what was won.  Then, as SQLite's PENDING
 * lock does for rollback readers, stop new readers: with CKPT held, set
 * nBackfill to 1 (!= mxFrame), which sends a reader beginning a read
 * transaction past READ0 to the read marks, all of which the applier
 * holds, so it retries inside SQLite (walTryBeginRead's WAL_RETRY, with
 * its own backoff); readers already inside a transaction finish, and
 * READ0 comes free.  shm_publish, or release_locks on failure, puts
 * nBackfill back to 0. */
static int wal_locks_round(struct applock *al)
{
    if (!(al->held & 0x100)) {
        if (ofd_lock(al->shmfd, F_RDLCK, SHM_DMS, 1) != 0)
            return 0; /* a connection is initialising the -shm */
        al->held |= 0x100;
    }
    for (int i = 0; i < SHM_LOCK_N; i++)
        if (i != 3 && !(al->held & (1u << i)) && ofd_lock(al->shmfd, F_WRLCK, SHM_LOCK_FIRST + i, 1) == 0)
            al->held |= 1u << i;
    if ((al->held & 0xf7) != 0xf7)
        return 0;
    if (!al->blocking) {
        uint8_t h[SHM_HDR];
        uint32_t mx, nb, one = 1;
        if (pread(al->shmfd, h, sizeof h, 0) == (ssize_t)sizeof h && pread(al->shmfd, &nb, 4, SHM_CKPT) == 4) {
            memcpy(&mx, h + 16, 4);
            if (h[12] && mx == 0 && nb == 0 && pwrite(al->shmfd, &one, 4, SHM_CKPT) == 4)
                al->blocking = 1;
        }
    }
    if (ofd_lock(al->shmfd, F_WRLCK, SHM_LOCK_FIRST + 3, 1) == 0)
        al->held |= 1u << 3;
    return (al->held & 0xff) == 0xff;
}

static void release_locks(struct applock *al)
{
    if (al->shmfd >= 0) {
        uint32_t zero = 0;
        if (al->blocking && pwrite(al->shmfd, &zero, 4, SHM_CKPT) != 4)
            LV_WARN("restoring the wal-index's nBackfill failed: %s; readers will recover it", strerror(errno));
        close(al->shmfd); /* drops every lock of this open file description */
        al->shmfd = -1;
    }
    if (al->dbfd >= 0 && al->set != LS_NONE)
        ofd_lock(al->dbfd, F_UNLCK, 0, 0);
    al->held = 0;
    al->blocking = 0;
    al->set = LS_NONE;
}

/* Step 2 of the design comment.  0, LV_EBUSY after wait_ms. */
static int take_locks(struct dbreg *r, const char *name, struct applock *al, int allow_wal, int wait_ms,
                      int64_t *waited)
{
    int64_t t0 = lv_mono_us(), deadline = t0 + (int64_t)wait_ms * 1000;
    int64_t nap = 20;
    int rc = LV_EBUSY, pending = 0;

    al->set = LS_EXCL; /* something may be held from here on */
    for (;;) {
        /* PENDING, once won, is kept: new rollback-mode readers wait. */
        if (!pending && ofd_lock(al->dbfd, F_WRLCK, SQ_RESERVED, 1) == 0 &&
            ofd_lock(al->dbfd, F_WRLCK, SQ_PENDING, 1) == 0)
            pending = 1;
        if (pending && ofd_lock(al->dbfd, F_WRLCK, SQ_SHARED_FIRST, SQ_SHARED_SIZE) == 0) {
            if (al->shmfd >= 0) { /* no connection at all: the -shm is not in use */
                close(al->shmfd);
                al->shmfd = -1;
                al->held = 0;
            }
            rc = 0;
            break;
        }
        /* WAL connections keep SHARED for their lives: exclude them with
         * the -shm's locks instead. */
        if (allow_wal && (al->held || wal_users(r, name, al)) && wal_locks_round(al)) {
            al->set = LS_WAL;
            rc = 0;
            break;
        }
        if (lv_mono_us() >= deadline)
            break;
        struct timespec ts = {0, nap * 1000};
        nanosleep(&ts, NULL);
        if (nap < 500)
            nap *= 2;
    }
    if (rc) {
        struct flock fl;
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_WRLCK;
        fl.l_start = SHM_LOCK_FIRST + 3;
        fl.l_len = 1;
        if (al->shmfd >= 0)
            fcntl(al->shmfd, F_OFD_GETLK, &fl);
        LV_DEBUG("%s: SQLite's locks not won in %d ms (PENDING %s, -shm locks held 0x%x, READ0 by %d type %d)", name, wait_ms,
                 pending ? "held" : "not held", al->held, fl.l_pid, fl.l_type);
        release_locks(al);
    }
    *waited = lv_mono_us() - t0;
    return rc;
}

/* SQLite's wal-index header checksum over the first 40 bytes, native
 * byte order (walChecksumBytes with nativeCksum). */
static void shm_cksum(const uint8_t *a, uint32_t out[2])
{
    uint32_t s1 = 0, s2 = 0, x0, x1;
    for (size_t i = 0; i < 40; i += 8) {
        memcpy(&x0, a + i, 4);
        memcpy(&x1, a + i + 4, 4);
        s1 += x0 + s2;
        s2 += x1 + s1;
    }
    out[0] = s1;
    out[1] = s2;
}

/* Step 5: publish a changed wal-index header (WAL lock set held).  A
 * header that is not initialised, or whose copies differ, is left alone:
 * the next connection recovers it from the (empty) -wal. */
static void shm_publish(const char *name, int fd, uint32_t ps, uint32_t db_pages)
{
    uint8_t h[2 * SHM_HDR];
    uint32_t v, ck[2];
    if (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h, h + SHM_HDR, SHM_HDR) != 0 || h[12] == 0) {
        LV_DEBUG("%s: the wal-index header is not initialised; readers will recover it", name);
        return;
    }
    memcpy(&v, h + 8, 4); /* iChange */
    v++;
    memcpy(h + 8, &v, 4);
    uint16_t sz = (uint16_t)((ps & 0xff00) | (ps >> 16));
    memcpy(h + 14, &sz, 2);
    v = 0; /* mxFrame: a replica's -wal holds no frame */
    memcpy(h + 16, &v, 4);
    memcpy(h + 20, &db_pages, 4); /* nPage */
    shm_cksum(h, ck);
    memcpy(h + 40, ck, 8);
    uint8_t ckpt[4] = {0};
    if (pwrite(fd, ckpt, 4, SHM_CKPT) != 4 || pwrite(fd, ckpt, 4, SHM_BACKFILL_ATTEMPTED) != 4 ||
        pwrite(fd, h, SHM_HDR, SHM_HDR) != SHM_HDR || pwrite(fd, h, SHM_HDR, 0) != SHM_HDR)
        LV_WARN("%s: writing the wal-index header failed: %s; readers will recover it", name, strerror(errno));
}

/* ------------------------------------------------------------ decoding */

/* One decoded page of a batch. */
struct dpage {
    uint32_t rec;     /* index of its record in the batch */
    uint32_t pgno;    /* page number */
    size_t off;       /* offset of its bytes in struct decoded's buf */
};

/* Every page of a batch, in record order. */
struct decoded {
    struct dpage *v;       /* pages (owned) */
    size_t n, cap;         /* used and allocated */
    uint8_t *buf;          /* page bytes (owned) */
    size_t used, bcap;     /* used and allocated bytes */
    uint32_t rec;          /* record being decoded */
    uint32_t ps;           /* its page size */
};

static int collect_page(void *arg, uint32_t pgno, const void *page)
{
    struct decoded *dc = arg;
    if (lv_grow((void **)&dc->v, &dc->cap, dc->n + 1, sizeof *dc->v, 64) != 0)
        return LV_ENOMEM;
    if (dc->used + dc->ps > dc->bcap) {
        size_t nc = dc->bcap ? dc->bcap * 2 : (size_t)1 << 20;
        while (nc < dc->used + dc->ps)
            nc *= 2;
        uint8_t *nb = realloc(dc->buf, nc);
        if (!nb)
            return LV_ENOMEM;
        dc->buf = nb;
        dc->bcap = nc;
    }
    memcpy(dc->buf + dc->used, page, dc->ps);
    dc->v[dc->n].rec = dc->rec;
    dc->v[dc->n].pgno = pgno;
    dc->v[dc->n].off = dc->used;
    dc->n++;
    dc->used += dc->ps;
    return 0;
}

static void decoded_free(struct decoded *dc)
{
    free(dc->v);
    free(dc->buf);
}

/* ------------------------------------------------- checksum map, undo */

/* One step to undo on the checksum map. */
struct undo {
    int resize;      /* 1: resize back to a, else set page a to h */
    uint32_t a;      /* page number or page count */
    uint64_t h;      /* checksum to restore */
};

/* The map changes of one batch, undoable. */
struct mapedit {
    struct undo *v;            /* steps (owned) */
    size_t n, cap;             /* used and allocated */
    int have_copy;             /* copy holds the map from before the batch (a reset happened) */
    struct cksum_map copy;     /* that copy */
};

static int edit_push(struct mapedit *e, int resize, uint32_t a, uint64_t h)
{
    if (lv_grow((void **)&e->v, &e->cap, e->n + 1, sizeof *e->v, 256) != 0)
        return LV_ENOMEM;
    e->v[e->n++] = (struct undo){resize, a, h};
    return 0;
}

static void edit_undo(struct db *d, struct mapedit *e)
{
    if (e->have_copy) {
        cksum_map_free(&d->map);
        d->map = e->copy;
        e->have_copy = 0;
        e->n = 0;
        return;
    }
    while (e->n > 0) {
        struct undo *u = &e->v[--e->n];
        if (u->resize)
            cksum_map_resize(&d->map, u->a); /* shrinking cannot fail; growing back reuses the storage */
        else
            cksum_map_set(&d->map, u->a, u->h);
    }
}

static void edit_free(struct mapedit *e)
{
    free(e->v);
    if (e->have_copy)
        cksum_map_free(&e->copy);
}

/* Roll the map forward by record h with its pages dc->v[*pi..] (those of
 * record index ri), verifying its post checksum.  0 or negative with err. */
static int map_advance(struct db *d, const struct txlog_hdr *h, struct decoded *dc, size_t *pi, uint32_t ri,
                       struct mapedit *e, char *err, size_t errlen)
{
    int rc = 0;
    if ((h->flags & TXLOG_F_SNAPSHOT) || d->map.page_size != h->page_size) {
        if (!e->have_copy) {
            cksum_map_init(&e->copy);
            if (cksum_map_copy(&e->copy, &d->map) != 0)
                return LV_ENOMEM;
            e->have_copy = 1;
        }
        cksum_map_reset(&d->map, h->page_size);
    }
    if (!e->have_copy) {
        for (uint32_t p = h->db_pages + 1; p <= d->map.npages; p++)
            if ((rc = edit_push(e, 0, p, cksum_map_get(&d->map, p))) != 0)
                return rc;
        if (h->db_pages != d->map.npages && (rc = edit_push(e, 1, d->map.npages, 0)) != 0)
            return rc;
    }
    if (cksum_map_resize(&d->map, h->db_pages) != 0)
        return LV_ENOMEM;
    for (; *pi < dc->n && dc->v[*pi].rec == ri; (*pi)++) {
        const struct dpage *pg = &dc->v[*pi];
        if (pg->pgno > h->db_pages)
            continue;
        if (!e->have_copy && (rc = edit_push(e, 0, pg->pgno, cksum_map_get(&d->map, pg->pgno))) != 0)
            return rc;
        cksum_map_set(&d->map, pg->pgno, cksum_page(pg->pgno, dc->buf + pg->off, h->page_size));
    }
    if (d->map.total != h->post_cksum) {
        snprintf(err, errlen, "%s: TXID %" PRIu64 ": the pages do not add up to the record's post checksum "
                 "(%016" PRIx64 " != %016" PRIx64 ")", d->name, h->txid, d->map.total, h->post_cksum);
        return LV_EMISMATCH;
    }
    return 0;
}

/* ------------------------------------------------------ new databases */

/* Create the backing file of name (and its directories) on a replica and
 * register it as a SQLite database with the primary's ID.  Returns a
 * referenced db or NULL (err set). */
static struct db *create_db(struct dbreg *r, const char *name, const uint8_t id[16], char *err, size_t errlen)
{
    char dir[PATH_MAX];
    struct db *d = NULL;
    int fd;

    for (const char *s = strchr(name, '/'); s; s = strchr(s + 1, '/')) {
        snprintf(dir, sizeof dir, "%.*s", (int)(s - name), name);
        if (mkdirat(r->rootfd, dir, 0755) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "%s: cannot create directory %s/%s: %s", name, r->files, dir, strerror(errno));
            return NULL;
        }
    }
    fd = openat(r->rootfd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create %s/%s: %s", name, r->files, name, strerror(errno));
        return NULL;
    }
    close(fd);
    d = dbreg_get(r, name, 1);
    if (!d) {
        snprintf(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    pthread_mutex_lock(&d->mu);
    if (d->kind != DBK_SQLITE) {
        d->kind = DBK_UNKNOWN;
        if (db_promote_id(d, id) != 0) {
            snprintf(err, errlen, "%s: cannot set up its metadata (see the log)", name);
            pthread_mutex_unlock(&d->mu);
            db_put(d);
            return NULL;
        }
    }
    pthread_mutex_unlock(&d->mu);
    inval_name(r, name);
    dbreg_bump_seq(r);
    return d;
}

/* --------------------------------------------- databases from an archive */

int dbreg_seed_add(struct dbreg *r, const struct db_seed *s, const char *file, const char *stage_dir, char *err,
                   size_t errlen)
{
    static const char *const sufs[] = {"", "-wal", "-journal", "-shm"};
    char rel[PATH_MAX], why[600] = "";
    struct stat st;
    struct db *d = NULL;
    uint8_t h[100];
    int rc = 0, fd;

    err[0] = 0;
    pthread_mutex_lock(&r->apply_mu);
    /* Nothing of that name here: no database, no file SQLite would take for its -wal or -journal. */
    for (size_t i = 0; i < LV_ARRAY_LEN(sufs); i++) {
        snprintf(rel, sizeof rel, "%s%s", s->name, sufs[i]);
        if (fstatat(r->rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            snprintf(err, errlen, "%s: %s/%s already exists: a database is never installed over a file", s->name,
                     r->files, rel);
            rc = LV_EEXIST;
            goto out_unlock;
        }
    }
    rc = db_seed_install(r->data_dir, s, file, stage_dir, err, errlen);
    if (rc)
        goto out_unlock;
    /* Installed: load it as start-up would (C4: the map and the log at s->txid). */
    d = dbreg_get(r, s->name, 1);
    if (!d) {
        snprintf(err, errlen, "%s: out of memory", s->name);
        rc = LV_ENOMEM;
        db_seed_uninstall(r->data_dir, s->name);
        goto out_unlock;
    }
    pthread_mutex_lock(&d->mu);
    d->kind = DBK_UNKNOWN;
    fd = db_main_fd(d);
    if (fd >= 0 && pread(fd, h, sizeof h, 0) >= 19)
        d->hdr_wal = h[18] == 2;
    db_load(d);
    if (d->broken)
        snprintf(why, sizeof why, "%s", d->why);
    else if (d->kind != DBK_SQLITE || d->txid != s->txid || d->map.total != s->cksum ||
             memcmp(d->id, s->id, 16) != 0)
        snprintf(why, sizeof why, "it loaded at TXID %" PRIu64 " with checksum %016" PRIx64 ", not at TXID %" PRIu64
                 " with checksum %016" PRIx64 " as installed", d->txid, d->map.total, s->txid, s->cksum);
    if (why[0] && !d->broken)
        db_fail(d, "installed from an archive, %s", why);
    pthread_mutex_unlock(&d->mu);
    if (why[0]) {
        snprintf(err, errlen, "%s: installed in %s, but it does not load (%s); it stays there, refusing access, "
                 "until moved aside", s->name, r->files, why);
        rc = LV_EBROKEN;
    }
    inval_name(r, s->name);
    dbreg_bump_seq(r);
    db_put(d);
out_unlock:
    pthread_mutex_unlock(&r->apply_mu);
    return rc;
}

/* ------------------------------------------------------------- applying */

/* One page of the batch and the record that last wrote it. */
struct lastw {
    uint32_t pgno;  /* page number */
    uint32_t i;     /* index in the batch's page list (later = newer) */
};

static int cmp_lastw(const void *a, const void *b)
{
    const struct lastw *x = a, *y = b;
    if (x->pgno != y->pgno)
        return x->pgno < y->pgno ? -1 : 1;
    return x->i > y->i ? -1 : x->i < y->i; /* newest first */
}

/* Write each page of the batch once, with its final content: that of the
 * last record that wrote it, or zeros if a later record of the batch cut
 * the database below it (it grew back empty).  Pages past the final size
 * are not written.  The page numbers written go to pgs (*npgs, ascending,
 * room for dc->n).  0 or negative. */
static int write_final_pages(struct db *d, int fd, const struct db_rec *recs, size_t n, const struct decoded *dc,
                             uint32_t *pgs, size_t *npgs)
{
    const struct txlog_hdr *last = &recs[n - 1].h;
    uint32_t ps = last->page_size;
    struct lastw *w = malloc((dc->n ? dc->n : 1) * sizeof *w);
    uint32_t *cut = malloc(n * sizeof *cut); /* cut[r]: the fewest pages of a record after r */
    uint8_t *zero = NULL;
    int rc = 0;

    *npgs = 0;
    if (!w || !cut) {
        rc = LV_ENOMEM;
        goto out;
    }
    cut[n - 1] = UINT32_MAX;
    for (size_t r = n - 1; r > 0; r--)
        cut[r - 1] = recs[r].h.db_pages < cut[r] ? recs[r].h.db_pages : cut[r];
    for (size_t i = 0; i < dc->n; i++)
        w[i] = (struct lastw){dc->v[i].pgno, (uint32_t)i};
    qsort(w, dc->n, sizeof *w, cmp_lastw);
    for (size_t i = 0; i < dc->n; i++) {
        if (i > 0 && w[i].pgno == w[i - 1].pgno)
            continue; /* an older version */
        const struct dpage *pg = &dc->v[w[i].i];
        if (pg->pgno > last->db_pages || recs[pg->rec].h.page_size != ps)
            continue;
        const uint8_t *src = dc->buf + pg->off;
        if (cut[pg->rec] < pg->pgno) {
            if (!zero && !(zero = calloc(1, ps))) {
                rc = LV_ENOMEM;
                goto out;
            }
            src = zero;
        }
        rc = sys_pwrite_all(fd, src, ps, (off_t)(pg->pgno - 1) * ps, d->name);
        if (rc)
            goto out;
        pgs[(*npgs)++] = pg->pgno;
    }
out:
    free(w);
    free(cut);
    free(zero);
    return rc;
}

/* Append the batch to d's log unchanged, in one write when it can. */
static int append_records(struct db *d, const struct db_rec *recs, size_t n)
{
    const void **p = malloc(n * sizeof *p);
    size_t *l = malloc(n * sizeof *l);
    int rc;
    if (!p || !l) {
        free(p);
        free(l);
        return LV_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        p[i] = recs[i].raw;
        l[i] = recs[i].len;
    }
    rc = txlog_append_raws(d->log, p, l, n);
    free(p);
    free(l);
    return rc;
}

/* Terms never go back (txlog L10): a record or snapshot of term `term` at
 * TXID txid may follow a record of term `mine` (the log's last term, or the
 * previous record's in a batch) only if term >= mine; otherwise it comes
 * from a primary that was deposed after this replica had followed a later
 * one: LV_EREFUSED with err.  d->mu held. */
static int term_ok(struct db *d, uint64_t mine, uint64_t term, uint64_t txid, char *err, size_t errlen)
{
    if (term >= mine)
        return 0;
    snprintf(err, errlen, "%s: TXID %" PRIu64 " was written in term %" PRIu64 ", but this replica already holds "
             "term %" PRIu64 ": it comes from a deposed primary and is refused", d->name, txid, term, mine);
    return LV_EREFUSED;
}

/* Steps 3: check, write, log (d->mu held).  *old_size gets the file size
 * before.  0 or negative with err; on failure before the first write
 * nothing changed, after it the database is broken. */
static int apply_locked(struct db *d, const struct db_rec *recs, size_t n, struct decoded *dc, uint64_t *old_size,
                        uint32_t *pgs, size_t *npgs, char *err, size_t errlen)
{
    struct mapedit e;
    struct stat st;
    size_t pi = 0;
    int rc = 0, fd;
    const struct txlog_hdr *last = &recs[n - 1].h;

    memset(&e, 0, sizeof e);
    if (d->broken) {
        snprintf(err, errlen, "%s: the database is broken: %s", d->name, d->why);
        return LV_EBROKEN;
    }
    if (memcmp(recs[0].h.dbid, d->id, 16) != 0) {
        snprintf(err, errlen, "%s: the records belong to another database (a new one of the same name)", d->name);
        return LV_ECHAIN;
    }
    if (!(d->txid == 0 && (recs[0].h.flags & TXLOG_F_SNAPSHOT)) &&
        (recs[0].h.txid != d->txid + 1 || recs[0].h.pre_cksum != d->map.total)) {
        snprintf(err, errlen, "%s: TXID %" PRIu64 " (pre checksum %016" PRIx64 ") does not continue this "
                 "replica's TXID %" PRIu64 " (checksum %016" PRIx64 ")", d->name, recs[0].h.txid,
                 recs[0].h.pre_cksum, d->txid, d->map.total);
        return recs[0].h.txid != d->txid + 1 ? LV_EGAP : LV_ECHAIN;
    }
    for (size_t i = 0; i < n; i++)
        if ((rc = term_ok(d, i ? recs[i - 1].h.term : d->log ? txlog_last_term(d->log) : 0, recs[i].h.term,
                          recs[i].h.txid, err, errlen)) != 0)
            return rc;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = map_advance(d, &recs[i].h, dc, &pi, (uint32_t)i, &e, err, errlen);
    if (rc) {
        edit_undo(d, &e);
        goto out;
    }
    /* Verified: from here on a failure leaves the file uncertain. */
    fd = db_main_fd(d);
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = LV_EIO;
        goto out_fail;
    }
    *old_size = (uint64_t)st.st_size;
    rc = write_final_pages(d, fd, recs, n, dc, pgs, npgs);
    if (rc)
        goto out_fail;
    if ((uint64_t)last->db_pages * last->page_size != *old_size || dc->n == 0) {
        rc = sys_ftruncate(fd, (off_t)((uint64_t)last->db_pages * last->page_size), d->name);
        if (rc)
            goto out_fail;
    }
    rc = append_records(d, recs, n);
    if (rc)
        goto out_fail;
    d->txid = last->txid;
    d->last_time = last->time_us;
    d->commits += n;
    d->pages_logged += dc->n;
    d->log_unsynced = 1;
    for (size_t i = 0; i < dc->n; i++) /* a WAL-mode commit may leave page 1 as it was */
        if (dc->v[i].pgno == 1)
            d->hdr_wal = dc->buf[dc->v[i].off + 18] == 2;
    LV_ASSERT(d->map.total == last->post_cksum && txlog_last_txid(d->log) == d->txid); /* A1 */
    goto out;
out_fail:
    snprintf(err, errlen, "%s: applying TXID %" PRIu64 "..%" PRIu64 " failed (%s); the database is broken until "
             "restart, when it is reconciled", d->name, recs[0].h.txid, last->txid, lv_strerror(rc));
    db_fail(d, "applying records from the primary failed (%s)", lv_strerror(rc));
out:
    edit_free(&e);
    return rc;
}

/* May this batch be applied under the WAL lock set?  Only when the file is
 * in WAL mode now (byte 18 of its header is 2) and no record of the batch
 * switches the journal mode: SQLite itself switches modes only with no
 * other connection open, so a switch is applied under EXCLUSIVE, which WAL
 * connections (holding SHARED for their lives) leave only by closing; and
 * in rollback mode the WAL lock set would not exclude rollback readers.
 * With PENDING held meanwhile, no new connection starts reading. */
static int wal_lockset_ok(struct db *d, const struct decoded *dc, const struct db_rec *recs)
{
    uint8_t h[20];
    int fd;
    pthread_mutex_lock(&d->mu);
    fd = db_main_fd(d);
    int ok = fd >= 0 && pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h && h[18] == 2 && h[19] == 2;
    pthread_mutex_unlock(&d->mu);
    for (size_t i = 0; ok && i < dc->n; i++)
        if (dc->v[i].pgno == 1 && recs[dc->v[i].rec].h.page_size >= 20) {
            const uint8_t *p1 = dc->buf + dc->v[i].off;
            if (p1[18] != 2 || p1[19] != 2)
                ok = 0;
        }
    return ok;
}

int dbreg_apply(struct dbreg *r, const char *name, const struct db_rec *recs, size_t n, int wait_ms,
                struct db_apply_stats *st, char *err, size_t errlen)
{
    struct decoded dc;
    struct applock al = {-1, -1, 0, 0, LS_NONE};
    struct db *d = NULL;
    struct txlog_hdr h;
    uint32_t *pg = NULL;
    size_t npg = 0;
    uint64_t old_size = 0;
    int64_t t1;
    int rc = 0;

    memset(&dc, 0, sizeof dc);
    memset(st, 0, sizeof *st);
    err[0] = 0;
    if (n == 0)
        return 0;
    pthread_mutex_lock(&r->apply_mu);
    /* 1. decode */
    for (size_t i = 0; i < n; i++) {
        dc.rec = (uint32_t)i;
        dc.ps = recs[i].h.page_size;
        if (!dbhdr_page_size_ok(dc.ps)) {
            snprintf(err, errlen, "%s: TXID %" PRIu64 ": bad page size %u", name, recs[i].h.txid, dc.ps);
            rc = LV_ECORRUPT;
            goto out;
        }
        rc = txlog_record_pages(recs[i].raw, recs[i].len, &h, collect_page, &dc, err, errlen);
        if (rc)
            goto out;
        if (memcmp(&h, &recs[i].h, sizeof h) != 0 || (i > 0 && (h.txid != recs[i - 1].h.txid + 1 ||
                                                               memcmp(h.dbid, recs[0].h.dbid, 16) != 0))) {
            snprintf(err, errlen, "%s: TXID %" PRIu64 ": the batch is not one database's consecutive records",
                     name, h.txid);
            rc = LV_ECORRUPT;
            goto out;
        }
    }
    /* the database, created by its first record */
    d = dbreg_get(r, name, 0);
    if (d) {
        pthread_mutex_lock(&d->mu);
        int sqlite = d->kind == DBK_SQLITE;
        pthread_mutex_unlock(&d->mu);
        if (!sqlite && (recs[0].h.txid == 1 || (recs[0].h.flags & TXLOG_F_SNAPSHOT))) {
            db_put(d);
            d = NULL;
        } else if (!sqlite) {
            snprintf(err, errlen, "%s: not a database this replica has; it needs a snapshot", name);
            rc = LV_EGAP;
            goto out;
        }
    }
    if (!d) {
        if (recs[0].h.txid != 1 && !(recs[0].h.flags & TXLOG_F_SNAPSHOT)) {
            snprintf(err, errlen, "%s: this replica lacks the database and TXID %" PRIu64 " cannot start it; it "
                     "needs a snapshot", name, recs[0].h.txid);
            rc = LV_EGAP;
            goto out;
        }
        d = create_db(r, name, recs[0].h.dbid, err, errlen);
        if (!d) {
            rc = LV_EIO;
            goto out;
        }
    }
    /* 2. locks */
    al.dbfd = mount_fd(r, d, name);
    if (al.dbfd < 0) {
        snprintf(err, errlen, "%s: cannot open it through the mount %s to take SQLite's locks", name, r->mount);
        rc = LV_EIO;
        goto out;
    }
    rc = take_locks(r, name, &al, wal_lockset_ok(d, &dc, recs), wait_ms, &st->lock_wait_us);
    if (rc) {
        snprintf(err, errlen, "%s: readers kept SQLite's locks for more than %d ms; TXID %" PRIu64 " waits", name,
                 wait_ms, recs[0].h.txid);
        pthread_mutex_lock(&d->mu);
        d->apply_busy++;
        pthread_mutex_unlock(&d->mu);
        goto out;
    }
    st->wal_locks = al.set == LS_WAL;
    t1 = lv_mono_us();
    /* 3. check, write, log */
    pg = malloc((dc.n ? dc.n : 1) * sizeof *pg);
    if (!pg) {
        release_locks(&al);
        rc = LV_ENOMEM;
        goto out;
    }
    pthread_mutex_lock(&d->mu);
    rc = apply_locked(d, recs, n, &dc, &old_size, pg, &npg, err, errlen);
    if (rc == 0) {
        d->applies++;
        d->applied_us = lv_now_us();
        d->applied_commit_us = recs[n - 1].h.time_us;
        if (st->lock_wait_us > d->lock_wait_max_us)
            d->lock_wait_max_us = st->lock_wait_us;
    }
    pthread_mutex_unlock(&d->mu);
    if (rc == 0) {
        /* 4. the kernel's caches */
        const struct txlog_hdr *last = &recs[n - 1].h;
        inval_pages(r, d->mnt_ino, pg, npg, last->page_size, old_size, (uint64_t)last->db_pages * last->page_size);
        /* 5. the wal-index */
        if (al.set == LS_WAL)
            shm_publish(name, al.shmfd, last->page_size, last->db_pages);
    }
    /* 6. */
    release_locks(&al);
    st->apply_us = lv_mono_us() - t1;
    if (rc == 0)
        dbreg_bump_seq(r);
out:
    if (rc && err[0])
        LV_DEBUG("apply: %s", err);
    free(pg);
    decoded_free(&dc);
    if (d)
        db_put(d);
    pthread_mutex_unlock(&r->apply_mu);
    return rc;
}

/* ------------------------------------------------------------ snapshots */

/* A snapshot being staged in data.dir/tmp. */
struct db_snap {
    struct dbreg *r;              /* registry (borrowed) */
    char name[PATH_MAX];          /* database name */
    struct db_image_info info;    /* what the primary says the image is */
    char path[PATH_MAX];          /* staging file */
    int fd;                       /* open on path */
    uint64_t *h;                  /* page checksums of the staged pages (info.db_pages entries) */
    uint32_t next;                /* next page number expected */
};

int dbreg_snap_begin(struct dbreg *r, const char *name, const struct db_image_info *info, struct db_snap **out,
                     char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    struct db_snap *s;

    *out = NULL;
    if (!dbhdr_page_size_ok(info->page_size) || info->db_pages == 0 || info->txid == 0) {
        snprintf(err, errlen, "%s: snapshot with page size %u, %u pages, TXID %" PRIu64 " is not a database",
                 name, info->page_size, info->db_pages, info->txid);
        return LV_ECORRUPT;
    }
    struct db *d = dbreg_get(r, name, 0); /* refuse a deposed term's image before it is sent (snap_install decides) */
    if (d) {
        pthread_mutex_lock(&d->mu);
        int rc = term_ok(d, d->log ? txlog_last_term(d->log) : 0, info->term, info->txid, err, errlen);
        pthread_mutex_unlock(&d->mu);
        db_put(d);
        if (rc)
            return rc;
    }
    s = calloc(1, sizeof *s);
    if (!s || !(s->h = calloc(info->db_pages, sizeof *s->h))) {
        free(s);
        snprintf(err, errlen, "%s: out of memory for a snapshot of %u pages", name, info->db_pages);
        return LV_ENOMEM;
    }
    s->r = r;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->info = *info;
    s->next = 1;
    dbreg_tmp_dir(r->data_dir, tmp, sizeof tmp);
    sys_mkdir_p(tmp);
    snprintf(s->path, sizeof s->path, "%s/snapshot-XXXXXX", tmp);
    s->fd = mkostemp(s->path, O_CLOEXEC);
    if (s->fd < 0) {
        snprintf(err, errlen, "%s: cannot create a staging file in %s: %s", name, tmp, strerror(errno));
        free(s->h);
        free(s);
        return LV_EIO;
    }
    *out = s;
    return 0;
}

int dbreg_snap_pages(struct db_snap *s, uint32_t first_pgno, uint32_t count, const void *pages, char *err,
                     size_t errlen)
{
    uint32_t ps = s->info.page_size;
    if (first_pgno != s->next || count > s->info.db_pages - (first_pgno - 1)) {
        snprintf(err, errlen, "%s: snapshot pages %u..%u out of order (expected page %u of %u)", s->name,
                 first_pgno, first_pgno + count - 1, s->next, s->info.db_pages);
        return LV_ECORRUPT;
    }
    int rc = sys_pwrite_all(s->fd, pages, (size_t)count * ps, (off_t)(first_pgno - 1) * ps, s->path);
    if (rc) {
        snprintf(err, errlen, "%s: staging the snapshot in %s failed: %s", s->name, s->path, lv_strerror(rc));
        return rc;
    }
    for (uint32_t i = 0; i < count; i++)
        s->h[first_pgno - 1 + i] = cksum_page(first_pgno + i, (const uint8_t *)pages + (size_t)i * ps, ps);
    s->next += count;
    return 0;
}

void dbreg_snap_abort(struct db_snap *s)
{
    if (!s)
        return;
    close(s->fd);
    unlink(s->path);
    free(s->h);
    free(s);
}

/* Install the staged image into d (d->mu held, SQLite's locks held).
 * Changed page numbers go to *pg (*npg of them).  0 or negative. */
static int snap_install(struct db_snap *s, struct db *d, uint32_t *pg, size_t *npg, uint64_t *old_size, char *err,
                        size_t errlen)
{
    const struct db_image_info *in = &s->info;
    uint32_t ps = in->page_size;
    struct txlog_hdr h;
    struct txlog_tail tail;
    struct stat st;
    uint8_t *buf = malloc(ps);
    char logdir[PATH_MAX + 8], tag[64], hex[33];
    int rc = 0, fd;

    *npg = 0;
    if (!buf)
        return LV_ENOMEM;
    if ((rc = term_ok(d, d->log ? txlog_last_term(d->log) : 0, in->term, in->txid, err, errlen)) != 0)
        goto out_free_buf;
    fd = db_main_fd(d);
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = LV_EIO;
        goto out_fail;
    }
    *old_size = (uint64_t)st.st_size;
    int same_geometry = d->map.page_size == ps;
    for (uint32_t p = 1; p <= in->db_pages; p++) {
        if (same_geometry && p <= d->map.npages && cksum_map_get(&d->map, p) == s->h[p - 1])
            continue;
        if ((rc = sys_pread_all(s->fd, buf, ps, (off_t)(p - 1) * ps, s->path)) != 0 ||
            (rc = sys_pwrite_all(fd, buf, ps, (off_t)(p - 1) * ps, d->name)) != 0)
            goto out_fail;
        pg[(*npg)++] = p;
    }
    if ((uint64_t)in->db_pages * ps != *old_size &&
        (rc = sys_ftruncate(fd, (off_t)((uint64_t)in->db_pages * ps), d->name)) != 0)
        goto out_fail;
    cksum_map_reset(&d->map, ps);
    if (cksum_map_resize(&d->map, in->db_pages) != 0) {
        rc = LV_ENOMEM;
        goto out_fail;
    }
    for (uint32_t p = 1; p <= in->db_pages; p++)
        cksum_map_set(&d->map, p, s->h[p - 1]);
    /* A new history: the old log is retired, the new one starts with the image. */
    if (d->log) {
        txlog_close(d->log);
        d->log = NULL;
    }
    snprintf(logdir, sizeof logdir, "%s/log", d->metadir);
    lv_hex(d->id, 16, hex);
    snprintf(tag, sizeof tag, "%s.%lld", hex, (long long)lv_now_us());
    if (access(logdir, F_OK) == 0 && (rc = db_retire_dir(d->reg, logdir, tag)) != 0)
        goto out_fail;
    char state[PATH_MAX + 8];
    snprintf(state, sizeof state, "%s/state", d->metadir);
    unlink(state);
    d->saved_valid = 0;
    d->saved_txid = 0;
    memcpy(d->id, in->id, 16);
    if ((rc = db_write_id(d)) != 0 || (rc = db_open_log(d, &tail)) != 0)
        goto out_fail;
    memset(&h, 0, sizeof h);
    h.version = 2;
    h.flags = TXLOG_F_SNAPSHOT;
    h.term = in->term;
    memcpy(h.dbid, in->id, 16);
    h.txid = in->txid;
    h.time_us = in->time_us;
    h.page_size = ps;
    h.db_pages = in->db_pages;
    h.comp = TXLOG_COMP_ZSTD;
    h.post_cksum = in->cksum;
    rc = txlog_append_begin(d->log, &h);
    for (uint32_t p = 1; rc == 0 && p <= in->db_pages; p++) {
        rc = sys_pread_all(s->fd, buf, ps, (off_t)(p - 1) * ps, s->path);
        if (rc == 0)
            rc = txlog_append_page(d->log, p, buf);
    }
    if (rc == 0)
        rc = txlog_append_end(d->log);
    else
        txlog_append_abort(d->log);
    if (rc)
        goto out_fail;
    d->txid = in->txid;
    db_durable_reset(d); /* C10: a new history */
    d->last_time = in->time_us;
    d->log_unsynced = 1;
    d->commits++;
    d->hdr_wal = 0;
    if (sys_pread_all(fd, buf, ps < 100 ? ps : 100, 0, d->name) == 0)
        d->hdr_wal = buf[18] == 2;
    LV_ASSERT(d->map.total == in->cksum && txlog_last_txid(d->log) == d->txid); /* A1 */
    LV_INFO("%s: installed a snapshot at TXID %" PRIu64 " (%zu of %u pages changed)", d->name, in->txid, *npg,
            in->db_pages);
    goto out;
out_fail:
    snprintf(err, errlen, "%s: installing the snapshot at TXID %" PRIu64 " failed (%s); the database is broken "
             "until restart", d->name, in->txid, lv_strerror(rc));
    db_fail(d, "installing a snapshot from the primary failed (%s)", lv_strerror(rc));
out:
out_free_buf:
    free(buf);
    return rc;
}

int dbreg_snap_end(struct db_snap *s, int wait_ms, char *err, size_t errlen)
{
    struct dbreg *r = s->r;
    struct applock al = {-1, -1, 0, 0, LS_NONE};
    struct db *d = NULL;
    uint32_t *pg = NULL;
    size_t npg = 0;
    uint64_t total = 0, old_size = 0;
    int64_t waited;
    int rc = 0;

    err[0] = 0;
    pthread_mutex_lock(&r->apply_mu);
    if (s->next != s->info.db_pages + 1) {
        snprintf(err, errlen, "%s: the snapshot ended after %u of %u pages", s->name, s->next - 1,
                 s->info.db_pages);
        rc = LV_ECORRUPT;
        goto out_free;
    }
    for (uint32_t p = 0; p < s->info.db_pages; p++)
        total ^= s->h[p];
    if (total != s->info.cksum) {
        snprintf(err, errlen, "%s: the snapshot's pages add up to %016" PRIx64 ", not its checksum %016" PRIx64,
                 s->name, total, s->info.cksum);
        rc = LV_EMISMATCH;
        goto out_free;
    }
    pg = malloc((size_t)s->info.db_pages * sizeof *pg);
    if (!pg) {
        rc = LV_ENOMEM;
        goto out_free;
    }
    d = dbreg_get(r, s->name, 0);
    if (d) {
        pthread_mutex_lock(&d->mu);
        int sqlite = d->kind == DBK_SQLITE;
        pthread_mutex_unlock(&d->mu);
        if (!sqlite) {
            db_put(d);
            d = NULL;
        }
    }
    if (!d && !(d = create_db(r, s->name, s->info.id, err, errlen))) {
        rc = LV_EIO;
        goto out_free;
    }
    al.dbfd = mount_fd(r, d, s->name);
    if (al.dbfd < 0) {
        snprintf(err, errlen, "%s: cannot open it through the mount %s to take SQLite's locks", s->name, r->mount);
        rc = LV_EIO;
        goto out_free;
    }
    rc = take_locks(r, s->name, &al, 0, wait_ms, &waited);
    if (rc) {
        snprintf(err, errlen, "%s: readers kept SQLite's locks for more than %d ms; the snapshot waits", s->name,
                 wait_ms);
        db_put(d);
        free(pg);
        pthread_mutex_unlock(&r->apply_mu);
        return rc; /* s is kept for another try */
    }
    pthread_mutex_lock(&d->mu);
    rc = snap_install(s, d, pg, &npg, &old_size, err, errlen);
    if (rc == 0) {
        d->applies++;
        d->applied_us = lv_now_us();
        d->applied_commit_us = s->info.time_us;
    }
    pthread_mutex_unlock(&d->mu);
    if (rc == 0) {
        inval_pages(r, d->mnt_ino, pg, npg, s->info.page_size, old_size,
                    (uint64_t)s->info.db_pages * s->info.page_size);
        if (al.set == LS_WAL)
            shm_publish(s->name, al.shmfd, s->info.page_size, s->info.db_pages);
    }
    release_locks(&al);
    if (rc == 0)
        dbreg_bump_seq(r);
out_free:
    if (d)
        db_put(d);
    free(pg);
    dbreg_snap_abort(s);
    pthread_mutex_unlock(&r->apply_mu);
    return rc;
}

/* --------------------------------------------------- deletes and renames */

int dbreg_apply_drop(struct dbreg *r, const char *name, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&r->apply_mu);
    struct db *d = dbreg_get(r, name, 0);
    if (d && d->mnt_fd >= 0) {
        close(d->mnt_fd);
        d->mnt_fd = -1;
    }
    if (unlinkat(r->rootfd, name, 0) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "%s: cannot delete %s/%s: %s", name, r->files, name, strerror(errno));
        rc = LV_EIO;
    } else {
        dbreg_unlinked(r, name);
        inval_name(r, name);
        LV_INFO("%s: deleted, as on the primary", name);
    }
    if (d)
        db_put(d);
    pthread_mutex_unlock(&r->apply_mu);
    return rc;
}

int dbreg_apply_rename(struct dbreg *r, const char *from, const char *to, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    int rc = 0;
    pthread_mutex_lock(&r->apply_mu);
    for (const char *s = strchr(to, '/'); s; s = strchr(s + 1, '/')) {
        snprintf(dir, sizeof dir, "%.*s", (int)(s - to), to);
        mkdirat(r->rootfd, dir, 0755);
    }
    if (renameat(r->rootfd, from, r->rootfd, to) != 0) {
        snprintf(err, errlen, "cannot rename %s to %s in %s: %s", from, to, r->files, strerror(errno));
        rc = LV_EIO;
    } else {
        dbreg_renamed(r, from, to);
        inval_name(r, from);
        inval_name(r, to);
        LV_INFO("%s: renamed to %s, as on the primary", from, to);
    }
    pthread_mutex_unlock(&r->apply_mu);
    return rc;
}

void dbreg_close_mount_fds(struct dbreg *r)
{
    pthread_mutex_lock(&r->apply_mu);
    pthread_mutex_lock(&r->mu);
    for (int b = 0; b < DB_NBUCKETS; b++)
        for (struct db *d = r->buckets[b]; d; d = d->next)
            if (d->mnt_fd >= 0) {
                close(d->mnt_fd);
                d->mnt_fd = -1;
            }
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_unlock(&r->apply_mu);
}
