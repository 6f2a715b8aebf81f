/*
 * lease.h -- who is the primary: the node that captures the applications'
 * writes, archives and serves replicas; every other node is a read replica
 * following it.
 *
 * One small interface, several kinds of lease behind it (lease.type):
 *   static  roles fixed by configuration: the node with candidate true is
 *           the primary, for good; a replica (candidate false) follows
 *           primary_url.  Nothing ever changes while the daemon runs.
 *   etcd    (later) candidates compete for a lease key with a TTL; the
 *           holder is the primary and publishes its advertise_url, the
 *           others follow it; lease_on_change tells the daemon when the
 *           role or the primary changes.  Refused by lease_open for now.
 *
 * Threads: every function may be called from any thread; lease_close once,
 * after the last other call.  The change callback runs on a thread of the
 * lease (never for static leases) and must not call lease_close.
 */
#ifndef LEASE_H
#define LEASE_H

#include <stddef.h>

struct lease;

/* What a lease is made from (all borrowed; lease_open copies them). */
struct lease_conf {
    const char *type;          /* "static" (also for NULL); "etcd" is refused for now */
    int candidate;             /* 1: this node may be (static: is) the primary */
    const char *advertise_url; /* how other nodes reach this one, or NULL */
    const char *primary_url;   /* static replicas: the primary to follow (required when candidate is 0) */
};

/* Open the lease c describes into *out.  0; LV_ECONFIG (message in err:
 * unknown or unsupported type, a replica without primary_url); LV_ENOMEM. */
int lease_open(const struct lease_conf *c, struct lease **out, char *err, size_t errlen);

/* 1 if this node is the primary now, else 0. */
int lease_is_primary(struct lease *l);

/* The primary's URL into buf (n bytes): this node's advertise_url when it
 * is the primary, else the primary it follows.  0; LV_ENOENT if unknown (a
 * primary without advertise_url, or no primary elected yet); LV_EINVAL if
 * buf is too small. */
int lease_primary_url(struct lease *l, char *buf, size_t n);

/* Call fn(arg) whenever lease_is_primary or lease_primary_url may answer
 * differently (replaces an earlier callback; fn NULL removes it).  A
 * static lease never changes, so never calls it. */
void lease_on_change(struct lease *l, void (*fn)(void *arg), void *arg);

/* Release the lease (an etcd lease would give up its key).  NULL is fine. */
void lease_close(struct lease *l);

#endif /* LEASE_H */
