/*
 * cli.c -- helpers the litevault commands share (see cli.h).
 *
 * Reaching the daemon: the admin socket when this user may connect to it
 * (its owner, or root), else http.addr.  A stale socket (refused: the daemon
 * died) falls back to http.addr too.  Timeouts are reported as such: an
 * overloaded daemon is not a missing one.
 *
 * Errors.  Every command reports a bad option or usage the same way
 * (cli_getopt, cli_usage_error): one line "litevault CMD: MESSAGE" naming
 * the full command (e.g. "log ls"), the command's usage line, and the
 * --help hint, all on stderr, exit 2.  getopt's own messages are off
 * (opterr = 0): they name argv[0], which is "status" or "ls" here.
 *
 * --json failures (the JSON guard).  With --json, a failing command prints
 * one JSON object on stdout even where its code only wrote a message to
 * stderr.  Rather than trusting every error path of every command, main.c
 * arms a guard (cli_json_guard_start) that wraps stdout and stderr in
 * pass-through streams: stdout's counts bytes, stderr's remembers the last
 * line starting "litevault ".  At the end (cli_exit, or main's return) a
 * failing command that printed nothing on stdout gets
 *   {"command": "log ls", "error": "<that line's message>", "exit_code": N}
 * States: OFF (no --json) -> ARMED (streams wrapped) -> DONE (object
 * printed or not needed; streams flushed).
 *
 * Invariants:
 *   C1. The guard prints at most one object, only when the exit code is
 *       not 0 and the command wrote nothing on stdout.
 *   C2. Wrapped streams write through to file descriptors 1 and 2 in
 *       order: what a command prints is unchanged, byte for byte.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/http.h"
#include "base/lv.h"
#include "daemon/config.h"

/* ---------------------------------------------------------------- the JSON guard */

static struct {
    int armed;              /* ARMED: the streams below are in place */
    char command[64];       /* "status", "log ls" */
    FILE *json_to;          /* where the failure object goes (stdout unless the command says) */
    unsigned long long out; /* bytes written on stdout */
    char line[1024];        /* stderr's current line */
    size_t linelen;
    char last[1024];        /* the last complete stderr line starting "litevault " */
} g_guard;

