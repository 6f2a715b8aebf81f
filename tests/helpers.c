/*
 * helpers.c -- shared helpers for the Criterion test suites (see helpers.h).
 *
 * NODE LIFE CYCLE
 *   lvnode_init   mkdtemp /tmp/lvit.XXXXXX, write <dir>/config.yml (fuse.dir =
 *                 <dir>/mnt, data.dir = <dir>/data, a free HTTP port, debug-free
 *                 info logging) plus the caller's extra YAML.
 *   lvnode_start  fork + exec "$LITEVAULT mount -c CONFIG" with stdout and stderr
 *                 appended to <dir>/daemon.log.  The child asks for SIGTERM when
 *                 the test process dies (PR_SET_PDEATHSIG), so a crashed test does
 *                 not leave a live mount behind.  Ready = the mount point appears
 *                 in /proc/self/mountinfo with a fuse type.
 *   lvnode_stop   SIGTERM, wait for exit status 0 and for the mount to go away.
 *   lvnode_kill9  SIGKILL then `fusermount3 -uz` (the kernel keeps a dead mount).
 *   lvnode_cleanup  never asserts (safe in Criterion .fini): stops whatever is
 *                 still running, unmounts, removes <dir> (kept when LV_KEEP=1).
 *
 * All assertions use Criterion's cr_assert family, so these helpers must be
 * called from a test's own process (not from a forked child).
 *
 * snapshot_db() does NOT use sqlite3_backup although helpers.h says so: the
 * backup API leaves three header fields of page 1 different from the source
 * (file change counter at offset 24 and version-valid-for at 92, both taken
 * from the destination's own counter + 1, and the schema cookie at 40, set to
 * the destination's old cookie + 1), so a backup copy never equals the
 * replayed log byte for byte.  sqlite3_serialize() on an ordinary database
 * reads every page through the pager (database file + committed WAL frames)
 * inside one read transaction: that is the logical database exactly, page
 * layout and header included.
 */
#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>
#include <sqlite3.h>
#include <xxhash.h>

#include "base/cksum.h"

/* ------------------------------------------------------------ small utils */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* 1 if path is currently a mount point of this mount namespace. */
static int is_mounted(const char *path)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[4096];
    int found = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        /* id parent maj:min root mountpoint ... */
        char mp[4096];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && strcmp(mp, path) == 0) {
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

/* Read a whole file (malloc'ed, NUL-terminated); NULL if it cannot be read. */
static char *slurp(const char *path, size_t *lenp)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (!f)
        return NULL;
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 131072;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[len] = 0;
    if (lenp)
        *lenp = len;
    return buf;
}

/* Print the last bytes of the daemon log to stderr (for failure diagnosis). */
static void dump_log_tail(const struct lvnode *n)
{
    size_t len = 0;
    char *t = slurp(n->logpath, &len);
    if (!t)
        return;
    size_t from = len > 4000 ? len - 4000 : 0;
    fprintf(stderr, "---- %s (tail) ----\n%s\n---- end ----\n", n->logpath, t + from);
    free(t);
}

/* fusermount3 -uz path, silently. */
static void lazy_unmount(const char *path)
{
    pid_t p = fork();
    if (p == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("fusermount3", "fusermount3", "-uz", path, (char *)NULL);
        _exit(127);
    }
    if (p > 0)
        waitpid(p, NULL, 0);
    for (int i = 0; i < 100 && is_mounted(path); i++)
        sleep_ms(20);
    if (is_mounted(path))
        umount2(path, MNT_DETACH);
}

/* Wait up to ms for pid to exit; returns the wait status, or -1 on timeout. */
static int wait_exit(pid_t pid, int ms)
{
    int64_t end = now_ms() + ms;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 && errno != EINTR)
            return -2; /* not our child any more */
        if (now_ms() > end)
            return -1;
        sleep_ms(10);
    }
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 255;
}

/* ------------------------------------------------------------ nodes */

