/*
 * it_faults.c -- integration tests for bad input and faults.
 *
 * "Every case below gets a clear message, keeps the daemon up, and loses
 * nothing":
 *   - a file on the mount that is not a SQLite database;
 *   - an application that writes garbage over a database header;
 *   - a damaged log segment found at start-up (bit flip in a complete
 *     record, a truncated non-final segment, a record cut out of the middle
 *     of a segment): that database is "broken", the others keep working;
 *   - a busy or missing mount point; a stale one (SIGKILL) detached at the next start;
 *   - a data.dir that is a regular file or on a read-only file system;
 *   - a full disk while logging (a real one on a small tmpfs in WAL,
 *     DELETE, TRUNCATE and PERSIST modes, ENOSPC injected into the log
 *     writes, and into the log's space reservation, with LV_FAULT): in
 *     rollback modes the transaction fails (SQLITE_FULL where the disk is
 *     full) and a NEW connection does not see it, also after the writer
 *     exits without closing; the next commit gets the next TXID.  In WAL
 *     mode the commit succeeds and waits in the WAL ("stalled", checkpoints
 *     refused) until its record can be written; nothing is lost;
 *   - a bad configuration file (exit 2 with file:line:col).
 *
 * Every test uses its own lvnode; the fini hook kills a daemon left
 * running, lazily unmounts the FUSE mount and any tmpfs or bind mount the
 * test made, then removes the node directory.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "lib/lvtest.h"

/* ------------------------------------------------------------------ */
/* Per-test state and cleanup                                          */
/* ------------------------------------------------------------------ */

static struct lvnode *fN, *fN2; /* nodes of the current test (registry-owned) */

TestSuite(faults, .fini = lvt_fini, .timeout = 120);

/* ------------------------------------------------------------------ */
/* Local helpers                                                       */
/* ------------------------------------------------------------------ */

/* Whole file as a NUL-terminated malloc'ed string (asserts it can be read). */
static char *slurp(const char *path)
{
    char *s = file_read(path, NULL);
    cr_assert_not_null(s, "cannot read %s", path);
    return s;
}

/* Write a config file (see lvconf_write): data_extra under data:, top_extra sections. */
#define write_cfg_at(path, fuse_dir, data_dir, http, data_extra, top_extra) \
    lvconf_write(path, fuse_dir, data_dir, http, data_extra, top_extra)

/* Rewrite n's config with data_extra lines under data:. */
#define write_cfg(n, data_extra) lvnode_reconfig(n, data_extra, NULL)

/* `litevault status --json` of a running node, parsed; asserts success. */
static json_t *get_status(const struct lvnode *n)
{
    char *out = NULL;
    int rc = run_cmd(&out, "'%s' status -c '%s' --json 2>&1", getenv("LITEVAULT"), n->config);
    cr_assert_eq(rc, 0, "status failed (%d): %s", rc, out ? out : "");
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    cr_assert_not_null(o, "status output is not JSON (%s): %s", je.text, out);
    free(out);
    return o;
}

/* Entry of database name in a status object (borrowed), or NULL. */
static json_t *status_entry(json_t *st, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(st, "databases"), i, e)
    {
        const char *nm = json_string_value(json_object_get(e, "name"));
        if (nm && strcmp(nm, name) == 0)
            return e;
    }
    return NULL;
}

/* The daemon process exists and answers `status`. */
static int daemon_up(struct lvnode *n)
{
    if (!lvnode_alive(n))
        return 0;
    return run_cmd(NULL, "'%s' status -c '%s' --json >/dev/null 2>&1", getenv("LITEVAULT"), n->config) == 0;
}

static uint64_t hex64(const char *s)
{
    cr_assert_not_null(s);
    return strtoull(s, NULL, 16);
}

/* Execute sql on path (open errors included); the sqlite3 result code. */
static int raw_sql(const char *path, const char *sql)
{
    sqlite3 *h = NULL;
    int rc = sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h, sql, NULL, NULL, NULL);
    sqlite3_close(h);
    return rc;
}

/* Run `litevault mount` directly (expected to fail fast); output in *out. */
static int mount_expect_fail(const char *config, char **out)
{
    return run_cmd(out, "timeout -s KILL 15 '%s' mount -c '%s' 2>&1", getenv("LITEVAULT"), config);
}

#define is_mounted path_is_mounted

/*
 * The log agrees with the database: the database (checkpointed first when
 * in WAL mode) passes integrity_check, `log replay` rebuilds it byte for
 * byte, and status reports its checksum.  outdir must not be on a full disk.
 */
