/*
 * s3rver.c -- see s3rver.h.
 */
#include "s3rver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "files.h"
#include "fixture.h"
#include "node.h"
#include "store/store.h"
#include "util.h"

#define S3SH "tests/s3rver.sh"

static void s3_undo(void *arg)
{
    struct s3rver *s = arg;
    if (s->running) {
        char *out = NULL;
        run_cmd(&out, S3SH " stop '%s' 2>&1", s->dir);
        free(out);
    }
    free(s);
}

void s3rver_restart(struct s3rver *s)
{
    char *out = NULL;
    int rc = run_cmd(&out, S3SH " start '%s' %d '%s' 2>&1", s->dir, s->port, s->bucket);
    cr_assert_eq(rc, 0, "s3rver did not start (run `make deps` for tests/node_modules): %s", out ? out : "");
    free(out);
    s->running = 1;
}

struct s3rver *s3rver_start(const char *bucket)
{
    cr_assert_eq(access(S3SH, X_OK), 0, "%s not found: run the tests from the repository root", S3SH);
    struct s3rver *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    snprintf(s->dir, sizeof s->dir, "%s", lvt_tmpdir("s3"));
    lvt_defer(LVT_UNDO, s3_undo, s); /* after the directory's registration: stops before it is removed */
    s->port = free_port();
    snprintf(s->bucket, sizeof s->bucket, "%s", bucket);
    snprintf(s->endpoint, sizeof s->endpoint, "http://127.0.0.1:%d", s->port);
    s3rver_restart(s);
    return s;
}

void s3rver_stop(struct s3rver *s)
{
    cr_assert_eq(run_cmd(NULL, S3SH " stop '%s'", s->dir), 0, "s3rver did not stop");
    s->running = 0;
}

void s3rver_kill(struct s3rver *s)
{
    cr_assert_eq(run_cmd(NULL, S3SH " kill '%s'", s->dir), 0, "s3rver was not killed");
    s->running = 0;
}

char *s3rver_url(const struct s3rver *s, const char *prefix, char *buf, size_t len)
{
    snprintf(buf, len, "s3://%s/%s?endpoint=%s&region=us-east-1&force-path-style=true", s->bucket,
             prefix ? prefix : "", s->endpoint);
    return buf;
}

struct store *lvstore_open(const char *url)
{
    struct store_opts o = {0};
    struct store *s = NULL;
    char err[512] = "";
    o.force_path_style = -1;
    o.access_key = "S3RVER";
    o.secret_key = "S3RVER";
    o.retry_base_ms = 50;
    o.retry_max_ms = 200;
    int rc = store_open(url, &o, &s, err, sizeof err);
    cr_assert_eq(rc, 0, "store_open %s: %s", url, err);
    return s;
}
