/*
 * db_watch.c -- the WAL watcher: with kernel passthrough, an application's
 * writes to a -wal go from the kernel straight to the backing file and
 * never reach the daemon, so the watcher wakes the capture instead
 * (db_wal_capture), promptly after each commit.
 *
 * HOW.  One inotify instance (IN_MODIFY) watches every backing directory
 * that holds a passthrough -wal (dbreg_wal_passthrough adds the directory
 * at the open that asks for passthrough; adding it again is free).  A passthrough
 * write is performed by the kernel on the backing file, and, like any
 * write, it raises IN_MODIFY for that file's name in its directory: about
 * 4 us after the write on this machine's kernel, measured.  The worker
 * waits in poll(2), reads every queued event, keeps the names that end in
 * "-wal", and captures each database once per wake-up (a burst of frame
 * writes costs one capture).  A lost event (IN_Q_OVERFLOW) captures every
 * database whose WAL is watched.  The capture reads whole commits only
 * (log/wal.c's cursor), so waking on a frame that does not complete a
 * commit logs nothing; it reads the frames after the last commit again,
 * though (a transaction spilling into the WAL is read at each wake-up).
 *
 * Capture points that do not depend on the watcher remain (db_capture.c):
 * the application's fsync of the -wal, checkpoints, truncates and unlinks
 * of the -wal, and /status.  Once a second the worker also retries the
 * databases whose capture is stalled (a full log), so that they resume
 * when space comes back although no write wakes them.
 *
 * STATES.  dbreg_set_wal_passthrough(on): stopped -> running (inotify
 * open, worker started; watch_start); db_watch_stop (dbreg_close):
 * running -> stopped.  If inotify cannot be had, the watcher stays stopped
 * and passthrough off: every -wal then goes through the daemon, whose
 * write captures (no commit waits on a timer).
 *
 * INVARIANTS
 *   W1. A directory (name, device and inode) is in dirs[] only while its
 *       watch exists, at most once per watch and per name (wmu).
 *   W2. The worker holds no database's mu while it reads events, and takes
 *       one database's mu at a time (dbreg_get, then db's mu).
 */
#include "capture/db.h"
#include "capture/db_impl.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/worker.h"

#define WATCH_POLL_MS 100        /* the worker checks for a stop this often */
#define WATCH_RETRY_US 1000000   /* stalled databases are retried this often */
#define WATCH_BATCH 64           /* distinct databases captured per wake-up, at most */
#define WATCH_READS 8            /* reads of the event queue per wake-up, at most */

/* One watched directory. */
struct watch_dir {
    int wd;                      /* inotify watch descriptor */
    dev_t dev;                   /* the directory's device */
    ino_t ino;                   /* and inode (a directory of that name made anew is another) */
    char rel[PATH_MAX];          /* the directory relative to data.dir/files ("" for the root) */
};

/* The watcher, owned by the registry. */
struct db_watch {
    struct dbreg *reg;           /* the registry (immutable) */
    int ifd;                     /* the inotify instance (immutable) */
    struct worker *w;            /* the worker (immutable) */
    pthread_mutex_t wmu;         /* guards dirs, ndirs, cap */
    struct watch_dir *dirs;      /* watched directories (wmu) */
    size_t ndirs, cap;           /* their number and allocation (wmu) */
};

/* Capture the database called name (relative to the mount root). */
static void watch_capture(struct dbreg *r, const char *name)
{
    struct db *d = dbreg_get(r, name, 0);
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    if (d->kind == DBK_SQLITE && !d->broken)
        db_wal_capture(d);
    pthread_mutex_unlock(&d->mu);
    db_put(d);
}

/* Capture every database in WAL mode (after lost events, and to retry the
 * stalled ones): dbreg_list captures each as it copies its state. */
static void watch_capture_all(struct dbreg *r)
{
    struct db_info *v = NULL;
    size_t n = 0;

    if (dbreg_list(r, &v, &n) == 0)
        free(v);
}

