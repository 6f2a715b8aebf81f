/*
 * it_seed.c -- seeding a node's data.dir from the archive (`litevault
 * restore --seed`, restore/seed.c, capture/db_seed.c, log/txlog_base.c),
 * against file:// and s3rver.
 *
 * A primary with an archive takes a workload on three databases (rollback
 * journal with a VACUUM, WAL, one in a subdirectory), waits until the
 * archive confirmed every TXID, and stops.  Its /status (TXID, checksum)
 * and the content hash of each database are the oracle.  A fresh node is
 * seeded with `restore --seed`, then started as a plain node (no archive):
 *   - every database is there at the primary's TXID, with its checksum and
 *     content, and the archive's database ID;
 *   - start-up wrote nothing: `log ls` is empty, the daemon log says "log
 *     agrees with the database at TXID T (checked 0 pages)" and has no
 *     repair, recovery or snapshot line;
 *   - the next write is TXID T+1 whose pre checksum is the checksum at T,
 *     and a restart keeps all of it.
 * Then the same node restarts with the archive (a node rebuilt from the
 * archive taking over as primary): it continues the archive's lineage at
 * T+1 and a restore from the archive gives its database.
 * Refusals: a data.dir holding a database, an existing database with
 * --db, a running daemon; --db NAME adds one database; a damaged archive
 * object fails naming it and installs nothing (not even the databases that
 * were fine), and so does a failure while installing (the databases
 * installed before it are removed again); seed_if_empty (the replica's start-up call) seeds only a
 * replica with seeding on and an empty data.dir.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "archive/archiver.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"
#include "lib/lvtest.h"
#include "restore/seed.h"

static struct {
    struct lvdest *d; /* the archive of this test (registry-owned) */
    char yaml[2048];  /* its archive: section */
} S;

static void s_init(void)
{
    lvlog_threshold = -1;
    memset(&S, 0, sizeof S);
}

TestSuite(seeding, .init = s_init, .fini = lvt_fini, .timeout = 240);

#define NDB 3
static const char *const DBS[NDB] = {"app.db", "sub/dir/n.db", "w.db"}; /* sorted, as seeding reports them */

/* What the primary left, per database. */
struct oracle {
    uint64_t txid[NDB];
    uint64_t cksum[NDB];
    uint64_t hash[NDB];
};

static void dest(enum lvdest_kind kind)
{
    S.d = lvdest_new(kind);
    lvdest_yaml(S.d, "    sync-interval: 200ms\n    compaction: []\n", S.yaml, sizeof S.yaml);
}

/* Wait until the archive confirmed the node's last TXID of db; returns it. */
static uint64_t wait_confirmed(const struct lvnode *n, const char *db)
{
    struct lvdbstat st = {0};
    char series[256];
    double c = -1;

    cr_assert_eq(lvnode_http_db(n, db, &st), 1, "%s is not in /status", db);
    snprintf(series, sizeof series, "litevault_archive_confirmed_txid{dest=\"0\",db=\"%s\"}", db);
    cr_assert(WAIT_FOR(st.txid > 0 && (c = lvnode_metric(n, series)) >= (double)st.txid, LVT_WAIT_MS),
              "the archive did not confirm TXID %llu of %s (confirmed %.0f)", (unsigned long long)st.txid, db, c);
    return st.txid;
}

/* ntx transactions on db through the mount: inserts of random blobs, some
 * updates and deletes, a VACUUM half-way (wal: in WAL mode). */
static void workload(const struct lvnode *n, const char *db, int ntx, int wal)
{
    char *p = lvnode_path(n, db);
    sqlite3 *h = sql_open(p);

    sqlh_exec(h, "PRAGMA journal_mode=%s", wal ? "WAL" : "DELETE");
    sqlh_exec(h, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)");
    for (int i = 0; i < ntx; i++) {
        if (i % 7 == 3)
            sqlh_exec(h, "UPDATE t SET v = randomblob(900) WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 2)");
        else if (i % 11 == 5)
            sqlh_exec(h, "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 1)");
        else if (i == ntx / 2 && !wal)
            sqlh_exec(h, "VACUUM");
        else
            sqlh_exec(h, "INSERT INTO t(v) VALUES(randomblob(300 + abs(random()) %% 3000))");
    }
    sqlite3_close(h);
    free(p);
}

/* A primary archiving to S.d with the workload; stopped once everything is
 * archived.  The oracle gets each database's TXID, checksum and content. */
