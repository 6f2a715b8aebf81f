/*
 * archiver.c -- continuous archive of every database's log to each
 * destination of `archive:` (layout and manifest: docs/FORMAT.md,
 * "Archive layout and manifest"; design: docs/DESIGN.md, "Archiver").
 *
 * THREADS
 *   - one thread per destination (struct adest).  It alone talks to its
 *     store and owns the manifests of that destination, so a slow or
 *     unreachable destination delays nobody else.  Capture (db.c) never
 *     waits for it: it only reads the local log.
 *   - one monitor thread: prunes the local log of what every destination
 *     has confirmed, and enforces data.max-log-size.
 *
 * PER DATABASE, PER DESTINATION (struct adb, state machine)
 *   States: NEW (!loaded), READY and clean (loaded, !dirty), READY and
 *   DIRTY (loaded, dirty: the cached manifest is ahead of the stored one;
 *   URGENT when it must be stored at once).  Moves: lineage_open NEW ->
 *   READY (DIRTY+URGENT for a new lineage); mark_dirty -> DIRTY[/URGENT];
 *   put_manifest DIRTY -> clean; publish_confirmed publishes `confirmed`.
 *   Invariants, checked by assert_adb_state at each of these moves:
 *     L1. NEW is never dirty or urgent (nothing to store before a lineage).
 *     L2. urgent implies dirty.
 *     L3. READY: the cached manifest is of this database and of its
 *         lineage (m.name == name, m.dbid == lineage).
 *     L4. READY: confirmed <= the cached manifest's last TXID (the cache is
 *         never behind what was published as confirmed).
 *   NEW --open lineage (GET current.json, GET manifest)--> READY
 *   READY, every sync-interval, if the database's TXID > archived:
 *       segment image confirmed+1..txid (txlog_segment_image) --PUT-->
 *       seg/0/<first>-<last>.lvseg; confirmed = last.  That is the only
 *       request of a writing database's interval: the in-memory manifest
 *       gets the segment and becomes "dirty" (ahead of the stored one).
 *       The cached manifest is the source of truth: no LIST in steady
 *       state, idle databases cost no request.
 *       When confirmed+1 is no longer in the local log (a new lineage, a
 *       destination added later), a snapshot is uploaded first.
 *   READY, manifest.json (generation+1) --PUT--> when the manifest has
 *       lagged behind the stored segments for manifest-interval (default
 *       1m), at once after any other change ("urgent": snapshot,
 *       compaction, retention, lineage start, adoption), and at a clean
 *       shutdown (end of the destination's thread, in archiver_stop).
 *   READY, snapshot-interval elapsed and the database changed: snapshot.
 *   READY, compaction and retention are decided from the manifest alone.
 *   A failed step keeps the in-memory change and retries with exponential
 *   backoff (capped at 10 s); warnings are rate-limited.
 *
 * WRITE ORDER (crash safety): an object is PUT before a manifest naming it;
 * a manifest no longer naming an object is PUT before the object is
 * deleted; keys are never reused for different content (segment and
 * compacted objects are deterministic: a fresh header whose creation time
 * is the first record's commit time, then records copied byte for byte).
 * After a crash the stored manifest may lag behind the stored level-0
 * segments (at most manifest-interval of them): when the lineage is
 * opened at start-up, one LIST of the lineage finds them; those that
 * continue the manifest's chain are downloaded, verified and ADOPTED
 * (archive/tail.c), the manifest is stored at once, and only the other
 * unreferenced objects are swept (deleted).  Restore and `archive
 * ls/verify` find the same tail the same way, so a confirmed TXID is
 * restorable whether or not the manifest lists it yet.
 * Objects dropped by compaction or retention are deleted delete-delay
 * later (default 5 min), so a restore that read the previous manifest can
 * still fetch everything it names.  A queued deletion is cancelled when the same
 * key is stored again meanwhile (a re-upload reproducing a swept key).
 *
 * LINEAGE.  Objects live under <name>/<lineage>/.  The lineage is the
 * database ID in hex.  If the archive's manifest for that ID disagrees with
 * the local log (the archive is ahead of the log, or the post checksum of
 * its last TXID differs from the local record's), the archive is not
 * touched: the database continues in a derived lineage, 32 hex digits of
 * XXH3-128("<id>-2") (then -3, ...), whose manifest has that derived ID as
 * database_id and the original ID as "previous" (its records still carry
 * the original ID).  <name>/current.json
 * ({"dbid":"<lineage>","format":1,"updated":"<RFC3339>"}, the format of
 * archive/current.c) names the newest
 * lineage; it is written when a lineage is created or when it is missing.  A lineage
 * created while current.json names another database ID records that ID in
 * the manifest's "previous" (with its last TXID, when readable).
 *
 * COMPACTION (levels W1 < W2 < ..., config `compaction`): a run of >= 2
 * TXID-consecutive segments of level < L whose first commit times fall in
 * the same W_L-aligned window, once that window has closed, becomes one
 * level-L object holding the same records byte for byte (from the local
 * log when still there, else the downloaded objects concatenated).  No
 * page de-duplication: a record is the only carrier of its TXID's commit
 * time and checksums, so dropping older page versions would lose exact
 * point-in-time restores; compaction only reduces the object count.
 *
 * RETENTION: with S the newest snapshot committed at or before now -
 * retention, every snapshot before S and every segment ending at or before
 * S's TXID is removed (manifest first, objects after).  Without such a
 * snapshot nothing is removed, so at least one snapshot always remains.
 *
 * CLEAN STOP (archiver_drain, called by the daemon once the mount is gone):
 * each destination's thread leaves its loop and DRAINS: for every
 * database it uploads the records not yet confirmed and stores the
 * manifest, retrying failures (100 ms doubling to 2 s), until all are
 * confirmed or archive[].shutdown-timeout (default 30s) has passed; then
 * it logs every database still missing records, and which TXIDs.
 *   A1. The drain starts after the unmount: the TXIDs it reads no longer
 *       move, so "everything confirmed" is a fixed goal.
 *   A2. It ends at the deadline at the latest, plus the request in
 *       progress: sync_segments starts no upload after it (dest_may_work);
 *       a database that succeeded before it is confirmed up to its TXID.
 *   A3. Nothing is confirmed that is not stored, as in steady state; what
 *       is not confirmed stays in the local log for the next start.
 * A stop without archiver_drain (a failed start-up) only stores the
 * manifests that lag behind their segments.
 *
 * DELETED DATABASES: a database's lineage gets <name>/deleted.json when
 * the database goes (FORMAT.md, "Deleted databases"), from two sources:
 *   - the registry's notes (dbreg_deleted_list: written when a database is
 *     deleted or renamed away, kept across crashes and restarts), read at
 *     every round and at the shutdown drain (put_deleted_notes); a note
 *     goes once every destination wrote its tombstone (tomb_confirm, which
 *     counts them in tombs[] under tomb_mu);
 *   - this round's list: a database no longer listed under its name and
 *     ID (drop_unseen), when its note was not handled yet.
 * A failed PUT is retried at the next round while the note exists.
 *
 * LOCAL RETENTION: the monitor prunes each local log up to the smallest
 * TXID every destination confirmed (and the state file covers), moved back
 * by the retention hook when one is set (archiver_set_retain: replication
 * keeps what its replicas still read, within replication.max-retain).
 *
 * LOCKING: adest.mu guards each adb's published numbers (confirmed, pending,
 * errors) and the adb array; the manifests and everything else in an adb
 * are touched only by the destination's thread.  The threads are workers
 * (base/worker.h): each naps on its own worker and checks its own stop
 * flag; archiver_stop asks them all, then joins each.  retain_mu guards the
 * retention hook and is held while the monitor calls it (so clearing the
 * hook waits for a call in progress); the hook takes its owner's locks and
 * never calls back into the archiver.  No two locks of this file are ever
 * held together.
 */
#include "archive/archiver.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>

#include "capture/db.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "archive/current.h"
#include "archive/manifest.h"
#include "base/metrics.h"
#include "store/store.h"
#include "base/sys.h"
#include "base/worker.h"
#include "archive/tail.h"
#include "log/txlog.h"

#define SEG_MAX_BYTES (64ull << 20)   /* bound of one level-0 object while catching up */
#define COMPACT_MAX_BYTES (256ull << 20) /* bound of one compacted object (it is built in memory) */
#define BACKOFF_MAX_US (10LL * 1000000)
#define WARN_EVERY_US (30LL * 1000000)
#define IMAGE_TIMEOUT_MS 30000
#define SNAP_CHUNK (1u << 20)

/* One database at one destination. */
struct adb {
    char name[1024];            /* database name (immutable) */
    uint8_t id[16];             /* database ID (immutable) */
    char idhex[33];             /* its hex form */
    char lineage[48];           /* directory under name/: idhex or idhex-N (thread) */
    struct manifest m;          /* cached manifest of the lineage (thread) */
    int loaded;                 /* m is valid (thread) */
    int dirty;                  /* m has changes not yet stored (thread) */
    int urgent;                 /* among them a change other than new level-0 segments: store it at once (thread) */
    int64_t lag_since_mono;     /* when m first got a change not yet stored (monotonic us; valid if dirty) (thread) */
    int seen;                   /* listed in the current round (thread) */
    int tomb_check;             /* lineage opened: name/deleted.json must not name it (clear_deleted) (thread) */
    int failures;               /* consecutive failed steps (thread) */
    int64_t next_try_mono;      /* backoff: no attempt before (thread) */
    int64_t last_warn_mono;     /* rate limit of warnings (thread) */
    int64_t last_snap_us;       /* commit time of the newest snapshot, or lineage creation (thread) */
    uint64_t last_snap_txid;    /* its TXID (thread) */
    /* Published (adest.mu): */
    uint64_t confirmed;         /* last TXID stored and named by a stored manifest */
    int64_t confirmed_time_us;  /* its commit time */
    uint64_t txid;              /* local TXID seen in the last round */
    uint64_t pending_bytes;     /* estimated local log bytes not yet confirmed */
    uint64_t errors;            /* failed steps */
    uint64_t snapshots, compactions, retired; /* objects written by kind / deleted by retention */
};

/* An object dropped from a stored manifest, deleted once due. */
struct adel {
    char key[1200];             /* full key */
    int64_t due_mono;           /* delete at or after (monotonic us) */
};

/* A registry note of a database that left a name (dbreg_deleted), and
 * the destinations that wrote its tombstone. */
struct atomb {
    char key[56];               /* the note's key (dbreg_deleted_key: ID and name) */
    uint64_t done;              /* bit i: destination i wrote name/deleted.json (or found it listed again) */
};

