/*
 * db.h -- per-database state and transaction capture.
 *
 * A registry (struct dbreg) owns one struct db per database file found in
 * data.dir/files.  The FUSE layer (fs.c) routes every mutating operation on
 * a database, its -journal, -wal or -shm file through the db_on_* calls
 * below, which perform the operation on the backing file and capture
 * committed transactions into the database's txlog.  See db.c for the
 * design (commit detection, checksums, reconcile).
 *
 * Lifetime: dbreg_get returns a referenced db; release it with db_put.
 * A db stays valid while referenced even if unlinked or renamed.
 */
#ifndef DB_H
#define DB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "log/txlog.h"

struct dbreg;
struct db;

/* What the registry needs of the configuration (copied by dbreg_open). */
struct dbreg_opts {
    const char *data_dir;   /* data.dir: backing files, logs and state */
    int64_t segment_size;   /* data.segment-size: bytes before a log segment rolls over */
    int verify_files;       /* 1 (a replica): start-up compares every page of every database with
                               its log, so a file changed behind the daemon's back is found (and
                               logged as a RECOVERED record, which the primary answers with a
                               snapshot); 0: only the pages the log or the WAL name */
    int deleted_notes;      /* 1 (an archive is configured): a deleted database leaves a note for its
                               archive tombstone (dbreg_deleted.c); 0: none, nobody would read it */
};

/* What a path on the mount is, judged by its name. */
enum db_filekind {
    DBF_MAIN = 0,  /* a database (or a plain file) */
    DBF_JOURNAL,   /* NAME-journal */
    DBF_WAL,       /* NAME-wal */
    DBF_SHM,       /* NAME-shm */
};

/* Classify rel (path relative to the mount root, no leading '/'): sets
 * *kind and writes the owning database's name into dbname (size n).
 * Returns 0, or -1 if the name is too long. */
int db_classify(const char *rel, enum db_filekind *kind, char *dbname, size_t n);

/* Metadata directory of database name under data_dir:
 * data_dir/meta/ESCAPED ('%' -> %25, '/' -> %2F; an escaped name over 200
 * bytes is cut to 150 plus '~' and 16 hex digits of XXH3 of the name). */
void db_metadir_path(const char *data_dir, const char *name, char *out, size_t n);

/* Open the registry: create data.dir/files and data.dir/meta, scan the
 * tree, open every database's log and reconcile it with the files.
 * A database whose log is damaged is kept but refuses to open.  0 or
 * negative LV_E* (with a message in err) when data.dir is unusable. */
int dbreg_open(const struct dbreg_opts *o, struct dbreg **out, char *err, size_t errlen);

/* data.dir of the registry (borrowed, valid until dbreg_close). */
const char *dbreg_data_dir(const struct dbreg *r);

/* The directory images are written into: data_dir/tmp (into out, size n). */
void dbreg_tmp_dir(const char *data_dir, char *out, size_t n);

/* Remove the files an earlier run left in data_dir/tmp (call at start-up,
 * before any thread writes there). */
void dbreg_clear_tmp(const char *data_dir);

/* Persist every database's checksum state, close logs, free. */
void dbreg_close(struct dbreg *r);

/* Directory fd of data.dir/files (borrowed, valid until dbreg_close). */
int dbreg_rootfd(const struct dbreg *r);

/* Look up the database named name ("dir/app.db"); with create, make a
 * record for a new main file.  Returns a referenced db or NULL. */
struct db *dbreg_get(struct dbreg *r, const char *name, int create);

/* Drop a reference from dbreg_get. */
void db_put(struct db *d);

/* The application unlinked a main file: retire its database (its log
 * moves to data.dir/retired/).  Call after the backing unlink succeeded. */
void dbreg_unlinked(struct dbreg *r, const char *name);

/* A main file was renamed from -> to (after the backing rename succeeded). */
void dbreg_renamed(struct dbreg *r, const char *from, const char *to);

