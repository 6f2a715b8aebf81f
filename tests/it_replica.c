/*
 * it_replica.c -- live replicas: a primary and replicas on loopback, each a
 * litevault daemon with its own data dir and mount.
 *
 *   replica/restart_*     a restarted replica resumes with no snapshot; a
 *                         restarted primary is rejoined and caught up
 *   replica/snapshot_*    a replica whose backing file changed behind its
 *                         back, one ahead of the primary, one down past the
 *                         primary's log limit: each gets a snapshot
 *   replica/cluster_*, replica/token_*   refusals with clear errors
 *   replica/stopped_primary  SIGSTOP the primary, resume: recovers alone
 *   replica/writes_refused   a write on a replica fails at once, logged
 *   replica/role_endpoints_and_wait   GET /primary, /replica (load
 *                         balancers' checks) on both roles; GET /v1/wait on
 *                         a replica answers when the TXID arrives, 504 at
 *                         its timeout, 400 on a bad query
 *   replica/never_ahead_of_a_power_loss  a replica and an archive hold no
 *                         record the primary's log had not made durable
 *   replica/wait_durable_auto  NORMAL records go at once, FULL ones wait
 *                         for the -wal's fsync, not for a log fsync
 *   replica/log_endpoint*  GET /v1/log (what a node being promoted takes
 *                         from a more advanced one): the records after a
 *                         TXID; 410 once the archiver pruned them; 413 for
 *                         a record over 48 MiB, the records around it
 *                         still served
 *
 * The workload with readers checking an invariant in every journal mode is
 * in it_replica_bank.c; partitions in it_replica_net.c; bad peers in
 * it_replica_peers.c.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/http.h"
#include "base/lv.h"
#include "lib/lvtest.h"
#include "log/txlog.h"
#include "lib/repl.h"

TestSuite(replica, .fini = lvt_fini, .timeout = 300);

/* A few transactions of every kind on db (path on the primary's mount), in
 * journal mode g_mode. */
static const char *g_mode = "wal";
static void some_writes(const char *path, int base, int n)
{
    sqlite3 *db = sql_open(path);
    sqlh_exec(db, "PRAGMA journal_mode=%s", g_mode);
    sqlh_exec(db, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)");
    for (int i = 0; i < n; i++)
        sqlh_exec(db, "INSERT INTO t VALUES(%d, hex(randomblob(64)))", base + i);
    sqlh_exec(db, "UPDATE t SET v = 'u' WHERE id %% 7 = 0");
    sqlh_exec(db, "DELETE FROM t WHERE id %% 11 = 0");
    sqlite3_close(db);
}

Test(replica, restart_replica_resumes_without_snapshot)
{
    struct lvcluster *c = repl_cluster(2, NULL);
    char *p = lvnode_path(c->node[0], "app.db");
    some_writes(p, 0, 50);
    repl_wait_caught_up(c, "app.db");
    double snaps0 = lvnode_metric(c->node[0], "litevault_replication_snapshots_sent_total");

    lvnode_stop(c->node[1]);
    some_writes(p, 1000, 50);
    lvnode_start(c->node[1]);
    some_writes(p, 2000, 10);
    repl_wait_caught_up(c, "app.db");
    repl_assert_same(c, "app.db");
    cr_assert_eq(lvnode_metric(c->node[0], "litevault_replication_snapshots_sent_total"), snaps0,
                 "the restarted replica was sent a snapshot");
    /* the replica's log holds the primary's records, flag for flag: none
     * was made by a snapshot or a recovery on the replica */
    struct lvrec *recs = NULL, *prec = NULL;
    int n = lvnode_log_records(c->node[1], "app.db", &recs);
    int pn = lvnode_log_records(c->node[0], "app.db", &prec);
    cr_assert_gt(n, 0);
    cr_assert_eq(n, pn, "the replica holds %d records, the primary %d", n, pn);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(recs[i].txid, prec[i].txid);
        cr_assert_eq(recs[i].post_checksum, prec[i].post_checksum);
        cr_assert(recs[i].snapshot == prec[i].snapshot && recs[i].recovered == prec[i].recovered,
                  "TXID %" PRIu64 " differs in kind on the replica", recs[i].txid);
    }
    free(prec);
    free(recs);
    free(p);
}

Test(replica, restart_primary_is_rejoined)
{
    g_mode = "delete";
    struct lvcluster *c = repl_cluster(2, NULL);
    char *p = lvnode_path(c->node[0], "app.db");
    some_writes(p, 0, 30);
    repl_wait_caught_up(c, "app.db");
    lvnode_stop(c->node[0]);
    lvnode_start(c->node[0]);
    some_writes(p, 500, 30);
    repl_wait_caught_up(c, "app.db");
    repl_assert_same(c, "app.db");
    free(p);
}

