/*
 * txlog.c -- the transaction log: record and segment encoding, the
 * streaming writer, the start-up scan, the streaming reader and replay.
 *
 * FORMAT (authoritative text: docs/FORMAT.md; all integers big-endian)
 *
 * Segment file  <dir>/<16 lower-case hex digits of first TXID>.lvseg
 *    0   8  magic "LVTXSEG1"
 *    8   4  format version (1)
 *   12   4  flags (0)
 *   16  16  database ID
 *   32   8  first TXID (TXID of the first record, or of the next record
 *           to be written when the segment is still empty)
 *   40   8  creation time, microseconds since the epoch (signed)
 *   48   8  reserved (0)
 *   56   8  XXH3-64 (seed 0) of bytes 0..55
 *   64      records, back to back, up to end of file
 *
 * Record = 112-byte header + stored payload + 8-byte trailer
 *    0   4  magic 0x4C565243 "LVRC"        56   8  pre checksum
 *    4   2  version (1)                     64   8  post checksum
 *    6   2  flags (TXLOG_F_*)               72   8  stored payload length
 *    8  16  database ID                     80   8  raw payload length
 *   24   8  TXID                            88   4  WAL salt-1
 *   32   8  commit time (us, signed)        92   4  WAL salt-2
 *   40   4  page size                       96   4  WAL commit frame (1-based, 0 none)
 *   44   4  database pages after commit    100   4  reserved (0)
 *   48   4  pages in payload               104   8  XXH3-64 of bytes 0..103
 *   52   1  compression (0 none, 1 zstd)
 *   53   3  reserved (0)
 * Raw payload: npages x (u32 pgno, page_size bytes), pgno strictly
 * increasing; stored as one zstd frame (compression 1) or as is (0).
 * Trailer: XXH3-64 (seed 0) of the stored payload bytes.
 *
 * WRITER STATES (struct txlog.state)
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
 * segment was created).
 *
 * The writer enforces the invariants the scan checks: TXID = previous + 1
 * and pre checksum = previous post checksum; an empty log starts at TXID 1
 * (with pre checksum 0) or with a snapshot record.
 *
 * START-UP SCAN (txlog_open) verifies every segment header, every record
 * header and payload checksum (the stored bytes are hashed, not
 * decompressed), TXID continuity and the checksum chain.  In the last
 * segment only, an incomplete final record is cut off: the file ends
 * inside it, its header is all zeros, or its header is invalid and no valid
 * record header of this database follows it.  Everything else is
 * LV_ECORRUPT with a message naming the segment, offset and TXID.
 *
 * THREADS: a struct txlog or txlog_reader is used by one thread at a time
 * (the owner locks); one writer per directory.  Readers may run while the
 * writer appends.
 *
 * READER: decodes headers one by one (skipping records below from_txid by
 * their lengths), and streams pages through ZSTD_decompressStream into a
 * one-entry buffer; after the last page it checks the frame end, the
 * trailer and the page count.  A directory reader treats an incomplete
 * record at the end of the newest segment as "not written yet" (LV_ENOENT)
 * and picks up growth and new segments on later calls, so it can tail a
 * live log.
 *
 * APPLY (txlog_apply_*): the one implementation of "apply a record to a
 * database file" (continuity, chain, page-size rule, pwrite of pages,
 * truncate, post checksum, final re-read), shared by txlog_replay and by
 * the archive restore (restore/restore.c), which feeds it records from
 * in-memory segment objects.
 *
 * SEGMENT IMAGES (txlog_segment_image, for the archiver): records are
 * copied byte for byte from the segment files into one in-memory segment
 * image, checked on the way (header, trailer, continuity, chain) but never
 * decompressed; details at the function, end of this file.
 */
#include "log/txlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"

#define SEG_MAGIC "LVTXSEG1"
#define SEG_VERSION 1u
#define REC_MAGIC 0x4C565243u
#define REC_VERSION 1u
#define ZSTD_LEVEL 1
#define RAW_MAX (1u << 20)    /* raw payload bytes buffered before streaming */
#define OUT_CHUNK (1u << 20)  /* streamed output written per pwrite */
#define IO_CHUNK (1u << 20)   /* bytes per pread when hashing or replaying */
#define RD_CHUNK (128u << 10) /* reader input buffer */
#define KNOWN_FLAGS (TXLOG_F_SNAPSHOT | TXLOG_F_RECOVERED)

/* ------------------------------------------------------------------ */
/* Encoding                                                            */
/* ------------------------------------------------------------------ */

static int is_pow2_page(uint32_t ps)
{
    return ps >= 512 && ps <= 65536 && (ps & (ps - 1)) == 0;
}

/* Upper bound on a stored zstd payload for raw_len input bytes; generous
 * (zstd's own bound is raw + raw/256 + small). */
static uint64_t stored_bound(uint64_t raw_len)
{
    return raw_len + raw_len / 128 + 1024;
}

void txlog_hdr_encode(const struct txlog_hdr *h, uint8_t out[TXLOG_HDR_SIZE])
{
    memset(out, 0, TXLOG_HDR_SIZE);
    lv_put32(out + 0, REC_MAGIC);
    lv_put16(out + 4, h->version);
    lv_put16(out + 6, h->flags);
    memcpy(out + 8, h->dbid, 16);
    lv_put64(out + 24, h->txid);
    lv_put64(out + 32, (uint64_t)h->time_us);
    lv_put32(out + 40, h->page_size);
    lv_put32(out + 44, h->db_pages);
    lv_put32(out + 48, h->npages);
    out[52] = h->comp;
    lv_put64(out + 56, h->pre_cksum);
    lv_put64(out + 64, h->post_cksum);
    lv_put64(out + 72, h->stored_len);
    lv_put64(out + 80, h->raw_len);
    lv_put32(out + 88, h->wal_salt1);
    lv_put32(out + 92, h->wal_salt2);
    lv_put32(out + 96, h->wal_frame);
    lv_put64(out + 104, cksum_buf(out, 104));
}

int txlog_hdr_decode(const uint8_t in[TXLOG_HDR_SIZE], struct txlog_hdr *h)
{
    if (lv_get32(in) != REC_MAGIC || lv_get64(in + 104) != cksum_buf(in, 104))
        return LV_ECORRUPT;
    memset(h, 0, sizeof(*h));
    h->version = lv_get16(in + 4);
    if (h->version == 0)
        return LV_ECORRUPT;
    if (h->version > REC_VERSION)
        return LV_EVERSION;
    h->flags = lv_get16(in + 6);
    memcpy(h->dbid, in + 8, 16);
    h->txid = lv_get64(in + 24);
    h->time_us = (int64_t)lv_get64(in + 32);
    h->page_size = lv_get32(in + 40);
    h->db_pages = lv_get32(in + 44);
    h->npages = lv_get32(in + 48);
    h->comp = in[52];
    h->pre_cksum = lv_get64(in + 56);
    h->post_cksum = lv_get64(in + 64);
    h->stored_len = lv_get64(in + 72);
    h->raw_len = lv_get64(in + 80);
    h->wal_salt1 = lv_get32(in + 88);
    h->wal_salt2 = lv_get32(in + 92);
    h->wal_frame = lv_get32(in + 96);
    if (in[53] || in[54] || in[55] || lv_get32(in + 100))
        return LV_ECORRUPT;
    if (h->flags & ~KNOWN_FLAGS)
        return LV_ECORRUPT;
    if (h->txid == 0 || !is_pow2_page(h->page_size))
        return LV_ECORRUPT;
    if (h->npages > h->db_pages)
        return LV_ECORRUPT;
    if ((h->flags & TXLOG_F_SNAPSHOT) && h->npages != h->db_pages)
        return LV_ECORRUPT;
    if (h->raw_len != (uint64_t)h->npages * (4 + (uint64_t)h->page_size))
        return LV_ECORRUPT;
    switch (h->comp) {
    case TXLOG_COMP_NONE:
        if (h->stored_len != h->raw_len)
            return LV_ECORRUPT;
        break;
    case TXLOG_COMP_ZSTD:
        if (h->stored_len == 0 || h->stored_len > stored_bound(h->raw_len))
            return LV_ECORRUPT;
        break;
    default:
        return LV_ECORRUPT;
    }
    return 0;
}

