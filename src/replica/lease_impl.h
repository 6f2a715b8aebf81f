/*
 * lease_impl.h -- what a kind of lease (lease_etcd.c) shares with lease.c.
 * Not for other modules: they use lease.h.
 */
#ifndef LEASE_IMPL_H
#define LEASE_IMPL_H

#include "replica/lease.h"

/* A kind of lease: the calls lease.h routes to it. */
struct lease_ops {
    int (*is_primary)(struct lease *l);                       /* lease_is_primary */
    int (*primary_url)(struct lease *l, char *buf, size_t n); /* lease_primary_url */
    void (*info)(struct lease *l, struct lease_info *out);    /* lease_info */
    int (*handoff)(struct lease *l, const char *to, char *err, size_t errlen); /* lease_handoff */
    char *(*peers)(struct lease *l);                          /* lease_peers (NULL: the kind knows none) */
    void (*close)(struct lease *l);                           /* frees the kind's part (impl) */
};

/* Install the kind's ops and its private part (owned by the kind, freed by ops->close). */
void lease_set_impl(struct lease *l, const struct lease_ops *ops, void *impl);

/* The kind's private part (borrowed). */
void *lease_impl(struct lease *l);

/* Call the change callback (lease_on_change), if any, on this thread. */
void lease_notify(struct lease *l);

/* This node's advertise URL ("" if none; borrowed for the lease's life). */
const char *lease_advertise_url(struct lease *l);

/* 1 if this node may be the primary. */
int lease_candidate(struct lease *l);

/* Start the etcd kind on l from c (lease_set_impl first, so lease_close
 * frees a half-made one).  0; LV_ECONFIG (err); LV_ENOMEM. */
int lease_etcd_open(struct lease *l, const struct lease_conf *c, char *err, size_t errlen);

#endif /* LEASE_IMPL_H */
