/*
 * unit_http.c -- tests of the HTTP server and client (src/http.c).
 *
 * Each test starts a real server on 127.0.0.1 and a free port (found by
 * binding a socket to port 0 and closing it), talks to it with
 * http_get/http_post and with raw sockets for malformed and hostile
 * requests, and checks that the server keeps answering afterwards.  The
 * last tests cover the header timeout, Unix-socket servers with held
 * responses, and timeouts reported as LV_EBUSY.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/http.h"
#include "base/lv.h"

/* ---- helpers ---------------------------------------------------------- */

static atomic_int th_count_calls;   /* calls of h_count */

/* Return a port that was free a moment ago on the given loopback family. */
static int th_free_port(int family)
{
    struct sockaddr_storage ss = { 0 };
    socklen_t sl;
    int fd = socket(family, SOCK_STREAM, 0), port;

    cr_assert(fd >= 0);
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        sl = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof(*s4);
    }
    cr_assert(bind(fd, (struct sockaddr *)&ss, sl) == 0, "bind: %s", strerror(errno));
    cr_assert(getsockname(fd, (struct sockaddr *)&ss, &sl) == 0);
    port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                    : ((struct sockaddr_in *)&ss)->sin_port);
    close(fd);
    return port;
}

static int h_hello(void *ctx, const struct http_request *req, struct http_response *resp)
{
    resp->body = strdup("hello");
    return 0;
}

/* Echo the body back with a non-default content type. */
static int h_echo(void *ctx, const struct http_request *req, struct http_response *resp)
{
    resp->content_type = "application/octet-stream";
    if (req->body_len == 0)
        return 0;
    resp->body = malloc(req->body_len);
    cr_assert(resp->body != NULL);
    memcpy(resp->body, req->body, req->body_len);
    resp->body_len = req->body_len;
    return 0;
}

static int h_query(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const char *v = req->query(req, "name");
    resp->content_type = "text/plain";
    resp->body = strdup(v ? v : "(none)");
    return 0;
}

static int h_status(void *ctx, const struct http_request *req, struct http_response *resp)
{
    resp->status = 503;
    resp->body = strdup("{\"error\":\"busy\"}");
    return 0;
}

static int h_fail(void *ctx, const struct http_request *req, struct http_response *resp)
{
    return LV_EIO;
}

static int h_count(void *ctx, const struct http_request *req, struct http_response *resp)
{
    int n = atomic_fetch_add(&th_count_calls, 1) + 1;
    cr_assert(asprintf(&resp->body, "%d", n) > 0);
    return 0;
}

/* The context pointer must reach the handler unchanged. */
static int h_ctx(void *ctx, const struct http_request *req, struct http_response *resp)
{
    resp->body = strdup((const char *)ctx);
    return 0;
}

struct th_srv {
    struct http_server *s;
    char addr[64];
    int port;
};

static void th_start(struct th_srv *t)
{
    t->port = th_free_port(AF_INET);
    snprintf(t->addr, sizeof(t->addr), "127.0.0.1:%d", t->port);
    cr_assert_eq(http_new(t->addr, &t->s), 0);
    cr_assert_eq(http_route(t->s, "GET", "/hello", h_hello, NULL), 0);
    cr_assert_eq(http_route(t->s, "POST", "/echo", h_echo, NULL), 0);
    cr_assert_eq(http_route(t->s, "GET", "/query", h_query, NULL), 0);
    cr_assert_eq(http_route(t->s, "GET", "/status", h_status, NULL), 0);
    cr_assert_eq(http_route(t->s, "GET", "/fail", h_fail, NULL), 0);
    cr_assert_eq(http_route(t->s, "GET", "/count", h_count, NULL), 0);
    cr_assert_eq(http_route(t->s, "GET", "/ctx", h_ctx, "context-42"), 0);
    cr_assert_eq(http_route(t->s, "PUT", "/ctx", h_ctx, "context-put"), 0);
    cr_assert_eq(http_start(t->s), 0);
}

/* The server must still answer a normal request. */
static void th_assert_alive(struct th_srv *t)
{
    char *body = NULL;
    size_t len = 0;
    long st = 0;

    cr_assert_eq(http_get(t->addr, "/hello", &body, &len, &st), 0, "server stopped answering");
    cr_assert_eq(st, 200);
    cr_assert_eq(len, 5);
    cr_assert_str_eq(body, "hello");
    free(body);
}

static int th_connect(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    struct timeval tv = { .tv_sec = 2 };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Send everything we can (the server may hang up early; that is fine). */
static void th_send(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

/* Read until EOF, error or timeout; returns bytes read, NUL-terminated. */
static size_t th_recv_all(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    return got;
}

/* One raw exchange: connect, send req, read the reply.  Returns the HTTP
 * status of the reply, 0 if the server closed without one, -1 if the
 * connection could not be made.  resp (optional) receives the reply. */
static int th_raw(int port, const void *req, size_t len, char *resp, size_t cap)
{
    char local[8192];
    int fd, status = 0;

    if (resp == NULL) {
        resp = local;
        cap = sizeof(local);
    }
    fd = th_connect(port);
    if (fd < 0)
        return -1;
    th_send(fd, req, len);
    th_recv_all(fd, resp, cap);
    close(fd);
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
    return status;
}

static int th_raw_str(int port, const char *req, char *resp, size_t cap)
{
    return th_raw(port, req, strlen(req), resp, cap);
}

/* Body of a raw reply (after the blank line), or NULL. */
static const char *th_body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    return p ? p + 4 : NULL;
}

/* Value of header name (case-insensitive) in a raw reply, copied into out. */
static int th_header(const char *resp, const char *name, char *out, size_t cap)
{
    const char *end = strstr(resp, "\r\n\r\n");
    size_t nl = strlen(name);
    for (const char *p = strstr(resp, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        const char *h = p + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            const char *v = h + nl + 1, *e = strstr(v, "\r\n");
            while (*v == ' ')
                v++;
            size_t n = (size_t)(e - v);
            if (n >= cap)
                n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return 1;
        }
    }
    return 0;
}

/* Assert body is a JSON object with a string "error" member. */
static void th_assert_json_error(const char *body)
{
    json_error_t err;
    json_t *o;

    cr_assert(body != NULL);
    o = json_loads(body, 0, &err);
    cr_assert(o != NULL, "not JSON: '%s'", body);
    cr_assert(json_is_string(json_object_get(o, "error")), "no error member: '%s'", body);
    json_decref(o);
}

/* ---- address parsing ---------------------------------------------------- */

Test(http, addr_valid)
{
    const char *good[] = { "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:1", "localhost:80", "[::]:65535",
                           "10.1.2.3:443" };
    for (size_t i = 0; i < LV_ARRAY_LEN(good); i++) {
        struct http_server *s = NULL;
        cr_assert_eq(http_new(good[i], &s), 0, "rejected %s", good[i]);
        cr_assert(s != NULL);
        http_free(s);
    }
}

Test(http, addr_invalid)
{
    const char *bad[] = { "", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                          "127.0.0.1:80x", "::1:80", "[::1]80", "[::1]", "[::1]:", "300.1.1.1:80",
                          "example.com:80", ":80", "[]:80", "127.0.0.1:-1", "127.0.0.1:+80",
                          "127.0.0.1:123456", "[127.0.0.1]:80", "1.2.3:80", "127.0.0.1: 80" };
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        struct http_server *s = (struct http_server *)0x1;
        cr_assert_eq(http_new(bad[i], &s), LV_EINVAL, "accepted '%s'", bad[i]);
        cr_assert_null(s);
    }
}

