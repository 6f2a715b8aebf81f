/*
 * proxy.c -- the built-in HTTP proxy (see proxy.h), as LiteFS's.
 *
 * Where it sits:
 *
 *   client --HTTP--> proxy.addr (this file) --HTTP--> proxy.target (the application,
 *                        |                              on this node's mount)
 *                        +--writes, on a replica--> the primary's proxy --> its application
 *
 * Threads.  One acceptor (a worker) accepts on proxy.addr and starts one
 * worker per client connection, at most max_conns at once (one more is
 * answered 503 by the acceptor and closed).  A connection's thread owns its
 * sockets and buffers; it serves requests one after the other (keep-alive,
 * pipelined requests are read in turn).  Finished connection threads are
 * joined by the acceptor (reap), the rest by proxy_stop.  Every wait (poll)
 * also watches stop_fd, an eventfd made readable once by proxy_stop, so
 * stopping never waits for a client or the application.
 *
 * One request, states of its connection:
 *   HEAD     read the request head (at most PXH_MAX_HEAD bytes, whole
 *            within header_timeout of the previous response or the
 *            accept; also the keep-alive idle limit): 400 malformed, 431
 *            too large, 408 incomplete at the deadline, silence closes.
 *   ROUTE    GET, HEAD, OPTIONS, or a path matching a passthrough pattern:
 *            the local application (proxy.target).  A read (not
 *            passthrough) on a replica carrying the cookie __txid=N first
 *            waits until txid() >= N, at most max_lag_wait (then 504: the
 *            client would not see its own write).  Any other method: the
 *            local application on the primary; on a replica, the primary's
 *            proxy (primary_url()), marked "Litevault-Forwarded: 1"; a
 *            forwarded request reaching a node that is not the primary is
 *            answered 503 (no second hop, no loops); an unknown primary 503.
 *   UPSTREAM connect (or reuse the connection of the previous request to the
 *            same place); failure 502 naming the place.  "Expect:
 *            100-continue" is answered by the proxy itself once connected.
 *   BODY     the head is rebuilt (hop-by-hop fields dropped, X-Forwarded-For
 *            and -Proto added, Host kept) and sent, then the request body
 *            as it arrives: a Content-Length body byte for byte, a chunked
 *            one re-chunked (trailers dropped) -- never held whole.
 *   RESPONSE the response head (<= PXH_MAX_HEAD, else 502) is rebuilt the
 *            same way; on the primary, after a request other than GET,
 *            HEAD or OPTIONS, Set-Cookie __txid=<txid() now> is added (the
 *            application answers after its commit).  The body streams as
 *            it comes: Content-Length as is; otherwise chunked to an
 *            HTTP/1.1 client, or until close to an HTTP/1.0 one.
 *   then HEAD again if both sides allow keep-alive, else the connection
 *   closes.  An error before the response head went out is answered with a
 *   short text/plain body "litevault proxy: ..." and Connection: close;
 *   after it, the connection is cut (the client sees a truncated body).
 *
 * Invariants:
 *   P1. No body is held whole: at most PX_BUF bytes of a request or a
 *       response are in memory per connection at any time.
 *   P2. A request is forwarded between nodes at most once: only a request
 *       without Litevault-Forwarded is sent to the primary's proxy, and the
 *       proxy always sets the field on what it forwards (a client's own
 *       Litevault-Forwarded field is never passed to the application).
 *   P3. conns holds every connection thread not yet joined; nconns counts
 *       those not done.  A connection is joined exactly once (reap or
 *       proxy_stop) and only after its thread set done.
 *   P4. Only the connection's own thread touches its sockets and buffers;
 *       other threads only read done under the lock.
 *   P5. Every response sent to a client is complete HTTP/1.1 framing
 *       (Content-Length, chunked or Connection: close), so a kept
 *       connection is never out of step.
 */
#include "daemon/proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/worker.h"
#include "daemon/proxy_http.h"

#define PX_BUF (PXH_MAX_HEAD + 16384)     /* a connection's read buffer, each side (P1) */
#define PX_OUT (PXH_MAX_HEAD + 8192)      /* a rebuilt head */
#define PX_IO_TIMEOUT_MS 60000            /* a stalled body either way; the application's silence */
#define PX_CONNECT_TIMEOUT_MS 5000        /* connecting to the application or the primary's proxy */
#define PX_ERROR_TIMEOUT_MS 5000          /* sending an error response */
#define PX_COOKIE_MAX_AGE 10              /* seconds the __txid cookie lives */
#define PX_WAIT_SLICE_MS 200              /* a wait for a TXID checks for stopping this often */

/* Results of the I/O helpers besides a byte count (>= 0). */
#define PX_TIMEOUT LV_EBUSY  /* the deadline passed */
#define PX_STOPPED LV_EREFUSED /* the proxy is stopping */

struct conn;

struct proxy {
    struct proxy_opts o;     /* options; its strings point at the copies below (immutable) */
    char *addr, *target, *db; /* owned copies (immutable) */
    char **pass;             /* owned copies of the passthrough patterns (immutable) */
    char thost[256], tport[16]; /* the target's host and port (immutable) */
    int lfd;                 /* listening socket (acceptor's; closed by proxy_stop after it) */
    int stop_fd;             /* eventfd, readable once proxy_stop began (immutable) */
    int stopping;            /* 1 once proxy_stop began (atomic) */
    struct worker *acceptor; /* the accept loop */
    pthread_mutex_t lock;    /* guards conns, nconns and each conn's done and next */
    struct conn *conns;      /* connection threads not yet joined (lock; P3) */
    int nconns;              /* of them, those not done (lock) */
};

