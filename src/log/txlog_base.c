/*
 * txlog_base.c -- a log that continues a history kept elsewhere: the base
 * file (`<dir>/base`, docs/FORMAT.md "Base file").
 *
 * A database seeded from an archive (`litevault restore --seed`,
 * capture/db_seed.c) has no local records: its history up to some TXID T
 * lives in the archive.  Writing that history into the local log again (a
 * SNAPSHOT record of the whole database, recompressed) would cost a pass
 * over the database and as many bytes as the archive's own snapshot, for
 * nothing the node needs.  Instead the log directory holds:
 *   - `base`: what the last record of that history would tell the scan --
 *     the database ID, TXID T, its commit time, the database checksum,
 *     page size and size in pages after it -- in 72 bytes with their own
 *     XXH3 (published atomically);
 *   - an empty segment named T+1 (a segment's header names "the TXID the
 *     next record will have" while it is empty), so that the writer and
 *     the readers find the log where it continues.
 *
 * The start-up scan (txlog_scan) consults the base only when the log holds
 * no record at all, and only when no segment names another TXID than T+1
 * for its next record (txlog_base_adopt): then the tail reads as if record
 * T were the last, so the writer continues at TXID T+1 with pre checksum
 * equal to T's post checksum (L1, L2 of txlog.c) and txlog_last_txid is T.
 * Once records exist they carry the chain and the base file is ignored
 * (pruning keeps the newest segment, so a log that had records never
 * reads as empty unless only an empty segment named past T+1 is left, and
 * then the base does not apply).  A damaged or foreign base file, when it
 * applies, is LV_ECORRUPT: a log never silently restarts its history.
 */
#include "log/txlog.h"
#include "log/txlog_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cksum.h"
#include "base/dbhdr.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/publish.h"
#include "base/sys.h"

#define BASE_MAGIC "LVTXBASE"
#define BASE_VERSION 1u
#define BASE_SIZE 72
#define BASE_NAME "base"

static void base_encode(const struct txlog_base *b, uint8_t out[BASE_SIZE])
{
    memset(out, 0, BASE_SIZE);
    memcpy(out, BASE_MAGIC, 8);
    lv_put32(out + 8, BASE_VERSION);
    lv_put32(out + 12, 0);
    memcpy(out + 16, b->dbid, 16);
    lv_put64(out + 32, b->txid);
    lv_put64(out + 40, (uint64_t)b->time_us);
    lv_put64(out + 48, b->post_cksum);
    lv_put32(out + 56, b->page_size);
    lv_put32(out + 60, b->db_pages);
    lv_put64(out + 64, cksum_buf(out, 64));
}

/* Decode in (len bytes).  0, LV_ECORRUPT or LV_EVERSION with the reason in why. */
static int base_decode(const uint8_t *in, size_t len, struct txlog_base *b, const char **why)
{
    uint32_t v;

    if (len != BASE_SIZE || memcmp(in, BASE_MAGIC, 8) != 0) {
        *why = "not a base file (size or magic)";
        return LV_ECORRUPT;
    }
    if (lv_get64(in + 64) != cksum_buf(in, 64)) {
        *why = "checksum mismatch";
        return LV_ECORRUPT;
    }
    v = lv_get32(in + 8);
    if (v > BASE_VERSION) {
        *why = "unsupported version";
        return LV_EVERSION;
    }
    memset(b, 0, sizeof *b);
    memcpy(b->dbid, in + 16, 16);
    b->txid = lv_get64(in + 32);
    b->time_us = (int64_t)lv_get64(in + 40);
    b->post_cksum = lv_get64(in + 48);
    b->page_size = lv_get32(in + 56);
    b->db_pages = lv_get32(in + 60);
    if (v == 0 || lv_get32(in + 12) != 0 || b->txid == 0 || b->txid == UINT64_MAX ||
        !dbhdr_page_size_ok(b->page_size)) {
        *why = "invalid field (version, flags, TXID or page size)";
        return LV_ECORRUPT;
    }
    return 0;
}

