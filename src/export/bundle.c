/*
 * bundle.c -- tar bundles of database images (see bundle.h).
 *
 * Layout (docs/FORMAT.md, "Export bundles"): a POSIX (pax) tar archive,
 * optionally zstd- or gzip-compressed, with
 *
 *   db/<name>        one regular file per database: the raw image, exactly
 *                    db_pages * page_size bytes, mode 0644, mtime = commit time
 *   manifest.json    the last entry: format, versions and per database its
 *                    facts and the XXH3-64 of the entry's bytes
 *
 * The manifest comes last so that a writer streams every image exactly once
 * (hashing while archiving) and may write to a pipe.
 *
 * Reading is a state machine over the archive's entries, all checks being
 * made before the caller changes anything:
 *
 *   for each header:  name checks (safe, known kind, no duplicate) ->
 *                     type checks (regular file; directories under db/ are
 *                     skipped; links and anything else refused) ->
 *                     extract with O_CREAT|O_EXCL|O_NOFOLLOW under dir,
 *                     hashing the bytes (XXH3-64) and the pages (database
 *                     checksum, page size from the streamed header)
 *   at EOF:           manifest present and well-formed -> entry set equal
 *                     to the manifest's -> per database size, XXH3-64, page
 *                     size, page count and database checksum equal.
 *
 * Any failure returns before *out is set; the caller removes dir.
 * Invariant of extraction: nothing is ever created outside dir, because
 * every path component is validated (no "..", not absolute), directories
 * are opened with O_NOFOLLOW|O_DIRECTORY relative to their parent, and
 * dir starts empty and only ever receives directories and regular files
 * that this code created.
 */
#include "export/bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>

#include "base/cksum.h"
#include "base/dbhdr.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"

#define BUNDLE_FORMAT_NAME "litevault-bundle"
#define BUNDLE_FORMAT_VERSION 1
#define BUNDLE_CHUNK (1u << 20)          /* bytes per read while archiving / extracting */
#define BUNDLE_MANIFEST_MAX (16u << 20)  /* largest manifest.json accepted */
#define BUNDLE_NAME_MAX 1000             /* longest database name */

int bundle_format_of(const char *name, enum bundle_format *fmt)
{
    static const struct { const char *suf; enum bundle_format f; } tab[] = {
        {"tar.zst", BUNDLE_TAR_ZST}, {"tar.gz", BUNDLE_TAR_GZ}, {"tar", BUNDLE_TAR}};
    size_t len = name ? strlen(name) : 0;
    for (size_t i = 0; i < LV_ARRAY_LEN(tab); i++) {
        size_t sl = strlen(tab[i].suf);
        if (strcmp(name ? name : "", tab[i].suf) == 0 ||
            (len > sl && name[len - sl - 1] == '.' && strcmp(name + len - sl, tab[i].suf) == 0)) {
            *fmt = tab[i].f;
            return 0;
        }
    }
    return LV_EINVAL;
}

int bundle_name_ok(const char *name)
{
    size_t len = strlen(name);
    const char *p = name;
    static const char *sufs[] = {"-wal", "-journal", "-shm"};

    if (len == 0 || len > BUNDLE_NAME_MAX || name[0] == '/')
        return 0;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        if (*c < 0x20 || *c == 0x7f || *c == '\\')
            return 0;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t cl = slash ? (size_t)(slash - p) : strlen(p);
        if (cl == 0 || cl > NAME_MAX || (cl == 1 && p[0] == '.') || (cl == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        if (!slash)
            break;
        p = slash + 1;
        if (!*p)
            return 0; /* trailing slash */
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(sufs); i++) {
        size_t sl = strlen(sufs[i]);
        if (len > sl && strcmp(name + len - sl, sufs[i]) == 0)
            return 0;
    }
    return 1;
}

/* Parse exactly 2*n hex digits into out; 0 or -1. */
static int parse_hex(const char *s, uint8_t *out, size_t n)
{
    return s && lv_unhex(s, out, n) == 0 ? 0 : -1;
}

static int parse_hex64(const char *s, uint64_t *v)
{
    uint8_t b[8];
    if (parse_hex(s, b, 8) != 0)
        return -1;
    *v = lv_get64(b);
    return 0;
}

/* libarchive's message for a's last error, never NULL. */
static const char *aerr(struct archive *a)
{
    const char *m = archive_error_string(a);
    return m ? m : "unexpected end of data or I/O error";
}

/* ---------------------------------------------------------------- writing */

/* Where bundle_write's bytes go: fd, named for logs and LV_FAULT matching. */
struct bsink {
    int fd;                /* borrowed; written sequentially */
    char label[PATH_MAX];  /* the file behind fd (from /proc/self/fd), or "fd N" */
};

static void sink_init(struct bsink *s, int fd)
{
    char link[64];
    ssize_t n;

    s->fd = fd;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, s->label, sizeof s->label - 1);
    if (n > 0)
        s->label[n] = '\0';
    else
        snprintf(s->label, sizeof s->label, "fd %d", fd);
}

