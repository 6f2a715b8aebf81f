/*
 * fuzz_stream.c -- libFuzzer harness for the replication stream decoder
 * (src/replica/stream.c): stream_dec_push / stream_dec_next.
 *
 * Input: the bytes of a stream as a replica receives them; the seeds are
 * streams from the encoder carrying real log records (fuzz/gen_seeds.c).
 * Per input, on the bytes as given and on a fixed-up copy (every frame
 * header checksum recomputed, walking frames by their lengths, and in
 * RECORD frames the record header checksum and trailer; see "Fix-up
 * copies" in fuzz_common.h):
 *   1. decode with everything pushed at once;
 *   2. decode again pushing pieces of pseudo-random sizes (1..64 bytes, now
 *      and then a few KiB; the splits derive from a hash of the input, so
 *      a reproducer replays exactly), calling stream_dec_next until it
 *      wants more after each push, and sometimes pushing the next piece
 *      before looking at the frame just returned;
 * both with the same max_frame: the default, or (for a quarter of the
 * inputs) a small one so that the oversized-frame check is reached.
 *
 * Checked beyond "no crash, no leak, no UB":
 *   - stream_dec_next returns 1, 0 or LV_ECORRUPT only; after
 *     LV_ECORRUPT the message is set, names a stream byte, and later calls
 *     (after more pushes) fail with the same message;
 *   - every frame returned is well-formed: a known type; names follow the
 *     rules (1..4095 bytes, no leading '/', no empty, "." or ".."
 *     component); a RECORD's record lengths add up and its trailer is the
 *     XXH3-64 of its payload; SNAP_PAGES pages cover count * page_size
 *     readable bytes with a valid page size; texts are NUL-terminated at
 *     text_len;
 *   - re-encoding a frame from its fields gives exactly the input bytes it
 *     was decoded from (so frames are contiguous from offset 0), read
 *     after the later pushes (frames stay valid across pushes);
 *   - whole and split feeding give the same frames, the same error
 *     message, and the same pending byte count; without an error, frames
 *     plus pending bytes account for the whole input.
 */
#include <inttypes.h>
#include <xxhash.h>

#include "base/cksum.h"
#include "base/dbhdr.h"
#include "base/lv.h"
#include "log/txlog.h"
#include "replica/stream.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...) do { fprintf(stderr, "fuzz_stream: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

#define MAX_FRAMES 4096

/* What one decoding produced. */
struct outcome {
    size_t nframes;              /* frames returned */
    size_t end[MAX_FRAMES];      /* input offset just after each frame */
    uint8_t type[MAX_FRAMES];    /* its type */
    int rc;                      /* 0 (wants more at the end of the input) or LV_ECORRUPT */
    char err[768];               /* the message if rc */
    size_t pending;              /* stream_dec_pending at the end */
};

static struct outcome whole, split;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init("stream", "unused");
    return 0;
}

/* The name rules of docs/FORMAT.md, written out independently of stream.c. */
static void check_name(const char *name)
{
    size_t n, i, comp = 0;

    if (!name)
        FAIL("frame without its name");
    n = strlen(name);
    if (n < 1 || n > STREAM_NAME_MAX || name[0] == '/')
        FAIL("accepted name \"%s\" (%zu bytes)", name, n);
    for (i = 0; i <= n; i++) {
        if (i < n && name[i] != '/')
            continue;
        if (i == comp || (i - comp == 1 && name[comp] == '.') ||
            (i - comp == 2 && name[comp] == '.' && name[comp + 1] == '.'))
            FAIL("accepted name \"%s\" (component at %zu)", name, comp);
        comp = i + 1;
    }
}

/* Re-encode f from its fields into *out (malloc'ed), *len. */
static void reencode(const struct stream_frame *f, uint8_t **out, size_t *len)
{
    int rc = LV_EINVAL;

    switch (f->type) {
    case ST_HELLO:
    case ST_ERROR:
        rc = stream_enc_text(f->type, f->text, out, len);
        break;
    case ST_RECORD:
        rc = stream_enc_record(f->name, f->rec, f->rec_len, out, len);
        break;
    case ST_SNAP_BEGIN:
        rc = stream_enc_snap_begin(f->name, f->dbid, f->txid, f->time_us, f->page_size, f->db_pages, f->cksum, f->term, out,
                                   len);
        break;
    case ST_SNAP_PAGES:
        rc = stream_enc_snap_pages(f->name, f->first_pgno, f->count, f->page_size, f->pages, out, len);
        break;
    case ST_SNAP_END:
    case ST_DROP:
        rc = stream_enc_name(f->type, f->name, out, len);
        break;
    case ST_HEARTBEAT:
        rc = stream_enc_heartbeat(f->time_us, f->seq, out, len);
        break;
    case ST_RENAME:
        rc = stream_enc_rename(f->name, f->name2, out, len);
        break;
    }
    if (rc != 0)
        FAIL("the encoder refused a %s frame the decoder accepted: %s", stream_type_name(f->type), lv_strerror(rc));
}

