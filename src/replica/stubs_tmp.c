/*
 * stubs_tmp.c -- TEMPORARY stand-ins, to be DELETED at the merge.
 *
 * The replication branch (helper D) calls functions that other helpers
 * write in parallel (PLAN.md): the stream encoder/decoder (helper A,
 * src/replica/stream.c), the HTTP token/streaming API, lease and cluster
 * files (helper B), and the capture-side apply API (the lead,
 * src/capture/db_apply.c).  This file provides just enough of them for the
 * branch to link and for tests/unit_replica.c to run; none of it is meant
 * to survive.  Each group is guarded by a macro so that a piece can be
 * switched off as soon as the real one exists in the tree
 * (-DLV_NO_STUB_STREAM etc., or delete the group).
 *
 * Deliberately small: the stream codec is a straightforward reading of the
 * format in stream.h; the dbreg replication calls are no-ops or refuse with
 * LV_EINVAL; dbreg_commit_seq/dbreg_wait_commit are a process-wide
 * counter that stubs_tmp_commit_bump() advances (tests call it).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/http.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/publish.h"
#include "base/sys.h"
#include "base/worker.h"
#include "capture/db.h"
#include "log/txlog.h"
#include "replica/cluster.h"
#include "replica/lease.h"
#include "replica/stream.h"

void stubs_tmp_commit_bump(void);

/* ================================================================ HTTP (helper B) */
#ifndef LV_NO_STUB_HTTP
int http_route_ex(struct http_server *s, const char *method, const char *path, http_handler_fn fn, void *ctx,
                  unsigned flags)
{
    LV_UNUSED(flags);
    return http_route(s, method, path, fn, ctx);
}

int http_set_token(struct http_server *s, const char *token)
{
    LV_UNUSED(s);
    if (token)
        LV_WARN("stubs_tmp: http.token is not enforced before the merge");
    return 0;
}

int http_set_tls(struct http_server *s, const char *cert_file, const char *key_file)
{
    LV_UNUSED(s);
    LV_UNUSED(cert_file);
    LV_UNUSED(key_file);
    return LV_EINVAL;
}
#endif

/* ================================================================ lease, cluster (helper B) */
#ifndef LV_NO_STUB_LEASE
struct lease {
    int primary;
    char url[1024];
};

int lease_open(const struct lease_conf *c, struct lease **out, char *err, size_t errlen)
{
    struct lease *l;

    *out = NULL;
    if (c->type && strcmp(c->type, "static") != 0) {
        lv_seterr(err, errlen, "lease.type %s is not supported", c->type);
        return LV_ECONFIG;
    }
    l = calloc(1, sizeof *l);
    if (!l)
        return LV_ENOMEM;
    l->primary = c->candidate || !c->primary_url || !*c->primary_url;
    snprintf(l->url, sizeof l->url, "%s", l->primary ? (c->advertise_url ? c->advertise_url : "") : c->primary_url);
    *out = l;
    return 0;
}

int lease_is_primary(struct lease *l)
{
    return l->primary;
}

int lease_primary_url(struct lease *l, char *buf, size_t n)
{
    if (!l->url[0])
        return LV_ENOENT;
    snprintf(buf, n, "%s", l->url);
    return 0;
}

void lease_on_change(struct lease *l, void (*fn)(void *arg), void *arg)
{
    LV_UNUSED(l);
    LV_UNUSED(fn);
    LV_UNUSED(arg);
}

void lease_close(struct lease *l)
{
    free(l);
}

static int stub_hexfile_load(const char *data_dir, const char *file, uint8_t id[16])
{
    char path[4096], buf[64] = "";
    void *data = NULL;
    size_t len = 0;
    int rc;

    snprintf(path, sizeof path, "%s/%s", data_dir, file);
    if (access(path, F_OK) != 0)
        return LV_ENOENT;
    rc = sys_read_file(path, &data, &len);
    if (rc)
        return rc;
    memcpy(buf, data, len < 32 ? len : 32);
    free(data);
    if (len < 32 || lv_unhex(buf, id, 16) != 0) {
        LV_ERROR("%s: not 32 hex digits", path);
        return LV_ECORRUPT;
    }
    return 0;
}

