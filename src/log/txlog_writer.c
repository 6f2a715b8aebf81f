/*
 * txlog_writer.c -- the log writer: appends records to the newest segment
 * of one directory (txlog_open, txlog_append_*, txlog_sync, txlog_close).
 *
 * STATES (struct txlog.state; assert_writer_state checks them, L5 of txlog.c)
 *
 *   IDLE --append_begin--> BUFFERED --append_page...--> BUFFERED
 *   BUFFERED --raw payload would pass RAW_MAX--> STREAMING
 *   BUFFERED/STREAMING --append_end (ok)--> IDLE, record complete in file
 *   any --error or append_abort--> IDLE, file truncated to the record start
 *   truncation failed --> broken (sticky LV_EBROKEN, every call refused)
 *
 * BUFFERED (the hot path: 1..255 pages of 4 KiB): pages are copied into
 * `raw`, and append_end compresses them in one ZSTD_compress2 call into
 * `out` behind the header, appends the trailer and issues ONE pwrite at
 * the end of the segment.  If zstd does not shrink the payload it is stored
 * raw (compression 0).  Buffers and the ZSTD_CCtx live as long as the log,
 * so steady-state commits allocate nothing.
 *
 * STREAMING (snapshots and large transactions): a 112-byte zero
 * placeholder header is written first, then compressed output in chunks of
 * up to OUT_CHUNK bytes; the XXH3 state accumulates the stored bytes.
 * append_end flushes the frame and trailer, fdatasyncs, and only then
 * writes the real header.  A crash before that leaves a zero header at the
 * end of the last segment, which txlog_open treats as a torn tail; memory
 * stays bounded (RAW_MAX + OUT_CHUNK + the zstd context) for any size.
 *
 * SEGMENTS: a record never spans segments.  A buffered record starts a new
 * segment when the current one holds records and would pass seg_size; a
 * streamed record (size unknown in advance) always starts in a segment of
 * its own unless the current one is still empty.  Before a segment is
 * closed by roll-over its unsynced data is fdatasynced, so txlog_sync only
 * ever needs to sync the current segment (plus the directory once after a
 * segment was created).  txlog_sync_begin/run/end do the same fsync on the
 * segment opened again (its own open file) without the owner's lock; end clears dirty only
 * if nothing was written meanwhile (wgen) in the same segment.  A log
 * opened by txlog_open starts dirty: an earlier process's tail may be in
 * the page cache only.
 *
 * RESERVATION (txlog_reserve, L9 of txlog.c): the capture layer reserves
 * room for the record of a transaction while it is being written; the
 * segment choice above is then made by the reservation (an empty segment
 * named for the next TXID is the record's), and blocks up to resv_end are
 * allocated with fallocate(KEEP_SIZE), so the append cannot hit ENOSPC.
 * seg_close and rec_drop's truncation release blocks past the end.
 *
 * The writer enforces the invariants the scan checks: TXID = previous + 1
 * and pre checksum = previous post checksum; an empty log starts at TXID 1
 * (with pre checksum 0) or with a snapshot record.
 *
 * Transitions: txlog_append_begin (IDLE -> BUFFERED), txlog_append_page
 * (BUFFERED -> STREAMING through stream_start), txlog_append_end
 * (-> IDLE), txlog_append_abort and rec_drop (-> IDLE).  broken is set by
 * seg_create, seg_prepare, rec_drop and txlog_sync and never cleared.
 */
#include "log/txlog.h"
#include "log/txlog_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "base/cksum.h"
#include "base/dbhdr.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"

enum { REC_IDLE = 0, REC_BUFFERED, REC_STREAMING };

/* One writer per directory.  No lock of its own: every field is guarded by
 * the owner's lock (capture's db.mu), as the handle is used by one thread
 * at a time. */
struct txlog {
    char *dir;              /* log directory (owned) */
    uint8_t dbid[16];       /* database ID stamped on segments and records */
    uint64_t seg_size;      /* roll-over size */
    int fd;                 /* current segment, -1 if none */
    char *seg_path;         /* its path (owned), NULL if none */
    uint64_t seg_first;     /* its first TXID */
    uint64_t seg_end;       /* bytes of segment header + complete records */
    uint64_t resv_end;      /* blocks of the current segment allocated up to here (fallocate KEEP_SIZE), L9 */
    int no_prealloc;        /* the file system cannot preallocate: txlog_reserve does nothing */
    int dir_unsynced;       /* a segment was created since the last directory fsync */
    int dirty;              /* current segment has writes not yet fdatasynced */
    uint64_t wgen;          /* bumped with every write that sets dirty (txlog_sync_end compares it) */
    int broken;             /* sticky: 0 or LV_EBROKEN */
    uint64_t bytes_written; /* bytes written since open */
    int have_last;          /* the log holds at least one record */
    uint64_t last_txid;     /* TXID of the last complete record */
    uint64_t last_post;     /* its post checksum */
    uint64_t last_term;     /* its term (L10) */

