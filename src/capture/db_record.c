/*
 * db_record.c -- turning a committed transaction into one log record.
 *
 * A record holds the final content of each page whose checksum differs
 * from the checksum map, the database size and the database checksum
 * before and after (the design is in db.c).  db_capture_rollback collects
 * the dirty pages of the main file (rollback journal and bulk commits),
 * db_capture_wal the pages of a WAL transaction (the last frame of a page
 * wins); both hand them to db_emit, which writes the record and moves the
 * map, the TXID and the counters to the state just after it.
 *
 * db_emit checks C4 and C5 of db.c: the record continues the map's state
 * (pre checksum == map.total, TXID + 1), and after it the map's total is
 * its post checksum.  Every function here runs with d->mu held, inside the
 * FUSE request that commits (C2) or at start-up.
 */
#include "capture/db.h"
#include "capture/db_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/cksum.h"
#include "base/dbhdr.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"
#include "log/txlog.h"
#include "log/wal.h"

/* The database checksum after applying the sorted changes c to the map's
 * state, leaving db_pages pages of size ps. */
static uint64_t emit_post(const struct db *d, uint16_t flags, uint32_t ps, uint32_t db_pages,
                          const struct changes *c)
{
    uint64_t post = 0;

    if (flags & TXLOG_F_SNAPSHOT) {
        for (size_t i = 0; i < c->n; i++)
            post ^= c->v[i].h;
        return post;
    }
    /* Start from the map and apply removals, growth and changes. */
    post = d->map.total;
    for (uint32_t p = db_pages + 1; p <= d->map.npages; p++)
        post ^= cksum_map_get(&d->map, p);
    for (uint32_t p = d->map.npages + 1; p <= db_pages; p++)
        post ^= db_zero_page_cksum(p, ps);
    for (size_t i = 0; i < c->n; i++)
        post ^= db_map_before(d, c->v[i].pgno, ps) ^ c->v[i].h;
    return post;
}

/* Append the record h with the pages of c, read back from their files and
 * checked against their checksums.  buf: ps bytes of scratch. */
static int emit_append(struct db *d, const struct txlog_hdr *h, const struct changes *c, uint8_t *buf)
{
    uint32_t ps = h->page_size;
    int rc = txlog_append_begin(d->log, h);

    for (size_t i = 0; i < c->n && rc == 0; i++) {
        rc = db_read_mem(c->v[i].fd, buf, ps, c->v[i].off, c->mem, c->mem_fd);
        if (rc == 0 && cksum_page(c->v[i].pgno, buf, ps) != c->v[i].h) {
            LV_ERROR("%s: page %u changed while it was being logged", d->name, c->v[i].pgno);
            rc = LV_EMISMATCH;
        }
        if (rc == 0)
            rc = txlog_append_page(d->log, c->v[i].pgno, buf);
        if (rc)
            txlog_append_abort(d->log);
    }
    return rc ? rc : txlog_append_end(d->log);
}

/* The last record this thread logged and has not yet waited for
 * (dbreg_commit_wait): an application's commit is one FUSE operation on
 * one thread, and the wait runs on that thread before the kernel hears
 * the operation's result. */
static __thread struct {
    struct dbreg *reg;   /* its registry, NULL: nothing pending */
    char name[1024];     /* its database */
    uint64_t txid;       /* its TXID */
    struct db *presync;  /* the database whose -wal to pre-sync during the wait (db_presync_arm), or
                          * NULL; the FUSE request's open handle keeps it alive */
    int presync_fd;      /* the -wal's descriptor, from that handle */
} t_logged;

/* The record h (changes c) is in the log: move the map, the TXID and the
 * counters to the state just after it.  0, or an error that broke d. */
