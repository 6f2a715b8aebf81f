/*
 * proxy_http.h -- the HTTP/1.1 pieces of the built-in proxy (proxy.h):
 * message heads parsed with Debian's libhttp-parser, the __txid cookie,
 * and the proxy's addresses.  Pure functions on bytes, no I/O, so the
 * fuzzer (fuzz/fuzz_proxy.c) and the unit tests reach all of it.
 *
 * A head is parsed from one buffer that holds it whole (the caller reads
 * until a blank line may be there, then calls pxh_parse_head; 0 means
 * "not complete yet, read more").  On success the parser inside struct
 * pxh_head is paused just after the head, so the caller continues with
 * the body on the same parser (http_parser_pause(p, 0), then
 * http_parser_execute with its own body callbacks).  Fields point into
 * the caller's buffer by offset: they stay valid while the buffer's first
 * `len` bytes are unchanged.
 */
#ifndef PROXY_HTTP_H
#define PROXY_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#define PXH_MAX_HEAD (64 * 1024) /* bytes of one head; larger: 431 (requests) or 502 (responses) */
#define PXH_MAX_FIELDS 200       /* header fields of one head; more: as too large */

/* One header field: offsets and lengths into the head's buffer. */
struct pxh_field {
    uint32_t name, name_len;   /* field name */
    uint32_t value, value_len; /* field value (libhttp-parser trims the surrounding blanks) */
};

/* A parsed request or response head (filled by pxh_parse_head; the caller
 * owns the struct, the buffer stays the caller's). */
struct pxh_head {
    http_parser parser;                  /* paused after the head: continue with the body */
    const char *buf;                     /* the buffer parsed (borrowed) */
    size_t len;                          /* bytes of the head, its blank line included */
    uint32_t url, url_len;               /* requests: the request-target */
    uint32_t reason, reason_len;         /* responses: the reason phrase */
    struct pxh_field f[PXH_MAX_FIELDS];  /* header fields in order */
    size_t nf;                           /* fields in f */
    int too_many;                        /* more than PXH_MAX_FIELDS fields (an error) */
    int in_value;                        /* parse state: the last piece was a value */
    int done;                            /* parse state: on_headers_complete ran */
    int skip_body;                       /* responses: the request was HEAD (no body follows) */
};

/* Parse the head at the start of buf (len bytes; type HTTP_REQUEST or
 * HTTP_RESPONSE; skip_body 1 for the response to a HEAD request).
 * Returns the head's length (> 0) with *h filled and its parser paused
 * after the head; 0 when the head is not complete in buf; LV_ENOSPC when
 * it is larger than PXH_MAX_HEAD or has more than PXH_MAX_FIELDS fields;
 * LV_EINVAL when malformed, with *why (static) saying why. */
int pxh_parse_head(struct pxh_head *h, int type, int skip_body, const char *buf, size_t len, const char **why);

/* Value of the first field named name (any case) into *v (borrowed from
 * the buffer, n bytes), 1; or 0 if there is none. */
int pxh_get(const struct pxh_head *h, const char *name, const char **v, size_t *n);

/* Does field i's name equal name (any case)? */
int pxh_is(const struct pxh_head *h, size_t i, const char *name);

/* Is token (any case) one of the comma-separated tokens of the value v (n bytes)? */
int pxh_has_token(const char *v, size_t n, const char *token);

/* The largest __txid=N in a Cookie value v (n bytes: "a=1; __txid=42")
 * into *txid: 1; 0 when there is none that is a whole number (the cookie
 * is then ignored). */
int pxh_cookie_txid(const char *v, size_t n, uint64_t *txid);

/* The host and port of addr: "HOST:PORT", "[V6]:PORT" or an http:// URL
 * ("http://HOST[:PORT][/]", port 80 by default; no path, query,
 * credentials or https).  host (hn bytes) gets the host without brackets,
 * port (pn bytes) the port.  0, or LV_EINVAL with *why (static). */
int pxh_hostport(const char *addr, char *host, size_t hn, char *port, size_t pn, const char **why);

/* The path of a request-target (origin form "/p?q" or absolute form
 * "http://h/p?q"; "*" stays "*") into out (n bytes), without the query.
 * 0, or LV_EINVAL (unparsable, or longer than n - 1). */
int pxh_target_path(const char *url, size_t url_len, char *out, size_t n);

#endif /* PROXY_HTTP_H */
