/*
 * status_cli.c -- `litevault status [-c FILE] [--json]`: what the running
 * daemon reports (GET /status, on the admin socket if this user may use it,
 * else on http.addr: cli_daemon_get), as a table or as its JSON.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "base/http.h"
#include "base/lv.h"
#include "daemon/config.h"

static const struct cli_cmd status_cmd = {"status", "usage: litevault status [-c FILE] [--json]", NULL};

static void usage_status(void)
{
    printf("%s\n\n"
           "Show what the running daemon reports for each database: name, TXID,\n"
           "checksum, page size, size in pages, journal mode and last commit time.\n"
           "Asks the daemon of the configuration over HTTP (http.addr).\n\n"
           "  -c, --config FILE   configuration file (default ./litevault.yml, then /etc/litevault.yml)\n"
           "  -j, --json          print the daemon's answer (GET /status) as JSON\n"
           "  -h, --help          show this help\n\n"
           "Exit codes: 0 ok, 1 no daemon answers, 2 usage or configuration error.\n",
           status_cmd.usage);
}

int cli_status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", 1, 0, 'c'}, {"json", 0, 0, 'j'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *cpath = NULL;
    int c, as_json = 0, rc = LV_EXIT_RUNTIME;
    struct config cfg;
    char *body = NULL;
    size_t len = 0;
    while ((c = cli_getopt(&status_cmd, argc, argv, "c:jh", opts)) != -1) {
        if (c == 'c')
            cpath = optarg;
        else if (c == 'j')
            as_json = 1;
        else if (c == 'h') {
            usage_status();
            return 0;
        }
    }
    if (optind < argc)
        cli_usage_error(&status_cmd, "unexpected argument '%s'", argv[optind]);
    cli_load_config(cpath, &cfg);
    if (cli_daemon_get("status", &cfg, "/status", &body, &len) != 0)
        goto out;
    if (as_json) {
        fwrite(body, 1, len, stdout);
        putchar('\n');
        rc = 0;
        goto out;
    }
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);
    json_t *arr = json_object_get(o, "databases");
    printf("%-24s %10s %-16s %6s %10s %-9s %s\n", "NAME", "TXID", "CHECKSUM", "PAGESZ", "PAGES", "JOURNAL",
           "LAST COMMIT");
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *lc = json_string_value(json_object_get(e, "last_commit"));
        printf("%-24s %10lld %-16s %6lld %10lld %-9s %s%s%s\n", json_string_value(json_object_get(e, "name")),
               (long long)json_integer_value(json_object_get(e, "txid")),
               json_string_value(json_object_get(e, "checksum")),
               (long long)json_integer_value(json_object_get(e, "page_size")),
               (long long)json_integer_value(json_object_get(e, "pages")),
               json_string_value(json_object_get(e, "journal_mode")), lc ? lc : "-",
               json_object_get(e, "error") ? "  BROKEN: " : "",
               json_object_get(e, "error") ? json_string_value(json_object_get(e, "error")) : "");
    }
    json_decref(o);
    rc = 0;
out:
    free(body);
    config_free(&cfg);
    return rc;
}
