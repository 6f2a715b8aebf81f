/*
 * unit_metrics.c -- tests of src/metrics.c: histogram bucketing, the
 * consistency of rendered counters under concurrent updates, the
 * Prometheus text format, metrics_appendf growth and the RSS gauge.
 *
 * Counters are process-wide; every test compares renders taken before and
 * after its own updates, so it does not depend on running in a fresh process.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <regex.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/lv.h"
#include "base/metrics.h"

static const char *const tm_le[] = { "1e-05", "5e-05", "0.0001", "0.0005", "0.001",
                                     "0.005", "0.01",  "0.05",   "0.1",    "+Inf" };

static char *tm_render(void)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;

    cr_assert_eq(metrics_render_process(&buf, &len, &cap), 0);
    cr_assert(buf != NULL);
    cr_assert_eq(strlen(buf), len, "len does not match the text");
    cr_assert(len < cap);
    return buf;
}

/* Value of the sample whose "name{labels}" part equals key exactly; fails the test if absent. */
static double tm_value(const char *text, const char *key)
{
    size_t kl = strlen(key);
    const char *p = text;

    while (p && *p) {
        if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
            return strtod(p + kl + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    cr_assert_fail("sample %s not found", key);
    return -1;
}

static double tm_bucket(const char *text, const char *op, const char *le)
{
    char key[160];
    snprintf(key, sizeof(key), "litevault_fuse_op_duration_seconds_bucket{op=\"%s\",le=\"%s\"}", op, le);
    return tm_value(text, key);
}

static double tm_opval(const char *text, const char *metric, const char *op)
{
    char key[160];
    snprintf(key, sizeof(key), "%s{op=\"%s\"}", metric, op);
    return tm_value(text, key);
}

Test(metrics, op_names)
{
    for (int i = 0; i < MFOP_COUNT; i++) {
        const char *n = metrics_fuse_name((enum metrics_fuse_op)i);
        cr_assert(n != NULL && n[0] != '\0');
        for (const char *c = n; *c; c++)
            cr_assert((*c >= 'a' && *c <= 'z'), "name %s not a plain label value", n);
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(n, metrics_fuse_name((enum metrics_fuse_op)j));
    }
    cr_assert_str_eq(metrics_fuse_name(MFOP_READ), "read");
    cr_assert_str_eq(metrics_fuse_name(MFOP_LOOKUP), "lookup");
    cr_assert_str_eq(metrics_fuse_name(MFOP_COUNT), "other");
    cr_assert_str_eq(metrics_fuse_name((enum metrics_fuse_op)-1), "other");
}

Test(metrics, buckets_and_sum)
{
    /* Durations and the index of the first bucket (le) each falls in. */
    static const struct { int64_t us; int bucket; } obs[] = {
        { 0, 0 }, { 5, 0 }, { 10, 0 },          /* bounds are inclusive */
        { 11, 1 }, { 50, 1 }, { 51, 2 }, { 100, 2 }, { 499, 3 }, { 1000, 4 }, { 1001, 5 },
        { 5000, 5 }, { 9999, 6 }, { 50000, 7 }, { 100000, 8 }, { 100001, 9 }, { 7000000, 9 },
        { -3, 0 },                               /* negative clamps to zero */
    };
    double before[10], after[10];
    int64_t sum_us = 0;
    char *t0 = tm_render(), *t1;

    for (int b = 0; b < 10; b++)
        before[b] = tm_bucket(t0, "write", tm_le[b]);
    double count0 = tm_opval(t0, "litevault_fuse_op_duration_seconds_count", "write");
    double sum0 = tm_opval(t0, "litevault_fuse_op_duration_seconds_sum", "write");
    double total0 = tm_opval(t0, "litevault_fuse_ops_total", "write");
    double read0 = tm_opval(t0, "litevault_fuse_ops_total", "read");

    for (size_t i = 0; i < LV_ARRAY_LEN(obs); i++) {
        metrics_fuse(MFOP_WRITE, obs[i].us);
        sum_us += obs[i].us > 0 ? obs[i].us : 0;
    }
    t1 = tm_render();
    for (int b = 0; b < 10; b++) {
        int expect = 0;
        for (size_t i = 0; i < LV_ARRAY_LEN(obs); i++)
            expect += obs[i].bucket <= b;  /* cumulative */
        after[b] = tm_bucket(t1, "write", tm_le[b]);
        cr_assert_eq((long)(after[b] - before[b]), expect, "le=%s: got %g want %d", tm_le[b],
                     after[b] - before[b], expect);
    }
    double n = (double)LV_ARRAY_LEN(obs);
    cr_assert_eq(tm_opval(t1, "litevault_fuse_op_duration_seconds_count", "write") - count0, n);
    cr_assert_eq(tm_opval(t1, "litevault_fuse_ops_total", "write") - total0, n);
    double dsum = tm_opval(t1, "litevault_fuse_op_duration_seconds_sum", "write") - sum0;
    cr_assert(dsum > sum_us / 1e6 - 1e-6 && dsum < sum_us / 1e6 + 1e-6, "sum %g want %g", dsum,
              sum_us / 1e6);
    /* Other ops are untouched. */
    cr_assert_eq(tm_opval(t1, "litevault_fuse_ops_total", "read"), read0);
    free(t0);
    free(t1);
}

Test(metrics, out_of_range_op_counts_as_other)
{
    char *t0 = tm_render(), *t1;
    double o0 = tm_opval(t0, "litevault_fuse_ops_total", "other");

    metrics_fuse(MFOP_COUNT, 1);
    metrics_fuse((enum metrics_fuse_op)1000, 1);
    t1 = tm_render();
    cr_assert_eq(tm_opval(t1, "litevault_fuse_ops_total", "other") - o0, 2);
    free(t0);
    free(t1);
}

/* Every op: buckets non-decreasing, +Inf == _count == ops_total. */
static void tm_assert_consistent(const char *text)
{
    for (int op = 0; op < MFOP_COUNT; op++) {
        const char *name = metrics_fuse_name((enum metrics_fuse_op)op);
        double prev = 0;
        for (int b = 0; b < 10; b++) {
            double v = tm_bucket(text, name, tm_le[b]);
            cr_assert(v >= prev, "%s: bucket le=%s (%g) below previous (%g)", name, tm_le[b], v, prev);
            prev = v;
        }
        double count = tm_opval(text, "litevault_fuse_op_duration_seconds_count", name);
        cr_assert_eq(prev, count, "%s: +Inf %g != count %g", name, prev, count);
        cr_assert_eq(tm_opval(text, "litevault_fuse_ops_total", name), count);
    }
}

static atomic_int tm_stop;

static void *tm_updater(void *arg)
{
    enum metrics_fuse_op op = (enum metrics_fuse_op)(intptr_t)arg;
    for (int i = 0; i < 100000; i++)
        metrics_fuse(op, i % 200000);
    return NULL;
}

static void *tm_renderer(void *arg)
{
    atomic_int *renders = arg;
    while (!atomic_load(&tm_stop)) {
        char *t = tm_render();
        tm_assert_consistent(t);
        free(t);
        atomic_fetch_add(renders, 1);
    }
    return NULL;
}

Test(metrics, concurrent_updates_consistent, .timeout = 60)
{
    pthread_t up[4], rd;
    atomic_int renders = 0;
    int before;
    char *t0 = tm_render(), *t1;
    double r0 = tm_opval(t0, "litevault_fuse_ops_total", "read");
    double w0 = tm_opval(t0, "litevault_fuse_ops_total", "write");

    tm_assert_consistent(t0);
    atomic_store(&tm_stop, 0);
    cr_assert_eq(pthread_create(&rd, NULL, tm_renderer, &renders), 0);
    /* The renderer is running before the updaters start, and renders at
     * least once more after they started, however the threads are scheduled. */
    while (atomic_load(&renders) == 0)
        sched_yield();
    before = atomic_load(&renders);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&up[i], NULL, tm_updater,
                                    (void *)(intptr_t)(i % 2 ? MFOP_READ : MFOP_WRITE)), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(up[i], NULL);
    while (atomic_load(&renders) < before + 2)
        sched_yield();
    atomic_store(&tm_stop, 1);
    pthread_join(rd, NULL);
    t1 = tm_render();
    tm_assert_consistent(t1);
    cr_assert_eq(tm_opval(t1, "litevault_fuse_ops_total", "read") - r0, 200000);
    cr_assert_eq(tm_opval(t1, "litevault_fuse_ops_total", "write") - w0, 200000);
    free(t0);
    free(t1);
}

Test(metrics, prometheus_text_format)
{
    regex_t sample, help, type;
    char *text, *line, *save = NULL;
    char families[64][80];
    int nfam = 0, nsamples = 0;

    metrics_fuse(MFOP_READ, 42);
    metrics_fuse_request(16);   /* FUSE_WRITE */
    metrics_fuse_request(16);
    metrics_fuse_request(9999); /* unknown: "other" */
    text = tm_render();
    cr_assert(text[strlen(text) - 1] == '\n', "output must end with a newline");
    cr_assert(strstr(text, "\nlitevault_fuse_requests_total{op=\"write\"} 2\n"), "%s", text);
    cr_assert(strstr(text, "\nlitevault_fuse_requests_total{op=\"other\"} 1\n"), "%s", text);
    cr_assert_null(strstr(text, "litevault_fuse_requests_total{op=\"read\"}"), "unseen opcodes are not listed");
    cr_assert_eq(regcomp(&sample,
                         "^([a-zA-Z_:][a-zA-Z0-9_:]*)"
                         "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"\\\\]*\"(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"\\\\]*\")*\\})?"
                         " (-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|\\+Inf|-Inf|NaN)$",
                         REG_EXTENDED), 0);
    cr_assert_eq(regcomp(&help, "^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$", REG_EXTENDED), 0);
    cr_assert_eq(regcomp(&type, "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$",
                         REG_EXTENDED), 0);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        regmatch_t m[2];
        if (line[0] == '#') {
            int is_type = regexec(&type, line, 2, m, 0) == 0;
            cr_assert(is_type || regexec(&help, line, 2, m, 0) == 0, "bad comment line: '%s'", line);
            if (is_type) {
                cr_assert(nfam < 64);
                int n = (int)(m[1].rm_eo - m[1].rm_so);
                snprintf(families[nfam++], sizeof(families[0]), "%.*s", n, line + m[1].rm_so);
            }
            continue;
        }
        cr_assert(regexec(&sample, line, 2, m, 0) == 0, "bad sample line: '%s'", line);
        nsamples++;
        /* The sample belongs to the most recent # TYPE family (histograms
         * add _bucket/_sum/_count suffixes). */
        cr_assert(nfam > 0, "sample before any # TYPE: '%s'", line);
        const char *fam = families[nfam - 1];
        cr_assert(strncmp(line, fam, strlen(fam)) == 0, "sample '%s' outside family %s", line, fam);
    }
    /* 16 ops x (10 buckets + sum + count) + 16 totals + 2 request opcodes + rss. */
    cr_assert_eq(nsamples, MFOP_COUNT * 12 + MFOP_COUNT + 2 + 1);
    cr_assert_eq(nfam, 4);
    cr_assert_str_eq(families[0], "litevault_fuse_op_duration_seconds");
    cr_assert_str_eq(families[1], "litevault_fuse_ops_total");
    cr_assert_str_eq(families[2], "litevault_fuse_requests_total");
    cr_assert_str_eq(families[3], "litevault_process_rss_bytes");
    regfree(&sample);
    regfree(&help);
    regfree(&type);
    free(text);
}

