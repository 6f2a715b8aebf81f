/*
 * unit_plan.c -- restore planning (restore/plan.c): start snapshot, fewest
 * covering segments across compaction levels, TXID and time targets, the
 * error cases, allow-partial, a randomized comparison with a brute-force
 * planner, and timings for 10 and 10,000 segments.
 *
 * Manifests are built from a model lineage: pt_ck[x] is the database
 * checksum after TXID x and pt_tm[x] the commit time of TXID x (non-
 * decreasing), so every manifest passes manifest_check.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "archive/manifest.h"
#include "restore/plan.h"

static void pt_quiet(void)
{
    lvlog_threshold = -1;
}

TestSuite(plan, .init = pt_quiet, .timeout = 120);

#define PT_ID "00112233445566778899aabbccddeeff"
#define PT_T0 1800000000000000ll
#define PT_MAX 100002

static int64_t pt_tm[PT_MAX + 1]; /* commit time of TXID x */
static uint64_t pt_ck[PT_MAX + 1]; /* database checksum after TXID x */

/* Default model: one commit per millisecond. */
static void pt_model_linear(void)
{
    for (uint64_t x = 0; x <= PT_MAX; x++) {
        pt_tm[x] = PT_T0 + (int64_t)x * 1000;
        pt_ck[x] = x ? x * 0x9E3779B97F4A7C15ull + 1 : 0;
    }
}

static void pt_init(struct manifest *m)
{
    pt_model_linear();
    cr_assert_eq(manifest_init(m, "app.db", PT_ID, PT_T0), 0);
}

static void pt_add_sized(struct manifest *m, unsigned level, uint64_t a, uint64_t b, uint64_t size)
{
    struct manifest_seg s;

    memset(&s, 0, sizeof s);
    s.level = level;
    s.first_txid = a;
    s.last_txid = b;
    s.first_time_us = pt_tm[a];
    s.last_time_us = pt_tm[b];
    s.pre_cksum = pt_ck[a - 1];
    s.post_cksum = pt_ck[b];
    s.size = size;
    s.xxh3 = a * 31 + b;
    cr_assert_eq(manifest_add_segment(m, &s), 0, "add L%u %llu-%llu", level, (unsigned long long)a,
                 (unsigned long long)b);
}

/* Segment with a size that depends on its length (compacted: a bit smaller per record). */
static void pt_add(struct manifest *m, unsigned level, uint64_t a, uint64_t b)
{
    pt_add_sized(m, level, a, b, 64 + (b - a + 1) * (200 - 10 * level));
}

/* L0 segments of n TXIDs each covering a..b. */
static void pt_add_run(struct manifest *m, unsigned level, uint64_t a, uint64_t b, uint64_t n)
{
    for (uint64_t x = a; x <= b; x += n)
        pt_add(m, level, x, x + n - 1 < b ? x + n - 1 : b);
}

static void pt_snap(struct manifest *m, uint64_t x)
{
    struct manifest_snap s;

    memset(&s, 0, sizeof s);
    s.txid = x;
    s.time_us = pt_tm[x];
    s.page_size = 4096;
    s.db_pages = 8;
    s.db_cksum = pt_ck[x];
    s.size = 100000 + x;
    s.xxh3 = x;
    cr_assert_eq(manifest_add_snapshot(m, &s), 0);
}

static int pt_plan(const struct manifest *m, enum plan_kind kind, uint64_t txid, int64_t t, int flags,
                   struct plan *p)
{
    struct plan_target tg = {.kind = kind, .txid = txid, .time_us = t};
    return plan_make(m, &tg, flags, p);
}

/* Structural checks every successful plan must pass. */
static void pt_check_chain(const struct plan *p)
{
    uint64_t bytes = p->snap ? p->snap->size : 0, covered = p->start_txid;

    cr_assert_eq(p->start_txid, p->snap ? p->snap->txid : 0);
    for (size_t i = 0; i < p->nsegs; i++) {
        const struct manifest_seg *s = p->segs[i];
        cr_assert_leq(s->first_txid, covered + 1, "segment %zu (%s) leaves a hole after TXID %llu", i, s->key,
                      (unsigned long long)covered);
        cr_assert_gt(s->last_txid, covered, "segment %zu (%s) adds nothing", i, s->key);
        covered = s->last_txid;
        bytes += s->size;
    }
    cr_assert_geq(covered, p->target_txid, "plan stops at %llu before target %llu", (unsigned long long)covered,
                  (unsigned long long)p->target_txid);
    if (p->nsegs)
        cr_assert_lt(p->segs[p->nsegs - 1]->first_txid, p->target_txid + 1, "last segment not needed");
    cr_assert_eq(p->bytes, bytes);
    cr_assert_eq(p->objects, p->nsegs + (p->snap ? 1 : 0));
    cr_assert_leq(p->target_min_txid, p->target_txid);
    cr_assert_eq(p->resolve_by_time, p->target_min_txid < p->target_txid);
}

