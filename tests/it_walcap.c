/*
 * it_walcap.c -- integration tests for the capture of WAL commits with
 * kernel passthrough (db_capture.c "CAPTURE OF WAL COMMITS", db_watch.c):
 *
 *   - a burst of commits is captured by the WAL watcher alone, with the
 *     -wal on passthrough (the daemon sees almost no WAL write), and each
 *     commit is one record (nobody asks /status, which would capture too);
 *   - the same through the daemon (LV_WAL_PASSTHROUGH=0): the same
 *     records, and every commit is logged before its write returns;
 *   - power loss with synchronous=FULL, the WAL generation begun by a
 *     restart or by a switch from a rollback journal: the log's tail that
 *     was never fsynced is lost, the WAL (fsynced at each commit) is not;
 *     start-up logs the lost commits again from the WAL, one by one, as
 *     RECOVERED records with the same TXIDs and checksums, and the log
 *     agrees with the database.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/lvtest.h"

TestSuite(walcap, .fini = lvt_fini, .timeout = 120);

#define BURST 2000

/* The last TXID of db in the node's log read straight from its files, with
 * no request to the daemon (which would capture first). */
static uint64_t log_last_txid_quiet(const struct lvnode *n, const char *db)
{
    json_t *j = lvnode_cli_json(n, NULL, "log ls", "--db '%s'", db);
    uint64_t t = 0;
    if (j && json_is_array(j) && json_array_size(j) > 0)
        t = (uint64_t)json_integer_value(json_object_get(json_array_get(j, json_array_size(j) - 1), "txid"));
    json_decref(j);
    return t;
}

/*
 * BURST one-row commits on one connection (WAL, synchronous=NORMAL, no
 * automatic checkpoint: a checkpoint would capture everything too), the
 * connection kept open while the log is checked.  passthrough: the WAL
 * watcher must log them all, nobody asking the daemon; through the
 * daemon: every commit is logged before its write returns.
 */
static void burst_case(int passthrough)
{
    if (!passthrough)
        setenv("LV_WAL_PASSTHROUGH", "0", 1);
    struct lvnode *n = lvnode_started(NULL);
    unsetenv("LV_WAL_PASSTHROUGH");
    if (passthrough && lvnode_log_contains(n, "FUSE passthrough is not available"))
        cr_skip_test("this kernel or process has no FUSE passthrough");
    char *p = lvnode_path(n, "b.db");
    sql_exec(p, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    uint64_t tx0 = lvnode_last_txid(n, "b.db");
    double w0 = lvnode_metric(n, "litevault_fuse_requests_total{op=\"write\"}");
    sqlite3 *h = sql_open(p);
    sqlh_exec(h, "PRAGMA synchronous=NORMAL");
    sqlh_exec(h, "PRAGMA wal_autocheckpoint=0");
    for (int i = 1; i <= BURST; i++) {
        sqlh_exec(h, "INSERT INTO t(v) VALUES(randomblob(100))");
        if (!passthrough && i % 250 == 0)
            cr_assert_eq(log_last_txid_quiet(n, "b.db"), tx0 + (uint64_t)i,
                         "commit %d returned before its record was logged", i);
    }
    double writes = lvnode_metric(n, "litevault_fuse_requests_total{op=\"write\"}") - w0;
    if (passthrough) {
        cr_assert_lt(writes, BURST / 10, "%.0f writes reached the daemon for %d commits: the -wal is not on "
                     "passthrough", writes, BURST);
        /* the watcher logs them; nothing asks the daemon, nothing checkpoints */
        cr_assert(WAIT_FOR(log_last_txid_quiet(n, "b.db") == tx0 + BURST, 5000),
                  "the WAL watcher logged %llu of %d commits",
                  (unsigned long long)(log_last_txid_quiet(n, "b.db") - tx0), BURST);
    } else {
        cr_assert(lvnode_log_contains(n, "-wal files go through the daemon (LV_WAL_PASSTHROUGH=0)"),
                  "LV_WAL_PASSTHROUGH=0 was not obeyed");
        cr_assert_geq(writes, BURST, "only %.0f writes reached the daemon for %d commits", writes, BURST);
        cr_assert_eq(log_last_txid_quiet(n, "b.db"), tx0 + BURST);
    }
    sqlite3_close(h);
    struct lvrec *r = NULL;
    int nr = lvnode_log_records(n, "b.db", &r);
    cr_assert_eq((uint64_t)nr, tx0 + BURST);
    for (int i = 1; i < nr; i++) {
        cr_assert_eq(r[i].txid, r[i - 1].txid + 1);
        cr_assert_eq(r[i].pre_checksum, r[i - 1].post_checksum, "chain broken at TXID %llu",
                     (unsigned long long)r[i].txid);
    }
    free(r);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), BURST);
    sql_checkpoint(p, "TRUNCATE");
    lvnode_check_db(n, "b.db");
    free(p);
}

