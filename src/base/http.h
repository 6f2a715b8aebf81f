/*
 * http.h -- a small HTTP server over libmicrohttpd for the daemon's API,
 * and the libcurl client pieces the CLI and the replica use.
 *
 * Routes are registered before http_start.  A handler renders a response
 * body into a malloc'ed string (the server frees it), or hands over a
 * stream (stream_fn, below).  Only the methods a route names are accepted
 * (405 otherwise); unknown paths get 404; request bodies above
 * HTTP_MAX_BODY are refused with 413; malformed requests are rejected by
 * libmicrohttpd itself.  Handlers run on the connection's own thread and
 * must be thread-safe.
 *
 * Two kinds of listener, both one thread per connection (at most
 * max_conns), so a long handler or a long-lived stream never delays other
 * requests: a TCP address ("host:port"), optionally with TLS
 * (http_set_tls); or a Unix socket (an absolute path, "/.../admin.sock",
 * created 0600 so only the daemon's user and root can connect).  A client
 * that has not sent its whole request head within the header timeout is
 * dropped, however slowly it trickles bytes; idle keep-alive connections
 * too.
 *
 * Authentication (http_set_token): with a token set, a request to a
 * private route (HTTP_R_PRIVATE) must carry "Authorization: Bearer
 * <token>", and so must one to a public route (HTTP_R_PUBLIC) unless the
 * public routes are open (http_set_public, the default).  Otherwise: 401
 * with "WWW-Authenticate: Bearer".  The token is compared in constant time
 * and never logged.  Without a token every route is open.
 */
#ifndef HTTP_H
#define HTTP_H

#include <curl/curl.h>
#include <stddef.h>

#define HTTP_MAX_BODY (1u << 20)

/* Route classes (http_route_ex). */
#define HTTP_R_PUBLIC 0x1u  /* needs the token only when the public routes are closed (http_set_public(s, 0)) */
#define HTTP_R_PRIVATE 0x2u /* needs the token whenever one is set */

/* What a stream_fn returns besides a byte count (> 0) or 0 ("nothing yet, call again"). */
#define HTTP_STREAM_END (-1L)   /* the body is complete */
#define HTTP_STREAM_ERROR (-2L) /* abort: the connection is cut (the client sees a truncated body) */

struct http_request {
    const char *method;  /* "GET", "POST", ... (borrowed for the call) */
    const char *path;    /* URL path without query (borrowed) */
    const char *(*query)(const struct http_request *r, const char *key); /* query parameter or NULL */
    const char *(*header)(const struct http_request *r, const char *name); /* request header (any case) or NULL */
    const char *peer;    /* client address, "1.2.3.4:5678", "[::1]:5678" or "local" (Unix socket) (borrowed) */
    const void *body;    /* request body (borrowed), NULL if none */
    size_t body_len;     /* bytes in body */
    void *impl;          /* private to http.c */
};

struct http_response {
    int status;          /* HTTP status code; default 200 */
    const char *content_type; /* static string; default "application/json" */
    char *body;          /* malloc'ed by the handler, freed by the server; may be NULL */
    size_t body_len;     /* bytes in body (strlen(body) if 0 and body != NULL) */
    /* Optional hold (Unix-socket servers only): after the body is sent the
     * connection stays open until the client hangs up (or the server stops),
     * then hold_done(hold_arg) runs exactly once -- also when the response
     * could not be sent at all.  The handler hands over what hold_arg owns. */
    void (*hold_done)(void *hold_arg);
    void *hold_arg;
    /* Optional stream (both listeners): the body is produced by
     * stream_fn(stream_arg, buf, max), called repeatedly on the connection's
     * own thread as the client takes the bytes.  It may block (up to about
     * a second at a time, so a stopping server is not held up); it returns
     * the bytes it wrote into buf (1..max), 0 for "nothing yet, call again"
     * (the server checks that the client is still there and calls again
     * after at most 10 ms), HTTP_STREAM_END to finish the body or
     * HTTP_STREAM_ERROR to cut the connection.  The body goes out with
     * chunked encoding (HTTP/1.1); the idle timeout does not apply to a
     * streaming connection (TCP keep-alive probes find a vanished client).
     * stream_free(stream_arg) runs exactly once when the connection lets go
     * of the stream: body finished, client gone, server stopping, or the
     * response could not be sent at all (also when the handler fails).
     * body is ignored (freed) when stream_fn is set; status is sent as set. */
    long (*stream_fn)(void *stream_arg, char *buf, size_t max);
    void (*stream_free)(void *stream_arg);
    void *stream_arg;
};

/* A handler fills *resp; returns 0 (the response is sent as filled). */
typedef int (*http_handler_fn)(void *ctx, const struct http_request *req, struct http_response *resp);

struct http_server;

/* Create a server for addr: "host:port" (host an IPv4 or [IPv6] literal, or
 * localhost), or an absolute path for a Unix socket.  0 or LV_EINVAL. */
int http_new(const char *addr, struct http_server **out);

/* Defences against slow, idle or many clients (set before http_start). */
struct http_limits {
    unsigned max_conns;        /* connections at once; 0: the default (64) */
    unsigned per_addr;         /* connections per client IP address (TCP only); 0: no limit */
    unsigned header_timeout_s; /* seconds to send a whole request head (also the keep-alive
                                  idle limit); 0: the default (10) */
};

