/*
 * mount_cli.c -- `litevault mount [-c FILE] [-- CMD ARGS...]`: parse the
 * options, load the configuration and run the daemon (daemon/daemon.c).
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"
#include "daemon/config.h"
#include "daemon/daemon.h"

static const struct cli_cmd mount_cmd = {"mount", "usage: litevault mount [-c FILE] [-- CMD ARGS...]", NULL};

static void usage_mount(void)
{
    printf("%s\n\n"
           "Serve the databases in data.dir on the FUSE mount fuse.dir, in the foreground,\n"
           "capturing every committed transaction.  Unmounts cleanly on SIGINT and SIGTERM.\n"
           "With -- CMD, runs CMD once the mount is ready and exits with its exit code.\n\n"
           "  -c, --config FILE   configuration file (default ./litevault.yml, then /etc/litevault.yml)\n"
           "  -h, --help          show this help\n\n"
           "Under systemd (Type=notify), tells it READY=1 once the mount answers.  A dead\n"
           "litevault mount left on fuse.dir by a killed daemon is detached at start.\n",
           mount_cmd.usage);
}

int cli_mount(int argc, char **argv)
{
    static const struct option opts[] = {{"config", 1, 0, 'c'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *cpath = NULL;
    struct config cfg;
    int c, rc;

    while ((c = cli_getopt(&mount_cmd, argc, argv, "+c:h", opts)) != -1) {
        if (c == 'c')
            cpath = optarg;
        else if (c == 'h') {
            usage_mount();
            return 0;
        }
    }
    char **cmd = optind < argc ? argv + optind : NULL;
    cli_load_config(cpath, &cfg);
    lvlog_setup(cfg.log_level, cfg.log_json);
    if (sys_fault_from_env() != 0)
        LV_WARN("LV_FAULT is set but could not be parsed; ignoring it");
    rc = daemon_run(&cfg, cmd);
    config_free(&cfg);
    return rc;
}
