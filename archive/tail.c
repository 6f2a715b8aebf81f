/*
 * tail.c -- discovery and verification of the archive's tail: level-0
 * segment objects stored after the last manifest write (see tail.h and
 * docs/FORMAT.md, "Manifest lag and the tail").
 *
 * ALGORITHM (one LIST already done by the caller, then one GET per object)
 *   1. candidates: keys <prefix>seg/0/<first16hex>-<last16hex>.lvseg of the
 *      list whose first TXID is > the manifest's last TXID L (and whose
 *      last TXID is <= max_txid when given); the list is sorted by key,
 *      and fixed-width hex sorts like the numbers, so candidates come in
 *      (first, last) order.
 *   2. expect = L + 1, prev_post = the manifest's checksum after L (when
 *      it names one).  Among the candidates starting at `expect`, the
 *      longest is tried first: it is downloaded and read completely with a
 *      memory reader (header and payload checksum of every record, TXID
 *      continuity, chain inside the object), its first record must start
 *      at `expect` with pre == prev_post and its last record must be the
 *      key's last TXID.  The first one that passes is added to the
 *      manifest (level 0, real size, XXH3-64, times, checksums); expect and
 *      prev_post move past it.  Two objects may start at the same TXID
 *      when a damaged one was replaced after a restart and is still
 *      waiting for its delayed deletion.
 *   3. stop: no candidate starts at `expect` (TAIL_END, or TAIL_GAP when
 *      later candidates exist: their TXIDs cannot be reached), or every
 *      candidate starting there failed (TAIL_BAD, naming the first).
 * Nothing here deletes or writes: the caller decides (the archiver sweeps
 * what was not adopted; readers report it).
 */
#include "archive/tail.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "store/store.h"
#include "log/txlog.h"

#define SEG0_DIR "seg/0/"

/* One candidate key. */
struct cand {
    const char *rel;    /* key relative to the lineage (borrowed from the list) */
    uint64_t first, last; /* TXIDs from the key */
};

/* Parse "seg/0/<16 hex>-<16 hex>.lvseg" (relative key): 1 if it is one. */
static int parse_seg0(const char *rel, uint64_t *first, uint64_t *last)
{
    char want[MANIFEST_KEY_MAX];
    unsigned long long a, b;

    if (strncmp(rel, SEG0_DIR, strlen(SEG0_DIR)) != 0 || strlen(rel) != strlen(SEG0_DIR) + 16 + 1 + 16 + 6)
        return 0;
    if (sscanf(rel + strlen(SEG0_DIR), "%16llx-%16llx.lvseg", &a, &b) != 2 || a == 0 || b < a)
        return 0;
    /* Canonical form only (lower-case, zero-padded): the key must be the derived key. */
    if (strcmp(manifest_seg_key(want, 0, a, b), rel) != 0)
        return 0;
    *first = a;
    *last = b;
    return 1;
}

/* Read the whole image (every page, so payload trailers are checked) and
 * fill *s.  0 or LV_ECORRUPT / LV_EGAP / LV_ECHAIN with msg set. */
static int check_image(const void *buf, size_t len, const char *key, const struct cand *c, int have_pre,
                       uint64_t pre, struct manifest_seg *s, char *msg, size_t msglen)
{
    struct txlog_reader *r = NULL;
    struct txlog_hdr h, first, last;
    uint64_t n = 0;
    int rc;

    memset(&first, 0, sizeof first);
    memset(&last, 0, sizeof last);
    rc = txlog_reader_open_mem(buf, len, key, &r);
    if (rc) {
        lv_seterr(msg, msglen, "object %s: unreadable segment header: %s", key, r ? txlog_reader_error(r) : lv_strerror(rc));
        goto out;
    }
    for (;;) {
        uint32_t pg;
        const void *data;
        rc = txlog_reader_next(r, &h);
        if (rc == LV_ENOENT) {
            rc = 0;
            break;
        }
        while (rc == 0 && (rc = txlog_reader_page(r, &pg, &data)) == 0)
            ;
        if (rc == LV_ENOENT)
            rc = 0;
        if (rc) {
            lv_seterr(msg, msglen, "object %s: TXID %" PRIu64 ": %s", key, n ? last.txid + 1 : c->first,
                      txlog_reader_error(r)[0] ? txlog_reader_error(r) : lv_strerror(rc));
            goto out;
        }
        if (n == 0) {
            first = h;
            if (h.txid != c->first) {
                rc = LV_EGAP;
                lv_seterr(msg, msglen, "object %s: TXID %" PRIu64 ": first record is TXID %" PRIu64 ", not the key's",
                          key, c->first, h.txid);
                goto out;
            }
            if (have_pre && h.pre_cksum != pre) {
                rc = LV_ECHAIN;
                lv_seterr(msg, msglen,
                          "object %s: TXID %" PRIu64 ": pre checksum %016" PRIx64 " does not continue the archive "
                          "(post checksum %016" PRIx64 " after TXID %" PRIu64 ")", key, h.txid, h.pre_cksum, pre,
                          c->first - 1);
                goto out;
            }
        }
        last = h;
        n++;
    }
    if (n == 0 || last.txid != c->last) {
        rc = LV_ECORRUPT;
        lv_seterr(msg, msglen, "object %s: TXID %" PRIu64 ": object ends at TXID %" PRIu64 ", the key says %" PRIu64,
                  key, n ? last.txid + 1 : c->first, n ? last.txid : 0, c->last);
        goto out;
    }
    memset(s, 0, sizeof *s);
    s->level = 0;
    s->first_txid = first.txid;
    s->last_txid = last.txid;
    s->first_time_us = first.time_us;
    s->last_time_us = last.time_us;
    s->pre_cksum = first.pre_cksum;
    s->post_cksum = last.post_cksum;
    s->size = len;
    s->xxh3 = XXH3_64bits(buf, len);
    manifest_seg_key(s->key, 0, s->first_txid, s->last_txid);
out:
    txlog_reader_close(r);
    return rc;
}

