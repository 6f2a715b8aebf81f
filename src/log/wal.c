/*
 * wal.c -- reading SQLite WAL files: start-up recovery, and a cursor that
 * follows a live WAL commit by commit (wal_read_commits).
 *
 * WAL header (32 bytes, big-endian fields):
 *   0 magic (0x377f0682: checksum words little-endian; 0x377f0683: big-endian)
 *   4 format version 3007000      8 page size
 *  12 checkpoint sequence        16 salt-1      20 salt-2
 *  24 checksum-1, 28 checksum-2 over bytes 0..23
 * Frame: 24-byte header then one page:
 *   0 page number   4 database size after commit (commit frames), else 0
 *   8 salt-1       12 salt-2      16 checksum-1  20 checksum-2
 * The frame checksum is cumulative: it continues from the previous frame's
 * (or the header's) checksum over frame-header bytes 0..7 and the page.
 * A frame is valid if its salts equal the header's and its checksum
 * matches; the WAL holds every transaction up to the last valid commit
 * frame, and nothing after the first invalid frame.
 *
 * Checksum step over 32-bit words x0,x1 (read with the byte order the
 * magic names):  s1 += x0 + s2;  s2 += x1 + s1.
 */
#include "log/wal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/dbhdr.h"
#include "base/lv.h"
#include "base/lvlog.h"

/* Continue the checksum (s[0], s[1]) over n bytes (multiple of 8). */
static void wal_cksum(int big, const uint8_t *b, size_t n, uint32_t s[2])
{
    uint32_t s1 = s[0], s2 = s[1];
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint32_t x0, x1;
        if (big) {
            x0 = lv_get32(b + i);
            x1 = lv_get32(b + i + 4);
        } else {
            x0 = (uint32_t)b[i] | (uint32_t)b[i + 1] << 8 | (uint32_t)b[i + 2] << 16 | (uint32_t)b[i + 3] << 24;
            x1 = (uint32_t)b[i + 4] | (uint32_t)b[i + 5] << 8 | (uint32_t)b[i + 6] << 16 | (uint32_t)b[i + 7] << 24;
        }
        s1 += x0 + s2;
        s2 += x1 + s1;
    }
    s[0] = s1;
    s[1] = s2;
}

int wal_hdr_decode(const uint8_t *b, struct wal_hdr *h)
{
    uint32_t s[2] = {0, 0};
    h->magic = lv_get32(b);
    h->version = lv_get32(b + 4);
    h->page_size = lv_get32(b + 8);
    h->ckpt_seq = lv_get32(b + 12);
    h->salt1 = lv_get32(b + 16);
    h->salt2 = lv_get32(b + 20);
    h->ck1 = lv_get32(b + 24);
    h->ck2 = lv_get32(b + 28);
    if (h->magic != WAL_MAGIC_LE && h->magic != WAL_MAGIC_BE)
        return LV_ECORRUPT;
    if (h->version != 3007000)
        return LV_ECORRUPT;
    if (!dbhdr_page_size_ok(h->page_size))
        return LV_ECORRUPT;
    wal_cksum(h->magic & 1, b, 24, s);
    if (s[0] != h->ck1 || s[1] != h->ck2)
        return LV_ECORRUPT;
    return 0;
}

/* Append commit (first, last, db_pages) to *v (*nv entries, *cap allocated). */
static int commit_push(struct wal_commit **v, size_t *nv, size_t *cap, uint32_t first, uint32_t last,
                       uint32_t db_pages, const uint32_t ck[2])
{
    if (*nv == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct wal_commit *nvp = realloc(*v, nc * sizeof **v);
        if (!nvp)
            return LV_ENOMEM;
        *v = nvp;
        *cap = nc;
    }
    (*v)[(*nv)++] = (struct wal_commit){first, last, db_pages, {ck[0], ck[1]}};
    return 0;
}

/*
 * The cursor (WAL1-WAL3 hold between calls):
 *   WAL1. c->h is a header that decoded, or c->h.magic is 0 and next 0.
 *   WAL2. Frames [0, next) of generation c->h are valid and end with a
 *         commit frame (or next is 0); s is the chain's checksum after
 *         frame next-1.  SQLite never changes such frames before a restart
 *         (it rewrites only frames after the last commit: wal.c iReCksum),
 *         so s stays right however long the reader waits.
 *   WAL3. Frames after the last commit are never returned: a commit is
 *         returned only once its commit frame verifies.
 */
/* Append the fsz bytes of frame at file offset off to k (contiguous). */
static int keep_frame(struct wal_frames *k, const uint8_t *frame, size_t fsz, uint64_t off)
{
    if (k->len == 0)
        k->off = off;
    if (k->full || k->len + fsz > WAL_KEEP_MAX) {
        k->full = 1; /* a prefix is kept; the rest is read from the file */
        return 0;
    }
    if (k->len + fsz > k->cap) {
        size_t nc = k->cap ? k->cap * 2 : 4 * fsz;
        while (nc < k->len + fsz)
            nc *= 2;
        uint8_t *nb = realloc(k->buf, nc);
        if (!nb)
            return LV_ENOMEM;
        k->buf = nb;
        k->cap = nc;
    }
    memcpy(k->buf + k->len, frame, fsz);
    k->len += fsz;
    return 0;
}

