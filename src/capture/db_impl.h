/*
 * db_impl.h -- what the files of the capture module share: struct db (one
 * per database), struct dbreg (the registry), and the functions each file
 * offers the others.  Internal to src/capture/db*.c; the public interface
 * is db.h.  The design (commit detection, invariants, states, locking) is
 * the comment at the top of db.c.
 *
 *   db.c           shared pieces: failure, backing files, the dirty set,
 *                  changes and WAL overlays, identity and metadata
 *   db_record.c    turning a transaction into a log record (db_emit,
 *                  db_capture_rollback, db_capture_wal)
 *   db_capture.c   the write path from the FUSE layer (db_on_*): commit
 *                  detection, checkpoints, fsync with the syncer thread
 *   db_reconcile.c start-up: load the log and the state, reconcile files
 *   db_image.c     consistent images with copy-on-write (dbreg_image)
 *   db_watch.c     the WAL watcher: captures passthrough -wal commits
 *   dbreg.c        the registry: scan, get/put, rename/unlink, status,
 *                  metrics, state saving
 */
#ifndef DB_IMPL_H
#define DB_IMPL_H

#include "capture/db.h"

#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "base/cksum.h"
#include "log/txlog.h"
#include "log/wal.h"

#define DB_GRANULE 512   /* bytes per dirty-set bit: independent of the page size */
#define DB_NBUCKETS 256  /* hash buckets of the registry */

/* SQLite's rollback journal header magic (first 8 bytes of an active journal). */
extern const uint8_t db_journal_magic[8];

enum db_kind { DBK_UNKNOWN = 0, DBK_SQLITE, DBK_PLAIN };
enum jmode { JM_UNKNOWN = 0, JM_DELETE, JM_TRUNCATE, JM_PERSIST, JM_WAL };

/* Names of enum jmode, as stored in meta/NAME/journal-mode and shown in /status. */
extern const char *const db_jmode_names[5];

struct db_image;
struct worker;

