/*
 * unit_stream.c -- the replication stream's frames (src/replica/stream.c):
 * encoder and decoder round trips of every frame type, feeding in any
 * split (down to one byte at a time), frames staying valid across pushes,
 * and the decoder's refusals: garbage, bad magic, header checksum, flags,
 * unknown type, oversized length, bad names, bad records, bad payloads.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "log/txlog.h"
#include "replica/stream.h"

static void st_quiet(void)
{
    lvlog_threshold = -1;
}

TestSuite(stream, .init = st_quiet);

/* A growing byte string. */
struct bytes {
    uint8_t *p;
    size_t n;
};

static void b_add(struct bytes *b, const void *d, size_t n)
{
    b->p = realloc(b->p, b->n + n + 1);
    cr_assert(b->p);
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

/* Append the frame *f (*n bytes) an encoder returned (rc 0 expected) and
 * free it.  Pointers, so that b_frame(&b, enc(..., &f, &n), &f, &n) reads
 * them after the encoder ran. */
static void b_frame(struct bytes *b, int rc, uint8_t **f, size_t *n)
{
    cr_assert_eq(rc, 0, "encoder failed: %s", lv_strerror(rc));
    cr_assert(*f);
    b_add(b, *f, *n);
    free(*f);
    *f = NULL;
}

/* A frame with any header fields: magic, type, flags, reserved, length
 * (declared; the payload given may be shorter), checksum recomputed. */
static void b_raw(struct bytes *b, uint32_t magic, int type, int flags, int reserved, uint32_t len, const void *payload,
                  size_t plen)
{
    uint8_t h[STREAM_HDR_SIZE];

    lv_put32(h, magic);
    h[4] = (uint8_t)type;
    h[5] = (uint8_t)flags;
    lv_put16(h + 6, (uint16_t)reserved);
    lv_put32(h + 8, len);
    lv_put32(h + 12, XXH32(h, 12, 0));
    b_add(b, h, sizeof h);
    if (plen)
        b_add(b, payload, plen);
}

/* A NAME field into p; returns its size. */
static size_t put_name(uint8_t *p, const char *name, size_t n)
{
    lv_put16(p, (uint16_t)n);
    memcpy(p + 2, name, n);
    return 2 + n;
}

/* An uncompressed txlog record of TXID txid carrying npages pages of 512
 * bytes (pages 1..npages, filled from seed); malloc'ed, *len its size. */
static uint8_t *mk_record(uint64_t txid, uint32_t npages, uint8_t seed, size_t *len)
{
    struct txlog_hdr h;
    size_t stored = (size_t)npages * (4 + 512);
    uint8_t *r = malloc(TXLOG_HDR_SIZE + stored + TXLOG_TRAILER_SIZE);
    uint8_t *p = r + TXLOG_HDR_SIZE;

    cr_assert(r);
    memset(&h, 0, sizeof h);
    h.version = 1;
    memset(h.dbid, 0xab, 16);
    h.txid = txid;
    h.time_us = 1790000000000000LL + (int64_t)txid;
    h.page_size = 512;
    h.db_pages = npages + 3;
    h.npages = npages;
    h.comp = TXLOG_COMP_NONE;
    h.pre_cksum = 0x1111;
    h.post_cksum = 0x2222;
    h.stored_len = stored;
    h.raw_len = stored;
    for (uint32_t i = 0; i < npages; i++) {
        lv_put32(p, i + 1);
        for (int j = 0; j < 512; j++)
            p[4 + j] = (uint8_t)(seed + i * 7 + j);
        p += 4 + 512;
    }
    txlog_hdr_encode(&h, r);
    lv_put64(r + TXLOG_HDR_SIZE + stored, cksum_buf(r + TXLOG_HDR_SIZE, stored));
    *len = TXLOG_HDR_SIZE + stored + TXLOG_TRAILER_SIZE;
    return r;
}

static uint8_t pages_buf[3 * 1024];

/* One frame of every type, in this order:
 * HELLO, RECORD, SNAP_BEGIN, SNAP_PAGES, SNAP_END, HEARTBEAT, DROP, RENAME, ERROR. */
static struct bytes all_frames(void)
{
    struct bytes b = {0};
    uint8_t *f, dbid[16], *rec;
    size_t n, rlen;

    for (size_t i = 0; i < sizeof pages_buf; i++)
        pages_buf[i] = (uint8_t)(i * 31 + 7);
    memset(dbid, 0x5c, sizeof dbid);
    rec = mk_record(5, 2, 9, &rlen);
    b_frame(&b, stream_enc_text(ST_HELLO, "{\"version\":1,\"cluster\":\"c\"}", &f, &n), &f, &n);
    b_frame(&b, stream_enc_record("sub/a.db", rec, rlen, &f, &n), &f, &n);
    b_frame(&b, stream_enc_snap_begin("b.db", dbid, 42, -7, 1024, 3, 0x0123456789abcdefULL, 77, &f, &n), &f, &n);
    b_frame(&b, stream_enc_snap_pages("b.db", 1, 3, 1024, pages_buf, &f, &n), &f, &n);
    b_frame(&b, stream_enc_name(ST_SNAP_END, "b.db", &f, &n), &f, &n);
    b_frame(&b, stream_enc_heartbeat(1790000000123456LL, 99, &f, &n), &f, &n);
    b_frame(&b, stream_enc_name(ST_DROP, "gone.db", &f, &n), &f, &n);
    b_frame(&b, stream_enc_rename("old/x.db", "new/y.db", &f, &n), &f, &n);
    b_frame(&b, stream_enc_text(ST_ERROR, "primary is stopping \xc3\xa9", &f, &n), &f, &n);
    free(rec);
    return b;
}

/* Check frame i of all_frames(). */
static void check_frame(int i, const struct stream_frame *f)
{
    static const enum stream_type types[] = {ST_HELLO,     ST_RECORD, ST_SNAP_BEGIN, ST_SNAP_PAGES, ST_SNAP_END,
                                             ST_HEARTBEAT, ST_DROP,   ST_RENAME,     ST_ERROR};
    uint8_t dbid[16], *rec;
    size_t rlen;

    cr_assert_lt(i, 9);
    cr_assert_eq(f->type, types[i], "frame %d: type %d", i, f->type);
    switch (f->type) {
    case ST_HELLO:
        cr_assert_str_eq(f->text, "{\"version\":1,\"cluster\":\"c\"}");
        cr_assert_eq(f->text_len, strlen(f->text));
        cr_assert_null(f->name);
        break;
    case ST_RECORD:
        rec = mk_record(5, 2, 9, &rlen);
        cr_assert_str_eq(f->name, "sub/a.db");
        cr_assert_eq(f->rec_len, rlen);
        cr_assert(memcmp(f->rec, rec, rlen) == 0);
        cr_assert_eq(f->hdr.txid, 5);
        cr_assert_eq(f->hdr.npages, 2);
        cr_assert_eq(f->hdr.page_size, 512);
        cr_assert_eq(f->hdr.stored_len, 2 * 516);
        free(rec);
        break;
    case ST_SNAP_BEGIN:
        memset(dbid, 0x5c, sizeof dbid);
        cr_assert_str_eq(f->name, "b.db");
        cr_assert(memcmp(f->dbid, dbid, 16) == 0);
        cr_assert_eq(f->txid, 42);
        cr_assert_eq(f->time_us, -7);
        cr_assert_eq(f->page_size, 1024);
        cr_assert_eq(f->db_pages, 3);
        cr_assert_eq(f->cksum, 0x0123456789abcdefULL);
        cr_assert_eq(f->term, 77);
        break;
    case ST_SNAP_PAGES:
        cr_assert_str_eq(f->name, "b.db");
        cr_assert_eq(f->first_pgno, 1);
        cr_assert_eq(f->count, 3);
        cr_assert_eq(f->page_size, 1024);
        cr_assert(memcmp(f->pages, pages_buf, 3 * 1024) == 0);
        break;
    case ST_SNAP_END:
        cr_assert_str_eq(f->name, "b.db");
        break;
    case ST_HEARTBEAT:
        cr_assert_null(f->name);
        cr_assert_eq(f->time_us, 1790000000123456LL);
        cr_assert_eq(f->seq, 99);
        break;
    case ST_DROP:
        cr_assert_str_eq(f->name, "gone.db");
        cr_assert_null(f->name2);
        break;
    case ST_RENAME:
        cr_assert_str_eq(f->name, "old/x.db");
        cr_assert_str_eq(f->name2, "new/y.db");
        break;
    case ST_ERROR:
        cr_assert_str_eq(f->text, "primary is stopping \xc3\xa9");
        break;
    }
}

/* Feed b in chunks of the sizes step(i) returns, decoding after each push;
 * checks every frame and that all 9 came out with nothing left. */
static void feed_all(const struct bytes *b, size_t (*step)(size_t i))
{
    struct stream_dec *d;
    struct stream_frame f;
    size_t off = 0;
    int got = 0, rc;

    cr_assert_eq(stream_dec_new(0, &d), 0);
    for (size_t i = 0; off < b->n; i++) {
        size_t k = step(i);
        if (k > b->n - off)
            k = b->n - off;
        cr_assert_eq(stream_dec_push(d, b->p + off, k), 0);
        off += k;
        while ((rc = stream_dec_next(d, &f)) == 1)
            check_frame(got++, &f);
        cr_assert_eq(rc, 0, "error: %s", stream_dec_error(d));
    }
    cr_assert_eq(got, 9);
    cr_assert_eq(stream_dec_pending(d), 0);
    cr_assert_str_eq(stream_dec_error(d), "");
    stream_dec_free(d);
}

static size_t step_all(size_t i) { return SIZE_MAX; }
static size_t step_one(size_t i) { return 1; }
static size_t step_odd(size_t i) { return 1 + (i * 7919) % 97; }

Test(stream, round_trip_every_type)
{
    struct bytes b = all_frames();

    feed_all(&b, step_all);
    free(b.p);
}

Test(stream, byte_at_a_time)
{
    struct bytes b = all_frames();

    feed_all(&b, step_one);
    feed_all(&b, step_odd);
    free(b.p);
}

/* Decoding then re-encoding every frame gives the same bytes. */
Test(stream, reencode_identical)
{
    struct bytes b = all_frames(), again = {0};
    struct stream_dec *d;
    struct stream_frame f;
    uint8_t *o;
    size_t n;
    int rc;

    cr_assert_eq(stream_dec_new(0, &d), 0);
    cr_assert_eq(stream_dec_push(d, b.p, b.n), 0);
    while ((rc = stream_dec_next(d, &f)) == 1) {
        switch (f.type) {
        case ST_HELLO:
        case ST_ERROR: rc = stream_enc_text(f.type, f.text, &o, &n); break;
        case ST_RECORD: rc = stream_enc_record(f.name, f.rec, f.rec_len, &o, &n); break;
        case ST_SNAP_BEGIN:
            rc = stream_enc_snap_begin(f.name, f.dbid, f.txid, f.time_us, f.page_size, f.db_pages, f.cksum, f.term, &o, &n);
            break;
        case ST_SNAP_PAGES: rc = stream_enc_snap_pages(f.name, f.first_pgno, f.count, f.page_size, f.pages, &o, &n); break;
        case ST_SNAP_END:
        case ST_DROP: rc = stream_enc_name(f.type, f.name, &o, &n); break;
        case ST_HEARTBEAT: rc = stream_enc_heartbeat(f.time_us, f.seq, &o, &n); break;
        case ST_RENAME: rc = stream_enc_rename(f.name, f.name2, &o, &n); break;
        }
        b_frame(&again, rc, &o, &n);
    }
    cr_assert_eq(rc, 0);
    cr_assert_eq(again.n, b.n);
    cr_assert(memcmp(again.p, b.p, b.n) == 0);
    stream_dec_free(d);
    free(b.p);
    free(again.p);
}

/* A returned frame's pointers survive pushes that make the buffer move. */
Test(stream, frame_valid_across_push)
{
    struct bytes b = all_frames(), big = {0};
    struct stream_dec *d;
    struct stream_frame f;
    uint8_t *rec, *fr;
    size_t rlen, n;
    int rc, got = 0;

    /* A RECORD of 300 pages (about 150 KiB) pushed after the first frames. */
    rec = mk_record(7, 300, 1, &rlen);
    cr_assert_eq(stream_enc_record("big.db", rec, rlen, &fr, &n), 0);
    b_frame(&big, 0, &fr, &n);
    cr_assert_eq(stream_dec_new(0, &d), 0);
    cr_assert_eq(stream_dec_push(d, b.p, b.n), 0);
    cr_assert_eq(stream_dec_next(d, &f), 1);
    check_frame(got++, &f);
    cr_assert_eq(stream_dec_next(d, &f), 1); /* the RECORD */
    cr_assert_eq(stream_dec_push(d, big.p, big.n), 0);
    cr_assert_eq(stream_dec_push(d, big.p, big.n), 0);
    check_frame(got++, &f);
    while ((rc = stream_dec_next(d, &f)) == 1 && got < 9)
        check_frame(got++, &f);
    cr_assert_eq(got, 9);
    for (int i = 0; i < 2; i++) {
        if (i)
            cr_assert_eq(stream_dec_next(d, &f), 1);
        cr_assert_eq(f.type, ST_RECORD);
        cr_assert_str_eq(f.name, "big.db");
        cr_assert_eq(f.rec_len, rlen);
        cr_assert(memcmp(f.rec, rec, rlen) == 0);
    }
    cr_assert_eq(stream_dec_next(d, &f), 0);
    cr_assert_eq(stream_dec_pending(d), 0);
    stream_dec_free(d);
    free(rec);
    free(b.p);
    free(big.p);
}

/* Many large frames then small ones: buffers grow and are given back. */
Test(stream, large_frames)
{
    struct stream_dec *d;
    struct stream_frame f;
    uint8_t *pg = malloc(4u << 20), *fr, *hb;
    size_t n, hn;

    cr_assert(pg);
    for (size_t i = 0; i < (4u << 20); i++)
        pg[i] = (uint8_t)(i >> 9);
    cr_assert_eq(stream_enc_snap_pages("x.db", 11, 1024, 4096, pg, &fr, &n), 0);
    cr_assert_eq(stream_enc_heartbeat(1, 2, &hb, &hn), 0);
    cr_assert_eq(stream_dec_new(0, &d), 0);
    for (int round = 0; round < 3; round++) {
        for (size_t off = 0; off < n; off += 60000)
            cr_assert_eq(stream_dec_push(d, fr + off, n - off < 60000 ? n - off : 60000), 0);
        cr_assert_eq(stream_dec_push(d, hb, 5), 0);
        cr_assert_eq(stream_dec_next(d, &f), 1);
        cr_assert_eq(f.count, 1024);
        cr_assert_eq(f.first_pgno, 11);
        cr_assert_eq(f.page_size, 4096);
        cr_assert(memcmp(f.pages, pg, 4u << 20) == 0);
        cr_assert_eq(stream_dec_next(d, &f), 0);
        cr_assert_eq(stream_dec_pending(d), 5);
        cr_assert_eq(stream_dec_push(d, hb + 5, hn - 5), 0);
        cr_assert_eq(stream_dec_next(d, &f), 1);
        cr_assert_eq(f.type, ST_HEARTBEAT);
        cr_assert_eq(f.seq, 2);
    }
    stream_dec_free(d);
    free(pg);
    free(fr);
    free(hb);
}

/* ---- refusals ---- */

/* Decode b with a decoder of max_frame; expect LV_ECORRUPT with a message
 * containing want (after frames_ok good frames), that stays failed. */
static void expect_fail(const struct bytes *b, uint32_t max_frame, int frames_ok, const char *want)
{
    struct stream_dec *d;
    struct stream_frame f;
    int rc, got = 0;
    char msg[512];

    cr_assert_eq(stream_dec_new(max_frame, &d), 0);
    cr_assert_eq(stream_dec_push(d, b->p, b->n), 0);
    while ((rc = stream_dec_next(d, &f)) == 1)
        got++;
    cr_assert_eq(rc, LV_ECORRUPT, "rc %d, expected LV_ECORRUPT (%s)", rc, want);
    cr_assert_eq(got, frames_ok);
    cr_assert_null(f.name);
    snprintf(msg, sizeof msg, "%s", stream_dec_error(d));
    cr_assert(strstr(msg, want), "message \"%s\" lacks \"%s\"", msg, want);
    /* Stays failed, ignores more bytes, same message. */
    cr_assert_eq(stream_dec_push(d, b->p, b->n), 0);
    cr_assert_eq(stream_dec_next(d, &f), LV_ECORRUPT);
    cr_assert_eq(stream_dec_next(d, &f), LV_ECORRUPT);
    cr_assert_str_eq(stream_dec_error(d), msg);
    stream_dec_free(d);
}

Test(stream, garbage)
{
    struct bytes b = {0};
    uint64_t s = 88172645463325252ULL;

    for (int i = 0; i < 1000; i++) {
        uint8_t c;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        c = (uint8_t)s;
        b_add(&b, &c, 1);
    }
    expect_fail(&b, 0, 0, "at stream byte 0");
    free(b.p);
    b.p = NULL;
    b.n = 0;
    b_add(&b, "HTTP/1.1 200 OK\r\n", 17);
    expect_fail(&b, 0, 0, "bad frame magic 0x48545450");
    free(b.p);
}

Test(stream, bad_magic_after_good_frames)
{
    struct bytes b = all_frames();
    size_t good = b.n;

    b_raw(&b, 0x4C565347, ST_HEARTBEAT, 0, 0, 16, "0123456789abcdef", 16);
    expect_fail(&b, 0, 9, "bad frame magic 0x4c565347");
    {
        char want[64];
        snprintf(want, sizeof want, "at stream byte %zu", good);
        expect_fail(&b, 0, 9, want);
    }
    free(b.p);
}

Test(stream, bad_header_checksum)
{
    struct bytes b = {0};
    char want[128];
    size_t second;
    uint8_t *f;
    size_t n;

    b_frame(&b, stream_enc_text(ST_HELLO, "{}", &f, &n), &f, &n);
    second = b.n;
    b_frame(&b, stream_enc_heartbeat(1, 2, &f, &n), &f, &n);
    b.p[second + 15] ^= 1;
    snprintf(want, sizeof want, "frame header checksum mismatch at stream byte %zu", second);
    expect_fail(&b, 0, 1, want);
    /* A changed length is caught by the checksum too. */
    b.p[second + 15] ^= 1;
    b.p[second + 11] ^= 0x40;
    expect_fail(&b, 0, 1, want);
    free(b.p);
}

Test(stream, flags_reserved_unknown_type)
{
    struct bytes b = {0};

    b_raw(&b, STREAM_MAGIC, ST_HEARTBEAT, 1, 0, 16, "0123456789abcdef", 16);
    expect_fail(&b, 0, 0, "HEARTBEAT frame at stream byte 0: unknown flags 0x01");
    free(b.p);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_HEARTBEAT, 0, 2, 16, "0123456789abcdef", 16);
    expect_fail(&b, 0, 0, "reserved header bytes are not zero");
    free(b.p);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, 10, 0, 0, 0, NULL, 0);
    expect_fail(&b, 0, 0, "unknown frame type 10 at stream byte 0");
    free(b.p);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, 0, 0, 0, 0, NULL, 0);
    expect_fail(&b, 0, 0, "unknown frame type 0");
    free(b.p);
    cr_assert_str_eq(stream_type_name(ST_RECORD), "RECORD");
    cr_assert_str_eq(stream_type_name(ST_ERROR), "ERROR");
    cr_assert_str_eq(stream_type_name(0), "UNKNOWN");
    cr_assert_str_eq(stream_type_name(10), "UNKNOWN");
}

