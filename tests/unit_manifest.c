/*
 * unit_manifest.c -- the archive manifest (archive/manifest.c): operations,
 * JSON round trips, the checksum rule, and detection of every kind of
 * damage (bit flips, wrong types, removed or unknown fields, inconsistent
 * entries, checksum mismatch).
 *
 * Fixture: a model lineage where the database checksum after TXID x is
 * mt_ck(x) and the commit time of TXID x is mt_tm(x), so entries built from
 * it agree with each other wherever they describe the same TXID.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "archive/manifest.h"

static void mt_quiet(void)
{
    lvlog_threshold = -1;
}

TestSuite(manifest, .init = mt_quiet, .timeout = 60);

#define MT_ID "0123456789abcdef0123456789abcdef"
#define MT_PREV "fedcba9876543210fedcba9876543210"
#define MT_T0 1700000000000000ll

static uint64_t mt_ck(uint64_t x)
{
    return x == 0 ? 0 : (x * 0x9E3779B97F4A7C15ull) ^ 0x5bd1e995u;
}

static int64_t mt_tm(uint64_t x)
{
    return MT_T0 + (int64_t)x * 1000;
}

static struct manifest_seg mt_seg(unsigned level, uint64_t a, uint64_t b)
{
    struct manifest_seg s;

    memset(&s, 0, sizeof s);
    s.level = level;
    s.first_txid = a;
    s.last_txid = b;
    s.first_time_us = mt_tm(a);
    s.last_time_us = mt_tm(b);
    s.pre_cksum = mt_ck(a - 1);
    s.post_cksum = mt_ck(b);
    s.size = 64 + (b - a + 1) * 300 + level * 7;
    s.xxh3 = XXH3_64bits(&s.size, sizeof s.size) ^ a;
    return s;
}

static struct manifest_snap mt_snap(uint64_t x)
{
    struct manifest_snap s;

    memset(&s, 0, sizeof s);
    s.txid = x;
    s.time_us = mt_tm(x);
    s.page_size = 4096;
    s.db_pages = (uint32_t)(10 + x);
    s.db_cksum = mt_ck(x);
    s.size = 5000 + x;
    s.xxh3 = ~mt_ck(x);
    return s;
}

/* The fixture: segments L0 101-110, L1 101-120, L0 111-120, L0 121-121
 * (sorted order), snapshots at 100 and 120, a previous lineage. */
static void mt_fixture(struct manifest *m)
{
    struct manifest_seg g;
    struct manifest_snap p;

    cr_assert_eq(manifest_init(m, "app.db", MT_ID, MT_T0 - 5), 0);
    strcpy(m->prev_dbid, MT_PREV);
    m->prev_txid = 42;
    m->generation = 7;
    /* added out of order on purpose */
    g = mt_seg(0, 121, 121);
    cr_assert_eq(manifest_add_segment(m, &g), 0);
    g = mt_seg(0, 111, 120);
    cr_assert_eq(manifest_add_segment(m, &g), 0);
    g = mt_seg(1, 101, 120);
    cr_assert_eq(manifest_add_segment(m, &g), 0);
    g = mt_seg(0, 101, 110);
    cr_assert_eq(manifest_add_segment(m, &g), 0);
    p = mt_snap(120);
    cr_assert_eq(manifest_add_snapshot(m, &p), 0);
    p = mt_snap(100);
    cr_assert_eq(manifest_add_snapshot(m, &p), 0);
}

static char *mt_encode(const struct manifest *m, size_t *len)
{
    char err[256] = "", *out = NULL;
    size_t n = 0;

    cr_assert_eq(manifest_encode(m, &out, &n, err, sizeof err), 0, "encode: %s", err);
    cr_assert_eq(strlen(out), n);
    if (len)
        *len = n;
    return out;
}

static void mt_same_seg(const struct manifest_seg *a, const struct manifest_seg *b)
{
    cr_assert_str_eq(a->key, b->key);
    cr_assert_eq(a->level, b->level);
    cr_assert_eq(a->first_txid, b->first_txid);
    cr_assert_eq(a->last_txid, b->last_txid);
    cr_assert_eq(a->first_time_us, b->first_time_us);
    cr_assert_eq(a->last_time_us, b->last_time_us);
    cr_assert_eq(a->pre_cksum, b->pre_cksum);
    cr_assert_eq(a->post_cksum, b->post_cksum);
    cr_assert_eq(a->size, b->size);
    cr_assert_eq(a->xxh3, b->xxh3);
}

