/*
 * unit_base.c -- the small shared helpers of src/base: atomic publication
 * (publish.c) under injected faults, worker threads (worker.c), hex
 * encoding and the SQLite header fields (dbhdr.h).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/dbhdr.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/publish.h"
#include "base/sys.h"
#include "base/worker.h"

static char bt_dir[64];

static void bt_setup(void)
{
    lvlog_threshold = -1;
    strcpy(bt_dir, "/tmp/lv-base-XXXXXX");
    cr_assert_not_null(mkdtemp(bt_dir));
    sys_fault_clear();
}

static void bt_teardown(void)
{
    char cmd[128];

    sys_fault_clear();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", bt_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", bt_dir);
}

static int bt_entries(void)
{
    DIR *d = opendir(bt_dir);
    struct dirent *e;
    int n = 0;

    cr_assert_not_null(d);
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static char *bt_read(const char *p)
{
    void *data;
    size_t len;

    if (sys_read_file(p, &data, &len) != 0)
        return NULL;
    char *s = realloc(data, len + 1);
    s[len] = '\0';
    return s;
}

TestSuite(base, .init = bt_setup, .fini = bt_teardown);

Test(base, publish_in_pieces)
{
    char path[128];
    struct publish p;

    snprintf(path, sizeof path, "%s/out", bt_dir);
    cr_assert_eq(publish_begin(&p, path, 0600), 0);
    cr_assert_eq(access(path, F_OK), -1, "nothing at the final path before commit");
    cr_assert_eq(publish_write(&p, "hello ", 6), 0);
    cr_assert_eq(publish_write(&p, "world", 5), 0);
    cr_assert_eq(publish_commit(&p), 0);
    publish_abort(&p); /* a DONE handle: no-op */
    char *s = bt_read(path);
    cr_assert_str_eq(s, "hello world");
    free(s);
    cr_assert_eq(bt_entries(), 1, "no temporary file left");
}

Test(base, publish_abort_leaves_old_file)
{
    char path[128];
    struct publish p;

    snprintf(path, sizeof path, "%s/out", bt_dir);
    cr_assert_eq(publish_buf(path, "old", 3), 0);
    cr_assert_eq(publish_begin(&p, path, 0644), 0);
    cr_assert_eq(publish_write(&p, "new", 3), 0);
    publish_abort(&p);
    char *s = bt_read(path);
    cr_assert_str_eq(s, "old");
    free(s);
    cr_assert_eq(bt_entries(), 1);
}

/* Each step of a publication failing with ENOSPC or EIO: an error, the old
 * content intact, and no temporary file. */
Test(base, publish_faults_leave_nothing_partial)
{
    static const struct { enum sys_op op; int err; int want; } cases[] = {
        {SYS_OP_OPEN, ENOSPC, LV_ENOSPC}, {SYS_OP_WRITE, ENOSPC, LV_ENOSPC}, {SYS_OP_WRITE, EIO, LV_EIO},
        {SYS_OP_FSYNC, EIO, LV_EIO},      {SYS_OP_RENAME, EIO, LV_EIO},
    };
    char path[128];

    snprintf(path, sizeof path, "%s/state", bt_dir);
    for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
        cr_assert_eq(publish_buf(path, "old", 3), 0);
        sys_fault_set(cases[i].op, cases[i].err, 0, "/state.tmp");
        int rc = publish_buf(path, "newer content", 13);
        sys_fault_clear();
        cr_assert_eq(rc, cases[i].want, "case %zu: publish returned %d, want %d", i, rc, cases[i].want);
        char *s = bt_read(path);
        cr_assert_str_eq(s, "old", "case %zu: old content intact", i);
        free(s);
        cr_assert_eq(bt_entries(), 1, "case %zu: no temporary file left", i);
    }
}

Test(base, publish_adopt_renames_existing_file)
{
    char tmp[128], path[128];
    FILE *f;

    snprintf(tmp, sizeof tmp, "%s/made-elsewhere", bt_dir);
    snprintf(path, sizeof path, "%s/final", bt_dir);
    f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fputs("abc", f);
    fclose(f);
    struct publish p;
    cr_assert_eq(publish_adopt(&p, tmp, path), 0);
    cr_assert_eq(p.off, 3);
    cr_assert_eq(publish_commit(&p), 0);
    char *s = bt_read(path);
    cr_assert_str_eq(s, "abc");
    free(s);
    cr_assert_eq(access(tmp, F_OK), -1);
}