static int emit_advance(struct db *d, const struct txlog_hdr *h, const struct changes *c)
{
    if (h->flags & TXLOG_F_SNAPSHOT || d->map.page_size != h->page_size)
        cksum_map_reset(&d->map, h->page_size);
    if (cksum_map_resize(&d->map, h->db_pages) != 0) {
        db_fail(d, "out of memory growing the checksum map");
        return LV_ENOMEM;
    }
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].pgno <= h->db_pages)
            cksum_map_set(&d->map, c->v[i].pgno, c->v[i].h);
    if (d->map.total != h->post_cksum) {
        db_fail(d, "internal checksum mismatch after TXID %llu", (unsigned long long)h->txid);
        return LV_EMISMATCH;
    }
    if (d->durable_txid >= d->txid)
        d->undurable_mono = lv_mono_us(); /* the oldest record not durable yet */
    d->recs_since_wal_fsync++;
    d->txid = h->txid;
    d->last_time = h->time_us;
    d->commits++;
    d->pages_logged += c->n;
    d->bytes_logged += (uint64_t)c->n * h->page_size;
    d->log_unsynced = 1;
    d->tail_in_wal = h->wal_frame != 0; /* db_capture_wal's records name the current WAL generation */
    LV_ASSERT(d->map.total == h->post_cksum && txlog_last_txid(d->log) == d->txid); /* C4 */
    dbreg_bump_seq(d->reg);
    if (__atomic_load_n(&d->reg->commit_hook, __ATOMIC_ACQUIRE)) {
        t_logged.reg = d->reg;
        snprintf(t_logged.name, sizeof t_logged.name, "%s", d->name);
        t_logged.txid = h->txid;
        t_logged.presync = NULL;
    }
    return 0;
}

void db_presync_arm(struct db *d, int fd)
{
    if (t_logged.reg == d->reg && strcmp(t_logged.name, d->name) == 0) {
        t_logged.presync = d;
        t_logged.presync_fd = fd;
    }
}

void dbreg_set_commit_hook(struct dbreg *r, int (*fn)(void *arg, const char *name, uint64_t txid), void *arg)
{
    __atomic_store_n(&r->commit_hook, NULL, __ATOMIC_RELEASE);
    __atomic_store_n(&r->commit_arg, arg, __ATOMIC_RELEASE);
    __atomic_store_n(&r->commit_hook, fn, __ATOMIC_RELEASE);
}

int dbreg_commit_wait(struct dbreg *r, int rc)
{
    int (*fn)(void *, const char *, uint64_t);

    if (!t_logged.reg)
        return rc;
    LV_ASSERT(t_logged.reg == r);
    t_logged.reg = NULL;
    if (t_logged.presync && rc >= 0) /* C11 of db.c: the fsync runs while the record travels */
        db_wal_presync(t_logged.presync, t_logged.presync_fd);
    t_logged.presync = NULL;
    fn = __atomic_load_n(&r->commit_hook, __ATOMIC_ACQUIRE);
    if (fn && fn(__atomic_load_n(&r->commit_arg, __ATOMIC_ACQUIRE), t_logged.name, t_logged.txid) != 0 && rc >= 0)
        rc = -EIO;
    return rc;
}

/*
 * Write one record for the changes c (any order; sorted here), leaving the
 * database at db_pages pages of page size ps.  With TXLOG_F_SNAPSHOT, c
 * holds every page.  On success the map, TXID and counters advance.
 */
