/*
 * txlog.c -- the transaction log: its design, and record and segment
 * header encoding.  The module's other files are listed in txlog_impl.h
 * (writer, start-up scan, reader, apply and replay, segment images,
 * pruning); each opens with the details of its part.
 *
 * FORMAT (authoritative text: docs/FORMAT.md; all integers big-endian)
 *
 * Segment file  <dir>/<16 lower-case hex digits of first TXID>.lvseg
 *    0   8  magic "LVTXSEG1"
 *    8   4  format version (1)
 *   12   4  flags (0)
 *   16  16  database ID
 *   32   8  first TXID (TXID of the first record, or of the next record
 *           to be written when the segment is still empty)
 *   40   8  creation time, microseconds since the epoch (signed)
 *   48   8  reserved (0)
 *   56   8  XXH3-64 (seed 0) of bytes 0..55
 *   64      records, back to back, up to end of file
 *
 * Record = 112-byte header + stored payload + 8-byte trailer
 *    0   4  magic 0x4C565243 "LVRC"        56   8  pre checksum
 *    4   2  version (2; 1 is read)          64   8  post checksum
 *    6   2  flags (TXLOG_F_*)               72   8  stored payload length
 *    8  16  database ID                     80   8  raw payload length
 *   24   8  TXID                            88   4  WAL salt-1
 *   32   8  commit time (us, signed)        92   4  WAL salt-2
 *   40   4  page size                       96   4  WAL commit frame (1-based, 0 none)
 *   44   4  database pages after commit    100   4  term, low 32 bits
 *   48   4  pages in payload               104   8  XXH3-64 of bytes 0..103
 *   52   1  compression (0 none, 1 zstd)
 *   53   3  term, high 24 bits (version 2; version 1: reserved, 0)
 * The term (56 bits, 0: none) is the primary term that wrote the record
 * (an etcd lease's revision; 0 under a static lease), L10.
 * Raw payload: npages x (u32 pgno, page_size bytes), pgno strictly
 * increasing; stored as one zstd frame (compression 1) or as is (0).
 * Trailer: XXH3-64 (seed 0) of the stored payload bytes.
 *
 * WRITER (txlog_writer.c): states IDLE, BUFFERED, STREAMING; one pwrite per
 * buffered record; streamed records get their real header last.
 *
 * START-UP SCAN (txlog_open, txlog_scan.c) verifies every segment and cuts
 * off a torn tail of the newest one; any other damage is LV_ECORRUPT with
 * a message naming the segment, offset and TXID.
 *
 * THREADS: a struct txlog or txlog_reader is used by one thread at a time
 * (the owner locks); one writer per directory.  Readers may run while the
 * writer appends.
 *
 * READER (txlog_reader.c), APPLY and replay (txlog_apply.c), SEGMENT
 * IMAGES (txlog_image.c) and pruning (txlog_prune.c): see those files.
 *
 * INVARIANTS (checked where cheap: LV_ASSERT in dev and test builds)
 *  L1. TXID order: within a log, each record's TXID is the previous
 *      record's + 1, across segments too; the first record of a segment
 *      carries the TXID its header and file name give.  An empty log
 *      starts at TXID 1 or with a snapshot record.
 *  L2. Checksum chain: each record's pre checksum equals the previous
 *      record's post checksum (TXID 1 of an empty log: pre checksum 0).
 *      txlog_append_begin refuses a record that breaks L1 or L2
 *      (LV_EGAP, LV_ECHAIN); every reader re-checks both
 *      (txlog_link_check), so no reader trusts the writer.
 *  L10. Terms never go back: each record's term is at least the previous
 *      record's (the writer stamps max(its term, the log's last term));
 *      txlog_append_begin and txlog_append_raw refuse a record with a
 *      smaller term (LV_ECHAIN) and every reader re-checks it, so a record
 *      written by a deposed primary after a later term's record is refused
 *      by replicas, restore and archive verify alike.
 *  L3. A record lies wholly inside one segment; only the newest segment
 *      may end inside a record (a torn append), and txlog_open cuts that
 *      off before the writer appends again.
 *  L4. Append only: bytes of a complete record never change.  The writer
 *      writes past seg_end only, and truncates only back to the start of
 *      the record it is writing (rec_drop); if that truncation fails the
 *      log turns broken (sticky) and refuses everything.
 *  L5. Writer states (assert_writer_state, txlog_writer.c): IDLE holds no
 *      buffered bytes; BUFFERED holds exactly the record's raw payload
 *      (raw_used == cur.raw_len <= RAW_MAX) and has written nothing;
 *      STREAMING owns the bytes of the current segment from rec_start ==
 *      seg_end on.  When IDLE, seg_end is the end of the last complete
 *      record of the current segment.
 *
 * WHAT REPLICATION MAY RELY ON (a replica streams records as they are
 * appended; these hold for every log the writer produced)
 *  L6. Records are appended in TXID order, one at a time, with L1 and L2:
 *      a replica that applied TXID N needs exactly TXID N+1 next, and can
 *      check it with its own post checksum (txlog_apply_record does).
 *  L7. When txlog_append_end returns 0 the whole record is in the segment
 *      file (one pwrite for a buffered record; a streamed record's real
 *      header is written last, after its payload was fdatasynced), so a
 *      directory reader that sees its header complete sees all of it; a
 *      reader treats an incomplete tail as "not written yet".
 *  L8. Durability is txlog_sync's only: a record is durable once
 *      txlog_sync has returned 0 after its append_end (fdatasync of the
 *      current segment, and of the directory once after a segment was
 *      created; roll-over fdatasyncs the segment it leaves).  append_end
 *      alone promises nothing across a power failure; when the capture
 *      layer calls txlog_sync is its contract (capture/db.c, C7).
 *  L9. Reservation: after txlog_reserve(l, txid, raw) returned 0 on a file
 *      system that preallocates, the record of TXID txid with at most raw
 *      bytes of raw payload lands in the current segment inside
 *      [seg_end, resv_end), blocks allocated by fallocate(KEEP_SIZE), so
 *      its append needs no new space (bar file system metadata).  The
 *      segment is chosen by the reservation (roll-over happens there), and
 *      blocks reserved past seg_end are released when a segment is closed
 *      (ftruncate to seg_end) or a partial record is cut off.  The file
 *      size never includes reserved blocks, so no reader sees them.
 */
