/*
 * stream.c -- the replication stream's frames: encoder and incremental
 * decoder (docs/FORMAT.md, "Replication stream"; the API is stream.h).
 *
 * FORMAT.  A stream is frames back to back, nothing between them.  A frame
 * is a 16-byte header and a payload of the length it announces; every
 * integer is big-endian:
 *
 *   0  u32 magic 0x4C565346 ("LVSF")
 *   4  u8  type (1 HELLO .. 9 ERROR, enum stream_type)
 *   5  u8  flags, 0
 *   6  u16 reserved, 0
 *   8  u32 payload length L (<= the decoder's max_frame)
 *  12  u32 XXH32 (seed 0) of bytes 0..11
 *  16  L bytes of payload
 *
 * Payloads (NAME = u16 n, then n bytes of a database name):
 *
 *   HELLO       UTF-8 text (a JSON object), L >= 1, no NUL byte
 *   RECORD      NAME, one txlog record: 112-byte header, S stored bytes,
 *               8-byte trailer; 2 + n + 112 + S + 8 == L
 *   SNAP_BEGIN  NAME, dbid[16], u64 txid, i64 time_us, u32 page_size,
 *               u32 db_pages, u64 cksum[, u64 term]; 2 + n + 56 == L
 *               (2 + n + 48 from a HELLO version 1 primary: term 0)
 *   SNAP_PAGES  NAME, u32 first_pgno, u32 count, count pages;
 *               page size = (L - 2 - n - 8) / count
 *   SNAP_END    NAME; 2 + n == L
 *   HEARTBEAT   i64 time_us, u64 seq; L == 16
 *   DROP        NAME; 2 + n == L
 *   RENAME      NAME (from), NAME (to); 4 + n1 + n2 == L
 *   ERROR       UTF-8 text, no NUL byte (may be empty)
 *
 * A frame is accepted only whole: nothing may follow the last field inside
 * the payload, and a payload shorter than its fields is refused.
 *
 * NAMES: 1..4095 bytes, relative to the mount root; no NUL, no leading
 * '/', no empty component ("a//b", a trailing '/') and no "." or ".."
 * component.  The encoder refuses what the decoder refuses, so whatever
 * the encoder produces decodes (and re-encodes to the same bytes).
 *
 * CHECKS OF THE DECODER, in order, for each frame:
 *   1. header (as soon as its 16 bytes are there, before any of the
 *      payload is waited for): magic, header checksum, flags and reserved
 *      zero, type known, length <= max_frame.  So a bad or oversized
 *      header is refused without buffering the payload it announces;
 *   2. payload (once all of it is there): the layout above; RECORD: the
 *      record header (txlog_hdr_decode: magic, checksum, version, fields),
 *      the lengths, and the trailer (XXH3-64 of the stored payload, via
 *      cksum_buf); SNAP_BEGIN: TXID >= 1 and a page size SQLite can use
 *      (a power of two in 512..65536); SNAP_PAGES: count >= 1, first_pgno
 *      >= 1, the last page number fits in a u32, and the derived page size
 *      is valid; HELLO / ERROR: valid UTF-8.
 * Everything semantic (does the record continue this database, does the
 * HELLO's cluster match) is the consumer's business (replica.c).
 *
 * DECODER INVARIANTS (struct stream_dec; D1 and D3 checked by
 * assert_dec_state):
 *   D1  start + keep <= end <= cap; buf[start + keep .. end) are the bytes
 *       received and not yet returned as frames (stream_dec_pending), and
 *       off is the stream offset of buf[start + keep].
 *   D2  keep > 0 only between a stream_dec_next that returned 1 and the
 *       next call: buf[start .. start + keep) is that frame, which the
 *       caller's struct stream_frame points into.  stream_dec_push never
 *       moves nor overwrites those bytes: when appending does not fit, the
 *       unreturned bytes move to a new buffer and the old one is kept in
 *       held (keep becomes 0) until the next stream_dec_next.  So a frame
 *       stays valid across pushes, as stream.h promises.
 *   D3  held != NULL implies keep == 0.
 *   D4  failed is sticky: after an error every stream_dec_next returns
 *       LV_ECORRUPT with the same message, and pushes are discarded.
 *   D5  memory: buf holds at most one frame (<= 16 + max_frame bytes) plus
 *       what the caller pushed beyond it before calling stream_dec_next;
 *       a large buffer is given back once a frame has been consumed and
 *       the bytes left fill less than an eighth of it.
 *   Names and texts are copied out of the payload (they must be
 *   NUL-terminated); records and pages point into buf.
 *
 * THREADS: a decoder is used by one thread at a time; the encoder
 * functions are pure.
 */
