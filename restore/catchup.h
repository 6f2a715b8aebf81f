/*
 * catchup.h -- a node about to become primary takes the records that the
 * archive holds beyond its own log (the archive's tail) before it opens
 * writes, so that a failover loses nothing the archive confirmed.
 * Design: restore/catchup.c.
 *
 * Ownership: options are borrowed for the call; a struct catchup_result is
 * the caller's, with nothing to free.
 */
#ifndef CATCHUP_H
#define CATCHUP_H

#include <stddef.h>
#include <stdint.h>

struct dbreg;
struct archiver_dest;

/* What a catch-up did. */
struct catchup_result {
    size_t dbs;          /* databases looked at (every SQLite database of the registry, and every other
                          * database the archive names) */
    size_t advanced;     /* of those, how many the archive moved forward */
    size_t created;      /* databases this node lacked, created from the archive (catchup_from_archive) */
    uint64_t records;    /* records applied in all */
    uint64_t bytes;      /* segment bytes downloaded */
    size_t skipped;      /* databases the archive could not continue or create (diverged, another database
                          * of the name, renamed or deleted here, missing, damaged: logged) */
    double seconds;      /* wall time */
};

/* For every database of reg (a registry in replica mode whose applier
 * works: dbreg_set_mount done), read the archive's current lineage of it
 * (manifest and tail, as restore does) at the first destination of
 * archive, and apply through dbreg_apply every record after the
 * database's last TXID, verified (chain, checksums, terms) as a replica
 * applies its primary's records.  A database the archive lacks, holds no
 * further than the node, or holds in another history (the records do not
 * continue the node's: a deposed primary's surplus; or they are another
 * database of that name) is left as it is, with a log line, and counted
 * in res->skipped when it is not simply current.  Then every database the
 * archive holds that reg has no database of that name for is created from
 * the archive at its latest TXID with its history (seed_add_to_registry:
 * the archive's database ID, TXID and checksum), unless its records' ID
 * is a local database's (renamed here) or one this node deleted
 * (dbreg_retired_id): skipped, with a warning.  wait_ms bounds each wait
 * for SQLite readers (a database being created has none).  0; or
 * LV_ENOENT / LV_ENET / LV_EIO... when the archive cannot be opened
 * (message in err; nothing applied).  An error on one database after the
 * archive opened is logged and the others go on. */
int catchup_from_archive(struct dbreg *reg, const struct archiver_dest *archive, size_t narchive, int wait_ms,
                         struct catchup_result *res, char *err, size_t errlen);

/* Apply the records in buf (len bytes: records back to back, as in a
 * segment after its header, or as GET /v1/log answers) that come after
 * *txid to database name through dbreg_apply, in batches; *txid advances
 * to the last one applied and *applied counts them.  what names the
 * source in messages.  0 or negative with err (the records before the
 * failing batch stay applied). */
int catchup_apply_records(struct dbreg *reg, const char *name, const char *what, const uint8_t *buf, size_t len,
                          uint64_t *txid, int wait_ms, uint64_t *applied, char *err, size_t errlen);

#endif /* CATCHUP_H */
