/*
 * exports.h -- scheduled exports: a scheduler thread in the daemon runs the
 * jobs of the config's exports: list (consistent database images uploaded
 * to a directory or S3 bucket), and `litevault export --list`.
 * See exports.c for the design and docs/FORMAT.md ("Scheduled exports")
 * for the object names.
 */
#ifndef EXPORTS_H
#define EXPORTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct config;
struct dbreg;
struct exports;

/* The scheduler's clock: wall-clock microseconds since the epoch (UTC). */
typedef int64_t (*exports_clock_fn)(void *arg);

/* Create the scheduler for cfg->exports (cfg and reg are borrowed and must
 * outlive it).  now == NULL uses the real clock (lv_now_us); tests pass a
 * fake one.  Loads each job's saved state from data.dir/exports/NAME.json
 * and computes the first run times; starts no thread.  *out is NULL when
 * there are no jobs.  0 or LV_ECONFIG/LV_ENOMEM with a message in err. */
int exports_new(const struct config *cfg, struct dbreg *reg, exports_clock_fn now, void *now_arg,
                struct exports **out, char *err, size_t errlen);

/* Run every job whose next run time is <= now (one attempt each); returns
 * the earliest next run time of all jobs (INT64_MAX if none). */
int64_t exports_run_due(struct exports *x);

/* Start the scheduler thread of x (from exports_new with the real clock);
 * x may be NULL (no jobs).  Call after data.dir/tmp was cleared
 * (api_register).  0 or LV_ENOMEM. */
int exports_start(struct exports *x);

/* Stop the thread (if started; waits for a running upload to finish) and free.  NULL is fine. */
void exports_stop(struct exports *x);

/* Per-job status for /status: a JSON array (new reference, caller decrefs;
 * an empty array when x is NULL). */
json_t *exports_status_json(struct exports *x);

/* Append the jobs' Prometheus metrics to *buf (see metrics.h).  x may be NULL.  0 or LV_ENOMEM. */
int exports_metrics(struct exports *x, char **buf, size_t *len, size_t *cap);

/* List the exports found at url (a directory, file:// or s3:// URL; S3
 * credentials from the environment) on stdout, as a table or (json) a
 * JSON array.  Returns a process exit code (0, or 1 on error). */
int exports_list_main(const char *url, int json);

#endif /* EXPORTS_H */
