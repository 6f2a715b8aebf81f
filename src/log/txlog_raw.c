/*
 * txlog_raw.c -- records as bytes: checking and decoding one record that
 * arrived from elsewhere (a replica receives the primary's records byte
 * for byte, docs/FORMAT.md "Record").
 *
 * A raw record is exactly what a segment holds for it: the 112-byte
 * header, the stored payload (stored_len bytes, zstd or plain) and the
 * 8-byte trailer (XXH3-64 of the stored payload).  txlog_record_check
 * verifies the parts that need no decompression (header checksum and
 * fields, lengths, trailer); txlog_record_pages also decodes every page, by
 * laying a segment header in front of the record and reading the result
 * with the in-memory reader, so the page checks (count, order, bounds,
 * frame end) are the reader's, written once.
 *
 * INVARIANT R1: a record accepted here has len == 112 + stored_len + 8 and
 * a trailer equal to XXH3-64 of its stored payload.
 */
#include "log/txlog.h"
#include "log/txlog_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cksum.h"
#include "base/lv.h"

int txlog_record_check(const void *rec, size_t len, struct txlog_hdr *h, char *err, size_t errlen)
{
    const uint8_t *p = rec;
    int rc;

    if (len < TXLOG_HDR_SIZE + TXLOG_TRAILER_SIZE) {
        snprintf(err, errlen, "record of %zu bytes is shorter than a header and trailer", len);
        return LV_ECORRUPT;
    }
    rc = txlog_hdr_decode(p, h);
    if (rc) {
        snprintf(err, errlen, "record header fails its checks (magic, version or checksum)");
        return rc;
    }
    if (h->stored_len != len - TXLOG_HDR_SIZE - TXLOG_TRAILER_SIZE) {
        snprintf(err, errlen, "TXID %" PRIu64 ": header says %" PRIu64 " payload bytes, record carries %zu",
                 h->txid, h->stored_len, len - TXLOG_HDR_SIZE - TXLOG_TRAILER_SIZE);
        return LV_ECORRUPT;
    }
    if (lv_get64(p + len - TXLOG_TRAILER_SIZE) != cksum_buf(p + TXLOG_HDR_SIZE, (size_t)h->stored_len)) {
        snprintf(err, errlen, "TXID %" PRIu64 ": payload checksum (trailer) mismatch", h->txid);
        return LV_ECORRUPT;
    }
    return 0;
}

int txlog_record_pages(const void *rec, size_t len, struct txlog_hdr *h,
                       int (*fn)(void *arg, uint32_t pgno, const void *page), void *arg, char *err, size_t errlen)
{
    struct txlog_seg_hdr sh;
    struct txlog_reader *r = NULL;
    struct txlog_hdr rh;
    uint8_t *img = NULL;
    uint32_t pgno;
    const void *data;
    int rc;

    rc = txlog_record_check(rec, len, h, err, errlen);
    if (rc)
        goto out;
    img = malloc(TXLOG_SEG_HDR_SIZE + len);
    if (!img) {
        rc = LV_ENOMEM;
        goto out;
    }
    memcpy(sh.dbid, h->dbid, 16);
    sh.first = h->txid;
    sh.ctime_us = 0;
    txlog_seg_hdr_encode(&sh, img);
    memcpy(img + TXLOG_SEG_HDR_SIZE, rec, len);
    rc = txlog_reader_open_mem(img, TXLOG_SEG_HDR_SIZE + len, "record", &r);
    if (rc)
        goto out_msg;
    rc = txlog_reader_next(r, &rh);
    if (rc)
        goto out_msg;
    while ((rc = txlog_reader_page(r, &pgno, &data)) == 0) {
        rc = fn(arg, pgno, data);
        if (rc)
            goto out;
    }
    if (rc == LV_ENOENT)
        rc = 0;
out_msg:
    if (rc && r && txlog_reader_error(r)[0])
        snprintf(err, errlen, "%s", txlog_reader_error(r));
    else if (rc)
        snprintf(err, errlen, "TXID %" PRIu64 ": record does not decode (%s)", h->txid, lv_strerror(rc));
out:
    txlog_reader_close(r);
    free(img);
    return rc;
}