/* One destination. */
struct adest {
    struct archiver *a;         /* owner (immutable) */
    int idx;                    /* position in archive: (immutable) */
    const struct archiver_dest *cfg; /* its configuration (immutable) */
    struct store *store;        /* the store (thread-safe) */
    struct worker *th;          /* its thread (archiver_start/archiver_stop), NULL if not started */
    struct worker *self;        /* the same worker, as its own thread knows it (thread) */
    pthread_mutex_t mu;         /* guards dbs, ndbs, the published adb fields, up, errors, last_error */
    struct adb **dbs;           /* databases seen */
    size_t ndbs, cap;
    int up;                     /* the last step succeeded */
    uint64_t errors;            /* failed steps, all databases */
    char last_error[256];       /* last failure, for /status */
    struct adel *dels;          /* deletions waiting for delete-delay (thread only) */
    size_t ndels, dels_cap;
    int64_t drain_deadline;     /* clean stop: keep uploading until (monotonic us); 0 before the drain (thread) */
    int64_t tomb_warn_mono;     /* rate limit of put_deleted_notes' warnings (thread) */
    int64_t tomb_next_try_mono; /* put_deleted_notes: no attempt before (monotonic us) after a failure (thread) */
    int64_t tomb_back_us;       /* its backoff, doubling to BACKOFF_MAX_US; 0 after a success (thread) */
};

struct archiver {
    int64_t max_log_size;       /* data.max-log-size in bytes, 0 for no limit (immutable) */
    struct dbreg *reg;          /* borrowed */
    char tmpdir[PATH_MAX];      /* data.dir/tmp */
    struct adest *dests;        /* destinations (immutable after archiver_start) */
    size_t ndests;
    struct worker *mon;         /* monitor thread (archiver_start/archiver_stop), NULL if not started */
    uint64_t log_bytes;         /* local log bytes, all databases (atomic) */
    int log_full;               /* writes refused (atomic) */
    uint64_t pruned_bytes;      /* bytes pruned since start (atomic) */
    int drain;                  /* archiver_drain was called: the threads upload everything before exiting (atomic) */
    int held;                   /* archiver_hold: no upload starts (atomic) */
    pthread_mutex_t retain_mu;  /* guards retain_fn/retain_arg; held by the monitor while it calls the hook */
    pthread_mutex_t tomb_mu;    /* guards tombs, ntombs, tombs_cap */
    struct atomb *tombs;        /* deleted databases' notes some destination has written (tomb_confirm) */
    size_t ntombs, tombs_cap;
    archiver_retain_fn retain_fn; /* replication's retention hook (archiver_set_retain), NULL if none */
    void *retain_arg;
};

/* ------------------------------------------------------------ helpers */

/* "<name>/<lineage>/<rel>" into buf. */
static const char *okey(char *buf, size_t n, const struct adb *b, const char *rel)
{
    snprintf(buf, n, "%s/%s/%s", b->name, b->lineage, rel);
    return buf;
}

/* Header of local record txid into *h: 0, or LV_ENOENT when it is not in the local log. */
static int local_hdr(const char *logdir, uint64_t txid, struct txlog_hdr *h)
{
    struct txlog_reader *r = NULL;
    int rc = txlog_reader_open(logdir, txid, &r);
    if (rc)
        return rc;
    rc = txlog_reader_next(r, h);
    if (rc == 0 && h->txid != txid)
        rc = LV_ENOENT;
    txlog_reader_close(r);
    return rc;
}

/* L1-L4 of the design comment (compiled out of release builds).  Called on
 * the destination's thread, the only writer of every field it reads. */
static void assert_adb_state(const struct adb *b)
{
    LV_ASSERT(b->loaded || (!b->dirty && !b->urgent)); /* L1 */
    LV_ASSERT(!b->urgent || b->dirty);                  /* L2 */
    LV_ASSERT(!b->loaded || (b->m.name && strcmp(b->m.name, b->name) == 0 &&
                             strcmp(b->m.dbid, b->lineage) == 0)); /* L3 */
    LV_ASSERT(!b->loaded || b->confirmed <= manifest_last_txid(&b->m)); /* L4 */
}

/* The stored manifest of b holds everything up to its last TXID: publish it as confirmed. */
static void publish_confirmed(struct adest *d, struct adb *b)
{
    uint64_t last;
    int64_t t;

    manifest_last(&b->m, &last, &t);
    pthread_mutex_lock(&d->mu);
    b->confirmed = last;
    b->confirmed_time_us = t;
    pthread_mutex_unlock(&d->mu);
    assert_adb_state(b);
}

/* Store the manifest of b (generation + 1).  0 or negative. */
static int put_manifest(struct adest *d, struct adb *b)
{
    char *json = NULL, err[256] = "", key[1200];
    size_t len = 0;
    int rc;

    b->m.generation++;
    rc = manifest_encode(&b->m, &json, &len, err, sizeof err);
    if (rc) {
        LV_ERROR("archive %s: %s: manifest does not encode: %s", store_url(d->store), b->name, err);
        b->m.generation--;
        return rc;
    }
    rc = store_put(d->store, okey(key, sizeof key, b, MANIFEST_OBJECT), json, len);
    free(json);
    if (rc) {
        b->m.generation--;
        return rc;
    }
    b->dirty = 0;
    b->urgent = 0;
    publish_confirmed(d, b); /* asserts the state */
    return 0;
}

/* b->m changed in memory.  urgent: a change other than new level-0
 * segments (snapshot, compaction, retention, lineage, adoption), stored at
 * once; else the manifest may lag up to manifest-interval. */
static void mark_dirty(struct adb *b, int urgent)
{
    if (!b->dirty)
        b->lag_since_mono = lv_mono_us();
    b->dirty = 1;
    if (urgent)
        b->urgent = 1;
    assert_adb_state(b);
}

static int clear_deleted(struct adest *d, const struct adb *b);
static void tomb_unconfirm(struct archiver *a, int idx, const char *key);

/* A lineage just opened: clear_deleted, at each step (and at the shutdown
 * drain) until it worked.  Then this destination holds no tombstone of the
 * database under that name: a note of it leaving the name again must be
 * written again here, whatever this destination did for an earlier one of
 * the same key.  0 or negative. */
static int tomb_step(struct adest *d, struct adb *b)
{
    char key[sizeof ((struct atomb *)0)->key];
    int rc = 0;

    if (b->tomb_check && (rc = clear_deleted(d, b)) == 0) {
        b->tomb_check = 0;
        dbreg_deleted_key(b->name, b->idhex, key, sizeof key);
        tomb_unconfirm(d->a, d->idx, key);
    }
    return rc;
}

/* Write name/current.json (left NULL) or name/deleted.json, left being
 * its reason (ARCHIVE_LEFT_*), naming lineage, stamped when
 * (archive/current.h).  0 or negative. */
static int put_ptr(struct adest *d, const char *name, const char *lineage, const char *left, int64_t when)
{
    struct archive_current c = {.format = ARCHIVE_CURRENT_FORMAT, .updated_us = when};
    struct archive_deleted t = {.format = ARCHIVE_DELETED_FORMAT, .deleted_us = when};
    int deleted = left != NULL;
    char *key = deleted ? archive_deleted_key(name) : archive_current_key(name), *body = NULL;
    size_t len = 0;
    int rc;

    snprintf(c.dbid, sizeof c.dbid, "%s", lineage);
    snprintf(t.dbid, sizeof t.dbid, "%s", lineage);
    if (left)
        snprintf(t.reason, sizeof t.reason, "%s", left);
    if (!key)
        rc = LV_ENOMEM;
    else
        rc = deleted ? archive_deleted_encode(&t, &body, &len) : archive_current_encode(&c, &body, &len);
    if (rc == 0)
        rc = store_put(d->store, key, body, len);
    free(body);
    free(key);
    return rc;
}

static int put_current(struct adest *d, const char *name, const char *lineage)
{
    return put_ptr(d, name, lineage, NULL, lv_now_us());
}

/* GET the small object key into *buf (malloc'ed, caller frees; NULL when
 * the object does not exist).  0, or negative on a store error. */
static int get_ptr(struct adest *d, const char *key, void **buf, size_t *len)
{
    int rc = store_get(d->store, key, 0, 0, buf, len);

    if (rc == LV_ENOENT) {
        *buf = NULL;
        rc = 0;
    }
    return rc;
}

/* Read name/current.json: *lineage gets its dbid ("" if absent or not a
 * valid pointer, which is logged).  0, or negative on a store error. */
static int get_current(struct adest *d, const char *name, char *lineage, size_t n)
{
    struct archive_current c;
    char *key = archive_current_key(name), err[256] = "";
    void *buf = NULL;
    size_t len = 0;
    int rc;

    lineage[0] = '\0';
    if (!key)
        return LV_ENOMEM;
    rc = get_ptr(d, key, &buf, &len);
    if (rc || !buf)
        goto out_free;
    if (archive_current_decode(buf, len, &c, err, sizeof err) == 0 && strlen(c.dbid) < n)
        snprintf(lineage, n, "%s", c.dbid);
    else
        LV_WARN("archive %s: %s is not a valid pointer object (%s); ignoring it", store_url(d->store), key, err);
out_free:
    free(buf);
    free(key);
    return rc;
}

/* The lineage of b is archived under its name (lineage_open pointed
 * current.json at it): a deleted.json naming it (a database deleted, then
 * brought back, or renamed away and back) is removed, so that readers take
 * the name as alive.  One naming another lineage no longer counts.  0 or
 * negative (tried again). */
static int clear_deleted(struct adest *d, const struct adb *b)
{
    struct archive_deleted t;
    char *key = archive_deleted_key(b->name), err[256] = "";
    void *buf = NULL;
    size_t len = 0;
    int rc;

    if (!key)
        return LV_ENOMEM;
    rc = get_ptr(d, key, &buf, &len);
    if (rc || !buf)
        goto out_free;
    if (archive_deleted_decode(buf, len, &t, err, sizeof err) != 0 || strcmp(t.dbid, b->lineage) == 0) {
        rc = store_delete(d->store, key);
        if (rc == 0)
            LV_INFO("archive %s: %s: lineage %s is archived under this name again; removed %s", store_url(d->store),
                    b->name, b->lineage, key);
    }
out_free:
    free(buf);
    free(key);
    return rc;
}

/* Fetch and decode the manifest of lineage under name into *m.  0, LV_ENOENT, LV_ECORRUPT or a store error. */
static int get_manifest(struct adest *d, const char *name, const char *lineage, struct manifest *m)
{
    char key[1200], err[256] = "";
    void *buf = NULL;
    size_t len = 0;
    int rc;

    snprintf(key, sizeof key, "%s/%s/%s", name, lineage, MANIFEST_OBJECT);
    rc = store_get(d->store, key, 0, 0, &buf, &len);
    if (rc)
        return rc;
    rc = manifest_decode(buf, len, m, err, sizeof err);
    free(buf);
    if (rc)
        LV_WARN("archive %s: %s: %s", store_url(d->store), key, err);
    return rc;
}

/* Newest snapshot facts of b->m into last_snap_*. */
static void note_snapshots(struct adb *b)
{
    if (b->m.nsnaps) {
        b->last_snap_us = b->m.snaps[b->m.nsnaps - 1].time_us;
        b->last_snap_txid = b->m.snaps[b->m.nsnaps - 1].txid;
    } else {
        b->last_snap_us = b->m.created_us;
        b->last_snap_txid = 0;
    }
}

static int sweep(struct adest *d, struct adb *b, const struct db_info *info);
static void cancel_delete(struct adest *d, const char *key);

/* Lineage ID of the n-th (n >= 2) history of database ID idhex, into out
 * (33 bytes): 32 hex digits of XXH3-128 of "<idhex>-<n>".  Deterministic,
 * so a restarted daemon finds the same lineage again. */
