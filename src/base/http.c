/*
 * http.c -- the daemon's HTTP API server (libmicrohttpd) and the CLI's
 * HTTP client (libcurl).
 *
 * Server design
 * -------------
 * A struct http_server holds the parsed listen address and a singly linked
 * list of routes.  The list is built by http_route() before http_start()
 * and is immutable afterwards, so the libmicrohttpd worker threads read it
 * without a lock.
 *
 * States of a server:
 *     NEW      http_new() returned it; routes may be added.
 *     RUNNING  http_start() succeeded; s->mhd != NULL; no more routes.
 *     (freed)  http_free() stopped the daemon (joining its threads) and
 *              released everything.
 * http_start() failing leaves the server in NEW; http_free() is still the
 * way out.
 *
 * libmicrohttpd runs an internal polling thread pool (HTTP_POOL_THREADS
 * threads, epoll on Linux) and calls access_cb() several times per
 * request:
 *   1. first call, *con_cls == NULL, headers parsed, no body yet.  We
 *      allocate a struct http_conn, resolve the route and answer at once
 *      with 404 (no route for the path), 405 (path known, method not; the
 *      Allow header lists the route's methods) or 413 (Content-Length above
 *      HTTP_MAX_BODY).  Answering here means the body is never read;
 *      libmicrohttpd then closes the connection after the response.
 *   2. zero or more calls with *upload_data_size > 0: body bytes are
 *      appended to the per-request buffer.  A body that grows past
 *      HTTP_MAX_BODY without a Content-Length (chunked encoding) is counted
 *      and discarded; past HTTP_DISCARD_MAX discarded bytes we drop the
 *      connection (return MHD_NO) rather than read forever.
 *   3. a final call with *upload_data_size == 0: we answer 413 if the body
 *      was too large, otherwise run the handler and queue its response.
 * request_done_cb() (MHD_OPTION_NOTIFY_COMPLETED) frees the http_conn and
 * its buffer whatever the outcome (completed, timed out, client closed,
 * daemon stopped).
 *
 * Defences against hostile clients: at most HTTP_MAX_CONNS connections,
 * HTTP_CONN_TIMEOUT_S seconds of inactivity, HTTP_CONN_MEMORY bytes of
 * libmicrohttpd pool memory per connection (request line + headers; larger
 * requests are refused by libmicrohttpd itself), HTTP_MAX_BODY bytes of
 * body.  Worst-case body memory is HTTP_MAX_CONNS * HTTP_MAX_BODY (64 MiB).
 * The URL unescaper keeps "%00" literal so a path can never be truncated
 * by an embedded NUL into a route name ("/metrics%00x" is not "/metrics").
 *
 * HEAD requests are served by GET routes (libmicrohttpd omits the body),
 * and the Allow header of a 405 names HEAD next to GET.
 *
 * Handler errors: a handler returning non-zero yields 500 with a JSON
 * {"error": lv_strerror(rc)} body; a handler-chosen status (any 100..599)
 * is passed through unchanged.
 *
 * Client design
 * -------------
 * http_get()/http_post() use one curl easy handle per call with a
 * HTTP_CLIENT_TIMEOUT_S total timeout, no proxy, no redirects, and collect
 * the body into a malloc'ed, NUL-terminated buffer of at most
 * HTTP_CLIENT_MAX_BODY bytes.  Any HTTP status counts as success (0; the
 * caller inspects *status); transport failures are LV_ENET, with curl's
 * message logged at LV_DEBUG so callers decide what the user sees.
 */
#include "base/http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/lv.h"
#include "base/lvlog.h"

#define HTTP_POOL_THREADS 2                 /* libmicrohttpd worker threads */
#define HTTP_MAX_CONNS 64                   /* concurrent connections */
#define HTTP_CONN_TIMEOUT_S 30              /* idle seconds before a connection is closed */
#define HTTP_CONN_MEMORY (64u * 1024)       /* MHD pool per connection (request line, headers) */
#define HTTP_DISCARD_MAX (4u * HTTP_MAX_BODY) /* discarded body bytes before we hang up */
#define HTTP_CLIENT_TIMEOUT_S 10L           /* whole-request timeout of http_get/http_post */
#define HTTP_CLIENT_CONNECT_TIMEOUT_S 5L    /* connect phase timeout */
#define HTTP_CLIENT_MAX_BODY (256u << 20)   /* largest response body the client accepts */

