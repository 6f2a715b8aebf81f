/*
 * unit_cksum.c -- page/database checksums, the checksum map and the state
 * file (src/cksum.c).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "base/lvlog.h"

static char *ck_dir; /* temporary directory of the running test, removed by ck_cleanup */

static void ck_quiet(void)
{
    lvlog_threshold = -1;
}

static int ck_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void ck_cleanup(void)
{
    if (ck_dir) {
        nftw(ck_dir, ck_rm, 8, FTW_DEPTH | FTW_PHYS);
        free(ck_dir);
        ck_dir = NULL;
    }
}

TestSuite(cksum, .init = ck_quiet, .fini = ck_cleanup);

/* xorshift64* pseudo random numbers, deterministic per seed. */
static uint64_t ck_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void ck_fill(uint8_t *p, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)ck_rand(s);
}

/* Database checksum from scratch: XOR of page checksums. */
static uint64_t ck_full(const uint8_t *db, uint32_t npages, uint32_t ps)
{
    uint64_t x = 0;

    for (uint32_t p = 1; p <= npages; p++)
        x ^= cksum_page(p, db + (size_t)(p - 1) * ps, ps);
    return x;
}

static char *ck_tmpdir(void)
{
    char *d = strdup("/tmp/lv-cksum-XXXXXX");
    cr_assert(mkdtemp(d));
    ck_dir = d;
    return d;
}

Test(cksum, page_definition)
{
    uint8_t page[4096];
    uint64_t s = 1;

    ck_fill(page, sizeof(page), &s);
    cr_assert_eq(cksum_page(7, page, sizeof(page)), XXH3_64bits_withSeed(page, sizeof(page), 7));
    cr_assert_eq(cksum_buf(page, 100), XXH3_64bits(page, 100));
    /* The page number is part of the checksum: moving a page changes it. */
    cr_assert_neq(cksum_page(1, page, sizeof(page)), cksum_page(2, page, sizeof(page)));
    uint64_t before = cksum_page(7, page, sizeof(page));
    page[4095] ^= 1;
    cr_assert_neq(cksum_page(7, page, sizeof(page)), before);
}

Test(cksum, resize_zero_pages)
{
    struct cksum_map m;
    uint8_t zero[1024] = {0};

    cksum_map_init(&m);
    cksum_map_reset(&m, 1024);
    cr_assert_eq(m.total, 0);
    cr_assert_eq(cksum_map_resize(&m, 5), 0);
    cr_assert_eq(m.npages, 5);
    for (uint32_t p = 1; p <= 5; p++)
        cr_assert_eq(cksum_map_get(&m, p), cksum_page(p, zero, sizeof(zero)));
    uint8_t *zdb = calloc(5, 1024);
    cr_assert_eq(m.total, ck_full(zdb, 5, 1024));
    cr_assert_neq(m.total, 0);
    free(zdb);
    cr_assert_eq(cksum_map_resize(&m, 0), 0);
    cr_assert_eq(m.total, 0);
    cksum_map_free(&m);
}

Test(cksum, incremental_equals_full)
{
    const uint32_t ps = 512, maxp = 300;
    uint8_t *db = calloc(maxp, ps);
    struct cksum_map m, c;
    uint32_t n = 0;
    uint64_t s = 42;

    cksum_map_init(&m);
    cksum_map_init(&c);
    cksum_map_reset(&m, ps);
    for (int step = 0; step < 2000; step++) {
        uint64_t r = ck_rand(&s) % 10;
        if (r == 0) {
            /* Resize: shrinking drops pages, growing adds zero pages. */
            uint32_t nn = (uint32_t)(ck_rand(&s) % maxp);
            if (nn > n)
                memset(db + (size_t)n * ps, 0, (size_t)(nn - n) * ps);
            n = nn;
            cr_assert_eq(cksum_map_resize(&m, n), 0);
        } else if (n > 0) {
            uint32_t p = (uint32_t)(ck_rand(&s) % n) + 1;
            ck_fill(db + (size_t)(p - 1) * ps, ps, &s);
            cksum_map_set(&m, p, cksum_page(p, db + (size_t)(p - 1) * ps, ps));
        }
        if (step % 97 == 0)
            cr_assert_eq(m.total, ck_full(db, n, ps), "step %d", step);
    }
    cr_assert_eq(m.total, ck_full(db, n, ps));
    cr_assert_eq(cksum_map_copy(&c, &m), 0);
    cr_assert_eq(c.npages, m.npages);
    cr_assert_eq(c.total, m.total);
    if (n > 0) {
        cksum_map_set(&c, 1, 12345);
        cr_assert_neq(c.total, m.total, "copy must be deep");
    }
    cksum_map_free(&m);
    cksum_map_free(&c);
    free(db);
}