struct db {
    struct dbreg *reg;       /* owning registry (immutable) */
    struct db *next;         /* hash chain (reg->mu) */
    char *name;              /* name relative to the mount root (changed with reg->mu and mu held; read with either) */
    int refs;                /* references (reg->mu) */
    int retired;             /* unlinked; no longer in the table (reg->mu) */
    pthread_mutex_t mu;      /* guards every field below unless it says otherwise */
    enum db_kind kind;       /* UNKNOWN, SQLITE or PLAIN (mu) */
    int broken;              /* sticky failure: refuse open and writes (mu) */
    char why[512];           /* reason for broken (mu) */
    int fd;                  /* backing main file, O_RDWR, or -1 (mu) */
    char metadir[PATH_MAX];  /* data.dir/meta/ESCAPED (mu) */
    uint8_t id[16];          /* database ID (mu) */
    struct txlog *log;       /* the log (SQLITE only) (mu) */
    struct cksum_map map;    /* checksums of the state after record txid (mu) */
    uint64_t txid;           /* last TXID logged (mu) */
    int64_t last_time;       /* its commit time (mu) */
    uint64_t saved_txid;     /* TXID of the persisted state file (mu) */
    int saved_valid;         /* state file reflects saved_txid (mu) */
    enum jmode jmode;        /* journal mode seen at the last commit (mu) */
    enum jmode jmode_saved;  /* journal mode last written to meta/NAME/journal-mode (mu) */
    int hdr_wal;             /* database header says WAL (byte 18 == 2) (mu) */
    int journal_active;      /* journal header written since the last commit (mu) */
    int jpt;                 /* open handles of a rollback journal on kernel passthrough (mu) */
    int jpt_tx;              /* journal_active was set by db_journal_follow, from the header in jtag (mu) */
    uint8_t jtag[8];         /* that header's nonce and original database size (its bytes 12..19) (mu) */
    int hot_rollback;        /* the active journal was found hot at start-up: its commit also compares the freelist leaves (mu) */
    int bulk;                /* non-journal writes to a new/truncated file allowed (mu) */
    int warned_nojournal;    /* the OFF/MEMORY capture mode was logged (mu) */
    uint64_t *dirty;         /* dirty 512-byte granules since the last commit (mu) */
    size_t dirty_words;      /* words allocated in dirty (mu) */
    uint64_t dmin, dmax;     /* range of dirty granule indexes (valid if dirty_any) (mu) */
    int dirty_any;           /* some granule is dirty (mu) */
    int size_changed;        /* main file truncated since the last commit (mu) */
    uint32_t resv_pages;     /* pages dirtied in this rollback/bulk transaction, counted for the reservation (mu) */
    int resv_refused;        /* a write of this transaction was refused for lack of log space: no more reserving (mu) */
    int sync_pending;        /* app fsynced during this rollback transaction (mu) */
    int ckpt_dirty;          /* dirty holds pages written by WAL checkpoints (mu) */
    uint64_t ckpt_mismatch;  /* checkpointed pages that disagreed with the log (mu) */
    int log_unsynced;        /* records written and not yet fsynced (mu) */
    uint64_t durable_txid;   /* every record up to it is durable: fsynced in the log, or in a -wal the
                              * application fsynced (C10 of db.c) (mu; read atomically) */
    int durable_wanted;      /* a stream waits for records after durable_txid: raising it bumps the
                              * commit sequence (mu) */
    int durable_syncing;     /* dbreg_durable_limit's log fsync runs without mu (mu) */
    uint64_t stream_waits;   /* dbreg_durable_limit calls that held records back, since start (mu) */
    uint64_t stream_fsyncs;  /* log fsyncs dbreg_durable_limit ran, since start (mu) */
    uint32_t recs_since_wal_fsync; /* records logged since then (mu) */
    uint32_t wal_fsync_streak; /* writer's -wal fsyncs in a row that came after at most 2 records
                                * (db_wal_syncs_commits) (mu) */
    int64_t undurable_mono;  /* lv_mono_us when txid last went past durable_txid (mu) */
    uint64_t wal_wgen;       /* bumped after each write, truncate or fallocate of the -wal through the
                              * daemon (db_wal_changed) (atomic) */
    uint64_t wal_presynced;  /* 1 + the wal_wgen the last pre-sync of the -wal covered, 0 if none ran
                              * (db_wal_presync): the application's fdatasync of the -wal may be skipped
                              * while it is wal_wgen + 1 (atomic) */
    int wal_presync_err;     /* a failed pre-sync's -errno, owed to the next fsync of the -wal through the
                              * same descriptor (mu; read atomically first) */
    int wal_presync_fd;      /* that descriptor (mu) */
    uint64_t wal_presyncs;   /* pre-syncs run, since start (atomic) */
    uint64_t wal_presync_hits; /* application fsyncs of the -wal that a pre-sync spared, since start (atomic) */
    int wal_valid;           /* WAL header known (mu) */
    uint32_t wal_psz, wal_salt1, wal_salt2; /* current WAL header (mu) */
    uint32_t wal_next;       /* first frame after the last commit seen (mu) */
    uint32_t wal_magic;      /* magic of the current WAL header (names the checksum byte order) (mu) */
    struct wal_cursor wcur;  /* where capture stands in the WAL: just after the last commit logged; its
                              * header is wal_psz, wal_salt1/2 and wal_magic when wal_valid (mu) */
    int wal_stalled;         /* a commit in the WAL could not be logged: checkpoints, WAL truncates and
                              * unlinks are refused until it is (db_wal_capture) (mu; read atomically) */
    int tail_in_wal;         /* the last record came from a commit of the current WAL generation (mu) */
    int wal_diverged;        /* the WAL was written over behind the cursor (wal_check_behind said so) (mu) */
    int wal_anchored;        /* a record of the current WAL generation is fsynced in the log, so start-up
                              * can tell the WAL's later commits apart (C7 of db.c) (mu) */
    int64_t wal_retry_us;    /* stalled: lv_mono_us before which db_wal_capture does not read the WAL again (mu) */
    int wal_stall_rc;        /* stalled: the error that stalled it (mu) */
    uint64_t wal_captures;   /* db_wal_capture calls that logged a record, since start (mu) */
    struct wal_frames wal_keep; /* the frames db_wal_capture last read and validated, logged from memory
                                 * (buffer reused; freed with the db) (mu) */
    uint64_t commits;        /* records written since start (mu) */
    uint64_t bytes_logged;   /* page bytes logged since start (mu) */
    uint64_t pages_logged;   /* pages logged since start (mu) */
    uint64_t refused;        /* writes refused (mu) */
    int64_t nospace_warn_us; /* lv_mono_us of the last "no space" warning, 0 if none (mu) */
    struct db_image *img;    /* image being copied by dbreg_image (copy-on-write active), or NULL (mu) */
    struct db_image *img_want; /* image waiting for the end of a rollback transaction, or NULL (mu) */
    pthread_cond_t img_cv;   /* signalled (with mu) when img_want has been set up; CLOCK_MONOTONIC */
    pthread_mutex_t img_mu;  /* held by dbreg_image for its whole run: one image at a time (before mu) */
    int mnt_fd;              /* replica: the main file opened through the mount, for SQLite's locks,
                                or -1 (reg->apply_mu) */
    uint64_t mnt_ino;        /* its FUSE node ID (st_ino) (reg->apply_mu) */
    int64_t applied_us;      /* replica: lv_now_us of the last apply (mu) */
    int64_t applied_commit_us; /* replica: commit time of the last applied record (mu) */
    uint64_t applies;        /* replica: successful dbreg_apply calls (mu) */
    uint64_t apply_busy;     /* replica: applies that waited past the limit for readers (mu) */
    int64_t lock_wait_max_us; /* replica: longest wait for SQLite's locks (mu) */
};

