/*
 * unit_txlog.c -- record encoding, writer, start-up scan, reader and replay
 * (src/txlog.c).
 *
 * Most tests drive a model database (an array of pages plus its checksum
 * map) through random commits written with the real writer, keep a copy of
 * the database after every TXID, and compare what the reader or replay
 * produces with those copies.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"
#include "log/txlog.h"

/* Strings and temporary directories released after each test. */
static void *tl_garbage[512];
static int tl_ngarbage;
static char *tl_dirs[16];
static int tl_ndirs;

static void *tl_gc(void *p)
{
    if (tl_ngarbage < (int)LV_ARRAY_LEN(tl_garbage))
        tl_garbage[tl_ngarbage++] = p;
    return p;
}

static int tl_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void tl_quiet(void)
{
    lvlog_threshold = -1;
}

static void tl_cleanup(void)
{
    for (int i = 0; i < tl_ndirs; i++) {
        nftw(tl_dirs[i], tl_rm, 16, FTW_DEPTH | FTW_PHYS);
        free(tl_dirs[i]);
    }
    for (int i = 0; i < tl_ngarbage; i++)
        free(tl_garbage[i]);
    tl_ndirs = tl_ngarbage = 0;
}

TestSuite(txlog, .init = tl_quiet, .fini = tl_cleanup, .timeout = 120);

static const uint8_t TL_ID[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t TL_ID2[16] = {16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1};

#define TL_MAXTX 256

static uint64_t tl_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void tl_fill(uint8_t *p, size_t n, uint64_t *s, int compressible)
{
    size_t i;

    if (!compressible) {
        for (i = 0; i < n; i++)
            p[i] = (uint8_t)tl_rand(s);
        return;
    }
    /* Text-like: a few distinct byte values in runs. */
    uint8_t v = (uint8_t)tl_rand(s);
    for (i = 0; i < n; i++) {
        if (i % 64 == 0)
            v = (uint8_t)('a' + tl_rand(s) % 4);
        p[i] = v;
    }
}

static char *tl_tmpdir(void)
{
    char *d = strdup("/tmp/lv-txlog-XXXXXX");
    cr_assert(mkdtemp(d));
    cr_assert(tl_ndirs < (int)LV_ARRAY_LEN(tl_dirs));
    tl_dirs[tl_ndirs++] = d;
    return d;
}

static char *tl_cat(const char *a, const char *b)
{
    char *p;
    cr_assert(asprintf(&p, "%s/%s", a, b) > 0);
    return tl_gc(p);
}

static uint8_t *tl_read(const char *path, size_t *len)
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

static void tl_write(const char *path, const void *b, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, b, len), (ssize_t)len);
    close(fd);
}

/* Sorted segment file names in dir (count in *n). */
static char **tl_segs(const char *dir, int *n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **v = tl_gc(calloc(1024, sizeof(*v)));
    int k = 0;

    cr_assert(d);
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".lvseg") && strlen(de->d_name) == 22)
            v[k++] = tl_gc(strdup(de->d_name));
    closedir(d);
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++)
            if (strcmp(v[i], v[j]) > 0) {
                char *t = v[i];
                v[i] = v[j];
                v[j] = t;
            }
    *n = k;
    return v;
}

/* ---- model database ---- */

struct tl_md {
    uint32_t ps;              /* page size */
    uint32_t n;               /* pages */
    uint8_t *data;            /* n * ps bytes */
    struct cksum_map m;       /* checksums of data */
    uint64_t txid;            /* last TXID written */
    uint64_t seed;            /* random state */
    int incompressible;       /* 1: new page contents are random bytes */
    uint8_t *hist[TL_MAXTX];  /* copy of data after each TXID */
    uint32_t hn[TL_MAXTX];    /* pages after each TXID */
    uint32_t hps[TL_MAXTX];   /* page size after each TXID */
    uint64_t hpost[TL_MAXTX]; /* post checksum after each TXID */
    uint64_t hoff[TL_MAXTX];  /* bytes written by the log before each TXID (for splicing) */
};

static void md_init(struct tl_md *md, uint32_t ps, uint64_t seed)
{
    memset(md, 0, sizeof(*md));
    md->ps = ps;
    md->seed = seed;
    cksum_map_init(&md->m);
    cksum_map_reset(&md->m, ps);
}

static void md_free(struct tl_md *md)
{
    for (int i = 0; i < TL_MAXTX; i++)
        free(md->hist[i]);
    free(md->data);
    cksum_map_free(&md->m);
}

/* Commit: resize to new_n pages (page size new_ps for a snapshot),
 * change nchg random pages, write the record; returns the append result
 * of txlog_append_end (the model only advances on success). */
static int md_commit(struct txlog *l, struct tl_md *md, uint32_t new_n, uint32_t nchg, int snapshot,
                     uint32_t new_ps)
{
    struct txlog_hdr h;
    uint8_t *pick;
    uint64_t pre = md->m.total;
    uint32_t ps;
    int rc;

    if (!snapshot)
        new_ps = md->ps;
    if (snapshot && new_ps != md->ps) {
        md->ps = new_ps;
        cksum_map_reset(&md->m, new_ps);
        md->n = 0;
    }
    ps = md->ps;
    md->data = realloc(md->data, (size_t)(new_n ? new_n : 1) * ps);
    if (new_n > md->n)
        memset(md->data + (size_t)md->n * ps, 0, (size_t)(new_n - md->n) * ps);
    md->n = new_n;
    cr_assert_eq(cksum_map_resize(&md->m, new_n), 0);
    pick = calloc(new_n + 1, 1);
    for (uint32_t i = 0; i < nchg && new_n; i++)
        pick[tl_rand(&md->seed) % new_n + 1] = 1;
    for (uint32_t p = 1; p <= new_n; p++)
        if (pick[p]) {
            tl_fill(md->data + (size_t)(p - 1) * ps, ps, &md->seed,
                    !md->incompressible && tl_rand(&md->seed) % 4 != 0);
            cksum_map_set(&md->m, p, cksum_page(p, md->data + (size_t)(p - 1) * ps, ps));
        }
    memset(&h, 0, sizeof(h));
    h.txid = md->txid + 1;
    h.time_us = 1700000000000000ll + (int64_t)h.txid;
    h.page_size = ps;
    h.db_pages = new_n;
    h.flags = snapshot ? TXLOG_F_SNAPSHOT : 0;
    h.pre_cksum = snapshot && md->txid == 0 ? 0 : pre;
    h.post_cksum = md->m.total;
    h.wal_salt1 = 0x11111111;
    h.wal_salt2 = (uint32_t)h.txid;
    h.wal_frame = (uint32_t)h.txid * 3;
    md->hoff[h.txid % TL_MAXTX] = txlog_bytes_written(l);
    rc = txlog_append_begin(l, &h);
    cr_assert_eq(rc, 0, "append_begin TXID %llu: %d", (unsigned long long)h.txid, rc);
    for (uint32_t p = 1; p <= new_n; p++)
        if (snapshot || pick[p]) {
            rc = txlog_append_page(l, p, md->data + (size_t)(p - 1) * ps);
            if (rc) {
                free(pick);
                return rc;
            }
        }
    free(pick);
    rc = txlog_append_end(l);
    if (rc)
        return rc;
    md->txid = h.txid;
    cr_assert(md->txid < TL_MAXTX);
    free(md->hist[md->txid]);
    md->hist[md->txid] = malloc((size_t)(new_n ? new_n : 1) * ps);
    memcpy(md->hist[md->txid], md->data, (size_t)new_n * ps);
    md->hn[md->txid] = new_n;
    md->hps[md->txid] = ps;
    md->hpost[md->txid] = md->m.total;
    return 0;
}

