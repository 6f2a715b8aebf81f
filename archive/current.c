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
 */
#include "archive/current.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lv.h"
#include "archive/manifest.h"

char *archive_current_key(const char *name)
{
    char *k = NULL;

    if (asprintf(&k, "%s/%s", name, ARCHIVE_CURRENT_OBJECT) < 0)
        return NULL;
    return k;
}

int archive_current_encode(const struct archive_current *c, char **out, size_t *len)
{
    char tb[40], *s;
    json_t *o;
    size_t n;

    *out = NULL;
    *len = 0;
    if (!manifest_id_ok(c->dbid))
        return LV_EINVAL;
    o = json_pack("{s:i,s:s,s:s}", "format", ARCHIVE_CURRENT_FORMAT, "dbid", c->dbid, "updated",
                  lv_fmt_time(c->updated_us, tb, sizeof tb));
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

int archive_current_decode(const void *buf, size_t len, struct archive_current *c, char *err, size_t errlen)
{
    json_error_t je;
    json_t *o, *v;
    const char *k;
    int rc = LV_ECORRUPT;

    memset(c, 0, sizeof *c);
    o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        lv_seterr(err, errlen, "current.json: not valid JSON: %s (line %d)", je.text, je.line);
        return LV_ECORRUPT;
    }
    if (!json_is_object(o)) {
        lv_seterr(err, errlen, "current.json: not a JSON object");
        goto out;
    }
    v = json_object_get(o, "format");
    if (!json_is_integer(v) || json_integer_value(v) < 1) {
        lv_seterr(err, errlen, "current.json: \"format\" missing or not a positive integer");
        goto out;
    }
    if (json_integer_value(v) > ARCHIVE_CURRENT_FORMAT) {
        lv_seterr(err, errlen, "current.json: unsupported format %lld (this litevault reads format %d)",
               (long long)json_integer_value(v), ARCHIVE_CURRENT_FORMAT);
        rc = LV_EVERSION;
        goto out;
    }
    c->format = (int)json_integer_value(v);
    json_object_foreach(o, k, v) {
        if (strcmp(k, "format") && strcmp(k, "dbid") && strcmp(k, "updated")) {
            lv_seterr(err, errlen, "current.json: unknown member \"%s\"", k);
            goto out;
        }
    }
    v = json_object_get(o, "dbid");
    if (!json_is_string(v) || !manifest_id_ok(json_string_value(v))) {
        lv_seterr(err, errlen, "current.json: \"dbid\" missing or not 32 lower-case hex digits");
        goto out;
    }
    memcpy(c->dbid, json_string_value(v), 33);
    v = json_object_get(o, "updated");
    if (!json_is_string(v) || lv_parse_time(json_string_value(v), &c->updated_us) != 0) {
        lv_seterr(err, errlen, "current.json: \"updated\" missing or not an RFC 3339 time");
        goto out;
    }
    rc = 0;
out:
    json_decref(o);
    if (rc)
        memset(c, 0, sizeof *c);
    return rc;
}