    /* Record in progress. */
    int state;              /* REC_IDLE, REC_BUFFERED or REC_STREAMING */
    struct txlog_hdr cur;   /* header being built (npages, raw_len, stored_len accumulate) */
    uint32_t last_pgno;     /* last page added, 0 before the first */
    uint64_t rec_start;     /* STREAMING: segment offset of the record */
    uint64_t wr_off;        /* STREAMING: file offset of the next chunk */
    XXH3_state_t *xs;       /* STREAMING: hash of the stored bytes so far */
    ZSTD_CCtx *cctx;        /* compression context, reused for every record */
    uint8_t *raw;           /* BUFFERED: raw payload (raw_cap bytes) */
    size_t raw_cap;         /* bytes allocated for raw */
    size_t raw_used;        /* bytes of raw in use */
    uint8_t *out;           /* encoded record (BUFFERED) or output chunk (STREAMING) */
    size_t out_cap;         /* bytes allocated for out */
    size_t out_len;         /* STREAMING: bytes of out not yet written */
};

/*
 * The writer's state machine (L5 of txlog.c), checked at each transition.
 * O(1): it runs on the commit path.
 */
static void assert_writer_state(const struct txlog *l)
{
    LV_ASSERT(l->state == REC_IDLE || l->state == REC_BUFFERED || l->state == REC_STREAMING);
    LV_ASSERT(l->fd < 0 || (l->seg_path && l->seg_end >= TXLOG_SEG_HDR_SIZE));
    LV_ASSERT(!l->have_last || l->last_txid > 0);
    LV_ASSERT(l->broken == 0 || l->broken == LV_EBROKEN);
    switch (l->state) {
    case REC_IDLE:
        LV_ASSERT(l->raw_used == 0 && l->out_len == 0);
        break;
    case REC_BUFFERED:
        LV_ASSERT(l->raw_used == l->cur.raw_len && l->raw_used <= TXLOG_RAW_MAX);
        LV_ASSERT(l->cur.raw_len == (uint64_t)l->cur.npages * (4 + (uint64_t)l->cur.page_size));
        LV_ASSERT(l->last_pgno <= l->cur.db_pages);
        break;
    case REC_STREAMING:
        LV_ASSERT(l->fd >= 0 && l->rec_start == l->seg_end && l->wr_off >= l->rec_start);
        LV_ASSERT(l->raw_used == 0 && l->out_len <= l->out_cap);
        LV_ASSERT(l->last_pgno <= l->cur.db_pages);
        break;
    }
    /* L1, L2: a record in progress continues the log. */
    LV_ASSERT(l->state == REC_IDLE || !l->have_last ||
              (l->cur.txid == l->last_txid + 1 && l->cur.pre_cksum == l->last_post));
    /* L10: terms never go back. */
    LV_ASSERT(l->state == REC_IDLE || !l->have_last || l->cur.term >= l->last_term);
}

/* Close the current segment (no sync), releasing blocks reserved past its
 * end (L9). */
static void seg_close(struct txlog *l)
{
    if (l->fd >= 0 && l->resv_end > l->seg_end &&
        sys_ftruncate(l->fd, (off_t)l->seg_end, l->seg_path) != 0)
        LV_WARN("txlog: could not release the space reserved past the end of %s", l->seg_path);
    if (l->fd >= 0)
        close(l->fd);
    l->resv_end = 0;
    l->fd = -1;
    free(l->seg_path);
    l->seg_path = NULL;
    l->dirty = 0;
}

/* Create segment <first>.lvseg and make it current.  0 or negative; the
 * log turns broken if a half-created file cannot be removed. */
