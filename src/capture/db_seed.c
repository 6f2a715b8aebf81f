/*
 * db_seed.c -- installing a database seeded from an archive (db.h,
 * "Seeding"; restore/seed.c rebuilds the databases and calls this).
 *
 * WHAT START-UP NEEDS (db_load, db_reconcile.c) so that a seeded database
 * loads at TXID T with the archive's ID and checksum, writes no reconcile
 * record and no snapshot, and logs its next transaction as TXID T+1 with
 * pre checksum = the checksum at T:
 *  - meta/NAME/id: the database ID the archive's records carry, so the
 *    records this node appends (or receives from a primary) continue the
 *    same history as the archive's;
 *  - meta/NAME/log/: a log whose tail reads "last TXID T, post checksum C"
 *    without holding any record: the base file and an empty segment named
 *    T+1 (log/txlog_base.c).  txlog_open reports T as the last record, so
 *    C4 of db.c holds (the log's last TXID is the map's) and the writer
 *    takes TXID T+1 with pre checksum C next (C5).  Writing the database
 *    into the log as a snapshot record would recompress all of it, for a
 *    history the archive already keeps;
 *  - meta/NAME/state at TXID T: the page checksums of the file.  load_state
 *    accepts it (its TXID is not ahead of the log), replay_hashes finds no
 *    record after T, map.total == C, and reconcile has no candidate page
 *    (no WAL, no growth, no record after the state): "log agrees with the
 *    database at TXID T (checked 0 pages)".  The checksums come from the
 *    restore, which computed them while applying and checked their XOR
 *    against the file it re-read, so seeding reads the database no more;
 *  - meta/NAME/journal-mode: "wal" when the file's header says WAL (what
 *    /status shows until the first commit says more).
 *
 * ORDER (crash safety; one installer per data.dir, under its lock): the
 * metadata is built in a staging directory and renamed to meta/NAME (a
 * stale meta/NAME without a database file is moved to retired/ first), then
 * the file is renamed to files/NAME, which is the commit point.  A crash
 * before it leaves metadata without a database: start-up ignores it and a
 * later database of that name retires it (db_promote).  The file never
 * appears without its metadata, which start-up would take for a new
 * database (a new ID and a snapshot record).
 */
#include "capture/db.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cksum.h"
#include "base/dbhdr.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/publish.h"
#include "base/sys.h"
#include "log/txlog.h"

int db_seed_lock(const char *data_dir, int *lockfd, char *err, size_t errlen)
{
    char path[PATH_MAX + 16];
    int rc, fd;

    *lockfd = -1;
    rc = sys_mkdir_p(data_dir);
    if (rc) {
        lv_seterr(err, errlen, "data.dir %s: cannot create it: %s", data_dir, lv_strerror(rc));
        return rc;
    }
    snprintf(path, sizeof path, "%s/lock", data_dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = lv_from_errno(errno);
        lv_seterr(err, errlen, "data.dir %s: cannot open %s: %s", data_dir, path, strerror(errno));
        return rc;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        lv_seterr(err, errlen, "data.dir %s is in use by a running litevault (%s is locked); stop it first", data_dir,
                  path);
        close(fd);
        return LV_EBUSY;
    }
    *lockfd = fd;
    return 0;
}

/* First non-directory entry under dir (rel: its path relative to files/). */
static int find_file(const char *dir, const char *rel, char *what, size_t n, int depth)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;

    if (!d)
        return errno == ENOENT ? 0 : lv_from_errno(errno);
    while (!found && (e = readdir(d)) != NULL) {
        char path[PATH_MAX], sub[PATH_MAX];
        struct stat st;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && depth < 64) {
            found = find_file(path, sub, what, n, depth + 1);
            continue;
        }
        snprintf(what, n, "%s", sub);
        found = 1;
    }
    closedir(d);
    return found;
}

int db_seed_dir_used(const char *data_dir, char *what, size_t n)
{
    char files[PATH_MAX];

    snprintf(files, sizeof files, "%s/files", data_dir);
    if (n)
        what[0] = '\0';
    return find_file(files, "", what, n, 0);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* rm -r path (absent: fine).  0 or LV_EIO (logged). */
static int rm_tree(const char *path)
{
    struct stat st;

    if (lstat(path, &st) != 0)
        return 0;
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        LV_ERROR("cannot remove %s: %s", path, strerror(errno));
        return LV_EIO;
    }
    return 0;
}

