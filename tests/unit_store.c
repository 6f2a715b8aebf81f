/*
 * unit_store.c -- the object stores (archive/store*.c): one suite of
 * behaviour checks run against file:// (a temporary directory) and against
 * a real S3-compatible server (s3rver, started by tests/s3rver.sh on a
 * free port with a unique bucket for every test), plus the S3-only
 * matters: multipart, pagination, permanent errors without retries,
 * retries across a server restart, URL parsing, http refusal, and
 * credentials kept out of logs and messages; and (store_sigv4) every kind
 * of request checked by an independent SigV4 verifier, since s3rver does
 * not verify V4 signatures.
 *
 * s3rver must be installed (`make deps` runs npm ci in tests/): when it is
 * missing the S3 tests fail, loudly, rather than being skipped.
 * Run from the repository root (as `make unit-test` does).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/lvtest.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "store/store.h"
#include "store/store_impl.h"
#include "base/sys.h"

#define MIB (1024u * 1024u)
/* The store under test and its surroundings (one per test process). */
static struct {
    char dir[300];        /* temporary directory (file root, scratch files) */
    char bucket[64];      /* s3: bucket created for this test */
    int port;             /* s3: s3rver port */
    int s3;               /* 1 when s3rver runs */
    struct s3rver *srv;   /* s3: the server (registry-owned) */
    char url[256];        /* store URL (without query) */
} T;

static void quiet_logs(void) { lvlog_threshold = -1; }

static void file_setup(void)
{
    quiet_logs();
    sys_fault_clear();
    snprintf(T.dir, sizeof T.dir, "%s", lvt_tmpdir("store"));
    snprintf(T.url, sizeof T.url, "file://%s/root", T.dir);
}

static void file_teardown(void)
{
    sys_fault_clear();
    lvt_fini();
}

static void s3_start(void)
{
    s3rver_restart(T.srv);
}

static void s3_setup(void)
{
    char bucket[64];
    quiet_logs();
    snprintf(T.dir, sizeof T.dir, "%s", lvt_tmpdir("store"));
    snprintf(bucket, sizeof bucket, "lv-test-%ld", (long)getpid());
    T.srv = s3rver_start(bucket);
    T.port = T.srv->port;
    snprintf(T.bucket, sizeof T.bucket, "%s", bucket);
    snprintf(T.url, sizeof T.url, "s3://%s/pre/fix", T.bucket);
    T.s3 = 1;
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
}

static void s3_teardown(void)
{
    T.s3 = 0;
    lvt_fini();
}

TestSuite(store_file, .init = file_setup, .fini = file_teardown, .timeout = 30);
TestSuite(store_s3, .init = s3_setup, .fini = s3_teardown, .timeout = 40);
TestSuite(store_url, .init = quiet_logs, .timeout = 10);

/* Options pointing at this test's s3rver (credentials S3RVER/S3RVER). */
static struct store_opts s3_opts(void)
{
    static char endpoint[64];
    struct store_opts o = {0};

    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", T.port);
    o.endpoint = endpoint;
    o.force_path_style = -1; /* the default: path style for a custom endpoint */
    o.access_key = "S3RVER";
    o.secret_key = "S3RVER";
    o.retry_base_ms = 50;
    o.retry_max_ms = 400;
    return o;
}

static struct store *open_store(const struct store_opts *o)
{
    struct store *s = NULL;
    char err[512];
    int rc = store_open(T.url, o, &s, err, sizeof err);

    cr_assert_eq(rc, 0, "store_open(%s): %s: %s", T.url, lv_strerror(rc), err);
    cr_assert_not_null(s);
    return s;
}

static struct store *open_default(void)
{
    struct store_opts o = s3_opts();
    return open_store(T.s3 ? &o : NULL);
}

/* n pseudo-random bytes from seed (malloc'ed). */
static uint8_t *rand_bytes(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n ? n : 1);
    uint64_t x = 0x9e3779b97f4a7c15ull ^ seed;

    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
    return p;
}

static void put_ok(struct store *s, const char *key, const void *data, size_t len)
{
    int rc = store_put(s, key, data, len);
    cr_assert_eq(rc, 0, "put %s: %s: %s", key, lv_strerror(rc), store_last_error(s));
}

static void put_str(struct store *s, const char *key, const char *v) { put_ok(s, key, v, strlen(v)); }

/* Get [off, off+len) and compare with expect[0..elen). */
static void get_expect(struct store *s, const char *key, uint64_t off, uint64_t len, const void *expect, size_t elen)
{
    void *buf = NULL;
    size_t n = 0;
    int rc = store_get(s, key, off, len, &buf, &n);

    cr_assert_eq(rc, 0, "get %s [%llu,+%llu): %s: %s", key, (unsigned long long)off, (unsigned long long)len,
                 lv_strerror(rc), store_last_error(s));
    cr_assert_not_null(buf);
    cr_assert_eq(n, elen, "get %s [%llu,+%llu): %zu bytes, expected %zu", key, (unsigned long long)off,
                 (unsigned long long)len, n, elen);
    cr_assert(memcmp(buf, expect, elen) == 0, "get %s: content differs", key);
    free(buf);
}

/* ---------------- the shared behaviour checks ---------------- */

static void check_put_get_head_delete(void)
{
    struct store *s = open_default();
    struct store_obj o;
    struct store_stats st;
    void *buf = (void *)1;
    size_t n = 7;
    int64_t before = lv_now_us();

    put_str(s, "app.db/0001/seg/a", "hello world");
    get_expect(s, "app.db/0001/seg/a", 0, 0, "hello world", 11);
    cr_assert_eq(store_head(s, "app.db/0001/seg/a", &o), 0, "%s", store_last_error(s));
    cr_assert_eq(o.size, 11);
    cr_assert(o.mtime_us > before - 5000000 && o.mtime_us < lv_now_us() + 5000000, "mtime %lld", (long long)o.mtime_us);

    /* Overwrite replaces the content. */
    put_str(s, "app.db/0001/seg/a", "second");
    get_expect(s, "app.db/0001/seg/a", 0, 0, "second", 6);

    /* Empty object. */
    put_ok(s, "empty", "", 0);
    get_expect(s, "empty", 0, 0, "", 0);
    cr_assert_eq(store_head(s, "empty", &o), 0);
    cr_assert_eq(o.size, 0);

    /* Missing objects: LV_ENOENT, and no output. */
    cr_assert_eq(store_get(s, "nope/x", 0, 0, &buf, &n), LV_ENOENT);
    cr_assert_null(buf);
    cr_assert_eq(n, 0);
    cr_assert_eq(store_head(s, "nope", &o), LV_ENOENT);

    /* Delete, then gone; deleting again is fine. */
    cr_assert_eq(store_delete(s, "app.db/0001/seg/a"), 0, "%s", store_last_error(s));
    cr_assert_eq(store_head(s, "app.db/0001/seg/a", &o), LV_ENOENT);
    cr_assert_eq(store_get(s, "app.db/0001/seg/a", 0, 0, &buf, &n), LV_ENOENT);
    cr_assert_eq(store_delete(s, "app.db/0001/seg/a"), 0);

    /* Invalid keys never reach the backend. */
    const char *bad[] = {"", "/abs", "a/../b", "..", "a//b", "a/", "./a", "a/./b", "ctl\nx"};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++)
        cr_assert_eq(store_put(s, bad[i], "x", 1), LV_EINVAL, "key \"%s\" accepted", bad[i]);

    store_get_stats(s, &st);
    cr_assert_eq(st.puts, 3 + LV_ARRAY_LEN(bad));
    cr_assert_eq(st.gets, 5);
    cr_assert_eq(st.heads, 4);
    cr_assert_eq(st.deletes, 2);
    cr_assert_eq(st.bytes_up, 11 + 6);
    cr_assert_eq(st.bytes_down, 11 + 6);
    cr_assert_eq(st.errors, LV_ARRAY_LEN(bad)); /* ENOENT is not an error */
    cr_assert_eq(st.retries, 0);
    store_close(s);
}

