/*
 * cli.c -- helpers the litevault commands share (see cli.h).
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

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
