/*
 * unit_txlog_image.c -- txlog_segment_image (src/txlog.c): segment images
 * for the archiver, built by copying local records byte for byte.
 *
 * Logs are written with the real writer (small seg_size so records spread
 * over several segment files; snapshot records; compressible pages stored
 * as zstd and random pages stored raw; one snapshot large enough to be
 * streamed).  Every image is checked three ways: its segment header, a
 * memory reader over it against a directory reader over the same range
 * (headers and every page), and each record's bytes against the bytes at
 * the record's offset in the local segment file, found by an independent
 * walk of the files in this test.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "log/txlog.h"

static char *ti_dirs[8];
static int ti_ndirs;

static int ti_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void ti_quiet(void)
{
    lvlog_threshold = -1;
}

static void ti_cleanup(void)
{
    for (int i = 0; i < ti_ndirs; i++) {
        nftw(ti_dirs[i], ti_rm, 16, FTW_DEPTH | FTW_PHYS);
        free(ti_dirs[i]);
    }
    ti_ndirs = 0;
}

TestSuite(txlog_image, .init = ti_quiet, .fini = ti_cleanup, .timeout = 120);

static const uint8_t TI_ID[16] = {0xa1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0x5e};
static const uint8_t TI_ID2[16] = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};

#define TI_PS 4096u
#define TI_MAXREC 128

static char *ti_tmpdir(void)
{
    char *d = strdup("/tmp/lv-txlog-image-XXXXXX");
    cr_assert(mkdtemp(d));
    cr_assert(ti_ndirs < (int)LV_ARRAY_LEN(ti_dirs));
    ti_dirs[ti_ndirs++] = d;
    return d;
}

static uint64_t ti_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Page pgno of TXID txid: text-like runs (zstd shrinks it) or random bytes
 * (stored raw when the whole record is random). */
static void ti_page(uint8_t *p, uint64_t txid, uint32_t pgno, int random)
{
    uint64_t s = ti_mix(txid << 32 | pgno);

    for (uint32_t i = 0; i < TI_PS; i++) {
        if (random) {
            s = ti_mix(s + i);
            p[i] = (uint8_t)s;
        } else {
            p[i] = (uint8_t)('a' + (ti_mix(s + i / 64) & 3));
        }
    }
}

/* Writer state for a test log. */
struct ti_log {
    struct txlog *l;    /* open writer */
    uint64_t txid;      /* last TXID written */
    uint64_t post;      /* its post checksum */
    uint32_t db_pages;  /* database size */
};

/* Append record txid: a snapshot of `pages` pages, or `nchg` changed pages
 * (every third page from a TXID-dependent start). */
static void ti_commit(struct ti_log *t, int snapshot, uint32_t pages, uint32_t nchg, int random)
{
    struct txlog_hdr h;
    uint8_t *page = malloc(TI_PS);
    int rc;

    memset(&h, 0, sizeof(h));
    h.txid = t->txid + 1;
    h.time_us = 1760000000000000ll + (int64_t)h.txid * 1000;
    h.page_size = TI_PS;
    if (snapshot)
        t->db_pages = pages;
    h.db_pages = t->db_pages;
    h.flags = snapshot ? TXLOG_F_SNAPSHOT : 0;
    h.pre_cksum = t->txid ? t->post : 0;
    h.post_cksum = ti_mix(h.txid * 7919 + 1);
    h.wal_salt1 = 0xabcd;
    h.wal_salt2 = (uint32_t)h.txid;
    h.wal_frame = (uint32_t)h.txid;
    rc = txlog_append_begin(t->l, &h);
    cr_assert_eq(rc, 0, "append_begin %d", rc);
    if (snapshot) {
        for (uint32_t p = 1; p <= pages; p++) {
            ti_page(page, h.txid, p, random);
            cr_assert_eq(txlog_append_page(t->l, p, page), 0);
        }
    } else {
        uint32_t p = (uint32_t)(h.txid % 3) + 1;
        for (uint32_t i = 0; i < nchg && p <= t->db_pages; i++, p += 3) {
            ti_page(page, h.txid, p, random);
            cr_assert_eq(txlog_append_page(t->l, p, page), 0);
        }
    }
    cr_assert_eq(txlog_append_end(t->l), 0);
    free(page);
    t->txid = h.txid;
    t->post = h.post_cksum;
}

