/*
 * http.h -- a small HTTP server over libmicrohttpd for the daemon's API.
 *
 * Routes are registered before http_start.  A handler renders a response
 * body into a malloc'ed string; the server frees it.  Only the methods a
 * route names are accepted (405 otherwise); unknown paths get 404; request
 * bodies above HTTP_MAX_BODY are refused with 413; malformed requests are
 * rejected by libmicrohttpd itself.  Handlers run on libmicrohttpd's
 * thread pool and must be thread-safe.
 *
 * Two kinds of listener: a TCP address ("host:port"), served by a small
 * polling thread pool, for quick answers; or a Unix socket (an absolute
 * path, "/.../admin.sock", created 0600 so only the daemon's user and root
 * can connect), served with one thread per connection so that long work
 * (images) never delays other requests.  A client that has not sent its
 * whole request head within the header timeout is dropped, however slowly
 * it trickles bytes; idle keep-alive connections too.
 */
#ifndef HTTP_H
#define HTTP_H

#include <stddef.h>

#define HTTP_MAX_BODY (1u << 20)

struct http_request {
    const char *method;  /* "GET", "POST", ... (borrowed for the call) */
    const char *path;    /* URL path without query (borrowed) */
    const char *(*query)(const struct http_request *r, const char *key); /* query parameter or NULL */
    const void *body;    /* request body (borrowed), NULL if none */
    size_t body_len;     /* bytes in body */
    void *impl;          /* private to http.c */
    /* TEMP(scaffold, helper B owns this): request header lookup (PLAN.md, HTTP). */
    const char *(*header)(const struct http_request *r, const char *name);
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
    /* TEMP(scaffold, helper B owns this): streaming responses (PLAN.md, HTTP). */
    long (*stream_fn)(void *arg, char *buf, size_t max);
    void (*stream_free)(void *arg);
    void *stream_arg;
};

/* TEMP(scaffold, helper B owns this) */
#define HTTP_STREAM_END (-1)
#define HTTP_STREAM_ERROR (-2)
#define HTTP_R_PUBLIC 1u
#define HTTP_R_PRIVATE 2u

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

/* Register a route: exact path match, method "GET"/"POST"/..., handler and its context. 0 or LV_ENOMEM. */
int http_route(struct http_server *s, const char *method, const char *path, http_handler_fn fn, void *ctx);

/* TEMP(scaffold, helper B owns these) */
int http_route_ex(struct http_server *s, const char *method, const char *path, http_handler_fn fn, void *ctx,
                  unsigned flags);
int http_set_token(struct http_server *s, const char *token);
int http_set_tls(struct http_server *s, const char *cert_file, const char *key_file);

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

/* Issue a POST with a body; same conventions as http_get. */
int http_post(const char *addr, const char *path, const void *data, size_t dlen,
              char **body, size_t *len, long *status);

/* POST path (no body) over the Unix socket sock and read the response head
 * and the body's first line (a hold response, see struct http_response):
 * *body (malloc'ed, caller frees) and *status; for a 200, *conn is the open
 * connection, owned by the caller, who closes it to release what the daemon
 * holds; otherwise *conn is -1 and *body the whole body.  Waits at most
 * timeout_s.  0; LV_EBUSY (timed out); LV_ENET (cannot connect, or a
 * malformed reply). */
int http_post_hold(const char *sock, const char *path, int timeout_s, char **body, long *status, int *conn);

#endif /* HTTP_H */
