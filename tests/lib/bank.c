/*
 * bank.c -- see bank.h.
 *
 * The writer is a thread guarded by one mutex: the test thread posts
 * requests (pause, a mixed step, stop) and waits on the condition variable
 * for the writer to acknowledge them; the writer looks at the requests only
 * between transactions, so a pause or a mixed step never splits a transfer.
 *
 * The readers are the test binary itself, re-executed: fork, then execve of
 * /proc/self/exe with LVT_BANK_READER=<fd>:<index> in the environment, where
 * fd is a memfd holding struct rshm (shared with the test process).  The
 * constructor bank_reader_ctor runs before main (before Criterion sees the
 * command line), finds the variable and runs the reader loop, then _exits.
 * Between fork and exec the child calls only async-signal-safe functions
 * (the argument and environment arrays are built before the fork), which
 * is what makes forking safe while the writer thread holds SQLite's mutexes.
 *
 * Shared counters are atomics written by their reader only; the error
 * table's text is written before its entry is published (nerr, release),
 * so bank_readers_peek never reads a half-made entry.
 */
#include "bank.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sqlite3.h>

#include "fixture.h"
#include "sql.h"
#include "util.h"

#define READER_ENV "LVT_BANK_READER"
#define STOP_MS 30000 /* readers must exit within this of the stop request */

/* ------------------------------------------------------------ database */

void bank_create(const char *path, int naccounts, const char *journal_mode)
{
    cr_assert(naccounts >= 2, "bank_create: at least 2 accounts, not %d", naccounts);
    sqlite3 *db = sql_open(path);
    if (journal_mode) {
        char *m = NULL;
        sqlite3_stmt *st = NULL;
        char *q = sqlite3_mprintf("PRAGMA journal_mode=%s", journal_mode);
        if (sqlite3_prepare_v2(db, q, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            m = strdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_free(q);
        int ok = m && strcasecmp(m, journal_mode) == 0;
        char got[64];
        snprintf(got, sizeof got, "%s", m ? m : sqlite3_errmsg(db));
        free(m);
        if (!ok)
            sqlite3_close(db);
        cr_assert(ok, "bank_create(%s): journal_mode=%s gave %s", path, journal_mode, got);
    }
    sqlh_exec(db,
              "BEGIN IMMEDIATE;"
              "CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER, pad BLOB);"
              "CREATE TABLE tick(n INTEGER);"
              "CREATE TABLE extra(id INTEGER PRIMARY KEY, k INTEGER, v BLOB);"
              "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d) "
              "INSERT INTO acct(id, bal, pad) SELECT x, %d, randomblob(300) FROM c;"
              "INSERT INTO tick(n) VALUES(0);"
              "COMMIT;",
              naccounts, BANK_BALANCE);
    sqlite3_close(db);
}

long long bank_verify(const char *path, int naccounts)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        cr_assert_fail("%s%sbank_verify: cannot open %s: %s", sql_tag(), sql_tag()[0] ? ": " : "", path, msg);
    }
    sqlite3_busy_timeout(db, 10000);
    sqlh_exec(db, "BEGIN");
    long long sum = sqlh_int(db, "SELECT sum(bal) FROM acct");
    long long cnt = sqlh_int(db, "SELECT count(*) FROM acct");
    long long tick = sqlh_int(db, "SELECT n FROM tick");
    sqlh_exec(db, "COMMIT");
    sqlite3_close(db);
    cr_assert(sum == (long long)BANK_BALANCE * naccounts && cnt == naccounts,
              "%s%sbank %s: sum %lld count %lld (want %lld and %d)", sql_tag()[0] ? sql_tag() : "",
              sql_tag()[0] ? ": " : "", path, sum, cnt, (long long)BANK_BALANCE * naccounts, naccounts);
    return tick;
}

/* ------------------------------------------------------------ the writer */

struct bank_writer {
    char *path;
    int naccounts;
    struct bank_wopts o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* requests and acknowledgements, under mu */
    int stop;
    int pause_req;
    int paused;
    int mixed_req;  /* a bank_writer_mixed call is waiting */
    int mixed_step; /* its step */
    int mixed_done; /* the writer finished it: mixed_rc, mixed_err */
    int mixed_rc;
    char mixed_err[256];
    int exited; /* the thread returned */
    /* counters, under mu (commits also atomic for cheap polling) */
    struct bank_wstats st;
    atomic_long commits;
};

static int is_busy(int rc)
{
    return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
}

/* Note a failed transaction (not BUSY) in the counters. */
static void w_error(struct bank_writer *w, int rc, const char *msg)
{
    pthread_mutex_lock(&w->mu);
    if (w->st.errors++ == 0) {
        w->st.first_rc = rc;
        snprintf(w->st.first_err, sizeof w->st.first_err, "%s", msg);
    }
    pthread_mutex_unlock(&w->mu);
}