/* Write the standard test log into dir: 40 records over several segments;
 * snapshots at 1, 15 (streamed: > 1 MiB raw) and 30; every fourth record
 * random (stored raw). */
static void ti_build(const char *dir, uint64_t seg_size, uint64_t nrec)
{
    struct ti_log t;
    struct txlog_tail tail;
    char err[256];

    memset(&t, 0, sizeof(t));
    cr_assert_eq(txlog_open(dir, TI_ID, seg_size, &t.l, &tail, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tail.last_txid, 0);
    for (uint64_t i = 1; i <= nrec; i++) {
        if (i == 1)
            ti_commit(&t, 1, 12, 0, 0);
        else if (i == 15)
            ti_commit(&t, 1, 300, 0, 0);
        else if (i == 30)
            ti_commit(&t, 1, 20, 0, 1);
        else
            ti_commit(&t, 0, 0, 1 + (uint32_t)(i % 5), i % 4 == 0);
    }
    cr_assert_eq(txlog_sync(t.l), 0);
    txlog_close(t.l);
}

static uint8_t *ti_readfile(const char *path, size_t *len)
{
    struct stat st;
    uint8_t *b;
    int fd = open(path, O_RDONLY);

    cr_assert(fd >= 0, "open %s", path);
    cr_assert_eq(fstat(fd, &st), 0);
    b = malloc((size_t)st.st_size + 1);
    cr_assert_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

/* Where each TXID lives in the local files, found by walking them here. */
struct ti_loc {
    char path[512];  /* segment file */
    uint64_t off;    /* record offset */
    uint64_t len;    /* record length */
    int comp;        /* compression */
};

/* Walk the segment files of dir in order of their first TXID (the name);
 * fills loc[txid] and returns the number of segment files. */
static int ti_locate(const char *dir, struct ti_loc *loc, uint64_t *maxtxid)
{
    char path[512];
    int nseg = 0;

    *maxtxid = 0;
    for (uint64_t first = 1; first <= TI_MAXREC; first++) {
        size_t len;
        uint8_t *b;
        uint64_t off = TXLOG_SEG_HDR_SIZE;

        snprintf(path, sizeof(path), "%s/%016llx.lvseg", dir, (unsigned long long)first);
        if (access(path, F_OK) != 0)
            continue;
        nseg++;
        b = ti_readfile(path, &len);
        while (off + TXLOG_HDR_SIZE <= len) {
            struct txlog_hdr h;
            if (txlog_hdr_decode(b + off, &h) != 0)
                break;
            cr_assert(h.txid <= TI_MAXREC);
            snprintf(loc[h.txid].path, sizeof(loc[h.txid].path), "%s", path);
            loc[h.txid].off = off;
            loc[h.txid].len = TXLOG_HDR_SIZE + h.stored_len + TXLOG_TRAILER_SIZE;
            loc[h.txid].comp = h.comp;
            if (h.txid > *maxtxid)
                *maxtxid = h.txid;
            off += loc[h.txid].len;
        }
        free(b);
    }
    return nseg;
}

static void ti_hdr_bytes(const struct txlog_hdr *h, uint8_t out[TXLOG_HDR_SIZE])
{
    txlog_hdr_encode(h, out);
}

/* Check an image of TXIDs from..last against the log in dir: header,
 * memory reader vs directory reader (headers and pages), bytes of every
 * record vs the local file.  Returns the number of distinct local segment
 * files the records came from. */
static int ti_check(const char *dir, const struct ti_loc *loc, const uint8_t *img, size_t len, uint64_t from,
                    uint64_t last)
{
    struct txlog_reader *rm, *rd;
    struct txlog_hdr hm, hd;
    uint8_t bm[TXLOG_HDR_SIZE], bd[TXLOG_HDR_SIZE];
    uint64_t off = TXLOG_SEG_HDR_SIZE;
    const char *prev_path = "";
    int nfiles = 0;

    cr_assert_geq(len, TXLOG_SEG_HDR_SIZE + TXLOG_HDR_SIZE);
    cr_assert_eq(memcmp(img, "LVTXSEG1", 8), 0);
    cr_assert_eq(memcmp(img + 16, TI_ID, 16), 0);
    cr_assert_eq(lv_get64(img + 32), from);

    /* Memory reader vs directory reader. */
    cr_assert_eq(txlog_reader_open_mem(img, len, "image", &rm), 0);
    cr_assert_eq(txlog_reader_open(dir, from, &rd), 0);
    for (uint64_t tx = from; tx <= last; tx++) {
        uint32_t pm, pd;
        const void *dm, *dd;
        int rcm, rcd;

        cr_assert_eq(txlog_reader_next(rm, &hm), 0, "image: TXID %llu", (unsigned long long)tx);
        cr_assert_eq(txlog_reader_next(rd, &hd), 0);
        cr_assert_eq(hm.txid, tx);
        cr_assert_eq(hd.txid, tx);
        ti_hdr_bytes(&hm, bm);
        ti_hdr_bytes(&hd, bd);
        cr_assert_eq(memcmp(bm, bd, sizeof(bm)), 0, "header of TXID %llu differs", (unsigned long long)tx);
        for (;;) {
            rcm = txlog_reader_page(rm, &pm, &dm);
            rcd = txlog_reader_page(rd, &pd, &dd);
            cr_assert_eq(rcm, rcd, "TXID %llu: page results %d vs %d", (unsigned long long)tx, rcm, rcd);
            if (rcm)
                break;
            cr_assert_eq(pm, pd);
            cr_assert_eq(memcmp(dm, dd, hm.page_size), 0, "TXID %llu page %u", (unsigned long long)tx, pm);
        }
        cr_assert_eq(rcm, LV_ENOENT);
    }
    cr_assert_eq(txlog_reader_next(rm, &hm), LV_ENOENT, "image holds more than %llu", (unsigned long long)last);
    txlog_reader_close(rm);
    txlog_reader_close(rd);

    /* Byte-for-byte equality with the local files. */
    for (uint64_t tx = from; tx <= last; tx++) {
        size_t flen;
        uint8_t *f;

        cr_assert(loc[tx].len, "TXID %llu not located", (unsigned long long)tx);
        cr_assert_leq(off + loc[tx].len, len);
        f = ti_readfile(loc[tx].path, &flen);
        cr_assert_leq(loc[tx].off + loc[tx].len, flen);
        cr_assert_eq(memcmp(img + off, f + loc[tx].off, loc[tx].len), 0, "record %llu bytes differ",
                     (unsigned long long)tx);
        free(f);
        if (strcmp(prev_path, loc[tx].path) != 0)
            nfiles++;
        prev_path = loc[tx].path;
        off += loc[tx].len;
    }
    cr_assert_eq(off, len, "image has bytes after the last record");
    return nfiles;
}

static struct ti_loc ti_locs[TI_MAXREC + 1];

Test(txlog_image, ranges_match_reader_and_local_bytes)
{
    char *dir = ti_tmpdir();
    uint64_t maxtx, last;
    void *img;
    size_t len;
    int nseg, raw = 0, zstd = 0, files;

    ti_build(dir, 16 << 10, 40);
    memset(ti_locs, 0, sizeof(ti_locs));
    nseg = ti_locate(dir, ti_locs, &maxtx);
    cr_assert_eq(maxtx, 40);
    cr_assert_geq(nseg, 4, "only %d segments", nseg);
    for (int tx = 1; tx <= 40; tx++) {
        raw += ti_locs[tx].comp == TXLOG_COMP_NONE;
        zstd += ti_locs[tx].comp == TXLOG_COMP_ZSTD;
    }
    cr_assert(raw > 0 && zstd > 0, "raw %d zstd %d", raw, zstd);

    /* The whole log (to 0 = end), and to beyond the end. */
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 1, 0, 0, &img, &len, &last), 0);
    cr_assert_eq(last, 40);
    files = ti_check(dir, ti_locs, img, len, 1, 40);
    cr_assert_eq(files, nseg);
    free(img);
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 1, 1000, 0, &img, &len, &last), 0);
    cr_assert_eq(last, 40);
    free(img);

    /* Assorted ranges, including ones starting mid-segment, crossing the
     * streamed snapshot (15) and the raw snapshot (30), and single records. */
    static const uint64_t rg[][2] = {{1, 1}, {2, 9}, {3, 17}, {14, 16}, {15, 15}, {16, 31}, {29, 40}, {40, 40},
                                     {7, 39}};
    for (size_t i = 0; i < LV_ARRAY_LEN(rg); i++) {
        cr_assert_eq(txlog_segment_image(dir, TI_ID, rg[i][0], rg[i][1], 0, &img, &len, &last), 0);
        cr_assert_eq(last, rg[i][1]);
        files = ti_check(dir, ti_locs, img, len, rg[i][0], rg[i][1]);
        if (strcmp(ti_locs[rg[i][0]].path, ti_locs[rg[i][1]].path) != 0)
            cr_assert_geq(files, 2);
        free(img);
    }

    /* Deterministic: the same range gives the same bytes. */
    {
        void *a, *b;
        size_t la, lb;
        cr_assert_eq(txlog_segment_image(dir, TI_ID, 5, 25, 0, &a, &la, &last), 0);
        cr_assert_eq(txlog_segment_image(dir, TI_ID, 5, 25, 0, &b, &lb, &last), 0);
        cr_assert_eq(la, lb);
        cr_assert_eq(memcmp(a, b, la), 0);
        free(a);
        free(b);
    }
}

