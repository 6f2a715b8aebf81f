/*
 * txlog.h -- the transaction log: records, segments, writer and reader.
 *
 * Byte-level format: docs/FORMAT.md.  Summary: a segment file is a 64-byte
 * header followed by records.  A record is a 112-byte big-endian header
 * (with its own XXH3 checksum), a payload of (u32 pgno, page bytes) pairs in
 * increasing pgno order, compressed as one zstd frame, and an 8-byte
 * trailer holding XXH3-64 of the stored payload.  Records never span
 * segments.  Every record is checkable on its own.
 *
 * Ownership: handles are opaque and freed by their close function.  Page
 * pointers returned by readers are borrowed until the next call on that
 * reader.
 */
#ifndef TXLOG_H
#define TXLOG_H

#include <stddef.h>
#include <stdint.h>

#define TXLOG_HDR_SIZE 112     /* record header bytes */
#define TXLOG_TRAILER_SIZE 8   /* record trailer bytes */
#define TXLOG_SEG_HDR_SIZE 64  /* segment header bytes */

/* Record flags. */
#define TXLOG_F_SNAPSHOT 0x0001  /* holds every page 1..db_pages; apply onto an empty file */
#define TXLOG_F_RECOVERED 0x0002 /* written by start-up reconcile, not seen live */

#define TXLOG_COMP_NONE 0
#define TXLOG_COMP_ZSTD 1

/* Decoded record header. */
struct txlog_hdr {
    uint16_t version;     /* record format version (2; 1 is read, with term 0) */
    uint16_t flags;       /* TXLOG_F_* */
    uint8_t dbid[16];     /* database ID */
    uint64_t txid;        /* transaction ID, 1-based, +1 per record */
    int64_t time_us;      /* commit time, microseconds since epoch, UTC */
    uint32_t page_size;   /* page size after the commit */
    uint32_t db_pages;    /* database size in pages after the commit */
    uint32_t npages;      /* pages carried in the payload */
    uint8_t comp;         /* TXLOG_COMP_* */
    uint64_t pre_cksum;   /* database checksum before */
    uint64_t post_cksum;  /* database checksum after */
    uint64_t stored_len;  /* payload bytes as stored */
    uint64_t raw_len;     /* payload bytes uncompressed = npages * (4 + page_size) */
    uint32_t wal_salt1;   /* WAL salt-1 of the commit frame, 0 if not from a WAL */
    uint32_t wal_salt2;   /* WAL salt-2 of the commit frame */
    uint32_t wal_frame;   /* 1-based index of the WAL commit frame, 0 if none */
    uint64_t term;        /* primary term that wrote it (etcd revision), 0: none; <= TXLOG_TERM_MAX */
};

#define TXLOG_TERM_MAX ((UINT64_C(1) << 56) - 1) /* terms are 56 bits in the record header */

/* Encode h into out[TXLOG_HDR_SIZE], computing the header checksum. */
void txlog_hdr_encode(const struct txlog_hdr *h, uint8_t out[TXLOG_HDR_SIZE]);

/* Decode and check magic, version, header checksum and length sanity.
 * 0 or LV_ECORRUPT / LV_EVERSION. */
int txlog_hdr_decode(const uint8_t in[TXLOG_HDR_SIZE], struct txlog_hdr *h);

/* ---- Writer: appends records to the segment files in one directory ---- */

struct txlog;

/* Facts about the log found by txlog_open. */
struct txlog_tail {
    uint64_t first_txid;   /* first TXID present (0 if empty) */
    uint64_t last_txid;    /* last TXID (0 if empty) */
    uint64_t last_post;    /* post checksum of the last record (0 if empty) */
    int64_t last_time_us;  /* commit time of the last record */
    uint32_t last_page_size; /* page size of the last record */
    uint32_t last_db_pages;  /* db size of the last record */
    uint32_t last_wal_salt1, last_wal_salt2, last_wal_frame; /* WAL position of the last record */
    uint64_t last_term;    /* term of the last record (0 if empty, or after a base file) */
    uint64_t torn_bytes;   /* bytes of an incomplete final record that were cut off */
    uint64_t total_bytes;  /* bytes in all segments */
    uint32_t nsegments;    /* number of segment files */
};

/* Open (creating dir if needed) the log in dir for database dbid.  Scans
 * and verifies every segment (headers, payload checksums, TXID continuity,
 * checksum chain).  An incomplete final record in the last segment is cut
 * off (reported in tail->torn_bytes); any other damage returns
 * LV_ECORRUPT and writes a message naming the segment, offset and TXID
 * into err.  seg_size is the roll-over size.  *out is freed by txlog_close. */
int txlog_open(const char *dir, const uint8_t dbid[16], uint64_t seg_size,
               struct txlog **out, struct txlog_tail *tail, char *err, size_t errlen);

