/*
 * it_capture.c -- the capture test matrix on a real mount.
 *
 * Every case runs on its own litevault node (started in the test, stopped at
 * its end, cleaned up by .fini even when an assertion fails) and is
 * instantiated for each journal mode it applies to, crossed with page sizes
 * 512, 4096 and 65536.  Test names carry the combination, e.g.
 * capture/basic_wal_65536, so the report says which combination fails.
 *
 * Cases (each ends with lvnode_check_db(): replay == database byte for byte
 * (file in rollback modes, sqlite3_serialize image in WAL mode), replay
 * checksum == status checksum, integrity_check ok on the replay):
 *   capture/basic      TXID 1,2,3.. +1 per write transaction; commit times
 *                      non-decreasing; pre/post checksums chain; ROLLBACK (also
 *                      after a cache spill), read transactions, BEGIN;COMMIT,
 *                      no-op UPDATE, failed INSERT: no record; WAL checkpoints
 *                      PASSIVE/FULL/RESTART/TRUNCATE: no record, still replays.
 *   capture/exclusive  PRAGMA locking_mode=EXCLUSIVE (rollback and WAL).
 *   capture/exclusive_sync_off  the same with synchronous=OFF (rollback):
 *                      one record per transaction although nothing is synced.
 *   capture/vacuum     VACUUM, VACUUM to a new page size (rollback modes),
 *                      auto_vacuum FULL, INCREMENTAL + incremental_vacuum.
 *   capture/multiproc  N forked writers, BEGIN IMMEDIATE/INSERT/COMMIT with a
 *                      busy timeout: rows exact, records == commits exactly.
 *   capture/locks      BEGIN EXCLUSIVE blocks another process (SQLITE_BUSY);
 *                      two processes see each other's commits (mmap'ed -shm).
 *   capture/files      several databases at once, a subdirectory, rename
 *                      (history kept), delete (gone from status), re-create.
 *   capture/unjournaled journal_mode MEMORY and OFF: one record per fsynced commit, log line.
 *   capture/clients    the sqlite3 shell and Python's sqlite3 module.
 *   wal/...            WAL pitfalls: frame overwrite in one transaction,
 *                      psow=0 + synchronous=FULL padding, WAL restart with
 *                      stale frames, journal_size_limit, crashed writer.
 *   rollback/...       hot journal after a SIGKILLed writer, a transaction
 *                      spanning several journal headers.
 *
 * Forked children never call Criterion asserts: they report through their
 * exit status (0 = success) and pipes.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sqlite3.h>

#include "lib/lvtest.h"

/* ------------------------------------------------------------ fixture */

static struct lvnode *N; /* this test's node (registry-owned) */
static char TAG[64];      /* "mode/page size", prefixed to failure messages */
static const char *MODE;  /* journal mode under test */
static int PSZ;           /* page size under test */

#define CHECK(cond, fmt, ...) cr_assert(cond, "[%s] " fmt, TAG, ##__VA_ARGS__)

static void start(const char *mode, int psz)
{
    MODE = mode;
    PSZ = psz;
    snprintf(TAG, sizeof TAG, "%s/%d", mode, psz);
    sql_set_tag(TAG);
    N = lvnode_started(NULL);
}

static int is_wal(void)
{
    return strcmp(MODE, "wal") == 0;
}

static char *P(const char *name)
{
    return lvnode_path(N, name);
}

/* Open name on the mount, busy timeout 10 s, and (mode != NULL) set the journal
 * mode, asserting that SQLite accepted it. */
static sqlite3 *dbopen_mode(const char *name, const char *mode)
{
    char *path = P(name);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, NULL);
    cr_assert(rc == SQLITE_OK, "[%s] open %s: %s", TAG, path, db ? sqlite3_errmsg(db) : "?");
    free(path);
    sqlite3_busy_timeout(db, 10000);
    sqlite3_extended_result_codes(db, 1);
    if (mode) {
        char q[64];
        sqlite3_stmt *st = NULL;
        snprintf(q, sizeof q, "PRAGMA journal_mode=%s", mode);
        cr_assert(sqlite3_prepare_v2(db, q, -1, &st, NULL) == SQLITE_OK, "[%s] %s", TAG, sqlite3_errmsg(db));
        rc = sqlite3_step(st);
        cr_assert(rc == SQLITE_ROW, "[%s] %s on %s: %s", TAG, q, name, sqlite3_errmsg(db));
        const char *got = (const char *)sqlite3_column_text(st, 0);
        cr_assert(got && strcasecmp(got, mode) == 0, "[%s] %s on %s returned %s", TAG, q, name, got ? got : "NULL");
        sqlite3_finalize(st);
    }
    return db;
}

static sqlite3 *dbopen(const char *name)
{
    return dbopen_mode(name, MODE);
}

#define xsql sqlh_exec /* failures name TAG (sql_set_tag) */

static int xsql_rc(sqlite3 *db, const char *sql)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? rc : sqlite3_extended_errcode(db);
}

#define qint sqlh_int

static int blob_size(void)
{
    return PSZ / 3 + 17;
}

/* Create name with page size PSZ and journal mode MODE, one table t with an
 * index; returns the open connection.  Asserts the first records exist. */
static sqlite3 *create_db(const char *name)
{
    sqlite3 *db = dbopen_mode(name, NULL);
    /* page_size first: it only sticks if set before the first write */
    xsql(db, "PRAGMA page_size=%d", PSZ);
    char q[64];
    snprintf(q, sizeof q, "PRAGMA journal_mode=%s", MODE);
    xsql(db, "%s", q);
    xsql(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB)");
    xsql(db, "CREATE INDEX t_k ON t(k)");
    CHECK(qint(db, "PRAGMA page_size") == PSZ, "page_size is %lld, want %d", qint(db, "PRAGMA page_size"), PSZ);
    CHECK(lvnode_last_txid(N, name) >= 2, "%s: no records after CREATE TABLE + CREATE INDEX", name);
    struct lvdbstat st;
    CHECK(lvnode_db_status(N, name, &st) == 1, "%s not in status", name);
    CHECK(strcmp(st.journal_mode, MODE) == 0, "%s: status journal_mode %s", name, st.journal_mode);
    CHECK(st.page_size == (uint32_t)PSZ, "%s: status page_size %u", name, st.page_size);
    return db;
}

static uint64_t TX(const char *name)
{
    return lvnode_last_txid(N, name);
}

#define EXPECT_TX(name, want, what)                                                                      \
    do {                                                                                                 \
        uint64_t got_ = TX(name), want_ = (uint64_t)(want);                                              \
        cr_assert(got_ == want_, "[%s] %s: after %s the last TXID is %llu, expected %llu", TAG, \
                  name, what, (unsigned long long)got_, (unsigned long long)want_);                       \
    } while (0)

/* One write transaction inserting n rows. */
static void insert_rows(sqlite3 *db, int n, int k)
{
    xsql(db, "BEGIN");
    for (int i = 0; i < n; i++)
        xsql(db, "INSERT INTO t(k, v) VALUES(%d, randomblob(%d))", k, blob_size());
    xsql(db, "COMMIT");
}