static void pt_expect_keys(const struct plan *p, const char *const *want, size_t n)
{
    cr_assert_eq(p->nsegs, n, "plan has %zu segments, expected %zu", p->nsegs, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(p->segs[i]->key, want[i], "segment %zu", i);
}

static const char *pt_k(unsigned level, uint64_t a, uint64_t b)
{
    static char keys[32][MANIFEST_KEY_MAX];
    static int next;
    char *k = keys[next++ % 32];
    return manifest_seg_key(k, level, a, b);
}

/* ---- planning cases as tables ---- */

#define NO (-1) /* in a pt_case: do not check this field */

/* One planning case on the manifest the test built: the target, then what the
 * plan must say.  Fields left at NO are not checked; .what names the case in
 * every failure message.  Write rows with PT(...), which presets NO. */
struct pt_case {
    const char *what;         /* the case, for failure messages */
    enum plan_kind kind;      /* target kind */
    uint64_t txid;            /* PLAN_TXID: the TXID */
    uint64_t at;              /* PLAN_TIME: pt_tm[at] + off */
    int64_t off;
    int flags;                /* PLAN_ALLOW_PARTIAL or 0 */
    int rc;                   /* plan_make's return code */
    int fail;                 /* p.fail */
    long long snap;           /* start snapshot's TXID, 0 for none */
    long long target;         /* p.target_txid */
    long long min;            /* p.target_min_txid */
    long long nsegs;          /* segments in the plan */
    long long objects;        /* p.objects */
    long long first_seg;      /* first_txid of the first segment */
    long long last_seg;       /* last_txid of the last segment */
    long long time_at;        /* p.time_us == pt_tm[time_at] */
    int resolve;              /* p.resolve_by_time */
    int partial;              /* p.partial */
    long long gap_first;      /* p.gap_first */
    long long gap_last;       /* p.gap_last */
    const char *msg, *msg2;   /* substrings of p.msg (NULL: none) */
};

/* A row with every check off, then the given fields (later designators win;
 * PT_CHECK silences -Woverride-init for exactly that). */
#define PT(...)                                                                                                     \
    {                                                                                                               \
        .fail = NO, .snap = NO, .target = NO, .min = NO, .nsegs = NO, .objects = NO, .first_seg = NO,               \
        .last_seg = NO, .time_at = NO, .resolve = NO, .partial = NO, .gap_first = NO, .gap_last = NO, __VA_ARGS__   \
    }

#define PT_EQ(c, field, got)                                                                                        \
    do {                                                                                                            \
        if ((c)->field != NO)                                                                                       \
            cr_assert_eq((long long)(got), (long long)(c)->field, "[%s] " #field " is %lld, expected %lld",       \
                         (c)->what, (long long)(got), (long long)(c)->field);                                     \
    } while (0)

/* Plan every case of the table on m and check what it says. */
static void pt_check_cases(const struct manifest *m, const struct pt_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct pt_case *c = &cases[i];
        struct plan p;
        int64_t t = c->kind == PLAN_TIME ? pt_tm[c->at] + c->off : 0;
        int rc = pt_plan(m, c->kind, c->txid, t, c->flags, &p);
        cr_assert_eq(rc, c->rc, "[%s] plan_make returned %d, expected %d (%s)", c->what, rc, c->rc, p.msg);
        if (rc == 0)
            pt_check_chain(&p);
        PT_EQ(c, fail, p.fail);
        PT_EQ(c, snap, p.snap ? p.snap->txid : 0);
        PT_EQ(c, target, p.target_txid);
        PT_EQ(c, min, p.target_min_txid);
        PT_EQ(c, nsegs, p.nsegs);
        PT_EQ(c, objects, p.objects);
        if (p.nsegs) {
            PT_EQ(c, first_seg, p.segs[0]->first_txid);
            PT_EQ(c, last_seg, p.segs[p.nsegs - 1]->last_txid);
        } else if (rc != 0 && c->nsegs == 0) {
            cr_assert_null(p.segs, "[%s] a failed plan keeps a segment array", c->what);
        }
        if (c->time_at != NO)
            cr_assert_eq(p.time_us, pt_tm[c->time_at], "[%s] time_us %lld", c->what, (long long)p.time_us);
        PT_EQ(c, resolve, p.resolve_by_time);
        PT_EQ(c, partial, p.partial);
        PT_EQ(c, gap_first, p.gap_first);
        PT_EQ(c, gap_last, p.gap_last);
        if (c->msg)
            cr_assert_not_null(strstr(p.msg, c->msg), "[%s] message lacks \"%s\": %s", c->what, c->msg, p.msg);
        if (c->msg2)
            cr_assert_not_null(strstr(p.msg, c->msg2), "[%s] message lacks \"%s\": %s", c->what, c->msg2, p.msg);
        plan_free(&p);
    }
}

