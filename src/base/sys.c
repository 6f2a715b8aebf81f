/*
 * sys.c -- the syscall seam, with fault injection.
 *
 * Every wrapper (1) consults the fault table, (2) makes the real call,
 * retrying EINTR, (3) on failure logs "call(path): strerror" and returns
 * lv_from_errno(errno).  ENOENT from open is logged at debug level only,
 * since callers routinely probe for files that may not exist yet.
 *
 * Fault table.  Up to SYS_MAX_FAULTS entries, each
 *     { op, err, after, match, seen }
 * A call of `op` on a path containing `match` (any path if match is NULL)
 * is a "matching call".  The first `after` matching calls succeed
 * normally; every later one fails with errno `err`.  `seen` counts the
 * matching calls.  err == SYS_FAULT_SHORT (-1, only for write) makes the
 * write transfer half of the bytes and then fail with ENOSPC, which is what
 * a filling disk does: pwrite(2) returns a short count, the retry gets
 * ENOSPC.  The caller sees LV_ENOSPC with a torn write on disk.
 * One call of sys_pwrite_all() is one call for counting purposes, however
 * many pwrite(2)s it takes.  sys_rename() matches against both names.
 *
 * Locking: fault_lock guards the whole table.  fault_armed is an atomic
 * count of armed entries, so that the common case (no faults) costs one
 * atomic load and no lock.
 *
 * LV_FAULT syntax (parsed by sys_fault_from_env):
 *     spec   := fault ( ';' fault )*
 *     fault  := op ':' err ( ':' 'after=' N )? ( ':' 'times=' K )? ( ':' 'match=' STRING )?
 *     op     := write | fsync | rename | open | ftruncate | fallocate
 *     err    := ENOSPC | EIO | SHORT        (SHORT only with write)
 * times=K fails only K calls (after the first N), then succeeds again;
 * without it every later call fails.
 * match= is last and runs to the next ';' (it may contain ':').
 * Empty faults (";;") are ignored.
 *
 * Publishing a file atomically (temp, fsync, rename, fsync dir) is built on
 * these wrappers in publish.c.
 *
 * LV_TEST_SYNCED_MARKS=STRING (tests only): sys_fsync of a path containing
 * STRING also writes the file's size then to PATH.synced (synced_mark), so
 * a test can cut a file back to what an fsync made durable.
 */
#include "base/sys.h"

#include "base/lv.h"
#include "base/lvlog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#define SYS_MAX_FAULTS 16
#define SYS_FAULT_SHORT (-1)

struct sys_fault {
    enum sys_op op; /* the wrapped call this entry applies to */
    int err;        /* errno to fail with, or SYS_FAULT_SHORT */
    long after;     /* number of matching calls that still succeed */
    long times;     /* matching calls that fail after those, 0: all of them */
    char *match;    /* substring of the path (owned), or NULL for any path */
    long seen;      /* matching calls so far */
};

static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sys_fault faults[SYS_MAX_FAULTS]; /* guarded by fault_lock */
static int nfaults;                             /* entries in faults[]; guarded by fault_lock */
static atomic_int fault_armed;                  /* copy of nfaults readable without the lock */

static const char *const op_names[SYS_OP_COUNT] = {"write", "fsync", "rename", "open", "ftruncate",
                                                            "fallocate"};

void sys_fault_set(enum sys_op op, int err, long after, const char *match)
{
    sys_fault_set_n(op, err, after, 0, match);
}

