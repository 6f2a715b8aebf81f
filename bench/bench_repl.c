/*
 * bench_repl.c -- `make bench`, replication part: a primary and two
 * replicas on loopback, each its own litevault daemon, in one run.
 *
 * Usage: LITEVAULT=/path/to/litevault bench_repl
 *   BENCH_QUICK=1   short durations (development)
 *   BENCH_DIR=DIR   parent of the temporary directory (default $TMPDIR or /tmp)
 *   BENCH_KEEP=1    keep the temporary directory (daemon logs)
 *   BENCH_SECS=N    seconds of the lag and read parts (default 10; quick 3)
 *   BENCH_CATCHUP=N transactions of the catch-up part (default 100000; quick 20000)
 *
 * Parts (every figure from this run):
 *  R1 lag: a writer on the primary commits 1-row INSERTs (WAL,
 *     synchronous=NORMAL) at 1,000 tx/s on a schedule; a poller process on
 *     replica 1 loops `SELECT max(id)` on the replica's mount and stamps the
 *     first time it sees each id.  Lag = first seen on the replica - the
 *     moment COMMIT returned on the primary (one clock, CLOCK_MONOTONIC,
 *     both processes on this machine): p50, p99, max.  Goal p99 <= 2 ms.
 *  R2 reads: point SELECTs by random rowid on a 10k-row table, on replica
 *     1's mount while the primary updates random rows at 100 tx/s, against
 *     the same SELECTs on a native copy of the file, alternating rounds.
 *     Goal >= 0.9.
 *  R3 catch-up: replica 2 is stopped, the primary commits N transactions,
 *     replica 2 starts again: records per second from its start (and from
 *     the moment it has the first of them) until it holds the primary's
 *     last TXID.  Goal >= 50,000/s.
 *  R4 the primary's write ratios (mount/native, 1-row INSERT transactions
 *     in WAL/NORMAL, WAL/FULL, DELETE/FULL) with both replicas connected
 *     and with both stopped, alternating twice.  Goal: a drop <= 0.02.
 *
 * Exit status: 0 when the bench ran (missed goals print MISS), 1 on error.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NNODE 3 /* node 0: primary; 1, 2: replicas */

/* One daemon of the bench. */
struct node {
    char dir[PATH_MAX];   /* BASE/nI */
    char mnt[PATH_MAX];   /* BASE/nI/mnt */
    char cfg[PATH_MAX];   /* BASE/nI/config.yml */
    char log[PATH_MAX];   /* BASE/nI/daemon.log */
    int port;             /* HTTP port */
    pid_t pid;            /* daemon pid, 0 when stopped */
};

static struct {
    const char *litevault;  /* $LITEVAULT */
    char base[PATH_MAX];    /* temporary directory */
    int quick, keep;        /* BENCH_QUICK, BENCH_KEEP */
    double secs;            /* seconds of R1 and R2 */
    long catchup;           /* transactions of R3 */
    struct node n[NNODE];   /* the daemons */
} g;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    nanosleep(&ts, NULL);
}

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_repl: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int port = -1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int is_mounted(const char *dir)
{
    char line[PATH_MAX * 2];
    int found = 0;
    FILE *f = fopen("/proc/self/mounts", "re");
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof line, f)) {
        char *sp = strchr(line, ' ');
        if (sp && strncmp(sp + 1, dir, strlen(dir)) == 0 && sp[1 + strlen(dir)] == ' ')
            found = 1;
    }
    fclose(f);
    return found;
}

static void show_log(const struct node *nd)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "tail -n 30 %s >&2", nd->log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

/* ---------------------------------------------------------------- daemons */

static int node_config(int i)
{
    struct node *nd = &g.n[i];
    FILE *f = fopen(nd->cfg, "we");
    if (!f)
        return -1;
    fprintf(f, "fuse:\n  dir: %s\ndata:\n  dir: %s/data\nhttp:\n  addr: 127.0.0.1:%d\n"
               "log:\n  level: warn\n  format: text\n", nd->mnt, nd->dir, nd->port);
    if (i == 0)
        fprintf(f, "lease:\n  type: static\n  candidate: true\n  advertise-url: http://127.0.0.1:%d\n", nd->port);
    else
        fprintf(f, "lease:\n  type: static\n  candidate: false\n  primary-url: http://127.0.0.1:%d\n",
                g.n[0].port);
    return fclose(f) == 0 ? 0 : -1;
}

