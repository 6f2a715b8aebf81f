/*
 * unit_restore.c -- point-in-time restore, `archive verify` and
 * `archive ls` (restore/restore.c, restore/verify.c, restore/fetch.c,
 * restore/restore_cli.c, archive/current.c).
 *
 * Fixture (rebuilt in every test process): a real SQLite database (DELETE
 * journal mode, 4 KiB pages) takes RT_N transactions -- inserts, updates,
 * deletes (freelist pages), a few VACUUMs (the file shrinks), and from
 * TXID RT_WAL_FROM on WAL mode (checkpointed after every commit, so page 1
 * of the restored file says WAL: sqlite3 must still open it); after each
 * commit the file is diffed against the previous image and the changed
 * pages are appended as one record to a local txlog with the real writer
 * (pre/post = database checksums of the two images).  For every TXID the
 * test keeps the database checksum and an SQL summary (count, total).
 * The log is cut into archive objects with txlog_segment_image:
 *   level 0: 1-25, 26-50, ..., 276-300      level 1: 1-100, 101-200
 *   snapshots at TXIDs 120 and 260 (a one-record SNAPSHOT log each)
 * plus a manifest and current.json, stored with store_put under
 * "app.db/<id>/" of a file:// store (or of s3rver in the s3 suite).
 * Commit times: 1 ms apart, except that every 10th TXID repeats the
 * previous commit time (ties).
 *
 * Every restore is checked against the fixture: TXID reached, checksum in
 * the result, the database checksum of the output file computed by the
 * test helper, and (sampled) the SQL summary and integrity_check.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cksum.h"
#include "archive/current.h"
#include "restore/fetch.h"
#include "lib/lvtest.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "archive/manifest.h"
#include "restore/restore.h"
#include "store/store.h"
#include "base/sys.h"
#include "log/txlog.h"
#include "restore/verify.h"

#define RT_N 300
#define RT_PS 4096u
#define RT_T0 1764000000000000ll
#define RT_WAL_FROM 281 /* TXID that switches the database to journal_mode=WAL */
#define RT_DB "app.db"

/* The fixture of one test process. */
static struct {
    char dir[300];              /* temporary root (registry-owned, removed at lvt_fini) */
    char url[512];              /* store URL */
    char root[128];             /* file store root (file suite) */
    char bucket[64];            /* s3 bucket */
    uint8_t id[16];             /* database ID */
    char idhex[33];             /* as hex */
    uint64_t post[RT_N + 1];    /* database checksum after TXID x (post[0] = 0) */
    int64_t time[RT_N + 1];     /* commit time of TXID x */
    long long cnt[RT_N + 1];    /* SELECT count(*) FROM t after TXID x */
    double sum[RT_N + 1];       /* SELECT total(n) FROM t */
    uint8_t *img120, *img260;   /* database images at the snapshot TXIDs */
    uint32_t pages120, pages260;/* their sizes in pages */
    struct manifest m;          /* the manifest stored */
} F;

static int64_t rt_time(uint64_t x) { return RT_T0 + (int64_t)(x - x / 10) * 1000; }

static void rt_quiet(void) { lvlog_threshold = -1; }

static uint64_t img_cksum(const uint8_t *img, uint32_t pages)
{
    uint64_t c = 0;
    for (uint32_t p = 1; p <= pages; p++)
        c ^= cksum_page(p, img + (size_t)(p - 1) * RT_PS, RT_PS);
    return c;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    void *buf = NULL;
    int rc = sys_read_file(path, &buf, len);
    cr_assert_eq(rc, 0, "read %s: %s", path, lv_strerror(rc));
    return buf;
}

static void rt_sql(sqlite3 *db, const char *sql)
{
    char *e = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &e);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, e ? e : "?");
}

/* Build the SQLite history and the local log in F.dir/log. */
static void rt_generate(void)
{
    char path[128], logdir[128], sql[256], err[256];
    uint8_t *prev = NULL, *cur;
    size_t prev_len = 0, cur_len;
    struct txlog *l = NULL;
    struct txlog_tail tail;
    sqlite3 *db;
    sqlite3_stmt *st;
    int rc;

    for (int i = 0; i < 16; i++)
        F.id[i] = (uint8_t)(0x30 + i * 7);
    for (int i = 0; i < 16; i++)
        sprintf(F.idhex + 2 * i, "%02x", F.id[i]);
    snprintf(path, sizeof path, "%s/gen.db", F.dir);
    snprintf(logdir, sizeof logdir, "%s/log", F.dir);
    rc = txlog_open(logdir, F.id, 64 * 1024, &l, &tail, err, sizeof err);
    cr_assert_eq(rc, 0, "txlog_open: %s", err);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    rt_sql(db, "PRAGMA page_size=4096; PRAGMA journal_mode=DELETE; PRAGMA synchronous=OFF");
    srand(7);
    for (uint64_t x = 1; x <= RT_N; x++) {
        struct txlog_hdr h;
        uint32_t pages, prev_pages = (uint32_t)(prev_len / RT_PS);

        if (x == 1)
            rt_sql(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INT)");
        else if (x == RT_WAL_FROM)
            rt_sql(db, "PRAGMA journal_mode=WAL"); /* page 1 now says WAL: restored files must still open */
        else if (x % 97 == 0)
            rt_sql(db, "VACUUM");
        else if (x % 50 == 0)
            rt_sql(db, "DELETE FROM t WHERE id % 3 = 0");
        else if (x % 7 == 0) {
            snprintf(sql, sizeof sql, "UPDATE t SET n = n + %llu, v = v || 'u' WHERE id %% 5 = %llu",
                     (unsigned long long)x, (unsigned long long)(x % 5));
            rt_sql(db, sql);
        } else {
            snprintf(sql, sizeof sql,
                     "INSERT INTO t(v, n) SELECT printf('%%.*c', %d, 'a' + (value %% 26)), value * %llu FROM "
                     "json_each('[1,2,3,4,5,6,7,8]')", 100 + rand() % 600, (unsigned long long)x);
            rt_sql(db, sql);
        }
        cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*), total(n) FROM t", -1, &st, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
        F.cnt[x] = sqlite3_column_int64(st, 0);
        F.sum[x] = sqlite3_column_double(st, 1);
        sqlite3_finalize(st);
        if (x >= RT_WAL_FROM)
            rt_sql(db, "PRAGMA wal_checkpoint(TRUNCATE)"); /* the file alone holds the committed state */

        cur = read_file(path, &cur_len);
        cr_assert_eq(cur_len % RT_PS, 0);
        pages = (uint32_t)(cur_len / RT_PS);
        F.time[x] = rt_time(x);
        F.post[x] = img_cksum(cur, pages);
        memset(&h, 0, sizeof h);
        h.txid = x;
        h.time_us = F.time[x];
        h.page_size = RT_PS;
        h.db_pages = pages;
        h.pre_cksum = F.post[x - 1];
        h.post_cksum = F.post[x];
        cr_assert_eq(txlog_append_begin(l, &h), 0);
        for (uint32_t p = 1; p <= pages; p++) {
            const uint8_t *pg = cur + (size_t)(p - 1) * RT_PS;
            if (p > prev_pages || memcmp(pg, prev + (size_t)(p - 1) * RT_PS, RT_PS) != 0)
                cr_assert_eq(txlog_append_page(l, p, pg), 0);
        }
        cr_assert_eq(txlog_append_end(l), 0, "append TXID %llu", (unsigned long long)x);
        if (x == 120) {
            F.img120 = malloc(cur_len);
            memcpy(F.img120, cur, cur_len);
            F.pages120 = pages;
        }
        if (x == 260) {
            F.img260 = malloc(cur_len);
            memcpy(F.img260, cur, cur_len);
            F.pages260 = pages;
        }
        free(prev);
        prev = cur;
        prev_len = cur_len;
    }
    free(prev);
    sqlite3_close(db);
    cr_assert_eq(txlog_sync(l), 0);
    txlog_close(l);
}

