/*
 * peer_catchup.h -- a node about to become primary takes what more
 * advanced nodes hold (the positions their etcd node keys publish) before
 * it opens writes.  Design: src/replica/peer_catchup.c.
 *
 * Ownership: every argument is borrowed for the call.
 */
#ifndef PEER_CATCHUP_H
#define PEER_CATCHUP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "restore/catchup.h"

struct dbreg;

/* For every database of reg (in replica mode, its applier working), and
 * every database the peers hold that reg lacks, find in peers_json
 * (lease_peers: [{"node","url","txids":{NAME: TXID}}, ...]) the node that
 * holds the most of it beyond the local TXID (then the next, if that one
 * fails), and take its records with GET <url>/v1/log (token: http.token sent as "Authorization:
 * Bearer", NULL none; ca_file: CA certificates for https, NULL the
 * system's), applied through dbreg_apply until the local TXID reaches the
 * peer's or the peer gives no more.  Each request times out after
 * timeout_ms, the whole call after budget_us.  A peer that cannot be reached, or whose records do not
 * continue the local database, is logged and left.  Fills *res (dbs,
 * advanced, records, bytes, skipped, seconds).  0, or LV_ECORRUPT when
 * peers_json is not such an array. */
int peer_catchup(struct dbreg *reg, const char *peers_json, const char *token, const char *ca_file, int timeout_ms,
                 int wait_ms, int64_t budget_us, struct catchup_result *res);

/* The peer to ask next for database name (exposed for tests): of the
 * peers of the JSON array peers not yet tried (tried[i] == 0) nor found
 * dead (dead[i] == 0) that hold it beyond txid ("txids"), the one whose
 * last record is of the latest term ("terms"), and of those the furthest
 * (a deposed term's surplus is asked last).  Its index, with its TXID in
 * *theirs; -1 when none is ahead. */
long peer_catchup_best(json_t *peers, const char *name, uint64_t txid, const char *tried, const char *dead,
                       uint64_t *theirs);

#endif /* PEER_CATCHUP_H */
