/*
 * it_export.c -- `litevault export` and `litevault import` against real
 * daemons (issue 4, sections 1, 2 and 4).
 *
 *   - export during a steady write load (WAL and DELETE): each export must
 *     equal, byte for byte, the log replayed to the TXID it reports, carry
 *     the reported checksum and pass integrity_check; no temporary file is
 *     left behind;
 *   - round trips: export then import into a fresh node gives the same
 *     checksum, for single files, and for bundles of three databases (WAL,
 *     DELETE with 1 KiB pages, one in a subdirectory) as .tar.zst, .tar.gz,
 *     .tar and piped through -o - / import -; --vacuum keeps the content;
 *   - import over an existing database with a connection open: it sees the
 *     new content at its next transaction, the log gained exactly one
 *     record, and the replay at that TXID is the imported content;
 *   - bad input (path traversal, absolute name, symlink escape, truncated
 *     .tar.zst, manifest mismatch, non-SQLite, corrupt SQLite, a bundle
 *     whose second database is corrupt): refused with exit 1 and a message
 *     naming the problem, and the daemon's databases and files unchanged.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "export/bundle.h"
#include "lib/lvtest.h"
#include "base/lv.h"

static struct lvnode *xA, *xB; /* nodes of the current test (registry-owned) */

TestSuite(export, .fini = lvt_fini, .timeout = 300);

/* Stop n and remove its files now (the next node of a loop starts clean). */
static void x_stop(struct lvnode *n)
{
    lvnode_stop(n);
    lvnode_cleanup(n);
}

/* `litevault export` with the given arguments and --json; the parsed reply
 * (caller decrefs).  Asserts exit 0. */
static json_t *x_export(const struct lvnode *n, const char *args)
{
    int rc = 0;
    json_t *j = lvnode_cli_json(n, &rc, "export", "%s", args);
    cr_assert_not_null(j, "export %s failed (exit %d) or printed no JSON", args, rc);
    return j;
}

static uint64_t x_hex(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    cr_assert_not_null(s, "no %s in the reply", key);
    return strtoull(s, NULL, 16);
}

#define x_integrity_ok(path) sql_integrity_ok(path, 1)

/* ---------------------------------------------------------------- under load */

/* The writer's transaction (sql_writer: %1$d is a random row id). */
static const char WRITER_SQL[] =
    "BEGIN; UPDATE t SET v = randomblob(300) WHERE id = %1$d; INSERT INTO t(v) VALUES (randomblob(200)); "
    "COMMIT;";

static void export_under_load(const char *mode)
{
    char sql[256];
    xA = lvnode_new(NULL);
    setenv("LV_TEST_IMAGE_DELAY_US", "20000", 1); /* slow copies: writes surely overlap them */
    lvnode_start(xA);
    unsetenv("LV_TEST_IMAGE_DELAY_US");
    char *db = lvnode_path(xA, "load.db");
    snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", mode);
    sql_exec(db, sql, 0);
    sql_exec(db, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 30000) "
                 "INSERT INTO t SELECT i, randomblob(300) FROM c;", 0);
    struct sql_writer w = {.path = db, .sql = WRITER_SQL, .rows = 30000, .seed = 11};
    sql_writer_start(&w);
    sql_writer_wait(&w, 20);

    uint64_t last = 0;
    char out[512];
    for (int i = 0; i < 3; i++) {
        char args[700], rp[512];
        long before = atomic_load(&w.commits);
        snprintf(out, sizeof out, "%s/export-%d.db", xA->dir, i);
        snprintf(args, sizeof args, "--db load.db -o '%s'", out);
        json_t *j = x_export(xA, args);
        uint64_t txid = (uint64_t)json_integer_value(json_object_get(j, "txid"));
        uint64_t ck = x_hex(j, "checksum");
        cr_assert_gt(txid, last);
        last = txid;
        cr_assert_gt(atomic_load(&w.commits), before, "the writer made no progress during the export");
        /* the writer continues while the export is checked */
        snprintf(rp, sizeof rp, "%s/replay-%d.db", xA->dir, i);
        cr_assert_eq(lvnode_replay(xA, "load.db", txid, rp), 0);
        long long off = -1;
        cr_assert_eq(files_first_diff(out, rp, &off), 0, "export %d (TXID %llu) differs from the replay at byte %lld",
                     i, (unsigned long long)txid, off);
        cr_assert_eq(file_db_checksum(out), ck, "export %d: checksum differs from the reported one", i);
        struct stat st;
        cr_assert_eq(stat(out, &st), 0);
        cr_assert_eq(json_integer_value(json_object_get(j, "size")), (json_int_t)st.st_size);
        json_decref(j);
        usleep(100000);
    }
    sql_writer_stop(&w);
    cr_assert(x_integrity_ok(out), "integrity_check of %s failed", out);
    char *ls = NULL;
    run_cmd(&ls, "ls -A '%s/tmp'; ls '%s' | grep -c '\\.tmp$'", xA->data, xA->dir);
    cr_assert_str_eq(ls, "0\n", "left behind: %s", ls);
    free(ls);
    free(db);
    x_stop(xA);
}

