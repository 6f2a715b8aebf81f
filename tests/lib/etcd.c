/*
 * etcd.c -- a single-member etcd per test (see etcd.h).
 */
#include "etcd.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "files.h"
#include "fixture.h"
#include "node.h"
#include "util.h"

#define ETCD_BIN "/usr/bin/etcd"

int etcd_available(char *why, size_t len)
{
    if (access(ETCD_BIN, X_OK) == 0)
        return 1;
    snprintf(why, len, "%s is not installed (Debian's etcd-server; `make test` installs it)", ETCD_BIN);
    return 0;
}

static void etcd_spawn(struct lvetcd *e)
{
    char data[300], log[300], listen[160], peer[64], cluster[96], args[sizeof e->args];
    pid_t pid;

    snprintf(data, sizeof data, "%s/data", e->dir);
    snprintf(log, sizeof log, "%s/etcd.log", e->dir);
    if (e->extra[0])
        snprintf(listen, sizeof listen, "http://127.0.0.1:%d,http://%s:%d", e->port, e->extra, e->port);
    else
        snprintf(listen, sizeof listen, "http://127.0.0.1:%d", e->port);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", e->peer);
    snprintf(cluster, sizeof cluster, "default=%s", peer);
    char *argv[40] = {ETCD_BIN, "--name", "default", "--data-dir", data, "--listen-client-urls", listen,
                      "--advertise-client-urls", e->url, "--listen-peer-urls", peer, "--initial-advertise-peer-urls",
                      peer, "--initial-cluster", cluster, "--log-level", "warn", NULL};
    size_t argc = 17;
    snprintf(args, sizeof args, "%s", e->args);
    for (char *save = NULL, *a = strtok_r(args, " ", &save); a; a = strtok_r(NULL, " ", &save)) {
        cr_assert_lt(argc, sizeof argv / sizeof argv[0] - 1, "too many etcd flags: %s", e->args);
        argv[argc++] = a;
    }
    argv[argc] = NULL;
    pid = lvt_spawn(argv, log);
    e->pid = pid;
    int up = WAIT_FOR(run_cmd(NULL, "curl -sf --max-time 1 %s/health >/dev/null", e->url) == 0, 20000);
    cr_assert(up, "etcd did not answer on %s within 20 s (see %s)", e->url, log);
}

struct lvetcd *etcd_start(const char *extra_addr)
{
    return etcd_start_args(extra_addr, NULL);
}

struct lvetcd *etcd_start_args(const char *extra_addr, const char *args)
{
    struct lvetcd *e = calloc(1, sizeof *e);

    cr_assert(e);
    lvt_defer(LVT_UNDO, free, e);
    snprintf(e->dir, sizeof e->dir, "%s", lvt_tmpdir("etcd"));
    snprintf(e->extra, sizeof e->extra, "%s", extra_addr ? extra_addr : "");
    snprintf(e->args, sizeof e->args, "%s", args ? args : "");
    e->port = free_port();
    do
        e->peer = free_port();
    while (e->peer == e->port);
    snprintf(e->url, sizeof e->url, "http://127.0.0.1:%d", e->port);
    etcd_spawn(e);
    return e;
}

void etcd_restart(struct lvetcd *e)
{
    cr_assert_eq(e->pid, 0, "etcd is still running");
    etcd_spawn(e);
}

void etcd_kill(struct lvetcd *e)
{
    if (!e->pid)
        return;
    kill(e->pid, SIGKILL);
    wait_exit(e->pid, 5000);
    lvt_forget_child(e->pid);
    e->pid = 0;
}

char *etcd_endpoints(const struct lvetcd *e, int via_extra, char *buf, size_t len)
{
    if (via_extra && e->extra[0])
        snprintf(buf, len, "[http://%s:%d]", e->extra, e->port);
    else
        snprintf(buf, len, "[%s]", e->url);
    return buf;
}