static int seg_create(struct txlog *l, uint64_t first)
{
    struct txlog_seg_hdr sh;
    uint8_t buf[TXLOG_SEG_HDR_SIZE];
    char *path = txlog_seg_path(l->dir, first);
    int fd, rc;

    if (!path)
        return LV_ENOMEM;
    fd = sys_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(path);
        return fd;
    }
    memcpy(sh.dbid, l->dbid, 16);
    sh.first = first;
    sh.ctime_us = lv_now_us();
    txlog_seg_hdr_encode(&sh, buf);
    rc = sys_pwrite_all(fd, buf, sizeof(buf), 0, path);
    if (rc) {
        close(fd);
        if (unlink(path) < 0) {
            LV_ERROR("unlink %s after failed segment creation: %s; log is broken", path, strerror(errno));
            l->broken = LV_EBROKEN;
        }
        free(path);
        return rc;
    }
    l->fd = fd;
    l->seg_path = path;
    l->seg_first = first;
    l->seg_end = TXLOG_SEG_HDR_SIZE;
    l->resv_end = TXLOG_SEG_HDR_SIZE;
    l->dir_unsynced = 1;
    l->dirty = 1;
    l->wgen++;
    l->bytes_written += sizeof(buf);
    LV_DEBUG("txlog: created segment %s", path);
    return 0;
}

/* Make sure the current segment can take the record of TXID txid and size
 * need (0 with streaming = unknown), rolling over or replacing an empty
 * segment as needed. */
static int seg_prepare(struct txlog *l, uint64_t txid, uint64_t need, int streaming)
{
    int rc;

    if (l->fd >= 0) {
        if (l->seg_end <= TXLOG_SEG_HDR_SIZE) {
            if (l->seg_first == txid)
                return 0;
            /* An empty segment named for another TXID (left by an aborted
             * first record): replace it. */
            if (unlink(l->seg_path) < 0) {
                LV_ERROR("unlink empty segment %s: %s", l->seg_path, strerror(errno));
                return lv_from_errno(errno);
            }
            seg_close(l);
        } else if (streaming || l->seg_end + need > l->seg_size) {
            if (l->dirty) {
                rc = sys_fsync(l->fd, 1, l->seg_path);
                if (rc) {
                    LV_ERROR("txlog: fsync of %s at roll-over failed; log is broken", l->seg_path);
                    l->broken = LV_EBROKEN;
                    return rc;
                }
            }
            seg_close(l);
        } else {
            return 0;
        }
    }
    return seg_create(l, txid);
}

/* Drop the record in progress; truncate the segment back to its start if
 * anything of it may be in the file. */
static void rec_drop(struct txlog *l, int written)
{
    if (written && l->fd >= 0) {
        if (sys_ftruncate(l->fd, (off_t)l->rec_start, l->seg_path) != 0) {
            LV_ERROR("txlog: cannot remove partial record at %s offset %" PRIu64 "; log is broken",
                     l->seg_path, l->rec_start);
            l->broken = LV_EBROKEN;
        }
        l->resv_end = l->rec_start; /* the truncation released the reserved blocks too */
    }
    if (l->state != REC_IDLE)
        ZSTD_CCtx_reset(l->cctx, ZSTD_reset_session_only);
    l->state = REC_IDLE;
    l->out_len = 0;
    l->raw_used = 0;
    assert_writer_state(l);
}

/* Failure during a record: drop it and return the error to report. */
static int rec_fail(struct txlog *l, int rc, int written)
{
    rec_drop(l, written);
    return l->broken ? l->broken : rc;
}

static int stream_flush(struct txlog *l)
{
    int rc;

    if (!l->out_len)
        return 0;
    rc = sys_pwrite_all(l->fd, l->out, l->out_len, (off_t)l->wr_off, l->seg_path);
    if (rc)
        return rc;
    l->wr_off += l->out_len;
    l->bytes_written += l->out_len;
    l->out_len = 0;
    l->dirty = 1;
    l->wgen++;
    return 0;
}

/* Feed len bytes (or finish the frame with ZSTD_e_end) into the stream. */
static int stream_in(struct txlog *l, const void *src, size_t len, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = { src, len, 0 };
    int rc;

    for (;;) {
        ZSTD_outBuffer o = { l->out, l->out_cap, l->out_len };
        size_t r = ZSTD_compressStream2(l->cctx, &o, &in, mode);

        if (ZSTD_isError(r)) {
            LV_ERROR("txlog: zstd compression failed: %s", ZSTD_getErrorName(r));
            return LV_EIO;
        }
        XXH3_64bits_update(l->xs, l->out + l->out_len, o.pos - l->out_len);
        l->cur.stored_len += o.pos - l->out_len;
        l->out_len = o.pos;
        if (l->out_len == l->out_cap) {
            rc = stream_flush(l);
            if (rc)
                return rc;
        }
        if (mode == ZSTD_e_end ? r == 0 : in.pos == in.size)
            return 0;
    }
}

/* Switch a record from BUFFERED to STREAMING: pick its segment, queue the
 * zero placeholder header and push the buffered pages through zstd. */