/* Reset the model to its state after txid (which must be in the history). */
static void md_rewind(struct tl_md *md, uint64_t txid)
{
    uint32_t ps = md->hps[txid], n = md->hn[txid];

    md->txid = txid;
    md->ps = ps;
    md->n = n;
    md->data = realloc(md->data, (size_t)(n ? n : 1) * ps);
    memcpy(md->data, md->hist[txid], (size_t)n * ps);
    cksum_map_reset(&md->m, ps);
    cr_assert_eq(cksum_map_resize(&md->m, n), 0);
    for (uint32_t p = 1; p <= n; p++)
        cksum_map_set(&md->m, p, cksum_page(p, md->data + (size_t)(p - 1) * ps, ps));
    cr_assert_eq(md->m.total, md->hpost[txid]);
}

static struct txlog *tl_open(const char *dir, uint64_t seg_size, struct txlog_tail *t)
{
    struct txlog *l = NULL;
    char err[512];
    int rc = txlog_open(dir, TL_ID, seg_size, &l, t, err, sizeof(err));

    cr_assert_eq(rc, 0, "txlog_open: %d %s", rc, err);
    return l;
}

/* Write ntx random commits into dir (seed, page size ps). */
static void tl_build(const char *dir, struct tl_md *md, int ntx, uint64_t seg_size)
{
    struct txlog_tail t;
    struct txlog *l = tl_open(dir, seg_size, &t);

    for (int i = 0; i < ntx; i++) {
        uint32_t n = md->n;
        if (i == 0 || tl_rand(&md->seed) % 5 == 0)
            n = 1 + (uint32_t)(tl_rand(&md->seed) % 40);
        cr_assert_eq(md_commit(l, md, n, 1 + (uint32_t)(tl_rand(&md->seed) % 6), 0, 0), 0);
    }
    cr_assert_eq(txlog_sync(l), 0);
    txlog_close(l);
}

/* Replay dir to target and compare with the model's history. */
static void tl_check_replay(const char *dir, struct tl_md *md, uint64_t target)
{
    char *out = tl_cat(dir, "../replayed.db");
    char err[512];
    uint64_t txid = 0, ck = 0;
    uint64_t want = target ? target : md->txid;
    size_t len;
    uint8_t *b;
    int rc = txlog_replay(dir, target, out, &txid, &ck, err, sizeof(err));

    cr_assert_eq(rc, 0, "replay to %llu: %d %s", (unsigned long long)target, rc, err);
    cr_assert_eq(txid, want);
    cr_assert_eq(ck, md->hpost[want]);
    b = tl_read(out, &len);
    cr_assert_eq(len, (size_t)md->hn[want] * md->hps[want], "size at TXID %llu", (unsigned long long)want);
    cr_assert(memcmp(b, md->hist[want], len) == 0, "content at TXID %llu", (unsigned long long)want);
    /* The reported checksum is the checksum of the bytes. */
    uint64_t x = 0;
    for (uint32_t p = 1; p <= md->hn[want]; p++)
        x ^= cksum_page(p, b + (size_t)(p - 1) * md->hps[want], md->hps[want]);
    cr_assert_eq(x, ck);
    free(b);
}

/* ---- header encoding ---- */

static struct txlog_hdr tl_hdr_sample(void)
{
    struct txlog_hdr h;

    memset(&h, 0, sizeof(h));
    h.version = 1;
    h.flags = TXLOG_F_RECOVERED;
    for (int i = 0; i < 16; i++)
        h.dbid[i] = (uint8_t)(0xF0 + i);
    h.txid = 0x0102030405060708ull;
    h.time_us = -5;
    h.page_size = 4096;
    h.db_pages = 1000;
    h.npages = 3;
    h.comp = TXLOG_COMP_ZSTD;
    h.pre_cksum = 0xAAAAAAAAAAAAAAAAull;
    h.post_cksum = 0x5555555555555555ull;
    h.raw_len = 3 * (4 + 4096);
    h.stored_len = 1234;
    h.wal_salt1 = 0xDEADBEEF;
    h.wal_salt2 = 0xCAFEBABE;
    h.wal_frame = 77;
    return h;
}

static void tl_hdr_eq(const struct txlog_hdr *a, const struct txlog_hdr *b)
{
    cr_assert_eq(a->version, b->version);
    cr_assert_eq(a->flags, b->flags);
    cr_assert_arr_eq(a->dbid, b->dbid, 16);
    cr_assert_eq(a->txid, b->txid);
    cr_assert_eq(a->time_us, b->time_us);
    cr_assert_eq(a->page_size, b->page_size);
    cr_assert_eq(a->db_pages, b->db_pages);
    cr_assert_eq(a->npages, b->npages);
    cr_assert_eq(a->comp, b->comp);
    cr_assert_eq(a->pre_cksum, b->pre_cksum);
    cr_assert_eq(a->post_cksum, b->post_cksum);
    cr_assert_eq(a->stored_len, b->stored_len);
    cr_assert_eq(a->raw_len, b->raw_len);
    cr_assert_eq(a->wal_salt1, b->wal_salt1);
    cr_assert_eq(a->wal_salt2, b->wal_salt2);
    cr_assert_eq(a->wal_frame, b->wal_frame);
    cr_assert_eq(a->term, b->term);
}

Test(txlog, hdr_roundtrip_and_layout)
{
    struct txlog_hdr h = tl_hdr_sample(), d;
    uint8_t b[TXLOG_HDR_SIZE];

    txlog_hdr_encode(&h, b);
    /* Spot-check the byte layout of docs/FORMAT.md. */
    cr_assert_eq(memcmp(b, "LVRC", 4), 0);
    cr_assert_eq(lv_get16(b + 4), 1);
    cr_assert_eq(lv_get64(b + 24), h.txid);
    cr_assert_eq(b[24], 0x01);
    cr_assert_eq(lv_get32(b + 40), 4096);
    cr_assert_eq(b[52], 1);
    cr_assert_eq(lv_get32(b + 96), 77);
    cr_assert_eq(lv_get64(b + 104), cksum_buf(b, 104));
    cr_assert_eq(txlog_hdr_decode(b, &d), 0);
    tl_hdr_eq(&h, &d);

    /* Boundary values. */
    struct txlog_hdr e[6];
    for (int i = 0; i < 6; i++)
        e[i] = tl_hdr_sample();
    e[0].txid = UINT64_MAX; e[0].time_us = INT64_MIN; e[0].page_size = 512;
    e[0].npages = 0; e[0].db_pages = 0; e[0].raw_len = 0; e[0].comp = TXLOG_COMP_NONE; e[0].stored_len = 0;
    e[1].page_size = 65536; e[1].time_us = INT64_MAX; e[1].wal_salt1 = UINT32_MAX; e[1].wal_frame = UINT32_MAX;
    e[1].raw_len = 3 * (4 + 65536ull); e[1].stored_len = 1;
    e[2].flags = TXLOG_F_SNAPSHOT; e[2].db_pages = 3; e[2].comp = TXLOG_COMP_NONE; e[2].stored_len = e[2].raw_len;
    e[3].db_pages = UINT32_MAX; e[3].pre_cksum = 0; e[3].post_cksum = UINT64_MAX;
    e[4].txid = 1; e[4].flags = TXLOG_F_SNAPSHOT | TXLOG_F_RECOVERED; e[4].db_pages = 3;
    e[5].npages = 100000; e[5].db_pages = 100000; e[5].raw_len = 100000ull * 4100; e[5].stored_len = 9;
    for (int i = 0; i < 6; i++) {
        txlog_hdr_encode(&e[i], b);
        cr_assert_eq(txlog_hdr_decode(b, &d), 0, "case %d", i);
        tl_hdr_eq(&e[i], &d);
    }
}