#include "replica/stream.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/cksum.h"
#include "base/dbhdr.h"
#include "base/lv.h"
#include "log/txlog.h"

#define DEC_MIN_CAP (64u << 10)   /* first allocation of a decoder buffer */
#define DEC_SHRINK (1u << 20)     /* buffers above this are given back when mostly empty (D5) */
#define SNAP_BEGIN_FIXED 56       /* SNAP_BEGIN bytes after NAME (with the term) */
#define SNAP_BEGIN_V1 48          /* ... as HELLO version 1 primaries send it (no term) */
#define SNAP_PAGES_FIXED 8        /* SNAP_PAGES bytes after NAME, before the pages */
#define HEARTBEAT_LEN 16          /* HEARTBEAT payload */
#define REC_MIN (TXLOG_HDR_SIZE + TXLOG_TRAILER_SIZE)

struct stream_dec {
    uint32_t max_frame;              /* payload bytes accepted */
    int failed;                      /* D4: an error was returned */
    uint8_t *buf;                    /* received bytes (owned) */
    size_t cap;                      /* bytes allocated at buf */
    size_t start;                    /* D1 */
    size_t keep;                     /* D2: bytes of the frame returned last, at buf + start */
    size_t end;                      /* bytes in buf */
    uint8_t *held;                   /* D2/D3: an older buffer holding the frame returned last */
    uint64_t off;                    /* stream offset of buf[start + keep] */
    char *text;                      /* HELLO / ERROR text of the frame returned last (owned) */
    char name[STREAM_NAME_MAX + 1];  /* NAME of the frame returned last */
    char name2[STREAM_NAME_MAX + 1]; /* RENAME: to */
    char err[768];                   /* message of the error, "" if none (room for any dec_fail) */
};

/* A read position in a payload. */
struct cur {
    const uint8_t *p; /* next byte */
    size_t n;         /* bytes left */
};

const char *stream_type_name(int type)
{
    static const char *const names[] = {
        [ST_HELLO] = "HELLO",          [ST_RECORD] = "RECORD",       [ST_SNAP_BEGIN] = "SNAP_BEGIN",
        [ST_SNAP_PAGES] = "SNAP_PAGES", [ST_SNAP_END] = "SNAP_END",   [ST_HEARTBEAT] = "HEARTBEAT",
        [ST_DROP] = "DROP",            [ST_RENAME] = "RENAME",       [ST_ERROR] = "ERROR",
    };

    if (type < ST_HELLO || type > ST_ERROR)
        return "UNKNOWN";
    return names[type];
}

/* ---- Shared checks ---- */

/* Why the n bytes at s are not a valid database name, or NULL if they are. */
static const char *name_problem(const uint8_t *s, size_t n)
{
    size_t i, comp = 0; /* comp: start of the current component */

    if (n == 0)
        return "empty";
    if (n > STREAM_NAME_MAX)
        return "longer than 4095 bytes";
    if (s[0] == '/')
        return "starts with '/'";
    if (memchr(s, 0, n))
        return "contains a NUL byte";
    for (i = 0; i <= n; i++) {
        size_t len;

        if (i < n && s[i] != '/')
            continue;
        len = i - comp;
        if (len == 0)
            return "has an empty component";
        if ((len == 1 && s[comp] == '.') || (len == 2 && s[comp] == '.' && s[comp + 1] == '.'))
            return "has a \".\" or \"..\" component";
        comp = i + 1;
    }
    return NULL;
}