static void assert_log_matches(const struct lvnode *n, const char *db, int wal, const char *outdir)
{
    char *p = lvnode_path(n, db);
    char out[600];
    cr_assert_eq(sql_exec(p, wal ? "PRAGMA wal_checkpoint(TRUNCATE);" : "SELECT 1;", 0), SQLITE_OK);
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_open_v2(p, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok", "integrity_check of %s", db);
    sqlite3_finalize(st);
    sqlite3_close(h);
    snprintf(out, sizeof out, "%s/replay-%d.db", outdir, (int)getpid());
    unlink(out);
    int rc = lvnode_replay(n, db, 0, out);
    cr_assert_eq(rc, 0, "log replay of %s failed (%d)", db, rc);
    cr_assert(files_equal(out, p), "log replay of %s differs from the database file", db);
    json_t *stj = get_status(n);
    json_t *e = status_entry(stj, db);
    cr_assert_not_null(e, "%s missing from status", db);
    cr_assert_str_eq(json_string_value(json_object_get(e, "status")), "ok");
    cr_assert_eq(hex64(json_string_value(json_object_get(e, "checksum"))), file_db_checksum(p),
                 "status checksum of %s differs from the file's", db);
    json_decref(stj);
    unlink(out);
    lvnode_check_db(n, db);
    free(p);
}

/* ------------------------------------------------------------------ */
/* A file that is not SQLite                                           */
/* ------------------------------------------------------------------ */

Test(faults, not_sqlite_file)
{
    fN = lvnode_started(NULL);
    const char *names[] = {"notes.txt", "fake.db"};
    char text[4096];
    size_t tl = 0;
    for (int i = 0; i < 60; i++)
        tl += (size_t)snprintf(text + tl, sizeof text - tl, "line %d: this is not a database\n", i);
    for (size_t k = 0; k < 2; k++) {
        char *p = lvnode_path(fN, names[k]);
        FILE *f = fopen(p, "w");
        cr_assert_not_null(f, "create %s: %s", p, strerror(errno));
        cr_assert_eq(fwrite(text, 1, tl, f), tl);
        cr_assert_eq(fclose(f), 0);
        /* append more and overwrite in the middle, as an editor might */
        int fd = open(p, O_RDWR);
        cr_assert_geq(fd, 0);
        cr_assert_eq(pwrite(fd, "LINE", 4, 10), 4);
        memcpy(text + 10, "LINE", 4);
        close(fd);
        char *back = slurp(p);
        cr_assert_eq(strlen(back), tl);
        cr_assert(memcmp(back, text, tl) == 0, "%s read back differs", names[k]);
        free(back);
        free(p);
    }
    /* a real database next to them is captured */
    char *real = lvnode_path(fN, "real.db");
    sql_exec(real, "CREATE TABLE t(x); INSERT INTO t VALUES(1);", 0);
    cr_assert(daemon_up(fN), "daemon died");
    json_t *st = get_status(fN);
    cr_assert_null(status_entry(st, "notes.txt"), "a plain text file is listed in status");
    cr_assert_null(status_entry(st, "fake.db"), "a plain file named .db is listed in status");
    cr_assert_not_null(status_entry(st, "real.db"), "the real database is not listed");
    json_decref(st);
    cr_assert(lvnode_log_contains(fN, "fake.db is not a SQLite database"), "no log line says fake.db is not SQLite");
    cr_assert(lvnode_log_contains(fN, "notes.txt is not a SQLite database"), "no log line says notes.txt is not SQLite");
    /* the plain files survive a restart unchanged */
    lvnode_stop(fN);
    lvnode_start(fN);
    char *p = lvnode_path(fN, "fake.db");
    char *back = slurp(p);
    cr_assert_eq(strlen(back), tl);
    cr_assert(memcmp(back, text, tl) == 0);
    free(back);
    free(p);
    cr_assert_eq(sql_int(real, "SELECT count(*) FROM t"), 1);
    free(real);
}

/* ------------------------------------------------------------------ */
/* An application garbles a database header                            */
/* ------------------------------------------------------------------ */

Test(faults, garbled_header_refused)
{
    fN = lvnode_started(NULL);
    char *p = lvnode_path(fN, "g.db");
    sql_exec(p, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);", 0);
    sql_exec(p, "BEGIN; WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<500) "
                "INSERT INTO t(v) SELECT printf('row %d', i) FROM c; COMMIT;", 0);
    uint64_t txid0 = lvnode_last_txid(fN, "g.db");
    cr_assert_geq(txid0, 2);
    uint64_t ck0 = file_db_checksum(p);

    unsigned char junk[100];
    for (int i = 0; i < 100; i++)
        junk[i] = (unsigned char)(0xA5 ^ i * 7);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0, "open %s: %s", p, strerror(errno));
    errno = 0;
    ssize_t w = pwrite(fd, junk, sizeof junk, 0);
    cr_assert_eq(w, -1, "a garbage header write succeeded (%zd bytes)", w);
    cr_assert_eq(errno, EIO, "expected EIO, got %s", strerror(errno));
    /* a partial overwrite of the magic string is refused too */
    errno = 0;
    w = pwrite(fd, "XQLite", 6, 0);
    cr_assert_eq(w, -1, "a write over the magic succeeded");
    cr_assert_eq(errno, EIO);
    /* the header reads back intact (no stale page cache) */
    char hdr[16];
    cr_assert_eq(pread(fd, hdr, 16, 0), 16);
    cr_assert(memcmp(hdr, "SQLite format 3", 16) == 0, "header changed after a refused write");
    close(fd);

    cr_assert(daemon_up(fN));
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 500);
    cr_assert_eq(lvnode_last_txid(fN, "g.db"), txid0, "a refused write produced a record");
    cr_assert_eq(file_db_checksum(p), ck0);
    cr_assert(lvnode_log_contains(fN, "g.db: refusing a write at offset 0 that would overwrite the SQLite header"),
              "no clear log line about the refused header write");
    /* the database keeps working */
    sql_exec(p, "INSERT INTO t(v) VALUES('after');", 0);
    cr_assert_eq(lvnode_last_txid(fN, "g.db"), txid0 + 1);
    assert_log_matches(fN, "g.db", 0, fN->dir);
    free(p);
}

/* ------------------------------------------------------------------ */
/* Damaged log segments at start-up                                    */
/* ------------------------------------------------------------------ */

struct seginfo {
    char path[700];     /* segment file */
    char base[64];      /* its file name */
    off_t size;         /* bytes */
    int nrec;           /* complete records */
    off_t off[512];     /* record offsets */
    off_t len[512];     /* record lengths (header + payload + trailer) */
};

static uint64_t be64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static int seg_cmp(const void *a, const void *b)
{
    return strcmp(((const struct seginfo *)a)->base, ((const struct seginfo *)b)->base);
}

