/*
 * it_edges.c -- data safety at the edges of a daemon's life and of the
 * archive commands: a clean stop archives everything (SIGTERM, and the end
 * of `mount -- CMD`), bounded by archive[].shutdown-timeout; restore
 * targets after the end of the archive; mistyped archive paths; relative
 * file:// URLs.
 *
 * The clean-stop tests use sync-interval: 1h, so the archiver never uploads
 * on its own during the test: everything in the archive afterwards was
 * uploaded by the shutdown drain.  That makes them exact, with no race
 * against the sync interval (the case is the same with the usual
 * 1 s interval and a commit in the last second).
 */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "lib/lvtest.h"

TestSuite(edges, .fini = lvt_fini, .timeout = 180);

/* Commit count one-row transactions into name on the node's mount. */
static void commit_rows(const struct lvnode *n, const char *name, int count)
{
    char *p = lvnode_path(n, name);
    sqlite3 *h = NULL;

    cr_assert_eq(sqlite3_open(p, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    cr_assert_eq(sqlite3_exec(h, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)", NULL, NULL, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(h));
    for (int i = 0; i < count; i++)
        cr_assert_eq(sqlite3_exec(h, "INSERT INTO t(v) VALUES(randomblob(500))", NULL, NULL, NULL), SQLITE_OK, "%s",
                     sqlite3_errmsg(h));
    sqlite3_close(h);
    free(p);
}

/* The config of a destination that uploads only at shutdown (see the top). */
static char *lazy_yaml(const struct lvdest *d, const char *more, char *buf, size_t len)
{
    char keys[512];

    snprintf(keys, sizeof keys, "    sync-interval: 1h\n    manifest-interval: 1h\n    snapshot-interval: 24h\n%s",
             more ? more : "");
    return lvdest_yaml(d, keys, buf, len);
}

/* SIGTERM right after the last commit: the archive holds the last TXID,
 * in segments and in the stored manifest, and restore rebuilds it. */
static void stop_archives_everything(enum lvdest_kind kind)
{
    struct lvdest *d = lvdest_new(kind);
    char yaml[2048], out[400];
    struct lvnode *n = lvnode_new_with(NULL, lazy_yaml(d, NULL, yaml, sizeof yaml));
    uint64_t last;
    int rc = -1;

    lvnode_start(n);
    commit_rows(n, "app.db", 5);
    last = lvnode_last_txid(n, "app.db");
    cr_assert_geq(last, 5);
    lvnode_stop(n);
    cr_assert_eq(lvnode_archived(n, "app.db", "last_txid"), (long long)last, "the archive lacks the last transactions");
    cr_assert_eq(lvnode_archived(n, "app.db", "manifest_txid"), (long long)last, "the manifest was not stored at stop");
    cr_assert(lvnode_log_contains(n, "every transaction is archived"));
    snprintf(out, sizeof out, "%s/restored.db", n->dir);
    json_t *j = lvnode_cli_json(n, &rc, "restore", "--db app.db -o %s", out);
    cr_assert_eq(rc, 0);
    cr_assert_eq(json_integer_value(json_object_get(j, "txid")), (json_int_t)last);
    json_decref(j);
}
#define STOP_ALL(sfx, kind) Test(edges, stop_archives_everything_##sfx) { stop_archives_everything(kind); }
LVDEST_KINDS(STOP_ALL)

/* `mount -- CMD`: when CMD exits, the daemon unmounts, then archives what CMD committed. */
static void command_exit_archives_everything(enum lvdest_kind kind)
{
    struct lvdest *d = lvdest_new(kind);
    char yaml[2048], *out = NULL;
    struct lvnode *n = lvnode_new_with(NULL, lazy_yaml(d, NULL, yaml, sizeof yaml));
    int rc = run_cmd(&out,
                     "%s mount -c %s -- sqlite3 %s/cmd.db 'CREATE TABLE t(x); INSERT INTO t VALUES(1); "
                     "INSERT INTO t VALUES(2); INSERT INTO t VALUES(3);' >>%s 2>&1",
                     litevault_bin(), n->config, n->mnt, n->logpath);

    free(out);
    cr_assert_eq(rc, 0, "mount -- sqlite3 failed (status %d)", rc);
    uint64_t last = lvnode_last_txid(n, "cmd.db");
    cr_assert_geq(last, 4);
    cr_assert_eq(lvnode_archived(n, "cmd.db", "last_txid"), (long long)last, "the archive lacks what CMD committed");
    cr_assert_eq(lvnode_archived(n, "cmd.db", "manifest_txid"), (long long)last);
}
#define CMD_ALL(sfx, kind) Test(edges, command_exit_archives_everything_##sfx) { command_exit_archives_everything(kind); }
LVDEST_KINDS(CMD_ALL)

/* The destination is down at the stop: the daemon gives up after
 * shutdown-timeout, exits cleanly, and says which TXIDs are not archived;
 * the next start uploads them. */
Test(edges, stop_bounded_by_shutdown_timeout)
{
    struct lvdest *d = lvdest_new(LVDEST_S3);
    char yaml[2048], want[128];
    struct lvnode *n = lvnode_new_with(NULL, lazy_yaml(d, "    shutdown-timeout: 2s\n", yaml, sizeof yaml));

    lvnode_start(n);
    commit_rows(n, "app.db", 3);
    uint64_t last = lvnode_last_txid(n, "app.db");
    s3rver_stop(d->s3);
    int64_t t0 = now_ms();
    lvnode_stop(n); /* asserts exit 0 within 30 s */
    int64_t took = now_ms() - t0;
    cr_assert_geq(took, 2000, "stopped after %lld ms, before shutdown-timeout", (long long)took);
    snprintf(want, sizeof want, "TXID 1..%llu not archived", (unsigned long long)last);
    cr_assert(lvnode_log_contains(n, "archive[0].shutdown-timeout (2000 ms) reached"));
    cr_assert(lvnode_log_contains(n, want), "the log does not say '%s'", want);
    s3rver_restart(d->s3);
    lvnode_reconfig(n, NULL, lvdest_yaml(d, "    sync-interval: 200ms\n", yaml, sizeof yaml));
    lvnode_start(n);
    cr_assert(WAIT_FOR(lvnode_archived(n, "app.db", "last_txid") == (long long)last, LVT_WAIT_MS));
    lvnode_stop(n);
}

/* ---------------------------------------------------------------- mistyped archive paths */

/* Run `litevault ARGS` in directory dir (NULL: the test's), S3RVER
 * credentials in the environment; stdout+stderr into *out; exit status. */
static int lv_in(const char *dir, char **out, const char *args)
{
    return run_cmd(out, "cd '%s' && AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER '%s' %s 2>&1",
                   dir ? dir : ".", litevault_bin(), args);
}

#define EXPECT_CMD(dir, want_rc, needle, ...)                                                                        \
    do {                                                                                                            \
        char args_[2048], *out_ = NULL;                                                                             \
        snprintf(args_, sizeof args_, __VA_ARGS__);                                                                 \
        int rc_ = lv_in(dir, &out_, args_);                                                                         \
        cr_expect_eq(rc_, want_rc, "`litevault %s` exited %d (want %d): %s", args_, rc_, want_rc, out_ ? out_ : ""); \
        cr_expect(out_ && strstr(out_, needle), "`litevault %s` does not say '%s': %s", args_, needle,              \
                  out_ ? out_ : "");                                                                                \
        free(out_);                                                                                                 \
    } while (0)

/* A missing directory is an error naming it (and is not created); an
 * existing empty one is a clean "no databases"; a directory with files
 * but no litevault layout is an error saying so.  Same for restore and
 * archive verify. */
Test(edges, missing_archive_directory)
{
    const char *dir = lvt_tmpdir("edges");
    char missing[400], junk[400], cmd[600];
    struct stat st;

    snprintf(missing, sizeof missing, "%s/nonexistent", dir);
    EXPECT_CMD(dir, 1, "does not exist", "archive ls --from file://%s", missing);
    EXPECT_CMD(dir, 1, "does not exist", "archive ls --from file://%s --json", missing);
    EXPECT_CMD(dir, 1, "does not exist", "restore --from file://%s --db app.db -o %s/out.db", missing, dir);
    EXPECT_CMD(dir, 1, "does not exist", "archive verify --from file://%s --db app.db", missing);
    cr_expect_neq(stat(missing, &st), 0, "a reading command created %s", missing);

    EXPECT_CMD(dir, 0, "no databases", "archive ls --from file://%s", dir);

    snprintf(junk, sizeof junk, "%s/junk", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/sub' && echo x > '%s/sub/notes.txt'", junk, junk);
    cr_assert_eq(run_cmd(NULL, "%s", cmd), 0);
    EXPECT_CMD(dir, 1, "no litevault archive", "archive ls --from file://%s", junk);
}

/* S3: a missing bucket is an error naming the bucket; an empty prefix of
 * an existing bucket is a clean "no databases". */
Test(edges, missing_bucket)
{
    struct lvdest *d = lvdest_new(LVDEST_S3);
    char url[600];
    const char *dir = lvt_tmpdir("edges");

    snprintf(url, sizeof url, "s3://nosuchbucket/pre?endpoint=%s&region=us-east-1&force-path-style=true",
             d->s3->endpoint);
    EXPECT_CMD(dir, 1, "bucket 'nosuchbucket' does not exist", "archive ls --from '%s'", url);
    EXPECT_CMD(dir, 1, "bucket 'nosuchbucket' does not exist", "restore --from '%s' --db a.db -o %s/o.db", url, dir);
    EXPECT_CMD(dir, 1, "bucket 'nosuchbucket' does not exist", "archive verify --from '%s' --db a.db", url);
    EXPECT_CMD(dir, 0, "no databases", "archive ls --from '%s'", d->url);
}

/* --from file://./backup (and file://backup) is relative to the current directory. */
Test(edges, relative_file_url)
{
    struct lvdest *d = lvdest_new(LVDEST_FILE);
    char yaml[2048], out[400];
    struct lvnode *n = lvnode_new_with(NULL, lvdest_yaml(d, "    sync-interval: 100ms\n", yaml, sizeof yaml));

    lvnode_start(n);
    commit_rows(n, "app.db", 2);
    uint64_t last = lvnode_last_txid(n, "app.db");
    lvnode_stop(n);
    /* d->root is <tmp>/archive.XXXXXX: run from its parent with a relative URL */
    char parent[300], base[300];
    snprintf(parent, sizeof parent, "%s", d->root);
    *strrchr(parent, '/') = '\0';
    snprintf(base, sizeof base, "%s", strrchr(d->root, '/') + 1);
    EXPECT_CMD(parent, 0, "app.db", "archive ls --from file://./%s", base);
    EXPECT_CMD(parent, 0, "app.db", "archive ls --from file://%s", base);
    snprintf(out, sizeof out, "%s/rel.db", n->dir);
    char want[64];
    snprintf(want, sizeof want, "TXID %llu", (unsigned long long)last);
    EXPECT_CMD(parent, 0, want, "restore --from file://./%s --db app.db -o %s", base, out);
}

/* ---------------------------------------------------------------- target after the end */

/* A --timestamp after the last archived commit restores the latest and
 * says so (text and --json); with --strict it is an error.  A timestamp
 * inside the archive is not flagged. */
Test(edges, timestamp_after_the_archive)
{
    struct lvdest *d = lvdest_new(LVDEST_FILE);
    char yaml[2048], out[400], *txt = NULL;
    struct lvnode *n = lvnode_new_with(NULL, lvdest_yaml(d, "    sync-interval: 100ms\n", yaml, sizeof yaml));
    int rc = -1;

    lvnode_start(n);
    commit_rows(n, "app.db", 3);
    uint64_t last = lvnode_last_txid(n, "app.db");
    lvnode_stop(n);
    snprintf(out, sizeof out, "%s/late.db", n->dir);

    json_t *j = lvnode_cli_json(n, &rc, "restore", "--db app.db --timestamp 2099-01-01T00:00:00Z -o %s", out);
    cr_assert_eq(rc, 0);
    cr_assert_not_null(j);
    cr_expect_eq(json_integer_value(json_object_get(j, "txid")), (json_int_t)last);
    cr_expect_eq(json_integer_value(json_object_get(j, "archive_last_txid")), (json_int_t)last);
    cr_expect(json_is_string(json_object_get(j, "archive_last_time")));
    cr_expect(json_is_true(json_object_get(j, "target_after_end")));
    /* the commit time of the last TXID is inside the archive: not flagged */
    char at[64];
    snprintf(at, sizeof at, "%s", json_string_value(json_object_get(j, "archive_last_time")));
    json_decref(j);
    j = lvnode_cli_json(n, &rc, "restore", "--db app.db --timestamp %s --force -o %s", at, out);
    cr_assert_eq(rc, 0);
    cr_expect_eq(json_integer_value(json_object_get(j, "txid")), (json_int_t)last);
    cr_expect(json_is_false(json_object_get(j, "target_after_end")));
    json_decref(j);

    char want[128];
    snprintf(want, sizeof want, "lies after the last archived transaction of 'app.db', TXID %llu",
             (unsigned long long)last);
    rc = run_cmd(&txt, "'%s' restore -c '%s' --db app.db --timestamp 2099-01-01T00:00:00Z --force -o '%s' 2>&1",
                 litevault_bin(), n->config, out);
    cr_expect_eq(rc, 0, "%s", txt);
    cr_expect(txt && strstr(txt, want), "no note: %s", txt);
    free(txt);
    unlink(out);
    rc = run_cmd(&txt, "'%s' restore -c '%s' --db app.db --timestamp 2099-01-01T00:00:00Z --strict -o '%s' 2>&1",
                 litevault_bin(), n->config, out);
    cr_expect_eq(rc, 1, "--strict: exit %d: %s", rc, txt);
    cr_expect(txt && strstr(txt, want) && strstr(txt, "--strict"), "%s", txt);
    free(txt);
    cr_expect_neq(access(out, F_OK), 0, "--strict left %s", out);
}
