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

#include "store/store.h"

/* exports[].format */
enum exports_format {
    EXPORTS_FMT_DB = 0,      /* "db": one SQLite file per database */
    EXPORTS_FMT_TAR_ZST = 1, /* "tar.zst": one bundle (bundle.h) per run */
};

/* exports[].on: where the job runs. */
enum exports_on {
    EXPORTS_ON_PRIMARY = 0, /* "primary" (the only value accepted for now) */
};

/* One scheduled export job (exports[] in the config file, parsed by
 * config.c; see config.yml.sample).  Strings are owned by the config. */
struct exports_job {
    char *name;                /* name: [A-Za-z0-9._-]+, unique; default "jobN" (1-based position) */
    char *schedule;            /* schedule: cron expression, checked with cron_parse; required */
    char *url;                 /* url: absolute directory, file:///dir or s3://BUCKET/PREFIX; required */
    int format;                /* format: an enum exports_format; default db */
    char **databases;          /* databases: NULL for all (default), else ndatabases names */
    size_t ndatabases;         /* entries in databases */
    int keep;                  /* keep: exports kept per database (db) or per job (tar.zst); default 7 */
    int on;                    /* on: an enum exports_on; default primary */
    struct store_conf s3;      /* endpoint, region, force-path-style, credentials (s3:// URLs only) */
};

struct dbreg;
struct exports;

/* The scheduler's clock: wall-clock microseconds since the epoch (UTC). */
typedef int64_t (*exports_clock_fn)(void *arg);

/* Create the scheduler for jobs[0..njobs) (jobs, data_dir and reg are
 * borrowed and must outlive it).  now == NULL uses the real clock (lv_now_us); tests pass a
 * fake one.  Loads each job's saved state from data.dir/exports/NAME.json
 * and computes the first run times; starts no thread.  *out is NULL when
 * there are no jobs.  0 or LV_ECONFIG/LV_ENOMEM with a message in err. */
int exports_new(const struct exports_job *jobs, size_t njobs, const char *data_dir, struct dbreg *reg,
                exports_clock_fn now, void *now_arg,
                struct exports **out, char *err, size_t errlen);

/* Run every job whose next run time is <= now (one attempt each); returns
 * the earliest next run time of all jobs (INT64_MAX if none). */
int64_t exports_run_due(struct exports *x);

/* Start the scheduler thread of x (from exports_new with the real clock);
 * x may be NULL (no jobs).  Call after data.dir/tmp was cleared
 * (dbreg_clear_tmp).  0 or LV_ENOMEM. */
int exports_start(struct exports *x);

/* Stop the thread (if started; waits for a running upload to finish) and free.  NULL is fine. */
void exports_stop(struct exports *x);

/* Per-job status for /status: a JSON array (new reference, caller decrefs;
 * an empty array when x is NULL). */
json_t *exports_status_json(struct exports *x);

/* Append the jobs' Prometheus metrics to *buf (see metrics.h).  x may be NULL.  0 or LV_ENOMEM. */
int exports_metrics(struct exports *x, char **buf, size_t *len, size_t *cap);

#define EXPORTS_STAMP_CHARS 16 /* YYYYMMDDTHHMMSSZ */
#define EXPORTS_STAMP_LEN (EXPORTS_STAMP_CHARS + 1)

/* Parse an export object key.  Format db: "DBNAME/STAMP-txid-N.db" (database
 * name into db of size dbn, *bundle = 0); format tar.zst:
 * "litevault-STAMP.tar.zst" (*bundle = 1, db = "").  stamp gets STAMP.
 * Returns 1 if key is an export, else 0 (the outputs are then unspecified). */
int exports_parse_key(const char *key, char *db, size_t dbn, char stamp[EXPORTS_STAMP_LEN], uint64_t *txid,
                      int *bundle);

#endif /* EXPORTS_H */