/* What the proxy keeps of one request head (the head's bytes are reused for its body). */
struct px_req {
    unsigned method;         /* enum http_method */
    int minor;               /* HTTP/1.minor of the client (0 or 1) */
    int keep;                /* the client allows keep-alive after this request */
    int head;                /* a HEAD request (the response has no body) */
    int chunked;             /* the body is chunked */
    int has_body;            /* a body follows (chunked, or Content-Length > 0) */
    int expect100;           /* Expect: 100-continue */
    int upgrade;             /* the client asked for an upgrade (not done: the connection closes after) */
    int forwarded;           /* Litevault-Forwarded was set (it came from another node's proxy) */
    int has_cookie;          /* a __txid cookie came with it */
    uint64_t cookie;         /* its TXID */
    int set_cookie;          /* a write served on the primary: answer with Set-Cookie */
};

/* One client connection; every field is its thread's own (P4) but done and next. */
struct conn {
    struct proxy *px;        /* owner (immutable) */
    struct worker *w;        /* this thread (written by the acceptor before it reaps) */
    struct conn *next;       /* px->conns (px->lock) */
    int done;                /* the thread has finished (px->lock) */
    int fd;                  /* client socket */
    char peer[64];           /* client's IP address (immutable) */
    int up;                  /* upstream socket, or -1 */
    char up_key[300];        /* "HOST PORT" of up */
    char up_name[1100];      /* the upstream as messages name it */
    char *rb;                /* client bytes (PX_BUF): [rpos, rlen) not parsed yet */
    size_t rlen, rpos;
    char *ub;                /* upstream bytes (PX_BUF): [upos, ulen) not parsed yet */
    size_t ulen, upos;
    char *ob;                /* a rebuilt head (PX_OUT) */
    int msg_done;            /* the parser finished the current message */
    int rechunk;             /* the body being copied is sent chunked */
    int out_fd;              /* where on_body writes: up (request) or fd (response) */
    int out_failed;          /* writing to out_fd failed */
    int body_bytes;          /* some request body was sent upstream */
};

/* ---- I/O ---- */

static int stopping(const struct proxy *px)
{
    return __atomic_load_n(&px->stopping, __ATOMIC_ACQUIRE);
}

/* Wait until fd is ready for ev, at most ms.  1 ready, PX_TIMEOUT, PX_STOPPED or LV_EIO. */
static int px_wait(struct conn *c, int fd, short ev, int ms)
{
    struct pollfd pf[2] = {{fd, ev, 0}, {c->px->stop_fd, POLLIN, 0}};
    int rc;

    do
        rc = poll(pf, 2, ms < 0 ? 0 : ms);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return LV_EIO;
    if (pf[1].revents)
        return PX_STOPPED;
    return rc == 0 ? PX_TIMEOUT : 1;
}

/* Milliseconds from now to deadline (lv_mono_us), at least 0. */
static int ms_left(int64_t deadline)
{
    int64_t left = (deadline - lv_mono_us() + 999) / 1000;

    return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Read what fd has (at most n bytes), waiting at most ms.  Bytes (> 0), 0
 * at end of stream (or a reset), PX_TIMEOUT, PX_STOPPED or LV_EIO. */
static long px_read(struct conn *c, int fd, char *buf, size_t n, int ms)
{
    int64_t deadline = lv_mono_us() + (int64_t)ms * 1000;

    for (;;) {
        ssize_t r = recv(fd, buf, n, 0);
        if (r >= 0)
            return (long)r;
        if (errno == ECONNRESET)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            return LV_EIO;
        int rc = px_wait(c, fd, POLLIN, ms_left(deadline));
        if (rc < 0)
            return rc;
    }
}

/* Write every byte of iov[0..n) to fd, each wait at most ms.  0, PX_TIMEOUT, PX_STOPPED or LV_EIO. */
static int px_writev(struct conn *c, int fd, struct iovec *iov, int n, int ms)
{
    while (n > 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR)
                return LV_EIO;
            int rc = px_wait(c, fd, POLLOUT, ms);
            if (rc < 0)
                return rc;
            continue;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

static int px_write(struct conn *c, int fd, const void *buf, size_t len, int ms)
{
    struct iovec v = {(void *)buf, len};

    return px_writev(c, fd, &v, 1, ms);
}

/* Answer status with a short text body and Connection: close (the caller then closes). */
static void px_error(struct conn *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void px_error(struct conn *c, int status, const char *fmt, ...)
{
    char body[1500], head[256];
    va_list ap;
    int bn, hn;

    va_start(ap, fmt);
    bn = snprintf(body, sizeof body, "litevault proxy: ");
    bn += vsnprintf(body + bn, sizeof body - (size_t)bn - 1, fmt, ap);
    va_end(ap);
    if (bn > (int)sizeof body - 2)
        bn = (int)sizeof body - 2;
    body[bn++] = '\n';
    hn = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  "Content-Length: %d\r\nConnection: close\r\n\r\n", status, http_status_str((enum http_status)status),
                  bn);
    struct iovec v[2] = {{head, (size_t)hn}, {body, (size_t)bn}};
    px_writev(c, c->fd, v, 2, PX_ERROR_TIMEOUT_MS);
}

static void up_close(struct conn *c)
{
    if (c->up >= 0)
        close(c->up);
    c->up = -1;
    c->up_key[0] = '\0';
}

/* Is the idle upstream connection still usable (nothing to read, not closed)? */
static int up_alive(int fd)
{
    struct pollfd pf = {fd, POLLIN, 0};

    return poll(&pf, 1, 0) == 0;
}

/* Connect c->up to host:port (reusing the open connection when it goes
 * there and is alive: *reused = 1).  0, or LV_ENET with the reason in err. */
static int up_connect(struct conn *c, const char *host, const char *port, int *reused, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
    char key[sizeof c->up_key];
    int rc, one = 1, fd = -1, soerr = 0;

    snprintf(key, sizeof key, "%s %s", host, port);
    *reused = 0;
    if (c->up >= 0 && strcmp(c->up_key, key) == 0 && up_alive(c->up)) {
        *reused = 1;
        return 0;
    }
    up_close(c);
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return LV_ENET;
    }
    snprintf(err, errlen, "no address");
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            snprintf(err, errlen, "socket: %s", strerror(errno));
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
            snprintf(err, errlen, "%s", strerror(errno));
        } else {
            socklen_t sl = sizeof soerr;
            rc = px_wait(c, fd, POLLOUT, PX_CONNECT_TIMEOUT_MS);
            if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                continue; /* connected: the loop ends */
            }
            snprintf(err, errlen, "%s", rc == PX_TIMEOUT ? "connection timed out" : rc == PX_STOPPED ? "stopping"
                                        : strerror(soerr ? soerr : errno));
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return LV_ENET;
    c->up = fd;
    snprintf(c->up_key, sizeof c->up_key, "%s", key);
    return 0;
}