Test(txlog, hdr_every_byte_flip_detected)
{
    struct txlog_hdr h = tl_hdr_sample(), d;
    uint8_t b[TXLOG_HDR_SIZE];

    txlog_hdr_encode(&h, b);
    for (int i = 0; i < TXLOG_HDR_SIZE; i++)
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (uint8_t)(1 << bit);
            cr_assert_neq(txlog_hdr_decode(b, &d), 0, "flip byte %d bit %d", i, bit);
            b[i] ^= (uint8_t)(1 << bit);
        }
    cr_assert_eq(txlog_hdr_decode(b, &d), 0);
}

/* Header with valid checksum but invalid content. */
static int tl_decode_bad(void (*mut)(struct txlog_hdr *), int rawpatch, int at, uint8_t v)
{
    struct txlog_hdr h = tl_hdr_sample(), d;
    uint8_t b[TXLOG_HDR_SIZE];

    if (mut)
        mut(&h);
    txlog_hdr_encode(&h, b);
    if (rawpatch) {
        b[at] = v;
        lv_put64(b + 104, cksum_buf(b, 104));
    }
    return txlog_hdr_decode(b, &d);
}

static void m_ps1000(struct txlog_hdr *h) { h->page_size = 1000; h->raw_len = 3 * 1004; }
static void m_ps256(struct txlog_hdr *h) { h->page_size = 256; h->raw_len = 3 * 260; }
static void m_ps128k(struct txlog_hdr *h) { h->page_size = 131072; h->raw_len = 3 * (131072 + 4); }
static void m_rawlen(struct txlog_hdr *h) { h->raw_len += 1; }
static void m_npages(struct txlog_hdr *h) { h->db_pages = 2; }
static void m_snap(struct txlog_hdr *h) { h->flags = TXLOG_F_SNAPSHOT; }
static void m_comp(struct txlog_hdr *h) { h->comp = 2; }
static void m_rawstored(struct txlog_hdr *h) { h->comp = TXLOG_COMP_NONE; }
static void m_version3(struct txlog_hdr *h) { h->version = 3; }
static void m_version0(struct txlog_hdr *h) { h->version = 0; }
static void m_txid0(struct txlog_hdr *h) { h->txid = 0; }
static void m_flags(struct txlog_hdr *h) { h->flags = 0x8000; }
static void m_stored0(struct txlog_hdr *h) { h->stored_len = 0; }
static void m_storedhuge(struct txlog_hdr *h) { h->stored_len = h->raw_len * 2 + 100000; }

Test(txlog, hdr_semantic_checks)
{
    cr_assert_eq(tl_decode_bad(NULL, 0, 0, 0), 0);
    cr_assert_eq(tl_decode_bad(m_ps1000, 0, 0, 0), LV_ECORRUPT);
    cr_assert_eq(tl_decode_bad(m_ps256, 0, 0, 0), LV_ECORRUPT);
    cr_assert_eq(tl_decode_bad(m_ps128k, 0, 0, 0), LV_ECORRUPT);
    cr_assert_eq(tl_decode_bad(m_rawlen, 0, 0, 0), LV_ECORRUPT);
    cr_assert_eq(tl_decode_bad(m_npages, 0, 0, 0), LV_ECORRUPT);
    cr_assert_eq(tl_decode_bad(m_snap, 0, 0, 0), LV_ECORRUPT);
    cr_assert_eq(tl_decode_bad(m_comp, 0, 0, 0), LV_ECORRUPT);
    cr_assert_eq(tl_decode_bad(m_rawstored, 0, 0, 0), LV_ECORRUPT);
    cr_assert_eq(tl_decode_bad(m_version3, 0, 0, 0), LV_EVERSION);
    cr_assert_eq(tl_decode_bad(m_version0, 0, 0, 0), LV_ECORRUPT);
    cr_assert_eq(tl_decode_bad(m_txid0, 0, 0, 0), LV_ECORRUPT);
    cr_assert_eq(tl_decode_bad(m_flags, 0, 0, 0), LV_ECORRUPT);
    cr_assert_eq(tl_decode_bad(m_stored0, 0, 0, 0), LV_ECORRUPT);
    cr_assert_eq(tl_decode_bad(m_storedhuge, 0, 0, 0), LV_ECORRUPT);
    for (int at = 53; at <= 55; at++)
        cr_assert_eq(tl_decode_bad(NULL, 1, at, 1), LV_ECORRUPT, "reserved byte %d", at);
    for (int at = 100; at <= 103; at++)
        cr_assert_eq(tl_decode_bad(NULL, 1, at, 1), LV_ECORRUPT, "reserved byte %d", at);
    cr_assert_eq(tl_decode_bad(NULL, 1, 0, 'X'), LV_ECORRUPT); /* magic */
}

/* Version 2 carries the term in bytes 53..55 (high) and 100..103 (low). */
Test(txlog, hdr_v2_term)
{
    struct txlog_hdr h = tl_hdr_sample(), d;
    uint8_t b[TXLOG_HDR_SIZE];

    h.version = 2;
    h.term = UINT64_C(0x00A1B2C3D4E5F607);
    txlog_hdr_encode(&h, b);
    cr_assert_eq(lv_get16(b + 4), 2);
    cr_assert_eq(b[53], 0xA1);
    cr_assert_eq(b[54], 0xB2);
    cr_assert_eq(b[55], 0xC3);
    cr_assert_eq(lv_get32(b + 100), 0xD4E5F607u);
    cr_assert_eq(txlog_hdr_decode(b, &d), 0);
    tl_hdr_eq(&h, &d);
    h.term = TXLOG_TERM_MAX;
    txlog_hdr_encode(&h, b);
    cr_assert_eq(txlog_hdr_decode(b, &d), 0);
    cr_assert_eq(d.term, TXLOG_TERM_MAX);
    /* The same bytes in a version 1 header are reserved: corruption. */
    b[5] = 1;
    lv_put64(b + 104, cksum_buf(b, 104));
    cr_assert_eq(txlog_hdr_decode(b, &d), LV_ECORRUPT);
}


/* ---- writer + reader ---- */

