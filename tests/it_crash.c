/*
 * it_crash.c -- integration tests for crashes and restarts.
 *
 *   - kill -9 of the daemon in the middle of a writer's workload (WAL and
 *     DELETE mode, at seeded random moments, several rounds): after a
 *     restart the database passes integrity_check, holds every commit the
 *     writer saw succeed, and the log agrees with it (status checksum ==
 *     file checksum of the checkpointed database, replay == database);
 *   - kill -9 of a writer process in the middle of a transaction that has
 *     already spilled pages (both modes): nothing is logged for it;
 *   - a graceful restart keeps the history (TXIDs continue, no recovered
 *     records) and, for a ~200 MB database, does not read the database at
 *     start-up (the daemon reports checking only a few pages).
 *
 * Writers run in forked children that only use libsqlite3 and _exit(); all
 * assertions stay in the test process.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/lvtest.h"

static struct lvnode *cN; /* this test's node (registry-owned) */

TestSuite(crash, .fini = lvt_fini, .timeout = 180);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* PRAGMA integrity_check of the live database through the mount. */
static void assert_integrity(const char *path)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK, "open %s", path);
    sqlite3_busy_timeout(h, 5000);
    cr_assert_eq(sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK, "%s",
                 sqlite3_errmsg(h));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sqlite3_errmsg(h));
    char res[256];
    snprintf(res, sizeof res, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(h);
    cr_assert_str_eq(res, "ok", "integrity_check of %s", path);
}

/*
 * The log agrees with the database: integrity_check passes; after a full
 * checkpoint (WAL) the status checksum equals the file's checksum and the
 * replayed log equals the file byte for byte; lvnode_check_db re-checks
 * replay, status and TXIDs.
 */
static void assert_agrees(const struct lvnode *n, const char *db, int wal)
{
    char *p = lvnode_path(n, db);
    char out[600];
    assert_integrity(p);
    if (wal)
        sql_checkpoint(p, "TRUNCATE");
    struct lvdbstat ds;
    cr_assert_eq(lvnode_db_status(n, db, &ds), 1, "%s not in status", db);
    cr_assert_str_eq(ds.status, "ok", "%s is %s", db, ds.status);
    uint64_t fck = file_db_checksum(p);
    cr_assert_eq(ds.checksum, fck, "%s: status checksum %016llx != file checksum %016llx", db,
                 (unsigned long long)ds.checksum, (unsigned long long)fck);
    snprintf(out, sizeof out, "%s/agree-%s", n->dir, db);
    cr_assert_eq(lvnode_replay(n, db, 0, out), 0, "replay of %s failed", db);
    long long off = -1;
    int d = files_first_diff(out, p, &off);
    cr_assert_eq(d, 0, "%s: replay differs from the database at byte %lld", db, off);
    unlink(out);
    lvnode_check_db(n, db);
    free(p);
}

/* ------------------------------------------------------------------ */
/* kill -9 of the daemon during a workload                             */
/* ------------------------------------------------------------------ */

/*
 * Writer child: one transaction per step k = start, start+1, ...: insert a
 * row (k, random blob), update an older row, delete one now and then.
 * After each successful COMMIT it stores k in *acked.  Exits 1 at the first
 * error, 0 if it ran out of time (the test then fails: no error seen).
 */