struct bt_counter {
    int naps;       /* loop iterations (only the worker writes it) */
    int woke;       /* naps ended by worker_wake */
};

static void bt_loop(struct worker *w, void *arg)
{
    struct bt_counter *c = arg;
    int64_t t0 = lv_mono_us();

    while (!worker_nap(w, 60 * 1000000LL)) {
        c->naps++;
        if (lv_mono_us() - t0 < 30 * 1000000LL)
            c->woke++;
        t0 = lv_mono_us();
    }
}

Test(base, worker_wakes_and_stops_promptly)
{
    struct bt_counter c = {0, 0};
    struct worker *w;

    cr_assert_eq(worker_start("bt-loop", bt_loop, &c, &w), 0);
    worker_wake(w);
    for (int i = 0; i < 5000 && __atomic_load_n(&c.naps, __ATOMIC_SEQ_CST) == 0; i++)
        usleep(1000);
    int64_t t0 = lv_mono_us();
    worker_stop(w); /* the worker naps for 60 s: stop must end that nap */
    cr_assert_lt(lv_mono_us() - t0, 10 * 1000000LL, "worker_stop waited out the nap");
    cr_assert_eq(c.naps, 1, "one wake, one iteration");
    cr_assert_eq(c.woke, 1);
}

static void bt_once(struct worker *w, void *arg)
{
    LV_UNUSED(w);
    *(int *)arg = 42;
}

Test(base, worker_one_shot)
{
    int v = 0;
    struct worker *w;

    cr_assert_eq(worker_start("bt-once", bt_once, &v, &w), 0);
    worker_stop(w);
    cr_assert_eq(v, 42);
    worker_stop(NULL);
}

Test(base, cond_wait_us_times_out)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;

    cr_assert_eq(lv_cond_init(&cv), 0);
    pthread_mutex_lock(&mu);
    int64_t t0 = lv_mono_us();
    int rc = lv_cond_wait_us(&cv, &mu, 20000);
    int64_t dt = lv_mono_us() - t0;
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
    cr_assert_eq(rc, ETIMEDOUT);
    cr_assert_geq(dt, 19000, "woke after %lld us, before the deadline", (long long)dt);
}

Test(base, hex_round_trip)
{
    uint8_t in[16], back[16];
    char hex[33];

    for (int i = 0; i < 16; i++)
        in[i] = (uint8_t)(i * 17 + 3);
    cr_assert_eq(lv_hex(in, 16, hex), hex);
    cr_assert_str_eq(hex, "031425364758697a8b9cadbecfe0f102");
    cr_assert_eq(lv_unhex(hex, back, 16), 0);
    cr_assert_arr_eq(back, in, 16);
    cr_assert_eq(lv_unhex("031425364758697A8B9CADBECFE0F102", back, 16), 0, "upper case accepted");
    cr_assert_eq(lv_unhex("0314253647586", back, 7), LV_EINVAL, "too short");
    cr_assert_eq(lv_unhex("031425364758690", back, 7), LV_EINVAL, "too long");
    cr_assert_eq(lv_unhex("03142536475g69", back, 7), LV_EINVAL, "not hex");
}

Test(base, dbhdr_fields)
{
    uint8_t h[DBHDR_SIZE] = {0};

    memcpy(h, DBHDR_MAGIC, 16);
    h[21] = 64, h[22] = 32, h[23] = 32;
    lv_put16(h + 16, 4096);
    cr_assert(dbhdr_valid(h));
    cr_assert_eq(dbhdr_page_size(h), 4096);
    lv_put16(h + 16, 1);
    cr_assert_eq(dbhdr_page_size(h), 65536, "1 means 65536");
    lv_put16(h + 16, 3000);
    cr_assert_eq(dbhdr_page_size(h), 0);
    cr_assert(!dbhdr_valid(h));
    lv_put16(h + 16, 256);
    cr_assert_eq(dbhdr_page_size(h), 0, "below 512");
    lv_put16(h + 16, 1024);
    h[22] = 33;
    cr_assert(!dbhdr_valid(h), "payload fraction");
    /* in-header size only when version-valid-for equals the change counter */
    lv_put32(h + 28, 7);
    lv_put32(h + 24, 5);
    lv_put32(h + 92, 5);
    cr_assert_eq(dbhdr_pages(h, 1024 * 3, 1024), 7);
    lv_put32(h + 92, 4);
    cr_assert_eq(dbhdr_pages(h, 1024 * 3 + 1, 1024), 4, "file size rounded up");
    h[0] = 'X';
    cr_assert(!dbhdr_magic_ok(h));
}
