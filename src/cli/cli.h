/*
 * cli.h -- what the litevault commands share: usage errors and loading the
 * configuration.  Each command lives in its own file of src/cli/ and is
 * dispatched by main.c:
 *   mount_cli.c    litevault mount
 *   status_cli.c   litevault status
 *   log_cli.c      litevault log ls|dump|replay
 *   restore_cli.c  litevault restore, litevault archive ls|verify
 *   export_cli.c   litevault export (also --list), litevault import
 */
#ifndef CLI_H
#define CLI_H

#include <stddef.h>

struct config;
struct option;

/* A command, as its error messages name it (all strings static, borrowed). */
struct cli_cmd {
    const char *name;  /* the full command: "status", "log ls", "archive verify" */
    const char *usage; /* its usage line(s): "usage: litevault status [-c FILE] [--json]" */
    const char *help;  /* what the hint runs with --help, NULL: name */
};

/* getopt_long with getopt's own messages off; a bad option (unknown,
 * missing or extra argument) is reported by cli_usage_error.  Returns what
 * getopt_long returns, never '?'. */
int cli_getopt(const struct cli_cmd *cc, int argc, char **argv, const char *shortopts, const struct option *longopts);

/* Print "litevault NAME: MESSAGE", the usage line and the --help hint to
 * stderr; exit 2 (through cli_exit). */
void cli_usage_error(const struct cli_cmd *cc, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* As cli_usage_error without exiting: returns 2 (the exit code). */
int cli_usage_print(const struct cli_cmd *cc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print "litevault CMD: MSG" and the --help hint to stderr; exit 2 (through cli_exit). */
void cli_die_usage(const char *cmd, const char *msg) __attribute__((noreturn));

/* Does argv (argv[0] the command) hold --json before any "--"? */
int cli_has_json(int argc, char **argv);

/* With --json: wrap stdout and stderr so that a failing command that
 * printed nothing on stdout prints {"command","error","exit_code"} there
 * at the end (cli.c: the JSON guard).  command ("log ls") is copied. */
void cli_json_guard_start(const char *command);

/* The failure object goes to stderr (stdout carries data, e.g. export -o -). */
void cli_json_to_stderr(void);

/* End the guard with exit code rc: print the failure object if due; flush. */
void cli_json_guard_end(int rc);

/* cli_json_guard_end(rc), then exit(rc): the one way a command exits early. */
void cli_exit(int rc) __attribute__((noreturn));

/* The one way the commands load their configuration.
 *
 * cli_config_file: load the file named by -c (explicit_path, may be NULL)
 * or found by config_find into *cfg (the caller frees it with config_free);
 * *found (if non-NULL) is that file or NULL.  0; LV_ENOENT when there is no
 * such file (*cfg untouched); LV_ECONFIG with the message in err. */
int cli_config_file(const char *explicit_path, struct config *cfg, const char **found, char *err, size_t errlen);

/* cli_config_file, else the defaults when no -c was given and no file
 * exists.  On error prints "litevault CMD: MSG" (cmd NULL: "litevault:
 * MSG").  Returns 0 or the exit code (2 for a bad or missing file, 1 when
 * the defaults cannot be made). */
int cli_config(const char *cmd, const char *explicit_path, struct config *cfg);

/* cli_config(NULL, ...), exiting with its exit code on error. */
void cli_load_config(const char *explicit_path, struct config *cfg);

/* Reaching the daemon.  The admin socket (data.dir/admin.sock, 0600) is
 * tried first; http.addr serves the read-only routes to other users.
 *
 * cli_daemon_get: GET path from the daemon into *body (malloc'ed, caller
 * frees; *len bytes).  0 when it answered 200; else prints "litevault CMD:
 * ..." -- "timed out" when the daemon accepted but did not answer in time,
 * "no daemon answers" when nothing listens -- and returns LV_EXIT_RUNTIME. */
int cli_daemon_get(const char *cmd, const struct config *cfg, const char *path, char **body, size_t *len);

/* The admin socket's path into buf, when this user may use it: 0; else prints
 * why not (no daemon, or permission denied) and returns LV_EXIT_RUNTIME. */
int cli_admin_socket(const char *cmd, const struct config *cfg, char *buf, size_t len);

/* `litevault mount ARGS`: argv[0] is "mount".  Returns the exit code. */
int cli_mount(int argc, char **argv);

/* `litevault status ARGS`: argv[0] is "status".  Returns the exit code. */
int cli_status(int argc, char **argv);

/* `litevault promote`: a graceful hand-over of the primary role (status_cli.c). */
int cli_promote(int argc, char **argv);

/* `litevault log ls|dump|replay ARGS`: argv[0] is "log".  Returns the exit code. */
int cli_log(int argc, char **argv);

#endif /* CLI_H */