static int push_key(struct tail_result *res, const char *rel)
{
    char(*nk)[MANIFEST_KEY_MAX] = realloc(res->keys, (res->n + 1) * sizeof *nk);
    if (!nk)
        return LV_ENOMEM;
    res->keys = nk;
    snprintf(res->keys[res->n++], MANIFEST_KEY_MAX, "%s", rel);
    return 0;
}

int tail_adopt(struct store *st, const char *prefix, const struct store_list *l, struct manifest *m,
               uint64_t max_txid, struct tail_result *res)
{
    struct cand *cv = NULL;
    size_t nc = 0, plen = strlen(prefix), i = 0;
    uint64_t expect, prev_post = 0;
    int have_pre, rc = 0;

    memset(res, 0, sizeof *res);
    res->manifest_last = res->last_txid = manifest_last_txid(m);
    expect = res->manifest_last + 1;
    have_pre = res->manifest_last > 0 && manifest_cksum_at(m, res->manifest_last, &prev_post);
    cv = calloc(l->n ? l->n : 1, sizeof *cv);
    if (!cv)
        return LV_ENOMEM;
    for (size_t k = 0; k < l->n; k++) {
        struct cand c;
        if (strncmp(l->v[k].key, prefix, plen) != 0)
            continue;
        c.rel = l->v[k].key + plen;
        if (!parse_seg0(c.rel, &c.first, &c.last) || c.first <= res->manifest_last)
            continue;
        if (max_txid && c.last > max_txid)
            continue;
        cv[nc++] = c;
    }
    while (i < nc) {
        /* Candidates starting before `expect` overlap what is adopted: skip them. */
        if (cv[i].first < expect) {
            i++;
            continue;
        }
        if (cv[i].first > expect) {
            res->stop = TAIL_GAP;
            res->gap_first = expect;
            res->gap_last = cv[i].first - 1;
            snprintf(res->bad_key, sizeof res->bad_key, "%s", cv[i].rel);
            res->nbeyond = nc - i;
            lv_seterr(res->msg, sizeof res->msg,
                      "TXIDs %" PRIu64 "..%" PRIu64 " are in no object: the level-0 segments after TXID %" PRIu64
                      " are not contiguous (next: %s%s)", res->gap_first, res->gap_last, expect - 1, prefix, cv[i].rel);
            break;
        }
        size_t j = i;
        while (j < nc && cv[j].first == expect)
            j++;
        /* cv[i..j) start at expect, sorted by last: try the longest first. */
        int ok = 0;
        char firstmsg[700] = "";
        for (size_t k = j; k-- > i && !ok;) {
            char key[2048], msg[700] = "";
            void *buf = NULL;
            size_t len = 0;
            struct manifest_seg s;
            snprintf(key, sizeof key, "%s%s", prefix, cv[k].rel);
            rc = store_get(st, key, 0, 0, &buf, &len);
            if (rc)
                lv_seterr(msg, sizeof msg, "object %s: TXID %" PRIu64 ": cannot read it: %s%s%s", key, cv[k].first,
                          lv_strerror(rc), store_last_error(st) && *store_last_error(st) ? ": " : "",
                          store_last_error(st) ? store_last_error(st) : "");
            else
                rc = check_image(buf, len, key, &cv[k], have_pre, prev_post, &s, msg, sizeof msg);
            if (rc == 0) {
                rc = manifest_add_segment(m, &s);
                if (rc == 0)
                    rc = push_key(res, s.key);
                if (rc) {
                    free(buf);
                    goto out;
                }
                res->bytes += s.size;
                res->last_txid = s.last_txid;
                res->last_time_us = s.last_time_us;
                prev_post = s.post_cksum;
                have_pre = 1;
                expect = s.last_txid + 1;
                ok = 1;
            } else {
                LV_DEBUG("tail: %s", msg);
                if (!firstmsg[0]) {
                    snprintf(firstmsg, sizeof firstmsg, "%s", msg);
                    snprintf(res->bad_key, sizeof res->bad_key, "%s", cv[k].rel);
                }
            }
            free(buf);
        }
        rc = 0;
        if (!ok) {
            res->stop = TAIL_BAD;
            res->gap_first = expect;
            res->gap_last = cv[j - 1].last;
            res->nbeyond = nc - i;
            snprintf(res->msg, sizeof res->msg, "%s", firstmsg);
            break;
        }
        i = j;
    }
    if (res->stop == TAIL_END)
        res->bad_key[0] = '\0';
out:
    free(cv);
    return rc;
}

int tail_load(struct store *st, const char *prefix, struct manifest *m, struct tail_result *res, char *err,
              size_t errlen)
{
    struct store_list l = {0};
    char *lp = NULL;
    int rc;

    memset(res, 0, sizeof *res);
    if (asprintf(&lp, "%s%s", prefix, SEG0_DIR) < 0)
        return LV_ENOMEM;
    rc = store_list_err(st, lp, &l, err, errlen);
    if (rc)
        goto out;
    rc = tail_adopt(st, prefix, &l, m, 0, res);
out:
    store_list_free(&l);
    free(lp);
    return rc;
}

int tail_contains(const struct tail_result *res, const char *rel)
{
    for (size_t i = 0; i < res->n; i++)
        if (strcmp(res->keys[i], rel) == 0)
            return 1;
    return 0;
}

void tail_result_free(struct tail_result *res)
{
    free(res->keys);
    res->keys = NULL;
    res->n = 0;
}
