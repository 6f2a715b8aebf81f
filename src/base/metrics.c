/*
 * metrics.c -- process-wide FUSE operation counters and latency
 * histograms, rendered in the Prometheus text exposition format (0.0.4).
 *
 * Storage: one struct metrics_op per enum metrics_fuse_op, in a static
 * array.  Every field is a relaxed C11 atomic; metrics_fuse() does two
 * fetch_adds (the op's bucket and its microsecond sum) and never blocks,
 * so it is safe in FUSE handlers on any thread.
 *
 * Buckets: bucket[i] counts durations d (microseconds) with
 * metrics_bounds_us[i-1] < d <= metrics_bounds_us[i]; the last bucket
 * (index METRICS_NBUCKETS-1) is the overflow, +Inf.  Counts are stored
 * per bucket (not cumulative) so one update touches one counter.
 *
 * Invariant of the rendering: the count of an op is not stored separately;
 * it is the sum of the bucket counters read once, and the cumulative
 * "le" buckets, _count and litevault_fuse_ops_total are all derived from
 * that one snapshot.  Hence, even while other threads update, the rendered
 * +Inf bucket always equals _count and ops_total, and buckets are
 * monotonically non-decreasing.  _sum is read separately and may lag or
 * lead the snapshot by the few operations in flight.
 *
 * Output, per op (op="lookup", ...):
 *   litevault_fuse_op_duration_seconds_bucket{op="read",le="1e-05"} N
 *   ... one line per bound, then le="+Inf"
 *   litevault_fuse_op_duration_seconds_sum{op="read"} S.SSSSSS
 *   litevault_fuse_op_duration_seconds_count{op="read"} N
 * then litevault_fuse_ops_total{op="..."} N for each op, then
 * litevault_fuse_requests_total{op="..."} N for each kernel opcode seen on
 * the device (metrics_fuse_request; the round trips), then
 * litevault_process_rss_bytes, each family preceded by # HELP and # TYPE.
 */
#include <stddef.h> /* metrics.h uses size_t without including it */

#include "base/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/lv.h"

/* Upper bounds of the finite buckets, microseconds, ascending. */
static const int64_t metrics_bounds_us[] = { 10, 50, 100, 500, 1000, 5000, 10000, 50000, 100000 };
/* The same bounds as Prometheus "le" label values, seconds; then +Inf. */
static const char *const metrics_bounds_le[] = { "1e-05", "5e-05", "0.0001", "0.0005", "0.001",
                                                 "0.005", "0.01",  "0.05",   "0.1",    "+Inf" };

#define METRICS_NBUCKETS (LV_ARRAY_LEN(metrics_bounds_us) + 1)

_Static_assert(LV_ARRAY_LEN(metrics_bounds_le) == METRICS_NBUCKETS, "one le label per bucket");

/* Counters of one FUSE op; every field is updated with relaxed atomics, no lock. */
struct metrics_op {
    _Atomic uint64_t bucket[METRICS_NBUCKETS]; /* operations per (non-cumulative) bucket */
    _Atomic uint64_t sum_us;                   /* total microseconds over all operations */
};

static struct metrics_op metrics_ops[MFOP_COUNT];

static const char *const metrics_op_names[MFOP_COUNT] = {
    [MFOP_LOOKUP] = "lookup",   [MFOP_GETATTR] = "getattr", [MFOP_SETATTR] = "setattr",
    [MFOP_OPEN] = "open",       [MFOP_CREATE] = "create",   [MFOP_READ] = "read",
    [MFOP_WRITE] = "write",     [MFOP_FLUSH] = "flush",     [MFOP_RELEASE] = "release",
    [MFOP_FSYNC] = "fsync",     [MFOP_UNLINK] = "unlink",   [MFOP_RENAME] = "rename",
    [MFOP_MKDIR] = "mkdir",     [MFOP_RMDIR] = "rmdir",     [MFOP_READDIR] = "readdir",
    [MFOP_OTHER] = "other",
};

const char *metrics_fuse_name(enum metrics_fuse_op op)
{
    if ((unsigned)op >= MFOP_COUNT)
        op = MFOP_OTHER;
    return metrics_op_names[op];
}