Test(replica, snapshot_when_backing_file_changed)
{
    struct lvcluster *c = repl_cluster(1, NULL);
    char *p = lvnode_path(c->node[0], "app.db");
    char back[600];
    some_writes(p, 0, 40);
    repl_wait_caught_up(c, "app.db");
    lvnode_stop(c->node[1]);
    /* change the replica's database behind its back (not through the mount) */
    snprintf(back, sizeof back, "%s/files/app.db", c->node[1]->data);
    cr_assert_eq(sql_exec(back, "UPDATE t SET v = 'behind its back' WHERE id = 3", 0), 0);
    lvnode_start(c->node[1]);
    some_writes(p, 100, 5);
    repl_wait_caught_up(c, "app.db");
    repl_assert_same(c, "app.db");
    cr_assert_gt(lvnode_metric(c->node[0], "litevault_replication_snapshots_sent_total"), 0,
                 "no snapshot was sent to the diverged replica");
    free(p);
}

Test(replica, snapshot_when_replica_ahead)
{
    struct lvcluster *c = repl_cluster(1, NULL);
    char *p = lvnode_path(c->node[0], "app.db");
    char saved[600], cmd[2048];
    some_writes(p, 0, 20);
    repl_wait_caught_up(c, "app.db");
    /* keep the primary's data dir as it is now */
    lvnode_stop(c->node[0]);
    snprintf(saved, sizeof saved, "%s/saved-data", c->node[0]->dir);
    snprintf(cmd, sizeof cmd, "cp -a %s %s", c->node[0]->data, saved);
    cr_assert_eq(system(cmd), 0);
    lvnode_start(c->node[0]);
    some_writes(p, 100, 20);
    repl_wait_caught_up(c, "app.db");
    /* the primary loses its last transactions (restored from an older copy) */
    lvnode_stop(c->node[0]);
    snprintf(cmd, sizeof cmd, "rm -rf %s && mv %s %s", c->node[0]->data, saved, c->node[0]->data);
    cr_assert_eq(system(cmd), 0);
    lvnode_start(c->node[0]);
    repl_wait_caught_up(c, "app.db");
    repl_assert_same(c, "app.db");
    cr_assert_gt(lvnode_metric(c->node[0], "litevault_replication_snapshots_sent_total"), 0,
                 "no snapshot was sent to the replica that was ahead");
    free(p);
}

/* Issue 13: a replica and an archive never receive a record the primary
 * later loses (replication.wait-durable: always).  With WAL and
 * synchronous=NORMAL a commit is in the page cache only, and so is its
 * record until the log is fsynced; the stream sends a record once the log
 * made it durable (it asks for the fsync), and
 * the archiver ships only what its tick's fsync covered.  The primary is
 * killed right after a burst of commits, then loses power: every log segment goes
 * back to its size when its last fsync began (LV_TEST_SYNCED_MARKS), and
 * each log fsync takes 20 ms more, so that some records always wait.
 * Neither the replica nor the archive may hold more than that log.  The
 * -wal survives here (a power loss would keep what SQLite had fsynced of
 * it, and NORMAL fsyncs it only at checkpoints), so the restarted primary
 * logs the lost commits again from it, and the replica goes on from where
 * it was without a snapshot. */
