/*
 * store_file.c -- the file:// store: objects are files below a root
 * directory, the key being the path relative to the root.
 *
 * Layout.  Key "app.db/0001/seg/00000001" is the regular file
 * ROOT/app.db/0001/seg/00000001; directories are created on demand and
 * never removed (an empty directory is invisible: list reports files only).
 * While a put is in flight its bytes live in a temporary file in the
 * destination directory, named
 *     .lvtmp.<basename>.<pid>.<counter>
 * which list skips and which no valid key of this backend can name (keys
 * with a component starting with ".lvtmp." are refused).
 *
 * Atomic put (states and the calls that move between them):
 *   mkdir parents (fsync the parent of each new directory)
 *   -> publish_begin_tmp (open tmp, O_EXCL) -> publish_write (all bytes)
 *   -> publish_commit: fsync(tmp), close, rename(tmp, path) (readers now
 *      see the new content), fsync(dir) (the rename is durable)
 * Until the rename a reader sees the old content (or none); a failure
 * before it unlinks tmp.  Temporary names are unique per process and call,
 * so concurrent puts of the same key do not collide: the last rename wins,
 * as the last PUT wins on S3.  All writes go through src/sys.h, so unit
 * tests can inject ENOSPC/EIO into any step.
 *
 * Root.  file:///abs/dir, or file://rel/dir and file://./dir relative to the
 * current directory (made absolute at open).  Open creates the root unless
 * store_opts.no_create (readers); store_probe then tells a missing root
 * (LV_ENOENT) from an empty one.
 *
 * Limits compared with S3: a key cannot be both an object and a
 * "directory" prefix of another key ("a" and "a/b"); that put fails.
 */
#include "store/store.h"
#include "store/store_impl.h"

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/publish.h"
#include "base/sys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_TMP_PREFIX ".lvtmp."

/* Backend state (immutable after open, so no lock). */
struct file_store {
    char *root; /* absolute directory path without trailing '/' (owned) */
};

/* Counter making temporary names unique within the process. */
static atomic_uint tmp_counter;

static struct file_store *fs_of(struct store *s) { return s->impl; }

/* Reject query parameters: the file backend has none. */
static int file_query_param(const char *name, const char *value, void *arg, char *err, size_t errlen)
{
    LV_UNUSED(value);
    snprintf(err, errlen, "%s: unknown query parameter \"%s\" (file:// takes none)", (const char *)arg, name);
    return LV_ECONFIG;
}

/* Make the relative path *p absolute against the current directory
 * (leading "./" dropped); *p is replaced (old string freed).  0 or negative. */
static int file_abs_path(char **p)
{
    char cwd[PATH_MAX], *rel = *p, *abs = NULL;

    if (!getcwd(cwd, sizeof cwd)) {
        int rc = lv_from_errno(errno);
        LV_ERROR("getcwd: %s", strerror(errno));
        return rc;
    }
    while (rel[0] == '.' && rel[1] == '/')
        rel += 2;
    if (strcmp(rel, ".") == 0)
        rel += 1;
    if (asprintf(&abs, "%s%s%s", cwd, *rel && strcmp(cwd, "/") ? "/" : "", rel) < 0)
        return LV_ENOMEM;
    free(*p);
    *p = abs;
    return 0;
}

static int file_open(struct store *s, const char *url, const struct store_opts *opts, char *err, size_t errlen)
{
    const char *p = url, *q;
    struct file_store *fs = NULL;
    char *path = NULL;
    size_t n;
    int rc;

    if (strncmp(p, "file://", 7) == 0) {
        p += 7;
        if (strncmp(p, "localhost/", 10) == 0)
            p += 9;
    }
    q = strchr(p, '?');
    n = q ? (size_t)(q - p) : strlen(p);
    if (n == 0) {
        snprintf(err, errlen, "%.200s: file:// URL without a path (use file:///abs/dir or file://rel/dir)", url);
        return LV_ECONFIG;
    }
    path = store_url_decode(p, n);
    if (!path) {
        snprintf(err, errlen, "%.200s: bad %%-escape in path", url);
        return LV_ECONFIG;
    }
    if (path[0] != '/') { /* file://rel/dir and file://./dir: relative to the current directory */
        rc = file_abs_path(&path);
        if (rc) {
            snprintf(err, errlen, "%.200s: cannot resolve the relative path: %s", url, lv_strerror(rc));
            goto out_free_path;
        }
    }
    while (strlen(path) > 1 && path[strlen(path) - 1] == '/')
        path[strlen(path) - 1] = '\0';
    if (q && (rc = store_query_each(q + 1, file_query_param, (void *)url, err, errlen)) < 0)
        goto out_free_path;
    fs = calloc(1, sizeof *fs);
    if (!fs || asprintf(&s->url, "file://%s", path) < 0) {
        s->url = NULL;
        snprintf(err, errlen, "out of memory");
        rc = LV_ENOMEM;
        goto out_free_path;
    }
    rc = opts && opts->no_create ? 0 : sys_mkdir_p(path);
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot create directory: %s", s->url, lv_strerror(rc));
        goto out_free_path;
    }
    fs->root = path;
    path = NULL;
    s->impl = fs;
    fs = NULL;
    rc = 0;
