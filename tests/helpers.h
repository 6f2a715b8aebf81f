/*
 * helpers.h -- shared helpers for the Criterion test suites.
 *
 * The integration helpers start a real `litevault mount` (binary from the
 * LITEVAULT environment variable) on a fresh temporary directory with its
 * own HTTP port, wait for the FUSE mount, and stop it.  Tests run in
 * parallel processes, so every path and port is unique per node.
 */
#ifndef TEST_HELPERS_H
#define TEST_HELPERS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One litevault daemon under test. */
struct lvnode {
    char dir[256];     /* temporary root: <dir>/mnt, <dir>/data, <dir>/config.yml, <dir>/daemon.log */
    char mnt[300];     /* mount point */
    char data[300];    /* data.dir */
    char config[300];  /* config file path */
    char logpath[300]; /* daemon stderr+stdout */
    char http[64];     /* 127.0.0.1:PORT */
    pid_t pid;         /* daemon pid, 0 when stopped */
};

/* Create a fresh node directory and config (not started).  extra_yaml (may be
 * NULL) is appended to the generated config. */
void lvnode_init(struct lvnode *n, const char *extra_yaml);

/* Start the daemon and wait (<= 10 s) until the mount is live; asserts on failure. */
void lvnode_start(struct lvnode *n);

/* Start the daemon expecting it to fail; returns its exit code (waits <= 10 s). */
int lvnode_start_expect_fail(struct lvnode *n);

/* SIGTERM, wait for exit (<= 10 s) and for the mount to disappear; asserts a clean exit (0). */
void lvnode_stop(struct lvnode *n);

/* SIGKILL the daemon, then lazily unmount the dead mount (fusermount3 -uz). */
void lvnode_kill9(struct lvnode *n);

/* Remove the node's temporary directory (unmounting first if needed). */
void lvnode_cleanup(struct lvnode *n);

/* Path of name on the mount (malloc'ed, caller frees). */
char *lvnode_path(const struct lvnode *n, const char *name);

/* Run a shell command (sh -c), returning its exit status (WEXITSTATUS, or 128+sig).
 * Output is captured into *out (malloc'ed, caller frees) if out != NULL. */
int run_cmd(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Run `litevault log replay` for db name at txid (0 = last) into outpath; returns exit status. */
int lvnode_replay(const struct lvnode *n, const char *db, uint64_t txid, const char *outpath);

/* Last TXID in the node's log for db (via `litevault log ls --json`), 0 if none. */
uint64_t lvnode_last_txid(const struct lvnode *n, const char *db);

/* Database checksum (XOR of cksum_page over pages) of a plain file with page size taken
 * from its header; the file is read as SQLite sees it WITHOUT a WAL.  0 for an empty file. */
uint64_t file_db_checksum(const char *path);

/* 1 if the two files have identical bytes. */
int files_equal(const char *a, const char *b);

/* Copy the logical database (the file plus its committed WAL) at src to dst with
 * sqlite3_backup (page layout kept, same page size); 0 on success. */
int snapshot_db(const char *src, const char *dst);

/* Execute SQL on path with libsqlite3 (new connection each call); asserts success
 * unless allow_fail; returns the sqlite3 result code. */
int sql_exec(const char *path, const char *sql, int allow_fail);

/* Run a query returning one integer (first column of the first row). */
long long sql_int(const char *path, const char *sql);

/* Content hash of a database: XXH3 of every table's rows in rowid order via SQL
 * (independent of the page layout). */
uint64_t sql_content_hash(const char *path);

/* A free TCP port on 127.0.0.1. */
int free_port(void);

#endif /* TEST_HELPERS_H */
