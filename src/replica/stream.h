/*
 * stream.h -- the replication stream's frames: encoder and incremental
 * decoder (byte-level format: docs/FORMAT.md, "Replication stream").
 *
 * The primary answers POST /v1/stream with one long-lived HTTP response
 * whose body is a sequence of frames.  Every frame is a 16-byte header
 * followed by a payload:
 *
 *   0  u32 magic 0x4C565346 ("LVSF"), big-endian like every integer here
 *   4  u8  type (enum stream_type)
 *   5  u8  flags (0; a decoder refuses others)
 *   6  u16 reserved (0)
 *   8  u32 payload length in bytes
 *  12  u32 XXH32 of bytes 0..11 (seed 0)
 *
 * Payloads (NAME = u16 length n, 1..4095, then n bytes of a database name
 * relative to the mount root, no NUL, no leading '/', no empty, "." or ".."
 * component):
 *   HELLO       JSON object (UTF-8, not empty): {"version":1,"cluster":
 *               "<32 hex>","node":"<id>","url":"<advertise url>","time_us":N}
 *               (the decoder checks UTF-8 and no NUL; the replica parses it)
 *   RECORD      NAME, then one txlog record exactly as stored in the log
 *               (112-byte header, stored payload, 8-byte trailer); the
 *               decoder checks the header checksum, that the lengths add
 *               up, and the trailer (XXH3-64 of the stored payload)
 *   SNAP_BEGIN  NAME, dbid[16], u64 txid (>= 1), i64 time_us, u32 page_size
 *               (a power of two in 512..65536), u32 db_pages, u64 cksum
 *               (database checksum at txid)
 *   SNAP_PAGES  NAME, u32 first_pgno (1-based), u32 count, then count
 *               pages of the SNAP_BEGIN's page size (the decoder derives
 *               the page size from the length and checks it is a power of
 *               two between 512 and 65536)
 *   SNAP_END    NAME
 *   HEARTBEAT   i64 time_us (the primary's clock), u64 commit sequence
 *   DROP        NAME (the database was deleted on the primary)
 *   RENAME      NAME (from), NAME (to)
 *   ERROR       UTF-8 text, may be empty (the primary gives up; the
 *               connection ends)
 */
#ifndef STREAM_H
#define STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "log/txlog.h"

#define STREAM_MAGIC 0x4C565346u
#define STREAM_HDR_SIZE 16
#define STREAM_NAME_MAX 4095
#define STREAM_DEFAULT_MAX_FRAME (256u << 20) /* payload bytes a decoder accepts by default */

enum stream_type {
    ST_HELLO = 1,
    ST_RECORD = 2,
    ST_SNAP_BEGIN = 3,
    ST_SNAP_PAGES = 4,
    ST_SNAP_END = 5,
    ST_HEARTBEAT = 6,
    ST_DROP = 7,
    ST_RENAME = 8,
    ST_ERROR = 9,
};

/* A decoded frame.  Every pointer is borrowed from the decoder and valid
 * until the next stream_dec_next or stream_dec_free (stream_dec_push does
 * not move them). */
struct stream_frame {
    enum stream_type type;   /* which frame */
    const char *name;        /* NAME (NUL-terminated), or the RENAME's from; NULL if the type has none */
    const char *name2;       /* RENAME: to; else NULL */
    /* RECORD */
    struct txlog_hdr hdr;    /* decoded record header */
    const uint8_t *rec;      /* the whole record (header, payload, trailer) */
    size_t rec_len;          /* its length */
    /* SNAP_BEGIN */
    uint8_t dbid[16];        /* database ID */
    uint64_t txid;           /* SNAP_BEGIN: TXID of the image */
    int64_t time_us;         /* SNAP_BEGIN: its commit time; HEARTBEAT: the primary's clock */
    uint32_t page_size;      /* SNAP_BEGIN / SNAP_PAGES: page size */
    uint32_t db_pages;       /* SNAP_BEGIN: pages in the image */
    uint64_t cksum;          /* SNAP_BEGIN: database checksum of the image */
    uint64_t term;           /* SNAP_BEGIN: term of the image's TXID (0: none, or a version 1 primary) */
    /* SNAP_PAGES */
    uint32_t first_pgno;     /* first page number */
    uint32_t count;          /* pages that follow */
    const uint8_t *pages;    /* count * page_size bytes */
    /* HEARTBEAT */
    uint64_t seq;            /* the primary's commit sequence */
    /* HELLO (JSON) and ERROR (text), NUL-terminated */
    const char *text;        /* payload as a string */
    size_t text_len;         /* its length */
};

