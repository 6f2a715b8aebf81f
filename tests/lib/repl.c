/*
 * repl.c -- a primary and its replicas for the replication tests (repl.h).
 */
#include "repl.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sql.h"
#include "util.h"

void repl_reconfig_data(struct lvcluster *c, int i, const char *data_keys, const char *common_yaml,
                        const char *http_keys)
{
    struct lvnode *n = c->node[i];
    FILE *f = fopen(n->config, "w");
    cr_assert(f, "cannot write %s", n->config);
    fprintf(f, "fuse:\n  dir: %s\ndata:\n  dir: %s\n%shttp:\n  addr: %s\n%slog:\n  level: info\n  format: text\n",
            n->mnt, n->data, data_keys ? data_keys : "", n->http, http_keys ? http_keys : "");
    if (i == 0)
        fprintf(f, "lease:\n  type: static\n  candidate: true\n");
    else
        fprintf(f, "lease:\n  type: static\n  candidate: false\n  primary-url: http://%s\n", c->node[0]->http);
    if (common_yaml && *common_yaml)
        fprintf(f, "%s%s", common_yaml, common_yaml[strlen(common_yaml) - 1] == '\n' ? "" : "\n");
    cr_assert(fclose(f) == 0);
}

void repl_reconfig(struct lvcluster *c, int i, const char *common_yaml, const char *http_keys)
{
    repl_reconfig_data(c, i, NULL, common_yaml, http_keys);
}

struct lvcluster *repl_cluster_with(int nrep, const char *common_yaml, const char *const *http_keys, int start)
{
    struct lvcluster *c = lvcluster_new(1 + nrep, NULL, NULL);
    for (int i = 0; i <= nrep; i++)
        repl_reconfig(c, i, common_yaml, http_keys ? http_keys[i] : NULL);
    if (start)
        lvcluster_start(c);
    return c;
}

struct lvcluster *repl_cluster(int nrep, const char *common_yaml)
{
    return repl_cluster_with(nrep, common_yaml, NULL, 1);
}

/* 1 when every running replica has db at the primary's TXID and checksum. */
static int caught_up(struct lvcluster *c, const char *db, char *why, size_t n)
{
    struct lvdbstat p, r;
    if (lvnode_db_status(c->node[0], db, &p) != 1) {
        snprintf(why, n, "the primary does not list %s", db);
        return 0;
    }
    for (int i = 1; i < c->n; i++) {
        if (!c->node[i]->pid)
            continue;
        int rc = lvnode_db_status(c->node[i], db, &r);
        if (rc != 1 || r.txid != p.txid || r.checksum != p.checksum) {
            snprintf(why, n, "replica %d: %s at TXID %" PRIu64 " (checksum %016" PRIx64 "), primary at %" PRIu64
                     " (%016" PRIx64 ")", i, rc == 1 ? db : "no database", rc == 1 ? r.txid : 0,
                     rc == 1 ? r.checksum : 0, p.txid, p.checksum);
            return 0;
        }
    }
    return 1;
}

void repl_wait_caught_up(struct lvcluster *c, const char *db)
{
    char why[512] = "";
    int64_t t0 = now_ms();
    while (!caught_up(c, db, why, sizeof why)) {
        if (now_ms() - t0 > LVT_WAIT_MS) {
            for (int i = 0; i < c->n; i++)
                lvnode_dump_log_tail(c->node[i]);
            cr_assert_fail("replicas did not catch up on %s within %d ms: %s", db, LVT_WAIT_MS, why);
        }
        sleep_ms(50);
    }
}

void repl_assert_same(struct lvcluster *c, const char *db)
{
    char *p = lvnode_path(c->node[0], db);
    uint64_t want = sql_content_hash(p);
    struct lvdbstat ps, rs;
    cr_assert_eq(lvnode_db_status(c->node[0], db, &ps), 1);
    for (int i = 1; i < c->n; i++) {
        if (!c->node[i]->pid)
            continue;
        char *q = lvnode_path(c->node[i], db);
        cr_assert_eq(sql_content_hash(q), want, "%s differs on replica %d", db, i);
        cr_assert(sql_integrity_ok(q, 0), "%s fails integrity_check on replica %d", db, i);
        cr_assert_eq(lvnode_db_status(c->node[i], db, &rs), 1);
        cr_assert_eq(rs.checksum, ps.checksum, "%s: checksum %016" PRIx64 " on replica %d, %016" PRIx64
                     " on the primary", db, rs.checksum, i, ps.checksum);
        free(q);
    }
    free(p);
}