Test(txlog_image, max_bytes_limits_at_record_boundaries)
{
    char *dir = ti_tmpdir();
    uint64_t maxtx, last, next, sum;
    void *img;
    size_t len;

    ti_build(dir, 16 << 10, 40);
    memset(ti_locs, 0, sizeof(ti_locs));
    ti_locate(dir, ti_locs, &maxtx);

    /* Too small for even one record: still one record. */
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 3, 0, 1, &img, &len, &last), 0);
    cr_assert_eq(last, 3);
    ti_check(dir, ti_locs, img, len, 3, 3);
    free(img);
    /* The streamed snapshot (> 1 MiB) alone, despite a small bound. */
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 15, 0, 4096, &img, &len, &last), 0);
    cr_assert_eq(last, 15);
    cr_assert_gt(len, 4096);
    free(img);

    /* Exactly k records fit; one byte less gives k-1. */
    sum = TXLOG_SEG_HDR_SIZE;
    for (uint64_t k = 3; k <= 8; k++)
        sum += ti_locs[k].len;
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 3, 0, sum, &img, &len, &last), 0);
    cr_assert_eq(last, 8);
    cr_assert_eq(len, sum);
    ti_check(dir, ti_locs, img, len, 3, 8);
    free(img);
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 3, 0, sum - 1, &img, &len, &last), 0);
    cr_assert_eq(last, 7);
    cr_assert_eq(len, sum - ti_locs[8].len);
    free(img);
    /* to_txid wins over a larger bound. */
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 3, 5, sum, &img, &len, &last), 0);
    cr_assert_eq(last, 5);
    free(img);

    /* Consecutive bounded images cover the whole log exactly once. */
    next = 1;
    while (next <= 40) {
        cr_assert_eq(txlog_segment_image(dir, TI_ID, next, 0, 20000, &img, &len, &last), 0);
        cr_assert_geq(last, next);
        if (last > next)
            cr_assert_leq(len, 20000);
        ti_check(dir, ti_locs, img, len, next, last);
        free(img);
        next = last + 1;
    }
    cr_assert_eq(next, 41);
}

