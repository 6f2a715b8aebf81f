/*
 * it_replica_net.c -- replicas across failures of the network and of the
 * primary, and a replica rebuilt from the archive.
 *
 *   replica_net/partition   a replica in its own network namespace is cut
 *                           off (nftables drops everything) while the
 *                           primary keeps writing, then healed: it recovers
 *                           without help, and /health says 503 meanwhile
 *   replica_net/seed_from_archive   a new replica with the primary's
 *                           archive (s3rver) seeds itself from it and is
 *                           streamed only the records after the archive's
 *                           TXID: no snapshot, and record bytes far below
 *                           the database's size
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lvtest.h"
#include "lib/netns.h"
#include "lib/repl.h"

TestSuite(replica_net, .fini = lvt_fini, .timeout = 300);

/* /health of n through its admin socket (the network may be cut). */
static long admin_health(const struct lvnode *n)
{
    char *out = NULL;
    run_cmd(&out, "curl -s -o /dev/null -w '%%{http_code}' --max-time 5 --unix-socket %s/admin.sock http://l/health",
            n->data);
    long code = out ? atol(out) : 0;
    free(out);
    return code;
}

static void writes(const char *path, int base, int n, int blob)
{
    sqlite3 *db = sql_open(path);
    sqlh_exec(db, "PRAGMA journal_mode=wal");
    sqlh_exec(db, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)");
    for (int i = 0; i < n; i++)
        sqlh_exec(db, "INSERT INTO t VALUES(%d, randomblob(%d))", base + i, blob);
    sqlite3_close(db);
}

Test(replica_net, partition)
{
    char why[256], url[256], yaml[512];
    if (!netns_supported(why, sizeof why)) {
        cr_skip_test("network namespaces are not available here: %s", why);
        return;
    }
    struct netns *ns = netns_new();
    /* the primary on the host, reachable from the namespace */
    struct lvnode *p = lvnode_new("lease:\n  type: static\n  candidate: true\n");
    lvnode_set_http(p, ns->host_addr, "  allow-no-token: true\n");
    lvnode_start(p);
    netns_url_of_host_node(ns, p, url, sizeof url);
    snprintf(yaml, sizeof yaml, "lease:\n  type: static\n  candidate: false\n  primary-url: %s\n"
             "replication:\n  max-lag: 2s\n", url);
    struct lvnode *r = lvnode_new_in_netns(ns, NULL, "  allow-no-token: true\n", yaml);
    lvnode_start(r);
    struct lvcluster c = {.n = 2, .node = {p, r}};
    char *pp = lvnode_path(p, "app.db");
    writes(pp, 0, 20, 100);
    repl_wait_caught_up(&c, "app.db");

    netns_cut(ns);
    writes(pp, 1000, 50, 100);
    long st = 0;
    cr_assert(WAIT_FOR((st = admin_health(r)) == 503, LVT_WAIT_MS),
              "/health stayed %ld on a replica cut off from its primary", st);
    netns_heal(ns);
    writes(pp, 2000, 10, 100);
    repl_wait_caught_up(&c, "app.db");
    repl_assert_same(&c, "app.db");
    cr_assert(WAIT_FOR((st = admin_health(r)) == 200, LVT_WAIT_MS), "/health is %ld after the heal", st);
    free(pp);
}

Test(replica_net, seed_from_archive)
{
    struct lvdest *d = lvdest_new(LVDEST_S3);
    char arch[2048], yaml[4096];
    lvdest_yaml(d, "    sync-interval: 200ms\n    compaction: []\n", arch, sizeof arch);
    struct lvcluster *c = repl_cluster_with(1, arch, NULL, 0);
    lvnode_start(c->node[0]); /* the replica is made later, from the archive */
    char *p = lvnode_path(c->node[0], "app.db");
    writes(p, 0, 200, 4000); /* about 1 MiB */
    struct lvdbstat st = {0};
    char series[256];
    cr_assert_eq(lvnode_http_db(c->node[0], "app.db", &st), 1);
    snprintf(series, sizeof series, "litevault_archive_confirmed_txid{dest=\"0\",db=\"app.db\"}");
    cr_assert(WAIT_FOR(lvnode_metric(c->node[0], series) >= (double)st.txid, LVT_WAIT_MS));
    writes(p, 10000, 5, 100); /* the tail the replica must be streamed */

    snprintf(yaml, sizeof yaml, "%s", arch);
    repl_reconfig(c, 1, yaml, NULL);
    lvnode_start(c->node[1]);
    repl_wait_caught_up(c, "app.db");
    repl_assert_same(c, "app.db");
    cr_assert(lvnode_log_contains(c->node[1], "seeded"), "the replica did not seed itself from the archive");
    cr_assert_eq(lvnode_metric(c->node[0], "litevault_replication_snapshots_sent_total"), 0,
                 "the seeded replica was sent a snapshot");
    double rec = lvnode_metric(c->node[0], "litevault_replication_sent_bytes_total{type=\"record\"}");
    cr_assert_lt(rec, 100000, "the seeded replica was streamed %.0f record bytes; only the tail (5 small "
                 "transactions) was due", rec);
    free(p);
}