/* Check frame f, decoded from in[off..], and record it in o; returns its end. */
static size_t check_frame(const struct stream_frame *f, const uint8_t *in, size_t size, size_t off, struct outcome *o)
{
    volatile uint8_t sink = 0;
    uint8_t *enc;
    size_t len;

    switch (f->type) {
    case ST_HELLO:
    case ST_ERROR:
        if (!f->text || strlen(f->text) != f->text_len || (f->type == ST_HELLO && f->text_len == 0))
            FAIL("%s text of %zu bytes is not a C string of that length", stream_type_name(f->type), f->text_len);
        break;
    case ST_RECORD:
        check_name(f->name);
        if (f->rec_len < TXLOG_HDR_SIZE + TXLOG_TRAILER_SIZE ||
            f->hdr.stored_len != f->rec_len - TXLOG_HDR_SIZE - TXLOG_TRAILER_SIZE || f->hdr.txid == 0)
            FAIL("RECORD of %zu bytes with stored_len %" PRIu64 ", TXID %" PRIu64, f->rec_len, f->hdr.stored_len,
                 f->hdr.txid);
        if (lv_get64(f->rec + f->rec_len - 8) != cksum_buf(f->rec + TXLOG_HDR_SIZE, (size_t)f->hdr.stored_len))
            FAIL("RECORD TXID %" PRIu64 " accepted with a bad trailer", f->hdr.txid);
        break;
    case ST_SNAP_BEGIN:
        check_name(f->name);
        if (f->txid == 0 || !dbhdr_page_size_ok(f->page_size))
            FAIL("SNAP_BEGIN with TXID %" PRIu64 ", page size %" PRIu32, f->txid, f->page_size);
        break;
    case ST_SNAP_PAGES:
        check_name(f->name);
        if (f->count == 0 || f->first_pgno == 0 || !dbhdr_page_size_ok(f->page_size) ||
            (uint64_t)f->first_pgno + f->count - 1 > UINT32_MAX)
            FAIL("SNAP_PAGES of %" PRIu32 " pages from %" PRIu32 ", page size %" PRIu32, f->count, f->first_pgno,
                 f->page_size);
        sink ^= f->pages[0] ^ f->pages[(size_t)f->count * f->page_size - 1];
        break;
    case ST_SNAP_END:
    case ST_DROP:
        check_name(f->name);
        break;
    case ST_RENAME:
        check_name(f->name);
        check_name(f->name2);
        break;
    case ST_HEARTBEAT:
        break;
    default:
        FAIL("frame of unknown type %d returned", (int)f->type);
    }
    reencode(f, &enc, &len);
    if (f->type == ST_SNAP_BEGIN && size - off >= 16 && (size_t)lv_get32(in + off + 8) + 16 + 8 == len) {
        /* the 48-byte SNAP_BEGIN of a HELLO version 1 primary: the encoder
         * writes the 56-byte form; the fields before the term must agree */
        if (f->term != 0 || memcmp(enc + 16, in + off + 16, len - 16 - 8) != 0)
            FAIL("a version 1 SNAP_BEGIN at input offset %zu decodes to other fields", off);
        len -= 8;
    } else if (len > size - off || memcmp(enc, in + off, len) != 0) {
        FAIL("%s frame at input offset %zu re-encodes to %zu other bytes", stream_type_name(f->type), off, len);
    }
    free(enc);
    if (o->nframes < MAX_FRAMES) {
        o->end[o->nframes] = off + len;
        o->type[o->nframes] = (uint8_t)f->type;
    }
    o->nframes++;
    (void)sink;
    return off + len;
}

/* After stream_dec_next returned rc (not 1): check it and, for an error,
 * that the decoder stays failed. */
static void check_stop(struct stream_dec *d, int rc, const uint8_t *in, size_t size, struct outcome *o)
{
    struct stream_frame f;

    if (rc == 0)
        return;
    if (rc != LV_ECORRUPT)
        FAIL("stream_dec_next returned %d (%s)", rc, lv_strerror(rc));
    if (o->rc)
        return;
    o->rc = rc;
    snprintf(o->err, sizeof o->err, "%s", stream_dec_error(d));
    if (!strstr(o->err, "stream byte "))
        FAIL("error message \"%s\" names no stream byte", o->err);
    (void)stream_dec_push(d, in, size < 64 ? size : 64);
    if (stream_dec_next(d, &f) != LV_ECORRUPT || strcmp(stream_dec_error(d), o->err) != 0)
        FAIL("the decoder did not stay failed after \"%s\"", o->err);
}

static void finish(struct stream_dec *d, size_t off, size_t size, struct outcome *o)
{
    o->pending = stream_dec_pending(d);
    if (!o->rc && off + o->pending != size)
        FAIL("%zu bytes in frames + %zu pending != %zu input bytes", off, o->pending, size);
    stream_dec_free(d);
}

