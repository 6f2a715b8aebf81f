/*
 * cksum.c -- page checksums, database checksums, the per-page checksum map
 * and its persisted state file.
 *
 * Definitions (also in docs/FORMAT.md, "Checksums"):
 *
 *   page checksum      h(p, B)  = XXH3-64(B, page_size, seed = p)   p is 1-based
 *   database checksum  D        = h(1,B1) ^ h(2,B2) ^ ... ^ h(n,Bn)  (0 if n == 0)
 *   buffer checksum    cksum_buf = XXH3-64(buf, len, seed = 0)
 *
 * Because D is an XOR, writing page p from A to B is  D ^= h(p,A) ^ h(p,B),
 * and growing the file by zero pages XORs in the checksum of an all-zero
 * page at each new page number.  struct cksum_map keeps h(p) for every page
 * plus D in m->total; invariant: total == XOR of h[0..npages-1].
 *
 * State file (big-endian; docs/FORMAT.md, "State file"):
 *
 *    0   8  magic "LVSTATE1"
 *    8   4  format version (1)
 *   12   4  reserved, 0
 *   16  16  database ID
 *   32   8  TXID the map reflects
 *   40   4  page size
 *   44   4  npages
 *   48   8  total (database checksum)
 *   56  8n  h(1) .. h(npages)
 * 56+8n  8  XXH3-64 (seed 0) of bytes 0 .. 55+8n
 *
 * It is written with publish_buf (tmp + fsync + rename + fsync dir),
 * so a reader sees either the old or the new file, never a mix.  Loading
 * checks magic, version, exact length, the trailing checksum and that the
 * XOR of the entries equals the stored total.
 *
 * Zero-page checksums depend on (pgno, page size); the map computes them
 * per page on resize.  A static 64 KiB zero buffer (bss, costs nothing
 * until touched) serves every legal page size.
 */
#include "base/cksum.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/publish.h"
#include "base/sys.h"

#define STATE_MAGIC "LVSTATE1"
#define STATE_VERSION 1u
#define STATE_HDR_SIZE 56
#define SCAN_CHUNK (1u << 20) /* bytes per pread in cksum_map_scan_fd */
#define ZERO_MAX 65536u       /* largest page size served by zero_page */

static const uint8_t zero_page[ZERO_MAX]; /* all zeros, read-only */

uint64_t cksum_page(uint32_t pgno, const void *page, size_t size)
{
    return XXH3_64bits_withSeed(page, size, pgno);
}

uint64_t cksum_buf(const void *buf, size_t len)
{
    return XXH3_64bits(buf, len);
}

/* Checksum of an all-zero page of size ps at pgno.  Sizes above ZERO_MAX
 * (never valid for SQLite) fall back to a temporary buffer; on allocation
 * failure they hash as 0, which the caller's later checks will reject. */
static uint64_t zero_page_cksum(uint32_t pgno, uint32_t ps)
{
    uint64_t h = 0;
    void *tmp;

    if (ps <= ZERO_MAX)
        return cksum_page(pgno, zero_page, ps);
    tmp = calloc(1, ps);
    if (tmp) {
        h = cksum_page(pgno, tmp, ps);
        free(tmp);
    }
    return h;
}

void cksum_map_init(struct cksum_map *m)
{
    memset(m, 0, sizeof(*m));
}

void cksum_map_free(struct cksum_map *m)
{
    free(m->h);
    memset(m, 0, sizeof(*m));
}

void cksum_map_reset(struct cksum_map *m, uint32_t page_size)
{
    m->page_size = page_size;
    m->npages = 0;
    m->total = 0;
}

void cksum_map_set(struct cksum_map *m, uint32_t pgno, uint64_t h)
{
    uint64_t *e = &m->h[pgno - 1];

    m->total ^= *e ^ h;
    *e = h;
}

/* Make room for at least n entries; 0 or LV_ENOMEM. */
static int map_reserve(struct cksum_map *m, uint32_t n)
{
    uint64_t ncap;
    uint64_t *nh;

    if (n <= m->cap)
        return 0;
    ncap = m->cap ? (uint64_t)m->cap : 1024;
    while (ncap < n)
        ncap *= 2;
    if (ncap > UINT32_MAX)
        ncap = UINT32_MAX;
    nh = realloc(m->h, ncap * sizeof(*nh));
    if (!nh)
        return LV_ENOMEM;
    m->h = nh;
    m->cap = (uint32_t)ncap;
    return 0;
}

int cksum_map_resize(struct cksum_map *m, uint32_t npages)
{
    uint32_t p;
    int rc;

    if (npages < m->npages) {
        for (p = npages; p < m->npages; p++)
            m->total ^= m->h[p];
        m->npages = npages;
        return 0;
    }
    rc = map_reserve(m, npages);
    if (rc)
        return rc;
    for (p = m->npages; p < npages; p++) {
        m->h[p] = zero_page_cksum(p + 1, m->page_size);
        m->total ^= m->h[p];
    }
    m->npages = npages;
    return 0;
}

int cksum_map_copy(struct cksum_map *dst, const struct cksum_map *src)
{
    int rc = map_reserve(dst, src->npages);

    if (rc)
        return rc;
    if (src->npages)
        memcpy(dst->h, src->h, (size_t)src->npages * sizeof(*dst->h));
    dst->page_size = src->page_size;
    dst->npages = src->npages;
    dst->total = src->total;
    return 0;
}

