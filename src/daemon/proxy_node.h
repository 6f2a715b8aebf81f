/*
 * proxy_node.h -- the built-in HTTP proxy (daemon/proxy.h) on this node:
 * started from the configuration's proxy: section, its callbacks answered
 * by the lease (who is the primary, asked again for every request) and the
 * registry (the TXID of proxy.db, and the commit sequence a read waits on).
 */
#ifndef PROXY_NODE_H
#define PROXY_NODE_H

#include "capture/db.h"
#include "daemon/config.h"
#include "replica/lease.h"

struct proxy_node;

/* Start the proxy when cfg has proxy.addr (*out NULL otherwise).  cfg, reg
 * and lease are borrowed and must outlive *out, which is the caller's
 * until proxy_node_stop.  0, or an exit code (the message printed). */
int proxy_node_start(const struct config *cfg, struct dbreg *reg, struct lease *lease, struct proxy_node **out);

/* Stop the proxy (requests in progress are cut) and free pn.  NULL is fine. */
void proxy_node_stop(struct proxy_node *pn);

#endif /* PROXY_NODE_H */
