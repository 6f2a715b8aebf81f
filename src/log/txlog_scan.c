/*
 * txlog_scan.c -- the start-up scan behind txlog_open: verify every
 * segment of a log directory and find where the writer continues.
 *
 * Every segment header (magic, version, checksum, database ID, first TXID
 * == file name, continuity with the previous segment), every record header
 * and payload checksum (the stored bytes are hashed, not decompressed),
 * TXID continuity and the checksum chain (txlog_link_check: L1, L2 of
 * txlog.c) are verified.  In the newest segment only, an incomplete final
 * record is cut off (L3): the file ends inside it, its header is all
 * zeros, or its header is invalid and no valid record header of this
 * database follows it; a newest segment shorter than its header (or with
 * a zero header) is removed.  Everything else is LV_ECORRUPT with a
 * message naming the segment, offset and TXID.
 *
 * A log with no record at all may continue a history kept elsewhere (a
 * seeded database): txlog_base.c then fills the tail from its base file.
 *
 * The newest segment stays open read-write and is handed to the writer
 * (struct txlog_newest); the scan owns nothing after it returns.
 */
#include "log/txlog.h"
#include "log/txlog_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"

/* Scan context shared by the per-segment checks.  One thread. */
struct scan {
    const uint8_t *dbid;     /* expected database ID (borrowed) */
    char *err;               /* message buffer (borrowed, may be NULL) */
    size_t errlen;           /* its size */
    uint8_t *buf;            /* TXLOG_IO_CHUNK scratch (owned) */
    XXH3_state_t *xs;        /* hash state for payload checksums (owned) */
    struct txlog_link link;  /* the chain so far (L1, L2) */
    struct txlog_tail *tail; /* facts reported to the caller (borrowed) */
};

