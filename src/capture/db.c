/*
 * db.c -- per-database state and transaction capture.
 *
 * WHAT IS CAPTURED
 * Every committed write transaction becomes one txlog record holding the
 * final content of each page whose content changed, the database size in
 * pages and the database checksum before and after (cksum.h).  A record's
 * page set is computed by comparing candidate pages against the per-page
 * checksum map, so a rolled-back transaction, a no-op commit, WAL padding
 * frames and a hot-journal rollback all produce no record.
 *
 * COMMIT DETECTION (all performed synchronously inside the FUSE request, so
 * the writer still holds SQLite's own locks: no other writer can interleave)
 *  - WAL mode: a write to NAME-wal that completes a frame (its last byte is
 *    the frame's last byte) whose header has a non-zero "database size
 *    after commit" and the salts of the current WAL header.  The
 *    transaction is the frames from wal_next to that frame; the last frame
 *    of each page wins.  SQLite writes a frame's header before its page, so
 *    the trigger fires only when the page bytes are in.  Frames that SQLite
 *    overwrites in place within a transaction (wal.c iReCksum) are read at
 *    commit time and so have their final content; the checksum rewrite that
 *    follows the commit frame touches only frame headers (never a frame's
 *    last byte) of frames < wal_next, and is ignored.  A WAL header write
 *    (offset 0) starts a new generation: wal_next = 0.
 *  - Rollback modes: writes to the database file while a journal is active
 *    (a journal header with the journal magic was written at offset 0) mark
 *    512-byte granules dirty.  The commit is the journal's unlink (DELETE),
 *    truncation to 0 (TRUNCATE) or a zeroed header (PERSIST, and any mode
 *    under locking_mode=EXCLUSIVE).  The capture runs BEFORE that operation
 *    is performed; if it fails the operation is refused with EIO, the
 *    journal stays hot, and SQLite rolls the transaction back.
 *  - Bulk writes: a new file (or one truncated to 0) written without a
 *    journal, e.g. by cp, is captured when the writer closes or fsyncs it.
 *  - A write to an existing database with no active journal outside WAL
 *    mode (journal_mode=OFF or MEMORY) is refused with EIO: without an
 *    on-disk journal there is no point at which the transaction commits.
 *  - Checkpoint writes (WAL mode, no journal) are not captured: the pages
 *    they copy are already logged.
 *
 * DURABILITY: records are appended with one write(2) at commit.  The log is
 * fsynced only when the application fsyncs one of the database's files
 * (before that fsync is passed on), or at a rollback commit if the
 * application fsynced during that transaction.
 *
 * STATES of struct db (kind):  UNKNOWN (empty, new) -> SQLITE (promote(),
 * on a SQLite, journal or WAL header) or PLAIN (not SQLite, passed through).
 * SQLITE -> broken (sticky, set by fail()) on an uncertain I/O error or a
 * damaged log; a broken database refuses to open and every write fails.
 *
 * START-UP (db_load): open and verify the log, load the persisted checksum
 * map (meta/NAME/state) and roll it forward with the page checksums of
 * later records, then reconcile with the files: replay commits found in
 * the WAL after the last logged WAL position as RECOVERED records, then
 * compare candidate pages (those of records after the state, WAL pages and
 * growth) with the map and write one RECOVERED repair record if anything
 * differs.  A hot journal is left for SQLite to roll back through the mount.
 *
 * LOCKING: dbreg.mu guards the table, names, refs and retired flags;
 * db.mu guards everything else in struct db.  Order: dbreg.mu, then db.mu.
 */
#include "capture/db.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/metrics.h"
#include "base/publish.h"
#include "base/sys.h"
#include "log/txlog.h"
#include "log/wal.h"

#define GRANULE 512
#define NBUCKETS 256
static const uint8_t SQLITE_MAGIC[16] = "SQLite format 3";
static const uint8_t JOURNAL_MAGIC[8] = {0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7};

enum db_kind { DBK_UNKNOWN = 0, DBK_SQLITE, DBK_PLAIN };
enum jmode { JM_UNKNOWN = 0, JM_DELETE, JM_TRUNCATE, JM_PERSIST, JM_WAL };
static const char *const jmode_names[] = {"unknown", "delete", "truncate", "persist", "wal"};

struct db {
    struct dbreg *reg;       /* owning registry (immutable) */
    struct db *next;         /* hash chain (reg->mu) */
    char *name;              /* name relative to the mount root (reg->mu) */
    int refs;                /* references (reg->mu) */
    int retired;             /* unlinked; no longer in the table (reg->mu) */
    pthread_mutex_t mu;      /* guards every field below */
    enum db_kind kind;       /* UNKNOWN, SQLITE or PLAIN */
    int broken;              /* sticky failure: refuse open and writes */
    char why[512];           /* reason for broken */
    int fd;                  /* backing main file, O_RDWR, or -1 */
    char metadir[PATH_MAX];  /* data.dir/meta/ESCAPED */
    uint8_t id[16];          /* database ID */
    struct txlog *log;       /* the log (SQLITE only) */
    struct cksum_map map;    /* checksums of the state after record txid */
    uint64_t txid;           /* last TXID logged */
    int64_t last_time;       /* its commit time */
    uint64_t saved_txid;     /* TXID of the persisted state file */
    int saved_valid;         /* state file reflects saved_txid */
    enum jmode jmode;        /* journal mode seen at the last commit */
    enum jmode jmode_saved;  /* journal mode last written to meta/NAME/journal-mode */
    int hdr_wal;             /* database header says WAL (byte 18 == 2) */
    int journal_active;      /* journal header written since the last commit */
    int bulk;                /* non-journal writes to a new/truncated file allowed */
    int warned_nojournal;    /* the OFF/MEMORY capture mode was logged */
    uint64_t *dirty;         /* dirty 512-byte granules since the last commit */
    size_t dirty_words;      /* words allocated in dirty */
    uint64_t dmin, dmax;     /* range of dirty granule indexes (valid if dirty_any) */
    int dirty_any;           /* some granule is dirty */
    int size_changed;        /* main file truncated since the last commit */
    int sync_pending;        /* app fsynced during this rollback transaction */
    int ckpt_dirty;          /* dirty holds pages written by WAL checkpoints */
    uint64_t ckpt_mismatch;  /* checkpointed pages that disagreed with the log */
    int log_unsynced;        /* records written and not yet fsynced */
    int wal_valid;           /* WAL header known */
    uint32_t wal_psz, wal_salt1, wal_salt2; /* current WAL header */
    uint32_t wal_next;       /* first frame after the last commit seen */
    uint32_t wal_magic;      /* magic of the current WAL header (names the checksum byte order) */
    uint64_t commits;        /* records written since start */
    uint64_t bytes_logged;   /* page bytes logged since start */
    uint64_t pages_logged;   /* pages logged since start */
    uint64_t refused;        /* writes refused */
    int64_t nospace_warn_us; /* lv_mono_us of the last "no space" warning, 0 if none (mu) */
    struct db_image *img;    /* image being copied by dbreg_image (copy-on-write active), or NULL */
    struct db_image *img_want; /* image waiting for the end of a rollback transaction, or NULL */
    pthread_cond_t img_cv;   /* signalled when img_want has been set up (with mu) */
    pthread_mutex_t img_mu;  /* held by dbreg_image for its whole run: one image at a time (before mu) */
};

struct dbreg {
    char data_dir[PATH_MAX];  /* data.dir (immutable) */
    uint64_t segment_size;    /* data.segment-size (immutable) */
    char files[PATH_MAX];     /* data.dir/files */
    char meta[PATH_MAX];      /* data.dir/meta */
    char retired[PATH_MAX];   /* data.dir/retired */
    int rootfd;               /* open directory fd of files */
    int lockfd;               /* data.dir/lock, flock'ed for the daemon's lifetime */
    pthread_mutex_t mu;       /* guards buckets, names, refs */
    struct db *buckets[NBUCKETS]; /* hash table of live databases */
    pthread_t syncer;         /* thread that fsyncs logs in parallel with the app's fsync */
    int syncer_started;       /* syncer is running */
    pthread_mutex_t smu;      /* guards the sync queue below */
    pthread_cond_t scv;       /* signals a new job or a finished one */
    struct sync_job *sq;      /* queued jobs (smu) */
    int sstop;                /* syncer should exit (smu) */
    int log_full;             /* 1: local log over data.max-log-size: new transactions refused (atomic) */
};

/* One log fsync handed to the syncer thread. */
struct sync_job {
    struct txlog *log;        /* log to fsync (its db's mu is held by the waiter) */
    int rc;                   /* result */
    int done;                 /* finished (reg->smu) */
    struct sync_job *next;    /* queue link (reg->smu) */
};

/* A page changed by a transaction and where to read its new content. */
struct change {
    uint32_t pgno;  /* page number */
    int fd;         /* file holding the content */
    uint64_t off;   /* byte offset of the content in fd */
    uint64_t h;     /* its checksum */
};

struct changes {
    struct change *v; /* entries (owned) */
    size_t n, cap;    /* used and allocated */
};

/* ---------------------------------------------------------------- syncer */

/*
 * With synchronous=FULL, SQLite fsyncs the WAL after each commit, and the
 * record must be durable before that fsync returns.  Doing the log's
 * fdatasync and the application's fsync one after the other would double
 * the commit latency, so the log's is handed to this thread and both run
 * at once (the filesystem can also merge them into one journal commit).
 */
static void *syncer_main(void *arg)
{
    struct dbreg *r = arg;
    pthread_mutex_lock(&r->smu);
    for (;;) {
        while (!r->sq && !r->sstop)
            pthread_cond_wait(&r->scv, &r->smu);
        if (!r->sq)
            break;
        struct sync_job *j = r->sq;
        r->sq = j->next;
        pthread_mutex_unlock(&r->smu);
        int rc = txlog_sync(j->log);
        pthread_mutex_lock(&r->smu);
        j->rc = rc;
        j->done = 1;
        pthread_cond_broadcast(&r->scv);
    }
    pthread_mutex_unlock(&r->smu);
    return NULL;
}

/* fsync fd (the application's file) and the log of d at the same time.
 * Caller holds d->mu.  Returns 0, or -errno / negative LV code for the log. */