/* Read every record of dir from from_txid and compare with the model. */
static void tl_check_reader(struct txlog_reader *r, struct tl_md *md, uint64_t from)
{
    struct txlog_hdr h;
    uint64_t want = from ? from : 1;
    int rc;

    while ((rc = txlog_reader_next(r, &h)) == 0) {
        uint32_t pgno, np = 0;
        const void *data;
        cr_assert_eq(h.txid, want);
        cr_assert_arr_eq(h.dbid, TL_ID, 16);
        cr_assert_eq(h.db_pages, md->hn[want]);
        cr_assert_eq(h.page_size, md->hps[want]);
        cr_assert_eq(h.post_cksum, md->hpost[want]);
        cr_assert_eq(h.wal_frame, (uint32_t)want * 3);
        cr_assert_eq(h.time_us, 1700000000000000ll + (int64_t)want);
        while ((rc = txlog_reader_page(r, &pgno, &data)) == 0) {
            cr_assert(pgno >= 1 && pgno <= h.db_pages);
            cr_assert(memcmp(data, md->hist[want] + (size_t)(pgno - 1) * h.page_size, h.page_size) == 0,
                      "TXID %llu page %u", (unsigned long long)want, pgno);
            np++;
        }
        cr_assert_eq(rc, LV_ENOENT, "TXID %llu pages: %d", (unsigned long long)want, rc);
        cr_assert_eq(np, h.npages);
        want++;
    }
    cr_assert_eq(rc, LV_ENOENT);
    cr_assert_eq(want, md->txid + 1, "reader stopped at %llu", (unsigned long long)want);
}

Test(txlog, write_reopen_read)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_tail t;
    struct txlog_reader *r;
    struct txlog *l;

    md_init(&md, 1024, 5);
    tl_build(dir, &md, 30, 64 << 20);
    l = tl_open(dir, 64 << 20, &t);
    cr_assert_eq(t.first_txid, 1);
    cr_assert_eq(t.last_txid, 30);
    cr_assert_eq(t.last_post, md.hpost[30]);
    cr_assert_eq(t.last_db_pages, md.hn[30]);
    cr_assert_eq(t.last_page_size, 1024);
    cr_assert_eq(t.last_wal_frame, 90);
    cr_assert_eq(t.last_wal_salt2, 30);
    cr_assert_eq(t.last_time_us, 1700000000000000ll + 30);
    cr_assert_eq(t.torn_bytes, 0);
    cr_assert_eq(t.nsegments, 1);
    /* Appending continues the chain after reopen. */
    cr_assert_eq(md_commit(l, &md, md.n + 1, 2, 0, 0), 0);
    txlog_close(l);
    cr_assert_eq(txlog_reader_open(dir, 0, &r), 0);
    tl_check_reader(r, &md, 1);
    txlog_reader_close(r);
    md_free(&md);
}

Test(txlog, writer_refuses_bad_sequences)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_tail t;
    struct txlog *l;
    struct txlog_hdr h;
    uint8_t page[1024] = {0};

    md_init(&md, 1024, 5);
    l = tl_open(dir, 1 << 20, &t);
    memset(&h, 0, sizeof(h));
    h.page_size = 1024;
    h.db_pages = 1;
    h.txid = 2; /* an empty log starts at 1 or with a snapshot */
    cr_assert_eq(txlog_append_begin(l, &h), LV_EGAP);
    h.txid = 1;
    h.pre_cksum = 5;
    cr_assert_eq(txlog_append_begin(l, &h), LV_ECHAIN);
    h.pre_cksum = 0;
    h.page_size = 1000;
    cr_assert_eq(txlog_append_begin(l, &h), LV_EINVAL);
    h.page_size = 1024;
    cr_assert_eq(txlog_append_begin(l, &h), 0);
    cr_assert_eq(txlog_append_page(l, 2, page), LV_EINVAL); /* beyond db_pages */
    cr_assert_eq(txlog_append_page(l, 1, page), 0);
    cr_assert_eq(txlog_append_page(l, 1, page), LV_EINVAL); /* not increasing */
    txlog_append_abort(l);
    cr_assert_eq(md_commit(l, &md, 3, 2, 0, 0), 0);
    h = (struct txlog_hdr){ .txid = 3, .page_size = 1024, .db_pages = 3, .pre_cksum = md.m.total };
    cr_assert_eq(txlog_append_begin(l, &h), LV_EGAP);
    h.txid = 2;
    h.pre_cksum ^= 1;
    cr_assert_eq(txlog_append_begin(l, &h), LV_ECHAIN);
    /* A snapshot must carry every page. */
    h.pre_cksum ^= 1;
    h.flags = TXLOG_F_SNAPSHOT;
    cr_assert_eq(txlog_append_begin(l, &h), 0);
    cr_assert_eq(txlog_append_page(l, 1, page), 0);
    cr_assert_eq(txlog_append_end(l), LV_EINVAL);
    cr_assert_eq(txlog_error(l), 0);
    cr_assert_eq(md_commit(l, &md, 3, 1, 0, 0), 0);
    txlog_close(l);
    l = tl_open(dir, 1 << 20, &t);
    cr_assert_eq(t.last_txid, 2);
    txlog_close(l);
    md_free(&md);
}

Test(txlog, segment_rollover_and_reader_positioning)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    const uint64_t seg = 6000;
    struct tl_md md;
    struct txlog_tail t;
    struct txlog_reader *r;
    struct txlog *l;
    char **names;
    int n;

    md_init(&md, 1024, 11);
    tl_build(dir, &md, 60, seg);
    names = tl_segs(dir, &n);
    cr_assert(n > 5, "only %d segments", n);
    for (int i = 0; i < n; i++) {
        char *p = tl_cat(dir, names[i]);
        size_t len;
        uint8_t *b = tl_read(p, &len);
        struct txlog_hdr h;
        char want[32];
        cr_assert_eq(memcmp(b, "LVTXSEG1", 8), 0);
        cr_assert_eq(lv_get64(b + 56), cksum_buf(b, 56));
        cr_assert_arr_eq(b + 16, TL_ID, 16);
        cr_assert_eq(txlog_hdr_decode(b + 64, &h), 0);
        snprintf(want, sizeof(want), "%016llx.lvseg", (unsigned long long)h.txid);
        cr_assert_str_eq(names[i], want);
        cr_assert_eq(lv_get64(b + 32), h.txid);
        /* Only a segment holding a single record may exceed seg_size. */
        uint64_t first_len = 112 + h.stored_len + 8;
        if (len > seg)
            cr_assert_eq(len, 64 + first_len, "segment %s is %zu bytes", names[i], len);
        free(b);
        }
    cr_assert_str_eq(names[0], "0000000000000001.lvseg");
    l = tl_open(dir, seg, &t);
    cr_assert_eq(t.nsegments, (uint32_t)n);
    cr_assert_eq(t.last_txid, 60);
    txlog_close(l);

    for (uint64_t from = 0; from <= 62; from++) {
        struct txlog_hdr h;
        cr_assert_eq(txlog_reader_open(dir, from, &r), 0);
        int rc = txlog_reader_next(r, &h);
        if (from > 60) {
            cr_assert_eq(rc, LV_ENOENT);
        } else {
            cr_assert_eq(rc, 0, "from %llu", (unsigned long long)from);
            cr_assert_eq(h.txid, from ? from : 1);
        }
        txlog_reader_close(r);
    }
    cr_assert_eq(txlog_reader_open(dir, 37, &r), 0);
    tl_check_reader(r, &md, 37);
    txlog_reader_close(r);
    for (uint64_t target = 1; target <= 60; target += 7)
        tl_check_replay(dir, &md, target);
    tl_check_replay(dir, &md, 0);
    md_free(&md);
}