/* Set the limits (before http_start).  0 or LV_EINVAL (server running). */
int http_set_limits(struct http_server *s, const struct http_limits *l);

/* Register a route: exact path match, method "GET"/"POST"/..., handler and
 * its context, class flags HTTP_R_PUBLIC or HTTP_R_PRIVATE.  0, LV_ENOMEM,
 * or LV_EINVAL (server running). */
int http_route_ex(struct http_server *s, const char *method, const char *path, http_handler_fn fn, void *ctx,
                  unsigned flags);

/* http_route_ex(s, method, path, fn, ctx, HTTP_R_PUBLIC). */
int http_route(struct http_server *s, const char *method, const char *path, http_handler_fn fn, void *ctx);

/* Require "Authorization: Bearer <token>" (see the top); token is copied,
 * NULL or "" removes it.  Before http_start.  0, LV_ENOMEM or LV_EINVAL
 * (server running). */
int http_set_token(struct http_server *s, const char *token);

/* open (the default 1): public routes answer without the token; 0: they
 * need it too.  Before http_start.  0 or LV_EINVAL (server running). */
int http_set_public(struct http_server *s, int open);

/* Serve HTTPS on a TCP server: the certificate chain and private key, PEM
 * files, are read now (the key is wiped from memory at http_free).  Before
 * http_start.  0; LV_EINVAL (a Unix socket, server running, or
 * libmicrohttpd built without TLS: see http_tls_supported); LV_EIO (a file
 * cannot be read: logged naming it). */
int http_set_tls(struct http_server *s, const char *cert_file, const char *key_file);

/* 1 if libmicrohttpd was built with TLS (HTTPS servers possible), else 0. */
int http_tls_supported(void);

/* 1 if addr ("host:port", "[v6]:port") names a loopback address
 * (127.0.0.0/8, ::1, ::ffff:127.x.x.x, localhost), 0 otherwise (any other
 * address, 0.0.0.0, ::, a host name, or something unparsable). */
int http_addr_is_loopback(const char *addr);

/* Start listening.  A Unix socket path is replaced (a stale socket of a
 * previous run; the caller holds whatever lock makes it its own) and made
 * 0600 before it listens.  0 or LV_EIO (logged with the address). */
int http_start(struct http_server *s);

/* Stop (a held connection is cut, its hold_done runs), remove the Unix socket, free. */
void http_free(struct http_server *s);

/* Issue a GET to http://addr/path with libcurl (addr "host:port", or the
 * absolute path of a Unix socket); *body (malloc'ed, caller frees) and
 * *status.  Used by CLI commands that talk to the daemon.  0 (any status);
 * LV_EBUSY when the daemon accepted but did not answer in time (timed out);
 * LV_ENET when nothing answers (refused, no socket, permission denied). */
int http_get(const char *addr, const char *path, char **body, size_t *len, long *status);

/* Client options for http_get_ex. */
struct http_client_opts {
    const char *token;   /* sent as "Authorization: Bearer <token>" if not NULL */
    int https;           /* 1: https://addr (TCP addresses only) */
    const char *ca_file; /* PEM file of the CA(s) to check the server with; NULL: the system's */
};

/* As http_get, with a token and HTTPS (opts may be NULL: as http_get). */
int http_get_ex(const char *addr, const char *path, const struct http_client_opts *opts, char **body, size_t *len,
                long *status);

/* Issue a POST with a body; same conventions as http_get. */
int http_post(const char *addr, const char *path, const void *data, size_t dlen,
              char **body, size_t *len, long *status);

/* A response body collected by http_sink_write (zero it before use). */
struct http_sink {
    char *buf;      /* malloc'ed, NUL-terminated past len (the caller frees it) */
    size_t len;     /* bytes held */
    size_t cap;     /* bytes allocated */
    size_t max;     /* bytes accepted at most (0: the client's default, 256 MiB) */
    int too_big;    /* more than max arrived (the transfer was ended) */
};

/* libcurl write callback (CURLOPT_WRITEDATA: a struct http_sink) that
 * appends to the sink, up to its max. */
size_t http_sink_write(char *data, size_t size, size_t nmemb, void *userp);

/* Set up a libcurl handle c for a litevault peer: with token, appends
 * "Authorization: Bearer <token>" to *hdrs (a header list the caller owns:
 * it frees it with curl_slist_free_all after the transfer, and may append
 * its own headers before or after) and sets CURLOPT_HTTPHEADER to *hdrs;
 * with ca_file, sets CURLOPT_CAINFO (peer and host name are always
 * verified); allows only http and https.  The URL, method and callbacks are
 * the caller's.  0 or LV_ENOMEM. */
int http_client_setup(CURL *c, const char *token, const char *ca_file, struct curl_slist **hdrs);

/* POST path (no body) over the Unix socket sock and read the response head
 * and the body's first line (a hold response, see struct http_response):
 * *body (malloc'ed, caller frees) and *status; for a 200, *conn is the open
 * connection, owned by the caller, who closes it to release what the daemon
 * holds; otherwise *conn is -1 and *body the whole body.  Waits at most
 * timeout_s.  0; LV_EBUSY (timed out); LV_ENET (cannot connect, or a
 * malformed reply). */
int http_post_hold(const char *sock, const char *path, int timeout_s, char **body, long *status, int *conn);

#endif /* HTTP_H */
