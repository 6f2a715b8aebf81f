/*
 * export_cli.c -- `litevault export` and `litevault import` (see export_cli.h).
 *
 * Export.  The daemon writes a consistent image of the database (dbreg_image,
 * exactly the state after one TXID, copy-on-write against concurrent writers)
 * into data.dir/tmp and answers its path and facts (POST /v1/image, on the
 * admin socket data.dir/admin.sock only).  The daemon keeps the connection
 * and deletes the image when this command hangs up (or dies); meanwhile
 * this command may move or copy it:
 *
 *   image in data.dir/tmp --publish_adopt--> fsync, rename onto OUT   (same mount)
 *                         \--publish_begin + copy--> OUT.tmp-* --fsync--> rename onto OUT
 *   then fsync OUT's directory (publish_commit), unlink the image and hang
 *   up (always, also on errors: drop_image).  A renamed image is ours; the
 *   daemon's unlink then finds nothing.  Every step goes through the syscall seam
 *   (base/publish.h), so LV_FAULT reaches it; a failure leaves OUT as it
 *   was and no temporary file.
 *
 * --vacuum runs VACUUM INTO a temporary file beside OUT on the image
 * (opened immutable, so nothing is created next to it) and publishes it
 * with publish_adopt instead, and reports the new file's checksum.
 * --all takes one image per database listed by GET /status, then writes a
 * bundle (bundle.h) into a publish_begin temporary file (published onto
 * OUT) or to stdout.
 *
 * Import.  The new content goes through the mount, so that SQLite's own
 * locking protects open connections and the capture engine logs it like any
 * write:
 *
 *   checks (nothing changed yet): SQLite header, page size, size a multiple
 *     of it; a -wal or hot -journal next to the input is applied on a staged
 *     copy (the input's logical content is imported, the input is untouched);
 *     PRAGMA integrity_check (unless --no-check); for a bundle, every check of
 *     bundle_extract and the above for every database before the first import.
 *   new database: copy the bytes to MOUNT/dir/.NAME.import-PID, fsync, close
 *     (captured as one snapshot record), renameat2(RENAME_NOREPLACE) onto NAME
 *     (the registry keeps the log through the rename): publish_begin_tmp,
 *     publish_write, publish_commit_noreplace, so LV_FAULT reaches it too.  The checksum equals
 *     the input's, which the command verifies in GET /status.
 *   existing database: the sqlite3 backup API from the input into NAME opened
 *     on the mount: one write transaction, hence one record; other connections
 *     see the new content at their next transaction (the change counter, or
 *     the WAL, tells them).  A WAL-mode database cannot change its page size,
 *     so a page size mismatch is refused before anything changes.
 *   afterwards: GET /status must show the TXID advanced (by exactly one unless
 *     other writers committed meanwhile, which is reported).
 *
 * Exit codes: 0 ok, 1 runtime error or refused input, 2 usage/config error.
 */
#include "cli/export_cli.h"
#include "cli/cli.h"
#include "export/exports.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "export/bundle.h"
#include "base/cksum.h"
#include "base/dbhdr.h"
#include "daemon/config.h"
#include "base/http.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/publish.h"
#include "base/sys.h"

#define ECLI_CHUNK (1u << 20)                 /* bytes per read/write when copying */
#define ECLI_PROGRESS_MIN (64ull << 20)       /* show a progress bar from this size on */
#define ECLI_BUSY_MS 30000                    /* how long import waits for SQLite locks */
#define ECLI_IMAGE_TIMEOUT_S 3600               /* how long export waits for the daemon's image */

/* ---------------------------------------------------------------- helpers */

static void ecli_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ecli_err(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "litevault %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static const struct cli_cmd export_cmd = {
    "export", "usage: litevault export [-c FILE] (--db NAME -o OUT.db | --all -o OUT) [OPTIONS]\n"
              "       litevault export --list --url URL [--json]", NULL};
static const struct cli_cmd import_cmd = {
    "import", "usage: litevault import [-c FILE] (--db NAME IN.db | --all IN) [--no-check] [--json]", NULL};

/* A usage error of cmd ("export" or "import"): message, usage line, hint.  Returns 2. */
static int ecli_usage(const char *cmd, const char *msg)
{
    return cli_usage_print(strcmp(cmd, "import") == 0 ? &import_cmd : &export_cmd, "%s", msg);
}

/* Arm LV_FAULT's faults (sys.h): export and import publish their files
 * through the syscall seam, so tests can fail any step. */
static void ecli_faults(const char *cmd)
{
    if (sys_fault_from_env() != 0)
        fprintf(stderr, "litevault %s: warning: LV_FAULT is set but could not be parsed; ignoring it\n", cmd);
}

/* Percent-encode s for a URL query value into out. */
static void url_escape(const char *s, char *out, size_t n)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 4 < n; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~/", *p))
            out[o++] = (char)*p;
        else
            o += (size_t)snprintf(out + o, n - o, "%%%02X", *p);
    }
    out[o] = 0;
}

/* A sqlite3 URI opening path immutable (nothing is created next to it). */
static void sqlite_uri_immutable(const char *path, char *out, size_t n)
{
    size_t o = (size_t)snprintf(out, n, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p && o + 4 < n; p++) {
        if (*p == '?' || *p == '#' || *p == '%' || *p < 0x20 || *p >= 0x7f)
            o += (size_t)snprintf(out + o, n - o, "%%%02X", *p);
        else
            out[o++] = (char)*p;
    }
    snprintf(out + o, n - o, "?immutable=1");
}

/* GET /status; the "databases" array of the reply in *dbs (caller decrefs the
 * returned root).  NULL (message printed) if no daemon answers. */
