/*
 * unit_lv.c -- error names and errno mapping, clocks, RFC 3339 time
 * formatting and parsing (src/lv.c), and the log line formats (src/lvlog.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"

static void lvt_quiet(void)
{
    lvlog_threshold = -1;
}

TestSuite(lv, .init = lvt_quiet);

/* ---- error codes ---- */

Test(lv, strerror_names_every_code_distinctly)
{
    const char *names[64];
    int n = 0;

    /* The codes are contiguous from LV_OK down to the last one, LV_EUSAGE. */
    for (int code = LV_OK; code >= LV_EUSAGE; code--) {
        const char *s = lv_strerror(code);
        cr_assert_not_null(s, "code %d", code);
        cr_assert_str_neq(s, "unknown error", "code %d has no name", code);
        cr_assert_gt(strlen(s), 3, "code %d", code);
        for (int j = 0; j < n; j++)
            cr_assert_str_neq(s, names[j], "codes %d and %d share the name \"%s\"", code, -j, s);
        names[n++] = s;
    }
    cr_assert_eq(n, 20);
}

Test(lv, strerror_unknown_code)
{
    cr_assert_str_eq(lv_strerror(LV_EUSAGE - 1), "unknown error");
    cr_assert_str_eq(lv_strerror(12345), "unknown error");
    cr_assert_str_eq(lv_strerror(-1000), "unknown error");
}

Test(lv, errno_mapping)
{
    cr_assert_eq(lv_from_errno(ENOSPC), LV_ENOSPC);
    cr_assert_eq(lv_from_errno(EDQUOT), LV_ENOSPC);
    cr_assert_eq(lv_from_errno(ENOENT), LV_ENOENT);
    cr_assert_eq(lv_from_errno(EEXIST), LV_EEXIST);
    cr_assert_eq(lv_from_errno(ENOMEM), LV_ENOMEM);
    cr_assert_eq(lv_from_errno(EACCES), LV_EPERM);
    cr_assert_eq(lv_from_errno(EBUSY), LV_EBUSY);
    cr_assert_eq(lv_from_errno(EIO), LV_EIO);
    cr_assert_eq(lv_from_errno(EBADF), LV_EIO, "unlisted errno values are I/O errors");
    cr_assert_eq(lv_from_errno(0), LV_OK);

    /* Every code maps to a positive errno for FUSE; the common ones round-trip. */
    for (int code = LV_EIO; code >= LV_EUSAGE; code--)
        cr_assert_gt(lv_to_errno(code), 0, "code %d", code);
    cr_assert_eq(lv_to_errno(LV_OK), 0);
    cr_assert_eq(lv_to_errno(LV_ECORRUPT), EIO);
    cr_assert_eq(lv_to_errno(LV_EPERM), EPERM);
    int rt[] = {ENOSPC, ENOENT, EEXIST, ENOMEM, EINVAL, EBUSY, EIO};
    for (size_t i = 0; i < LV_ARRAY_LEN(rt); i++)
        cr_assert_eq(lv_to_errno(lv_from_errno(rt[i])), rt[i], "errno %d", rt[i]);
}

/* ---- clocks ---- */

Test(lv, clocks)
{
    int64_t a = lv_now_us(), m1 = lv_mono_us(), m2;
    time_t t = time(NULL);

    cr_assert_lt(llabs(a / 1000000 - (int64_t)t), 2);
    usleep(2000);
    m2 = lv_mono_us();
    cr_assert_geq(m2 - m1, 2000);
    cr_assert_lt(m2 - m1, 2000000);
}

/* ---- formatting ---- */

Test(lv, fmt_time_known_values)
{
    char buf[40];

    cr_assert_str_eq(lv_fmt_time(0, buf, sizeof buf), "1970-01-01T00:00:00.000000Z");
    cr_assert_str_eq(lv_fmt_time(1795514400123456LL, buf, sizeof buf), "2026-11-24T10:00:00.123456Z");
    cr_assert_str_eq(lv_fmt_time(951868799LL * 1000000 + 1, buf, sizeof buf), "2000-02-29T23:59:59.000001Z");
    cr_assert_str_eq(lv_fmt_time(-1, buf, sizeof buf), "1969-12-31T23:59:59.999999Z");
    cr_assert_str_eq(lv_fmt_time(-62135596800LL * 1000000, buf, sizeof buf), "0001-01-01T00:00:00.000000Z");
    cr_assert_str_eq(lv_fmt_time(253402300799LL * 1000000 + 999999, buf, sizeof buf), "9999-12-31T23:59:59.999999Z");
    cr_assert_eq(strlen(buf), 27);
}

static uint64_t lvt_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

