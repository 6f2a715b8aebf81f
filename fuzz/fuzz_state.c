/*
 * fuzz_state.c -- libFuzzer harness for the checksum state file loader,
 * cksum_state_load (src/cksum.c).
 *
 * Input: a state file image (seeds from cksum_state_save, fuzz/gen_seeds.c).
 * It is loaded twice from a file in the scratch directory: as given, and
 * as a fixed-up copy cut to the largest whole number of page checksums
 * (56 + 8n + 8 bytes) with the page count at offset 44, the XOR total at 48
 * and the trailing XXH3 recomputed, so the fuzzer also reaches the code
 * behind the checks.
 *
 * Checked beyond "no crash, no leak, no UB":
 *   - on success the map holds n pages whose XOR equals the total, and the
 *     file length is exactly 56 + 8n + 8;
 *   - a loaded map survives save and reload unchanged (cksum_state_save to
 *     a second file, cksum_state_load, compare) -- the round trip the
 *     daemon relies on at every restart;
 *   - the fixed-up copy of an input whose magic and version are right,
 *     whose reserved word is 0 and whose page size is 0 or a power of two
 *     in 512..65536 is accepted (otherwise the loader rejects a
 *     well-formed file).
 */
#include <inttypes.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...) do { fprintf(stderr, "fuzz_state: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

#define ST_HDR 56

static char save_path[160]; /* fz_dir/saved, for the round trip */

static void state_cleanup(void)
{
    unlink(save_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init("state", "state");
    snprintf(save_path, sizeof save_path, "%s/saved", fz_dir);
    atexit(state_cleanup); /* runs before fz_cleanup removes the directory */
    return 0;
}

/* Load the n bytes at b; returns cksum_state_load's result and checks a success. */
static int load(const uint8_t *b, size_t n)
{
    struct cksum_map m, m2;
    uint8_t dbid[16], dbid2[16];
    uint64_t txid = 0, txid2 = 0, x = 0;
    uint32_t i;
    int rc, rc2;

    cksum_map_init(&m);
    rc = cksum_state_load(fz_file(b, n), &m, dbid, &txid);
    if (rc != 0) {
        if (rc != LV_ECORRUPT && rc != LV_EVERSION)
            FAIL("cksum_state_load returned %d (%s)", rc, lv_strerror(rc));
        cksum_map_free(&m);
        return rc;
    }
    if (n != ST_HDR + (size_t)m.npages * 8 + 8)
        FAIL("accepted %zu bytes for %u pages", n, m.npages);
    for (i = 1; i <= m.npages; i++)
        x ^= cksum_map_get(&m, i);
    if (x != m.total)
        FAIL("loaded map total %016" PRIx64 " != XOR of pages %016" PRIx64, m.total, x);

    rc2 = cksum_state_save(save_path, &m, dbid, txid);
    if (rc2 != 0)
        FAIL("cksum_state_save of a loaded map failed: %d (%s)", rc2, lv_strerror(rc2));
    cksum_map_init(&m2);
    rc2 = cksum_state_load(save_path, &m2, dbid2, &txid2);
    if (rc2 != 0)
        FAIL("reloading a saved map failed: %d (%s)", rc2, lv_strerror(rc2));
    if (m2.npages != m.npages || m2.page_size != m.page_size || m2.total != m.total || txid2 != txid ||
        memcmp(dbid, dbid2, 16) != 0 || (m.npages && memcmp(m.h, m2.h, (size_t)m.npages * 8) != 0))
        FAIL("save/load round trip changed the map (%u pages of %u -> %u pages of %u)", m.npages, m.page_size,
             m2.npages, m2.page_size);
    cksum_map_free(&m2);
    cksum_map_free(&m);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;
    size_t n, len;
    uint64_t x = 0;
    uint32_t ps;

    if (size > (1u << 20))
        return 0;
    load(data, size);
    if (size < ST_HDR + 8)
        return 0;
    n = (size - ST_HDR - 8) / 8;
    len = ST_HDR + n * 8 + 8;
    copy = malloc(len);
    if (!copy)
        return 0;
    memcpy(copy, data, len);
    lv_put32(copy + 44, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        x ^= lv_get64(copy + ST_HDR + 8 * i);
    lv_put64(copy + 48, x);
    lv_put64(copy + len - 8, cksum_buf(copy, len - 8));
    ps = lv_get32(copy + 40);
    if (load(copy, len) != 0 && memcmp(copy, "LVSTATE1", 8) == 0 && lv_get32(copy + 8) == 1 &&
        lv_get32(copy + 12) == 0 && ((ps == 0 && n == 0) || (ps >= 512 && ps <= 65536 && (ps & (ps - 1)) == 0)))
        FAIL("a well-formed state file of %zu pages was rejected", n);
    free(copy);
    return 0;
}