static void decode_whole(const uint8_t *in, size_t size, uint32_t max_frame, struct outcome *o)
{
    struct stream_dec *d;
    struct stream_frame f;
    size_t off = 0;
    int rc;

    memset(o, 0, sizeof *o);
    if (stream_dec_new(max_frame, &d) != 0)
        FAIL("stream_dec_new failed");
    if (stream_dec_push(d, in, size) != 0)
        FAIL("push of %zu bytes failed", size);
    while ((rc = stream_dec_next(d, &f)) == 1)
        off = check_frame(&f, in, size, off, o);
    check_stop(d, rc, in, size, o);
    finish(d, off, size, o);
}

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void decode_split(const uint8_t *in, size_t size, uint32_t max_frame, uint32_t seed, struct outcome *o)
{
    struct stream_dec *d;
    struct stream_frame f;
    size_t off = 0, pos = 0;
    uint32_t s = seed | 1;
    int rc = 0;

    memset(o, 0, sizeof *o);
    if (stream_dec_new(max_frame, &d) != 0)
        FAIL("stream_dec_new failed");
    while (pos < size && !o->rc) {
        uint32_t r = rnd(&s);
        size_t k = (r & 15) == 0 ? 1 + (r >> 8) % 4096 : 1 + (r >> 8) % 64;

        if (k > size - pos)
            k = size - pos;
        if (stream_dec_push(d, in + pos, k) != 0)
            FAIL("push of %zu bytes failed", k);
        pos += k;
        while ((rc = stream_dec_next(d, &f)) == 1) {
            /* Now and then push the next piece first: the frame must survive it. */
            if (pos < size && (rnd(&s) & 3) == 0) {
                k = 1 + rnd(&s) % 8192;
                if (k > size - pos)
                    k = size - pos;
                if (stream_dec_push(d, in + pos, k) != 0)
                    FAIL("push of %zu bytes failed", k);
                pos += k;
            }
            off = check_frame(&f, in, size, off, o);
        }
        check_stop(d, rc, in, size, o);
    }
    finish(d, off, size, o);
}

static void compare(void)
{
    size_t n = whole.nframes < MAX_FRAMES ? whole.nframes : MAX_FRAMES;

    if (whole.nframes != split.nframes)
        FAIL("%zu frames whole, %zu split", whole.nframes, split.nframes);
    for (size_t i = 0; i < n; i++)
        if (whole.end[i] != split.end[i] || whole.type[i] != split.type[i])
            FAIL("frame %zu differs: whole %s to %zu, split %s to %zu", i, stream_type_name(whole.type[i]),
                 whole.end[i], stream_type_name(split.type[i]), split.end[i]);
    if (whole.rc != split.rc || strcmp(whole.err, split.err) != 0)
        FAIL("whole: %d \"%s\"; split: %d \"%s\"", whole.rc, whole.err, split.rc, split.err);
    if (!whole.rc && whole.pending != split.pending)
        FAIL("pending %zu whole, %zu split", whole.pending, split.pending);
}

/* Recompute the checksums of every frame header and of the records in
 * RECORD frames, walking frames by their lengths (nothing else changes). */
static void fix_stream(uint8_t *b, size_t n)
{
    size_t off = 0;

    while (n - off >= STREAM_HDR_SIZE) {
        uint8_t *h = b + off;
        uint32_t len;

        lv_put32(h + 12, XXH32(h, 12, 0));
        len = lv_get32(h + 8);
        if (len > n - off - STREAM_HDR_SIZE)
            break;
        if (h[4] == ST_RECORD && len >= 2) {
            size_t nl = lv_get16(h + 16), rl;
            if (nl <= len - 2 && len - 2 - nl >= TXLOG_HDR_SIZE + TXLOG_TRAILER_SIZE) {
                uint8_t *r = h + STREAM_HDR_SIZE + 2 + nl;
                uint64_t stored;
                rl = len - 2 - nl;
                lv_put64(r + 104, cksum_buf(r, 104));
                stored = lv_get64(r + 72);
                if (stored == rl - TXLOG_HDR_SIZE - TXLOG_TRAILER_SIZE)
                    lv_put64(r + TXLOG_HDR_SIZE + stored, cksum_buf(r + TXLOG_HDR_SIZE, (size_t)stored));
            }
        }
        off += STREAM_HDR_SIZE + len;
    }
}

static void run(const uint8_t *in, size_t size, uint32_t h)
{
    uint32_t max_frame = (h & 3) == 0 ? 1 + (h >> 2) % 8192 : 0;

    decode_whole(in, size, max_frame, &whole);
    decode_split(in, size, max_frame, h, &split);
    compare();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t h = XXH32(data, size, 0x5eed);
    uint8_t *copy;

    /* Exact-size heap copies so ASan catches any read past the input. */
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    run(copy, size, h);
    fix_stream(copy, size);
    run(copy, size, h);
    free(copy);
    return 0;
}