static void check_ranged_get(void)
{
    struct store *s = open_default();
    const char *v = "0123456789abcdefghij";
    void *buf = NULL;
    size_t n = 0;

    put_str(s, "r/obj", v);
    get_expect(s, "r/obj", 0, 5, "01234", 5);
    get_expect(s, "r/obj", 10, 3, "abc", 3);
    get_expect(s, "r/obj", 15, 0, "fghij", 5);     /* to the end */
    get_expect(s, "r/obj", 17, 100, "hij", 3);     /* clipped at the end */
    get_expect(s, "r/obj", 19, 1, "j", 1);
    cr_assert_eq(store_get(s, "r/obj", 20, 0, &buf, &n), LV_EINVAL, "read starting at the end");
    cr_assert_eq(store_get(s, "r/obj", 25, 4, &buf, &n), LV_EINVAL, "read beyond the end");
    cr_assert_null(buf);
    cr_assert_eq(store_get(s, "r/none", 3, 4, &buf, &n), LV_ENOENT);
    store_close(s);
}

/* Keys of a list result joined by ',' (static buffer). */
static const char *list_keys(struct store *s, const char *prefix)
{
    static char out[4096];
    struct store_list l;
    int rc = store_list(s, prefix, &l);
    size_t o = 0;

    cr_assert_eq(rc, 0, "list %s: %s: %s", prefix, lv_strerror(rc), store_last_error(s));
    out[0] = '\0';
    for (size_t i = 0; i < l.n; i++)
        o += (size_t)snprintf(out + o, sizeof out - o, "%s%s", i ? "," : "", l.v[i].key);
    store_list_free(&l);
    return out;
}

static void check_list(void)
{
    struct store *s = open_default();
    struct store_list l;

    put_str(s, "a/2", "22");
    put_str(s, "a/1", "1");
    put_str(s, "a/b/3", "333");
    put_str(s, "ab", "ab!!");
    put_str(s, "b/x", "");
    put_str(s, "a/bc/d/e", "e");

    cr_assert_str_eq(list_keys(s, ""), "a/1,a/2,a/b/3,a/bc/d/e,ab,b/x");
    cr_assert_str_eq(list_keys(s, "a/"), "a/1,a/2,a/b/3,a/bc/d/e");
    cr_assert_str_eq(list_keys(s, "a"), "a/1,a/2,a/b/3,a/bc/d/e,ab");
    cr_assert_str_eq(list_keys(s, "a/b"), "a/b/3,a/bc/d/e");
    cr_assert_str_eq(list_keys(s, "a/b/"), "a/b/3");
    cr_assert_str_eq(list_keys(s, "a/bc/d/e"), "a/bc/d/e");
    cr_assert_str_eq(list_keys(s, "zz"), "");
    cr_assert_str_eq(list_keys(s, "q/r/"), "");

    cr_assert_eq(store_list(s, "a/", &l), 0);
    cr_assert_eq(l.n, 4);
    cr_assert_eq(l.v[0].size, 1);
    cr_assert_eq(l.v[1].size, 2);
    cr_assert_eq(l.v[2].size, 3);
    cr_assert(l.v[0].mtime_us > 0);
    store_list_free(&l);

    cr_assert_eq(store_delete(s, "a/2"), 0);
    cr_assert_str_eq(list_keys(s, "a/"), "a/1,a/b/3,a/bc/d/e");
    store_close(s);
}

/* Many keys with a small page size: all pages are followed. */
static void check_list_pages(int page)
{
    struct store_opts o = s3_opts();
    struct store *s;
    struct store_list l;
    char key[64];
    int n = 23;

    o.list_page_size = page;
    s = open_store(T.s3 ? &o : NULL);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "many/k%03d", i);
        put_str(s, key, key);
    }
    put_str(s, "other", "x");
    s->n_requests = 0;
    cr_assert_eq(store_list(s, "many/", &l), 0, "%s", store_last_error(s));
    if (T.s3) /* 23 objects, 5 a page: 5 ListObjectsV2 pages */
        cr_assert_eq(s->n_requests, 5, "%llu LIST requests", (unsigned long long)s->n_requests);
    cr_assert_eq(l.n, (size_t)n, "listed %zu of %d objects (page size %d)", l.n, n, page);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "many/k%03d", i);
        cr_assert_str_eq(l.v[i].key, key);
        cr_assert_eq(l.v[i].size, strlen(key));
    }
    store_list_free(&l);
    store_close(s);
}

/* Several threads write and read distinct objects through one store. */
struct conc_arg {
    struct store *s;
    int id;
    int fails;
};

static void *conc_thread(void *p)
{
    struct conc_arg *a = p;
    char key[64];

    for (int i = 0; i < 10; i++) {
        size_t len = 1000 + (size_t)(a->id * 100 + i);
        uint8_t *d = rand_bytes(len, (uint32_t)(a->id * 1000 + i));
        void *buf = NULL;
        size_t n = 0;

        snprintf(key, sizeof key, "conc/%d/%d", a->id, i);
        if (store_put(a->s, key, d, len) != 0 || store_get(a->s, key, 0, 0, &buf, &n) != 0 || n != len ||
            memcmp(buf, d, len) != 0)
            a->fails++;
        free(buf);
        free(d);
    }
    return NULL;
}

