/*
 * it_proxy.c -- the built-in HTTP proxy (src/daemon/proxy.c): litevault
 * nodes on loopback with static roles, each running examples/proxy-app.py
 * (python3 http.server + sqlite3, a database on the node's mount) behind
 * its proxy.
 *
 *   proxy/read_your_writes  one primary, two replicas: a client writes
 *                           through replica A's proxy (forwarded to the
 *                           primary's) and at once reads through replica
 *                           B's carrying the __txid cookie: it sees its
 *                           write every time (50 rounds, and 5 more with a
 *                           reader on B holding a read transaction, which
 *                           delays B's apply)
 *   proxy/streams_large_bodies  a 20 MB chunked upload through replica A
 *                           reaches the primary's application intact
 *                           (length and CRC-32 echoed), and the replica's
 *                           daemon does not grow by the body's size; a 20
 *                           MB chunked response comes back intact to an
 *                           HTTP/1.1 and an HTTP/1.0 client
 *   proxy/hostile_input     garbage, an oversized head, too many fields, a
 *                           bad chunked body, a stalled head, an idle
 *                           connection, more connections than max-conns:
 *                           each gets its clear 4xx/503 or is closed in
 *                           time, and the proxy keeps serving
 *   proxy/etcd_failover     three nodes elected through etcd (no
 *                           proxy.primary-url: the primary publishes its
 *                           proxy's URL with its lease): a client writes
 *                           through one replica and reads through the
 *                           other with the cookie, then the primary is
 *                           killed; once a new one is elected, writes
 *                           through the remaining replica reach it and
 *                           reads through either node see them, every time
 *   proxy/etcd_handoff      the same three nodes: `litevault promote` on a
 *                           replica while a client writes through the other
 *                           replica's proxy: the role moves to it, the old
 *                           primary exits with status 3, only writes in
 *                           flight during the hand-over fail, and every
 *                           acknowledged row is on the new primary
 *   proxy/errors            the primary's proxy unreachable: 502 naming
 *                           it; the application down: 502 naming it; a
 *                           forwarded write reaching a replica: 503 (no
 *                           loop); a cookie the replica cannot reach
 *                           within max-lag-wait: 504; a passthrough path
 *                           does not wait
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/lvtest.h"
#include "lib/repl.h"

TestSuite(proxy, .fini = lvt_fini, .timeout = 240);

#define APP "examples/proxy-app.py"

/* One node's proxy and application ports. */
struct pxnode {
    int proxy;  /* proxy.addr port */
    int app;    /* proxy.target port (the application) */
};

/* ---- children and HTTP ---- */

