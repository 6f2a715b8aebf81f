/*
 * unit_exports.c -- the export scheduler (src/exports.c) driven by a fake
 * clock through exports_run_due: a job runs only when due, a failing
 * destination is retried after 1 s, 2 s, 4 s ... capped at 5 min, failures
 * show in the status JSON and the metrics, and once the destination is
 * fixed the next run succeeds and the schedule resumes.  The registry is a
 * real (empty) one on a temporary data.dir; no daemon, no FUSE.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "daemon/config.h"
#include "capture/db.h"
#include "export/exports.h"
#include "base/lv.h"
#include "base/lvlog.h"

static char ex_dir[64];
static int64_t fake_now;

static int64_t fake_clock(void *arg)
{
    (void)arg;
    return fake_now;
}

static void ex_setup(void)
{
    lvlog_threshold = -1;
    strcpy(ex_dir, "/tmp/h-sched-ux-XXXXXX");
    cr_assert_not_null(mkdtemp(ex_dir));
}

static void ex_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ex_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", ex_dir);
}

TestSuite(exports, .init = ex_setup, .fini = ex_teardown, .timeout = 30);

static int64_t T(const char *s)
{
    int64_t t;
    cr_assert_eq(lv_parse_time(s, &t), 0, "%s", s);
    return t;
}

/* Status of the only job (new reference). */
static json_t *st1(struct exports *x)
{
    json_t *a = exports_status_json(x), *o;
    cr_assert_eq(json_array_size(a), 1);
    o = json_incref(json_array_get(a, 0));
    json_decref(a);
    return o;
}

static int64_t next_run(struct exports *x)
{
    json_t *o = st1(x);
    int64_t t = T(json_string_value(json_object_get(o, "next_run")));
    json_decref(o);
    return t;
}