static json_t *ecli_status(const char *cmd, const struct config *cfg, json_t **dbs)
{
    char *body = NULL;
    size_t len = 0;
    json_t *o = NULL;
    if (cli_daemon_get(cmd, cfg, "/status", &body, &len) != 0)
        return NULL;
    o = json_loadb(body, len, 0, NULL);
    free(body);
    *dbs = json_object_get(o, "databases");
    if (!o || !json_is_array(*dbs)) {
        ecli_err(cmd, "the daemon on %s sent a malformed /status reply", cfg->http_addr);
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Facts of database name in a /status array (borrowed), or NULL. */
static json_t *status_find(json_t *dbs, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(dbs, i, e)
    {
        const char *n = json_string_value(json_object_get(e, "name"));
        if (n && strcmp(n, name) == 0)
            return e;
    }
    return NULL;
}

static uint64_t json_hex64(json_t *v)
{
    const char *s = json_string_value(v);
    return s ? strtoull(s, NULL, 16) : 0;
}

/* Database checksum of a file (XOR of its page checksums). 0 or negative. */
static int file_cksum(const char *path, uint32_t ps, uint64_t *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
    uint8_t *buf = malloc(ECLI_CHUNK);
    uint64_t total = 0, pgno = 1;
    off_t off = 0;
    if (fd < 0 || !buf) {
        rc = fd < 0 ? lv_from_errno(errno) : LV_ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t got = pread(fd, buf, ECLI_CHUNK, off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = lv_from_errno(errno);
            goto out;
        }
        if (got == 0)
            break;
        if ((size_t)got % ps) {
            rc = LV_ECORRUPT;
            goto out;
        }
        for (size_t i = 0; i < (size_t)got; i += ps)
            total ^= cksum_page((uint32_t)pgno++, buf + i, ps);
        off += got;
    }
    *out = total;
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- progress */

/* A progress bar on stderr, drawn only when stderr is a terminal. */
struct ecli_progress {
    int on;                /* drawing (stderr is a tty and the job is large) */
    const char *label;     /* what is being done (borrowed) */
    int64_t t0;            /* start, monotonic us */
    int64_t last;          /* last draw, monotonic us */
};

static void progress_init(struct ecli_progress *p, const char *label, uint64_t total)
{
    p->on = isatty(2) && total >= ECLI_PROGRESS_MIN;
    p->label = label;
    p->t0 = p->last = lv_mono_us();
}

static void progress_cb(void *arg, uint64_t done, uint64_t total)
{
    struct ecli_progress *p = arg;
    int64_t now = lv_mono_us();
    char bar[31];
    if (!p->on || (now - p->last < 200000 && done < total))
        return;
    p->last = now;
    double secs = (double)(now - p->t0) / 1e6, rate = secs > 0 ? (double)done / secs : 0;
    int fill = total ? (int)(30.0 * (double)done / (double)total) : 30;
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r%s [%s] %7.1f/%.1f MiB %6.1f MiB/s ETA %4.0fs ", p->label, bar, (double)done / 1048576.0,
            (double)total / 1048576.0, rate / 1048576.0,
            rate > 0 && total > done ? (double)(total - done) / rate : 0.0);
    if (done >= total)
        fputc('\n', stderr);
}

/* ---------------------------------------------------------------- copying */

/* sys_copy_fd's progress callback: the export's progress line. */
static void copy_progress(void *arg, uint64_t done, uint64_t total)
{
    progress_cb(arg, done, total);
}

/* Copy size bytes of in_fd to out_fd (at its position: standard output, a
 * staged copy) with sys_copy_fd, drawing pg (may be NULL).  Files that are
 * published go through publish_copy instead.  0 or negative. */
static int copy_fd(int in_fd, int out_fd, uint64_t size, struct ecli_progress *pg)
{
    return sys_copy_fd(in_fd, out_fd, size, pg ? copy_progress : NULL, pg);
}

/* ---------------------------------------------------------------- export */

/* One image taken by the daemon. */
struct ecli_image {
    char path[PATH_MAX];   /* file in data.dir/tmp, the daemon's until renamed; removed when hold closes */
    int hold;              /* the connection that keeps the image alive (closed by drop_image), -1 if none */
    char name[1024];       /* database name */
    uint8_t id[16];        /* database ID */
    uint64_t txid;         /* TXID of the image */
    int64_t time_us;       /* its commit time */
    uint32_t page_size;    /* page size */
    uint32_t pages;        /* pages */
    uint64_t cksum;        /* database checksum */
};

/* POST /v1/image?db=name into *im.  0, or an exit code with the message printed
 * (*missing set when the daemon answered 404). */
static int take_image(const char *cmd, const struct config *cfg, const char *name, struct ecli_image *im,
                      int *missing)
{
    char q[4096], esc[3200], sock[PATH_MAX];
    char *body = NULL;
    long st = 0;
    int rc = LV_EXIT_RUNTIME, herr;
    json_t *o = NULL;

    if (missing)
        *missing = 0;
    memset(im, 0, sizeof *im);
    im->hold = -1;
    if (cli_admin_socket(cmd, cfg, sock, sizeof sock) != 0)
        goto out;
    url_escape(name, esc, sizeof esc);
    snprintf(q, sizeof q, "/v1/image?db=%s", esc);
    herr = http_post_hold(sock, q, ECLI_IMAGE_TIMEOUT_S, &body, &st, &im->hold);
    if (herr == LV_EBUSY) {
        ecli_err(cmd, "timed out: the daemon on %s did not send the image of %s within %d s", sock, name,
                 ECLI_IMAGE_TIMEOUT_S);
        goto out;
    }
    if (herr != 0) {
        ecli_err(cmd, "no daemon answers on the admin socket %s; is 'litevault mount' running?", sock);
        goto out;
    }
    o = json_loads(body ? body : "", JSON_DISABLE_EOF_CHECK, NULL);
    if (st != 200) {
        const char *e = json_string_value(json_object_get(o, "error"));
        if (missing)
            *missing = st == 404;
        ecli_err(cmd, "the daemon cannot export %s: %s", name, e ? e : "unexpected reply");
        goto out;
    }
    const char *p = json_string_value(json_object_get(o, "path"));
    const char *idh = json_string_value(json_object_get(o, "id"));
    if (!p || strlen(p) >= sizeof im->path || !idh || lv_unhex(idh, im->id, 16) != 0) {
        ecli_err(cmd, "the daemon sent a malformed /v1/image reply for %s", name);
        goto out;
    }
    snprintf(im->path, sizeof im->path, "%s", p);
    snprintf(im->name, sizeof im->name, "%s", name);
    im->txid = (uint64_t)json_integer_value(json_object_get(o, "txid"));
    im->time_us = json_integer_value(json_object_get(o, "time_us"));
    im->page_size = (uint32_t)json_integer_value(json_object_get(o, "page_size"));
    im->pages = (uint32_t)json_integer_value(json_object_get(o, "pages"));
    im->cksum = json_hex64(json_object_get(o, "checksum"));
    rc = 0;
out:
    json_decref(o);
    free(body);
    return rc;
}

static void drop_image(struct ecli_image *im)
{
    if (im->path[0] && unlink(im->path) != 0 && errno != ENOENT)
        fprintf(stderr, "litevault: warning: cannot remove the daemon's image %s: %s\n", im->path, strerror(errno));
    im->path[0] = 0;
    if (im->hold >= 0)
        close(im->hold); /* the daemon deletes what is left of the image */
    im->hold = -1;
}

/* Copy size bytes of in_fd into the file being published, through
 * publish_write (so the syscall seam sees every write).  0 or negative. */
static int publish_copy(struct publish *p, int in_fd, uint64_t size, struct ecli_progress *pg)
{
    uint8_t *buf = malloc(ECLI_CHUNK);
    uint64_t done = 0;
    int rc = buf ? 0 : LV_ENOMEM;

    while (rc == 0 && done < size) {
        size_t want = size - done > ECLI_CHUNK ? ECLI_CHUNK : (size_t)(size - done);
        ssize_t n = pread(in_fd, buf, want, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? lv_from_errno(errno) : LV_ECORRUPT; /* LV_ECORRUPT: the source shrank */
            break;
        }
        rc = publish_write(p, buf, (size_t)n);
        done += (uint64_t)n;
        if (rc == 0 && pg)
            progress_cb(pg, done, size);
    }
    free(buf);
    return rc;
}

/* Can a rename move the file open as fd (at path) to out?  Both on one mount
 * (statx mount IDs: st_dev alone misses bind mounts of one filesystem, where
 * rename fails with EXDEV) and both directories writable by us. */
static int can_rename(int fd, const char *path, const char *out)
{
    char odir[PATH_MAX], idir[PATH_MAX];
    const char *s;
    struct statx a, b;

    s = strrchr(out, '/');
    snprintf(odir, sizeof odir, "%.*s", s ? (int)(s - out) + (s == out) : 1, s ? out : ".");
    s = strrchr(path, '/');
    snprintf(idir, sizeof idir, "%.*s", s ? (int)(s - path) + (s == path) : 1, s ? path : ".");
    if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &a) != 0 || statx(AT_FDCWD, odir, 0, STATX_MNT_ID, &b) != 0)
        return 0;
    if (access(odir, W_OK) != 0 || access(idir, W_OK) != 0 || access(path, W_OK) != 0)
        return 0;
    if ((a.stx_mask & b.stx_mask & STATX_MNT_ID) == 0)
        return a.stx_dev_major == b.stx_dev_major && a.stx_dev_minor == b.stx_dev_minor;
    return a.stx_mnt_id == b.stx_mnt_id;
}