int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    int port = 0;
    cr_assert(fd >= 0, "socket: %s", strerror(errno));
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    cr_assert(port > 0, "cannot find a free port");
    return port;
}

void lvnode_init(struct lvnode *n, const char *extra_yaml)
{
    memset(n, 0, sizeof *n);
    snprintf(n->dir, sizeof n->dir, "/tmp/lvit.XXXXXX");
    cr_assert(mkdtemp(n->dir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(n->mnt, sizeof n->mnt, "%s/mnt", n->dir);
    snprintf(n->data, sizeof n->data, "%s/data", n->dir);
    snprintf(n->config, sizeof n->config, "%s/config.yml", n->dir);
    snprintf(n->logpath, sizeof n->logpath, "%s/daemon.log", n->dir);
    snprintf(n->http, sizeof n->http, "127.0.0.1:%d", free_port());
    n->pid = 0;

    FILE *f = fopen(n->config, "w");
    cr_assert(f != NULL, "cannot write %s: %s", n->config, strerror(errno));
    fprintf(f,
            "fuse:\n"
            "  dir: %s\n"
            "data:\n"
            "  dir: %s\n"
            "http:\n"
            "  addr: %s\n"
            "log:\n"
            "  level: info\n"
            "  format: text\n",
            n->mnt, n->data, n->http);
    if (extra_yaml && *extra_yaml) {
        fputs(extra_yaml, f);
        if (extra_yaml[strlen(extra_yaml) - 1] != '\n')
            fputc('\n', f);
    }
    cr_assert(fclose(f) == 0, "cannot write %s", n->config);
}

static const char *litevault_bin(void)
{
    const char *b = getenv("LITEVAULT");
    cr_assert(b && *b, "LITEVAULT is not set (run through `make it-test`)");
    return b;
}

static pid_t spawn_daemon(struct lvnode *n)
{
    const char *bin = litevault_bin();
    fflush(NULL);
    pid_t p = fork();
    cr_assert(p >= 0, "fork: %s", strerror(errno));
    if (p == 0) {
        int fd = open(n->logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            if (fd > 2)
                close(fd);
        }
        int nfd = open("/dev/null", O_RDONLY);
        if (nfd >= 0) {
            dup2(nfd, 0);
            if (nfd > 0)
                close(nfd);
        }
        /* End the daemon (cleanly) if the test process dies. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execl(bin, "litevault", "mount", "-c", n->config, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    return p;
}

void lvnode_start(struct lvnode *n)
{
    cr_assert(n->pid == 0, "node %s already running", n->dir);
    n->pid = spawn_daemon(n);
    int64_t end = now_ms() + 10000;
    for (;;) {
        if (is_mounted(n->mnt)) {
            struct stat st;
            if (stat(n->mnt, &st) == 0)
                return;
        }
        int st;
        pid_t r = waitpid(n->pid, &st, WNOHANG);
        if (r == n->pid) {
            n->pid = 0;
            dump_log_tail(n);
            cr_assert_fail("daemon exited during start-up with status %d (log %s)", status_code(st), n->logpath);
        }
        if (now_ms() > end) {
            kill(n->pid, SIGKILL);
            waitpid(n->pid, NULL, 0);
            n->pid = 0;
            lazy_unmount(n->mnt);
            dump_log_tail(n);
            cr_assert_fail("daemon did not mount %s within 10 s", n->mnt);
        }
        sleep_ms(10);
    }
}

int lvnode_start_expect_fail(struct lvnode *n)
{
    cr_assert(n->pid == 0, "node %s already running", n->dir);
    pid_t p = spawn_daemon(n);
    int st = wait_exit(p, 10000);
    if (st == -1) {
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
        if (is_mounted(n->mnt))
            lazy_unmount(n->mnt);
        return -1;
    }
    if (is_mounted(n->mnt))
        lazy_unmount(n->mnt);
    return status_code(st);
}

void lvnode_stop(struct lvnode *n)
{
    cr_assert(n->pid > 0, "node %s is not running", n->dir);
    pid_t p = n->pid;
    kill(p, SIGTERM);
    int st = wait_exit(p, 10000);
    if (st == -1) {
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
        n->pid = 0;
        lazy_unmount(n->mnt);
        dump_log_tail(n);
        cr_assert_fail("daemon did not exit within 10 s of SIGTERM");
    }
    n->pid = 0;
    for (int i = 0; i < 500 && is_mounted(n->mnt); i++)
        sleep_ms(20);
    if (is_mounted(n->mnt)) {
        lazy_unmount(n->mnt);
        dump_log_tail(n);
        cr_assert_fail("mount %s still present after the daemon exited", n->mnt);
    }
    if (status_code(st) != 0)
        dump_log_tail(n);
    cr_assert_eq(status_code(st), 0, "daemon exited with status %d after SIGTERM (log %s)", status_code(st),
                 n->logpath);
}

void lvnode_kill9(struct lvnode *n)
{
    if (n->pid > 0) {
        kill(n->pid, SIGKILL);
        waitpid(n->pid, NULL, 0);
        n->pid = 0;
    }
    if (is_mounted(n->mnt))
        lazy_unmount(n->mnt);
}

void lvnode_cleanup(struct lvnode *n)
{
    if (!n->dir[0])
        return;
    if (n->pid > 0) {
        kill(n->pid, SIGTERM);
        if (wait_exit(n->pid, 10000) == -1) {
            kill(n->pid, SIGKILL);
            waitpid(n->pid, NULL, 0);
        }
        n->pid = 0;
    }
    if (n->mnt[0] && is_mounted(n->mnt))
        lazy_unmount(n->mnt);
    const char *keep = getenv("LV_KEEP");
    if (!(keep && *keep == '1') && strncmp(n->dir, "/tmp/lvit.", 10) == 0 && !is_mounted(n->mnt)) {
        char *out = NULL;
        run_cmd(&out, "rm -rf '%s'", n->dir);
        free(out);
    }
    n->dir[0] = 0;
}

char *lvnode_path(const struct lvnode *n, const char *name)
{
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s", n->mnt, name) >= 0);
    return p;
}

/* ------------------------------------------------------------ commands */

int run_cmd(char **out, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    cr_assert(r >= 0, "vasprintf");
    if (out)
        *out = NULL;

    int pfd[2] = {-1, -1};
    if (out)
        cr_assert(pipe2(pfd, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t p = fork();
    cr_assert(p >= 0, "fork: %s", strerror(errno));
    if (p == 0) {
        if (out) {
            dup2(pfd[1], 1);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    if (out) {
        close(pfd[1]);
        size_t len = 0, cap = 4096;
        char *buf = malloc(cap + 1);
        cr_assert(buf != NULL);
        for (;;) {
            if (cap - len < 4096) {
                cap *= 2;
                buf = realloc(buf, cap + 1);
                cr_assert(buf != NULL);
            }
            ssize_t k = read(pfd[0], buf + len, cap - len);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                break;
            len += (size_t)k;
        }
        buf[len] = 0;
        close(pfd[0]);
        *out = buf;
    }
    int st;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR)
        ;
    return status_code(st);
}

int lvnode_replay(const struct lvnode *n, const char *db, uint64_t txid, const char *outpath)
{
    char tx[64] = "";
    if (txid)
        snprintf(tx, sizeof tx, " --txid %llu", (unsigned long long)txid);
    unlink(outpath);
    return run_cmd(NULL, "\"$LITEVAULT\" log replay -c '%s' --db '%s'%s -o '%s' >/dev/null", n->config, db, tx, outpath);
}

/* Parse `log ls --json` output into a jansson array (owned by caller) or NULL. */
static json_t *log_ls_json(const struct lvnode *n, const char *db)
{
    char *out = NULL;
    int rc = run_cmd(&out, "\"$LITEVAULT\" log ls -c '%s' --db '%s' --json 2>/dev/null", n->config, db);
    json_t *j = NULL;
    if (rc == 0 && out)
        j = json_loads(out, 0, NULL);
    free(out);
    if (j && !json_is_array(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

uint64_t lvnode_last_txid(const struct lvnode *n, const char *db)
{
    json_t *j = log_ls_json(n, db);
    uint64_t t = 0;
    if (j && json_array_size(j) > 0) {
        json_t *last = json_array_get(j, json_array_size(j) - 1);
        t = (uint64_t)json_integer_value(json_object_get(last, "txid"));
    }
    json_decref(j);
    return t;
}

static uint64_t parse_hex64(const char *s)
{
    return s ? strtoull(s, NULL, 16) : 0;
}

int lvnode_log_records(const struct lvnode *n, const char *db, struct lvrec **out)
{
    *out = NULL;
    json_t *j = log_ls_json(n, db);
    if (!j)
        return -1;
    size_t cnt = json_array_size(j);
    struct lvrec *r = calloc(cnt ? cnt : 1, sizeof *r);
    cr_assert(r != NULL);
    for (size_t i = 0; i < cnt; i++) {
        json_t *o = json_array_get(j, i);
        r[i].txid = (uint64_t)json_integer_value(json_object_get(o, "txid"));
        r[i].time_us = json_integer_value(json_object_get(o, "time_us"));
        r[i].pages = (uint32_t)json_integer_value(json_object_get(o, "pages"));
        r[i].db_pages = (uint32_t)json_integer_value(json_object_get(o, "db_pages"));
        r[i].page_size = (uint32_t)json_integer_value(json_object_get(o, "page_size"));
        r[i].pre_checksum = parse_hex64(json_string_value(json_object_get(o, "pre_checksum")));
        r[i].post_checksum = parse_hex64(json_string_value(json_object_get(o, "post_checksum")));
        r[i].snapshot = json_is_true(json_object_get(o, "snapshot"));
        r[i].recovered = json_is_true(json_object_get(o, "recovered"));
    }
    json_decref(j);
    *out = r;
    return (int)cnt;
}

int lvnode_db_status(const struct lvnode *n, const char *db, struct lvdbstat *st)
{
    char *out = NULL;
    memset(st, 0, sizeof *st);
    int rc = run_cmd(&out, "\"$LITEVAULT\" status -c '%s' --json 2>/dev/null", n->config);
    json_t *j = (rc == 0 && out) ? json_loads(out, 0, NULL) : NULL;
    free(out);
    if (!j)
        return -1;
    int found = 0;
    json_t *dbs = json_object_get(j, "databases");
    for (size_t i = 0; i < json_array_size(dbs); i++) {
        json_t *o = json_array_get(dbs, i);
        const char *name = json_string_value(json_object_get(o, "name"));
        if (!name || strcmp(name, db) != 0)
            continue;
        found = 1;
        st->txid = (uint64_t)json_integer_value(json_object_get(o, "txid"));
        st->checksum = parse_hex64(json_string_value(json_object_get(o, "checksum")));
        st->page_size = (uint32_t)json_integer_value(json_object_get(o, "page_size"));
        st->pages = (uint32_t)json_integer_value(json_object_get(o, "pages"));
        const char *jm = json_string_value(json_object_get(o, "journal_mode"));
        const char *s = json_string_value(json_object_get(o, "status"));
        snprintf(st->journal_mode, sizeof st->journal_mode, "%s", jm ? jm : "");
        snprintf(st->status, sizeof st->status, "%s", s ? s : "");
        st->last_commit_us = json_integer_value(json_object_get(o, "last_commit_us"));
        break;
    }
    json_decref(j);
    return found;
}

char *lvnode_log_text(const struct lvnode *n)
{
    char *t = slurp(n->logpath, NULL);
    if (!t)
        t = strdup("");
    cr_assert(t != NULL);
    return t;
}

int lvnode_log_contains(const struct lvnode *n, const char *needle)
{
    char *t = lvnode_log_text(n);
    int r = strstr(t, needle) != NULL;
    free(t);
    return r;
}

/* ------------------------------------------------------------ files */

/* Page size from a 100-byte SQLite header; 0 if not a valid header. */
static uint32_t hdr_page_size(const unsigned char *h)
{
    if (memcmp(h, "SQLite format 3", 16) != 0)
        return 0;
    uint32_t ps = ((uint32_t)h[16] << 8) | h[17];
    if (ps == 1)
        ps = 65536;
    if (ps < 512 || ps > 65536 || (ps & (ps - 1)))
        return 0;
    return ps;
}

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint64_t file_db_checksum(const char *path)
{
    int fd = open(path, O_RDONLY);
    cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
    struct stat st;
    cr_assert(fstat(fd, &st) == 0);
    unsigned char h[100];
    if (st.st_size < 100 || pread(fd, h, 100, 0) != 100) {
        close(fd);
        return 0;
    }
    uint32_t ps = hdr_page_size(h);
    cr_assert(ps != 0, "%s does not start with a valid SQLite header", path);
    /* As SQLite: the in-header size when valid, else the file size. */
    uint64_t npages = (uint64_t)st.st_size / ps;
    uint32_t hsz = be32(h + 28);
    if (hsz != 0 && be32(h + 24) == be32(h + 92))
        npages = hsz;
    unsigned char *buf = malloc(ps);
    cr_assert(buf != NULL);
    uint64_t total = 0;
    for (uint64_t p = 1; p <= npages; p++) {
        ssize_t r = pread(fd, buf, ps, (off_t)((p - 1) * ps));
        if (r < (ssize_t)ps) /* beyond EOF reads as zeros */
            memset(buf + (r > 0 ? r : 0), 0, ps - (size_t)(r > 0 ? r : 0));
        total ^= cksum_page((uint32_t)p, buf, ps);
    }
    free(buf);
    close(fd);
    return total;
}

int files_equal(const char *a, const char *b)
{
    size_t la = 0, lb = 0;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    int eq = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return eq;
}

int files_first_diff(const char *a, const char *b, long long *offset)
{
    size_t la = 0, lb = 0;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    int r;
    *offset = -1;
    if (!x || !y) {
        r = -1;
    } else {
        size_t m = la < lb ? la : lb, i;
        for (i = 0; i < m && x[i] == y[i]; i++)
            ;
        if (i < m || la != lb) {
            *offset = (long long)i;
            r = 1;
        } else {
            r = 0;
        }
    }
    free(x);
    free(y);
    return r;
}

/* ------------------------------------------------------------ SQL */

static sqlite3 *open_db(const char *path)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, NULL);
    if (rc != SQLITE_OK) {
        const char *m = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        char msg[512];
        snprintf(msg, sizeof msg, "%s", m);
        sqlite3_close(db);
        cr_assert_fail("sqlite3_open %s: %s", path, msg);
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
    sqlite3 *db = open_db(path);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK && !allow_fail) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        sqlite3_close(db);
        cr_assert_fail("sql_exec(%s): %s: rc=%d %s", path, sql, rc, msg);
    }
    sqlite3_free(err);
    sqlite3_close(db);
    return rc;
}

long long sql_int(const char *path, const char *sql)
{
    sqlite3 *db = open_db(path);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(db));
        sqlite3_close(db);
        cr_assert_fail("sql_int(%s): %s: %s", path, sql, msg);
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        sqlite3_close(db);
        cr_assert_fail("sql_int(%s): %s: no row (rc=%d %s)", path, sql, rc, msg);
    }
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
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
    sqlite3 *db = open_db(path);
    sqlite3_stmt *tl = NULL;
    XXH3_state_t *h = XXH3_createState();
    cr_assert(h != NULL);
    XXH3_64bits_reset(h);
    cr_assert(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
    int rc = sqlite3_prepare_v2(db,
                                "SELECT name, coalesce(sql,'') FROM sqlite_master WHERE type='table' "
                                "AND name NOT LIKE 'sqlite_stat%' ORDER BY name",
                                -1, &tl, NULL);
    cr_assert(rc == SQLITE_OK, "sql_content_hash(%s): %s", path, sqlite3_errmsg(db));
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
            cr_assert(rc == SQLITE_OK, "sql_content_hash(%s): %s", path, sqlite3_errmsg(db));
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
    sqlite3 *db = open_db(path);
    sqlite3_stmt *st = NULL;
    char *q = sqlite3_mprintf("PRAGMA wal_checkpoint(%s)", mode);
    int rc = sqlite3_prepare_v2(db, q, -1, &st, NULL);
    sqlite3_free(q);
    cr_assert(rc == SQLITE_OK, "checkpoint %s on %s: %s", mode, path, sqlite3_errmsg(db));
    rc = sqlite3_step(st);
    cr_assert(rc == SQLITE_ROW, "checkpoint %s on %s: rc=%d %s", mode, path, rc, sqlite3_errmsg(db));
    int busy = sqlite3_column_int(st, 0);
    int logf = sqlite3_column_int(st, 1), done = sqlite3_column_int(st, 2);
    sqlite3_finalize(st);
    sqlite3_close(db);
    cr_assert(busy == 0, "checkpoint %s on %s was blocked (log %d, checkpointed %d)", mode, path, logf, done);
    cr_assert(logf == done, "checkpoint %s on %s incomplete (log %d, checkpointed %d)", mode, path, logf, done);
}

/* First row, first column of sql as text (malloc'ed). */
static char *sql_text(const char *path, const char *sql)
{
    sqlite3 *db = open_db(path);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    cr_assert(rc == SQLITE_OK, "%s: %s: %s", path, sql, sqlite3_errmsg(db));
    char *r = NULL;
    if (sqlite3_step(st) == SQLITE_ROW)
        r = strdup(sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
    else
        r = strdup(sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return r;
}

uint64_t lvnode_check_db(const struct lvnode *n, const char *db)
{
    char rp[600], snap[600], esc[256];
    char *path = lvnode_path(n, db);
    size_t i;
    for (i = 0; db[i] && i < sizeof esc - 1; i++)
        esc[i] = db[i] == '/' ? '_' : db[i];
    esc[i] = 0;
    snprintf(rp, sizeof rp, "%s/replay-%s", n->dir, esc);
    snprintf(snap, sizeof snap, "%s/snap-%s", n->dir, esc);
    /* Old copies may carry a -wal from an earlier integrity check. */
    run_cmd(NULL, "rm -f '%s' '%s-wal' '%s-shm' '%s' '%s-wal' '%s-shm'", rp, rp, rp, snap, snap, snap);

    int rc = lvnode_replay(n, db, 0, rp);
    if (rc != 0)
        dump_log_tail(n);
    cr_assert_eq(rc, 0, "%s: log replay failed with status %d", db, rc);

    unsigned char h[100] = {0};
    int fd = open(path, O_RDONLY);
    cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
    ssize_t hr = pread(fd, h, sizeof h, 0);
    close(fd);
    cr_assert(hr == 100, "%s: short header", path);
    int wal = h[18] == 2;
    const char *ref = path;
    if (wal) {
        cr_assert(snapshot_db(path, snap) == 0, "%s: snapshot_db failed", db);
        ref = snap;
    }
    long long off = -1;
    int d = files_first_diff(rp, ref, &off);
    if (d != 0) {
        struct stat s1, s2;
        stat(rp, &s1);
        stat(ref, &s2);
        uint32_t ps = hdr_page_size(h);
        cr_assert_fail("%s (%s mode): replay differs from the %s at byte %lld (page %lld of %u bytes); "
                       "sizes %lld vs %lld; checksums replay %016llx, db %016llx",
                       db, wal ? "WAL" : "rollback", wal ? "snapshot" : "database file", off,
                       ps ? off / ps + 1 : -1, ps, (long long)s1.st_size, (long long)s2.st_size,
                       (unsigned long long)file_db_checksum(rp), (unsigned long long)file_db_checksum(ref));
    }

    uint64_t ck = file_db_checksum(rp);
    struct lvdbstat st;
    int found = lvnode_db_status(n, db, &st);
    cr_assert_eq(found, 1, "%s: not listed in status --json (%d)", db, found);
    cr_assert_str_eq(st.status, "ok", "%s: status is %s", db, st.status);
    cr_assert_eq(st.checksum, ck, "%s: status checksum %016llx != replay checksum %016llx", db,
                 (unsigned long long)st.checksum, (unsigned long long)ck);
    uint64_t last = lvnode_last_txid(n, db);
    cr_assert_eq(st.txid, last, "%s: status txid %llu != last logged txid %llu", db, (unsigned long long)st.txid,
                 (unsigned long long)last);

    char *ic = sql_text(rp, "PRAGMA integrity_check");
    cr_assert_str_eq(ic, "ok", "%s: integrity_check of the replayed copy: %s", db, ic);
    free(ic);
    free(path);
    return last;
}

int lvnode_record_pages(const struct lvnode *n, const char *db, uint64_t txid, uint32_t **pages)
{
    char *out = NULL;
    *pages = NULL;
    int rc = run_cmd(&out, "\"$LITEVAULT\" log dump -c '%s' --db '%s' --txid %llu --json 2>/dev/null", n->config, db,
                     (unsigned long long)txid);
    json_t *j = (rc == 0 && out) ? json_loads(out, 0, NULL) : NULL;
    free(out);
    if (!j)
        return -1;
    json_t *a = json_object_get(j, "page_numbers");
    int cnt = -1;
    if (json_is_array(a)) {
        cnt = (int)json_array_size(a);
        *pages = calloc((size_t)cnt + 1, sizeof **pages);
        cr_assert(*pages != NULL);
        for (int i = 0; i < cnt; i++)
            (*pages)[i] = (uint32_t)json_integer_value(json_array_get(a, (size_t)i));
    }
    json_decref(j);
    return cnt;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int file_freelist_pages(const char *path, uint32_t **pages)
{
    *pages = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    unsigned char h[100];
    if (pread(fd, h, 100, 0) != 100 || !hdr_page_size(h)) {
        close(fd);
        return -1;
    }
    uint32_t ps = hdr_page_size(h), total = be32(h + 36), trunk = be32(h + 32);
    uint32_t *v = calloc((size_t)total + 1, sizeof *v);
    unsigned char *buf = malloc(ps);
    cr_assert(v && buf);
    int cnt = 0;
    while (trunk && cnt < (int)total) {
        if (pread(fd, buf, ps, (off_t)(trunk - 1) * ps) != (ssize_t)ps)
            break;
        v[cnt++] = trunk;
        uint32_t nleaf = be32(buf + 4);
        for (uint32_t i = 0; i < nleaf && cnt < (int)total && 8 + 4 * i + 4 <= ps; i++)
            v[cnt++] = be32(buf + 8 + 4 * i);
        trunk = be32(buf);
    }
    free(buf);
    close(fd);
    qsort(v, (size_t)cnt, sizeof *v, cmp_u32);
    *pages = v;
    return cnt;
}

int lv_restore_cmd(const char *url, const char *db, const char *target_flag, const char *out)
{
    const char *bin = getenv("LITEVAULT");

    return run_cmd(NULL, "'%s' restore --from '%s' --db '%s' %s -o '%s' 1>&2", bin && bin[0] ? bin : "./litevault", url,
                   db, target_flag ? target_flag : "", out);
}
