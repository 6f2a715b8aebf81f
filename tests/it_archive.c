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
 *
 * full_local_disk_* puts data.dir on a small tmpfs (mounted by the test,
 * unmounted lazily if busy in a_fini) and fills it while archiving.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>

#include "lib/lvtest.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "archive/manifest.h"
#include "restore/plan.h"
#include "store/store.h"
#include "archive/tail.h"
#include "log/txlog.h"

static struct {
    struct lvdest *d;    /* the destination of this test (registry-owned) */
    char dir[300];       /* scratch: replays, restores (registry-owned directory) */
    char url[512];       /* destination URL the checks read (d->url, or a second destination) */
    char yaml[2048];     /* archive: section */
} A;

static void a_init(void)
{
    lvlog_threshold = -1;
    memset(&A, 0, sizeof A);
    snprintf(A.dir, sizeof A.dir, "%s", lvt_tmpdir("arch"));
}

TestSuite(archive, .init = a_init, .fini = lvt_fini, .timeout = 120);

/* Choose the destination kind.  extra: more keys of the destination. */
static void dest(enum lvdest_kind kind, const char *extra)
{
    A.d = lvdest_new(kind);
    snprintf(A.url, sizeof A.url, "%s", A.d->url);
    lvdest_yaml(A.d, extra, A.yaml, sizeof A.yaml);
}

static struct store *open_dest(void)
{
    return lvstore_open(A.url);
}

/* Start a daemon with the archive section; data_keys: more keys of the data: section ("  k: v\n"...). */
static struct lvnode *node(const char *data_keys)
{
    struct lvnode *n = lvnode_new_with(data_keys, A.yaml);
    lvnode_start(n);
    return n;
}

#define metric lvnode_metric

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

