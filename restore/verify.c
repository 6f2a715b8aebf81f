/*
 * verify.c -- `archive verify` (see verify.h for what is checked).
 *
 * Objects are fetched snapshots first, then segments in manifest order,
 * through restore/fetch.c (size and XXH3 checked there).  Each object is
 * read completely with a memory segment reader; draining every record's
 * pages makes the reader check the payload trailer and page numbers.  For
 * every record a "fact" (TXID, pre, post, commit time, object index) is
 * kept; after all objects, facts sorted by TXID give the cross-object
 * checks: equal TXIDs agree (overlapping compaction levels), and the post
 * checksum of TXID x equals the pre checksum of TXID x+1 (chain across
 * object boundaries; a snapshot record's pre checksum is not compared:
 * a snapshot starts a database afresh), and terms never go back across
 * objects either (txlog L10; within an object the reader checks it).
 * Memory: one object window plus 48 bytes per record.
 */
#include "restore/verify.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cksum.h"
#include "restore/fetch.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "archive/manifest.h"
#include "restore/restore.h"
#include "store/store.h"
#include "archive/tail.h"
#include "log/txlog.h"

/* One record seen in one object. */
struct fact {
    uint64_t txid;     /* TXID */
    uint64_t pre;      /* pre checksum */
    uint64_t post;     /* post checksum */
    int64_t time_us;   /* commit time */
    uint64_t term;     /* the primary term that wrote it (txlog L10) */
    uint32_t obj;      /* index of the object */
    uint8_t snap;      /* from a snapshot record */
};

struct vstate {
    struct verify_result *res;  /* result */
    char **keys;                /* full key of each object (owned) */
    struct fact *facts;         /* facts (owned) */
    size_t nfacts, cap;
    uint8_t *badobj;            /* 1 if object i was reported */
};

