/*
 * lease.h -- who is the primary: the node that captures the applications'
 * writes, archives and serves replicas; every other node is a read replica
 * following it.
 *
 * One small interface, several kinds of lease behind it (lease.type):
 *   static  roles fixed by configuration: the node with candidate true is
 *           the primary, for good; a replica (candidate false) follows
 *           primary_url.  Nothing ever changes while the daemon runs.
 *   etcd    candidates compete for a lease key with a TTL (lease_etcd.c);
 *           the holder is the primary and publishes its advertise_url, the
 *           others follow it; lease_on_change tells the daemon when the
 *           role or the primary changes.  A holder that cannot renew in
 *           time stops being the primary (lease_is_primary 0: "fenced")
 *           before its lease can expire in etcd.
 *
 * Threads: every function may be called from any thread; lease_close once,
 * after the last other call.  The change callback runs on a thread of the
 * lease (never for static leases) and must not call lease_close.
 */
#ifndef LEASE_H
#define LEASE_H

#include <stddef.h>
#include <stdint.h>

struct lease;

/* What a lease is made from (all borrowed; lease_open copies them). */
struct lease_conf {
    const char *type;          /* "static" (also for NULL) or "etcd" */
    int candidate;             /* 1: this node may be (static: is) the primary */
    const char *advertise_url; /* how other nodes reach this one, or NULL */
    const char *primary_url;   /* static replicas: the primary to follow (required when candidate is 0) */
    const char *node_id;       /* this node's ID (published by an etcd primary) */
    const char *proxy_url;     /* this node's proxy URL (published by an etcd primary), or NULL */
    /* etcd only */
    const char *endpoints;     /* comma-separated http[s]://HOST:PORT of etcd members */
    const char *key;           /* the lease key, or NULL: /litevault/<cluster_hex>/primary */
    const char *cluster_hex;   /* the cluster ID (32 hex digits), for the default key */
    int64_t ttl_us;            /* lease TTL asked for (rounded up to seconds); <= 0: 10 s */
    const char *ca_file;       /* PEM CA to check etcd with, or NULL (the system's) */
    const char *cert_file;     /* client certificate for etcd, or NULL */
    const char *key_file;      /* its private key, or NULL */
    const char *username;      /* etcd user to authenticate as, or NULL: no authentication */
    const char *password;      /* its password (with username; never logged) */
    /* The databases' positions, {"txids": {"NAME": TXID, ...}, "terms":
     * {"NAME": TERM, ...}} (malloc'ed JSON; the lease frees it), published
     * in this node's key; NULL: none.  Called on the lease's thread. */
    char *(*positions)(void *arg);
    void *positions_arg;
    /* The holder's fencing deadline moved (CLOCK_MONOTONIC, lv_mono_us;
     * 0: not holding): writes must stop by then even if the lease's own
     * threads are late (a paused process).  NULL: not told.  Called on the
     * lease's thread with the same arg as positions. */
    void (*deadline)(void *arg, int64_t mono_us);
};

/* What /status shows of the lease (lease_info). */
struct lease_info {
    const char *state;         /* "primary", "fenced" (holder past its deadline), "follower", "deposed" (lost
                                  its term: never a candidate again in this process) (static string) */
    int holding;               /* 1 while this node holds the lease (primary or fenced) */
    uint64_t term;             /* etcd: the held key's create revision; 0 when not holding (static: 0) */
    uint64_t primary_term;     /* etcd: the current primary's term as last read (this node's while holding);
                                  0 unknown (static: 0) */
    int64_t deadline_ms;       /* etcd holder: ms left before it fences itself; else 0 */
    char primary_proxy[1024];  /* the primary's proxy URL ("" unknown) */
    char error[256];           /* the last problem talking to etcd ("" none) */
};

/* Open the lease c describes into *out (an etcd lease starts its threads).
 * 0; LV_ECONFIG (message in err: unknown type, a static replica without
 * primary_url, etcd without endpoints); LV_ENOMEM. */
int lease_open(const struct lease_conf *c, struct lease **out, char *err, size_t errlen);

/* The cluster ID through etcd (c->endpoints, TLS): the first node to ask
 * stores its ID under /litevault/cluster-id; the others adopt it.  hex (33
 * bytes) holds this node's ID when have is 1 (checked against etcd's), and
 * receives the cluster's.  Retries an unreachable etcd for timeout_us.  0;
 * LV_EREFUSED (another cluster's ID: err names both); LV_ENET, LV_ECORRUPT
 * (message in err). */
int lease_etcd_cluster(const struct lease_conf *c, char hex[33], int have, int64_t timeout_us, char *err,
                       size_t errlen);

/* The other live nodes as the lease knows them: a malloc'ed JSON array
 * (caller frees) of {"node": ID, "url": URL, "candidate": bool, "txids":
 * {NAME: TXID}} -- their node keys, read from etcd now (a blocking request
 * of at most TTL/4) -- or NULL (a static lease, or etcd unreachable). */
char *lease_peers(struct lease *l);

/* Hand the lease to node `to` (its node ID): the caller, the primary, has
 * stopped writes and knows `to` holds everything.  The lease names `to`
 * as the next holder for one TTL (the other candidates do not race
 * meanwhile), then gives the key up; this node never races again in this
 * process (lease_info: "deposed").  0; LV_EREFUSED (a static lease, or not
 * the holder: message in err); LV_ENET (etcd failed: err; the lease is
 * kept if it was not given up). */
int lease_handoff(struct lease *l, const char *to, char *err, size_t errlen);

/* Fill *out with the lease's state. */
void lease_info(struct lease *l, struct lease_info *out);

/* The fencing margin M for a lease of ttl_us: a quarter of it, at least 200 ms (lease_etcd.c). */
int64_t lease_margin_us(int64_t ttl_us);

/* 1 if this node is the primary now, else 0. */
int lease_is_primary(struct lease *l);

/* The primary's URL into buf (n bytes): this node's advertise_url when it
 * is the primary, else the primary it follows.  0; LV_ENOENT if unknown (a
 * primary without advertise_url, or no primary elected yet); LV_EINVAL if
 * buf is too small. */
int lease_primary_url(struct lease *l, char *buf, size_t n);

/* Call fn(arg) whenever lease_is_primary or lease_primary_url may answer
 * differently (replaces an earlier callback; fn NULL removes it); returns
 * once the callback it replaces is not running.  fn runs on the lease's
 * thread and must not call lease_on_change.  A static lease never
 * changes, so never calls it. */
void lease_on_change(struct lease *l, void (*fn)(void *arg), void *arg);

/* Release the lease (an etcd lease revokes its etcd lease, so its key goes at once).  NULL is fine. */
void lease_close(struct lease *l);

#endif /* LEASE_H */