static void check_concurrent(void)
{
    struct store *s = open_default();
    pthread_t th[4];
    struct conc_arg a[4];

    for (int i = 0; i < 4; i++) {
        a[i] = (struct conc_arg){s, i, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, conc_thread, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(a[i].fails, 0, "thread %d: %d failures (%s)", i, a[i].fails, store_last_error(s));
    }
    cr_log_info("%llu requests, %llu new connections", (unsigned long long)s->n_requests,
                (unsigned long long)s->n_connects);
    if (T.s3) /* 4 threads x 10 x (PUT + HEAD + GET) = 120 requests over pooled connections */
        cr_assert_leq(s->n_connects, 12, "%llu connections for %llu requests: no reuse",
                      (unsigned long long)s->n_connects, (unsigned long long)s->n_requests);
    cr_assert_str_eq(list_keys(s, "conc/3/"), "conc/3/0,conc/3/1,conc/3/2,conc/3/3,conc/3/4,conc/3/5,conc/3/6,"
                                              "conc/3/7,conc/3/8,conc/3/9");
    store_close(s);
}

Test(store_file, put_get_head_delete) { check_put_get_head_delete(); }
Test(store_s3, put_get_head_delete) { check_put_get_head_delete(); }
Test(store_file, ranged_get) { check_ranged_get(); }
Test(store_s3, ranged_get) { check_ranged_get(); }
Test(store_file, list_prefixes) { check_list(); }
Test(store_s3, list_prefixes) { check_list(); }
Test(store_file, list_many) { check_list_pages(5); }
Test(store_s3, list_pagination) { check_list_pages(5); }
Test(store_file, concurrent) { check_concurrent(); }
Test(store_s3, concurrent) { check_concurrent(); }

/* ---------------- file:// specifics ---------------- */

/* Entries of dir other than . and .. whose name contains needle. */
static int count_entries(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    cr_assert_not_null(d, "opendir %s", dir);
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strstr(e->d_name, needle))
            n++;
    closedir(d);
    return n;
}

Test(store_file, atomic_put_under_faults)
{
    struct store *s = open_default();
    char dir[300];
    const enum sys_op ops[] = {SYS_OP_WRITE, SYS_OP_FSYNC, SYS_OP_RENAME};

    put_str(s, "db/obj", "old content");
    snprintf(dir, sizeof dir, "%s/root/db", T.dir);
    for (size_t i = 0; i < LV_ARRAY_LEN(ops); i++) {
        sys_fault_set(ops[i], EIO, 0, "obj");
        cr_assert_lt(store_put(s, "db/obj", "NEW CONTENT!", 12), 0, "put succeeded despite fault %zu", i);
        sys_fault_clear();
        cr_assert(strstr(store_last_error(s), "PUT db/obj") != NULL, "error: %s", store_last_error(s));
        /* Readers still see the old content, and no temporary file is left. */
        get_expect(s, "db/obj", 0, 0, "old content", 11);
        cr_assert_eq(count_entries(dir, ""), 1, "leftover files after fault %zu", i);
    }
    /* A short write (disk full) fails too, with the old content intact. */
    sys_fault_set(SYS_OP_WRITE, -1, 0, "obj");
    cr_assert_eq(store_put(s, "db/obj", "NEW CONTENT!", 12), LV_ENOSPC);
    sys_fault_clear();
    get_expect(s, "db/obj", 0, 0, "old content", 11);
    put_str(s, "db/obj", "NEW CONTENT!");
    get_expect(s, "db/obj", 0, 0, "NEW CONTENT!", 12);
    cr_assert_eq(count_entries(dir, ".lvtmp."), 0);
    store_close(s);
}

/* Writers replace one key with full versions while readers check that each
 * read is one complete version, never a mix or a torn file. */
struct flip_arg {
    struct store *s;
    const uint8_t *v[2]; /* the two versions */
    size_t len;
    int writer;          /* 1: writes, 0: reads */
    volatile int *stop;
    int bad;             /* torn or failed reads seen */
    int ops;
};

static void *flip_thread(void *p)
{
    struct flip_arg *a = p;

    while (!*a->stop) {
        if (a->writer) {
            if (store_put(a->s, "flip", a->v[a->ops & 1], a->len) != 0)
                a->bad++;
        } else {
            void *buf = NULL;
            size_t n = 0;
            if (store_get(a->s, "flip", 0, 0, &buf, &n) != 0 || n != a->len ||
                (memcmp(buf, a->v[0], n) != 0 && memcmp(buf, a->v[1], n) != 0))
                a->bad++;
            free(buf);
        }
        a->ops++;
    }
    return NULL;
}

Test(store_file, readers_see_whole_versions)
{
    struct store *s = open_default();
    size_t len = 256 * 1024;
    uint8_t *v0 = rand_bytes(len, 1), *v1 = rand_bytes(len, 2);
    volatile int stop = 0;
    struct flip_arg a[3];
    pthread_t th[3];

    put_ok(s, "flip", v0, len);
    for (int i = 0; i < 3; i++) {
        a[i] = (struct flip_arg){s, {v0, v1}, len, i < 2, &stop, 0, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, flip_thread, &a[i]), 0);
    }
    usleep(700 * 1000);
    stop = 1;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(a[i].bad, 0, "thread %d: %d bad operations of %d", i, a[i].bad, a[i].ops);
    }
    cr_assert(a[0].ops > 5 && a[2].ops > 5, "too few operations: %d puts, %d gets", a[0].ops, a[2].ops);
    cr_assert_str_eq(list_keys(s, ""), "flip");
    free(v0);
    free(v1);
    store_close(s);
}

Test(store_file, url_forms)
{
    struct store *s = NULL;
    char err[256], url[300];

    snprintf(url, sizeof url, "file://%s/x%%20y?foo=1", T.dir);
    cr_assert_eq(store_open(url, NULL, &s, err, sizeof err), LV_ECONFIG);
    cr_assert(strstr(err, "\"foo\"") != NULL, "%s", err);
    cr_assert_eq(store_open("file://", NULL, &s, err, sizeof err), LV_ECONFIG);
    cr_assert_eq(store_open("ftp://x/y", NULL, &s, err, sizeof err), LV_ECONFIG);
    cr_assert(strstr(err, "ftp://") != NULL, "%s", err);

    /* Percent-decoded path; a bare absolute path works too; trailing '/' dropped. */
    snprintf(url, sizeof url, "file://%s/x%%20y/", T.dir);
    cr_assert_eq(store_open(url, NULL, &s, err, sizeof err), 0, "%s", err);
    put_str(s, "k", "v");
    store_close(s);
    snprintf(url, sizeof url, "%s/x y", T.dir);
    cr_assert_eq(store_open(url, NULL, &s, err, sizeof err), 0, "%s", err);
    get_expect(s, "k", 0, 0, "v", 1);
    cr_assert(strncmp(store_url(s), "file:///tmp/", 12) == 0, "%s", store_url(s));
    cr_assert_eq(store_put(s, "a/.lvtmp.x", "v", 1), LV_EINVAL);
    store_close(s);
}

/* file://rel and file://./rel are relative to the current directory, as a
 * relative url: in the config file is relative to the config's directory. */