/* Check the cases (PT rows) on manifest m. */
#define PT_CHECK(m, ...)                                                                                            \
    do {                                                                                                            \
        _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Woverride-init\"")                     \
        static const struct pt_case pt_cases_[] = {__VA_ARGS__};                                                   \
        _Pragma("GCC diagnostic pop")                                                                               \
        pt_check_cases(m, pt_cases_, LV_ARRAY_LEN(pt_cases_));                                                     \
    } while (0)

/* ---- basic targets ---- */

Test(plan, latest_from_snapshot)
{
    struct manifest m;
    struct plan p;

    pt_init(&m);
    pt_snap(&m, 100);
    pt_add_run(&m, 0, 101, 130, 10);
    cr_assert_eq(pt_plan(&m, PLAN_LATEST, 0, 0, 0, &p), 0, "%s", p.msg);
    pt_check_chain(&p);
    cr_assert_eq(p.snap->txid, 100);
    const char *want[] = {pt_k(0, 101, 110), pt_k(0, 111, 120), pt_k(0, 121, 130)};
    pt_expect_keys(&p, want, 3);
    cr_assert_eq(p.target_txid, 130);
    cr_assert_eq(p.objects, 4);
    cr_assert_eq(p.bytes, p.snap->size + 3 * (64 + 10 * 200));
    cr_assert_eq(p.fail, PLAN_OK);
    cr_assert_eq(p.partial, 0);
    plan_free(&p);
    manifest_free(&m);
}

Test(plan, txid_at_boundaries_and_inside_segments)
{
    struct manifest m;

    pt_init(&m);
    pt_snap(&m, 100);
    pt_add_run(&m, 0, 101, 130, 10);
#define AT_TXID(x, n, last) \
    PT(.what = "TXID " #x, .kind = PLAN_TXID, .txid = x, .target = x, .min = x, .resolve = 0, .nsegs = n, \
       .last_seg = last, .objects = 1 + n)
    PT_CHECK(&m, AT_TXID(100, 0, NO), AT_TXID(101, 1, 110), AT_TXID(110, 1, 110), AT_TXID(111, 2, 120),
             AT_TXID(115, 2, 120), AT_TXID(120, 2, 120), AT_TXID(121, 3, 130));
#undef AT_TXID
    manifest_free(&m);
}

Test(plan, empty_database_start_when_log_begins_at_txid_1)
{
    struct manifest m;
    struct plan p;

    pt_init(&m);
    pt_add_run(&m, 0, 1, 20, 10);
    cr_assert_eq(pt_plan(&m, PLAN_TXID, 15, 0, 0, &p), 0, "%s", p.msg);
    pt_check_chain(&p);
    cr_assert_null(p.snap);
    cr_assert_eq(p.start_txid, 0);
    cr_assert_eq(p.nsegs, 2);
    cr_assert_eq(p.objects, 2);
    plan_free(&p);
    manifest_free(&m);
}

Test(plan, several_snapshots_pick_nearest_not_after_target)
{
    struct manifest m;

    pt_init(&m);
    pt_snap(&m, 100);
    pt_snap(&m, 200);
    pt_snap(&m, 300);
    pt_add_run(&m, 0, 101, 400, 10);
    PT_CHECK(&m, PT(.what = "TXID 250", .kind = PLAN_TXID, .txid = 250, .snap = 200, .nsegs = 5, .first_seg = 201),
             PT(.what = "TXID 299", .kind = PLAN_TXID, .txid = 299, .snap = 200, .nsegs = 10),
             PT(.what = "TXID 300: the snapshot alone", .kind = PLAN_TXID, .txid = 300, .snap = 300, .nsegs = 0,
                .objects = 1),
             PT(.what = "latest", .kind = PLAN_LATEST, .snap = 300, .nsegs = 10, .target = 400),
             /* by time: the newest snapshot committed at or before T */
             PT(.what = "time of 250", .kind = PLAN_TIME, .at = 250, .snap = 200, .target = 250),
             PT(.what = "just before 300", .kind = PLAN_TIME, .at = 300, .off = -1, .snap = 200, .target = 299));
    manifest_free(&m);
}

