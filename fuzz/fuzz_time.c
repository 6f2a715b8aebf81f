/*
 * fuzz_time.c -- libFuzzer harness for the small text parsers:
 * lv_parse_time (src/lv.c), lv_parse_duration and lv_parse_size
 * (src/config.c).
 *
 * Input: any bytes; they are made into a C string (cut at the first NUL,
 * as a command-line argument or YAML scalar would be) and given to all
 * three parsers.
 *
 * Checked beyond "no crash, no UB (signed overflow included)":
 *   - lv_parse_time round trip: a parsed time formatted with lv_fmt_time
 *     parses back to the same microsecond whenever the formatted year has
 *     four digits (0000..9999; an offset can move a time just outside);
 *   - the formatted text of a time given with 'Z' and six fraction digits
 *     equals the input apart from the case of 'T' and 'Z';
 *   - a duration or size that parses is >= 0, and formatting it back as
 *     "<n>ms" / "<n>" parses to the same value when it is a whole number
 *     of those units.
 */
#include <inttypes.h>
#include <strings.h>

#include "daemon/config.h"
#include "base/lv.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...) do { fprintf(stderr, "fuzz_time: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!getenv("FUZZ_LOG"))
        lvlog_threshold = -1;
    return 0;
}

static void check_time(const char *s)
{
    int64_t t, t2;
    char buf[64];
    size_t n = strlen(s);

    if (lv_parse_time(s, &t) != 0)
        return;
    lv_fmt_time(t, buf, sizeof buf);
    if (buf[0] >= '0' && buf[0] <= '9' && buf[4] == '-') {
        if (lv_parse_time(buf, &t2) != 0)
            FAIL("\"%s\" parsed to %" PRId64 ", formatted as \"%s\", which does not parse", s, t, buf);
        if (t2 != t)
            FAIL("\"%s\" parsed to %" PRId64 ", formatted as \"%s\", which parses to %" PRId64, s, t, buf, t2);
    }
    /* YYYY-MM-DDThh:mm:ss.ffffffZ is the canonical form lv_fmt_time writes. */
    if (n == 27 && (s[26] == 'Z' || s[26] == 'z') && s[19] == '.' && strncasecmp(s, buf, 27) != 0)
        FAIL("canonical \"%s\" formatted back as \"%s\"", s, buf);
}

static void check_scaled(const char *s, int is_size)
{
    int64_t v, v2;
    char buf[32];
    int rc;

    rc = is_size ? lv_parse_size(s, &v) : lv_parse_duration(s, &v);
    if (rc != 0) {
        if (rc != LV_EINVAL)
            FAIL("parse of \"%s\" returned %d", s, rc);
        return;
    }
    if (v < 0)
        FAIL("\"%s\" parsed to negative %" PRId64, s, v);
    if (is_size) {
        snprintf(buf, sizeof buf, "%" PRId64, v);
        rc = lv_parse_size(buf, &v2);
    } else {
        if (v % 1000 != 0)
            FAIL("duration \"%s\" parsed to %" PRId64 " us, not a whole number of ms", s, v);
        snprintf(buf, sizeof buf, "%" PRId64 "ms", v / 1000);
        rc = lv_parse_duration(buf, &v2);
    }
    if (rc != 0 || v2 != v)
        FAIL("\"%s\" parsed to %" PRId64 ", but \"%s\" gives rc %d value %" PRId64, s, v, buf, rc, v2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;

    if (size > 4096)
        return 0;
    s = fz_strndup(data, size);
    check_time(s);
    check_scaled(s, 0);
    check_scaled(s, 1);
    free(s);
    return 0;
}
