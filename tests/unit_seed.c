/*
 * unit_seed.c -- the pieces of seeding below the restore engine: the log's
 * base file (log/txlog_base.c: a log that continues a history kept
 * elsewhere) and installing a seeded database (capture/db_seed.c), checked
 * by opening the registry on the result as the daemon does (dbreg_open:
 * db_load and reconcile) -- the database must load at the seeded TXID with
 * its ID and checksum, and write no record.
 *
 * The end-to-end path (archive -> `restore --seed` -> a daemon that keeps
 * writing) is tests/it_seed.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"
#include "capture/db.h"
#include "lib/lvtest.h"
#include "log/txlog.h"

static void sd_init(void)
{
    lvlog_threshold = -1;
}

TestSuite(seed, .init = sd_init, .fini = lvt_fini, .timeout = 60);

static const uint8_t SD_ID[16] = {0xa1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0x5e};
static const uint8_t SD_ID2[16] = {0xb2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0x5e};

static struct txlog_base sd_base(uint64_t txid)
{
    struct txlog_base b = {.txid = txid, .time_us = 1764000000123456ll, .page_size = 4096, .db_pages = 3,
                           .post_cksum = 0x1234567890abcdefull};
    memcpy(b.dbid, SD_ID, 16);
    return b;
}

/* Append one record of TXID txid, pre checksum pre, one page of byte v. */
static int sd_append(struct txlog *l, uint64_t txid, uint64_t pre, uint8_t v, uint64_t *post)
{
    static uint8_t page[4096];
    struct txlog_hdr h = {.txid = txid, .time_us = lv_now_us(), .page_size = 4096, .db_pages = 3,
                          .pre_cksum = pre, .post_cksum = pre ^ 0x55};
    int rc;

    memset(page, v, sizeof page);
    rc = txlog_append_begin(l, &h);
    if (rc)
        return rc;
    rc = txlog_append_page(l, 2, page);
    if (rc == 0)
        rc = txlog_append_end(l);
    if (post)
        *post = h.post_cksum;
    return rc;
}

static char *sd_dir(const char *tag, const char *sub, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", lvt_tmpdir(tag), sub);
    return buf;
}

/* The log continues after the base: tail, last TXID, the next record's
 * TXID and chain, and a reopen once it holds records. */