/* Run txlog_segment_image with stderr captured at ERROR level; the log
 * text goes to *msg (malloc'ed). */
static int ti_image_logged(const char *dir, uint64_t from, uint64_t to, char **msg)
{
    char tmpl[] = "/tmp/lv-txlog-image-log-XXXXXX";
    int fd = mkstemp(tmpl), saved = dup(2), rc;
    void *img = NULL;
    size_t len = 0, mlen;
    uint64_t last;

    cr_assert(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, 2);
    lvlog_threshold = LVLOG_ERROR;
    rc = txlog_segment_image(dir, TI_ID, from, to, 0, &img, &len, &last);
    lvlog_threshold = -1;
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    *msg = (char *)ti_readfile(tmpl, &mlen);
    (*msg)[mlen] = '\0';
    unlink(tmpl);
    if (rc == 0) {
        cr_assert_not_null(img);
        free(img);
    } else {
        cr_assert_null(img);
        cr_assert_eq(len, 0);
    }
    return rc;
}

static void ti_flip(const char *path, uint64_t off)
{
    uint8_t c;
    int fd = open(path, O_RDWR);

    cr_assert(fd >= 0);
    cr_assert_eq(pread(fd, &c, 1, (off_t)off), 1);
    c ^= 0x20;
    cr_assert_eq(pwrite(fd, &c, 1, (off_t)off), 1);
    close(fd);
}