static void mt_same_snap(const struct manifest_snap *a, const struct manifest_snap *b)
{
    cr_assert_str_eq(a->key, b->key);
    cr_assert_eq(a->txid, b->txid);
    cr_assert_eq(a->time_us, b->time_us);
    cr_assert_eq(a->page_size, b->page_size);
    cr_assert_eq(a->db_pages, b->db_pages);
    cr_assert_eq(a->db_cksum, b->db_cksum);
    cr_assert_eq(a->size, b->size);
    cr_assert_eq(a->xxh3, b->xxh3);
}

static void mt_same(const struct manifest *a, const struct manifest *b)
{
    size_t i;

    cr_assert_eq(a->format, b->format);
    cr_assert_str_eq(a->name, b->name);
    cr_assert_str_eq(a->dbid, b->dbid);
    cr_assert_str_eq(a->prev_dbid, b->prev_dbid);
    cr_assert_eq(a->prev_txid, b->prev_txid);
    cr_assert_eq(a->created_us, b->created_us);
    cr_assert_eq(a->generation, b->generation);
    cr_assert_eq(a->nsegs, b->nsegs);
    cr_assert_eq(a->nsnaps, b->nsnaps);
    for (i = 0; i < a->nsegs; i++)
        mt_same_seg(&a->segs[i], &b->segs[i]);
    for (i = 0; i < a->nsnaps; i++)
        mt_same_snap(&a->snaps[i], &b->snaps[i]);
}

/* Checksum of a parsed document per docs/FORMAT.md, computed here
 * independently of the module: canonical dump without "checksum". */
static uint64_t mt_doc_sum(json_t *root)
{
    json_t *copy = json_deep_copy(root);
    char *s;
    uint64_t h;

    cr_assert(copy);
    json_object_del(copy, "checksum");
    s = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    cr_assert(s);
    h = XXH3_64bits(s, strlen(s));
    free(s);
    json_decref(copy);
    return h;
}

static void mt_reseal(json_t *root)
{
    char hex[17];

    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)mt_doc_sum(root));
    cr_assert_eq(json_object_set_new(root, "checksum", json_string(hex)), 0);
}

/* Parent of the node at a '/'-separated path ("segments/1/size"), with the
 * last component in *last (static storage). */
static json_t *mt_walk(json_t *root, const char *path, const char **last)
{
    char buf[128], *tok, *save, *next;
    json_t *cur = root;
    static char lastbuf[64];

    snprintf(buf, sizeof buf, "%s", path);
    tok = strtok_r(buf, "/", &save);
    while (tok) {
        next = strtok_r(NULL, "/", &save);
        if (!next) {
            snprintf(lastbuf, sizeof lastbuf, "%s", tok);
            *last = lastbuf;
            return cur;
        }
        cur = json_is_array(cur) ? json_array_get(cur, strtoul(tok, NULL, 10)) : json_object_get(cur, tok);
        cr_assert(cur, "path %s", path);
        tok = next;
    }
    cr_assert_fail("empty path");
    return NULL;
}

/* Set (value = JSON text) or delete (value = NULL) the member at path. */
static void mt_set(json_t *root, const char *path, const char *value)
{
    const char *last;
    json_t *parent = mt_walk(root, path, &last), *v = NULL;
    json_error_t jerr;

    if (value) {
        v = json_loads(value, JSON_DECODE_ANY, &jerr);
        cr_assert(v, "bad test value %s: %s", value, jerr.text);
    }
    if (json_is_array(parent)) {
        size_t idx = strtoul(last, NULL, 10);
        if (v)
            cr_assert_eq(json_array_set_new(parent, idx, v), 0);
        else
            cr_assert_eq(json_array_remove(parent, idx), 0);
    } else if (v) {
        cr_assert_eq(json_object_set_new(parent, last, v), 0);
    } else {
        cr_assert_eq(json_object_del(parent, last), 0, "no member %s", path);
    }
}

/* The fixture's encoding with path set to value, optionally resealed; the
 * result is decoded: returns its rc and the message in err. */