Test(replica, never_ahead_of_a_power_loss)
{
    struct lvdest *ad = lvdest_new(LVDEST_FILE);
    char arch[2048], common[2560];
    lvdest_yaml(ad, "    sync-interval: 100ms\n    compaction: []\n", arch, sizeof arch);
    snprintf(common, sizeof common, "%sreplication:\n  wait-durable: always\n", arch);
    struct lvcluster *c = repl_cluster_with(1, common, NULL, 0);
    struct lvnode *pn = c->node[0], *rn = c->node[1];
    setenv("LV_TEST_SYNCED_MARKS", ".lvseg", 1);
    setenv("LV_TEST_SYNC_DELAY_US", "20000", 1); /* the primary's slow disk: records wait for their fsync */
    lvnode_start(pn);
    unsetenv("LV_TEST_SYNCED_MARKS");
    unsetenv("LV_TEST_SYNC_DELAY_US");
    lvnode_start(rn);
    char *p = lvnode_path(pn, "app.db");
    sqlite3 *h = sql_open(p);
    sqlh_exec(h, "PRAGMA journal_mode=WAL");
    sqlh_exec(h, "PRAGMA wal_autocheckpoint=0");
    sqlh_exec(h, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
    for (int i = 0; i < 20; i++)
        sqlh_exec(h, "INSERT INTO t(v) VALUES('x')");
    repl_wait_caught_up(c, "app.db");
    uint64_t before = lvnode_last_txid(rn, "app.db");

    /* About 3,000 commits over a second (no checkpoint: its log fsync
     * would make everything durable), then the power loss at once: the
     * last ones still wait for their 20 ms fsync. */
    sqlh_exec(h, "PRAGMA synchronous=NORMAL");
    sqlite3_stmt *ins = NULL;
    cr_assert_eq(sqlite3_prepare_v2(h, "INSERT INTO t(v) VALUES(hex(randomblob(40)))", -1, &ins, NULL), SQLITE_OK);
    long commits = 0;
    for (int64_t end = now_ms() + 1000; now_ms() < end;) {
        cr_assert_eq(sqlite3_step(ins), SQLITE_DONE, "insert %ld: %s", commits, sqlite3_errmsg(h));
        sqlite3_reset(ins);
        commits++;
        usleep(300);
    }
    lvnode_kill9(pn);
    sqlite3_finalize(ins);
    sqlite3_close(h);
    usleep(300 * 1000); /* the replica applies what reached it */

    uint64_t logged = lvnode_last_txid(pn, "app.db");
    lvnode_cut_to_synced(pn, "app.db");
    uint64_t durable = lvnode_last_txid(pn, "app.db");
    uint64_t held = lvnode_last_txid(rn, "app.db");
    long long arch_last = lvnode_archived(pn, "app.db", "last_txid");
    cr_log_info("burst: %ld commits; primary logged TXID %" PRIu64 ", durable %" PRIu64 "; replica %" PRIu64
                "; archive %lld", commits, logged, durable, held, arch_last);
    cr_assert_gt(held, before + 20, "the replica received almost nothing during the burst (TXID %" PRIu64
                 ", %" PRIu64 " before it)", held, before);
    cr_assert_lt(durable, logged, "every record was durable at the kill: the test proves nothing");
    cr_assert_leq(held, durable, "the replica holds TXID %" PRIu64 ", past the primary's durable log (%" PRIu64 ")",
                  held, durable);
    cr_assert_gt(arch_last, 0, "nothing was archived");
    cr_assert_leq(arch_last, (long long)durable, "the archive holds TXID %lld, past the primary's durable log "
                  "(%" PRIu64 ")", arch_last, durable);

    double snaps0 = lvnode_metric(rn, "litevault_replication_snapshots_applied_total");
    lvnode_start(pn);
    cr_assert_geq(lvnode_last_txid(pn, "app.db"), logged, "start-up did not log the WAL's commits again");
    repl_wait_caught_up(c, "app.db");
    repl_assert_same(c, "app.db");
    cr_assert_eq(lvnode_metric(rn, "litevault_replication_snapshots_applied_total"), snaps0,
                 "the replica needed a snapshot after the primary's power loss");
    free(p);
}

/* replication.wait-durable: auto (the default).  A synchronous=NORMAL
 * writer's records go at once: the streams never fsync the log for it.
 * A synchronous=FULL writer's records wait for its -wal fsync, which makes
 * them durable: the streams fsync the log for few of them (a -wal fsync
 * later than 3 ms, on a slow disk), not for each.  Both end on the
 * replica, with the primary's durable TXID at its last. */
Test(replica, wait_durable_auto)
{
    struct lvcluster *c = repl_cluster(1, NULL);
    const char *dbs[2] = {"normal.db", "full.db"};
    for (int k = 0; k < 2; k++) {
        char *p = lvnode_path(c->node[0], dbs[k]);
        sqlite3 *h = sql_open(p);
        sqlh_exec(h, "PRAGMA journal_mode=WAL");
        sqlh_exec(h, "PRAGMA synchronous=%s", k ? "FULL" : "NORMAL");
        sqlh_exec(h, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
        for (int i = 0; i < 100; i++) {
            sqlh_exec(h, "INSERT INTO t(v) VALUES('x')");
            usleep(2000);
        }
        sqlite3_close(h);
        free(p);
        repl_wait_caught_up(c, dbs[k]);
    }
    char series[200];
    snprintf(series, sizeof series, "litevault_db_stream_log_fsyncs_total{db=\"%s\"}", dbs[0]);
    double fs_normal = lvnode_metric(c->node[0], series);
    snprintf(series, sizeof series, "litevault_db_stream_log_fsyncs_total{db=\"%s\"}", dbs[1]);
    double fs_full = lvnode_metric(c->node[0], series);
    snprintf(series, sizeof series, "litevault_db_durable_txid{db=\"%s\"}", dbs[1]);
    double durable = lvnode_metric(c->node[0], series);
    snprintf(series, sizeof series, "litevault_db_stream_waits_total{db=\"%s\"}", dbs[0]);
    double w_normal = lvnode_metric(c->node[0], series);
    snprintf(series, sizeof series, "litevault_db_stream_waits_total{db=\"%s\"}", dbs[1]);
    double w_full = lvnode_metric(c->node[0], series);
    cr_log_info("stream waits: NORMAL %.0f, FULL %.0f; log fsyncs: NORMAL %.0f, FULL %.0f; full.db durable TXID %.0f, "
                "last %llu", w_normal, w_full, fs_normal, fs_full, durable,
                (unsigned long long)lvnode_last_txid(c->node[1], dbs[1]));
    cr_assert_eq(w_normal, 0, "a stream held back a synchronous=NORMAL writer's records %.0f times", w_normal);
    /* (Often the -wal's fsync is done before the stream looks: no wait.) */
    cr_assert_geq(w_full, 3, "the streams held back a synchronous=FULL writer's records only %.0f times in 100 "
                  "commits", w_full);
    cr_assert_eq(fs_normal, 0, "the streams fsynced the log %.0f times for a synchronous=NORMAL writer", fs_normal);
    cr_assert(fs_full >= 0 && fs_full < 50, "the streams fsynced the log %.0f times for 100 synchronous=FULL commits "
              "(the -wal's fsync should make most of them durable)", fs_full);
    cr_assert_eq(durable, (double)lvnode_last_txid(c->node[1], dbs[1]));
    repl_assert_same(c, dbs[0]);
    repl_assert_same(c, dbs[1]);
}

/* replication.sync-replicas with a synchronous=FULL writer: the FUSE
 * thread fdatasyncs the -wal while the commit waits for the replica (C11
 * of db.c), and the application's own fsync of the -wal is then skipped.
 *  - After every commit the backing -wal is fsynced to its full size (the
 *    size each fsync began with is marked by LV_TEST_SYNCED_MARKS).
 *  - An fdatasync failure during the wait fails the application's fsync:
 *    the commit reports an error (LV_FAULT fails one -wal fsync, which is
 *    a pre-sync by then).  Without the owed error, that fsync would run
 *    again, succeed, and the commit would be reported durable.
 *  - A synchronous=NORMAL writer gets no pre-sync. */
Test(replica, sync_full_wal_presync)
{
    struct lvcluster *c =
        repl_cluster_with(1, "replication:\n  sync-replicas: 1\n  sync-timeout: 10s\n", NULL, 0);
    struct lvnode *pn = c->node[0], *rn = c->node[1];
    setenv("LV_TEST_SYNCED_MARKS", "app.db-wal", 1);
    setenv("LV_FAULT", "fsync:EIO:after=60:times=1:match=app.db-wal", 1);
    lvnode_start(pn);
    unsetenv("LV_TEST_SYNCED_MARKS");
    unsetenv("LV_FAULT");
    lvnode_start(rn);
    if (lvnode_log_contains(pn, "FUSE passthrough is not available"))
        cr_skip_test("no FUSE passthrough: a synchronous=FULL writer is not recognised, so nothing is pre-synced");
    cr_assert(WAIT_FOR(lvnode_log_contains(pn, "counts for sync-replicas"), 10000));

    char *np = lvnode_path(pn, "normal.db");
    sqlite3 *hn = sql_open(np);
    sqlh_exec(hn, "PRAGMA journal_mode=WAL");
    sqlh_exec(hn, "PRAGMA synchronous=NORMAL");
    sqlh_exec(hn, "CREATE TABLE t(id INTEGER PRIMARY KEY)");
    for (int i = 0; i < 20; i++)
        sqlh_exec(hn, "INSERT INTO t DEFAULT VALUES");
    sqlite3_close(hn);
    free(np);

    char *p = lvnode_path(pn, "app.db");
    sqlite3 *h = sql_open(p);
    sqlh_exec(h, "PRAGMA journal_mode=WAL");
    sqlh_exec(h, "PRAGMA synchronous=FULL");
    sqlh_exec(h, "PRAGMA wal_autocheckpoint=0");
    sqlh_exec(h, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
    int failed_at = -1;
    for (int i = 0; i < 200 && failed_at < 0; i++) {
        char *err = NULL;
        if (sqlite3_exec(h, "INSERT INTO t(v) VALUES(hex(randomblob(30)))", NULL, NULL, &err) != SQLITE_OK) {
            cr_log_info("commit %d failed as it must: %s", i, err ? err : "?");
            sqlite3_free(err);
            failed_at = i;
            break;
        }
        long long gap = lvnode_wal_unsynced(pn, "app.db");
        cr_assert_eq(gap, 0, "commit %d returned with the -wal's last %lld bytes not fsynced", i, gap);
    }
    sqlite3_close(h);
    free(p);
    double presyncs = lvnode_metric(pn, "litevault_db_wal_presyncs_total{db=\"app.db\"}");
    double hits = lvnode_metric(pn, "litevault_db_wal_presync_hits_total{db=\"app.db\"}");
    double normal = lvnode_metric(pn, "litevault_db_wal_presyncs_total{db=\"normal.db\"}");
    cr_log_info("pre-syncs %.0f, application fsyncs spared %.0f; normal.db pre-syncs %.0f; failed at commit %d",
                presyncs, hits, normal, failed_at);
    cr_assert_geq(failed_at, 0, "every commit succeeded: the fdatasync that failed during a wait was not "
                  "reported to the application");
    cr_assert_geq(failed_at, 20, "the failed fsync came before the pre-syncs began (commit %d)", failed_at);
    cr_assert_geq(hits, 20, "only %.0f application fsyncs were spared", hits);
    cr_assert_eq(normal, 0, "a synchronous=NORMAL writer's commits were pre-synced %.0f times", normal);
    cr_assert(lvnode_log_contains(pn, "the -wal's fdatasync failed"));
}

/* A replica down while the primary archived and pruned its local log past
 * the replica's position (more than replication.max-retain behind, so the
 * primary gives its records up) gets a snapshot and ends equal. */
Test(replica, snapshot_when_past_log_limit)
{
    struct lvdest *d = lvdest_new(LVDEST_FILE);
    char arch[2048], common[4096];
    lvdest_yaml(d, "    sync-interval: 200ms\n    compaction: []\n", arch, sizeof arch);
    snprintf(common, sizeof common, "%sreplication:\n  max-retain: 32KiB\n  seed: false\n", arch);
    struct lvcluster *c = repl_cluster_with(1, common, NULL, 0);
    for (int i = 0; i < c->n; i++)
        repl_reconfig_data(c, i, "  segment-size: 16KiB\n  state-interval: 200ms\n", common, NULL);
    lvcluster_start(c);
    char *p = lvnode_path(c->node[0], "app.db");
    some_writes(p, 0, 20);
    repl_wait_caught_up(c, "app.db");
    struct lvdbstat st;
    cr_assert_eq(lvnode_db_status(c->node[1], "app.db", &st), 1);
    uint64_t at = st.txid; /* the replica needs TXID at + 1 next */
    double snaps0 = lvnode_metric(c->node[0], "litevault_replication_snapshots_sent_total");

    lvnode_stop(c->node[1]);
    some_writes(p, 1000, 200); /* some 200 records: many 16 KiB segments, well past max-retain */
    cr_assert(WAIT_FOR(lvnode_log_first(c->node[0], "app.db") > (long long)at + 1, LVT_WAIT_MS),
              "the primary's log was not pruned past TXID %" PRIu64 " (starts at %lld)", at + 1,
              lvnode_log_first(c->node[0], "app.db"));
    /* the counters follow the unlinks (and the directory's fsync): wait for them */
    cr_assert(WAIT_FOR(lvnode_metric(c->node[0], "litevault_replication_retain_cuts_total") > 0, LVT_WAIT_MS),
              "the log was pruned past the replica without a max-retain cut");
    cr_assert(WAIT_FOR(lvnode_metric(c->node[0], "litevault_local_log_pruned_bytes_total") > 0, LVT_WAIT_MS),
              "the log was pruned but litevault_local_log_pruned_bytes_total stays 0");

    lvnode_start(c->node[1]);
    some_writes(p, 5000, 5);
    repl_wait_caught_up(c, "app.db");
    repl_assert_same(c, "app.db");
    cr_assert_gt(lvnode_metric(c->node[0], "litevault_replication_snapshots_sent_total"), snaps0,
                 "no snapshot was sent to the replica past the primary's log");
    free(p);
}

Test(replica, stopped_primary_recovers)
{
    struct lvcluster *c = repl_cluster(1, "replication:\n  max-lag: 2s\n");
    char *p = lvnode_path(c->node[0], "app.db");
    some_writes(p, 0, 10);
    repl_wait_caught_up(c, "app.db");
    kill(c->node[0]->pid, SIGSTOP);
    /* silence past the replica's 5 s limit: it notices and reconnects */
    long st = 0;
    WAIT_FOR(({ free(lvnode_http_get(c->node[1], "/health", &st)); st == 503; }), LVT_WAIT_MS);
    kill(c->node[0]->pid, SIGCONT);
    some_writes(p, 100, 10);
    repl_wait_caught_up(c, "app.db");
    repl_assert_same(c, "app.db");
    WAIT_FOR(({ free(lvnode_http_get(c->node[1], "/health", &st)); st == 200; }), LVT_WAIT_MS);
    free(p);
}

Test(replica, writes_refused_on_replica)
{
    struct lvcluster *c = repl_cluster(1, NULL);
    char *p = lvnode_path(c->node[0], "app.db"), *q = lvnode_path(c->node[1], "app.db");
    some_writes(p, 0, 5);
    repl_wait_caught_up(c, "app.db");
    cr_assert_neq(sql_exec(q, "INSERT INTO t VALUES(99999, 'x')", 1), 0, "a write on the replica succeeded");
    cr_assert(lvnode_log_contains(c->node[1], "writes belong on the primary at http://127.0.0.1:"));
    char *nq = lvnode_path(c->node[1], "new.db");
    sqlite3 *h = NULL;
    int rc = sqlite3_open(nq, &h);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h, "CREATE TABLE x(a)", NULL, NULL, NULL);
    sqlite3_close(h);
    cr_assert_neq(rc, SQLITE_OK, "a new database was created on the replica");
    /* the replica still follows */
    some_writes(p, 100, 5);
    repl_wait_caught_up(c, "app.db");
    repl_assert_same(c, "app.db");
    free(p);
    free(q);
    free(nq);
}

Test(replica, cluster_mismatch_refused)
{
    struct lvcluster *c = repl_cluster(1, NULL);
    char *p = lvnode_path(c->node[0], "app.db");
    char idp[600];
    some_writes(p, 0, 5);
    repl_wait_caught_up(c, "app.db");
    lvnode_stop(c->node[1]);
    snprintf(idp, sizeof idp, "%s/cluster-id", c->node[1]->data);
    FILE *f = fopen(idp, "w");
    cr_assert(f);
    fprintf(f, "0123456789abcdef0123456789abcdef\n");
    fclose(f);
    lvnode_start(c->node[1]);
    WAIT_FOR(lvnode_log_contains(c->node[1], "0123456789abcdef0123456789abcdef"), LVT_WAIT_MS);
    cr_assert(lvnode_alive(c->node[1]));
    long st = 0;
    free(lvnode_http_get(c->node[1], "/health", &st));
    cr_assert_eq(st, 503);
    free(p);
}

Test(replica, wrong_token_refused)
{
    const char *per[2] = {"  token: primary-secret-0123456789\n", "  token: another-secret-0123456789\n"};
    struct lvcluster *c = repl_cluster_with(1, NULL, per, 1);
    WAIT_FOR(lvnode_log_contains(c->node[1], "401"), LVT_WAIT_MS);
    cr_assert(lvnode_alive(c->node[1]));
    char *log = lvnode_log_text(c->node[1]);
    cr_assert_null(strstr(log, "primary-secret-0123456789"), "a token appears in the log");
    cr_assert_null(strstr(log, "another-secret-0123456789"), "a token appears in the log");
    free(log);
}

Test(replica, new_renamed_deleted_databases_follow)
{
    struct lvcluster *c = repl_cluster(1, NULL);
    char *a = lvnode_path(c->node[0], "a.db"), *b = lvnode_path(c->node[0], "sub/b.db");
    char *a2 = lvnode_path(c->node[0], "a2.db"), *dir = lvnode_path(c->node[0], "sub");
    cr_assert_eq(mkdir(dir, 0755), 0);
    some_writes(a, 0, 10);
    some_writes(b, 0, 10);
    repl_wait_caught_up(c, "a.db");
    repl_wait_caught_up(c, "sub/b.db");
    repl_assert_same(c, "sub/b.db");
    /* rename a.db (a closed database) and delete sub/b.db on the primary */
    cr_assert_eq(rename(a, a2), 0);
    cr_assert_eq(unlink(b), 0);
    some_writes(a2, 100, 5);
    repl_wait_caught_up(c, "a2.db");
    repl_assert_same(c, "a2.db");
    char *ra = lvnode_path(c->node[1], "a.db"), *rb = lvnode_path(c->node[1], "sub/b.db");
    cr_assert(WAIT_FOR(access(ra, F_OK) != 0 && access(rb, F_OK) != 0, LVT_WAIT_MS),
              "a.db or sub/b.db is still on the replica after the rename and the delete");
    struct lvdbstat st;
    cr_assert_eq(lvnode_db_status(c->node[1], "sub/b.db", &st), 0, "the replica still lists the deleted database");
    free(a), free(b), free(a2), free(dir), free(ra), free(rb);
}

/* GET path on node n from a thread: the status and how long it took. */
struct waiter {
    const struct lvnode *n;
    char path[256];
    long status;
    char *body;
    int64_t ms;
};

static void *wait_thread(void *arg)
{
    struct waiter *w = arg;
    int64_t t0 = now_ms();
    w->body = lvnode_http_get(w->n, w->path, &w->status);
    w->ms = now_ms() - t0;
    return NULL;
}

Test(replica, role_endpoints_and_wait)
{
    struct lvcluster *c = repl_cluster(1, NULL);
    struct lvnode *pr = c->node[0], *rp = c->node[1];
    char *p = lvnode_path(pr, "app.db"), *b;
    long st = 0;
    struct lvdbstat ds;

    some_writes(p, 0, 5);
    repl_wait_caught_up(c, "app.db");
    /* roles */
    free(lvnode_http_get(pr, "/primary", &st));
    cr_assert_eq(st, 200, "GET /primary on the primary: %ld", st);
    b = lvnode_http_get(rp, "/primary", &st);
    cr_assert_eq(st, 503, "GET /primary on a replica: %ld", st);
    cr_assert(b && strstr(b, "\"primary\":\"http://127.0.0.1:"), "no primary URL in %s", b ? b : "(null)");
    free(b);
    free(lvnode_http_get(rp, "/replica", &st));
    cr_assert_eq(st, 200, "GET /replica on a caught-up replica: %ld", st);
    free(lvnode_http_get(pr, "/replica", &st));
    cr_assert_eq(st, 503, "GET /replica on the primary: %ld", st);

    /* a TXID the replica holds: at once */
    cr_assert_eq(lvnode_http_db(pr, "app.db", &ds), 1);
    uint64_t t = ds.txid;
    char path[256];
    snprintf(path, sizeof path, "/v1/wait?db=app.db&txid=%" PRIu64, t);
    b = lvnode_http_get(rp, path, &st);
    cr_assert_eq(st, 200, "wait for a held TXID: %ld %s", st, b ? b : "");
    free(b);
    /* the next TXID: answered when the commit arrives, not at the timeout */
    struct waiter w = {rp, "", 0, NULL, 0};
    snprintf(w.path, sizeof w.path, "/v1/wait?db=app.db&txid=%" PRIu64 "&timeout=20s", t + 1);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, wait_thread, &w), 0);
    sleep_ms(300);
    cr_assert_eq(sql_exec(p, "INSERT INTO t VALUES(100000, 'w')", 0), 0);
    pthread_join(th, NULL);
    cr_assert_eq(w.status, 200, "wait for the next TXID: %ld %s", w.status, w.body ? w.body : "");
    cr_assert(w.ms >= 250 && w.ms < 10000, "the wait took %" PRId64 " ms", w.ms);
    json_t *o = w.body ? json_loads(w.body, 0, NULL) : NULL;
    cr_assert(json_integer_value(json_object_get(o, "txid")) >= (json_int_t)(t + 1), "%s", w.body);
    json_decref(o);
    free(w.body);
    /* never arrives: 504 after the timeout, with the TXID held */
    snprintf(path, sizeof path, "/v1/wait?db=app.db&txid=%" PRIu64 "&timeout=400ms", t + 1000);
    int64_t t0 = now_ms();
    b = lvnode_http_get(rp, path, &st);
    int64_t took = now_ms() - t0;
    cr_assert_eq(st, 504, "wait past the end: %ld %s", st, b ? b : "");
    cr_assert(took >= 380 && took < 5000, "the 400ms wait took %" PRId64 " ms", took);
    free(b);
    free(lvnode_http_get(rp, "/v1/wait?db=none.db&txid=1&timeout=100ms", &st));
    cr_assert_eq(st, 504, "a database the node lacks: %ld", st);
    /* bad queries */
    const char *bad[] = {"/v1/wait?txid=1", "/v1/wait?db=app.db", "/v1/wait?db=app.db&txid=-1",
                         "/v1/wait?db=app.db&txid=12x", "/v1/wait?db=app.db&txid=1&timeout=soon"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        b = lvnode_http_get(rp, bad[i], &st);
        cr_assert_eq(st, 400, "%s: %ld %s", bad[i], st, b ? b : "");
        cr_assert(b && strstr(b, "\"error\""), "%s: %s", bad[i], b ? b : "");
        free(b);
    }
    free(p);
}