Test(store_file, relative_url)
{
    struct store *s = NULL;
    char err[256], cwd[PATH_MAX], here[PATH_MAX], want[PATH_MAX + 32];
    int fd = -1;

    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    cr_assert_eq(chdir(T.dir), 0);
    cr_assert_not_null(getcwd(here, sizeof here));
    int rc = store_open("file://./backup", NULL, &s, err, sizeof err);
    snprintf(want, sizeof want, "file://%s/backup", here);
    if (rc == 0) {
        cr_expect_str_eq(store_url(s), want);
        put_str(s, "k", "v");
        store_close(s);
        snprintf(want, sizeof want, "%s/backup/k", here);
        fd = open(want, O_RDONLY);
        cr_expect_geq(fd, 0, "file://./backup did not write to %s", want);
        if (fd >= 0)
            close(fd);
    }
    int rc2 = store_open("file://rel/dir", NULL, &s, err, sizeof err);
    if (rc2 == 0) {
        snprintf(want, sizeof want, "file://%s/rel/dir", here);
        cr_expect_str_eq(store_url(s), want);
        store_close(s);
    }
    cr_assert_eq(chdir(cwd), 0);
    cr_assert_eq(rc, 0, "file://./backup: %s", err);
    cr_assert_eq(rc2, 0, "file://rel/dir: %s", err);
}

/* Readers open with no_create: a missing directory is not created and
 * store_probe names it; an existing one is empty until an object is stored. */
Test(store_file, probe_missing_and_empty)
{
    struct store_opts o = {.no_create = 1};
    struct store *s = NULL;
    char err[512], url[400], path[400];
    struct stat st;
    int empty = -1;

    snprintf(path, sizeof path, "%s/missing", T.dir);
    snprintf(url, sizeof url, "file://%s", path);
    cr_assert_eq(store_open(url, &o, &s, err, sizeof err), 0, "%s", err);
    cr_assert_eq(store_probe(s, &empty, err, sizeof err), LV_ENOENT);
    cr_assert(strstr(err, path) && strstr(err, "does not exist"), "%s", err);
    cr_assert_neq(stat(path, &st), 0, "a reader created %s", path);
    store_close(s);

    cr_assert_eq(store_open(url, NULL, &s, err, sizeof err), 0, "%s", err); /* a writer creates it */
    cr_assert_eq(store_probe(s, &empty, err, sizeof err), 0, "%s", err);
    cr_assert_eq(empty, 1);
    put_str(s, "a/b/c", "v");
    cr_assert_eq(store_probe(s, &empty, err, sizeof err), 0, "%s", err);
    cr_assert_eq(empty, 0);
    store_close(s);
}

/* ---------------- S3 specifics ---------------- */

/* store_probe on S3: a missing bucket is LV_ENOENT naming it; the prefix
 * is empty until an object is stored under it. */
Test(store_s3, probe_missing_bucket_and_empty_prefix)
{
    struct store_opts o = s3_opts();
    struct store *s = NULL;
    char err[512], url[300];
    int empty = -1;

    snprintf(url, sizeof url, "s3://nosuchbucket/pre");
    cr_assert_eq(store_open(url, &o, &s, err, sizeof err), 0, "%s", err);
    cr_assert_eq(store_probe(s, &empty, err, sizeof err), LV_ENOENT, "%s", err);
    cr_assert(strstr(err, "bucket 'nosuchbucket' does not exist"), "%s", err);
    store_close(s);

    s = open_store(&o);
    cr_assert_eq(store_probe(s, &empty, err, sizeof err), 0, "%s", err);
    cr_assert_eq(empty, 1);
    put_str(s, "x/y", "v");
    cr_assert_eq(store_probe(s, &empty, err, sizeof err), 0, "%s", err);
    cr_assert_eq(empty, 0);
    store_close(s);
}


/* ETag of an object as the server reports it (via curl), "" if none. */
static void s3_etag(const char *key, char *etag, size_t n)
{
    char *out = NULL;
    run_cmd(&out,
            "curl -s -I --aws-sigv4 aws:amz:us-east-1:s3 -u S3RVER:S3RVER -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "
            "http://127.0.0.1:%d/%s/pre/fix/%s | sed -n 's/^ETag: *//ip' | tr -d '\\r\\n\"'",
            T.port, T.bucket, key);
    snprintf(etag, n, "%s", out ? out : "");
    free(out);
}

Test(store_s3, multipart_and_parallel_get)
{
    struct store_opts o = s3_opts();
    struct store *s;
    size_t len = 12 * MIB + 12345;
    uint8_t *d = rand_bytes(len, 42);
    char etag[128];
    struct store_obj info;
    struct store_stats st;
    int64_t t0;

    o.multipart_threshold = 5 * MIB + 1;
    o.part_size = 5 * MIB;
    o.parallel = 3;
    s = open_store(&o);
    t0 = lv_mono_us();
    put_ok(s, "big/obj", d, len);
    cr_log_info("12 MiB multipart put: %lld ms", (long long)(lv_mono_us() - t0) / 1000);
    /* CreateMultipartUpload + 3 UploadPart + Complete, parts in parallel. */
    cr_assert_eq(s->n_requests, 5, "%llu requests for a 3-part upload", (unsigned long long)s->n_requests);
    cr_assert_geq(s->max_inflight, 2, "parts were not uploaded in parallel");
    s3_etag("big/obj", etag, sizeof etag);
    cr_assert(etag[0], "object not on the server");
    cr_assert_eq(store_head(s, "big/obj", &info), 0);
    cr_assert_eq(info.size, len);

    t0 = lv_mono_us();
    s->n_requests = 0;
    s->max_inflight = 0;
    get_expect(s, "big/obj", 0, 0, d, len);                        /* HEAD + 3 parallel ranges */
    cr_log_info("12 MiB parallel get: %lld ms", (long long)(lv_mono_us() - t0) / 1000);
    cr_assert_eq(s->n_requests, 4, "%llu requests for a 3-range get", (unsigned long long)s->n_requests);
    cr_assert_geq(s->max_inflight, 2, "ranges were not fetched in parallel");
    get_expect(s, "big/obj", 1000, 0, d + 1000, len - 1000);       /* unaligned, to the end */
    get_expect(s, "big/obj", 3, 11 * MIB, d + 3, 11 * MIB);        /* explicit long range */
    get_expect(s, "big/obj", len - 10, 20 * MIB, d + len - 10, 10); /* clipped by the end */
    get_expect(s, "big/obj", 5 * MIB - 2, 4, d + 5 * MIB - 2, 4);    /* across a part boundary */

    /* At or below the threshold: a single PUT. */
    s->n_requests = 0;
    put_ok(s, "big/small", d, 5 * MIB + 1);
    cr_assert_eq(s->n_requests, 1);
    get_expect(s, "big/small", 0, 0, d, 5 * MIB + 1);
    store_get_stats(s, &st);
    cr_assert_eq(st.bytes_up, len + 5 * MIB + 1);
    cr_assert_eq(st.retries, 0);
    free(d);
    store_close(s);
}

