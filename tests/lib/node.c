/*
 * node.c -- see node.h.
 */
#include "node.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "files.h"
#include "fixture.h"
#include "util.h"

#define START_MS 30000 /* mount must appear within this */
#define STOP_MS 30000  /* exit after SIGTERM within this */

int path_is_mounted(const char *path)
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

void lvnode_dump_log_tail(const struct lvnode *n)
{
    size_t len = 0;
    char *t = file_read(n->logpath, &len);
    if (!t)
        return;
    size_t from = len > 4000 ? len - 4000 : 0;
    fprintf(stderr, "---- %s (tail) ----\n%s\n---- end ----\n", n->logpath, t + from);
    free(t);
}

/* fusermount3 -uz path, silently; then a detaching umount if it is still there. */
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
    for (int i = 0; i < 100 && path_is_mounted(path); i++)
        sleep_ms(20);
    if (path_is_mounted(path))
        umount2(path, MNT_DETACH);
}

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

void lvconf_write(const char *path, const char *fuse_dir, const char *data_dir, const char *http,
                  const char *data_keys, const char *extra_yaml)
{
    lvconf_write_http(path, fuse_dir, data_dir, http, data_keys, NULL, extra_yaml);
}

void lvconf_write_http(const char *path, const char *fuse_dir, const char *data_dir, const char *http,
                       const char *data_keys, const char *http_keys, const char *extra_yaml)
{
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL, "cannot write %s: %s", path, strerror(errno));
    fprintf(f,
            "fuse:\n"
            "  dir: %s\n"
            "data:\n"
            "  dir: %s\n"
            "%s"
            "http:\n"
            "  addr: %s\n"
            "%s"
            "log:\n"
            "  level: info\n"
            "  format: text\n",
            fuse_dir, data_dir, data_keys ? data_keys : "", http, http_keys ? http_keys : "");
    if (extra_yaml && *extra_yaml) {
        fputs(extra_yaml, f);
        if (extra_yaml[strlen(extra_yaml) - 1] != '\n')
            fputc('\n', f);
    }
    cr_assert(fclose(f) == 0, "cannot write %s", path);
}

/* *slot = a copy of s (NULL stays NULL), the old value freed after the copy
 * (s may be *slot itself). */
static void keep_str(char **slot, const char *s)
{
    char *c = s ? strdup(s) : NULL;
    cr_assert(!s || c);
    free(*slot);
    *slot = c;
}

void lvnode_reconfig(struct lvnode *n, const char *data_keys, const char *extra_yaml)
{
    keep_str(&n->data_keys, data_keys);
    keep_str(&n->extra_yaml, extra_yaml);
    lvconf_write_http(n->config, n->mnt, n->data, n->http, n->data_keys, n->http_keys, n->extra_yaml);
}

void lvnode_set_http(struct lvnode *n, const char *host, const char *http_keys)
{
    if (host)
        snprintf(n->http, sizeof n->http, "%s:%d", host, n->port);
    keep_str(&n->http_keys, http_keys);
    lvnode_reconfig(n, n->data_keys, n->extra_yaml);
}

static void node_kill(void *arg)
{
    lvnode_kill9(arg);
}

static void node_free(void *arg)
{
    struct lvnode *n = arg;
    lvnode_cleanup(n);
    free(n->data_keys);
    free(n->http_keys);
    free(n->extra_yaml);
    free(n);
}

struct lvnode *lvnode_new_with(const char *data_keys, const char *extra_yaml)
{
    struct lvnode *n = calloc(1, sizeof *n);
    cr_assert_not_null(n);
    snprintf(n->dir, sizeof n->dir, "/tmp/lvit.XXXXXX");
    cr_assert(mkdtemp(n->dir) != NULL, "mkdtemp: %s", strerror(errno));
    lvt_defer(LVT_KILL, node_kill, n);
    lvt_defer(LVT_UNDO, node_free, n);
    snprintf(n->mnt, sizeof n->mnt, "%s/mnt", n->dir);
    snprintf(n->data, sizeof n->data, "%s/data", n->dir);
    snprintf(n->config, sizeof n->config, "%s/config.yml", n->dir);
    snprintf(n->logpath, sizeof n->logpath, "%s/daemon.log", n->dir);
    n->port = free_port();
    snprintf(n->http, sizeof n->http, "127.0.0.1:%d", n->port);
    lvnode_reconfig(n, data_keys, extra_yaml);
    return n;
}

