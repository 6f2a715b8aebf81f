/*
 * main.c -- the litevault command line: dispatch to the commands.
 *
 *   litevault mount   [-c FILE] [-- CMD ARGS...]                       (mount_cli.c)
 *   litevault status  [-c FILE] [--json]                               (status_cli.c)
 *   litevault log ls     [-c FILE] --db NAME [--json]                  (log_cli.c)
 *   litevault log dump   [-c FILE] --db NAME --txid N [--json]
 *   litevault log replay [-c FILE] --db NAME [--txid N] -o PATH
 *   litevault restore    --from URL --db NAME [--txid N | --timestamp T] PATH   (restore_cli.c)
 *   litevault restore    --seed -c FILE [--db NAME]     (restore_cli.c, restore/seed.c)
 *   litevault archive ls|verify --from URL [--db NAME]                        (restore_cli.c)
 *   litevault export  ... / litevault import ...                      (export_cli.c)
 *   litevault version
 *
 * Every command reports a bad option as one line naming the full command,
 * then its usage line (cli_getopt); with --json, every failure also prints
 * a JSON object on stdout (the JSON guard in cli.c, armed here).
 *
 * Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error.
 */
#include <stdio.h>
#include <string.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "cli/cli.h"
#include "cli/export_cli.h"
#include "cli/restore_cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: litevault COMMAND [OPTIONS]\n\n"
               "Commands:\n"
               "  mount     serve databases on a FUSE mount and capture every transaction\n"
               "  status    show the running daemon's databases\n"
               "  promote   hand the primary role over gracefully (etcd lease)\n"
               "  log       read the local transaction log (ls, dump, replay)\n"
               "  restore   rebuild a database from an archive, as of a TXID or a point in time;\n"
               "            --seed: fill a new node's data.dir from it\n"
               "  archive   inspect an archive (ls, verify)\n"
               "  export    write a consistent copy of a database, or a bundle of all of them\n"
               "  import    replace or create databases from a copy or a bundle\n"
               "  version   print the version\n\n"
               "Run 'litevault COMMAND --help' for a command's options.\n"
               "Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error.\n");
}

/* Run the command argv[1] with argv + 1; its exit code. */
static int dispatch(int argc, char **argv)
{
    static const struct {
        const char *name;              /* argv[1] */
        int (*run)(int, char **);      /* the command, given argv + 1 */
    } commands[] = {
        {"mount", cli_mount},           {"status", cli_status},           {"log", cli_log},
        {"restore", restore_cli_restore}, {"archive", restore_cli_archive}, {"export", export_cli_export},
        {"import", export_cli_import},  {"promote", cli_promote},
    };
    const char *cmd = argv[1];

    for (size_t i = 0; i < LV_ARRAY_LEN(commands); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("litevault %s\n", LV_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "litevault: unknown command '%s'\n", cmd);
    usage(stderr);
    return LV_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    char name[64];
    int rc;

    lvlog_setup(LVLOG_INFO, 0);
    if (argc < 2) {
        usage(stderr);
        return LV_EXIT_USAGE;
    }
    /* With --json, a failure prints a JSON object on stdout too (cli.c). */
    if (cli_has_json(argc - 1, argv + 1)) {
        int sub = (strcmp(argv[1], "log") == 0 || strcmp(argv[1], "archive") == 0) && argc > 2 && argv[2][0] != '-';
        snprintf(name, sizeof name, "%s%s%s", argv[1], sub ? " " : "", sub ? argv[2] : "");
        cli_json_guard_start(name);
    }
    rc = dispatch(argc, argv);
    cli_json_guard_end(rc);
    return rc;
}