/* Reserve room for the next record, of TXID txid and with at most raw_len
 * bytes of raw payload (npages x (4 + page size)): its segment is chosen
 * now (rolling over if it would not fit) and the blocks it may need are
 * allocated ahead with fallocate(KEEP_SIZE), so that its append cannot
 * fail for lack of space (L9 of txlog.c).  Cheap when the reservation
 * already covers raw_len.  0; LV_ENOSPC when the space cannot be had; 0
 * too when the file system cannot preallocate (the append then takes its
 * chances); or another negative error. */
int txlog_reserve(struct txlog *l, uint64_t txid, uint64_t raw_len);

/* Start a record.  h->txid, time, sizes, flags and checksums must be set;
 * npages/lengths are filled in by txlog_append_end. */
int txlog_append_begin(struct txlog *l, const struct txlog_hdr *h);

/* Add one page (pgno strictly greater than the previous one in this record). */
int txlog_append_page(struct txlog *l, uint32_t pgno, const void *data);

/* Finish the record (written with write(2), not fsynced).  0 or negative;
 * on failure the partial record is removed, or the log turns broken. */
int txlog_append_end(struct txlog *l);

/* Drop a record begun but not ended. */
void txlog_append_abort(struct txlog *l);

/* fsync the current segment (and its directory if it is new).  0 or negative. */
int txlog_sync(struct txlog *l);

/* A log fsync that runs without the owner's lock, in three steps:
 * txlog_sync_begin (under the lock) notes what is written now;
 * txlog_sync_run (no lock; l may take appends meanwhile) fdatasyncs it;
 * txlog_sync_end (under the lock) accounts for it and releases the job.
 * Every record complete at begin is durable once run returned 0 (earlier
 * segments were fdatasynced at roll-over).  A failed run breaks the log. */
struct txlog_syncjob {
    int fd;                 /* the segment opened again, read-only (owned), -1 if none */
    char *path;             /* the segment's path (owned) */
    int dir;                /* its directory needs an fsync too */
    uint64_t wgen;          /* the writer's write generation at begin */
    uint64_t seg_first;     /* the segment's first TXID */
};
/* 1: j holds a job (run it, then end it); 0: nothing to sync; negative:
 * the log is broken or out of resources (j holds nothing). */
int txlog_sync_begin(struct txlog *l, struct txlog_syncjob *j);
/* fdatasync j's segment (and directory).  0 or negative. */
int txlog_sync_run(struct txlog_syncjob *j);
/* Account for rc (run's result) and free j's resources.  0, or the
 * log's sticky error. */
int txlog_sync_end(struct txlog *l, struct txlog_syncjob *j, int rc);
/* Free j's resources without accounting (its log was closed meanwhile). */
void txlog_sync_release(struct txlog_syncjob *j);

/* Sticky error: 0 if healthy, else the error that broke the log. */
int txlog_error(const struct txlog *l);

/* TXID of the last complete record (0 if the log is empty). */
uint64_t txlog_last_txid(const struct txlog *l);

/* Term of the last complete record (0 if none, or a version 1 record). */
uint64_t txlog_last_term(const struct txlog *l);

/* Bytes written since open (for metrics). */
uint64_t txlog_bytes_written(const struct txlog *l);

/* Close and free (does not fsync). */
void txlog_close(struct txlog *l);

/* ---- Reader: streams records from a directory of segments ---- */

struct txlog_reader;

/* Open a reader over the segments in dir, positioned at the first record
 * with TXID >= from_txid.  *out is freed by txlog_reader_close. */
int txlog_reader_open(const char *dir, uint64_t from_txid, struct txlog_reader **out);

/* Open a reader over one in-memory segment image (borrowed, must outlive the
 * reader); name is used in error messages. */
int txlog_reader_open_mem(const void *buf, size_t len, const char *name, struct txlog_reader **out);

/* Advance to the next record and decode its header into *h.  Checks the
 * header checksum.  0, LV_ENOENT at the end, or LV_ECORRUPT. */
int txlog_reader_next(struct txlog_reader *r, struct txlog_hdr *h);

/* Next page of the current record: *pgno and a borrowed pointer to
 * page_size bytes.  0, LV_ENOENT after the last page (the payload checksum
 * has then been verified), or LV_ECORRUPT. */
int txlog_reader_page(struct txlog_reader *r, uint32_t *pgno, const void **data);

/* Name of the segment and byte offset of the current record, for errors. */
const char *txlog_reader_where(const struct txlog_reader *r, uint64_t *offset);

/* Message of the reader's last failure ("" if none; borrowed until the next call). */
const char *txlog_reader_error(const struct txlog_reader *r);

