/*
 * it_image.c -- consistent database images taken from a running daemon
 * (POST /v1/image, dbreg_image) while writers keep writing.
 *
 * A writer thread updates random rows of a ~24 MiB database (so commits
 * land all over the file and, in WAL mode, checkpoints and WAL restarts
 * happen during the copy).  Several images are taken meanwhile; each must
 * equal, byte for byte, the log replayed to the TXID the image reports, its
 * checksum must be the one reported, and integrity_check must pass.  That
 * exercises the copy-on-write paths: without them the image would mix
 * states from different TXIDs and differ from the replay.  The daemon's
 * test seam LV_TEST_IMAGE_DELAY_US slows the copy so writes surely overlap.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/http.h"
#include "lib/lvtest.h"

static struct lvnode *iN; /* this test's node (registry-owned) */

TestSuite(image, .fini = lvt_fini, .timeout = 240);

/* The writer's transaction (sql_writer: %1$d and %2$d are random row ids). */
static const char WRITER_SQL[] =
    "BEGIN; UPDATE t SET v = randomblob(300) WHERE id = %1$d; UPDATE t SET v = randomblob(300) "
    "WHERE id = %2$d; COMMIT;";

/* POST /v1/image for db on the admin socket; returns the parsed JSON reply
 * (caller decrefs) and in *conn the connection that holds the image (the
 * daemon deletes what is left of it when the caller closes conn). */
static json_t *take_image(const struct lvnode *n, const char *db, int *conn)
{
    char sock[400], q[300], *out = NULL;
    long st = 0;
    snprintf(sock, sizeof sock, "%s/admin.sock", n->data);
    snprintf(q, sizeof q, "/v1/image?db=%s", db);
    cr_assert_eq(http_post_hold(sock, q, 120, &out, &st, conn), 0, "image request failed");
    cr_assert_eq(st, 200, "image request: HTTP %ld %s", st, out);
    json_t *j = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
    cr_assert_not_null(j, "bad JSON: %s", out);
    free(out);
    return j;
}

static void image_under_load(const char *mode)
{
    char sql[256];
    iN = lvnode_new(NULL);
    setenv("LV_TEST_IMAGE_DELAY_US", "20000", 1); /* ~0.5 s per image: writers overlap the copy */
    lvnode_start(iN);
    unsetenv("LV_TEST_IMAGE_DELAY_US");
    char *db = lvnode_path(iN, "img.db");
    snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", mode);
    sql_exec(db, sql, 0);
    sql_exec(db, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 60000) "
                 "INSERT INTO t SELECT i, randomblob(300) FROM c;",
             0);
    struct sql_writer w = {.path = db, .sql = WRITER_SQL, .rows = 60000, .seed = 7};
    sql_writer_start(&w);
    sql_writer_wait(&w, 20);

    uint64_t last_txid = 0;
    for (int i = 0; i < 5; i++) {
        int conn = -1;
        json_t *j = take_image(iN, "img.db", &conn);
        const char *path = json_string_value(json_object_get(j, "path"));
        uint64_t txid = (uint64_t)json_integer_value(json_object_get(j, "txid"));
        const char *ck = json_string_value(json_object_get(j, "checksum"));
        cr_assert(path && ck && txid > 0);
        cr_assert_geq(txid, last_txid);
        last_txid = txid;
        char rp[512], cp[512];
        snprintf(rp, sizeof rp, "%s/replay-%d.db", iN->dir, i);
        snprintf(cp, sizeof cp, "%s/image-%d.db", iN->dir, i);
        cr_assert_eq(run_cmd(NULL, "mv '%s' '%s'", path, cp), 0);
        close(conn); /* the image is ours now */
        /* writers continue while we check */
        cr_assert_eq(lvnode_replay(iN, "img.db", txid, rp), 0);
        long long off = -1;
        cr_assert_eq(files_first_diff(cp, rp, &off), 0, "image %d (TXID %llu) differs from the replay at byte %lld",
                     i, (unsigned long long)txid, off);
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)file_db_checksum(cp));
        cr_assert_str_eq(hex, ck);
        json_decref(j);
        usleep(200000);
    }
    sql_writer_wait(&w, 26); /* the writer kept going while the images were taken */
    sql_writer_stop(&w);
    char cp[512];
    snprintf(cp, sizeof cp, "%s/image-4.db", iN->dir);
    char *ok = NULL;
    cr_assert_eq(run_cmd(&ok, "sqlite3 '%s' 'PRAGMA integrity_check'", cp), 0);
    cr_assert(strncmp(ok, "ok", 2) == 0, "integrity_check: %s", ok);
    free(ok);
    /* Nothing is left behind in data.dir/tmp. */
    char *ls = NULL;
    run_cmd(&ls, "ls -A '%s/tmp'", iN->data);
    cr_assert_str_eq(ls, "");
    free(ls);
    free(db);
    lvnode_stop(iN);
}