static int stream_start(struct txlog *l)
{
    int rc;

    rc = seg_prepare(l, l->cur.txid, 0, 1);
    if (rc)
        return rc;
    rc = txlog_grow(&l->out, &l->out_cap, TXLOG_OUT_CHUNK);
    if (rc)
        return rc;
    l->rec_start = l->seg_end;
    l->wr_off = l->seg_end;
    memset(l->out, 0, TXLOG_HDR_SIZE);
    l->out_len = TXLOG_HDR_SIZE;
    l->state = REC_STREAMING;
    XXH3_64bits_reset(l->xs);
    ZSTD_CCtx_reset(l->cctx, ZSTD_reset_session_only);
    l->cur.comp = TXLOG_COMP_ZSTD;
    l->cur.stored_len = 0;
    rc = stream_in(l, l->raw, l->raw_used, ZSTD_e_continue);
    l->raw_used = 0;
    return rc;
}

/*
 * Reservation (L9).  A record of raw payload raw_len takes at most
 * TXLOG_HDR_SIZE + stored + TXLOG_TRAILER_SIZE bytes, stored <= raw_len
 * for a buffered record (stored raw when zstd does not shrink it) and at
 * most zstd's bound for a streamed one.  seg_prepare picks the segment
 * the append will pick (an empty segment named txid stays the record's),
 * and the blocks up to the record's end plus TXLOG_RESV_CHUNK (never past
 * the roll-over size unless the record itself is) are allocated, so that
 * a transaction growing page by page calls fallocate once per chunk.
 */
#define TXLOG_RESV_CHUNK (1u << 20)

int txlog_reserve(struct txlog *l, uint64_t txid, uint64_t raw_len)
{
    uint64_t need = TXLOG_HDR_SIZE + raw_len + raw_len / 128 + 1024 + TXLOG_TRAILER_SIZE, to, from;
    int streaming = raw_len > TXLOG_RAW_MAX, rc;

    assert_writer_state(l);
    if (l->broken)
        return l->broken;
    if (l->no_prealloc || l->state != REC_IDLE)
        return 0;
    if (l->fd >= 0 && l->seg_end + need <= l->resv_end &&
        (l->seg_end <= TXLOG_SEG_HDR_SIZE ? l->seg_first == txid : !streaming && l->seg_end + need <= l->seg_size))
        return 0; /* covered */
    rc = seg_prepare(l, txid, need, streaming);
    if (rc)
        return rc;
    if (l->seg_end + need <= l->resv_end)
        return 0;
    to = l->seg_end + need + TXLOG_RESV_CHUNK;
    if (to > l->seg_size && l->seg_end + need <= l->seg_size)
        to = l->seg_size;
    from = l->resv_end > l->seg_end ? l->resv_end : l->seg_end;
    rc = sys_fallocate_keep(l->fd, (off_t)from, (off_t)(to - from), l->seg_path);
    if (rc == LV_ENOSPC && to > l->seg_end + need) {
        to = l->seg_end + need; /* no room for the chunk: the record alone may still fit */
        rc = sys_fallocate_keep(l->fd, (off_t)from, (off_t)(to - from), l->seg_path);
    }
    if (rc == LV_EREFUSED) {
        LV_INFO("txlog: %s cannot preallocate; a full disk is then found at the commit point", l->dir);
        l->no_prealloc = 1;
        return 0;
    }
    if (rc)
        return rc;
    l->resv_end = to;
    return 0;
}

