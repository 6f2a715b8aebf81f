/*
 * txlog_apply.c -- applying records to a database file, and txlog_replay.
 *
 * txlog_apply_* is the one implementation of "apply a record to a database
 * file" (continuity, chain, page-size rule, pwrite of pages, truncate, post
 * checksum, final re-read), shared by txlog_replay and by the archive
 * restore (restore/restore.c), which feeds it records from in-memory
 * segment objects.  A replica will apply streamed records with it too.
 *
 * STATES of struct txlog_apply (assert_apply_state checks them):
 *   EMPTY   (have 0, dirty 0)   nothing applied; the file is empty
 *   APPLIED (have 1, dirty 0)   the file is the database just after TXID
 *           done, and map.total == post (A1)
 *   DIRTY   (dirty 1)           a record failed after the file may have
 *           changed: every later record is refused (LV_EBROKEN)
 *   txlog_apply_record moves EMPTY/APPLIED -> APPLIED (ok) or -> DIRTY
 *   (failed after its first write); a failure before any write leaves the
 *   state as it was.
 * Invariants:
 *   A1. APPLIED: map.total == post, and map describes the file's pages.
 *   A2. Records are applied in TXID order with no gap, each one's pre
 *       checksum equal to the database checksum before it (L1, L2 of
 *       txlog.c); the first one is TXID 1 or a snapshot.
 *   A3. The page size changes only in a snapshot, or while the database
 *       is empty.
 *
 * txlog_replay rebuilds a database from a log directory and publishes it
 * with publish.h (temporary file, fsync, rename, directory fsync), after
 * txlog_apply_finish re-read and verified what reached the file.
 */
#include "log/txlog.h"
#include "log/txlog_impl.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/publish.h"
#include "base/sys.h"

/* Coalesces runs of consecutive pages into one pwrite. */
struct runbuf {
    int fd;               /* output file */
    const char *path;     /* its path */
    uint32_t ps;          /* page size */
    uint32_t first;       /* first page of the pending run (0: none) */
    uint32_t n;           /* pages pending */
    uint8_t *buf;         /* TXLOG_IO_CHUNK bytes */
    uint64_t unkicked;    /* bytes written since writeback was last started */
    uint64_t written;     /* page bytes written in all */
    void (*progress)(void *arg, uint64_t bytes); /* told every 8 MiB (txlog_apply_set_progress), or NULL */
    void *progress_arg;   /* its argument */
};