Test(export, under_load_wal) { export_under_load("wal"); }
Test(export, under_load_delete) { export_under_load("delete"); }

/* ---------------------------------------------------------------- round trips */

/* Three databases on n: w.db (WAL), d.db (DELETE, 1 KiB pages), sub/s.db. */
static void x_three(const struct lvnode *n)
{
    char *w = lvnode_path(n, "w.db"), *d = lvnode_path(n, "d.db"), *s = lvnode_path(n, "sub/s.db");
    char dir[400];
    snprintf(dir, sizeof dir, "%s/sub", n->mnt);
    cr_assert_eq(mkdir(dir, 0755), 0);
    sql_exec(w, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    sql_exec(w, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 3000) "
                "INSERT INTO t SELECT i, randomblob(200) FROM c;", 0);
    sql_exec(w, "DELETE FROM t WHERE id % 3 = 0;", 0);
    sql_exec(d, "PRAGMA page_size=1024; CREATE TABLE u(k TEXT PRIMARY KEY, n INT);", 0);
    sql_exec(d, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 2000) "
                "INSERT INTO u SELECT 'key' || i, i * i FROM c;", 0);
    sql_exec(s, "CREATE TABLE z(x); INSERT INTO z VALUES ('in a subdirectory');", 0);
    free(w);
    free(d);
    free(s);
}

static const char *x_names[3] = {"w.db", "d.db", "sub/s.db"};

/* Every database of src equals its copy on dst: same checksum in status,
 * one snapshot record, same content, and the replay equals the file. */
static void x_same_on(const struct lvnode *src, const struct lvnode *dst)
{
    for (int i = 0; i < 3; i++) {
        struct lvdbstat a, b;
        struct lvrec *recs = NULL;
        cr_assert_eq(lvnode_db_status(src, x_names[i], &a), 1);
        cr_assert_eq(lvnode_db_status(dst, x_names[i], &b), 1, "%s missing after the import", x_names[i]);
        cr_assert_eq(b.checksum, a.checksum, "%s: checksum %016llx after the round trip, %016llx before",
                     x_names[i], (unsigned long long)b.checksum, (unsigned long long)a.checksum);
        cr_assert_eq(b.page_size, a.page_size);
        int nr = lvnode_log_records(dst, x_names[i], &recs);
        cr_assert_eq(nr, 1, "%s: the import must be one record (got %d)", x_names[i], nr);
        cr_assert(recs[0].snapshot);
        free(recs);
        char *pa = lvnode_path(src, x_names[i]), *pb = lvnode_path(dst, x_names[i]);
        cr_assert_eq(sql_content_hash(pa), sql_content_hash(pb));
        free(pa);
        free(pb);
        lvnode_check_db(dst, x_names[i]);
    }
}

