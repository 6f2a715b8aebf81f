/*
 * it_pitr.c -- the point-in-time oracle.
 *
 * A workload of 2,000 transactions on one database, through the mount:
 * inserts, updates and deletes of rows with random blobs, schema changes
 * (CREATE TABLE, ALTER TABLE ADD COLUMN, DROP TABLE), VACUUM, and a switch
 * from journal_mode=DELETE to WAL a third of the way in.  After every
 * commit the test records the content hash of the database (sql_content_hash:
 * every row of every table, independent of the page layout) and the commit
 * time the daemon gave it, read from the daemon's memory (GET /status: the
 * database's TXID and last commit time) before the next transaction starts.
 * Every transaction changes something, so transaction k of the workload is
 * TXID k; the test checks that after every commit.
 *
 * Why not read the times from the log afterwards: an archiving daemon
 * prunes the local log up to what every destination confirmed (whole
 * segments, once the state file covers them), so on a slow run the early
 * records are gone by the time the workload ends.  Their times stayed 0,
 * and the oracle asked for a restore "as of 1970" expecting a late TXID.
 * /status after each commit cannot race pruning: it is the daemon's
 * in-memory state of that commit, and nothing else writes the database
 * between the commit and the request.  The records still in the log are
 * then checked against the recorded times.
 *
 * Then it restores 50 random TXIDs and 50 random timestamps -- some exactly
 * at a commit, some strictly between two commits, one before the first --
 * and each result must have exactly the recorded content for the expected
 * TXID and pass integrity_check.
 *
 * The restore step is pluggable: the local log (`litevault log replay`),
 * and the archive (`litevault restore`) on file:// and on s3rver, before
 * and after compaction and retention.
 */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "lib/lvtest.h"

#define NTX 2000
#define NMORE 40 /* transactions after the retention restart */

TestSuite(pitr, .fini = lvt_fini, .timeout = 600);

/* What the workload left: per TXID (1-based) its content hash and commit time. */
struct oracle {
    uint64_t hash[NTX + NMORE + 1];   /* content after TXID i */
    int64_t time_us[NTX + NMORE + 1]; /* commit time of TXID i */
    uint64_t last;            /* last TXID */
};

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free(msg);
}

/* After transaction k of the workload: the daemon holds TXID k; record its
 * commit time (from /status, i.e. memory, not the log: see the top). */
static void record_commit(const struct lvnode *n, const char *name, uint64_t k, struct oracle *o)
{
    struct lvdbstat st;
    int found = 0;
    /* the record is written before the commit returns; the wait only covers a slow HTTP answer */
    WAIT_FOR((found = lvnode_http_db(n, name, &st)) == 1 && st.txid >= k, LVT_WAIT_MS);
    cr_assert_eq(found, 1, "%s is not in /status after transaction %llu", name, (unsigned long long)k);
    cr_assert_eq(st.txid, k, "transaction %llu of the workload is TXID %llu", (unsigned long long)k,
                 (unsigned long long)st.txid);
    cr_assert_gt(st.last_commit_us, 0, "TXID %llu has no commit time", (unsigned long long)k);
    cr_assert_geq(st.last_commit_us, o->time_us[k - 1], "commit times go back at TXID %llu", (unsigned long long)k);
    o->time_us[k] = st.last_commit_us;
}

