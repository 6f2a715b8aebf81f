/*
 * http.h -- a small HTTP server over libmicrohttpd for the daemon's API.
 *
 * Routes are registered before http_start.  A handler renders a response
 * body into a malloc'ed string; the server frees it.  Only the methods a
 * route names are accepted (405 otherwise); unknown paths get 404; request
 * bodies above HTTP_MAX_BODY are refused with 413; malformed requests are
 * rejected by libmicrohttpd itself.  Handlers run on libmicrohttpd's
 * thread pool and must be thread-safe.
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
};

struct http_response {
    int status;          /* HTTP status code; default 200 */
    const char *content_type; /* static string; default "application/json" */
    char *body;          /* malloc'ed by the handler, freed by the server; may be NULL */
    size_t body_len;     /* bytes in body (strlen(body) if 0 and body != NULL) */
};

/* A handler fills *resp; returns 0 (the response is sent as filled). */
typedef int (*http_handler_fn)(void *ctx, const struct http_request *req, struct http_response *resp);

struct http_server;

/* Create a server for addr ("host:port"; host may be an IPv4 or [IPv6] literal). 0 or LV_EINVAL. */
int http_new(const char *addr, struct http_server **out);

/* Register a route: exact path match, method "GET"/"POST"/..., handler and its context. 0 or LV_ENOMEM. */
int http_route(struct http_server *s, const char *method, const char *path, http_handler_fn fn, void *ctx);

/* Start listening (internal thread pool).  0 or LV_EIO (logged with the address). */
int http_start(struct http_server *s);

/* Stop and free. */
void http_free(struct http_server *s);

/* Issue a GET to http://addr/path with libcurl; *body (malloc'ed, caller frees) and *status.
 * Used by CLI commands that talk to the daemon.  0 or LV_ENET. */
int http_get(const char *addr, const char *path, char **body, size_t *len, long *status);

/* Issue a POST with a body; same conventions as http_get. */
int http_post(const char *addr, const char *path, const void *data, size_t dlen,
              char **body, size_t *len, long *status);

#endif /* HTTP_H */