/* Start argv as a child with stdout and stderr to log; killed at lvt_fini. */
static int spawn(char *const argv[], const char *log)
{
    return lvt_spawn(argv, log);
}

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* zlib's crc32 (Python's zlib.crc32) continued over buf. */
static uint32_t crc32_add(uint32_t crc, const unsigned char *buf, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ buf[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* What a request got back. */
struct pxresp {
    long status;          /* HTTP status, 0 when the request failed */
    char body[4096];      /* the body's first bytes, NUL-terminated */
    size_t len;           /* the body's length (all of it) */
    uint32_t crc;         /* CRC-32 of the whole body */
    char cookie[64];      /* "__txid=N" from Set-Cookie, or "" */
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct pxresp *r = arg;
    size_t k = size * n;
    if (r->len < sizeof r->body - 1) {
        size_t c = k < sizeof r->body - 1 - r->len ? k : sizeof r->body - 1 - r->len;
        memcpy(r->body + r->len, p, c);
        r->body[r->len + c] = 0;
    }
    r->crc = crc32_add(r->crc, (unsigned char *)p, k);
    r->len += k;
    return k;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct pxresp *r = arg;
    size_t k = size * n;
    if (k > 12 && strncasecmp(p, "Set-Cookie:", 11) == 0) {
        const char *t = memmem(p, k, "__txid=", 7);
        if (t) {
            size_t m = strcspn(t, ";\r\n");
            snprintf(r->cookie, sizeof r->cookie, "%.*s", (int)m, t);
        }
    }
    return k;
}

/* A request body made on the fly: `left` pseudo-random bytes, their CRC-32. */
struct upload {
    uint64_t left;  /* bytes still to send */
    uint64_t x;     /* generator state */
    uint32_t crc;   /* CRC-32 of what was sent */
};

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
    struct upload *u = arg;
    size_t k = size * n;
    if (k > u->left)
        k = (size_t)u->left;
    for (size_t i = 0; i < k; i++) {
        u->x = u->x * 6364136223846793005ULL + 1442695040888963407ULL;
        buf[i] = (char)(u->x >> 56);
    }
    u->crc = crc32_add(u->crc, (unsigned char *)buf, k);
    u->left -= k;
    return k;
}

/* method path on 127.0.0.1:port through h (a reused handle: keep-alive),
 * with cookie (NULL: none) and a small body (NULL: none) or up (a chunked
 * upload); http10 for HTTP/1.0.  Fills *r. */
static void px_do(CURL *h, int port, const char *method, const char *path, const char *cookie, const char *body,
                  struct upload *up, int http10, struct pxresp *r)
{
    char url[256];
    struct curl_slist *hd = NULL;

    memset(r, 0, sizeof *r);
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (http10)
        curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_0);
    if (cookie)
        curl_easy_setopt(h, CURLOPT_COOKIE, cookie);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    } else if (up) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, up);
        hd = curl_slist_append(hd, "Transfer-Encoding: chunked");
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hd);
}

/* A JSON number "key": N in body, or -1. */
static long long json_num(const char *body, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(body, k);
    return p ? strtoll(p + strlen(k), NULL, 10) : -1;
}

/* Send data (len bytes) to 127.0.0.1:port, then read what comes until the
 * proxy closes or wait_ms passes; the answer (NUL-terminated, at most cap
 * - 1 bytes) in out.  Returns the milliseconds until the close, or -1 if
 * the connection was still open at wait_ms. */
static long raw_exchange(int port, const char *data, size_t len, int wait_ms, char *out, size_t cap)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    size_t got = 0;
    int64_t t0 = now_ms();
    long closed = -1;

    cr_assert_geq(fd, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "connect to the proxy on port %d", port);
    for (size_t off = 0; off < len;) {
        ssize_t w = send(fd, data + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    out[0] = 0;
    for (;;) {
        int left = (int)(t0 + wait_ms - now_ms());
        struct pollfd pf = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            break;
        char buf[4096];
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0) {
            closed = (long)(now_ms() - t0);
            break;
        }
        size_t c = (size_t)r < cap - 1 - got ? (size_t)r : cap - 1 - got;
        memcpy(out + got, buf, c);
        got += c;
        out[got] = 0;
    }
    close(fd);
    return closed;
}