#include "log/txlog.h"
#include "log/txlog_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/cksum.h"
#include "base/dbhdr.h"
#include "base/lv.h"

/* Upper bound on a stored zstd payload for raw_len input bytes; generous
 * (zstd's own bound is raw + raw/256 + small). */
static uint64_t stored_bound(uint64_t raw_len)
{
    return raw_len + raw_len / 128 + 1024;
}

void txlog_hdr_encode(const struct txlog_hdr *h, uint8_t out[TXLOG_HDR_SIZE])
{
    memset(out, 0, TXLOG_HDR_SIZE);
    lv_put32(out + 0, TXLOG_REC_MAGIC);
    lv_put16(out + 4, h->version);
    lv_put16(out + 6, h->flags);
    memcpy(out + 8, h->dbid, 16);
    lv_put64(out + 24, h->txid);
    lv_put64(out + 32, (uint64_t)h->time_us);
    lv_put32(out + 40, h->page_size);
    lv_put32(out + 44, h->db_pages);
    lv_put32(out + 48, h->npages);
    out[52] = h->comp;
    lv_put64(out + 56, h->pre_cksum);
    lv_put64(out + 64, h->post_cksum);
    lv_put64(out + 72, h->stored_len);
    lv_put64(out + 80, h->raw_len);
    lv_put32(out + 88, h->wal_salt1);
    lv_put32(out + 92, h->wal_salt2);
    lv_put32(out + 96, h->wal_frame);
    LV_ASSERT(h->term <= TXLOG_TERM_MAX && (h->version >= 2 || h->term == 0));
    out[53] = (uint8_t)(h->term >> 48);
    out[54] = (uint8_t)(h->term >> 40);
    out[55] = (uint8_t)(h->term >> 32);
    lv_put32(out + 100, (uint32_t)h->term);
    lv_put64(out + 104, cksum_buf(out, 104));
}