/* Read tick.n (-1 if it cannot be read). */
static long long read_tick(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_prepare_v2(db, "SELECT n FROM tick", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* One transfer, retried until it commits or the writer is asked to stop. */
static void w_transfer(struct bank_writer *w, sqlite3 *db, unsigned *seed)
{
    int n = w->naccounts;
    int a = (int)(rand_r(seed) % (unsigned)n) + 1;
    int b = (int)(rand_r(seed) % (unsigned)(n - 1)) + 1;
    if (b >= a)
        b++;
    int x = (int)(rand_r(seed) % 50) + 1;
    char sql[256];
    snprintf(sql, sizeof sql,
             "BEGIN IMMEDIATE; UPDATE acct SET bal = bal - %d WHERE id = %d; "
             "UPDATE acct SET bal = bal + %d WHERE id = %d; UPDATE tick SET n = n + 1; COMMIT",
             x, a, x, b);
    for (;;) {
        int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
            pthread_mutex_lock(&w->mu);
            w->st.commits++;
            w->st.tick++;
            pthread_mutex_unlock(&w->mu);
            atomic_fetch_add(&w->commits, 1);
            return;
        }
        rc = sqlite3_extended_errcode(db);
        char msg[200];
        snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(db));
        if (!sqlite3_get_autocommit(db))
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        if (is_busy(rc)) {
            pthread_mutex_lock(&w->mu);
            w->st.busy_retries++;
            pthread_mutex_unlock(&w->mu);
        } else {
            w_error(w, rc, msg);
            sleep_ms(10);
            /* a failed COMMIT may still have committed: take tick from the database */
            long long t = read_tick(db);
            if (t >= 0) {
                pthread_mutex_lock(&w->mu);
                w->st.tick = t;
                pthread_mutex_unlock(&w->mu);
            }
        }
        pthread_mutex_lock(&w->mu);
        int stop = w->stop;
        pthread_mutex_unlock(&w->mu);
        if (stop)
            return;
    }
}

/* The SQL of mixed step `step` into buf; for the journal-mode switch, the
 * target mode into *mode (and "" as SQL). */