#ifdef MHD_HTTP_CONTENT_TOO_LARGE
#define HTTP_STATUS_TOO_LARGE MHD_HTTP_CONTENT_TOO_LARGE /* 413 */
#else
#define HTTP_STATUS_TOO_LARGE MHD_HTTP_PAYLOAD_TOO_LARGE
#endif

/* One registered route.  Immutable once linked into http_server.routes. */
struct http_route_ent {
    char *method;                  /* "GET", "POST", ... (owned) */
    char *path;                    /* exact path, e.g. "/metrics" (owned) */
    http_handler_fn fn;            /* handler */
    void *ctx;                     /* handler context (borrowed) */
    struct http_route_ent *next;   /* next route, in registration order */
};

struct http_server {
    char *addr;                    /* address as given to http_new, for logs (owned) */
    struct sockaddr_storage sa;    /* parsed listen address */
    int ipv6;                      /* 1 if sa is AF_INET6 */
    struct http_route_ent *routes; /* route list; written only before http_start */
    struct http_route_ent **tail;  /* where the next route is linked */
    struct MHD_Daemon *mhd;        /* running daemon, NULL before http_start / after failure */
    pthread_mutex_t err_lock;      /* guards last_err, and conn_fds */
    char last_err[256];            /* last libmicrohttpd error message (for http_start) */
    int conn_fds[HTTP_MAX_CONNS + 8]; /* open client sockets, -1 when free (err_lock) */
};

/* Per-request state, libmicrohttpd's *con_cls; freed by request_done_cb. */
struct http_conn {
    const struct http_route_ent *route; /* matched route; NULL once answered early */
    int answered;                  /* 1 if a response was queued on the first call */
    int too_large;                 /* body exceeded HTTP_MAX_BODY */
    char *buf;                     /* body bytes, NUL-terminated past len (owned) */
    size_t len;                    /* body bytes held */
    size_t cap;                    /* bytes allocated in buf */
    size_t discarded;              /* body bytes dropped after too_large was set */
};

/* ---- address parsing ------------------------------------------------ */

/* Parse "host:port" / "[v6]:port" into *ss.  0 or LV_EINVAL. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, int *ipv6)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_s, *colon;
    size_t hlen;
    unsigned long port = 0;
    int is6 = 0;

    if (addr == NULL || *addr == '\0')
        return LV_EINVAL;
    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (rb == NULL || rb[1] != ':')
            return LV_EINVAL;
        hlen = (size_t)(rb - addr - 1);
        if (hlen == 0 || hlen >= sizeof(host))
            return LV_EINVAL;
        memcpy(host, addr + 1, hlen);
        port_s = rb + 2;
        is6 = 1;
    } else {
        colon = strchr(addr, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return LV_EINVAL;  /* no port, or an unbracketed IPv6 literal */
        hlen = (size_t)(colon - addr);
        if (hlen == 0 || hlen >= sizeof(host))
            return LV_EINVAL;
        memcpy(host, addr, hlen);
        port_s = colon + 1;
    }
    host[hlen] = '\0';

    /* Port: 1..65535, decimal digits only. */
    if (*port_s == '\0' || strlen(port_s) > 5)
        return LV_EINVAL;
    for (const char *p = port_s; *p; p++) {
        if (*p < '0' || *p > '9')
            return LV_EINVAL;
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (port == 0 || port > 65535)
        return LV_EINVAL;

    memset(ss, 0, sizeof(*ss));
    if (is6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return LV_EINVAL;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (strcmp(host, "localhost") == 0)
            s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            return LV_EINVAL;
    }
    *ipv6 = is6;
    return 0;
}

