/*
 * archiver.h -- the daemon's continuous archiver: ships every database's
 * transaction log to each configured destination (config `archive:`),
 * takes snapshots, compacts, applies retention, prunes the local log and
 * enforces data.max-log-size.  Design: archiver.c, docs/DESIGN.md.
 *
 * Ownership: archiver_start returns an archiver owned by the caller and
 * freed by archiver_stop.  The config and registry are borrowed and must
 * outlive it.  Every function accepts a NULL archiver (no destinations).
 */
#ifndef ARCHIVER_H
#define ARCHIVER_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define ARCHIVER_MAX_LEVELS 9 /* compaction levels above level 0 */

/* One archive destination (archive: list item of the config file, parsed by
 * config.c).  Zero fields mean "the default" until config_load fills the
 * defaults in; strings are owned by the config. */
struct archiver_dest {
    char *url;                  /* url: file:///abs (relative paths resolved like data.dir) or s3://BUCKET/PREFIX?... (required) */
    struct store_conf s3;       /* endpoint, region, force-path-style, credentials */
    int64_t sync_interval_us;   /* sync-interval: default 1s */
    int64_t snapshot_interval_us; /* snapshot-interval: default 24h */
    int64_t retention_us;       /* retention: default 7d */
    int64_t compaction_us[ARCHIVER_MAX_LEVELS]; /* compaction: window of levels 1..n; default [30s, 5m, 1h] */
    size_t ncompaction;         /* levels in compaction_us (0: no compaction) */
    int compaction_set;         /* compaction: was given (possibly empty) */
    int parallel;               /* parallel: connections per destination; default 4 */
    int64_t delete_delay_us;    /* delete-delay: how long objects dropped from the manifest stay readable; default 5m */
    int64_t manifest_interval_us; /* manifest-interval: longest lag of manifest.json behind the uploaded segments; default 1m */
    int64_t shutdown_timeout_us; /* shutdown-timeout: bound of the upload of unconfirmed records at a clean stop; default 30s */
};

struct dbreg;
struct archiver;
struct archiver_dest;
struct store_opts;

/* Store options of archive destination c (strings borrowed from c): its
 * endpoint, region, addressing, credentials and parallelism; the rest 0
 * (the store's defaults).  Used by the archiver and by restore/archive
 * commands that read their destination from the config. */
void archiver_store_opts(const struct archiver_dest *c, struct store_opts *o);

/* Open every destination of dests[0..n) (borrowed, must outlive the
 * archiver; max_log_size is data.max-log-size, 0 for no limit) and start one thread per
 * destination plus the local-log monitor.  *out is NULL (and 0 returned)
 * when no destination is configured.  A destination URL that cannot be
 * opened is a configuration error: LV_ECONFIG with a message in err. */
int archiver_start(const struct archiver_dest *dests, size_t n, int64_t max_log_size, struct dbreg *reg,
                   struct archiver **out, char *err, size_t errlen);

/* Clean stop, once no transaction can be committed any more (after the
 * unmount): each destination uploads every record it has not confirmed and
 * stores its manifests, bounded by its shutdown-timeout, logging what is
 * still missing when the bound is hit; returns when every destination is
 * done.  Then call archiver_stop (which frees). */
void archiver_drain(struct archiver *a);

/* Hold (1) or release (0) the uploads: while held, no destination starts
 * one (one in progress finishes).  A primary whose lease is in doubt holds
 * them, so that records no other node may hold never reach a shared
 * archive.  Any thread; NULL is fine. */
void archiver_hold(struct archiver *a, int hold);

/* Stop the threads (an upload in progress finishes or fails first; each
 * destination then stores the manifests that lag behind their segments),
 * close the stores, free. */
void archiver_stop(struct archiver *a);

/* The retention hook: before pruning the local log of database info up to
 * TXID upto (what every destination confirmed and the state file covers),
 * the monitor asks fn(arg, info, upto) for the TXID to prune up to
 * instead (<= upto; replication keeps the records its replicas still
 * read).  Set once the hook's owner exists; fn NULL removes it (before the
 * owner goes away).  Any thread; a round in progress finishes with the old
 * hook.  A NULL archiver is fine (nothing is pruned without one). */
struct db_info;
typedef uint64_t (*archiver_retain_fn)(void *arg, const struct db_info *info, uint64_t upto);
void archiver_set_retain(struct archiver *a, archiver_retain_fn fn, void *arg);

/* Append Prometheus metrics (per destination and database) to *buf (see metrics.h).  0 or LV_ENOMEM. */
int archiver_metrics(struct archiver *a, char **buf, size_t *len, size_t *cap);

/* JSON array describing every destination and its databases (malloc'ed,
 * caller frees); "[]" when a is NULL; NULL on ENOMEM. */
char *archiver_status_json(struct archiver *a);

#endif /* ARCHIVER_H */
