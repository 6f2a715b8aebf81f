/*
 * cli.c -- helpers the litevault commands share (see cli.h).
 *
 * Reaching the daemon: the admin socket when this user may connect to it
 * (its owner, or root), else http.addr.  A stale socket (refused: the daemon
 * died) falls back to http.addr too.  Timeouts are reported as such: an
 * overloaded daemon is not a missing one.
 */
#include "cli/cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/http.h"
#include "base/lv.h"
#include "daemon/config.h"

void cli_die_usage(const char *cmd, const char *msg)
{
    fprintf(stderr, "litevault %s: %s\nTry 'litevault %s --help'.\n", cmd, msg, cmd);
    exit(LV_EXIT_USAGE);
}

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
        exit(rc);
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
        rc = http_get(cfg->http_addr, path, body, len, &st);
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