int txlog_base_load(const char *dir, const uint8_t dbid[16], struct txlog_base *b, char *err, size_t errlen)
{
    char path[4200], a[33], c[33];
    const char *why = "";
    struct stat st;
    void *buf = NULL;
    size_t len = 0;
    int rc;

    snprintf(path, sizeof path, "%s/%s", dir, BASE_NAME);
    if (stat(path, &st) != 0 && errno == ENOENT)
        return LV_ENOENT; /* the common case (every log that is not seeded): no open, no fault seam */
    rc = sys_read_file(path, &buf, &len);
    if (rc == LV_ENOENT)
        return rc;
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot read: %s", path, lv_strerror(rc));
        return rc;
    }
    rc = base_decode(buf, len, b, &why);
    if (rc == 0 && memcmp(b->dbid, dbid, 16) != 0) {
        rc = LV_ECORRUPT;
        lv_seterr(err, errlen, "%s: base file belongs to database %s, not %s", path, lv_hex(b->dbid, 16, a),
                  lv_hex(dbid, 16, c));
    } else if (rc) {
        lv_seterr(err, errlen, "%s: invalid base file: %s", path, why);
    }
    if (rc)
        LV_ERROR("txlog: %s", err && errlen ? err : why);
    free(buf);
    return rc;
}

int txlog_base_create(const char *dir, const struct txlog_base *b, char *err, size_t errlen)
{
    struct txlog_seg_hdr sh;
    uint8_t rec[BASE_SIZE], seg[TXLOG_SEG_HDR_SIZE];
    uint64_t *segs = NULL;
    size_t nsegs = 0;
    char path[4200];
    char *sp = NULL;
    int fd = -1, rc;

    if (b->txid == 0 || b->txid == UINT64_MAX || !dbhdr_page_size_ok(b->page_size)) {
        lv_seterr(err, errlen, "%s: bad base (TXID %" PRIu64 ", page size %u)", dir, b->txid, b->page_size);
        return LV_EINVAL;
    }
    rc = sys_mkdir_p(dir);
    if (rc == 0)
        rc = txlog_seg_list(dir, &segs, &nsegs);
    free(segs);
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot create the log directory: %s", dir, lv_strerror(rc));
        return rc;
    }
    if (nsegs) {
        lv_seterr(err, errlen, "%s already holds log segments", dir);
        return LV_EEXIST;
    }
    base_encode(b, rec);
    snprintf(path, sizeof path, "%s/%s", dir, BASE_NAME);
    rc = publish_buf(path, rec, sizeof rec);
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot write: %s", path, lv_strerror(rc));
        return rc;
    }
    /* The empty segment the next record (T+1) goes into. */
    memcpy(sh.dbid, b->dbid, 16);
    sh.first = b->txid + 1;
    sh.ctime_us = lv_now_us();
    txlog_seg_hdr_encode(&sh, seg);
    sp = txlog_seg_path(dir, sh.first);
    if (!sp)
        return LV_ENOMEM;
    fd = sys_open(sp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = fd;
        fd = -1;
    }
    if (!rc)
        rc = sys_pwrite_all(fd, seg, sizeof seg, 0, sp);
    if (!rc)
        rc = sys_fsync(fd, 1, sp);
    if (!rc)
        rc = sys_fsync_dir(sp);
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot create the segment: %s", sp, lv_strerror(rc));
        unlink(sp);
    }
    if (fd >= 0)
        close(fd);
    free(sp);
    return rc;
}

int txlog_base_adopt(const char *dir, const uint8_t dbid[16], struct txlog_tail *tail, const struct txlog_newest *nw,
                     char *err, size_t errlen)
{
    struct txlog_base b;
    int rc = txlog_base_load(dir, dbid, &b, err, errlen);

    if (rc == LV_ENOENT)
        return 0;
    if (rc)
        return rc;
    if (nw->fd >= 0 && nw->first != b.txid + 1) {
        LV_WARN("txlog: %s: the base file continues TXID %" PRIu64 " but the log's next record is TXID %" PRIu64
                "; the base does not apply",
                dir, b.txid, nw->first);
        return 0;
    }
    tail->last_txid = b.txid;
    tail->last_post = b.post_cksum;
    tail->last_time_us = b.time_us;
    tail->last_page_size = b.page_size;
    tail->last_db_pages = b.db_pages;
    tail->last_wal_salt1 = tail->last_wal_salt2 = tail->last_wal_frame = 0;
    LV_DEBUG("txlog: %s: no records; the log continues after TXID %" PRIu64 " (base file)", dir, b.txid);
    return 0;
}
