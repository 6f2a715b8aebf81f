/*
 * fuzz_manifest.c -- libFuzzer harness for the archive's JSON objects and
 * the restore planner: manifest_decode (archive/manifest.c),
 * archive_current_decode and archive_deleted_decode (archive/current.c) and plan_make
 * (restore/plan.c) on whatever manifest decodes.
 *
 * Input: any bytes, given whole to both decoders.  Checked beyond "no
 * crash, no UB, no leak":
 *   - a manifest that decodes passes manifest_check, re-encodes, and the
 *     encoding decodes again to the same encoding (canonical form);
 *   - planning it for the latest state, for TXIDs 1, the middle and the
 *     last, and for a few times never fails with anything but a documented
 *     code, and a successful plan's segments are contiguous and end at
 *     (or, resolved by time, cover) its target;
 *   - a current.json that decodes re-encodes and decodes to the same ID;
 *   - so does a deleted.json of format 2 (archive_deleted_decode), with the
 *     same time and reason; one of format 1 decodes with no reason.
 * Seeds: valid manifests and pointers written by gen_seeds with the
 * project's own encoders.  The manifest's "checksum" member rejects most
 * mutations only after the JSON has been parsed and every field checked,
 * so those checks are what the fuzzer mostly explores.
 */
#include <inttypes.h>

#include "archive/current.h"
#include "fuzz_common.h"
#include "base/lv.h"
#include "archive/manifest.h"
#include "restore/plan.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...) do { fprintf(stderr, "fuzz_manifest: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!getenv("FUZZ_LOG"))
        lvlog_threshold = -1;
    return 0;
}

static void check_plan(const struct manifest *m, const struct plan_target *t)
{
    struct plan p;
    int rc = plan_make(m, t, PLAN_ALLOW_PARTIAL, &p);
    if (rc != 0 && rc != LV_ENOENT && rc != LV_EGAP && rc != LV_EINVAL && rc != LV_ENOMEM)
        FAIL("plan_make returned %d", rc);
    if (rc == 0) {
        uint64_t next = p.start_txid + 1;
        for (size_t i = 0; i < p.nsegs; i++) {
            if (p.segs[i]->first_txid > next || p.segs[i]->last_txid < next)
                FAIL("plan segment %zu (%" PRIu64 "..%" PRIu64 ") does not continue at TXID %" PRIu64, i,
                     p.segs[i]->first_txid, p.segs[i]->last_txid, next);
            next = p.segs[i]->last_txid + 1;
        }
        if (next - 1 < p.target_txid && !(p.resolve_by_time && next - 1 >= p.target_min_txid))
            FAIL("plan ends at TXID %" PRIu64 " before its target %" PRIu64, next - 1, p.target_txid);
    }
    plan_free(&p);
}

static void check_manifest(const uint8_t *data, size_t size)
{
    struct manifest m, m2;
    char err[512], *enc = NULL, *enc2 = NULL;
    size_t len = 0, len2 = 0;

    if (manifest_decode(data, size, &m, err, sizeof err) != 0)
        return;
    if (manifest_check(&m, err, sizeof err) != 0)
        FAIL("a decoded manifest fails manifest_check: %s", err);
    if (manifest_encode(&m, &enc, &len, err, sizeof err) != 0)
        FAIL("a decoded manifest does not encode: %s", err);
    if (manifest_decode(enc, len, &m2, err, sizeof err) != 0)
        FAIL("an encoded manifest does not decode: %s", err);
    if (manifest_encode(&m2, &enc2, &len2, err, sizeof err) != 0 || len2 != len || memcmp(enc, enc2, len) != 0)
        FAIL("encoding is not canonical");
    uint64_t last = manifest_last_txid(&m);
    struct plan_target t[] = {
        {.kind = PLAN_LATEST},
        {.kind = PLAN_TXID, .txid = 1},
        {.kind = PLAN_TXID, .txid = last / 2 + 1},
        {.kind = PLAN_TXID, .txid = last ? last : 1},
        {.kind = PLAN_TIME, .time_us = 0},
        {.kind = PLAN_TIME, .time_us = m.nsegs ? m.segs[m.nsegs / 2].first_time_us : 1},
        {.kind = PLAN_TIME, .time_us = INT64_MAX},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        check_plan(&m, &t[i]);
    free(enc);
    free(enc2);
    manifest_free(&m2);
    manifest_free(&m);
}

static void check_current(const uint8_t *data, size_t size)
{
    struct archive_current c, c2;
    char err[256], *enc = NULL;
    size_t len = 0;

    if (archive_current_decode(data, size, &c, err, sizeof err) != 0)
        return;
    if (archive_current_encode(&c, &enc, &len) != 0)
        FAIL("a decoded current.json does not encode");
    if (archive_current_decode(enc, len, &c2, err, sizeof err) != 0 || strcmp(c.dbid, c2.dbid) != 0)
        FAIL("current.json round trip failed: %s", err);
    free(enc);
}

static void check_deleted(const uint8_t *data, size_t size)
{
    struct archive_deleted t, t2;
    char err[256], *enc = NULL;
    size_t len = 0;

    if (archive_deleted_decode(data, size, &t, err, sizeof err) != 0)
        return;
    if ((t.format >= 2) != (t.reason[0] != 0))
        FAIL("deleted.json of format %d decoded with reason \"%s\"", t.format, t.reason);
    if (!t.reason[0])
        return; /* format 1: read, never written */
    if (archive_deleted_encode(&t, &enc, &len) != 0)
        FAIL("a decoded deleted.json does not encode");
    if (archive_deleted_decode(enc, len, &t2, err, sizeof err) != 0 || strcmp(t.dbid, t2.dbid) != 0 ||
        t.deleted_us != t2.deleted_us || strcmp(t.reason, t2.reason) != 0)
        FAIL("deleted.json round trip failed: %s", err);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    check_manifest(data, size);
    check_current(data, size);
    check_deleted(data, size);
    return 0;
}