/* Offset of the first byte of s[0..n) that is not well-formed UTF-8 (no
 * overlong forms, surrogates or code points above U+10FFFF), or n. */
static size_t utf8_bad(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp, min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            k = 1; cp = c & 0x1F; min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2; cp = c & 0x0F; min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3; cp = c & 0x07; min = 0x10000;
        } else {
            return i;
        }
        if (n - i <= k)
            return i;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return i;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += k + 1;
    }
    return n;
}

/* ---- Encoder ---- */

void stream_hdr_encode(uint8_t out[STREAM_HDR_SIZE], enum stream_type type, uint32_t len)
{
    lv_put32(out, STREAM_MAGIC);
    out[4] = (uint8_t)type;
    out[5] = 0;
    lv_put16(out + 6, 0);
    lv_put32(out + 8, len);
    lv_put32(out + 12, XXH32(out, 12, 0));
}

/* Allocate a frame of type with a payload of plen bytes, header written;
 * *payload points at the payload.  LV_EINVAL if plen is over the default
 * limit (a default decoder would refuse the frame). */
static int enc_alloc(enum stream_type type, uint64_t plen, uint8_t **out, size_t *len, uint8_t **payload)
{
    uint8_t *b;

    if (plen > STREAM_DEFAULT_MAX_FRAME)
        return LV_EINVAL;
    b = malloc(STREAM_HDR_SIZE + (size_t)plen);
    if (!b)
        return LV_ENOMEM;
    stream_hdr_encode(b, type, (uint32_t)plen);
    *out = b;
    *len = STREAM_HDR_SIZE + (size_t)plen;
    *payload = b + STREAM_HDR_SIZE;
    return 0;
}

/* Length of a valid name into *n; LV_EINVAL if name is not one. */
int stream_name_ok(const char *name)
{
    return name && !name_problem((const uint8_t *)name, strnlen(name, STREAM_NAME_MAX + 1));
}

static int enc_name_ok(const char *name, size_t *n)
{
    if (!name)
        return LV_EINVAL;
    *n = strnlen(name, STREAM_NAME_MAX + 1);
    return name_problem((const uint8_t *)name, *n) ? LV_EINVAL : 0;
}

/* Write NAME (u16 length, bytes) at p; returns the byte after it. */
static uint8_t *put_name(uint8_t *p, const char *name, size_t n)
{
    lv_put16(p, (uint16_t)n);
    memcpy(p + 2, name, n);
    return p + 2 + n;
}

int stream_enc_text(enum stream_type type, const char *text, uint8_t **out, size_t *len)
{
    uint8_t *p;
    size_t n;
    int rc;

    *out = NULL;
    *len = 0;
    if ((type != ST_HELLO && type != ST_ERROR) || !text)
        return LV_EINVAL;
    n = strlen(text);
    if ((type == ST_HELLO && n == 0) || utf8_bad((const uint8_t *)text, n) != n)
        return LV_EINVAL;
    rc = enc_alloc(type, n, out, len, &p);
    if (rc == 0)
        memcpy(p, text, n);
    return rc;
}

int stream_enc_record(const char *name, const void *rec, size_t rec_len, uint8_t **out, size_t *len)
{
    struct txlog_hdr h;
    uint8_t *p;
    size_t n;
    int rc;

    *out = NULL;
    *len = 0;
    if (enc_name_ok(name, &n) != 0 || !rec || rec_len < REC_MIN)
        return LV_EINVAL;
    /* The header and the lengths, not the trailer: the caller read the
     * record with txlog_reader_raw, which verified it. */
    if (txlog_hdr_decode(rec, &h) != 0 || h.stored_len != rec_len - REC_MIN)
        return LV_EINVAL;
    rc = enc_alloc(ST_RECORD, 2 + (uint64_t)n + rec_len, out, len, &p);
    if (rc == 0)
        memcpy(put_name(p, name, n), rec, rec_len);
    return rc;
}