/* A one-record SNAPSHOT segment image for TXID x from img. */
static void rt_snapshot_image(uint64_t x, const uint8_t *img, uint32_t pages, void **out, size_t *len)
{
    char dir[128], err[256];
    struct txlog *l = NULL;
    struct txlog_tail tail;
    struct txlog_hdr h;
    uint64_t last = 0;

    snprintf(dir, sizeof dir, "%s/snap%llu", F.dir, (unsigned long long)x);
    cr_assert_eq(txlog_open(dir, F.id, 64ull << 20, &l, &tail, err, sizeof err), 0, "%s", err);
    memset(&h, 0, sizeof h);
    h.txid = x;
    h.flags = TXLOG_F_SNAPSHOT;
    h.time_us = F.time[x];
    h.page_size = RT_PS;
    h.db_pages = pages;
    h.pre_cksum = F.post[x - 1];
    h.post_cksum = F.post[x];
    cr_assert_eq(txlog_append_begin(l, &h), 0);
    for (uint32_t p = 1; p <= pages; p++)
        cr_assert_eq(txlog_append_page(l, p, img + (size_t)(p - 1) * RT_PS), 0);
    cr_assert_eq(txlog_append_end(l), 0);
    txlog_close(l);
    cr_assert_eq(txlog_segment_image(dir, F.id, x, x, 0, out, len, &last), 0);
    cr_assert_eq(last, x);
}

static void rt_put(struct store *st, const char *rel, const void *buf, size_t len)
{
    char key[256];
    int rc;

    snprintf(key, sizeof key, "%s/%s/%s", RT_DB, F.idhex, rel);
    rc = store_put(st, key, buf, len);
    cr_assert_eq(rc, 0, "put %s: %s", key, lv_strerror(rc));
}

static void rt_add_seg(struct store *st, unsigned level, uint64_t first, uint64_t last_want)
{
    char logdir[128];
    struct manifest_seg s;
    void *img = NULL;
    size_t len = 0;
    uint64_t last = 0;

    snprintf(logdir, sizeof logdir, "%s/log", F.dir);
    cr_assert_eq(txlog_segment_image(logdir, F.id, first, last_want, 0, &img, &len, &last), 0);
    cr_assert_eq(last, last_want);
    memset(&s, 0, sizeof s);
    s.level = level;
    s.first_txid = first;
    s.last_txid = last;
    s.first_time_us = F.time[first];
    s.last_time_us = F.time[last];
    s.pre_cksum = F.post[first - 1];
    s.post_cksum = F.post[last];
    s.size = len;
    s.xxh3 = cksum_buf(img, len);
    cr_assert_eq(manifest_add_segment(&F.m, &s), 0);
    rt_put(st, manifest_seg_key(s.key, level, first, last), img, len);
    free(img);
}

static void rt_add_snap(struct store *st, uint64_t x, const uint8_t *img, uint32_t pages)
{
    struct manifest_snap s;
    void *obj = NULL;
    size_t len = 0;

    rt_snapshot_image(x, img, pages, &obj, &len);
    memset(&s, 0, sizeof s);
    s.txid = x;
    s.time_us = F.time[x];
    s.page_size = RT_PS;
    s.db_pages = pages;
    s.db_cksum = F.post[x];
    s.size = len;
    s.xxh3 = cksum_buf(obj, len);
    cr_assert_eq(manifest_add_snapshot(&F.m, &s), 0);
    rt_put(st, manifest_snap_key(s.key, x), obj, len);
    free(obj);
}

static void rt_put_manifest(struct store *st)
{
    char *js = NULL, err[256];
    size_t len = 0;

    F.m.generation++;
    cr_assert_eq(manifest_encode(&F.m, &js, &len, err, sizeof err), 0, "%s", err);
    rt_put(st, MANIFEST_OBJECT, js, len);
    free(js);
}

static void rt_put_current(struct store *st, const char *idhex)
{
    struct archive_current c = { ARCHIVE_CURRENT_FORMAT, "", lv_now_us() };
    char *js = NULL, *key = archive_current_key(RT_DB);
    size_t len = 0;

    memcpy(c.dbid, idhex, 33);
    cr_assert_eq(archive_current_encode(&c, &js, &len), 0);
    cr_assert_eq(store_put(st, key, js, len), 0);
    free(js);
    free(key);
}

static struct store *rt_open(void)
{
    struct store *st = NULL;
    char err[512];
    int rc = store_open(F.url, NULL, &st, err, sizeof err);
    cr_assert_eq(rc, 0, "store_open %s: %s", F.url, err);
    return st;
}

/* Generate and store the whole archive. */
static void rt_build(void)
{
    struct store *st;

    rt_generate();
    st = rt_open();
    cr_assert_eq(manifest_init(&F.m, RT_DB, F.idhex, RT_T0), 0);
    for (uint64_t f = 1; f <= RT_N; f += 25)
        rt_add_seg(st, 0, f, f + 24);
    rt_add_seg(st, 1, 1, 100);
    rt_add_seg(st, 1, 101, 200);
    rt_add_snap(st, 120, F.img120, F.pages120);
    rt_add_snap(st, 260, F.img260, F.pages260);
    rt_put_manifest(st);
    rt_put_current(st, F.idhex);
    store_close(st);
}

static void rt_mkdir(void)
{
    snprintf(F.dir, sizeof F.dir, "%s", lvt_tmpdir("restore"));
}

static void file_setup(void)
{
    rt_quiet();
    memset(&F, 0, sizeof F);
    rt_mkdir();
    snprintf(F.root, sizeof F.root, "%s/root", F.dir);
    snprintf(F.url, sizeof F.url, "file://%s", F.root);
    rt_build();
}

static void rt_cleanup(void)
{
    manifest_free(&F.m);
    free(F.img120);
    free(F.img260);
    lvt_fini(); /* the s3rver, F.dir (kept with LV_KEEP=1) */
}

static void s3_setup(void)
{
    rt_quiet();
    memset(&F, 0, sizeof F);
    rt_mkdir();
    snprintf(F.bucket, sizeof F.bucket, "lv-restore-%ld", (long)getpid());
    struct s3rver *srv = s3rver_start(F.bucket);
    setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    unsetenv("AWS_SESSION_TOKEN");
    s3rver_url(srv, "arch", F.url, sizeof F.url);
    rt_build();
}

TestSuite(restore, .init = file_setup, .fini = rt_cleanup, .timeout = 120);
TestSuite(restore_s3, .init = s3_setup, .fini = rt_cleanup, .timeout = 180);
TestSuite(restore_current, .init = rt_quiet, .timeout = 10);

/* ---------------------------------------------------------------- helpers */

static void rt_out(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", F.dir, name);
}

/* Restore to target t into a fresh out file; returns rc, fills res and err. */
static int rt_restore(struct plan_target t, int flags_partial, int icheck, struct restore_result *res, char *err,
                      size_t errlen, const char *out)
{
    struct restore_opts o;

    memset(&o, 0, sizeof o);
    o.url = F.url;
    o.db = RT_DB;
    o.target = t;
    o.out_path = out;
    o.parallel = 3;
    o.force = 1;
    o.allow_partial = flags_partial;
    o.no_integrity_check = !icheck;
    return restore_run(&o, res, err, errlen);
}

