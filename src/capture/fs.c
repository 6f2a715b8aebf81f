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
 *  - a multi-threaded session with large writes;
 *  - -shm files use kernel passthrough where the kernel has it (see
 *    "kernel passthrough" below): reads, writes and mmap never reach the
 *    daemon; elsewhere the -shm file is an ordinary cached file;
 *  - noflush on every open whose close cannot end a transaction (do_open);
 *  - a private mount unless fuse.allow-other: no default_permissions, so
 *    no attribute refresh of the directory after each create and unlink,
 *    and FUSE_HANDLE_KILLPRIV, so none before each chown.
 */
#define FUSE_USE_VERSION 312
#include "capture/fs.h"

#include <dirent.h>
#include <inttypes.h>
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
#include <sys/ioctl.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "capture/db.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/metrics.h"

/* Per-open state, stored in fi->fh. */
struct lvfile {
    int fd;                 /* backing file descriptor */
    struct db *db;          /* owning database (referenced), NULL for directories */
    enum db_filekind kind;  /* which file of the database */
    int wrote;              /* this handle wrote: its close may end an unjournaled transaction */
    DIR *dir;               /* for directory handles: the stream (fd is its dirfd), else NULL */
    struct pt_backing *pt;  /* -shm, -wal, journal: its shared passthrough registration (g_pt_mu), or NULL */
    int noflush;            /* opened with noflush: close(2) sends no FLUSH, release captures */
    int own;                /* opened by a thread of this daemon (the replica's applier): on g_own (g_own_mu) */
    struct lvfile *own_next, *own_prev; /* links of g_own (g_own_mu) */
};

/* Handles this daemon's own threads opened through the mount.  Their
 * RELEASE can arrive after the session stopped serving (the applier closes
 * them at shutdown), so fs_finish frees whatever is left here. */
static pthread_mutex_t g_own_mu = PTHREAD_MUTEX_INITIALIZER;
static struct lvfile *g_own;   /* list head (g_own_mu) */

static struct dbreg *g_reg;      /* set by fs_main before the loop starts */
static int g_private;             /* mounted without allow_other: callers have the daemon's credentials */
static double g_timeout = 60.0;  /* entry/attr cache timeout in seconds */

static int rootfd(void) { return dbreg_rootfd(g_reg); }

/* Path relative to the root directory fd: "/a/b" -> "a/b", "/" -> ".". */
static const char *rel(const char *path) { return path[1] ? path + 1 : "."; }

static struct lvfile *F(struct fuse_file_info *fi) { return (struct lvfile *)(uintptr_t)fi->fh; }