int stream_enc_snap_begin(const char *name, const uint8_t dbid[16], uint64_t txid, int64_t time_us,
                          uint32_t page_size, uint32_t db_pages, uint64_t cksum, uint64_t term, uint8_t **out,
                          size_t *len)
{
    uint8_t *p;
    size_t n;
    int rc;

    *out = NULL;
    *len = 0;
    if (enc_name_ok(name, &n) != 0 || txid == 0 || !dbhdr_page_size_ok(page_size) || term > TXLOG_TERM_MAX)
        return LV_EINVAL;
    rc = enc_alloc(ST_SNAP_BEGIN, 2 + n + SNAP_BEGIN_FIXED, out, len, &p);
    if (rc != 0)
        return rc;
    p = put_name(p, name, n);
    memcpy(p, dbid, 16);
    lv_put64(p + 16, txid);
    lv_put64(p + 24, (uint64_t)time_us);
    lv_put32(p + 32, page_size);
    lv_put32(p + 36, db_pages);
    lv_put64(p + 40, cksum);
    lv_put64(p + 48, term);
    return 0;
}

int stream_enc_snap_pages(const char *name, uint32_t first_pgno, uint32_t count, uint32_t page_size,
                          const void *pages, uint8_t **out, size_t *len)
{
    uint64_t bytes = (uint64_t)count * page_size;
    uint8_t *p;
    size_t n;
    int rc;

    *out = NULL;
    *len = 0;
    if (enc_name_ok(name, &n) != 0 || count == 0 || first_pgno == 0 || count - 1 > UINT32_MAX - first_pgno ||
        !dbhdr_page_size_ok(page_size) || !pages)
        return LV_EINVAL;
    rc = enc_alloc(ST_SNAP_PAGES, 2 + n + SNAP_PAGES_FIXED + bytes, out, len, &p);
    if (rc != 0)
        return rc;
    p = put_name(p, name, n);
    lv_put32(p, first_pgno);
    lv_put32(p + 4, count);
    memcpy(p + 8, pages, (size_t)bytes);
    return 0;
}

int stream_enc_name(enum stream_type type, const char *name, uint8_t **out, size_t *len)
{
    uint8_t *p;
    size_t n;
    int rc;

    *out = NULL;
    *len = 0;
    if ((type != ST_SNAP_END && type != ST_DROP) || enc_name_ok(name, &n) != 0)
        return LV_EINVAL;
    rc = enc_alloc(type, 2 + n, out, len, &p);
    if (rc == 0)
        put_name(p, name, n);
    return rc;
}

int stream_enc_rename(const char *from, const char *to, uint8_t **out, size_t *len)
{
    uint8_t *p;
    size_t n1, n2;
    int rc;

    *out = NULL;
    *len = 0;
    if (enc_name_ok(from, &n1) != 0 || enc_name_ok(to, &n2) != 0)
        return LV_EINVAL;
    rc = enc_alloc(ST_RENAME, 4 + n1 + n2, out, len, &p);
    if (rc == 0)
        put_name(put_name(p, from, n1), to, n2);
    return rc;
}

int stream_enc_heartbeat(int64_t time_us, uint64_t seq, uint8_t **out, size_t *len)
{
    uint8_t *p;
    int rc;

    *out = NULL;
    *len = 0;
    rc = enc_alloc(ST_HEARTBEAT, HEARTBEAT_LEN, out, len, &p);
    if (rc == 0) {
        lv_put64(p, (uint64_t)time_us);
        lv_put64(p + 8, seq);
    }
    return rc;
}

/* ---- Decoder ---- */

