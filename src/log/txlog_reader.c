/*
 * txlog_reader.c -- the streaming reader of a log directory or of one
 * in-memory segment image (an archive object).
 *
 * It decodes headers one by one (skipping records below from_txid by
 * their lengths), checks each against the chain so far (txlog_link_check:
 * database ID, first TXID of the segment, continuity, checksum chain), and
 * streams pages through ZSTD_decompressStream into a one-entry buffer;
 * after the last page it checks the frame end, the trailer and the page
 * count.  A directory reader treats an incomplete record at the end of the
 * newest segment as "not written yet" (LV_ENOENT) and picks up growth and
 * new segments on later calls, so it can tail a live log (L7 of txlog.c):
 * this is what the replication sender reads with (txlog_reader_raw hands
 * it each record byte for byte, never decompressed or recompressed).
 *
 * STATES of a reader: between records (in_rec 0) -> txlog_reader_next ->
 * in a record (in_rec 1, pages_done 0) -> txlog_reader_page ... -> pages
 * done (pages_done 1, payload and trailer verified) -> txlog_reader_next.
 * A failure leaves the reader where it was, with the message in err.
 *
 * THREADS: one thread at a time per reader; readers run while the writer
 * appends.
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
#include <zstd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"

/* No lock: a reader is used by one thread at a time (its caller's). */
struct txlog_reader {
    char *dir;              /* directory (owned), NULL for a memory reader */
    uint64_t *segs;         /* first TXIDs of the known segments (owned) */
    size_t nsegs;           /* entries in segs */
    size_t seg_i;           /* index of the open segment in segs */
    int seg_open;           /* src holds a segment */
    struct txlog_src src;   /* the open segment */
    struct txlog_seg_hdr sh; /* its header */
    int have_dbid;          /* dbid below is set */
    uint8_t dbid[16];       /* database ID of the first segment; all must match */
    uint32_t seg_nrec;      /* records seen in the open segment */
    uint64_t from_txid;     /* records below are skipped */
    uint64_t off;           /* offset of the current (or next) record */
    uint64_t next_off;      /* offset after the current record */
    struct txlog_link link; /* the chain so far (link.dbid points at dbid) */

    /* Current record payload stream. */
    int in_rec;             /* a header was returned */
    int pages_done;         /* LV_ENOENT was returned for its pages */
    struct txlog_hdr cur;   /* its header */
    uint64_t in_read;       /* stored bytes consumed */
    uint32_t pages_out;     /* pages returned */
    uint32_t last_pgno;     /* last page number returned */
    size_t zret;            /* last ZSTD_decompressStream result (0: frame complete) */
    ZSTD_DCtx *dctx;        /* decompression context (reused) */
    XXH3_state_t *xs;       /* hash of the stored bytes consumed */
    uint8_t *inbuf;         /* file input chunk (TXLOG_RD_CHUNK) */
    ZSTD_inBuffer zin;      /* unconsumed input */
    uint8_t *entry;         /* one decoded (pgno, page) entry */
    size_t entry_cap;       /* bytes allocated for entry */
    char err[512];          /* last error message */
};

