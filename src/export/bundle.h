/*
 * bundle.h -- tar bundles of database images (libarchive).
 *
 * A bundle is a tar archive (plain, zstd or gzip compressed, chosen by the
 * output name's extension) holding one regular file per database under
 * "db/<name>" and, as its last entry, "manifest.json" (docs/FORMAT.md,
 * "Export bundles").  The manifest names every database with its ID,
 * TXID, commit time, database checksum, page size and size, plus the
 * XXH3-64 of the entry file's bytes, so a reader detects a damaged or
 * tampered entry before it changes anything.
 *
 * Writing streams: each image is read once, hashed while it is archived,
 * and the manifest is written last (so fd may be a pipe).
 *
 * Reading (bundle_extract) is defensive: it refuses absolute names, "..",
 * empty or "." components, links, devices, directories-as-files, duplicate
 * entries, anything but "db/..." regular files and "manifest.json";
 * extracts into a caller-provided empty directory with O_NOFOLLOW|O_EXCL;
 * then checks that the entry set equals the manifest's, that each file's
 * size and XXH3-64 match, and that each image's database checksum, page
 * size and page count match the manifest.
 */
#ifndef BUNDLE_H
#define BUNDLE_H

#include <stddef.h>
#include <stdint.h>

/* One database to store (all fields borrowed by bundle_write). */
struct bundle_entry {
    const char *name;      /* database name relative to the mount ("dir/app.db") */
    const char *path;      /* file holding the raw image to store */
    uint8_t id[16];        /* database ID */
    uint64_t txid;         /* TXID of the image */
    int64_t time_us;       /* its commit time */
    uint64_t cksum;        /* database checksum (cksum.h) */
    uint32_t page_size;    /* page size */
    uint32_t db_pages;     /* pages */
};

/* Progress of bundle_write: bytes of images archived so far of the total. */
typedef void (*bundle_progress_fn)(void *arg, uint64_t done_bytes, uint64_t total_bytes);

/* Output formats. */
enum bundle_format {
    BUNDLE_TAR = 0,   /* .tar */
    BUNDLE_TAR_ZST,   /* .tar.zst */
    BUNDLE_TAR_GZ,    /* .tar.gz */
};

/* Format of a name by its extension (".tar", ".tar.zst", ".tar.gz"), or
 * of a bare format word ("tar", "tar.zst", "tar.gz").  0 or LV_EINVAL. */
int bundle_format_of(const char *name, enum bundle_format *fmt);

/* 1 if name is a safe database name for a bundle: relative, no empty, "." or ".."
 * components, no control characters, at most 1000 bytes, and not a -wal, -journal or
 * -shm name.  0 otherwise. */
int bundle_name_ok(const char *name);

/* Write a bundle holding the entries plus manifest.json to fd; the format follows the
 * name's extension: .tar, .tar.zst or .tar.gz (LV_EINVAL otherwise).  Entry names must be
 * safe relative names (no leading '/', no "." or ".." components; LV_EINVAL).  fd is not
 * closed nor fsynced.  progress may be NULL.  0 or negative LV_E* with a message in err. */
int bundle_write(int fd, const char *name_for_format, const struct bundle_entry *v, size_t n,
                 bundle_progress_fn progress, void *arg, char *err, size_t errlen);

/* One database of an extracted bundle (owned by struct bundle). */
struct bundle_db {
    char *name;            /* database name ("dir/app.db"), validated safe (malloc'ed) */
    char *path;            /* extracted file: dir/db/<name> (malloc'ed) */
    uint8_t id[16];        /* database ID */
    uint64_t txid;         /* TXID of the image */
    int64_t time_us;       /* its commit time */
    uint64_t cksum;        /* database checksum, verified against the extracted file */
    uint32_t page_size;    /* page size, verified against the file's header */
    uint32_t db_pages;     /* pages, verified: size == db_pages * page_size */
    uint64_t size;         /* bytes */
    uint64_t xxh3;         /* XXH3-64 of the file bytes, verified */
};

/* A verified, extracted bundle (bundle_free releases it; the files stay). */
struct bundle {
    char *version;         /* litevault version that wrote it (malloc'ed) */
    int64_t created_us;    /* when it was written */
    struct bundle_db *v;   /* databases in manifest order (malloc'ed array) */
    size_t n;              /* entries in v */
};

/* Read a bundle (tar, tar.zst or tar.gz, detected from the data) from fd and
 * extract it into dir (an existing empty directory outside the mount), with
 * every check listed above.  On success *out is a verified bundle (caller
 * frees with bundle_free).  On failure nothing is returned, files already
 * extracted stay in dir (the caller removes dir), err names the problem:
 * LV_EREFUSED (unsafe entry), LV_ECORRUPT (truncated or damaged archive,
 * bad manifest), LV_EMISMATCH (checksum, size or entry-set mismatch),
 * LV_EIO/LV_ENOSPC (writing dir), LV_ENOMEM. */
int bundle_extract(int fd, const char *dir, struct bundle **out, char *err, size_t errlen);

/* Free a bundle from bundle_extract (NULL is fine). */
void bundle_free(struct bundle *b);

/* Remove a directory tree made by bundle_extract (no symlinks are followed). */
void bundle_rmtree(const char *dir);

#endif /* BUNDLE_H */
