/*
 * unit_sys.c -- the syscall seam (src/sys.c): real I/O paths, fault
 * injection from sys_fault_set() and LV_FAULT, and the atomicity of
 * publish_buf().
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

static char syt_dir[64];

static void syt_setup(void)
{
    lvlog_threshold = -1;
    strcpy(syt_dir, "/tmp/h1-sys-XXXXXX");
    cr_assert_not_null(mkdtemp(syt_dir));
    sys_fault_clear();
    unsetenv("LV_FAULT");
}

static void syt_teardown(void)
{
    char cmd[128];

    sys_fault_clear();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", syt_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", syt_dir);
}

TestSuite(sys, .init = syt_setup, .fini = syt_teardown);

/* Path of name inside the test directory (static buffer per slot). */
static const char *syt_path(int slot, const char *name)
{
    static char bufs[4][256];

    snprintf(bufs[slot], sizeof bufs[slot], "%s/%s", syt_dir, name);
    return bufs[slot];
}

static off_t syt_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Number of directory entries other than . and .. */
static int syt_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    cr_assert_not_null(d);
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static int syt_open(const char *path)
{
    int fd = sys_open(path, O_RDWR | O_CREAT, 0644);

    cr_assert_geq(fd, 0, "open %s: %s", path, lv_strerror(fd));
    return fd;
}

/* ---- plain I/O ---- */

Test(sys, pwrite_pread_round_trip_and_short_read)
{
    const char *p = syt_path(0, "f");
    char in[100], out[100];
    int fd = syt_open(p);

    for (int i = 0; i < 100; i++)
        in[i] = (char)(i * 7);
    cr_assert_eq(sys_pwrite_all(fd, in, 100, 10, p), 0);
    cr_assert_eq(syt_size(p), 110);
    cr_assert_eq(sys_pread_all(fd, out, 100, 10, p), 0);
    cr_assert_arr_eq(in, out, 100);
    cr_assert_eq(sys_pread_all(fd, out, 20, 100, p), LV_ECORRUPT, "reading past EOF is a short read");
    cr_assert_eq(sys_fsync(fd, 0, p), 0);
    cr_assert_eq(sys_fsync(fd, 1, p), 0);
    cr_assert_eq(sys_ftruncate(fd, 5, p), 0);
    cr_assert_eq(syt_size(p), 5);
    close(fd);
    cr_assert_eq(sys_pwrite_all(fd, in, 1, 0, p), LV_EIO, "closed fd: EBADF maps to LV_EIO");
}

Test(sys, open_missing_and_rename)
{
    const char *a = syt_path(0, "a"), *b = syt_path(1, "b");

    cr_assert_eq(sys_open(syt_path(2, "nope/x"), O_RDONLY, 0), LV_ENOENT);
    cr_assert_eq(sys_open(syt_path(2, "nope"), O_RDONLY, 0), LV_ENOENT);
    close(syt_open(a));
    cr_assert_eq(sys_rename(a, b), 0);
    cr_assert_eq(syt_size(a), -1);
    cr_assert_eq(syt_size(b), 0);
    cr_assert_eq(sys_rename(a, b), LV_ENOENT);
    cr_assert_eq(sys_fsync_dir(b), 0);
    cr_assert_eq(sys_fsync_dir(syt_dir), 0);
}