/* libarchive's write callback: every byte through the syscall seam. */
static la_ssize_t sink_write(struct archive *a, void *arg, const void *buf, size_t len)
{
    struct bsink *s = arg;
    int rc = sys_write_all(s->fd, buf, len, s->label);

    if (rc < 0) {
        archive_set_error(a, lv_to_errno(rc), "write %s: %s", s->label, lv_strerror(rc));
        return -1;
    }
    return (la_ssize_t)len;
}

/* Archive one image as db/<name>; *xxh3 receives the hash of its bytes. */
static int write_one(struct archive *a, const struct bundle_entry *e, uint64_t size, uint8_t *buf,
                     uint64_t *done, uint64_t total, bundle_progress_fn progress, void *arg, uint64_t *xxh3,
                     char *err, size_t errlen)
{
    char path[BUNDLE_NAME_MAX + 8];
    struct archive_entry *ae = archive_entry_new();
    XXH3_state_t *st = XXH3_createState();
    int fd = -1, rc = 0;
    uint64_t off = 0;

    if (!ae || !st) {
        rc = LV_ENOMEM;
        goto out;
    }
    XXH3_64bits_reset(st);
    fd = open(e->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = lv_from_errno(errno);
        lv_seterr(err, errlen, "cannot open the image of %s (%s): %s", e->name, e->path, strerror(errno));
        goto out;
    }
    snprintf(path, sizeof path, "db/%s", e->name);
    archive_entry_set_pathname(ae, path);
    archive_entry_set_filetype(ae, AE_IFREG);
    archive_entry_set_perm(ae, 0644);
    archive_entry_set_size(ae, (la_int64_t)size);
    archive_entry_set_mtime(ae, e->time_us / 1000000, (long)(e->time_us % 1000000) * 1000);
    if (archive_write_header(a, ae) != ARCHIVE_OK) {
        rc = LV_EIO;
        lv_seterr(err, errlen, "writing the bundle entry %s: %s", path, aerr(a));
        goto out;
    }
    while (off < size) {
        size_t want = size - off < BUNDLE_CHUNK ? (size_t)(size - off) : BUNDLE_CHUNK;
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            rc = got < 0 ? lv_from_errno(errno) : LV_ECORRUPT;
            lv_seterr(err, errlen, "reading the image of %s (%s): %s", e->name, e->path,
                   got < 0 ? strerror(errno) : "file shrank while being archived");
            goto out;
        }
        XXH3_64bits_update(st, buf, (size_t)got);
        la_ssize_t w = archive_write_data(a, buf, (size_t)got);
        if (w != got) {
            rc = LV_EIO;
            lv_seterr(err, errlen, "writing the bundle (entry %s): %s", path,
                   aerr(a));
            goto out;
        }
        off += (uint64_t)got;
        *done += (uint64_t)got;
        if (progress)
            progress(arg, *done, total);
    }
    if (archive_write_finish_entry(a) != ARCHIVE_OK) {
        rc = LV_EIO;
        lv_seterr(err, errlen, "writing the bundle (entry %s): %s", path, aerr(a));
        goto out;
    }
    *xxh3 = XXH3_64bits_digest(st);
out:
    if (fd >= 0)
        close(fd);
    XXH3_freeState(st);
    archive_entry_free(ae);
    return rc;
}

/* The manifest.json text for the entries (malloc'ed, caller frees), or NULL. */
static char *manifest_text(const struct bundle_entry *v, size_t n, const uint64_t *sizes, const uint64_t *xxh)
{
    char t[40], idh[33], hx[17], hy[17];
    int64_t now = lv_now_us();
    json_t *o = json_object(), *arr = json_array();
    char *s = NULL;

    if (!o || !arr)
        goto out;
    json_object_set_new(o, "format", json_string(BUNDLE_FORMAT_NAME));
    json_object_set_new(o, "format_version", json_integer(BUNDLE_FORMAT_VERSION));
    json_object_set_new(o, "litevault_version", json_string(LV_VERSION));
    json_object_set_new(o, "created", json_string(lv_fmt_time(now, t, sizeof t)));
    json_object_set_new(o, "created_us", json_integer(now));
    for (size_t i = 0; i < n; i++) {
        char file[BUNDLE_NAME_MAX + 8];
        json_t *d = json_object();
        snprintf(file, sizeof file, "db/%s", v[i].name);
        lv_hex(v[i].id, 16, idh);
        json_object_set_new(d, "name", json_string(v[i].name));
        json_object_set_new(d, "file", json_string(file));
        json_object_set_new(d, "id", json_string(idh));
        json_object_set_new(d, "txid", json_integer((json_int_t)v[i].txid));
        json_object_set_new(d, "time", json_string(lv_fmt_time(v[i].time_us, t, sizeof t)));
        json_object_set_new(d, "time_us", json_integer(v[i].time_us));
        json_object_set_new(d, "checksum", json_string(cksum_hex(v[i].cksum, hx)));
        json_object_set_new(d, "page_size", json_integer(v[i].page_size));
        json_object_set_new(d, "pages", json_integer(v[i].db_pages));
        json_object_set_new(d, "size", json_integer((json_int_t)sizes[i]));
        json_object_set_new(d, "xxh3", json_string(cksum_hex(xxh[i], hy)));
        json_array_append_new(arr, d);
    }
    json_object_set(o, "databases", arr);
    s = json_dumps(o, JSON_INDENT(2));
out:
    json_decref(arr);
    json_decref(o);
    return s;
}