static int stub_hexfile_save(const char *data_dir, const char *file, const uint8_t id[16])
{
    char path[4096], hex[40];

    snprintf(path, sizeof path, "%s/%s", data_dir, file);
    lv_hex(id, 16, hex);
    strcat(hex, "\n");
    return publish_buf(path, hex, 33);
}

int cluster_id_load(const char *data_dir, uint8_t id[16])
{
    return stub_hexfile_load(data_dir, "cluster-id", id);
}

int cluster_id_save(const char *data_dir, const uint8_t id[16])
{
    return stub_hexfile_save(data_dir, "cluster-id", id);
}

int cluster_id_ensure(const char *data_dir, uint8_t id[16])
{
    int rc = cluster_id_load(data_dir, id);

    if (rc != LV_ENOENT)
        return rc;
    if (getrandom(id, 16, 0) != 16)
        return LV_EIO;
    return cluster_id_save(data_dir, id);
}

int node_id_ensure(const char *data_dir, char out[33])
{
    uint8_t id[16];
    int rc = stub_hexfile_load(data_dir, "node-id", id);

    if (rc == LV_ENOENT) {
        if (getrandom(id, 16, 0) != 16)
            return LV_EIO;
        rc = stub_hexfile_save(data_dir, "node-id", id);
    }
    if (rc == 0)
        lv_hex(id, 16, out);
    return rc;
}
#endif

/* ================================================================ capture (the lead) */
#ifndef LV_NO_STUB_CAPTURE
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int init;
    uint64_t seq;
    int replica;
} g_stub = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

static void stub_init(void)
{
    pthread_mutex_lock(&g_stub.mu);
    if (!g_stub.init) {
        pthread_cond_destroy(&g_stub.cv);
        lv_cond_init(&g_stub.cv);
        g_stub.init = 1;
    }
    pthread_mutex_unlock(&g_stub.mu);
}

void stubs_tmp_commit_bump(void)
{
    stub_init();
    pthread_mutex_lock(&g_stub.mu);
    g_stub.seq++;
    pthread_cond_broadcast(&g_stub.cv);
    pthread_mutex_unlock(&g_stub.mu);
}

void dbreg_set_replica(struct dbreg *r, const char *primary_url)
{
    LV_UNUSED(r);
    g_stub.replica = primary_url != NULL;
}

int dbreg_is_replica(const struct dbreg *r)
{
    LV_UNUSED(r);
    return g_stub.replica;
}

void dbreg_set_mount(struct dbreg *r, const char *mountpoint)
{
    LV_UNUSED(r);
    LV_UNUSED(mountpoint);
}

uint64_t dbreg_commit_seq(struct dbreg *r)
{
    uint64_t s;

    LV_UNUSED(r);
    pthread_mutex_lock(&g_stub.mu);
    s = g_stub.seq;
    pthread_mutex_unlock(&g_stub.mu);
    return s;
}

uint64_t dbreg_wait_commit(struct dbreg *r, uint64_t seen, int timeout_ms)
{
    int64_t end = lv_mono_us() + (int64_t)timeout_ms * 1000;
    uint64_t s;

    LV_UNUSED(r);
    stub_init();
    pthread_mutex_lock(&g_stub.mu);
    while (g_stub.seq == seen) {
        int64_t left = end - lv_mono_us();
        if (left <= 0)
            break;
        lv_cond_wait_us(&g_stub.cv, &g_stub.mu, left);
    }
    s = g_stub.seq;
    pthread_mutex_unlock(&g_stub.mu);
    return s;
}

int dbreg_apply(struct dbreg *r, const char *name, const struct db_rec *recs, size_t n, int wait_ms,
                struct db_apply_stats *st, char *err, size_t errlen)
{
    LV_UNUSED(r);
    LV_UNUSED(recs);
    LV_UNUSED(n);
    LV_UNUSED(wait_ms);
    LV_UNUSED(st);
    lv_seterr(err, errlen, "%s: dbreg_apply is a stub before the merge", name);
    return LV_EINVAL;
}

