/*
 * daemon.c -- the daemon's wiring (see daemon.h).
 *
 * Start-up order, each step depending on the ones before it:
 *   1. the mount point is usable (check_mountpoint: not a live or dead mount)
 *   2. SIGINT/SIGTERM/SIGHUP blocked in every thread (fs_run takes them)
 *   3. the registry (dbreg_open: data.dir, logs, reconcile), data.dir/tmp cleared
 *   4. scheduled exports (created, not started) and the archiver (threads run)
 *   5. the HTTP API: the admin socket data.dir/admin.sock (0600, every
 *      route) and, unless http.public is false, http.addr (read-only routes)
 *   6. housekeeping (state saves every data.state-interval) and the export scheduler
 *   7. the FUSE mount (fs_prepare), then the -- CMD child, then fs_run
 * Shutdown runs the same steps backwards from wherever start-up stopped;
 * after a clean run (a signal, or the -- CMD child exited) the archiver
 * first drains: the unmount comes first (no new commits), then every
 * record not yet archived is uploaded, bounded by shutdown-timeout.
 *
 * Invariants:
 *   D1. No thread writes to data.dir/tmp before dbreg_clear_tmp has run.
 *   D2. The HTTP routes' context (struct api_ctx) outlives the server:
 *       http_free runs before the registry, exports or archiver are freed.
 *   D3. The admin socket is replaced only after dbreg_open took data.dir's
 *       lock, so a second daemon never steals a running one's socket.
 *   D4. archiver_drain runs after fs_finish (the mount is gone), so the
 *       TXIDs it drains to are final.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "archive/archiver.h"
#include "base/http.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"
#include "base/worker.h"
#include "capture/db.h"
#include "capture/fs.h"
#include "daemon/api.h"
#include "daemon/config.h"
#include "export/exports.h"

/* The running daemon (one per process, on daemon_run's stack). */
struct daemon {
    const struct config *cfg;  /* configuration (borrowed, immutable) */
    struct dbreg *reg;         /* databases */
    struct exports *exp;       /* scheduled exports (NULL if none); set before the HTTP server starts */
    struct archiver *arch;     /* archive uploads, NULL without archive: destinations */
    struct worker *hk;         /* housekeeping: saves checksum states */
    struct worker *waiter;     /* waits for the -- CMD child, NULL without one */
    pid_t child;               /* -- CMD child, or 0 (immutable once the waiter runs) */
    int child_status;          /* its wait status (written by the waiter before it exits) */
};

static void housekeeping(struct worker *w, void *arg)
{
    struct daemon *dm = arg;

    while (!worker_nap(w, dm->cfg->state_interval_us))
        dbreg_save_states(dm->reg, 0);
}

static void child_waiter(struct worker *w, void *arg)
{
    struct daemon *dm = arg;
    int st = 0;

    LV_UNUSED(w);
    while (waitpid(dm->child, &st, 0) < 0 && errno == EINTR)
        ;
    dm->child_status = st;
    LV_INFO("command exited (%s %d); unmounting", WIFEXITED(st) ? "status" : "signal",
            WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    fs_request_exit();
}

/* Is dir already a mount point (per /proc/self/mountinfo)? */
static int is_mounted(const char *dir)
{
    FILE *mi = fopen("/proc/self/mountinfo", "r");
    char line[8192], real[PATH_MAX], mp[PATH_MAX];
    int found = 0;

    if (!mi)
        return 0;
    if (!realpath(dir, real))
        snprintf(real, sizeof real, "%s", dir);
    while (!found && fgets(line, sizeof line, mi))
        found = sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && strcmp(mp, real) == 0;
    fclose(mi);
    return found;
}

/* 0 if dir is usable as a mount point (created if missing), else an exit code. */
static int check_mountpoint(const char *dir)
{
    struct stat st;
    struct statvfs sv;

    if (stat(dir, &st) != 0) {
        if (errno == ENOTCONN) {
            fprintf(stderr, "litevault: fuse.dir %s is a stale FUSE mount (transport endpoint is not connected); "
                            "run 'fusermount3 -u %s' and start again\n", dir, dir);
            return LV_EXIT_RUNTIME;
        }
        if (errno != ENOENT || sys_mkdir_p(dir) != 0) {
            fprintf(stderr, "litevault: fuse.dir %s: %s; create it or fix fuse.dir\n", dir, strerror(errno));
            return LV_EXIT_RUNTIME;
        }
        LV_INFO("created mount point %s", dir);
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "litevault: fuse.dir %s is not a directory; set fuse.dir to a directory\n", dir);
        return LV_EXIT_RUNTIME;
    }
    if (!is_mounted(dir))
        return 0;
    /* stat() may be answered from the kernel's attribute cache; statvfs
     * always reaches the (dead) server. */
    if (statvfs(dir, &sv) != 0 && errno == ENOTCONN) {
        fprintf(stderr, "litevault: fuse.dir %s is a stale FUSE mount (transport endpoint is not "
                        "connected); run 'fusermount3 -u %s' and start again\n", dir, dir);
        return LV_EXIT_RUNTIME;
    }
    fprintf(stderr, "litevault: fuse.dir %s is busy: something is already mounted there "
                    "(another litevault?); unmount it (fusermount3 -u %s) or choose another fuse.dir\n",
            dir, dir);
    return LV_EXIT_RUNTIME;
}