int txlog_hdr_decode(const uint8_t in[TXLOG_HDR_SIZE], struct txlog_hdr *h)
{
    if (lv_get32(in) != TXLOG_REC_MAGIC || lv_get64(in + 104) != cksum_buf(in, 104))
        return LV_ECORRUPT;
    memset(h, 0, sizeof(*h));
    h->version = lv_get16(in + 4);
    if (h->version == 0)
        return LV_ECORRUPT;
    if (h->version > TXLOG_REC_VERSION)
        return LV_EVERSION;
    h->flags = lv_get16(in + 6);
    memcpy(h->dbid, in + 8, 16);
    h->txid = lv_get64(in + 24);
    h->time_us = (int64_t)lv_get64(in + 32);
    h->page_size = lv_get32(in + 40);
    h->db_pages = lv_get32(in + 44);
    h->npages = lv_get32(in + 48);
    h->comp = in[52];
    h->pre_cksum = lv_get64(in + 56);
    h->post_cksum = lv_get64(in + 64);
    h->stored_len = lv_get64(in + 72);
    h->raw_len = lv_get64(in + 80);
    h->wal_salt1 = lv_get32(in + 88);
    h->wal_salt2 = lv_get32(in + 92);
    h->wal_frame = lv_get32(in + 96);
    h->term = (uint64_t)in[53] << 48 | (uint64_t)in[54] << 40 | (uint64_t)in[55] << 32 | lv_get32(in + 100);
    if (h->version == 1 && h->term != 0)
        return LV_ECORRUPT; /* reserved in version 1 */
    if (h->flags & ~TXLOG_KNOWN_FLAGS)
        return LV_ECORRUPT;
    if (h->txid == 0 || !dbhdr_page_size_ok(h->page_size))
        return LV_ECORRUPT;
    if (h->npages > h->db_pages)
        return LV_ECORRUPT;
    if ((h->flags & TXLOG_F_SNAPSHOT) && h->npages != h->db_pages)
        return LV_ECORRUPT;
    if (h->raw_len != (uint64_t)h->npages * (4 + (uint64_t)h->page_size))
        return LV_ECORRUPT;
    switch (h->comp) {
    case TXLOG_COMP_NONE:
        if (h->stored_len != h->raw_len)
            return LV_ECORRUPT;
        break;
    case TXLOG_COMP_ZSTD:
        if (h->stored_len == 0 || h->stored_len > stored_bound(h->raw_len))
            return LV_ECORRUPT;
        break;
    default:
        return LV_ECORRUPT;
    }
    return 0;
}

void txlog_seg_hdr_encode(const struct txlog_seg_hdr *s, uint8_t out[TXLOG_SEG_HDR_SIZE])
{
    memset(out, 0, TXLOG_SEG_HDR_SIZE);
    memcpy(out, TXLOG_SEG_MAGIC, 8);
    lv_put32(out + 8, TXLOG_SEG_VERSION);
    lv_put32(out + 12, 0);
    memcpy(out + 16, s->dbid, 16);
    lv_put64(out + 32, s->first);
    lv_put64(out + 40, (uint64_t)s->ctime_us);
    lv_put64(out + 48, 0);
    lv_put64(out + 56, cksum_buf(out, 56));
}

int txlog_seg_hdr_decode(const uint8_t in[TXLOG_SEG_HDR_SIZE], struct txlog_seg_hdr *s)
{
    uint32_t v;

    if (memcmp(in, TXLOG_SEG_MAGIC, 8) != 0 || lv_get64(in + 56) != cksum_buf(in, 56))
        return LV_ECORRUPT;
    v = lv_get32(in + 8);
    if (v == 0)
        return LV_ECORRUPT;
    if (v > TXLOG_SEG_VERSION)
        return LV_EVERSION;
    if (lv_get32(in + 12) != 0 || lv_get64(in + 48) != 0)
        return LV_ECORRUPT;
    memcpy(s->dbid, in + 16, 16);
    s->first = lv_get64(in + 32);
    s->ctime_us = (int64_t)lv_get64(in + 40);
    if (s->first == 0)
        return LV_ECORRUPT;
    return 0;
}

int txlog_all_zero(const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* The record link check (L1, L2), shared by every reader of a log. */
int txlog_link_check(const struct txlog_link *lk, uint32_t nrec, uint64_t seg_first, const struct txlog_hdr *h,
                     char *what, size_t n)
{
    if (memcmp(h->dbid, lk->dbid, 16) != 0)
        snprintf(what, n, "record belongs to another database");
    else if (nrec == 0 && h->txid != seg_first)
        snprintf(what, n, "first record does not match segment first TXID %" PRIu64, seg_first);
    else if (lk->have && h->txid != lk->prev_txid + 1)
        snprintf(what, n, "TXID gap: expected TXID %" PRIu64, lk->prev_txid + 1);
    else if (lk->have && h->pre_cksum != lk->prev_post)
        snprintf(what, n, "checksum chain break: pre checksum %016" PRIx64 " != previous post %016" PRIx64,
                 h->pre_cksum, lk->prev_post);
    else if (lk->have && h->term < lk->prev_term)
        snprintf(what, n, "term goes back: term %" PRIu64 " after term %" PRIu64 " (a deposed primary's record)",
                 h->term, lk->prev_term);
    else
        return 0;
    return LV_ECORRUPT;
}

void txlog_link_advance(struct txlog_link *lk, const struct txlog_hdr *h)
{
    LV_ASSERT(!lk->have || (h->txid == lk->prev_txid + 1 && h->pre_cksum == lk->prev_post)); /* L1, L2 */
    LV_ASSERT(!lk->have || h->term >= lk->prev_term);                                          /* L10 */
    lk->have = 1;
    lk->prev_term = h->term;
    lk->prev_txid = h->txid;
    lk->prev_post = h->post_cksum;
}
