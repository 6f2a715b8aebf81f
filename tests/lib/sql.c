/*
 * sql.c -- see sql.h.
 *
 * snapshot_db() does NOT use sqlite3_backup: the backup API leaves three
 * header fields of page 1 different from the source (file change counter at
 * offset 24 and version-valid-for at 92, both taken from the destination's
 * own counter + 1, and the schema cookie at 40, set to the destination's old
 * cookie + 1), so a backup copy never equals the replayed log byte for byte.
 * sqlite3_serialize() on an ordinary database reads every page through the
 * pager (database file + committed WAL frames) inside one read transaction:
 * that is the logical database exactly, page layout and header included.
 */
#include "sql.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <xxhash.h>

#include "util.h"

static char g_tag[128];

void sql_set_tag(const char *tag)
{
    snprintf(g_tag, sizeof g_tag, "%s", tag ? tag : "");
}

const char *sql_tag(void)
{
    return g_tag;
}

/* "[tag] " or "". */
#define TAGF "%s%s%s"
#define TAGA g_tag[0] ? "[" : "", g_tag, g_tag[0] ? "] " : ""

sqlite3 *sql_open(const char *path)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, NULL);
    if (rc != SQLITE_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        cr_assert_fail(TAGF "sqlite3_open %s: %s", TAGA, path, msg);
    }
    sqlite3_busy_timeout(db, 10000);
    return db;
}

int snapshot_db(const char *src, const char *dst)
{
    sqlite3 *s = NULL;
    unsigned char *img = NULL;
    sqlite3_int64 len = 0;
    int rc = -1;
    unlink(dst);
    if (sqlite3_open_v2(src, &s, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, NULL) != SQLITE_OK)
        goto out_close;
    sqlite3_busy_timeout(s, 10000);
    /* One read transaction: the image is one committed state. */
    if (sqlite3_exec(s, "BEGIN; SELECT count(*) FROM sqlite_master;", NULL, NULL, NULL) != SQLITE_OK)
        goto out_close;
    img = sqlite3_serialize(s, "main", &len, 0);
    sqlite3_exec(s, "COMMIT", NULL, NULL, NULL);
    if (!img)
        goto out_close;
    int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        goto out_free_img;
    sqlite3_int64 off = 0;
    while (off < len) {
        ssize_t w = write(fd, img + off, (size_t)(len - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += w;
    }
    if (close(fd) == 0 && off == len)
        rc = 0;
out_free_img:
    sqlite3_free(img);
out_close:
    sqlite3_close(s);
    return rc;
}

int sql_exec(const char *path, const char *sql, int allow_fail)
{
    sqlite3 *db = sql_open(path);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK && !allow_fail) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        sqlite3_close(db);
        cr_assert_fail(TAGF "sql_exec(%s): %s: rc=%d %s", TAGA, path, sql, rc, msg);
    }
    sqlite3_free(err);
    sqlite3_close(db);
    return rc;
}