/* Check the entries before anything is written: safe, distinct names, and
 * images of the announced sizes (into sizes[], their sum into *total).
 * 0 or negative with the message in err. */
static int check_entries(const struct bundle_entry *v, size_t n, uint64_t *sizes, uint64_t *total, char *err,
                         size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (!bundle_name_ok(v[i].name)) {
            lv_seterr(err, errlen, "database name '%s' cannot be stored in a bundle (absolute, '..', or a -wal/-journal/-shm name)",
                   v[i].name);
            return LV_EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(v[i].name, v[j].name) == 0) {
                lv_seterr(err, errlen, "database %s is listed twice", v[i].name);
                return LV_EINVAL;
            }
        if (stat(v[i].path, &st) != 0) {
            lv_seterr(err, errlen, "image of %s (%s): %s", v[i].name, v[i].path, strerror(errno));
            return lv_from_errno(errno);
        }
        sizes[i] = (uint64_t)v[i].db_pages * v[i].page_size;
        if ((uint64_t)st.st_size != sizes[i]) {
            lv_seterr(err, errlen, "image of %s (%s) has %llu bytes, expected %u pages of %u bytes", v[i].name,
                   v[i].path, (unsigned long long)st.st_size, v[i].db_pages, v[i].page_size);
            return LV_EMISMATCH;
        }
        *total += sizes[i];
    }
    return 0;
}

/* A pax tar writer for fmt into sink (zstd with up to 4 threads, gzip or
 * none), opened, into *out.  0, LV_ENOMEM, or LV_EIO with the message in err. */
static int open_writer(enum bundle_format fmt, struct bsink *sink, struct archive **out, char *err, size_t errlen)
{
    struct archive *a = archive_write_new();

    *out = NULL;
    if (!a)
        return LV_ENOMEM;
    archive_write_set_format_pax_restricted(a);
    if (fmt == BUNDLE_TAR_ZST) {
        char th[16];
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        archive_write_add_filter_zstd(a);
        snprintf(th, sizeof th, "%ld", cpus > 4 ? 4 : cpus > 0 ? cpus : 1);
        /* Best effort: older libarchive versions lack the option. */
        archive_write_set_filter_option(a, "zstd", "threads", th);
    } else if (fmt == BUNDLE_TAR_GZ) {
        archive_write_add_filter_gzip(a);
    } else {
        archive_write_add_filter_none(a);
    }
    archive_write_set_bytes_in_last_block(a, 1);
    if (archive_write_open(a, sink, NULL, sink_write, NULL) != ARCHIVE_OK) {
        lv_seterr(err, errlen, "cannot start the bundle: %s", aerr(a));
        archive_write_free(a);
        return LV_EIO;
    }
    *out = a;
    return 0;
}

/* Append manifest.json (text) as the last entry.  0 or LV_E*. */
static int write_manifest_entry(struct archive *a, const char *man, char *err, size_t errlen)
{
    struct archive_entry *ae = archive_entry_new();
    int rc = 0;

    if (!ae)
        return LV_ENOMEM;
    archive_entry_set_pathname(ae, "manifest.json");
    archive_entry_set_filetype(ae, AE_IFREG);
    archive_entry_set_perm(ae, 0644);
    archive_entry_set_size(ae, (la_int64_t)strlen(man));
    archive_entry_set_mtime(ae, lv_now_us() / 1000000, 0);
    if (archive_write_header(a, ae) != ARCHIVE_OK ||
        archive_write_data(a, man, strlen(man)) != (la_ssize_t)strlen(man) ||
        archive_write_finish_entry(a) != ARCHIVE_OK) {
        rc = LV_EIO;
        lv_seterr(err, errlen, "writing manifest.json into the bundle: %s", aerr(a));
    }
    archive_entry_free(ae);
    return rc;
}