/* ---- server: construction ------------------------------------------- */

int http_new(const char *addr, struct http_server **out)
{
    struct http_server *s;
    int rc;

    *out = NULL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return LV_ENOMEM;
    rc = parse_addr(addr, &s->sa, &s->ipv6);
    if (rc != 0) {
        LV_ERROR("http: invalid listen address '%s' (want host:port or [v6]:port, port 1-65535)",
                 addr ? addr : "(null)");
        goto out_free_s;
    }
    s->addr = strdup(addr);
    if (s->addr == NULL) {
        rc = LV_ENOMEM;
        goto out_free_s;
    }
    s->tail = &s->routes;
    pthread_mutex_init(&s->err_lock, NULL);
    for (size_t i = 0; i < sizeof s->conn_fds / sizeof s->conn_fds[0]; i++)
        s->conn_fds[i] = -1;
    *out = s;
    return 0;

out_free_s:
    free(s);
    return rc;
}

int http_route(struct http_server *s, const char *method, const char *path, http_handler_fn fn, void *ctx)
{
    struct http_route_ent *r;

    if (s->mhd != NULL) {
        LV_ERROR("http: route %s %s added after http_start", method, path);
        return LV_EINVAL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return LV_ENOMEM;
    r->method = strdup(method);
    r->path = strdup(path);
    if (r->method == NULL || r->path == NULL) {
        free(r->method);
        free(r->path);
        free(r);
        return LV_ENOMEM;
    }
    r->fn = fn;
    r->ctx = ctx;
    *s->tail = r;
    s->tail = &r->next;
    return 0;
}

/* ---- server: responses ---------------------------------------------- */

/* Queue a response.  body is malloc'ed and handed over (freed here or by
 * libmicrohttpd), or NULL.  allow: value of an Allow header, or NULL. */
static enum MHD_Result send_response(struct MHD_Connection *c, unsigned status, const char *ctype,
                                     char *body, size_t len, const char *allow)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    if (body != NULL)
        r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    else
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        free(body);
        return MHD_NO;  /* drops the connection */
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (allow != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Queue a JSON {"error": msg} response. */
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *msg,
                                  const char *allow)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    /* json_dumps allocates with malloc (jansson's default allocator), so the
     * MUST_FREE mode of send_response may free it. */
    return send_response(c, status, "application/json", body, body ? strlen(body) : 0, allow);
}

/* Does a route's method accept the request method?  HEAD is served by GET
 * routes (libmicrohttpd drops the body). */
static int method_matches(const char *route_m, const char *req_m)
{
    if (strcmp(route_m, req_m) == 0)
        return 1;
    return strcmp(req_m, "HEAD") == 0 && strcmp(route_m, "GET") == 0;
}

/* Send 405 listing the methods registered for path. */
static enum MHD_Result send_405(struct http_server *s, struct MHD_Connection *c, const char *path)
{
    char allow[256];
    size_t n = 0;

    allow[0] = '\0';
    for (const struct http_route_ent *r = s->routes; r; r = r->next) {
        if (strcmp(r->path, path) != 0)
            continue;
        int w = snprintf(allow + n, sizeof(allow) - n, "%s%s%s", n ? ", " : "", r->method,
                         strcmp(r->method, "GET") == 0 ? ", HEAD" : "");
        if (w < 0 || (size_t)w >= sizeof(allow) - n)
            break;
        n += (size_t)w;
    }
    return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", allow);
}

/* ---- server: libmicrohttpd callbacks -------------------------------- */

static const char *req_query(const struct http_request *r, const char *key)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)r->impl, MHD_GET_ARGUMENT_KIND, key);
}