/* Close and free. */
void txlog_reader_close(struct txlog_reader *r);

/* ---- Segment images (archiver) ---- */

/* Build in memory a segment image (the "Segment file" format) holding the
 * records from_txid..to_txid of the log in dir, copied byte for byte
 * (header, stored payload, trailer; never recompressed).  The image's
 * segment header names dbid and first TXID from_txid.  to_txid 0 means "up
 * to the end of the log"; the image also ends early at the end of the log
 * and, at a record boundary, before the record that would make it larger
 * than max_bytes (0: no bound) -- but it always holds at least one record.
 * Each copied record's header checksum, database ID, payload trailer, TXID
 * continuity and checksum chain are verified; damage gives LV_ECORRUPT (or
 * LV_EVERSION) with an LV_ERROR message naming the segment file and TXID.
 * Safe while the writer appends: an incomplete final record is treated as
 * not written yet.  On success *out (malloc'ed, caller frees) and *len hold
 * the image and *last_txid the last TXID copied.  LV_ENOENT if from_txid is
 * not in the log (pruned, or not written yet), LV_EINVAL for from_txid 0 or
 * to_txid < from_txid. */
int txlog_segment_image(const char *dir, const uint8_t dbid[16], uint64_t from_txid, uint64_t to_txid,
                        uint64_t max_bytes, void **out, size_t *len, uint64_t *last_txid);

/* ---- Applying records to a database file (replay, archive restore) ---- */

/* A database file being rebuilt record by record (opaque). */
struct txlog_apply;

/* Where an apply handle stands. */
struct txlog_apply_info {
    int have;             /* at least one record was applied */
    int dirty;            /* a record failed after it may have changed the file: start over */
    uint64_t txid;        /* TXID of the last applied record (0 if none) */
    uint64_t post_cksum;  /* its post checksum */
    int64_t time_us;      /* its commit time */
    uint32_t page_size;   /* current page size (0 if unknown) */
    uint32_t db_pages;    /* current database size in pages */
    uint64_t db_cksum;    /* database checksum of the pages written (== post_cksum unless dirty) */
};

/* Start rebuilding into fd (an empty file opened read-write; path names it
 * in messages; both borrowed for the handle's life).  *out is freed by
 * txlog_apply_close.  0 or LV_ENOMEM. */
int txlog_apply_open(int fd, const char *path, struct txlog_apply **out);

/* Call fn(arg, bytes) with the total page bytes written to the file so far,
 * every 8 MiB while records are applied (for a progress bar; fn runs on the
 * applying thread and must not call back into a).  fn NULL: no calls. */
void txlog_apply_set_progress(struct txlog_apply *a, void (*fn)(void *arg, uint64_t bytes), void *arg);

/* Apply the record whose header h was just returned by txlog_reader_next
 * on r, reading its pages from r: checks that the first record is TXID 1
 * or a SNAPSHOT, TXID continuity (LV_EGAP), pre checksum == current
 * database checksum (LV_ECHAIN; not for a snapshot starting the file),
 * page size changes only in a snapshot, every page (the reader verifies
 * the payload), then writes pages at (pgno-1)*page_size, truncates to
 * db_pages*page_size and checks the post checksum (LV_EMISMATCH).  On
 * failure a message naming the object/segment, offset and TXID is written
 * to err; if the file may already have changed the handle turns dirty. */
int txlog_apply_record(struct txlog_apply *a, struct txlog_reader *r, const struct txlog_hdr *h, char *err,
                       size_t errlen);

/* Current state into *info. */
void txlog_apply_state(const struct txlog_apply *a, struct txlog_apply_info *info);

/* fsync the file, re-read it and check its database checksum equals the
 * last post checksum.  0, LV_EMISMATCH, LV_ENOENT (nothing applied),
 * LV_EBROKEN (dirty) or an I/O error, with a message in err. */
int txlog_apply_finish(struct txlog_apply *a, char *err, size_t errlen);

/* Free the handle (does not close the fd). */
void txlog_apply_close(struct txlog_apply *a);

struct cksum_map;

/* The page checksums of the file as built (borrowed until the next call on
 * a).  After a record was applied and the handle is not dirty, they
 * describe the file's pages and their XOR is the last post checksum (A1
 * of txlog_apply.c): a restore hands them on instead of reading the file
 * again. */
const struct cksum_map *txlog_apply_map(const struct txlog_apply *a);
/* ---- Pruning (archiver) ---- */

/* Delete whole segment files of the log in dir whose records all have
 * TXID <= upto_txid, oldest first, never the newest segment (the one the
 * writer appends to), nor the one before it while the newest holds no
 * record (the log's last record stays).  A segment's last TXID is the next segment's first
 * TXID - 1.  *removed_bytes (may be NULL) gets the bytes freed.  Returns
 * the number of segments removed (>= 0) or a negative LV_E*. */
