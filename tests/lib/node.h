/*
 * node.h -- the litevault daemon under test (struct lvnode) and a cluster of
 * N of them on loopback ports (struct lvcluster).
 *
 * DESIGN.  lvnode_new makes a fresh temporary directory /tmp/lvit.XXXXXX
 * holding the node's config.yml (fuse.dir = <dir>/mnt, data.dir =
 * <dir>/data, http.addr = 127.0.0.1:<free port>, info logging in text),
 * its mount point, data dir and daemon.log.  Tests run in parallel
 * processes, so every path and port is unique per node.  The node is
 * registered with the per-test registry (fixture.h): lvt_fini SIGKILLs a
 * daemon still running, unmounts, removes the directory and frees the node,
 * so a test that fails half-way leaves nothing behind and a test never
 * frees a node itself.
 *
 *   lvnode_start  fork + exec "$LITEVAULT mount -c CONFIG" with stdout and
 *                 stderr appended to daemon.log.  The child asks for SIGTERM
 *                 when the test process dies (PR_SET_PDEATHSIG).  Ready = the
 *                 mount point appears in /proc/self/mountinfo.
 *   lvnode_stop   SIGTERM, wait for exit status 0 and for the mount to go.
 *   lvnode_kill9  SIGKILL, then `fusermount3 -uz` (the kernel keeps a dead mount).
 *
 * A node whose netns field names a network namespace (netns.h:
 * lvnode_in_netns) runs its daemon there: the child enters it with
 * setns(CLONE_NEWNET) before exec, staying in the test's mount namespace,
 * so the mount is seen as usual.
 *
 * A cluster is N such nodes made together, each with its own directory and
 * port, sharing a YAML section plus one of its own; it is the fixture for
 * tests with several daemons (export from one, import into another; the
 * replication work).  Nodes and clusters are owned by the registry.
 */
#ifndef TESTLIB_NODE_H
#define TESTLIB_NODE_H

#include <stddef.h>
#include <sys/types.h>

/* One litevault daemon under test. */
struct lvnode {
    char dir[256];     /* temporary root: <dir>/mnt, <dir>/data, <dir>/config.yml, <dir>/daemon.log */
    char mnt[300];     /* mount point */
    char data[300];    /* data.dir */
    char config[300];  /* config file path */
    char logpath[300]; /* daemon stderr+stdout */
    char http[64];     /* 127.0.0.1:PORT */
    int port;          /* the HTTP port */
    pid_t pid;         /* daemon pid, 0 when stopped */
    char netns[32];    /* network namespace the daemon runs in, "" = the test's own (netns.h) */
    char *data_keys;   /* the config's parts, kept so it can be rewritten (owned, NULL = none): */
    char *http_keys;   /*   data: keys, http: keys after addr, extra YAML */
    char *extra_yaml;
};

/* A free TCP port on 127.0.0.1. */
int free_port(void);

/* A new node (not started), owned by the registry (freed at lvt_fini).
 * extra_yaml (may be NULL) is appended to the generated config. */
struct lvnode *lvnode_new(const char *extra_yaml);

/* lvnode_new(extra_yaml), then lvnode_start: a running node, owned by the registry. */
struct lvnode *lvnode_started(const char *extra_yaml);

/* As lvnode_new, with data_keys (may be NULL: lines "  key: value\n") added
 * to the data: section. */
struct lvnode *lvnode_new_with(const char *data_keys, const char *extra_yaml);

/* Write a config file at path (fuse.dir, data.dir plus data_keys, http.addr,
 * info text logging, then extra_yaml); strings may be NULL where optional;
 * asserts. */
void lvconf_write(const char *path, const char *fuse_dir, const char *data_dir, const char *http,
                  const char *data_keys, const char *extra_yaml);

/* lvconf_write with http_keys (may be NULL: lines "  key: value\n") added to
 * the http: section after addr. */