int dbreg_snap_begin(struct dbreg *r, const char *name, const struct db_image_info *info, struct db_snap **out,
                     char *err, size_t errlen)
{
    LV_UNUSED(r);
    LV_UNUSED(info);
    *out = NULL;
    lv_seterr(err, errlen, "%s: dbreg_snap_begin is a stub before the merge", name);
    return LV_EINVAL;
}

int dbreg_snap_pages(struct db_snap *s, uint32_t first_pgno, uint32_t count, const void *pages, char *err,
                     size_t errlen)
{
    LV_UNUSED(s);
    LV_UNUSED(first_pgno);
    LV_UNUSED(count);
    LV_UNUSED(pages);
    lv_seterr(err, errlen, "dbreg_snap_pages is a stub");
    return LV_EINVAL;
}

int dbreg_snap_end(struct db_snap *s, int wait_ms, char *err, size_t errlen)
{
    LV_UNUSED(s);
    LV_UNUSED(wait_ms);
    lv_seterr(err, errlen, "dbreg_snap_end is a stub");
    return LV_EINVAL;
}

void dbreg_snap_abort(struct db_snap *s)
{
    LV_UNUSED(s);
}

int dbreg_apply_drop(struct dbreg *r, const char *name, char *err, size_t errlen)
{
    LV_UNUSED(r);
    lv_seterr(err, errlen, "%s: dbreg_apply_drop is a stub", name);
    return LV_EINVAL;
}

int dbreg_apply_rename(struct dbreg *r, const char *from, const char *to, char *err, size_t errlen)
{
    LV_UNUSED(r);
    lv_seterr(err, errlen, "%s -> %s: dbreg_apply_rename is a stub", from, to);
    return LV_EINVAL;
}
#endif

/* ================================================================ stream codec (helper A) */
#ifndef LV_NO_STUB_STREAM
struct stream_dec {
    uint8_t *buf;
    size_t len, off, cap;
    uint32_t max;
    int failed;
    char err[256];
    char name[STREAM_NAME_MAX + 1], name2[STREAM_NAME_MAX + 1];
    char *text;
};

void stream_hdr_encode(uint8_t out[STREAM_HDR_SIZE], enum stream_type type, uint32_t len)
{
    lv_put32(out, STREAM_MAGIC);
    out[4] = (uint8_t)type;
    out[5] = 0;
    lv_put16(out + 6, 0);
    lv_put32(out + 8, len);
    lv_put32(out + 12, XXH32(out, 12, 0));
}

static int stub_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n >= 1 && n <= STREAM_NAME_MAX && name[0] != '/';
}

/* A frame of type with payload parts (p1, n1) (p2, n2) ... after NAMEs. */
static int stub_frame(enum stream_type type, const char *n1, const char *n2, const void *a, size_t alen,
                      const void *b, size_t blen, uint8_t **out, size_t *len)
{
    size_t l1 = n1 ? strlen(n1) : 0, l2 = n2 ? strlen(n2) : 0;
    size_t pl = (n1 ? 2 + l1 : 0) + (n2 ? 2 + l2 : 0) + alen + blen;
    uint8_t *p, *w;

    *out = NULL;
    if ((n1 && !stub_name_ok(n1)) || (n2 && !stub_name_ok(n2)) || pl > UINT32_MAX)
        return LV_EINVAL;
    p = malloc(STREAM_HDR_SIZE + pl);
    if (!p)
        return LV_ENOMEM;
    stream_hdr_encode(p, type, (uint32_t)pl);
    w = p + STREAM_HDR_SIZE;
    if (n1) {
        lv_put16(w, (uint16_t)l1);
        memcpy(w + 2, n1, l1);
        w += 2 + l1;
    }
    if (n2) {
        lv_put16(w, (uint16_t)l2);
        memcpy(w + 2, n2, l2);
        w += 2 + l2;
    }
    if (alen)
        memcpy(w, a, alen);
    if (blen)
        memcpy(w + alen, b, blen);
    *out = p;
    *len = STREAM_HDR_SIZE + pl;
    return 0;
}

int stream_enc_text(enum stream_type type, const char *text, uint8_t **out, size_t *len)
{
    return stub_frame(type, NULL, NULL, text, strlen(text), NULL, 0, out, len);
}

int stream_enc_record(const char *name, const void *rec, size_t rec_len, uint8_t **out, size_t *len)
{
    return stub_frame(ST_RECORD, name, NULL, rec, rec_len, NULL, 0, out, len);
}