Test(cksum, scan_fd_short_file)
{
    const uint32_t ps = 4096, n = 700; /* > 1 MiB, several chunks */
    uint8_t *db = calloc(n, ps);
    char *d = ck_tmpdir(), path[256];
    struct cksum_map m;
    uint64_t s = 9;
    int fd;

    ck_fill(db, (size_t)(n - 10) * ps, &s);
    snprintf(path, sizeof(path), "%s/db", d);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    cr_assert(fd >= 0);
    /* The file is 10.5 pages short; the missing bytes count as zeros. */
    cr_assert_eq(write(fd, db, (size_t)(n - 10) * ps + ps / 2), (ssize_t)((n - 10) * ps + ps / 2));
    memset(db + (size_t)(n - 10) * ps + ps / 2, 0, ps / 2);
    cksum_map_init(&m);
    cr_assert_eq(cksum_map_scan_fd(&m, fd, ps, n, path), 0);
    cr_assert_eq(m.npages, n);
    cr_assert_eq(m.page_size, ps);
    cr_assert_eq(m.total, ck_full(db, n, ps));
    for (uint32_t p = 1; p <= n; p += 37)
        cr_assert_eq(cksum_map_get(&m, p), cksum_page(p, db + (size_t)(p - 1) * ps, ps));
    close(fd);
    cksum_map_free(&m);
    free(db);
}

/* Write a state file for a small random map; return its bytes. */
static void ck_state_fixture(const char *path, struct cksum_map *m, uint8_t id[16])
{
    uint64_t s = 77;

    cksum_map_init(m);
    cksum_map_reset(m, 4096);
    cr_assert_eq(cksum_map_resize(m, 9), 0);
    for (uint32_t p = 1; p <= 9; p++)
        cksum_map_set(m, p, ck_rand(&s));
    for (int i = 0; i < 16; i++)
        id[i] = (uint8_t)(0xA0 + i);
    cr_assert_eq(cksum_state_save(path, m, id, 123456789), 0);
}

Test(cksum, state_roundtrip)
{
    char *d = ck_tmpdir(), path[256];
    struct cksum_map m, l;
    uint8_t id[16], id2[16];
    uint64_t txid = 0;

    snprintf(path, sizeof(path), "%s/state", d);
    ck_state_fixture(path, &m, id);
    cksum_map_init(&l);
    cr_assert_eq(cksum_state_load(path, &l, id2, &txid), 0);
    cr_assert_eq(txid, 123456789);
    cr_assert_arr_eq(id, id2, 16);
    cr_assert_eq(l.page_size, 4096);
    cr_assert_eq(l.npages, 9);
    cr_assert_eq(l.total, m.total);
    for (uint32_t p = 1; p <= 9; p++)
        cr_assert_eq(cksum_map_get(&l, p), cksum_map_get(&m, p));
    /* Empty map round trip. */
    cksum_map_reset(&m, 0);
    cr_assert_eq(cksum_state_save(path, &m, id, 0), 0);
    cr_assert_eq(cksum_state_load(path, &l, id2, &txid), 0);
    cr_assert_eq(l.npages, 0);
    cr_assert_eq(l.total, 0);
    cksum_map_free(&m);
    cksum_map_free(&l);
}

Test(cksum, state_corruption)
{
    char *d = ck_tmpdir(), path[256];
    struct cksum_map m, l;
    uint8_t id[16], id2[16], *buf;
    uint64_t txid;
    long len;
    FILE *f;

    snprintf(path, sizeof(path), "%s/state", d);
    cksum_map_init(&l);
    cr_assert_eq(cksum_state_load(path, &l, id2, &txid), LV_ENOENT);
    ck_state_fixture(path, &m, id);
    f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    cr_assert_eq(len, 56 + 9 * 8 + 8);
    rewind(f);
    buf = malloc((size_t)len);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);

    /* Every single-bit flip anywhere is detected. */
    for (long i = 0; i < len; i++) {
        buf[i] ^= 0x10;
        f = fopen(path, "wb");
        fwrite(buf, 1, (size_t)len, f);
        fclose(f);
        int rc = cksum_state_load(path, &l, id2, &txid);
        cr_assert(rc == LV_ECORRUPT || rc == LV_EVERSION, "flip at %ld gave %d", i, rc);
        buf[i] ^= 0x10;
    }
    /* Truncation is detected. */
    f = fopen(path, "wb");
    fwrite(buf, 1, (size_t)len - 8, f);
    fclose(f);
    cr_assert_eq(cksum_state_load(path, &l, id2, &txid), LV_ECORRUPT);
    /* A consistent checksum over an inconsistent total is still refused. */
    buf[48] ^= 1;
    lv_put64(buf + len - 8, cksum_buf(buf, (size_t)len - 8));
    f = fopen(path, "wb");
    fwrite(buf, 1, (size_t)len, f);
    fclose(f);
    cr_assert_eq(cksum_state_load(path, &l, id2, &txid), LV_ECORRUPT);
    free(buf);
    cksum_map_free(&m);
    cksum_map_free(&l);
}

Test(cksum, hex)
{
    char b[17];

    cr_assert_str_eq(cksum_hex(0x0123456789abcdefull, b), "0123456789abcdef");
    cr_assert_str_eq(cksum_hex(0, b), "0000000000000000");
    cr_assert_str_eq(cksum_hex(UINT64_MAX, b), "ffffffffffffffff");
}