/* Parse the segments of db's log (record framing only); returns the count. */
static int read_segments(const struct lvnode *n, const char *db, struct seginfo *segs, int max)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/meta/%s/log", n->data, db);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "opendir %s: %s", dir, strerror(errno));
    struct dirent *e;
    int ns = 0;
    while ((e = readdir(d)) && ns < max) {
        size_t l = strlen(e->d_name);
        if (l < 7 || strcmp(e->d_name + l - 6, ".lvseg") != 0)
            continue;
        struct seginfo *s = &segs[ns++];
        memset(s, 0, sizeof *s);
        snprintf(s->base, sizeof s->base, "%s", e->d_name);
        snprintf(s->path, sizeof s->path, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(segs, (size_t)ns, sizeof *segs, seg_cmp);
    for (int i = 0; i < ns; i++) {
        struct seginfo *s = &segs[i];
        int fd = open(s->path, O_RDONLY);
        cr_assert_geq(fd, 0);
        struct stat st;
        fstat(fd, &st);
        s->size = st.st_size;
        off_t off = 64;
        unsigned char h[112];
        while (off + 112 <= s->size && s->nrec < 512) {
            cr_assert_eq(pread(fd, h, 112, off), 112);
            cr_assert(h[0] == 'L' && h[1] == 'V' && h[2] == 'R' && h[3] == 'C', "bad record magic in %s at %lld",
                      s->base, (long long)off);
            off_t rl = (off_t)(112 + be64(h + 72) + 8);
            if (off + rl > s->size)
                break;
            s->off[s->nrec] = off;
            s->len[s->nrec] = rl;
            s->nrec++;
            off += rl;
        }
        close(fd);
    }
    return ns;
}

enum damage { DMG_BITFLIP, DMG_BITFLIP_LAST_PAYLOAD, DMG_BITFLIP_LAST_HEADER, DMG_TRUNCATE_NONFINAL, DMG_CUT_MIDDLE };

/* Add transactions to db until its log has >= 3 segments and the last one
 * holds >= 3 complete records. */
static void grow_log(const struct lvnode *n, const char *db)
{
    static struct seginfo segs[64];
    char *p = lvnode_path(n, db);
    sql_exec(p, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    for (int i = 0; i < 400; i++) {
        sql_exec(p, "INSERT INTO t(v) VALUES(randomblob(5000));", 0);
        if (i >= 20 && i % 4 == 0) {
            int ns = read_segments(n, db, segs, 64);
            if (ns >= 3 && segs[ns - 1].nrec >= 3)
                break;
        }
    }
    free(p);
}

static void damage_case(enum damage how)
{
    static struct seginfo segs[64];
    fN = lvnode_new(NULL);
    write_cfg(fN, "  segment-size: 32KiB\n");
    lvnode_start(fN);
    grow_log(fN, "a.db");
    char *pa = lvnode_path(fN, "a.db"), *pb = lvnode_path(fN, "b.db");
    sql_exec(pb, "CREATE TABLE u(x); INSERT INTO u VALUES(1),(2),(3);", 0);
    long long rows_a = sql_int(pa, "SELECT count(*) FROM t");
    uint64_t txid_b = lvnode_last_txid(fN, "b.db");
    lvnode_stop(fN);

    int ns = read_segments(fN, "a.db", segs, 64);
    cr_assert_geq(ns, 3, "expected several segments, got %d", ns);
    struct seginfo *victim = NULL;
    int fd;
    switch (how) {
    case DMG_BITFLIP: {
        /* a complete record in the middle of a middle segment */
        victim = &segs[ns / 2];
        cr_assert_geq(victim->nrec, 2);
        int r = victim->nrec > 2 ? 1 : 0;
        off_t at = victim->off[r] + 112 + (victim->len[r] - 120) / 2;
        file_xor_byte(victim->path, at, 0x10);
        break;
    }
    case DMG_BITFLIP_LAST_PAYLOAD:
    case DMG_BITFLIP_LAST_HEADER: {
        /* the last segment, in a complete record that other records follow
         * (so it is not a torn tail): its payload, or its header's TXID */
        victim = &segs[ns - 1];
        cr_assert_geq(victim->nrec, 3);
        int r = 1;
        off_t at = how == DMG_BITFLIP_LAST_HEADER ? victim->off[r] + 31
                                                   : victim->off[r] + 112 + (victim->len[r] - 120) / 2;
        file_xor_byte(victim->path, at, 0x01);
        break;
    }
    case DMG_TRUNCATE_NONFINAL: {
        victim = &segs[ns / 2 < ns - 1 ? ns / 2 : 0];
        int r = victim->nrec - 1;
        off_t to = victim->off[r] + victim->len[r] / 2;
        cr_assert_eq(truncate(victim->path, to), 0);
        break;
    }
    case DMG_CUT_MIDDLE: {
        /* cut bytes out of the first record of the last segment: the records
         * after it follow directly, so the file does not end inside it */
        victim = &segs[ns - 1];
        cr_assert_geq(victim->nrec, 3);
        off_t r0 = victim->off[0], l0 = victim->len[0];
        off_t after = victim->size - (r0 + l0);
        off_t cut = (l0 - 120) / 4;
        if (cut > after / 2)
            cut = after / 2;
        cr_assert_gt(cut, 0);
        off_t from = r0 + 112 + (l0 - 120) / 4;
        char *all = malloc((size_t)victim->size);
        fd = open(victim->path, O_RDWR);
        cr_assert_geq(fd, 0);
        cr_assert_eq(pread(fd, all, (size_t)victim->size, 0), victim->size);
        memmove(all + from, all + from + cut, (size_t)(victim->size - from - cut));
        cr_assert_eq(pwrite(fd, all, (size_t)(victim->size - cut), 0), victim->size - cut);
        cr_assert_eq(ftruncate(fd, victim->size - cut), 0);
        close(fd);
        free(all);
        break;
    }
    }

    lvnode_start(fN);
    /* a.db refuses to open */
    errno = 0;
    fd = open(pa, O_RDONLY);
    int e = errno;
    if (fd >= 0)
        close(fd);
    cr_assert_lt(fd, 0, "a.db with a damaged log opened");
    cr_assert_eq(e, EIO, "open of a.db failed with %s, expected EIO", strerror(e));
    cr_assert_neq(raw_sql(pa, "SELECT count(*) FROM t;"), SQLITE_OK, "sqlite3 read a.db");
    /* status names the problem and the segment */
    json_t *st = get_status(fN);
    json_t *ea = status_entry(st, "a.db");
    cr_assert_not_null(ea, "a.db missing from status");
    cr_assert_str_eq(json_string_value(json_object_get(ea, "status")), "broken");
    const char *err = json_string_value(json_object_get(ea, "error"));
    cr_assert_not_null(err, "broken a.db has no error");
    cr_assert(strstr(err, victim->base) != NULL, "error does not name segment %s: %s", victim->base, err);
    json_t *eb = status_entry(st, "b.db");
    cr_assert_not_null(eb);
    cr_assert_str_eq(json_string_value(json_object_get(eb, "status")), "ok");
    json_decref(st);
    cr_assert(lvnode_log_contains(fN, victim->base), "the daemon log does not name %s", victim->base);
    /* replay refuses the damaged log */
    char out[600];
    snprintf(out, sizeof out, "%s/replay-a.db", fN->dir);
    cr_assert_neq(lvnode_replay(fN, "a.db", 0, out), 0, "replay of a damaged log succeeded");
    /* b.db keeps working */
    cr_assert_eq(sql_int(pb, "SELECT count(*) FROM u"), 3);
    sql_exec(pb, "INSERT INTO u VALUES(4);", 0);
    cr_assert_eq(lvnode_last_txid(fN, "b.db"), txid_b + 1);
    assert_log_matches(fN, "b.db", 0, fN->dir);
    cr_assert(daemon_up(fN));
    /* the data itself is untouched: with the log moved aside a.db is whole */
    lvnode_stop(fN);
    cr_assert_eq(run_cmd(NULL, "mv '%s/meta/a.db' '%s/a.db-meta-damaged'", fN->data, fN->dir), 0);
    lvnode_start(fN);
    cr_assert_eq(sql_int(pa, "SELECT count(*) FROM t"), rows_a);
    free(pa);
    free(pb);
}

Test(faults, segment_bitflip_complete_record)
{
    damage_case(DMG_BITFLIP);
}

Test(faults, segment_bitflip_last_segment_payload)
{
    damage_case(DMG_BITFLIP_LAST_PAYLOAD);
}

Test(faults, segment_bitflip_last_segment_header)
{
    damage_case(DMG_BITFLIP_LAST_HEADER);
}

Test(faults, segment_truncated_nonfinal)
{
    damage_case(DMG_TRUNCATE_NONFINAL);
}

Test(faults, segment_record_cut_in_middle)
{
    damage_case(DMG_CUT_MIDDLE);
}

/* ------------------------------------------------------------------ */
/* Mount point: busy, missing, stale                                   */
/* ------------------------------------------------------------------ */

Test(faults, mountpoint_busy)
{
    fN = lvnode_new(NULL);
    fN2 = lvnode_new(NULL);
    lvnode_start(fN);
    char *p = lvnode_path(fN, "x.db");
    sql_exec(p, "CREATE TABLE t(x); INSERT INTO t VALUES(42);", 0);
    /* a second daemon (own data dir and port) on the same fuse.dir */
    write_cfg_at(fN2->config, fN->mnt, fN2->data, fN2->http, NULL, NULL);
    char *out = NULL;
    int rc = mount_expect_fail(fN2->config, &out);
    cr_assert_eq(rc, 1, "second mount exited %d: %s", rc, out);
    cr_assert(strstr(out, "busy") != NULL, "no 'busy' in: %s", out);
    cr_assert(strstr(out, fN->mnt) != NULL, "message does not name the mount point: %s", out);
    free(out);
    cr_assert(daemon_up(fN));
    cr_assert_eq(sql_int(p, "SELECT x FROM t"), 42);
    sql_exec(p, "INSERT INTO t VALUES(43);", 0);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 2);
    free(p);
}

Test(faults, mountpoint_missing_is_created)
{
    fN = lvnode_new(NULL);
    rmdir(fN->mnt);
    struct stat st;
    cr_assert_neq(stat(fN->mnt, &st), 0, "could not remove the mount point");
    lvnode_start(fN);
    cr_assert_eq(stat(fN->mnt, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    char *p = lvnode_path(fN, "m.db");
    sql_exec(p, "CREATE TABLE t(x); INSERT INTO t VALUES(1);", 0);
    cr_assert_eq(lvnode_last_txid(fN, "m.db"), 2);
    cr_assert(lvnode_log_contains(fN, "created mount point"));
    free(p);
}

Test(faults, mountpoint_stale)
{
    fN = lvnode_started(NULL);
    char *p = lvnode_path(fN, "s.db");
    sql_exec(p, "CREATE TABLE t(x); INSERT INTO t VALUES(7),(8);", 0);
    /* kill the daemon without unmounting: the mount goes stale */
    kill(fN->pid, SIGKILL);
    waitpid(fN->pid, NULL, 0);
    fN->pid = 0;
    /* (stat() of the root may still answer from the kernel's attribute
     * cache; listing the directory needs the dead daemon) */
    errno = 0;
    DIR *dh = opendir(fN->mnt);
    int e = errno;
    if (dh)
        closedir(dh);
    cr_assert_null(dh, "the mount point still works after SIGKILL");
    cr_assert_eq(e, ENOTCONN, "expected a stale mount, opendir says %s", strerror(e));
    /* the next start with the same config detaches the dead litevault
     * mount itself (with a log line) and nothing is lost */
    lvnode_start(fN);
    cr_assert(lvnode_log_contains(fN, "stale litevault mount"), "no log line about the detached mount");
    cr_assert_eq(sql_int(p, "SELECT sum(x) FROM t"), 15);
    assert_log_matches(fN, "s.db", 0, fN->dir);
    free(p);
}

/* ------------------------------------------------------------------ */
/* data.dir unusable                                                   */
/* ------------------------------------------------------------------ */

Test(faults, datadir_is_a_file)
{
    fN = lvnode_new(NULL);
    char file[400];
    snprintf(file, sizeof file, "%s/plainfile", fN->dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs("not a directory\n", f);
    fclose(f);
    write_cfg_at(fN->config, fN->mnt, file, fN->http, NULL, NULL);
    char *out = NULL;
    int rc = mount_expect_fail(fN->config, &out);
    cr_assert_eq(rc, 1, "mount exited %d: %s", rc, out);
    cr_assert(strstr(out, "data.dir") != NULL, "message does not name data.dir: %s", out);
    cr_assert(strstr(out, file) != NULL, "message does not name the path: %s", out);
    free(out);
    cr_assert(!is_mounted(fN->mnt), "a failed start left a mount behind");
    char *s = slurp(file);
    cr_assert_str_eq(s, "not a directory\n");
    free(s);
}

Test(faults, datadir_read_only)
{
    fN = lvnode_new(NULL);
    cr_assert_eq(run_cmd(NULL, "mkdir -p '%s'", fN->data), 0);
    cr_assert_eq(run_cmd(NULL, "mount --bind '%s' '%s'", fN->data, fN->data), 0);
    lvt_defer_umount(fN->data);
    cr_assert_eq(run_cmd(NULL, "mount -o remount,bind,ro '%s'", fN->data), 0);
    write_cfg(fN, NULL);
    char *out = NULL;
    int rc = mount_expect_fail(fN->config, &out);
    cr_assert_eq(rc, 1, "mount exited %d: %s", rc, out);
    cr_assert(strstr(out, "data.dir") != NULL, "message does not name data.dir: %s", out);
    cr_assert(strstr(out, "writable") != NULL || strstr(out, "Read-only") != NULL,
              "message does not say why: %s", out);
    free(out);
    cr_assert(!is_mounted(fN->mnt), "a failed start left a mount behind");
}

/* ------------------------------------------------------------------ */
/* Full disk                                                           */
/* ------------------------------------------------------------------ */

/* Insert 20 KB random rows one transaction each until a commit fails. */
#define write_until_error(path, wal, max, err) sql_insert_until_error(path, wal, 20000, max, err)

enum jm { JMF_DELETE, JMF_TRUNCATE, JMF_PERSIST, JMF_WAL };
static const char *const jm_names[] = {"DELETE", "TRUNCATE", "PERSIST", "WAL"};

/* One transaction of nrows rows of blob random bytes into t on h: SQLITE_OK,
 * or the extended result code of the statement that failed; the
 * transaction is then rolled back unless crash (the caller exits at once). */
static int big_txn(sqlite3 *h, int nrows, int blob, int crash)
{
    char sql[96];
    int rc = sqlite3_exec(h, "BEGIN", NULL, NULL, NULL);
    snprintf(sql, sizeof sql, "INSERT INTO t(v) VALUES(randomblob(%d))", blob);
    for (int i = 0; i < nrows && rc == SQLITE_OK; i++)
        rc = sqlite3_exec(h, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        return SQLITE_OK;
    rc = sqlite3_extended_errcode(h);
    if (!crash)
        sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Open path with journal mode jm (busy timeout 10 s); asserts. */
static sqlite3 *open_jm(const char *path, enum jm jm)
{
    sqlite3 *h = sql_open(path);
    sqlh_exec(h, "PRAGMA journal_mode=%s", jm_names[jm]);
    return h;
}

/*
 * An application that crashes after a failed commit: a child process opens
 * path (journal mode jm), runs big_txn and _exits right after the error
 * without closing its connection or rolling back.  Returns the result code
 * the child saw (SQLITE_OK if it committed), or -1 if it could not run.
 */
static int big_txn_and_crash(const char *path, enum jm jm, int nrows, int blob)
{
    int pfd[2], rc = -1;
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        sqlite3 *h = NULL;
        char sql[64];
        close(pfd[0]);
        if (sqlite3_open(path, &h) == SQLITE_OK) {
            sqlite3_busy_timeout(h, 10000);
            snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s", jm_names[jm]);
            if (sqlite3_exec(h, sql, NULL, NULL, NULL) == SQLITE_OK)
                rc = big_txn(h, nrows, blob, 1);
        }
        if (write(pfd[1], &rc, sizeof rc) != (ssize_t)sizeof rc)
            _exit(3);
        _exit(0); /* no sqlite3_close: the connection dies with the process */
    }
    close(pfd[1]);
    if (read(pfd[0], &rc, sizeof rc) != (ssize_t)sizeof rc)
        rc = -1;
    close(pfd[0]);
    int ws = 0;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "the writer process did not exit cleanly (status %d)", ws);
    return rc;
}

/*
 * A real full disk, in journal mode jm.  where == 0: all of data.dir is on
 * a 24 MiB tmpfs, so SQLite's own writes and the log compete for space;
 * where == 1: only data.dir/meta (the logs) is on an 8 MiB tmpfs, so the
 * log is what runs out.  A filler file leaves room for one transaction of
 * 190 rows of 16 KB (about 3 MiB of pages) but not for both its pages and
 * its record (where == 0), or not for its record (where == 1).  Deleting
 * the filler frees the space again.
 *
 * The commit must fail with SQLITE_FULL, and leave nothing behind that a
 * NEW connection could see: neither while the writer keeps its connection
 * open, nor after a writer that exits right after the error without
 * closing (the next connection recovers the WAL or rolls back the hot
 * journal).  Once space is back, the next commit is the next TXID and the
 * refused rows are in neither the database nor the log.
 */
/* The node of a full-disk case: where == 0, all of data.dir on a 24 MiB
 * tmpfs; 1, only data.dir/meta (the logs) on an 8 MiB one (its directory
 * into fsdir, n bytes).  Started; the path of full.db on the mount
 * (malloc'ed). */
static char *full_disk_node(int where, char *fsdir, size_t n)
{
    fN = lvnode_new(NULL);
    if (where == 0)
        snprintf(fsdir, n, "%s", fN->data);
    else
        snprintf(fsdir, n, "%s/meta", fN->data);
    cr_assert_eq(run_cmd(NULL, "mkdir -p '%s'", fsdir), 0);
    cr_assert_eq(run_cmd(NULL, "mount -t tmpfs -o size=%s tmpfs '%s'", where ? "8m" : "24m", fsdir), 0);
    lvt_defer_umount(fsdir);
    lvnode_start(fN);
    return lvnode_path(fN, "full.db");
}

/* Leave little space free on the tmpfs at fsdir (where: as full_disk_node)
 * with a filler file; its path into filler (n bytes). */
static void fill_tmpfs(const char *fsdir, int where, char *filler, size_t n)
{
    snprintf(filler, n, "%s/.filler", fsdir);
    struct statvfs sv;
    cr_assert_eq(statvfs(fsdir, &sv), 0);
    long long freeb = (long long)sv.f_bavail * (long long)sv.f_frsize;
    long long fill = freeb - (where ? 1536 : 4608) * 1024;
    cr_assert_gt(fill, 0);
    cr_assert_eq(run_cmd(NULL, "head -c %lld /dev/zero > '%s'", fill, filler), 0);
}

static void full_disk_case(enum jm jm, int where)
{
    char fsdir[400], filler[440], tag[64];
    int wal = jm == JMF_WAL;
    snprintf(tag, sizeof tag, "%s, %s on tmpfs", jm_names[jm], where ? "log" : "data.dir");
    sql_set_tag(tag);
    char *p = full_disk_node(where, fsdir, sizeof fsdir);
    sqlite3 *h = open_jm(p, jm);
    sqlh_exec(h, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    for (int i = 0; i < 5; i++)
        cr_assert_eq(big_txn(h, 1, 16000, 0), SQLITE_OK);
    sqlite3_close(h);
    const long long rows0 = 5;
    uint64_t txid0 = lvnode_last_txid(fN, "full.db");
    cr_assert_geq(txid0, 6);

    /* leave little space free on the tmpfs */
    fill_tmpfs(fsdir, where, filler, sizeof filler);

    /* 1. The commit fails with SQLITE_FULL; the writer keeps its connection. */
    h = open_jm(p, jm);
    int err = big_txn(h, 190, 16000, 0);
    cr_assert_eq(err, SQLITE_FULL, "[%s] a transaction on a full disk failed with %d (%s), expected SQLITE_FULL", tag,
                 err, sqlite3_errstr(err));
    cr_assert(daemon_up(fN), "the daemon died on a full disk");
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), rows0,
                 "[%s] a new connection sees the rows of the refused commit", tag);
    cr_assert_eq(lvnode_last_txid(fN, "full.db"), txid0, "[%s] the refused commit was logged", tag);
    sqlite3_close(h);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), rows0,
                 "[%s] after the writer closed, a new connection sees the rows of the refused commit", tag);
    struct lvdbstat ds;
    cr_assert_eq(lvnode_db_status(fN, "full.db", &ds), 1);
    cr_assert_str_eq(ds.status, "ok", "a full disk left the database broken");

    /* 2. The same, by an application that exits right after the error. */
    err = big_txn_and_crash(p, jm, 190, 16000);
    cr_assert_eq(err, SQLITE_FULL, "[%s] the crashing writer's transaction failed with %d (%s), expected SQLITE_FULL",
                 tag, err, sqlite3_errstr(err));
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), rows0,
                 "[%s] after a writer crashed on a refused commit, a new connection sees its rows", tag);
    cr_assert_eq(lvnode_last_txid(fN, "full.db"), txid0, "[%s] the crashed writer's commit was logged", tag);
    cr_assert(daemon_up(fN), "the daemon died on a full disk");
    cr_assert_eq(lvnode_db_status(fN, "full.db", &ds), 1);
    cr_assert_str_eq(ds.status, "ok", "a full disk left the database broken");

    /* 3. Space is back: the next commit is the next TXID, without the refused rows. */
    cr_assert_eq(unlink(filler), 0);
    h = open_jm(p, jm);
    cr_assert_eq(big_txn(h, 1, 16000, 0), SQLITE_OK, "[%s] writes still fail after freeing space", tag);
    sqlite3_close(h);
    cr_assert_eq(lvnode_last_txid(fN, "full.db"), txid0 + 1, "[%s] the next commit is not TXID %llu", tag,
                 (unsigned long long)txid0 + 1);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), rows0 + 1);
    assert_log_matches(fN, "full.db", wal, fN->dir);
    /* and after a restart the log still agrees */
    lvnode_stop(fN);
    lvnode_start(fN);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), rows0 + 1);
    cr_assert_eq(lvnode_last_txid(fN, "full.db"), txid0 + 1);
    assert_log_matches(fN, "full.db", wal, fN->dir);
    sql_set_tag(NULL);
    free(p);
}