/* ---- heads ---- */

/* A bounded string builder over c->ob. */
struct px_out {
    char *b;     /* buffer (borrowed) */
    size_t n;    /* bytes used */
    int over;    /* it did not fit */
};

static void out_add(struct px_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_add(struct px_out *o, const char *fmt, ...)
{
    va_list ap;
    int k;

    if (o->over)
        return;
    va_start(ap, fmt);
    k = vsnprintf(o->b + o->n, PX_OUT - o->n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= PX_OUT - o->n)
        o->over = 1;
    else
        o->n += (size_t)k;
}

/* Fields never passed on: hop-by-hop ones (RFC 9110 7.6.1), those the
 * Connection field names, and those the proxy sets itself. */
static int skip_field(const struct pxh_head *h, size_t i, const char *conn, size_t conn_len, int request)
{
    static const char *const hop[] = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
                                      "transfer-encoding", "upgrade"};
    char name[64];

    for (size_t k = 0; k < LV_ARRAY_LEN(hop); k++)
        if (pxh_is(h, i, hop[k]))
            return 1;
    if (request && (pxh_is(h, i, "expect") || pxh_is(h, i, "litevault-forwarded") ||
                    pxh_is(h, i, "x-forwarded-for")))
        return 1;
    if (conn && h->f[i].name_len < sizeof name) {
        memcpy(name, h->buf + h->f[i].name, h->f[i].name_len);
        name[h->f[i].name_len] = '\0';
        return pxh_has_token(conn, conn_len, name);
    }
    return 0;
}

/* Copy the fields of h that pass skip_field into o. */
static void add_fields(struct px_out *o, const struct pxh_head *h, int request)
{
    const char *conn = NULL;
    size_t conn_len = 0;

    if (!pxh_get(h, "connection", &conn, &conn_len))
        conn = NULL;
    for (size_t i = 0; i < h->nf; i++)
        if (!skip_field(h, i, conn, conn_len, request))
            out_add(o, "%.*s: %.*s\r\n", (int)h->f[i].name_len, h->buf + h->f[i].name, (int)h->f[i].value_len,
                    h->buf + h->f[i].value);
}

/* The request head for upstream (host, port: where it goes; remote: to the primary's proxy). */
static int request_head(struct conn *c, const struct pxh_head *h, const struct px_req *rq, const char *host,
                        const char *port, int remote, struct px_out *o)
{
    const char *v;
    size_t n;

    *o = (struct px_out){c->ob, 0, 0};
    out_add(o, "%s %.*s HTTP/1.1\r\n", http_method_str((enum http_method)rq->method), (int)h->url_len,
            h->buf + h->url);
    add_fields(o, h, 1);
    if (!pxh_get(h, "host", &v, &n))
        out_add(o, strchr(host, ':') ? "Host: [%s]:%s\r\n" : "Host: %s:%s\r\n", host, port);
    if (pxh_get(h, "x-forwarded-for", &v, &n))
        out_add(o, "X-Forwarded-For: %.*s, %s\r\n", (int)n, v, c->peer);
    else
        out_add(o, "X-Forwarded-For: %s\r\n", c->peer);
    if (!pxh_get(h, "x-forwarded-proto", &v, &n))
        out_add(o, "X-Forwarded-Proto: http\r\n");
    if (remote)
        out_add(o, "Litevault-Forwarded: 1\r\n"); /* P2 */
    if (rq->chunked)
        out_add(o, "Transfer-Encoding: chunked\r\n");
    out_add(o, "\r\n");
    return o->over ? LV_ENOSPC : 0;
}

/* ---- bodies ---- */