void metrics_fuse(enum metrics_fuse_op op, int64_t dur_us)
{
    size_t b = 0;

    if ((unsigned)op >= MFOP_COUNT)
        op = MFOP_OTHER;
    if (dur_us < 0)
        dur_us = 0;  /* a clock step backwards; count it as instantaneous */
    while (b < LV_ARRAY_LEN(metrics_bounds_us) && dur_us > metrics_bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&metrics_ops[op].bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&metrics_ops[op].sum_us, (uint64_t)dur_us, memory_order_relaxed);
}

/* Two vsnprintf passes: the first into the free space (or just to measure),
 * the second, after growing *buf by doubling, when the text did not fit.
 * *buf stays NUL-terminated.  Besides LV_ENOMEM, returns LV_EINVAL if
 * vsnprintf reports an encoding error (then nothing is appended). */
/* The families of metrics_render_process. */
enum { PF_DURATION, PF_OPS, PF_REQUESTS, PF_RSS };
static const struct metrics_family process_families[] = {
    [PF_DURATION] = {"litevault_fuse_op_duration_seconds", "histogram", "Duration of FUSE operations."},
    [PF_OPS] = {"litevault_fuse_ops_total", "counter", "FUSE operations completed."},
    [PF_REQUESTS] = {"litevault_fuse_requests_total", "counter",
                     "Requests read from the FUSE device, by kernel opcode (round trips; forget and release do "
                     "not block the caller)."},
    [PF_RSS] = {"litevault_process_rss_bytes", "gauge", "Resident set size of the daemon."},
};

int metrics_family(char **buf, size_t *len, size_t *cap, const struct metrics_family *f)
{
    return metrics_appendf(buf, len, cap, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
}

const char *metrics_label_escape(const char *s, char *out, size_t n)
{
    size_t j = 0;

    if (n == 0)
        return out;
    for (; *s && j + 3 < n; s++) {
        if (*s == '"' || *s == '\\')
            out[j++] = '\\';
        out[j++] = *s == '\n' ? ' ' : *s;
    }
    out[j] = '\0';
    return out;
}

int metrics_appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap, ap2;
    size_t avail = *cap > *len ? *cap - *len : 0;
    int n;
    int rc = 0;

    va_start(ap, fmt);
    va_copy(ap2, ap);
    n = vsnprintf(avail ? *buf + *len : NULL, avail, fmt, ap);
    if (n < 0) {
        rc = LV_EINVAL;  /* encoding error in fmt/arguments */
        goto out_end;
    }
    if ((size_t)n >= avail) {
        size_t need = *len + (size_t)n + 1;
        size_t ncap = *cap ? *cap : 256;
        while (ncap < need)
            ncap *= 2;
        char *nb = realloc(*buf, ncap);
        if (nb == NULL) {
            rc = LV_ENOMEM;
            goto out_end;
        }
        *buf = nb;
        *cap = ncap;
        vsnprintf(*buf + *len, *cap - *len, fmt, ap2);
    }
    *len += (size_t)n;

out_end:
    va_end(ap2);
    va_end(ap);
    return rc;
}

uint64_t metrics_rss_bytes(void)
{
    char text[128];
    unsigned long long size_pages, rss_pages;
    long page;
    ssize_t n;
    int fd;

    fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    if (sscanf(text, "%llu %llu", &size_pages, &rss_pages) != 2)
        return 0;
    page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        return 0;
    return (uint64_t)rss_pages * (uint64_t)page;
}

/* Requests read from the FUSE device, by kernel opcode (fuse_kernel.h);
 * opcodes outside the table count as "other". */
