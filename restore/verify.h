/*
 * verify.h -- `archive verify`: check every object of one lineage.
 *
 * Reads the lineage's manifest (a manifest that fails to decode is itself
 * reported as the bad object), downloads every segment and snapshot it
 * lists (in parallel, bounded memory: restore/fetch.h) and checks each
 * object's size and XXH3-64, every record (header and payload checksums,
 * TXID continuity and checksum chain within the object), the object's
 * first/last TXID, boundary checksums and commit times against the
 * manifest, each snapshot's content checksum (XOR of its page checksums)
 * against db_checksum, and across objects: records of overlapping
 * objects agree (pre/post checksums and commit time per TXID) and the
 * chain continues across object boundaries.  Rules: docs/FORMAT.md,
 * "Verifying an archive".
 *
 * Ownership: a struct verify_result is the caller's; verify_result_free
 * releases its arrays.
 */
#ifndef VERIFY_H
#define VERIFY_H

#include <stddef.h>
#include <stdint.h>

struct store_opts;

/* One object that failed. */
struct verify_bad {
    char key[1200];  /* full store key */
    char why[700];   /* what failed (names the TXID when known) */
};

struct verify_result {
    char dbid[33];            /* lineage verified */
    int lineage_listed;       /* 1: found by LIST (no current.json) */
    size_t tail;              /* objects not yet named by the manifest (found by one LIST; included below) */
    uint64_t manifest_txid;   /* last TXID the manifest itself names */
    size_t objects;           /* objects checked (segments + snapshots) */
    size_t segments, snapshots; /* of which */
    uint64_t bytes;           /* bytes downloaded */
    uint64_t records;         /* records checked */
    uint64_t first_txid, last_txid; /* TXID range listed */
    struct verify_bad *bad;   /* failures (owned) */
    size_t nbad;              /* count; 0 = archive verified */
    double seconds;           /* wall time */
};

/* Verify lineage `lineage` (NULL: current) of database db at url.  0 when
 * the verification ran (res->nbad says whether anything is bad), else a
 * negative LV_E* with a message in err (unknown database, store
 * unreachable). */
int verify_lineage(const char *url, const struct store_opts *sopts, const char *db, const char *lineage,
                   int parallel, struct verify_result *res, char *err, size_t errlen);

/* Release what res owns. */
void verify_result_free(struct verify_result *res);

#endif /* VERIFY_H */