#define TIMED(op, expr)                                  \
    do {                                                 \
        int64_t t0_ = lv_mono_us();                      \
        int r_ = dbreg_commit_wait(g_reg, (expr));       \
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
    /* Every caller has the daemon's credentials, so the daemon's own
     * writes, truncations and chowns of the backing files clear set-user-ID
     * and set-group-ID bits exactly as the caller's would; saying so stops
     * the kernel from fetching attributes before each chown. */
    if (g_private && (conn->capable & FUSE_CAP_HANDLE_KILLPRIV))
        conn->want |= FUSE_CAP_HANDLE_KILLPRIV;
    else
        conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV; /* a shared mount: the kernel clears the bits */
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

/* May applications create, delete or rename databases here?  Not on a
 * replica (the primary decides), nor on a fenced primary (no lease). */
static int may_change_dbs(void)
{
    return !dbreg_is_replica(g_reg) && !dbreg_is_fenced(g_reg);
}

static int do_unlink(const char *path)
{
    char name[PATH_MAX];
    enum db_filekind k;
    const char *r = rel(path);
    if (db_classify(r, &k, name, sizeof name) != 0)
        return -ENAMETOOLONG;
    if (k == DBF_MAIN && !may_change_dbs())
        return -EROFS; /* the primary decides which databases exist */
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
    if (!may_change_dbs())
        return -EROFS;
    if (flags & RENAME_EXCHANGE)
        return -EINVAL; /* the registry follows one-way renames only (SQLite never exchanges) */
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

/* ------------------------------------------------------ kernel passthrough
 *
 * Linux 6.9 added FUSE passthrough: an OPEN or CREATE reply may name a
 * "backing file" (registered on /dev/fuse with FUSE_DEV_IOC_BACKING_OPEN),
 * and the kernel then serves read, write and mmap of that open file from
 * the backing file without a round trip.  libfuse 3.14 (Debian 12) predates
 * it, so litevault installs its own writev for the session
 * (fuse_session_custom_io) and edits two kinds of reply on their way out:
 *
 *   INIT reply (the first reply of the session), struct fuse_init_out:
 *     offset 12 u32 flags       FUSE_HANDLE_KILLPRIV (1<<19) set on a private
 *                               mount, cleared on a shared one (lv_init);
 *                               without FUSE_INIT_EXT (1<<30) nothing more
 *                               is edited
 *     offset 32 u32 flags2      |= 1<<5 (FUSE_PASSTHROUGH, bit 37 overall)
 *     offset 36 u32 max_stack_depth = 1 (backing files on a plain filesystem)
 *   OPEN reply, struct fuse_open_out (16 bytes), or CREATE reply, a
 *   fuse_entry_out (128 bytes) followed by it:
 *     offset 8  u32 open_flags  |= FOPEN_PASSTHROUGH (1<<7), and flags the
 *                               kernel refuses with it (KEEP_CACHE) cleared
 *     offset 12 s32 backing_id  (was padding)
 *
 * An open handler that registered a backing file leaves its ID in the
 * thread-local pt_pending; libfuse sends the reply from the same thread
 * right after the handler returns, and the writev hook consumes it (an
 * error reply is passed on unedited, and the last release of the file
 * unregisters the ID).  A kernel without passthrough ignores the INIT bit
 * and refuses the registration ioctl; a refusal before any registration
 * worked turns the feature off (g_pt_state), and everything goes through
 * the daemon as before.
 *
 * -shm files use it (their content is never captured), and -wal files
 * where the registry allows (dbreg_wal_passthrough: the WAL watcher
 * captures their commits).  The kernel
 * refuses to mix passthrough and cached opens of one inode, and requires
 * all passthrough opens of an inode to name the same backing file, so the
 * opens of one backing inode share one registration (struct pt_backing,
 * reference counted, unregistered by the last release), and an inode whose
 * registration failed stays cached for all its opens.  Registration needs
 * CAP_SYS_ADMIN.
 */
#define PT_INIT_EXT (1u << 30)
#define PT_INIT_KILLPRIV (1u << 19) /* FUSE_HANDLE_KILLPRIV */
#define PT_FLAGS2_PASSTHROUGH (1u << 5)
#define PT_FOPEN_PASSTHROUGH (1u << 7)
/* DIRECT_IO, NOFLUSH, PARALLEL_DIRECT_WRITES, PASSTHROUGH */
#define PT_FOPEN_ALLOWED ((1u << 0) | (1u << 5) | (1u << 6) | (1u << 7))
#define PT_OUT_HEADER_SIZE 16
#define PT_ENTRY_OUT_SIZE 128
#define PT_OPEN_OUT_SIZE 16
#define PT_INIT_OUT_MIN 40
struct pt_backing_map {
    int32_t fd;       /* backing file */
    uint32_t flags;   /* 0 */
    uint64_t padding; /* 0 */
};
#define PT_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)
#define PT_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

static int g_devfd = -1;            /* the session's /dev/fuse fd (set before the loop) */
static int g_pt_state;              /* 0 offered, 1 registration worked, -1 off (atomic) */

int fs_passthrough_active(void)
{
    return __atomic_load_n(&g_pt_state, __ATOMIC_RELAXED) == 1;
}
static int g_init_seen;             /* the INIT reply went out (first writev; atomic) */
static __thread int pt_pending;     /* backing ID for the reply this thread sends next, 0 if none */

/* One registered backing file: the kernel requires every passthrough open
 * of an inode to name the same one, so opens of one backing inode share
 * it.  Keyed by the backing file's inode (SQLite unlinks and recreates
 * -shm files, so the name is not enough). */
struct pt_backing {
    dev_t dev;               /* backing file's device */
    ino_t ino;               /* and inode */
    int id;                  /* backing ID from FUSE_DEV_IOC_BACKING_OPEN; 0: registration
                              * failed, the inode's opens go through the daemon */
    int refs;                /* open handles using it */
    struct pt_backing *next; /* list link */
};
static pthread_mutex_t g_pt_mu = PTHREAD_MUTEX_INITIALIZER; /* guards g_pt_list */
static struct pt_backing *g_pt_list;                         /* registered backing files (g_pt_mu) */

/* Register (or share) the backing file of f and ask for passthrough in the
 * reply.  want = 0: do not ask, but record the inode as cached if it is not
 * open yet, so that its later opens stay cached too (a -wal that must go
 * through the daemon now).  On failure the open goes through the daemon as
 * before. */
static void pt_attach(struct lvfile *f, struct fuse_file_info *fi, int want)
{
    struct stat st;
    struct pt_backing *b;
    if (g_devfd < 0 || __atomic_load_n(&g_pt_state, __ATOMIC_RELAXED) < 0 || fstat(f->fd, &st) != 0)
        return;
    pthread_mutex_lock(&g_pt_mu);
    for (b = g_pt_list; b; b = b->next)
        if (b->dev == st.st_dev && b->ino == st.st_ino)
            break;
    if (!b && !want) {
        if (!(b = calloc(1, sizeof *b)))
            goto out_unlock;
        *b = (struct pt_backing){st.st_dev, st.st_ino, 0, 0, g_pt_list};
        g_pt_list = b;
    }
    if (!b) {
        /* Register a read-write file whatever this open's mode, since
         * later opens of the inode share it. */
        int fd = f->fd, rw = -1;
        if ((fcntl(f->fd, F_GETFL) & O_ACCMODE) != O_RDWR) {
            char proc[64];
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
            rw = open(proc, O_RDWR | O_CLOEXEC);
            if (rw >= 0)
                fd = rw;
        }
        struct pt_backing_map m = {fd, 0, 0};
        int id = ioctl(g_devfd, PT_IOC_BACKING_OPEN, &m);
        int e = errno;
        if (rw >= 0)
            close(rw); /* the kernel holds its own reference */
        if (id <= 0) {
            id = 0;
            if (__atomic_load_n(&g_pt_state, __ATOMIC_RELAXED) == 0) {
                __atomic_store_n(&g_pt_state, -1, __ATOMIC_RELAXED);
                LV_INFO("FUSE passthrough is not available (%s): -shm, -wal and journal files go through the daemon",
                        strerror(e));
                goto out_unlock;
            }
            /* Worked before: remember this inode as cached, so that its
             * other opens do not ask for passthrough either (the kernel
             * refuses to mix the two on one inode). */
            LV_WARN("FUSE passthrough: registering a -shm, -wal or journal file failed (%s); it goes through the daemon",
                    strerror(e));
        } else if (__atomic_exchange_n(&g_pt_state, 1, __ATOMIC_RELAXED) == 0) {
            LV_INFO("FUSE passthrough is on");
        }
        if (!(b = calloc(1, sizeof *b))) {
            uint32_t u = (uint32_t)id;
            if (id > 0)
                ioctl(g_devfd, PT_IOC_BACKING_CLOSE, &u);
            goto out_unlock;
        }
        *b = (struct pt_backing){st.st_dev, st.st_ino, id, 0, g_pt_list};
        g_pt_list = b;
    }
    b->refs++;
    f->pt = b;
    if (b->id > 0) {
        fi->keep_cache = 0;
        pt_pending = b->id;
    }
out_unlock:
    pthread_mutex_unlock(&g_pt_mu);
}

/* Drop f's share of its backing file; the last one unregisters it. */
static void pt_detach(struct lvfile *f)
{
    struct pt_backing *b = f->pt;
    if (!b)
        return;
    pthread_mutex_lock(&g_pt_mu);
    if (--b->refs == 0) {
        for (struct pt_backing **pp = &g_pt_list; *pp; pp = &(*pp)->next)
            if (*pp == b) {
                *pp = b->next;
                break;
            }
        uint32_t id = (uint32_t)b->id;
        if (b->id > 0 && ioctl(g_devfd, PT_IOC_BACKING_CLOSE, &id) != 0)
            LV_DEBUG("FUSE passthrough: closing backing ID %u: %s", id, strerror(errno));
        free(b);
    }
    pthread_mutex_unlock(&g_pt_mu);
    f->pt = NULL;
}

/* FUSE messages are in host byte order (lv_get32/lv_put32 are big-endian). */
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The session's writev: edits the INIT reply and passthrough OPEN/CREATE
 * replies (see above) in a copy, then writes. */
static ssize_t pt_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    (void)userdata;
    uint8_t copy[PT_ENTRY_OUT_SIZE + PT_OPEN_OUT_SIZE];
    struct iovec v[2];
    int pending = pt_pending;
    int first = !__atomic_load_n(&g_init_seen, __ATOMIC_ACQUIRE);
    if (!first && !pending)
        return writev(fd, iov, count);
    pt_pending = 0;
    /* iov[0] is struct fuse_out_header: u32 len, s32 error, u64 unique. */
    if (count != 2 || iov[0].iov_len != PT_OUT_HEADER_SIZE || get32((const uint8_t *)iov[0].iov_base + 4) != 0 ||
        iov[1].iov_len > sizeof copy)
        goto out_plain;
    memcpy(copy, iov[1].iov_base, iov[1].iov_len);
    if (first) {
        __atomic_store_n(&g_init_seen, 1, __ATOMIC_RELEASE);
        if (iov[1].iov_len < PT_INIT_OUT_MIN)
            goto out_plain;
        /* libfuse 3.14 never sends FUSE_HANDLE_KILLPRIV, whatever the
         * filesystem wants (see lv_init for why a private mount wants it). */
        if (g_private)
            put32(copy + 12, get32(copy + 12) | PT_INIT_KILLPRIV);
        else
            put32(copy + 12, get32(copy + 12) & ~PT_INIT_KILLPRIV);
        if (!(get32(copy + 12) & PT_INIT_EXT))
            goto out_edited;
        put32(copy + 32, get32(copy + 32) | PT_FLAGS2_PASSTHROUGH);
        put32(copy + 36, 1);
    }
    else {
        size_t at;
        if (iov[1].iov_len == PT_OPEN_OUT_SIZE)
            at = 0;
        else if (iov[1].iov_len == PT_ENTRY_OUT_SIZE + PT_OPEN_OUT_SIZE)
            at = PT_ENTRY_OUT_SIZE;
        else
            goto out_plain;
        /* The kernel refuses a passthrough open that carries any flag
         * outside FOPEN_PASSTHROUGH_MASK, notably FOPEN_KEEP_CACHE, which
         * libfuse's kernel_cache option adds after the handler. */
        put32(copy + at + 8, (get32(copy + at + 8) & PT_FOPEN_ALLOWED) | PT_FOPEN_PASSTHROUGH);
        put32(copy + at + 12, (uint32_t)pending);
    }
out_edited:
    v[0] = iov[0];
    v[1].iov_base = copy;
    v[1].iov_len = iov[1].iov_len;
    return writev(fd, v, 2);
out_plain:
    return writev(fd, iov, count);
}

/* The session's read: counts each request by opcode (the round trips). */
static ssize_t pt_read(int fd, void *buf, size_t len, void *userdata)
{
    (void)userdata;
    ssize_t n = read(fd, buf, len);
    if (n >= 8) /* struct fuse_in_header: u32 len, u32 opcode, ... */
        metrics_fuse_request(get32((const uint8_t *)buf + 4));
    return n;
}

/* Open (or create) and attach the database.  O_TRUNC on a database file
 * is routed through db_on_truncate. */
/* Is the caller a thread of this daemon (a replica's applier opening a
 * database through its own mount to take SQLite's locks)?  Its close must
 * send no FLUSH: at exit, or after the session stopped, a FLUSH to
 * ourselves would wait forever.  Only a replica opens through its mount. */
static int own_thread(void)
{
    char p[64];
    if (!dbreg_is_replica(g_reg))
        return 0;
    snprintf(p, sizeof p, "/proc/self/task/%d", (int)fuse_get_context()->pid);
    return access(p, F_OK) == 0;
}

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
    if (create && k == DBF_MAIN && !may_change_dbs() && faccessat(rootfd(), r, F_OK, 0) != 0) {
        free(f);
        return -EROFS; /* a replica's databases come from the primary */
    }
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
    /* close(2) costs a FLUSH round trip unless the reply says noflush.
     * Only a main database file's close can end a transaction (bulk
     * writes, db_on_flush), and not that of a WAL-mode database opened
     * without O_TRUNC; should such a handle truncate it and write without
     * a journal after all, its release does the capture (do_release). */
    f->own = own_thread();
    if (k != DBF_MAIN || !f->db || (!trunc && !db_close_may_commit(f->db)) || f->own) {
        fi->noflush = 1;
        f->noflush = 1;
    }
    if (f->own) {
        pthread_mutex_lock(&g_own_mu);
        f->own_next = g_own;
        if (g_own)
            g_own->own_prev = f;
        g_own = f;
        pthread_mutex_unlock(&g_own_mu);
    }
    /* The -shm file carries no data to capture: the kernel serves its
     * reads, writes and mmap straight from the backing file.  So does it
     * for a -wal, whose commits the WAL watcher captures (db_watch.c),
     * where the registry allows it (not on a replica, whose -wal must
     * refuse writes, nor with synchronous replication or a lease, whose
     * commits must wait or be fenced in the daemon). */
    if (k == DBF_SHM && f->db)
        pt_attach(f, fi, 1);
    else if (k == DBF_WAL && f->db)
        pt_attach(f, fi, dbreg_wal_passthrough(g_reg, name));
    /* A rollback journal the application creates uses passthrough too
     * where the registry allows: the daemon follows its header from the
     * backing file (db_journal_follow) and sees its commit (unlink,
     * truncate, or the fsync of a zeroed header).  An existing journal's
     * open shares the way its inode's open handles took, and goes through
     * the daemon if none is open (PERSIST and TRUNCATE reuse the file).
     * Through the daemon, journals are written in 4+page+4 byte records at
     * unaligned offsets and read back only to roll back a hot journal:
     * through the page cache the kernel would split each page write at the
     * partial page boundary (two round trips); direct I/O sends it whole. */
    if (k == DBF_JOURNAL && f->db) {
        pt_attach(f, fi, create && dbreg_journal_passthrough(g_reg));
        if (f->pt && f->pt->id > 0)
            db_journal_pt_open(f->db);
        else
            fi->direct_io = 1;
    } else if (k == DBF_JOURNAL) {
        fi->direct_io = 1;
    }
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
    if (f->own) {
        pthread_mutex_lock(&g_own_mu);
        if (f->own_prev)
            f->own_prev->own_next = f->own_next;
        else
            g_own = f->own_next;
        if (f->own_next)
            f->own_next->own_prev = f->own_prev;
        pthread_mutex_unlock(&g_own_mu);
    }
    if (f->kind == DBF_JOURNAL && f->db && f->pt && f->pt->id > 0)
        db_journal_pt_close(f->db);
    pt_detach(f);
    if (f->kind == DBF_WAL && f->db)
        db_wal_released(f->db, f->fd);
    if (f->noflush && f->wrote && f->kind == DBF_MAIN && f->db)
        (void)db_on_flush(f->db, f->kind); /* a failure is logged there and leaves the database broken */
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
    int rc = fallocate(F(fi)->fd, mode, off, len) ? -errno : 0;
    if (F(fi)->db && F(fi)->kind == DBF_WAL)
        db_wal_changed(F(fi)->db); /* the -wal's size or blocks changed: a pre-sync no longer covers it */
    return rc;
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

/* Kernel cache invalidation for the replica's applier (db_apply.c), from
 * its own thread, never from a request handler. */
static void fs_inval(void *arg, uint64_t ino, int64_t off, int64_t len)
{
    struct fuse_session *se = fuse_get_session((struct fuse *)arg);
    int rc = fuse_lowlevel_notify_inval_inode(se, (fuse_ino_t)ino, off, len);
    if (rc && rc != -ENOENT)
        LV_WARN("FUSE: invalidating node %" PRIu64 " [%" PRId64 ", +%" PRId64 "] failed: %s", ino, off, len,
                strerror(-rc));
}

static void fs_inval_entry(void *arg, uint64_t parent, const char *name)
{
    struct fuse_session *se = fuse_get_session((struct fuse *)arg);
    int rc = fuse_lowlevel_notify_inval_entry(se, (fuse_ino_t)parent, name, strlen(name));
    if (rc && rc != -ENOENT)
        LV_WARN("FUSE: invalidating the name %s failed: %s", name, strerror(-rc));
}

int fs_prepare(struct dbreg *reg, const char *mountpoint, int allow_other, struct fs **out, char *err,
               size_t errlen)
{
    const char *argv[] = {"litevault", "-o", NULL, NULL};
    char opts[256];
    /* Shared (allow_other): the kernel checks each caller's permissions
     * against the attributes (default_permissions), which makes it refresh
     * a directory's attributes after every create and unlink in it.
     * Private (the default): only processes with the daemon's own
     * credentials get in, the daemon's own access to the backing files is
     * the check, and those round trips go away (so does the attribute
     * fetch before each chown, FUSE_CAP_HANDLE_KILLPRIV in lv_init). */
    g_private = !allow_other;
    snprintf(opts, sizeof opts, "fsname=litevault,subtype=litevault%s",
             allow_other ? ",allow_other,default_permissions" : "");
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
                 "the directory is not already a mount point%s",
                 mountpoint,
                 allow_other && geteuid() != 0
                     ? " (fuse.allow-other is true: a user other than root also needs user_allow_other in "
                       "/etc/fuse.conf)"
                     : "");
        fuse_destroy(f);
        return LV_EIO;
    }
    /* Our own writev for the session, for kernel passthrough (above). */
    static const struct fuse_custom_io io = {.writev = pt_writev, .read = pt_read};
    struct fuse_session *se = fuse_get_session(f);
    g_devfd = fuse_session_fd(se);
    if (fuse_session_custom_io(se, &io, g_devfd) != 0) {
        LV_INFO("FUSE passthrough is not available (libfuse refused custom I/O)");
        g_devfd = -1;
    }
    g_fuse = f;
    struct dbreg_inval iv = {fs_inval, fs_inval_entry, f};
    dbreg_set_inval(reg, &iv);
    dbreg_set_mount(reg, mountpoint);
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
    pthread_mutex_lock(&g_own_mu);
    while (g_own) { /* released after the session stopped: never seen by do_release */
        struct lvfile *o = g_own;
        g_own = o->own_next;
        close(o->fd);
        db_put(o->db);
        free(o);
    }
    pthread_mutex_unlock(&g_own_mu);
    LV_INFO("unmounted");
}
