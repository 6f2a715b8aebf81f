/*
 * fuzz_txlog.c -- libFuzzer harness for the transaction log decoders
 * (src/txlog.c): txlog_hdr_decode and the in-memory segment reader.
 *
 * Input: a segment image (64-byte segment header, then records), as
 * written by the log writer; the seeds are real segments (fuzz/gen_seeds.c).
 * Per input:
 *   1. txlog_hdr_decode on the first 112 bytes, and on the 112 bytes at
 *      offset 64 (where the first record header of a segment sits), each
 *      as given and with the header checksum (bytes 104..111) recomputed;
 *   2. txlog_reader_open_mem over the bytes as given, then over a fixed-up
 *      copy (segment header checksum, every record header checksum and
 *      every record trailer recomputed, walking records by their stored
 *      length), iterating txlog_reader_next / txlog_reader_page to the end
 *      or to the first error.
 *
 * Checked beyond "no crash, no leak, no UB":
 *   - a decoded header satisfies the documented validity rules 2-5
 *     (docs/FORMAT.md "Validity of a record");
 *   - the reader hands out pages with numbers strictly increasing within
 *     1..db_pages, exactly npages of them before LV_ENOENT, and the page
 *     pointer covers page_size readable bytes (ASan checks the read);
 *   - consecutive records have consecutive TXIDs and a matching checksum
 *     chain; every record lies inside the image;
 *   - after an error the reader keeps failing or reports the end, never
 *     crashes (one more next/page call is made).
 */
#include <inttypes.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "log/txlog.h"
#include "fuzz_common.h"
#include "txlog_fix.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...) do { fprintf(stderr, "fuzz_txlog: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init("txlog", "unused");
    return 0;
}

/* Check a header that txlog_hdr_decode accepted against the format rules. */
static void check_hdr(const struct txlog_hdr *h)
{
    if (h->version != 1 && h->version != 2)
        FAIL("accepted version %u", h->version);
    if (h->term > TXLOG_TERM_MAX || (h->version == 1 && h->term != 0))
        FAIL("accepted term %llu in a version %u header", (unsigned long long)h->term, h->version);
    if (h->flags & ~(TXLOG_F_SNAPSHOT | TXLOG_F_RECOVERED))
        FAIL("accepted unknown flags %#x", h->flags);
    if (h->txid == 0)
        FAIL("accepted TXID 0");
    if (h->page_size < 512 || h->page_size > 65536 || (h->page_size & (h->page_size - 1)))
        FAIL("accepted page size %u", h->page_size);
    if (h->npages > h->db_pages || ((h->flags & TXLOG_F_SNAPSHOT) && h->npages != h->db_pages))
        FAIL("accepted npages %u with db_pages %u, flags %#x", h->npages, h->db_pages, h->flags);
    if (h->raw_len != (uint64_t)h->npages * (4 + (uint64_t)h->page_size))
        FAIL("accepted raw_len %" PRIu64 " for %u pages of %u", h->raw_len, h->npages, h->page_size);
    if (h->comp == TXLOG_COMP_NONE) {
        if (h->stored_len != h->raw_len)
            FAIL("accepted uncompressed stored_len %" PRIu64 " != raw_len %" PRIu64, h->stored_len, h->raw_len);
    } else if (h->comp == TXLOG_COMP_ZSTD) {
        if (h->stored_len == 0 || h->stored_len > h->raw_len + h->raw_len / 128 + 1024)
            FAIL("accepted zstd stored_len %" PRIu64 " for raw_len %" PRIu64, h->stored_len, h->raw_len);
    } else {
        FAIL("accepted compression %u", h->comp);
    }
}

static void decode_hdr(const uint8_t *in, int fix)
{
    uint8_t b[TXLOG_HDR_SIZE];
    struct txlog_hdr h;

    memcpy(b, in, sizeof b);
    if (fix)
        lv_put64(b + 104, cksum_buf(b, 104));
    if (txlog_hdr_decode(b, &h) == 0)
        check_hdr(&h);
}

/* Read every record and page of the image; check what the reader returns. */
static void read_all(const uint8_t *b, size_t n)
{
    struct txlog_reader *r;
    struct txlog_hdr h;
    uint64_t prev_txid = 0, prev_post = 0, off;
    int have_prev = 0, rc;
    volatile uint8_t sink = 0;

    if (txlog_reader_open_mem(b, n, "fuzz.lvseg", &r) != 0)
        return;
    for (;;) {
        uint32_t got = 0, last = 0, pgno;
        const void *page;

        rc = txlog_reader_next(r, &h);
        if (rc != 0) {
            if (rc != LV_ENOENT && rc != LV_ECORRUPT)
                FAIL("txlog_reader_next returned %d (%s)", rc, lv_strerror(rc));
            break;
        }
        check_hdr(&h);
        txlog_reader_where(r, &off);
        if (off < TXLOG_SEG_HDR_SIZE || off > n || n - off < TXLOG_HDR_SIZE + TXLOG_TRAILER_SIZE ||
            h.stored_len > n - off - TXLOG_HDR_SIZE - TXLOG_TRAILER_SIZE)
            FAIL("record at offset %" PRIu64 " with %" PRIu64 " stored bytes does not fit in %zu bytes", off,
                 h.stored_len, n);
        if (have_prev && (h.txid != prev_txid + 1 || h.pre_cksum != prev_post))
            FAIL("TXID %" PRIu64 " after %" PRIu64 " (pre %016" PRIx64 ", previous post %016" PRIx64 ") accepted",
                 h.txid, prev_txid, h.pre_cksum, prev_post);
        have_prev = 1;
        prev_txid = h.txid;
        prev_post = h.post_cksum;
        while ((rc = txlog_reader_page(r, &pgno, &page)) == 0) {
            const uint8_t *pb = page;
            if (pgno == 0 || pgno > h.db_pages || pgno <= last)
                FAIL("page %u after %u returned (db_pages %u)", pgno, last, h.db_pages);
            last = pgno;
            got++;
            sink ^= pb[0] ^ pb[h.page_size - 1];
        }
        if (rc != LV_ENOENT && rc != LV_ECORRUPT)
            FAIL("txlog_reader_page returned %d (%s)", rc, lv_strerror(rc));
        if (rc == LV_ENOENT && got != h.npages)
            FAIL("record TXID %" PRIu64 " yielded %u pages, header says %u", h.txid, got, h.npages);
        if (rc == LV_ECORRUPT) {
            /* A second call after an error must not crash either. */
            (void)txlog_reader_page(r, &pgno, &page);
            break;
        }
    }
    (void)txlog_reader_next(r, &h);
    (void)txlog_reader_where(r, &off);
    txlog_reader_close(r);
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;

    if (size >= TXLOG_HDR_SIZE) {
        decode_hdr(data, 0);
        decode_hdr(data, 1);
    }
    if (size >= TXLOG_SEG_HDR_SIZE + TXLOG_HDR_SIZE) {
        decode_hdr(data + TXLOG_SEG_HDR_SIZE, 0);
        decode_hdr(data + TXLOG_SEG_HDR_SIZE, 1);
    }
    /* Exact-size heap copies so ASan catches any read past the image. */
    copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    read_all(copy, size);
    fz_fix_segment(copy, size);
    read_all(copy, size);
    free(copy);
    return 0;
}
