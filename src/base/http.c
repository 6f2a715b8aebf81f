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
 * libmicrohttpd runs one thread per connection (both listeners) and calls
 * access_cb() several times per request:
 *   1. first call, *con_cls == NULL, headers parsed, no body yet.  We
 *      allocate a struct http_conn, resolve the route and answer at once
 *      with 404 (no route for the path), 405 (path known, method not; the
 *      Allow header lists the route's methods), 401 (the route needs the
 *      token and the request lacks it, see "Authentication") or 413
 *      (Content-Length above HTTP_MAX_BODY).  Answering here means the body
 *      is never read; libmicrohttpd then closes the connection after the
 *      response.
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
 * Listeners.  Both kinds run one thread per connection, at most
 * s->lim.max_conns of them, so a long handler (an image), a held
 * connection or a long-lived stream (a replica following the primary)
 * delays no one else; idle connections cost a blocked thread each, within
 * the same bound.  A TCP server (addr "host:port") may speak TLS
 * (http_set_tls: GnuTLS inside libmicrohttpd, certificate and key PEM read
 * into memory before the start).  A Unix-socket server (addr an absolute
 * path) has its socket bound, chmod'ed 0600 and only then listen()ed, so
 * no other user can ever connect (connect(2) needs write permission).
 *
 * Authentication.  s->token (http_set_token; NULL: none) guards the routes
 * whose class requires it: HTTP_R_PRIVATE always, HTTP_R_PUBLIC only when
 * s->public_open is 0.  The check runs on access_cb's first call, after
 * the route is known (an unknown path is a 404 either way) and before any
 * body byte is read.  The request's "Authorization: Bearer <token>" is
 * compared with token_equal, whose time depends only on the length of the
 * configured token, never on where the first difference is.  A failure is
 * 401 with "WWW-Authenticate: Bearer realm=\"litevault\""; it is logged
 * with the client's address at most once per HTTP_AUTH_WARN_US (a hostile
 * client must not flood the log), never with the token sent or expected.
 *
 * Connection table and header timeout.  conn_notify_cb records every open
 * client socket in s->conns (under s->lock) with a deadline: the time by
 * which its request head must be complete.  access_cb's first call for a
 * request (the head is parsed) clears it; request_done_cb sets it again
 * (a keep-alive connection must start its next request in time).  The
 * watchdog worker, twice a second, shuts down (SHUT_RDWR) the socket of
 * every connection past its deadline; libmicrohttpd then sees EOF and
 * closes it.  Invariants:
 *   H1. An fd is in s->conns only between the STARTED and CLOSED
 *       notifications, so a shutdown under s->lock never hits a reused fd.
 *   H2. A connection with deadline 0 is inside a request (never dropped by
 *       the watchdog; the inactivity timeout still applies while it reads).
 *   H3. hold_done of a response runs exactly once: from hold_free, the
 *       content reader's free callback, or at once when no response exists.
 *   H4. stream_free of a response runs exactly once, likewise (stream_done).
 *   H5. s->token and the TLS key are written only before http_start and
 *       wiped at http_free; no message ever contains them.
 *
 * Streams.  A handler may hand over a stream (struct http_response
 * .stream_fn): a content-reader response of unknown size (chunked), whose
 * reader stream_read calls stream_fn on the connection's own thread.  A 0
 * from stream_fn ("nothing yet") is not returned to libmicrohttpd (which
 * would call again at once, spinning): stream_read waits up to
 * HTTP_STREAM_NAP_MS for the client to hang up (POLLRDHUP) and calls
 * again, ending the stream when the client is gone or the server stops.
 * A streaming connection has no idle timeout (a replica that stops reading
 * while its readers hold locks must not be cut), but TCP keep-alive probes
 * (HTTP_KEEPALIVE_*) find a vanished peer.  stream_free runs exactly once
 * (H4): from the response's free callback, or at once when no response
 * could be made.
 *
 * Holds.  A handler may ask to hold the connection after its body
 * (struct http_response.hold_done, Unix servers only).  The response is
 * then a content-reader response: hold_read returns the body, then blocks
 * (this connection's own thread) polling the socket until the client hangs
 * up or the server stops, and ends the stream; hold_free runs hold_done.
 *
 * Stopping (http_free).  The stopping flag ends streams, holds and long
 * waits; then, for at most HTTP_DRAIN_US, http_free waits while a
 * connection is inside a request that is not a stream (H2), so that an
 * answer being computed or sent goes out (a daemon that stops because of
 * the request, as a hand-over does, still answers it); then it shuts down
 * every socket and stops libmicrohttpd.

 * Defences against hostile clients: at most s->lim.max_conns connections
 * (libmicrohttpd closes one beyond at once, unanswered: with a thread per
 * connection it polls its listening socket all the time),
 * s->lim.per_addr per client address (TCP), the header timeout above,
 * HTTP_CONN_TIMEOUT_S seconds of inactivity (not while streaming), HTTP_CONN_MEMORY bytes of
 * libmicrohttpd pool memory per connection (request line + headers; larger
 * requests are refused by libmicrohttpd itself), HTTP_MAX_BODY bytes of
 * body.  Worst-case body memory is max_conns * HTTP_MAX_BODY (64 MiB by default).
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
 * http_get()/http_get_ex()/http_post() use one curl easy handle per call with a
 * HTTP_CLIENT_TIMEOUT_S total timeout, no proxy, no redirects, and collect
 * the body into a malloc'ed, NUL-terminated buffer of at most
 * HTTP_CLIENT_MAX_BODY bytes.  An addr starting with '/' is a Unix socket
 * (CURLOPT_UNIX_SOCKET_PATH).  Any HTTP status counts as success (0; the
 * caller inspects *status); a timeout is LV_EBUSY, other transport failures
 * LV_ENET, with curl's message logged at LV_DEBUG so callers decide what
 * the user sees.  http_post_hold speaks HTTP/1.0 over a raw Unix socket,
 * because the caller must keep the connection open after the reply.
 * http_client_setup gives other libcurl users (the replica) the same
 * token header and CA handling as http_get_ex.
 */
#include "base/http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/worker.h"

#define HTTP_MAX_CONNS 64                   /* default concurrent connections */
#define HTTP_HEADER_TIMEOUT_S 10            /* default seconds to send a request head */
#define HTTP_WATCH_US 500000                /* watchdog period */
#define HTTP_DRAIN_US 2000000               /* http_free waits this long at most for requests in progress */
#define HTTP_CONN_SLOTS 1024                /* size of the connection table (>= max_conns) */
#define HTTP_CONN_TIMEOUT_S 30              /* idle seconds before a connection is closed */
#define HTTP_CONN_MEMORY (64u * 1024)       /* MHD pool per connection (request line, headers) */
#define HTTP_DISCARD_MAX (4u * HTTP_MAX_BODY) /* discarded body bytes before we hang up */
#define HTTP_CLIENT_TIMEOUT_S 10L           /* whole-request timeout of http_get/http_post */
#define HTTP_CLIENT_CONNECT_TIMEOUT_S 5L    /* connect phase timeout */
#define HTTP_CLIENT_MAX_BODY (256u << 20)   /* largest response body the client accepts */
#define HTTP_STREAM_NAP_MS 10               /* wait after a stream_fn's "nothing yet" */
#define HTTP_STREAM_BLOCK (64u * 1024)      /* content-reader block of a stream */
#define HTTP_KEEPALIVE_IDLE_S 30            /* streaming connections: first keep-alive probe */
#define HTTP_KEEPALIVE_INTVL_S 10           /* ... between probes */
#define HTTP_KEEPALIVE_CNT 3                /* ... unanswered probes before the peer is dead */
#define HTTP_AUTH_WARN_US (60LL * 1000000)  /* at most one 401 warning per minute */
#define HTTP_TOKEN_MAX 4096                 /* longest token accepted by http_set_token */

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
    unsigned flags;                /* HTTP_R_PUBLIC or HTTP_R_PRIVATE */
    struct http_route_ent *next;   /* next route, in registration order */
};