/* Assert out holds the database as of TXID x. */
static void rt_check_db(const char *out, uint64_t x, int sql)
{
    uint64_t c = file_db_checksum(out);

    cr_assert_eq(c, F.post[x], "%s: checksum %016" PRIx64 ", expected TXID %" PRIu64 "'s %016" PRIx64, out, c, x,
                 F.post[x]);
    if (sql) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        cr_assert_eq(sqlite3_open_v2(out, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*), total(n) FROM t", -1, &st, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
        cr_assert_eq(sqlite3_column_int64(st, 0), F.cnt[x], "TXID %" PRIu64 " row count", x);
        cr_assert_eq(sqlite3_column_double(st, 1), F.sum[x], "TXID %" PRIu64 " total(n)", x);
        sqlite3_finalize(st);
        cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
        sqlite3_finalize(st);
        sqlite3_close(db);
    }
}

static void rt_expect_ok(struct plan_target t, uint64_t x, int sql)
{
    struct restore_result res;
    char out[128], err[1024] = "";
    int rc;

    rt_out(out, sizeof out, "out.db");
    rc = rt_restore(t, 0, sql, &res, err, sizeof err, out);
    cr_assert_eq(rc, 0, "restore to TXID %" PRIu64 ": %s: %s", x, lv_strerror(rc), err);
    cr_assert_eq(res.txid, x, "reached TXID %" PRIu64 ", expected %" PRIu64, res.txid, x);
    cr_assert_eq(res.cksum, F.post[x]);
    cr_assert_eq(res.time_us, F.time[x]);
    cr_assert_eq(res.partial, 0);
    cr_assert_eq(access(out, F_OK), 0);
    {
        char tmp[160];
        snprintf(tmp, sizeof tmp, "%s.tmp", out);
        cr_assert_neq(access(tmp, F_OK), 0, "%s left behind", tmp);
    }
    rt_check_db(out, x, sql);
    restore_result_free(&res);
}

static struct plan_target T_TXID(uint64_t x) { return (struct plan_target){ PLAN_TXID, x, 0 }; }
static struct plan_target T_TIME(int64_t t) { return (struct plan_target){ PLAN_TIME, 0, t }; }
static struct plan_target T_LATEST(void) { return (struct plan_target){ PLAN_LATEST, 0, 0 }; }

/* Expected TXID for time t: the last commit at or before t. */
static uint64_t rt_at_time(int64_t t)
{
    uint64_t r = 0;
    for (uint64_t x = 1; x <= RT_N; x++)
        if (F.time[x] <= t)
            r = x;
    return r;
}

static char *rt_objpath(const char *rel)
{
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s/%s/%s", F.root, RT_DB, F.idhex, rel) > 0);
    return p;
}

/* Offset of record txid's stored payload in a segment object. */
static size_t rt_payload_off(const uint8_t *buf, size_t len, uint64_t txid, uint64_t *stored)
{
    size_t off = TXLOG_SEG_HDR_SIZE;

    while (off + TXLOG_HDR_SIZE <= len) {
        uint64_t x = lv_get64(buf + off + 24), s = lv_get64(buf + off + 72);
        if (x == txid) {
            *stored = s;
            return off + TXLOG_HDR_SIZE;
        }
        off += TXLOG_HDR_SIZE + s + TXLOG_TRAILER_SIZE;
    }
    cr_assert_fail("TXID %" PRIu64 " not found in the object", txid);
    return 0;
}

static void rt_flip_payload(const char *rel, uint64_t txid)
{
    char *p = rt_objpath(rel);
    size_t len;
    uint8_t *buf = read_file(p, &len);
    uint64_t stored = 0;
    size_t off = rt_payload_off(buf, len, txid, &stored);
    FILE *f;

    buf[off + stored / 2] ^= 0x10;
    f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
    free(buf);
    free(p);
}

static const char *K_SEG(unsigned level, uint64_t a, uint64_t b)
{
    static char k[4][MANIFEST_KEY_MAX];
    static int i;
    i = (i + 1) % 4;
    return manifest_seg_key(k[i], level, a, b);
}

static struct verify_result rt_verify(void)
{
    struct verify_result vr;
    char err[1024] = "";
    int rc = verify_lineage(F.url, NULL, RT_DB, NULL, 3, &vr, err, sizeof err);
    cr_assert_eq(rc, 0, "verify: %s: %s", lv_strerror(rc), err);
    return vr;
}

static int vr_names(const struct verify_result *vr, const char *rel)
{
    for (size_t i = 0; i < vr->nbad; i++)
        if (strstr(vr->bad[i].key, rel))
            return 1;
    return 0;
}

static const char *bin(void)
{
    const char *b = getenv("LITEVAULT");
    return b ? b : "./litevault";
}

/* ---------------------------------------------------------------- exactness */

/* Every TXID 1..N, each through whatever plan the planner picks (levels 0
 * and 1, snapshots 120 and 260), checksum-exact; SQL content sampled. */
static void check_every_txid(int step)
{
    for (uint64_t x = 1; x <= RT_N; x += (uint64_t)step)
        rt_expect_ok(T_TXID(x), x, x % 23 == 0 || x == 1);
    rt_expect_ok(T_TXID(RT_N), RT_N, 1);
    rt_expect_ok(T_LATEST(), RT_N, 1);
}

Test(restore, every_txid_exact)
{
    check_every_txid(1);
}

static void check_times(void)
{
    /* Exactly at commit times, between commits, on ties (every 10th TXID
     * shares its predecessor's time), inside segments (resolved while
     * applying) and at snapshot times. */
    uint64_t xs[] = { 1, 2, 9, 10, 11, 55, 99, 100, 101, 119, 120, 121, 150, 199, 200, 201, 230, 259, 260, 261, 299 };
    for (size_t i = 0; i < LV_ARRAY_LEN(xs); i++) {
        int64_t ts[] = { F.time[xs[i]], F.time[xs[i]] + 1, F.time[xs[i]] + 500, F.time[xs[i]] - 1 };
        for (size_t k = 0; k < LV_ARRAY_LEN(ts); k++) {
            uint64_t want = rt_at_time(ts[k]);
            if (want == 0)
                continue;
            rt_expect_ok(T_TIME(ts[k]), want, 0);
        }
    }
    rt_expect_ok(T_TIME(F.time[RT_N] + 86400000000ll), RT_N, 1); /* a day after the last commit: latest */
}

Test(restore, timestamps_exact)
{
    check_times();
}

Test(restore, time_before_first_commit_is_an_error)
{
    struct restore_result res;
    char out[128], err[1024] = "";

    rt_out(out, sizeof out, "early.db");
    cr_assert_eq(rt_restore(T_TIME(RT_T0 - 1), 0, 0, &res, err, sizeof err, out), LV_ENOENT);
    cr_assert(strstr(err, "before the first commit"), "%s", err);
    cr_assert_neq(access(out, F_OK), 0);
    cr_assert_eq(rt_restore(T_TXID(RT_N + 1), 0, 0, &res, err, sizeof err, out), LV_ENOENT);
    cr_assert(strstr(err, "beyond"), "%s", err);
}

