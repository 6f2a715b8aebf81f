/*
 * proxy_node.c -- the proxy's callbacks on this node (see proxy_node.h).
 *
 * Roles.  Every callback asks the lease again (lease_is_primary), so the
 * proxy follows a role that changes while it runs.  The primary's proxy
 * URL: with an etcd lease, the one the primary published with its lease
 * (its proxy.advertise-url, in the lease key's value; lease_info); with a
 * static lease, this node's proxy.advertise-url while it is the primary,
 * otherwise proxy.primary-url.
 */
#include "daemon/proxy_node.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lv.h"
#include "daemon/proxy.h"

struct proxy_node {
    const struct config *cfg; /* configuration (borrowed, immutable) */
    struct dbreg *reg;        /* the registry (borrowed) */
    struct lease *lease;      /* who is the primary (borrowed; thread-safe) */
    struct proxy *px;         /* the proxy */
};

static int pn_is_primary(void *arg)
{
    struct proxy_node *pn = arg;

    return lease_is_primary(pn->lease);
}

static int pn_primary_url(void *arg, char *buf, size_t n)
{
    struct proxy_node *pn = arg;
    struct lease_info li;
    const char *url;

    lease_info(pn->lease, &li);
    url = li.primary_proxy[0] ? li.primary_proxy
          : lease_is_primary(pn->lease) ? pn->cfg->proxy_advertise_url : pn->cfg->proxy_primary_url;
    if (!url)
        return LV_ENOENT;
    return snprintf(buf, n, "%s", url) < (int)n ? 0 : LV_EINVAL;
}

static int pn_txid(void *arg, uint64_t *txid)
{
    struct proxy_node *pn = arg;

    return dbreg_txid(pn->reg, pn->cfg->proxy_db, txid);
}

static uint64_t pn_commit_seq(void *arg)
{
    struct proxy_node *pn = arg;

    return dbreg_commit_seq(pn->reg);
}

static void pn_wait_commit(void *arg, uint64_t seen, int timeout_ms)
{
    struct proxy_node *pn = arg;

    dbreg_wait_commit(pn->reg, seen, timeout_ms);
}

int proxy_node_start(const struct config *cfg, struct dbreg *reg, struct lease *lease, struct proxy_node **out)
{
    struct proxy_node *pn;
    char err[1024] = "";
    int rc;

    *out = NULL;
    if (!cfg->proxy_addr)
        return 0;
    pn = calloc(1, sizeof *pn);
    if (!pn) {
        fprintf(stderr, "litevault: out of memory\n");
        return LV_EXIT_RUNTIME;
    }
    *pn = (struct proxy_node){cfg, reg, lease, NULL};
    rc = proxy_start(&(struct proxy_opts){.addr = cfg->proxy_addr, .target = cfg->proxy_target, .db = cfg->proxy_db,
                                          .passthrough = (const char *const *)cfg->proxy_passthrough,
                                          .npassthrough = cfg->nproxy_passthrough,
                                          .max_lag_wait_us = cfg->proxy_max_lag_wait_us,
                                          .header_timeout_us = cfg->proxy_header_timeout_us,
                                          .max_conns = cfg->proxy_max_conns, .arg = pn, .is_primary = pn_is_primary,
                                          .primary_url = pn_primary_url, .txid = pn_txid,
                                          .commit_seq = pn_commit_seq, .wait_commit = pn_wait_commit},
                     &pn->px, err, sizeof err);
    if (rc) {
        fprintf(stderr, "litevault: %s%s\n", err, rc == LV_EIO ? " (in use, or not a local address?); change "
                "proxy.addr" : "");
        free(pn);
        return rc == LV_EINVAL ? LV_EXIT_USAGE : LV_EXIT_RUNTIME;
    }
    *out = pn;
    return 0;
}

void proxy_node_stop(struct proxy_node *pn)
{
    if (!pn)
        return;
    proxy_stop(pn->px);
    free(pn);
}