static void diverged_lineage(const char *idhex, int n, char *out)
{
    char buf[64];
    int len = snprintf(buf, sizeof buf, "%s-%d", idhex, n);
    XXH128_hash_t h = XXH3_128bits(buf, (size_t)len);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
}

/* Find or start the lineage of b in the destination (see LINEAGE above). */
static int lineage_open(struct adest *d, struct adb *b, const struct db_info *info)
{
    char cur[64];
    int rc, n = 1;

    rc = get_current(d, b->name, cur, sizeof cur);
    if (rc)
        return rc;
    for (;;) {
        struct manifest m;
        if (n == 1)
            snprintf(b->lineage, sizeof b->lineage, "%s", b->idhex);
        else
            diverged_lineage(b->idhex, n, b->lineage);
        rc = get_manifest(d, b->name, b->lineage, &m);
        if (rc == LV_ENOENT)
            break;
        if (rc == LV_ECORRUPT || rc == LV_EVERSION) {
            LV_WARN("archive %s: %s: the manifest of lineage %s cannot be read; it is left alone and a new "
                    "lineage is started", store_url(d->store), b->name, b->lineage);
            n++;
            continue;
        }
        if (rc)
            return rc;
        /* Does the archive agree with the local log? */
        uint64_t last = manifest_last_txid(&m), ck = 0;
        struct txlog_hdr h;
        int agree = 1;
        if (strcmp(m.dbid, b->lineage) != 0 || last > info->txid) {
            agree = 0;
        } else if (last > 0 && manifest_cksum_at(&m, last, &ck)) {
            int r = local_hdr(info->logdir, last, &h);
            if (r == 0 && h.post_cksum != ck)
                agree = 0;
            /* r == LV_ENOENT: pruned after it was confirmed; trusted. */
        }
        if (agree) {
            b->m = m;
            b->loaded = 1; /* READY: sweep may adopt the tail (DIRTY) */
            rc = sweep(d, b, info);
            if (rc) {
                manifest_free(&b->m);
                b->loaded = b->dirty = b->urgent = 0; /* back to NEW; tried again */
                return rc;
            }
            note_snapshots(b);
            publish_confirmed(d, b);
            last = manifest_last_txid(&b->m);
            /* current.json names the lineage archived under this name now:
             * after renames it may name another database's (which a
             * note of that one's deletion would then mark deleted). */
            if ((!cur[0] || strcmp(cur, b->lineage) != 0) && (rc = put_current(d, b->name, b->lineage)) != 0)
                return rc;
            b->tomb_check = 1;
            LV_INFO("archive %s: %s: continuing lineage %s at TXID %llu", store_url(d->store), b->name, b->lineage,
                    (unsigned long long)last);
            assert_adb_state(b);
            return 0;
        }
        LV_WARN("archive %s: %s: the archived history in lineage %s (up to TXID %llu) differs from the local "
                "log (local TXID %llu); it is kept untouched and a new lineage is started",
                store_url(d->store), b->name, b->lineage, (unsigned long long)last,
                (unsigned long long)info->txid);
        manifest_free(&m);
        n++;
        if (n > 99)
            return LV_EEXIST;
    }
    /* A new lineage. */
    rc = manifest_init(&b->m, b->name, b->lineage, lv_now_us());
    if (rc)
        return rc;
    if (n > 1) {
        /* A diverged history of this ID: it continues the lineage named by the ID. */
        snprintf(b->m.prev_dbid, sizeof b->m.prev_dbid, "%s", b->idhex);
        LV_WARN("archive %s: %s: this database (ID %s) continues in the new lineage %s; the diverging archived "
                "history stays in lineage %s", store_url(d->store), b->name, b->idhex, b->lineage, b->idhex);
    } else if (cur[0] && strncmp(cur, b->idhex, 32) != 0) {
        struct manifest pm;
        snprintf(b->m.prev_dbid, sizeof b->m.prev_dbid, "%.32s", cur);
        if (get_manifest(d, b->name, cur, &pm) == 0) {
            b->m.prev_txid = manifest_last_txid(&pm);
            manifest_free(&pm);
        }
        LV_WARN("archive %s: %s: the archive holds another database (lineage %s); it is kept and this database "
                "(ID %s) starts a new lineage %s", store_url(d->store), b->name, cur, b->idhex, b->lineage);
    } else {
        LV_INFO("archive %s: %s: starting lineage %s", store_url(d->store), b->name, b->lineage);
    }
    b->loaded = 1;
    mark_dirty(b, 1);
    note_snapshots(b);
    rc = put_manifest(d, b);
    if (rc == 0)
        rc = put_current(d, b->name, b->lineage);
    b->tomb_check = 1;
    return rc;
}

/* Write the image (fd, named img; facts in *ii) as a one-record segment (a
 * SNAPSHOT record) in the directory sdir, through the txlog writer, so
 * memory stays bounded.  0 or negative. */
static int snap_write_segment(const char *sdir, const struct adb *b, const struct db_info *info, int fd,
                              const char *img, const struct db_image_info *ii)
{
    struct txlog *l = NULL;
    struct txlog_tail tail;
    struct txlog_hdr h, lh;
    uint8_t *chunk = NULL;
    char err[512] = "";
    uint32_t per = SNAP_CHUNK / ii->page_size;
    int rc = txlog_open(sdir, b->id, UINT64_MAX / 4, &l, &tail, err, sizeof err);

    if (rc) {
        LV_ERROR("archive: snapshot segment in %s: %s", sdir, err);
        return rc;
    }
    memset(&h, 0, sizeof h);
    h.flags = TXLOG_F_SNAPSHOT;
    h.txid = ii->txid;
    h.time_us = ii->time_us;
    h.page_size = ii->page_size;
    h.db_pages = ii->db_pages;
    h.post_cksum = ii->cksum;
    h.term = ii->term; /* the term of that TXID's record (txlog L10 holds across snapshot and segments) */
    /* The pre checksum is the database before that TXID, when the log still has it. */
    h.pre_cksum = local_hdr(info->logdir, ii->txid, &lh) == 0 ? lh.pre_cksum : 0;
    chunk = malloc(SNAP_CHUNK);
    rc = chunk ? txlog_append_begin(l, &h) : LV_ENOMEM;
    for (uint32_t p = 1; chunk && rc == 0 && p <= ii->db_pages; p += per) {
        uint32_t cnt = ii->db_pages - p + 1 < per ? ii->db_pages - p + 1 : per;
        rc = sys_pread_all(fd, chunk, (size_t)cnt * ii->page_size, (off_t)(p - 1) * ii->page_size, img);
        for (uint32_t i = 0; rc == 0 && i < cnt; i++)
            rc = txlog_append_page(l, p + i, chunk + (size_t)i * ii->page_size);
    }
    if (rc == 0)
        rc = txlog_append_end(l);
    else if (chunk)
        txlog_append_abort(l);
    if (rc == 0)
        rc = txlog_sync(l);
    txlog_close(l);
    free(chunk);
    return rc;
}

/* Upload the snapshot segment spath (of the image *ii) as snap/<txid>.lvseg
 * unless the manifest has it, and store the manifest naming it.  0 or negative. */
static int snap_upload(struct adest *d, struct adb *b, const char *spath, const struct db_image_info *ii)
{
    struct manifest_snap s;
    struct stat st;
    void *map = MAP_FAILED;
    char key[1200];
    int rc = 0, sfd = open(spath, O_RDONLY | O_CLOEXEC);

    if (sfd < 0 || fstat(sfd, &st) != 0) {
        LV_ERROR("archive: open %s: %s", spath, strerror(errno));
        rc = LV_EIO;
        goto out;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, sfd, 0);
    if (map == MAP_FAILED) {
        LV_ERROR("archive: mmap %s: %s", spath, strerror(errno));
        rc = LV_EIO;
        goto out;
    }
    memset(&s, 0, sizeof s);
    s.txid = ii->txid;
    s.time_us = ii->time_us;
    s.page_size = ii->page_size;
    s.db_pages = ii->db_pages;
    s.db_cksum = ii->cksum;
    s.size = (uint64_t)st.st_size;
    s.xxh3 = XXH3_64bits(map, (size_t)st.st_size);
    manifest_snap_key(s.key, s.txid);
    if (manifest_find_snapshot(&b->m, s.key))
        goto out;
    rc = store_put(d->store, okey(key, sizeof key, b, s.key), map, (size_t)st.st_size);
    if (rc)
        goto out;
    cancel_delete(d, key);
    rc = manifest_add_snapshot(&b->m, &s);
    if (rc) {
        LV_ERROR("archive: %s: snapshot at TXID %llu does not fit the manifest (%s)", b->name,
                 (unsigned long long)s.txid, lv_strerror(rc));
        goto out;
    }
    mark_dirty(b, 1);
    rc = put_manifest(d, b);
    if (rc)
        goto out;
    pthread_mutex_lock(&d->mu);
    b->snapshots++;
    pthread_mutex_unlock(&d->mu);
    LV_INFO("archive %s: %s: snapshot at TXID %llu (%llu bytes)", store_url(d->store), b->name,
            (unsigned long long)s.txid, (unsigned long long)s.size);
out:
    if (map != MAP_FAILED)
        munmap(map, (size_t)st.st_size);
    if (sfd >= 0)
        close(sfd);
    return rc;
}

/* Take a snapshot of database b now and add it to the manifest (stored).
 * *txid_out gets its TXID.  The image goes through data.dir/tmp and a
 * one-record segment written by the txlog writer, so memory stays bounded. */
static int take_snapshot(struct adest *d, struct adb *b, const struct db_info *info, uint64_t *txid_out)
{
    struct archiver *a = d->a;
    char img[PATH_MAX + 64], sdir[PATH_MAX + 64], spath[PATH_MAX + 128];
    struct db_image_info ii;
    int fd, rc;

    memset(&ii, 0, sizeof ii);
    snprintf(img, sizeof img, "%s/arch%d-img-XXXXXX", a->tmpdir, d->idx);
    snprintf(sdir, sizeof sdir, "%s/arch%d-snap-XXXXXX", a->tmpdir, d->idx);
    fd = mkstemp(img);
    if (fd < 0) {
        LV_ERROR("archive: mkstemp %s: %s", img, strerror(errno));
        return lv_from_errno(errno);
    }
    if (!mkdtemp(sdir)) {
        LV_ERROR("archive: mkdtemp %s: %s", sdir, strerror(errno));
        rc = lv_from_errno(errno);
        goto out_img;
    }
    rc = dbreg_image(a->reg, b->name, fd, IMAGE_TIMEOUT_MS, &ii, NULL, NULL);
    if (rc) {
        LV_WARN("archive %s: %s: cannot take an image for a snapshot: %s", store_url(d->store), b->name,
                lv_strerror(rc));
        goto out_sdir;
    }
    if (ii.page_size == 0 || ii.db_pages == 0) {
        rc = LV_ENOENT; /* nothing to snapshot yet */
        goto out_sdir;
    }
    rc = snap_write_segment(sdir, b, info, fd, img, &ii);
    snprintf(spath, sizeof spath, "%s/%016" PRIx64 ".lvseg", sdir, ii.txid);
    if (rc == 0)
        rc = snap_upload(d, b, spath, &ii);
    if (rc == 0) {
        note_snapshots(b);
        *txid_out = ii.txid;
    }
    unlink(spath);
out_sdir:
    rmdir(sdir);
out_img:
    close(fd);
    unlink(img);
    return rc;
}

