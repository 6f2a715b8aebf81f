/*
 * unit_cron.c -- schedules (src/cron.c): parsing of every syntax form, the
 * messages for bad expressions (naming the field), and cron_next in UTC
 * around minute/hour/day/month/year ends, Feb 29, the day-of-month OR
 * day-of-week rule, @every alignment and impossible expressions.  A
 * brute-force reference (minute by minute) cross-checks cron_next on a set
 * of expressions.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "export/cron.h"
#include "base/lv.h"
#include "base/lvlog.h"

static void cron_quiet(void)
{
    lvlog_threshold = -1;
}

TestSuite(cron, .init = cron_quiet);

static int64_t T(const char *s)
{
    int64_t t;
    cr_assert_eq(lv_parse_time(s, &t), 0, "bad time %s", s);
    return t;
}

static struct cron P(const char *expr)
{
    struct cron c;
    char err[256] = "";
    int rc = cron_parse(expr, &c, err, sizeof err);
    cr_assert_eq(rc, 0, "cron_parse(\"%s\"): %s", expr, err);
    return c;
}

/* Assert that expr's next firing strictly after `after` is `want`. */
static void next_is(const char *expr, const char *after, const char *want)
{
    struct cron c = P(expr);
    int64_t n = 0;
    char got[40];
    cr_assert_eq(cron_next(&c, T(after), &n), 0, "%s after %s: nothing found", expr, after);
    cr_assert_eq(n, T(want), "\"%s\" after %s: got %s, want %s", expr, after, lv_fmt_time(n, got, sizeof got), want);
}

/* One next_is() case: expr's next firing strictly after `after` is `want`. */
struct next_case {
    const char *expr, *after, *want;
};

/* Run a table of next_is() cases; a failure names the row's expression and times. */
static void check_next(const struct next_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        next_is(c[i].expr, c[i].after, c[i].want);
}

/* Assert that parsing fails with a message containing each of the substrings. */
static void bad(const char *expr, const char *sub1, const char *sub2)
{
    struct cron c;
    char err[256] = "";
    cr_assert_eq(cron_parse(expr, &c, err, sizeof err), LV_EINVAL, "\"%s\" was accepted", expr);
    cr_assert_not_null(strstr(err, sub1), "\"%s\": message \"%s\" lacks \"%s\"", expr, err, sub1);
    if (sub2)
        cr_assert_not_null(strstr(err, sub2), "\"%s\": message \"%s\" lacks \"%s\"", expr, err, sub2);
    cr_assert_null(strchr(err, '\n'));
}

/* One bad() case: expr is refused with a message containing sub1 (and sub2 unless NULL). */
struct bad_case {
    const char *expr, *sub1, *sub2;
};

/* Run a table of bad() cases; a failure names the row's expression and message. */
static void check_bad(const struct bad_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bad(c[i].expr, c[i].sub1, c[i].sub2);
}

Test(cron, every_minute_and_strictly_after)
{
    static const struct next_case next_cases[] = {
        {"* * * * *", "2026-03-01T10:00:00Z", "2026-03-01T10:01:00Z"},
        {"* * * * *", "2026-03-01T10:00:59.999999Z", "2026-03-01T10:01:00Z"},
        {"* * * * *", "2026-03-01T10:00:00.000001Z", "2026-03-01T10:01:00Z"},
        {"* * * * *", "2026-12-31T23:59:30Z", "2027-01-01T00:00:00Z"},
    };
    check_next(next_cases, LV_ARRAY_LEN(next_cases));
}

