/*
 * bench_proxy.c -- `make bench`, proxy part: the built-in HTTP proxy's
 * overhead on reads, through the proxy against straight to the
 * application, in one run.
 *
 * Usage: LITEVAULT=/path/to/litevault bench_proxy   (from the repository root)
 *   BENCH_QUICK=1   short rounds (development)
 *   BENCH_DIR=DIR   parent of the temporary directory (default $TMPDIR or /tmp)
 *   BENCH_KEEP=1    keep the temporary directory (daemon and application logs)
 *   BENCH_CONNS=N   concurrent client connections (default 8)
 *
 * Set-up: a primary and a replica on loopback, each a litevault daemon
 * with proxy: in front of examples/proxy-app.py (python3 http.server,
 * HTTP/1.1 keep-alive, sqlite3) on its mount.  The primary's application
 * creates app.db with 1,000 rows, which the replica receives.
 *
 * Measured on the replica: N client connections (libcurl multi, each
 * connection reused for every request) send GETs back to back for a
 * round; requests per second = answers 200 / round time.  Rounds
 * alternate direct (the application's port) and proxy (proxy.addr, each
 * request carrying the __txid cookie of the last write, which the replica
 * already holds: the read-your-writes check runs, nothing waits), 3 each
 * (2 s, quick 0.5 s, after a warm-up), so the machine's noise hits both.
 *   P1 GET /rows/last: a SQLite query on the replica's mount.  Goal:
 *      proxy / direct >= 0.8.
 *   P2 GET /who: no database, the application's cheapest answer: the
 *      proxy's whole cost shows (no goal).
 * On this 2-vCPU VM the proxy, the application and the client share the
 * cores, so the proxy's CPU time is taken from the application's.
 *
 * Exit status: 0 when the bench ran (missed goals print MISS), 1 on error.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define APP "examples/proxy-app.py"

/* One litevault node with its application. */
struct node {
    char dir[PATH_MAX];   /* BASE/nI */
    char mnt[PATH_MAX];   /* BASE/nI/mnt */
    char cfg[PATH_MAX];   /* BASE/nI/config.yml */
    int port;             /* HTTP API port */
    int proxy;            /* proxy.addr port */
    int app;              /* the application's port */
    pid_t pid;            /* daemon pid, 0 when stopped */
    pid_t app_pid;        /* application pid, 0 when stopped */
};

static struct {
    const char *litevault;  /* $LITEVAULT */
    char base[PATH_MAX];    /* temporary directory */
    int quick, keep;        /* BENCH_QUICK, BENCH_KEEP */
    int conns;              /* BENCH_CONNS */
    char cookie[64];        /* "__txid=N" of the last write */
    struct node n[2];       /* primary, replica */
} g;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_proxy: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int is_mounted(const char *dir)
{
    FILE *f = fopen("/proc/self/mounts", "r");
    char line[PATH_MAX * 2], mp[PATH_MAX];
    int found = 0;
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof line, f))
        found = sscanf(line, "%*s %4095s", mp) == 1 && strcmp(mp, dir) == 0;
    fclose(f);
    return found;
}

static size_t sink(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* Body of one request into buf (cap bytes). */
struct body {
    char *buf;
    size_t len, cap;
};

static size_t keep(char *p, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    size_t k = size * n, c = k < b->cap - 1 - b->len ? k : b->cap - 1 - b->len;
    memcpy(b->buf + b->len, p, c);
    b->len += c;
    b->buf[b->len] = 0;
    return k;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    (void)arg;
    const char *t = memmem(p, size * n, "__txid=", 7);
    if (t && strncasecmp(p, "Set-Cookie:", 11) == 0)
        snprintf(g.cookie, sizeof g.cookie, "%.*s", (int)strcspn(t, ";\r\n"), t);
    return size * n;
}

/* One request; the HTTP status (0: failed), the body in out (cap bytes). */
static long request(int port, const char *method, const char *path, char *out, size_t cap)
{
    char url[128];
    long code = 0;
    struct body b = {out, 0, cap};
    CURL *h = curl_easy_init();
    if (!h)
        return 0;
    out[0] = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "row");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    return code;
}

