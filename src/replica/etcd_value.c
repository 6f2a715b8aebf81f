/*
 * etcd_value.c -- base64 and the values of the etcd lease's keys (see
 * etcd_value.h; the keys themselves: lease_etcd.c, "KEYS").
 *
 * BASE64 is RFC 4648's standard alphabet with '=' padding, as Go's
 * encoding/json writes []byte (etcd's gateway).  The decoder accepts only
 * that: length a multiple of 4, padding only at the end (one or two '='),
 * no whitespace; it does not insist that the unused bits of the last
 * character be zero (Go's decoder does not either).  No Debian library we
 * link has a public base64 codec (libcurl's is internal).
 *
 * A MEMBER VALUE is a JSON object (UTF-8):
 *   {"url": STRING, "node": STRING, "proxy": STRING, "candidate": BOOL,
 *    "txids": {NAME: INTEGER, ...}, "terms": {NAME: INTEGER, ...}}
 * Only "url" is required; strings too long for their field are cut; a
 * TXID that is not a positive integer counts as 0.
 */
#include "replica/etcd_value.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lv.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *etcdv_b64_enc(const void *in, size_t n)
{
    const uint8_t *p = in;
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *o++ = B64[v >> 18 & 63];
        *o++ = B64[v >> 12 & 63];
        *o++ = i + 1 < n ? B64[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? B64[v & 63] : '=';
    }
    *o = 0;
    return out;
}

/* The value of base64 character ch, or -1. */
static int b64_val(char ch)
{
    const char *c = ch ? strchr(B64, ch) : NULL;

    return c ? (int)(c - B64) : -1;
}

char *etcdv_b64_dec(const char *s, size_t *len)
{
    size_t n = strlen(s), o = 0, pad = 0;
    char *out = NULL;
    uint32_t acc = 0;
    int bits = 0;

    if (n % 4)
        return NULL;
    if (n >= 1 && s[n - 1] == '=')
        pad = n >= 2 && s[n - 2] == '=' ? 2 : 1;
    out = malloc(n / 4 * 3 + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n - pad; i++) {
        int v = b64_val(s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)(acc >> bits & 0xff);
        }
    }
    out[o] = 0;
    *len = o;
    return out;
}

void etcdv_member_clear(struct etcdv_member *m)
{
    json_decref(m->txids);
    json_decref(m->terms);
    memset(m, 0, sizeof *m);
}

int etcdv_member_parse(const char *b64, struct etcdv_member *m)
{
    size_t len = 0;
    char *raw = etcdv_b64_dec(b64, &len);
    json_t *o = raw ? json_loadb(raw, len, 0, NULL) : NULL, *v;
    int rc = LV_ECORRUPT;

    memset(m, 0, sizeof *m);
    if (!json_is_object(o) || !json_is_string(json_object_get(o, "url")))
        goto out;
    snprintf(m->url, sizeof m->url, "%s", json_string_value(json_object_get(o, "url")));
    if (json_is_string(v = json_object_get(o, "node")))
        snprintf(m->node, sizeof m->node, "%s", json_string_value(v));
    if (json_is_string(v = json_object_get(o, "proxy")))
        snprintf(m->proxy, sizeof m->proxy, "%s", json_string_value(v));
    m->candidate = json_is_true(json_object_get(o, "candidate"));
    if (json_is_object(v = json_object_get(o, "txids")))
        m->txids = json_incref(v);
    if (json_is_object(v = json_object_get(o, "terms")))
        m->terms = json_incref(v);
    rc = 0;
out:
    json_decref(o);
    free(raw);
    return rc;
}

/* TXID of name in positions o (0 if absent or not a positive integer). */
static uint64_t txid_of(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);

    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* Compare one database's positions: <0, 0, >0 as theirs is behind, level
 * with or ahead of mine -- by (term, TXID) when both publish terms, else
 * by TXID. */
static int pos_cmp(json_t *theirs, json_t *their_terms, json_t *mine, json_t *my_terms, const char *name)
{
    uint64_t a, b;

    if (their_terms && my_terms && (a = txid_of(their_terms, name)) != (b = txid_of(my_terms, name)))
        return a > b ? 1 : -1;
    a = txid_of(theirs, name);
    b = txid_of(mine, name);
    return a > b ? 1 : a < b ? -1 : 0;
}

int etcdv_ahead_terms(json_t *theirs, json_t *their_terms, json_t *mine, json_t *my_terms)
{
    const char *name;
    json_t *x;
    int gt = 0;

    if (!json_is_object(their_terms) || !json_is_object(my_terms))
        their_terms = my_terms = NULL; /* an older node: TXIDs alone */
    json_object_foreach(mine, name, x) if (pos_cmp(theirs, their_terms, mine, my_terms, name) < 0) return 0;
    json_object_foreach(theirs, name, x) if (pos_cmp(theirs, their_terms, mine, my_terms, name) > 0) gt = 1;
    return gt;
}

int etcdv_ahead(json_t *theirs, json_t *mine)
{
    return etcdv_ahead_terms(theirs, NULL, mine, NULL);
}