int stream_dec_new(uint32_t max_frame, struct stream_dec **out)
{
    struct stream_dec *d = calloc(1, sizeof *d);

    *out = NULL;
    if (!d)
        return LV_ENOMEM;
    d->max_frame = max_frame ? max_frame : STREAM_DEFAULT_MAX_FRAME;
    *out = d;
    return 0;
}

void stream_dec_free(struct stream_dec *d)
{
    if (!d)
        return;
    free(d->buf);
    free(d->held);
    free(d->text);
    free(d);
}

size_t stream_dec_pending(const struct stream_dec *d)
{
    return d->end - d->start - d->keep;
}

const char *stream_dec_error(const struct stream_dec *d)
{
    return d->err;
}

/* D1 and D3, checked at every transition (push, release, frame returned). */
static void assert_dec_state(const struct stream_dec *d)
{
    LV_ASSERT(d->start + d->keep <= d->end && d->end <= d->cap);
    LV_ASSERT(d->buf || d->cap == 0);
    LV_ASSERT(!d->held || d->keep == 0);
    LV_ASSERT(d->max_frame > 0);
    LV_UNUSED(d);
}

/* Capacity for need bytes, growing from cap: at least double, at least DEC_MIN_CAP. */
static size_t grow_cap(size_t cap, size_t need)
{
    size_t c = cap < DEC_MIN_CAP ? DEC_MIN_CAP : cap;

    while (c < need)
        c = c > SIZE_MAX / 2 ? need : c * 2;
    return c;
}

int stream_dec_push(struct stream_dec *d, const void *data, size_t n)
{
    size_t live, need, ncap;
    uint8_t *nb;

    if (d->failed || n == 0)
        return 0;
    if (d->cap - d->end < n) {
        live = d->end - d->start - d->keep;
        if (n > SIZE_MAX / 2 - live)
            return LV_ENOMEM;
        need = live + n;
        if (d->keep == 0) {
            /* Nothing borrowed: compact to the front, then grow if still short. */
            if (live)
                memmove(d->buf, d->buf + d->start, live);
            d->start = 0;
            d->end = live;
            if (need > d->cap) {
                ncap = grow_cap(d->cap, need);
                nb = realloc(d->buf, ncap);
                if (!nb)
                    return LV_ENOMEM;
                d->buf = nb;
                d->cap = ncap;
            }
        } else {
            /* D2: the returned frame stays where it is, in held. */
            LV_ASSERT(!d->held);
            ncap = grow_cap(0, need);
            nb = malloc(ncap);
            if (!nb)
                return LV_ENOMEM;
            memcpy(nb, d->buf + d->start + d->keep, live);
            d->held = d->buf;
            d->buf = nb;
            d->cap = ncap;
            d->start = 0;
            d->keep = 0;
            d->end = live;
        }
    }
    memcpy(d->buf + d->end, data, n);
    d->end += n;
    assert_dec_state(d);
    return 0;
}

/* Forget the frame returned last (D2) and give back memory (D5). */
static void dec_release(struct stream_dec *d)
{
    size_t live;

    free(d->held);
    d->held = NULL;
    free(d->text);
    d->text = NULL;
    d->start += d->keep;
    d->keep = 0;
    live = d->end - d->start;
    if (live == 0) {
        d->start = d->end = 0;
        if (d->cap > DEC_SHRINK) {
            free(d->buf);
            d->buf = NULL;
            d->cap = 0;
        }
    } else if (d->cap > DEC_SHRINK && live < d->cap / 8) {
        size_t ncap = grow_cap(0, live * 2);
        uint8_t *nb;

        memmove(d->buf, d->buf + d->start, live);
        d->start = 0;
        d->end = live;
        nb = realloc(d->buf, ncap);
        if (nb) {
            d->buf = nb;
            d->cap = ncap;
        }
    }
    assert_dec_state(d);
}