Test(txlog, mem_reader)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_reader *r;
    struct txlog_hdr h;
    char *p;
    size_t len;
    uint8_t *b;
    int rc;

    md_init(&md, 2048, 3);
    tl_build(dir, &md, 12, 64 << 20);
    p = tl_cat(dir, "0000000000000001.lvseg");
    b = tl_read(p, &len);
    cr_assert_eq(txlog_reader_open_mem(b, len, "seg-in-archive", &r), 0);
    tl_check_reader(r, &md, 1);
    txlog_reader_close(r);

    /* A truncated image is an error, not an end. */
    cr_assert_eq(txlog_reader_open_mem(b, len - 3, "cut", &r), 0);
    for (int i = 0; i < 11; i++)
        cr_assert_eq(txlog_reader_next(r, &h), 0);
    rc = txlog_reader_next(r, &h);
    cr_assert_eq(rc, LV_ECORRUPT);
    uint64_t off;
    cr_assert_str_eq(txlog_reader_where(r, &off), "cut");
    cr_assert(off > 64);
    txlog_reader_close(r);
    /* A damaged segment header is refused. */
    b[20] ^= 1;
    cr_assert_eq(txlog_reader_open_mem(b, len, "bad", &r), LV_ECORRUPT);
    free(b);
    md_free(&md);
}

/* ---- corruption and torn tails ---- */

/* Offsets of every record in a segment image. */
static int tl_offsets(const uint8_t *b, size_t len, uint64_t *offs, int max)
{
    uint64_t off = 64;
    int k = 0;
    struct txlog_hdr h;

    while (off < len && k < max) {
        cr_assert_eq(txlog_hdr_decode(b + off, &h), 0);
        offs[k++] = off;
        off += 112 + h.stored_len + 8;
    }
    offs[k] = off;
    return k;
}

static int tl_open_rc(const char *dir, char *err, size_t errlen, struct txlog_tail *t)
{
    struct txlog *l = NULL;
    int rc = txlog_open(dir, TL_ID, 64 << 20, &l, t, err, errlen);

    txlog_close(l);
    return rc;
}

Test(txlog, payload_bit_flips_detected)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_tail t;
    char err[512], *p;
    uint64_t offs[64];
    size_t len;
    uint8_t *b;
    int k, ncomp[2] = {0, 0};

    md_init(&md, 1024, 21);
    tl_build(dir, &md, 6, 64 << 20);
    md.incompressible = 1; /* stored raw: zstd does not shrink random pages */
    tl_build(dir, &md, 2, 64 << 20);
    p = tl_cat(dir, "0000000000000001.lvseg");
    b = tl_read(p, &len);
    k = tl_offsets(b, len, offs, 63);
    cr_assert_eq(k, 8);
    for (int i = 0; i < k; i++) {
        struct txlog_hdr h;
        cr_assert_eq(txlog_hdr_decode(b + offs[i], &h), 0);
        ncomp[h.comp]++;
        /* Flip a bit in the first, middle and last payload byte and in the trailer. */
        uint64_t at[4] = {offs[i] + 112, offs[i] + 112 + h.stored_len / 2, offs[i] + 112 + h.stored_len - 1,
                          offs[i + 1] - 3};
        for (int j = 0; j < 4; j++) {
            b[at[j]] ^= 0x04;
            tl_write(p, b, len);
            cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), LV_ECORRUPT, "record %d pos %d", i, j);
            cr_assert(strstr(err, "0000000000000001.lvseg"), "%s", err);
            cr_assert(strstr(err, "payload checksum"), "%s", err);
            char want[64];
            snprintf(want, sizeof(want), "TXID %d:", i + 1);
            cr_assert(strstr(err, want), "%s", err);
            /* The reader notices it too, when the pages are consumed. */
            struct txlog_reader *r;
            struct txlog_hdr rh;
            uint32_t pg;
            const void *d;
            int rc;
            cr_assert_eq(txlog_reader_open(dir, (uint64_t)i + 1, &r), 0);
            cr_assert_eq(txlog_reader_next(r, &rh), 0);
            while ((rc = txlog_reader_page(r, &pg, &d)) == 0)
                ;
            cr_assert_eq(rc, LV_ECORRUPT, "reader record %d pos %d", i, j);
            txlog_reader_close(r);
            b[at[j]] ^= 0x04;
        }
    }
    cr_assert(ncomp[0] > 0 && ncomp[1] > 0, "want both raw (%d) and zstd (%d) records", ncomp[0], ncomp[1]);
    tl_write(p, b, len);
    cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), 0, "%s", err);
    free(b);
    md_free(&md);
}

Test(txlog, torn_tail_cut_off)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_tail t;
    char err[512], *p;
    uint64_t offs[64];
    size_t len;
    uint8_t *b;
    int k;

    md_init(&md, 1024, 31);
    tl_build(dir, &md, 5, 64 << 20);
    p = tl_cat(dir, "0000000000000001.lvseg");
    b = tl_read(p, &len);
    k = tl_offsets(b, len, offs, 63);
    cr_assert_eq(k, 5);
    /* Cut the file at many points inside the last record. */
    uint64_t cuts[] = {offs[4] + 1, offs[4] + 50, offs[4] + 111, offs[4] + 112, offs[4] + 113, len - 8, len - 1};
    for (size_t c = 0; c < LV_ARRAY_LEN(cuts); c++) {
        tl_write(p, b, cuts[c]);
        cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), 0, "cut %zu: %s", c, err);
        cr_assert_eq(t.last_txid, 4);
        cr_assert_eq(t.last_post, md.hpost[4]);
        cr_assert_eq(t.torn_bytes, cuts[c] - offs[4], "cut %zu", c);
        struct stat st;
        cr_assert_eq(stat(p, &st), 0);
        cr_assert_eq((uint64_t)st.st_size, offs[4]);
    }
    /* A zero header (streamed record interrupted) followed by data. */
    uint8_t *z = calloc(1, len + 500);
    memcpy(z, b, offs[4]);
    memset(z + offs[4] + 112, 0x5A, 300);
    tl_write(p, z, offs[4] + 412);
    cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), 0, "%s", err);
    cr_assert_eq(t.torn_bytes, 412);
    cr_assert_eq(t.last_txid, 4);
    /* A damaged header at the very end is a torn tail too ... */
    memcpy(z, b, len);
    z[offs[4] + 30] ^= 0x80;
    tl_write(p, z, len);
    cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), 0, "%s", err);
    cr_assert_eq(t.torn_bytes, len - offs[4]);
    /* ... but not when good records follow it. */
    memcpy(z, b, len);
    z[offs[3] + 30] ^= 0x80;
    tl_write(p, z, len);
    cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), LV_ECORRUPT);
    cr_assert(strstr(err, "invalid record header"), "%s", err);
    /* After a cut, appending continues at TXID 5 and the log stays valid. */
    tl_write(p, b, len - 10);
    struct txlog *l = tl_open(dir, 64 << 20, &t);
    md_rewind(&md, 4);
    cr_assert_eq(md_commit(l, &md, md.n, 3, 0, 0), 0);
    txlog_close(l);
    cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), 0, "%s", err);
    cr_assert_eq(t.last_txid, 5);
    cr_assert_eq(t.torn_bytes, 0);
    tl_check_replay(dir, &md, 0);
    free(z);
    free(b);
    md_free(&md);
}

Test(txlog, truncated_non_last_segment_is_corrupt)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_tail t;
    char err[512], *p;
    char **names;
    size_t len;
    uint8_t *b;
    int n;

    md_init(&md, 1024, 41);
    tl_build(dir, &md, 20, 5000);
    names = tl_segs(dir, &n);
    cr_assert(n >= 3);
    p = tl_cat(dir, names[1]);
    b = tl_read(p, &len);
    tl_write(p, b, len - 5);
    cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), LV_ECORRUPT);
    cr_assert(strstr(err, names[1]), "%s", err);
    cr_assert(strstr(err, "not the last"), "%s", err);
    free(b);
    md_free(&md);
}

