/*
 * fs.c -- the FUSE filesystem (libfuse3 high-level API).
 *
 * The mount mirrors data.dir/files.  Every path is resolved relative to one
 * directory fd (dbreg_rootfd) with the *at() calls.  Plain operations pass
 * through; operations that change a database, its -journal or its -wal go
 * through db.c, which captures committed transactions.
 *
 * Keeping FUSE round trips off SQLite's hot paths (docs/DESIGN.md):
 *  - no lock/flock/getlk operations: the kernel keeps POSIX byte-range
 *    locks itself for the FUSE inodes, exactly as on a local disk, so
 *    SQLite's lock calls never reach the daemon;
 *  - kernel_cache: file pages stay in the kernel page cache across opens
 *    (coherent, because every write goes through this mount);
 *    auto_inval_data is turned off for the same reason;
 *  - long entry, negative-entry and attribute timeouts: SQLite's
 *    access("-journal") and fstat() calls are answered by the kernel;
 *  - writes are write-through (no writeback cache), so the daemon sees
 *    every write in order and can detect commits synchronously;
 *  - a multi-threaded session with large writes.
 * The -shm file is an ordinary file here: its mmap is served from the
 * kernel page cache and shared by all local processes.
 */
#define FUSE_USE_VERSION 312
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#include "db.h"
#include "lv.h"
#include "lvlog.h"
#include "metrics.h"

/* Per-open state, stored in fi->fh. */
struct lvfile {
    int fd;                 /* backing file descriptor */
    struct db *db;          /* owning database (referenced), NULL for directories */
    enum db_filekind kind;  /* which file of the database */
    int wrote;              /* this handle wrote: its close may end an unjournaled transaction */
    DIR *dir;               /* for directory handles: the stream (fd is its dirfd), else NULL */
};

static struct dbreg *g_reg;      /* set by fs_main before the loop starts */
static double g_timeout = 60.0;  /* entry/attr cache timeout in seconds */

static int rootfd(void) { return dbreg_rootfd(g_reg); }

/* Path relative to the root directory fd: "/a/b" -> "a/b", "/" -> ".". */
static const char *rel(const char *path) { return path[1] ? path + 1 : "."; }

static struct lvfile *F(struct fuse_file_info *fi) { return (struct lvfile *)(uintptr_t)fi->fh; }

#define TIMED(op, expr)                                  \
    do {                                                 \
        int64_t t0_ = lv_mono_us();                      \
        int r_ = (expr);                                 \
        metrics_fuse((op), lv_mono_us() - t0_);          \
        return r_;                                       \
    } while (0)

/* ---------------------------------------------------------------- ops */

static void *lv_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    cfg->use_ino = 0;
    cfg->kernel_cache = 1;
    cfg->entry_timeout = g_timeout;
    cfg->attr_timeout = g_timeout;
    cfg->negative_timeout = g_timeout;
    cfg->hard_remove = 1;
    cfg->nullpath_ok = 1;
    cfg->direct_io = 0;
    conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    conn->max_write = 1u << 20;
    conn->max_readahead = 1u << 20;
    LV_INFO("mounted (FUSE protocol %u.%u)", conn->proto_major, conn->proto_minor);
    return NULL;
}

static int do_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    if (fi && F(fi))
        return fstat(F(fi)->fd, st) ? -errno : 0;
    return fstatat(rootfd(), rel(path), st, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}
static int lv_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    TIMED(MFOP_GETATTR, do_getattr(path, st, fi));
}

static int lv_readlink(const char *path, char *buf, size_t size)
{
    ssize_t n = readlinkat(rootfd(), rel(path), buf, size - 1);
    if (n < 0)
        return -errno;
    buf[n] = 0;
    return 0;
}

static int do_mkdir(const char *path, mode_t mode) { return mkdirat(rootfd(), rel(path), mode) ? -errno : 0; }
static int lv_mkdir(const char *path, mode_t mode) { TIMED(MFOP_MKDIR, do_mkdir(path, mode)); }

static int do_rmdir(const char *path) { return unlinkat(rootfd(), rel(path), AT_REMOVEDIR) ? -errno : 0; }
static int lv_rmdir(const char *path) { TIMED(MFOP_RMDIR, do_rmdir(path)); }

static int lv_symlink(const char *target, const char *path)
{
    return symlinkat(target, rootfd(), rel(path)) ? -errno : 0;
}

