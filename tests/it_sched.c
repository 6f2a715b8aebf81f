/*
 * it_sched.c -- scheduled exports (src/exports.c) on a real daemon, with
 * 1-second "@every 1s" jobs writing to local directories:
 *   - format db keeps exactly `keep` exports per database; names carry the
 *     UTC time and the TXID; every kept .db equals `log replay` at its TXID
 *     byte for byte and passes integrity_check; idle databases (and a
 *     restarted daemon) produce no new objects; `export --list`
 *     lists exactly what is there;
 *   - a destination that is down (its parent is a regular file, so even
 *     root cannot create it) records failures in /status and /metrics,
 *     then the job recovers once the destination is fixed;
 *   - format tar.zst writes one bundle of the selected databases per run,
 *     keeps `keep` bundles, and every image in it equals the replay.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "export/bundle.h"
#include "lib/lvtest.h"
#include "base/lv.h"

static struct lvnode *sN; /* this test's node (registry-owned) */

TestSuite(sched, .fini = lvt_fini, .timeout = 180);

/* The /status entry of job (new reference), or NULL if the request failed. */
static json_t *job_status(const struct lvnode *n, const char *job)
{
    json_t *res = NULL, *o = lvnode_status(n), *e;
    size_t i;
    json_array_foreach(json_object_get(o, "exports"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "name")), job) == 0)
            res = json_deep_copy(e);
    }
    json_decref(o);
    return res;
}

static long long jint(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* 1 if job's last finished run exported db at TXID want or later (*got: its TXID). */
static int exported(const struct lvnode *n, const char *job, const char *db, uint64_t want, uint64_t *got)
{
    json_t *j = job_status(n, job);
    *got = (uint64_t)json_integer_value(json_object_get(json_object_get(json_object_get(j, "databases"), db), "txid"));
    int running = json_is_true(json_object_get(j, "running"));
    json_decref(j);
    return *got >= want && !running;
}

/* Wait until job exported db at its current last TXID and that run ended
 * (so its old exports are deleted too); returns that TXID. */
static uint64_t wait_exported(const struct lvnode *n, const char *job, const char *db)
{
    uint64_t want = lvnode_last_txid(n, db), got = 0;
    cr_assert(WAIT_FOR(exported(n, job, db, want, &got), LVT_WAIT_MS),
              "job %s did not export %s at TXID %llu within %d s (last: %llu)", job, db, (unsigned long long)want,
              LVT_WAIT_MS / 1000, (unsigned long long)got);
    return got;
}

/* Wait until job has finished at least `more` runs after the `runs` it had; returns the new status
 * (caller decrefs).  Used before asserting that an idle run did nothing: it waits for the runs
 * to happen, however long they take, rather than for a number of seconds. */
static json_t *wait_runs(const struct lvnode *n, const char *job, long long runs, int more)
{
    json_t *j = NULL;
    cr_assert(WAIT_FOR((json_decref(j), j = job_status(n, job),
                        json_integer_value(json_object_get(j, "runs")) >= runs + more &&
                            !json_is_true(json_object_get(j, "running"))),
                       LVT_WAIT_MS),
              "job %s did not run %d more times", job, more);
    return j;
}

/* Sorted names of the regular files in dir (malloc'ed array of malloc'ed strings); returns the count. */
static int list_dir(const char *dir, char ***out)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **v = NULL;
    int n = 0;
    *out = NULL;
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        v = realloc(v, (size_t)(n + 1) * sizeof *v);
        v[n++] = strdup(e->d_name);
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        for (int k = i + 1; k < n; k++)
            if (strcmp(v[i], v[k]) > 0) {
                char *t = v[i];
                v[i] = v[k];
                v[k] = t;
            }
    *out = v;
    return n;
}