/* L10: the writer refuses a record whose term is before the log's, the
 * start-up scan refuses a log where a term goes back, and the tail and
 * txlog_last_term report the last term. */
Test(txlog, terms_never_go_back)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    char err[512], want[160];
    struct txlog_tail t;
    struct txlog *l;
    struct txlog_hdr h;
    uint8_t page[1024] = {0}, *b;
    uint64_t offs[8];
    size_t len;

    l = tl_open(dir, 1 << 20, &t);
    h = (struct txlog_hdr){.txid = 1, .page_size = 1024, .db_pages = 1, .post_cksum = 11, .term = 7};
    cr_assert_eq(txlog_append_begin(l, &h), 0);
    cr_assert_eq(txlog_append_page(l, 1, page), 0);
    cr_assert_eq(txlog_append_end(l), 0);
    cr_assert_eq(txlog_last_term(l), 7);
    h = (struct txlog_hdr){.txid = 2, .page_size = 1024, .db_pages = 1, .pre_cksum = 11, .post_cksum = 12,
                           .term = 6};
    cr_assert_eq(txlog_append_begin(l, &h), LV_ECHAIN); /* a deposed term's record */
    h.term = TXLOG_TERM_MAX + 1;
    cr_assert_eq(txlog_append_begin(l, &h), LV_EINVAL);
    h.term = 7;
    cr_assert_eq(txlog_append_begin(l, &h), 0);
    cr_assert_eq(txlog_append_page(l, 1, page), 0);
    cr_assert_eq(txlog_append_end(l), 0);
    h = (struct txlog_hdr){.txid = 3, .page_size = 1024, .db_pages = 1, .pre_cksum = 12, .post_cksum = 13,
                           .term = 9};
    cr_assert_eq(txlog_append_begin(l, &h), 0);
    cr_assert_eq(txlog_append_page(l, 1, page), 0);
    cr_assert_eq(txlog_append_end(l), 0);
    txlog_close(l);
    l = tl_open(dir, 1 << 20, &t);
    cr_assert_eq(t.last_term, 9);
    cr_assert_eq(txlog_last_term(l), 9);
    txlog_close(l);

    /* Rewrite record 3's term to 5 (header checksum fixed): every reader refuses it. */
    char *p = tl_cat(dir, "0000000000000001.lvseg");
    b = tl_read(p, &len);
    cr_assert_eq(tl_offsets(b, len, offs, 7), 3);
    lv_put32(b + offs[2] + 100, 5);
    lv_put64(b + offs[2] + 104, cksum_buf(b + offs[2], 104));
    tl_write(p, b, len);
    cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), LV_ECORRUPT);
    snprintf(want, sizeof want, "offset %llu: TXID 3: term goes back: term 5 after term 7",
             (unsigned long long)offs[2]);
    cr_assert(strstr(err, want), "%s", err);
    free(b);
}

Test(txlog, gap_and_chain_break_messages)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    char *dir2 = tl_cat(tl_tmpdir(), "log");
    struct tl_md md, md2;
    struct txlog_tail t;
    char err[512], *p, *p2, want[128];
    uint64_t offs[64], offs2[64];
    size_t len, len2;
    uint8_t *b, *b2, *c;

    md_init(&md, 1024, 51);
    md_init(&md2, 1024, 52);
    tl_build(dir, &md, 6, 64 << 20);
    tl_build(dir2, &md2, 6, 64 << 20);
    p = tl_cat(dir, "0000000000000001.lvseg");
    p2 = tl_cat(dir2, "0000000000000001.lvseg");
    b = tl_read(p, &len);
    b2 = tl_read(p2, &len2);
    tl_offsets(b, len, offs, 63);
    tl_offsets(b2, len2, offs2, 63);

    /* Gap: cut record 3 out of the middle. */
    c = malloc(len);
    memcpy(c, b, offs[2]);
    memcpy(c + offs[2], b + offs[3], len - offs[3]);
    tl_write(p, c, len - (offs[3] - offs[2]));
    cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), LV_ECORRUPT);
    cr_assert(strstr(err, "0000000000000001.lvseg"), "%s", err);
    snprintf(want, sizeof(want), "offset %llu: TXID 4: TXID gap: expected TXID 3", (unsigned long long)offs[2]);
    cr_assert(strstr(err, want), "%s", err);
    char out[600];
    snprintf(out, sizeof(out), "%s.db", dir);
    cr_assert_eq(txlog_replay(dir, 0, out, NULL, NULL, err, sizeof(err)), LV_ECORRUPT);
    cr_assert(strstr(err, "TXID gap"), "%s", err);
    cr_assert_eq(access(out, F_OK), -1);
    char tmpp[640];
    snprintf(tmpp, sizeof(tmpp), "%s.tmp", out);
    cr_assert_eq(access(tmpp, F_OK), -1, "tmp file left behind");
    /* Replay up to before the gap still works. */
    cr_assert_eq(txlog_replay(dir, 2, out, NULL, NULL, err, sizeof(err)), 0, "%s", err);

    /* Chain break: record 3 of another history with the same TXID. */
    size_t r3 = offs2[3] - offs2[2];
    c = realloc(c, len + r3);
    memcpy(c, b, offs[2]);
    memcpy(c + offs[2], b2 + offs2[2], r3);
    memcpy(c + offs[2] + r3, b + offs[3], len - offs[3]);
    tl_write(p, c, offs[2] + r3 + (len - offs[3]));
    cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), LV_ECORRUPT);
    snprintf(want, sizeof(want), "offset %llu: TXID 3: checksum chain break", (unsigned long long)offs[2]);
    cr_assert(strstr(err, want), "%s", err);
    cr_assert_eq(txlog_replay(dir, 0, out, NULL, NULL, err, sizeof(err)), LV_ECORRUPT);
    cr_assert(strstr(err, "chain"), "%s", err);

    /* Gap between segments: remove a middle segment. */
    char *dir3 = tl_cat(tl_tmpdir(), "log");
    struct tl_md md3;
    char **names;
    int n;
    md_init(&md3, 1024, 53);
    tl_build(dir3, &md3, 20, 5000);
    names = tl_segs(dir3, &n);
    cr_assert(n >= 3);
    char *victim = tl_cat(dir3, names[1]);
    unlink(victim);
    cr_assert_eq(tl_open_rc(dir3, err, sizeof(err), &t), LV_ECORRUPT);
    cr_assert(strstr(err, names[2]), "%s", err);
    cr_assert(strstr(err, "TXID gap"), "%s", err);

    /* A segment of another database. */
    cr_assert_eq(tl_open_rc(dir2, err, sizeof(err), &t), 0);
    struct txlog *l = NULL;
    cr_assert_eq(txlog_open(dir2, TL_ID2, 1 << 20, &l, &t, err, sizeof(err)), LV_ECORRUPT);
    cr_assert_null(l);
    cr_assert(strstr(err, "belongs to database 0102030405060708090a0b0c0d0e0f10"), "%s", err);
    free(c);
    free(b);
    free(b2);
    md_free(&md);
    md_free(&md2);
    md_free(&md3);
}

/* ---- replay ---- */