Test(plan, before_earliest_beyond_end_and_bad_targets)
{
    struct manifest m;

    pt_init(&m);
    PT_CHECK(&m, PT(.what = "empty manifest", .kind = PLAN_LATEST, .rc = LV_ENOENT, .fail = PLAN_FAIL_EMPTY));

    pt_snap(&m, 100);
    pt_add_run(&m, 0, 51, 130, 10); /* the log starts at 51: no empty-database start */
    PT_CHECK(&m,
             PT(.what = "TXID 50", .kind = PLAN_TXID, .txid = 50, .rc = LV_ENOENT, .fail = PLAN_FAIL_BEFORE,
                .msg = "TXID 100", .nsegs = 0),
             PT(.what = "TXID 99", .kind = PLAN_TXID, .txid = 99, .rc = LV_ENOENT, .fail = PLAN_FAIL_BEFORE),
             PT(.what = "before the snapshot's time", .kind = PLAN_TIME, .at = 100, .off = -1, .rc = LV_ENOENT,
                .fail = PLAN_FAIL_BEFORE),
             PT(.what = "TXID 131", .kind = PLAN_TXID, .txid = 131, .rc = LV_ENOENT, .fail = PLAN_FAIL_BEYOND,
                .msg = "131", .msg2 = "130"),
             PT(.what = "TXID 0", .kind = PLAN_TXID, .txid = 0, .rc = LV_EINVAL, .fail = PLAN_FAIL_INVAL),
             PT(.what = "kind 7", .kind = (enum plan_kind)7, .txid = 1, .rc = LV_EINVAL));
    manifest_free(&m);

    /* no snapshot, log from TXID 1 */
    pt_init(&m);
    pt_add_run(&m, 0, 1, 30, 10);
    PT_CHECK(&m,
             PT(.what = "before the first commit", .kind = PLAN_TIME, .at = 1, .off = -1, .rc = LV_ENOENT,
                .fail = PLAN_FAIL_BEFORE, .msg = "first commit"),
             /* at TXID 1's time: 1..9 are possible from the manifest (segment 1-10) */
             PT(.what = "at TXID 1's time", .kind = PLAN_TIME, .at = 1, .min = 1, .target = 9, .resolve = 1,
                .nsegs = 1));
    manifest_free(&m);
}

Test(plan, snapshot_only_archive)
{
    struct manifest m;
    struct plan p;

    pt_init(&m);
    pt_snap(&m, 42);
    cr_assert_eq(pt_plan(&m, PLAN_LATEST, 0, 0, 0, &p), 0, "%s", p.msg);
    cr_assert_eq(p.snap->txid, 42);
    cr_assert_eq(p.target_txid, 42);
    cr_assert_eq(p.nsegs, 0);
    cr_assert_eq(p.objects, 1);
    plan_free(&p);
    manifest_free(&m);
}

/* ---- overlapping levels ---- */

Test(plan, overlapping_levels_fewest_objects)
{
    struct manifest m;
    struct plan p;

    pt_init(&m);
    pt_snap(&m, 100);
    pt_add_run(&m, 0, 1, 200, 10);
    pt_add_run(&m, 1, 1, 200, 50);

    /* from the empty database: four L1 objects, not twenty L0 */
    m.nsnaps = 0; /* hide the snapshot for this part */
    cr_assert_eq(pt_plan(&m, PLAN_LATEST, 0, 0, 0, &p), 0, "%s", p.msg);
    pt_check_chain(&p);
    const char *w1[] = {pt_k(1, 1, 50), pt_k(1, 51, 100), pt_k(1, 101, 150), pt_k(1, 151, 200)};
    pt_expect_keys(&p, w1, 4);
    plan_free(&p);
    m.nsnaps = 1;

    /* from snapshot 100 to 120: L1 101-150 (one object) beats L0 101-110 + 111-120 */
    cr_assert_eq(pt_plan(&m, PLAN_TXID, 120, 0, 0, &p), 0, "%s", p.msg);
    pt_check_chain(&p);
    const char *w2[] = {pt_k(1, 101, 150)};
    pt_expect_keys(&p, w2, 1);
    plan_free(&p);

    /* to 110: L0 101-110 and L1 101-150 both finish in one object; fewer bytes wins */
    cr_assert_eq(pt_plan(&m, PLAN_TXID, 110, 0, 0, &p), 0, "%s", p.msg);
    const char *w3[] = {pt_k(0, 101, 110)};
    pt_expect_keys(&p, w3, 1);
    plan_free(&p);

    /* an L2 segment starting before the snapshot still counts */
    pt_add(&m, 2, 91, 200);
    cr_assert_eq(pt_plan(&m, PLAN_LATEST, 0, 0, 0, &p), 0, "%s", p.msg);
    pt_check_chain(&p);
    const char *w4[] = {pt_k(2, 91, 200)};
    pt_expect_keys(&p, w4, 1);
    cr_assert_eq(p.objects, 2);
    plan_free(&p);
    manifest_free(&m);
}