#define METRICS_NREQ 64
static _Atomic uint64_t metrics_req[METRICS_NREQ];
static const char *const metrics_req_names[METRICS_NREQ] = {
    [1] = "lookup",        [2] = "forget",        [3] = "getattr",      [4] = "setattr",
    [5] = "readlink",      [6] = "symlink",       [8] = "mknod",        [9] = "mkdir",
    [10] = "unlink",       [11] = "rmdir",        [12] = "rename",      [13] = "link",
    [14] = "open",         [15] = "read",         [16] = "write",       [17] = "statfs",
    [18] = "release",      [20] = "fsync",        [21] = "setxattr",    [22] = "getxattr",
    [23] = "listxattr",    [24] = "removexattr",  [25] = "flush",       [26] = "init",
    [27] = "opendir",      [28] = "readdir",      [29] = "releasedir",  [30] = "fsyncdir",
    [31] = "getlk",        [32] = "setlk",        [33] = "setlkw",      [34] = "access",
    [35] = "create",       [36] = "interrupt",    [37] = "bmap",        [38] = "destroy",
    [39] = "ioctl",        [40] = "poll",         [41] = "notify_reply", [42] = "batch_forget",
    [43] = "fallocate",    [44] = "readdirplus",  [45] = "rename2",     [46] = "lseek",
    [47] = "copy_file_range", [50] = "syncfs",    [51] = "tmpfile",     [52] = "statx",
    [0] = "other",
};

void metrics_fuse_request(uint32_t opcode)
{
    if (opcode >= METRICS_NREQ || !metrics_req_names[opcode])
        opcode = 0;
    atomic_fetch_add_explicit(&metrics_req[opcode], 1, memory_order_relaxed);
}

/* Render litevault_fuse_requests_total: the opcodes seen so far. */
static int render_requests(char **buf, size_t *len, size_t *cap)
{
    int rc = metrics_family(buf, len, cap, &process_families[PF_REQUESTS]);
    for (int i = 0; rc == 0 && i < METRICS_NREQ; i++) {
        uint64_t v = atomic_load_explicit(&metrics_req[i], memory_order_relaxed);
        if (v && metrics_req_names[i])
            rc = metrics_appendf(buf, len, cap, "litevault_fuse_requests_total{op=\"%s\"} %llu\n",
                                 metrics_req_names[i], (unsigned long long)v);
    }
    return rc;
}

/* Render the duration histogram and ops_total families. */
static int render_fuse(char **buf, size_t *len, size_t *cap)
{
    uint64_t count[MFOP_COUNT];
    int rc;

    rc = metrics_family(buf, len, cap, &process_families[PF_DURATION]);
    if (rc != 0)
        return rc;
    for (int op = 0; op < MFOP_COUNT; op++) {
        const char *name = metrics_op_names[op];
        uint64_t cum = 0;

        for (size_t b = 0; b < METRICS_NBUCKETS; b++) {
            cum += atomic_load_explicit(&metrics_ops[op].bucket[b], memory_order_relaxed);
            rc = metrics_appendf(buf, len, cap,
                                 "litevault_fuse_op_duration_seconds_bucket{op=\"%s\",le=\"%s\"} %llu\n",
                                 name, metrics_bounds_le[b], (unsigned long long)cum);
            if (rc != 0)
                return rc;
        }
        count[op] = cum;
        uint64_t sum_us = atomic_load_explicit(&metrics_ops[op].sum_us, memory_order_relaxed);
        rc = metrics_appendf(buf, len, cap,
                             "litevault_fuse_op_duration_seconds_sum{op=\"%s\"} %llu.%06llu\n"
                             "litevault_fuse_op_duration_seconds_count{op=\"%s\"} %llu\n",
                             name, (unsigned long long)(sum_us / 1000000),
                             (unsigned long long)(sum_us % 1000000), name, (unsigned long long)cum);
        if (rc != 0)
            return rc;
    }
    rc = metrics_family(buf, len, cap, &process_families[PF_OPS]);
    if (rc != 0)
        return rc;
    for (int op = 0; op < MFOP_COUNT; op++) {
        rc = metrics_appendf(buf, len, cap, "litevault_fuse_ops_total{op=\"%s\"} %llu\n",
                             metrics_op_names[op], (unsigned long long)count[op]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int metrics_render_process(char **buf, size_t *len, size_t *cap)
{
    int rc;

    rc = render_fuse(buf, len, cap);
    if (rc == 0)
        rc = render_requests(buf, len, cap);
    if (rc != 0)
        return rc;
    rc = metrics_family(buf, len, cap, &process_families[PF_RSS]);
    if (rc != 0)
        return rc;
    return metrics_appendf(buf, len, cap, "litevault_process_rss_bytes %llu\n", (unsigned long long)metrics_rss_bytes());
}
