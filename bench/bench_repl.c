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
 *   BENCH_ONLY=1,5  only these parts (R1..R7; R2-R4, R6 need nothing from R1)
 *   BENCH_POLL_US=N R1's poller's pause between queries (default 100; 0 spins)
 *   BENCH_TXN_MIB=N transaction size of R5's load (default 32)
 *   BENCH_FAILOVERS=N  R7's kills (default 10; quick 3)
 *   BENCH_TTL=N     R7's lease.ttl in seconds (default 2)
 *
 * Parts (every figure from this run):
 *  R1 lag: a writer on the primary commits 1-row INSERTs (WAL,
 *     synchronous=NORMAL) at 1,000 tx/s on a schedule; a poller process on
 *     replica 1 loops `SELECT max(id)` on the replica's mount, pausing
 *     BENCH_POLL_US (100 us) between queries, and stamps the first time it
 *     sees each id.  The pause keeps the poller from taking one of the
 *     machine's cores for itself (spinning, on this 2-vCPU VM, it starves
 *     the two daemons the lag goes through and p99 doubles); it can only
 *     overstate the lag, by up to one pause plus the sleep's slack.  Lag = first seen on the replica - the
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
 *     Here the replicas run on the primary's own two vCPUs, so their
 *     applying competes with the writer.  R4s measures the primary's own
 *     share, as with replicas on other machines: the replicas stopped, two
 *     stream sinks (child processes that POST /v1/stream as a replica with
 *     no database and discard what comes) take their place, in the same
 *     alternation.
 *  R5 seed: once nodes 0-2 are stopped, a fresh primary (node 3) with a
 *     file:// archive (BASE/archive, sync-interval 200ms, compaction off so
 *     the lineage holds each record once) loads a ~1 GiB database (64 MiB
 *     quick) like bench.c's RSS part and waits until the archive confirmed
 *     its last TXID.  Baseline, "download + decompress", timed in-process:
 *     read every object a seed needs (current.json, manifest.json, the
 *     newest snapshot if any, every segment after it) into memory, then
 *     decompress every record payload of those objects with libzstd
 *     streaming, written to one output file (BASE/baseline.out), fsynced once; no checksum.
 *     Seed: `litevault restore --seed -c` for a new replica node (node 4)
 *     into an empty data.dir, timed as a child process, the primary still
 *     running.  The page cache cannot be dropped fairly, so both are run
 *     twice, alternating (baseline, seed, baseline, seed), and the second
 *     run of each is reported: both read a warm archive.  Goal: seed /
 *     baseline <= 1.2.
 *  R6 synchronous replication: 1-row INSERT transactions (WAL, NORMAL and
 *     FULL) on the primary's mount with replication.sync-replicas: 1 and
 *     with 0 (the primary restarted with each configuration, both replicas
 *     connected), alternating twice: tx/s with / without.  Goal >= 0.5.
 *  R7 fail-over: three nodes with an etcd lease (lease.ttl BENCH_TTL, 2 s)
 *     and a single-member etcd (Debian's etcd-server; skipped, saying so,
 *     without it).  BENCH_FAILOVERS times: kill -9 the primary, then time
 *     until a write is accepted on one of the two others (polled every
 *     10 ms); the killed node is started again and rejoins as a replica
 *     before the next kill.  p50 and max.  Goal: ttl + 1 s.
 *
 * Exit status: 0 when the bench ran (missed goals print MISS), 1 on error.
 */
#include <curl/curl.h>
#include <dirent.h>
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
#include <zstd.h>

#define NNODE 3 /* node 0: primary; 1, 2: replicas */
#define SEED_PRIMARY 3 /* R5: a fresh primary with an archive */
#define SEED_NODE 4    /* R5: the node seeded from that archive (never started) */
#define FO_FIRST 5     /* R7: nodes 5, 6, 7 with an etcd lease */
#define FO_N 3
#define NALL 8
#define MiB (1024.0 * 1024.0)

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
    long poll_us;           /* BENCH_POLL_US: R1's poller's pause between queries */
    long long sink_records[2]; /* R4s: records each stream sink was sent */
    long catchup;           /* transactions of R3 */
    const char *only;       /* BENCH_ONLY, or NULL: every part */
    char archive[PATH_MAX]; /* R5: BASE/archive */
    int sync_replicas;      /* R6: node 0's replication.sync-replicas (node_config) */
    int etcd_port;          /* R7: etcd's client port */
    pid_t etcd_pid;         /* R7: etcd, 0 when not running */
    int ttl_s;              /* R7: lease.ttl */
    int failovers;          /* R7: kills */
    struct node n[NALL];    /* the daemons */
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

/* Node i's config: 0 and SEED_PRIMARY are primaries, the others replicas
 * (SEED_NODE of SEED_PRIMARY, 1 and 2 of 0); the R5 nodes get the archive. */
