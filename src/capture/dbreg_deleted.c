/*
 * dbreg_deleted.c -- the databases this node deleted or renamed away whose
 * archive tombstones (<name>/deleted.json, FORMAT.md "Deleted databases")
 * may not be written yet.
 *
 * FORMAT.  data.dir/deleted/<dbid>-<h>.json, one per name a database left,
 * where <h> is XXH64 (seed 0) of the name in 16 lower-case hex digits, one
 * line of JSON published atomically (publish_buf):
 *   {"name": "<database name>", "dbid": "<32 lower-case hex>", "deleted_us": <int>,
 *    "reason": "deleted" | "renamed" | "replaced"}
 * "reason" absent: "deleted" in <dbid>.json (only deletions were noted
 * then), "renamed" in <dbid>-<h>.json (renames were noted too: the
 * reason that claims least).
 * The file is named by the ID and a hash of the name (its key,
 * dbreg_deleted_key), so a name never needs escaping here, and a database
 * renamed away and then deleted keeps a note for each name it left.
 * <dbid>.json (written before renames were noted) is read the same way,
 * with the key <dbid>.
 *
 * LIFE.  Written when a database leaves a name: the registry retires it
 * (retire_locked: an unlink, "deleted", or a database replaced by a rename
 * over it, "replaced") or renames it away (rename_one_locked, "renamed"), on a primary as on a
 * replica that applied a DROP or a RENAME; queued under the registry's
 * lock and written once it is released (dbreg.c, noteq_flush), as each is
 * an fsynced publish.  Read by the archiver at each
 * round and at its shutdown drain (dbreg_deleted_list); removed once every
 * archive destination has handled it (dbreg_deleted_done).  So a
 * tombstone survives what the archiver's own notice of a deletion
 * (drop_unseen) does not: a crash or a stop before its next round, and a
 * store that fails the PUT.  A replica's files wait until it is promoted
 * and archives.
 *
 * INVARIANTS
 *   T1. A file exists from the moment its database left the name until
 *       every destination handled it: wrote the tombstone, or found it
 *       needs none (the database listed again under that name and ID,
 *       nothing archived under the name, or current.json naming another
 *       lineage: a tombstone counts only for the lineage current.json
 *       names, so writing one for an older note would undo a newer one).
 *   T2. A file that cannot be parsed is logged and left alone (never
 *       deleted: it may be a newer format).
 */
#include "capture/db.h"
#include "capture/db_impl.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/publish.h"
#include "base/sys.h"

void dbreg_deleted_dir(const char *data_dir, char *out, size_t n)
{
    snprintf(out, n, "%s/deleted", data_dir);
}

void dbreg_deleted_key(const char *name, const char *dbid, char *key, size_t n)
{
    snprintf(key, n, "%.32s-%016llx", dbid, (unsigned long long)XXH64(name, strlen(name), 0));
}

const char *dbreg_left_name(int reason)
{
    return reason == DBREG_LEFT_RENAMED ? "renamed" : reason == DBREG_LEFT_REPLACED ? "replaced" : "deleted";
}

void dbreg_deleted_note(struct dbreg *r, const char *name, const uint8_t id[16], int reason)
{
    char dir[PATH_MAX], path[PATH_MAX + 80], hex[33], key[sizeof ((struct dbreg_deleted *)0)->key];
    json_t *o;
    char *body = NULL;
    int rc = LV_ENOMEM;

    if (!r->deleted_notes)
        return; /* no archive configured */
    lv_hex(id, 16, hex);
    dbreg_deleted_key(name, hex, key, sizeof key);
    dbreg_deleted_dir(r->data_dir, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s.json", dir, key);
    o = json_pack("{s:s,s:s,s:I,s:s}", "name", name, "dbid", hex, "deleted_us", (json_int_t)lv_now_us(), "reason",
                  dbreg_left_name(reason));
    if (o && (body = json_dumps(o, JSON_COMPACT)) != NULL && (rc = sys_mkdir_p(dir)) == 0)
        rc = publish_buf(path, body, strlen(body));
    if (rc)
        LV_WARN("%s: cannot note its deletion in %s (%s): if the archiver has not marked it deleted by its "
                "next round, a seed or a promotion may bring it back from the archive",
                name, path, lv_strerror(rc));
    free(body);
    json_decref(o);
}

int dbreg_deleted_list(struct dbreg *r, struct dbreg_deleted **out, size_t *nout)
{
    char dir[PATH_MAX], path[PATH_MAX + 300];
    struct dbreg_deleted *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    DIR *dp;
    int rc = 0;

    *out = NULL;
    *nout = 0;
    dbreg_deleted_dir(r->data_dir, dir, sizeof dir);
    dp = opendir(dir);
    if (!dp)
        return errno == ENOENT ? 0 : lv_from_errno(errno);
    while ((e = readdir(dp)) != NULL) {
        size_t l = strlen(e->d_name);
        json_error_t jerr;
        json_t *o;
        const char *name, *dbid;
        if ((l != 37 && l != 54) || strcmp(e->d_name + l - 5, ".json") != 0 || (l == 54 && e->d_name[32] != '-'))
            continue; /* "." and "..", temporary files */
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        o = json_load_file(path, 0, &jerr);
        name = json_string_value(json_object_get(o, "name"));
        dbid = json_string_value(json_object_get(o, "dbid"));
        if (!name || !dbid || strlen(dbid) != 32 || strncmp(dbid, e->d_name, 32) != 0 || !*name ||
            strlen(name) >= sizeof v->name) {
            LV_WARN("%s: not a deleted database's note (%s); left alone (T2)", path,
                    o ? "expected {\"name\", \"dbid\", \"deleted_us\"}" : jerr.text);
            json_decref(o);
            continue;
        }
        if ((rc = lv_grow((void **)&v, &cap, n, sizeof *v, 8)) != 0) {
            json_decref(o);
            break;
        }
        snprintf(v[n].name, sizeof v[n].name, "%s", name);
        snprintf(v[n].dbid, sizeof v[n].dbid, "%s", dbid);
        snprintf(v[n].key, sizeof v[n].key, "%.*s", (int)(l - 5), e->d_name);
        v[n].deleted_us = json_integer_value(json_object_get(o, "deleted_us"));
        const char *why = json_string_value(json_object_get(o, "reason"));
        v[n].reason = !why && l == 37 ? DBREG_LEFT_DELETED : DBREG_LEFT_RENAMED; /* (else: the least claim) */
        for (int k = DBREG_LEFT_DELETED; why && k <= DBREG_LEFT_REPLACED; k++)
            if (strcmp(why, dbreg_left_name(k)) == 0)
                v[n].reason = k;
        n++;
        json_decref(o);
    }
    closedir(dp);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *nout = n;
    return 0;
}

void dbreg_deleted_done(struct dbreg *r, const char *key, int64_t deleted_us)
{
    char dir[PATH_MAX], path[PATH_MAX + 80];
    json_t *o;

    dbreg_deleted_dir(r->data_dir, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%.55s.json", dir, key);
    o = json_load_file(path, 0, NULL);
    if (o && json_integer_value(json_object_get(o, "deleted_us")) != deleted_us) {
        json_decref(o);
        return; /* rewritten since it was read: the database left the name again */
    }
    json_decref(o);
    if (unlink(path) != 0 && errno != ENOENT)
        LV_WARN("unlink %s: %s (the archiver will write its tombstone again)", path, strerror(errno));
}
