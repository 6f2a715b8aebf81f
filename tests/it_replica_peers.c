/*
 * it_replica_peers.c -- a replica against a hostile or broken primary.
 *
 * A fake primary (a thread of the test with a listening socket on
 * loopback) answers POST /v1/stream with crafted bytes: garbage, a stream
 * cut in the middle of a record, a frame header announcing 4 GiB, a record
 * whose checksum chain does not continue, a HELLO of another cluster, a
 * 401, a HELLO of a term below the one the etcd lease names (a deposed
 * primary).  Each must give a clear line in the replica's log and a reconnect;
 * the replica never crashes, and what it already holds stays intact and
 * equal to what the valid frames carried.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "base/sys.h"
#include "lib/lvtest.h"
#include "log/txlog.h"
#include "replica/etcd_value.h"
#include "replica/stream.h"

TestSuite(replica_peers, .fini = lvt_fini, .timeout = 240);

#define CLUSTER "5eed5eed5eed5eed5eed5eed5eed5eed"

enum scenario {
    SC_GARBAGE, SC_CUT, SC_HUGE, SC_CHAIN, SC_CLUSTER, SC_401, SC_TERM, SC_SNAP_TERM, SC_HELLO_TERM, SC_HELLO_HOLD
};

/* The fake primary. */
struct fake {
    int lfd;                 /* listening socket */
    int port;                /* its port */
    enum scenario sc;        /* what to answer */
    pthread_t th;            /* the accept loop */
    volatile int conns;      /* requests answered */
    char last_body[8192];    /* the last request body (the replica's positions) */
    uint8_t *rec[3];         /* raw records TXID 1, 2, 3 of one database (valid chain, term 5) */
    size_t rec_len[3];
    uint8_t *deposed;        /* TXID 2 as rec[1], but of term 3: a deposed primary's record */
    uint8_t id[16];          /* the database ID of the records */
    int snaps;               /* SC_SNAP_TERM: images sent */
    uint64_t hello_term;     /* SC_HELLO_TERM, SC_HELLO_HOLD: the term its version 2 HELLO names (atomic) */
};