/* The watch wd is gone (its directory was removed): forget it (W1). */
static void watch_forget(struct db_watch *wt, int wd)
{
    pthread_mutex_lock(&wt->wmu);
    for (size_t i = 0; i < wt->ndirs; i++)
        if (wt->dirs[i].wd == wd) {
            wt->dirs[i] = wt->dirs[--wt->ndirs];
            break;
        }
    pthread_mutex_unlock(&wt->wmu);
}

/* The directory of watch descriptor wd into out; 0 if unknown. */
static int watch_dir_of(struct db_watch *wt, int wd, char *out, size_t n)
{
    int found = 0;
    pthread_mutex_lock(&wt->wmu);
    for (size_t i = 0; i < wt->ndirs; i++)
        if (wt->dirs[i].wd == wd) {
            snprintf(out, n, "%s", wt->dirs[i].rel);
            found = 1;
            break;
        }
    pthread_mutex_unlock(&wt->wmu);
    return found;
}

/* Read the queued events; capture each database named once. */
static void watch_drain(struct db_watch *wt)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    char names[WATCH_BATCH][PATH_MAX];
    size_t nn = 0;
    int overflow = 0;

    for (int reads = 0; reads < WATCH_READS; reads++) { /* bounded: a steady flow still gets captured */
        ssize_t len = read(wt->ifd, buf, sizeof buf);
        if (len <= 0)
            break;
        for (char *p = buf; p < buf + len;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                overflow = 1;
                continue;
            }
            if (ev->mask & (IN_IGNORED | IN_MOVE_SELF | IN_DELETE_SELF)) {
                watch_forget(wt, ev->wd); /* gone or renamed: the next -wal open there adds it again */
                continue;
            }
            size_t l = ev->len ? strlen(ev->name) : 0;
            char dir[PATH_MAX], name[PATH_MAX];
            if (l <= 4 || strcmp(ev->name + l - 4, "-wal") != 0 || !watch_dir_of(wt, ev->wd, dir, sizeof dir))
                continue;
            snprintf(name, sizeof name, "%s%s%.*s", dir, dir[0] ? "/" : "", (int)(l - 4), ev->name);
            size_t k;
            for (k = 0; k < nn && strcmp(names[k], name) != 0; k++)
                ;
            if (k == nn && nn < WATCH_BATCH)
                snprintf(names[nn++], PATH_MAX, "%s", name);
            else if (k == nn)
                overflow = 1;
        }
    }
    for (size_t k = 0; k < nn; k++)
        watch_capture(wt->reg, names[k]);
    if (overflow)
        watch_capture_all(wt->reg);
}

static void watch_main(struct worker *w, void *arg)
{
    struct db_watch *wt = arg;
    int64_t retry = lv_mono_us() + WATCH_RETRY_US;

    while (!worker_stopping(w)) {
        struct pollfd p = {wt->ifd, POLLIN, 0};
        int n = poll(&p, 1, WATCH_POLL_MS);
        if (n > 0)
            watch_drain(wt);
        if (lv_mono_us() >= retry) {
            retry = lv_mono_us() + WATCH_RETRY_US;
            if (dbreg_stalled(wt->reg, NULL, 0) > 0)
                watch_capture_all(wt->reg);
        }
    }
}

static int watch_start(struct dbreg *r)
{
    struct db_watch *wt = calloc(1, sizeof *wt);
    int rc = LV_ENOMEM;

    if (!wt)
        goto out;
    wt->reg = r;
    pthread_mutex_init(&wt->wmu, NULL);
    wt->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (wt->ifd < 0) {
        LV_WARN("inotify_init1: %s; -wal files go through the daemon", strerror(errno));
        rc = LV_EIO;
        goto out_free;
    }
    rc = worker_start("lv-walwatch", watch_main, wt, &wt->w);
    if (rc)
        goto out_close;
    r->watch = wt;
    return 0;
out_close:
    close(wt->ifd);
out_free:
    pthread_mutex_destroy(&wt->wmu);
    free(wt);
out:
    return rc;
}

