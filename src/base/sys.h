/*
 * sys.h -- the syscall seam.  Every write, fsync, rename, truncate and
 * open on the daemon's own files (logs, state, published files) goes
 * through these wrappers, so tests can inject ENOSPC, EIO and short
 * writes (in the manner of SQLite's os_unix.c aSyscall[]).
 *
 * Each wrapper returns 0 (or a byte count / fd) on success, or a negative
 * LV_E* code; on failure it logs the call, the path and strerror(errno).
 *
 * Fault injection: sys_fault_set() in unit tests, or the environment
 * variable LV_FAULT for the daemon, e.g.
 *   LV_FAULT="write:ENOSPC:after=10:match=/seg/"
 * fails every write(2)/pwrite(2) whose path contains "/seg/" after the
 * first 10 such calls succeed (times=K: only K calls fail).  op is one of write, fsync, rename, open,
 * ftruncate, fallocate; err is ENOSPC, EIO or SHORT (a short write of half
 * the bytes).
 */
#ifndef SYS_H
#define SYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum sys_op {
    SYS_OP_WRITE = 0,
    SYS_OP_FSYNC,
    SYS_OP_RENAME,
    SYS_OP_OPEN,
    SYS_OP_FTRUNCATE,
    SYS_OP_FALLOCATE,
    SYS_OP_COUNT
};

/* Arm a fault: calls of op whose path contains match (NULL: any) fail with
 * errno err (or a short write if err == -1) after `after` successful calls. */
void sys_fault_set(enum sys_op op, int err, long after, const char *match);

/* The same, failing only `times` calls after those (0: every later call). */
void sys_fault_set_n(enum sys_op op, int err, long after, long times, const char *match);

/* Is a test seam armed (a fault, or LV_TEST_SYNCED_MARKS), so that callers
 * must name the path of each call?  Cheap: one atomic load after the first. */
int sys_seam_active(void);

/* Disarm all faults. */
void sys_fault_clear(void);

/* Parse and arm faults from the LV_FAULT environment variable; 0 or LV_EINVAL. */
int sys_fault_from_env(void);

/* open(2); returns fd >= 0 or negative LV_E*.  path is used for logging and matching. */
int sys_open(const char *path, int flags, mode_t mode);

/* Write all len bytes at offset off (pwrite loop); 0 or negative LV_E*.
 * path names the file for logs and fault matching. */
int sys_pwrite_all(int fd, const void *buf, size_t len, off_t off, const char *path);

/* Write all len bytes at the file position (write loop: pipes too); 0 or
 * negative LV_E*.  A fault on write applies as to sys_pwrite_all. */
int sys_write_all(int fd, const void *buf, size_t len, const char *path);

/* Read exactly len bytes at off; 0, LV_ECORRUPT on short read (EOF), or LV_EIO. */
int sys_pread_all(int fd, void *buf, size_t len, off_t off, const char *path);

/* fsync(2) (fdatasync when data_only); 0 or negative LV_E*. */
int sys_fsync(int fd, int data_only, const char *path);

/* ftruncate(2); 0 or negative LV_E*. */
int sys_ftruncate(int fd, off_t len, const char *path);

/* fallocate(2) with FALLOC_FL_KEEP_SIZE: allocate the blocks of [off,
 * off+len) without changing the file size, so that later writes there
 * need no new space.  0, LV_ENOSPC, LV_EREFUSED when the file system
 * cannot preallocate (EOPNOTSUPP; not logged), or another negative LV_E*. */
int sys_fallocate_keep(int fd, off_t off, off_t len, const char *path);

/* rename(2); 0 or negative LV_E*. */
int sys_rename(const char *from, const char *to);

/* renameat2(RENAME_NOREPLACE): LV_EEXIST when to exists; 0 or negative LV_E*. */
int sys_rename_noreplace(const char *from, const char *to);

/* fsync the directory containing path (or path itself if it is a directory); 0 or negative. */
int sys_fsync_dir(const char *path);

/* Read a whole file into a malloc'ed buffer (*out, caller frees) of *len bytes; 0 or negative. */
int sys_read_file(const char *path, void **out, size_t *len);

/* mkdir -p with mode 0755; 0 or negative. */
int sys_mkdir_p(const char *path);

/* Copy size bytes of in_fd (from offset 0) to out_fd at its file position,
 * with copy_file_range (a reflink where the file system can), falling back
 * to sendfile, then read/write; progress(arg, done, size) after each step
 * (NULL: none).  0; LV_ECORRUPT (in_fd shrank); LV_ENOMEM; another
 * negative LV_E* (errno converted, not logged: the caller names the files). */
int sys_copy_fd(int in_fd, int out_fd, uint64_t size, void (*progress)(void *arg, uint64_t done, uint64_t size),
                void *arg);

#endif /* SYS_H */