/* Decode first and last record headers of a segment image. */
static int image_ends(const uint8_t *buf, size_t len, struct txlog_hdr *first, struct txlog_hdr *last)
{
    size_t off = TXLOG_SEG_HDR_SIZE;
    int n = 0;
    while (off + TXLOG_HDR_SIZE <= len) {
        struct txlog_hdr h;
        int rc = txlog_hdr_decode(buf + off, &h);
        if (rc)
            return rc;
        if (n++ == 0)
            *first = h;
        *last = h;
        off += TXLOG_HDR_SIZE + h.stored_len + TXLOG_TRAILER_SIZE;
    }
    return n && off == len ? 0 : LV_ECORRUPT;
}

/* May the destination's thread start another upload?  Until it is asked
 * to stop; during the clean-stop drain, until its deadline (A2). */
static int dest_may_work(struct adest *d)
{
    if (!worker_stopping(d->self))
        return 1;
    int64_t dl = __atomic_load_n(&d->drain_deadline, __ATOMIC_ACQUIRE);
    return dl && lv_mono_us() < dl;
}

/* Upload level-0 segments until the archive holds info->txid. */
static int sync_segments(struct adest *d, struct adb *b, const struct db_info *info)
{
    while (dest_may_work(d)) {
        uint64_t from = manifest_last_txid(&b->m) + 1, last = 0, snap = 0;
        void *buf = NULL;
        size_t len = 0;
        char key[1200];
        struct txlog_hdr fh, lh;
        int rc;

        if (from > info->txid)
            return 0;
        rc = txlog_segment_image(info->logdir, b->id, from, info->txid, SEG_MAX_BYTES, &buf, &len, &last);
        if (rc == LV_ENOENT) {
            /* TXID `from` is no longer in the local log: start from a snapshot. */
            LV_INFO("archive %s: %s: TXID %llu is no longer in the local log; uploading a snapshot",
                    store_url(d->store), b->name, (unsigned long long)from);
            rc = take_snapshot(d, b, info, &snap);
            if (rc)
                return rc;
            if (snap < from) {
                LV_ERROR("archive %s: %s: TXID %llu is neither in the local log nor covered by a snapshot",
                         store_url(d->store), b->name, (unsigned long long)from);
                return LV_EGAP;
            }
            continue;
        }
        if (rc)
            return rc;
        rc = image_ends(buf, len, &fh, &lh);
        if (rc) {
            free(buf);
            return rc;
        }
        struct manifest_seg s;
        memset(&s, 0, sizeof s);
        s.level = 0;
        s.first_txid = fh.txid;
        s.last_txid = lh.txid;
        s.first_time_us = fh.time_us;
        s.last_time_us = lh.time_us;
        s.pre_cksum = fh.pre_cksum;
        s.post_cksum = lh.post_cksum;
        s.size = len;
        s.xxh3 = XXH3_64bits(buf, len);
        manifest_seg_key(s.key, 0, s.first_txid, s.last_txid);
        rc = store_put(d->store, okey(key, sizeof key, b, s.key), buf, len);
        if (rc == 0)
            cancel_delete(d, key);
        free(buf);
        if (rc)
            return rc;
        rc = manifest_add_segment(&b->m, &s);
        if (rc && rc != LV_EEXIST) {
            LV_ERROR("archive: %s: segment %s does not fit the manifest (%s)", b->name, s.key, lv_strerror(rc));
            return rc;
        }
        /* Confirmed now: the segment is stored and continues the chain; the
         * manifest follows within manifest-interval (or the next start adopts it). */
        mark_dirty(b, 0);
        publish_confirmed(d, b);
    }
    return 0;
}

/* Bytes of the objects named by keys[0..n), verified against size/xxh3, concatenated as one segment image. */
static int fetch_concat(struct adest *d, struct adb *b, const struct manifest_seg *run, size_t n, void **out,
                        size_t *outlen)
{
    uint8_t *img = NULL;
    size_t used = 0;
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++) {
        char key[1200];
        void *buf = NULL;
        size_t len = 0;
        rc = store_get(d->store, okey(key, sizeof key, b, run[i].key), 0, 0, &buf, &len);
        if (rc)
            break;
        if (len != run[i].size || XXH3_64bits(buf, len) != run[i].xxh3 || len < TXLOG_SEG_HDR_SIZE) {
            LV_ERROR("archive %s: %s: object does not match the manifest (size or xxh3); not compacting",
                     store_url(d->store), key);
            free(buf);
            rc = LV_ECORRUPT;
            break;
        }
        size_t skip = i == 0 ? 0 : TXLOG_SEG_HDR_SIZE;
        uint8_t *ni = realloc(img, used + len - skip);
        if (!ni) {
            free(buf);
            rc = LV_ENOMEM;
            break;
        }
        img = ni;
        memcpy(img + used, (uint8_t *)buf + skip, len - skip);
        used += len - skip;
        free(buf);
    }
    if (rc) {
        free(img);
        return rc;
    }
    *out = img;
    *outlen = used;
    return 0;
}

/* Queue a deletion of full key `key`, due in `delay` us.  Objects are gone
 * from the stored manifest already; the delay lets a restore that read the
 * previous manifest finish.  Out of memory: the object is left (swept later). */
static void queue_delete(struct adest *d, const char *key, int64_t delay)
{
    if (lv_grow((void **)&d->dels, &d->dels_cap, d->ndels, sizeof *d->dels, 16) != 0)
        return;
    snprintf(d->dels[d->ndels].key, sizeof d->dels[d->ndels].key, "%s", key);
    d->dels[d->ndels].due_mono = lv_mono_us() + delay;
    d->ndels++;
}

/* An object was just stored under key: drop a deletion queued for that
 * key (a swept left-over whose key the re-upload reproduced), so the new
 * object, which a manifest is going to name, is never deleted. */
static void cancel_delete(struct adest *d, const char *key)
{
    for (size_t i = 0; i < d->ndels;) {
        if (strcmp(d->dels[i].key, key) == 0) {
            LV_DEBUG("archive %s: %s stored again; its queued deletion is cancelled", store_url(d->store), key);
            d->dels[i] = d->dels[--d->ndels];
        } else {
            i++;
        }
    }
}

/* Delete the queued objects that are due; failures only warn (retried next round). */
static void run_deletes(struct adest *d)
{
    int64_t now = lv_mono_us();
    for (size_t i = 0; i < d->ndels;) {
        if (d->dels[i].due_mono > now) {
            i++;
            continue;
        }
        int rc = store_delete(d->store, d->dels[i].key);
        if (rc) {
            LV_WARN("archive %s: cannot delete %s (%s); it is no longer referenced, retrying later",
                    store_url(d->store), d->dels[i].key, lv_strerror(rc));
            return;
        }
        d->dels[i] = d->dels[--d->ndels];
    }
}

/* Drop objects no stored manifest names any more (after delete-delay). */
static void delete_keys(struct adest *d, struct adb *b, char (*keys)[MANIFEST_KEY_MAX], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char key[1200];
        queue_delete(d, okey(key, sizeof key, b, keys[i]), d->cfg->delete_delay_us);
    }
    run_deletes(d);
}

/* Remove the n objects keys from b's manifest, store it, then queue their
 * deletion (WRITE ORDER: the manifest no longer naming them first) and add
 * by to *counter (a published adb field, d->mu).  0 or negative (the
 * manifest stays dirty and the objects are kept). */
static int drop_objects(struct adest *d, struct adb *b, char (*keys)[MANIFEST_KEY_MAX], size_t n, uint64_t *counter,
                        uint64_t by)
{
    int rc;

    for (size_t i = 0; i < n; i++)
        manifest_remove(&b->m, keys[i]);
    mark_dirty(b, 1);
    rc = put_manifest(d, b);
    if (rc)
        return rc;
    delete_keys(d, b, keys, n);
    pthread_mutex_lock(&d->mu);
    *counter += by;
    pthread_mutex_unlock(&d->mu);
    return 0;
}

/* Start-up sweep of b's lineage (one LIST).  First the tail: level-0
 * segments stored after the last manifest write that continue its chain
 * (archive/tail.c verifies each one completely) are adopted into b->m,
 * as long as they agree with the local log, and the manifest is stored at
 * once.  Other objects the manifest does not name are left-overs of a crash
 * (a segment that does not continue the chain, a compacted object uploaded
 * before its manifest, an object dropped but not yet deleted); they are
 * deleted once delete-delay after their last modification has passed.
 * 0, or the LIST's error (the lineage is opened again later). */
static int sweep(struct adest *d, struct adb *b, const struct db_info *info)
{
    struct store_list l = {0};
    struct tail_result tr;
    char prefix[1200];
    int64_t now = lv_now_us();
    int rc;

    memset(&tr, 0, sizeof tr);
    snprintf(prefix, sizeof prefix, "%s/%s/", b->name, b->lineage);
    rc = store_list(d->store, prefix, &l);
    if (rc) {
        LV_WARN("archive %s: cannot list %s to adopt or sweep left-overs: %s", store_url(d->store), prefix,
                lv_strerror(rc));
        return rc;
    }
    rc = tail_adopt(d->store, prefix, &l, &b->m, info->txid, &tr);
    if (rc) {
        store_list_free(&l);
        return rc;
    }
    if (tr.n) {
        /* The tail must be this database's history: its last record agrees with the local log. */
        struct txlog_hdr h;
        const struct manifest_seg *ls = manifest_find_segment(&b->m, tr.keys[tr.n - 1]);
        if (ls && local_hdr(info->logdir, ls->last_txid, &h) == 0 && h.post_cksum != ls->post_cksum) {
            LV_WARN("archive %s: %s: the segments after the manifest (up to TXID %llu) differ from the local log; "
                    "they are not adopted", store_url(d->store), b->name, (unsigned long long)ls->last_txid);
            for (size_t i = 0; i < tr.n; i++)
                manifest_remove(&b->m, tr.keys[i]);
            tail_result_free(&tr);
        } else {
            LV_INFO("archive %s: %s: adopted %zu segment(s) stored after the last manifest (TXIDs %llu..%llu)",
                    store_url(d->store), b->name, tr.n, (unsigned long long)tr.manifest_last + 1,
                    (unsigned long long)tr.last_txid);
            mark_dirty(b, 1);
        }
    }
    if (tr.stop != TAIL_END)
        LV_WARN("archive %s: %s: %s; the object(s) not continuing the manifest are swept and the records are "
                "uploaded again from the local log", store_url(d->store), b->name, tr.msg);
    for (size_t i = 0; i < l.n; i++) {
        const char *rel = l.v[i].key + strlen(prefix);
        if (strcmp(rel, MANIFEST_OBJECT) == 0 || manifest_find_segment(&b->m, rel) ||
            manifest_find_snapshot(&b->m, rel))
            continue;
        int64_t age = l.v[i].mtime_us ? now - l.v[i].mtime_us : d->cfg->delete_delay_us;
        int64_t left = d->cfg->delete_delay_us - age;
        LV_INFO("archive %s: %s is not named by the manifest (left over by a crash); deleting it%s",
                store_url(d->store), l.v[i].key, left > 0 ? " after delete-delay" : "");
        char key[1200];
        snprintf(key, sizeof key, "%s", l.v[i].key);
        queue_delete(d, key, left > 0 ? left : 0);
    }
    store_list_free(&l);
    tail_result_free(&tr);
    run_deletes(d);
    return 0;
}

