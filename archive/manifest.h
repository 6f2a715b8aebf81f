/*
 * manifest.h -- the archive manifest of one database lineage.
 *
 * An archive holds, under <prefix>/<db name>/<database id>/, segment
 * objects (seg/<level>/<first>-<last>.lvseg), snapshot objects
 * (snap/<txid>.lvseg) and one manifest.json listing them.  This module is
 * the in-memory manifest, its JSON encoding and its validation; it does no
 * I/O.  Format: docs/FORMAT.md, "Archive layout and manifest".
 *
 * Invariants kept by every function here (and checked by manifest_decode):
 *   - segs[] sorted by (first_txid, last_txid, level), snaps[] by txid;
 *     hence no two entries share a key (keys are derived from those fields);
 *   - every entry is valid on its own (ranges, key = derived key, sizes);
 *   - manifest_check() adds the cross-entry rules (boundary checksums and
 *     commit times agree wherever two entries describe the same TXID).
 *
 * Ownership: a struct manifest is the caller's; manifest_init/decode fill
 * it and manifest_free releases what it owns (name, arrays).  Not
 * thread-safe: the owner locks.  Pointers to entries stay valid only until
 * the next add/remove/free.
 */
#ifndef MANIFEST_H
#define MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#define MANIFEST_FORMAT 1            /* "format" written and understood */
#define MANIFEST_OBJECT "manifest.json" /* key of the manifest object */
#define MANIFEST_MAX_LEVEL 9         /* compaction levels 0..9 */
#define MANIFEST_KEY_MAX 48          /* bytes for a key incl. NUL ("seg/L/<16>-<16>.lvseg" = 45) */
#define MANIFEST_NAME_MAX 1024       /* longest database name in bytes */
#define MANIFEST_ID_HEX 32           /* hex digits of a database ID */

/* One segment object: a txlog segment image holding TXIDs first..last. */
struct manifest_seg {
    char key[MANIFEST_KEY_MAX]; /* "seg/<level>/<first 16 hex>-<last 16 hex>.lvseg" */
    unsigned level;             /* compaction level, 0..MANIFEST_MAX_LEVEL */
    uint64_t first_txid;        /* TXID of the first record, >= 1 */
    uint64_t last_txid;         /* TXID of the last record, >= first_txid */
    int64_t first_time_us;      /* commit time of the first record (us since epoch) */
    int64_t last_time_us;       /* commit time of the last record, >= first_time_us */
    uint64_t pre_cksum;         /* pre checksum of the first record (database before first_txid) */
    uint64_t post_cksum;        /* post checksum of the last record (database after last_txid) */
    uint64_t size;              /* object bytes */
    uint64_t xxh3;              /* XXH3-64 (seed 0) of the object bytes */
};

/* One snapshot object: a segment image holding one SNAPSHOT record. */
struct manifest_snap {
    char key[MANIFEST_KEY_MAX]; /* "snap/<txid 16 hex>.lvseg" */
    uint64_t txid;              /* TXID of the snapshot record, >= 1 */
    int64_t time_us;            /* its commit time */
    uint32_t page_size;         /* page size, power of two 512..65536 */
    uint32_t db_pages;          /* database size in pages */
    uint64_t db_cksum;          /* database checksum at txid (0 when db_pages is 0) */
    uint64_t size;              /* object bytes */
    uint64_t xxh3;              /* XXH3-64 (seed 0) of the object bytes */
};

struct manifest {
    int format;                 /* MANIFEST_FORMAT */
    char *name;                 /* database name, relative path (owned) */
    char dbid[MANIFEST_ID_HEX + 1];      /* database ID, 32 lower-case hex */
    char prev_dbid[MANIFEST_ID_HEX + 1]; /* previous lineage's ID, "" if none */
    uint64_t prev_txid;         /* TXID of the previous lineage this one continues from (0: unknown) */
    int64_t created_us;         /* when this lineage's archive was created */
    uint64_t generation;        /* +1 on every write of the manifest object (the writer bumps it) */
    struct manifest_seg *segs;  /* segments, sorted (owned) */
    size_t nsegs, segs_cap;     /* used / allocated entries */
    struct manifest_snap *snaps;/* snapshots, sorted by txid (owned) */
    size_t nsnaps, snaps_cap;   /* used / allocated entries */
};

