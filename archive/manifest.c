/*
 * manifest.c -- the archive manifest: in-memory form, JSON encoding,
 * validation.  Specification: docs/FORMAT.md, "Archive layout and manifest".
 *
 * JSON (one object; the encoder writes it in canonical form, see below):
 *
 *   {"checksum":     "<16 hex>"   XXH3-64 of the canonical JSON without this member
 *    "created_us":   int          lineage creation time, us since epoch
 *    "database_id":  "<32 hex>"
 *    "format":       1
 *    "generation":   int >= 0     +1 per write of the object
 *    "name":         "app.db"     database name (relative path)
 *    "previous":     null | {"database_id": "<32 hex>", "txid": int >= 0}
 *    "segments":     [ {"first_time_us","first_txid","key","last_time_us",
 *                       "last_txid","level","post_checksum","pre_checksum",
 *                       "size","xxh3"}, ... ]   sorted by (first_txid, last_txid, level)
 *    "snapshots":    [ {"db_checksum","db_pages","key","page_size","size",
 *                       "time_us","txid","xxh3"}, ... ]  sorted by txid }
 *
 * Integers are JSON integers in 0..2^63-1 (times may be negative); 64-bit
 * checksums are 16 lower-case hex digits.  Every member is required,
 * unknown members are rejected (new members need a new "format").
 *
 * Canonical JSON = jansson's json_dumps(JSON_COMPACT | JSON_SORT_KEYS |
 * JSON_ENSURE_ASCII): no whitespace, object members sorted by key (byte
 * order), integers in plain decimal, strings with only '"', '\\', control
 * characters and non-ASCII escaped.  The checksum is computed over the
 * canonical form of the parsed document, so it does not depend on how the
 * bytes were laid out, only on their meaning.
 *
 * Validation order in manifest_decode: JSON syntax (duplicate members
 * rejected) -> "format" (newer -> LV_EVERSION) -> every member's type and
 * range, naming the field -> per-entry rules (keys derived from the fields,
 * first <= last, sizes large enough for the records) -> sort order ->
 * cross-entry rules (manifest_check) -> the checksum.  Field errors come
 * before the checksum so that a damaged value is reported by name.
 *
 * Cross-entry rules (manifest_check): build "facts" -- the database
 * checksum after TXID x (segment pre at first-1, post at last, snapshot
 * at txid) and the commit time of TXID x (segment first/last, snapshot) --
 * sort them by x and require equal checksums at equal x and commit times
 * non-decreasing in x (the writer clamps a backwards clock step, src/db.c).
 * O(n log n) at decode; the planner then never re-sorts.
 */
#include "archive/manifest.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "log/txlog.h"

#define CANON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)
#define SEG_HDR ((uint64_t)TXLOG_SEG_HDR_SIZE)                   /* segment header bytes */
#define REC_MIN ((uint64_t)(TXLOG_HDR_SIZE + TXLOG_TRAILER_SIZE)) /* smallest record */

/* ---- keys and small validators ---- */

char *manifest_seg_key(char *buf, unsigned level, uint64_t first_txid, uint64_t last_txid)
{
    snprintf(buf, MANIFEST_KEY_MAX, "seg/%u/%016" PRIx64 "-%016" PRIx64 ".lvseg", level, first_txid, last_txid);
    return buf;
}

char *manifest_snap_key(char *buf, uint64_t txid)
{
    snprintf(buf, MANIFEST_KEY_MAX, "snap/%016" PRIx64 ".lvseg", txid);
    return buf;
}

/* Exactly n lower-case hex digits. */
static int is_hex(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[n] == '\0';
}

static int parse_hex64(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    int i;

    if (!is_hex(s, 16))
        return -1;
    for (i = 0; i < 16; i++)
        x = x << 4 | (uint64_t)(s[i] <= '9' ? s[i] - '0' : s[i] - 'a' + 10);
    *v = x;
    return 0;
}

/* A database name: relative path of non-empty components other than "." and
 * "..", no control characters, at most MANIFEST_NAME_MAX bytes. */
static const char *name_problem(const char *s)
{
    size_t n = strlen(s), i, start = 0;

    if (n == 0)
        return "empty";
    if (n > MANIFEST_NAME_MAX)
        return "too long";
    for (i = 0; i <= n; i++) {
        if (i < n && (unsigned char)s[i] < 0x20)
            return "contains a control character";
        if (i == n || s[i] == '/') {
            size_t len = i - start;
            if (len == 0)
                return "has an empty path component";
            if ((len == 1 && s[start] == '.') || (len == 2 && s[start] == '.' && s[start + 1] == '.'))
                return "has a '.' or '..' component";
            start = i + 1;
        }
    }
    return NULL;
}