/* Wait (<= secs, at least LVT_WAIT_MS) until the archive confirmed the node's last TXID of db; returns it. */
static uint64_t wait_confirmed(const struct lvnode *n, const char *db, int secs)
{
    if (secs * 1000 < LVT_WAIT_MS)
        secs = LVT_WAIT_MS / 1000;
    /* The daemon's last TXID (GET /status), not `log ls`, which can race the
     * pruning of the local log that confirmation allows. */
    struct lvdbstat st = {0};
    cr_assert_eq(lvnode_http_db(n, db, &st), 1, "%s is not in /status", db);
    uint64_t last = st.txid;
    double c = -1;
    cr_assert(WAIT_FOR(last > 0 && (c = confirmed(n, db)) >= (double)last, secs * 1000),
              "archive did not confirm TXID %llu of %s in %d s (confirmed %.0f)", (unsigned long long)last, db, secs, c);
    return last;
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

/* The archive's view of db: the stored manifest plus its tail (level-0
 * segments stored after it, archive/tail.c), which must be undamaged.
 * Returns the number of tail objects. */
static size_t get_view(struct store *s, const char *db, const char *lineage, struct manifest *m)
{
    struct tail_result tr;
    char prefix[256], err[512] = "";
    get_manifest(s, db, lineage, m);
    snprintf(prefix, sizeof prefix, "%s/%s/", db, lineage);
    cr_assert_eq(tail_load(s, prefix, m, &tr, err, sizeof err), 0, "%s", err);
    cr_assert_eq(tr.stop, TAIL_END, "damaged tail: %s", tr.msg);
    size_t n = tr.n;
    tail_result_free(&tr);
    return n;
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

/* Wait (<= LVT_WAIT_MS) until the manifest of db's current lineage has not changed for quiet_ms
 * (compaction and retention run concurrently with the checks otherwise). */
static void wait_quiet(const char *db, int quiet_ms)
{
    struct store *s = open_dest();
    char lin[64];
    uint64_t gen = UINT64_MAX;
    int still = 0;
    current_lineage(s, db, lin, sizeof lin);
    for (int64_t end = now_ms() + LVT_WAIT_MS; still < quiet_ms && now_ms() < end;) {
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
    get_view(s, db, lineage, &m);
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

static void basic(enum lvdest_kind kind)
{
    dest(kind, "    sync-interval: 200ms\n    compaction: []\n");
    struct lvnode *n = node(NULL);
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
    get_view(s, "app.db", lin, &m);
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
    long code = 0;
    char *out = lvnode_http_get(n, "/status", &code);
    cr_assert_eq(code, 200, "/status: HTTP %ld", code);
    cr_assert(strstr(out, "\"confirmed_txid\"") && strstr(out, "\"archive\""), "status: %s", out);
    free(out);
    lvnode_stop(n);
}

/* One test per destination kind (dest.h): basic_file, basic_s3. */
#define BASIC(sfx, kind) Test(archive, basic_##sfx) { basic(kind); }
LVDEST_KINDS(BASIC)

/* Highest compaction level among m's segments. */
static int manifest_top_level(const struct manifest *m)
{
    int top = 0;
    for (size_t k = 0; k < m->nsegs; k++)
        if ((int)m->segs[k].level > top)
            top = (int)m->segs[k].level;
    return top;
}

/* Compaction merges level-0 objects into higher levels; every TXID stays restorable. */
Test(archive, compaction_keeps_every_txid)
{
    dest(LVDEST_FILE, "    sync-interval: 200ms\n    compaction: [1s, 3s]\n    delete-delay: 1ms\n");
    struct lvnode *n = node(NULL);
    write_rows(n, "app.db", 60, 60, 1);
    uint64_t last = wait_confirmed(n, "app.db", 20);
    /* wait for a level-2 object (its 3 s window closed) */
    struct store *s = open_dest();
    struct manifest m;
    char lin[64];
    int top = 0;
    current_lineage(s, "app.db", lin, sizeof lin);
    WAIT_FOR((get_manifest(s, "app.db", lin, &m), top = manifest_top_level(&m), manifest_free(&m), top >= 2),
             LVT_WAIT_MS);
    cr_assert_eq(top, 2, "no level-2 object appeared");
    wait_quiet("app.db", 4000); /* every window closed and compacted */
    verify_archive(n, "app.db", 1);
    /* Restore to many TXIDs from the compacted archive: each equals log replay. */
    get_view(s, "app.db", lin, &m);
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

/* Retention removed something from m (freed here): a snapshot exists, no segment
 * starts at TXID 1, and the daemon counted retired objects. */
static int retention_acted(struct manifest *m, const struct lvnode *n)
{
    int done = m->nsnaps >= 1 && (m->nsegs == 0 || m->segs[0].first_txid > 1) &&
               metric(n, "litevault_archive_retired_objects_total{dest=\"0\",db=\"app.db\"}") > 0;
    manifest_free(m);
    return done;
}

/* Snapshots, retention: old objects go, a snapshot always stays, the window stays restorable. */
Test(archive, retention_keeps_a_snapshot)
{
    dest(LVDEST_FILE, "    sync-interval: 200ms\n    compaction: [1s]\n    snapshot-interval: 1s\n    retention: 2s\n"
            "    delete-delay: 1ms\n");
    struct lvnode *n = node(NULL);
    write_rows(n, "app.db", 50, 100, 1);
    wait_confirmed(n, "app.db", 20);
    struct store *s = open_dest();
    struct manifest m;
    char lin[64];
    current_lineage(s, "app.db", lin, sizeof lin);
    /* Wait for retention to have acted (how long that takes depends on the machine;
     * the outcome does not), then for the archive to settle. */
    WAIT_FOR((get_manifest(s, "app.db", lin, &m), retention_acted(&m, n)), LVT_WAIT_MS);
    wait_quiet("app.db", 2500);
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
    dest(LVDEST_S3, "    sync-interval: 200ms\n    compaction: []\n");
    struct lvnode *n = node(NULL);
    write_rows(n, "app.db", 20, 20, 1);
    wait_confirmed(n, "app.db", 20);
    s3rver_kill(A.d->s3);
    write_rows(n, "app.db", 30, 30, 1); /* the application never waits for the archive */
    sleep_ms(1000);
    uint64_t last = lvnode_last_txid(n, "app.db");
    cr_assert_lt(confirmed(n, "app.db"), (double)last, "confirmed while the destination was down");
    cr_assert_gt(metric(n, "litevault_archive_pending_records{dest=\"0\",db=\"app.db\"}"), 0);
    WAIT_FOR(metric(n, "litevault_archive_up{dest=\"0\"}") == 0 && lvnode_log_contains(n, "archiving failed"),
             LVT_WAIT_MS);
    cr_assert_eq(metric(n, "litevault_archive_up{dest=\"0\"}"), 0);
    cr_assert(lvnode_log_contains(n, "archiving failed"), "no warning logged");
    s3rver_restart(A.d->s3);
    wait_confirmed(n, "app.db", 40);
    verify_archive(n, "app.db", 1);
    lvnode_stop(n);
}

/* kill -9 of the daemon during uploads and compaction: restart, catch up, verify. */
Test(archive, kill9_during_uploads)
{
    dest(LVDEST_FILE, "    sync-interval: 200ms\n    compaction: [1s]\n    delete-delay: 1ms\n");
    struct lvnode *n = node(NULL);
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
    dest(LVDEST_FILE, "    sync-interval: 200ms\n    compaction: [1s]\n    delete-delay: 1ms\n");
    setenv("LV_TEST_ARCHIVE_COMPACT_DELAY_US", "20000000", 1);
    struct lvnode *n = node(NULL);
    unsetenv("LV_TEST_ARCHIVE_COMPACT_DELAY_US");
    write_rows(n, "app.db", 30, 60, 1);
    cr_assert(WAIT_FOR(lvnode_log_contains(n, "test seam"), LVT_WAIT_MS), "no compaction started");
    lvnode_kill9(n);
    lvnode_start(n);
    write_rows(n, "app.db", 10, 30, 1);
    wait_confirmed(n, "app.db", 20);
    wait_quiet("app.db", 2500);
    verify_archive(n, "app.db", 1);
    lvnode_stop(n);
}

/* Local log pruned after archiving; with data.max-log-size reached while the destination is down,
 * WAL commits wait in the WAL (stalled, checkpoints refused; never dropped), and are logged and
 * archived once it is back. */
Test(archive, disk_limit_and_pruning)
{
    dest(LVDEST_S3, "    sync-interval: 200ms\n    compaction: []\n");
    struct lvnode *n = node("  segment-size: 16KiB\n  state-interval: 200ms\n  max-log-size: 1MiB\n");
    write_rows(n, "app.db", 40, 10, 1);
    wait_confirmed(n, "app.db", 20);
    /* the state is saved, then the log pruned: wait for it */
    cr_assert(WAIT_FOR(lvnode_log_first(n, "app.db") > 1, LVT_WAIT_MS), "the local log was not pruned (starts at %lld)",
              lvnode_log_first(n, "app.db"));
    char out[600];
    snprintf(out, sizeof out, "%s/replay.db", A.dir);
    cr_assert_neq(lvnode_replay(n, "app.db", 0, out), 0, "replay of a pruned log should fail");
    char *msg = NULL;
    lvnode_cli(n, &msg, "log replay", "--db app.db -o '%s'", out);
    cr_assert(msg && strstr(msg, "litevault restore"), "replay message does not point to restore: %s", msg);
    free(msg);

    /* Destination down: the log grows to the limit; then WAL commits still
     * succeed but wait in the WAL ("stalled"), and checkpoints are refused,
     * so nothing can be lost. */
    s3rver_kill(A.d->s3);
    char *p = lvnode_path(n, "app.db");
    sqlite3 *h = NULL;
    cr_assert_eq(sqlite3_open(p, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    struct lvdbstat ds;
    cr_assert_eq(lvnode_http_db(n, "app.db", &ds), 1);
    uint64_t tx0 = ds.txid;
    int ok = 0, stalled = 0;
    for (int i = 0; i < 3000 && !stalled; i++) {
        int rc = sqlite3_exec(h, "INSERT INTO t(v) VALUES(randomblob(8000))", NULL, NULL, NULL);
        cr_assert_eq(rc, SQLITE_OK, "a WAL commit failed with the log full: %s", sqlite3_errmsg(h));
        ok++;
        if (i % 20 == 0) {
            sleep_ms(50);
            stalled = lvnode_http_db(n, "app.db", &ds) == 1 && strcmp(ds.status, "stalled") == 0;
        }
    }
    cr_assert(stalled, "the log never filled (%d committed)", ok);
    cr_assert_eq(metric(n, "litevault_local_log_full"), 1);
    cr_assert(lvnode_log_contains(n, "data.max-log-size"), "no loud message");
    cr_assert_lt(ds.txid, tx0 + (uint64_t)ok, "every commit was logged over data.max-log-size");
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 40 + ok, "a commit was lost");
    cr_assert_neq(sqlite3_wal_checkpoint_v2(h, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL), SQLITE_OK,
                  "a checkpoint went through while commits wait in the WAL");
    uint64_t last = tx0 + (uint64_t)ok;
    /* Destination back: catch up, prune, and log what waited in the WAL. */
    s3rver_restart(A.d->s3);
    cr_assert(WAIT_FOR(lvnode_http_db(n, "app.db", &ds) == 1 && ds.txid == last, 60000),
              "the commits that waited in the WAL were not logged (TXID %llu of %llu, %s)",
              (unsigned long long)ds.txid, (unsigned long long)last, ds.status);
    cr_assert_geq(wait_confirmed(n, "app.db", 60), last, "the archive did not catch up to TXID %llu",
                  (unsigned long long)last);
    WAIT_FOR(metric(n, "litevault_local_log_full") == 0, LVT_WAIT_MS);
    cr_assert_eq(metric(n, "litevault_local_log_full"), 0, "the log is still full after catching up");
    cr_assert_eq(lvnode_http_db(n, "app.db", &ds), 1);
    cr_assert_str_eq(ds.status, "ok", "still %s after catching up", ds.status);
    cr_assert_eq(sqlite3_exec(h, "INSERT INTO t(v) VALUES(1)", NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
    sqlite3_close(h);
    free(p);
    wait_confirmed(n, "app.db", 20);
    verify_archive(n, "app.db", 1);
    lvnode_stop(n);
}

/* data.max-log-size reached in a rollback journal mode (DELETE, PERSIST;
 * each transaction's journal created through the mount, so on kernel
 * passthrough where the kernel has it): a new transaction is refused with
 * SQLITE_FULL, even one whose cache spills before its commit, and its
 * rollback finishes (no hot journal left behind: the database stays
 * readable, with every row committed and no other).  Once the archive has
 * caught up, transactions commit again, each one record. */
static void disk_limit_rollback_case(const char *mode)
{
    dest(LVDEST_S3, "    sync-interval: 200ms\n    compaction: []\n");
    struct lvnode *n = node("  segment-size: 16KiB\n  state-interval: 200ms\n  max-log-size: 1MiB\n");
    char *p = lvnode_path(n, "rb.db");
    sqlite3 *h = NULL;
    cr_assert_eq(sqlite3_open(p, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    char q[200], *jp = lvnode_path(n, "rb.db-journal");
    snprintf(q, sizeof q, "PRAGMA journal_mode=%s; PRAGMA cache_size=5; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)",
             mode);
    cr_assert_eq(sqlite3_exec(h, q, NULL, NULL, NULL), SQLITE_OK);
    int rows = 0;
    for (int i = 0; i < 10; i++, rows++)
        cr_assert_eq(sqlite3_exec(h, "INSERT INTO t(v) VALUES(randomblob(3000))", NULL, NULL, NULL), SQLITE_OK);
    wait_confirmed(n, "rb.db", 20);

    s3rver_kill(A.d->s3);
    int full = 0;
    for (int i = 0; i < 200 && !full; i++) {
        /* A journal PERSIST kept is not hot (zeroed header): gone, the next is created anew */
        cr_assert(unlink(jp) == 0 || errno == ENOENT, "unlink %s: %s", jp, strerror(errno));
        /* 40 rows of 3 KB with a 5-page cache: the cache spills into the file before the commit */
        int rc = sqlite3_exec(h, "BEGIN; INSERT INTO t(v) SELECT randomblob(3000) FROM (WITH RECURSIVE c(x) AS "
                                 "(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 40) SELECT x FROM c); COMMIT;",
                              NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
            rows += 40;
            continue;
        }
        cr_assert_eq(rc & 0xff, SQLITE_FULL, "a transaction failed with %d (%s), not SQLITE_FULL", rc,
                     sqlite3_errmsg(h));
        full = 1;
        sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    }
    cr_assert(full, "the log never filled (%d rows committed)", rows);
    cr_assert_eq(metric(n, "litevault_local_log_full"), 1);
    sqlite3_close(h);
    /* Another connection: no hot journal left to roll back, every committed row, no other. */
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), rows, "rows lost or kept from the refused transaction");
    char *ic = sql_text(p, "PRAGMA integrity_check");
    cr_assert_str_eq(ic, "ok", "integrity_check after the refused transaction: %s", ic);
    free(ic);

    s3rver_restart(A.d->s3);
    WAIT_FOR(metric(n, "litevault_local_log_full") == 0, 60000);
    cr_assert_eq(metric(n, "litevault_local_log_full"), 0, "the log is still full after catching up");
    struct lvdbstat ds;
    cr_assert_eq(lvnode_http_db(n, "rb.db", &ds), 1);
    uint64_t t = ds.txid;
    cr_assert_eq(sqlite3_open(p, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    cr_assert_eq(sqlite3_exec(h, "PRAGMA cache_size=5; BEGIN; INSERT INTO t(v) SELECT randomblob(3000) FROM (WITH "
                                 "RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 40) SELECT x "
                                 "FROM c); COMMIT;", NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
    sqlite3_close(h);
    cr_assert_eq(lvnode_last_txid(n, "rb.db"), t + 1, "the transaction after catching up is not one record");
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), rows + 40);
    free(p);
    free(jp);
    wait_confirmed(n, "rb.db", 20);
    verify_archive(n, "rb.db", 1);
    lvnode_stop(n);
}

Test(archive, disk_limit_rollback_delete)
{
    disk_limit_rollback_case("DELETE");
}

Test(archive, disk_limit_rollback_persist)
{
    disk_limit_rollback_case("PERSIST");
}

/* A destination added while the local log no longer starts at TXID 1: its lineage starts
 * with a snapshot, and the first destination carries on unaffected. */
Test(archive, new_destination_starts_from_a_snapshot)
{
    dest(LVDEST_FILE, "    sync-interval: 200ms\n    compaction: []\n");
    struct lvnode *n = node("  segment-size: 16KiB\n  state-interval: 200ms\n");
    write_rows(n, "app.db", 40, 10, 1);
    wait_confirmed(n, "app.db", 20);
    cr_assert(WAIT_FOR(lvnode_log_first(n, "app.db") > 1, LVT_WAIT_MS), "the local log was not pruned");
    lvnode_stop(n);
    struct lvdest *d2 = lvdest_new(LVDEST_FILE);
    char item[1024];
    FILE *f = fopen(n->config, "a");
    cr_assert_not_null(f);
    fputs(lvdest_item(d2, "    sync-interval: 200ms\n    compaction: []\n", item, sizeof item), f);
    fclose(f);
    lvnode_start(n);
    write_rows(n, "app.db", 5, 0, 1);
    uint64_t last = wait_confirmed(n, "app.db", 20);
    WAIT_FOR(metric(n, "litevault_archive_confirmed_txid{dest=\"1\",db=\"app.db\"}") >= (double)last, LVT_WAIT_MS);
    cr_assert_geq(metric(n, "litevault_archive_confirmed_txid{dest=\"1\",db=\"app.db\"}"), (double)last);
    verify_archive(n, "app.db", 1);
    snprintf(A.url, sizeof A.url, "%s", d2->url);
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
    dest(LVDEST_FILE, "    sync-interval: 200ms\n    compaction: []\n");
    struct lvnode *a = node(NULL);
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

    struct lvnode *b = node(NULL);
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
    dest(LVDEST_FILE, "    sync-interval: 200ms\n    compaction: []\n");
    struct lvnode *a = node(NULL);
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

/* ------------------------------------------------------------ one PUT per interval, the tail */

/* Level-0 objects under <db>/<lineage>/seg/0/ (the test's own LIST). */
static size_t count_seg0(struct store *s, const char *db, const char *lin)
{
    struct store_list l = {0};
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s/%s/seg/0/", db, lin);
    cr_assert_eq(store_list(s, prefix, &l), 0);
    size_t n = l.n;
    store_list_free(&l);
    return n;
}

/* `litevault restore` of db on node n (config's destination) to txid (0: latest) into out;
 * extra: more flags.  Returns the exit status; *msg (if given) gets stdout+stderr. */
static int cli_restore(const struct lvnode *n, const char *db, uint64_t txid, const char *extra, const char *out,
                       char **msg)
{
    char t[300] = "";
    if (txid)
        snprintf(t, sizeof t, "--txid %llu %s", (unsigned long long)txid, extra ? extra : "");
    else
        snprintf(t, sizeof t, "%s", extra ? extra : "");
    return lvnode_restore(n, db, t, out, msg);
}

/* Database checksum at TXID txid according to the local log (`log replay`). */
static uint64_t lvnode_db_checksum_at(const struct lvnode *n, const char *db, uint64_t txid)
{
    char b[600];
    snprintf(b, sizeof b, "%s/ck.db", A.dir);
    cr_assert_eq(lvnode_replay(n, db, txid, b), 0, "log replay to TXID %llu", (unsigned long long)txid);
    uint64_t ck = file_db_checksum(b);
    unlink(b);
    return ck;
}

/* Restore db to txid with the CLI and compare byte for byte with `log replay` of the same TXID. */
static void restore_exact(const struct lvnode *n, const char *db, uint64_t txid)
{
    char a[600], b[600], *msg = NULL;
    snprintf(a, sizeof a, "%s/cli.db", A.dir);
    snprintf(b, sizeof b, "%s/replay.db", A.dir);
    cr_assert_eq(cli_restore(n, db, txid, NULL, a, &msg), 0, "restore of TXID %llu failed: %s",
                 (unsigned long long)txid, msg);
    free(msg);
    run_cmd(NULL, "rm -f '%s'", b);
    cr_assert_eq(lvnode_replay(n, db, txid, b), 0);
    cr_assert(files_equal(a, b), "restore of TXID %llu differs from log replay", (unsigned long long)txid);
}

/* With a long manifest-interval a writing database costs exactly one PUT (its level-0 segment)
 * per sync interval; restore is exact to the latest TXID and to TXIDs only in the tail. */
static void one_put(enum lvdest_kind kind)
{
    dest(kind, "    sync-interval: 300ms\n    manifest-interval: 1h\n    compaction: []\n");
    struct lvnode *n = node(NULL);
    write_rows(n, "app.db", 5, 0, 1);
    wait_confirmed(n, "app.db", 20);
    /* the lineage's first manifest is stored at once, after the first segments: wait
     * until no PUT has happened for a second (not for a fixed time) */
    double settled = -1;
    cr_assert(WAIT_FOR((settled = requests(n, "put"), sleep_ms(1000), requests(n, "put") == settled), LVT_WAIT_MS),
              "the archiver kept PUTting while idle");
    struct store *s = open_dest();
    struct manifest m;
    char lin[64];
    current_lineage(s, "app.db", lin, sizeof lin);
    get_manifest(s, "app.db", lin, &m);
    uint64_t gen0 = m.generation;
    manifest_free(&m);
    double p0 = requests(n, "put"), l0 = requests(n, "list");
    size_t c0 = count_seg0(s, "app.db", lin);
    int64_t t0 = lv_mono_us();
    write_rows(n, "app.db", 40, 50, 1);
    uint64_t last = wait_confirmed(n, "app.db", 20);
    double p1 = requests(n, "put");
    int64_t t1 = lv_mono_us();
    size_t c1 = count_seg0(s, "app.db", lin);
    cr_assert_gt(c1 - c0, 1, "the writes went into one segment only");
    cr_assert_eq(p1 - p0, (double)(c1 - c0), "%.0f PUTs for %zu new segments: the manifest was written too",
                 p1 - p0, c1 - c0);
    cr_assert_leq(c1 - c0, (size_t)((t1 - t0) / 300000) + 2, "more than one segment per sync interval");
    cr_assert_eq(requests(n, "list"), l0, "LIST in steady state");
    get_manifest(s, "app.db", lin, &m);
    cr_assert_eq(m.generation, gen0, "the manifest was rewritten within manifest-interval");
    uint64_t mlast = manifest_last_txid(&m);
    cr_assert_lt(mlast, last - 2, "the manifest does not lag");
    manifest_free(&m);

    /* Idle: no request at all. */
    sleep_ms(1000);
    cr_assert_eq(requests(n, "put"), p1, "PUTs while idle");

    /* Restore: the latest TXID (in the tail) and a TXID only in the tail, exact. */
    restore_exact(n, "app.db", last);
    char a[600], *out = NULL;
    snprintf(a, sizeof a, "%s/latest.db", A.dir);
    cr_assert_eq(cli_restore(n, "app.db", 0, NULL, a, NULL), 0);
    cr_assert_eq(file_db_checksum(a), lvnode_db_checksum_at(n, "app.db", last), "latest restore is not TXID %llu",
                 (unsigned long long)last);
    restore_exact(n, "app.db", mlast + (last - mlast) / 2);
    restore_exact(n, "app.db", mlast + 1);
    /* The dry run lists the tail objects as such; verify and ls see the tail. */
    cr_assert_eq(lvnode_cli(n, &out, "restore", "--db app.db --dry-run"), 0);
    cr_assert(strstr(out, "(tail: not yet in the manifest)"), "dry run: %s", out);
    free(out);
    json_t *j = lvnode_cli_json(n, NULL, "archive verify", "--db app.db");
    cr_assert_not_null(j, "archive verify --json failed");
    cr_assert_eq(json_integer_value(json_object_get(j, "last_txid")), (json_int_t)last);
    cr_assert_gt(json_integer_value(json_object_get(j, "tail_objects")), 0);
    json_decref(j);
    j = lvnode_cli_json(n, NULL, "archive ls", "--db app.db");
    cr_assert_not_null(j, "archive ls --json failed");
    out = json_dumps(j, JSON_COMPACT);
    json_t *jl = json_array_get(json_object_get(json_array_get(json_object_get(j, "databases"), 0), "lineages"), 0);
    cr_assert_eq(json_integer_value(json_object_get(jl, "last_txid")), (json_int_t)last, "ls: %s", out);
    cr_assert_eq(json_integer_value(json_object_get(jl, "manifest_txid")), (json_int_t)mlast, "ls: %s", out);
    cr_assert_gt(json_integer_value(json_object_get(jl, "tail_objects")), 0, "ls: %s", out);
    json_decref(j);
    free(out);

    /* A clean shutdown stores the manifest. */
    lvnode_stop(n);
    get_manifest(s, "app.db", lin, &m);
    cr_assert_eq(manifest_last_txid(&m), last, "the manifest was not stored at shutdown");
    manifest_free(&m);
    store_close(s);
}

#define ONE_PUT(sfx, kind) Test(archive, one_put_per_interval_##sfx) { one_put(kind); }
LVDEST_KINDS(ONE_PUT)

/* kill -9 while the manifest lags: the restart adopts the tail (does not delete it), the
 * manifest catches up, verify passes, and every TXID around the boundary restores exactly. */
Test(archive, kill9_adopts_the_tail)
{
    dest(LVDEST_FILE, "    sync-interval: 200ms\n    manifest-interval: 1h\n    compaction: []\n    delete-delay: 1ms\n");
    struct lvnode *n = node(NULL);
    write_rows(n, "app.db", 30, 30, 1);
    uint64_t last1 = wait_confirmed(n, "app.db", 20);
    struct store *s = open_dest();
    struct manifest m;
    char lin[64], prefix[256];
    current_lineage(s, "app.db", lin, sizeof lin);
    get_manifest(s, "app.db", lin, &m);
    uint64_t mlast = manifest_last_txid(&m);
    manifest_free(&m);
    cr_assert_lt(mlast, last1, "the manifest does not lag");
    struct store_list before = {0};
    snprintf(prefix, sizeof prefix, "app.db/%s/seg/0/", lin);
    cr_assert_eq(store_list(s, prefix, &before), 0);
    cr_assert_gt(before.n, 1);

    lvnode_kill9(n);
    lvnode_start(n);
    int adopted = 0;
    adopted = WAIT_FOR((get_manifest(s, "app.db", lin, &m), adopted = manifest_last_txid(&m) >= last1,
                        manifest_free(&m), adopted),
                       LVT_WAIT_MS);
    cr_assert(adopted, "the manifest did not catch up after the restart");
    cr_assert(lvnode_log_contains(n, "adopted"), "no adoption logged");
    get_manifest(s, "app.db", lin, &m);
    for (size_t i = 0; i < before.n; i++) {
        const char *rel = before.v[i].key + strlen("app.db/") + strlen(lin) + 1;
        cr_assert_not_null(manifest_find_segment(&m, rel), "%s was not adopted", before.v[i].key);
        struct store_obj o;
        cr_assert_eq(store_head(s, before.v[i].key, &o), 0, "%s was deleted", before.v[i].key);
    }
    manifest_free(&m);
    store_list_free(&before);

    write_rows(n, "app.db", 10, 30, 1);
    uint64_t last2 = wait_confirmed(n, "app.db", 20);
    char *out = NULL;
    cr_assert_eq(lvnode_cli(n, &out, "archive verify", "--db app.db"), 0, "verify: %s",
                 out);
    free(out);
    verify_archive(n, "app.db", 1);
    for (uint64_t x = mlast > 2 ? mlast - 2 : 1; x <= last1 + 3 && x <= last2; x++)
        restore_exact(n, "app.db", x);
    store_close(s);
    lvnode_stop(n);
}

/* A damaged (bit flip) or missing tail object in the middle: restore fails naming it, or with
 * --allow-partial reaches exactly the last TXID before it; verify names it. */
Test(archive, tail_damage)
{
    dest(LVDEST_FILE, "    sync-interval: 200ms\n    manifest-interval: 1h\n    compaction: []\n");
    struct lvnode *n = node(NULL);
    write_rows(n, "app.db", 40, 30, 1);
    wait_confirmed(n, "app.db", 20);
    lvnode_kill9(n); /* the manifest stays behind */
    struct store *s = open_dest();
    struct manifest m;
    char lin[64], prefix[256];
    current_lineage(s, "app.db", lin, sizeof lin);
    get_manifest(s, "app.db", lin, &m);
    uint64_t mlast = manifest_last_txid(&m);
    manifest_free(&m);
    struct store_list l = {0};
    snprintf(prefix, sizeof prefix, "app.db/%s/seg/0/", lin);
    cr_assert_eq(store_list(s, prefix, &l), 0);
    /* tail objects: first TXID > mlast */
    char keys[64][256];
    uint64_t firsts[64];
    size_t nt = 0;
    for (size_t i = 0; i < l.n && nt < 64; i++) {
        unsigned long long f, e;
        cr_assert_eq(sscanf(l.v[i].key + strlen(prefix), "%16llx-%16llx", &f, &e), 2);
        if (f > mlast) {
            snprintf(keys[nt], sizeof keys[nt], "%s", l.v[i].key);
            firsts[nt++] = f;
        }
    }
    store_list_free(&l);
    cr_assert_geq(nt, 3, "need 3 tail objects, have %zu", nt);
    const char *mid = keys[1];
    uint64_t good = firsts[1] - 1;
    char path[900], a[600], *out = NULL;
    snprintf(path, sizeof path, "%s/%s", A.d->root, mid);
    snprintf(a, sizeof a, "%s/dmg.db", A.dir);

    /* Bit flip in the middle of the object. */
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    cr_assert_eq(run_cmd(NULL, "cp '%s' '%s.orig' && printf '\\x5a' | dd of='%s' bs=1 seek=%lld conv=notrunc 2>/dev/null",
                         path, path, path, (long long)st.st_size / 2), 0);
    cr_assert_neq(cli_restore(n, "app.db", 0, NULL, a, &out), 0, "restore of a damaged tail succeeded: %s", out);
    cr_assert(strstr(out, mid + strlen("app.db/")), "the error does not name %s: %s", mid, out);
    free(out);
    cr_assert_eq(access(a, F_OK), -1, "partial output left");
    cr_assert_eq(cli_restore(n, "app.db", 0, "--allow-partial", a, &out), 0, "--allow-partial failed: %s", out);
    free(out);
    cr_assert_eq(file_db_checksum(a), lvnode_db_checksum_at(n, "app.db", good), "--allow-partial is not TXID %llu",
                 (unsigned long long)good);
    restore_exact(n, "app.db", good); /* before the damage: no flag needed */
    cr_assert_neq(lvnode_cli(n, &out, "archive verify", "--db app.db"), 0);
    cr_assert(strstr(out, mid), "verify does not name %s: %s", mid, out);
    free(out);

    /* The same object missing: a gap in the tail. */
    cr_assert_eq(run_cmd(NULL, "rm -f '%s' '%s.orig'", path, path), 0);
    cr_assert_neq(cli_restore(n, "app.db", 0, NULL, a, &out), 0, "restore across a gap succeeded: %s", out);
    cr_assert(strstr(out, "not contiguous") && strstr(out, keys[2] + strlen("app.db/")), "gap not named: %s", out);
    free(out);
    cr_assert_eq(cli_restore(n, "app.db", 0, "--allow-partial", a, &out), 0, "--allow-partial failed: %s", out);
    free(out);
    cr_assert_eq(file_db_checksum(a), lvnode_db_checksum_at(n, "app.db", good));
    store_close(s);
}

/* ------------------------------------------------------------ a full local disk */

/* Commit 20 KB one-row transactions into path until a commit fails or max are done. */
#define fill_rows(path, wal, max, err) sql_insert_until_error(path, wal, 20000, max, err)

/* Restore db to txid with the CLI into A.dir and return its sql_content_hash; rows (if given) gets count(*) of t. */
static uint64_t restored_hash(const struct lvnode *n, const char *db, uint64_t txid, long long *rows)
{
    char a[600], *msg = NULL;
    snprintf(a, sizeof a, "%s/hash.db", A.dir);
    cr_assert_eq(cli_restore(n, db, txid, NULL, a, &msg), 0, "restore of TXID %llu failed: %s",
                 (unsigned long long)txid, msg);
    free(msg);
    if (rows)
        *rows = sql_int(a, "SELECT count(*) FROM t");
    uint64_t h = sql_content_hash(a);
    unlink(a);
    return h;
}

/*
 * A full local disk under an archiving daemon: all of data.dir (databases, logs,
 * data.dir/tmp where snapshot images are staged) is on an 8 MiB tmpfs; the
 * archive is elsewhere.  A filler file leaves ~1.5 MiB, then 20 KB transactions
 * are committed until SQLite reports SQLITE_FULL (or an I/O error).  The
 * snapshot-interval is short, so the archiver also tries (and fails) to stage
 * snapshot images while the disk is full.
 *
 * Expected and observed behaviour (docs/DESIGN.md "Errors"): ENOSPC from the
 * file system fails only the transaction being committed; the database is NOT
 * marked broken (status "ok" throughout, no restart needed), the daemon and its
 * HTTP API stay up, every transaction SQLite reported committed is in the log
 * and reaches the archive while the disk is still full; after space is freed,
 * writes work again, the archive catches up, `archive verify` passes, and the
 * latest TXID, the last TXID before the disk filled, and the TXID at which it
 * filled restore exactly (byte for byte as `log replay`, and with the content
 * recorded at commit time).
 */
static void full_disk(enum lvdest_kind kind, int wal)
{
    dest(kind, "    sync-interval: 200ms\n    compaction: []\n    snapshot-interval: 1s\n");
    struct lvnode *n = lvnode_new(A.yaml);
    char filler[400], *out = NULL;
    cr_assert_eq(run_cmd(NULL, "mkdir -p '%s'", n->data), 0);
    cr_assert_eq(run_cmd(NULL, "mount -t tmpfs -o size=8m tmpfs '%s'", n->data), 0, "cannot mount a tmpfs");
    lvt_defer_umount(n->data);
    lvnode_start(n);
    char *p = lvnode_path(n, "full.db");
    sql_exec(p, wal ? "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
                    : "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    int err = 0;
    cr_assert_eq(fill_rows(p, wal, 10, &err), 10, "writes fail before the disk is full: %s", sqlite3_errstr(err));
    uint64_t t_pre = wait_confirmed(n, "full.db", 20);
    uint64_t h_pre = sql_content_hash(p);

    /* Leave ~1.5 MiB on the tmpfs, then write until SQLite reports the full disk. */
    snprintf(filler, sizeof filler, "%s/.filler", n->data);
    struct statvfs sv;
    cr_assert_eq(statvfs(n->data, &sv), 0);
    long long fill = (long long)sv.f_bavail * (long long)sv.f_frsize - 1536 * 1024;
    cr_assert_gt(fill, 0);
    cr_assert_eq(run_cmd(NULL, "head -c %lld /dev/zero > '%s'", fill, filler), 0);
    int ok = fill_rows(p, wal, 400, &err);
    cr_assert_neq(err, SQLITE_OK, "400 transactions of 20 KB fit into 1.5 MiB?");
    cr_assert((err & 0xff) == SQLITE_FULL || (err & 0xff) == SQLITE_IOERR,
              "expected SQLITE_FULL or SQLITE_IOERR, got %d (%s)", err, sqlite3_errstr(err));
    cr_assert_gt(ok, 0, "no transaction fitted");
    long long committed = 10 + ok;

    /* The daemon is alive, /status answers, the database is not broken, nothing committed is missing. */
    cr_assert_eq(kill(n->pid, 0), 0, "the daemon died on a full disk");
    long code = 0;
    out = lvnode_http_get(n, "/status", &code);
    cr_assert_eq(code, 200, "/status does not answer");
    cr_assert(strstr(out, "full.db"), "/status: %s", out);
    free(out);
    struct lvdbstat ds;
    cr_assert_eq(lvnode_db_status(n, "full.db", &ds), 1);
    cr_assert_str_eq(ds.status, "ok", "the full disk marked the database broken");
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), committed, "a failed commit is visible, or a committed one lost");
    uint64_t t_full = lvnode_last_txid(n, "full.db");
    cr_assert_eq(ds.txid, t_full, "status TXID %llu, log %llu", (unsigned long long)ds.txid,
                 (unsigned long long)t_full);
    cr_assert_geq(t_full, t_pre + (uint64_t)ok, "log ends at TXID %llu; %d commits after TXID %llu",
                  (unsigned long long)t_full, ok, (unsigned long long)t_pre);
    uint64_t h_full = sql_content_hash(p);
    cr_assert_neq(h_full, h_pre);

    /* The archive gets every committed transaction while the disk is still full. */
    cr_assert_eq(wait_confirmed(n, "full.db", 20), t_full);
    long long rows = 0;
    cr_assert_eq(restored_hash(n, "full.db", t_full, &rows), h_full, "the archive at TXID %llu is not what was committed",
                 (unsigned long long)t_full);
    cr_assert_eq(rows, committed);
    /* Keep the disk full until the archiver has tried to stage a snapshot image in
     * data.dir/tmp (snapshot-interval 1s): it fails, nothing else does. */
    int tried = WAIT_FOR(lvnode_log_contains(n, "cannot take an image for a snapshot: no space left on device"),
                         LVT_WAIT_MS);
    cr_assert(tried, "no snapshot was attempted (or it did not fail for lack of space) while the disk was full");
    cr_assert_eq(kill(n->pid, 0), 0, "the daemon died on a full disk");
    cr_assert_eq(lvnode_db_status(n, "full.db", &ds), 1);
    cr_assert_str_eq(ds.status, "ok", "a failed snapshot image marked the database broken");
    cr_assert_eq(ds.txid, t_full);

    /* Free the space: writes work again and reach the archive. */
    cr_assert_eq(unlink(filler), 0);
    cr_assert_eq(fill_rows(p, wal, 5, &err), 5, "writes still fail after freeing space: %s", sqlite3_errstr(err));
    committed += 5;
    uint64_t h_last = sql_content_hash(p);
    uint64_t t_last = wait_confirmed(n, "full.db", 20);
    cr_assert_geq(t_last, t_full + 5);
    uint64_t at = 0;
    WAIT_FOR((at = lvnode_archive_txid(n, "full.db", NULL)) == t_last, LVT_WAIT_MS);
    cr_assert_eq(at, t_last, "the archive's latest TXID is %llu, not %llu", (unsigned long long)at,
                 (unsigned long long)t_last);
    cr_assert_eq(lvnode_cli(n, &out, "archive verify", "--db full.db"), 0, "verify: %s",
                 out);
    free(out);
    cr_assert_eq(restored_hash(n, "full.db", 0, &rows), h_last, "latest restore is not the committed content");
    cr_assert_eq(rows, committed);
    cr_assert_eq(restored_hash(n, "full.db", t_pre, NULL), h_pre);
    cr_assert_eq(restored_hash(n, "full.db", t_full, NULL), h_full);
    restore_exact(n, "full.db", t_last);
    restore_exact(n, "full.db", t_pre);
    restore_exact(n, "full.db", t_full);

    /* The snapshot that failed is taken once there is room, and the failed
     * attempts left nothing behind in data.dir/tmp. */
    struct store *s = open_dest();
    char lin[64];
    current_lineage(s, "full.db", lin, sizeof lin);
    uint64_t snap = 0;
    struct manifest fm;
    WAIT_FOR((get_manifest(s, "full.db", lin, &fm), snap = fm.nsnaps ? fm.snaps[fm.nsnaps - 1].txid : 0,
              manifest_free(&fm), snap == t_last),
             LVT_WAIT_MS);
    cr_assert_eq(snap, t_last, "no snapshot at TXID %llu after space was freed (newest %llu)",
                 (unsigned long long)t_last, (unsigned long long)snap);
    store_close(s);
    cr_assert_eq(run_cmd(&out, "ls -A '%s/tmp'", n->data), 0);
    cr_assert_str_eq(out, "", "left in data.dir/tmp: %s", out);
    free(out);
    verify_archive(n, "full.db", 1);
    cr_assert_eq(lvnode_cli(n, &out, "archive verify", "--db full.db"), 0, "verify: %s",
                 out);
    free(out);

    /* A clear message about the full disk; the database was never broken. */
    char *log = lvnode_log_text(n);
    cr_assert(strstr(log, "No space left on device") || strstr(log, "no space left on device"),
              "the daemon did not log the full disk:\n%s", log);
    cr_assert_null(strstr(log, "broken"), "something was marked broken:\n%s", log);
    /* The failed snapshot's warning names its cause, not an older, unrelated store answer
     * (the 404 of the lineage's first manifest GET used to be appended). */
    cr_assert_null(strstr(log, "HTTP 404"), "a stale store error in the log:\n%s", log);
    free(log);
    cr_assert_eq(lvnode_db_status(n, "full.db", &ds), 1);
    cr_assert_str_eq(ds.status, "ok");

    /* A restart finds the same state: the log agrees with the database, and it keeps archiving. */
    lvnode_stop(n);
    lvnode_start(n);
    cr_assert_eq(lvnode_check_db(n, "full.db"), t_last);
    cr_assert_eq(sql_content_hash(p), h_last);
    cr_assert_eq(fill_rows(p, wal, 2, &err), 2, "writes fail after the restart: %s", sqlite3_errstr(err));
    uint64_t t_end = wait_confirmed(n, "full.db", 20);
    cr_assert_eq(t_end, t_last + 2);
    restore_exact(n, "full.db", t_end);
    lvnode_stop(n);
    free(p);
}

/* One test per destination kind; the file:// row runs in WAL mode, the s3 row in
 * DELETE mode, so both journal modes meet a full disk. */
#define FULL_DISK(sfx, kind) \
    Test(archive, full_local_disk_##sfx, .timeout = 120) { full_disk(kind, kind == LVDEST_FILE); }
LVDEST_KINDS(FULL_DISK)

/* restore --seed of a fresh node from the archive: its JSON (caller
 * frees); asserts the command succeeded. */
static json_t *seed_fresh(void)
{
    struct lvnode *b = lvnode_new(A.yaml);
    int rc = -1;
    json_t *j = lvnode_cli_json(b, &rc, "restore", "--seed");
    cr_assert_eq(rc, 0, "restore --seed failed");
    return j;
}

/* Delete the database at p on a mount, with its -wal and -shm. */
static void unlink_db(const char *p)
{
    char side[800];
    cr_assert_eq(unlink(p), 0, "unlink %s: %s", p, strerror(errno));
    snprintf(side, sizeof side, "%s-wal", p);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", p);
    unlink(side);
}

/* gone.db and kept.db archived, then gone.db deleted; returns gone.db's
 * path on the mount (malloc'ed). */
static char *archive_two_delete_one(const struct lvnode *n)
{
    char *p = lvnode_path(n, "gone.db");
    write_rows(n, "gone.db", 5, 0, 1);
    write_rows(n, "kept.db", 5, 0, 1);
    wait_confirmed(n, "gone.db", 10);
    wait_confirmed(n, "kept.db", 10);
    unlink_db(p);
    return p;
}

/* A database deleted on the node that archives it: the archive says so
 * (<name>/deleted.json naming its lineage, FORMAT.md "Deleted databases"),
 * `archive ls` shows it, and `restore --seed` of a new node leaves it out
 * (catch-up at a promotion reads the same object); --db NAME still seeds
 * it.  Created again under that name, it is alive again. */
Test(archive, deleted_database_marked)
{
    dest(LVDEST_FILE, "    sync-interval: 100ms\n");
    struct lvnode *n = node(NULL);
    char *p = archive_two_delete_one(n), tomb[700];
    snprintf(tomb, sizeof tomb, "%s/gone.db/deleted.json", A.d->root);
    cr_assert(WAIT_FOR(access(tomb, F_OK) == 0, LVT_WAIT_MS), "no %s after the database was deleted", tomb);
    json_t *j = lvnode_cli_json(n, NULL, "archive ls", "--db gone.db");
    json_t *d = json_array_get(json_object_get(j, "databases"), 0);
    cr_assert(json_is_string(json_object_get(d, "deleted")), "archive ls does not say gone.db was deleted");
    cr_assert_str_eq(json_string_value(json_object_get(d, "deleted_reason")), "deleted");
    json_decref(j);
    j = lvnode_cli_json(n, NULL, "archive ls", "--db kept.db");
    d = json_array_get(json_object_get(j, "databases"), 0);
    cr_assert(json_is_null(json_object_get(d, "deleted")), "archive ls says kept.db was deleted");
    json_decref(j);

    /* A new node seeded from the archive has kept.db only. */
    struct lvnode *b = lvnode_new(A.yaml);
    int rc = -1;
    j = lvnode_cli_json(b, &rc, "restore", "--seed");
    cr_assert_eq(rc, 0, "restore --seed failed");
    json_t *a = json_object_get(j, "databases");
    cr_assert_eq(json_array_size(a), 1, "seeded %zu databases, wanted kept.db alone", json_array_size(a));
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 0), "db")), "kept.db");
    json_decref(j);
    struct lvnode *c = lvnode_new(A.yaml);
    j = lvnode_cli_json(c, &rc, "restore", "--seed --db gone.db");
    cr_assert_eq(rc, 0, "restore --seed --db gone.db failed");
    json_decref(j);
    /* restore --db rebuilds it, saying it was deleted; not so for kept.db. */
    const char *names[2] = {"gone.db", "kept.db"};
    for (int k = 0; k < 2; k++) {
        char args[900];
        snprintf(args, sizeof args, "--db %s --dry-run", names[k]);
        j = lvnode_cli_json(n, &rc, "restore", args);
        cr_assert_eq(rc, 0, "restore %s failed", args);
        cr_assert_eq(json_is_string(json_object_get(j, "deleted")), k == 0, "restore %s: \"deleted\" is %s", args,
                     k == 0 ? "not a time" : "set");
        json_decref(j);
    }

    /* Created again: a new lineage, not deleted. */
    write_rows(n, "gone.db", 3, 0, 1);
    wait_confirmed(n, "gone.db", 10);
    j = lvnode_cli_json(n, NULL, "archive ls", "--db gone.db");
    d = json_array_get(json_object_get(j, "databases"), 0);
    cr_assert(json_is_null(json_object_get(d, "deleted")), "gone.db, created again, is still shown deleted");
    json_decref(j);

    /* Renamed away, the name's lineage is marked; renamed back, the mark goes. */
    char *pk = lvnode_path(n, "kept.db"), *pm = lvnode_path(n, "moved.db");
    snprintf(tomb, sizeof tomb, "%s/kept.db/deleted.json", A.d->root);
    cr_assert_eq(rename(pk, pm), 0, "rename %s: %s", pk, strerror(errno));
    cr_assert(WAIT_FOR(access(tomb, F_OK) == 0, LVT_WAIT_MS), "no %s after kept.db was renamed away", tomb);
    cr_assert_eq(rename(pm, pk), 0, "rename %s: %s", pm, strerror(errno));
    write_rows(n, "kept.db", 2, 0, 1);
    cr_assert(WAIT_FOR(access(tomb, F_OK) != 0, LVT_WAIT_MS), "%s stays after kept.db was renamed back", tomb);
    free(pk);
    free(pm);
    free(p);
}

/* Files named *.json in dir (0 if it does not exist). */
static int count_json(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int k = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        k += l > 5 && strcmp(e->d_name + l - 5, ".json") == 0;
    }
    closedir(d);
    return k;
}

/* Renames that put one database over another of the same name: X (ID A)
 * renamed to Y, Z (ID C) renamed to X, then Y renamed back over X (which
 * deletes C, and notes it).  X is A again and alive: current.json names
 * A, and no deleted.json names it (a seed brings X back). */
Test(archive, renamed_back_over_another_stays_alive)
{
    dest(LVDEST_FILE, "    sync-interval: 100ms\n");
    struct lvnode *n = node(NULL);
    char *px = lvnode_path(n, "x.db"), *py = lvnode_path(n, "y.db"), *pz = lvnode_path(n, "z.db");
    write_rows(n, "x.db", 3, 0, 0);
    write_rows(n, "z.db", 3, 0, 0);
    wait_confirmed(n, "x.db", 10);
    wait_confirmed(n, "z.db", 10);
    char cur[700], tomb[700], notes[700], a_id[64];
    snprintf(cur, sizeof cur, "%s/x.db/current.json", A.d->root);
    json_t *jc = json_load_file(cur, 0, NULL);
    cr_assert_not_null(jc, "no %s", cur);
    snprintf(a_id, sizeof a_id, "%s", json_string_value(json_object_get(jc, "dbid")));
    json_decref(jc);
    jc = NULL;
    cr_assert_eq(rename(px, py), 0, "rename: %s", strerror(errno));
    cr_assert_eq(rename(pz, px), 0, "rename: %s", strerror(errno));
    write_rows(n, "x.db", 2, 0, 0);
    wait_confirmed(n, "x.db", 10);
    cr_assert_eq(rename(py, px), 0, "rename: %s", strerror(errno));
    write_rows(n, "x.db", 2, 0, 0);
    wait_confirmed(n, "x.db", 10);
    snprintf(tomb, sizeof tomb, "%s/x.db/deleted.json", A.d->root);
    snprintf(notes, sizeof notes, "%s/deleted", n->data);
    cr_assert(WAIT_FOR(count_json(notes) == 0, LVT_WAIT_MS), "the notes stay in %s", notes);
    cr_assert(WAIT_FOR((json_decref(jc), jc = json_load_file(cur, 0, NULL)) != NULL &&
                           strcmp(json_string_value(json_object_get(jc, "dbid")), a_id) == 0,
                       LVT_WAIT_MS),
              "x.db/current.json does not name x.db's lineage %s", a_id);
    json_t *jt = json_load_file(tomb, 0, NULL);
    cr_assert(!jt || strcmp(json_string_value(json_object_get(jt, "dbid")), a_id) != 0,
              "x.db/deleted.json names the lineage of the live x.db");
    json_decref(jt);
    json_decref(jc);
    json_t *j = seed_fresh(), *a = json_object_get(j, "databases");
    int have_x = 0;
    for (size_t k = 0; k < json_array_size(a); k++)
        have_x |= strcmp(json_string_value(json_object_get(json_array_get(a, k), "db")), "x.db") == 0;
    cr_assert(have_x, "a seed left the live x.db out");
    json_decref(j);
    free(px);
    free(py);
    free(pz);
}

/* A node archiving to a file:// destination whose every write of a
 * deleted.json fails (LV_FAULT), started. */
static struct lvnode *node_refusing_tombstones(void)
{
    dest(LVDEST_FILE, "    sync-interval: 100ms\n");
    struct lvnode *n = lvnode_new_with(NULL, A.yaml);
    setenv("LV_FAULT", "open:EIO:match=deleted.json", 1);
    lvnode_start(n);
    unsetenv("LV_FAULT");
    return n;
}

/* A deletion whose tombstone the store refused (every PUT of
 * gone.db/deleted.json fails, LV_FAULT), followed by a kill -9: the next
 * start writes it, from the registry's note (data.dir/deleted/), and the
 * note goes.  Without the note the restarted archiver never learns of the
 * deletion, and a seed brings gone.db back. */
Test(archive, deleted_marked_after_a_failed_put)
{
    struct lvnode *n = node_refusing_tombstones();
    char *p = archive_two_delete_one(n), tomb[700], notes[700];
    snprintf(tomb, sizeof tomb, "%s/gone.db/deleted.json", A.d->root);
    cr_assert(WAIT_FOR(lvnode_log_contains(n, "gone.db/deleted.json could not be written"), LVT_WAIT_MS),
              "the store's refusal was not logged");
    cr_assert_neq(access(tomb, F_OK), 0, "%s was written although the store refused it", tomb);
    /* Keep the first lineage's note; gone.db made again (a new lineage,
     * which current.json names: the first note then needs no object and
     * goes) and deleted again, its PUT refused too.  Put the first note
     * back: two notes for one name, of which only the newer may write. */
    snprintf(notes, sizeof notes, "%s/deleted", n->data);
    cr_assert_eq(count_json(notes), 1, "no note of the deletion in %s", notes);
    char first[900];
    json_t *first_note;
    DIR *dd = opendir(notes);
    struct dirent *e;
    while ((e = readdir(dd)) != NULL)
        if (strstr(e->d_name, ".json"))
            snprintf(first, sizeof first, "%s/%s", notes, e->d_name);
    closedir(dd);
    cr_assert_not_null(first_note = json_load_file(first, 0, NULL), "cannot read %s", first);
    write_rows(n, "gone.db", 3, 0, 1);
    wait_confirmed(n, "gone.db", 10);
    cr_assert(WAIT_FOR(count_json(notes) == 0, LVT_WAIT_MS), "the first lineage's note stays");
    unlink_db(p);
    cr_assert(WAIT_FOR(count_json(notes) == 1, LVT_WAIT_MS), "no note of the second deletion in %s", notes);
    lvnode_kill9(n);
    cr_assert_eq(json_dump_file(first_note, first, JSON_COMPACT), 0, "cannot write %s back", first);
    json_decref(first_note);
    cr_assert_eq(count_json(notes), 2);

    lvnode_start(n);
    cr_assert(WAIT_FOR(access(tomb, F_OK) == 0, LVT_WAIT_MS), "no %s after the restart", tomb);
    cr_assert(WAIT_FOR(count_json(notes) == 0, LVT_WAIT_MS), "the notes stay in %s", notes);
    char cur[700];
    snprintf(cur, sizeof cur, "%s/gone.db/current.json", A.d->root);
    json_t *jt = json_load_file(tomb, 0, NULL), *jc = json_load_file(cur, 0, NULL);
    cr_assert(jt && jc, "cannot read %s or %s", tomb, cur);
    cr_assert_str_eq(json_string_value(json_object_get(jt, "dbid")), json_string_value(json_object_get(jc, "dbid")),
                     "deleted.json names another lineage than current.json: the older note undid the newer");
    json_decref(jt);
    json_decref(jc);
    json_t *j = seed_fresh(), *a = json_object_get(j, "databases");
    cr_assert_eq(json_array_size(a), 1, "seeded %zu databases, wanted kept.db alone", json_array_size(a));
    json_decref(j);
    free(p);
}

/* A database renamed away while the store refuses its tombstone (every PUT
 * of a deleted.json fails, LV_FAULT), then a kill -9: the next start
 * writes old.db/deleted.json, naming the lineage old.db/current.json
 * names, from the registry's note (a rename leaves one for the name it
 * left), and the note goes; a seed brings the database back under its new
 * name only.  Without the note the restarted archiver never learns that
 * old.db was left, and a seed brings the database back twice. */
Test(archive, renamed_away_marked_after_a_crash)
{
    struct lvnode *n = node_refusing_tombstones();
    char *pa = lvnode_path(n, "old.db"), *pb = lvnode_path(n, "new.db"), tomb[700], notes[700], cur[700];
    write_rows(n, "old.db", 5, 0, 0);
    wait_confirmed(n, "old.db", 10);
    cr_assert_eq(rename(pa, pb), 0, "rename: %s", strerror(errno));
    snprintf(notes, sizeof notes, "%s/deleted", n->data);
    cr_assert(WAIT_FOR(count_json(notes) == 1, LVT_WAIT_MS), "no note of the rename in %s", notes);
    snprintf(tomb, sizeof tomb, "%s/old.db/deleted.json", A.d->root);
    cr_assert(WAIT_FOR(lvnode_log_contains(n, "old.db/deleted.json could not be written"), LVT_WAIT_MS),
              "the store's refusal was not logged");
    lvnode_kill9(n);
    cr_assert_neq(access(tomb, F_OK), 0, "%s was written although the store refused it", tomb);

    lvnode_start(n);
    cr_assert(WAIT_FOR(access(tomb, F_OK) == 0, LVT_WAIT_MS), "no %s after the restart", tomb);
    cr_assert(WAIT_FOR(count_json(notes) == 0, LVT_WAIT_MS), "the note stays in %s", notes);
    snprintf(cur, sizeof cur, "%s/old.db/current.json", A.d->root);
    json_t *jt = json_load_file(tomb, 0, NULL), *jc = json_load_file(cur, 0, NULL);
    cr_assert(jt && jc, "cannot read %s or %s", tomb, cur);
    cr_assert_str_eq(json_string_value(json_object_get(jt, "dbid")), json_string_value(json_object_get(jc, "dbid")));
    cr_assert_str_eq(json_string_value(json_object_get(jt, "reason")), "renamed");
    json_decref(jt);
    json_decref(jc);
    json_t *jl = lvnode_cli_json(n, NULL, "archive ls", "--db old.db");
    json_t *dl = json_array_get(json_object_get(jl, "databases"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(dl, "deleted_reason")), "renamed", "archive ls");
    json_decref(jl);
    wait_confirmed(n, "new.db", 10);
    json_t *j = seed_fresh(), *a = json_object_get(j, "databases");
    cr_assert_eq(json_array_size(a), 1, "seeded %zu databases, wanted new.db alone", json_array_size(a));
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 0), "db")), "new.db");
    json_decref(j);
    free(pa);
    free(pb);
}
