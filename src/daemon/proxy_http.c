/*
 * proxy_http.c -- message heads, the __txid cookie and addresses for the
 * built-in proxy (see proxy_http.h).
 *
 * Heads.  libhttp-parser runs over the whole head in one call; its
 * callbacks record offsets into the buffer.  on_headers_complete pauses
 * the parser, so http_parser_execute returns the bytes it took (the head,
 * perhaps but its final LF, which the parser expects again on resume:
 * the caller feeds the body from exactly that offset).
 * Invariants:
 *   X1. Every recorded offset + length is within the first h->len bytes of
 *       h->buf (the parser only reports bytes it was given and took).
 *   X2. A field's name and value are each one contiguous range: pieces
 *       given by successive callbacks of the same kind are adjacent in the
 *       buffer (one execute call over one buffer), so they are merged by
 *       extending the length.
 *   X3. At most PXH_MAX_FIELDS fields are recorded; one more fails the
 *       parse (LV_ENOSPC), never writes past f[].
 *   X4. Every field name of an accepted head is a token (RFC 9110 5.1).
 *       libhttp-parser as Debian builds it lets "Transfer-Encoding x" or a
 *       name with a space through; passed on, such a field could make the
 *       application frame a body differently from the proxy (request
 *       smuggling), so the head is refused instead.
 */
#include "daemon/proxy_http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/lv.h"

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct pxh_head *h = p->data;

    if (h->url_len == 0)
        h->url = (uint32_t)(at - h->buf);
    h->url_len += (uint32_t)n; /* X2 */
    return 0;
}

static int on_status(http_parser *p, const char *at, size_t n)
{
    struct pxh_head *h = p->data;

    if (h->reason_len == 0)
        h->reason = (uint32_t)(at - h->buf);
    h->reason_len += (uint32_t)n;
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t n)
{
    struct pxh_head *h = p->data;

    if (h->nf == 0 || h->in_value) {
        if (h->nf == PXH_MAX_FIELDS) { /* X3 */
            h->too_many = 1;
            return -1;
        }
        h->f[h->nf++] = (struct pxh_field){(uint32_t)(at - h->buf), 0, 0, 0};
        h->in_value = 0;
    }
    h->f[h->nf - 1].name_len += (uint32_t)n;
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t n)
{
    struct pxh_head *h = p->data;
    struct pxh_field *f;

    if (h->nf == 0)
        return -1;
    f = &h->f[h->nf - 1];
    if (!h->in_value) {
        f->value = (uint32_t)(at - h->buf);
        f->value_len = 0;
        h->in_value = 1;
    }
    f->value_len += (uint32_t)n;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct pxh_head *h = p->data;

    h->done = 1;
    http_parser_pause(p, 1);
    return h->skip_body ? 1 : 0;
}

static const http_parser_settings head_settings = {
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
};

/* Is s (n bytes) an RFC 9110 token (a field name): one or more tchar? */
static int is_token(const char *s, size_t n)
{
    static const char special[] = "!#$%&'*+-.^_`|~";

    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch && strchr(special, ch))))
            return 0;
    }
    return 1;
}

int pxh_parse_head(struct pxh_head *h, int type, int skip_body, const char *buf, size_t len, const char **why)
{
    size_t n;
    enum http_errno e;

    memset(h, 0, offsetof(struct pxh_head, f));
    h->nf = 0;
    h->too_many = h->in_value = h->done = 0;
    h->skip_body = skip_body;
    h->buf = buf;
    *why = NULL;
    http_parser_init(&h->parser, type == HTTP_RESPONSE ? HTTP_RESPONSE : HTTP_REQUEST);
    h->parser.data = h;
    n = http_parser_execute(&h->parser, &head_settings, buf, len > PXH_MAX_HEAD ? PXH_MAX_HEAD : len);
    e = HTTP_PARSER_ERRNO(&h->parser);
    if (h->too_many || e == HPE_HEADER_OVERFLOW) {
        *why = h->too_many ? "too many header fields" : "head too large";
        return LV_ENOSPC;
    }
    if (e == HPE_PAUSED && h->done) {
        for (size_t i = 0; i < h->nf; i++) {
            if (!is_token(buf + h->f[i].name, h->f[i].name_len)) { /* X4 */
                *why = "invalid character in a header field name";
                return LV_EINVAL;
            }
        }
        h->len = n;
        return n > 0 ? (int)n : LV_EINVAL;
    }
    if (e == HPE_OK) {
        if (len >= PXH_MAX_HEAD) {
            *why = "head too large";
            return LV_ENOSPC;
        }
        return 0;
    }
    *why = http_errno_description(e);
    return LV_EINVAL;
}

int pxh_is(const struct pxh_head *h, size_t i, const char *name)
{
    size_t n = strlen(name);

    return h->f[i].name_len == n && strncasecmp(h->buf + h->f[i].name, name, n) == 0;
}