static int mt_decode_mutated(const char *path, const char *value, int reseal, char *err, size_t errlen)
{
    struct manifest m, d;
    json_error_t jerr;
    json_t *root;
    char *enc, *s;
    int rc;

    mt_fixture(&m);
    enc = mt_encode(&m, NULL);
    root = json_loads(enc, 0, &jerr);
    cr_assert(root);
    if (strcmp(path, "checksum") == 0) {
        mt_set(root, path, value);
    } else {
        mt_set(root, path, value);
        if (reseal)
            mt_reseal(root);
    }
    s = json_dumps(root, JSON_INDENT(2)); /* layout differs from the writer's on purpose */
    cr_assert(s);
    err[0] = '\0';
    rc = manifest_decode(s, strlen(s), &d, err, errlen);
    if (rc == 0)
        manifest_free(&d);
    cr_assert_eq(d.nsegs, 0, "a failed decode must leave the manifest empty");
    free(s);
    json_decref(root);
    free(enc);
    manifest_free(&m);
    return rc;
}

/* ---- operations ---- */

Test(manifest, keys_are_canonical)
{
    char k[MANIFEST_KEY_MAX];

    cr_assert_str_eq(manifest_seg_key(k, 2, 0x10, 0x1ff), "seg/2/0000000000000010-00000000000001ff.lvseg");
    cr_assert_str_eq(manifest_snap_key(k, 0xabc), "snap/0000000000000abc.lvseg");
}

Test(manifest, init_validates_name_and_id)
{
    struct manifest m;

    cr_assert_eq(manifest_init(&m, "", MT_ID, 0), LV_EINVAL);
    cr_assert_eq(manifest_init(&m, "/abs.db", MT_ID, 0), LV_EINVAL);
    cr_assert_eq(manifest_init(&m, "a/../b.db", MT_ID, 0), LV_EINVAL);
    cr_assert_eq(manifest_init(&m, "a//b.db", MT_ID, 0), LV_EINVAL);
    cr_assert_eq(manifest_init(&m, "a\nb", MT_ID, 0), LV_EINVAL);
    cr_assert_eq(manifest_init(&m, "app.db", "0123456789ABCDEF0123456789abcdef", 0), LV_EINVAL);
    cr_assert_eq(manifest_init(&m, "app.db", "0123", 0), LV_EINVAL);
    cr_assert_eq(manifest_init(&m, "sub/dir/app.db", MT_ID, 5), 0);
    cr_assert_str_eq(m.name, "sub/dir/app.db");
    cr_assert_eq(m.created_us, 5);
    cr_assert_eq(m.generation, 0);
    manifest_free(&m);
    manifest_free(&m); /* idempotent */
}

Test(manifest, add_keeps_order_and_refuses_duplicates_and_bad_entries)
{
    struct manifest m;
    struct manifest_seg g;
    struct manifest_snap p;
    size_t i;

    mt_fixture(&m);
    cr_assert_eq(m.nsegs, 4);
    for (i = 1; i < m.nsegs; i++)
        cr_assert(m.segs[i - 1].first_txid < m.segs[i].first_txid ||
                  (m.segs[i - 1].first_txid == m.segs[i].first_txid &&
                   m.segs[i - 1].last_txid < m.segs[i].last_txid));
    cr_assert_str_eq(m.segs[0].key, "seg/0/0000000000000065-000000000000006e.lvseg");
    cr_assert_str_eq(m.segs[1].key, "seg/1/0000000000000065-0000000000000078.lvseg");
    cr_assert_eq(m.snaps[0].txid, 100);
    cr_assert_eq(m.snaps[1].txid, 120);

    g = mt_seg(0, 111, 120);
    cr_assert_eq(manifest_add_segment(&m, &g), LV_EEXIST);
    p = mt_snap(100);
    cr_assert_eq(manifest_add_snapshot(&m, &p), LV_EEXIST);

    g = mt_seg(0, 130, 131);
    g.last_txid = 129; /* last < first */
    cr_assert_eq(manifest_add_segment(&m, &g), LV_EINVAL);
    g = mt_seg(0, 130, 131);
    g.last_time_us = g.first_time_us - 1;
    cr_assert_eq(manifest_add_segment(&m, &g), LV_EINVAL);
    g = mt_seg(MANIFEST_MAX_LEVEL + 1, 130, 131);
    cr_assert_eq(manifest_add_segment(&m, &g), LV_EINVAL);
    g = mt_seg(0, 130, 139);
    g.size = 64 + 10 * 120 - 1; /* cannot hold 10 records */
    cr_assert_eq(manifest_add_segment(&m, &g), LV_EINVAL);
    g.size = 64 + 10 * 120;
    cr_assert_eq(manifest_add_segment(&m, &g), 0);
    g = mt_seg(0, 140, 141);
    strcpy(g.key, "seg/0/whatever.lvseg");
    cr_assert_eq(manifest_add_segment(&m, &g), LV_EINVAL);
    manifest_seg_key(g.key, 0, 140, 141);
    cr_assert_eq(manifest_add_segment(&m, &g), 0);
    p = mt_snap(150);
    p.page_size = 1000;
    cr_assert_eq(manifest_add_snapshot(&m, &p), LV_EINVAL);
    p = mt_snap(150);
    p.db_pages = 0; /* an empty database has checksum 0 */
    cr_assert_eq(manifest_add_snapshot(&m, &p), LV_EINVAL);
    p.db_cksum = 0;
    cr_assert_eq(manifest_add_snapshot(&m, &p), 0);
    cr_assert_eq(m.nsegs, 6);
    cr_assert_eq(m.nsnaps, 3);
    manifest_free(&m);
}