Test(sys, read_file_and_mkdir_p)
{
    const char *p = syt_path(0, "r");
    void *data = NULL;
    size_t len = 0;
    int fd = syt_open(p);
    char big[10000];

    memset(big, 'q', sizeof big);
    big[5000] = '\0'; /* binary content with an embedded NUL */
    cr_assert_eq(sys_pwrite_all(fd, big, sizeof big, 0, p), 0);
    close(fd);
    cr_assert_eq(sys_read_file(p, &data, &len), 0);
    cr_assert_eq(len, sizeof big);
    cr_assert_arr_eq(data, big, sizeof big);
    cr_assert_eq(((char *)data)[len], '\0', "buffer is NUL-terminated past len");
    free(data);
    cr_assert_eq(sys_read_file(syt_path(1, "missing"), &data, &len), LV_ENOENT);

    cr_assert_eq(sys_mkdir_p(syt_path(1, "x/y/z/")), 0);
    cr_assert_eq(sys_mkdir_p(syt_path(1, "x/y/z")), 0, "existing directories are fine");
    struct stat st;
    cr_assert_eq(stat(syt_path(1, "x/y/z"), &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_lt(sys_mkdir_p(syt_path(1, "r/sub")), 0, "a file in the way fails");
    cr_assert_lt(sys_mkdir_p(p), 0, "the path itself is a file");
}

/* ---- injected faults ---- */

Test(sys, enospc_after_n_writes_on_matching_path)
{
    const char *seg = syt_path(0, "seg-1"), *other = syt_path(1, "state");
    int fs = syt_open(seg), fo = syt_open(other);
    char b[16] = "0123456789abcdef";

    sys_fault_set(SYS_OP_WRITE, ENOSPC, 3, "seg-");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(sys_pwrite_all(fs, b, 16, i * 16, seg), 0, "write %d", i);
    cr_assert_eq(sys_pwrite_all(fs, b, 16, 48, seg), LV_ENOSPC);
    cr_assert_eq(sys_pwrite_all(fs, b, 16, 48, seg), LV_ENOSPC, "stays failed");
    cr_assert_eq(syt_size(seg), 48, "failed writes wrote nothing");
    cr_assert_eq(sys_pwrite_all(fo, b, 16, 0, other), 0, "non-matching path unaffected");
    cr_assert_eq(sys_fsync(fs, 0, seg), 0, "other ops unaffected");
    sys_fault_clear();
    cr_assert_eq(sys_pwrite_all(fs, b, 16, 48, seg), 0);
    cr_assert_eq(syt_size(seg), 64);
    close(fs);
    close(fo);
}

Test(sys, short_write_leaves_half_and_fails)
{
    const char *p = syt_path(0, "torn");
    int fd = syt_open(p);
    char b[100], back[50];

    memset(b, 'A', sizeof b);
    sys_fault_set(SYS_OP_WRITE, -1, 1, NULL);
    cr_assert_eq(sys_pwrite_all(fd, b, 100, 0, p), 0);
    memset(b, 'B', sizeof b);
    cr_assert_eq(sys_pwrite_all(fd, b, 100, 100, p), LV_ENOSPC);
    cr_assert_eq(syt_size(p), 150, "half of the second write reached the file");
    cr_assert_eq(sys_pread_all(fd, back, 50, 100, p), 0);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(back[i], 'B');
    close(fd);
}

Test(sys, eio_on_fsync_ftruncate_open)
{
    const char *p = syt_path(0, "db-wal"), *q = syt_path(1, "other");
    int fd = syt_open(p), fq = syt_open(q);

    sys_fault_set(SYS_OP_FSYNC, EIO, 0, "-wal");
    cr_assert_eq(sys_fsync(fd, 0, p), LV_EIO);
    cr_assert_eq(sys_fsync(fd, 1, p), LV_EIO);
    cr_assert_eq(sys_fsync(fq, 0, q), 0);
    sys_fault_set(SYS_OP_FTRUNCATE, ENOSPC, 1, NULL);
    cr_assert_eq(sys_ftruncate(fq, 10, q), 0);
    cr_assert_eq(sys_ftruncate(fq, 20, q), LV_ENOSPC);
    cr_assert_eq(syt_size(q), 10);
    sys_fault_set(SYS_OP_OPEN, EIO, 0, "newfile");
    cr_assert_eq(sys_open(syt_path(2, "newfile"), O_RDWR | O_CREAT, 0644), LV_EIO);
    cr_assert_eq(syt_size(syt_path(2, "newfile")), -1, "injected open failure creates nothing");
    /* Re-arming the same op and match replaces the entry (and its counter). */
    sys_fault_set(SYS_OP_FSYNC, EIO, 1, "-wal");
    cr_assert_eq(sys_fsync(fd, 0, p), 0);
    cr_assert_eq(sys_fsync(fd, 0, p), LV_EIO);
    close(fd);
    close(fq);
}

Test(sys, rename_fault_matches_either_name)
{
    const char *a = syt_path(0, "plain"), *b = syt_path(1, "target.state");

    close(syt_open(a));
    sys_fault_set(SYS_OP_RENAME, EIO, 0, ".state");
    cr_assert_eq(sys_rename(a, b), LV_EIO);
    cr_assert_eq(syt_size(a), 0, "source still there");
    cr_assert_eq(syt_size(b), -1);
}

static const char *syt_old = "old content, must survive";

/* Publish the old content, arm a fault, try to publish the new, check nothing changed. */
static void syt_publish_fails_atomically(enum sys_op op, int err, int expect)
{
    const char *p = syt_path(0, "state");
    void *data;
    size_t len;

    cr_assert_eq(publish_buf(p, syt_old, strlen(syt_old)), 0);
    sys_fault_set(op, err, 0, NULL);
    cr_assert_eq(publish_buf(p, "NEW NEW NEW NEW NEW NEW NEW NEW", 31), expect);
    sys_fault_clear();
    cr_assert_eq(sys_read_file(p, &data, &len), 0);
    cr_assert_eq(len, strlen(syt_old));
    cr_assert_arr_eq(data, syt_old, len, "old content intact");
    free(data);
    cr_assert_eq(syt_size(syt_path(1, "state.tmp")), -1, "temporary file cleaned up");
    cr_assert_eq(syt_count_entries(syt_dir), 1);
}

Test(sys, publish_file_replaces_content)
{
    const char *p = syt_path(0, "pub");
    void *data;
    size_t len;

    cr_assert_eq(publish_buf(p, "first", 5), 0);
    cr_assert_eq(publish_buf(p, "second!", 7), 0);
    cr_assert_eq(sys_read_file(p, &data, &len), 0);
    cr_assert_eq(len, 7);
    cr_assert_arr_eq(data, "second!", 7);
    free(data);
    cr_assert_eq(syt_count_entries(syt_dir), 1, "no temporary file left");
}

Test(sys, publish_file_rename_failure_is_atomic)
{
    syt_publish_fails_atomically(SYS_OP_RENAME, EIO, LV_EIO);
}

Test(sys, publish_file_write_failure_is_atomic)
{
    syt_publish_fails_atomically(SYS_OP_WRITE, ENOSPC, LV_ENOSPC);
}

Test(sys, publish_file_short_write_is_atomic)
{
    syt_publish_fails_atomically(SYS_OP_WRITE, -1, LV_ENOSPC);
}

Test(sys, publish_file_fsync_failure_is_atomic)
{
    /* The first fsync is the tmp file's, so after=0 fails before the rename. */
    syt_publish_fails_atomically(SYS_OP_FSYNC, EIO, LV_EIO);
}

/* ---- LV_FAULT ---- */

Test(sys, lv_fault_env_several_faults)
{
    const char *seg = syt_path(0, "log/seg:1"), *st = syt_path(1, "state");
    char b[8] = "abcdefg";
    int fd, fs;

    cr_assert_eq(sys_mkdir_p(syt_path(2, "log")), 0);
    setenv("LV_FAULT", "write:ENOSPC:after=2:match=/log/seg:;;fsync:EIO:match=state", 1);
    cr_assert_eq(sys_fault_from_env(), 0);
    fd = syt_open(seg);
    fs = syt_open(st);
    cr_assert_eq(sys_pwrite_all(fd, b, 8, 0, seg), 0);
    cr_assert_eq(sys_pwrite_all(fd, b, 8, 8, seg), 0);
    cr_assert_eq(sys_pwrite_all(fd, b, 8, 16, seg), LV_ENOSPC);
    cr_assert_eq(sys_pwrite_all(fs, b, 8, 0, st), 0);
    cr_assert_eq(sys_fsync(fs, 0, st), LV_EIO);
    cr_assert_eq(sys_fsync(fd, 0, seg), 0);
    close(fd);
    close(fs);
}

Test(sys, lv_fault_env_times_fails_only_k_calls)
{
    const char *p = syt_path(0, "db-wal");
    int fd = syt_open(p);

    setenv("LV_FAULT", "fsync:EIO:after=2:times=1:match=-wal", 1);
    cr_assert_eq(sys_fault_from_env(), 0);
    cr_assert_eq(sys_fsync(fd, 1, p), 0);
    cr_assert_eq(sys_fsync(fd, 1, p), 0);
    cr_assert_eq(sys_fsync(fd, 1, p), LV_EIO, "the third call fails");
    cr_assert_eq(sys_fsync(fd, 1, p), 0, "times=1: the fourth succeeds again");
    cr_assert_eq(sys_fsync(fd, 1, p), 0);
    close(fd);
}

Test(sys, lv_fault_env_short_and_unset)
{
    const char *p = syt_path(0, "f");
    char b[10] = "0123456789";
    int fd = syt_open(p);

    cr_assert_eq(sys_fault_from_env(), 0, "unset LV_FAULT arms nothing");
    setenv("LV_FAULT", "", 1);
    cr_assert_eq(sys_fault_from_env(), 0);
    cr_assert_eq(sys_pwrite_all(fd, b, 10, 0, p), 0);
    setenv("LV_FAULT", "write:SHORT", 1);
    cr_assert_eq(sys_fault_from_env(), 0);
    cr_assert_eq(sys_pwrite_all(fd, b, 10, 10, p), LV_ENOSPC);
    cr_assert_eq(syt_size(p), 15);
    close(fd);
}

Test(sys, lv_fault_env_rejects_bad_specs)
{
    const char *bad[] = {
        "write",                       /* no error */
        "bogus:EIO",                   /* unknown op */
        "write:EBADF",                 /* unknown error */
        "fsync:SHORT",                 /* SHORT only for write */
        "write:EIO:after=",            /* empty count */
        "write:EIO:after=x",
        "write:EIO:after=-1",
        "write:EIO:times=-2",
        "write:EIO:times=",
        "write:EIO:every=2",           /* unknown option */
        "fsync:EIO;write:ENOSPC:oops", /* one bad fault spoils the lot */
    };
    const char *p = syt_path(0, "f");
    int fd = syt_open(p);

    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        setenv("LV_FAULT", bad[i], 1);
        cr_assert_eq(sys_fault_from_env(), LV_EINVAL, "accepted \"%s\"", bad[i]);
        /* Nothing was armed, not even the valid part. */
        cr_assert_eq(sys_fsync(fd, 0, p), 0, "after \"%s\"", bad[i]);
        cr_assert_eq(sys_pwrite_all(fd, "x", 1, 0, p), 0, "after \"%s\"", bad[i]);
    }
    close(fd);
}

/* ---- counters under concurrency ---- */

#define SYT_THREADS 4
#define SYT_WRITES 500
#define SYT_AFTER 777

struct syt_worker {
    int fd;          /* shared file */
    const char *path;
    int id;          /* writes go to distinct offsets per worker */
    int failures;    /* LV_ENOSPC results */
};

static void *syt_work(void *arg)
{
    struct syt_worker *w = arg;

    for (int i = 0; i < SYT_WRITES; i++) {
        int rc = sys_pwrite_all(w->fd, "z", 1, (off_t)(w->id * SYT_WRITES + i), w->path);
        if (rc == LV_ENOSPC)
            w->failures++;
        else if (rc != 0)
            w->failures += 100000; /* anything else is wrong */
    }
    return NULL;
}

Test(sys, fault_counter_is_thread_safe)
{
    const char *p = syt_path(0, "shared");
    struct syt_worker w[SYT_THREADS];
    pthread_t th[SYT_THREADS];
    int fd = syt_open(p), total = 0;

    sys_fault_set(SYS_OP_WRITE, ENOSPC, SYT_AFTER, NULL);
    for (int i = 0; i < SYT_THREADS; i++) {
        w[i] = (struct syt_worker){.fd = fd, .path = p, .id = i};
        cr_assert_eq(pthread_create(&th[i], NULL, syt_work, &w[i]), 0);
    }
    for (int i = 0; i < SYT_THREADS; i++) {
        pthread_join(th[i], NULL);
        total += w[i].failures;
    }
    /* Exactly SYT_AFTER calls succeed in total, however they interleave. */
    cr_assert_eq(total, SYT_THREADS * SYT_WRITES - SYT_AFTER);
    close(fd);
}