/* Record-level invariants of name's log: TXIDs 1..n, the first a snapshot,
 * commit times non-decreasing, checksums chained, page size = want_psz if set. */
static void check_records(const char *name)
{
    struct lvrec *r = NULL;
    int n = lvnode_log_records(N, name, &r);
    CHECK(n >= 1, "%s: log ls returned %d records", name, n);
    CHECK(r[0].txid == 1, "%s: first TXID is %llu", name, (unsigned long long)r[0].txid);
    CHECK(r[0].snapshot, "%s: the first record is not a snapshot", name);
    CHECK(r[0].pre_checksum == 0, "%s: first record pre-checksum %016llx", name,
          (unsigned long long)r[0].pre_checksum);
    for (int i = 1; i < n; i++) {
        CHECK(r[i].txid == r[i - 1].txid + 1, "%s: TXID %llu follows %llu", name, (unsigned long long)r[i].txid,
              (unsigned long long)r[i - 1].txid);
        CHECK(r[i].time_us >= r[i - 1].time_us, "%s: TXID %llu commit time %lld < previous %lld", name,
              (unsigned long long)r[i].txid, (long long)r[i].time_us, (long long)r[i - 1].time_us);
        CHECK(r[i].pre_checksum == r[i - 1].post_checksum, "%s: TXID %llu pre-checksum does not chain", name,
              (unsigned long long)r[i].txid);
        CHECK(r[i].pages >= 1, "%s: TXID %llu has no pages", name, (unsigned long long)r[i].txid);
        CHECK(!r[i].recovered, "%s: TXID %llu is a recovered record in a crash-free run", name,
              (unsigned long long)r[i].txid);
    }
    free(r);
}

static void check(const char *name)
{
    lvnode_check_db(N, name);
}

/* In a rollback journal mode SQLite reuses freelist leaf pages without
 * journaling them (their content is meaningless), so a rolled-back or crashed
 * transaction may leave different bytes in free pages only.  The database file
 * then really differs from the last record, so the log must have exactly one
 * record whose pages are all on the freelist.  With an empty freelist before
 * the transaction (had_free == 0), or in WAL mode, no record at all is allowed.
 * Returns the last TXID. */
static uint64_t expect_rollback_noop(const char *name, uint64_t t, int had_free, const char *what)
{
    uint64_t got = TX(name);
    if (got == t)
        return t;
    CHECK(got == t + 1 && had_free && !is_wal(), "%s: after %s the last TXID is %llu, expected %llu%s", name, what,
          (unsigned long long)got, (unsigned long long)t, had_free ? " (or +1 for reused free pages)" : "");
    uint32_t *pg = NULL, *fl = NULL;
    char *path = P(name);
    int np = lvnode_record_pages(N, name, got, &pg);
    int nf = file_freelist_pages(path, &fl);
    CHECK(np > 0 && nf >= 0, "%s: cannot list record %llu pages (%d) or the freelist (%d)", name,
          (unsigned long long)got, np, nf);
    for (int i = 0; i < np; i++) {
        int onfree = 0;
        for (int j = 0; j < nf; j++)
            onfree |= fl[j] == pg[i];
        CHECK(onfree, "%s: after %s record %llu holds page %u, which is not a free page", name, what,
              (unsigned long long)got, pg[i]);
    }
    cr_log_info("[%s] %s: %s left %d reused free page(s) changed; logged as TXID %llu", TAG, name, what, np,
                (unsigned long long)got);
    free(pg);
    free(fl);
    free(path);
    return got;
}

/* BEGIN; grow and rewrite with a 5-page cache (spills); ROLLBACK. */
static uint64_t spill_rollback(sqlite3 *db, const char *name, uint64_t t)
{
    int had_free = qint(db, "PRAGMA freelist_count") > 0;
    xsql(db, "PRAGMA cache_size=5");
    xsql(db, "BEGIN");
    for (int i = 0; i < 40; i++)
        xsql(db, "INSERT INTO t(k, v) VALUES(%d, randomblob(%d))", 1000 + i, blob_size());
    xsql(db, "UPDATE t SET v = randomblob(%d)", blob_size());
    xsql(db, "ROLLBACK");
    xsql(db, "PRAGMA cache_size=-2000");
    return expect_rollback_noop(name, t, had_free, "ROLLBACK of a transaction whose cache spilled");
}

/* ---------------------------------------------------------- instantiation */

