/*
 * unit_txlog_reserve.c -- txlog_reserve (L9 of log/txlog.c): room for the
 * next record is allocated ahead without changing the segment's size, the
 * segment choice (roll-over) is made by the reservation and kept by the
 * append, reserved blocks are released when the segment is closed, and a
 * reservation that cannot be had is LV_ENOSPC without harming the log.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"
#include "log/txlog.h"

static const uint8_t RV_ID[16] = {7, 7, 7, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
static char rv_dir[256];

static void rv_setup(void)
{
    lvlog_threshold = -1;
    snprintf(rv_dir, sizeof rv_dir, "/tmp/lvunit-resv-XXXXXX");
    cr_assert_not_null(mkdtemp(rv_dir));
}

static void rv_teardown(void)
{
    char cmd[300];
    sys_fault_clear();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", rv_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", rv_dir);
}

TestSuite(txlog_reserve, .init = rv_setup, .fini = rv_teardown);

static struct txlog *rv_open(uint64_t seg_size)
{
    struct txlog *l = NULL;
    struct txlog_tail tail;
    char err[256];
    cr_assert_eq(txlog_open(rv_dir, RV_ID, seg_size, &l, &tail, err, sizeof err), 0, "%s", err);
    return l;
}

/* Append TXID txid with npages incompressible 4 KiB pages; 0 or the error. */
static int rv_append(struct txlog *l, uint64_t txid, uint32_t npages)
{
    struct txlog_hdr h;
    uint8_t page[4096];
    memset(&h, 0, sizeof h);
    h.version = 1;
    memcpy(h.dbid, RV_ID, 16);
    h.txid = txid;
    h.time_us = 1000 + (int64_t)txid;
    h.page_size = 4096;
    h.db_pages = npages;
    h.pre_cksum = txid - 1;
    h.post_cksum = txid;
    int rc = txlog_append_begin(l, &h);
    for (uint32_t p = 1; p <= npages && rc == 0; p++) {
        uint64_t x = txid * 0x9E3779B97F4A7C15ull + p; /* xorshift: incompressible */
        for (size_t i = 0; i < sizeof page; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            page[i] = (uint8_t)x;
        }
        rc = txlog_append_page(l, p, page);
    }
    return rc ? rc : txlog_append_end(l);
}

/* stat of segment <first>.lvseg. */
static int rv_stat(uint64_t first, struct stat *st)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%016llx.lvseg", rv_dir, (unsigned long long)first);
    return stat(path, st);
}

Test(txlog_reserve, allocates_ahead_without_changing_the_size)
{
    struct txlog *l = rv_open(64u << 20);
    struct stat st;
    cr_assert_eq(rv_append(l, 1, 2), 0);
    cr_assert_eq(rv_stat(1, &st), 0);
    off_t size1 = st.st_size;
    cr_assert_eq(txlog_reserve(l, 2, 100 * 4100), 0);
    cr_assert_eq(rv_stat(1, &st), 0);
    cr_assert_eq(st.st_size, size1, "the reservation changed the segment's size");
    cr_assert_geq((long long)st.st_blocks * 512, (long long)size1 + 100 * 4100,
                  "the reservation allocated only %lld bytes", (long long)st.st_blocks * 512);
    /* a reservation already covered is free: no new blocks */
    blkcnt_t b = st.st_blocks;
    cr_assert_eq(txlog_reserve(l, 2, 50 * 4100), 0);
    cr_assert_eq(rv_stat(1, &st), 0);
    cr_assert_eq(st.st_blocks, b);
    cr_assert_eq(rv_append(l, 2, 100), 0);
    cr_assert_eq(rv_stat(1, &st), 0);
    cr_assert_gt(st.st_size, size1 + 100 * 4096);
    /* closing releases what was reserved past the end */
    off_t size2 = st.st_size;
    txlog_close(l);
    cr_assert_eq(rv_stat(1, &st), 0);
    cr_assert_eq(st.st_size, size2);
    cr_assert_lt((long long)st.st_blocks * 512, (long long)size2 + 65536, "reserved blocks left after close");
    /* and the log reads back */
    l = rv_open(64u << 20);
    cr_assert_eq(txlog_last_txid(l), 2);
    txlog_close(l);
}

Test(txlog_reserve, rolls_over_at_the_reservation)
{
    struct txlog *l = rv_open(256u << 10);
    struct stat st;
    cr_assert_eq(rv_append(l, 1, 40), 0);
    /* 40 more pages do not fit in 256 KiB: the reservation starts segment 2 */
    cr_assert_eq(txlog_reserve(l, 2, 40 * 4100), 0);
    cr_assert_eq(rv_stat(2, &st), 0, "the reservation did not start the next segment");
    cr_assert_geq((long long)st.st_blocks * 512, 40 * 4100);
    /* the record goes there even though it would have been smaller */
    cr_assert_eq(rv_append(l, 2, 10), 0);
    cr_assert_eq(rv_stat(2, &st), 0);
    cr_assert_gt(st.st_size, 10 * 4096);
    /* a streamed record (over 1 MiB raw) gets a segment of its own */
    cr_assert_eq(txlog_reserve(l, 3, 300 * 4100), 0);
    cr_assert_eq(rv_stat(3, &st), 0);
    cr_assert_eq(rv_append(l, 3, 300), 0);
    txlog_close(l);
    l = rv_open(256u << 10);
    cr_assert_eq(txlog_last_txid(l), 3);
    txlog_close(l);
}

Test(txlog_reserve, no_room_is_enospc_and_harmless)
{
    struct txlog *l = rv_open(64u << 20);
    cr_assert_eq(rv_append(l, 1, 2), 0);
    sys_fault_set(SYS_OP_FALLOCATE, ENOSPC, 0, ".lvseg");
    cr_assert_eq(txlog_reserve(l, 2, 1000 * 4100), LV_ENOSPC);
    cr_assert_eq(txlog_error(l), 0, "a refused reservation broke the log");
    sys_fault_clear();
    cr_assert_eq(txlog_reserve(l, 2, 1000 * 4100), 0);
    cr_assert_eq(rv_append(l, 2, 3), 0);
    txlog_close(l);
    l = rv_open(64u << 20);
    cr_assert_eq(txlog_last_txid(l), 2);
    txlog_close(l);
}
