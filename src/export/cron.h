/*
 * cron.h -- schedules of scheduled exports: 5-field cron expressions,
 * @hourly/@daily/@weekly/@monthly/@yearly and @every DURATION.
 *
 * Schedules are evaluated in UTC (never local time, so there is no
 * daylight-saving jump or repeat).  See cron.c for the exact rules.
 */
#ifndef CRON_H
#define CRON_H

#include <stddef.h>
#include <stdint.h>

/* A parsed schedule (plain value, no owned memory). */
struct cron {
    int64_t every_us;   /* > 0: "@every DURATION" (the fields below are unused) */
    uint64_t minutes;   /* bit m set: minute m (0-59) matches */
    uint32_t hours;     /* bit h: hour h (0-23) */
    uint32_t mdays;     /* bit d: day of month d (1-31) */
    uint32_t months;    /* bit m: month m (1-12) */
    uint32_t wdays;     /* bit w: weekday w (0-6, 0 = Sunday; 7 is folded into 0) */
    int mday_any;       /* day-of-month field starts with '*' (unrestricted for the OR rule) */
    int wday_any;       /* day-of-week field starts with '*' */
};

/* Parse expr into *out.  0, or LV_EINVAL with a one-line message naming
 * the field and what is wrong in err (e.g. "day-of-month field \"32\":
 * 32 is out of range 1-31").  Expressions that can never fire
 * ("0 0 30 2 *") are refused here. */
int cron_parse(const char *expr, struct cron *out, char *err, size_t errlen);

/* The first time strictly after after_us (microseconds since the epoch,
 * UTC) at which c fires, into *next_us.  Cron times are whole minutes;
 * @every times are whole multiples of the interval since the epoch.
 * 0, or LV_ENOENT if nothing fires within 400 years (cannot happen for an
 * expression cron_parse accepted, except beyond year 9999). */
int cron_next(const struct cron *c, int64_t after_us, int64_t *next_us);

#endif /* CRON_H */
