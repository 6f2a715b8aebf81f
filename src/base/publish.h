/*
 * publish.h -- write a file so that readers see either nothing or all of it.
 *
 * The one way litevault publishes a file it made (the log's replay output,
 * restored databases, exports, import staging, state files, file:// store
 * objects): write a temporary file beside the final path, fsync it, rename
 * it over the final path, fsync the directory.  Every step goes through the
 * syscall seam (sys.h), so LV_FAULT and sys_fault_set reach all of them.
 *
 * Life of a struct publish (see publish.c for the invariants):
 *   publish_begin / publish_begin_tmp / publish_adopt
 *                                  ->  OPEN    (temp file exists, fd open)
 *   publish_write ...              ->  OPEN
 *   publish_commit[_noreplace]     ->  DONE    (renamed; or on failure, temp removed)
 *   publish_abort                  ->  DONE    (temp removed; no-op when already DONE)
 * A failed write leaves the handle OPEN: the caller still commits nothing
 * and must call publish_abort.  The final path is never touched before the
 * rename, so a failure at any step leaves it as it was.
 */
#ifndef PUBLISH_H
#define PUBLISH_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One file being published.  Lives on the caller's stack; no locking (one thread). */
struct publish {
    char path[PATH_MAX];     /* final path */
    char tmp[PATH_MAX + 48]; /* temporary path beside it: "<path>.tmp-<pid>-<n>" */
    int fd;                  /* fd of tmp while OPEN (read-write), -1 when DONE */
    uint64_t off;            /* bytes written so far by publish_write (its next offset) */
};

/* Create a new, empty temporary file for path with mode (before umask): the
 * handle is OPEN.  0 or negative LV_E* (logged, naming the file). */
int publish_begin(struct publish *p, const char *path, mode_t mode);

/* As publish_begin, with the temporary name chosen by the caller (a name
 * its readers skip, such as the file:// store's ".lvtmp." names, or a
 * hidden name on the mount).  tmp must not exist.  0 or negative LV_E*. */
int publish_begin_tmp(struct publish *p, const char *path, const char *tmp, mode_t mode);

/* Take over an existing file tmp (written by someone else: SQLite's VACUUM
 * INTO, a downloaded image) to publish it as path; opens it.  0 or negative. */
int publish_adopt(struct publish *p, const char *tmp, const char *path);

/* Append len bytes to the temporary file.  0 or negative LV_E*.
 * A streaming writer that needs a descriptor (libarchive) may instead write
 * p->fd sequentially from offset 0 with sys_write_all; it then does not mix
 * in publish_write, whose offset (p->off) counts only its own bytes. */
int publish_write(struct publish *p, const void *buf, size_t len);

/* fsync the temporary file, close it, rename it to the final path and fsync
 * the directory.  On failure the temporary file is removed (the final path
 * may already be the new file only if the directory fsync failed).  The
 * handle is DONE either way.  0 or negative LV_E*. */
int publish_commit(struct publish *p);

/* As publish_commit, but the rename never replaces an existing path
 * (renameat2 RENAME_NOREPLACE): LV_EEXIST then, the temporary file removed. */
int publish_commit_noreplace(struct publish *p);

/* Close and remove the temporary file; the handle is DONE.  Safe to call on
 * a DONE handle, so a single cleanup label can always call it. */
void publish_abort(struct publish *p);

/* Publish buf as path (mode 0644) in one call: begin, write, commit. */
int publish_buf(const char *path, const void *buf, size_t len);

#endif /* PUBLISH_H */
