/*
 * bench.c -- `make bench`: the same SQLite workloads on a local directory
 * and on a litevault mount, in one run, with the ratio mount/native.
 *
 * Usage: LITEVAULT=/path/to/litevault bench
 *   BENCH_QUICK=1  short durations, no 1 GiB RSS part (for development)
 *   BENCH_DIR=DIR  parent of the temporary directory (default $TMPDIR or /tmp)
 *   BENCH_KEEP=1   keep the temporary directory (and the daemon log)
 *   BENCH_TXN_MIB  transaction size of the 1 GiB load (default 32)
 *   BENCH_LOG_LEVEL  log.level of the daemon (default warn)
 *   BENCH_ONLY=1,3 run only these workloads (and skip the RSS part unless 7 is listed,
 *                  the restore part unless 8 is listed,
 *                  the export part unless 9 is listed,
 *                  the archive part unless 10 is listed,
 *                  the capture-lag part unless 11 is listed)
 *   BENCH_RESTORE_MIB, BENCH_RESTORE_TXNS  size of the restore part's database (1024) and
 *                  transactions after its snapshot (3000)
 *   BENCH_SECS=N   measured seconds per side and workload (default 3, quick 0.5)
 *   BENCH_ARCHIVE_URL  destination of the archive part (10); default: s3rver
 *                  (tests/s3rver.sh) when installed, else file://BASE/archive
 *
 * Layout of the temporary directory BASE (one directory, one filesystem, so
 * the local side and the daemon's data.dir sit on the same disk):
 *   BASE/config.yml   daemon configuration (free port, log.level warn)
 *   BASE/daemon.log   daemon stdout+stderr
 *   BASE/native/wN/   local side of workload N (fresh per workload)
 *   BASE/data/        data.dir of the daemon
 *   BASE/mnt/         fuse.dir; BASE/mnt/wN/ is the mount side of workload N
 *
 * Flow: start `$LITEVAULT mount -c BASE/config.yml` as a child, wait until
 * the mount point appears in /proc/self/mounts and GET /metrics answers;
 * for each workload run native then mount (same seed, warm-up, duration);
 * on the mount side litevault_fuse_requests_total (requests the kernel sent,
 * by opcode: the round trips) and litevault_fuse_ops_total (the daemon's
 * libfuse operations, with handler times) are read before and after the
 * measured loop, giving both per operation.  Then
 * (unless BENCH_QUICK) build a ~1 GiB database through the mount in big
 * transactions, run point reads and writes on it, and read VmRSS/VmHWM of
 * the daemon from /proc/PID/status.  Finally print the tables, stop the
 * daemon with SIGTERM and remove BASE.
 *
 * Workloads (libsqlite3 directly, prepared statements reused):
 *   1-3  one-row INSERT transactions (BEGIN; INSERT; COMMIT) with the given
 *        journal mode and synchronous level; ops = transactions.
 *   4-5  point SELECTs by random rowid on a 10k-row table, one connection,
 *        each SELECT its own (autocommit) read transaction; ops = SELECTs.
 *   6    open a connection, 50 point SELECTs, close (WAL database, no other
 *        connection open, so every close also checkpoints and removes -wal);
 *        ops = open/close cycles.
 *
 * Export part (9, unless BENCH_QUICK, where it uses a 64 MiB database):
 * on the 1 GiB database of part 7 (or one loaded the same way), quiescent,
 * time `litevault export` against `sqlite3 .backup` (from the mount) and
 * `cp` (of the backing file, plain and followed by an fsync, since export
 * fsyncs its output), each into BASE/; then `litevault export --all` to a
 * .tar.zst: compression ratio and throughput.
 *
 * Exit status: 0 when the bench ran (goals missed are reported as MISS),
 * 1 on any error (SQLite error, daemon failed to start or to stop cleanly).
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "base/cksum.h"
#include "archive/current.h"
#include "base/lv.h"
#include "archive/manifest.h"
#include "restore/plan.h"
#include "restore/restore.h"
#include "store/store.h"
#include "log/txlog.h"

#define MiB (1024.0 * 1024.0)

/* ---------------------------------------------------------------- state */

/* The whole run; one instance, g. */
struct bench {
    const char *litevault;  /* daemon binary ($LITEVAULT), borrowed from the environment */
    int quick;              /* BENCH_QUICK: short durations, no RSS part */
    int keep;               /* BENCH_KEEP: do not remove base */
    double warm_s;          /* warm-up seconds per side */
    double run_s;           /* measured seconds per side */
    char base[PATH_MAX];    /* temporary directory */
    char native[PATH_MAX];  /* BASE/native */
    char mnt[PATH_MAX];     /* BASE/mnt (fuse.dir) */
    char data[PATH_MAX];    /* BASE/data (data.dir) */
    char cfg[PATH_MAX];     /* BASE/config.yml */
    char log[PATH_MAX];     /* BASE/daemon.log */
    int port;               /* HTTP port of the daemon */
    pid_t pid;              /* daemon pid, 0 when not running */
    CURL *curl;             /* reused HTTP handle */
    char archive_yaml[1024];/* archive: section of the config ("" for none; set by the archive part) */
    char s3dir[PATH_MAX];   /* BASE/s3 when the archive part started s3rver, else "" */
};

static struct bench g;

enum wkind { WK_INSERT, WK_SELECT, WK_OPEN };

/* One workload of the table. */
struct workload {
    const char *label;    /* row label */
    enum wkind kind;      /* what the loop does */
    const char *journal;  /* journal_mode */
    const char *sync;     /* synchronous */
    double goal;          /* minimal mount/native ratio */
};

#define MAXOPS 64  /* FUSE op kinds tracked (the daemon has 16) plus "req:" request opcodes */

/* Snapshot (or accumulated delta) of the daemon's FUSE metrics and CPU time. */
struct msnap {
    int n;                 /* ops in use */
    char op[MAXOPS][24];   /* op label ("write", ...), or "req:" + a request opcode ("req:write") */
    double count[MAXOPS];  /* litevault_fuse_ops_total{op}, or litevault_fuse_requests_total{op} */
    double sum_s[MAXOPS];  /* litevault_fuse_op_duration_seconds_sum{op} */
    double cpu_s;          /* daemon utime+stime, seconds */
};

/* Result of one side of one workload. */
struct side_result {
    uint64_t ops;        /* operations in the measured loop */
    double secs;         /* its duration */
    struct msnap fuse;   /* daemon metrics and CPU accumulated over the mount chunks */
    long long txids;     /* TXIDs the daemon assigned during the loop (mount), -1 if unknown */
};

static const struct workload g_workloads[] = {
    {"1 insert tx, WAL, sync=NORMAL", WK_INSERT, "wal", "NORMAL", 0.60},
    {"2 insert tx, WAL, sync=FULL", WK_INSERT, "wal", "FULL", 0.80},
    {"3 insert tx, DELETE, sync=FULL", WK_INSERT, "delete", "FULL", 0.60},
    {"4 point SELECT, WAL", WK_SELECT, "wal", "NORMAL", 0.95},
    {"5 point SELECT, DELETE", WK_SELECT, "delete", "FULL", 0.80},
    {"6 open+50 SELECT+close, WAL", WK_OPEN, "wal", "NORMAL", 0.50},
};
#define NWORK (sizeof g_workloads / sizeof g_workloads[0])

#define SELECT_ROWS 10000  /* rows of the point-SELECT table */
#define OPEN_SELECTS 50    /* SELECTs per connection in workload 6 */
#define RSS_GOAL_MIB 64.0  /* daemon RSS goal with a 1 GiB database */

/* ---------------------------------------------------------------- helpers */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* xorshift64*: the same seed gives the same key sequence on both sides. */
static uint64_t rnd_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Print the SQLite error of db for what and return -1. */
static int sql_fail(sqlite3 *db, const char *what)
{
    fprintf(stderr, "bench: %s: %s\n", what, db ? sqlite3_errmsg(db) : "out of memory");
    return -1;
}

/* Execute sql (no result expected).  0 or -1. */
static int sql_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "bench: %s: %s\n", sql, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Run a one-value query and copy its first column text into out.  0 or -1. */
static int sql_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(db, sql);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sql_fail(db, sql);
        goto out_finalize;
    }
    snprintf(out, outlen, "%s", sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
    rc = 0;
out_finalize:
    sqlite3_finalize(st);
    return rc;
}

/* Open path read-write (created if missing) with a busy timeout.  0 or -1. */
static int db_open(const char *path, sqlite3 **out)
{
    if (sqlite3_open_v2(path, out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        sql_fail(*out, path);
        sqlite3_close(*out);
        *out = NULL;
        return -1;
    }
    sqlite3_busy_timeout(*out, 5000);
    return 0;
}

/* Set journal_mode and synchronous, checking that the journal mode took. */
static int db_modes(sqlite3 *db, const char *journal, const char *sync)
{
    char sql[128], got[32];
    snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s", journal);
    if (sql_text(db, sql, got, sizeof got) != 0)
        return -1;
    if (strcasecmp(got, journal) != 0) {
        fprintf(stderr, "bench: journal_mode=%s was refused (got %s)\n", journal, got);
        return -1;
    }
    snprintf(sql, sizeof sql, "PRAGMA synchronous=%s", sync);
    return sql_exec(db, sql);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        fprintf(stderr, "bench: remove %s: %s\n", path, strerror(errno));
    return 0;
}

static uint64_t g_du_total; /* accumulator of du_cb */
static int du_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path; (void)ftw;
    if (flag == FTW_F)
        g_du_total += (uint64_t)st->st_blocks * 512;
    return 0;
}

/* Bytes allocated under dir. */
static uint64_t du(const char *dir)
{
    g_du_total = 0;
    nftw(dir, du_cb, 16, FTW_PHYS);
    return g_du_total;
}

static const char *fs_name(const char *path)
{
    struct statfs sf;
    if (statfs(path, &sf) != 0)
        return "?";
    switch ((unsigned long)sf.f_type) {
    case 0xEF53: return "ext2/3/4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794c7630: return "overlayfs";
    case 0x2FC12FC1: return "zfs";
    case 0x65735546: return "fuse";
    default: return "other";
    }
}

/* ---------------------------------------------------------------- daemon */

/* A free TCP port on 127.0.0.1 (bound and released; tiny race accepted). */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int port = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

struct membuf {
    char *p;     /* malloc'ed, NUL-terminated */
    size_t len;  /* bytes in p */
};

static size_t curl_sink(char *data, size_t size, size_t n, void *arg)
{
    struct membuf *m = arg;
    size_t add = size * n;
    char *np = realloc(m->p, m->len + add + 1);
    if (np == NULL)
        return 0;
    memcpy(np + m->len, data, add);
    m->len += add;
    np[m->len] = '\0';
    m->p = np;
    return add;
}