/* GET /v1/log?db=&after= on n: the records back to back; returns how many,
 * checking that they run from TXID after+1 on, chained. */
static int log_records(const struct lvnode *n, const char *db, uint64_t after, long *st)
{
    char path[256];
    char *body = NULL;
    size_t len = 0, off = 0;
    int k = 0;
    uint64_t post = 0;

    snprintf(path, sizeof path, "/v1/log?db=%s&after=%" PRIu64, db, after);
    cr_assert_eq(http_get(n->http, path, &body, &len, st), 0, "GET %s failed", path);
    while (*st == 200 && off < len) {
        struct txlog_hdr h;
        cr_assert_geq(len - off, (size_t)TXLOG_HDR_SIZE);
        cr_assert_eq(txlog_hdr_decode((uint8_t *)body + off, &h), 0, "no record header at offset %zu", off);
        cr_assert_eq(h.txid, after + 1 + (uint64_t)k, "record %d has TXID %" PRIu64, k, h.txid);
        cr_assert(k == 0 || h.pre_cksum == post, "TXID %" PRIu64 " does not continue the chain", h.txid);
        post = h.post_cksum;
        off += TXLOG_HDR_SIZE + h.stored_len + TXLOG_TRAILER_SIZE;
        k++;
    }
    cr_assert(*st != 200 || off == len, "the answer ends inside a record");
    free(body);
    return k;
}

