/*
 * unit_deleted.c -- the registry's notes of databases that left a name
 * (capture/dbreg_deleted.c): written only with an archive configured, one
 * per name and ID (a database renamed away, then deleted, has two), the
 * older <dbid>.json read too, malformed ones left alone (T2), forgotten
 * one by one by key.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/lv.h"
#include "capture/db.h"
#include "lib/lvtest.h"

TestSuite(deleted, .fini = lvt_fini);

static struct dbreg *open_reg(const char *dir, int notes)
{
    struct dbreg *r = NULL;
    char err[512] = "";
    cr_assert_eq(dbreg_open(&(struct dbreg_opts){dir, 1 << 20, 0, notes}, &r, err, sizeof err), 0, "%s", err);
    return r;
}

static void put_file(const char *path, const char *body)
{
    FILE *f = fopen(path, "we");
    cr_assert_not_null(f, "%s", path);
    fputs(body, f);
    fclose(f);
}

Test(deleted, notes_listed_and_forgotten)
{
    const char *dir = lvt_tmpdir("del");
    char ddir[600], p[700];
    uint8_t a[16], b[16];
    memset(a, 0xab, sizeof a);
    memset(b, 0x01, sizeof b);

    struct dbreg *off = open_reg(dir, 0);
    dbreg_deleted_note(off, "x.db", a, DBREG_LEFT_DELETED);
    struct dbreg_deleted *v = NULL;
    size_t n = 9;
    cr_assert_eq(dbreg_deleted_list(off, &v, &n), 0);
    cr_assert_eq(n, 0, "a note was written without an archive");
    free(v);
    dbreg_close(off);

    struct dbreg *r = open_reg(dir, 1);
    dbreg_deleted_note(r, "x.db", a, DBREG_LEFT_RENAMED);
    dbreg_deleted_note(r, "sub/y.db", b, DBREG_LEFT_REPLACED);
    dbreg_deleted_note(r, "renamed.db", a, DBREG_LEFT_RENAMED); /* x.db's ID left another name too */
    dbreg_deleted_note(r, "x.db", a, DBREG_LEFT_DELETED);       /* again: the same note, now a deletion */
    dbreg_deleted_dir(dir, ddir, sizeof ddir);
    /* A note of the first format, named by the ID alone. */
    snprintf(p, sizeof p, "%s/%s.json", ddir, "02020202020202020202020202020202");
    put_file(p, "{\"name\":\"old.db\",\"dbid\":\"02020202020202020202020202020202\",\"deleted_us\":5}");
    /* Left alone (T2): not JSON, a dbid that disagrees with the file's name, no name. */
    snprintf(p, sizeof p, "%s/%s.json", ddir, "cccccccccccccccccccccccccccccccc");
    put_file(p, "garbage");
    snprintf(p, sizeof p, "%s/%s.json", ddir, "dddddddddddddddddddddddddddddddd-0000000000000000");
    put_file(p, "{\"name\":\"z.db\",\"dbid\":\"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\",\"deleted_us\":1}");
    snprintf(p, sizeof p, "%s/%s.json", ddir, "ffffffffffffffffffffffffffffffff");
    put_file(p, "{\"dbid\":\"ffffffffffffffffffffffffffffffff\"}");

    cr_assert_eq(dbreg_deleted_list(r, &v, &n), 0);
    cr_assert_eq(n, 4, "%zu notes listed, wanted the 4 valid ones", n);
    int seen_x = 0, seen_y = 0, seen_ren = 0, seen_old = 0;
    char key_x[sizeof v->key] = "";
    for (size_t i = 0; i < n; i++) {
        char want[sizeof v->key];
        dbreg_deleted_key(v[i].name, v[i].dbid, want, sizeof want);
        if (strcmp(v[i].name, "x.db") == 0) {
            seen_x = 1;
            cr_assert_str_eq(v[i].dbid, "abababababababababababababababab");
            cr_assert_str_eq(v[i].key, want);
            cr_assert_eq(v[i].reason, DBREG_LEFT_DELETED, "the later note (a deletion) did not replace the earlier one");
            snprintf(key_x, sizeof key_x, "%s", v[i].key);
        } else if (strcmp(v[i].name, "renamed.db") == 0) {
            seen_ren = 1;
            cr_assert_eq(v[i].reason, DBREG_LEFT_RENAMED);
            cr_assert_str_eq(v[i].dbid, "abababababababababababababababab");
            cr_assert_str_eq(v[i].key, want);
        } else if (strcmp(v[i].name, "sub/y.db") == 0) {
            seen_y = 1;
            cr_assert_str_eq(v[i].dbid, "01010101010101010101010101010101");
            cr_assert_eq(v[i].reason, DBREG_LEFT_REPLACED);
        } else if (strcmp(v[i].name, "old.db") == 0) {
            seen_old = 1;
            cr_assert_str_eq(v[i].key, "02020202020202020202020202020202");
            cr_assert_eq(v[i].reason, DBREG_LEFT_DELETED, "an <id>.json note without a reason is a deletion");
        }
        cr_assert_gt(v[i].deleted_us, 0);
    }
    cr_assert(seen_x && seen_y && seen_ren && seen_old);
    cr_assert_str_neq(key_x, "", "no key for x.db");
    free(v);

    dbreg_deleted_done(r, key_x, 1); /* another time: a newer note of that key, kept */
    cr_assert_eq(dbreg_deleted_list(r, &v, &n), 0);
    cr_assert_eq(n, 4, "a note rewritten since it was read was removed");
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].key, key_x) == 0)
            dbreg_deleted_done(r, key_x, v[i].deleted_us);
    free(v);
    dbreg_deleted_done(r, "02020202020202020202020202020202", 5);
    cr_assert_eq(dbreg_deleted_list(r, &v, &n), 0);
    cr_assert_eq(n, 2);
    for (size_t i = 0; i < n; i++)
        cr_assert(strcmp(v[i].name, "sub/y.db") == 0 || strcmp(v[i].name, "renamed.db") == 0,
                  "%s is still noted", v[i].name);
    free(v);
    snprintf(p, sizeof p, "%s/%s.json", ddir, "cccccccccccccccccccccccccccccccc");
    cr_assert_eq(access(p, F_OK), 0, "a malformed note was removed");
    dbreg_close(r);
}

/* A directory renamed with more databases below it than a fixed list held
 * (1024 before): every one moves. */
Test(deleted, directory_rename_moves_every_database, .timeout = 120)
{
    const char *dir = lvt_tmpdir("dirren");
    struct dbreg *r = open_reg(dir, 1);
    enum { N = 1100 };
    char name[64];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "d/f%04d.db", i);
        struct db *d = dbreg_get(r, name, 1);
        cr_assert_not_null(d, "%s", name);
        db_put(d);
    }
    dbreg_renamed(r, "d", "e");
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "e/f%04d.db", i);
        struct db *d = dbreg_get(r, name, 0);
        cr_assert_not_null(d, "%s did not move", name);
        db_put(d);
        snprintf(name, sizeof name, "d/f%04d.db", i);
        cr_assert_null(dbreg_get(r, name, 0), "%s is still listed", name);
    }
    dbreg_close(r);
}