/* At most one compaction step for b (see COMPACTION above).  0 or negative. */
static int compact(struct adest *d, struct adb *b, const struct db_info *info)
{
    const struct archiver_dest *c = d->cfg;
    int64_t now = lv_now_us();

    for (size_t L = 1; L <= c->ncompaction && L <= MANIFEST_MAX_LEVEL; L++) {
        int64_t w = c->compaction_us[L - 1];
        size_t i = 0, nseg = b->m.nsegs;
        while (i < nseg) {
            const struct manifest_seg *s = &b->m.segs[i];
            if (s->level >= L) {
                i++;
                continue;
            }
            int64_t bucket = s->first_time_us / w;
            size_t j = i + 1, cnt = 1;
            uint64_t prev_last = s->last_txid, bytes = s->size;
            while (j < nseg && b->m.segs[j].level < L && b->m.segs[j].first_txid == prev_last + 1 &&
                   b->m.segs[j].first_time_us / w == bucket &&
                   bytes + b->m.segs[j].size - TXLOG_SEG_HDR_SIZE <= COMPACT_MAX_BYTES) {
                prev_last = b->m.segs[j].last_txid;
                bytes += b->m.segs[j].size - TXLOG_SEG_HDR_SIZE;
                j++;
                cnt++;
            }
            if (cnt < 2 || (bucket + 1) * w + 2 * c->sync_interval_us > now) {
                i = j;
                continue;
            }
            /* Compact segs[i..j) into one level-L object. */
            struct manifest_seg *run = malloc(cnt * sizeof *run);
            char(*old)[MANIFEST_KEY_MAX] = malloc(cnt * sizeof *old);
            void *buf = NULL;
            size_t len = 0;
            uint64_t last = 0;
            char key[1200];
            int rc;
            if (!run || !old) {
                free(run);
                free(old);
                return LV_ENOMEM;
            }
            memcpy(run, &b->m.segs[i], cnt * sizeof *run);
            for (size_t k = 0; k < cnt; k++)
                memcpy(old[k], run[k].key, MANIFEST_KEY_MAX);
            rc = txlog_segment_image(info->logdir, b->id, run[0].first_txid, run[cnt - 1].last_txid, 0, &buf, &len,
                                     &last);
            if (rc == 0 && last != run[cnt - 1].last_txid) {
                free(buf);
                buf = NULL;
                rc = LV_ENOENT;
            }
            if (rc)
                rc = fetch_concat(d, b, run, cnt, &buf, &len);
            if (rc) {
                free(run);
                free(old);
                return rc;
            }
            struct manifest_seg ns;
            memset(&ns, 0, sizeof ns);
            ns.level = (unsigned)L;
            ns.first_txid = run[0].first_txid;
            ns.last_txid = run[cnt - 1].last_txid;
            ns.first_time_us = run[0].first_time_us;
            ns.last_time_us = run[cnt - 1].last_time_us;
            ns.pre_cksum = run[0].pre_cksum;
            ns.post_cksum = run[cnt - 1].post_cksum;
            ns.size = len;
            ns.xxh3 = XXH3_64bits(buf, len);
            manifest_seg_key(ns.key, ns.level, ns.first_txid, ns.last_txid);
            rc = store_put(d->store, okey(key, sizeof key, b, ns.key), buf, len);
            if (rc == 0)
                cancel_delete(d, key);
            free(buf);
            if (rc == 0 && getenv("LV_TEST_ARCHIVE_COMPACT_DELAY_US")) {
                /* Test seam: widen the window between the compacted object and its manifest. */
                LV_WARN("archive: test seam: %s uploaded, pausing before the manifest", key);
                usleep((useconds_t)atol(getenv("LV_TEST_ARCHIVE_COMPACT_DELAY_US")));
            }
            if (rc == 0) {
                rc = manifest_add_segment(&b->m, &ns);
                if (rc == LV_EEXIST)
                    rc = 0;
            }
            if (rc == 0)
                rc = drop_objects(d, b, old, cnt, &b->compactions, 1);
            if (rc == 0) {
                LV_INFO("archive %s: %s: compacted %zu segments into %s", store_url(d->store), b->name, cnt, ns.key);
            }
            free(run);
            free(old);
            return rc;
        }
    }
    return 0;
}

/* Retention (see RETENTION above).  0 or negative. */
static int retain(struct adest *d, struct adb *b)
{
    int64_t cut = lv_now_us() - d->cfg->retention_us;
    const struct manifest_snap *base = NULL;
    size_t n = 0;
    int rc;

    for (size_t i = 0; i < b->m.nsnaps; i++)
        if (b->m.snaps[i].time_us <= cut)
            base = &b->m.snaps[i];
    if (!base)
        return 0;
    uint64_t bt = base->txid;
    for (size_t i = 0; i < b->m.nsnaps; i++)
        n += b->m.snaps[i].txid < bt;
    for (size_t i = 0; i < b->m.nsegs; i++)
        n += b->m.segs[i].last_txid <= bt;
    if (n == 0)
        return 0;
    char(*old)[MANIFEST_KEY_MAX] = malloc(n * sizeof *old);
    size_t k = 0;
    if (!old)
        return LV_ENOMEM;
    for (size_t i = 0; i < b->m.nsnaps; i++)
        if (b->m.snaps[i].txid < bt)
            memcpy(old[k++], b->m.snaps[i].key, MANIFEST_KEY_MAX);
    for (size_t i = 0; i < b->m.nsegs; i++)
        if (b->m.segs[i].last_txid <= bt)
            memcpy(old[k++], b->m.segs[i].key, MANIFEST_KEY_MAX);
    rc = drop_objects(d, b, old, k, &b->retired, k);
    if (rc == 0) {
        LV_INFO("archive %s: %s: retention removed %zu objects before the snapshot at TXID %llu",
                store_url(d->store), b->name, k, (unsigned long long)bt);
    }
    free(old);
    return rc;
}

/* One round of work for database b.  0 or negative (retried with backoff). */
static int db_step(struct adest *d, struct adb *b, const struct db_info *info)
{
    int rc;

    if (!b->loaded) {
        rc = lineage_open(d, b, info);
        if (rc)
            return rc;
    }
    rc = tomb_step(d, b);
    if (rc)
        return rc;
    if (b->urgent) {
        rc = put_manifest(d, b);
        if (rc)
            return rc;
    }
    rc = sync_segments(d, b, info);
    if (rc)
        return rc;
    if (b->dirty && lv_mono_us() - b->lag_since_mono >= d->cfg->manifest_interval_us) {
        rc = put_manifest(d, b);
        if (rc)
            return rc;
    }
    if (info->txid > b->last_snap_txid && lv_now_us() - b->last_snap_us >= d->cfg->snapshot_interval_us) {
        uint64_t t = 0;
        rc = take_snapshot(d, b, info, &t);
        if (rc == LV_ENOENT)
            rc = 0;
        if (rc)
            return rc;
    }
    rc = compact(d, b, info);
    if (rc)
        return rc;
    return retain(d, b);
}

static struct adb *find_db(struct adest *d, const struct db_info *info, int create)
{
    for (size_t i = 0; i < d->ndbs; i++)
        if (strcmp(d->dbs[i]->name, info->name) == 0 && memcmp(d->dbs[i]->id, info->id, 16) == 0)
            return d->dbs[i];
    if (!create)
        return NULL;
    struct adb *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    snprintf(b->name, sizeof b->name, "%s", info->name);
    memcpy(b->id, info->id, 16);
    lv_hex(info->id, 16, b->idhex);
    pthread_mutex_lock(&d->mu);
    if (lv_grow((void **)&d->dbs, &d->cap, d->ndbs, sizeof *d->dbs, 8) != 0) {
        pthread_mutex_unlock(&d->mu);
        free(b);
        return NULL;
    }
    d->dbs[d->ndbs++] = b;
    pthread_mutex_unlock(&d->mu);
    return b;
}

/* Does this round's list (infos, n) hold database name with ID id? */
static int listed_as(const struct db_info *infos, size_t n, const char *name, const uint8_t id[16])
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(infos[k].name, name) == 0 && memcmp(infos[k].id, id, 16) == 0)
            return 1;
    return 0;
}

/* The index in a->tombs of note key, or a->ntombs (caller holds tomb_mu). */
static size_t tomb_find_locked(const struct archiver *a, const char *key)
{
    size_t i;

    for (i = 0; i < a->ntombs && strcmp(a->tombs[i].key, key) != 0; i++)
        ;
    return i;
}

/* Has destination idx written the tombstone of note key (or found it
 * needs none)?  Destinations past the 64th never remember it. */
static int tomb_done(struct archiver *a, int idx, const char *key)
{
    size_t i;
    int done;

    if (idx >= 64)
        return 0;
    pthread_mutex_lock(&a->tomb_mu);
    i = tomb_find_locked(a, key);
    done = i < a->ntombs && (a->tombs[i].done >> idx & 1);
    pthread_mutex_unlock(&a->tomb_mu);
    return done;
}

/* Forget what the destinations did for note key (the note goes). */
static void tomb_forget(struct archiver *a, const char *key)
{
    pthread_mutex_lock(&a->tomb_mu);
    size_t i = tomb_find_locked(a, key);
    if (i < a->ntombs)
        a->tombs[i] = a->tombs[--a->ntombs];
    pthread_mutex_unlock(&a->tomb_mu);
}

/* Destination idx no longer holds the tombstone of note key (it opened
 * the lineage under that name again, tomb_step). */
static void tomb_unconfirm(struct archiver *a, int idx, const char *key)
{
    if (idx >= 64)
        return;
    pthread_mutex_lock(&a->tomb_mu);
    size_t i = tomb_find_locked(a, key);
    if (i < a->ntombs)
        a->tombs[i].done &= ~(1ull << idx);
    pthread_mutex_unlock(&a->tomb_mu);
}

/* Destination idx wrote the tombstone of note key (read with time
 * deleted_us): once every destination
 * has, the registry forgets the note.  (More than 64 destinations: the
 * note stays, and is written again at every round.) */
static void tomb_confirm(struct archiver *a, int idx, const char *key, int64_t deleted_us)
{
    uint64_t all = a->ndests >= 64 ? ~0ull : (1ull << a->ndests) - 1;
    size_t i;
    int gone = 0;

    if (idx >= 64)
        return;
    pthread_mutex_lock(&a->tomb_mu);
    i = tomb_find_locked(a, key);
    if (i == a->ntombs) {
        if (lv_grow((void **)&a->tombs, &a->tombs_cap, a->ntombs, sizeof *a->tombs, 8) != 0)
            goto out_unlock; /* written again next round */
        snprintf(a->tombs[i].key, sizeof a->tombs[i].key, "%s", key);
        a->tombs[i].done = 0;
        a->ntombs++;
    }
    a->tombs[i].done |= 1ull << idx;
    if (a->ndests <= 64 && a->tombs[i].done == all) {
        a->tombs[i] = a->tombs[--a->ntombs];
        gone = 1;
    }
out_unlock:
    pthread_mutex_unlock(&a->tomb_mu);
    if (gone)
        dbreg_deleted_done(a->reg, key, deleted_us);
}

