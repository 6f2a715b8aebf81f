/*
 * it_archive.c -- the archiver in a real daemon (archive/archiver.c), against
 * file:// and against s3rver.
 *
 * The oracle is the daemon's own local log: every archive check downloads
 * the manifest and every object it names, verifies sizes and XXH3, decodes
 * every record (txlog_reader_open_mem, all pages and payload checksums),
 * checks that the records chain (TXIDs and pre/post checksums) from the
 * lineage start to the last TXID, then rebuilds the database from the
 * archive alone (a plan from restore/plan.c, the planned objects' records
 * concatenated into one segment file, txlog_replay) and compares it byte for
 * byte with `litevault log replay` to the same TXID.  Request counts come
 * from /metrics.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>

#include "helpers.h"
#include "lv.h"
#include "lvlog.h"
#include "manifest.h"
#include "plan.h"
#include "store.h"
#include "txlog.h"

#define S3SH "tests/s3rver.sh"

static struct {
    struct lvnode n[2];  /* daemons under test */
    int used[2];
    char dir[64];        /* scratch: s3rver data, archive root, replays */
    int s3;              /* s3rver running */
    int port;            /* its port */
    char url[512];       /* destination URL as the daemon gets it */
    char yaml[2048];     /* archive: section */
} A;

static void a_fini(void)
{
    for (int i = 0; i < 2; i++)
        if (A.used[i]) {
            lvnode_kill9(&A.n[i]);
            lvnode_cleanup(&A.n[i]);
        }
    if (A.s3)
        run_cmd(NULL, S3SH " stop %s", A.dir);
    if (A.dir[0] && !getenv("LV_KEEP"))
        run_cmd(NULL, "rm -rf '%s'", A.dir);
    memset(&A, 0, sizeof A);
}

static void a_init(void)
{
    lvlog_threshold = -1;
    strcpy(A.dir, "/tmp/h-arch-it-XXXXXX");
    cr_assert_not_null(mkdtemp(A.dir));
}

TestSuite(archive, .init = a_init, .fini = a_fini, .timeout = 120);

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void s3_start(void)
{
    cr_assert_eq(run_cmd(NULL, S3SH " start %s/s3 %d lvarch", A.dir, A.port), 0, "s3rver did not start");
    A.s3 = 1;
}

/* Choose the destination: s3 = 0 file://, 1 s3rver.  extra: more keys of the destination. */
static void dest(int s3, const char *extra)
{
    if (s3) {
        A.port = free_port();
        s3_start();
        snprintf(A.url, sizeof A.url,
                 "s3://lvarch/pre?endpoint=http://127.0.0.1:%d&region=us-east-1&force-path-style=true", A.port);
        snprintf(A.yaml, sizeof A.yaml,
                 "archive:\n  - url: \"%s\"\n    access-key-id: S3RVER\n    secret-access-key: S3RVER\n%s", A.url,
                 extra ? extra : "");
    } else {
        snprintf(A.url, sizeof A.url, "file://%s/archive", A.dir);
        snprintf(A.yaml, sizeof A.yaml, "archive:\n  - url: %s\n%s", A.url, extra ? extra : "");
    }
}

static struct store *open_dest(void)
{
    struct store_opts o = {0};
    struct store *s = NULL;
    char err[512];
    o.force_path_style = -1;
    o.access_key = "S3RVER";
    o.secret_key = "S3RVER";
    o.retry_base_ms = 50;
    o.retry_max_ms = 200;
    int rc = store_open(A.url, &o, &s, err, sizeof err);
    cr_assert_eq(rc, 0, "store_open %s: %s", A.url, err);
    return s;
}

/* Start daemon i with the archive section; data_keys: more keys of the data: section ("  k: v\n"...). */
static struct lvnode *node(int i, const char *data_keys)
{
    lvnode_init(&A.n[i], A.yaml);
    A.used[i] = 1;
    if (data_keys) {
        /* the harness writes "data:\n  dir: ...\n": add the keys after that line */
        cr_assert_eq(run_cmd(NULL, "awk -v k='%s' '{print} /^data:/{d=1;next} d==1{printf \"%%s\", k; d=0}' '%s' > '%s.new' && "
                                   "mv '%s.new' '%s'", data_keys, A.n[i].config, A.n[i].config, A.n[i].config,
                             A.n[i].config), 0);
    }
    lvnode_start(&A.n[i]);
    return &A.n[i];
}

/* Value of the metric line starting with `series ` (exact series text), or -1. */
static double metric(const struct lvnode *n, const char *series)
{
    char *out = NULL;
    double v = -1;
    if (run_cmd(&out, "curl -s -f 'http://%s/metrics'", n->http) == 0 && out) {
        size_t l = strlen(series);
        for (char *p = out; p && *p;) {
            if (strncmp(p, series, l) == 0 && p[l] == ' ') {
                v = strtod(p + l + 1, NULL);
                break;
            }
            p = strchr(p, '\n');
            if (p)
                p++;
        }
    }
    free(out);
    return v;
}

