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

/* Load the config named by -c (or found by config_find); exit 2 on error. */
void cli_load_config(const char *explicit_path, struct config *cfg)
{
    char err[1024] = "";
    const char *path = config_find(explicit_path);
    if (explicit_path && !path) {
        fprintf(stderr, "litevault: config file %s does not exist\n", explicit_path);
        exit(LV_EXIT_USAGE);
    }
    if (!path) {
        if (config_defaults(cfg) != 0)
            exit(LV_EXIT_RUNTIME);
        return;
    }
    if (config_load(path, cfg, err, sizeof err) != 0) {
        fprintf(stderr, "litevault: %s\n", err[0] ? err : "cannot load the configuration");
        exit(LV_EXIT_USAGE);
    }
}
