/*
 * cron.c -- parse schedules and compute their next firing time, in UTC.
 *
 * Syntax (as in Vixie cron, crontab(5)):
 *   MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK
 * Each field is a comma-separated list of items; an item is
 *   *            every value of the field
 *   N            one value
 *   N-M          an inclusive range (N <= M)
 *   ITEM/S       every S-th value of * or N-M, starting at its first value;
 *                N/S means N-MAX/S
 * Ranges: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or
 * jan..dec, day of week 0-7 or sun..sat (0 and 7 are both Sunday).  Names
 * are case-insensitive and allowed only in their own field.
 *
 * Day rule: a day matches when its month matches and
 *   - if the day-of-month or the day-of-week field starts with '*'
 *     (as in "*" or "*\/2"): both fields match (so a plain "*" simply
 *     defers to the other field);
 *   - otherwise (both restricted): EITHER field matches.
 * This is the standard cron rule ("0 0 1,15 * 1" fires on the 1st, the
 * 15th and every Monday).
 *
 * Shortcuts: @yearly/@annually = "0 0 1 1 *", @monthly = "0 0 1 * *",
 * @weekly = "0 0 * * 0", @daily/@midnight = "0 0 * * *", @hourly =
 * "0 * * * *"; "@every DURATION" (lv_parse_duration: 30s, 15m, 24h;
 * at least 1s) fires at every whole multiple of DURATION since the Unix
 * epoch, so "@every 24h" fires at 00:00 UTC and the times do not depend on
 * when the daemon started.
 *
 * Time: everything is UTC; days are counted from 1970-01-01 with the
 * proleptic Gregorian calendar (days_from_civil / civil_from_days), so no
 * time zone or daylight-saving rule is involved.  cron_next walks day by
 * day from the start (skipping whole months that do not match) and scans
 * hours and minutes within a matching day; the walk is bounded to 400
 * years (one Gregorian cycle), so an expression that never fires cannot
 * loop forever.  cron_parse refuses the ones that can never fire (a day of
 * month that no selected month has, e.g. "0 0 30 2 *"); Feb 29 is allowed
 * (it fires in leap years).
 */
#include "export/cron.h"

#include "base/lv.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MIN_PER_DAY 1440
#define US_PER_MIN 60000000LL
#define CRON_MAX_DAYS (400LL * 366) /* search horizon */