/* 1 if name follows the NAME rules (FORMAT.md: a database's path on the
 * mount, relative, no empty, "." or ".." component, 1..4095 bytes), else 0. */
int stream_name_ok(const char *name);

/* ---- Encoder: each call returns a whole frame (header and payload) in a
 * malloc'ed buffer *out of *len bytes (caller frees; NULL and 0 on
 * failure).  0, LV_EINVAL (a bad name, field or length -- whatever a
 * decoder would refuse -- or a payload over STREAM_DEFAULT_MAX_FRAME: a
 * record that large must go as a snapshot) or LV_ENOMEM.  A RECORD's
 * header and lengths are checked, not its trailer (txlog_reader_raw
 * verified it). ---- */

/* The 16-byte header of a frame of type and payload length len. */
void stream_hdr_encode(uint8_t out[STREAM_HDR_SIZE], enum stream_type type, uint32_t len);

int stream_enc_text(enum stream_type type, const char *text, uint8_t **out, size_t *len); /* HELLO, ERROR */
int stream_enc_record(const char *name, const void *rec, size_t rec_len, uint8_t **out, size_t *len);
int stream_enc_snap_begin(const char *name, const uint8_t dbid[16], uint64_t txid, int64_t time_us,
                          uint32_t page_size, uint32_t db_pages, uint64_t cksum, uint64_t term, uint8_t **out,
                          size_t *len);
int stream_enc_snap_pages(const char *name, uint32_t first_pgno, uint32_t count, uint32_t page_size,
                          const void *pages, uint8_t **out, size_t *len);
int stream_enc_name(enum stream_type type, const char *name, uint8_t **out, size_t *len); /* SNAP_END, DROP */
int stream_enc_rename(const char *from, const char *to, uint8_t **out, size_t *len);
int stream_enc_heartbeat(int64_t time_us, uint64_t seq, uint8_t **out, size_t *len);

/* ---- Incremental decoder ---- */

struct stream_dec;

/* A decoder accepting payloads up to max_frame bytes (0: the default).
 * *out is freed by stream_dec_free.  0 or LV_ENOMEM. */
int stream_dec_new(uint32_t max_frame, struct stream_dec **out);

/* Append len bytes received from the network (copied).  0 or LV_ENOMEM. */
int stream_dec_push(struct stream_dec *d, const void *buf, size_t len);

/* The next complete frame: 1 and *f filled; 0 if more bytes are needed;
 * LV_ECORRUPT (bad magic, header checksum, flags, unknown type, a payload
 * that does not parse, a length over max_frame), with a message from
 * stream_dec_error.  After an error the decoder stays failed.  A header is
 * checked as soon as its 16 bytes are there, so a length over max_frame
 * fails before the payload is waited for.  LV_ENOMEM (copying a HELLO or
 * ERROR text) consumes nothing and may be retried. */
int stream_dec_next(struct stream_dec *d, struct stream_frame *f);

/* Bytes buffered and not yet returned as frames (a stream cut mid-frame leaves some). */
size_t stream_dec_pending(const struct stream_dec *d);

/* The last error's message ("" if none; borrowed until the next call). */
const char *stream_dec_error(const struct stream_dec *d);

/* Name of a frame type ("RECORD"), for logs. */
const char *stream_type_name(int type);

void stream_dec_free(struct stream_dec *d);

#endif /* STREAM_H */