/* An oversized length is refused from the header alone, before its payload. */
Test(stream, oversized_length)
{
    struct bytes b = {0};

    b_raw(&b, STREAM_MAGIC, ST_SNAP_PAGES, 0, 0, 5000, NULL, 0);
    expect_fail(&b, 4096, 0, "SNAP_PAGES frame at stream byte 0: payload of 5000 bytes is over the limit of 4096 bytes");
    free(b.p);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_RECORD, 0, 0, 0xFFFFFFFFu, NULL, 0);
    expect_fail(&b, 0, 0, "payload of 4294967295 bytes is over the limit of 268435456 bytes");
    free(b.p);
    /* Exactly max_frame is accepted. */
    {
        struct stream_dec *d;
        struct stream_frame f;
        uint8_t *fr;
        size_t n;

        cr_assert_eq(stream_enc_name(ST_DROP, "abcd", &fr, &n), 0);
        cr_assert_eq(stream_dec_new(6, &d), 0);
        cr_assert_eq(stream_dec_push(d, fr, n), 0);
        cr_assert_eq(stream_dec_next(d, &f), 1);
        stream_dec_free(d);
        free(fr);
    }
}

Test(stream, truncated_frame_pending)
{
    struct bytes b = all_frames();
    struct stream_dec *d;
    struct stream_frame f;
    int got = 0, rc;

    cr_assert_eq(stream_dec_new(0, &d), 0);
    cr_assert_eq(stream_dec_push(d, b.p, b.n - 1), 0);
    while ((rc = stream_dec_next(d, &f)) == 1)
        got++;
    cr_assert_eq(rc, 0);
    cr_assert_eq(got, 8);
    cr_assert_gt(stream_dec_pending(d), STREAM_HDR_SIZE);
    cr_assert_eq(stream_dec_next(d, &f), 0);
    cr_assert_eq(stream_dec_push(d, b.p + b.n - 1, 1), 0);
    cr_assert_eq(stream_dec_next(d, &f), 1);
    cr_assert_eq(f.type, ST_ERROR);
    cr_assert_eq(stream_dec_pending(d), 0);
    stream_dec_free(d);
    /* Cut inside a header: 7 bytes pending. */
    cr_assert_eq(stream_dec_new(0, &d), 0);
    cr_assert_eq(stream_dec_push(d, b.p, 7), 0);
    cr_assert_eq(stream_dec_next(d, &f), 0);
    cr_assert_eq(stream_dec_pending(d), 7);
    stream_dec_free(d);
    free(b.p);
}