Test(manifest, find_remove_last_txid_snapshot_at_total)
{
    struct manifest m;
    char k[MANIFEST_KEY_MAX];
    uint64_t total = 0;
    size_t i;

    mt_fixture(&m);
    for (i = 0; i < m.nsegs; i++)
        total += m.segs[i].size;
    for (i = 0; i < m.nsnaps; i++)
        total += m.snaps[i].size;
    cr_assert_eq(manifest_total_bytes(&m), total);
    cr_assert_eq(manifest_last_txid(&m), 121);

    cr_assert_eq(manifest_snapshot_at(&m, 99), NULL);
    cr_assert_eq(manifest_snapshot_at(&m, 100)->txid, 100);
    cr_assert_eq(manifest_snapshot_at(&m, 119)->txid, 100);
    cr_assert_eq(manifest_snapshot_at(&m, 120)->txid, 120);
    cr_assert_eq(manifest_snapshot_at(&m, UINT64_MAX)->txid, 120);

    const struct manifest_seg *g = manifest_find_segment(&m, manifest_seg_key(k, 1, 101, 120));
    cr_assert_not_null(g);
    cr_assert_eq(g->level, 1);
    cr_assert_null(manifest_find_segment(&m, manifest_seg_key(k, 2, 101, 120)));
    cr_assert_null(manifest_find_segment(&m, "seg/1/0000000000000065-0000000000000078.lvseg.x"));
    cr_assert_null(manifest_find_segment(&m, "seg/1/0000000000000065-000000000000007G.lvseg"));
    cr_assert_not_null(manifest_find_snapshot(&m, manifest_snap_key(k, 120)));
    cr_assert_null(manifest_find_snapshot(&m, manifest_snap_key(k, 121)));

    cr_assert_eq(manifest_remove(&m, manifest_seg_key(k, 0, 121, 121)), 0);
    cr_assert_eq(manifest_last_txid(&m), 120);
    cr_assert_eq(manifest_remove(&m, manifest_seg_key(k, 0, 121, 121)), LV_ENOENT);
    cr_assert_eq(manifest_remove(&m, manifest_seg_key(k, 1, 101, 120)), 0);
    cr_assert_eq(m.nsegs, 2);
    cr_assert_eq(m.segs[0].first_txid, 101);
    cr_assert_eq(m.segs[1].first_txid, 111);
    cr_assert_eq(manifest_remove(&m, manifest_snap_key(k, 100)), 0);
    cr_assert_eq(m.nsnaps, 1);
    cr_assert_eq(m.snaps[0].txid, 120);
    cr_assert_eq(manifest_remove(&m, "manifest.json"), LV_ENOENT);
    manifest_free(&m);
}

/* ---- encoding ---- */