static int lv_link(const char *from, const char *to)
{
    return linkat(rootfd(), rel(from), rootfd(), rel(to), 0) ? -errno : 0;
}

static int do_unlink(const char *path)
{
    char name[PATH_MAX];
    enum db_filekind k;
    const char *r = rel(path);
    if (db_classify(r, &k, name, sizeof name) != 0)
        return -ENAMETOOLONG;
    if (k == DBF_JOURNAL || k == DBF_WAL) {
        struct db *d = dbreg_get(g_reg, name, 0);
        if (d) {
            int rc = db_on_unlink(d, k, r);
            db_put(d);
            return rc;
        }
    }
    if (unlinkat(rootfd(), r, 0) != 0)
        return -errno;
    if (k == DBF_MAIN)
        dbreg_unlinked(g_reg, r);
    return 0;
}
static int lv_unlink(const char *path) { TIMED(MFOP_UNLINK, do_unlink(path)); }

static int do_rename(const char *from, const char *to, unsigned int flags)
{
    if (renameat2(rootfd(), rel(from), rootfd(), rel(to), flags) != 0)
        return -errno;
    dbreg_renamed(g_reg, rel(from), rel(to));
    return 0;
}
static int lv_rename(const char *from, const char *to, unsigned int flags)
{
    TIMED(MFOP_RENAME, do_rename(from, to, flags));
}

static int lv_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    if (fi && F(fi))
        return fchmod(F(fi)->fd, mode) ? -errno : 0;
    return fchmodat(rootfd(), rel(path), mode, 0) ? -errno : 0;
}

static int lv_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    if (fi && F(fi))
        return fchown(F(fi)->fd, uid, gid) ? -errno : 0;
    return fchownat(rootfd(), rel(path), uid, gid, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}

static int do_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    if (fi && F(fi)) {
        struct lvfile *f = F(fi);
        if (f->db)
            return db_on_truncate(f->db, f->kind, f->fd, NULL, size);
        return ftruncate(f->fd, size) ? -errno : 0;
    }
    char name[PATH_MAX];
    enum db_filekind k;
    const char *r = rel(path);
    if (db_classify(r, &k, name, sizeof name) != 0)
        return -ENAMETOOLONG;
    struct db *d = dbreg_get(g_reg, name, 0);
    int rc;
    if (d) {
        rc = db_on_truncate(d, k, -1, r, size);
        db_put(d);
        return rc;
    }
    int fd = openat(rootfd(), r, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    rc = ftruncate(fd, size) ? -errno : 0;
    close(fd);
    return rc;
}
static int lv_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    TIMED(MFOP_SETATTR, do_truncate(path, size, fi));
}

static int lv_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    if (fi && F(fi))
        return futimens(F(fi)->fd, tv) ? -errno : 0;
    return utimensat(rootfd(), rel(path), tv, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}

/* Open (or create) and attach the database.  O_TRUNC on a database file
 * is routed through db_on_truncate. */
static int do_open(const char *path, struct fuse_file_info *fi, int create, mode_t mode)
{
    char name[PATH_MAX];
    enum db_filekind k;
    const char *r = rel(path);
    int flags = fi->flags, rc = 0;
    if (db_classify(r, &k, name, sizeof name) != 0)
        return -ENAMETOOLONG;
    struct lvfile *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    f->kind = k;
    f->db = dbreg_get(g_reg, name, 1);
    if (f->db && (rc = db_check_open(f->db)) != 0)
        goto out_free;
    int trunc = (flags & O_TRUNC) && f->db;
    if (trunc)
        flags &= ~O_TRUNC;
    flags &= ~(O_NOFOLLOW);
    /* The daemon reads database files it writes (headers, pages at commit),
     * so a write-only open becomes read-write on the backing file; the
     * kernel has already checked the caller's permissions. */
    if (f->db && (flags & O_ACCMODE) == O_WRONLY)
        flags = (flags & ~O_ACCMODE) | O_RDWR;
    f->fd = create ? openat(rootfd(), r, flags | O_CREAT | O_CLOEXEC, mode)
                   : openat(rootfd(), r, flags | O_CLOEXEC);
    if (f->fd < 0) {
        rc = -errno;
        goto out_free;
    }
    if (create && f->db)
        db_on_create(f->db, k);
    if (trunc) {
        struct stat st;
        if (fstat(f->fd, &st) == 0 && st.st_size > 0 && (rc = db_on_truncate(f->db, k, f->fd, NULL, 0)) != 0) {
            close(f->fd);
            goto out_free;
        }
    }
    fi->keep_cache = 1;
    /* Rollback journals are written in 4+page+4 byte records at unaligned
     * offsets and read back only to roll back a hot journal.  Through the
     * page cache the kernel splits each page write at the partial page
     * boundary (two round trips); direct I/O sends it whole. */
    if (k == DBF_JOURNAL)
        fi->direct_io = 1;
    fi->fh = (uintptr_t)f;
    return 0;
out_free:
    db_put(f->db);
    free(f);
    return rc;
}
static int lv_open(const char *path, struct fuse_file_info *fi) { TIMED(MFOP_OPEN, do_open(path, fi, 0, 0)); }
static int lv_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    TIMED(MFOP_CREATE, do_open(path, fi, 1, mode));
}