static pid_t spawn(char *const argv[], const char *log)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int node_start(int i)
{
    struct node *nd = &g.n[i];
    char log[PATH_MAX + 16], db[PATH_MAX + 16], port[16], out[256];
    FILE *f;

    char base[PATH_MAX];
    memcpy(base, g.base, sizeof base); /* (snprintf from g into g: -Wrestrict) */
    snprintf(nd->dir, sizeof nd->dir, "%s/n%d", base, i);
    snprintf(nd->mnt, sizeof nd->mnt, "%s/n%d/mnt", base, i);
    snprintf(nd->cfg, sizeof nd->cfg, "%s/n%d/config.yml", base, i);
    mkdir(nd->dir, 0755);
    mkdir(nd->mnt, 0755);
    nd->port = free_port();
    nd->proxy = free_port();
    nd->app = free_port();
    f = fopen(nd->cfg, "w");
    if (!f)
        return -1;
    fprintf(f, "fuse:\n  dir: %s\ndata:\n  dir: %s/data\nhttp:\n  addr: 127.0.0.1:%d\nlog:\n  level: warn\n",
            nd->mnt, nd->dir, nd->port);
    if (i == 0)
        fprintf(f, "lease:\n  type: static\n  candidate: true\n");
    else
        fprintf(f, "lease:\n  type: static\n  candidate: false\n  primary-url: http://127.0.0.1:%d\n", g.n[0].port);
    fprintf(f, "proxy:\n  addr: 127.0.0.1:%d\n  target: 127.0.0.1:%d\n  db: app.db\n", nd->proxy, nd->app);
    if (i > 0)
        fprintf(f, "  primary-url: http://127.0.0.1:%d\n", g.n[0].proxy);
    fclose(f);
    snprintf(log, sizeof log, "%s/daemon.log", nd->dir);
    char *argv[] = {(char *)g.litevault, "mount", "-c", nd->cfg, NULL};
    nd->pid = spawn(argv, log);
    for (int t = 0; t < 300 && !is_mounted(nd->mnt); t++)
        sleep_ms(100);
    if (!is_mounted(nd->mnt)) {
        progress("node %d did not mount (see %s)", i, log);
        return -1;
    }
    snprintf(log, sizeof log, "%s/app.log", nd->dir);
    snprintf(db, sizeof db, "%s/app.db", nd->mnt);
    snprintf(port, sizeof port, "%d", nd->app);
    char *app[] = {"python3", APP, "--db", db, "--port", port, i == 0 ? "--init" : NULL, NULL};
    nd->app_pid = spawn(app, log);
    for (int t = 0; t < 200 && request(nd->app, "GET", "/who", out, sizeof out) != 200; t++)
        sleep_ms(100);
    if (request(nd->app, "GET", "/who", out, sizeof out) != 200) {
        progress("node %d's application did not start (see %s; run from the repository root)", i, log);
        return -1;
    }
    return 0;
}

static int stop_pid(pid_t *pid, int sig)
{
    int st = 0;
    if (*pid <= 0)
        return 0;
    kill(*pid, sig);
    waitpid(*pid, &st, 0);
    *pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* GETs to path on port from g.conns connections for secs seconds (with
 * the cookie when cookie is 1): answers 200 per second; *bad counts the others. */
static double run(int port, const char *path, int cookie, double secs, long *bad)
{
    CURLM *m = curl_multi_init();
    CURL *h[64];
    char url[160];
    long ok = 0;
    int n = g.conns, running = 0, left;

    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    for (int i = 0; i < n; i++) {
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_PROXY, "");
        curl_easy_setopt(h[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, sink);
        if (cookie)
            curl_easy_setopt(h[i], CURLOPT_COOKIE, g.cookie);
        curl_multi_add_handle(m, h[i]);
    }
    double t0 = now_s(), end = t0 + secs;
    for (;;) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            long code = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
            if (msg->data.result == CURLE_OK && code == 200)
                ok++;
            else
                (*bad)++;
            curl_multi_remove_handle(m, e);
            if (now_s() < end)
                curl_multi_add_handle(m, e); /* the multi's connection cache keeps the connection */
        }
        if (now_s() >= end && running == 0)
            break;
        curl_multi_poll(m, NULL, 0, 50, NULL);
        curl_multi_perform(m, &running);
    }
    double took = now_s() - t0;
    for (int i = 0; i < n; i++) {
        curl_multi_remove_handle(m, h[i]);
        curl_easy_cleanup(h[i]);
    }
    curl_multi_cleanup(m);
    return (double)ok / took;
}