static int sync_both(struct db *d, int fd, int datasync, int *log_rc)
{
    struct dbreg *r = d->reg;
    struct sync_job j = {d->log, 0, 0, NULL};
    int rc = 0;
    if (!r->syncer_started) {
        *log_rc = txlog_sync(d->log);
        return (datasync ? fdatasync(fd) : fsync(fd)) ? -errno : 0;
    }
    pthread_mutex_lock(&r->smu);
    struct sync_job **pp = &r->sq;
    while (*pp)
        pp = &(*pp)->next;
    *pp = &j;
    pthread_cond_broadcast(&r->scv);
    pthread_mutex_unlock(&r->smu);
    if ((datasync ? fdatasync(fd) : fsync(fd)) != 0)
        rc = -errno;
    pthread_mutex_lock(&r->smu);
    while (!j.done)
        pthread_cond_wait(&r->scv, &r->smu);
    pthread_mutex_unlock(&r->smu);
    *log_rc = j.rc;
    return rc;
}

/* ---------------------------------------------------------------- helpers */

static int changes_add(struct changes *c, uint32_t pgno, int fd, uint64_t off, uint64_t h)
{
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        struct change *v = realloc(c->v, nc * sizeof *v);
        if (!v)
            return LV_ENOMEM;
        c->v = v;
        c->cap = nc;
    }
    c->v[c->n++] = (struct change){pgno, fd, off, h};
    return 0;
}

static int change_cmp(const void *a, const void *b)
{
    const struct change *x = a, *y = b;
    return x->pgno < y->pgno ? -1 : x->pgno > y->pgno;
}

static unsigned name_hash(const char *s)
{
    unsigned h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h % NBUCKETS;
}

/* Escape name for a flat directory name: '%' -> %25, '/' -> %2F. */
static void escape_name(const char *name, char *out, size_t n)
{
    size_t j = 0;
    for (const char *p = name; *p && j + 4 < n; p++) {
        if (*p == '%' || *p == '/') {
            snprintf(out + j, n - j, "%%%02X", (unsigned char)*p);
            j += 3;
        } else {
            out[j++] = *p;
        }
    }
    out[j] = 0;
}

