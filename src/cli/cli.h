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

struct config;

/* Print "litevault CMD: MSG" and the --help hint to stderr; exit 2. */
void cli_die_usage(const char *cmd, const char *msg) __attribute__((noreturn));

/* Load the config named by -c (explicit_path, may be NULL) or found by
 * config_find, else the defaults, into *cfg (the caller frees it with
 * config_free); on error print it and exit 2. */
void cli_load_config(const char *explicit_path, struct config *cfg);

/* `litevault mount ARGS`: argv[0] is "mount".  Returns the exit code. */
int cli_mount(int argc, char **argv);

/* `litevault status ARGS`: argv[0] is "status".  Returns the exit code. */
int cli_status(int argc, char **argv);

/* `litevault log ls|dump|replay ARGS`: argv[0] is "log".  Returns the exit code. */
int cli_log(int argc, char **argv);

#endif /* CLI_H */
