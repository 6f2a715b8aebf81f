/*
 * proxy.h -- the built-in HTTP proxy, as LiteFS's: it listens on
 * proxy.addr in front of the application (proxy.target).  Requests that
 * may write (any method but GET, HEAD and OPTIONS) go to the primary's
 * proxy when this node is not the primary; reads are served here.  A
 * write answered on the primary gets Set-Cookie __txid=<TXID of proxy.db>;
 * a read carrying it on a replica waits (at most max_lag_wait_us) until
 * this node holds that TXID.  The design and its invariants are at the
 * top of proxy.c.
 *
 * proxy.c knows nothing of leases or databases: what it needs from the
 * node comes through the callbacks of struct proxy_opts, asked again for
 * every request (roles may change while the proxy runs).
 *
 * Threads: proxy_start and proxy_stop from one thread; the callbacks run on
 * the proxy's connection threads, concurrently.
 */
#ifndef PROXY_H
#define PROXY_H

#include <stddef.h>
#include <stdint.h>

struct proxy;

/* What the proxy is made from (strings borrowed: proxy_start copies them;
 * the callbacks' arg must outlive the proxy). */
struct proxy_opts {
    const char *addr;               /* listen on HOST:PORT */
    const char *target;             /* the application: HOST:PORT or http://HOST:PORT */
    const char *db;                 /* proxy.db, the database whose TXIDs the cookie carries (for messages) */
    const char *const *passthrough; /* fnmatch patterns on the request path: served here, no wait, no forwarding */
    size_t npassthrough;            /* entries in passthrough */
    int64_t max_lag_wait_us;        /* longest wait of a read for its __txid (then 504) */
    int64_t header_timeout_us;      /* a client's whole request head, and a keep-alive connection's idle time */
    int max_conns;                  /* client connections at once; more get 503 */
    void *arg;                      /* the callbacks' argument */
    int (*is_primary)(void *arg);   /* 1 if this node is the primary now */
    /* The primary's proxy URL (http://HOST:PORT) into buf (n bytes): 0, or
     * LV_ENOENT when it is not known (writes then get 503). */
    int (*primary_url)(void *arg, char *buf, size_t n);
    /* The local TXID of proxy.db into *txid: 0, or LV_ENOENT (no such database yet). */
    int (*txid)(void *arg, uint64_t *txid);
    /* A counter that changes whenever a database here commits, and a wait for
     * it to differ from seen (at most timeout_ms); the proxy waits with them. */
    uint64_t (*commit_seq)(void *arg);
    void (*wait_commit)(void *arg, uint64_t seen, int timeout_ms);
};

/* Listen on o->addr and serve in the background.  *out is the caller's
 * until proxy_stop.  0; LV_EINVAL (a bad address or target: message in
 * err); LV_EIO (cannot listen: message in err); LV_ENOMEM. */
int proxy_start(const struct proxy_opts *o, struct proxy **out, char *err, size_t errlen);

/* Stop listening, cut every connection (a request in progress is cut),
 * join the threads, free p.  NULL is fine. */
void proxy_stop(struct proxy *p);

#endif /* PROXY_H */