int bundle_write(int fd, const char *name_for_format, const struct bundle_entry *v, size_t n,
                 bundle_progress_fn progress, void *arg, char *err, size_t errlen)
{
    enum bundle_format fmt;
    struct archive *a = NULL;
    uint64_t *sizes = NULL, *xxh = NULL, total = 0, done = 0;
    uint8_t *buf = NULL;
    char *man = NULL;
    struct bsink sink;
    int rc = 0, opened = 0;

    if (bundle_format_of(name_for_format, &fmt) != 0) {
        lv_seterr(err, errlen, "%s: unknown bundle format (use a name ending in .tar, .tar.zst or .tar.gz)",
               name_for_format ? name_for_format : "(null)");
        return LV_EINVAL;
    }
    sizes = calloc(n ? n : 1, sizeof *sizes);
    xxh = calloc(n ? n : 1, sizeof *xxh);
    buf = malloc(BUNDLE_CHUNK);
    if (!sizes || !xxh || !buf) {
        rc = LV_ENOMEM;
        goto out;
    }
    rc = check_entries(v, n, sizes, &total, err, errlen);
    if (rc)
        goto out;
    sink_init(&sink, fd);
    rc = open_writer(fmt, &sink, &a, err, errlen);
    if (rc)
        goto out;
    opened = 1;
    for (size_t i = 0; i < n; i++) {
        rc = write_one(a, &v[i], sizes[i], buf, &done, total, progress, arg, &xxh[i], err, errlen);
        if (rc)
            goto out;
    }
    man = manifest_text(v, n, sizes, xxh);
    if (!man) {
        rc = LV_ENOMEM;
        goto out;
    }
    rc = write_manifest_entry(a, man, err, errlen);
    if (rc)
        goto out;
    opened = 0;
    if (archive_write_close(a) != ARCHIVE_OK) {
        rc = LV_EIO;
        lv_seterr(err, errlen, "finishing the bundle: %s", aerr(a));
        goto out;
    }
out:
    if (a) {
        if (opened)
            archive_write_fail(a);
        archive_write_free(a);
    }
    free(man);
    free(buf);
    free(sizes);
    free(xxh);
    if (rc && err && !err[0])
        lv_seterr(err, errlen, "writing the bundle: %s", lv_strerror(rc));
    return rc;
}

/* ---------------------------------------------------------------- reading */

/* An entry extracted from the archive. */
struct xentry {
    char *name;            /* database name (after "db/") (owned) */
    uint64_t size;         /* bytes extracted */
    uint64_t xxh3;         /* XXH3-64 of the bytes */
    uint32_t page_size;    /* from the streamed header, 0 if not a SQLite header */
    uint64_t cksum;        /* database checksum of the bytes (valid if page_size and size % page_size == 0) */
    int used;              /* matched by a manifest entry */
};

/* Streaming page checksum: pages are assembled from arbitrary chunks. */
struct pagesum {
    uint8_t *page;         /* 64 KiB assembly buffer (owned) */
    uint32_t ps;           /* page size once known; 0 before the first 100 bytes */
    uint32_t filled;       /* bytes in page */
    uint32_t pgno;         /* number of the page being assembled (1-based) */
    int bad;               /* the header is not SQLite's: stop summing */
    uint64_t total;        /* XOR of the finished pages' checksums */
};

static void pagesum_feed(struct pagesum *s, const uint8_t *p, size_t len)
{
    while (len && !s->bad) {
        uint32_t need = (s->ps ? s->ps : 100) - s->filled;
        size_t k = len < need ? len : need;
        memcpy(s->page + s->filled, p, k);
        s->filled += (uint32_t)k;
        p += k;
        len -= k;
        if (!s->ps && s->filled == 100) {
            uint32_t ps = dbhdr_page_size(s->page);
            if (!dbhdr_magic_ok(s->page) || ps == 0)
                s->bad = 1;
            else
                s->ps = ps;
        } else if (s->ps && s->filled == s->ps) {
            s->total ^= cksum_page(s->pgno++, s->page, s->ps);
            s->filled = 0;
        }
    }
}

/* Create the directories of rel (all but its last component) under dfd,
 * refusing anything that is not a directory we can open without following
 * links.  Returns an fd of the parent directory (caller closes) or negative. */
static int make_parents(int dfd, const char *rel, const char **base)
{
    char comp[NAME_MAX + 1];
    const char *p = rel;
    int cur = dup(dfd);
    if (cur < 0)
        return lv_from_errno(errno);
    for (;;) {
        const char *slash = strchr(p, '/');
        if (!slash) {
            *base = p;
            return cur;
        }
        size_t cl = (size_t)(slash - p);
        memcpy(comp, p, cl);
        comp[cl] = 0;
        if (mkdirat(cur, comp, 0700) != 0 && errno != EEXIST) {
            int e = lv_from_errno(errno);
            close(cur);
            return e;
        }
        int next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(cur);
        if (next < 0)
            return lv_from_errno(e);
        cur = next;
        p = slash + 1;
    }
}

/* Extract the current entry's data as rel under dfd into x. */
static int extract_data(struct archive *a, int dfd, const char *rel, struct xentry *x, uint8_t *buf,
                        struct pagesum *ps, char *err, size_t errlen)
{
    const char *base = NULL;
    int pfd = make_parents(dfd, rel, &base), fd = -1, rc = 0;
    XXH3_state_t *st = XXH3_createState();