/* A connection to the proxy left open (the caller closes fd). */
static int raw_open(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* ---- the cluster ---- */

/* Start node i's application on its mount (init: create the table). */
static void start_app(struct lvnode *n, int port, int init, const char *name)
{
    char db[400], log[400], port_s[16];
    snprintf(db, sizeof db, "%s/app.db", n->mnt);
    snprintf(log, sizeof log, "%s/app.log", n->dir);
    snprintf(port_s, sizeof port_s, "%d", port);
    char *argv[] = {"python3", APP, "--db", db, "--port", port_s, "--name", (char *)name, init ? "--init" : NULL,
                    NULL};
    spawn(argv, log);
    CURL *h = curl_easy_init();
    struct pxresp r;
    int ok = WAIT_FOR((px_do(h, port, "GET", "/who", NULL, NULL, NULL, 0, &r), r.status == 200), 20000);
    curl_easy_cleanup(h);
    cr_assert(ok, "the application %s did not start on port %d (see %s)", name, port, log);
}

/* A primary and nrep replicas, each with its proxy and application;
 * extra[i] (may be NULL) more lines of node i's proxy: section;
 * primary_proxy (0: the primary's) the port replicas forward writes to;
 * apps 0: no application on the primary. */
static struct lvcluster *px_cluster(int nrep, struct pxnode *pn, const char *const *extra, int primary_proxy,
                                    int primary_app)
{
    struct lvcluster *c = repl_cluster_with(nrep, NULL, NULL, 0);
    char yaml[2048];

    crc_init();
    for (int i = 0; i <= nrep; i++) {
        pn[i].proxy = free_port();
        pn[i].app = free_port();
    }
    for (int i = 0; i <= nrep; i++) {
        int n = snprintf(yaml, sizeof yaml, "proxy:\n  addr: 127.0.0.1:%d\n  target: 127.0.0.1:%d\n  db: app.db\n"
                         "  passthrough: ['/static/*', '*.css']\n", pn[i].proxy, pn[i].app);
        if (i > 0)
            n += snprintf(yaml + n, sizeof yaml - (size_t)n, "  primary-url: http://127.0.0.1:%d\n",
                          primary_proxy ? primary_proxy : pn[0].proxy);
        snprintf(yaml + n, sizeof yaml - (size_t)n, "%s", extra && extra[i] ? extra[i] : "");
        repl_reconfig(c, i, yaml, NULL);
    }
    lvcluster_start(c);
    for (int i = 0; i <= nrep; i++) {
        char name[16];
        snprintf(name, sizeof name, "node%d", i);
        if (i > 0 || primary_app)
            start_app(c->node[i], pn[i].app, i == 0, name);
    }
    if (primary_app)
        repl_wait_caught_up(c, "app.db");
    return c;
}

/* ---- tests ---- */

/* A reader on a replica's copy of the database holding a read transaction. */
struct holder {
    char path[400];        /* the database on the replica's mount */
    int ms;                /* how long */
    pthread_t th;
};

static void *hold_main(void *arg)
{
    struct holder *ho = arg;
    sqlite3 *db = NULL;
    if (sqlite3_open(ho->path, &db) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        sqlite3_exec(db, "BEGIN; SELECT count(*) FROM rows;", NULL, NULL, NULL);
        sleep_ms(ho->ms);
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    sqlite3_close(db);
    return NULL;
}

Test(proxy, read_your_writes)
{
    struct pxnode pn[3];
    struct lvcluster *c = px_cluster(2, pn, NULL, 0, 1);
    CURL *a = curl_easy_init(), *b = curl_easy_init();
    struct pxresp w, r, s;
    char cookie[64];
    int stale = 0;

    for (int i = 0; i < 55; i++) {
        struct holder ho = {.ms = 400};
        int hold = i >= 50; /* the last rounds: B's apply is held back by a reader */
        if (hold) {
            snprintf(ho.path, sizeof ho.path, "%s/app.db", c->node[2]->mnt);
            cr_assert_eq(pthread_create(&ho.th, NULL, hold_main, &ho), 0);
            sleep_ms(50);
        }
        px_do(a, pn[1].proxy, "POST", "/rows", NULL, "hello", NULL, 0, &w);
        cr_assert_eq(w.status, 200, "round %d: the write through replica A answered %ld: %s", i, w.status, w.body);
        long long id = json_num(w.body, "id");
        cr_assert_gt(id, 0, "round %d: %s", i, w.body);
        cr_assert(w.cookie[0], "round %d: no __txid cookie with the forwarded write's answer", i);
        snprintf(cookie, sizeof cookie, "%s", w.cookie);
        if (hold) {
            px_do(b, pn[2].proxy, "GET", "/rows/last", NULL, NULL, NULL, 0, &s);
            stale += s.status == 200 && json_num(s.body, "last") < id;
        }
        px_do(b, pn[2].proxy, "GET", "/rows/last", cookie, NULL, NULL, 0, &r);
        cr_assert_eq(r.status, 200, "round %d: the read through replica B answered %ld: %s", i, r.status, r.body);
        cr_assert_eq(json_num(r.body, "last"), id, "round %d: wrote row %lld through A (cookie %s), read %s "
                     "through B", i, id, cookie, r.body);
        if (hold)
            pthread_join(ho.th, NULL);
    }
    cr_log_info("proxy/read_your_writes: %d of 5 cookie-less reads during a held reader were stale", stale);
    curl_easy_cleanup(a);
    curl_easy_cleanup(b);
}

/* Peak resident memory of pid (VmHWM), in KiB. */
static long vm_hwm_kib(int pid)
{
    char path[64], line[256];
    long v = -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &v) == 1)
            break;
    fclose(f);
    return v;
}