int pxh_get(const struct pxh_head *h, const char *name, const char **v, size_t *n)
{
    for (size_t i = 0; i < h->nf; i++) {
        if (pxh_is(h, i, name)) {
            *v = h->buf + h->f[i].value;
            *n = h->f[i].value_len;
            return 1;
        }
    }
    return 0;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int pxh_has_token(const char *v, size_t n, const char *token)
{
    size_t tn = strlen(token), i = 0;

    while (i < n) {
        size_t s, e;
        while (i < n && (is_blank(v[i]) || v[i] == ','))
            i++;
        s = i;
        while (i < n && v[i] != ',')
            i++;
        e = i;
        while (e > s && is_blank(v[e - 1]))
            e--;
        if (e - s == tn && strncasecmp(v + s, token, tn) == 0)
            return 1;
    }
    return 0;
}

int pxh_cookie_txid(const char *v, size_t n, uint64_t *txid)
{
    static const char key[] = "__txid=";
    const size_t kn = sizeof key - 1;
    size_t i = 0;
    int found = 0;

    *txid = 0;
    while (i < n) {
        size_t s, e;
        while (i < n && (is_blank(v[i]) || v[i] == ';' || v[i] == ','))
            i++;
        s = i;
        while (i < n && v[i] != ';' && v[i] != ',')
            i++;
        e = i;
        while (e > s && is_blank(v[e - 1]))
            e--;
        if (e - s <= kn || memcmp(v + s, key, kn) != 0)
            continue;
        s += kn;
        if (e - s >= 2 && v[s] == '"' && v[e - 1] == '"') {
            s++;
            e--;
        }
        uint64_t x = 0;
        int ok = e > s && e - s <= 20;
        for (size_t j = s; ok && j < e; j++) {
            unsigned d = (unsigned)(v[j] - '0');
            if (d > 9 || x > (UINT64_MAX - d) / 10)
                ok = 0;
            else
                x = x * 10 + d;
        }
        if (ok && (!found || x > *txid)) {
            *txid = x;
            found = 1;
        }
    }
    return found;
}

/* Copy [s, e) into out (n bytes); 0 or LV_EINVAL when it does not fit or is empty. */
static int copy_part(const char *s, const char *e, char *out, size_t n)
{
    if (e <= s || (size_t)(e - s) >= n)
        return LV_EINVAL;
    memcpy(out, s, (size_t)(e - s));
    out[e - s] = '\0';
    return 0;
}

int pxh_hostport(const char *addr, char *host, size_t hn, char *port, size_t pn, const char **why)
{
    const char *s = addr, *end, *hend, *colon = NULL;
    int url = 0;

    *why = NULL;
    if (strncmp(s, "https://", 8) == 0) {
        *why = "https is not supported (the proxy forwards plain HTTP; use http://)";
        return LV_EINVAL;
    }
    if (strncmp(s, "http://", 7) == 0) {
        s += 7;
        url = 1;
    } else if (strstr(s, "://")) {
        *why = "unsupported scheme (use HOST:PORT or http://HOST:PORT)";
        return LV_EINVAL;
    }
    for (const char *c = addr; *c; c++) {
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '?' || *c == '#' || *c == '@') {
            *why = "no spaces, credentials (@), query (?) or fragment (#)";
            return LV_EINVAL;
        }
    }
    end = s + strcspn(s, "/");
    if (*end && (!url || strcmp(end, "/") != 0)) {
        *why = url ? "no path after the host (use http://HOST:PORT)" : "use HOST:PORT (no path)";
        return LV_EINVAL;
    }
    if (*s == '[') {
        hend = memchr(s, ']', (size_t)(end - s));
        if (!hend) {
            *why = "bad IPv6 host (write [::1]:PORT)";
            return LV_EINVAL;
        }
        if (copy_part(s + 1, hend, host, hn) != 0) {
            *why = "missing or too long host";
            return LV_EINVAL;
        }
        if (hend + 1 < end && hend[1] != ':') {
            *why = "bad IPv6 host (write [::1]:PORT)";
            return LV_EINVAL;
        }
        colon = hend + 1 < end ? hend + 1 : NULL;
    } else {
        colon = memchr(s, ':', (size_t)(end - s));
        hend = colon ? colon : end;
        if (copy_part(s, hend, host, hn) != 0) {
            *why = "missing or too long host";
            return LV_EINVAL;
        }
        if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1))) {
            *why = "bare IPv6 address (write [::1]:PORT)";
            return LV_EINVAL;
        }
    }
    if (!colon) {
        if (!url) {
            *why = "missing port (use HOST:PORT)";
            return LV_EINVAL;
        }
        return copy_part("80", "80" + 2, port, pn) == 0 ? 0 : LV_EINVAL;
    }
    long v = 0;
    const char *d = colon + 1;
    for (; d < end && *d >= '0' && *d <= '9' && v <= 65535; d++)
        v = v * 10 + (*d - '0');
    if (d != end || d == colon + 1 || v < 1 || v > 65535) {
        *why = "bad port (use a port from 1 to 65535)";
        return LV_EINVAL;
    }
    return copy_part(colon + 1, end, port, pn);
}

int pxh_target_path(const char *url, size_t url_len, char *out, size_t n)
{
    struct http_parser_url u;

    if (url_len == 1 && url[0] == '*')
        return copy_part(url, url + 1, out, n);
    http_parser_url_init(&u);
    if (url_len == 0 || http_parser_parse_url(url, url_len, 0, &u) != 0)
        return LV_EINVAL;
    if (!(u.field_set & (1 << UF_PATH)))
        return copy_part("/", "/" + 1, out, n);
    return copy_part(url + u.field_data[UF_PATH].off,
                     url + u.field_data[UF_PATH].off + u.field_data[UF_PATH].len, out, n);
}
