/*
 * lease.h -- TEMP(scaffold): helper B owns this header; the prototypes of
 * PLAN.md ("Roles and config"), so that the replication code builds before
 * the merge.  Take B's version at merge.
 */
#ifndef LEASE_H
#define LEASE_H

#include <stddef.h>

struct lease;
struct lease_conf {
    const char *type;
    int candidate;
    const char *advertise_url;
    const char *primary_url;
};

int lease_open(const struct lease_conf *c, struct lease **out, char *err, size_t errlen);
int lease_is_primary(struct lease *l);
int lease_primary_url(struct lease *l, char *buf, size_t n); /* 0, or LV_ENOENT if unknown */
void lease_on_change(struct lease *l, void (*fn)(void *arg), void *arg);
void lease_close(struct lease *l);

#endif /* LEASE_H */