static void writer_child(const char *path, int wal, long long start, volatile long long *acked, unsigned seed)
{
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        _exit(1);
    sqlite3_busy_timeout(h, 2000);
    if (wal && sqlite3_exec(h, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK)
        _exit(1);
    srand(seed);
    double end = now_s() + 300; /* ends with an error when the daemon dies; this only bounds a hang */
    for (long long k = start; now_s() < end; k++) {
        char sql[512];
        int sz = 100 + rand() % 6000;
        snprintf(sql, sizeof sql,
                 "BEGIN;"
                 "INSERT INTO t(k, v) VALUES(%lld, randomblob(%d));"
                 "UPDATE t SET v = randomblob(%d) WHERE k = %lld;"
                 "%s"
                 "COMMIT;",
                 k, sz, 50 + rand() % 3000, k / 2,
                 k % 7 == 0 ? "DELETE FROM t WHERE k IN (SELECT k FROM t WHERE k % 5 = 3 LIMIT 1);" : "");
        if (sqlite3_exec(h, sql, NULL, NULL, NULL) != SQLITE_OK)
            _exit(1);
        *acked = k;
    }
    sqlite3_close(h);
    _exit(0);
}

/* Wait up to ms for the child; its wait status, or -1 after killing it. */
static int reap_child(pid_t pid, int ms)
{
    int st = 0;
    for (int waited = 0; waited < ms; waited += 10) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return st;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static void kill9_daemon_case(int wal, unsigned seed)
{
    cN = lvnode_started(NULL);
    char *p = lvnode_path(cN, "w.db");
    sql_exec(p, wal ? "PRAGMA journal_mode=WAL; CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB);"
                    : "PRAGMA journal_mode=DELETE; CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB);",
             0);
    volatile long long *acked = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq((void *)acked, MAP_FAILED);
    srand(seed);
    long long next = 1;
    for (int round = 0; round < 3; round++) {
        *acked = next - 1;
        unsigned wseed = (unsigned)rand();
        int delay_ms = 250 + rand() % 600;
        fflush(NULL);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0)
            writer_child(p, wal, next, acked, wseed);
        lvt_defer_kill(pid);
        /* kill at a random point of the workload, but only once it has committed
         * (the first commit's delay depends on the machine, not on the test) */
        cr_assert(WAIT_FOR(*acked >= next, LVT_WAIT_MS), "round %d: the writer committed nothing", round);
        usleep((useconds_t)delay_ms * 1000);
        lvnode_kill9(cN);
        int st = reap_child(pid, 15000);
        lvt_forget_child(pid);
        cr_assert_neq(st, -1, "round %d: the writer hung after the daemon died", round);
        cr_assert(!(WIFEXITED(st) && WEXITSTATUS(st) == 0),
                  "round %d: the writer saw no error although the daemon was killed", round);
        long long ack = *acked;
        cr_assert_geq(ack, next, "round %d: no commit in %d ms", round, delay_ms);

        lvnode_start(cN);
        assert_integrity(p);
        long long maxk = sql_int(p, "SELECT max(k) FROM t");
        cr_assert(maxk == ack || maxk == ack + 1,
                  "round %d (%s, kill after %d ms): last acknowledged commit %lld, database has %lld", round,
                  wal ? "WAL" : "DELETE", delay_ms, ack, maxk);
        assert_agrees(cN, "w.db", wal);
        next = maxk + 1;
    }
    /* history is complete: TXIDs 1..last with a checksum chain */
    struct lvrec *r = NULL;
    int nr = lvnode_log_records(cN, "w.db", &r);
    cr_assert_gt(nr, 3);
    for (int i = 0; i < nr; i++) {
        cr_assert_eq(r[i].txid, (uint64_t)i + 1);
        if (i > 0)
            cr_assert_eq(r[i].pre_checksum, r[i - 1].post_checksum, "chain broken at TXID %llu",
                         (unsigned long long)r[i].txid);
    }
    free(r);
    munmap((void *)acked, 4096);
    free(p);
}

Test(crash, kill9_daemon_mid_workload_wal)
{
    kill9_daemon_case(1, 20240611);
}

Test(crash, kill9_daemon_mid_workload_delete)
{
    kill9_daemon_case(0, 777);
}

/* ------------------------------------------------------------------ */
/* kill -9 of a writer mid-transaction                                 */
/* ------------------------------------------------------------------ */

/*
 * Child: a transaction big enough to spill pages to the database file
 * (DELETE) or uncommitted frames to the WAL, then tell the parent and
 * wait to be killed.
 */
static void spill_child(const char *path, int wal, int fd_ready)
{
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        _exit(1);
    sqlite3_busy_timeout(h, 5000);
    if (sqlite3_exec(h, "PRAGMA cache_size=8; BEGIN;", NULL, NULL, NULL) != SQLITE_OK)
        _exit(2);
    if (sqlite3_exec(h,
                     "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<400) "
                     "INSERT INTO t(v) SELECT randomblob(3000) FROM c;"
                     "UPDATE t SET v = zeroblob(10) WHERE id <= 20;",
                     NULL, NULL, NULL) != SQLITE_OK)
        _exit(3);
    (void)wal;
    char c = 'r';
    if (write(fd_ready, &c, 1) != 1)
        _exit(4);
    for (;;)
        pause();
}

/* Fork spill_child on path and wait until its transaction has spilled;
 * its pid (killed at the end of the test if still there). */
static pid_t spill_started(const char *path, int wal)
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        spill_child(path, wal, pfd[1]);
    }
    lvt_defer_kill(pid);
    close(pfd[1]);
    char c = 0;
    ssize_t r = read(pfd[0], &c, 1);
    close(pfd[0]);
    cr_assert_eq(r, 1, "the writer failed before the kill");
    return pid;
}

