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

struct config;
struct dbreg;
struct archiver;
struct config_archive;
struct store_opts;

/* Open every destination of cfg->archive and start one thread per
 * destination plus the local-log monitor.  *out is NULL (and 0 returned)
 * when no destination is configured.  A destination URL that cannot be
 * opened is a configuration error: LV_ECONFIG with a message in err. */
/* Store options of archive destination c (strings borrowed from c): its
 * endpoint, region, addressing, credentials and parallelism; the rest 0
 * (the store's defaults).  Used by the archiver and by restore/archive
 * commands that read their destination from the config. */
void archiver_store_opts(const struct config_archive *c, struct store_opts *o);

int archiver_start(const struct config *cfg, struct dbreg *reg, struct archiver **out, char *err, size_t errlen);

/* Stop the threads (an upload in progress finishes or fails first; each
 * destination then stores the manifests that lag behind their segments),
 * close the stores, free. */
void archiver_stop(struct archiver *a);

/* Append Prometheus metrics (per destination and database) to *buf (see metrics.h).  0 or LV_ENOMEM. */
int archiver_metrics(struct archiver *a, char **buf, size_t *len, size_t *cap);

/* JSON array describing every destination and its databases (malloc'ed,
 * caller frees); "[]" when a is NULL; NULL on ENOMEM. */
char *archiver_status_json(struct archiver *a);

#endif /* ARCHIVER_H */