/* Prepare and step sql on db for one row; asserts (closing close_db first if given). */
static sqlite3_stmt *one_row(sqlite3 *db, const char *what, const char *sql, sqlite3 *close_db)
{
    sqlite3_stmt *st = NULL;
    char msg[512];
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        return st;
    snprintf(msg, sizeof msg, "rc=%d %s", rc, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (close_db)
        sqlite3_close(close_db);
    cr_assert_fail(TAGF "%s: %s: no row (%s)", TAGA, what, sql, msg);
    return NULL;
}

long long sql_int(const char *path, const char *sql)
{
    sqlite3 *db = sql_open(path);
    sqlite3_stmt *st = one_row(db, path, sql, db);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

char *sql_text(const char *path, const char *sql)
{
    sqlite3 *db = sql_open(path);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    cr_assert(rc == SQLITE_OK, TAGF "%s: %s: %s", TAGA, path, sql, sqlite3_errmsg(db));
    char *r = NULL;
    if (sqlite3_step(st) == SQLITE_ROW)
        r = strdup(sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
    else
        r = strdup(sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    cr_assert_not_null(r);
    return r;
}

int sql_integrity_ok(const char *path, int immutable)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char uri[1200];
    int ok = 0;
    int rc = SQLITE_OK;
    snprintf(uri, sizeof uri, "file:%s%s", path, immutable ? "?immutable=1" : "");
    if ((rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL)) == SQLITE_OK &&
        (sqlite3_busy_timeout(db, 2000), rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL)) ==
            SQLITE_OK &&
        (rc = sqlite3_step(st)) == SQLITE_ROW)
        ok = sqlite3_column_text(st, 0) && strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    if (!ok) /* what failed: a lock (busy), an I/O error, or what integrity_check found */
        fprintf(stderr, "sql_integrity_ok(%s): rc %d (%s): %s\n", path, rc, sqlite3_errstr(rc),
                rc == SQLITE_ROW && sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0)
                                                               : db ? sqlite3_errmsg(db) : "");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

void sqlh_exec(sqlite3 *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *q = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    char *err = NULL;
    int rc = sqlite3_exec(db, q, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s (rc %d)", err ? err : sqlite3_errstr(rc), rc);
        sqlite3_free(err);
        cr_assert_fail(TAGF "SQL failed: %s: %s", TAGA, q, msg);
    }
    sqlite3_free(q);
}

long long sqlh_int(sqlite3 *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    sqlite3_stmt *st = one_row(db, "query", sql, NULL);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_free(sql);
    return v;
}

/* Feed one value to the hash: type tag, length, bytes. */
static void hash_value(XXH3_state_t *h, sqlite3_stmt *st, int col)
{
    unsigned char tag = (unsigned char)sqlite3_column_type(st, col);
    XXH3_64bits_update(h, &tag, 1);
    switch (tag) {
    case SQLITE_INTEGER: {
        int64_t v = sqlite3_column_int64(st, col);
        XXH3_64bits_update(h, &v, sizeof v);
        break;
    }
    case SQLITE_FLOAT: {
        double v = sqlite3_column_double(st, col);
        XXH3_64bits_update(h, &v, sizeof v);
        break;
    }
    case SQLITE_NULL:
        break;
    default: { /* TEXT, BLOB */
        const void *p = sqlite3_column_blob(st, col);
        int64_t len = sqlite3_column_bytes(st, col);
        XXH3_64bits_update(h, &len, sizeof len);
        if (len)
            XXH3_64bits_update(h, p, (size_t)len);
        break;
    }
    }
}

uint64_t sql_content_hash(const char *path)
{
    sqlite3 *db = sql_open(path);
    sqlite3_stmt *tl = NULL;
    XXH3_state_t *h = XXH3_createState();
    cr_assert(h != NULL);
    XXH3_64bits_reset(h);
    cr_assert(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
    int rc = sqlite3_prepare_v2(db,
                                "SELECT name, coalesce(sql,'') FROM sqlite_master WHERE type='table' "
                                "AND name NOT LIKE 'sqlite_stat%' ORDER BY name",
                                -1, &tl, NULL);
    cr_assert(rc == SQLITE_OK, TAGF "sql_content_hash(%s): %s", TAGA, path, sqlite3_errmsg(db));
    while (sqlite3_step(tl) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(tl, 0);
        const char *ddl = (const char *)sqlite3_column_text(tl, 1);
        XXH3_64bits_update(h, name, strlen(name) + 1);
        XXH3_64bits_update(h, ddl, strlen(ddl) + 1);
        char *q = sqlite3_mprintf("SELECT * FROM \"%w\" ORDER BY rowid", name);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK) {
            /* WITHOUT ROWID: primary-key order. */
            sqlite3_free(q);
            q = sqlite3_mprintf("SELECT * FROM \"%w\"", name);
            rc = sqlite3_prepare_v2(db, q, -1, &st, NULL);
            cr_assert(rc == SQLITE_OK, TAGF "sql_content_hash(%s): %s", TAGA, path, sqlite3_errmsg(db));
        }
        sqlite3_free(q);
        while (sqlite3_step(st) == SQLITE_ROW) {
            int nc = sqlite3_column_count(st);
            for (int c = 0; c < nc; c++)
                hash_value(h, st, c);
        }
        sqlite3_finalize(st);
    }
    sqlite3_finalize(tl);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    uint64_t r = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return r;
}

void sql_checkpoint(const char *path, const char *mode)
{
    sqlite3 *db = sql_open(path);
    char *q = sqlite3_mprintf("PRAGMA wal_checkpoint(%s)", mode);
    sqlite3_stmt *st = one_row(db, path, q, db);
    sqlite3_free(q);
    int busy = sqlite3_column_int(st, 0);
    int logf = sqlite3_column_int(st, 1), done = sqlite3_column_int(st, 2);
    sqlite3_finalize(st);
    sqlite3_close(db);
    cr_assert(busy == 0, TAGF "checkpoint %s on %s was blocked (log %d, checkpointed %d)", TAGA, mode, path, logf,
              done);
    cr_assert(logf == done, TAGF "checkpoint %s on %s incomplete (log %d, checkpointed %d)", TAGA, mode, path, logf,
              done);
}

int sql_insert_until_error(const char *path, int wal, int blob, int max, int *err)
{
    sqlite3 *h = NULL;
    char sql[128];
    int ok = 0;
    *err = SQLITE_OK;
    cr_assert_eq(sqlite3_open(path, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    sqlite3_exec(h, wal ? "PRAGMA journal_mode=WAL" : "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
    snprintf(sql, sizeof sql, "INSERT INTO t(v) VALUES(randomblob(%d))", blob);
    for (int i = 0; i < max; i++) {
        int rc = sqlite3_exec(h, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            *err = sqlite3_extended_errcode(h);
            break;
        }
        ok++;
    }
    sqlite3_close(h);
    return ok;
}

static void *writer_main(void *arg)
{
    struct sql_writer *w = arg;
    sqlite3 *db = NULL;
    unsigned seed = w->seed;
    if (sqlite3_open(w->path, &db) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL; /* no commits: the test's wait fails and says so */
    }
    sqlite3_busy_timeout(db, 10000);
    sqlite3_exec(db, "PRAGMA wal_autocheckpoint=50", NULL, NULL, NULL);
    while (!atomic_load(&w->stop)) {
        char sql[512];
        int id = (int)(rand_r(&seed) % (unsigned)w->rows) + 1;
        snprintf(sql, sizeof sql, w->sql, id, (id * 7919) % w->rows + 1);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK)
            atomic_fetch_add(&w->commits, 1);
        else
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    sqlite3_close(db);
    return NULL;
}

void sql_writer_start(struct sql_writer *w)
{
    atomic_store(&w->stop, 0);
    atomic_store(&w->commits, 0);
    cr_assert_eq(pthread_create(&w->thread, NULL, writer_main, w), 0, "cannot start the writer thread");
}

void sql_writer_wait(struct sql_writer *w, long n)
{
    cr_assert(WAIT_FOR(atomic_load(&w->commits) >= n, LVT_WAIT_MS), "the writer committed %ld of %ld transactions",
              (long)atomic_load(&w->commits), n);
}

long sql_writer_stop(struct sql_writer *w)
{
    atomic_store(&w->stop, 1);
    pthread_join(w->thread, NULL);
    return atomic_load(&w->commits);
}