/* A database name as the mount shows it: relative, no empty, "." or ".."
 * component, not a -wal/-journal/-shm name. */
static int name_ok(const char *name)
{
    char dbname[PATH_MAX];
    enum db_filekind k;
    const char *p = name;

    if (!name[0] || name[0] == '/' || strlen(name) >= PATH_MAX - 64)
        return 0;
    while (*p) {
        const char *q = strchr(p, '/');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        if (!q)
            break;
        p = q + 1;
        if (!*p)
            return 0;
    }
    return db_classify(name, &k, dbname, sizeof dbname) == 0 && k == DBF_MAIN;
}

/* Does file agree with s (size, header, page size)?  *wal: its header says
 * WAL.  0 or LV_EINVAL / LV_EIO with a message. */
static int check_file(const struct db_seed *s, const char *file, int *wal, char *err, size_t errlen)
{
    const struct cksum_map *m = s->map;
    uint8_t h[DBHDR_SIZE];
    struct stat st;
    int fd, rc = 0;

    *wal = 0;
    if (!s->map || s->txid == 0 || m->total != s->cksum || !name_ok(s->name)) {
        lv_seterr(err, errlen, "%s: nothing to install (TXID %" PRIu64 ", checksums %s, name %s)", s->name, s->txid,
                  s->map && m->total == s->cksum ? "agree" : "disagree", name_ok(s->name) ? "ok" : "invalid");
        return LV_EINVAL;
    }
    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        lv_seterr(err, errlen, "%s: %s", file, strerror(errno));
        if (fd >= 0)
            close(fd);
        return LV_EIO;
    }
    if ((uint64_t)st.st_size != (uint64_t)m->npages * m->page_size)
        rc = LV_EINVAL;
    else if (m->npages > 0 && (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h || !dbhdr_valid(h) ||
                               dbhdr_page_size(h) != m->page_size))
        rc = LV_EINVAL;
    else if (m->npages > 0)
        *wal = h[18] == 2;
    if (rc)
        lv_seterr(err, errlen, "%s: the file (%lld bytes) is not the database of %u pages of %u bytes it should be",
                  file, (long long)st.st_size, m->npages, m->page_size);
    close(fd);
    return rc;
}

/* Build the metadata of s in the new directory dir. */
static int write_meta(const char *dir, const struct db_seed *s, int wal, char *err, size_t errlen)
{
    struct txlog_base b = {.txid = s->txid, .time_us = s->time_us, .page_size = s->map->page_size,
                           .db_pages = s->map->npages, .post_cksum = s->cksum};
    char path[PATH_MAX + 32], hex[34];
    int rc;

    memcpy(b.dbid, s->id, 16);
    if (!dbhdr_page_size_ok(b.page_size))
        b.page_size = 4096; /* an empty database: any page size */
    lv_hex(s->id, 16, hex);
    hex[32] = '\n';
    snprintf(path, sizeof path, "%s/id", dir);
    rc = publish_buf(path, hex, 33);
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/state", dir);
        rc = cksum_state_save(path, s->map, s->id, s->txid);
    }
    if (rc == 0 && wal) {
        snprintf(path, sizeof path, "%s/journal-mode", dir);
        rc = publish_buf(path, "wal", 3);
    }
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot write: %s", path, lv_strerror(rc));
        return rc;
    }
    snprintf(path, sizeof path, "%s/log", dir);
    return txlog_base_create(path, &b, err, errlen);
}

/* meta/NAME exists but files/NAME does not: move it to retired/. */
static int retire_stale(const char *data_dir, const char *meta)
{
    char dst[PATH_MAX * 2], root[PATH_MAX + 16];
    const char *base = strrchr(meta, '/');
    struct stat st;
    int rc;

    if (lstat(meta, &st) != 0)
        return 0;
    snprintf(root, sizeof root, "%s/retired", data_dir);
    rc = sys_mkdir_p(root);
    snprintf(dst, sizeof dst, "%s/%.180s.stale-%lld", root, base ? base + 1 : meta, (long long)lv_now_us());
    if (rc == 0)
        rc = sys_rename(meta, dst);
    if (rc == 0)
        LV_INFO("moved %s (metadata without a database) to %s", meta, dst);
    return rc;
}

