/*
 * lv.c -- project-wide helpers: error names, errno mapping, clocks and
 * RFC 3339 time stamps.
 *
 * Time stamps.  Every time the daemon shows or accepts is microseconds
 * since the Unix epoch, UTC, in an int64_t.  lv_fmt_time() always writes
 * the same fixed-width form (27 bytes + NUL for years 0000..9999):
 *
 *     2026-11-24T10:00:00.123456Z
 *     ^yyyy ^mm^dd^hh^mm^ss^uuuuuu^Z
 *
 * lv_parse_time() accepts the RFC 3339 "date-time" production:
 *
 *     YYYY-MM-DD ('T'|'t') hh:mm:ss [ '.' 1*9DIGIT ] ( 'Z' | 'z' | ('+'|'-') hh:mm )
 *
 * Fractions longer than six digits are truncated (not rounded) to
 * microseconds.  Leap seconds (ss = 60) are rejected: the daemon never
 * produces them and a point-in-time target of 23:59:60 is meaningless
 * for a log ordered by wall-clock time.  Calendar conversion uses the
 * proleptic Gregorian days-from-civil arithmetic, so no libc time zone
 * state (TZ, timegm) is involved and the functions are thread-safe.
 */
#include "base/lv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *lv_strerror(int err)
{
    switch (err) {
    case LV_OK: return "success";
    case LV_EIO: return "I/O error";
    case LV_ENOSPC: return "no space left on device";
    case LV_ENOMEM: return "out of memory";
    case LV_ECORRUPT: return "data corrupt";
    case LV_EINVAL: return "invalid argument";
    case LV_ENOENT: return "not found";
    case LV_EEXIST: return "already exists";
    case LV_ECONFIG: return "configuration error";
    case LV_EGAP: return "TXIDs are not consecutive";
    case LV_ECHAIN: return "checksum chain broken";
    case LV_EMISMATCH: return "checksum mismatch";
    case LV_EBROKEN: return "state uncertain after an earlier I/O error";
    case LV_ENOTSQLITE: return "not a SQLite database";
    case LV_EREFUSED: return "refused";
    case LV_EVERSION: return "unsupported format version";
    case LV_EBUSY: return "resource busy";
    case LV_EPERM: return "permission denied";
    case LV_ENET: return "network error";
    case LV_EUSAGE: return "usage error";
    }
    return "unknown error";
}

int lv_from_errno(int e)
{
    switch (e) {
    case 0: return LV_OK;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return LV_ENOSPC;
    case ENOMEM: return LV_ENOMEM;
    case EINVAL:
    case ENAMETOOLONG: return LV_EINVAL;
    case ENOENT:
    case ENOTDIR: return LV_ENOENT;
    case EEXIST:
    case ENOTEMPTY: return LV_EEXIST;
    case EBUSY:
    case EAGAIN: return LV_EBUSY;
    case EPERM:
    case EACCES:
    case EROFS: return LV_EPERM;
    case ECONNREFUSED:
    case ECONNRESET:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH: return LV_ENET;
    default: return LV_EIO;
    }
}

int lv_to_errno(int err)
{
    switch (err) {
    case LV_OK: return 0;
    case LV_ENOSPC: return ENOSPC;
    case LV_ENOMEM: return ENOMEM;
    case LV_EINVAL:
    case LV_ECONFIG:
    case LV_EUSAGE: return EINVAL;
    case LV_ENOENT: return ENOENT;
    case LV_EEXIST: return EEXIST;
    case LV_EBUSY: return EBUSY;
    case LV_EPERM:
    case LV_EREFUSED: return EPERM;
    case LV_ENOTSQLITE:
    case LV_EVERSION: return EINVAL;
    /* Corruption, chain, gap and broken state: the bytes cannot be trusted. */
    default: return EIO;
    }
}

int64_t lv_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t lv_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;                                      /* [0, 399] */
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;     /* [0, 365] */
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;              /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

/* Inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

char *lv_fmt_time(int64_t t_us, char *buf, size_t n)
{
    int64_t secs, us, days, sod, y;
    int m, d;

    /* Floor division so that times before 1970 still have 0 <= us < 1e6. */
    secs = t_us / 1000000;
    us = t_us % 1000000;
    if (us < 0) {
        us += 1000000;
        secs--;
    }
    days = secs / 86400;
    sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, n, "%04lld-%02d-%02dT%02d:%02d:%02d.%06dZ", (long long)y, m, d, (int)(sod / 3600),
             (int)(sod / 60 % 60), (int)(sod % 60), (int)us);
    return buf;
}