Test(stream, names_encoder)
{
    static const char *bad[] = {"", "/a.db", "a//b.db", "a.db/", ".", "..", "./a.db", "a/../b.db", "a/.", "x/..", "/"};
    static const char *good[] = {"a.db", "a/.b/..c/...", "sub/dir/x.db", ".hidden.db", "a..b"};
    char *longname = malloc(STREAM_NAME_MAX + 2);
    uint8_t *f;
    size_t n;

    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        cr_assert_eq(stream_enc_name(ST_DROP, bad[i], &f, &n), LV_EINVAL, "accepted \"%s\"", bad[i]);
        cr_assert_null(f);
        cr_assert_eq(n, 0);
        cr_assert_eq(stream_enc_rename("a.db", bad[i], &f, &n), LV_EINVAL);
        cr_assert_eq(stream_enc_rename(bad[i], "a.db", &f, &n), LV_EINVAL);
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(good); i++) {
        cr_assert_eq(stream_enc_name(ST_SNAP_END, good[i], &f, &n), 0, "refused \"%s\"", good[i]);
        cr_assert_eq(n, STREAM_HDR_SIZE + 2 + strlen(good[i]));
        free(f);
    }
    memset(longname, 'x', STREAM_NAME_MAX + 1);
    longname[STREAM_NAME_MAX + 1] = '\0';
    cr_assert_eq(stream_enc_name(ST_DROP, longname, &f, &n), LV_EINVAL);
    longname[STREAM_NAME_MAX] = '\0';
    cr_assert_eq(stream_enc_name(ST_DROP, longname, &f, &n), 0);
    free(f);
    free(longname);
    cr_assert_eq(stream_enc_name(ST_HELLO, "a.db", &f, &n), LV_EINVAL);
    cr_assert_eq(stream_enc_name(ST_DROP, NULL, &f, &n), LV_EINVAL);
}

