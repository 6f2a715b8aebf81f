/*
 * unit_cluster.c -- roles and identities of a node: the static lease
 * (src/replica/lease.c) and the cluster-id / node-id files of data.dir
 * (src/replica/cluster.c): creation, reload, the exact file format, and
 * every kind of damage refused with LV_ECORRUPT.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "replica/cluster.h"
#include "replica/etcd_value.h"
#include "replica/lease.h"
#include "replica/peer_catchup.h"

/* ---- lease ---- */

static int lt_changes;

static void lt_changed(void *arg)
{
    LV_UNUSED(arg);
    lt_changes++;
}

Test(lease, static_primary)
{
    struct lease *l = NULL;
    char buf[128], err[256] = "";

    cr_assert_eq(lease_open(&(struct lease_conf){.type = "static", .candidate = 1, .advertise_url = "http://db1:20202"}, &l, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(lease_is_primary(l), 1);
    cr_assert_eq(lease_primary_url(l, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "http://db1:20202", "a primary names itself");
    cr_assert_eq(lease_primary_url(l, buf, 5), LV_EINVAL, "buffer too small");
    lease_on_change(l, lt_changed, NULL);
    lease_on_change(l, NULL, NULL);
    cr_assert_eq(lt_changes, 0, "a static lease never changes");
    lease_close(l);

    cr_assert_eq(lease_open(&(struct lease_conf){.candidate = 1}, &l, err, sizeof err), 0, "type NULL: static");
    cr_assert_eq(lease_is_primary(l), 1);
    cr_assert_eq(lease_primary_url(l, buf, sizeof buf), LV_ENOENT, "no advertise-url: unknown");
    lease_close(l);
    lease_close(NULL);
}

Test(lease, static_replica)
{
    struct lease *l = NULL;
    char buf[128], err[256] = "";
    char primary[] = "https://db1:20202";

    cr_assert_eq(lease_open(&(struct lease_conf){.type = "static", .advertise_url = "http://db2:20202", .primary_url = primary}, &l, err, sizeof err), 0,
                 "%s", err);
    primary[0] = 'X'; /* copied */
    cr_assert_eq(lease_is_primary(l), 0);
    cr_assert_eq(lease_primary_url(l, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "https://db1:20202");
    lease_close(l);
}

Test(lease, refused)
{
    struct lease *l = (struct lease *)1;
    char err[256] = "";

    cr_assert_eq(lease_open(&(struct lease_conf){.type = "static"}, &l, err, sizeof err), LV_ECONFIG);
    cr_assert_null(l);
    cr_assert_not_null(strstr(err, "lease.primary-url"), "%s", err);
    cr_assert_eq(lease_open(&(struct lease_conf){.type = "static", .primary_url = ""}, &l, err, sizeof err), LV_ECONFIG);
    cr_assert_eq(lease_open(&(struct lease_conf){.type = "etcd", .candidate = 1}, &l, err, sizeof err), LV_ECONFIG);
    cr_assert_not_null(strstr(err, "needs lease.endpoints"), "%s", err);
    cr_assert_null(l);
    cr_assert_eq(lease_open(&(struct lease_conf){.type = "etcd", .candidate = 1, .endpoints = "http://127.0.0.1:1"},
                            &l, err, sizeof err), LV_ECONFIG, "no key and no cluster ID");
    cr_assert_not_null(strstr(err, "cluster ID"), "%s", err);
    cr_assert_eq(lease_open(&(struct lease_conf){.type = "zk", .candidate = 1}, &l, err, sizeof err), LV_ECONFIG);
    cr_assert_not_null(strstr(err, "unknown lease.type \"zk\""), "%s", err);
}

/* ---- cluster-id, node-id ---- */

static char ct_dir[64];

static void ct_setup(void)
{
    lvlog_threshold = -1;
    strcpy(ct_dir, "/tmp/lvcluster-XXXXXX");
    cr_assert_not_null(mkdtemp(ct_dir));
}

static void ct_teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ct_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", ct_dir);
}

TestSuite(cluster, .init = ct_setup, .fini = ct_teardown);

/* Write len bytes of text as ct_dir/name. */
static void ct_put(const char *name, const char *text, size_t len)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", ct_dir, name);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    fclose(f);
}

/* The contents of ct_dir/name (static buffer), or NULL. */
static const char *ct_get(const char *name)
{
    static char buf[256];
    char path[128];
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "%s/%s", ct_dir, name);
    f = fopen(path, "r");
    if (!f)
        return NULL;
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

Test(cluster, cluster_id_made_once_and_reloaded)
{
    uint8_t a[16], b[16], c[16];
    char hex[33], want[34];

    cr_assert_eq(cluster_id_load(ct_dir, a), LV_ENOENT);
    cr_assert_eq(cluster_id_ensure(ct_dir, a), 0);
    snprintf(want, sizeof want, "%s\n", lv_hex(a, 16, hex));
    cr_assert_str_eq(ct_get("cluster-id"), want, "32 lower-case hex digits and a newline");
    cr_assert_eq(cluster_id_ensure(ct_dir, b), 0);
    cr_assert_eq(memcmp(a, b, 16), 0, "ensure loads the existing ID");
    cr_assert_eq(cluster_id_load(ct_dir, c), 0);
    cr_assert_eq(memcmp(a, c, 16), 0);

    /* Saving replaces it (a replica adopting its primary's). */
    memset(b, 0xab, sizeof b);
    cr_assert_eq(cluster_id_save(ct_dir, b), 0);
    cr_assert_str_eq(ct_get("cluster-id"), "abababababababababababababababab\n");
    cr_assert_eq(cluster_id_load(ct_dir, c), 0);
    cr_assert_eq(memcmp(b, c, 16), 0);

    /* Two fresh directories get different IDs. */
    ct_teardown();
    ct_setup();
    cr_assert_eq(cluster_id_ensure(ct_dir, c), 0);
    cr_assert_neq(memcmp(a, c, 16), 0, "random IDs repeat");
}

Test(cluster, node_id)
{
    char a[33], b[33];

    cr_assert_eq(node_id_ensure(ct_dir, a), 0);
    cr_assert_eq(strlen(a), 32);
    cr_assert_eq(strspn(a, "0123456789abcdef"), 32);
    cr_assert_eq(node_id_ensure(ct_dir, b), 0);
    cr_assert_str_eq(a, b, "kept across starts");
    cr_assert_eq(strncmp(ct_get("node-id"), a, 32), 0);
    cr_assert_null(ct_get("cluster-id"), "node_id_ensure touches node-id only");
}

Test(cluster, damage_is_refused)
{
    const char *bad[] = {
        "",                                     /* empty */
        "0123456789abcdef0123456789abcdef",     /* no newline */
        "0123456789abcdef0123456789abcde\n",    /* too short */
        "0123456789abcdef0123456789abcdef0\n",  /* too long */
        "0123456789ABCDEF0123456789abcdef\n",   /* upper case */
        "0123456789abcdef0123456789abcdeg\n",   /* not hex */
        "0123456789abcdef0123456789abcdef\n\n", /* extra line */
        "0123456789abcdef0123456789abcdef \n",  /* trailing space */
        " 123456789abcdef0123456789abcdef\n",   /* leading space */
    };
    uint8_t id[16];
    char node[33];

    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        ct_put("cluster-id", bad[i], strlen(bad[i]));
        cr_assert_eq(cluster_id_load(ct_dir, id), LV_ECORRUPT, "accepted \"%s\"", bad[i]);
        cr_assert_eq(cluster_id_ensure(ct_dir, id), LV_ECORRUPT, "ensure replaced a damaged \"%s\"", bad[i]);
        cr_assert_str_eq(ct_get("cluster-id"), bad[i], "the damaged file was changed");
        ct_put("node-id", bad[i], strlen(bad[i]));
        cr_assert_eq(node_id_ensure(ct_dir, node), LV_ECORRUPT, "node-id \"%s\" accepted", bad[i]);
        cr_assert_str_eq(node, "");
    }
    ct_put("cluster-id", "0123456789abcdef\0" "123456789abcdef\n", 33);
    cr_assert_eq(cluster_id_load(ct_dir, id), LV_ECORRUPT, "a NUL byte");
    ct_put("cluster-id", "0123456789abcdef0123456789abcdef\n", 33);
    cr_assert_eq(cluster_id_load(ct_dir, id), 0);
    cr_assert_eq(id[0], 0x01);
    cr_assert_eq(id[15], 0xef);
}

Test(cluster, unwritable_dir)
{
    uint8_t id[16];
    char path[128];

    if (geteuid() == 0)
        cr_skip_test("root writes anywhere");
    snprintf(path, sizeof path, "%s/ro", ct_dir);
    cr_assert_eq(mkdir(path, 0500), 0);
    cr_assert_lt(cluster_id_ensure(path, id), 0);
    cr_assert_eq(cluster_id_load(path, id), LV_ENOENT, "nothing half-written is left");
    cr_assert_eq(cluster_id_load("/nonexistent-dir", id), LV_ENOENT);
}

/* ---- etcd values (etcd_value.h) ---- */

Test(etcdv, base64)
{
    static const struct {
        const char *plain, *b64;
    } v[] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="},
             {"/litevault/primary", "L2xpdGV2YXVsdC9wcmltYXJ5"}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t len = 99;
        char *e = etcdv_b64_enc(v[i].plain, strlen(v[i].plain)), *d = etcdv_b64_dec(v[i].b64, &len);
        cr_assert_str_eq(e, v[i].b64);
        cr_assert_not_null(d);
        cr_assert_eq(len, strlen(v[i].plain));
        cr_assert_str_eq(d, v[i].plain);
        free(e);
        free(d);
    }
    size_t len;
    const char *bad[] = {"Zg=", "Z===", "Zg=a", "Zm9v\n", "Zm 9", "=Zm9", "Zm9!"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_null(etcdv_b64_dec(bad[i], &len), "accepted \"%s\"", bad[i]);
}

Test(etcdv, member_and_ahead)
{
    const char *json = "{\"url\":\"http://a:1\",\"node\":\"n1\",\"candidate\":true,\"txids\":{\"x.db\":5,\"y.db\":2},"
                       "\"terms\":{\"x.db\":7}}";
    char *b = etcdv_b64_enc(json, strlen(json));
    struct etcdv_member m;
    cr_assert_eq(etcdv_member_parse(b, &m), 0);
    cr_assert_str_eq(m.url, "http://a:1");
    cr_assert_str_eq(m.node, "n1");
    cr_assert_eq(m.candidate, 1);
    cr_assert_str_eq(m.proxy, "");
    cr_assert_eq(json_integer_value(json_object_get(m.terms, "x.db")), 7);
    json_t *mine = json_pack("{s:i,s:i}", "x.db", 5, "y.db", 1), *same = json_pack("{s:i,s:i}", "x.db", 5, "y.db", 2);
    json_t *other = json_pack("{s:i}", "z.db", 1);
    cr_assert_eq(etcdv_ahead(m.txids, mine), 1, "ahead on y.db, equal on x.db");
    cr_assert_eq(etcdv_ahead(mine, m.txids), 0);
    cr_assert_eq(etcdv_ahead(m.txids, same), 0, "equal is not ahead");
    cr_assert_eq(etcdv_ahead(other, mine), 0, "behind on x.db: not ahead, whatever else it has");
    cr_assert_eq(etcdv_ahead(other, NULL), 1, "a database the other lacks");
    cr_assert_eq(etcdv_ahead(NULL, NULL), 0);
    /* With terms: the latest term's records win over more of a deposed term's. */
    json_t *w = json_pack("{s:i}", "x.db", 65), *wt = json_pack("{s:i}", "x.db", 5);
    json_t *l = json_pack("{s:i}", "x.db", 60), *lt = json_pack("{s:i}", "x.db", 9);
    cr_assert_eq(etcdv_ahead_terms(l, lt, w, wt), 1, "term 9 at TXID 60 is ahead of term 5 at TXID 65");
    cr_assert_eq(etcdv_ahead_terms(w, wt, l, lt), 0);
    cr_assert_eq(etcdv_ahead_terms(w, NULL, l, lt), 1, "without terms on one side: TXIDs alone");
    cr_assert_eq(etcdv_ahead_terms(w, wt, l, NULL), 1);
    json_decref(w);
    json_decref(wt);
    json_decref(l);
    json_decref(lt);
    etcdv_member_clear(&m);
    json_decref(mine);
    json_decref(same);
    json_decref(other);
    free(b);
    char *nourl = etcdv_b64_enc("{\"node\":\"n\"}", 12);
    cr_assert_eq(etcdv_member_parse(nourl, &m), LV_ECORRUPT);
    cr_assert_eq(etcdv_member_parse("not base64!", &m), LV_ECORRUPT);
    cr_assert_null(m.txids);
    cr_assert_null(m.terms);
    free(nourl);
}

/* The promotion's catch-up asks the peer whose records are of the latest
 * term first, then the furthest; a peer tried or dead is skipped. */
Test(peer_catchup, best_peer_order)
{
    json_t *peers = json_loads("["
                               "{\"node\":\"a\",\"url\":\"http://a\",\"txids\":{\"x.db\":65},\"terms\":{\"x.db\":5}},"
                               "{\"node\":\"b\",\"url\":\"http://b\",\"txids\":{\"x.db\":60},\"terms\":{\"x.db\":9}},"
                               "{\"node\":\"c\",\"url\":\"http://c\",\"txids\":{\"x.db\":62},\"terms\":{\"x.db\":9}},"
                               "{\"node\":\"d\",\"url\":\"\",\"txids\":{\"x.db\":99},\"terms\":{\"x.db\":99}},"
                               "{\"node\":\"e\",\"url\":\"http://e\",\"txids\":{\"y.db\":3}}"
                               "]", 0, NULL);
    char tried[5] = {0}, dead[5] = {0};
    uint64_t t = 0;

    cr_assert(json_is_array(peers));
    cr_assert_eq(peer_catchup_best(peers, "x.db", 50, tried, dead, &t), 2, "term 9, the furthest of term 9");
    cr_assert_eq(t, 62);
    tried[2] = 1;
    cr_assert_eq(peer_catchup_best(peers, "x.db", 50, tried, dead, &t), 1);
    cr_assert_eq(t, 60);
    dead[1] = 1;
    cr_assert_eq(peer_catchup_best(peers, "x.db", 50, tried, dead, &t), 0, "the older term's node comes last");
    cr_assert_eq(t, 65);
    cr_assert_eq(peer_catchup_best(peers, "x.db", 65, tried, dead, &t), -1, "nobody ahead of TXID 65");
    cr_assert_eq(t, 65);
    cr_assert_eq(peer_catchup_best(peers, "y.db", 0, tried, dead, &t), 4, "no terms published (an older node)");
    cr_assert_eq(t, 3);
    json_decref(peers);
}
