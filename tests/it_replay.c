/*
 * it_replay.c -- the replay property on a real mount.
 *
 * For a seeded random workload (inserts, updates, deletes, schema changes,
 * VACUUM, page size changes, growth and shrink, plus rolled-back and no-op
 * transactions that must not be logged), after every committed transaction N
 * the test records the expected database checksum (file_db_checksum of the
 * file in rollback modes, of a sqlite3_serialize image in WAL mode) and, for a
 * random sample of N, a full copy of the database.  At the end:
 *   - every record N's post-checksum equals the expected checksum after N;
 *   - for every sampled N, `log replay --txid N` equals the saved copy byte
 *     for byte, its checksum equals the expected one, integrity_check is ok.
 *
 * The seed is printed (stderr and every failure message).  Re-run one case
 * with LV_SEED=<seed>.  Blob contents come from the seeded PRNG too, so a
 * seed reproduces the same workload.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sqlite3.h>

#include "lib/lvtest.h"

#define NTX 100      /* write-or-not operations per run */
#define NSAMPLE 15   /* replays at sampled TXIDs per run */
#define MAXTX 512    /* expected[] capacity */

static struct lvnode *N; /* registry-owned */
static uint64_t SEED, RNG;
static const char *MODE;
static int PSZ;
static char TAG[96];

#define CHECK(cond, fmt, ...) cr_assert(cond, "[%s] " fmt, TAG, ##__VA_ARGS__)

static uint64_t rnd(void)
{
    /* xorshift64* */
    RNG ^= RNG >> 12;
    RNG ^= RNG << 25;
    RNG ^= RNG >> 27;
    return RNG * 2685821657736338717ULL;
}

static int rndn(int n)
{
    return (int)(rnd() % (uint64_t)n);
}

#define xsql sqlh_exec /* failures name TAG (sql_set_tag) */
#define qint sqlh_int

static sqlite3 *dbopen(const char *path)
{
    sqlite3 *db = NULL;
    cr_assert(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK,
              "[%s] open %s", TAG, path);
    sqlite3_busy_timeout(db, 10000);
    xsql(db, "PRAGMA journal_mode=%s", MODE);
    return db;
}

/* Insert one row into table tbl with a PRNG blob of len bytes. */
static void insert_blob(sqlite3 *db, const char *tbl, int len)
{
    unsigned char *b = malloc((size_t)len + 8);
    cr_assert(b != NULL);
    for (int i = 0; i < len; i += 8) {
        uint64_t r = rnd();
        memcpy(b + i, &r, 8);
    }
    char *q = sqlite3_mprintf("INSERT INTO \"%w\"(k, v) VALUES(?1, ?2)", tbl);
    sqlite3_stmt *st = NULL;
    cr_assert(sqlite3_prepare_v2(db, q, -1, &st, NULL) == SQLITE_OK, "[%s] %s: %s", TAG, q, sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)(rnd() % 1000));
    sqlite3_bind_blob(st, 2, b, len, SQLITE_TRANSIENT);
    cr_assert(sqlite3_step(st) == SQLITE_DONE, "[%s] %s: %s", TAG, q, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_free(q);
    free(b);
}

