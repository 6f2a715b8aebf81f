/*
 * fuzz_txlog_open.c -- libFuzzer harness for the start-up scan and tail
 * repair of the transaction log, txlog_open (src/txlog.c), which parses
 * whatever a crash left in the log directory.
 *
 * Input: one segment file image (same seeds as fuzz_txlog).  Only the
 * fixed-up copy is used (checksums recomputed, txlog_fix.h): the raw-bytes
 * checks are covered by fuzz_txlog.  The image is written into an empty
 * log directory as <first TXID from header bytes 32..39>.lvseg (so the name
 * matches unless the fuzzer changes it after the fix-up) and opened with
 * the database ID from header bytes 16..31.
 *
 * Checked when txlog_open succeeds:
 *   - tail accounting: total_bytes + torn_bytes equals the input size, at
 *     most one segment, first_txid <= last_txid;
 *   - the streaming reader (txlog_reader_open on the directory) returns
 *     exactly the records first_txid..last_txid, headers only;
 *   - repair is idempotent: a second txlog_open finds no torn bytes and the
 *     same tail;
 *   - the writer can continue: a record with TXID last + 1 and pre
 *     checksum = last post is appended (one page for odd input sizes, no
 *     pages -- a size-only commit -- for even ones), and a third txlog_open accepts
 *     the log with that record last.
 * When it fails, the result is LV_ECORRUPT or LV_EVERSION with a message.
 */
#include <dirent.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "txlog_fix.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...) do { fprintf(stderr, "fuzz_txlog_open: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

static char log_dir[160]; /* fz_dir/log */

/* Remove every file in log_dir (the directory itself stays). */
static void clear_dir(void)
{
    char path[512];
    struct dirent *e;
    DIR *d = opendir(log_dir);

    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", log_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static void txo_cleanup(void)
{
    clear_dir();
    rmdir(log_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init("txlog_open", "unused");
    snprintf(log_dir, sizeof log_dir, "%s/log", fz_dir);
    if (mkdir(log_dir, 0700) != 0) {
        perror(log_dir);
        exit(1);
    }
    atexit(txo_cleanup); /* runs before fz_cleanup removes fz_dir */
    return 0;
}

static void check_open_fail(int rc, const char *err, const char *what)
{
    if (rc != LV_ECORRUPT && rc != LV_EVERSION)
        FAIL("%s: txlog_open returned %d (%s): %s", what, rc, lv_strerror(rc), err);
    if (!err[0])
        FAIL("%s: txlog_open failed (%s) without a message", what, lv_strerror(rc));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct txlog *l;
    struct txlog_tail t, t2;
    struct txlog_reader *r;
    struct txlog_hdr h;
    uint8_t *copy, *page, dbid[16] = {0};
    uint64_t first = 1, n = 0;
    char path[512], err[512];
    int fd, rc;

    if (size > (256u << 10))
        return 0;
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    fz_fix_segment(copy, size);
    if (size >= 40) {
        memcpy(dbid, copy + 16, 16);
        first = lv_get64(copy + 32);
    }
    clear_dir();
    snprintf(path, sizeof path, "%s/%016" PRIx64 ".lvseg", log_dir, first);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, copy, size) != (ssize_t)size) {
        perror(path);
        exit(1);
    }
    close(fd);
    free(copy);

    rc = txlog_open(log_dir, dbid, 1 << 20, &l, &t, err, sizeof err);
    if (rc != 0) {
        check_open_fail(rc, err, "first open");
        return 0;
    }
    txlog_close(l);
    if (t.total_bytes + t.torn_bytes != size || t.nsegments > 1 || t.first_txid > t.last_txid)
        FAIL("tail of a %zu-byte segment: total %" PRIu64 " torn %" PRIu64 " segments %u TXIDs %" PRIu64
             "..%" PRIu64, size, t.total_bytes, t.torn_bytes, t.nsegments, t.first_txid, t.last_txid);
    if (t.nsegments == 0)
        return 0; /* the segment header was torn: the file is gone */

    /* The reader sees exactly the records the scan accepted. */
    rc = txlog_reader_open(log_dir, 0, &r);
    if (rc != 0)
        FAIL("txlog_reader_open failed on a log txlog_open accepted: %s", lv_strerror(rc));
    while ((rc = txlog_reader_next(r, &h)) == 0) {
        if (h.txid != t.first_txid + n)
            FAIL("reader returned TXID %" PRIu64 ", expected %" PRIu64, h.txid, t.first_txid + n);
        n++;
    }
    if (rc != LV_ENOENT)
        FAIL("reader failed after %" PRIu64 " records on a log txlog_open accepted: %s", n, lv_strerror(rc));
    if (n != (t.last_txid ? t.last_txid - t.first_txid + 1 : 0))
        FAIL("reader returned %" PRIu64 " records, scan found TXIDs %" PRIu64 "..%" PRIu64, n, t.first_txid,
             t.last_txid);
    txlog_reader_close(r);

    /* Repair is idempotent. */
    rc = txlog_open(log_dir, dbid, 1 << 20, &l, &t2, err, sizeof err);
    if (rc != 0)
        FAIL("second txlog_open failed after a successful one: %s: %s", lv_strerror(rc), err);
    if (t2.torn_bytes != 0 || t2.last_txid != t.last_txid || t2.first_txid != t.first_txid ||
        t2.last_post != t.last_post || t2.total_bytes != t.total_bytes)
        FAIL("second txlog_open differs: torn %" PRIu64 ", TXIDs %" PRIu64 "..%" PRIu64 " vs %" PRIu64 "..%" PRIu64,
             t2.torn_bytes, t2.first_txid, t2.last_txid, t.first_txid, t.last_txid);

    /* The writer continues the repaired log. */
    if (t.last_txid != 0 && t.last_txid < UINT64_MAX && t.last_page_size >= 512 && t.last_page_size <= 65536 &&
        t.last_db_pages > 0) {
        memset(&h, 0, sizeof h);
        h.txid = t.last_txid + 1;
        h.time_us = t.last_time_us;
        h.page_size = t.last_page_size;
        h.db_pages = t.last_db_pages;
        h.pre_cksum = t.last_post;
        h.post_cksum = t.last_post ^ 1;
        h.term = t.last_term; /* L10: terms never go back */
        page = malloc(h.page_size);
        if (!page)
            abort();
        memset(page, 0x5a, h.page_size);
        rc = txlog_append_begin(l, &h);
        if (rc == 0 && (size & 1)) /* even sizes: a size-only record, no pages */
            rc = txlog_append_page(l, 1, page);
        if (rc == 0)
            rc = txlog_append_end(l);
        free(page);
        if (rc != 0)
            FAIL("appending TXID %" PRIu64 " to the repaired log failed: %s", h.txid, lv_strerror(rc));
        txlog_close(l);
        rc = txlog_open(log_dir, dbid, 1 << 20, &l, &t2, err, sizeof err);
        if (rc != 0)
            FAIL("txlog_open after an append failed: %s: %s", lv_strerror(rc), err);
        if (t2.last_txid != h.txid || t2.torn_bytes != 0 || t2.last_post != h.post_cksum)
            FAIL("after appending TXID %" PRIu64 " the tail says %" PRIu64 " (torn %" PRIu64 ")", h.txid,
                 t2.last_txid, t2.torn_bytes);
    }
    txlog_close(l);
    return 0;
}