out_free_path:
    free(fs);
    free(path);
    return rc;
}

static void file_close(struct store *s)
{
    struct file_store *fs = fs_of(s);

    free(fs->root);
    free(fs);
    s->impl = NULL;
}

/* 1 if some component of key starts with the temporary-file prefix. */
static int key_is_tmp_name(const char *key)
{
    for (const char *c = key; c; c = strchr(c, '/') ? strchr(c, '/') + 1 : NULL)
        if (strncmp(c, FILE_TMP_PREFIX, sizeof FILE_TMP_PREFIX - 1) == 0)
            return 1;
    return 0;
}

/* ROOT/key, malloc'ed (NULL on OOM). */
static char *file_path(struct file_store *fs, const char *key)
{
    char *p;

    return asprintf(&p, "%s/%s", fs->root, key) < 0 ? NULL : p;
}

/* Create the directories of key's parent below the root; fsync the parent
 * of every directory created, so the new entries survive a crash. */
static int file_mkdirs(struct file_store *fs, const char *key)
{
    char *path = file_path(fs, key), *p;
    size_t rootlen = strlen(fs->root);
    int rc = 0;

    if (!path)
        return LV_ENOMEM;
    for (p = path + rootlen + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        if (mkdir(path, 0755) == 0) {
            /* Make the new entry durable: fsync the parent directory. */
            char *slash = strrchr(path, '/');
            *slash = '\0';
            rc = sys_fsync_dir(path);
            *slash = '/';
        } else if (errno != EEXIST) {
            int e = errno;
            LV_ERROR("mkdir(%s): %s", path, strerror(e));
            rc = lv_from_errno(e);
        }
        *p = '/';
        if (rc < 0)
            break;
    }
    free(path);
    return rc;
}

static int file_put(struct store *s, const char *key, const void *data, size_t len)
{
    struct file_store *fs = fs_of(s);
    char *path = NULL, *tmp = NULL, *slash;
    struct publish p;
    int rc;

    if (key_is_tmp_name(key)) {
        store_set_error(s, "%s: PUT %s: key names a temporary file", s->url, key);
        return LV_EINVAL;
    }
    path = file_path(fs, key);
    if (!path) {
        rc = LV_ENOMEM;
        goto out_fail;
    }
    slash = strrchr(path, '/');
    if (asprintf(&tmp, "%.*s/" FILE_TMP_PREFIX "%s.%ld.%u", (int)(slash - path), path, slash + 1, (long)getpid(),
                 atomic_fetch_add(&tmp_counter, 1)) < 0) {
        tmp = NULL;
        rc = LV_ENOMEM;
        goto out_fail;
    }
    if ((rc = file_mkdirs(fs, key)) < 0)
        goto out_fail;
    if ((rc = publish_begin_tmp(&p, path, tmp, 0644)) < 0)
        goto out_fail;
    if ((rc = publish_write(&p, data, len)) < 0) {
        publish_abort(&p);
        goto out_fail;
    }
    /* Removes tmp on failure; a failing directory fsync (after the rename)
     * leaves the object visible but its durability unknown. */
    if ((rc = publish_commit(&p)) < 0)
        goto out_fail;
    goto out_free;

out_fail:
    store_fail(s, "%s: PUT %s: %s", s->url, key, lv_strerror(rc));
out_free:
    free(tmp);
    free(path);
    return rc;
}