/*
 * The same full disks in WAL mode, where a commit can no longer be refused
 * (the -wal may not even pass through the daemon): the commit succeeds and
 * stays in the WAL; its record cannot be written, so the database is
 * "stalled" in /status (/health says "degraded") and checkpoints are
 * refused, so SQLite keeps the frames.  Once space is back, the next
 * capture (here: asking /status) logs the transaction, with nothing lost,
 * and the log agrees with the database, also after a restart.
 */
static void full_disk_wal_case(int where)
{
    char fsdir[400], filler[440], wal[600];
    char *p = full_disk_node(where, fsdir, sizeof fsdir);
    sqlite3 *h = open_jm(p, JMF_WAL);
    sqlh_exec(h, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    for (int i = 0; i < 5; i++)
        cr_assert_eq(big_txn(h, 1, 16000, 0), SQLITE_OK);
    sqlh_exec(h, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_close(h);
    uint64_t txid0 = lvnode_last_txid(fN, "full.db");
    cr_assert_geq(txid0, 6);

    fill_tmpfs(fsdir, where, filler, sizeof filler);

    /* 1. The commit succeeds; its record cannot be written. */
    h = open_jm(p, JMF_WAL);
    sqlh_exec(h, "PRAGMA wal_autocheckpoint=0");
    int err = big_txn(h, 190, 16000, 0);
    cr_assert_eq(err, SQLITE_OK, "[where %d] a WAL commit failed with %d (%s)", where, err, sqlite3_errstr(err));
    cr_assert(daemon_up(fN), "the daemon died on a full disk");
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 195);
    struct lvdbstat ds;
    cr_assert_eq(lvnode_db_status(fN, "full.db", &ds), 1);
    cr_assert_str_eq(ds.status, "stalled", "[where %d] status is %s with a commit that cannot be logged", where,
                     ds.status);
    cr_assert_eq(ds.txid, txid0, "[where %d] a record was logged on a full disk", where);
    long st = 0;
    char *body = lvnode_http_get(fN, "/health", &st);
    cr_assert(body && strstr(body, "degraded") && strstr(body, "full.db"), "/health says %s", body ? body : "?");
    free(body);
    cr_assert(lvnode_log_contains(fN, "cannot be logged yet"), "the daemon did not say why");
    /* 2. Checkpoints are refused: the frames stay in the WAL. */
    int ck = sqlite3_exec(h, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    cr_assert_neq(ck, SQLITE_OK, "[where %d] a checkpoint went through while a commit cannot be logged", where);
    sqlite3_close(h); /* the last connection's checkpoint and WAL delete are refused too */
    snprintf(wal, sizeof wal, "%s/files/full.db-wal", fN->data);
    struct stat wst;
    cr_assert_eq(stat(wal, &wst), 0, "the WAL holding the unlogged commit is gone");
    cr_assert_gt(wst.st_size, 190 * 16000, "the WAL lost the unlogged commit's frames");
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 195);

    /* 3. Space is back: the transaction is logged, nothing lost. */
    cr_assert_eq(unlink(filler), 0);
    WAIT_FOR(lvnode_db_status(fN, "full.db", &ds) == 1 && strcmp(ds.status, "ok") == 0, LVT_WAIT_MS);
    cr_assert_str_eq(ds.status, "ok", "[where %d] still %s after freeing space", where, ds.status);
    cr_assert_eq(ds.txid, txid0 + 1, "[where %d] the waiting commit is not TXID %llu", where,
                 (unsigned long long)txid0 + 1);
    h = open_jm(p, JMF_WAL);
    cr_assert_eq(big_txn(h, 1, 16000, 0), SQLITE_OK);
    sqlite3_close(h);
    cr_assert_eq(lvnode_last_txid(fN, "full.db"), txid0 + 2);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 196);
    assert_log_matches(fN, "full.db", 1, fN->dir);
    lvnode_stop(fN);
    lvnode_start(fN);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 196);
    cr_assert_eq(lvnode_last_txid(fN, "full.db"), txid0 + 2);
    assert_log_matches(fN, "full.db", 1, fN->dir);
    free(p);
}

