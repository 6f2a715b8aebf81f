/*
 * fuzz_proxy.c -- libFuzzer harness for the proxy's HTTP pieces
 * (src/daemon/proxy_http.c): pxh_parse_head on requests and responses,
 * then the body on the same paused parser, as proxy.c continues; the
 * __txid cookie; pxh_hostport; pxh_target_path.  The input is bytes from
 * a client or an application.
 *
 * Checked beyond "no crash, no leak, no UB":
 *   - an accepted head's length is within the input, and every recorded
 *     offset + length (URL, reason, each field's name and value) lies
 *     within the head (X1); field names are tokens (X4);
 *   - parsing is deterministic: the same input parses to the same length;
 *   - the input split in two at any point (first part alone) never gives a
 *     head longer than the part (0 "incomplete" or an error instead);
 *   - pxh_cookie_txid finds a value only where "__txid=" occurs;
 *   - pxh_hostport's outputs are NUL-terminated within their buffers.
 */
#include <string.h>

#include "base/lv.h"
#include "daemon/proxy_http.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...) do { fprintf(stderr, "fuzz_proxy: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

static struct pxh_head g_h, g_h2;

static int on_body(http_parser *p, const char *at, size_t n)
{
    const char **end = p->data;
    if (at + n > *end)
        FAIL("body piece past the input");
    return 0;
}

static int on_done(http_parser *p)
{
    http_parser_pause(p, 1);
    return 0;
}

static void check_head(const struct pxh_head *h, size_t len, int rc)
{
    size_t hl = (size_t)rc;

    if (hl > len || hl > PXH_MAX_HEAD)
        FAIL("head length %zu beyond the input (%zu)", hl, len);
    if ((size_t)h->url + h->url_len > hl || (size_t)h->reason + h->reason_len > hl)
        FAIL("URL or reason past the head");
    if (h->nf > PXH_MAX_FIELDS)
        FAIL("%zu fields", h->nf);
    for (size_t i = 0; i < h->nf; i++) {
        const struct pxh_field *f = &h->f[i];
        if ((size_t)f->name + f->name_len > hl || (size_t)f->value + f->value_len > hl || f->name_len == 0)
            FAIL("field %zu past the head", i);
    }
}

static void one(int type, int skip, const char *buf, size_t len)
{
    const char *why;
    int rc = pxh_parse_head(&g_h, type, skip, buf, len, &why);

    if (rc > 0) {
        check_head(&g_h, len, rc);
        int rc2 = pxh_parse_head(&g_h2, type, skip, buf, len, &why);
        if (rc2 != rc)
            FAIL("not deterministic: %d then %d", rc, rc2);
        size_t cut = (size_t)rc / 2;
        rc2 = pxh_parse_head(&g_h2, type, skip, buf, cut, &why);
        if (rc2 > 0 && (size_t)rc2 > cut)
            FAIL("a head of %d bytes from %zu", rc2, cut);
        /* the body, on the paused parser, as proxy.c continues */
        const char *end = buf + len;
        http_parser_settings s = {.on_body = on_body, .on_message_complete = on_done};
        g_h.parser.data = &end;
        http_parser_pause(&g_h.parser, 0);
        size_t k = http_parser_execute(&g_h.parser, &s, buf + rc, len - (size_t)rc);
        if (k > len - (size_t)rc)
            FAIL("body parse took %zu of %zu bytes", k, len - (size_t)rc);
    } else if (rc != 0 && rc != LV_EINVAL && rc != LV_ENOSPC) {
        FAIL("unexpected result %d", rc);
    } else if (rc != 0 && !why) {
        FAIL("an error without a reason");
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init("proxy", "input");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    char host[64], port[8], path[256], *z;
    const char *why;
    uint64_t t;

    one(HTTP_REQUEST, 0, buf, size);
    one(HTTP_RESPONSE, size > 0 && (data[0] & 1), buf, size);
    if (pxh_cookie_txid(buf, size, &t) && !memmem(buf, size, "__txid=", 7))
        FAIL("a cookie without __txid=");
    pxh_target_path(buf, size, path, sizeof path);
    z = malloc(size + 1);
    if (!z)
        return 0;
    memcpy(z, buf, size);
    z[size] = '\0';
    memset(host, 'x', sizeof host);
    memset(port, 'x', sizeof port);
    if (pxh_hostport(z, host, sizeof host, port, sizeof port, &why) == 0 &&
        (!memchr(host, 0, sizeof host) || !memchr(port, 0, sizeof port)))
        FAIL("hostport outputs not terminated");
    free(z);
    return 0;
}