/* A database name made safe to print (control bytes as '?', cut at 100 bytes). */
static const char *show_name(const char *s, char *out, size_t outlen)
{
    size_t i, n = strlen(s), max = outlen - 4;

    for (i = 0; i < n && i < max && i < 100; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    if (i < n) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

/* Fail the decoder (D4) on the frame at d->off of type (0: not known yet)
 * and database name (NULL: none yet): "<TYPE> frame [for "name"] at stream
 * byte N: <message>".  Returns LV_ECORRUPT. */
static int dec_fail(struct stream_dec *d, int type, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int dec_fail(struct stream_dec *d, int type, const char *name, const char *fmt, ...)
{
    char what[384], nb[112];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (type == 0)
        snprintf(d->err, sizeof d->err, "%s at stream byte %" PRIu64, what, d->off);
    else if (name)
        snprintf(d->err, sizeof d->err, "%s frame for \"%s\" at stream byte %" PRIu64 ": %s", stream_type_name(type),
                 show_name(name, nb, sizeof nb), d->off, what);
    else
        snprintf(d->err, sizeof d->err, "%s frame at stream byte %" PRIu64 ": %s", stream_type_name(type), d->off,
                 what);
    d->failed = 1;
    return LV_ECORRUPT;
}

/* Check the 16-byte header at p (D5: before the payload is waited for). */
static int dec_header(struct stream_dec *d, const uint8_t *p, int *type, uint32_t *len)
{
    uint32_t magic = lv_get32(p);

    if (magic != STREAM_MAGIC)
        return dec_fail(d, 0, NULL, "bad frame magic 0x%08" PRIx32 " (expected 0x%08" PRIx32 " \"LVSF\": not a "
                        "litevault replication stream?)", magic, (uint32_t)STREAM_MAGIC);
    if (lv_get32(p + 12) != XXH32(p, 12, 0))
        return dec_fail(d, 0, NULL, "frame header checksum mismatch");
    *type = p[4];
    *len = lv_get32(p + 8);
    if (*type < ST_HELLO || *type > ST_ERROR)
        return dec_fail(d, 0, NULL, "unknown frame type %d", *type);
    if (p[5] != 0)
        return dec_fail(d, *type, NULL, "unknown flags 0x%02x", p[5]);
    if (lv_get16(p + 6) != 0)
        return dec_fail(d, *type, NULL, "reserved header bytes are not zero");
    if (*len > d->max_frame)
        return dec_fail(d, *type, NULL, "payload of %" PRIu32 " bytes is over the limit of %" PRIu32 " bytes",
                        *len, d->max_frame);
    return 0;
}

/* Read a NAME from c into dst (NUL-terminated). */
static int dec_name(struct stream_dec *d, int type, struct cur *c, char *dst)
{
    const char *why;
    size_t n;

    if (c->n < 2)
        return dec_fail(d, type, NULL, "payload ends before the database name");
    n = lv_get16(c->p);
    if (n > c->n - 2)
        return dec_fail(d, type, NULL, "database name of %zu bytes runs past the payload (%zu bytes left)", n,
                        c->n - 2);
    why = name_problem(c->p + 2, n);
    if (why)
        return dec_fail(d, type, NULL, "bad database name (%zu bytes): %s", n, why);
    memcpy(dst, c->p + 2, n);
    dst[n] = '\0';
    c->p += 2 + n;
    c->n -= 2 + n;
    return 0;
}

/* The rest of c must be exactly want bytes. */
static int dec_exact(struct stream_dec *d, int type, const char *name, const struct cur *c, size_t want)
{
    if (c->n != want)
        return dec_fail(d, type, name, "%zu payload bytes after the name, expected %zu", c->n, want);
    return 0;
}

static int dec_record(struct stream_dec *d, const struct cur *c, struct stream_frame *f)
{
    const uint8_t *r = c->p;
    uint64_t stored;
    int rc;

    if (c->n < REC_MIN)
        return dec_fail(d, ST_RECORD, f->name, "%zu record bytes, fewer than a header and a trailer (%d)", c->n,
                        REC_MIN);
    if (lv_get64(r + 104) != cksum_buf(r, 104))
        return dec_fail(d, ST_RECORD, f->name, "record header checksum mismatch");
    rc = txlog_hdr_decode(r, &f->hdr);
    if (rc == LV_EVERSION)
        return dec_fail(d, ST_RECORD, f->name, "record format version %u is not supported", lv_get16(r + 4));
    if (rc != 0)
        return dec_fail(d, ST_RECORD, f->name, "record header invalid (magic or fields; TXID %" PRIu64 ")",
                        lv_get64(r + 24));
    stored = f->hdr.stored_len;
    if (stored != c->n - REC_MIN)
        return dec_fail(d, ST_RECORD, f->name, "record TXID %" PRIu64 " has %" PRIu64 " stored payload bytes, "
                        "the frame holds %zu", f->hdr.txid, stored, c->n - REC_MIN);
    if (lv_get64(r + TXLOG_HDR_SIZE + stored) != cksum_buf(r + TXLOG_HDR_SIZE, (size_t)stored))
        return dec_fail(d, ST_RECORD, f->name, "record TXID %" PRIu64 " payload trailer mismatch", f->hdr.txid);
    f->rec = r;
    f->rec_len = c->n;
    return 0;
}

static int dec_snap_begin(struct stream_dec *d, const struct cur *c, struct stream_frame *f)
{
    const uint8_t *p = c->p;
    int rc = c->n == SNAP_BEGIN_V1 ? 0 : dec_exact(d, ST_SNAP_BEGIN, f->name, c, SNAP_BEGIN_FIXED);

    if (rc != 0)
        return rc;
    memcpy(f->dbid, p, 16);
    f->txid = lv_get64(p + 16);
    f->time_us = (int64_t)lv_get64(p + 24);
    f->page_size = lv_get32(p + 32);
    f->db_pages = lv_get32(p + 36);
    f->cksum = lv_get64(p + 40);
    f->term = c->n == SNAP_BEGIN_FIXED ? lv_get64(p + 48) : 0;
    if (f->term > TXLOG_TERM_MAX)
        return dec_fail(d, ST_SNAP_BEGIN, f->name, "term %" PRIu64 " over 56 bits", f->term);
    if (f->txid == 0)
        return dec_fail(d, ST_SNAP_BEGIN, f->name, "TXID 0");
    if (!dbhdr_page_size_ok(f->page_size))
        return dec_fail(d, ST_SNAP_BEGIN, f->name, "page size %" PRIu32 " is not a power of two in 512..65536",
                        f->page_size);
    return 0;
}

static int dec_snap_pages(struct stream_dec *d, const struct cur *c, struct stream_frame *f)
{
    size_t bytes;

    if (c->n < SNAP_PAGES_FIXED)
        return dec_fail(d, ST_SNAP_PAGES, f->name, "%zu payload bytes after the name, expected at least %d", c->n,
                        SNAP_PAGES_FIXED);
    f->first_pgno = lv_get32(c->p);
    f->count = lv_get32(c->p + 4);
    bytes = c->n - SNAP_PAGES_FIXED;
    if (f->first_pgno == 0)
        return dec_fail(d, ST_SNAP_PAGES, f->name, "first page number 0");
    if (f->count == 0)
        return dec_fail(d, ST_SNAP_PAGES, f->name, "no pages (count 0)");
    if (f->count - 1 > UINT32_MAX - f->first_pgno)
        return dec_fail(d, ST_SNAP_PAGES, f->name, "%" PRIu32 " pages from %" PRIu32 " run past page 4294967295",
                        f->count, f->first_pgno);
    if (bytes % f->count != 0 || bytes / f->count > 65536 || !dbhdr_page_size_ok((uint32_t)(bytes / f->count)))
        return dec_fail(d, ST_SNAP_PAGES, f->name, "%zu page bytes for %" PRIu32 " pages: the page size is not a "
                        "power of two in 512..65536", bytes, f->count);
    f->page_size = (uint32_t)(bytes / f->count);
    f->pages = c->p + SNAP_PAGES_FIXED;
    return 0;
}

/* HELLO / ERROR: a NUL-terminated copy of valid UTF-8 without NUL bytes. */
static int dec_text(struct stream_dec *d, int type, const struct cur *c, struct stream_frame *f)
{
    const uint8_t *nul = memchr(c->p, 0, c->n);
    size_t bad;

    if (type == ST_HELLO && c->n == 0)
        return dec_fail(d, type, NULL, "empty payload");
    if (nul)
        return dec_fail(d, type, NULL, "NUL byte at payload offset %zu", (size_t)(nul - c->p));
    bad = utf8_bad(c->p, c->n);
    if (bad != c->n)
        return dec_fail(d, type, NULL, "not valid UTF-8 at payload offset %zu", bad);
    d->text = malloc(c->n + 1);
    if (!d->text)
        return LV_ENOMEM; /* not a decoding error: the frame stays, the caller may retry */
    memcpy(d->text, c->p, c->n);
    d->text[c->n] = '\0';
    f->text = d->text;
    f->text_len = c->n;
    return 0;
}

/* Decode the payload (len bytes at p, all present) of a frame of type. */
static int dec_payload(struct stream_dec *d, int type, const uint8_t *p, uint32_t len, struct stream_frame *f)
{
    struct cur c = {p, len};
    int rc;

    f->type = (enum stream_type)type;
    if (type == ST_HELLO || type == ST_ERROR)
        return dec_text(d, type, &c, f);
    if (type == ST_HEARTBEAT) {
        if (len != HEARTBEAT_LEN)
            return dec_fail(d, type, NULL, "payload of %" PRIu32 " bytes, expected %d", len, HEARTBEAT_LEN);
        f->time_us = (int64_t)lv_get64(p);
        f->seq = lv_get64(p + 8);
        return 0;
    }
    /* Every other type starts with a NAME. */
    rc = dec_name(d, type, &c, d->name);
    if (rc != 0)
        return rc;
    f->name = d->name;
    switch (type) {
    case ST_RECORD:
        return dec_record(d, &c, f);
    case ST_SNAP_BEGIN:
        return dec_snap_begin(d, &c, f);
    case ST_SNAP_PAGES:
        return dec_snap_pages(d, &c, f);
    case ST_RENAME:
        rc = dec_name(d, type, &c, d->name2);
        if (rc == 0)
            rc = dec_exact(d, type, f->name, &c, 0);
        f->name2 = d->name2;
        return rc;
    default: /* SNAP_END, DROP */
        return dec_exact(d, type, f->name, &c, 0);
    }
}

int stream_dec_next(struct stream_dec *d, struct stream_frame *f)
{
    const uint8_t *p;
    uint32_t len = 0;
    int type = 0, rc;

    memset(f, 0, sizeof *f);
    if (d->failed)
        return LV_ECORRUPT;
    dec_release(d);
    if (d->end - d->start < STREAM_HDR_SIZE)
        return 0;
    p = d->buf + d->start;
    rc = dec_header(d, p, &type, &len);
    if (rc == 0 && d->end - d->start - STREAM_HDR_SIZE < len)
        return 0; /* D5: header checked, payload not all there yet */
    if (rc == 0)
        rc = dec_payload(d, type, p + STREAM_HDR_SIZE, len, f);
    if (rc != 0) {
        memset(f, 0, sizeof *f);
        return rc; /* LV_ECORRUPT (failed for good), or LV_ENOMEM (nothing consumed) */
    }
    d->keep = STREAM_HDR_SIZE + (size_t)len;
    d->off += d->keep;
    assert_dec_state(d);
    return 1;
}
