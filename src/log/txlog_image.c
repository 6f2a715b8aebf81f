/*
 * txlog_image.c -- segment images for the archiver.
 *
 * txlog_segment_image copies records verbatim (header + stored payload +
 * trailer, never decompressed) from the local segment files into one
 * in-memory image in the "Segment file" format:
 *
 *   image[0..63]   segment header: dbid, first TXID = from_txid, creation
 *                  time = commit time of the first record copied (so the
 *                  same range always yields the same bytes)
 *   image[64..]    the records from_txid..*last_txid, byte-identical to
 *                  the local files
 *
 * Every copied record is checked as it is copied: header checksum and
 * sanity (txlog_hdr_decode), database ID, TXID continuity (also across
 * segment files and for the skipped records before from_txid), the
 * pre/post checksum chain and the payload trailer (XXH3-64 of the stored
 * bytes, hashed in the image buffer).  Records below from_txid in the
 * first segment are only decoded and skipped by length.
 *
 * Concurrency with the writer (one pwrite per buffered record; streamed
 * records get their real header last; a record never spans segments; a new
 * segment is created only after the previous record is complete): the
 * segment list is read once and each file's size is taken after that, so
 * every listed segment but the last is complete.  In the last segment an
 * incomplete record (file ends inside it, or its header is still all
 * zeros) and a segment shorter than its header are "not written yet": the
 * image stops before them.  The same conditions in an earlier segment are
 * corruption.  A segment that vanishes (pruned) ends the image, or gives
 * LV_ENOENT when nothing was copied yet.
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

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"

/* Builder state for txlog_segment_image.  One thread (the caller's). */
struct img {
    uint64_t from_txid;    /* first TXID to copy */
    uint64_t to_txid;      /* last TXID to copy (UINT64_MAX: no bound) */
    uint64_t max_bytes;    /* image size bound (UINT64_MAX: no bound) */
    uint8_t *buf;          /* the image (owned until handed to the caller) */
    size_t len;            /* bytes of buf in use */
    size_t cap;            /* bytes allocated */
    struct txlog_link link; /* the chain of records seen (skipped or copied); link.dbid: expected ID */
    uint64_t ncopied;      /* records copied */
    uint64_t last_txid;    /* TXID of the last record copied */
    int64_t first_time_us; /* commit time of the first record copied */
    int done;              /* a bound (to_txid, max_bytes) was reached */
};

/* One segment file being copied from. */
struct img_seg {
    const char *path;          /* its path (borrowed) */
    int fd;                    /* open read-only */
    uint64_t size;             /* its size when opened */
    int last;                  /* the newest listed segment */
    struct txlog_seg_hdr sh;   /* its header */
};

