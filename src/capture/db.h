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

struct dbreg;
struct db;

/* What the registry needs of the configuration (copied by dbreg_open). */
struct dbreg_opts {
    const char *data_dir;   /* data.dir: backing files, logs and state */
    int64_t segment_size;   /* data.segment-size: bytes before a log segment rolls over */
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
    uint64_t saved_txid;    /* TXID of the persisted checksum state (records after it are needed at start-up) */
    int broken;             /* 1: the database refuses access */
};

/* Copy the state of every SQLite database (not plain files) into *out,
 * a malloc'ed array of *n entries sorted by name (caller frees).  A
 * consistent copy per database; databases may change right after.
 * 0 or LV_ENOMEM. */
int dbreg_list(struct dbreg *r, struct db_info **out, size_t *n);

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

#endif /* DB_H */