/* A DROP frame whose NAME is the n bytes at name, declared length nlen. */
static void drop_frame(struct bytes *b, const char *name, size_t n, size_t nlen)
{
    uint8_t p[5000];

    lv_put16(p, (uint16_t)nlen);
    memcpy(p + 2, name, n);
    b_raw(b, STREAM_MAGIC, ST_DROP, 0, 0, (uint32_t)(2 + n), p, 2 + n);
}

Test(stream, names_decoder)
{
    static const struct {
        const char *name;
        size_t n;
        const char *why;
    } bad[] = {
        {"", 0, "empty"},
        {"/a.db", 5, "starts with '/'"},
        {"a//b", 4, "empty component"},
        {"a/", 2, "empty component"},
        {"..", 2, "\"..\" component"},
        {"a/./b", 5, "\".\" or"},
        {"a\0b", 3, "NUL byte"},
    };
    struct bytes b = {0};
    char *longname = malloc(STREAM_NAME_MAX + 1);

    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        b = (struct bytes){0};
        drop_frame(&b, bad[i].name, bad[i].n, bad[i].n);
        expect_fail(&b, 0, 0, bad[i].why);
        expect_fail(&b, 0, 0, "DROP frame at stream byte 0: bad database name");
        free(b.p);
    }
    /* Declared length past the payload; payload too short for a length. */
    b = (struct bytes){0};
    drop_frame(&b, "abc", 3, 4);
    expect_fail(&b, 0, 0, "database name of 4 bytes runs past the payload (3 bytes left)");
    free(b.p);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_SNAP_END, 0, 0, 1, "x", 1);
    expect_fail(&b, 0, 0, "payload ends before the database name");
    free(b.p);
    /* Too long. */
    memset(longname, 'y', STREAM_NAME_MAX + 1);
    b = (struct bytes){0};
    drop_frame(&b, longname, STREAM_NAME_MAX + 1, STREAM_NAME_MAX + 1);
    expect_fail(&b, 0, 0, "longer than 4095 bytes");
    free(b.p);
    /* Bytes after the name. */
    b = (struct bytes){0};
    {
        uint8_t p[16];
        size_t k = put_name(p, "a.db", 4);
        p[k++] = 'z';
        b_raw(&b, STREAM_MAGIC, ST_DROP, 0, 0, (uint32_t)k, p, k);
    }
    expect_fail(&b, 0, 0, "DROP frame for \"a.db\" at stream byte 0: 1 payload bytes after the name, expected 0");
    free(b.p);
    free(longname);
}