void sys_fault_set_n(enum sys_op op, int err, long after, long times, const char *match)
{
    struct sys_fault *f = NULL;
    char *m = NULL;

    if ((unsigned)op >= SYS_OP_COUNT)
        return;
    if (match) {
        m = strdup(match);
        if (!m)
            return;
    }
    pthread_mutex_lock(&fault_lock);
    /* Re-arming the same op and match replaces the earlier entry. */
    for (int i = 0; i < nfaults; i++) {
        if (faults[i].op == op && ((!match && !faults[i].match) ||
                                   (match && faults[i].match && strcmp(match, faults[i].match) == 0))) {
            f = &faults[i];
            free(f->match);
            break;
        }
    }
    if (!f && nfaults < SYS_MAX_FAULTS)
        f = &faults[nfaults++];
    if (f) {
        f->op = op;
        f->err = err;
        f->after = after < 0 ? 0 : after;
        f->times = times < 0 ? 0 : times;
        f->match = m;
        f->seen = 0;
        m = NULL;
    }
    atomic_store(&fault_armed, nfaults);
    pthread_mutex_unlock(&fault_lock);
    if (m) {
        LV_WARN("sys_fault_set: fault table full (%d entries); %s fault ignored", SYS_MAX_FAULTS, op_names[op]);
        free(m);
    }
}

void sys_fault_clear(void)
{
    pthread_mutex_lock(&fault_lock);
    for (int i = 0; i < nfaults; i++) {
        free(faults[i].match);
        faults[i].match = NULL;
    }
    nfaults = 0;
    atomic_store(&fault_armed, 0);
    pthread_mutex_unlock(&fault_lock);
}

/* Count a call of op on path (and path2, may be NULL); return the errno to inject or 0. */
static int fault_check(enum sys_op op, const char *path, const char *path2)
{
    int err = 0;

    if (atomic_load(&fault_armed) == 0)
        return 0;
    pthread_mutex_lock(&fault_lock);
    for (int i = 0; i < nfaults; i++) {
        struct sys_fault *f = &faults[i];
        if (f->op != op)
            continue;
        if (f->match && !(path && strstr(path, f->match)) && !(path2 && strstr(path2, f->match)))
            continue;
        long k = f->seen++;
        if (k >= f->after && (f->times == 0 || k < f->after + f->times) && err == 0)
            err = f->err;
    }
    pthread_mutex_unlock(&fault_lock);
    return err;
}

/* One parsed fault spec, before it is armed. */
struct fault_spec {
    enum sys_op op; /* call to fail */
    int err;        /* errno or SYS_FAULT_SHORT */
    long after;     /* successful calls before failing */
    long times;     /* calls that fail, 0: every later one */
    char match[256];/* substring to match; "" for any path */
};

