/*
 * unit_bundle.c -- tar bundles of database images (src/bundle.c).
 *
 * Round trips in the three formats (bytes, checksums and every manifest
 * field come back), the writer's own refusals, and the reader against
 * hostile or damaged archives built in the test with python3's tarfile
 * from a valid bundle: path traversal, absolute names, symbolic and hard
 * links, devices, unexpected and duplicate entries, truncated archives,
 * and manifests that disagree with the entries.  For the hostile ones the
 * test also checks that nothing was created outside the extraction
 * directory.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export/bundle.h"
#include "lib/lvtest.h"
#include "base/lv.h"
#include "base/lvlog.h"

static char ub_base[64];   /* per-test temporary directory */
static int ub_nx;          /* extraction directories made */

static int ub_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void ub_setup(void)
{
    lvlog_threshold = -1;
    snprintf(ub_base, sizeof ub_base, "/tmp/lv-bundle-XXXXXX");
    cr_assert_not_null(mkdtemp(ub_base));
    ub_nx = 0;
}

static void ub_teardown(void)
{
    nftw(ub_base, ub_rm, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(bundle, .init = ub_setup, .fini = ub_teardown, .timeout = 60);

/* Three source databases: a.db (WAL header), b.db (DELETE), sub/c.db (1024-byte pages). */
struct ub_src {
    char path[3][256];         /* files */
    const char *name[3];       /* database names */
    struct bundle_entry e[3];  /* entries for bundle_write */
};

static void ub_make_sources(struct ub_src *s)
{
    static const char *names[3] = {"a.db", "b.db", "sub/c.db"};
    char dir[256];
    snprintf(dir, sizeof dir, "%s/src/sub", ub_base);
    cr_assert_eq(run_cmd(NULL, "mkdir -p '%s'", dir), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(s->path[i], sizeof s->path[i], "%s/src/%s", ub_base, names[i]);
        s->name[i] = names[i];
    }
    sql_exec(s->path[0], "PRAGMA journal_mode=wal; CREATE TABLE t(x); "
                         "INSERT INTO t WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 400) SELECT randomblob(500) FROM c;", 0);
    sql_checkpoint(s->path[0], "TRUNCATE");
    sql_exec(s->path[1], "CREATE TABLE u(y TEXT); INSERT INTO u VALUES ('hello'), ('world');", 0);
    sql_exec(s->path[2], "PRAGMA page_size=1024; CREATE TABLE v(z); "
                         "INSERT INTO v WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 50) SELECT zeroblob(300) FROM c;", 0);
    for (int i = 0; i < 3; i++) {
        struct stat st;
        uint8_t hdr[18];
        int fd = open(s->path[i], O_RDONLY);
        cr_assert(fd >= 0 && pread(fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr);
        cr_assert_eq(fstat(fd, &st), 0);
        close(fd);
        struct bundle_entry *e = &s->e[i];
        memset(e, 0, sizeof *e);
        e->name = s->name[i];
        e->path = s->path[i];
        for (int k = 0; k < 16; k++)
            e->id[k] = (uint8_t)(i * 16 + k);
        e->txid = 100 + (uint64_t)i;
        e->time_us = 1700000000123456LL + i;
        e->page_size = lv_get16(hdr + 16) == 1 ? 65536 : lv_get16(hdr + 16);
        e->db_pages = (uint32_t)(st.st_size / e->page_size);
        e->cksum = file_db_checksum(s->path[i]);
    }
}

/* Write entries into base/name; returns bundle_write's result. */
static int ub_write(const char *name, const struct bundle_entry *v, size_t n, char *err, size_t errlen)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", ub_base, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(fd >= 0);
    int rc = bundle_write(fd, name, v, n, NULL, NULL, err, errlen);
    close(fd);
    return rc;
}

/* Extract base/name into a fresh directory (its path into xdir). */
static int ub_extract(const char *name, struct bundle **b, char *xdir, size_t xlen, char *err, size_t errlen)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", ub_base, name);
    snprintf(xdir, xlen, "%s/x%d", ub_base, ub_nx++);
    cr_assert_eq(mkdir(xdir, 0700), 0);
    int fd = open(p, O_RDONLY);
    cr_assert(fd >= 0, "open %s", p);
    int rc = bundle_extract(fd, xdir, b, err, errlen);
    close(fd);
    return rc;
}

static void ub_roundtrip(const char *file)
{
    struct ub_src s;
    struct bundle *b = NULL;
    char err[1024] = "", xdir[256];
    ub_make_sources(&s);
    cr_assert_eq(ub_write(file, s.e, 3, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ub_extract(file, &b, xdir, sizeof xdir, err, sizeof err), 0, "%s: %s", file, err);
    cr_assert_eq(b->n, 3);
    cr_assert_str_eq(b->version, LV_VERSION);
    cr_assert_gt(b->created_us, 0);
    for (int i = 0; i < 3; i++) {
        struct bundle_db *d = &b->v[i];
        char want[512];
        cr_assert_str_eq(d->name, s.name[i]);
        snprintf(want, sizeof want, "%s/db/%s", xdir, s.name[i]);
        cr_assert_str_eq(d->path, want);
        cr_assert(files_equal(d->path, s.path[i]), "%s differs after the round trip", d->name);
        cr_assert_eq(memcmp(d->id, s.e[i].id, 16), 0);
        cr_assert_eq(d->txid, s.e[i].txid);
        cr_assert_eq(d->time_us, s.e[i].time_us);
        cr_assert_eq(d->cksum, s.e[i].cksum);
        cr_assert_eq(d->page_size, s.e[i].page_size);
        cr_assert_eq(d->db_pages, s.e[i].db_pages);
        cr_assert_eq(d->size, (uint64_t)s.e[i].db_pages * s.e[i].page_size);
    }
    bundle_free(b);
    /* Standard tools read it, and the manifest is the last entry. */
    char *out = NULL;
    cr_assert_eq(run_cmd(&out, "tar -t%sf '%s/%s' | tail -1", strstr(file, ".zst") ? " --zstd -" : "",
                         ub_base, file), 0);
    cr_assert_str_eq(out, "manifest.json\n");
    free(out);
}

Test(bundle, roundtrip_tar) { ub_roundtrip("b.tar"); }
Test(bundle, roundtrip_tar_zst) { ub_roundtrip("b.tar.zst"); }
Test(bundle, roundtrip_tar_gz) { ub_roundtrip("b.tar.gz"); }

Test(bundle, format_and_names)
{
    enum bundle_format f;
    cr_assert_eq(bundle_format_of("x.tar", &f), 0);
    cr_assert_eq(f, BUNDLE_TAR);
    cr_assert_eq(bundle_format_of("/a/b/x.tar.zst", &f), 0);
    cr_assert_eq(f, BUNDLE_TAR_ZST);
    cr_assert_eq(bundle_format_of("tar.gz", &f), 0);
    cr_assert_eq(f, BUNDLE_TAR_GZ);
    cr_assert_eq(bundle_format_of("x.zip", &f), LV_EINVAL);
    cr_assert_eq(bundle_format_of("x.db", &f), LV_EINVAL);
    cr_assert_eq(bundle_format_of("xtar", &f), LV_EINVAL);
    cr_assert(bundle_name_ok("app.db"));
    cr_assert(bundle_name_ok("dir/sub/app.db"));
    cr_assert(bundle_name_ok(".hidden.db"));
    cr_assert_not(bundle_name_ok(""));
    cr_assert_not(bundle_name_ok("/abs.db"));
    cr_assert_not(bundle_name_ok("../x.db"));
    cr_assert_not(bundle_name_ok("a/../x.db"));
    cr_assert_not(bundle_name_ok("a/./x.db"));
    cr_assert_not(bundle_name_ok("a//x.db"));
    cr_assert_not(bundle_name_ok("a/"));
    cr_assert_not(bundle_name_ok("x.db-wal"));
    cr_assert_not(bundle_name_ok("x.db-journal"));
    cr_assert_not(bundle_name_ok("x.db-shm"));
    cr_assert_not(bundle_name_ok("a\nb.db"));
}

Test(bundle, writer_refuses_bad_entries)
{
    struct ub_src s;
    char err[1024] = "";
    ub_make_sources(&s);
    struct bundle_entry e[2] = {s.e[0], s.e[0]};
    cr_assert_eq(ub_write("d.tar", e, 2, err, sizeof err), LV_EINVAL);
    cr_assert(strstr(err, "twice"), "%s", err);
    e[0].name = "../evil.db";
    cr_assert_eq(ub_write("d.tar", e, 1, err, sizeof err), LV_EINVAL);
    e[0].name = "/abs.db";
    cr_assert_eq(ub_write("d.tar", e, 1, err, sizeof err), LV_EINVAL);
    e[0] = s.e[1];
    e[0].db_pages++;
    cr_assert_eq(ub_write("d.tar", e, 1, err, sizeof err), LV_EMISMATCH);
    cr_assert(strstr(err, "expected"), "%s", err);
    cr_assert_eq(ub_write("d.zip", s.e, 1, err, sizeof err), LV_EINVAL);
}

/* Rewrite base/in (a plain .tar) into base/out with python3's tarfile,
 * applying one manipulation (see the script). */
static void ub_py(const char *in, const char *out, const char *kind, const char *arg)
{
    static const char *script =
        "import sys, tarfile, io, json\n"
        "src, dst, kind, arg = sys.argv[1:5]\n"
        "tin = tarfile.open(src)\n"
        "members = [(m, tin.extractfile(m).read() if m.isfile() else None) for m in tin.getmembers()]\n"
        "tout = tarfile.open(dst, 'w', format=tarfile.PAX_FORMAT)\n"
        "def add(name, data=b'', type=tarfile.REGTYPE, link=''):\n"
        "    ti = tarfile.TarInfo(name); ti.type = type; ti.linkname = link; ti.size = len(data) if type == tarfile.REGTYPE else 0\n"
        "    tout.addfile(ti, io.BytesIO(data) if type == tarfile.REGTYPE else None)\n"
        "if kind == 'traversal': add('db/../../' + arg, b'x' * 1024)\n"
        "if kind == 'dotdot': add('../' + arg, b'x' * 1024)\n"
        "if kind == 'absolute': add(arg, b'x' * 1024)\n"
        "if kind == 'symlink': add('db/evil.db', type=tarfile.SYMTYPE, link=arg)\n"
        "if kind == 'symdir':\n"
        "    add('db/d', type=tarfile.SYMTYPE, link=arg); add('db/d/x.db', b'x' * 1024)\n"
        "if kind == 'hardlink': add('db/h.db', type=tarfile.LNKTYPE, link=arg)\n"
        "if kind == 'device': add('db/dev.db', type=tarfile.CHRTYPE)\n"
        "if kind == 'other': add('notes.txt', b'hi')\n"
        "for m, data in members:\n"
        "    if kind == 'flip' and m.name == arg: data = bytes([data[0] ^ 1]) + data[1:]\n"
        "    if kind == 'flip_late' and m.name == arg: data = data[:-1] + bytes([data[-1] ^ 1])\n"
        "    if kind == 'drop' and m.name == arg: continue\n"
        "    if m.name == 'manifest.json' and kind.startswith('man_'):\n"
        "        j = json.loads(data)\n"
        "        d = j['databases'][0]\n"
        "        if kind == 'man_xxh3': d['xxh3'] = '%016x' % (int(d['xxh3'], 16) ^ 1)\n"
        "        if kind == 'man_cksum': d['checksum'] = '%016x' % (int(d['checksum'], 16) ^ 1)\n"
        "        if kind == 'man_extra': j['databases'].append(dict(d, name='ghost.db', file='db/ghost.db'))\n"
        "        if kind == 'man_name': d['name'] = '../' + d['name']\n"
        "        if kind == 'man_json': data = b'{not json'\n"
        "        else: data = json.dumps(j).encode()\n"
        "    m.size = len(data)\n"
        "    tout.addfile(m, io.BytesIO(data))\n"
        "    if kind == 'dup' and m.name == arg: tout.addfile(m, io.BytesIO(data))\n"
        "tout.close()\n";
    char sp[256];
    snprintf(sp, sizeof sp, "%s/mangle.py", ub_base);
    FILE *f = fopen(sp, "w");
    cr_assert_not_null(f);
    fputs(script, f);
    fclose(f);
    char *o = NULL;
    int rc = run_cmd(&o, "python3 '%s' '%s/%s' '%s/%s' '%s' '%s' 2>&1", sp, ub_base, in, ub_base, out, kind,
                     arg ? arg : "");
    cr_assert_eq(rc, 0, "python3 failed: %s", o ? o : "");
    free(o);
}

/* Extract base/file expecting failure rc with needle in the message. */
static void ub_refused(const char *file, int want_rc, const char *needle)
{
    struct bundle *b = (struct bundle *)1;
    char err[1024] = "", xdir[256];
    int rc = ub_extract(file, &b, xdir, sizeof xdir, err, sizeof err);
    cr_assert_eq(rc, want_rc, "%s: got %s (%s), want %s", file, lv_strerror(rc), err, lv_strerror(want_rc));
    cr_assert_null(b, "%s: no bundle may be returned on failure", file);
    cr_assert(strstr(err, needle), "%s: message '%s' lacks '%s'", file, err, needle);
}

static int ub_exists(const char *rel)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", ub_base, rel);
    return lstat(p, &st) == 0;
}

Test(bundle, hostile_entries_are_refused)
{
    struct ub_src s;
    char err[1024] = "", abs[256];
    ub_make_sources(&s);
    cr_assert_eq(ub_write("ok.tar", s.e, 3, err, sizeof err), 0, "%s", err);

    /* x<N>/db/../../outside.db would land in base/outside.db. */
    ub_py("ok.tar", "t1.tar", "traversal", "outside.db");
    ub_refused("t1.tar", LV_EREFUSED, "'..'");
    ub_py("ok.tar", "t2.tar", "dotdot", "outside2.db");
    ub_refused("t2.tar", LV_EREFUSED, "'..'");
    snprintf(abs, sizeof abs, "%s/abs.db", ub_base);
    ub_py("ok.tar", "t3.tar", "absolute", abs);
    ub_refused("t3.tar", LV_EREFUSED, "absolute");
    ub_py("ok.tar", "t4.tar", "symlink", "/etc/passwd");
    ub_refused("t4.tar", LV_EREFUSED, "symbolic link");
    ub_py("ok.tar", "t5.tar", "symdir", ub_base);
    ub_refused("t5.tar", LV_EREFUSED, "symbolic link");
    ub_py("ok.tar", "t6.tar", "hardlink", "/etc/passwd");
    ub_refused("t6.tar", LV_EREFUSED, "hard link");
    ub_py("ok.tar", "t7.tar", "device", NULL);
    ub_refused("t7.tar", LV_EREFUSED, "not a regular file");
    ub_py("ok.tar", "t8.tar", "other", NULL);
    ub_refused("t8.tar", LV_EREFUSED, "notes.txt");
    ub_py("ok.tar", "t9.tar", "dup", "db/b.db");
    ub_refused("t9.tar", LV_EREFUSED, "twice");
    ub_py("ok.tar", "t10.tar", "man_name", NULL);
    ub_refused("t10.tar", LV_EREFUSED, "unsafe name");

    cr_assert_not(ub_exists("outside.db"));
    cr_assert_not(ub_exists("outside2.db"));
    cr_assert_not(ub_exists("abs.db"));
    cr_assert_not(ub_exists("x.db"));
    cr_assert(!ub_exists("../outside2.db"));
}

Test(bundle, damaged_and_mismatched_bundles_are_refused)
{
    struct ub_src s;
    char err[1024] = "";
    ub_make_sources(&s);
    cr_assert_eq(ub_write("ok.tar", s.e, 3, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ub_write("ok.tar.zst", s.e, 3, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ub_write("ok.tar.gz", s.e, 3, err, sizeof err), 0, "%s", err);

    /* Truncations: inside the compressed stream, just before its end, inside a tar entry. */
    struct stat st;
    char p[256];
    snprintf(p, sizeof p, "%s/ok.tar.zst", ub_base);
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(run_cmd(NULL, "head -c %lld '%s' > '%s/tr1.tar.zst'", (long long)st.st_size / 2, p, ub_base), 0);
    ub_refused("tr1.tar.zst", LV_ECORRUPT, "truncated");
    cr_assert_eq(run_cmd(NULL, "head -c %lld '%s' > '%s/tr2.tar.zst'", (long long)st.st_size - 8, p, ub_base), 0);
    ub_refused("tr2.tar.zst", LV_ECORRUPT, "");
    snprintf(p, sizeof p, "%s/ok.tar.gz", ub_base);
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(run_cmd(NULL, "head -c %lld '%s' > '%s/tr3.tar.gz'", (long long)st.st_size / 3, p, ub_base), 0);
    ub_refused("tr3.tar.gz", LV_ECORRUPT, "truncated");
    cr_assert_eq(run_cmd(NULL, "head -c %lld '%s' > '%s/tr5.tar.gz'", (long long)st.st_size - 6, p, ub_base), 0);
    ub_refused("tr5.tar.gz", LV_ECORRUPT, "damaged or truncated"); /* only the gzip trailer is missing */
    snprintf(p, sizeof p, "%s/ok.tar", ub_base);
    cr_assert_eq(run_cmd(NULL, "head -c 100000 '%s' > '%s/tr4.tar'", p, ub_base), 0);
    ub_refused("tr4.tar", LV_ECORRUPT, "truncated");
    cr_assert_eq(run_cmd(NULL, "head -c 0 '%s' > '%s/empty.tar'", p, ub_base), 0);
    ub_refused("empty.tar", LV_ECORRUPT, "");
    cr_assert_eq(run_cmd(NULL, "echo 'just text, not a tar' > '%s/text.tar'", ub_base), 0);
    ub_refused("text.tar", LV_ECORRUPT, "");

    /* Content and manifest disagree. */
    ub_py("ok.tar", "m1.tar", "flip", "db/b.db");
    ub_refused("m1.tar", LV_EMISMATCH, "checksum mismatch");
    ub_py("ok.tar", "m2.tar", "flip_late", "db/a.db");
    ub_refused("m2.tar", LV_EMISMATCH, "checksum mismatch");
    ub_py("ok.tar", "m3.tar", "man_xxh3", NULL);
    ub_refused("m3.tar", LV_EMISMATCH, "checksum mismatch");
    ub_py("ok.tar", "m4.tar", "man_cksum", NULL);
    ub_refused("m4.tar", LV_EMISMATCH, "database checksum");
    ub_py("ok.tar", "m5.tar", "man_extra", NULL);
    ub_refused("m5.tar", LV_EMISMATCH, "ghost.db");
    ub_py("ok.tar", "m6.tar", "drop", "db/sub/c.db");
    ub_refused("m6.tar", LV_EMISMATCH, "sub/c.db");
    ub_py("ok.tar", "m7.tar", "drop", "manifest.json");
    ub_refused("m7.tar", LV_ECORRUPT, "no manifest.json");
    ub_py("ok.tar", "m8.tar", "man_json", NULL);
    ub_refused("m8.tar", LV_ECORRUPT, "not valid JSON");
}

Test(bundle, non_sqlite_entry_is_refused)
{
    char junk[256], err[1024] = "";
    snprintf(junk, sizeof junk, "%s/junk", ub_base);
    cr_assert_eq(run_cmd(NULL, "head -c 8192 /dev/urandom > '%s'", junk), 0);
    struct bundle_entry e = {.name = "junk.db", .path = junk, .page_size = 4096, .db_pages = 2};
    cr_assert_eq(ub_write("j.tar.zst", &e, 1, err, sizeof err), 0, "%s", err);
    ub_refused("j.tar.zst", LV_EMISMATCH, "not a SQLite database");
}

Test(bundle, repacked_bundle_with_directories_is_accepted)
{
    /* A user may unpack and re-pack a bundle with tar: "./", "./db/" entries. */
    struct ub_src s;
    struct bundle *b = NULL;
    char err[1024] = "", xdir[256];
    ub_make_sources(&s);
    cr_assert_eq(ub_write("ok.tar", s.e, 3, err, sizeof err), 0, "%s", err);
    cr_assert_eq(run_cmd(NULL, "mkdir '%s/un' && tar -C '%s/un' -xf '%s/ok.tar' && tar -C '%s/un' -czf '%s/re.tar.gz' .",
                         ub_base, ub_base, ub_base, ub_base, ub_base), 0);
    cr_assert_eq(ub_extract("re.tar.gz", &b, xdir, sizeof xdir, err, sizeof err), 0, "%s", err);
    cr_assert_eq(b->n, 3);
    bundle_free(b);
}