Test(plan, equal_reach_ties_go_to_fewer_bytes)
{
    struct manifest m;
    struct plan p;

    pt_init(&m);
    pt_snap(&m, 100);
    pt_add_sized(&m, 0, 101, 110, 5000);
    pt_add_sized(&m, 1, 101, 110, 3000);
    pt_add_sized(&m, 2, 101, 110, 4000);
    cr_assert_eq(pt_plan(&m, PLAN_LATEST, 0, 0, 0, &p), 0);
    cr_assert_eq(p.nsegs, 1);
    cr_assert_eq(p.segs[0]->level, 1);
    plan_free(&p);
    manifest_free(&m);

    pt_init(&m);
    pt_snap(&m, 100);
    pt_add_sized(&m, 0, 101, 110, 2000);
    pt_add_sized(&m, 1, 101, 110, 3000);
    cr_assert_eq(pt_plan(&m, PLAN_LATEST, 0, 0, 0, &p), 0);
    cr_assert_eq(p.segs[0]->level, 0);
    plan_free(&p);
    manifest_free(&m);
}

/* ---- gaps ---- */

Test(plan, gap_is_named_and_allow_partial_stops_before_it)
{
    struct manifest m;

    pt_init(&m);
    pt_snap(&m, 100);
    pt_add(&m, 0, 101, 110);
    pt_add(&m, 0, 121, 130);
    PT_CHECK(&m,
             PT(.what = "latest across the gap", .kind = PLAN_LATEST, .rc = LV_EGAP, .fail = PLAN_FAIL_GAP,
                .gap_first = 111, .gap_last = 120, .msg = "111..120", .nsegs = 0),
             PT(.what = "a target before the gap", .kind = PLAN_TXID, .txid = 110),
             PT(.what = "latest, partial", .kind = PLAN_LATEST, .flags = PLAN_ALLOW_PARTIAL, .partial = 1,
                .target = 110, .gap_first = 111, .gap_last = 120, .nsegs = 1, .msg = "partial"),
             PT(.what = "a time past the gap, partial", .kind = PLAN_TIME, .at = 125, .flags = PLAN_ALLOW_PARTIAL,
                .partial = 1, .target = 110, .resolve = 0));
    manifest_free(&m);

    /* gap right after the snapshot: partial is the snapshot alone */
    pt_init(&m);
    pt_snap(&m, 100);
    pt_add(&m, 0, 111, 120);
    PT_CHECK(&m, PT(.what = "gap after the snapshot, partial", .kind = PLAN_TXID, .txid = 115,
                    .flags = PLAN_ALLOW_PARTIAL, .partial = 1, .target = 100, .nsegs = 0, .objects = 1,
                    .gap_first = 101, .gap_last = 110));
    manifest_free(&m);

    /* gap running to the target: the range is capped at the target */
    pt_init(&m);
    pt_snap(&m, 100);
    pt_add(&m, 0, 101, 110);
    pt_snap(&m, 200);
    PT_CHECK(&m, PT(.what = "gap up to the target", .kind = PLAN_TXID, .txid = 150, .rc = LV_EGAP, .gap_first = 111,
                    .gap_last = 150));
    manifest_free(&m);
}

/* ---- time targets ---- */

Test(plan, timestamps_between_and_at_commits)
{
    struct manifest m;

    pt_init(&m);
    pt_snap(&m, 100);
    pt_add_run(&m, 0, 101, 130, 10);
    PT_CHECK(&m,
             PT(.what = "exactly a segment's last commit: exact", .kind = PLAN_TIME, .at = 110, .target = 110,
                .resolve = 0, .time_at = 110),
             PT(.what = "between two segments: exact", .kind = PLAN_TIME, .at = 110, .off = 500, .target = 110,
                .resolve = 0, .nsegs = 1),
             PT(.what = "between 115 and 116, inside segment 111-120: resolved while applying", .kind = PLAN_TIME,
                .at = 115, .off = 500, .resolve = 1, .min = 111, .target = 119, .nsegs = 2, .first_seg = 101,
                .last_seg = 120),
             PT(.what = "at the snapshot's own time: the snapshot alone", .kind = PLAN_TIME, .at = 100, .target = 100,
                .nsegs = 0),
             PT(.what = "an hour after the last commit: latest, exact", .kind = PLAN_TIME, .at = 130,
                .off = 3600000000ll, .target = 130, .resolve = 0));
    manifest_free(&m);
}