static void free_list(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Check an export object name STAMP-txid-N.db: time within the last 10 minutes (UTC); returns N. */
static uint64_t check_name(const char *name)
{
    char date[9], tm[7], tail[8];
    unsigned long long txid;
    cr_assert_eq(sscanf(name, "%8[0-9]T%6[0-9]Z-txid-%llu%7s", date, tm, &txid, tail), 4, "bad export name %s", name);
    cr_assert_str_eq(tail, ".db", "bad export name %s", name);
    char rfc[40];
    int64_t t;
    snprintf(rfc, sizeof rfc, "%.4s-%.2s-%.2sT%.2s:%.2s:%.2sZ", date, date + 4, date + 6, tm, tm + 2, tm + 4);
    cr_assert_eq(lv_parse_time(rfc, &t), 0, "%s", rfc);
    int64_t now = lv_now_us();
    cr_assert(t <= now + 2000000 && t > now - 600000000LL, "time in %s is not now (UTC)", name);
    return (uint64_t)txid;
}

/* The exported image at path must equal the replay of db at txid and pass integrity_check. */
static void check_image(const struct lvnode *n, const char *db, uint64_t txid, const char *path)
{
    char rp[600];
    long long off = -1;
    snprintf(rp, sizeof rp, "%s/replay-%llu.db", n->dir, (unsigned long long)txid);
    cr_assert_eq(lvnode_replay(n, db, txid, rp), 0, "replay of %s at %llu", db, (unsigned long long)txid);
    cr_assert_eq(files_first_diff(path, rp, &off), 0, "%s differs from the replay of %s at TXID %llu (byte %lld)",
                 path, db, (unsigned long long)txid, off);
    char *ok = NULL;
    cr_assert_eq(run_cmd(&ok, "sqlite3 '%s' 'PRAGMA integrity_check'", path), 0);
    cr_assert(strncmp(ok, "ok", 2) == 0, "integrity_check of %s: %s", path, ok);
    free(ok);
    unlink(rp);
}

static void write_row(const char *path, int i)
{
    char sql[200];
    snprintf(sql, sizeof sql, "INSERT INTO t(v) VALUES (randomblob(%d));", 100 + i * 500);
    sql_exec(path, sql, 0);
}

Test(sched, db_format_keeps_n_skips_idle_and_matches_replay)
{
    sN = lvnode_started("exports:\n"
                     "  - name: fast\n"
                     "    schedule: '@every 1s'\n"
                     "    url: ./exp\n"
                     "    keep: 3\n"
                     "    databases: [a.db, sub/b.db]\n");
    char *a = lvnode_path(sN, "a.db"), *b = lvnode_path(sN, "sub/b.db"), *c = lvnode_path(sN, "c.db");
    char dir_a[400], dir_b[400], dir_c[400], p[800];
    snprintf(dir_a, sizeof dir_a, "%s/exp/a.db", sN->dir);
    snprintf(dir_b, sizeof dir_b, "%s/exp/sub/b.db", sN->dir);
    snprintf(dir_c, sizeof dir_c, "%s/exp/c.db", sN->dir);
    cr_assert_eq(run_cmd(NULL, "mkdir -p '%s/sub'", sN->mnt), 0);
    sql_exec(a, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    sql_exec(b, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    sql_exec(c, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0); /* not selected */

    /* Five changes of a.db, each exported; b.db changes only once. */
    write_row(b, 0);
    for (int i = 0; i < 5; i++) {
        write_row(a, i);
        wait_exported(sN, "fast", "a.db");
    }
    wait_exported(sN, "fast", "sub/b.db");

    char **va, **vb, **vc;
    int na = list_dir(dir_a, &va), nb = list_dir(dir_b, &vb), nc = list_dir(dir_c, &vc);
    cr_assert_eq(na, 3, "keep 3: found %d exports of a.db", na);
    cr_assert_geq(nb, 1, "no export of sub/b.db");
    cr_assert_leq(nb, 2, "sub/b.db changed at most twice: found %d exports", nb);
    cr_assert_eq(nc, 0, "c.db is not selected");
    uint64_t prev = 0;
    for (int i = 0; i < na; i++) {
        uint64_t txid = check_name(va[i]);
        cr_assert_gt(txid, prev, "kept exports are the newest, oldest first");
        prev = txid;
        snprintf(p, sizeof p, "%s/%s", dir_a, va[i]);
        check_image(sN, "a.db", txid, p);
    }
    cr_assert_eq(prev, lvnode_last_txid(sN, "a.db"), "the newest export is at the last TXID");
    uint64_t tb = check_name(vb[nb - 1]);
    cr_assert_eq(tb, lvnode_last_txid(sN, "sub/b.db"));
    snprintf(p, sizeof p, "%s/%s", dir_b, vb[nb - 1]);
    check_image(sN, "sub/b.db", tb, p);

    /* export --list shows exactly these. */
    char *out = NULL;
    cr_assert_eq(run_cmd(&out, "'%s' export --list --url '%s/exp' --json", getenv("LITEVAULT"), sN->dir), 0, "%s", out);
    json_t *l = json_loads(out, 0, NULL);
    cr_assert(json_is_array(l), "%s", out);
    cr_assert_eq(json_array_size(l), (size_t)(na + nb), "%s", out);
    size_t i;
    json_t *e;
    int seen_b = 0;
    json_array_foreach(l, i, e)
    {
        const char *dbn = json_string_value(json_object_get(e, "database"));
        const char *key = json_string_value(json_object_get(e, "key"));
        char kp[1000];
        snprintf(kp, sizeof kp, "%s/exp/%s", sN->dir, key);
        struct stat st;
        cr_assert_eq(stat(kp, &st), 0, "listed key %s does not exist", key);
        cr_assert_eq(jint(e, "size"), (long long)st.st_size);
        cr_assert_str_eq(json_string_value(json_object_get(e, "format")), "db");
        if (strcmp(dbn, "sub/b.db") == 0) {
            seen_b = 1;
            cr_assert_leq((uint64_t)jint(e, "txid"), tb);
        } else {
            cr_assert_str_eq(dbn, "a.db");
        }
    }
    cr_assert(seen_b);
    json_decref(l);
    free(out);
    cr_assert_eq(run_cmd(&out, "'%s' export --list --url 'file://%s/exp'", getenv("LITEVAULT"), sN->dir), 0);
    cr_assert_not_null(strstr(out, va[2]), "%s", out);
    free(out);
    cr_assert_eq(run_cmd(NULL, "'%s' export --list 2>/dev/null", getenv("LITEVAULT")), 2, "--url is required");

    /* Idle: no new objects while nothing is written; the runs go on and count skips. */
    json_t *j0 = job_status(sN, "fast");
    json_t *j1 = wait_runs(sN, "fast", jint(j0, "runs"), 2);
    cr_assert_eq(jint(j1, "uploaded"), jint(j0, "uploaded"), "nothing uploaded while idle");
    cr_assert_geq(jint(j1, "runs"), jint(j0, "runs") + 1, "the job kept running");
    cr_assert_geq(jint(j1, "skipped"), jint(j0, "skipped") + 2, "both databases skipped on each run");
    cr_assert_eq(jint(j1, "failures"), 0, "%s", json_string_value(json_object_get(j1, "last_error")));
    cr_assert_eq(jint(j1, "deleted"), jint(j1, "uploaded") - na - nb, "every export beyond keep was deleted");
    cr_assert_geq(jint(j1, "deleted"), 2, "at least two old exports of a.db deleted");
    long long uploaded = jint(j1, "uploaded");
    cr_assert(json_is_string(json_object_get(j1, "last_success")));
    cr_assert(json_is_string(json_object_get(j1, "next_run")));
    cr_assert(json_is_null(json_object_get(j1, "last_error")));
    json_decref(j0);
    json_decref(j1);
    char **va2;
    int na2 = list_dir(dir_a, &va2);
    cr_assert_eq(na2, 3);
    for (int k = 0; k < 3; k++)
        cr_assert_str_eq(va2[k], va[k], "no new export of idle a.db");
    free_list(va2, na2);

    /* Metrics. */
    cr_assert_eq(run_cmd(&out, "curl -s -f 'http://%s/metrics' | grep '^litevault_export_' ", sN->http), 0);
    cr_assert_not_null(strstr(out, "litevault_export_runs_total{job=\"fast\"}"), "%s", out);
    char want[128];
    snprintf(want, sizeof want, "litevault_export_uploaded_total{job=\"fast\"} %lld\n", uploaded);
    cr_assert_not_null(strstr(out, want), "%s", out);
    cr_assert_not_null(strstr(out, "litevault_export_failures_total{job=\"fast\"} 0"), "%s", out);
    free(out);

    /* A restart does not export unchanged databases again (state in data.dir/exports/fast.json). */
    lvnode_stop(sN);
    lvnode_start(sN);
    json_t *j2 = wait_runs(sN, "fast", 0, 2);
    cr_assert_geq(jint(j2, "runs"), 1);
    cr_assert_eq(jint(j2, "uploaded"), 0, "unchanged databases re-exported after a restart");
    json_decref(j2);
    na2 = list_dir(dir_a, &va2);
    cr_assert_eq(na2, 3);
    free_list(va2, na2);

    free_list(va, na);
    free_list(vb, nb);
    free_list(vc, nc);
    free(a);
    free(b);
    free(c);
    lvnode_stop(sN);
}

Test(sched, destination_down_then_recovers)
{
    sN = lvnode_new("exports:\n"
                     "  - name: flaky\n"
                     "    schedule: '@every 1s'\n"
                     "    url: ./blocker/exp\n");
    char blocker[400], p[800];
    snprintf(blocker, sizeof blocker, "%s/blocker", sN->dir);
    cr_assert_eq(run_cmd(NULL, "echo x > '%s'", blocker), 0); /* a file: exp under it cannot exist, even for root */
    lvnode_start(sN);
    char *a = lvnode_path(sN, "a.db");
    sql_exec(a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    write_row(a, 1);

    json_t *j = NULL;
    WAIT_FOR((json_decref(j), j = job_status(sN, "flaky"), jint(j, "consecutive_failures") >= 2), LVT_WAIT_MS);
    cr_assert_geq(jint(j, "consecutive_failures"), 2, "failures were not recorded");
    cr_assert_geq(jint(j, "failures"), 2);
    const char *le = json_string_value(json_object_get(j, "last_error"));
    cr_assert(le && strstr(le, "blocker"), "last_error should name the destination: %s", le ? le : "(null)");
    cr_assert(json_is_null(json_object_get(j, "last_success")));
    cr_assert(json_is_string(json_object_get(j, "last_error_time")));
    cr_assert(json_is_string(json_object_get(j, "next_run")));
    json_decref(j);
    char *out = NULL;
    cr_assert_eq(run_cmd(&out, "curl -s -f 'http://%s/metrics' | grep '^litevault_export_failures_total{job=\"flaky\"}'",
                         sN->http), 0);
    cr_assert(atoi(strchr(out, ' ') + 1) >= 2, "metrics: %s", out);
    free(out);
    cr_assert(lvnode_log_contains(sN, "export flaky: run failed"));

    /* Fix the destination: the retry (with backoff) succeeds. */
    cr_assert_eq(unlink(blocker), 0);
    uint64_t t = wait_exported(sN, "flaky", "a.db");
    j = job_status(sN, "flaky");
    cr_assert_eq(jint(j, "consecutive_failures"), 0);
    cr_assert(json_is_string(json_object_get(j, "last_success")));
    cr_assert(json_is_string(json_object_get(j, "last_error")), "the last error stays visible");
    const char *key = json_string_value(json_object_get(json_object_get(json_object_get(j, "databases"), "a.db"), "key"));
    snprintf(p, sizeof p, "%s/exp/%s", blocker, key);
    check_image(sN, "a.db", t, p);
    json_decref(j);
    cr_assert_eq(run_cmd(&out, "curl -s -f 'http://%s/metrics' | grep '^litevault_export_last_success_timestamp_seconds'",
                         sN->http), 0);
    cr_assert(atof(strchr(out, ' ') + 1) > 1e9, "metrics: %s", out);
    free(out);
    free(a);
    lvnode_stop(sN);
}

Test(sched, tar_zst_bundles)
{
    sN = lvnode_started("exports:\n"
                     "  - name: bun\n"
                     "    schedule: '@every 1s'\n"
                     "    url: ./bundles\n"
                     "    format: tar.zst\n"
                     "    keep: 2\n"
                     "    databases:\n"
                     "      - a.db\n"
                     "      - b.db\n");
    char *a = lvnode_path(sN, "a.db"), *b = lvnode_path(sN, "b.db"), *c = lvnode_path(sN, "c.db");
    char bdir[400], p[800], x[800];
    snprintf(bdir, sizeof bdir, "%s/bundles", sN->dir);
    sql_exec(a, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    sql_exec(b, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    sql_exec(c, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    write_row(b, 1);
    for (int i = 0; i < 3; i++) {
        write_row(a, i);
        wait_exported(sN, "bun", "a.db");
    }
    wait_exported(sN, "bun", "b.db");
    char **v;
    int n = list_dir(bdir, &v);
    cr_assert_eq(n, 2, "keep 2: found %d bundles", n);
    for (int i = 0; i < n; i++) {
        char date[9], tm[7];
        cr_assert_eq(sscanf(v[i], "litevault-%8[0-9]T%6[0-9]Z.tar.zst", date, tm), 2, "bad bundle name %s", v[i]);
        cr_assert_eq(strlen(v[i]), strlen("litevault-20261124T100000Z.tar.zst"), "%s", v[i]);
    }
    /* The newest bundle holds a.db and b.db (not c.db), each equal to the replay at its TXID. */
    snprintf(p, sizeof p, "%s/%s", bdir, v[n - 1]);
    snprintf(x, sizeof x, "%s/extract", sN->dir);
    cr_assert_eq(mkdir(x, 0700), 0);
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f);
    struct bundle *bu = NULL;
    char err[512] = "";
    cr_assert_eq(bundle_extract(fileno(f), x, &bu, err, sizeof err), 0, "bundle_extract: %s", err);
    fclose(f);
    cr_assert_eq(bu->n, 2);
    int seen = 0;
    for (size_t i = 0; i < bu->n; i++) {
        cr_assert(strcmp(bu->v[i].name, "a.db") == 0 || strcmp(bu->v[i].name, "b.db") == 0, "%s", bu->v[i].name);
        seen |= strcmp(bu->v[i].name, "a.db") == 0 ? 1 : 2;
        cr_assert_eq(bu->v[i].txid, lvnode_last_txid(sN, bu->v[i].name));
        check_image(sN, bu->v[i].name, bu->v[i].txid, bu->v[i].path);
    }
    cr_assert_eq(seen, 3);
    bundle_free(bu);

    /* Idle: no new bundle after two more runs. */
    json_t *jb = job_status(sN, "bun");
    json_decref(wait_runs(sN, "bun", jint(jb, "runs"), 2));
    json_decref(jb);
    char **v2;
    int n2 = list_dir(bdir, &v2);
    cr_assert_eq(n2, 2);
    cr_assert_str_eq(v2[1], v[1], "a bundle was written although nothing changed");
    free_list(v2, n2);
    char *out = NULL;
    cr_assert_eq(run_cmd(&out, "'%s' export --list --url '%s' --json", getenv("LITEVAULT"), bdir), 0);
    json_t *l = json_loads(out, 0, NULL);
    cr_assert_eq(json_array_size(l), 2, "%s", out);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(l, 1), "format")), "tar.zst");
    json_decref(l);
    free(out);
    free_list(v, n);
    free(a);
    free(b);
    free(c);
    lvnode_stop(sN);
}

/* ---- S3: an s3rver that is stopped for a while, then started again ---- */

#include "store/store.h"

TestSuite(sched_s3, .fini = lvt_fini, .timeout = 180);

/* Fetch key from the store into path. */
static void s3_fetch(struct store *s, const char *key, const char *path)
{
    void *buf = NULL;
    size_t len = 0;
    cr_assert_eq(store_get(s, key, 0, 0, &buf, &len), 0, "GET %s: %s", key, store_last_error(s));
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
    free(buf);
}

Test(sched_s3, destination_down_for_a_while)
{
    char yml[1024], p[600], *out = NULL;
    struct s3rver *srv = s3rver_start("lvsched");
    const char *endpoint = srv->endpoint;
    snprintf(yml, sizeof yml,
             "exports:\n"
             "  - name: s3job\n"
             "    schedule: '@every 1s'\n"
             "    url: s3://lvsched/exp?max-retries=1&multipart-threshold=5MiB&part-size=5MiB\n"
             "    endpoint: %s\n"
             "    region: us-east-1\n"
             "    force-path-style: true\n"
             "    access-key-id: S3RVER\n"
             "    secret-access-key: S3RVER\n"
             "    keep: 2\n",
             endpoint);
    sN = lvnode_started(yml);
    char *a = lvnode_path(sN, "a.db");
    /* ~7 MiB: uploaded in two parts from the mapped temp file */
    sql_exec(a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
                "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 7000) "
                "INSERT INTO t(v) SELECT randomblob(1000) FROM c;",
             0);
    uint64_t t1 = wait_exported(sN, "s3job", "a.db");

    struct store_opts o = {.endpoint = endpoint, .force_path_style = 1, .access_key = "S3RVER", .secret_key = "S3RVER"};
    struct store *s = NULL;
    char err[512];
    cr_assert_eq(store_open("s3://lvsched/exp", &o, &s, err, sizeof err), 0, "%s", err);
    struct store_list l = {0};
    cr_assert_eq(store_list(s, "", &l), 0);
    cr_assert_eq(l.n, 1);
    cr_assert_gt(l.v[0].size, 6u << 20);
    snprintf(p, sizeof p, "%s/got1.db", sN->dir);
    s3_fetch(s, l.v[0].key, p);
    check_image(sN, "a.db", t1, p);
    store_list_free(&l);

    /* export --list against S3 (credentials from the environment). */
    cr_assert_eq(run_cmd(&out, "AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER '%s' export --list --json "
                               "--url 's3://lvsched/exp?endpoint=%s&force-path-style=true'",
                         getenv("LITEVAULT"), endpoint),
                 0, "%s", out);
    json_t *jl = json_loads(out, 0, NULL);
    cr_assert_eq(json_array_size(jl), 1, "%s", out);
    cr_assert_eq((uint64_t)jint(json_array_get(jl, 0), "txid"), t1);
    json_decref(jl);
    free(out);

    /* Down: runs fail and are recorded. */
    s3rver_stop(srv);
    write_row(a, 1);
    json_t *j = NULL;
    WAIT_FOR((json_decref(j), j = job_status(sN, "s3job"), jint(j, "consecutive_failures") >= 2), LVT_WAIT_MS);
    cr_assert_geq(jint(j, "consecutive_failures"), 2, "failures not recorded while S3 is down");
    cr_assert(json_is_string(json_object_get(j, "last_error")));
    cr_assert_null(strstr(json_string_value(json_object_get(j, "last_error")), "S3RVER"), "credentials leaked");
    json_decref(j);
    cr_assert_eq(run_cmd(&out, "curl -s -f 'http://%s/metrics' | grep '^litevault_export_failures_total{job=\"s3job\"}'",
                         sN->http), 0);
    cr_assert(atoi(strchr(out, ' ') + 1) >= 2, "metrics: %s", out);
    free(out);

    /* Back: the retry succeeds; keep 2 holds after one more change. */
    s3rver_restart(srv);
    uint64_t t2 = wait_exported(sN, "s3job", "a.db");
    cr_assert_gt(t2, t1);
    write_row(a, 2);
    uint64_t t3 = wait_exported(sN, "s3job", "a.db");
    j = job_status(sN, "s3job");
    cr_assert_eq(jint(j, "consecutive_failures"), 0);
    json_decref(j);
    cr_assert_eq(store_list(s, "", &l), 0);
    cr_assert_eq(l.n, 2, "keep 2 on S3: %zu objects", l.n);
    snprintf(p, sizeof p, "%s/got3.db", sN->dir);
    s3_fetch(s, l.v[1].key, p);
    check_image(sN, "a.db", t3, p);
    store_list_free(&l);
    store_close(s);
    free(a);
    lvnode_stop(sN);
}
