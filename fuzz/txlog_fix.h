/*
 * txlog_fix.h -- checksum fix-up of a txlog segment image, shared by
 * fuzz_txlog.c and fuzz_txlog_open.c (see "Fix-up copies" in
 * fuzz_common.h).
 *
 * fz_fix_segment recomputes, in place, the segment header checksum (bytes
 * 56..63 = XXH3 of 0..55) and then, walking records from offset 64 by their
 * stored length (header bytes 72..79), each record header checksum (bytes
 * 104..111 = XXH3 of 0..103) and each trailer (XXH3 of the stored
 * payload).  The walk stops at the first record that does not fit.  No
 * other field is touched.
 */
#ifndef TXLOG_FIX_H
#define TXLOG_FIX_H

#include <stddef.h>
#include <stdint.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "log/txlog.h"

static inline void fz_fix_segment(uint8_t *b, size_t n)
{
    uint64_t off = TXLOG_SEG_HDR_SIZE, stored;

    if (n < TXLOG_SEG_HDR_SIZE)
        return;
    lv_put64(b + 56, cksum_buf(b, 56));
    while (n - off >= TXLOG_HDR_SIZE) {
        lv_put64(b + off + 104, cksum_buf(b + off, 104));
        stored = lv_get64(b + off + 72);
        if (stored > n - off - TXLOG_HDR_SIZE || n - off - TXLOG_HDR_SIZE - stored < TXLOG_TRAILER_SIZE)
            break;
        lv_put64(b + off + TXLOG_HDR_SIZE + stored, cksum_buf(b + off + TXLOG_HDR_SIZE, stored));
        off += TXLOG_HDR_SIZE + stored + TXLOG_TRAILER_SIZE;
    }
}

#endif /* TXLOG_FIX_H */
