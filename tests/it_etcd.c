/*
 * it_etcd.c -- the etcd lease (lease.type: etcd) against a real etcd
 * (Debian's etcd-server, one member per test on loopback).
 *
 *   etcd/failover          three candidates: the first started wins and the
 *                          others follow it; after kill -9 of the primary
 *                          under a write load, another is elected and takes
 *                          writes within ttl + 2 s, holding every row the
 *                          replicas had, with no gap; the third follows it
 *   etcd/sync_loses_nothing  the same with replication.sync-replicas: 1,
 *                          twice in a row (3 nodes, then the 2 left): every
 *                          row acknowledged to the writer before the kill
 *                          is on the new primary, counted
 *   etcd/partition         the primary (sync-replicas: 1) in its own network
 *                          namespace is cut off from etcd and the replicas
 *                          under a write load: it accepts no write after
 *                          its TTL, a replica is elected, every row
 *                          acknowledged is on the new primary, the two
 *                          TXID histories agree up to where they part;
 *                          after the heal the old primary exits (status
 *                          3); its restart keeps a copy of its databases
 *                          (surplus included) and follows the new one
 *   etcd/fence_and_resume  etcd killed under a write load: the primary
 *                          stops taking writes before its TTL runs out
 *                          (never after), and takes them again once etcd
 *                          is back on the same data (the lease survived)
 *   etcd/deposed           a primary frozen past its TTL (SIGSTOP) is
 *                          replaced; when it wakes it accepts nothing more,
 *                          exits with status 3, and its restart sets its
 *                          databases aside (named in its log), then
 *                          follows the new primary; both histories agree
 *   etcd/most_advanced_wins  of two surviving candidates, the one that had
 *                          applied more (the other's applies held back by a
 *                          long reader) is elected: the lagging one does
 *                          not race while the other's node key lives, even
 *                          when it alone sees the primary go (the other
 *                          paused)
 *   etcd/sigterm_hands_over  SIGTERM on the primary with an in-sync replica:
 *                          it hands the lease over (the replica takes
 *                          writes well before a TTL), exits 0, and the
 *                          replica holds every row
 *   etcd/archive_tail      the only surviving candidate could not apply
 *                          (a reader in the way) what the primary then
 *                          committed and archived;
 *                          promoted, it applies the archive's records
 *                          before it takes writes, so it holds every row
 *                          the archive holds (and nothing is forked)
 *   etcd/archive_only_db   a database the primary created and archived
 *                          while the only other candidate was down: that
 *                          node, restarted and elected, makes it from the
 *                          archive before writes open (same content,
 *                          database ID, TXID and checksum), its next write
 *                          continues the chain and the archive's lineage;
 *                          databases deleted or renamed on the primary,
 *                          which the archive keeps (marked deleted.json),
 *                          are not made again, and one it
 *                          holds keeps its history when the archive's of
 *                          that name is another database (made anew)
 *   etcd/non_candidate_ahead  the only surviving candidate lags (a reader
 *                          in its way) a replica that may not be elected
 *                          (candidate: false); promoted, it takes that
 *                          replica's records (GET /v1/log) before writes
 *   etcd/peer_unreachable  as non_candidate_ahead, but the advanced node is
 *                          frozen (its node key lives on): the promotion
 *                          gives up on it after 3 s of silence, opens
 *                          writes with its own history, and the frozen
 *                          node, woken, takes the new primary's image
 *   etcd/db_only_on_peer   a database created while the only candidate
 *                          left was down reached only a non-candidate;
 *                          promoted, the candidate takes it whole from
 *                          that node (GET /v1/log from TXID 0) before
 *                          writes open: same records, checksums and rows
 *   etcd/bad_answers       etcd endpoints that answer garbage, HTTP 500 or
 *                          nothing at all: the daemon stays up as a replica
 *                          without a primary, refuses writes, and names the
 *                          endpoint and the problem in its log and /status
 *   etcd/auth              etcd with authentication on (user lv, readwrite
 *                          on /litevault/): a node with lv's password (from
 *                          lease.password-file) is elected and takes writes,
 *                          one with lease.password follows it; one with a
 *                          wrong password stays up, never the primary, and
 *                          names the user (never a password) in its log and
 *                          /status; no log, /status or /metrics holds one
 *   etcd/auth_token_expires  etcd drops an unused token after 1 s
 *                          (--auth-token-ttl 1), less than a round (ttl/4 =
 *                          2.5 s): the primary authenticates again every
 *                          round and stays the primary, taking writes,
 *                          never fenced
 *
 * Skipped, saying so, when etcd is not installed (`make test` installs it).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/lvtest.h"

TestSuite(etcd, .fini = lvt_fini, .timeout = 240);

static void need_etcd(void)
{
    char why[256];
    if (!etcd_available(why, sizeof why))
        cr_skip_test("%s", why);
}

/* A node with an etcd lease of ttl_s seconds on e. */
static struct lvnode *etcd_node(const struct lvetcd *e, int ttl_s, int start)
{
    char yaml[512], ep[128];
    snprintf(yaml, sizeof yaml, "lease:\n  type: etcd\n  endpoints: %s\n  ttl: %ds\n",
             etcd_endpoints(e, 0, ep, sizeof ep), ttl_s);
    struct lvnode *n = lvnode_new(yaml);
    if (start)
        lvnode_start(n);
    return n;
}

/* A node with an etcd lease of ttl_s seconds on e and an extra YAML section. */
static struct lvnode *etcd_node_with(const struct lvetcd *e, int ttl_s, const char *more)
{
    char yaml[512], ep[128];
    snprintf(yaml, sizeof yaml, "lease:\n  type: etcd\n  endpoints: %s\n  ttl: %ds\n%s",
             etcd_endpoints(e, 0, ep, sizeof ep), ttl_s, more);
    struct lvnode *n = lvnode_new(yaml);
    lvnode_start(n);
    return n;
}

/* 1 if n answers GET /primary with 200. */
static int is_primary(const struct lvnode *n)
{
    long st = 0;
    free(lvnode_http_get(n, "/primary", &st));
    return st == 200;
}

/* The primary URL n's /status names ("" on the primary or when unknown), into buf. */
static const char *follows(const struct lvnode *n, char *buf, size_t len)
{
    json_t *s = lvnode_status(n);
    const char *p = s ? json_string_value(json_object_get(s, "primary")) : NULL;
    snprintf(buf, len, "%s", p ? p : "");
    json_decref(s);
    return buf;
}

static int follows_node(const struct lvnode *n, const struct lvnode *p)
{
    char buf[256], want[128];
    snprintf(want, sizeof want, "http://%s", p->http);
    return strcmp(follows(n, buf, sizeof buf), want) == 0;
}

/* Rows in t on n, or -1. */
static long long rows(const struct lvnode *n)
{
    char *path = lvnode_path(n, "app.db");
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(path);
    return v;
}

/* A writer inserting ids 1, 2, 3, ... one per transaction, retrying a
 * refused write every 20 ms; it notes what was acknowledged and when. */
struct writer {
    char *path;               /* database on the mount */
    atomic_int stop;          /* set to end it */
    atomic_long acked;        /* last id committed */
    atomic_llong first_fail;  /* now_ms of the first refused write after a success, or 0 */
    atomic_llong last_ok;     /* now_ms of the last commit */
    atomic_llong ok_after_fail; /* now_ms of the first commit after first_fail, or 0 */
    long first;               /* the first id it inserts */
    int busy;                 /* 1: no pause between commits */
    int fail_rc;              /* SQLite's code for first_fail */
    char fail_msg[128];       /* and its message */
    pthread_t thread;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    sqlite3 *db = NULL;
    long next = w->first;