struct lvnode *lvnode_new(const char *extra_yaml)
{
    return lvnode_new_with(NULL, extra_yaml);
}

struct lvnode *lvnode_started(const char *extra_yaml)
{
    struct lvnode *n = lvnode_new(extra_yaml);
    lvnode_start(n);
    return n;
}

static pid_t spawn_daemon(struct lvnode *n)
{
    const char *bin = litevault_bin();
    int nsfd = -1;
    if (n->netns[0]) {
        char nspath[64];
        snprintf(nspath, sizeof nspath, "/run/netns/%s", n->netns);
        nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
        cr_assert(nsfd >= 0, "node %s: network namespace %s: %s", n->dir, nspath, strerror(errno));
    }
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
        /* Its network namespace only: the mount stays visible to the test. */
        if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) != 0) {
            fprintf(stderr, "setns %s: %s\n", n->netns, strerror(errno));
            _exit(126);
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
    if (nsfd >= 0)
        close(nsfd);
    return p;
}

void lvnode_start(struct lvnode *n)
{
    cr_assert(n->pid == 0, "node %s already running", n->dir);
    n->pid = spawn_daemon(n);
    int64_t end = now_ms() + START_MS;
    for (;;) {
        if (path_is_mounted(n->mnt)) {
            struct stat st;
            if (stat(n->mnt, &st) == 0)
                return;
        }
        int st;
        pid_t r = waitpid(n->pid, &st, WNOHANG);
        if (r == n->pid) {
            n->pid = 0;
            lvnode_dump_log_tail(n);
            cr_assert_fail("daemon exited during start-up with status %d (log %s)", status_code(st), n->logpath);
        }
        if (now_ms() > end) {
            kill(n->pid, SIGKILL);
            waitpid(n->pid, NULL, 0);
            n->pid = 0;
            lazy_unmount(n->mnt);
            lvnode_dump_log_tail(n);
            cr_assert_fail("daemon did not mount %s within %d s", n->mnt, START_MS / 1000);
        }
        sleep_ms(10);
    }
}

int lvnode_start_expect_fail(struct lvnode *n)
{
    cr_assert(n->pid == 0, "node %s already running", n->dir);
    pid_t p = spawn_daemon(n);
    int st = wait_exit(p, START_MS);
    if (st == -1) {
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
    }
    if (path_is_mounted(n->mnt))
        lazy_unmount(n->mnt);
    return st == -1 ? -1 : status_code(st);
}

void lvnode_stop(struct lvnode *n)
{
    cr_assert(n->pid > 0, "node %s is not running", n->dir);
    pid_t p = n->pid;
    kill(p, SIGTERM);
    int st = wait_exit(p, STOP_MS);
    if (st == -1) {
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
        n->pid = 0;
        lazy_unmount(n->mnt);
        lvnode_dump_log_tail(n);
        cr_assert_fail("daemon did not exit within %d s of SIGTERM", STOP_MS / 1000);
    }
    n->pid = 0;
    for (int i = 0; i < 500 && path_is_mounted(n->mnt); i++)
        sleep_ms(20);
    if (path_is_mounted(n->mnt)) {
        lazy_unmount(n->mnt);
        lvnode_dump_log_tail(n);
        cr_assert_fail("mount %s still present after the daemon exited", n->mnt);
    }
    if (status_code(st) != 0)
        lvnode_dump_log_tail(n);
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
    if (n->mnt[0] && path_is_mounted(n->mnt))
        lazy_unmount(n->mnt);
}