/* One open client socket (s->conns, under s->lock). */
struct http_connslot {
    int fd;                        /* client socket, -1 when the slot is free */
    int64_t deadline_us;           /* lv_mono_us by which the request head must be in; 0: in a request (H2) */
    int streaming;                 /* its response is a stream (http_free does not wait for it) */
};

struct http_server {
    char *addr;                    /* address as given to http_new, for logs (owned) */
    struct sockaddr_storage sa;    /* parsed listen address (TCP) */
    int ipv6;                      /* 1 if sa is AF_INET6 */
    int is_unix;                   /* 1: addr is a Unix socket path */
    int lfd;                       /* our listening Unix socket, -1 if none (MHD closes it) */
    struct http_limits lim;        /* limits, defaults filled in */
    struct worker *watch;          /* header-timeout watchdog, NULL when not running */
    volatile int stopping;         /* http_free began: holds end */
    struct http_route_ent *routes; /* route list; written only before http_start */
    struct http_route_ent **tail;  /* where the next route is linked */
    struct MHD_Daemon *mhd;        /* running daemon, NULL before http_start / after failure */
    char *token;                   /* required bearer token (owned, wiped at free; H5), NULL: none */
    size_t token_len;              /* strlen(token) */
    int public_open;               /* 1: HTTP_R_PUBLIC routes need no token */
    char *tls_cert;                /* PEM certificate chain (owned), NULL: plain HTTP */
    char *tls_key;                 /* PEM private key (owned, wiped at free; H5) */
    size_t tls_key_len;            /* bytes in tls_key */
    int64_t auth_warn_us;          /* lv_mono_us of the last 401 warning (err_lock) */
    unsigned auth_failed;          /* 401s since that warning (err_lock) */
    pthread_mutex_t err_lock;      /* guards last_err, and conns */
    char last_err[256];            /* last libmicrohttpd error message (for http_start) */
    struct http_connslot conns[HTTP_CONN_SLOTS]; /* open client sockets (err_lock; H1) */
};