int db_emit(struct db *d, uint16_t flags, uint32_t ps, uint32_t db_pages, struct changes *c, uint32_t salt1,
            uint32_t salt2, uint32_t wal_frame)
{
    struct txlog_hdr h;
    uint8_t *buf;
    int rc;

    LV_ASSERT(d->kind == DBK_SQLITE && d->log);
    LV_ASSERT(d->broken || txlog_last_txid(d->log) == d->txid); /* C4 before */
    qsort(c->v, c->n, sizeof *c->v, db_change_cmp);
    memset(&h, 0, sizeof h);
    h.version = 2;
    h.flags = flags;
    memcpy(h.dbid, d->id, 16);
    h.txid = d->txid + 1;                      /* C5: TXID order */
    h.time_us = lv_now_us();
    if (h.time_us < d->last_time)
        h.time_us = d->last_time;
    h.page_size = ps;
    h.db_pages = db_pages;
    h.comp = TXLOG_COMP_ZSTD;
    h.pre_cksum = d->map.total;                /* C5: continues the previous post checksum */
    h.post_cksum = emit_post(d, flags, ps, db_pages, c);
    h.wal_salt1 = salt1;
    h.wal_salt2 = salt2;
    h.wal_frame = wal_frame;
    h.term = __atomic_load_n(&d->reg->term, __ATOMIC_ACQUIRE);
    if (h.term < txlog_last_term(d->log))
        h.term = txlog_last_term(d->log); /* L10: terms never go back */
    buf = malloc(ps);
    if (!buf)
        return LV_ENOMEM;
    rc = emit_append(d, &h, c, buf);
    if (rc == 0)
        rc = emit_advance(d, &h, c);
    free(buf);
    if (rc == 0 && (flags & TXLOG_F_RECOVERED))
        LV_WARN("%s: wrote recovered record TXID %llu (%zu pages)", d->name, (unsigned long long)h.txid, c->n);
    else if (rc == 0)
        LV_DEBUG("%s: TXID %llu, %zu pages, %u pages total", d->name, (unsigned long long)h.txid, c->n, db_pages);
    if (rc && !d->broken)
        LV_ERROR("%s: could not log TXID %llu (%s); the commit is refused with an I/O error and SQLite keeps "
                 "the database as it was", d->name, (unsigned long long)h.txid, lv_strerror(rc));
    if (rc && txlog_error(d->log))
        db_fail(d, "the transaction log failed (%s) and its state is uncertain", lv_strerror(txlog_error(d->log)));
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
    int rc = db_read_page(k->fd, k->buf, k->ps, off);
    if (rc)
        return rc;
    uint64_t h = cksum_page(p, k->buf, k->ps);
    if (h == db_map_before(d, p, k->ps))
        return 0;
    return db_changes_add(k->c, p, k->fd, off, h);
}

/* Read every page 1..npages of fd into c (for snapshot records). */
static int collect_all(struct db *d, int fd, uint32_t ps, uint32_t npages, struct changes *c, uint8_t *buf)
{
    for (uint32_t p = 1; p <= npages; p++) {
        uint64_t off = (uint64_t)(p - 1) * ps;
        int rc = db_read_page(fd, buf, ps, off);
        if (rc)
            return rc;
        rc = db_changes_add(c, p, fd, off, cksum_page(p, buf, ps));
        if (rc)
            return rc;
    }
    LV_UNUSED(d);
    return 0;
}

/* Commit of a rollback-journal (or bulk) transaction: log the pages that
 * differ from the map.  0 if logged or nothing changed. */
int db_capture_rollback(struct db *d, uint16_t extra_flags)
{
    struct changes c = {0};
    uint8_t hdr[100];
    uint8_t *buf = NULL;
    struct stat st;
    int rc = 0, fd;
    uint32_t ps, npages;

    if (!d->dirty_any && !d->size_changed)
        return 0;
    fd = db_main_fd(d);
    if (fd < 0 || fstat(fd, &st) != 0) {
        LV_ERROR("%s: cannot open or stat the database file: %s", d->name, strerror(errno));
        return LV_EIO;
    }
    rc = db_hdr_geometry(d, fd, (uint64_t)st.st_size, &ps, &npages, hdr);
    if (rc == LV_ENOTSQLITE)
        LV_ERROR("%s: the database header is not valid SQLite at commit; refusing the commit", d->name);
    if (rc)
        return rc;
    if (st.st_size > 0)
        d->hdr_wal = hdr[18] == 2;
    buf = malloc(ps);
    if (!buf)
        return LV_ENOMEM;
    uint16_t flags = extra_flags;
    if (d->map.npages == 0 || d->map.page_size != ps) {
        flags |= TXLOG_F_SNAPSHOT;
        rc = collect_all(d, fd, ps, npages, &c, buf);
    } else {
        struct collect k = {d, &c, ps, npages, buf, fd};
        rc = db_dirty_pages(d, ps, collect_page, &k);
        /* Growth beyond the dirty pages (never-written pages read as zeros). */
    }
    if (rc)
        goto out_free;
    if (!(flags & TXLOG_F_SNAPSHOT) && c.n == 0 && npages == d->map.npages)
        goto out_clear; /* nothing changed: rollback, no-op */
    if ((flags & TXLOG_F_SNAPSHOT) && npages == 0 && d->map.npages == 0 && d->txid > 0)
        goto out_clear;
    rc = db_emit(d, flags, ps, npages, &c, 0, 0, 0);
    if (rc)
        goto out_free;
out_clear:
    db_dirty_clear(d);
out_free:
    free(c.v);
    free(buf);
    return rc;
}

