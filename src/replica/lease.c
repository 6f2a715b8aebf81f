/*
 * lease.c -- the lease interface (lease.h) and its static implementation.
 *
 * Design.  struct lease is a small object with an ops table: lease_open
 * picks the implementation from lease_conf.type, and every public call
 * goes through l->ops (lease_impl.h); the etcd kind lives in
 * lease_etcd.c.  What all kinds
 * share lives in struct lease itself: the copied configuration and the
 * change callback (under l->lock, because an etcd lease calls it from its
 * own thread while the daemon may replace it).
 *
 * Static lease.  Roles come from configuration and never change: the
 * candidate is the primary; a non-candidate follows primary_url.  Its ops
 * read only immutable fields, so they take no lock, and it never calls the
 * change callback.
 *
 * Invariants:
 *   L1. After lease_open, type, candidate, advertise_url and primary_url
 *       never change (an etcd lease keeps its changing state elsewhere).
 *   L2. A static lease with candidate 0 has a primary_url.
 *   L3. The change callback runs with l->lock held, so once lease_on_change
 *       returns, the callback it replaced runs no more: its argument may be
 *       freed.
 */
#include "replica/lease_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/lv.h"

struct lease {
    const struct lease_ops *ops; /* the implementation */
    void *impl;                  /* its private part (etcd), or NULL */
    char *type;                  /* lease type (owned; L1) */
    int candidate;               /* may be the primary (L1) */
    char *advertise_url;         /* this node's URL (owned), or NULL (L1) */
    char *primary_url;           /* the primary to follow (owned), or NULL (L1) */
    pthread_mutex_t lock;        /* guards change_fn, change_arg; held while the callback runs (L3) */
    void (*change_fn)(void *arg);
    void *change_arg;
};

/* Copy s into buf (n bytes).  0, LV_ENOENT (s NULL), LV_EINVAL (too small). */
static int copy_url(const char *s, char *buf, size_t n)
{
    size_t len;

    if (s == NULL)
        return LV_ENOENT;
    len = strlen(s);
    if (len >= n)
        return LV_EINVAL;
    memcpy(buf, s, len + 1);
    return 0;
}

/* ---- static ---- */

static int static_is_primary(struct lease *l)
{
    return l->candidate;
}

static int static_primary_url(struct lease *l, char *buf, size_t n)
{
    return copy_url(l->candidate ? l->advertise_url : l->primary_url, buf, n);
}

static void static_info(struct lease *l, struct lease_info *out)
{
    out->state = l->candidate ? "primary" : "follower";
    out->holding = l->candidate;
}

static int static_handoff(struct lease *l, const char *to, char *err, size_t errlen)
{
    LV_UNUSED(l);
    LV_UNUSED(to);
    lv_seterr(err, errlen, "a static lease cannot be handed over: change lease.candidate and lease.primary-url on "
                           "the nodes and restart them, or use lease.type etcd");
    return LV_EREFUSED;
}

static void static_close(struct lease *l)
{
    LV_UNUSED(l);
}

static const struct lease_ops static_ops = {static_is_primary, static_primary_url, static_info, static_handoff,
                                            NULL, static_close};

/* ---- for the kinds (lease_impl.h) ---- */

void lease_set_impl(struct lease *l, const struct lease_ops *ops, void *impl)
{
    l->ops = ops;
    l->impl = impl;
}

void *lease_impl(struct lease *l) { return l->impl; }

const char *lease_advertise_url(struct lease *l) { return l->advertise_url ? l->advertise_url : ""; }

int lease_candidate(struct lease *l) { return l->candidate; }

int64_t lease_margin_us(int64_t ttl_us) { return ttl_us / 4 > 200000 ? ttl_us / 4 : 200000; }

void lease_notify(struct lease *l)
{
    pthread_mutex_lock(&l->lock); /* held during the call: lease_on_change waits for it (L3) */
    if (l->change_fn)
        l->change_fn(l->change_arg);
    pthread_mutex_unlock(&l->lock);
}

/* ---- the interface ---- */

int lease_open(const struct lease_conf *c, struct lease **out, char *err, size_t errlen)
{
    const char *type = c->type ? c->type : "static";
    struct lease *l;

    int etcd = strcmp(type, "etcd") == 0, rc;

    *out = NULL;
    if (!etcd && strcmp(type, "static") != 0) {
        lv_seterr(err, errlen, "unknown lease.type \"%s\" (use static or etcd)", type);
        return LV_ECONFIG;
    }
    if (!etcd && !c->candidate && (c->primary_url == NULL || *c->primary_url == '\0')) { /* L2 */
        lv_seterr(err, errlen, "a static replica (lease.candidate false) needs lease.primary-url");
        return LV_ECONFIG;
    }
    l = calloc(1, sizeof *l);
    if (l == NULL)
        return LV_ENOMEM;
    l->ops = &static_ops;
    l->candidate = c->candidate != 0;
    l->type = strdup(type);
    l->advertise_url = c->advertise_url ? strdup(c->advertise_url) : NULL;
    l->primary_url = c->primary_url ? strdup(c->primary_url) : NULL;
    if (l->type == NULL || (c->advertise_url && l->advertise_url == NULL) ||
        (c->primary_url && l->primary_url == NULL)) {
        free(l->type);
        free(l->advertise_url);
        free(l->primary_url);
        free(l);
        return LV_ENOMEM;
    }
    pthread_mutex_init(&l->lock, NULL);
    if (etcd && (rc = lease_etcd_open(l, c, err, errlen)) != 0) {
        lease_close(l);
        return rc;
    }
    *out = l;
    return 0;
}

int lease_is_primary(struct lease *l)
{
    return l->ops->is_primary(l);
}

int lease_primary_url(struct lease *l, char *buf, size_t n)
{
    return l->ops->primary_url(l, buf, n);
}

void lease_info(struct lease *l, struct lease_info *out)
{
    memset(out, 0, sizeof *out);
    l->ops->info(l, out);
}

int lease_handoff(struct lease *l, const char *to, char *err, size_t errlen)
{
    return l->ops->handoff(l, to, err, errlen);
}

char *lease_peers(struct lease *l)
{
    return l->ops->peers ? l->ops->peers(l) : NULL;
}

void lease_on_change(struct lease *l, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&l->lock);
    l->change_fn = fn;
    l->change_arg = arg;
    pthread_mutex_unlock(&l->lock);
}

void lease_close(struct lease *l)
{
    if (l == NULL)
        return;
    l->ops->close(l);
    pthread_mutex_destroy(&l->lock);
    free(l->type);
    free(l->advertise_url);
    free(l->primary_url);
    free(l);
}
