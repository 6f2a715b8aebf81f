/*
 * metrics.h -- process-wide counters and latency histograms, rendered in
 * the Prometheus text format.  Updates are lock-free atomics; safe from any
 * thread, including FUSE handlers.
 */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>
#include <stdint.h>

/* FUSE operations counted and timed. */
enum metrics_fuse_op {
    MFOP_LOOKUP, MFOP_GETATTR, MFOP_SETATTR, MFOP_OPEN, MFOP_CREATE, MFOP_READ, MFOP_WRITE,
    MFOP_FLUSH, MFOP_RELEASE, MFOP_FSYNC, MFOP_UNLINK, MFOP_RENAME, MFOP_MKDIR, MFOP_RMDIR,
    MFOP_READDIR, MFOP_OTHER, MFOP_COUNT
};

/* Record one FUSE operation that took dur_us microseconds. */
void metrics_fuse(enum metrics_fuse_op op, int64_t dur_us);

/* Count one request read from the FUSE device: opcode is the kernel's
 * (struct fuse_in_header.opcode).  These are the round trips, as opposed to
 * the operations of metrics_fuse, which libfuse may add to or merge. */
void metrics_fuse_request(uint32_t opcode);

/* Name of a FUSE op for labels ("lookup", ...). */
const char *metrics_fuse_name(enum metrics_fuse_op op);

/* Append the FUSE operation metrics and process RSS (litevault_process_rss_bytes) in
 * Prometheus text format to a malloc'ed buffer: *buf, *len and *cap grow as needed.
 * 0 or LV_ENOMEM. */
int metrics_render_process(char **buf, size_t *len, size_t *cap);

/* printf-append helper for renderers: grows *buf as needed.  0 or LV_ENOMEM. */
int metrics_appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One metric family of the Prometheus text format.  A renderer keeps a
 * static table of its families and writes each one's samples right after
 * its metrics_family header (the format wants a family's lines together). */
struct metrics_family {
    const char *name;      /* e.g. litevault_archive_up */
    const char *type;      /* "counter", "gauge" or "histogram" */
    const char *help;      /* one line */
};

/* Append "# HELP name help" and "# TYPE name type".  0 or LV_ENOMEM. */
int metrics_family(char **buf, size_t *len, size_t *cap, const struct metrics_family *f);

/* Escape s for a label value into out (n bytes, always terminated, cut if
 * too long): backslash and double quote get a backslash, a newline becomes
 * a space.  Returns out. */
const char *metrics_label_escape(const char *s, char *out, size_t n);

/* Resident set size of this process in bytes (from /proc/self/statm), or 0. */
uint64_t metrics_rss_bytes(void);

#endif /* METRICS_H */