/* Stream the image to standard output.  0 or an exit code (message printed). */
static int image_to_stdout(const char *cmd, int fd, uint64_t size)
{
    struct ecli_progress pg;
    int e;

    if (isatty(1)) {
        ecli_err(cmd, "refusing to write a database to a terminal; redirect standard output");
        return LV_EXIT_RUNTIME;
    }
    progress_init(&pg, "export", size);
    e = copy_fd(fd, 1, size, &pg);
    if (e) {
        ecli_err(cmd, "writing to standard output: %s", lv_strerror(e));
        return LV_EXIT_RUNTIME;
    }
    return 0;
}

/* Publish the image as out (publish.h): adopted and renamed when it can be
 * (same mount), else copied into a new temporary file beside out.  Either
 * way fsync, rename onto out, fsync of the directory; on a failure out is
 * untouched and no temporary file is left.  0 or an exit code (message
 * printed, naming out). */
static int publish_image(const char *cmd, struct ecli_image *im, const char *out)
{
    uint64_t size = (uint64_t)im->pages * im->page_size;
    mode_t um = umask(0);
    struct publish p;
    struct ecli_progress pg;
    int fd, e;

    umask(um);
    fd = open(im->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ecli_err(cmd, "cannot open the daemon's image %s: %s (does this user may read data.dir/tmp?)", im->path,
                 strerror(errno));
        return LV_EXIT_RUNTIME;
    }
    if (strcmp(out, "-") == 0) {
        e = image_to_stdout(cmd, fd, size);
        close(fd);
        return e;
    }
    if (can_rename(fd, im->path, out)) {
        e = publish_adopt(&p, im->path, out);
        if (e == 0 && fchmod(p.fd, 0666 & ~um) != 0)
            LV_DEBUG("fchmod %s: %s", im->path, strerror(errno));
        if (e == 0)
            e = publish_commit(&p); /* renamed: the image is the output now (or removed on failure) */
        if (e == 0)
            im->path[0] = 0;
        if (e)
            ecli_err(cmd, "cannot move the image to %s: %s", out, lv_strerror(e));
    } else {
        e = publish_begin(&p, out, 0666);
        if (e == 0) {
            progress_init(&pg, "export", size);
            e = publish_copy(&p, fd, size, &pg);
            if (e)
                publish_abort(&p);
            else
                e = publish_commit(&p);
        }
        if (e)
            ecli_err(cmd, "writing %s: %s", out, lv_strerror(e));
    }
    close(fd);
    return e ? LV_EXIT_RUNTIME : 0;
}

/* `export --list --url URL [--json]`: the exports a destination holds. */
static int export_list(const char *url, int json)
{
    struct store *s = NULL;
    struct store_list l = {0};
    char err[512] = "", db[1024], stamp[EXPORTS_STAMP_LEN];
    json_t *arr = NULL;
    uint64_t txid;
    int bundle, rc, found = 0;

    rc = store_open(url, NULL, &s, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "litevault export --list: %s\n", err[0] ? err : lv_strerror(rc));
        return rc == LV_ECONFIG ? LV_EXIT_USAGE : LV_EXIT_RUNTIME;
    }
    rc = store_list(s, "", &l);
    if (rc < 0) {
        fprintf(stderr, "litevault export --list: cannot list %s: %s\n", store_url(s), store_last_error(s));
        store_close(s);
        return LV_EXIT_RUNTIME;
    }
    if (json)
        arr = json_array();
    else
        printf("%-28s %-20s %10s %12s  %s\n", "DATABASE", "TIME (UTC)", "TXID", "SIZE", "KEY");
    for (size_t i = 0; i < l.n; i++) {
        char t[32];
        if (!exports_parse_key(l.v[i].key, db, sizeof db, stamp, &txid, &bundle))
            continue;
        found++;
        /* 20261124T100000Z -> 2026-11-24T10:00:00Z */
        snprintf(t, sizeof t, "%.4s-%.2s-%.2sT%.2s:%.2s:%.2sZ", stamp, stamp + 4, stamp + 6, stamp + 9, stamp + 11,
                 stamp + 13);
        if (json) {
            json_t *o = json_object();
            json_object_set_new(o, "database", bundle ? json_null() : json_string(db));
            json_object_set_new(o, "format", json_string(bundle ? "tar.zst" : "db"));
            json_object_set_new(o, "time", json_string(t));
            json_object_set_new(o, "txid", bundle ? json_null() : json_integer((json_int_t)txid));
            json_object_set_new(o, "size", json_integer((json_int_t)l.v[i].size));
            json_object_set_new(o, "key", json_string(l.v[i].key));
            json_array_append_new(arr, o);
        } else {
            char tx[24];
            snprintf(tx, sizeof tx, "%llu", (unsigned long long)txid);
            printf("%-28s %-20s %10s %12llu  %s\n", bundle ? "(bundle: all)" : db, t, bundle ? "-" : tx,
                   (unsigned long long)l.v[i].size, l.v[i].key);
        }
    }
    if (json) {
        char *out = json_dumps(arr, JSON_INDENT(2));
        puts(out ? out : "[]");
        free(out);
        json_decref(arr);
    } else if (!found) {
        fprintf(stderr, "no exports found at %s\n", store_url(s));
    }
    store_list_free(&l);
    store_close(s);
    return 0;
}

/* VACUUM INTO a temporary file beside out from the image, then publish it
 * (publish_adopt: fsync, rename, fsync of the directory); the new file's
 * checksum into *ck, its pages and page size into *pages and *ps.  0 or an
 * exit code (message printed); on failure neither out nor the temporary
 * file is left changed. */