Test(lv, fmt_time_matches_gmtime_and_round_trips)
{
    uint64_t seed = 0x1234567;
    const int64_t lo = -62135596800LL * 1000000, hi = 253402300799LL * 1000000;

    for (int i = 0; i < 20000; i++) {
        int64_t t = lo + (int64_t)(lvt_rand(&seed) % (uint64_t)(hi - lo));
        char buf[40], ref[40], frac[16];
        time_t secs = (time_t)(t >= 0 ? t / 1000000 : (t - 999999) / 1000000);
        struct tm tm;
        int64_t back;

        lv_fmt_time(t, buf, sizeof buf);
        /* Independent oracle: libc gmtime_r for the seconds. */
        gmtime_r(&secs, &tm);
        strftime(ref, sizeof ref, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(frac, sizeof frac, ".%06lldZ", (long long)(t - (int64_t)secs * 1000000));
        strcat(ref, frac);
        if (tm.tm_year + 1900 >= 1000) /* strftime %Y does not zero-pad small years */
            cr_assert_str_eq(buf, ref, "t=%lld", (long long)t);
        cr_assert_eq(lv_parse_time(buf, &back), 0, "%s", buf);
        cr_assert_eq(back, t, "%s parsed as %lld, want %lld", buf, (long long)back, (long long)t);
    }
}

/* ---- parsing ---- */

Test(lv, parse_time_fractions_and_offsets)
{
    const int64_t base = 1795514400LL * 1000000; /* 2026-11-24T10:00:00Z */
    struct {
        const char *s;
        int64_t want;
    } cases[] = {
        {"2026-11-24T10:00:00Z", base},
        {"2026-11-24t10:00:00z", base},
        {"2026-11-24T10:00:00.5Z", base + 500000},
        {"2026-11-24T10:00:00.000001Z", base + 1},
        {"2026-11-24T10:00:00.123456Z", base + 123456},
        {"2026-11-24T10:00:00.1234567Z", base + 123456},     /* truncated, not rounded */
        {"2026-11-24T10:00:00.123456999Z", base + 123456},
        {"2026-11-24T12:00:00+02:00", base},
        {"2026-11-24T04:30:00-05:30", base},
        {"2026-11-25T09:59:00+23:59", base},
        {"2026-11-24T10:00:00.25+00:00", base + 250000},
        {"2026-11-24T10:00:00-00:00", base},
        {"2026-11-24T00:30:00-09:30", base},
        {"2024-02-29T00:00:00Z", 1709164800LL * 1000000},
        {"2000-02-29T00:00:00Z", 951782400LL * 1000000},
        {"1969-12-31T23:59:59.5Z", -500000},
        {"1970-01-01T00:00:00Z", 0},
    };

    for (size_t i = 0; i < LV_ARRAY_LEN(cases); i++) {
        int64_t t = -42;
        cr_assert_eq(lv_parse_time(cases[i].s, &t), 0, "%s", cases[i].s);
        cr_assert_eq(t, cases[i].want, "%s: got %lld want %lld", cases[i].s, (long long)t, (long long)cases[i].want);
    }
}

Test(lv, parse_time_rejects_garbage)
{
    const char *bad[] = {
        "",
        "now",
        "2026-11-24",
        "2026-11-24T10:00:00",            /* no zone */
        "2026-11-24 10:00:00Z",           /* space separator */
        "2026-11-24T10:00Z",              /* no seconds */
        "2026-1-24T10:00:00Z",
        "2026-11-24T10:00:00.Z",          /* empty fraction */
        "2026-11-24T10:00:00.1234567890Z",/* 10 fraction digits */
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-11-00T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2026-02-29T00:00:00Z",           /* not a leap year */
        "1900-02-29T00:00:00Z",           /* not a leap year either */
        "2026-11-24T24:00:00Z",
        "2026-11-24T10:60:00Z",
        "2026-11-24T10:00:60Z",           /* leap seconds are refused */
        "2026-11-24T10:00:00+24:00",
        "2026-11-24T10:00:00+02:60",
        "2026-11-24T10:00:00+0200",
        "2026-11-24T10:00:00+02",
        "2026-11-24T10:00:00Zjunk",
        "2026-11-24T10:00:00Z ",
        " 2026-11-24T10:00:00Z",
        "+2026-11-24T10:00:00Z",
        "2026-11-24T10:00:00.12a4Z",
        "２026-11-24T10:00:00Z",
    };

    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        int64_t t = 777;
        cr_assert_eq(lv_parse_time(bad[i], &t), LV_EINVAL, "accepted \"%s\"", bad[i]);
        cr_assert_eq(t, 777, "\"%s\" modified the output", bad[i]);
    }
    cr_assert_eq(lv_parse_time(NULL, NULL), LV_EINVAL);
}

/* ---- log lines ---- */

/* Run fn with stderr redirected to a temp file; returns the captured text (malloc'ed). */
static char *lvt_capture(void (*fn)(void))
{
    char path[] = "/tmp/h1-lvlog-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    char *buf;
    off_t n;

    cr_assert_geq(fd, 0);
    unlink(path);
    fflush(stderr);
    dup2(fd, 2);
    fn();
    dup2(saved, 2);
    close(saved);
    n = lseek(fd, 0, SEEK_END);
    buf = calloc(1, (size_t)n + 1);
    cr_assert_eq(pread(fd, buf, (size_t)n, 0), n);
    close(fd);
    return buf;
}