/* The frames [first, last] of walfd (page size ps) into c as (pgno, frame
 * offset, frame index in h), the last frame of each page only, sorted. */
static int wal_collect_frames(struct db *d, int walfd, uint32_t ps, uint32_t first, uint32_t last,
                              struct changes *c)
{
    uint8_t fh[WAL_FRAME_HDR_SIZE];
    size_t j = 0;
    int rc;

    for (uint32_t i = first; i <= last; i++) {
        uint64_t off = wal_frame_off(i, ps);
        rc = db_read_mem(walfd, fh, sizeof fh, off, c->mem, c->mem_fd);
        if (rc)
            return rc;
        if (lv_get32(fh) == 0)
            return LV_ECORRUPT;
        rc = db_changes_add(c, lv_get32(fh), walfd, off + WAL_FRAME_HDR_SIZE, i);
        if (rc)
            return rc;
    }
    qsort(c->v, c->n, sizeof *c->v, db_change_cmp);
    for (size_t i = 0; i < c->n; i++) {
        if (i + 1 < c->n && c->v[i + 1].pgno == c->v[i].pgno) {
            /* qsort is not stable: pick the larger frame index */
            if (c->v[i].h > c->v[i + 1].h)
                c->v[i + 1] = c->v[i];
            continue;
        }
        c->v[j++] = c->v[i];
    }
    c->n = j;
    return 0;
}

/* WAL frames [first, last] of walfd (page size ps) committed with db_pages:
 * log the pages that differ from the map.  Frames mem holds are read from
 * it (the bytes the WAL cursor validated), the others from walfd. */
int db_capture_wal(struct db *d, int walfd, uint32_t first, uint32_t last, uint32_t db_pages,
                   uint16_t extra_flags, const struct wal_frames *mem)
{
    struct changes c = {0};
    uint32_t ps = d->wal_psz;
    uint8_t *buf = NULL;
    size_t j = 0;
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
    c.mem = mem;
    c.mem_fd = walfd;
    rc = wal_collect_frames(d, walfd, ps, first, last, &c);
    if (rc)
        goto out_free;
    /* Hash and compare. */
    for (size_t i = 0; i < c.n; i++) {
        uint32_t p = c.v[i].pgno;
        if (p > db_pages)
            continue;
        rc = db_read_mem(walfd, buf, ps, c.v[i].off, mem, walfd);
        if (rc)
            goto out_free;
        uint64_t h = cksum_page(p, buf, ps);
        if (h == db_map_before(d, p, ps) && d->map.npages > 0)
            continue;
        c.v[i].h = h;
        c.v[j++] = c.v[i];
    }
    c.n = j;
    if (c.n == 0 && db_pages == d->map.npages && d->map.npages > 0)
        goto out_free;
    if (d->map.npages == 0 && d->map.page_size != ps)
        cksum_map_reset(&d->map, ps);
    rc = db_emit(d, extra_flags, ps, db_pages, &c, d->wal_salt1, d->wal_salt2, last + 1);
out_free:
    free(c.v);
    free(buf);
    return rc;
}
