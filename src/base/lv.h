/*
 * lv.h -- project-wide definitions: error codes, byte order helpers, time.
 *
 * Error convention: 0 is success; failures are the negative LV_E* codes
 * below.  errno is converted to one of these only at the syscall boundary
 * (see sys.h), where the call and the path are logged.  lv_strerror()
 * names every code.
 */
#ifndef LV_H
#define LV_H

#include <stddef.h>
#include <stdint.h>

#define LV_VERSION "0.1.0"

/* Exit codes of the litevault command (documented in README.md). */
#define LV_EXIT_OK 0      /* success */
#define LV_EXIT_RUNTIME 1 /* runtime error */
#define LV_EXIT_USAGE 2   /* usage or configuration error */

enum lv_err {
    LV_OK = 0,
    LV_EIO = -1,        /* an I/O call failed; see the log for call and path */
    LV_ENOSPC = -2,     /* no space left on device */
    LV_ENOMEM = -3,     /* out of memory */
    LV_ECORRUPT = -4,   /* data failed a magic, length or checksum check */
    LV_EINVAL = -5,     /* invalid argument or input */
    LV_ENOENT = -6,     /* no such file, database, record or object */
    LV_EEXIST = -7,     /* already exists */
    LV_ECONFIG = -8,    /* configuration error */
    LV_EGAP = -9,       /* TXIDs are not consecutive */
    LV_ECHAIN = -10,    /* pre-checksum does not match previous post-checksum */
    LV_EMISMATCH = -11, /* a computed checksum differs from the expected one */
    LV_EBROKEN = -12,   /* a previous I/O error left state uncertain; refused */
    LV_ENOTSQLITE = -13,/* file is not a SQLite database */
    LV_EREFUSED = -14,  /* the operation was refused by policy */
    LV_EVERSION = -15,  /* unsupported format version */
    LV_EBUSY = -16,     /* resource busy */
    LV_EPERM = -17,     /* permission denied */
    LV_ENET = -18,      /* network or HTTP failure */
    LV_EUSAGE = -19,    /* command-line usage error */
};

/* Name of an LV_E* code (static string, never NULL). */
const char *lv_strerror(int err);

/* Map an errno value to an LV_E* code (used only at the syscall boundary). */
int lv_from_errno(int e);

/* Map an LV_E* code to a positive errno value for FUSE replies. */
int lv_to_errno(int err);

/* Wall-clock time in microseconds since the Unix epoch (UTC). */
int64_t lv_now_us(void);

/* Monotonic time in microseconds, for intervals. */
int64_t lv_mono_us(void);

/* Format t (microseconds since epoch) as 2026-11-24T10:00:00.123456Z into buf (>= 32 bytes). */
char *lv_fmt_time(int64_t t_us, char *buf, size_t n);

/* printf into err (errlen bytes, always terminated); does nothing when err
 * is NULL or errlen 0.  For the "char *err, size_t errlen" message buffers. */
void lv_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Parse an RFC 3339 time with optional fraction and Z/offset into *t_us; 0 or LV_EINVAL. */
int lv_parse_time(const char *s, int64_t *t_us);

/* Big-endian load and store helpers. */
static inline uint16_t lv_get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t lv_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t lv_get64(const uint8_t *p) { return (uint64_t)lv_get32(p) << 32 | lv_get32(p + 4); }
static inline void lv_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void lv_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void lv_put64(uint8_t *p, uint64_t v) { lv_put32(p, (uint32_t)(v >> 32)); lv_put32(p + 4, (uint32_t)v); }

#define LV_UNUSED(x) (void)(x)

/* Invariant checks (as SQLite's assert()): compiled in when LV_ASSERTS is
 * nonzero (the Makefile's default, so `make test` and `make asan` run them;
 * `make install` and `make bench` build with ASSERTS=0), compiled out
 * otherwise, where the expression is not evaluated.  A failure prints the
 * expression and its place, then aborts. */
#ifndef LV_ASSERTS
#define LV_ASSERTS 0
#endif
#if LV_ASSERTS
#define LV_ASSERT(x) ((x) ? (void)0 : lv_assert_fail(#x, __FILE__, __LINE__, __func__))
#else
#define LV_ASSERT(x) ((void)0)
#endif

/* Report a failed LV_ASSERT on stderr and abort (never returns). */
void lv_assert_fail(const char *expr, const char *file, int line, const char *func) __attribute__((noreturn));
#define LV_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Lower-case hex of n bytes into out (2n+1 bytes with the NUL); returns out. */
char *lv_hex(const uint8_t *in, size_t n, char *out);

/* Make room for element n of the malloc'ed array *arr of *cap elements of
 * elem bytes: when n == *cap it grows to twice as many (first elements the
 * first time).  0 or LV_ENOMEM (the array is then unchanged).  Callers
 * cast: lv_grow((void **)&v, &cap, n, sizeof *v, 16). */
int lv_grow(void **arr, size_t *cap, size_t n, size_t elem, size_t first);

/* Parse exactly 2n hex digits (either case) of s into out[n]; 0 or LV_EINVAL. */
int lv_unhex(const char *s, uint8_t *out, size_t n);

/* Parse a duration such as 500ms, 1s, 10m, 24h, 7d into microseconds; 0 or LV_EINVAL. */
int lv_parse_duration(const char *s, int64_t *us);

/* Parse a size such as 64MiB, 1GiB, 512KiB, 1024 into bytes; 0 or LV_EINVAL. */
int lv_parse_size(const char *s, int64_t *bytes);

/* As lv_parse_duration and lv_parse_size; on failure *why (a static string)
 * says what is wrong ("unknown unit", "fractions are not supported ..."). */
int lv_parse_duration_why(const char *s, int64_t *us, const char **why);
int lv_parse_size_why(const char *s, int64_t *bytes, const char **why);

#endif /* LV_H */