Test(metrics, render_appends_to_existing_buffer)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;

    cr_assert_eq(metrics_appendf(&buf, &len, &cap, "# prefix %d\n", 7), 0);
    cr_assert_eq(metrics_render_process(&buf, &len, &cap), 0);
    cr_assert(strncmp(buf, "# prefix 7\n# HELP ", 18) == 0);
    cr_assert_eq(strlen(buf), len);
    free(buf);
}

Test(metrics, appendf_grows)
{
    char *buf = NULL, *expect;
    size_t len = 0, cap = 0, elen = 0;

    expect = malloc(200000);
    cr_assert(expect != NULL);
    for (int i = 0; i < 5000; i++) {
        cr_assert_eq(metrics_appendf(&buf, &len, &cap, "line %d %s\n", i, i % 2 ? "odd" : "even"), 0);
        elen += (size_t)sprintf(expect + elen, "line %d %s\n", i, i % 2 ? "odd" : "even");
        cr_assert_eq(len, elen);
        cr_assert(cap > len);
    }
    cr_assert_str_eq(buf, expect);
    /* One piece larger than the whole buffer so far. */
    size_t cap_before = cap, blen = cap + 1000;
    char *big = malloc(blen + 1);
    cr_assert(big != NULL);
    memset(big, 'q', blen);
    big[blen] = '\0';
    cr_assert_eq(metrics_appendf(&buf, &len, &cap, "%s", big), 0);
    cr_assert_eq(len, elen + blen);
    cr_assert(cap > cap_before && cap > len);
    cr_assert_eq(buf[len], '\0');
    cr_assert(buf[elen] == 'q' && buf[len - 1] == 'q' && strlen(buf) == len);
    cr_assert(memcmp(buf, expect, elen) == 0, "earlier content damaged by growth");
    free(big);
    free(buf);
    free(expect);
}