Test(manifest, round_trip_every_field)
{
    struct manifest m, d;
    char err[256] = "", *enc, *enc2;
    size_t len, len2;

    mt_fixture(&m);
    enc = mt_encode(&m, &len);
    cr_assert_eq(enc[len - 1], '\n');
    cr_assert_eq(m.generation, 7, "encode must not change the manifest");
    cr_assert_eq(manifest_decode(enc, len, &d, err, sizeof err), 0, "%s", err);
    mt_same(&m, &d);
    enc2 = mt_encode(&d, &len2);
    cr_assert_eq(len, len2);
    cr_assert_eq(memcmp(enc, enc2, len), 0, "encoding is canonical");
    free(enc2);
    manifest_free(&d);

    /* without a previous lineage, with negative times, at the integer limits */
    m.prev_dbid[0] = '\0';
    m.prev_txid = 0;
    m.created_us = -1;
    m.generation = INT64_MAX;
    free(enc);
    enc = mt_encode(&m, &len);
    cr_assert_not_null(strstr(enc, "\"previous\":null"));
    cr_assert_eq(manifest_decode(enc, len, &d, err, sizeof err), 0, "%s", err);
    mt_same(&m, &d);
    cr_assert_eq(d.generation, (uint64_t)INT64_MAX);
    manifest_free(&d);
    free(enc);
    manifest_free(&m);
}

Test(manifest, round_trip_empty_and_non_ascii_name)
{
    struct manifest m, d;
    char err[256] = "", *enc;
    size_t len;

    cr_assert_eq(manifest_init(&m, "caf\xc3\xa9/\xe2\x82\xac \"q\"\\.db", MT_ID, MT_T0), 0);
    enc = mt_encode(&m, &len);
    cr_assert_null(memchr(enc, 0xc3, len), "canonical JSON is ASCII");
    cr_assert_eq(manifest_decode(enc, len, &d, err, sizeof err), 0, "%s", err);
    mt_same(&m, &d);
    cr_assert_eq(d.nsegs + d.nsnaps, 0);
    cr_assert_eq(manifest_last_txid(&d), 0);
    manifest_free(&d);
    free(enc);
    manifest_free(&m);
}

Test(manifest, checksum_is_xxh3_of_canonical_json_without_it)
{
    struct manifest m;
    json_error_t jerr;
    json_t *root;
    char *enc, hex[17];

    mt_fixture(&m);
    enc = mt_encode(&m, NULL);
    root = json_loads(enc, 0, &jerr);
    cr_assert(root);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)mt_doc_sum(root));
    cr_assert_str_eq(json_string_value(json_object_get(root, "checksum")), hex);
    /* the stored bytes are the canonical form itself */
    char *canon = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    cr_assert_eq(strncmp(canon, enc, strlen(canon)), 0);
    free(canon);
    json_decref(root);
    free(enc);
    manifest_free(&m);
}

Test(manifest, decode_accepts_any_layout_of_the_same_document)
{
    char err[256];

    /* re-indented but unchanged: valid; the checksum covers meaning, not layout */
    cr_assert_eq(mt_decode_mutated("generation", "7", 0, err, sizeof err), 0, "%s", err);
}

Test(manifest, encode_refuses_inconsistent_manifest)
{
    struct manifest m;
    char err[256] = "", *out = (char *)1;
    size_t len = 1;

    mt_fixture(&m);
    m.segs[2].pre_cksum ^= 1; /* L0 111-120 no longer follows L0 101-110 */
    cr_assert_eq(manifest_encode(&m, &out, &len, err, sizeof err), LV_EINVAL);
    cr_assert_null(out);
    cr_assert_eq(len, 0);
    cr_assert_not_null(strstr(err, "segments[2].pre_checksum"), "%s", err);
    manifest_free(&m);
}

/* ---- damage ---- */

Test(manifest, every_single_bit_flip_is_detected, .timeout = 600) /* ~24,000 decodes: minutes under ASan on a busy machine */
{
    struct manifest m, d;
    char err[256], *enc, *buf;
    size_t len, i;
    int bit;

    mt_fixture(&m);
    enc = mt_encode(&m, &len);
    buf = malloc(len);
    cr_assert(buf);
    for (i = 0; i < len; i++) {
        for (bit = 0; bit < 8; bit++) {
            memcpy(buf, enc, len);
            buf[i] ^= (char)(1 << bit);
            int rc = manifest_decode(buf, len, &d, err, sizeof err);
            if (rc == 0)
                manifest_free(&d);
            cr_assert_neq(rc, 0, "flip of bit %d at byte %zu ('%c') was accepted", bit, i, enc[i]);
            cr_assert(rc == LV_ECORRUPT || rc == LV_EVERSION, "rc %d", rc);
        }
    }
    /* truncation at every length */
    for (i = 0; i + 1 < len; i++) {
        int rc = manifest_decode(enc, i, &d, err, sizeof err);
        if (rc == 0)
            manifest_free(&d);
        cr_assert_eq(rc, LV_ECORRUPT, "truncated to %zu bytes was accepted", i);
    }
    free(buf);
    free(enc);
    manifest_free(&m);
}