/* ---- normal requests ------------------------------------------------------ */

Test(http, get_and_context, .timeout = 30)
{
    struct th_srv t;
    char *body = NULL;
    size_t len = 0;
    long st = 0;

    th_start(&t);
    th_assert_alive(&t);
    cr_assert_eq(http_get(t.addr, "/ctx", &body, &len, &st), 0);
    cr_assert_eq(st, 200);
    cr_assert_str_eq(body, "context-42");
    free(body);
    /* Path without a leading slash is accepted by the client. */
    cr_assert_eq(http_get(t.addr, "hello", &body, &len, &st), 0);
    cr_assert_eq(st, 200);
    cr_assert_str_eq(body, "hello");
    free(body);
    /* NULL out-parameters are allowed. */
    cr_assert_eq(http_get(t.addr, "/hello", NULL, NULL, &st), 0);
    cr_assert_eq(st, 200);
    http_free(t.s);
}

Test(http, post_echo_binary, .timeout = 30)
{
    struct th_srv t;
    unsigned char data[3000];
    char *body = NULL;
    size_t len = 0;
    long st = 0;

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 7 + (i >> 8));  /* includes NUL bytes */
    th_start(&t);
    cr_assert_eq(http_post(t.addr, "/echo", data, sizeof(data), &body, &len, &st), 0);
    cr_assert_eq(st, 200);
    cr_assert_eq(len, sizeof(data));
    cr_assert_arr_eq(body, data, sizeof(data));
    free(body);
    /* Empty POST body: handler sees no body, replies with an empty body. */
    cr_assert_eq(http_post(t.addr, "/echo", NULL, 0, &body, &len, &st), 0);
    cr_assert_eq(st, 200);
    cr_assert_eq(len, 0);
    cr_assert_str_eq(body, "");
    free(body);
    http_free(t.s);
}

Test(http, body_limit, .timeout = 60)
{
    struct th_srv t;
    size_t n = HTTP_MAX_BODY + 1;
    char *data = malloc(n), *body = NULL;
    size_t len = 0;
    long st = 0;

    cr_assert(data != NULL);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)('a' + i % 26);
    th_start(&t);
    /* Exactly the limit is accepted and arrives intact. */
    cr_assert_eq(http_post(t.addr, "/echo", data, HTTP_MAX_BODY, &body, &len, &st), 0);
    cr_assert_eq(st, 200);
    cr_assert_eq(len, HTTP_MAX_BODY);
    cr_assert(memcmp(body, data, HTTP_MAX_BODY) == 0);
    free(body);
    /* One byte more is refused with 413 and a JSON error. */
    cr_assert_eq(http_post(t.addr, "/echo", data, n, &body, &len, &st), 0);
    cr_assert_eq(st, 413);
    th_assert_json_error(body);
    free(body);
    th_assert_alive(&t);
    free(data);
    http_free(t.s);
}