Test(cron, lists_ranges_steps)
{
    static const struct next_case next_cases[] = {
        {"*/15 * * * *", "2026-03-01T10:00:00Z", "2026-03-01T10:15:00Z"},
        {"*/15 * * * *", "2026-03-01T10:45:00Z", "2026-03-01T11:00:00Z"},
        {"5,35 * * * *", "2026-03-01T10:05:00Z", "2026-03-01T10:35:00Z"},
        {"10-12 * * * *", "2026-03-01T10:12:00Z", "2026-03-01T11:10:00Z"},
        {"1-10/4 * * * *", "2026-03-01T10:05:00Z", "2026-03-01T10:09:00Z"},
        {"1-10/4 * * * *", "2026-03-01T10:09:00Z", "2026-03-01T11:01:00Z"},
        {"50/5 * * * *", "2026-03-01T10:56:00Z", "2026-03-01T11:50:00Z"},
        {"0 9-17/2 * * *", "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"},
        {"0 9-17/2 * * *", "2026-03-01T17:00:00Z", "2026-03-02T09:00:00Z"},
        {"30 2 * * *", "2026-03-01T02:30:00Z", "2026-03-02T02:30:00Z"},
        {"0,30 1,13 * * *", "2026-03-01T13:30:00Z", "2026-03-02T01:00:00Z"},
    };
    check_next(next_cases, LV_ARRAY_LEN(next_cases));
}

Test(cron, month_and_weekday_names)
{
    /* 2026-03-01 is a Sunday. */
    static const struct next_case next_cases[] = {
        {"0 0 * * mon", "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"},
        {"0 0 * * MON-fri", "2026-03-06T12:00:00Z", "2026-03-09T00:00:00Z"},
        {"0 0 1 jun *", "2026-03-01T00:00:00Z", "2026-06-01T00:00:00Z"},
        {"0 0 1 Jan,JUL *", "2026-03-01T00:00:00Z", "2026-07-01T00:00:00Z"},
        {"0 0 1 nov-dec *", "2026-12-01T00:00:00Z", "2027-11-01T00:00:00Z"},
    };
    check_next(next_cases, LV_ARRAY_LEN(next_cases));
}

Test(cron, sunday_is_0_and_7)
{
    static const struct next_case next_cases[] = {
        {"0 12 * * 0", "2026-03-02T00:00:00Z", "2026-03-08T12:00:00Z"},
        {"0 12 * * 7", "2026-03-02T00:00:00Z", "2026-03-08T12:00:00Z"},
        {"0 12 * * sun", "2026-03-02T00:00:00Z", "2026-03-08T12:00:00Z"},
        {"0 12 * * 5-7", "2026-03-02T00:00:00Z", "2026-03-06T12:00:00Z"}, /* Fri */
        {"0 12 * * 5-7", "2026-03-07T12:00:00Z", "2026-03-08T12:00:00Z"}, /* Sat -> Sun */
    };
    check_next(next_cases, LV_ARRAY_LEN(next_cases));
}

Test(cron, day_of_month_or_day_of_week)
{
    static const struct next_case next_cases[] = {
        /* Both restricted: either matches.  2026-03-02 is a Monday. */
        {"0 0 15 * mon", "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"},
        {"0 0 15 * mon", "2026-03-09T00:00:00Z", "2026-03-15T00:00:00Z"},
        {"0 0 1,15 * 3", "2026-03-15T00:00:00Z", "2026-03-18T00:00:00Z"}, /* Wed */
        /* One field '*': the other decides. */
        {"0 0 15 * *", "2026-03-01T00:00:00Z", "2026-03-15T00:00:00Z"},
        {"0 0 * * mon", "2026-03-03T00:00:00Z", "2026-03-09T00:00:00Z"},
        /* A starred step counts as '*': both must match.  Weekdays of "*\/5" are Sunday and Friday: the next
         * 13th on one of them after 2026-03-14 is Sunday 2026-09-13 (then Friday 2026-11-13). */
        {"0 0 13 * */5", "2026-03-14T00:00:00Z", "2026-09-13T00:00:00Z"},
        {"0 0 13 * */5", "2026-09-13T00:00:00Z", "2026-11-13T00:00:00Z"},
    };
    check_next(next_cases, LV_ARRAY_LEN(next_cases));
}