int wal_read_commits(int fd, const char *path, struct wal_cursor *c, struct wal_commit **out, size_t *n,
                     int *restarted)
{
    return wal_read_commits_keep(fd, path, c, out, n, restarted, NULL);
}

int wal_read_commits_keep(int fd, const char *path, struct wal_cursor *c, struct wal_commit **out, size_t *n,
                          int *restarted, struct wal_frames *keep)
{
    uint8_t hb[WAL_HDR_SIZE];
    uint8_t *frame = NULL;
    struct wal_commit *v = NULL;
    struct wal_hdr h;
    size_t nv = 0, cap = 0;
    uint32_t s[2], first;
    int rc = 0;
    ssize_t got;

    *out = NULL;
    *n = 0;
    *restarted = 0;
    if (keep) {
        keep->len = 0;
        keep->full = 0;
    }
    got = pread(fd, hb, sizeof hb, 0);
    if (got < 0) {
        LV_ERROR("pread %s: %s", path, strerror(errno));
        return LV_EIO;
    }
    if ((size_t)got < sizeof hb || wal_hdr_decode(hb, &h) != 0)
        return 0;
    if (memcmp(&h, &c->h, sizeof h) != 0) {
        *restarted = c->h.magic != 0;
        c->h = h;
        c->next = 0;
        c->s[0] = h.ck1;
        c->s[1] = h.ck2;
    }
    size_t fsz = WAL_FRAME_HDR_SIZE + h.page_size;
    frame = malloc(fsz);
    if (!frame)
        return LV_ENOMEM;
    s[0] = c->s[0];
    s[1] = c->s[1];
    first = c->next;
    for (uint32_t i = c->next;; i++) {
        got = pread(fd, frame, fsz, (off_t)wal_frame_off(i, h.page_size));
        if (got < 0) {
            LV_ERROR("pread %s: %s", path, strerror(errno));
            rc = LV_EIO;
            goto out_free;
        }
        if ((size_t)got < fsz)
            break;
        uint32_t pgno = lv_get32(frame), commit = lv_get32(frame + 4);
        if (pgno == 0 || lv_get32(frame + 8) != h.salt1 || lv_get32(frame + 12) != h.salt2)
            break;
        wal_cksum(h.magic & 1, frame, 8, s);
        wal_cksum(h.magic & 1, frame + WAL_FRAME_HDR_SIZE, h.page_size, s);
        if (s[0] != lv_get32(frame + 16) || s[1] != lv_get32(frame + 20))
            break;
        if (keep && (rc = keep_frame(keep, frame, fsz, wal_frame_off(i, h.page_size))) != 0)
            goto out_free;
        if (commit) {
            rc = commit_push(&v, &nv, &cap, first, i, commit, s);
            if (rc)
                goto out_free;
            first = i + 1;
            c->next = i + 1; /* WAL2 */
            c->s[0] = s[0];
            c->s[1] = s[1];
        }
    }
    if (keep && nv) { /* only the frames of the commits returned */
        uint64_t end = wal_frame_off(v[nv - 1].last + 1, h.page_size) - keep->off;
        if (end < keep->len)
            keep->len = (size_t)end;
    } else if (keep) {
        keep->len = 0;
    }
    *out = v;
    *n = nv;
    v = NULL;
out_free:
    free(v);
    free(frame);
    return rc;
}

int wal_scan(int fd, const char *path, struct wal_hdr *h, struct wal_commit **out, size_t *n)
{
    struct wal_cursor c;
    int restarted, rc;

    memset(&c, 0, sizeof c);
    rc = wal_read_commits(fd, path, &c, out, n, &restarted);
    *h = c.h;
    return rc;
}

int wal_frame_valid(int fd, uint32_t magic, uint32_t ps, uint32_t k, const uint8_t fh[WAL_FRAME_HDR_SIZE])
{
    uint8_t prev[8], *page = NULL;
    uint32_t s[2];
    int ok = 0;
    /* The chain continues from frame k-1's checksum, or the header's. */
    off_t poff = k == 0 ? 24 : (off_t)wal_frame_off(k - 1, ps) + 16;
    if (pread(fd, prev, 8, poff) != 8)
        return 0;
    page = malloc(ps);
    if (!page)
        return 0;
    if (pread(fd, page, ps, (off_t)wal_frame_off(k, ps) + WAL_FRAME_HDR_SIZE) == (ssize_t)ps) {
        s[0] = lv_get32(prev);
        s[1] = lv_get32(prev + 4);
        wal_cksum(magic & 1, fh, 8, s);
        wal_cksum(magic & 1, page, ps, s);
        ok = s[0] == lv_get32(fh + 16) && s[1] == lv_get32(fh + 20);
    }
    free(page);
    return ok;
}