    if (pfd < 0) {
        rc = pfd;
        lv_seterr(err, errlen, "cannot create the directories of %s in the extraction directory: %s", rel,
               lv_strerror(rc));
        goto out;
    }
    if (!st) {
        rc = LV_ENOMEM;
        goto out;
    }
    XXH3_64bits_reset(st);
    fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = lv_from_errno(errno);
        lv_seterr(err, errlen, "cannot create %s in the extraction directory: %s", rel, strerror(errno));
        goto out;
    }
    for (;;) {
        la_ssize_t got = archive_read_data(a, buf, BUNDLE_CHUNK);
        if (got == 0)
            break;
        if (got < 0) {
            rc = LV_ECORRUPT;
            lv_seterr(err, errlen, "the bundle is damaged or truncated (in entry %s): %s", rel,
                   aerr(a));
            goto out;
        }
        XXH3_64bits_update(st, buf, (size_t)got);
        pagesum_feed(ps, buf, (size_t)got);
        for (size_t off = 0; off < (size_t)got;) {
            ssize_t w = write(fd, buf + off, (size_t)got - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = lv_from_errno(errno);
                lv_seterr(err, errlen, "writing %s in the extraction directory: %s", rel, strerror(errno));
                goto out;
            }
            off += (size_t)w;
        }
        x->size += (uint64_t)got;
    }
    x->xxh3 = XXH3_64bits_digest(st);
    x->page_size = ps->bad || ps->filled ? 0 : ps->ps;
    x->cksum = ps->total;
out:
    if (fd >= 0 && close(fd) != 0 && rc == 0) {
        rc = lv_from_errno(errno);
        lv_seterr(err, errlen, "writing %s in the extraction directory: %s", rel, strerror(errno));
    }
    if (pfd >= 0)
        close(pfd);
    XXH3_freeState(st);
    return rc;
}

/* The name of an archive entry without leading "./" components (borrowed). */
static const char *entry_name(const char *raw)
{
    while (raw[0] == '.' && raw[1] == '/')
        raw += 2;
    return raw;
}

/* 1 if a path has a ".." component. */
static int has_dotdot(const char *p)
{
    size_t n = strlen(p);
    for (size_t i = 0; i + 1 < n + 1; i++)
        if ((i == 0 || p[i - 1] == '/') && p[i] == '.' && i + 1 < n && p[i + 1] == '.' &&
            (i + 2 == n || p[i + 2] == '/'))
            return 1;
    return 0;
}

void bundle_free(struct bundle *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        free(b->v[i].name);
        free(b->v[i].path);
    }
    free(b->v);
    free(b->version);
    free(b);
}

/* The top of manifest.json: format name and version, and the databases
 * array into *arr (borrowed).  0 or negative. */
static int manifest_head(json_t *o, json_t **arr, char *err, size_t errlen)
{
    const char *fmt = json_string_value(json_object_get(o, "format"));
    json_int_t fv = json_integer_value(json_object_get(o, "format_version"));

    if (!fmt || strcmp(fmt, BUNDLE_FORMAT_NAME) != 0) {
        lv_seterr(err, errlen, "manifest.json: \"format\" is not \"%s\"; not a litevault bundle", BUNDLE_FORMAT_NAME);
        return LV_ECORRUPT;
    }
    if (fv != BUNDLE_FORMAT_VERSION) {
        lv_seterr(err, errlen, "manifest.json: format_version %lld is not supported (this litevault reads %d)",
               (long long)fv, BUNDLE_FORMAT_VERSION);
        return LV_EVERSION;
    }
    *arr = json_object_get(o, "databases");
    if (!json_is_array(*arr)) {
        lv_seterr(err, errlen, "manifest.json: \"databases\" is missing or not an array");
        return LV_ECORRUPT;
    }
    return 0;
}

/* The fields of database d (the i-th) of manifest.json into *bd, all but
 * name and path; *name borrows d's name.  0 or negative. */
