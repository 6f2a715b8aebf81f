/*
 * netns.h -- network namespaces for partition tests: a daemon runs in its
 * own namespace, reachable from the test, and the test can cut its network
 * and heal it again without the daemon noticing anything but silence.
 *
 * TOPOLOGY.  The first netns_new of a test process makes a bridge
 * lvtb<pid> in the root namespace with address 10.213.B.1/24, B chosen
 * free among the bridges of concurrent test processes (under a lock file,
 * /run/lvt-netns.lock), so tests may run in parallel.  Each namespace
 * lvt<pid>n<k> gets a veth pair: lvt<pid>v<k> in the root namespace,
 * enslaved to the bridge, and eth0 inside with 10.213.B.(k+2)/24, lo up,
 * and a default route via the bridge.  So the test process reaches every
 * namespace at its address, every namespace reaches the test process's
 * addresses (a daemon in the root namespace listening on 0.0.0.0 or on
 * host_addr), and the namespaces of one test reach each other through the
 * bridge (no IP forwarding needed).  127.0.0.1 inside a namespace is its
 * own loopback.  No traffic leaves these interfaces: nothing is routed to
 * the machine's real network.
 *
 * MOUNTS.  Processes enter a namespace with setns(CLONE_NEWNET) in a
 * forked child before exec, never with `ip netns exec`: ip netns exec also
 * unshares the mount namespace (to remount /sys), so a FUSE mount made by
 * a daemon started that way would be invisible to the test process.  With
 * setns to the network namespace only, the daemon's mount is in the test's
 * mount namespace, so lvnode_start sees it appear and the test reads and
 * writes it as usual.
 *
 * PARTITIONS.  netns_cut loads an nftables table inside the namespace that
 * drops every packet in and out except on lo: peers see silence (TCP
 * retransmits, connect timeouts), no reset, no ICMP, and open sockets stay
 * open; netns_heal deletes the table and traffic flows again over the same
 * connections.  Without the nft tool (Makefile's DEBPKGS installs
 * nftables) the cut falls back to taking the root side of the veth down:
 * also silent on the wire, but ARP fails, so after ~3 s a peer's connect
 * gets EHOSTUNREACH instead of timing out (ns->cut_how says which).
 *
 * OWNERSHIP.  Namespaces are owned by the registry (fixture.h): lvt_fini
 * deletes each namespace and its veth, then the bridge, after every process
 * registered with LVT_KILL (nodes, netns_spawn children) is gone.  A test
 * process killed before lvt_fini leaves them behind; the next netns_new
 * anywhere deletes namespaces and bridges whose owning pid is dead.
 * Needs root and iproute2 (`ip`); netns_supported says whether they work.
 */
#ifndef TESTLIB_NETNS_H
#define TESTLIB_NETNS_H

#include <sys/types.h>

#include "node.h"

/* One network namespace with its link to the test's bridge. */
struct netns {
    char name[32];      /* ip netns name: lvt<pid>n<k> (/run/netns/<name>) */
    char host_if[16];   /* root-namespace end of the veth (a port of the bridge) */
    char bridge[16];    /* the test process's bridge */
    char addr[16];      /* the namespace's address, e.g. 10.213.7.2 */
    char host_addr[16]; /* the root namespace's address on the bridge, e.g. 10.213.7.1 */
    int cut;            /* 1 while netns_cut is in force */
    const char *cut_how; /* "nft" or "link" (the fallback), set by netns_cut */
};

/* 1 if namespaces can be made here (root, `ip netns` works); else 0 and the
 * reason in why (for cr_skip_test). */
int netns_supported(char *why, size_t len);

/* A new namespace linked to the test's bridge (see above); asserts.
 * Owned by the registry. */
struct netns *netns_new(void);

/* Run `sh -c CMD` inside ns (network namespace only) and wait: its exit
 * status (as run_cmd), output captured into *out (malloc'ed, caller frees)
 * if out != NULL. */
int netns_exec(const struct netns *ns, char **out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Start argv[0] (PATH searched) with argv inside ns, stdout and stderr
 * appended to logpath (NULL: inherited); it gets SIGTERM if the test
 * process dies.  Returns the pid, registered with lvt_defer_kill (SIGKILL
 * at lvt_fini; lvt_forget_child after reaping it yourself); asserts. */
pid_t netns_spawn(const struct netns *ns, const char *logpath, char *const argv[]);

/* Cut ns off: nothing in or out (except its loopback) until netns_heal.
 * Idempotent; asserts. */
void netns_cut(struct netns *ns);

/* Undo netns_cut.  Idempotent; asserts. */
void netns_heal(struct netns *ns);

/* Put node n (not running) into ns: its daemon will run there (lvnode_start
 * enters the namespace), its http.addr becomes <ns->addr>:<n->port> and its
 * http: section gets http_keys (lines "  key: value\n"; NULL: none; a
 * daemon listening on an address other than loopback needs http.token or
 * "  allow-no-token: true\n").  The config is rewritten; n->http follows. */
void lvnode_in_netns(struct lvnode *n, const struct netns *ns, const char *http_keys);

/* lvnode_new_with(data_keys, extra_yaml) placed in ns by lvnode_in_netns
 * (not started); owned by the registry like any node. */
struct lvnode *lvnode_new_in_netns(const struct netns *ns, const char *data_keys, const char *http_keys,
                                   const char *extra_yaml);

/* "http://<ns->host_addr>:<port of n>": how a node inside a namespace
 * reaches node n of the root namespace (n must listen on 0.0.0.0 or on
 * host_addr: lvnode_set_http).  Into buf; returns buf. */
char *netns_url_of_host_node(const struct netns *ns, const struct lvnode *n, char *buf, size_t len);

#endif /* TESTLIB_NETNS_H */