Test(store_s3, bad_credentials_fail_at_once)
{
    struct store_opts o = s3_opts();
    struct store *s;
    struct store_stats st;
    struct store_obj info;
    void *buf = NULL;
    size_t n;
    int64_t t0;
    char want[256];

    o.access_key = "AKIDNOTKNOWN";
    o.secret_key = "wrong";
    o.retry_base_ms = 20000; /* a retry would show in the elapsed time */
    s = open_store(&o);
    t0 = lv_mono_us();
    cr_assert_eq(store_put(s, "k/1", "v", 1), LV_EPERM);
    snprintf(want, sizeof want, "s3://%s/pre/fix: PUT k/1: InvalidAccessKeyId: ", T.bucket);
    cr_assert(strncmp(store_last_error(s), want, strlen(want)) == 0, "error: %s", store_last_error(s));
    cr_assert_eq(store_get(s, "k/1", 0, 0, &buf, &n), LV_EPERM);
    cr_assert_eq(store_list(s, "", &(struct store_list){0}), LV_EPERM);
    cr_assert(strstr(store_last_error(s), "LIST") != NULL, "%s", store_last_error(s));
    cr_assert_lt(lv_mono_us() - t0, 9000000, "permanent errors were retried"); /* one retry waits >= 10 s */
    store_get_stats(s, &st);
    cr_assert_eq(st.retries, 0);
    cr_assert_eq(st.errors, 3);
    store_close(s);

    /* A bucket that does not exist: also immediate, and named. */
    snprintf(T.url, sizeof T.url, "s3://no-such-bucket-%ld/p", (long)getpid());
    o = s3_opts();
    o.retry_base_ms = 20000;
    s = open_store(&o);
    t0 = lv_mono_us();
    cr_assert_eq(store_put(s, "k", "v", 1), LV_ECONFIG);
    cr_assert(strstr(store_last_error(s), ": PUT k: NoSuchBucket: ") != NULL, "%s", store_last_error(s));
    cr_assert_eq(store_list(s, "", &(struct store_list){0}), LV_ECONFIG);
    cr_assert(strstr(store_last_error(s), "NoSuchBucket") != NULL, "%s", store_last_error(s));
    cr_assert_eq(store_head(s, "k", &info), LV_ENOENT); /* HEAD has no body to tell */
    cr_assert_lt(lv_mono_us() - t0, 9000000, "permanent errors were retried"); /* one retry waits >= 10 s */
    store_get_stats(s, &st);
    cr_assert_eq(st.retries, 0);
    store_close(s);
}

/* Restart s3rver after a delay (thread). */
static void *restart_later(void *p)
{
    usleep((useconds_t)(intptr_t)p * 1000);
    s3_start();
    return NULL;
}

Test(store_s3, retries_until_server_returns)
{
    struct store_opts o = s3_opts();
    struct store *s;
    struct store_stats st;
    pthread_t th;
    size_t len = 12 * MIB;
    uint8_t *d = rand_bytes(len, 7);
    int64_t t0;

    o.retry_base_ms = 100;
    o.retry_max_ms = 500;
    o.max_retries = 12; /* >= ~4 s of backoff: plenty for a restart */
    o.multipart_threshold = 5 * MIB + 1;
    o.part_size = 5 * MIB;
    s = open_store(&o);
    put_str(s, "keep", "kept across the restart");

    /* Down: GET and PUT retry, then succeed once the server is back. */
    s3rver_kill(T.srv);
    cr_assert_eq(pthread_create(&th, NULL, restart_later, (void *)(intptr_t)800), 0);
    t0 = lv_mono_us();
    get_expect(s, "keep", 0, 0, "kept across the restart", 23);
    put_str(s, "during", "written while restarting");
    pthread_join(th, NULL);
    cr_assert_gt(lv_mono_us() - t0, 700000, "the server was never down?");
    store_get_stats(s, &st);
    cr_assert_gt(st.retries, 0);
    cr_assert_eq(st.errors, 0);
    get_expect(s, "during", 0, 0, "written while restarting", 24);

    /* Killed in the middle of a multipart upload. */
    {
        pthread_t killer;
        struct store_stats st2;
        cr_assert_eq(pthread_create(&killer, NULL, restart_later, (void *)(intptr_t)1000), 0);
        usleep(1000);
        run_cmd(NULL, "sleep 0.05; tests/s3rver.sh kill '%s'", T.srv->dir); /* while parts are in flight */
        put_ok(s, "big", d, len);
        pthread_join(killer, NULL);
        get_expect(s, "big", 0, 0, d, len);
        store_get_stats(s, &st2);
        cr_log_info("retries: %llu before, %llu after the multipart kill", (unsigned long long)st.retries,
                    (unsigned long long)st2.retries);
    }
    free(d);
    store_close(s);
}

Test(store_s3, gives_up_after_max_retries)
{
    struct store_opts o = s3_opts();
    struct store *s;
    struct store_stats st;
    void *buf = NULL;
    size_t n;

    o.max_retries = 3;
    o.retry_base_ms = 10;
    o.retry_max_ms = 20;
    s = open_store(&o);
    s3rver_stop(T.srv);
    T.s3 = 0;
    cr_assert_eq(store_get(s, "x", 0, 0, &buf, &n), LV_ENET);
    cr_assert(strstr(store_last_error(s), "giving up after 4 attempts") != NULL, "%s", store_last_error(s));
    store_get_stats(s, &st);
    cr_assert_eq(st.retries, 3);
    cr_assert_eq(st.errors, 1);
    store_close(s);
}

/* Capture everything written to fd 2 while fn runs (logs go there). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    char path[] = "/tmp/lv-store-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    void *text = NULL;
    size_t len = 0;

    cr_assert(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    cr_assert_eq(sys_read_file(path, &text, &len), 0);
    unlink(path);
    text = realloc(text, len + 1);
    ((char *)text)[len] = '\0';
    return text;
}

#define LEAK_AK "AKIDLEAKCHECK7777"
#define LEAK_SK "SecretLeakCheck/abc+xyz123"
#define LEAK_TOK "TokenLeakCheckQQQ"

static void leak_ops(void *arg)
{
    char *errs = arg, err[512];
    struct store_opts o = s3_opts();
    struct store *s;
    void *buf;
    size_t n;
    char url[300];

    lvlog_setup(LVLOG_DEBUG, 0);
    o.access_key = LEAK_AK;
    o.secret_key = LEAK_SK;
    o.session_token = LEAK_TOK;
    o.max_retries = 1;
    o.retry_base_ms = 10;
    s = open_store(&o);
    store_put(s, "k", "v", 1);
    strcat(errs, store_last_error(s));
    store_get(s, "k", 0, 0, &buf, &n);
    strcat(errs, store_last_error(s));
    store_list(s, "p", &(struct store_list){0});
    strcat(errs, store_last_error(s));
    /* A message that would contain a secret is redacted. */
    store_fail(s, "%s: test %s %s %s", store_url(s), LEAK_AK, LEAK_SK, LEAK_TOK);
    strcat(errs, store_last_error(s));
    store_close(s);

    /* Retries against a dead port, and a rejected URL. */
    o.endpoint = "http://127.0.0.1:1";
    s = open_store(&o);
    store_get(s, "k", 0, 0, &buf, &n);
    strcat(errs, store_last_error(s));
    store_close(s);
    snprintf(url, sizeof url, "s3://%s/p?endpoint=http://10.0.0.1", T.bucket);
    store_open(url, &o, &s, err, sizeof err);
    strcat(errs, err);
    snprintf(url, sizeof url, "s3://%s/p?secret-key=" LEAK_SK, T.bucket);
    store_open(url, &o, &s, err, sizeof err);
    strcat(errs, err);
    lvlog_threshold = -1;
}

