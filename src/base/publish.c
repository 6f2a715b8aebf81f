/*
 * publish.c -- atomic file publication: temp file, fsync, rename, fsync of
 * the directory (see publish.h for the life of a handle).
 *
 * Invariants (checked by assert_publish in test builds):
 *   P1. OPEN  <=> p->fd >= 0, and p->tmp names a file that this handle created
 *       or adopted and that nobody else renames.
 *   P2. DONE  <=> p->fd == -1; p->tmp is then either renamed to p->path or removed.
 *   P3. p->path is changed only by the rename in publish_commit.
 *   P4. p->off is the size of the temporary file as publish_write made it.
 * Temporary names carry the pid and a process-wide counter, so concurrent
 * publishers of one path (two CLI processes) never share a temporary file.
 */
#include "base/publish.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"

static atomic_uint publish_counter;

#define assert_publish(p) LV_ASSERT(((p)->fd >= 0) == ((p)->tmp[0] != '\0'))

int publish_begin(struct publish *p, const char *path, mode_t mode)
{
    char tmp[sizeof p->tmp];

    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&publish_counter, 1)) >=
        (int)sizeof tmp) {
        memset(p, 0, sizeof *p);
        p->fd = -1;
        return LV_EINVAL;
    }
    return publish_begin_tmp(p, path, tmp, mode);
}

int publish_begin_tmp(struct publish *p, const char *path, const char *tmp, mode_t mode)
{
    memset(p, 0, sizeof *p);
    p->fd = -1;
    if (snprintf(p->path, sizeof p->path, "%s", path) >= (int)sizeof p->path)
        return LV_EINVAL;
    if (snprintf(p->tmp, sizeof p->tmp, "%s", tmp) >= (int)sizeof p->tmp) {
        p->tmp[0] = '\0';
        return LV_EINVAL;
    }
    p->fd = sys_open(p->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (p->fd < 0) {
        int rc = p->fd;
        p->fd = -1;
        p->tmp[0] = '\0';
        return rc;
    }
    assert_publish(p);
    return 0;
}

int publish_adopt(struct publish *p, const char *tmp, const char *path)
{
    memset(p, 0, sizeof *p);
    p->fd = -1;
    if (snprintf(p->path, sizeof p->path, "%s", path) >= (int)sizeof p->path ||
        snprintf(p->tmp, sizeof p->tmp, "%s", tmp) >= (int)sizeof p->tmp) {
        p->tmp[0] = '\0';
        return LV_EINVAL;
    }
    p->fd = sys_open(p->tmp, O_RDWR | O_CLOEXEC, 0);
    if (p->fd < 0) {
        int rc = p->fd;
        p->fd = -1;
        p->tmp[0] = '\0';
        return rc;
    }
    p->off = (uint64_t)lseek(p->fd, 0, SEEK_END);
    assert_publish(p);
    return 0;
}

int publish_write(struct publish *p, const void *buf, size_t len)
{
    int rc;

    assert_publish(p);
    LV_ASSERT(p->fd >= 0);
    rc = sys_pwrite_all(p->fd, buf, len, (off_t)p->off, p->tmp);
    if (rc == 0)
        p->off += len;
    return rc;
}

/* publish_commit and publish_commit_noreplace. */
static int commit(struct publish *p, int noreplace)
{
    int rc;

    assert_publish(p);
    LV_ASSERT(p->fd >= 0);
    rc = sys_fsync(p->fd, 0, p->tmp);
    if (close(p->fd) < 0 && rc == 0) {
        int e = errno;
        LV_ERROR("close(%s): %s", p->tmp, strerror(e));
        rc = lv_from_errno(e);
    }
    p->fd = -1;
    if (rc < 0)
        goto out_unlink;
    rc = noreplace ? sys_rename_noreplace(p->tmp, p->path) : sys_rename(p->tmp, p->path);
    if (rc < 0)
        goto out_unlink;
    p->tmp[0] = '\0';
    rc = sys_fsync_dir(p->path); /* visible now; a failure leaves durability unknown */
    goto out;

out_unlink:
    if (unlink(p->tmp) < 0 && errno != ENOENT)
        LV_WARN("unlink(%s): %s", p->tmp, strerror(errno));
    p->tmp[0] = '\0';
out:
    assert_publish(p);
    return rc;
}

int publish_commit(struct publish *p)
{
    return commit(p, 0);
}

int publish_commit_noreplace(struct publish *p)
{
    return commit(p, 1);
}

void publish_abort(struct publish *p)
{
    assert_publish(p);
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    if (p->tmp[0] && unlink(p->tmp) < 0 && errno != ENOENT)
        LV_WARN("unlink(%s): %s", p->tmp, strerror(errno));
    p->tmp[0] = '\0';
}

int publish_buf(const char *path, const void *buf, size_t len)
{
    struct publish p;
    int rc;

    rc = publish_begin(&p, path, 0644);
    if (rc < 0)
        return rc;
    rc = publish_write(&p, buf, len);
    if (rc < 0) {
        publish_abort(&p);
        return rc;
    }
    return publish_commit(&p);
}