static int scan_fail(struct scan *sc, const char *path, uint64_t off, uint64_t txid, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int scan_fail(struct scan *sc, const char *path, uint64_t off, uint64_t txid, const char *fmt, ...)
{
    char what[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    lv_seterr(sc->err, sc->errlen, "%s: offset %" PRIu64 ": TXID %" PRIu64 ": %s", path, off, txid, what);
    LV_ERROR("txlog: %s: offset %" PRIu64 ": TXID %" PRIu64 ": %s", path, off, txid, what);
    return LV_ECORRUPT;
}

/* The record at off is what the scan expects: its header checks, it links
 * to the previous one and its payload matches the trailer.  0, a torn tail
 * (*torn set), or an error already reported. */
static int scan_one(struct scan *sc, const struct txlog_src *s, const struct txlog_seg_hdr *sh, uint32_t nrec,
                    int last, uint64_t off, struct txlog_hdr *h, const char **torn)
{
    uint8_t hb[TXLOG_HDR_SIZE];
    uint64_t sum, expect = sc->link.have ? sc->link.prev_txid + 1 : sh->first;
    char what[200];
    int rc;

    if (s->size - off < TXLOG_HDR_SIZE) {
        *torn = "file ends inside a record header";
        return 0;
    }
    rc = txlog_src_read(s, off, hb, sizeof(hb));
    if (rc)
        return rc;
    if (txlog_all_zero(hb, sizeof(hb))) {
        *torn = "record header is all zeros";
        return 0;
    }
    rc = txlog_hdr_decode(hb, h);
    if (rc) {
        if (last && rc != LV_EVERSION && !txlog_src_header_after(s, off + 1, sc->dbid, sc->buf)) {
            *torn = "invalid record header at the end";
            return 0;
        }
        if (rc != LV_EVERSION)
            return scan_fail(sc, s->name, off, expect, "invalid record header");
        scan_fail(sc, s->name, off, expect, "unsupported record version %u", lv_get16(hb + 4));
        return LV_EVERSION;
    }
    if (TXLOG_HDR_SIZE + h->stored_len + TXLOG_TRAILER_SIZE > s->size - off) {
        *torn = "file ends inside the record";
        return 0;
    }
    if (txlog_link_check(&sc->link, nrec, sh->first, h, what, sizeof(what)) != 0)
        return scan_fail(sc, s->name, off, h->txid, "%s", what);
    rc = txlog_src_hash(s, off + TXLOG_HDR_SIZE, h->stored_len, sc->buf, sc->xs, &sum);
    if (!rc)
        rc = txlog_src_read(s, off + TXLOG_HDR_SIZE + h->stored_len, hb, TXLOG_TRAILER_SIZE);
    if (rc)
        return rc;
    if (lv_get64(hb) != sum)
        return scan_fail(sc, s->name, off, h->txid, "payload checksum mismatch");
    return 0;
}

/* The record h was verified: report it in the tail. */
static void scan_note(struct scan *sc, const struct txlog_hdr *h)
{
    struct txlog_tail *t = sc->tail;

    if (!sc->link.have)
        t->first_txid = h->txid;
    txlog_link_advance(&sc->link, h);
    t->last_txid = h->txid;
    t->last_post = h->post_cksum;
    t->last_time_us = h->time_us;
    t->last_page_size = h->page_size;
    t->last_db_pages = h->db_pages;
    t->last_wal_salt1 = h->wal_salt1;
    t->last_wal_salt2 = h->wal_salt2;
    t->last_wal_frame = h->wal_frame;
    t->last_term = h->term;
}

/* Verify the records of one segment (header already checked) starting at
 * offset 64.  On return *valid_end is the end of the last good record; a
 * torn tail (only allowed when last) leaves *valid_end < s->size. */
static int scan_records(struct scan *sc, const struct txlog_src *s, const struct txlog_seg_hdr *sh, int last,
                        uint64_t *valid_end)
{
    struct txlog_hdr h;
    uint64_t off = TXLOG_SEG_HDR_SIZE;
    uint32_t nrec = 0;
    const char *torn = NULL;
    int rc;

    while (off < s->size) {
        rc = scan_one(sc, s, sh, nrec, last, off, &h, &torn);
        if (rc)
            return rc;
        if (torn)
            break;
        scan_note(sc, &h);
        nrec++;
        off += TXLOG_HDR_SIZE + h.stored_len + TXLOG_TRAILER_SIZE;
    }
    if (torn && !last)
        return scan_fail(sc, s->name, off, sc->link.have ? sc->link.prev_txid + 1 : sh->first,
                         "truncated record in a segment that is not the last (%s)", torn);
    if (torn)
        LV_WARN("txlog: %s: offset %" PRIu64 ": %s; cutting off %" PRIu64 " bytes", s->name, off, torn,
                s->size - off);
    *valid_end = off;
    return 0;
}

/* The newest segment has no complete header (a crash while creating it):
 * remove it.  0 or negative. */
static int scan_drop_empty(struct scan *sc, const struct txlog_src *s)
{
    LV_WARN("txlog: %s: incomplete segment header (%" PRIu64 " bytes); removing it", s->name, s->size);
    sc->tail->torn_bytes += s->size;
    if (unlink(s->name) < 0) {
        LV_ERROR("unlink %s: %s", s->name, strerror(errno));
        return lv_from_errno(errno);
    }
    sys_fsync_dir(s->name);
    return 0;
}

/* Check the header of segment s (listed as first TXID first).  0; 1 when
 * the newest segment is empty and was removed; or an error, reported. */
static int scan_seg_header(struct scan *sc, const struct txlog_src *s, uint64_t first, int last,
                           struct txlog_seg_hdr *sh)
{
    uint8_t hb[TXLOG_SEG_HDR_SIZE];
    char a[33], b[33];
    int rc = 0;

    if (s->size >= TXLOG_SEG_HDR_SIZE)
        rc = txlog_src_read(s, 0, hb, sizeof(hb));
    if (rc)
        return rc;
    if (s->size < TXLOG_SEG_HDR_SIZE || txlog_all_zero(hb, sizeof(hb))) {
        if (!last)
            return scan_fail(sc, s->name, 0, first, "segment header missing or zero");
        rc = scan_drop_empty(sc, s);
        return rc ? rc : 1;
    }
    rc = txlog_seg_hdr_decode(hb, sh);
    if (rc) {
        scan_fail(sc, s->name, 0, first, rc == LV_EVERSION ? "unsupported segment version" : "invalid segment header");
        return rc;
    }
    if (memcmp(sh->dbid, sc->dbid, 16) != 0)
        return scan_fail(sc, s->name, 0, sh->first, "segment belongs to database %s, not %s",
                         lv_hex(sh->dbid, 16, a), lv_hex(sc->dbid, 16, b));
    if (sh->first != first)
        return scan_fail(sc, s->name, 0, sh->first, "segment header first TXID does not match the file name");
    if (sc->link.have && sh->first != sc->link.prev_txid + 1)
        return scan_fail(sc, s->name, 0, sh->first, "TXID gap: expected TXID %" PRIu64 " at segment start",
                         sc->link.prev_txid + 1);
    return 0;
}

/* Cut the torn tail of the newest segment off at end (fsynced). */
static int scan_cut_tail(struct scan *sc, struct txlog_src *s, uint64_t end)
{
    int rc;

    sc->tail->torn_bytes += s->size - end;
    rc = sys_ftruncate(s->fd, (off_t)end, s->name);
    if (!rc)
        rc = sys_fsync(s->fd, 1, s->name);
    if (rc)
        lv_seterr(sc->err, sc->errlen, "%s: cannot cut off torn tail at offset %" PRIu64 ": %s", s->name, end,
                  lv_strerror(rc));
    else
        s->size = end;
    return rc;
}

/* Verify one segment; the newest (last) one is handed to *nw open.
 * 0; 1 when the newest segment was empty and has been removed; or an
 * error, reported. */
static int scan_segment(struct scan *sc, const char *dir, uint64_t first, int last, struct txlog_newest *nw)
{
    struct txlog_src s = {.fd = -1};
    struct txlog_seg_hdr sh;
    uint64_t end = 0;
    int rc;

    s.name = txlog_seg_path(dir, first);
    if (!s.name)
        return LV_ENOMEM;
    s.fd = sys_open(s.name, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
    if (s.fd < 0) {
        rc = s.fd;
        s.fd = -1;
        lv_seterr(sc->err, sc->errlen, "%s: cannot open segment: %s", s.name, lv_strerror(rc));
        goto out_close_src;
    }
    rc = txlog_fd_size(s.fd, s.name, &s.size);
    if (!rc)
        rc = scan_seg_header(sc, &s, first, last, &sh);
    if (rc) /* 1: the newest segment was empty and is gone */
        goto out_close_src;
    rc = scan_records(sc, &s, &sh, last, &end);
    if (!rc && end < s.size)
        rc = scan_cut_tail(sc, &s, end);
    if (rc)
        goto out_close_src;
    sc->tail->total_bytes += s.size;
    sc->tail->nsegments++;
    if (last) {
        nw->fd = s.fd;
        nw->path = s.name;
        nw->first = sh.first;
        nw->end = s.size;
        s.fd = -1;
        s.name = NULL;
    }
out_close_src:
    txlog_src_close(&s);
    return rc;
}

int txlog_scan(const char *dir, const uint8_t dbid[16], struct txlog_tail *tail, struct txlog_newest *nw,
               char *err, size_t errlen)
{
    struct scan sc = {.dbid = dbid, .err = err, .errlen = errlen, .tail = tail};
    uint64_t *segs = NULL;
    size_t nseg = 0;
    int rc;

    memset(tail, 0, sizeof(*tail));
    *nw = (struct txlog_newest){.fd = -1};
    sc.link.dbid = dbid;
    sc.buf = malloc(TXLOG_IO_CHUNK);
    sc.xs = XXH3_createState();
    if (!sc.buf || !sc.xs) {
        rc = LV_ENOMEM;
        goto out_free_scan;
    }
    rc = sys_mkdir_p(dir);
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot create log directory: %s", dir, lv_strerror(rc));
        goto out_free_scan;
    }
    rc = txlog_seg_list(dir, &segs, &nseg);
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot list log directory: %s", dir, lv_strerror(rc));
        goto out_free_scan;
    }
    for (size_t i = 0; i < nseg && rc == 0; i++)
        rc = scan_segment(&sc, dir, segs[i], i + 1 == nseg, nw);
    if (rc == 1)
        rc = 0; /* the newest segment was empty: the writer starts a new one */
    if (rc == 0 && !sc.link.have)
        rc = txlog_base_adopt(dir, dbid, tail, nw, err, errlen); /* no record: a seeded log? */
    if (rc && nw->fd >= 0) {
        close(nw->fd);
        free(nw->path);
        *nw = (struct txlog_newest){.fd = -1};
    }
    free(segs);
out_free_scan:
    if (sc.xs)
        XXH3_freeState(sc.xs);
    free(sc.buf);
    return rc;
}