static struct lvnode *primary(struct oracle *o)
{
    struct lvnode *n = lvnode_new(S.yaml);
    char dir[400];

    lvnode_start(n);
    snprintf(dir, sizeof dir, "%s/sub/dir", n->mnt);
    cr_assert_eq(run_cmd(NULL, "mkdir -p '%s'", dir), 0);
    workload(n, "app.db", 60, 0);
    workload(n, "sub/dir/n.db", 5, 0);
    workload(n, "w.db", 30, 1);
    for (int i = 0; i < NDB; i++) {
        struct lvdbstat st;
        char *p = lvnode_path(n, DBS[i]);
        o->txid[i] = wait_confirmed(n, DBS[i]);
        cr_assert_eq(lvnode_http_db(n, DBS[i], &st), 1);
        cr_assert_eq(st.txid, o->txid[i]);
        o->cksum[i] = st.checksum;
        o->hash[i] = sql_content_hash(p);
        free(p);
    }
    lvnode_stop(n);
    return n;
}

/* `restore --seed` on n's config with more args: the JSON result (NULL on
 * failure), the exit code in *rc. */
static json_t *seed_cmd(const struct lvnode *n, int *rc, const char *args)
{
    return lvnode_cli_json(n, rc, "restore", "--seed %s", args ? args : "");
}

/* Database db of a seed result, or NULL. */
static json_t *seeded(json_t *j, const char *db)
{
    json_t *a = json_object_get(j, "databases");
    for (size_t i = 0; i < json_array_size(a); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(a, i), "db")), db) == 0)
            return json_array_get(a, i);
    return NULL;
}

static uint64_t hex64(json_t *s)
{
    return strtoull(json_string_value(s), NULL, 16);
}

/* What data.dir/files and data.dir/meta hold, as "files/a files/b meta/..." ("" if nothing). */
static char *files_of(const struct lvnode *n)
{
    char *out = NULL;
    cr_assert_eq(run_cmd(&out, "cd '%s' 2>/dev/null && [ -d files ] && find files meta -mindepth 1 2>/dev/null | sort | "
                         "tr '\\n' ' '; true", n->data), 0);
    return out;
}

/* Database i is on node n at the oracle's TXID (or txid if not 0), with its
 * checksum (cksum if not 0) and content. */
static void check_db(const struct lvnode *n, const struct oracle *o, int i, uint64_t txid, uint64_t cksum)
{
    struct lvdbstat st;
    char *p = lvnode_path(n, DBS[i]);

    cr_assert_eq(lvnode_db_status(n, DBS[i], &st), 1, "%s is not on the seeded node", DBS[i]);
    cr_assert_str_eq(st.status, "ok", "%s: %s", DBS[i], st.status);
    cr_assert_eq(st.txid, txid ? txid : o->txid[i], "%s: TXID %llu", DBS[i], (unsigned long long)st.txid);
    cr_assert_eq(st.checksum, cksum ? cksum : o->cksum[i], "%s: checksum %016llx", DBS[i],
                 (unsigned long long)st.checksum);
    if (!txid)
        cr_assert_eq(sql_content_hash(p), o->hash[i], "%s: content differs from the primary's", DBS[i]);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check <> 'ok'"), 0);
    free(p);
}

/* Start-up logged agreement at the seeded TXID, checked no page, and
 * repaired, recovered or snapshotted nothing. */
static void check_quiet_start(const struct lvnode *n, const struct oracle *o)
{
    char line[256];

    for (int i = 0; i < NDB; i++) {
        snprintf(line, sizeof line, "%s: log agrees with the database at TXID %llu (checked 0 pages)", DBS[i],
                 (unsigned long long)o->txid[i]);
        cr_assert(lvnode_log_contains(n, line), "no '%s' in the daemon log", line);
    }
    cr_assert_not(lvnode_log_contains(n, "repaired"));
    cr_assert_not(lvnode_log_contains(n, "RECOVERED"));
    cr_assert_not(lvnode_log_contains(n, "snapshot record"));
    cr_assert_not(lvnode_log_contains(n, "first capture"));
    cr_assert_not(lvnode_log_contains(n, "new database"));
    cr_assert_not(lvnode_log_contains(n, "state file"));
    cr_assert_not(lvnode_log_contains(n, "refuses all access"));
}

