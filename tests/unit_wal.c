/*
 * unit_wal.c -- reading SQLite WAL files (src/log/wal.c): wal_scan and the
 * cursor that follows a live WAL (wal_read_commits), on WALs that SQLite
 * itself writes: commits read as they come, a restart over stale frames,
 * a frame read while it is half written, a damaged frame, and a
 * transaction that spills and then overwrites its own frames (SQLite
 * rewrites their checksums before the commit frame).  The oracle for the
 * frames' content is SQLite's own checkpoint: the main file with every
 * returned commit applied equals the file a full checkpoint writes.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "log/wal.h"

static char wdir[] = "/tmp/lv-unit-wal-XXXXXX"; /* this test's directory (a fresh copy per test process) */

static void wal_init(void)
{
    lvlog_threshold = -1;
    cr_assert_not_null(mkdtemp(wdir));
}

static void wal_fini(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", wdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", wdir);
}

TestSuite(wal, .init = wal_init, .fini = wal_fini);

static void exec(sqlite3 *h, const char *sql)
{
    char *err = NULL;
    cr_assert_eq(sqlite3_exec(h, sql, NULL, NULL, &err), SQLITE_OK, "%s: %s", sql, err ? err : "?");
}

static long long int1(sqlite3 *h, const char *sql)
{
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sqlite3_errmsg(h));
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* A WAL database db in wdir, never checkpointed automatically; *fd gets its
 * -wal opened read-only (after the first commit). */
static sqlite3 *open_wal_db(const char *db, int *fd)
{
    char path[512];
    sqlite3 *h = NULL;
    snprintf(path, sizeof path, "%s/%s", wdir, db);
    cr_assert_eq(sqlite3_open(path, &h), SQLITE_OK);
    exec(h, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB);");
    snprintf(path, sizeof path, "%s/%s-wal", wdir, db);
    *fd = open(path, O_RDONLY);
    cr_assert_geq(*fd, 0, "no %s", path);
    return h;
}

/* Read the commits after c; returns their number and checks they follow on. */
static size_t read_on(int fd, struct wal_cursor *c, struct wal_commit **v, int *restarted)
{
    size_t n = 7;
    uint32_t from = c->next;
    cr_assert_eq(wal_read_commits(fd, "test-wal", c, v, &n, restarted), 0);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq((*v)[i].first, i ? (*v)[i - 1].last + 1 : (*restarted ? 0 : from));
        cr_assert_geq((*v)[i].last, (*v)[i].first);
        cr_assert_gt((*v)[i].db_pages, 0);
    }
    if (n)
        cr_assert_eq(c->next, (*v)[n - 1].last + 1);
    return n;
}

/* Copy of the main file of db with frames [first, last] of each commit in v
 * applied in order and cut to its size: the database after them. */
static void apply_commits(const char *db, int walfd, uint32_t ps, const struct wal_commit *v, size_t n,
                          const char *out)
{
    char src[512], cmd[1200];
    snprintf(src, sizeof src, "%s/%s", wdir, db);
    snprintf(cmd, sizeof cmd, "cp %s %s", src, out);
    cr_assert_eq(system(cmd), 0);
    int fd = open(out, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t *fr = malloc(WAL_FRAME_HDR_SIZE + ps);
    for (size_t i = 0; i < n; i++) {
        for (uint32_t k = v[i].first; k <= v[i].last; k++) {
            cr_assert_eq(pread(walfd, fr, WAL_FRAME_HDR_SIZE + ps, (off_t)wal_frame_off(k, ps)),
                         (ssize_t)(WAL_FRAME_HDR_SIZE + ps));
            uint32_t pgno = lv_get32(fr);
            cr_assert_eq(pwrite(fd, fr + WAL_FRAME_HDR_SIZE, ps, (off_t)(pgno - 1) * ps), (ssize_t)ps);
        }
        cr_assert_eq(ftruncate(fd, (off_t)v[i].db_pages * ps), 0);
    }
    free(fr);
    close(fd);
}

static int same_files(const char *a, const char *b)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    return system(cmd) == 0;
}