/* Per-request state, libmicrohttpd's *con_cls; freed by request_done_cb. */
struct http_conn {
    const struct http_route_ent *route; /* matched route; NULL once answered early */
    int answered;                  /* 1 if a response was queued on the first call */
    int streamed;                  /* 1 if the response is a stream (its connection has no idle timeout) */
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
    s->lfd = -1;
    if (addr != NULL && addr[0] == '/') {
        s->is_unix = 1;
        rc = strlen(addr) < sizeof(((struct sockaddr_un *)0)->sun_path) ? 0 : LV_EINVAL;
        if (rc != 0) {
            LV_ERROR("http: Unix socket path %s is too long (at most %zu bytes); use a shorter data.dir", addr,
                     sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            goto out_free_s;
        }
    } else
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
    for (size_t i = 0; i < HTTP_CONN_SLOTS; i++)
        s->conns[i].fd = -1;
    s->lim = (struct http_limits){HTTP_MAX_CONNS, 0, HTTP_HEADER_TIMEOUT_S};
    s->public_open = 1;
    *out = s;
    return 0;

out_free_s:
    free(s);
    return rc;
}

int http_set_limits(struct http_server *s, const struct http_limits *l)
{
    if (s->mhd != NULL)
        return LV_EINVAL;
    s->lim.max_conns = l->max_conns ? l->max_conns : HTTP_MAX_CONNS;
    if (s->lim.max_conns > HTTP_CONN_SLOTS - 8)
        s->lim.max_conns = HTTP_CONN_SLOTS - 8;
    s->lim.per_addr = l->per_addr;
    s->lim.header_timeout_s = l->header_timeout_s ? l->header_timeout_s : HTTP_HEADER_TIMEOUT_S;
    return 0;
}

int http_route_ex(struct http_server *s, const char *method, const char *path, http_handler_fn fn, void *ctx,
                  unsigned flags)
{
    struct http_route_ent *r;

    if (flags != HTTP_R_PUBLIC && flags != HTTP_R_PRIVATE) {
        LV_ERROR("http: route %s %s: bad class flags %#x", method, path, flags);
        return LV_EINVAL;
    }
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
    r->flags = flags;
    *s->tail = r;
    s->tail = &r->next;
    return 0;
}

int http_route(struct http_server *s, const char *method, const char *path, http_handler_fn fn, void *ctx)
{
    return http_route_ex(s, method, path, fn, ctx, HTTP_R_PUBLIC);
}

/* Overwrite n bytes at p in a way the compiler keeps (H5). */
static void wipe(void *p, size_t n)
{
    if (p != NULL)
        explicit_bzero(p, n);
}

int http_set_token(struct http_server *s, const char *token)
{
    char *t = NULL;
    size_t n = token ? strlen(token) : 0;

    if (s->mhd != NULL || n > HTTP_TOKEN_MAX)
        return LV_EINVAL;
    if (n > 0 && (t = strdup(token)) == NULL)
        return LV_ENOMEM;
    wipe(s->token, s->token_len);
    free(s->token);
    s->token = t;
    s->token_len = n;
    return 0;
}

int http_set_public(struct http_server *s, int open)
{
    if (s->mhd != NULL)
        return LV_EINVAL;
    s->public_open = open != 0;
    return 0;
}

int http_tls_supported(void)
{
    return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

/* Read the whole (small) file path into a malloc'ed, NUL-terminated buffer; *len its bytes.  0 or LV_EIO (logged). */
static int read_pem(const char *path, const char *what, char **out, size_t *len)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    int rc = LV_EIO;

    *out = NULL;
    if (f == NULL) {
        LV_ERROR("http: cannot open the TLS %s %s: %s", what, path, strerror(errno));
        return LV_EIO;
    }
    for (;;) {
        if (n + 4096 + 1 > cap) {
            char *nb;
            cap = cap ? cap * 2 : 16384;
            if (cap > (4u << 20) || (nb = realloc(buf, cap)) == NULL) {
                LV_ERROR("http: the TLS %s %s is too large (more than 4 MiB) or memory ran out", what, path);
                goto out;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(f)) {
        LV_ERROR("http: cannot read the TLS %s %s: %s", what, path, strerror(errno));
        goto out;
    }
    if (n == 0 || strstr(buf, "-----BEGIN ") == NULL) {
        buf[n] = '\0';
        LV_ERROR("http: the TLS %s %s is not a PEM file (no -----BEGIN line)", what, path);
        goto out;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
    rc = 0;
out:
    if (buf != NULL) {
        wipe(buf, cap);
        free(buf);
    }
    fclose(f);
    return rc;
}

int http_set_tls(struct http_server *s, const char *cert_file, const char *key_file)
{
    char *cert = NULL, *key = NULL;
    size_t clen = 0, klen = 0;
    int rc;

    if (s->mhd != NULL || s->is_unix) {
        LV_ERROR("http %s: TLS is only for a TCP server not yet started", s->addr);
        return LV_EINVAL;
    }
    if (!http_tls_supported()) {
        LV_ERROR("http %s: this libmicrohttpd was built without TLS support", s->addr);
        return LV_EINVAL;
    }
    rc = read_pem(cert_file, "certificate", &cert, &clen);
    if (rc == 0)
        rc = read_pem(key_file, "key", &key, &klen);
    if (rc != 0) {
        free(cert);
        return rc;
    }
    free(s->tls_cert);
    wipe(s->tls_key, s->tls_key_len);
    free(s->tls_key);
    s->tls_cert = cert;
    s->tls_key = key;
    s->tls_key_len = klen;
    return 0;
}

int http_addr_is_loopback(const char *addr)
{
    struct sockaddr_storage ss;
    int v6 = 0;

    if (addr == NULL || addr[0] == '/' || parse_addr(addr, &ss, &v6) != 0)
        return 0;
    if (!v6)
        return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a))
        return 1;
    return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
}

/* ---- server: responses ---------------------------------------------- */

/* Queue a response.  body is malloc'ed and handed over (freed here or by
 * libmicrohttpd), or NULL.  hname: an extra header (its value hval), or NULL. */
static enum MHD_Result send_response(struct MHD_Connection *c, unsigned status, const char *ctype,
                                     char *body, size_t len, const char *hname, const char *hval)
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
    if (hname != NULL)
        MHD_add_response_header(r, hname, hval);
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
    return send_response(c, status, "application/json", body, body ? strlen(body) : 0,
                         allow ? MHD_HTTP_HEADER_ALLOW : NULL, allow);
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

static const char *req_header(const struct http_request *r, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)r->impl, MHD_HEADER_KIND, name);
}