static void lvt_emit_info_text(void)
{
    lvlog_setup(LVLOG_INFO, 0);
    LV_INFO("hello %d", 42);
    LV_DEBUG("not shown");
    LV_ERROR("bad %s", "thing");
}

Test(lv, log_text_format_and_threshold)
{
    char *out = lvt_capture(lvt_emit_info_text), *second;
    int64_t t;
    char ts[28];

    /* 2026-11-24T10:00:00.123456Z INFO hello 42\n<time> ERROR bad thing\n */
    cr_assert_eq(strlen(out) > 28, 1, "%s", out);
    memcpy(ts, out, 27);
    ts[27] = '\0';
    cr_assert_eq(lv_parse_time(ts, &t), 0, "time stamp \"%s\"", ts);
    cr_assert_lt(llabs(t - lv_now_us()), 10000000);
    cr_assert_eq(strncmp(out + 27, " INFO hello 42\n", 15), 0, "%s", out);
    second = out + 27 + 15;
    cr_assert_eq(strncmp(second + 27, " ERROR bad thing\n", 17), 0, "%s", out);
    cr_assert_eq(second[27 + 17], '\0', "exactly two lines expected: %s", out);
    cr_assert_null(strstr(out, "not shown"));
    free(out);
}

static void lvt_emit_debug_text(void)
{
    lvlog_setup(LVLOG_DEBUG, 0);
    LV_DEBUG("detail");
}

Test(lv, log_text_debug_has_source_location)
{
    char *out = lvt_capture(lvt_emit_debug_text);

    cr_assert_eq(strncmp(out + 27, " DEBUG tests/unit_lv.c:", 23), 0, "%s", out);
    cr_assert_not_null(strstr(out, " detail\n"), "%s", out);
    free(out);
}

static void lvt_emit_json(void)
{
    lvlog_setup(LVLOG_WARN, 1);
    LV_WARN("quote \" backslash \\ newline \n tab \t bad utf8 \xff\xfe end");
    LV_INFO("dropped");
}

Test(lv, log_json_is_one_valid_object_per_line)
{
    char *out = lvt_capture(lvt_emit_json), *nl;
    json_error_t jerr;
    json_t *obj;
    int64_t t;

    nl = strchr(out, '\n');
    cr_assert_not_null(nl, "%s", out);
    cr_assert_eq(nl[1], '\0', "one line expected: %s", out);
    obj = json_loadb(out, (size_t)(nl - out), 0, &jerr);
    cr_assert_not_null(obj, "invalid JSON (%s): %s", jerr.text, out);
    cr_assert_str_eq(json_string_value(json_object_get(obj, "level")), "warn");
    cr_assert_str_eq(json_string_value(json_object_get(obj, "msg")),
                     "quote \" backslash \\ newline \n tab \t bad utf8 ?? end");
    cr_assert_eq(lv_parse_time(json_string_value(json_object_get(obj, "time")), &t), 0);
    cr_assert_null(json_object_get(obj, "src"), "no source location below debug");
    json_decref(obj);
    free(out);
}

static void lvt_emit_long(void)
{
    char big[5000];

    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    lvlog_setup(LVLOG_INFO, 0);
    LV_INFO("<%s>", big);
}

Test(lv, log_long_message_not_truncated)
{
    char *out = lvt_capture(lvt_emit_long);
    char *lt = strchr(out, '<'), *gt = strchr(out, '>');

    cr_assert(lt && gt);
    cr_assert_eq(gt - lt - 1, 4999);
    cr_assert_str_eq(gt, ">\n");
    free(out);
}

static void lvt_emit_errno(void)
{
    lvlog_setup(LVLOG_INFO, 0);
    errno = ENOSPC;
    LV_INFO("x");
    cr_assert_eq(errno, ENOSPC, "lvlog_write must preserve errno");
}

Test(lv, log_preserves_errno_and_parses_levels)
{
    int lvl = -1;

    free(lvt_capture(lvt_emit_errno));
    cr_assert_eq(lvlog_parse_level("error", &lvl), 0);
    cr_assert_eq(lvl, LVLOG_ERROR);
    cr_assert_eq(lvlog_parse_level("warn", &lvl), 0);
    cr_assert_eq(lvl, LVLOG_WARN);
    cr_assert_eq(lvlog_parse_level("info", &lvl), 0);
    cr_assert_eq(lvl, LVLOG_INFO);
    cr_assert_eq(lvlog_parse_level("debug", &lvl), 0);
    cr_assert_eq(lvl, LVLOG_DEBUG);
    cr_assert_eq(lvlog_parse_level("loud", &lvl), -1);
    cr_assert_eq(lvlog_parse_level("", &lvl), -1);
}