/* Open key for reading; LV_ENOENT (no log) if missing or a directory. */
static int file_open_obj(struct store *s, const char *op, const char *key, struct stat *st)
{
    char *path;
    int fd;

    if (key_is_tmp_name(key))
        return LV_ENOENT;
    path = file_path(fs_of(s), key);
    if (!path)
        return LV_ENOMEM;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        fd = (e == ENOENT || e == ENOTDIR) ? LV_ENOENT : lv_from_errno(e);
        if (fd != LV_ENOENT)
            store_fail(s, "%s: %s %s: open: %s", s->url, op, key, strerror(e));
    } else if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        fd = LV_ENOENT;
    }
    free(path);
    return fd;
}

static int file_get(struct store *s, const char *key, uint64_t off, uint64_t len, void **out, size_t *outlen)
{
    struct stat st;
    uint64_t size, n;
    char *buf = NULL, *path = NULL;
    int fd, rc;

    fd = file_open_obj(s, "GET", key, &st);
    if (fd < 0)
        return fd;
    size = (uint64_t)st.st_size;
    if (off > 0 && off >= size) {
        store_set_error(s, "%s: GET %s: range starts at %llu, beyond the object's %llu bytes", s->url, key,
                        (unsigned long long)off, (unsigned long long)size);
        rc = LV_EINVAL;
        goto out_close;
    }
    n = size - off;
    if (len && len < n)
        n = len;
    if (n > SIZE_MAX - 1 || !(buf = malloc(n ? n : 1))) {
        rc = LV_ENOMEM;
        goto out_close;
    }
    path = file_path(fs_of(s), key);
    rc = sys_pread_all(fd, buf, n, (off_t)off, path ? path : key);
    if (rc < 0) {
        /* LV_ECORRUPT here means the file shrank under us. */
        store_fail(s, "%s: GET %s: read: %s", s->url, key, lv_strerror(rc));
        free(buf);
        goto out_close;
    }
    *out = buf;
    *outlen = (size_t)n;
out_close:
    free(path);
    close(fd);
    return rc;
}

static int file_head(struct store *s, const char *key, struct store_obj *info)
{
    struct stat st;
    int fd = file_open_obj(s, "HEAD", key, &st);

    if (fd < 0)
        return fd;
    close(fd);
    info->size = (uint64_t)st.st_size;
    info->mtime_us = (int64_t)st.st_mtim.tv_sec * 1000000 + st.st_mtim.tv_nsec / 1000;
    return 0;
}

static int file_del(struct store *s, const char *key)
{
    char *path;
    int rc = 0;

    if (key_is_tmp_name(key))
        return 0;
    path = file_path(fs_of(s), key);
    if (!path)
        return LV_ENOMEM;
    if (unlink(path) < 0) {
        int e = errno;
        if (e != ENOENT && e != ENOTDIR) {
            rc = lv_from_errno(e);
            store_fail(s, "%s: DELETE %s: unlink: %s", s->url, key, strerror(e));
        }
    } else if ((rc = sys_fsync_dir(path)) < 0) {
        store_fail(s, "%s: DELETE %s: %s", s->url, key, lv_strerror(rc));
    }
    free(path);
    return rc;
}

/* Growing result of a list walk. */
struct file_walk {
    struct store_list *out; /* objects found */
    size_t cap;             /* allocated entries of out->v */
    const char *prefix;     /* key prefix to match */
    size_t plen;            /* strlen(prefix) */
};

static int walk_add(struct file_walk *w, const char *key, const struct stat *st)
{
    if (lv_grow((void **)&w->out->v, &w->cap, w->out->n, sizeof *w->out->v, 64) != 0)
        return LV_ENOMEM;
    w->out->v[w->out->n].key = strdup(key);
    if (!w->out->v[w->out->n].key)
        return LV_ENOMEM;
    w->out->v[w->out->n].size = (uint64_t)st->st_size;
    w->out->v[w->out->n].mtime_us = (int64_t)st->st_mtim.tv_sec * 1000000 + st->st_mtim.tv_nsec / 1000;
    w->out->n++;
    return 0;
}

/* Walk directory dirpath whose key prefix is rel ("" or "a/b/"); add the
 * regular files whose key starts with w->prefix; descend only into
 * directories that can contain such keys; symlinks are not followed. */