int txlog_prune(const char *dir, uint64_t upto_txid, uint64_t *removed_bytes);

/* Bytes and first TXID of the segment files in dir (first_txid 0 if none). */
int txlog_dir_usage(const char *dir, uint64_t *bytes, uint64_t *first_txid);

/* ---- Base: a log that continues a history kept elsewhere (a database
 * seeded from an archive; txlog_base.c, docs/FORMAT.md "Base file") ---- */

/* The last record of that history, as far as the log needs it. */
struct txlog_base {
    uint8_t dbid[16];     /* database ID */
    uint64_t txid;        /* T: the last TXID of the history (>= 1); the log continues at T+1 */
    int64_t time_us;      /* T's commit time */
    uint32_t page_size;   /* page size after T */
    uint32_t db_pages;    /* database size in pages after T */
    uint64_t post_cksum;  /* database checksum after T */
};

/* Make dir (created if missing; it must hold no segment: LV_EEXIST) the
 * log of a database whose history up to b->txid lives elsewhere: the file
 * dir/base (published atomically) and an empty segment named b->txid + 1,
 * fsynced.  txlog_open then reports b as the last record (tail->last_txid,
 * last_post, ...) while the log holds no record, so the next record
 * appended is TXID b->txid + 1 with pre checksum b->post_cksum.  0 or
 * negative with a message in err. */
int txlog_base_create(const char *dir, const struct txlog_base *b, char *err, size_t errlen);

/* Read dir/base into *b, checking it belongs to dbid.  0; LV_ENOENT (no
 * base file); LV_ECORRUPT / LV_EVERSION / an I/O error, with a message in
 * err. */
int txlog_base_load(const char *dir, const uint8_t dbid[16], struct txlog_base *b, char *err, size_t errlen);

/* ---- Replay ---- */

/* Rebuild the database as of target_txid (0 = last) from the log in dir
 * into out_path (written to a temporary file beside it, verified, and
 * published with publish.h: fsync, rename, directory fsync).
 * Checks every record checksum, TXID continuity, the pre/post chain and
 * the final database checksum.  On success *txid_out and *cksum_out get the
 * TXID and checksum reached.  Messages go to err. */
int txlog_replay(const char *dir, uint64_t target_txid, const char *out_path,
                 uint64_t *txid_out, uint64_t *cksum_out, char *err, size_t errlen);


/* ---- Raw records (replication: a record travels from the primary's log
 * to a replica's log byte for byte) ---- */

/* The current record (just returned by txlog_reader_next) exactly as
 * stored: header, stored payload and trailer, into *out (malloc'ed,
 * caller frees) and *len.  Verifies the trailer.  The reader moves past
 * the record (txlog_reader_page then returns LV_ENOENT).  0, LV_ECORRUPT
 * or LV_ENOMEM. */
int txlog_reader_raw(struct txlog_reader *r, void **out, size_t *len);

/* Check a raw record without decompressing it: header checksum and
 * fields, lengths, trailer.  *h receives the header.  0 or LV_ECORRUPT /
 * LV_EVERSION with a message in err. */
int txlog_record_check(const void *rec, size_t len, struct txlog_hdr *h, char *err, size_t errlen);

/* Check a raw record (header checksum, lengths, trailer) and decode its
 * pages, calling fn(arg, pgno, page) for each in order (page borrowed for
 * the call; fn returns 0 or a negative error that stops the walk).  *h
 * receives the header.  0, LV_ECORRUPT / LV_EVERSION (message in err),
 * LV_ENOMEM, or fn's error. */
int txlog_record_pages(const void *rec, size_t len, struct txlog_hdr *h,
                       int (*fn)(void *arg, uint32_t pgno, const void *page), void *arg, char *err, size_t errlen);

/* Append a raw record unchanged: checks it as txlog_record_pages does
 * (without decompressing), its database ID, TXID continuity (last + 1; any
 * TXID when the log is empty) and chain (pre checksum == the last record's
 * post).  Written with write(2), not fsynced.  0 or negative (LV_EGAP,
 * LV_ECHAIN, LV_ECORRUPT, LV_EIO, LV_ENOSPC). */
int txlog_append_raw(struct txlog *l, const void *rec, size_t len);

/* Append n consecutive raw records (recs[i], lens[i] bytes; borrowed), each
 * checked as txlog_append_raw does, with one write when they fit in the
 * current segment (else one by one).  All or, on an error, a prefix of them
 * is appended: txlog_last_txid says how far.  0 or negative as above. */
int txlog_append_raws(struct txlog *l, const void *const *recs, const size_t *lens, size_t n);

#endif /* TXLOG_H */