void lvconf_write_http(const char *path, const char *fuse_dir, const char *data_dir, const char *http,
                       const char *data_keys, const char *http_keys, const char *extra_yaml);

/* Rewrite n's config file with other data keys and extra YAML (same paths,
 * address and http keys). */
void lvnode_reconfig(struct lvnode *n, const char *data_keys, const char *extra_yaml);

/* Listen on host (NULL: keep; e.g. "0.0.0.0", or a namespace's address) at
 * n's port, with http_keys (NULL: none) in the http: section, e.g.
 * "  allow-no-token: true\n" or "  token: T\n"; rewrites the config (the
 * other parts kept) and n->http.  Takes effect at the next start. */
void lvnode_set_http(struct lvnode *n, const char *host, const char *http_keys);

/* Start the daemon and wait (<= 30 s) until the mount is live; asserts on failure. */
void lvnode_start(struct lvnode *n);

/* Start the daemon expecting it to fail; returns its exit code (waits <= 30 s, -1 on timeout). */
int lvnode_start_expect_fail(struct lvnode *n);

/* SIGTERM, wait for exit (<= 30 s) and for the mount to disappear; asserts a clean exit (0). */
void lvnode_stop(struct lvnode *n);

/* SIGKILL the daemon (if running), then lazily unmount the dead mount. */
void lvnode_kill9(struct lvnode *n);

/* A power loss, for a node killed with lvnode_kill9 that was started with
 * LV_TEST_SYNCED_MARKS=.lvseg: every log segment of db goes back to its
 * size when its last fsync began (the daemon wrote it to SEGMENT.synced);
 * a segment never fsynced goes.  Asserts. */
void lvnode_cut_to_synced(const struct lvnode *n, const char *db);

/* For a node started with LV_TEST_SYNCED_MARKS matching db's -wal: how many
 * bytes of its backing -wal lie past the size its last fsync began with (0
 * when that fsync covered the whole file, its size when it was never
 * fsynced).  Asserts that the -wal exists. */
long long lvnode_wal_unsynced(const struct lvnode *n, const char *db);

/* Stop whatever still runs (SIGTERM, then SIGKILL), unmount, remove the node's
 * directory now (never asserts).  The struct stays valid until lvt_fini. */
void lvnode_cleanup(struct lvnode *n);

/* 1 if the daemon process exists and has not exited. */
int lvnode_alive(struct lvnode *n);

/* Path of name on the mount (malloc'ed, caller frees). */
char *lvnode_path(const struct lvnode *n, const char *name);

/* Path of name in the node's directory, into buf (returns buf). */
char *lvnode_file(const struct lvnode *n, const char *name, char *buf, size_t len);

/* Whole daemon log (stdout+stderr) as a malloc'ed string (caller frees; "" if none). */
char *lvnode_log_text(const struct lvnode *n);

/* 1 if the daemon log contains needle. */
int lvnode_log_contains(const struct lvnode *n, const char *needle);

/* Print the last 4000 bytes of the daemon log to stderr (failure diagnosis). */
void lvnode_dump_log_tail(const struct lvnode *n);

/* 1 if path is a mount point in this mount namespace. */
int path_is_mounted(const char *path);

/* ---- clusters ---- */

#define LVCLUSTER_MAX 8

/* N nodes made together. */
struct lvcluster {
    int n;                              /* number of nodes */
    struct lvnode *node[LVCLUSTER_MAX]; /* node i (owned by the registry) */
};

/* A cluster of n nodes (not started), owned by the registry: node i's config gets
 * common_yaml (may be NULL) then per_node[i] (per_node and its entries may be NULL). */
struct lvcluster *lvcluster_new(int n, const char *common_yaml, const char *const *per_node);

/* Start every node, in order (asserts as lvnode_start). */
void lvcluster_start(struct lvcluster *c);

/* Stop every running node, last first (asserts as lvnode_stop). */
void lvcluster_stop(struct lvcluster *c);

#endif /* TESTLIB_NODE_H */
