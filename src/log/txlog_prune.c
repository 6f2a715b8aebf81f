/*
 * txlog_prune.c -- pruning of the local log, and its disk usage.
 *
 * The archiver prunes the local log once every destination has confirmed
 * records (and the checksum state file covers them).  Only whole segments
 * that are not the newest go: the writer only ever appends to the newest
 * segment, and readers (segment images, the directory reader) treat a
 * vanished older segment as "pruned" rather than as damage.  The oldest
 * segment goes first so the log stays contiguous at every moment.  When the
 * newest segment holds no record yet (a reservation rolled over to it), the
 * segment before it is kept too: the log's last record must stay, or a
 * restart would find a log that names no last TXID.
 */
#include "log/txlog.h"
#include "log/txlog_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"

/* Does segment first of dir hold no record yet (nothing but zeros, or
 * nothing at all, after its header)?  One that cannot be read counts as
 * empty: the segment before it is then kept, the safe side. */
static int seg_empty(const char *dir, uint64_t first)
{
    uint8_t hb[TXLOG_HDR_SIZE];
    char *path = txlog_seg_path(dir, first);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1, empty = 1;

    if (fd >= 0) {
        ssize_t got = pread(fd, hb, sizeof hb, TXLOG_SEG_HDR_SIZE);
        empty = got <= 0 || txlog_all_zero(hb, (size_t)got);
        close(fd);
    }
    free(path);
    return empty;
}

int txlog_prune(const char *dir, uint64_t upto_txid, uint64_t *removed_bytes)
{
    uint64_t *segs = NULL, freed = 0;
    size_t n = 0, keep;
    int rc, removed = 0;

    if (removed_bytes)
        *removed_bytes = 0;
    rc = txlog_seg_list(dir, &segs, &n);
    if (rc)
        return rc;
    /* segs[keep..] stay whatever the bound: the newest, and the one before
     * it when the newest holds no record. */
    keep = n > 0 ? n - 1 : 0;
    if (keep > 0 && seg_empty(dir, segs[n - 1]))
        keep--;
    for (size_t i = 0; i < keep; i++) {
        struct stat st;
        char *path;
        if (segs[i + 1] - 1 > upto_txid)
            break;
        path = txlog_seg_path(dir, segs[i]);
        if (!path) {
            rc = LV_ENOMEM;
            break;
        }
        if (stat(path, &st) == 0)
            freed += (uint64_t)st.st_size;
        if (unlink(path) < 0 && errno != ENOENT) {
            LV_ERROR("txlog: prune: unlink %s: %s", path, strerror(errno));
            rc = lv_from_errno(errno);
            free(path);
            break;
        }
        LV_DEBUG("txlog: pruned %s (TXIDs up to %" PRIu64 ")", path, segs[i + 1] - 1);
        free(path);
        removed++;
    }
    if (removed)
        sys_fsync_dir(dir);
    free(segs);
    if (removed_bytes)
        *removed_bytes = freed;
    return rc ? rc : removed;
}

int txlog_dir_usage(const char *dir, uint64_t *bytes, uint64_t *first_txid)
{
    uint64_t *segs = NULL, total = 0;
    size_t n = 0;
    int rc;

    *bytes = 0;
    *first_txid = 0;
    rc = txlog_seg_list(dir, &segs, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        char *path = txlog_seg_path(dir, segs[i]);
        if (!path) {
            free(segs);
            return LV_ENOMEM;
        }
        if (stat(path, &st) == 0)
            total += (uint64_t)st.st_size;
        free(path);
    }
    *bytes = total;
    *first_txid = n ? segs[0] : 0;
    free(segs);
    return 0;
}