Test(store_s3, credentials_never_logged)
{
    char errs[8192] = "";
    char *log = capture_stderr(leak_ops, errs);

    /* The capture works: the failures are there... */
    cr_assert(strstr(log, "InvalidAccessKeyId") != NULL, "log: %s", log);
    cr_assert(strstr(log, "retry 1 of 1") != NULL, "log: %s", log);
    cr_assert(strstr(errs, "InvalidAccessKeyId") != NULL, "errors: %s", errs);
    cr_assert(strstr(errs, "test *** *** ***") != NULL, "errors: %s", errs);
    cr_assert(strstr(errs, "plain http") != NULL, "errors: %s", errs);
    cr_assert(strstr(errs, "\"secret-key\"") != NULL, "errors: %s", errs);
    /* ...but never the credentials. */
    const char *secrets[] = {LEAK_AK, LEAK_SK, LEAK_TOK, "SecretLeak", "TokenLeak"};
    for (size_t i = 0; i < LV_ARRAY_LEN(secrets); i++) {
        cr_assert(strstr(log, secrets[i]) == NULL, "log leaks %s: %s", secrets[i], log);
        cr_assert(strstr(errs, secrets[i]) == NULL, "errors leak %s: %s", secrets[i], errs);
    }
    free(log);
}

Test(store_s3, environment_credentials)
{
    struct store_opts o = s3_opts();
    struct store *s = NULL;
    char err[512];

    o.access_key = o.secret_key = NULL;
    cr_assert_eq(store_open(T.url, &o, &s, err, sizeof err), LV_ECONFIG);
    cr_assert(strstr(err, "AWS_ACCESS_KEY_ID") != NULL, "%s", err);
    setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    setenv("AWS_SESSION_TOKEN", "session-token-value", 1);
    s = open_store(&o);
    put_str(s, "env", "ok");
    get_expect(s, "env", 0, 0, "ok", 2);
    store_close(s);
    setenv("AWS_ACCESS_KEY_ID", "ENVNOTKNOWN", 1);
    s = open_store(&o);
    cr_assert_eq(store_put(s, "env", "x", 1), LV_EPERM, "the environment's key was not used");
    store_close(s);
}

Test(store_s3, url_query_options)
{
    struct store *s = NULL;
    char url[300], err[512];
    struct store_opts o = s3_opts();

    /* Everything from the query (URL-encoded endpoint), nothing from opts but the keys. */
    o.endpoint = "http://127.0.0.1:1"; /* overridden by the query */
    snprintf(url, sizeof url, "s3://%s/q/p?endpoint=http%%3A%%2F%%2F127.0.0.1%%3A%d&region=us-east-1&force-path-style=true",
             T.bucket, T.port);
    cr_assert_eq(store_open(url, &o, &s, err, sizeof err), 0, "%s", err);
    snprintf(err, sizeof err, "s3://%s/q/p", T.bucket);
    cr_assert_str_eq(store_url(s), err);
    put_str(s, "x", "via query");
    store_close(s);
    snprintf(T.url, sizeof T.url, "s3://%s/q/p", T.bucket);
    s = open_default();
    get_expect(s, "x", 0, 0, "via query", 9);
    store_close(s);
}

/* ---------------- SigV4 as real S3 checks it ---------------- */

/* s3rver does not verify V4 signatures, so this little server (python3,
 * standard library) does: it recomputes each request's signature the way
 * AWS does (query re-encoded and sorted, signed headers, payload hash from
 * x-amz-content-sha256, secret "SK") and answers 403 SignatureDoesNotMatch
 * on a mismatch, else a minimal S3 reply.  Tricky bytes are in play: keys
 * with spaces and '+', an UploadId and a continuation token with '+/='. */
static const char sigv4_py[] =
    "import hashlib,hmac,sys,urllib.parse as U\n"
    "from http.server import BaseHTTPRequestHandler,ThreadingHTTPServer\n"
    "SK='SK'\n"
    "def enc(x): return U.quote(x,safe='-_.~')\n"
    "def h(k,m): return hmac.new(k,m.encode(),hashlib.sha256).digest()\n"
    "class H(BaseHTTPRequestHandler):\n"
    "  protocol_version='HTTP/1.1'\n"
    "  def log_message(self,*a): pass\n"
    "  def check(self):\n"
    "    a=self.headers.get('Authorization','')\n"
    "    if not a.startswith('AWS4-HMAC-SHA256 '): return 'no sigv4'\n"
    "    f=dict(x.strip().split('=',1) for x in a[17:].split(','))\n"
    "    cred=f['Credential'].split('/'); sh=f['SignedHeaders']\n"
    "    path,_,q=self.path.partition('?')\n"
    "    ps=[p.partition('=') for p in q.split('&') if p]\n"
    "    cq='&'.join(sorted(enc(U.unquote(k))+'='+enc(U.unquote(v)) for k,_,v in ps))\n"
    "    ch=''.join(n+':'+' '.join(self.headers.get(n,'').split())+'\\n' for n in sh.split(';'))\n"
    "    ph=self.headers.get('x-amz-content-sha256')\n"
    "    if ph is None: return 'no x-amz-content-sha256'\n"
    "    cr='\\n'.join([self.command,path,cq,ch,sh,ph])\n"
    "    d=self.headers['X-Amz-Date']; sc='/'.join(cred[1:])\n"
    "    sts='\\n'.join(['AWS4-HMAC-SHA256',d,sc,hashlib.sha256(cr.encode()).hexdigest()])\n"
    "    k=h(h(h(h(('AWS4'+SK).encode(),cred[1]),cred[2]),cred[3]),'aws4_request')\n"
    "    if hmac.new(k,sts.encode(),hashlib.sha256).hexdigest()!=f['Signature']: return 'bad signature for '+repr(cr)\n"
    "    if 'session-tok' != self.headers.get('x-amz-security-token') or 'x-amz-security-token' not in sh: return 'token'\n"
    "    return None\n"
    "  def reply(self,code,body=b'',hdrs={}):\n"
    "    self.send_response(code)\n"
    "    for k,v in hdrs.items(): self.send_header(k,v)\n"
    "    self.send_header('Content-Length',str(len(body))); self.end_headers()\n"
    "    if self.command!='HEAD': self.wfile.write(body)\n"
    "  def any(self):\n"
    "    n=int(self.headers.get('Content-Length') or 0); body=self.rfile.read(n)\n"
    "    err=self.check()\n"
    "    with open(sys.argv[2],'a') as log: log.write(('BAD ' + err if err else 'OK') + ' ' + self.command + ' ' + self.path + '\\n')\n"
    "    if err: return self.reply(403,b'<Error><Code>SignatureDoesNotMatch</Code><Message>x</Message></Error>')\n"
    "    path,_,q=self.path.partition('?'); qs=U.parse_qs(q,keep_blank_values=True)\n"
    "    if 'uploads' in qs: return self.reply(200,b'<InitiateMultipartUploadResult><UploadId>u+p/l=d</UploadId></InitiateMultipartUploadResult>')\n"
    "    if 'partNumber' in qs: return self.reply(200,b'',{'ETag':'\"e'+qs['partNumber'][0]+'\"'})\n"
    "    if 'uploadId' in qs and self.command=='POST': return self.reply(200,b'<CompleteMultipartUploadResult/>')\n"
    "    if 'list-type' in qs:\n"
    "      more='continuation-token' not in qs\n"
    "      x='<ListBucketResult><Contents><Key>p/k'+str(int(more))+'</Key><Size>1</Size></Contents><IsTruncated>'+('true' if more else 'false')+'</IsTruncated>'+('<NextContinuationToken>t+k/n==</NextContinuationToken>' if more else '')+'</ListBucketResult>'\n"
    "      return self.reply(200,x.encode())\n"
    "    r=self.headers.get('Range')\n"
    "    if r and self.command=='GET':\n"
    "      a,b=(int(x) for x in r[6:].split('-')); b=min(b,2)\n"
    "      return self.reply(206,b'abc'[a:b+1],{'ETag':'\"x\"','Content-Range':'bytes %d-%d/3'%(a,b)})\n"
    "    if self.command in ('GET','HEAD'): return self.reply(200,b'abc',{'ETag':'\"x\"'})\n"
    "    return self.reply(200)\n"
    "  do_GET=do_PUT=do_POST=do_DELETE=do_HEAD=any\n"
    "ThreadingHTTPServer(('127.0.0.1',int(sys.argv[1])),H).serve_forever()\n";