void db_watch_stop(struct dbreg *r)
{
    struct db_watch *wt = r->watch;
    if (!wt)
        return;
    worker_stop(wt->w);
    r->watch = NULL;
    close(wt->ifd);
    free(wt->dirs);
    pthread_mutex_destroy(&wt->wmu);
    free(wt);
}

static int watch_dir(struct dbreg *r, const char *dbname)
{
    struct db_watch *wt = r->watch;
    char rel[PATH_MAX], path[PATH_MAX * 2];
    struct stat st;
    int wd, rc = 0;

    if (!wt)
        return -1;
    const char *slash = strrchr(dbname, '/');
    snprintf(rel, sizeof rel, "%.*s", slash ? (int)(slash - dbname) : 0, dbname);
    snprintf(path, sizeof path, "%s%s%s", r->files, rel[0] ? "/" : "", rel);
    if (stat(path, &st) != 0)
        return -1;
    pthread_mutex_lock(&wt->wmu);
    for (size_t i = 0; i < wt->ndirs; i++)
        if (strcmp(wt->dirs[i].rel, rel) == 0 && wt->dirs[i].dev == st.st_dev && wt->dirs[i].ino == st.st_ino)
            goto out_unlock; /* W1: its watch exists */
    wd = inotify_add_watch(wt->ifd, path, IN_MODIFY | IN_MOVE_SELF | IN_DELETE_SELF | IN_ONLYDIR);
    if (wd < 0) {
        LV_WARN("inotify_add_watch %s: %s; its -wal files go through the daemon", path, strerror(errno));
        rc = -1;
        goto out_unlock;
    }
    /* An entry of that name (an older directory) or of that watch (this
     * directory under an older name, renamed) is this one now. */
    size_t i;
    for (i = 0; i < wt->ndirs; i++)
        if (wt->dirs[i].wd == wd || strcmp(wt->dirs[i].rel, rel) == 0)
            break;
    if (i == wt->ndirs && lv_grow((void **)&wt->dirs, &wt->cap, wt->ndirs, sizeof *wt->dirs, 8) != 0) {
        rc = -1;
        goto out_unlock;
    }
    wt->dirs[i].wd = wd;
    wt->dirs[i].dev = st.st_dev;
    wt->dirs[i].ino = st.st_ino;
    snprintf(wt->dirs[i].rel, sizeof wt->dirs[i].rel, "%s", rel);
    if (i == wt->ndirs)
        wt->ndirs++;
    for (size_t k = 0; k < wt->ndirs; k++) /* at most one entry per watch and per name */
        if (k != i && (wt->dirs[k].wd == wd || strcmp(wt->dirs[k].rel, rel) == 0))
            wt->dirs[k--] = wt->dirs[--wt->ndirs];
out_unlock:
    pthread_mutex_unlock(&wt->wmu);
    return rc;
}

int dbreg_set_wal_passthrough(struct dbreg *r, int on)
{
    int rc = 0;

    if (on && !r->watch)
        rc = watch_start(r);
    __atomic_store_n(&r->wal_pt, on && rc == 0, __ATOMIC_RELAXED);
    return rc;
}

int dbreg_wal_passthrough(struct dbreg *r, const char *dbname)
{
    if (!__atomic_load_n(&r->wal_pt, __ATOMIC_RELAXED) || dbreg_is_replica(r))
        return 0;
    return watch_dir(r, dbname) == 0;
}

void dbreg_set_journal_passthrough(struct dbreg *r, int on)
{
    __atomic_store_n(&r->journal_pt, on, __ATOMIC_RELAXED);
}

int dbreg_journal_passthrough(struct dbreg *r)
{
    return __atomic_load_n(&r->journal_pt, __ATOMIC_RELAXED) && !dbreg_is_replica(r);
}