static void kill9_writer_case(int wal)
{
    cN = lvnode_started(NULL);
    char *p = lvnode_path(cN, "k.db");
    sql_exec(p, wal ? "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
                    : "PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
             0);
    sql_exec(p, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<50) "
                "INSERT INTO t(v) SELECT randomblob(500) FROM c;", 0);
    uint64_t h0 = sql_content_hash(p);
    uint64_t tx0 = lvnode_last_txid(cN, "k.db");
    cr_assert_geq(tx0, 2);
    struct lvdbstat s0;
    cr_assert_eq(lvnode_db_status(cN, "k.db", &s0), 1);

    for (int round = 0; round < 2; round++) {
        pid_t pid = spill_started(p, wal);
        /* the transaction really reached the files */
        char side[600];
        struct stat st;
        snprintf(side, sizeof side, "%s/files/k.db-%s", cN->data, wal ? "wal" : "journal");
        cr_assert_eq(stat(side, &st), 0, "no %s during the transaction", side);
        cr_assert_gt(st.st_size, wal ? 400000 : 512, "the transaction did not spill (%s is %lld bytes)", side,
                     (long long)st.st_size);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        lvt_forget_child(pid);

        cr_assert_eq(lvnode_last_txid(cN, "k.db"), tx0, "round %d: a killed transaction was logged", round);
        /* the next open rolls back (hot journal) or ignores the frames */
        assert_integrity(p);
        cr_assert_eq(sql_content_hash(p), h0, "round %d: content changed by a killed transaction", round);
        cr_assert_eq(lvnode_last_txid(cN, "k.db"), tx0, "round %d: the rollback was logged", round);
        struct lvdbstat s1;
        cr_assert_eq(lvnode_db_status(cN, "k.db", &s1), 1);
        cr_assert_eq(s1.checksum, s0.checksum);
        cr_assert_eq(s1.txid, tx0);
    }
    /* a normal commit continues the history */
    sql_exec(p, "INSERT INTO t(v) VALUES('after');", 0);
    cr_assert_eq(lvnode_last_txid(cN, "k.db"), tx0 + 1);
    assert_agrees(cN, "k.db", wal);
    /* and a restart finds nothing to recover */
    lvnode_stop(cN);
    lvnode_start(cN);
    cr_assert_eq(lvnode_last_txid(cN, "k.db"), tx0 + 1);
    assert_agrees(cN, "k.db", wal);
    free(p);
}

Test(crash, kill9_writer_mid_transaction_wal)
{
    kill9_writer_case(1);
}

Test(crash, kill9_writer_mid_transaction_delete)
{
    kill9_writer_case(0);
}

/*
 * kill -9 of the daemon while a transaction that reuses free pages has
 * spilled.  SQLite does not journal a freelist leaf it reuses (its content
 * does not matter), so the rollback of the hot journal after the restart
 * leaves that page as the dead transaction wrote it: the log must follow
 * the bytes of the file, not only the pages the rollback writes.
 */
Test(crash, kill9_daemon_mid_transaction_reusing_free_pages)
{
    cN = lvnode_started(NULL);
    char *p = lvnode_path(cN, "f.db");
    sql_exec(p, "PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    sql_exec(p, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<400) "
                "INSERT INTO t(v) SELECT randomblob(3000) FROM c;", 0);
    sql_exec(p, "DELETE FROM t WHERE id > 20;", 0);
    cr_assert_gt(sql_int(p, "PRAGMA freelist_count"), 300, "no free pages to reuse");
    uint64_t h0 = sql_content_hash(p);
    pid_t pid = spill_started(p, 0);
    lvnode_kill9(cN);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    lvt_forget_child(pid);

    lvnode_start(cN);
    assert_agrees(cN, "f.db", 0); /* the rollback happens at its first open */
    cr_assert_eq(sql_content_hash(p), h0, "content changed by a killed transaction");
    free(p);
}

/* ------------------------------------------------------------------ */
/* Graceful restart                                                    */
/* ------------------------------------------------------------------ */

/* Parse the last "NAME: log agrees with the database at TXID N (checked K
 * pages" line of the daemon log; 0 if absent. */