Test(seed, base_continues_log)
{
    struct txlog_base b = sd_base(41);
    struct txlog_tail tail;
    struct txlog *l = NULL;
    char dir[400], err[512] = "";
    uint64_t post = 0;

    sd_dir("base", "log", dir, sizeof dir);
    cr_assert_eq(txlog_base_create(dir, &b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(txlog_open(dir, SD_ID, 1 << 20, &l, &tail, err, sizeof err), 0, "%s", err);
    cr_assert_eq(tail.last_txid, 41);
    cr_assert_eq(tail.last_post, b.post_cksum);
    cr_assert_eq(tail.last_time_us, b.time_us);
    cr_assert_eq(tail.last_page_size, 4096);
    cr_assert_eq(tail.last_db_pages, 3);
    cr_assert_eq(tail.first_txid, 0, "no record is present");
    cr_assert_eq(tail.nsegments, 1, "the empty segment named 42");
    cr_assert_eq(txlog_last_txid(l), 41);
    /* the chain continues the base: not TXID 43, not another pre checksum, not TXID 1 */
    cr_assert_eq(sd_append(l, 43, b.post_cksum, 1, NULL), LV_EGAP);
    cr_assert_eq(sd_append(l, 42, b.post_cksum ^ 1, 1, NULL), LV_ECHAIN);
    cr_assert_eq(sd_append(l, 1, 0, 1, NULL), LV_EGAP);
    cr_assert_eq(sd_append(l, 42, b.post_cksum, 1, &post), 0);
    cr_assert_eq(txlog_last_txid(l), 42);
    cr_assert_eq(txlog_sync(l), 0);
    txlog_close(l);

    /* the record went into the segment named 42 (no new segment) */
    char seg[500];
    struct stat st;
    snprintf(seg, sizeof seg, "%s/000000000000002a.lvseg", dir);
    cr_assert_eq(stat(seg, &st), 0);
    cr_assert_gt(st.st_size, 64);

    /* reopened: the records carry the chain, the base is not consulted */
    cr_assert_eq(txlog_open(dir, SD_ID, 1 << 20, &l, &tail, err, sizeof err), 0, "%s", err);
    cr_assert_eq(tail.first_txid, 42);
    cr_assert_eq(tail.last_txid, 42);
    cr_assert_eq(tail.last_post, post);
    cr_assert_eq(sd_append(l, 43, post, 2, NULL), 0);
    txlog_close(l);

    /* readers see exactly the records after the base */
    struct txlog_reader *r = NULL;
    struct txlog_hdr h;
    cr_assert_eq(txlog_reader_open(dir, 0, &r), 0);
    cr_assert_eq(txlog_reader_next(r, &h), 0);
    cr_assert_eq(h.txid, 42);
    cr_assert_eq(h.pre_cksum, b.post_cksum);
    cr_assert_eq(txlog_reader_next(r, &h), 0);
    cr_assert_eq(h.txid, 43);
    cr_assert_eq(txlog_reader_next(r, &h), LV_ENOENT);
    txlog_reader_close(r);
}

/* A reader over a seeded log with no record yet finds nothing (not an error to open). */
Test(seed, base_reader_empty)
{
    struct txlog_base b = sd_base(7);
    struct txlog_reader *r = NULL;
    struct txlog_hdr h;
    char dir[400], err[512] = "";

    sd_dir("base", "log", dir, sizeof dir);
    cr_assert_eq(txlog_base_create(dir, &b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(txlog_reader_open(dir, 8, &r), 0);
    cr_assert_eq(txlog_reader_next(r, &h), LV_ENOENT);
    txlog_reader_close(r);
}

/* A damaged or foreign base file is corruption, never a silent restart. */
Test(seed, base_damaged)
{
    struct txlog_base b = sd_base(9);
    struct txlog_tail tail;
    struct txlog *l = NULL;
    char dir[400], path[500], err[512] = "";

    sd_dir("base", "log", dir, sizeof dir);
    cr_assert_eq(txlog_base_create(dir, &b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(txlog_open(dir, SD_ID2, 1 << 20, &l, &tail, err, sizeof err), LV_ECORRUPT,
                 "a log of another database");
    snprintf(path, sizeof path, "%s/base", dir);
    file_xor_byte(path, 40, 0x01); /* the commit time */
    err[0] = '\0';
    cr_assert_eq(txlog_open(dir, SD_ID, 1 << 20, &l, &tail, err, sizeof err), LV_ECORRUPT);
    cr_assert_not_null(strstr(err, "base"), "the message names the base file: %s", err);
    struct txlog_base got;
    cr_assert_eq(txlog_base_load(dir, SD_ID, &got, err, sizeof err), LV_ECORRUPT);
    file_xor_byte(path, 40, 0x01);
    cr_assert_eq(txlog_base_load(dir, SD_ID, &got, err, sizeof err), 0, "%s", err);
    cr_assert_eq(memcmp(&got, &b, sizeof b), 0);
    truncate(path, 71);
    cr_assert_eq(txlog_base_load(dir, SD_ID, &got, err, sizeof err), LV_ECORRUPT);
}

/* The base applies only to a log whose next record is its TXID + 1. */
Test(seed, base_other_segment_ignored)
{
    struct txlog_base b = sd_base(9), b2 = sd_base(14);
    struct txlog_tail tail;
    struct txlog *l = NULL;
    char root[300], a[400], c[400], from[500], to[500], err[512] = "";

    snprintf(root, sizeof root, "%s", lvt_tmpdir("base"));
    snprintf(a, sizeof a, "%s/a", root);
    snprintf(c, sizeof c, "%s/c", root);
    cr_assert_eq(txlog_base_create(a, &b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(txlog_base_create(c, &b2, err, sizeof err), 0, "%s", err);
    snprintf(from, sizeof from, "%s/000000000000000f.lvseg", c);
    snprintf(to, sizeof to, "%s/000000000000000f.lvseg", a);
    cr_assert_eq(rename(from, to), 0);
    snprintf(from, sizeof from, "%s/000000000000000a.lvseg", a);
    cr_assert_eq(unlink(from), 0);
    cr_assert_eq(txlog_open(a, SD_ID, 1 << 20, &l, &tail, err, sizeof err), 0, "%s", err);
    cr_assert_eq(tail.last_txid, 0, "an empty segment named 15 does not continue TXID 9");
    txlog_close(l);
    /* and a directory with segments is not made a base */
    cr_assert_eq(txlog_base_create(a, &b, err, sizeof err), LV_EEXIST);
}

/* ---- installing a seeded database ---- */

struct sd_db {
    char file[400];        /* the database file to install */
    struct cksum_map map;  /* its page checksums */
    uint64_t cksum;
    int64_t rows;
};

/* A real SQLite database (WAL header when wal) with some rows, and its checksums. */
static void sd_make_db(const char *dir, int wal, struct sd_db *d)
{
    sqlite3 *db = NULL;
    int fd;

    snprintf(d->file, sizeof d->file, "%s/src.db", dir);
    cr_assert_eq(sqlite3_open(d->file, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, wal ? "PRAGMA journal_mode=WAL" : "PRAGMA journal_mode=DELETE", NULL, NULL, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db,
                              "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
                              "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 300) "
                              "INSERT INTO t(v) SELECT randomblob(300) FROM c;",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    char extra[450];
    snprintf(extra, sizeof extra, "%s-wal", d->file);
    unlink(extra);
    snprintf(extra, sizeof extra, "%s-shm", d->file);
    unlink(extra);
    struct stat st;
    uint8_t h[100];
    fd = open(d->file, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq(pread(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    uint32_t ps = sqlite_hdr_page_size(h);
    cksum_map_init(&d->map);
    cr_assert_eq(cksum_map_scan_fd(&d->map, fd, ps, (uint32_t)(st.st_size / ps), d->file), 0);
    close(fd);
    d->cksum = d->map.total;
    cr_assert_eq(d->cksum, file_db_checksum(d->file));
    cr_assert_eq(h[18], wal ? 2 : 1);
}

static struct db_seed sd_seed(const char *name, uint64_t txid, const struct sd_db *d)
{
    struct db_seed s = {.name = name, .txid = txid, .time_us = 1764000000654321ll, .cksum = d->cksum,
                        .map = &d->map};
    memcpy(s.id, SD_ID, 16);
    return s;
}

/* The daemon's view of data_dir: open the registry (db_load and reconcile of
 * every database), copy database name's state, close it.  1 found, 0 not. */
static int sd_load(const char *data_dir, const char *name, struct db_info *out)
{
    struct dbreg *r = NULL;
    struct db_info *v = NULL;
    size_t n = 0;
    char err[512] = "";
    int found = 0;

    cr_assert_eq(dbreg_open(&(struct dbreg_opts){data_dir, 1 << 20, 0, 0}, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(dbreg_list(r, &v, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0) {
            *out = v[i];
            found = 1;
        }
    free(v);
    dbreg_close(r);
    return found;
}

/* Records in the log directory of name (none: a seeded database wrote none). */
static int sd_records(const char *data_dir, const char *name)
{
    char meta[4096], dir[4200];
    struct txlog_reader *r = NULL;
    struct txlog_hdr h;
    int n = 0;

    db_metadir_path(data_dir, name, meta, sizeof meta);
    snprintf(dir, sizeof dir, "%s/log", meta);
    if (txlog_reader_open(dir, 0, &r) != 0)
        return -1;
    while (txlog_reader_next(r, &h) == 0)
        n++;
    txlog_reader_close(r);
    return n;
}

/* An installed database loads at its TXID with its ID and checksum, and
 * start-up writes no record (no reconcile repair, no snapshot). */
static void install_loads(int wal)
{
    const char *root = lvt_tmpdir("seed");
    char data[400], stage[400], path[600], err[512] = "";
    struct sd_db d;
    struct db_info info;

    snprintf(data, sizeof data, "%s/data", root);
    snprintf(stage, sizeof stage, "%s/data/tmp/seed", root);
    sd_make_db(root, wal, &d);
    struct db_seed s = sd_seed("sub/dir/app.db", 1234, &d);
    cr_assert_eq(db_seed_install(data, &s, d.file, stage, err, sizeof err), 0, "%s", err);
    cr_assert_neq(access(d.file, F_OK), 0, "the file moved into place");
    snprintf(path, sizeof path, "%s/files/sub/dir/app.db", data);
    cr_assert_eq(file_db_checksum(path), d.cksum);
    cr_assert_eq(sd_records(data, "sub/dir/app.db"), 0);

    for (int round = 0; round < 2; round++) { /* and again after a clean stop (state saved by dbreg_close) */
        memset(&info, 0, sizeof info);
        cr_assert_eq(sd_load(data, "sub/dir/app.db", &info), 1);
        cr_assert_eq(info.broken, 0);
        cr_assert_eq(info.txid, 1234);
        cr_assert_eq(info.cksum, d.cksum);
        cr_assert_eq(info.saved_txid, 1234);
        cr_assert_eq(info.time_us, s.time_us);
        cr_assert_eq(info.db_pages, d.map.npages);
        cr_assert_eq(memcmp(info.id, SD_ID, 16), 0, "the archive's database ID");
        cr_assert_eq(sd_records(data, "sub/dir/app.db"), 0, "start-up wrote a record");
    }
    cr_assert_eq(file_db_checksum(path), d.cksum);
    cksum_map_free(&d.map);
}

Test(seed, install_loads_rollback)
{
    install_loads(0);
}

Test(seed, install_loads_wal)
{
    install_loads(1);
}

/* Never over an existing database; a stale metadata directory is retired;
 * inconsistent input is refused; nothing is left after a refusal. */
Test(seed, install_refusals)
{
    const char *root = lvt_tmpdir("seed");
    char data[400], stage[400], path[600], meta[4096], err[512] = "";
    struct sd_db d;
    struct stat st;

    snprintf(data, sizeof data, "%s/data", root);
    snprintf(stage, sizeof stage, "%s/stage", root);
    sd_make_db(root, 0, &d);

    /* files/NAME exists */
    snprintf(path, sizeof path, "%s/files/app.db", data);
    cr_assert_eq(sys_mkdir_p(path), 0);
    struct db_seed s = sd_seed("app.db", 5, &d);
    cr_assert_eq(db_seed_install(data, &s, d.file, stage, err, sizeof err), LV_EEXIST);
    cr_assert_not_null(strstr(err, "app.db"), "%s", err);
    cr_assert_eq(access(d.file, F_OK), 0, "the file stays where it was");
    db_metadir_path(data, "app.db", meta, sizeof meta);
    cr_assert_neq(stat(meta, &st), 0, "no metadata was installed");
    cr_assert_eq(rmdir(path), 0);

    /* checksums that do not describe the file */
    s.cksum ^= 1;
    cr_assert_eq(db_seed_install(data, &s, d.file, stage, err, sizeof err), LV_EINVAL);
    s.cksum ^= 1;
    d.map.npages++;
    cr_assert_eq(db_seed_install(data, &s, d.file, stage, err, sizeof err), LV_EINVAL, "size differs");
    d.map.npages--;
    s.txid = 0;
    cr_assert_eq(db_seed_install(data, &s, d.file, stage, err, sizeof err), LV_EINVAL);
    s.txid = 5;
    s.name = "../evil.db";
    cr_assert_eq(db_seed_install(data, &s, d.file, stage, err, sizeof err), LV_EINVAL);
    s.name = "app.db-wal";
    cr_assert_eq(db_seed_install(data, &s, d.file, stage, err, sizeof err), LV_EINVAL);
    s.name = "app.db";
    cr_assert_neq(stat(meta, &st), 0, "no metadata was installed");

    /* a stale metadata directory without a database is moved aside */
    char stale[4200];
    snprintf(stale, sizeof stale, "%s/junk", meta);
    cr_assert_eq(sys_mkdir_p(stale), 0);
    cr_assert_eq(db_seed_install(data, &s, d.file, stage, err, sizeof err), 0, "%s", err);
    cr_assert_neq(stat(stale, &st), 0, "the stale directory was replaced");
    snprintf(path, sizeof path, "%s/retired", data);
    char *ls = NULL;
    cr_assert_eq(run_cmd(&ls, "ls '%s'", path), 0);
    cr_assert_not_null(strstr(ls, "app.db.stale-"), "retired/: %s", ls);
    free(ls);
    struct db_info info;
    cr_assert_eq(sd_load(data, "app.db", &info), 1);
    cr_assert_eq(info.txid, 5);

    /* uninstall removes both */
    cr_assert_eq(db_seed_uninstall(data, "app.db"), 0);
    snprintf(path, sizeof path, "%s/files/app.db", data);
    cr_assert_neq(stat(path, &st), 0);
    cr_assert_neq(stat(meta, &st), 0);
    cksum_map_free(&d.map);
}

Test(seed, lock_and_dir_used)
{
    const char *root = lvt_tmpdir("seed");
    char data[400], path[600], what[256], err[512] = "";
    int a = -1, b = -1;

    snprintf(data, sizeof data, "%s/data", root);
    cr_assert_eq(db_seed_dir_used(data, what, sizeof what), 0, "no data.dir yet");
    cr_assert_eq(db_seed_lock(data, &a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(db_seed_lock(data, &b, err, sizeof err), LV_EBUSY);
    cr_assert_not_null(strstr(err, "lock"), "%s", err);
    close(a);
    cr_assert_eq(db_seed_lock(data, &b, err, sizeof err), 0, "%s", err);
    close(b);
    snprintf(path, sizeof path, "%s/files/empty/dirs", data);
    cr_assert_eq(sys_mkdir_p(path), 0);
    cr_assert_eq(db_seed_dir_used(data, what, sizeof what), 0, "empty directories hold nothing");
    snprintf(path, sizeof path, "%s/files/empty/x.db", data);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(db_seed_dir_used(data, what, sizeof what), 1);
    cr_assert_str_eq(what, "empty/x.db");
}