static int manifest_db(json_t *d, size_t i, struct bundle_db *bd, const char **name, char *err, size_t errlen)
{
    const char *file = json_string_value(json_object_get(d, "file"));
    json_t *jt = json_object_get(d, "txid"), *jtu = json_object_get(d, "time_us"),
           *jps = json_object_get(d, "page_size"), *jpg = json_object_get(d, "pages"), *jsz = json_object_get(d, "size");
    char want_file[BUNDLE_NAME_MAX + 8];

    *name = json_string_value(json_object_get(d, "name"));
    if (!*name || !bundle_name_ok(*name)) {
        lv_seterr(err, errlen, "manifest.json: database #%zu has a missing or unsafe name '%s'", i + 1,
               *name ? *name : "");
        return LV_EREFUSED;
    }
    snprintf(want_file, sizeof want_file, "db/%s", *name);
    if (!file || strcmp(file, want_file) != 0 || !json_is_integer(jt) || !json_is_integer(jtu) ||
        !json_is_integer(jps) || !json_is_integer(jpg) || !json_is_integer(jsz) ||
        parse_hex(json_string_value(json_object_get(d, "id")), bd->id, 16) != 0 ||
        parse_hex64(json_string_value(json_object_get(d, "checksum")), &bd->cksum) != 0 ||
        parse_hex64(json_string_value(json_object_get(d, "xxh3")), &bd->xxh3) != 0 ||
        json_integer_value(jt) < 0 || json_integer_value(jsz) < 0 || json_integer_value(jpg) < 0 ||
        json_integer_value(jpg) > UINT32_MAX || !dbhdr_page_size_ok((uint32_t)json_integer_value(jps))) {
        lv_seterr(err, errlen, "manifest.json: database %s: a field is missing or malformed (file, id, txid, "
                            "time_us, checksum, page_size, pages, size, xxh3)", *name);
        return LV_ECORRUPT;
    }
    bd->txid = (uint64_t)json_integer_value(jt);
    bd->time_us = json_integer_value(jtu);
    bd->page_size = (uint32_t)json_integer_value(jps);
    bd->db_pages = (uint32_t)json_integer_value(jpg);
    bd->size = (uint64_t)json_integer_value(jsz);
    return 0;
}

/* The extracted entry of bd among xs[nx] must be there and match it
 * (size, XXH3, page size, database checksum); marks it used.  0 or negative. */
static int manifest_match(const struct bundle_db *bd, struct xentry *xs, size_t nx, char *err, size_t errlen)
{
    char hx[17], hy[17];
    struct xentry *x = NULL;

    if (bd->size != (uint64_t)bd->db_pages * bd->page_size) {
        lv_seterr(err, errlen, "manifest.json: database %s: size %llu is not pages %u x page_size %u", bd->name,
               (unsigned long long)bd->size, bd->db_pages, bd->page_size);
        return LV_ECORRUPT;
    }
    for (size_t j = 0; j < nx; j++)
        if (strcmp(xs[j].name, bd->name) == 0)
            x = &xs[j];
    if (!x) {
        lv_seterr(err, errlen, "manifest.json lists %s but the bundle has no entry db/%s", bd->name, bd->name);
        return LV_EMISMATCH;
    }
    x->used = 1;
    if (x->size != bd->size) {
        lv_seterr(err, errlen, "checksum mismatch: entry db/%s has %llu bytes, the manifest says %llu", bd->name,
               (unsigned long long)x->size, (unsigned long long)bd->size);
        return LV_EMISMATCH;
    }
    if (x->xxh3 != bd->xxh3) {
        lv_seterr(err, errlen, "checksum mismatch: entry db/%s has XXH3 %s, the manifest says %s", bd->name,
               cksum_hex(x->xxh3, hx), cksum_hex(bd->xxh3, hy));
        return LV_EMISMATCH;
    }
    if (x->page_size != bd->page_size) {
        lv_seterr(err, errlen, "entry db/%s is not a SQLite database with page size %u%s", bd->name, bd->page_size,
               x->page_size ? " (its header says otherwise)" : " (no valid SQLite header)");
        return LV_EMISMATCH;
    }
    if (bd->size && x->cksum != bd->cksum) {
        lv_seterr(err, errlen, "checksum mismatch: entry db/%s has database checksum %s, the manifest says %s",
               bd->name, cksum_hex(x->cksum, hx), cksum_hex(bd->cksum, hy));
        return LV_EMISMATCH;
    }
    return 0;
}

/* Validate the manifest and the extracted entries against each other. */
static int check_manifest(const char *text, size_t len, const char *dir, struct xentry *xs, size_t nx,
                          struct bundle **out, char *err, size_t errlen)
{
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je), *arr = NULL, *d;
    struct bundle *b = NULL;
    size_t i;
    int rc = 0;

    if (!o || !json_is_object(o)) {
        lv_seterr(err, errlen, "manifest.json is not valid JSON (line %d: %s)", je.line, je.text);
        rc = LV_ECORRUPT;
        goto out;
    }
    if ((rc = manifest_head(o, &arr, err, errlen)))
        goto out;
    b = calloc(1, sizeof *b);
    if (!b || !(b->v = calloc(json_array_size(arr) + 1, sizeof *b->v))) {
        rc = LV_ENOMEM;
        goto out;
    }
    const char *ver = json_string_value(json_object_get(o, "litevault_version"));
    b->version = strdup(ver ? ver : "unknown");
    b->created_us = json_integer_value(json_object_get(o, "created_us"));
    json_array_foreach(arr, i, d)
    {
        struct bundle_db *bd = &b->v[b->n];
        const char *name;

        if ((rc = manifest_db(d, i, bd, &name, err, errlen)))
            goto out;
        for (size_t j = 0; j < b->n; j++)
            if (strcmp(b->v[j].name, name) == 0) {
                lv_seterr(err, errlen, "manifest.json lists database %s twice", name);
                rc = LV_ECORRUPT;
                goto out;
            }
        bd->name = strdup(name);
        b->n++;
        if (!bd->name || asprintf(&bd->path, "%s/db/%s", dir, name) < 0) {
            bd->path = NULL;
            rc = LV_ENOMEM;
            goto out;
        }
        if ((rc = manifest_match(bd, xs, nx, err, errlen)))
            goto out;
    }
    for (i = 0; i < nx; i++)
        if (!xs[i].used) {
            lv_seterr(err, errlen, "the bundle holds db/%s, which manifest.json does not list", xs[i].name);
            rc = LV_EMISMATCH;
            goto out;
        }
    *out = b;
    b = NULL;