int stream_enc_snap_begin(const char *name, const uint8_t dbid[16], uint64_t txid, int64_t time_us,
                          uint32_t page_size, uint32_t db_pages, uint64_t cksum, uint8_t **out, size_t *len)
{
    uint8_t b[48];

    memcpy(b, dbid, 16);
    lv_put64(b + 16, txid);
    lv_put64(b + 24, (uint64_t)time_us);
    lv_put32(b + 32, page_size);
    lv_put32(b + 36, db_pages);
    lv_put64(b + 40, cksum);
    return stub_frame(ST_SNAP_BEGIN, name, NULL, b, sizeof b, NULL, 0, out, len);
}

int stream_enc_snap_pages(const char *name, uint32_t first_pgno, uint32_t count, uint32_t page_size,
                          const void *pages, uint8_t **out, size_t *len)
{
    uint8_t b[8];

    lv_put32(b, first_pgno);
    lv_put32(b + 4, count);
    return stub_frame(ST_SNAP_PAGES, name, NULL, b, 8, pages, (size_t)count * page_size, out, len);
}

int stream_enc_name(enum stream_type type, const char *name, uint8_t **out, size_t *len)
{
    return stub_frame(type, name, NULL, NULL, 0, NULL, 0, out, len);
}

int stream_enc_rename(const char *from, const char *to, uint8_t **out, size_t *len)
{
    return stub_frame(ST_RENAME, from, to, NULL, 0, NULL, 0, out, len);
}

int stream_enc_heartbeat(int64_t time_us, uint64_t seq, uint8_t **out, size_t *len)
{
    uint8_t b[16];

    lv_put64(b, (uint64_t)time_us);
    lv_put64(b + 8, seq);
    return stub_frame(ST_HEARTBEAT, NULL, NULL, b, 16, NULL, 0, out, len);
}

int stream_dec_new(uint32_t max_frame, struct stream_dec **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return LV_ENOMEM;
    (*out)->max = max_frame ? max_frame : STREAM_DEFAULT_MAX_FRAME;
    return 0;
}

int stream_dec_push(struct stream_dec *d, const void *buf, size_t len)
{
    if (d->off > 0 && d->off == d->len)
        d->off = d->len = 0;
    if (d->len + len > d->cap) {
        if (d->off > 0) {
            memmove(d->buf, d->buf + d->off, d->len - d->off);
            d->len -= d->off;
            d->off = 0;
        }
        if (d->len + len > d->cap) {
            size_t nc = d->cap ? d->cap : 65536;
            while (nc < d->len + len)
                nc *= 2;
            uint8_t *nb = realloc(d->buf, nc);
            if (!nb)
                return LV_ENOMEM;
            d->buf = nb;
            d->cap = nc;
        }
    }
    memcpy(d->buf + d->len, buf, len);
    d->len += len;
    return 0;
}

static int stub_fail(struct stream_dec *d, const char *msg)
{
    snprintf(d->err, sizeof d->err, "%s", msg);
    d->failed = 1;
    return LV_ECORRUPT;
}

static int stub_name(struct stream_dec *d, const uint8_t **p, size_t *left, char *out)
{
    size_t n;

    if (*left < 2)
        return stub_fail(d, "payload too short for a name");
    n = lv_get16(*p);
    if (n < 1 || n > STREAM_NAME_MAX || n + 2 > *left)
        return stub_fail(d, "bad name length");
    memcpy(out, *p + 2, n);
    out[n] = 0;
    if (strlen(out) != n || out[0] == '/')
        return stub_fail(d, "bad name");
    *p += 2 + n;
    *left -= 2 + n;
    return 0;
}