Test(txlog_image, corrupt_local_record_is_refused)
{
    char *dir = ti_tmpdir();
    uint64_t maxtx, last;
    char *msg, *base;
    void *img;
    size_t len;

    ti_build(dir, 16 << 10, 40);
    memset(ti_locs, 0, sizeof(ti_locs));
    ti_locate(dir, ti_locs, &maxtx);
    base = strrchr(ti_locs[20].path, '/') + 1;

    /* A payload byte of TXID 20 (in the middle of its stored payload). */
    ti_flip(ti_locs[20].path, ti_locs[20].off + TXLOG_HDR_SIZE + (ti_locs[20].len - TXLOG_HDR_SIZE) / 2);
    cr_assert_eq(ti_image_logged(dir, 18, 22, &msg), LV_ECORRUPT);
    cr_assert(strstr(msg, base) && strstr(msg, "TXID 20"), "message: %s", msg);
    cr_assert(strstr(msg, "payload checksum"), "message: %s", msg);
    free(msg);
    cr_assert_eq(ti_image_logged(dir, 20, 20, &msg), LV_ECORRUPT);
    free(msg);
    /* Ranges not holding TXID 20 are fine, also ending right before it. */
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 10, 19, 0, &img, &len, &last), 0);
    cr_assert_eq(last, 19);
    free(img);
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 21, 0, 0, &img, &len, &last), 0);
    cr_assert_eq(last, 40);
    free(img);
    /* A bound that stops before TXID 20 does not look at it. */
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 19, 0, TXLOG_SEG_HDR_SIZE + ti_locs[19].len, &img, &len, &last),
                 0);
    cr_assert_eq(last, 19);
    free(img);

    /* A trailer byte of TXID 25. */
    ti_flip(ti_locs[25].path, ti_locs[25].off + ti_locs[25].len - 1);
    cr_assert_eq(ti_image_logged(dir, 21, 30, &msg), LV_ECORRUPT);
    cr_assert(strstr(msg, "TXID 25"), "message: %s", msg);
    free(msg);

    /* A header byte (the commit time) of TXID 35. */
    base = strrchr(ti_locs[35].path, '/') + 1;
    ti_flip(ti_locs[35].path, ti_locs[35].off + 36);
    cr_assert_eq(ti_image_logged(dir, 31, 0, &msg), LV_ECORRUPT);
    cr_assert(strstr(msg, base) && strstr(msg, "TXID 35"), "message: %s", msg);
    free(msg);
}

