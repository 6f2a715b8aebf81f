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

/* Copy the logical database (the file plus its committed WAL) at src to dst
 * (page layout kept, same page size, byte-exact: implemented with
 * sqlite3_serialize, because sqlite3_backup rewrites header bytes 24, 40, 92);
 * 0 on success. */
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

/* ---- Additions (h5).  Existing declarations above are unchanged. ---- */

/* One record of `litevault log ls --json`. */
struct lvrec {
    uint64_t txid;          /* TXID */
    int64_t time_us;        /* commit time, microseconds since the epoch */
    uint32_t pages;         /* pages in the record */
    uint32_t db_pages;      /* database size in pages after the record */
    uint32_t page_size;     /* page size */
    uint64_t pre_checksum;  /* database checksum before */
    uint64_t post_checksum; /* database checksum after */
    int snapshot;           /* snapshot record (all pages) */
    int recovered;          /* written by start-up recovery */
};

/* Records of db via `log ls --json` into *out (malloc'ed array, caller frees);
 * returns the count, or -1 if the command failed (e.g. unknown database). */
int lvnode_log_records(const struct lvnode *n, const char *db, struct lvrec **out);

/* One database of `litevault status --json`. */
struct lvdbstat {
    uint64_t txid;          /* last TXID */
    uint64_t checksum;      /* database checksum (parsed from 16 hex) */
    uint32_t page_size;     /* page size */
    uint32_t pages;         /* pages */
    char journal_mode[16];  /* delete|truncate|persist|wal|unknown */
    char status[16];        /* ok|broken */
    int64_t last_commit_us; /* last commit time */
};

/* Look db up in `status --json`: 1 found (*st filled), 0 not listed, -1 command failed. */
int lvnode_db_status(const struct lvnode *n, const char *db, struct lvdbstat *st);

/* Whole daemon log (stdout+stderr) as a malloc'ed string (caller frees; "" if none). */
char *lvnode_log_text(const struct lvnode *n);

/* 1 if the daemon log contains needle. */
int lvnode_log_contains(const struct lvnode *n, const char *needle);

/* Compare two files: 0 equal, 1 different (*offset = first differing byte, or the
 * shorter length), -1 if one cannot be read. */
int files_first_diff(const char *a, const char *b, long long *offset);

/* The core consistency check for database name on a running node (asserts):
 *  - `log replay` succeeds;
 *  - the replayed file equals the database byte for byte: the file itself in a
 *    rollback journal mode, a snapshot_db() copy in WAL mode;
 *  - file_db_checksum(replay) == the checksum in `status --json`, and status "ok";
 *  - the TXID in status equals the last record's TXID;
 *  - PRAGMA integrity_check on the replayed copy is "ok".
 * No connection may be writing the database meanwhile.  Returns the last TXID. */
uint64_t lvnode_check_db(const struct lvnode *n, const char *db);

/* PRAGMA wal_checkpoint(mode) on path (mode: PASSIVE|FULL|RESTART|TRUNCATE);
 * asserts success and that the checkpoint was not blocked. */
void sql_checkpoint(const char *path, const char *mode);

/* Page numbers of record txid of db (`log dump --json`) into *pages (malloc'ed,
 * caller frees); returns the count, or -1 if the command failed. */
int lvnode_record_pages(const struct lvnode *n, const char *db, uint64_t txid, uint32_t **pages);

/* Freelist pages (trunks and leaves) of a database file read directly (no WAL):
 * malloc'ed sorted array in *pages (caller frees); returns the count or -1. */
int file_freelist_pages(const char *path, uint32_t **pages);

/* ---- Additions (restore). ---- */

/* Run `$LITEVAULT restore --from url --db db [target_flag] -o out` (LITEVAULT
 * defaults to ./litevault; target_flag e.g. "--txid 42", "--timestamp T" or
 * NULL for the latest, and may carry more options such as "--force");
 * stdout/stderr go to the test's stderr.  Returns the exit status (0/1/2). */
int lv_restore_cmd(const char *url, const char *db, const char *target_flag, const char *out);

#endif /* TEST_HELPERS_H */
