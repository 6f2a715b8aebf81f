/*
 * repl.h -- a primary and its replicas for the replication tests, and the
 * checks that they agree.
 *
 * repl_cluster_with makes 1 + nrep nodes (lvcluster, owned by the per-test
 * registry): node 0 is the primary (lease: static, candidate), every other
 * node a replica whose lease.primary-url names node 0.  Each node's config
 * gets common_yaml and, inside its http: section, http_keys[i] (e.g. a
 * token).  Nodes are started primary first.
 */
#ifndef TESTLIB_REPL_H
#define TESTLIB_REPL_H

#include "node.h"

/* A started primary (node 0) and nrep replicas; common_yaml may be NULL. */
struct lvcluster *repl_cluster(int nrep, const char *common_yaml);

/* The same with per-node lines for the http: section (http_keys and its
 * entries may be NULL), started when start is 1. */
struct lvcluster *repl_cluster_with(int nrep, const char *common_yaml, const char *const *http_keys, int start);

/* Rewrite node i's config (same paths and port) with common_yaml and http_keys. */
void repl_reconfig(struct lvcluster *c, int i, const char *common_yaml, const char *http_keys);

/* The same with data_keys (lines "  key: value\n", may be NULL) inside the
 * data: section, e.g. a small segment-size. */
void repl_reconfig_data(struct lvcluster *c, int i, const char *data_keys, const char *common_yaml,
                        const char *http_keys);

/* Wait (LVT_WAIT_MS) until every running replica holds db at the primary's
 * TXID with the primary's checksum; asserts. */
void repl_wait_caught_up(struct lvcluster *c, const char *db);

/* The content (SQL-level hash) and the checksum of db agree on every
 * running node; asserts. */
void repl_assert_same(struct lvcluster *c, const char *db);

#endif /* TESTLIB_REPL_H */