out:
    bundle_free(b);
    json_decref(o);
    return rc;
}

/* Directories (from a re-packed bundle) carry nothing: only "", "db" or
 * safe names under db/ are skipped (1); anything else is refused. */
static int dir_entry_check(const char *raw, const char *name, char *err, size_t errlen)
{
    size_t l = strlen(name);
    char tmp[BUNDLE_NAME_MAX + 8];

    if (l && name[l - 1] == '/')
        l--;
    if (l >= sizeof tmp) {
        lv_seterr(err, errlen, "refused: entry %s has a name that is too long", raw);
        return LV_EREFUSED;
    }
    memcpy(tmp, name, l);
    tmp[l] = 0;
    if (l == 0 || strcmp(tmp, ".") == 0 || strcmp(tmp, "db") == 0 ||
        (strncmp(tmp, "db/", 3) == 0 && bundle_name_ok(tmp + 3)))
        return 1;
    lv_seterr(err, errlen, "refused: unexpected directory entry %s (a name with '..' or outside db/?)", raw);
    return LV_EREFUSED;
}

/* Check the name and type of the entry ae (see the design comment): 0 for a
 * file to read (manifest.json or db/NAME), 1 for a directory entry to skip,
 * or LV_EREFUSED with the message in err. */
static int entry_check(struct archive_entry *ae, const char *raw, const char *name, char *err, size_t errlen)
{
    mode_t type = archive_entry_filetype(ae);

    if (archive_entry_hardlink(ae)) {
        lv_seterr(err, errlen, "refused: entry %s is a hard link (to %s); bundles hold regular files only", raw,
               archive_entry_hardlink(ae));
        return LV_EREFUSED;
    }
    if (type == AE_IFLNK) {
        lv_seterr(err, errlen, "refused: entry %s is a symbolic link (to %s); bundles hold regular files only",
               raw, archive_entry_symlink(ae) ? archive_entry_symlink(ae) : "?");
        return LV_EREFUSED;
    }
    if (name[0] == '/') {
        lv_seterr(err, errlen, "refused: entry %s has an absolute name", raw);
        return LV_EREFUSED;
    }
    if (has_dotdot(name)) {
        lv_seterr(err, errlen, "refused: entry %s has a '..' component (path traversal)", raw);
        return LV_EREFUSED;
    }
    if (type == AE_IFDIR)
        return dir_entry_check(raw, name, err, errlen);
    if (strcmp(name, "manifest.json") != 0 && !(strncmp(name, "db/", 3) == 0 && bundle_name_ok(name + 3))) {
        lv_seterr(err, errlen, "refused: entry %s is not a safe name (it must be manifest.json or db/NAME, "
                            "relative, without '..')", raw);
        return LV_EREFUSED;
    }
    if (type != AE_IFREG) {
        lv_seterr(err, errlen, "refused: entry %s is not a regular file (type 0%o)", raw, (unsigned)type);
        return LV_EREFUSED;
    }
    return 0;
}

/* What bundle_extract has read so far. */
struct xstate {
    struct archive *a;     /* the archive being read */
    int dfd;               /* the extraction directory */
    struct xentry *xs;     /* db/ entries extracted (owned) */
    size_t nx, capx;       /* used / allocated entries of xs */
    char *man;             /* manifest.json's bytes (owned), NULL until read */
    size_t mlen;           /* their length */
    uint8_t *buf;          /* copy buffer, BUNDLE_CHUNK bytes */
    struct pagesum ps;     /* page checksums of the entry being extracted */
};