static int last_agree_line(const struct lvnode *n, const char *db, unsigned long long *txid, unsigned *checked)
{
    char *t = lvnode_log_text(n);
    char needle[300];
    snprintf(needle, sizeof needle, "%s: log agrees with the database at TXID ", db);
    char *last = NULL;
    for (char *s = strstr(t, needle); s; s = strstr(s + 1, needle))
        last = s;
    int ok = last && sscanf(last + strlen(needle), "%llu (checked %u pages", txid, checked) == 2;
    free(t);
    return ok;
}

Test(crash, graceful_restart_keeps_history_and_is_quick)
{
    cN = lvnode_started(NULL);
    char *p = lvnode_path(cN, "big.db");
    char *q = lvnode_path(cN, "small.db");
    sql_exec(p, "PRAGMA page_size=65536; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    sql_exec(q, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);", 0);
    /* ~200 MB in four transactions of 50 x 1 MB (half random, half zeros) */
    for (int i = 0; i < 4; i++)
        sql_exec(p, "BEGIN; WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<50) "
                    "INSERT INTO t(v) SELECT CASE WHEN i % 2 THEN randomblob(1000000) ELSE zeroblob(1000000) END "
                    "FROM c; COMMIT;", 0);
    for (int i = 0; i < 10; i++) {
        sql_exec(p, "UPDATE t SET v = randomblob(1000) WHERE id = abs(random()) % 200 + 1;", 0);
        sql_exec(q, "INSERT INTO t VALUES(randomblob(100));", 0);
    }
    long long pages = sql_int(p, "PRAGMA page_count");
    cr_assert_gt(pages * 65536, 190LL << 20, "database is only %lld pages", pages);
    uint64_t txp = lvnode_last_txid(cN, "big.db"), txq = lvnode_last_txid(cN, "small.db");
    uint64_t hp = sql_content_hash(p);
    struct lvdbstat before;
    cr_assert_eq(lvnode_db_status(cN, "big.db", &before), 1);

    lvnode_stop(cN);
    double t0 = now_s();
    lvnode_start(cN);
    double startup = now_s() - t0;
    /* "quick" is measured by the work done (pages checked, below), which does not
     * depend on the machine; the time is only reported */
    cr_log_info("start-up took %.2f s", startup);

    unsigned long long tx = 0;
    unsigned checked = 0;
    cr_assert(last_agree_line(cN, "big.db", &tx, &checked), "no 'log agrees' line for big.db");
    cr_assert_eq(tx, txp);
    cr_assert_lt(checked, 100, "start-up checked %u pages of big.db (of %lld)", checked, pages);
    cr_assert(last_agree_line(cN, "small.db", &tx, &checked), "no 'log agrees' line for small.db");
    cr_assert_eq(tx, txq);

    struct lvdbstat after;
    cr_assert_eq(lvnode_db_status(cN, "big.db", &after), 1);
    cr_assert_eq(after.txid, before.txid);
    cr_assert_eq(after.checksum, before.checksum);
    cr_assert_eq(after.last_commit_us, before.last_commit_us);
    cr_assert_eq(sql_content_hash(p), hp);
    /* TXIDs continue */
    sql_exec(p, "INSERT INTO t(v) VALUES('after restart');", 0);
    sql_exec(q, "INSERT INTO t VALUES('after restart');", 0);
    cr_assert_eq(lvnode_last_txid(cN, "big.db"), txp + 1);
    cr_assert_eq(lvnode_last_txid(cN, "small.db"), txq + 1);
    const char *names[] = {"big.db", "small.db"};
    for (int k = 0; k < 2; k++) {
        struct lvrec *r = NULL;
        int nr = lvnode_log_records(cN, names[k], &r);
        cr_assert_gt(nr, 1);
        for (int i = 0; i < nr; i++) {
            cr_assert_eq(r[i].txid, (uint64_t)i + 1);
            cr_assert(!r[i].recovered, "%s: TXID %llu is a recovered record after a graceful restart", names[k],
                      (unsigned long long)r[i].txid);
            cr_assert(i == 0 || !r[i].snapshot, "%s: TXID %llu is a snapshot after a graceful restart", names[k],
                      (unsigned long long)r[i].txid);
        }
        free(r);
    }
    cr_assert(!lvnode_log_contains(cN, "recovered record"));
    cr_assert(!lvnode_log_contains(cN, "repaired"));
    assert_agrees(cN, "small.db", 1);
    assert_agrees(cN, "big.db", 0);
    free(p);
    free(q);
}