struct dbreg {
    char data_dir[PATH_MAX];  /* data.dir (immutable) */
    uint64_t segment_size;    /* data.segment-size (immutable) */
    int verify_files;         /* dbreg_opts.verify_files (immutable) */
    int deleted_notes;        /* dbreg_opts.deleted_notes (immutable) */
    char files[PATH_MAX];     /* data.dir/files (immutable) */
    char meta[PATH_MAX];      /* data.dir/meta (immutable) */
    char retired[PATH_MAX];   /* data.dir/retired (immutable) */
    int rootfd;               /* open directory fd of files (immutable) */
    int lockfd;               /* data.dir/lock, flock'ed for the daemon's lifetime (immutable) */
    pthread_mutex_t mu;       /* guards buckets, and names, refs, retired of every db */
    struct db *buckets[DB_NBUCKETS]; /* hash table of live databases (mu) */
    struct worker *syncer;    /* fsyncs logs in parallel with the app's fsync; NULL: sync inline (immutable) */
    struct db_watch *watch;   /* the WAL watcher (db_watch.c), or NULL: -wal files go through the daemon
                               * (set before serving; immutable after) */
    int wal_pt;               /* -wal files may use kernel passthrough (dbreg_set_wal_passthrough) (atomic) */
    int journal_pt;           /* new rollback journals may use it (dbreg_set_journal_passthrough) (atomic) */
    pthread_mutex_t smu;      /* guards the sync queue below */
    pthread_cond_t scv;       /* signals a finished job (smu) */
    struct db_sync_job *sq;   /* queued jobs (smu) */
    int log_full;             /* 1: local log over data.max-log-size: new transactions refused (atomic) */
    pthread_mutex_t url_mu;   /* guards primary_url (a lease may change it while the mount serves) */
    char *primary_url;        /* replica: the primary's URL (owned; url_mu), NULL on a primary */
    int replica;              /* 1: a replica: applications' writes are refused (atomic) */
    int fenced;               /* 1: a primary without a valid lease: applications' writes are refused (atomic;
                                 set under each d->mu too, see dbreg_set_fenced) */
    int64_t fence_warn_us;    /* lv_mono_us of the last "fenced" line (atomic) */
    int64_t fence_at_us;      /* lv_mono_us from which writes are refused as if fenced; 0: never (atomic) */
    uint64_t term;            /* primary term stamped on new records, dbreg_set_term (atomic) */
    int (*commit_hook)(void *arg, const char *name, uint64_t txid); /* dbreg_set_commit_hook (atomic) */
    void *commit_arg;         /* its argument (atomic; stored before commit_hook) */
    int64_t rofs_warn_us;     /* lv_mono_us of the last "writes belong on the primary" line (atomic) */
    char mount[PATH_MAX];     /* the mount point (set before serving; immutable after) */
    struct dbreg_inval iv;    /* kernel cache invalidation from the FUSE layer (set before serving) */
    pthread_mutex_t apply_mu; /* serializes dbreg_apply*, snapshots, drops and renames on a replica */
    pthread_mutex_t seq_mu;   /* guards seq; signals seq_cv */
    pthread_cond_t seq_cv;    /* broadcast when seq moves (seq_mu); CLOCK_MONOTONIC */
    uint64_t seq;             /* commit sequence: +1 per record, creation, deletion, rename (seq_mu) */
};