/* The client's address as "1.2.3.4:5678" or "[::1]:5678", or "local" (Unix socket), into buf. */
static void peer_str(struct MHD_Connection *c, char *buf, size_t n)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    char ip[INET6_ADDRSTRLEN] = "?";

    if (sa != NULL && sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        snprintf(buf, n, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        snprintf(buf, n, "[%s]:%u", ip, (unsigned)ntohs(s6->sin6_port));
    } else {
        snprintf(buf, n, "local");
    }
}

/* Does route r need the token on s? */
static int needs_token(const struct http_server *s, const struct http_route_ent *r)
{
    return s->token != NULL && ((r->flags & HTTP_R_PRIVATE) || !s->public_open);
}

/* want (wlen bytes, the secret) == got (glen bytes)?  The time taken
 * depends on wlen only, not on the position of the first difference. */
static int token_equal(const char *want, size_t wlen, const char *got, size_t glen)
{
    size_t diff = wlen ^ glen;

    for (size_t i = 0; i < wlen; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < glen ? got[i] : 0);
    return diff == 0;
}

/* Check c's "Authorization: Bearer <token>" against s->token.  0 if it
 * matches; else the reason (static text, never the token) in *why. */
static int check_token(const struct http_server *s, struct MHD_Connection *c, const char **why)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    size_t n;

    if (v == NULL) {
        *why = "no Authorization header";
        return LV_EPERM;
    }
    if (strncasecmp(v, "Bearer", 6) != 0 || (v[6] != ' ' && v[6] != '\t')) {
        *why = "the Authorization header is not \"Bearer <token>\"";
        return LV_EPERM;
    }
    v += 6;
    while (*v == ' ' || *v == '\t')
        v++;
    n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (!token_equal(s->token, s->token_len, v, n)) {
        *why = "wrong token";
        return LV_EPERM;
    }
    return 0;
}

/* Answer 401 (WWW-Authenticate: Bearer) and warn, at most once per HTTP_AUTH_WARN_US. */
static enum MHD_Result send_401(struct http_server *s, struct MHD_Connection *c, const char *method, const char *url,
                                const char *why)
{
    int64_t now = lv_mono_us();
    unsigned count = 0;
    char peer[INET6_ADDRSTRLEN + 16];
    json_t *o;
    char *body;

    pthread_mutex_lock(&s->err_lock);
    s->auth_failed++;
    if (s->auth_warn_us == 0 || now - s->auth_warn_us >= HTTP_AUTH_WARN_US) {
        count = s->auth_failed;
        s->auth_failed = 0;
        s->auth_warn_us = now;
    }
    pthread_mutex_unlock(&s->err_lock);
    if (count) {
        peer_str(c, peer, sizeof peer);
        LV_WARN("http %s: refused %s %s from %s with 401: %s; clients must send \"Authorization: Bearer "
                "<http.token>\" (%u refused since the previous such warning, at most one a minute)",
                s->addr, method, url, peer, why, count);
    }
    o = json_pack("{s:s}", "error", "this route needs the token: send the header Authorization: Bearer <http.token>");
    body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return send_response(c, MHD_HTTP_UNAUTHORIZED, "application/json", body, body ? strlen(body) : 0,
                         MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"litevault\"");
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

/* A held response (see "Holds"): its body, the client socket, what to run at the end. */
struct http_hold {
    struct http_server *s;         /* the server (its stopping flag) */
    int fd;                        /* the connection's socket (libmicrohttpd's) */
    char *body;                    /* body bytes (owned) */
    size_t len;                    /* bytes in body */
    void (*done)(void *arg);       /* hold_done */
    void *arg;                     /* its argument */
};

/* Content reader of a held response: the body, then wait for the client to hang up. */
static ssize_t hold_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct http_hold *h = cls;

    if (pos < h->len) {
        size_t n = h->len - (size_t)pos < max ? h->len - (size_t)pos : max;
        memcpy(buf, h->body + pos, n);
        return (ssize_t)n;
    }
    while (!h->s->stopping) {
        struct pollfd p = {.fd = h->fd, .events = POLLIN | POLLRDHUP};
        int n = poll(&p, 1, 200);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
            break;
        if (n > 0 && (p.revents & POLLIN)) {
            char c;
            if (recv(h->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
                break; /* EOF */
            break;     /* the client talks again: a hold ends with its request */
        }
    }
    return MHD_CONTENT_READER_END_OF_STREAM;
}

/* Free callback of a held response: runs hold_done (H3). */
static void hold_free(void *cls)
{
    struct http_hold *h = cls;

    h->done(h->arg);
    free(h->body);
    free(h);
}

/* Queue a held response (resp->hold_done set).  Ownership of resp->body
 * and hold_arg passes here whatever happens (H3). */
static enum MHD_Result send_held(struct MHD_Connection *c, struct http_server *s, struct http_response *resp)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct http_hold *h = calloc(1, sizeof *h);
    struct MHD_Response *r = NULL;
    enum MHD_Result ret;

    if (h == NULL || ci == NULL || !s->is_unix) {
        if (!s->is_unix)
            LV_ERROR("http %s: a hold response needs a Unix-socket server", s->addr);
        free(h);
        free(resp->body);
        resp->hold_done(resp->hold_arg);
        return MHD_NO;
    }
    *h = (struct http_hold){s, (int)ci->connect_fd, resp->body, resp->body_len, resp->hold_done, resp->hold_arg};
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, hold_read, h, hold_free);
    if (r == NULL) {
        hold_free(h);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type ? resp->content_type : "application/json");
    ret = MHD_queue_response(c, (unsigned)resp->status, r);
    MHD_destroy_response(r); /* hold_free runs when the connection lets go of it */
    return ret;
}

