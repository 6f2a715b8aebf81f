/*
 * dest.h -- an archive destination for a test: a file:// directory or a
 * bucket on a fresh s3rver, with the `archive:` YAML that points a node at it.
 *
 * DESIGN.  The archive behaves the same on every store, so the archive
 * tests run once per kind of destination.  Such a "twin" test is written
 * once, taking an lvdest, and instantiated per row of LVDEST_KINDS, an
 * X-macro table: each row becomes its own Criterion test named
 * <test>_<row> (basic_file, basic_s3), so the report names the case and the
 * test count stays one per case.  d->name ("file", "s3") is for messages.
 * Destinations are owned by the registry (s3rver stopped, directory removed
 * at lvt_fini).
 */
#ifndef TESTLIB_DEST_H
#define TESTLIB_DEST_H

#include <stddef.h>

#include "s3rver.h"

enum lvdest_kind {
    LVDEST_FILE, /* file://<temporary directory> */
    LVDEST_S3,   /* s3://lvarch/pre on its own s3rver */
};

/* The table of destination kinds: X(row suffix, kind) per row. */
#define LVDEST_KINDS(X) X(file, LVDEST_FILE) X(s3, LVDEST_S3)

/* One destination. */
struct lvdest {
    enum lvdest_kind kind;  /* which kind */
    const char *name;       /* "file" or "s3" (static) */
    char url[512];          /* URL as the daemon and `restore --from` get it */
    char root[300];         /* file://: the directory holding the objects; s3: "" */
    struct s3rver *s3;      /* s3: its server (registry-owned); file://: NULL */
};

/* A new destination of kind (s3: starts an s3rver); owned by the registry. */
struct lvdest *lvdest_new(enum lvdest_kind kind);

/* "archive:\n  - url: ...\n" (+ S3RVER_KEYS for s3) + extra_keys (lines "    key: value\n",
 * may be NULL) into buf; returns buf.  More destinations can be appended with lvdest_item. */
char *lvdest_yaml(const struct lvdest *d, const char *extra_keys, char *buf, size_t len);

/* One "  - url: ..." item of the archive: list (with credentials and extra_keys) into buf. */
char *lvdest_item(const struct lvdest *d, const char *extra_keys, char *buf, size_t len);

/* lvstore_open(d->url). The caller closes the store. */
struct store *lvdest_open(const struct lvdest *d);

#endif /* TESTLIB_DEST_H */