int txlog_append_begin(struct txlog *l, const struct txlog_hdr *h)
{
    int snap = (h->flags & TXLOG_F_SNAPSHOT) != 0;

    assert_writer_state(l);
    if (l->broken)
        return l->broken;
    if (l->state != REC_IDLE) {
        LV_ERROR("txlog: append_begin with a record in progress");
        return LV_EINVAL;
    }
    if (!dbhdr_page_size_ok(h->page_size) || (h->flags & ~TXLOG_KNOWN_FLAGS) || h->txid == 0 ||
        h->term > TXLOG_TERM_MAX) {
        LV_ERROR("txlog: bad record header (TXID %" PRIu64 ", page size %u, flags 0x%x)", h->txid,
                 h->page_size, h->flags);
        return LV_EINVAL;
    }
    if (l->have_last) {
        if (h->txid != l->last_txid + 1) {
            LV_ERROR("txlog: TXID %" PRIu64 " does not follow %" PRIu64, h->txid, l->last_txid);
            return LV_EGAP;
        }
        if (h->pre_cksum != l->last_post) {
            LV_ERROR("txlog: TXID %" PRIu64 " pre checksum %016" PRIx64 " != previous post %016" PRIx64,
                     h->txid, h->pre_cksum, l->last_post);
            return LV_ECHAIN;
        }
        if (h->term < l->last_term) {
            LV_ERROR("txlog: TXID %" PRIu64 " term %" PRIu64 " is before the log's term %" PRIu64, h->txid, h->term,
                     l->last_term);
            return LV_ECHAIN;
        }
    } else if (!snap) {
        if (h->txid != 1) {
            LV_ERROR("txlog: an empty log must start at TXID 1 or with a snapshot (got TXID %" PRIu64 ")",
                     h->txid);
            return LV_EGAP;
        }
        if (h->pre_cksum != 0) {
            LV_ERROR("txlog: TXID 1 must have pre checksum 0 (empty database)");
            return LV_ECHAIN;
        }
    }
    l->cur = *h;
    l->cur.version = TXLOG_REC_VERSION;
    memcpy(l->cur.dbid, l->dbid, 16);
    l->cur.npages = 0;
    l->cur.raw_len = 0;
    l->cur.stored_len = 0;
    l->cur.comp = TXLOG_COMP_ZSTD;
    l->last_pgno = 0;
    l->raw_used = 0;
    l->out_len = 0;
    l->state = REC_BUFFERED;
    assert_writer_state(l);
    return 0;
}

/* The entry check of append_page and append_end: a healthy log with a
 * record in progress.  0, or the error to return. */
static int rec_in_progress(const struct txlog *l)
{
    assert_writer_state(l);
    if (l->broken)
        return l->broken;
    return l->state == REC_IDLE ? LV_EINVAL : 0;
}

int txlog_append_page(struct txlog *l, uint32_t pgno, const void *data)
{
    uint32_t ps = l->cur.page_size;
    uint8_t be[4];
    int rc = rec_in_progress(l);

    if (rc)
        return rc;
    if (pgno <= l->last_pgno || pgno > l->cur.db_pages) {
        LV_ERROR("txlog: TXID %" PRIu64 ": page %u out of order or beyond %u pages", l->cur.txid, pgno,
                 l->cur.db_pages);
        return LV_EINVAL;
    }
    if (l->state == REC_BUFFERED) {
        if (l->raw_used + 4 + ps <= TXLOG_RAW_MAX) {
            rc = txlog_grow(&l->raw, &l->raw_cap, l->raw_used + 4 + ps);
            if (rc)
                return rc;
            lv_put32(l->raw + l->raw_used, pgno);
            memcpy(l->raw + l->raw_used + 4, data, ps);
            l->raw_used += 4 + ps;
            goto out_added;
        }
        rc = stream_start(l);
        if (rc)
            return rec_fail(l, rc, l->state == REC_STREAMING);
    }
    lv_put32(be, pgno);
    rc = stream_in(l, be, 4, ZSTD_e_continue);
    if (!rc)
        rc = stream_in(l, data, ps, ZSTD_e_continue);
    if (rc)
        return rec_fail(l, rc, 1);
out_added:
    l->last_pgno = pgno;
    l->cur.npages++;
    l->cur.raw_len += 4 + (uint64_t)ps;
    assert_writer_state(l);
    return 0;
}

/* Finish a BUFFERED record: compress, encode, one pwrite. */
static int end_buffered(struct txlog *l)
{
    struct txlog_hdr *h = &l->cur;
    size_t bound = ZSTD_compressBound(l->raw_used);
    size_t csize, total;
    uint8_t *pay;
    int rc;

    rc = txlog_grow(&l->out, &l->out_cap, TXLOG_HDR_SIZE + bound + TXLOG_TRAILER_SIZE);
    if (rc)
        return rec_fail(l, rc, 0);
    pay = l->out + TXLOG_HDR_SIZE;
    csize = l->raw_used ? ZSTD_compress2(l->cctx, pay, bound, l->raw, l->raw_used) : 0;
    if (ZSTD_isError(csize)) {
        LV_ERROR("txlog: zstd compression failed: %s", ZSTD_getErrorName(csize));
        return rec_fail(l, LV_EIO, 0);
    }
    if (l->raw_used == 0 || csize >= l->raw_used) {
        if (l->raw_used)
            memcpy(pay, l->raw, l->raw_used);
        h->comp = TXLOG_COMP_NONE;
        h->stored_len = l->raw_used;
    } else {
        h->comp = TXLOG_COMP_ZSTD;
        h->stored_len = csize;
    }
    lv_put64(pay + h->stored_len, cksum_buf(pay, (size_t)h->stored_len));
    txlog_hdr_encode(h, l->out);
    total = TXLOG_HDR_SIZE + (size_t)h->stored_len + TXLOG_TRAILER_SIZE;

    rc = seg_prepare(l, h->txid, total, 0);
    if (rc)
        return rec_fail(l, rc, 0);
    l->rec_start = l->seg_end;
    rc = sys_pwrite_all(l->fd, l->out, total, (off_t)l->seg_end, l->seg_path);
    if (rc)
        return rec_fail(l, rc, 1);
    l->seg_end += total;
    l->bytes_written += total;
    l->dirty = 1;
    l->wgen++;
    return 0;
}