/* One damaged field: path, new JSON value (NULL: removed), text the error
 * message must contain. */
struct mt_case {
    const char *path, *value, *expect;
};

static const struct mt_case mt_cases[] = {
    {"format", "\"1\"", "format: not an integer"},
    {"format", NULL, "format: missing"},
    {"format", "0", "format"},
    {"name", "5", "name: not a string"},
    {"name", "\"\"", "name: empty"},
    {"name", "\"../x.db\"", "name:"},
    {"name", "\"/abs.db\"", "name:"},
    {"name", NULL, "name: missing"},
    {"database_id", "\"0123456789ABCDEF0123456789abcdef\"", "database_id: not 32"},
    {"database_id", "\"0123456789abcdef\"", "database_id: not 32"},
    {"database_id", NULL, "database_id: missing"},
    {"created_us", "1.5", "created_us: not an integer"},
    {"created_us", "\"1\"", "created_us: not an integer"},
    {"generation", "-1", "generation:"},
    {"generation", "null", "generation: not an integer"},
    {"previous", "5", "previous: not null or an object"},
    {"previous", NULL, "previous: missing"},
    {"previous/database_id", "\"" MT_ID "\"", "previous.database_id: equals"},
    {"previous/database_id", "7", "previous.database_id: not a string"},
    {"previous/txid", "-3", "previous.txid:"},
    {"previous/txid", NULL, "previous.txid: missing"},
    {"previous/extra", "1", "previous: unknown field"},
    {"segments", "{}", "segments: not an array"},
    {"segments", NULL, "segments: missing"},
    {"snapshots", "null", "snapshots: not an array"},
    {"snapshots", NULL, "snapshots: missing"},
    {"segments/0", "[]", "segments[0]: not an object"},
    {"segments/0/key", "\"seg/0/zzz.lvseg\"", "segments[0].key"},
    {"segments/0/key", "\"seg/0/0000000000000065-000000000000006f.lvseg\"", "segments[0].key"},
    {"segments/0/key", "7", "segments[0].key: not a string"},
    {"segments/0/key", NULL, "segments[0].key: missing"},
    {"segments/0/level", "10", "segments[0].level:"},
    {"segments/0/level", "-1", "segments[0].level:"},
    {"segments/0/level", "1", "segments[0].key"}, /* key no longer matches the level */
    {"segments/0/first_txid", "0", "segments[0].first_txid:"},
    {"segments/0/first_txid", "true", "segments[0].first_txid: not an integer"},
    {"segments/1/last_txid", "100", "segments[1].last_txid:"},
    {"segments/1/last_txid", "9223372036854775807", "segments[1].size"},
    {"segments/1/last_time_us", "0", "segments[1].last_time_us:"},
    {"segments/1/first_time_us", "[]", "segments[1].first_time_us: not an integer"},
    {"segments/0/pre_checksum", "\"xyz\"", "segments[0].pre_checksum: not 16"},
    {"segments/0/pre_checksum", "\"0123456789ABCDEF\"", "segments[0].pre_checksum: not 16"},
    {"segments/0/post_checksum", "\"012345678\"", "segments[0].post_checksum: not 16"},
    {"segments/0/post_checksum", "\"0123456789abcdef0\"", "segments[0].post_checksum: not 16"},
    {"segments/0/size", "10", "segments[0].size:"},
    {"segments/0/size", "\"100\"", "segments[0].size: not an integer"},
    {"segments/0/xxh3", NULL, "segments[0].xxh3: missing"},
    {"segments/0/xxh3", "12", "segments[0].xxh3: not a string"},
    {"segments/0/bogus", "1", "segments[0]: unknown field"},
    {"snapshots/0/txid", "0", "snapshots[0].txid:"},
    {"snapshots/0/txid", "101", "snapshots[0].key"},
    {"snapshots/0/page_size", "1000", "snapshots[0].page_size:"},
    {"snapshots/0/page_size", "131072", "snapshots[0].page_size:"},
    {"snapshots/0/db_pages", "-1", "snapshots[0].db_pages:"},
    {"snapshots/0/db_pages", "4294967296", "snapshots[0].db_pages:"},
    {"snapshots/0/db_checksum", "true", "snapshots[0].db_checksum: not a string"},
    {"snapshots/0/key", "\"snap/x\"", "snapshots[0].key"},
    {"snapshots/0/time_us", "null", "snapshots[0].time_us: not an integer"},
    {"snapshots/0/size", "0", "snapshots[0].size:"},
    {"snapshots/1/xxh3", NULL, "snapshots[1].xxh3: missing"},
    {"snapshots/0", "1", "snapshots[0]: not an object"},
    {"extra_top", "1", "unknown field \"extra_top\""},
    /* cross-entry rules */
    {"segments/2/pre_checksum", "\"00000000000000aa\"", "segments[2].pre_checksum"},
    {"snapshots/1/db_checksum", "\"00000000000000aa\"", "snapshots[1].db_checksum"},
    {"segments/2/first_time_us", "1700000000109999", "segments[2].first_time_us"},
    {"snapshots/0/time_us", "1700000000101001", "snapshots[0].time_us"},
};