static double confirmed(const struct lvnode *n, const char *db)
{
    char s[256];
    snprintf(s, sizeof s, "litevault_archive_confirmed_txid{dest=\"0\",db=\"%s\"}", db);
    return metric(n, s);
}

static double requests(const struct lvnode *n, const char *type)
{
    char s[256];
    snprintf(s, sizeof s, "litevault_archive_requests_total{dest=\"0\",type=\"%s\"}", type);
    return metric(n, s);
}

/* Wait (<= secs) until the archive confirmed the node's last TXID of db; returns it. */
static uint64_t wait_confirmed(const struct lvnode *n, const char *db, int secs)
{
    uint64_t last = lvnode_last_txid(n, db);
    double c = -1;
    for (int i = 0; i < secs * 10; i++) {
        c = confirmed(n, db);
        if (c >= (double)last && last > 0)
            return last;
        sleep_ms(100);
    }
    cr_assert_fail("archive did not confirm TXID %llu of %s in %d s (confirmed %.0f)", (unsigned long long)last, db,
                   secs, c);
    return 0;
}

/* Commit `count` one-row transactions into db on the node, sleeping ms between them. */
static void write_rows(const struct lvnode *n, const char *db, int count, int ms, int wal)
{
    char *p = lvnode_path(n, db);
    sqlite3 *h = NULL;
    cr_assert_eq(sqlite3_open(p, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    sqlite3_exec(h, wal ? "PRAGMA journal_mode=WAL" : "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
    cr_assert_eq(sqlite3_exec(h, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)", NULL, NULL, NULL),
                 SQLITE_OK);
    for (int i = 0; i < count; i++) {
        cr_assert_eq(sqlite3_exec(h, "INSERT INTO t(v) VALUES(randomblob(700 + abs(random()) % 3000))", NULL, NULL,
                                  NULL),
                     SQLITE_OK, "insert: %s", sqlite3_errmsg(h));
        if (ms)
            sleep_ms(ms);
    }
    sqlite3_close(h);
    free(p);
}

/* Lineage directory named by <db>/current.json. */
static void current_lineage(struct store *s, const char *db, char *out, size_t n)
{
    char key[256];
    void *buf = NULL;
    size_t len = 0;
    snprintf(key, sizeof key, "%s/current.json", db);
    cr_assert_eq(store_get(s, key, 0, 0, &buf, &len), 0, "no %s", key);
    json_t *o = json_loadb(buf, len, 0, NULL);
    cr_assert_not_null(o, "bad %s", key);
    cr_assert_eq(json_integer_value(json_object_get(o, "format")), 1);
    cr_assert_not_null(json_string_value(json_object_get(o, "updated")));
    snprintf(out, n, "%s", json_string_value(json_object_get(o, "dbid")));
    json_decref(o);
    free(buf);
}

static void get_manifest(struct store *s, const char *db, const char *lineage, struct manifest *m)
{
    char key[256], err[256] = "";
    void *buf = NULL;
    size_t len = 0;
    snprintf(key, sizeof key, "%s/%s/manifest.json", db, lineage);
    cr_assert_eq(store_get(s, key, 0, 0, &buf, &len), 0, "no %s", key);
    cr_assert_eq(manifest_decode(buf, len, m, err, sizeof err), 0, "%s: %s", key, err);
    cr_assert_eq(manifest_check(m, err, sizeof err), 0, "%s: %s", key, err);
    free(buf);
}

/* Download one manifest object, check size/xxh3; caller frees. */
static void *fetch(struct store *s, const char *db, const char *lineage, const char *key, uint64_t size,
                   uint64_t xxh, size_t *len)
{
    char k[256];
    void *buf = NULL;
    snprintf(k, sizeof k, "%s/%s/%s", db, lineage, key);
    cr_assert_eq(store_get(s, k, 0, 0, &buf, len), 0, "missing object %s", k);
    cr_assert_eq(*len, size, "%s: size %zu, manifest says %llu", k, *len, (unsigned long long)size);
    cr_assert_eq(XXH3_64bits(buf, *len), xxh, "%s: xxh3 differs from the manifest", k);
    return buf;
}

/* Decode every record of an object (all pages); check TXID range and that it chains internally. */
static void decode_object(const void *buf, size_t len, const char *name, uint64_t first, uint64_t last,
                          uint64_t pre, uint64_t post)
{
    struct txlog_reader *r = NULL;
    struct txlog_hdr h;
    uint64_t expect = first, prev_post = pre;
    int rc;
    cr_assert_eq(txlog_reader_open_mem(buf, len, name, &r), 0, "%s: not a segment image", name);
    while ((rc = txlog_reader_next(r, &h)) == 0) {
        uint32_t pg;
        const void *data;
        cr_assert_eq(h.txid, expect, "%s: TXID %llu, expected %llu", name, (unsigned long long)h.txid,
                     (unsigned long long)expect);
        if (!(h.flags & TXLOG_F_SNAPSHOT))
            cr_assert_eq(h.pre_cksum, prev_post, "%s: chain break at TXID %llu", name, (unsigned long long)h.txid);
        while ((rc = txlog_reader_page(r, &pg, &data)) == 0)
            ;
        cr_assert_eq(rc, LV_ENOENT, "%s: TXID %llu: pages do not decode", name, (unsigned long long)h.txid);
        prev_post = h.post_cksum;
        expect++;
    }
    cr_assert_eq(rc, LV_ENOENT, "%s: bad record", name);
    cr_assert_eq(expect - 1, last, "%s: ends at %llu, manifest says %llu", name, (unsigned long long)(expect - 1),
                 (unsigned long long)last);
    cr_assert_eq(prev_post, post, "%s: post checksum differs from the manifest", name);
    txlog_reader_close(r);
}

/* Append to out the records of image buf with TXID in (after, upto]; returns the last TXID appended. */
static uint64_t take_records(FILE *out, const uint8_t *buf, size_t len, uint64_t after, uint64_t upto)
{
    size_t off = TXLOG_SEG_HDR_SIZE;
    uint64_t last = after;
    while (off + TXLOG_HDR_SIZE <= len) {
        struct txlog_hdr h;
        cr_assert_eq(txlog_hdr_decode(buf + off, &h), 0);
        size_t rl = TXLOG_HDR_SIZE + (size_t)h.stored_len + TXLOG_TRAILER_SIZE;
        if (h.txid > after && h.txid <= upto) {
            cr_assert_eq(h.txid, last + 1, "gap in the planned objects at TXID %llu", (unsigned long long)last + 1);
            cr_assert_eq(fwrite(buf + off, 1, rl, out), rl);
            last = h.txid;
        }
        off += rl;
    }
    return last;
}

/* Restore db from the archive as of txid (0 = latest) into path, through a plan; returns the TXID reached. */
static uint64_t restore_from_archive(struct store *s, const char *db, const char *lineage, const struct manifest *m,
                                     uint64_t txid, const char *path)
{
    struct plan p;
    struct plan_target t = {.kind = txid ? PLAN_TXID : PLAN_LATEST, .txid = txid};
    char dir[512], seg[600], err[512] = "";
    int rc = plan_make(m, &t, 0, &p);
    cr_assert_eq(rc, 0, "plan %s txid %llu: %s", db, (unsigned long long)txid, p.msg);
    snprintf(dir, sizeof dir, "%s/restore-XXXXXX", A.dir);
    cr_assert_not_null(mkdtemp(dir));
    uint64_t first = p.snap ? p.snap->txid : 1, done = 0;
    snprintf(seg, sizeof seg, "%s/%016" PRIx64 ".lvseg", dir, first);
    FILE *f = fopen(seg, "w");
    cr_assert_not_null(f);
    int wrote_hdr = 0;
    if (p.snap) {
        size_t len;
        uint8_t *b = fetch(s, db, lineage, p.snap->key, p.snap->size, p.snap->xxh3, &len);
        cr_assert_eq(fwrite(b, 1, len, f), len); /* header + the snapshot record */
        wrote_hdr = 1;
        done = p.snap->txid;
        free(b);
    }
    for (size_t i = 0; i < p.nsegs; i++) {
        size_t len;
        uint8_t *b = fetch(s, db, lineage, p.segs[i]->key, p.segs[i]->size, p.segs[i]->xxh3, &len);
        if (!wrote_hdr) {
            cr_assert_eq(p.segs[i]->first_txid, 1);
            cr_assert_eq(fwrite(b, 1, TXLOG_SEG_HDR_SIZE, f), TXLOG_SEG_HDR_SIZE);
            wrote_hdr = 1;
        }
        done = take_records(f, b, len, done, p.target_txid);
        free(b);
    }
    fclose(f);
    cr_assert_eq(done, p.target_txid);
    uint64_t got = 0, ck = 0;
    rc = txlog_replay(dir, p.target_txid, path, &got, &ck, err, sizeof err);
    cr_assert_eq(rc, 0, "replay of the archive failed: %s", err);
    plan_free(&p);
    run_cmd(NULL, "rm -rf '%s'", dir);
    return got;
}

/* Wait (<= 20 s) until the manifest of db's current lineage has not changed for quiet_ms
 * (compaction and retention run concurrently with the checks otherwise). */
static void wait_quiet(const char *db, int quiet_ms)
{
    struct store *s = open_dest();
    char lin[64];
    uint64_t gen = UINT64_MAX;
    int still = 0;
    current_lineage(s, db, lin, sizeof lin);
    for (int i = 0; i < 200 && still < quiet_ms; i++) {
        struct manifest m;
        get_manifest(s, db, lin, &m);
        still = m.generation == gen ? still + 100 : 0;
        gen = m.generation;
        manifest_free(&m);
        sleep_ms(100);
    }
    cr_assert_geq(still, quiet_ms, "the archive of %s never settled", db);
    store_close(s);
}

/* Full check of the archive of db on node n: returns the archive's last TXID.
 * exact: the lineage directory holds exactly the manifest's objects (no crash left-overs). */
static uint64_t verify_archive(const struct lvnode *n, const char *db, int exact)
{
    struct store *s = open_dest();
    struct manifest m;
    char lineage[64], prefix[256];
    current_lineage(s, db, lineage, sizeof lineage);
    get_manifest(s, db, lineage, &m);
    cr_assert_eq(strcmp(m.name, db), 0);
    cr_assert_str_eq(m.dbid, lineage);
    uint64_t last = manifest_last_txid(&m);
    cr_assert_gt(last, 0, "empty archive");

    /* Objects listed == objects named (plus the manifest). */
    struct store_list l = {0};
    snprintf(prefix, sizeof prefix, "%s/%s/", db, lineage);
    cr_assert_eq(store_list(s, prefix, &l), 0);
    size_t named = 0;
    for (size_t i = 0; i < l.n; i++) {
        const char *rel = l.v[i].key + strlen(prefix);
        int found = strcmp(rel, "manifest.json") == 0 || manifest_find_segment(&m, rel) || manifest_find_snapshot(&m, rel);
        if (exact)
            cr_assert(found, "object %s is not named by the manifest", l.v[i].key);
        named += found;
    }
    cr_assert_eq(named, m.nsegs + m.nsnaps + 1, "the manifest names objects that are missing");
    store_list_free(&l);

    /* Every object decodes; together they chain from the lineage start to the last TXID. */
    uint64_t covered = 0, post = 0;
    const struct manifest_snap *first_snap = m.nsnaps ? &m.snaps[0] : NULL;
    if (!(m.nsegs && m.segs[0].first_txid == 1) && first_snap) {
        covered = first_snap->txid;
        post = first_snap->db_cksum;
    }
    for (size_t i = 0; i < m.nsnaps; i++) {
        size_t len;
        void *b = fetch(s, db, lineage, m.snaps[i].key, m.snaps[i].size, m.snaps[i].xxh3, &len);
        decode_object(b, len, m.snaps[i].key, m.snaps[i].txid, m.snaps[i].txid, 0, m.snaps[i].db_cksum);
        free(b);
    }
    for (size_t i = 0; i < m.nsegs; i++) {
        const struct manifest_seg *g = &m.segs[i];
        size_t len;
        void *b = fetch(s, db, lineage, g->key, g->size, g->xxh3, &len);
        decode_object(b, len, g->key, g->first_txid, g->last_txid, g->pre_cksum, g->post_cksum);
        free(b);
        if (g->first_txid <= covered + 1 && g->last_txid > covered) {
            if (covered)
                cr_assert(g->first_txid == covered + 1 || g->first_txid <= covered, "gap");
            if (g->first_txid == covered + 1)
                cr_assert_eq(g->pre_cksum, post, "%s does not chain to TXID %llu", g->key,
                             (unsigned long long)covered);
            covered = g->last_txid;
            post = g->post_cksum;
        }
    }
    if (m.nsnaps && m.snaps[m.nsnaps - 1].txid > covered)
        covered = m.snaps[m.nsnaps - 1].txid;
    cr_assert_eq(covered, last, "the archive's objects do not chain up to TXID %llu (stop at %llu)",
                 (unsigned long long)last, (unsigned long long)covered);

    /* The archive alone rebuilds what `log replay` gives at the same TXID. */
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/from-archive.db", A.dir);
    snprintf(b, sizeof b, "%s/from-log.db", A.dir);
    cr_assert_eq(restore_from_archive(s, db, lineage, &m, 0, a), last);
    if (lvnode_replay(n, db, last, b) == 0) {
        cr_assert(files_equal(a, b), "the database rebuilt from the archive differs from log replay at TXID %llu",
                  (unsigned long long)last);
    } else {
        /* The local log was pruned: compare with the live database's checksum at that TXID. */
        struct lvdbstat st;
        cr_assert_eq(lvnode_db_status(n, db, &st), 1);
        cr_assert_eq(st.txid, last, "database moved on; cannot compare");
        cr_assert_eq(file_db_checksum(a), st.checksum, "the database rebuilt from the archive differs from the live one");
    }
    cr_assert_eq(sql_int(a, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check <> 'ok'"), 0);
    manifest_free(&m);
    store_close(s);
    return last;
}

static void basic(int s3)
{
    dest(s3, "    sync-interval: 200ms\n    compaction: []\n");
    struct lvnode *n = node(0, NULL);
    write_rows(n, "app.db", 40, 20, 1);
    write_rows(n, "rb.db", 10, 0, 0);
    wait_confirmed(n, "app.db", 20);
    wait_confirmed(n, "rb.db", 20);
    verify_archive(n, "app.db", 1);
    verify_archive(n, "rb.db", 1);

    /* Several level-0 segments, no more than one PUT per sync interval while writing. */
    struct store *s = open_dest();
    struct manifest m;
    char lin[64];
    current_lineage(s, "app.db", lin, sizeof lin);
    get_manifest(s, "app.db", lin, &m);
    cr_assert_gt(m.nsegs, 1);
    for (size_t i = 0; i < m.nsegs; i++)
        cr_assert_eq(m.segs[i].level, 0);
    manifest_free(&m);
    store_close(s);

    /* Idle databases cost nothing: no request at all over ~8 sync intervals. */
    double p0 = requests(n, "put"), g0 = requests(n, "get"), l0 = requests(n, "list"), h0 = requests(n, "head");
    cr_assert_eq(l0, 0, "the archiver listed the destination");
    sleep_ms(1600);
    cr_assert_eq(requests(n, "put"), p0, "PUTs while idle");
    cr_assert_eq(requests(n, "get"), g0, "GETs while idle");
    cr_assert_eq(requests(n, "list"), 0);
    cr_assert_eq(requests(n, "head"), h0);

    /* status shows the destination */
    char *out = NULL;
    cr_assert_eq(run_cmd(&out, "curl -s -f 'http://%s/status'", n->http), 0);
    cr_assert(strstr(out, "\"confirmed_txid\"") && strstr(out, "\"archive\""), "status: %s", out);
    free(out);
    lvnode_stop(n);
}

Test(archive, basic_file) { basic(0); }
Test(archive, basic_s3) { basic(1); }

/* Compaction merges level-0 objects into higher levels; every TXID stays restorable. */
Test(archive, compaction_keeps_every_txid)
{
    dest(0, "    sync-interval: 200ms\n    compaction: [1s, 3s]\n    delete-delay: 1ms\n");
    struct lvnode *n = node(0, NULL);
    write_rows(n, "app.db", 60, 60, 1);
    uint64_t last = wait_confirmed(n, "app.db", 20);
    /* wait for a level-2 object (its 3 s window closed) */
    struct store *s = open_dest();
    struct manifest m;
    char lin[64];
    int top = 0;
    current_lineage(s, "app.db", lin, sizeof lin);
    for (int i = 0; i < 100 && top < 2; i++) {
        get_manifest(s, "app.db", lin, &m);
        top = 0;
        for (size_t k = 0; k < m.nsegs; k++)
            if ((int)m.segs[k].level > top)
                top = (int)m.segs[k].level;
        manifest_free(&m);
        if (top < 2)
            sleep_ms(100);
    }
    cr_assert_eq(top, 2, "no level-2 object appeared");
    wait_quiet("app.db", 4000); /* every window closed and compacted */
    verify_archive(n, "app.db", 1);
    /* Restore to many TXIDs from the compacted archive: each equals log replay. */
    get_manifest(s, "app.db", lin, &m);
    for (uint64_t x = 1; x <= last; x += 1 + last / 12) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/a.db", A.dir);
        snprintf(b, sizeof b, "%s/b.db", A.dir);
        cr_assert_eq(restore_from_archive(s, "app.db", lin, &m, x, a), x);
        cr_assert_eq(lvnode_replay(n, "app.db", x, b), 0);
        cr_assert(files_equal(a, b), "TXID %llu differs after compaction", (unsigned long long)x);
    }
    manifest_free(&m);
    store_close(s);
    lvnode_stop(n);
}

/* Snapshots, retention: old objects go, a snapshot always stays, the window stays restorable. */
Test(archive, retention_keeps_a_snapshot)
{
    dest(0, "    sync-interval: 200ms\n    compaction: [1s]\n    snapshot-interval: 1s\n    retention: 2s\n"
            "    delete-delay: 1ms\n");
    struct lvnode *n = node(0, NULL);
    write_rows(n, "app.db", 50, 100, 1);
    wait_confirmed(n, "app.db", 20);
    sleep_ms(3000); /* a snapshot older than the retention window exists now */
    wait_quiet("app.db", 2500);
    struct store *s = open_dest();
    struct manifest m;
    char lin[64];
    current_lineage(s, "app.db", lin, sizeof lin);
    get_manifest(s, "app.db", lin, &m);
    cr_assert_geq(m.nsnaps, 1, "no snapshot");
    cr_assert(m.nsegs == 0 || m.segs[0].first_txid > 1, "retention removed nothing (first segment starts at 1)");
    for (size_t i = 0; i < m.nsegs; i++)
        cr_assert_gt(m.segs[i].last_txid, m.snaps[0].txid, "%s is older than the oldest snapshot", m.segs[i].key);
    cr_assert_gt(metric(n, "litevault_archive_retired_objects_total{dest=\"0\",db=\"app.db\"}"), 0);
    manifest_free(&m);
    store_close(s);
    verify_archive(n, "app.db", 1);
    lvnode_stop(n);
}

/* s3rver killed during uploads then restarted: nothing lost, the archive catches up. */
Test(archive, s3_outage_catches_up)
{
    dest(1, "    sync-interval: 200ms\n    compaction: []\n");
    struct lvnode *n = node(0, NULL);
    write_rows(n, "app.db", 20, 20, 1);
    wait_confirmed(n, "app.db", 20);
    cr_assert_eq(run_cmd(NULL, S3SH " kill %s/s3", A.dir), 0);
    A.s3 = 0;
    write_rows(n, "app.db", 30, 30, 1); /* the application never waits for the archive */
    sleep_ms(1000);
    uint64_t last = lvnode_last_txid(n, "app.db");
    cr_assert_lt(confirmed(n, "app.db"), (double)last, "confirmed while the destination was down");
    cr_assert_gt(metric(n, "litevault_archive_pending_records{dest=\"0\",db=\"app.db\"}"), 0);
    for (int i = 0; i < 150 && !(metric(n, "litevault_archive_up{dest=\"0\"}") == 0 &&
                                 lvnode_log_contains(n, "archiving failed")); i++)
        sleep_ms(100);
    cr_assert_eq(metric(n, "litevault_archive_up{dest=\"0\"}"), 0);
    cr_assert(lvnode_log_contains(n, "archiving failed"), "no warning logged");
    s3_start();
    wait_confirmed(n, "app.db", 40);
    verify_archive(n, "app.db", 1);
    lvnode_stop(n);
}

/* kill -9 of the daemon during uploads and compaction: restart, catch up, verify. */
Test(archive, kill9_during_uploads)
{
    dest(0, "    sync-interval: 200ms\n    compaction: [1s]\n    delete-delay: 1ms\n");
    struct lvnode *n = node(0, NULL);
    write_rows(n, "app.db", 40, 40, 1);
    lvnode_kill9(n);
    lvnode_start(n);
    write_rows(n, "app.db", 20, 30, 1);
    wait_confirmed(n, "app.db", 20);
    wait_quiet("app.db", 2500); /* compaction of the windows around the crash */
    verify_archive(n, "app.db", 1); /* left-overs of the crash were swept at start-up */
    cr_assert(lvnode_log_contains(n, "continuing lineage"), "the restarted daemon did not continue the lineage");
    lvnode_stop(n);
}

/* kill -9 between the upload of a compacted object and the manifest naming it: after the
 * restart the archive is complete and holds exactly what its manifest names. */
Test(archive, kill9_during_compaction)
{
    dest(0, "    sync-interval: 200ms\n    compaction: [1s]\n    delete-delay: 1ms\n");
    setenv("LV_TEST_ARCHIVE_COMPACT_DELAY_US", "20000000", 1);
    struct lvnode *n = node(0, NULL);
    unsetenv("LV_TEST_ARCHIVE_COMPACT_DELAY_US");
    write_rows(n, "app.db", 30, 60, 1);
    int paused = 0;
    for (int i = 0; i < 100 && !paused; i++) {
        paused = lvnode_log_contains(n, "test seam");
        if (!paused)
            sleep_ms(100);
    }
    cr_assert(paused, "no compaction started");
    lvnode_kill9(n);
    lvnode_start(n);
    write_rows(n, "app.db", 10, 30, 1);
    wait_confirmed(n, "app.db", 20);
    wait_quiet("app.db", 2500);
    verify_archive(n, "app.db", 1);
    lvnode_stop(n);
}

/* Local log pruned after archiving; data.max-log-size refuses writes (never drops records) while
 * the destination is down, and writes work again once it is back. */
Test(archive, disk_limit_and_pruning)
{
    dest(1, "    sync-interval: 200ms\n    compaction: []\n");
    struct lvnode *n = node(0, "  segment-size: 16KiB\n  state-interval: 200ms\n  max-log-size: 1MiB\n");
    write_rows(n, "app.db", 40, 10, 1);
    wait_confirmed(n, "app.db", 20);
    sleep_ms(1500); /* state saved, pruned */
    struct lvrec *recs = NULL;
    int nr = lvnode_log_records(n, "app.db", &recs);
    cr_assert_gt(nr, 0, "log ls failed on a pruned log");
    cr_assert_gt(recs[0].txid, 1, "the local log was not pruned");
    free(recs);
    char out[600];
    snprintf(out, sizeof out, "%s/replay.db", A.dir);
    cr_assert_neq(lvnode_replay(n, "app.db", 0, out), 0, "replay of a pruned log should fail");
    char *msg = NULL;
    run_cmd(&msg, "$LITEVAULT log replay -c %s --db app.db -o %s 2>&1", n->config, out);
    cr_assert(msg && strstr(msg, "litevault restore"), "replay message does not point to restore: %s", msg);
    free(msg);

    /* Destination down: the log grows to the limit, then writes are refused. */
    cr_assert_eq(run_cmd(NULL, S3SH " kill %s/s3", A.dir), 0);
    A.s3 = 0;
    char *p = lvnode_path(n, "app.db");
    sqlite3 *h = NULL;
    cr_assert_eq(sqlite3_open(p, &h), SQLITE_OK);
    int ok = 0, full = 0;
    for (int i = 0; i < 3000 && !full; i++) {
        int rc = sqlite3_exec(h, "INSERT INTO t(v) VALUES(randomblob(8000))", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            ok++;
        else if (rc == SQLITE_FULL)
            full = 1;
        else
            cr_assert_fail("unexpected error %d: %s", rc, sqlite3_errmsg(h));
        if (i % 20 == 0)
            sleep_ms(50);
    }
    cr_assert(full, "writes never refused (%d committed)", ok);
    cr_assert_eq(metric(n, "litevault_local_log_full"), 1);
    cr_assert(lvnode_log_contains(n, "data.max-log-size"), "no loud message");
    /* every committed transaction is in the log */
    uint64_t last = lvnode_last_txid(n, "app.db");
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 40 + ok);
    /* Destination back: catch up, prune, accept writes again. */
    s3_start();
    wait_confirmed(n, "app.db", 60);
    cr_assert_geq(lvnode_last_txid(n, "app.db"), last);
    for (int i = 0; i < 100 && metric(n, "litevault_local_log_full") != 0; i++)
        sleep_ms(100);
    cr_assert_eq(metric(n, "litevault_local_log_full"), 0, "writes still refused after catching up");
    cr_assert_eq(sqlite3_exec(h, "INSERT INTO t(v) VALUES(1)", NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
    sqlite3_close(h);
    free(p);
    wait_confirmed(n, "app.db", 20);
    verify_archive(n, "app.db", 1);
    lvnode_stop(n);
}

/* A destination added while the local log no longer starts at TXID 1: its lineage starts
 * with a snapshot, and the first destination carries on unaffected. */
Test(archive, new_destination_starts_from_a_snapshot)
{
    dest(0, "    sync-interval: 200ms\n    compaction: []\n");
    struct lvnode *n = node(0, "  segment-size: 16KiB\n  state-interval: 200ms\n");
    write_rows(n, "app.db", 40, 10, 1);
    wait_confirmed(n, "app.db", 20);
    struct lvrec *recs = NULL;
    for (int i = 0; i < 50; i++) {
        int nr = lvnode_log_records(n, "app.db", &recs);
        cr_assert_gt(nr, 0);
        int pruned = recs[0].txid > 1;
        free(recs);
        if (pruned)
            break;
        sleep_ms(100);
    }
    lvnode_stop(n);
    FILE *f = fopen(n->config, "a");
    cr_assert_not_null(f);
    fprintf(f, "  - url: file://%s/archive2\n    sync-interval: 200ms\n    compaction: []\n", A.dir);
    fclose(f);
    lvnode_start(n);
    write_rows(n, "app.db", 5, 0, 1);
    uint64_t last = wait_confirmed(n, "app.db", 20);
    for (int i = 0; i < 200 && metric(n, "litevault_archive_confirmed_txid{dest=\"1\",db=\"app.db\"}") < (double)last; i++)
        sleep_ms(100);
    cr_assert_geq(metric(n, "litevault_archive_confirmed_txid{dest=\"1\",db=\"app.db\"}"), (double)last);
    verify_archive(n, "app.db", 1);
    snprintf(A.url, sizeof A.url, "file://%s/archive2", A.dir);
    verify_archive(n, "app.db", 1);
    struct store *s = open_dest();
    struct manifest m;
    char lin[64];
    current_lineage(s, "app.db", lin, sizeof lin);
    get_manifest(s, "app.db", lin, &m);
    cr_assert_geq(m.nsnaps, 1, "the new destination has no snapshot");
    cr_assert_gt(m.snaps[0].txid, 1);
    cr_assert(m.nsegs == 0 || m.segs[0].first_txid > 1, "the new destination claims TXID 1");
    manifest_free(&m);
    store_close(s);
    lvnode_stop(n);
}

/* A different database under the same name in the same destination starts a new lineage and leaves
 * the first one untouched. */
Test(archive, lineage_other_database)
{
    dest(0, "    sync-interval: 200ms\n    compaction: []\n");
    struct lvnode *a = node(0, NULL);
    write_rows(a, "app.db", 10, 0, 1);
    wait_confirmed(a, "app.db", 20);
    lvnode_stop(a);
    struct store *s = open_dest();
    char lin1[64], lin2[64];
    current_lineage(s, "app.db", lin1, sizeof lin1);
    char k1[256];
    void *m1 = NULL, *m1b = NULL;
    size_t l1 = 0, l1b = 0;
    snprintf(k1, sizeof k1, "app.db/%s/manifest.json", lin1);
    cr_assert_eq(store_get(s, k1, 0, 0, &m1, &l1), 0);

    struct lvnode *b = node(1, NULL);
    write_rows(b, "app.db", 15, 0, 1);
    wait_confirmed(b, "app.db", 20);
    current_lineage(s, "app.db", lin2, sizeof lin2);
    cr_assert_neq(strcmp(lin1, lin2), 0, "current.json still names the first lineage");
    cr_assert_eq(store_get(s, k1, 0, 0, &m1b, &l1b), 0);
    cr_assert(l1 == l1b && memcmp(m1, m1b, l1) == 0, "the first lineage's manifest was modified");
    struct manifest m;
    get_manifest(s, "app.db", lin2, &m);
    cr_assert_eq(strcmp(m.prev_dbid, lin1), 0, "previous lineage not recorded");
    manifest_free(&m);
    cr_assert(lvnode_log_contains(b, "starts a new lineage"), "no warning about the new lineage");
    free(m1);
    free(m1b);
    store_close(s);
    verify_archive(b, "app.db", 1);
    lvnode_stop(b);
}

/* The same database ID whose archived history diverges from the local log: not overwritten,
 * continued in a derived lineage (32 hex) whose manifest names the original as previous. */
Test(archive, lineage_diverged_same_id)
{
    dest(0, "    sync-interval: 200ms\n    compaction: []\n");
    struct lvnode *a = node(0, NULL);
    write_rows(a, "app.db", 5, 0, 1);
    wait_confirmed(a, "app.db", 20);
    lvnode_stop(a);
    /* A copy of the data dir before more writes = the same ID with another future. */
    cr_assert_eq(run_cmd(NULL, "cp -a '%s' '%s/data-copy'", a->data, A.dir), 0);
    lvnode_start(a);
    write_rows(a, "app.db", 5, 0, 1);
    wait_confirmed(a, "app.db", 20);
    lvnode_stop(a);
    struct store *s = open_dest();
    char lin1[64], lin2[64];
    current_lineage(s, "app.db", lin1, sizeof lin1);
    struct manifest m1;
    get_manifest(s, "app.db", lin1, &m1);
    uint64_t gen = m1.generation, last1 = manifest_last_txid(&m1);
    manifest_free(&m1);
    cr_assert_eq(run_cmd(NULL, "rm -rf '%s' && mv '%s/data-copy' '%s'", a->data, A.dir, a->data), 0);
    lvnode_start(a);
    write_rows(a, "app.db", 8, 0, 1);
    wait_confirmed(a, "app.db", 20);
    current_lineage(s, "app.db", lin2, sizeof lin2);
    cr_assert_neq(strcmp(lin2, lin1), 0, "current.json still names the diverged lineage");
    cr_assert_eq(strlen(lin2), 32, "lineage %s is not a 32-hex ID", lin2);
    struct manifest m2;
    get_manifest(s, "app.db", lin2, &m2);
    cr_assert_str_eq(m2.prev_dbid, lin1, "the new lineage does not name the one it continues");
    manifest_free(&m2);
    get_manifest(s, "app.db", lin1, &m1);
    cr_assert_eq(m1.generation, gen, "the diverged archive was written to");
    cr_assert_eq(manifest_last_txid(&m1), last1);
    manifest_free(&m1);
    cr_assert(lvnode_log_contains(a, "differs from the local log"), "no warning");
    store_close(s);
    verify_archive(a, "app.db", 1);
    /* a restart finds the same (derived) lineage again */
    lvnode_stop(a);
    lvnode_start(a);
    write_rows(a, "app.db", 3, 0, 1);
    wait_confirmed(a, "app.db", 20);
    s = open_dest();
    char lin3[64];
    current_lineage(s, "app.db", lin3, sizeof lin3);
    cr_assert_str_eq(lin3, lin2);
    store_close(s);
    verify_archive(a, "app.db", 1);
    lvnode_stop(a);
}