int cksum_map_scan_fd(struct cksum_map *m, int fd, uint32_t page_size, uint32_t npages, const char *path)
{
    uint64_t fsize = (uint64_t)npages * page_size;
    size_t chunk;
    uint8_t *buf;
    uint64_t off = 0;
    uint32_t pgno = 1;
    int rc = 0;

    if (page_size == 0)
        return LV_EINVAL;
    chunk = page_size >= SCAN_CHUNK ? page_size : SCAN_CHUNK / page_size * page_size;
    rc = map_reserve(m, npages);
    if (rc)
        return rc;
    buf = malloc(chunk);
    if (!buf)
        return LV_ENOMEM;
    cksum_map_reset(m, page_size);
    while (off < fsize) {
        size_t want = fsize - off < chunk ? (size_t)(fsize - off) : chunk;
        size_t got = 0;
        size_t i;

        /* Fill the chunk; bytes past EOF are zeros. */
        while (got < want) {
            ssize_t n = pread(fd, buf + got, want - got, (off_t)(off + got));
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                LV_ERROR("pread %s at %llu: %s", path, (unsigned long long)(off + got), strerror(errno));
                rc = lv_from_errno(errno);
                goto out_free_buf;
            }
            if (n == 0)
                break;
            got += (size_t)n;
        }
        if (got < want)
            memset(buf + got, 0, want - got);
        for (i = 0; i < want; i += page_size, pgno++) {
            m->h[pgno - 1] = cksum_page(pgno, buf + i, page_size);
            m->total ^= m->h[pgno - 1];
        }
        off += want;
    }
    m->npages = npages;
out_free_buf:
    free(buf);
    if (rc)
        cksum_map_reset(m, page_size);
    return rc;
}

int cksum_state_save(const char *path, const struct cksum_map *m, const uint8_t dbid[16], uint64_t txid)
{
    size_t len = STATE_HDR_SIZE + (size_t)m->npages * 8 + 8;
    uint8_t *buf = malloc(len), *p;
    uint32_t i;
    int rc;

    if (!buf)
        return LV_ENOMEM;
    memcpy(buf, STATE_MAGIC, 8);
    lv_put32(buf + 8, STATE_VERSION);
    lv_put32(buf + 12, 0);
    memcpy(buf + 16, dbid, 16);
    lv_put64(buf + 32, txid);
    lv_put32(buf + 40, m->page_size);
    lv_put32(buf + 44, m->npages);
    lv_put64(buf + 48, m->total);
    p = buf + STATE_HDR_SIZE;
    for (i = 0; i < m->npages; i++, p += 8)
        lv_put64(p, m->h[i]);
    lv_put64(p, cksum_buf(buf, len - 8));
    rc = publish_buf(path, buf, len);
    free(buf);
    return rc;
}

int cksum_state_load(const char *path, struct cksum_map *m, uint8_t dbid[16], uint64_t *txid)
{
    void *data = NULL;
    const uint8_t *b, *p;
    size_t len = 0;
    uint32_t version, npages, i;
    uint64_t total, x = 0;
    struct stat st;
    int rc;

    if (stat(path, &st) < 0 && errno == ENOENT)
        return LV_ENOENT; /* expected on first start: no error line */
    rc = sys_read_file(path, &data, &len);
    if (rc)
        return rc;
    b = data;
    rc = LV_ECORRUPT;
    if (len < STATE_HDR_SIZE + 8 || memcmp(b, STATE_MAGIC, 8) != 0) {
        LV_ERROR("state file %s: bad magic or too short (%zu bytes)", path, len);
        goto out_free_data;
    }
    version = lv_get32(b + 8);
    if (version != STATE_VERSION) {
        LV_ERROR("state file %s: unsupported version %u", path, version);
        rc = version > STATE_VERSION ? LV_EVERSION : LV_ECORRUPT;
        goto out_free_data;
    }
    npages = lv_get32(b + 44);
    if (len != STATE_HDR_SIZE + (size_t)npages * 8 + 8) {
        LV_ERROR("state file %s: length %zu does not match %u pages", path, len, npages);
        goto out_free_data;
    }
    if (lv_get64(b + len - 8) != cksum_buf(b, len - 8)) {
        LV_ERROR("state file %s: checksum mismatch", path);
        goto out_free_data;
    }
    uint32_t ps = lv_get32(b + 40);
    if (lv_get32(b + 12) != 0 || (npages > 0 && (ps < 512 || ps > 65536 || (ps & (ps - 1))))) {
        LV_ERROR("state file %s: reserved field not zero or invalid page size %u", path, ps);
        goto out_free_data;
    }
    total = lv_get64(b + 48);
    for (i = 0, p = b + STATE_HDR_SIZE; i < npages; i++, p += 8)
        x ^= lv_get64(p);
    if (x != total) {
        LV_ERROR("state file %s: page checksums do not add up to the stored total", path);
        goto out_free_data;
    }
    rc = map_reserve(m, npages);
    if (rc)
        goto out_free_data;
    for (i = 0, p = b + STATE_HDR_SIZE; i < npages; i++, p += 8)
        m->h[i] = lv_get64(p);
    m->page_size = lv_get32(b + 40);
    m->npages = npages;
    m->total = total;
    memcpy(dbid, b + 16, 16);
    *txid = lv_get64(b + 32);
    rc = 0;
out_free_data:
    free(data);
    return rc;
}

char *cksum_hex(uint64_t c, char *buf)
{
    static const char hex[] = "0123456789abcdef";
    int i;

    for (i = 15; i >= 0; i--, c >>= 4)
        buf[i] = hex[c & 15];
    buf[16] = '\0';
    return buf;
}
