/*
 * replica.h -- a replica's client: one worker thread that follows the
 * primary's POST /v1/stream (libcurl), checks the cluster, and applies
 * what it receives through the registry (replica/rx.h).  It reconnects
 * with backoff (100 ms doubling to 5 s, reset after a stream was followed
 * for 2 s) after
 * any failure: refused request, cut or damaged stream, 5 s without a byte,
 * a copy that needs a snapshot.  Design: replica.c; protocol:
 * docs/DESIGN.md, "Replication".
 *
 * Ownership: replica_start returns a handle owned by the caller, freed by
 * replica_stop.  The registry is borrowed and must outlive it; its mount
 * must be set (dbreg_set_mount) and served before anything is applied.
 */
#ifndef REPL_REPLICA_H
#define REPL_REPLICA_H

#include <stddef.h>
#include <stdint.h>

struct dbreg;
struct replica;
struct repl_sink;

/* What the client needs (strings copied by replica_start). */
struct replica_opts {
    struct dbreg *reg;          /* the registry, already a replica (dbreg_set_replica) */
    const char *data_dir;       /* data.dir: the cluster-id file */
    const char *primary_url;    /* the primary's base URL (http[s]://host:port) */
    uint64_t min_term;          /* refuse a primary whose HELLO term is lower (the lease's current term; 0: any) */
    const char *token;          /* http.token, sent as "Authorization: Bearer"; NULL: none */
    const char *ca_file;        /* http.tls-ca: CA certificates checking the primary; NULL: the system's */
    const char *node_id;        /* this node's ID (node_id_ensure) */
    const char *url;            /* this node's advertise URL (the primary shows it in /status) */
    int64_t apply_wait_us;      /* replication.apply-wait (0: 100 ms) */
    int64_t max_lag_us;         /* replication.max-lag, for /health (0: 10 s) */
    size_t max_pending;         /* record bytes held for busy databases before the socket is no
                                   longer read (0: 64 MiB) */
    const struct repl_sink *sink; /* what applies the frames (replica/rx.h); NULL: the registry (tests
                                     pass a fake) */
};

/* Start the client's thread.  0 or LV_ENOMEM. */
int replica_start(const struct replica_opts *o, struct replica **out);

/* The lease names term `term` for the primary now: refuse primaries below
 * it, and end the session with one below it (a new term at the same URL, a
 * VIP or a DNS name, may be another node).  Only ever raises.  Any thread. */
void replica_raise_term(struct replica *r, uint64_t term);

/* Ask the thread to stop without waiting (it leaves the stream within
 * about a second); replica_stop joins and frees.  NULL is fine. */
void replica_ask_stop(struct replica *r);
void replica_stop(struct replica *r);

/* After replica_ask_stop: wait up to ms for the thread to leave (it may
 * be inside an apply waiting on the mount).  1 when it has (nothing of it
 * touches the registry any more), else 0.  NULL: 1. */
int replica_wait_stopped(struct replica *r, int ms);

/* The primary's URL (borrowed, valid until replica_stop). */
const char *replica_primary_url(const struct replica *r);

/* /status: {"primary","connected","cluster","since","last_error",
 * "primary_node","databases":{NAME:{"txid","lag_txids","lag_ms","state",
 * "error"?,"records","busy"}}} (malloc'ed, caller frees; NULL on ENOMEM). */
char *replica_status_json(struct replica *r);

/* /health: 1 when streaming from the primary and every database is
 * under max-lag without error; else 0 with the reason in reason. */
int replica_health(struct replica *r, char *reason, size_t n);

/* Append Prometheus metrics (litevault_replication_connected,
 * litevault_replication_lag_seconds{db}, ...) to *buf.  0 or LV_ENOMEM. */
int replica_metrics(struct replica *r, char **buf, size_t *len, size_t *cap);

#endif /* REPL_REPLICA_H */