static int node_config(int i)
{
    struct node *nd = &g.n[i];
    FILE *f = fopen(nd->cfg, "we");
    if (!f)
        return -1;
    fprintf(f, "fuse:\n  dir: %s\ndata:\n  dir: %s/data\nhttp:\n  addr: 127.0.0.1:%d\n"
               "log:\n  level: warn\n  format: text\n", nd->mnt, nd->dir, nd->port);
    if (i >= FO_FIRST)
        fprintf(f, "lease:\n  type: etcd\n  endpoints: [http://127.0.0.1:%d]\n  ttl: %ds\n", g.etcd_port, g.ttl_s);
    else if (i == 0 || i == SEED_PRIMARY)
        fprintf(f, "lease:\n  type: static\n  candidate: true\n  advertise-url: http://127.0.0.1:%d\n", nd->port);
    else
        fprintf(f, "lease:\n  type: static\n  candidate: false\n  primary-url: http://127.0.0.1:%d\n",
                g.n[i == SEED_NODE ? SEED_PRIMARY : 0].port);
    if (i == SEED_PRIMARY || i == SEED_NODE)
        fprintf(f, "archive:\n  - url: file://%s\n    sync-interval: 200ms\n    compaction: []\n", g.archive);
    if (i == 0 && g.sync_replicas)
        fprintf(f, "replication:\n  sync-replicas: %d\n  sync-timeout: 10s\n", g.sync_replicas);
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
            if (g.poll_us > 0)
                usleep((useconds_t)g.poll_us);
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

static size_t sink_discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

static char *http_get(int port, const char *path);

/* A stream sink: a child process following the primary's stream as a
 * replica with node ID node (hex digits), discarding every byte, until killed.  It reports the
 * primary's own positions (from GET /status), so only what is committed
 * from then on flows, as to a replica that is caught up.  Its pid, or -1. */
static pid_t sink_start(const char *node)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/stream", g.n[0].port);
    for (;;) { /* reconnects if the stream ends */
        char *st = http_get(g.n[0].port, "/status");
        json_t *root = st ? json_loads(st, 0, NULL) : NULL, *d, *dbs = json_array();
        size_t i;
        json_array_foreach(json_object_get(root, "databases"), i, d) {
            json_t *e = json_object();
            json_object_set(e, "name", json_object_get(d, "name"));
            json_object_set(e, "id", json_object_get(d, "id"));
            json_object_set(e, "txid", json_object_get(d, "txid"));
            json_object_set(e, "cksum", json_object_get(d, "checksum"));
            json_array_append_new(dbs, e);
        }
        json_t *req = json_pack("{s:s, s:s, s:s, s:o}", "cluster", "", "node", node, "url", "", "dbs", dbs);
        char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
        CURL *c = curl_easy_init();
        if (!c || !body)
            _exit(1);
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_discard);
        curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_perform(c);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        free(body);
        json_decref(req);
        json_decref(root);
        free(st);
        usleep(100000);
    }
}

/* Records the primary sent on its stream to the connected replica with
 * node ID node (GET /status; an earlier stream's entry may still be
 * listed, not connected), or -1. */
static long long sink_records(const char *node)
{
    char *body = http_get(g.n[0].port, "/status");
    json_t *root = body ? json_loads(body, 0, NULL) : NULL, *r;
    long long n = -1;
    size_t i;
    json_array_foreach(json_object_get(root, "replicas"), i, r) {
        const char *nm = json_string_value(json_object_get(r, "node"));
        if (nm && strcmp(nm, node) == 0 && json_is_true(json_object_get(r, "connected")))
            n = json_integer_value(json_object_get(r, "records"));
    }
    json_decref(root);
    free(body);
    return n;
}

static void sink_stop(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
    }
    *pid = 0;
}

/* ratio[mode][case], averaged over two alternations; modes: 0 nothing
 * connected, 1 both replicas, 2 two stream sinks (replicas stopped). */
static int part_writes_in(double ratio[3][NWCASE], pid_t sinks[2])
{
    double secs = g.quick ? 1.0 : 3.0;
    memset(ratio, 0, sizeof(double) * 3 * NWCASE);
    for (int rep = 0; rep < 2; rep++)
        for (int with = 2; with >= 0; with--) {
            for (int k = 1; k < NNODE; k++)
                if (with == 1 && g.n[k].pid == 0 && node_start(k) != 0)
                    return -1;
                else if (with != 1 && g.n[k].pid > 0)
                    node_stop(k);
            for (int k = 0; k < 2; k++)
                if (with == 2 && (sinks[k] = sink_start(k ? "5151c002" : "5151c001")) < 0)
                    return -1;
                else if (with != 2)
                    sink_stop(&sinks[k]);
            long long before[2] = {0, 0};
            if (with == 2) {
                sleep_s(0.5); /* both streams follow */
                for (int k = 0; k < 2; k++)
                    before[k] = sink_records(k ? "5151c002" : "5151c001");
            }
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
            for (int k = 0; with == 2 && k < 2; k++) {
                long long n = sink_records(k ? "5151c002" : "5151c001");
                if (before[k] < 0 || n - before[k] < 100) {
                    progress("R4s: stream sink %d was not sent the writes (records %lld -> %lld)", k + 1, before[k], n);
                    return -1;
                }
                g.sink_records[k] += n - before[k];
            }
        }
    for (int k = 1; k < NNODE; k++)
        if (g.n[k].pid == 0)
            node_start(k);
    return 0;
}

static int part_writes(double ratio[3][NWCASE])
{
    pid_t sinks[2] = {0, 0};
    int rc = part_writes_in(ratio, sinks);
    for (int k = 0; k < 2; k++)
        sink_stop(&sinks[k]);
    return rc;
}

/* ---------------------------------------------------------------- R6 sync */

struct sync_result {
    double with[2], without[2]; /* tx/s, per case (WAL NORMAL, WAL FULL), sums of two rounds */
    double waits;               /* litevault_replication_sync_waits_total at the end */
    double fsyncs, spared;      /* FULL with sync-replicas: the -wal fsyncs asked and those a pre-sync spared */
};

static double metric_value(int port, const char *series);