static void seed_and_continue(enum lvdest_kind kind)
{
    struct oracle o;
    int rc = -1;

    dest(kind);
    primary(&o);

    struct lvnode *b = lvnode_new(S.yaml);
    json_t *j = seed_cmd(b, &rc, NULL);
    cr_assert_eq(rc, 0, "restore --seed failed");
    cr_assert_eq(json_array_size(json_object_get(j, "databases")), NDB);
    for (int i = 0; i < NDB; i++) {
        json_t *e = seeded(j, DBS[i]);
        cr_assert_not_null(e, "%s was not seeded", DBS[i]);
        cr_assert_eq((uint64_t)json_integer_value(json_object_get(e, "txid")), o.txid[i]);
        cr_assert_eq(hex64(json_object_get(e, "checksum")), o.cksum[i]);
        cr_assert_str_eq(json_string_value(json_object_get(e, "id")),
                         json_string_value(json_object_get(e, "lineage")));
    }
    json_decref(j);
    char stage[400];
    snprintf(stage, sizeof stage, "%s/tmp/seed", b->data);
    cr_assert_neq(access(stage, F_OK), 0, "the staging directory is gone");

    /* A plain node on the seeded data.dir. */
    lvnode_reconfig(b, NULL, NULL);
    lvnode_start(b);
    for (int i = 0; i < NDB; i++) {
        check_db(b, &o, i, 0, 0);
        struct lvrec *recs = NULL;
        cr_assert_eq(lvnode_log_records(b, DBS[i], &recs), 0, "%s: start-up wrote a record", DBS[i]);
        free(recs);
    }
    check_quiet_start(b, &o);

    /* The next write of each database is TXID T+1, chained to the checksum at T. */
    workload(b, "app.db", 1, 0);
    workload(b, "w.db", 1, 1);
    for (int i = 0; i < NDB; i += 2) {
        struct lvrec *recs = NULL;
        cr_assert_eq(lvnode_log_records(b, DBS[i], &recs), 1);
        cr_assert_eq(recs[0].txid, o.txid[i] + 1, "%s: the first write is TXID %llu", DBS[i],
                     (unsigned long long)recs[0].txid);
        cr_assert_eq(recs[0].pre_checksum, o.cksum[i], "%s: its pre checksum is the seeded checksum", DBS[i]);
        cr_assert_not(recs[0].snapshot);
        cr_assert_not(recs[0].recovered);
        struct lvdbstat st;
        cr_assert_eq(lvnode_db_status(b, DBS[i], &st), 1);
        cr_assert_eq(st.txid, o.txid[i] + 1);
        cr_assert_eq(st.checksum, recs[0].post_checksum);
        free(recs);
    }
    uint64_t ck_app = 0, ck_w = 0;
    {
        struct lvdbstat st;
        lvnode_db_status(b, "app.db", &st);
        ck_app = st.checksum;
        lvnode_db_status(b, "w.db", &st);
        ck_w = st.checksum;
    }

    /* A restart keeps it, again without a repair. */
    lvnode_stop(b);
    lvnode_start(b);
    check_db(b, &o, 0, o.txid[0] + 1, ck_app);
    check_db(b, &o, 1, 0, 0);
    check_db(b, &o, 2, o.txid[2] + 1, ck_w);
    cr_assert_not(lvnode_log_contains(b, "repaired"));
    cr_assert_not(lvnode_log_contains(b, "snapshot record"));

    /* Taking over as primary: the archive's lineage continues at T+1. */
    lvnode_stop(b);
    lvnode_reconfig(b, NULL, S.yaml);
    lvnode_start(b);
    workload(b, "app.db", 1, 0);
    uint64_t last = wait_confirmed(b, "app.db");
    cr_assert_eq(last, o.txid[0] + 2);
    char line[256];
    snprintf(line, sizeof line, "app.db: continuing lineage");
    cr_assert(lvnode_log_contains(b, line), "the archive's lineage was not continued");
    cr_assert_not(lvnode_log_contains(b, "new lineage"));
    cr_assert_not(lvnode_log_contains(b, "starting lineage"));
    char out[400], *p = lvnode_path(b, "app.db");
    snprintf(out, sizeof out, "%s/restored.db", lvt_tmpdir("seedout"));
    cr_assert_eq(lvnode_restore(b, "app.db", NULL, out, NULL), 0);
    cr_assert_eq(sql_content_hash(out), sql_content_hash(p), "the archive does not give the node's database");
    struct lvdbstat st;
    cr_assert_eq(lvnode_db_status(b, "app.db", &st), 1);
    cr_assert_eq(file_db_checksum(out), st.checksum);
    free(p);
}