/* Finish a STREAMING record: end the frame, write the trailer, sync the
 * payload, then write the real header over the placeholder. */
static int end_streaming(struct txlog *l)
{
    uint8_t hdr[TXLOG_HDR_SIZE];
    int rc;

    rc = stream_in(l, NULL, 0, ZSTD_e_end);
    if (rc)
        return rec_fail(l, rc, 1);
    if (l->out_len + TXLOG_TRAILER_SIZE > l->out_cap) {
        rc = stream_flush(l);
        if (rc)
            return rec_fail(l, rc, 1);
    }
    lv_put64(l->out + l->out_len, XXH3_64bits_digest(l->xs));
    l->out_len += TXLOG_TRAILER_SIZE;
    rc = stream_flush(l);
    if (!rc)
        rc = sys_fsync(l->fd, 1, l->seg_path);
    if (rc)
        return rec_fail(l, rc, 1);
    txlog_hdr_encode(&l->cur, hdr);
    rc = sys_pwrite_all(l->fd, hdr, sizeof(hdr), (off_t)l->rec_start, l->seg_path);
    if (rc)
        return rec_fail(l, rc, 1);
    l->seg_end = l->wr_off;
    return 0;
}

int txlog_append_end(struct txlog *l)
{
    int rc = rec_in_progress(l);

    if (rc)
        return rc;
    if ((l->cur.flags & TXLOG_F_SNAPSHOT) && l->cur.npages != l->cur.db_pages) {
        LV_ERROR("txlog: snapshot TXID %" PRIu64 " holds %u of %u pages", l->cur.txid, l->cur.npages,
                 l->cur.db_pages);
        return rec_fail(l, LV_EINVAL, l->state == REC_STREAMING);
    }
    rc = l->state == REC_BUFFERED ? end_buffered(l) : end_streaming(l);
    if (rc)
        return rc;
    l->state = REC_IDLE;
    l->raw_used = 0;
    l->out_len = 0;
    l->have_last = 1;
    l->last_txid = l->cur.txid;
    l->last_post = l->cur.post_cksum;
    l->last_term = l->cur.term;
    assert_writer_state(l);
    return 0;
}

void txlog_append_abort(struct txlog *l)
{
    if (l->state == REC_IDLE)
        return;
    rec_drop(l, l->state == REC_STREAMING);
}

int txlog_sync(struct txlog *l)
{
    int rc;

    assert_writer_state(l);
    if (l->broken)
        return l->broken;
    if (l->fd < 0)
        return 0;
    if (l->dirty) {
        rc = sys_fsync(l->fd, 1, l->seg_path);
        if (rc) {
            LV_ERROR("txlog: fsync %s failed; log is broken", l->seg_path);
            l->broken = LV_EBROKEN;
            return l->broken;
        }
        l->dirty = 0;
    }
    if (l->dir_unsynced) {
        rc = sys_fsync_dir(l->seg_path);
        if (rc) {
            LV_ERROR("txlog: fsync of directory %s failed; log is broken", l->dir);
            l->broken = LV_EBROKEN;
            return l->broken;
        }
        l->dir_unsynced = 0;
    }
    return 0;
}

int txlog_sync_begin(struct txlog *l, struct txlog_syncjob *j)
{
    memset(j, 0, sizeof *j);
    j->fd = -1;
    assert_writer_state(l);
    if (l->broken)
        return l->broken;
    if (l->fd < 0 || (!l->dirty && !l->dir_unsynced))
        return 0;
    j->path = strdup(l->seg_path);
    if (!j->path)
        return LV_ENOMEM;
    /* Its own open file, not a dup: a write-back error is reported once per
     * open file, so a dup's fsync could take the error that a concurrent
     * txlog_sync on l->fd must see. */
    j->fd = open(l->seg_path, O_RDONLY | O_CLOEXEC);
    if (j->fd < 0) {
        int e = errno;
        LV_ERROR("txlog: open %s for its fsync: %s", l->seg_path, strerror(e));
        free(j->path);
        j->path = NULL;
        return lv_from_errno(e);
    }
    j->dir = l->dir_unsynced;
    j->wgen = l->wgen;
    j->seg_first = l->seg_first;
    return 1;
}