Test(faults, full_disk_tmpfs_delete)
{
    full_disk_case(JMF_DELETE, 0);
}

Test(faults, full_disk_tmpfs_truncate)
{
    full_disk_case(JMF_TRUNCATE, 0);
}

Test(faults, full_disk_tmpfs_persist)
{
    full_disk_case(JMF_PERSIST, 0);
}

Test(faults, full_disk_tmpfs_wal)
{
    full_disk_wal_case(0);
}

Test(faults, full_log_disk_tmpfs_delete)
{
    full_disk_case(JMF_DELETE, 1);
}

Test(faults, full_log_disk_tmpfs_wal)
{
    full_disk_wal_case(1);
}

/* DELETE mode with every log write failing after the first 15 (LV_FAULT);
 * WAL mode is enospc_injected_wal below. */
static void fault_env_case(void)
{
    fN = lvnode_started(NULL);
    char *p = lvnode_path(fN, "inj.db");
    sql_exec(p, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    lvnode_stop(fN);
    /* every log write after the first 15 fails with ENOSPC */
    setenv("LV_FAULT", "write:ENOSPC:after=15:match=/log/", 1);
    lvnode_start(fN);
    unsetenv("LV_FAULT");
    int err = 0;
    int ok = write_until_error(p, 0, 200, &err);
    cr_assert_neq(err, SQLITE_OK, "no commit failed under LV_FAULT");
    cr_assert((err & 0xff) == SQLITE_FULL || (err & 0xff) == SQLITE_IOERR,
              "expected SQLITE_FULL or SQLITE_IOERR, got %d (%s)", err, sqlite3_errstr(err));
    cr_assert(daemon_up(fN), "the daemon died on ENOSPC");
    cr_assert(lvnode_log_contains(fN, "No space left on device"), "the daemon did not log the ENOSPC");
    /* reads still work and see exactly the committed rows */
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), ok);
    /* an application that gets the error and exits without closing: a new
     * connection (recovering the WAL, or rolling back the hot journal) must
     * not see its row either */
    int cerr = big_txn_and_crash(p, JMF_DELETE, 1, 20000);
    cr_assert_neq(cerr, SQLITE_OK, "a commit succeeded while the log cannot be written");
    cr_assert((cerr & 0xff) == SQLITE_FULL || (cerr & 0xff) == SQLITE_IOERR,
              "expected SQLITE_FULL or SQLITE_IOERR, got %d (%s)", cerr, sqlite3_errstr(cerr));
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), ok,
                 "after a writer crashed on a refused commit, a new connection sees its row");
    cr_assert_eq(sql_exec(p, "INSERT INTO t(v) VALUES(randomblob(100));", 1) != SQLITE_OK, 1,
                 "a commit succeeded while the log cannot be written");
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), ok);
    /* "free space": restart without the fault */
    lvnode_stop(fN);
    lvnode_start(fN);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), ok);
    int err2 = 0;
    cr_assert_eq(write_until_error(p, 0, 3, &err2), 3, "writes fail after the fault is gone: %s",
                 sqlite3_errstr(err2));
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), ok + 3);
    assert_log_matches(fN, "inj.db", 0, fN->dir);
    free(p);
}