/* One part: alternating rounds, direct then proxy; *direct and *proxied the means. */
static void measure(const char *path, double *direct, double *proxied, long *bad)
{
    const int rounds = 3;
    double secs = g.quick ? 0.5 : 2.0, d = 0, p = 0;
    struct node *r = &g.n[1];

    run(r->app, path, 0, g.quick ? 0.2 : 0.5, bad); /* warm-up */
    run(r->proxy, path, 1, g.quick ? 0.2 : 0.5, bad);
    for (int i = 0; i < rounds; i++) {
        double a = run(r->app, path, 0, secs, bad);
        double b = run(r->proxy, path, 1, secs, bad);
        progress("%s round %d: direct %.0f/s, proxy %.0f/s", path, i + 1, a, b);
        d += a;
        p += b;
    }
    *direct = d / rounds;
    *proxied = p / rounds;
}

int main(void)
{
    char out[512];
    long bad = 0;
    int rc = 1;
    const char *e;

    g.litevault = getenv("LITEVAULT");
    if (!g.litevault) {
        fprintf(stderr, "bench_proxy: set LITEVAULT to the litevault binary\n");
        return 1;
    }
    g.quick = getenv("BENCH_QUICK") && strcmp(getenv("BENCH_QUICK"), "0") != 0;
    g.keep = getenv("BENCH_KEEP") && strcmp(getenv("BENCH_KEEP"), "0") != 0;
    g.conns = (e = getenv("BENCH_CONNS")) ? atoi(e) : 8;
    if (g.conns < 1 || g.conns > 64)
        g.conns = 8;
    if (access(APP, R_OK) != 0) {
        fprintf(stderr, "bench_proxy: %s not found: run from the repository root\n", APP);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    e = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(g.base, sizeof g.base, "%s/lvbench-proxy.XXXXXX", e);
    if (!mkdtemp(g.base)) {
        fprintf(stderr, "bench_proxy: mkdtemp %s: %s\n", g.base, strerror(errno));
        return 1;
    }
    progress("in %s, %d connections%s", g.base, g.conns, g.quick ? " (BENCH_QUICK)" : "");
    if (node_start(0) != 0 || node_start(1) != 0)
        goto out;
    for (int i = 0; i < 1000; i++)
        if (request(g.n[1].proxy, "POST", "/rows", out, sizeof out) != 200) {
            progress("a write through the replica's proxy failed: %s", out);
            goto out;
        }
    if (!g.cookie[0] || request(g.n[1].proxy, "GET", "/rows/last", out, sizeof out) != 200) {
        progress("no __txid cookie, or the replica's proxy does not answer");
        goto out;
    }
    double d1, p1, d2, p2;
    measure("/rows/last", &d1, &p1, &bad);
    measure("/who", &d2, &p2, &bad);
    double r1 = p1 / d1, r2 = p2 / d2;
    printf("\nProxy (primary + replica on loopback, reads on the replica, %d keep-alive connections, one run)%s\n\n",
           g.conns, r1 >= 0.8 ? "" : ": some goals MISSED");
    printf("| part | measured | goal | |\n|---|---|---|---|\n");
    printf("| P1 GET /rows/last (SQLite read), proxy / direct | %.0f / %.0f req/s = %.2f | >= 0.80 | %s |\n", p1, d1,
           r1, r1 >= 0.8 ? "ok" : "MISS");
    printf("| P2 GET /who (no database), proxy / direct | %.0f / %.0f req/s = %.2f | - | |\n", p2, d2, r2);
    if (bad)
        printf("\n%ld requests did not answer 200.\n", bad);
    rc = 0;
out:
    stop_pid(&g.n[1].app_pid, SIGTERM);
    stop_pid(&g.n[0].app_pid, SIGTERM);
    for (int i = 1; i >= 0; i--) {
        int st = stop_pid(&g.n[i].pid, SIGTERM);
        if (st != 0) {
            progress("node %d exited with status %d", i, st);
            rc = 1;
        }
    }
    if (!g.keep)
        nftw(g.base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    curl_global_cleanup();
    return rc;
}