/* GET /v1/log (a node being promoted takes a more advanced node's records
 * with it): on the primary and on a replica alike, the records after a
 * TXID exactly as logged; nothing after the last; 400, 404 as documented. */
Test(replica, log_endpoint)
{
    struct lvcluster *c = repl_cluster(1, NULL);
    struct lvnode *pr = c->node[0], *rp = c->node[1];
    char *p = lvnode_path(pr, "app.db");
    struct lvdbstat ds;
    long st = 0;

    some_writes(p, 0, 5);
    free(p);
    repl_wait_caught_up(c, "app.db");
    cr_assert_eq(lvnode_http_db(pr, "app.db", &ds), 1);
    for (int i = 0; i < 2; i++) {
        struct lvnode *n = i ? rp : pr;
        int k = log_records(n, "app.db", 0, &st);
        cr_assert_eq(st, 200);
        cr_assert_eq((uint64_t)k, ds.txid, "%s: %d records from TXID 1, the log holds %" PRIu64, n->http, k,
                     ds.txid);
        cr_assert_eq(log_records(n, "app.db", ds.txid - 2, &st), 2);
        cr_assert_eq(log_records(n, "app.db", ds.txid, &st), 0);
        cr_assert_eq(st, 200);
    }
    free(lvnode_http_get(pr, "/v1/log?db=none.db&after=0", &st));
    cr_assert_eq(st, 404);
    free(lvnode_http_get(pr, "/v1/log?db=app.db&after=x", &st));
    cr_assert_eq(st, 400);
    free(lvnode_http_get(pr, "/v1/log?after=1", &st));
    cr_assert_eq(st, 400);
}

