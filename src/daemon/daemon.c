/*
 * daemon.c -- the daemon's wiring (see daemon.h).
 *
 * Start-up order, each step depending on the ones before it:
 *   1. the mount point is usable (check_mountpoint: not a live mount; a dead
 *      litevault mount, left by a killed daemon, is detached)
 *   2. SIGINT/SIGTERM/SIGHUP blocked in every thread (fs_run takes them)
 *   3. the lease (who is the primary); on a replica with an archive and an
 *      empty data.dir, seeding from the archive (replication.seed); the
 *      registry (dbreg_open: data.dir, logs, reconcile), data.dir/tmp cleared
 *   4. the role's parts: the primary gets its cluster ID
 *      and its replication streams (replica/primary.h), scheduled exports
 *      (created, not started) and the archiver (threads run) with the
 *      streams' retention hook; a replica refuses applications' writes
 *      (dbreg_set_replica) and neither archives nor exports
 *   5. the HTTP API: the admin socket data.dir/admin.sock (0600, every
 *      route, no token: only the daemon's user and root can connect) and,
 *      unless http.public is false with no http.token, http.addr (its
 *      routes; the token, if set, guards the private ones, and the public
 *      ones too when http.public is false; HTTPS with http.tls-cert/-key);
 *      on the primary also POST /v1/stream, the replicas' (private) route
 *   6. housekeeping (state saves every data.state-interval) and the export scheduler
 *   7. the FUSE mount (fs_prepare), the readiness probe, a replica's
 *      client (replica/replica.h: it applies through the mount), then the
 *      -- CMD child, then fs_run
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
 *   D6. A replica's registry refuses writes before the mount exists
 *       (dbreg_set_replica right after dbreg_open), and its client starts
 *       after fs_prepare (it applies through the mount).  At the stop it is
 *       asked to stop and given 3 s to leave before fs_finish, so that the
 *       applier's files on the mount are closed (dbreg_close_mount_fds)
 *       while the mount exists; one still inside an apply waiting on the
 *       mount (which no longer serves) leaves when fs_finish ends that
 *       request, and is joined after it.
 *   D7. The primary's streams are freed after the HTTP server (which ends
 *       them) and after the archiver (which calls their retention hook).
 *   D8. With replication.sync-replicas, the registry's commit hook waits
 *       in the primary's streams (primary_sync_wait); it is set once they
 *       exist and removed before they are freed, after the mount is gone
 *       (no commit in flight).
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

#include <jansson.h>

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
#include "daemon/surplus.h"
#include "daemon/proxy_node.h"
#include "export/exports.h"
#include "replica/cluster.h"
#include "replica/lease.h"
#include "replica/primary.h"
#include "replica/replica.h"
#include "restore/catchup.h"
#include "replica/peer_catchup.h"
#include "restore/seed.h"

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
    struct lease *lease;       /* who is the primary */
    int primary;               /* this node runs the primary's parts (atomic: read by the lease's thread;
                                  written by start-up, then by the role worker, 0 -> 1 only) */
    char node_id[33];          /* data.dir/node-id */
    char cluster_hex[33];      /* the primary's cluster ID (data.dir/cluster-id) */
    char primary_url[1024];    /* a replica's primary ("" while none is known) */
    struct primary *prim;      /* the primary's replication streams, NULL on a replica */
    struct replica *repl;      /* a replica's client, NULL on the primary, before the mount, and while no
                                  primary is known */
    int mounted;               /* the mount serves: a replica's client may start (role worker's) */
    struct worker *role;       /* follows an etcd lease (role_worker); NULL for a static lease */
    pthread_mutex_t handoff_mu; /* one hand-over at a time (handoff) */
    pthread_mutex_t fence_mu;  /* serializes refence (computing and setting the registry's fence) */
    int64_t pending_deadline;  /* the lease's last fencing deadline (atomic), applied when the registry opens */
    int handing_over;          /* a hand-over has stopped writes (atomic): role_step keeps them stopped */
    int exit_code;             /* nonzero: daemon_run's exit status (a deposed primary: LV_EXIT_DEPOSED) */
};

/* Exit status of a primary deposed by its lease: a service manager's
 * restart (Restart=on-failure) brings it back as a replica. */
#define LV_EXIT_DEPOSED 3
#define PEER_CATCHUP_TIMEOUT_MS 10000 /* each GET /v1/log of a promotion's catch-up (a silent node: ~1 s) */
#define PEER_CATCHUP_BUDGET_US 15000000LL /* all of it: writes stay closed meanwhile */

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

static int promote_cb(void *arg, const char *node, char *msg, size_t n);

