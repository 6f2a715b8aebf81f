/*
 * daemon.c -- the daemon's wiring (see daemon.h).
 *
 * Start-up order, each step depending on the ones before it:
 *   1. the mount point is usable (check_mountpoint: not a live mount; a dead
 *      litevault mount, left by a killed daemon, is detached)
 *   2. SIGINT/SIGTERM/SIGHUP blocked in every thread (fs_run takes them)
 *   3. the registry (dbreg_open: data.dir, logs, reconcile), data.dir/tmp cleared
 *   4. scheduled exports (created, not started) and the archiver (threads run)
 *   5. the HTTP API: the admin socket data.dir/admin.sock (0600, every
 *      route, no token: only the daemon's user and root can connect) and,
 *      unless http.public is false with no http.token, http.addr (its
 *      routes; the token, if set, guards the private ones, and the public
 *      ones too when http.public is false; HTTPS with http.tls-cert/-key)
 *   6. housekeeping (state saves every data.state-interval) and the export scheduler
 *   7. the FUSE mount (fs_prepare), the readiness probe, then the -- CMD
 *      child, then fs_run
 * Shutdown runs the same steps backwards from wherever start-up stopped,
 * telling systemd STOPPING=1 and a STATUS= line per step (notify.h); after
 * a clean run (a signal, or the -- CMD child exited) the archiver first
 * drains: the unmount comes first (no new commits), then every record not
 * yet archived is uploaded, bounded by shutdown-timeout.
 *
 * Invariants:
 *   D1. No thread writes to data.dir/tmp before dbreg_clear_tmp has run.
 *   D2. The HTTP routes' context (struct api_ctx) outlives the server:
 *       http_free runs before the registry, exports or archiver are freed.
 *   D3. The admin socket is replaced only after dbreg_open took data.dir's
 *       lock, so a second daemon never steals a running one's socket.
 *   D4. archiver_drain runs after fs_finish (the mount is gone), so the
 *       TXIDs it drains to are final.
 *   D5. READY=1 goes to systemd only once the mount answers a request
 *       (ready_probe's statvfs returned), so units ordered After= this one
 *       find the databases there; the probe is joined after fs_finish,
 *       which ends any request still waiting.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
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
#include "daemon/notify.h"
#include "export/exports.h"

/* The running daemon (one per process, on daemon_run's stack). */
struct daemon {
    const struct config *cfg;  /* configuration (borrowed, immutable) */
    struct dbreg *reg;         /* databases */
    struct exports *exp;       /* scheduled exports (NULL if none); set before the HTTP server starts */
    struct archiver *arch;     /* archive uploads, NULL without archive: destinations */
    struct worker *hk;         /* housekeeping: saves checksum states */
    struct worker *waiter;     /* waits for the -- CMD child, NULL without one */
    struct worker *probe;      /* readiness probe (ready_probe), NULL before the mount */
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

/* Where dir (an absolute or relative path) would appear in mountinfo:
 * realpath of its parent plus its name, because realpath(dir) itself
 * fails on a dead mount (ENOTCONN). */
static void mount_path(const char *dir, char *out, size_t outlen)
{
    char parent[PATH_MAX], real[PATH_MAX];
    const char *slash = strrchr(dir, '/');

    if (realpath(dir, real)) {
        snprintf(out, outlen, "%s", real);
        return;
    }
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else
        snprintf(parent, sizeof parent, "%.*s", slash == dir ? 1 : (int)(slash - dir), dir);
    if (realpath(parent, real))
        snprintf(out, outlen, "%s%s%s", real, strcmp(real, "/") ? "/" : "", slash ? slash + 1 : dir);
    else
        snprintf(out, outlen, "%s", dir);
}

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void mountinfo_unescape(char *s)
{
    char *w = s;

    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
            *w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *w++ = *s;
        }
    }
    *w = 0;
}

/* Is dir a mount point (per /proc/self/mountinfo)?  1 with its file system
 * type (e.g. "fuse.litevault") in fstype, else 0.  The last matching line
 * wins: it is the mount on top. */
static int mount_lookup(const char *dir, char *fstype, size_t fslen)
{
    FILE *mi = fopen("/proc/self/mountinfo", "r");
    char line[8192], want[PATH_MAX], mp[PATH_MAX], fs[256];
    int found = 0;

    if (!mi)
        return 0;
    mount_path(dir, want, sizeof want);
    while (fgets(line, sizeof line, mi)) {
        const char *sep = strstr(line, " - ");
        if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 || sscanf(sep + 3, "%255s", fs) != 1)
            continue;
        mountinfo_unescape(mp);
        if (strcmp(mp, want) == 0) {
            found = 1;
            snprintf(fstype, fslen, "%s", fs);
        }
    }
    fclose(mi);
    return found;
}

/* Detach the dead mount on dir: umount2(MNT_DETACH) as root, else
 * fusermount3 -u -z (setuid, for the user who mounted it).  0 or LV_EIO. */