/* on_body: copy a piece of the body to c->out_fd, chunked when c->rechunk. */
static int on_body(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    char size[24];
    struct iovec v[3] = {{size, 0}, {(void *)at, n}, {"\r\n", 2}};
    int rc;

    if (n == 0)
        return 0;
    if (c->rechunk) {
        v[0].iov_len = (size_t)snprintf(size, sizeof size, "%zx\r\n", n);
        rc = px_writev(c, c->out_fd, v, 3, PX_IO_TIMEOUT_MS);
    } else {
        rc = px_writev(c, c->out_fd, &v[1], 1, PX_IO_TIMEOUT_MS);
    }
    if (rc != 0) {
        c->out_failed = 1;
        return -1;
    }
    if (c->out_fd == c->up)
        c->body_bytes = 1;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;

    c->msg_done = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings body_settings = {
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Run parser p (paused after a head) over the body that follows in
 * buf[*pos, *len) and what arrives on from_fd (read into buf, PX_BUF
 * bytes), copying it to to_fd (chunked if rechunk), until the message
 * ends.  0; LV_EIO (writing to to_fd failed: c->out_failed); LV_EINVAL
 * (a malformed body); LV_ENET (from_fd ended early or stalled); PX_STOPPED. */
static int copy_body(struct conn *c, http_parser *p, char *buf, size_t *pos, size_t *len, int from_fd, int to_fd,
                     int rechunk)
{
    c->msg_done = 0;
    c->rechunk = rechunk;
    c->out_fd = to_fd;
    c->out_failed = 0;
    p->data = c;
    http_parser_pause(p, 0);
    for (;;) {
        if (*pos < *len) {
            size_t k = http_parser_execute(p, &body_settings, buf + *pos, *len - *pos);
            enum http_errno e = HTTP_PARSER_ERRNO(p);
            *pos += k;
            if (c->out_failed)
                return LV_EIO;
            if (c->msg_done)
                break;
            if (e == HPE_PAUSED) {
                http_parser_pause(p, 0);
                continue;
            }
            if (e != HPE_OK)
                return LV_EINVAL;
            if (p->upgrade)
                break;
            continue;
        }
        *pos = *len = 0;
        long r = px_read(c, from_fd, buf, PX_BUF, PX_IO_TIMEOUT_MS);
        if (r == PX_STOPPED)
            return PX_STOPPED;
        if (r < 0)
            return LV_ENET;
        if (r == 0) { /* end of stream: completes a body read until close, else it was cut */
            http_parser_execute(p, &body_settings, NULL, 0);
            if (c->out_failed)
                return LV_EIO;
            if (c->msg_done)
                break;
            return LV_ENET;
        }
        *len = (size_t)r;
    }
    if (rechunk && px_write(c, to_fd, "0\r\n\r\n", 5, PX_IO_TIMEOUT_MS) != 0) {
        c->out_failed = 1;
        return LV_EIO;
    }
    return 0;
}

/* ---- one request ---- */

/* Read until rb holds a whole request head, parsed into *h.  1; 0 when the
 * connection should just close (the client left, went idle, or the proxy
 * stops); or -status with the reason in *why (408, 400, 431). */
static int read_head(struct conn *c, struct pxh_head *h, const char **why)
{
    int64_t deadline = lv_mono_us() + c->px->o.header_timeout_us;
    size_t scan = 0, lead;
    int tried = 0;

    memmove(c->rb, c->rb + c->rpos, c->rlen - c->rpos);
    c->rlen -= c->rpos;
    c->rpos = 0;
    for (;;) {
        for (lead = 0; lead < c->rlen && (c->rb[lead] == '\r' || c->rb[lead] == '\n'); lead++)
            ; /* empty lines before a request are ignored (RFC 9112 2.2) */
        if (lead) {
            memmove(c->rb, c->rb + lead, c->rlen - lead);
            c->rlen -= lead;
            scan = 0;
        }
        /* parse once the first line is there, then whenever a blank line may have arrived */
        size_t from = scan > 3 ? scan - 3 : 0;
        if (from > c->rlen)
            from = c->rlen;
        const char *nl = memchr(c->rb + from, '\n', c->rlen - from);
        if (nl && (!tried || memmem(c->rb + from, c->rlen - from, "\n\r\n", 3) ||
                   memmem(c->rb + from, c->rlen - from, "\n\n", 2))) {
            int rc = pxh_parse_head(h, HTTP_REQUEST, 0, c->rb, c->rlen, why);
            tried = 1;
            if (rc > 0) {
                c->rpos = (size_t)rc;
                return 1;
            }
            if (rc == LV_ENOSPC) {
                *why = "request head larger than 64 KiB, or with more than 200 fields";
                return -431;
            }
            if (rc < 0)
                return -400;
        }
        scan = c->rlen;
        if (c->rlen >= PXH_MAX_HEAD) {
            *why = "request head larger than 64 KiB";
            return -431;
        }
        long r = px_read(c, c->fd, c->rb + c->rlen, PXH_MAX_HEAD - c->rlen, ms_left(deadline));
        if (r == PX_TIMEOUT && c->rlen > 0) {
            *why = "the request head did not arrive within proxy.header-timeout";
            return -408;
        }
        if (r <= 0)
            return 0;
        c->rlen += (size_t)r;
    }
}

/* Does path match a passthrough pattern? */
static int passthrough(const struct proxy *px, const char *path)
{
    for (size_t i = 0; i < px->o.npassthrough; i++)
        if (fnmatch(px->pass[i], path, 0) == 0)
            return 1;
    return 0;
}

/* Wait until the local TXID of proxy.db reaches want, at most max_lag_wait.
 * 1 reached (*have: the TXID here), 0 not. */
static int wait_txid(struct proxy *px, uint64_t want, uint64_t *have)
{
    int64_t deadline = lv_mono_us() + px->o.max_lag_wait_us;

    for (;;) {
        uint64_t seq = px->o.commit_seq(px->o.arg); /* before the look: a commit after it ends the wait */
        if (px->o.txid(px->o.arg, have) != 0)
            *have = 0;
        if (*have >= want)
            return 1;
        int left = ms_left(deadline);
        if (left <= 0 || stopping(px))
            return 0;
        px->o.wait_commit(px->o.arg, seq, left < PX_WAIT_SLICE_MS ? left : PX_WAIT_SLICE_MS);
    }
}

/* The request's facts from its head. */
static void req_facts(const struct pxh_head *h, struct px_req *rq)
{
    const char *v;
    size_t n;

    memset(rq, 0, sizeof *rq);
    rq->method = h->parser.method;
    rq->minor = h->parser.http_major == 1 ? h->parser.http_minor : 0;
    rq->keep = http_should_keep_alive(&h->parser);
    rq->head = rq->method == HTTP_HEAD;
    rq->chunked = (h->parser.flags & F_CHUNKED) != 0;
    rq->has_body = rq->chunked || ((h->parser.flags & F_CONTENTLENGTH) && h->parser.content_length > 0);
    rq->expect100 = pxh_get(h, "expect", &v, &n) && n == 12 && strncasecmp(v, "100-continue", 12) == 0;
    rq->upgrade = h->parser.upgrade || pxh_get(h, "upgrade", &v, &n);
    rq->forwarded = pxh_get(h, "litevault-forwarded", &v, &n);
    for (size_t i = 0; i < h->nf; i++) {
        uint64_t t;
        if (pxh_is(h, i, "cookie") && pxh_cookie_txid(h->buf + h->f[i].value, h->f[i].value_len, &t) &&
            (!rq->has_cookie || t > rq->cookie)) {
            rq->cookie = t;
            rq->has_cookie = 1;
        }
    }
}

/* Read the response head from upstream into rh (interim 1xx responses
 * skipped).  1; 0 when upstream closed before a byte came; or a negative
 * code with the reason in err. */
static int read_response_head(struct conn *c, struct pxh_head *rh, const struct px_req *rq, char *err, size_t errlen)
{
    int64_t deadline = lv_mono_us() + (int64_t)PX_IO_TIMEOUT_MS * 1000;
    const char *why = NULL;
    int any = 0;

    c->ulen = c->upos = 0;
    for (;;) {
        if (c->ulen > 0 && (memmem(c->ub, c->ulen, "\n\r\n", 3) || memmem(c->ub, c->ulen, "\n\n", 2))) {
            int rc = pxh_parse_head(rh, HTTP_RESPONSE, rq->head, c->ub, c->ulen, &why);
            if (rc < 0) {
                snprintf(err, errlen, "%s answered with a bad response head (%s)", c->up_name, why);
                return LV_EINVAL;
            }
            if (rc > 0) {
                c->upos = (size_t)rc;
                if (rh->parser.status_code == 101) {
                    snprintf(err, errlen, "%s switched protocols (upgrades are not supported)", c->up_name);
                    return LV_EINVAL;
                }
                if (rh->parser.status_code >= 200)
                    return 1;
                /* an interim response: take it whole, keep what follows */
                if (copy_body(c, &rh->parser, c->ub, &c->upos, &c->ulen, c->up, -1, 0) != 0) {
                    snprintf(err, errlen, "%s sent a bad interim response", c->up_name);
                    return LV_EINVAL;
                }
                memmove(c->ub, c->ub + c->upos, c->ulen - c->upos);
                c->ulen -= c->upos;
                c->upos = 0;
                continue;
            }
        }
        if (c->ulen >= PXH_MAX_HEAD) {
            snprintf(err, errlen, "%s answered with a response head larger than 64 KiB", c->up_name);
            return LV_ENOSPC;
        }
        long r = px_read(c, c->up, c->ub + c->ulen, PXH_MAX_HEAD - c->ulen, ms_left(deadline));
        if (r == 0 && !any)
            return 0;
        if (r <= 0) {
            snprintf(err, errlen, "%s %s", c->up_name, r == 0 ? "closed the connection in the middle of its "
                     "response head" : r == PX_TIMEOUT ? "did not answer within 60 s" : r == PX_STOPPED ?
                     "was cut: the proxy is stopping" : "could not be read");
            return r == PX_STOPPED ? PX_STOPPED : LV_ENET;
        }
        any = 1;
        c->ulen += (size_t)r;
    }
}

/* Send the response head rh to the client, rebuilt; *rechunk and *keep say
 * how its body goes and whether the connection stays.  0 or < 0. */
static int response_head(struct conn *c, const struct pxh_head *rh, const struct px_req *rq, int *rechunk, int *keep)
{
    struct proxy *px = c->px;
    struct px_out o = {c->ob, 0, 0};
    unsigned st = rh->parser.status_code;
    int nobody = rq->head || st == 204 || st == 304;
    int cl = (rh->parser.flags & F_CONTENTLENGTH) && !(rh->parser.flags & F_CHUNKED);
    uint64_t txid;

    *rechunk = 0;
    if (!nobody && !cl) {
        if (rq->minor >= 1)
            *rechunk = 1;
        else
            *keep = 0; /* an HTTP/1.0 client: the body ends with the connection */
    }
    if (rh->reason_len)
        out_add(&o, "HTTP/1.1 %u %.*s\r\n", st, (int)rh->reason_len, rh->buf + rh->reason);
    else
        out_add(&o, "HTTP/1.1 %u %s\r\n", st, http_status_str((enum http_status)st));
    add_fields(&o, rh, 0);
    if (rq->set_cookie && px->o.txid(px->o.arg, &txid) == 0)
        out_add(&o, "Set-Cookie: __txid=%" PRIu64 "; Path=/; Max-Age=%d; HttpOnly; SameSite=Lax\r\n", txid,
                PX_COOKIE_MAX_AGE);
    if (*rechunk)
        out_add(&o, "Transfer-Encoding: chunked\r\n");
    if (!*keep)
        out_add(&o, "Connection: close\r\n");
    else if (rq->minor == 0)
        out_add(&o, "Connection: keep-alive\r\n");
    out_add(&o, "\r\n");
    if (o.over)
        return LV_ENOSPC;
    return px_write(c, c->fd, o.b, o.n, PX_IO_TIMEOUT_MS);
}

/* Serve the request whose head is h.  1 to keep the connection for the next request, 0 to close it. */
static int serve(struct conn *c, struct pxh_head *h)
{
    struct proxy *px = c->px;
    struct px_req rq;
    struct pxh_head *rh = NULL;
    char host[256], port[16], url[1024], err[1400] = "";
    const char *why = NULL, *dest = "the application";
    int remote = 0, reused = 0, keep = 0, rechunk = 0, req_done = 0, copied = 0, rc;
    struct px_out o;

    req_facts(h, &rq);
    if (rq.method == HTTP_CONNECT) {
        px_error(c, 405, "CONNECT is not supported");
        goto out;
    }
    if (h->parser.http_major != 1) {
        px_error(c, 505, "only HTTP/1.0 and HTTP/1.1 are served");
        goto out;
    }
    if (pxh_target_path(h->buf + h->url, h->url_len, c->ob, PX_OUT) != 0) {
        px_error(c, 400, "bad request-target");
        goto out;
    }
    int is_read = rq.method == HTTP_GET || rq.method == HTTP_HEAD || rq.method == HTTP_OPTIONS;
    int pass = passthrough(px, c->ob);
    int primary = px->o.is_primary(px->o.arg);
    snprintf(host, sizeof host, "%s", px->thost);
    snprintf(port, sizeof port, "%s", px->tport);
    if (!pass && is_read && !primary && rq.has_cookie) {
        uint64_t have = 0;
        if (!wait_txid(px, rq.cookie, &have)) {
            px_error(c, 504, "this replica holds TXID %" PRIu64 " of %s, the request's __txid cookie asks for %"
                     PRIu64 ", which did not arrive within proxy.max-lag-wait", have, px->db, rq.cookie);
            goto out;
        }
    } else if (!pass && !is_read && primary) {
        rq.set_cookie = 1;
    } else if (!pass && !is_read) {
        if (rq.forwarded) {
            px_error(c, 503, "a write forwarded by another node's proxy reached this node, which is not the "
                     "primary; it is not forwarded again (the primary may have changed: retry)");
            goto out;
        }
        rc = px->o.primary_url(px->o.arg, url, sizeof url);
        if (rc == 0)
            rc = pxh_hostport(url, host, sizeof host, port, sizeof port, &why);
        if (rc != 0) {
            px_error(c, 503, "this node is a replica and the primary's proxy is %s, so the write cannot be "
                     "forwarded (set proxy.primary-url)", rc == LV_ENOENT ? "not known" : "not a usable URL");
            goto out;
        }
        remote = 1;
        dest = "the primary's proxy";
    }
    if (remote)
        snprintf(c->up_name, sizeof c->up_name, "the primary's proxy at %s", url);
    else
        snprintf(c->up_name, sizeof c->up_name, "the application at %s (proxy.target)", px->target);
    if (request_head(c, h, &rq, host, port, remote, &o) != 0) {
        px_error(c, 431, "request head too large to forward");
        goto out;
    }
    rh = malloc(sizeof *rh);
    if (!rh) {
        px_error(c, 503, "out of memory");
        goto out;
    }
    for (int attempt = 0;; attempt++) {
        if (up_connect(c, host, port, &reused, err, sizeof err) != 0) {
            LV_WARN("proxy: cannot reach %s: %s", c->up_name, err);
            px_error(c, 502, "cannot reach %s: %s", c->up_name, err);
            goto out;
        }
        if (rq.expect100 && attempt == 0 && rq.minor >= 1 &&
            px_write(c, c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25, PX_IO_TIMEOUT_MS) != 0)
            goto out;
        c->body_bytes = 0;
        rc = px_write(c, c->up, o.b, o.n, PX_IO_TIMEOUT_MS);
        if (rc != 0 && reused && attempt == 0 && !rq.has_body) {
            up_close(c); /* the kept connection had been closed by the other side: once more, afresh */
            continue;
        }
        if (rc == 0 && !copied) { /* once: a retry is for a request without a body */
            size_t pos = c->rpos, len = c->rlen;
            copied = 1;
            rc = copy_body(c, &h->parser, c->rb, &pos, &len, c->fd, c->up, rq.chunked);
            c->rpos = pos;
            c->rlen = len;
            req_done = c->msg_done && !c->out_failed;
            if (rc == LV_EINVAL || rc == LV_ENET || rc == PX_STOPPED) {
                if (rc == LV_EINVAL)
                    px_error(c, 400, "bad request body (%s)", http_errno_description(HTTP_PARSER_ERRNO(&h->parser)));
                else if (rc == LV_ENET)
                    LV_DEBUG("proxy: client %s: the request body stopped coming; connection closed", c->peer);
                up_close(c);
                goto out;
            }
        }
        /* rc LV_EIO: upstream did not take all of it; its answer may still be there */
        rc = read_response_head(c, rh, &rq, err, sizeof err);
        if (rc == 0 && reused && attempt == 0 && !rq.has_body) {
            up_close(c); /* the kept connection had been closed by the other side: once more, afresh */
            continue;
        }
        break;
    }
    if (rc <= 0) {
        if (rc == 0)
            snprintf(err, sizeof err, "%s closed the connection without answering", c->up_name);
        if (rc != PX_STOPPED) {
            LV_WARN("proxy: %s %s: %s", http_method_str((enum http_method)rq.method), dest, err);
            px_error(c, 502, "%s", err);
        }
        up_close(c);
        goto out;
    }
    keep = rq.keep && !rq.upgrade && req_done;
    if (response_head(c, rh, &rq, &rechunk, &keep) != 0) {
        keep = 0;
        up_close(c);
        goto out;
    }
    rc = copy_body(c, &rh->parser, c->ub, &c->upos, &c->ulen, c->up, c->fd, rechunk);
    if (rc != 0 || c->upos != c->ulen || !http_should_keep_alive(&rh->parser))
        up_close(c);
    if (rc != 0)
        keep = 0;
out:
    free(rh);
    return keep && !stopping(px);
}

/* Close the client's socket after a last response: first our side only,
 * then what the client still sends is read and dropped for a moment, so
 * that unread bytes do not make the kernel reset the connection before
 * the client read the response. */
static void linger_close(struct conn *c)
{
    char drop[4096];
    int64_t deadline = lv_mono_us() + 500 * 1000;
    size_t total = 0;

    shutdown(c->fd, SHUT_WR);
    while (total < (1u << 20)) {
        long r = px_read(c, c->fd, drop, sizeof drop, ms_left(deadline));
        if (r <= 0)
            break;
        total += (size_t)r;
    }
    close(c->fd);
    c->fd = -1;
}

/* A connection's thread: requests in turn until one side closes. */
static void conn_main(struct worker *w, void *arg)
{
    struct conn *c = arg;
    struct pxh_head *h = malloc(sizeof *h);
    const char *why = NULL;
    int rc;

    LV_UNUSED(w);
    while (h && !stopping(c->px)) {
        rc = read_head(c, h, &why);
        if (rc < 0) {
            px_error(c, -rc, "%s", why ? why : "bad request");
            break;
        }
        if (rc == 0 || !serve(c, h))
            break;
    }
    free(h);
    up_close(c);
    linger_close(c);
    pthread_mutex_lock(&c->px->lock);
    c->done = 1;
    c->px->nconns--;
    pthread_mutex_unlock(&c->px->lock);
}

/* ---- the acceptor ---- */

static void conn_free(struct conn *c)
{
    if (!c)
        return;
    free(c->rb);
    free(c->ub);
    free(c->ob);
    free(c);
}

/* Join and free the connections that finished (P3); all of them when all is 1. */
static void reap(struct proxy *px, int all)
{
    struct conn *done = NULL, **pp;

    pthread_mutex_lock(&px->lock);
    for (pp = &px->conns; *pp;) {
        struct conn *c = *pp;
        if (c->done || all) {
            *pp = c->next;
            c->next = done;
            done = c;
        } else {
            pp = &c->next;
        }
    }
    pthread_mutex_unlock(&px->lock);
    while (done) {
        struct conn *c = done;
        done = c->next;
        worker_stop(c->w); /* returns at once for a finished thread; others see stop_fd */
        conn_free(c);
    }
}

/* Refuse a connection beyond max_conns (or one that cannot be served): 503 and close. */
static void refuse(int fd, const char *why)
{
    char msg[512];
    int bn = snprintf(msg, sizeof msg, "litevault proxy: %s\n", why);
    char head[200];
    int hn = snprintf(head, sizeof head, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; "
                      "charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\nRetry-After: 1\r\n\r\n", bn);
    struct iovec v[2] = {{head, (size_t)hn}, {msg, (size_t)bn}};
    struct msghdr m = {.msg_iov = v, .msg_iovlen = 2};

    char drop[4096];

    if (sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        LV_DEBUG("proxy: refusing a connection: %s", strerror(errno));
    shutdown(fd, SHUT_WR);
    /* what the client already sent, read and dropped: unread bytes at close
     * would make the kernel reset the connection, and the client might lose the 503 */
    for (int i = 0; i < 16 && recv(fd, drop, sizeof drop, MSG_DONTWAIT) > 0; i++)
        ;
    close(fd);
}

/* Start a thread for the accepted socket fd. */
static void admit(struct proxy *px, int fd, const struct sockaddr_storage *sa, socklen_t sl)
{
    struct conn *c;
    char why[160];
    int one = 1;

    pthread_mutex_lock(&px->lock);
    int full = px->nconns >= px->o.max_conns;
    if (!full)
        px->nconns++;
    pthread_mutex_unlock(&px->lock);
    if (full) {
        snprintf(why, sizeof why, "too many connections (proxy.max-conns is %d); try again shortly", px->o.max_conns);
        refuse(fd, why);
        return;
    }
    c = calloc(1, sizeof *c);
    if (c) {
        c->rb = malloc(PX_BUF);
        c->ub = malloc(PX_BUF);
        c->ob = malloc(PX_OUT);
    }
    if (!c || !c->rb || !c->ub || !c->ob) {
        conn_free(c);
        goto fail;
    }
    c->px = px;
    c->fd = fd;
    c->up = -1;
    if (getnameinfo((const struct sockaddr *)sa, sl, c->peer, sizeof c->peer, NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(c->peer, sizeof c->peer, "unknown");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_mutex_lock(&px->lock); /* in the list before the thread can finish (P3) */
    c->next = px->conns;
    px->conns = c;
    pthread_mutex_unlock(&px->lock);
    if (worker_start("lv-proxy-conn", conn_main, c, &c->w) != 0) {
        pthread_mutex_lock(&px->lock);
        px->conns = c->next; /* still first: only this thread adds, reap only removes done ones */
        pthread_mutex_unlock(&px->lock);
        conn_free(c);
        goto fail;
    }
    return;
fail:
    pthread_mutex_lock(&px->lock);
    px->nconns--;
    pthread_mutex_unlock(&px->lock);
    refuse(fd, "out of memory or threads");
}

static void acceptor(struct worker *w, void *arg)
{
    struct proxy *px = arg;

    LV_UNUSED(w);
    while (!stopping(px)) {
        struct pollfd pf[2] = {{px->lfd, POLLIN, 0}, {px->stop_fd, POLLIN, 0}};
        int rc = poll(pf, 2, 1000);
        reap(px, 0);
        if (rc <= 0 || pf[1].revents)
            continue;
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(px->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
                LV_WARN("proxy: accept on %s: %s; pausing 100 ms", px->addr, strerror(errno));
                poll(&pf[1], 1, 100);
            }
            continue;
        }
        admit(px, fd, &sa, sl);
    }
}

/* ---- start, stop ---- */

static int listen_on(struct proxy *px, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE},
                    *res = NULL;
    char host[256], port[16];
    const char *why = NULL;
    int one = 1, rc;

    if (pxh_hostport(px->addr, host, sizeof host, port, sizeof port, &why) != 0) {
        lv_seterr(err, errlen, "proxy.addr %s: %s", px->addr, why);
        return LV_EINVAL;
    }
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        lv_seterr(err, errlen, "proxy.addr %s: %s", px->addr, gai_strerror(rc));
        return LV_EIO;
    }
    px->lfd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, res->ai_protocol);
    if (px->lfd < 0 || setsockopt(px->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(px->lfd, res->ai_addr, res->ai_addrlen) != 0 || listen(px->lfd, 128) != 0) {
        lv_seterr(err, errlen, "cannot listen on proxy.addr %s: %s", px->addr, strerror(errno));
        rc = LV_EIO;
    }
    freeaddrinfo(res);
    return rc;
}

int proxy_start(const struct proxy_opts *o, struct proxy **out, char *err, size_t errlen)
{
    struct proxy *px;
    const char *why = NULL;
    int rc = LV_ENOMEM;

    *out = NULL;
    if (!o->addr || !o->target || !o->is_primary || !o->primary_url || !o->txid || !o->commit_seq ||
        !o->wait_commit || o->max_conns < 1) {
        lv_seterr(err, errlen, "proxy: incomplete options");
        return LV_EINVAL;
    }
    px = calloc(1, sizeof *px);
    if (!px)
        return LV_ENOMEM;
    px->lfd = px->stop_fd = -1;
    pthread_mutex_init(&px->lock, NULL);
    px->o = *o;
    px->addr = strdup(o->addr);
    px->target = strdup(o->target);
    px->db = strdup(o->db ? o->db : "proxy.db");
    px->pass = calloc(o->npassthrough + 1, sizeof *px->pass);
    if (!px->addr || !px->target || !px->db || !px->pass)
        goto fail;
    for (size_t i = 0; i < o->npassthrough; i++)
        if (!(px->pass[i] = strdup(o->passthrough[i])))
            goto fail;
    px->o.addr = px->addr;
    px->o.target = px->target;
    px->o.db = px->db;
    px->o.passthrough = (const char *const *)px->pass;
    if (pxh_hostport(px->target, px->thost, sizeof px->thost, px->tport, sizeof px->tport, &why) != 0) {
        lv_seterr(err, errlen, "proxy.target %s: %s", px->target, why);
        rc = LV_EINVAL;
        goto fail;
    }
    px->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (px->stop_fd < 0) {
        lv_seterr(err, errlen, "proxy: eventfd: %s", strerror(errno));
        rc = LV_EIO;
        goto fail;
    }
    rc = listen_on(px, err, errlen);
    if (rc)
        goto fail;
    rc = worker_start("lv-proxy", acceptor, px, &px->acceptor);
    if (rc) {
        lv_seterr(err, errlen, "proxy: cannot start its thread");
        goto fail;
    }
    LV_INFO("proxy: listening on %s in front of %s (database %s, %zu passthrough pattern(s), max-lag-wait %lld ms)",
            px->addr, px->target, px->db, o->npassthrough, (long long)(o->max_lag_wait_us / 1000));
    *out = px;
    return 0;
fail:
    proxy_stop(px);
    return rc;
}

void proxy_stop(struct proxy *px)
{
    uint64_t one = 1;

    if (!px)
        return;
    __atomic_store_n(&px->stopping, 1, __ATOMIC_RELEASE);
    if (px->stop_fd >= 0 && write(px->stop_fd, &one, sizeof one) < 0)
        LV_WARN("proxy: eventfd write: %s", strerror(errno));
    worker_stop(px->acceptor);
    reap(px, 1);
    LV_ASSERT(px->conns == NULL && px->nconns == 0);
    if (px->lfd >= 0)
        close(px->lfd);
    if (px->stop_fd >= 0)
        close(px->stop_fd);
    for (size_t i = 0; px->pass && i < px->o.npassthrough; i++)
        free(px->pass[i]);
    free(px->pass);
    free(px->addr);
    free(px->target);
    free(px->db);
    pthread_mutex_destroy(&px->lock);
    free(px);
}