/* Step 5: the admin socket (*admin) and, if config_http_listens, http.addr (*hs).  0 or an exit code. */
static int open_http(struct daemon *dm, struct http_server **hs, struct http_server **admin)
{
    const struct config *cfg = dm->cfg;
    struct api_ctx ctx = {dm->reg, dm->exp, dm->arch, cfg->data_dir, cfg->http_image_space, dm->prim,
                          dm->node_id, dm->primary ? dm->cluster_hex : NULL, dm->primary ? NULL : dm->primary_url,
                          dm->lease, promote_cb, dm};
    struct http_limits lim = {0, (unsigned)cfg->http_per_addr, (unsigned)(cfg->http_header_timeout_us / 1000000)};
    char sock[PATH_MAX];

    if (config_admin_socket(cfg, sock, sizeof sock) != 0 || http_new(sock, admin) != 0 ||
        http_set_limits(*admin, &(struct http_limits){32, 0, lim.header_timeout_s}) != 0 ||
        api_register(*admin, &ctx, 1) != 0 || http_start(*admin) != 0) { /* D3: after dbreg_open */
        fprintf(stderr, "litevault: cannot serve the admin socket %s/admin.sock (see the log above); "
                        "check data.dir\n", cfg->data_dir);
        return LV_EXIT_RUNTIME;
    }
    if (!config_http_listens(cfg)) {
        if (dm->primary)
            LV_WARN("http.addr is not served (http.public is false and no http.token is set): replicas cannot "
                    "connect to this primary; set http.token to serve them");
        return 0;
    }
    if (!cfg->http_token && !cfg->http_allow_no_token && !http_addr_is_loopback(cfg->http_addr)) {
        fprintf(stderr, "litevault: http.addr %s is not a loopback address and no http.token is set; set http.token "
                        "(or http.token-file), or http.allow-no-token: true\n", cfg->http_addr); /* config_load's check */
        return LV_EXIT_USAGE;
    }
    if (http_new(cfg->http_addr, hs) != 0 || http_set_limits(*hs, &lim) != 0 || api_register(*hs, &ctx, 0) != 0 ||
        http_set_token(*hs, cfg->http_token) != 0 ||
        http_set_public(*hs, cfg->http_public) != 0) {
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

/* Set the registry's fence from the state now: fenced when this node runs
 * the primary's parts but the lease does not say it may write, or a
 * hand-over stopped writes.  Every caller recomputes under fence_mu, so a
 * value computed before a change can never be stored after the value
 * computed after it (the lease's thread, the role worker, promote and
 * handoff all call it). */
static void refence(struct daemon *dm)
{
    int fenced;

    pthread_mutex_lock(&dm->fence_mu);
    fenced = __atomic_load_n(&dm->primary, __ATOMIC_ACQUIRE) &&
             (!lease_is_primary(dm->lease) || __atomic_load_n(&dm->handing_over, __ATOMIC_ACQUIRE));
    dbreg_set_fenced(dm->reg, fenced);
    archiver_hold(__atomic_load_n(&dm->arch, __ATOMIC_ACQUIRE), fenced); /* nothing more to the shared archive */
    pthread_mutex_unlock(&dm->fence_mu);
}

/* The lease changed (on the lease's thread): a primary that is no longer
 * the lease's holder in good standing refuses writes at once; the role
 * worker does the rest. */
static void lease_changed(void *arg)
{
    struct daemon *dm = arg;

    struct worker *role = __atomic_load_n(&dm->role, __ATOMIC_ACQUIRE);

    if (__atomic_load_n(&dm->primary, __ATOMIC_ACQUIRE))
        refence(dm);
    if (role)
        worker_wake(role);
}

/* The databases' positions for an etcd lease's node key ({"txids": {"NAME":
 * TXID}, "terms": {"NAME": TERM}}, malloc'ed), or NULL. */
static char *lease_positions(void *arg)
{
    struct daemon *dm = arg;
    struct dbreg *reg = __atomic_load_n(&dm->reg, __ATOMIC_ACQUIRE);
    struct db_info *dbs = NULL;
    size_t n = 0;
    char *s = NULL;
    json_t *tx = json_object(), *tm = json_object(), *o;

    if (!reg || dbreg_list(reg, &dbs, &n) != 0) {
        json_decref(tx);
        json_decref(tm);
        return NULL;
    }
    for (size_t i = 0; tx && tm && i < n; i++) {
        json_object_set_new(tx, dbs[i].name, json_integer((json_int_t)dbs[i].txid));
        json_object_set_new(tm, dbs[i].name, json_integer((json_int_t)dbs[i].term));
    }
    o = tx && tm ? json_pack("{s:O,s:O}", "txids", tx, "terms", tm) : NULL;
    s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    json_decref(tx);
    json_decref(tm);
    free(dbs);
    return s;
}

/* The etcd lease's renewal deadline: every write checks it (dbreg_set_fence_deadline). */
static void lease_deadline(void *arg, int64_t mono_us)
{
    struct daemon *dm = arg;
    struct dbreg *reg;

    __atomic_store_n(&dm->pending_deadline, mono_us, __ATOMIC_RELEASE); /* before reg is read: see open_parts */
    reg = __atomic_load_n(&dm->reg, __ATOMIC_ACQUIRE);
    if (reg)
        dbreg_set_fence_deadline(reg, mono_us);
}

/* The cluster ID of an etcd lease without lease.key: agreed through etcd
 * (lease_etcd_cluster) and kept in data.dir/cluster-id.  0 or an exit code. */
static int etcd_cluster(struct daemon *dm, const struct lease_conf *lc)
{
    const struct config *cfg = dm->cfg;
    char err[1024] = "";
    uint8_t id[16];
    int have = cluster_id_load(cfg->data_dir, id) == 0, rc;

    if (have)
        lv_hex(id, 16, dm->cluster_hex);
    rc = lease_etcd_cluster(lc, dm->cluster_hex, have, 30000000, err, sizeof err);
    if (rc) {
        fprintf(stderr, "litevault: %s: %s\n", cfg->path ? cfg->path : "config", err);
        return rc == LV_EREFUSED ? LV_EXIT_USAGE : LV_EXIT_RUNTIME;
    }
    if (!have && (lv_unhex(dm->cluster_hex, id, 16) != 0 || cluster_id_save(cfg->data_dir, id) != 0)) {
        fprintf(stderr, "litevault: cannot save %s/cluster-id\n", cfg->data_dir);
        return LV_EXIT_RUNTIME;
    }
    return 0;
}

/* Step 3a: who is the primary (the lease).  A static lease says at once;
 * an etcd node starts as a replica of whoever holds the lease (perhaps
 * nobody yet) and the role worker promotes it if it wins.  0 or an exit code. */
static int open_lease(struct daemon *dm)
{
    const struct config *cfg = dm->cfg;
    struct lease_conf lc = {.type = cfg->lease_type, .candidate = cfg->lease_candidate,
                            .advertise_url = cfg->advertise_url, .primary_url = cfg->primary_url,
                            .node_id = dm->node_id, .proxy_url = cfg->proxy_advertise_url,
                            .endpoints = cfg->lease_endpoints, .key = cfg->lease_key,
                            .ttl_us = cfg->lease_ttl_us, .ca_file = cfg->lease_tls_ca,
                            .cert_file = cfg->lease_tls_cert, .key_file = cfg->lease_tls_key,
                            .username = cfg->lease_username, .password = cfg->lease_password,
                            .positions = lease_positions, .deadline = lease_deadline, .positions_arg = dm};
    int etcd = strcmp(cfg->lease_type, "etcd") == 0, rc = 0;
    char err[1024] = "";

    /* An etcd lease publishes the node ID, so it is read before the registry
     * opens (a static lease's node reads it in open_role, after dbreg_open
     * has checked data.dir). */
    if (etcd && (sys_mkdir_p(cfg->data_dir) != 0 || (rc = node_id_ensure(cfg->data_dir, dm->node_id)) != 0)) {
        fprintf(stderr, "litevault: data.dir %s: cannot read or create its node-id: %s; check data.dir\n",
                cfg->data_dir, rc ? lv_strerror(rc) : strerror(errno));
        return LV_EXIT_RUNTIME;
    }
    if (etcd && !cfg->lease_key && (rc = etcd_cluster(dm, &lc)) != 0)
        return rc;
    lc.cluster_hex = dm->cluster_hex[0] ? dm->cluster_hex : NULL;
    if (lease_open(&lc, &dm->lease, err, sizeof err) != 0) {
        fprintf(stderr, "litevault: %s: %s\n", cfg->path ? cfg->path : "config", err);
        return LV_EXIT_USAGE;
    }
    dm->primary = !etcd && lease_is_primary(dm->lease);
    if (!dm->primary && lease_primary_url(dm->lease, dm->primary_url, sizeof dm->primary_url) != 0 && !etcd) {
        fprintf(stderr, "litevault: this node is a replica but no primary is known; set lease.primary-url\n");
        return LV_EXIT_USAGE;
    }
    return 0;
}

/* Step 3b on a replica with an archive and replication.seed: an empty
 * data.dir is seeded from the archive (restore/seed.h) before the registry
 * opens it.  A failure leaves data.dir empty: the primary then sends
 * snapshots instead. */
static void seed_replica(struct daemon *dm)
{
    const struct config *cfg = dm->cfg;
    struct seed_result res;
    char err[1024] = "";
    int rc;

    if (dm->primary || !cfg->repl_seed || cfg->narchive == 0)
        return;
    memset(&res, 0, sizeof res);
    notify_status("seeding data.dir from the archive");
    rc = seed_if_empty(cfg->data_dir, cfg->archive, cfg->narchive, 1, cfg->repl_seed, &res, err, sizeof err);
    if (rc)
        LV_WARN("replica: seeding the empty data.dir from the archive %s failed (%s); the primary sends snapshots "
                "instead", cfg->archive[0].url, err[0] ? err : lv_strerror(rc));
    else if (res.n)
        LV_INFO("replica: seeded %zu database(s) from the archive %s (%llu bytes in %.1f s)", res.n,
                cfg->archive[0].url, (unsigned long long)res.bytes, res.seconds);
    seed_result_free(&res);
}

/* The primary's parts: cluster ID, streams, scheduled exports (started
 * when started is 1) and the archiver.  0 or an exit code (message printed). */
static int primary_parts(struct daemon *dm, int started)
{
    const struct config *cfg = dm->cfg;
    char err[1024] = "";
    uint8_t cluster[16];
    int rc;

    if ((rc = cluster_id_ensure(cfg->data_dir, cluster)) != 0) {
        fprintf(stderr, "litevault: cannot read or create %s/cluster-id: %s\n", cfg->data_dir, lv_strerror(rc));
        return LV_EXIT_RUNTIME;
    }
    lv_hex(cluster, 16, dm->cluster_hex);
    if (primary_new(&(struct primary_opts){.reg = dm->reg, .data_dir = cfg->data_dir, .cluster = cluster,
                                           .node_id = dm->node_id, .url = cfg->advertise_url,
                                           .max_retain = cfg->repl_max_retain, .image_reserve = api_image_reserve,
                                           .image_release = api_image_release,
                                           .sync_replicas = cfg->repl_sync_replicas,
                                           .acks = strcmp(cfg->lease_type, "etcd") == 0,
                                           .sync_timeout_us = cfg->repl_sync_timeout_us,
                                           .wait_durable = cfg->repl_wait_durable},
                    &dm->prim) != 0) {
        fprintf(stderr, "litevault: out of memory\n");
        return LV_EXIT_RUNTIME;
    }
    if (primary_sync_enabled(dm->prim)) /* D8 */
        dbreg_set_commit_hook(dm->reg, primary_sync_wait, dm->prim);
    if (exports_new(cfg->exports, cfg->nexports, cfg->data_dir, dm->reg, NULL, NULL, &dm->exp, err, sizeof err) != 0 ||
        (started && exports_start(dm->exp) != 0)) {
        fprintf(stderr, "litevault: %s\n", err[0] ? err : "cannot start the scheduled exports");
        return LV_EXIT_RUNTIME;
    }
    struct archiver *arch = NULL;
    if (archiver_start(cfg->archive, cfg->narchive, cfg->max_log_size, dm->reg, &arch, err, sizeof err) != 0) {
        fprintf(stderr, "litevault: %s: %s\n", cfg->path ? cfg->path : "config", err);
        return LV_EXIT_USAGE;
    }
    __atomic_store_n(&dm->arch, arch, __ATOMIC_RELEASE); /* refence reads it on the lease's thread */
    archiver_set_retain(dm->arch, primary_retain, dm->prim);
    return 0;
}

/* The role's fields of the HTTP API's context (api_set_role). */
static void set_api_role(struct daemon *dm)
{
    api_set_role(&(struct api_ctx){.primary = dm->prim, .arch = dm->arch, .exp = dm->exp, .lease = dm->lease,
                                   .cluster_hex = dm->primary ? dm->cluster_hex : NULL,
                                   .primary_url = dm->primary ? NULL : dm->primary_url});
}

/* Step 4: what each role runs.  0 or an exit code. */
static int open_role(struct daemon *dm)
{
    const struct config *cfg = dm->cfg;
    int rc;

    if (!dm->node_id[0] && (rc = node_id_ensure(cfg->data_dir, dm->node_id)) != 0) {
        fprintf(stderr, "litevault: cannot read or create %s/node-id: %s\n", cfg->data_dir, lv_strerror(rc));
        return LV_EXIT_RUNTIME;
    }

    if (!dm->primary) {
        dbreg_set_replica(dm->reg, dm->primary_url); /* D6 */
        dbreg_set_mount(dm->reg, cfg->fuse_dir);
        if (dm->primary_url[0])
            LV_INFO("role: replica of %s (node %s); archiving and scheduled exports run on the primary only",
                    dm->primary_url, dm->node_id);
        else
            LV_INFO("role: replica (node %s) until the lease names a primary%s", dm->node_id,
                    cfg->lease_candidate ? " or elects this node" : "");
        lease_on_change(dm->lease, lease_changed, dm);
        return 0;
    }
    rc = primary_parts(dm, 0);
    if (rc)
        return rc;
    LV_INFO("role: primary (node %s, cluster %s)", dm->node_id, dm->cluster_hex);
    lease_on_change(dm->lease, lease_changed, dm);
    return 0;
}

/* May -wal files and rollback journals use kernel passthrough
 * (fuse.wal-passthrough, fuse.journal-passthrough)?  Not where
 * a commit must wait in the daemon: with replication.sync-replicas (the
 * commit waits for replicas' acknowledgements in its write), or with an
 * etcd lease (a fenced primary refuses commits in their write); nor when
 * LV_WAL_PASSTHROUGH=0 or LV_JOURNAL_PASSTHROUGH=0 (tests of the path
 * through the daemon).  A replica
 * never asks (dbreg_wal_passthrough). */
static void set_passthrough(struct daemon *dm)
{
    const struct config *cfg = dm->cfg;
    const char *env = getenv("LV_WAL_PASSTHROUGH");
    int on = cfg->fuse_wal_passthrough && !(env && strcmp(env, "0") == 0);

    if (!on) {
        LV_INFO("-wal files go through the daemon (%s)",
                cfg->fuse_wal_passthrough ? "LV_WAL_PASSTHROUGH=0" : "fuse.wal-passthrough: false");
    } else if (cfg->repl_sync_replicas > 0) {
        LV_INFO("-wal files go through the daemon: replication.sync-replicas makes each commit wait there");
        on = 0;
    } else if (strcmp(cfg->lease_type, "etcd") == 0) {
        LV_INFO("-wal files go through the daemon: with an etcd lease, commits must stop there the moment the lease is lost");
        on = 0;
    }
    if (dbreg_set_wal_passthrough(dm->reg, on) != 0)
        LV_WARN("the WAL watcher cannot run: -wal files go through the daemon");
    /* Rollback journals: allowed where -wal files are (a commit that must
     * wait or be refused needs the daemon in its path), but not tied to
     * the watcher (their commits reach the daemon: db_journal_follow). */
    env = getenv("LV_JOURNAL_PASSTHROUGH");
    int env_off = env && strcmp(env, "0") == 0;
    int jon = cfg->fuse_journal_passthrough && !env_off && cfg->repl_sync_replicas == 0 &&
              strcmp(cfg->lease_type, "etcd") != 0;
    if (!jon)
        LV_INFO("rollback journals go through the daemon (%s)",
                !cfg->fuse_journal_passthrough        ? "fuse.journal-passthrough: false"
                : env_off                             ? "LV_JOURNAL_PASSTHROUGH=0"
                : cfg->repl_sync_replicas > 0         ? "replication.sync-replicas: a commit waits there"
                                                      : "an etcd lease: a primary that loses it must stop commits there");
    dbreg_set_journal_passthrough(dm->reg, jon);
}

/* Steps 3 to 5 of start-up.  0 or an exit code (message printed). */
static int open_parts(struct daemon *dm, struct http_server **hs, struct http_server **admin)
{
    const struct config *cfg = dm->cfg;
    struct dbreg *reg = NULL;
    char err[1024] = "";
    int rc;

    rc = open_lease(dm);
    if (rc)
        return rc;
    if (strcmp(cfg->lease_type, "etcd") == 0) { /* a former primary's databases, before they can be replaced */
        char aside[PATH_MAX];
        if (surplus_set_aside(cfg->data_dir, aside, sizeof aside) != 0) {
            fprintf(stderr, "litevault: cannot set aside the databases of this former primary (see the log)\n");
            return LV_EXIT_RUNTIME;
        }
    }
    seed_replica(dm);
    /* A replica checks every page at start-up: a copy changed behind its
     * back must not pass for the primary's. */
    if (dbreg_open(&(struct dbreg_opts){cfg->data_dir, cfg->segment_size, !lease_is_primary(dm->lease),
                                        cfg->narchive > 0}, &reg,
                   err, sizeof err) != 0) {
        fprintf(stderr, "litevault: %s\n", err);
        return LV_EXIT_RUNTIME;
    }
    __atomic_store_n(&dm->reg, reg, __ATOMIC_RELEASE); /* the lease's thread may look (lease_deadline) */
    set_passthrough(dm);
    dbreg_set_fence_deadline(reg, __atomic_load_n(&dm->pending_deadline, __ATOMIC_ACQUIRE)); /* one told before */
    dbreg_clear_tmp(cfg->data_dir); /* D1 */
    rc = open_role(dm);
    return rc ? rc : open_http(dm, hs, admin);
}

/* Step 7 on a replica: its client, once the mount exists (D6).  0 or an exit code. */
static int start_replica(struct daemon *dm)
{
    const struct config *cfg = dm->cfg;

    struct lease_info li;

    if (dm->primary || !dm->primary_url[0])
        return 0;
    lease_info(dm->lease, &li);
    if (replica_start(&(struct replica_opts){.reg = dm->reg, .data_dir = cfg->data_dir, .min_term = li.primary_term,
                                             .primary_url = dm->primary_url, .token = cfg->http_token,
                                             .ca_file = cfg->http_tls_ca, .node_id = dm->node_id,
                                             .url = cfg->advertise_url, .apply_wait_us = cfg->repl_apply_wait_us,
                                             .max_lag_us = cfg->repl_max_lag_us},
                      &dm->repl) != 0) {
        fprintf(stderr, "litevault: cannot start the replication client\n");
        return LV_EXIT_RUNTIME;
    }
    api_set_replica(dm->repl);
    return 0;
}

/* Stop a replica's client (the mount still serves). */
static void stop_replica(struct daemon *dm)
{
    if (!dm->repl)
        return;
    api_set_replica(NULL);
    replica_ask_stop(dm->repl);
    if (replica_wait_stopped(dm->repl, 3000))
        dbreg_close_mount_fds(dm->reg);
    replica_stop(dm->repl);
    dbreg_close_mount_fds(dm->reg);
    dm->repl = NULL;
}

/* Promotion, before writes open: take what more advanced nodes hold
 * (their etcd node keys say: src/replica/peer_catchup.c), then what the
 * archive holds beyond this node's log, and the databases only the archive
 * holds (restore/catchup.c).  The replication client has stopped, the
 * registry is still in replica mode, so the replica's applier does it.
 * A failure leaves the databases as they are (logged). */
static void catch_up(struct daemon *dm)
{
    const struct config *cfg = dm->cfg;
    struct catchup_result res;
    char err[1024] = "";

    char *peers = lease_peers(dm->lease);
    int wait_ms = cfg->repl_apply_wait_us > 0 ? (int)(cfg->repl_apply_wait_us / 1000) + 1 : 100;

    if (peers) {
        notify_status("catching up from more advanced nodes before taking writes");
        if (peer_catchup(dm->reg, peers, cfg->http_token, cfg->http_tls_ca, PEER_CATCHUP_TIMEOUT_MS, wait_ms,
                         PEER_CATCHUP_BUDGET_US, &res) == 0 && res.dbs)
            LV_INFO("promotion: the other nodes' positions checked for %zu database(s) in %.3f s: %zu advanced by "
                    "%llu record(s), %zu could not be", res.dbs, res.seconds, res.advanced,
                    (unsigned long long)res.records, res.skipped);
        free(peers);
    } else if (strcmp(cfg->lease_type, "etcd") == 0) {
        LV_WARN("promotion: the other nodes' positions cannot be read from etcd now; this node does not catch up "
                "from them");
    }
    if (cfg->narchive > 0) {
        notify_status("catching up from the archive before taking writes");
        if (catchup_from_archive(dm->reg, cfg->archive, cfg->narchive, wait_ms, &res, err, sizeof err) != 0)
            LV_WARN("promotion: cannot read the archive %s to catch up (%s); this node opens writes with its own "
                    "history", cfg->archive[0].url, err);
        else
            LV_INFO("promotion: the archive's tail checked for %zu database(s) in %.3f s: %zu advanced by %llu "
                    "record(s), %zu created from the archive, %zu skipped (each named above)", res.dbs,
                    res.seconds, res.advanced, (unsigned long long)res.records, res.created, res.skipped);
    }
    dbreg_close_mount_fds(dm->reg); /* the applier's files on the mount (D6): a primary applies nothing more */
}

/* The lease elected this replica: it becomes the primary in place, the
 * mount serving throughout.  Its client stops first (nothing more is
 * applied), the primary's parts start, and only then do writes open.  0
 * or an exit code (the daemon then stops). */
static int promote(struct daemon *dm)
{
    int rc;

    struct lease_info li;

    LV_INFO("lease: this node was elected; promoting it to primary (replication from %s stops)",
            dm->primary_url[0] ? dm->primary_url : "(none)");
    stop_replica(dm);
    lease_info(dm->lease, &li);
    if (surplus_mark(dm->cfg->data_dir, li.term) != 0) { /* before any write: see surplus.h */
        fprintf(stderr, "litevault: cannot write %s/last-term (see the log); the node stops\n", dm->cfg->data_dir);
        return LV_EXIT_RUNTIME;
    }
    catch_up(dm);
    dbreg_set_term(dm->reg, li.term); /* stamped on every record of this term, and sent in HELLO */
    rc = primary_parts(dm, 1);
    if (rc)
        return rc;
    __atomic_store_n(&dm->primary, 1, __ATOMIC_RELEASE);
    dm->primary_url[0] = 0;
    set_api_role(dm);
    refence(dm);
    dbreg_set_replica(dm->reg, NULL); /* writes open (unless fenced) */
    LV_INFO("role: primary (node %s, cluster %s)%s", dm->node_id, dm->cluster_hex,
            dbreg_is_fenced(dm->reg) ? ", fenced until the lease is renewed" : "");
    return 0;
}

/* One look at the lease (role_worker).  0, or an exit code: the daemon stops. */
static int role_step(struct daemon *dm)
{
    char url[1024] = "";
    int is_primary = lease_is_primary(dm->lease);
    int known = lease_primary_url(dm->lease, url, sizeof url) == 0;

    if (dm->primary) {
        struct lease_info li;
        refence(dm);
        lease_info(dm->lease, &li);
        if (!li.holding) { /* (the answer to a POST /v1/promote still goes out: http_free drains it) */
            LV_WARN("lease: this node lost its term (%s): it stops (exit status %d) so that its restart rejoins as a "
                    "replica", known ? url : "no primary elected yet", LV_EXIT_DEPOSED);
            return LV_EXIT_DEPOSED;
        }
        return 0;
    }
    if (is_primary)
        return promote(dm);
    if (dm->repl) { /* a new term at the same URL is another primary's, maybe: see replica_raise_term */
        struct lease_info li;
        lease_info(dm->lease, &li);
        if (li.primary_term)
            replica_raise_term(dm->repl, li.primary_term);
    }
    if (!known || strcmp(url, dm->primary_url) == 0 || !__atomic_load_n(&dm->mounted, __ATOMIC_ACQUIRE))
        return 0;
    LV_INFO("lease: following the primary %s%s%s", url, dm->primary_url[0] ? " instead of " : "", dm->primary_url);
    stop_replica(dm);
    snprintf(dm->primary_url, sizeof dm->primary_url, "%s", url);
    dbreg_set_replica(dm->reg, dm->primary_url);
    set_api_role(dm);
    return start_replica(dm);
}

/* A graceful hand-over of the primary role (POST /v1/promote, litevault
 * promote, SIGTERM): stop writes, wait (at most timeout_us) until a
 * replica -- to, or any when to is "" -- holds every database up to its
 * last TXID, then hand it the lease (lease_handoff).  This node is then
 * deposed: its role worker stops the daemon (exit status 3) and its
 * restart follows the new primary.  200 with msg, or an HTTP error status
 * (writes resume). */
static int handoff(struct daemon *dm, const char *to, int64_t timeout_us, char *msg, size_t n)
{
    struct db_info *dbs = NULL;
    size_t ndb = 0, nskip = 0;
    char target[72] = "", err[512] = "", *skip[8];
    int64_t end = lv_mono_us() + timeout_us;
    int st = 200, rc;

    pthread_mutex_lock(&dm->handoff_mu);
    if (!__atomic_load_n(&dm->primary, __ATOMIC_ACQUIRE) || !lease_is_primary(dm->lease)) {
        snprintf(msg, n, "this node is not the primary");
        st = 409;
        goto out;
    }
    if (strcmp(to, dm->node_id) == 0) {
        snprintf(msg, n, "node %s is this primary already", to);
        st = 409;
        goto out;
    }
    __atomic_store_n(&dm->handing_over, 1, __ATOMIC_RELEASE);
    refence(dm); /* no commit from here on: the TXIDs below are final */
    if (dbreg_list(dm->reg, &dbs, &ndb) != 0) {
        snprintf(msg, n, "out of memory");
        st = 500;
        goto out_resume;
    }
    LV_INFO("hand-over: writes stopped; waiting up to %lld ms for %s%s to hold every database", 
            (long long)(timeout_us / 1000), to[0] ? "node " : "a replica", to);
    for (;;) { /* a replica that cannot take the lease (not a candidate) is skipped */
        int64_t left = end - lv_mono_us();
        if (left <= 0 || primary_handoff_wait(dm->prim, to, (const char *const *)skip, nskip, dbs, ndb, left, target,
                                                       sizeof target) != 0) {
            snprintf(msg, n, "%s%s did not acknowledge every database within %lld ms; writes resume here",
                     to[0] ? "node " : "no connected candidate replica", to, (long long)(timeout_us / 1000));
            st = 504;
            goto out_resume;
        }
        rc = lease_handoff(dm->lease, target, err, sizeof err);
        if (rc == 0)
            break;
        if (rc != LV_EREFUSED || to[0] || nskip == sizeof skip / sizeof skip[0] ||
            !(skip[nskip] = strdup(target))) {
            snprintf(msg, n, "the lease could not be handed over to node %s: %s; writes resume here", target, err);
            st = rc == LV_EREFUSED ? 409 : 502;
            goto out_resume;
        }
        LV_INFO("hand-over: skipping node %s: %s", target, err);
        nskip++;
    }
    snprintf(msg, n, "handed the primary role to node %s; this node takes no more writes and restarts as its replica",
             target);
    LV_INFO("hand-over: %s", msg);
    goto out;
out_resume:
    __atomic_store_n(&dm->handing_over, 0, __ATOMIC_RELEASE);
    refence(dm);
    LV_WARN("hand-over failed: %s", msg);
out:
    pthread_mutex_unlock(&dm->handoff_mu);
    for (size_t k = 0; k < nskip; k++)
        free(skip[k]);
    free(dbs);
    return st;
}

/* libcurl write callback: keep up to 2 KiB of the answer. */
static size_t keep_answer(char *p, size_t sz, size_t nm, void *arg)
{
    char *buf = arg;
    size_t have = strlen(buf), add = sz * nm, room = 2047 - have;

    memcpy(buf + have, p, add < room ? add : room);
    buf[have + (add < room ? add : room)] = 0;
    return sz * nm;
}

/* POST /v1/promote (api_ctx.promote): on the primary, hand over to node (or
 * any); on a replica, ask the primary to hand over to this node. */
static int promote_cb(void *arg, const char *node, char *msg, size_t n)
{
    struct daemon *dm = arg;
    const struct config *cfg = dm->cfg;
    char url[1200], body[128], answer[2048] = "", errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL;
    long status = 0;
    CURL *c;
    int st;

    if (strcmp(cfg->lease_type, "etcd") != 0) {
        snprintf(msg, n, "only an etcd lease can be handed over (lease.type is %s)", cfg->lease_type);
        return 409;
    }
    if (__atomic_load_n(&dm->primary, __ATOMIC_ACQUIRE))
        return handoff(dm, node, 10000000, msg, n);
    if (lease_primary_url(dm->lease, url, sizeof url) != 0 || !url[0] || lease_is_primary(dm->lease)) {
        snprintf(msg, n, "%s", lease_is_primary(dm->lease) ? "this node was just elected and is becoming the primary"
                                                            : "no primary is elected now; try again shortly");
        return 503;
    }
    snprintf(url + strlen(url), sizeof url - strlen(url), "/v1/promote");
    snprintf(body, sizeof body, "{\"node\":\"%s\"}", node[0] ? node : dm->node_id);
    c = curl_easy_init();
    hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (!c || !hdrs || http_client_setup(c, cfg->http_token, cfg->http_tls_ca, &hdrs) != 0) {
        snprintf(msg, n, "out of memory");
        st = 500;
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_answer);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, answer);
    if (curl_easy_perform(c) != CURLE_OK) {
        snprintf(msg, n, "cannot reach the primary at %s: %s", url, errbuf);
        st = 502;
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    snprintf(msg, n, "the primary at %s answered: %s", url, answer);
    st = (int)status;
out:
    curl_slist_free_all(hdrs);
    if (c)
        curl_easy_cleanup(c);
    return st;
}

/* Follows an etcd lease: promotes, re-points the replica's client, fences
 * and, once deposed, stops the daemon. */
static void role_worker(struct worker *w, void *arg)
{
    struct daemon *dm = arg;

    while (!worker_nap(w, 1000000)) {
        int rc = role_step(dm);
        if (rc) {
            dm->exit_code = rc;
            fs_request_exit();
            break;
        }
    }
}

int daemon_run(const struct config *cfg, char **cmd)
{
    struct daemon dm = {.cfg = cfg, .handoff_mu = PTHREAD_MUTEX_INITIALIZER, .fence_mu = PTHREAD_MUTEX_INITIALIZER};
    struct http_server *hs = NULL, *admin = NULL;
    struct proxy_node *px = NULL;
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
    if (worker_start("lv-ready", ready_probe, &dm, &dm.probe) != 0 || (rc = start_replica(&dm)) != 0) {
        rc = LV_EXIT_RUNTIME;
        fs_finish(fs);
        goto out_workers;
    }
    if ((rc = proxy_node_start(cfg, dm.reg, dm.lease, &px)) != 0) { /* proxy: in front of the application */
        fs_finish(fs);
        goto out_workers;
    }
    if (cmd && (rc = start_child(&dm, cmd, &set)) != 0) {
        fs_finish(fs);
        goto out_workers;
    }
    __atomic_store_n(&dm.mounted, 1, __ATOMIC_RELEASE);
    if (strcmp(cfg->lease_type, "etcd") == 0) {
        struct worker *role = NULL;
        if (worker_start("lv-role", role_worker, &dm, &role) != 0) {
            rc = LV_EXIT_RUNTIME;
            fs_finish(fs);
            goto out_workers;
        }
        __atomic_store_n(&dm.role, role, __ATOMIC_RELEASE);
    }
    api_set_serving(1);
    fs_run(fs);
    api_set_serving(0);
    notify_stopping("unmounting");
    int elected = dm.role != NULL;
    lease_on_change(dm.lease, NULL, NULL);
    worker_stop(dm.role); /* the role stays as it is from here */
    dm.role = NULL;
    if (elected && !dm.exit_code && __atomic_load_n(&dm.primary, __ATOMIC_ACQUIRE) && lease_is_primary(dm.lease)) {
        char msg[1200];
        notify_status("handing the primary role over");
        if (handoff(&dm, "", 5000000, msg, sizeof msg) != 200) /* the mount serves no more: nothing is in flight */
            LV_INFO("stopping without a hand-over (%s); the lease is given up and the candidates race", msg);
    }
    replica_ask_stop(dm.repl);      /* D6 */
    if (dm.repl && replica_wait_stopped(dm.repl, 3000))
        dbreg_close_mount_fds(dm.reg); /* the applier's files on the mount, before it goes */
    primary_stop_streams(dm.prim);  /* replicas hear why the stream ends */
    fs_finish(fs);
    if (dm.arch)
        notify_status("archiving the rest of the log");
    if (dm.reg && dbreg_is_fenced(dm.reg)) /* deposed, or handed over: the next primary archives */
        LV_INFO("not draining the archiver: this node no longer holds the lease");
    else
        archiver_drain(dm.arch); /* D4: after the unmount, bounded by archive[].shutdown-timeout */
    rc = dm.exit_code;
    if (dm.waiter) {
        worker_stop(dm.waiter); /* the child has exited: fs_run returned because of it, or a signal */
        int st = dm.child_status;
        if (!dm.exit_code) /* a deposed primary's status wins: its restart must rejoin */
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
out_workers:
    proxy_node_stop(px);
    if (dm.lease)
        lease_on_change(dm.lease, NULL, NULL);
    worker_stop(dm.role);
    api_set_replica(NULL);
    replica_stop(dm.repl); /* D6: after fs_finish */
    if (dm.repl)
        dbreg_close_mount_fds(dm.reg); /* when the client had not left before fs_finish */
    dm.repl = NULL;
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
    if (dm.reg)
        dbreg_set_commit_hook(dm.reg, NULL, NULL); /* D8 */
    primary_free(dm.prim); /* D7 */
    if (dm.lease)
        lease_close(dm.lease);
    notify_status("saving checksum states");
    dbreg_close(dm.reg);
    notify_status("stopped");
    return rc;
}
