/*
 * it_testlib_netns.c -- network namespaces of tests/lib/netns.h with real
 * daemons (skipped with a notice where namespaces cannot be made).
 *
 *   testlib_netns/node_in_ns   a node started inside a namespace: its
 *                    daemon is in that network namespace but in the test's
 *                    mount namespace, its mount is usable from the test, its
 *                    HTTP API answers at the namespace's address; after
 *                    netns_cut a request times out (no reset), a TCP
 *                    connection opened before the cut still works after
 *                    netns_heal, and the mount works throughout; a second
 *                    namespace reaches the first through the bridge, and a
 *                    node of the root namespace listening on host_addr is
 *                    reached from both (netns_url_of_host_node).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/lvtest.h"
#include "lib/netns.h"

TestSuite(testlib_netns, .fini = lvt_fini, .timeout = 180);

/* The http: keys a node on an address other than loopback needs: the daemon
 * refuses to serve one without a token unless http.allow-no-token is set,
 * and a daemon from before that key rejects it as unknown.  (Drop the test
 * once every branch has the key.) */
static const char *open_http_keys(void)
{
    size_t len = 0;
    char *bin = file_read(litevault_bin(), &len);
    cr_assert_not_null(bin, "cannot read %s", litevault_bin());
    int knows = memmem(bin, len, "allow-no-token", 14) != NULL;
    free(bin);
    return knows ? "  allow-no-token: true\n" : NULL;
}

/* curl from the test process (or inside ns if not NULL) with a 2 s bound:
 * curl's exit status; the HTTP status into *code. */
static int curl_status(const struct netns *ns, const char *url, int *code)
{
    char *out = NULL;
    const char *fmt = "curl -s -o /dev/null -w '%%{http_code}' --max-time 2 '%s'";
    int rc = ns ? netns_exec(ns, &out, fmt, url) : run_cmd(&out, fmt, url);
    *code = out ? atoi(out) : 0;
    free(out);
    return rc;
}

/* Same inode: two /proc/.../ns/... or /run/netns files name one namespace. */
static int same_ns(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

/* A TCP connection to addr:port; asserts. */
static int tcp_connect(const char *addr, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    cr_assert(fd >= 0 && inet_pton(AF_INET, addr, &a.sin_addr) == 1);
    cr_assert(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect %s:%d: %s", addr, port, strerror(errno));
    return fd;
}

Test(testlib_netns, node_in_ns)
{
    char why[512], url[128], p1[128], p2[128];
    int code = 0;
    if (!netns_supported(why, sizeof why))
        cr_skip_test("no network namespaces here: %s", why);
    const char *keys = open_http_keys();
    struct netns *ns = netns_new();
    struct netns *ns2 = netns_new();
    cr_assert_str_eq(ns->host_addr, ns2->host_addr, "one bridge per test");
    cr_assert_str_neq(ns->addr, ns2->addr);

    struct lvnode *n = lvnode_new_in_netns(ns, NULL, keys, NULL);
    struct lvnode *h = lvnode_new(NULL);
    lvnode_set_http(h, ns->host_addr, keys);
    lvnode_start(n);
    lvnode_start(h);

    /* The daemon: in the namespace's network, in our mounts. */
    snprintf(p1, sizeof p1, "/proc/%d/ns/net", (int)n->pid);
    snprintf(p2, sizeof p2, "/run/netns/%s", ns->name);
    cr_assert(same_ns(p1, p2), "the daemon is not in network namespace %s", ns->name);
    snprintf(p1, sizeof p1, "/proc/%d/ns/mnt", (int)n->pid);
    cr_assert(same_ns(p1, "/proc/self/ns/mnt"), "the daemon is in a mount namespace of its own");

    /* Its mount, from the test process. */
    char *db = lvnode_path(n, "a.db");
    sql_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES(1)", 0);
    cr_assert_eq(sql_int(db, "SELECT count(*) FROM t"), 1);

    /* Its HTTP API at the namespace's address, from here and from the other namespace. */
    cr_assert(strncmp(n->http, ns->addr, strlen(ns->addr)) == 0, "n->http %s", n->http);
    long st = 0;
    char *body = lvnode_http_get(n, "/health", &st);
    cr_assert(body != NULL && st == 200, "GET /health at %s: status %ld", n->http, st);
    free(body);
    snprintf(url, sizeof url, "http://%s/status", n->http);
    cr_assert_eq(curl_status(ns2, url, &code), 0, "from %s to %s", ns2->name, url);
    cr_assert_eq(code, 200);

    /* The root namespace's node, from inside both namespaces. */
    netns_url_of_host_node(ns, h, url, sizeof url);
    strcat(url, "/status");
    cr_assert_eq(curl_status(ns, url, &code), 0, "from %s to %s", ns->name, url);
    cr_assert_eq(code, 200);
    cr_assert_eq(curl_status(ns2, url, &code), 0, "from %s to %s", ns2->name, url);

    /* Cut: silence both ways, the mount still works, an open connection stays open. */
    int held = tcp_connect(ns->addr, n->port);
    netns_cut(ns);
    fprintf(stderr, "netns: cut with %s\n", ns->cut_how);
    snprintf(url, sizeof url, "http://%s/health", n->http);
    cr_assert_eq(curl_status(NULL, url, &code), 28, "GET %s while cut: not a timeout (code %d)", url, code);
    netns_url_of_host_node(ns, h, url, sizeof url);
    strcat(url, "/status");
    int rc = curl_status(ns, url, &code);
    cr_assert(rc == 28 || (rc == 7 && strcmp(ns->cut_how, "link") == 0), "from %s while cut: curl %d", ns->name, rc);
    cr_assert_eq(curl_status(ns2, url, &code), 0, "%s was cut too", ns2->name);
    sql_exec(db, "INSERT INTO t VALUES(2)", 0);
    const char req[] = "GET /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    cr_assert_eq(write(held, req, sizeof req - 1), (ssize_t)(sizeof req - 1), "write while cut: %s", strerror(errno));
    struct pollfd pf = {.fd = held, .events = POLLIN};
    cr_assert_eq(poll(&pf, 1, 1000), 0, "an answer came through the cut");

    netns_heal(ns);
    cr_assert(poll(&pf, 1, 20000) == 1, "no answer on the held connection after netns_heal");
    char resp[64] = "";
    ssize_t got = read(held, resp, sizeof resp - 1);
    cr_assert(got > 12 && strncmp(resp, "HTTP/1.1 200", 12) == 0, "held connection: read %zd: %.20s", got, resp);
    close(held);
    snprintf(url, sizeof url, "http://%s/health", n->http);
    cr_assert(WAIT_FOR(curl_status(NULL, url, &code) == 0 && code == 200, 10000), "GET %s after heal", url);
    cr_assert_eq(sql_int(db, "SELECT count(*) FROM t"), 2);

    lvnode_stop(n);
    lvnode_stop(h);
    cr_assert_not(path_is_mounted(n->mnt));
    free(db);
}