/* A streamed response (see "Streams"): the handler's stream and the client socket. */
struct http_stream {
    struct http_server *s;         /* the server (its stopping flag) */
    int fd;                        /* the connection's socket (libmicrohttpd's) */
    long (*fn)(void *arg, char *buf, size_t max); /* stream_fn */
    void (*free_fn)(void *arg);    /* stream_free, or NULL */
    void *arg;                     /* their argument */
};

/* Content reader of a stream: stream_fn's bytes; its "nothing yet" waits here (see "Streams"). */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct http_stream *st = cls;

    LV_UNUSED(pos);
    while (!st->s->stopping) {
        long n = st->fn(st->arg, buf, max);
        if (n > 0) {
            LV_ASSERT((size_t)n <= max);
            return (ssize_t)((size_t)n <= max ? (size_t)n : max);
        }
        if (n == HTTP_STREAM_END)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (n < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        struct pollfd p = {.fd = st->fd, .events = POLLRDHUP}; /* not POLLIN: pipelined bytes must not spin us */
        int r = poll(&p, 1, HTTP_STREAM_NAP_MS);
        if (r < 0 && errno != EINTR)
            break;
        if (r > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
            break; /* the client hung up */
    }
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

/* Free callback of a stream: runs stream_free (H4). */
static void stream_done(void *cls)
{
    struct http_stream *st = cls;

    if (st->free_fn != NULL)
        st->free_fn(st->arg);
    free(st);
}

/* Queue a streamed response (resp->stream_fn set).  The stream is handed
 * over here whatever happens (H4). */
static enum MHD_Result send_stream(struct MHD_Connection *c, struct http_server *s, struct http_conn *hc,
                                   struct http_response *resp)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct http_stream *st = calloc(1, sizeof *st);
    struct MHD_Response *r;
    enum MHD_Result ret;
    int on = 1, idle = HTTP_KEEPALIVE_IDLE_S, intvl = HTTP_KEEPALIVE_INTVL_S, cnt = HTTP_KEEPALIVE_CNT;

    free(resp->body);
    resp->body = NULL;
    if (st == NULL || ci == NULL) {
        free(st);
        if (resp->stream_free != NULL)
            resp->stream_free(resp->stream_arg);
        return MHD_NO;
    }
    *st = (struct http_stream){s, (int)ci->connect_fd, resp->stream_fn, resp->stream_free, resp->stream_arg};
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, HTTP_STREAM_BLOCK, stream_read, st, stream_done);
    if (r == NULL) {
        stream_done(st);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            resp->content_type ? resp->content_type : "application/octet-stream");
    if (!s->is_unix) {
        setsockopt(st->fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
        setsockopt(st->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        setsockopt(st->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        setsockopt(st->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u); /* no idle timeout while streaming */
    hc->streamed = 1;
    pthread_mutex_lock(&s->err_lock);
    for (size_t i = 0; i < HTTP_CONN_SLOTS; i++)
        if (s->conns[i].fd == st->fd)
            s->conns[i].streaming = 1;
    pthread_mutex_unlock(&s->err_lock);
    ret = MHD_queue_response(c, (unsigned)resp->status, r);
    MHD_destroy_response(r); /* stream_done runs when the connection lets go of it */
    return ret;
}

/* Run the route's handler and queue its response. */
static enum MHD_Result dispatch(struct http_server *s, struct MHD_Connection *c, struct http_conn *hc,
                                const char *url, const char *method)
{
    char peer[INET6_ADDRSTRLEN + 16];
    struct http_request req = {
        .method = method,
        .path = url,
        .query = req_query,
        .header = req_header,
        .peer = peer,
        .body = hc->buf,
        .body_len = hc->len,
        .impl = c,
    };
    struct http_response resp = { .status = 200, .content_type = NULL, .body = NULL, .body_len = 0 };
    int rc, bad_status;

    peer_str(c, peer, sizeof peer);
    rc = hc->route->fn(hc->route->ctx, &req, &resp);
    bad_status = rc == 0 && (resp.status < 100 || resp.status > 599);
    if ((rc != 0 || bad_status) && resp.hold_done != NULL) {
        resp.hold_done(resp.hold_arg); /* H3: a failed handler's hold ends at once */
        resp.hold_done = NULL;
    }
    if ((rc != 0 || bad_status) && resp.stream_fn != NULL && resp.stream_free != NULL)
        resp.stream_free(resp.stream_arg); /* H4: likewise its stream */
    if (rc != 0) {
        LV_WARN("http: handler for %s %s failed: %s", method, url, lv_strerror(rc));
        free(resp.body);
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, lv_strerror(rc), NULL);
    }
    if (bad_status) {
        LV_WARN("http: handler for %s %s set invalid status %d", method, url, resp.status);
        free(resp.body);
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "invalid status from handler", NULL);
    }
    if (resp.stream_fn != NULL)
        return send_stream(c, s, hc, &resp);
    if (resp.body != NULL && resp.body_len == 0)
        resp.body_len = strlen(resp.body);
    if (resp.hold_done != NULL)
        return send_held(c, s, &resp);
    return send_response(c, (unsigned)resp.status,
                         resp.content_type ? resp.content_type : "application/json",
                         resp.body, resp.body_len, NULL, NULL);
}

/* Set the header deadline of c's socket: now + header timeout, or 0 (in a request). */
static void conn_deadline(struct http_server *s, struct MHD_Connection *c, int in_request)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int64_t d = in_request ? 0 : lv_mono_us() + (int64_t)s->lim.header_timeout_s * 1000000;

    if (ci == NULL)
        return;
    pthread_mutex_lock(&s->err_lock);
    for (size_t i = 0; i < HTTP_CONN_SLOTS; i++)
        if (s->conns[i].fd == (int)ci->connect_fd) {
            s->conns[i].deadline_us = d;
            s->conns[i].streaming = 0; /* a new request (or none yet) on the connection */
            break;
        }
    pthread_mutex_unlock(&s->err_lock);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct http_server *s = cls;
    struct http_conn *hc = *con_cls;

    if (hc == NULL) {
        int path_known = 0;
        const char *cl, *why = NULL;

        hc = calloc(1, sizeof(*hc));
        if (hc == NULL)
            return MHD_NO;
        *con_cls = hc;
        conn_deadline(s, c, 1); /* the head is in (H2) */
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
        if (needs_token(s, hc->route) && check_token(s, c, &why) != 0) {
            hc->answered = 1;
            return send_401(s, c, method, url, why);
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
    return dispatch(s, c, hc, url, method);
}

static void request_done_cb(void *cls, struct MHD_Connection *c, void **con_cls,
                            enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct http_conn *hc = *con_cls;

    LV_UNUSED(toe);
    if (hc == NULL)
        return;
    conn_deadline(s, c, 0); /* a keep-alive connection must send its next head in time */
    if (hc->streamed) /* the stream is over: the idle timeout applies again */
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)HTTP_CONN_TIMEOUT_S);
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
    int64_t d = lv_mono_us() + (int64_t)s->lim.header_timeout_s * 1000000;
    pthread_mutex_lock(&s->err_lock);
    for (size_t i = 0; i < HTTP_CONN_SLOTS; i++) {
        if (toe == MHD_CONNECTION_NOTIFY_STARTED && s->conns[i].fd == -1) {
            s->conns[i] = (struct http_connslot){fd, d, 0};
            break;
        }
        if (toe == MHD_CONNECTION_NOTIFY_CLOSED && s->conns[i].fd == fd) {
            s->conns[i].fd = -1;
            break;
        }
    }
    pthread_mutex_unlock(&s->err_lock);
}

/* The header-timeout watchdog: drops connections past their deadline. */
static void watch_loop(struct worker *w, void *arg)
{
    struct http_server *s = arg;

    while (!worker_nap(w, HTTP_WATCH_US)) {
        int64_t now = lv_mono_us();
        unsigned dropped = 0;
        pthread_mutex_lock(&s->err_lock);
        for (size_t i = 0; i < HTTP_CONN_SLOTS; i++) {
            struct http_connslot *k = &s->conns[i];
            if (k->fd != -1 && k->deadline_us != 0 && now > k->deadline_us) {
                shutdown(k->fd, SHUT_RDWR); /* H1: still libmicrohttpd's fd */
                k->deadline_us = 0;
                dropped++;
            }
        }
        pthread_mutex_unlock(&s->err_lock);
        if (dropped)
            LV_DEBUG("http %s: dropped %u connection(s) that sent no complete request within %us", s->addr,
                     dropped, s->lim.header_timeout_s);
    }
}

/* Bind the Unix socket s->addr (replacing a stale one), 0600, listening.  0 or LV_EIO. */
static int unix_listen(struct http_server *s)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd;

    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", s->addr);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        LV_ERROR("http: socket(AF_UNIX) for %s: %s", s->addr, strerror(errno));
        return LV_EIO;
    }
    if (unlink(s->addr) != 0 && errno != ENOENT)
        LV_WARN("http: unlink %s: %s", s->addr, strerror(errno));
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        LV_ERROR("http: bind %s: %s", s->addr, strerror(errno));
        goto out_close;
    }
    /* Before listen(): nobody can connect yet, so no one else ever does. */
    if (chmod(s->addr, 0600) != 0) {
        LV_ERROR("http: chmod 0600 %s: %s", s->addr, strerror(errno));
        goto out_unlink;
    }
    if (listen(fd, 64) != 0) {
        LV_ERROR("http: listen %s: %s", s->addr, strerror(errno));
        goto out_unlink;
    }
    s->lfd = fd;
    return 0;