static ssize_t write_all(int fd, const char *buf, size_t size)
{
    size_t done = 0;

    while (done < size) {
        ssize_t n = write(fd, buf + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return done ? (ssize_t)done : -1;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static ssize_t guard_out_write(void *cookie, const char *buf, size_t size)
{
    LV_UNUSED(cookie);
    g_guard.out += size;
    return write_all(STDOUT_FILENO, buf, size); /* C2 */
}

static ssize_t guard_err_write(void *cookie, const char *buf, size_t size)
{
    LV_UNUSED(cookie);
    for (size_t i = 0; i < size; i++) {
        if (buf[i] != '\n') {
            if (g_guard.linelen + 1 < sizeof g_guard.line)
                g_guard.line[g_guard.linelen++] = buf[i];
            continue;
        }
        g_guard.line[g_guard.linelen] = 0;
        if (strncmp(g_guard.line, "litevault ", 10) == 0 || strncmp(g_guard.line, "litevault:", 10) == 0)
            memcpy(g_guard.last, g_guard.line, g_guard.linelen + 1);
        g_guard.linelen = 0;
    }
    return write_all(STDERR_FILENO, buf, size); /* C2 */
}

int cli_has_json(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--json") == 0)
            return 1;
    return 0;
}

void cli_json_guard_start(const char *command)
{
    static const cookie_io_functions_t out_io = {.write = guard_out_write};
    static const cookie_io_functions_t err_io = {.write = guard_err_write};
    FILE *o = fopencookie(NULL, "w", out_io), *e = fopencookie(NULL, "w", err_io);

    if (!o || !e) { /* no guard: the command still runs, only the fallback object is lost */
        if (o)
            fclose(o);
        if (e)
            fclose(e);
        return;
    }
    setvbuf(e, NULL, _IONBF, 0);
    if (isatty(STDOUT_FILENO))
        setvbuf(o, NULL, _IOLBF, 0);
    fflush(stdout);
    fflush(stderr);
    snprintf(g_guard.command, sizeof g_guard.command, "%s", command);
    stdout = o;
    stderr = e;
    g_guard.json_to = o;
    g_guard.armed = 1;
}

void cli_json_to_stderr(void)
{
    if (g_guard.armed)
        g_guard.json_to = stderr;
}

void cli_json_guard_end(int rc)
{
    if (!g_guard.armed)
        return;
    g_guard.armed = 0; /* DONE */
    fflush(stdout);
    if (rc != 0 && (g_guard.out == 0 || g_guard.json_to != stdout)) { /* C1 */
        const char *msg = g_guard.last;
        const char *colon = strstr(msg, ": ");
        msg = colon ? colon + 2 : msg[0] ? msg : "failed; see the messages on standard error";
        json_t *o = json_pack("{s:s,s:s,s:i}", "command", g_guard.command, "error", msg, "exit_code", rc);
        char *s = o ? json_dumps(o, JSON_PRESERVE_ORDER) : NULL;
        if (s)
            fprintf(g_guard.json_to, "%s\n", s);
        free(s);
        json_decref(o);
    }
    fflush(stdout);
    fflush(stderr);
}

void cli_exit(int rc)
{
    cli_json_guard_end(rc);
    exit(rc);
}

/* ---------------------------------------------------------------- usage errors */

static void usage_vprint(const struct cli_cmd *cc, const char *fmt, va_list ap)
{
    char msg[1024];

    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "litevault %s: %s\n%s\nTry 'litevault %s --help'.\n", cc->name, msg, cc->usage,
            cc->help ? cc->help : cc->name);
}

int cli_usage_print(const struct cli_cmd *cc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    usage_vprint(cc, fmt, ap);
    va_end(ap);
    return LV_EXIT_USAGE;
}

void cli_usage_error(const struct cli_cmd *cc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    usage_vprint(cc, fmt, ap);
    va_end(ap);
    cli_exit(LV_EXIT_USAGE);
}

/* The long option that argument a (starting "--") names, or NULL. */
static const struct option *long_named(const struct option *lo, const char *a)
{
    size_t len = strcspn(a + 2, "=");

    for (; lo->name; lo++)
        if (strlen(lo->name) == len && strncmp(lo->name, a + 2, len) == 0)
            return lo;
    return NULL;
}

int cli_getopt(const struct cli_cmd *cc, int argc, char **argv, const char *shortopts, const struct option *longopts)
{
    opterr = 0;
    int c = getopt_long(argc, argv, shortopts, longopts, NULL);
    if (c != '?' && c != ':')
        return c;
    const char *a = optind > 0 && optind <= argc ? argv[optind - 1] : "";
    const struct option *lo = strncmp(a, "--", 2) == 0 ? long_named(longopts, a) : NULL;
    const char *sp = optopt > 0 && optopt < 256 ? strchr(shortopts, optopt) : NULL;
    if (optopt == 0 && strncmp(a, "--", 2) == 0)
        cli_usage_error(cc, "unrecognized option '%.*s'", (int)strcspn(a, "="), a);
    if (lo && lo->val == optopt && strchr(a, '='))
        cli_usage_error(cc, "option '--%s' does not take an argument", lo->name);
    if (lo && lo->val == optopt)
        cli_usage_error(cc, "option '--%s' requires an argument", lo->name);
    if (sp && sp[1] == ':')
        cli_usage_error(cc, "option '-%c' requires an argument", optopt);
    if (optopt > ' ' && optopt < 127)
        cli_usage_error(cc, "invalid option '-%c'", optopt);
    cli_usage_error(cc, "invalid option '%s'", a);
}

void cli_die_usage(const char *cmd, const char *msg)
{
    fprintf(stderr, "litevault %s: %s\nTry 'litevault %s --help'.\n", cmd, msg, cmd);
    cli_exit(LV_EXIT_USAGE);
}

/* ---------------------------------------------------------------- configuration */

int cli_config_file(const char *explicit_path, struct config *cfg, const char **found, char *err, size_t errlen)
{
    const char *path = config_find(explicit_path);

    if (found)
        *found = path;
    if (!path)
        return LV_ENOENT;
    if (config_load(path, cfg, err, errlen) != 0) {
        if (!err[0])
            lv_seterr(err, errlen, "cannot load the configuration");
        return LV_ECONFIG;
    }
    return 0;
}

int cli_config(const char *cmd, const char *explicit_path, struct config *cfg)
{
    char err[1024] = "";
    int rc = cli_config_file(explicit_path, cfg, NULL, err, sizeof err);

    if (rc == LV_ENOENT && !explicit_path)
        return config_defaults(cfg) == 0 ? 0 : LV_EXIT_RUNTIME;
    if (rc == LV_ENOENT)
        lv_seterr(err, sizeof err, "config file %s does not exist", explicit_path);
    if (rc == 0)
        return 0;
    fprintf(stderr, "litevault%s%s: %s\n", cmd ? " " : "", cmd ? cmd : "", err);
    return LV_EXIT_USAGE;
}

void cli_load_config(const char *explicit_path, struct config *cfg)
{
    int rc = cli_config(NULL, explicit_path, cfg);

    if (rc)
        cli_exit(rc);
}

int cli_admin_socket(const char *cmd, const struct config *cfg, char *buf, size_t len)
{
    struct stat st;

    if (config_admin_socket(cfg, buf, len) != 0) {
        fprintf(stderr, "litevault %s: data.dir %s is too long for the admin socket's path\n", cmd, cfg->data_dir);
        return LV_EXIT_RUNTIME;
    }
    if (stat(buf, &st) != 0) {
        fprintf(stderr, "litevault %s: no daemon answers: no admin socket %s (%s); is 'litevault mount' running "
                        "with data.dir %s?\n", cmd, buf, strerror(errno), cfg->data_dir);
        return LV_EXIT_RUNTIME;
    }
    if (access(buf, R_OK | W_OK) != 0) {
        fprintf(stderr, "litevault %s: cannot use the admin socket %s: %s; only the daemon's user (uid %u) and "
                        "root may; run this command as that user\n", cmd, buf, strerror(errno), (unsigned)st.st_uid);
        return LV_EXIT_RUNTIME;
    }
    return 0;
}

int cli_daemon_get(const char *cmd, const struct config *cfg, const char *path, char **body, size_t *len)
{
    char sock[PATH_MAX];
    const char *where = cfg->http_addr;
    long st = 0;
    int rc = LV_ENET;

    *body = NULL;
    if (config_admin_socket(cfg, sock, sizeof sock) == 0 && access(sock, R_OK | W_OK) == 0) {
        rc = http_get(sock, path, body, len, &st);
        where = sock;
    }
    if (rc == LV_ENET) {
        free(*body);
        *body = NULL;
        /* With HTTPS, the certificate is checked against http.tls-ca, else
         * against itself (a self-signed one); the token, if readable here. */
        struct http_client_opts o = {cfg->http_token, cfg->http_tls_cert != NULL,
                                     cfg->http_tls_ca ? cfg->http_tls_ca : cfg->http_tls_cert};
        rc = http_get_ex(cfg->http_addr, path, &o, body, len, &st);
        where = cfg->http_addr;
    }
    if (rc == LV_EBUSY) {
        fprintf(stderr, "litevault %s: timed out: the daemon on %s accepted GET %s but did not answer in time; "
                        "it may be overloaded, try again\n", cmd, where, path);
    } else if (rc != 0) {
        fprintf(stderr, "litevault %s: no daemon answers on the admin socket %s or http.addr %s; is 'litevault "
                        "mount' running?\n", cmd, sock, cfg->http_addr);
    } else if (st != 200) {
        fprintf(stderr, "litevault %s: the daemon on %s answered GET %s with HTTP %ld: %.200s\n", cmd, where, path,
                st, *body ? *body : "");
        rc = LV_ENET;
    }
    if (rc != 0) {
        free(*body);
        *body = NULL;
        return LV_EXIT_RUNTIME;
    }
    return 0;
}