static int detach_mount(const char *dir)
{
    int st = 0;
    pid_t pid;

    if (umount2(dir, MNT_DETACH) == 0)
        return 0;
    LV_DEBUG("umount2 %s: %s; trying fusermount3 -u -z", dir, strerror(errno));
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        execlp("fusermount3", "fusermount3", "-u", "-z", dir, (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return LV_EIO;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : LV_EIO;
}

/* Is dir a dead FUSE mount (its server gone: ENOTCONN)?  stat() may be
 * answered from the kernel's attribute cache; statvfs always reaches the
 * server. */
static int mount_is_dead(const char *dir)
{
    struct statvfs sv;
    struct stat st;

    return (stat(dir, &st) != 0 && errno == ENOTCONN) || (statvfs(dir, &sv) != 0 && errno == ENOTCONN);
}

/* 0 if dir is usable as a mount point (created if missing), else an exit
 * code.  A dead litevault mount on dir (left by a daemon that was killed,
 * with this fuse.dir: this configuration's) is detached; any other mount,
 * or a dead mount of another file system, is refused. */
static int check_mountpoint(const char *dir)
{
    char fstype[256] = "";
    struct stat st;
    int mounted = mount_lookup(dir, fstype, sizeof fstype);

    if (mounted && mount_is_dead(dir)) {
        if (strcmp(fstype, "fuse.litevault") != 0) {
            fprintf(stderr, "litevault: fuse.dir %s is a stale %s mount (transport endpoint is not connected) "
                            "that is not litevault's; run 'fusermount3 -u %s' and start again\n", dir, fstype, dir);
            return LV_EXIT_RUNTIME;
        }
        if (detach_mount(dir) != 0) {
            fprintf(stderr, "litevault: fuse.dir %s is a stale litevault mount (transport endpoint is not "
                            "connected) and cannot be detached; run 'fusermount3 -u %s' and start again\n", dir, dir);
            return LV_EXIT_RUNTIME;
        }
        LV_WARN("fuse.dir %s was a stale litevault mount (its daemon was killed); detached it", dir);
        mounted = mount_lookup(dir, fstype, sizeof fstype);
    }
    if (stat(dir, &st) != 0) {
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
    if (!mounted)
        return 0;
    fprintf(stderr, "litevault: fuse.dir %s is busy: something is already mounted there "
                    "(another litevault?); unmount it (fusermount3 -u %s) or choose another fuse.dir\n",
            dir, dir);
    return LV_EXIT_RUNTIME;
}

/* The readiness probe: statvfs on the mount point blocks until the FUSE
 * loop answers, then READY=1 goes to systemd (D5).  A probe that fails
 * (the mount went away before answering) sends nothing. */
static void ready_probe(struct worker *w, void *arg)
{
    struct daemon *dm = arg;
    struct statvfs sv;

    LV_UNUSED(w);
    if (statvfs(dm->cfg->fuse_dir, &sv) != 0) {
        LV_DEBUG("readiness probe: statvfs %s: %s", dm->cfg->fuse_dir, strerror(errno));
        return;
    }
    notify_ready("serving");
    LV_DEBUG("the mount %s answers; told systemd READY=1", dm->cfg->fuse_dir);
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

/* Step 5: the admin socket (*admin) and, if config_http_listens, http.addr (*hs).  0 or an exit code. */
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
    if (!config_http_listens(cfg))
        return 0;
    if (!cfg->http_token && !cfg->http_allow_no_token && !http_addr_is_loopback(cfg->http_addr)) {
        fprintf(stderr, "litevault: http.addr %s is not a loopback address and no http.token is set; set http.token "
                        "(or http.token-file), or http.allow-no-token: true\n", cfg->http_addr); /* config_load's check */
        return LV_EXIT_USAGE;
    }
    if (http_new(cfg->http_addr, hs) != 0 || http_set_limits(*hs, &lim) != 0 || api_register(*hs, &ctx, 0) != 0 ||
        http_set_token(*hs, cfg->http_token) != 0 || http_set_public(*hs, cfg->http_public) != 0) {
        fprintf(stderr, "litevault: cannot set up HTTP on http.addr %s (see the log above); change http.addr\n",
                cfg->http_addr);
        return LV_EXIT_RUNTIME;
    }
    if (cfg->http_tls_cert && http_set_tls(*hs, cfg->http_tls_cert, cfg->http_tls_key) != 0) {
        fprintf(stderr, "litevault: cannot serve HTTPS on http.addr %s: http.tls-cert %s or http.tls-key %s cannot be "
                        "read (see the log above); fix the files or those keys\n", cfg->http_addr, cfg->http_tls_cert,
                cfg->http_tls_key);
        return LV_EXIT_USAGE;
    }
    if (http_start(*hs) != 0) {
        fprintf(stderr, "litevault: cannot serve HTTP%s on http.addr %s (in use, or not a local address?%s); "
                        "change http.addr%s\n", cfg->http_tls_cert ? "S" : "", cfg->http_addr,
                cfg->http_tls_cert ? " or http.tls-cert and http.tls-key are not a valid, matching certificate and key"
                                   : "", cfg->http_tls_cert ? " or those keys" : "");
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
    if (worker_start("lv-ready", ready_probe, &dm, &dm.probe) != 0) {
        fs_finish(fs);
        goto out_workers;
    }
    if (cmd && (rc = start_child(&dm, cmd, &set)) != 0) {
        fs_finish(fs);
        goto out_workers;
    }
    api_set_serving(1);
    fs_run(fs);
    api_set_serving(0);
    notify_stopping("unmounting");
    fs_finish(fs);
    if (dm.arch)
        notify_status("archiving the rest of the log");
    archiver_drain(dm.arch); /* D4: after the unmount, bounded by archive[].shutdown-timeout */
    rc = 0;
    if (dm.waiter) {
        worker_stop(dm.waiter); /* the child has exited: fs_run returned because of it, or a signal */
        int st = dm.child_status;
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
out_workers:
    worker_stop(dm.probe); /* D5: fs_finish has ended its request */
    worker_stop(dm.hk);
out_parts:
    notify_status("stopping the HTTP API");
    http_free(hs); /* D2 */
    http_free(admin);
    notify_status("finishing scheduled exports");
    exports_stop(dm.exp);
    if (dm.arch)
        notify_status("stopping the archiver");
    archiver_stop(dm.arch);
    notify_status("saving checksum states");
    dbreg_close(dm.reg);
    notify_status("stopped");
    return rc;
}