/* Parse one fault spec (s, n bytes, not NUL-terminated) into *fs; 0 or LV_EINVAL. */
static int fault_parse_one(const char *s, size_t n, struct fault_spec *fs)
{
    char buf[512], *p, *colon;
    int op = -1;

    if (n >= sizeof buf) {
        LV_ERROR("LV_FAULT: fault spec too long (%zu bytes)", n);
        return LV_EINVAL;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(fs, 0, sizeof *fs);

    p = buf;
    colon = strchr(p, ':');
    if (!colon) {
        LV_ERROR("LV_FAULT: \"%s\": expected op:err (e.g. write:ENOSPC:after=10:match=/seg/)", buf);
        return LV_EINVAL;
    }
    *colon = '\0';
    for (int i = 0; i < SYS_OP_COUNT; i++)
        if (strcmp(p, op_names[i]) == 0)
            op = i;
    if (op < 0) {
        LV_ERROR("LV_FAULT: unknown op \"%s\" (use write, fsync, rename, open, ftruncate or fallocate)", p);
        return LV_EINVAL;
    }
    fs->op = (enum sys_op)op;
    p = colon + 1;
    colon = strchr(p, ':');
    if (colon)
        *colon = '\0';
    if (strcmp(p, "ENOSPC") == 0) {
        fs->err = ENOSPC;
    } else if (strcmp(p, "EIO") == 0) {
        fs->err = EIO;
    } else if (strcmp(p, "SHORT") == 0 && op == SYS_OP_WRITE) {
        fs->err = SYS_FAULT_SHORT;
    } else {
        LV_ERROR("LV_FAULT: bad error \"%s\" for %s (use ENOSPC, EIO, or SHORT for write)", p, op_names[op]);
        return LV_EINVAL;
    }
    p = colon ? colon + 1 : NULL;
    while (p) {
        if (strncmp(p, "match=", 6) == 0) {
            /* runs to the end of this fault, colons included */
            if (strlen(p + 6) >= sizeof fs->match) {
                LV_ERROR("LV_FAULT: match string too long");
                return LV_EINVAL;
            }
            strcpy(fs->match, p + 6);
            break;
        }
        colon = strchr(p, ':');
        if (colon)
            *colon = '\0';
        if (strncmp(p, "after=", 6) == 0 || strncmp(p, "times=", 6) == 0) {
            char *end;
            long v;
            errno = 0;
            v = strtol(p + 6, &end, 10);
            if (errno || end == p + 6 || *end || v < 0) {
                LV_ERROR("LV_FAULT: bad count \"%s\" (use after=N or times=K with N, K >= 0)", p);
                return LV_EINVAL;
            }
            *(p[0] == 'a' ? &fs->after : &fs->times) = v;
        } else {
            LV_ERROR("LV_FAULT: unknown option \"%s\" (use after=N, times=K or match=STRING)", p);
            return LV_EINVAL;
        }
        p = colon ? colon + 1 : NULL;
    }
    return 0;
}

int sys_fault_from_env(void)
{
    const char *spec = getenv("LV_FAULT"), *p, *end;
    struct fault_spec fs[SYS_MAX_FAULTS];
    int n = 0, rc;

    if (!spec || !*spec)
        return 0;
    /* Validate every fault before arming any. */
    for (p = spec; *p; p = *end ? end + 1 : end) {
        end = strchr(p, ';');
        if (!end)
            end = p + strlen(p);
        if (end == p)
            continue;
        if (n == SYS_MAX_FAULTS) {
            LV_ERROR("LV_FAULT: more than %d faults", SYS_MAX_FAULTS);
            return LV_EINVAL;
        }
        rc = fault_parse_one(p, (size_t)(end - p), &fs[n]);
        if (rc < 0)
            return rc;
        n++;
    }
    for (int i = 0; i < n; i++)
        sys_fault_set_n(fs[i].op, fs[i].err, fs[i].after, fs[i].times, fs[i].match[0] ? fs[i].match : NULL);
    LV_WARN("fault injection armed from LV_FAULT=\"%s\"", spec);
    return 0;
}

static void log_fail(int e, const char *call, const char *path, int injected)
{
    if (e == ENOENT && strcmp(call, "open") == 0)
        LV_DEBUG("%s(%s): %s%s", call, path ? path : "?", strerror(e), injected ? " (injected)" : "");
    else
        LV_ERROR("%s(%s): %s%s", call, path ? path : "?", strerror(e), injected ? " (injected)" : "");
}

int sys_open(const char *path, int flags, mode_t mode)
{
    int fd, e = fault_check(SYS_OP_OPEN, path, NULL);

    if (e > 0) {
        log_fail(e, "open", path, 1);
        return lv_from_errno(e);
    }
    do
        fd = open(path, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        e = errno;
        log_fail(e, "open", path, 0);
        return lv_from_errno(e);
    }
    return fd;
}

int sys_pwrite_all(int fd, const void *buf, size_t len, off_t off, const char *path)
{
    const char *p = buf;
    int e = fault_check(SYS_OP_WRITE, path, NULL);

    if (e == SYS_FAULT_SHORT) {
        size_t half = len / 2;
        ssize_t n;
        do
            n = pwrite(fd, p, half, off);
        while (n < 0 && errno == EINTR);
        LV_ERROR("pwrite(%s): short write of %zd of %zu bytes at offset %lld, then %s (injected)", path ? path : "?",
                 n, len, (long long)off, strerror(ENOSPC));
        return LV_ENOSPC;
    }
    if (e > 0) {
        log_fail(e, "pwrite", path, 1);
        return lv_from_errno(e);
    }
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            e = errno;
            log_fail(e, "pwrite", path, 0);
            return lv_from_errno(e);
        }
        if (n == 0) {
            LV_ERROR("pwrite(%s): wrote 0 of %zu bytes at offset %lld", path ? path : "?", len, (long long)off);
            return LV_EIO;
        }
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

int sys_write_all(int fd, const void *buf, size_t len, const char *path)
{
    const char *p = buf;
    int e = fault_check(SYS_OP_WRITE, path, NULL);

    if (e == SYS_FAULT_SHORT) {
        ssize_t n;
        do
            n = write(fd, p, len / 2);
        while (n < 0 && errno == EINTR);
        LV_ERROR("write(%s): short write of %zd of %zu bytes, then %s (injected)", path ? path : "?", n, len,
                 strerror(ENOSPC));
        return LV_ENOSPC;
    }
    if (e > 0) {
        log_fail(e, "write", path, 1);
        return lv_from_errno(e);
    }
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            e = n < 0 ? errno : EIO;
            log_fail(e, "write", path, 0);
            return lv_from_errno(e);
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One read(2) (off < 0) or pread(2) at off, retried on EINTR: bytes read
 * (0 at end of file), or LV_ENOMEM / LV_EIO with the call and path logged. */
static ssize_t read_some(int fd, void *buf, size_t len, off_t off, const char *path)
{
    for (;;) {
        ssize_t n = off < 0 ? read(fd, buf, len) : pread(fd, buf, len, off);
        if (n >= 0)
            return n;
        if (errno != EINTR) {
            int e = errno;
            log_fail(e, off < 0 ? "read" : "pread", path, 0);
            return lv_from_errno(e) == LV_ENOMEM ? LV_ENOMEM : LV_EIO;
        }
    }
}

int sys_pread_all(int fd, void *buf, size_t len, off_t off, const char *path)
{
    char *p = buf;

    while (len > 0) {
        ssize_t n = read_some(fd, p, len, off, path);
        if (n < 0)
            return (int)n;
        if (n == 0) {
            LV_DEBUG("pread(%s): end of file at offset %lld, %zu bytes short", path ? path : "?", (long long)off, len);
            return LV_ECORRUPT;
        }
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

/* LV_TEST_SYNCED_MARKS (a test seam, read once): after each fsync of a path
 * containing it, the file's size when the fsync began is written to
 * PATH.synced (atomically: a kill leaves the old mark or the new), so that
 * a test can drop exactly what no fsync made durable (a power loss).
 * LV_TEST_SYNC_DELAY_US (with it): such an fsync first sleeps this long, as
 * on a slow disk.  synced_size: that size, or -1 when no mark is kept. */
static long long synced_size(int fd, const char *path)
{
    static const char *match;
    static long delay_us;
    static int init;
    struct stat st;

    if (!__atomic_load_n(&init, __ATOMIC_ACQUIRE)) {
        const char *dl = getenv("LV_TEST_SYNC_DELAY_US");
        match = getenv("LV_TEST_SYNCED_MARKS");
        delay_us = dl ? strtol(dl, NULL, 10) : 0;
        __atomic_store_n(&init, 1, __ATOMIC_RELEASE);
    }
    if (!match || !*match || !path || !strstr(path, match) || fstat(fd, &st) != 0)
        return -1;
    if (delay_us > 0)
        usleep((useconds_t)delay_us);
    return (long long)st.st_size;
}

int sys_seam_active(void)
{
    static int marks = -1;

    if (atomic_load(&fault_armed) != 0)
        return 1;
    if (__atomic_load_n(&marks, __ATOMIC_RELAXED) < 0) {
        const char *m = getenv("LV_TEST_SYNCED_MARKS");
        __atomic_store_n(&marks, m && *m ? 1 : 0, __ATOMIC_RELAXED);
    }
    return __atomic_load_n(&marks, __ATOMIC_RELAXED);
}

static void synced_mark(long long size, const char *path)
{
    char mark[PATH_MAX + 8], num[32];

    static pthread_mutex_t mark_mu = PTHREAD_MUTEX_INITIALIZER;
    long long had = -1;
    FILE *f;

    if (size < 0)
        return;
    snprintf(mark, sizeof mark, "%s.synced", path);
    /* Fsyncs of one file may overlap (txlog_sync_run): the mark only grows. */
    pthread_mutex_lock(&mark_mu);
    if ((f = fopen(mark, "re"))) {
        if (fscanf(f, "%lld", &had) != 1)
            had = -1;
        fclose(f);
    }
    if (size > had) {
        char tmp[PATH_MAX + 16];
        int n = snprintf(num, sizeof num, "%lld\n", size);
        snprintf(tmp, sizeof tmp, "%s.tmp", mark);
        int mfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (mfd < 0 || write(mfd, num, (size_t)n) != n || rename(tmp, mark) != 0)
            LV_WARN("LV_TEST_SYNCED_MARKS: cannot write %s", mark);
        if (mfd >= 0)
            close(mfd);
    }
    pthread_mutex_unlock(&mark_mu);
}

int sys_fsync(int fd, int data_only, const char *path)
{
    int rc, e = fault_check(SYS_OP_FSYNC, path, NULL);
    const char *call = data_only ? "fdatasync" : "fsync";

    if (e > 0) {
        log_fail(e, call, path, 1);
        return lv_from_errno(e);
    }
    long long size = synced_size(fd, path);
    do
        rc = data_only ? fdatasync(fd) : fsync(fd);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        e = errno;
        log_fail(e, call, path, 0);
        return lv_from_errno(e);
    }
    synced_mark(size, path);
    return 0;
}

int sys_ftruncate(int fd, off_t len, const char *path)
{
    int rc, e = fault_check(SYS_OP_FTRUNCATE, path, NULL);

    if (e > 0) {
        log_fail(e, "ftruncate", path, 1);
        return lv_from_errno(e);
    }
    do
        rc = ftruncate(fd, len);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        e = errno;
        log_fail(e, "ftruncate", path, 0);
        return lv_from_errno(e);
    }
    return 0;
}

int sys_fallocate_keep(int fd, off_t off, off_t len, const char *path)
{
    int rc, e = fault_check(SYS_OP_FALLOCATE, path, NULL);

    if (e > 0) {
        log_fail(e, "fallocate", path, 1);
        return lv_from_errno(e);
    }
    do
        rc = fallocate(fd, FALLOC_FL_KEEP_SIZE, off, len);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        e = errno;
        if (e == EOPNOTSUPP || e == ENOSYS)
            return LV_EREFUSED;
        log_fail(e, "fallocate", path, 0);
        return lv_from_errno(e);
    }
    return 0;
}

/* rename(2), or renameat2(RENAME_NOREPLACE) when noreplace; an EEXIST of
 * the latter is the caller's to explain, so it is logged at debug level. */
static int rename_flags(const char *from, const char *to, int noreplace)
{
    const char *call = noreplace ? "renameat2" : "rename";
    int e = fault_check(SYS_OP_RENAME, from, to);

    if (e > 0) {
        LV_ERROR("%s(%s, %s): %s (injected)", call, from, to, strerror(e));
        return lv_from_errno(e);
    }
    if ((noreplace ? renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) : rename(from, to)) < 0) {
        e = errno;
        if (e == EEXIST)
            LV_DEBUG("%s(%s, %s): %s", call, from, to, strerror(e));
        else
            LV_ERROR("%s(%s, %s): %s", call, from, to, strerror(e));
        return lv_from_errno(e);
    }
    return 0;
}