static void put(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void put_frame(int fd, uint8_t *fr, size_t len)
{
    put(fd, fr, len);
    free(fr);
}

static void hello(int fd, const char *cluster)
{
    char js[256];
    uint8_t *fr;
    size_t len;
    snprintf(js, sizeof js, "{\"version\":1,\"cluster\":\"%s\",\"node\":\"fake\",\"url\":\"http://fake\",\"time_us\":%lld}",
             cluster, (long long)lv_now_us());
    cr_assert_eq(stream_enc_text(ST_HELLO, js, &fr, &len), 0);
    put_frame(fd, fr, len);
}

/* A version 2 HELLO (a primary of an etcd lease) naming term. */
static void hello_v2(int fd, uint64_t term)
{
    char js[320];
    uint8_t *fr;
    size_t len;
    snprintf(js, sizeof js, "{\"version\":2,\"cluster\":\"%s\",\"node\":\"fake\",\"url\":\"http://fake\","
             "\"time_us\":%lld,\"term\":%" PRIu64 "}", CLUSTER, (long long)lv_now_us(), term);
    cr_assert_eq(stream_enc_text(ST_HELLO, js, &fr, &len), 0);
    put_frame(fd, fr, len);
}

static void record(int fd, struct fake *f, int i, size_t cut)
{
    uint8_t *fr;
    size_t len;
    cr_assert_eq(stream_enc_record("app.db", f->rec[i], f->rec_len[i], &fr, &len), 0);
    put(fd, fr, cut && cut < len ? cut : len);
    free(fr);
}

/* A one-page image of app.db at TXID 3 with the given term. */
static void snapshot(int fd, struct fake *f, uint64_t term)
{
    uint8_t page[4096], *fr;
    size_t len;
    memset(page, 0, sizeof page);
    memcpy(page, "SQLite format 3", 16);
    page[16] = 0x10;
    page[18] = page[19] = 1;
    page[28 + 3] = 1;
    page[100] = 9;
    cr_assert_eq(stream_enc_snap_begin("app.db", f->id, 3, lv_now_us(), 4096, 1, cksum_page(1, page, 4096), term,
                                       &fr, &len), 0);
    put_frame(fd, fr, len);
    cr_assert_eq(stream_enc_snap_pages("app.db", 1, 1, 4096, page, &fr, &len), 0);
    put_frame(fd, fr, len);
    cr_assert_eq(stream_enc_name(ST_SNAP_END, "app.db", &fr, &len), 0);
    put_frame(fd, fr, len);
}

/* Read a request head and its body (Content-Length) into f->last_body. */
static void read_request(int fd, struct fake *f)
{
    char buf[16384];
    size_t n = 0;
    long clen = 0;
    char *end = NULL;
    while (n < sizeof buf - 1) {
        ssize_t k = read(fd, buf + n, sizeof buf - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
        buf[n] = 0;
        if (!end && (end = strstr(buf, "\r\n\r\n"))) {
            char *cl = strcasestr(buf, "content-length:");
            clen = cl ? atol(cl + 15) : 0;
        }
        if (end && (long)(n - (size_t)(end + 4 - buf)) >= clen)
            break;
    }
    if (end)
        snprintf(f->last_body, sizeof f->last_body, "%s", end + 4);
}

static void *fake_loop(void *arg)
{
    struct fake *f = arg;
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/x-litevault-stream\r\n"
                             "Connection: close\r\n\r\n";
    for (;;) {
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        read_request(fd, f);
        switch (f->sc) {
        case SC_GARBAGE: {
            put(fd, ok, sizeof ok - 1);
            uint8_t junk[4096];
            for (size_t i = 0; i < sizeof junk; i++)
                junk[i] = (uint8_t)(i * 131 + 7);
            put(fd, junk, sizeof junk);
            break;
        }
        case SC_CUT:
            put(fd, ok, sizeof ok - 1);
            hello(fd, CLUSTER);
            record(fd, f, 0, 0);
            record(fd, f, 1, 60); /* cut inside TXID 2 */
            break;
        case SC_HUGE: {
            put(fd, ok, sizeof ok - 1);
            hello(fd, CLUSTER);
            uint8_t h[STREAM_HDR_SIZE];
            stream_hdr_encode(h, ST_RECORD, 0xFFFFFFF0u);
            put(fd, h, sizeof h);
            put(fd, "xxxxxxxx", 8);
            break;
        }
        case SC_CHAIN:
            put(fd, ok, sizeof ok - 1);
            hello(fd, CLUSTER);
            if (!strstr(f->last_body, "\"txid\":1") && !strstr(f->last_body, "\"txid\": 1"))
                record(fd, f, 0, 0); /* TXID 1 once */
            record(fd, f, 2, 0);     /* then TXID 3: does not continue */
            break;
        case SC_TERM: {
            put(fd, ok, sizeof ok - 1);
            hello(fd, CLUSTER);
            if (!strstr(f->last_body, "\"txid\":1") && !strstr(f->last_body, "\"txid\": 1"))
                record(fd, f, 0, 0); /* TXID 1 (term 5) once */
            uint8_t *fr;
            size_t len;
            cr_assert_eq(stream_enc_record("app.db", f->deposed, f->rec_len[1], &fr, &len), 0);
            put_frame(fd, fr, len); /* TXID 2 continues the chain, but its term went back */
            break;
        }
        case SC_SNAP_TERM: /* TXIDs 1-2 (term 5); then an image at TXID 3: term 3 first, term 7 after */
            put(fd, ok, sizeof ok - 1);
            hello(fd, CLUSTER);
            if (!strstr(f->last_body, "\"txid\":2") && !strstr(f->last_body, "\"txid\": 2")) {
                record(fd, f, 0, 0);
                record(fd, f, 1, 0);
            } else {
                snapshot(fd, f, __atomic_add_fetch(&f->snaps, 1, __ATOMIC_SEQ_CST) <= 2 ? 3 : 7);
            }
            break;
        case SC_HELLO_TERM: /* HELLO of hello_term, then TXIDs 1-3 once */
            put(fd, ok, sizeof ok - 1);
            hello_v2(fd, __atomic_load_n(&f->hello_term, __ATOMIC_SEQ_CST));
            if (!strstr(f->last_body, "\"txid\":3") && !strstr(f->last_body, "\"txid\": 3"))
                for (int i = 0; i < 3; i++)
                    record(fd, f, i, 0);
            break;
        case SC_HELLO_HOLD: /* as SC_HELLO_TERM, then heartbeats every 100 ms until the replica leaves (30 s at most) */
            put(fd, ok, sizeof ok - 1);
            hello_v2(fd, __atomic_load_n(&f->hello_term, __ATOMIC_SEQ_CST));
            if (!strstr(f->last_body, "\"txid\":3") && !strstr(f->last_body, "\"txid\": 3"))
                for (int i = 0; i < 3; i++)
                    record(fd, f, i, 0);
            for (uint64_t seq = 1; seq <= 300; seq++) {
                uint8_t *fr;
                size_t len;
                cr_assert_eq(stream_enc_heartbeat(lv_now_us(), seq, &fr, &len), 0);
                ssize_t w = send(fd, fr, len, MSG_NOSIGNAL);
                free(fr);
                if (w != (ssize_t)len)
                    break;
                usleep(100000);
            }
            break;
        case SC_CLUSTER:
            put(fd, ok, sizeof ok - 1);
            hello(fd, "0000000000000000000000000000beef");
            break;
        case SC_401: {
            static const char no[] = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n"
                                     "Content-Type: application/json\r\nContent-Length: 34\r\nConnection: close\r\n\r\n"
                                     "{\"error\":\"missing or wrong token\"}";
            put(fd, no, sizeof no - 1);
            break;
        }
        }
        __atomic_add_fetch(&f->conns, 1, __ATOMIC_SEQ_CST);
        close(fd);
    }
}

static void fake_stop(void *arg)
{
    struct fake *f = arg;
    shutdown(f->lfd, SHUT_RDWR);
    close(f->lfd);
    pthread_join(f->th, NULL);
    for (int i = 0; i < 3; i++)
        free(f->rec[i]);
    free(f->deposed);
    free(f);
}

/* Three consecutive records of a one-table database, built with the log writer. */
static void make_records(struct fake *f)
{
    char dir[] = "/tmp/lvpeer.XXXXXX", err[256];
    cr_assert(mkdtemp(dir));
    uint8_t id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    memcpy(f->id, id, 16);
    struct txlog *l;
    struct txlog_tail tail;
    cr_assert_eq(txlog_open(dir, id, 1 << 20, &l, &tail, err, sizeof err), 0, "%s", err);
    /* pages: a valid SQLite header on page 1 is not needed by the log; the
     * replica checks checksums, not SQL, so any bytes do */
    uint8_t page[4096];
    uint64_t pre = 0;
    for (int t = 1; t <= 3; t++) {
        memset(page, 0, sizeof page);
        memcpy(page, "SQLite format 3", 16);
        page[16] = 0x10; /* page size 4096 */
        page[17] = 0x00;
        page[18] = page[19] = 1;
        page[28 + 3] = 1; /* 1 page */
        page[100] = (uint8_t)t;
        struct txlog_hdr h = {.version = 2, .txid = (uint64_t)t, .time_us = lv_now_us(), .page_size = 4096,
                              .db_pages = 1, .pre_cksum = pre, .post_cksum = cksum_page(1, page, 4096), .term = 5};
        memcpy(h.dbid, id, 16);
        cr_assert_eq(txlog_append_begin(l, &h), 0);
        cr_assert_eq(txlog_append_page(l, 1, page), 0);
        cr_assert_eq(txlog_append_end(l), 0);
        pre = h.post_cksum;
    }
    txlog_close(l);
    void *img;
    size_t len;
    uint64_t last;
    cr_assert_eq(txlog_segment_image(dir, id, 1, 0, 0, &img, &len, &last), 0);
    size_t off = TXLOG_SEG_HDR_SIZE;
    for (int i = 0; i < 3; i++) {
        struct txlog_hdr h;
        cr_assert_eq(txlog_hdr_decode((uint8_t *)img + off, &h), 0);
        f->rec_len[i] = TXLOG_HDR_SIZE + h.stored_len + TXLOG_TRAILER_SIZE;
        f->rec[i] = malloc(f->rec_len[i]);
        memcpy(f->rec[i], (uint8_t *)img + off, f->rec_len[i]);
        off += f->rec_len[i];
    }
    free(img);
    f->deposed = malloc(f->rec_len[1]);
    memcpy(f->deposed, f->rec[1], f->rec_len[1]);
    lv_put32(f->deposed + 100, 3); /* term 3 (low 32 bits), header checksum redone */
    lv_put64(f->deposed + 104, cksum_buf(f->deposed, 104));
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static struct fake *fake_start(enum scenario sc)
{
    struct fake *f = calloc(1, sizeof *f);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    f->sc = sc;
    make_records(f);
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(f->lfd >= 0);
    cr_assert_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(f->lfd, 8), 0);
    cr_assert_eq(getsockname(f->lfd, (struct sockaddr *)&sa, &sl), 0);
    f->port = ntohs(sa.sin_port);
    cr_assert_eq(pthread_create(&f->th, NULL, fake_loop, f), 0);
    lvt_defer(LVT_UNDO, fake_stop, f);
    return f;
}

/* A replica of the fake primary, started; cluster: its cluster-id (or NULL). */
static struct lvnode *replica_of(struct fake *f, const char *cluster)
{
    char yaml[256];
    snprintf(yaml, sizeof yaml, "lease:\n  type: static\n  candidate: false\n  primary-url: http://127.0.0.1:%d\n",
             f->port);
    struct lvnode *n = lvnode_new(yaml);
    if (cluster) {
        char p[400];
        snprintf(p, sizeof p, "%s/cluster-id", n->data);
        cr_assert_eq(sys_mkdir_p(n->data), 0);
        FILE *fp = fopen(p, "w");
        cr_assert(fp);
        fprintf(fp, "%s\n", cluster);
        fclose(fp);
    }
    lvnode_start(n);
    return n;
}

/* The replica reconnected at least 3 times, logged needle, and lives. */
static void expect_reconnects(struct fake *f, struct lvnode *n, const char *needle)
{
    WAIT_FOR(__atomic_load_n(&f->conns, __ATOMIC_SEQ_CST) >= 3, LVT_WAIT_MS);
    WAIT_FOR(lvnode_log_contains(n, needle), LVT_WAIT_MS);
    cr_assert(lvnode_alive(n), "the replica died");
    /* Each new session is "connected" from its HELLO until the bad frame
     * after it is decoded: /health may answer 200 in that instant (a busy
     * machine widens it), so what is checked is that it says 503. */
    long st = 0;
    char *body = NULL;
    int unhealthy = WAIT_FOR((free(body), body = lvnode_http_get(n, "/health", &st), st == 503), LVT_WAIT_MS);
    cr_assert(unhealthy, "/health on a replica of a broken primary: %ld %s", st, body ? body : "");
    free(body);
}

Test(replica_peers, garbage)
{
    struct fake *f = fake_start(SC_GARBAGE);
    struct lvnode *n = replica_of(f, NULL);
    expect_reconnects(f, n, "127.0.0.1");
    cr_assert(lvnode_log_contains(n, "magic") || lvnode_log_contains(n, "frame"));
}

Test(replica_peers, cut_mid_record)
{
    struct fake *f = fake_start(SC_CUT);
    struct lvnode *n = replica_of(f, NULL);
    expect_reconnects(f, n, "127.0.0.1");
    /* TXID 1 arrived whole and stays; the cut TXID 2 was never applied */
    struct lvdbstat st;
    WAIT_FOR(lvnode_db_status(n, "app.db", &st) == 1 && st.txid == 1, LVT_WAIT_MS);
    cr_assert(strstr(f->last_body, "app.db"), "the replica did not resume from its position: %s", f->last_body);
}

Test(replica_peers, oversized_frame)
{
    struct fake *f = fake_start(SC_HUGE);
    struct lvnode *n = replica_of(f, NULL);
    expect_reconnects(f, n, "127.0.0.1");
    cr_assert(lvnode_log_contains(n, "4294967280") || lvnode_log_contains(n, "limit") ||
              lvnode_log_contains(n, "too large"), "the oversized frame is not named in the log");
}

/* A fake primary of scenario sc sends TXID 1 and then a TXID 2 or 3 that
 * must be refused: the replica names it (needle), reconnects, and its copy
 * stays at TXID 1, healthy. */
static void refused_after_txid1(enum scenario sc, const char *needle)
{
    struct fake *f = fake_start(sc);
    struct lvnode *n = replica_of(f, NULL);
    expect_reconnects(f, n, needle);
    struct lvdbstat st;
    cr_assert_eq(lvnode_db_status(n, "app.db", &st), 1);
    cr_assert_eq(st.txid, 1, "the replica's copy moved past TXID 1: %" PRIu64, st.txid);
    cr_assert_str_eq(st.status, "ok");
}

Test(replica_peers, broken_chain)
{
    refused_after_txid1(SC_CHAIN, "TXID 3");
}

/* Terms never go back: a record from a deposed primary (term 3) after the
 * replica applied term 5 is refused, though it continues the checksum chain. */
Test(replica_peers, deposed_term)
{
    refused_after_txid1(SC_TERM, "was written in term 3, but this replica already holds term 5");
}

/* A snapshot whose term is below the replica's is refused at SNAP_BEGIN;
 * one of a later term (a new primary's) is installed. */
Test(replica_peers, snapshot_term)
{
    struct fake *f = fake_start(SC_SNAP_TERM);
    struct lvnode *n = replica_of(f, NULL);
    if (!WAIT_FOR(lvnode_log_contains(n, "was written in term 3, but this replica already holds term 5"),
                  LVT_WAIT_MS)) {
        char *t = lvnode_log_text(n);
        cr_assert_fail("the term 3 image was not refused; the replica's log:\n%.4000s", t);
    }
    struct lvdbstat st;
    cr_assert(WAIT_FOR(lvnode_db_status(n, "app.db", &st) == 1 && st.txid == 3, LVT_WAIT_MS),
              "the term 7 image was not installed (TXID %" PRIu64 ")", st.txid);
    cr_assert(lvnode_alive(n));
}

Test(replica_peers, other_cluster)
{
    struct fake *f = fake_start(SC_CLUSTER);
    struct lvnode *n = replica_of(f, CLUSTER);
    expect_reconnects(f, n, "0000000000000000000000000000beef");
    cr_assert(lvnode_log_contains(n, CLUSTER), "the log does not name the replica's own cluster");
}

Test(replica_peers, unauthorized)
{
    struct fake *f = fake_start(SC_401);
    struct lvnode *n = replica_of(f, NULL);
    expect_reconnects(f, n, "401");
}

/* Put the etcd lease key `key` on e, naming the fake primary f as its
 * holder (on no etcd lease: it stays); the key's term, its create_revision
 * (the put's revision). */
static uint64_t lease_key_for(const struct lvetcd *e, const char *key, const struct fake *f)
{
    char val[128], *out = NULL;
    snprintf(val, sizeof val, "{\"url\":\"http://127.0.0.1:%d\",\"node\":\"fake\"}", f->port);
    char *kb = etcdv_b64_enc(key, strlen(key)), *vb = etcdv_b64_enc(val, strlen(val));
    cr_assert(kb && vb);
    cr_assert_eq(run_cmd(&out, "curl -sS --fail-with-body -X POST %s/v3/kv/put -d '{\"key\":\"%s\",\"value\":\"%s\"}'",
                         e->url, kb, vb), 0, "etcd put of %s: %s", key, out ? out : "");
    json_t *a = json_loads(out, 0, NULL);
    const char *rev = json_string_value(json_object_get(json_object_get(a, "header"), "revision"));
    cr_assert(rev, "no revision in etcd's answer to the put of %s: %s", key, out);
    uint64_t term = strtoull(rev, NULL, 10);
    cr_assert_gt(term, 1, "the put of %s has revision %s", key, rev);
    json_decref(a);
    free(out);
    free(kb);
    free(vb);
    return term;
}

/* Delete the lease key and put it back with the same value: a new term
 * (create revision) for the same address, as when a VIP or a DNS name
 * moves to a newly elected primary.  Returns the new term. */
static uint64_t lease_key_again(const struct lvetcd *e, const char *key, const struct fake *f)
{
    char *out = NULL, *kb = etcdv_b64_enc(key, strlen(key));
    cr_assert(kb);
    cr_assert_eq(run_cmd(&out, "curl -sS --fail-with-body -X POST %s/v3/kv/deleterange -d '{\"key\":\"%s\"}'", e->url,
                         kb), 0, "etcd delete of %s: %s", key, out ? out : "");
    free(out);
    free(kb);
    return lease_key_for(e, key, f);
}

/* A primary whose HELLO (stream version 2) names a term below the one the
 * etcd lease gives its key was deposed (a new primary was elected since,
 * behind the same address): the replica refuses it before taking anything
 * -- no record applied, the primary's cluster ID not adopted -- names its
 * URL, node and both terms in its log, /health and /status, and lives.
 * Once the primary at that address speaks the lease's term (the new
 * primary), the replica follows it and applies its records. */
Test(replica_peers, hello_term_below_lease)
{
    char why[256], ep[128], yaml[512], needle[300], idp[400];
    if (!etcd_available(why, sizeof why))
        cr_skip_test("%s", why);
    struct lvetcd *e = etcd_start(NULL);
    struct fake *f = fake_start(SC_HELLO_TERM);
    uint64_t term = lease_key_for(e, "/lvpeer/primary", f);
    __atomic_store_n(&f->hello_term, term - 1, __ATOMIC_SEQ_CST);
    snprintf(yaml, sizeof yaml, "lease:\n  type: etcd\n  endpoints: %s\n  key: /lvpeer/primary\n  ttl: 2s\n"
                                "  candidate: false\n", etcd_endpoints(e, 0, ep, sizeof ep));
    struct lvnode *n = lvnode_started(yaml);

    snprintf(needle, sizeof needle, "the primary http://127.0.0.1:%d (node fake) is at term %" PRIu64 ", but the lease "
             "names term %" PRIu64 ": it was deposed", f->port, term - 1, term);
    /* (a replica that follows it says so at once: no need to wait longer) */
    WAIT_FOR(lvnode_log_contains(n, needle) || lvnode_log_contains(n, "replication: following the primary"),
             LVT_WAIT_MS);
    if (!lvnode_log_contains(n, needle) || lvnode_log_contains(n, "replication: following the primary")) {
        char *t = lvnode_log_text(n);
        cr_assert_fail("the HELLO of term %" PRIu64 " was not refused (\"%s\"); the replica's log:\n%.4000s",
                       term - 1, needle, t);
    }
    expect_reconnects(f, n, needle);
    cr_assert(!lvnode_log_contains(n, "replication: following the primary"),
              "the replica followed the primary of term %" PRIu64 " at one of its HELLOs", term - 1);
    long st = 0;
    char *b = lvnode_http_get(n, "/health", &st);
    cr_assert(st == 503 && b && strstr(b, needle), "/health does not name the deposed primary: %ld %s", st,
              b ? b : "");
    free(b);
    json_t *s = lvnode_status(n);
    json_t *r = json_object_get(s, "replication");
    const char *le = json_string_value(json_object_get(r, "last_error"));
    cr_assert(le && strstr(le, needle), "/status replication.last_error does not name the deposed primary: %s",
              le ? le : "(none)");
    cr_assert(json_is_false(json_object_get(s, "connected")), "/status says the replica is connected");
    json_decref(s);
    struct lvdbstat ds;
    cr_assert_eq(lvnode_db_status(n, "app.db", &ds), 0, "the replica applied app.db (TXID %" PRIu64
                 ") from a deposed primary", ds.txid);
    snprintf(idp, sizeof idp, "%s/cluster-id", n->data);
    cr_assert_neq(access(idp, F_OK), 0, "the replica adopted the cluster ID of a deposed primary");

    /* The primary behind that address now speaks the lease's term. */
    __atomic_store_n(&f->hello_term, term, __ATOMIC_SEQ_CST);
    cr_assert(WAIT_FOR(lvnode_db_status(n, "app.db", &ds) == 1 && ds.txid == 3, LVT_WAIT_MS),
              "the replica did not follow the primary of term %" PRIu64 " (app.db at TXID %" PRIu64 ")", term,
              ds.txid);
    snprintf(needle, sizeof needle, "replication: following the primary http://127.0.0.1:%d (node fake, cluster %s)",
             f->port, CLUSTER);
    cr_assert(lvnode_log_contains(n, needle), "no \"%s\" in the replica's log", needle);
    cr_assert(lvnode_alive(n));
}

/* A new term behind the address the replica follows (a VIP or a DNS name
 * moved to a newly elected node, while the deposed primary still answers
 * there): the replica leaves the session it is in, refuses that primary's
 * HELLO of the old term, and follows once the address speaks the new
 * term.  Before replica_raise_term the replica went on following the
 * deposed primary's stream. */
Test(replica_peers, new_term_same_url)
{
    char why[256], ep[128], yaml[512], needle[300];
    if (!etcd_available(why, sizeof why))
        cr_skip_test("%s", why);
    struct lvetcd *e = etcd_start(NULL);
    struct fake *f = fake_start(SC_HELLO_HOLD);
    uint64_t term = lease_key_for(e, "/lvpeer/primary", f);
    __atomic_store_n(&f->hello_term, term, __ATOMIC_SEQ_CST);
    snprintf(yaml, sizeof yaml, "lease:\n  type: etcd\n  endpoints: %s\n  key: /lvpeer/primary\n  ttl: 2s\n"
                                "  candidate: false\n", etcd_endpoints(e, 0, ep, sizeof ep));
    struct lvnode *n = lvnode_started(yaml);
    struct lvdbstat ds;
    cr_assert(WAIT_FOR(lvnode_db_status(n, "app.db", &ds) == 1 && ds.txid == 3, LVT_WAIT_MS),
              "the replica did not follow the primary of term %" PRIu64, term);
    int conns = __atomic_load_n(&f->conns, __ATOMIC_SEQ_CST);

    uint64_t term2 = lease_key_again(e, "/lvpeer/primary", f);
    cr_assert_gt(term2, term);
    snprintf(needle, sizeof needle, "the lease names term %" PRIu64 " now, above the term %" PRIu64
             " of the primary http://127.0.0.1:%d followed", term2, term, f->port);
    cr_assert(WAIT_FOR(lvnode_log_contains(n, needle), LVT_WAIT_MS),
              "the replica stayed in the session of term %" PRIu64 " after the lease moved to term %" PRIu64
              " (no \"%s\" in its log)", term, term2, needle);
    snprintf(needle, sizeof needle, "the primary http://127.0.0.1:%d (node fake) is at term %" PRIu64
             ", but the lease names term %" PRIu64 ": it was deposed", f->port, term, term2);
    cr_assert(WAIT_FOR(lvnode_log_contains(n, needle), LVT_WAIT_MS), "no \"%s\" in the replica's log", needle);
    cr_assert_gt(__atomic_load_n(&f->conns, __ATOMIC_SEQ_CST), conns, "the session of the old term did not end");

    /* The address now speaks the new term: followed again. */
    __atomic_store_n(&f->hello_term, term2, __ATOMIC_SEQ_CST);
    json_t *s = NULL;
    cr_assert(WAIT_FOR((json_decref(s), s = lvnode_status(n),
                        json_is_true(json_object_get(json_object_get(s, "replication"), "connected"))),
                       LVT_WAIT_MS),
              "the replica does not follow the primary of term %" PRIu64, term2);
    json_decref(s);
    cr_assert(lvnode_alive(n));
}