Test(exports, fake_clock_schedule_backoff_and_recovery)
{
    char path[256], blocker[256], err[512] = "", yml[1024];
    struct config cfg;
    struct dbreg *reg = NULL;
    struct exports *x = NULL;

    snprintf(blocker, sizeof blocker, "%s/blocker", ex_dir);
    FILE *f = fopen(blocker, "w");
    cr_assert_not_null(f);
    fputs("not a directory\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/litevault.yml", ex_dir);
    snprintf(yml, sizeof yml,
             "data:\n  dir: ./data\nexports:\n  - schedule: '*/5 * * * *'\n    url: ./blocker/exp\n    keep: 2\n");
    f = fopen(path, "w");
    fputs(yml, f);
    fclose(f);
    cr_assert_eq(config_load(path, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(dbreg_open(&(struct dbreg_opts){cfg.data_dir, cfg.segment_size, 0, 0}, &reg, err, sizeof err), 0, "%s", err);

    fake_now = T("2026-03-01T10:02:30Z");
    cr_assert_eq(exports_new(cfg.exports, cfg.nexports, cfg.data_dir, reg, fake_clock, NULL, &x, err, sizeof err), 0, "%s", err);
    cr_assert_not_null(x);
    cr_assert_eq(next_run(x), T("2026-03-01T10:05:00Z"));

    /* Not due yet: nothing runs. */
    fake_now = T("2026-03-01T10:04:59Z");
    cr_assert_eq(exports_run_due(x), T("2026-03-01T10:05:00Z"));
    json_t *o = st1(x);
    cr_assert_eq(json_integer_value(json_object_get(o, "runs")), 0);
    json_decref(o);

    /* Due: the destination cannot be created (its parent is a file): retries at 1, 2, 4 ... s. */
    fake_now = T("2026-03-01T10:05:00Z");
    int64_t want_delay = 1000000;
    for (int k = 1; k <= 12; k++) {
        int64_t next = exports_run_due(x);
        int64_t d = want_delay < 300000000 ? want_delay : 300000000;
        cr_assert_eq(next, fake_now + d, "failure %d: retry after %lld us, want %lld", k, (long long)(next - fake_now),
                     (long long)d);
        o = st1(x);
        cr_assert_eq(json_integer_value(json_object_get(o, "runs")), k);
        cr_assert_eq(json_integer_value(json_object_get(o, "failures")), k);
        cr_assert_eq(json_integer_value(json_object_get(o, "consecutive_failures")), k);
        const char *le = json_string_value(json_object_get(o, "last_error"));
        cr_assert(le && strstr(le, "cannot open the destination") && strstr(le, "blocker"), "%s", le ? le : "null");
        cr_assert(json_is_null(json_object_get(o, "last_success")));
        json_decref(o);
        /* Half-way to the retry nothing runs. */
        fake_now += d / 2;
        cr_assert_eq(exports_run_due(x), next);
        fake_now = next;
        want_delay *= 2;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    cr_assert_eq(exports_metrics(x, &buf, &len, &cap), 0);
    cr_assert_not_null(strstr(buf, "litevault_export_failures_total{job=\"job1\"} 12\n"), "%s", buf);
    cr_assert_not_null(strstr(buf, "litevault_export_consecutive_failures{job=\"job1\"} 12\n"), "%s", buf);
    cr_assert_not_null(strstr(buf, "litevault_export_last_success_timestamp_seconds{job=\"job1\"} 0.000\n"), "%s", buf);
    free(buf);

    /* Fixed: the retry succeeds (no databases: nothing to upload) and the schedule resumes. */
    cr_assert_eq(unlink(blocker), 0);
    fake_now = T("2026-03-01T11:23:45Z");
    cr_assert_eq(exports_run_due(x), T("2026-03-01T11:25:00Z"));
    o = st1(x);
    cr_assert_eq(json_integer_value(json_object_get(o, "consecutive_failures")), 0);
    cr_assert_eq(json_integer_value(json_object_get(o, "failures")), 12);
    cr_assert_str_eq(json_string_value(json_object_get(o, "last_success")), "2026-03-01T11:23:45.000000Z");
    cr_assert_str_eq(json_string_value(json_object_get(o, "next_run")), "2026-03-01T11:25:00.000000Z");
    json_decref(o);
    buf = NULL;
    len = cap = 0;
    cr_assert_eq(exports_metrics(x, &buf, &len, &cap), 0);
    cr_assert_not_null(strstr(buf, "litevault_export_last_success_timestamp_seconds{job=\"job1\"} 1772364225.000\n"),
                       "%s", buf);
    cr_assert_not_null(strstr(buf, "litevault_export_next_run_timestamp_seconds{job=\"job1\"} 1772364300.000\n"), "%s",
                       buf);
    free(buf);
    snprintf(path, sizeof path, "%s/data/exports/job1.json", ex_dir);
    cr_assert_neq(access(path, F_OK), 0, "a run that uploaded nothing does not write the state file %s", path);
    snprintf(path, sizeof path, "%s/blocker/exp", ex_dir);
    cr_assert_eq(access(path, F_OK), 0, "destination directory created");

    exports_stop(x);
    /* A saved state is read back by a new scheduler (last_success of the last run that uploaded). */
    snprintf(path, sizeof path, "%s/data/exports/job1.json", ex_dir);
    snprintf(yml, sizeof yml, "{\"version\":1,\"job\":\"job1\",\"url\":\"%s/blocker/exp\",\"format\":\"db\","
             "\"last_success_us\":1772364225000000,\"databases\":{}}", ex_dir);
    char mk[300];
    snprintf(mk, sizeof mk, "mkdir -p '%s/data/exports'", ex_dir);
    cr_assert_eq(system(mk), 0);
    f = fopen(path, "w");
    fputs(yml, f);
    fclose(f);
    cr_assert_eq(exports_new(cfg.exports, cfg.nexports, cfg.data_dir, reg, fake_clock, NULL, &x, err, sizeof err), 0, "%s", err);
    o = st1(x);
    cr_assert_str_eq(json_string_value(json_object_get(o, "last_success")), "2026-03-01T11:23:45.000000Z");
    json_decref(o);
    exports_stop(x);
    dbreg_close(reg);
    config_free(&cfg);
}

Test(exports, no_jobs_means_no_scheduler)
{
    struct config cfg;
    struct exports *x = (struct exports *)1;
    char err[128];
    json_t *a;
    cr_assert_eq(config_defaults(&cfg), 0);
    cr_assert_eq(exports_new(cfg.exports, cfg.nexports, cfg.data_dir, NULL, NULL, NULL, &x, err, sizeof err), 0);
    cr_assert_null(x);
    cr_assert_eq(exports_start(NULL), 0);
    a = exports_status_json(NULL);
    cr_assert(json_is_array(a) && json_array_size(a) == 0);
    json_decref(a);
    cr_assert_eq(exports_run_due(NULL), INT64_MAX);
    exports_stop(NULL);
    config_free(&cfg);
}