Test(plan, timestamps_with_equal_commit_times)
{
    struct manifest m;

    pt_init(&m);
    for (int x = 101; x <= 120; x++) /* a clock step back clamped: 20 commits at one time */
        pt_tm[x] = pt_tm[100] + 7;
    pt_snap(&m, 100);
    pt_add_run(&m, 0, 101, 130, 10);
    PT_CHECK(&m,
             PT(.what = "the shared time: the last of them", .kind = PLAN_TIME, .at = 100, .off = 7, .target = 120,
                .resolve = 0, .nsegs = 2),
             PT(.what = "just before it", .kind = PLAN_TIME, .at = 100, .off = 6, .target = 100));
    manifest_free(&m);
}

/* ---- randomized comparison with a brute-force planner ---- */

static uint64_t pt_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

#define PR_N 240

/* Is TXID x in some segment? */
static int pr_covered(const struct manifest *m, uint64_t x)
{
    for (size_t i = 0; i < m->nsegs; i++)
        if (m->segs[i].first_txid <= x && x <= m->segs[i].last_txid)
            return 1;
    return 0;
}

/* Fewest segments covering start+1..goal (dynamic programming over TXIDs);
 * SIZE_MAX if impossible. */
static size_t pr_opt(const struct manifest *m, uint64_t start, uint64_t goal)
{
    size_t opt[PR_N + 2];

    opt[goal + 1] = 0;
    for (uint64_t x = goal; x > start; x--) {
        opt[x] = SIZE_MAX;
        for (size_t i = 0; i < m->nsegs; i++) {
            const struct manifest_seg *s = &m->segs[i];
            if (s->first_txid <= x && x <= s->last_txid) {
                uint64_t nx = (s->last_txid < goal ? s->last_txid : goal) + 1;
                if (opt[nx] != SIZE_MAX && opt[nx] + 1 < opt[x])
                    opt[x] = opt[nx] + 1;
            }
        }
    }
    return opt[start + 1];
}

/* Random lineage 1..PR_N: L0 chunks of 1..8, L1 of 1..4 L0s, L2 of 1..3 L1s;
 * some segments dropped (possible gaps), sometimes the log starts late,
 * 0..3 snapshots. */
static void pr_build(struct manifest *m, uint64_t *seed)
{
    uint64_t l0[PR_N + 1][2], l1[PR_N + 1][2];
    size_t n0 = 0, n1 = 0, i, j;
    uint64_t x, from = pt_rand(seed) % 3 == 0 ? 1 + pt_rand(seed) % 60 : 1;
    int dropl0 = (int)(pt_rand(seed) % 50), dropup = (int)(pt_rand(seed) % 40);

    cr_assert_eq(manifest_init(m, "r.db", PT_ID, PT_T0), 0);
    pt_tm[0] = PT_T0;
    pt_ck[0] = 0;
    for (x = 1; x <= PR_N; x++) {
        pt_tm[x] = pt_tm[x - 1] + (int64_t)(pt_rand(seed) % 3) * 1000;
        pt_ck[x] = pt_rand(seed);
    }
    for (x = 1; x <= PR_N; n0++) {
        uint64_t len = 1 + pt_rand(seed) % 8, b = x + len - 1 > PR_N ? PR_N : x + len - 1;
        l0[n0][0] = x, l0[n0][1] = b;
        x = b + 1;
    }
    for (i = 0; i < n0; n1++) {
        size_t k = 1 + pt_rand(seed) % 4;
        j = i + k - 1 < n0 ? i + k - 1 : n0 - 1;
        l1[n1][0] = l0[i][0], l1[n1][1] = l0[j][1];
        i = j + 1;
    }
    for (i = 0; i < n0; i++)
        if (l0[i][0] >= from && (int)(pt_rand(seed) % 100) >= dropl0)
            pt_add(m, 0, l0[i][0], l0[i][1]);
    for (i = 0; i < n1; i++)
        if (l1[i][0] >= from && (int)(pt_rand(seed) % 100) >= 30 + dropup && l1[i][0] != l1[i][1])
            pt_add(m, 1, l1[i][0], l1[i][1]);
    for (i = 0; i < n1;) {
        size_t k = 1 + pt_rand(seed) % 3;
        j = i + k - 1 < n1 ? i + k - 1 : n1 - 1;
        if (l1[i][0] >= from && (int)(pt_rand(seed) % 100) >= 50 + dropup && j > i)
            pt_add(m, 2, l1[i][0], l1[j][1]);
        i = j + 1;
    }
    for (i = pt_rand(seed) % 4; i > 0; i--) {
        x = 1 + pt_rand(seed) % PR_N;
        if (!manifest_snapshot_at(m, x) || manifest_snapshot_at(m, x)->txid != x)
            pt_snap(m, x);
    }
}