void lvnode_cleanup(struct lvnode *n)
{
    if (!n->dir[0])
        return;
    if (n->pid > 0) {
        kill(n->pid, SIGTERM);
        if (wait_exit(n->pid, STOP_MS) == -1) {
            kill(n->pid, SIGKILL);
            waitpid(n->pid, NULL, 0);
        }
        n->pid = 0;
    }
    if (n->mnt[0] && path_is_mounted(n->mnt))
        lazy_unmount(n->mnt);
    if (lvt_keep()) {
        fprintf(stderr, "kept %s (LV_KEEP=1)\n", n->dir);
    } else if (strncmp(n->dir, "/tmp/lvit.", 10) == 0 && !path_is_mounted(n->mnt)) {
        char *out = NULL;
        run_cmd(&out, "rm -rf '%s'", n->dir);
        free(out);
    }
    n->dir[0] = 0;
}

int lvnode_alive(struct lvnode *n)
{
    if (n->pid <= 0 || kill(n->pid, 0) != 0)
        return 0;
    return waitpid(n->pid, NULL, WNOHANG) != n->pid;
}

char *lvnode_path(const struct lvnode *n, const char *name)
{
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s", n->mnt, name) >= 0);
    return p;
}

char *lvnode_file(const struct lvnode *n, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", n->dir, name);
    return buf;
}

char *lvnode_log_text(const struct lvnode *n)
{
    char *t = file_read(n->logpath, NULL);
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

/* ---- clusters ---- */

struct lvcluster *lvcluster_new(int n, const char *common_yaml, const char *const *per_node)
{
    cr_assert(n >= 1 && n <= LVCLUSTER_MAX, "a cluster has 1..%d nodes, not %d", LVCLUSTER_MAX, n);
    struct lvcluster *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    lvt_defer(LVT_UNDO, free, c); /* after the nodes (registered later, undone earlier) */
    c->n = n;
    for (int i = 0; i < n; i++) {
        char *yaml = NULL;
        const char *own = per_node && per_node[i] ? per_node[i] : "";
        const char *common = common_yaml ? common_yaml : "";
        cr_assert(asprintf(&yaml, "%s%s%s", common, *common && common[strlen(common) - 1] != '\n' ? "\n" : "",
                           own) >= 0);
        c->node[i] = lvnode_new(yaml);
        free(yaml);
    }
    return c;
}

void lvcluster_start(struct lvcluster *c)
{
    for (int i = 0; i < c->n; i++)
        lvnode_start(c->node[i]);
}

void lvcluster_stop(struct lvcluster *c)
{
    for (int i = c->n - 1; i >= 0; i--)
        if (c->node[i]->pid > 0)
            lvnode_stop(c->node[i]);
}

void lvnode_cut_to_synced(const struct lvnode *n, const char *db)
{
    char dir[600], p[900], m[960];
    snprintf(dir, sizeof dir, "%s/meta/%s/log", n->data, db);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "no %s", dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 6, ".lvseg") != 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        snprintf(m, sizeof m, "%s.synced", p);
        FILE *f = fopen(m, "r");
        long long size = -1;
        if (f) {
            cr_assert_eq(fscanf(f, "%lld", &size), 1);
            fclose(f);
            cr_assert_eq(truncate(p, size), 0);
        } else {
            cr_assert_eq(unlink(p), 0);
        }
    }
    closedir(d);
}

long long lvnode_wal_unsynced(const struct lvnode *n, const char *db)
{
    char wal[700], mark[720];
    struct stat st;
    long long synced = -1;
    FILE *f;

    snprintf(wal, sizeof wal, "%s/files/%s-wal", n->data, db);
    snprintf(mark, sizeof mark, "%s.synced", wal);
    if ((f = fopen(mark, "re"))) {
        if (fscanf(f, "%lld", &synced) != 1)
            synced = -1;
        fclose(f);
    }
    cr_assert_eq(stat(wal, &st), 0, "no %s", wal);
    return synced < 0 ? (long long)st.st_size : (long long)st.st_size > synced ? (long long)st.st_size - synced : 0;
}
