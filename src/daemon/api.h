/*
 * api.h -- every route of the daemon's HTTP API, in one place.
 *
 * Two listeners: the admin socket (data.dir/admin.sock, 0600: the daemon's
 * user and root only) serves every route; http.addr serves the read-only
 * ones (/status, /metrics, /health) unless http.public is false.
 *
 *   GET  /status             JSON: version, databases (dbreg_status_json),
 *                            exports and archive destinations.
 *   GET  /metrics            Prometheus text format: capture, archive,
 *                            exports and process metrics.
 *   GET  /health             200 {"status":"ok"} while the mount serves,
 *                            503 {"status":"starting"|"stopping"} otherwise;
 *                            on a replica also 503 {"status":"unhealthy",
 *                            "reason"} when it does not follow the primary
 *                            or a database is behind replication.max-lag.
 *   GET  /primary            200 {"role":"primary"} only on the primary
 *                            while the mount serves; else 503 {"role",
 *                            "primary" (a replica's primary URL), "reason"}.
 *                            For load balancers (HAProxy's httpchk): writes
 *                            go where it answers 200.
 *   GET  /replica            200 {"role":"replica","primary"} only on a
 *                            replica that /health calls healthy; else 503
 *                            {"role","reason"}: where reads may go.
 *   GET  /v1/wait?db=NAME&txid=N[&timeout=T]
 *                            answers once this node holds TXID N of NAME:
 *                            200 {"db","txid","waited_for"} (txid: the one
 *                            held, >= N); after T (a duration, default 5s,
 *                            at most 60s) 504 with the TXID held (-1: no
 *                            such database here yet); 400 on a bad query;
 *                            503 beyond 16 waits at once.
 *                            Read-your-writes for a proxy in front of a
 *                            replica (nginx's auth_request).
 *   POST /v1/stream          (http.addr, needs http.token) the replication
 *                            stream of the primary (replica/primary.h); on
 *                            a replica 503 naming its primary.
 *
 * /status carries the node's role: on the primary {"role":"primary",
 * "node","cluster","replicas":[...]} (primary_status_json); on a replica
 * {"role":"replica","node","primary","connected","cluster",
 * "replication":{...}} and, in each database, "replication":{"txid",
 * "lag_txids","lag_ms","state"} (replica_status_json).
 *   POST /v1/image?db=NAME   (admin socket only) write a consistent image of
 *                            database NAME (see dbreg_image) into a new file
 *                            under data.dir/tmp/ and answer, as one JSON
 *                            line, its path and facts: {"path","name","id",
 *                            "txid","time","time_us","page_size","pages",
 *                            "checksum"}.  The connection is then held: the
 *                            image exists until the client hangs up (or the
 *                            daemon stops), and is deleted then.  The client
 *                            renames (adopts) or copies it meanwhile; a
 *                            renamed image is the client's.  Images together
 *                            may occupy at most http.image-space bytes
 *                            (default: half the free space of data.dir);
 *                            beyond, 507.
 *
 * On http.addr, POST /v1/image answers 403 naming the admin socket.
 * Errors are JSON {"error": "..."} with 400 (bad request), 403, 404 (no such
 * database), 409 (busy or broken), 507 (no room for the image) or 500.
 */
#ifndef API_H
#define API_H

#include <stddef.h>
#include <stdint.h>

struct http_server;
struct dbreg;
struct exports;
struct archiver;
struct primary;
struct replica;

/* What the handlers read (all borrowed; each must outlive the server). */
struct api_ctx {
    struct dbreg *reg;          /* databases */
    struct exports *exp;        /* scheduled exports, NULL if none */
    struct archiver *arch;      /* archiver, NULL without destinations */
    const char *data_dir;       /* data.dir (images go to data.dir/tmp) */
    int64_t image_space;        /* http.image-space: bytes images may occupy together; 0: half the free space */
    struct primary *primary;    /* the replication streams when this node is the primary, else NULL */
    const char *node_id;        /* this node's ID (data.dir/node-id) */
    const char *cluster_hex;    /* the primary's cluster ID (a replica's is in its status), or NULL */
    const char *primary_url;    /* a replica's primary ("" if none is known), NULL on the primary */
    struct lease *lease;        /* the lease (its state in /status), or NULL */
    /* POST /v1/promote: hand the primary role over (on the primary: to node,
     * or "" for any replica that holds everything; on a replica: to this
     * node, asking its primary).  Fills msg; returns an HTTP status. */
    int (*promote)(void *arg, const char *node, char *msg, size_t msglen);
    void *promote_arg;
};

/* Register routes on s (before http_start): every route if admin, else the
 * read-only ones.  *ctx is copied (the last call's copy is used by both
 * servers), the objects it points to are borrowed.  0 or LV_ENOMEM. */
int api_register(struct http_server *s, const struct api_ctx *ctx, int admin);

/* The role changed (a lease elected this node, or another primary): the
 * role fields of *ctx (primary, arch, exp, cluster_hex, primary_url,
 * lease) replace those api_register was given; strings are copied, the
 * objects borrowed until the servers are freed. */
void api_set_role(const struct api_ctx *ctx);

/* Tell /health whether the mount serves (1) or not (0: starting, or stopping once it served). */
void api_set_serving(int serving);

/* The replica client /status, /health and /metrics report (set once it
 * runs, NULL before it stops; a replica's client starts after the mount). */
void api_set_replica(struct replica *r);

/* The image-space budget of POST /v1/image, shared with the primary's
 * snapshot images (struct primary_opts): reserve bytes (0, or LV_ENOSPC
 * with a message), and give them back.  arg is unused. */
int api_image_reserve(void *arg, int64_t bytes, char *msg, size_t msglen);
void api_image_release(void *arg, int64_t bytes);

#endif /* API_H */
