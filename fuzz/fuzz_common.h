/*
 * fuzz_common.h -- helpers shared by the libFuzzer harnesses in fuzz/.
 *
 * Every harness defines LLVMFuzzerTestOneInput and calls fz_init() from
 * LLVMFuzzerInitialize.  fz_init silences the project logger (the parsers
 * log every rejected input at LV_ERROR; set FUZZ_LOG=1 to see it) and
 * creates one private scratch directory lvfuzz-<name>-XXXXXX, removed at
 * exit, in /dev/shm when it exists (tmpfs: the state harness fsyncs on
 * every accepted input) and in /tmp otherwise.  Parsers that take a path get the input written to a
 * file in it (fz_file), truncated and rewritten for every input.
 *
 * "Fix-up" copies.  The binary formats (txlog, WAL, state file) carry
 * XXH3 or Fletcher-like checksums, so nearly every mutation of a valid
 * seed is rejected at the first checksum check and the code behind it is
 * never reached.  Each such harness therefore runs the parser twice per
 * input: on the bytes as given (exercising the checks themselves) and on
 * a copy whose checksums were recomputed (exercising everything after
 * them).  Only checksums are patched; every other field is left to the
 * fuzzer.
 *
 * Header-only; each harness is one translation unit.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/lvlog.h"

static char fz_dir[64];    /* scratch directory, "" before fz_init */
static char fz_path[128];  /* fz_dir/input */

static inline void fz_cleanup(void)
{
    if (!fz_dir[0])
        return;
    unlink(fz_path);
    rmdir(fz_dir);
}

/* Silence logging and create the scratch directory; exits on failure. */
static inline void fz_init(const char *name, const char *file_name)
{
    if (!getenv("FUZZ_LOG"))
        lvlog_threshold = -1;
    snprintf(fz_dir, sizeof fz_dir, "%s/lvfuzz-%s-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
             name);
    if (!mkdtemp(fz_dir)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(fz_path, sizeof fz_path, "%s/%s", fz_dir, file_name);
    atexit(fz_cleanup);
}

/* Write the n bytes at d to fz_path (replacing it); returns fz_path.  Exits
 * on I/O failure, which is a harness problem, not a finding. */
static inline const char *fz_file(const uint8_t *d, size_t n)
{
    int fd = open(fz_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd < 0) {
        perror(fz_path);
        exit(1);
    }
    while (n > 0) {
        ssize_t w = write(fd, d, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            perror("write");
            exit(1);
        }
        d += w;
        n -= (size_t)w;
    }
    close(fd);
    return fz_path;
}

/* malloc'ed copy of d (n bytes) plus a NUL, so text parsers get a C string. */
static inline char *fz_strndup(const uint8_t *d, size_t n)
{
    char *s = malloc(n + 1);

    if (!s)
        abort();
    memcpy(s, d, n);
    s[n] = '\0';
    return s;
}

#endif /* FUZZ_COMMON_H */