/* Is lineage (as current.json names it) one of database idhex's: its
 * first, idhex itself, or a later one after a divergence (LINEAGE)? */
static int lineage_of(const char *lineage, const char *idhex)
{
    char cand[48];

    if (strcmp(lineage, idhex) == 0)
        return 1;
    for (int k = 2; k <= 128; k++) { /* lineage_open stops at 99 */
        diverged_lineage(idhex, k, cand);
        if (strcmp(lineage, cand) == 0)
            return 1;
    }
    return 0;
}

/* Why a database of ID id left a name, as this destination writes it:
 * reason (DBREG_LEFT_*, the note's or drop_unseen's), except that a
 * database the registry (infos, n) lists now under any name was renamed
 * (a replica's DROP that breaks a cycle of renames is followed by the same
 * ID under another name). */
static const char *left_reason(int reason, const uint8_t id[16], const struct db_info *infos, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (memcmp(infos[k].id, id, 16) == 0)
            return ARCHIVE_LEFT_RENAMED;
    return dbreg_left_name(reason); /* (the same words as ARCHIVE_LEFT_*) */
}

/* One note v of a database that left a name, at this destination (infos,
 * n: the registry's list, taken after the notes): 0 once handled (its
 * tombstone written, or none needed), or negative (retried). */
static int put_deleted_note(struct adest *d, const struct dbreg_deleted *v, const uint8_t id[16],
                            const struct db_info *infos, size_t n)
{
    char cur[64];
    const char *why = left_reason(v->reason, id, infos, n);
    int rc = get_current(d, v->name, cur, sizeof cur);

    /* A tombstone counts only while current.json names its lineage: one
     * naming another (the name's newer database; an older note) would
     * undo a newer tombstone.  None: never archived here. */
    if (rc || !cur[0] || !lineage_of(cur, v->dbid))
        return rc;
    rc = put_ptr(d, v->name, cur, why, v->deleted_us > 0 ? v->deleted_us : lv_now_us());
    if (rc == 0)
        LV_INFO("archive %s: %s: %s here; lineage %s marked so (%s/%s)", store_url(d->store), v->name, why, cur,
                v->name, ARCHIVE_DELETED_OBJECT);
    return rc;
}

/* The registry's notes of deleted databases: write each one's tombstone at
 * this destination, unless it did already; a database listed again under
 * that name and ID voids its note, for every destination (T1 of
 * dbreg_deleted.c).  The list is
 * taken after the notes: a note is written after its database left the
 * registry.  A failure is retried at a later round (backoff). */
static void put_deleted_notes(struct adest *d)
{
    struct dbreg_deleted *v = NULL;
    struct db_info *infos = NULL;
    size_t nv = 0, n = 0;
    int failed = 0;

    if (lv_mono_us() < d->tomb_next_try_mono || dbreg_deleted_list(d->a->reg, &v, &nv) != 0 || nv == 0 ||
        dbreg_list(d->a->reg, &infos, &n) != 0)
        goto out_free;
    for (size_t i = 0; i < nv; i++) {
        uint8_t id[16];
        int rc;
        if (tomb_done(d->a, d->idx, v[i].key))
            continue;
        if (lv_unhex(v[i].dbid, id, sizeof id) != 0)
            continue; /* (dbreg_deleted_list checked it) */
        if (listed_as(infos, n, v[i].name, id)) { /* back under that name and ID: void, for every destination */
            tomb_forget(d->a, v[i].key);
            dbreg_deleted_done(d->a->reg, v[i].key, v[i].deleted_us);
            continue;
        }
        if ((rc = put_deleted_note(d, &v[i], id, infos, n)) != 0) {
            failed = 1;
            if (lv_mono_us() - d->tomb_warn_mono >= WARN_EVERY_US || d->tomb_warn_mono == 0) {
                d->tomb_warn_mono = lv_mono_us();
                LV_WARN("archive %s: %s: deleted here, but %s/%s could not be written (%s); retrying",
                        store_url(d->store), v[i].name, v[i].name, ARCHIVE_DELETED_OBJECT, lv_strerror(rc));
            }
            continue; /* the others are tried all the same */
        }
        tomb_confirm(d->a, d->idx, v[i].key, v[i].deleted_us);
    }
    if (failed) {
        d->tomb_back_us = d->tomb_back_us ? d->tomb_back_us * 2 : d->cfg->sync_interval_us;
        if (d->tomb_back_us > BACKOFF_MAX_US)
            d->tomb_back_us = BACKOFF_MAX_US;
        d->tomb_next_try_mono = lv_mono_us() + d->tomb_back_us;
    } else {
        d->tomb_back_us = 0;
    }
out_free:
    free(infos);
    free(v);
}

/* Drop the databases not seen in this round (unlinked or replaced).  One
 * whose name the registry no longer lists at all (infos, n: this round's
 * list; a broken or empty database is listed) was deleted, renamed away or
 * replaced by another of another ID: its lineage gets name/deleted.json,
 * so that a catch-up or a seed does not bring it back (FORMAT.md,
 * "Deleted databases").  A failed PUT is logged, and retried from the
 * registry's note (put_deleted_notes). */
static void drop_unseen(struct adest *d, const struct db_info *infos, size_t n)
{
    for (size_t i = 0; i < d->ndbs; i++) {
        struct adb *b = d->dbs[i];
        char key[sizeof ((struct atomb *)0)->key];
        if (b->seen || !b->loaded)
            continue;
        dbreg_deleted_key(b->name, b->idhex, key, sizeof key);
        if (listed_as(infos, n, b->name, b->id) || tomb_done(d->a, d->idx, key))
            continue; /* (written from the registry's note) */
        int replaced = 0; /* the name listed under another ID */
        for (size_t k = 0; k < n && !replaced; k++)
            replaced = strcmp(infos[k].name, b->name) == 0;
        const char *why = left_reason(replaced ? DBREG_LEFT_REPLACED : DBREG_LEFT_DELETED, b->id, infos, n);
        int rc = put_ptr(d, b->name, b->lineage, why, lv_now_us());
        if (rc)
            LV_WARN("archive %s: %s: gone here, but %s/%s could not be written (%s); the registry's note "
                    "retries it", store_url(d->store), b->name, b->name, ARCHIVE_DELETED_OBJECT, lv_strerror(rc));
        else
            LV_INFO("archive %s: %s: %s here; lineage %s marked so (%s/%s)", store_url(d->store), b->name, why,
                    b->lineage, b->name, ARCHIVE_DELETED_OBJECT);
    }
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->ndbs;) {
        struct adb *b = d->dbs[i];
        if (b->seen) {
            b->seen = 0;
            i++;
            continue;
        }
        manifest_free(&b->m);
        free(b);
        d->dbs[i] = d->dbs[--d->ndbs];
    }
    pthread_mutex_unlock(&d->mu);
}

/* ------------------------------------------------------------ drain */

/* Sleep us microseconds (the drain runs after the worker was asked to
 * stop, so worker_nap no longer sleeps). */