Test(txlog_image, wrong_database_and_gaps_are_refused)
{
    char *dir = ti_tmpdir();
    char *msg;
    uint64_t maxtx, last, k = 0;
    void *img;
    size_t len;

    ti_build(dir, 16 << 10, 40);
    memset(ti_locs, 0, sizeof(ti_locs));
    ti_locate(dir, ti_locs, &maxtx);
    /* Another database ID than the log's. */
    cr_assert_eq(txlog_segment_image(dir, TI_ID2, 1, 5, 0, &img, &len, &last), LV_ECORRUPT);
    cr_assert_null(img);
    /* A segment in the middle removed: the range across it has a gap. */
    for (uint64_t tx = 2; tx <= 40 && !k; tx++)
        if (strcmp(ti_locs[tx].path, ti_locs[tx - 1].path) != 0 && tx > 5)
            k = tx; /* first TXID of a middle segment */
    cr_assert(k);
    for (uint64_t tx = k + 1; tx <= 40; tx++)
        if (strcmp(ti_locs[tx].path, ti_locs[k].path) != 0) {
            cr_assert_eq(unlink(ti_locs[k].path), 0);
            cr_assert_eq(ti_image_logged(dir, 1, 0, &msg), LV_ECORRUPT);
            cr_assert(strstr(msg, "gap"), "message: %s", msg);
            free(msg);
            /* Up to the gap is still fine. */
            cr_assert_eq(txlog_segment_image(dir, TI_ID, 1, k - 1, 0, &img, &len, &last), 0);
            cr_assert_eq(last, k - 1);
            free(img);
            return;
        }
    cr_assert_fail("no segment after the one starting at %llu", (unsigned long long)k);
}

Test(txlog_image, gap_inside_a_segment_is_refused)
{
    char *dir = ti_tmpdir();
    char *msg;
    uint64_t maxtx, last, k = 0;
    uint8_t *seg;
    size_t slen, len;
    void *img;
    FILE *f;

    ti_build(dir, 16 << 10, 40);
    memset(ti_locs, 0, sizeof(ti_locs));
    ti_locate(dir, ti_locs, &maxtx);
    /* A record with neighbours in the same segment: cut it out. */
    for (uint64_t tx = 3; tx < 40 && !k; tx++)
        if (!strcmp(ti_locs[tx - 1].path, ti_locs[tx].path) && !strcmp(ti_locs[tx].path, ti_locs[tx + 1].path))
            k = tx;
    cr_assert(k);
    seg = ti_readfile(ti_locs[k].path, &slen);
    f = fopen(ti_locs[k].path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(seg, 1, ti_locs[k].off, f), ti_locs[k].off);
    cr_assert_eq(fwrite(seg + ti_locs[k].off + ti_locs[k].len, 1, slen - ti_locs[k].off - ti_locs[k].len, f),
                 slen - ti_locs[k].off - ti_locs[k].len);
    fclose(f);
    free(seg);
    cr_assert_eq(ti_image_logged(dir, k - 1, k + 1, &msg), LV_ECORRUPT);
    cr_assert(strstr(msg, "gap"), "message: %s", msg);
    free(msg);
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 1, k - 1, 0, &img, &len, &last), 0);
    cr_assert_eq(last, k - 1);
    free(img);
}

Test(txlog_image, missing_txids_and_bad_arguments)
{
    char *dir = ti_tmpdir();
    char *missing;
    uint64_t maxtx, last = 99;
    void *img = NULL;
    size_t len = 99;

    ti_build(dir, 16 << 10, 40);
    memset(ti_locs, 0, sizeof(ti_locs));
    ti_locate(dir, ti_locs, &maxtx);
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 41, 0, 0, &img, &len, &last), LV_ENOENT);
    cr_assert_null(img);
    cr_assert_eq(len, 0);
    cr_assert_eq(last, 0);
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 1000, 2000, 0, &img, &len, &last), LV_ENOENT);
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 0, 5, 0, &img, &len, &last), LV_EINVAL);
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 6, 5, 0, &img, &len, &last), LV_EINVAL);
    cr_assert(asprintf(&missing, "%s/nope", dir) > 0);
    cr_assert_eq(txlog_segment_image(missing, TI_ID, 1, 0, 0, &img, &len, &last), LV_ENOENT);
    free(missing);
    /* The first segment pruned: its TXIDs are gone, later ones remain. */
    cr_assert_eq(unlink(ti_locs[1].path), 0);
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 1, 0, 0, &img, &len, &last), LV_ENOENT);
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 40, 0, 0, &img, &len, &last), 0);
    cr_assert_eq(last, 40);
    free(img);
}