/* Restart node 0 with sync-replicas n and wait until its replicas follow (and count, with n). */
static int restart_primary(int n)
{
    if (node_stop(0) != 0)
        progress("R6: node 0 did not stop cleanly");
    g.sync_replicas = n;
    if (node_config(0) != 0 || node_start(0) != 0)
        return -1;
    double t0 = now_s();
    while (metric_value(g.n[0].port, "litevault_replication_replicas") < NNODE - 1) {
        if (now_s() - t0 > 30) {
            progress("R6: the replicas did not reconnect to node 0");
            return -1;
        }
        usleep(20000);
    }
    sleep_s(0.5); /* caught up: every replica counts for sync-replicas */
    return 0;
}

static int part_sync(struct sync_result *r)
{
    double secs = g.quick ? 1.0 : 3.0;
    int rc = 0;

    memset(r, 0, sizeof *r);
    for (int rep = 0; rep < 2 && rc == 0; rep++)
        for (int sync = 1; sync >= 0 && rc == 0; sync--) {
            if ((rc = restart_primary(sync)) != 0)
                break;
            for (int c = 0; c < 2 && rc == 0; c++) {
                char mnt[PATH_MAX];
                snprintf(mnt, sizeof mnt, "%s/s%d-%d-%d.db", g.n[0].mnt, c, rep, sync);
                double v = insert_rate(mnt, &g_wcases[c], secs);
                if (v <= 0)
                    rc = -1;
                (sync ? r->with : r->without)[c] += v / 2;
                if (sync && c == 1) {
                    char series[PATH_MAX + 64];
                    snprintf(series, sizeof series, "litevault_db_wal_presync_hits_total{db=\"s1-%d-1.db\"}", rep);
                    r->spared += metric_value(g.n[0].port, series);
                    snprintf(series, sizeof series, "litevault_db_commits_total{db=\"s1-%d-1.db\"}", rep);
                    r->fsyncs += metric_value(g.n[0].port, series);
                }
            }
            if (sync)
                r->waits = metric_value(g.n[0].port, "litevault_replication_sync_waits_total");
        }
    if (rc == 0 && r->waits < 10) {
        progress("R6: commits did not wait for replicas (sync waits %.0f)", r->waits);
        rc = -1;
    }
    if (restart_primary(0) != 0)
        rc = -1;
    return rc;
}

/* ---------------------------------------------------------------- R7 fail-over */

struct failover_result {
    double p50_s, max_s; /* kill -9 to the first write accepted elsewhere */
    int n;               /* kills measured */
};

static int etcd_start(void)
{
    char dir[PATH_MAX + 16], url[64], peer[64], cluster[96], log[PATH_MAX + 16];
    int peer_port = free_port();

    g.etcd_port = free_port();
    snprintf(dir, sizeof dir, "%s/etcd", g.base);
    snprintf(log, sizeof log, "%s/etcd.log", g.base);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", g.etcd_port);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", peer_port);
    snprintf(cluster, sizeof cluster, "default=%s", peer);
    g.etcd_pid = fork();
    if (g.etcd_pid < 0)
        return -1;
    if (g.etcd_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl("/usr/bin/etcd", "etcd", "--name", "default", "--data-dir", dir, "--listen-client-urls", url,
              "--advertise-client-urls", url, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
              "--initial-cluster", cluster, "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    double t0 = now_s();
    for (;;) {
        char *h = http_get(g.etcd_port, "/health");
        int up = h && strstr(h, "true");
        free(h);
        if (up)
            return 0;
        if (now_s() - t0 > 20) {
            progress("R7: etcd did not answer (see %s)", log);
            return -1;
        }
        usleep(50000);
    }
}

static void etcd_stop(void)
{
    if (g.etcd_pid > 0) {
        kill(g.etcd_pid, SIGKILL);
        waitpid(g.etcd_pid, NULL, 0);
    }
    g.etcd_pid = 0;
}

/* The node of R7 whose GET /primary answers 200, or -1. */
static int fo_primary(void)
{
    for (int i = FO_FIRST; i < FO_FIRST + FO_N; i++) {
        long code = 0;
        char url[64];
        CURL *c = g.n[i].pid > 0 ? curl_easy_init() : NULL;
        if (!c)
            continue;
        snprintf(url, sizeof url, "http://127.0.0.1:%d/primary", g.n[i].port);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_discard);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 1000L);
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(c);
        if (code == 200)
            return i;
    }
    return -1;
}