    cr_assert_eq(sqlite3_open(w->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 200);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    while (!atomic_load(&w->stop)) {
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO t(id) VALUES(%ld)", next);
        int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        long long now = now_ms();
        if (rc == SQLITE_OK) {
            atomic_store(&w->acked, next++);
            atomic_store(&w->last_ok, now);
            if (atomic_load(&w->first_fail) && !atomic_load(&w->ok_after_fail))
                atomic_store(&w->ok_after_fail, now);
        } else if (rc == SQLITE_CONSTRAINT) {
            next++; /* committed, but its acknowledgement was lost: never counted */
        } else if (!atomic_load(&w->first_fail) && atomic_load(&w->acked) > 0) {
            atomic_store(&w->first_fail, now);
            w->fail_rc = rc;
            snprintf(w->fail_msg, sizeof w->fail_msg, "%s", sqlite3_errmsg(db));
        }
        if (rc != SQLITE_OK || !w->busy)
            sleep_ms(rc == SQLITE_OK ? 5 : 20);
    }
    sqlite3_close(db);
    return NULL;
}

static void writer_start(struct writer *w, const struct lvnode *n, long first)
{
    memset(w, 0, sizeof *w);
    w->first = first;
    w->path = lvnode_path(n, "app.db");
    cr_assert_eq(pthread_create(&w->thread, NULL, writer_main, w), 0);
}

static void writer_stop(struct writer *w)
{
    atomic_store(&w->stop, 1);
    pthread_join(w->thread, NULL);
    free(w->path);
}

static void make_table(const struct lvnode *n)
{
    char *p = lvnode_path(n, "app.db");
    cr_assert_eq(sql_exec(p, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY)", 0), 0);
    free(p);
}

/* Try one statement on n's app.db: SQLite's result code (never asserts). */
static int try_sql(const struct lvnode *n, const char *db, const char *sql)
{
    char *path = lvnode_path(n, db);
    sqlite3 *h = NULL;
    int rc = sqlite3_open(path, &h);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(h, 200);
        rc = sqlite3_exec(h, sql, NULL, NULL, NULL);
    }
    sqlite3_close(h);
    free(path);
    return rc;
}

/* Rows in the copy of app.db that a former primary n set aside at its
 * restart (data.dir/surplus/<time>-term-N/app.db), or -1 if there is none. */
static long long surplus_rows(const struct lvnode *n)
{
    char *out = NULL, path[700];
    long long v = -1;
    if (run_cmd(&out, "ls -d %s/surplus/*-term-*/app.db 2>/dev/null | head -1", n->data) == 0 && out && *out) {
        out[strcspn(out, "\n")] = 0;
        snprintf(path, sizeof path, "%s", out);
        v = sql_int(path, "SELECT count(*) FROM t");
    }
    free(out);
    return v;
}

/* Insert ids from..to into n's t, one transaction each; asserts each commits. */
static void insert_ids(const struct lvnode *n, int from, int to)
{
    for (int i = from; i <= to; i++) {
        char sql[64];
        snprintf(sql, sizeof sql, "INSERT INTO t(id) VALUES(%d)", i);
        cr_assert_eq(try_sql(n, "app.db", sql), SQLITE_OK, "INSERT of id %d on %s", i, n->http);
    }
}

/* Rows 1..max(id) all present in n's t (no gap)? */
static int no_gap(const struct lvnode *n)
{
    char *p = lvnode_path(n, "app.db");
    long long c = sql_int(p, "SELECT count(*) FROM t WHERE id < 1000000"),
              m = sql_int(p, "SELECT coalesce(max(id),0) FROM t WHERE id < 1000000");
    free(p);
    return c == m;
}

/* The terms of n's records of app.db (`log ls --json`): each at least the
 * previous one, the first nonzero, the last (returned) larger than the
 * first -- two terms, as after one failover. */
static uint64_t log_terms(struct lvnode *n)
{
    int rc = 0;
    json_t *a = lvnode_cli_json(n, &rc, "log ls", "--db app.db");
    size_t i, k = a ? json_array_size(a) : 0;
    json_t *v;
    uint64_t first = 0, prev = 0;

    cr_assert(a && k >= 2, "log ls --json --db app.db failed (status %d)", rc);
    json_array_foreach(a, i, v) {
        uint64_t t = (uint64_t)json_integer_value(json_object_get(v, "term"));
        cr_assert_geq(t, prev, "TXID %lld: term %" PRIu64 " after term %" PRIu64,
                      (long long)json_integer_value(json_object_get(v, "txid")), t, prev);
        if (i == 0)
            first = t;
        prev = t;
    }
    json_decref(a);
    cr_assert_gt(first, 0, "the first primary's records carry no term");
    cr_assert_gt(prev, first, "the new primary's records carry the old term %" PRIu64, first);
    return prev;
}

Test(etcd, failover)
{
    need_etcd();
    struct lvetcd *e = etcd_start(NULL);
    struct lvnode *n[3];
    n[0] = etcd_node(e, 2, 1);
    cr_assert(WAIT_FOR(is_primary(n[0]), 10000), "the first candidate did not win the lease");
    n[1] = etcd_node(e, 2, 1);
    n[2] = etcd_node(e, 2, 1);
    cr_assert(WAIT_FOR(follows_node(n[1], n[0]) && follows_node(n[2], n[0]), 10000),
              "the other candidates do not follow the primary");
    cr_assert(!is_primary(n[1]) && !is_primary(n[2]));
    make_table(n[0]);

    struct writer w;
    writer_start(&w, n[0], 1);
    cr_assert(WAIT_FOR(atomic_load(&w.acked) >= 100, 10000));
    writer_stop(&w);
    long acked = atomic_load(&w.acked);
    cr_assert(WAIT_FOR(rows(n[1]) == acked && rows(n[2]) == acked, 10000), "replicas did not catch up");

    /* Kill -9 the primary under load: a second writer keeps committing until the kill. */
    writer_start(&w, n[0], acked + 1);
    sleep_ms(300);
    lvnode_kill9(n[0]);
    long long t_kill = now_ms();
    writer_stop(&w);

    int winner = -1;
    long long t_first = 0;
    while (winner < 0 && now_ms() - t_kill < 10000) {
        for (int i = 1; i < 3 && winner < 0; i++) {
            if (try_sql(n[i], "app.db", "INSERT INTO t(id) VALUES(1000000)") == SQLITE_OK) {
                winner = i;
                t_first = now_ms();
            }
        }
        if (winner < 0)
            sleep_ms(50);
    }
    cr_assert_geq(winner, 1, "no node took writes within 10 s of the primary's death");
    cr_log_info("failover: first write accepted %lld ms after kill -9 (ttl 2 s)", t_first - t_kill);
    cr_assert_leq(t_first - t_kill, 4000, "failover took %lld ms, more than ttl + 2 s", t_first - t_kill);
    struct lvnode *np = n[winner], *other = n[3 - winner];
    char *p = lvnode_path(np, "app.db");
    long long have = sql_int(p, "SELECT count(*) FROM t WHERE id < 1000000");
    free(p);
    cr_log_info("failover: the new primary holds rows 1..%lld; %ld were acknowledged before the kill (asynchronous "
                "replication: the difference is what the dead primary had not yet sent)", have, atomic_load(&w.acked));
    cr_assert_geq(have, acked, "the new primary lost rows every replica held");
    cr_assert(no_gap(np));
    cr_assert(WAIT_FOR(follows_node(other, np), 10000), "the third node does not follow the new primary");
    cr_assert(WAIT_FOR(rows(other) == have + 1, 10000), "the third node did not get the new primary's write");
    /* Terms on the records: the first primary's term on its records, the new
     * primary's larger term on its own, never going back; the third node's
     * log carries the same terms. */
    uint64_t t_new = log_terms(np), t_other = log_terms(other);
    cr_assert_eq(t_other, t_new, "the third node's last record has term %" PRIu64 ", the new primary's %" PRIu64,
                 t_other, t_new);
}

/* Kill -9 the primary p of nodes n[0..k) under a writer's load; return the
 * index of the new primary (which took a write within ttl + 2 s) after
 * checking that it holds every row acknowledged before the kill. */
static int kill_under_load(struct lvnode **n, int k, int p, long *first_id)
{
    struct writer w;
    writer_start(&w, n[p], *first_id);
    w.busy = 1; /* read at its next commit: back to back from then on */
    cr_assert(WAIT_FOR(atomic_load(&w.acked) >= *first_id + 200, 10000), "the writer makes no progress");
    lvnode_kill9(n[p]);
    long long t_kill = now_ms();
    writer_stop(&w);
    long acked = atomic_load(&w.acked);
    int winner = -1;
    while (winner < 0 && now_ms() - t_kill < 10000) {
        for (int i = 0; i < k && winner < 0; i++)
            if (i != p && is_primary(n[i]))
                winner = i;
        if (winner < 0)
            sleep_ms(20);
    }
    cr_assert_geq(winner, 0, "nobody was elected");
    cr_assert(WAIT_FOR(try_sql(n[winner], "app.db", "SELECT 1") == SQLITE_OK, 2000));
    char *path = lvnode_path(n[winner], "app.db");
    long long have = sql_int(path, "SELECT count(*) FROM t"), top = sql_int(path, "SELECT max(id) FROM t");
    free(path);
    cr_log_info("sync failover: %ld rows acknowledged, the new primary holds %lld (max id %lld), elected %lld ms "
                "after the kill", acked, have, top, now_ms() - t_kill);
    cr_assert_geq(top, acked, "a row acknowledged under sync-replicas 1 is missing on the new primary");
    cr_assert_eq(have, top, "the new primary's rows have a gap");
    *first_id = top + 1;
    return winner;
}

Test(etcd, sync_loses_nothing)
{
    need_etcd();
    struct lvetcd *e = etcd_start(NULL);
    /* Every stream waits 10 ms after a commit before it sends it (the test
     * seam LV_TEST_STREAM_DELAY_US, a slow network): an asynchronous primary
     * then acknowledges commits its replicas do not hold yet.
     * LVT_SYNC_REPLICAS=0 runs the test asynchronous: it then fails (rows
     * lost), which shows what the test can see. */
    const char *env = getenv("LVT_SYNC_REPLICAS");
    int nsync = env ? atoi(env) : 1;
    setenv("LV_TEST_STREAM_DELAY_US", "10000", 1);
    char sync[128];
    snprintf(sync, sizeof sync, "replication:\n  sync-replicas: %d\n  sync-timeout: 10s\n", nsync);
    struct lvnode *n[3];
    n[0] = etcd_node_with(e, 2, sync);
    cr_assert(WAIT_FOR(is_primary(n[0]), 10000));
    n[1] = etcd_node_with(e, 2, sync);
    n[2] = etcd_node_with(e, 2, sync);
    cr_assert(WAIT_FOR(follows_node(n[1], n[0]) && follows_node(n[2], n[0]), 10000));
    make_table(n[0]);
    cr_assert(!nsync || WAIT_FOR(lvnode_log_contains(n[0], "counts for sync-replicas"), 10000));
    long first = 1;
    int p = kill_under_load(n, 3, 0, &first);
    int other = 3 - p; /* the survivor that is not the new primary (indices 1 and 2) */
    cr_assert(WAIT_FOR(follows_node(n[other], n[p]), 10000));
    cr_assert(!nsync || WAIT_FOR(lvnode_log_contains(n[p], "counts for sync-replicas"), 10000),
              "the third node does not count for sync-replicas on the new primary");
    struct lvnode *two[2] = {n[p], n[other]};
    struct writer w;
    writer_start(&w, n[p], first);
    cr_assert(WAIT_FOR(atomic_load(&w.acked) >= first + 10, 10000));
    writer_stop(&w);
    first = atomic_load(&w.acked) + 1;
    cr_assert(!nsync || lvnode_metric(n[p], "litevault_replication_sync_waits_total") > 0,
              "no commit waited on the new primary");
    kill_under_load(two, 2, 0, &first);
}

Test(etcd, partition)
{
    char why[256], yaml[512], ep[128];
    need_etcd();
    if (!netns_supported(why, sizeof why))
        cr_skip_test("network namespaces are not available here: %s", why);
    struct netns *ns = netns_new();
    struct lvetcd *e = etcd_start(ns->host_addr);
    /* One archive for all: a cut-off primary must upload nothing the next one lacks. */
    char sync[1024], arch_url[400];
    snprintf(arch_url, sizeof arch_url, "file://%s", lvt_tmpdir("archive"));
    snprintf(sync, sizeof sync, "replication:\n  sync-replicas: 1\n  sync-timeout: 10s\narchive:\n  - url: %s\n"
             "    sync-interval: 100ms\n", arch_url);
    snprintf(yaml, sizeof yaml, "lease:\n  type: etcd\n  endpoints: %s\n  ttl: 3s\n%s",
             etcd_endpoints(e, 1, ep, sizeof ep), sync);
    struct lvnode *a = lvnode_new_in_netns(ns, NULL, "  allow-no-token: true\n", yaml);
    lvnode_start(a);
    cr_assert(WAIT_FOR(is_primary(a), 10000));
    struct lvnode *r[2];
    snprintf(yaml, sizeof yaml, "lease:\n  type: etcd\n  endpoints: %s\n  ttl: 3s\n%s",
             etcd_endpoints(e, 0, ep, sizeof ep), sync);
    for (int i = 0; i < 2; i++) {
        r[i] = lvnode_new(yaml);
        lvnode_set_http(r[i], ns->host_addr, "  allow-no-token: true\n"); /* a reaches them after the heal */
        lvnode_start(r[i]);
    }
    cr_assert(WAIT_FOR(follows_node(r[0], a) && follows_node(r[1], a), 10000));
    make_table(a);
    cr_assert(WAIT_FOR(lvnode_log_contains(a, "counts for sync-replicas"), 10000));

    struct writer w;
    writer_start(&w, a, 1);
    w.busy = 1;
    cr_assert(WAIT_FOR(atomic_load(&w.acked) >= 100, 10000));
    netns_cut(ns);
    long long t_cut = now_ms();
    int winner = -1;
    cr_assert(WAIT_FOR((winner = is_primary(r[0]) ? 0 : is_primary(r[1]) ? 1 : -1) >= 0, 15000),
              "no replica was elected after the primary was cut off");
    long long t_elected = now_ms();
    sleep_ms(500);
    writer_stop(&w);
    long acked = atomic_load(&w.acked);
    long long last_ok = atomic_load(&w.last_ok);
    cr_log_info("partition: the cut-off primary's last write was acknowledged %lld ms after the cut, refused from "
                "%lld ms (%d: %s); a replica was elected %lld ms after the cut (ttl 3 s)", last_ok - t_cut,
                atomic_load(&w.first_fail) - t_cut, w.fail_rc, w.fail_msg, t_elected - t_cut);
    cr_assert_lt(last_ok - t_cut, 3000, "the cut-off primary acknowledged a write %lld ms after the cut, past its "
                 "TTL", last_ok - t_cut);
    cr_assert_lt(last_ok, t_elected, "a write was acknowledged on the old primary after the new one was elected");
    struct lvnode *np = r[winner];
    char *path = lvnode_path(np, "app.db");
    long long top = sql_int(path, "SELECT coalesce(max(id),0) FROM t"), have = sql_int(path, "SELECT count(*) FROM t");
    free(path);
    cr_log_info("partition: %ld rows acknowledged; the new primary holds %lld", acked, have);
    cr_assert_geq(top, acked, "a row acknowledged by the old primary is missing on the new one");
    cr_assert_eq(have, top);
    /* New writes on the new primary, then the heal. */
    cr_assert_eq(try_sql(np, "app.db", "INSERT INTO t(id) VALUES(1000000)"), SQLITE_OK);
    netns_heal(ns);
    int st = wait_exit(a->pid, 15000);
    cr_assert_geq(st, 0, "the old primary did not stop after the heal");
    cr_assert_eq(status_code(st), 3, "the old primary exited with %d, not 3", status_code(st));
    lvt_forget_child(a->pid);
    a->pid = 0;
    run_cmd(NULL, "fusermount3 -uz %s 2>/dev/null", a->mnt);
    /* The histories: the same checksum after every TXID both logged, up to
     * where the old primary's surplus (logged, never acknowledged) begins. */
    struct lvrec *ra = NULL, *rb = NULL;
    int na = lvnode_log_records(a, "app.db", &ra), nb = lvnode_log_records(np, "app.db", &rb), same = 0;
    while (same < na && same < nb && ra[same].post_checksum == rb[same].post_checksum)
        same++;
    cr_log_info("partition: histories agree for %d records; the old primary has %d more, the new one %d more", same,
                na - same, nb - same);
    cr_assert_geq(same, 1);
    free(ra);
    free(rb);
    lvnode_start(a);
    long long kept = surplus_rows(a);
    cr_log_info("partition: the old primary set aside a copy with %lld rows", kept);
    cr_assert_geq(kept, acked, "the old primary's set-aside copy lacks rows it acknowledged");
    cr_assert(WAIT_FOR(follows_node(a, np), 15000), "the old primary does not follow the new one");
    cr_assert(WAIT_FOR(rows(a) == have + 1, 15000), "the old primary did not catch up");
    cr_assert(!is_primary(a));
    /* The archive: the new primary's history, restorable and verified. */
    uint64_t last = lvnode_last_txid(np, "app.db");
    cr_assert(WAIT_FOR(lvnode_archive_txid(np, "app.db", NULL) == last, 15000), "the archive did not reach TXID %llu",
              (unsigned long long)last);
    char out[400];
    snprintf(out, sizeof out, "%s/restored.db", lvt_tmpdir("restore"));
    cr_assert_eq(lv_restore_cmd(arch_url, "app.db", NULL, out), 0, "the shared archive does not restore");
    cr_assert_eq(sql_int(out, "SELECT count(*) FROM t"), have + 1, "the archive's history is not the new primary's");
    cr_assert(lvnode_log_contains(a, "uploads nothing more"), "the cut-off primary did not hold its archiver");
}

Test(etcd, fence_and_resume)
{
    need_etcd();
    struct lvetcd *e = etcd_start(NULL);
    struct lvnode *n = etcd_node(e, 3, 1);
    cr_assert(WAIT_FOR(is_primary(n), 10000));
    make_table(n);
    struct writer w;
    writer_start(&w, n, 1);
    cr_assert(WAIT_FOR(atomic_load(&w.acked) >= 20, 10000));
    etcd_kill(e);
    long long t_kill = now_ms();
    cr_assert(WAIT_FOR(atomic_load(&w.first_fail) != 0, 6000), "writes still accepted 6 s after etcd died");
    long long fail = atomic_load(&w.first_fail), last = atomic_load(&w.last_ok);
    cr_log_info("fence: last write accepted %lld ms, first refused %lld ms after etcd died (ttl 3 s): %d %s",
                last - t_kill, fail - t_kill, w.fail_rc, w.fail_msg);
    cr_assert_lt(last - t_kill, 3000, "a write was accepted %lld ms after etcd died: past the TTL", last - t_kill);
    cr_assert_eq(atomic_load(&w.ok_after_fail), 0, "a write was accepted while fenced");
    long st = 0;
    free(lvnode_http_get(n, "/primary", &st));
    cr_assert_eq(st, 503, "GET /primary answers %ld while fenced", st);
    sleep_ms(1500);
    cr_assert_eq(atomic_load(&w.ok_after_fail), 0, "a write was accepted while etcd was down");

    etcd_restart(e);
    cr_assert(WAIT_FOR(atomic_load(&w.ok_after_fail) != 0, 15000), "writes did not resume once etcd was back");
    writer_stop(&w);
    cr_assert(lvnode_alive(n));
    cr_assert(is_primary(n));
    cr_assert(lvnode_log_contains(n, "(fenced)"));
    cr_assert(no_gap(n));
    lvnode_stop(n);
}

Test(etcd, deposed)
{
    need_etcd();
    struct lvetcd *e = etcd_start(NULL);
    struct lvnode *a = etcd_node(e, 2, 1);
    cr_assert(WAIT_FOR(is_primary(a), 10000));
    struct lvnode *b = etcd_node(e, 2, 1);
    cr_assert(WAIT_FOR(follows_node(b, a), 10000));
    make_table(a);
    insert_ids(a, 1, 10);
    cr_assert(WAIT_FOR(rows(b) == 10, 10000));
    uint64_t a_txid = lvnode_last_txid(a, "app.db");

    kill(a->pid, SIGSTOP);
    cr_assert(WAIT_FOR(is_primary(b), 10000), "the replica was not elected while the primary was frozen");
    cr_assert(WAIT_FOR(try_sql(b, "app.db", "INSERT INTO t(id) VALUES(11)") == SQLITE_OK, 5000),
              "the new primary takes no writes");
    kill(a->pid, SIGCONT);
    int st = wait_exit(a->pid, 10000);
    cr_assert_geq(st, 0, "the deposed primary did not stop");
    cr_assert_eq(status_code(st), 3, "the deposed primary exited with %d, not 3", status_code(st));
    lvt_forget_child(a->pid);
    a->pid = 0;
    run_cmd(NULL, "fusermount3 -uz %s 2>/dev/null", a->mnt);
    cr_assert(lvnode_log_contains(a, "lost its term"));
    cr_assert_eq(lvnode_last_txid(a, "app.db"), a_txid, "the deposed primary logged a transaction after it froze");

    lvnode_start(a);
    cr_assert(lvnode_log_contains(a, "surplus: kept"), "the former primary did not set its databases aside");
    cr_assert_eq(surplus_rows(a), 10, "the set-aside copy does not hold the former primary's rows");
    cr_assert(WAIT_FOR(follows_node(a, b), 10000), "the restarted node does not follow the new primary");
    cr_assert(WAIT_FOR(rows(a) == 11, 10000));
    cr_assert(!is_primary(a));
    /* One history: the same checksum after every TXID both hold. */
    struct lvrec *ra = NULL, *rb = NULL;
    int na = lvnode_log_records(a, "app.db", &ra), nb = lvnode_log_records(b, "app.db", &rb);
    cr_assert_geq(na, 1);
    cr_assert_eq(na, nb);
    for (int i = 0; i < na; i++)
        cr_assert_eq(ra[i].post_checksum, rb[i].post_checksum, "the histories differ at TXID %llu", (unsigned long long)ra[i].txid);
    free(ra);
    free(rb);
}

Test(etcd, most_advanced_wins)
{
    need_etcd();
    struct lvetcd *e = etcd_start(NULL);
    struct lvnode *a = etcd_node(e, 2, 1);
    cr_assert(WAIT_FOR(is_primary(a), 10000));
    /* b's lease outlives a pause of several seconds; c gives up an apply
     * after 50 ms of a reader in the way, and keeps trying. */
    struct lvnode *b = etcd_node_with(e, 8, "");
    struct lvnode *c = etcd_node_with(e, 2, "replication:\n  apply-wait: 50ms\n");
    cr_assert(WAIT_FOR(follows_node(b, a) && follows_node(c, a), 10000));
    make_table(a);
    cr_assert_eq(try_sql(a, "app.db", "INSERT INTO t(id) VALUES(1)"), SQLITE_OK);
    cr_assert(WAIT_FOR(rows(b) == 1 && rows(c) == 1, 10000));

    /* A reader on c holds its snapshot: c stops applying, b keeps up. */
    char *pc = lvnode_path(c, "app.db");
    sqlite3 *rd = NULL;
    cr_assert_eq(sqlite3_open_v2(pc, &rd, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(rd, "BEGIN; SELECT count(*) FROM t;", NULL, NULL, NULL), SQLITE_OK);
    insert_ids(a, 2, 20);
    cr_assert(WAIT_FOR(rows(b) == 20, 10000));
    uint64_t tb = lvnode_last_txid(b, "app.db"), tc = lvnode_last_txid(c, "app.db");
    cr_assert_lt(tc, tb, "c applied despite its reader (TXID %llu, b %llu)", (unsigned long long)tc,
                 (unsigned long long)tb);
    sleep_ms(2500); /* the node keys carry the new positions (put every TTL/4) */

    /* b pauses (its lease and node key live on), a dies: c alone sees the
     * primary key go, and must leave it to b, which is ahead. */
    kill(b->pid, SIGSTOP);
    lvnode_kill9(a);
    long long t0 = now_ms();
    cr_assert(WAIT_FOR(lvnode_log_contains(c, "no primary holds"), 10000), "c did not see the primary key go");
    long long t1 = now_ms();
    sleep_ms(1500);
    int c_won = is_primary(c);
    cr_log_info("most_advanced: the primary key went %lld ms after the kill; c checked at %lld ms", t1 - t0,
                now_ms() - t0);
    kill(b->pid, SIGCONT);
    cr_assert(!c_won, "the lagging node was elected while a more advanced candidate lived");
    cr_assert(lvnode_log_contains(c, "not racing for"), "c did not say why it stayed out");
    cr_assert(WAIT_FOR(is_primary(b), 10000), "b was not elected");
    sqlite3_exec(rd, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(rd);
    free(pc);
    cr_assert(WAIT_FOR(follows_node(c, b), 10000));
    cr_assert(WAIT_FOR(rows(c) == 20, 10000), "c did not catch up from the new primary");
}

Test(etcd, sigterm_hands_over)
{
    need_etcd();
    struct lvetcd *e = etcd_start(NULL);
    struct lvnode *a = etcd_node(e, 5, 1);
    cr_assert(WAIT_FOR(is_primary(a), 10000));
    struct lvnode *b = etcd_node(e, 5, 1);
    cr_assert(WAIT_FOR(follows_node(b, a), 10000));
    make_table(a);
    insert_ids(a, 1, 30);
    long long t0 = now_ms();
    lvnode_stop(a); /* SIGTERM; asserts exit status 0 */
    cr_assert(WAIT_FOR(try_sql(b, "app.db", "INSERT INTO t(id) VALUES(31)") == SQLITE_OK, 10000));
    long long took = now_ms() - t0;
    cr_log_info("sigterm: the replica took writes %lld ms after SIGTERM to the primary (ttl 5 s)", took);
    cr_assert_lt(took, 4000, "no hand-over: the replica waited for the lease to expire");
    cr_assert(lvnode_log_contains(a, "handed the primary role to node"));
    cr_assert_eq(rows(b), 31);
}

/* A fake etcd on port: every request to /v3/kv/range gets 200 with
 * garbage, everything else 500 with an etcd-style error. */
static const char FAKE_ETCD[] =
    "import http.server,sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "  def do_POST(s):\n"
    "    s.rfile.read(int(s.headers.get('Content-Length') or 0))\n"
    "    if s.path=='/v3/kv/range': b=b'<html>not etcd</html>'; s.send_response(200)\n"
    "    else: b=b'{\"error\":\"etcdserver: boom\",\"message\":\"etcdserver: boom\",\"code\":2}'; s.send_response(500)\n"
    "    s.send_header('Content-Length',str(len(b))); s.end_headers(); s.wfile.write(b)\n"
    "  def log_message(s,*a): pass\n"
    "http.server.HTTPServer(('127.0.0.1',int(sys.argv[1])),H).serve_forever()\n";

/* The catch-up tests: b, the only candidate left, held back by the reader
 * rd on its copy (path pb, freed here) while 30 commits (ids 21..50)
 * reached only `what`, is elected; the reader lets go once b promotes;
 * b must then hold all 50 rows (plus its own write: 51), with `needle`
 * in its log. */
static void elected_after_reader(struct lvnode *b, sqlite3 *rd, char *pb, const char *what, const char *needle)
{
    cr_assert(WAIT_FOR(lvnode_log_contains(b, "promoting it to primary"), 15000),
              "the only candidate was not elected after the primary died");
    sqlite3_exec(rd, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(rd);
    free(pb);
    cr_assert(WAIT_FOR(try_sql(b, "app.db", "INSERT INTO t(id) VALUES(51)") == SQLITE_OK, 15000),
              "the new primary takes no writes");
    cr_assert_eq(rows(b), 51, "the new primary holds %ld rows: it opened writes without %s (20 replicated, 30 "
                 "only there, 1 new)", (long)rows(b), what);
    cr_assert(lvnode_log_contains(b, needle), "the catch-up is not in the log (no \"%s\")", needle);
    cr_assert(no_gap(b));
}

/* Candidate a, elected, and candidate *b following it, both archiving to
 * one file:// archive (its URL into url, n bytes; sync-interval 100ms);
 * b_more: more YAML for b only, or "".  Returns a. */
static struct lvnode *archived_pair(struct lvetcd *e, char *url, size_t n, const char *b_more, struct lvnode **b)
{
    char more[1200];
    snprintf(url, n, "file://%s", lvt_tmpdir("archive"));
    snprintf(more, sizeof more, "archive:\n  - url: %s\n    sync-interval: 100ms\n", url);
    struct lvnode *a = etcd_node_with(e, 2, more);
    cr_assert(WAIT_FOR(is_primary(a), 10000), "the first candidate did not win the lease");
    snprintf(more + strlen(more), sizeof more - strlen(more), "%s", b_more);
    *b = etcd_node_with(e, 2, more);
    cr_assert(WAIT_FOR(follows_node(*b, a), 10000), "the second candidate does not follow the primary");
    return a;
}

Test(etcd, archive_tail)
{
    need_etcd();
    struct lvetcd *e = etcd_start(NULL);
    char arch_url[400];
    struct lvnode *b;
    /* b gives up an apply after 200 ms of a reader in the way (and keeps trying) */
    struct lvnode *a = archived_pair(e, arch_url, sizeof arch_url, "replication:\n  apply-wait: 200ms\n", &b);
    make_table(a);
    insert_ids(a, 1, 20);
    cr_assert(WAIT_FOR(rows(b) == 20, 10000), "the replica did not get the first 20 rows");

    /* A reader on b holds its snapshot: b receives a's next 30 commits but
     * cannot apply them; a archives them and dies. */
    char *pb = lvnode_path(b, "app.db");
    sqlite3 *rd = NULL;
    cr_assert_eq(sqlite3_open_v2(pb, &rd, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(rd, "BEGIN; SELECT count(*) FROM t;", NULL, NULL, NULL), SQLITE_OK);
    insert_ids(a, 21, 50);
    uint64_t last = lvnode_last_txid(a, "app.db");
    cr_assert(WAIT_FOR(lvnode_archive_txid(a, "app.db", NULL) == last, 15000),
              "the archive did not reach the primary's TXID %llu", (unsigned long long)last);
    lvnode_kill9(a);
    cr_assert_lt(lvnode_last_txid(b, "app.db"), last, "b applied despite its reader");

    /* Elected, b stops its replication (what it had not applied is gone
     * with it) and reads the archive; the reader lets go meanwhile. */
    elected_after_reader(b, rd, pb, "the archive's tail", "with the archive's records");
    /* Its archive continues the same lineage: a restore gives all 51 rows. */
    cr_assert(WAIT_FOR(lvnode_archive_txid(b, "app.db", NULL) == lvnode_last_txid(b, "app.db"), 15000),
              "the new primary's archive did not catch up with its log");
    char out[700];
    snprintf(out, sizeof out, "%s/restored.db", lvt_tmpdir("restore"));
    cr_assert_eq(lv_restore_cmd(arch_url, "app.db", NULL, out), 0, "the shared archive does not restore");
    cr_assert_eq(sql_int(out, "SELECT count(*) FROM t"), 51, "the archive's history is not the new primary's");
}

/* The database ID of db in n's /status, into buf ("" if not listed). */
static const char *status_id(const struct lvnode *n, const char *db, char *buf, size_t len)
{
    json_t *j = lvnode_status(n), *o;
    size_t i;
    buf[0] = 0;
    json_array_foreach(json_object_get(j, "databases"), i, o)
    {
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *id = json_string_value(json_object_get(o, "id"));
        if (name && id && strcmp(name, db) == 0)
            snprintf(buf, len, "%s", id);
    }
    json_decref(j);
    return buf;
}

/* 1 if n's /status lists db. */
static int holds(const struct lvnode *n, const char *db)
{
    struct lvdbstat st;
    return lvnode_http_db(n, db, &st) == 1;
}

Test(etcd, archive_only_db)
{
    need_etcd();
    struct lvetcd *e = etcd_start(NULL);
    char arch_url[400], ida[40], idb[40];
    struct lvnode *b, *a = archived_pair(e, arch_url, sizeof arch_url, "", &b);
    make_table(a);
    insert_ids(a, 1, 5);

    /* Two databases the archive keeps but b must not make: gone.db, which
     * a deletes (b applies the deletion), and ren.db, which a renames to
     * ren2.db (b renames its copy).  And again.db, which a makes anew
     * while b is down. */
    char *pg = lvnode_path(a, "gone.db"), *pr = lvnode_path(a, "ren.db"), *pr2 = lvnode_path(a, "ren2.db");
    char *pa = lvnode_path(a, "again.db"), ida1[40], idb1[40];
    cr_assert_eq(sql_exec(pg, "CREATE TABLE g(x); INSERT INTO g VALUES(1)", 0), 0);
    cr_assert_eq(sql_exec(pr, "CREATE TABLE r(x); INSERT INTO r VALUES(1)", 0), 0);
    cr_assert_eq(sql_exec(pa, "CREATE TABLE x(v); INSERT INTO x VALUES('first')", 0), 0);
    uint64_t tg = lvnode_last_txid(a, "gone.db"), tr = lvnode_last_txid(a, "ren.db");
    cr_assert(WAIT_FOR(lvnode_archive_txid(a, "gone.db", NULL) == tg && lvnode_archive_txid(a, "ren.db", NULL) == tr,
                       10000), "the archive did not get gone.db and ren.db");
    cr_assert(WAIT_FOR(holds(b, "gone.db") && holds(b, "ren.db") && holds(b, "again.db") && rows(b) == 5, 10000),
              "the replica did not get app.db, gone.db, ren.db and again.db");
    status_id(a, "again.db", ida1, sizeof ida1);
    cr_assert_eq(unlink(pg), 0, "unlink %s: %s", pg, strerror(errno));
    cr_assert_eq(rename(pr, pr2), 0, "rename %s: %s", pr, strerror(errno));
    cr_assert(WAIT_FOR(!holds(b, "gone.db") && !holds(b, "ren.db") && holds(b, "ren2.db"), 10000),
              "the replica did not apply the deletion and the rename");
    free(pg);
    free(pr);
    free(pr2);

    /* b stops; a creates only.db, archives it, and dies: no other node ever
     * held only.db. */
    lvnode_stop(b);
    cr_assert_eq(unlink(pa), 0, "unlink %s: %s", pa, strerror(errno));
    cr_assert_eq(sql_exec(pa, "CREATE TABLE x(v); INSERT INTO x VALUES('second'); INSERT INTO x VALUES('third')", 0),
                 0);
    uint64_t ta = lvnode_last_txid(a, "again.db");
    cr_assert(WAIT_FOR(lvnode_archive_txid(a, "again.db", NULL) == ta, 10000), "the archive did not get the new again.db");
    free(pa);
    char *po = lvnode_path(a, "only.db");
    cr_assert_eq(sql_exec(po, "PRAGMA journal_mode=WAL; CREATE TABLE o(id INTEGER PRIMARY KEY, v TEXT)", 0), 0);
    for (int i = 1; i <= 20; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "INSERT INTO o(v) VALUES(printf('row %%d %%s', %d, hex(randomblob(%d))))", i, i * 7);
        cr_assert_eq(try_sql(a, "only.db", sql), SQLITE_OK, "INSERT %d into only.db", i);
    }
    struct lvdbstat sa, sb;
    cr_assert_eq(lvnode_http_db(a, "only.db", &sa), 1);
    status_id(a, "only.db", ida, sizeof ida);
    uint64_t hash = sql_content_hash(po);
    free(po);
    cr_assert(WAIT_FOR(lvnode_archive_txid(a, "only.db", NULL) == sa.txid, 10000),
              "the archive did not reach only.db's TXID %llu", (unsigned long long)sa.txid);
    lvnode_kill9(a);

    /* b, restarted, is elected: before writes open it makes only.db from
     * the archive, and neither gone.db nor ren.db. */
    lvnode_start(b);
    cr_assert(WAIT_FOR(lvnode_log_contains(b, "role: primary"), 15000), "b was not promoted");
    cr_assert_eq(lvnode_http_db(b, "only.db", &sb), 1, "the new primary does not hold only.db, which only the "
                 "archive held");
    cr_assert_eq(sb.txid, sa.txid, "only.db at TXID %llu, the archive's is %llu", (unsigned long long)sb.txid,
                 (unsigned long long)sa.txid);
    cr_assert_eq(sb.checksum, sa.checksum, "only.db's checksum %016llx, the old primary's %016llx",
                 (unsigned long long)sb.checksum, (unsigned long long)sa.checksum);
    cr_assert_str_eq(status_id(b, "only.db", idb, sizeof idb), ida, "only.db has another database ID");
    char *pob = lvnode_path(b, "only.db");
    cr_assert_eq(sql_content_hash(pob), hash, "only.db's rows differ from the old primary's");
    cr_assert(!holds(b, "gone.db") && !holds(b, "ren.db"), "a deleted or renamed database came back");
    /* a's archiver marked both deleted from their names (deleted.json):
     * skipped for that, before the local checks (this node deleted gone.db,
     * renamed ren.db) are reached */
    cr_assert(lvnode_log_contains(b, "catch-up: gone.db is in the archive") &&
              lvnode_log_contains(b, "catch-up: ren.db is in the archive") && lvnode_log_contains(b, "deleted there at"),
              "the skipped databases are not named in the log as deleted in the archive");
    /* Its again.db keeps its own history; the archive's is another database's. */
    cr_assert_str_eq(status_id(b, "again.db", idb1, sizeof idb1), ida1, "again.db was replaced");
    char *pab = lvnode_path(b, "again.db");
    cr_assert_eq(sql_int(pab, "SELECT count(*) FROM x"), 1, "again.db took the other database's rows");
    free(pab);
    cr_assert(lvnode_log_contains(b, "holds another database of that name"), "again.db's skip is not in the log");

    /* Writes continue its history: TXID T+1 after the checksum at T, in the same archive lineage. */
    cr_assert_eq(try_sql(b, "only.db", "INSERT INTO o(v) VALUES('after the failover')"), SQLITE_OK,
                 "the new primary takes no write on only.db");
    struct lvrec *recs = NULL;
    int nr = lvnode_log_records(b, "only.db", &recs);
    cr_assert_eq(nr, 1, "only.db's log holds %d records, not the one new write", nr);
    cr_assert_eq(recs[0].txid, sa.txid + 1);
    cr_assert_eq(recs[0].pre_checksum, sa.checksum, "the new write does not continue the checksum chain");
    free(recs);
    cr_assert(WAIT_FOR(lvnode_archive_txid(b, "only.db", NULL) == sa.txid + 1, 10000),
              "the archive did not get the new primary's write on only.db");
    char out[700];
    snprintf(out, sizeof out, "%s/only.db", lvt_tmpdir("restore"));
    cr_assert_eq(lv_restore_cmd(arch_url, "only.db", NULL, out), 0, "the archive does not restore only.db");
    cr_assert_eq(sql_int(out, "SELECT count(*) FROM o"), 21, "the archive's only.db is not the new primary's");
    free(pob);
}

/* The peer catch-up tests: candidate a is primary; candidate b applies
 * nothing after id 20 (a reader, returned in *rd on *pb, holds its copy);
 * non-candidate c (node key TTL c_ttl s) gets ids 21..50 and publishes
 * that position. */
static void b_behind_c(struct lvetcd *e, int c_ttl, struct lvnode **a, struct lvnode **b, struct lvnode **c,
                       sqlite3 **rd, char **pb)
{
    *a = etcd_node(e, 2, 1);
    cr_assert(WAIT_FOR(is_primary(*a), 10000), "the first candidate did not win the lease");
    *b = etcd_node_with(e, 2, "replication:\n  apply-wait: 200ms\n");
    *c = etcd_node_with(e, c_ttl, "  candidate: false\n");
    cr_assert(WAIT_FOR(follows_node(*b, *a) && follows_node(*c, *a), 10000), "the replicas do not follow the primary");
    make_table(*a);
    insert_ids(*a, 1, 20);
    cr_assert(WAIT_FOR(rows(*b) == 20 && rows(*c) == 20, 10000), "the replicas did not get the first 20 rows");
    *pb = lvnode_path(*b, "app.db");
    cr_assert_eq(sqlite3_open_v2(*pb, rd, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(*rd, "BEGIN; SELECT count(*) FROM t;", NULL, NULL, NULL), SQLITE_OK);
    insert_ids(*a, 21, 50);
    cr_assert(WAIT_FOR(rows(*c) == 50, 10000), "the non-candidate did not get every row");
    sleep_ms(c_ttl * 250 + 1000); /* c's node key carries its new position (put at most every TTL/4) */
}

Test(etcd, non_candidate_ahead)
{
    need_etcd();
    struct lvetcd *e = etcd_start(NULL);
    struct lvnode *a, *b, *c;
    sqlite3 *rd = NULL;
    char *pb = NULL;
    b_behind_c(e, 2, &a, &b, &c, &rd, &pb);
    lvnode_kill9(a);
    cr_assert_lt(lvnode_last_txid(b, "app.db"), lvnode_last_txid(c, "app.db"), "b applied despite its reader");

    elected_after_reader(b, rd, pb, "the non-candidate's records", "records before writes open");
    cr_assert(WAIT_FOR(follows_node(c, b), 10000), "the non-candidate does not follow the new primary");
    cr_assert(WAIT_FOR(rows(c) == 51, 10000), "the non-candidate did not get the new primary's write");
}

Test(etcd, peer_unreachable)
{
    need_etcd();
    struct lvetcd *e = etcd_start(NULL);
    struct lvnode *a, *b, *c;
    sqlite3 *rd = NULL;
    char *pb = NULL;
    b_behind_c(e, 10, &a, &b, &c, &rd, &pb); /* c's node key outlives its freeze */

    /* c freezes (its node key lives on), a dies: b asks c, which never answers. */
    kill(c->pid, SIGSTOP);
    lvnode_kill9(a);
    cr_assert(WAIT_FOR(lvnode_log_contains(b, "promoting it to primary"), 15000), "b was not elected");
    long long t0 = now_ms();
    sqlite3_exec(rd, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(rd);
    free(pb);
    cr_assert(WAIT_FOR(try_sql(b, "app.db", "INSERT INTO t(id) VALUES(1000000)") == SQLITE_OK, 20000),
              "the new primary takes no writes");
    long long took = now_ms() - t0;
    cr_log_info("peer_unreachable: b took writes %lld ms after its promotion began (the frozen node is given up after "
                "about 3 s of silence)", took);
    cr_assert_leq(took, 3000 + 4000, "the promotion waited %lld ms for the frozen node", took);
    if (!lvnode_log_contains(b, "no node gave its records")) {
        char *t = lvnode_log_text(b);
        cr_assert_fail("b does not say that the catch-up failed; its log:\n%.6000s", strstr(t, "promoting") ? strstr(t, "promoting") : t);
    }
    cr_assert_eq(rows(b), 21, "b holds %ld rows: its own 20 and its new write", (long)rows(b));

    /* Woken, c (ahead of b in a's term) takes b's image of its new term and follows it. */
    kill(c->pid, SIGCONT);
    cr_assert(WAIT_FOR(follows_node(c, b), 20000), "the woken node does not follow the new primary");
    cr_assert(WAIT_FOR(rows(c) == 21, 20000), "the woken node did not take the new primary's history (%ld rows)",
              (long)rows(c));
}

/* n's new.db: its records (`log ls`) into *r, asserting that there are
 * some; their number. */
static int new_db_records(const struct lvnode *n, struct lvrec **r)
{
    int k = lvnode_log_records(n, "new.db", r);
    cr_assert_gt(k, 0, "no record of new.db in the log of %s", n->http);
    return k;
}

/* A database only a non-candidate holds: candidate b is stopped while the
 * primary a creates new.db, which non-candidate c receives; a dies and b,
 * started again, is elected.  Before writes open b takes new.db from c
 * (GET /v1/log from TXID 0): the same records (TXIDs, checksums, kinds),
 * the same rows; c, following b, goes on from there without an image. */
Test(etcd, db_only_on_peer)
{
    need_etcd();
    struct lvetcd *e = etcd_start(NULL);
    struct lvnode *a = etcd_node(e, 2, 1);
    cr_assert(WAIT_FOR(is_primary(a), 10000), "the first candidate did not win the lease");
    struct lvnode *b = etcd_node(e, 2, 1);
    struct lvnode *c = etcd_node_with(e, 2, "  candidate: false\n");
    cr_assert(WAIT_FOR(follows_node(b, a) && follows_node(c, a), 10000), "the replicas do not follow the primary");
    make_table(a);
    insert_ids(a, 1, 5);
    cr_assert(WAIT_FOR(rows(b) == 5 && rows(c) == 5, 10000), "the replicas did not get the first 5 rows");

    /* b down: new.db reaches c only. */
    lvnode_stop(b);
    char *pa = lvnode_path(a, "new.db"), *pb = lvnode_path(b, "new.db"), *pc = lvnode_path(c, "new.db");
    sqlite3 *h = sql_open(pa);
    sqlh_exec(h, "PRAGMA journal_mode=WAL");
    sqlh_exec(h, "CREATE TABLE n(id INTEGER PRIMARY KEY, v TEXT)");
    for (int i = 1; i <= 20; i++)
        sqlh_exec(h, "INSERT INTO n VALUES(%d, hex(randomblob(200)))", i);
    sqlite3_close(h);
    struct lvdbstat sa, sb, sc;
    cr_assert_eq(lvnode_http_db(a, "new.db", &sa), 1);
    cr_assert(WAIT_FOR(lvnode_http_db(c, "new.db", &sc) == 1 && sc.txid == sa.txid, 10000),
              "the non-candidate did not get new.db up to TXID %" PRIu64, sa.txid);
    sleep_ms(2 * 250 + 1000); /* c's node key names new.db (put at most every TTL/4) */
    lvnode_kill9(a);

    /* b, the only candidate, is elected: it lacks new.db, c has it. */
    lvnode_start(b);
    cr_assert(WAIT_FOR(try_sql(b, "app.db", "INSERT INTO t(id) VALUES(6)") == SQLITE_OK, 20000),
              "b was not elected, or takes no writes");
    if (lvnode_http_db(b, "new.db", &sb) != 1) {
        char *t = lvnode_log_text(b);
        cr_assert_fail("the new primary lacks new.db, which node c holds up to TXID %" PRIu64 "; its log:\n%.6000s",
                       sc.txid, strstr(t, "promoting") ? strstr(t, "promoting") : t);
    }
    cr_assert_eq(sb.txid, sc.txid, "new.db: TXID %" PRIu64 " on the new primary, %" PRIu64 " on node c", sb.txid,
                 sc.txid);
    cr_assert_eq(sb.checksum, sc.checksum, "new.db: checksum %016" PRIx64 " on the new primary, %016" PRIx64
                 " on node c", sb.checksum, sc.checksum);
    cr_assert_eq(sql_content_hash(pb), sql_content_hash(pc), "new.db: other rows on the new primary than on node c");
    struct lvrec *rb = NULL, *rc = NULL;
    int nb = new_db_records(b, &rb), nc = new_db_records(c, &rc);
    cr_assert_eq(nb, nc, "new.db: %d records on the new primary, %d on node c", nb, nc);
    for (int i = 0; i < nb; i++)
        cr_assert(rb[i].txid == rc[i].txid && rb[i].post_checksum == rc[i].post_checksum &&
                      rb[i].snapshot == rc[i].snapshot,
                  "new.db: record %d is TXID %" PRIu64 " (checksum %016" PRIx64 ") on the new primary, TXID %" PRIu64
                  " (checksum %016" PRIx64 ") on node c", i, rb[i].txid, rb[i].post_checksum, rc[i].txid,
                  rc[i].post_checksum);
    free(rb);
    free(rc);
    char needle[128];
    snprintf(needle, sizeof needle, "catch-up: new.db advanced from TXID 0 to %" PRIu64, sc.txid);
    cr_assert(lvnode_log_contains(b, needle), "no \"%s\" in the new primary's log", needle);

    /* One history: c follows b and takes its next write to new.db as a record. */
    cr_assert_eq(try_sql(b, "new.db", "INSERT INTO n VALUES(21, 'on b')"), SQLITE_OK, "new.db takes no write on b");
    cr_assert(WAIT_FOR(follows_node(c, b), 10000), "the non-candidate does not follow the new primary");
    cr_assert(WAIT_FOR(sql_int(pc, "SELECT count(*) FROM n") == 21, 10000),
              "node c did not get the new primary's write to new.db");
    cr_assert_eq(lvnode_metric(b, "litevault_replication_snapshots_sent_total"), 0,
                 "the new primary sent node c an image: their histories differ");
    free(pa);
    free(pb);
    free(pc);
}

Test(etcd, bad_answers)
{
    int fport = free_port(), hport;
    char cmd[64], log[300], yaml[512];
    snprintf(cmd, sizeof cmd, "%d", fport);
    snprintf(log, sizeof log, "%s/fake.log", lvt_tmpdir("fake-etcd"));
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execlp("python3", "python3", "-c", FAKE_ETCD, cmd, (char *)NULL);
        _exit(127);
    }
    lvt_defer_kill(pid);
    /* An endpoint that accepts and never answers: a listening socket nobody reads. */
    hport = free_port();
    cr_assert(WAIT_FOR(run_cmd(NULL, "curl -s -o /dev/null --max-time 1 -X POST http://127.0.0.1:%d/", fport) == 0, 5000));
    pid_t hp = fork();
    cr_assert_geq(hp, 0);
    if (hp == 0) {
        execlp("python3", "python3", "-c",
               "import socket,sys,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
               "s.bind(('127.0.0.1',int(sys.argv[1])));s.listen(64)\nwhile True: time.sleep(1)\n",
               (snprintf(cmd, sizeof cmd, "%d", hport), cmd), (char *)NULL);
        _exit(127);
    }
    lvt_defer_kill(hp);
    sleep_ms(300);
    snprintf(yaml, sizeof yaml, "lease:\n  type: etcd\n  key: /test/primary\n  ttl: 2s\n"
                                "  endpoints: [http://127.0.0.1:%d, http://127.0.0.1:%d]\n", fport, hport);
    struct lvnode *n = lvnode_new(yaml);
    lvnode_start(n);
    sleep_ms(4000);
    cr_assert(lvnode_alive(n), "the daemon died on bad etcd answers");
    cr_assert(!is_primary(n));
    cr_assert(lvnode_log_contains(n, "is not a JSON object") || lvnode_log_contains(n, "answered HTTP 500"),
              "no log line about the bad answers");
    char ep[64];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", hport);
    cr_assert(lvnode_log_contains(n, ep), "the silent endpoint is not named in the log");
    json_t *s = lvnode_status(n);
    cr_assert_not_null(s);
    const char *err = json_string_value(json_object_get(json_object_get(s, "lease"), "error"));
    cr_assert(err && *err, "/status shows no lease error");
    json_decref(s);
    cr_assert_neq(try_sql(n, "new.db", "CREATE TABLE x(a)"), SQLITE_OK, "a write was accepted without a lease");
    lvnode_stop(n);
}

/* ---- authentication (lease.username) ---- */

#define AUTH_PW "lv-S3cret-pass-42"      /* etcd user lv's password */
#define AUTH_BAD_PW "wrong-Pa55-word-17" /* a wrong one */
#define AUTH_ROOT_PW "root-Pa55-word-99" /* etcd's root */

/* POST body to e's JSON API at path, as user (NULL: no token) with
 * password pw, authenticated just before (a token may live only 1 s
 * here): etcd's answer (malloc'ed); asserts HTTP 200. */
static char *etcd_api(const struct lvetcd *e, const char *user, const char *pw, const char *path, const char *body)
{
    char *out = NULL, hdr[160] = "";
    if (user) {
        cr_assert_eq(run_cmd(&out, "curl -sS --fail-with-body -X POST %s/v3/auth/authenticate "
                                   "-d '{\"name\":\"%s\",\"password\":\"%s\"}'", e->url, user, pw), 0,
                     "etcd authentication of %s: %s", user, out ? out : "");
        json_t *a = json_loads(out, 0, NULL);
        const char *tok = json_string_value(json_object_get(a, "token"));
        cr_assert(tok && *tok, "etcd's authentication answer has no token: %s", out);
        snprintf(hdr, sizeof hdr, "-H 'Authorization: %s'", tok);
        json_decref(a);
        free(out);
        out = NULL;
    }
    cr_assert_eq(run_cmd(&out, "curl -sS --fail-with-body -X POST %s%s %s -d '%s'", e->url, path, hdr, body), 0,
                 "etcd %s: %s", path, out ? out : "");
    return out;
}

/* Turn authentication on in e: root, and user lv with readwrite on every
 * key under /litevault/ (the cluster ID, the lease key, the node keys). */
static void etcd_enable_auth(const struct lvetcd *e)
{
    static const char *const steps[][2] = {
        {"/v3/auth/user/add", "{\"name\":\"root\",\"password\":\"" AUTH_ROOT_PW "\"}"},
        {"/v3/auth/user/grant", "{\"user\":\"root\",\"role\":\"root\"}"},
        {"/v3/auth/user/add", "{\"name\":\"lv\",\"password\":\"" AUTH_PW "\"}"},
        {"/v3/auth/role/add", "{\"name\":\"litevault\"}"},
        /* key "/litevault/", range_end "/litevault0": the prefix */
        {"/v3/auth/role/grant", "{\"name\":\"litevault\",\"perm\":{\"key\":\"L2xpdGV2YXVsdC8=\","
                                "\"range_end\":\"L2xpdGV2YXVsdDA=\",\"permType\":\"READWRITE\"}}"},
        {"/v3/auth/user/grant", "{\"user\":\"lv\",\"role\":\"litevault\"}"},
        {"/v3/auth/enable", "{}"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        free(etcd_api(e, NULL, NULL, steps[i][0], steps[i][1]));
    /* Auth is on: a request without a token is refused, root's works. */
    char *out = NULL;
    run_cmd(&out, "curl -s -X POST %s/v3/kv/range -d '{\"key\":\"L2xpdGV2YXVsdC8=\"}'", e->url);
    cr_assert(out && strstr(out, "user name is empty"), "etcd still answers without a token: %s", out ? out : "");
    free(out);
    free(etcd_api(e, "root", AUTH_ROOT_PW, "/v3/kv/range", "{\"key\":\"L2xpdGV2YXVsdC8=\"}"));
}

/* Times needle occurs in n's log. */
static int log_count(const struct lvnode *n, const char *needle)
{
    char *t = lvnode_log_text(n);
    int k = 0;
    for (const char *p = strstr(t, needle); p; p = strstr(p + 1, needle))
        k++;
    free(t);
    return k;
}

/* Neither password in n's log, /status or /metrics. */
static void no_password_shown(const struct lvnode *n)
{
    const char *pw[] = {AUTH_PW, AUTH_BAD_PW};
    char *log = lvnode_log_text(n), *st = lvnode_http_get(n, "/status", NULL), *me = lvnode_http_get(n, "/metrics", NULL);
    cr_assert(st && me, "no /status or /metrics from %s", n->http);
    for (size_t i = 0; i < 2; i++) {
        cr_assert_null(strstr(log, pw[i]), "a password is in the log of %s", n->http);
        cr_assert_null(strstr(st, pw[i]), "a password is in /status of %s", n->http);
        cr_assert_null(strstr(me, pw[i]), "a password is in /metrics of %s", n->http);
    }
    free(log);
    free(st);
    free(me);
}

Test(etcd, auth)
{
    need_etcd();
    struct lvetcd *e = etcd_start(NULL);
    etcd_enable_auth(e);
    char pwfile[300], more[400];
    snprintf(pwfile, sizeof pwfile, "%s/etcd-password", lvt_tmpdir("secret"));
    FILE *f = fopen(pwfile, "w");
    cr_assert_not_null(f);
    fputs(AUTH_PW "\n", f); /* the trailing newline is not part of it */
    fclose(f);

    /* (1) The right password: elected, takes writes; a second node follows it. */
    snprintf(more, sizeof more, "  username: lv\n  password-file: %s\n", pwfile);
    struct lvnode *a = etcd_node_with(e, 2, more);
    cr_assert(WAIT_FOR(is_primary(a), 15000), "the node with etcd credentials was not elected");
    cr_assert(lvnode_log_contains(a, "authenticated to etcd at"), "no log line about the authentication");
    make_table(a);
    insert_ids(a, 1, 10);
    struct lvnode *c = etcd_node_with(e, 2, "  username: lv\n  password: " AUTH_PW "\n");
    cr_assert(WAIT_FOR(follows_node(c, a), 15000), "the second node does not follow the primary");
    cr_assert(WAIT_FOR(rows(c) == 10, 10000), "the second node did not get the rows");

    /* (2) A wrong password, on the primary's own key (a's cluster ID): never
     * the primary, alive, and it says what is wrong without the password. */
    char cid[64] = "", *out = NULL, keyline[200];
    cr_assert_eq(run_cmd(&out, "cat %s/cluster-id", a->data), 0);
    snprintf(cid, sizeof cid, "%s", out);
    cid[strcspn(cid, "\r\n")] = 0;
    free(out);
    cr_assert_eq(strlen(cid), 32, "no cluster ID in %s/cluster-id", a->data);
    snprintf(keyline, sizeof keyline, "  key: /litevault/%s/primary\n  username: lv\n  password: " AUTH_BAD_PW "\n",
             cid);
    struct lvnode *b = etcd_node_with(e, 2, keyline);
    cr_assert(WAIT_FOR(lvnode_log_contains(b, "refused user lv"), 10000),
              "the node with a wrong password does not say that etcd refused user lv");
    sleep_ms(2000); /* a few rounds */
    cr_assert(lvnode_alive(b), "a wrong password killed the daemon");
    cr_assert(!is_primary(b), "the node with a wrong password is the primary");
    cr_assert(is_primary(a), "the primary lost its role to a node with a wrong password");
    cr_assert_leq(log_count(b, "refused user lv"), 2, "the same problem is logged every round");
    char ep[96];
    snprintf(ep, sizeof ep, "etcd at %s refused user lv", e->url);
    cr_assert(lvnode_log_contains(b, ep), "the log line does not name the endpoint");
    cr_assert(lvnode_log_contains(b, "lease.password"), "the log line does not say what to check");
    json_t *s = lvnode_status(b);
    const char *err = json_string_value(json_object_get(json_object_get(s, "lease"), "error"));
    cr_assert(err && strstr(err, "refused user lv"), "/status shows no lease error naming the user: %s", err);
    json_decref(s);
    cr_assert_neq(try_sql(b, "app.db", "INSERT INTO t(id) VALUES(99)"), SQLITE_OK, "a write was accepted on b");
    no_password_shown(a);
    no_password_shown(b);
    no_password_shown(c);
    insert_ids(a, 11, 20);
    cr_assert(WAIT_FOR(rows(c) == 20, 10000));
    lvnode_stop(b);
}

Test(etcd, auth_token_expires)
{
    need_etcd();
    /* etcd forgets a token unused for 1 s; the node's rounds are 2.5 s apart. */
    struct lvetcd *e = etcd_start_args(NULL, "--auth-token-ttl 1");
    etcd_enable_auth(e);
    struct lvnode *n = etcd_node_with(e, 10, "  username: lv\n  password: " AUTH_PW "\n");
    cr_assert(WAIT_FOR(is_primary(n), 15000), "the node with etcd credentials was not elected");
    make_table(n);
    int before = log_count(n, "asks for a new auth token"), id = 0, lost = 0;
    long long t0 = now_ms();
    /* Longer than the fencing deadline (7.5 s after a renewal): a node that
     * could not renew with an expired token would be fenced in here. */
    while (now_ms() - t0 < 12000) {
        char sql[64];
        snprintf(sql, sizeof sql, "INSERT INTO t(id) VALUES(%d)", ++id);
        cr_assert_eq(try_sql(n, "app.db", sql), SQLITE_OK, "a write was refused %lld ms in", now_ms() - t0);
        lost += !is_primary(n);
        sleep_ms(100);
    }
    int again = log_count(n, "asks for a new auth token") - before;
    cr_log_info("auth_token_expires: %d writes in 12 s; the node authenticated again %d times", id, again);
    cr_assert_geq(again, 3, "the token expired every round, yet the node authenticated again only %d times", again);
    cr_assert_eq(lost, 0, "the node was not the primary at %d of its checks", lost);
    cr_assert(!lvnode_log_contains(n, "(fenced)"), "the node fenced itself");
    cr_assert(!lvnode_log_contains(n, "right after authenticating again"));
    no_password_shown(n);
    lvnode_stop(n);
}
