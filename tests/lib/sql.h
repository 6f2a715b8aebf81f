/*
 * sql.h -- SQLite helpers: one-shot statements on a path (a new connection
 * each call), statements on an open handle, content hashes and byte-exact
 * logical copies of a database.
 *
 * DESIGN.  The path helpers open a fresh connection per call (busy timeout
 * 10 s) so that a test reads what a new client would see, and close it
 * before returning.  Every failure asserts with the SQL text and SQLite's
 * message, prefixed by the tag set with sql_set_tag (e.g. "wal/4096"), so a
 * matrix test's report names its case.
 */
#ifndef TESTLIB_SQL_H
#define TESTLIB_SQL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <sqlite3.h>

/* Prefix "[tag] " to this module's failure messages (tag is copied; NULL clears). */
void sql_set_tag(const char *tag);

/* The current tag ("" if none); borrowed. */
const char *sql_tag(void);

/* Open path read-write (created if missing, URI names allowed) with a 10 s busy timeout;
 * asserts.  The caller closes the handle. */
sqlite3 *sql_open(const char *path);

/* Execute SQL on path with libsqlite3 (new connection each call); asserts success
 * unless allow_fail; returns the sqlite3 result code. */
int sql_exec(const char *path, const char *sql, int allow_fail);

/* Run a query returning one integer (first column of the first row); asserts. */
long long sql_int(const char *path, const char *sql);

/* First row, first column of sql as text (malloc'ed, caller frees); SQLite's
 * error message if there is no row. */
char *sql_text(const char *path, const char *sql);

/* 1 if PRAGMA integrity_check on path says "ok" (opened read-only, immutable
 * when immutable != 0, so a file with no -wal/-shm is read as it is). */
int sql_integrity_ok(const char *path, int immutable);

/* printf-style SQL on an open handle (sqlite3_mprintf formats: %q, %w); asserts success. */
void sqlh_exec(sqlite3 *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* printf-style query on an open handle returning one integer; asserts a row. */
long long sqlh_int(sqlite3 *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Content hash of a database: XXH3 of every table's rows in rowid order via SQL
 * (independent of the page layout). */
uint64_t sql_content_hash(const char *path);

/* Copy the logical database (the file plus its committed WAL) at src to dst
 * (page layout kept, same page size, byte-exact: implemented with
 * sqlite3_serialize, because sqlite3_backup rewrites header bytes 24, 40, 92);
 * 0 on success. */
int snapshot_db(const char *src, const char *dst);

/* PRAGMA wal_checkpoint(mode) on path (mode: PASSIVE|FULL|RESTART|TRUNCATE);
 * asserts success and that the checkpoint was not blocked. */
void sql_checkpoint(const char *path, const char *mode);

/* Commit one-row transactions of `blob` random bytes into table t(id, v) of
 * path through one connection (journal mode WAL if wal, else DELETE) until a
 * commit fails or max are done; returns the number committed and *err the
 * failing extended result code (SQLITE_OK if none failed). */
int sql_insert_until_error(const char *path, int wal, int blob, int max, int *err);

/* A background writer: a thread that commits `sql` in a loop on its own
 * connection (busy timeout 10 s, wal_autocheckpoint=50) until stopped.  sql is
 * a printf format whose %1$d is a random row id in 1..rows and %2$d another
 * one; a failed transaction is rolled back and not counted.  The caller owns
 * the struct (and path, sql) until sql_writer_stop returns. */
struct sql_writer {
    const char *path;     /* database (on the mount) */
    const char *sql;      /* the transaction, see above */
    int rows;             /* ids are 1..rows */
    unsigned seed;        /* for the ids */
    atomic_int stop;      /* set by sql_writer_stop */
    atomic_long commits;  /* transactions committed so far */
    pthread_t thread;     /* the writer thread */
};

/* Start w's thread (path, sql, rows, seed set by the caller); asserts. */
void sql_writer_start(struct sql_writer *w);

/* Wait (<= LVT_WAIT_MS) until w committed at least n transactions; asserts. */
void sql_writer_wait(struct sql_writer *w, long n);

/* Stop and join w's thread; returns the number of commits. */
long sql_writer_stop(struct sql_writer *w);

#endif /* TESTLIB_SQL_H */
