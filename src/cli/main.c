/*
 * main.c -- the litevault command line.
 *
 *   litevault mount   [-c FILE] [-- CMD ARGS...]
 *   litevault status  [-c FILE] [--json]
 *   litevault log ls     [-c FILE] --db NAME [--json]
 *   litevault log dump   [-c FILE] --db NAME --txid N [--json]
 *   litevault log replay [-c FILE] --db NAME [--txid N] -o PATH
 *   litevault restore    --from URL --db NAME [--txid N | --timestamp T] PATH   (restore/restore_cli.c)
 *   litevault archive ls|verify --from URL [--db NAME]                        (restore/restore_cli.c)
 *   litevault export  ... / litevault import ...   (export_cli.c)
 *   litevault version
 *
 * Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "daemon/api.h"
#include "archive/archiver.h"
#include "base/cksum.h"
#include "daemon/config.h"
#include "capture/db.h"
#include "cli/export_cli.h"
#include "export/exports.h"
#include "capture/fs.h"
#include "base/http.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/metrics.h"
#include "cli/restore_cli.h"
#include "base/sys.h"
#include "log/txlog.h"

static void die_usage(const char *cmd, const char *msg)
{
    fprintf(stderr, "litevault %s: %s\nTry 'litevault %s --help'.\n", cmd, msg, cmd);
    exit(LV_EXIT_USAGE);
}

/* Load the config named by -c (or found by config_find); exit 2 on error. */
static void load_config(const char *explicit_path, struct config *cfg)
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

/* ---------------------------------------------------------------- mount */

struct daemon {
    struct config cfg;         /* configuration */
    struct dbreg *reg;         /* databases */
    struct exports *exp;       /* scheduled exports (NULL if none); set before the HTTP server starts */
    struct archiver *arch;     /* archive uploads, NULL without archive: destinations */
    pthread_mutex_t mu;        /* guards stop */
    pthread_cond_t cv;         /* signalled on stop */
    int stop;                  /* housekeeping should end */
    pid_t child;               /* -- CMD child, or 0 */
    int child_status;          /* its wait status */
};

static int h_status(void *ctx, const struct http_request *req, struct http_response *resp)
{
    struct daemon *dm = ctx;
    char *dbs = dbreg_status_json(dm->reg);
    json_t *o = json_object();
    json_object_set_new(o, "version", json_string(LV_VERSION));
    json_object_set_new(o, "databases", dbs ? json_loads(dbs, 0, NULL) : json_array());
    json_object_set_new(o, "exports", exports_status_json(dm->exp));
    free(dbs);
    char *ar = archiver_status_json(dm->arch);
    json_object_set_new(o, "archive", ar ? json_loads(ar, 0, NULL) : json_array());
    free(ar);
    resp->body = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    resp->content_type = "application/json";
    return 0;
}

static int h_metrics(void *ctx, const struct http_request *req, struct http_response *resp)
{
    struct daemon *dm = ctx;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (dbreg_metrics(dm->reg, &buf, &len, &cap) != 0 || archiver_metrics(dm->arch, &buf, &len, &cap) != 0 ||
        exports_metrics(dm->exp, &buf, &len, &cap) != 0 || metrics_render_process(&buf, &len, &cap) != 0) {
        free(buf);
        resp->status = 500;
        resp->body = strdup("{\"error\":\"out of memory\"}");
        return 0;
    }
    resp->body = buf;
    resp->body_len = len;
    resp->content_type = "text/plain; version=0.0.4";
    return 0;
}

static void *housekeeping(void *arg)
{
    struct daemon *dm = arg;
    pthread_mutex_lock(&dm->mu);
    while (!dm->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = (int64_t)ts.tv_nsec + dm->cfg.state_interval_us * 1000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&dm->cv, &dm->mu, &ts);
        if (dm->stop)
            break;
        pthread_mutex_unlock(&dm->mu);
        dbreg_save_states(dm->reg, 0);
        pthread_mutex_lock(&dm->mu);
    }
    pthread_mutex_unlock(&dm->mu);
    return NULL;
}

