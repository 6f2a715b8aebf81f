/*
 * primary.h -- the primary's side of replication: POST /v1/stream answers
 * each replica with one long-lived stream of frames (replica/stream.h):
 * HELLO, then what brings each of its databases up to date (DROP/RENAME,
 * RECORDs read raw from the local logs, or a SNAP_BEGIN/PAGES/END image
 * followed by the records after it), then every new commit as it is
 * logged, with a HEARTBEAT each idle second.  Protocol: docs/DESIGN.md,
 * "Replication"; design: primary.c.
 *
 * Ownership: primary_new returns a handle owned by the caller and freed by
 * primary_free once no stream can run any more (after http_free of the
 * server whose route calls primary_stream).  The registry is borrowed.
 */
#ifndef REPL_PRIMARY_H
#define REPL_PRIMARY_H

#include <stddef.h>
#include <stdint.h>

struct dbreg;
struct db_info;
struct http_request;
struct http_response;
struct primary;
struct primary_conn;

/* What the primary needs (strings copied by primary_new). */
struct primary_opts {
    struct dbreg *reg;          /* the databases (borrowed) */
    const char *data_dir;       /* data.dir: snapshot images go to data.dir/tmp */
    const uint8_t *cluster;     /* cluster ID, 16 bytes (cluster_id_ensure) */
    const char *node_id;        /* this node's ID (node_id_ensure) */
    const char *url;            /* lease.advertise-url, sent in HELLO */
    int64_t max_retain;         /* replication.max-retain: log bytes kept for replicas beyond the
                                   archive's need (0: none; negative: the default, 1 GiB) */
    /* The image-space budget shared with POST /v1/image (daemon/api.c):
     * reserve bytes for a snapshot image (0, or an error with a message);
     * give them back.  NULL: no budget. */
    int (*image_reserve)(void *arg, int64_t bytes, char *msg, size_t msglen);
    void (*image_release)(void *arg, int64_t bytes);
    void *image_arg;
    int sync_replicas;          /* replication.sync-replicas: a commit waits until this many replicas hold
                                   it (0: none, asynchronous) */
    int64_t sync_timeout_us;    /* replication.sync-timeout: the longest a commit waits (<= 0: 5 s) */
    int wait_durable;           /* replication.wait-durable: DBREG_DURABLE_AUTO, _ALWAYS or _NEVER (what a
                                   stream may send, capture/db.h) */
    int acks;                   /* 1: replicas acknowledge what they apply even without sync_replicas (so
                                   that a hand-over knows who holds everything: primary_handoff_wait) */
};

/* Create the primary's state.  0 or LV_ENOMEM. */
int primary_new(const struct primary_opts *o, struct primary **out);

/* POST /v1/ack from a replica (body: {"node": ID, "txids": {NAME: TXID}}):
 * what it holds now.  0; LV_EINVAL (malformed) or LV_ENOENT (no stream of
 * that node here), with a message in msg. */
int primary_ack(struct primary *p, const void *body, size_t len, char *msg, size_t msglen);

/* Wait (at most timeout_us) until a connected replica -- node, or any but
 * the nskip in skip when node is NULL or "" -- acknowledged every database
 * of dbs (n entries) up to its txid; its node ID into out.  The caller has
 * stopped writes.  0; LV_EBUSY (none did in time). */
int primary_handoff_wait(struct primary *p, const char *node, const char *const *skip, size_t nskip,
                         const struct db_info *dbs, size_t n, int64_t timeout_us, char *out, size_t outlen);

/* 1 if commits wait for replicas (replication.sync-replicas > 0). */
int primary_sync_enabled(const struct primary *p);

/* The commit hook of synchronous replication (dbreg_set_commit_hook; arg
 * is the struct primary): wait until sync-replicas replicas that are in
 * sync acknowledged TXID txid of database name.  Stops waiting at once
 * when fewer than that many are connected and in sync (asynchronous until
 * they catch up); after sync-timeout, the replicas that did not
 * acknowledge stop counting until they hold everything sent to them.
 * 0 (acknowledge the commit), or LV_EREFUSED when no replica confirmed it
 * and this node was fenced meanwhile (the application gets an I/O error). */
int primary_sync_wait(void *arg, const char *name, uint64_t txid);

/* Answer POST /v1/stream (req) into resp: the daemon's route calls it on
 * the primary (a private route: it needs http.token when one is set).
 * Always 0 (errors are answered in resp). */
int primary_stream(struct primary *p, const struct http_request *req, struct http_response *resp);

/* End every stream at its next step (the node stops being the primary, or
 * shuts down); new ones are refused with 503. */
void primary_stop_streams(struct primary *p);

/* The archiver's retention hook (archiver_set_retain): the TXID up to
 * which the log of database info may be pruned, given that the archive
 * would prune up to upto: never past what a replica streaming it (or one
 * that disconnected less than a minute ago) still needs, unless that
 * would keep more than replication.max-retain bytes of segments the
 * archive no longer needs (the replica then gets a snapshot, logged). */
uint64_t primary_retain(void *arg, const struct db_info *info, uint64_t upto);

/* JSON array of the replicas streaming (or recently disconnected):
 * [{"node","addr","url","connected","since","bytes":{"record","snapshot",
 * "other"},"records","snapshots","databases":[{"name","txid"}]}]
 * (malloc'ed, caller frees; NULL on ENOMEM). */
char *primary_status_json(struct primary *p);

/* Append Prometheus metrics (litevault_replication_sent_bytes_total{type},
 * ...) to *buf (see metrics.h).  0 or LV_ENOMEM. */
int primary_metrics(struct primary *p, char **buf, size_t *len, size_t *cap);

/* Free (every stream must have ended: see above).  NULL is fine. */
void primary_free(struct primary *p);

/* ---- One replica's stream, without HTTP (the route's handler is built on
 * these; tests drive them directly) ---- */

/* Check a POST /v1/stream request body (JSON, see docs/DESIGN.md) from a
 * replica at addr (its peer address, for /status; may be NULL) and open
 * its stream.  0 with
 * *out; or an HTTP status in *status (400 malformed, 409 another cluster
 * or a replica that cannot be adopted, 503 not serving) and *errjson, a
 * malloc'ed {"error": "..."} body (caller frees). */
int primary_conn_open(struct primary *p, const void *body, size_t len, const char *addr,
                      struct primary_conn **out, int *status, char **errjson);

/* The stream's next bytes into buf (at most max): > 0 bytes written, 0
 * nothing yet (call again; the call blocked up to a second waiting for a
 * commit), -1 the stream ended, -2 abort the connection.  The shape of
 * http_response.stream_fn; arg is the struct primary_conn. */
long primary_conn_read(void *arg, char *buf, size_t max);

/* Close the stream (http_response.stream_free; exactly once). */
void primary_conn_close(void *arg);

#endif /* REPL_PRIMARY_H */
