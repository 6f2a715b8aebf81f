/*
 * unit_fetch.c -- restore/fetch.c: large objects are downloaded in chunks
 * whose bytes count in the progress as they arrive (the restore progress
 * bar moves during a big snapshot), and the size and XXH3 checks still
 * hold.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/lv.h"
#include "lib/lvtest.h"
#include "restore/fetch.h"
#include "store/store.h"

TestSuite(fetch, .fini = lvt_fini, .timeout = 60);

static struct store *open_store(void)
{
    char url[512], err[512] = "";
    struct store *st = NULL;

    snprintf(url, sizeof url, "file://%s", lvt_tmpdir("fetch"));
    cr_assert_eq(store_open(url, NULL, &st, err, sizeof err), 0, "store_open %s: %s", url, err);
    return st;
}

static unsigned char *random_bytes(size_t n)
{
    unsigned char *b = malloc(n);
    cr_assert_not_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(rand() >> 7);
    return b;
}

Test(fetch, large_object_in_chunks_counted_as_they_arrive)
{
    const size_t size = 1u << 20, chunk = 64u << 10;
    struct store *st = open_store();
    unsigned char *data = random_bytes(size);
    struct store_stats before, after;
    struct fetch_progress p;
    struct fetch_res res;
    struct fetch *f = NULL;

    cr_assert_eq(store_put(st, "big", data, size), 0);
    struct fetch_obj obj = {"big", size, XXH3_64bits(data, size)};
    fetch_set_chunk(chunk);
    store_get_stats(st, &before);
    cr_assert_eq(fetch_start(st, &obj, 1, 1, 0, 0, &f), 0);
    cr_assert(fetch_wait(f, 0, -1, &res));
    store_get_stats(st, &after);
    cr_assert_eq(res.rc, 0, "%s", res.err ? res.err : "");
    cr_assert_eq(res.len, size);
    cr_assert_eq(memcmp(res.buf, data, size), 0);
    /* one ranged request per chunk: progress could move 16 times */
    cr_assert_geq(after.gets - before.gets, size / chunk, "%llu gets for %zu chunks",
                  (unsigned long long)(after.gets - before.gets), size / chunk);
    fetch_get_progress(f, &p);
    cr_assert_eq(p.bytes_done, size, "bytes counted once: %llu", (unsigned long long)p.bytes_done);
    cr_assert_eq(p.objs_done, 1);
    fetch_release(f, 0);
    fetch_stop(f);
    fetch_set_chunk(0);
    store_close(st);
    free(data);
}

Test(fetch, large_object_of_the_wrong_size_or_content_is_refused_with_its_bytes)
{
    const size_t size = 512u << 10, chunk = 32u << 10;
    struct store *st = open_store();
    unsigned char *data = random_bytes(size);
    struct fetch_res res;
    struct fetch *f = NULL;

    cr_assert_eq(store_put(st, "short", data, size - 100), 0);
    cr_assert_eq(store_put(st, "flipped", data, size), 0);
    struct fetch_obj objs[2] = {{"short", size, XXH3_64bits(data, size)}, {"flipped", size, XXH3_64bits(data, size) ^ 1}};
    fetch_set_chunk(chunk);
    cr_assert_eq(fetch_start(st, objs, 2, 2, 0, 0, &f), 0);
    cr_assert(fetch_wait(f, 0, -1, &res));
    cr_assert_eq(res.rc, LV_EMISMATCH);
    cr_assert_eq(res.len, size - 100, "the short object's bytes are kept for --allow-partial");
    cr_assert_not_null(strstr(res.err, "size"), "%s", res.err);
    fetch_release(f, 0);
    cr_assert(fetch_wait(f, 1, -1, &res));
    cr_assert_eq(res.rc, LV_EMISMATCH);
    cr_assert_not_null(strstr(res.err, "XXH3"), "%s", res.err);
    fetch_release(f, 1);
    fetch_stop(f);
    fetch_set_chunk(0);
    store_close(st);
    free(data);
}