/* Read exactly n decimal digits at *p into *out, advancing *p; 0 or -1. */
static int take_digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int lv_parse_time(const char *s, int64_t *t_us)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    int64_t frac = 0, t;

    if (!s)
        return LV_EINVAL;
    if (take_digits(&p, 4, &y) || *p++ != '-' || take_digits(&p, 2, &mo) || *p++ != '-' ||
        take_digits(&p, 2, &d))
        return LV_EINVAL;
    if (*p != 'T' && *p != 't')
        return LV_EINVAL;
    p++;
    if (take_digits(&p, 2, &h) || *p++ != ':' || take_digits(&p, 2, &mi) || *p++ != ':' ||
        take_digits(&p, 2, &sec))
        return LV_EINVAL;
    if (*p == '.') {
        int nd = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (++nd > 9)
                return LV_EINVAL;
            if (nd <= 6)
                frac = frac * 10 + (*p - '0');
            p++;
        }
        if (nd == 0)
            return LV_EINVAL;
        for (; nd < 6; nd++)
            frac *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        p++;
        if (take_digits(&p, 2, &oh) || *p++ != ':' || take_digits(&p, 2, &om))
            return LV_EINVAL;
        if (oh > 23 || om > 59)
            return LV_EINVAL;
    } else {
        return LV_EINVAL;
    }
    if (*p != '\0')
        return LV_EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59)
        return LV_EINVAL;
    if (d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
        return LV_EINVAL;

    t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    t -= (int64_t)sign * (oh * 3600 + om * 60); /* local = UTC + offset */
    *t_us = t * 1000000 + frac;
    return 0;
}

void lv_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- durations and sizes (config values, CLI flags) ---- */

struct lv_unit {
    const char *name; /* suffix as written */
    int64_t mult;     /* value of one unit */
};

static const struct lv_unit duration_units[] = {
    {"ms", 1000LL}, {"s", 1000000LL}, {"m", 60LL * 1000000}, {"h", 3600LL * 1000000}, {"d", 86400LL * 1000000},
};

static const struct lv_unit size_units[] = {
    {"", 1},           {"B", 1},           {"KiB", 1LL << 10}, {"MiB", 1LL << 20}, {"GiB", 1LL << 30},
    {"TiB", 1LL << 40}, {"KB", 1000LL},     {"MB", 1000000LL},  {"GB", 1000000000LL}, {"TB", 1000000000000LL},
};

/* Parse "<digits>[ ]<unit>" with unit from units[]; on failure *why says what is wrong. */
static int parse_scaled(const char *s, const struct lv_unit *units, size_t nunits, int64_t *out, const char **why)
{
    const char *p = s;
    int64_t v = 0;

    if (*p == '-') {
        *why = "negative values are not allowed";
        return LV_EINVAL;
    }
    if (*p < '0' || *p > '9') {
        *why = "expected an integer followed by a unit";
        return LV_EINVAL;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (INT64_MAX - (*p - '0')) / 10) {
            *why = "value is too large";
            return LV_EINVAL;
        }
        v = v * 10 + (*p - '0');
    }
    if (*p == '.' || *p == ',') {
        *why = "fractions are not supported (use a smaller unit)";
        return LV_EINVAL;
    }
    if (*p == ' ' && p[1] != '\0') /* "64 MiB"; a bare trailing space is not a unit */
        p++;
    for (size_t i = 0; i < nunits; i++) {
        if (strcmp(p, units[i].name) != 0)
            continue;
        if (v > INT64_MAX / units[i].mult) {
            *why = "value is too large";
            return LV_EINVAL;
        }
        *out = v * units[i].mult;
        return 0;
    }
    *why = *p ? "unknown unit" : "missing unit";
    return LV_EINVAL;
}



int lv_parse_duration_why(const char *s, int64_t *us, const char **why)
{
    *why = "missing value";
    if (!s)
        return LV_EINVAL;
    return parse_scaled(s, duration_units, LV_ARRAY_LEN(duration_units), us, why);
}

int lv_parse_size_why(const char *s, int64_t *bytes, const char **why)
{
    *why = "missing value";
    if (!s)
        return LV_EINVAL;
    return parse_scaled(s, size_units, LV_ARRAY_LEN(size_units), bytes, why);
}

int lv_parse_duration(const char *s, int64_t *us)
{
    const char *why;

    return lv_parse_duration_why(s, us, &why);
}

int lv_parse_size(const char *s, int64_t *bytes)
{
    const char *why;

    return lv_parse_size_why(s, bytes, &why);
}

/* ---- small helpers ---- */

void lv_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "litevault: assertion failed: %s (%s:%d, %s)\n", expr, file, line, func);
    fflush(stderr);
    abort();
}

char *lv_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
    return out;
}

int lv_grow(void **arr, size_t *cap, size_t n, size_t elem, size_t first)
{
    size_t ncap;
    void *p;

    if (n < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : first;
    p = realloc(*arr, ncap * elem);
    if (!p)
        return LV_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

static int hexdigit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int lv_unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexdigit(s[2 * i]), lo = hi < 0 ? -1 : hexdigit(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return LV_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return s[2 * n] == '\0' ? 0 : LV_EINVAL;
}
