/*
 * it_ops.c -- integration tests for running litevault in production:
 * systemd's Type=notify protocol, restarting after SIGKILL, output that
 * tools and people read.
 *
 *   - sd_notify: with NOTIFY_SOCKET set to a datagram socket the test
 *     binds, the daemon sends READY=1 once the mount answers, and
 *     STOPPING=1 plus STATUS= lines (archiving the rest of the log) at
 *     SIGTERM;
 *   - after kill -9 the dead mount is detached by the next start with the
 *     same config (log line); a live mount of another daemon is refused;
 *   - /metrics of a daemon with archive and exports passes
 *     `promtool check metrics` (skipped, with a notice, without promtool);
 *   - a bad option: one message naming the full command, then the usage
 *     line; with --json every failure prints a JSON object on stdout.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "lib/lvtest.h"

TestSuite(ops, .fini = lvt_fini, .timeout = 150);

/* ------------------------------------------------------------------ */
/* systemd notify                                                      */
/* ------------------------------------------------------------------ */

/* A datagram socket bound at dir/notify, exported as NOTIFY_SOCKET for the daemons this test starts. */
static int notify_socket(const char *dir)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    snprintf(a.sun_path, sizeof a.sun_path, "%s/notify", dir);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0, "bind %s: %s", a.sun_path, strerror(errno));
    struct timeval tv = {.tv_sec = LVT_WAIT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setenv("NOTIFY_SOCKET", a.sun_path, 1);
    return fd;
}

/* Receive datagrams until one contains want (appending each to log); 1 if it came within the bound. */
static int notify_until(int fd, const char *want, char *log, size_t loglen)
{
    char msg[2048];
    for (;;) {
        ssize_t n = recv(fd, msg, sizeof msg - 1, 0);
        if (n < 0)
            return 0;
        msg[n] = 0;
        snprintf(log + strlen(log), loglen - strlen(log), "[%s]\n", msg);
        if (strstr(msg, want))
            return 1;
    }
}

Test(ops, sd_notify_ready_once_the_mount_answers_and_stopping_at_sigterm)
{
    struct lvnode *n = lvnode_new("archive:\n  - url: file://./arch\n");
    int fd = notify_socket(n->dir);
    char log[16384] = "";

    lvnode_start(n);
    cr_assert(notify_until(fd, "READY=1", log, sizeof log), "no READY=1 from the daemon; got:\n%s", log);
    /* READY=1 came after the mount answered: it is mounted and a statvfs is answered by the daemon */
    struct statvfs sv;
    cr_assert(path_is_mounted(n->mnt));
    cr_assert_eq(statvfs(n->mnt, &sv), 0, "statvfs %s: %s", n->mnt, strerror(errno));
    cr_assert_null(strstr(log, "STOPPING"), "%s", log);
    char *p = lvnode_path(n, "a.db");
    sql_exec(p, "CREATE TABLE t(x); INSERT INTO t VALUES(1);", 0);
    free(p);
    lvnode_stop(n);
    cr_assert(notify_until(fd, "STATUS=stopped", log, sizeof log), "no final STATUS; got:\n%s", log);
    cr_assert_not_null(strstr(log, "STOPPING=1"), "%s", log);
    cr_assert_not_null(strstr(log, "STATUS=archiving the rest of the log"), "%s", log);
    cr_assert_lt(strstr(log, "READY=1") - log, strstr(log, "STOPPING=1") - log, "%s", log);
    close(fd);
}

/* ------------------------------------------------------------------ */
/* Restart after SIGKILL; a live mount is not ours to take             */
/* ------------------------------------------------------------------ */

Test(ops, restart_after_kill9_detaches_the_dead_mount)
{
    struct lvnode *n = lvnode_started(NULL);
    char *p = lvnode_path(n, "k.db");
    sql_exec(p, "CREATE TABLE t(x); INSERT INTO t VALUES(1);", 0);

    cr_assert_eq(kill(n->pid, SIGKILL), 0);
    cr_assert_neq(wait_exit(n->pid, LVT_WAIT_MS), -1);
    n->pid = 0;
    struct statvfs sv;
    cr_assert(path_is_mounted(n->mnt), "the kernel keeps the dead mount");
    cr_assert_neq(statvfs(n->mnt, &sv), 0, "the dead mount answers?");
    cr_assert_eq(errno, ENOTCONN, "statvfs: %s", strerror(errno));

    lvnode_start(n); /* asserts it comes up */
    cr_assert(lvnode_log_contains(n, "stale litevault mount"), "no log line about the detached mount");
    cr_assert_eq(statvfs(n->mnt, &sv), 0, "statvfs %s: %s", n->mnt, strerror(errno));
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t;"), 1);
    free(p);
    lvnode_stop(n);
}

Test(ops, a_live_mount_of_another_daemon_is_refused)
{
    struct lvnode *a = lvnode_started(NULL), *b = lvnode_new(NULL);
    char data[400];

    snprintf(data, sizeof data, "%s/data", b->dir);
    lvconf_write(b->config, a->mnt, data, b->http, NULL, NULL); /* b wants a's mount point */
    cr_assert_eq(lvnode_start_expect_fail(b), 1);
    char *log = lvnode_log_text(b);
    cr_assert_not_null(strstr(log, "is busy"), "%s", log);
    free(log);
    cr_assert(lvnode_alive(a));
    struct statvfs sv;
    cr_assert_eq(statvfs(a->mnt, &sv), 0, "a's mount was disturbed: %s", strerror(errno));
    lvnode_stop(a);
}