static int do_read(char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(F(fi)->fd, buf + got, size - got, off + (off_t)got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (int)got;
}
static int lv_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    TIMED(MFOP_READ, do_read(buf, size, off, fi));
}

static int do_write(const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    struct lvfile *f = F(fi);
    ssize_t n;
    if (f->db) {
        f->wrote = 1;
        n = db_on_write(f->db, f->kind, f->fd, buf, size, off);
    }
    else
        n = pwrite(f->fd, buf, size, off) < 0 ? -errno : (ssize_t)size;
    return (int)n;
}
static int lv_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    TIMED(MFOP_WRITE, do_write(buf, size, off, fi));
}

static int lv_statfs(const char *path, struct statvfs *st) { return fstatvfs(rootfd(), st) ? -errno : 0; }

static int do_flush(struct fuse_file_info *fi)
{
    struct lvfile *f = F(fi);
    return f && f->db && f->wrote ? db_on_flush(f->db, f->kind) : 0;
}
static int lv_flush(const char *path, struct fuse_file_info *fi) { TIMED(MFOP_FLUSH, do_flush(fi)); }

static int do_release(struct fuse_file_info *fi)
{
    struct lvfile *f = F(fi);
    if (!f)
        return 0;
    close(f->fd);
    db_put(f->db);
    free(f);
    return 0;
}
static int lv_release(const char *path, struct fuse_file_info *fi) { TIMED(MFOP_RELEASE, do_release(fi)); }

static int do_fsync(int datasync, struct fuse_file_info *fi)
{
    struct lvfile *f = F(fi);
    if (f->db)
        return db_on_fsync(f->db, f->kind, f->fd, datasync);
    return (datasync ? fdatasync(f->fd) : fsync(f->fd)) ? -errno : 0;
}
static int lv_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    TIMED(MFOP_FSYNC, do_fsync(datasync, fi));
}

static int lv_opendir(const char *path, struct fuse_file_info *fi)
{
    struct lvfile *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    int fd = openat(rootfd(), rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || !(f->dir = fdopendir(fd))) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        free(f);
        return -e;
    }
    f->fd = dirfd(f->dir);
    fi->fh = (uintptr_t)f;
    return 0;
}

static int do_readdir(void *buf, fuse_fill_dir_t filler, struct fuse_file_info *fi)
{
    DIR *d = F(fi)->dir;
    struct dirent *e;
    rewinddir(d);
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = e->d_ino;
        st.st_mode = (mode_t)DTTOIF(e->d_type);
        if (filler(buf, e->d_name, &st, 0, 0))
            break;
    }
    return 0;
}
static int lv_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags)
{
    TIMED(MFOP_READDIR, do_readdir(buf, filler, fi));
}

static int lv_releasedir(const char *path, struct fuse_file_info *fi)
{
    struct lvfile *f = F(fi);
    closedir(f->dir);
    free(f);
    return 0;
}

static int lv_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
    /* SQLite (synchronous=EXTRA) syncs the directory after unlinking a
     * journal: that makes the commit durable, so the records must be too. */
    dbreg_sync_logs(g_reg);
    return fsync(F(fi)->fd) ? -errno : 0;
}

static int lv_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
    return fallocate(F(fi)->fd, mode, off, len) ? -errno : 0;
}