Test(export, roundtrip_single_files_and_vacuum)
{
    /* two nodes: export from node 0, import into node 1 */
    struct lvcluster *c = lvcluster_new(2, NULL, NULL);
    lvcluster_start(c);
    xA = c->node[0];
    xB = c->node[1];
    x_three(xA);
    for (int i = 0; i < 3; i++) {
        char out[512], args[700], *o = NULL;
        snprintf(out, sizeof out, "%s/single-%d.db", xA->dir, i);
        snprintf(args, sizeof args, "--db '%s' -o '%s'", x_names[i], out);
        json_t *j = x_export(xA, args);
        struct lvdbstat a;
        cr_assert_eq(lvnode_db_status(xA, x_names[i], &a), 1);
        cr_assert_eq(x_hex(j, "checksum"), a.checksum);
        cr_assert_eq((uint64_t)json_integer_value(json_object_get(j, "txid")), a.txid);
        json_decref(j);
        cr_assert_eq(run_cmd(&o, "\"$LITEVAULT\" import -c '%s' --db '%s' '%s' --json", xB->config, x_names[i], out),
                     0, "import: %s", o ? o : "");
        j = json_loads(o, 0, NULL);
        free(o);
        cr_assert_not_null(j);
        cr_assert(json_is_true(json_object_get(j, "created")));
        cr_assert_eq(x_hex(j, "checksum"), a.checksum);
        json_decref(j);
    }
    x_same_on(xA, xB);

    /* --vacuum: compact, same content, the reported checksum is the file's. */
    char vout[512], args[700];
    char *d = lvnode_path(xA, "d.db");
    sql_exec(d, "DELETE FROM u WHERE n % 2 = 0;", 0);
    snprintf(vout, sizeof vout, "%s/vac.db", xA->dir);
    snprintf(args, sizeof args, "--db d.db -o '%s' --vacuum", vout);
    json_t *j = x_export(xA, args);
    cr_assert(json_is_true(json_object_get(j, "vacuum")));
    cr_assert_eq(x_hex(j, "checksum"), file_db_checksum(vout));
    struct lvdbstat a;
    cr_assert_eq(lvnode_db_status(xA, "d.db", &a), 1);
    cr_assert_eq(x_hex(j, "log_checksum"), a.checksum);
    cr_assert_lt(json_integer_value(json_object_get(j, "pages")), a.pages, "VACUUM did not compact");
    cr_assert(x_integrity_ok(vout));
    cr_assert_eq(sql_content_hash(vout), sql_content_hash(d));
    json_decref(j);
    free(d);
    lvcluster_stop(c);
}

Test(export, roundtrip_bundles)
{
    static const char *fmts[] = {"tar.zst", "tar.gz", "tar", "pipe"};
    xA = lvnode_started(NULL);
    x_three(xA);
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        char out[512], *o = NULL;
        xB = lvnode_started(NULL);
        if (strcmp(fmts[f], "pipe") == 0) {
            int rc = run_cmd(&o, "\"$LITEVAULT\" export -c '%s' --all -o - --format tar.zst "
                                 "2>/dev/null | \"$LITEVAULT\" import -c '%s' --all - 2>&1", xA->config, xB->config);
            cr_assert_eq(rc, 0, "export | import: %s", o ? o : "");
        } else {
            char args[700];
            snprintf(out, sizeof out, "%s/all.%s", xA->dir, fmts[f]);
            snprintf(args, sizeof args, "--all -o '%s'", out);
            json_t *j = x_export(xA, args);
            cr_assert_eq(json_array_size(json_object_get(j, "databases")), 3);
            json_decref(j);
            int rc = run_cmd(&o, "\"$LITEVAULT\" import -c '%s' --all '%s' 2>&1", xB->config, out);
            cr_assert_eq(rc, 0, "import --all %s: %s", out, o ? o : "");
        }
        free(o);
        x_same_on(xA, xB);
        x_stop(xB);
    }
    x_stop(xA);
}

/* ---------------------------------------------------------------- import over a live database */