/* Append body bytes to hc; sets too_large instead of growing past the cap. */
static int conn_append(struct http_conn *hc, const char *data, size_t n)
{
    if (hc->too_large || n > HTTP_MAX_BODY - hc->len) {
        hc->too_large = 1;
        hc->discarded += n;
        return 0;
    }
    if (hc->len + n + 1 > hc->cap) {
        size_t ncap = hc->cap ? hc->cap : 4096;
        while (ncap < hc->len + n + 1)
            ncap *= 2;
        if (ncap > HTTP_MAX_BODY + 1)
            ncap = HTTP_MAX_BODY + 1;
        char *nb = realloc(hc->buf, ncap);
        if (nb == NULL)
            return LV_ENOMEM;
        hc->buf = nb;
        hc->cap = ncap;
    }
    memcpy(hc->buf + hc->len, data, n);
    hc->len += n;
    hc->buf[hc->len] = '\0';
    return 0;
}

/* Run the route's handler and queue its response. */
static enum MHD_Result dispatch(struct MHD_Connection *c, struct http_conn *hc, const char *url,
                                const char *method)
{
    struct http_request req = {
        .method = method,
        .path = url,
        .query = req_query,
        .body = hc->buf,
        .body_len = hc->len,
        .impl = c,
    };
    struct http_response resp = { .status = 200, .content_type = NULL, .body = NULL, .body_len = 0 };
    int rc;

    rc = hc->route->fn(hc->route->ctx, &req, &resp);
    if (rc != 0) {
        LV_WARN("http: handler for %s %s failed: %s", method, url, lv_strerror(rc));
        free(resp.body);
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, lv_strerror(rc), NULL);
    }
    if (resp.status < 100 || resp.status > 599) {
        LV_WARN("http: handler for %s %s set invalid status %d", method, url, resp.status);
        free(resp.body);
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "invalid status from handler", NULL);
    }
    if (resp.body != NULL && resp.body_len == 0)
        resp.body_len = strlen(resp.body);
    return send_response(c, (unsigned)resp.status,
                         resp.content_type ? resp.content_type : "application/json",
                         resp.body, resp.body_len, NULL);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct http_server *s = cls;
    struct http_conn *hc = *con_cls;

    if (hc == NULL) {
        int path_known = 0;
        const char *cl;

        hc = calloc(1, sizeof(*hc));
        if (hc == NULL)
            return MHD_NO;
        *con_cls = hc;
        for (const struct http_route_ent *r = s->routes; r; r = r->next) {
            if (strcmp(r->path, url) != 0)
                continue;
            path_known = 1;
            if (method_matches(r->method, method)) {
                hc->route = r;
                break;
            }
        }
        if (!path_known) {
            hc->answered = 1;
            return send_error(c, MHD_HTTP_NOT_FOUND, "not found", NULL);
        }
        if (hc->route == NULL) {
            hc->answered = 1;
            return send_405(s, c, url);
        }
        cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno != 0 || end == cl || n > HTTP_MAX_BODY) {
                hc->answered = 1;
                return send_error(c, HTTP_STATUS_TOO_LARGE, "request body too large", NULL);
            }
        }
        return MHD_YES;
    }

    if (*upload_data_size != 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (hc->answered)
            return MHD_YES;  /* response already queued; drop the bytes */
        if (conn_append(hc, upload_data, n) != 0)
            return MHD_NO;
        if (hc->discarded > HTTP_DISCARD_MAX) {
            LV_WARN("http: %s %s: body far above %u bytes, closing connection", method, url,
                    HTTP_MAX_BODY);
            return MHD_NO;
        }
        return MHD_YES;
    }

    if (hc->answered)
        return MHD_YES;
    if (hc->too_large) {
        hc->answered = 1;
        return send_error(c, HTTP_STATUS_TOO_LARGE, "request body too large", NULL);
    }
    hc->answered = 1;
    return dispatch(c, hc, url, method);
}

static void request_done_cb(void *cls, struct MHD_Connection *c, void **con_cls,
                            enum MHD_RequestTerminationCode toe)
{
    struct http_conn *hc = *con_cls;

    if (hc == NULL)
        return;
    free(hc->buf);
    free(hc);
    *con_cls = NULL;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    return (ch | 0x20) - 'a' + 10;
}

/* Percent-decode s in place like libmicrohttpd's default, except that
 * "%00" stays literal: an embedded NUL would truncate the path. */