static int lv_access(const char *path, int mask)
{
    return faccessat(rootfd(), rel(path), mask, 0) ? -errno : 0;
}

static const struct fuse_operations lv_ops = {
    .init = lv_init,
    .getattr = lv_getattr,
    .readlink = lv_readlink,
    .mkdir = lv_mkdir,
    .unlink = lv_unlink,
    .rmdir = lv_rmdir,
    .symlink = lv_symlink,
    .rename = lv_rename,
    .link = lv_link,
    .chmod = lv_chmod,
    .chown = lv_chown,
    .truncate = lv_truncate,
    .open = lv_open,
    .read = lv_read,
    .write = lv_write,
    .statfs = lv_statfs,
    .flush = lv_flush,
    .release = lv_release,
    .fsync = lv_fsync,
    .opendir = lv_opendir,
    .readdir = lv_readdir,
    .releasedir = lv_releasedir,
    .fsyncdir = lv_fsyncdir,
    .create = lv_create,
    .utimens = lv_utimens,
    .fallocate = lv_fallocate,
    .access = lv_access,
};

/* ---------------------------------------------------------------- session */

static struct fuse *g_fuse;            /* the session, for the signal handler */
static volatile sig_atomic_t g_child;  /* pid of the -- CMD child, 0 if none */

static void on_signal(int sig)
{
    if (g_child > 0 && (sig == SIGINT || sig == SIGTERM)) {
        kill((pid_t)g_child, sig); /* the child's exit ends the mount */
        return;
    }
    if (g_fuse)
        fuse_exit(g_fuse);
}

int fs_prepare(struct dbreg *reg, const char *mountpoint, struct fs **out, char *err, size_t errlen)
{
    const char *argv[] = {"litevault", "-o", NULL, NULL};
    char opts[256];
    snprintf(opts, sizeof opts, "fsname=litevault,subtype=litevault,default_permissions%s",
             geteuid() == 0 ? ",allow_other" : "");
    argv[2] = opts;
    struct fuse_args args = FUSE_ARGS_INIT(3, (char **)argv);
    g_reg = reg;
    struct fuse *f = fuse_new(&args, &lv_ops, sizeof lv_ops, NULL);
    fuse_opt_free_args(&args);
    if (!f) {
        snprintf(err, errlen, "cannot create the FUSE session (is libfuse3 installed?)");
        return LV_EIO;
    }
    if (fuse_mount(f, mountpoint) != 0) {
        snprintf(err, errlen,
                 "cannot mount on fuse.dir %s: check that /dev/fuse exists, that fuse3 is installed, and that "
                 "the directory is not already a mount point",
                 mountpoint);
        fuse_destroy(f);
        return LV_EIO;
    }
    g_fuse = f;
    *out = (struct fs *)f;
    return 0;
}

void fs_set_child(pid_t pid) { g_child = pid; }

void fs_request_exit(void)
{
    /* A process-directed signal reaches the main thread, the only one
     * with SIGTERM unblocked, and interrupts fuse_loop_mt's wait. */
    g_child = 0;
    kill(getpid(), SIGTERM);
}

/*
 * The request loop is libfuse's multi-threaded loop: workers block in
 * read(2) on the device, and the kernel wakes exactly one per request.
 * Two alternatives were measured on a 2-vCPU VM and were slower: spinning
 * on a non-blocking device before sleeping (the spinner contends with the
 * submitting writer on the FUSE queue lock), and epoll-driven workers (one
 * more wake-up per request: about 195 us per WAL commit against 110 us).
 * Workers block SIGINT/SIGTERM/SIGHUP (libfuse does that when it creates
 * them), so those reach this thread, whose handler ends the loop.
 */
int fs_run(struct fs *fs)
{
    struct fuse *f = (struct fuse *)fs;
    struct sigaction sa;
    sigset_t set;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    struct fuse_loop_config *lc = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(lc, 0);
    fuse_loop_cfg_set_idle_threads(lc, 4);
    fuse_loop_cfg_set_max_threads(lc, 16);
    int rc = fuse_loop_mt(f, lc);
    fuse_loop_cfg_destroy(lc);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return rc;
}

void fs_finish(struct fs *fs)
{
    struct fuse *f = (struct fuse *)fs;
    g_fuse = NULL;
    fuse_unmount(f);
    fuse_destroy(f);
    LV_INFO("unmounted");
}