static void drain_nap(int64_t us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};

    while (us > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* One drain attempt for database b: open its lineage, upload every record
 * up to info->txid, store the manifest.  0 or negative. */
static int drain_db(struct adest *d, struct adb *b, const struct db_info *info)
{
    int rc = 0;

    if (!b->loaded)
        rc = lineage_open(d, b, info);
    if (rc == 0)
        rc = sync_segments(d, b, info);
    if (rc == 0 && b->dirty)
        rc = put_manifest(d, b);
    if (rc == 0)
        rc = tomb_step(d, b);
    return rc;
}

/* A failed step of database b at destination d: count it and keep its
 * message (the store's last error) for /status.  Caller holds d->mu. */
static void note_failure(struct adest *d, struct adb *b, int rc)
{
    const char *se = store_last_error(d->store);

    b->errors++;
    d->errors++;
    d->up = 0;
    snprintf(d->last_error, sizeof d->last_error, "%s: %s%s%s", b->name, lv_strerror(rc), se && *se ? ": " : "",
             se ? se : "");
}

/*
 * Clean stop (A1-A3 of the design comment): the mount is gone, so the
 * databases' TXIDs no longer move.  Upload every record not yet confirmed
 * and store every lagging manifest, retrying failures with backoff, until
 * everything is confirmed or shutdown-timeout has passed; then log each
 * database still missing records (the local log keeps them for the next
 * start).
 */
static void dest_drain(struct adest *d)
{
    struct archiver *a = d->a;
    int64_t deadline = lv_mono_us() + d->cfg->shutdown_timeout_us, back = 100000;
    struct db_info *infos = NULL;
    size_t n = 0, missing = 0;
    uint64_t uploaded = 0;

    __atomic_store_n(&d->drain_deadline, deadline, __ATOMIC_RELEASE);
    if (dbreg_list(a->reg, &infos, &n) != 0) {
        LV_WARN("archive %s: cannot list the databases at shutdown; unconfirmed records are uploaded at the "
                "next start", store_url(d->store));
        return;
    }
    dbreg_sync_logs(a->reg);
    d->tomb_next_try_mono = 0;
    put_deleted_notes(d); /* a database deleted just before the stop */
    for (;;) {
        missing = 0;
        for (size_t i = 0; i < n; i++) {
            struct db_info *info = &infos[i];
            struct adb *b;
            if (info->broken || info->txid == 0 || !(b = find_db(d, info, 1)))
                continue;
            uint64_t before = b->confirmed;
            int rc = drain_db(d, b, info);
            if (rc) {
                pthread_mutex_lock(&d->mu);
                note_failure(d, b, rc);
                pthread_mutex_unlock(&d->mu);
            }
            LV_ASSERT(rc || lv_mono_us() >= deadline || b->confirmed >= info->txid); /* A2 */
            if (b->confirmed > before)
                uploaded += b->confirmed - before;
            if (rc || b->confirmed < info->txid || b->dirty)
                missing++;
        }
        if (missing == 0 || lv_mono_us() >= deadline)
            break;
        drain_nap(back < deadline - lv_mono_us() ? back : deadline - lv_mono_us());
        back = back * 2 > 2000000 ? 2000000 : back * 2;
    }
    for (size_t i = 0; i < n && missing; i++) {
        struct db_info *info = &infos[i];
        struct adb *b = info->broken || info->txid == 0 ? NULL : find_db(d, info, 0);
        uint64_t conf = b ? b->confirmed : 0;
        if (b && conf >= info->txid && !b->dirty)
            continue;
        if (info->broken || info->txid == 0)
            continue;
        LV_WARN("archive %s: %s: archive[%d].shutdown-timeout (%lld ms) reached: TXID %llu..%llu not archived%s%s "
                "(the local log keeps them; the next start uploads them)", store_url(d->store), info->name, d->idx,
                (long long)(d->cfg->shutdown_timeout_us / 1000), (unsigned long long)(conf + 1),
                (unsigned long long)info->txid, d->last_error[0] ? ": " : "", d->last_error);
    }
    if (!missing && uploaded)
        LV_INFO("archive %s: shutdown: %llu record(s) uploaded; every transaction is archived", store_url(d->store),
                (unsigned long long)uploaded);
    free(infos);
}

static void dest_main(struct worker *w, void *arg)
{
    struct adest *d = arg;
    struct archiver *a = d->a;

    d->self = w;
    while (!worker_nap(w, d->cfg->sync_interval_us)) {
        struct db_info *infos = NULL;
        size_t n = 0;
        if (__atomic_load_n(&a->held, __ATOMIC_ACQUIRE))
            continue; /* archiver_hold: a fenced primary uploads nothing more */
        if (dbreg_list(a->reg, &infos, &n) != 0)
            continue;
        dbreg_sync_logs(a->reg); /* ship only records the local log has made durable (C7 of db.c) */
        for (size_t i = 0; i < n && !worker_stopping(w); i++) {
            struct db_info *info = &infos[i];
            struct adb *b;
            int rc;
            if (info->broken || info->txid == 0)
                continue;
            b = find_db(d, info, 1);
            if (!b)
                continue;
            b->seen = 1;
            uint64_t lbytes = 0, lfirst = 0;
            txlog_dir_usage(info->logdir, &lbytes, &lfirst);
            pthread_mutex_lock(&d->mu);
            b->txid = info->txid;
            pthread_mutex_unlock(&d->mu);
            if (lv_mono_us() < b->next_try_mono)
                goto publish;
            rc = db_step(d, b, info);
            pthread_mutex_lock(&d->mu);
            if (rc) {
                note_failure(d, b, rc);
            } else {
                d->up = 1;
            }
            pthread_mutex_unlock(&d->mu);
            if (rc) {
                int64_t back = d->cfg->sync_interval_us << (b->failures < 20 ? b->failures : 20);
                if (back > BACKOFF_MAX_US)
                    back = BACKOFF_MAX_US;
                b->failures++;
                b->next_try_mono = lv_mono_us() + back;
                if (lv_mono_us() - b->last_warn_mono >= WARN_EVERY_US || b->last_warn_mono == 0) {
                    b->last_warn_mono = lv_mono_us();
                    LV_WARN("archive %s: %s: archiving failed (%s); %llu records pending, retrying in %lld ms "
                            "(the local log keeps them)",
                            store_url(d->store), b->name, d->last_error,
                            (unsigned long long)(info->txid - b->confirmed), (long long)(back / 1000));
                }
            } else {
                if (b->failures)
                    LV_INFO("archive %s: %s: archiving works again (TXID %llu confirmed)", store_url(d->store),
                            b->name, (unsigned long long)b->confirmed);
                b->failures = 0;
            }
        publish:
            pthread_mutex_lock(&d->mu);
            {
                uint64_t span = info->txid >= lfirst && lfirst ? info->txid - lfirst + 1 : 1;
                uint64_t pend = info->txid > b->confirmed ? info->txid - b->confirmed : 0;
                b->pending_bytes = pend >= span ? lbytes : (uint64_t)((double)lbytes * (double)pend / (double)span);
            }
            pthread_mutex_unlock(&d->mu);
        }
        if (!worker_stopping(w)) {
            put_deleted_notes(d);
            drop_unseen(d, infos, n);
            run_deletes(d);
        }
        free(infos);
    }
    if (__atomic_load_n(&a->drain, __ATOMIC_ACQUIRE))
        dest_drain(d);
    /* Stop: store every manifest that lags behind its segments. */
    for (size_t i = 0; i < d->ndbs; i++) {
        struct adb *b = d->dbs[i];
        int rc;
        if (!b->loaded || !b->dirty)
            continue;
        rc = put_manifest(d, b);
        if (rc)
            LV_WARN("archive %s: %s: cannot store the manifest at shutdown (%s); the next start adopts the "
                    "segments it does not list", store_url(d->store), b->name, lv_strerror(rc));
    }
}

/* ------------------------------------------------------------ monitor */

/* Prune each local log up to what every destination confirmed (and the
 * state file covers); sum the log sizes; apply data.max-log-size. */
static void monitor_round(struct archiver *a)
{
    struct db_info *infos = NULL;
    size_t n = 0;
    uint64_t total = 0;

    if (dbreg_list(a->reg, &infos, &n) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        struct db_info *info = &infos[i];
        uint64_t minc = info->saved_txid, bytes = 0, first = 0, freed = 0;
        for (size_t k = 0; k < a->ndests; k++) {
            struct adest *d = &a->dests[k];
            uint64_t c = 0;
            pthread_mutex_lock(&d->mu);
            for (size_t j = 0; j < d->ndbs; j++)
                if (strcmp(d->dbs[j]->name, info->name) == 0 && memcmp(d->dbs[j]->id, info->id, 16) == 0)
                    c = d->dbs[j]->confirmed;
            pthread_mutex_unlock(&d->mu);
            if (c < minc)
                minc = c;
        }
        if (!info->broken && minc > 0) {
            pthread_mutex_lock(&a->retain_mu);
            if (a->retain_fn)
                minc = a->retain_fn(a->retain_arg, info, minc);
            pthread_mutex_unlock(&a->retain_mu);
        }
        if (!info->broken && minc > 0 && txlog_prune(info->logdir, minc, &freed) > 0)
            __atomic_add_fetch(&a->pruned_bytes, freed, __ATOMIC_RELAXED);
        if (txlog_dir_usage(info->logdir, &bytes, &first) == 0)
            total += bytes;
    }
    free(infos);
    __atomic_store_n(&a->log_bytes, total, __ATOMIC_RELAXED);
    int64_t lim = a->max_log_size;
    int full = lim > 0 && total >= (uint64_t)lim;
    int was = __atomic_load_n(&a->log_full, __ATOMIC_RELAXED);
    static int64_t last_warn;
    if (lim > 0 && total >= (uint64_t)lim / 10 * 8 && !full && lv_mono_us() - last_warn >= WARN_EVERY_US) {
        last_warn = lv_mono_us();
        LV_WARN("WARNING: the local transaction log holds %llu bytes, %.0f%% of data.max-log-size (%lld): an "
                "archive destination is not keeping up; at 100%% new transactions are refused (SQLITE_FULL)",
                (unsigned long long)total, 100.0 * (double)total / (double)lim, (long long)lim);
    }
    if (full != was) {
        if (full)
            LV_ERROR("the local transaction log reached data.max-log-size (%llu >= %lld bytes) because archiving "
                     "lags: new transactions are refused (SQLITE_FULL) until destinations catch up; no record "
                     "is dropped", (unsigned long long)total, (long long)lim);
        else
            LV_WARN("the local transaction log is below data.max-log-size again (%llu bytes); transactions are "
                    "accepted again", (unsigned long long)total);
        __atomic_store_n(&a->log_full, full, __ATOMIC_RELAXED);
        dbreg_set_log_full(a->reg, full);
    }
}

static void monitor_main(struct worker *w, void *arg)
{
    struct archiver *a = arg;
    int64_t iv = 1000000;
    for (size_t i = 0; i < a->ndests; i++)
        if (a->dests[i].cfg->sync_interval_us < iv)
            iv = a->dests[i].cfg->sync_interval_us;
    do
        monitor_round(a);
    while (!worker_nap(w, iv));
}

/* ------------------------------------------------------------ public */

/* Remove what a killed daemon left in data.dir/tmp (arch<N>-img-*, arch<N>-snap-*). */
static void clean_tmp(const char *tmpdir)
{
    DIR *dir = opendir(tmpdir);
    struct dirent *de;
    if (!dir)
        return;
    while ((de = readdir(dir)) != NULL) {
        char p[PATH_MAX * 2];
        if (strncmp(de->d_name, "arch", 4) != 0 || (!strstr(de->d_name, "-img-") && !strstr(de->d_name, "-snap-")))
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, de->d_name);
        if (unlink(p) != 0 && errno == EISDIR) {
            DIR *sd = opendir(p);
            struct dirent *se;
            while (sd && (se = readdir(sd)) != NULL) {
                char q[PATH_MAX * 3];
                if (se->d_name[0] == '.')
                    continue;
                snprintf(q, sizeof q, "%s/%s", p, se->d_name);
                unlink(q);
            }
            if (sd)
                closedir(sd);
            rmdir(p);
        }
        LV_DEBUG("archive: removed left-over %s", p);
    }
    closedir(dir);
}

void archiver_store_opts(const struct archiver_dest *c, struct store_opts *o)
{
    store_conf_opts(&c->s3, o);
    o->parallel = c->parallel;
}

int archiver_start(const struct archiver_dest *dests, size_t n, int64_t max_log_size, struct dbreg *reg,
                   struct archiver **out, char *err, size_t errlen)
{
    struct archiver *a;
    int rc = 0;

    *out = NULL;
    if (n == 0)
        return 0;
    a = calloc(1, sizeof *a);
    if (!a)
        return LV_ENOMEM;
    a->max_log_size = max_log_size;
    a->reg = reg;
    pthread_mutex_init(&a->retain_mu, NULL);
    pthread_mutex_init(&a->tomb_mu, NULL);
    dbreg_tmp_dir(dbreg_data_dir(reg), a->tmpdir, sizeof a->tmpdir);
    a->dests = calloc(n, sizeof *a->dests);
    if (!a->dests) {
        free(a);
        return LV_ENOMEM;
    }
    a->ndests = n;
    rc = sys_mkdir_p(a->tmpdir);
    if (rc == 0)
        clean_tmp(a->tmpdir);
    for (size_t i = 0; i < a->ndests && rc == 0; i++) {
        const struct archiver_dest *c = &dests[i];
        struct adest *d = &a->dests[i];
        struct store_opts o;
        char e[512] = "";
        archiver_store_opts(c, &o);
        o.max_retries = 3;           /* the archiver retries itself, with backoff */
        o.retry_max_ms = 2000;
        d->a = a;
        d->idx = (int)i;
        d->cfg = c;
        d->up = 1;
        pthread_mutex_init(&d->mu, NULL);
        rc = store_open(c->url, &o, &d->store, e, sizeof e);
        if (rc) {
            snprintf(err, errlen, "archive[%zu].url: %s", i, e[0] ? e : lv_strerror(rc));
            rc = LV_ECONFIG;
        }
    }
    if (rc) {
        archiver_stop(a);
        return rc;
    }
    for (size_t i = 0; i < a->ndests; i++) {
        struct adest *d = &a->dests[i];
        char name[16];
        snprintf(name, sizeof name, "lv-archive%zu", i);
        worker_start(name, dest_main, d, &d->th); /* logged if it fails */
        LV_INFO("archiving to %s (sync every %lld ms)", store_url(d->store), (long long)(d->cfg->sync_interval_us / 1000));
    }
    worker_start("lv-archive-mon", monitor_main, a, &a->mon);
    *out = a;
    return 0;
}