out_unlink:
    unlink(s->addr);
out_close:
    close(fd);
    return LV_EIO;
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

/* The options both listeners share (the admin socket and http.addr). */
#define HTTP_COMMON_OPTIONS(s)                                                                                      \
    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,             \
        (size_t)HTTP_CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, request_done_cb, (s), MHD_OPTION_NOTIFY_CONNECTION, \
        conn_notify_cb, (s), MHD_OPTION_UNESCAPE_CALLBACK, unescape_cb, (s)

/* The options of a TCP listener (http.addr), after the common ones. */
#define HTTP_TCP_OPTIONS(s)                                                                                         \
    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&(s)->sa, MHD_OPTION_CONNECTION_LIMIT, (s)->lim.max_conns,             \
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (s)->lim.per_addr, HTTP_COMMON_OPTIONS(s)

int http_start(struct http_server *s)
{
    /* One thread per connection (see "Listeners"); AUTO: poll(2), no FD_SETSIZE limit. */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    uint16_t port;

    if (s->mhd != NULL)
        return 0;
    if (s->ipv6)
        flags |= MHD_USE_IPv6;
    s->last_err[0] = '\0';
    if (s->is_unix) {
        if (unix_listen(s) != 0)
            return LV_EIO;
        s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, access_cb, s,
                                  MHD_OPTION_EXTERNAL_LOGGER, mhd_log_cb, s, /* must come first */
                                  MHD_OPTION_LISTEN_SOCKET, s->lfd,
                                  MHD_OPTION_CONNECTION_LIMIT, s->lim.max_conns,
                                  HTTP_COMMON_OPTIONS(s), MHD_OPTION_END);
        if (s->mhd == NULL) {
            close(s->lfd);
            unlink(s->addr);
        }
        s->lfd = -1; /* libmicrohttpd's now (closed by MHD_stop_daemon) */
    } else {
        /* The port argument is ignored with MHD_OPTION_SOCK_ADDR, but it is
         * the one libmicrohttpd names in its bind error message. */
        port = ntohs(s->ipv6 ? ((struct sockaddr_in6 *)&s->sa)->sin6_port
                             : ((struct sockaddr_in *)&s->sa)->sin_port);
        if (s->tls_key != NULL)
            s->mhd = MHD_start_daemon(flags | MHD_USE_TLS, port, NULL, NULL, access_cb, s,
                                      MHD_OPTION_EXTERNAL_LOGGER, mhd_log_cb, s, /* must come first */
                                      MHD_OPTION_HTTPS_MEM_KEY, s->tls_key, MHD_OPTION_HTTPS_MEM_CERT, s->tls_cert,
                                      HTTP_TCP_OPTIONS(s), MHD_OPTION_END);
        else
            s->mhd = MHD_start_daemon(flags, port, NULL, NULL, access_cb, s,
                                      MHD_OPTION_EXTERNAL_LOGGER, mhd_log_cb, s, /* must come first */
                                      HTTP_TCP_OPTIONS(s), MHD_OPTION_END);
    }
    if (s->mhd != NULL && worker_start("lv-http-watch", watch_loop, s, &s->watch) != 0) {
        MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
        if (s->is_unix)
            unlink(s->addr);
    }
    if (s->mhd == NULL) {
        pthread_mutex_lock(&s->err_lock);
        LV_ERROR("http: cannot listen on %s: %s", s->addr,
                 s->last_err[0] ? s->last_err : "libmicrohttpd failed to start");
        pthread_mutex_unlock(&s->err_lock);
        return LV_EIO;
    }
    LV_INFO("http: listening on %s%s%s", s->addr, s->tls_key ? " (HTTPS)" : "",
            s->token == NULL ? "" : s->public_open ? " (token required on private routes)" : " (token required)");
    return 0;
}

