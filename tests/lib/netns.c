/*
 * netns.c -- see netns.h.
 *
 * Namespaces, links and addresses are made with the `ip` command (iproute2)
 * through run_cmd: a handful of commands per namespace, each checked, with
 * its output in the assertion message.  Only entering a namespace is done
 * here in C (setns in a forked child), because `ip netns exec` would also
 * give the child a mount namespace of its own (see netns.h, MOUNTS).
 *
 * The per-process state (the bridge, its subnet, the next namespace number)
 * is static: Criterion runs each test in its own process, and lvt_fini
 * resets it when it deletes the bridge.  Choosing a subnet and making the
 * bridge happen under an flock shared by every test process, so two
 * parallel tests never pick the same 10.213.B.0/24.
 */
#include "netns.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "fixture.h"
#include "util.h"

#define LOCK_PATH "/run/lvt-netns.lock"
#define NFT_TABLE "lvtcut"

static struct {
    pid_t pid;       /* the process that made the bridge (0: none yet) */
    char name[16];   /* lvtb<pid> */
    int subnet;      /* B of 10.213.B.0/24 */
    int next;        /* number of the next namespace */
} g_br;

/* Run an ip/nft command line (sh -c, stderr folded in); asserts exit 0. */
static void must(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void must(const char *fmt, ...)
{
    char *cmd = NULL, *out = NULL;
    va_list ap;
    va_start(ap, fmt);
    cr_assert(vasprintf(&cmd, fmt, ap) >= 0);
    va_end(ap);
    int rc = run_cmd(&out, "%s 2>&1", cmd);
    if (rc != 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "netns: `%s` exited %d: %s", cmd, rc, out ? out : "");
        free(cmd);
        free(out);
        cr_assert_fail("%s", msg);
    }
    free(cmd);
    free(out);
}

