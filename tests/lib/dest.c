/*
 * dest.c -- see dest.h.
 */
#include "dest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "files.h"
#include "fixture.h"

struct lvdest *lvdest_new(enum lvdest_kind kind)
{
    struct lvdest *d = calloc(1, sizeof *d);
    cr_assert_not_null(d);
    lvt_defer(LVT_UNDO, free, d);
    d->kind = kind;
    if (kind == LVDEST_S3) {
        d->name = "s3";
        d->s3 = s3rver_start("lvarch");
        s3rver_url(d->s3, "pre", d->url, sizeof d->url);
    } else {
        d->name = "file";
        snprintf(d->root, sizeof d->root, "%s", lvt_tmpdir("archive"));
        snprintf(d->url, sizeof d->url, "file://%s", d->root);
    }
    return d;
}

char *lvdest_item(const struct lvdest *d, const char *extra_keys, char *buf, size_t len)
{
    snprintf(buf, len, "  - url: \"%s\"\n%s%s", d->url, d->s3 ? S3RVER_KEYS : "", extra_keys ? extra_keys : "");
    return buf;
}

char *lvdest_yaml(const struct lvdest *d, const char *extra_keys, char *buf, size_t len)
{
    char item[2048];
    snprintf(buf, len, "archive:\n%s", lvdest_item(d, extra_keys, item, sizeof item));
    return buf;
}

struct store *lvdest_open(const struct lvdest *d)
{
    return lvstore_open(d->url);
}