static void update_blob(sqlite3 *db, long long id, int len)
{
    unsigned char *b = malloc((size_t)len + 8);
    cr_assert(b != NULL);
    for (int i = 0; i < len; i += 8) {
        uint64_t r = rnd();
        memcpy(b + i, &r, 8);
    }
    sqlite3_stmt *st = NULL;
    cr_assert(sqlite3_prepare_v2(db, "UPDATE t0 SET v = ?1, k = k + 1 WHERE id = ?2", -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_blob(st, 1, b, len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, id);
    cr_assert(sqlite3_step(st) == SQLITE_DONE, "[%s] update: %s", TAG, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    free(b);
}

static int blob_len(void)
{
    int max = PSZ >= 65536 ? PSZ / 2 : 3 * PSZ;
    switch (rndn(4)) {
    case 0:
        return rndn(64);
    case 1:
        return rndn(PSZ / 4 + 1);
    default:
        return rndn(max + 1);
    }
}

static long long random_id(sqlite3 *db)
{
    long long lo = qint(db, "SELECT coalesce(min(id), 0) FROM t0");
    long long hi = qint(db, "SELECT coalesce(max(id), 0) FROM t0");
    return hi > lo ? lo + (long long)(rnd() % (uint64_t)(hi - lo + 1)) : lo;
}

/* Expected state after each TXID. */
static uint64_t expected[MAXTX];
static int saved[MAXTX];

static void copy_file(const char *src, const char *dst)
{
    CHECK(run_cmd(NULL, "cp '%s' '%s'", src, dst) == 0, "cp %s %s", src, dst);
}

/* After an operation: the TXID must have moved by exactly want_delta.  When it
 * moved, remember the expected checksum (and maybe a full copy). */
static uint64_t after_op(const char *path, uint64_t t, int want_delta, const char *what)
{
    uint64_t now = lvnode_last_txid(N, "r.db");
    if (want_delta == -1) {
        /* A rolled-back transaction in a rollback journal mode: SQLite does not
         * restore free pages it reused (see it_capture.c, expect_rollback_noop),
         * so one record holding free pages only is allowed. */
        want_delta = 0;
        if (now == t + 1 && strcmp(MODE, "wal") != 0) {
            uint32_t *pg = NULL, *fl = NULL;
            int np = lvnode_record_pages(N, "r.db", now, &pg);
            int nf = file_freelist_pages(path, &fl);
            CHECK(np > 0 && nf >= 0, "cannot list the pages of TXID %llu", (unsigned long long)now);
            for (int i = 0; i < np; i++) {
                int onfree = 0;
                for (int j = 0; j < nf; j++)
                    onfree |= fl[j] == pg[i];
                CHECK(onfree, "after %s TXID %llu logs page %u, which is not a free page", what,
                      (unsigned long long)now, pg[i]);
            }
            free(pg);
            free(fl);
            want_delta = 1;
        }
    }
    CHECK(now == t + (uint64_t)want_delta, "after %s the TXID is %llu, expected %llu", what,
          (unsigned long long)now, (unsigned long long)(t + want_delta));
    if (now == t)
        return t;
    CHECK(now < MAXTX, "too many transactions");
    char snap[600];
    const char *src = path;
    if (strcmp(MODE, "wal") == 0) {
        snprintf(snap, sizeof snap, "%s/cur.db", N->dir);
        CHECK(snapshot_db(path, snap) == 0, "snapshot_db");
        src = snap;
    }
    expected[now] = file_db_checksum(src);
    if (rndn(NTX) < NSAMPLE + 2) {
        char keep[600];
        snprintf(keep, sizeof keep, "%s/exp-%llu.db", N->dir, (unsigned long long)now);
        copy_file(src, keep);
        saved[now] = 1;
    }
    return now;
}

static void run_workload(const char *mode, int psz)
{
    const char *env = getenv("LV_SEED");
    MODE = mode;
    PSZ = psz;
    SEED = env && *env ? strtoull(env, NULL, 0) : ((uint64_t)time(NULL) * 1000003u) ^ ((uint64_t)getpid() << 16);
    if (!SEED)
        SEED = 1;
    RNG = SEED;
    int av = rndn(3); /* auto_vacuum NONE, FULL, INCREMENTAL */
    snprintf(TAG, sizeof TAG, "%s/%d seed=%llu auto_vacuum=%d", mode, psz, (unsigned long long)SEED, av);
    fprintf(stderr, "replay property: %s (re-run with LV_SEED=%llu)\n", TAG, (unsigned long long)SEED);
    memset(expected, 0, sizeof expected);
    memset(saved, 0, sizeof saved);

    sql_set_tag(TAG);
    N = lvnode_started(NULL);
    char *path = lvnode_path(N, "r.db");
    sqlite3 *db = NULL;
    cr_assert(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    xsql(db, "PRAGMA page_size=%d", psz);
    xsql(db, "PRAGMA auto_vacuum=%d", av);
    xsql(db, "PRAGMA journal_mode=%s", mode);
    xsql(db, "CREATE TABLE t0(id INTEGER PRIMARY KEY, k INTEGER, v BLOB)");
    /* auto_vacuum on an empty file and journal_mode=WAL commit header-only
     * transactions of their own: the workload's accounting starts here. */
    uint64_t t = lvnode_last_txid(N, "r.db");
    CHECK(t >= 1 && t <= 3, "%llu records after creating the database", (unsigned long long)t);
    t = after_op(path, t - 1, 1, "CREATE TABLE");
    uint64_t first = t;
    int extra = 0; /* extra tables created (x1..xN), some dropped */
    int psizes[] = {512, 1024, 4096, 8192, 16384};

    for (int op = 0; op < NTX; op++) {
        int r = rndn(100);
        if (r < 25) {
            int n = 1 + rndn(6);
            xsql(db, "BEGIN");
            for (int i = 0; i < n; i++)
                insert_blob(db, "t0", blob_len());
            xsql(db, "COMMIT");
            t = after_op(path, t, 1, "inserts");
        } else if (r < 40) {
            if (qint(db, "SELECT count(*) FROM t0") == 0)
                continue;
            int n = 1 + rndn(8), changed = 0;
            xsql(db, "BEGIN");
            for (int i = 0; i < n; i++) {
                long long id = random_id(db);
                if (qint(db, "SELECT count(*) FROM t0 WHERE id = %lld", id)) {
                    update_blob(db, id, blob_len());
                    changed = 1;
                }
            }
            xsql(db, "COMMIT");
            t = after_op(path, t, changed, "updates");
        } else if (r < 50) {
            long long lo = random_id(db), n = 1 + rndn(10);
            long long cnt = qint(db, "SELECT count(*) FROM t0 WHERE id BETWEEN %lld AND %lld", lo, lo + n);
            xsql(db, "DELETE FROM t0 WHERE id BETWEEN %lld AND %lld", lo, lo + n);
            t = after_op(path, t, cnt > 0, "a range delete");
        } else if (r < 57) {
            /* schema change */
            int s = rndn(4);
            if (s == 0 || extra == 0) {
                extra++;
                xsql(db, "CREATE TABLE x%d(id INTEGER PRIMARY KEY, k INTEGER, v BLOB)", extra);
                t = after_op(path, t, 1, "CREATE TABLE");
                char tbl[16];
                snprintf(tbl, sizeof tbl, "x%d", extra);
                xsql(db, "BEGIN");
                for (int i = 0; i < 3; i++)
                    insert_blob(db, tbl, blob_len());
                xsql(db, "COMMIT");
                t = after_op(path, t, 1, "inserts into a new table");
            } else if (s == 1) {
                xsql(db, "CREATE INDEX i_x%d_%d ON x%d(k)", extra, op, extra);
                t = after_op(path, t, 1, "CREATE INDEX");
            } else if (s == 2) {
                xsql(db, "ALTER TABLE x%d ADD COLUMN c%d TEXT DEFAULT 'z'", extra, op);
                t = after_op(path, t, 1, "ALTER TABLE ADD COLUMN");
            } else {
                xsql(db, "DROP TABLE x%d", extra);
                extra--;
                t = after_op(path, t, 1, "DROP TABLE");
            }
        } else if (r < 61) {
            xsql(db, "VACUUM");
            t = after_op(path, t, 1, "VACUUM");
        } else if (r < 63) {
            if (strcmp(mode, "wal") == 0) {
                sql_checkpoint(path, rndn(2) ? "TRUNCATE" : "PASSIVE");
                t = after_op(path, t, 0, "a checkpoint");
            } else {
                int nps = psizes[rndn(5)];
                int cur = (int)qint(db, "PRAGMA page_size");
                xsql(db, "PRAGMA page_size=%d", nps);
                xsql(db, "VACUUM");
                t = after_op(path, t, 1, nps == cur ? "VACUUM" : "VACUUM with a new page size");
                CHECK(qint(db, "PRAGMA page_size") == nps, "page size not changed");
                PSZ = nps;
            }
        } else if (r < 68) {
            xsql(db, "BEGIN");
            insert_blob(db, "t0", blob_len());
            xsql(db, "DELETE FROM t0 WHERE id %% 3 = 0");
            xsql(db, "ROLLBACK");
            t = after_op(path, t, -1, "ROLLBACK");
        } else if (r < 74) {
            /* growth */
            int n = PSZ >= 16384 ? 3 + rndn(5) : 10 + rndn(20);
            xsql(db, "BEGIN");
            for (int i = 0; i < n; i++)
                insert_blob(db, "t0", PSZ / 2 + rndn(PSZ));
            xsql(db, "COMMIT");
            t = after_op(path, t, 1, "growth");
        } else if (r < 78) {
            /* shrink */
            long long cnt = qint(db, "SELECT count(*) FROM t0 WHERE id %% 2 = 1");
            xsql(db, "DELETE FROM t0 WHERE id %% 2 = 1");
            t = after_op(path, t, cnt > 0, "a large delete");
            if (av == 2) {
                long long fl = qint(db, "PRAGMA freelist_count");
                xsql(db, "PRAGMA incremental_vacuum(%d)", 1 + rndn(5));
                t = after_op(path, t, fl > 0, "incremental_vacuum");
            }
        } else if (r < 82) {
            if (rndn(2))
                xsql(db, "BEGIN; COMMIT;");
            else
                xsql(db, "BEGIN; SELECT count(*) FROM t0; COMMIT;");
            t = after_op(path, t, 0, "a transaction with no change");
        } else if (r < 86) {
            sqlite3_close(db);
            db = dbopen(path);
            t = after_op(path, t, 0, "closing and reopening");
        } else {
            xsql(db, "BEGIN");
            insert_blob(db, "t0", blob_len());
            long long id = random_id(db);
            xsql(db, "UPDATE t0 SET k = k * 2 WHERE id = %lld", id);
            xsql(db, "DELETE FROM t0 WHERE id = %lld", random_id(db));
            insert_blob(db, "t0", blob_len());
            xsql(db, "COMMIT");
            t = after_op(path, t, 1, "a mixed transaction");
        }
    }
    sqlite3_close(db);
    t = after_op(path, t, 0, "the final close");
    {   /* the last state is always replayed */
        char keep[600];
        const char *src = path;
        char snap[600];
        if (strcmp(mode, "wal") == 0) {
            snprintf(snap, sizeof snap, "%s/cur.db", N->dir);
            CHECK(snapshot_db(path, snap) == 0, "snapshot_db");
            src = snap;
        }
        snprintf(keep, sizeof keep, "%s/exp-%llu.db", N->dir, (unsigned long long)t);
        copy_file(src, keep);
        saved[t] = 1;
    }

    /* Every record's post-checksum is the expected state after it. */
    struct lvrec *recs = NULL;
    int nrec = lvnode_log_records(N, "r.db", &recs);
    CHECK(nrec == (int)t, "the log has %d records, %llu transactions committed", nrec, (unsigned long long)t);
    for (int i = 0; i < nrec; i++) {
        uint64_t x = recs[i].txid;
        CHECK(x == (uint64_t)i + 1, "record %d has TXID %llu", i, (unsigned long long)x);
        if (x < first)
            continue;
        CHECK(recs[i].post_checksum == expected[x], "TXID %llu: logged post-checksum %016llx, database was %016llx",
              (unsigned long long)x, (unsigned long long)recs[i].post_checksum, (unsigned long long)expected[x]);
    }
    free(recs);

    /* Replay at the sampled TXIDs. */
    int replays = 0;
    for (uint64_t x = 1; x <= t; x++) {
        if (!saved[x])
            continue;
        char rp[600], keep[600];
        snprintf(rp, sizeof rp, "%s/replay-%llu.db", N->dir, (unsigned long long)x);
        snprintf(keep, sizeof keep, "%s/exp-%llu.db", N->dir, (unsigned long long)x);
        CHECK(lvnode_replay(N, "r.db", x, rp) == 0, "replay --txid %llu failed", (unsigned long long)x);
        uint64_t ck = file_db_checksum(rp);
        CHECK(ck == expected[x], "replay --txid %llu checksum %016llx, expected %016llx", (unsigned long long)x,
              (unsigned long long)ck, (unsigned long long)expected[x]);
        long long off = -1;
        int d = files_first_diff(rp, keep, &off);
        CHECK(d == 0, "replay --txid %llu differs from the database after TXID %llu at byte %lld",
              (unsigned long long)x, (unsigned long long)x, off);
        CHECK(sql_int(rp, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'") == 1,
              "replay --txid %llu fails integrity_check", (unsigned long long)x);
        CHECK(sql_content_hash(rp) == sql_content_hash(keep), "replay --txid %llu content differs",
              (unsigned long long)x);
        replays++;
    }
    cr_log_info("[%s] %llu transactions, %d replays compared", TAG, (unsigned long long)t, replays);
    CHECK(replays >= 3, "only %d replays sampled", replays);
    lvnode_check_db(N, "r.db");
    free(path);
    lvnode_stop(N);
}

#define R_ONE(mode, psz)                                                       \
    Test(replay, random_##mode##_##psz, .fini = lvt_fini, .timeout = 180)         \
    {                                                                          \
        run_workload(#mode, psz);                                              \
    }
#define R_MODE(mode) R_ONE(mode, 512) R_ONE(mode, 4096) R_ONE(mode, 65536)

R_MODE(delete)
R_MODE(truncate)
R_MODE(persist)
R_MODE(wal)
