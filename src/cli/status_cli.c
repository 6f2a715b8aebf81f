/*
 * status_cli.c -- `litevault status [-c FILE] [--json]`: what the running
 * daemon reports (GET /status, on the admin socket if this user may use it,
 * else on http.addr: cli_daemon_get), as a table or as its JSON.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/http.h"
#include "base/lv.h"
#include "daemon/config.h"

static const struct cli_cmd status_cmd = {"status", "usage: litevault status [-c FILE] [--json]", NULL};

static void usage_status(void)
{
    printf("%s\n\n"
           "Show what the running daemon reports for each database: name, TXID,\n"
           "checksum, page size, size in pages, journal mode and last commit time;\n"
           "then its replication role: on the primary, each replica with the bytes\n"
           "streamed to it; on a replica, its primary and how far each database\n"
           "is behind (TXIDs, milliseconds) and in what state.\n"
           "Asks the daemon of the configuration over HTTP (http.addr).\n\n"
           "  -c, --config FILE   configuration file (default ./litevault.yml, then /etc/litevault.yml)\n"
           "  -j, --json          print the daemon's answer (GET /status) as JSON\n"
           "  -h, --help          show this help\n\n"
           "Exit codes: 0 ok, 1 no daemon answers, 2 usage or configuration error.\n",
           status_cmd.usage);
}

/* The replication part of /status: the primary's replicas, or a
 * replica's primary and how far behind each database is. */
static void print_role(json_t *o)
{
    const char *role = json_string_value(json_object_get(o, "role"));
    const char *cluster = json_string_value(json_object_get(o, "cluster"));
    size_t i;
    json_t *e;

    if (!role)
        return;
    if (strcmp(role, "primary") == 0) {
        json_t *reps = json_object_get(o, "replicas");
        printf("\nrole: primary (node %s, cluster %s), %zu replica(s)\n",
               json_string_value(json_object_get(o, "node")), cluster ? cluster : "-", json_array_size(reps));
        if (json_array_size(reps) == 0)
            return;
        printf("%-32s %-28s %-9s %12s %14s %s\n", "REPLICA", "ADDR", "CONNECTED", "RECORD BYTES", "SNAPSHOT BYTES",
               "DATABASES (TXID SENT)");
        json_array_foreach(reps, i, e)
        {
            json_t *b = json_object_get(e, "bytes"), *d;
            size_t k;
            const char *addr = json_string_value(json_object_get(e, "addr"));
            printf("%-32s %-28s %-9s %12lld %14lld ", json_string_value(json_object_get(e, "node")),
                   addr && *addr ? addr : "-", json_is_true(json_object_get(e, "connected")) ? "yes" : "no",
                   (long long)json_integer_value(json_object_get(b, "record")),
                   (long long)json_integer_value(json_object_get(b, "snapshot")));
            json_array_foreach(json_object_get(e, "databases"), k, d)
                printf("%s%s@%lld", k ? " " : "", json_string_value(json_object_get(d, "name")),
                       (long long)json_integer_value(json_object_get(d, "txid")));
            putchar('\n');
        }
        return;
    }
    json_t *rep = json_object_get(o, "replication");
    const char *err = json_string_value(json_object_get(rep, "last_error"));
    int connected = json_is_true(json_object_get(o, "connected"));
    printf("\nrole: replica of %s (%s%s%s), node %s, cluster %s\n", json_string_value(json_object_get(o, "primary")),
           connected ? "connected" : "not connected", !connected && err ? ": " : "", !connected && err ? err : "",
           json_string_value(json_object_get(o, "node")), cluster && *cluster ? cluster : "- (none yet)");
    printf("%-24s %10s %10s %10s %s\n", "NAME", "TXID", "LAG TXIDS", "LAG MS", "STATE");
    json_array_foreach(json_object_get(o, "databases"), i, e)
    {
        json_t *r = json_object_get(e, "replication");
        const char *er = json_string_value(json_object_get(r, "error"));
        if (!r)
            continue;
        printf("%-24s %10lld %10lld %10lld %s%s%s\n", json_string_value(json_object_get(e, "name")),
               (long long)json_integer_value(json_object_get(r, "txid")),
               (long long)json_integer_value(json_object_get(r, "lag_txids")),
               (long long)json_integer_value(json_object_get(r, "lag_ms")),
               json_string_value(json_object_get(r, "state")), er ? ": " : "", er ? er : "");
    }
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
    print_role(o);
    json_decref(o);
    rc = 0;
out:
    free(body);
    config_free(&cfg);
    return rc;
}

/* ---- litevault promote ---- */

static const struct cli_cmd promote_cmd = {"promote", "usage: litevault promote [-c FILE] [--node ID]", NULL};

static void usage_promote(void)
{
    printf("%s\n\n"
           "Hand the primary role over gracefully (lease.type etcd): the primary\n"
           "stops taking writes, waits until the chosen replica holds every\n"
           "database up to its last transaction (at most 10 s), hands it the\n"
           "lease, and restarts as its replica (exit status 3: run it under a\n"
           "service manager that restarts it).  Nothing acknowledged is lost;\n"
           "writes in flight during the hand-over fail.\n"
           "Run on a replica: this node becomes the primary.  Run on the\n"
           "primary: the role goes to --node, or to any replica that holds\n"
           "everything.  Asks the daemon of the configuration on its admin socket.\n\n"
           "  -c, --config FILE   configuration file (default ./litevault.yml, then /etc/litevault.yml)\n"
           "  -n, --node ID       on the primary: the node to hand over to (its node ID, see status)\n"
           "  -h, --help          show this help\n\n"
           "Exit codes: 0 handed over, 1 refused or failed (writes resume on the primary), 2 usage or\n"
           "configuration error.\n",
           promote_cmd.usage);
}

int cli_promote(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", 1, 0, 'c'}, {"node", 1, 0, 'n'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *cpath = NULL, *node = NULL;
    char sock[PATH_MAX], req[256];
    struct config cfg;
    char *body = NULL;
    size_t len = 0;
    long st = 0;
    int c, rc = LV_EXIT_RUNTIME;

    while ((c = cli_getopt(&promote_cmd, argc, argv, "c:n:h", opts)) != -1) {
        if (c == 'c')
            cpath = optarg;
        else if (c == 'n')
            node = optarg;
        else if (c == 'h') {
            usage_promote();
            return 0;
        }
    }
    if (optind < argc)
        cli_usage_error(&promote_cmd, "unexpected argument '%s'", argv[optind]);
    if (node && (strlen(node) != 32 || strspn(node, "0123456789abcdef") != 32))
        cli_usage_error(&promote_cmd, "--node takes a node ID: 32 lower-case hex digits (see litevault status)");
    cli_load_config(cpath, &cfg);
    if (cli_admin_socket("promote", &cfg, sock, sizeof sock) != 0)
        goto out;
    snprintf(req, sizeof req, node ? "{\"node\":\"%s\"}" : "{}", node);
    if (http_post(sock, "/v1/promote", req, strlen(req), &body, &len, &st) != 0) {
        fprintf(stderr, "litevault promote: no answer from the daemon on %s\n", sock);
        goto out;
    }
    json_t *o = json_loadb(body, len, 0, NULL);
    const char *msg = json_string_value(json_object_get(o, st == 200 ? "result" : "error"));
    if (st == 200) {
        printf("%s\n", msg ? msg : "handed over");
        rc = 0;
    } else {
        fprintf(stderr, "litevault promote: %s\n", msg ? msg : body);
    }
    json_decref(o);
out:
    free(body);
    config_free(&cfg);
    return rc;
}