Test(manifest, damaged_fields_are_named)
{
    char err[256];
    size_t i;
    int reseal;

    for (i = 0; i < LV_ARRAY_LEN(mt_cases); i++) {
        const struct mt_case *c = &mt_cases[i];
        /* resealed: only the field rules can catch it; not resealed: the
         * field is still reported by name, before the checksum */
        for (reseal = 1; reseal >= 0; reseal--) {
            int rc = mt_decode_mutated(c->path, c->value, reseal, err, sizeof err);
            cr_assert_eq(rc, LV_ECORRUPT, "%s = %s (reseal %d): rc %d (%s)", c->path, c->value ? c->value : "removed",
                         reseal, rc, err);
            cr_assert_not_null(strstr(err, c->expect), "%s = %s (reseal %d): message \"%s\" lacks \"%s\"", c->path,
                               c->value ? c->value : "removed", reseal, err, c->expect);
        }
    }
}

Test(manifest, removing_a_segment_keeps_order_unless_resorted)
{
    /* the case table removes segments[3]; check here that a removal that
     * keeps the order is valid once resealed (the rules are not too strict) */
    char err[256];

    cr_assert_eq(mt_decode_mutated("segments/0", NULL, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(mt_decode_mutated("snapshots/0", NULL, 1, err, sizeof err), 0, "%s", err);
}

Test(manifest, duplicate_and_unsorted_entries)
{
    struct manifest m, d;
    json_error_t jerr;
    json_t *root, *segs, *snaps;
    char err[256], *enc, *s;

    mt_fixture(&m);
    enc = mt_encode(&m, NULL);

    root = json_loads(enc, 0, &jerr);
    segs = json_object_get(root, "segments");
    json_array_insert_new(segs, 1, json_deep_copy(json_array_get(segs, 0)));
    mt_reseal(root);
    s = json_dumps(root, JSON_COMPACT);
    cr_assert_eq(manifest_decode(s, strlen(s), &d, err, sizeof err), LV_ECORRUPT);
    cr_assert_not_null(strstr(err, "segments[1].key"), "%s", err);
    cr_assert_not_null(strstr(err, "duplicate"), "%s", err);
    free(s);
    json_decref(root);

    root = json_loads(enc, 0, &jerr);
    snaps = json_object_get(root, "snapshots");
    json_array_append_new(snaps, json_deep_copy(json_array_get(snaps, 0)));
    mt_reseal(root);
    s = json_dumps(root, JSON_COMPACT);
    cr_assert_eq(manifest_decode(s, strlen(s), &d, err, sizeof err), LV_ECORRUPT);
    cr_assert_not_null(strstr(err, "snapshots[2].key"), "%s", err);
    cr_assert_not_null(strstr(err, "out of order"), "%s", err);
    free(s);
    json_decref(root);

    free(enc);
    manifest_free(&m);
}

Test(manifest, checksum_mismatch_and_bad_checksum_field)
{
    char err[256];

    /* a valid value changed without resealing: only the checksum catches it */
    cr_assert_eq(mt_decode_mutated("segments/0/xxh3", "\"0000000000000001\"", 0, err, sizeof err), LV_ECORRUPT);
    cr_assert_eq(strncmp(err, "checksum: stored", 16), 0, "%s", err);
    cr_assert_eq(mt_decode_mutated("generation", "8", 0, err, sizeof err), LV_ECORRUPT);
    cr_assert_eq(strncmp(err, "checksum: stored", 16), 0, "%s", err);
    /* the same change resealed is a valid manifest */
    cr_assert_eq(mt_decode_mutated("generation", "8", 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(mt_decode_mutated("segments/0/xxh3", "\"0000000000000001\"", 1, err, sizeof err), 0, "%s", err);

    cr_assert_eq(mt_decode_mutated("checksum", NULL, 0, err, sizeof err), LV_ECORRUPT);
    cr_assert_not_null(strstr(err, "checksum: missing"), "%s", err);
    cr_assert_eq(mt_decode_mutated("checksum", "\"abc\"", 0, err, sizeof err), LV_ECORRUPT);
    cr_assert_not_null(strstr(err, "checksum: not 16"), "%s", err);
    cr_assert_eq(mt_decode_mutated("checksum", "42", 0, err, sizeof err), LV_ECORRUPT);
    cr_assert_not_null(strstr(err, "checksum: not a string"), "%s", err);
    cr_assert_eq(mt_decode_mutated("checksum", "\"0000000000000000\"", 0, err, sizeof err), LV_ECORRUPT);
    cr_assert_not_null(strstr(err, "checksum: stored 0000000000000000"), "%s", err);
}

Test(manifest, newer_format_is_a_version_error)
{
    char err[256];

    cr_assert_eq(mt_decode_mutated("format", "2", 1, err, sizeof err), LV_EVERSION);
    cr_assert_not_null(strstr(err, "format: 2"), "%s", err);
}

Test(manifest, not_json_duplicates_and_wrong_top_level)
{
    struct manifest d;
    char err[256], *enc, *s, *p;
    struct manifest m;
    size_t len;

    cr_assert_eq(manifest_decode("", 0, &d, err, sizeof err), LV_ECORRUPT);
    cr_assert_eq(manifest_decode("[1,2]", 5, &d, err, sizeof err), LV_ECORRUPT);
    cr_assert_not_null(strstr(err, "not an object"), "%s", err);
    cr_assert_eq(manifest_decode("{\"format\":1}", 12, &d, err, sizeof err), LV_ECORRUPT);
    cr_assert_not_null(strstr(err, "missing"), "%s", err);

    /* a member written twice (the second would win in a lax parser) */
    mt_fixture(&m);
    enc = mt_encode(&m, &len);
    p = strstr(enc, "\"generation\":7");
    cr_assert(p);
    cr_assert(asprintf(&s, "%.*s\"generation\":9,%s", (int)(p - enc), enc, p) > 0);
    cr_assert_eq(manifest_decode(s, strlen(s), &d, err, sizeof err), LV_ECORRUPT);
    cr_assert_not_null(strstr(err, "duplicate"), "%s", err);
    free(s);
    /* trailing garbage */
    cr_assert(asprintf(&s, "%s{}", enc) > 0);
    cr_assert_eq(manifest_decode(s, strlen(s), &d, err, sizeof err), LV_ECORRUPT);
    free(s);
    free(enc);
    manifest_free(&m);
}

Test(manifest, check_catches_direct_edits)
{
    struct manifest m;
    char err[256];

    mt_fixture(&m);
    cr_assert_eq(manifest_check(&m, err, sizeof err), 0, "%s", err);
    m.snaps[0].time_us = mt_tm(101) + 1; /* snapshot 100 committed after TXID 101 */
    cr_assert_eq(manifest_check(&m, err, sizeof err), LV_ECORRUPT);
    cr_assert_not_null(strstr(err, "snapshots[0].time_us"), "%s", err);
    m.snaps[0].time_us = mt_tm(100);
    m.segs[0].first_txid = 102; /* key no longer derived from the fields */
    cr_assert_eq(manifest_check(&m, err, sizeof err), LV_ECORRUPT);
    cr_assert_not_null(strstr(err, "segments[0].key"), "%s", err);
    manifest_free(&m);
}