void http_free(struct http_server *s)
{
    struct http_route_ent *r, *next;

    if (s == NULL)
        return;
    worker_stop(s->watch);
    if (s->mhd != NULL) {
        /* Streams and long waits end (stopping); a request whose handler is
         * running or whose answer is being sent finishes first, for at most
         * HTTP_DRAIN_US (a daemon that stops because of a request, as a
         * hand-over does, still answers it); then idle, half-sent and held
         * connections are unblocked (see conn_notify_cb). */
        s->stopping = 1;
        for (int64_t end = lv_mono_us() + HTTP_DRAIN_US; lv_mono_us() < end;) {
            int busy = 0;
            pthread_mutex_lock(&s->err_lock);
            for (size_t i = 0; i < HTTP_CONN_SLOTS && !busy; i++)
                busy = s->conns[i].fd != -1 && s->conns[i].deadline_us == 0 && !s->conns[i].streaming; /* H2 */
            pthread_mutex_unlock(&s->err_lock);
            if (!busy)
                break;
            usleep(5000);
        }
        pthread_mutex_lock(&s->err_lock);
        for (size_t i = 0; i < HTTP_CONN_SLOTS; i++)
            if (s->conns[i].fd != -1)
                shutdown(s->conns[i].fd, SHUT_RDWR);
        pthread_mutex_unlock(&s->err_lock);
        MHD_stop_daemon(s->mhd);  /* joins the workers */
        if (s->is_unix && unlink(s->addr) != 0 && errno != ENOENT)
            LV_WARN("http: unlink %s: %s", s->addr, strerror(errno));
    }
    for (r = s->routes; r; r = next) {
        next = r->next;
        free(r->method);
        free(r->path);
        free(r);
    }
    wipe(s->token, s->token_len); /* H5 */
    free(s->token);
    wipe(s->tls_key, s->tls_key_len);
    free(s->tls_key);
    free(s->tls_cert);
    pthread_mutex_destroy(&s->err_lock);
    free(s->addr);
    free(s);
}

/* ---- client ---------------------------------------------------------- */

