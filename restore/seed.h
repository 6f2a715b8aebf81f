/*
 * seed.h -- seeding a node's data.dir from an archive (`litevault restore
 * --seed`, and a replica's first start).
 *
 * seed_run rebuilds every database of the archive (or one) with the
 * restore engine (restore/restore.h: plan, parallel fetch, verified apply)
 * into a staging directory data.dir/tmp/seed, then installs them all
 * (capture/db.h, db_seed_install): data.dir/files/NAME is the database at
 * the archive's TXID T, and its metadata makes the daemon load it at T with
 * the archive's database ID and checksum, no reconcile record and no
 * snapshot; its next record is TXID T+1.  A replica then asks its primary
 * only for the records after T.  Design: restore/seed.c.
 *
 * Ownership: options are borrowed for the call; a struct seed_result is
 * the caller's and seed_result_free releases what it owns.
 */
#ifndef SEED_H
#define SEED_H

#include <stddef.h>
#include <stdint.h>

#include "archive/manifest.h"
#include "restore/plan.h"

struct archiver_dest;
struct store_opts;

/* What to seed and where. */
struct seed_opts {
    const char *data_dir;         /* data.dir to fill */
    const char *url;              /* archive URL (store_open syntax) */
    const struct store_opts *sopts; /* store options, may be NULL */
    const char *db;               /* one database (added to a data.dir that lacks it), NULL: every database
                                   * of the archive (the data.dir must hold none) */
    struct plan_target target;    /* latest; a TXID or a time only with db */
    int parallel;                 /* download workers per database, 0 = 4 */
    int progress;                 /* draw restore's progress bar on stderr */
    int if_empty;                 /* data.dir already holds a database: do nothing (skipped), no error */
};

/* One seeded database. */
struct seed_db {
    char *name;                   /* database name (owned) */
    char lineage[MANIFEST_ID_HEX + 1]; /* archive lineage it came from */
    char id[MANIFEST_ID_HEX + 1]; /* its database ID (hex) */
    uint64_t txid;                /* T: the TXID it was seeded at */
    int64_t time_us;              /* T's commit time */
    uint64_t cksum;               /* database checksum at T */
    uint32_t page_size, db_pages; /* geometry at T */
    uint64_t bytes;               /* bytes downloaded for it */
    double seconds;               /* time its restore took */
};

struct seed_result {
    int skipped;                  /* 1: if_empty and data.dir held a database (in `held`); nothing done */
    char held[256];               /* skipped: a file data.dir/files holds */
    struct seed_db *dbs;          /* seeded databases, sorted by name (owned) */
    size_t n;                     /* their number (0: the archive holds no database) */
    uint64_t bytes;               /* bytes downloaded in all */
    double seconds;               /* wall time */
};

/* Seed o->data_dir from the archive at o->url.  Takes data.dir's lock (a
 * running daemon: LV_EBUSY).  Without o->db, a data.dir whose files/ holds
 * anything is refused (LV_EEXIST; with if_empty: skipped, 0); with o->db, a
 * data.dir already holding that database is refused (LV_EEXIST).  Either
 * every database is installed or none: on any failure (unknown database,
 * damage: LV_ECORRUPT..., network) the databases installed by this call are
 * removed again and the staging directory is emptied.  0 or negative
 * LV_E* with a message in err naming the database, object and TXID as
 * restore does. */
int seed_run(const struct seed_opts *o, struct seed_result *res, char *err, size_t errlen);

/* What the daemon calls at start-up, before it opens the registry (see
 * the design comment of seed.c): when this node is a replica (is_replica)
 * with seeding on (seed_enabled, replication.seed) and an archive
 * (narchive > 0: the first destination is used) and data_dir holds no
 * database, seed every database from the archive.  Otherwise, or when the
 * archive holds no database, nothing is done (res->n == 0, res->skipped
 * when data.dir held a database).  0, or seed_run's error (message in
 * err; nothing is left installed). */
int seed_if_empty(const char *data_dir, const struct archiver_dest *archive, size_t narchive, int is_replica,
                  int seed_enabled, struct seed_result *res, char *err, size_t errlen);

struct dbreg;
struct store;

/* Names of every database the archive st holds (one LIST: keys
 * <name>/current.json and <name>/<id>/manifest.json), sorted and unique,
 * into *names and *n: a malloc'ed array of malloc'ed strings, the caller's
 * (seed_names_free).  0, or the LIST's error with a message in err. */
int seed_archive_names(struct store *st, char ***names, size_t *n, char *err, size_t errlen);

/* Free names[0..n) and the array (NULL: nothing). */
void seed_names_free(char **names, size_t n);

/* Seed one database into a running registry (a promotion adding what
 * only the archive holds: restore/catchup.c).  Database name, which reg
 * lacks, is restored from lineage `lineage` (32 hex; NULL: the current
 * one) of the archive at url (so may be NULL) at its latest TXID, verified
 * as restore verifies, into the staging directory data.dir/tmp/seed-running
 * (removed afterwards; one call at a time per data.dir; what a crash
 * leaves there the next call removes first), and installed with
 * dbreg_seed_add: the archive's
 * database ID, TXID and checksum, no record written; reg serves it at once.
 * want_id (may be NULL): the database ID the records must carry, else
 * LV_EMISMATCH and nothing is installed.  *out gets what was seeded (its
 * name malloc'ed: free it; NULL on failure).  0, or negative LV_E* with a
 * message in err naming the database, object and TXID (nothing installed,
 * except for dbreg_seed_add's LV_EBROKEN). */
int seed_add_to_registry(struct dbreg *reg, const char *url, const struct store_opts *so, const char *name,
                         const char *lineage, const uint8_t want_id[16], struct seed_db *out, char *err,
                         size_t errlen);

/* Release what res owns (safe on a zeroed or failed result). */
void seed_result_free(struct seed_result *res);

#endif /* SEED_H */
