/*
 * txlog_impl.h -- what the files of the txlog module share and nobody else
 * sees: format constants, the segment header, segment file names and
 * listing, byte sources (a segment file or an in-memory image), and the
 * record link check that the start-up scan, the reader and the segment
 * image builder all apply.  Internal to src/log/txlog*.c.
 *
 * The module (design comment in txlog.c):
 *   txlog.c         record and segment header encoding, the link check
 *   txlog_seg.c     segment files: names, listing, byte sources, hashing
 *   txlog_writer.c  the writer: append_begin/page/end, sync, close
 *   txlog_scan.c    txlog_open: the start-up scan that verifies a log
 *   txlog_reader.c  the streaming reader (directory or memory image)
 *   txlog_apply.c   applying records to a database file; txlog_replay
 *   txlog_image.c   segment images for the archiver
 *   txlog_prune.c   pruning and disk usage
 *   txlog_base.c    the base file: a log continuing a history kept elsewhere
 */
#ifndef TXLOG_IMPL_H
#define TXLOG_IMPL_H

#include "log/txlog.h"

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

#define TXLOG_SEG_MAGIC "LVTXSEG1"
#define TXLOG_SEG_VERSION 1u
#define TXLOG_REC_MAGIC 0x4C565243u
#define TXLOG_REC_VERSION 2u /* 2: the term; version 1 records are read (term 0) */
#define TXLOG_ZSTD_LEVEL -1
#define TXLOG_RAW_MAX (1u << 20)    /* raw payload bytes buffered before streaming */
#define TXLOG_OUT_CHUNK (1u << 20)  /* streamed output written per pwrite */
#define TXLOG_IO_CHUNK (1u << 20)   /* bytes per pread when hashing or replaying */
#define TXLOG_RD_CHUNK (128u << 10) /* reader input buffer */
#define TXLOG_KNOWN_FLAGS (TXLOG_F_SNAPSHOT | TXLOG_F_RECOVERED)

/* ---- Encoding (txlog.c) ---- */

/* Segment header fields. */
struct txlog_seg_hdr {
    uint8_t dbid[16];  /* database ID */
    uint64_t first;    /* first TXID */
    int64_t ctime_us;  /* creation time */
};

void txlog_seg_hdr_encode(const struct txlog_seg_hdr *s, uint8_t out[TXLOG_SEG_HDR_SIZE]);

/* 0, LV_ECORRUPT or LV_EVERSION. */
int txlog_seg_hdr_decode(const uint8_t in[TXLOG_SEG_HDR_SIZE], struct txlog_seg_hdr *s);

/* Are the n bytes at p all zero? */
int txlog_all_zero(const uint8_t *p, size_t n);

/*
 * The chain every reader of a log checks, record by record (invariants L1
 * and L2 of txlog.c): a record carries the log's database ID, the first
 * record of a segment carries the segment's first TXID, and each record
 * continues the previous one (TXID + 1, pre checksum == previous post
 * checksum).  One struct per reader; no locking (one thread).
 */
struct txlog_link {
    const uint8_t *dbid;  /* the database ID records must carry (borrowed) */
    int have;             /* a record was seen */
    uint64_t prev_txid;   /* TXID of the last record seen (when have) */
    uint64_t prev_post;   /* its post checksum (when have) */
    uint64_t prev_term;   /* its term (when have), L10 */
};

/* Check h against lk (nrec: records seen so far in this segment, whose
 * header names first TXID seg_first).  0, or LV_ECORRUPT with the reason
 * in what (n bytes) for the caller to report with file, offset and TXID. */
int txlog_link_check(const struct txlog_link *lk, uint32_t nrec, uint64_t seg_first, const struct txlog_hdr *h,
                     char *what, size_t n);

/* h was accepted: the next record must follow it. */
void txlog_link_advance(struct txlog_link *lk, const struct txlog_hdr *h);

/* ---- Segment files and byte sources (txlog_seg.c) ---- */

/* malloc'ed "<dir>/<016x>.lvseg" (caller frees) or NULL. */
char *txlog_seg_path(const char *dir, uint64_t first);

/* Sorted first TXIDs of the segments in dir into *out (malloc'ed, caller
 * frees; NULL when none) and *n.  0, LV_ENOENT if dir is missing, or
 * negative. */
int txlog_seg_list(const char *dir, uint64_t **out, size_t *n);

/* Byte source for the scan and the reader: a file or a memory image. */
struct txlog_src {
    int fd;               /* open segment, or -1 for memory */
    const uint8_t *mem;   /* memory image (borrowed), NULL for a file */
    uint64_t size;        /* bytes available */
    char *name;           /* path or display name (owned) */
};

/* Read len bytes at off; LV_ECORRUPT if they are not all within size. */
int txlog_src_read(const struct txlog_src *s, uint64_t off, void *buf, size_t len);

/* Close the file and free the name; s is then empty. */
void txlog_src_close(struct txlog_src *s);

/* XXH3-64 of len bytes of s at off, read in chunks through buf
 * (TXLOG_IO_CHUNK bytes) with the caller's hash state st. */
int txlog_src_hash(const struct txlog_src *s, uint64_t off, uint64_t len, uint8_t *buf, XXH3_state_t *st,
                   uint64_t *out);

/* Is there a decodable record header of database dbid anywhere in
 * s[from, size)?  Tells a torn tail from a damaged header followed by
 * good records.  buf: TXLOG_IO_CHUNK bytes of scratch. */
int txlog_src_header_after(const struct txlog_src *s, uint64_t from, const uint8_t dbid[16], uint8_t *buf);

/* fstat size of fd (path names it in messages); 0 or negative. */
int txlog_fd_size(int fd, const char *path, uint64_t *size);

/* Grow *buf to at least need bytes (doubling from 8 KiB); 0 or LV_ENOMEM. */
int txlog_grow(uint8_t **buf, size_t *cap, size_t need);

/* ---- Start-up scan (txlog_scan.c), used by txlog_open ---- */

/* The newest segment, verified and left open for the writer. */
struct txlog_newest {
    int fd;          /* open read-write, or -1 when the log has no segment */
    char *path;      /* its path (malloc'ed; the writer takes it over) */
    uint64_t first;  /* its first TXID */
    uint64_t end;    /* end of its last complete record (torn tail cut off) */
};

/* Create dir if needed and verify every segment in it for database dbid
 * (see txlog_scan.c); fill *tail, and *nw with the newest segment.  0, or
 * LV_ECORRUPT / LV_EVERSION / an I/O error with a message in err naming
 * the segment, offset and TXID.  On failure nothing is left open. */
int txlog_scan(const char *dir, const uint8_t dbid[16], struct txlog_tail *tail, struct txlog_newest *nw,
               char *err, size_t errlen);

/* ---- Base file (txlog_base.c), used by txlog_scan ---- */

/* The scan found no record in dir: if dir/base exists and no segment names
 * another next TXID than its TXID + 1 (nw: the newest segment, fd -1 if
 * none), fill *tail as if its record were the last.  0 (also when there is
 * no base, or it does not apply: logged), or LV_ECORRUPT / LV_EVERSION /
 * an I/O error with a message in err. */
int txlog_base_adopt(const char *dir, const uint8_t dbid[16], struct txlog_tail *tail, const struct txlog_newest *nw,
                     char *err, size_t errlen);

#endif /* TXLOG_IMPL_H */