static void hex_id(const uint8_t id[16], char out[33])
{
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static int page_size_from_hdr(const uint8_t *h)
{
    unsigned v = lv_get16(h + 16);
    if (v == 1)
        return 65536;
    if (v < 512 || v > 32768 || (v & (v - 1)))
        return 0;
    return (int)v;
}

/* A database header is acceptable if it has the magic, a valid page size
 * and the fixed payload fractions. */
static int hdr_valid(const uint8_t *h)
{
    return memcmp(h, SQLITE_MAGIC, 16) == 0 && page_size_from_hdr(h) != 0 && h[21] == 64 && h[22] == 32 &&
           h[23] == 32;
}

/* Pages in the database: the in-header size (bytes 28..31) when it is
 * valid (bytes 92..95 equal the change counter at 24..27, as SQLite
 * requires), else the file size rounded up.  SQLite may truncate the file
 * only after the journal is finalized, so the header is authoritative. */
static uint32_t logical_pages(const uint8_t *h, uint64_t file_size, uint32_t ps)
{
    uint32_t n = lv_get32(h + 28);
    if (n > 0 && memcmp(h + 92, h + 24, 4) == 0)
        return n;
    return (uint32_t)((file_size + ps - 1) / ps);
}

/* Checksum of an all-zero page (page size ps, page pgno). */
static uint64_t zero_page_cksum(uint32_t pgno, uint32_t ps)
{
    static const uint8_t zeros[65536];
    return cksum_page(pgno, zeros, ps);
}

/* Read ps bytes at off from fd; bytes past EOF read as zeros. */
static int read_page(int fd, void *buf, uint32_t ps, uint64_t off)
{
    size_t got = 0;
    while (got < ps) {
        ssize_t r = pread(fd, (char *)buf + got, ps - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            LV_ERROR("pread at %llu: %s", (unsigned long long)(off + got), strerror(errno));
            return LV_EIO;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (got < ps)
        memset((char *)buf + got, 0, ps - got);
    return 0;
}

/* Mark a database broken: refuse everything until restart (sticky). */
static void fail(struct db *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct db *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->why, sizeof d->why, fmt, ap);
    va_end(ap);
    d->broken = 1;
    LV_ERROR("%s: %s; this database refuses all access until litevault restarts", d->name, d->why);
}

static int main_fd(struct db *d)
{
    if (d->fd < 0) {
        d->fd = openat(d->reg->rootfd, d->name, O_RDWR | O_CLOEXEC);
        if (d->fd < 0)
            LV_DEBUG("open %s/%s: %s", d->reg->files, d->name, strerror(errno));
    }
    return d->fd;
}

/* ---------------------------------------------------------------- dirty set */

static int dirty_mark(struct db *d, uint64_t off, uint64_t len)
{
    if (len == 0)
        return 0;
    uint64_t g0 = off / GRANULE, g1 = (off + len - 1) / GRANULE;
    size_t need = (size_t)(g1 / 64 + 1);
    if (need > d->dirty_words) {
        size_t nw = d->dirty_words ? d->dirty_words : 64;
        while (nw < need)
            nw *= 2;
        uint64_t *v = realloc(d->dirty, nw * sizeof *v);
        if (!v)
            return LV_ENOMEM;
        memset(v + d->dirty_words, 0, (nw - d->dirty_words) * sizeof *v);
        d->dirty = v;
        d->dirty_words = nw;
    }
    for (uint64_t g = g0; g <= g1; g++)
        d->dirty[g / 64] |= 1ull << (g % 64);
    if (!d->dirty_any || g0 < d->dmin)
        d->dmin = g0;
    if (!d->dirty_any || g1 > d->dmax)
        d->dmax = g1;
    d->dirty_any = 1;
    return 0;
}

static void dirty_clear(struct db *d)
{
    if (d->dirty_any)
        memset(d->dirty + d->dmin / 64, 0, (size_t)(d->dmax / 64 - d->dmin / 64 + 1) * sizeof(uint64_t));
    d->dirty_any = 0;
    d->size_changed = 0;
}

/* Call fn for every page (of size ps) that has a dirty granule, ascending. */
static int dirty_pages(struct db *d, uint32_t ps, int (*fn)(void *, uint32_t), void *arg)
{
    uint32_t last = 0;
    if (!d->dirty_any)
        return 0;
    for (uint64_t w = d->dmin / 64; w <= d->dmax / 64; w++) {
        uint64_t bits = d->dirty[w];
        while (bits) {
            int b = __builtin_ctzll(bits);
            bits &= bits - 1;
            uint64_t g = w * 64 + (uint64_t)b;
            uint32_t p = (uint32_t)(g * GRANULE / ps + 1);
            if (p != last) {
                int rc = fn(arg, p);
                if (rc)
                    return rc;
                last = p;
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- records */

/*
 * Write one record for the changes c (any order; sorted here), leaving the
 * database at db_pages pages of page size ps.  With TXLOG_F_SNAPSHOT, c
 * holds every page.  On success the map, TXID and counters advance.
 */
static int emit(struct db *d, uint16_t flags, uint32_t ps, uint32_t db_pages, struct changes *c, uint32_t salt1,
                uint32_t salt2, uint32_t wal_frame)
{
    struct txlog_hdr h;
    uint8_t *buf = NULL;
    int rc;
    uint64_t post;

    qsort(c->v, c->n, sizeof *c->v, change_cmp);
    if (flags & TXLOG_F_SNAPSHOT) {
        post = 0;
        for (size_t i = 0; i < c->n; i++)
            post ^= c->v[i].h;
    } else {
        /* Start from the map and apply removals, growth and changes. */
        post = d->map.total;
        uint32_t old = d->map.npages;
        for (uint32_t p = db_pages + 1; p <= old; p++)
            post ^= cksum_map_get(&d->map, p);
        for (uint32_t p = old + 1; p <= db_pages; p++)
            post ^= zero_page_cksum(p, ps);
        for (size_t i = 0; i < c->n; i++) {
            uint32_t p = c->v[i].pgno;
            uint64_t before = p <= old ? cksum_map_get(&d->map, p) : zero_page_cksum(p, ps);
            post ^= before ^ c->v[i].h;
        }
    }
    memset(&h, 0, sizeof h);
    h.version = 1;
    h.flags = flags;
    memcpy(h.dbid, d->id, 16);
    h.txid = d->txid + 1;
    h.time_us = lv_now_us();
    if (h.time_us < d->last_time)
        h.time_us = d->last_time;
    h.page_size = ps;
    h.db_pages = db_pages;
    h.comp = TXLOG_COMP_ZSTD;
    h.pre_cksum = d->map.total;
    h.post_cksum = post;
    h.wal_salt1 = salt1;
    h.wal_salt2 = salt2;
    h.wal_frame = wal_frame;

    buf = malloc(ps);
    if (!buf)
        return LV_ENOMEM;
    rc = txlog_append_begin(d->log, &h);
    if (rc)
        goto out_free_buf;
    for (size_t i = 0; i < c->n; i++) {
        rc = read_page(c->v[i].fd, buf, ps, c->v[i].off);
        if (rc == 0 && cksum_page(c->v[i].pgno, buf, ps) != c->v[i].h) {
            LV_ERROR("%s: page %u changed while it was being logged", d->name, c->v[i].pgno);
            rc = LV_EMISMATCH;
        }
        if (rc == 0)
            rc = txlog_append_page(d->log, c->v[i].pgno, buf);
        if (rc) {
            txlog_append_abort(d->log);
            goto out_free_buf;
        }
    }
    rc = txlog_append_end(d->log);
    if (rc)
        goto out_free_buf;

    /* The record is written: move the map to the new state. */
    if (flags & TXLOG_F_SNAPSHOT || d->map.page_size != ps)
        cksum_map_reset(&d->map, ps);
    rc = cksum_map_resize(&d->map, db_pages);
    if (rc) {
        fail(d, "out of memory growing the checksum map");
        goto out_free_buf;
    }
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].pgno <= db_pages)
            cksum_map_set(&d->map, c->v[i].pgno, c->v[i].h);
    if (d->map.total != post) {
        fail(d, "internal checksum mismatch after TXID %llu", (unsigned long long)h.txid);
        rc = LV_EMISMATCH;
        goto out_free_buf;
    }
    d->txid = h.txid;
    d->last_time = h.time_us;
    d->commits++;
    d->pages_logged += c->n;
    d->bytes_logged += (uint64_t)c->n * ps;
    d->log_unsynced = 1;
    if (flags & TXLOG_F_RECOVERED)
        LV_WARN("%s: wrote recovered record TXID %llu (%zu pages)", d->name, (unsigned long long)h.txid, c->n);
    else
        LV_DEBUG("%s: TXID %llu, %zu pages, %u pages total", d->name, (unsigned long long)h.txid, c->n, db_pages);
out_free_buf:
    free(buf);
    if (rc && !d->broken)
        LV_ERROR("%s: could not log TXID %llu (%s); the commit is refused with an I/O error and SQLite keeps "
                 "the database as it was", d->name, (unsigned long long)h.txid, lv_strerror(rc));
    if (rc && txlog_error(d->log))
        fail(d, "the transaction log failed (%s) and its state is uncertain", lv_strerror(txlog_error(d->log)));
    return rc;
}

/* Context for collecting dirty pages in a rollback capture. */
struct collect {
    struct db *d;        /* database */
    struct changes *c;   /* output */
    uint32_t ps;         /* page size */
    uint32_t npages;     /* pages after the commit */
    uint8_t *buf;        /* scratch page */
    int fd;              /* main file */
};

static int collect_page(void *arg, uint32_t p)
{
    struct collect *k = arg;
    struct db *d = k->d;
    if (p > k->npages)
        return 0;
    uint64_t off = (uint64_t)(p - 1) * k->ps;
    int rc = read_page(k->fd, k->buf, k->ps, off);
    if (rc)
        return rc;
    uint64_t h = cksum_page(p, k->buf, k->ps);
    uint64_t before = p <= d->map.npages ? cksum_map_get(&d->map, p) : zero_page_cksum(p, k->ps);
    if (h == before)
        return 0;
    return changes_add(k->c, p, k->fd, off, h);
}

/* Read every page 1..npages of fd into c (for snapshot records). */
static int collect_all(struct db *d, int fd, uint32_t ps, uint32_t npages, struct changes *c, uint8_t *buf)
{
    for (uint32_t p = 1; p <= npages; p++) {
        uint64_t off = (uint64_t)(p - 1) * ps;
        int rc = read_page(fd, buf, ps, off);
        if (rc)
            return rc;
        rc = changes_add(c, p, fd, off, cksum_page(p, buf, ps));
        if (rc)
            return rc;
    }
    LV_UNUSED(d);
    return 0;
}

/* Commit of a rollback-journal (or bulk) transaction: log the pages that
 * differ from the map.  0 if logged or nothing changed. */
static int capture_rollback(struct db *d, uint16_t extra_flags)
{
    struct changes c = {0};
    uint8_t hdr[100];
    uint8_t *buf = NULL;
    struct stat st;
    int rc = 0, fd;
    uint32_t ps, npages;

    if (!d->dirty_any && !d->size_changed)
        return 0;
    fd = main_fd(d);
    if (fd < 0 || fstat(fd, &st) != 0) {
        LV_ERROR("%s: cannot open or stat the database file: %s", d->name, strerror(errno));
        return LV_EIO;
    }
    if (st.st_size == 0) {
        ps = d->map.page_size ? d->map.page_size : 4096;
        npages = 0;
    } else {
        rc = read_page(fd, hdr, sizeof hdr, 0);
        if (rc)
            return rc;
        if (!hdr_valid(hdr)) {
            LV_ERROR("%s: the database header is not valid SQLite at commit; refusing the commit", d->name);
            return LV_ENOTSQLITE;
        }
        ps = (uint32_t)page_size_from_hdr(hdr);
        npages = logical_pages(hdr, (uint64_t)st.st_size, ps);
        d->hdr_wal = hdr[18] == 2;
    }
    buf = malloc(ps);
    if (!buf)
        return LV_ENOMEM;
    uint16_t flags = extra_flags;
    if (d->map.npages == 0 || d->map.page_size != ps) {
        flags |= TXLOG_F_SNAPSHOT;
        rc = collect_all(d, fd, ps, npages, &c, buf);
    } else {
        struct collect k = {d, &c, ps, npages, buf, fd};
        rc = dirty_pages(d, ps, collect_page, &k);
        /* Growth beyond the dirty pages (never-written pages read as zeros). */
    }
    if (rc)
        goto out_free;
    if (!(flags & TXLOG_F_SNAPSHOT) && c.n == 0 && npages == d->map.npages)
        goto out_clear; /* nothing changed: rollback, no-op */
    if ((flags & TXLOG_F_SNAPSHOT) && npages == 0 && d->map.npages == 0 && d->txid > 0)
        goto out_clear;
    rc = emit(d, flags, ps, npages, &c, 0, 0, 0);
    if (rc)
        goto out_free;
out_clear:
    dirty_clear(d);
out_free:
    free(c.v);
    free(buf);
    return rc;
}

/* WAL frames [first, last] of walfd (page size ps) committed with db_pages:
 * log the pages that differ from the map. */
static int capture_wal(struct db *d, int walfd, uint32_t first, uint32_t last, uint32_t db_pages,
                       uint16_t extra_flags)
{
    struct changes c = {0};
    uint32_t ps = d->wal_psz;
    uint8_t fh[WAL_FRAME_HDR_SIZE];
    uint8_t *buf = NULL;
    int rc = 0;

    if (d->map.npages > 0 && d->map.page_size != ps) {
        /* SQLite never writes such a WAL (a WAL-mode database cannot
         * change its page size); a program wrote it by hand, as SQLite's
         * wal-18.2 test does.  The write goes through as on a local disk;
         * if SQLite ever checkpoints those frames, ckpt_verify logs what
         * the database then holds. */
        LV_WARN("%s: a WAL commit frame with page size %u for a database of page size %u: not SQLite's; not "
                "captured",
                d->name, ps, d->map.page_size);
        return 0;
    }
    buf = malloc(ps);
    if (!buf)
        return LV_ENOMEM;
    /* Collect (pgno, frame) pairs; the later frame of a page wins. */
    for (uint32_t i = first; i <= last; i++) {
        uint64_t off = wal_frame_off(i, ps);
        rc = sys_pread_all(walfd, fh, sizeof fh, (off_t)off, d->name);
        if (rc)
            goto out_free;
        uint32_t pgno = lv_get32(fh);
        if (pgno == 0) {
            rc = LV_ECORRUPT;
            goto out_free;
        }
        rc = changes_add(&c, pgno, walfd, off + WAL_FRAME_HDR_SIZE, i);
        if (rc)
            goto out_free;
    }
    /* Stable sort by pgno keeps frame order; keep the last of each run. */
    qsort(c.v, c.n, sizeof *c.v, change_cmp);
    size_t j = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (i + 1 < c.n && c.v[i + 1].pgno == c.v[i].pgno) {
            /* qsort is not stable: pick the larger frame index */
            if (c.v[i].h > c.v[i + 1].h)
                c.v[i + 1] = c.v[i];
            continue;
        }
        c.v[j++] = c.v[i];
    }
    c.n = j;
    /* Hash and compare. */
    j = 0;
    for (size_t i = 0; i < c.n; i++) {
        uint32_t p = c.v[i].pgno;
        if (p > db_pages)
            continue;
        rc = read_page(walfd, buf, ps, c.v[i].off);
        if (rc)
            goto out_free;
        uint64_t h = cksum_page(p, buf, ps);
        uint64_t before = p <= d->map.npages ? cksum_map_get(&d->map, p) : zero_page_cksum(p, ps);
        if (h == before && d->map.npages > 0)
            continue;
        c.v[i].h = h;
        c.v[j++] = c.v[i];
    }
    c.n = j;
    if (c.n == 0 && db_pages == d->map.npages && d->map.npages > 0)
        goto out_free;
    if (d->map.npages == 0 && d->map.page_size != ps)
        cksum_map_reset(&d->map, ps);
    rc = emit(d, extra_flags, ps, db_pages, &c, d->wal_salt1, d->wal_salt2, last + 1);
out_free:
    free(c.v);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- identity */

static int write_id(struct db *d)
{
    char path[PATH_MAX + 8], hex[34];
    hex_id(d->id, hex);
    hex[32] = '\n';
    hex[33] = 0;
    snprintf(path, sizeof path, "%s/id", d->metadir);
    return publish_buf(path, hex, 33);
}

static int read_id(struct db *d)
{
    char path[PATH_MAX + 8];
    void *data = NULL;
    size_t len = 0;
    int rc;
    snprintf(path, sizeof path, "%s/id", d->metadir);
    rc = sys_read_file(path, &data, &len);
    if (rc)
        return rc;
    rc = LV_ECORRUPT;
    if (len >= 32) {
        const char *s = data;
        rc = 0;
        for (int i = 0; i < 16 && rc == 0; i++) {
            unsigned v;
            if (sscanf(s + 2 * i, "%2x", &v) != 1)
                rc = LV_ECORRUPT;
            d->id[i] = (uint8_t)v;
        }
    }
    free(data);
    return rc;
}

void db_metadir_path(const char *data_dir, const char *name, char *out, size_t n)
{
    char esc[PATH_MAX];
    escape_name(name, esc, sizeof esc);
    if (strlen(esc) > 200) {
        char hx[17];
        cksum_hex(cksum_buf(name, strlen(name)), hx);
        snprintf(esc + 150, sizeof esc - 150, "~%s", hx);
    }
    snprintf(out, n, "%s/meta/%s", data_dir, esc);
}

static void set_metadir(struct db *d)
{
    db_metadir_path(d->reg->data_dir, d->name, d->metadir, sizeof d->metadir);
}

static int open_log(struct db *d, struct txlog_tail *tail)
{
    char dir[PATH_MAX + 8], err[512] = "";
    snprintf(dir, sizeof dir, "%s/log", d->metadir);
    int rc = txlog_open(dir, d->id, d->reg->segment_size, &d->log, tail, err, sizeof err);
    if (rc)
        fail(d, "the transaction log is damaged: %s (move %s aside to start a new history, or restore it)",
             err[0] ? err : lv_strerror(rc), dir);
    return rc;
}

/* Move the metadata directory dir into retired/ as <its name>.<tag>; 0 or LV_EIO. */
static int retire_dir(struct dbreg *r, const char *dir, const char *tag)
{
    char dst[PATH_MAX * 2];
    const char *base = strrchr(dir, '/');
    base = base ? base + 1 : dir;
    snprintf(dst, sizeof dst, "%s/%.*s.%s", r->retired, 180, base, tag);
    if (rename(dir, dst) != 0) {
        LV_ERROR("rename %s -> %s: %s", dir, dst, strerror(errno));
        return LV_EIO;
    }
    LV_INFO("moved %s to %s", dir, dst);
    return 0;
}

/* UNKNOWN -> SQLITE: new identity, meta directory and empty log. */
static int promote(struct db *d)
{
    struct txlog_tail tail;
    int rc;
    if (getrandom(d->id, sizeof d->id, 0) != (ssize_t)sizeof d->id) {
        LV_ERROR("getrandom: %s", strerror(errno));
        return LV_EIO;
    }
    set_metadir(d);
    struct stat st;
    if (stat(d->metadir, &st) == 0) {
        /* Metadata of an earlier database of this name that was not
         * retired: keep it, but never mix it with the new history. */
        char tag[48];
        snprintf(tag, sizeof tag, "stale-%lld", (long long)lv_now_us());
        if (retire_dir(d->reg, d->metadir, tag) != 0)
            return LV_EIO;
    }
    rc = sys_mkdir_p(d->metadir);
    if (rc == 0)
        rc = write_id(d);
    if (rc) {
        LV_ERROR("%s: cannot create %s: %s", d->name, d->metadir, lv_strerror(rc));
        return rc;
    }
    rc = open_log(d, &tail);
    if (rc)
        return rc;
    d->kind = DBK_SQLITE;
    cksum_map_init(&d->map);
    d->txid = 0;
    char hex[33];
    hex_id(d->id, hex);
    LV_INFO("%s: new database, id %s", d->name, hex);
    return 0;
}

/* ---------------------------------------------------------------- start-up */

/* Roll the map forward with the page checksums of records > from (marking
 * their pages as reconcile candidates).  0 or negative. */
static int replay_hashes(struct db *d, uint64_t from)
{
    char dir[PATH_MAX + 8];
    struct txlog_reader *r = NULL;
    struct txlog_hdr h;
    int rc;
    snprintf(dir, sizeof dir, "%s/log", d->metadir);
    rc = txlog_reader_open(dir, from + 1, &r);
    if (rc)
        return rc;
    while ((rc = txlog_reader_next(r, &h)) == 0) {
        if (h.flags & TXLOG_F_SNAPSHOT || d->map.page_size != h.page_size)
            cksum_map_reset(&d->map, h.page_size);
        rc = cksum_map_resize(&d->map, h.db_pages);
        if (rc)
            break;
        uint32_t pgno;
        const void *data;
        while ((rc = txlog_reader_page(r, &pgno, &data)) == 0) {
            cksum_map_set(&d->map, pgno, cksum_page(pgno, data, h.page_size));
            dirty_mark(d, (uint64_t)(pgno - 1) * h.page_size, h.page_size);
        }
        if (rc != LV_ENOENT)
            break;
        if (d->map.total != h.post_cksum) {
            LV_ERROR("%s: TXID %llu: pages do not add up to the post checksum", d->name,
                     (unsigned long long)h.txid);
            rc = LV_ECORRUPT;
            break;
        }
        rc = 0;
    }
    if (rc == LV_ENOENT)
        rc = 0;
    txlog_reader_close(r);
    return rc;
}

/* Sorted (pgno, offset) overlay of committed WAL frames. */
struct overlay {
    struct change *v; /* pgno and offset of the newest committed frame; sorted */
    size_t n;         /* entries */
};

static int overlay_build(int walfd, uint32_t ps, uint32_t nframes, struct overlay *o)
{
    struct changes c = {0};
    uint8_t fh[WAL_FRAME_HDR_SIZE];
    int rc = 0;
    for (uint32_t i = 0; i < nframes; i++) {
        uint64_t off = wal_frame_off(i, ps);
        rc = sys_pread_all(walfd, fh, sizeof fh, (off_t)off, "wal");
        if (rc)
            break;
        rc = changes_add(&c, lv_get32(fh), walfd, off + WAL_FRAME_HDR_SIZE, i);
        if (rc)
            break;
    }
    qsort(c.v, c.n, sizeof *c.v, change_cmp);
    size_t j = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (j > 0 && c.v[j - 1].pgno == c.v[i].pgno) {
            if (c.v[i].h > c.v[j - 1].h)
                c.v[j - 1] = c.v[i];
            continue;
        }
        c.v[j++] = c.v[i];
    }
    o->v = c.v;
    o->n = j;
    return rc;
}

static const struct change *overlay_find(const struct overlay *o, uint32_t pgno)
{
    size_t lo = 0, hi = o->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (o->v[mid].pgno < pgno)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < o->n && o->v[lo].pgno == pgno ? &o->v[lo] : NULL;
}

/* ---------------------------------------------------------------- images */

/*
 * CONSISTENT IMAGES (dbreg_image), for export and archive snapshots.
 *
 * The image is the database just after TXID N, the last record when the
 * image is set up.  Its pages come from two places, fixed at set-up:
 *   - pages with a committed frame in the current WAL (frames before
 *     wal_next): the newest such frame (the overlay), read from the WAL;
 *   - every other page: the main file.
 * Set-up happens with d->mu held at a moment when the files hold exactly
 * TXID N: never inside a rollback transaction (journal_active or bulk
 * writes pending).  If a rollback transaction is open, the request waits
 * in img_want and is set up by img_serve() at the first quiescent moment,
 * which every db_on_* call checks before releasing d->mu.  In WAL mode the
 * main file changes only through checkpoints, which copy committed frames.
 *
 * Copy-on-write: from set-up until the copy ends, every write or truncate
 * of the main file or the WAL (all of which run under d->mu) first copies
 * into the image the not-yet-copied pages whose source it would change
 * (img_cow_main, img_cow_wal).  The copier also holds d->mu for each chunk
 * it copies, so a page is copied exactly once, from an unchanged source.
 * The image keeps its own descriptors of the main file and the WAL, so
 * unlink and rename do not disturb it.  A failure to write the image
 * (ENOSPC) marks it failed; the application's write still proceeds.
 * Finally the XOR of the copied pages' checksums must equal N's
 * post-checksum, else LV_EMISMATCH: an image is never silently wrong.
 */
struct db_image {
    int out_fd;            /* destination (borrowed from the caller) */
    int mainfd;            /* own descriptor of the main file */
    int walfd;             /* own descriptor of the WAL, or -1 */
    struct overlay ov;     /* pages whose content is in a WAL frame */
    uint64_t wal_end;      /* byte offset just past the last overlay frame */
    uint32_t ps;           /* page size */
    uint32_t npages;       /* pages in the image */
    uint64_t *copied;      /* bitmap: page p copied (bit p-1) */
    uint64_t cksum;        /* XOR of cksum_page of the pages copied so far */
    uint64_t want;         /* expected checksum: post-checksum of txid */
    uint64_t txid;         /* TXID of the image */
    int64_t time_us;       /* its commit time */
    uint8_t id[16];        /* database ID */
    int err;               /* sticky: first error writing the image */
    int ready;             /* set up (img_want served) */
    uint8_t *buf;          /* scratch for one page (COW) */
};

/* Copy page p into the image if not copied yet.  d->mu held. */
static int img_copy_page(struct db *d, struct db_image *im, uint32_t p)
{
    uint64_t bit = (uint64_t)(p - 1);
    if (p == 0 || p > im->npages || (im->copied[bit / 64] >> (bit % 64) & 1) || im->err)
        return im->err;
    const struct change *c = overlay_find(&im->ov, p);
    int rc = c ? sys_pread_all(im->walfd, im->buf, im->ps, (off_t)c->off, d->name)
               : read_page(im->mainfd, im->buf, im->ps, (uint64_t)(p - 1) * im->ps);
    if (rc == 0)
        rc = sys_pwrite_all(im->out_fd, im->buf, im->ps, (off_t)(p - 1) * im->ps, "image");
    if (rc) {
        im->err = rc < 0 ? rc : LV_EIO;
        return im->err;
    }
    im->cksum ^= cksum_page(p, im->buf, im->ps);
    im->copied[bit / 64] |= 1ull << (bit % 64);
    return 0;
}

/* The main file's bytes [off, off+len) are about to change: save the
 * image's pages there whose source is the main file.  len 0 = to the end. */
static void img_cow_main(struct db *d, uint64_t off, uint64_t len)
{
    struct db_image *im = d->img;
    if (!im || im->err || im->npages == 0)
        return;
    uint64_t first = off / im->ps + 1, last = len ? (off + len - 1) / im->ps + 1 : im->npages;
    if (last > im->npages)
        last = im->npages;
    for (uint64_t p = first; p <= last && !im->err; p++)
        if (!overlay_find(&im->ov, (uint32_t)p))
            img_copy_page(d, im, (uint32_t)p);
}

/* The WAL is about to change at off (a restart, an overwrite or a
 * truncation to off): save every page still to be read from frames at or
 * past off.  Rare (only after a WAL restart), so no finer tracking. */
static void img_cow_wal(struct db *d, uint64_t off)
{
    struct db_image *im = d->img;
    if (!im || im->err || im->ov.n == 0 || off >= im->wal_end)
        return;
    for (size_t i = 0; i < im->ov.n && !im->err; i++)
        if (im->ov.v[i].off + im->ps > off)
            img_copy_page(d, im, im->ov.v[i].pgno);
}

/* Release what an image owns (not out_fd). */
static void img_free(struct db_image *im)
{
    if (im->mainfd >= 0)
        close(im->mainfd);
    if (im->walfd >= 0)
        close(im->walfd);
    free(im->ov.v);
    free(im->copied);
    free(im->buf);
    im->ov.v = NULL;
    im->copied = NULL;
    im->buf = NULL;
    im->mainfd = im->walfd = -1;
}

/* Fix the image at the current state (TXID d->txid).  d->mu held, the
 * database quiescent.  0 or negative. */
static int img_setup(struct db *d, struct db_image *im)
{
    char rel[PATH_MAX + 8];
    int rc = 0;

    im->ps = d->map.page_size;
    im->npages = d->map.npages;
    im->want = d->map.total;
    im->txid = d->txid;
    im->time_us = d->last_time;
    memcpy(im->id, d->id, 16);
    im->mainfd = openat(d->reg->rootfd, d->name, O_RDONLY | O_CLOEXEC);
    if (im->mainfd < 0) {
        LV_ERROR("%s: image: open %s/%s: %s", d->name, d->reg->files, d->name, strerror(errno));
        return lv_from_errno(errno);
    }
    im->copied = calloc((size_t)im->npages / 64 + 1, sizeof(uint64_t));
    im->buf = malloc(im->ps ? im->ps : 512);
    if (!im->copied || !im->buf)
        return LV_ENOMEM;
    if (d->wal_valid && d->wal_next > 0 && d->wal_psz == im->ps) {
        snprintf(rel, sizeof rel, "%s-wal", d->name);
        im->walfd = openat(d->reg->rootfd, rel, O_RDONLY | O_CLOEXEC);
        if (im->walfd < 0) {
            LV_ERROR("%s: image: open %s/%s: %s", d->name, d->reg->files, rel, strerror(errno));
            return lv_from_errno(errno);
        }
        rc = overlay_build(im->walfd, im->ps, d->wal_next, &im->ov);
        if (rc)
            return rc;
        im->wal_end = wal_frame_off(d->wal_next, im->ps);
    }
    im->ready = 1;
    d->img = im;
    return 0;
}

/* A quiescent moment: set up a waiting image.  d->mu held. */
static void img_serve(struct db *d)
{
    struct db_image *im = d->img_want;
    if (!im || d->journal_active || d->bulk)
        return;
    d->img_want = NULL;
    int rc = img_setup(d, im);
    if (rc)
        im->err = rc;
    im->ready = 1;
    pthread_cond_broadcast(&d->img_cv);
}

int dbreg_image(struct dbreg *r, const char *name, int out_fd, int timeout_ms, struct db_image_info *info,
                db_image_progress_fn progress, void *arg)
{
    struct db_image im = {.out_fd = out_fd, .mainfd = -1, .walfd = -1};
    struct db *d = dbreg_get(r, name, 0);
    uint8_t *chunk = NULL;
    int rc = 0;

    if (!d)
        return LV_ENOENT;
    pthread_mutex_lock(&d->img_mu);
    pthread_mutex_lock(&d->mu);
    if (d->kind != DBK_SQLITE || d->txid == 0) {
        rc = d->broken ? LV_EBROKEN : LV_ENOENT;
        goto out_unlock;
    }
    if (d->broken) {
        rc = LV_EBROKEN;
        goto out_unlock;
    }
    if (!d->journal_active && !d->bulk) {
        rc = img_setup(d, &im);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = ts.tv_nsec + (int64_t)timeout_ms * 1000000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        d->img_want = &im;
        while (!im.ready && !d->broken)
            if (pthread_cond_timedwait(&d->img_cv, &d->mu, &ts) == ETIMEDOUT)
                break;
        if (!im.ready) {
            d->img_want = NULL;
            rc = d->broken ? LV_EBROKEN : LV_EBUSY;
            if (rc == LV_EBUSY)
                LV_WARN("%s: image: a transaction stayed open for %d ms; try again", d->name, timeout_ms);
            goto out_unlock;
        }
        rc = im.err;
    }
    if (rc)
        goto out_clear;
    pthread_mutex_unlock(&d->mu);

    /* Copy in chunks of about 1 MiB, each under d->mu (writers wait at most
     * one chunk), reading runs of the main file with one pread. */
    uint32_t per = im.ps ? (uint32_t)((1u << 20) / im.ps) : 1;
    if (per == 0)
        per = 1;
    chunk = malloc((size_t)per * (im.ps ? im.ps : 512));
    if (!chunk) {
        rc = LV_ENOMEM;
        pthread_mutex_lock(&d->mu);
        goto out_clear;
    }
    if (sys_ftruncate(out_fd, 0, "image") != 0) {
        rc = LV_EIO;
        pthread_mutex_lock(&d->mu);
        goto out_clear;
    }
    /* Test seam: LV_TEST_IMAGE_DELAY_US slows the copy between chunks so
     * that tests can make writers overlap it (unset in production). */
    const char *delay_env = getenv("LV_TEST_IMAGE_DELAY_US");
    long delay_us = delay_env ? atol(delay_env) : 0;
    for (uint32_t p0 = 1; p0 <= im.npages && rc == 0; p0 += per) {
        uint32_t n = im.npages - p0 + 1 < per ? im.npages - p0 + 1 : per;
        if (delay_us > 0 && p0 > 1)
            usleep((useconds_t)delay_us);
        pthread_mutex_lock(&d->mu);
        rc = im.err;
        if (rc == 0 && d->broken)
            rc = LV_EBROKEN;
        if (rc == 0)
            rc = read_page(im.mainfd, chunk, n * im.ps, (uint64_t)(p0 - 1) * im.ps);
        uint32_t run0 = 0, runlen = 0; /* pending run of pages to write from chunk */
        for (uint32_t i = 0; i < n && rc == 0; i++) {
            uint32_t p = p0 + i;
            uint64_t bit = p - 1;
            if (im.copied[bit / 64] >> (bit % 64) & 1) {
                if (runlen)
                    rc = sys_pwrite_all(out_fd, chunk + (size_t)run0 * im.ps, (size_t)runlen * im.ps,
                                        (off_t)(p0 - 1 + run0) * im.ps, "image");
                runlen = 0;
                continue;
            }
            const struct change *c = overlay_find(&im.ov, p);
            if (c)
                rc = sys_pread_all(im.walfd, chunk + (size_t)i * im.ps, im.ps, (off_t)c->off, d->name);
            if (rc)
                break;
            im.cksum ^= cksum_page(p, chunk + (size_t)i * im.ps, im.ps);
            im.copied[bit / 64] |= 1ull << (bit % 64);
            if (!runlen)
                run0 = i;
            runlen++;
        }
        if (rc == 0 && runlen)
            rc = sys_pwrite_all(out_fd, chunk + (size_t)run0 * im.ps, (size_t)runlen * im.ps,
                                (off_t)(p0 - 1 + run0) * im.ps, "image");
        if (rc == 0)
            rc = im.err;
        pthread_mutex_unlock(&d->mu);
        /* Start writing back what was copied (every ~8 MiB) while the copy
         * goes on, so that the caller's fsync of the image finds little
         * left to write.  Advisory: errors surface at that fsync. */
        if (rc == 0 && ((uint64_t)(p0 - 1 + n) * im.ps) / (8u << 20) != ((uint64_t)(p0 - 1) * im.ps) / (8u << 20))
            (void)sync_file_range(out_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        if (rc == 0 && progress)
            progress(arg, (uint64_t)(p0 - 1 + n), im.npages);
    }
    pthread_mutex_lock(&d->mu);
    if (rc == 0 && im.npages == 0 && progress)
        progress(arg, 0, 0);
    if (rc == 0 && sys_ftruncate(out_fd, (off_t)im.npages * im.ps, "image") != 0)
        rc = LV_EIO;
    if (rc == 0 && im.cksum != im.want) {
        char a[17], b[17];
        LV_ERROR("%s: image at TXID %llu has checksum %s, the log says %s: the files disagree with the log; "
                 "the image is discarded",
                 d->name, (unsigned long long)im.txid, cksum_hex(im.cksum, a), cksum_hex(im.want, b));
        rc = LV_EMISMATCH;
    }
    if (rc == 0 && info) {
        memcpy(info->id, im.id, 16);
        info->txid = im.txid;
        info->time_us = im.time_us;
        info->page_size = im.ps;
        info->db_pages = im.npages;
        info->cksum = im.cksum;
    }
out_clear:
    if (d->img == &im)
        d->img = NULL;
out_unlock:
    pthread_mutex_unlock(&d->mu);
    pthread_mutex_unlock(&d->img_mu);
    img_free(&im);
    free(chunk);
    db_put(d);
    return rc;
}

/*
 * Reconcile the map (state after the last record) with the files.  See
 * the design comment.  full: compare every page (no state was available).
 */
static int reconcile(struct db *d, const struct txlog_tail *tail, int full)
{
    char rel[PATH_MAX];
    struct wal_hdr wh;
    struct wal_commit *cm = NULL;
    size_t ncm = 0;
    int walfd = -1, rc = 0, fd;
    struct overlay ov = {0};
    struct changes c = {0};
    uint8_t hdr[100], *buf = NULL;
    struct stat st;
    uint64_t txid0 = d->txid;

    fd = main_fd(d);
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = LV_EIO;
        goto out;
    }
    /* A hot journal: SQLite rolls it back through the mount on next open. */
    snprintf(rel, sizeof rel, "%s-journal", d->name);
    int jfd = openat(d->reg->rootfd, rel, O_RDONLY | O_CLOEXEC);
    if (jfd >= 0) {
        uint8_t jm[8];
        if (pread(jfd, jm, 8, 0) == 8 && memcmp(jm, JOURNAL_MAGIC, 8) == 0) {
            d->journal_active = 1;
            LV_WARN("%s: hot journal found; SQLite will roll it back on next open, and litevault logs "
                    "whatever that changes",
                    d->name);
        }
        close(jfd);
        if (d->journal_active)
            goto out;
    }
    snprintf(rel, sizeof rel, "%s-wal", d->name);
    walfd = openat(d->reg->rootfd, rel, O_RDONLY | O_CLOEXEC);
    if (walfd >= 0) {
        rc = wal_scan(walfd, rel, &wh, &cm, &ncm);
        if (rc)
            goto out;
        if (wh.magic) {
            d->wal_valid = 1;
            d->wal_psz = wh.page_size;
            d->wal_salt1 = wh.salt1;
            d->wal_salt2 = wh.salt2;
            d->wal_next = ncm ? cm[ncm - 1].last + 1 : 0;
            d->wal_magic = wh.magic;
        }
    }
    /* (a) Commits in the WAL after the last logged one become records. */
    if (ncm && tail->last_wal_frame && tail->last_wal_salt1 == wh.salt1 && tail->last_wal_salt2 == wh.salt2 &&
        d->map.npages > 0) {
        for (size_t i = 0; i < ncm; i++) {
            if (cm[i].last + 1 <= tail->last_wal_frame)
                continue;
            rc = capture_wal(d, walfd, cm[i].first, cm[i].last, cm[i].db_pages, TXLOG_F_RECOVERED);
            if (rc)
                goto out;
        }
    }
    /* (b) Compare candidate pages of the logical database with the map. */
    uint32_t ps, npages;
    if (ncm) {
        ps = wh.page_size;
        npages = cm[ncm - 1].db_pages;
        rc = overlay_build(walfd, ps, cm[ncm - 1].last + 1, &ov);
        if (rc)
            goto out;
    } else if (st.st_size == 0) {
        ps = d->map.page_size ? d->map.page_size : 4096;
        npages = 0;
    } else {
        rc = read_page(fd, hdr, sizeof hdr, 0);
        if (rc)
            goto out;
        if (!hdr_valid(hdr)) {
            fail(d, "the database file does not start with a valid SQLite header");
            rc = LV_ENOTSQLITE;
            goto out;
        }
        ps = (uint32_t)page_size_from_hdr(hdr);
        npages = logical_pages(hdr, (uint64_t)st.st_size, ps);
    }
    buf = malloc(ps);
    if (!buf) {
        rc = LV_ENOMEM;
        goto out;
    }
    int snapshot = full || d->map.npages == 0 || d->map.page_size != ps;
    if (!snapshot) {
        for (size_t i = 0; i < ov.n; i++)
            dirty_mark(d, (uint64_t)(ov.v[i].pgno - 1) * ps, ps);
        if (npages > d->map.npages)
            dirty_mark(d, (uint64_t)d->map.npages * ps, (uint64_t)(npages - d->map.npages) * ps);
    }
    uint32_t checked = 0;
    for (uint32_t p = 1; p <= npages; p++) {
        if (!snapshot) {
            /* jump to the next candidate granule */
            uint64_t g = (uint64_t)(p - 1) * ps / GRANULE;
            int hit = 0;
            for (uint64_t k = g; k < g + (ps + GRANULE - 1) / GRANULE; k++)
                if (d->dirty_any && k / 64 < d->dirty_words && (d->dirty[k / 64] >> (k % 64) & 1))
                    hit = 1;
            if (!hit)
                continue;
        }
        const struct change *o = overlay_find(&ov, p);
        int sfd = o ? walfd : fd;
        uint64_t off = o ? o->off : (uint64_t)(p - 1) * ps;
        rc = read_page(sfd, buf, ps, off);
        if (rc)
            goto out;
        uint64_t h = cksum_page(p, buf, ps);
        checked++;
        if (!snapshot) {
            uint64_t before = p <= d->map.npages ? cksum_map_get(&d->map, p) : zero_page_cksum(p, ps);
            if (h == before)
                continue;
        }
        rc = changes_add(&c, p, sfd, off, h);
        if (rc)
            goto out;
    }
    if (snapshot) {
        uint64_t total = 0;
        for (size_t i = 0; i < c.n; i++)
            total ^= c.v[i].h;
        if (d->txid > 0 && total == d->map.total && npages == d->map.npages && ps == d->map.page_size) {
            c.n = 0; /* full check found agreement */
        } else if (npages > 0 || d->txid > 0) {
            rc = emit(d, TXLOG_F_SNAPSHOT | (d->txid ? TXLOG_F_RECOVERED : 0), ps, npages, &c, 0, 0, 0);
            if (rc)
                goto out;
            if (txid0 > 0)
                LV_WARN("%s: the database differed from the log; wrote snapshot record TXID %llu", d->name,
                        (unsigned long long)d->txid);
            else
                LV_INFO("%s: first capture of an existing database: snapshot record TXID %llu (%u pages)",
                        d->name, (unsigned long long)d->txid, npages);
        }
    } else if (c.n > 0 || npages != d->map.npages) {
        rc = emit(d, TXLOG_F_RECOVERED, ps, npages, &c, 0, 0, 0);
        if (rc)
            goto out;
        LV_WARN("%s: repaired: %zu pages differed from the log; wrote record TXID %llu", d->name, c.n,
                (unsigned long long)d->txid);
    }
    if (d->txid > txid0)
        rc = txlog_sync(d->log);
    LV_INFO("%s: log agrees with the database at TXID %llu (checked %u pages%s)", d->name,
            (unsigned long long)d->txid, checked, d->txid > txid0 ? ", after repair" : "");
out:
    dirty_clear(d);
    free(c.v);
    free(ov.v);
    free(cm);
    free(buf);
    if (walfd >= 0)
        close(walfd);
    return rc;
}

/* Load an existing SQLite database at start-up.  Failures mark it broken. */
static void db_load(struct db *d)
{
    struct txlog_tail tail;
    char path[PATH_MAX + 8];
    uint8_t sid[16];
    memset(&tail, 0, sizeof tail);
    uint64_t stxid = 0;
    int rc, have_meta, full = 0;
    struct stat st;

    set_metadir(d);
    have_meta = stat(d->metadir, &st) == 0;
    if (!have_meta) {
        if (promote(d) != 0) {
            fail(d, "cannot set up its metadata directory %s", d->metadir);
            return;
        }
        full = 1;
        goto reconcile;
    }
    if (read_id(d) != 0) {
        fail(d, "%s/id is missing or damaged", d->metadir);
        return;
    }
    d->kind = DBK_SQLITE;
    if (open_log(d, &tail) != 0)
        return;
    {
        void *jm = NULL;
        size_t jl = 0;
        snprintf(path, sizeof path, "%s/journal-mode", d->metadir);
        if (sys_read_file(path, &jm, &jl) == 0) {
            for (int i = 1; i < (int)LV_ARRAY_LEN(jmode_names); i++)
                if (jl >= strlen(jmode_names[i]) && strncmp(jm, jmode_names[i], strlen(jmode_names[i])) == 0)
                    d->jmode = d->jmode_saved = (enum jmode)i;
            free(jm);
        }
    }
    cksum_map_init(&d->map);
    snprintf(path, sizeof path, "%s/state", d->metadir);
    rc = cksum_state_load(path, &d->map, sid, &stxid);
    if (rc == 0 && (memcmp(sid, d->id, 16) != 0 || stxid > tail.last_txid)) {
        LV_WARN("%s: state file is ahead of or foreign to the log (TXID %llu > %llu); rebuilding it from the log",
                d->name, (unsigned long long)stxid, (unsigned long long)tail.last_txid);
        cksum_map_free(&d->map);
        cksum_map_init(&d->map);
        rc = LV_ENOENT;
    }
    if (rc != 0) {
        if (rc != LV_ENOENT)
            LV_WARN("%s: state file %s is damaged (%s); rebuilding it from the log", d->name, path,
                    lv_strerror(rc));
        stxid = 0;
        full = 1;
    }
    rc = replay_hashes(d, stxid);
    if (rc == 0 && tail.last_txid && d->map.total != tail.last_post)
        rc = LV_ECORRUPT;
    if (rc) {
        fail(d, "the transaction log does not add up (%s); move %s aside to start a new history",
             lv_strerror(rc), d->metadir);
        return;
    }
    d->txid = tail.last_txid;
    d->last_time = tail.last_time_us;
    d->saved_txid = stxid;
    d->saved_valid = stxid > 0;
    if (tail.torn_bytes)
        full = 0; /* candidates from the log suffice; the WAL covers the rest */
reconcile:
    if (full && d->txid > 0) {
        /* No state: every page the log touched is a candidate already; a
         * snapshot comparison is only needed for a first capture. */
        full = 0;
    }
    rc = reconcile(d, &tail, full || d->txid == 0);
    if (rc && !d->broken)
        fail(d, "start-up reconcile failed: %s", lv_strerror(rc));
}

/* ---------------------------------------------------------------- registry */

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
    pthread_mutex_init(&d->mu, NULL);
    pthread_mutex_init(&d->img_mu, NULL);
    pthread_cond_init(&d->img_cv, NULL);
    cksum_map_init(&d->map);
    return d;
}

static void db_free(struct db *d)
{
    if (d->log)
        txlog_close(d->log);
    if (d->fd >= 0)
        close(d->fd);
    cksum_map_free(&d->map);
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

int db_classify(const char *rel, enum db_filekind *kind, char *dbname, size_t n)
{
    static const struct { const char *suf; enum db_filekind k; } sufs[] = {
        {"-journal", DBF_JOURNAL}, {"-wal", DBF_WAL}, {"-shm", DBF_SHM}};
    size_t len = strlen(rel);
    if (len + 1 > n)
        return -1;
    *kind = DBF_MAIN;
    memcpy(dbname, rel, len + 1);
    for (size_t i = 0; i < LV_ARRAY_LEN(sufs); i++) {
        size_t sl = strlen(sufs[i].suf);
        if (len > sl && strcmp(rel + len - sl, sufs[i].suf) == 0) {
            *kind = sufs[i].k;
            dbname[len - sl] = 0;
            break;
        }
    }
    return 0;
}

/* Scan one directory level of files/ (relative dir rel, "" for the root). */
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
        int fd = main_fd(d);
        if (st.st_size == 0) {
            d->kind = DBK_UNKNOWN;
        } else if (fd >= 0 && pread(fd, h, sizeof h, 0) >= 16 && memcmp(h, SQLITE_MAGIC, 16) == 0) {
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
    r->rootfd = -1;
    r->lockfd = -1;
    pthread_mutex_init(&r->mu, NULL);
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
    pthread_mutex_init(&r->smu, NULL);
    pthread_cond_init(&r->scv, NULL);
    r->syncer_started = pthread_create(&r->syncer, NULL, syncer_main, r) == 0;
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
    dbreg_save_states(r, 1);
    if (r->syncer_started) {
        pthread_mutex_lock(&r->smu);
        r->sstop = 1;
        pthread_cond_broadcast(&r->scv);
        pthread_mutex_unlock(&r->smu);
        pthread_join(r->syncer, NULL);
    }
    for (int b = 0; b < NBUCKETS; b++) {
        struct db *d = r->buckets[b];
        while (d) {
            struct db *n = d->next;
            pthread_mutex_lock(&d->mu);
            if (d->log && d->log_unsynced)
                txlog_sync(d->log);
            pthread_mutex_unlock(&d->mu);
            db_free(d);
            d = n;
        }
    }
    close(r->rootfd);
    close(r->lockfd);
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

/* Move a database's metadata to retired/ (caller holds r->mu). */
static void retire_locked(struct dbreg *r, struct db *d)
{
    char hex[33];
    remove_locked(r, d);
    d->retired = 1;
    pthread_mutex_lock(&d->mu);
    if (d->kind == DBK_SQLITE) {
        if (d->log && d->log_unsynced)
            txlog_sync(d->log);
        hex_id(d->id, hex);
        if (retire_dir(r, d->metadir, hex) == 0)
            LV_INFO("%s: deleted; its log is kept under %s", d->name, r->retired);
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
    pthread_mutex_lock(&r->mu);
    struct db *d = find_locked(r, name);
    if (d) {
        retire_locked(r, d);
        if (d->refs == 0) {
            pthread_mutex_unlock(&r->mu);
            db_free(d);
            return;
        }
    }
    pthread_mutex_unlock(&r->mu);
}

/* Rename one database's entry and metadata (caller holds r->mu). */
static void rename_one_locked(struct dbreg *r, struct db *d, const char *to)
{
    struct db *old = find_locked(r, to);
    if (old && old != d) {
        retire_locked(r, old);
        if (old->refs == 0)
            db_free(old);
    }
    remove_locked(r, d);
    pthread_mutex_lock(&d->mu);
    char *nn = strdup(to);
    if (nn) {
        char oldmeta[PATH_MAX];
        LV_INFO("%s: renamed to %s", d->name, to);
        free(d->name);
        d->name = nn;
        if (d->kind == DBK_SQLITE) {
            memcpy(oldmeta, d->metadir, sizeof oldmeta);
            set_metadir(d);
            if (rename(oldmeta, d->metadir) != 0)
                LV_ERROR("rename %s -> %s: %s", oldmeta, d->metadir, strerror(errno));
        } else {
            set_metadir(d);
        }
    }
    pthread_mutex_unlock(&d->mu);
    insert_locked(r, d);
}

void dbreg_renamed(struct dbreg *r, const char *from, const char *to)
{
    size_t fl = strlen(from);
    pthread_mutex_lock(&r->mu);
    struct db *d = find_locked(r, from);
    if (d) {
        rename_one_locked(r, d, to);
    } else {
        /* A directory: move every database below it. */
        struct db *moved[1024];
        size_t n = 0;
        for (int b = 0; b < NBUCKETS; b++)
            for (struct db *e = r->buckets[b]; e; e = e->next)
                if (strncmp(e->name, from, fl) == 0 && e->name[fl] == '/' && n < LV_ARRAY_LEN(moved))
                    moved[n++] = e;
        for (size_t i = 0; i < n; i++) {
            char nn[PATH_MAX];
            snprintf(nn, sizeof nn, "%s%s", to, moved[i]->name + fl);
            rename_one_locked(r, moved[i], nn);
        }
    }
    pthread_mutex_unlock(&r->mu);
}

void dbreg_save_states(struct dbreg *r, int force)
{
    struct db *list[4096];
    size_t n = 0;
    pthread_mutex_lock(&r->mu);
    for (int b = 0; b < NBUCKETS; b++)
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
        if (jm != JM_UNKNOWN && publish_buf(jpath, jmode_names[jm], strlen(jmode_names[jm])) == 0) {
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

void dbreg_sync_logs(struct dbreg *r)
{
    pthread_mutex_lock(&r->mu);
    for (int b = 0; b < NBUCKETS; b++)
        for (struct db *d = r->buckets[b]; d; d = d->next) {
            pthread_mutex_lock(&d->mu);
            if (d->kind == DBK_SQLITE && !d->broken && d->log_unsynced) {
                if (txlog_sync(d->log) == 0)
                    d->log_unsynced = 0;
                else
                    fail(d, "fsync of the transaction log failed");
            }
            pthread_mutex_unlock(&d->mu);
        }
    pthread_mutex_unlock(&r->mu);
}

char *dbreg_status_json(struct dbreg *r)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&r->mu);
    for (int b = 0; b < NBUCKETS; b++)
        for (struct db *d = r->buckets[b]; d; d = d->next) {
            char hex[17], t[40], idh[33];
            pthread_mutex_lock(&d->mu);
            if (d->kind == DBK_SQLITE || d->broken) {
                json_t *o = json_object();
                hex_id(d->id, idh);
                json_object_set_new(o, "name", json_string(d->name));
                json_object_set_new(o, "id", json_string(idh));
                json_object_set_new(o, "txid", json_integer((json_int_t)d->txid));
                json_object_set_new(o, "checksum", json_string(cksum_hex(d->map.total, hex)));
                json_object_set_new(o, "page_size", json_integer(d->map.page_size));
                json_object_set_new(o, "pages", json_integer(d->map.npages));
                enum jmode jm = d->jmode ? d->jmode : (d->hdr_wal ? JM_WAL : JM_UNKNOWN);
                json_object_set_new(o, "journal_mode", json_string(jmode_names[jm]));
                json_object_set_new(o, "last_commit",
                                    d->txid ? json_string(lv_fmt_time(d->last_time, t, sizeof t)) : json_null());
                json_object_set_new(o, "last_commit_us", json_integer(d->last_time));
                json_object_set_new(o, "status", json_string(d->broken ? "broken" : "ok"));
                if (d->broken)
                    json_object_set_new(o, "error", json_string(d->why));
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

int dbreg_list(struct dbreg *r, struct db_info **out, size_t *n)
{
    struct db_info *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = 0;

    pthread_mutex_lock(&r->mu);
    for (int b = 0; b < NBUCKETS && rc == 0; b++)
        for (struct db *d = r->buckets[b]; d && rc == 0; d = d->next) {
            if (cnt == cap) {
                size_t nc = cap ? cap * 2 : 16;
                struct db_info *nv = realloc(v, nc * sizeof *nv);
                if (!nv) {
                    rc = LV_ENOMEM;
                    break;
                }
                v = nv;
                cap = nc;
            }
            pthread_mutex_lock(&d->mu);
            if (d->kind == DBK_SQLITE || d->broken) {
                struct db_info *i = &v[cnt++];
                memset(i, 0, sizeof *i);
                snprintf(i->name, sizeof i->name, "%s", d->name);
                memcpy(i->id, d->id, 16);
                snprintf(i->logdir, sizeof i->logdir, "%s/log", d->metadir);
                i->txid = d->txid;
                i->time_us = d->last_time;
                i->page_size = d->map.page_size;
                i->db_pages = d->map.npages;
                i->cksum = d->map.total;
                i->saved_txid = d->saved_valid ? d->saved_txid : 0;
                i->broken = d->broken;
            }
            pthread_mutex_unlock(&d->mu);
        }
    pthread_mutex_unlock(&r->mu);
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
    };
    for (size_t m = 0; m < LV_ARRAY_LEN(names) && rc == 0; m++) {
        rc = metrics_appendf(buf, len, cap, "# HELP %s %s\n# TYPE %s %s\n", names[m][0], names[m][2], names[m][0],
                             names[m][1]);
        pthread_mutex_lock(&r->mu);
        for (int b = 0; b < NBUCKETS && rc == 0; b++)
            for (struct db *d = r->buckets[b]; d && rc == 0; d = d->next) {
                pthread_mutex_lock(&d->mu);
                if (d->kind == DBK_SQLITE || d->broken) {
                    uint64_t v[] = {d->txid, d->commits, d->bytes_logged, d->pages_logged, d->map.npages,
                                    d->refused, (uint64_t)d->broken, d->ckpt_mismatch};
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

/* ---------------------------------------------------------------- FUSE hooks */

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
            is_sqlite = memcmp(b, SQLITE_MAGIC, 16) == 0;
        else {
            uint8_t h[16];
            int fd = main_fd(d);
            is_sqlite = fd >= 0 && pread(fd, h, 16, 0) == 16 && memcmp(h, SQLITE_MAGIC, 16) == 0;
        }
        if (!is_sqlite) {
            d->kind = DBK_PLAIN;
            LV_INFO("%s is not a SQLite database: stored as a plain file, without capture", d->name);
            return 0;
        }
    } else if (kind == DBF_JOURNAL) {
        if (!(off == 0 && len >= 8 && memcmp(b, JOURNAL_MAGIC, 8) == 0))
            return 0;
    } else if (kind == DBF_WAL) {
        if (!(off == 0 && len >= 4 && (lv_get32(b) == WAL_MAGIC_LE || lv_get32(b) == WAL_MAGIC_BE)))
            return 0;
    } else {
        return 0;
    }
    int rc = promote(d);
    if (rc)
        fail(d, "cannot start its transaction log (%s)", lv_strerror(rc));
    return rc;
}

static ssize_t write_main(struct db *d, int fd, const void *buf, size_t len, off_t off)
{
    if (off < 100) {
        uint8_t h[100];
        int rfd = main_fd(d); /* the writer's fd may be write-only */
        if (rfd < 0 || read_page(rfd, h, sizeof h, 0) != 0)
            return -EIO;
        size_t n = (size_t)(100 - off) < len ? (size_t)(100 - off) : len;
        memcpy(h + off, buf, n);
        struct stat st;
        int was_empty = fstat(fd, &st) == 0 && st.st_size == 0;
        if ((off == 0 || !was_empty) && !hdr_valid(h) && !(off > 0 && len + (size_t)off < 16)) {
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
        if (dirty_mark(d, (uint64_t)off, len) != 0)
            return -ENOMEM;
        return do_pwrite(fd, buf, len, off);
    }
    if (d->hdr_wal && d->map.npages > 0) {
        /* A checkpoint: the pages are already logged.  Remember them so
         * that ckpt_verify can check them once the WAL is fully copied.
         * (A file with no logged pages whose header says WAL is being
         * copied in -- cp of a WAL-mode database -- and takes the
         * unjournaled path below.) */
        if (dirty_mark(d, (uint64_t)off, len) != 0)
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
    if (dirty_mark(d, (uint64_t)off, len) != 0)
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
    if (read_page(k->fd, k->buf, ps, off) != 0)
        return LV_EIO;
    uint64_t h = cksum_page(p, k->buf, ps);
    if (h == cksum_map_get(&d->map, p))
        return 0;
    if (k->c.n < 5)
        LV_ERROR("%s: page %u copied into the database by a checkpoint differs from the logged page (TXID %llu)",
                 d->name, p, (unsigned long long)d->txid);
    return changes_add(&k->c, p, k->fd, off, h);
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
    struct ckpt_ctx k = {d, main_fd(d), malloc(d->map.page_size), {0}, d->map.npages};
    if (k.fd >= 0 && fstat(k.fd, &st) == 0 && st.st_size >= 100 && read_page(k.fd, hdr, sizeof hdr, 0) == 0 &&
        hdr_valid(hdr) && (uint32_t)page_size_from_hdr(hdr) == d->map.page_size)
        k.npages = logical_pages(hdr, (uint64_t)st.st_size, d->map.page_size);
    if (k.fd >= 0 && k.buf && dirty_pages(d, d->map.page_size, ckpt_page, &k) == 0 && k.c.n) {
        d->ckpt_mismatch += k.c.n;
        LV_ERROR("%s: %zu checkpointed pages disagree with the log: the WAL lost committed frames behind SQLite's "
                 "back; logging the database as it now is",
                 d->name, k.c.n);
        dirty_clear(d);
        emit(d, TXLOG_F_RECOVERED, d->map.page_size, k.npages, &k.c, 0, 0, 0);
    }
    free(k.c.v);
    free(k.buf);
    dirty_clear(d);
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
    if (d->broken || capture_rollback(d, 0) != 0)
        return -EIO;
    d->journal_active = 0;
    d->jmode = jm;
    d->sync_pending = 0;
    return 0;
}

ssize_t db_on_write(struct db *d, enum db_filekind kind, int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n;
    int rc;
    if (kind == DBF_SHM)
        return do_pwrite(fd, buf, len, off);
    pthread_mutex_lock(&d->mu);
    if (d->broken) {
        n = -EIO;
        goto out_unlock;
    }
    if (settle_kind(d, kind, buf, len, off) != 0) {
        n = -EIO;
        goto out_unlock;
    }
    if (d->kind != DBK_SQLITE) {
        n = do_pwrite(fd, buf, len, off);
        goto out_unlock;
    }
    if ((kind == DBF_WAL || kind == DBF_JOURNAL) && __atomic_load_n(&d->reg->log_full, __ATOMIC_RELAXED)) {
        /* data.max-log-size reached (archive lagging): no new transaction
         * may start, so no record is ever dropped.  SQLite sees SQLITE_FULL. */
        d->refused++;
        n = -ENOSPC;
        goto out_unlock;
    }
    switch (kind) {
    case DBF_MAIN:
        img_cow_main(d, (uint64_t)off, len);
        n = write_main(d, fd, buf, len, off);
        break;
    case DBF_JOURNAL:
        if (off == 0 && len >= 8) {
            const uint8_t *b = buf;
            static const uint8_t zero8[8];
            if (memcmp(b, JOURNAL_MAGIC, 8) == 0) {
                if (d->bulk && !d->journal_active) {
                    if (capture_rollback(d, 0) != 0) {
                        n = -EIO;
                        break;
                    }
                    d->bulk = 0;
                }
                if (d->ckpt_dirty) {
                    dirty_clear(d);
                    d->ckpt_dirty = 0;
                }
                d->journal_active = 1;
            } else if (memcmp(b, zero8, 8) == 0 && d->journal_active) {
                /* PERSIST (or exclusive mode) commit: log, then zero the header. */
                n = journal_commit(d, JM_PERSIST);
                if (n)
                    break;
            }
        }
        n = do_pwrite(fd, buf, len, off);
        break;
    case DBF_WAL:
        img_cow_wal(d, (uint64_t)off);
        if (d->bulk && !d->journal_active) {
            if (capture_rollback(d, 0) != 0) {
                n = -EIO;
                break;
            }
            d->bulk = 0;
        }
        n = do_pwrite(fd, buf, len, off);
        if (n < 0)
            break;
        d->jmode = JM_WAL;
        if (off == 0 && len >= WAL_HDR_SIZE) {
            struct wal_hdr wh;
            if (wal_hdr_decode(buf, &wh) == 0) {
                ckpt_verify(d);
                d->wal_valid = 1;
                d->wal_psz = wh.page_size;
                d->wal_salt1 = wh.salt1;
                d->wal_salt2 = wh.salt2;
                d->wal_next = 0;
                d->wal_magic = wh.magic;
            }
        } else if (d->wal_valid && off >= WAL_HDR_SIZE) {
            /* The commit is complete when either (a) a write ends at the
             * last byte of a commit frame, or (b) a write is exactly the
             * 24-byte header of a commit frame whose page is already in:
             * after an in-place overwrite SQLite writes later frames with
             * zeroed salts and then rewrites their headers
             * (walRewriteChecksums), so that header rewrite is the commit.
             * For (b) the header's cumulative checksum must verify against
             * the page bytes in the file, as SQLite's recovery would check:
             * a header written over a stale frame (left by a rolled-back
             * transaction) before its new page arrives does not verify. */
            uint64_t fsz = WAL_FRAME_HDR_SIZE + d->wal_psz;
            uint64_t end = (uint64_t)off + len, rel0 = (uint64_t)off - WAL_HDR_SIZE;
            uint32_t k = UINT32_MAX;
            int hdr_only = 0;
            if ((end - WAL_HDR_SIZE) % fsz == 0) {
                k = (uint32_t)((end - WAL_HDR_SIZE) / fsz - 1);
            } else if (len == WAL_FRAME_HDR_SIZE && rel0 % fsz == 0) {
                k = (uint32_t)(rel0 / fsz);
                hdr_only = 1;
            }
            uint8_t fh[WAL_FRAME_HDR_SIZE];
            if (k != UINT32_MAX && k >= d->wal_next &&
                sys_pread_all(fd, fh, sizeof fh, (off_t)wal_frame_off(k, d->wal_psz), d->name) == 0 &&
                (!hdr_only || (lv_get32(fh + 4) && lv_get32(fh + 8) == d->wal_salt1 &&
                               wal_frame_valid(fd, d->wal_magic, d->wal_psz, k, fh)))) {
                uint32_t commit = lv_get32(fh + 4);
                if (commit && lv_get32(fh + 8) == d->wal_salt1 && lv_get32(fh + 12) == d->wal_salt2) {
                    rc = capture_wal(d, fd, d->wal_next, k, commit, 0);
                    if (rc) {
                        n = -EIO;
                        break;
                    }
                    d->wal_next = k + 1;
                }
            }
        }
        break;
    default:
        n = do_pwrite(fd, buf, len, off);
    }
    if (n == -ENOSPC || n == -EDQUOT) {
        /* The file system under data.dir is full: SQLite fails (and rolls back)
         * this transaction with SQLITE_FULL.  Say so, at most every 10 s. */
        int64_t now = lv_mono_us();
        if (!d->nospace_warn_us || now - d->nospace_warn_us >= 10000000) {
            d->nospace_warn_us = now;
            LV_ERROR("%s: writing its %s in %s failed: %s; the application's transaction fails "
                     "(SQLITE_FULL), committed transactions are kept; free space there",
                     d->name, kind == DBF_WAL ? "WAL" : kind == DBF_JOURNAL ? "rollback journal" : "file",
                     d->reg->files, strerror(-(int)n));
        }
    }
out_unlock:
    img_serve(d);
    pthread_mutex_unlock(&d->mu);
    return n;
}

int db_on_truncate(struct db *d, enum db_filekind kind, int fd, const char *rel, off_t size)
{
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    if (d->broken && kind != DBF_SHM) {
        rc = -EIO;
        goto out_unlock;
    }
    if (d->kind == DBK_SQLITE) {
        if (kind == DBF_MAIN)
            img_cow_main(d, (uint64_t)size, 0);
        else if (kind == DBF_WAL)
            img_cow_wal(d, (uint64_t)size);
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
            d->wal_valid = 0;
        }
    }
    if (fd >= 0 ? ftruncate(fd, size) : trunc_at(d->reg->rootfd, rel, size))
        rc = -errno;
out_unlock:
    img_serve(d);
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int db_on_unlink(struct db *d, enum db_filekind kind, const char *rel)
{
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    if (d->kind == DBK_SQLITE && kind == DBF_JOURNAL && d->journal_active) {
        rc = journal_commit(d, JM_DELETE);
        if (rc)
            goto out_unlock;
    }
    if (kind == DBF_WAL) {
        ckpt_verify(d);
        d->wal_valid = 0;
    }
    if (unlinkat(d->reg->rootfd, rel, 0) != 0)
        rc = -errno;
out_unlock:
    img_serve(d);
    pthread_mutex_unlock(&d->mu);
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
    if (d->kind == DBK_SQLITE && d->bulk && !d->journal_active && !d->broken) {
        if (capture_rollback(d, 0) != 0)
            rc = -EIO;
        else
            d->bulk = 0;
    }
    img_serve(d);
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int db_on_fsync(struct db *d, enum db_filekind kind, int fd, int datasync)
{
    int rc = 0, log_rc = 0, synced = 0;
    pthread_mutex_lock(&d->mu);
    if (d->kind == DBK_SQLITE && !d->broken) {
        if (kind == DBF_MAIN && d->bulk && !d->journal_active) {
            if (capture_rollback(d, 0) != 0) {
                rc = -EIO;
                goto out_unlock;
            }
            d->bulk = 0;
        }
        if (d->journal_active)
            d->sync_pending = 1;
        if (d->log_unsynced) {
            rc = sync_both(d, fd, datasync, &log_rc);
            synced = 1;
            if (log_rc != 0) {
                fail(d, "fsync of the transaction log failed");
                rc = -EIO;
                goto out_unlock;
            }
            d->log_unsynced = 0;
        }
    }
out_unlock:
    img_serve(d);
    pthread_mutex_unlock(&d->mu);
    if (rc == 0 && !synced && (datasync ? fdatasync(fd) : fsync(fd)) != 0)
        rc = -errno;
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
