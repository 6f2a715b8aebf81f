/*
 * files.c -- see files.h.
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "base/cksum.h"
#include "fixture.h"
#include "util.h"

static void rm_tmpdir(void *arg)
{
    char *dir = arg;
    if (!lvt_keep() && strncmp(dir, "/tmp/lvit.", 10) == 0) {
        char *out = NULL;
        run_cmd(&out, "rm -rf '%s'", dir);
        free(out);
    } else if (lvt_keep()) {
        fprintf(stderr, "kept %s (LV_KEEP=1)\n", dir);
    }
    free(dir);
}

const char *lvt_tmpdir(const char *tag)
{
    char *dir = NULL;
    cr_assert(asprintf(&dir, "/tmp/lvit.%s.XXXXXX", tag ? tag : "t") >= 0);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp %s: %s", dir, strerror(errno));
    lvt_defer(LVT_UNDO, rm_tmpdir, dir);
    return dir;
}

char *file_read(const char *path, size_t *lenp)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (!f)
        return NULL;
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 131072;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[len] = 0;
    if (lenp)
        *lenp = len;
    return buf;
}

int files_equal(const char *a, const char *b)
{
    long long off;
    return files_first_diff(a, b, &off) == 0;
}

int files_first_diff(const char *a, const char *b, long long *offset)
{
    size_t la = 0, lb = 0;
    char *x = file_read(a, &la), *y = file_read(b, &lb);
    int r;
    *offset = -1;
    if (!x || !y) {
        r = -1;
    } else {
        size_t m = la < lb ? la : lb, i;
        for (i = 0; i < m && x[i] == y[i]; i++)
            ;
        if (i < m || la != lb) {
            *offset = (long long)i;
            r = 1;
        } else {
            r = 0;
        }
    }
    free(x);
    free(y);
    return r;
}

void file_xor_byte(const char *path, long long off, unsigned char mask)
{
    unsigned char b;
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1, "%s: no byte at %lld", path, off);
    b ^= mask;
    cr_assert_eq(pwrite(fd, &b, 1, (off_t)off), 1, "%s: cannot write at %lld", path, off);
    close(fd);
}

uint32_t sqlite_hdr_page_size(const unsigned char *h)
{
    if (memcmp(h, "SQLite format 3", 16) != 0)
        return 0;
    uint32_t ps = ((uint32_t)h[16] << 8) | h[17];
    if (ps == 1)
        ps = 65536;
    if (ps < 512 || ps > 65536 || (ps & (ps - 1)))
        return 0;
    return ps;
}

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint64_t file_db_checksum(const char *path)
{
    int fd = open(path, O_RDONLY);
    cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
    struct stat st;
    cr_assert(fstat(fd, &st) == 0);
    unsigned char h[100];
    if (st.st_size < 100 || pread(fd, h, 100, 0) != 100) {
        close(fd);
        return 0;
    }
    uint32_t ps = sqlite_hdr_page_size(h);
    cr_assert(ps != 0, "%s does not start with a valid SQLite header", path);
    /* As SQLite: the in-header size when valid, else the file size. */
    uint64_t npages = (uint64_t)st.st_size / ps;
    uint32_t hsz = be32(h + 28);
    if (hsz != 0 && be32(h + 24) == be32(h + 92))
        npages = hsz;
    unsigned char *buf = malloc(ps);
    cr_assert(buf != NULL);
    uint64_t total = 0;
    for (uint64_t p = 1; p <= npages; p++) {
        ssize_t r = pread(fd, buf, ps, (off_t)((p - 1) * ps));
        if (r < (ssize_t)ps) /* beyond EOF reads as zeros */
            memset(buf + (r > 0 ? r : 0), 0, ps - (size_t)(r > 0 ? r : 0));
        total ^= cksum_page((uint32_t)p, buf, ps);
    }
    free(buf);
    close(fd);
    return total;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int file_freelist_pages(const char *path, uint32_t **pages)
{
    *pages = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    unsigned char h[100];
    if (pread(fd, h, 100, 0) != 100 || !sqlite_hdr_page_size(h)) {
        close(fd);
        return -1;
    }
    uint32_t ps = sqlite_hdr_page_size(h), total = be32(h + 36), trunk = be32(h + 32);
    uint32_t *v = calloc((size_t)total + 1, sizeof *v);
    unsigned char *buf = malloc(ps);
    cr_assert(v && buf);
    int cnt = 0;
    while (trunk && cnt < (int)total) {
        if (pread(fd, buf, ps, (off_t)(trunk - 1) * ps) != (ssize_t)ps)
            break;
        v[cnt++] = trunk;
        uint32_t nleaf = be32(buf + 4);
        for (uint32_t i = 0; i < nleaf && cnt < (int)total && 8 + 4 * i + 4 <= ps; i++)
            v[cnt++] = be32(buf + 8 + 4 * i);
        trunk = be32(buf);
    }
    free(buf);
    close(fd);
    qsort(v, (size_t)cnt, sizeof *v, cmp_u32);
    *pages = v;
    return cnt;
}
