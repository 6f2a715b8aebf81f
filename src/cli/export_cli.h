/*
 * export_cli.h -- the `litevault export` and `litevault import` commands.
 *
 *   litevault export [-c FILE] --db NAME -o OUT.db [--vacuum] [--json]
 *   litevault export [-c FILE] --all -o OUT.tar|OUT.tar.zst|OUT.tar.gz|- [--format F] [--json]
 *   litevault import [-c FILE] --db NAME IN.db [--no-check] [--json]
 *   litevault import [-c FILE] --all IN.tar.zst|IN.tar.gz|IN.tar|- [--no-check] [--json]
 *
 * Both talk to the running daemon (http.addr of the configuration); see
 * export_cli.c for the design.
 */
#ifndef EXPORT_CLI_H
#define EXPORT_CLI_H

/* `litevault export ARGS`: argv[0] is "export".  Returns the exit code. */
int export_cli_export(int argc, char **argv);

/* `litevault import ARGS`: argv[0] is "import".  Returns the exit code. */
int export_cli_import(int argc, char **argv);

#endif /* EXPORT_CLI_H */