int txlog_sync_run(struct txlog_syncjob *j)
{
    int rc = sys_fsync(j->fd, 1, j->path);
    if (rc == 0 && j->dir)
        rc = sys_fsync_dir(j->path);
    return rc;
}

int txlog_sync_end(struct txlog *l, struct txlog_syncjob *j, int rc)
{
    if (rc != 0 && !l->broken && strcmp(l->seg_path, j->path) == 0) {
        /* The segment's data may not be on disk, and the error was reported
         * to the job's open file: the log cannot be trusted. */
        LV_ERROR("txlog: fsync %s failed; log is broken", j->path);
        l->broken = LV_EBROKEN;
    }
    if (rc == 0 && !l->broken && l->fd >= 0 && l->seg_first == j->seg_first && l->wgen == j->wgen &&
        strcmp(l->seg_path, j->path) == 0) {
        l->dirty = 0;
        if (j->dir)
            l->dir_unsynced = 0;
    }
    txlog_sync_release(j);
    return l->broken ? l->broken : rc;
}

void txlog_sync_release(struct txlog_syncjob *j)
{
    if (j->fd >= 0)
        close(j->fd);
    free(j->path);
    j->fd = -1;
    j->path = NULL;
}

int txlog_error(const struct txlog *l)
{
    return l->broken;
}

uint64_t txlog_last_txid(const struct txlog *l)
{
    return l->have_last ? l->last_txid : 0;
}

uint64_t txlog_last_term(const struct txlog *l)
{
    return l->have_last ? l->last_term : 0;
}

uint64_t txlog_bytes_written(const struct txlog *l)
{
    return l->bytes_written;
}

void txlog_close(struct txlog *l)
{
    if (!l)
        return;
    seg_close(l);
    ZSTD_freeCCtx(l->cctx);
    if (l->xs)
        XXH3_freeState(l->xs);
    free(l->raw);
    free(l->out);
    free(l->dir);
    free(l);
}

int txlog_open(const char *dir, const uint8_t dbid[16], uint64_t seg_size, struct txlog **out,
               struct txlog_tail *tail, char *err, size_t errlen)
{
    struct txlog_newest nw;
    struct txlog *l;
    int rc;

    *out = NULL;
    lv_seterr(err, errlen, "%s", "");
    memset(tail, 0, sizeof(*tail));
    l = calloc(1, sizeof(*l));
    if (!l)
        return LV_ENOMEM;
    l->fd = -1;
    l->seg_size = seg_size ? seg_size : 64u << 20;
    memcpy(l->dbid, dbid, 16);
    l->dir = strdup(dir);
    l->cctx = ZSTD_createCCtx();
    l->xs = XXH3_createState();
    if (!l->dir || !l->cctx || !l->xs) {
        rc = LV_ENOMEM;
        goto out_close_log;
    }
    ZSTD_CCtx_setParameter(l->cctx, ZSTD_c_compressionLevel, TXLOG_ZSTD_LEVEL);
    ZSTD_CCtx_setParameter(l->cctx, ZSTD_c_checksumFlag, 0);
    rc = txlog_scan(dir, dbid, tail, &nw, err, errlen);
    if (rc)
        goto out_close_log;
    /* The writer continues the newest segment (L3: its torn tail is gone). */
    l->fd = nw.fd;
    l->seg_path = nw.path;
    l->seg_first = nw.first;
    l->seg_end = nw.end;
    l->resv_end = nw.end;
    l->have_last = tail->last_txid != 0;
    l->last_txid = tail->last_txid;
    l->last_post = tail->last_post;
    l->last_term = tail->last_term;
    /* What an earlier process wrote may still be in the page cache only:
     * the first txlog_sync fsyncs it (and its directory). */
    l->dirty = l->fd >= 0;
    l->dir_unsynced = l->fd >= 0;
    l->wgen++;
    assert_writer_state(l);
    *out = l;
    return 0;

out_close_log:
    txlog_close(l);
    return rc;
}

