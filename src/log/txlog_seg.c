/*
 * txlog_seg.c -- segment files of the transaction log: their names
 * (<16 lower-case hex digits of the first TXID>.lvseg), the sorted listing
 * of a directory, and byte sources (a segment file or an in-memory segment
 * image) that the start-up scan and the reader read through.  No state of
 * its own: every function works on what the caller passes.
 */
#include "log/txlog.h"
#include "log/txlog_impl.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"

char *txlog_seg_path(const char *dir, uint64_t first)
{
    char *p = NULL;

    if (asprintf(&p, "%s/%016" PRIx64 ".lvseg", dir, first) < 0)
        return NULL;
    return p;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Parse a segment file name; 1 and *first if it is one. */
static int seg_name_parse(const char *name, uint64_t *first)
{
    uint64_t v = 0;
    int i;

    if (strlen(name) != 22 || strcmp(name + 16, ".lvseg") != 0)
        return 0;
    for (i = 0; i < 16; i++) {
        char c = name[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return 0;
        v = v << 4 | (uint64_t)d;
    }
    *first = v;
    return 1;
}

int txlog_seg_list(const char *dir, uint64_t **out, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    uint64_t *v = NULL, first;
    size_t len = 0, cap = 0;
    int rc = 0;

    *out = NULL;
    *n = 0;
    if (!d) {
        rc = lv_from_errno(errno);
        if (rc != LV_ENOENT)
            LV_ERROR("opendir %s: %s", dir, strerror(errno));
        return rc;
    }
    while ((de = readdir(d)) != NULL) {
        if (!seg_name_parse(de->d_name, &first))
            continue;
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, ncap * sizeof(*nv));
            if (!nv) {
                rc = LV_ENOMEM;
                goto out_closedir;
            }
            v = nv;
            cap = ncap;
        }
        v[len++] = first;
    }
    if (len > 1)
        qsort(v, len, sizeof(*v), cmp_u64);
    *out = v;
    *n = len;
    v = NULL;
out_closedir:
    closedir(d);
    free(v);
    return rc;
}

int txlog_src_read(const struct txlog_src *s, uint64_t off, void *buf, size_t len)
{
    if (off > s->size || len > s->size - off)
        return LV_ECORRUPT;
    if (s->mem) {
        memcpy(buf, s->mem + off, len);
        return 0;
    }
    return sys_pread_all(s->fd, buf, len, (off_t)off, s->name);
}

void txlog_src_close(struct txlog_src *s)
{
    if (s->fd >= 0)
        close(s->fd);
    free(s->name);
    s->fd = -1;
    s->mem = NULL;
    s->name = NULL;
    s->size = 0;
}

int txlog_fd_size(int fd, const char *path, uint64_t *size)
{
    struct stat st;

    if (fstat(fd, &st) < 0) {
        LV_ERROR("fstat %s: %s", path, strerror(errno));
        return lv_from_errno(errno);
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

int txlog_src_hash(const struct txlog_src *s, uint64_t off, uint64_t len, uint8_t *buf, XXH3_state_t *st,
                    uint64_t *out)
{
    int rc;

    if (s->mem) {
        if (off > s->size || len > s->size - off)
            return LV_ECORRUPT;
        *out = XXH3_64bits(s->mem + off, (size_t)len);
        return 0;
    }
    XXH3_64bits_reset(st);
    while (len) {
        size_t n = len < TXLOG_IO_CHUNK ? (size_t)len : TXLOG_IO_CHUNK;
        rc = txlog_src_read(s, off, buf, n);
        if (rc)
            return rc;
        XXH3_64bits_update(st, buf, n);
        off += n;
        len -= n;
    }
    *out = XXH3_64bits_digest(st);
    return 0;
}

int txlog_src_header_after(const struct txlog_src *s, uint64_t from, const uint8_t dbid[16], uint8_t *buf)
{
    uint64_t off = from;
    struct txlog_hdr h;

    while (off + TXLOG_HDR_SIZE <= s->size) {
        size_t n = s->size - off < TXLOG_IO_CHUNK ? (size_t)(s->size - off) : TXLOG_IO_CHUNK;
        size_t i;

        if (txlog_src_read(s, off, buf, n))
            return 0;
        for (i = 0; i + TXLOG_HDR_SIZE <= n; i++)
            if (buf[i] == 0x4C && lv_get32(buf + i) == TXLOG_REC_MAGIC && txlog_hdr_decode(buf + i, &h) == 0 &&
                memcmp(h.dbid, dbid, 16) == 0)
                return 1;
        if (n < TXLOG_IO_CHUNK)
            break;
        off += n - (TXLOG_HDR_SIZE - 1);
    }
    return 0;
}

int txlog_grow(uint8_t **buf, size_t *cap, size_t need)
{
    size_t ncap;
    uint8_t *nb;

    if (need <= *cap)
        return 0;
    ncap = *cap ? *cap : 8192;
    while (ncap < need)
        ncap *= 2;
    nb = realloc(*buf, ncap);
    if (!nb)
        return LV_ENOMEM;
    *buf = nb;
    *cap = ncap;
    return 0;
}