/* Run a command, ignoring how it ends (cleanup). */
static void quietly(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void quietly(const char *fmt, ...)
{
    char *cmd = NULL, *out = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    if (r < 0)
        return;
    run_cmd(&out, "%s >/dev/null 2>&1", cmd);
    free(out);
    free(cmd);
}

int netns_supported(char *why, size_t len)
{
    char *out = NULL;
    if (geteuid() != 0) {
        snprintf(why, len, "network namespaces need root");
        return 0;
    }
    int rc = run_cmd(&out, "ip netns list 2>&1");
    if (rc != 0) {
        snprintf(why, len, "`ip netns list` exited %d (is iproute2 installed?): %s", rc, out ? out : "");
        free(out);
        return 0;
    }
    free(out);
    why[0] = 0;
    return 1;
}

/* 1 if pid is dead (so what it named is stale). */
static int pid_dead(long pid)
{
    return pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Delete the namespaces and links of test processes that died before lvt_fini. */
static void gc_stale(void)
{
    DIR *d = opendir("/run/netns");
    struct dirent *e;
    long pid;
    int k;
    char c;
    while (d && (e = readdir(d)) != NULL)
        if (sscanf(e->d_name, "lvt%ldn%d%c", &pid, &k, &c) == 2 && pid_dead(pid))
            quietly("ip netns del '%s'", e->d_name);
    if (d)
        closedir(d);
    struct if_nameindex *ifs = if_nameindex(), *i;
    for (i = ifs; i && i->if_name; i++)
        if ((sscanf(i->if_name, "lvtb%ld%c", &pid, &c) == 1 || sscanf(i->if_name, "lvt%ldv%d%c", &pid, &k, &c) == 2) &&
            pid_dead(pid))
            quietly("ip link del '%s'", i->if_name);
    if (ifs)
        if_freenameindex(ifs);
}

/* A B in 1..254 such that no interface has an address in 10.213.B.0/24; -1 if none. */
static int free_subnet(void)
{
    unsigned char used[256] = {0};
    struct ifaddrs *ifa = NULL, *p;
    if (getifaddrs(&ifa) != 0)
        return -1;
    for (p = ifa; p; p = p->ifa_next)
        if (p->ifa_addr && p->ifa_addr->sa_family == AF_INET) {
            uint32_t a = ntohl(((struct sockaddr_in *)p->ifa_addr)->sin_addr.s_addr);
            if ((a >> 16) == ((10u << 8) | 213u))
                used[(a >> 8) & 0xff] = 1;
        }
    freeifaddrs(ifa);
    for (int b = 1; b < 255; b++)
        if (!used[b])
            return b;
    return -1;
}

static void bridge_del(void *arg)
{
    (void)arg;
    if (g_br.pid == getpid())
        quietly("ip link del '%s'", g_br.name);
    memset(&g_br, 0, sizeof g_br);
}

/* Make this process's bridge if it has none (called under the lock). */
static void bridge_ensure(void)
{
    if (g_br.pid == getpid())
        return;
    memset(&g_br, 0, sizeof g_br);
    int b = free_subnet();
    cr_assert(b > 0, "netns: no free 10.213.B.0/24 subnet for the bridge");
    snprintf(g_br.name, sizeof g_br.name, "lvtb%d", (int)getpid());
    g_br.subnet = b;
    g_br.pid = getpid();
    lvt_defer(LVT_UNDO, bridge_del, NULL); /* undone after the namespaces, registered later */
    must("ip link add '%s' type bridge", g_br.name);
    must("ip addr add 10.213.%d.1/24 dev '%s'", b, g_br.name);
    must("ip link set '%s' up", g_br.name);
}

static void ns_del(void *arg)
{
    struct netns *ns = arg;
    quietly("ip link del '%s'", ns->host_if); /* both ends of the veth */
    quietly("ip netns del '%s'", ns->name);
    free(ns);
}

struct netns *netns_new(void)
{
    char why[512];
    cr_assert(netns_supported(why, sizeof why), "netns: %s", why);
    struct netns *ns = calloc(1, sizeof *ns);
    cr_assert_not_null(ns);

    int lk = open(LOCK_PATH, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    cr_assert(lk >= 0, "netns: %s: %s", LOCK_PATH, strerror(errno));
    while (flock(lk, LOCK_EX) != 0 && errno == EINTR)
        ;
    gc_stale();
    bridge_ensure();
    int k = g_br.next++;
    cr_assert(k < 250, "netns: too many namespaces in one test");
    snprintf(ns->name, sizeof ns->name, "lvt%dn%d", (int)getpid(), k);
    snprintf(ns->host_if, sizeof ns->host_if, "lvt%dv%d", (int)getpid(), k);
    snprintf(ns->bridge, sizeof ns->bridge, "%s", g_br.name);
    snprintf(ns->addr, sizeof ns->addr, "10.213.%d.%d", g_br.subnet, k + 2);
    snprintf(ns->host_addr, sizeof ns->host_addr, "10.213.%d.1", g_br.subnet);
    lvt_defer(LVT_UNDO, ns_del, ns);
    must("ip netns add '%s'", ns->name);
    must("ip link add '%s' type veth peer name eth0 netns '%s'", ns->host_if, ns->name);
    must("ip link set '%s' master '%s' up", ns->host_if, ns->bridge);
    must("ip -n '%s' addr add %s/24 dev eth0", ns->name, ns->addr);
    must("ip -n '%s' link set eth0 up", ns->name);
    must("ip -n '%s' link set lo up", ns->name);
    must("ip -n '%s' route add default via %s", ns->name, ns->host_addr);
    close(lk); /* releases the lock */
    return ns;
}

/* An open fd of ns's /run/netns file (close-on-exec); asserts. */
static int ns_fd(const struct netns *ns)
{
    char p[64];
    snprintf(p, sizeof p, "/run/netns/%s", ns->name);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    cr_assert(fd >= 0, "netns: %s: %s", p, strerror(errno));
    return fd;
}

int netns_exec(const struct netns *ns, char **out, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    cr_assert(r >= 0, "vasprintf");
    int fd = ns_fd(ns);
    int rc = run_cmd_ns(fd, out, cmd);
    close(fd);
    free(cmd);
    return rc;
}

pid_t netns_spawn(const struct netns *ns, const char *logpath, char *const argv[])
{
    int fd = ns_fd(ns);
    fflush(NULL);
    pid_t p = fork();
    cr_assert(p >= 0, "fork: %s", strerror(errno));
    if (p == 0) {
        if (logpath) {
            int lfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (lfd >= 0) {
                dup2(lfd, 1);
                dup2(lfd, 2);
                if (lfd > 2)
                    close(lfd);
            }
        }
        if (setns(fd, CLONE_NEWNET) != 0) {
            fprintf(stderr, "setns %s: %s\n", ns->name, strerror(errno));
            _exit(126);
        }
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd);
    lvt_defer_kill(p);
    return p;
}

/* 1 if the nft tool is installed. */
static int have_nft(void)
{
    static int have = -1;
    if (have < 0)
        have = run_cmd(NULL, "command -v nft >/dev/null 2>&1") == 0;
    return have;
}

void netns_cut(struct netns *ns)
{
    if (ns->cut)
        return;
    if (have_nft()) {
        char *out = NULL;
        int rc = netns_exec(ns, &out,
                            "nft -f - 2>&1 <<'EOF'\n"
                            "table inet " NFT_TABLE " {\n"
                            "  chain in { type filter hook input priority -400; policy drop; iif \"lo\" accept; }\n"
                            "  chain out { type filter hook output priority -400; policy drop; oif \"lo\" accept; }\n"
                            "}\n"
                            "EOF\n");
        char msg[512];
        snprintf(msg, sizeof msg, "%s", out ? out : "");
        free(out);
        cr_assert(rc == 0, "netns_cut %s: nft exited %d: %s", ns->name, rc, msg);
        ns->cut_how = "nft";
    } else {
        must("ip link set '%s' down", ns->host_if);
        ns->cut_how = "link";
    }
    ns->cut = 1;
}

void netns_heal(struct netns *ns)
{
    if (!ns->cut)
        return;
    if (strcmp(ns->cut_how, "nft") == 0) {
        char *out = NULL;
        int rc = netns_exec(ns, &out, "nft delete table inet " NFT_TABLE " 2>&1");
        char msg[512];
        snprintf(msg, sizeof msg, "%s", out ? out : "");
        free(out);
        cr_assert(rc == 0, "netns_heal %s: nft exited %d: %s", ns->name, rc, msg);
    } else {
        must("ip link set '%s' up", ns->host_if);
    }
    ns->cut = 0;
}

void lvnode_in_netns(struct lvnode *n, const struct netns *ns, const char *http_keys)
{
    cr_assert(n->pid == 0, "lvnode_in_netns: node %s is running", n->dir);
    snprintf(n->netns, sizeof n->netns, "%s", ns->name);
    lvnode_set_http(n, ns->addr, http_keys);
}

struct lvnode *lvnode_new_in_netns(const struct netns *ns, const char *data_keys, const char *http_keys,
                                   const char *extra_yaml)
{
    struct lvnode *n = lvnode_new_with(data_keys, extra_yaml);
    lvnode_in_netns(n, ns, http_keys);
    return n;
}

char *netns_url_of_host_node(const struct netns *ns, const struct lvnode *n, char *buf, size_t len)
{
    snprintf(buf, len, "http://%s:%d", ns->host_addr, n->port);
    return buf;
}