/* GET /v1/log once the archiver pruned the local log (16 KiB segments,
 * archived every 200 ms): asking from a TXID the log no longer holds
 * answers 410 naming the database and that TXID -- from TXID 0 too, as the
 * log now starts with an ordinary record, not a snapshot -- and asking
 * from its first record answers 200 with every record from there to the
 * last.  (A node being promoted takes a 410 as "ask the next node":
 * peer_catchup.c.) */
Test(replica, log_endpoint_pruned)
{
    struct lvdest *d = lvdest_new(LVDEST_FILE);
    char arch[2048], path[256], want[128];
    lvdest_yaml(d, "    sync-interval: 200ms\n    compaction: []\n", arch, sizeof arch);
    struct lvnode *n = lvnode_new_with("  segment-size: 16KiB\n  state-interval: 200ms\n", arch);
    lvnode_start(n);
    char *p = lvnode_path(n, "app.db");
    some_writes(p, 0, 60); /* some 60 records: several 16 KiB segments */
    free(p);
    long long first = -1;
    cr_assert(WAIT_FOR((first = lvnode_log_first(n, "app.db")) > 2, LVT_WAIT_MS),
              "the local log of app.db was not pruned past TXID 2 (starts at %lld)", first);

    long st = 0;
    char *b = lvnode_http_get(n, "/v1/log?db=app.db&after=0", &st);
    cr_assert_eq(st, 410, "GET /v1/log of app.db after TXID 0, the log starting at TXID %lld: %ld", first, st);
    cr_assert(b && strstr(b, "app.db") && strstr(b, "no longer holds TXID 1 "),
              "the 410 does not name app.db and TXID 1: %s", b ? b : "(null)");
    free(b);
    /* (pruning only moves the start forward: TXID first - 1 stays gone) */
    snprintf(path, sizeof path, "/v1/log?db=app.db&after=%lld", first - 2);
    snprintf(want, sizeof want, "no longer holds TXID %lld ", first - 1);
    b = lvnode_http_get(n, path, &st);
    cr_assert_eq(st, 410, "GET %s, the log starting at TXID %lld: %ld", path, first, st);
    cr_assert(b && strstr(b, want), "the 410 does not name TXID %lld: %s", first - 1, b ? b : "(null)");
    free(b);

    /* From the first record held: all of them, chained.  The archiver may
     * still be pruning: asked again until the log holds still. */
    struct lvdbstat ds;
    cr_assert_eq(lvnode_http_db(n, "app.db", &ds), 1);
    int k = 0;
    cr_assert(WAIT_FOR((first = lvnode_log_first(n, "app.db")) > 0 &&
                           (k = log_records(n, "app.db", (uint64_t)first - 1, &st)) > 0 && st == 200,
                       LVT_WAIT_MS),
              "GET /v1/log of app.db from its first record (TXID %lld): %ld", first, st);
    cr_assert_eq((uint64_t)first + (uint64_t)k - 1, ds.txid,
                 "%d records from TXID %lld, but the last TXID of app.db is %" PRIu64, k, first, ds.txid);
    lvnode_stop(n);
}