Test(txlog, replay_matches_model_many_targets)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_tail t;
    struct txlog *l;
    char err[512], out[600];

    md_init(&md, 512, 61);
    l = tl_open(dir, 20000, &t);
    for (int i = 0; i < 80; i++) {
        uint32_t n = md.n;
        uint64_t r = tl_rand(&md.seed) % 10;
        if (i == 0 || r == 0)
            n = 1 + (uint32_t)(tl_rand(&md.seed) % 60); /* grow or shrink */
        if (r == 1 && i > 0)
            cr_assert_eq(md_commit(l, &md, n, 3, 1, 512), 0); /* snapshot */
        else
            cr_assert_eq(md_commit(l, &md, n, (uint32_t)(tl_rand(&md.seed) % 8), 0, 0), 0);
    }
    txlog_close(l);
    for (uint64_t target = 1; target <= 80; target++)
        tl_check_replay(dir, &md, target);
    tl_check_replay(dir, &md, 0);
    snprintf(out, sizeof(out), "%s.db", dir);
    cr_assert_eq(txlog_replay(dir, 81, out, NULL, NULL, err, sizeof(err)), LV_ENOENT);
    cr_assert(strstr(err, "beyond the last TXID 80"), "%s", err);
    md_free(&md);
}

Test(txlog, snapshot_page_size_change)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_tail t;
    struct txlog *l;

    md_init(&md, 1024, 71);
    l = tl_open(dir, 64 << 20, &t);
    cr_assert_eq(md_commit(l, &md, 10, 10, 0, 0), 0);
    cr_assert_eq(md_commit(l, &md, 12, 3, 0, 0), 0);
    cr_assert_eq(md_commit(l, &md, 5, 5, 1, 4096), 0);  /* VACUUM to 4 KiB pages */
    cr_assert_eq(md_commit(l, &md, 7, 2, 0, 0), 0);
    cr_assert_eq(md_commit(l, &md, 3, 1, 1, 65536), 0); /* and to 64 KiB */
    cr_assert_eq(md_commit(l, &md, 3, 1, 0, 0), 0);
    txlog_close(l);
    for (uint64_t tx = 1; tx <= 6; tx++)
        tl_check_replay(dir, &md, tx);
    md_free(&md);
}

Test(txlog, log_starting_with_snapshot)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_tail t;
    struct txlog *l;
    char err[512], out[600];

    md_init(&md, 4096, 81);
    md.txid = 41; /* log history before 42 is gone */
    l = tl_open(dir, 64 << 20, &t);
    cr_assert_eq(md_commit(l, &md, 8, 8, 1, 4096), 0);
    cr_assert_eq(md_commit(l, &md, 9, 2, 0, 0), 0);
    txlog_close(l);
    l = tl_open(dir, 64 << 20, &t);
    cr_assert_eq(t.first_txid, 42);
    cr_assert_eq(t.last_txid, 43);
    txlog_close(l);
    tl_check_replay(dir, &md, 42);
    tl_check_replay(dir, &md, 0);
    snprintf(out, sizeof(out), "%s.db", dir);
    cr_assert_eq(txlog_replay(dir, 10, out, NULL, NULL, err, sizeof(err)), LV_ENOENT);
    md_free(&md);
}

Test(txlog, large_streamed_snapshot)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_tail t;
    struct txlog_reader *r;
    struct txlog *l;
    char **names;
    int n;

    md_init(&md, 4096, 91);
    l = tl_open(dir, 1 << 20, &t);
    cr_assert_eq(md_commit(l, &md, 20, 5, 0, 0), 0);
    /* 3000 pages x 4 KiB = 12 MiB raw: streamed, larger than seg_size. */
    cr_assert_eq(md_commit(l, &md, 3000, 3000, 1, 4096), 0);
    cr_assert_eq(md_commit(l, &md, 3000, 4, 0, 0), 0);
    cr_assert_eq(txlog_sync(l), 0);
    txlog_close(l);
    names = tl_segs(dir, &n);
    cr_assert_eq(n, 3, "segments: %d", n);
    cr_assert_str_eq(names[1], "0000000000000002.lvseg"); /* the snapshot has a segment of its own */
    cr_assert_str_eq(names[2], "0000000000000003.lvseg");
    l = tl_open(dir, 1 << 20, &t);
    cr_assert_eq(t.last_txid, 3);
    txlog_close(l);
    cr_assert_eq(txlog_reader_open(dir, 0, &r), 0);
    tl_check_reader(r, &md, 1);
    txlog_reader_close(r);
    tl_check_replay(dir, &md, 2);
    tl_check_replay(dir, &md, 3);
    md_free(&md);
}

/* ---- fault injection ---- */

Test(txlog, enospc_leaves_log_valid)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_tail t;
    struct txlog *l;
    char err[512];

    md_init(&md, 1024, 101);
    l = tl_open(dir, 64 << 20, &t);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(md_commit(l, &md, 10, 3, 0, 0), 0);
    sys_fault_set(SYS_OP_WRITE, ENOSPC, 0, NULL);
    struct txlog_hdr h = { .txid = 6, .page_size = 1024, .db_pages = 10, .pre_cksum = md.m.total,
                           .post_cksum = 1 };
    cr_assert_eq(txlog_append_begin(l, &h), 0);
    cr_assert_eq(txlog_append_page(l, 1, md.data), 0);
    cr_assert_eq(txlog_append_end(l), LV_ENOSPC);
    cr_assert_eq(txlog_error(l), 0);
    sys_fault_clear();
    /* Short write: half the record reaches the file, then it is removed. */
    sys_fault_set(SYS_OP_WRITE, -1, 0, NULL);
    cr_assert_eq(txlog_append_begin(l, &h), 0);
    cr_assert_eq(txlog_append_page(l, 2, md.data), 0);
    cr_assert(txlog_append_end(l) < 0);
    sys_fault_clear();
    cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), 0, "%s", err);
    cr_assert_eq(t.last_txid, 5);
    cr_assert_eq(t.torn_bytes, 0, "the failed record must be gone, not torn");
    /* The writer goes on with TXID 6. */
    cr_assert_eq(md_commit(l, &md, 10, 3, 0, 0), 0);
    /* A streamed record failing half way. */
    sys_fault_set(SYS_OP_WRITE, ENOSPC, 1, NULL);
    cr_assert(md_commit(l, &md, 2000, 2000, 1, 1024) < 0);
    sys_fault_clear();
    cr_assert_eq(txlog_error(l), 0);
    txlog_close(l);
    cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), 0, "%s", err);
    cr_assert_eq(t.last_txid, 6);
    cr_assert_eq(t.torn_bytes, 0);
    md.txid = 6;
    md_free(&md);
}

Test(txlog, failed_cleanup_breaks_log)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_tail t;
    struct txlog *l;
    char err[512];

    md_init(&md, 1024, 111);
    l = tl_open(dir, 64 << 20, &t);
    cr_assert_eq(md_commit(l, &md, 4, 4, 0, 0), 0);
    sys_fault_set(SYS_OP_WRITE, EIO, 0, NULL);
    sys_fault_set(SYS_OP_FTRUNCATE, EIO, 0, NULL);
    struct txlog_hdr h = { .txid = 2, .page_size = 1024, .db_pages = 4, .pre_cksum = md.m.total };
    cr_assert_eq(txlog_append_begin(l, &h), 0);
    cr_assert_eq(txlog_append_page(l, 1, md.data), 0);
    cr_assert_eq(txlog_append_end(l), LV_EBROKEN);
    sys_fault_clear();
    cr_assert_eq(txlog_error(l), LV_EBROKEN);
    cr_assert_eq(txlog_append_begin(l, &h), LV_EBROKEN);
    cr_assert_eq(txlog_sync(l), LV_EBROKEN);
    txlog_close(l);
    /* The first record is still intact on disk. */
    cr_assert_eq(tl_open_rc(dir, err, sizeof(err), &t), 0, "%s", err);
    cr_assert_eq(t.last_txid, 1);
    md_free(&md);
}