Test(faults, enospc_injected_delete)
{
    fault_env_case();
}

/*
 * The header of a rollback journal on kernel passthrough cannot be read
 * (LV_FAULT: the daemon's opens of the journal fail after the first two,
 * once the transaction has started): the daemon cannot tell whether the
 * transaction goes on or committed, so it refuses the operation (an I/O
 * error) rather than guess.  The transaction fails and nothing of it is
 * logged; after a restart without the fault the database has exactly the
 * committed rows and equals its log.  (Taken for a commit, the unreadable
 * header once made the daemon log a part of the transaction.)
 */
Test(faults, journal_header_unreadable)
{
    fN = lvnode_started(NULL);
    char *p = lvnode_path(fN, "jh.db");
    sql_exec(p, "PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
                "INSERT INTO t(v) VALUES(randomblob(3000));", 0);
    const char *env = getenv("LV_JOURNAL_PASSTHROUGH");
    if ((env && strcmp(env, "0") == 0) || lvnode_log_contains(fN, "FUSE passthrough is not available"))
        cr_skip_test("rollback journals go through the daemon here: no header to read from the backing file");
    lvnode_stop(fN);
    setenv("LV_FAULT", "open:EIO:after=2:match=jh.db-journal", 1);
    lvnode_start(fN);
    unsetenv("LV_FAULT");
    uint64_t t0 = lvnode_last_txid(fN, "jh.db");
    sqlite3 *h = NULL;
    cr_assert_eq(sqlite3_open(p, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    /* FULL: the journal's first fsync shows no magic yet, its second starts the transaction */
    int rc = sqlite3_exec(h, "PRAGMA synchronous=FULL; PRAGMA cache_size=5; BEGIN;"
                             "INSERT INTO t(v) SELECT randomblob(3000) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                             "SELECT x + 1 FROM c WHERE x < 60) SELECT x FROM c); COMMIT;", NULL, NULL, NULL);
    cr_assert_neq(rc, SQLITE_OK, "the transaction committed although its journal's header could not be read");
    sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(h);
    cr_assert(daemon_up(fN), "the daemon died");
    cr_assert(lvnode_log_contains(fN, "jh.db-journal"), "the daemon did not name the journal it could not read");
    cr_assert_leq(lvnode_last_txid(fN, "jh.db"), t0 + 1, "records were logged for the failed transaction");
    lvnode_stop(fN);
    lvnode_start(fN);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 1, "rows of the failed transaction are in the database");
    assert_log_matches(fN, "jh.db", 0, fN->dir);
    free(p);
}

