/*
 * surplus.c -- a former primary's databases set aside (see surplus.h).
 *
 * Why copies of whole files.  When a former primary follows the new one,
 * the new primary compares positions: a database whose checksum differs
 * at the same TXID, or that is ahead, gets a snapshot that replaces it.
 * What the former primary logged past the common point (with
 * replication.sync-replicas, only commits that were never acknowledged;
 * without it, also acknowledged ones that had not been streamed) would be
 * gone.  The copy keeps every such transaction in a SQLite file the user
 * can open and compare (the log line names it and the term).  Copies use
 * copy_file_range, a reflink on file systems that have them.
 *
 * Order: each copy is written to <dest>/<name>, fsynced, and its directory
 * fsynced; only when every file is copied is data.dir/last-term removed.
 * A failure (disk full) leaves the mark, logs which file failed, and the
 * daemon stops before the registry opens: nothing is replaced while the
 * copy is incomplete.
 */
#include "daemon/surplus.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/publish.h"
#include "base/sys.h"

int surplus_mark(const char *data_dir, uint64_t term)
{
    char path[PATH_MAX], buf[64];
    int n = snprintf(buf, sizeof buf, "%" PRIu64 "\n", term);

    if (snprintf(path, sizeof path, "%s/last-term", data_dir) >= (int)sizeof path)
        return LV_EINVAL;
    return publish_buf(path, buf, (size_t)n);
}

/* One walk's state (nftw has no argument: one walk at a time per process). */
static struct {
    const char *files;  /* data.dir/files */
    const char *dest;   /* the copies' directory */
    int rc;             /* first error */
    int copied;         /* files copied */
} g_walk;
static pthread_mutex_t g_walk_mu = PTHREAD_MUTEX_INITIALIZER;

/* Copy one file of data.dir/files to the same relative path under dest. */
static int copy_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    const char *rel = path + strlen(g_walk.files) + 1;
    size_t len = strlen(path);
    char to[PATH_MAX * 2], dir[PATH_MAX * 2];
    int in = -1, out = -1, rc;

    LV_UNUSED(ftw);
    if (type != FTW_F || !S_ISREG(st->st_mode) || (len > 4 && strcmp(path + len - 4, "-shm") == 0))
        return 0;
    snprintf(to, sizeof to, "%s/%s", g_walk.dest, rel);
    snprintf(dir, sizeof dir, "%s", to);
    *strrchr(dir, '/') = 0;
    if ((rc = sys_mkdir_p(dir)) != 0)
        goto fail;
    in = open(path, O_RDONLY | O_CLOEXEC);
    out = in < 0 ? -1 : open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (in < 0 || out < 0) {
        rc = lv_from_errno(errno);
        goto fail;
    }
    if ((rc = sys_copy_fd(in, out, (uint64_t)st->st_size, NULL, NULL)) != 0 || (rc = sys_fsync(out, 0, to)) != 0 ||
        (rc = sys_fsync_dir(to)) != 0)
        goto fail;
    close(in);
    close(out);
    g_walk.copied++;
    LV_WARN("surplus: kept %s as %s (%lld bytes): it may hold transactions the new primary lacks", path, to,
            (long long)st->st_size);
    return 0;
fail:
    LV_ERROR("surplus: cannot copy %s to %s: %s; free space there, or copy it yourself and remove the "
             "last-term file, then start again", path, to, lv_strerror(rc));
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    g_walk.rc = rc;
    return 1; /* stop the walk */
}

int surplus_set_aside(const char *data_dir, char *dir, size_t n)
{
    char mark[PATH_MAX], files[PATH_MAX], dest[PATH_MAX], t[64], term[32] = "?";
    void *buf = NULL;
    size_t len = 0;
    int rc;

    dir[0] = 0;
    snprintf(mark, sizeof mark, "%s/last-term", data_dir);
    if (access(mark, F_OK) != 0)
        return 0;
    if (sys_read_file(mark, &buf, &len) == 0 && len > 0)
        snprintf(term, sizeof term, "%.*s", (int)strcspn(buf, "\n"), (char *)buf);
    free(buf);
    lv_fmt_time(lv_now_us(), t, sizeof t);
    snprintf(files, sizeof files, "%s/files", data_dir);
    if (snprintf(dest, sizeof dest, "%s/surplus/%s-term-%s-%d", data_dir, t, term, (int)getpid()) >= (int)sizeof dest)
        return LV_EINVAL;
    LV_WARN("surplus: this node was the primary (term %s): its databases are kept in %s before it follows another "
            "primary", term, dest);
    pthread_mutex_lock(&g_walk_mu);
    g_walk.files = files;
    g_walk.dest = dest;
    g_walk.rc = 0;
    g_walk.copied = 0;
    rc = access(files, F_OK) == 0 && nftw(files, copy_one, 16, FTW_PHYS) < 0 ? lv_from_errno(errno) : g_walk.rc;
    pthread_mutex_unlock(&g_walk_mu);
    if (rc == 0 && unlink(mark) != 0)
        rc = lv_from_errno(errno);
    if (rc == 0) {
        sys_fsync_dir(mark);
        snprintf(dir, n, "%s", dest);
    }
    return rc;
}