Test(wal, cursor_follows_commits)
{
    int fd, restarted = 0;
    sqlite3 *h = open_wal_db("a.db", &fd);
    struct wal_cursor c;
    struct wal_commit *v = NULL;
    memset(&c, 0, sizeof c);

    cr_assert_eq(read_on(fd, &c, &v, &restarted), 1, "the CREATE TABLE");
    cr_assert_not(restarted);
    free(v);
    cr_assert_eq(read_on(fd, &c, &v, &restarted), 0, "nothing new");
    cr_assert_null(v);
    for (int i = 0; i < 3; i++)
        exec(h, "INSERT INTO t(v) VALUES(randomblob(5000));");
    struct wal_cursor c2 = c;
    cr_assert_eq(read_on(fd, &c, &v, &restarted), 3);
    cr_assert_eq(v[2].db_pages, (uint32_t)int1(h, "PRAGMA page_count"));
    /* the same read keeping the frames: exactly the commits' bytes in the file */
    struct wal_frames keep = {0};
    struct wal_commit *v2 = NULL;
    size_t n2 = 0;
    cr_assert_eq(wal_read_commits_keep(fd, "test-wal", &c2, &v2, &n2, &restarted, &keep), 0);
    cr_assert_eq(n2, 3);
    uint64_t from = wal_frame_off(v[0].first, c.h.page_size), to = wal_frame_off(v[2].last + 1, c.h.page_size);
    cr_assert_eq(keep.off, from);
    cr_assert_eq(keep.len, to - from);
    uint8_t *file = malloc(keep.len);
    cr_assert_eq(pread(fd, file, keep.len, (off_t)from), (ssize_t)keep.len);
    cr_assert_eq(memcmp(file, keep.buf, keep.len), 0, "the kept frames differ from the file");
    free(file);
    free(keep.buf);
    free(v2);
    free(v);
    /* the cursor and a scan from the start agree */
    struct wal_hdr wh;
    size_t n = 0;
    cr_assert_eq(wal_scan(fd, "test-wal", &wh, &v, &n), 0);
    cr_assert_eq(n, 4);
    cr_assert_eq(v[3].last + 1, c.next);
    cr_assert_eq(wh.salt1, c.h.salt1);
    free(v);
    sqlite3_close(h);
    close(fd);
}

/* A checkpoint, then a commit: SQLite restarts the WAL (new salts) and
 * overwrites it from frame 0; the older frames past it are stale and must
 * not be read as commits. */
Test(wal, restart_over_stale_frames)
{
    int fd, restarted = 0;
    sqlite3 *h = open_wal_db("b.db", &fd);
    struct wal_cursor c;
    struct wal_commit *v = NULL;
    memset(&c, 0, sizeof c);

    for (int i = 0; i < 10; i++)
        exec(h, "INSERT INTO t(v) VALUES(randomblob(3000));");
    cr_assert_eq(read_on(fd, &c, &v, &restarted), 11);
    free(v);
    uint32_t salt1 = c.h.salt1;
    exec(h, "PRAGMA wal_checkpoint(PASSIVE);");
    exec(h, "INSERT INTO t(v) VALUES(randomblob(10));");
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_gt((uint64_t)st.st_size, wal_frame_off(3, c.h.page_size), "the stale frames are still there");
    cr_assert_eq(read_on(fd, &c, &v, &restarted), 1);
    cr_assert(restarted, "the restart was not noticed");
    cr_assert_neq(c.h.salt1, salt1);
    cr_assert_eq(v[0].first, 0);
    free(v);
    cr_assert_eq(read_on(fd, &c, &v, &restarted), 0);
    cr_assert_not(restarted);
    sqlite3_close(h);
    close(fd);
}

/* The WAL as a live writer leaves it between two writes: a commit frame cut
 * short, then a damaged page; each is read once it is whole and right. */
