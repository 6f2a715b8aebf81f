/*
 * cli.c -- see cli.h.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "files.h"
#include "http.h"
#include "sql.h"
#include "util.h"

/* "$LITEVAULT CMD -c 'CONFIG' ARGS" (malloc'ed). */
static char *cli_line(const struct lvnode *n, const char *cmd, const char *fmt, va_list ap)
{
    char *args = NULL, *line = NULL;
    cr_assert(vasprintf(&args, fmt, ap) >= 0);
    cr_assert(asprintf(&line, "\"$LITEVAULT\" %s -c '%s' %s", cmd, n->config, args) >= 0);
    free(args);
    return line;
}

int lvnode_cli(const struct lvnode *n, char **out, const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = cli_line(n, cmd, fmt, ap);
    va_end(ap);
    int rc = run_cmd(out, "%s 2>&1", line);
    free(line);
    return rc;
}

json_t *lvnode_cli_json(const struct lvnode *n, int *rc, const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = cli_line(n, cmd, fmt, ap);
    va_end(ap);
    char *out = NULL;
    int r = run_cmd(&out, "%s --json 2>/dev/null", line);
    free(line);
    json_t *j = r == 0 && out ? json_loads(out, JSON_DECODE_ANY, NULL) : NULL;
    free(out);
    if (rc)
        *rc = r;
    return j;
}

int lvnode_replay(const struct lvnode *n, const char *db, uint64_t txid, const char *outpath)
{
    char tx[64] = "";
    if (txid)
        snprintf(tx, sizeof tx, " --txid %llu", (unsigned long long)txid);
    unlink(outpath);
    return run_cmd(NULL, "\"$LITEVAULT\" log replay -c '%s' --db '%s'%s -o '%s' >/dev/null", n->config, db, tx, outpath);
}