static void import_replace(const char *mode)
{
    char sql[256], in[512], *o = NULL;
    xA = lvnode_started(NULL);
    char *db = lvnode_path(xA, "live.db");
    snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s; CREATE TABLE old(x); INSERT INTO old VALUES (1), (2), (3);",
             mode);
    sql_exec(db, sql, 0);
    sql_exec(db, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 500) "
                 "INSERT INTO old SELECT randomblob(400) FROM c;", 0);
    /* The input: different content, more pages, outside the mount, in WAL
     * mode with committed transactions still in its -wal (copied while the
     * writing connection is open, so the copy keeps them). */
    char src[512], cmd[1200];
    snprintf(src, sizeof src, "%s/in-src.db", xA->dir);
    snprintf(in, sizeof in, "%s/in.db", xA->dir);
    sqlite3 *w = NULL;
    cr_assert_eq(sqlite3_open(src, &w), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(w, "PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0; "
                                 "CREATE TABLE fresh(k INTEGER PRIMARY KEY, v TEXT); "
                                 "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 4000) "
                                 "INSERT INTO fresh SELECT i, hex(randomblob(100)) FROM c;",
                              NULL, NULL, NULL), SQLITE_OK);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && cp '%s-wal' '%s-wal'", src, in, src, in);
    cr_assert_eq(run_cmd(NULL, "%s", cmd), 0);
    sqlite3_close(w);
    struct stat wst;
    char inwal[600];
    snprintf(inwal, sizeof inwal, "%s-wal", in);
    cr_assert(stat(inwal, &wst) == 0 && wst.st_size > 100000, "the input has no -wal to apply");
    uint64_t in_hash = sql_content_hash(src);

    sqlite3 *conn = NULL;
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_open(db, &conn), SQLITE_OK);
    sqlite3_busy_timeout(conn, 10000);
    cr_assert_eq(sqlite3_prepare_v2(conn, "SELECT count(*) FROM old", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(st, 0), 503);
    sqlite3_finalize(st);

    struct lvrec *recs = NULL;
    int nbefore = lvnode_log_records(xA, "live.db", &recs);
    free(recs);
    uint64_t before = lvnode_last_txid(xA, "live.db");
    cr_assert_eq(run_cmd(&o, "\"$LITEVAULT\" import -c '%s' --db live.db '%s' --json", xA->config, in), 0,
                 "import: %s", o ? o : "");
    json_t *j = json_loads(o, 0, NULL);
    free(o);
    cr_assert_not_null(j);
    cr_assert(json_is_false(json_object_get(j, "created")));
    cr_assert_eq((uint64_t)json_integer_value(json_object_get(j, "txid")), before + 1);
    uint64_t ck = x_hex(j, "checksum");
    json_decref(j);

    /* The open connection sees the new content at its next transaction. */
    cr_assert_eq(sqlite3_prepare_v2(conn, "SELECT count(*), sum(length(v)) FROM fresh", -1, &st, NULL), SQLITE_OK,
                 "the open connection does not see the imported schema: %s", sqlite3_errmsg(conn));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(st, 0), 4000);
    cr_assert_eq(sqlite3_column_int(st, 1), 4000 * 200);
    sqlite3_finalize(st);
    cr_assert_neq(sqlite3_prepare_v2(conn, "SELECT count(*) FROM old", -1, &st, NULL), SQLITE_OK,
                  "the open connection still sees the old table");
    sqlite3_finalize(st);
    sqlite3_close(conn);

    /* Exactly one record, and the log replayed at that TXID is the imported content. */
    int nafter = lvnode_log_records(xA, "live.db", &recs);
    free(recs);
    cr_assert_eq(nafter, nbefore + 1);
    char rp[512];
    snprintf(rp, sizeof rp, "%s/replay.db", xA->dir);
    cr_assert_eq(lvnode_replay(xA, "live.db", before + 1, rp), 0);
    cr_assert_eq(file_db_checksum(rp), ck);
    cr_assert_eq(sql_content_hash(rp), in_hash);
    cr_assert(x_integrity_ok(rp));
    cr_assert_eq(sql_content_hash(db), in_hash);
    lvnode_check_db(xA, "live.db");
    /* The input is untouched: its -wal is still there, same size. */
    struct stat wst2;
    cr_assert(stat(inwal, &wst2) == 0 && wst2.st_size == wst.st_size, "the input's -wal was changed");
    free(db);
    x_stop(xA);
}