/*
 * WAL mode with every log write failing (ENOSPC injected after the first
 * 15): commits succeed and stay in the WAL, the database is "stalled",
 * the daemon says why, checkpoints are refused, and the last connection's
 * close leaves the WAL in place.  After a restart without the fault,
 * start-up logs every one of them from the WAL; nothing is lost.
 */
Test(faults, enospc_injected_wal)
{
    fN = lvnode_started(NULL);
    char *p = lvnode_path(fN, "inj.db");
    sql_exec(p, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    uint64_t tx0 = lvnode_last_txid(fN, "inj.db");
    lvnode_stop(fN);
    setenv("LV_FAULT", "write:ENOSPC:after=15:match=/log/", 1);
    lvnode_start(fN);
    unsetenv("LV_FAULT");
    int err = 0;
    int ok = write_until_error(p, 1, 60, &err);
    cr_assert_eq(ok, 60, "a WAL commit failed under LV_FAULT: %s", sqlite3_errstr(err));
    cr_assert(daemon_up(fN), "the daemon died on ENOSPC");
    cr_assert(lvnode_log_contains(fN, "No space left on device"), "the daemon did not log the ENOSPC");
    struct lvdbstat ds;
    cr_assert_eq(lvnode_db_status(fN, "inj.db", &ds), 1);
    cr_assert_str_eq(ds.status, "stalled");
    cr_assert_lt(ds.txid, tx0 + 60, "every commit was logged although the log cannot be written");
    cr_assert_neq(sql_exec(p, "PRAGMA wal_checkpoint(TRUNCATE);", 1), SQLITE_OK,
                  "a checkpoint went through while commits cannot be logged");
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 60);
    lvnode_stop(fN);
    lvnode_start(fN);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 60);
    cr_assert_eq(lvnode_last_txid(fN, "inj.db"), tx0 + 60, "start-up did not log the commits the WAL kept");
    cr_assert_eq(lvnode_db_status(fN, "inj.db", &ds), 1);
    cr_assert_str_eq(ds.status, "ok");
    cr_assert_eq(write_until_error(p, 1, 3, &err), 3, "writes fail after the fault is gone: %s", sqlite3_errstr(err));
    cr_assert_eq(lvnode_last_txid(fN, "inj.db"), tx0 + 63);
    assert_log_matches(fN, "inj.db", 1, fN->dir);
    free(p);
}