size_t http_sink_write(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_sink *k = userp;
    size_t n = size * nmemb, max = k->max ? k->max : HTTP_CLIENT_MAX_BODY;

    if (k->len > max || n > max - k->len) {
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

int http_client_setup(CURL *c, const char *token, const char *ca_file, struct curl_slist **hdrs)
{
    int rc = 0;

    if (token != NULL && *token != '\0') {
        size_t n = strlen(token) + sizeof "Authorization: Bearer ";
        char *h = malloc(n);
        struct curl_slist *nl = NULL;
        if (h != NULL) {
            snprintf(h, n, "Authorization: Bearer %s", token);
            nl = curl_slist_append(*hdrs, h); /* copies h */
            wipe(h, n);
            free(h);
        }
        if (nl == NULL)
            return LV_ENOMEM;
        *hdrs = nl;
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    }
    if (ca_file != NULL && *ca_file != '\0')
        curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0: the _STR forms */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    return rc;
}

/* Shared body of http_get/http_get_ex/http_post; data == NULL means GET; o may be NULL. */
static int http_request(const char *addr, const char *path, const void *data, size_t dlen,
                        const struct http_client_opts *o, char **body, size_t *len, long *status)
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
    if (asprintf(&url, "%s://%s%s%s", o && o->https && addr[0] != '/' ? "https" : "http",
                 addr[0] == '/' ? "localhost" : addr, path[0] == '/' ? "" : "/", path) < 0)
        return LV_ENOMEM;
    h = curl_easy_init();
    if (h == NULL) {
        rc = LV_ENOMEM;
        goto out_free_url;
    }
    errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (addr[0] == '/')
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, addr);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, HTTP_CLIENT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, HTTP_CLIENT_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_PROXY, "");  /* ignore http_proxy: the daemon is not behind one */
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_sink_write);
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
    if (o != NULL && http_client_setup(h, o->token, o->ca_file, &hdrs) != 0) {
        rc = LV_ENOMEM;
        goto out_cleanup;
    }
    cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        LV_DEBUG("http: %s %s: %s", data ? "POST" : "GET", url,
                 sink.too_big ? "response body too large" : errbuf[0] ? errbuf : curl_easy_strerror(cc));
        rc = cc == CURLE_OPERATION_TIMEDOUT ? LV_EBUSY : LV_ENET;
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
    return http_request(addr, path, NULL, 0, NULL, body, len, status);
}

int http_get_ex(const char *addr, const char *path, const struct http_client_opts *opts, char **body, size_t *len,
                long *status)
{
    return http_request(addr, path, NULL, 0, opts, body, len, status);
}

int http_post(const char *addr, const char *path, const void *data, size_t dlen,
              char **body, size_t *len, long *status)
{
    /* POSTFIELDS needs a non-NULL pointer even for an empty body. */
    return http_request(addr, path, data ? data : "", data ? dlen : 0, NULL, body, len, status);
}

/* ---- client: held POST over a Unix socket ---------------------------- */

/* Read from fd into *buf until stop(buf) or EOF, by deadline (lv_mono_us).  0, LV_EBUSY, LV_ENET. */
static int hold_recv(int fd, struct http_sink *k, int64_t deadline, int (*stop)(const struct http_sink *))
{
    char tmp[4096];

    while (!stop(k)) {
        int64_t left = deadline - lv_mono_us();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0)
            return LV_EBUSY;
        int n = poll(&p, 1, (int)(left / 1000) + 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            continue;
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return LV_ENET;
        if (r == 0)
            return 0; /* EOF */
        if (http_sink_write(tmp, 1, (size_t)r, k) != (size_t)r)
            return LV_ENET;
    }
    return 0;
}

/* Is the response head in, and the first body line after it? */
static int head_and_line(const struct http_sink *k)
{
    const char *e = k->buf ? strstr(k->buf, "\r\n\r\n") : NULL;
    return e != NULL && strchr(e + 4, '\n') != NULL;
}

static int never(const struct http_sink *k)
{
    LV_UNUSED(k);
    return 0;
}

int http_post_hold(const char *sock, const char *path, int timeout_s, char **body, long *status, int *conn)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct http_sink k = {0};
    int64_t deadline = lv_mono_us() + (int64_t)timeout_s * 1000000;
    char *req = NULL;
    int fd = -1, rc = LV_ENET, n;
    long code = 0;

    *body = NULL;
    *status = 0;
    *conn = -1;
    if (strlen(sock) >= sizeof sun.sun_path)
        return LV_ENET;
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", sock);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return LV_ENET;
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        LV_DEBUG("http: connect %s: %s", sock, strerror(errno));
        goto out_close;
    }
    n = asprintf(&req, "POST %s HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n", path);
    if (n < 0) {
        rc = LV_ENOMEM;
        goto out_close;
    }
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        LV_DEBUG("http: send to %s: %s", sock, strerror(errno));
        goto out_free_req;
    }
    rc = hold_recv(fd, &k, deadline, head_and_line);
    if (rc != 0)
        goto out_free_sink;
    if (k.buf == NULL || sscanf(k.buf, "HTTP/1.%*d %ld", &code) != 1 || strstr(k.buf, "\r\n\r\n") == NULL) {
        LV_DEBUG("http: malformed reply from %s", sock);
        rc = LV_ENET;
        goto out_free_sink;
    }
    if (code != 200 && (rc = hold_recv(fd, &k, deadline, never)) != 0)
        goto out_free_sink;
    char *b = strstr(k.buf, "\r\n\r\n") + 4;
    *body = strdup(b);
    if (*body == NULL) {
        rc = LV_ENOMEM;
        goto out_free_sink;
    }
    *status = code;
    if (code == 200) {
        *conn = fd;
        fd = -1;
    }
    rc = 0;

out_free_sink:
    free(k.buf);
out_free_req:
    free(req);
out_close:
    if (fd >= 0)
        close(fd);
    return rc;
}
