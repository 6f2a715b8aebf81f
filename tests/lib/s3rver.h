/*
 * s3rver.h -- a local S3-compatible server (s3rver, through tests/s3rver.sh)
 * for one test, and stores opened with its credentials.
 *
 * DESIGN.  s3rver_start makes a temporary directory and picks a free port,
 * runs `tests/s3rver.sh start DIR PORT BUCKET` (which waits until the bucket
 * answers) and registers the stop with lvt_fini, so no test stops it by
 * hand unless the test is about the server going away (s3rver_stop,
 * s3rver_kill, then s3rver_restart on the same directory and port: the
 * objects survive).  s3rver accepts the access key S3RVER with any V4
 * signature.  The tests run from the repository root (tests/s3rver.sh).
 */
#ifndef TESTLIB_S3RVER_H
#define TESTLIB_S3RVER_H

#include <stddef.h>

struct store;

/* Keys of an archive destination or export job that authenticate to s3rver. */
#define S3RVER_KEYS "    access-key-id: S3RVER\n    secret-access-key: S3RVER\n"

/* One running (or stopped) s3rver. */
struct s3rver {
    char dir[300];      /* its directory: data/, s3rver.log, s3rver.pid */
    int port;           /* 127.0.0.1 port */
    char bucket[64];    /* the bucket it was started with */
    char endpoint[64];  /* http://127.0.0.1:PORT */
    int running;        /* 1 between start and stop/kill */
};

/* Start an s3rver serving bucket on a free port; asserts it answers.  Owned by
 * the registry (stopped and removed at lvt_fini). */
struct s3rver *s3rver_start(const char *bucket);

/* Start it again on the same directory, port and bucket; asserts. */
void s3rver_restart(struct s3rver *s);

/* SIGTERM and wait for the exit; asserts. */
void s3rver_stop(struct s3rver *s);

/* SIGKILL at once (a crash); asserts the command ran. */
void s3rver_kill(struct s3rver *s);

/* "s3://BUCKET/PREFIX?endpoint=...&region=us-east-1&force-path-style=true" into buf (returns buf). */
char *s3rver_url(const struct s3rver *s, const char *prefix, char *buf, size_t len);

/* Open a store for url (file:// or s3://) with s3rver's credentials and short
 * retries; asserts.  The caller closes it with store_close. */
struct store *lvstore_open(const char *url);

#endif /* TESTLIB_S3RVER_H */