Test(export, import_replaces_under_open_connection_wal) { import_replace("wal"); }
Test(export, import_replaces_under_open_connection_delete) { import_replace("delete"); }

/* ---------------------------------------------------------------- bad input */

/* The daemon's visible state: status (names, TXIDs, checksums) and the mount's files. */
static char *x_state(const struct lvnode *n)
{
    char *a = NULL, *b = NULL, *s = NULL;
    cr_assert_eq(run_cmd(&a, "\"$LITEVAULT\" status -c '%s'", n->config), 0);
    cr_assert_eq(run_cmd(&b, "cd '%s' && find . -not -name '*-shm' | sort", n->mnt), 0);
    cr_assert(asprintf(&s, "%s\n%s", a, b) > 0);
    free(a);
    free(b);
    return s;
}

/* Run an import expecting exit code want and needle in its output; the state must not change. */
static void x_refused(const struct lvnode *n, int want, const char *needle, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void x_refused(const struct lvnode *n, int want, const char *needle, const char *fmt, ...)
{
    char *before = x_state(n), *o = NULL, *args = NULL;
    va_list ap;
    va_start(ap, fmt);
    cr_assert(vasprintf(&args, fmt, ap) >= 0);
    va_end(ap);
    int rc = lvnode_cli(n, &o, "import", "%s", args);
    cr_assert_eq(rc, want, "import %s: exit %d, want %d: %s", args, rc, want, o ? o : "");
    cr_assert(o && strstr(o, needle), "import %s: message lacks '%s': %s", args, needle, o ? o : "");
    char *after = x_state(n);
    cr_assert_str_eq(after, before, "import %s changed the daemon's state", args);
    free(before);
    free(after);
    free(o);
    free(args);
}

static void x_mangle(const char *dir, const char *in, const char *out, const char *kind, const char *arg)
{
    static const char *script =
        "import sys, tarfile, io\n"
        "src, dst, kind, arg = sys.argv[1:5]\n"
        "tin = tarfile.open(src)\n"
        "members = [(m, tin.extractfile(m).read()) for m in tin.getmembers()]\n"
        "tout = tarfile.open(dst, 'w', format=tarfile.PAX_FORMAT)\n"
        "def add(name, data=b'', type=tarfile.REGTYPE, link=''):\n"
        "    ti = tarfile.TarInfo(name); ti.type = type; ti.linkname = link; ti.size = len(data) if type == tarfile.REGTYPE else 0\n"
        "    tout.addfile(ti, io.BytesIO(data) if type == tarfile.REGTYPE else None)\n"
        "if kind == 'dotdot': add('../' + arg, members[0][1])\n"
        "if kind == 'absolute': add(arg, members[0][1])\n"
        "if kind == 'symlink': add('db/w.db', type=tarfile.SYMTYPE, link=arg)\n"
        "if kind == 'symdir': add('db/sub', type=tarfile.SYMTYPE, link=arg)\n"
        "for m, data in members:\n"
        "    if kind == 'flip' and m.name == arg: data = data[:5000] + bytes([data[5000] ^ 0x40]) + data[5001:]\n"
        "    if kind in ('symlink',) and m.name == 'db/w.db': continue\n"
        "    tout.addfile(m, io.BytesIO(data))\n"
        "tout.close()\n";
    char sp[512], *o = NULL;
    snprintf(sp, sizeof sp, "%s/mangle.py", dir);
    FILE *f = fopen(sp, "w");
    cr_assert_not_null(f);
    fputs(script, f);
    fclose(f);
    cr_assert_eq(run_cmd(&o, "python3 '%s' '%s' '%s' '%s' '%s' 2>&1", sp, in, out, kind, arg ? arg : ""), 0,
                 "python3: %s", o ? o : "");
    free(o);
}

Test(export, bad_input_is_refused_and_changes_nothing)
{
    char good[512], bad[512], args[1400], victim[512], *o = NULL;
    xA = lvnode_started(NULL);
    x_three(xA);
    snprintf(good, sizeof good, "%s/good.tar", xA->dir);
    snprintf(args, sizeof args, "--all -o '%s'", good);
    json_decref(x_export(xA, args));
    /* Change the databases after the export, so an import would show. */
    char *w = lvnode_path(xA, "w.db");
    sql_exec(w, "INSERT INTO t(v) VALUES ('after the export');", 0);
    free(w);

    snprintf(victim, sizeof victim, "%s/victim.db", xA->dir);
    /* Mangled bundles: each refused with its reason, and nothing written outside the target. */
    const struct {
        const char *kind, *arg, *reason; /* x_mangle's kind and argument; what the refusal says */
    } mangled[] = {
        {"dotdot", "victim.db", "'..'"},
        {"absolute", victim, "absolute"},
        {"symlink", "/etc/passwd", "symbolic link"},
        {"symdir", xA->dir, "symbolic link"},
        {"flip", "db/d.db", "checksum mismatch"},
    };
    for (size_t i = 0; i < LV_ARRAY_LEN(mangled); i++) {
        snprintf(bad, sizeof bad, "%s/%s.tar", xA->dir, mangled[i].kind);
        x_mangle(xA->dir, good, bad, mangled[i].kind, mangled[i].arg);
        x_refused(xA, 1, mangled[i].reason, "--all '%s'", bad);
        cr_assert_neq(access(victim, F_OK), 0, "%s: path traversal wrote %s", mangled[i].kind, victim);
    }

    /* A truncated .tar.zst. */
    char zst[512];
    snprintf(zst, sizeof zst, "%s/good.tar.zst", xA->dir);
    snprintf(args, sizeof args, "--all -o '%s'", zst);
    json_decref(x_export(xA, args));
    struct stat st;
    cr_assert_eq(stat(zst, &st), 0);
    snprintf(bad, sizeof bad, "%s/trunc.tar.zst", xA->dir);
    cr_assert_eq(run_cmd(NULL, "head -c %lld '%s' > '%s'", (long long)st.st_size * 2 / 3, zst, bad), 0);
    x_refused(xA, 1, "truncated", "--all '%s'", bad);

    /* Not SQLite; corrupt SQLite. */
    snprintf(bad, sizeof bad, "%s/text.db", xA->dir);
    cr_assert_eq(run_cmd(NULL, "head -c 8192 /dev/urandom > '%s'", bad), 0);
    x_refused(xA, 1, "not a SQLite database", "--db d.db '%s'", bad);
    x_refused(xA, 1, "not a SQLite database", "--db new.db '%s'", bad);

    char corrupt[512];
    snprintf(corrupt, sizeof corrupt, "%s/corrupt.db", xA->dir);
    sql_exec(corrupt, "CREATE TABLE c(x); CREATE INDEX ci ON c(x);", 0);
    sql_exec(corrupt, "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM r WHERE i < 3000) "
                      "INSERT INTO c SELECT randomblob(100) FROM r;", 0);
    cr_assert_eq(run_cmd(NULL, "dd if=/dev/zero of='%s' bs=4096 seek=20 count=1 conv=notrunc 2>/dev/null", corrupt),
                 0);
    x_refused(xA, 1, "integrity_check", "--db d.db '%s'", corrupt);
    x_refused(xA, 1, "integrity_check", "--db new.db '%s'", corrupt);

    /* A bundle whose first database is fine and second is corrupt: not even the first is imported. */
    char okdb[512];
    snprintf(okdb, sizeof okdb, "%s/fine.db", xA->dir);
    sql_exec(okdb, "CREATE TABLE f(x); INSERT INTO f VALUES (42);", 0);
    struct stat s1, s2;
    cr_assert_eq(stat(okdb, &s1), 0);
    cr_assert_eq(stat(corrupt, &s2), 0);
    struct bundle_entry e[2] = {
        {.name = "fine.db", .path = okdb, .page_size = 4096, .db_pages = (uint32_t)(s1.st_size / 4096),
         .cksum = file_db_checksum(okdb), .txid = 1},
        {.name = "zz/corrupt.db", .path = corrupt, .page_size = 4096, .db_pages = (uint32_t)(s2.st_size / 4096),
         .cksum = file_db_checksum(corrupt), .txid = 1}};
    snprintf(bad, sizeof bad, "%s/half.tar.gz", xA->dir);
    int fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char err[512] = "";
    cr_assert(fd >= 0);
    cr_assert_eq(bundle_write(fd, bad, e, 2, NULL, NULL, err, sizeof err), 0, "%s", err);
    close(fd);
    x_refused(xA, 1, "integrity_check", "--all '%s'", bad);
    /* ... and the same with --no-check goes through (the check was what refused it). */
    cr_assert_eq(run_cmd(&o, "\"$LITEVAULT\" import -c '%s' --all --no-check '%s' 2>&1", xA->config, bad), 0,
                 "%s", o ? o : "");
    free(o);
    struct lvdbstat ds;
    cr_assert_eq(lvnode_db_status(xA, "fine.db", &ds), 1);
    cr_assert_eq(ds.checksum, file_db_checksum(okdb));

    /* WAL database, input with another page size: refused before anything changes. */
    char small[512];
    snprintf(small, sizeof small, "%s/small.db", xA->dir);
    sql_exec(small, "PRAGMA page_size=1024; CREATE TABLE s(x); INSERT INTO s VALUES (1);", 0);
    x_refused(xA, 1, "page size", "--db w.db '%s'", small);

    /* Usage errors. */
    x_refused(xA, 2, "input file", "--db w.db");
    x_refused(xA, 2, "input file", "--all a.tar b.tar");
    x_refused(xA, 2, "..", "--db ../up.db '%s'", small);
    x_refused(xA, 2, "-wal", "--db w.db-wal '%s'", small);
    x_stop(xA);
}

Test(export, export_errors)
{
    char *o = NULL;
    xA = lvnode_started(NULL);
    cr_assert_eq(run_cmd(&o, "\"$LITEVAULT\" export -c '%s' --db nope.db -o '%s/x.db' 2>&1", xA->config, xA->dir), 1);
    cr_assert(strstr(o, "nope.db") && strstr(o, "no such database"), "%s", o);
    free(o);
    cr_assert_eq(run_cmd(&o, "\"$LITEVAULT\" export -c '%s' --all -o '%s/x.zip' 2>&1", xA->config, xA->dir), 2);
    free(o);
    cr_assert_eq(run_cmd(&o, "\"$LITEVAULT\" export -c '%s' -o '%s/x.db' 2>&1", xA->config, xA->dir), 2);
    free(o);
    cr_assert_eq(run_cmd(&o, "\"$LITEVAULT\" export --help"), 0);
    cr_assert(strstr(o, "--vacuum"));
    free(o);
    cr_assert_eq(run_cmd(&o, "\"$LITEVAULT\" import --help"), 0);
    cr_assert(strstr(o, "--no-check"));
    free(o);
    char *ls = NULL;
    run_cmd(&ls, "ls -A '%s/tmp' '%s' | grep -c 'x\\.' ", xA->data, xA->dir);
    cr_assert_str_eq(ls, "0\n", "%s", ls);
    free(ls);
    lvnode_stop(xA);
    /* No daemon. */
    cr_assert_eq(run_cmd(&o, "\"$LITEVAULT\" export -c '%s' --db a.db -o '%s/x.db' 2>&1", xA->config, xA->dir), 1);
    cr_assert(strstr(o, "is 'litevault mount' running"), "%s", o);
    free(o);
}