/* Read manifest.json (the entry ae) into x->man.  0 or negative. */
static int read_manifest(struct xstate *x, struct archive_entry *ae, char *err, size_t errlen)
{
    if (x->man) {
        lv_seterr(err, errlen, "refused: the bundle holds manifest.json twice");
        return LV_EREFUSED;
    }
    if (archive_entry_size(ae) > (la_int64_t)BUNDLE_MANIFEST_MAX) {
        lv_seterr(err, errlen, "manifest.json is larger than %u bytes", BUNDLE_MANIFEST_MAX);
        return LV_ECORRUPT;
    }
    x->man = malloc(BUNDLE_MANIFEST_MAX + 1);
    if (!x->man)
        return LV_ENOMEM;
    for (;;) {
        la_ssize_t got = archive_read_data(x->a, x->man + x->mlen, BUNDLE_MANIFEST_MAX + 1 - x->mlen);
        if (got == 0)
            return 0;
        if (got < 0 || x->mlen + (size_t)got > BUNDLE_MANIFEST_MAX) {
            lv_seterr(err, errlen, "the bundle is damaged or truncated (in manifest.json): %s",
                   got < 0 ? aerr(x->a) : "too large");
            return LV_ECORRUPT;
        }
        x->mlen += (size_t)got;
    }
}

/* Extract the entry db/NAME (name) into the directory, hashing it.  0 or negative. */
static int read_db_entry(struct xstate *x, const char *name, char *err, size_t errlen)
{
    for (size_t j = 0; j < x->nx; j++)
        if (strcmp(x->xs[j].name, name + 3) == 0) {
            lv_seterr(err, errlen, "refused: the bundle holds %s twice", name);
            return LV_EREFUSED;
        }
    if (lv_grow((void **)&x->xs, &x->capx, x->nx, sizeof *x->xs, 8) != 0)
        return LV_ENOMEM;
    memset(&x->xs[x->nx], 0, sizeof x->xs[x->nx]);
    x->xs[x->nx].name = strdup(name + 3);
    if (!x->xs[x->nx].name)
        return LV_ENOMEM;
    x->nx++;
    x->ps.ps = x->ps.filled = 0;
    x->ps.pgno = 1;
    x->ps.bad = 0;
    x->ps.total = 0;
    return extract_data(x->a, x->dfd, name, &x->xs[x->nx - 1], x->buf, &x->ps, err, errlen);
}

/* Open the bundle on fd for reading (any of the formats).  0 or negative. */
static int open_bundle(struct archive *a, int fd, char *err, size_t errlen)
{
    archive_read_support_filter_zstd(a);
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_none(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK) {
        lv_seterr(err, errlen, "not a readable bundle (damaged or truncated, or not a tar, tar.zst or tar.gz file): %s", aerr(a));
        return LV_ECORRUPT;
    }
    return 0;
}

/* Read every entry: check it, then read manifest.json or extract db/NAME.  0 or negative. */
static int read_entries(struct xstate *x, char *err, size_t errlen)
{
    struct archive_entry *ae;
    int r, rc;

    while ((r = archive_read_next_header(x->a, &ae)) != ARCHIVE_EOF) {
        const char *raw, *name;
        if (r != ARCHIVE_OK) {
            lv_seterr(err, errlen, "the bundle is damaged or truncated: %s", aerr(x->a));
            return LV_ECORRUPT;
        }
        raw = archive_entry_pathname(ae);
        if (!raw) {
            lv_seterr(err, errlen, "refused: an entry has no usable name");
            return LV_EREFUSED;
        }
        name = entry_name(raw);
        rc = entry_check(ae, raw, name, err, errlen);
        if (rc == 1)
            continue;
        if (rc == 0)
            rc = strcmp(name, "manifest.json") == 0 ? read_manifest(x, ae, err, errlen)
                                                     : read_db_entry(x, name, err, errlen);
        if (rc)
            return rc;
    }
    if (!x->man) {
        lv_seterr(err, errlen, "the bundle has no manifest.json (truncated, or not made by litevault export)");
        return LV_ECORRUPT;
    }
    return 0;
}

int bundle_extract(int fd, const char *dir, struct bundle **out, char *err, size_t errlen)
{
    struct xstate x = {.a = archive_read_new(), .dfd = -1, .buf = malloc(BUNDLE_CHUNK),
                       .ps = {.page = malloc(65536)}};
    int rc = 0;

    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    if (!x.a || !x.buf || !x.ps.page) {
        rc = LV_ENOMEM;
        goto out;
    }
    x.dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (x.dfd < 0) {
        rc = lv_from_errno(errno);
        lv_seterr(err, errlen, "extraction directory %s: %s", dir, strerror(errno));
        goto out;
    }
    rc = open_bundle(x.a, fd, err, errlen);
    if (rc == 0)
        rc = read_entries(&x, err, errlen);
    if (rc == 0)
        rc = check_manifest(x.man, x.mlen, dir, x.xs, x.nx, out, err, errlen);
out:
    if (x.a) {
        archive_read_close(x.a);
        archive_read_free(x.a);
    }
    if (x.dfd >= 0)
        close(x.dfd);
    for (size_t j = 0; j < x.nx; j++)
        free(x.xs[j].name);
    free(x.xs);
    free(x.man);
    free(x.buf);
    free(x.ps.page);
    if (rc && err && !err[0])
        lv_seterr(err, errlen, "reading the bundle: %s", lv_strerror(rc));
    return rc;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

void bundle_rmtree(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
