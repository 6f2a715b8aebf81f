/*
 * current.c -- encode/decode of the current-lineage pointer
 * <db name>/current.json (docs/FORMAT.md, "Current lineage pointer"):
 *
 *   {"dbid":"<32 lower-case hex>","format":1,"updated":"2026-11-24T10:00:00.123456Z"}
 *
 * All three members are required and no others are allowed, so a reader
 * never silently misreads a newer layout (a larger "format" is reported as
 * an unsupported version, not as corruption).  The object is tiny and is
 * replaced atomically by store_put, so it carries no checksum: a damaged
 * pointer fails to parse or names a lineage whose manifest does not exist
 * or names another ID, and the restore then reports it.
 *
 * <db name>/deleted.json (FORMAT.md, "Deleted databases") has the same
 * shape with "deleted" for "updated": the lineage dbid names left this
 * name at that time; format 2 adds "reason", "deleted", "replaced" or
 * "renamed" (why it left; format 1 objects, which lack it, decode with
 * reason "").  Both
 * share ptr_encode/ptr_decode.
 */
#include "archive/current.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lv.h"
#include "archive/manifest.h"

/* The pointer objects (current.json, deleted.json): {"dbid", "format", and
 * one time member}, nothing else. */
static char *ptr_key(const char *name, const char *object)
{
    char *k = NULL;

    if (asprintf(&k, "%s/%s", name, object) < 0)
        return NULL;
    return k;
}

/* reason: deleted.json's (format 2), or NULL (current.json, format 1). */
static int ptr_encode(const char *dbid, const char *time_member, int64_t time_us, const char *reason, char **out,
                      size_t *len)
{
    char tb[40], *s;
    json_t *o;
    size_t n;

    *out = NULL;
    *len = 0;
    if (!manifest_id_ok(dbid))
        return LV_EINVAL;
    o = json_pack("{s:i,s:s,s:s}", "format", reason ? ARCHIVE_DELETED_FORMAT : ARCHIVE_CURRENT_FORMAT, "dbid", dbid,
                  time_member, lv_fmt_time(time_us, tb, sizeof tb));
    if (o && reason && json_object_set_new(o, "reason", json_string(reason)) != 0) {
        json_decref(o);
        o = NULL;
    }
    if (!o)
        return LV_ENOMEM;
    s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!s)
        return LV_ENOMEM;
    n = strlen(s);
    *out = realloc(s, n + 2);
    if (!*out) {
        free(s);
        return LV_ENOMEM;
    }
    (*out)[n] = '\n';
    (*out)[n + 1] = '\0';
    *len = n + 1;
    return 0;
}

/* Decode object (its name, for messages) with time member time_member into
 * *format (at most max_format), dbid (33 bytes) and *time_us; reason (16
 * bytes, or NULL: no such member): deleted.json's "reason", required from
 * format 2 on. */
static int ptr_decode(const void *buf, size_t len, const char *object, const char *time_member, int max_format,
                      int *format, char *dbid, int64_t *time_us, char *reason, char *err, size_t errlen)
{
    json_error_t je;
    json_t *o, *v;
    const char *k;
    int rc = LV_ECORRUPT;

    *format = 0;
    dbid[0] = '\0';
    *time_us = 0;
    o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        lv_seterr(err, errlen, "%s: not valid JSON: %s (line %d)", object, je.text, je.line);
        return LV_ECORRUPT;
    }
    if (!json_is_object(o)) {
        lv_seterr(err, errlen, "%s: not a JSON object", object);
        goto out;
    }
    v = json_object_get(o, "format");
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
        lv_seterr(err, errlen, "%s: \"format\" missing or not a positive integer", object);
        goto out;
    }
    if (json_integer_value(v) > max_format) {
        lv_seterr(err, errlen, "%s: unsupported format %lld (this litevault reads format %d)", object,
                  (long long)json_integer_value(v), max_format);
        rc = LV_EVERSION;
        goto out;
    }
    *format = (int)json_integer_value(v);
    json_object_foreach(o, k, v) {
        if (strcmp(k, "format") && strcmp(k, "dbid") && strcmp(k, time_member) &&
            (!reason || *format < 2 || strcmp(k, "reason"))) {
            lv_seterr(err, errlen, "%s: unknown member \"%s\"", object, k);
            goto out;
        }
    }
    if (reason && *format >= 2) {
        const char *r = json_string_value(json_object_get(o, "reason"));
        if (!r) {
            lv_seterr(err, errlen, "%s: \"reason\" missing or not a string", object);
            goto out;
        }
        if (strcmp(r, ARCHIVE_LEFT_DELETED) && strcmp(r, ARCHIVE_LEFT_RENAMED) && strcmp(r, ARCHIVE_LEFT_REPLACED)) {
            lv_seterr(err, errlen, "%s: unknown reason \"%.40s\" (this litevault knows %s, %s and %s)", object, r,
                      ARCHIVE_LEFT_DELETED, ARCHIVE_LEFT_RENAMED, ARCHIVE_LEFT_REPLACED);
            rc = LV_EVERSION;
            goto out;
        }
        snprintf(reason, 16, "%s", r);
    }
    v = json_object_get(o, "dbid");
    if (!json_is_string(v) || !manifest_id_ok(json_string_value(v))) {
        lv_seterr(err, errlen, "%s: \"dbid\" missing or not 32 lower-case hex digits", object);
        goto out;
    }
    memcpy(dbid, json_string_value(v), 33);
    v = json_object_get(o, time_member);
    if (!json_is_string(v) || lv_parse_time(json_string_value(v), time_us) != 0) {
        lv_seterr(err, errlen, "%s: \"%s\" missing or not an RFC 3339 time", object, time_member);
        goto out;
    }
    rc = 0;
out:
    json_decref(o);
    if (rc) {
        *format = 0;
        dbid[0] = '\0';
        *time_us = 0;
        if (reason)
            reason[0] = '\0';
    }
    return rc;
}

char *archive_current_key(const char *name)
{
    return ptr_key(name, ARCHIVE_CURRENT_OBJECT);
}

int archive_current_encode(const struct archive_current *c, char **out, size_t *len)
{
    return ptr_encode(c->dbid, "updated", c->updated_us, NULL, out, len);
}

int archive_current_decode(const void *buf, size_t len, struct archive_current *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    return ptr_decode(buf, len, "current.json", "updated", ARCHIVE_CURRENT_FORMAT, &c->format, c->dbid, &c->updated_us,
                      NULL, err, errlen);
}

char *archive_deleted_key(const char *name)
{
    return ptr_key(name, ARCHIVE_DELETED_OBJECT);
}

int archive_deleted_encode(const struct archive_deleted *t, char **out, size_t *len)
{
    if (strcmp(t->reason, ARCHIVE_LEFT_DELETED) && strcmp(t->reason, ARCHIVE_LEFT_RENAMED) &&
        strcmp(t->reason, ARCHIVE_LEFT_REPLACED))
        return LV_EINVAL;
    return ptr_encode(t->dbid, "deleted", t->deleted_us, t->reason, out, len);
}

int archive_deleted_decode(const void *buf, size_t len, struct archive_deleted *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    return ptr_decode(buf, len, "deleted.json", "deleted", ARCHIVE_DELETED_FORMAT, &t->format, t->dbid,
                      &t->deleted_us, t->reason, err, errlen);
}