Test(image, under_load_wal) { image_under_load("wal"); }
Test(image, under_load_delete) { image_under_load("delete"); }

Test(image, unknown_database_and_bad_request)
{
    iN = lvnode_started(NULL);
    char *out = NULL;
    cr_assert_eq(run_cmd(&out, "curl -s -o /dev/null -w '%%{http_code}' --unix-socket '%s/admin.sock' -X POST "
                               "'http://localhost/v1/image?db=nope.db'", iN->data), 0);
    cr_assert_str_eq(out, "404");
    free(out);
    cr_assert_eq(run_cmd(&out, "curl -s -o /dev/null -w '%%{http_code}' --unix-socket '%s/admin.sock' -X POST "
                               "'http://localhost/v1/image'", iN->data), 0);
    cr_assert_str_eq(out, "400");
    free(out);
    lvnode_stop(iN);
}

/* cp of a WAL-mode database onto the mount (new name, then over it): each
 * copy is one snapshot record with the file's checksum, and later SQLite
 * use in WAL mode is captured normally (no checkpoint mismatch). */
Test(image, cp_wal_mode_database)
{
    char src[600], src2[600], *out = NULL;
    iN = lvnode_started(NULL);
    snprintf(src, sizeof src, "%s/src.db", iN->dir);
    snprintf(src2, sizeof src2, "%s/src2.db", iN->dir);
    sql_exec(src, "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t SELECT randomblob(500) FROM "
                  "(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 300) SELECT i FROM c);",
             0);
    sql_exec(src2, "PRAGMA journal_mode=WAL; CREATE TABLE u(y); INSERT INTO u VALUES (1), (2);", 0);
    char *dst = lvnode_path(iN, "copied.db");
    cr_assert_eq(run_cmd(NULL, "cp '%s' '%s'", src, dst), 0);
    struct lvdbstat st;
    cr_assert_eq(lvnode_db_status(iN, "copied.db", &st), 1);
    cr_assert_eq(st.txid, 1, "cp of a WAL-mode database was not logged (TXID %llu)", (unsigned long long)st.txid);
    cr_assert_eq(st.checksum, file_db_checksum(src));
    /* SQLite in WAL mode on the copy: commits, a checkpoint, close. */
    sql_exec(dst, "INSERT INTO t VALUES (randomblob(100)); INSERT INTO t VALUES (randomblob(100));", 0);
    sql_checkpoint(dst, "TRUNCATE");
    lvnode_check_db(iN, "copied.db");
    /* cp over it (truncate to 0, then the new bytes). */
    uint64_t before = lvnode_last_txid(iN, "copied.db");
    cr_assert_eq(run_cmd(NULL, "cp '%s' '%s'", src2, dst), 0);
    cr_assert_eq(lvnode_db_status(iN, "copied.db", &st), 1);
    cr_assert_eq(st.txid, before + 1);
    cr_assert_eq(st.checksum, file_db_checksum(src2));
    cr_assert_eq(sql_int(dst, "SELECT count(*) FROM u"), 2);
    lvnode_check_db(iN, "copied.db");
    cr_assert_eq(lvnode_log_contains(iN, "disagree"), 0, "a checkpoint mismatch was reported");
    free(out);
    free(dst);
    lvnode_stop(iN);
}