Test(metrics, appendf_exact_fit_boundaries)
{
    /* Start from a caller-provided buffer whose free space is exactly the
     * text (no room for the NUL) and one byte more. */
    for (size_t extra = 0; extra <= 1; extra++) {
        size_t cap = 4 + 5 + extra, len = 4;
        char *buf = malloc(cap);
        cr_assert(buf != NULL);
        memcpy(buf, "abcd", 5);
        cr_assert_eq(metrics_appendf(&buf, &len, &cap, "%s", "12345"), 0);
        cr_assert_eq(len, 9);
        cr_assert_str_eq(buf, "abcd12345");
        cr_assert(cap > len);
        free(buf);
    }
}

Test(metrics, rss_tracks_memory)
{
    size_t sz = 64u << 20;
    uint64_t r0 = metrics_rss_bytes(), r1;
    char *p;

    cr_assert(r0 > 0);
    p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(p != MAP_FAILED);
    memset(p, 1, sz);  /* touch every page */
    r1 = metrics_rss_bytes();
    cr_assert(r1 >= r0 + sz / 2, "rss %llu -> %llu after touching 64 MiB", (unsigned long long)r0,
              (unsigned long long)r1);
    char *t = tm_render();
    double g = tm_value(t, "litevault_process_rss_bytes");
    cr_assert(g >= (double)(r0 + sz / 2), "rendered rss %g", g);
    free(t);
    munmap(p, sz);
}