static void *child_waiter(void *arg)
{
    struct daemon *dm = arg;
    int st = 0;
    while (waitpid(dm->child, &st, 0) < 0 && errno == EINTR)
        ;
    dm->child_status = st;
    LV_INFO("command exited (%s %d); unmounting", WIFEXITED(st) ? "status" : "signal",
            WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    fs_request_exit();
    return NULL;
}

/* 0 if dir is usable as a mount point (created if missing), else exit code. */
static int check_mountpoint(const char *dir)
{
    struct stat st;
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
    FILE *mi = fopen("/proc/self/mountinfo", "r");
    if (mi) {
        char line[8192], real[PATH_MAX];
        if (!realpath(dir, real))
            snprintf(real, sizeof real, "%s", dir);
        while (fgets(line, sizeof line, mi)) {
            char mp[PATH_MAX];
            if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && strcmp(mp, real) == 0) {
                fclose(mi);
                struct statvfs sv;
                /* stat() may be answered from the kernel's attribute cache;
                 * statvfs always reaches the (dead) server. */
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
        }
        fclose(mi);
    }
    return 0;
}

static void usage_mount(void)
{
    printf("usage: litevault mount [-c FILE] [-- CMD ARGS...]\n\n"
           "Serve the databases in data.dir on the FUSE mount fuse.dir, in the foreground,\n"
           "capturing every committed transaction.  Unmounts cleanly on SIGINT and SIGTERM.\n"
           "With -- CMD, runs CMD once the mount is ready and exits with its exit code.\n\n"
           "  -c, --config FILE   configuration file (default ./litevault.yml, then /etc/litevault.yml)\n"
           "  -h, --help          show this help\n");
}

static int cmd_mount(int argc, char **argv)
{
    static const struct option opts[] = {{"config", 1, 0, 'c'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *cpath = NULL;
    int c;
    struct daemon dm;
    char err[1024] = "";
    struct http_server *hs = NULL;
    struct fs *fs = NULL;
    pthread_t hk, waiter;
    int rc = LV_EXIT_RUNTIME, have_waiter = 0;

    while ((c = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
        if (c == 'c')
            cpath = optarg;
        else if (c == 'h') {
            usage_mount();
            return 0;
        } else
            die_usage("mount", "unknown option");
    }
    char **cmd = optind < argc ? argv + optind : NULL;
    memset(&dm, 0, sizeof dm);
    load_config(cpath, &dm.cfg);
    lvlog_setup(dm.cfg.log_level, dm.cfg.log_json);
    if (sys_fault_from_env() != 0)
        LV_WARN("LV_FAULT is set but could not be parsed; ignoring it");
    rc = check_mountpoint(dm.cfg.fuse_dir);
    if (rc)
        goto out_cfg;
    rc = LV_EXIT_RUNTIME;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (dbreg_open(&(struct dbreg_opts){dm.cfg.data_dir, dm.cfg.segment_size}, &dm.reg, err, sizeof err) != 0) {
        fprintf(stderr, "litevault: %s\n", err);
        goto out_cfg;
    }
    dbreg_clear_tmp(dm.cfg.data_dir); /* before any thread writes there */
    if (exports_new(dm.cfg.exports, dm.cfg.nexports, dm.cfg.data_dir, dm.reg, NULL, NULL, &dm.exp, err, sizeof err) != 0) {
        fprintf(stderr, "litevault: %s\n", err);
        goto out_reg;
    }
    if (archiver_start(dm.cfg.archive, dm.cfg.narchive, dm.cfg.max_log_size, dm.reg, &dm.arch, err, sizeof err) != 0) {
        fprintf(stderr, "litevault: %s: %s\n", dm.cfg.path ? dm.cfg.path : "config", err);
        rc = LV_EXIT_USAGE;
        goto out_reg;
    }
    if (http_new(dm.cfg.http_addr, &hs) != 0 || http_route(hs, "GET", "/status", h_status, &dm) != 0 ||
        http_route(hs, "GET", "/metrics", h_metrics, &dm) != 0 || api_register(hs, dm.reg, &dm.cfg) != 0 ||
        http_start(hs) != 0) {
        fprintf(stderr, "litevault: cannot serve HTTP on http.addr %s (in use, or not a local address?); "
                        "change http.addr\n", dm.cfg.http_addr);
        goto out_reg;
    }
    pthread_mutex_init(&dm.mu, NULL);
    pthread_cond_init(&dm.cv, NULL);
    pthread_create(&hk, NULL, housekeeping, &dm);
    exports_start(dm.exp);
    if (fs_prepare(dm.reg, dm.cfg.fuse_dir, dm.cfg.fuse_allow_other, &fs, err, sizeof err) != 0) {
        fprintf(stderr, "litevault: %s\n", err);
        goto out_hk;
    }
    LV_INFO("serving %s on %s (http %s)", dm.cfg.data_dir, dm.cfg.fuse_dir, dm.cfg.http_addr);
    if (cmd) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            pthread_sigmask(SIG_UNBLOCK, &set, NULL);
            execvp(cmd[0], cmd);
            fprintf(stderr, "litevault: cannot run %s: %s\n", cmd[0], strerror(errno));
            _exit(127);
        }
        if (pid < 0) {
            fprintf(stderr, "litevault: fork: %s\n", strerror(errno));
            fs_finish(fs);
            goto out_hk;
        }
        dm.child = pid;
        fs_set_child(pid);
        pthread_create(&waiter, NULL, child_waiter, &dm);
        have_waiter = 1;
    }
    fs_run(fs);
    fs_finish(fs);
    rc = 0;
    if (have_waiter) {
        pthread_join(waiter, NULL);
        int st = dm.child_status;
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
out_hk:
    pthread_mutex_lock(&dm.mu);
    dm.stop = 1;
    pthread_cond_signal(&dm.cv);
    pthread_mutex_unlock(&dm.mu);
    pthread_join(hk, NULL);
    http_free(hs);
out_reg:
    exports_stop(dm.exp);
    archiver_stop(dm.arch);
    dbreg_close(dm.reg);
out_cfg:
    config_free(&dm.cfg);
    return rc;
}

/* ---------------------------------------------------------------- status */

static int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", 1, 0, 'c'}, {"json", 0, 0, 'j'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *cpath = NULL;
    int c, as_json = 0, rc = LV_EXIT_RUNTIME;
    struct config cfg;
    char *body = NULL;
    size_t len = 0;
    long status = 0;
    while ((c = getopt_long(argc, argv, "c:jh", opts, NULL)) != -1) {
        if (c == 'c')
            cpath = optarg;
        else if (c == 'j')
            as_json = 1;
        else if (c == 'h') {
            printf("usage: litevault status [-c FILE] [--json]\n\n"
                   "Show what the running daemon reports for each database: name, TXID,\n"
                   "checksum, page size, size in pages, journal mode and last commit time.\n");
            return 0;
        } else
            die_usage("status", "unknown option");
    }
    load_config(cpath, &cfg);
    if (http_get(cfg.http_addr, "/status", &body, &len, &status) != 0 || status != 200) {
        fprintf(stderr, "litevault status: no daemon answers on http.addr %s; is 'litevault mount' running?\n",
                cfg.http_addr);
        goto out;
    }
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

/* ---------------------------------------------------------------- log */

static void log_dir_for(const struct config *cfg, const char *db, char *out, size_t n)
{
    char meta[PATH_MAX * 2];
    db_metadir_path(cfg->data_dir, db, meta, sizeof meta);
    snprintf(out, n, "%s/log", meta);
}

static void usage_log(void)
{
    printf("usage: litevault log ls     [-c FILE] --db NAME [--json]\n"
           "       litevault log dump   [-c FILE] --db NAME --txid N [--json]\n"
           "       litevault log replay [-c FILE] --db NAME [--txid N] -o PATH\n\n"
           "Read the local transaction log of database NAME (its path on the mount).\n"
           "  ls      one line per record: TXID, commit time (UTC), pages, database size,\n"
           "          pre and post checksums\n"
           "  dump    one record's header and page numbers\n"
           "  replay  rebuild the database as of TXID N (default: the last) into PATH,\n"
           "          verifying every checksum\n");
}

static json_t *hdr_json(const struct txlog_hdr *h)
{
    char t[40], a[17], b[17];
    json_t *o = json_object();
    json_object_set_new(o, "txid", json_integer((json_int_t)h->txid));
    json_object_set_new(o, "time", json_string(lv_fmt_time(h->time_us, t, sizeof t)));
    json_object_set_new(o, "time_us", json_integer(h->time_us));
    json_object_set_new(o, "pages", json_integer(h->npages));
    json_object_set_new(o, "db_pages", json_integer(h->db_pages));
    json_object_set_new(o, "page_size", json_integer(h->page_size));
    json_object_set_new(o, "pre_checksum", json_string(cksum_hex(h->pre_cksum, a)));
    json_object_set_new(o, "post_checksum", json_string(cksum_hex(h->post_cksum, b)));
    json_object_set_new(o, "snapshot", json_boolean(h->flags & TXLOG_F_SNAPSHOT));
    json_object_set_new(o, "recovered", json_boolean(h->flags & TXLOG_F_RECOVERED));
    json_object_set_new(o, "stored_bytes", json_integer((json_int_t)h->stored_len));
    return o;
}

static int cmd_log(int argc, char **argv)
{
    static const struct option opts[] = {{"config", 1, 0, 'c'}, {"db", 1, 0, 'd'}, {"txid", 1, 0, 't'},
                                         {"output", 1, 0, 'o'}, {"json", 0, 0, 'j'}, {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cpath = NULL, *db = NULL, *outp = NULL, *sub;
    uint64_t txid = 0;
    int c, as_json = 0, rc = LV_EXIT_RUNTIME, have_txid = 0;
    struct config cfg;
    char dir[PATH_MAX * 2], err[1024] = "";

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage_log();
        return argc < 2 ? LV_EXIT_USAGE : 0;
    }
    sub = argv[1];
    argc--;
    argv++;
    while ((c = getopt_long(argc, argv, "c:d:t:o:jh", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'c': cpath = optarg; break;
        case 'd': db = optarg; break;
        case 'o': outp = optarg; break;
        case 'j': as_json = 1; break;
        case 't':
            errno = 0;
            txid = strtoull(optarg, &end, 10);
            if (errno || *end || !*optarg || optarg[0] == '-')
                die_usage("log", "--txid takes a positive integer");
            have_txid = 1;
            break;
        case 'h': usage_log(); return 0;
        default: die_usage("log", "unknown option");
        }
    }
    if (!db)
        die_usage("log", "--db NAME is required");
    if (strcmp(sub, "ls") && strcmp(sub, "dump") && strcmp(sub, "replay"))
        die_usage("log", "unknown subcommand (use ls, dump or replay)");
    if (strcmp(sub, "dump") == 0 && !have_txid)
        die_usage("log", "dump needs --txid N");
    if (strcmp(sub, "replay") == 0 && !outp)
        die_usage("log", "replay needs -o PATH");
    load_config(cpath, &cfg);
    lvlog_setup(cfg.log_level < LVLOG_WARN ? cfg.log_level : LVLOG_WARN, 0);
    if (db[0] == '/')
        db++;
    log_dir_for(&cfg, db, dir, sizeof dir);
    struct stat st;
    if (stat(dir, &st) != 0) {
        fprintf(stderr, "litevault log: no log for database '%s' in %s (expected %s)\n", db, cfg.data_dir, dir);
        goto out;
    }
    if (strcmp(sub, "replay") == 0) {
        uint64_t got = 0, ck = 0;
        int r = txlog_replay(dir, txid, outp, &got, &ck, err, sizeof err);
        if (r) {
            fprintf(stderr, "litevault log replay: %s\n", err[0] ? err : lv_strerror(r));
            goto out;
        }
        char hx[17];
        if (as_json)
            printf("{\"txid\":%llu,\"checksum\":\"%s\",\"output\":\"%s\"}\n", (unsigned long long)got,
                   cksum_hex(ck, hx), outp);
        else
            printf("replayed %s to TXID %llu, checksum %s, into %s\n", db, (unsigned long long)got,
                   cksum_hex(ck, hx), outp);
        rc = 0;
        goto out;
    }
    struct txlog_reader *r = NULL;
    struct txlog_hdr h;
    int e = txlog_reader_open(dir, have_txid ? txid : 1, &r);
    if (e) {
        fprintf(stderr, "litevault log: cannot read %s: %s\n", dir, lv_strerror(e));
        goto out;
    }
    json_t *arr = json_array();
    int found = 0;
    if (!as_json && strcmp(sub, "ls") == 0)
        printf("%10s  %-27s %6s %10s  %-16s %-16s\n", "TXID", "COMMIT TIME (UTC)", "PAGES", "DB PAGES",
               "PRE", "POST");
    while ((e = txlog_reader_next(r, &h)) == 0) {
        char t[40], a[17], b[17];
        if (strcmp(sub, "ls") == 0) {
            if (as_json)
                json_array_append_new(arr, hdr_json(&h));
            else
                printf("%10llu  %-27s %6u %10u  %s %s%s\n", (unsigned long long)h.txid,
                       lv_fmt_time(h.time_us, t, sizeof t), h.npages, h.db_pages, cksum_hex(h.pre_cksum, a),
                       cksum_hex(h.post_cksum, b),
                       h.flags & TXLOG_F_SNAPSHOT ? "  snapshot" : (h.flags & TXLOG_F_RECOVERED ? "  recovered" : ""));
            continue;
        }
        if (h.txid != txid)
            break;
        found = 1;
        json_t *o = hdr_json(&h), *pages = json_array();
        uint32_t pg;
        const void *data;
        while ((e = txlog_reader_page(r, &pg, &data)) == 0)
            json_array_append_new(pages, json_integer(pg));
        if (e != LV_ENOENT) {
            uint64_t off;
            const char *w = txlog_reader_where(r, &off);
            fprintf(stderr, "litevault log dump: TXID %llu in %s at offset %llu: %s\n", (unsigned long long)txid,
                    w, (unsigned long long)off, lv_strerror(e));
            json_decref(o);
            json_decref(pages);
            break;
        }
        e = 0;
        if (as_json) {
            json_object_set_new(o, "page_numbers", pages);
            char *s = json_dumps(o, JSON_INDENT(2));
            puts(s);
            free(s);
        } else {
            printf("TXID          %llu\ncommit time   %s\npage size     %u\ndb pages      %u\npages         %u\n"
                   "pre checksum  %s\npost checksum %s\nflags         %s%s\nstored bytes  %llu\npage numbers ",
                   (unsigned long long)h.txid, lv_fmt_time(h.time_us, t, sizeof t), h.page_size, h.db_pages,
                   h.npages, cksum_hex(h.pre_cksum, a), cksum_hex(h.post_cksum, b),
                   h.flags & TXLOG_F_SNAPSHOT ? "snapshot " : "", h.flags & TXLOG_F_RECOVERED ? "recovered" : "",
                   (unsigned long long)h.stored_len);
            size_t i;
            json_t *v;
            json_array_foreach(pages, i, v) printf(" %lld", (long long)json_integer_value(v));
            printf("\n");
            json_decref(pages);
        }
        json_decref(o);
        break;
    }
    if (e != 0 && e != LV_ENOENT) {
        uint64_t off = 0;
        const char *w = txlog_reader_where(r, &off);
        fprintf(stderr, "litevault log: %s at offset %llu: %s\n", w ? w : dir, (unsigned long long)off,
                lv_strerror(e));
    } else if (strcmp(sub, "dump") == 0 && !found) {
        fprintf(stderr, "litevault log dump: TXID %llu is not in the log of %s\n", (unsigned long long)txid, db);
    } else {
        rc = 0;
    }
    if (as_json && strcmp(sub, "ls") == 0) {
        char *s = json_dumps(arr, JSON_INDENT(2));
        puts(s);
        free(s);
    }
    json_decref(arr);
    txlog_reader_close(r);
out:
    config_free(&cfg);
    return rc;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f, "usage: litevault COMMAND [OPTIONS]\n\n"
               "Commands:\n"
               "  mount     serve databases on a FUSE mount and capture every transaction\n"
               "  status    show the running daemon's databases\n"
               "  log       read the local transaction log (ls, dump, replay)\n"
               "  restore   rebuild a database from an archive, as of a TXID or a point in time\n"
               "  archive   inspect an archive (ls, verify)\n"
               "  export    write a consistent copy of a database, or a bundle of all of them\n"
               "  import    replace or create databases from a copy or a bundle\n"
               "  version   print the version\n\n"
               "Run 'litevault COMMAND --help' for a command's options.\n"
               "Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error.\n");
}

int main(int argc, char **argv)
{
    lvlog_setup(LVLOG_INFO, 0);
    if (argc < 2) {
        usage(stderr);
        return LV_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "mount") == 0)
        return cmd_mount(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return cmd_status(argc - 1, argv + 1);
    if (strcmp(cmd, "log") == 0)
        return cmd_log(argc - 1, argv + 1);
    if (strcmp(cmd, "restore") == 0)
        return restore_cli_restore(argc - 1, argv + 1);
    if (strcmp(cmd, "archive") == 0)
        return restore_cli_archive(argc - 1, argv + 1);
    if (strcmp(cmd, "export") == 0)
        return export_cli_export(argc - 1, argv + 1);
    if (strcmp(cmd, "import") == 0)
        return export_cli_import(argc - 1, argv + 1);
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