static char sigv4_pid[32]; /* pid of the checker, to kill at teardown */

static void sigv4_teardown(void)
{
    if (sigv4_pid[0])
        run_cmd(NULL, "kill %s 2>/dev/null", sigv4_pid);
    file_teardown();
}

TestSuite(store_sigv4, .init = file_setup, .fini = sigv4_teardown, .timeout = 30);

Test(store_sigv4, signatures_verify)
{
    char py[300], log[300], *out = NULL, *pid = NULL;
    int port = free_port(), rc;
    struct store_opts o = {.endpoint = NULL, .access_key = "AK", .secret_key = "SK", .session_token = "session-tok",
                           .force_path_style = -1, .multipart_threshold = 5 * MIB + 1, .part_size = 5 * MIB,
                           .retry_base_ms = 10};
    char endpoint[64];
    struct store *s;
    struct store_list l;
    size_t len = 6 * MIB;
    uint8_t *d = rand_bytes(len, 3);
    FILE *f;

    snprintf(py, sizeof py, "%s/sigv4.py", T.dir);
    snprintf(log, sizeof log, "%s/sigv4.log", T.dir);
    f = fopen(py, "w");
    cr_assert_not_null(f);
    fputs(sigv4_py, f);
    fclose(f);
    cr_assert_eq(run_cmd(&pid, "python3 %s %d %s >%s.err 2>&1 </dev/null & echo $!", py, port, log, log), 0);
    snprintf(sigv4_pid, sizeof sigv4_pid, "%d", atoi(pid));
    for (int i = 0; i < 300 && run_cmd(NULL, "curl -s -o /dev/null http://127.0.0.1:%d/", port) != 0; i++)
        usleep(50000);
    cr_assert_eq(truncate(log, 0), 0, "the signature checker did not start"); /* drop the probes */
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", port);
    o.endpoint = endpoint;
    snprintf(T.url, sizeof T.url, "s3://bkt/pre%%20fix");
    s = open_store(&o);
    put_str(s, "a b+c/d~e=f", "x");
    get_expect(s, "a b+c/d~e=f", 1, 2, "bc", 2);
    put_ok(s, "multi", d, len);
    cr_assert_eq(store_list(s, "p/", &l), 0, "%s", store_last_error(s));
    cr_assert_eq(l.n, 0); /* the fake's keys lack the store prefix */
    store_list_free(&l);
    cr_assert_eq(store_delete(s, "a b+c/d~e=f"), 0, "%s", store_last_error(s));
    store_close(s);
    rc = run_cmd(&out, "cat %s", log);
    cr_assert_eq(rc, 0);
    cr_assert(strstr(out, "BAD") == NULL, "signature rejected:\n%s", out);
    cr_assert(strstr(out, "OK POST /bkt/pre%20fix/multi?uploads=") != NULL, "%s", out);
    cr_assert(strstr(out, "uploadId=u%2Bp%2Fl%3Dd") != NULL, "%s", out);
    cr_assert(strstr(out, "continuation-token=t%2Bk%2Fn%3D%3D&list-type=2") != NULL, "%s", out);
    cr_assert(strstr(out, "OK PUT /bkt/pre%20fix/a%20b%2Bc/d~e%3Df") != NULL, "%s", out);
    free(out);
    free(pid);
    free(d);
}

/* ---------------- URL parsing (no server) ---------------- */

static int parse(const char *url, const struct store_opts *o, struct s3_config *c, char *err, size_t n)
{
    static const struct store_opts keys = {.access_key = "AK", .secret_key = "SK"};
    return store_s3_parse(url, o ? o : &keys, c, err, n);
}

