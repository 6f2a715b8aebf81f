/*
 * fuzz_cron.c -- libFuzzer harness for cron_parse / cron_next (src/cron.c).
 *
 * Input: any bytes, made into a C string (cut at the first NUL, as a YAML
 * scalar would be).  Checked beyond "no crash, no UB": an expression that
 * parses has a next run strictly after each of a few start times (the
 * epoch, 2026-11-24, a leap day, the end of 9998), and asking again from
 * that run gives a later one; a rejected expression has an error message.
 */
#include <inttypes.h>

#include "export/cron.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...) do { fprintf(stderr, "fuzz_cron: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!getenv("FUZZ_LOG"))
        lvlog_threshold = -1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t starts[] = {0, 1795514400123456LL, 951782400000000LL, 253370764800000000LL};
    struct cron c;
    char err[256] = "";
    char *s;

    if (size > 1024)
        return 0;
    s = fz_strndup(data, size);
    if (cron_parse(s, &c, err, sizeof err) != 0) {
        if (!err[0])
            FAIL("\"%s\" rejected without a message", s);
        free(s);
        return 0;
    }
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
        int64_t next = 0, next2 = 0;
        if (cron_next(&c, starts[i], &next) != 0)
            continue; /* no run before the end of year 9999 */
        if (next <= starts[i])
            FAIL("\"%s\": next run %" PRId64 " is not after %" PRId64, s, next, starts[i]);
        if (cron_next(&c, next, &next2) == 0 && next2 <= next)
            FAIL("\"%s\": the run after %" PRId64 " is %" PRId64, s, next, next2);
    }
    free(s);
    return 0;
}