/* Run the workload on name (path on node n), filling o->hash and o->time_us. */
static void workload(const struct lvnode *n, const char *name, const char *path, struct oracle *o)
{
    sqlite3 *db = NULL;
    unsigned seed = 20261124;
    char sql[512];
    int ntables = 0, ncols = 0;

    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    for (int k = 1; k <= NTX; k++) {
        unsigned r = rand_r(&seed) % 100;
        if (k == 1) {
            exec_ok(db, "CREATE TABLE kv(id INTEGER PRIMARY KEY, k TEXT, v BLOB)");
        } else if (k == NTX / 3) {
            /* DELETE -> WAL: one transaction (the header's version bytes). */
            sqlite3_stmt *st = NULL;
            cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL), SQLITE_OK);
            cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
            cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
            sqlite3_finalize(st);
        } else if (k % 250 == 0) {
            exec_ok(db, "VACUUM");
        } else if (k % 400 == 7) {
            snprintf(sql, sizeof sql,
                     "BEGIN; CREATE TABLE t%d(a INTEGER, b TEXT); INSERT INTO t%d VALUES(%d, hex(randomblob(40))); "
                     "COMMIT;",
                     ntables, ntables, k);
            ntables++;
            exec_ok(db, sql);
        } else if (k % 400 == 107) {
            snprintf(sql, sizeof sql, "ALTER TABLE kv ADD COLUMN c%d INTEGER DEFAULT %d", ncols, k);
            ncols++;
            exec_ok(db, sql);
        } else if (k % 400 == 207 && ntables > 0) {
            snprintf(sql, sizeof sql, "DROP TABLE t%d", ntables - 1);
            ntables--;
            exec_ok(db, sql);
        } else if (r < 55 || k < 20) {
            snprintf(sql, sizeof sql,
                     "INSERT INTO kv(k, v) SELECT 'k' || %d || '-' || value, randomblob(%u) FROM generate_series(1, %u)",
                     k, 50 + rand_r(&seed) % 2000, 1 + rand_r(&seed) % 5);
            /* generate_series may be missing: fall back to a recursive CTE. */
            if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
                snprintf(sql, sizeof sql,
                         "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < %u) "
                         "INSERT INTO kv(k, v) SELECT 'k' || %d || '-' || i, randomblob(%u) FROM c",
                         1 + rand_r(&seed) % 5, k, 50 + rand_r(&seed) % 2000);
                exec_ok(db, sql);
            }
        } else if (r < 85) {
            snprintf(sql, sizeof sql,
                     "UPDATE kv SET v = randomblob(%u), k = k || '+' WHERE id IN (SELECT id FROM kv ORDER BY random() "
                     "LIMIT %u)",
                     10 + rand_r(&seed) % 3000, 1 + rand_r(&seed) % 4);
            exec_ok(db, sql);
            if (sqlite3_changes(db) == 0)
                exec_ok(db, "INSERT INTO kv(k, v) VALUES('filler', randomblob(100))");
        } else {
            exec_ok(db, "DELETE FROM kv WHERE id IN (SELECT id FROM kv ORDER BY random() LIMIT 3)");
            if (sqlite3_changes(db) == 0)
                exec_ok(db, "INSERT INTO kv(k, v) VALUES('filler', randomblob(100))");
        }
        record_commit(n, name, (uint64_t)k, o);
        o->hash[k] = sql_content_hash(path);
        if (k % 97 == 0)
            usleep(3000); /* wider gaps between some commits */
    }
    sqlite3_close(db);
    o->last = NTX;
}

/* Check the records still in the local log against the oracle: the log ends
 * at the workload's last transaction, with no gap and the recorded commit
 * times (it may start after TXID 1 once the archiver pruned what it confirmed). */
static void check_log_times(const struct lvnode *n, const char *name, const struct oracle *o)
{
    struct lvrec *recs = NULL;
    int cnt = lvnode_log_records(n, name, &recs);
    cr_assert_gt(cnt, 0, "no records in the log");
    if (recs[0].txid > 1)
        cr_log_info("the local log starts at TXID %llu: the archiver pruned what it confirmed",
                    (unsigned long long)recs[0].txid);
    cr_assert_eq(recs[cnt - 1].txid, o->last, "the log ends at TXID %llu after %llu transactions",
                 (unsigned long long)recs[cnt - 1].txid, (unsigned long long)o->last);
    for (int i = 0; i < cnt; i++) {
        if (i > 0)
            cr_assert_eq(recs[i].txid, recs[i - 1].txid + 1);
        cr_assert_eq(recs[i].time_us, o->time_us[recs[i].txid], "TXID %llu: the log says %lld, /status said %lld",
                     (unsigned long long)recs[i].txid, (long long)recs[i].time_us,
                     (long long)o->time_us[recs[i].txid]);
    }
    free(recs);
}

/* A restore method: rebuild name into out as of "--txid N" or
 * "--timestamp T" (flag text); returns the exit status. */
typedef int (*restore_fn)(const struct lvnode *n, const char *name, const char *flag, const char *out, void *arg);

static int restore_local(const struct lvnode *n, const char *name, const char *flag, const char *out, void *arg)
{
    (void)arg;
    if (strncmp(flag, "--txid ", 7) != 0)
        return -1; /* log replay takes TXIDs only */
    return lvnode_replay(n, name, strtoull(flag + 7, NULL, 10), out);
}

/* Check one restored file against the oracle at TXID want. */
static void check_restored(const char *out, const struct oracle *o, uint64_t want, const char *what)
{
    char *ok = NULL;
    cr_assert_eq(run_cmd(&ok, "sqlite3 '%s' 'PRAGMA integrity_check'", out), 0, "%s: sqlite3 failed", what);
    cr_assert(strncmp(ok, "ok", 2) == 0, "%s: integrity_check: %s", what, ok);
    free(ok);
    uint64_t h = sql_content_hash(out);
    cr_assert_eq(h, o->hash[want], "%s: content differs from TXID %llu's", what, (unsigned long long)want);
}

