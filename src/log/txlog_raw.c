/*
 * txlog_raw.c -- records as bytes: checking and decoding one record that
 * arrived from elsewhere (a replica receives the primary's records byte
 * for byte, docs/FORMAT.md "Record").
 *
 * A raw record is exactly what a segment holds for it: the 112-byte
 * header, the stored payload (stored_len bytes, zstd or plain) and the
 * 8-byte trailer (XXH3-64 of the stored payload).  txlog_record_check
 * verifies the parts that need no decompression (header checksum and
 * fields, lengths, trailer); txlog_record_pages also decompresses the
 * payload in one call (into exactly raw_len bytes, which must be npages
 * entries of 4 + page_size bytes) with a per-thread context, and checks
 * each entry's page number (increasing, 1..db_pages).
 *
 * INVARIANT R1: a record accepted here has len == 112 + stored_len + 8 and
 * a trailer equal to XXH3-64 of its stored payload.
 */
#include "log/txlog.h"
#include "log/txlog_impl.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

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

/* One decompression context per thread, kept for the thread's life (a
 * replica decodes every record it receives; creating a context costs more
 * than decoding a small record).  Freed by the key's destructor. */
static pthread_key_t g_dctx_key;
static pthread_once_t g_dctx_once = PTHREAD_ONCE_INIT;

static void dctx_free(void *p) { ZSTD_freeDCtx(p); }
static void dctx_key_init(void) { pthread_key_create(&g_dctx_key, dctx_free); }

static ZSTD_DCtx *thread_dctx(void)
{
    pthread_once(&g_dctx_once, dctx_key_init);
    ZSTD_DCtx *c = pthread_getspecific(g_dctx_key);
    if (!c && (c = ZSTD_createDCtx()) != NULL && pthread_setspecific(g_dctx_key, c) != 0) {
        ZSTD_freeDCtx(c);
        c = NULL;
    }
    return c;
}

int txlog_record_pages(const void *rec, size_t len, struct txlog_hdr *h,
                       int (*fn)(void *arg, uint32_t pgno, const void *page), void *arg, char *err, size_t errlen)
{
    const uint8_t *pay = (const uint8_t *)rec + TXLOG_HDR_SIZE;
    uint8_t *raw = NULL;
    const uint8_t *p;
    size_t entry;
    uint32_t last = 0;
    int rc;

    rc = txlog_record_check(rec, len, h, err, errlen);
    if (rc)
        goto out;
    entry = 4 + (size_t)h->page_size;
    if (h->raw_len != (uint64_t)h->npages * entry || (h->comp != TXLOG_COMP_NONE && h->comp != TXLOG_COMP_ZSTD) ||
        (h->comp == TXLOG_COMP_NONE && h->stored_len != h->raw_len)) {
        snprintf(err, errlen, "TXID %" PRIu64 ": payload lengths do not match %u pages of %u bytes", h->txid,
                 h->npages, h->page_size);
        rc = LV_ECORRUPT;
        goto out;
    }
    if (h->comp == TXLOG_COMP_ZSTD) {
        ZSTD_DCtx *c = thread_dctx();
        raw = h->raw_len ? malloc((size_t)h->raw_len) : NULL;
        if (!c || (h->raw_len && !raw)) {
            rc = LV_ENOMEM;
            goto out;
        }
        size_t got = ZSTD_decompressDCtx(c, raw, (size_t)h->raw_len, pay, (size_t)h->stored_len);
        if (ZSTD_isError(got) || got != h->raw_len) {
            snprintf(err, errlen, "TXID %" PRIu64 ": the payload does not decompress to %" PRIu64 " bytes (%s)",
                     h->txid, h->raw_len, ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
            rc = LV_ECORRUPT;
            goto out;
        }
        p = raw;
    } else {
        p = pay;
    }
    for (uint32_t i = 0; i < h->npages; i++, p += entry) {
        uint32_t pgno = lv_get32(p);
        if (pgno == 0 || pgno <= last || pgno > h->db_pages) {
            snprintf(err, errlen, "TXID %" PRIu64 ": page number %u out of order or beyond %u pages", h->txid, pgno,
                     h->db_pages);
            rc = LV_ECORRUPT;
            goto out;
        }
        last = pgno;
        rc = fn(arg, pgno, p + 4);
        if (rc)
            goto out;
    }
out:
    free(raw);
    return rc;
}
