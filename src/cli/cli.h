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

/* Print "litevault CMD: MSG" and the --help hint to stderr; exit 2. */
void cli_die_usage(const char *cmd, const char *msg) __attribute__((noreturn));

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

/* `litevault log ls|dump|replay ARGS`: argv[0] is "log".  Returns the exit code. */
int cli_log(int argc, char **argv);

#endif /* CLI_H */