/* GET http://127.0.0.1:PORT/path into a malloc'ed string (caller frees), or NULL. */
static char *http_get(const char *path)
{
    char url[128];
    struct membuf m = {NULL, 0};
    long code = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", g.port, path);
    curl_easy_setopt(g.curl, CURLOPT_URL, url);
    curl_easy_setopt(g.curl, CURLOPT_WRITEFUNCTION, curl_sink);
    curl_easy_setopt(g.curl, CURLOPT_WRITEDATA, &m);
    curl_easy_setopt(g.curl, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(g.curl, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(g.curl) != CURLE_OK ||
        curl_easy_getinfo(g.curl, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK || code != 200) {
        free(m.p);
        return NULL;
    }
    return m.p;
}

/* Daemon user+system CPU seconds from /proc/PID/stat, or 0. */
static double daemon_cpu_s(void)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    ssize_t n;
    int fd;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)g.pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* comm may contain spaces; fields 3.. follow it */
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Index of op in s, added if new; -1 when full. */
static int msnap_slot(struct msnap *s, const char *op, size_t oplen)
{
    for (int i = 0; i < s->n; i++)
        if (strlen(s->op[i]) == oplen && strncmp(s->op[i], op, oplen) == 0)
            return i;
    if (s->n == MAXOPS || oplen >= sizeof s->op[0])
        return -1;
    memcpy(s->op[s->n], op, oplen);
    s->op[s->n][oplen] = '\0';
    return s->n++;
}

/* Read GET /metrics and the daemon CPU time into *s.  0, or -1 when the
 * metrics cannot be fetched or hold no litevault_fuse_ops_total. */
static int msnap_take(struct msnap *s)
{
    static const char kcount[] = "litevault_fuse_ops_total{op=\"";
    static const char ksum[] = "litevault_fuse_op_duration_seconds_sum{op=\"";
    static const char kreq[] = "litevault_fuse_requests_total{op=\"";
    char *body = http_get("/metrics");
    int seen = 0;

    memset(s, 0, sizeof *s);
    if (body == NULL)
        return -1;
    for (char *line = body; line && *line;) {
        char *nl = strchr(line, '\n');
        const char *rest = NULL, *prefix = ""; /* prefix: "req:" for a request opcode's slot */
        int is_count = 0;
        if (nl)
            *nl = '\0';
        if (strncmp(line, kcount, sizeof kcount - 1) == 0) {
            rest = line + sizeof kcount - 1;
            is_count = 1;
        } else if (strncmp(line, ksum, sizeof ksum - 1) == 0) {
            rest = line + sizeof ksum - 1;
        } else if (strncmp(line, kreq, sizeof kreq - 1) == 0) {
            rest = line + sizeof kreq - 1;
            prefix = "req:";
            is_count = 1;
        }
        if (rest) {
            const char *q = strchr(rest, '"');
            char name[sizeof s->op[0]];
            int i = -1;
            if (q && snprintf(name, sizeof name, "%s%.*s", prefix, (int)(q - rest), rest) < (int)sizeof name)
                i = msnap_slot(s, name, strlen(name));
            const char *v = q ? strchr(q, '}') : NULL;
            if (i >= 0 && v) {
                if (is_count) {
                    s->count[i] = strtod(v + 1, NULL);
                    seen = 1;
                } else {
                    s->sum_s[i] = strtod(v + 1, NULL);
                }
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    free(body);
    s->cpu_s = daemon_cpu_s();
    return seen ? 0 : -1;
}

/* acc += b - a, op by op. */
static void msnap_add_delta(struct msnap *acc, const struct msnap *a, const struct msnap *b)
{
    for (int j = 0; j < b->n; j++) {
        int i = msnap_slot(acc, b->op[j], strlen(b->op[j]));
        double c0 = 0, s0 = 0;
        if (i < 0)
            continue;
        for (int k = 0; k < a->n; k++)
            if (strcmp(a->op[k], b->op[j]) == 0) {
                c0 = a->count[k];
                s0 = a->sum_s[k];
            }
        acc->count[i] += b->count[j] - c0;
        acc->sum_s[i] += b->sum_s[j] - s0;
    }
    acc->cpu_s += b->cpu_s - a->cpu_s;
}

/* Sum of the operation counts (req = 0) or of the request counts (req = 1). */
static double msnap_total(const struct msnap *s, int req)
{
    double t = 0;
    for (int i = 0; i < s->n; i++)
        if ((strncmp(s->op[i], "req:", 4) == 0) == req)
            t += s->count[i];
    return t;
}

/* Last TXID of database name from GET /status, or -1. */
static long long status_txid(const char *name)
{
    char *body = http_get("/status");
    long long txid = -1;
    json_t *root, *dbs, *d;
    size_t i;
    if (body == NULL)
        return -1;
    root = json_loads(body, 0, NULL);
    free(body);
    if (root == NULL)
        return -1;
    dbs = json_object_get(root, "databases");
    json_array_foreach(dbs, i, d) {
        const char *n = json_string_value(json_object_get(d, "name"));
        if (n && (strcmp(n, name) == 0 || (n[0] == '/' && strcmp(n + 1, name) == 0)))
            txid = json_integer_value(json_object_get(d, "txid"));
    }
    json_decref(root);
    return txid;
}

/* The litevault version from GET /status into out. */
static void status_version(char *out, size_t outlen)
{
    char *body = http_get("/status");
    json_t *root = body ? json_loads(body, 0, NULL) : NULL;
    const char *v = root ? json_string_value(json_object_get(root, "version")) : NULL;
    snprintf(out, outlen, "%s", v ? v : "?");
    json_decref(root);
    free(body);
}

static int is_mounted(const char *dir)
{
    char line[4096];
    int found = 0;
    FILE *f = fopen("/proc/self/mounts", "re");
    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof line, f)) {
        char src[1024], mp[2048];
        if (sscanf(line, "%1023s %2047s", src, mp) == 2 && strcmp(mp, dir) == 0)
            found = 1;
    }
    fclose(f);
    return found;
}

/* Print the daemon log (at most the last max lines) to stderr. */
static void show_log(int max)
{
    char line[1024];
    long n = 0, skip;
    FILE *f = fopen(g.log, "re");
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f))
        n++;
    skip = n > max ? n - max : 0;
    rewind(f);
    for (long i = 0; fgets(line, sizeof line, f); i++)
        if (i >= skip)
            fprintf(stderr, "  | %s", line);
    fclose(f);
}

/* Start the daemon and wait for the mount and the HTTP server.  0 or -1. */
static int daemon_start(void)
{
    struct msnap probe;
    FILE *f;
    double t0;
    int status;

    g.port = free_port();
    if (g.port < 0) {
        fprintf(stderr, "bench: no free port: %s\n", strerror(errno));
        return -1;
    }
    f = fopen(g.cfg, "we");
    if (f == NULL) {
        fprintf(stderr, "bench: %s: %s\n", g.cfg, strerror(errno));
        return -1;
    }
    fprintf(f,
            "fuse:\n  dir: %s\n"
            "data:\n  dir: %s\n"
            "http:\n  addr: 127.0.0.1:%d\n"
            "log:\n  level: %s\n  format: text\n%s",
            g.mnt, g.data, g.port, getenv("BENCH_LOG_LEVEL") ? getenv("BENCH_LOG_LEVEL") : "warn", g.archive_yaml);
    if (fclose(f) != 0) {
        fprintf(stderr, "bench: %s: %s\n", g.cfg, strerror(errno));
        return -1;
    }
    g.pid = fork();
    if (g.pid < 0) {
        fprintf(stderr, "bench: fork: %s\n", strerror(errno));
        g.pid = 0;
        return -1;
    }
    if (g.pid == 0) {
        int fd = open(g.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(g.litevault, "litevault", "mount", "-c", g.cfg, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", g.litevault, strerror(errno));
        _exit(127);
    }
    t0 = now_s();
    for (;;) {
        if (waitpid(g.pid, &status, WNOHANG) == g.pid) {
            fprintf(stderr, "bench: the daemon exited (status %d) before mounting; its log:\n",
                    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
            g.pid = 0;
            show_log(30);
            return -1;
        }
        if (is_mounted(g.mnt) && msnap_take(&probe) == 0)
            return 0;
        if (now_s() - t0 > 20) {
            fprintf(stderr, "bench: the daemon did not mount %s within 20 s; its log:\n", g.mnt);
            show_log(30);
            return -1;
        }
        usleep(20000);
    }
}

/* SIGTERM the daemon and wait.  0 when it exited 0 and unmounted, else -1. */
static int daemon_stop(void)
{
    int status = 0, rc = 0;
    double t0 = now_s();
    if (g.pid <= 0)
        return 0;
    kill(g.pid, SIGTERM);
    for (;;) {
        pid_t w = waitpid(g.pid, &status, WNOHANG);
        if (w == g.pid)
            break;
        if (w < 0) {
            fprintf(stderr, "bench: waitpid: %s\n", strerror(errno));
            rc = -1;
            break;
        }
        if (now_s() - t0 > 30) {
            fprintf(stderr, "bench: the daemon did not exit 30 s after SIGTERM; killing it\n");
            kill(g.pid, SIGKILL);
            waitpid(g.pid, &status, 0);
            rc = -1;
            break;
        }
        usleep(20000);
    }
    g.pid = 0;
    if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        fprintf(stderr, "bench: the daemon exited with %s %d after SIGTERM\n",
                WIFEXITED(status) ? "status" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        rc = -1;
    }
    if (is_mounted(g.mnt)) {
        fprintf(stderr, "bench: %s still mounted after the daemon exited; lazy unmount\n", g.mnt);
        if (umount2(g.mnt, MNT_DETACH) != 0)
            fprintf(stderr, "bench: umount %s: %s\n", g.mnt, strerror(errno));
        rc = -1;
    }
    return rc;
}

static long status_kib(pid_t pid, const char *key)
{
    char path[64], line[256];
    size_t kl = strlen(key);
    long v = -1;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "re");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':')
            v = strtol(line + kl + 1, NULL, 10);
    fclose(f);
    return v;
}

/* ---------------------------------------------------------------- workloads */

/* Create table t with SELECT_ROWS rows of ~100 bytes in one transaction;
 * in WAL mode checkpoint so the rows live in the main file. */
static int fill_select_table(sqlite3 *db, const struct workload *w)
{
    if (sql_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);"
                     "BEGIN;"
                     "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<10000) "
                     "INSERT INTO t(id, v) SELECT x, printf('%08d-%s', x, hex(randomblob(46))) FROM c;"
                     "COMMIT;") != 0)
        return -1;
    if (strcmp(w->journal, "wal") == 0 && sql_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)") != 0)
        return -1;
    return 0;
}