static int rd_fail(struct txlog_reader *r, uint64_t txid, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int rd_fail(struct txlog_reader *r, uint64_t txid, const char *fmt, ...)
{
    char what[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(r->err, sizeof(r->err), "%s: offset %" PRIu64 ": TXID %" PRIu64 ": %s",
             r->src.name ? r->src.name : "?", r->off, txid, what);
    LV_ERROR("txlog: %s", r->err);
    return LV_ECORRUPT;
}

static struct txlog_reader *rd_alloc(void)
{
    struct txlog_reader *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->src.fd = -1;
    r->dctx = ZSTD_createDCtx();
    r->xs = XXH3_createState();
    if (!r->dctx || !r->xs) {
        txlog_reader_close(r);
        return NULL;
    }
    return r;
}

/* Check and adopt the header of the just-opened segment in r->src. */
static int rd_seg_header(struct txlog_reader *r)
{
    uint8_t hb[TXLOG_SEG_HDR_SIZE];
    int rc;

    r->off = 0;
    if (r->src.size < TXLOG_SEG_HDR_SIZE)
        return rd_fail(r, 0, "segment shorter than its header");
    rc = txlog_src_read(&r->src, 0, hb, sizeof(hb));
    if (rc)
        return rc;
    rc = txlog_seg_hdr_decode(hb, &r->sh);
    if (rc)
        return rd_fail(r, 0, rc == LV_EVERSION ? "unsupported segment version" : "invalid segment header");
    if (r->have_dbid && memcmp(r->dbid, r->sh.dbid, 16) != 0)
        return rd_fail(r, r->sh.first, "segment belongs to another database");
    if (r->dir && r->sh.first != r->segs[r->seg_i])
        return rd_fail(r, r->sh.first, "segment header first TXID does not match the file name");
    if (r->link.have && r->sh.first != r->link.prev_txid + 1)
        return rd_fail(r, r->sh.first, "TXID gap: expected TXID %" PRIu64 " at segment start", r->link.prev_txid + 1);
    memcpy(r->dbid, r->sh.dbid, 16);
    r->have_dbid = 1;
    r->link.dbid = r->dbid;
    r->seg_nrec = 0;
    r->off = TXLOG_SEG_HDR_SIZE;
    return 0;
}

/* Open segment segs[i] of a directory reader. */
static int rd_open_seg(struct txlog_reader *r, size_t i)
{
    int rc;

    txlog_src_close(&r->src);
    r->seg_open = 0;
    r->seg_i = i;
    r->src.name = txlog_seg_path(r->dir, r->segs[i]);
    if (!r->src.name)
        return LV_ENOMEM;
    r->src.fd = sys_open(r->src.name, O_RDONLY | O_CLOEXEC, 0);
    if (r->src.fd < 0) {
        rc = r->src.fd;
        r->src.fd = -1;
        snprintf(r->err, sizeof(r->err), "%s: cannot open segment: %s", r->src.name, lv_strerror(rc));
        return rc;
    }
    /* A segment read while it is written would have its atime updated by
     * each read (relatime: mtime is newer), a journalled inode write: not
     * for the files this process owns; elsewhere EPERM, harmless. */
    int fl = fcntl(r->src.fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(r->src.fd, F_SETFL, fl | O_NOATIME);
    rc = txlog_fd_size(r->src.fd, r->src.name, &r->src.size);
    if (rc)
        return rc;
    r->seg_open = 1;
    return rd_seg_header(r);
}

/* Re-list the directory; 1 if segments newer than the open one exist. */
static int rd_rescan(struct txlog_reader *r)
{
    uint64_t *v, cur = r->segs[r->seg_i];
    size_t n, i;

    if (txlog_seg_list(r->dir, &v, &n) != 0)
        return 0;
    for (i = 0; i < n && v[i] != cur; i++)
        ;
    if (i == n) {
        /* The open segment vanished (pruned): keep the old list. */
        free(v);
        return 0;
    }
    free(r->segs);
    r->segs = v;
    r->nsegs = n;
    r->seg_i = i;
    return i + 1 < n;
}

/* At the end of the open segment (or before an incomplete record at off):
 * 1 if the segment grew, 2 if a newer segment was opened, 0 if this is the
 * end of the log for now, or negative. */
/* Did the open segment file grow?  1 (size updated), 0, or negative. */
static int rd_grew(struct txlog_reader *r)
{
    uint64_t size = 0;
    int rc = txlog_fd_size(r->src.fd, r->src.name, &size);

    if (rc)
        return rc;
    if (size <= r->src.size)
        return 0;
    r->src.size = size;
    return 1;
}

static int rd_advance(struct txlog_reader *r)
{
    int rc;

    if (!r->dir)
        return 0;
    rc = rd_grew(r);
    if (rc)
        return rc;
    if (!(r->seg_i + 1 < r->nsegs || rd_rescan(r)))
        return 0;
    /* A newer segment exists, so the writer finished this one; pick up
     * anything written to it just before the roll-over. */
    rc = rd_grew(r);
    if (rc)
        return rc;
    if (r->off < r->src.size)
        return rd_fail(r, r->link.have ? r->link.prev_txid + 1 : r->sh.first,
                       "truncated record in a segment that is not the last");
    rc = rd_open_seg(r, r->seg_i + 1);
    return rc ? rc : 2;
}

/* Read the header of the record at r->off into *h.  0; 1 if the record is
 * not complete in the file (yet); or an error, reported. */
static int rd_header(struct txlog_reader *r, struct txlog_hdr *h)
{
    uint8_t hb[TXLOG_HDR_SIZE];
    uint64_t expect = r->link.have ? r->link.prev_txid + 1 : r->sh.first;
    int rc;

    if (r->src.size - r->off < TXLOG_HDR_SIZE)
        return 1;
    rc = txlog_src_read(&r->src, r->off, hb, sizeof(hb));
    if (rc)
        return rc;
    if (txlog_all_zero(hb, sizeof(hb)))
        return 1;
    rc = txlog_hdr_decode(hb, h);
    if (rc)
        return rd_fail(r, expect, rc == LV_EVERSION ? "unsupported record version" : "invalid record header");
    return TXLOG_HDR_SIZE + h->stored_len + TXLOG_TRAILER_SIZE > r->src.size - r->off;
}

/* Find the next record at or after from_txid: its header in *h, checked
 * against the chain.  0, LV_ENOENT at the end (for now), or negative. */
static int rd_seek_record(struct txlog_reader *r, struct txlog_hdr *h)
{
    char what[200];
    int rc;

    for (;;) {
        rc = r->off >= r->src.size ? 1 : rd_header(r, h);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            if (r->off < r->src.size && !r->dir)
                return rd_fail(r, r->link.have ? r->link.prev_txid + 1 : r->sh.first,
                               "segment image ends inside a record");
            rc = rd_advance(r);
            if (rc < 0)
                return rc;
            if (rc == 0)
                return LV_ENOENT; /* not written yet */
            continue;
        }
        if (txlog_link_check(&r->link, r->seg_nrec, r->sh.first, h, what, sizeof(what)) != 0)
            return rd_fail(r, h->txid, "%s", what);
        txlog_link_advance(&r->link, h);
        r->seg_nrec++;
        if (h->txid >= r->from_txid)
            return 0;
        r->off += TXLOG_HDR_SIZE + h->stored_len + TXLOG_TRAILER_SIZE;
    }
}

int txlog_reader_next(struct txlog_reader *r, struct txlog_hdr *h)
{
    int rc;

    if (!r->seg_open)
        return LV_ENOENT;
    if (r->in_rec) {
        r->off = r->next_off;
        r->in_rec = 0;
    }
    rc = rd_seek_record(r, h);
    if (rc)
        return rc;
    rc = txlog_grow(&r->entry, &r->entry_cap, 4 + (size_t)h->page_size);
    if (rc)
        return rc;
    r->cur = *h;
    r->in_rec = 1;
    r->pages_done = 0;
    r->next_off = r->off + TXLOG_HDR_SIZE + h->stored_len + TXLOG_TRAILER_SIZE;
    r->in_read = 0;
    r->pages_out = 0;
    r->last_pgno = 0;
    r->zret = 1;
    r->zin.src = NULL;
    r->zin.size = r->zin.pos = 0;
    XXH3_64bits_reset(r->xs);
    ZSTD_DCtx_reset(r->dctx, ZSTD_reset_session_only);
    return 0;
}

/* Make more stored input available in r->zin; 0, or LV_ECORRUPT at the
 * end of the stored payload. */
static int rd_refill(struct txlog_reader *r)
{
    uint64_t remain = r->cur.stored_len - r->in_read;
    uint64_t at = r->off + TXLOG_HDR_SIZE + r->in_read;
    size_t n;
    int rc;

    if (remain == 0)
        return rd_fail(r, r->cur.txid, "payload ends before %u pages were decoded", r->cur.npages);
    if (r->src.mem) {
        n = remain > TXLOG_RD_CHUNK ? TXLOG_RD_CHUNK : (size_t)remain;
        r->zin.src = r->src.mem + at;
    } else {
        if (!r->inbuf) {
            r->inbuf = malloc(TXLOG_RD_CHUNK);
            if (!r->inbuf)
                return LV_ENOMEM;
        }
        n = remain > TXLOG_RD_CHUNK ? TXLOG_RD_CHUNK : (size_t)remain;
        rc = txlog_src_read(&r->src, at, r->inbuf, n);
        if (rc)
            return rc;
        r->zin.src = r->inbuf;
    }
    XXH3_64bits_update(r->xs, r->zin.src, n);
    r->zin.size = n;
    r->zin.pos = 0;
    r->in_read += n;
    return 0;
}

/* Decode the next entry into r->entry (len bytes); 0, 1 if the payload
 * ended cleanly before any byte of it, or negative. */
static int rd_entry(struct txlog_reader *r, size_t len)
{
    ZSTD_outBuffer o = { r->entry, len, 0 };
    size_t before;
    int rc;

    while (o.pos < o.size) {
        if (r->cur.comp == TXLOG_COMP_NONE) {
            size_t n;
            if (r->zin.pos == r->zin.size) {
                if (r->in_read == r->cur.stored_len)
                    return o.pos == 0 ? 1 : rd_fail(r, r->cur.txid, "payload ends inside a page");
                rc = rd_refill(r);
                if (rc)
                    return rc;
            }
            n = r->zin.size - r->zin.pos;
            if (n > o.size - o.pos)
                n = o.size - o.pos;
            memcpy((uint8_t *)o.dst + o.pos, (const uint8_t *)r->zin.src + r->zin.pos, n);
            o.pos += n;
            r->zin.pos += n;
            continue;
        }
        if (r->zret == 0)
            return o.pos == 0 ? 1 : rd_fail(r, r->cur.txid, "payload ends inside a page");
        if (r->zin.pos == r->zin.size && r->in_read < r->cur.stored_len) {
            rc = rd_refill(r);
            if (rc)
                return rc;
        }
        before = o.pos;
        r->zret = ZSTD_decompressStream(r->dctx, &o, &r->zin);
        if (ZSTD_isError(r->zret))
            return rd_fail(r, r->cur.txid, "zstd: %s", ZSTD_getErrorName(r->zret));
        if (r->zret != 0 && o.pos == before && r->zin.pos == r->zin.size && r->in_read == r->cur.stored_len)
            return rd_fail(r, r->cur.txid, "zstd frame is incomplete");
    }
    return 0;
}

/* All npages were returned: the payload must end here, exactly, and match
 * the trailer. */
static int rd_finish(struct txlog_reader *r)
{
    uint8_t tb[TXLOG_TRAILER_SIZE];
    int rc;

    /* Anything left must decode to nothing; rd_entry returns 1 then. */
    rc = rd_entry(r, 1);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return rd_fail(r, r->cur.txid, "payload holds more than %u pages", r->cur.npages);
    if (r->in_read != r->cur.stored_len || r->zin.pos != r->zin.size)
        return rd_fail(r, r->cur.txid, "trailing bytes after the payload");
    rc = txlog_src_read(&r->src, r->off + TXLOG_HDR_SIZE + r->cur.stored_len, tb, sizeof(tb));
    if (rc)
        return rc;
    if (lv_get64(tb) != XXH3_64bits_digest(r->xs))
        return rd_fail(r, r->cur.txid, "payload checksum mismatch");
    r->pages_done = 1;
    return LV_ENOENT;
}

int txlog_reader_page(struct txlog_reader *r, uint32_t *pgno, const void **data)
{
    size_t len;
    uint32_t p;
    int rc;

    if (!r->in_rec || r->pages_done)
        return LV_ENOENT;
    if (r->pages_out == r->cur.npages)
        return rd_finish(r);
    len = 4 + (size_t)r->cur.page_size;
    rc = rd_entry(r, len);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return rd_fail(r, r->cur.txid, "payload holds %u pages, header says %u", r->pages_out, r->cur.npages);
    p = lv_get32(r->entry);
    if (p == 0 || p > r->cur.db_pages || p <= r->last_pgno)
        return rd_fail(r, r->cur.txid, "page number %u out of order or beyond %u pages", p, r->cur.db_pages);
    r->last_pgno = p;
    r->pages_out++;
    *pgno = p;
    *data = r->entry + 4;
    return 0;
}

/* The current record byte for byte (replication sends it unchanged).  The
 * header was checked by txlog_reader_next; the trailer is checked here
 * over the bytes read, so what leaves is what the writer stored. */
int txlog_reader_raw(struct txlog_reader *r, void **out, size_t *len)
{
    uint64_t total, stored;
    uint8_t *buf;
    int rc;

    *out = NULL;
    *len = 0;
    if (!r->in_rec)
        return LV_EINVAL;
    stored = r->cur.stored_len;
    total = r->next_off - r->off;
    LV_ASSERT(total == TXLOG_HDR_SIZE + stored + TXLOG_TRAILER_SIZE);
    if (total > SIZE_MAX)
        return LV_ENOMEM;
    buf = malloc((size_t)total);
    if (!buf)
        return LV_ENOMEM;
    rc = txlog_src_read(&r->src, r->off, buf, (size_t)total);
    if (rc == 0 && XXH3_64bits(buf + TXLOG_HDR_SIZE, (size_t)stored) != lv_get64(buf + TXLOG_HDR_SIZE + stored))
        rc = rd_fail(r, r->cur.txid, "payload checksum mismatch");
    if (rc) {
        free(buf);
        return rc;
    }
    r->pages_done = 1;
    *out = buf;
    *len = (size_t)total;
    return 0;
}

int txlog_reader_open(const char *dir, uint64_t from_txid, struct txlog_reader **out)
{
    struct txlog_reader *r;
    size_t i = 0;
    int rc;

    *out = NULL;
    r = rd_alloc();
    if (!r)
        return LV_ENOMEM;
    r->dir = strdup(dir);
    if (!r->dir) {
        rc = LV_ENOMEM;
        goto out_close;
    }
    r->from_txid = from_txid;
    rc = txlog_seg_list(dir, &r->segs, &r->nsegs);
    if (rc)
        goto out_close;
    if (r->nsegs == 0) {
        rc = LV_ENOENT;
        snprintf(r->err, sizeof(r->err), "%s: no log segments", dir);
        goto out_close;
    }
    /* The last segment whose first TXID <= from_txid holds it.  A segment
     * listed but gone when opened was pruned meanwhile (the archiver deletes
     * old segments while readers such as `log ls` run): list again. */
    for (int tries = 0;; tries++) {
        i = 0;
        while (i + 1 < r->nsegs && r->segs[i + 1] <= from_txid)
            i++;
        rc = rd_open_seg(r, i);
        if (rc != LV_ENOENT || tries == 5)
            break;
        free(r->segs);
        r->segs = NULL;
        rc = txlog_seg_list(dir, &r->segs, &r->nsegs);
        if (rc == 0 && r->nsegs == 0)
            rc = LV_ENOENT;
        if (rc)
            break;
        r->err[0] = '\0';
    }
    if (rc)
        goto out_close;
    *out = r;
    return 0;
out_close:
    txlog_reader_close(r);
    return rc;
}

int txlog_reader_open_mem(const void *buf, size_t len, const char *name, struct txlog_reader **out)
{
    struct txlog_reader *r;
    int rc;

    *out = NULL;
    r = rd_alloc();
    if (!r)
        return LV_ENOMEM;
    r->src.mem = buf;
    r->src.size = len;
    r->src.name = strdup(name ? name : "(memory)");
    if (!r->src.name) {
        txlog_reader_close(r);
        return LV_ENOMEM;
    }
    r->seg_open = 1;
    rc = rd_seg_header(r);
    if (rc) {
        txlog_reader_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

const char *txlog_reader_where(const struct txlog_reader *r, uint64_t *offset)
{
    if (offset)
        *offset = r->off;
    return r->src.name ? r->src.name : "?";
}

const char *txlog_reader_error(const struct txlog_reader *r)
{
    return r->err;
}

void txlog_reader_close(struct txlog_reader *r)
{
    if (!r)
        return;
    txlog_src_close(&r->src);
    ZSTD_freeDCtx(r->dctx);
    if (r->xs)
        XXH3_freeState(r->xs);
    free(r->inbuf);
    free(r->entry);
    free(r->segs);
    free(r->dir);
    free(r);
}