/* Per-entry rules; message "<where>.<field>: ..." */
static int seg_valid(const struct manifest_seg *s, const char *where, char *err, size_t errlen)
{
    char key[MANIFEST_KEY_MAX];
    uint64_t n;

    if (s->level > MANIFEST_MAX_LEVEL) {
        lv_seterr(err, errlen, "%s.level: %u is above %d", where, s->level, MANIFEST_MAX_LEVEL);
        return LV_ECORRUPT;
    }
    if (s->first_txid < 1 || s->first_txid > INT64_MAX) {
        lv_seterr(err, errlen, "%s.first_txid: %" PRIu64 " out of range", where, s->first_txid);
        return LV_ECORRUPT;
    }
    if (s->last_txid < s->first_txid || s->last_txid > INT64_MAX) {
        lv_seterr(err, errlen, "%s.last_txid: %" PRIu64 " is below first_txid %" PRIu64 " or out of range", where,
               s->last_txid, s->first_txid);
        return LV_ECORRUPT;
    }
    if (s->last_time_us < s->first_time_us) {
        lv_seterr(err, errlen, "%s.last_time_us: %" PRId64 " is before first_time_us %" PRId64, where, s->last_time_us,
               s->first_time_us);
        return LV_ECORRUPT;
    }
    n = s->last_txid - s->first_txid + 1;
    if (s->size > INT64_MAX || s->size < SEG_HDR || (s->size - SEG_HDR) / REC_MIN < n) {
        lv_seterr(err, errlen, "%s.size: %" PRIu64 " bytes cannot hold %" PRIu64 " records", where, s->size, n);
        return LV_ECORRUPT;
    }
    manifest_seg_key(key, s->level, s->first_txid, s->last_txid);
    if (s->key[0] && strcmp(key, s->key) != 0) {
        lv_seterr(err, errlen, "%s.key: \"%.*s\" differs from \"%s\" derived from level and TXIDs", where,
               (int)strnlen(s->key, MANIFEST_KEY_MAX), s->key, key);
        return LV_ECORRUPT;
    }
    return 0;
}

static int snap_valid(const struct manifest_snap *s, const char *where, char *err, size_t errlen)
{
    char key[MANIFEST_KEY_MAX];

    if (s->txid < 1 || s->txid > INT64_MAX) {
        lv_seterr(err, errlen, "%s.txid: %" PRIu64 " out of range", where, s->txid);
        return LV_ECORRUPT;
    }
    if (s->page_size < 512 || s->page_size > 65536 || (s->page_size & (s->page_size - 1))) {
        lv_seterr(err, errlen, "%s.page_size: %u is not a power of two in 512..65536", where, s->page_size);
        return LV_ECORRUPT;
    }
    if (s->db_pages == 0 && s->db_cksum != 0) {
        lv_seterr(err, errlen, "%s.db_checksum: must be 0 for an empty database", where);
        return LV_ECORRUPT;
    }
    if (s->size > INT64_MAX || s->size < SEG_HDR + REC_MIN) {
        lv_seterr(err, errlen, "%s.size: %" PRIu64 " bytes cannot hold a snapshot record", where, s->size);
        return LV_ECORRUPT;
    }
    manifest_snap_key(key, s->txid);
    if (s->key[0] && strcmp(key, s->key) != 0) {
        lv_seterr(err, errlen, "%s.key: \"%.*s\" differs from \"%s\" derived from txid", where,
               (int)strnlen(s->key, MANIFEST_KEY_MAX), s->key, key);
        return LV_ECORRUPT;
    }
    return 0;
}

static int seg_cmp(const struct manifest_seg *a, const struct manifest_seg *b)
{
    if (a->first_txid != b->first_txid)
        return a->first_txid < b->first_txid ? -1 : 1;
    if (a->last_txid != b->last_txid)
        return a->last_txid < b->last_txid ? -1 : 1;
    if (a->level != b->level)
        return a->level < b->level ? -1 : 1;
    return 0;
}