static int img_fail(const char *path, uint64_t off, uint64_t txid, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int img_fail(const char *path, uint64_t off, uint64_t txid, const char *fmt, ...)
{
    char what[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    LV_ERROR("txlog: segment image: %s: offset %" PRIu64 ": TXID %" PRIu64 ": %s", path, off, txid, what);
    return LV_ECORRUPT;
}

static uint64_t img_expect(const struct img *im, uint64_t seg_first)
{
    return im->link.have ? im->link.prev_txid + 1 : seg_first;
}

/* Read and check the header of segment sg (listed as first TXID first).
 * 0; 1 if the newest segment is still shorter than its header; or an
 * error, reported. */
static int img_seg_header(struct img *im, struct img_seg *sg, uint64_t first)
{
    uint8_t hb[TXLOG_SEG_HDR_SIZE];
    uint64_t expect = img_expect(im, first);
    int rc;

    if (sg->size < TXLOG_SEG_HDR_SIZE)
        return sg->last ? 1 : img_fail(sg->path, 0, expect, "segment shorter than its header");
    rc = sys_pread_all(sg->fd, hb, TXLOG_SEG_HDR_SIZE, 0, sg->path);
    if (rc)
        return rc;
    rc = txlog_seg_hdr_decode(hb, &sg->sh);
    if (rc) {
        img_fail(sg->path, 0, expect, rc == LV_EVERSION ? "unsupported segment version" : "invalid segment header");
        return rc;
    }
    if (memcmp(sg->sh.dbid, im->link.dbid, 16) != 0)
        return img_fail(sg->path, 0, expect, "segment belongs to another database");
    if (sg->sh.first != first)
        return img_fail(sg->path, 0, sg->sh.first, "segment header first TXID does not match the file name");
    if (im->link.have && sg->sh.first != expect)
        return img_fail(sg->path, 0, sg->sh.first, "TXID gap: expected TXID %" PRIu64 " at segment start", expect);
    return 0;
}

/* Read the header of the record at off into *h (hb: its bytes).  0; 1 if
 * the record is not complete in the file (*torn says why); or an error. */
static int img_rec_header(const struct img *im, const struct img_seg *sg, uint64_t off, uint8_t *hb,
                          struct txlog_hdr *h, const char **torn)
{
    int rc;

    if (sg->size - off < TXLOG_HDR_SIZE) {
        *torn = "file ends inside a record header";
        return 1;
    }
    rc = sys_pread_all(sg->fd, hb, TXLOG_HDR_SIZE, (off_t)off, sg->path);
    if (rc)
        return rc;
    if (txlog_all_zero(hb, TXLOG_HDR_SIZE)) {
        *torn = "record header is all zeros";
        return 1;
    }
    rc = txlog_hdr_decode(hb, h);
    if (rc) {
        img_fail(sg->path, off, img_expect(im, sg->sh.first),
                 rc == LV_EVERSION ? "unsupported record version" : "invalid record header");
        return rc == LV_EVERSION ? LV_EVERSION : LV_ECORRUPT;
    }
    if (TXLOG_HDR_SIZE + h->stored_len + TXLOG_TRAILER_SIZE > sg->size - off) {
        *torn = "file ends inside the record";
        return 1;
    }
    return 0;
}

/* Copy the record h (header bytes hb) at off into the image, checking its
 * payload trailer.  0 or negative. */
static int img_copy(struct img *im, const struct img_seg *sg, uint64_t off, const uint8_t *hb,
                    const struct txlog_hdr *h)
{
    uint64_t rec_len = TXLOG_HDR_SIZE + h->stored_len + TXLOG_TRAILER_SIZE;
    uint8_t *rec;
    int rc;

    if (im->ncopied == 0 && h->txid != im->from_txid)
        return LV_ENOENT; /* only possible when the first segment starts above from_txid */
    rc = txlog_grow(&im->buf, &im->cap, im->len + (size_t)rec_len);
    if (rc)
        return rc;
    rec = im->buf + im->len;
    memcpy(rec, hb, TXLOG_HDR_SIZE);
    rc = sys_pread_all(sg->fd, rec + TXLOG_HDR_SIZE, (size_t)(rec_len - TXLOG_HDR_SIZE),
                       (off_t)(off + TXLOG_HDR_SIZE), sg->path);
    if (rc)
        return rc;
    /* The header bytes were decoded from hb, which is what was copied. */
    if (lv_get64(rec + TXLOG_HDR_SIZE + h->stored_len) != XXH3_64bits(rec + TXLOG_HDR_SIZE, (size_t)h->stored_len))
        return img_fail(sg->path, off, h->txid, "payload checksum mismatch");
    if (im->ncopied == 0)
        im->first_time_us = h->time_us;
    im->len += (size_t)rec_len;
    im->ncopied++;
    im->last_txid = h->txid;
    if (h->txid == im->to_txid)
        im->done = 1;
    return 0;
}

/* Walk the records of sg from its header on, copying the wanted ones. */
static int img_records(struct img *im, const struct img_seg *sg)
{
    uint8_t hb[TXLOG_HDR_SIZE];
    struct txlog_hdr h;
    uint64_t off = TXLOG_SEG_HDR_SIZE, rec_len;
    uint32_t nrec = 0;
    const char *torn = NULL;
    char what[200];
    int rc;

    while (off < sg->size && !im->done) {
        rc = img_rec_header(im, sg, off, hb, &h, &torn);
        if (rc == 1)
            break;
        if (rc)
            return rc;
        rec_len = TXLOG_HDR_SIZE + h.stored_len + TXLOG_TRAILER_SIZE;
        if (txlog_link_check(&im->link, nrec, sg->sh.first, &h, what, sizeof(what)) != 0)
            return img_fail(sg->path, off, h.txid, "%s", what);
        if (h.txid > im->to_txid || (h.txid >= im->from_txid && im->ncopied &&
                                     (uint64_t)im->len + rec_len > im->max_bytes)) {
            im->done = 1;
            break;
        }
        if (h.txid >= im->from_txid) {
            rc = img_copy(im, sg, off, hb, &h);
            if (rc)
                return rc;
        }
        txlog_link_advance(&im->link, &h);
        nrec++;
        off += rec_len;
    }
    if (torn && !sg->last)
        return img_fail(sg->path, off, img_expect(im, sg->sh.first),
                        "truncated record in a segment that is not the last (%s)", torn);
    if (torn) {
        LV_DEBUG("txlog: segment image: %s: offset %" PRIu64 ": %s; treated as not written yet", sg->path, off, torn);
        im->done = 1;
    }
    return 0;
}

/* Copy the wanted records of segment file `path` (first TXID `first`,
 * the newest listed segment when `last`) into im.  0 (also when the
 * segment vanished: *gone = 1), LV_ECORRUPT, LV_EVERSION or an I/O error. */
static int img_segment(struct img *im, const char *path, uint64_t first, int last, int *gone)
{
    struct img_seg sg = {.path = path, .last = last};
    int rc;

    *gone = 0;
    sg.fd = sys_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (sg.fd < 0) {
        if (sg.fd == LV_ENOENT)
            *gone = 1;
        return sg.fd == LV_ENOENT ? 0 : sg.fd;
    }
    rc = txlog_fd_size(sg.fd, path, &sg.size);
    if (!rc)
        rc = img_seg_header(im, &sg, first);
    if (rc == 1)
        rc = 0; /* the newest segment is being created: nothing in it yet */
    else if (!rc)
        rc = img_records(im, &sg);
    close(sg.fd);
    return rc;
}

int txlog_segment_image(const char *dir, const uint8_t dbid[16], uint64_t from_txid, uint64_t to_txid,
                        uint64_t max_bytes, void **out, size_t *len, uint64_t *last_txid)
{
    struct img im;
    struct txlog_seg_hdr sh;
    uint64_t *segs = NULL;
    size_t nsegs = 0, i = 0;
    char *path;
    int rc, gone;

    *out = NULL;
    *len = 0;
    *last_txid = 0;
    if (from_txid == 0 || (to_txid && to_txid < from_txid))
        return LV_EINVAL;
    memset(&im, 0, sizeof(im));
    im.link.dbid = dbid;
    im.from_txid = from_txid;
    im.to_txid = to_txid ? to_txid : UINT64_MAX;
    im.max_bytes = max_bytes ? max_bytes : UINT64_MAX;
    im.len = TXLOG_SEG_HDR_SIZE;
    rc = txlog_grow(&im.buf, &im.cap, TXLOG_SEG_HDR_SIZE);
    if (rc)
        return rc;

    rc = txlog_seg_list(dir, &segs, &nsegs);
    if (rc)
        goto out_free;
    if (nsegs == 0 || segs[0] > from_txid) {
        rc = LV_ENOENT;
        goto out_free;
    }
    /* The last segment whose first TXID <= from_txid holds it. */
    while (i + 1 < nsegs && segs[i + 1] <= from_txid)
        i++;
    for (; i < nsegs && !im.done; i++) {
        path = txlog_seg_path(dir, segs[i]);
        if (!path) {
            rc = LV_ENOMEM;
            goto out_free;
        }
        rc = img_segment(&im, path, segs[i], i + 1 == nsegs, &gone);
        free(path);
        if (rc)
            goto out_free;
        if (gone)
            break; /* pruned under us: what was copied so far stands */
    }
    if (im.ncopied == 0) {
        rc = LV_ENOENT;
        goto out_free;
    }
    memcpy(sh.dbid, dbid, 16);
    sh.first = from_txid;
    sh.ctime_us = im.first_time_us;
    txlog_seg_hdr_encode(&sh, im.buf);
    *out = im.buf;
    *len = im.len;
    *last_txid = im.last_txid;
    im.buf = NULL;
    rc = 0;
out_free:
    if (rc == LV_ENOENT)
        LV_DEBUG("txlog: segment image: %s: TXID %" PRIu64 " is not in the log", dir, from_txid);
    free(segs);
    free(im.buf);
    return rc;
}