/* Persist the checksum state of databases changed since the last save.
 * Called periodically and at shutdown. */
void dbreg_save_states(struct dbreg *r, int force);

/* fsync every log with records not yet durable (the application fsynced
 * a directory: synchronous=EXTRA after a journal unlink). */
void dbreg_sync_logs(struct dbreg *r);

/* JSON array of per-database status (malloc'ed, caller frees). */
char *dbreg_status_json(struct dbreg *r);

/* Append Prometheus metrics for all databases to *buf (see metrics.h). 0 or LV_ENOMEM. */
int dbreg_metrics(struct dbreg *r, char **buf, size_t *len, size_t *cap);

/* ---- Read-side access for the archiver, exports and the HTTP API ---- */

/* One live SQLite database, as copied by dbreg_list. */
struct db_info {
    char name[1024];        /* name relative to the mount root */
    uint8_t id[16];         /* database ID */
    char logdir[4096];      /* directory of its txlog segments */
    uint64_t txid;          /* last TXID logged (0: nothing logged yet) */
    int64_t time_us;        /* commit time of that TXID */
    uint32_t page_size;     /* page size after it */
    uint32_t db_pages;      /* database size in pages after it */
    uint64_t cksum;         /* database checksum after it */
    uint64_t term;          /* the term of that TXID's record (0: none) */
    uint64_t saved_txid;    /* TXID of the persisted checksum state (records after it are needed at start-up) */
    uint64_t durable_txid;  /* every record up to it is durable on this node (<= txid) */
    int syncs_commits;      /* the application fsyncs the -wal after each commit (synchronous=FULL) and no
                             * commit hook holds commits: replication.wait-durable auto waits for it */
    int broken;             /* 1: the database refuses access */
};

/* Copy the state of every SQLite database (not plain files) into *out,
 * a malloc'ed array of *n entries sorted by name (caller frees).  A
 * consistent copy per database; databases may change right after.
 * 0 or LV_ENOMEM. */
int dbreg_list(struct dbreg *r, struct db_info **out, size_t *n);

/* The same, without first logging the commits a -wal or a passthrough
 * journal holds: what the log has now (each database's mu is held only to
 * copy its state).  For the replication streams, which the commits'
 * captures wake (dbreg_wait_commit). */
int dbreg_list_logged(struct dbreg *r, struct db_info **out, size_t *n);

/* What a replication stream may send of database name: the records up to
 * *limit (replication.wait-durable, C10 of db.c).
 *   DBREG_DURABLE_NEVER: every record logged.
 *   DBREG_DURABLE_AUTO: only durable records while the application makes
 *     its commits durable itself -- it fsyncs the -wal after each commit
 *     (synchronous=FULL; db_wal_syncs_commits), and no commit hook holds the
 *     commit (synchronous replication: the -wal's fsync comes after it);
 *     otherwise every record logged (as durable as SQLite's own commit).
 *   DBREG_DURABLE_ALWAYS: only durable records.
 * When records must wait and the oldest of them was captured less than
 * DBREG_DURABLE_WAIT_US ago, they wait for the -wal's fsync (*retry_us:
 * the lv_mono_us to look again); otherwise the log is fsynced now, without
 * holding the database's lock while the disk works (one caller at a time;
 * the others return and are woken: the commit sequence moves once more
 * records are durable, dbreg_wait_commit).  0, LV_ENOENT, or the error that
 * broke the database. */
enum { DBREG_DURABLE_AUTO = 0, DBREG_DURABLE_ALWAYS = 1, DBREG_DURABLE_NEVER = 2 };
#define DBREG_DURABLE_WAIT_US 3000
int dbreg_durable_limit(struct dbreg *r, const char *name, int mode, uint64_t *limit, int64_t *retry_us);

/* Must a stream hold back records that are not durable yet, in mode, for a
 * database whose db_info.syncs_commits is syncs_commits?  (The one rule
 * dbreg_durable_limit and the streams apply.) */