/* Index of the first segment not below *s in sort order. */
static size_t seg_lower_bound(const struct manifest *m, const struct manifest_seg *s)
{
    size_t lo = 0, hi = m->nsegs;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (seg_cmp(&m->segs[mid], s) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Index of the first snapshot with txid >= txid. */
static size_t snap_lower_bound(const struct manifest *m, uint64_t txid)
{
    size_t lo = 0, hi = m->nsnaps;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->snaps[mid].txid < txid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Parse a canonical key: 1 segment (fills level/first/last), 2 snapshot
 * (fills first = txid), 0 not a canonical key. */
static int key_parse(const char *key, unsigned *level, uint64_t *first, uint64_t *last)
{
    char buf[MANIFEST_KEY_MAX];
    char h1[17], h2[17];

    if (strnlen(key, MANIFEST_KEY_MAX) >= MANIFEST_KEY_MAX)
        return 0;
    if (key[0] == 's' && key[1] == 'e' && key[2] == 'g' && key[3] == '/' && key[4] >= '0' && key[4] <= '9' &&
        key[5] == '/' && strlen(key) == 45) {
        memcpy(h1, key + 6, 16), h1[16] = '\0';
        memcpy(h2, key + 23, 16), h2[16] = '\0';
        *level = (unsigned)(key[4] - '0');
        if (parse_hex64(h1, first) || parse_hex64(h2, last))
            return 0;
        return strcmp(manifest_seg_key(buf, *level, *first, *last), key) == 0 ? 1 : 0;
    }
    if (strncmp(key, "snap/", 5) == 0 && strlen(key) == 27) {
        memcpy(h1, key + 5, 16), h1[16] = '\0';
        if (parse_hex64(h1, first))
            return 0;
        *last = *first;
        *level = 0;
        return strcmp(manifest_snap_key(buf, *first), key) == 0 ? 2 : 0;
    }
    return 0;
}

/* ---- life cycle and operations ---- */

int manifest_init(struct manifest *m, const char *name, const char *dbid_hex, int64_t created_us)
{
    const char *why;

    memset(m, 0, sizeof *m);
    if ((why = name_problem(name)) != NULL) {
        LV_DEBUG("manifest: database name \"%s\" %s", name, why);
        return LV_EINVAL;
    }
    if (!is_hex(dbid_hex, MANIFEST_ID_HEX)) {
        LV_DEBUG("manifest: database ID \"%s\" is not 32 lower-case hex digits", dbid_hex);
        return LV_EINVAL;
    }
    m->name = strdup(name);
    if (!m->name)
        return LV_ENOMEM;
    m->format = MANIFEST_FORMAT;
    memcpy(m->dbid, dbid_hex, MANIFEST_ID_HEX + 1);
    m->created_us = created_us;
    return 0;
}

void manifest_free(struct manifest *m)
{
    free(m->name);
    free(m->segs);
    free(m->snaps);
    memset(m, 0, sizeof *m);
}

/* Insert e (elem bytes) at position at of the sorted array *arr of *n
 * elements (capacity *cap); returns the new element or NULL (LV_ENOMEM). */
static void *insert_at(void **arr, size_t *n, size_t *cap, size_t elem, size_t at, const void *e)
{
    char *v;

    if (lv_grow(arr, cap, *n, elem, 16) != 0)
        return NULL;
    v = *arr;
    memmove(v + (at + 1) * elem, v + at * elem, (*n - at) * elem);
    memcpy(v + at * elem, e, elem);
    (*n)++;
    return v + at * elem;
}

/* A message from seg_valid/snap_valid refusing an entry (rc != 0): logged, LV_EINVAL. */
static int refused(const struct manifest *m, int rc, const char *msg)
{
    if (rc)
        LV_DEBUG("manifest %s: refused %s", m->name ? m->name : "?", msg);
    return rc ? LV_EINVAL : 0;
}

int manifest_add_segment(struct manifest *m, const struct manifest_seg *s)
{
    struct manifest_seg *e;
    char msg[256];
    size_t at;

    if (refused(m, seg_valid(s, "segment", msg, sizeof msg), msg))
        return LV_EINVAL;
    at = seg_lower_bound(m, s);
    if (at < m->nsegs && seg_cmp(&m->segs[at], s) == 0)
        return LV_EEXIST;
    e = insert_at((void **)&m->segs, &m->nsegs, &m->segs_cap, sizeof *s, at, s);
    if (!e)
        return LV_ENOMEM;
    manifest_seg_key(e->key, s->level, s->first_txid, s->last_txid);
    return 0;
}

int manifest_add_snapshot(struct manifest *m, const struct manifest_snap *s)
{
    struct manifest_snap *e;
    char msg[256];
    size_t at;

    if (refused(m, snap_valid(s, "snapshot", msg, sizeof msg), msg))
        return LV_EINVAL;
    at = snap_lower_bound(m, s->txid);
    if (at < m->nsnaps && m->snaps[at].txid == s->txid)
        return LV_EEXIST;
    e = insert_at((void **)&m->snaps, &m->nsnaps, &m->snaps_cap, sizeof *s, at, s);
    if (!e)
        return LV_ENOMEM;
    manifest_snap_key(e->key, s->txid);
    return 0;
}

const struct manifest_seg *manifest_find_segment(const struct manifest *m, const char *key)
{
    struct manifest_seg probe;
    uint64_t first, last;
    unsigned level;
    size_t at;

    if (key_parse(key, &level, &first, &last) != 1)
        return NULL;
    probe.first_txid = first, probe.last_txid = last, probe.level = level;
    at = seg_lower_bound(m, &probe);
    return at < m->nsegs && seg_cmp(&m->segs[at], &probe) == 0 ? &m->segs[at] : NULL;
}

const struct manifest_snap *manifest_find_snapshot(const struct manifest *m, const char *key)
{
    uint64_t txid, last;
    unsigned level;
    size_t at;

    if (key_parse(key, &level, &txid, &last) != 2)
        return NULL;
    at = snap_lower_bound(m, txid);
    return at < m->nsnaps && m->snaps[at].txid == txid ? &m->snaps[at] : NULL;
}

int manifest_remove(struct manifest *m, const char *key)
{
    const struct manifest_seg *g = manifest_find_segment(m, key);
    const struct manifest_snap *p = manifest_find_snapshot(m, key);
    size_t at;

    if (g) {
        at = (size_t)(g - m->segs);
        memmove(&m->segs[at], &m->segs[at + 1], (m->nsegs - at - 1) * sizeof *m->segs);
        m->nsegs--;
        return 0;
    }
    if (p) {
        at = (size_t)(p - m->snaps);
        memmove(&m->snaps[at], &m->snaps[at + 1], (m->nsnaps - at - 1) * sizeof *m->snaps);
        m->nsnaps--;
        return 0;
    }
    return LV_ENOENT;
}

int manifest_id_ok(const char *s)
{
    return is_hex(s, MANIFEST_ID_HEX);
}

int manifest_cksum_at(const struct manifest *m, uint64_t x, uint64_t *ck)
{
    for (size_t i = m->nsegs; i-- > 0;)
        if (m->segs[i].last_txid == x) {
            *ck = m->segs[i].post_cksum;
            return 1;
        }
    const struct manifest_snap *s = manifest_snapshot_at(m, x);
    if (s && s->txid == x) {
        *ck = s->db_cksum;
        return 1;
    }
    return 0;
}

/* The highest TXID and the newest commit time over every object of m. */
static void manifest_max(const struct manifest *m, uint64_t *txid, int64_t *time_us)
{
    *txid = 0;
    *time_us = 0;
    for (size_t i = 0; i < m->nsegs; i++) {
        if (m->segs[i].last_txid > *txid)
            *txid = m->segs[i].last_txid;
        if (m->segs[i].last_time_us > *time_us)
            *time_us = m->segs[i].last_time_us;
    }
    for (size_t i = 0; i < m->nsnaps; i++) {
        if (m->snaps[i].txid > *txid)
            *txid = m->snaps[i].txid;
        if (m->snaps[i].time_us > *time_us)
            *time_us = m->snaps[i].time_us;
    }
}

uint64_t manifest_last_txid(const struct manifest *m)
{
    uint64_t txid;
    int64_t t;

    manifest_max(m, &txid, &t);
    return txid;
}

int64_t manifest_last_time(const struct manifest *m)
{
    uint64_t txid;
    int64_t t;

    manifest_max(m, &txid, &t);
    return t;
}

void manifest_last(const struct manifest *m, uint64_t *txid, int64_t *time_us)
{
    const struct manifest_snap *s;

    *txid = manifest_last_txid(m);
    *time_us = 0;
    for (size_t i = m->nsegs; i-- > 0;)
        if (m->segs[i].last_txid == *txid) {
            *time_us = m->segs[i].last_time_us;
            break;
        }
    s = manifest_snapshot_at(m, *txid);
    if (s && s->txid == *txid)
        *time_us = s->time_us;
}

const struct manifest_snap *manifest_snapshot_at(const struct manifest *m, uint64_t txid)
{
    size_t at = txid == UINT64_MAX ? m->nsnaps : snap_lower_bound(m, txid + 1); /* first with txid > target */

    return at > 0 ? &m->snaps[at - 1] : NULL;
}

uint64_t manifest_total_bytes(const struct manifest *m)
{
    uint64_t t = 0;
    size_t i;

    for (i = 0; i < m->nsegs; i++)
        t += m->segs[i].size;
    for (i = 0; i < m->nsnaps; i++)
        t += m->snaps[i].size;
    return t;
}

/* ---- whole-manifest check ---- */

/* A fact about TXID x stated by one entry field. */
struct fact {
    uint64_t x;        /* the TXID it is about */
    int kind;          /* 0: database checksum after x, 1: commit time of x */
    uint64_t v;        /* checksum, or time as (uint64_t)int64 */
    int snap;          /* 0: segments[idx], 1: snapshots[idx] */
    size_t idx;        /* entry index */
    const char *field; /* field name for messages */
};

static int fact_cmp(const void *pa, const void *pb)
{
    const struct fact *a = pa, *b = pb;

    if (a->x != b->x)
        return a->x < b->x ? -1 : 1;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    if (a->kind == 1 && a->v != b->v)
        return (int64_t)a->v < (int64_t)b->v ? -1 : 1;
    return 0;
}

static void fact_where(const struct fact *f, char *buf, size_t n)
{
    snprintf(buf, n, "%s[%zu].%s", f->snap ? "snapshots" : "segments", f->idx, f->field);
}

static int check_facts(const struct manifest *m, char *err, size_t errlen)
{
    size_t nf = 0, i, cap = 4 * m->nsegs + 2 * m->nsnaps;
    struct fact *f, *prev_ck = NULL, *prev_t = NULL;
    char w1[64], w2[64], h1[17], h2[17];
    int rc = 0;

    if (cap == 0)
        return 0;
    f = malloc(cap * sizeof *f);
    if (!f)
        return LV_ENOMEM;
    for (i = 0; i < m->nsegs; i++) {
        const struct manifest_seg *s = &m->segs[i];
        f[nf++] = (struct fact){s->first_txid - 1, 0, s->pre_cksum, 0, i, "pre_checksum"};
        f[nf++] = (struct fact){s->last_txid, 0, s->post_cksum, 0, i, "post_checksum"};
        f[nf++] = (struct fact){s->first_txid, 1, (uint64_t)s->first_time_us, 0, i, "first_time_us"};
        f[nf++] = (struct fact){s->last_txid, 1, (uint64_t)s->last_time_us, 0, i, "last_time_us"};
    }
    for (i = 0; i < m->nsnaps; i++) {
        const struct manifest_snap *s = &m->snaps[i];
        f[nf++] = (struct fact){s->txid, 0, s->db_cksum, 1, i, "db_checksum"};
        f[nf++] = (struct fact){s->txid, 1, (uint64_t)s->time_us, 1, i, "time_us"};
    }
    qsort(f, nf, sizeof *f, fact_cmp);
    for (i = 0; i < nf; i++) {
        struct fact *c = &f[i];
        if (c->kind == 0) {
            if (prev_ck && prev_ck->x == c->x && prev_ck->v != c->v) {
                fact_where(c, w1, sizeof w1), fact_where(prev_ck, w2, sizeof w2);
                lv_seterr(err, errlen, "%s: %s differs from %s %s for the database after TXID %" PRIu64, w1,
                       cksum_hex(c->v, h1), w2, cksum_hex(prev_ck->v, h2), c->x);
                rc = LV_ECORRUPT;
                goto out_free_facts;
            }
            prev_ck = c;
        } else {
            /* Sorted by (x, time), so comparing neighbours suffices: equal
             * times at one x, and no smaller time at a larger x. */
            if (prev_t && ((prev_t->x == c->x && prev_t->v != c->v) || (int64_t)c->v < (int64_t)prev_t->v)) {
                fact_where(c, w1, sizeof w1), fact_where(prev_t, w2, sizeof w2);
                lv_seterr(err, errlen,
                       "%s: commit time %" PRId64 " of TXID %" PRIu64 " is out of order with %s %" PRId64
                       " of TXID %" PRIu64,
                       w1, (int64_t)c->v, c->x, w2, (int64_t)prev_t->v, prev_t->x);
                rc = LV_ECORRUPT;
                goto out_free_facts;
            }
            prev_t = c;
        }
    }
out_free_facts:
    free(f);
    return rc;
}

int manifest_check(const struct manifest *m, char *err, size_t errlen)
{
    const char *why = "missing";
    char where[48];
    size_t i;

    if (m->format != MANIFEST_FORMAT) {
        lv_seterr(err, errlen, "format: %d is not %d", m->format, MANIFEST_FORMAT);
        return LV_ECORRUPT;
    }
    if (!m->name || (why = name_problem(m->name)) != NULL) {
        lv_seterr(err, errlen, "name: %s", why);
        return LV_ECORRUPT;
    }
    if (!is_hex(m->dbid, MANIFEST_ID_HEX)) {
        lv_seterr(err, errlen, "database_id: not 32 lower-case hex digits");
        return LV_ECORRUPT;
    }
    if (m->prev_dbid[0] && (!is_hex(m->prev_dbid, MANIFEST_ID_HEX) || strcmp(m->prev_dbid, m->dbid) == 0)) {
        lv_seterr(err, errlen, "previous.database_id: not 32 lower-case hex digits, or equal to database_id");
        return LV_ECORRUPT;
    }
    if (!m->prev_dbid[0] && m->prev_txid) {
        lv_seterr(err, errlen, "previous.txid: set without previous.database_id");
        return LV_ECORRUPT;
    }
    if (m->generation > INT64_MAX || m->prev_txid > INT64_MAX) {
        lv_seterr(err, errlen, "%s: out of range", m->generation > INT64_MAX ? "generation" : "previous.txid");
        return LV_ECORRUPT;
    }
    for (i = 0; i < m->nsegs; i++) {
        snprintf(where, sizeof where, "segments[%zu]", i);
        if (seg_valid(&m->segs[i], where, err, errlen) != 0)
            return LV_ECORRUPT;
        if (i > 0 && seg_cmp(&m->segs[i - 1], &m->segs[i]) >= 0) {
            lv_seterr(err, errlen, "%s.key: %s %s (sorted by first_txid, last_txid, level; keys unique)", where,
                   m->segs[i].key,
                   seg_cmp(&m->segs[i - 1], &m->segs[i]) == 0 ? "is a duplicate" : "is out of order");
            return LV_ECORRUPT;
        }
    }
    for (i = 0; i < m->nsnaps; i++) {
        snprintf(where, sizeof where, "snapshots[%zu]", i);
        if (snap_valid(&m->snaps[i], where, err, errlen) != 0)
            return LV_ECORRUPT;
        if (i > 0 && m->snaps[i - 1].txid >= m->snaps[i].txid) {
            lv_seterr(err, errlen, "%s.key: %s %s (sorted by txid; keys unique)", where, m->snaps[i].key,
                   m->snaps[i - 1].txid == m->snaps[i].txid ? "is a duplicate" : "is out of order");
            return LV_ECORRUPT;
        }
    }
    return check_facts(m, err, errlen);
}

/* ---- JSON ---- */

/* XXH3-64 of the canonical dump of v.  0 or LV_ENOMEM. */
static int canon_hash(const json_t *v, uint64_t *out)
{
    char *s = json_dumps(v, CANON_FLAGS);

    if (!s)
        return LV_ENOMEM;
    *out = XXH3_64bits(s, strlen(s));
    free(s);
    return 0;
}

/* json_object_set_new that remembers an allocation failure in *bad. */
static void put(json_t *o, const char *k, json_t *v, int *bad)
{
    if (!v || json_object_set_new(o, k, v) != 0)
        *bad = 1;
}

static json_t *hexstr(uint64_t v)
{
    char h[17];
    return json_string(cksum_hex(v, h));
}

int manifest_encode(const struct manifest *m, char **out, size_t *len, char *err, size_t errlen)
{
    json_t *root, *segs, *snaps, *o;
    uint64_t sum;
    size_t i;
    char *s;
    int bad = 0, rc;

    *out = NULL;
    *len = 0;
    rc = manifest_check(m, err, errlen);
    if (rc == LV_ECORRUPT)
        return LV_EINVAL;
    if (rc)
        return rc;
    root = json_object();
    segs = json_array();
    snaps = json_array();
    if (!root || !segs || !snaps) {
        json_decref(segs), json_decref(snaps);
        rc = LV_ENOMEM;
        goto out_put_root;
    }
    put(root, "format", json_integer(m->format), &bad);
    put(root, "name", json_string(m->name), &bad);
    put(root, "database_id", json_string(m->dbid), &bad);
    if (m->prev_dbid[0]) {
        o = json_object();
        if (o) {
            put(o, "database_id", json_string(m->prev_dbid), &bad);
            put(o, "txid", json_integer((json_int_t)m->prev_txid), &bad);
        }
        put(root, "previous", o, &bad);
    } else {
        put(root, "previous", json_null(), &bad);
    }
    put(root, "created_us", json_integer(m->created_us), &bad);
    put(root, "generation", json_integer((json_int_t)m->generation), &bad);
    put(root, "segments", segs, &bad);
    put(root, "snapshots", snaps, &bad);
    for (i = 0; i < m->nsegs && !bad; i++) {
        const struct manifest_seg *g = &m->segs[i];
        if (!(o = json_object()) || json_array_append_new(segs, o) != 0) {
            bad = 1;
            break;
        }
        put(o, "key", json_string(g->key), &bad);
        put(o, "level", json_integer(g->level), &bad);
        put(o, "first_txid", json_integer((json_int_t)g->first_txid), &bad);
        put(o, "last_txid", json_integer((json_int_t)g->last_txid), &bad);
        put(o, "first_time_us", json_integer(g->first_time_us), &bad);
        put(o, "last_time_us", json_integer(g->last_time_us), &bad);
        put(o, "pre_checksum", hexstr(g->pre_cksum), &bad);
        put(o, "post_checksum", hexstr(g->post_cksum), &bad);
        put(o, "size", json_integer((json_int_t)g->size), &bad);
        put(o, "xxh3", hexstr(g->xxh3), &bad);
    }
    for (i = 0; i < m->nsnaps && !bad; i++) {
        const struct manifest_snap *p = &m->snaps[i];
        if (!(o = json_object()) || json_array_append_new(snaps, o) != 0) {
            bad = 1;
            break;
        }
        put(o, "key", json_string(p->key), &bad);
        put(o, "txid", json_integer((json_int_t)p->txid), &bad);
        put(o, "time_us", json_integer(p->time_us), &bad);
        put(o, "page_size", json_integer(p->page_size), &bad);
        put(o, "db_pages", json_integer(p->db_pages), &bad);
        put(o, "db_checksum", hexstr(p->db_cksum), &bad);
        put(o, "size", json_integer((json_int_t)p->size), &bad);
        put(o, "xxh3", hexstr(p->xxh3), &bad);
    }
    if (bad || canon_hash(root, &sum) != 0) {
        rc = LV_ENOMEM;
        goto out_put_root;
    }
    put(root, "checksum", hexstr(sum), &bad);
    s = bad ? NULL : json_dumps(root, CANON_FLAGS);
    if (!s) {
        rc = LV_ENOMEM;
        goto out_put_root;
    }
    *len = strlen(s);
    *out = realloc(s, *len + 2);
    if (!*out) {
        free(s);
        *len = 0;
        rc = LV_ENOMEM;
        goto out_put_root;
    }
    (*out)[(*len)++] = '\n';
    (*out)[*len] = '\0';
out_put_root:
    json_decref(root);
    return rc;
}

/* Decoding helpers.  Each names the field as "<where>.<key>" (or "<key>"
 * at top level) and returns 0 or LV_ECORRUPT. */

static void fname(char *buf, size_t n, const char *where, const char *key)
{
    snprintf(buf, n, "%s%s%s", where ? where : "", where ? "." : "", key);
}

static int only_fields(json_t *o, const char *where, const char *const *allowed, size_t nallowed, char *err,
                       size_t errlen)
{
    const char *k;
    json_t *v;
    size_t i;

    json_object_foreach(o, k, v) {
        for (i = 0; i < nallowed; i++)
            if (strcmp(k, allowed[i]) == 0)
                break;
        if (i == nallowed) {
            lv_seterr(err, errlen, "%s%sunknown field \"%.64s\"", where ? where : "", where ? ": " : "", k);
            return LV_ECORRUPT;
        }
    }
    return 0;
}

/* Field key of o (in where) of JSON type type (named what in messages)
 * into *v; its full name into f (96 bytes).  0 or LV_ECORRUPT. */
static int get_field(json_t *o, const char *where, const char *key, json_type type, const char *what, json_t **v,
                     char f[96], char *err, size_t errlen)
{
    *v = json_object_get(o, key);
    fname(f, 96, where, key);
    if (!*v) {
        lv_seterr(err, errlen, "%s: missing", f);
        return LV_ECORRUPT;
    }
    if (json_typeof(*v) != type) {
        lv_seterr(err, errlen, "%s: not %s", f, what);
        return LV_ECORRUPT;
    }
    return 0;
}

static int get_int(json_t *o, const char *where, const char *key, int64_t min, int64_t max, int64_t *out,
                   char *err, size_t errlen)
{
    json_t *v;
    char f[96];
    int rc = get_field(o, where, key, JSON_INTEGER, "an integer", &v, f, err, errlen);

    if (rc)
        return rc;
    *out = json_integer_value(v);
    if (*out < min || *out > max) {
        lv_seterr(err, errlen, "%s: %" PRId64 " out of range %" PRId64 "..%" PRId64, f, *out, min, max);
        return LV_ECORRUPT;
    }
    return 0;
}

static int get_u64(json_t *o, const char *where, const char *key, uint64_t min, uint64_t *out, char *err,
                   size_t errlen)
{
    int64_t v;
    int rc = get_int(o, where, key, (int64_t)min, INT64_MAX, &v, err, errlen);

    *out = (uint64_t)v;
    return rc;
}

static int get_str(json_t *o, const char *where, const char *key, const char **out, char *err, size_t errlen)
{
    json_t *v;
    char f[96];
    int rc = get_field(o, where, key, JSON_STRING, "a string", &v, f, err, errlen);

    if (rc == 0)
        *out = json_string_value(v);
    return rc;
}

static int get_hex64(json_t *o, const char *where, const char *key, uint64_t *out, char *err, size_t errlen)
{
    const char *s;
    char f[96];
    int rc = get_str(o, where, key, &s, err, errlen);

    if (rc)
        return rc;
    if (parse_hex64(s, out) != 0) {
        fname(f, sizeof f, where, key);
        lv_seterr(err, errlen, "%s: not 16 lower-case hex digits", f);
        return LV_ECORRUPT;
    }
    return 0;
}

static int get_id(json_t *o, const char *where, const char *key, char out[MANIFEST_ID_HEX + 1], char *err,
                  size_t errlen)
{
    const char *s;
    char f[96];
    int rc = get_str(o, where, key, &s, err, errlen);

    if (rc)
        return rc;
    if (!is_hex(s, MANIFEST_ID_HEX)) {
        fname(f, sizeof f, where, key);
        lv_seterr(err, errlen, "%s: not 32 lower-case hex digits", f);
        return LV_ECORRUPT;
    }
    memcpy(out, s, MANIFEST_ID_HEX + 1);
    return 0;
}

static int get_key(json_t *o, const char *where, char out[MANIFEST_KEY_MAX], char *err, size_t errlen)
{
    const char *s;
    char f[96];
    int rc = get_str(o, where, "key", &s, err, errlen);

    if (rc)
        return rc;
    if (strlen(s) >= MANIFEST_KEY_MAX || s[0] == '\0') {
        fname(f, sizeof f, where, "key");
        lv_seterr(err, errlen, "%s: empty or longer than %d bytes", f, MANIFEST_KEY_MAX - 1);
        return LV_ECORRUPT;
    }
    strcpy(out, s);
    return 0;
}

static const char *const top_fields[] = {"checksum", "created_us", "database_id", "format", "generation",
                                         "name",     "previous",   "segments",    "snapshots"};
static const char *const prev_fields[] = {"database_id", "txid"};
static const char *const seg_fields[] = {"first_time_us", "first_txid", "key",  "last_time_us", "last_txid",
                                         "level",         "post_checksum", "pre_checksum", "size", "xxh3"};
static const char *const snap_fields[] = {"db_checksum", "db_pages", "key",  "page_size",
                                          "size",        "time_us",  "txid", "xxh3"};

static int decode_seg(json_t *o, const char *where, void *elem, char *err, size_t errlen)
{
    struct manifest_seg *s = elem;
    int64_t level;
    int rc;

    memset(s, 0, sizeof *s);
    if (!json_is_object(o)) {
        lv_seterr(err, errlen, "%s: not an object", where);
        return LV_ECORRUPT;
    }
    if ((rc = only_fields(o, where, seg_fields, LV_ARRAY_LEN(seg_fields), err, errlen)) ||
        (rc = get_key(o, where, s->key, err, errlen)) ||
        (rc = get_int(o, where, "level", 0, MANIFEST_MAX_LEVEL, &level, err, errlen)) ||
        (rc = get_u64(o, where, "first_txid", 1, &s->first_txid, err, errlen)) ||
        (rc = get_u64(o, where, "last_txid", 1, &s->last_txid, err, errlen)) ||
        (rc = get_int(o, where, "first_time_us", INT64_MIN, INT64_MAX, &s->first_time_us, err, errlen)) ||
        (rc = get_int(o, where, "last_time_us", INT64_MIN, INT64_MAX, &s->last_time_us, err, errlen)) ||
        (rc = get_hex64(o, where, "pre_checksum", &s->pre_cksum, err, errlen)) ||
        (rc = get_hex64(o, where, "post_checksum", &s->post_cksum, err, errlen)) ||
        (rc = get_u64(o, where, "size", 0, &s->size, err, errlen)) ||
        (rc = get_hex64(o, where, "xxh3", &s->xxh3, err, errlen)))
        return rc;
    s->level = (unsigned)level;
    return seg_valid(s, where, err, errlen);
}

static int decode_snap(json_t *o, const char *where, void *elem, char *err, size_t errlen)
{
    struct manifest_snap *s = elem;
    int64_t ps, pages;
    int rc;

    memset(s, 0, sizeof *s);
    if (!json_is_object(o)) {
        lv_seterr(err, errlen, "%s: not an object", where);
        return LV_ECORRUPT;
    }
    if ((rc = only_fields(o, where, snap_fields, LV_ARRAY_LEN(snap_fields), err, errlen)) ||
        (rc = get_key(o, where, s->key, err, errlen)) ||
        (rc = get_u64(o, where, "txid", 1, &s->txid, err, errlen)) ||
        (rc = get_int(o, where, "time_us", INT64_MIN, INT64_MAX, &s->time_us, err, errlen)) ||
        (rc = get_int(o, where, "page_size", 512, 65536, &ps, err, errlen)) ||
        (rc = get_int(o, where, "db_pages", 0, UINT32_MAX, &pages, err, errlen)) ||
        (rc = get_hex64(o, where, "db_checksum", &s->db_cksum, err, errlen)) ||
        (rc = get_u64(o, where, "size", 0, &s->size, err, errlen)) ||
        (rc = get_hex64(o, where, "xxh3", &s->xxh3, err, errlen)))
        return rc;
    s->page_size = (uint32_t)ps;
    s->db_pages = (uint32_t)pages;
    return snap_valid(s, where, err, errlen);
}

/* Decode the array root[key] into a new array of elements of elem_size
 * bytes (*out, *n used, *cap allocated), each with decode(element, "key[i]",
 * ...).  On failure *n counts the elements decoded (for manifest_free). */
static int decode_array(json_t *root, const char *key, size_t elem_size,
                        int (*decode)(json_t *o, const char *where, void *elem, char *err, size_t errlen),
                        void **out, size_t *n, size_t *cap, char *err, size_t errlen)
{
    json_t *arr = json_object_get(root, key), *v;
    char where[64];
    size_t i;
    int rc;

    if (!json_is_array(arr)) {
        lv_seterr(err, errlen, "%s: %s", key, arr ? "not an array" : "missing");
        return LV_ECORRUPT;
    }
    if (json_array_size(arr)) {
        *out = calloc(json_array_size(arr), elem_size);
        if (!*out)
            return LV_ENOMEM;
        *cap = json_array_size(arr);
    }
    json_array_foreach(arr, i, v) {
        snprintf(where, sizeof where, "%s[%zu]", key, i);
        if ((rc = decode(v, where, (char *)*out + i * elem_size, err, errlen)))
            return rc;
        (*n)++;
    }
    return 0;
}

/* Fill m (already zeroed) from root; everything but the checksum. */
static int decode_tree(json_t *root, struct manifest *m, char *err, size_t errlen)
{
    json_t *prev;
    const char *name, *why;
    int64_t fmt, created;
    int rc;

    if ((rc = get_int(root, NULL, "format", INT64_MIN, INT64_MAX, &fmt, err, errlen)))
        return rc;
    if (fmt > MANIFEST_FORMAT) {
        lv_seterr(err, errlen, "format: %" PRId64 " is newer than this litevault understands (%d)", fmt,
               MANIFEST_FORMAT);
        return LV_EVERSION;
    }
    if (fmt != MANIFEST_FORMAT) {
        lv_seterr(err, errlen, "format: %" PRId64 " is not a manifest format", fmt);
        return LV_ECORRUPT;
    }
    m->format = (int)fmt;
    if ((rc = only_fields(root, NULL, top_fields, LV_ARRAY_LEN(top_fields), err, errlen)) ||
        (rc = get_str(root, NULL, "name", &name, err, errlen)))
        return rc;
    if ((why = name_problem(name)) != NULL) {
        lv_seterr(err, errlen, "name: %s", why);
        return LV_ECORRUPT;
    }
    if (!(m->name = strdup(name)))
        return LV_ENOMEM;
    if ((rc = get_id(root, NULL, "database_id", m->dbid, err, errlen)) ||
        (rc = get_int(root, NULL, "created_us", INT64_MIN, INT64_MAX, &created, err, errlen)) ||
        (rc = get_u64(root, NULL, "generation", 0, &m->generation, err, errlen)))
        return rc;
    m->created_us = created;
    prev = json_object_get(root, "previous");
    if (!prev) {
        lv_seterr(err, errlen, "previous: missing");
        return LV_ECORRUPT;
    }
    if (!json_is_null(prev)) {
        if (!json_is_object(prev)) {
            lv_seterr(err, errlen, "previous: not null or an object");
            return LV_ECORRUPT;
        }
        if ((rc = only_fields(prev, "previous", prev_fields, LV_ARRAY_LEN(prev_fields), err, errlen)) ||
            (rc = get_id(prev, "previous", "database_id", m->prev_dbid, err, errlen)) ||
            (rc = get_u64(prev, "previous", "txid", 0, &m->prev_txid, err, errlen)))
            return rc;
        if (strcmp(m->prev_dbid, m->dbid) == 0) {
            lv_seterr(err, errlen, "previous.database_id: equals database_id");
            return LV_ECORRUPT;
        }
    }
    if ((rc = decode_array(root, "segments", sizeof *m->segs, decode_seg, (void **)&m->segs, &m->nsegs,
                           &m->segs_cap, err, errlen)) ||
        (rc = decode_array(root, "snapshots", sizeof *m->snaps, decode_snap, (void **)&m->snaps, &m->nsnaps,
                           &m->snaps_cap, err, errlen)))
        return rc;
    return manifest_check(m, err, errlen);
}

int manifest_decode(const void *buf, size_t len, struct manifest *m, char *err, size_t errlen)
{
    char stored_hex[17], calc_hex[17];
    uint64_t stored, calc;
    json_error_t jerr;
    json_t *root;
    int rc;

    memset(m, 0, sizeof *m);
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        lv_seterr(err, errlen, "not valid JSON: line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        return LV_ECORRUPT;
    }
    if (!json_is_object(root)) {
        lv_seterr(err, errlen, "top level: not an object");
        rc = LV_ECORRUPT;
        goto out_put_root;
    }
    rc = decode_tree(root, m, err, errlen);
    if (rc)
        goto out_put_root;
    rc = get_hex64(root, NULL, "checksum", &stored, err, errlen);
    if (rc)
        goto out_put_root;
    json_object_del(root, "checksum");
    rc = canon_hash(root, &calc);
    if (rc)
        goto out_put_root;
    if (calc != stored) {
        lv_seterr(err, errlen, "checksum: stored %s, computed %s", cksum_hex(stored, stored_hex),
               cksum_hex(calc, calc_hex));
        rc = LV_ECORRUPT;
    }
out_put_root:
    json_decref(root);
    if (rc)
        manifest_free(m);
    return rc;
}
