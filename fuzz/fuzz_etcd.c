/*
 * fuzz_etcd.c -- libFuzzer harness for what the etcd lease reads from etcd
 * (src/replica/etcd_value.c): base64 decoding, a member value (node key or
 * primary key), and the comparison of two members' positions.
 *
 * Input: any bytes.  Checked beyond "no crash, no UB":
 *   - encoding the input and decoding it gives the input back;
 *   - the input (as a C string) either decodes as base64 to a buffer of
 *     3/4 its length minus the padding, or is refused;
 *   - the input as a base64 value either parses as a member with a URL or
 *     is refused with the member cleared;
 *   - split at its first NUL into two JSON texts, positions A and B:
 *     etcdv_ahead never says both are ahead of the other, and never that
 *     one is ahead of itself.
 */
#include <jansson.h>

#include "base/lv.h"
#include "fuzz_common.h"
#include "replica/etcd_value.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...) do { fprintf(stderr, "fuzz_etcd: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!getenv("FUZZ_LOG"))
        lvlog_threshold = -1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct etcdv_member m;
    size_t len = 0, cut;
    char *enc, *dec, *s;
    json_t *a, *b;

    if (size > 4096)
        return 0;
    /* round trip */
    enc = etcdv_b64_enc(data, size);
    if (!enc)
        return 0;
    dec = etcdv_b64_dec(enc, &len);
    if (!dec || len != size || memcmp(dec, data, size) != 0)
        FAIL("base64 round trip of %zu bytes failed", size);
    free(dec);
    /* the input as a member value (JSON), encoded as etcd would */
    if (etcdv_member_parse(enc, &m) == 0) {
        json_t *o = json_loadb((const char *)data, size, 0, NULL);
        if (!json_is_object(o) || !json_is_string(json_object_get(o, "url")))
            FAIL("a member without a \"url\" string was accepted");
        json_decref(o);
    }
    etcdv_member_clear(&m);
    free(enc);
    /* the input as base64 text */
    s = fz_strndup(data, size);
    dec = etcdv_b64_dec(s, &len);
    if (dec) {
        size_t n = strlen(s), pad = n && s[n - 1] == '=' ? (n > 1 && s[n - 2] == '=' ? 2 : 1) : 0;
        if (n % 4 || len != n / 4 * 3 - pad)
            FAIL("decoded %zu characters to %zu bytes", n, len);
        free(dec);
    }
    if (etcdv_member_parse(s, &m) != 0 && (m.url[0] || m.txids))
        FAIL("a refused member is not cleared");
    etcdv_member_clear(&m);
    free(s);
    /* two positions */
    cut = 0;
    while (cut < size && data[cut])
        cut++;
    a = json_loadb((const char *)data, cut, 0, NULL);
    b = cut < size ? json_loadb((const char *)data + cut + 1, size - cut - 1, 0, NULL) : NULL;
    if (etcdv_ahead(a, a) || etcdv_ahead(b, b))
        FAIL("positions ahead of themselves");
    if (etcdv_ahead(a, b) && etcdv_ahead(b, a))
        FAIL("two positions each ahead of the other");
    if (etcdv_ahead_terms(a, b, b, a) && etcdv_ahead_terms(b, a, a, b))
        FAIL("two positions with terms each ahead of the other");
    if (etcdv_ahead_terms(a, b, a, b))
        FAIL("positions with terms ahead of themselves");
    json_decref(a);
    json_decref(b);
    return 0;
}