Test(http, not_found_and_method, .timeout = 30)
{
    struct th_srv t;
    char *body = NULL;
    char resp[8192], allow[128];
    size_t len = 0;
    long st = 0;

    th_start(&t);
    cr_assert_eq(http_get(t.addr, "/nope", &body, &len, &st), 0);
    cr_assert_eq(st, 404);
    th_assert_json_error(body);
    free(body);
    /* Exact match only: prefixes and suffixes of a route are unknown. */
    cr_assert_eq(http_get(t.addr, "/hell", NULL, NULL, &st), 0);
    cr_assert_eq(st, 404);
    cr_assert_eq(http_get(t.addr, "/hello/", NULL, NULL, &st), 0);
    cr_assert_eq(st, 404);

    /* Wrong method: 405 with an Allow header naming the route's methods. */
    cr_assert_eq(http_post(t.addr, "/hello", "x", 1, &body, &len, &st), 0);
    cr_assert_eq(st, 405);
    th_assert_json_error(body);
    free(body);
    cr_assert_eq(th_raw_str(t.port, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            resp, sizeof(resp)), 405);
    cr_assert(th_header(resp, "Allow", allow, sizeof(allow)), "no Allow header:\n%s", resp);
    cr_assert_str_eq(allow, "POST");
    cr_assert_eq(th_raw_str(t.port, "DELETE /ctx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            resp, sizeof(resp)), 405);
    cr_assert(th_header(resp, "Allow", allow, sizeof(allow)));
    cr_assert(strstr(allow, "GET") && strstr(allow, "PUT"), "Allow: %s", allow);
    /* The second route on the same path is reachable with its method. */
    cr_assert_eq(th_raw_str(t.port, "PUT /ctx HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                                    "Connection: close\r\n\r\n", resp, sizeof(resp)), 200);
    cr_assert_str_eq(th_body_of(resp), "context-put");
    th_assert_alive(&t);
    http_free(t.s);
}

Test(http, content_type_and_head, .timeout = 30)
{
    struct th_srv t;
    char resp[8192], ct[128];

    th_start(&t);
    cr_assert_eq(th_raw_str(t.port, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            resp, sizeof(resp)), 200);
    cr_assert(th_header(resp, "Content-Type", ct, sizeof(ct)));
    cr_assert_str_eq(ct, "application/json");
    cr_assert_str_eq(th_body_of(resp), "hello");
    cr_assert_eq(th_raw_str(t.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                    "Connection: close\r\n\r\nabc", resp, sizeof(resp)), 200);
    cr_assert(th_header(resp, "Content-Type", ct, sizeof(ct)));
    cr_assert_str_eq(ct, "application/octet-stream");
    cr_assert_str_eq(th_body_of(resp), "abc");
    /* HEAD is served by the GET route, without a body. */
    cr_assert_eq(th_raw_str(t.port, "HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            resp, sizeof(resp)), 200);
    cr_assert_str_eq(th_body_of(resp), "");
    http_free(t.s);
}

Test(http, query_parameters, .timeout = 30)
{
    struct th_srv t;
    char *body = NULL;
    char resp[8192];
    long st = 0;

    th_start(&t);
    cr_assert_eq(http_get(t.addr, "/query?name=a%20b&other=1", &body, NULL, &st), 0);
    cr_assert_eq(st, 200);
    cr_assert_str_eq(body, "a b");
    free(body);
    cr_assert_eq(http_get(t.addr, "/query?other=1", &body, NULL, &st), 0);
    cr_assert_str_eq(body, "(none)");
    free(body);
    cr_assert_eq(http_get(t.addr, "/query", &body, NULL, &st), 0);
    cr_assert_str_eq(body, "(none)");
    free(body);
    /* %00 is kept literal rather than truncating the value. */
    cr_assert_eq(th_raw_str(t.port, "GET /query?name=x%00y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            resp, sizeof(resp)), 200);
    cr_assert_str_eq(th_body_of(resp), "x%00y");
    http_free(t.s);
}

Test(http, handler_status_passthrough, .timeout = 30)
{
    struct th_srv t;
    char *body = NULL;
    long st = 0;

    th_start(&t);
    cr_assert_eq(http_get(t.addr, "/status", &body, NULL, &st), 0);
    cr_assert_eq(st, 503);
    cr_assert_str_eq(body, "{\"error\":\"busy\"}");
    free(body);
    /* A failing handler yields 500 naming the error. */
    cr_assert_eq(http_get(t.addr, "/fail", &body, NULL, &st), 0);
    cr_assert_eq(st, 500);
    th_assert_json_error(body);
    cr_assert(strstr(body, lv_strerror(LV_EIO)) != NULL, "body: %s", body);
    free(body);
    th_assert_alive(&t);
    http_free(t.s);
}

static void *th_count_worker(void *arg)
{
    const char *addr = arg;
    for (int i = 0; i < 25; i++) {
        char *body = NULL;
        long st = 0;
        if (http_get(addr, "/count", &body, NULL, &st) != 0 || st != 200 || atoi(body) < 1) {
            free(body);
            return (void *)1;
        }
        free(body);
    }
    return NULL;
}

Test(http, concurrent_clients, .timeout = 60)
{
    struct th_srv t;
    pthread_t th[4];

    th_start(&t);
    atomic_store(&th_count_calls, 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, th_count_worker, t.addr), 0);
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        cr_assert_null(ret, "worker %d saw a failed request", i);
    }
    cr_assert_eq(atomic_load(&th_count_calls), 100);
    http_free(t.s);
}

/* ---- start and connect failures ------------------------------------------ */

Test(http, start_address_in_use, .timeout = 30)
{
    struct th_srv t;
    struct http_server *s2 = NULL;

    th_start(&t);
    cr_assert_eq(http_new(t.addr, &s2), 0);
    cr_assert_eq(http_start(s2), LV_EIO);
    http_free(s2);
    th_assert_alive(&t);
    http_free(t.s);
}

Test(http, start_address_not_local, .timeout = 30)
{
    struct http_server *s = NULL;

    /* 192.0.2.1 (TEST-NET-1) is not an address of this host: bind fails. */
    cr_assert_eq(http_new("192.0.2.1:8080", &s), 0);
    cr_assert_eq(http_start(s), LV_EIO);
    http_free(s);
}

Test(http, client_connection_refused, .timeout = 30)
{
    char addr[64], *body = (char *)0x1;
    size_t len = 77;
    long st = 77;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", th_free_port(AF_INET));
    cr_assert_eq(http_get(addr, "/hello", &body, &len, &st), LV_ENET);
    cr_assert_null(body);
    cr_assert_eq(len, 0);
    cr_assert_eq(st, 0);
    cr_assert_eq(http_post(addr, "/echo", "x", 1, &body, &len, &st), LV_ENET);
    cr_assert_null(body);
}

Test(http, ipv6_loopback, .timeout = 30)
{
    struct http_server *s = NULL;
    char addr[64], *body = NULL;
    long st = 0;
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };

    if (fd < 0 || bind(fd, (struct sockaddr *)&s6, sizeof(s6)) != 0) {
        if (fd >= 0)
            close(fd);
        cr_skip_test("no IPv6 loopback");
    }
    close(fd);
    snprintf(addr, sizeof(addr), "[::1]:%d", th_free_port(AF_INET6));
    cr_assert_eq(http_new(addr, &s), 0);
    cr_assert_eq(http_route(s, "GET", "/hello", h_hello, NULL), 0);
    cr_assert_eq(http_start(s), 0);
    cr_assert_eq(http_get(addr, "/hello", &body, NULL, &st), 0);
    cr_assert_eq(st, 200);
    cr_assert_str_eq(body, "hello");
    free(body);
    http_free(s);
}

/* ---- hostile requests ------------------------------------------------------- */

Test(http, garbage_requests, .timeout = 60)
{
    struct th_srv t;
    static const char nul_line[] = "\0\0\0GET / HTTP/1.1\r\n\r\n";
    const char *garbage[] = {
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "\x01\x02\x03\x04\r\n\r\n",
        "GET /hello HTTP/9.9\r\nHost: x\r\n\r\n",
        "GET /hello FTP/1.1\r\nHost: x\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
    };
    /* Odd but tolerable: any answer is fine as long as the server survives. */
    const char *odd[] = {
        "GET /hello HTTP/1.1\r\n: novalue\r\nConnection: close\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: close\r\n\r\n",
        "GET /hello HTTP/1.0\r\n\r\n",
        "GET /hello\r\n\r\n",
        "get /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /hello HTTP/1.1\nHost: x\nConnection: close\n\n",
        "GET /hello HTTP/1.1\r\nHost: \xff\xfe\r\nX-\x01: \x7f\r\nConnection: close\r\n\r\n",
    };
    char resp[8192];

    th_start(&t);
    for (size_t i = 0; i < LV_ARRAY_LEN(garbage); i++) {
        int st = th_raw_str(t.port, garbage[i], resp, sizeof(resp));
        cr_assert(st == 0 || st >= 400, "garbage %zu answered %d:\n%s", i, st, resp);
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(odd); i++)
        th_raw_str(t.port, odd[i], resp, sizeof(resp));
    /* libmicrohttpd neither answers nor closes this one; we time out. */
    int st = th_raw(t.port, nul_line, sizeof(nul_line) - 1, resp, sizeof(resp));
    cr_assert(st == 0 || st >= 400, "NUL request answered %d", st);
    th_assert_alive(&t);
    http_free(t.s);
}

Test(http, hostile_paths, .timeout = 60)
{
    struct th_srv t;
    const char *paths[] = {
        "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/hello/../hello", "/./hello",
        "/hello%00x", "/hello%00", "/\xff\xfe\xfd", "/%ff%fe", "/hello\xc0\xaf", "//hello",
        "/hello%2f..", "/%",  "/%g1", "hello", "*",
    };
    char req[512], resp[8192];

    th_start(&t);
    for (size_t i = 0; i < LV_ARRAY_LEN(paths); i++) {
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", paths[i]);
        int st = th_raw_str(t.port, req, resp, sizeof(resp));
        cr_assert(st == 0 || st == 404 || st == 400, "path '%s' answered %d:\n%s", paths[i], st, resp);
    }
    /* Percent-encoded route names still resolve. */
    cr_assert_eq(th_raw_str(t.port, "GET /hell%6f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            resp, sizeof(resp)), 200);
    th_assert_alive(&t);
    http_free(t.s);
}

Test(http, huge_headers, .timeout = 60)
{
    struct th_srv t;
    size_t cap = 512 * 1024, n = 0;
    char *req = malloc(cap);
    char resp[8192];

    cr_assert(req != NULL);
    th_start(&t);
    /* 300 headers of 1 KiB each, well above the per-connection memory limit. */
    n += (size_t)snprintf(req + n, cap - n, "GET /hello HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 300; i++) {
        n += (size_t)snprintf(req + n, cap - n, "X-Pad-%d: ", i);
        memset(req + n, 'a', 1024);
        n += 1024;
        n += (size_t)snprintf(req + n, cap - n, "\r\n");
    }
    n += (size_t)snprintf(req + n, cap - n, "Connection: close\r\n\r\n");
    int st = th_raw(t.port, req, n, resp, sizeof(resp));
    cr_assert(st == 0 || st >= 400, "huge headers answered %d", st);
    /* One huge request line (URL of 200 KiB). */
    n = (size_t)snprintf(req, cap, "GET /");
    memset(req + n, 'b', 200 * 1024);
    n += 200 * 1024;
    n += (size_t)snprintf(req + n, cap - n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    st = th_raw(t.port, req, n, resp, sizeof(resp));
    cr_assert(st == 0 || st >= 400, "huge URL answered %d", st);
    th_assert_alive(&t);
    free(req);
    http_free(t.s);
}

Test(http, huge_bodies_raw, .timeout = 60)
{
    struct th_srv t;
    char resp[8192], chunkhdr[32];
    size_t chunk = 64 * 1024;
    char *data = malloc(chunk);
    int fd, st;

    cr_assert(data != NULL);
    memset(data, 'z', chunk);
    th_start(&t);
    /* Declared length above the limit: 413 before the body is read. */
    st = th_raw_str(t.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
                            "Connection: close\r\n\r\nabc", resp, sizeof(resp));
    cr_assert_eq(st, 413, "answered %d:\n%s", st, resp);
    th_assert_json_error(th_body_of(resp));

    /* Chunked body of 1.5 MiB: no length up front, 413 at the end. */
    fd = th_connect(t.port);
    cr_assert(fd >= 0);
    const char *hdr = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    th_send(fd, hdr, strlen(hdr));
    for (int i = 0; i < 24; i++) {
        snprintf(chunkhdr, sizeof(chunkhdr), "%zx\r\n", chunk);
        th_send(fd, chunkhdr, strlen(chunkhdr));
        th_send(fd, data, chunk);
        th_send(fd, "\r\n", 2);
    }
    th_send(fd, "0\r\n\r\n", 5);
    th_recv_all(fd, resp, sizeof(resp));
    close(fd);
    cr_assert(strncmp(resp, "HTTP/1.1 413", 12) == 0, "chunked answered:\n%s", resp);

    /* Endless chunked body: the server hangs up instead of reading forever. */
    fd = th_connect(t.port);
    cr_assert(fd >= 0);
    th_send(fd, hdr, strlen(hdr));
    int hung_up = 0;
    for (int i = 0; i < 1000 && !hung_up; i++) {  /* up to 64 MiB */
        snprintf(chunkhdr, sizeof(chunkhdr), "%zx\r\n", chunk);
        if (send(fd, chunkhdr, strlen(chunkhdr), MSG_NOSIGNAL) < 0 ||
            send(fd, data, chunk, MSG_NOSIGNAL) < 0 || send(fd, "\r\n", 2, MSG_NOSIGNAL) < 0)
            hung_up = 1;
    }
    close(fd);
    cr_assert(hung_up, "server kept reading an endless body");
    th_assert_alive(&t);
    free(data);
    http_free(t.s);
}

Test(http, many_connections, .timeout = 60)
{
    struct th_srv t;
    enum { NCONN = 100, LIMIT = 64 };
    int fds[NCONN];
    char resp[8192];
    const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    th_start(&t);
    /* Below the limit: idle connections do not stop other clients.  (The
     * client's connection then holds a slot until its thread has ended:
     * wait for that, or one connection beyond the limit may take it.) */
    for (int i = 0; i < 40; i++) {
        fds[i] = th_connect(t.port);
        cr_assert(fds[i] >= 0);
    }
    usleep(100 * 1000);
    th_assert_alive(&t);
    usleep(300 * 1000);
    /* Above the limit: the kernel completes the handshakes, but the server
     * serves no more than LIMIT connections at once: one beyond is closed
     * without an answer (each connection has a thread of its own). */
    for (int i = 40; i < NCONN; i++) {
        fds[i] = th_connect(t.port);
        cr_assert(fds[i] >= 0);
    }
    usleep(300 * 1000);
    int last = NCONN - 1;
    th_send(fds[last], req, strlen(req));
    th_recv_all(fds[last], resp, sizeof(resp));
    cr_assert(strncmp(resp, "HTTP/", 5) != 0, "connection %d was served beyond the limit:\n%s", last, resp);
    /* Freeing slots lets new connections in. */
    for (int i = 0; i < NCONN; i++)
        close(fds[i]);
    usleep(300 * 1000);
    th_assert_alive(&t);
    http_free(t.s);
}

Test(http, slow_partial_requests, .timeout = 60)
{
    struct th_srv t;
    int fds[10];
    const char *part = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ";

    th_start(&t);
    for (int i = 0; i < 10; i++) {
        fds[i] = th_connect(t.port);
        cr_assert(fds[i] >= 0);
        th_send(fds[i], part, strlen(part));
    }
    /* Drip one byte at a time on each while normal clients are served. */
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 10; i++)
            th_send(fds[i], "a", 1);
        th_assert_alive(&t);
        usleep(20 * 1000);
    }
    /* Finishing one of them still yields a correct answer. */
    char resp[8192];
    th_send(fds[0], "\r\nConnection: close\r\n\r\n", 23);
    th_recv_all(fds[0], resp, sizeof(resp));
    cr_assert(strncmp(resp, "HTTP/1.1 200", 12) == 0, "reply:\n%s", resp);
    cr_assert_str_eq(th_body_of(resp), "hello");
    for (int i = 0; i < 10; i++)
        close(fds[i]);
    /* Stopping with half-read connections pending must not hang or crash. */
    http_free(t.s);
}

Test(http, free_with_open_connections, .timeout = 30)
{
    struct th_srv t;
    int fd;

    th_start(&t);
    fd = th_connect(t.port);
    cr_assert(fd >= 0);
    const char *req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc";
    th_send(fd, req, strlen(req));
    usleep(50 * 1000);
    http_free(t.s);  /* request half-received: completed callback frees its buffer */
    close(fd);
}

/* A handler that takes 300 ms (a hand-over, say); it says when it began. */
static volatile int g_slow_began;

static int h_slow(void *ctx, const struct http_request *req, struct http_response *resp)
{
    __atomic_store_n(&g_slow_began, 1, __ATOMIC_RELEASE);
    usleep(300 * 1000);
    resp->body = strdup("done");
    return 0;
}

struct th_slow {
    char addr[64];
    int rc;
    long st;
    char *body;
};

static void *th_slow_get(void *arg)
{
    struct th_slow *g = arg;
    size_t len = 0;
    g->rc = http_get(g->addr, "/slow", &g->body, &len, &g->st);
    return NULL;
}

/* http_free while a handler runs: its answer still goes out (the drain). */
Test(http, free_lets_answers_out, .timeout = 30)
{
    struct th_srv t;
    struct th_slow g = {0};
    pthread_t th;

    t.port = th_free_port(AF_INET);
    snprintf(t.addr, sizeof(t.addr), "127.0.0.1:%d", t.port);
    cr_assert_eq(http_new(t.addr, &t.s), 0);
    cr_assert_eq(http_route(t.s, "GET", "/slow", h_slow, NULL), 0);
    cr_assert_eq(http_start(t.s), 0);
    snprintf(g.addr, sizeof g.addr, "%s", t.addr);
    cr_assert_eq(pthread_create(&th, NULL, th_slow_get, &g), 0);
    for (int i = 0; i < 1000 && !__atomic_load_n(&g_slow_began, __ATOMIC_ACQUIRE); i++)
        usleep(10 * 1000);
    cr_assert(__atomic_load_n(&g_slow_began, __ATOMIC_ACQUIRE), "the handler never ran");
    http_free(t.s); /* the handler is running */
    pthread_join(th, NULL);
    cr_assert_eq(g.rc, 0, "the client got no answer (rc %d)", g.rc);
    cr_assert_eq(g.st, 200);
    cr_assert_str_eq(g.body, "done");
    free(g.body);
}

Test(http, route_after_start_refused, .timeout = 30)
{
    struct th_srv t;
    long st = 0;

    th_start(&t);
    cr_assert_eq(http_route(t.s, "GET", "/late", h_hello, NULL), LV_EINVAL);
    cr_assert_eq(http_get(t.addr, "/late", NULL, NULL, &st), 0);
    cr_assert_eq(st, 404);
    http_free(t.s);
}

/* ---- header timeout, Unix sockets, holds ------------------------------ */

/* A trickling client (one header byte every 100 ms) is dropped once the
 * header timeout passes, although it is never idle. */
Test(http, header_timeout_drops_tricklers, .timeout = 60)
{
    struct th_srv t;
    const char *part = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    int fd, dropped = 0;

    t.port = th_free_port(AF_INET);
    snprintf(t.addr, sizeof(t.addr), "127.0.0.1:%d", t.port);
    cr_assert_eq(http_new(t.addr, &t.s), 0);
    cr_assert_eq(http_set_limits(t.s, &(struct http_limits){0, 0, 1}), 0);
    cr_assert_eq(http_route(t.s, "GET", "/hello", h_hello, NULL), 0);
    cr_assert_eq(http_start(t.s), 0);
    fd = th_connect(t.port);
    th_send(fd, part, strlen(part));
    for (int i = 0; i < 300 && !dropped; i++) { /* bounded: 30 s; the timeout is 1 s */
        if (send(fd, "a", 1, MSG_NOSIGNAL) < 0)
            dropped = 1;
        char c;
        ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            dropped = 1;
        usleep(100 * 1000);
    }
    cr_assert(dropped, "a client trickling its header was never dropped");
    close(fd);
    th_assert_alive(&t);
    http_free(t.s);
}

static atomic_int th_hold_done;

static void th_hold_end(void *arg)
{
    atomic_fetch_add(&th_hold_done, 1);
    free(arg);
}

static int h_held(void *ctx, const struct http_request *req, struct http_response *resp)
{
    resp->body = strdup("{\"held\":true}\n");
    resp->hold_done = th_hold_end;
    resp->hold_arg = strdup("x");
    return 0;
}

/* A Unix-socket server: 0600, GET over curl, a held POST released when the client hangs up. */
Test(http, unix_socket_hold, .timeout = 60)
{
    char dir[] = "/tmp/lvhttp.XXXXXX", sock[64], *body = NULL;
    struct http_server *s = NULL;
    struct stat st;
    size_t len = 0;
    long code = 0;
    int conn = -1;

    cr_assert(mkdtemp(dir) != NULL);
    snprintf(sock, sizeof sock, "%s/admin.sock", dir);
    cr_assert_eq(http_new(sock, &s), 0);
    cr_assert_eq(http_route(s, "GET", "/hello", h_hello, NULL), 0);
    cr_assert_eq(http_route(s, "POST", "/held", h_held, NULL), 0);
    cr_assert_eq(http_start(s), 0);
    cr_assert_eq(stat(sock, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(http_get(sock, "/hello", &body, &len, &code), 0);
    cr_assert_eq(code, 200);
    cr_assert_str_eq(body, "hello");
    free(body);
    cr_assert_eq(http_post_hold(sock, "/held", 30, &body, &code, &conn), 0);
    cr_assert_eq(code, 200);
    cr_assert_str_eq(body, "{\"held\":true}\n");
    free(body);
    usleep(300 * 1000);
    cr_assert_eq(atomic_load(&th_hold_done), 0, "released while the client still holds it");
    /* Other requests are served meanwhile (thread per connection). */
    cr_assert_eq(http_get(sock, "/hello", &body, &len, &code), 0);
    free(body);
    close(conn);
    for (int i = 0; i < 200 && atomic_load(&th_hold_done) == 0; i++) /* bounded: 20 s */
        usleep(100 * 1000);
    cr_assert_eq(atomic_load(&th_hold_done), 1);
    /* A hold still open when the server stops is released too. */
    cr_assert_eq(http_post_hold(sock, "/held", 30, &body, &code, &conn), 0);
    free(body);
    http_free(s);
    cr_assert_eq(atomic_load(&th_hold_done), 2);
    cr_assert_neq(stat(sock, &st), 0, "the socket outlived the server");
    close(conn);
    rmdir(dir);
}

/* A server that accepts and never answers: the client reports LV_EBUSY (timed out). */
Test(http, client_timeout_is_busy, .timeout = 60)
{
    char dir[] = "/tmp/lvhttp.XXXXXX", sock[64], *body = NULL;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    long code = 0;
    int conn = -1;

    cr_assert(mkdtemp(dir) != NULL);
    snprintf(sock, sizeof sock, "%s/mute.sock", dir);
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 4) == 0);
    cr_assert_eq(http_post_hold(sock, "/x", 1, &body, &code, &conn), LV_EBUSY);
    cr_assert_eq(http_get(sock, "/x", &body, NULL, &code), LV_EBUSY);
    close(fd);
    unlink(sock);
    cr_assert_eq(http_get(sock, "/x", &body, NULL, &code), LV_ENET);
    rmdir(dir);
}

/* ---- authentication, headers, streams, TLS ----------------------------- */

#define TH_TOKEN "s3cret-token-0123456789abcdef"

/* Echo the X-Test header and the peer address: "<header>|<peer>". */
static int h_hdr(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const char *v = req->header(req, "x-test"); /* any case */
    cr_assert(asprintf(&resp->body, "%s|%s", v ? v : "(none)", req->peer) > 0);
    resp->content_type = "text/plain";
    return 0;
}

/* Start a server with GET /pub (public), GET /priv (private) and GET /hdr
 * (private), token TH_TOKEN (unless token is NULL), public routes open or not. */
static void th_start_auth(struct th_srv *t, const char *token, int public_open)
{
    t->port = th_free_port(AF_INET);
    snprintf(t->addr, sizeof(t->addr), "127.0.0.1:%d", t->port);
    cr_assert_eq(http_new(t->addr, &t->s), 0);
    cr_assert_eq(http_route_ex(t->s, "GET", "/pub", h_hello, NULL, HTTP_R_PUBLIC), 0);
    cr_assert_eq(http_route_ex(t->s, "GET", "/priv", h_hello, NULL, HTTP_R_PRIVATE), 0);
    cr_assert_eq(http_route_ex(t->s, "GET", "/hdr", h_hdr, NULL, HTTP_R_PRIVATE), 0);
    cr_assert_eq(http_route_ex(t->s, "GET", "/bad", h_hello, NULL, 0), LV_EINVAL, "a route needs a class");
    cr_assert_eq(http_set_token(t->s, token), 0);
    cr_assert_eq(http_set_public(t->s, public_open), 0);
    cr_assert_eq(http_start(t->s), 0);
}

/* Status of GET path with an Authorization header line auth (NULL: none); reply into resp. */
static int th_get_auth(struct th_srv *t, const char *path, const char *auth, char *resp, size_t cap)
{
    char req[512];

    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s%s%s\r\n", path,
             auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "");
    return th_raw_str(t->port, req, resp, cap);
}

Test(http, token_guards_private_routes, .timeout = 60)
{
    struct th_srv t;
    char resp[8192], hv[256];
    const char *wrong[] = {NULL, "Bearer wrong", "Bearer " TH_TOKEN "x", "Bearer " "s3cret-token-0123456789abcdeF",
                           "Bearer s3cret", "Basic " TH_TOKEN, "Bearer", "Bearer ", TH_TOKEN, "Bearer" TH_TOKEN};

    th_start_auth(&t, TH_TOKEN, 1);
    /* Public routes stay open; unknown paths are 404 whoever asks. */
    cr_assert_eq(th_get_auth(&t, "/pub", NULL, resp, sizeof resp), 200, "%s", resp);
    cr_assert_eq(th_get_auth(&t, "/nope", NULL, resp, sizeof resp), 404, "%s", resp);
    for (size_t i = 0; i < LV_ARRAY_LEN(wrong); i++) {
        cr_assert_eq(th_get_auth(&t, "/priv", wrong[i], resp, sizeof resp), 401, "auth '%s' got:\n%s",
                     wrong[i] ? wrong[i] : "(none)", resp);
        cr_assert(th_header(resp, "WWW-Authenticate", hv, sizeof hv), "no WWW-Authenticate:\n%s", resp);
        cr_assert(strncmp(hv, "Bearer", 6) == 0, "WWW-Authenticate: %s", hv);
        th_assert_json_error(th_body_of(resp));
        cr_assert_null(strstr(resp, TH_TOKEN), "the token appears in a reply:\n%s", resp);
    }
    cr_assert_eq(th_get_auth(&t, "/priv", "Bearer " TH_TOKEN, resp, sizeof resp), 200, "%s", resp);
    cr_assert_str_eq(th_body_of(resp), "hello");
    cr_assert_eq(th_get_auth(&t, "/priv", "bearer  " TH_TOKEN "  ", resp, sizeof resp), 200, "%s", resp);
    /* The client side sends the header. */
    char *body = NULL;
    long st = 0;
    cr_assert_eq(http_get_ex(t.addr, "/priv", &(struct http_client_opts){.token = TH_TOKEN}, &body, NULL, &st), 0);
    cr_assert_eq(st, 200);
    free(body);
    cr_assert_eq(http_get(t.addr, "/priv", &body, NULL, &st), 0);
    cr_assert_eq(st, 401);
    free(body);
    /* Too late to change once running. */
    cr_assert_eq(http_set_token(t.s, "x"), LV_EINVAL);
    cr_assert_eq(http_set_public(t.s, 0), LV_EINVAL);
    http_free(t.s);

    /* Public routes closed: they need the token too. */
    th_start_auth(&t, TH_TOKEN, 0);
    cr_assert_eq(th_get_auth(&t, "/pub", NULL, resp, sizeof resp), 401, "%s", resp);
    cr_assert_eq(th_get_auth(&t, "/pub", "Bearer " TH_TOKEN, resp, sizeof resp), 200, "%s", resp);
    http_free(t.s);

    /* No token: every route is open, whatever its class. */
    th_start_auth(&t, NULL, 0);
    cr_assert_eq(th_get_auth(&t, "/priv", NULL, resp, sizeof resp), 200, "%s", resp);
    cr_assert_eq(th_get_auth(&t, "/pub", "Bearer whatever", resp, sizeof resp), 200, "%s", resp);
    http_free(t.s);
}

Test(http, request_headers_and_peer, .timeout = 30)
{
    struct th_srv t;
    char resp[8192];

    th_start_auth(&t, NULL, 1);
    cr_assert_eq(th_raw_str(t.port, "GET /hdr HTTP/1.1\r\nHost: x\r\nX-TEST: abc def\r\nConnection: close\r\n\r\n",
                            resp, sizeof resp), 200, "%s", resp);
    cr_assert(strncmp(th_body_of(resp), "abc def|127.0.0.1:", 18) == 0, "body: %s", th_body_of(resp));
    cr_assert_eq(th_raw_str(t.port, "GET /hdr HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp, sizeof resp),
                 200);
    cr_assert(strncmp(th_body_of(resp), "(none)|127.0.0.1:", 17) == 0, "body: %s", th_body_of(resp));
    http_free(t.s);
}

Test(http, addr_is_loopback)
{
    const char *yes[] = {"127.0.0.1:1", "127.1.2.3:80", "localhost:8080", "[::1]:80", "[::ffff:127.0.0.1]:80"};
    const char *no[] = {"0.0.0.0:80", "10.0.0.1:80", "[::]:80", "[fe80::1]:80", "192.0.2.1:1", "db1.example:80",
                        "/tmp/admin.sock", "", "127.0.0.1", "[::ffff:10.0.0.1]:80"};

    for (size_t i = 0; i < LV_ARRAY_LEN(yes); i++)
        cr_assert_eq(http_addr_is_loopback(yes[i]), 1, "%s", yes[i]);
    for (size_t i = 0; i < LV_ARRAY_LEN(no); i++)
        cr_assert_eq(http_addr_is_loopback(no[i]), 0, "%s", no[i]);
    cr_assert_eq(http_addr_is_loopback(NULL), 0);
}

/* ---- streams ---- */

static atomic_int th_stream_freed;

/* One stream's state; mode from ?mode=: ticks (n lines "tick\n", 100 ms
 * apart), idle (nothing, ever), error (3 bytes, then HTTP_STREAM_ERROR),
 * big (n bytes of 'a', as much as allowed per call). */
struct th_stream {
    char mode[16];
    long left;
};

static long th_stream_fn(void *arg, char *buf, size_t max)
{
    struct th_stream *st = arg;

    if (strcmp(st->mode, "ticks") == 0) {
        if (st->left == 0)
            return HTTP_STREAM_END;
        usleep(100 * 1000); /* blocks, as a stream waiting for commits does */
        st->left--;
        memcpy(buf, "tick\n", 5);
        return 5;
    }
    if (strcmp(st->mode, "idle") == 0) {
        usleep(50 * 1000);
        return 0;
    }
    if (strcmp(st->mode, "error") == 0) {
        if (st->left-- > 0) {
            buf[0] = 'x';
            return 1;
        }
        return HTTP_STREAM_ERROR;
    }
    if (st->left == 0)
        return HTTP_STREAM_END;
    size_t n = (size_t)st->left < max ? (size_t)st->left : max;
    memset(buf, 'a', n);
    st->left -= (long)n;
    return (long)n;
}

static void th_stream_free(void *arg)
{
    free(arg);
    atomic_fetch_add(&th_stream_freed, 1);
}

static int h_stream(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const char *m = req->query(req, "mode"), *n = req->query(req, "n");
    struct th_stream *st = calloc(1, sizeof *st);

    cr_assert_not_null(st);
    snprintf(st->mode, sizeof st->mode, "%s", m ? m : "ticks");
    st->left = n ? atol(n) : 3;
    resp->content_type = "application/x-test-stream";
    resp->stream_fn = th_stream_fn;
    resp->stream_free = th_stream_free;
    resp->stream_arg = st;
    return strcmp(st->mode, "fail") == 0 ? LV_EIO : 0;
}

static void th_start_stream(struct th_srv *t)
{
    t->port = th_free_port(AF_INET);
    snprintf(t->addr, sizeof(t->addr), "127.0.0.1:%d", t->port);
    cr_assert_eq(http_new(t->addr, &t->s), 0);
    cr_assert_eq(http_route(t->s, "GET", "/hello", h_hello, NULL), 0);
    cr_assert_eq(http_route_ex(t->s, "GET", "/stream", h_stream, NULL, HTTP_R_PRIVATE), 0);
    cr_assert_eq(http_start(t->s), 0);
}

/* Wait (<= 10 s) until th_stream_freed reaches want. */
static int th_wait_freed(int want)
{
    for (int i = 0; i < 1000 && atomic_load(&th_stream_freed) < want; i++)
        usleep(10 * 1000);
    return atomic_load(&th_stream_freed);
}

struct th_getter {
    const char *addr;
    int rc;
    long status;
    char *body;
};

static void *th_get_thread(void *arg)
{
    struct th_getter *g = arg;

    g->rc = http_get(g->addr, "/stream?mode=ticks&n=20", &g->body, NULL, &g->status);
    return NULL;
}

/* 20 streams of 2 s each at once; /hello answers meanwhile, quickly. */
Test(http, concurrent_streams_leave_room, .timeout = 60)
{
    enum { NSTREAM = 20 };
    struct th_srv t;
    struct th_getter g[NSTREAM];
    pthread_t th[NSTREAM];
    char want[20 * 5 + 1] = "";

    atomic_store(&th_stream_freed, 0);
    th_start_stream(&t);
    for (int i = 0; i < NSTREAM; i++) {
        g[i] = (struct th_getter){.addr = t.addr};
        cr_assert_eq(pthread_create(&th[i], NULL, th_get_thread, &g[i]), 0);
    }
    usleep(300 * 1000);
    for (int i = 0; i < 5; i++) {
        int64_t t0 = lv_mono_us();
        th_assert_alive(&t);
        cr_assert_lt(lv_mono_us() - t0, 1000000, "a plain request waited behind the streams");
        usleep(100 * 1000);
    }
    cr_assert_lt(atomic_load(&th_stream_freed), NSTREAM, "the streams ended too early");
    for (int i = 0; i < 20; i++)
        strcat(want, "tick\n");
    for (int i = 0; i < NSTREAM; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(g[i].rc, 0, "stream %d: %d", i, g[i].rc);
        cr_assert_eq(g[i].status, 200);
        cr_assert_str_eq(g[i].body, want);
        free(g[i].body);
    }
    cr_assert_eq(th_wait_freed(NSTREAM), NSTREAM, "stream_free ran %d times", atomic_load(&th_stream_freed));
    http_free(t.s);
    cr_assert_eq(atomic_load(&th_stream_freed), NSTREAM, "stream_free ran more than once");
}

Test(http, stream_ends_and_frees_once, .timeout = 60)
{
    struct th_srv t;
    char resp[8192], hv[128];
    char *body = NULL;
    size_t len = 0;
    long st = 0;
    int fd;

    atomic_store(&th_stream_freed, 0);
    th_start_stream(&t);
    /* A large body, beyond any one buffer, arrives whole (chunked). */
    cr_assert_eq(http_get(t.addr, "/stream?mode=big&n=3000000", &body, &len, &st), 0);
    cr_assert_eq(st, 200);
    cr_assert_eq(len, 3000000);
    cr_assert_eq(strspn(body, "a"), 3000000);
    free(body);
    cr_assert_eq(th_wait_freed(1), 1);
    /* Content type and chunked encoding. */
    cr_assert_eq(th_raw_str(t.port, "GET /stream?n=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", resp,
                            sizeof resp), 200, "%s", resp);
    cr_assert(th_header(resp, "Content-Type", hv, sizeof hv) && strcmp(hv, "application/x-test-stream") == 0);
    cr_assert(th_header(resp, "Transfer-Encoding", hv, sizeof hv) && strcmp(hv, "chunked") == 0);
    cr_assert_eq(th_wait_freed(2), 2);
    /* HTTP_STREAM_ERROR cuts the connection: the client sees a truncated body. */
    cr_assert_eq(http_get(t.addr, "/stream?mode=error&n=3", &body, NULL, &st), LV_ENET);
    cr_assert_eq(th_wait_freed(3), 3);
    /* A failing handler's stream is freed too, and the client gets 500. */
    cr_assert_eq(http_get(t.addr, "/stream?mode=fail", &body, NULL, &st), 0);
    cr_assert_eq(st, 500);
    free(body);
    cr_assert_eq(th_wait_freed(4), 4);
    /* HEAD: no body, the stream is freed. */
    cr_assert_eq(th_raw_str(t.port, "HEAD /stream?mode=idle HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            resp, sizeof resp), 200, "%s", resp);
    cr_assert_eq(th_wait_freed(5), 5);
    /* A client that hangs up ends a stream that has nothing to send. */
    fd = th_connect(t.port);
    th_send(fd, "GET /stream?mode=idle HTTP/1.1\r\nHost: x\r\n\r\n", 44);
    usleep(300 * 1000);
    cr_assert_eq(atomic_load(&th_stream_freed), 5, "an idle stream ended while its client was there");
    close(fd);
    cr_assert_eq(th_wait_freed(6), 6, "a stream outlived its client");
    /* A stream is not cut by the idle timeout; stopping the server ends it. */
    fd = th_connect(t.port);
    th_send(fd, "GET /stream?mode=idle HTTP/1.1\r\nHost: x\r\n\r\n", 44);
    usleep(300 * 1000);
    int64_t t0 = lv_mono_us();
    http_free(t.s);
    cr_assert_lt(lv_mono_us() - t0, 5000000, "http_free waited for the stream");
    cr_assert_eq(atomic_load(&th_stream_freed), 7);
    close(fd);
}

/* ---- TLS ---- */

/* Make a throwaway CA-less self-signed certificate for 127.0.0.1 in dir
 * (cert.pem, key.pem) with openssl; 0, or -1 when openssl is missing. */
static int th_make_cert(const char *dir)
{
    char cmd[1024];

    if (system("command -v openssl >/dev/null 2>&1") != 0)
        return -1;
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout %s/key.pem -out %s/cert.pem "
             ">/dev/null 2>&1", dir, dir);
    cr_assert_eq(system(cmd), 0, "openssl req failed: %s", cmd);
    return 0;
}

Test(http, tls_server, .timeout = 60)
{
    char dir[] = "/tmp/lvtls.XXXXXX", cert[128], key[128], cmd[512];
    struct th_srv t;
    char *body = NULL;
    long st = 0;

    cr_assert(mkdtemp(dir) != NULL);
    if (!http_tls_supported())
        cr_skip_test("libmicrohttpd has no TLS here");
    if (th_make_cert(dir) != 0)
        cr_skip_test("openssl is not installed (apt-get install openssl)");
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    t.port = th_free_port(AF_INET);
    snprintf(t.addr, sizeof(t.addr), "127.0.0.1:%d", t.port);
    cr_assert_eq(http_new(t.addr, &t.s), 0);
    cr_assert_eq(http_set_tls(t.s, "/nonexistent/cert.pem", key), LV_EIO);
    cr_assert_eq(http_set_tls(t.s, cert, "/nonexistent/key.pem"), LV_EIO);
    cr_assert_eq(http_set_tls(t.s, cert, key), 0);
    cr_assert_eq(http_set_token(t.s, TH_TOKEN), 0);
    cr_assert_eq(http_route_ex(t.s, "GET", "/priv", h_hello, NULL, HTTP_R_PRIVATE), 0);
    cr_assert_eq(http_route_ex(t.s, "GET", "/stream", h_stream, NULL, HTTP_R_PRIVATE), 0);
    cr_assert_eq(http_start(t.s), 0);
    struct http_client_opts o = {.token = TH_TOKEN, .https = 1, .ca_file = cert};
    cr_assert_eq(http_get_ex(t.addr, "/priv", &o, &body, NULL, &st), 0);
    cr_assert_eq(st, 200);
    cr_assert_str_eq(body, "hello");
    free(body);
    cr_assert_eq(http_get_ex(t.addr, "/stream?mode=big&n=200000", &o, &body, NULL, &st), 0);
    cr_assert_eq(st, 200);
    cr_assert_eq(strlen(body), 200000);
    free(body);
    /* Without the CA the certificate is not trusted; plain HTTP gets no answer. */
    o.ca_file = NULL;
    cr_assert_eq(http_get_ex(t.addr, "/priv", &o, &body, NULL, &st), LV_ENET);
    cr_assert_eq(http_get(t.addr, "/priv", &body, NULL, &st), LV_ENET);
    o.ca_file = cert;
    o.token = NULL;
    cr_assert_eq(http_get_ex(t.addr, "/priv", &o, &body, NULL, &st), 0);
    cr_assert_eq(st, 401);
    free(body);
    http_free(t.s);
    /* TLS is for TCP servers only. */
    char sock[128];
    struct http_server *u = NULL;
    snprintf(sock, sizeof sock, "%s/a.sock", dir);
    cr_assert_eq(http_new(sock, &u), 0);
    cr_assert_eq(http_set_tls(u, cert, key), LV_EINVAL);
    http_free(u);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
