/*
 * bank.h -- the bank workload: a database of accounts whose balances always
 * sum to the same total, a writer thread moving money between them, and
 * reader processes that check, in every read transaction, that they see one
 * consistent committed state.  It is the load for the replication tests: the
 * writer runs on the primary, the readers on a replica's mount (or the same
 * mount, for the single-node smoke test).
 *
 * THE DATABASE.  bank_create makes
 *     acct(id INTEGER PRIMARY KEY, bal INTEGER, pad BLOB)   naccounts rows,
 *         every bal 1000, pad 300 random bytes (the accounts spread over
 *         many pages, so a torn state shows up in a sum);
 *     tick(n INTEGER)   one row: the number of committed transfers;
 *     extra(id INTEGER PRIMARY KEY, k INTEGER, v BLOB)   the mixed
 *         workload's rows (the readers never look at it).
 * Invariants every committed state keeps: sum(bal) = 1000 * naccounts,
 * count(*) = naccounts, and tick only grows.
 *
 * THE WRITER (struct bank_writer, opaque).  A thread with its own connection
 * (busy timeout 10 s) committing transfers
 *     BEGIN IMMEDIATE; bal -= x on one account; bal += x on another;
 *     tick.n += 1; COMMIT
 * SQLITE_BUSY / SQLITE_LOCKED are never fatal: the transaction is rolled
 * back and retried (counted in busy_retries).  Any other error is counted,
 * its first message kept, and the writer goes on after 10 ms.  The mixed
 * workload's steps (bank_writer_mixed, or one every mixed_every transfers)
 * run on the same thread and connection between transfers, in order of the
 * step number modulo BANK_MIXED_KINDS:
 *     0 insert 20 rows into extra      4 ALTER TABLE extra ADD COLUMN
 *     1 update a range of extra        5 CREATE INDEX on extra
 *     2 delete some rows of extra      6 VACUUM
 *     3 CREATE TABLE extra_<step>      7 journal mode switch (WAL <-> DELETE)
 * None touches acct or tick, so the readers' invariants hold throughout.
 * A step SQLite refuses because other connections hold the database
 * (leaving WAL mode needs every other connection closed, VACUUM needs the
 * readers out) is retried for up to BANK_MIXED_TRY_MS and then reported as
 * skipped (bank_writer_mixed returns SQLITE_BUSY; counted in mixed_skipped).
 * The writer is owned by the registry (fixture.h): lvt_fini stops it before
 * any daemon is killed.  bank_writer_stop ends it early and frees it.
 *
 * THE READERS (struct bank_readers, opaque).  N separate processes, as the
 * applications on a replica would be: each is this test binary re-executed
 * (fork, then exec of /proc/self/exe; a constructor in bank.c recognises the
 * child by its environment and runs the reader loop before Criterion's
 * main), so a reader inherits no SQLite state or lock from the test process
 * and forking is safe while the writer thread runs.  A reader dies with the
 * test process (PR_SET_PDEATHSIG).  Each reader opens the database with
 * sqlite3_open_v2(path, SQLITE_OPEN_READWRITE) and a 10 s busy timeout and
 * loops
 *     BEGIN; SELECT sum(bal), count(*) FROM acct; SELECT n FROM tick;
 *     [reader 0 only: sleep 2..5 ms]; SELECT sum(bal) FROM acct;
 *     SELECT n FROM tick; COMMIT
 * with statements prepared once per connection (a schema change makes
 * SQLite re-prepare them, as in an application), reopening the connection
 * every reopen_every transactions and after any error.  Checks
 * ("violations"): sum = 1000 * naccounts in both selects, count =
 * naccounts, both ticks equal (one snapshot), tick never below the last
 * tick this reader saw.  Errors are counted by extended result code with
 * the first message of each code, in three classes:
 *     fatal  SQLITE_CORRUPT, SQLITE_IOERR_*, SQLITE_NOTADB, or any message
 *            saying "malformed": the replica served a torn database;
 *     busy   SQLITE_BUSY / SQLITE_LOCKED after the 10 s busy timeout;
 *     other  anything else (e.g. SQLITE_CANTOPEN, "no such table" after the
 *            table had been seen).
 * Before a reader first sees the table, a missing file (it waits for it),
 * SQLITE_CANTOPEN, an empty database or "no such table: acct" are not
 * errors: the reader retries every 20 ms; only after wait_ms do they count.
 * Counters live in shared memory, so bank_readers_peek reads them while the
 * readers run.  The readers are owned by the registry: lvt_fini SIGKILLs
 * them; bank_readers_stop ends them early, frees them and returns the
 * totals.
 *
 * Nothing in the readers asserts (they are other processes); the writer's
 * thread does not assert either.  The functions called from the test
 * process assert on setup failures (cannot create, cannot fork).
 */