/* A page changed by a transaction and where to read its new content. */
struct change {
    uint32_t pgno;  /* page number */
    int fd;         /* file holding the content */
    uint64_t off;   /* byte offset of the content in fd */
    uint64_t h;     /* its checksum (or, while collecting WAL frames, the frame index) */
};

/* A growable array of changes; owned by one caller (no lock). */
struct changes {
    struct change *v; /* entries (owned) */
    size_t n, cap;    /* used and allocated */
    const struct wal_frames *mem; /* entries of mem_fd that it holds are read from it, or NULL (borrowed) */
    int mem_fd;       /* the file mem holds bytes of */
};

/* Sorted (pgno, offset) overlay of committed WAL frames; one owner. */
struct overlay {
    struct change *v; /* pgno and offset of the newest committed frame; sorted */
    size_t n;         /* entries */
};

/* ---- db.c: shared pieces (every function here: d->mu held) ---- */

/* The invariants and states of the design comment (db.c) that are O(1). */
void db_assert_state(const struct db *d);

/* Mark a database broken: refuse everything until restart (sticky). */
void db_fail(struct db *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The backing main file, opened read-write on first use; -1 if it cannot be. */
int db_main_fd(struct db *d);

/* Read ps bytes at off from fd; bytes past EOF read as zeros.  0 or LV_EIO. */
int db_read_page(int fd, void *buf, uint32_t ps, uint64_t off);

/* db_read_page, from m instead where it holds [off, off+len) of fd (m and
 * mfd: struct changes' mem and mem_fd; m may be NULL). */
int db_read_mem(int fd, void *buf, uint32_t len, uint64_t off, const struct wal_frames *m, int mfd);

/* Checksum of an all-zero page (page size ps, page pgno). */
uint64_t db_zero_page_cksum(uint32_t pgno, uint32_t ps);

/* The checksum map's entry for page p, or an all-zero page's past its end. */
uint64_t db_map_before(const struct db *d, uint32_t p, uint32_t ps);

/* Read the database header of fd (of size size) and derive its page size
 * and logical size in pages (an empty file: the map's page size, 0 pages).
 * 0, LV_ENOTSQLITE when the header is not valid SQLite, or LV_EIO. */
int db_hdr_geometry(struct db *d, int fd, uint64_t size, uint32_t *ps, uint32_t *npages, uint8_t hdr[100]);

int db_changes_add(struct changes *c, uint32_t pgno, int fd, uint64_t off, uint64_t h);
int db_change_cmp(const void *a, const void *b);

/* Records up to txid are durable (C10): raise durable_txid, and wake the
 * streams that wait for it.  Caller holds mu. */
void db_durable_to(struct db *d, uint64_t txid);
/* Does the application fsync the -wal after each commit (synchronous=FULL):
 * its writer's last two -wal fsyncs each came after at most 2 records, and
 * at most 2 records came since?  (A synchronous=NORMAL writer fsyncs only a
 * restarted WAL's header.)  Caller holds mu. */
int db_wal_syncs_commits(const struct db *d);
/* The record this thread just logged (and waits for, dbreg_commit_wait)
 * is a synchronous=FULL writer's commit through the daemon: fdatasync the
 * -wal (fd, borrowed from the request's handle) during the wait (C11). */
void db_presync_arm(struct db *d, int fd);
/* fdatasync the -wal fd of d now, without mu, and let the application's
 * next fdatasync of it be skipped if nothing changed it since (C11). */
void db_wal_presync(struct db *d, int fd);
/* History replaced (a snapshot applied, a seed installed, the log loaded):
 * nothing is known durable until the next fsync of the log.  Caller holds mu. */
void db_durable_reset(struct db *d);
/* txlog_sync of d's log succeeded: every record is durable (C7, C10).
 * Caller holds mu. */
void db_log_synced(struct db *d);

/* Mark bytes [off, off+len) of the main file dirty.  0 or LV_ENOMEM. */
int db_dirty_mark(struct db *d, uint64_t off, uint64_t len);
/* Forget the dirty set and size_changed. */
void db_dirty_clear(struct db *d);
/* Is any granule of page p (size ps) dirty? */
int db_dirty_page(const struct db *d, uint32_t p, uint32_t ps);
/* Call fn for every page (of size ps) that has a dirty granule, ascending. */
int db_dirty_pages(struct db *d, uint32_t ps, int (*fn)(void *, uint32_t), void *arg);

/* Log every transaction committed in the backing WAL after the last one
 * logged (d->mu held).  0 when every commit now in the WAL is logged;
 * else the error, and d->wal_stalled stays set until a later call logs
 * them (db_capture.c). */
int db_wal_capture(struct db *d);
/* Follow a passthrough rollback journal's header (db_capture.c): a
 * transaction started, or committed by zeroing it.  d->mu held.
 * can_refuse: the caller is a write or fsync that can fail the starting
 * transaction (data.max-log-size reached).  0, or a negative errno to
 * refuse that operation. */
int db_journal_follow(struct db *d, int can_refuse);
/* Log what the backing files hold and the daemon has not logged yet: a
 * passthrough journal's commit, a WAL's commits (d->mu held; failures are
 * logged and left to later captures).  For /status and listings. */
void db_capture_pending(struct db *d);

/* Stop the WAL watcher, if running (dbreg_close, before the databases are
 * freed). */
void db_watch_stop(struct dbreg *r);

/* Mark dirty every freelist leaf of the main file (every page when its
 * freelist cannot be walked): the commit that ends the rollback of a hot
 * journal found at start-up calls it.  0, LV_ENOMEM or LV_EIO. */
int db_dirty_free_leaves(struct db *d);

/* Overlay of the committed frames 0..nframes-1 of the WAL walfd. */
int db_overlay_build(int walfd, uint32_t ps, uint32_t nframes, struct overlay *o);
const struct change *db_overlay_find(const struct overlay *o, uint32_t pgno);

/* Identity and metadata. */
void db_set_metadir(struct db *d);
int db_read_id(struct db *d);
int db_open_log(struct db *d, struct txlog_tail *tail);
int db_retire_dir(struct dbreg *r, const char *dir, const char *tag);
/* UNKNOWN -> SQLITE: new identity (random, or id when not NULL: a replica
 * takes the primary's), meta directory and empty log. */
int db_promote(struct db *d);
int db_promote_id(struct db *d, const uint8_t *id);
/* Publish d->id into metadir/id. */
int db_write_id(struct db *d);

/* On a replica: log (at most every 10 s) that a write to what was refused
 * because writes belong on the primary, and return -EROFS; 0 on a primary. */
int db_replica_refuse(struct dbreg *r, const char *what);

/* -EROFS (and a log line at most every 10 s) if the registry is fenced
 * (dbreg_set_fenced), else 0.  Called with d->mu held, so that a fence
 * waits for the write it lets through. */
int db_fence_refuse(struct dbreg *r, const char *what);

/* Move the commit sequence on (any lock but seq_mu may be held). */
void dbreg_bump_seq(struct dbreg *r);

/* ---- db_record.c (d->mu held) ---- */

/* Write one record for the changes c, leaving the database at db_pages
 * pages of page size ps; on success the map, TXID and counters advance. */
int db_emit(struct db *d, uint16_t flags, uint32_t ps, uint32_t db_pages, struct changes *c, uint32_t salt1,
            uint32_t salt2, uint32_t wal_frame);
/* Log the pages of the main file that differ from the map (rollback or bulk commit). */
int db_capture_rollback(struct db *d, uint16_t extra_flags);
/* Log WAL frames [first, last] of walfd committed with db_pages, reading
 * them from mem where it holds them (NULL: from walfd). */
int db_capture_wal(struct db *d, int walfd, uint32_t first, uint32_t last, uint32_t db_pages,
                   uint16_t extra_flags, const struct wal_frames *mem);

/* ---- db_capture.c ---- */

/* Start the syncer thread (on failure logs fsync inline); stop it. */
void db_syncer_start(struct dbreg *r);
void db_syncer_stop(struct dbreg *r);

/* ---- db_reconcile.c ---- */

/* Load an existing SQLite database at start-up (d->mu held).  Failures mark it broken. */
void db_load(struct db *d);

/* ---- db_image.c (d->mu held) ---- */

/* The main file's bytes [off, off+len) (len 0: to the end) are about to change. */
void db_img_cow_main(struct db *d, uint64_t off, uint64_t len);
/* A quiescent moment: set up a waiting image. */
void db_img_serve(struct db *d);

/* ---- dbreg.c ---- */

/* Free a db no longer referenced nor in the table. */
void db_free(struct db *d);

#endif /* DB_IMPL_H */