static void ti_truncate(const char *path, uint64_t size)
{
    cr_assert_eq(truncate(path, (off_t)size), 0);
}

static void ti_append(const char *path, const void *b, size_t n)
{
    int fd = open(path, O_WRONLY | O_APPEND);

    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, b, n), (ssize_t)n);
    close(fd);
}

Test(txlog_image, incomplete_tail_is_not_yet_there)
{
    char *dir = ti_tmpdir();
    uint64_t maxtx, last, rl;
    uint8_t *seg, *rec, zero[TXLOG_HDR_SIZE];
    size_t slen, len;
    const char *p;
    void *img;

    ti_build(dir, 16 << 10, 24);
    memset(ti_locs, 0, sizeof(ti_locs));
    ti_locate(dir, ti_locs, &maxtx);
    cr_assert_eq(maxtx, 24);
    p = ti_locs[24].path;
    rl = ti_locs[24].len;
    seg = ti_readfile(p, &slen);
    cr_assert_eq(ti_locs[24].off + rl, slen, "TXID 24 is not the last record of the last segment");
    rec = malloc(rl);
    memcpy(rec, seg + ti_locs[24].off, rl);
    free(seg);

    /* The writer is in the middle of TXID 24: various amounts written. */
    const uint64_t cut[] = {1, TXLOG_HDR_SIZE - 1, TXLOG_HDR_SIZE, TXLOG_HDR_SIZE + 3, rl - 1};
    for (size_t i = 0; i < LV_ARRAY_LEN(cut); i++) {
        ti_truncate(p, ti_locs[24].off);
        ti_append(p, rec, cut[i]);
        cr_assert_eq(txlog_segment_image(dir, TI_ID, 20, 0, 0, &img, &len, &last), 0, "cut %llu",
                     (unsigned long long)cut[i]);
        cr_assert_eq(last, 23, "cut %llu", (unsigned long long)cut[i]);
        ti_check(dir, ti_locs, img, len, 20, 23);
        free(img);
        /* Only the partial record wanted: not there yet. */
        cr_assert_eq(txlog_segment_image(dir, TI_ID, 24, 0, 0, &img, &len, &last), LV_ENOENT);
    }
    /* A streamed record in progress: zero placeholder header, then data. */
    ti_truncate(p, ti_locs[24].off);
    memset(zero, 0, sizeof(zero));
    ti_append(p, zero, sizeof(zero));
    ti_append(p, rec + TXLOG_HDR_SIZE, rl - TXLOG_HDR_SIZE);
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 1, 0, 0, &img, &len, &last), 0);
    cr_assert_eq(last, 23);
    ti_check(dir, ti_locs, img, len, 1, 23);
    free(img);

    /* The record completes: now it is included. */
    ti_truncate(p, ti_locs[24].off);
    ti_append(p, rec, rl);
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 20, 0, 0, &img, &len, &last), 0);
    cr_assert_eq(last, 24);
    ti_check(dir, ti_locs, img, len, 20, 24);
    free(img);

    /* A new segment file just created (shorter than its header) is not
     * there yet either. */
    {
        char np[600];
        snprintf(np, sizeof(np), "%s/%016llx.lvseg", dir, 25ull);
        int fd = open(np, O_WRONLY | O_CREAT | O_EXCL, 0644);
        cr_assert(fd >= 0);
        close(fd);
        cr_assert_eq(txlog_segment_image(dir, TI_ID, 22, 0, 0, &img, &len, &last), 0);
        cr_assert_eq(last, 24);
        free(img);
        cr_assert_eq(txlog_segment_image(dir, TI_ID, 25, 0, 0, &img, &len, &last), LV_ENOENT);
        /* But the same truncation in a segment that is not the last is damage. */
        ti_truncate(p, ti_locs[24].off + rl - 1);
        cr_assert_eq(txlog_segment_image(dir, TI_ID, 20, 0, 0, &img, &len, &last), LV_ECORRUPT);
        unlink(np);
    }
    free(rec);
}

/* txlog_prune removes only whole older segments at or below the bound, never
 * the newest; the rest of the log still opens, reads and images. */