/* 50 random TXIDs and (when times) 50 random timestamps through fn. */
static void check_points(const struct lvnode *n, const char *name, const struct oracle *o, uint64_t min_txid,
                         int times, restore_fn fn, void *arg, unsigned seed)
{
    char out[600], flag[128], what[256];
    snprintf(out, sizeof out, "%s/restored.db", n->dir);
    for (int i = 0; i < 50; i++) {
        uint64_t t = min_txid + rand_r(&seed) % (o->last - min_txid + 1);
        if (i == 0)
            t = o->last;
        if (i == 1)
            t = min_txid;
        snprintf(flag, sizeof flag, "--txid %llu", (unsigned long long)t);
        snprintf(what, sizeof what, "restore %s", flag);
        run_cmd(NULL, "rm -f '%s' '%s-wal' '%s-shm'", out, out, out);
        int rc = fn(n, name, flag, out, arg);
        cr_assert_eq(rc, 0, "%s failed (status %d)", what, rc);
        check_restored(out, o, t, what);
    }
    for (int i = 0; times && i < 50; i++) {
        uint64_t t = min_txid + rand_r(&seed) % (o->last - min_txid + 1);
        int64_t ts = o->time_us[t];
        if (t < o->last && i % 3 != 0) {
            int64_t gap = o->time_us[t + 1] - o->time_us[t];
            if (gap > 1)
                ts += 1 + (int64_t)(rand_r(&seed) % (unsigned)(gap - 1)); /* strictly between */
        }
        while (t < o->last && o->time_us[t + 1] <= ts)
            t++; /* commits sharing a microsecond: the last one wins */
        char iso[40];
        time_t sec = (time_t)(ts / 1000000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(flag, sizeof flag, "--timestamp %s.%06lldZ", iso, (long long)(ts % 1000000));
        snprintf(what, sizeof what, "restore %s (expect TXID %llu)", flag, (unsigned long long)t);
        run_cmd(NULL, "rm -f '%s' '%s-wal' '%s-shm'", out, out, out);
        int rc = fn(n, name, flag, out, arg);
        cr_assert_eq(rc, 0, "%s failed (status %d)", what, rc);
        check_restored(out, o, t, what);
    }
}

static struct oracle g_or;

Test(pitr, oracle_local_log)
{
    struct lvnode *n = lvnode_started(NULL);
    char *path = lvnode_path(n, "pitr.db");
    workload(n, "pitr.db", path, &g_or);
    check_log_times(n, "pitr.db", &g_or);
    struct lvrec *recs = NULL;
    cr_assert_eq(lvnode_log_records(n, "pitr.db", &recs), NTX, "without an archive the log holds every TXID");
    free(recs);
    check_points(n, "pitr.db", &g_or, 1, 0, restore_local, NULL, 1);
    free(path);
    lvnode_stop(n);
}

/* ---- the archive: file:// and s3rver ---- */

/* `litevault restore` with the node's config (no --from: the config's first
 * archive destination, with its S3 options and credentials). */
static int restore_archive(const struct lvnode *n, const char *name, const char *flag, const char *out, void *arg)
{
    char *msg = NULL;
    int rc;
    (void)arg;
    rc = lvnode_restore(n, name, flag, out, &msg);
    if (rc != 0) /* the reason, for the failure report */
        fprintf(stderr, "restore %s %s: status %d: %s\n", name, flag, rc, msg ? msg : "");
    free(msg);
    return rc;
}

/* First TXID restorable from the current lineage (`archive ls --json`), 0 on error. */
static uint64_t archive_first_txid(const struct lvnode *n, const char *name)
{
    uint64_t first = 0;
    json_t *j = lvnode_cli_json(n, NULL, "archive ls", "--db '%s'", name), *dbs, *d, *ls, *l;
    size_t i, k;
    dbs = json_object_get(j, "databases");
    json_array_foreach(dbs, i, d) {
        ls = json_object_get(d, "lineages");
        json_array_foreach(ls, k, l) {
            if (json_is_true(json_object_get(l, "current")))
                first = (uint64_t)json_integer_value(json_object_get(l, "first_txid"));
        }
    }
    json_decref(j);
    return first;
}

/* Wait until the archive holds TXID want. */
static void wait_archived(const struct lvnode *n, const char *name, uint64_t want)
{
    uint64_t last = 0;
    cr_assert(WAIT_FOR((last = lvnode_archive_txid(n, name, NULL)) >= want, LVT_WAIT_MS),
              "the archive reached TXID %llu, not %llu, within %d s", (unsigned long long)last,
              (unsigned long long)want, LVT_WAIT_MS / 1000);
}

/* Segment objects by level in the current lineage, from `archive ls --json`
 * is not enough (no levels): read the manifest through the store API. */
#include "archive/manifest.h"
#include "store/store.h"
#include "archive/current.h"
static void archive_levels(const char *url, const char *name, size_t *l0, size_t *higher, size_t *snaps)
{
    struct store *st = lvstore_open(url);
    struct archive_current cur;
    struct manifest m;
    char err[512], key[1200];
    void *buf = NULL;
    size_t len = 0;
    snprintf(key, sizeof key, "%s/current.json", name);
    cr_assert_eq(store_get(st, key, 0, 0, &buf, &len), 0, "%s", store_last_error(st));
    cr_assert_eq(archive_current_decode(buf, len, &cur, err, sizeof err), 0, "%s", err);
    free(buf);
    snprintf(key, sizeof key, "%s/%s/manifest.json", name, cur.dbid);
    cr_assert_eq(store_get(st, key, 0, 0, &buf, &len), 0, "%s", store_last_error(st));
    cr_assert_eq(manifest_decode(buf, len, &m, err, sizeof err), 0, "%s", err);
    free(buf);
    *l0 = *higher = 0;
    for (size_t i = 0; i < m.nsegs; i++)
        (m.segs[i].level ? (*higher)++ : (*l0)++);
    *snaps = m.nsnaps;
    manifest_free(&m);
    store_close(st);
}

/* More transactions after the workload (TXIDs NTX+1..NTX+NMORE). */
static void more_transactions(const struct lvnode *n, const char *name, const char *path, struct oracle *o)
{
    sqlite3 *db = NULL;
    char sql[256];
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    for (uint64_t k = o->last + 1; k <= NTX + NMORE; k++) {
        snprintf(sql, sizeof sql, "INSERT INTO kv(k, v) VALUES('more-%llu', randomblob(700))", (unsigned long long)k);
        exec_ok(db, sql);
        record_commit(n, name, k, o);
        o->hash[k] = sql_content_hash(path);
        usleep(20000);
    }
    sqlite3_close(db);
    o->last = NTX + NMORE;
}

static void oracle_archive(enum lvdest_kind kind)
{
    char yaml[2048], yaml2[2048];
    size_t l0 = 0, hi = 0, snaps = 0;
    uint64_t last = 0, start = 0;
    static struct oracle o;
    const char *name = "pitr.db";

    memset(&o, 0, sizeof o);
    struct lvdest *d = lvdest_new(kind);
    const char *url = d->url;
    /* Phase 1: compaction windows of 2 s and 6 s, no retention to speak of. */
    lvdest_yaml(d, "    sync-interval: 200ms\n    compaction: [2s, 6s]\n    delete-delay: 1s\n", yaml, sizeof yaml);
    struct lvnode *pN = lvnode_started(yaml);
    char *path = lvnode_path(pN, name);
    workload(pN, name, path, &o);
    check_log_times(pN, name, &o);
    wait_archived(pN, name, o.last);

    /* Before compaction has merged everything: 50 TXIDs, 50 timestamps. */
    check_points(pN, name, &o, 1, 1, restore_archive, NULL, 11);

    /* After compaction: wait for the level-2 window to close, then again. */
    WAIT_FOR((archive_levels(url, name, &l0, &hi, &snaps), hi > 0 && l0 <= 2), LVT_WAIT_MS);
    cr_assert_gt(hi, 0, "no compacted object after %d s (%zu level-0 objects)", LVT_WAIT_MS / 1000, l0);
    check_points(pN, name, &o, 1, 1, restore_archive, NULL, 12);
    lvnode_stop(pN);

    /* Phase 2: a 3 s retention window and 1 s snapshots.  New transactions
     * make a snapshot; then everything before the newest snapshot older
     * than the window goes, and what is left must still be exact. */
    lvdest_yaml(d,
                "    sync-interval: 200ms\n    compaction: [2s, 6s]\n    delete-delay: 1s\n"
                "    snapshot-interval: 1s\n    retention: 3s\n",
                yaml2, sizeof yaml2);
    lvnode_reconfig(pN, NULL, yaml2);
    lvnode_start(pN);
    more_transactions(pN, name, path, &o);
    check_log_times(pN, name, &o);
    wait_archived(pN, name, o.last);
    uint64_t first = 1;
    WAIT_FOR((first = archive_first_txid(pN, name)) > 1, LVT_WAIT_MS);
    cr_assert_gt(first, 1, "retention left the archive starting at TXID %llu", (unsigned long long)first);
    /* Stop the daemon, so that retention (a 3 s window) does not keep
     * moving the earliest point while the restores below run. */
    lvnode_stop(pN);
    first = archive_first_txid(pN, name);
    last = lvnode_archive_txid(pN, name, &start);
    cr_assert_eq(last, o.last);
    start = first;
    archive_levels(url, name, &l0, &hi, &snaps);
    cr_assert_geq(snaps, 1, "retention must keep a snapshot");
    /* A TXID before the first snapshot is refused, not approximated. */
    char out[600];
    snprintf(out, sizeof out, "%s/gone.db", pN->dir);
    cr_assert_neq(restore_archive(pN, name, "--txid 1", out, NULL), 0, "TXID 1 restored after retention");
    cr_assert_neq(access(out, F_OK), 0, "a refused restore left output behind");
    check_points(pN, name, &o, start, 1, restore_archive, NULL, 13);
    /* And the whole archive verifies. */
    char *vout = NULL;
    cr_assert_eq(lvnode_cli(pN, &vout, "archive verify", "--db '%s'", name), 0, "%s", vout);
    free(vout);
    free(path);
}

/* One test per destination kind: oracle_archive_file, oracle_archive_s3. */
#define ORACLE_ARCHIVE(sfx, kind) Test(pitr, oracle_archive_##sfx) { oracle_archive(kind); }
LVDEST_KINDS(ORACLE_ARCHIVE)

/* ---- the archive follows an import ---- */

/* `litevault import` of a new database and over an existing one, on a node
 * that archives: a restore from the archive of the TXID just after each
 * import gives the imported content (for a new database, byte for byte). */
Test(pitr, archive_follows_import)
{
    char in1[600], in2[600], out[600], *o = NULL;
    struct lvnode *pN = lvnode_started("archive:\n  - url: file://./archive\n    sync-interval: 200ms\n");
    snprintf(in1, sizeof in1, "%s/in1.db", pN->dir);
    snprintf(in2, sizeof in2, "%s/in2.db", pN->dir);
    snprintf(out, sizeof out, "%s/restored.db", pN->dir);
    sql_exec(in1, "CREATE TABLE a(x); INSERT INTO a VALUES (1), (2), (3);", 0);
    sql_exec(in2, "PRAGMA journal_mode=WAL; CREATE TABLE b(y TEXT); INSERT INTO b VALUES ('imported');", 0);

    /* A new database: TXID 1 is the import, byte for byte. */
    cr_assert_eq(lvnode_cli(pN, &o, "import", "--db new.db '%s'", in1), 0, "%s", o);
    free(o);
    wait_archived(pN, "new.db", 1);
    cr_assert_eq(restore_archive(pN, "new.db", "--txid 1", out, NULL), 0);
    cr_assert_eq(file_db_checksum(out), file_db_checksum(in1));
    cr_assert_eq(sql_content_hash(out), sql_content_hash(in1));

    /* An existing database with its own history, replaced by another. */
    char *live = lvnode_path(pN, "live.db");
    sql_exec(live, "CREATE TABLE old(z); INSERT INTO old VALUES ('before');", 0);
    sql_exec(live, "INSERT INTO old VALUES ('still before');", 0);
    uint64_t before = lvnode_last_txid(pN, "live.db");
    uint64_t hash_before = sql_content_hash(live);
    cr_assert_eq(lvnode_cli(pN, &o, "import", "--db live.db '%s'", in2), 0, "%s", o);
    free(o);
    uint64_t after = lvnode_last_txid(pN, "live.db");
    cr_assert_eq(after, before + 1, "the import must be one transaction");
    sql_exec(live, "INSERT INTO b VALUES ('after the import');", 0);
    wait_archived(pN, "live.db", after + 1);
    char flag[64];
    snprintf(flag, sizeof flag, "--txid %llu", (unsigned long long)after);
    run_cmd(NULL, "rm -f '%s'", out);
    cr_assert_eq(restore_archive(pN, "live.db", flag, out, NULL), 0);
    cr_assert_eq(sql_content_hash(out), sql_content_hash(in2), "the restore at the import's TXID is not the import");
    snprintf(flag, sizeof flag, "--txid %llu", (unsigned long long)before);
    run_cmd(NULL, "rm -f '%s'", out);
    cr_assert_eq(restore_archive(pN, "live.db", flag, out, NULL), 0);
    cr_assert_eq(sql_content_hash(out), hash_before, "the restore just before the import changed");
    free(live);
    lvnode_stop(pN);
}