/* A RECORD frame for "r.db" carrying rec (rlen bytes) as given. */
static void record_frame(struct bytes *b, const uint8_t *rec, size_t rlen)
{
    uint8_t *p = malloc(6 + rlen);
    size_t k = put_name(p, "r.db", 4);

    memcpy(p + k, rec, rlen);
    b_raw(b, STREAM_MAGIC, ST_RECORD, 0, 0, (uint32_t)(k + rlen), p, k + rlen);
    free(p);
}

Test(stream, record_refusals)
{
    struct bytes b = {0};
    uint8_t *rec, *f;
    size_t rlen, n;

    /* Payload damaged: the trailer no longer matches. */
    rec = mk_record(5, 1, 3, &rlen);
    rec[TXLOG_HDR_SIZE + 100] ^= 0x10;
    cr_assert_eq(stream_enc_record("r.db", rec, rlen, &f, &n), 0); /* the encoder does not hash payloads */
    b_frame(&b, 0, &f, &n);
    expect_fail(&b, 0, 0, "RECORD frame for \"r.db\" at stream byte 0: record TXID 5 payload trailer mismatch");
    free(b.p);
    /* Trailer damaged. */
    rec[TXLOG_HDR_SIZE + 100] ^= 0x10;
    rec[rlen - 1] ^= 1;
    b = (struct bytes){0};
    record_frame(&b, rec, rlen);
    expect_fail(&b, 0, 0, "record TXID 5 payload trailer mismatch");
    free(b.p);
    rec[rlen - 1] ^= 1;
    /* Header damaged. */
    rec[30] ^= 1;
    b = (struct bytes){0};
    record_frame(&b, rec, rlen);
    expect_fail(&b, 0, 0, "record header checksum mismatch");
    cr_assert_eq(stream_enc_record("r.db", rec, rlen, &f, &n), LV_EINVAL);
    free(b.p);
    rec[30] ^= 1;
    /* Header valid but its fields are not (npages > db_pages), checksum redone. */
    lv_put32(rec + 44, 0);
    lv_put64(rec + 104, cksum_buf(rec, 104));
    b = (struct bytes){0};
    record_frame(&b, rec, rlen);
    expect_fail(&b, 0, 0, "record header invalid");
    free(b.p);
    free(rec);
    /* Lengths do not add up: one byte more in the frame. */
    rec = mk_record(6, 1, 3, &rlen);
    rec = realloc(rec, rlen + 1);
    rec[rlen] = 0;
    b = (struct bytes){0};
    record_frame(&b, rec, rlen + 1);
    expect_fail(&b, 0, 0, "record TXID 6 has 516 stored payload bytes, the frame holds 517");
    cr_assert_eq(stream_enc_record("r.db", rec, rlen + 1, &f, &n), LV_EINVAL);
    free(b.p);
    /* Shorter than a header and trailer. */
    b = (struct bytes){0};
    record_frame(&b, rec, 100);
    expect_fail(&b, 0, 0, "100 record bytes, fewer than a header and a trailer (120)");
    free(b.p);
    free(rec);
}