/*
 * Log space cannot be reserved (fallocate of the log fails with ENOSPC,
 * injected): a rollback-mode transaction fails with SQLITE_FULL while
 * SQLite writes its pages, before its commit point, and leaves nothing a
 * new connection could see; without the fault the next commit is the next
 * TXID.
 */
static void reserve_fault_case(enum jm jm)
{
    fN = lvnode_started(NULL);
    char *p = lvnode_path(fN, "resv.db");
    sqlite3 *h = open_jm(p, jm);
    sqlh_exec(h, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    cr_assert_eq(big_txn(h, 1, 16000, 0), SQLITE_OK);
    sqlite3_close(h);
    uint64_t txid0 = lvnode_last_txid(fN, "resv.db");
    lvnode_stop(fN);
    setenv("LV_FAULT", "fallocate:ENOSPC:match=/log/", 1);
    lvnode_start(fN);
    unsetenv("LV_FAULT");
    h = open_jm(p, jm);
    int err = big_txn(h, 50, 16000, 0);
    cr_assert_eq(err, SQLITE_FULL, "[%s] expected SQLITE_FULL, got %d (%s)", jm_names[jm], err, sqlite3_errstr(err));
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 1);
    sqlite3_close(h);
    err = big_txn_and_crash(p, jm, 50, 16000);
    cr_assert_eq(err, SQLITE_FULL, "[%s] expected SQLITE_FULL, got %d (%s)", jm_names[jm], err, sqlite3_errstr(err));
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 1, "a new connection sees the rows of a refused commit");
    cr_assert_eq(lvnode_last_txid(fN, "resv.db"), txid0);
    cr_assert(daemon_up(fN));
    lvnode_stop(fN);
    lvnode_start(fN);
    h = open_jm(p, jm);
    cr_assert_eq(big_txn(h, 50, 16000, 0), SQLITE_OK);
    sqlite3_close(h);
    cr_assert_eq(lvnode_last_txid(fN, "resv.db"), txid0 + 1);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 51);
    assert_log_matches(fN, "resv.db", 0, fN->dir);
    free(p);
}

Test(faults, enospc_reserve_injected_delete)
{
    reserve_fault_case(JMF_DELETE);
}

Test(faults, enospc_reserve_injected_persist)
{
    reserve_fault_case(JMF_PERSIST);
}

/* ------------------------------------------------------------------ */
/* Bad configuration                                                   */
/* ------------------------------------------------------------------ */

/* Write a config with line 5 replaced by bad_line (under data:), run mount
 * and check exit 2 and the position. */
static void bad_config_case(const char *bad_line, const char *where, const char *word)
{
    fN = lvnode_new(NULL);
    char path[400];
    snprintf(path, sizeof path, "%s/bad.yml", fN->dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "fuse:\n  dir: %s\ndata:\n  dir: %s\n%s\nhttp:\n  addr: %s\n", fN->mnt, fN->data, bad_line, fN->http);
    fclose(f);
    char *out = NULL;
    int rc = mount_expect_fail(path, &out);
    cr_assert_eq(rc, 2, "bad config exited %d: %s", rc, out);
    char pos[64];
    snprintf(pos, sizeof pos, "bad.yml:%s:", where);
    cr_assert(strstr(out, pos) != NULL, "message lacks %s: %s", pos, out);
    cr_assert(strstr(out, word) != NULL, "message lacks '%s': %s", word, out);
    free(out);
    cr_assert(!is_mounted(fN->mnt));
    /* status and log commands reject it the same way */
    rc = run_cmd(&out, "'%s' status -c '%s' 2>&1", getenv("LITEVAULT"), path);
    cr_assert_eq(rc, 2, "status with a bad config exited %d: %s", rc, out);
    cr_assert(strstr(out, pos) != NULL, "status message lacks %s: %s", pos, out);
    free(out);
}

Test(faults, config_unknown_key)
{
    bad_config_case("  segmnt-size: 1MiB", "5:3", "unknown key");
}

Test(faults, config_wrong_type)
{
    bad_config_case("  segment-size: [1, 2]", "5:17", "segment-size");
}

Test(faults, config_bad_duration)
{
    bad_config_case("  state-interval: 10 parsecs", "5:19", "duration");
}