/* One of the five fields. */
struct cron_field {
    const char *name;          /* for messages */
    int lo, hi;                /* accepted numbers */
    const char *const *names;  /* names for lo..lo+n-1, or NULL */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                           "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const wday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct cron_field fields[5] = {
    {"minute", 0, 59, NULL},
    {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL},
    {"month", 1, 12, month_names},
    {"day-of-week", 0, 7, wday_names},
};

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days since 1970-01-01 of y-m-d (proleptic Gregorian; H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* y-m-d of a day number (inverse of days_from_civil). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Longest a month ever is (February: 29). */
static int month_max_days(int m)
{
    static const int len[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return len[m];
}

static int errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return LV_EINVAL;
}

/* Parse one number or name at *s (advancing it) for field f.  0 or LV_EINVAL (message in err). */
static int parse_value(const struct cron_field *f, const char *field_text, const char **s, int *out, char *err,
                       size_t errlen)
{
    const char *p = *s;

    if (isdigit((unsigned char)*p)) {
        long v = 0;
        while (isdigit((unsigned char)*p)) {
            v = v * 10 + (*p - '0');
            if (v > 1000)
                v = 1000; /* saturate: reported as out of range */
            p++;
        }
        if (v < f->lo || v > f->hi)
            return errf(err, errlen, "%s field \"%s\": %ld is out of range %d-%d", f->name, field_text, v, f->lo,
                        f->hi);
        *out = (int)v;
        *s = p;
        return 0;
    }
    if (isalpha((unsigned char)*p)) {
        char word[16];
        size_t n = 0;
        while (isalpha((unsigned char)p[n]) && n < sizeof word - 1) {
            word[n] = p[n];
            n++;
        }
        word[n] = '\0';
        for (int i = 0; f->names && f->names[i]; i++) {
            if (strcasecmp(word, f->names[i]) == 0 && !isalpha((unsigned char)p[n])) {
                *out = f->lo + i;
                if (f->names == wday_names)
                    *out = i; /* sun = 0 */
                *s = p + n;
                return 0;
            }
        }
        if (f->names)
            return errf(err, errlen, "%s field \"%s\": unknown name \"%s\" (use %d-%d or %s, %s, ... %s)", f->name,
                        field_text, word, f->lo, f->hi, f->names[0], f->names[1],
                        f->names == month_names ? "dec" : "sat");
        return errf(err, errlen, "%s field \"%s\": \"%s\" is not a number (use %d-%d)", f->name, field_text, word,
                    f->lo, f->hi);
    }
    if (!*p)
        return errf(err, errlen, "%s field \"%s\": a value is missing at the end", f->name, field_text);
    return errf(err, errlen, "%s field \"%s\": unexpected \"%c\" (use *, N, N-M, */S, N-M/S and commas)", f->name,
                field_text, *p);
}

/* Parse field text (NUL-terminated) into the bit set *bits; *any = starts with '*'. */
static int parse_field(const struct cron_field *f, const char *text, uint64_t *bits, int *any, char *err,
                       size_t errlen)
{
    const char *p = text;
    int rc;

    *bits = 0;
    *any = text[0] == '*';
    for (;;) {
        int a, b, step = 1, star = 0;
        if (*p == '*') {
            star = 1;
            a = f->lo;
            b = f->hi;
            p++;
        } else {
            if ((rc = parse_value(f, text, &p, &a, err, errlen)) < 0)
                return rc;
            b = a;
            if (*p == '-') {
                p++;
                if ((rc = parse_value(f, text, &p, &b, err, errlen)) < 0)
                    return rc;
                if (b < a)
                    return errf(err, errlen, "%s field \"%s\": range %d-%d is backwards (write %d-%d)", f->name,
                                text, a, b, b, a);
            }
        }
        if (*p == '/') {
            long s = 0;
            p++;
            if (!isdigit((unsigned char)*p))
                return errf(err, errlen, "%s field \"%s\": a step must be a positive number (e.g. */15)", f->name,
                            text);
            while (isdigit((unsigned char)*p)) {
                s = s * 10 + (*p - '0');
                if (s > 1000)
                    s = 1000;
                p++;
            }
            if (s < 1)
                return errf(err, errlen, "%s field \"%s\": step 0 is not allowed (use 1 or more)", f->name, text);
            if (!star && a == b)
                b = f->hi; /* N/S = N-MAX/S */
            step = (int)s;
        }
        for (int v = a; v <= b; v += step)
            *bits |= 1ULL << (f->hi == 7 && v == 7 ? 0 : v);
        if (*p == ',') {
            p++;
            if (!*p || *p == ',')
                return errf(err, errlen, "%s field \"%s\": empty item in the list", f->name, text);
            continue;
        }
        if (*p)
            return errf(err, errlen, "%s field \"%s\": unexpected \"%c\" (use *, N, N-M, */S, N-M/S and commas)",
                        f->name, text, *p);
        return 0;
    }
}

static const struct {
    const char *name;
    const char *expr;
} shortcuts[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},  {"@midnight", "0 0 * * *"}, {"@hourly", "0 * * * *"},
};