/* Try one INSERT on node i's mount: 0 if it committed. */
static int fo_write(int i)
{
    char path[PATH_MAX + 8];
    sqlite3 *db = NULL;
    int rc;

    snprintf(path, sizeof path, "%s/fo.db", g.n[i].mnt);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 100);
    rc = sqlite3_exec(db, "INSERT INTO t(v) VALUES(1)", NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static int part_failover(struct failover_result *r)
{
    double t[64];
    int rc = 0, p;

    memset(r, 0, sizeof *r);
    if (etcd_start() != 0)
        return -1;
    for (int i = FO_FIRST; i < FO_FIRST + FO_N && rc == 0; i++)
        rc = node_config(i) || node_start(i);
    double t0 = now_s();
    while (rc == 0 && (p = fo_primary()) < 0 && now_s() - t0 < 20)
        usleep(50000);
    if (rc == 0 && p < 0) {
        progress("R7: no node was elected");
        rc = -1;
    }
    if (rc == 0) {
        char path[PATH_MAX + 8];
        snprintf(path, sizeof path, "%s/fo.db", g.n[p].mnt);
        sqlite3 *db = db_open(path, "wal", "NORMAL");
        rc = !db || exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)") != 0;
        sqlite3_close(db);
    }
    for (int k = 0; k < g.failovers && k < 64 && rc == 0; k++) {
        int others[2], no = 0;
        for (int i = FO_FIRST; i < FO_FIRST + FO_N; i++)
            if (i != p)
                others[no++] = i;
        /* every node follows and holds the table before the kill */
        for (int j = 0; j < 2 && rc == 0; j++) {
            char path[PATH_MAX + 8];
            snprintf(path, sizeof path, "%s/fo.db", g.n[others[j]].mnt);
            rc = wait_value(path, "SELECT count(*) FROM sqlite_master WHERE name='t'", 1, 30);
        }
        if (rc != 0) {
            progress("R7: a replica did not get the table");
            break;
        }
        sleep_s(1.0); /* the node keys carry the positions */
        kill(g.n[p].pid, SIGKILL);
        double k0 = now_s();
        waitpid(g.n[p].pid, NULL, 0);
        g.n[p].pid = 0;
        umount2(g.n[p].mnt, MNT_DETACH);
        int won = -1;
        while (won < 0 && now_s() - k0 < 30) {
            for (int j = 0; j < 2 && won < 0; j++)
                if (fo_write(others[j]) == 0)
                    won = others[j];
            if (won < 0)
                usleep(10000);
        }
        if (won < 0) {
            progress("R7: no write accepted within 30 s of killing node %d", p);
            rc = -1;
            break;
        }
        t[r->n++] = now_s() - k0;
        progress("R7: kill %d: node %d took writes after %.2f s", k + 1, won, t[r->n - 1]);
        if ((rc = node_start(p)) != 0)
            break;
        p = won;
    }
    for (int i = FO_FIRST; i < FO_FIRST + FO_N; i++)
        node_stop(i);
    etcd_stop();
    if (r->n > 0) {
        qsort(t, (size_t)r->n, sizeof t[0], cmp_dbl);
        r->p50_s = t[r->n / 2];
        r->max_s = t[r->n - 1];
    }
    return rc;
}

/* ---------------------------------------------------------------- R5 seed */

struct membuf {
    char *p;
    size_t len;
};

static size_t curl_sink(char *data, size_t size, size_t n, void *arg)
{
    struct membuf *m = arg;
    size_t add = size * n;
    char *np = realloc(m->p, m->len + add + 1);
    if (!np)
        return 0;
    memcpy(np + m->len, data, add);
    m->len += add;
    np[m->len] = '\0';
    m->p = np;
    return add;
}

/* GET http://127.0.0.1:PORT/path into a malloc'ed string, or NULL. */
static char *http_get(int port, const char *path)
{
    char url[128];
    struct membuf m = {NULL, 0};
    long code = 0;
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) != CURLE_OK || curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK ||
        code != 200) {
        free(m.p);
        m.p = NULL;
    }
    curl_easy_cleanup(c);
    return m.p;
}

/* TXID of database name in GET /status of the daemon on port, or -1. */
static long long status_txid(int port, const char *name)
{
    char *body = http_get(port, "/status");
    json_t *root = body ? json_loads(body, 0, NULL) : NULL, *d;
    long long txid = -1;
    size_t i;
    free(body);
    if (!root)
        return -1;
    json_array_foreach(json_object_get(root, "databases"), i, d) {
        const char *n = json_string_value(json_object_get(d, "name"));
        if (n && (strcmp(n, name) == 0 || (n[0] == '/' && strcmp(n + 1, name) == 0)))
            txid = json_integer_value(json_object_get(d, "txid"));
    }
    json_decref(root);
    return txid;
}