static inline int dbreg_durable_wait(int mode, int syncs_commits)
{
    return mode == DBREG_DURABLE_ALWAYS || (mode == DBREG_DURABLE_AUTO && syncs_commits);
}

/* Let -wal files use kernel passthrough (on = 1; the WAL watcher starts
 * the first time) or not (0: new opens go through the daemon; opens of a
 * -wal inode already open keep its way).  Call before serving, or at a
 * role change.  0, or LV_EIO when the watcher cannot run (then off). */
int dbreg_set_wal_passthrough(struct dbreg *r, int on);

/* Should a new open of database dbname's -wal ask for passthrough?  1 after
 * its directory is watched (dbreg_set_wal_passthrough on, not a replica);
 * 0: it goes through the daemon. */
int dbreg_wal_passthrough(struct dbreg *r, const char *dbname);

/* Let rollback journals created from now on use kernel passthrough (on =
 * 1) or not (0).  Call before serving, or at a role change. */
void dbreg_set_journal_passthrough(struct dbreg *r, int on);

/* Should the CREATE of a rollback journal ask for passthrough?  1 when
 * allowed (dbreg_set_journal_passthrough) and not a replica. */
int dbreg_journal_passthrough(struct dbreg *r);

/* A handle of d's rollback journal got kernel passthrough (open), or is
 * released (close: a commit its header shows is logged first). */
void db_journal_pt_open(struct db *d);
void db_journal_pt_close(struct db *d);

/* How many databases have WAL commits that cannot be logged (capture
 * stalled: their checkpoints are refused); their names, comma-separated,
 * into names (n bytes, truncated). */
int dbreg_stalled(struct dbreg *r, char *names, size_t n);

/* The last TXID of database name into *txid: 0, or LV_ENOENT (no such
 * SQLite database here; *txid 0).  Cheaper than dbreg_list for one name. */
int dbreg_txid(struct dbreg *r, const char *name, uint64_t *txid);

/* Did this node delete a database with ID id?  data.dir/retired keeps the
 * metadata of every deleted database (or one replaced by a rename) as
 * <escaped name>.<id in hex>, on a primary as on a replica that applied the
 * primary's DROP.  1 with that directory's path in what (size n), 0 (no
 * such entry: never deleted here, or never known here), or negative
 * (retired/ unreadable).  Nothing is allocated. */
int dbreg_retired_id(struct dbreg *r, const uint8_t id[16], char *what, size_t n);

/* A database this node deleted or renamed away whose archive tombstone
 * may not be written yet (data.dir/deleted/<dbid>-<name hash>.json;
 * dbreg_deleted.c). */
struct dbreg_deleted {
    char name[1024];     /* the name it left */
    char dbid[33];       /* its ID: 32 lower-case hex + NUL */
    char key[56];        /* the note's key: its file name without ".json" (dbreg_deleted_key) */
    int64_t deleted_us;  /* when it left the name (microseconds since the epoch) */
    int reason;          /* DBREG_LEFT_*: why it left the name */
};
/* Why a database left a name (the notes' and deleted.json's "reason"). */
enum { DBREG_LEFT_DELETED = 0, DBREG_LEFT_RENAMED = 1, DBREG_LEFT_REPLACED = 2 };
/* "deleted", "renamed" or "replaced" (static). */
const char *dbreg_left_name(int reason);
/* The directory of those notes under data_dir into out (size n). */
void dbreg_deleted_dir(const char *data_dir, char *out, size_t n);
/* The key of the note of database dbid (hex) leaving name, into key (size
 * >= sizeof dbreg_deleted.key): one note per name and ID. */
void dbreg_deleted_key(const char *name, const char *dbid, char *key, size_t n);
/* Note that the database with ID id left name, for reason (DBREG_LEFT_*;
 * a failure is logged). */
void dbreg_deleted_note(struct dbreg *r, const char *name, const uint8_t id[16], int reason);
/* The notes (*v malloc'ed, caller frees; NULL when *n is 0); unreadable
 * ones are logged and skipped.  0 or negative. */