int txlog_append_raw(struct txlog *l, const void *rec, size_t len)
{
    struct txlog_hdr h;
    char err[256];
    int rc;

    assert_writer_state(l);
    if (l->broken)
        return l->broken;
    if (l->state != REC_IDLE) {
        LV_ERROR("txlog: append_raw with a record in progress");
        return LV_EINVAL;
    }
    rc = txlog_record_check(rec, len, &h, err, sizeof err);
    if (rc) {
        LV_ERROR("txlog %s: refusing a raw record: %s", l->dir, err);
        return rc;
    }
    if (memcmp(h.dbid, l->dbid, 16) != 0) {
        LV_ERROR("txlog %s: TXID %" PRIu64 " belongs to another database", l->dir, h.txid);
        return LV_ECHAIN;
    }
    if (l->have_last && h.txid != l->last_txid + 1) {
        LV_ERROR("txlog %s: TXID %" PRIu64 " does not follow %" PRIu64, l->dir, h.txid, l->last_txid);
        return LV_EGAP;
    }
    if (l->have_last && h.pre_cksum != l->last_post) {
        LV_ERROR("txlog %s: TXID %" PRIu64 " pre checksum %016" PRIx64 " != previous post %016" PRIx64, l->dir,
                 h.txid, h.pre_cksum, l->last_post);
        return LV_ECHAIN;
    }
    if (l->have_last && h.term < l->last_term) {
        LV_ERROR("txlog %s: TXID %" PRIu64 " has term %" PRIu64 " but the log already holds term %" PRIu64
                 ": it was written by a deposed primary; refused",
                 l->dir, h.txid, h.term, l->last_term);
        return LV_ECHAIN;
    }
    rc = seg_prepare(l, h.txid, len, 0);
    if (rc)
        return rc;
    l->rec_start = l->seg_end;
    rc = sys_pwrite_all(l->fd, rec, len, (off_t)l->seg_end, l->seg_path);
    if (rc) {
        rec_drop(l, 1);
        return l->broken ? l->broken : rc;
    }
    l->seg_end += len;
    if (l->resv_end < l->seg_end)
        l->resv_end = l->seg_end;
    l->bytes_written += len;
    l->dirty = 1;
    l->wgen++;
    l->have_last = 1;
    l->last_txid = h.txid;
    l->last_post = h.post_cksum;
    l->last_term = h.term;
    assert_writer_state(l);
    return 0;
}

int txlog_append_raws(struct txlog *l, const void *const *recs, const size_t *lens, size_t n)
{
    struct txlog_hdr h;
    uint64_t total = 0, txid, post, term;
    int have;
    char err[256];
    uint8_t *buf = NULL;
    int rc = 0;

    assert_writer_state(l);
    if (l->broken)
        return l->broken;
    if (n < 2 || l->state != REC_IDLE || l->fd < 0 || l->seg_end <= TXLOG_SEG_HDR_SIZE)
        goto one_by_one;
    /* Check the whole run as txlog_append_raw would, record by record. */
    have = l->have_last;
    txid = l->last_txid;
    post = l->last_post;
    term = l->last_term;
    for (size_t i = 0; i < n; i++) {
        rc = txlog_record_check(recs[i], lens[i], &h, err, sizeof err);
        if (rc || memcmp(h.dbid, l->dbid, 16) != 0 ||
            (have && (h.txid != txid + 1 || h.pre_cksum != post || h.term < term)))
            goto one_by_one; /* the single path reports the exact error */
        have = 1;
        txid = h.txid;
        post = h.post_cksum;
        term = h.term;
        total += lens[i];
    }
    if (l->seg_end + total > l->seg_size)
        goto one_by_one; /* a roll-over inside the run */
    buf = malloc((size_t)total);
    if (!buf)
        goto one_by_one;
    for (size_t i = 0, off = 0; i < n; off += lens[i], i++)
        memcpy(buf + off, recs[i], lens[i]);
    l->rec_start = l->seg_end;
    rc = sys_pwrite_all(l->fd, buf, (size_t)total, (off_t)l->seg_end, l->seg_path);
    free(buf);
    if (rc) {
        rec_drop(l, 1);
        return l->broken ? l->broken : rc;
    }
    l->seg_end += total;
    if (l->resv_end < l->seg_end)
        l->resv_end = l->seg_end;
    l->bytes_written += total;
    l->dirty = 1;
    l->wgen++;
    l->have_last = 1;
    l->last_txid = txid;
    l->last_post = post;
    l->last_term = term;
    assert_writer_state(l);
    return 0;
one_by_one:
    for (size_t i = 0; i < n; i++) {
        rc = txlog_append_raw(l, recs[i], lens[i]);
        if (rc)
            return rc;
    }
    return 0;
}
