/*
 * http.h -- a node's HTTP API from a test: GET any path, /status as JSON,
 * one database's in-memory state, and Prometheus samples from /metrics.
 *
 * DESIGN.  Requests go through the project's own client (base/http.h,
 * libcurl) in the test process: no curl process per request, so a test can
 * poll /status after every commit.  /status is answered from the daemon's
 * memory, so unlike the CLI's log commands it does not depend on which log
 * segments are still on disk.  Nothing here asserts: a failed request
 * returns NULL or -1 and the caller says what it expected.
 */
#ifndef TESTLIB_HTTP_H
#define TESTLIB_HTTP_H

#include <jansson.h>

#include "cli.h"
#include "node.h"

/* GET path from n's HTTP address: the body (malloc'ed, caller frees; "" if empty) with
 * *status (if not NULL) the HTTP status, or NULL (status 0) if the request failed. */
char *lvnode_http_get(const struct lvnode *n, const char *path, long *status);

/* GET /status parsed (new reference, caller decrefs), or NULL. */
json_t *lvnode_status(const struct lvnode *n);

/* db's entry of GET /status into *st: 1 found, 0 not listed, -1 request failed. */
int lvnode_http_db(const struct lvnode *n, const char *db, struct lvdbstat *st);

/* Value of the Prometheus sample whose line is `series value` in text (series is the
 * exact text before the space, labels included), or -1 if absent. */
double metrics_value(const char *text, const char *series);

/* metrics_value of n's GET /metrics, or -1 if absent or the request failed. */
double lvnode_metric(const struct lvnode *n, const char *series);

#endif /* TESTLIB_HTTP_H */