#define T_ONE(suite, name, fn, mode, psz)                                                  \
    Test(suite, name##_##mode##_##psz, .fini = lvt_fini, .timeout = 120)                     \
    {                                                                                      \
        start(#mode, psz);                                                                 \
        fn();                                                                              \
        lvnode_stop(N);                                                                   \
    }
#define T_MODE(suite, name, fn, mode)          \
    T_ONE(suite, name, fn, mode, 512)          \
    T_ONE(suite, name, fn, mode, 4096)         \
    T_ONE(suite, name, fn, mode, 65536)
#define T_ROLLBACK(suite, name, fn)            \
    T_MODE(suite, name, fn, delete)            \
    T_MODE(suite, name, fn, truncate)          \
    T_MODE(suite, name, fn, persist)
#define T_WAL(suite, name, fn) T_MODE(suite, name, fn, wal)
#define T_ALL(suite, name, fn) T_ROLLBACK(suite, name, fn) T_WAL(suite, name, fn)

/* ------------------------------------------------------------ basic */

static void case_basic(void)
{
    sqlite3 *db = create_db("a.db");
    uint64_t t = TX("a.db");
    check_records("a.db");

    /* +1 exactly per write transaction. */
    for (int i = 0; i < 6; i++) {
        xsql(db, "BEGIN; INSERT INTO t(k, v) VALUES(%d, randomblob(%d)); INSERT INTO t(k, v) VALUES(%d, zeroblob(%d));"
                 "UPDATE t SET k = k + 1 WHERE id %% 3 = 0; COMMIT;",
             i, blob_size(), i, blob_size() * 2);
        EXPECT_TX("a.db", ++t, "a write transaction");
    }
    xsql(db, "DELETE FROM t WHERE id = 2");
    EXPECT_TX("a.db", ++t, "an autocommit DELETE");
    xsql(db, "UPDATE t SET v = randomblob(%d) WHERE id = 1", blob_size());
    EXPECT_TX("a.db", ++t, "an autocommit UPDATE");
    check("a.db");

    /* No record for these. */
    xsql(db, "BEGIN; INSERT INTO t(k, v) VALUES(99, randomblob(%d)); ROLLBACK;", blob_size());
    EXPECT_TX("a.db", t, "ROLLBACK");
    /* A rollback after the cache spilled pages to the database file / WAL,
     * first with an empty freelist, then with free pages to reuse. */
    t = spill_rollback(db, "a.db", t);
    check("a.db");
    xsql(db, "DELETE FROM t WHERE id %% 4 = 1");
    EXPECT_TX("a.db", ++t, "a DELETE");
    CHECK(qint(db, "PRAGMA freelist_count") > 0, "no free pages after the DELETE");
    t = spill_rollback(db, "a.db", t);
    check("a.db");
    xsql(db, "BEGIN; SELECT count(*) FROM t; COMMIT;");
    EXPECT_TX("a.db", t, "a read transaction");
    (void)qint(db, "SELECT count(*) FROM t");
    EXPECT_TX("a.db", t, "an autocommit SELECT");
    xsql(db, "BEGIN; COMMIT;");
    EXPECT_TX("a.db", t, "BEGIN;COMMIT;");
    xsql(db, "BEGIN IMMEDIATE; COMMIT;");
    EXPECT_TX("a.db", t, "BEGIN IMMEDIATE;COMMIT;");
    xsql(db, "BEGIN EXCLUSIVE; SELECT 1; COMMIT;");
    EXPECT_TX("a.db", t, "BEGIN EXCLUSIVE;COMMIT;");
    xsql(db, "UPDATE t SET k = 5 WHERE id < 0");
    EXPECT_TX("a.db", t, "an UPDATE matching no row");
    int rc = xsql_rc(db, "INSERT INTO t(id, k) SELECT min(id), 1 FROM t");
    CHECK((rc & 0xff) == SQLITE_CONSTRAINT, "duplicate key insert returned %d", rc);
    EXPECT_TX("a.db", t, "a failed INSERT");

    if (is_wal()) {
        static const char *const modes[] = {"PASSIVE", "FULL", "RESTART", "TRUNCATE"};
        char *path = P("a.db");
        for (int i = 0; i < 4; i++) {
            insert_rows(db, 3, 200 + i);
            EXPECT_TX("a.db", ++t, "a write transaction");
            sql_checkpoint(path, modes[i]);
            EXPECT_TX("a.db", t, modes[i]);
            check("a.db");
            xsql(db, "UPDATE t SET k = k + 1 WHERE id %% 2 = 1");
            EXPECT_TX("a.db", ++t, "an UPDATE after a checkpoint");
            check("a.db");
        }
        /* TRUNCATE checkpoint with no other connection: the file itself equals the replay. */
        sqlite3_close(db);
        db = NULL;
        sql_checkpoint(path, "TRUNCATE");
        struct stat st;
        char *wal = P("a.db-wal");
        CHECK(stat(wal, &st) != 0 || st.st_size == 0, "WAL not empty after a TRUNCATE checkpoint");
        free(wal);
        char rp[600];
        snprintf(rp, sizeof rp, "%s/replay-direct.db", N->dir);
        CHECK(lvnode_replay(N, "a.db", 0, rp) == 0, "replay failed");
        CHECK(files_equal(rp, path), "checkpointed file differs from the replay");
        free(path);
    }
    if (db)
        sqlite3_close(db);
    /* The last close (WAL: checkpoint + delete of the WAL) writes no record. */
    EXPECT_TX("a.db", t, "closing the last connection");
    check_records("a.db");
    check("a.db");
}
T_ALL(capture, basic, case_basic)

/* ------------------------------------------------------------ exclusive */

static void case_exclusive(void)
{
    sqlite3 *db = create_db("x.db");
    sqlite3_close(db);
    uint64_t t = TX("x.db");
    db = dbopen_mode("x.db", NULL);
    xsql(db, "PRAGMA locking_mode=EXCLUSIVE");
    char q[64];
    snprintf(q, sizeof q, "PRAGMA journal_mode=%s", MODE);
    xsql(db, "%s", q);
    for (int i = 0; i < 6; i++) {
        insert_rows(db, 2, i);
        EXPECT_TX("x.db", ++t, "a write transaction under locking_mode=EXCLUSIVE");
    }
    xsql(db, "UPDATE t SET v = randomblob(%d) WHERE id %% 2 = 0", blob_size());
    EXPECT_TX("x.db", ++t, "an UPDATE under locking_mode=EXCLUSIVE");
    xsql(db, "BEGIN; DELETE FROM t WHERE id = 3; ROLLBACK;");
    EXPECT_TX("x.db", t, "ROLLBACK under locking_mode=EXCLUSIVE");
    xsql(db, "BEGIN; COMMIT;");
    EXPECT_TX("x.db", t, "BEGIN;COMMIT; under locking_mode=EXCLUSIVE");
    if (!is_wal())
        check("x.db"); /* reads the file only: fine while the lock is held */
    /* Another connection cannot write while the exclusive lock is held. */
    {
        char *path = P("x.db");
        sqlite3 *o = NULL;
        sqlite3_open_v2(path, &o, SQLITE_OPEN_READWRITE, NULL);
        int rc = sqlite3_exec(o, "INSERT INTO t(k) VALUES(1)", NULL, NULL, NULL);
        CHECK(rc == SQLITE_BUSY, "a second connection wrote under locking_mode=EXCLUSIVE (rc %d)", rc);
        sqlite3_close(o);
        free(path);
    }
    sqlite3_close(db);
    EXPECT_TX("x.db", t, "closing the exclusive connection");
    check_records("x.db");
    check("x.db");
    /* Back to normal locking. */
    db = dbopen("x.db");
    insert_rows(db, 1, 77);
    EXPECT_TX("x.db", ++t, "a write transaction after the exclusive connection closed");
    sqlite3_close(db);
    check("x.db");
}
T_ALL(capture, exclusive, case_exclusive)

/* locking_mode=EXCLUSIVE with synchronous=OFF: SQLite commits by zeroing
 * the journal's header (or truncating it) and syncs nothing, and starts the
 * next transaction by writing a new header over it.  With the journal on
 * kernel passthrough the daemon sees only the main file's writes, and
 * tells transactions apart by the header's nonce: five transactions in a
 * row, with nobody asking the daemon in between, are five records. */
static void case_exclusive_sync_off(void)
{
    sqlite3 *db = create_db("xo.db");
    sqlite3_close(db);
    char *j = P("xo.db-journal");
    CHECK(unlink(j) == 0 || errno == ENOENT, "unlink %s: %s", j, strerror(errno)); /* PERSIST's: created anew */
    free(j);
    uint64_t t = TX("xo.db");
    db = dbopen_mode("xo.db", NULL);
    xsql(db, "PRAGMA locking_mode=EXCLUSIVE");
    xsql(db, "PRAGMA journal_mode=%s", MODE);
    xsql(db, "PRAGMA synchronous=OFF");
    for (int i = 0; i < 5; i++)
        insert_rows(db, 2, i);
    xsql(db, "UPDATE t SET v = randomblob(%d) WHERE id %% 2 = 0", blob_size());
    EXPECT_TX("xo.db", t + 6, "six write transactions under locking_mode=EXCLUSIVE and synchronous=OFF");
    insert_rows(db, 1, 9);
    sqlite3_close(db);
    EXPECT_TX("xo.db", t + 7, "a last transaction, then closing the connection");
    check_records("xo.db");
    check("xo.db");
}
T_ONE(capture, exclusive_sync_off, case_exclusive_sync_off, delete, 4096)
T_ONE(capture, exclusive_sync_off, case_exclusive_sync_off, truncate, 4096)
T_ONE(capture, exclusive_sync_off, case_exclusive_sync_off, persist, 4096)
T_ONE(capture, exclusive_sync_off, case_exclusive_sync_off, persist, 512)

/* ------------------------------------------------------------ vacuum */

static void case_vacuum(void)
{
    sqlite3 *db = create_db("v.db");
    uint64_t t = TX("v.db");
    int rows = PSZ == 65536 ? 24 : 60;
    insert_rows(db, rows, 1);
    EXPECT_TX("v.db", ++t, "inserts");
    xsql(db, "DELETE FROM t WHERE id %% 4 != 0");
    EXPECT_TX("v.db", ++t, "a DELETE");
    long long before = qint(db, "PRAGMA page_count");
    CHECK(qint(db, "PRAGMA freelist_count") > 0, "no free pages after the DELETE");
    xsql(db, "VACUUM");
    EXPECT_TX("v.db", ++t, "VACUUM");
    long long after = qint(db, "PRAGMA page_count");
    CHECK(after < before, "VACUUM did not shrink the database (%lld -> %lld pages)", before, after);
    check("v.db");

    if (!is_wal()) {
        int nps = PSZ == 512 ? 4096 : PSZ == 4096 ? 65536 : 1024;
        xsql(db, "PRAGMA page_size=%d", nps);
        xsql(db, "VACUUM");
        EXPECT_TX("v.db", ++t, "VACUUM to a new page size");
        CHECK(qint(db, "PRAGMA page_size") == nps, "page size not changed by VACUUM");
        struct lvdbstat st;
        CHECK(lvnode_db_status(N, "v.db", &st) == 1, "v.db not in status");
        CHECK(st.page_size == (uint32_t)nps, "status page_size %u, expected %d", st.page_size, nps);
        check("v.db");
        insert_rows(db, 3, 2);
        EXPECT_TX("v.db", ++t, "inserts after the page size change");
        check("v.db");
    }

    xsql(db, "PRAGMA auto_vacuum=FULL");
    xsql(db, "VACUUM");
    EXPECT_TX("v.db", ++t, "VACUUM enabling auto_vacuum=FULL");
    CHECK(qint(db, "PRAGMA auto_vacuum") == 1, "auto_vacuum not FULL");
    insert_rows(db, rows / 2, 3);
    EXPECT_TX("v.db", ++t, "inserts");
    before = qint(db, "PRAGMA page_count");
    xsql(db, "DELETE FROM t WHERE k = 3");
    EXPECT_TX("v.db", ++t, "a DELETE under auto_vacuum=FULL");
    CHECK(qint(db, "PRAGMA freelist_count") == 0, "auto_vacuum=FULL left free pages");
    CHECK(qint(db, "PRAGMA page_count") < before, "auto_vacuum=FULL did not shrink the file");
    check("v.db");

    /* FULL -> INCREMENTAL rewrites the header at once (no VACUUM needed). */
    xsql(db, "PRAGMA auto_vacuum=INCREMENTAL");
    EXPECT_TX("v.db", ++t, "PRAGMA auto_vacuum=INCREMENTAL on a FULL database");
    xsql(db, "VACUUM");
    EXPECT_TX("v.db", ++t, "VACUUM enabling auto_vacuum=INCREMENTAL");
    CHECK(qint(db, "PRAGMA auto_vacuum") == 2, "auto_vacuum not INCREMENTAL");
    xsql(db, "BEGIN");
    for (int i = 0; i < rows; i++)
        xsql(db, "INSERT INTO t(k, v) VALUES(4, randomblob(%d))", blob_size() * 2);
    xsql(db, "COMMIT");
    EXPECT_TX("v.db", ++t, "inserts");
    xsql(db, "DELETE FROM t WHERE k = 4");
    EXPECT_TX("v.db", ++t, "a DELETE under auto_vacuum=INCREMENTAL");
    long long fl = qint(db, "PRAGMA freelist_count");
    CHECK(fl >= 3, "only %lld free pages after the DELETE", fl);
    xsql(db, "PRAGMA incremental_vacuum(2)");
    EXPECT_TX("v.db", ++t, "incremental_vacuum(2)");
    CHECK(qint(db, "PRAGMA freelist_count") == fl - 2, "incremental_vacuum(2) freed %lld pages",
          fl - qint(db, "PRAGMA freelist_count"));
    check("v.db");
    xsql(db, "PRAGMA incremental_vacuum");
    EXPECT_TX("v.db", ++t, "incremental_vacuum");
    CHECK(qint(db, "PRAGMA freelist_count") == 0, "free pages left after incremental_vacuum");
    xsql(db, "PRAGMA incremental_vacuum");
    EXPECT_TX("v.db", t, "incremental_vacuum with nothing to free");
    sqlite3_close(db);
    check_records("v.db");
    check("v.db");
}
T_ALL(capture, vacuum, case_vacuum)

/* ------------------------------------------------------------ multiproc */

#define NCHILD 4
#define NTX 20

static int child_writer(int id)
{
    char *path = P("m.db");
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        return 2;
    sqlite3_busy_timeout(db, 30000);
    char q[128];
    snprintf(q, sizeof q, "PRAGMA journal_mode=%s", MODE);
    if (sqlite3_exec(db, q, NULL, NULL, NULL) != SQLITE_OK)
        return 3;
    for (int i = 0; i < NTX; i++) {
        char *s = sqlite3_mprintf("BEGIN IMMEDIATE; INSERT INTO t(k, v) VALUES(%d, randomblob(%d)); COMMIT;", id,
                                  blob_size());
        int rc = sqlite3_exec(db, s, NULL, NULL, NULL);
        sqlite3_free(s);
        if (rc != SQLITE_OK) {
            fprintf(stderr, "child %d: tx %d: %s\n", id, i, sqlite3_errmsg(db));
            return 4;
        }
    }
    sqlite3_close(db);
    return 0;
}

static void case_multiproc(void)
{
    sqlite3 *db = create_db("m.db");
    sqlite3_close(db);
    uint64_t t = TX("m.db");
    pid_t kids[NCHILD];
    fflush(NULL);
    for (int i = 0; i < NCHILD; i++) {
        kids[i] = fork();
        CHECK(kids[i] >= 0, "fork");
        if (kids[i] == 0)
            _exit(child_writer(i));
    }
    for (int i = 0; i < NCHILD; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d failed (status %d)", i, st);
    }
    db = dbopen("m.db");
    CHECK(qint(db, "SELECT count(*) FROM t") == NCHILD * NTX, "row count %lld, expected %d",
          qint(db, "SELECT count(*) FROM t"), NCHILD * NTX);
    for (int i = 0; i < NCHILD; i++)
        CHECK(qint(db, "SELECT count(*) FROM t WHERE k = %d", i) == NTX, "writer %d rows", i);
    sqlite3_close(db);
    EXPECT_TX("m.db", t + NCHILD * NTX, "the concurrent writers");
    check_records("m.db");
    check("m.db");
}
T_ALL(capture, multiproc, case_multiproc)

/* ------------------------------------------------------------ locks */

/* Child: open name, return a status telling whether a write (and, for rollback
 * modes, a read) is blocked with SQLITE_BUSY while the parent holds BEGIN EXCLUSIVE. */
static int child_blocked(int expect_read_busy, long long rows)
{
    char *path = P("l.db");
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        return 2;
    /* no busy timeout: SQLITE_BUSY at once */
    int rc = sqlite3_exec(db, "INSERT INTO t(k) VALUES(-1)", NULL, NULL, NULL);
    if (rc != SQLITE_BUSY)
        return 10;
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (expect_read_busy && rc != SQLITE_BUSY)
        return 11;
    if (!expect_read_busy && (rc != SQLITE_ROW || sqlite3_column_int64(st, 0) != rows))
        return 12; /* WAL: readers see the last commit */
    sqlite3_finalize(st);
    sqlite3_close(db);
    return 0;
}

static int rd_byte(int fd)
{
    unsigned char c;
    return read(fd, &c, 1) == 1 ? c : -1;
}

static void wr_byte(int fd, int v)
{
    unsigned char c = (unsigned char)v;
    if (write(fd, &c, 1) != 1)
        _exit(99);
}

/* Child of the visibility test: see the parent's commit, commit in turn. */
static int child_visibility(int in, int out)
{
    char *path = P("l.db");
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        return 2;
    sqlite3_busy_timeout(db, 10000);
    char q[64];
    snprintf(q, sizeof q, "PRAGMA journal_mode=%s", MODE);
    if (sqlite3_exec(db, q, NULL, NULL, NULL) != SQLITE_OK)
        return 3;
    for (int round = 0; round < 5; round++) {
        int want = rd_byte(in); /* parent committed; want = its row count */
        if (want < 0)
            return 4;
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL);
        if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_int64(st, 0) != want) {
            fprintf(stderr, "child: sees %lld rows, parent has %d\n", (long long)sqlite3_column_int64(st, 0), want);
            return 5;
        }
        sqlite3_finalize(st);
        if (sqlite3_exec(db, "INSERT INTO t(k) VALUES(-2)", NULL, NULL, NULL) != SQLITE_OK)
            return 6;
        wr_byte(out, want + 1);
    }
    sqlite3_close(db);
    return 0;
}