#ifndef TESTLIB_BANK_H
#define TESTLIB_BANK_H

#include <stdio.h>

/* Balance every account starts with. */
#define BANK_BALANCE 1000

/* Number of kinds of mixed-workload steps (see above). */
#define BANK_MIXED_KINDS 8

/* How long a mixed step retries a refusal (SQLITE_BUSY) before it is skipped. */
#define BANK_MIXED_TRY_MS 3000

/* Create the bank at path (which must not hold a bank yet): journal_mode
 * ("wal", "delete", "truncate", "persist"; NULL = SQLite's default) set
 * first, then the tables above in one transaction; asserts. */
void bank_create(const char *path, int naccounts, const char *journal_mode);

/* Check the invariants once on a new connection to path (opened without
 * SQLITE_OPEN_CREATE, so a replica's missing file is not made; one read
 * transaction: sum, count) and return tick.n; asserts. */
long long bank_verify(const char *path, int naccounts);

/* ---- the writer ---- */

struct bank_writer;

/* Options of bank_writer_start_opt; zero means the default. */
struct bank_wopts {
    unsigned seed;     /* for accounts and amounts (default: from the pid) */
    int mixed_every;   /* run the next mixed step after every this many transfers (0: never) */
    int pace_us;       /* sleep this long between transactions (default 0) */
};

/* What the writer did. */
struct bank_wstats {
    long commits;        /* transfers committed */
    long long tick;      /* tick.n after the last commit */
    long busy_retries;   /* transactions retried after SQLITE_BUSY/LOCKED */
    long errors;         /* other failed transactions */
    int first_rc;        /* extended code of the first of those (0 if none) */
    char first_err[256]; /* its message */
    long mixed;          /* mixed steps done */
    long mixed_skipped;  /* mixed steps skipped (refused for BANK_MIXED_TRY_MS) */
};

/* Start a writer on the bank at path (created by bank_create with the same
 * naccounts); asserts the database opens.  Owned by the registry. */
struct bank_writer *bank_writer_start(const char *path, int naccounts);
struct bank_writer *bank_writer_start_opt(const char *path, int naccounts, const struct bank_wopts *o);

/* Transfers committed so far. */
long bank_writer_commits(struct bank_writer *w);

/* Wait (<= LVT_WAIT_MS) until at least n transfers are committed; asserts. */
void bank_writer_wait(struct bank_writer *w, long n);

/* Pause: returns once the writer is idle between transactions (no
 * transaction open, nothing more committed until bank_writer_resume);
 * asserts it paused within LVT_WAIT_MS.  Idempotent. */
void bank_writer_pause(struct bank_writer *w);
void bank_writer_resume(struct bank_writer *w);

/* Run mixed step `step` (kind step % BANK_MIXED_KINDS) on the writer's
 * thread between two transfers and wait for it (also while paused): 0
 * done, SQLITE_BUSY skipped (refused for BANK_MIXED_TRY_MS); any other
 * failure asserts with SQLite's message. */
int bank_writer_mixed(struct bank_writer *w, int step);

/* Counters so far (a consistent copy). */
struct bank_wstats bank_writer_stats(struct bank_writer *w);