static int run_flush(struct runbuf *rb)
{
    int rc = 0;

    if (rb->n) {
        rc = sys_pwrite_all(rb->fd, rb->buf, (size_t)rb->n * rb->ps, (off_t)(rb->first - 1) * rb->ps, rb->path);
        /* Start writeback every 8 MiB while applying goes on, so the final
         * fsync has little left to write (advisory; errors show at fsync). */
        rb->unkicked += (uint64_t)rb->n * rb->ps;
        rb->written += (uint64_t)rb->n * rb->ps;
        if (rc == 0 && rb->unkicked >= (8u << 20)) {
            (void)sync_file_range(rb->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
            rb->unkicked = 0;
            if (rb->progress)
                rb->progress(rb->progress_arg, rb->written);
        }
    }
    rb->n = 0;
    rb->first = 0;
    return rc;
}

static int run_add(struct runbuf *rb, uint32_t pgno, const void *data)
{
    int rc;

    if (rb->n && (pgno != rb->first + rb->n || (size_t)(rb->n + 1) * rb->ps > TXLOG_IO_CHUNK)) {
        rc = run_flush(rb);
        if (rc)
            return rc;
    }
    if (!rb->n)
        rb->first = pgno;
    memcpy(rb->buf + (size_t)rb->n * rb->ps, data, rb->ps);
    rb->n++;
    return 0;
}

static int rp_fail(char *err, size_t errlen, struct txlog_reader *r, uint64_t txid, int rc, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int rp_fail(char *err, size_t errlen, struct txlog_reader *r, uint64_t txid, int rc, const char *fmt, ...)
{
    char what[256];
    uint64_t off = 0;
    const char *where = r ? txlog_reader_where(r, &off) : "?";
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (err && errlen)
        snprintf(err, errlen, "%s: offset %" PRIu64 ": TXID %" PRIu64 ": %s", where, off, txid, what);
    LV_ERROR("replay: %s: offset %" PRIu64 ": TXID %" PRIu64 ": %s", where, off, txid, what);
    return rc;
}

/* The database being rebuilt.  No lock: one thread (the caller's). */
struct txlog_apply {
    struct runbuf rb;       /* output fd, path and write coalescing */
    struct cksum_map map;   /* page checksums of the file as built */
    int have;               /* a record was applied */
    int dirty;              /* a failed record may have changed the file */
    uint64_t done;          /* TXID of the last applied record */
    uint64_t post;          /* its post checksum */
    int64_t time_us;        /* its commit time */
};

/* The states and A1 of the design comment.  O(1). */
static void assert_apply_state(const struct txlog_apply *a)
{
    LV_ASSERT(a->have || a->dirty || (a->done == 0 && a->map.total == 0)); /* EMPTY */
    LV_ASSERT(!a->have || a->done > 0);
    LV_ASSERT(a->dirty || !a->have || a->map.total == a->post); /* A1 */
}

void txlog_apply_set_progress(struct txlog_apply *a, void (*fn)(void *arg, uint64_t bytes), void *arg)
{
    a->rb.progress = fn;
    a->rb.progress_arg = arg;
}

int txlog_apply_open(int fd, const char *path, struct txlog_apply **out)
{
    struct txlog_apply *a = calloc(1, sizeof(*a));

    *out = NULL;
    if (!a)
        return LV_ENOMEM;
    a->rb.buf = malloc(TXLOG_IO_CHUNK);
    if (!a->rb.buf) {
        free(a);
        return LV_ENOMEM;
    }
    a->rb.fd = fd;
    a->rb.path = path;
    cksum_map_init(&a->map);
    *out = a;
    return 0;
}

void txlog_apply_close(struct txlog_apply *a)
{
    if (!a)
        return;
    cksum_map_free(&a->map);
    free(a->rb.buf);
    free(a);
}

void txlog_apply_state(const struct txlog_apply *a, struct txlog_apply_info *info)
{
    info->have = a->have;
    info->dirty = a->dirty;
    info->txid = a->done;
    info->post_cksum = a->post;
    info->time_us = a->time_us;
    info->page_size = a->map.page_size;
    info->db_pages = a->map.npages;
    info->db_cksum = a->map.total;
}

const struct cksum_map *txlog_apply_map(const struct txlog_apply *a)
{
    return &a->map;
}

/* May h be applied next (A2, A3)?  0, or the error (reported). */
static int apply_check(const struct txlog_apply *a, struct txlog_reader *r, const struct txlog_hdr *h, char *err,
                       size_t errlen)
{
    int snap = (h->flags & TXLOG_F_SNAPSHOT) != 0;

    if (a->dirty)
        return rp_fail(err, errlen, r, h->txid, LV_EBROKEN, "an earlier record failed while being applied");
    if (!a->have) {
        if (h->txid != 1 && !snap)
            return rp_fail(err, errlen, r, h->txid, LV_ECORRUPT,
                           "log starts at TXID %" PRIu64 ", which is neither TXID 1 nor a snapshot", h->txid);
    } else if (h->txid != a->done + 1) {
        return rp_fail(err, errlen, r, h->txid, LV_EGAP, "TXID gap: expected TXID %" PRIu64, a->done + 1);
    }
    if ((a->have || !snap) && h->pre_cksum != a->map.total)
        return rp_fail(err, errlen, r, h->txid, LV_ECHAIN,
                       "checksum chain break: pre checksum %016" PRIx64 " != database checksum %016" PRIx64,
                       h->pre_cksum, a->map.total);
    if (!snap && a->map.page_size && a->map.npages && a->map.page_size != h->page_size)
        return rp_fail(err, errlen, r, h->txid, LV_ECORRUPT,
                       "page size changes from %u to %u outside a snapshot record", a->map.page_size, h->page_size);
    return 0;
}

/* Write the pages of h from r into the file and the map, then cut the
 * file to h's size.  0 or negative (the reader's message in err). */
static int apply_pages(struct txlog_apply *a, struct txlog_reader *r, const struct txlog_hdr *h, char *err,
                       size_t errlen)
{
    uint32_t pgno;
    const void *data;
    int rc;

    if (h->flags & TXLOG_F_SNAPSHOT) {
        rc = sys_ftruncate(a->rb.fd, 0, a->rb.path);
        if (rc)
            return rc;
        cksum_map_reset(&a->map, h->page_size);
    } else if (a->map.page_size != h->page_size) {
        cksum_map_reset(&a->map, h->page_size); /* empty database: any page size (A3) */
    }
    a->rb.ps = h->page_size;
    rc = cksum_map_resize(&a->map, h->db_pages);
    if (rc)
        return rc;
    while ((rc = txlog_reader_page(r, &pgno, &data)) == 0) {
        cksum_map_set(&a->map, pgno, cksum_page(pgno, data, h->page_size));
        rc = run_add(&a->rb, pgno, data);
        if (rc)
            return rc;
    }
    if (rc != LV_ENOENT) {
        lv_seterr(err, errlen, "%s", txlog_reader_error(r)[0] ? txlog_reader_error(r) : lv_strerror(rc));
        return rc;
    }
    rc = run_flush(&a->rb);
    if (!rc)
        rc = sys_ftruncate(a->rb.fd, (off_t)h->db_pages * h->page_size, a->rb.path);
    return rc;
}

int txlog_apply_record(struct txlog_apply *a, struct txlog_reader *r, const struct txlog_hdr *h, char *err,
                       size_t errlen)
{
    int rc;

    assert_apply_state(a);
    rc = apply_check(a, r, h, err, errlen);
    if (rc)
        return rc;
    a->dirty = 1; /* from here on the file may change: EMPTY/APPLIED -> DIRTY until the end */
    rc = apply_pages(a, r, h, err, errlen);
    if (rc)
        return rc;
    if (a->map.total != h->post_cksum)
        return rp_fail(err, errlen, r, h->txid, LV_EMISMATCH,
                       "database checksum %016" PRIx64 " after applying differs from post checksum %016" PRIx64,
                       a->map.total, h->post_cksum);
    a->dirty = 0; /* -> APPLIED */
    a->have = 1;
    a->done = h->txid;
    a->post = h->post_cksum;
    a->time_us = h->time_us;
    assert_apply_state(a);
    return 0;
}

int txlog_apply_finish(struct txlog_apply *a, char *err, size_t errlen)
{
    struct cksum_map check;
    const char *tmp = a->rb.path;
    int rc;

    if (!a->have || a->dirty) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", tmp, a->dirty ? "a record failed while being applied" : "no records applied");
        return a->dirty ? LV_EBROKEN : LV_ENOENT;
    }
    cksum_map_init(&check);
    rc = sys_fsync(a->rb.fd, 0, tmp);
    if (rc)
        goto out;
    /* Verify what reached the file, not just what we meant to write. */
    rc = cksum_map_scan_fd(&check, a->rb.fd, a->map.page_size ? a->map.page_size : 4096, a->map.npages, tmp);
    if (rc)
        goto out;
    if (check.total != a->post) {
        rc = LV_EMISMATCH;
        if (err && errlen)
            snprintf(err, errlen, "%s: database checksum %016" PRIx64 " of the written file differs from %016" PRIx64
                     " at TXID %" PRIu64, tmp, check.total, a->post, a->done);
    }
out:
    cksum_map_free(&check);
    return rc;
}

/* Apply the records of r up to target_txid (0: all) onto a.  0, or an
 * error with its message in err (log inconsistencies are LV_ECORRUPT). */
static int replay_records(struct txlog_apply *a, struct txlog_reader *r, uint64_t target_txid, char *err,
                          size_t errlen)
{
    struct txlog_apply_info st;
    struct txlog_hdr h;
    int rc;

    for (;;) {
        txlog_apply_state(a, &st);
        if (st.have && target_txid && st.txid == target_txid)
            return 0;
        rc = txlog_reader_next(r, &h);
        if (rc == LV_ENOENT)
            return 0;
        if (rc) {
            lv_seterr(err, errlen, "%s", txlog_reader_error(r)[0] ? txlog_reader_error(r) : lv_strerror(rc));
            return rc;
        }
        if (!st.have && h.txid != 1 && !(h.flags & TXLOG_F_SNAPSHOT))
            return rp_fail(err, errlen, r, h.txid, LV_ECORRUPT,
                           "log starts at TXID %" PRIu64 ", which is neither TXID 1 nor a snapshot (older "
                           "records were pruned after they were archived: use `litevault restore` to rebuild "
                           "the database from the archive)", h.txid);
        if (!st.have && target_txid && h.txid > target_txid)
            return rp_fail(err, errlen, r, h.txid, LV_ENOENT,
                           "target TXID %" PRIu64 " is before the first TXID %" PRIu64 " in the log", target_txid,
                           h.txid);
        rc = txlog_apply_record(a, r, &h, err, errlen);
        if (rc == LV_EGAP || rc == LV_ECHAIN || rc == LV_EMISMATCH)
            rc = LV_ECORRUPT; /* replay reports every log inconsistency as corruption */
        if (rc)
            return rc;
    }
}

/* Did the replay reach what was asked?  0, or LV_ENOENT with a message. */
static int replay_reached(const struct txlog_apply_info *st, const char *dir, uint64_t target_txid, char *err,
                          size_t errlen)
{
    if (!st->have) {
        char base[4200];
        snprintf(base, sizeof base, "%s/base", dir);
        lv_seterr(err, errlen, "%s: log holds no records%s", dir,
                  access(base, F_OK) == 0 ? " (a database seeded from an archive: its history is there; use "
                                            "`litevault restore`)" : "");
        return LV_ENOENT;
    }
    if (target_txid && st->txid != target_txid) {
        lv_seterr(err, errlen, "%s: target TXID %" PRIu64 " is beyond the last TXID %" PRIu64 " in the log", dir,
                  target_txid, st->txid);
        return LV_ENOENT;
    }
    return 0;
}

int txlog_replay(const char *dir, uint64_t target_txid, const char *out_path, uint64_t *txid_out,
                 uint64_t *cksum_out, char *err, size_t errlen)
{
    struct txlog_reader *r = NULL;
    struct txlog_apply *a = NULL;
    struct txlog_apply_info st;
    struct publish pub;
    int rc;

    lv_seterr(err, errlen, "%s", "");
    rc = txlog_reader_open(dir, 0, &r);
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot read log: %s", dir, rc == LV_ENOENT ? "log is empty" : lv_strerror(rc));
        return rc;
    }
    rc = publish_begin(&pub, out_path, 0644);
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot create: %s", out_path, lv_strerror(rc));
        goto out_close_reader;
    }
    rc = txlog_apply_open(pub.fd, pub.tmp, &a);
    if (!rc)
        rc = replay_records(a, r, target_txid, err, errlen);
    if (!rc) {
        txlog_apply_state(a, &st);
        rc = replay_reached(&st, dir, target_txid, err, errlen);
    }
    if (!rc)
        rc = txlog_apply_finish(a, err, errlen);
    if (rc)
        goto out_abort_publish;
    rc = publish_commit(&pub);
    if (rc) {
        if (err && errlen && !err[0])
            snprintf(err, errlen, "%s: cannot publish: %s", out_path, lv_strerror(rc));
        goto out_abort_publish;
    }
    if (txid_out)
        *txid_out = st.txid;
    if (cksum_out)
        *cksum_out = st.post_cksum;
    goto out_close_apply;

out_abort_publish:
    if (err && errlen && !err[0])
        snprintf(err, errlen, "replay of %s failed: %s", dir, lv_strerror(rc));
    publish_abort(&pub);
out_close_apply:
    txlog_apply_close(a);
out_close_reader:
    txlog_reader_close(r);
    return rc;
}
