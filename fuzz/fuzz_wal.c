/*
 * fuzz_wal.c -- libFuzzer harness for the SQLite WAL reader (src/wal.c):
 * wal_hdr_decode, wal_scan and the cursor (wal_read_commits).
 *
 * Input: a WAL file image (seeds: real WAL files written by SQLite with
 * 512-byte pages, fuzz/gen_seeds.c).  Per input:
 *   1. wal_hdr_decode on the first 32 bytes, as given and with the header
 *      checksum recomputed;
 *   2. wal_scan over a memfd holding the bytes as given, then over a
 *      fixed-up copy: header checksum recomputed, and the cumulative frame
 *      checksums recomputed for every complete frame whose salts match the
 *      header (the chain stops at the first frame whose salts differ, as
 *      SQLite's recovery does).
 * The fix-up computes the WAL checksum from the published format
 * (sqlite.org/fileformat.html, "Checksum Algorithm"), independently of
 * src/wal.c, so a disagreement shows up as missing commits in the
 * fixed-up image of a valid seed.
 *
 * Checked beyond "no crash, no leak, no UB":
 *   - a header wal_hdr_decode accepts has a WAL magic, version 3007000
 *     and a power-of-two page size in 512..65536;
 *   - wal_scan returns 0 (no I/O errors on a memfd); the commits are
 *     contiguous (first of each = last of the previous + 1, starting at
 *     frame 0), first <= last, each commit frame lies inside the file and
 *     has a non-zero database size;
 *   - n == 0 exactly when the list is NULL;
 *   - wal_read_commits, fed the first half of the image and then all of
 *     it, returns the same commits as the scan, and no restart.
 */
#include <sys/mman.h>

#include "base/lv.h"
#include "log/wal.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...) do { fprintf(stderr, "fuzz_wal: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

static int wal_fd = -1; /* memfd reused for every input */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init("wal", "unused");
    wal_fd = memfd_create("lvfuzz-wal", MFD_CLOEXEC);
    if (wal_fd < 0) {
        perror("memfd_create");
        exit(1);
    }
    return 0;
}

/* The WAL checksum step over n bytes (multiple of 8) continuing from s. */
static void fz_wal_sum(int big_endian, const uint8_t *b, size_t n, uint32_t s[2])
{
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint32_t w0, w1;
        if (big_endian) {
            w0 = lv_get32(b + i);
            w1 = lv_get32(b + i + 4);
        } else {
            w0 = (uint32_t)b[i + 3] << 24 | (uint32_t)b[i + 2] << 16 | (uint32_t)b[i + 1] << 8 | b[i];
            w1 = (uint32_t)b[i + 7] << 24 | (uint32_t)b[i + 6] << 16 | (uint32_t)b[i + 5] << 8 | b[i + 4];
        }
        s[0] += w0 + s[1];
        s[1] += w1 + s[0];
    }
}

/* Recompute the header and frame checksums of the image in place. */
static void fix_wal(uint8_t *b, size_t n)
{
    uint32_t s[2] = {0, 0}, ps, magic;
    int big;

    if (n < WAL_HDR_SIZE)
        return;
    magic = lv_get32(b);
    big = magic & 1;
    fz_wal_sum(big, b, 24, s);
    lv_put32(b + 24, s[0]);
    lv_put32(b + 28, s[1]);
    ps = lv_get32(b + 8);
    if (ps < 512 || ps > 65536 || (ps & (ps - 1)))
        return;
    for (uint32_t i = 0; wal_frame_off(i, ps) + WAL_FRAME_HDR_SIZE + ps <= n; i++) {
        uint8_t *f = b + wal_frame_off(i, ps);
        if (memcmp(f + 8, b + 16, 8) != 0)
            break;
        fz_wal_sum(big, f, 8, s);
        fz_wal_sum(big, f + WAL_FRAME_HDR_SIZE, ps, s);
        lv_put32(f + 16, s[0]);
        lv_put32(f + 20, s[1]);
    }
}

static void decode_hdr(const uint8_t *in, int fix)
{
    uint8_t b[WAL_HDR_SIZE];
    struct wal_hdr h;

    memcpy(b, in, sizeof b);
    if (fix)
        fix_wal(b, sizeof b);
    if (wal_hdr_decode(b, &h) != 0)
        return;
    if ((h.magic != WAL_MAGIC_LE && h.magic != WAL_MAGIC_BE) || h.version != 3007000 || h.page_size < 512 ||
        h.page_size > 65536 || (h.page_size & (h.page_size - 1)))
        FAIL("wal_hdr_decode accepted magic %#x version %u page size %u", h.magic, h.version, h.page_size);
}

/* The cursor, fed the image in two parts (the first half, then the whole,
 * as a live writer appends), returns exactly the commits of one scan. */
static void follow(const uint8_t *b, size_t n, const struct wal_commit *want, size_t nwant)
{
    struct wal_cursor cur;
    struct wal_commit *c = NULL;
    size_t nc = 0, got = 0, cut = n / 2;
    int restarted = 0, rc;

    memset(&cur, 0, sizeof cur);
    for (int part = 0; part < 2; part++) {
        if (ftruncate(wal_fd, 0) != 0 || pwrite(wal_fd, b, part ? n : cut, 0) != (ssize_t)(part ? n : cut)) {
            perror("memfd write");
            exit(1);
        }
        rc = wal_read_commits(wal_fd, "fuzz-wal", &cur, &c, &nc, &restarted);
        if (rc != 0)
            FAIL("wal_read_commits returned %d (%s) on a memfd", rc, lv_strerror(rc));
        if (restarted)
            FAIL("a restart reported where the header did not change");
        for (size_t i = 0; i < nc; i++, got++)
            if (got >= nwant || memcmp(&c[i], &want[got], sizeof c[i]) != 0)
                FAIL("part %d: the cursor's commit %zu differs from the scan's", part, got);
        free(c);
        c = NULL;
    }
    if (got != nwant)
        FAIL("the cursor returned %zu commits, the scan %zu", got, nwant);
}

static void scan(const uint8_t *b, size_t n)
{
    struct wal_hdr h;
    struct wal_commit *c = NULL;
    size_t nc = 99, i;
    uint32_t next = 0;
    int rc;

    if (ftruncate(wal_fd, 0) != 0 || pwrite(wal_fd, b, n, 0) != (ssize_t)n) {
        perror("memfd write");
        exit(1);
    }
    rc = wal_scan(wal_fd, "fuzz-wal", &h, &c, &nc);
    if (rc != 0)
        FAIL("wal_scan returned %d (%s) on a memfd", rc, lv_strerror(rc));
    if ((nc == 0) != (c == NULL))
        FAIL("wal_scan returned n = %zu with list %p", nc, (void *)c);
    for (i = 0; i < nc; i++) {
        if (c[i].first != next || c[i].last < c[i].first)
            FAIL("commit %zu covers frames %u..%u, expected to start at %u", i, c[i].first, c[i].last, next);
        if (wal_frame_off(c[i].last, h.page_size) + WAL_FRAME_HDR_SIZE + h.page_size > n)
            FAIL("commit frame %u lies beyond the %zu-byte file", c[i].last, n);
        if (c[i].db_pages == 0)
            FAIL("commit %zu has database size 0", i);
        next = c[i].last + 1;
    }
    follow(b, n, c, nc);
    free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;

    if (size > (1u << 20))
        return 0;
    if (size >= WAL_HDR_SIZE) {
        decode_hdr(data, 0);
        decode_hdr(data, 1);
    }
    scan(data, size);
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    fix_wal(copy, size);
    scan(copy, size);
    free(copy);
    return 0;
}