static int node_start(int i)
{
    struct node *nd = &g.n[i];
    double t0 = now_s();
    int status;
    nd->pid = fork();
    if (nd->pid < 0)
        return -1;
    if (nd->pid == 0) {
        int fd = open(nd->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(g.litevault, "litevault", "mount", "-c", nd->cfg, (char *)NULL);
        _exit(127);
    }
    while (!is_mounted(nd->mnt)) {
        if (waitpid(nd->pid, &status, WNOHANG) == nd->pid || now_s() - t0 > 30) {
            progress("node %d did not mount; its log:", i);
            show_log(nd);
            nd->pid = 0;
            return -1;
        }
        usleep(10000);
    }
    return 0;
}

static int node_stop(int i)
{
    struct node *nd = &g.n[i];
    int status = 0;
    if (nd->pid <= 0)
        return 0;
    kill(nd->pid, SIGTERM);
    double t0 = now_s();
    while (waitpid(nd->pid, &status, WNOHANG) != nd->pid) {
        if (now_s() - t0 > 30) {
            kill(nd->pid, SIGKILL);
            waitpid(nd->pid, &status, 0);
            break;
        }
        usleep(10000);
    }
    nd->pid = 0;
    if (is_mounted(nd->mnt))
        umount2(nd->mnt, MNT_DETACH);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- SQL */

static sqlite3 *db_open(const char *path, const char *journal, const char *sync)
{
    sqlite3 *db = NULL;
    char sql[128];
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        progress("open %s: %s", path, db ? sqlite3_errmsg(db) : "?");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 10000);
    if (journal) {
        snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s; PRAGMA synchronous=%s", journal, sync);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            progress("%s: %s", path, sqlite3_errmsg(db));
            sqlite3_close(db);
            return NULL;
        }
    }
    return db;
}

static int exec(sqlite3 *db, const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    progress("%s: %s", sql, sqlite3_errmsg(db));
    return -1;
}

static long long one_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    long long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Wait until path on a replica answers sql with >= want (or timeout_s). */
static int wait_value(const char *path, const char *sql, long long want, double timeout_s)
{
    double t0 = now_s();
    while (now_s() - t0 < timeout_s) {
        if (access(path, F_OK) == 0) {
            sqlite3 *db = NULL;
            if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
                sqlite3_busy_timeout(db, 1000);
                long long v = one_int(db, sql);
                sqlite3_close(db);
                if (v >= want)
                    return 0;
            } else {
                sqlite3_close(db);
            }
        }
        usleep(2000);
    }
    return -1;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---------------------------------------------------------------- R1 lag */

struct lag_result {
    double p50_ms, p99_ms, max_ms;  /* lag percentiles */
    long n;                         /* samples */
    double rate;                    /* achieved tx/s */
};