Test(proxy, streams_large_bodies)
{
    struct pxnode pn[2];
    struct lvcluster *c = px_cluster(1, pn, NULL, 0, 1);
    CURL *h = curl_easy_init();
    struct pxresp r;
    const uint64_t size = 20000000;

    /* warm up (threads, buffers), then the peak must not grow by the body */
    px_do(h, pn[1].proxy, "POST", "/rows", NULL, "warm", NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    long before = vm_hwm_kib(c->node[1]->pid);
    struct upload up = {.left = size, .x = 42};
    px_do(h, pn[1].proxy, "POST", "/rows", NULL, NULL, &up, 0, &r);
    cr_assert_eq(r.status, 200, "the upload answered %ld: %s", r.status, r.body);
    cr_assert_eq(json_num(r.body, "len"), (long long)size, "the application got %s", r.body);
    cr_assert_eq(json_num(r.body, "crc32"), (long long)up.crc, "the application got %s, sent CRC-32 %u", r.body,
                 up.crc);
    cr_assert(r.cookie[0], "no __txid cookie");
    long after = vm_hwm_kib(c->node[1]->pid);
    cr_assert_lt(after - before, 12 * 1024, "replica A's daemon grew by %ld KiB during a %" PRIu64 "-byte upload",
                 after - before, size);

    /* a large response, chunked by the application, to both HTTP versions */
    uint32_t crc = 0;
    unsigned char pat[251];
    for (int i = 0; i < 251; i++)
        pat[i] = (unsigned char)i;
    for (uint64_t off = 0; off < size; off += 251)
        crc = crc32_add(crc, pat, size - off < 251 ? (size_t)(size - off) : 251);
    for (int v10 = 0; v10 <= 1; v10++) {
        px_do(h, pn[1].proxy, "GET", "/blob?n=20000000", NULL, NULL, NULL, v10, &r);
        cr_assert_eq(r.status, 200);
        cr_assert_eq(r.len, size, "HTTP/1.%d: got %zu bytes", !v10, r.len);
        cr_assert_eq(r.crc, crc, "HTTP/1.%d: the body differs", !v10);
    }
    curl_easy_cleanup(h);
}

Test(proxy, hostile_input)
{
    struct pxnode pn[1];
    const char *extra[] = {"  header-timeout: 1s\n  max-conns: 6\n"};
    px_cluster(0, pn, extra, 0, 1);
    int port = pn[0].proxy;
    char out[8192], *big;
    long t;

    t = raw_exchange(port, "GARBAGE\r\n\r\n", 11, 5000, out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 400 ", 13) == 0 && t >= 0, "garbage: %s", out);

    size_t n = 80 * 1024;
    big = malloc(n + 64);
    cr_assert_not_null(big);
    int k = snprintf(big, n + 64, "GET /who HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + k, 'a', n - (size_t)k);
    memcpy(big + n, "\r\n\r\n", 4);
    t = raw_exchange(port, big, n + 4, 5000, out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 431 ", 13) == 0 && t >= 0, "oversized head: %s", out);
    k = snprintf(big, n + 64, "GET /who HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 300; i++)
        k += snprintf(big + k, n + 64 - (size_t)k, "X-%d: 1\r\n", i);
    k += snprintf(big + k, n + 64 - (size_t)k, "\r\n");
    raw_exchange(port, big, (size_t)k, 5000, out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 431 ", 13) == 0, "300 fields: %s", out);
    free(big);

    const char *badchunk = "POST /rows HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    raw_exchange(port, badchunk, strlen(badchunk), 5000, out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 400 ", 13) == 0, "bad chunked body: %s", out);

    /* a head that stalls: 408 after header-timeout (1 s); silence: closed */
    const char *part = "GET /who HTTP/1.1\r\nHost: x\r\n";
    t = raw_exchange(port, part, strlen(part), 6000, out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 408 ", 13) == 0, "stalled head: %s", out);
    cr_assert(t >= 800 && t < 5000, "stalled head closed after %ld ms (header-timeout 1s)", t);
    t = raw_exchange(port, "", 0, 6000, out, sizeof out);
    cr_assert(out[0] == 0 && t >= 800 && t < 5000, "idle connection: closed after %ld ms with \"%s\"", t, out);

    /* more connections than max-conns (6): the 7th is refused with 503; the others still served */
    int fds[6];
    CURL *h = curl_easy_init();
    struct pxresp r;
    const char *req = "GET /who HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < 6; i++)
        fds[i] = raw_open(port);
    cr_assert_eq(send(fds[0], req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    sleep_ms(200);
    raw_exchange(port, req, strlen(req), 5000, out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 503 ", 13) == 0 && strstr(out, "max-conns"), "beyond max-conns: %s", out);
    struct pollfd pf = {fds[0], POLLIN, 0};
    cr_assert_eq(poll(&pf, 1, 5000), 1, "an admitted connection is not served");
    for (int i = 0; i < 6; i++)
        close(fds[i]);

    /* still serving, with keep-alive */
    cr_assert(WAIT_FOR((px_do(h, port, "GET", "/who", NULL, NULL, NULL, 0, &r), r.status == 200), 5000),
              "the proxy no longer serves after hostile input");
    cr_assert_str_eq(r.body, "node0\n");
    for (int i = 0; i < 20; i++) {
        px_do(h, port, "GET", "/rows/last", NULL, NULL, NULL, 0, &r);
        cr_assert_eq(r.status, 200);
    }
    curl_easy_cleanup(h);
}

static struct lvetcd *px_etcd_cluster(struct lvnode **n, struct pxnode *pn);

/* The node of n[0..k) whose /primary answers 200 (-1 if none), skipping dead. */
static int px_primary(struct lvnode **n, int k, int dead)
{
    for (int i = 0; i < k; i++) {
        long st = 0;
        if (i == dead)
            continue;
        free(lvnode_http_get(n[i], "/primary", &st));
        if (st == 200)
            return i;
    }
    return -1;
}

/* Write through port wp (retrying 503/502 for up to ms while a primary is
 * elected), then read through port rp with the cookie: the row is there. */
static void px_round(CURL *a, CURL *b, int wp, int rp, int round, int ms)
{
    struct pxresp w, r;
    int64_t end = now_ms() + ms;
    do {
        px_do(a, wp, "POST", "/rows", NULL, "hello", NULL, 0, &w);
        if (w.status != 200)
            sleep_ms(50);
    } while (w.status != 200 && now_ms() < end);
    cr_assert_eq(w.status, 200, "round %d: the write answered %ld: %s", round, w.status, w.body);
    long long id = json_num(w.body, "id");
    cr_assert(w.cookie[0], "round %d: no __txid cookie", round);
    px_do(b, rp, "GET", "/rows/last", w.cookie, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "round %d: the read answered %ld: %s", round, r.status, r.body);
    cr_assert_geq(json_num(r.body, "last"), id, "round %d: wrote row %lld, read %s", round, id, r.body);
}

Test(proxy, etcd_failover)
{
    char why[256];
    if (!etcd_available(why, sizeof why))
        cr_skip_test("%s", why);
    struct pxnode pn[3];
    struct lvnode *n[3];
    px_etcd_cluster(n, pn);
    CURL *a = curl_easy_init(), *b = curl_easy_init();
    for (int i = 0; i < 20; i++)
        px_round(a, b, pn[1].proxy, pn[2].proxy, i, 10000);
    lvnode_kill9(n[0]);
    int p = -1;
    cr_assert(WAIT_FOR((p = px_primary(n, 3, 0)) >= 0, 15000), "no new primary");
    int r = 3 - p; /* the other survivor */
    for (int i = 20; i < 40; i++)
        px_round(a, b, pn[r].proxy, i % 2 ? pn[p].proxy : pn[r].proxy, i, 10000);
    curl_easy_cleanup(a);
    curl_easy_cleanup(b);
}

/* Start three etcd-lease nodes with proxies and applications (n[0] the primary). */
static struct lvetcd *px_etcd_cluster(struct lvnode **n, struct pxnode *pn)
{
    char yaml[1024], ep[128];
    struct lvetcd *e = etcd_start(NULL);
    crc_init();
    for (int i = 0; i < 3; i++) {
        pn[i].proxy = free_port();
        pn[i].app = free_port();
        snprintf(yaml, sizeof yaml, "lease:\n  type: etcd\n  endpoints: %s\n  ttl: 2s\n"
                 "replication:\n  sync-replicas: 1\n  sync-timeout: 5s\n"
                 "proxy:\n  addr: 127.0.0.1:%d\n  target: 127.0.0.1:%d\n  db: app.db\n",
                 etcd_endpoints(e, 0, ep, sizeof ep), pn[i].proxy, pn[i].app);
        n[i] = lvnode_new(yaml);
        lvnode_start(n[i]);
        if (i == 0)
            cr_assert(WAIT_FOR(px_primary(n, 1, -1) == 0, 10000), "the first node was not elected");
    }
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "node%d", i);
        start_app(n[i], pn[i].app, i == 0, name);
    }
    return e;
}

/* A client writing through one proxy as fast as it can, counting. */
struct pxwriter {
    int port;               /* the proxy it writes through */
    volatile int stop;      /* set to end it */
    long ok, failed;        /* answers 200 / other */
    long long max_id;       /* the largest id acknowledged */
    pthread_t th;
};

static void *pxwriter_main(void *arg)
{
    struct pxwriter *w = arg;
    CURL *h = curl_easy_init();
    struct pxresp r;
    while (!w->stop) {
        px_do(h, w->port, "POST", "/rows", NULL, "x", NULL, 0, &r);
        if (r.status == 200) {
            long long id = json_num(r.body, "id");
            w->ok++;
            if (id > w->max_id)
                w->max_id = id;
        } else {
            w->failed++;
            sleep_ms(20);
        }
    }
    curl_easy_cleanup(h);
    return NULL;
}

Test(proxy, etcd_handoff)
{
    char why[256];
    if (!etcd_available(why, sizeof why))
        cr_skip_test("%s", why);
    struct lvnode *n[3];
    struct pxnode pn[3];
    px_etcd_cluster(n, pn);
    struct pxwriter w = {.port = pn[2].proxy};
    cr_assert_eq(pthread_create(&w.th, NULL, pxwriter_main, &w), 0);
    cr_assert(WAIT_FOR(w.ok >= 50, 10000), "the writer makes no progress");
    long failed_before = w.failed;
    char *out = NULL;
    int rc = lvnode_cli(n[1], &out, "promote", "%s", "");
    cr_log_info("handoff: litevault promote on node1: %d: %s", rc, out ? out : "");
    cr_assert_eq(rc, 0, "litevault promote failed: %s", out ? out : "");
    free(out);
    cr_assert(WAIT_FOR(px_primary(n, 3, 0) == 1, 10000), "node1 is not the primary after the hand-over");
    int st = wait_exit(n[0]->pid, 10000);
    cr_assert_eq(status_code(st), 3, "the old primary exited with %d, not 3", status_code(st));
    lvt_forget_child(n[0]->pid);
    n[0]->pid = 0;
    run_cmd(NULL, "fusermount3 -uz %s 2>/dev/null", n[0]->mnt);
    long ok_at = w.ok;
    cr_assert(WAIT_FOR(w.ok >= ok_at + 50, 10000), "writes do not reach the new primary");
    w.stop = 1;
    pthread_join(w.th, NULL);
    char *path = lvnode_path(n[1], "app.db");
    long long have = sql_int(path, "SELECT count(*) FROM rows"), top = sql_int(path, "SELECT max(id) FROM rows");
    free(path);
    cr_log_info("handoff: %ld writes acknowledged (max id %lld), %ld failed during the hand-over; the new primary "
                "holds %lld rows (max id %lld)", w.ok, w.max_id, w.failed - failed_before, have, top);
    cr_assert_geq(top, w.max_id, "an acknowledged row is missing on the new primary");
    cr_assert_leq(w.failed - failed_before, 100, "too many writes failed during the hand-over");
}

Test(proxy, errors)
{
    struct pxnode pn[2];
    int nowhere = free_port(); /* nothing listens there */
    const char *extra[] = {NULL, "  max-lag-wait: 1s\n"};
    px_cluster(1, pn, extra, nowhere, 0); /* no application on the primary; the replica forwards nowhere */
    CURL *h = curl_easy_init();
    struct pxresp r;
    char out[4096];
    int64_t t0;

    /* the primary's proxy unreachable */
    px_do(h, pn[1].proxy, "POST", "/rows", NULL, "x", NULL, 0, &r);
    cr_assert_eq(r.status, 502, "%ld: %s", r.status, r.body);
    cr_assert(strstr(r.body, "primary's proxy") && strstr(r.body, "Connection refused"), "502 body: %s", r.body);
    /* the application down (on the primary) */
    px_do(h, pn[0].proxy, "GET", "/who", NULL, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 502, "%ld: %s", r.status, r.body);
    cr_assert(strstr(r.body, "the application at") && strstr(r.body, "proxy.target"), "502 body: %s", r.body);
    /* a forwarded write reaching a replica is not forwarded again */
    const char *fwd = "POST /rows HTTP/1.1\r\nHost: x\r\nLitevault-Forwarded: 1\r\nContent-Length: 1\r\n\r\nx";
    raw_exchange(pn[1].proxy, fwd, strlen(fwd), 5000, out, sizeof out);
    cr_assert(strncmp(out, "HTTP/1.1 503 ", 13) == 0 && strstr(out, "not forwarded again"), "loop: %s", out);
    /* a cookie the replica does not reach: 504 after max-lag-wait; passthrough paths do not wait */
    t0 = now_ms();
    px_do(h, pn[1].proxy, "GET", "/rows/last", "__txid=999999", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 504, "%ld: %s", r.status, r.body);
    cr_assert(now_ms() - t0 >= 900, "504 after %lld ms, before max-lag-wait (1s)", (long long)(now_ms() - t0));
    cr_assert(strstr(r.body, "999999") && strstr(r.body, "max-lag-wait"), "504 body: %s", r.body);
    t0 = now_ms();
    px_do(h, pn[1].proxy, "GET", "/static/site.css", "__txid=999999", NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200, "passthrough: %ld: %s", r.status, r.body);
    cr_assert_lt(now_ms() - t0, 900, "a passthrough path waited for the cookie");
    /* without the cookie a read is served at once */
    px_do(h, pn[1].proxy, "GET", "/who", NULL, NULL, NULL, 0, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "node1\n");
    curl_easy_cleanup(h);
}
