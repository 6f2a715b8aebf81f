/*
 * it_haproxy.c -- examples/haproxy.cfg, run by Debian's haproxy against a
 * primary and a replica on loopback.
 *
 *   haproxy/routes_by_role  HAProxy's checks on litevault's GET /primary and
 *                           GET /replica send the writes frontend to the
 *                           primary's application and the reads frontend to
 *                           the replica's; once the replica's litevault
 *                           stops, reads have no server (503) and writes
 *                           still reach the primary.
 *
 * The applications are one `python3 -m http.server` per node serving a
 * file "who" that names the node.  The example's addresses (10.0.0.N:8080,
 * check port 20202, frontends 8000/8001) are replaced with free loopback
 * ports; node3 points at ports where nothing listens (a node that is down).
 * Skipped, saying so, when haproxy is not installed (`make test` installs
 * it).
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/lvtest.h"
#include "lib/repl.h"

TestSuite(haproxy, .fini = lvt_fini, .timeout = 180);

#define EXAMPLE "examples/haproxy.cfg"

/* Start argv as a child with stdout and stderr to log; killed at lvt_fini. */
static int spawn(char *const argv[], const char *log)
{
    return lvt_spawn(argv, log);
}

static size_t keep_body(char *p, size_t size, size_t n, void *arg)
{
    char *buf = arg;
    size_t have = strlen(buf), add = size * n;
    if (have + add < 256) {
        memcpy(buf + have, p, add);
        buf[have + add] = 0;
    }
    return size * n;
}

/* GET http://127.0.0.1:port/who: the HTTP status (0: no answer), the body
 * (trimmed) in out[256]. */
static long get_who(int port, char *out)
{
    char url[64];
    long code = 0;
    CURL *h = curl_easy_init();
    out[0] = 0;
    cr_assert_not_null(h);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/who", port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 3000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    out[strcspn(out, "\r\n")] = 0;
    return code;
}

/* n requests in a row to port all answered 200 with body who (or, with who
 * NULL, all answered status). */
static int all_go(int port, const char *who, long status, int n)
{
    char body[256];
    for (int i = 0; i < n; i++) {
        long st = get_who(port, body);
        if (who ? st != 200 || strcmp(body, who) != 0 : st != status)
            return 0;
    }
    return 1;
}

/* An application for node name: a directory with the file "who", served
 * by python3's http.server on a free port.  Returns the port. */
static int start_app(const char *name)
{
    char dir[PATH_MAX], file[PATH_MAX + 8], log[PATH_MAX + 8], port_s[16];
    snprintf(dir, sizeof dir, "%s", lvt_tmpdir(name));
    snprintf(file, sizeof file, "%s/who", dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", name);
    fclose(f);
    int port = free_port();
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(log, sizeof log, "%s/app.log", dir);
    char *argv[] = {"python3", "-m", "http.server", port_s, "--bind", "127.0.0.1", "--directory", dir, NULL};
    spawn(argv, log);
    char body[256];
    WAIT_FOR(get_who(port, body) == 200, 20000);
    return port;
}

/* Replace the first "from" in line (of size cap) with "to". */
static void replace(char *line, size_t cap, const char *from, const char *to)
{
    char *p = strstr(line, from), rest[1024];
    if (!p)
        return;
    snprintf(rest, sizeof rest, "%s", p + strlen(from));
    snprintf(p, cap - (size_t)(p - line), "%s%s", to, rest);
}

Test(haproxy, routes_by_role)
{
    char *out = NULL;
    if (run_cmd(&out, "command -v haproxy") != 0) {
        free(out);
        cr_skip_test("haproxy is not installed (make test installs Debian's haproxy)");
    }
    free(out);
    struct lvcluster *c = repl_cluster(1, NULL);
    struct lvnode *pr = c->node[0], *rp = c->node[1];
    int app[3] = {start_app("node1"), start_app("node2"), free_port()};
    int chk[3] = {pr->port, rp->port, free_port()}; /* node3: nothing listens */
    int wport = free_port(), rport = free_port();

    /* the example, with this test's ports */
    const char *dir = lvt_tmpdir("haproxy");
    char cfg[PATH_MAX + 16], log[PATH_MAX + 16], line[1024], a[64], b[64];
    snprintf(cfg, sizeof cfg, "%s/haproxy.cfg", dir);
    snprintf(log, sizeof log, "%s/haproxy.log", dir);
    FILE *in = fopen(EXAMPLE, "r"), *o = fopen(cfg, "w");
    cr_assert(in && o, "cannot read %s (run the tests from the repository root)", EXAMPLE);
    int servers = 0;
    while (fgets(line, sizeof line, in)) {
        snprintf(a, sizeof a, "127.0.0.1:%d", wport);
        replace(line, sizeof line, "127.0.0.1:8000", a);
        snprintf(a, sizeof a, "127.0.0.1:%d", rport);
        replace(line, sizeof line, "127.0.0.1:8001", a);
        for (int i = 0; i < 3; i++) {
            snprintf(b, sizeof b, "10.0.0.%d:8080", i + 1);
            if (strstr(line, b)) {
                snprintf(a, sizeof a, "127.0.0.1:%d", app[i]);
                replace(line, sizeof line, b, a);
                snprintf(a, sizeof a, "port %d", chk[i]);
                replace(line, sizeof line, "port 20202", a);
                servers++;
            }
        }
        fputs(line, o);
    }
    fclose(in);
    fclose(o);
    cr_assert_eq(servers, 6, "%s: expected 6 server lines (3 nodes, 2 backends), found %d", EXAMPLE, servers);
    char *argv[] = {"haproxy", "-db", "-f", cfg, NULL};
    spawn(argv, log);

    /* writes reach the primary's application only, reads the replica's */
    WAIT_FOR(all_go(wport, "node1", 200, 10) && all_go(rport, "node2", 200, 10), 30000);

    /* the replica's litevault stops: /replica no longer answers, reads have
     * no server; writes still go to the primary */
    lvnode_stop(rp);
    WAIT_FOR(all_go(rport, NULL, 503, 5), 30000);
    cr_assert(all_go(wport, "node1", 200, 10), "writes no longer reach the primary's application");
}