int dbreg_deleted_list(struct dbreg *r, struct dbreg_deleted **v, size_t *n);
/* Forget the note of key, read with time deleted_us: every archive
 * destination handled it.  A note of that key rewritten since (another
 * time) stays. */
void dbreg_deleted_done(struct dbreg *r, const char *key, int64_t deleted_us);

/* Refuse (full = 1) or allow again (0) new transactions on every database:
 * while set, writes to -wal and -journal files fail with ENOSPC (SQLite:
 * SQLITE_FULL), so no transaction can start and nothing is ever dropped.
 * Set by the archiver when the local log reaches data.max-log-size. */
void dbreg_set_log_full(struct dbreg *r, int full);

/* Facts about an image written by dbreg_image. */
struct db_image_info {
    uint8_t id[16];         /* database ID */
    uint64_t txid;          /* the image is the database just after this TXID */
    int64_t time_us;        /* that TXID's commit time */
    uint32_t page_size;     /* page size */
    uint32_t db_pages;      /* pages in the image (its size is db_pages * page_size) */
    uint64_t cksum;         /* database checksum of the image, verified equal to the TXID's post-checksum */
    uint64_t term;          /* the term of that TXID's record (0: none) */
};

/* Progress callback of dbreg_image: pages copied so far of total. */
typedef void (*db_image_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* Write a consistent image of database name into out_fd (from offset 0;
 * the file is truncated to the image size) as of the last TXID committed
 * when the call starts.  Writers keep running: a page that a writer is
 * about to overwrite before the copy reached it is copied first
 * (copy-on-write inside db_on_write / db_on_truncate), so the image is the
 * database exactly at the reported TXID.  In rollback journal modes the
 * image is taken between transactions (it waits for a writer that is
 * mid-transaction to commit or roll back, at most timeout_ms).  The
 * checksum of the copied pages is verified against the log's
 * post-checksum.  out_fd is not fsynced.  progress may be NULL.
 * 0; LV_ENOENT (no such SQLite database); LV_EBROKEN; LV_EBUSY (timed out
 * waiting for a transaction to end); LV_EMISMATCH (the copy does not match
 * the log: nothing is trustworthy, logged); LV_EIO / LV_ENOSPC writing out_fd. */
int dbreg_image(struct dbreg *r, const char *name, int out_fd, int timeout_ms, struct db_image_info *info,
                db_image_progress_fn progress, void *arg);

/* ---- Operations routed from the FUSE layer.  Each returns 0 (or a byte
 * count for writes) or a negative errno value for the FUSE reply. ---- */

/* May the file be opened?  -EIO if the database is broken (reason logged). */
int db_check_open(struct db *d);

/* A file of this database (kind) was created. */
void db_on_create(struct db *d, enum db_filekind kind);

/* Write len bytes of buf at off to fd (a backing file of kind). */
ssize_t db_on_write(struct db *d, enum db_filekind kind, int fd, const void *buf, size_t len, off_t off);

/* Truncate the backing file (fd >= 0, or path relative to rootfd) to size. */
int db_on_truncate(struct db *d, enum db_filekind kind, int fd, const char *rel, off_t size);

/* Unlink the backing file rel of kind (journal or wal; main files use dbreg_unlinked). */
int db_on_unlink(struct db *d, enum db_filekind kind, const char *rel);

/* Could a close(2) of a new handle on the main file end a transaction
 * (unjournaled writes: cp, journal_mode=OFF/MEMORY)?  0 only for a
 * WAL-mode database with content, where commits are seen in the WAL. */
int db_close_may_commit(struct db *d);

/* A handle of kind was flushed (close(2)): captures bulk writes (cp). */
int db_on_flush(struct db *d, enum db_filekind kind);

/* fsync the backing file fd of kind, making logged records durable first. */
int db_on_fsync(struct db *d, enum db_filekind kind, int fd, int datasync);
/* The -wal of d changed through the daemon (a write, truncate or
 * fallocate): a pre-sync no longer covers it (C11 of db.c).  No lock. */
void db_wal_changed(struct db *d);
/* The application closed a -wal descriptor fd of d: a pre-sync's error
 * owed to it is dropped (C11).  Takes d->mu. */
void db_wal_released(struct db *d, int fd);


/* ---- Replication: what src/replica drives on a replica, and the commit
 * notification the primary's stream waits on ---- */

/* Make the registry a replica of the primary at primary_url (copied; named
 * in the log line that refuses a write), or a primary again (NULL, the
 * default).  On a replica, applications' writes to a database, its
 * -journal or its -wal fail with EROFS (SQLite: an I/O error or
 * SQLITE_READONLY); reads, -shm traffic, creating an empty -wal and
 * deleting empty -wal/-journal files work, so readers open as usual.
 * Turning replica on checkpoints every non-empty -wal (frames of the time
 * this node was a primary) into its database file: call it before the
 * mount serves. */
void dbreg_set_replica(struct dbreg *r, const char *primary_url);

/* Is the registry a replica? */
int dbreg_is_replica(const struct dbreg *r);

/* Fence (1) or unfence (0) a primary whose lease is in doubt: while
 * fenced, applications' writes, truncations, journal commits, creations,
 * deletions and renames of databases fail with EROFS (SQLite: an I/O
 * error), so nothing is committed; reads and -shm traffic work.  Unlike
 * dbreg_set_replica it touches no file, so it may be called any time, from
 * any thread.  Returns once every write that passed the check before has
 * finished: after dbreg_set_fenced(r, 1), no new record is logged. */
void dbreg_set_fenced(struct dbreg *r, int fenced);

/* Run fn(arg, name, txid) after each application operation that logged a
 * record (TXID txid of database name), on the application's FUSE thread,
 * before the application learns the operation's result: the primary's
 * synchronous replication waits there for its replicas.  fn returns 0, or
 * nonzero to fail the operation (EIO: the commit is not acknowledged,
 * though it is in the log).  No lock is held during the call.  fn NULL
 * removes the hook; arg must stay valid until the hook is removed and no
 * operation is in flight (the mount is gone). */
void dbreg_set_commit_hook(struct dbreg *r, int (*fn)(void *arg, const char *name, uint64_t txid), void *arg);

/* Called by the FUSE layer at the end of every operation, with its result
 * rc: runs the commit hook for the record this thread logged during it,
 * if any.  Returns rc, or -EIO if the hook refused to acknowledge. */
int dbreg_commit_wait(struct dbreg *r, int rc);

/* Is the registry fenced (dbreg_set_fenced, or past its fence deadline)? */
int dbreg_is_fenced(const struct dbreg *r);

/* Refuse writes from lv_mono_us() == mono_us on, as if fenced (0: no
 * deadline): the lease's renewal deadline, checked by every write itself,
 * so a late fencing thread cannot let one through.  Any thread. */
void dbreg_set_fence_deadline(struct dbreg *r, int64_t mono_us);

/* The primary term (an etcd lease's revision; 0 under a static lease)
 * stamped on the records this node writes from now on: each record gets
 * max(term, its log's last term), so terms never go back (txlog L10).  Set
 * it before writes open in a new term.  Any thread. */
void dbreg_set_term(struct dbreg *r, uint64_t term);

/* The term dbreg_set_term set (0 before).  Any thread. */
uint64_t dbreg_term(const struct dbreg *r);

/* The mount point (copied), through which the applier takes SQLite's locks.
 * Set before any dbreg_apply*. */
void dbreg_set_mount(struct dbreg *r, const char *mountpoint);

/* Close the files the applier opened through the mount (call after the
 * replication client stopped, before the mount goes away). */
void dbreg_close_mount_fds(struct dbreg *r);

/* Kernel cache invalidation, provided by the FUSE layer (fs.c sets it):
 * ino is the FUSE node ID (st_ino of a file on the mount); off >= 0 and
 * len > 0 drop that byte range and the attributes; len 0 drops the whole
 * file.  inval_entry drops the dentry name in directory parent_ino. */
struct dbreg_inval {
    void (*inval)(void *arg, uint64_t ino, int64_t off, int64_t len);
    void (*inval_entry)(void *arg, uint64_t parent_ino, const char *name);
    void *arg;
};
void dbreg_set_inval(struct dbreg *r, const struct dbreg_inval *iv);

/* The commit sequence: +1 whenever any database logs a record, or is
 * created, deleted or renamed. */
uint64_t dbreg_commit_seq(struct dbreg *r);

/* Wait until the commit sequence differs from seen, at most timeout_ms.
 * Returns the current sequence. */
uint64_t dbreg_wait_commit(struct dbreg *r, uint64_t seen, int timeout_ms);

/* A record received from the primary: its decoded header and its bytes
 * exactly as stored in a log (header, payload, trailer), borrowed. */
struct db_rec {
    struct txlog_hdr h;   /* decoded header */
    const void *raw;      /* the record's bytes */
    size_t len;           /* their number */
};

/* What an apply cost (for /status and metrics). */
struct db_apply_stats {
    int64_t lock_wait_us;  /* waiting for SQLite's locks */
    int64_t apply_us;      /* writing, logging, invalidating, with the locks held */
    int wal_locks;         /* 1: applied under the -shm locks (WAL readers were present) */
};

/* Apply records recs[0..n-1] (consecutive TXIDs) of database name on a
 * replica, atomically for SQLite's readers: every page is decoded and the
 * chain checked (recs[0] continues the database's TXID and checksum; each
 * post checksum is verified) before anything is written; then, under
 * SQLite's locks taken through the mount (waiting at most wait_ms for
 * readers), the pages are written to the backing file, the changed ranges
 * invalidated in the kernel, the wal-index header bumped for WAL readers,
 * and the records appended to the replica's own log unchanged.  A record
 * with TXID 1 (or a SNAPSHOT record) for a database the replica lacks
 * creates it with the record's database ID.
 * 0; LV_EBUSY (readers kept the locks past wait_ms: nothing changed, try
 * again); LV_ECHAIN / LV_EGAP (the records do not continue this replica's
 * database: it needs a snapshot); LV_ECORRUPT / LV_EMISMATCH (a record is
 * damaged); LV_EBROKEN / LV_EIO / LV_ENOSPC (the database broke).  A
 * message naming the database and TXID goes to err. */
int dbreg_apply(struct dbreg *r, const char *name, const struct db_rec *recs, size_t n, int wait_ms,
                struct db_apply_stats *st, char *err, size_t errlen);

/* A snapshot being received (opaque). */
struct db_snap;

/* Start receiving a snapshot of database name: the image described by
 * info (ID, TXID, time, page size, pages, checksum).  Pages are staged in
 * data.dir/tmp.  0 or negative with a message in err. */
int dbreg_snap_begin(struct dbreg *r, const char *name, const struct db_image_info *info, struct db_snap **out,
                     char *err, size_t errlen);

/* Stage count pages (page size of the snapshot) starting at first_pgno. */
int dbreg_snap_pages(struct db_snap *s, uint32_t first_pgno, uint32_t count, const void *pages, char *err,
                     size_t errlen);

/* Verify the staged image against its checksum and install it: the
 * database (created if missing) becomes the image under SQLite's locks as
 * in dbreg_apply, its old log is retired, and a new log starts with one
 * SNAPSHOT record at the image's TXID.  Frees s whatever the result.
 * 0; LV_EBUSY (s is kept: call again); LV_EMISMATCH; other errors. */
int dbreg_snap_end(struct db_snap *s, int wait_ms, char *err, size_t errlen);

/* Drop a snapshot being received (frees s). */
void dbreg_snap_abort(struct db_snap *s);

/* The primary deleted database name: delete it here (file and log retired). */
int dbreg_apply_drop(struct dbreg *r, const char *name, char *err, size_t errlen);

/* The primary renamed database from -> to: do the same here. */
int dbreg_apply_rename(struct dbreg *r, const char *from, const char *to, char *err, size_t errlen);


/* ---- Seeding (restore --seed; restore/seed.c drives it, db_seed.c
 * implements it): install a database rebuilt from an archive so that the
 * daemon loads it at the archive's TXID, with the archive's database ID and
 * checksum, no reconcile record and no snapshot ---- */

struct cksum_map;

/* One database rebuilt from the archive. */
struct db_seed {
    const char *name;             /* database name (its path on the mount) */
    uint8_t id[16];               /* database ID (the one the archive's records carry) */
    uint64_t txid;                /* T: the file is the database just after TXID T (>= 1) */
    int64_t time_us;              /* T's commit time */
    uint64_t cksum;               /* database checksum at T */
    const struct cksum_map *map;  /* page checksums of the file (its page size and pages; total == cksum) */
};

/* Take data.dir's lock (data_dir/lock, flock'ed as dbreg_open does) into
 * *lockfd (close it to release).  0; LV_EBUSY when a daemon or another
 * seed holds it (message in err); or another negative error. */
int db_seed_lock(const char *data_dir, int *lockfd, char *err, size_t errlen);

/* Does data_dir/files hold any file (a database, or anything else)?
 * 1 with its name relative to files/ in what (size n), 0 (none, or no
 * files/ yet), or negative. */
int db_seed_dir_used(const char *data_dir, char *what, size_t n);

/* Install database s: file (complete and fsynced, on data_dir's file
 * system) becomes data_dir/files/NAME, and data_dir/meta/<escaped NAME>/
 * gets its id, its checksum state at T (s->map) and a log that continues
 * after T (txlog_base_create: no record is written).  The metadata is
 * built in stage_dir (a directory on the same file system, e.g. under
 * data_dir/tmp) and renamed into place first; the file's rename is the
 * commit point, so a database never appears without its metadata (a stale
 * metadata directory of the name, without a file, is moved to retired/).
 * Call with data_dir locked (db_seed_lock) and no daemon running.
 * 0; LV_EEXIST (files/NAME exists); LV_EINVAL (s inconsistent with the
 * file); other negative errors.  On failure nothing of s is installed and
 * file is left where it was.  Messages go to err. */
int db_seed_install(const char *data_dir, const struct db_seed *s, const char *file, const char *stage_dir,
                    char *err, size_t errlen);

/* db_seed_install for a running registry r (data.dir locked by r itself),
 * in replica mode -- as during a promotion, before writes open: under the
 * applier's lock, refuse a name data.dir/files holds (the database, or a
 * -wal, -journal or -shm of that name: LV_EEXIST, nothing done),
 * install s (file and stage_dir as for db_seed_install), then load it as
 * start-up does (its log base, state and a reconcile that writes nothing),
 * so that it serves reads at once, at TXID s->txid with ID s->id and
 * checksum s->cksum, and its next record is TXID s->txid + 1.  0; the
 * errors of db_seed_install (nothing installed); or LV_EBROKEN when the
 * installed database does not load as installed (it stays, refusing
 * access, with the reason in /status, as a database whose load fails at
 * start-up).  Messages go to err.  Everything is borrowed. */
int dbreg_seed_add(struct dbreg *r, const struct db_seed *s, const char *file, const char *stage_dir, char *err,
                   size_t errlen);

/* Remove database name installed by db_seed_install (seeding of several
 * databases failed later): files/NAME, the directories holding it that are
 * left empty, and its metadata directory.  0 or negative (logged). */
int db_seed_uninstall(const char *data_dir, const char *name);

#endif /* DB_H */