int cron_parse(const char *expr, struct cron *out, char *err, size_t errlen)
{
    char buf[256], *tok[6], *save = NULL, *t;
    int n = 0, rc;
    uint64_t bits[5];
    int any[5];

    memset(out, 0, sizeof *out);
    if (err && errlen)
        err[0] = '\0';
    while (isspace((unsigned char)*expr))
        expr++;
    if (strlen(expr) >= sizeof buf)
        return errf(err, errlen, "expression is too long (%zu bytes)", strlen(expr));
    snprintf(buf, sizeof buf, "%s", expr);
    for (size_t len = strlen(buf); len && isspace((unsigned char)buf[len - 1]);)
        buf[--len] = '\0';
    if (!buf[0])
        return errf(err, errlen, "empty schedule (use 5 cron fields, @hourly, @daily or @every 15m)");

    if (buf[0] == '@') {
        if (strncmp(buf, "@every", 6) == 0 && (buf[6] == '\0' || isspace((unsigned char)buf[6]))) {
            const char *d = buf + 6;
            int64_t us;
            while (isspace((unsigned char)*d))
                d++;
            if (!*d)
                return errf(err, errlen, "@every needs a duration (e.g. @every 15m)");
            if (lv_parse_duration(d, &us) < 0)
                return errf(err, errlen, "@every: bad duration \"%s\" (use an integer with s, m, h or d, e.g. 15m)",
                            d);
            if (us < 1000000)
                return errf(err, errlen, "@every: duration \"%s\" is shorter than 1s", d);
            out->every_us = us;
            return 0;
        }
        for (size_t i = 0; i < LV_ARRAY_LEN(shortcuts); i++) {
            if (strcmp(buf, shortcuts[i].name) == 0)
                return cron_parse(shortcuts[i].expr, out, err, errlen);
        }
        return errf(err, errlen,
                    "unknown shortcut \"%s\" (use @hourly, @daily, @weekly, @monthly, @yearly or @every DURATION)",
                    buf);
    }

    for (t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (n == 6)
            break;
        tok[n++] = t;
    }
    if (n != 5)
        return errf(err, errlen,
                    "expected 5 fields (minute hour day-of-month month day-of-week), found %s%d", n == 6 ? "more than " : "",
                    n == 6 ? 5 : n);
    for (int i = 0; i < 5; i++) {
        if ((rc = parse_field(&fields[i], tok[i], &bits[i], &any[i], err, errlen)) < 0)
            return rc;
    }
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->mdays = (uint32_t)bits[2];
    out->months = (uint32_t)bits[3];
    out->wdays = (uint32_t)bits[4];
    out->mday_any = any[2];
    out->wday_any = any[4];

    /* Can it ever fire?  Only the day-of-month field can make every day impossible:
     * when it is ANDed (either field starts with '*'), some selected month must have
     * some selected day.  Every (month, day) that exists falls on every weekday in
     * some year, so the weekday set cannot make it impossible. */
    if (out->mday_any || out->wday_any) {
        int ok = 0;
        for (int m = 1; m <= 12 && !ok; m++) {
            if (!(out->months & (1u << m)))
                continue;
            for (int d = 1; d <= month_max_days(m) && !ok; d++)
                ok = (out->mdays >> d) & 1;
        }
        if (!ok)
            return errf(err, errlen,
                        "day-of-month field \"%s\" never occurs in month field \"%s\" (the schedule would never run)",
                        tok[2], tok[3]);
    }
    return 0;
}

/* Does day (y-m-d, weekday wd) match c's month and day fields? */
static int day_matches(const struct cron *c, int d, int wd)
{
    int dm = (c->mdays >> d) & 1, ww = (c->wdays >> wd) & 1;

    if (c->mday_any || c->wday_any)
        return dm && ww;
    return dm || ww;
}

int cron_next(const struct cron *c, int64_t after_us, int64_t *next_us)
{
    if (c->every_us > 0) {
        int64_t k = floor_div(after_us, c->every_us) + 1;
        if (k > INT64_MAX / c->every_us)
            return LV_ENOENT;
        *next_us = k * c->every_us;
        return 0;
    }
    int64_t start = floor_div(after_us, US_PER_MIN) + 1; /* first whole minute strictly after */
    int64_t day = floor_div(start, MIN_PER_DAY), end = day + CRON_MAX_DAYS;
    int mod = (int)(start - day * MIN_PER_DAY);

    for (; day < end; day++, mod = 0) {
        int64_t y;
        int m, d, wd = (int)(((day + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
        civil_from_days(day, &y, &m, &d);
        if (y > 9999)
            break;
        if (!(c->months & (1u << m))) {
            day = days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) - 1; /* loop adds 1 */
            continue;
        }
        if (!day_matches(c, d, wd))
            continue;
        for (int h = mod / 60; h < 24; h++) {
            if (!(c->hours & (1u << h)))
                continue;
            for (int mi = h == mod / 60 ? mod % 60 : 0; mi < 60; mi++) {
                if (c->minutes & (1ULL << mi)) {
                    *next_us = ((day * MIN_PER_DAY) + h * 60 + mi) * US_PER_MIN;
                    return 0;
                }
            }
        }
    }
    return LV_ENOENT;
}
