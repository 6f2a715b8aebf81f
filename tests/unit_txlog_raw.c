/*
 * unit_txlog_raw.c -- raw records (src/log/txlog_raw.c, txlog_append_raw,
 * txlog_append_raws): a record copied byte for byte from one log into
 * another, checked on the way, one by one or as a run in one write.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "log/txlog.h"

static const uint8_t ID[16] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};

/* n records of one page each into a new log in a temp dir; their raw bytes into r/len. */
static void source_records(int n, uint8_t **r, size_t *len)
{
    char dir[] = "/tmp/lvraw.XXXXXX", err[256];
    cr_assert(mkdtemp(dir));
    struct txlog *l;
    struct txlog_tail t;
    cr_assert_eq(txlog_open(dir, ID, 1 << 20, &l, &t, err, sizeof err), 0, "%s", err);
    uint8_t page[1024];
    uint64_t pre = 0;
    for (int i = 1; i <= n; i++) {
        memset(page, i, sizeof page);
        struct txlog_hdr h = {.version = 1, .txid = (uint64_t)i, .time_us = i, .page_size = 1024, .db_pages = 1,
                              .pre_cksum = pre, .post_cksum = cksum_page(1, page, 1024)};
        cr_assert_eq(txlog_append_begin(l, &h), 0);
        cr_assert_eq(txlog_append_page(l, 1, page), 0);
        cr_assert_eq(txlog_append_end(l), 0);
        pre = h.post_cksum;
    }
    txlog_close(l);
    void *img;
    size_t ilen;
    uint64_t last;
    cr_assert_eq(txlog_segment_image(dir, ID, 1, 0, 0, &img, &ilen, &last), 0);
    size_t off = TXLOG_SEG_HDR_SIZE;
    for (int i = 0; i < n; i++) {
        struct txlog_hdr h;
        cr_assert_eq(txlog_hdr_decode((uint8_t *)img + off, &h), 0);
        len[i] = TXLOG_HDR_SIZE + h.stored_len + TXLOG_TRAILER_SIZE;
        r[i] = malloc(len[i]);
        memcpy(r[i], (uint8_t *)img + off, len[i]);
        off += len[i];
    }
    free(img);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static struct txlog *target(char *dir, uint64_t seg_size)
{
    char err[256];
    struct txlog *l;
    struct txlog_tail t;
    cr_assert(mkdtemp(dir));
    cr_assert_eq(txlog_open(dir, ID, seg_size, &l, &t, err, sizeof err), 0, "%s", err);
    return l;
}

/* Every record of dir reads back in order with its chain. */
static uint64_t read_back(const char *dir)
{
    struct txlog_reader *rd;
    struct txlog_hdr h;
    uint64_t n = 0;
    cr_assert_eq(txlog_reader_open(dir, 1, &rd), 0);
    while (txlog_reader_next(rd, &h) == 0)
        cr_assert_eq(h.txid, ++n);
    txlog_reader_close(rd);
    return n;
}

Test(txlog_raw, run_in_one_write_and_one_by_one)
{
    uint8_t *r[8];
    size_t len[8];
    source_records(8, r, len);
    char dir[] = "/tmp/lvraw2.XXXXXX";
    struct txlog *l = target(dir, 1 << 20);
    cr_assert_eq(txlog_append_raw(l, r[0], len[0]), 0);
    cr_assert_eq(txlog_append_raws(l, (const void *const *)r + 1, len + 1, 5), 0); /* one write */
    cr_assert_eq(txlog_append_raws(l, (const void *const *)r + 6, len + 6, 2), 0);
    cr_assert_eq(txlog_last_txid(l), 8);
    txlog_close(l);
    cr_assert_eq(read_back(dir), 8);
    for (int i = 0; i < 8; i++)
        free(r[i]);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(txlog_raw, broken_run_appends_the_prefix_only)
{
    uint8_t *r[5];
    size_t len[5];
    source_records(5, r, len);
    char dir[] = "/tmp/lvraw3.XXXXXX";
    struct txlog *l = target(dir, 1 << 20);
    cr_assert_eq(txlog_append_raw(l, r[0], len[0]), 0);
    const void *run[3] = {r[1], r[3], r[4]}; /* TXID 2, then 4: a gap */
    size_t rl[3] = {len[1], len[3], len[4]};
    cr_assert_eq(txlog_append_raws(l, run, rl, 3), LV_EGAP);
    cr_assert_eq(txlog_last_txid(l), 2);
    r[2][TXLOG_HDR_SIZE] ^= 1; /* damage TXID 3's payload: the trailer no longer matches */
    cr_assert_eq(txlog_append_raws(l, (const void *const *)r + 2, len + 2, 3), LV_ECORRUPT);
    cr_assert_eq(txlog_last_txid(l), 2);
    txlog_close(l);
    cr_assert_eq(read_back(dir), 2);
    for (int i = 0; i < 5; i++)
        free(r[i]);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(txlog_raw, run_across_a_roll_over)
{
    uint8_t *r[20];
    size_t len[20];
    source_records(20, r, len);
    char dir[] = "/tmp/lvraw4.XXXXXX";
    struct txlog *l = target(dir, 4096); /* a few records per segment */
    cr_assert_eq(txlog_append_raws(l, (const void *const *)r, len, 20), 0);
    cr_assert_eq(txlog_last_txid(l), 20);
    txlog_close(l);
    cr_assert_eq(read_back(dir), 20);
    for (int i = 0; i < 20; i++)
        free(r[i]);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static int count(void *arg, uint32_t pgno, const void *page)
{
    (void)pgno;
    cr_assert_eq(((const uint8_t *)page)[100], 1);
    ++*(int *)arg;
    return 0;
}

Test(txlog_raw, pages_decode_and_damage_is_refused)
{
    uint8_t *r[1];
    size_t len[1];
    char err[256];
    struct txlog_hdr h;
    source_records(1, r, len);
    int pages = 0;
    cr_assert_eq(txlog_record_pages(r[0], len[0], &h, count, &pages, err, sizeof err), 0, "%s", err);
    cr_assert_eq(pages, 1);
    cr_assert_eq(txlog_record_pages(r[0], len[0] - 1, &h, count, &pages, err, sizeof err), LV_ECORRUPT);
    r[0][len[0] - 1] ^= 0xff; /* trailer */
    cr_assert_eq(txlog_record_pages(r[0], len[0], &h, count, &pages, err, sizeof err), LV_ECORRUPT);
    cr_assert(strstr(err, "trailer"), "%s", err);
    free(r[0]);
}