void archiver_set_retain(struct archiver *a, archiver_retain_fn fn, void *arg)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->retain_mu);
    a->retain_fn = fn;
    a->retain_arg = arg;
    pthread_mutex_unlock(&a->retain_mu);
}

void archiver_hold(struct archiver *a, int hold)
{
    if (a && __atomic_exchange_n(&a->held, hold != 0, __ATOMIC_ACQ_REL) != (hold != 0))
        LV_INFO("archiver: %s", hold ? "held: this node lost its lease, so it uploads nothing more (the next primary "
                                       "archives what it holds)" : "uploading again");
}

void archiver_drain(struct archiver *a)
{
    if (!a)
        return;
    __atomic_store_n(&a->drain, 1, __ATOMIC_RELEASE);
    for (size_t i = 0; i < a->ndests; i++)
        worker_ask_stop(a->dests[i].th);
    for (size_t i = 0; i < a->ndests; i++) {
        worker_stop(a->dests[i].th); /* joins: the drain is over */
        a->dests[i].th = NULL;
    }
}

void archiver_stop(struct archiver *a)
{
    if (!a)
        return;
    /* Ask every thread first, so that the destinations store their
     * lagging manifests in parallel; then join them one by one. */
    worker_ask_stop(a->mon);
    for (size_t i = 0; i < a->ndests; i++)
        worker_ask_stop(a->dests[i].th);
    worker_stop(a->mon);
    for (size_t i = 0; i < a->ndests; i++) {
        struct adest *d = &a->dests[i];
        worker_stop(d->th);
        for (size_t j = 0; j < d->ndbs; j++) {
            manifest_free(&d->dbs[j]->m);
            free(d->dbs[j]);
        }
        free(d->dbs);
        if (d->ndels)
            LV_INFO("archive %s: %zu unreferenced objects are left for the next start's sweep",
                    store_url(d->store), d->ndels);
        free(d->dels);
        if (d->store)
            store_close(d->store);
        pthread_mutex_destroy(&d->mu);
    }
    if (__atomic_load_n(&a->log_full, __ATOMIC_RELAXED))
        dbreg_set_log_full(a->reg, 0);
    free(a->dests);
    pthread_mutex_destroy(&a->retain_mu);
    pthread_mutex_destroy(&a->tomb_mu);
    free(a->tombs);
    free(a);
}

/* The families archiver_metrics writes (base/metrics.h), in output order. */
static const struct metrics_family am_db_families[] = {
    {"litevault_archive_confirmed_txid", "gauge", "Last TXID confirmed in the destination (its segment stored)."},
    {"litevault_archive_confirmed_time_seconds", "gauge", "Commit time of the last confirmed TXID (RPO = now - this)."},
    {"litevault_archive_pending_records", "gauge", "Records logged locally but not yet confirmed."},
    {"litevault_archive_pending_bytes", "gauge", "Estimated local log bytes not yet confirmed."},
    {"litevault_archive_db_errors_total", "counter", "Failed archive steps for this database."},
    {"litevault_archive_snapshots_total", "counter", "Snapshots uploaded since start."},
    {"litevault_archive_compactions_total", "counter", "Compacted objects written since start."},
    {"litevault_archive_retired_objects_total", "counter", "Objects removed by retention since start."},
};
enum { AM_DEST_INFO, AM_DEST_REQUESTS, AM_DEST_BYTES, AM_DEST_REQ_ERRORS, AM_DEST_RETRIES, AM_DEST_ERRORS,
       AM_DEST_UP, AM_DEST_N };
static const struct metrics_family am_dest_families[AM_DEST_N] = {
    {"litevault_archive_destination_info", "gauge", "Archive destinations."},
    {"litevault_archive_requests_total", "counter", "Requests to the destination by type."},
    {"litevault_archive_bytes_total", "counter", "Bytes sent to (up) and received from (down) the destination."},
    {"litevault_archive_request_errors_total", "counter", "Requests to the destination that failed."},
    {"litevault_archive_request_retries_total", "counter", "Requests to the destination that were retried."},
    {"litevault_archive_errors_total", "counter", "Failed archive steps, all databases of the destination."},
    {"litevault_archive_up", "gauge", "1 if the destination's last archive step succeeded."},
};
static const struct metrics_family am_log_families[] = {
    {"litevault_local_log_bytes", "gauge", "Bytes of all local transaction logs."},
    {"litevault_local_log_limit_bytes", "gauge", "data.max-log-size (0: none)."},
    {"litevault_local_log_full", "gauge", "1 while new transactions are refused."},
    {"litevault_local_log_pruned_bytes_total", "counter", "Local log bytes pruned after archiving."},
};

/* The per-database families: family m, every destination, every database. */
static int am_render_dbs(struct archiver *a, char **buf, size_t *len, size_t *cap)
{
    int rc = 0;

    for (size_t m = 0; m < LV_ARRAY_LEN(am_db_families) && rc == 0; m++) {
        const char *name = am_db_families[m].name;
        rc = metrics_family(buf, len, cap, &am_db_families[m]);
        for (size_t i = 0; i < a->ndests && rc == 0; i++) {
            struct adest *d = &a->dests[i];
            pthread_mutex_lock(&d->mu);
            for (size_t j = 0; j < d->ndbs && rc == 0; j++) {
                struct adb *b = d->dbs[j];
                char esc[2100];
                metrics_label_escape(b->name, esc, sizeof esc);
                if (m == 1) {
                    rc = metrics_appendf(buf, len, cap, "%s{dest=\"%zu\",db=\"%s\"} %.6f\n", name, i, esc,
                                         (double)b->confirmed_time_us / 1e6);
                    continue;
                }
                uint64_t v[] = {b->confirmed, 0, b->txid > b->confirmed ? b->txid - b->confirmed : 0,
                                b->pending_bytes, b->errors, b->snapshots, b->compactions, b->retired};
                rc = metrics_appendf(buf, len, cap, "%s{dest=\"%zu\",db=\"%s\"} %llu\n", name, i, esc,
                                     (unsigned long long)v[m]);
            }
            pthread_mutex_unlock(&d->mu);
        }
    }
    return rc;
}

/* Samples of family f for destination i, whose request statistics are st. */
static int am_render_dest(struct archiver *a, size_t i, int f, const struct store_stats *st, char **buf,
                          size_t *len, size_t *cap)
{
    static const char *const types[] = {"put", "get", "list", "delete", "head"};
    const char *name = am_dest_families[f].name;
    struct adest *d = &a->dests[i];
    uint64_t errs;
    int up, rc = 0;
    char esc[1100];

    pthread_mutex_lock(&d->mu);
    errs = d->errors;
    up = d->up;
    pthread_mutex_unlock(&d->mu);
    switch (f) {
    case AM_DEST_INFO:
        return metrics_appendf(buf, len, cap, "%s{dest=\"%zu\",url=\"%s\"} 1\n", name, i,
                               metrics_label_escape(store_url(d->store), esc, sizeof esc));
    case AM_DEST_REQUESTS: {
        uint64_t v[] = {st->puts, st->gets, st->lists, st->deletes, st->heads};
        for (size_t k = 0; k < LV_ARRAY_LEN(v) && rc == 0; k++)
            rc = metrics_appendf(buf, len, cap, "%s{dest=\"%zu\",type=\"%s\"} %llu\n", name, i, types[k],
                                 (unsigned long long)v[k]);
        return rc;
    }
    case AM_DEST_BYTES:
        return metrics_appendf(buf, len, cap, "%s{dest=\"%zu\",direction=\"up\"} %llu\n"
                                              "%s{dest=\"%zu\",direction=\"down\"} %llu\n",
                               name, i, (unsigned long long)st->bytes_up, name, i,
                               (unsigned long long)st->bytes_down);
    case AM_DEST_UP:
        return metrics_appendf(buf, len, cap, "%s{dest=\"%zu\"} %d\n", name, i, up);
    default: {
        uint64_t v = f == AM_DEST_REQ_ERRORS ? st->errors : f == AM_DEST_RETRIES ? st->retries : errs;
        return metrics_appendf(buf, len, cap, "%s{dest=\"%zu\"} %llu\n", name, i, (unsigned long long)v);
    }
    }
}

int archiver_metrics(struct archiver *a, char **buf, size_t *len, size_t *cap)
{
    struct store_stats *st;
    int rc;

    if (!a)
        return 0;
    st = calloc(a->ndests, sizeof *st);
    if (!st)
        return LV_ENOMEM;
    for (size_t i = 0; i < a->ndests; i++)
        store_get_stats(a->dests[i].store, &st[i]); /* one snapshot, so the families agree */
    rc = am_render_dbs(a, buf, len, cap);
    for (int f = 0; f < AM_DEST_N && rc == 0; f++) {
        rc = metrics_family(buf, len, cap, &am_dest_families[f]);
        for (size_t i = 0; i < a->ndests && rc == 0; i++)
            rc = am_render_dest(a, i, f, &st[i], buf, len, cap);
    }
    free(st);
    uint64_t v[] = {__atomic_load_n(&a->log_bytes, __ATOMIC_RELAXED), (uint64_t)a->max_log_size,
                    (uint64_t)__atomic_load_n(&a->log_full, __ATOMIC_RELAXED),
                    __atomic_load_n(&a->pruned_bytes, __ATOMIC_RELAXED)};
    for (size_t k = 0; k < LV_ARRAY_LEN(am_log_families) && rc == 0; k++) {
        rc = metrics_family(buf, len, cap, &am_log_families[k]);
        if (rc == 0)
            rc = metrics_appendf(buf, len, cap, "%s %llu\n", am_log_families[k].name, (unsigned long long)v[k]);
    }
    return rc;
}

char *archiver_status_json(struct archiver *a)
{
    json_t *arr = json_array();
    char *s;

    for (size_t i = 0; a && i < a->ndests; i++) {
        struct adest *d = &a->dests[i];
        json_t *o = json_object(), *dbs = json_array();
        pthread_mutex_lock(&d->mu);
        json_object_set_new(o, "url", json_string(store_url(d->store)));
        json_object_set_new(o, "up", json_boolean(d->up));
        json_object_set_new(o, "errors", json_integer((json_int_t)d->errors));
        json_object_set_new(o, "last_error", json_string(d->last_error));
        for (size_t j = 0; j < d->ndbs; j++) {
            struct adb *b = d->dbs[j];
            json_t *e = json_object();
            char t[40];
            json_object_set_new(e, "name", json_string(b->name));
            json_object_set_new(e, "lineage", json_string(b->lineage));
            json_object_set_new(e, "confirmed_txid", json_integer((json_int_t)b->confirmed));
            json_object_set_new(e, "confirmed_time",
                                b->confirmed_time_us ? json_string(lv_fmt_time(b->confirmed_time_us, t, sizeof t))
                                                     : json_null());
            json_object_set_new(e, "pending_records",
                                json_integer((json_int_t)(b->txid > b->confirmed ? b->txid - b->confirmed : 0)));
            json_object_set_new(e, "pending_bytes", json_integer((json_int_t)b->pending_bytes));
            json_array_append_new(dbs, e);
        }
        pthread_mutex_unlock(&d->mu);
        json_object_set_new(o, "databases", dbs);
        json_array_append_new(arr, o);
    }
    s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}