static int vacuum_image(const char *cmd, const struct ecli_image *im, const char *out, uint64_t *ck,
                        uint32_t *pages, uint32_t *ps)
{
    char uri[PATH_MAX * 3 + 32], tmp[PATH_MAX + 32];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    struct publish p = {.fd = -1};
    int rc = LV_EXIT_RUNTIME, e;
    struct stat sb;
    uint8_t hdr[DBHDR_SIZE];

    snprintf(tmp, sizeof tmp, "%s.tmp-%ld-vacuum", out, (long)getpid());
    unlink(tmp);
    sqlite_uri_immutable(im->path, uri, sizeof uri);
    if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "VACUUM INTO ?1", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, tmp, -1, SQLITE_STATIC) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE) {
        ecli_err(cmd, "VACUUM INTO %s: %s", tmp, db ? sqlite3_errmsg(db) : "out of memory");
        unlink(tmp);
        goto out;
    }
    e = publish_adopt(&p, tmp, out);
    if (e) {
        ecli_err(cmd, "cannot publish %s: %s", out, lv_strerror(e));
        unlink(tmp);
        goto out;
    }
    if (fstat(p.fd, &sb) != 0 || pread(p.fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr) {
        ecli_err(cmd, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    *ps = dbhdr_page_size(hdr);
    if (*ps == 0 || sb.st_size % *ps) {
        ecli_err(cmd, "VACUUM INTO wrote an unexpected file %s", tmp);
        goto out;
    }
    *pages = (uint32_t)(sb.st_size / *ps);
    e = file_cksum(tmp, *ps, ck);
    if (e == 0)
        e = publish_commit(&p);
    if (e) {
        ecli_err(cmd, "cannot publish %s: %s", out, lv_strerror(e));
        goto out;
    }
    rc = 0;
out:
    publish_abort(&p); /* removes tmp unless published */
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

static json_t *image_json(const struct ecli_image *im)
{
    char idh[33], t[40], hx[17];
    lv_hex(im->id, 16, idh);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(im->name));
    json_object_set_new(o, "id", json_string(idh));
    json_object_set_new(o, "txid", json_integer((json_int_t)im->txid));
    json_object_set_new(o, "time", json_string(lv_fmt_time(im->time_us, t, sizeof t)));
    json_object_set_new(o, "time_us", json_integer(im->time_us));
    json_object_set_new(o, "checksum", json_string(cksum_hex(im->cksum, hx)));
    json_object_set_new(o, "page_size", json_integer(im->page_size));
    json_object_set_new(o, "pages", json_integer(im->pages));
    json_object_set_new(o, "size", json_integer((json_int_t)im->pages * im->page_size));
    return o;
}

static void print_json(FILE *f, json_t *o)
{
    char *s = json_dumps(o, JSON_INDENT(2));
    if (s)
        fprintf(f, "%s\n", s);
    free(s);
}

static int export_one(const struct config *cfg, const char *name, const char *out, int vacuum, int as_json)
{
    struct ecli_image im;
    int rc = take_image("export", cfg, name, &im, NULL);
    char hx[17], hy[17];
    uint64_t vck = 0;
    uint32_t vpages = 0, vps = 0;

    if (rc)
        return rc;
    rc = vacuum ? vacuum_image("export", &im, out, &vck, &vpages, &vps) : publish_image("export", &im, out);
    drop_image(&im);
    if (rc)
        return rc;
    FILE *f = strcmp(out, "-") == 0 ? stderr : stdout;
    if (as_json) {
        json_t *o = image_json(&im);
        json_object_set_new(o, "output", json_string(out));
        json_object_set_new(o, "vacuum", json_boolean(vacuum));
        if (vacuum) {
            json_object_set(o, "log_checksum", json_object_get(o, "checksum"));
            json_object_set_new(o, "checksum", json_string(cksum_hex(vck, hx)));
            json_object_set_new(o, "page_size", json_integer(vps));
            json_object_set_new(o, "pages", json_integer(vpages));
            json_object_set_new(o, "size", json_integer((json_int_t)vpages * vps));
        }
        print_json(f, o);
        json_decref(o);
    } else if (vacuum) {
        fprintf(f, "exported %s at TXID %llu into %s, compacted (VACUUM INTO): %u pages of %u bytes, checksum %s\n"
                   "(the page layout changed, so this checksum differs from the log's %s at that TXID)\n",
                name, (unsigned long long)im.txid, out, vpages, vps, cksum_hex(vck, hx), cksum_hex(im.cksum, hy));
    } else {
        fprintf(f, "exported %s at TXID %llu, checksum %s, %u pages of %u bytes, into %s\n", name,
                (unsigned long long)im.txid, cksum_hex(im.cksum, hx), im.pages, im.page_size, out);
    }
    return 0;
}

/* Take an image of every database of dbs (a /status array) that has a
 * commit, into ims[] and the bundle entries ents[] (*n of them, *total
 * bytes).  A database deleted meanwhile is skipped.  0 or an exit code. */
static int take_all_images(const struct config *cfg, json_t *dbs, struct ecli_image *ims, struct bundle_entry *ents,
                           size_t *n, uint64_t *total)
{
    size_t i;
    json_t *e;

    json_array_foreach(dbs, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        struct ecli_image *im = &ims[*n];
        int missing = 0;
        if (!name)
            continue;
        if (json_integer_value(json_object_get(e, "txid")) == 0) {
            fprintf(stderr, "litevault export: skipping %s: nothing committed yet\n", name);
            continue;
        }
        if (take_image("export", cfg, name, im, &missing) != 0) {
            if (missing) { /* deleted since /status */
                fprintf(stderr, "litevault export: skipping %s (deleted meanwhile)\n", name);
                continue;
            }
            return LV_EXIT_RUNTIME;
        }
        ents[*n] = (struct bundle_entry){.name = im->name, .path = im->path, .txid = im->txid,
                                         .time_us = im->time_us, .cksum = im->cksum, .page_size = im->page_size,
                                         .db_pages = im->pages};
        memcpy(ents[*n].id, im->id, 16);
        *total += (uint64_t)im->pages * im->page_size;
        (*n)++;
    }
    return 0;
}

/* Write the bundle of ents[n] (format from fmtname) to standard output
 * (out "-") or publish it as out.  0 or an exit code (message printed). */
static int write_bundle(const char *out, const char *fmtname, const struct bundle_entry *ents, size_t n,
                        uint64_t total)
{
    struct publish pub = {.fd = -1};
    struct ecli_progress pg;
    char err[2048] = "";
    int to_stdout = strcmp(out, "-") == 0, e;

    if (!to_stdout && (e = publish_begin(&pub, out, 0666)) != 0) {
        ecli_err("export", "cannot create %s: %s", out, lv_strerror(e));
        return LV_EXIT_RUNTIME;
    }
    progress_init(&pg, "export", total);
    e = bundle_write(to_stdout ? 1 : pub.fd, fmtname, ents, n, progress_cb, &pg, err, sizeof err);
    if (!to_stdout && e == 0 && (e = publish_commit(&pub)) != 0)
        snprintf(err, sizeof err, "cannot publish %s: %s", out, lv_strerror(e));
    publish_abort(&pub); /* a bundle not published leaves no temporary file */
    if (e) {
        ecli_err("export", "%s", err[0] ? err : lv_strerror(e));
        return LV_EXIT_RUNTIME;
    }
    return 0;
}

/* What `export --all` wrote, as text or JSON, on f. */
static void print_all(FILE *f, const struct ecli_image *ims, size_t n, const char *out, enum bundle_format bf,
                      uint64_t total, int as_json)
{
    if (as_json) {
        json_t *o = json_object(), *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, image_json(&ims[i]));
        json_object_set_new(o, "output", json_string(out));
        json_object_set_new(o, "format", json_string(bf == BUNDLE_TAR ? "tar" : bf == BUNDLE_TAR_ZST ? "tar.zst" : "tar.gz"));
        json_object_set_new(o, "databases", arr);
        print_json(f, o);
        json_decref(o);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char hx[17];
        fprintf(f, "exported %s at TXID %llu, checksum %s\n", ims[i].name, (unsigned long long)ims[i].txid,
                cksum_hex(ims[i].cksum, hx));
    }
    fprintf(f, "wrote %zu database%s (%.1f MiB) into %s\n", n, n == 1 ? "" : "s", (double)total / 1048576.0,
            strcmp(out, "-") == 0 ? "standard output" : out);
}

static int export_all(const struct config *cfg, const char *out, const char *format, int as_json)
{
    json_t *dbs = NULL, *root = ecli_status("export", cfg, &dbs);
    struct ecli_image *ims = NULL;
    struct bundle_entry *ents = NULL;
    size_t n = 0;
    int rc = LV_EXIT_RUNTIME, to_stdout = strcmp(out, "-") == 0;
    char fmtname[PATH_MAX];
    enum bundle_format bf;
    uint64_t total = 0;

    if (!root)
        return LV_EXIT_RUNTIME;
    snprintf(fmtname, sizeof fmtname, "%s", to_stdout ? (format ? format : "tar.zst") : out);
    if (to_stdout && isatty(1)) {
        rc = ecli_usage("export", "refusing to write a bundle to a terminal; redirect standard output");
        goto out;
    }
    if (bundle_format_of(fmtname, &bf) != 0) {
        rc = ecli_usage("export", to_stdout ? "--format must be tar, tar.zst or tar.gz"
                                            : "the output of --all must end in .tar, .tar.zst or .tar.gz");
        goto out;
    }
    ims = calloc(json_array_size(dbs) + 1, sizeof *ims);
    ents = calloc(json_array_size(dbs) + 1, sizeof *ents);
    if (!ims || !ents)
        goto out;
    rc = take_all_images(cfg, dbs, ims, ents, &n, &total);
    if (rc == 0)
        rc = write_bundle(out, fmtname, ents, n, total);
    if (rc == 0)
        print_all(to_stdout ? stderr : stdout, ims, n, out, bf, total, as_json);
out:
    for (size_t i = 0; ims && i < n; i++)
        drop_image(&ims[i]);
    free(ims);
    free(ents);
    json_decref(root);
    return rc;
}

static void usage_export(void)
{
    printf("usage: litevault export [-c FILE] --db NAME -o OUT.db [--vacuum] [--json]\n"
           "       litevault export [-c FILE] --all -o OUT.tar|OUT.tar.zst|OUT.tar.gz [--json]\n"
           "       litevault export [-c FILE] --all -o - [--format tar|tar.zst|tar.gz] [--json]\n"
           "       litevault export --list --url URL [--json]\n\n"
           "Write a consistent copy of a database as of one TXID, taken from the running daemon\n"
           "while writers keep writing, and print that TXID and its checksum.  Without --vacuum\n"
           "the copy keeps the page layout, so its checksum equals the log's at that TXID.\n"
           "With --all, write every database plus a manifest.json into one tar bundle; the format\n"
           "follows OUT's extension, or --format (default tar.zst) for standard output.\n"
           "With --list, show the exports a destination holds (what scheduled exports wrote).\n\n"
           "  -c, --config FILE   configuration file (default ./litevault.yml, then /etc/litevault.yml)\n"
           "  -d, --db NAME       the database (its path on the mount)\n"
           "  -a, --all           every database, as a bundle\n"
           "  -o, --output OUT    output file, or - for standard output\n"
           "  -f, --format F      bundle format for -o -: tar, tar.zst (default) or tar.gz\n"
           "      --vacuum        a compact copy (VACUUM INTO); its page layout and checksum differ\n"
           "      --list          list the exports at --url instead of exporting\n"
           "      --url URL       with --list: a directory, file:// or s3:// URL\n"
           "  -j, --json          print the result as JSON (with -o -, on standard error)\n"
           "  -h, --help          show this help\n\n"
           "Exit codes: 0 ok, 1 runtime error or refused input, 2 usage or configuration error.\n");
}

int export_cli_export(int argc, char **argv)
{
    static const struct option opts[] = {{"config", 1, 0, 'c'}, {"db", 1, 0, 'd'},     {"all", 0, 0, 'a'},
                                         {"output", 1, 0, 'o'}, {"format", 1, 0, 'f'}, {"vacuum", 0, 0, 'V'},
                                         {"json", 0, 0, 'j'},   {"list", 0, 0, 'L'},   {"url", 1, 0, 'u'},
                                         {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
    const char *cpath = NULL, *db = NULL, *out = NULL, *format = NULL, *url = NULL;
    int c, all = 0, vacuum = 0, as_json = 0, list = 0, rc;
    struct config cfg;

    optind = 1;
    while ((c = cli_getopt(&export_cmd, argc, argv, "c:d:ao:f:jh", opts)) != -1) {
        switch (c) {
        case 'c': cpath = optarg; break;
        case 'd': db = optarg; break;
        case 'a': all = 1; break;
        case 'o': out = optarg; break;
        case 'f': format = optarg; break;
        case 'V': vacuum = 1; break;
        case 'j': as_json = 1; break;
        case 'L': list = 1; break;
        case 'u': url = optarg; break;
        case 'h': usage_export(); return 0;
        default: return ecli_usage("export", "unknown option");
        }
    }
    if (optind < argc)
        return cli_usage_print(&export_cmd, "unexpected argument '%s'", argv[optind]);
    if (out && strcmp(out, "-") == 0)
        cli_json_to_stderr(); /* stdout carries the bundle */
    if (list) {
        if (!url)
            return ecli_usage("export", "--list needs --url URL (a directory, file:// or s3:// URL)");
        return export_list(url, as_json);
    }
    if (!!db + all != 1)
        return ecli_usage("export", "give exactly one of --db NAME or --all");
    if (!out)
        return ecli_usage("export", "-o OUT is required");
    if (vacuum && all)
        return ecli_usage("export", "--vacuum applies to --db only");
    if (vacuum && strcmp(out, "-") == 0)
        return ecli_usage("export", "--vacuum needs an output file, not -");
    if (format && !all)
        return ecli_usage("export", "--format applies to --all -o - only");
    if (db && db[0] == '/')
        db++;
    rc = cli_config("export", cpath, &cfg);
    if (rc)
        return rc;
    lvlog_setup(cfg.log_level < LVLOG_WARN ? cfg.log_level : LVLOG_WARN, 0);
    ecli_faults("export");
    signal(SIGPIPE, SIG_IGN);
    rc = all ? export_all(&cfg, out, format, as_json) : export_one(&cfg, db, out, vacuum, as_json);
    config_free(&cfg);
    return rc;
}

/* ---------------------------------------------------------------- import */

/* A checked input database. */
struct imp_src {
    char path[PATH_MAX];   /* file to import from (the input, or a staged copy) */
    char stage[PATH_MAX];  /* staging directory to remove, or "" */
    uint32_t page_size;    /* from the header */
    uint64_t size;         /* bytes */
    uint64_t cksum;        /* database checksum of path */
};

static int copy_path(const char *from, const char *to)
{
    struct stat sb;
    int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, rc;
    if (in < 0)
        return lv_from_errno(errno);
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0 || fstat(in, &sb) != 0) {
        rc = lv_from_errno(errno);
        goto out;
    }
    rc = copy_fd(in, out, (uint64_t)sb.st_size, NULL);
out:
    if (out >= 0)
        close(out);
    close(in);
    return rc;
}

/* The input's SQLite header, page size and size into *s.  0, or an exit
 * code with the message printed. */
static int prep_header(const char *cmd, const char *in, const char *label, struct imp_src *s)
{
    uint8_t hdr[DBHDR_SIZE];
    struct stat sb;
    int fd = open(in, O_RDONLY | O_CLOEXEC), rc = LV_EXIT_RUNTIME;

    if (fd < 0 || fstat(fd, &sb) != 0) {
        ecli_err(cmd, "cannot read %s: %s", label, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        ecli_err(cmd, "%s is not a regular file", label);
        goto out;
    }
    if (sb.st_size < (off_t)sizeof hdr || pread(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr ||
        !dbhdr_magic_ok(hdr)) {
        ecli_err(cmd, "refused: %s is not a SQLite database (no SQLite header); nothing was changed", label);
        goto out;
    }
    s->page_size = dbhdr_page_size(hdr);
    if (s->page_size == 0 || sb.st_size % s->page_size) {
        uint32_t raw = lv_get16(hdr + 16); /* named as the header has it */
        ecli_err(cmd, "refused: %s is not a valid SQLite database (page size %u, %lld bytes); nothing was changed",
                 label, raw == 1 ? 65536 : raw, (long long)sb.st_size);
        goto out;
    }
    s->size = (uint64_t)sb.st_size;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

/* A -wal with frames or a -journal next to the input: import its logical
 * content, made on a staged copy (s->stage, s->path) so the input stays
 * untouched.  0, or an exit code with the message printed. */
static int prep_stage(const char *cmd, const char *in, const char *label, struct imp_src *s)
{
    static const char *const sfx[] = {"-wal", "-journal"};
    const char *tdir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char side[PATH_MAX + 16], staged[PATH_MAX + 32], staged_side[PATH_MAX + 48];
    struct stat ss;
    sqlite3 *db = NULL;
    int k, rc = LV_EXIT_RUNTIME;

    for (k = 0; k < 2; k++) {
        snprintf(side, sizeof side, "%s%s", in, sfx[k]);
        if (stat(side, &ss) == 0 && ss.st_size > 0)
            break;
    }
    if (k == 2)
        return 0;
    snprintf(s->stage, sizeof s->stage, "%s/litevault-import-XXXXXX", tdir);
    if (!mkdtemp(s->stage)) {
        ecli_err(cmd, "cannot create a staging directory in %s: %s", tdir, strerror(errno));
        s->stage[0] = 0;
        return LV_EXIT_RUNTIME;
    }
    snprintf(staged, sizeof staged, "%s/in.db", s->stage);
    snprintf(staged_side, sizeof staged_side, "%s%s", staged, sfx[k]);
    fprintf(stderr, "litevault %s: %s has a %s file (%lld bytes): importing the database with it applied\n", cmd,
            label, sfx[k], (long long)ss.st_size);
    if (copy_path(in, staged) != 0 || copy_path(side, staged_side) != 0) {
        ecli_err(cmd, "cannot stage a copy of %s in %s", label, s->stage);
        goto out;
    }
    if (sqlite3_open_v2(staged, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "SELECT count(*) FROM sqlite_master; PRAGMA wal_checkpoint(TRUNCATE);", NULL, NULL, NULL) !=
            SQLITE_OK) {
        ecli_err(cmd, "refused: %s with its %s cannot be read: %s; nothing was changed", label, sfx[k],
                 db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    snprintf(s->path, sizeof s->path, "%s", staged);
    if (stat(staged, &ss) != 0) {
        ecli_err(cmd, "%s: %s", staged, strerror(errno));
        goto out;
    }
    s->size = (uint64_t)ss.st_size;
    rc = 0;
out:
    sqlite3_close(db);
    return rc;
}

/* PRAGMA integrity_check of s->path.  0, or an exit code with the message printed. */
static int prep_integrity(const char *cmd, const char *label, const struct imp_src *s)
{
    char uri[PATH_MAX * 3 + 32], msg[1024] = "";
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    size_t ml = 0;
    int r, rc = LV_EXIT_RUNTIME;

    sqlite_uri_immutable(s->path, uri, sizeof uri);
    r = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    if (r == SQLITE_OK)
        r = sqlite3_prepare_v2(db, "PRAGMA integrity_check(20)", -1, &st, NULL);
    if (r != SQLITE_OK) {
        ecli_err(cmd, "refused: %s cannot be opened by SQLite: %s; nothing was changed", label,
                 db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        ml += (size_t)snprintf(msg + ml, ml < sizeof msg ? sizeof msg - ml : 0, "%s%s", ml ? "; " : "", t ? t : "");
        if (ml >= sizeof msg)
            ml = sizeof msg - 1;
    }
    if (r != SQLITE_DONE) {
        ecli_err(cmd, "refused: integrity_check of %s failed: %s; nothing was changed", label, sqlite3_errmsg(db));
        goto out;
    }
    if (strcmp(msg, "ok") != 0) {
        ecli_err(cmd, "refused: integrity_check of %s failed: %s; nothing was changed "
                      "(--no-check skips this check)", label, msg);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

/* Check an input database (see the design comment); fills *s.  0, or an exit
 * code with the message printed.  label names the input in messages. */
static int prep_input(const char *cmd, const char *in, const char *label, int check, struct imp_src *s)
{
    int rc;

    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", in);
    if ((rc = prep_header(cmd, in, label, s)) || (rc = prep_stage(cmd, in, label, s)) ||
        (check && (rc = prep_integrity(cmd, label, s))))
        return rc;
    if (file_cksum(s->path, s->page_size, &s->cksum) != 0) {
        ecli_err(cmd, "cannot read %s: %s", label, strerror(errno));
        return LV_EXIT_RUNTIME;
    }
    return 0;
}

static void imp_src_done(struct imp_src *s)
{
    if (s->stage[0])
        bundle_rmtree(s->stage);
    s->stage[0] = 0;
}

/* Refuse, before anything changes, an import the daemon's current state forbids. */
static int preflight(const char *cmd, json_t *dbs, const char *name, const struct imp_src *s, const char *label)
{
    json_t *e = status_find(dbs, name);
    if (!bundle_name_ok(name)) {
        ecli_err(cmd, "refused: '%s' is not a usable database name (absolute, '..', or a -wal/-journal/-shm name)",
                 name);
        return LV_EXIT_USAGE;
    }
    if (!e)
        return 0;
    const char *jm = json_string_value(json_object_get(e, "journal_mode"));
    uint32_t ps = (uint32_t)json_integer_value(json_object_get(e, "page_size"));
    if (json_string_value(json_object_get(e, "error"))) {
        ecli_err(cmd, "refused: database %s is broken on the daemon (%s); nothing was changed", name,
                 json_string_value(json_object_get(e, "error")));
        return LV_EXIT_RUNTIME;
    }
    if (jm && strcmp(jm, "wal") == 0 && ps && ps != s->page_size) {
        ecli_err(cmd, "refused: %s is in WAL mode with page size %u and %s has page size %u; SQLite cannot "
                      "change the page size of a WAL database.  Convert the input first (sqlite3 IN.db "
                      "'PRAGMA journal_mode=delete; PRAGMA page_size=%u; VACUUM') or take %s out of WAL mode; "
                      "nothing was changed", name, ps, label, s->page_size, ps, name);
        return LV_EXIT_RUNTIME;
    }
    return 0;
}

/* Result of one import. */
struct imp_result {
    int created;           /* 1: a new database */
    uint64_t before_txid;  /* TXID before (0 if new) */
    uint64_t txid;         /* TXID after */
    uint64_t cksum;        /* checksum after (from /status) */
    int others;            /* other writers committed meanwhile */
};

/* Create database name on the mount from s (see the design comment): the
 * bytes go to a hidden temporary name beside it through publish.h, which
 * renames it onto name only if name does not exist (RENAME_NOREPLACE).  A
 * failure leaves neither name nor the temporary file.  0 or exit code. */
static int import_new(const char *cmd, const struct config *cfg, const char *name, const struct imp_src *s)
{
    char dst[PATH_MAX * 2], tmp[PATH_MAX * 2 + 48], dir[PATH_MAX * 2];
    const char *slash = strrchr(name, '/');
    mode_t um = umask(0);
    struct publish p;
    struct ecli_progress pg;
    int in = -1, rc = LV_EXIT_RUNTIME, e;

    umask(um);
    snprintf(dst, sizeof dst, "%s/%s", cfg->fuse_dir, name);
    if (slash) {
        snprintf(dir, sizeof dir, "%s/%.*s", cfg->fuse_dir, (int)(slash - name), name);
        if (sys_mkdir_p(dir) != 0) {
            ecli_err(cmd, "cannot create directory %s on the mount: %s", dir, strerror(errno));
            return LV_EXIT_RUNTIME;
        }
        snprintf(tmp, sizeof tmp, "%s/.%s.import-%ld", dir, slash + 1, (long)getpid());
    } else {
        snprintf(tmp, sizeof tmp, "%s/.%s.import-%ld", cfg->fuse_dir, name, (long)getpid());
    }
    in = open(s->path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        ecli_err(cmd, "cannot read %s: %s", s->path, strerror(errno));
        return LV_EXIT_RUNTIME;
    }
    e = publish_begin_tmp(&p, dst, tmp, 0666 & ~um);
    if (e) {
        ecli_err(cmd, "cannot create %s on the mount: %s (is the mount %s live?)", tmp, lv_strerror(e),
                 cfg->fuse_dir);
        goto out_in;
    }
    /* A plain copy: the daemon captures an unjournaled write to a new file
     * (WAL-mode header or not) as one snapshot record at the fsync. */
    progress_init(&pg, "import", s->size);
    e = publish_copy(&p, in, s->size, &pg);
    if (e) {
        ecli_err(cmd, "writing %s on the mount: %s", tmp, lv_strerror(e));
        publish_abort(&p);
        goto out_in;
    }
    e = publish_commit_noreplace(&p);
    if (e) {
        ecli_err(cmd, "cannot publish %s onto %s: %s%s", tmp, dst, lv_strerror(e),
                 e == LV_EEXIST ? " (it was created meanwhile; run the import again to replace it)" : "");
        goto out_in;
    }
    rc = 0;
out_in:
    close(in);
    return rc;
}

/* Replace database name on the mount with s through the backup API. 0 or exit code. */
static int import_replace(const char *cmd, const struct config *cfg, const char *name, const struct imp_src *s)
{
    char dst[PATH_MAX * 2], uri[PATH_MAX * 3 + 32];
    sqlite3 *src = NULL, *db = NULL;
    sqlite3_backup *bk = NULL;
    int rc = LV_EXIT_RUNTIME, r;
    int64_t deadline = lv_mono_us() + (int64_t)ECLI_BUSY_MS * 1000;

    snprintf(dst, sizeof dst, "%s/%s", cfg->fuse_dir, name);
    sqlite_uri_immutable(s->path, uri, sizeof uri);
    if (sqlite3_open_v2(uri, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
        ecli_err(cmd, "cannot open %s: %s", s->path, src ? sqlite3_errmsg(src) : "out of memory");
        goto out;
    }
    if (sqlite3_open_v2(dst, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        ecli_err(cmd, "cannot open %s on the mount: %s", dst, db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(db, ECLI_BUSY_MS);
    bk = sqlite3_backup_init(db, "main", src, "main");
    if (!bk) {
        ecli_err(cmd, "cannot start copying into %s: %s", dst, sqlite3_errmsg(db));
        goto out;
    }
    while ((r = sqlite3_backup_step(bk, -1)) != SQLITE_DONE) {
        if ((r == SQLITE_BUSY || r == SQLITE_LOCKED) && lv_mono_us() < deadline) {
            usleep(20000);
            continue;
        }
        ecli_err(cmd, "copying into %s failed: %s%s", dst, sqlite3_errstr(r),
                 r == SQLITE_BUSY || r == SQLITE_LOCKED ? " (another connection kept a transaction open)" : "");
        goto out;
    }
    r = sqlite3_backup_finish(bk);
    bk = NULL;
    if (r != SQLITE_OK) {
        ecli_err(cmd, "copying into %s failed: %s", dst, sqlite3_errmsg(db));
        goto out;
    }
    rc = 0;
out:
    if (bk)
        sqlite3_backup_finish(bk);
    if (db && sqlite3_close(db) != SQLITE_OK && rc == 0) {
        ecli_err(cmd, "closing %s: %s", dst, sqlite3_errmsg(db));
        rc = LV_EXIT_RUNTIME;
    }
    sqlite3_close(src);
    return rc;
}

/* Import s as name, then verify in /status.  0 or exit code. */
static int import_one(const char *cmd, const struct config *cfg, json_t *dbs, const char *name,
                      const struct imp_src *s, struct imp_result *res)
{
    json_t *e = status_find(dbs, name), *root2, *dbs2 = NULL, *e2;
    char hx[17], hy[17];
    int rc;

    memset(res, 0, sizeof *res);
    char mp[PATH_MAX * 2];
    struct stat st;
    int replace = e != NULL;
    snprintf(mp, sizeof mp, "%s/%s", cfg->fuse_dir, name);
    if (!e && lstat(mp, &st) == 0) {
        /* On the mount but not a database the daemon tracks: an empty file
         * (sqlite3 opened it, nothing written yet) is filled like a database;
         * anything else is not ours to replace. */
        if (!S_ISREG(st.st_mode) || st.st_size != 0) {
            ecli_err(cmd, "refused: %s exists on the mount but is not a SQLite database; nothing was changed", mp);
            return LV_EXIT_RUNTIME;
        }
        replace = 1;
    }
    res->created = !replace;
    res->before_txid = e ? (uint64_t)json_integer_value(json_object_get(e, "txid")) : 0;
    rc = replace ? import_replace(cmd, cfg, name, s) : import_new(cmd, cfg, name, s);
    if (rc)
        return rc;
    root2 = ecli_status(cmd, cfg, &dbs2);
    if (!root2)
        return LV_EXIT_RUNTIME;
    e2 = status_find(dbs2, name);
    if (!e2) {
        ecli_err(cmd, "%s was written but the daemon does not list it as a SQLite database", name);
        json_decref(root2);
        return LV_EXIT_RUNTIME;
    }
    res->txid = (uint64_t)json_integer_value(json_object_get(e2, "txid"));
    res->cksum = json_hex64(json_object_get(e2, "checksum"));
    json_decref(root2);
    if (res->txid <= res->before_txid) {
        ecli_err(cmd, "%s: the daemon logged no change (TXID still %llu); check its log", name,
                 (unsigned long long)res->txid);
        return LV_EXIT_RUNTIME;
    }
    if (res->txid != res->before_txid + 1) {
        res->others = 1;
        fprintf(stderr, "litevault %s: note: %s advanced from TXID %llu to %llu: other writers committed meanwhile\n",
                cmd, name, (unsigned long long)res->before_txid, (unsigned long long)res->txid);
    } else if (res->created && res->cksum != s->cksum) {
        ecli_err(cmd, "%s: the daemon reports checksum %s after the import, the input has %s", name,
                 cksum_hex(res->cksum, hx), cksum_hex(s->cksum, hy));
        return LV_EXIT_RUNTIME;
    }
    return 0;
}

static json_t *result_json(const char *name, const char *from, const struct imp_result *r)
{
    char hx[17];
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "input", json_string(from));
    json_object_set_new(o, "created", json_boolean(r->created));
    json_object_set_new(o, "previous_txid", json_integer((json_int_t)r->before_txid));
    json_object_set_new(o, "txid", json_integer((json_int_t)r->txid));
    json_object_set_new(o, "checksum", json_string(cksum_hex(r->cksum, hx)));
    return o;
}

static void print_result(const char *name, const char *from, const struct imp_result *r)
{
    char hx[17];
    if (r->created)
        printf("imported %s as new database %s: TXID %llu, checksum %s\n", from, name, (unsigned long long)r->txid,
               cksum_hex(r->cksum, hx));
    else
        printf("imported %s into %s (replaced; TXID was %llu): TXID %llu, checksum %s\n", from, name,
               (unsigned long long)r->before_txid, (unsigned long long)r->txid, cksum_hex(r->cksum, hx));
}

static int import_file(const struct config *cfg, const char *name, const char *in, int check, int as_json)
{
    struct imp_src s;
    struct imp_result res;
    json_t *dbs = NULL, *root = NULL;
    int rc = prep_input("import", in, in, check, &s);
    if (rc)
        goto out;
    rc = LV_EXIT_RUNTIME;
    root = ecli_status("import", cfg, &dbs);
    if (!root)
        goto out;
    rc = preflight("import", dbs, name, &s, in);
    if (rc)
        goto out;
    rc = import_one("import", cfg, dbs, name, &s, &res);
    if (rc)
        goto out;
    if (as_json) {
        json_t *o = result_json(name, in, &res);
        print_json(stdout, o);
        json_decref(o);
    } else {
        print_result(name, in, &res);
    }
out:
    imp_src_done(&s);
    json_decref(root);
    return rc;
}

static int import_bundle(const struct config *cfg, const char *in, int check, int as_json)
{
    const char *tdir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[PATH_MAX], err[2048] = "", label[PATH_MAX + 1100];
    struct bundle *b = NULL;
    struct imp_src *srcs = NULL;
    json_t *root = NULL, *dbs = NULL, *arr = json_array();
    int fd = -1, rc = LV_EXIT_RUNTIME, e;
    size_t i, prepared = 0;

    snprintf(dir, sizeof dir, "%s/litevault-bundle-XXXXXX", tdir);
    if (!mkdtemp(dir)) {
        ecli_err("import", "cannot create a directory in %s: %s (set TMPDIR)", tdir, strerror(errno));
        dir[0] = 0;
        goto out;
    }
    fd = strcmp(in, "-") == 0 ? 0 : open(in, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ecli_err("import", "cannot read %s: %s", in, strerror(errno));
        goto out;
    }
    e = bundle_extract(fd, dir, &b, err, sizeof err);
    if (e) {
        ecli_err("import", "%s: %s; nothing was changed", in, err);
        goto out;
    }
    srcs = calloc(b->n + 1, sizeof *srcs);
    if (!srcs)
        goto out;
    root = ecli_status("import", cfg, &dbs);
    if (!root)
        goto out;
    for (i = 0; i < b->n; i++) {
        snprintf(label, sizeof label, "%s (db/%s)", in, b->v[i].name);
        rc = prep_input("import", b->v[i].path, label, check, &srcs[i]);
        prepared = i + 1;
        if (rc)
            goto out;
        rc = preflight("import", dbs, b->v[i].name, &srcs[i], label);
        if (rc)
            goto out;
    }
    rc = LV_EXIT_RUNTIME;
    for (i = 0; i < b->n; i++) {
        struct imp_result res;
        snprintf(label, sizeof label, "%s (db/%s)", in, b->v[i].name);
        if (import_one("import", cfg, dbs, b->v[i].name, &srcs[i], &res) != 0) {
            if (i)
                fprintf(stderr, "litevault import: %zu of %zu databases were imported before this failure\n", i,
                        b->n);
            goto out;
        }
        if (as_json)
            json_array_append_new(arr, result_json(b->v[i].name, label, &res));
        else
            print_result(b->v[i].name, label, &res);
    }
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "input", json_string(in));
        json_object_set(o, "databases", arr);
        print_json(stdout, o);
        json_decref(o);
    }
    rc = 0;
out:
    for (i = 0; i < prepared; i++)
        imp_src_done(&srcs[i]);
    free(srcs);
    bundle_free(b);
    if (fd > 0)
        close(fd);
    if (dir[0])
        bundle_rmtree(dir);
    json_decref(arr);
    json_decref(root);
    return rc;
}

static void usage_import(void)
{
    printf("usage: litevault import [-c FILE] --db NAME IN.db [--no-check] [--json]\n"
           "       litevault import [-c FILE] --all IN.tar.zst|IN.tar.gz|IN.tar|- [--no-check] [--json]\n\n"
           "Replace database NAME on the running daemon with IN.db, or create it, as one logged\n"
           "change (so the archive follows it).  Open connections see the new content at their\n"
           "next transaction.  With --all, import every database of a bundle made by\n"
           "'litevault export --all', after verifying its manifest and every checksum.\n"
           "Before anything changes the input must be a SQLite database that passes\n"
           "PRAGMA integrity_check; a bundle entry that is absolute, has '..', or is a link is\n"
           "refused.  A -wal or -journal file next to IN.db is applied (on a copy) first.\n"
           "Bundles are extracted into $TMPDIR (default /tmp).\n\n"
           "  -c, --config FILE   configuration file (default ./litevault.yml, then /etc/litevault.yml)\n"
           "  -d, --db NAME       the database to replace or create (its path on the mount)\n"
           "  -a, --all           IN is a bundle\n"
           "      --no-check      skip PRAGMA integrity_check\n"
           "  -j, --json          print the result as JSON\n"
           "  -h, --help          show this help\n\n"
           "Exit codes: 0 ok, 1 runtime error or refused input, 2 usage or configuration error.\n");
}

int export_cli_import(int argc, char **argv)
{
    static const struct option opts[] = {{"config", 1, 0, 'c'}, {"db", 1, 0, 'd'},   {"all", 0, 0, 'a'},
                                         {"no-check", 0, 0, 'N'}, {"json", 0, 0, 'j'}, {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cpath = NULL, *db = NULL, *in;
    int c, all = 0, check = 1, as_json = 0, rc;
    struct config cfg;

    optind = 1;
    while ((c = cli_getopt(&import_cmd, argc, argv, "c:d:ajh", opts)) != -1) {
        switch (c) {
        case 'c': cpath = optarg; break;
        case 'd': db = optarg; break;
        case 'a': all = 1; break;
        case 'N': check = 0; break;
        case 'j': as_json = 1; break;
        case 'h': usage_import(); return 0;
        default: return ecli_usage("import", "unknown option");
        }
    }
    if (!!db + all != 1)
        return ecli_usage("import", "give exactly one of --db NAME or --all");
    if (optind + 1 != argc)
        return ecli_usage("import", "give exactly one input file");
    in = argv[optind];
    if (db && db[0] == '/')
        db++;
    if (db && !bundle_name_ok(db))
        return ecli_usage("import", "--db NAME must be a relative name without '..' that is not a -wal, -journal "
                                    "or -shm name");
    if (db && strcmp(in, "-") == 0)
        return ecli_usage("import", "--db takes a file, not standard input");
    rc = cli_config("import", cpath, &cfg);
    if (rc)
        return rc;
    lvlog_setup(cfg.log_level < LVLOG_WARN ? cfg.log_level : LVLOG_WARN, 0);
    ecli_faults("import");
    rc = all ? import_bundle(&cfg, in, check, as_json) : import_file(&cfg, db, in, check, as_json);
    config_free(&cfg);
    return rc;
}