Test(restore, dry_run_plans_without_downloading)
{
    struct restore_opts o;
    struct restore_result res;
    char err[512] = "", out[128];
    int rc;

    rt_out(out, sizeof out, "dry.db");
    memset(&o, 0, sizeof o);
    o.url = F.url;
    o.db = RT_DB;
    o.target = T_TXID(240);
    o.out_path = out;
    o.dry_run = 1;
    rc = restore_run(&o, &res, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    /* snapshot 120, L1 101-200, L0 201-225, L0 226-250 */
    cr_assert_eq(res.nobjs, 4);
    cr_assert(strstr(res.objs[0].key, "snap/0000000000000078.lvseg"), "%s", res.objs[0].key);
    cr_assert(strstr(res.objs[1].key, K_SEG(1, 101, 200)), "%s", res.objs[1].key);
    cr_assert(strstr(res.objs[3].key, K_SEG(0, 226, 250)), "%s", res.objs[3].key);
    cr_assert_eq(res.target_min, 240);
    cr_assert_eq(res.target_max, 240);
    cr_assert_eq(res.bytes_fetched, 0);
    cr_assert_eq(res.txid, 0);
    cr_assert_neq(access(out, F_OK), 0, "dry run created the output");
    restore_result_free(&res);

    /* A time inside a segment: a TXID range, resolved while applying. */
    o.target = T_TIME(F.time[233] + 10);
    cr_assert_eq(restore_run(&o, &res, err, sizeof err), 0, "%s", err);
    cr_assert(res.target_min < 233 && res.target_max > 233, "%llu..%llu", (unsigned long long)res.target_min,
              (unsigned long long)res.target_max);
    restore_result_free(&res);
}

/* ---------------------------------------------------------------- path rules */

Test(restore, existing_path_rules)
{
    struct restore_opts o;
    struct restore_result res;
    char out[128], wal[160], err[512] = "";
    FILE *f;

    rt_out(out, sizeof out, "exists.db");
    f = fopen(out, "w");
    fputs("precious", f);
    fclose(f);
    memset(&o, 0, sizeof o);
    o.url = F.url;
    o.db = RT_DB;
    o.target = T_LATEST();
    o.out_path = out;
    o.no_integrity_check = 1;
    cr_assert_eq(restore_run(&o, &res, err, sizeof err), LV_EEXIST);
    cr_assert(strstr(err, "--force"), "%s", err);
    cr_assert_eq(run_cmd(NULL, "grep -q precious '%s'", out), 0, "the existing file was touched");

    o.if_not_exists = 1;
    cr_assert_eq(restore_run(&o, &res, err, sizeof err), 0, "%s", err);
    cr_assert_eq(res.skipped, 1);
    cr_assert_eq(run_cmd(NULL, "grep -q precious '%s'", out), 0);

    /* An empty existing file is replaced without --force. */
    o.if_not_exists = 0;
    f = fopen(out, "w");
    fclose(f);
    cr_assert_eq(restore_run(&o, &res, err, sizeof err), 0, "%s", err);
    rt_check_db(out, RT_N, 0);
    restore_result_free(&res);

    /* A stale -wal next to PATH is refused, --force removes it. */
    unlink(out);
    snprintf(wal, sizeof wal, "%s-wal", out);
    f = fopen(wal, "w");
    fputs("stale", f);
    fclose(f);
    cr_assert_eq(restore_run(&o, &res, err, sizeof err), LV_EEXIST);
    cr_assert(strstr(err, "-wal"), "%s", err);
    o.force = 1;
    cr_assert_eq(restore_run(&o, &res, err, sizeof err), 0, "%s", err);
    cr_assert_neq(access(wal, F_OK), 0, "stale -wal not removed");
    rt_check_db(out, RT_N, 1);
    restore_result_free(&res);
}

Test(restore, unknown_database_and_empty_archive)
{
    struct restore_opts o;
    struct restore_result res;
    struct manifest em;
    struct store *st;
    char out[128], err[1024] = "", *js = NULL;
    size_t len;

    rt_out(out, sizeof out, "x.db");
    memset(&o, 0, sizeof o);
    o.url = F.url;
    o.db = "nope.db";
    o.out_path = out;
    cr_assert_eq(restore_run(&o, &res, err, sizeof err), LV_ENOENT);
    cr_assert(strstr(err, "nope.db") && strstr(err, F.root), "%s", err);

    /* A lineage whose manifest lists nothing. */
    st = rt_open();
    cr_assert_eq(manifest_init(&em, "empty.db", "00112233445566778899aabbccddeeff", RT_T0), 0);
    cr_assert_eq(manifest_encode(&em, &js, &len, err, sizeof err), 0);
    cr_assert_eq(store_put(st, "empty.db/00112233445566778899aabbccddeeff/manifest.json", js, len), 0);
    free(js);
    manifest_free(&em);
    store_close(st);
    o.db = "empty.db";
    cr_assert_eq(restore_run(&o, &res, err, sizeof err), LV_ENOENT);
    cr_assert(strstr(err, "empty.db") && strstr(err, "no segments or snapshots"), "%s", err);
    cr_assert_neq(access(out, F_OK), 0);
}

/* ---------------------------------------------------------------- lineages */

Test(restore, lineage_by_list_when_current_json_is_missing)
{
    struct restore_opts o;
    struct restore_result res;
    struct manifest old;
    struct manifest_seg s;
    struct store *st = rt_open();
    char out[128], err[1024] = "", *js = NULL, *ck;
    size_t len;
    void *img = NULL;
    char logdir[128];
    uint64_t last;

    /* An older lineage (last commit long before ours) with one segment. */
    snprintf(logdir, sizeof logdir, "%s/log", F.dir);
    cr_assert_eq(manifest_init(&old, RT_DB, "ffeeddccbbaa99887766554433221100", RT_T0 - 1000), 0);
    /* reuse the real segment bytes of TXIDs 1-25 under the old lineage: checksums hold, ID does not
     * matter for the listing choice */
    cr_assert_eq(txlog_segment_image(logdir, F.id, 1, 25, 0, &img, &len, &last), 0);
    memset(&s, 0, sizeof s);
    s.first_txid = 1;
    s.last_txid = 25;
    s.first_time_us = RT_T0 - 5000000;
    s.last_time_us = RT_T0 - 4000000;
    s.pre_cksum = 0;
    s.post_cksum = F.post[25];
    s.size = len;
    s.xxh3 = cksum_buf(img, len);
    cr_assert_eq(manifest_add_segment(&old, &s), 0);
    cr_assert_eq(manifest_encode(&old, &js, &len, err, sizeof err), 0, "%s", err);
    cr_assert_eq(store_put(st, RT_DB "/ffeeddccbbaa99887766554433221100/manifest.json", js, len), 0);
    free(js);
    free(img);
    manifest_free(&old);
    ck = archive_current_key(RT_DB);
    cr_assert_eq(store_delete(st, ck), 0);
    free(ck);
    store_close(st);

    rt_out(out, sizeof out, "listed.db");
    memset(&o, 0, sizeof o);
    o.url = F.url;
    o.db = RT_DB;
    o.target = T_TXID(77);
    o.out_path = out;
    cr_assert_eq(restore_run(&o, &res, err, sizeof err), 0, "%s", err);
    cr_assert_eq(res.lineage_listed, 1);
    cr_assert_str_eq(res.dbid, F.idhex);
    rt_check_db(out, 77, 1);
    restore_result_free(&res);

    /* --lineage picks the other one explicitly: its object carries another database ID. */
    o.lineage = "ffeeddccbbaa99887766554433221100";
    o.force = 1;
    cr_assert_neq(restore_run(&o, &res, err, sizeof err), 0);
    o.target = T_TXID(10);
    cr_assert_eq(restore_run(&o, &res, err, sizeof err), LV_ENOENT, "%s", err);
    cr_assert(strstr(err, "ffeeddccbbaa99887766554433221100"), "%s", err);
}

Test(restore_current, encode_decode_roundtrip_and_errors)
{
    struct archive_current c = { 1, "0123456789abcdef0123456789abcdef", 1764000000123456ll }, d;
    char *js = NULL, err[256];
    size_t len;

    cr_assert_eq(archive_current_encode(&c, &js, &len), 0);
    cr_assert_str_eq(js, "{\"dbid\":\"0123456789abcdef0123456789abcdef\",\"format\":1,"
                         "\"updated\":\"2025-11-24T16:00:00.123456Z\"}\n");
    cr_assert_eq(archive_current_decode(js, len, &d, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(d.dbid, c.dbid);
    cr_assert_eq(d.updated_us, c.updated_us);
    free(js);
    const char *v2 = "{\"format\":2,\"dbid\":\"x\",\"updated\":\"y\"}";
    cr_assert_eq(archive_current_decode(v2, strlen(v2), &d, err, sizeof err), LV_EVERSION);
    const char *bad = "{\"format\":1,\"dbid\":\"0123\",\"updated\":\"2025-11-24T16:00:00Z\"}";
    cr_assert_eq(archive_current_decode(bad, strlen(bad), &d, err, sizeof err), LV_ECORRUPT);
    cr_assert(strstr(err, "dbid"), "%s", err);
    const char *x = "{\"format\":1,\"dbid\":\"0123456789abcdef0123456789abcdef\",\"updated\":\"2025-11-24T16:00:00+01:00\","
                    "\"extra\":1}";
    cr_assert_eq(archive_current_decode(x, strlen(x), &d, err, sizeof err), LV_ECORRUPT);
    cr_assert(strstr(err, "extra"), "%s", err);
    cr_assert_eq(archive_current_decode("not json", 8, &d, err, sizeof err), LV_ECORRUPT);
    c.dbid[3] = 'X';
    cr_assert_eq(archive_current_encode(&c, &js, &len), LV_EINVAL);
}

/* deleted.json: the same shape as current.json with "deleted", and from
 * format 2 a "reason" ("deleted", "replaced" or "renamed"); format 1 (no reason) still
 * decodes, with reason ""; a current.json is not a deleted.json (its time
 * member is another), and the reverse. */
Test(restore_current, deleted_roundtrip_and_errors)
{
    struct archive_deleted t = {2, "0123456789abcdef0123456789abcdef", 1764000000123456ll, "renamed"}, u;
    struct archive_current c;
    char *js = NULL, *key = archive_deleted_key("sub/a.db"), err[256];
    size_t len;

    cr_assert_str_eq(key, "sub/a.db/deleted.json");
    free(key);
    cr_assert_eq(archive_deleted_encode(&t, &js, &len), 0);
    cr_assert_str_eq(js, "{\"dbid\":\"0123456789abcdef0123456789abcdef\",\"deleted\":\"2025-11-24T16:00:00.123456Z\","
                         "\"format\":2,\"reason\":\"renamed\"}\n");
    cr_assert_eq(archive_deleted_decode(js, len, &u, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(u.dbid, t.dbid);
    cr_assert_eq(u.deleted_us, t.deleted_us);
    cr_assert_str_eq(u.reason, "renamed");
    cr_assert_eq(archive_current_decode(js, len, &c, err, sizeof err), LV_EVERSION, "a format 2 current.json");
    free(js);
    snprintf(t.reason, sizeof t.reason, "lost");
    cr_assert_eq(archive_deleted_encode(&t, &js, &len), LV_EINVAL, "a reason other than deleted/renamed was encoded");
    const char *v1 = "{\"dbid\":\"0123456789abcdef0123456789abcdef\",\"deleted\":\"2025-11-24T16:00:00Z\",\"format\":1}";
    cr_assert_eq(archive_deleted_decode(v1, strlen(v1), &u, err, sizeof err), 0, "%s", err);
    cr_assert_eq(u.format, 1);
    cr_assert_str_eq(u.reason, "", "format 1 has no reason");
    cr_assert_eq(archive_current_decode(v1, strlen(v1), &c, err, sizeof err), LV_ECORRUPT);
    cr_assert(strstr(err, "current.json") && strstr(err, "deleted"), "%s", err);
    const char *v1r = "{\"dbid\":\"0123456789abcdef0123456789abcdef\",\"deleted\":\"2025-11-24T16:00:00Z\",\"format\":1,"
                      "\"reason\":\"deleted\"}";
    cr_assert_eq(archive_deleted_decode(v1r, strlen(v1r), &u, err, sizeof err), LV_ECORRUPT, "format 1 with a reason");
    const char *v2n = "{\"dbid\":\"0123456789abcdef0123456789abcdef\",\"deleted\":\"2025-11-24T16:00:00Z\",\"format\":2}";
    cr_assert_eq(archive_deleted_decode(v2n, strlen(v2n), &u, err, sizeof err), LV_ECORRUPT, "format 2 without reason");
    cr_assert(strstr(err, "reason"), "%s", err);
    const char *v2b = "{\"dbid\":\"0123456789abcdef0123456789abcdef\",\"deleted\":\"2025-11-24T16:00:00Z\",\"format\":2,"
                      "\"reason\":\"gone\"}";
    cr_assert_eq(archive_deleted_decode(v2b, strlen(v2b), &u, err, sizeof err), LV_EVERSION,
                 "an unknown reason (a newer litevault's)");
    const char *v2r = "{\"dbid\":\"0123456789abcdef0123456789abcdef\",\"deleted\":\"2025-11-24T16:00:00Z\",\"format\":2,"
                      "\"reason\":\"replaced\"}";
    cr_assert_eq(archive_deleted_decode(v2r, strlen(v2r), &u, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(u.reason, "replaced");
    const char *cur = "{\"dbid\":\"0123456789abcdef0123456789abcdef\",\"format\":1,\"updated\":\"2025-11-24T16:00:00Z\"}";
    cr_assert_eq(archive_deleted_decode(cur, strlen(cur), &u, err, sizeof err), LV_ECORRUPT);
    cr_assert(strstr(err, "deleted.json"), "%s", err);
    const char *v3 = "{\"format\":3,\"dbid\":\"x\",\"deleted\":\"y\"}";
    cr_assert_eq(archive_deleted_decode(v3, strlen(v3), &u, err, sizeof err), LV_EVERSION);
    cr_assert_eq(u.dbid[0], '\0');
}

/* ---------------------------------------------------------------- faults */

Test(restore, bit_flip_in_a_segment)
{
    struct restore_result res;
    struct verify_result vr;
    char out[128], err[1024] = "";
    const char *key = K_SEG(0, 226, 250);
    int rc;

    rt_flip_payload(key, 238);
    rt_out(out, sizeof out, "flip.db");
    rc = rt_restore(T_TXID(240), 0, 1, &res, err, sizeof err, out);
    cr_assert_neq(rc, 0);
    cr_assert(strstr(err, key), "error does not name the object: %s", err);
    cr_assert_neq(access(out, F_OK), 0, "partial output left");
    {
        char tmp[160];
        snprintf(tmp, sizeof tmp, "%s.tmp", out);
        cr_assert_neq(access(tmp, F_OK), 0, "PATH.tmp left");
    }
    /* --allow-partial: the records before the damaged one still verify. */
    rc = rt_restore(T_TXID(240), 1, 1, &res, err, sizeof err, out);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(res.partial, 1);
    cr_assert_eq(res.txid, 237, "reached %llu", (unsigned long long)res.txid);
    cr_assert(strstr(res.partial_msg, "237") && strstr(res.partial_msg, key), "%s", res.partial_msg);
    rt_check_db(out, 237, 1);
    restore_result_free(&res);
    /* Targets the damage does not touch still restore exactly. */
    rt_expect_ok(T_TXID(225), 225, 0);
    rt_expect_ok(T_TXID(RT_N), RT_N, 0); /* via snapshot 260 */

    vr = rt_verify();
    cr_assert_eq(vr.nbad, 1, "%zu bad", vr.nbad);
    cr_assert(vr_names(&vr, key));
    verify_result_free(&vr);
}

Test(restore, truncated_snapshot)
{
    struct restore_result res;
    struct verify_result vr;
    char out[128], err[1024] = "", *p = rt_objpath("snap/0000000000000104.lvseg");
    struct stat sb;
    int rc;

    cr_assert_eq(stat(p, &sb), 0);
    cr_assert_eq(truncate(p, sb.st_size / 2), 0);
    rt_out(out, sizeof out, "snap.db");
    rc = rt_restore(T_LATEST(), 0, 0, &res, err, sizeof err, out);
    cr_assert_neq(rc, 0);
    cr_assert(strstr(err, "snap/0000000000000104.lvseg"), "%s", err);
    cr_assert_neq(access(out, F_OK), 0);
    /* --allow-partial routes around the damaged snapshot (snapshot 120 + segments reach the target). */
    rc = rt_restore(T_LATEST(), 1, 1, &res, err, sizeof err, out);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(res.txid, RT_N);
    rt_check_db(out, RT_N, 1);
    restore_result_free(&res);
    /* Targets before it are unaffected. */
    rt_expect_ok(T_TXID(259), 259, 0);

    vr = rt_verify();
    cr_assert_eq(vr.nbad, 1);
    cr_assert(vr_names(&vr, "snap/0000000000000104.lvseg"));
    verify_result_free(&vr);
    free(p);
}

Test(restore, deleted_middle_segment)
{
    struct restore_result res;
    struct verify_result vr;
    char out[128], err[1024] = "", *p = rt_objpath(K_SEG(0, 201, 225));
    int rc;

    cr_assert_eq(unlink(p), 0);
    rt_out(out, sizeof out, "del.db");
    rc = rt_restore(T_TXID(240), 0, 0, &res, err, sizeof err, out);
    cr_assert_eq(rc, LV_ENOENT, "%s", lv_strerror(rc));
    cr_assert(strstr(err, K_SEG(0, 201, 225)) && strstr(err, "missing"), "%s", err);
    cr_assert_neq(access(out, F_OK), 0);
    rc = rt_restore(T_TXID(240), 1, 1, &res, err, sizeof err, out);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(res.partial, 1);
    cr_assert_eq(res.txid, 200); /* end of L1 101-200 after snapshot 120 */
    rt_check_db(out, 200, 1);
    restore_result_free(&res);

    vr = rt_verify();
    cr_assert_eq(vr.nbad, 1);
    cr_assert(vr_names(&vr, K_SEG(0, 201, 225)));
    verify_result_free(&vr);
    free(p);
}

Test(restore, corrupt_manifest)
{
    struct restore_result res;
    struct verify_result vr;
    char out[128], err[1024] = "", *p = rt_objpath(MANIFEST_OBJECT);
    size_t len;
    uint8_t *buf = read_file(p, &len);
    char *at = strstr((char *)buf, "\"generation\":");
    FILE *f;

    cr_assert_not_null(at);
    at[13] = at[13] == '7' ? '8' : '7'; /* change the generation: checksum no longer matches */
    f = fopen(p, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    free(buf);
    rt_out(out, sizeof out, "man.db");
    cr_assert_eq(rt_restore(T_LATEST(), 0, 0, &res, err, sizeof err, out), LV_ECORRUPT);
    cr_assert(strstr(err, "manifest.json") && strstr(err, "corrupt"), "%s", err);
    cr_assert_neq(access(out, F_OK), 0);

    vr = rt_verify();
    cr_assert_eq(vr.nbad, 1);
    cr_assert(vr_names(&vr, "manifest.json"));
    verify_result_free(&vr);
    free(p);
}

Test(restore, verify_clean_archive)
{
    struct verify_result vr = rt_verify();

    cr_assert_eq(vr.nbad, 0, "%s: %s", vr.nbad ? vr.bad[0].key : "", vr.nbad ? vr.bad[0].why : "");
    cr_assert_eq(vr.objects, 16);
    cr_assert_eq(vr.snapshots, 2);
    cr_assert_eq(vr.records, RT_N + 200 + 2); /* L0 all, L1 1-200, 2 snapshot records */
    cr_assert_eq(vr.last_txid, RT_N);
    cr_assert_str_eq(vr.dbid, F.idhex);
    verify_result_free(&vr);
}

/* A level-1 object whose records 1..100 chain internally and match the
 * manifest at its boundaries but disagree with level 0 at TXID 50. */
Test(restore, verify_finds_disagreeing_overlap)
{
    struct txlog_reader *r = NULL;
    struct txlog *l = NULL;
    struct txlog_tail tail;
    struct txlog_hdr h;
    struct verify_result vr;
    struct store *st;
    char logdir[128], dir2[128], err[256], *p;
    void *img = NULL;
    size_t len;
    uint64_t last;
    uint32_t pgno;
    const void *data;
    FILE *f;

    snprintf(logdir, sizeof logdir, "%s/log", F.dir);
    snprintf(dir2, sizeof dir2, "%s/log2", F.dir);
    cr_assert_eq(txlog_open(dir2, F.id, 64 * 1024, &l, &tail, err, sizeof err), 0, "%s", err);
    cr_assert_eq(txlog_reader_open(logdir, 1, &r), 0);
    while (txlog_reader_next(r, &h) == 0 && h.txid <= 100) {
        struct txlog_hdr w = h;
        if (w.txid == 50)
            w.post_cksum ^= 1;
        if (w.txid == 51)
            w.pre_cksum ^= 1;
        cr_assert_eq(txlog_append_begin(l, &w), 0);
        while (txlog_reader_page(r, &pgno, &data) == 0)
            cr_assert_eq(txlog_append_page(l, pgno, data), 0);
        cr_assert_eq(txlog_append_end(l), 0);
    }
    txlog_reader_close(r);
    txlog_close(l);
    cr_assert_eq(txlog_segment_image(dir2, F.id, 1, 100, 0, &img, &len, &last), 0);
    /* Replace the L1 object and its manifest entry (size/xxh3). */
    p = rt_objpath(K_SEG(1, 1, 100));
    f = fopen(p, "wb");
    fwrite(img, 1, len, f);
    fclose(f);
    free(p);
    {
        struct manifest_seg s = *manifest_find_segment(&F.m, K_SEG(1, 1, 100));
        cr_assert_eq(manifest_remove(&F.m, s.key), 0);
        s.size = len;
        s.xxh3 = cksum_buf(img, len);
        cr_assert_eq(manifest_add_segment(&F.m, &s), 0);
    }
    st = rt_open();
    rt_put_manifest(st);
    store_close(st);
    free(img);

    vr = rt_verify();
    cr_assert_geq(vr.nbad, 1);
    {
        int named = 0;
        for (size_t i = 0; i < vr.nbad; i++) {
            cr_assert(strstr(vr.bad[i].why, "TXID 50") || strstr(vr.bad[i].why, "TXID 51"), "%s: %s",
                      vr.bad[i].key, vr.bad[i].why);
            named |= strstr(vr.bad[i].key, K_SEG(1, 1, 100)) || strstr(vr.bad[i].why, K_SEG(1, 1, 100));
        }
        cr_assert(named, "the level-1 object is not named");
    }
    verify_result_free(&vr);
}

/* ---------------------------------------------------------------- the CLI */

Test(restore, cli_exit_codes_and_output)
{
    char out[128], *o = NULL;
    json_t *j;
    json_error_t je;
    int rc;

    rt_out(out, sizeof out, "cli.db");
    rc = lv_restore_cmd(F.url, RT_DB, "--txid 150", out);
    cr_assert_eq(rc, 0);
    rt_check_db(out, 150, 1);
    /* Existing non-empty PATH: refused with exit 1 and a hint. */
    rc = run_cmd(&o, "'%s' restore --from '%s' --db %s --txid 151 '%s' 2>&1", bin(), F.url, RT_DB, out);
    cr_assert_eq(rc, 1, "%s", o);
    cr_assert(strstr(o, "--force"), "%s", o);
    free(o);
    rt_check_db(out, 150, 0);
    /* --timestamp with an offset, --json. */
    rc = run_cmd(&o, "'%s' restore --from '%s' --db %s --timestamp 2025-11-24T17:00:00.150000+01:00 --force --json "
                 "-o '%s'", bin(), F.url, RT_DB, out);
    cr_assert_eq(rc, 0, "%s", o);
    j = json_loads(o, 0, &je);
    cr_assert_not_null(j, "not JSON: %s", o);
    {
        uint64_t want = rt_at_time(RT_T0 + 150000);
        cr_assert_eq((uint64_t)json_integer_value(json_object_get(j, "txid")), want);
        rt_check_db(out, want, 0);
    }
    cr_assert(json_is_array(json_object_get(j, "objects")));
    json_decref(j);
    free(o);
    /* Dry run in JSON: objects and bytes, nothing written. */
    rc = run_cmd(&o, "'%s' restore --from '%s' --db %s --txid 240 --dry-run --json", bin(), F.url, RT_DB);
    cr_assert_eq(rc, 0, "%s", o);
    j = json_loads(o, 0, &je);
    cr_assert_not_null(j, "not JSON: %s", o);
    cr_assert_eq(json_array_size(json_object_get(j, "objects")), 4);
    cr_assert_eq(json_integer_value(json_object_get(j, "txid")), 240);
    cr_assert(json_integer_value(json_object_get(j, "bytes")) > 0);
    json_decref(j);
    free(o);
    /* Usage errors: 2. */
    cr_assert_eq(run_cmd(NULL, "'%s' restore --from '%s' --db %s --txid 0 x 2>/dev/null", bin(), F.url, RT_DB), 2);
    cr_assert_eq(run_cmd(NULL, "'%s' restore --from '%s' --db %s --timestamp yesterday x 2>/dev/null", bin(), F.url,
                         RT_DB), 2);
    cr_assert_eq(run_cmd(NULL, "'%s' restore --db %s x 2>/dev/null", bin(), RT_DB), 2); /* no --from, no config */
    cr_assert_eq(run_cmd(NULL, "'%s' restore --help >/dev/null", bin()), 0);
    cr_assert_eq(run_cmd(NULL, "'%s' archive --help >/dev/null", bin()), 0);
    /* Unknown database: 1, naming it. */
    rc = run_cmd(&o, "'%s' restore --from '%s' --db other.db '%s/o.db' 2>&1", bin(), F.url, F.dir);
    cr_assert_eq(rc, 1, "%s", o);
    cr_assert(strstr(o, "other.db"), "%s", o);
    free(o);
    /* --if-db-not-exists: 0, untouched. */
    cr_assert_eq(run_cmd(NULL, "'%s' restore --from '%s' --db %s --if-db-not-exists '%s' >/dev/null", bin(), F.url,
                         RT_DB, out), 0);
    rt_check_db(out, rt_at_time(RT_T0 + 150000), 0);
}

Test(restore, cli_archive_ls_and_verify)
{
    char *o = NULL;
    json_t *j, *d, *l;
    json_error_t je;
    int rc;

    rc = run_cmd(&o, "'%s' archive ls --from '%s' --json", bin(), F.url);
    cr_assert_eq(rc, 0, "%s", o);
    j = json_loads(o, 0, &je);
    cr_assert_not_null(j, "%s", o);
    d = json_array_get(json_object_get(j, "databases"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(d, "name")), RT_DB);
    cr_assert_str_eq(json_string_value(json_object_get(d, "current")), F.idhex);
    l = json_array_get(json_object_get(d, "lineages"), 0);
    cr_assert_eq(json_integer_value(json_object_get(l, "first_txid")), 1);
    cr_assert_eq(json_integer_value(json_object_get(l, "last_txid")), RT_N);
    cr_assert_eq(json_integer_value(json_object_get(l, "snapshot_count")), 2);
    cr_assert_eq(json_is_true(json_object_get(l, "current")), 1);
    json_decref(j);
    free(o);
    rc = run_cmd(&o, "'%s' archive ls --from '%s' --db %s", bin(), F.url, RT_DB);
    cr_assert_eq(rc, 0, "%s", o);
    cr_assert(strstr(o, F.idhex) && strstr(o, "TXID 1..300"), "%s", o);
    free(o);
    cr_assert_eq(run_cmd(NULL, "'%s' archive ls --from '%s' --db nope.db 2>/dev/null", bin(), F.url), 1);

    rc = run_cmd(&o, "'%s' archive verify --from '%s' --db %s", bin(), F.url, RT_DB);
    cr_assert_eq(rc, 0, "%s", o);
    cr_assert(strstr(o, "ok"), "%s", o);
    free(o);
    rt_flip_payload(K_SEG(0, 51, 75), 60);
    rc = run_cmd(&o, "'%s' archive verify --from '%s' --db %s 2>&1", bin(), F.url, RT_DB);
    cr_assert_eq(rc, 1, "%s", o);
    cr_assert(strstr(o, K_SEG(0, 51, 75)), "%s", o);
    free(o);
    cr_assert_eq(run_cmd(NULL, "'%s' archive verify --from '%s' 2>/dev/null", bin(), F.url), 2);
}

/* ---------------------------------------------------------------- the same against S3 */

Test(restore_s3, every_7th_txid_exact)
{
    check_every_txid(7);
}

Test(restore_s3, timestamps_exact)
{
    check_times();
}

Test(restore_s3, verify_and_cli)
{
    struct verify_result vr = rt_verify();
    char out[128];

    cr_assert_eq(vr.nbad, 0, "%s: %s", vr.nbad ? vr.bad[0].key : "", vr.nbad ? vr.bad[0].why : "");
    cr_assert_eq(vr.objects, 16);
    verify_result_free(&vr);
    rt_out(out, sizeof out, "s3cli.db");
    cr_assert_eq(lv_restore_cmd(F.url, RT_DB, "--txid 123", out), 0);
    rt_check_db(out, 123, 1);
}

Test(restore_s3, missing_object_and_unknown_db)
{
    struct restore_result res;
    struct store *st = rt_open();
    char out[128], err[1024] = "", key[256];
    int rc;

    snprintf(key, sizeof key, "%s/%s/%s", RT_DB, F.idhex, K_SEG(0, 276, 300));
    cr_assert_eq(store_delete(st, key), 0);
    store_close(st);
    rt_out(out, sizeof out, "s3miss.db");
    rc = rt_restore(T_LATEST(), 0, 0, &res, err, sizeof err, out);
    cr_assert_eq(rc, LV_ENOENT);
    cr_assert(strstr(err, K_SEG(0, 276, 300)), "%s", err);
    rc = rt_restore(T_LATEST(), 1, 1, &res, err, sizeof err, out);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(res.txid, 275);
    rt_check_db(out, 275, 1);
    restore_result_free(&res);
    {
        struct restore_opts o;
        memset(&o, 0, sizeof o);
        o.url = F.url;
        o.db = "nope.db";
        o.out_path = out;
        o.force = 1;
        cr_assert_eq(restore_run(&o, &res, err, sizeof err), LV_ENOENT);
        cr_assert(strstr(err, "nope.db") && strstr(err, F.bucket), "%s", err);
    }
}

/* A gap in the manifest itself (segment 201-225 retired without a
 * replacement): plan error naming the TXIDs; --allow-partial plans up to 200. */
Test(restore, manifest_gap)
{
    struct restore_result res;
    struct store *st = rt_open();
    char out[128], err[1024] = "";
    int rc;

    cr_assert_eq(manifest_remove(&F.m, K_SEG(0, 201, 225)), 0);
    rt_put_manifest(st);
    store_close(st);
    rt_out(out, sizeof out, "gap.db");
    rc = rt_restore(T_TXID(240), 0, 0, &res, err, sizeof err, out);
    cr_assert_eq(rc, LV_EGAP, "%s", lv_strerror(rc));
    cr_assert(strstr(err, "201..225"), "%s", err);
    cr_assert_neq(access(out, F_OK), 0);
    rc = rt_restore(T_TXID(240), 1, 1, &res, err, sizeof err, out);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(res.partial, 1);
    cr_assert_eq(res.txid, 200);
    cr_assert(strstr(res.partial_msg, "201..225"), "%s", res.partial_msg);
    rt_check_db(out, 200, 1);
    restore_result_free(&res);
    /* Beyond the gap, snapshot 260 makes TXIDs 260..300 restorable again. */
    rt_expect_ok(T_TXID(270), 270, 0);
}

/* The fetcher: in-order results under a one-object window and a 1-byte
 * budget (objects admitted one at a time, no deadlock), size/XXH3
 * mismatches reported with the bytes kept, missing objects. */
Test(restore, fetch_window_and_checks)
{
    struct store *st = rt_open();
    struct fetch_obj objs[20];
    char keys[20][256];
    struct fetch *f = NULL;
    size_t n = 0;

    for (size_t i = 0; i < F.m.nsegs && n < 16; i++, n++) {
        snprintf(keys[n], sizeof keys[n], "%s/%s/%s", RT_DB, F.idhex, F.m.segs[i].key);
        objs[n] = (struct fetch_obj){ keys[n], F.m.segs[i].size, F.m.segs[i].xxh3 };
    }
    objs[3].xxh3 ^= 1;                     /* wrong checksum */
    objs[5].size += 1;                     /* wrong size */
    snprintf(keys[n], sizeof keys[n], "%s/%s/seg/0/nope.lvseg", RT_DB, F.idhex);
    objs[n] = (struct fetch_obj){ keys[n], 100, 0 };
    n++;
    for (int round = 0; round < 2; round++) {
        cr_assert_eq(fetch_start(st, objs, n, 3, round ? 0 : 1, round ? 0 : 1, &f), 0);
        for (size_t i = 0; i < n; i++) {
            struct fetch_res fr;
            cr_assert_eq(fetch_wait(f, i, -1, &fr), 1);
            cr_assert_str_eq(fr.key, objs[i].key);
            if (i == 3 || i == 5) {
                cr_assert_eq(fr.rc, LV_EMISMATCH, "object %zu: %s", i, fr.err);
                cr_assert_not_null(fr.buf);
                cr_assert(strstr(fr.err, objs[i].key), "%s", fr.err);
            } else if (i == n - 1) {
                cr_assert_eq(fr.rc, LV_ENOENT);
                cr_assert(strstr(fr.err, "missing"), "%s", fr.err);
            } else {
                cr_assert_eq(fr.rc, 0, "object %zu: %s", i, fr.err);
                cr_assert_eq(fr.len, objs[i].size);
                cr_assert_eq(cksum_buf(fr.buf, fr.len), objs[i].xxh3);
            }
            fetch_release(f, i);
        }
        fetch_stop(f);
    }
    /* Stopping early with downloads in flight is clean. */
    cr_assert_eq(fetch_start(st, objs, n, 4, 0, 0, &f), 0);
    fetch_stop(f);
    store_close(st);
}

/* The manifest lags behind the stored level-0 segments (the archiver rewrites it only every
 * manifest-interval): restore, dry run and verify find the tail with one LIST, exact to the
 * last TXID; a damaged or missing tail object stops it, named, or --allow-partial stops before. */
static void rt_cut_manifest_at_250(void)
{
    struct store *st = rt_open();
    cr_assert_eq(manifest_remove(&F.m, K_SEG(0, 251, 275)), 0);
    cr_assert_eq(manifest_remove(&F.m, K_SEG(0, 276, 300)), 0);
    cr_assert_eq(manifest_remove(&F.m, "snap/0000000000000104.lvseg"), 0); /* snapshot at TXID 260 */
    cr_assert_eq(manifest_last_txid(&F.m), 250);
    rt_put_manifest(st);
    store_close(st);
}

Test(restore, tail_after_a_lagging_manifest)
{
    struct restore_result res;
    struct restore_opts o;
    struct verify_result vr;
    char err[1024] = "";
    int rc;

    rt_cut_manifest_at_250();
    rt_expect_ok(T_LATEST(), 300, 1);
    rt_expect_ok(T_TXID(251), 251, 0);
    rt_expect_ok(T_TXID(288), 288, 0);
    rt_expect_ok(T_TIME(F.time[270]), rt_at_time(F.time[270]), 0);
    memset(&o, 0, sizeof o);
    o.url = F.url;
    o.db = RT_DB;
    o.target = T_LATEST();
    o.dry_run = 1;
    rc = restore_run(&o, &res, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(res.tail_objects, 2);
    cr_assert_eq(res.manifest_txid, 250);
    cr_assert_eq(res.target_max, 300);
    cr_assert_geq(res.nobjs, 2);
    cr_assert(res.objs[res.nobjs - 1].tail && res.objs[res.nobjs - 2].tail, "tail objects not marked");
    cr_assert(strstr(res.objs[res.nobjs - 1].key, K_SEG(0, 276, 300)));
    cr_assert_eq(res.objs[res.nobjs - 3].tail, 0);
    restore_result_free(&res);
    vr = rt_verify();
    cr_assert_eq(vr.nbad, 0, "%s: %s", vr.nbad ? vr.bad[0].key : "", vr.nbad ? vr.bad[0].why : "");
    cr_assert_eq(vr.tail, 2);
    cr_assert_eq(vr.last_txid, 300);
    verify_result_free(&vr);
}

Test(restore, tail_damaged_or_missing)
{
    struct restore_result res;
    struct verify_result vr;
    char out[128], err[1024] = "", *p = rt_objpath(K_SEG(0, 251, 275));
    int rc;

    rt_cut_manifest_at_250();
    rt_flip_payload(K_SEG(0, 251, 275), 263);
    rt_out(out, sizeof out, "tail.db");
    rc = rt_restore(T_LATEST(), 0, 0, &res, err, sizeof err, out);
    cr_assert_neq(rc, 0, "a damaged tail restored");
    cr_assert(strstr(err, K_SEG(0, 251, 275)), "%s", err);
    cr_assert_neq(access(out, F_OK), 0);
    rc = rt_restore(T_TXID(280), 0, 0, &res, err, sizeof err, out);
    cr_assert_neq(rc, 0, "a TXID beyond the damage restored");
    rc = rt_restore(T_LATEST(), 1, 1, &res, err, sizeof err, out);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(res.partial, 1);
    cr_assert_eq(res.txid, 250);
    cr_assert(strstr(res.partial_msg, K_SEG(0, 251, 275)), "%s", res.partial_msg);
    rt_check_db(out, 250, 1);
    restore_result_free(&res);
    rt_expect_ok(T_TXID(250), 250, 0); /* before the damage: no flag needed */
    vr = rt_verify();
    cr_assert_geq(vr.nbad, 1);
    cr_assert(vr_names(&vr, K_SEG(0, 251, 275)));
    verify_result_free(&vr);

    /* Missing: a gap between the manifest and the next tail object. */
    cr_assert_eq(unlink(p), 0);
    rc = rt_restore(T_LATEST(), 0, 0, &res, err, sizeof err, out);
    cr_assert_eq(rc, LV_EGAP, "%s", lv_strerror(rc));
    cr_assert(strstr(err, "251..275") && strstr(err, K_SEG(0, 276, 300)), "%s", err);
    rc = rt_restore(T_LATEST(), 1, 1, &res, err, sizeof err, out);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(res.partial, 1);
    cr_assert_eq(res.txid, 250);
    rt_check_db(out, 250, 1);
    restore_result_free(&res);
    vr = rt_verify();
    cr_assert_eq(vr.nbad, 1);
    cr_assert(vr_names(&vr, K_SEG(0, 276, 300)));
    verify_result_free(&vr);
    free(p);
}