/* ------------------------------------------------------------------ */
/* /metrics passes promtool                                            */
/* ------------------------------------------------------------------ */

Test(ops, metrics_pass_promtool_check)
{
    if (run_cmd(NULL, "command -v promtool >/dev/null") != 0)
        cr_skip_test("promtool is not installed (Debian: apt-get install prometheus); /metrics not checked");
    struct lvnode *n = lvnode_started("archive:\n  - url: file://./arch\n"
                                      "exports:\n  - name: hourly\n    schedule: '@every 1s'\n    url: ./exp\n");
    char *p = lvnode_path(n, "m.db");
    sql_exec(p, "CREATE TABLE t(x); INSERT INTO t VALUES(1);", 0);
    free(p);
    long status = 0;
    char *body = NULL, path[400], *out = NULL;
    /* every family present: a database archived, an export run */
    int all = WAIT_FOR((free(body), body = lvnode_http_get(n, "/metrics", &status),
                        body && strstr(body, "litevault_archive_confirmed_txid{") &&
                            strstr(body, "litevault_export_runs_total{")),
                       LVT_WAIT_MS);
    cr_assert(all, "archive or export families missing:\n%s", body ? body : "(no answer)");
    lvnode_file(n, "metrics.txt", path, sizeof path);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(body, f);
    fclose(f);
    int rc = run_cmd(&out, "promtool check metrics < '%s' 2>&1", path);
    cr_assert_eq(rc, 0, "promtool check metrics:\n%s\n--- metrics:\n%s", out, body);
    free(out);
    free(body);
    lvnode_stop(n);
}

/* ------------------------------------------------------------------ */
/* Command-line errors                                                 */
/* ------------------------------------------------------------------ */

/* Each command with a bad flag: the full command name and its usage line. */
static const struct {
    const char *args, *name;
} bad_flag[] = {
    {"status --bogus", "status"},         {"log ls --bogus --db x", "log ls"},
    {"log dump --bogus", "log dump"},     {"log replay --bogus", "log replay"},
    {"restore --bogus", "restore"},       {"archive ls --bogus", "archive ls"},
    {"archive verify --bogus", "archive verify"},
    {"export --bogus", "export"},         {"import --bogus", "import"},
    {"mount --bogus", "mount"},
};

Test(ops, a_bad_flag_gives_one_message_naming_the_command_and_the_usage)
{
    const char *tmp = lvt_tmpdir("ops-cli");
    for (size_t i = 0; i < sizeof bad_flag / sizeof bad_flag[0]; i++) {
        char *out = NULL, want[200], usage[200];
        int rc = run_cmd(&out, "cd '%s' && '%s' %s 2>&1", tmp, litevault_bin(), bad_flag[i].args);
        cr_assert_eq(rc, 2, "%s: exit %d\n%s", bad_flag[i].args, rc, out);
        snprintf(want, sizeof want, "litevault %s: unrecognized option '--bogus'\n", bad_flag[i].name);
        snprintf(usage, sizeof usage, "usage: litevault %s", bad_flag[i].name);
        cr_assert_eq(strncmp(out, want, strlen(want)), 0, "%s: want first line %s got:\n%s", bad_flag[i].args, want,
                     out);
        cr_assert_not_null(strstr(out, usage), "%s: no usage line:\n%s", bad_flag[i].args, out);
        cr_assert_null(strstr(out + strlen(want), "unrecognized"), "%s: two messages:\n%s", bad_flag[i].args, out);
        cr_assert_null(strstr(out + strlen(want), "unknown option"), "%s: two messages:\n%s", bad_flag[i].args, out);
        free(out);
    }
}

/* With --json, a failure prints one JSON object on stdout. */
static const char *json_fail[] = {
    "status --json",              /* no daemon */
    "status --json --bogus",      /* bad flag */
    "log ls --json --db nope.db", /* no log */
    "log dump --json --db x",     /* usage: no --txid */
    "restore --json --from file:///nonexistent/arch --db x /tmp/never.db",
    "archive ls --json --from bogus://nowhere",
    "archive verify --json",
    "export --json --db x -o /tmp/never.db", /* no daemon */
    "import --json --db x /nonexistent.db",
};

Test(ops, json_failures_print_a_json_object)
{
    struct lvnode *n = lvnode_new(NULL); /* a config whose daemon is not running */
    for (size_t i = 0; i < sizeof json_fail / sizeof json_fail[0]; i++) {
        char *out = NULL;
        int rc = run_cmd(&out, "cd '%s' && '%s' %s -c '%s' 2>/dev/null", n->dir, litevault_bin(), json_fail[i],
                         n->config);
        cr_assert_neq(rc, 0, "%s succeeded?\n%s", json_fail[i], out);
        json_error_t je;
        json_t *o = json_loads(out, 0, &je);
        cr_assert(json_is_object(o), "%s: stdout is not one JSON object (%s):\n%s", json_fail[i], je.text, out);
        cr_assert(json_is_string(json_object_get(o, "error")), "%s: no \"error\":\n%s", json_fail[i], out);
        json_decref(o);
        free(out);
    }
}