/* Value of series (the full text before the space) in GET /metrics, or -1. */
static double metric_value(int port, const char *series)
{
    char *body = http_get(port, "/metrics");
    double v = -1;
    size_t l = strlen(series);
    for (char *p = body; p && *p;) {
        if (strncmp(p, series, l) == 0 && p[l] == ' ') {
            v = strtod(p + l + 1, NULL);
            break;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    free(body);
    return v;
}

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

struct seed_result {
    double db_mib;          /* size of the seeded database */
    long txns;              /* transactions of the load */
    double load_s, confirm_s; /* load; then until the archive confirmed the last TXID */
    int nobj;               /* objects the baseline reads (current.json and manifest.json included) */
    int nsnap;              /* of which snapshots */
    double obj_mib, raw_mib; /* their bytes; record payload bytes after decompression */
    double read_s[2], zstd_s[2], base_s[2]; /* baseline runs: download, decompress, total */
    double seed_s[2];       /* restore --seed runs */
    double ratio;           /* seed_s[1] / base_s[1] */
};

struct objlist {
    char **p;
    int n, cap;
};

static int obj_add(struct objlist *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int obj_add(struct objlist *o, const char *fmt, ...)
{
    char path[PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    if (o->n == o->cap) {
        char **np = realloc(o->p, sizeof *np * (size_t)(o->cap ? 2 * o->cap : 64));
        if (!np)
            return -1;
        o->p = np;
        o->cap = o->cap ? 2 * o->cap : 64;
    }
    return (o->p[o->n++] = strdup(path)) ? 0 : -1;
}

static void obj_free(struct objlist *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->p[i]);
    free(o->p);
    memset(o, 0, sizeof *o);
}

/* The objects a seed of name reads from the file:// archive, as the
 * restore plan picks them with compaction off: current.json, the current
 * lineage's manifest.json, its newest snapshot (if any) and every segment
 * ending after that snapshot's TXID (every segment without a snapshot). */
static int seed_objects(const char *name, struct objlist *o, int *nsnap)
{
    char path[PATH_MAX], lin[PATH_MAX];
    unsigned long long snap = 0, first, last;
    json_error_t je;
    struct dirent *e;
    DIR *d;
    *nsnap = 0;
    snprintf(path, sizeof path, "%s/%s/current.json", g.archive, name);
    json_t *cur = json_load_file(path, 0, &je);
    const char *id = cur ? json_string_value(json_object_get(cur, "dbid")) : NULL;
    if (!id) {
        progress("R5: %s: no dbid (%s)", path, je.text);
        json_decref(cur);
        return -1;
    }
    snprintf(lin, sizeof lin, "%s/%s/%s", g.archive, name, id);
    json_decref(cur);
    if (obj_add(o, "%s", path) != 0 || obj_add(o, "%s/manifest.json", lin) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/snap", lin);
    if ((d = opendir(path)) != NULL) {
        while ((e = readdir(d)) != NULL)
            if (sscanf(e->d_name, "%16llx.lvseg", &first) == 1 && first > snap)
                snap = first;
        closedir(d);
    }
    if (snap) {
        *nsnap = 1;
        if (obj_add(o, "%s/snap/%016llx.lvseg", lin, snap) != 0)
            return -1;
    }
    for (int level = 0; level <= 9; level++) {
        snprintf(path, sizeof path, "%s/seg/%d", lin, level);
        if ((d = opendir(path)) == NULL)
            continue;
        while ((e = readdir(d)) != NULL)
            if (sscanf(e->d_name, "%16llx-%16llx.lvseg", &first, &last) == 2 && last > snap &&
                obj_add(o, "%s/%s", path, e->d_name) != 0) {
                closedir(d);
                return -1;
            }
        closedir(d);
    }
    return 0;
}

/* Decompress every record payload of one segment image (docs/FORMAT.md
 * "Segment file", "Record") into one output file (outfd); adds the raw bytes. */
static int put_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t k = write(fd, p, len);
        if (k <= 0)
            return -1;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

static int seg_decompress(ZSTD_DCtx *z, const unsigned char *b, size_t len, char *out, size_t outcap, double *raw,
                          int outfd)
{
    if (len < 64 || memcmp(b, "LVTXSEG1", 8) != 0)
        return -1;
    for (size_t off = 64; off < len;) {
        const unsigned char *h = b + off;
        if (len - off < 120 || be64(h) >> 32 != 0x4C565243)
            return -1;
        uint64_t s = be64(h + 72), rawlen = be64(h + 80);
        if (s > len - off - 120)
            return -1;
        if (h[52] == 1) {
            ZSTD_inBuffer in = {h + 112, (size_t)s, 0};
            size_t ret = 1, got = 0;
            ZSTD_DCtx_reset(z, ZSTD_reset_session_only);
            while (ret != 0) {
                ZSTD_outBuffer ob = {out, outcap, 0};
                ret = ZSTD_decompressStream(z, &ob, &in);
                if (ZSTD_isError(ret) || (ob.pos == 0 && in.pos == in.size && ret != 0))
                    return -1;
                if (put_all(outfd, out, ob.pos) != 0)
                    return -1;
                got += ob.pos;
            }
            if (got != rawlen)
                return -1;
        } else if (put_all(outfd, h + 112, (size_t)s) != 0) {
            return -1;
        }
        *raw += (double)rawlen;
        off += 120 + s;
    }
    return 0;
}

/* One baseline run: read each object whole into memory ("download"), then
 * decompress its records; the two summed over all objects. */
static int baseline_once(const struct objlist *o, struct seed_result *r, int run)
{
    const size_t outcap = 1 << 20;
    char *out = malloc(outcap);
    ZSTD_DCtx *z = ZSTD_createDCtx();
    char outp[PATH_MAX + 16];
    snprintf(outp, sizeof outp, "%s/baseline.out", g.base);
    int outfd = open(outp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = -1;
    r->read_s[run] = r->zstd_s[run] = 0;
    r->obj_mib = r->raw_mib = 0;
    for (int i = 0; out && z && i < o->n; i++) {
        double t0 = now_s(), raw = 0;
        struct stat st;
        int fd = open(o->p[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) != 0) {
            progress("R5: %s: %s", o->p[i], strerror(errno));
            if (fd >= 0)
                close(fd);
            goto out;
        }
        unsigned char *b = malloc((size_t)st.st_size + 1);
        size_t have = 0;
        ssize_t k;
        while (b && have < (size_t)st.st_size && (k = read(fd, b + have, (size_t)st.st_size - have)) > 0)
            have += (size_t)k;
        close(fd);
        double t1 = now_s();
        r->read_s[run] += t1 - t0;
        r->obj_mib += (double)have / MiB;
        if (!b || have != (size_t)st.st_size) {
            free(b);
            goto out;
        }
        if (strstr(o->p[i], ".lvseg") && seg_decompress(z, b, have, out, outcap, &raw, outfd) != 0) {
            progress("R5: %s: not a segment image this bench can decode", o->p[i]);
            free(b);
            goto out;
        }
        r->zstd_s[run] += now_s() - t1;
        r->raw_mib += raw / MiB;
        free(b);
    }
    /* the decompressed bytes, like the seeded file, are made durable */
    double tf = now_s();
    if (outfd < 0 || fsync(outfd) != 0)
        goto out;
    r->zstd_s[run] += now_s() - tf;
    r->base_s[run] = r->read_s[run] + r->zstd_s[run];
    rc = out && z ? 0 : -1;
out:
    if (outfd >= 0)
        close(outfd);
    unlink(outp);
    ZSTD_freeDCtx(z);
    free(out);
    return rc;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* One `litevault restore --seed` of SEED_NODE into an empty data.dir, timed
 * from fork to exit; its output goes to BASE/n4/seed.log. */
static int seed_once(double *secs)
{
    struct node *nd = &g.n[SEED_NODE];
    char data[PATH_MAX];
    int status;
    snprintf(data, sizeof data, "%s/data", nd->dir);
    nftw(data, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    if (mkdir(data, 0755) != 0)
        return -1;
    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        char logp[PATH_MAX];
        snprintf(logp, sizeof logp, "%s/seed.log", nd->dir);
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(g.litevault, "litevault", "restore", "--seed", "-c", nd->cfg, (char *)NULL);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    *secs = now_s() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char cmd[PATH_MAX + 32];
        progress("R5: restore --seed failed (status %d); %s/seed.log:", status, nd->dir);
        snprintf(cmd, sizeof cmd, "tail -n 20 %s/seed.log >&2", nd->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log)\n");
        return -1;
    }
    /* its own account of the download and the whole seed */
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "tail -n 2 %s/seed.log | sed 's/^/bench_repl: R5:   /' >&2", nd->dir);
    if (system(cmd) != 0)
        progress("R5: no seed.log");
    return 0;
}

static int part_seed(struct seed_result *r)
{
    const char *name = "seed.db", *env = getenv("BENCH_TXN_MIB");
    const double target = (g.quick ? 64.0 : 1024.0) * MiB;
    double txn_mib = env && atof(env) > 0 ? atof(env) : 32;
    char p[PATH_MAX], series[256], seeded[PATH_MAX];
    struct node *pr = &g.n[SEED_PRIMARY];
    struct objlist o = {0};
    sqlite3_stmt *ins = NULL;
    struct stat st;
    int rc = -1;

    if (node_start(SEED_PRIMARY) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/%s", pr->mnt, name);
    sqlite3 *w = db_open(p, NULL, NULL);
    if (!w || exec(w, "PRAGMA page_size=4096; PRAGMA journal_mode=wal; PRAGMA synchronous=NORMAL;"
                      "PRAGMA cache_size=-65536; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)") != 0)
        goto out;
    /* ~4 rows of ~1000 bytes per 4096-byte page; half random, half zeros
     * (zstd halves it), as bench.c's RSS part */
    if (sqlite3_prepare_v2(w, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<?1) "
                              "INSERT INTO t(v) SELECT randomblob(500) || zeroblob(500) FROM c",
                           -1, &ins, NULL) != SQLITE_OK)
        goto out;
    progress("R5: loading %.0f MiB on a primary with a file:// archive, %.0f MiB transactions", target / MiB,
             txn_mib);
    double t0 = now_s();
    for (;;) {
        long long bytes = one_int(w, "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size");
        if (bytes < 0)
            goto out;
        r->db_mib = (double)bytes / MiB;
        if (bytes >= target)
            break;
        sqlite3_bind_int64(ins, 1, (sqlite3_int64)(txn_mib * MiB / 1024.0));
        if (exec(w, "BEGIN") != 0 || sqlite3_step(ins) != SQLITE_DONE || exec(w, "COMMIT") != 0) {
            progress("R5 load: %s", sqlite3_errmsg(w));
            goto out;
        }
        sqlite3_reset(ins);
        r->txns++;
    }
    sqlite3_finalize(ins);
    ins = NULL;
    sqlite3_close(w);
    w = NULL;
    r->load_s = now_s() - t0;
    t0 = now_s();
    snprintf(series, sizeof series, "litevault_archive_confirmed_txid{dest=\"0\",db=\"%s\"}", name);
    for (;;) {
        long long txid = status_txid(pr->port, name);
        double conf = metric_value(pr->port, series);
        if (txid > 0 && conf >= (double)txid)
            break;
        if (now_s() - t0 > 600) {
            progress("R5: the archive did not confirm TXID %lld within 600 s (confirmed: %.0f)", txid, conf);
            goto out;
        }
        usleep(100000);
    }
    r->confirm_s = now_s() - t0;
    progress("R5: loaded %.0f MiB in %ld transactions in %.1f s; archive confirmed %.1f s later", r->db_mib,
             r->txns, r->load_s, r->confirm_s);
    if (seed_objects(name, &o, &r->nsnap) != 0)
        goto out;
    r->nobj = o.n;
    for (int run = 0; run < 2; run++) {
        progress("R5: run %d of 2: download + decompress, then restore --seed%s", run + 1,
                 run ? "" : " (warm-up, not reported)");
        if (baseline_once(&o, r, run) != 0 || seed_once(&r->seed_s[run]) != 0)
            goto out;
        progress("R5: baseline %.2f s (read %.2f s, zstd %.2f s), seed %.2f s", r->base_s[run], r->read_s[run],
                 r->zstd_s[run], r->seed_s[run]);
    }
    r->ratio = r->seed_s[1] / r->base_s[1];
    snprintf(seeded, sizeof seeded, "%s/data/files/%s", g.n[SEED_NODE].dir, name);
    if (stat(seeded, &st) != 0 || (double)st.st_size != r->db_mib * MiB) {
        progress("R5: the seeded %s is missing or not %.0f bytes", seeded, r->db_mib * MiB);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(ins);
    sqlite3_close(w);
    obj_free(&o);
    return rc;
}

/* ---------------------------------------------------------------- main */

/* Part k (1..5) selected by BENCH_ONLY (default: all). */
static int want(int k)
{
    return !g.only || strchr(g.only, '0' + k) != NULL;
}

int main(void)
{
    struct lag_result lag = {0};
    struct read_result rd = {0};
    struct catchup_result cu = {0};
    struct seed_result sd = {0};
    struct sync_result sy = {0};
    struct failover_result fo = {0};
    double wr[3][NWCASE] = {{0}};
    int rc = 0, ok_lag = 1, ok_rd = 1, ok_cu = 1, ok_wr = 1, ok_ws = 1, ok_sd = 1, ok_sy = 1, ok_fo = 1, three = 0;
    int have_etcd = access("/usr/bin/etcd", X_OK) == 0;
    const char *tmp = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    g.litevault = getenv("LITEVAULT");
    if (!g.litevault) {
        fprintf(stderr, "bench_repl: set LITEVAULT to the litevault binary\n");
        return 1;
    }
    g.quick = getenv("BENCH_QUICK") != NULL;
    g.keep = getenv("BENCH_KEEP") != NULL;
    g.only = getenv("BENCH_ONLY") && *getenv("BENCH_ONLY") ? getenv("BENCH_ONLY") : NULL;
    g.secs = getenv("BENCH_SECS") ? atof(getenv("BENCH_SECS")) : g.quick ? 3 : 10;
    g.poll_us = getenv("BENCH_POLL_US") ? atol(getenv("BENCH_POLL_US")) : 100;
    g.catchup = getenv("BENCH_CATCHUP") ? atol(getenv("BENCH_CATCHUP")) : g.quick ? 20000 : 100000;
    g.failovers = getenv("BENCH_FAILOVERS") ? atoi(getenv("BENCH_FAILOVERS")) : g.quick ? 3 : 10;
    g.ttl_s = getenv("BENCH_TTL") ? atoi(getenv("BENCH_TTL")) : 2;
    snprintf(g.base, sizeof g.base, "%s/lvbench-repl.XXXXXX", tmp);
    if (!mkdtemp(g.base) || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(g.archive, sizeof g.archive, "%s/archive", g.base);
    for (int i = 0; i < NALL; i++) {
        struct node *nd = &g.n[i];
        snprintf(nd->dir, sizeof nd->dir, "%s/n%d", g.base, i);
        snprintf(nd->mnt, sizeof nd->mnt, "%s/mnt", nd->dir);
        snprintf(nd->cfg, sizeof nd->cfg, "%s/config.yml", nd->dir);
        snprintf(nd->log, sizeof nd->log, "%s/daemon.log", nd->dir);
        nd->port = free_port();
        if (mkdir(nd->dir, 0755) != 0 || mkdir(nd->mnt, 0755) != 0 || node_config(i) != 0)
            return 1;
    }
    for (int k = 1; k <= 6; k++)
        three |= k != 5 && want(k);
    if (three) {
        progress("starting a primary and two replicas under %s", g.base);
        for (int i = 0; i < NNODE && rc == 0; i++)
            rc = node_start(i);
    }
    if (rc == 0 && want(1)) {
        progress("R1: lag at 1,000 tx/s for %.0f s", g.secs);
        rc = part_lag(&lag);
    }
    if (rc == 0 && want(2)) {
        progress("R2: point reads on a replica applying 100 tx/s");
        rc = part_reads(&rd);
    }
    if (rc == 0 && want(3))
        rc = part_catchup(&cu);
    if (rc == 0 && want(4)) {
        progress("R4: the primary's writes with replicas connected and stopped");
        rc = part_writes(wr);
    }
    if (rc == 0 && want(6)) {
        progress("R6: the primary's writes with sync-replicas 1 and 0");
        rc = part_sync(&sy);
    }
    for (int i = NNODE - 1; i >= 0; i--)
        if (node_stop(i) != 0 && rc == 0)
            progress("node %d did not stop cleanly", i);
    if (rc == 0 && want(5)) {
        progress("R5: seeding a new node from a file:// archive under %s", g.base);
        rc = part_seed(&sd);
        if (node_stop(SEED_PRIMARY) != 0 && rc == 0)
            progress("node %d did not stop cleanly", SEED_PRIMARY);
    }
    if (rc == 0 && want(7) && have_etcd) {
        progress("R7: %d fail-overs of three nodes with an etcd lease (ttl %d s)", g.failovers, g.ttl_s);
        rc = part_failover(&fo);
    }
    curl_global_cleanup();
    if (rc != 0) {
        for (int i = 0; i < NALL; i++) {
            if (access(g.n[i].log, F_OK) != 0)
                continue;
            fprintf(stderr, "--- node %d log:\n", i);
            show_log(&g.n[i]);
        }
        fprintf(stderr, "bench_repl: failed; kept %s\n", g.base);
        return 1;
    }
    if (want(1))
        ok_lag = lag.p99_ms <= 2.0;
    if (want(2))
        ok_rd = rd.ratio >= 0.9;
    if (want(3))
        ok_cu = cu.rate_start >= 50000;
    for (size_t c = 0; want(4) && c < NWCASE; c++)
        if (wr[0][c] - wr[1][c] > 0.02)
            ok_wr = 0;
    for (size_t c = 0; want(4) && c < NWCASE; c++)
        if (wr[0][c] - wr[2][c] > 0.02)
            ok_ws = 0;
    if (want(5))
        ok_sd = sd.ratio <= 1.2;
    if (want(6))
        ok_sy = sy.with[0] / sy.without[0] >= 0.5 && sy.with[1] / sy.without[1] >= 0.5;
    if (want(7) && have_etcd)
        ok_fo = fo.max_s <= g.ttl_s + 1.0;
    printf("\nReplication (primary + 2 replicas on loopback, one run)%s\n\n",
           ok_lag && ok_rd && ok_cu && ok_wr && ok_ws && ok_sd && ok_sy && ok_fo ? "" : ": some goals MISSED");
    printf("| part | measured | goal | |\n|---|---|---|---|\n");
    if (want(1))
        printf("| R1 lag commit->visible on replica, %.0f tx/s, %ld tx, polled every %ld us | p50 %.3f ms, "
               "p99 %.3f ms, max %.3f ms | p99 <= 2 ms | %s |\n", lag.rate, lag.n, g.poll_us, lag.p50_ms,
               lag.p99_ms, lag.max_ms, ok_lag ? "ok" : "MISS");
    if (want(2))
        printf("| R2 point SELECTs on replica / native (primary 100 tx/s) | %.0f / %.0f = %.2f | >= 0.90 | %s |\n",
               rd.replica_ops, rd.native_ops, rd.ratio, ok_rd ? "ok" : "MISS");
    if (want(3))
        printf("| R3 catch-up of %ld tx | %.0f rec/s from start (%.2f s), %.0f rec/s from first record | "
               ">= 50,000/s | %s |\n", cu.n, cu.rate_start, cu.from_start_s, cu.rate_first, ok_cu ? "ok" : "MISS");
    for (size_t c = 0; want(4) && c < NWCASE; c++)
        printf("| R4 %s: mount/native, no replicas / 2 replicas | %.3f / %.3f (drop %+.3f) | drop <= 0.02 | %s |\n",
               g_wcases[c].label, wr[0][c], wr[1][c], wr[0][c] - wr[1][c],
               wr[0][c] - wr[1][c] <= 0.02 ? "ok" : "MISS");
    for (size_t c = 0; want(4) && c < NWCASE; c++)
        printf("| R4s %s: mount/native, nothing connected / 2 stream sinks | %.3f / %.3f (drop %+.3f) | "
               "drop <= 0.02 | %s |\n", g_wcases[c].label, wr[0][c], wr[2][c], wr[0][c] - wr[2][c],
               wr[0][c] - wr[2][c] <= 0.02 ? "ok" : "MISS");
    if (want(4))
        printf("\nR4: the replicas share this machine's vCPUs with the writer. R4s: the primary streamed %lld and "
               "%lld records to the two sinks while measured.\n", g.sink_records[0], g.sink_records[1]);
    if (want(5)) {
        char label[32];
        if (sd.db_mib >= 1000)
            snprintf(label, sizeof label, "%.0f GiB", sd.db_mib / 1024);
        else
            snprintf(label, sizeof label, "%.0f MiB", sd.db_mib);
        printf("| R5 seed %s from archive / download+decompress | %.2f s / %.2f s = %.2f | <= 1.2 | %s |\n",
               label, sd.seed_s[1], sd.base_s[1], sd.ratio, ok_sd ? "ok" : "MISS");
        printf("\nR5: second of two alternating runs (page cache warm for both). Baseline = reading %d file:// "
               "objects (%.1f MiB: current.json, manifest.json, %d snapshot(s), segments) whole into memory "
               "(%.2f s) + zstd-decompressing every record payload into one file, fsynced (%.1f MiB raw, %.2f s); "
               "no checksum. Seed = `litevault restore --seed` as a child process, fork to exit "
               "(first runs: seed %.2f s, baseline %.2f s). Load: %ld transactions in %.1f s, archive confirmed "
               "%.1f s later.\n",
               sd.nobj, sd.obj_mib, sd.nsnap, sd.read_s[1], sd.raw_mib, sd.zstd_s[1], sd.seed_s[0], sd.base_s[0],
               sd.txns, sd.load_s, sd.confirm_s);
    }
    for (int c = 0; want(6) && c < 2; c++)
        printf("| R6 %s: sync-replicas 1 / 0, tx/s | %.0f / %.0f = %.2f | >= 0.5 | %s |\n", g_wcases[c].label,
               sy.with[c], sy.without[c], sy.with[c] / sy.without[c], sy.with[c] / sy.without[c] >= 0.5 ? "ok" : "MISS");
    if (want(7) && have_etcd)
        printf("| R7 fail-over, kill -9 to first write on the new primary, %d kills, ttl %d s | p50 %.2f s, max %.2f s "
               "| <= ttl + 1 s | %s |\n", fo.n, g.ttl_s, fo.p50_s, fo.max_s, ok_fo ? "ok" : "MISS");
    if (want(7) && !have_etcd)
        printf("| R7 fail-over | skipped: /usr/bin/etcd is not installed (Debian's etcd-server) | | |\n");
    if (want(6))
        printf("\nR6: both replicas connected; a commit waited for the first acknowledgement %.0f times; "
               "at sync=FULL, %.0f of %.0f commits found their -wal already fsynced during that wait.\n",
               sy.waits, sy.spared, sy.fsyncs);
    if (!g.keep)
        nftw(g.base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
