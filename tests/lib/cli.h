/*
 * cli.h -- wrappers around the litevault command line ($LITEVAULT) run
 * against a node's config: log ls/replay/dump, status, restore, archive,
 * and the core consistency check built on them (lvnode_check_db).
 *
 * DESIGN.  Every wrapper runs the real binary through `sh -c`, exactly as an
 * operator would, and parses its --json output with jansson; a wrapper
 * that cannot parse returns an error value (-1, 0 or NULL as documented)
 * rather than asserting, so the caller's assertion names the case.  The
 * commands read the node's files (log, archive), never the daemon's
 * memory, except `status`, which asks the running daemon over HTTP.
 */
#ifndef TESTLIB_CLI_H
#define TESTLIB_CLI_H

#include <stdint.h>

#include <jansson.h>

#include "node.h"

/* Run `$LITEVAULT <cmd> -c <n's config> <args...>` with stderr merged into stdout;
 * *out gets the output (malloc'ed, caller frees) if out != NULL.  Returns the exit status. */
int lvnode_cli(const struct lvnode *n, char **out, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Run `$LITEVAULT <cmd> -c <config> <args...> --json` (stderr discarded) and parse stdout:
 * a new reference (caller decrefs), or NULL if the command failed or printed no JSON;
 * *rc (if not NULL) gets the exit status. */
json_t *lvnode_cli_json(const struct lvnode *n, int *rc, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Run `litevault log replay` for db name at txid (0 = last) into outpath; returns exit status. */
int lvnode_replay(const struct lvnode *n, const char *db, uint64_t txid, const char *outpath);

/* Last TXID in the node's log for db (via `litevault log ls --json`), 0 if none. */
uint64_t lvnode_last_txid(const struct lvnode *n, const char *db);

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

/* First TXID in n's local log of db (`log ls`), or -1 if log ls fails or
 * lists nothing: where pruning left the log. */
long long lvnode_log_first(const struct lvnode *n, const char *db);

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

/* Fill *st from one entry of the "databases" array of a status document (borrowed o). */
void lvdbstat_from_json(json_t *o, struct lvdbstat *st);

/* Field of db's current lineage in `archive ls --json` (the node's config
 * names the destination); -1 if absent or the command failed. */
long long lvnode_archived(const struct lvnode *n, const char *db, const char *field);

/* Look db up in `status --json`: 1 found (*st filled), 0 not listed, -1 command failed. */
int lvnode_db_status(const struct lvnode *n, const char *db, struct lvdbstat *st);

/* Page numbers of record txid of db (`log dump --json`) into *pages (malloc'ed,
 * caller frees); returns the count, or -1 if the command failed. */
int lvnode_record_pages(const struct lvnode *n, const char *db, uint64_t txid, uint32_t **pages);

/* Run `$LITEVAULT restore --from url --db db [target_flag] -o out` (LITEVAULT
 * defaults to ./litevault; target_flag e.g. "--txid 42", "--timestamp T" or
 * NULL for the latest, and may carry more options such as "--force");
 * stdout/stderr go to the test's stderr.  Returns the exit status (0/1/2). */
int lv_restore_cmd(const char *url, const char *db, const char *target_flag, const char *out);

/* `litevault restore -c <n's config> --db db [flags] -o out` from the config's first
 * archive destination; out is removed first; *msg (if not NULL) gets stdout+stderr
 * (malloc'ed, caller frees).  Returns the exit status. */
int lvnode_restore(const struct lvnode *n, const char *db, const char *flags, const char *out, char **msg);

/* The archive's latest TXID of db as `restore --dry-run --json` plans it, and the
 * plan's start TXID (snapshot or 0) in *start if not NULL; 0 if there is none. */
uint64_t lvnode_archive_txid(const struct lvnode *n, const char *db, uint64_t *start);

/* The core consistency check for database name on a running node (asserts):
 *  - `log replay` succeeds;
 *  - the replayed file equals the database byte for byte: the file itself in a
 *    rollback journal mode, a snapshot_db() copy in WAL mode;
 *  - file_db_checksum(replay) == the checksum in `status --json`, and status "ok";
 *  - the TXID in status equals the last record's TXID;
 *  - PRAGMA integrity_check on the replayed copy is "ok".
 * No connection may be writing the database meanwhile.  Returns the last TXID. */
uint64_t lvnode_check_db(const struct lvnode *n, const char *db);

#endif /* TESTLIB_CLI_H */