Test(stream, payload_refusals)
{
    struct bytes b = {0};
    uint8_t p[4096 + 64] = {0};
    size_t k;

    /* HEARTBEAT of 15 bytes. */
    b_raw(&b, STREAM_MAGIC, ST_HEARTBEAT, 0, 0, 15, p, 15);
    expect_fail(&b, 0, 0, "HEARTBEAT frame at stream byte 0: payload of 15 bytes, expected 16");
    free(b.p);
    /* SNAP_BEGIN: short, bad page size, TXID 0. */
    memset(p, 0, sizeof p);
    k = put_name(p, "s.db", 4);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_SNAP_BEGIN, 0, 0, (uint32_t)(k + 47), p, k + 47);
    expect_fail(&b, 0, 0, "47 payload bytes after the name, expected 56");
    free(b.p);
    lv_put64(p + k + 16, 9);
    lv_put32(p + k + 32, 1000);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_SNAP_BEGIN, 0, 0, (uint32_t)(k + 48), p, k + 48);
    expect_fail(&b, 0, 0, "page size 1000 is not a power of two");
    free(b.p);
    lv_put64(p + k + 16, 0);
    lv_put32(p + k + 32, 4096);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_SNAP_BEGIN, 0, 0, (uint32_t)(k + 48), p, k + 48);
    expect_fail(&b, 0, 0, "TXID 0");
    free(b.p);
    /* SNAP_BEGIN with a term over 56 bits; then the 48-byte form of a version 1 primary decodes with term 0. */
    lv_put64(p + k + 16, 9);
    lv_put64(p + k + 48, UINT64_C(1) << 56);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_SNAP_BEGIN, 0, 0, (uint32_t)(k + 56), p, k + 56);
    expect_fail(&b, 0, 0, "term 72057594037927936 over 56 bits");
    free(b.p);
    {
        struct stream_dec *d;
        struct stream_frame f;
        b = (struct bytes){0};
        b_raw(&b, STREAM_MAGIC, ST_SNAP_BEGIN, 0, 0, (uint32_t)(k + 48), p, k + 48);
        cr_assert_eq(stream_dec_new(0, &d), 0);
        cr_assert_eq(stream_dec_push(d, b.p, b.n), 0);
        cr_assert_eq(stream_dec_next(d, &f), 1, "%s", stream_dec_error(d));
        cr_assert_eq(f.txid, 9);
        cr_assert_eq(f.term, 0);
        stream_dec_free(d);
        free(b.p);
    }
    lv_put64(p + k + 48, 0);
    /* SNAP_PAGES: 3 pages in 3000 bytes; count 0; pgno 0; past 2^32-1. */
    lv_put32(p + k, 1);
    lv_put32(p + k + 4, 3);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_SNAP_PAGES, 0, 0, (uint32_t)(k + 8 + 3000), p, k + 8 + 3000);
    expect_fail(&b, 0, 0, "3000 page bytes for 3 pages");
    free(b.p);
    lv_put32(p + k + 4, 0);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_SNAP_PAGES, 0, 0, (uint32_t)(k + 8 + 512), p, k + 8 + 512);
    expect_fail(&b, 0, 0, "no pages (count 0)");
    free(b.p);
    lv_put32(p + k, 0);
    lv_put32(p + k + 4, 1);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_SNAP_PAGES, 0, 0, (uint32_t)(k + 8 + 512), p, k + 8 + 512);
    expect_fail(&b, 0, 0, "first page number 0");
    free(b.p);
    lv_put32(p + k, 0xFFFFFFFFu);
    lv_put32(p + k + 4, 2);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_SNAP_PAGES, 0, 0, (uint32_t)(k + 8 + 1024), p, k + 8 + 1024);
    expect_fail(&b, 0, 0, "run past page 4294967295");
    free(b.p);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_SNAP_PAGES, 0, 0, (uint32_t)(k + 7), p, k + 7);
    expect_fail(&b, 0, 0, "expected at least 8");
    free(b.p);
    /* RENAME with one name only. */
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_RENAME, 0, 0, (uint32_t)k, p, k);
    expect_fail(&b, 0, 0, "RENAME frame at stream byte 0: payload ends before the database name");
    free(b.p);
    /* HELLO empty; ERROR with a NUL; invalid UTF-8 (overlong, surrogate, cut). */
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_HELLO, 0, 0, 0, NULL, 0);
    expect_fail(&b, 0, 0, "HELLO frame at stream byte 0: empty payload");
    free(b.p);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_ERROR, 0, 0, 3, "a\0b", 3);
    expect_fail(&b, 0, 0, "NUL byte at payload offset 1");
    free(b.p);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_HELLO, 0, 0, 3, "{\xc0\xaf", 3);
    expect_fail(&b, 0, 0, "not valid UTF-8 at payload offset 1");
    free(b.p);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_ERROR, 0, 0, 4, "x\xed\xa0\x80", 4);
    expect_fail(&b, 0, 0, "not valid UTF-8 at payload offset 1");
    free(b.p);
    b = (struct bytes){0};
    b_raw(&b, STREAM_MAGIC, ST_ERROR, 0, 0, 3, "x\xe2\x82", 3);
    expect_fail(&b, 0, 0, "not valid UTF-8 at payload offset 1");
    free(b.p);
    /* An empty ERROR is fine. */
    {
        struct stream_dec *d;
        struct stream_frame f;

        b = (struct bytes){0};
        b_raw(&b, STREAM_MAGIC, ST_ERROR, 0, 0, 0, NULL, 0);
        cr_assert_eq(stream_dec_new(0, &d), 0);
        cr_assert_eq(stream_dec_push(d, b.p, b.n), 0);
        cr_assert_eq(stream_dec_next(d, &f), 1);
        cr_assert_str_eq(f.text, "");
        cr_assert_eq(f.text_len, 0);
        stream_dec_free(d);
        free(b.p);
    }
}

