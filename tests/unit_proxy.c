/*
 * unit_proxy.c -- the proxy's HTTP pieces (src/daemon/proxy_http.c): heads
 * parsed whole or not yet, the body continued on the paused parser, the
 * __txid cookie, addresses and request paths.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lv.h"
#include "daemon/proxy_http.h"

static struct pxh_head *new_head(void)
{
    struct pxh_head *h = malloc(sizeof *h);
    cr_assert_not_null(h);
    return h;
}

static int body_n;
static int msg_done;
static int on_body(http_parser *p, const char *at, size_t n)
{
    LV_UNUSED(p);
    LV_UNUSED(at);
    body_n += (int)n;
    return 0;
}
static int on_done(http_parser *p)
{
    msg_done = 1;
    http_parser_pause(p, 1);
    return 0;
}

Test(proxy_http, request_head_and_body)
{
    const char *req = "POST /rows?x=1 HTTP/1.1\r\nHost: a\r\nCookie: a=b; __txid=42\r\nContent-Length: 5\r\n"
                      "Connection: keep-alive, X-Drop\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
    struct pxh_head *h = new_head();
    const char *why, *v;
    size_t n;
    int rc = pxh_parse_head(h, HTTP_REQUEST, 0, req, strlen(req), &why);

    cr_assert_gt(rc, 0);
    cr_assert_eq(h->parser.method, HTTP_POST);
    cr_assert_eq(h->url_len, strlen("/rows?x=1"));
    cr_assert_eq(strncmp(req + h->url, "/rows?x=1", h->url_len), 0);
    cr_assert_eq(h->nf, 4);
    cr_assert(pxh_get(h, "COOKIE", &v, &n));
    cr_assert_eq(n, strlen("a=b; __txid=42"));
    uint64_t t;
    cr_assert(pxh_cookie_txid(v, n, &t));
    cr_assert_eq(t, 42);
    cr_assert(pxh_get(h, "connection", &v, &n));
    cr_assert(pxh_has_token(v, n, "x-drop"));
    cr_assert_not(pxh_has_token(v, n, "drop"));
    /* the body continues on the same parser, from rc */
    http_parser_settings s = {.on_body = on_body, .on_message_complete = on_done};
    http_parser_pause(&h->parser, 0);
    size_t k = http_parser_execute(&h->parser, &s, req + rc, strlen(req) - (size_t)rc);
    cr_assert(msg_done);
    cr_assert_eq(body_n, 5);
    cr_assert_str_eq(req + rc + k, "GET / HTTP/1.1\r\n\r\n", "the pipelined request stays");
    free(h);
}

Test(proxy_http, incomplete_malformed_and_too_large)
{
    struct pxh_head *h = new_head();
    const char *why;
    char *big;

    cr_assert_eq(pxh_parse_head(h, HTTP_REQUEST, 0, "GET / HTTP/1.1\r\nHost: a\r\n", 25, &why), 0);
    cr_assert_eq(pxh_parse_head(h, HTTP_REQUEST, 0, "GET / HT", 8, &why), 0);
    cr_assert_eq(pxh_parse_head(h, HTTP_REQUEST, 0, "GARBAGE\r\n\r\n", 11, &why), LV_EINVAL);
    cr_assert_not_null(why);
    cr_assert_eq(pxh_parse_head(h, HTTP_REQUEST, 0, "GET / HTTP/1.1\r\nBad Field: x\r\n\r\n", 32, &why), LV_EINVAL);
    cr_assert_eq(pxh_parse_head(h, HTTP_RESPONSE, 0, "HTTP/1.1 2x OK\r\n\r\n", 18, &why), LV_EINVAL);
    big = malloc(PXH_MAX_HEAD + 100);
    cr_assert_not_null(big);
    size_t n = (size_t)sprintf(big, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < PXH_MAX_FIELDS + 1; i++)
        n += (size_t)sprintf(big + n, "X-%d: 1\r\n", i);
    n += (size_t)sprintf(big + n, "\r\n");
    cr_assert_eq(pxh_parse_head(h, HTTP_REQUEST, 0, big, n, &why), LV_ENOSPC, "one field too many");
    n = (size_t)sprintf(big, "GET / HTTP/1.1\r\nX: ");
    memset(big + n, 'a', PXH_MAX_HEAD + 100 - n);
    cr_assert_eq(pxh_parse_head(h, HTTP_REQUEST, 0, big, PXH_MAX_HEAD + 100, &why), LV_ENOSPC, "head too large");
    free(big);
    free(h);
}