static void case_locks(void)
{
    sqlite3 *db = create_db("l.db");
    insert_rows(db, 3, 1);
    uint64_t t = TX("l.db");
    xsql(db, "BEGIN EXCLUSIVE; INSERT INTO t(k) VALUES(7);");
    fflush(NULL);
    pid_t p = fork();
    CHECK(p >= 0, "fork");
    if (p == 0)
        _exit(child_blocked(!is_wal(), 3));
    int st;
    waitpid(p, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "another process was not blocked by BEGIN EXCLUSIVE as on a local disk (child status %d)",
          WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    xsql(db, "COMMIT");
    EXPECT_TX("l.db", ++t, "the EXCLUSIVE transaction");

    /* Ping-pong between two processes, each seeing the other's commit. */
    int p2c[2], c2p[2];
    CHECK(pipe(p2c) == 0 && pipe(c2p) == 0, "pipe");
    fflush(NULL);
    p = fork();
    CHECK(p >= 0, "fork");
    if (p == 0) {
        close(p2c[1]);
        close(c2p[0]);
        _exit(child_visibility(p2c[0], c2p[1]));
    }
    close(p2c[0]);
    close(c2p[1]);
    for (int round = 0; round < 5; round++) {
        xsql(db, "INSERT INTO t(k) VALUES(-3)");
        t++;
        long long rows = qint(db, "SELECT count(*) FROM t");
        wr_byte(p2c[1], (int)rows);
        int got = rd_byte(c2p[0]);
        CHECK(got == rows + 1, "child did not commit (round %d, got %d)", round, got);
        t++;
        CHECK(qint(db, "SELECT count(*) FROM t") == rows + 1, "the parent does not see the child's commit");
    }
    close(p2c[1]);
    close(c2p[0]);
    waitpid(p, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "visibility child failed (status %d)",
          WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    EXPECT_TX("l.db", t, "10 alternating commits from two processes");
    check("l.db");
    sqlite3_close(db);
    check_records("l.db");
    check("l.db");
}
T_ALL(capture, locks, case_locks)

/* ------------------------------------------------------------ files */

static int status_lists(const char *name)
{
    struct lvdbstat st;
    int r = lvnode_db_status(N, name, &st);
    CHECK(r >= 0, "status --json failed");
    return r;
}

static void case_files(void)
{
    char *sub = P("sub");
    CHECK(mkdir(sub, 0755) == 0, "mkdir on the mount: %s", strerror(errno));
    free(sub);
    static const char *const names[] = {"a.db", "b.db", "sub/c.db"};
    sqlite3 *db[3];
    uint64_t t[3];
    for (int i = 0; i < 3; i++) {
        db[i] = create_db(names[i]);
        t[i] = TX(names[i]);
    }
    /* Interleaved writes, all three connections open. */
    for (int r = 0; r < 5; r++) {
        for (int i = 0; i < 3; i++) {
            if ((r + i) % 3 == 2)
                continue;
            insert_rows(db[i], 1 + i, r);
            t[i]++;
        }
        for (int i = 0; i < 3; i++)
            EXPECT_TX(names[i], t[i], "interleaved writes to several databases");
    }
    struct stat st;
    char *data_sub;
    CHECK(asprintf(&data_sub, "%s/files/sub/c.db", N->data) > 0, "asprintf");
    CHECK(stat(data_sub, &st) == 0, "the subdirectory database is not mirrored at %s", data_sub);
    free(data_sub);
    for (int i = 0; i < 3; i++) {
        check(names[i]);
        sqlite3_close(db[i]);
        check_records(names[i]);
    }

    /* Rename keeps the history. */
    char *a = P("a.db"), *r = P("r.db");
    uint64_t ta = t[0];
    CHECK(rename(a, r) == 0, "rename a.db r.db: %s", strerror(errno));
    CHECK(!status_lists("a.db"), "a.db still in status after the rename");
    CHECK(status_lists("r.db") == 1, "r.db not in status after the rename");
    EXPECT_TX("r.db", ta, "the rename (log ls --db r.db must show a.db's history)");
    check_records("r.db");
    sqlite3 *x = dbopen("r.db");
    insert_rows(x, 1, 9);
    sqlite3_close(x);
    EXPECT_TX("r.db", ta + 1, "a write to the renamed database");
    check("r.db");

    /* A rename inside the subdirectory, then out of it. */
    char *c = P("sub/c.db"), *c2 = P("sub/c2.db"), *c3 = P("c3.db");
    CHECK(rename(c, c2) == 0, "rename sub/c.db sub/c2.db: %s", strerror(errno));
    EXPECT_TX("sub/c2.db", t[2], "the rename in a subdirectory");
    CHECK(rename(c2, c3) == 0, "rename sub/c2.db c3.db: %s", strerror(errno));
    EXPECT_TX("c3.db", t[2], "the rename out of a subdirectory");
    x = dbopen("c3.db");
    insert_rows(x, 1, 9);
    sqlite3_close(x);
    EXPECT_TX("c3.db", t[2] + 1, "a write after two renames");
    check("c3.db");

    /* An exchange is refused (the registry follows one-way renames): both stay. */
    errno = 0;
    CHECK(renameat2(AT_FDCWD, r, AT_FDCWD, c3, RENAME_EXCHANGE) != 0 && errno == EINVAL,
          "renameat2(RENAME_EXCHANGE) r.db c3.db: %s, not EINVAL", errno ? strerror(errno) : "it worked");
    EXPECT_TX("r.db", ta + 1, "a refused exchange");
    EXPECT_TX("c3.db", t[2] + 1, "a refused exchange");

    /* Delete. */
    char *b = P("b.db");
    CHECK(unlink(b) == 0, "unlink b.db: %s", strerror(errno));
    CHECK(!status_lists("b.db"), "a deleted database still shows in status");
    struct lvrec *recs = NULL;
    int nrec = lvnode_log_records(N, "b.db", &recs);
    free(recs);
    CHECK(nrec <= 0, "log ls --db b.db still lists %d records after the delete", nrec);

    /* A new database under the old name starts its own log at TXID 1. */
    x = create_db("a.db");
    sqlite3_close(x);
    check_records("a.db");
    CHECK(TX("a.db") < ta, "the new a.db inherited the old history (TXID %llu)", (unsigned long long)TX("a.db"));
    check("a.db");
    EXPECT_TX("r.db", ta + 1, "creating a new a.db");
    check("r.db");
    free(a);
    free(r);
    free(b);
    free(c);
    free(c2);
    free(c3);
}
T_ALL(capture, files, case_files)

/* ------------------------------------------------------------ unjournaled */

/* The daemon log has the line explaining how OFF/MEMORY writes are captured. */
static int log_has_unjournaled_note(const char *name)
{
    char *txt = lvnode_log_text(N);
    int found = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n"))
        if (strstr(line, name) && strstr(line, "journal_mode") && strstr(line, "OFF") && strstr(line, "MEMORY"))
            found = 1;
    free(txt);
    return found;
}

/*
 * journal_mode MEMORY and OFF: there is no on-disk journal, so the daemon
 * captures the writes at the writer's fsync (synchronous=FULL fsyncs the
 * database once per commit in these modes) or close.  Each transaction must
 * be exactly one record, the log must agree with the file, and the daemon
 * must say once how it captures such writes.
 */
static void case_unjournaled(void)
{
    static const char *const modes[] = {"MEMORY", "OFF"};
    sqlite3 *db = create_db("n.db");
    insert_rows(db, 4, 1);
    sqlite3_close(db);
    char *path = P("n.db");
    for (int i = 0; i < 2; i++) {
        db = dbopen_mode("n.db", NULL);
        int rc1 = xsql_rc(db, i == 0 ? "PRAGMA journal_mode=MEMORY" : "PRAGMA journal_mode=OFF");
        CHECK(rc1 == SQLITE_OK, "journal_mode=%s: %d", modes[i], rc1);
        xsql(db, "PRAGMA synchronous=FULL");
        check("n.db"); /* leaving WAL (if it was) is itself logged consistently */
        uint64_t t = TX("n.db");
        xsql(db, "INSERT INTO t(k, v) VALUES(%d, randomblob(100))", 50 + i);
        EXPECT_TX("n.db", t + 1, "an INSERT with journal_mode=MEMORY/OFF and synchronous=FULL");
        xsql(db, "BEGIN; UPDATE t SET v = randomblob(300); INSERT INTO t(k) VALUES(%d); COMMIT;", 60 + i);
        EXPECT_TX("n.db", t + 2, "a multi-statement transaction with journal_mode=MEMORY/OFF");
        uint64_t content = sql_content_hash(path);
        sqlite3_close(db);
        EXPECT_TX("n.db", t + 2, "closing the connection");
        CHECK(sql_content_hash(path) == content, "journal_mode=%s: content changed after close", modes[i]);
        CHECK(sql_int(path, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check='ok'") == 1,
              "integrity_check after journal_mode=%s writes", modes[i]);
        check("n.db");
    }
    CHECK(log_has_unjournaled_note("n.db"), "the daemon log does not explain how OFF/MEMORY writes are captured");
    db = dbopen("n.db");
    uint64_t t = TX("n.db");
    insert_rows(db, 1, 2);
    sqlite3_close(db);
    EXPECT_TX("n.db", t + 1, "a write in a journaled mode afterwards");
    check("n.db");
    free(path);
}

T_ALL(capture, unjournaled, case_unjournaled)

/* ------------------------------------------------------------ clients */

static void case_clients(void)
{
    char *path = P("c.db");
    /* The sqlite3 shell creates the database. */
    int rc = run_cmd(NULL,
                     "sqlite3 '%s' 'PRAGMA page_size=%d;' 'PRAGMA journal_mode=%s;' "
                     "'CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB);' "
                     "'INSERT INTO t(k, v) VALUES(1, randomblob(%d));' "
                     "'BEGIN; INSERT INTO t(k) VALUES(2); INSERT INTO t(k) VALUES(3); COMMIT;' "
                     "'BEGIN; DELETE FROM t; ROLLBACK;' >/dev/null",
                     path, PSZ, MODE, blob_size());
    CHECK(rc == 0, "sqlite3 shell failed (%d)", rc);
    uint64_t t = TX("c.db");
    CHECK(t >= 3, "sqlite3 shell: %llu records", (unsigned long long)t);
    CHECK(sql_int(path, "SELECT count(*) FROM t") == 3, "rows after the shell");
    check("c.db");
    rc = run_cmd(NULL, "sqlite3 '%s' 'PRAGMA journal_mode=%s;' 'UPDATE t SET k = k * 10;' 'SELECT count(*) FROM t;' "
                       "'BEGIN; COMMIT;' >/dev/null",
                 path, MODE);
    CHECK(rc == 0, "sqlite3 shell failed (%d)", rc);
    EXPECT_TX("c.db", ++t, "one UPDATE from the sqlite3 shell");

    /* Python's sqlite3 module: implicit BEGIN before DML, commit(), rollback(). */
    rc = run_cmd(NULL,
                 "python3 -c \"\n"
                 "import sqlite3, sys\n"
                 "c = sqlite3.connect(sys.argv[1])\n"
                 "c.execute('PRAGMA journal_mode=%s')\n"
                 "for i in range(5):\n"
                 "    c.execute('INSERT INTO t(k, v) VALUES(?, randomblob(?))', (100 + i, %d))\n"
                 "    c.execute('UPDATE t SET k = k + 1 WHERE id = 1')\n"
                 "    c.commit()\n"
                 "c.execute('DELETE FROM t')\n"
                 "c.rollback()\n"
                 "c.execute('SELECT count(*) FROM t').fetchall()\n"
                 "c.commit()\n"
                 "c.close()\n"
                 "\" '%s'",
                 MODE, blob_size(), path);
    CHECK(rc == 0, "python3 failed (%d)", rc);
    t += 5;
    EXPECT_TX("c.db", t, "five commits from Python");
    CHECK(sql_int(path, "SELECT count(*) FROM t") == 8, "rows after Python");
    check_records("c.db");
    check("c.db");
    free(path);
}
T_ALL(capture, clients, case_clients)

/* ------------------------------------------------------------ WAL pitfalls */

/* (1) Frames overwritten inside one transaction (cache spill + rewrite). */
static void case_wal_overwrite(void)
{
    sqlite3 *db = create_db("w.db");
    insert_rows(db, 12, 1);
    uint64_t t = TX("w.db");
    xsql(db, "PRAGMA cache_size=5");
    xsql(db, "BEGIN");
    for (int r = 0; r < 8; r++)
        xsql(db, "UPDATE t SET v = randomblob(%d), k = k + 1", blob_size() + r);
    xsql(db, "COMMIT");
    EXPECT_TX("w.db", ++t, "one large transaction that rewrote its own frames");
    check("w.db");
    /* And again, with growth inside the transaction. */
    xsql(db, "BEGIN");
    for (int r = 0; r < 4; r++) {
        xsql(db, "INSERT INTO t(k, v) SELECT k, randomblob(%d) FROM t WHERE id <= 4", blob_size());
        xsql(db, "UPDATE t SET v = randomblob(%d) WHERE id %% 3 = %d", blob_size(), r % 3);
    }
    xsql(db, "COMMIT");
    EXPECT_TX("w.db", ++t, "a second large transaction");
    sqlite3_close(db);
    check_records("w.db");
    check("w.db");
}
T_WAL(wal, frame_overwrite, case_wal_overwrite)

static uint32_t get32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Frames of the current generation of a WAL file whose "database size after
 * commit" field is set (commit frames and their padding copies). */
static int wal_commit_frames(const char *walpath)
{
    FILE *f = fopen(walpath, "rb");
    unsigned char h[32], fh[24];
    int n = 0;
    if (!f)
        return -1;
    if (fread(h, 1, 32, f) == 32) {
        uint32_t ps = get32(h + 8), s1 = get32(h + 16), s2 = get32(h + 20);
        if (ps == 1)
            ps = 65536;
        for (long i = 0;; i++) {
            if (fseek(f, 32 + i * (long)(ps + 24), SEEK_SET) != 0 || fread(fh, 1, 24, f) != 24)
                break;
            if (get32(fh + 8) != s1 || get32(fh + 12) != s2)
                break;
            if (get32(fh + 4))
                n++;
        }
    }
    fclose(f);
    return n;
}

/* (2) psow=0 + synchronous=FULL: padding frames. */
static void case_wal_pad(void)
{
    sqlite3 *db = create_db("p.db");
    sqlite3_close(db);
    uint64_t t = TX("p.db");
    char *path = P("p.db"), *uri = NULL;
    CHECK(asprintf(&uri, "file:%s?psow=0", path) > 0, "asprintf");
    db = NULL;
    CHECK(sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, NULL) == SQLITE_OK, "open %s", uri);
    sqlite3_busy_timeout(db, 10000);
    xsql(db, "PRAGMA synchronous=FULL");
    CHECK(qint(db, "PRAGMA synchronous") == 2, "synchronous not FULL");
    struct stat st;
    char *wal = P("p.db-wal");
    for (int i = 0; i < 8; i++) {
        if (i % 2)
            xsql(db, "INSERT INTO t(k, v) VALUES(%d, randomblob(%d))", i, 10 + i);
        else
            insert_rows(db, 1 + i, i);
        EXPECT_TX("p.db", ++t, "a commit with WAL padding");
    }
    CHECK(stat(wal, &st) == 0, "no WAL");
    /* With psow=0 SQLite pads each commit to a sector boundary with copies of
     * the commit frame: more commit frames than commits prove the padding. */
    int ncommit = wal_commit_frames(wal);
    cr_log_info("[%s] WAL size %lld, %d commit frames for %llu commits", TAG, (long long)st.st_size, ncommit,
                (unsigned long long)t);
    CHECK(ncommit > (int)t, "no WAL padding happened (%d commit frames, %llu commits)", ncommit,
          (unsigned long long)t);
    check("p.db");
    sqlite3_close(db);
    EXPECT_TX("p.db", t, "closing");
    check_records("p.db");
    check("p.db");
    free(wal);
    free(uri);
    free(path);
}
T_WAL(wal, psow_padding, case_wal_pad)

/* (3) WAL restart: new header, new salts, stale frames behind. */
static void case_wal_restart(void)
{
    sqlite3 *db = create_db("r.db");
    char *path = P("r.db");
    uint64_t t = TX("r.db");
    for (int round = 0; round < 4; round++) {
        insert_rows(db, 10 - 2 * round, round); /* shrinking transactions: stale frames remain */
        EXPECT_TX("r.db", ++t, "a transaction");
        xsql(db, "UPDATE t SET k = k + 1 WHERE id %% 4 = %d", round);
        EXPECT_TX("r.db", ++t, "an UPDATE");
        sql_checkpoint(path, round % 2 ? "PASSIVE" : "RESTART");
        EXPECT_TX("r.db", t, "a checkpoint");
        /* The next writer restarts the WAL from frame 1 with new salts. */
        xsql(db, "DELETE FROM t WHERE id = (SELECT min(id) FROM t)");
        EXPECT_TX("r.db", ++t, "the first transaction after a WAL restart");
        check("r.db");
    }
    sqlite3_close(db);
    check_records("r.db");
    check("r.db");
    free(path);
}
T_WAL(wal, restart, case_wal_restart)

/* (4) journal_size_limit truncates the WAL. */
static void case_wal_size_limit(void)
{
    sqlite3 *db = create_db("s.db");
    char *path = P("s.db"), *wal = P("s.db-wal");
    uint64_t t = TX("s.db");
    xsql(db, "PRAGMA journal_size_limit=%d", PSZ * 2);
    xsql(db, "PRAGMA wal_autocheckpoint=8");
    struct stat st;
    off_t maxsz = 0;
    for (int i = 0; i < 12; i++) {
        insert_rows(db, 3, i);
        EXPECT_TX("s.db", ++t, "a transaction with journal_size_limit");
        if (stat(wal, &st) == 0 && st.st_size > maxsz)
            maxsz = st.st_size;
    }
    sql_checkpoint(path, "PASSIVE");
    xsql(db, "DELETE FROM t WHERE id = 1");
    EXPECT_TX("s.db", ++t, "a write after the checkpoint");
    CHECK(stat(wal, &st) == 0, "no WAL");
    cr_log_info("[%s] WAL max %lld, now %lld", TAG, (long long)maxsz, (long long)st.st_size);
    CHECK(st.st_size < maxsz, "the WAL was never truncated by journal_size_limit (%lld >= %lld)",
          (long long)st.st_size, (long long)maxsz);
    check("s.db");
    sqlite3_close(db);
    check_records("s.db");
    check("s.db");
    free(path);
    free(wal);
}
T_WAL(wal, size_limit, case_wal_size_limit)

/* Child: begin a large transaction that spills to the WAL / database file,
 * tell the parent (one byte), then die in the requested way. */
static void child_spill_and_die(const char *name, int fd, int how)
{
    char *path = P(name);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        _exit(2);
    sqlite3_busy_timeout(db, 10000);
    char q[64];
    snprintf(q, sizeof q, "PRAGMA journal_mode=%s", MODE);
    if (sqlite3_exec(db, q, NULL, NULL, NULL) != SQLITE_OK)
        _exit(3);
    sqlite3_exec(db, "PRAGMA cache_size=5", NULL, NULL, NULL);
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        _exit(4);
    for (int i = 0; i < 60; i++) {
        char *s = sqlite3_mprintf("INSERT INTO t(k, v) VALUES(%d, randomblob(%d))", 500 + i, blob_size());
        int rc = sqlite3_exec(db, s, NULL, NULL, NULL);
        sqlite3_free(s);
        if (rc != SQLITE_OK)
            _exit(5);
    }
    if (sqlite3_exec(db, "UPDATE t SET v = randomblob(30) WHERE id % 2 = 0", NULL, NULL, NULL) != SQLITE_OK)
        _exit(6);
    wr_byte(fd, 1);
    if (how == 0)
        _exit(0);
    if (how == 1)
        abort();
    for (;;)
        pause(); /* the parent SIGKILLs us */
}

/* Does name's -wal (WAL) or main file (rollback) show that the child spilled? */
static void crash_writer(const char *name, int how)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0, "pipe");
    fflush(NULL);
    pid_t p = fork();
    CHECK(p >= 0, "fork");
    if (p == 0) {
        close(pfd[0]);
        signal(SIGABRT, SIG_DFL);
        child_spill_and_die(name, pfd[1], how);
    }
    close(pfd[1]);
    int b = rd_byte(pfd[0]);
    close(pfd[0]);
    if (how == 2 && p > 0)
        kill(p, SIGKILL);
    int st;
    waitpid(p, &st, 0);
    CHECK(b == 1, "the crashing child failed before its transaction was under way (status %d)",
          WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
}

/* (5) A writer crashes between frame writes and its commit. */
static void case_wal_crash(void)
{
    static const char *const hows[] = {"_exit", "abort", "SIGKILL"};
    sqlite3 *db = create_db("k.db");
    insert_rows(db, 5, 1);
    sqlite3_close(db);
    uint64_t t = TX("k.db");
    char *wal = P("k.db-wal");
    for (int how = 0; how < 3; how++) {
        db = dbopen("k.db"); /* keep one connection so the WAL survives the crash */
        struct stat st0, st1;
        if (stat(wal, &st0) != 0)
            st0.st_size = 0;
        crash_writer("k.db", how);
        CHECK(stat(wal, &st1) == 0 && st1.st_size > st0.st_size, "%s: the child wrote no frames (WAL %lld -> %lld)",
              hows[how], (long long)st0.st_size, (long long)st1.st_size);
        EXPECT_TX("k.db", t, "a writer that died before its commit");
        CHECK(qint(db, "SELECT count(*) FROM t WHERE k >= 500") == 0, "uncommitted rows visible");
        check("k.db");
        insert_rows(db, 2, 10 + how);
        EXPECT_TX("k.db", ++t, "the first transaction after the crash");
        xsql(db, "UPDATE t SET k = k + 1");
        EXPECT_TX("k.db", ++t, "the second transaction after the crash");
        check("k.db");
        sqlite3_close(db);
    }
    check_records("k.db");
    check("k.db");
    free(wal);
}
T_WAL(wal, crashed_writer, case_wal_crash)

/* ------------------------------------------------------------ rollback pitfalls */

/* A hot journal left by a SIGKILLed writer whose cache spilled into the file. */
static void case_hot_journal(void)
{
    sqlite3 *db = create_db("h.db");
    insert_rows(db, 6, 1);
    sqlite3_close(db);
    uint64_t t = TX("h.db");
    char *path = P("h.db"), *jpath = NULL;
    CHECK(asprintf(&jpath, "%s-journal", path) > 0, "asprintf");
    uint64_t content = sql_content_hash(path);
    for (int how = 0; how < 3; how++) {
        struct stat st0;
        CHECK(stat(path, &st0) == 0, "stat");
        int had_free = sql_int(path, "PRAGMA freelist_count") > 0;
        crash_writer("h.db", how);
        struct stat js, st1;
        CHECK(stat(jpath, &js) == 0 && js.st_size > 0, "no hot journal left behind (how %d)", how);
        CHECK(stat(path, &st1) == 0 && st1.st_size > st0.st_size, "the crashed writer's pages did not reach the file");
        EXPECT_TX("h.db", t, "a writer killed mid-transaction");
        /* A new connection rolls the hot journal back. */
        db = dbopen("h.db");
        CHECK(qint(db, "SELECT count(*) FROM t WHERE k >= 500") == 0, "uncommitted rows visible");
        t = expect_rollback_noop("h.db", t, had_free, "the hot journal rollback");
        CHECK(sql_content_hash(path) == content, "content changed by the crash");
        check("h.db");
        insert_rows(db, 1, 20 + how);
        EXPECT_TX("h.db", ++t, "the first transaction after the hot journal rollback");
        content = sql_content_hash(path);
        sqlite3_close(db);
        check("h.db");
    }
    check_records("h.db");
    free(jpath);
    free(path);
}
T_ROLLBACK(rollback, hot_journal, case_hot_journal)

/* Journal headers (the 8-byte magic at a 512-byte aligned offset) in a journal. */
static int journal_headers(const char *name)
{
    static const unsigned char magic[8] = {0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7};
    char *path = P(name);
    FILE *f = fopen(path, "rb");
    free(path);
    if (!f)
        return -1;
    unsigned char b[8];
    int n = 0;
    for (long off = 0; fseek(f, off, SEEK_SET) == 0 && fread(b, 1, 8, f) == 8; off += 512)
        n += memcmp(b, magic, 8) == 0;
    fclose(f);
    return n;
}

/* One transaction whose journal has several headers (cache spills with sync). */
static void case_multi_header(void)
{
    sqlite3 *db = create_db("j.db");
    insert_rows(db, PSZ == 65536 ? 10 : 40, 1);
    uint64_t t = TX("j.db");
    xsql(db, "PRAGMA synchronous=FULL");
    xsql(db, "PRAGMA cache_size=5");
    xsql(db, "BEGIN");
    for (int r = 0; r < 3; r++) {
        xsql(db, "UPDATE t SET v = randomblob(%d) WHERE id %% 3 = %d", blob_size(), r);
        xsql(db, "INSERT INTO t(k, v) SELECT k + 100, randomblob(%d) FROM t WHERE id %% 5 = %d", blob_size() / 2, r);
    }
    xsql(db, "DELETE FROM t WHERE id %% 7 = 0");
    int nhdr = journal_headers("j.db-journal");
    cr_log_info("[%s] %d journal headers before COMMIT", TAG, nhdr);
    CHECK(nhdr >= 2, "the transaction's journal has %d header(s); the case needs several", nhdr);
    xsql(db, "COMMIT");
    EXPECT_TX("j.db", ++t, "one transaction spanning several journal headers");
    check("j.db");
    xsql(db, "PRAGMA cache_size=-2000");
    insert_rows(db, 2, 3);
    EXPECT_TX("j.db", ++t, "a normal transaction afterwards");
    sqlite3_close(db);
    check_records("j.db");
    check("j.db");
}
T_ROLLBACK(rollback, multi_header, case_multi_header)