/* GET /v1/log and a record larger than one answer carries (over 48 MiB
 * stored: 51 MiB of random bytes, which zstd cannot shrink): the records
 * before it are answered alone (200), asking from it answers 413 naming
 * the database, its TXID and its size, and the records after it are
 * answered again (200). */
Test(replica, log_endpoint_record_too_large)
{
    struct lvnode *n = lvnode_started(NULL);
    char *p = lvnode_path(n, "app.db"), path[256], want[128];
    sqlite3 *db = sql_open(p);
    sqlh_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    sqlh_exec(db, "INSERT INTO t VALUES(1, x'01')");
    sqlh_exec(db, "INSERT INTO t VALUES(2, randomblob(51 << 20))");
    sqlh_exec(db, "INSERT INTO t VALUES(3, x'03')");
    sqlh_exec(db, "INSERT INTO t VALUES(4, x'04')");
    sqlite3_close(db);
    free(p);
    struct lvdbstat ds;
    cr_assert_eq(lvnode_http_db(n, "app.db", &ds), 1);

    /* The big record: the one with some 13,000 pages. */
    struct lvrec *recs = NULL;
    int nr = lvnode_log_records(n, "app.db", &recs);
    uint64_t big = 0;
    for (int i = 0; i < nr; i++)
        if (recs[i].pages > 12000)
            big = recs[i].txid;
    free(recs);
    cr_assert(big > 1 && big < ds.txid, "no record of 51 MiB between TXID 1 and %" PRIu64 " in the log of app.db",
              ds.txid);

    long st = 0;
    int k = log_records(n, "app.db", 0, &st);
    cr_assert_eq(st, 200, "GET /v1/log of app.db after TXID 0: %ld", st);
    cr_assert_eq((uint64_t)k, big - 1, "%d records answered after TXID 0: the records before TXID %" PRIu64
                 " go alone", k, big);

    snprintf(path, sizeof path, "/v1/log?db=app.db&after=%" PRIu64, big - 1);
    snprintf(want, sizeof want, "app.db: TXID %" PRIu64 " holds ", big);
    char *b = lvnode_http_get(n, path, &st);
    cr_assert_eq(st, 413, "GET %s, TXID %" PRIu64 " being over 48 MiB: %ld", path, big, st);
    cr_assert(b && strstr(b, want) && strstr(b, "more than one answer carries"),
              "the 413 does not name app.db, TXID %" PRIu64 " and its size: %s", big, b ? b : "(null)");
    free(b);

    k = log_records(n, "app.db", big, &st);
    cr_assert_eq(st, 200, "GET /v1/log of app.db after the big TXID %" PRIu64 ": %ld", big, st);
    cr_assert_eq((uint64_t)k, ds.txid - big, "%d records after TXID %" PRIu64 ", the log ends at %" PRIu64, k, big,
                 ds.txid);
    lvnode_stop(n);
}