Test(txlog_image, prune_whole_old_segments_only)
{
    char *dir = ti_tmpdir();
    uint64_t bytes = 0, first = 0, freed = 0, before = 0, last = 0;
    struct txlog *l = NULL;
    struct txlog_tail tail;
    char err[256];

    ti_build(dir, 20000, 40);
    cr_assert_eq(txlog_dir_usage(dir, &before, &first), 0);
    cr_assert_eq(first, 1);
    cr_assert_eq(txlog_prune(dir, 0, NULL), 0, "nothing at or below TXID 0");
    int n = ti_locate(dir, ti_locs, &last);
    cr_assert_eq(last, 40);
    cr_assert_gt(n, 0);
    /* bound in the middle of some segment: that segment stays */
    int removed = txlog_prune(dir, 20, &freed);
    cr_assert_gt(removed, 0);
    cr_assert_eq(txlog_dir_usage(dir, &bytes, &first), 0);
    cr_assert_eq(bytes + freed, before);
    cr_assert_gt(first, 1);
    cr_assert_leq(first, 21, "a segment holding TXID %d was removed (log now starts at %llu)", 21,
                  (unsigned long long)first);
    /* everything after the bound is still readable, and the log opens */
    void *img = NULL;
    size_t len = 0;
    cr_assert_eq(txlog_segment_image(dir, TI_ID, 21, 0, 0, &img, &len, &last), 0);
    cr_assert_eq(last, 40);
    free(img);
    cr_assert_eq(txlog_open(dir, TI_ID, 20000, &l, &tail, err, sizeof err), 0, "%s", err);
    cr_assert_eq(tail.first_txid, first);
    cr_assert_eq(tail.last_txid, 40);
    txlog_close(l);
    /* never the newest segment, even with a bound past the end */
    txlog_prune(dir, UINT64_MAX, NULL);
    cr_assert_eq(txlog_dir_usage(dir, &bytes, &first), 0);
    cr_assert_gt(bytes, 0);
    cr_assert_eq(txlog_segment_image(dir, TI_ID, first, 0, 0, &img, &len, &last), 0);
    cr_assert_eq(last, 40);
    free(img);
}

/* A reservation that rolled over leaves the newest segment without a
 * record: pruning then keeps the segment before it, so the log still ends
 * at its last record, before and after a reopen. */
Test(txlog_image, prune_keeps_last_record_before_empty_newest)
{
    char *dir = ti_tmpdir();
    uint64_t bytes = 0, first = 0, last = 0;
    struct txlog *l = NULL;
    struct txlog_tail tail;
    char err[256];

    ti_build(dir, 20000, 40);
    cr_assert_eq(txlog_open(dir, TI_ID, 20000, &l, &tail, err, sizeof err), 0, "%s", err);
    cr_assert_eq(tail.last_txid, 40);
    /* a record too large for the open segment's room: rolls to segment 41 */
    cr_assert_eq(txlog_reserve(l, 41, 40000), 0);
    txlog_close(l);
    cr_assert_eq(txlog_dir_usage(dir, &bytes, &first), 0);
    char newest[PATH_MAX];
    struct stat st;
    snprintf(newest, sizeof newest, "%s/%016llx.lvseg", dir, 41ULL);
    cr_assert_eq(stat(newest, &st), 0, "the reservation did not roll over to segment 41");
    txlog_prune(dir, UINT64_MAX, NULL);
    cr_assert_eq(txlog_dir_usage(dir, &bytes, &first), 0);
    cr_assert_lt(first, 41, "every segment holding a record was pruned (the log starts at %llu)",
                 (unsigned long long)first);
    void *img = NULL;
    size_t len = 0;
    cr_assert_eq(txlog_segment_image(dir, TI_ID, first, 0, 0, &img, &len, &last), 0);
    cr_assert_eq(last, 40);
    free(img);
    cr_assert_eq(txlog_open(dir, TI_ID, 20000, &l, &tail, err, sizeof err), 0, "%s", err);
    cr_assert_eq(tail.last_txid, 40, "after the prune the log ends at TXID %llu",
                 (unsigned long long)tail.last_txid);
    txlog_close(l);
}