Test(wal, half_written_and_damaged_frames)
{
    int fd, restarted = 0;
    sqlite3 *h = open_wal_db("c.db", &fd);
    for (int i = 0; i < 4; i++)
        exec(h, "INSERT INTO t(v) VALUES(randomblob(2000));");
    struct wal_hdr wh;
    struct wal_commit *v = NULL;
    size_t n = 0;
    cr_assert_eq(wal_scan(fd, "test-wal", &wh, &v, &n), 0);
    cr_assert_eq(n, 5);
    uint64_t end = wal_frame_off(v[4].last + 1, wh.page_size);
    uint64_t cut = wal_frame_off(v[3].last, wh.page_size) + WAL_FRAME_HDR_SIZE + 100; /* inside commit 4's frame */
    uint8_t *all = malloc(end);
    cr_assert_eq(pread(fd, all, end, 0), (ssize_t)end);
    free(v);

    char path[512];
    snprintf(path, sizeof path, "%s/copy-wal", wdir);
    int cfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(cfd, 0);
    struct wal_cursor c;
    memset(&c, 0, sizeof c);
    cr_assert_eq(pwrite(cfd, all, 20, 0), 20);
    cr_assert_eq(read_on(cfd, &c, &v, &restarted), 0, "a short header");
    cr_assert_eq(c.h.magic, 0);
    cr_assert_eq(pwrite(cfd, all, cut, 0), (ssize_t)cut);
    cr_assert_eq(read_on(cfd, &c, &v, &restarted), 3, "commits before the half-written frame");
    free(v);
    /* the rest arrives, with one byte of commit 5's last page wrong */
    uint64_t bad = end - 10;
    all[bad] ^= 0x55;
    cr_assert_eq(pwrite(cfd, all + cut, end - cut, (off_t)cut), (ssize_t)(end - cut));
    cr_assert_eq(read_on(cfd, &c, &v, &restarted), 1, "commit 4 only: commit 5's frame is damaged");
    cr_assert_eq(v[0].last + 1, c.next);
    free(v);
    all[bad] ^= 0x55;
    cr_assert_eq(pwrite(cfd, all + bad, 1, (off_t)bad), 1);
    cr_assert_eq(read_on(cfd, &c, &v, &restarted), 1, "commit 5 once its page is right");
    cr_assert_not(restarted);
    free(v);
    free(all);
    close(cfd);
    sqlite3_close(h);
    close(fd);
}

/* A transaction spills pages into the WAL, then changes them again: SQLite
 * overwrites its own uncommitted frames and rewrites the checksums of the
 * later ones before the commit frame.  Read in the middle, it holds no
 * commit; read after, the frames give the database a checkpoint writes. */
Test(wal, overwritten_frames_and_rewritten_checksums)
{
    int fd, restarted = 0;
    sqlite3 *h = open_wal_db("d.db", &fd);
    struct wal_cursor c;
    struct wal_commit *v = NULL, *all = NULL;
    size_t nall = 0;
    memset(&c, 0, sizeof c);
    exec(h, "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM r WHERE i<50) "
            "INSERT INTO t(v) SELECT randomblob(300) FROM r;");
    size_t n = read_on(fd, &c, &v, &restarted);
    cr_assert_eq(n, 2);
    all = v;
    nall = n;
    uint32_t before = c.next;

    exec(h, "PRAGMA cache_size=2; BEGIN;");
    exec(h, "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM r WHERE i<200) "
            "INSERT INTO t(v) SELECT randomblob(2000) FROM r;");
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_gt((uint64_t)st.st_size, wal_frame_off(before + 20, c.h.page_size), "the transaction did not spill");
    cr_assert_eq(read_on(fd, &c, &v, &restarted), 0, "a commit read from an open transaction");
    cr_assert_eq(c.next, before);
    exec(h, "UPDATE t SET v = randomblob(100) WHERE k <= 60; UPDATE t SET v = zeroblob(1500) WHERE k % 3 = 0;");
    exec(h, "COMMIT;");
    n = read_on(fd, &c, &v, &restarted);
    cr_assert_eq(n, 1);
    cr_assert_eq(v[0].first, before);
    all = realloc(all, (nall + 1) * sizeof *all);
    all[nall++] = v[0];
    free(v);

    char out[512], db[512];
    snprintf(out, sizeof out, "%s/applied.db", wdir);
    snprintf(db, sizeof db, "%s/d.db", wdir);
    apply_commits("d.db", fd, c.h.page_size, all, nall, out);
    exec(h, "PRAGMA wal_checkpoint(FULL);");
    cr_assert(same_files(out, db), "the frames read do not give the database SQLite checkpointed");
    free(all);
    sqlite3_close(h);
    close(fd);
}