/* One point SELECT by a random rowid with the prepared st.  0 or -1. */
static int select_one(sqlite3 *db, sqlite3_stmt *st, uint64_t *seed)
{
    sqlite3_int64 id = (sqlite3_int64)(rnd_next(seed) % SELECT_ROWS) + 1;
    int rc;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW || sqlite3_column_bytes(st, 0) < 8) {
        sqlite3_reset(st);
        return sql_fail(db, "point SELECT");
    }
    sqlite3_reset(st);
    return 0;
}

/* One workload loop for secs seconds on db (already set up); ops counted in *ops. */
struct loopctx {
    const struct workload *w;  /* the workload */
    sqlite3 *db;               /* connection (insert, select) */
    char path[PATH_MAX];       /* database path */
    sqlite3_stmt *st[3];       /* prepared statements, reused */
    uint64_t seed;             /* key sequence */
    unsigned char blob[100];   /* insert payload */
};

static int loop_once(struct loopctx *c)
{
    const struct workload *w = c->w;
    switch (w->kind) {
    case WK_INSERT:
        for (size_t i = 0; i < sizeof c->blob; i += 8) {
            uint64_t r = rnd_next(&c->seed);
            memcpy(c->blob + i, &r, sizeof c->blob - i < 8 ? sizeof c->blob - i : 8);
        }
        if (sqlite3_step(c->st[0]) != SQLITE_DONE)
            return sql_fail(c->db, "BEGIN");
        sqlite3_reset(c->st[0]);
        sqlite3_bind_int64(c->st[1], 1, (sqlite3_int64)(rnd_next(&c->seed) >> 1));
        sqlite3_bind_blob(c->st[1], 2, c->blob, sizeof c->blob, SQLITE_STATIC);
        if (sqlite3_step(c->st[1]) != SQLITE_DONE) {
            sql_fail(c->db, "INSERT");
            sqlite3_reset(c->st[1]);
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        sqlite3_reset(c->st[1]);
        if (sqlite3_step(c->st[2]) != SQLITE_DONE) {
            sql_fail(c->db, "COMMIT");
            sqlite3_reset(c->st[2]);
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        sqlite3_reset(c->st[2]);
        return 0;
    case WK_SELECT:
        return select_one(c->db, c->st[0], &c->seed);
    case WK_OPEN: {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int rc = -1;
        if (sqlite3_open_v2(c->path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
            sql_fail(db, c->path);
            goto out_close;
        }
        if (sqlite3_prepare_v2(db, "SELECT v FROM t WHERE id=?1", -1, &st, NULL) != SQLITE_OK) {
            sql_fail(db, "prepare SELECT");
            goto out_close;
        }
        for (int i = 0; i < OPEN_SELECTS; i++)
            if (select_one(db, st, &c->seed) != 0)
                goto out_finalize;
        rc = 0;
    out_finalize:
        sqlite3_finalize(st);
    out_close:
        if (sqlite3_close(db) != SQLITE_OK) {
            sql_fail(db, "close");
            rc = -1;
        }
        return rc;
    }
    }
    return -1;
}

/* Set up side c of workload w number n in root/wN (created fresh).  0 or -1;
 * on error the caller still calls side_close(c). */
static int side_setup(struct loopctx *c, const struct workload *w, int n, const char *root)
{
    char dir[PATH_MAX];

    c->w = w;
    c->seed = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    snprintf(dir, sizeof dir, "%s/w%d", root, n);
    snprintf(c->path, sizeof c->path, "%s/bench.db", dir);
    if (mkdir(dir, 0755) != 0) {
        fprintf(stderr, "bench: mkdir %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (db_open(c->path, &c->db) != 0 || db_modes(c->db, w->journal, w->sync) != 0)
        return -1;
    switch (w->kind) {
    case WK_INSERT:
        if (sql_exec(c->db, "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v BLOB NOT NULL)") != 0)
            return -1;
        if (sqlite3_prepare_v2(c->db, "BEGIN", -1, &c->st[0], NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(c->db, "INSERT INTO t(k, v) VALUES(?1, ?2)", -1, &c->st[1], NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(c->db, "COMMIT", -1, &c->st[2], NULL) != SQLITE_OK)
            return sql_fail(c->db, "prepare");
        return 0;
    case WK_SELECT:
        if (fill_select_table(c->db, w) != 0)
            return -1;
        if (sqlite3_prepare_v2(c->db, "SELECT v FROM t WHERE id=?1", -1, &c->st[0], NULL) != SQLITE_OK)
            return sql_fail(c->db, "prepare");
        return 0;
    case WK_OPEN:
        if (fill_select_table(c->db, w) != 0)
            return -1;
        if (sqlite3_close(c->db) != SQLITE_OK) /* the loop opens its own connections */
            return sql_fail(c->db, "close");
        c->db = NULL;
        return 0;
    }
    return -1;
}

/* Finalize and close what side_setup made.  0 or -1. */
static int side_close(struct loopctx *c)
{
    int rc = 0;
    for (size_t i = 0; i < 3; i++) {
        sqlite3_finalize(c->st[i]);
        c->st[i] = NULL;
    }
    if (c->db && sqlite3_close(c->db) != SQLITE_OK)
        rc = sql_fail(c->db, "close");
    c->db = NULL;
    return rc;
}

/* Run c's loop for secs seconds; add operations and time to *r.  0 or -1. */
static int side_chunk(struct loopctx *c, double secs, struct side_result *r)
{
    double t0 = now_s(), t1, end = t0 + secs;
    uint64_t ops = 0;
    do {
        if (loop_once(c) != 0) {
            fprintf(stderr, "bench: ... on %s after %llu operations of this chunk\n", c->path,
                    (unsigned long long)ops);
            return -1;
        }
        ops++;
    } while ((t1 = now_s()) < end);
    r->ops += ops;
    r->secs += t1 - t0;
    return 0;
}

/* Run workload w (number n) on both sides.  The measured time is cut into
 * rounds that alternate native and mount (native first in even rounds), so
 * a change of background load or disk speed hits both sides alike.  On the
 * mount side the daemon's metrics and CPU time are read around each chunk.
 * 0 or -1. */
static int run_workload(const struct workload *w, int n, struct side_result *nat, struct side_result *mnt)
{
    struct loopctx cn, cm;
    struct side_result warm = {0};
    char name[64];
    const int rounds = g.quick ? 2 : 6;
    long long x0, x1;
    int rc = -1;

    memset(&cn, 0, sizeof cn);
    memset(&cm, 0, sizeof cm);
    memset(nat, 0, sizeof *nat);
    memset(mnt, 0, sizeof *mnt);
    snprintf(name, sizeof name, "w%d/bench.db", n);
    if (side_setup(&cn, w, n, g.native) != 0 || side_setup(&cm, w, n, g.mnt) != 0)
        goto out_close;
    if (side_chunk(&cn, g.warm_s, &warm) != 0 || side_chunk(&cm, g.warm_s, &warm) != 0)
        goto out_close;
    x0 = status_txid(name);
    for (int i = 0; i < 2 * rounds; i++) {
        int mount = (i & 1) ^ ((i / 2) & 1);
        if (mount) {
            struct msnap s0, s1;
            if (msnap_take(&s0) != 0)
                goto out_metrics;
            if (side_chunk(&cm, g.run_s / rounds, mnt) != 0)
                goto out_close;
            if (msnap_take(&s1) != 0)
                goto out_metrics;
            msnap_add_delta(&mnt->fuse, &s0, &s1);
        } else if (side_chunk(&cn, g.run_s / rounds, nat) != 0) {
            goto out_close;
        }
    }
    x1 = status_txid(name);
    mnt->txids = (x0 >= 0 && x1 >= 0) ? x1 - x0 : -1;
    rc = 0;
    goto out_close;

out_metrics:
    fprintf(stderr, "bench: cannot read GET /metrics of the daemon\n");
out_close:
    if (side_close(&cn) != 0 || side_close(&cm) != 0)
        rc = -1;
    return rc;
}

/* ---------------------------------------------------------------- RSS with 1 GiB */

/* Facts of the RSS part. */
struct rss_result {
    long base_rss_kib;     /* VmRSS before the load */
    long load_peak_kib;    /* max VmRSS sampled after each load transaction */
    long rss_kib;          /* VmRSS after the load, reads and writes */
    long hwm_kib;          /* VmHWM at the end (whole daemon lifetime) */
    double db_bytes;       /* database size (page_count * page_size) */
    double load_secs;      /* time to load */
    int load_txns;         /* transactions of the load */
    double txn_mib;        /* size of one load transaction */
    uint64_t reads;        /* point reads done afterwards */
    double read_secs;      /* their duration */
    uint64_t writes;       /* single-row update transactions done afterwards */
    double write_secs;     /* their duration */
    double log_bytes;      /* bytes allocated under data.dir/meta for the database */
};

static int rss_part(struct rss_result *r)
{
    char dir[PATH_MAX], path[PATH_MAX], meta[PATH_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL, *cnt = NULL, *sel = NULL, *upd = NULL, *beg = NULL, *com = NULL;
    const double target = 1024.0 * MiB;
    const char *env = getenv("BENCH_TXN_MIB");
    sqlite3_int64 rows_per_txn, nrows = 0;
    uint64_t seed = 42;
    double t0, end;
    int rc = -1;

    memset(r, 0, sizeof *r);
    r->txn_mib = env && atof(env) > 0 ? atof(env) : 32;
    /* ~4 rows of ~1000 bytes per 4096-byte page */
    rows_per_txn = (sqlite3_int64)(r->txn_mib * MiB / 1024.0);
    snprintf(dir, sizeof dir, "%s/rss", g.mnt);
    snprintf(path, sizeof path, "%s/big.db", dir);
    snprintf(meta, sizeof meta, "%s/meta/rss%%2Fbig.db", g.data);
    r->base_rss_kib = status_kib(g.pid, "VmRSS");
    if (mkdir(dir, 0755) != 0) {
        fprintf(stderr, "bench: mkdir %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (db_open(path, &db) != 0)
        return -1;
    if (sql_exec(db, "PRAGMA page_size=4096") != 0 || db_modes(db, "wal", "NORMAL") != 0 ||
        sql_exec(db, "PRAGMA cache_size=-65536;"
                     "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)") != 0)
        goto out_close;
    /* Half random, half zeros: the log compresses it about 2:1. */
    if (sqlite3_prepare_v2(db,
                           "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<?1) "
                           "INSERT INTO t(v) SELECT randomblob(500) || zeroblob(500) FROM c",
                           -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size", -1, &cnt,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "BEGIN", -1, &beg, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &com, NULL) != SQLITE_OK) {
        sql_fail(db, "prepare");
        goto out_close;
    }
    progress("RSS: loading ~1 GiB through the mount in %.0f MiB transactions", r->txn_mib);
    t0 = now_s();
    for (;;) {
        long kib;
        if (sqlite3_step(cnt) != SQLITE_ROW) {
            sql_fail(db, "page_count");
            goto out_close;
        }
        r->db_bytes = (double)sqlite3_column_int64(cnt, 0);
        sqlite3_reset(cnt);
        if (r->db_bytes >= target)
            break;
        sqlite3_bind_int64(ins, 1, rows_per_txn);
        if (sqlite3_step(beg) != SQLITE_DONE || (sqlite3_reset(beg), sqlite3_step(ins)) != SQLITE_DONE ||
            (sqlite3_reset(ins), sqlite3_step(com)) != SQLITE_DONE) {
            sql_fail(db, "load transaction");
            goto out_close;
        }
        sqlite3_reset(com);
        nrows += rows_per_txn;
        r->load_txns++;
        kib = status_kib(g.pid, "VmRSS");
        if (kib > r->load_peak_kib)
            r->load_peak_kib = kib;
    }
    r->load_secs = now_s() - t0;
    progress("RSS: loaded %.0f MiB in %.1f s (%.1f MiB/s); point reads and writes", r->db_bytes / MiB,
             r->load_secs, r->db_bytes / MiB / r->load_secs);
    sqlite3_finalize(ins);
    ins = NULL;
    /* A small cache again, so the reads reach the file (kernel page cache / FUSE). */
    if (sql_exec(db, "PRAGMA cache_size=-2000") != 0)
        goto out_close;
    if (sqlite3_prepare_v2(db, "SELECT length(v) FROM t WHERE id=?1", -1, &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "UPDATE t SET v=randomblob(500) || zeroblob(500) WHERE id=?1", -1, &upd, NULL) !=
            SQLITE_OK) {
        sql_fail(db, "prepare");
        goto out_close;
    }
    t0 = now_s();
    end = t0 + (g.run_s > 2 ? g.run_s : 2);
    do {
        sqlite3_bind_int64(sel, 1, (sqlite3_int64)(rnd_next(&seed) % (uint64_t)nrows) + 1);
        if (sqlite3_step(sel) != SQLITE_ROW) {
            sql_fail(db, "point read");
            goto out_close;
        }
        sqlite3_reset(sel);
        r->reads++;
    } while (now_s() < end);
    r->read_secs = now_s() - t0;
    t0 = now_s();
    end = t0 + (g.run_s > 2 ? g.run_s : 2);
    do {
        sqlite3_bind_int64(upd, 1, (sqlite3_int64)(rnd_next(&seed) % (uint64_t)nrows) + 1);
        if (sqlite3_step(upd) != SQLITE_DONE) {
            sql_fail(db, "point write");
            goto out_close;
        }
        sqlite3_reset(upd);
        r->writes++;
    } while (now_s() < end);
    r->write_secs = now_s() - t0;
    rc = 0;

out_close:
    sqlite3_finalize(ins);
    sqlite3_finalize(cnt);
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    sqlite3_finalize(beg);
    sqlite3_finalize(com);
    if (sqlite3_close(db) != SQLITE_OK) {
        sql_fail(db, "close");
        rc = -1;
    }
    /* Read RSS after closing: the daemon holds no open file of the bench then,
     * but everything it keeps per database is still there. */
    usleep(200000);
    r->rss_kib = status_kib(g.pid, "VmRSS");
    r->hwm_kib = status_kib(g.pid, "VmHWM");
    r->log_bytes = (double)du(meta);
    return rc;
}

/* ---------------------------------------------------------------- export */

/* Result of the export part. */
struct export_result {
    double db_bytes;       /* size of the exported database */
    double cp_s;           /* cp of the backing file */
    double cp_sync_s;      /* cp, then fsync of the copy (sync FILE) */
    double backup_s;       /* sqlite3 .backup from the mount */
    double export_s;       /* litevault export --db */
    double all_s;          /* litevault export --all -o .tar.zst */
    double all_in_bytes;   /* bytes of all databases in the bundle */
    double all_out_bytes;  /* size of the .tar.zst */
    int ndb;               /* databases in the bundle */
};

/* Run a shell command, timed; seconds, or -1 if it failed (message printed). */
static double timed_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static double timed_sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    double t0 = now_s();
    int st = system(cmd);
    double t = now_s() - t0;
    if (st != 0) {
        fprintf(stderr, "bench: command failed (status %d): %s\n", st, cmd);
        return -1;
    }
    return t;
}

/* Load a database of about target bytes at path like rss_part does (half random, half zeros). */
static int export_load(const char *path, double target)
{
    sqlite3 *db = NULL;
    int rc = -1;
    char sql[512];
    if (db_open(path, &db) != 0)
        return -1;
    if (sql_exec(db, "PRAGMA page_size=4096") != 0 || db_modes(db, "wal", "NORMAL") != 0 ||
        sql_exec(db, "PRAGMA cache_size=-65536; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)") != 0)
        goto out;
    for (double have = 0; have < target;) {
        char n[64];
        snprintf(sql, sizeof sql,
                 "BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<32768) "
                 "INSERT INTO t(v) SELECT randomblob(500) || zeroblob(500) FROM c; COMMIT;");
        if (sql_exec(db, sql) != 0 || sql_text(db, "SELECT page_count * page_size FROM pragma_page_count, "
                                                   "pragma_page_size", n, sizeof n) != 0)
            goto out;
        have = atof(n);
    }
    rc = 0;
out:
    if (sqlite3_close(db) != SQLITE_OK)
        rc = -1;
    return rc;
}

static int export_part(struct export_result *r, int have_rss_db)
{
    char name[64], mpath[PATH_MAX], fpath[PATH_MAX], out[PATH_MAX], json[PATH_MAX];
    struct stat st;
    double target = (g.quick ? 64.0 : 1024.0) * MiB;

    memset(r, 0, sizeof *r);
    snprintf(name, sizeof name, "%s", have_rss_db ? "rss/big.db" : "exp/big.db");
    snprintf(mpath, sizeof mpath, "%s/%s", g.mnt, name);
    snprintf(fpath, sizeof fpath, "%s/files/%s", g.data, name);
    if (!have_rss_db) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/exp", g.mnt);
        progress("export: loading %.0f MiB through the mount", target / MiB);
        if (mkdir(dir, 0755) != 0 || export_load(mpath, target) != 0)
            return -1;
    }
    if (stat(fpath, &st) != 0) {
        fprintf(stderr, "bench: %s: %s\n", fpath, strerror(errno));
        return -1;
    }
    r->db_bytes = (double)st.st_size;
    /* Warm the page cache evenly: every method then reads the database from memory. */
    if (timed_sh("cat '%s' > /dev/null", fpath) < 0)
        return -1;
    progress("export: cp, cp+fsync, litevault export, sqlite3 .backup of %.0f MiB (2 rounds, best of each)",
             r->db_bytes / MiB);
    snprintf(out, sizeof out, "%s/export-out.db", g.base);
    double *best[4] = {&r->cp_s, &r->cp_sync_s, &r->export_s, &r->backup_s};
    for (int round = 0; round < 2; round++)
        for (int k = 0; k < 4; k++) {
            int m = round ? 3 - k : k; /* alternate the order between rounds */
            double t;
            /* Start each from a clean page cache state: no dirty pages of the previous one. */
            if (timed_sh("sync -f '%s'", g.base) < 0)
                return -1;
            if (m == 0)
                t = timed_sh("cp '%s' '%s'", fpath, out);
            else if (m == 1)
                t = timed_sh("cp '%s' '%s' && sync '%s'", fpath, out, out);
            else if (m == 2)
                t = timed_sh("'%s' export -c '%s' --db '%s' -o '%s' > /dev/null", g.litevault, g.cfg, name, out);
            else
                t = timed_sh("sqlite3 '%s' \".backup '%s'\"", mpath, out);
            unlink(out);
            if (t < 0)
                return -1;
            if (*best[m] == 0 || t < *best[m])
                *best[m] = t;
        }

    progress("export: --all to .tar.zst");
    snprintf(out, sizeof out, "%s/export-all.tar.zst", g.base);
    snprintf(json, sizeof json, "%s/export-all.json", g.base);
    if ((r->all_s = timed_sh("'%s' export -c '%s' --all -o '%s' --json > '%s'", g.litevault, g.cfg, out, json)) < 0)
        return -1;
    if (stat(out, &st) != 0)
        return -1;
    r->all_out_bytes = (double)st.st_size;
    json_t *j = json_load_file(json, 0, NULL);
    json_t *arr = json_object_get(j, "databases"), *e;
    size_t i;
    json_array_foreach(arr, i, e)
    {
        r->all_in_bytes += (double)json_integer_value(json_object_get(e, "size"));
        r->ndb++;
    }
    json_decref(j);
    unlink(out);
    unlink(json);
    return r->all_in_bytes > 0 ? 0 : -1;
}

static void print_export(const struct export_result *r)
{
    double mib = r->db_bytes / MiB;
    printf("\nExport of a %.0f MiB database (quiescent, page cache warm, no dirty pages at each start; best of 2)\n", mib);
    printf("| method                             |     s |  MiB/s | vs cp | vs cp+fsync |\n");
    printf("|------------------------------------|------:|-------:|------:|------------:|\n");
#define EXROW(label, t) printf("| %-34s | %5.2f | %6.0f | %5.2f | %11.2f |\n", label, t, mib / (t), (t) / r->cp_s, \
                               (t) / r->cp_sync_s)
    EXROW("cp (backing file)", r->cp_s);
    EXROW("cp + fsync of the copy", r->cp_sync_s);
    EXROW("litevault export --db (fsyncs)", r->export_s);
    EXROW("sqlite3 .backup (from the mount)", r->backup_s);
#undef EXROW
    double ratio = r->export_s / r->cp_s, ratio_sync = r->export_s / r->cp_sync_s;
    /* export fsyncs its output (published atomically); plain cp leaves it dirty in the page cache. */
    printf("  goal: export within 1.5x of cp: %.2fx of cp + fsync (both durable) -> %s; %.2fx of plain cp -> %s\n",
           ratio_sync, ratio_sync <= 1.5 ? "PASS" : "MISS", ratio, ratio <= 1.5 ? "PASS" : "MISS");
    printf("  export --all -o .tar.zst: %d databases, %.0f MiB in %.2f s (%.0f MiB/s of input), "
           "bundle %.1f MiB, compression ratio %.2f\n",
           r->ndb, r->all_in_bytes / MiB, r->all_s, r->all_in_bytes / MiB / r->all_s, r->all_out_bytes / MiB,
           r->all_in_bytes / r->all_out_bytes);
}

/* ---------------------------------------------------------------- report */

static void print_facts(void)
{
    struct utsname u;
    char model[256] = "?", line[512], ver[32];
    FILE *f = fopen("/proc/cpuinfo", "re");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                char *p = strchr(line, ':');
                if (p) {
                    snprintf(model, sizeof model, "%s", p + 2);
                    model[strcspn(model, "\n")] = '\0';
                }
                break;
            }
        fclose(f);
    }
    uname(&u);
    status_version(ver, sizeof ver);
    printf("litevault bench\n");
    printf("  machine : %ld CPUs (%s), kernel %s %s\n", sysconf(_SC_NPROCESSORS_ONLN), model, u.sysname, u.release);
    printf("  sqlite  : %s (library), litevault %s\n", sqlite3_libversion(), ver);
    printf("  dirs    : %s (%s): native/ and the daemon's data/ on the same filesystem\n", g.base, fs_name(g.base));
    printf("  method  : %.1f s warm-up + %.1f s measured per side, fresh directory per workload%s\n\n", g.warm_s,
           g.run_s, g.quick ? " (BENCH_QUICK)" : "");
}

static void print_table(const struct side_result nat[], const struct side_result mnt[])
{
    printf("| workload                        |     native |      mount | ratio | goal    | result | requests/op |\n");
    printf("|---------------------------------|-----------:|-----------:|------:|---------|--------|------------:|\n");
    for (size_t i = 0; i < NWORK; i++) {
        const struct workload *w = &g_workloads[i];
        if (nat[i].ops == 0 || mnt[i].ops == 0)
            continue;
        double on = nat[i].ops / nat[i].secs, om = mnt[i].ops / mnt[i].secs;
        double ratio = om / on;
        char fops[32] = "?";
        /* "?" when the daemon answered operations but counted no requests
         * (no device read hook); 0.00 when nothing reached it at all */
        if (msnap_total(&mnt[i].fuse, 1) > 0 || (mnt[i].fuse.n > 0 && msnap_total(&mnt[i].fuse, 0) == 0))
            snprintf(fops, sizeof fops, "%.2f", msnap_total(&mnt[i].fuse, 1) / (double)mnt[i].ops);
        printf("| %-31s | %10.0f | %10.0f | %5.2f | >= %.2f | %-6s | %11s |\n", w->label, on, om, ratio, w->goal,
               ratio >= w->goal ? "PASS" : "MISS", fops);
    }
    printf("\nops/s: transactions (1-3), SELECTs (4-5), open+50 SELECT+close cycles (6).\n");
    printf("requests/op: requests the kernel sent to the daemon (litevault_fuse_requests_total, the round trips)\n"
           "during the measured mount loops / operations; forget and release do not block the application.\n");
    printf("\nMount side, per operation: FUSE operations by kind (mean daemon time in the handler; libfuse's own\n"
           "operations included), daemon CPU; then the kernel's requests by kind:\n");
    for (size_t i = 0; i < NWORK; i++) {
        const struct msnap *f = &mnt[i].fuse;
        double ops = (double)mnt[i].ops;
        if (nat[i].ops == 0 || mnt[i].ops == 0)
            continue;
        printf("  w%zu:", i + 1);
        for (int k = 0; k < f->n; k++)
            if (f->count[k] > 0 && strncmp(f->op[k], "req:", 4) != 0)
                printf(" %s %.2f (%.0f us)", f->op[k], f->count[k] / ops, 1e6 * f->sum_s[k] / f->count[k]);
        printf("; daemon CPU %.0f us/op, wall %.0f us/op (native %.0f us/op)\n", 1e6 * f->cpu_s / ops,
               1e6 * mnt[i].secs / ops, 1e6 * nat[i].secs / (double)nat[i].ops);
        if (msnap_total(f, 1) > 0) {
            printf("      requests:");
            for (int k = 0; k < f->n; k++)
                if (f->count[k] > 0 && strncmp(f->op[k], "req:", 4) == 0)
                    printf(" %s %.2f", f->op[k] + 4, f->count[k] / ops);
            printf("\n");
        }
    }
    printf("\n");
    for (size_t i = 0; i < NWORK; i++) {
        if (g_workloads[i].kind != WK_INSERT || mnt[i].ops == 0)
            continue;
        printf("  w%zu: %llu transactions committed on the mount in the measured loop, %lld captured by the daemon%s\n",
               i + 1, (unsigned long long)mnt[i].ops, mnt[i].txids,
               mnt[i].txids == (long long)mnt[i].ops ? "" : "  <-- MISMATCH");
    }
}

static void print_rss(const struct rss_result *r)
{
    double rss = r->rss_kib / 1024.0, hwm = r->hwm_kib / 1024.0;
    printf("\nDaemon memory with a 1 GiB database (page_size 4096, WAL, sync=NORMAL)\n");
    printf("  load     : %.0f MiB in %d transactions of %.0f MiB, %.1f s (%.1f MiB/s); log on disk %.0f MiB\n",
           r->db_bytes / MiB, r->load_txns, r->txn_mib, r->load_secs, r->db_bytes / MiB / r->load_secs,
           r->log_bytes / MiB);
    printf("  then     : %llu point reads (%.0f/s), %llu one-row update transactions (%.0f/s)\n",
           (unsigned long long)r->reads, r->reads / r->read_secs, (unsigned long long)r->writes,
           r->writes / r->write_secs);
    printf("| measure                         |   MiB | goal      | result |\n");
    printf("|---------------------------------|------:|-----------|--------|\n");
    printf("| VmRSS before the load           | %5.1f |           |        |\n", r->base_rss_kib / 1024.0);
    printf("| VmRSS peak sampled during load  | %5.1f |           |        |\n", r->load_peak_kib / 1024.0);
    printf("| VmRSS at the end                | %5.1f | <= %.0f MiB | %-6s |\n", rss, RSS_GOAL_MIB,
           rss <= RSS_GOAL_MIB ? "PASS" : "MISS");
    printf("| VmHWM (lifetime peak)           | %5.1f | <= %.0f MiB | %-6s |\n", hwm, RSS_GOAL_MIB,
           hwm <= RSS_GOAL_MIB ? "PASS" : "MISS");
}

/* ---------------------------------------------------------------- restore part (8) */

/*
 * bench_restore: restore of a >= 1 GiB database from s3rver (one snapshot
 * object at TXID 1 plus BENCH_RESTORE_TXNS small transactions after it, in
 * segment objects of 100 records) with `litevault restore --parallel 4`,
 * against two baselines: (a) download (same parallelism) + zstd
 * decompression of the snapshot object alone, (b) `cp` of the database
 * file.  Page contents are synthetic (half random, half zeros: zstd gets
 * about 2:1), so the restore runs with --no-integrity-check.  Then the
 * planning time (GET manifest.json + decode + plan_make) with 10 and with
 * 10,000 segments.  Needs tests/s3rver.sh (run from the repository root).
 * BENCH_RESTORE_MIB sets the database size (default 1024).
 */
struct restore_bench {
    uint64_t db_bytes;      /* database size */
    uint64_t snap_bytes;    /* snapshot object size */
    uint64_t seg_bytes;     /* bytes of all segment objects */
    int nseg, ntx;          /* segment objects, transactions after the snapshot */
    double build_s;         /* time to build and upload the archive */
    double restore_s;       /* litevault restore */
    double dl_s;            /* baseline (a): download + decompress in memory */
    double dlw_s;           /* baseline (a'): the same, written to a file and fsynced */
    double dlf_s;           /* baseline (a''): written to a file, not fsynced */
    double cp_s;            /* baseline (b) */
    double plan_ms[2];      /* planning with 10 and 10,000 segments */
};

static uint64_t rb_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Page content for (pgno, version): first half pseudo-random, rest zeros. */
static void rb_page(uint8_t *p, uint32_t pgno, uint64_t version)
{
    uint64_t s = 0x9e3779b97f4a7c15ull ^ ((uint64_t)pgno << 20) ^ version;
    memset(p + 2048, 0, 2048);
    for (int i = 0; i < 2048; i += 8) {
        uint64_t v = rb_rand(&s);
        memcpy(p + i, &v, 8);
    }
}

static int rb_put(struct store *st, const char *key, const void *buf, size_t len)
{
    int rc = store_put(st, key, buf, len);
    if (rc)
        fprintf(stderr, "bench: put %s: %s (%s)\n", key, lv_strerror(rc), store_last_error(st));
    return rc;
}

/* A synthetic manifest of n chained segments of 10 TXIDs (no objects). */
static int rb_plan_time(struct store *st, int n, double *ms)
{
    struct manifest m;
    char name[32], key[96], *js = NULL, err[256];
    size_t len;
    double t0;
    int rc, reps = 5;

    snprintf(name, sizeof name, "plan%d.db", n);
    if (manifest_init(&m, name, "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f", 1764000000000000ll) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        struct manifest_seg s = {0};
        s.first_txid = (uint64_t)i * 10 + 1;
        s.last_txid = s.first_txid + 9;
        s.first_time_us = 1764000000000000ll + (int64_t)s.first_txid * 1000;
        s.last_time_us = s.first_time_us + 9000;
        s.pre_cksum = i ? (uint64_t)i * 0x9e3779b97f4a7c15ull : 0;
        s.post_cksum = (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull;
        s.size = 64 + 120 * 10 + 40000;
        s.xxh3 = (uint64_t)i;
        if (manifest_add_segment(&m, &s) != 0) {
            manifest_free(&m);
            return -1;
        }
    }
    rc = manifest_encode(&m, &js, &len, err, sizeof err);
    manifest_free(&m);
    if (rc) {
        fprintf(stderr, "bench: manifest_encode: %s\n", err);
        return -1;
    }
    snprintf(key, sizeof key, "%s/0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f/manifest.json", name);
    rc = rb_put(st, key, js, len);
    free(js);
    if (rc)
        return -1;
    t0 = now_s();
    for (int r = 0; r < reps; r++) {
        struct plan_target t = {PLAN_LATEST, 0, 0};
        struct plan p;
        rc = restore_load_manifest(st, name, "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f", &m, err, sizeof err);
        if (rc) {
            fprintf(stderr, "bench: %s\n", err);
            return -1;
        }
        rc = plan_make(&m, &t, 0, &p);
        plan_free(&p);
        manifest_free(&m);
        if (rc)
            return -1;
    }
    *ms = (now_s() - t0) * 1000.0 / reps;
    return 0;
}

static int restore_part(struct restore_bench *r)
{
    char dir[PATH_MAX], logdir[PATH_MAX + 8], s3dir[PATH_MAX + 8], url[512], cmd[3 * PATH_MAX], err[512];
    char out[PATH_MAX + 16], copy[PATH_MAX + 16], key[160], idhex[33], *js = NULL;
    const char *mib_env = getenv("BENCH_RESTORE_MIB"), *tx_env = getenv("BENCH_RESTORE_TXNS");
    uint32_t npages = (uint32_t)((mib_env && atoi(mib_env) > 0 ? atoi(mib_env) : 1024) * 256);
    uint8_t id[16], *page = malloc(4096);
    uint64_t *h = calloc(npages + 1, sizeof *h), total = 0, seed = 42, last = 0;
    struct txlog *l = NULL;
    struct txlog_tail tail;
    struct txlog_hdr hd;
    struct store *st = NULL;
    struct store_opts so = {0};
    struct manifest m = {0};
    void *img = NULL;
    size_t len = 0;
    int port = free_port(), rc = -1, s3 = 0;
    double t0;

    r->ntx = tx_env && atoi(tx_env) > 0 ? atoi(tx_env) : 3000;
    if (!page || !h)
        goto out;
    for (int i = 0; i < 16; i++)
        id[i] = (uint8_t)(0xb0 + i);
    lv_hex(id, 16, idhex);
    snprintf(dir, sizeof dir, "%s/restore", g.base);
    snprintf(logdir, sizeof logdir, "%s/log", dir);
    snprintf(s3dir, sizeof s3dir, "%s/s3", dir);
    if (mkdir(dir, 0755) != 0) {
        fprintf(stderr, "bench: mkdir %s: %s\n", dir, strerror(errno));
        goto out;
    }
    snprintf(cmd, sizeof cmd, "tests/s3rver.sh start '%s' %d lvbench >/dev/null", s3dir, port);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench: %s failed (run from the repository root after make deps)\n", cmd);
        goto out;
    }
    s3 = 1;
    setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    snprintf(url, sizeof url, "s3://lvbench/arch?endpoint=http://127.0.0.1:%d&region=us-east-1&force-path-style=true",
             port);
    so.force_path_style = -1;
    so.parallel = 4;
    if (store_open(url, &so, &st, err, sizeof err) != 0) {
        fprintf(stderr, "bench: store_open: %s\n", err);
        goto out;
    }

    /* 1. The local log: a snapshot of npages pages at TXID 1, then ntx transactions of 4 pages. */
    progress("restore: building a %u MiB database log and its archive", npages / 256);
    t0 = now_s();
    if (txlog_open(logdir, id, 256ull << 20, &l, &tail, err, sizeof err) != 0) {
        fprintf(stderr, "bench: txlog_open: %s\n", err);
        goto out;
    }
    for (uint32_t p = 1; p <= npages; p++) {
        rb_page(page, p, 1);
        h[p] = cksum_page(p, page, 4096);
        total ^= h[p];
    }
    memset(&hd, 0, sizeof hd);
    hd.txid = 1;
    hd.flags = TXLOG_F_SNAPSHOT;
    hd.time_us = 1764000000000000ll;
    hd.page_size = 4096;
    hd.db_pages = npages;
    hd.post_cksum = total;
    if (txlog_append_begin(l, &hd) != 0)
        goto out;
    for (uint32_t p = 1; p <= npages; p++) {
        rb_page(page, p, 1);
        if (txlog_append_page(l, p, page) != 0)
            goto out;
    }
    if (txlog_append_end(l) != 0)
        goto out;
    for (int x = 2; x <= r->ntx + 1; x++) {
        uint32_t pg[4];
        uint32_t base = (uint32_t)(rb_rand(&seed) % (npages - 8)) + 1;
        for (int k = 0; k < 4; k++)
            pg[k] = base + (uint32_t)k * 2;
        hd.txid = (uint64_t)x;
        hd.flags = 0;
        hd.time_us += 1000;
        hd.pre_cksum = total;
        for (int k = 0; k < 4; k++) {
            rb_page(page, pg[k], (uint64_t)x);
            total ^= h[pg[k]] ^ cksum_page(pg[k], page, 4096);
            h[pg[k]] = cksum_page(pg[k], page, 4096);
        }
        hd.post_cksum = total;
        if (txlog_append_begin(l, &hd) != 0)
            goto out;
        for (int k = 0; k < 4; k++) {
            rb_page(page, pg[k], (uint64_t)x);
            if (txlog_append_page(l, pg[k], page) != 0)
                goto out;
        }
        if (txlog_append_end(l) != 0)
            goto out;
    }
    if (txlog_sync(l) != 0)
        goto out;
    txlog_close(l);
    l = NULL;

    /* 2. Objects, manifest, current.json. */
    if (manifest_init(&m, "bench.db", idhex, 1764000000000000ll) != 0)
        goto out;
    if (txlog_segment_image(logdir, id, 1, 1, 0, &img, &len, &last) != 0)
        goto out;
    {
        struct manifest_snap s = {0};
        s.txid = 1;
        s.time_us = 1764000000000000ll;
        s.page_size = 4096;
        s.db_pages = npages;
        s.db_cksum = lv_get64((uint8_t *)img + 64 + 64); /* post checksum of the record */
        s.size = len;
        s.xxh3 = cksum_buf(img, len);
        r->snap_bytes = len;
        snprintf(key, sizeof key, "bench.db/%s/%s", idhex, manifest_snap_key(s.key, 1));
        if (manifest_add_snapshot(&m, &s) != 0 || rb_put(st, key, img, len) != 0)
            goto out;
    }
    free(img);
    img = NULL;
    for (uint64_t f = 2; f <= (uint64_t)r->ntx + 1; f += 100) {
        struct manifest_seg s = {0};
        uint64_t to = f + 99 > (uint64_t)r->ntx + 1 ? (uint64_t)r->ntx + 1 : f + 99;
        struct txlog_reader *rd = NULL;
        struct txlog_hdr a, b;
        if (txlog_segment_image(logdir, id, f, to, 0, &img, &len, &last) != 0)
            goto out;
        if (txlog_reader_open_mem(img, len, "seg", &rd) != 0 || txlog_reader_next(rd, &a) != 0)
            goto out;
        b = a;
        while (txlog_reader_next(rd, &b) == 0 && b.txid < last)
            ;
        txlog_reader_close(rd);
        s.first_txid = f;
        s.last_txid = last;
        s.first_time_us = a.time_us;
        s.last_time_us = b.time_us;
        s.pre_cksum = a.pre_cksum;
        s.post_cksum = b.post_cksum;
        s.size = len;
        s.xxh3 = cksum_buf(img, len);
        snprintf(key, sizeof key, "bench.db/%s/%s", idhex, manifest_seg_key(s.key, 0, f, last));
        if (manifest_add_segment(&m, &s) != 0 || rb_put(st, key, img, len) != 0)
            goto out;
        r->seg_bytes += len;
        r->nseg++;
        free(img);
        img = NULL;
    }
    if (manifest_encode(&m, &js, &len, err, sizeof err) != 0) {
        fprintf(stderr, "bench: manifest_encode: %s\n", err);
        goto out;
    }
    snprintf(key, sizeof key, "bench.db/%s/manifest.json", idhex);
    if (rb_put(st, key, js, len) != 0)
        goto out;
    free(js);
    js = NULL;
    {
        struct archive_current c = {ARCHIVE_CURRENT_FORMAT, "", lv_now_us()};
        memcpy(c.dbid, idhex, 33);
        if (archive_current_encode(&c, &js, &len) != 0 || rb_put(st, "bench.db/current.json", js, len) != 0)
            goto out;
    }
    r->build_s = now_s() - t0;
    r->db_bytes = (uint64_t)npages * 4096;

    /* 3. litevault restore (no dirty pages left by the build at the start). */
    sync();
    snprintf(out, sizeof out, "%s/out.db", dir);
    snprintf(copy, sizeof copy, "%s/copy.db", dir);
    snprintf(cmd, sizeof cmd, "'%s' restore --from '%s' --db bench.db --parallel 4 --no-integrity-check -o '%s' >/dev/null",
             g.litevault, url, out);
    progress("restore: %s", cmd);
    t0 = now_s();
    if (system(cmd) != 0) {
        fprintf(stderr, "bench: restore failed\n");
        goto out;
    }
    r->restore_s = now_s() - t0;

    /* 4. Baseline (a): download + decompress the snapshot object, in memory;
     * then (a') the same into a file, fsynced, as a restore must (both after
     * a sync, so neither starts with the other's dirty pages). */
    for (int pass = 0; pass < 3; pass++) {
    char plain[PATH_MAX + 16];
    int pfd = -1;
    snprintf(plain, sizeof plain, "%s/plain.out", dir);
    sync();
    progress("restore: baseline download + zstd -d of the snapshot object%s",
             pass == 1 ? " into a file, fsynced" : pass == 2 ? " into a file" : "");
    t0 = now_s();
    if (pass && (pfd = open(plain, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        fprintf(stderr, "bench: %s: %s\n", plain, strerror(errno));
        goto out;
    }
    {
        ZSTD_DCtx *dc = ZSTD_createDCtx();
        uint8_t *ob = malloc(1 << 20);
        size_t zr = 1;
        snprintf(key, sizeof key, "bench.db/%s/snap/0000000000000001.lvseg", idhex);
        if (!dc || !ob || store_get(st, key, 0, 0, &img, &len) != 0) {
            free(ob);
            ZSTD_freeDCtx(dc);
            goto out;
        }
        ZSTD_inBuffer in = {(uint8_t *)img + 64 + 112, lv_get64((uint8_t *)img + 64 + 72), 0};
        while (in.pos < in.size && zr != 0) {
            ZSTD_outBuffer o = {ob, 1 << 20, 0};
            zr = ZSTD_decompressStream(dc, &o, &in);
            if (ZSTD_isError(zr))
                break;
            if (pfd >= 0 && o.pos && write(pfd, ob, o.pos) != (ssize_t)o.pos) {
                fprintf(stderr, "bench: write %s: %s\n", plain, strerror(errno));
                zr = 0;
            }
        }
        free(ob);
        ZSTD_freeDCtx(dc);
        free(img);
        img = NULL;
    }
    if (pfd >= 0) {
        if (pass == 1)
            fsync(pfd);
        close(pfd);
        if (pass == 1)
            r->dlw_s = now_s() - t0;
        else
            r->dlf_s = now_s() - t0;
        unlink(plain);
    } else {
        r->dl_s = now_s() - t0;
    }
    }

    /* 5. Baseline (b): cp of the database file. */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", out, copy);
    t0 = now_s();
    if (system(cmd) != 0)
        goto out;
    r->cp_s = now_s() - t0;

    /* 6. Planning with 10 and 10,000 segments (GET manifest + decode + plan). */
    progress("restore: planning time");
    if (rb_plan_time(st, 10, &r->plan_ms[0]) != 0 || rb_plan_time(st, 10000, &r->plan_ms[1]) != 0)
        goto out;
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "bench: the restore part failed\n");
    txlog_close(l);
    manifest_free(&m);
    store_close(st);
    free(js);
    free(img);
    free(page);
    free(h);
    if (s3) {
        snprintf(cmd, sizeof cmd, "tests/s3rver.sh stop '%s' >/dev/null", s3dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench: stopping s3rver failed\n");
    }
    return rc;
}

static void print_restore(const struct restore_bench *r)
{
    printf("\nRestore from s3rver: %.0f MiB database (snapshot object %.0f MiB) + %d transactions in %d segment "
           "objects (%.1f MiB); archive built and uploaded in %.1f s\n",
           r->db_bytes / MiB, r->snap_bytes / MiB, r->ntx, r->nseg, r->seg_bytes / MiB, r->build_s);
    printf("| measure                                          |      s | vs restore |\n");
    printf("|--------------------------------------------------|-------:|-----------:|\n");
    printf("| litevault restore --parallel 4 (no integrity chk) | %6.2f |       1.00 |\n", r->restore_s);
    printf("| (a) download + zstd -d of the snapshot object    | %6.2f | %10.2f |\n", r->dl_s,
           r->dl_s > 0 ? r->restore_s / r->dl_s : 0);
    printf("| (a') the same, written to a file and fsynced     | %6.2f | %10.2f |\n", r->dlw_s,
           r->dlw_s > 0 ? r->restore_s / r->dlw_s : 0);
    printf("| (a'') the same, written to a file, no fsync      | %6.2f | %10.2f |\n", r->dlf_s,
           r->dlf_s > 0 ? r->restore_s / r->dlf_s : 0);
    printf("| (b) cp of the database file                      | %6.2f | %10.2f |\n", r->cp_s,
           r->cp_s > 0 ? r->restore_s / r->cp_s : 0);
    printf("(the last column is restore time / baseline time)\n");
    printf("  goal: restore within 1.5x of download + decompress: %.2fx of (a') (both write the database and fsync) "
           "-> %s; %.2fx of (a) (in memory, nothing written) -> %s\n",
           r->dlw_s > 0 ? r->restore_s / r->dlw_s : 0, r->dlw_s > 0 && r->restore_s <= 1.5 * r->dlw_s ? "PASS" : "MISS",
           r->dl_s > 0 ? r->restore_s / r->dl_s : 0, r->dl_s > 0 && r->restore_s <= 1.5 * r->dl_s ? "PASS" : "MISS");
    printf("Planning (GET manifest.json + decode + plan_make latest): %.2f ms with 10 segments, %.2f ms with 10,000\n",
           r->plan_ms[0], r->plan_ms[1]);
}

/* ---------------------------------------------------------------- main */

/* Whether workload n (7: the RSS part) is selected by BENCH_ONLY. */
/* ---------------------------------------------------------------- archive (8) */

/*
 * Part 10: the archiver's RPO and request counts.  The daemon is restarted
 * with one archive destination (sync-interval 1s, default compaction): s3rver
 * when tests/s3rver.sh can start it, else a file:// directory (or
 * BENCH_ARCHIVE_URL).  A writer commits one-row transactions at a steady
 * 20/s for ARCH_WRITE_S seconds while GET /metrics is polled every loop;
 * TXID base+i is the i-th commit, and its lag is the first poll that shows
 * litevault_archive_confirmed_txid >= base+i minus its commit time (poll
 * resolution ~50 ms).  Requests (litevault_archive_requests_total) are
 * counted over the writing phase and over an idle phase, and extrapolated
 * to one hour.
 */
struct arch_result {
    int ran;                      /* the part ran */
    char url[256];                /* destination */
    int n;                        /* commits measured */
    double p50, p99, max;         /* lag seconds */
    double write_s, idle_s;       /* phase durations */
    double wput, wget, wlist, wdel; /* requests in the writing phase */
    double iput, iget, ilist, idel; /* in the idle phase */
    double sput, sget;            /* between the last write and the idle phase (last manifest, compaction) */
    double settle_s;              /* how long that took */
};

/* Value of series (full text before the space) in /metrics, or -1. */
static double metric_value(const char *series)
{
    char *body = http_get("/metrics");
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

static void arch_requests(double *put, double *get, double *list, double *del)
{
    *put = metric_value("litevault_archive_requests_total{dest=\"0\",type=\"put\"}");
    *get = metric_value("litevault_archive_requests_total{dest=\"0\",type=\"get\"}");
    *list = metric_value("litevault_archive_requests_total{dest=\"0\",type=\"list\"}");
    *del = metric_value("litevault_archive_requests_total{dest=\"0\",type=\"delete\"}");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int archive_part(struct arch_result *r)
{
    const double write_s = g.quick ? 8 : 30, idle_s = g.quick ? 4 : 30, tick = 0.05;
    const char *env = getenv("BENCH_ARCHIVE_URL");
    char path[PATH_MAX + 32], series[256];
    sqlite3 *db = NULL;
    int rc = -1, cap = (int)(write_s / tick) + 16, n = 0;
    double *tc = calloc((size_t)cap, sizeof *tc), *lag = calloc((size_t)cap, sizeof *lag), p0, g0, l0, d0;
    long long base;

    memset(r, 0, sizeof *r);
    if (!tc || !lag)
        goto out;
    if (env && *env) {
        snprintf(r->url, sizeof r->url, "%s", env);
    } else if (access("tests/s3rver.sh", X_OK) == 0 && access("tests/node_modules/.bin/s3rver", X_OK) == 0) {
        char cmd[PATH_MAX + 128];
        int port = free_port();
        snprintf(g.s3dir, sizeof g.s3dir, "%s/s3", g.base);
        snprintf(cmd, sizeof cmd, "tests/s3rver.sh start %s %d lvbench >/dev/null 2>&1", g.s3dir, port);
        if (system(cmd) == 0) {
            snprintf(r->url, sizeof r->url,
                     "s3://lvbench/b?endpoint=http://127.0.0.1:%d&region=us-east-1&force-path-style=true", port);
        } else {
            g.s3dir[0] = '\0';
        }
    }
    if (!r->url[0])
        snprintf(r->url, sizeof r->url, "file://%s/archive", g.base);
    snprintf(g.archive_yaml, sizeof g.archive_yaml,
             "archive:\n  - url: \"%s\"\n    access-key-id: S3RVER\n    secret-access-key: S3RVER\n"
             "    sync-interval: 1s\n",
             r->url);
    progress("archive: restarting the daemon with destination %s and a fresh data.dir", r->url);
    if (daemon_stop() != 0)
        goto out;
    /* A fresh data.dir: the steady state of one written database, not the
     * first upload of the 1 GiB database and the others left by earlier parts
     * (one upload thread per destination serves the databases in turn). */
    snprintf(g.data, sizeof g.data, "%s/data-archive", g.base);
    if (mkdir(g.data, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "bench: mkdir %s: %s\n", g.data, strerror(errno));
        goto out;
    }
    if (daemon_start() != 0)
        goto out;
    snprintf(path, sizeof path, "%s/w8", g.mnt);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/w8/rpo.db", g.mnt);
    if (db_open(path, &db) != 0 || db_modes(db, "wal", "NORMAL") != 0 ||
        sql_exec(db, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)") != 0)
        goto out;
    /* let the lineage start and the first upload settle */
    snprintf(series, sizeof series, "litevault_archive_confirmed_txid{dest=\"0\",db=\"w8/rpo.db\"}");
    for (double t0 = now_s(); now_s() - t0 < 20;) {
        base = status_txid("w8/rpo.db");
        if (base > 0 && metric_value(series) >= (double)base)
            break;
        usleep(100000);
    }
    base = status_txid("w8/rpo.db");
    arch_requests(&p0, &g0, &l0, &d0);
    progress("archive: %g s of 20 commits/s", write_s);
    double start = now_s(), next = start, conf = 0;
    int done = 0;
    while (now_s() - start < write_s && n < cap) {
        if (sql_exec(db, "INSERT INTO t(v) VALUES(randomblob(200))") != 0)
            goto out;
        tc[n++] = now_s();
        conf = metric_value(series);
        for (double now = now_s(); done < n && conf >= (double)(base + done + 1); done++)
            lag[done] = now - tc[done];
        next += tick;
        double w = next - now_s();
        if (w > 0)
            usleep((useconds_t)(w * 1e6));
    }
    r->write_s = now_s() - start;
    double p1, g1, l1, d1;
    arch_requests(&p1, &g1, &l1, &d1);
    r->wput = p1 - p0, r->wget = g1 - g0, r->wlist = l1 - l0, r->wdel = d1 - d0;
    for (double t0 = now_s(); done < n && now_s() - t0 < 30;) {
        conf = metric_value(series);
        for (double now = now_s(); done < n && conf >= (double)(base + done + 1); done++)
            lag[done] = now - tc[done];
        usleep((useconds_t)(tick * 1e6));
    }
    if (done < n) {
        fprintf(stderr, "bench: the archive confirmed only %d of %d commits within 30 s\n", done, n);
        goto out;
    }
    /* Settle: the last manifest and the compaction of the last 30 s window
     * (default levels [30s, 5m, 1h]) happen once after the writes stop.
     * Wait at least 35 s, then until no request was made for 5 s (at most
     * 60 s in all). */
    double ps = p1, gs = g1, t_settle = now_s();
    arch_requests(&p0, &g0, &l0, &d0);
    for (double t0 = now_s(), quiet = now_s(); now_s() - t0 < 60 && (now_s() - t0 < 35 || now_s() - quiet < 5);) {
        usleep(250000);
        arch_requests(&p1, &g1, &l1, &d1);
        if (p1 + g1 + l1 + d1 != p0 + g0 + l0 + d0) {
            quiet = now_s();
            p0 = p1, g0 = g1, l0 = l1, d0 = d1;
        }
    }
    r->sput = p0 - ps, r->sget = g0 - gs, r->settle_s = now_s() - t_settle;
    arch_requests(&p0, &g0, &l0, &d0);
    progress("archive: %g s idle", idle_s);
    start = now_s();
    usleep((useconds_t)(idle_s * 1e6));
    r->idle_s = now_s() - start;
    arch_requests(&p1, &g1, &l1, &d1);
    r->iput = p1 - p0, r->iget = g1 - g0, r->ilist = l1 - l0, r->idel = d1 - d0;
    qsort(lag, (size_t)n, sizeof *lag, cmp_double);
    r->n = n;
    r->p50 = lag[n / 2];
    r->p99 = lag[(size_t)((n - 1) * 0.99)];
    r->max = lag[n - 1];
    r->ran = 1;
    rc = 0;
out:
    if (db)
        sqlite3_close(db);
    free(tc);
    free(lag);
    return rc;
}

static void print_archive(const struct arch_result *r)
{
    double wh = 3600.0 / r->write_s, ih = 3600.0 / r->idle_s;
    /* The writing phase costs one segment PUT per sync interval (1 s), plus
     * one manifest PUT per manifest-interval (1 min) and one compacted object
     * (+ manifest) per closed 30 s window.  A window of T seconds holds up to
     * floor(T) + 1 sync ticks. */
    double ticks = (double)(long)r->write_s + 1, mput = (double)(long)(r->write_s / 60.0),
           cput = 2 * (double)(long)(r->write_s / 30.0);
    int put_ok = r->wput <= ticks + mput + cput;
    printf("\nArchive (sync-interval 1s, destination %s)\n", r->url);
    printf("  RPO, commit -> confirmed upload, %d commits at 20/s: p50 %.2f s, p99 %.2f s, max %.2f s  "
           "(goal p99 <= 2.00 s: %s)\n",
           r->n, r->p50, r->p99, r->max, r->p99 <= 2.0 ? "ok" : "MISS");
    printf("  requests per hour, writing database: PUT %.0f  GET %.0f  LIST %.0f  DELETE %.0f  "
           "(%.0f PUTs in %.1f s: goal <= 1 segment PUT per sync tick (%.0f ticks) + %.0f manifest + %.0f compaction: "
           "%s; LIST 0: %s)\n",
           r->wput * wh, r->wget * wh, r->wlist * wh, r->wdel * wh, r->wput, r->write_s, ticks, mput, cput,
           put_ok ? "ok" : "MISS", r->wlist == 0 ? "ok" : "MISS");
    printf("  after the last write, once (final segment, manifest, compaction of the last window): PUT %.0f  GET %.0f "
           "in %.1f s\n",
           r->sput, r->sget, r->settle_s);
    printf("  requests per hour, idle database (measured over %.0f s after that): PUT %.0f  GET %.0f  LIST %.0f  "
           "DELETE %.0f  (goal 0: %s)\n",
           r->idle_s, r->iput * ih, r->iget * ih, r->ilist * ih, r->idel * ih,
           r->iput + r->iget + r->ilist + r->idel == 0 ? "ok" : "MISS");
}

/* ---------------------------------------------------------------- capture lag (11) */

/*
 * Part 11: capture lag.  A writer commits one-row transactions into a WAL
 * database (synchronous=NORMAL) on the mount at a steady LAG_RATE per
 * second for LAG_N commits, noting the wall-clock time (CLOCK_REALTIME, in
 * microseconds) right after each COMMIT returns.  The daemon stamps each
 * record with the time it logged it; TXID base+i is the i-th commit, so
 * its lag is that stamp minus the commit's return (0 when the record was
 * logged before the commit returned, as on the path through the daemon).
 * The records come from `litevault log ls --json` after the run.
 */
#define LAG_RATE 1000
#define LAG_N 3000

struct lag_result {
    int n;                  /* commits matched with their records */
    double p50, p99, max;   /* lag in microseconds */
};

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int lag_part(struct lag_result *r)
{
    char path[PATH_MAX + 32], cmd[PATH_MAX * 3];
    int64_t *done = calloc(LAG_N, sizeof *done);
    double *lag = calloc(LAG_N, sizeof *lag);
    sqlite3 *db = NULL;
    long long base;
    int rc = 1;

    memset(r, 0, sizeof *r);
    if (!done || !lag)
        goto out;
    snprintf(path, sizeof path, "%s/lag.db", g.mnt);
    if (db_open(path, &db) != 0 || db_modes(db, "wal", "NORMAL") != 0 ||
        sql_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)") != 0)
        goto out;
    base = status_txid("lag.db");
    if (base < 0)
        goto out;
    double t0 = now_s();
    for (int i = 0; i < LAG_N; i++) {
        double at = t0 + (double)i / LAG_RATE;
        while (now_s() < at)
            ;
        if (sql_exec(db, "INSERT INTO t(v) VALUES(1)") != 0)
            goto out;
        done[i] = wall_us();
    }
    sqlite3_close(db);
    db = NULL;
    status_txid("lag.db"); /* /status logs whatever the WAL still holds */
    snprintf(cmd, sizeof cmd, "'%s' log ls -c '%s' --db lag.db --txid %lld --json", g.litevault, g.cfg, base + 1);
    FILE *f = popen(cmd, "r");
    if (!f)
        goto out;
    json_t *j = json_loadf(f, 0, NULL);
    pclose(f);
    if (!j || !json_is_array(j)) {
        fprintf(stderr, "bench: %s gave no JSON array\n", cmd);
        json_decref(j);
        goto out;
    }
    size_t k;
    json_t *o;
    json_array_foreach(j, k, o) {
        long long tx = json_integer_value(json_object_get(o, "txid"));
        long long t = json_integer_value(json_object_get(o, "time_us"));
        long long i = tx - base - 1;
        if (i < 0 || i >= LAG_N)
            continue;
        double l = (double)(t - done[i]);
        lag[r->n++] = l > 0 ? l : 0;
    }
    json_decref(j);
    if (r->n == 0)
        goto out;
    qsort(lag, (size_t)r->n, sizeof *lag, dbl_cmp);
    r->p50 = lag[r->n / 2];
    r->p99 = lag[(size_t)(r->n * 0.99)];
    r->max = lag[r->n - 1];
    rc = 0;
out:
    if (db)
        sqlite3_close(db);
    free(done);
    free(lag);
    return rc;
}

static void print_lag(const struct lag_result *r)
{
    printf("\nCapture lag (WAL, synchronous=NORMAL, %d commits at %d/s): from a commit's return to its record "
           "in the log\n", LAG_N, LAG_RATE);
    printf("  %d records: p50 %.0f us, p99 %.0f us, max %.0f us  (goal: p99 <= 1000 us -> %s)\n", r->n, r->p50,
           r->p99, r->max, r->n == LAG_N && r->p99 <= 1000 ? "PASS" : "MISS");
}

static int selected(int n)
{
    const char *only = getenv("BENCH_ONLY");
    if (only == NULL || *only == '\0')
        return 1;
    for (const char *p = only; *p;) {
        char *e;
        long v = strtol(p, &e, 10);
        if (e == p) {
            p++;
            continue;
        }
        if (v == n)
            return 1;
        p = e;
    }
    return 0;
}

static void cleanup(void)
{
    if (g.pid > 0)
        daemon_stop();
    if (g.base[0] && !g.keep)
        nftw(g.base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    else if (g.base[0])
        fprintf(stderr, "bench: kept %s\n", g.base);
}

int main(void)
{
    struct side_result nat[NWORK], mnt[NWORK];
    struct rss_result rss;
    struct export_result exr;
    int have_rss_db = 0;
    const char *parent = getenv("BENCH_DIR");
    int rc = 1;

    memset(nat, 0, sizeof nat);
    memset(mnt, 0, sizeof mnt);
    setvbuf(stdout, NULL, _IOLBF, 0);
    g.litevault = getenv("LITEVAULT");
    if (g.litevault == NULL || access(g.litevault, X_OK) != 0) {
        fprintf(stderr, "bench: set LITEVAULT to the litevault binary (e.g. make bench)\n");
        return 1;
    }
    g.quick = getenv("BENCH_QUICK") && strcmp(getenv("BENCH_QUICK"), "0") != 0;
    g.keep = getenv("BENCH_KEEP") && strcmp(getenv("BENCH_KEEP"), "0") != 0;
    g.warm_s = g.quick ? 0.2 : 0.5;
    g.run_s = g.quick ? 0.5 : 3.0;
    if (getenv("BENCH_SECS") && atof(getenv("BENCH_SECS")) > 0)
        g.run_s = atof(getenv("BENCH_SECS"));
    if (parent == NULL)
        parent = getenv("TMPDIR");
    if (parent == NULL)
        parent = "/tmp";
    {
        char tmpl[PATH_MAX];
        snprintf(tmpl, sizeof tmpl, "%s/lvbench.XXXXXX", parent);
        if (mkdtemp(tmpl) == NULL || realpath(tmpl, g.base) == NULL) {
            fprintf(stderr, "bench: mkdtemp %s: %s\n", tmpl, strerror(errno));
            return 1;
        }
    }
    snprintf(g.native, sizeof g.native, "%s/native", g.base);
    snprintf(g.mnt, sizeof g.mnt, "%s/mnt", g.base);
    snprintf(g.data, sizeof g.data, "%s/data", g.base);
    snprintf(g.cfg, sizeof g.cfg, "%s/config.yml", g.base);
    snprintf(g.log, sizeof g.log, "%s/daemon.log", g.base);
    if (mkdir(g.native, 0755) != 0 || mkdir(g.mnt, 0755) != 0 || mkdir(g.data, 0755) != 0) {
        fprintf(stderr, "bench: mkdir under %s: %s\n", g.base, strerror(errno));
        goto out_cleanup;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || (g.curl = curl_easy_init()) == NULL) {
        fprintf(stderr, "bench: libcurl initialisation failed\n");
        goto out_cleanup;
    }
    progress("starting %s mount -c %s", g.litevault, g.cfg);
    if (daemon_start() != 0)
        goto out_cleanup;
    print_facts();
    if (strcmp(fs_name(g.base), "tmpfs") == 0)
        printf("WARNING: %s is tmpfs: fsync is free there, so the ratios mean little\n\n", g.base);

    for (size_t i = 0; i < NWORK; i++) {
        if (!selected((int)i + 1))
            continue;
        progress("workload %s", g_workloads[i].label);
        if (run_workload(&g_workloads[i], (int)i + 1, &nat[i], &mnt[i]) != 0)
            goto out_cleanup;
    }
    print_table(nat, mnt);

    if (!g.quick && selected(7)) {
        if (rss_part(&rss) != 0)
            goto out_cleanup;
        print_rss(&rss);
        have_rss_db = 1;
    } else {
        printf("\n(BENCH_QUICK: the 1 GiB RSS part is skipped)\n");
    }
    if (!g.quick && selected(8)) {
        struct restore_bench rb;
        memset(&rb, 0, sizeof rb);
        if (restore_part(&rb) != 0)
            goto out_cleanup;
        print_restore(&rb);
    } else {
        printf("\n(BENCH_QUICK: the restore part is skipped)\n");
    }
    if (selected(9)) {
        if (export_part(&exr, have_rss_db) != 0)
            goto out_cleanup;
        print_export(&exr);
    }
    printf("\ndaemon VmRSS now %.1f MiB, VmHWM %.1f MiB\n", status_kib(g.pid, "VmRSS") / 1024.0,
           status_kib(g.pid, "VmHWM") / 1024.0);
    if (selected(11)) {
        struct lag_result lr;
        if (lag_part(&lr) != 0)
            goto out_cleanup;
        print_lag(&lr);
    }
    if (selected(10)) {
        struct arch_result ar;
        if (archive_part(&ar) != 0)
            goto out_cleanup;
        print_archive(&ar);
    }
    rc = 0;

out_cleanup:
    if (g.pid > 0) {
        progress("stopping the daemon (SIGTERM)");
        if (daemon_stop() != 0)
            rc = 1;
    }
    {
        struct stat st;
        if (stat(g.log, &st) == 0 && st.st_size > 0) {
            fprintf(stderr, "bench: daemon log (%s, last lines):\n", g.log);
            show_log(20);
        }
    }
    if (g.curl)
        curl_easy_cleanup(g.curl);
    curl_global_cleanup();
    if (g.s3dir[0]) {
        char cmd[PATH_MAX + 64];
        snprintf(cmd, sizeof cmd, "tests/s3rver.sh stop %s >/dev/null 2>&1", g.s3dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench: could not stop s3rver in %s\n", g.s3dir);
    }
    cleanup();
    return rc;
}