/* Check one TXID/latest target against the brute force. */
static void pr_check_txid(const struct manifest *m, enum plan_kind kind, uint64_t n, int flags)
{
    uint64_t latest = manifest_last_txid(m), start, x, gap = 0;
    const struct manifest_snap *snap;
    int have_empty = m->nsegs && m->segs[0].first_txid == 1;
    struct plan p;
    int rc = pt_plan(m, kind, n, 0, flags, &p);

    if (kind == PLAN_LATEST)
        n = latest;
    if (latest == 0) {
        cr_assert_eq(rc, LV_ENOENT);
        goto out;
    }
    if (n == 0) {
        cr_assert_eq(rc, LV_EINVAL);
        goto out;
    }
    if (n > latest) {
        cr_assert_eq(rc, LV_ENOENT);
        cr_assert_eq(p.fail, PLAN_FAIL_BEYOND);
        goto out;
    }
    snap = manifest_snapshot_at(m, n);
    if (!snap && !have_empty) {
        cr_assert_eq(rc, LV_ENOENT);
        cr_assert_eq(p.fail, PLAN_FAIL_BEFORE);
        goto out;
    }
    start = snap ? snap->txid : 0;
    for (x = start + 1; x <= n && !gap; x++)
        if (!pr_covered(m, x))
            gap = x;
    if (gap && !(flags & PLAN_ALLOW_PARTIAL)) {
        cr_assert_eq(rc, LV_EGAP, "target %llu: expected a gap at %llu, rc %d", (unsigned long long)n,
                     (unsigned long long)gap, rc);
        cr_assert_eq(p.gap_first, gap);
        for (x = gap; x <= p.gap_last; x++)
            cr_assert(!pr_covered(m, x));
        cr_assert(p.gap_last == n || pr_covered(m, p.gap_last + 1));
        goto out;
    }
    cr_assert_eq(rc, 0, "target %llu: %s", (unsigned long long)n, p.msg);
    cr_assert_eq(p.snap, snap);
    pt_check_chain(&p);
    cr_assert_eq(p.target_txid, gap ? gap - 1 : n);
    cr_assert_eq(p.partial, gap != 0);
    cr_assert_eq(p.nsegs, pr_opt(m, start, p.target_txid), "target %llu: %zu segments, optimum %zu",
                 (unsigned long long)n, p.nsegs, pr_opt(m, start, p.target_txid));
out:
    plan_free(&p);
}

/* Check one time target against the brute force. */
static void pr_check_time(const struct manifest *m, int64_t t)
{
    uint64_t latest = manifest_last_txid(m), r = 0, start, x;
    const struct manifest_snap *snap = NULL;
    int have_empty = m->nsegs && m->segs[0].first_txid == 1, ok = 1;
    struct plan p;
    int rc = pt_plan(m, PLAN_TIME, 0, t, 0, &p);

    if (latest == 0)
        goto out;
    for (x = 1; x <= latest; x++)
        if (pt_tm[x] <= t)
            r = x;
    for (size_t i = 0; i < m->nsnaps; i++)
        if (m->snaps[i].time_us <= t)
            snap = &m->snaps[i];
    if ((!snap && !have_empty) || (!snap && r == 0)) {
        cr_assert_eq(rc, LV_ENOENT, "time %lld: rc %d", (long long)t, rc);
        cr_assert_eq(p.fail, PLAN_FAIL_BEFORE);
        goto out;
    }
    start = snap ? snap->txid : 0;
    /* restorable exactly when start+1..r is covered and the step to r+1 is
     * known: r is the last TXID, or r+1 is in a segment or a snapshot */
    for (x = start + 1; x <= r; x++)
        ok &= pr_covered(m, x);
    if (r < latest && !pr_covered(m, r + 1) &&
        !(manifest_snapshot_at(m, r + 1) && manifest_snapshot_at(m, r + 1)->txid == r + 1))
        ok = 0;
    if (!ok) {
        cr_assert_eq(rc, LV_EGAP, "time %lld (r %llu): rc %d", (long long)t, (unsigned long long)r, rc);
        cr_assert(!pr_covered(m, p.gap_first));
        cr_assert_gt(p.gap_first, start);
        cr_assert_leq(p.gap_first, r + 1);
        goto out;
    }
    cr_assert_eq(rc, 0, "time %lld (r %llu): %s", (long long)t, (unsigned long long)r, p.msg);
    cr_assert_eq(p.snap, snap);
    pt_check_chain(&p);
    cr_assert_leq(p.target_min_txid, r);
    cr_assert_geq(p.target_txid, r);
    if (p.resolve_by_time) {
        const struct manifest_seg *last = p.segs[p.nsegs - 1];
        cr_assert_leq(last->first_txid, p.target_min_txid + 1);
        cr_assert_geq(last->last_txid, p.target_txid);
        /* the boundary really is unknown from the manifest alone */
        cr_assert_leq(last->first_time_us, t);
        cr_assert_gt(last->last_time_us, t);
    }
    cr_assert_eq(p.nsegs, pr_opt(m, start, p.target_txid));
out:
    plan_free(&p);
}

