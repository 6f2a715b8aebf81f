/*
 * etcd.h -- a single-member etcd (Debian's etcd-server) per test, for the
 * etcd lease: started on free loopback ports (plus, optionally, an extra
 * address such as a network namespace bridge's), with its data in a
 * temporary directory, killed at lvt_fini.  It can be killed and started
 * again on the same data (an etcd outage), or frozen (SIGSTOP).  A test
 * may pass etcd more flags (etcd_start_args: --auth-token-ttl 1).
 */
#ifndef TESTLIB_ETCD_H
#define TESTLIB_ETCD_H

#include <sys/types.h>

/* One etcd under test (owned by the registry; never freed by the test). */
struct lvetcd {
    char dir[256];      /* temporary directory: data/ and etcd.log */
    char extra[32];     /* another address it listens on, "" for loopback only */
    char args[256];     /* more etcd flags, separated by spaces ("" none) */
    int port;           /* client port */
    int peer;           /* peer port (loopback) */
    char url[64];       /* http://127.0.0.1:<port> */
    pid_t pid;          /* running etcd, 0 when stopped */
};

/* 1 if the etcd binary is installed; else 0 and why (for cr_skip_test). */
int etcd_available(char *why, size_t len);

/* Start a new etcd (also listening on extra_addr when not NULL) and wait
 * until it answers (<= 20 s); asserts. */
struct lvetcd *etcd_start(const char *extra_addr);

/* etcd_start with more etcd flags args (separated by spaces, e.g.
 * "--auth-token-ttl 1"; NULL none), kept for etcd_restart. */
struct lvetcd *etcd_start_args(const char *extra_addr, const char *args);

/* Start e again on its data (after etcd_kill); asserts it answers. */
void etcd_restart(struct lvetcd *e);

/* SIGKILL e and reap it. */
void etcd_kill(struct lvetcd *e);

/* The etcd endpoints for lease.endpoints, as one YAML flow list into buf
 * (via extra_addr when via_extra is 1).  Returns buf. */
char *etcd_endpoints(const struct lvetcd *e, int via_extra, char *buf, size_t len);

#endif /* TESTLIB_ETCD_H */