Test(walcap, burst_captured_by_the_watcher)
{
    burst_case(1);
}

Test(walcap, burst_through_the_daemon)
{
    burst_case(0);
}

/*
 * Power loss with synchronous=FULL.  gen: how the WAL generation in use
 * began: 0, a restart after a checkpoint (salt-1 one more); 1, a switch
 * from a rollback journal (the last record before it names no WAL).  Its
 * first commit makes the log durable (once per generation), the next 30
 * are durable only in the WAL.  The power loss cuts every log segment to
 * its size at its last fsync (the daemon notes it: LV_TEST_SYNCED_MARKS);
 * start-up logs the lost commits again one by one.
 */
static void power_loss_case(int gen)
{
    setenv("LV_TEST_SYNCED_MARKS", ".lvseg", 1);
    struct lvnode *n = lvnode_started(NULL);
    unsetenv("LV_TEST_SYNCED_MARKS");
    char *p = lvnode_path(n, "pl.db");
    sqlite3 *h = sql_open(p);
    sqlh_exec(h, gen ? "PRAGMA journal_mode=DELETE" : "PRAGMA journal_mode=WAL");
    sqlh_exec(h, "PRAGMA synchronous=FULL");
    sqlh_exec(h, "PRAGMA wal_autocheckpoint=0");
    sqlh_exec(h, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    for (int i = 0; i < 20; i++)
        sqlh_exec(h, "INSERT INTO t(v) VALUES(randomblob(500))");
    if (gen)
        sqlh_exec(h, "PRAGMA journal_mode=WAL");
    else
        sqlh_exec(h, "PRAGMA wal_checkpoint(PASSIVE)"); /* the next commit restarts the WAL */
    sqlh_exec(h, "INSERT INTO t(v) VALUES(randomblob(500))");
    uint64_t synced = lvnode_last_txid(n, "pl.db");
    for (int i = 0; i < 30; i++) /* each fsyncs the WAL; the log is not fsynced */
        sqlh_exec(h, "INSERT INTO t(v) VALUES(randomblob(500))");
    uint64_t last = lvnode_last_txid(n, "pl.db");
    cr_assert_eq(last, synced + 30);
    struct lvdbstat before;
    cr_assert_eq(lvnode_db_status(n, "pl.db", &before), 1);
    lvnode_kill9(n);
    sqlite3_close(h);
    lvnode_cut_to_synced(n, "pl.db");
    uint64_t durable = lvnode_last_txid(n, "pl.db");
    cr_assert_geq(durable, synced, "the first commit of the WAL generation was not fsynced in the log (TXID %llu "
                  "durable, %llu wanted)", (unsigned long long)durable, (unsigned long long)synced);
    cr_assert_lt(durable, last, "the log was fsynced at every commit: nothing to lose");

    lvnode_start(n);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 51);
    cr_assert_eq(lvnode_last_txid(n, "pl.db"), last, "start-up did not log the commits the WAL kept one by one");
    struct lvdbstat after;
    cr_assert_eq(lvnode_db_status(n, "pl.db", &after), 1);
    cr_assert_eq(after.checksum, before.checksum, "the regenerated records end at another checksum");
    json_t *j = lvnode_cli_json(n, NULL, "log ls", "--db pl.db --txid %llu", (unsigned long long)durable + 1);
    cr_assert(j && json_array_size(j) == last - durable);
    size_t i;
    json_t *o;
    json_array_foreach(j, i, o) {
        cr_assert(json_is_true(json_object_get(o, "recovered")), "TXID %lld is not marked recovered",
                  (long long)json_integer_value(json_object_get(o, "txid")));
    }
    json_decref(j);
    sql_checkpoint(p, "TRUNCATE");
    lvnode_check_db(n, "pl.db");
    free(p);
}