#define TWIN(t)                                                                                                  \
    Test(seeding, t##_file) { t(LVDEST_FILE); }                                                                  \
    Test(seeding, t##_s3) { t(LVDEST_S3); }

TWIN(seed_and_continue)

/* Refusals, and --db NAME adding one database. */
Test(seeding, refusals_and_one_db)
{
    struct oracle o;
    int rc = -1;
    char *out = NULL;

    dest(LVDEST_FILE);
    struct lvnode *a = primary(&o);

    /* Not into the primary's own data.dir, which holds databases. */
    cr_assert_eq(lvnode_cli(a, &out, "restore", "--seed"), 1);
    cr_assert_not_null(strstr(out, "already holds databases"), "%s", out);
    free(out);

    /* --db NAME seeds that database only. */
    struct lvnode *b = lvnode_new(S.yaml);
    json_t *j = seed_cmd(b, &rc, "--db w.db");
    cr_assert_eq(rc, 0);
    cr_assert_eq(json_array_size(json_object_get(j, "databases")), 1);
    json_decref(j);
    char *f = files_of(b);
    cr_assert_not_null(strstr(f, "files/w.db"), "%s", f);
    cr_assert_null(strstr(f, "app.db"), "%s", f);
    free(f);

    /* Now every database is refused (files/ is not empty), and w.db again. */
    cr_assert_eq(lvnode_cli(b, &out, "restore", "--seed"), 1);
    cr_assert_not_null(strstr(out, "already holds databases (files/w.db)"), "%s", out);
    free(out);
    cr_assert_eq(lvnode_cli(b, &out, "restore", "--seed --db w.db"), 1);
    cr_assert_not_null(strstr(out, "already holds database 'w.db'"), "%s", out);
    free(out);
    /* A database the archive lacks. */
    cr_assert_eq(lvnode_cli(b, &out, "restore", "--seed --db nope.db"), 1);
    cr_assert_not_null(strstr(out, "nope.db"), "%s", out);
    free(out);
    /* Options that do not apply. */
    cr_assert_eq(lvnode_cli(b, &out, "restore", "--seed --db app.db -o /tmp/x.db"), 2);
    free(out);
    cr_assert_eq(lvnode_cli(b, &out, "restore", "--seed --txid 3"), 2);
    free(out);

    /* --db app.db adds it, at a chosen TXID. */
    j = seed_cmd(b, &rc, "--db app.db --txid 10");
    cr_assert_eq(rc, 0);
    cr_assert_eq(json_integer_value(json_object_get(seeded(j, "app.db"), "txid")), 10);
    json_decref(j);

    /* Never while the daemon runs. */
    lvnode_reconfig(b, NULL, NULL);
    lvnode_start(b);
    cr_assert_eq(lvnode_cli(b, &out, "restore", "--seed --from '%s' --db sub/dir/n.db", S.d->url), 1);
    cr_assert_not_null(strstr(out, "is in use"), "%s", out);
    free(out);
    check_db(b, &o, 2, 0, 0);
    struct lvdbstat st;
    cr_assert_eq(lvnode_db_status(b, "app.db", &st), 1);
    cr_assert_eq(st.txid, 10);
    cr_assert_str_eq(st.status, "ok");
    cr_assert_eq(lvnode_db_status(b, "sub/dir/n.db", &st), 0);
    workload(b, "app.db", 1, 0);
    cr_assert_eq(lvnode_db_status(b, "app.db", &st), 1);
    cr_assert_eq(st.txid, 11);
    cr_assert_not(lvnode_log_contains(b, "repaired"));
}

/* Flip a byte in the middle of every object of database db in the file://
 * archive at root (again: repaired). */
static void damage_objects(const char *root, const char *db)
{
    char *o = NULL, *save = NULL;
    int n = 0;

    cr_assert_eq(run_cmd(&o, "cd '%s' && find '%s' -type f -name '*.lvseg'", root, db), 0);
    for (char *k = strtok_r(o, "\n", &save); k; k = strtok_r(NULL, "\n", &save)) {
        char path[1200];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", root, k);
        cr_assert_eq(stat(path, &sb), 0);
        file_xor_byte(path, sb.st_size / 2, 0x10);
        n++;
    }
    cr_assert_gt(n, 0, "no object of %s in %s", db, root);
    free(o);
}

/* A damaged object: the seed fails naming it and installs nothing at all. */
Test(seeding, damaged_object_installs_nothing)
{
    struct oracle o;
    char *out = NULL;

    dest(LVDEST_FILE);
    primary(&o);
    damage_objects(S.d->root, "w.db"); /* the last database seeded: the others are restored first */

    struct lvnode *b = lvnode_new(S.yaml);
    cr_assert_eq(lvnode_cli(b, &out, "restore", "--seed"), 1, "%s", out);
    cr_assert_not_null(strstr(out, "database 'w.db'"), "the error names the database: %s", out);
    cr_assert(strstr(out, "object w.db/") || strstr(out, ": w.db/"), "the error names the object: %s", out);
    free(out);
    char *f = files_of(b);
    cr_assert_str_eq(f, "", "something was installed: %s", f);
    free(f);
    char stage[400];
    snprintf(stage, sizeof stage, "%s/tmp/seed", b->data);
    cr_assert_neq(access(stage, F_OK), 0, "the staging directory is gone");

    /* Repaired, the same command seeds everything. */
    damage_objects(S.d->root, "w.db");
    cr_assert_eq(lvnode_cli(b, &out, "restore", "--seed"), 0, "%s", out);
    free(out);
    lvnode_reconfig(b, NULL, NULL);
    lvnode_start(b);
    for (int i = 0; i < NDB; i++)
        check_db(b, &o, i, 0, 0);
    check_quiet_start(b, &o);
}

/* What the daemon calls at start-up (restore/seed.h): only a replica with
 * seeding on and an empty data.dir is seeded. */
Test(seeding, seed_if_empty_replica_start)
{
    struct oracle o;
    struct seed_result r;
    char err[2048] = "";

    dest(LVDEST_FILE);
    primary(&o);
    struct archiver_dest ad;
    memset(&ad, 0, sizeof ad);
    ad.url = S.d->url;
    ad.s3.force_path_style = -1;

    struct lvnode *b = lvnode_new(NULL);
    cr_assert_eq(seed_if_empty(b->data, &ad, 1, 0, 1, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.n, 0, "the primary is not seeded");
    cr_assert_eq(seed_if_empty(b->data, &ad, 1, 1, 0, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.n, 0, "replication.seed: false");
    cr_assert_eq(seed_if_empty(b->data, &ad, 0, 1, 1, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.n, 0, "no archive");
    char *f = files_of(b);
    cr_assert_str_eq(f, "", "%s", f);
    free(f);

    cr_assert_eq(seed_if_empty(b->data, &ad, 1, 1, 1, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.n, NDB);
    for (size_t i = 0; i < r.n; i++) {
        cr_assert_str_eq(r.dbs[i].name, DBS[i]);
        cr_assert_eq(r.dbs[i].txid, o.txid[i]);
        cr_assert_eq(r.dbs[i].cksum, o.cksum[i]);
    }
    seed_result_free(&r);
    /* A second start finds the databases and leaves them alone. */
    cr_assert_eq(seed_if_empty(b->data, &ad, 1, 1, 1, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(r.skipped, 1);
    seed_result_free(&r);

    lvnode_start(b);
    for (int i = 0; i < NDB; i++)
        check_db(b, &o, i, 0, 0);
    check_quiet_start(b, &o);
}

/* Installing is all or nothing: when the last database cannot be moved into
 * place, those installed before it are removed again. */
Test(seeding, failed_install_rolls_back)
{
    struct oracle o;
    struct seed_result r;
    char err[2048] = "";

    dest(LVDEST_FILE);
    primary(&o);
    struct lvnode *b = lvnode_new(NULL);
    struct seed_opts so = {.data_dir = b->data, .url = S.d->url, .target = {.kind = PLAN_LATEST}};

    sys_fault_set(SYS_OP_RENAME, EIO, 0, "/files/w.db");
    int rc = seed_run(&so, &r, err, sizeof err);
    sys_fault_clear();
    cr_assert_eq(rc, LV_EIO, "%s", err);
    cr_assert_not_null(strstr(err, "w.db"), "%s", err);
    cr_assert_eq(r.n, 0);
    char *f = files_of(b);
    cr_assert_str_eq(f, "", "left behind: %s", f);
    free(f);

    cr_assert_eq(seed_run(&so, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.n, NDB);
    seed_result_free(&r);
    lvnode_start(b);
    for (int i = 0; i < NDB; i++)
        check_db(b, &o, i, 0, 0);
    check_quiet_start(b, &o);
}