Test(cron, month_ends_and_feb_29)
{
    static const struct next_case next_cases[] = {
        {"0 0 31 * *", "2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z"}, /* skips Feb */
        {"0 0 31 * *", "2026-04-01T00:00:00Z", "2026-05-31T00:00:00Z"}, /* skips Apr 30 */
        {"0 0 30 * *", "2026-01-30T00:00:00Z", "2026-03-30T00:00:00Z"},
        {"0 0 29 2 *", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z"},
        {"0 0 29 2 *", "2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"},
        {"0 0 29 2 *", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z"}, /* 2100 is not a leap year */
        {"0 0 29 2 *", "2399-03-01T00:00:00Z", "2400-02-29T00:00:00Z"}, /* 2400 is */
        {"59 23 28-31 2 *", "2026-02-28T23:59:00Z", "2027-02-28T23:59:00Z"},
        {"59 23 28-31 2 *", "2028-02-28T23:59:00Z", "2028-02-29T23:59:00Z"},
        {"0 0 1 1 *", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z"},
    };
    check_next(next_cases, LV_ARRAY_LEN(next_cases));
}

Test(cron, shortcuts)
{
    static const struct next_case next_cases[] = {
        {"@hourly", "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"},
        {"@hourly", "2026-03-01T10:59:59Z", "2026-03-01T11:00:00Z"},
        {"@daily", "2026-03-01T10:00:00Z", "2026-03-02T00:00:00Z"},
        {"@midnight", "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"},
        {"@weekly", "2026-03-01T00:00:00Z", "2026-03-08T00:00:00Z"},
        {"@monthly", "2026-01-31T00:00:00Z", "2026-02-01T00:00:00Z"},
        {"@yearly", "2026-03-01T00:00:00Z", "2027-01-01T00:00:00Z"},
        {"@annually", "2026-03-01T00:00:00Z", "2027-01-01T00:00:00Z"},
        {"  @daily  ", "2026-03-01T10:00:00Z", "2026-03-02T00:00:00Z"},
    };
    check_next(next_cases, LV_ARRAY_LEN(next_cases));
}

Test(cron, every_duration)
{
    static const struct next_case next_cases[] = {
        {"@every 1s", "2026-03-01T10:00:00Z", "2026-03-01T10:00:01Z"},
        {"@every 1s", "2026-03-01T10:00:00.5Z", "2026-03-01T10:00:01Z"},
        {"@every 15m", "2026-03-01T10:00:00Z", "2026-03-01T10:15:00Z"},
        {"@every 15m", "2026-03-01T10:14:59Z", "2026-03-01T10:15:00Z"},
        {"@every 24h", "2026-03-01T10:00:00Z", "2026-03-02T00:00:00Z"},
        {"@every 7m", "1970-01-01T00:00:00Z", "1970-01-01T00:07:00Z"},
    };
    check_next(next_cases, LV_ARRAY_LEN(next_cases));
    struct cron c = P("@every  90s");
    cr_assert_eq(c.every_us, 90000000);
}

Test(cron, bad_expressions_name_the_field)
{
    static const struct bad_case bad_cases[] = {
        {"", "empty schedule", NULL},
        {"* * * *", "expected 5 fields", "found 4"},
        {"* * * * * *", "expected 5 fields", NULL},
        {"60 * * * *", "minute field \"60\"", "out of range 0-59"},
        {"* 24 * * *", "hour field \"24\"", "0-23"},
        {"* * 0 * *", "day-of-month field \"0\"", "1-31"},
        {"* * 32 * *", "day-of-month field", "1-31"},
        {"* * * 13 *", "month field \"13\"", "1-12"},
        {"* * * * 8", "day-of-week field \"8\"", "0-7"},
        {"* * * foo *", "month field \"foo\"", "unknown name"},
        {"* * * * funday", "day-of-week field", "unknown name \"funday\""},
        {"mon * * * *", "minute field \"mon\"", "not a number"},
        {"5-1 * * * *", "minute field \"5-1\"", "backwards"},
        {"*/0 * * * *", "minute field", "step 0"},
        {"*/ * * * *", "minute field", "step must be"},
        {"1,,2 * * * *", "minute field", "empty item"},
        {"1, * * * *", "minute field", "empty item"},
        {"1- * * * *", "minute field", "missing"},
        {"1#2 * * * *", "minute field", "unexpected \"#\""},
        {"@often", "unknown shortcut", "@every"},
        {"@every", "needs a duration", NULL},
        {"@every soon", "bad duration \"soon\"", NULL},
        {"@every 500ms", "shorter than 1s", NULL},
        {"@every 0s", "shorter than 1s", NULL},
    };
    check_bad(bad_cases, LV_ARRAY_LEN(bad_cases));
}

Test(cron, impossible_expressions_are_refused)
{
    static const struct bad_case bad_cases[] = {
        {"0 0 30 2 *", "never", "day-of-month field \"30\""},
        {"0 0 31 4,6,9,11 *", "never", NULL},
        {"0 0 30,31 feb *", "never", NULL},
        {"0 0 31 2 */2", "never", NULL}, /* starred weekday: ANDed */
    };
    check_bad(bad_cases, LV_ARRAY_LEN(bad_cases));
    /* OR rule: the weekday makes it possible. */
    struct cron c = P("0 0 30 2 mon");
    int64_t n;
    cr_assert_eq(cron_next(&c, T("2026-01-01T00:00:00Z"), &n), 0);
    cr_assert_eq(n, T("2026-02-02T00:00:00Z"));
    P("0 0 29 2 *");
    P("0 0 31 1-12 *");
}

/* Reference: scan minute by minute (from the first whole minute after) for the first match. */
static int64_t brute_next(const struct cron *c, int64_t after, int64_t limit_min)
{
    int64_t m = after / 60000000 + 1;
    for (int64_t i = 0; i < limit_min; i++, m++) {
        time_t t = (time_t)(m * 60);
        struct tm tm;
        gmtime_r(&t, &tm);
        if (!(c->minutes >> tm.tm_min & 1) || !(c->hours >> tm.tm_hour & 1) || !(c->months >> (tm.tm_mon + 1) & 1))
            continue;
        int dm = c->mdays >> tm.tm_mday & 1, ww = c->wdays >> tm.tm_wday & 1;
        if ((c->mday_any || c->wday_any) ? (dm && ww) : (dm || ww))
            return m * 60000000;
    }
    return -1;
}

Test(cron, agrees_with_brute_force)
{
    static const char *exprs[] = {
        "*/7 */5 * * *", "0 0 1,15 * 1", "13 4 */3 */2 *", "0 12 * * 1-5", "45 23 31 * *", "0 0 * * 6,0",
        "17 * 5-9 * tue", "0 6 1 */3 *", "* 3 * * *", "0 0 29 2 *", "30 18 */10 mar-may sat,sun",
    };
    int64_t starts[] = {T("2026-02-27T22:58:30Z"), T("2027-12-31T23:58:00Z"), T("2028-02-28T12:00:00Z"),
                        T("2031-07-15T00:00:00Z")};
    for (size_t i = 0; i < sizeof exprs / sizeof exprs[0]; i++) {
        struct cron c = P(exprs[i]);
        for (size_t j = 0; j < sizeof starts / sizeof starts[0]; j++) {
            int64_t after = starts[j];
            for (int k = 0; k < 20; k++) {
                int64_t got, want = brute_next(&c, after, 5LL * 366 * 1440);
                if (want < 0)
                    break;
                cr_assert_eq(cron_next(&c, after, &got), 0);
                cr_assert_eq(got, want, "\"%s\" after %lld: got %lld want %lld", exprs[i], (long long)after,
                             (long long)got, (long long)want);
                after = got + (k % 2 ? 0 : 29000000); /* strictly after, and from inside the minute */
            }
        }
    }
}