Test(store_url, s3_query_and_addressing)
{
    struct s3_config c;
    char err[512], *u;

    cr_assert_eq(parse("s3://my-bucket/a/b/?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-3"
                       "&force-path-style=true", NULL, &c, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.bucket, "my-bucket");
    cr_assert_str_eq(c.prefix, "a/b/");
    cr_assert_str_eq(c.scheme, "http");
    cr_assert_str_eq(c.host, "127.0.0.1");
    cr_assert_str_eq(c.port, ":9000");
    cr_assert_str_eq(c.region, "eu-west-3");
    cr_assert_eq(c.path_style, 1);
    cr_assert_eq(c.multipart_threshold, 16 * MIB);
    cr_assert_eq(c.part_size, 8 * MIB);
    cr_assert_eq(c.parallel, 4);
    u = store_s3_object_url(&c, "k/x y+z", "partNumber=1&uploadId=U");
    cr_assert_str_eq(u, "http://127.0.0.1:9000/my-bucket/a/b/k/x%20y%2Bz?partNumber=1&uploadId=U");
    free(u);
    u = store_s3_object_url(&c, NULL, "list-type=2");
    cr_assert_str_eq(u, "http://127.0.0.1:9000/my-bucket?list-type=2");
    free(u);
    store_s3_config_free(&c);

    /* Defaults: AWS, https, virtual-hosted, no prefix; sizes from the query. */
    cr_assert_eq(parse("s3://bkt?multipart-threshold=64MiB&part-size=6M&parallel=9&max-retries=0", NULL, &c, err,
                       sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.prefix, "");
    cr_assert_str_eq(c.region, "us-east-1");
    cr_assert_eq(c.path_style, 0);
    cr_assert_eq(c.multipart_threshold, 64 * MIB);
    cr_assert_eq(c.part_size, 6 * MIB);
    cr_assert_eq(c.parallel, 9);
    cr_assert_eq(c.max_retries, 0);
    u = store_s3_object_url(&c, "k", NULL);
    cr_assert_str_eq(u, "https://bkt.s3.us-east-1.amazonaws.com/k");
    free(u);
    store_s3_config_free(&c);

    /* Options struct, overridden by the query; virtual hosting on a custom endpoint. */
    struct store_opts o = {.access_key = "AK", .secret_key = "SK", .endpoint = "https://minio.example:9443/base/",
                           .region = "r1", .force_path_style = 1};
    cr_assert_eq(parse("s3://bkt/p?force-path-style=false&region=r2", &o, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.path_style, 0);
    cr_assert_str_eq(c.region, "r2");
    u = store_s3_object_url(&c, "k", NULL);
    cr_assert_str_eq(u, "https://bkt.minio.example:9443/base/p/k");
    free(u);
    store_s3_config_free(&c);
}

Test(store_url, s3_errors_are_clear)
{
    struct s3_config c;
    char err[512];

    cr_assert_eq(parse("s3://bkt/p?endpoint=http://127.0.0.1:9000&bogus=1", NULL, &c, err, sizeof err), LV_ECONFIG);
    cr_assert(strstr(err, "unknown query parameter \"bogus\"") != NULL, "%s", err);
    cr_assert_eq(parse("s3://bkt/p?force-path-style=maybe", NULL, &c, err, sizeof err), LV_ECONFIG);
    cr_assert(strstr(err, "force-path-style") != NULL, "%s", err);
    cr_assert_eq(parse("s3://bkt/p?region=%zz", NULL, &c, err, sizeof err), LV_EINVAL);
    cr_assert(strstr(err, "region") != NULL, "%s", err);
    cr_assert_eq(parse("s3://b/p", NULL, &c, err, sizeof err), LV_ECONFIG);
    cr_assert(strstr(err, "bucket") != NULL, "%s", err);
    cr_assert_eq(parse("s3://bkt/a/../b", NULL, &c, err, sizeof err), LV_ECONFIG);
    cr_assert_eq(parse("s3://bkt/p?part-size=1M", NULL, &c, err, sizeof err), LV_ECONFIG);
    cr_assert(strstr(err, "5 MiB") != NULL, "%s", err);
    cr_assert_eq(parse("s3://bkt/p?parallel=0", NULL, &c, err, sizeof err), LV_ECONFIG);
    cr_assert_eq(parse("s3://bkt/p?access-key=AKSECRET", NULL, &c, err, sizeof err), LV_ECONFIG);
    cr_assert(strstr(err, "not accepted in the URL") != NULL && strstr(err, "AKSECRET") == NULL, "%s", err);
    cr_assert_eq(parse("s3://bkt/p?endpoint=http://user:pw@127.0.0.1:9", NULL, &c, err, sizeof err), LV_ECONFIG);
    cr_assert(strstr(err, "pw") == NULL, "%s", err);
    cr_assert_eq(parse("s3://bkt/p?endpoint=ftp://127.0.0.1", NULL, &c, err, sizeof err), LV_ECONFIG);
}

Test(store_url, http_only_to_loopback)
{
    struct s3_config c;
    char err[512], url[256];
    const char *ok[] = {"http://127.0.0.1:9000", "http://127.8.9.10", "http://localhost:9000", "http://[::1]:9000",
                        "https://s3.example.com", "https://10.0.0.1:443", "s3.example.com"};
    const char *refused[] = {"http://10.0.0.1:9000", "http://s3.example.com", "http://127.example.com",
                             "http://[::2]:9000", "http://0.0.0.0:9000", "http://128.0.0.1"};

    for (size_t i = 0; i < LV_ARRAY_LEN(ok); i++) {
        snprintf(url, sizeof url, "s3://bkt/p?endpoint=%s", ok[i]);
        cr_assert_eq(parse(url, NULL, &c, err, sizeof err), 0, "%s refused: %s", ok[i], err);
        store_s3_config_free(&c);
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(refused); i++) {
        snprintf(url, sizeof url, "s3://bkt/p?endpoint=%s", refused[i]);
        cr_assert_eq(parse(url, NULL, &c, err, sizeof err), LV_ECONFIG, "%s accepted", refused[i]);
        cr_assert(strstr(err, "plain http") != NULL && strstr(err, "loopback") != NULL, "%s", err);
    }
    /* Through store_open as well. */
    struct store *s = NULL;
    struct store_opts o = {.access_key = "AK", .secret_key = "SK", .endpoint = "http://192.168.1.5:9000"};
    cr_assert_eq(store_open("s3://bkt/p", &o, &s, err, sizeof err), LV_ECONFIG);
    cr_assert_null(s);
    cr_assert(strstr(err, "s3://bkt/p: plain http endpoint http://192.168.1.5:9000 refused") != NULL, "%s", err);
}

Test(store_url, helpers)
{
    uint64_t v;
    char *d;

    cr_assert(store_key_valid("app.db/0001/seg/00000001"));
    cr_assert(store_key_valid("a"));
    cr_assert(store_key_valid("..a/b.."));
    cr_assert_not(store_key_valid("a/../b"));
    cr_assert_not(store_key_valid("a\\b"));
    cr_assert_eq(store_parse_size("16MiB", &v), 0);
    cr_assert_eq(v, 16 * MIB);
    cr_assert_eq(store_parse_size("5k", &v), 0);
    cr_assert_eq(v, 5120);
    cr_assert_eq(store_parse_size("12", &v), 0);
    cr_assert_eq(v, 12);
    cr_assert_eq(store_parse_size("12X", &v), LV_EINVAL);
    cr_assert_eq(store_parse_size("-1", &v), LV_EINVAL);
    d = store_url_decode("a%2Fb+c%3d", 10);
    cr_assert_str_eq(d, "a/b c=");
    free(d);
    cr_assert_null(store_url_decode("a%2", 3));
    cr_assert_null(store_url_decode("a%00", 4));
    cr_assert_eq(store_parse_bool("TRUE"), 1);
    cr_assert_eq(store_parse_bool("0"), 0);
    cr_assert_eq(store_parse_bool("2"), -1);
}