static int part_lag(struct lag_result *r)
{
    char p[PATH_MAX], q[PATH_MAX];
    long n = (long)(g.secs * 1000);
    snprintf(p, sizeof p, "%s/lag.db", g.n[0].mnt);
    snprintf(q, sizeof q, "%s/lag.db", g.n[1].mnt);
    sqlite3 *w = db_open(p, "wal", "NORMAL");
    if (!w || exec(w, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER); INSERT INTO t VALUES(0, 0)") != 0)
        return -1;
    if (wait_value(q, "SELECT max(id) FROM t", 0, 30) != 0) {
        progress("R1: lag.db did not reach replica 1 within 30 s");
        show_log(&g.n[1]);
        return -1;
    }
    /* shared: commit[i], seen[i] (seconds, CLOCK_MONOTONIC), and a stop flag */
    size_t sz = sizeof(double) * (size_t)(2 * n + 2) + 64;
    double *sh = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return -1;
    memset(sh, 0, sz);
    double *commit = sh, *seen = sh + n + 1;
    volatile int *stop = (volatile int *)(sh + 2 * n + 2);
    pid_t pid = fork();
    if (pid == 0) {
        sqlite3 *rd = db_open(q, NULL, NULL);
        sqlite3_stmt *st;
        long last = 0;
        if (!rd || sqlite3_prepare_v2(rd, "SELECT max(id) FROM t", -1, &st, NULL) != SQLITE_OK)
            _exit(1);
        while (!*stop && last < n) {
            if (sqlite3_step(st) == SQLITE_ROW) {
                long m = (long)sqlite3_column_int64(st, 0);
                double t = now_s();
                for (long i = last + 1; i <= m && i <= n; i++)
                    seen[i] = t;
                if (m > last)
                    last = m;
            }
            sqlite3_reset(st);
        }
        sqlite3_finalize(st);
        sqlite3_close(rd);
        _exit(0);
    }
    sqlite3_stmt *ins;
    if (sqlite3_prepare_v2(w, "INSERT INTO t VALUES(?, ?)", -1, &ins, NULL) != SQLITE_OK)
        return -1;
    double t0 = now_s();
    for (long i = 1; i <= n; i++) {
        double due = t0 + (double)i / 1000.0, now = now_s();
        if (due > now)
            sleep_s(due - now);
        sqlite3_bind_int64(ins, 1, i);
        sqlite3_bind_int64(ins, 2, i);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            progress("R1 insert: %s", sqlite3_errmsg(w));
            return -1;
        }
        sqlite3_reset(ins);
        commit[i] = now_s();
    }
    r->rate = (double)n / (now_s() - t0);
    sqlite3_finalize(ins);
    double t1 = now_s();
    while (seen[n] == 0 && now_s() - t1 < 10)
        usleep(1000);
    *stop = 1;
    waitpid(pid, NULL, 0);
    double *lag = malloc(sizeof(double) * (size_t)n);
    long k = 0;
    for (long i = 1; i <= n; i++)
        if (seen[i] > 0)
            lag[k++] = (seen[i] - commit[i]) * 1000.0;
    if (k < n)
        progress("R1: %ld of %ld transactions never seen on replica 1", n - k, n);
    qsort(lag, (size_t)k, sizeof *lag, cmp_dbl);
    r->n = k;
    r->p50_ms = k ? lag[k / 2] : NAN;
    r->p99_ms = k ? lag[(size_t)((double)k * 0.99)] : NAN;
    r->max_ms = k ? lag[k - 1] : NAN;
    free(lag);
    munmap(sh, sz);
    sqlite3_close(w);
    return k == n ? 0 : -1;
}

/* ---------------------------------------------------------------- R2 reads */

#define READ_ROWS 10000

struct read_result {
    double native_ops, replica_ops; /* SELECTs per second */
    double ratio;
};

