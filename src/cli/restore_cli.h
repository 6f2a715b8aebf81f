/*
 * restore_cli.h -- command-line entry points of `litevault restore` and
 * `litevault archive` (ls, verify), called from src/main.c.
 */
#ifndef RESTORE_CLI_H
#define RESTORE_CLI_H

/* `litevault restore ...`: argv[0] = "restore".  Returns the exit code (0/1/2). */
int restore_cli_restore(int argc, char **argv);

/* `litevault archive ls|verify ...`: argv[0] = "archive".  Returns the exit code (0/1/2). */
int restore_cli_archive(int argc, char **argv);

#endif /* RESTORE_CLI_H */