/* Segment header fields. */
struct seg_hdr {
    uint8_t dbid[16];  /* database ID */
    uint64_t first;    /* first TXID */
    int64_t ctime_us;  /* creation time */
};

static void seg_hdr_encode(const struct seg_hdr *s, uint8_t out[TXLOG_SEG_HDR_SIZE])
{
    memset(out, 0, TXLOG_SEG_HDR_SIZE);
    memcpy(out, SEG_MAGIC, 8);
    lv_put32(out + 8, SEG_VERSION);
    lv_put32(out + 12, 0);
    memcpy(out + 16, s->dbid, 16);
    lv_put64(out + 32, s->first);
    lv_put64(out + 40, (uint64_t)s->ctime_us);
    lv_put64(out + 48, 0);
    lv_put64(out + 56, cksum_buf(out, 56));
}

/* 0, LV_ECORRUPT or LV_EVERSION. */
static int seg_hdr_decode(const uint8_t in[TXLOG_SEG_HDR_SIZE], struct seg_hdr *s)
{
    uint32_t v;

    if (memcmp(in, SEG_MAGIC, 8) != 0 || lv_get64(in + 56) != cksum_buf(in, 56))
        return LV_ECORRUPT;
    v = lv_get32(in + 8);
    if (v == 0)
        return LV_ECORRUPT;
    if (v > SEG_VERSION)
        return LV_EVERSION;
    if (lv_get32(in + 12) != 0 || lv_get64(in + 48) != 0)
        return LV_ECORRUPT;
    memcpy(s->dbid, in + 16, 16);
    s->first = lv_get64(in + 32);
    s->ctime_us = (int64_t)lv_get64(in + 40);
    if (s->first == 0)
        return LV_ECORRUPT;
    return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static void dbid_hex(const uint8_t id[16], char out[33])
{
    static const char hx[] = "0123456789abcdef";
    int i;

    for (i = 0; i < 16; i++) {
        out[2 * i] = hx[id[i] >> 4];
        out[2 * i + 1] = hx[id[i] & 15];
    }
    out[32] = '\0';
}

/* ------------------------------------------------------------------ */
/* Segment files                                                       */
/* ------------------------------------------------------------------ */

/* malloc'ed "<dir>/<016x>.lvseg" (caller frees) or NULL. */
static char *seg_path(const char *dir, uint64_t first)
{
    char *p = NULL;

    if (asprintf(&p, "%s/%016" PRIx64 ".lvseg", dir, first) < 0)
        return NULL;
    return p;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Parse a segment file name; 1 and *first if it is one. */
static int seg_name_parse(const char *name, uint64_t *first)
{
    uint64_t v = 0;
    int i;

    if (strlen(name) != 22 || strcmp(name + 16, ".lvseg") != 0)
        return 0;
    for (i = 0; i < 16; i++) {
        char c = name[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return 0;
        v = v << 4 | (uint64_t)d;
    }
    *first = v;
    return 1;
}

/* Sorted first TXIDs of the segments in dir into *out (malloc'ed, caller
 * frees; NULL when none) and *n.  0, LV_ENOENT if dir is missing, or
 * negative. */
static int seg_list(const char *dir, uint64_t **out, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    uint64_t *v = NULL, first;
    size_t len = 0, cap = 0;
    int rc = 0;

    *out = NULL;
    *n = 0;
    if (!d) {
        rc = lv_from_errno(errno);
        if (rc != LV_ENOENT)
            LV_ERROR("opendir %s: %s", dir, strerror(errno));
        return rc;
    }
    while ((de = readdir(d)) != NULL) {
        if (!seg_name_parse(de->d_name, &first))
            continue;
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, ncap * sizeof(*nv));
            if (!nv) {
                rc = LV_ENOMEM;
                goto out_closedir;
            }
            v = nv;
            cap = ncap;
        }
        v[len++] = first;
    }
    if (len > 1)
        qsort(v, len, sizeof(*v), cmp_u64);
    *out = v;
    *n = len;
    v = NULL;
out_closedir:
    closedir(d);
    free(v);
    return rc;
}

/* Byte source for the scan and the reader: a file or a memory image. */
struct txsrc {
    int fd;               /* open segment, or -1 for memory */
    const uint8_t *mem;   /* memory image (borrowed), NULL for a file */
    uint64_t size;        /* bytes available */
    char *name;           /* path or display name (owned) */
};

static int src_read(const struct txsrc *s, uint64_t off, void *buf, size_t len)
{
    if (off > s->size || len > s->size - off)
        return LV_ECORRUPT;
    if (s->mem) {
        memcpy(buf, s->mem + off, len);
        return 0;
    }
    return sys_pread_all(s->fd, buf, len, (off_t)off, s->name);
}

static void src_close(struct txsrc *s)
{
    if (s->fd >= 0)
        close(s->fd);
    free(s->name);
    s->fd = -1;
    s->mem = NULL;
    s->name = NULL;
    s->size = 0;
}

static int fd_size(int fd, const char *path, uint64_t *size)
{
    struct stat st;

    if (fstat(fd, &st) < 0) {
        LV_ERROR("fstat %s: %s", path, strerror(errno));
        return lv_from_errno(errno);
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

/* XXH3-64 of len bytes of s at off, read in chunks through buf (IO_CHUNK)
 * with the caller's hash state st. */
static int src_hash(const struct txsrc *s, uint64_t off, uint64_t len, uint8_t *buf, XXH3_state_t *st,
                    uint64_t *out)
{
    int rc;

    if (s->mem) {
        if (off > s->size || len > s->size - off)
            return LV_ECORRUPT;
        *out = XXH3_64bits(s->mem + off, (size_t)len);
        return 0;
    }
    XXH3_64bits_reset(st);
    while (len) {
        size_t n = len < IO_CHUNK ? (size_t)len : IO_CHUNK;
        rc = src_read(s, off, buf, n);
        if (rc)
            return rc;
        XXH3_64bits_update(st, buf, n);
        off += n;
        len -= n;
    }
    *out = XXH3_64bits_digest(st);
    return 0;
}

/* Is there a decodable record header of database dbid anywhere in
 * s[from, size)?  Used to tell a torn tail from a damaged header that
 * is followed by good records. */
static int valid_header_after(const struct txsrc *s, uint64_t from, const uint8_t dbid[16], uint8_t *buf)
{
    uint64_t off = from;
    struct txlog_hdr h;

    while (off + TXLOG_HDR_SIZE <= s->size) {
        size_t n = s->size - off < IO_CHUNK ? (size_t)(s->size - off) : IO_CHUNK;
        size_t i;

        if (src_read(s, off, buf, n))
            return 0;
        for (i = 0; i + TXLOG_HDR_SIZE <= n; i++)
            if (buf[i] == 0x4C && lv_get32(buf + i) == REC_MAGIC && txlog_hdr_decode(buf + i, &h) == 0 &&
                memcmp(h.dbid, dbid, 16) == 0)
                return 1;
        if (n < IO_CHUNK)
            break;
        off += n - (TXLOG_HDR_SIZE - 1);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Writer                                                              */
/* ------------------------------------------------------------------ */

enum { REC_IDLE = 0, REC_BUFFERED, REC_STREAMING };

struct txlog {
    char *dir;              /* log directory (owned) */
    uint8_t dbid[16];       /* database ID stamped on segments and records */
    uint64_t seg_size;      /* roll-over size */
    int fd;                 /* current segment, -1 if none */
    char *seg_path;         /* its path (owned), NULL if none */
    uint64_t seg_first;     /* its first TXID */
    uint64_t seg_end;       /* bytes of segment header + complete records */
    int dir_unsynced;       /* a segment was created since the last directory fsync */
    int dirty;              /* current segment has writes not yet fdatasynced */
    int broken;             /* sticky: 0 or LV_EBROKEN */
    uint64_t bytes_written; /* bytes written since open */
    int have_last;          /* the log holds at least one record */
    uint64_t last_txid;     /* TXID of the last complete record */
    uint64_t last_post;     /* its post checksum */

    /* Record in progress. */
    int state;              /* REC_IDLE, REC_BUFFERED or REC_STREAMING */
    struct txlog_hdr cur;   /* header being built (npages, raw_len, stored_len accumulate) */
    uint32_t last_pgno;     /* last page added, 0 before the first */
    uint64_t rec_start;     /* STREAMING: segment offset of the record */
    uint64_t wr_off;        /* STREAMING: file offset of the next chunk */
    XXH3_state_t *xs;       /* STREAMING: hash of the stored bytes so far */
    ZSTD_CCtx *cctx;        /* compression context, reused for every record */
    uint8_t *raw;           /* BUFFERED: raw payload (raw_cap bytes) */
    size_t raw_cap;
    size_t raw_used;        /* bytes of raw in use */
    uint8_t *out;           /* encoded record (BUFFERED) or output chunk (STREAMING) */
    size_t out_cap;
    size_t out_len;         /* STREAMING: bytes of out not yet written */
};

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    size_t ncap;
    uint8_t *nb;

    if (need <= *cap)
        return 0;
    ncap = *cap ? *cap : 8192;
    while (ncap < need)
        ncap *= 2;
    nb = realloc(*buf, ncap);
    if (!nb)
        return LV_ENOMEM;
    *buf = nb;
    *cap = ncap;
    return 0;
}

/* Close the current segment (no sync). */
static void seg_close(struct txlog *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    free(l->seg_path);
    l->seg_path = NULL;
    l->dirty = 0;
}

/* Create segment <first>.lvseg and make it current.  0 or negative; the
 * log turns broken if a half-created file cannot be removed. */
static int seg_create(struct txlog *l, uint64_t first)
{
    struct seg_hdr sh;
    uint8_t buf[TXLOG_SEG_HDR_SIZE];
    char *path = seg_path(l->dir, first);
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
    seg_hdr_encode(&sh, buf);
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
    l->dir_unsynced = 1;
    l->dirty = 1;
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
    }
    if (l->state != REC_IDLE)
        ZSTD_CCtx_reset(l->cctx, ZSTD_reset_session_only);
    l->state = REC_IDLE;
    l->out_len = 0;
    l->raw_used = 0;
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
    rc = grow(&l->out, &l->out_cap, OUT_CHUNK);
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

int txlog_append_begin(struct txlog *l, const struct txlog_hdr *h)
{
    int snap = (h->flags & TXLOG_F_SNAPSHOT) != 0;

    if (l->broken)
        return l->broken;
    if (l->state != REC_IDLE) {
        LV_ERROR("txlog: append_begin with a record in progress");
        return LV_EINVAL;
    }
    if (!is_pow2_page(h->page_size) || (h->flags & ~KNOWN_FLAGS) || h->txid == 0) {
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
    l->cur.version = REC_VERSION;
    memcpy(l->cur.dbid, l->dbid, 16);
    l->cur.npages = 0;
    l->cur.raw_len = 0;
    l->cur.stored_len = 0;
    l->cur.comp = TXLOG_COMP_ZSTD;
    l->last_pgno = 0;
    l->raw_used = 0;
    l->out_len = 0;
    l->state = REC_BUFFERED;
    return 0;
}

int txlog_append_page(struct txlog *l, uint32_t pgno, const void *data)
{
    uint32_t ps = l->cur.page_size;
    uint8_t be[4];
    int rc;

    if (l->broken)
        return l->broken;
    if (l->state == REC_IDLE)
        return LV_EINVAL;
    if (pgno <= l->last_pgno || pgno > l->cur.db_pages) {
        LV_ERROR("txlog: TXID %" PRIu64 ": page %u out of order or beyond %u pages", l->cur.txid, pgno,
                 l->cur.db_pages);
        return LV_EINVAL;
    }
    if (l->state == REC_BUFFERED) {
        if (l->raw_used + 4 + ps <= RAW_MAX) {
            rc = grow(&l->raw, &l->raw_cap, l->raw_used + 4 + ps);
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

    rc = grow(&l->out, &l->out_cap, TXLOG_HDR_SIZE + bound + TXLOG_TRAILER_SIZE);
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
    int rc;

    if (l->broken)
        return l->broken;
    if (l->state == REC_IDLE)
        return LV_EINVAL;
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

int txlog_error(const struct txlog *l)
{
    return l->broken;
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

/* ------------------------------------------------------------------ */
/* Start-up scan                                                       */
/* ------------------------------------------------------------------ */

/* Scan context shared by the per-segment checks of txlog_open. */
struct scan {
    const uint8_t *dbid;   /* expected database ID */
    char *err;             /* message buffer */
    size_t errlen;
    uint8_t *buf;          /* IO_CHUNK scratch */
    XXH3_state_t *xs;      /* hash state (the writer's, idle during the scan) */
    int have;              /* a record was seen */
    uint64_t next_txid;    /* TXID the next record must carry (when have) */
    uint64_t prev_post;    /* post checksum of the previous record */
    struct txlog_tail *tail;
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
    if (sc->err && sc->errlen)
        snprintf(sc->err, sc->errlen, "%s: offset %" PRIu64 ": TXID %" PRIu64 ": %s", path, off, txid, what);
    LV_ERROR("txlog: %s: offset %" PRIu64 ": TXID %" PRIu64 ": %s", path, off, txid, what);
    return LV_ECORRUPT;
}

/* Verify the records of one segment (header already checked) starting at
 * offset 64.  On return *valid_end is the end of the last good record; a
 * torn tail (only allowed when last) leaves *valid_end < s->size. */
static int scan_records(struct scan *sc, const struct txsrc *s, const struct seg_hdr *sh, int last,
                        uint64_t *valid_end)
{
    uint8_t hb[TXLOG_HDR_SIZE];
    struct txlog_hdr h;
    uint64_t off = TXLOG_SEG_HDR_SIZE, sum, rec_len, expect;
    int first = 1, rc;
    const char *torn = NULL;

    while (off < s->size) {
        expect = sc->have ? sc->next_txid : sh->first;
        if (s->size - off < TXLOG_HDR_SIZE) {
            torn = "file ends inside a record header";
            break;
        }
        rc = src_read(s, off, hb, sizeof(hb));
        if (rc)
            return rc;
        if (all_zero(hb, sizeof(hb))) {
            torn = "record header is all zeros";
            break;
        }
        rc = txlog_hdr_decode(hb, &h);
        if (rc) {
            if (last && rc != LV_EVERSION && !valid_header_after(s, off + 1, sc->dbid, sc->buf)) {
                torn = "invalid record header at the end";
                break;
            }
            if (rc == LV_EVERSION)
                scan_fail(sc, s->name, off, expect, "unsupported record version %u", lv_get16(hb + 4));
            else
                scan_fail(sc, s->name, off, expect, "invalid record header");
            return rc == LV_EVERSION ? LV_EVERSION : LV_ECORRUPT;
        }
        rec_len = TXLOG_HDR_SIZE + h.stored_len + TXLOG_TRAILER_SIZE;
        if (rec_len > s->size - off) {
            torn = "file ends inside the record";
            break;
        }
        if (memcmp(h.dbid, sc->dbid, 16) != 0)
            return scan_fail(sc, s->name, off, h.txid, "record belongs to another database");
        if (first && h.txid != sh->first)
            return scan_fail(sc, s->name, off, h.txid, "first record does not match segment first TXID %" PRIu64,
                             sh->first);
        if (sc->have && h.txid != sc->next_txid)
            return scan_fail(sc, s->name, off, h.txid, "TXID gap: expected TXID %" PRIu64, sc->next_txid);
        if (sc->have && h.pre_cksum != sc->prev_post)
            return scan_fail(sc, s->name, off, h.txid,
                             "checksum chain break: pre checksum %016" PRIx64 " != previous post %016" PRIx64,
                             h.pre_cksum, sc->prev_post);
        rc = src_hash(s, off + TXLOG_HDR_SIZE, h.stored_len, sc->buf, sc->xs, &sum);
        if (rc)
            return rc;
        rc = src_read(s, off + TXLOG_HDR_SIZE + h.stored_len, hb, TXLOG_TRAILER_SIZE);
        if (rc)
            return rc;
        if (lv_get64(hb) != sum)
            return scan_fail(sc, s->name, off, h.txid, "payload checksum mismatch");

        if (!sc->have)
            sc->tail->first_txid = h.txid;
        sc->have = 1;
        sc->next_txid = h.txid + 1;
        sc->prev_post = h.post_cksum;
        sc->tail->last_txid = h.txid;
        sc->tail->last_post = h.post_cksum;
        sc->tail->last_time_us = h.time_us;
        sc->tail->last_page_size = h.page_size;
        sc->tail->last_db_pages = h.db_pages;
        sc->tail->last_wal_salt1 = h.wal_salt1;
        sc->tail->last_wal_salt2 = h.wal_salt2;
        sc->tail->last_wal_frame = h.wal_frame;
        first = 0;
        off += rec_len;
    }
    if (torn && !last)
        return scan_fail(sc, s->name, off, sc->have ? sc->next_txid : sh->first,
                         "truncated record in a segment that is not the last (%s)", torn);
    if (torn)
        LV_WARN("txlog: %s: offset %" PRIu64 ": %s; cutting off %" PRIu64 " bytes", s->name, off, torn,
                s->size - off);
    *valid_end = off;
    return 0;
}

int txlog_open(const char *dir, const uint8_t dbid[16], uint64_t seg_size, struct txlog **out,
               struct txlog_tail *tail, char *err, size_t errlen)
{
    struct txlog *l;
    struct scan sc;
    uint64_t *segs = NULL;
    size_t nseg = 0, i;
    int rc;

    *out = NULL;
    memset(tail, 0, sizeof(*tail));
    if (err && errlen)
        err[0] = '\0';
    memset(&sc, 0, sizeof(sc));
    sc.dbid = dbid;
    sc.err = err;
    sc.errlen = errlen;
    sc.tail = tail;

    l = calloc(1, sizeof(*l));
    if (!l)
        return LV_ENOMEM;
    l->fd = -1;
    l->seg_size = seg_size ? seg_size : 64u << 20;
    memcpy(l->dbid, dbid, 16);
    l->dir = strdup(dir);
    l->cctx = ZSTD_createCCtx();
    l->xs = XXH3_createState();
    sc.buf = malloc(IO_CHUNK);
    if (!l->dir || !l->cctx || !l->xs || !sc.buf) {
        rc = LV_ENOMEM;
        goto out_fail;
    }
    sc.xs = l->xs;
    ZSTD_CCtx_setParameter(l->cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL);
    ZSTD_CCtx_setParameter(l->cctx, ZSTD_c_checksumFlag, 0);

    rc = sys_mkdir_p(dir);
    if (rc) {
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot create log directory: %s", dir, lv_strerror(rc));
        goto out_fail;
    }
    rc = seg_list(dir, &segs, &nseg);
    if (rc) {
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot list log directory: %s", dir, lv_strerror(rc));
        goto out_fail;
    }

    for (i = 0; i < nseg; i++) {
        struct txsrc s = { .fd = -1 };
        struct seg_hdr sh;
        uint8_t hb[TXLOG_SEG_HDR_SIZE];
        uint64_t end = 0;
        int last = i + 1 == nseg;
        char a[33], b[33];

        s.name = seg_path(dir, segs[i]);
        if (!s.name) {
            rc = LV_ENOMEM;
            goto out_fail;
        }
        s.fd = sys_open(s.name, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
        if (s.fd < 0) {
            rc = s.fd;
            s.fd = -1;
            if (err && errlen)
                snprintf(err, errlen, "%s: cannot open segment: %s", s.name, lv_strerror(rc));
            src_close(&s);
            goto out_fail;
        }
        rc = fd_size(s.fd, s.name, &s.size);
        if (!rc && s.size >= TXLOG_SEG_HDR_SIZE)
            rc = src_read(&s, 0, hb, sizeof(hb));
        if (rc) {
            src_close(&s);
            goto out_fail;
        }
        if (s.size < TXLOG_SEG_HDR_SIZE || all_zero(hb, sizeof(hb))) {
            if (!last) {
                rc = scan_fail(&sc, s.name, 0, segs[i], "segment header missing or zero");
                src_close(&s);
                goto out_fail;
            }
            LV_WARN("txlog: %s: incomplete segment header (%" PRIu64 " bytes); removing it", s.name, s.size);
            tail->torn_bytes += s.size;
            if (unlink(s.name) < 0) {
                LV_ERROR("unlink %s: %s", s.name, strerror(errno));
                rc = lv_from_errno(errno);
                src_close(&s);
                goto out_fail;
            }
            sys_fsync_dir(s.name);
            src_close(&s);
            break;
        }
        rc = seg_hdr_decode(hb, &sh);
        if (rc) {
            scan_fail(&sc, s.name, 0, segs[i], rc == LV_EVERSION ? "unsupported segment version"
                                                                  : "invalid segment header");
            src_close(&s);
            goto out_fail;
        }
        if (memcmp(sh.dbid, dbid, 16) != 0) {
            dbid_hex(sh.dbid, a);
            dbid_hex(dbid, b);
            rc = scan_fail(&sc, s.name, 0, sh.first, "segment belongs to database %s, not %s", a, b);
            src_close(&s);
            goto out_fail;
        }
        if (sh.first != segs[i]) {
            rc = scan_fail(&sc, s.name, 0, sh.first, "segment header first TXID does not match the file name");
            src_close(&s);
            goto out_fail;
        }
        if (sc.have && sh.first != sc.next_txid) {
            rc = scan_fail(&sc, s.name, 0, sh.first, "TXID gap: expected TXID %" PRIu64 " at segment start",
                           sc.next_txid);
            src_close(&s);
            goto out_fail;
        }
        rc = scan_records(&sc, &s, &sh, last, &end);
        if (rc) {
            src_close(&s);
            goto out_fail;
        }
        if (end < s.size) {
            tail->torn_bytes += s.size - end;
            rc = sys_ftruncate(s.fd, (off_t)end, s.name);
            if (!rc)
                rc = sys_fsync(s.fd, 1, s.name);
            if (rc) {
                if (err && errlen)
                    snprintf(err, errlen, "%s: cannot cut off torn tail at offset %" PRIu64 ": %s", s.name, end,
                             lv_strerror(rc));
                src_close(&s);
                goto out_fail;
            }
            s.size = end;
        }
        tail->total_bytes += s.size;
        tail->nsegments++;
        if (last) {
            l->fd = s.fd;
            l->seg_path = s.name;
            l->seg_first = sh.first;
            l->seg_end = s.size;
            s.fd = -1;
            s.name = NULL;
        }
        src_close(&s);
    }
    l->have_last = sc.have;
    l->last_txid = tail->last_txid;
    l->last_post = tail->last_post;
    free(segs);
    free(sc.buf);
    *out = l;
    return 0;

out_fail:
    free(segs);
    free(sc.buf);
    txlog_close(l);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Reader                                                              */
/* ------------------------------------------------------------------ */

struct txlog_reader {
    char *dir;              /* directory (owned), NULL for a memory reader */
    uint64_t *segs;         /* first TXIDs of the known segments (owned) */
    size_t nsegs;
    size_t seg_i;           /* index of the open segment in segs */
    int seg_open;           /* src holds a segment */
    struct txsrc src;       /* the open segment */
    struct seg_hdr sh;      /* its header */
    int have_dbid;          /* dbid below is set */
    uint8_t dbid[16];       /* database ID of the first segment; all must match */
    uint32_t seg_nrec;      /* records seen in the open segment */
    uint64_t from_txid;     /* records below are skipped */
    uint64_t off;           /* offset of the current (or next) record */
    uint64_t next_off;      /* offset after the current record */
    int have_prev;          /* a record was seen */
    uint64_t prev_txid;     /* its TXID */
    uint64_t prev_post;     /* its post checksum */

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
    uint8_t *inbuf;         /* file input chunk (RD_CHUNK) */
    ZSTD_inBuffer zin;      /* unconsumed input */
    uint8_t *entry;         /* one decoded (pgno, page) entry */
    size_t entry_cap;
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
    rc = src_read(&r->src, 0, hb, sizeof(hb));
    if (rc)
        return rc;
    rc = seg_hdr_decode(hb, &r->sh);
    if (rc)
        return rd_fail(r, 0, rc == LV_EVERSION ? "unsupported segment version" : "invalid segment header");
    if (r->have_dbid && memcmp(r->dbid, r->sh.dbid, 16) != 0)
        return rd_fail(r, r->sh.first, "segment belongs to another database");
    if (r->dir && r->sh.first != r->segs[r->seg_i])
        return rd_fail(r, r->sh.first, "segment header first TXID does not match the file name");
    if (r->have_prev && r->sh.first != r->prev_txid + 1)
        return rd_fail(r, r->sh.first, "TXID gap: expected TXID %" PRIu64 " at segment start", r->prev_txid + 1);
    memcpy(r->dbid, r->sh.dbid, 16);
    r->have_dbid = 1;
    r->seg_nrec = 0;
    r->off = TXLOG_SEG_HDR_SIZE;
    return 0;
}

/* Open segment segs[i] of a directory reader. */
static int rd_open_seg(struct txlog_reader *r, size_t i)
{
    int rc;

    src_close(&r->src);
    r->seg_open = 0;
    r->seg_i = i;
    r->src.name = seg_path(r->dir, r->segs[i]);
    if (!r->src.name)
        return LV_ENOMEM;
    r->src.fd = sys_open(r->src.name, O_RDONLY | O_CLOEXEC, 0);
    if (r->src.fd < 0) {
        rc = r->src.fd;
        r->src.fd = -1;
        snprintf(r->err, sizeof(r->err), "%s: cannot open segment: %s", r->src.name, lv_strerror(rc));
        return rc;
    }
    rc = fd_size(r->src.fd, r->src.name, &r->src.size);
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

    if (seg_list(r->dir, &v, &n) != 0)
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
static int rd_advance(struct txlog_reader *r)
{
    uint64_t size = 0;
    int rc, newer;

    if (!r->dir)
        return 0;
    rc = fd_size(r->src.fd, r->src.name, &size);
    if (rc)
        return rc;
    if (size > r->src.size) {
        r->src.size = size;
        return 1;
    }
    newer = r->seg_i + 1 < r->nsegs || rd_rescan(r);
    if (!newer)
        return 0;
    /* A newer segment exists, so the writer finished this one; pick up
     * anything written to it just before the roll-over. */
    rc = fd_size(r->src.fd, r->src.name, &size);
    if (rc)
        return rc;
    if (size > r->src.size) {
        r->src.size = size;
        return 1;
    }
    if (r->off < r->src.size)
        return rd_fail(r, r->have_prev ? r->prev_txid + 1 : r->sh.first,
                       "truncated record in a segment that is not the last");
    rc = rd_open_seg(r, r->seg_i + 1);
    return rc ? rc : 2;
}

int txlog_reader_next(struct txlog_reader *r, struct txlog_hdr *h)
{
    uint8_t hb[TXLOG_HDR_SIZE];
    uint64_t rec_len = 0, expect;
    int rc, incomplete;

    if (!r->seg_open)
        return LV_ENOENT;
    if (r->in_rec) {
        r->off = r->next_off;
        r->in_rec = 0;
    }
    for (;;) {
        expect = r->have_prev ? r->prev_txid + 1 : r->sh.first;
        incomplete = 0;
        if (r->off >= r->src.size) {
            rc = rd_advance(r);
            if (rc < 0)
                return rc;
            if (rc == 0)
                return LV_ENOENT;
            continue;
        }
        if (r->src.size - r->off < TXLOG_HDR_SIZE) {
            incomplete = 1;
        } else {
            rc = src_read(&r->src, r->off, hb, sizeof(hb));
            if (rc)
                return rc;
            if (all_zero(hb, sizeof(hb))) {
                incomplete = 1;
            } else {
                rc = txlog_hdr_decode(hb, h);
                if (rc)
                    return rd_fail(r, expect, rc == LV_EVERSION ? "unsupported record version"
                                                                : "invalid record header");
                rec_len = TXLOG_HDR_SIZE + h->stored_len + TXLOG_TRAILER_SIZE;
                if (rec_len > r->src.size - r->off)
                    incomplete = 1;
            }
        }
        if (incomplete) {
            if (!r->dir)
                return rd_fail(r, expect, "segment image ends inside a record");
            rc = rd_advance(r);
            if (rc < 0)
                return rc;
            if (rc == 0)
                return LV_ENOENT; /* not written yet */
            continue;
        }
        if (memcmp(h->dbid, r->sh.dbid, 16) != 0)
            return rd_fail(r, h->txid, "record belongs to another database");
        if (r->seg_nrec == 0 && h->txid != r->sh.first)
            return rd_fail(r, h->txid, "first record does not match segment first TXID %" PRIu64, r->sh.first);
        if (r->have_prev && h->txid != r->prev_txid + 1)
            return rd_fail(r, h->txid, "TXID gap: expected TXID %" PRIu64, r->prev_txid + 1);
        if (r->have_prev && h->pre_cksum != r->prev_post)
            return rd_fail(r, h->txid,
                           "checksum chain break: pre checksum %016" PRIx64 " != previous post %016" PRIx64,
                           h->pre_cksum, r->prev_post);
        r->have_prev = 1;
        r->prev_txid = h->txid;
        r->prev_post = h->post_cksum;
        r->seg_nrec++;
        if (h->txid < r->from_txid) {
            r->off += rec_len;
            continue;
        }
        break;
    }
    rc = grow(&r->entry, &r->entry_cap, 4 + (size_t)h->page_size);
    if (rc)
        return rc;
    r->cur = *h;
    r->in_rec = 1;
    r->pages_done = 0;
    r->next_off = r->off + rec_len;
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
        n = remain > RD_CHUNK ? RD_CHUNK : (size_t)remain;
        r->zin.src = r->src.mem + at;
    } else {
        if (!r->inbuf) {
            r->inbuf = malloc(RD_CHUNK);
            if (!r->inbuf)
                return LV_ENOMEM;
        }
        n = remain > RD_CHUNK ? RD_CHUNK : (size_t)remain;
        rc = src_read(&r->src, at, r->inbuf, n);
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
    rc = src_read(&r->src, r->off + TXLOG_HDR_SIZE + r->cur.stored_len, tb, sizeof(tb));
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
    rc = seg_list(dir, &r->segs, &r->nsegs);
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
        rc = seg_list(dir, &r->segs, &r->nsegs);
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
    src_close(&r->src);
    ZSTD_freeDCtx(r->dctx);
    if (r->xs)
        XXH3_freeState(r->xs);
    free(r->inbuf);
    free(r->entry);
    free(r->segs);
    free(r->dir);
    free(r);
}

/* ------------------------------------------------------------------ */
/* Applying records to a database file (replay and archive restore)    */
/* ------------------------------------------------------------------ */

/* Coalesces runs of consecutive pages into one pwrite. */
struct runbuf {
    int fd;               /* output file */
    const char *path;     /* its path */
    uint32_t ps;          /* page size */
    uint32_t first;       /* first page of the pending run (0: none) */
    uint32_t n;           /* pages pending */
    uint8_t *buf;         /* IO_CHUNK bytes */
    uint64_t unkicked;    /* bytes written since writeback was last started */
};

static int run_flush(struct runbuf *rb)
{
    int rc = 0;

    if (rb->n) {
        rc = sys_pwrite_all(rb->fd, rb->buf, (size_t)rb->n * rb->ps, (off_t)(rb->first - 1) * rb->ps, rb->path);
        /* Start writeback every 8 MiB while applying goes on, so the final
         * fsync has little left to write (advisory; errors show at fsync). */
        rb->unkicked += (uint64_t)rb->n * rb->ps;
        if (rc == 0 && rb->unkicked >= (8u << 20)) {
            (void)sync_file_range(rb->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
            rb->unkicked = 0;
        }
    }
    rb->n = 0;
    rb->first = 0;
    return rc;
}

static int run_add(struct runbuf *rb, uint32_t pgno, const void *data)
{
    int rc;

    if (rb->n && (pgno != rb->first + rb->n || (size_t)(rb->n + 1) * rb->ps > IO_CHUNK)) {
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

/*
 * struct txlog_apply: the database being rebuilt.  States:
 *   empty (have = 0) --record--> applied (have = 1, done = its TXID, clean)
 *   applied --record ok--> applied        --record fails--> dirty if any
 *   byte of the file may have changed (pages, truncation), else clean.
 * Once dirty the handle refuses further records.
 */
struct txlog_apply {
    struct runbuf rb;       /* output fd, path and write coalescing */
    struct cksum_map map;   /* page checksums of the file as built */
    int have;               /* a record was applied */
    int dirty;              /* a failed record may have changed the file */
    uint64_t done;          /* TXID of the last applied record */
    uint64_t post;          /* its post checksum */
    int64_t time_us;        /* its commit time */
};

int txlog_apply_open(int fd, const char *path, struct txlog_apply **out)
{
    struct txlog_apply *a = calloc(1, sizeof(*a));

    *out = NULL;
    if (!a)
        return LV_ENOMEM;
    a->rb.buf = malloc(IO_CHUNK);
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

int txlog_apply_record(struct txlog_apply *a, struct txlog_reader *r, const struct txlog_hdr *h, char *err,
                       size_t errlen)
{
    const char *tmp = a->rb.path;
    uint32_t pgno;
    const void *data;
    int snap = (h->flags & TXLOG_F_SNAPSHOT) != 0;
    int rc;

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
    /* From here on the file may change. */
    a->dirty = 1;
    if (snap) {
        rc = sys_ftruncate(a->rb.fd, 0, tmp);
        if (rc)
            return rc;
        cksum_map_reset(&a->map, h->page_size);
    } else if (a->map.page_size != h->page_size) {
        cksum_map_reset(&a->map, h->page_size); /* empty database: any page size */
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
        if (err && errlen)
            snprintf(err, errlen, "%s", r->err[0] ? r->err : lv_strerror(rc));
        return rc;
    }
    rc = run_flush(&a->rb);
    if (!rc)
        rc = sys_ftruncate(a->rb.fd, (off_t)h->db_pages * h->page_size, tmp);
    if (rc)
        return rc;
    if (a->map.total != h->post_cksum)
        return rp_fail(err, errlen, r, h->txid, LV_EMISMATCH,
                       "database checksum %016" PRIx64 " after applying differs from post checksum %016" PRIx64,
                       a->map.total, h->post_cksum);
    a->dirty = 0;
    a->have = 1;
    a->done = h->txid;
    a->post = h->post_cksum;
    a->time_us = h->time_us;
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

int txlog_replay(const char *dir, uint64_t target_txid, const char *out_path, uint64_t *txid_out,
                 uint64_t *cksum_out, char *err, size_t errlen)
{
    struct txlog_reader *r = NULL;
    struct txlog_apply *a = NULL;
    struct txlog_apply_info st;
    struct txlog_hdr h;
    char *tmp = NULL;
    int fd = -1, rc;

    if (err && errlen)
        err[0] = '\0';
    if (asprintf(&tmp, "%s.tmp", out_path) < 0) {
        tmp = NULL;
        return LV_ENOMEM;
    }
    rc = txlog_reader_open(dir, 0, &r);
    if (rc) {
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot read log: %s", dir, rc == LV_ENOENT ? "log is empty" : lv_strerror(rc));
        goto out_free;
    }
    fd = sys_open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = fd;
        fd = -1;
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot create: %s", tmp, lv_strerror(rc));
        goto out_free;
    }
    rc = txlog_apply_open(fd, tmp, &a);
    if (rc)
        goto out_unlink;

    for (;;) {
        txlog_apply_state(a, &st);
        if (st.have && target_txid && st.txid == target_txid)
            break;
        rc = txlog_reader_next(r, &h);
        if (rc == LV_ENOENT)
            break;
        if (rc) {
            if (err && errlen)
                snprintf(err, errlen, "%s", r->err[0] ? r->err : lv_strerror(rc));
            goto out_unlink;
        }
        if (!st.have && h.txid != 1 && !(h.flags & TXLOG_F_SNAPSHOT)) {
            rc = rp_fail(err, errlen, r, h.txid, LV_ECORRUPT,
                         "log starts at TXID %" PRIu64 ", which is neither TXID 1 nor a snapshot (older "
                         "records were pruned after they were archived: use `litevault restore` to rebuild "
                         "the database from the archive)", h.txid);
            goto out_unlink;
        }
        if (!st.have && target_txid && h.txid > target_txid) {
            rc = rp_fail(err, errlen, r, h.txid, LV_ENOENT,
                         "target TXID %" PRIu64 " is before the first TXID %" PRIu64 " in the log", target_txid,
                         h.txid);
            goto out_unlink;
        }
        rc = txlog_apply_record(a, r, &h, err, errlen);
        if (rc) {
            if (rc == LV_EGAP || rc == LV_ECHAIN || rc == LV_EMISMATCH)
                rc = LV_ECORRUPT; /* replay reports every log inconsistency as corruption */
            goto out_unlink;
        }
    }
    txlog_apply_state(a, &st);
    if (!st.have) {
        rc = LV_ENOENT;
        if (err && errlen)
            snprintf(err, errlen, "%s: log holds no records", dir);
        goto out_unlink;
    }
    if (target_txid && st.txid != target_txid) {
        rc = LV_ENOENT;
        if (err && errlen)
            snprintf(err, errlen, "%s: target TXID %" PRIu64 " is beyond the last TXID %" PRIu64 " in the log", dir,
                     target_txid, st.txid);
        goto out_unlink;
    }
    rc = txlog_apply_finish(a, err, errlen);
    if (rc)
        goto out_unlink;
    close(fd);
    fd = -1;
    rc = sys_rename(tmp, out_path);
    if (!rc)
        rc = sys_fsync_dir(out_path);
    if (rc) {
        if (err && errlen && !err[0])
            snprintf(err, errlen, "%s: cannot publish: %s", out_path, lv_strerror(rc));
        goto out_unlink;
    }
    if (txid_out)
        *txid_out = st.txid;
    if (cksum_out)
        *cksum_out = st.post_cksum;
    rc = 0;
    goto out_free;

out_unlink:
    if (err && errlen && !err[0])
        snprintf(err, errlen, "replay of %s failed: %s", dir, lv_strerror(rc));
    unlink(tmp);
out_free:
    txlog_apply_close(a);
    if (fd >= 0)
        close(fd);
    txlog_reader_close(r);
    free(tmp);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Segment images for the archiver                                     */
/* ------------------------------------------------------------------ */

/*
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

/* Builder state for txlog_segment_image. */
struct img {
    const uint8_t *dbid;   /* expected database ID (borrowed) */
    uint64_t from_txid;    /* first TXID to copy */
    uint64_t to_txid;      /* last TXID to copy (UINT64_MAX: no bound) */
    uint64_t max_bytes;    /* image size bound (UINT64_MAX: no bound) */
    uint8_t *buf;          /* the image (owned until handed to the caller) */
    size_t len;            /* bytes of buf in use */
    size_t cap;            /* bytes allocated */
    int seen;              /* a record was seen (skipped or copied) */
    uint64_t prev_txid;    /* TXID of the last record seen */
    uint64_t prev_post;    /* its post checksum */
    uint64_t ncopied;      /* records copied */
    uint64_t last_txid;    /* TXID of the last record copied */
    int64_t first_time_us; /* commit time of the first record copied */
    int done;              /* a bound (to_txid, max_bytes) was reached */
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

/* Copy the wanted records of segment file `path` (first TXID `first`,
 * the newest listed segment when `last`) into im.  0 (also when the
 * segment vanished: *gone = 1), LV_ECORRUPT, LV_EVERSION or an I/O error. */
static int img_segment(struct img *im, const char *path, uint64_t first, int last, int *gone)
{
    uint8_t hb[TXLOG_HDR_SIZE];
    struct seg_hdr sh;
    struct txlog_hdr h;
    uint64_t size = 0, off, rec_len, expect, sum;
    uint8_t *rec;
    int fd, rc, nrec = 0;
    const char *torn = NULL;

    *gone = 0;
    fd = sys_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        if (fd == LV_ENOENT)
            *gone = 1;
        return fd == LV_ENOENT ? 0 : fd;
    }
    rc = fd_size(fd, path, &size);
    if (rc)
        goto out_close;
    expect = im->seen ? im->prev_txid + 1 : first;
    if (size < TXLOG_SEG_HDR_SIZE) {
        if (!last)
            rc = img_fail(path, 0, expect, "segment shorter than its header");
        goto out_close; /* last: being created, nothing in it yet */
    }
    rc = sys_pread_all(fd, hb, TXLOG_SEG_HDR_SIZE, 0, path);
    if (rc)
        goto out_close;
    rc = seg_hdr_decode(hb, &sh);
    if (rc) {
        img_fail(path, 0, expect, rc == LV_EVERSION ? "unsupported segment version" : "invalid segment header");
        goto out_close;
    }
    if (memcmp(sh.dbid, im->dbid, 16) != 0) {
        rc = img_fail(path, 0, expect, "segment belongs to another database");
        goto out_close;
    }
    if (sh.first != first) {
        rc = img_fail(path, 0, sh.first, "segment header first TXID does not match the file name");
        goto out_close;
    }
    if (im->seen && sh.first != expect) {
        rc = img_fail(path, 0, sh.first, "TXID gap: expected TXID %" PRIu64 " at segment start", expect);
        goto out_close;
    }

    off = TXLOG_SEG_HDR_SIZE;
    while (off < size && !im->done) {
        expect = im->seen ? im->prev_txid + 1 : sh.first;
        if (size - off < TXLOG_HDR_SIZE) {
            torn = "file ends inside a record header";
            break;
        }
        rc = sys_pread_all(fd, hb, TXLOG_HDR_SIZE, (off_t)off, path);
        if (rc)
            goto out_close;
        if (all_zero(hb, sizeof(hb))) {
            torn = "record header is all zeros";
            break;
        }
        rc = txlog_hdr_decode(hb, &h);
        if (rc) {
            img_fail(path, off, expect, rc == LV_EVERSION ? "unsupported record version" : "invalid record header");
            rc = rc == LV_EVERSION ? LV_EVERSION : LV_ECORRUPT;
            goto out_close;
        }
        rec_len = TXLOG_HDR_SIZE + h.stored_len + TXLOG_TRAILER_SIZE;
        if (rec_len > size - off) {
            torn = "file ends inside the record";
            break;
        }
        rc = LV_ECORRUPT;
        if (memcmp(h.dbid, im->dbid, 16) != 0) {
            img_fail(path, off, h.txid, "record belongs to another database");
            goto out_close;
        }
        if (nrec == 0 && h.txid != sh.first) {
            img_fail(path, off, h.txid, "first record does not match segment first TXID %" PRIu64, sh.first);
            goto out_close;
        }
        if (im->seen && h.txid != expect) {
            img_fail(path, off, h.txid, "TXID gap: expected TXID %" PRIu64, expect);
            goto out_close;
        }
        if (im->seen && h.pre_cksum != im->prev_post) {
            img_fail(path, off, h.txid,
                     "checksum chain break: pre checksum %016" PRIx64 " != previous post %016" PRIx64, h.pre_cksum,
                     im->prev_post);
            goto out_close;
        }
        if (h.txid > im->to_txid) {
            im->done = 1;
            break;
        }
        if (h.txid >= im->from_txid) {
            if (im->ncopied && (uint64_t)im->len + rec_len > im->max_bytes) {
                im->done = 1;
                break;
            }
            if (im->ncopied == 0 && h.txid != im->from_txid) {
                /* Only possible when the first segment starts above from_txid. */
                rc = LV_ENOENT;
                goto out_close;
            }
            rc = grow(&im->buf, &im->cap, im->len + (size_t)rec_len);
            if (rc)
                goto out_close;
            rec = im->buf + im->len;
            memcpy(rec, hb, TXLOG_HDR_SIZE);
            rc = sys_pread_all(fd, rec + TXLOG_HDR_SIZE, (size_t)(rec_len - TXLOG_HDR_SIZE),
                               (off_t)(off + TXLOG_HDR_SIZE), path);
            if (rc)
                goto out_close;
            /* The header bytes were decoded from hb, which is what was copied. */
            sum = XXH3_64bits(rec + TXLOG_HDR_SIZE, (size_t)h.stored_len);
            if (lv_get64(rec + TXLOG_HDR_SIZE + h.stored_len) != sum) {
                rc = img_fail(path, off, h.txid, "payload checksum mismatch");
                goto out_close;
            }
            if (im->ncopied == 0)
                im->first_time_us = h.time_us;
            im->len += (size_t)rec_len;
            im->ncopied++;
            im->last_txid = h.txid;
            if (h.txid == im->to_txid)
                im->done = 1;
        }
        im->seen = 1;
        im->prev_txid = h.txid;
        im->prev_post = h.post_cksum;
        nrec++;
        off += rec_len;
    }
    rc = 0;
    if (torn && !last) {
        rc = img_fail(path, off, im->seen ? im->prev_txid + 1 : sh.first,
                      "truncated record in a segment that is not the last (%s)", torn);
        goto out_close;
    }
    if (torn) {
        LV_DEBUG("txlog: segment image: %s: offset %" PRIu64 ": %s; treated as not written yet", path, off, torn);
        im->done = 1;
    }
out_close:
    close(fd);
    return rc;
}

int txlog_segment_image(const char *dir, const uint8_t dbid[16], uint64_t from_txid, uint64_t to_txid,
                        uint64_t max_bytes, void **out, size_t *len, uint64_t *last_txid)
{
    struct img im;
    struct seg_hdr sh;
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
    im.dbid = dbid;
    im.from_txid = from_txid;
    im.to_txid = to_txid ? to_txid : UINT64_MAX;
    im.max_bytes = max_bytes ? max_bytes : UINT64_MAX;
    im.len = TXLOG_SEG_HDR_SIZE;
    rc = grow(&im.buf, &im.cap, TXLOG_SEG_HDR_SIZE);
    if (rc)
        return rc;

    rc = seg_list(dir, &segs, &nsegs);
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
        path = seg_path(dir, segs[i]);
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
    seg_hdr_encode(&sh, im.buf);
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

/* ------------------------------------------------------------------ */
/* Pruning                                                             */
/* ------------------------------------------------------------------ */

/*
 * The archiver prunes the local log once every destination has confirmed
 * records (and the checksum state file covers them).  Only whole segments
 * that are not the newest go: the writer only ever appends to the newest
 * segment, and readers (segment images, the directory reader) treat a
 * vanished older segment as "pruned" rather than as damage.  The oldest
 * segment goes first so the log stays contiguous at every moment.
 */
int txlog_prune(const char *dir, uint64_t upto_txid, uint64_t *removed_bytes)
{
    uint64_t *segs = NULL, freed = 0;
    size_t n = 0;
    int rc, removed = 0;

    if (removed_bytes)
        *removed_bytes = 0;
    rc = seg_list(dir, &segs, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i + 1 < n; i++) {
        struct stat st;
        char *path;
        if (segs[i + 1] - 1 > upto_txid)
            break;
        path = seg_path(dir, segs[i]);
        if (!path) {
            rc = LV_ENOMEM;
            break;
        }
        if (stat(path, &st) == 0)
            freed += (uint64_t)st.st_size;
        if (unlink(path) < 0 && errno != ENOENT) {
            LV_ERROR("txlog: prune: unlink %s: %s", path, strerror(errno));
            rc = lv_from_errno(errno);
            free(path);
            break;
        }
        LV_DEBUG("txlog: pruned %s (TXIDs up to %" PRIu64 ")", path, segs[i + 1] - 1);
        free(path);
        removed++;
    }
    if (removed)
        sys_fsync_dir(dir);
    free(segs);
    if (removed_bytes)
        *removed_bytes = freed;
    return rc ? rc : removed;
}

int txlog_dir_usage(const char *dir, uint64_t *bytes, uint64_t *first_txid)
{
    uint64_t *segs = NULL, total = 0;
    size_t n = 0;
    int rc;

    *bytes = 0;
    *first_txid = 0;
    rc = seg_list(dir, &segs, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        char *path = seg_path(dir, segs[i]);
        if (!path) {
            free(segs);
            return LV_ENOMEM;
        }
        if (stat(path, &st) == 0)
            total += (uint64_t)st.st_size;
        free(path);
    }
    *bytes = total;
    *first_txid = n ? segs[0] : 0;
    free(segs);
    return 0;
}