static int walk_dir(struct store *s, struct file_walk *w, const char *dirpath, const char *rel)
{
    DIR *d = opendir(dirpath);
    struct dirent *e;
    int rc = 0;

    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        store_fail(s, "%s: LIST %s: opendir(%s): %s", s->url, w->prefix, dirpath, strerror(errno));
        return lv_from_errno(errno);
    }
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char *child = NULL, *key = NULL;
        struct stat st;
        size_t klen;

        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        if (strncmp(e->d_name, FILE_TMP_PREFIX, sizeof FILE_TMP_PREFIX - 1) == 0)
            continue;
        if (asprintf(&child, "%s/%s", dirpath, e->d_name) < 0 || asprintf(&key, "%s%s", rel, e->d_name) < 0) {
            free(child);
            rc = LV_ENOMEM;
            break;
        }
        klen = strlen(key);
        if (lstat(child, &st) == 0) {
            if (S_ISREG(st.st_mode)) {
                if (strncmp(key, w->prefix, w->plen) == 0)
                    rc = walk_add(w, key, &st);
            } else if (S_ISDIR(st.st_mode)) {
                /* Descend if key + '/' and the prefix agree on their common length. */
                char *sub = NULL;
                if (asprintf(&sub, "%s/", key) < 0) {
                    rc = LV_ENOMEM;
                } else {
                    size_t m = klen + 1 < w->plen ? klen + 1 : w->plen;
                    if (strncmp(sub, w->prefix, m) == 0)
                        rc = walk_dir(s, w, child, sub);
                    free(sub);
                }
            }
        }
        free(child);
        free(key);
    }
    closedir(d);
    return rc;
}

static int file_list(struct store *s, const char *prefix, struct store_list *out)
{
    struct file_store *fs = fs_of(s);
    struct file_walk w = {out, 0, prefix, strlen(prefix)};
    const char *slash = strrchr(prefix, '/');
    char *dir = NULL, *rel = NULL;
    int rc;

    /* Start at the deepest directory the prefix names in full. */
    if (slash) {
        if (asprintf(&dir, "%s/%.*s", fs->root, (int)(slash - prefix), prefix) < 0 ||
            asprintf(&rel, "%.*s/", (int)(slash - prefix), prefix) < 0) {
            free(dir);
            return LV_ENOMEM;
        }
    } else if (!(dir = strdup(fs->root)) || !(rel = strdup(""))) {
        free(dir);
        return LV_ENOMEM;
    }
    rc = walk_dir(s, &w, dir, rel);
    if (rc == LV_ENOMEM)
        store_fail(s, "%s: LIST %s: out of memory", s->url, prefix);
    free(dir);
    free(rel);
    return rc;
}

/* store_probe: the root directory exists and holds a file (ignoring
 * temporary files), looked for depth first. */
static int file_has_object(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int found = 0;

    if (!d)
        return 0;
    while (!found && (de = readdir(d)) != NULL) {
        char *p = NULL;
        struct stat st;
        if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2]) ||
                                     strncmp(de->d_name, FILE_TMP_PREFIX, strlen(FILE_TMP_PREFIX)) == 0))
            continue;
        if (asprintf(&p, "%s/%s", dir, de->d_name) < 0)
            break;
        if (stat(p, &st) == 0)
            found = S_ISREG(st.st_mode) || (S_ISDIR(st.st_mode) && depth < 64 && file_has_object(p, depth + 1));
        free(p);
    }
    closedir(d);
    return found;
}

static int file_probe(struct store *s, int *empty)
{
    struct file_store *fs = fs_of(s);
    struct stat st;

    if (stat(fs->root, &st) != 0) {
        int e = errno;
        store_set_error(s, "%s: directory %s %s", s->url, fs->root,
                        e == ENOENT ? "does not exist" : strerror(e));
        return e == ENOENT || e == ENOTDIR ? LV_ENOENT : lv_from_errno(e);
    }
    if (!S_ISDIR(st.st_mode)) {
        store_set_error(s, "%s: %s is not a directory", s->url, fs->root);
        return LV_ENOENT;
    }
    *empty = !file_has_object(fs->root, 0);
    return 0;
}

const struct store_backend store_file_backend = {
    .scheme = "file",
    .open = file_open,
    .close = file_close,
    .put = file_put,
    .get = file_get,
    .head = file_head,
    .list = file_list,
    .del = file_del,
    .probe = file_probe,
};