/* `log ls --json` as a jansson array (new reference) or NULL. */
static json_t *log_ls_json(const struct lvnode *n, const char *db)
{
    /* With kernel passthrough a -wal's commits are logged by the daemon's
     * WAL watcher, within about a millisecond; GET /status logs whatever
     * the WAL holds at once, so the log read below has every commit. */
    if (n->pid)
        free(lvnode_http_get(n, "/status", NULL));
    json_t *j = lvnode_cli_json(n, NULL, "log ls", "--db '%s'", db);
    if (j && !json_is_array(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

uint64_t lvnode_last_txid(const struct lvnode *n, const char *db)
{
    json_t *j = log_ls_json(n, db);
    uint64_t t = 0;
    if (j && json_array_size(j) > 0) {
        json_t *last = json_array_get(j, json_array_size(j) - 1);
        t = (uint64_t)json_integer_value(json_object_get(last, "txid"));
    }
    json_decref(j);
    return t;
}

static uint64_t parse_hex64(const char *s)
{
    return s ? strtoull(s, NULL, 16) : 0;
}

int lvnode_log_records(const struct lvnode *n, const char *db, struct lvrec **out)
{
    *out = NULL;
    json_t *j = log_ls_json(n, db);
    if (!j)
        return -1;
    size_t cnt = json_array_size(j);
    struct lvrec *r = calloc(cnt ? cnt : 1, sizeof *r);
    cr_assert(r != NULL);
    for (size_t i = 0; i < cnt; i++) {
        json_t *o = json_array_get(j, i);
        r[i].txid = (uint64_t)json_integer_value(json_object_get(o, "txid"));
        r[i].time_us = json_integer_value(json_object_get(o, "time_us"));
        r[i].pages = (uint32_t)json_integer_value(json_object_get(o, "pages"));
        r[i].db_pages = (uint32_t)json_integer_value(json_object_get(o, "db_pages"));
        r[i].page_size = (uint32_t)json_integer_value(json_object_get(o, "page_size"));
        r[i].pre_checksum = parse_hex64(json_string_value(json_object_get(o, "pre_checksum")));
        r[i].post_checksum = parse_hex64(json_string_value(json_object_get(o, "post_checksum")));
        r[i].snapshot = json_is_true(json_object_get(o, "snapshot"));
        r[i].recovered = json_is_true(json_object_get(o, "recovered"));
    }
    json_decref(j);
    *out = r;
    return (int)cnt;
}

long long lvnode_log_first(const struct lvnode *n, const char *db)
{
    struct lvrec *recs = NULL;
    int nr = lvnode_log_records(n, db, &recs);
    long long first = nr > 0 ? (long long)recs[0].txid : -1;
    free(recs);
    return first;
}

void lvdbstat_from_json(json_t *o, struct lvdbstat *st)
{
    memset(st, 0, sizeof *st);
    st->txid = (uint64_t)json_integer_value(json_object_get(o, "txid"));
    st->checksum = parse_hex64(json_string_value(json_object_get(o, "checksum")));
    st->page_size = (uint32_t)json_integer_value(json_object_get(o, "page_size"));
    st->pages = (uint32_t)json_integer_value(json_object_get(o, "pages"));
    const char *jm = json_string_value(json_object_get(o, "journal_mode"));
    const char *s = json_string_value(json_object_get(o, "status"));
    snprintf(st->journal_mode, sizeof st->journal_mode, "%s", jm ? jm : "");
    snprintf(st->status, sizeof st->status, "%s", s ? s : "");
    st->last_commit_us = json_integer_value(json_object_get(o, "last_commit_us"));
}

int lvnode_db_status(const struct lvnode *n, const char *db, struct lvdbstat *st)
{
    memset(st, 0, sizeof *st);
    json_t *j = lvnode_cli_json(n, NULL, "status", "%s", "");
    if (!j)
        return -1;
    int found = 0;
    json_t *dbs = json_object_get(j, "databases");
    for (size_t i = 0; i < json_array_size(dbs) && !found; i++) {
        json_t *o = json_array_get(dbs, i);
        const char *name = json_string_value(json_object_get(o, "name"));
        if (name && strcmp(name, db) == 0) {
            found = 1;
            lvdbstat_from_json(o, st);
        }
    }
    json_decref(j);
    return found;
}

int lvnode_record_pages(const struct lvnode *n, const char *db, uint64_t txid, uint32_t **pages)
{
    *pages = NULL;
    json_t *j = lvnode_cli_json(n, NULL, "log dump", "--db '%s' --txid %llu", db, (unsigned long long)txid);
    if (!j)
        return -1;
    json_t *a = json_object_get(j, "page_numbers");
    int cnt = -1;
    if (json_is_array(a)) {
        cnt = (int)json_array_size(a);
        *pages = calloc((size_t)cnt + 1, sizeof **pages);
        cr_assert(*pages != NULL);
        for (int i = 0; i < cnt; i++)
            (*pages)[i] = (uint32_t)json_integer_value(json_array_get(a, (size_t)i));
    }
    json_decref(j);
    return cnt;
}

int lv_restore_cmd(const char *url, const char *db, const char *target_flag, const char *out)
{
    const char *bin = getenv("LITEVAULT");

    return run_cmd(NULL, "'%s' restore --from '%s' --db '%s' %s -o '%s' 1>&2", bin && bin[0] ? bin : "./litevault", url,
                   db, target_flag ? target_flag : "", out);
}

int lvnode_restore(const struct lvnode *n, const char *db, const char *flags, const char *out, char **msg)
{
    run_cmd(NULL, "rm -f '%s' '%s-wal' '%s-shm'", out, out, out);
    char *o = NULL;
    int rc = lvnode_cli(n, &o, "restore", "--db '%s' %s -o '%s'", db, flags ? flags : "", out);
    if (msg)
        *msg = o;
    else
        free(o);
    return rc;
}

uint64_t lvnode_archive_txid(const struct lvnode *n, const char *db, uint64_t *start)
{
    json_t *j = lvnode_cli_json(n, NULL, "restore", "--db '%s' --dry-run", db);
    uint64_t t = (uint64_t)json_integer_value(json_object_get(j, "txid"));
    if (start)
        *start = (uint64_t)json_integer_value(json_object_get(j, "start_txid"));
    json_decref(j);
    return t;
}

uint64_t lvnode_check_db(const struct lvnode *n, const char *db)
{
    char rp[600], snap[600], esc[256];
    char *path = lvnode_path(n, db);
    size_t i;
    for (i = 0; db[i] && i < sizeof esc - 1; i++)
        esc[i] = db[i] == '/' ? '_' : db[i];
    esc[i] = 0;
    snprintf(rp, sizeof rp, "%s/replay-%s", n->dir, esc);
    snprintf(snap, sizeof snap, "%s/snap-%s", n->dir, esc);
    /* Old copies may carry a -wal from an earlier integrity check. */
    run_cmd(NULL, "rm -f '%s' '%s-wal' '%s-shm' '%s' '%s-wal' '%s-shm'", rp, rp, rp, snap, snap, snap);

    int rc = lvnode_replay(n, db, 0, rp);
    if (rc != 0)
        lvnode_dump_log_tail(n);
    cr_assert_eq(rc, 0, "%s: log replay failed with status %d", db, rc);

    unsigned char h[100] = {0};
    int fd = open(path, O_RDONLY);
    cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
    ssize_t hr = pread(fd, h, sizeof h, 0);
    close(fd);
    cr_assert(hr == 100, "%s: short header", path);
    int wal = h[18] == 2;
    const char *ref = path;
    if (wal) {
        cr_assert(snapshot_db(path, snap) == 0, "%s: snapshot_db failed", db);
        ref = snap;
    }
    long long off = -1;
    int d = files_first_diff(rp, ref, &off);
    if (d != 0) {
        struct stat s1, s2;
        stat(rp, &s1);
        stat(ref, &s2);
        uint32_t ps = sqlite_hdr_page_size(h);
        cr_assert_fail("%s (%s mode): replay differs from the %s at byte %lld (page %lld of %u bytes); "
                       "sizes %lld vs %lld; checksums replay %016llx, db %016llx",
                       db, wal ? "WAL" : "rollback", wal ? "snapshot" : "database file", off,
                       ps ? off / ps + 1 : -1, ps, (long long)s1.st_size, (long long)s2.st_size,
                       (unsigned long long)file_db_checksum(rp), (unsigned long long)file_db_checksum(ref));
    }

    uint64_t ck = file_db_checksum(rp);
    struct lvdbstat st;
    int found = lvnode_db_status(n, db, &st);
    cr_assert_eq(found, 1, "%s: not listed in status --json (%d)", db, found);
    cr_assert_str_eq(st.status, "ok", "%s: status is %s", db, st.status);
    cr_assert_eq(st.checksum, ck, "%s: status checksum %016llx != replay checksum %016llx", db,
                 (unsigned long long)st.checksum, (unsigned long long)ck);
    uint64_t last = lvnode_last_txid(n, db);
    cr_assert_eq(st.txid, last, "%s: status txid %llu != last logged txid %llu", db, (unsigned long long)st.txid,
                 (unsigned long long)last);

    char *ic = sql_text(rp, "PRAGMA integrity_check");
    cr_assert_str_eq(ic, "ok", "%s: integrity_check of the replayed copy: %s", db, ic);
    free(ic);
    free(path);
    return last;
}

long long lvnode_archived(const struct lvnode *n, const char *db, const char *field)
{
    json_t *j = lvnode_cli_json(n, NULL, "archive ls", "--db %s", db), *d, *l;
    long long v = -1;
    size_t i;

    if (!j)
        return -1;
    d = json_array_get(json_object_get(j, "databases"), 0);
    json_array_foreach(json_object_get(d, "lineages"), i, l)
        if (json_is_true(json_object_get(l, "current")))
            v = json_integer_value(json_object_get(l, field));
    json_decref(j);
    return v;
}