static int add_bad(struct vstate *vs, size_t obj, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int add_bad(struct vstate *vs, size_t obj, const char *key, const char *fmt, ...)
{
    struct verify_result *r = vs->res;
    struct verify_bad *v;
    va_list ap;

    if (vs->badobj && obj != (size_t)-1 && vs->badobj[obj])
        return 0; /* one report per object is enough */
    v = realloc(r->bad, (r->nbad + 1) * sizeof *v);
    if (!v)
        return LV_ENOMEM;
    r->bad = v;
    v = &r->bad[r->nbad++];
    snprintf(v->key, sizeof v->key, "%s", key);
    va_start(ap, fmt);
    vsnprintf(v->why, sizeof v->why, fmt, ap);
    va_end(ap);
    if (vs->badobj && obj != (size_t)-1)
        vs->badobj[obj] = 1;
    LV_ERROR("verify: %s: %s", v->key, v->why);
    return 0;
}

static int add_fact(struct vstate *vs, const struct txlog_hdr *h, size_t obj)
{
    if (lv_grow((void **)&vs->facts, &vs->cap, vs->nfacts, sizeof *vs->facts, 1024) != 0)
        return LV_ENOMEM;
    vs->facts[vs->nfacts++] = (struct fact){ h->txid, h->pre_cksum, h->post_cksum, h->time_us, h->term,
                                             (uint32_t)obj, (uint8_t)((h->flags & TXLOG_F_SNAPSHOT) != 0) };
    return 0;
}

/* Check one downloaded object against its manifest entry (seg or snap). */
static int check_object(struct vstate *vs, size_t idx, const struct fetch_res *fr, const struct manifest_seg *seg,
                        const struct manifest_snap *snap)
{
    struct txlog_reader *r = NULL;
    struct txlog_hdr h, first, lasth;
    uint64_t n = 0, pages_x = 0;
    uint32_t pgno;
    const void *data;
    size_t nf0 = vs->nfacts;
    int rc;

    rc = txlog_reader_open_mem(fr->buf, fr->len, fr->key, &r);
    if (rc) {
        add_bad(vs, idx, fr->key, "unreadable segment header: %s", r ? txlog_reader_error(r) : lv_strerror(rc));
        goto out;
    }
    memset(&first, 0, sizeof first);
    memset(&lasth, 0, sizeof lasth);
    for (;;) {
        rc = txlog_reader_next(r, &h);
        if (rc == LV_ENOENT)
            break;
        if (rc) {
            add_bad(vs, idx, fr->key, "after TXID %" PRIu64 ": %s", n ? lasth.txid : 0, txlog_reader_error(r));
            goto out;
        }
        pages_x = 0;
        while ((rc = txlog_reader_page(r, &pgno, &data)) == 0)
            pages_x ^= cksum_page(pgno, data, h.page_size);
        if (rc != LV_ENOENT) {
            add_bad(vs, idx, fr->key, "TXID %" PRIu64 ": %s", h.txid, txlog_reader_error(r));
            goto out;
        }
        if (n == 0)
            first = h;
        lasth = h;
        n++;
        vs->res->records++;
        rc = add_fact(vs, &h, idx);
        if (rc)
            goto out_rc;
    }
    if (n == 0) {
        add_bad(vs, idx, fr->key, "holds no records");
        goto out;
    }
    if (snap) {
        if (n != 1 || !(first.flags & TXLOG_F_SNAPSHOT))
            add_bad(vs, idx, fr->key, "TXID %" PRIu64 ": not exactly one snapshot record (%" PRIu64 " records)",
                    first.txid, n);
        else if (first.txid != snap->txid || first.time_us != snap->time_us || first.page_size != snap->page_size ||
                 first.db_pages != snap->db_pages)
            add_bad(vs, idx, fr->key, "TXID %" PRIu64 ": snapshot record differs from the manifest entry "
                    "(TXID, time, page size or pages)", first.txid);
        else if (first.post_cksum != snap->db_cksum || pages_x != snap->db_cksum)
            add_bad(vs, idx, fr->key, "TXID %" PRIu64 ": snapshot content checksum %016" PRIx64 " / record post %016"
                    PRIx64 " differ from the manifest's db_checksum %016" PRIx64, first.txid, pages_x,
                    first.post_cksum, snap->db_cksum);
    } else {
        if (first.txid != seg->first_txid || lasth.txid != seg->last_txid)
            add_bad(vs, idx, fr->key, "TXID %" PRIu64 ": holds TXIDs %" PRIu64 "..%" PRIu64 ", the manifest says %"
                    PRIu64 "..%" PRIu64, first.txid != seg->first_txid ? first.txid : lasth.txid, first.txid,
                    lasth.txid, seg->first_txid, seg->last_txid);
        else if (first.pre_cksum != seg->pre_cksum || lasth.post_cksum != seg->post_cksum)
            add_bad(vs, idx, fr->key, "TXID %" PRIu64 ": boundary checksums differ from the manifest",
                    first.pre_cksum != seg->pre_cksum ? first.txid : lasth.txid);
        else if (first.time_us != seg->first_time_us || lasth.time_us != seg->last_time_us)
            add_bad(vs, idx, fr->key, "TXID %" PRIu64 ": commit times differ from the manifest",
                    first.time_us != seg->first_time_us ? first.txid : lasth.txid);
    }
out:
    if (vs->badobj[idx])
        vs->nfacts = nf0; /* facts of a bad object are not trusted */
    txlog_reader_close(r);
    return 0;
out_rc:
    txlog_reader_close(r);
    return rc;
}

/* msg without a leading "object <key>: " / "object <key> " (the report names the key already). */
static const char *strip_key(const char *msg, const char *key)
{
    size_t k = strlen(key);

    if (strncmp(msg, "object ", 7) == 0 && strncmp(msg + 7, key, k) == 0)
        return msg + 7 + k + (msg[7 + k] == ':' ? 2 : msg[7 + k] == ' ' ? 1 : 0);
    return msg;
}

static int fact_cmp(const void *pa, const void *pb)
{
    const struct fact *a = pa, *b = pb;

    if (a->txid != b->txid)
        return a->txid < b->txid ? -1 : 1;
    return a->obj < b->obj ? -1 : a->obj > b->obj;
}

static void cross_check(struct vstate *vs)
{
    size_t i;

    qsort(vs->facts, vs->nfacts, sizeof *vs->facts, fact_cmp);
    for (i = 1; i < vs->nfacts; i++) {
        const struct fact *p = &vs->facts[i - 1], *c = &vs->facts[i];
        if (p->txid == c->txid) {
            if (p->post != c->post || p->time_us != c->time_us ||
                (!p->snap && !c->snap && (p->pre != c->pre || p->term != c->term)))
                add_bad(vs, c->obj, vs->keys[c->obj],
                        "TXID %" PRIu64 ": disagrees with overlapping object %s (checksums, commit time or term)",
                        c->txid, vs->keys[p->obj]);
        } else if (c->txid == p->txid + 1 && !c->snap && c->pre != p->post && c->obj != p->obj) {
            add_bad(vs, c->obj, vs->keys[c->obj],
                    "TXID %" PRIu64 ": pre checksum %016" PRIx64 " does not continue TXID %" PRIu64 " of %s (post %016"
                    PRIx64 ")", c->txid, c->pre, p->txid, vs->keys[p->obj], p->post);
        } else if (c->txid == p->txid + 1 && !c->snap && c->term < p->term && c->obj != p->obj) {
            add_bad(vs, c->obj, vs->keys[c->obj],
                    "TXID %" PRIu64 ": term goes back: term %" PRIu64 " after term %" PRIu64 " of TXID %" PRIu64
                    " in %s (a deposed primary's record)", c->txid, c->term, p->term, p->txid, vs->keys[p->obj]);
        }
    }
}

/* The counts and TXID range of m (with its tail) into res. */
static void verify_facts(const struct manifest *m, struct verify_result *res)
{
    res->snapshots = m->nsnaps;
    res->segments = m->nsegs;
    res->objects = m->nsnaps + m->nsegs;
    res->last_txid = manifest_last_txid(m);
    res->first_txid = m->nsnaps ? m->snaps[0].txid : 0;
    if (m->nsegs && (!res->first_txid || m->segs[0].first_txid < res->first_txid))
        res->first_txid = m->segs[0].first_txid;
}

/* Object i of m in download order: the snapshots, then the segments. */
static void verify_object_facts(const struct manifest *m, size_t i, const char **key, uint64_t *size, uint64_t *xxh3,
                                uint64_t *first, uint64_t *last)
{
    if (i < m->nsnaps) {
        *key = m->snaps[i].key;
        *size = m->snaps[i].size;
        *xxh3 = m->snaps[i].xxh3;
        *first = *last = m->snaps[i].txid;
    } else {
        const struct manifest_seg *s = &m->segs[i - m->nsnaps];
        *key = s->key;
        *size = s->size;
        *xxh3 = s->xxh3;
        *first = s->first_txid;
        *last = s->last_txid;
    }
}

/* Download every object of m through the fetcher and check each one
 * (check_object), then across objects (cross_check).  0 or negative. */
static int verify_objects(struct store *st, const char *db, const struct manifest *m, int parallel, struct vstate *vs,
                          char *err, size_t errlen)
{
    struct verify_result *res = vs->res;
    size_t n = m->nsnaps + m->nsegs, i;
    struct fetch_obj *fo = calloc(n ? n : 1, sizeof *fo);
    struct fetch *f = NULL;
    uint64_t first, last, size, xxh3;
    const char *k;
    int rc = 0;

    vs->keys = calloc(n ? n : 1, sizeof *vs->keys);
    vs->badobj = calloc(n ? n : 1, 1);
    if (!vs->keys || !vs->badobj || !fo) {
        rc = LV_ENOMEM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        verify_object_facts(m, i, &k, &fo[i].size, &fo[i].xxh3, &first, &last);
        if (asprintf(&vs->keys[i], "%s/%s/%s", db, res->dbid, k) < 0) {
            vs->keys[i] = NULL;
            rc = LV_ENOMEM;
            goto out;
        }
        fo[i].key = vs->keys[i];
    }
    rc = fetch_start(st, fo, n, parallel > 0 ? parallel : 4, 0, 0, &f);
    if (rc) {
        snprintf(err, errlen, "cannot start the download workers: %s", lv_strerror(rc));
        goto out;
    }
    for (i = 0; i < n && rc == 0; i++) {
        struct fetch_res fr;
        int is_snap = i < m->nsnaps;

        fetch_wait(f, i, -1, &fr);
        res->bytes += fr.len;
        verify_object_facts(m, i, &k, &size, &xxh3, &first, &last);
        if (fr.rc)
            rc = add_bad(vs, i, fr.key, "%s (TXIDs %" PRIu64 "..%" PRIu64 ")", strip_key(fr.err, fr.key), first,
                         last);
        else
            rc = check_object(vs, i, &fr, is_snap ? NULL : &m->segs[i - m->nsnaps], is_snap ? &m->snaps[i] : NULL);
        fetch_release(f, i);
    }
    if (rc == 0)
        cross_check(vs);
out:
    fetch_stop(f);
    free(fo);
    return rc;
}

int verify_lineage(const char *url, const struct store_opts *sopts, const char *db, const char *lineage,
                   int parallel, struct verify_result *res, char *err, size_t errlen)
{
    struct store *st = NULL;
    struct manifest m;
    struct tail_result tail;
    struct vstate vs;
    char merr[900], key[1200];
    int64_t t0 = lv_mono_us();
    int rc;

    memset(res, 0, sizeof *res);
    memset(&m, 0, sizeof m);
    memset(&tail, 0, sizeof tail);
    memset(&vs, 0, sizeof vs);
    vs.res = res;
    rc = restore_open_archive(url, sopts, &st, NULL, err, errlen);
    if (rc)
        goto out;
    rc = restore_find_lineage(st, db, lineage, res->dbid, &res->lineage_listed, err, errlen);
    if (rc)
        goto out;
    rc = restore_load_manifest(st, db, res->dbid, &m, merr, sizeof merr);
    if (rc == LV_ECORRUPT || rc == LV_EVERSION) {
        snprintf(key, sizeof key, "%s/%s/%s", db, res->dbid, MANIFEST_OBJECT);
        rc = add_bad(&vs, (size_t)-1, key, "%s", merr);
        goto out;
    }
    if (rc) {
        snprintf(err, errlen, "%s", merr);
        goto out;
    }
    /* The tail: level-0 segments stored after the manifest's last write.
     * Each is verified on discovery; those that continue the chain join the
     * manifest and are checked below like every other object. */
    rc = restore_load_tail(st, db, res->dbid, &m, &tail, err, errlen);
    if (rc)
        goto out;
    res->tail = tail.n;
    res->manifest_txid = tail.manifest_last;
    if (tail.stop != TAIL_END) {
        snprintf(key, sizeof key, "%s/%s/%s", db, res->dbid, tail.bad_key);
        rc = add_bad(&vs, (size_t)-1, key, "%s", tail.msg);
        if (rc)
            goto out;
    }
    verify_facts(&m, res);
    rc = verify_objects(st, db, &m, parallel, &vs, err, errlen);
out:
    res->seconds = (double)(lv_mono_us() - t0) / 1e6;
    for (size_t i = 0; vs.keys && i < m.nsnaps + m.nsegs; i++)
        free(vs.keys[i]);
    free(vs.keys);
    free(vs.badobj);
    free(vs.facts);
    tail_result_free(&tail);
    manifest_free(&m);
    store_close(st);
    return rc;
}

void verify_result_free(struct verify_result *res)
{
    free(res->bad);
    res->bad = NULL;
    res->nbad = 0;
}
