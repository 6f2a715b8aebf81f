/*
 * restore.h -- point-in-time restore of a database from an archive.
 *
 * restore_run finds the lineage (<db>/current.json, else a LIST of <db>/),
 * reads and checks its manifest, extends it with the tail of level-0
 * segments stored after it (one LIST, archive/tail.h), plans
 * (restore/plan.h), downloads the
 * planned objects in parallel with bounded memory (restore/fetch.h),
 * applies them in order to PATH.tmp with full verification (record
 * checksums, TXID continuity, pre/post chain, final database checksum;
 * src/txlog.h txlog_apply_*), runs PRAGMA integrity_check, and publishes
 * PATH atomically.  Algorithm and checks: docs/FORMAT.md, "Restore".
 *
 * Ownership: options are borrowed for the call; a struct restore_result is
 * the caller's and restore_result_free releases what it owns.
 */
#ifndef RESTORE_H
#define RESTORE_H

#include <stddef.h>
#include <stdint.h>

#include "archive/manifest.h"
#include "restore/plan.h"

struct cksum_map;
struct store;
struct store_opts;

/* What to restore and how. */
struct restore_opts {
    const char *url;              /* archive destination URL (store_open syntax) */
    const struct store_opts *sopts; /* store options, may be NULL */
    const char *db;               /* database name in the archive */
    const char *lineage;          /* database ID (32 hex) to use, NULL: current */
    struct plan_target target;    /* latest, a TXID or a time */
    const char *out_path;         /* PATH to create (not needed for dry_run) */
    int parallel;                 /* download workers, 0 = 4 */
    uint64_t mem_budget;          /* bytes of downloaded objects held at once, 0 = 256 MiB */
    int force;                    /* replace a non-empty PATH; remove stale PATH-wal/-shm */
    int if_not_exists;            /* PATH exists: do nothing, succeed */
    int allow_partial;            /* on damage, restore the last verifiable TXID before it */
    int no_integrity_check;       /* skip PRAGMA integrity_check */
    int dry_run;                  /* plan only, download nothing */
    int progress;                 /* draw a progress bar on stderr */
    int strict;                   /* a time target after the last archived commit is an error (LV_ENOENT) */
    struct cksum_map *map_out;    /* if set (initialised by the caller): on success, the page checksums of the
                                   * restored file, so that seeding does not read the file again (the caller
                                   * frees it with cksum_map_free, whatever the result) */
};

/* One planned object (dry run and results). */
struct restore_obj {
    char key[MANIFEST_NAME_MAX + MANIFEST_ID_HEX + MANIFEST_KEY_MAX + 4]; /* full key */
    uint64_t size;                /* bytes */
    int snapshot;                 /* 1: snapshot object */
    int tail;                     /* 1: a level-0 segment not yet named by the manifest (archive/tail.h) */
    uint64_t first_txid, last_txid; /* TXIDs held */
};

struct restore_result {
    int skipped;                  /* 1: --if-db-not-exists and PATH existed; nothing done */
    char dbid[MANIFEST_ID_HEX + 1]; /* lineage used */
    uint8_t rec_dbid[16];         /* database ID the applied records carry (the lineage's, unless it was derived
                                   * after a divergence: docs/FORMAT.md); valid when txid > 0 */
    int lineage_listed;           /* 1: found by LIST (no current.json) */
    int64_t deleted_us;           /* the archive says this lineage was deleted then (<db>/deleted.json), 0 if not */
    size_t tail_objects;          /* level-0 segments found after the manifest's last TXID (one LIST) */
    uint64_t manifest_txid;       /* last TXID named by the manifest itself */
    struct restore_obj *objs;     /* planned objects in apply order (owned) */
    size_t nobjs;                 /* count */
    uint64_t bytes;               /* their total size */
    uint64_t start_txid;          /* snapshot TXID, 0 for the empty database */
    uint64_t target_min, target_max; /* planned final TXID range (equal unless resolved by time) */
    int64_t target_time_us;       /* dry run: commit time of target_max if known, else 0 */
    uint64_t txid;                /* TXID reached (0 for a dry run) */
    int64_t time_us;              /* its commit time */
    uint64_t cksum;               /* database checksum there */
    uint32_t page_size, db_pages; /* resulting database geometry */
    int partial;                  /* 1: --allow-partial stopped before the target */
    char partial_msg[600];        /* why, and where */
    uint64_t archive_last_txid;   /* last TXID the archive holds (manifest and tail) */
    int64_t archive_last_time_us; /* its commit time */
    int after_end;                /* 1: the time target lies after archive_last_time_us (the latest was restored) */
    double seconds;               /* wall time of the run */
    uint64_t bytes_fetched;       /* bytes downloaded */
};

