/*
 * fs.h -- the FUSE mount.  fs_prepare mounts, fs_run serves until SIGINT,
 * SIGTERM or fs_request_exit, fs_finish unmounts.  One mount per process.
 */
#ifndef FS_H
#define FS_H

#include <stddef.h>
#include <sys/types.h>

struct dbreg;
struct fs;

/* Create the session and mount it on mountpoint, serving files of reg
 * (borrowed until fs_finish); allow_other lets other users in (fuse.allow-other).  0, or LV_EIO with a message in err. */
int fs_prepare(struct dbreg *reg, const char *mountpoint, int allow_other, struct fs **out, char *err,
               size_t errlen);

/* Serve requests until asked to exit (blocks; call from the main thread
 * with SIGINT/SIGTERM/SIGHUP blocked in every other thread).  0 or -1. */
int fs_run(struct fs *fs);

/* Unmount and free the session. */
void fs_finish(struct fs *fs);

/* While pid > 0, SIGINT/SIGTERM are forwarded to that child instead of ending the mount. */
void fs_set_child(pid_t pid);

/* Ask fs_run to return (async-signal-safe; callable from any thread). */
void fs_request_exit(void);

/* 1 once the kernel took a backing file for passthrough (so -shm files,
 * mmap'ed by SQLite, are the backing files themselves and reading those
 * shows the wal-index as it is); 0 before, or when it refused. */
int fs_passthrough_active(void);

#endif /* FS_H */