int stream_dec_next(struct stream_dec *d, struct stream_frame *f)
{
    const uint8_t *h, *p;
    size_t avail = d->len - d->off, left;
    uint32_t plen;
    int rc;

    if (d->failed)
        return LV_ECORRUPT;
    if (avail < STREAM_HDR_SIZE)
        return 0;
    h = d->buf + d->off;
    if (lv_get32(h) != STREAM_MAGIC)
        return stub_fail(d, "bad magic");
    if (lv_get32(h + 12) != XXH32(h, 12, 0))
        return stub_fail(d, "bad header checksum");
    if (h[4] < ST_HELLO || h[4] > ST_ERROR || h[5] != 0 || lv_get16(h + 6) != 0)
        return stub_fail(d, "bad type or flags");
    plen = lv_get32(h + 8);
    if (plen > d->max)
        return stub_fail(d, "frame too large");
    if (avail < STREAM_HDR_SIZE + (size_t)plen)
        return 0;
    memset(f, 0, sizeof *f);
    f->type = h[4];
    p = h + STREAM_HDR_SIZE;
    left = plen;
    d->off += STREAM_HDR_SIZE + plen;
    free(d->text);
    d->text = NULL;
    switch (f->type) {
    case ST_HELLO:
    case ST_ERROR:
        d->text = malloc(left + 1);
        if (!d->text)
            return LV_ENOMEM;
        memcpy(d->text, p, left);
        d->text[left] = 0;
        f->text = d->text;
        f->text_len = left;
        return 1;
    case ST_HEARTBEAT:
        if (left != 16)
            return stub_fail(d, "bad heartbeat");
        f->time_us = (int64_t)lv_get64(p);
        f->seq = lv_get64(p + 8);
        return 1;
    default:
        break;
    }
    rc = stub_name(d, &p, &left, d->name);
    if (rc)
        return rc;
    f->name = d->name;
    switch (f->type) {
    case ST_RECORD:
        if (left < TXLOG_HDR_SIZE + TXLOG_TRAILER_SIZE || txlog_hdr_decode(p, &f->hdr) != 0 ||
            left != TXLOG_HDR_SIZE + f->hdr.stored_len + TXLOG_TRAILER_SIZE ||
            XXH3_64bits(p + TXLOG_HDR_SIZE, f->hdr.stored_len) != lv_get64(p + left - TXLOG_TRAILER_SIZE))
            return stub_fail(d, "bad record");
        f->rec = p;
        f->rec_len = left;
        return 1;
    case ST_SNAP_BEGIN:
        if (left != 48)
            return stub_fail(d, "bad SNAP_BEGIN");
        memcpy(f->dbid, p, 16);
        f->txid = lv_get64(p + 16);
        f->time_us = (int64_t)lv_get64(p + 24);
        f->page_size = lv_get32(p + 32);
        f->db_pages = lv_get32(p + 36);
        f->cksum = lv_get64(p + 40);
        return 1;
    case ST_SNAP_PAGES:
        if (left < 8)
            return stub_fail(d, "bad SNAP_PAGES");
        f->first_pgno = lv_get32(p);
        f->count = lv_get32(p + 4);
        if (f->count == 0 || (left - 8) % f->count != 0)
            return stub_fail(d, "bad SNAP_PAGES length");
        f->page_size = (uint32_t)((left - 8) / f->count);
        if (f->page_size < 512 || f->page_size > 65536 || (f->page_size & (f->page_size - 1)))
            return stub_fail(d, "bad SNAP_PAGES page size");
        f->pages = p + 8;
        return 1;
    case ST_SNAP_END:
    case ST_DROP:
        return left == 0 ? 1 : stub_fail(d, "trailing bytes");
    case ST_RENAME:
        rc = stub_name(d, &p, &left, d->name2);
        if (rc)
            return rc;
        f->name2 = d->name2;
        return left == 0 ? 1 : stub_fail(d, "trailing bytes");
    default:
        return stub_fail(d, "unknown type");
    }
}

size_t stream_dec_pending(const struct stream_dec *d)
{
    return d->len - d->off;
}

const char *stream_dec_error(const struct stream_dec *d)
{
    return d->err;
}

const char *stream_type_name(int type)
{
    static const char *const names[] = {"?", "HELLO", "RECORD", "SNAP_BEGIN", "SNAP_PAGES", "SNAP_END",
                                        "HEARTBEAT", "DROP", "RENAME", "ERROR"};
    return type >= 1 && type <= 9 ? names[type] : "?";
}

void stream_dec_free(struct stream_dec *d)
{
    if (!d)
        return;
    free(d->buf);
    free(d->text);
    free(d);
}
#endif