Test(plan, random_manifests_match_brute_force)
{
    uint64_t seed = 0x1234567;
    int round, k, exact = 0, resolved = 0, gaps = 0;

    for (round = 0; round < 300; round++) {
        struct manifest m, d;
        char err[256], *enc;
        size_t len;

        pr_build(&m, &seed);
        cr_assert_eq(manifest_check(&m, err, sizeof err), 0, "%s", err);
        /* plan on the decoded copy: the planner sees what restore will see */
        cr_assert_eq(manifest_encode(&m, &enc, &len, err, sizeof err), 0, "%s", err);
        cr_assert_eq(manifest_decode(enc, len, &d, err, sizeof err), 0, "%s", err);
        free(enc);
        uint64_t latest = manifest_last_txid(&d);
        pr_check_txid(&d, PLAN_LATEST, 0, 0);
        pr_check_txid(&d, PLAN_LATEST, 0, PLAN_ALLOW_PARTIAL);
        for (k = 0; k < 40; k++) {
            uint64_t n = pt_rand(&seed) % (latest + 3);
            pr_check_txid(&d, PLAN_TXID, n, 0);
            pr_check_txid(&d, PLAN_TXID, n, PLAN_ALLOW_PARTIAL);
            int64_t t = pt_tm[1] - 1000 + (int64_t)(pt_rand(&seed) % (uint64_t)(pt_tm[PR_N] - pt_tm[1] + 2001));
            if (pt_rand(&seed) % 2)
                t = pt_tm[1 + pt_rand(&seed) % PR_N]; /* exactly a commit time */
            pr_check_time(&d, t);
            struct plan p;
            int rc = pt_plan(&d, PLAN_TIME, 0, t, 0, &p);
            exact += rc == 0 && !p.resolve_by_time;
            resolved += rc == 0 && p.resolve_by_time;
            gaps += rc == LV_EGAP;
            plan_free(&p);
        }
        manifest_free(&d);
        manifest_free(&m);
    }
    /* the generator must exercise every outcome */
    cr_assert_gt(exact, 100);
    cr_assert_gt(resolved, 100);
    cr_assert_gt(gaps, 100);
}

/* ---- cost ---- */

/* Manifest with nseg L0 segments of 10 TXIDs from TXID 1 plus L1 segments
 * of 100 over the first half, snapshots every 1000 TXIDs. */
static void pt_big(struct manifest *m, size_t nseg)
{
    uint64_t last = nseg * 10;

    pt_init(m);
    pt_add_run(m, 0, 1, last, 10);
    if (last >= 200)
        pt_add_run(m, 1, 1, last / 2, 100);
    for (uint64_t x = 1000; x < last; x += 1000)
        pt_snap(m, x);
}

static void pt_time_one(size_t nseg)
{
    struct manifest m, d;
    char err[256], *enc;
    size_t len;
    int64_t t0, t_dec, t_plan;
    int iters = 200, i;
    struct plan p;

    pt_big(&m, nseg);
    cr_assert_eq(manifest_encode(&m, &enc, &len, err, sizeof err), 0, "%s", err);
    t0 = lv_mono_us();
    cr_assert_eq(manifest_decode(enc, len, &d, err, sizeof err), 0, "%s", err);
    t_dec = lv_mono_us() - t0;
    t0 = lv_mono_us();
    for (i = 0; i < iters; i++) {
        struct plan_target tg = {.kind = (enum plan_kind)(i % 3), .txid = 1 + (uint64_t)i * 37 % (nseg * 10),
                                 .time_us = pt_tm[1 + (uint64_t)i * 53 % (nseg * 10)] + 500};
        cr_assert_eq(plan_make(&d, &tg, 0, &p), 0, "%s", p.msg);
        plan_free(&p);
    }
    t_plan = (lv_mono_us() - t0) / iters;
    cr_assert_eq(pt_plan(&d, PLAN_LATEST, 0, 0, 0, &p), 0);
    cr_assert_eq(p.target_txid, nseg * 10);
    if (nseg >= 1000) /* from the newest snapshot: at most 99 TXIDs of L0 segments */
        cr_assert_leq(p.nsegs, 100);
    plan_free(&p);
    fprintf(stderr, "plan timing: %5zu segments (+%zu L1), manifest %zu bytes: decode %lld us, plan %lld us each\n",
            nseg, d.nsegs - nseg, len, (long long)t_dec, (long long)t_plan);
    free(enc);
    manifest_free(&d);
    manifest_free(&m);
}

Test(plan, timing_10_and_10000_segments)
{
    pt_time_one(10);
    pt_time_one(10000);
}
