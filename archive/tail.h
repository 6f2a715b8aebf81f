/*
 * tail.h -- level-0 segments stored but not yet named by the manifest.
 *
 * The archiver uploads one level-0 segment per sync interval and rewrites
 * manifest.json only every manifest-interval (or when something else
 * changes it), so the stored manifest may lag behind the stored segments.
 * Those "tail" objects continue the manifest's chain: the first starts at
 * the manifest's last TXID + 1 and each next one right after the previous.
 * Readers (restore, `archive ls/verify`) and the archiver at start-up find
 * them with one LIST of <db>/<lineage>/seg/0/ and this module: it picks the
 * keys that continue the chain, downloads each, verifies it completely
 * (segment header, every record's header and payload checksum, TXID
 * continuity, the pre/post chain starting from the manifest's last post
 * checksum) and adds it to the in-memory manifest with its real size,
 * XXH3-64, commit times and boundary checksums.  Format: docs/FORMAT.md,
 * "Manifest lag and the tail".
 *
 * Ownership: the store, list and manifest are the caller's; a struct
 * tail_result is the caller's and tail_result_free releases its array.
 */
#ifndef ARCHIVE_TAIL_H
#define ARCHIVE_TAIL_H

#include <stddef.h>
#include <stdint.h>

#include "archive/manifest.h"

struct store;
struct store_list;

/* Why the tail stopped. */
enum tail_stop {
    TAIL_END = 0,  /* no further level-0 object continues the chain (normal) */
    TAIL_GAP = 1,  /* later level-0 objects exist but TXIDs gap_first..gap_last are in none */
    TAIL_BAD = 2,  /* the next object is missing, unreadable or fails verification */
};

struct tail_result {
    uint64_t manifest_last;           /* last TXID the manifest named before */
    uint64_t last_txid;               /* last TXID after the tail (== manifest_last when none) */
    int64_t last_time_us;             /* its commit time (0 when no tail) */
    char (*keys)[MANIFEST_KEY_MAX];   /* tail objects added, in TXID order (owned) */
    size_t n;                         /* count */
    uint64_t bytes;                   /* their total size */
    enum tail_stop stop;              /* why it stopped */
    char bad_key[MANIFEST_KEY_MAX];   /* TAIL_BAD: the object; TAIL_GAP: the first object after the gap */
    uint64_t gap_first, gap_last;     /* TXIDs not restorable from the tail (TAIL_GAP or TAIL_BAD) */
    size_t nbeyond;                   /* level-0 tail candidates after the stop, not added */
    char msg[700];                    /* TAIL_GAP / TAIL_BAD: what and where, naming the object and TXID */
};

/* Extend m with the tail found in list l (a LIST whose keys start with
 * prefix "<db>/<lineage>/"; other keys are ignored).  Each candidate is
 * downloaded once (st) and verified.  max_txid (0: none) bounds the TXIDs
 * accepted (the archiver passes the local TXID).  0 (also when the tail
 * stops at damage: see res->stop), or LV_ENOMEM.  A store error while
 * downloading is reported as TAIL_BAD with the error in res->msg. */
int tail_adopt(struct store *st, const char *prefix, const struct store_list *l, struct manifest *m,
               uint64_t max_txid, struct tail_result *res);

/* LIST "<prefix>seg/0/" and tail_adopt.  0, LV_ENOMEM, or the store
 * error of the LIST (message in err). */
int tail_load(struct store *st, const char *prefix, struct manifest *m, struct tail_result *res, char *err,
              size_t errlen);

/* Is rel (a key relative to the lineage) one of res's tail objects? */
int tail_contains(const struct tail_result *res, const char *rel);

/* Release res's array and zero it. */
void tail_result_free(struct tail_result *res);

#endif /* ARCHIVE_TAIL_H */