/* Run a restore (or a dry run).  0 on success (also skipped and partial
 * results); else a negative LV_E* with a message in err naming the URL,
 * database, object key and TXID as relevant: LV_ENOENT (unknown database,
 * empty archive, target not restorable), LV_EEXIST (PATH not empty, or
 * stale -wal/-shm, without force), LV_ECORRUPT/LV_EGAP/LV_ECHAIN/
 * LV_EMISMATCH (damage), LV_ENET, LV_EIO...  No partial output is left, and
 * on failure res owns nothing (restore_result_free is still safe). */
int restore_run(const struct restore_opts *o, struct restore_result *res, char *err, size_t errlen);

/* Release what res owns. */
void restore_result_free(struct restore_result *res);

/* Open the archive at url for reading (so may be NULL): its directory is
 * never created, and a missing directory or bucket is LV_ENOENT with err
 * naming it and saying to check the URL.  *empty (may be NULL) gets 1 when
 * no object is stored under it.  *out is the caller's (store_close). */
int restore_open_archive(const char *url, const struct store_opts *so, struct store **out, int *empty, char *err,
                         size_t errlen);

/* Find the lineage of database db: `want` (32 hex) if given, else the one
 * named by <db>/current.json, else (pointer missing or unreadable) by
 * LIST of <db>/ the lineage whose manifest has the newest commit time
 * (*listed = 1; a warning says so).  out gets the ID.  LV_ENOENT when the
 * database is not in the archive. */
int restore_find_lineage(struct store *st, const char *db, const char *want, char out[MANIFEST_ID_HEX + 1],
                         int *listed, char *err, size_t errlen);

/* Did lineage (32 hex) of database db leave that name (<db>/deleted.json
 * names it, FORMAT.md "Deleted databases")?  1 (*when gets the time, and
 * reason, if not NULL, 16 bytes: "deleted", "renamed", or "" from an
 * object of format 1), 0 (no such object, another lineage, or an
 * unreadable one, which is logged), or a store error. */
int restore_deleted(struct store *st, const char *db, const char *lineage, int64_t *when, char *reason);

/* Download and decode <db>/<dbid>/manifest.json into *m (caller frees
 * with manifest_free), checking it names db and dbid.  LV_ENOENT if
 * missing, LV_ECORRUPT / LV_EVERSION if it fails to decode. */
int restore_load_manifest(struct store *st, const char *db, const char *dbid, struct manifest *m, char *err,
                          size_t errlen);

struct tail_result;

/* Extend m (loaded by restore_load_manifest) with the level-0 segments
 * stored after its last TXID (one LIST of <db>/<dbid>/seg/0/, each object
 * downloaded and verified: archive/tail.h).  *tail is the caller's
 * (tail_result_free).  0, or a LIST error / LV_ENOMEM with err set; a
 * damaged or missing tail object is not an error here: tail->stop. */
int restore_load_tail(struct store *st, const char *db, const char *dbid, struct manifest *m,
                      struct tail_result *tail, char *err, size_t errlen);

#endif /* RESTORE_H */