static void mixed_sql(sqlite3 *db, int step, char *buf, size_t len, const char **mode)
{
    int k = step % BANK_MIXED_KINDS;
    *mode = NULL;
    switch (k) {
    case 0:
        snprintf(buf, len,
                 "BEGIN IMMEDIATE; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20) "
                 "INSERT INTO extra(k, v) SELECT abs(random()) %% 1000, randomblob(200) FROM c; COMMIT");
        break;
    case 1:
        snprintf(buf, len,
                 "BEGIN IMMEDIATE; UPDATE extra SET k = k + 1, v = randomblob(150) WHERE id %% 3 = %d; COMMIT",
                 step % 3);
        break;
    case 2:
        snprintf(buf, len,
                 "BEGIN IMMEDIATE; DELETE FROM extra WHERE id IN (SELECT id FROM extra ORDER BY random() LIMIT 7); "
                 "COMMIT");
        break;
    case 3:
        snprintf(buf, len,
                 "BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS extra_%d(a INTEGER PRIMARY KEY, b TEXT); "
                 "INSERT INTO extra_%d(b) VALUES('step %d'); COMMIT",
                 step, step, step);
        break;
    case 4: {
        /* the same step twice must not fail on a duplicate column */
        char q[128];
        snprintf(q, sizeof q, "SELECT count(*) FROM pragma_table_info('extra') WHERE name = 'c%d'", step);
        sqlite3_stmt *st = NULL;
        int have = 0;
        if (sqlite3_prepare_v2(db, q, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            have = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        if (have)
            snprintf(buf, len, "SELECT 1");
        else
            snprintf(buf, len, "ALTER TABLE extra ADD COLUMN c%d INTEGER DEFAULT %d", step, step);
        break;
    }
    case 5:
        snprintf(buf, len,
                 "BEGIN IMMEDIATE; DROP INDEX IF EXISTS \"extra_k%d\"; "
                 "CREATE INDEX IF NOT EXISTS \"extra_k%d\" ON extra(k); COMMIT",
                 step - BANK_MIXED_KINDS, step);
        break;
    case 6:
        snprintf(buf, len, "VACUUM");
        break;
    default: {
        char cur[32] = "";
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            snprintf(cur, sizeof cur, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        *mode = strcasecmp(cur, "wal") == 0 ? "delete" : "wal";
        buf[0] = 0;
        break;
    }
    }
}

/* Run mixed step `step` on db: 0, SQLITE_BUSY (refused for BANK_MIXED_TRY_MS)
 * or another extended code with its message in err. */
static int w_mixed(sqlite3 *db, int step, char *err, size_t errlen)
{
    char sql[512];
    const char *mode = NULL;
    int64_t end = now_ms() + BANK_MIXED_TRY_MS;
    int rc;
    err[0] = 0;
    /* short waits per attempt, so the retry bound holds */
    sqlite3_busy_timeout(db, 200);
    for (;;) {
        mixed_sql(db, step, sql, sizeof sql, &mode);
        if (mode) {
            char q[64];
            snprintf(q, sizeof q, "PRAGMA journal_mode=%s", mode);
            sqlite3_stmt *st = NULL;
            rc = sqlite3_prepare_v2(db, q, -1, &st, NULL);
            if (rc == SQLITE_OK) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                    /* refused without an error: the old mode comes back */
                    const char *got = (const char *)sqlite3_column_text(st, 0);
                    rc = got && strcasecmp(got, mode) == 0 ? SQLITE_OK : SQLITE_BUSY;
                    if (rc != SQLITE_OK)
                        snprintf(err, errlen, "journal_mode=%s stayed %s", mode, got ? got : "?");
                }
            }
            if (rc != SQLITE_OK && rc != SQLITE_BUSY)
                rc = sqlite3_extended_errcode(db);
            if (rc != SQLITE_OK && !err[0])
                snprintf(err, errlen, "%s: %s", q, sqlite3_errmsg(db));
            sqlite3_finalize(st);
        } else {
            rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
            if (rc != SQLITE_OK) {
                rc = sqlite3_extended_errcode(db);
                snprintf(err, errlen, "%s: %s", sql, sqlite3_errmsg(db));
                if (!sqlite3_get_autocommit(db))
                    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            }
        }
        if (rc == SQLITE_OK)
            err[0] = 0;
        if (!is_busy(rc) || now_ms() >= end)
            break;
        sleep_ms(20);
    }
    sqlite3_busy_timeout(db, 10000);
    return is_busy(rc) ? SQLITE_BUSY : rc;
}

/* Serve a posted bank_writer_mixed request (called with mu held; returns with it held). */
static void w_serve_mixed(struct bank_writer *w, sqlite3 *db)
{
    int step = w->mixed_step;
    char err[256];
    w->mixed_req = 0;
    pthread_mutex_unlock(&w->mu);
    int rc = w_mixed(db, step, err, sizeof err);
    pthread_mutex_lock(&w->mu);
    if (rc == SQLITE_OK)
        w->st.mixed++;
    else if (rc == SQLITE_BUSY)
        w->st.mixed_skipped++;
    w->mixed_rc = rc;
    snprintf(w->mixed_err, sizeof w->mixed_err, "%s", err);
    w->mixed_done = 1;
    pthread_cond_broadcast(&w->cv);
}

static void *writer_main(void *arg)
{
    struct bank_writer *w = arg;
    sqlite3 *db = NULL;
    unsigned seed = w->o.seed;
    int auto_step = 0;
    long since_mixed = 0;
    int rc = sqlite3_open_v2(w->path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        w_error(w, rc, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        goto out;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, 10000);
    pthread_mutex_lock(&w->mu);
    w->st.tick = read_tick(db);
    pthread_mutex_unlock(&w->mu);
    for (;;) {
        pthread_mutex_lock(&w->mu);
        for (;;) {
            if (w->mixed_req) {
                w_serve_mixed(w, db);
                continue;
            }
            if (w->stop || !w->pause_req)
                break;
            if (!w->paused) {
                w->paused = 1;
                pthread_cond_broadcast(&w->cv);
            }
            pthread_cond_wait(&w->cv, &w->mu);
        }
        w->paused = 0;
        int stop = w->stop;
        pthread_mutex_unlock(&w->mu);
        if (stop)
            break;
        w_transfer(w, db, &seed);
        if (w->o.mixed_every > 0 && ++since_mixed >= w->o.mixed_every) {
            char err[256];
            since_mixed = 0;
            int mrc = w_mixed(db, auto_step++, err, sizeof err);
            pthread_mutex_lock(&w->mu);
            if (mrc == SQLITE_OK)
                w->st.mixed++;
            else if (mrc == SQLITE_BUSY)
                w->st.mixed_skipped++;
            pthread_mutex_unlock(&w->mu);
            if (mrc != SQLITE_OK && mrc != SQLITE_BUSY)
                w_error(w, mrc, err);
        }
        if (w->o.pace_us > 0)
            usleep((useconds_t)w->o.pace_us);
    }
out:
    sqlite3_close(db);
    pthread_mutex_lock(&w->mu);
    w->exited = 1;
    w->paused = 0;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void writer_free(struct bank_writer *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->path);
    free(w);
}

/* Ask the writer to stop and wake it. */
static void writer_signal_stop(struct bank_writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* lvt_fini: stop the thread before the daemons go; if it hangs in a dead
 * mount for 15 s, leave it (and the struct) to the process's exit. */
static void writer_kill(void *arg)
{
    struct bank_writer *w = arg;
    writer_signal_stop(w);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 15;
    if (pthread_timedjoin_np(w->thread, NULL, &ts) == 0)
        writer_free(w);
    else
        fprintf(stderr, "bank: the writer on %s did not stop within 15 s\n", w->path);
}

struct bank_writer *bank_writer_start_opt(const char *path, int naccounts, const struct bank_wopts *o)
{
    cr_assert(naccounts >= 2, "bank writer: at least 2 accounts");
    struct bank_writer *w = calloc(1, sizeof *w);
    cr_assert_not_null(w);
    w->path = strdup(path);
    cr_assert_not_null(w->path);
    w->naccounts = naccounts;
    if (o)
        w->o = *o;
    if (!w->o.seed)
        w->o.seed = (unsigned)getpid() * 2654435761u + (unsigned)now_ms();
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    cr_assert_eq(pthread_create(&w->thread, NULL, writer_main, w), 0, "cannot start the bank writer");
    lvt_defer(LVT_KILL, writer_kill, w);
    return w;
}

struct bank_writer *bank_writer_start(const char *path, int naccounts)
{
    return bank_writer_start_opt(path, naccounts, NULL);
}

long bank_writer_commits(struct bank_writer *w)
{
    return atomic_load(&w->commits);
}

struct bank_wstats bank_writer_stats(struct bank_writer *w)
{
    pthread_mutex_lock(&w->mu);
    struct bank_wstats s = w->st;
    pthread_mutex_unlock(&w->mu);
    return s;
}

void bank_writer_wait(struct bank_writer *w, long n)
{
    if (WAIT_FOR(atomic_load(&w->commits) >= n, LVT_WAIT_MS))
        return;
    struct bank_wstats s = bank_writer_stats(w);
    cr_assert_fail("%s%sthe bank writer committed %ld of %ld transfers (busy retries %ld, errors %ld, first: rc %d %s)",
                   sql_tag(), sql_tag()[0] ? ": " : "", s.commits, n, s.busy_retries, s.errors, s.first_rc,
                   s.first_err);
}

/* Wait on w->cv until *flag is nonzero or the writer exited, <= ms; 1 if *flag. */
static int w_wait_flag(struct bank_writer *w, int *flag, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (!*flag && !w->exited)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT)
            break;
    return *flag;
}

void bank_writer_pause(struct bank_writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->pause_req = 1;
    pthread_cond_broadcast(&w->cv);
    int ok = w_wait_flag(w, &w->paused, LVT_WAIT_MS);
    pthread_mutex_unlock(&w->mu);
    cr_assert(ok, "the bank writer did not pause within %d s (stuck in a transaction?)", LVT_WAIT_MS / 1000);
}

void bank_writer_resume(struct bank_writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->pause_req = 0;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int bank_writer_mixed(struct bank_writer *w, int step)
{
    char err[256];
    pthread_mutex_lock(&w->mu);
    cr_assert(!w->mixed_req, "bank_writer_mixed: a step is already pending");
    w->mixed_step = step;
    w->mixed_done = 0;
    w->mixed_req = 1;
    pthread_cond_broadcast(&w->cv);
    int done = w_wait_flag(w, &w->mixed_done, LVT_WAIT_MS);
    int rc = w->mixed_rc;
    snprintf(err, sizeof err, "%s", w->mixed_err);
    if (!done)
        w->mixed_req = 0;
    pthread_mutex_unlock(&w->mu);
    cr_assert(done, "bank_writer_mixed(%d): the writer did not run it within %d s", step, LVT_WAIT_MS / 1000);
    cr_assert(rc == SQLITE_OK || rc == SQLITE_BUSY, "%s%sbank_writer_mixed(%d): rc %d: %s", sql_tag(),
              sql_tag()[0] ? ": " : "", step, rc, err);
    return rc;
}

struct bank_wstats bank_writer_stop(struct bank_writer *w)
{
    lvt_forget(writer_kill, w);
    writer_signal_stop(w);
    pthread_join(w->thread, NULL);
    struct bank_wstats s = w->st;
    writer_free(w);
    return s;
}

/* ------------------------------------------------------------ the readers */

/* One reader's counters, written by that reader only. */
struct rslot {
    atomic_long ok, violations, fatal, busy, other;
    atomic_llong tick_max;
    atomic_long tick_distinct;
    atomic_int nerr; /* published entries of err (release after the entry is written) */
    atomic_int has_violation;
    char first_violation[256];
    struct {
        int code;
        atomic_long count;
        char first[200];
    } err[BANK_MAX_CODES];
};

/* The shared memory of one bank_readers. */
struct rshm {
    char path[1024];
    struct bank_ropts o;
    atomic_int stop;
    struct rslot slot[BANK_MAX_READERS];
};

struct bank_readers {
    int fd; /* the memfd */
    struct rshm *shm;
    int n;
    pid_t pid[BANK_MAX_READERS];
};

/* ---- inside a reader process ---- */

static void r_error(struct rslot *s, int code, const char *msg)
{
    int cls = code & 0xff;
    if (cls == SQLITE_CORRUPT || cls == SQLITE_IOERR || cls == SQLITE_NOTADB || strstr(msg, "malformed"))
        atomic_fetch_add(&s->fatal, 1);
    else if (is_busy(code))
        atomic_fetch_add(&s->busy, 1);
    else
        atomic_fetch_add(&s->other, 1);
    int n = atomic_load(&s->nerr);
    for (int i = 0; i < n; i++)
        if (s->err[i].code == code) {
            atomic_fetch_add(&s->err[i].count, 1);
            return;
        }
    if (n < BANK_MAX_CODES) {
        s->err[n].code = code;
        snprintf(s->err[n].first, sizeof s->err[n].first, "%s", msg);
        atomic_store(&s->err[n].count, 1);
        atomic_store_explicit(&s->nerr, n + 1, memory_order_release);
    }
}

static void r_violation(struct rslot *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void r_violation(struct rslot *s, const char *fmt, ...)
{
    if (atomic_fetch_add(&s->violations, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->first_violation, sizeof s->first_violation, fmt, ap);
        va_end(ap);
        atomic_store_explicit(&s->has_violation, 1, memory_order_release);
    }
}

/* A not-yet-there database: waited for, not counted, before the table was first seen. */
static int r_not_ready(int code, const char *msg)
{
    return (code & 0xff) == SQLITE_CANTOPEN || strstr(msg, "no such table") != NULL;
}

enum { Q_SUMCNT, Q_TICK, Q_SUM, NQ };
static const char *const r_sql[NQ] = {
    "SELECT sum(bal), count(*) FROM acct",
    "SELECT n FROM tick",
    "SELECT sum(bal) FROM acct",
};

struct rconn {
    sqlite3 *db;
    sqlite3_stmt *q[NQ];
};

static void r_close(struct rconn *c)
{
    for (int i = 0; i < NQ; i++) {
        sqlite3_finalize(c->q[i]);
        c->q[i] = NULL;
    }
    sqlite3_close(c->db);
    c->db = NULL;
}

/* Step statement i for one row: SQLITE_ROW, or an extended error code
 * (SQLITE_DONE becomes SQLITE_EMPTY: the row is missing). */
static int r_row(struct rconn *c, int i)
{
    sqlite3_reset(c->q[i]);
    int rc = sqlite3_step(c->q[i]);
    if (rc == SQLITE_DONE)
        return SQLITE_EMPTY;
    if (rc != SQLITE_ROW)
        return sqlite3_extended_errcode(c->db);
    return rc;
}

static void reader_main(struct rshm *shm, int idx)
{
    struct rslot *s = &shm->slot[idx];
    const struct bank_ropts *o = &shm->o;
    const long long want_sum = (long long)BANK_BALANCE * o->naccounts;
    unsigned seed = (unsigned)getpid() ^ (unsigned)now_ms();
    int slow = idx < o->slow;
    int64_t t0 = now_ms();
    int seen = 0, waited_out = 0;
    long long last_tick = -1;
    long ntx = 0;
    struct rconn c = {0};
    char msg[200];

    while (!atomic_load(&shm->stop)) {
        int rc = SQLITE_OK;
        if (!c.db) {
            struct stat st;
            if (!seen && stat(shm->path, &st) != 0) {
                if (!waited_out && now_ms() - t0 > o->wait_ms) {
                    waited_out = 1;
                    snprintf(msg, sizeof msg, "%s did not appear within %d ms", shm->path, o->wait_ms);
                    r_error(s, -1, msg);
                }
                sleep_ms(20);
                continue;
            }
            rc = sqlite3_open_v2(shm->path, &c.db, SQLITE_OPEN_READWRITE, NULL);
            if (rc == SQLITE_OK) {
                sqlite3_extended_result_codes(c.db, 1);
                sqlite3_busy_timeout(c.db, 10000);
                for (int i = 0; i < NQ && rc == SQLITE_OK; i++)
                    rc = sqlite3_prepare_v2(c.db, r_sql[i], -1, &c.q[i], NULL);
            }
            if (rc != SQLITE_OK) {
                rc = c.db ? sqlite3_extended_errcode(c.db) : rc;
                snprintf(msg, sizeof msg, "%s", c.db ? sqlite3_errmsg(c.db) : sqlite3_errstr(rc));
                goto failed;
            }
        }

        long long sum1 = 0, cnt = 0, tick1 = 0, sum2 = 0, tick2 = 0;
        const char *what = "BEGIN";
        rc = sqlite3_exec(c.db, "BEGIN", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            goto sql_failed;
        what = r_sql[Q_SUMCNT];
        if ((rc = r_row(&c, Q_SUMCNT)) != SQLITE_ROW)
            goto sql_failed;
        sum1 = sqlite3_column_int64(c.q[Q_SUMCNT], 0);
        cnt = sqlite3_column_int64(c.q[Q_SUMCNT], 1);
        what = r_sql[Q_TICK];
        if ((rc = r_row(&c, Q_TICK)) != SQLITE_ROW)
            goto sql_failed;
        tick1 = sqlite3_column_int64(c.q[Q_TICK], 0);
        if (slow) {
            int span = o->sleep_max_ms - o->sleep_min_ms;
            int ms = o->sleep_min_ms + (span > 0 ? (int)(rand_r(&seed) % (unsigned)(span + 1)) : 0);
            sleep_ms(ms);
        }
        what = r_sql[Q_SUM];
        if ((rc = r_row(&c, Q_SUM)) != SQLITE_ROW)
            goto sql_failed;
        sum2 = sqlite3_column_int64(c.q[Q_SUM], 0);
        what = r_sql[Q_TICK];
        if ((rc = r_row(&c, Q_TICK)) != SQLITE_ROW)
            goto sql_failed;
        tick2 = sqlite3_column_int64(c.q[Q_TICK], 0);
        for (int i = 0; i < NQ; i++)
            sqlite3_reset(c.q[i]);
        what = "COMMIT";
        rc = sqlite3_exec(c.db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            goto sql_failed;

        seen = 1;
        int bad = 0;
        if (sum1 != want_sum || sum2 != sum1 || cnt != o->naccounts) {
            r_violation(s, "reader %d (pid %d): sums %lld then %lld, count %lld (want %lld, %d) at tick %lld", idx,
                        (int)getpid(), sum1, sum2, cnt, want_sum, o->naccounts, tick1);
            bad = 1;
        }
        if (tick2 != tick1) {
            r_violation(s, "reader %d (pid %d): tick %lld then %lld in one read transaction", idx, (int)getpid(),
                        tick1, tick2);
            bad = 1;
        }
        if (tick1 < last_tick) {
            r_violation(s, "reader %d (pid %d): tick went back from %lld to %lld", idx, (int)getpid(), last_tick,
                        tick1);
            bad = 1;
        }
        if (tick1 > last_tick) {
            atomic_fetch_add(&s->tick_distinct, 1);
            last_tick = tick1;
            if (tick1 > atomic_load(&s->tick_max))
                atomic_store(&s->tick_max, tick1);
        }
        if (!bad)
            atomic_fetch_add(&s->ok, 1);
        if (o->reopen_every > 0 && ++ntx % o->reopen_every == 0)
            r_close(&c);
        if (o->pause_us > 0)
            usleep((useconds_t)o->pause_us);
        continue;

    sql_failed:
        rc = (rc == SQLITE_EMPTY) ? SQLITE_EMPTY : sqlite3_extended_errcode(c.db);
        snprintf(msg, sizeof msg, "%s: %s", what, rc == SQLITE_EMPTY ? "no row" : sqlite3_errmsg(c.db));
        for (int i = 0; i < NQ; i++)
            if (c.q[i])
                sqlite3_reset(c.q[i]);
        if (!sqlite3_get_autocommit(c.db))
            sqlite3_exec(c.db, "ROLLBACK", NULL, NULL, NULL);
    failed:
        r_close(&c);
        if (!seen && now_ms() - t0 <= o->wait_ms && r_not_ready(rc, msg)) {
            sleep_ms(20);
            continue;
        }
        r_error(s, rc, msg);
        sleep_ms(10);
    }
    r_close(&c);
}

/* A re-executed reader: run and exit before main. */
__attribute__((constructor)) static void bank_reader_ctor(void)
{
    const char *e = getenv(READER_ENV);
    int fd = -1, idx = -1;
    if (!e || sscanf(e, "%d:%d", &fd, &idx) != 2)
        return;
    struct rshm *shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (shm == MAP_FAILED || idx < 0 || idx >= BANK_MAX_READERS)
        _exit(3);
    close(fd);
    reader_main(shm, idx);
    _exit(0);
}

/* ---- in the test process ---- */

static void readers_kill(void *arg)
{
    struct bank_readers *r = arg;
    for (int i = 0; i < r->n; i++)
        if (r->pid[i] > 0) {
            kill(r->pid[i], SIGKILL);
            waitpid(r->pid[i], NULL, 0);
        }
    munmap(r->shm, sizeof *r->shm);
    close(r->fd);
    free(r);
}

extern char **environ;

struct bank_readers *bank_readers_start_opt(const char *path, const struct bank_ropts *o)
{
    cr_assert(o->n >= 1 && o->n <= BANK_MAX_READERS, "bank readers: 1..%d readers, not %d", BANK_MAX_READERS, o->n);
    cr_assert(o->naccounts >= 2, "bank readers: the bank's size is required");
    cr_assert(strlen(path) < sizeof(((struct rshm *)0)->path), "bank readers: path too long");
    struct bank_readers *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    r->fd = memfd_create("lvt-bank", MFD_CLOEXEC);
    cr_assert(r->fd >= 0, "memfd_create: %s", strerror(errno));
    cr_assert(ftruncate(r->fd, sizeof *r->shm) == 0, "ftruncate: %s", strerror(errno));
    r->shm = mmap(NULL, sizeof *r->shm, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
    cr_assert(r->shm != MAP_FAILED, "mmap: %s", strerror(errno));
    lvt_defer(LVT_KILL, readers_kill, r);

    struct rshm *shm = r->shm;
    snprintf(shm->path, sizeof shm->path, "%s", path);
    shm->o = *o;
    if (shm->o.slow == 0)
        shm->o.slow = 1;
    else if (shm->o.slow < 0)
        shm->o.slow = 0;
    if (shm->o.sleep_min_ms <= 0 && shm->o.sleep_max_ms <= 0) {
        shm->o.sleep_min_ms = 2;
        shm->o.sleep_max_ms = 5;
    }
    if (shm->o.sleep_max_ms < shm->o.sleep_min_ms)
        shm->o.sleep_max_ms = shm->o.sleep_min_ms;
    if (shm->o.pause_us == 0)
        shm->o.pause_us = 500;
    if (shm->o.reopen_every <= 0)
        shm->o.reopen_every = 100;
    if (shm->o.wait_ms <= 0)
        shm->o.wait_ms = LVT_WAIT_MS;
    for (int i = 0; i < o->n; i++)
        atomic_store(&shm->slot[i].tick_max, -1);

    /* Everything the child needs before exec, made now (no malloc after fork). */
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = calloc(nenv + 2, sizeof *envp);
    cr_assert_not_null(envp);
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], READER_ENV "=", sizeof READER_ENV) != 0)
            envp[k++] = environ[i];
    char var[64];
    envp[k++] = var;
    envp[k] = NULL;
    char *const argv[] = {"lvt-bank-reader", NULL};
    pid_t parent = getpid();
    sigset_t none;
    sigemptyset(&none);

    fflush(NULL);
    for (int i = 0; i < o->n; i++) {
        snprintf(var, sizeof var, READER_ENV "=%d:%d", r->fd, i);
        pid_t p = fork();
        cr_assert(p >= 0, "fork: %s", strerror(errno));
        if (p == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(1);
            fcntl(r->fd, F_SETFD, 0); /* the memfd survives exec */
            sigprocmask(SIG_SETMASK, &none, NULL);
            execve("/proc/self/exe", argv, envp);
            _exit(127);
        }
        r->pid[i] = p;
        r->n = i + 1;
    }
    free(envp);
    return r;
}

struct bank_readers *bank_readers_start(const char *path, int n, int naccounts)
{
    struct bank_ropts o = {.n = n, .naccounts = naccounts};
    return bank_readers_start_opt(path, &o);
}

/* Sum the shared counters into res (hung and died left as they are). */
static void readers_total(struct bank_readers *r, struct bank_result *res)
{
    res->readers = r->n;
    res->tick_max = -1;
    res->ok_min = -1;
    res->tick_distinct_min = -1;
    for (int i = 0; i < r->n; i++) {
        struct rslot *s = &r->shm->slot[i];
        long ok = atomic_load(&s->ok), d = atomic_load(&s->tick_distinct);
        long long tm = atomic_load(&s->tick_max);
        res->ok += ok;
        res->violations += atomic_load(&s->violations);
        res->fatal += atomic_load(&s->fatal);
        res->busy += atomic_load(&s->busy);
        res->other += atomic_load(&s->other);
        if (res->ok_min < 0 || ok < res->ok_min)
            res->ok_min = ok;
        if (res->tick_distinct_min < 0 || d < res->tick_distinct_min)
            res->tick_distinct_min = d;
        if (d > res->tick_distinct_max)
            res->tick_distinct_max = d;
        if (tm > res->tick_max)
            res->tick_max = tm;
        if (!res->first_violation[0] && atomic_load_explicit(&s->has_violation, memory_order_acquire))
            snprintf(res->first_violation, sizeof res->first_violation, "%s", s->first_violation);
        int ne = atomic_load_explicit(&s->nerr, memory_order_acquire);
        for (int e = 0; e < ne; e++) {
            int j;
            for (j = 0; j < res->nerr; j++)
                if (res->err[j].code == s->err[e].code)
                    break;
            if (j == res->nerr) {
                if (res->nerr == BANK_MAX_CODES)
                    continue;
                res->nerr++;
                res->err[j].code = s->err[e].code;
                snprintf(res->err[j].first, sizeof res->err[j].first, "%s", s->err[e].first);
            }
            res->err[j].count += atomic_load(&s->err[e].count);
        }
    }
    if (res->ok_min < 0)
        res->ok_min = 0;
    if (res->tick_distinct_min < 0)
        res->tick_distinct_min = 0;
}

struct bank_result bank_readers_peek(struct bank_readers *r)
{
    struct bank_result res;
    memset(&res, 0, sizeof res);
    readers_total(r, &res);
    return res;
}

int bank_readers_wait(struct bank_readers *r, long min_ok, long min_distinct, int ms)
{
    int64_t end = now_ms() + ms;
    for (;;) {
        int all = 1;
        for (int i = 0; i < r->n && all; i++)
            all = atomic_load(&r->shm->slot[i].ok) >= min_ok &&
                  atomic_load(&r->shm->slot[i].tick_distinct) >= min_distinct;
        if (all)
            return 1;
        if (now_ms() >= end)
            return 0;
        sleep_ms(20);
    }
}

int bank_readers_wait_tick(struct bank_readers *r, long long tick, int ms)
{
    int64_t end = now_ms() + ms;
    for (;;) {
        int all = 1;
        for (int i = 0; i < r->n && all; i++)
            all = atomic_load(&r->shm->slot[i].tick_max) >= tick;
        if (all)
            return 1;
        if (now_ms() >= end)
            return 0;
        sleep_ms(20);
    }
}

struct bank_result bank_readers_stop(struct bank_readers *r)
{
    struct bank_result res;
    memset(&res, 0, sizeof res);
    lvt_forget(readers_kill, r);
    atomic_store(&r->shm->stop, 1);
    int64_t end = now_ms() + STOP_MS;
    for (int i = 0; i < r->n; i++) {
        int64_t left = end - now_ms();
        int st = wait_exit(r->pid[i], left > 0 ? (int)left : 0);
        if (st == -1) {
            kill(r->pid[i], SIGKILL);
            waitpid(r->pid[i], NULL, 0);
            res.hung++;
        } else if (st == -2 || status_code(st) != 0) {
            res.died++;
        }
        r->pid[i] = 0;
    }
    readers_total(r, &res);
    readers_kill(r); /* nothing left to kill: unmaps and frees */
    return res;
}

char *bank_result_format(const struct bank_result *res, char *buf, size_t len)
{
    size_t o = 0;
#define PUT(...)                                                                                                    \
    do {                                                                                                            \
        if (o < len)                                                                                                \
            o += (size_t)snprintf(buf + o, len - o, __VA_ARGS__);                                                   \
    } while (0)
    buf[0] = 0;
    PUT("%d readers: %ld ok (fewest per reader %ld), %ld violations, %ld fatal, %ld busy, %ld other errors",
        res->readers, res->ok, res->ok_min, res->violations, res->fatal, res->busy, res->other);
    if (res->hung || res->died)
        PUT(", %d hung, %d died", res->hung, res->died);
    PUT("; tick max %lld, distinct ticks per reader %ld..%ld", res->tick_max, res->tick_distinct_min,
        res->tick_distinct_max);
    for (int i = 0; i < res->nerr; i++)
        PUT("; rc %d (%s) x%ld, first: %s", res->err[i].code,
            res->err[i].code < 0 ? "timeout" : sqlite3_errstr(res->err[i].code), res->err[i].count, res->err[i].first);
    if (res->first_violation[0])
        PUT("; first violation: %s", res->first_violation);
#undef PUT
    return buf;
}

void bank_result_print(FILE *f, const char *what, const struct bank_result *res)
{
    char buf[4096];
    fprintf(f, "%s: %s\n", what, bank_result_format(res, buf, sizeof buf));
}

int bank_result_clean(const struct bank_result *res)
{
    return res->violations == 0 && res->fatal == 0 && res->busy == 0 && res->other == 0 && res->hung == 0 &&
           res->died == 0;
}

void bank_result_assert(const struct bank_result *res, const char *what, long min_ok, long min_distinct)
{
    char buf[4096];
    bank_result_format(res, buf, sizeof buf);
    cr_assert(bank_result_clean(res), "%s%s%s: readers not clean: %s", sql_tag(), sql_tag()[0] ? ": " : "", what, buf);
    cr_assert(res->ok_min >= min_ok, "%s%s%s: a reader made fewer than %ld good transactions: %s", sql_tag(),
              sql_tag()[0] ? ": " : "", what, min_ok, buf);
    cr_assert(res->tick_distinct_min >= min_distinct, "%s%s%s: a reader saw fewer than %ld tick values: %s", sql_tag(),
              sql_tag()[0] ? ": " : "", what, min_distinct, buf);
}