/* Stop and join the writer, free it; returns its counters. */
struct bank_wstats bank_writer_stop(struct bank_writer *w);

/* ---- the readers ---- */

struct bank_readers;

/* Options of bank_readers_start_opt; zero means the default. */
struct bank_ropts {
    int n;            /* reader processes (required, 1..BANK_MAX_READERS) */
    int naccounts;    /* the bank's size (required) */
    int slow;         /* readers 0..slow-1 sleep inside the transaction (default 1; -1: none) */
    int sleep_min_ms; /* their sleep: uniform in [min, max] ms (default 2..5) */
    int sleep_max_ms;
    int pause_us;     /* sleep between transactions (default 500 us; -1: none) */
    int reopen_every; /* reopen the connection every this many transactions (default 100) */
    int wait_ms;      /* how long a missing file/table is waited for, not counted (default LVT_WAIT_MS) */
};

#define BANK_MAX_READERS 32
#define BANK_MAX_CODES 16

/* Errors of one extended result code. */
struct bank_err {
    int code;         /* extended result code (-1: timed out waiting for the database) */
    long count;
    char first[200];  /* first message seen with this code */
};

/* The readers' totals. */
struct bank_result {
    int readers;             /* processes started */
    int hung;                /* readers that did not exit within 30 s of the stop request */
    int died;                /* readers that exited abnormally (signal, nonzero status) */
    long ok;                 /* read transactions that passed every check */
    long ok_min;             /* the fewest ok transactions of one reader */
    long violations;         /* invariant violations (see above) */
    char first_violation[256];
    long fatal;              /* corrupt / I/O / not a database / malformed errors */
    long busy;               /* SQLITE_BUSY or LOCKED after the busy timeout */
    long other;              /* other errors */
    long long tick_max;      /* highest tick any reader saw */
    long tick_distinct_min;  /* distinct tick values: the fewest seen by one reader */
    long tick_distinct_max;  /* ... and the most */
    int nerr;                /* entries in err */
    struct bank_err err[BANK_MAX_CODES]; /* errors by code, over all readers */
};

/* Start n readers on path (the bank of naccounts; the file may not exist
 * yet); asserts they could be started.  Owned by the registry. */
struct bank_readers *bank_readers_start(const char *path, int n, int naccounts);
struct bank_readers *bank_readers_start_opt(const char *path, const struct bank_ropts *o);

/* The totals so far, read while the readers run (hung and died are 0). */
struct bank_result bank_readers_peek(struct bank_readers *r);

/* Wait (<= ms) until every reader has at least min_ok good transactions and
 * has seen at least min_distinct tick values; 1 if so, 0 on timeout. */
int bank_readers_wait(struct bank_readers *r, long min_ok, long min_distinct, int ms);

/* Wait (<= ms) until every reader has seen tick >= tick (e.g. the writer's
 * tick after bank_writer_pause: the readers of a replica see all of it);
 * 1 if so, 0 on timeout. */
int bank_readers_wait_tick(struct bank_readers *r, long long tick, int ms);

/* Ask the readers to finish their transaction and exit, wait (<= 30 s,
 * then SIGKILL: counted as hung), free them; returns the totals. */
struct bank_result bank_readers_stop(struct bank_readers *r);

/* One-paragraph summary of res into buf (returns buf): counts, tick range,
 * errors by code with their first message, the first violation. */
char *bank_result_format(const struct bank_result *res, char *buf, size_t len);

/* Print bank_result_format to f, prefixed by what. */
void bank_result_print(FILE *f, const char *what, const struct bank_result *res);

/* 1 if res has no violation, fatal, busy or other error, no hung or dead reader. */
int bank_result_clean(const struct bank_result *res);

/* Assert bank_result_clean(res), every reader >= min_ok good transactions
 * and >= min_distinct tick values (message: the summary, prefixed by what). */
void bank_result_assert(const struct bank_result *res, const char *what, long min_ok, long min_distinct);

#endif /* TESTLIB_BANK_H */