static double select_loop(sqlite3 *db, double secs, uint64_t *seed)
{
    sqlite3_stmt *st;
    long ops = 0;
    if (sqlite3_prepare_v2(db, "SELECT v FROM r WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
        return -1;
    double t0 = now_s(), t;
    while ((t = now_s()) - t0 < secs) {
        for (int i = 0; i < 64; i++) {
            *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
            sqlite3_bind_int64(st, 1, (long long)((*seed >> 33) % READ_ROWS) + 1);
            if (sqlite3_step(st) != SQLITE_ROW) {
                sqlite3_finalize(st);
                return -1;
            }
            sqlite3_reset(st);
            ops++;
        }
    }
    sqlite3_finalize(st);
    return (double)ops / (t - t0);
}

static int part_reads(struct read_result *r)
{
    char p[PATH_MAX], q[PATH_MAX], nat[PATH_MAX], cmd[PATH_MAX * 3];
    snprintf(p, sizeof p, "%s/reads.db", g.n[0].mnt);
    snprintf(q, sizeof q, "%s/reads.db", g.n[1].mnt);
    snprintf(nat, sizeof nat, "%s/native-reads.db", g.base);
    sqlite3 *w = db_open(p, "wal", "NORMAL");
    if (!w || exec(w, "CREATE TABLE r(id INTEGER PRIMARY KEY, v BLOB);"
                      "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 10000) "
                      "INSERT INTO r SELECT i, randomblob(100) FROM c; PRAGMA wal_checkpoint(TRUNCATE)") != 0)
        return -1;
    if (wait_value(q, "SELECT count(*) FROM r", READ_ROWS, 30) != 0) {
        progress("R2: reads.db did not reach replica 1");
        return -1;
    }
    snprintf(cmd, sizeof cmd, "sqlite3 '%s' '.backup %s'", p, nat);
    if (system(cmd) != 0)
        return -1;
    sqlite3 *nd = db_open(nat, "wal", "NORMAL"), *rd = db_open(q, NULL, NULL);
    if (!nd || !rd)
        return -1;
    /* the primary's updates at 100 tx/s, in a child */
    pid_t pid = fork();
    if (pid == 0) {
        sqlite3 *u = db_open(p, NULL, NULL);
        uint64_t s = 7;
        double t0 = now_s();
        for (long i = 1; u && now_s() - t0 < 2 * g.secs + 5; i++) {
            double due = t0 + (double)i / 100.0, now = now_s();
            if (due > now)
                sleep_s(due - now);
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            char sql[96];
            snprintf(sql, sizeof sql, "UPDATE r SET v = randomblob(100) WHERE id = %llu",
                     (unsigned long long)((s >> 33) % READ_ROWS) + 1);
            sqlite3_exec(u, sql, NULL, NULL, NULL);
        }
        _exit(0);
    }
    uint64_t s1 = 1, s2 = 1;
    double nops = 0, rops = 0;
    select_loop(nd, 0.5, &s1); /* warm-up */
    select_loop(rd, 0.5, &s2);
    int rounds = 6;
    for (int i = 0; i < rounds; i++) {
        nops += select_loop(nd, g.secs / rounds, &s1);
        rops += select_loop(rd, g.secs / rounds, &s2);
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    r->native_ops = nops / rounds;
    r->replica_ops = rops / rounds;
    r->ratio = r->replica_ops / r->native_ops;
    sqlite3_close(nd);
    sqlite3_close(rd);
    sqlite3_close(w);
    return 0;
}

/* ---------------------------------------------------------------- R3 catch-up */

struct catchup_result {
    long n;              /* transactions behind */
    double from_start_s; /* replica start -> caught up */
    double from_first_s; /* first record seen -> caught up */
    double rate_start, rate_first; /* records per second */
};

static int part_catchup(struct catchup_result *r)
{
    char p[PATH_MAX], q[PATH_MAX];
    snprintf(p, sizeof p, "%s/catchup.db", g.n[0].mnt);
    snprintf(q, sizeof q, "%s/catchup.db", g.n[2].mnt);
    sqlite3 *w = db_open(p, "wal", "OFF");
    if (!w || exec(w, "CREATE TABLE c(id INTEGER PRIMARY KEY, v INTEGER); INSERT INTO c VALUES(0, 0)") != 0)
        return -1;
    if (wait_value(q, "SELECT count(*) FROM c", 1, 30) != 0) {
        progress("R3: catchup.db did not reach replica 2");
        return -1;
    }
    if (node_stop(2) != 0)
        progress("R3: replica 2 did not stop cleanly");
    sqlite3_stmt *ins;
    if (sqlite3_prepare_v2(w, "INSERT INTO c VALUES(?, ?)", -1, &ins, NULL) != SQLITE_OK)
        return -1;
    progress("R3: committing %ld transactions with replica 2 down", g.catchup);
    for (long i = 1; i <= g.catchup; i++) {
        sqlite3_bind_int64(ins, 1, i);
        sqlite3_bind_int64(ins, 2, i);
        if (sqlite3_step(ins) != SQLITE_DONE)
            return -1;
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    double t0 = now_s();
    if (node_start(2) != 0)
        return -1;
    double first = 0, t;
    sqlite3 *rd = NULL;
    for (;;) {
        t = now_s();
        if (t - t0 > 300) {
            progress("R3: replica 2 did not catch up within 300 s");
            return -1;
        }
        if (!rd && sqlite3_open_v2(q, &rd, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
            sqlite3_close(rd);
            rd = NULL;
        }
        long long m = rd ? one_int(rd, "SELECT max(id) FROM c") : -1;
        if (m > 0 && first == 0)
            first = t;
        if (m >= g.catchup)
            break;
        usleep(1000);
    }
    sqlite3_close(rd);
    r->n = g.catchup;
    r->from_start_s = t - t0;
    r->from_first_s = first ? t - first : t - t0;
    r->rate_start = (double)g.catchup / r->from_start_s;
    r->rate_first = (double)g.catchup / (r->from_first_s > 0 ? r->from_first_s : 1e-6);
    sqlite3_close(w);
    return 0;
}

/* ---------------------------------------------------------------- R4 primary writes */

struct wcase {
    const char *label, *journal, *sync;
};
static const struct wcase g_wcases[] = {
    {"1-row INSERT tx, WAL, sync=NORMAL", "wal", "NORMAL"},
    {"1-row INSERT tx, WAL, sync=FULL", "wal", "FULL"},
    {"1-row INSERT tx, DELETE, sync=FULL", "delete", "FULL"},
};
#define NWCASE (sizeof g_wcases / sizeof g_wcases[0])

static double insert_rate(const char *path, const struct wcase *c, double secs)
{
    sqlite3 *db = db_open(path, c->journal, c->sync);
    sqlite3_stmt *st;
    long ops = 0;
    if (!db || exec(db, "CREATE TABLE IF NOT EXISTS w(id INTEGER PRIMARY KEY, v BLOB)") != 0 ||
        sqlite3_prepare_v2(db, "INSERT INTO w(v) VALUES(randomblob(100))", -1, &st, NULL) != SQLITE_OK)
        return -1;
    double t0 = now_s(), t;
    while ((t = now_s()) - t0 < secs) {
        if (exec(db, "BEGIN") != 0 || sqlite3_step(st) != SQLITE_DONE || exec(db, "COMMIT") != 0)
            return -1;
        sqlite3_reset(st);
        ops++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return (double)ops / (t - t0);
}

/* ratio[with replicas 0/1][case], averaged over two alternations. */
static int part_writes(double ratio[2][NWCASE])
{
    double secs = g.quick ? 1.0 : 3.0;
    memset(ratio, 0, sizeof(double) * 2 * NWCASE);
    for (int rep = 0; rep < 2; rep++)
        for (int with = 1; with >= 0; with--) {
            for (int k = 1; k < NNODE; k++)
                if (with && g.n[k].pid == 0 && node_start(k) != 0)
                    return -1;
                else if (!with && g.n[k].pid > 0)
                    node_stop(k);
            for (size_t c = 0; c < NWCASE; c++) {
                char nat[PATH_MAX], mnt[PATH_MAX];
                snprintf(nat, sizeof nat, "%s/native-w%zu-%d-%d.db", g.base, c, rep, with);
                snprintf(mnt, sizeof mnt, "%s/w%zu-%d-%d.db", g.n[0].mnt, c, rep, with);
                double a = 0, b = 0;
                for (int h = 0; h < 2; h++) { /* alternate native and mount */
                    a += insert_rate(nat, &g_wcases[c], secs / 2);
                    b += insert_rate(mnt, &g_wcases[c], secs / 2);
                }
                if (a <= 0 || b <= 0)
                    return -1;
                ratio[with][c] += b / a / 2;
            }
        }
    for (int k = 1; k < NNODE; k++)
        if (g.n[k].pid == 0)
            node_start(k);
    return 0;
}

/* ---------------------------------------------------------------- main */

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    struct lag_result lag = {0};
    struct read_result rd = {0};
    struct catchup_result cu = {0};
    double wr[2][NWCASE];
    int rc = 0, ok_lag, ok_rd, ok_cu, ok_wr;
    const char *tmp = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    g.litevault = getenv("LITEVAULT");
    if (!g.litevault) {
        fprintf(stderr, "bench_repl: set LITEVAULT to the litevault binary\n");
        return 1;
    }
    g.quick = getenv("BENCH_QUICK") != NULL;
    g.keep = getenv("BENCH_KEEP") != NULL;
    g.secs = getenv("BENCH_SECS") ? atof(getenv("BENCH_SECS")) : g.quick ? 3 : 10;
    g.catchup = getenv("BENCH_CATCHUP") ? atol(getenv("BENCH_CATCHUP")) : g.quick ? 20000 : 100000;
    snprintf(g.base, sizeof g.base, "%s/lvbench-repl.XXXXXX", tmp);
    if (!mkdtemp(g.base)) {
        perror("mkdtemp");
        return 1;
    }
    for (int i = 0; i < NNODE; i++) {
        struct node *nd = &g.n[i];
        snprintf(nd->dir, sizeof nd->dir, "%s/n%d", g.base, i);
        snprintf(nd->mnt, sizeof nd->mnt, "%s/mnt", nd->dir);
        snprintf(nd->cfg, sizeof nd->cfg, "%s/config.yml", nd->dir);
        snprintf(nd->log, sizeof nd->log, "%s/daemon.log", nd->dir);
        nd->port = free_port();
        if (mkdir(nd->dir, 0755) != 0 || mkdir(nd->mnt, 0755) != 0 || node_config(i) != 0)
            return 1;
    }
    progress("starting a primary and two replicas under %s", g.base);
    for (int i = 0; i < NNODE && rc == 0; i++)
        rc = node_start(i);
    if (rc == 0) {
        progress("R1: lag at 1,000 tx/s for %.0f s", g.secs);
        rc = part_lag(&lag);
    }
    if (rc == 0) {
        progress("R2: point reads on a replica applying 100 tx/s");
        rc = part_reads(&rd);
    }
    if (rc == 0)
        rc = part_catchup(&cu);
    if (rc == 0) {
        progress("R4: the primary's writes with replicas connected and stopped");
        rc = part_writes(wr);
    }
    for (int i = NNODE - 1; i >= 0; i--)
        if (node_stop(i) != 0 && rc == 0)
            progress("node %d did not stop cleanly", i);
    if (rc != 0) {
        for (int i = 0; i < NNODE; i++) {
            fprintf(stderr, "--- node %d log:\n", i);
            show_log(&g.n[i]);
        }
        fprintf(stderr, "bench_repl: failed; kept %s\n", g.base);
        return 1;
    }
    ok_lag = lag.p99_ms <= 2.0;
    ok_rd = rd.ratio >= 0.9;
    ok_cu = cu.rate_start >= 50000;
    ok_wr = 1;
    for (size_t c = 0; c < NWCASE; c++)
        if (wr[0][c] - wr[1][c] > 0.02)
            ok_wr = 0;
    printf("\nReplication (primary + 2 replicas on loopback, one run)%s\n\n",
           ok_lag && ok_rd && ok_cu && ok_wr ? "" : ": some goals MISSED");
    printf("| part | measured | goal | |\n|---|---|---|---|\n");
    printf("| R1 lag commit->visible on replica, %.0f tx/s, %ld tx | p50 %.3f ms, p99 %.3f ms, max %.3f ms | "
           "p99 <= 2 ms | %s |\n", lag.rate, lag.n, lag.p50_ms, lag.p99_ms, lag.max_ms, ok_lag ? "ok" : "MISS");
    printf("| R2 point SELECTs on replica / native (primary 100 tx/s) | %.0f / %.0f = %.2f | >= 0.90 | %s |\n",
           rd.replica_ops, rd.native_ops, rd.ratio, ok_rd ? "ok" : "MISS");
    printf("| R3 catch-up of %ld tx | %.0f rec/s from start (%.2f s), %.0f rec/s from first record | "
           ">= 50,000/s | %s |\n", cu.n, cu.rate_start, cu.from_start_s, cu.rate_first, ok_cu ? "ok" : "MISS");
    for (size_t c = 0; c < NWCASE; c++)
        printf("| R4 %s: mount/native, no replicas / 2 replicas | %.3f / %.3f (drop %+.3f) | drop <= 0.02 | %s |\n",
               g_wcases[c].label, wr[0][c], wr[1][c], wr[0][c] - wr[1][c],
               wr[0][c] - wr[1][c] <= 0.02 ? "ok" : "MISS");
    if (!g.keep)
        nftw(g.base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