int sys_rename(const char *from, const char *to)
{
    return rename_flags(from, to, 0);
}

int sys_rename_noreplace(const char *from, const char *to)
{
    return rename_flags(from, to, 1);
}

int sys_fsync_dir(const char *path)
{
    char dir[PATH_MAX];
    struct stat st;
    int fd, rc;

    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
            return LV_EINVAL;
    } else {
        const char *slash = strrchr(path, '/');
        if (!slash) {
            strcpy(dir, ".");
        } else if (slash == path) {
            strcpy(dir, "/");
        } else {
            if ((size_t)(slash - path) >= sizeof dir)
                return LV_EINVAL;
            memcpy(dir, path, (size_t)(slash - path));
            dir[slash - path] = '\0';
        }
    }
    fd = sys_open(dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    rc = sys_fsync(fd, 0, dir);
    close(fd);
    return rc;
}

int sys_read_file(const char *path, void **out, size_t *len)
{
    struct stat st;
    size_t cap, used = 0;
    char *buf = NULL, *nb;
    int fd, rc = 0;

    fd = sys_open(path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        log_fail(e, "fstat", path, 0);
        rc = lv_from_errno(e);
        goto out_close;
    }
    cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    buf = malloc(cap);
    if (!buf) {
        rc = LV_ENOMEM;
        goto out_close;
    }
    for (;;) {
        ssize_t n;
        if (used + 1 >= cap) { /* keep room for the terminating NUL */
            nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = LV_ENOMEM;
                goto out_free_buf;
            }
            buf = nb;
            cap *= 2;
        }
        n = read_some(fd, buf + used, cap - 1 - used, -1, path);
        if (n < 0) {
            rc = (int)n;
            goto out_free_buf;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    buf[used] = '\0';
    *out = buf;
    *len = used;
    buf = NULL;

out_free_buf:
    free(buf);
out_close:
    close(fd);
    return rc;
}

int sys_mkdir_p(const char *path)
{
    char *p, *s;
    struct stat st;
    int rc = 0;

    if (!path || !*path)
        return LV_EINVAL;
    s = strdup(path);
    if (!s)
        return LV_ENOMEM;
    /* Create each prefix that ends before a '/', then the whole path. */
    for (p = s + 1;; p++) {
        char c = *p;
        if (c != '/' && c != '\0')
            continue;
        *p = '\0';
        if (mkdir(s, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            log_fail(e, "mkdir", s, 0);
            rc = lv_from_errno(e);
            goto out_free_s;
        }
        *p = c;
        if (c == '\0')
            break;
    }
    if (stat(s, &st) < 0 || !S_ISDIR(st.st_mode)) {
        LV_ERROR("mkdir(%s): exists and is not a directory", s);
        rc = LV_EEXIST;
    }

out_free_s:
    free(s);
    return rc;
}

int sys_copy_fd(int in_fd, int out_fd, uint64_t size, void (*progress)(void *arg, uint64_t done, uint64_t size),
                void *arg)
{
    enum { CHUNK = 1u << 20 };
    uint64_t done = 0;
    int mode = 0; /* 0 copy_file_range, 1 sendfile, 2 read/write */
    off_t in_off = 0;
    uint8_t *buf = NULL;
    int rc = 0;

    while (done < size) {
        size_t want = size - done > CHUNK * 8u ? CHUNK * 8u : (size_t)(size - done);
        ssize_t n;
        if (mode == 0) {
            n = copy_file_range(in_fd, &in_off, out_fd, NULL, want, 0);
            if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
                mode = 1;
                continue;
            }
        } else if (mode == 1) {
            n = sendfile(out_fd, in_fd, &in_off, want);
            if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
                mode = 2;
                continue;
            }
        } else {
            if (!buf && !(buf = malloc(CHUNK))) {
                rc = LV_ENOMEM;
                break;
            }
            n = pread(in_fd, buf, want > CHUNK ? CHUNK : want, in_off);
            if (n > 0) {
                for (ssize_t o = 0; o < n;) {
                    ssize_t w = write(out_fd, buf + o, (size_t)(n - o));
                    if (w < 0 && errno == EINTR)
                        continue;
                    if (w < 0) {
                        rc = lv_from_errno(errno);
                        goto out;
                    }
                    o += w;
                }
                in_off += n;
            }
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = lv_from_errno(errno);
            break;
        }
        if (n == 0) {
            rc = LV_ECORRUPT; /* the source shrank */
            break;
        }
        done += (uint64_t)n;
        if (progress)
            progress(arg, done, size);
    }
out:
    free(buf);
    return rc;
}