/* Start an empty manifest for database name (copied) with ID dbid_hex (32
 * lower-case hex), created at created_us, generation 0.  0, LV_EINVAL
 * (bad name or ID, nothing allocated) or LV_ENOMEM. */
int manifest_init(struct manifest *m, const char *name, const char *dbid_hex, int64_t created_us);

/* Release what m owns and zero it (safe on a zeroed or freed manifest). */
void manifest_free(struct manifest *m);

/* Build the canonical keys into buf (>= MANIFEST_KEY_MAX bytes); returns buf. */
char *manifest_seg_key(char *buf, unsigned level, uint64_t first_txid, uint64_t last_txid);
char *manifest_snap_key(char *buf, uint64_t txid);

/* Add a copy of *s.  s->key may be "" (derived) or must equal the derived
 * key.  0, LV_EINVAL (invalid entry; a message goes to the debug log),
 * LV_EEXIST (same key present) or LV_ENOMEM.  Cross-entry rules are not
 * checked here: see manifest_check. */
int manifest_add_segment(struct manifest *m, const struct manifest_seg *s);
int manifest_add_snapshot(struct manifest *m, const struct manifest_snap *s);

/* Remove the segment or snapshot with this key.  0 or LV_ENOENT. */
int manifest_remove(struct manifest *m, const char *key);

/* Entry with this key (borrowed), or NULL. */
const struct manifest_seg *manifest_find_segment(const struct manifest *m, const char *key);
const struct manifest_snap *manifest_find_snapshot(const struct manifest *m, const char *key);

/* 1 if s is a database ID: exactly MANIFEST_ID_HEX lower-case hex digits. */
int manifest_id_ok(const char *s);

/* Database checksum just after TXID x as m states it (the post checksum of
 * a segment ending at x, or the checksum of a snapshot at x): 1 and *ck, or
 * 0 when no entry ends at x. */
int manifest_cksum_at(const struct manifest *m, uint64_t x, uint64_t *ck);

/* Largest TXID held by any segment or snapshot; 0 when empty. */
uint64_t manifest_last_txid(const struct manifest *m);

/* The newest commit time of any object of m (0 when empty). */
int64_t manifest_last_time(const struct manifest *m);

/* manifest_last_txid and the commit time of that TXID (0, 0 when empty). */
void manifest_last(const struct manifest *m, uint64_t *txid, int64_t *time_us);

/* Newest snapshot with txid <= txid (borrowed), or NULL.  O(log n). */
const struct manifest_snap *manifest_snapshot_at(const struct manifest *m, uint64_t txid);

/* Total object bytes listed (segments and snapshots). */
uint64_t manifest_total_bytes(const struct manifest *m);

/* Whole-manifest validation: every entry, sort order, and that entries
 * describing the same TXID agree (pre/post/snapshot checksums; commit times
 * non-decreasing in TXID order).  0 or LV_ECORRUPT with a message naming
 * the field in err. */
int manifest_check(const struct manifest *m, char *err, size_t errlen);

/* Encode m as canonical JSON with its "checksum" field, plus "\n".  Runs
 * manifest_check first (LV_EINVAL with the message in err if it fails).
 * Does not change m: writers increment m->generation before encoding a
 * manifest they are going to store.  *out is malloc'ed (caller frees), *len
 * its length without a terminator (the buffer is NUL-terminated too). */
int manifest_encode(const struct manifest *m, char **out, size_t *len, char *err, size_t errlen);

/* Decode and validate len bytes of JSON into *m (uninitialised on entry;
 * on failure m is left zeroed and owns nothing).  0; LV_ECORRUPT with a
 * message naming the field (or the checksum) in err; LV_EVERSION for a
 * format newer than MANIFEST_FORMAT; LV_ENOMEM. */
int manifest_decode(const void *buf, size_t len, struct manifest *m, char *err, size_t errlen);

#endif /* MANIFEST_H */