Test(txlog, fsync_failure_breaks_log)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_tail t;
    struct txlog *l;

    md_init(&md, 1024, 121);
    l = tl_open(dir, 64 << 20, &t);
    cr_assert_eq(md_commit(l, &md, 4, 4, 0, 0), 0);
    sys_fault_set(SYS_OP_FSYNC, EIO, 0, NULL);
    cr_assert_eq(txlog_sync(l), LV_EBROKEN);
    sys_fault_clear();
    cr_assert_eq(txlog_error(l), LV_EBROKEN);
    txlog_close(l);
    md_free(&md);
}

/* ---- live tailing ---- */

Test(txlog, reader_follows_a_growing_log)
{
    char *dir = tl_cat(tl_tmpdir(), "log");
    struct tl_md md;
    struct txlog_tail t;
    struct txlog_reader *r;
    struct txlog_hdr h;
    struct txlog *l;
    uint64_t seen = 0;
    int rc;

    md_init(&md, 1024, 131);
    l = tl_open(dir, 6000, &t);
    cr_assert_eq(md_commit(l, &md, 5, 5, 0, 0), 0);
    cr_assert_eq(txlog_reader_open(dir, 0, &r), 0);
    for (int round = 0; round < 10; round++) {
        while ((rc = txlog_reader_next(r, &h)) == 0) {
            cr_assert_eq(h.txid, seen + 1);
            seen = h.txid;
        }
        cr_assert_eq(rc, LV_ENOENT);
        cr_assert_eq(seen, md.txid);
        for (int i = 0; i < 3; i++)
            cr_assert_eq(md_commit(l, &md, md.n, 4, 0, 0), 0);
    }
    while (txlog_reader_next(r, &h) == 0)
        seen = h.txid;
    cr_assert_eq(seen, 31);
    txlog_reader_close(r);
    txlog_close(l);
    md_free(&md);
}

/* The progress callback of txlog_apply: called as pages are written (every
 * 8 MiB), with a growing total that never passes what was applied. */
struct tl_prog {
    int calls;         /* callbacks */
    uint64_t last;     /* bytes of the last callback */
    int monotonic;     /* every callback saw more than the one before */
};

static void tl_on_progress(void *arg, uint64_t bytes)
{
    struct tl_prog *p = arg;

    if (bytes <= p->last)
        p->monotonic = 0;
    p->last = bytes;
    p->calls++;
}

Test(txlog, apply_reports_bytes_written)
{
    char *dir = tl_cat(tl_tmpdir(), "log"), *out = tl_cat(dir, "../applied.db");
    struct tl_md md;
    struct txlog_tail t;
    struct txlog *l;
    struct txlog_apply *a;
    struct txlog_reader *r;
    struct txlog_hdr h;
    struct tl_prog p = {0, 0, 1};
    char err[512];
    int fd, rc;

    md_init(&md, 4096, 83);
    l = tl_open(dir, 64 << 20, &t);
    cr_assert_eq(md_commit(l, &md, 6000, 6000, 1, 4096), 0); /* a 23 MiB snapshot */
    cr_assert_eq(md_commit(l, &md, 6000, 10, 0, 0), 0);
    txlog_close(l);
    fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(txlog_apply_open(fd, out, &a), 0);
    txlog_apply_set_progress(a, tl_on_progress, &p);
    cr_assert_eq(txlog_reader_open(dir, 1, &r), 0);
    while ((rc = txlog_reader_next(r, &h)) == 0)
        cr_assert_eq(txlog_apply_record(a, r, &h, err, sizeof err), 0, "%s", err);
    cr_assert_eq(rc, LV_ENOENT);
    txlog_reader_close(r);
    cr_assert_eq(txlog_apply_finish(a, err, sizeof err), 0, "%s", err);
    txlog_apply_close(a);
    close(fd);
    cr_assert_geq(p.calls, 2, "the 23 MiB snapshot was written without progress (%d calls)", p.calls);
    cr_assert(p.monotonic, "progress went backwards");
    cr_assert_leq(p.last, (uint64_t)6010 * 4096, "more bytes reported (%llu) than written",
                  (unsigned long long)p.last);
    md_free(&md);
}

/* txlog_sync_begin/run/end (a log fsync without the owner's lock): a job
 * only when something is unsynced; a write between begin and end keeps the
 * segment dirty (the next txlog_sync fsyncs again, seen through the fault
 * seam); a failed run breaks the log; a log opened again starts dirty. */
Test(txlog, sync_job_without_the_lock)
{
    char *dir = tl_tmpdir();
    struct tl_md md;
    struct txlog_tail t;
    struct txlog_syncjob j;
    md_init(&md, 1024, 7);
    struct txlog *l = tl_open(dir, 0, &t);

    cr_assert_eq(txlog_sync_begin(l, &j), 0, "a job for an empty log");
    cr_assert_eq(md_commit(l, &md, 4, 4, 0, 0), 0);
    cr_assert_eq(txlog_sync_begin(l, &j), 1);
    cr_assert_eq(txlog_sync_run(&j), 0);
    cr_assert_eq(txlog_sync_end(l, &j, 0), 0);
    cr_assert_eq(j.fd, -1);
    cr_assert_eq(txlog_sync_begin(l, &j), 0, "still dirty after a job with no write meanwhile");
    sys_fault_set(SYS_OP_FSYNC, EIO, 0, dir);
    cr_assert_eq(txlog_sync(l), 0, "txlog_sync fsynced a clean log");
    sys_fault_clear();

    /* a record lands while the job runs: the segment stays dirty */
    cr_assert_eq(md_commit(l, &md, 4, 1, 0, 0), 0);
    cr_assert_eq(txlog_sync_begin(l, &j), 1);
    cr_assert_eq(md_commit(l, &md, 4, 1, 0, 0), 0);
    cr_assert_eq(txlog_sync_run(&j), 0);
    cr_assert_eq(txlog_sync_end(l, &j, 0), 0);
    sys_fault_set(SYS_OP_FSYNC, EIO, 0, dir);
    cr_assert_neq(txlog_sync(l), 0, "the record written during the job was taken as fsynced");
    sys_fault_clear();
    cr_assert_neq(txlog_error(l), 0, "a failed txlog_sync left the log usable");
    txlog_close(l);

    /* reopened: dirty until fsynced; a failed job breaks the log */
    l = tl_open(dir, 0, &t);
    cr_assert_eq(txlog_sync_begin(l, &j), 1, "a reopened log's tail was taken as fsynced");
    sys_fault_set(SYS_OP_FSYNC, EIO, 0, dir);
    int rc = txlog_sync_run(&j);
    sys_fault_clear();
    cr_assert_neq(rc, 0);
    cr_assert_eq(txlog_sync_end(l, &j, rc), LV_EBROKEN);
    cr_assert_eq(txlog_error(l), LV_EBROKEN);
    cr_assert_eq(txlog_sync_begin(l, &j), LV_EBROKEN);
    txlog_close(l);
    md_free(&md);
}