static size_t unescape_cb(void *cls, struct MHD_Connection *c, char *s)
{
    char *w = s;
    const char *r = s;

    while (*r) {
        if (r[0] == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
            int v = hexval(r[1]) << 4 | hexval(r[2]);
            if (v != 0) {
                *w++ = (char)v;
                r += 3;
                continue;
            }
        }
        *w++ = *r++;
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* Track open client sockets (MHD_OPTION_NOTIFY_CONNECTION), so that
 * http_free can shut them down: otherwise MHD_stop_daemon waits out the
 * connection timeout of idle or half-sent requests (30 s). */
static void conn_notify_cb(void *cls, struct MHD_Connection *c, void **socket_context,
                           enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *s = cls;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return;
    int fd = (int)ci->connect_fd;
    pthread_mutex_lock(&s->err_lock);
    for (size_t i = 0; i < sizeof s->conn_fds / sizeof s->conn_fds[0]; i++) {
        if (toe == MHD_CONNECTION_NOTIFY_STARTED && s->conn_fds[i] == -1) {
            s->conn_fds[i] = fd;
            break;
        }
        if (toe == MHD_CONNECTION_NOTIFY_CLOSED && s->conn_fds[i] == fd) {
            s->conn_fds[i] = -1;
            break;
        }
    }
    pthread_mutex_unlock(&s->err_lock);
}

/* libmicrohttpd's error log (MHD_USE_ERROR_LOG) -> LV_WARN; remembers the
 * last message so http_start can say why it failed. */
static void mhd_log_cb(void *cls, const char *fmt, va_list ap)
{
    struct http_server *s = cls;
    char msg[256];
    size_t n;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    LV_DEBUG("http %s: %s", s->addr, msg); /* per-request noise: a hostile client must not flood the log */
    pthread_mutex_lock(&s->err_lock);
    memcpy(s->last_err, msg, n + 1);
    pthread_mutex_unlock(&s->err_lock);
}

/* ---- server: lifecycle ---------------------------------------------- */

int http_start(struct http_server *s)
{
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    uint16_t port;

    if (s->mhd != NULL)
        return 0;
    if (s->ipv6)
        flags |= MHD_USE_IPv6;
    s->last_err[0] = '\0';
    /* The port argument is ignored with MHD_OPTION_SOCK_ADDR, but it is
     * the one libmicrohttpd names in its bind error message. */
    port = ntohs(s->ipv6 ? ((struct sockaddr_in6 *)&s->sa)->sin6_port
                         : ((struct sockaddr_in *)&s->sa)->sin_port);
    s->mhd = MHD_start_daemon(flags, port, NULL, NULL, access_cb, s,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log_cb, s, /* must come first */
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&s->sa,
                              MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTP_POOL_THREADS,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_CONNS,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_CONN_TIMEOUT_S,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
                              MHD_OPTION_NOTIFY_COMPLETED, request_done_cb, s,
                              MHD_OPTION_NOTIFY_CONNECTION, conn_notify_cb, s,
                              MHD_OPTION_UNESCAPE_CALLBACK, unescape_cb, s,
                              MHD_OPTION_END);
    if (s->mhd == NULL) {
        pthread_mutex_lock(&s->err_lock);
        LV_ERROR("http: cannot listen on %s: %s", s->addr,
                 s->last_err[0] ? s->last_err : "libmicrohttpd failed to start");
        pthread_mutex_unlock(&s->err_lock);
        return LV_EIO;
    }
    LV_INFO("http: listening on %s", s->addr);
    return 0;
}

void http_free(struct http_server *s)
{
    struct http_route_ent *r, *next;

    if (s == NULL)
        return;
    if (s->mhd != NULL) {
        /* Unblock idle and half-sent connections first (see conn_notify_cb). */
        pthread_mutex_lock(&s->err_lock);
        for (size_t i = 0; i < sizeof s->conn_fds / sizeof s->conn_fds[0]; i++)
            if (s->conn_fds[i] != -1)
                shutdown(s->conn_fds[i], SHUT_RDWR);
        pthread_mutex_unlock(&s->err_lock);
        MHD_stop_daemon(s->mhd);  /* joins the workers */
    }
    for (r = s->routes; r; r = next) {
        next = r->next;
        free(r->method);
        free(r->path);
        free(r);
    }
    pthread_mutex_destroy(&s->err_lock);
    free(s->addr);
    free(s);
}

/* ---- client ---------------------------------------------------------- */

/* Response body being collected by write_cb. */
struct http_sink {
    char *buf;      /* malloc'ed, NUL-terminated past len (owned until handed to caller) */
    size_t len;     /* bytes held */
    size_t cap;     /* bytes allocated */
    int too_big;    /* exceeded HTTP_CLIENT_MAX_BODY */
};

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_sink *k = userp;
    size_t n = size * nmemb;

    if (n > HTTP_CLIENT_MAX_BODY - k->len) {
        k->too_big = 1;
        return 0;  /* makes curl fail with CURLE_WRITE_ERROR */
    }
    if (k->len + n + 1 > k->cap) {
        size_t ncap = k->cap ? k->cap : 4096;
        while (ncap < k->len + n + 1)
            ncap *= 2;
        char *nb = realloc(k->buf, ncap);
        if (nb == NULL)
            return 0;
        k->buf = nb;
        k->cap = ncap;
    }
    memcpy(k->buf + k->len, data, n);
    k->len += n;
    k->buf[k->len] = '\0';
    return n;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Shared body of http_get/http_post; data == NULL means GET. */
static int http_request(const char *addr, const char *path, const void *data, size_t dlen,
                        char **body, size_t *len, long *status)
{
    struct http_sink sink = { 0 };
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE];
    char *url = NULL;
    CURL *h;
    CURLcode cc;
    long code = 0;
    int rc = LV_ENET;

    if (body)
        *body = NULL;
    if (len)
        *len = 0;
    if (status)
        *status = 0;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) {
        LV_DEBUG("http: curl_global_init: %s", curl_easy_strerror(curl_init_rc));
        return LV_ENET;
    }
    if (asprintf(&url, "http://%s%s%s", addr, path[0] == '/' ? "" : "/", path) < 0)
        return LV_ENOMEM;
    h = curl_easy_init();
    if (h == NULL) {
        rc = LV_ENOMEM;
        goto out_free_url;
    }
    errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, HTTP_CLIENT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, HTTP_CLIENT_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_PROXY, "");  /* ignore http_proxy: the daemon is not behind one */
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    if (data != NULL) {
        hdrs = curl_slist_append(hdrs, "Expect:");  /* no 100-continue round trip */
        if (hdrs == NULL) {
            rc = LV_ENOMEM;
            goto out_cleanup;
        }
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)dlen);
    }
    cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        LV_DEBUG("http: %s %s: %s", data ? "POST" : "GET", url,
                 sink.too_big ? "response body too large" : errbuf[0] ? errbuf : curl_easy_strerror(cc));
        rc = LV_ENET;
        goto out_free_sink;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (status)
        *status = code;
    if (len)
        *len = sink.len;
    if (body) {
        if (sink.buf == NULL) {
            sink.buf = calloc(1, 1);  /* empty body: still a valid string */
            if (sink.buf == NULL) {
                rc = LV_ENOMEM;
                goto out_free_sink;
            }
        }
        *body = sink.buf;
        sink.buf = NULL;
    }
    rc = 0;

out_free_sink:
    free(sink.buf);
out_cleanup:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
out_free_url:
    free(url);
    return rc;
}

int http_get(const char *addr, const char *path, char **body, size_t *len, long *status)
{
    return http_request(addr, path, NULL, 0, body, len, status);
}

int http_post(const char *addr, const char *path, const void *data, size_t dlen,
              char **body, size_t *len, long *status)
{
    /* POSTFIELDS needs a non-NULL pointer even for an empty body. */
    return http_request(addr, path, data ? data : "", data ? dlen : 0, body, len, status);
}