Test(walcap, power_loss_after_a_restart)
{
    power_loss_case(0);
}

Test(walcap, power_loss_after_switching_to_wal)
{
    power_loss_case(1);
}

/* synchronous=FULL: every commit returns with its -wal fsynced to the
 * end, on passthrough (the daemon sees only the fsync) and through the
 * daemon (LV_WAL_PASSTHROUGH=0).  The -wal's fsyncs mark the size they
 * began with (LV_TEST_SYNCED_MARKS). */
Test(walcap, full_commit_fsyncs_the_wal)
{
    for (int pt = 1; pt >= 0; pt--) {
        struct lvnode *n = lvnode_new(NULL);
        setenv("LV_TEST_SYNCED_MARKS", "app.db-wal", 1);
        if (!pt)
            setenv("LV_WAL_PASSTHROUGH", "0", 1);
        lvnode_start(n);
        unsetenv("LV_TEST_SYNCED_MARKS");
        unsetenv("LV_WAL_PASSTHROUGH");
        char *p = lvnode_path(n, "app.db");
        sqlite3 *h = sql_open(p);
        sqlh_exec(h, "PRAGMA journal_mode=WAL");
        sqlh_exec(h, "PRAGMA synchronous=FULL");
        sqlh_exec(h, "PRAGMA wal_autocheckpoint=0");
        sqlh_exec(h, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
        for (int i = 0; i < 100; i++) {
            sqlh_exec(h, "INSERT INTO t(v) VALUES(hex(randomblob(30)))");
            long long gap = lvnode_wal_unsynced(n, "app.db");
            cr_assert_eq(gap, 0, "%s: commit %d returned with the -wal's last %lld bytes not fsynced",
                         pt ? "passthrough" : "through the daemon", i, gap);
        }
        sqlite3_close(h);
        free(p);
        lvnode_stop(n);
    }
}

/*
 * The last commit logged is written over behind the daemon (as when SQLite
 * disowns a commit whose WAL fsync failed): the next capture says so, once,
 * naming the frame and the TXID, and the daemon stays up.
 */
Test(walcap, commit_written_over_behind_the_log)
{
    struct lvnode *n = lvnode_started(NULL);
    char *p = lvnode_path(n, "wo.db");
    sqlite3 *h = sql_open(p);
    sqlh_exec(h, "PRAGMA journal_mode=WAL");
    sqlh_exec(h, "PRAGMA wal_autocheckpoint=0");
    sqlh_exec(h, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    sqlh_exec(h, "INSERT INTO t(v) VALUES(randomblob(100))");
    uint64_t tx = lvnode_last_txid(n, "wo.db"); /* captured */
    char wal[600];
    snprintf(wal, sizeof wal, "%s/files/wo.db-wal", n->data);
    int fd = open(wal, O_RDWR);
    cr_assert_geq(fd, 0);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    uint32_t ps = (uint32_t)sql_int(p, "PRAGMA page_size");
    uint64_t frames = ((uint64_t)st.st_size - 32) / (24 + ps);
    uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cr_assert_eq(pwrite(fd, junk, sizeof junk, (off_t)(32 + (frames - 1) * (24 + ps) + 16)), 8);
    close(fd);
    lvnode_last_txid(n, "wo.db"); /* /status captures */
    cr_assert(lvnode_log_contains(n, "was written over"), "the daemon did not notice");
    char needle[64];
    snprintf(needle, sizeof needle, "(TXID %llu)", (unsigned long long)tx);
    cr_assert(lvnode_log_contains(n, needle), "the line does not name TXID %llu", (unsigned long long)tx);
    cr_assert(lvnode_alive(n), "the daemon died");
    sqlite3_close(h);
    free(p);
}
