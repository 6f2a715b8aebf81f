/*
 * it_pitr.c -- the point-in-time oracle.
 *
 * A workload of 2,000 transactions on one database, through the mount:
 * inserts, updates and deletes of rows with random blobs, schema changes
 * (CREATE TABLE, ALTER TABLE ADD COLUMN, DROP TABLE), VACUUM, and a switch
 * from journal_mode=DELETE to WAL a third of the way in.  After every
 * commit the test records the content hash of the database (sql_content_hash:
 * every row of every table, independent of the page layout) and, from the
 * log, each TXID's commit time.  Every transaction changes something, so
 * transaction k of the workload is TXID k; the test checks that the log
 * holds exactly as many records.
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

#include "helpers.h"

#define NTX 2000

static struct lvnode pN;
static int pN_used;

static void p_fini(void)
{
    if (pN_used) {
        lvnode_kill9(&pN);
        lvnode_cleanup(&pN);
        pN_used = 0;
    }
}

TestSuite(pitr, .fini = p_fini, .timeout = 600);

/* What the workload left: per TXID (1-based) its content hash and commit time. */
struct oracle {
    uint64_t hash[NTX + 1];   /* content after TXID i */
    int64_t time_us[NTX + 1]; /* commit time of TXID i */
    uint64_t last;            /* last TXID */
};

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free(msg);
}

/* Run the workload on path, filling o->hash. */
static void workload(const char *path, struct oracle *o)
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
        o->hash[k] = sql_content_hash(path);
        if (k % 97 == 0)
            usleep(3000); /* wider gaps between some commits */
    }
    sqlite3_close(db);
    o->last = NTX;
}

/* Collect commit times from the log and check the TXID <-> transaction mapping. */
static void read_times(const struct lvnode *n, const char *name, struct oracle *o)
{
    struct lvrec *recs = NULL;
    int cnt = lvnode_log_records(n, name, &recs);
    cr_assert_eq(cnt, NTX, "the log holds %d records for %d transactions", cnt, NTX);
    for (int i = 0; i < cnt; i++) {
        cr_assert_eq(recs[i].txid, (uint64_t)i + 1);
        o->time_us[i + 1] = recs[i].time_us;
        if (i > 0)
            cr_assert_geq(recs[i].time_us, recs[i - 1].time_us);
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
    lvnode_init(&pN, NULL);
    pN_used = 1;
    lvnode_start(&pN);
    char *path = lvnode_path(&pN, "pitr.db");
    workload(path, &g_or);
    read_times(&pN, "pitr.db", &g_or);
    check_points(&pN, "pitr.db", &g_or, 1, 0, restore_local, NULL, 1);
    free(path);
    lvnode_stop(&pN);
}