/* Fork and exec cmd with the signals unblocked; the waiter worker reaps it.  0 or an exit code. */
static int start_child(struct daemon *dm, char **cmd, const sigset_t *set)
{
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        pthread_sigmask(SIG_UNBLOCK, set, NULL);
        execvp(cmd[0], cmd);
        fprintf(stderr, "litevault: cannot run %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    if (pid < 0) {
        fprintf(stderr, "litevault: fork: %s\n", strerror(errno));
        return LV_EXIT_RUNTIME;
    }
    dm->child = pid;
    fs_set_child(pid);
    if (worker_start("lv-child", child_waiter, dm, &dm->waiter) != 0) {
        kill(pid, SIGTERM);
        fprintf(stderr, "litevault: cannot start the thread that waits for %s\n", cmd[0]);
        return LV_EXIT_RUNTIME;
    }
    return 0;
}

/* Step 5: the admin socket (*admin) and, if http.public, http.addr (*hs).  0 or an exit code. */
static int open_http(struct daemon *dm, struct http_server **hs, struct http_server **admin)
{
    const struct config *cfg = dm->cfg;
    struct api_ctx ctx = {dm->reg, dm->exp, dm->arch, cfg->data_dir, cfg->http_image_space};
    struct http_limits lim = {0, (unsigned)cfg->http_per_addr, (unsigned)(cfg->http_header_timeout_us / 1000000)};
    char sock[PATH_MAX];

    if (config_admin_socket(cfg, sock, sizeof sock) != 0 || http_new(sock, admin) != 0 ||
        http_set_limits(*admin, &(struct http_limits){32, 0, lim.header_timeout_s}) != 0 ||
        api_register(*admin, &ctx, 1) != 0 || http_start(*admin) != 0) { /* D3: after dbreg_open */
        fprintf(stderr, "litevault: cannot serve the admin socket %s/admin.sock (see the log above); "
                        "check data.dir\n", cfg->data_dir);
        return LV_EXIT_RUNTIME;
    }
    if (!cfg->http_public)
        return 0;
    if (http_new(cfg->http_addr, hs) != 0 || http_set_limits(*hs, &lim) != 0 || api_register(*hs, &ctx, 0) != 0 ||
        http_start(*hs) != 0) {
        fprintf(stderr, "litevault: cannot serve HTTP on http.addr %s (in use, or not a local address?); "
                        "change http.addr\n", cfg->http_addr);
        return LV_EXIT_RUNTIME;
    }
    return 0;
}

/* Steps 3 to 5 of start-up.  0 or an exit code (message printed). */
static int open_parts(struct daemon *dm, struct http_server **hs, struct http_server **admin)
{
    const struct config *cfg = dm->cfg;
    char err[1024] = "";

    if (dbreg_open(&(struct dbreg_opts){cfg->data_dir, cfg->segment_size}, &dm->reg, err, sizeof err) != 0) {
        fprintf(stderr, "litevault: %s\n", err);
        return LV_EXIT_RUNTIME;
    }
    dbreg_clear_tmp(cfg->data_dir); /* D1 */
    if (exports_new(cfg->exports, cfg->nexports, cfg->data_dir, dm->reg, NULL, NULL, &dm->exp, err, sizeof err) != 0) {
        fprintf(stderr, "litevault: %s\n", err);
        return LV_EXIT_RUNTIME;
    }
    if (archiver_start(cfg->archive, cfg->narchive, cfg->max_log_size, dm->reg, &dm->arch, err, sizeof err) != 0) {
        fprintf(stderr, "litevault: %s: %s\n", cfg->path ? cfg->path : "config", err);
        return LV_EXIT_USAGE;
    }
    return open_http(dm, hs, admin);
}

int daemon_run(const struct config *cfg, char **cmd)
{
    struct daemon dm = {.cfg = cfg};
    struct http_server *hs = NULL, *admin = NULL;
    struct fs *fs = NULL;
    char err[1024] = "";
    sigset_t set;
    int rc;

    rc = check_mountpoint(cfg->fuse_dir);
    if (rc)
        return rc;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = open_parts(&dm, &hs, &admin);
    if (rc)
        goto out_parts;
    rc = LV_EXIT_RUNTIME;
    if (worker_start("lv-housekeeping", housekeeping, &dm, &dm.hk) != 0 || exports_start(dm.exp) != 0)
        goto out_workers;
    if (fs_prepare(dm.reg, cfg->fuse_dir, cfg->fuse_allow_other, &fs, err, sizeof err) != 0) {
        fprintf(stderr, "litevault: %s\n", err);
        goto out_workers;
    }
    LV_INFO("serving %s on %s (http %s)", cfg->data_dir, cfg->fuse_dir, cfg->http_addr);
    if (cmd && (rc = start_child(&dm, cmd, &set)) != 0) {
        fs_finish(fs);
        goto out_workers;
    }
    api_set_serving(1);
    fs_run(fs);
    api_set_serving(0);
    fs_finish(fs);
    archiver_drain(dm.arch); /* D4: after the unmount, bounded by archive[].shutdown-timeout */
    rc = 0;
    if (dm.waiter) {
        worker_stop(dm.waiter); /* the child has exited: fs_run returned because of it, or a signal */
        int st = dm.child_status;
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
out_workers:
    worker_stop(dm.hk);
out_parts:
    http_free(hs); /* D2 */
    http_free(admin);
    exports_stop(dm.exp);
    archiver_stop(dm.arch);
    dbreg_close(dm.reg);
    return rc;
}
