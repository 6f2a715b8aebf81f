/*
 * wal.h -- reading SQLite WAL files (format: sqlite.org/fileformat.html#wal).
 *
 * Used by start-up recovery to find the transactions committed in a WAL,
 * validating the header checksum, salts and the cumulative frame checksum
 * chain exactly as SQLite's recovery does; wal_read_commits reads on from
 * where it stopped (a cursor), for a reader that follows a live WAL.  Live capture does not use the
 * checksums (SQLite rewrites them after the commit frame; see db.c).
 */
#ifndef WAL_H
#define WAL_H

#include <stdint.h>
#include <stddef.h>

#define WAL_HDR_SIZE 32
#define WAL_FRAME_HDR_SIZE 24
#define WAL_MAGIC_LE 0x377f0682u
#define WAL_MAGIC_BE 0x377f0683u

/* A decoded WAL header. */
struct wal_hdr {
    uint32_t magic;      /* WAL_MAGIC_LE or WAL_MAGIC_BE */
    uint32_t version;    /* 3007000 */
    uint32_t page_size;  /* bytes per page (65536 stored as 65536) */
    uint32_t ckpt_seq;   /* checkpoint sequence */
    uint32_t salt1, salt2; /* salts copied into every valid frame */
    uint32_t ck1, ck2;   /* checksum of bytes 0..23 */
};

/* Decode 32 header bytes; 0 if magic, version, page size and checksum are valid, else LV_ECORRUPT. */
int wal_hdr_decode(const uint8_t *b, struct wal_hdr *h);

/* One committed transaction found by wal_scan: frames [first, last] (0-based). */
struct wal_commit {
    uint32_t first;      /* first frame of the transaction */
    uint32_t last;       /* its commit frame */
    uint32_t db_pages;   /* database size in pages after it */
    uint32_t ck[2];      /* the checksum chain after its commit frame (a cursor's s just past it) */
};

/* Where a reader of a WAL stands: just after the last commit frame it
 * returned.  Zero it before the first read. */
struct wal_cursor {
    struct wal_hdr h;    /* the generation being read (h.magic 0: none yet) */
    uint32_t next;       /* the frame after the last commit returned */
    uint32_t s[2];       /* the checksum chain after frame next-1 (the header's when next is 0) */
};

/* Read the transactions committed in the WAL at fd after c's position, in
 * order, into *out (malloc'ed, caller frees; NULL when *n is 0) and move c
 * past them.  Validates as SQLite's recovery does (header checksum, salts,
 * the cumulative frame checksums) and stops at the first frame that is not
 * valid -- yet: a frame being written by a live writer is read again next
 * time.  A header of another generation (a WAL restart) moves c to its
 * frame 0 and sets *restarted (when c had a generation); an absent,
 * short or invalid header returns n = 0 and leaves c alone.  path names fd
 * in log lines.  0, LV_ENOMEM, or LV_EIO on read errors. */
int wal_read_commits(int fd, const char *path, struct wal_cursor *c, struct wal_commit **out, size_t *n,
                     int *restarted);

/* WAL bytes a reader keeps in memory: [off, off + len) of the file. */
struct wal_frames {
    uint8_t *buf;        /* the bytes (owned; free with free()) */
    size_t len, cap;     /* used and allocated */
    uint64_t off;        /* file offset of buf[0] */
    int full;            /* WAL_KEEP_MAX reached: the frames after buf are not kept */
};
#define WAL_KEEP_MAX (16u << 20) /* bytes of frames wal_read_commits_keep keeps, at most */

/* wal_read_commits that also keeps, in *keep (reset first; NULL: not
 * kept), the frames of the commits it returns, exactly as it read and
 * validated them: a reader that logs them needs not read them again. */
int wal_read_commits_keep(int fd, const char *path, struct wal_cursor *c, struct wal_commit **out, size_t *n,
                          int *restarted, struct wal_frames *keep);

/* Scan the WAL open on fd from its start: the committed transactions, as
 * wal_read_commits with a zeroed cursor, and the header in *h (zeroed when
 * the WAL has no valid header).  An absent/empty/invalid WAL yields n = 0
 * and returns 0 (SQLite ignores it too); LV_EIO on read errors. */
int wal_scan(int fd, const char *path, struct wal_hdr *h, struct wal_commit **out, size_t *n);

/* 1 if frame k's header fh (not necessarily written yet) checksums correctly
 * over the page bytes now in the WAL file at fd, continuing the chain from
 * frame k-1's stored checksum (or the WAL header's for k = 0). */
int wal_frame_valid(int fd, uint32_t magic, uint32_t ps, uint32_t k, const uint8_t fh[WAL_FRAME_HDR_SIZE]);

/* Byte offset of frame i's header for page size ps. */
static inline uint64_t wal_frame_off(uint32_t i, uint32_t ps) { return WAL_HDR_SIZE + (uint64_t)i * (WAL_FRAME_HDR_SIZE + ps); }

#endif /* WAL_H */