Test(stream, encoder_refusals)
{
    uint8_t *f, dbid[16] = {0}, page[512] = {0}, *rec;
    size_t n, rlen;

    cr_assert_eq(stream_enc_text(ST_RECORD, "x", &f, &n), LV_EINVAL);
    cr_assert_eq(stream_enc_text(ST_HELLO, "", &f, &n), LV_EINVAL);
    cr_assert_eq(stream_enc_text(ST_ERROR, "bad \xff utf-8", &f, &n), LV_EINVAL);
    cr_assert_eq(stream_enc_text(ST_ERROR, "", &f, &n), 0);
    cr_assert_eq(n, STREAM_HDR_SIZE);
    free(f);
    cr_assert_eq(stream_enc_snap_begin("a.db", dbid, 0, 0, 4096, 1, 0, 0, &f, &n), LV_EINVAL);
    cr_assert_eq(stream_enc_snap_begin("a.db", dbid, 1, 0, 4000, 1, 0, 0, &f, &n), LV_EINVAL);
    cr_assert_eq(stream_enc_snap_pages("a.db", 1, 0, 512, page, &f, &n), LV_EINVAL);
    cr_assert_eq(stream_enc_snap_pages("a.db", 0, 1, 512, page, &f, &n), LV_EINVAL);
    cr_assert_eq(stream_enc_snap_pages("a.db", 0xFFFFFFFFu, 2, 512, page, &f, &n), LV_EINVAL);
    cr_assert_eq(stream_enc_snap_pages("a.db", 1, 1, 500, page, &f, &n), LV_EINVAL);
    /* Over the default frame limit: 4097 pages of 65536 bytes (pages not read). */
    cr_assert_eq(stream_enc_snap_pages("a.db", 1, 4097, 65536, page, &f, &n), LV_EINVAL);
    cr_assert_eq(stream_enc_snap_pages("a.db", 0xFFFFFFFFu, 1, 512, page, &f, &n), 0);
    free(f);
    cr_assert_eq(stream_enc_record("a.db", page, sizeof page, &f, &n), LV_EINVAL);
    rec = mk_record(1, 1, 0, &rlen);
    cr_assert_eq(stream_enc_record("a.db", rec, 119, &f, &n), LV_EINVAL);
    cr_assert_eq(stream_enc_record("/a.db", rec, rlen, &f, &n), LV_EINVAL);
    cr_assert_eq(stream_enc_record("a.db", rec, rlen, &f, &n), 0);
    cr_assert_eq(n, STREAM_HDR_SIZE + 6 + rlen);
    free(f);
    free(rec);
}

/* The header layout, byte by byte (docs/FORMAT.md). */
Test(stream, header_bytes)
{
    uint8_t h[STREAM_HDR_SIZE];

    stream_hdr_encode(h, ST_HEARTBEAT, 16);
    cr_assert(memcmp(h, "LVSF\x06\x00\x00\x00\x00\x00\x00\x10", 12) == 0);
    cr_assert_eq(lv_get32(h + 12), XXH32(h, 12, 0));
}