Test(proxy_http, response_head)
{
    const char *resp = "HTTP/1.1 201 Created Here\r\nContent-Length: 3\r\n\r\nabc";
    struct pxh_head *h = new_head();
    const char *why;
    int rc = pxh_parse_head(h, HTTP_RESPONSE, 0, resp, strlen(resp), &why);

    cr_assert_gt(rc, 0);
    cr_assert_eq(h->parser.status_code, 201);
    cr_assert_eq(strncmp(resp + h->reason, "Created Here", h->reason_len), 0);
    cr_assert_eq(h->reason_len, 12);
    cr_assert(h->parser.flags & F_CONTENTLENGTH);
    free(h);
}

Test(proxy_http, cookie)
{
    uint64_t t;

    cr_assert(pxh_cookie_txid("__txid=7", 8, &t) && t == 7);
    cr_assert(pxh_cookie_txid("x=1;__txid=\"9\" ; y=2", 20, &t) && t == 9);
    cr_assert(pxh_cookie_txid("__txid=3; __txid=11; __txid=5", 29, &t) && t == 11, "the largest wins");
    cr_assert(pxh_cookie_txid("__txid=18446744073709551615", 27, &t) && t == UINT64_MAX);
    cr_assert_not(pxh_cookie_txid("__txid=18446744073709551616", 27, &t), "overflow ignored");
    cr_assert_not(pxh_cookie_txid("__txid=", 7, &t));
    cr_assert_not(pxh_cookie_txid("__txid=-1", 9, &t));
    cr_assert_not(pxh_cookie_txid("__txid=1x", 9, &t));
    cr_assert_not(pxh_cookie_txid("a__txid=1", 9, &t));
    cr_assert_not(pxh_cookie_txid("", 0, &t));
}

Test(proxy_http, hostport_and_path)
{
    char host[64], port[8], path[64];
    const char *why;

    cr_assert_eq(pxh_hostport("127.0.0.1:8080", host, sizeof host, port, sizeof port, &why), 0);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_str_eq(port, "8080");
    cr_assert_eq(pxh_hostport("http://db1/", host, sizeof host, port, sizeof port, &why), 0);
    cr_assert_str_eq(host, "db1");
    cr_assert_str_eq(port, "80");
    cr_assert_eq(pxh_hostport("http://[::1]:81", host, sizeof host, port, sizeof port, &why), 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_str_eq(port, "81");
    cr_assert_eq(pxh_hostport("[fd00::2]:9", host, sizeof host, port, sizeof port, &why), 0);
    cr_assert_str_eq(host, "fd00::2");
    const char *bad[] = {"db1", "https://db1:1", "ftp://db1:1", "http://db1:1/x", "db1:0", "db1:65536", ":80",
                         "::1:80", "http://u@db1:1", "db1:8a", "[::1", "[::1]x:1", ""};
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++)
        cr_assert_eq(pxh_hostport(bad[i], host, sizeof host, port, sizeof port, &why), LV_EINVAL, "%s", bad[i]);
    cr_assert_eq(pxh_target_path("/a/b.css?v=1", 12, path, sizeof path), 0);
    cr_assert_str_eq(path, "/a/b.css");
    cr_assert_eq(pxh_target_path("http://h:1/x/y?q", 16, path, sizeof path), 0);
    cr_assert_str_eq(path, "/x/y");
    cr_assert_eq(pxh_target_path("*", 1, path, sizeof path), 0);
    cr_assert_str_eq(path, "*");
    cr_assert_eq(pxh_target_path("", 0, path, sizeof path), LV_EINVAL);
}