/* fsync the directories from the one holding path up to root (included). */
static void sync_dirs(const char *path, const char *root)
{
    char d[PATH_MAX];
    size_t rl = strlen(root);

    snprintf(d, sizeof d, "%s", path);
    for (;;) {
        char *slash = strrchr(d, '/');
        if (!slash || (size_t)(slash - d) < rl)
            break;
        *slash = '\0';
        sys_fsync_dir(d);
    }
}

/* Remove the empty directories holding path, up to (not including) root. */
static void prune_parents(const char *path, const char *root)
{
    char d[PATH_MAX * 2];
    size_t rl = strlen(root);

    snprintf(d, sizeof d, "%s", path);
    for (;;) {
        char *slash = strrchr(d, '/');
        if (!slash || (size_t)(slash - d) <= rl)
            break;
        *slash = '\0';
        if (rmdir(d) != 0)
            break;
    }
}

int db_seed_install(const char *data_dir, const struct db_seed *s, const char *file, const char *stage_dir,
                    char *err, size_t errlen)
{
    char meta[PATH_MAX], root[PATH_MAX + 16], dst[PATH_MAX * 2], stage[PATH_MAX + 32];
    struct stat st;
    int rc, wal = 0, staged = 0, meta_in = 0;

    rc = check_file(s, file, &wal, err, errlen);
    if (rc)
        return rc;
    snprintf(dst, sizeof dst, "%s/files/%s", data_dir, s->name);
    if (lstat(dst, &st) == 0) {
        lv_seterr(err, errlen, "data.dir %s already holds database '%s' (%s)", data_dir, s->name, dst);
        return LV_EEXIST;
    }
    db_metadir_path(data_dir, s->name, meta, sizeof meta);
    snprintf(stage, sizeof stage, "%s/meta.XXXXXX", stage_dir);
    rc = sys_mkdir_p(stage_dir);
    if (rc == 0 && !mkdtemp(stage))
        rc = lv_from_errno(errno);
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot create a staging directory: %s", stage_dir, lv_strerror(rc));
        return rc;
    }
    staged = 1;
    rc = write_meta(stage, s, wal, err, errlen);
    if (rc)
        goto out;
    snprintf(root, sizeof root, "%s/meta", data_dir);
    rc = sys_mkdir_p(root);
    if (rc == 0)
        rc = retire_stale(data_dir, meta);
    if (rc == 0)
        rc = sys_rename_noreplace(stage, meta);
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot move the metadata into place: %s", meta, lv_strerror(rc));
        goto out;
    }
    staged = 0;
    meta_in = 1;
    sys_fsync_dir(root);
    /* The commit point: the database file appears, with its metadata. */
    snprintf(root, sizeof root, "%s/files", data_dir);
    {
        char parent[PATH_MAX * 2];
        char *slash;
        snprintf(parent, sizeof parent, "%s", dst);
        slash = strrchr(parent, '/');
        *slash = '\0';
        rc = sys_mkdir_p(parent);
    }
    if (rc == 0)
        rc = sys_rename_noreplace(file, dst);
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot move the database into place: %s", dst, lv_strerror(rc));
        prune_parents(dst, root);
        goto out;
    }
    sync_dirs(dst, root);
    meta_in = 0;
    LV_DEBUG("%s: seeded at TXID %" PRIu64 " (%u pages of %u bytes); its log continues at TXID %" PRIu64, s->name,
            s->txid, s->map->npages, s->map->page_size, s->txid + 1);
out:
    if (meta_in && rm_tree(meta) == 0) {
        snprintf(root, sizeof root, "%s/meta", data_dir);
        sys_fsync_dir(root);
    }
    if (staged)
        rm_tree(stage);
    return rc;
}

int db_seed_uninstall(const char *data_dir, const char *name)
{
    char meta[PATH_MAX], path[PATH_MAX * 2];
    int rc = 0;

    snprintf(path, sizeof path, "%s/files/%s", data_dir, name);
    if (unlink(path) != 0 && errno != ENOENT) {
        LV_ERROR("cannot remove %s: %s", path, strerror(errno));
        rc = lv_from_errno(errno);
    }
    sys_fsync_dir(path);
    snprintf(meta, sizeof meta, "%s/files", data_dir);
    prune_parents(path, meta);
    db_metadir_path(data_dir, name, meta, sizeof meta);
    if (rm_tree(meta) != 0)
        rc = LV_EIO;
    sys_fsync_dir(meta);
    LV_INFO("%s: seeding undone (removed %s and %s)", name, path, meta);
    return rc;
}
