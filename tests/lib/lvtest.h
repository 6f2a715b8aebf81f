/*
 * lvtest.h -- the test library in one include.  tests/lib/ has one module
 * per concern; each header says what it owns and who frees what:
 *
 *   util.h     run_cmd, sleep_ms, now_ms, WAIT_FOR (poll with a bound)
 *   fixture.h  the per-test registry of things to undo; lvt_fini for .fini
 *   files.h    temporary directories, byte and checksum checks on files
 *   sql.h      SQLite helpers on paths and handles, content hashes
 *   node.h     the daemon under test (lvnode) and clusters of them
 *   cli.h      the litevault CLI against a node; lvnode_check_db
 *   http.h     a node's HTTP API: /status, /metrics samples
 *   s3rver.h   a local S3 server per test; stores with its credentials
 *   dest.h     archive destinations (file:// or s3) and the twin-test table
 *   bank.h     the bank workload: a transfer writer, invariant-checking reader processes
 *   netns.h    network namespaces: nodes inside them, cut and heal (partitions)
 *   etcd.h     a single-member etcd per test (the etcd lease)
 */
#ifndef TESTLIB_LVTEST_H
#define TESTLIB_LVTEST_H

#include "bank.h"
#include "cli.h"
#include "dest.h"
#include "etcd.h"
#include "files.h"
#include "fixture.h"
#include "http.h"
#include "netns.h"
#include "node.h"
#include "s3rver.h"
#include "sql.h"
#include "util.h"

#endif /* TESTLIB_LVTEST_H */
