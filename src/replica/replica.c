/*
 * replica.c -- a replica's client (see replica.h).
 *
 * TWO THREADS per session.  The worker (the receiver) runs sessions one
 * after the other:
 *   1. positions: dbreg_list (name, ID, TXID, checksum per database; a
 *      database whose copy could not continue, or that is broken, asks for
 *      a snapshot: "resync":true); repl_rx_session resets the receiver.
 *   2. POST /v1/stream to the primary with {"cluster","node","url","dbs"}
 *      (libcurl set up by http_client_setup: bearer token, CA file, http
 *      and https only; TCP_NODELAY, connect timeout 5 s).
 *   3. The write callback appends the bytes to the session's queue and
 *      wakes the applier, a thread of the session (started with the
 *      transfer, joined after it).  The applier takes everything queued at
 *      once, feeds the decoder (stream_dec) and handles each frame: HELLO
 *      (the cluster check), then everything else through rx; then rx
 *      applies what it batched.  So a lone commit is applied as soon as it
 *      arrives (no timer), and while one batch is being applied the next
 *      one gathers in the queue: the slower the apply (readers holding
 *      SQLite's locks, a burst), the larger the batch, and the cost of
 *      taking the locks, writing a page several records changed and
 *      telling the kernel is paid once per batch, not per record.
 *   4. The session ends on any failure, of either thread (the applier
 *      sets s->aborted; the receiver's callbacks see it and end the
 *      transfer); the worker naps (backoff: 100 ms doubling to 5 s, back
 *      to 100 ms after a session that followed the stream for 2 s, so a
 *      primary that fails every stream at once is not hammered) and starts
 *      over.  The primary resends from the positions of step 1.
 * MEMORY.  The queue holds at most RP_QUEUE_MAX bytes: beyond that the
 * write callback waits, the socket is not read and TCP pushes back on the
 * primary.  With the applier's buffer (swapped with the queue's) and the
 * decoder's copy of what it has not decoded yet, a session's stream bytes
 * take at most about 3 x RP_QUEUE_MAX.  A database whose readers keep SQLite's
 * locks (LV_EBUSY) does not stop the others: its batch waits in rx, tried
 * again every apply-wait.  Only when the batches kept that way exceed
 * max_pending (64 MiB) does the applier stay and retry them (each try
 * waits up to apply-wait for the readers) until they fit.
 *
 * CLUSTER.  The replica sends its cluster ID, or "" when data.dir has no
 * cluster-id file.  The primary refuses another cluster's replica (409,
 * naming both IDs), and a replica without a cluster ID holding databases
 * the primary does not have (by ID: databases seeded from the primary's
 * archive have its IDs) -- so that a replica pointed at the wrong primary
 * never has its databases dropped.  On HELLO a replica without a
 * cluster-id adopts the primary's (cluster_id_save) and keeps it; a HELLO
 * naming another cluster than the replica's own ends the session.
 *
 * FAILURES.  Every session end is logged, naming the primary's URL and,
 * for an apply, the database: refused (the primary's JSON error), cut,
 * damaged (the decoder's message), silent for 5 s (heartbeats come every
 * second), a copy that needs a snapshot.  The same failure again (a
 * primary down for a while) is a warning once a minute, debug otherwise.
 * Nothing received is trusted before it is decoded and checked; a bad
 * frame never crashes.
 *
 * LOCKING.  r->mu guards what /status and /health read (connected,
 * cluster, since, last_error, primary_node); rx has its own lock; counters
 * are atomics.  A session's qmu guards its queue, eof, aborted and why.
 * Neither thread holds a lock across a network or apply call.
 */
#include "replica/replica.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "base/cksum.h"
#include "base/http.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/metrics.h"
#include "base/worker.h"
#include "capture/db.h"
#include "replica/cluster.h"
#include "replica/plan.h"
#include "replica/rx.h"
#include "replica/stream.h"

#define RP_STALL_US (5 * 1000000LL)       /* no byte for this long: reconnect */
#define RP_CONNECT_TIMEOUT_S 5L
#define RP_MAX_PENDING (64u << 20)
#define RP_QUEUE_MAX (8u << 20)            /* stream bytes received and not yet taken by the applier */
#define RP_QUEUE_WAIT_US 100000            /* the callback's nap while the queue is full (stop checks) */
#define RP_ERRBODY_MAX 65536
#define RP_DEFAULT_WAIT_US 100000
#define RP_DEFAULT_MAX_LAG_US (10 * 1000000LL)
#define RP_REPEAT_WARN_US (60 * 1000000LL) /* the same failure is a warning once a minute */
#define RP_PROGRESS_US (2 * 1000000LL)     /* a stream followed this long resets the backoff */

struct replica {
    struct dbreg *reg;
    char data_dir[PATH_MAX];
    char primary_url[1024];
    char *token;              /* owned, NULL if none; never logged */
    char ca_file[PATH_MAX];   /* "" for the system's */
    char node[72];
    char url[1024];
    uint64_t min_term;        /* refuse a HELLO with a lower term, and end a session whose HELLO's term
                               * falls below it (atomic; only raised: replica_raise_term) */
    int wait_ms;
    int64_t max_lag_us;
    size_t max_pending;
    struct repl_rx *rx;
    struct worker *w;         /* the thread (replica_start/replica_stop) */
    struct worker *self;      /* the same worker as its own thread knows it (set before any session: its
                               * threads, the worker and the applier, read it) */
    pthread_mutex_t mu;       /* guards the fields below */
    pthread_cond_t exited_cv; /* signalled when exited turns 1 */
    int exited;               /* the thread left replica_main */
    int connected;            /* a stream is being followed (HELLO accepted) */
    char cluster_hex[33];     /* this node's cluster ID, "" if none yet */
    char primary_node[72];    /* the node ID in the last HELLO */
    int64_t since_us;         /* connected: since; else: disconnected since (0: never connected) */
    char last_error[600];     /* why the last session ended */
    int64_t last_warn_mono;   /* when a failure was last logged as a warning */
    uint64_t rx_bytes;        /* atomic: stream bytes received */
    uint64_t sessions;        /* atomic: sessions attempted */
};

/* One session (one POST /v1/stream).  Fields without a lock named belong
 * to one thread: the receiver's (curl's callbacks), or the applier's. */
struct rsess {
    struct replica *r;
    CURL *h;                  /* receiver */
    struct stream_dec *dec;   /* applier */
    int checked;              /* receiver: the response status was looked at */
    long status;              /* receiver: HTTP status */
    char *errbody;            /* receiver: a non-200 answer's body (bounded) */
    size_t errlen;            /* receiver */
    int hello;                /* applier: HELLO accepted (read by the receiver after the join) */
    int acks;                 /* applier: the primary wants acknowledgements (HELLO "acks") */
    uint64_t term;            /* applier: the primary's term in its HELLO (0: version 1) */
    CURL *ack_h;              /* applier: POST /v1/ack (kept alive), NULL until the first */
    struct curl_slist *ack_hdrs; /* applier: its headers */
    char *ack_last;           /* applier: the last positions acknowledged (malloc'ed JSON), or NULL */
    int64_t last_rx_mono;     /* receiver: last bytes (or the start) */
    int have_cluster;         /* applier (set before it starts) */
    uint8_t cluster[16];      /* applier (set before it starts) */
    struct worker *applier;   /* the applier thread, NULL when not started */
    pthread_mutex_t qmu;      /* guards the fields below */
    pthread_cond_t qcv;       /* signalled on every change of them */
    uint8_t *q;               /* bytes received, not yet taken by the applier (owned) */
    size_t qlen, qcap;        /* used and allocated */
    int eof;                  /* atomic too: the transfer ended, nothing more will be queued */
    int aborted;              /* atomic too: a thread ended the session; why says why */
    char why[600];
};

static pthread_once_t rp_curl_once = PTHREAD_ONCE_INIT;
static CURLcode rp_curl_rc;

static void rp_curl_init(void)
{
    rp_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void set_error(struct replica *r, const char *msg)
{
    pthread_mutex_lock(&r->mu);
    snprintf(r->last_error, sizeof r->last_error, "%s", msg);
    pthread_mutex_unlock(&r->mu);
}

static void set_connected(struct replica *r, int c, const char *primary_node)
{
    pthread_mutex_lock(&r->mu);
    if (c != r->connected) {
        r->connected = c;
        r->since_us = lv_now_us();
    }
    if (primary_node)
        snprintf(r->primary_node, sizeof r->primary_node, "%s", primary_node);

    pthread_mutex_unlock(&r->mu);
}

/* End the session from either thread: the first reason is kept and logged
 * once, after the transfer.  Returns 0 (what a curl callback returns to
 * end the transfer). */
static size_t abort_session(struct rsess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t abort_session(struct rsess *s, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&s->qmu);
    if (!s->aborted) {
        va_start(ap, fmt);
        vsnprintf(s->why, sizeof s->why, fmt, ap);
        va_end(ap);
        __atomic_store_n(&s->aborted, 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&s->qcv);
    }
    pthread_mutex_unlock(&s->qmu);
    return 0;
}

static int is_aborted(struct rsess *s) { return __atomic_load_n(&s->aborted, __ATOMIC_ACQUIRE); }
static int is_eof(struct rsess *s) { return __atomic_load_n(&s->eof, __ATOMIC_ACQUIRE); }

/* ------------------------------------------------------------ frames */

/* HELLO: the cluster check (and adoption on first contact). 0 or negative (why set). */
static int on_hello(struct rsess *s, const struct stream_frame *f)
{
    struct replica *r = s->r;
    json_error_t je;
    json_t *o = json_loadb(f->text, f->text_len, 0, &je);
    const char *ch = json_string_value(json_object_get(o, "cluster"));
    const char *node = json_string_value(json_object_get(o, "node"));
    uint8_t theirs[16];
    char mine[33];
    int rc = 0;

    json_t *ver = json_object_get(o, "version");
    json_int_t term = json_integer_value(json_object_get(o, "term")); /* 0 when absent (version 1) */
    uint64_t min_term = __atomic_load_n(&r->min_term, __ATOMIC_ACQUIRE);

    if (!json_is_integer(ver) || json_integer_value(ver) < 1 || json_integer_value(ver) > 2) {
        abort_session(s, "the primary speaks stream version %lld; this replica knows versions 1 and 2: upgrade it",
                      (long long)json_integer_value(ver));
        rc = LV_EVERSION;
    } else if (json_integer_value(ver) == 1 && min_term > 0) {
        abort_session(s, "the primary %s (node %s) speaks stream version 1, which carries no term, but the lease "
                      "names term %llu: not following it (upgrade it)", r->primary_url, node ? node : "?",
                      (unsigned long long)min_term);
        rc = LV_EREFUSED;
    } else if (term < 0 || (uint64_t)term < min_term) {
        abort_session(s, "the primary %s (node %s) is at term %lld, but the lease names term %llu: it was deposed; "
                      "not following it", r->primary_url, node ? node : "?", (long long)term,
                      (unsigned long long)min_term);
        rc = LV_EREFUSED;
    } else if (!ch || strlen(ch) != 32 || lv_unhex(ch, theirs, 16) != 0) {
        abort_session(s, "HELLO without a valid cluster ID: %.200s", f->text);
        rc = LV_ECORRUPT;
    } else if (s->have_cluster && memcmp(theirs, s->cluster, 16) != 0) {
        abort_session(s, "the primary belongs to cluster %s, this replica to cluster %s: refusing to follow it", ch,
                      lv_hex(s->cluster, 16, mine));
        rc = LV_EREFUSED;
    } else if (!s->have_cluster) {
        rc = cluster_id_save(r->data_dir, theirs);
        if (rc) {
            abort_session(s, "cannot save the cluster ID %s in %s/cluster-id: %s", ch, r->data_dir, lv_strerror(rc));
        } else {
            LV_INFO("replication: joined cluster %s of the primary %s (saved in %s/cluster-id)", ch, r->primary_url,
                    r->data_dir);
            memcpy(s->cluster, theirs, 16);
            s->have_cluster = 1;
            pthread_mutex_lock(&r->mu);
            snprintf(r->cluster_hex, sizeof r->cluster_hex, "%s", ch);
            pthread_mutex_unlock(&r->mu);
        }
    }
    if (rc == 0) {
        s->hello = 1;
        s->term = (uint64_t)term;
        s->acks = json_is_true(json_object_get(o, "acks"));
        set_connected(r, 1, node ? node : "");
        LV_INFO("replication: following the primary %s (node %s, cluster %s)", r->primary_url, node ? node : "?", ch);
    }
    json_decref(o);
    return rc;
}

/* libcurl write callback that drops an answer's body. */
static size_t discard_body(char *p, size_t sz, size_t n, void *arg)
{
    LV_UNUSED(p);
    LV_UNUSED(arg);
    return sz * n;
}

/* Tell the primary what this replica holds now (POST /v1/ack: its
 * synchronous replication waits for it), when that changed.  A failure is
 * logged (debug) and otherwise ignored: the primary stops counting this
 * replica after its sync-timeout, and the stream goes on. */
static void send_ack(struct rsess *s)
{
    struct replica *r = s->r;
    struct repl_rx_stat *st = NULL;
    size_t n = 0;
    json_t *o = json_object(), *tx = json_object();
    char *body = NULL, url[1200], errbuf[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode cc;

    if (!o || !tx || repl_rx_stats(r->rx, lv_now_us(), &st, &n) != 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (st[i].txid)
            json_object_set_new(tx, st[i].name, json_integer((json_int_t)st[i].txid));
    json_object_set_new(o, "node", json_string(r->node));
    json_object_set(o, "txids", tx);
    body = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    if (!body || (s->ack_last && strcmp(body, s->ack_last) == 0))
        goto out;
    if (!s->ack_h) {
        s->ack_h = curl_easy_init();
        s->ack_hdrs = curl_slist_append(NULL, "Content-Type: application/json");
        if (!s->ack_h || !s->ack_hdrs ||
            http_client_setup(s->ack_h, r->token, r->ca_file[0] ? r->ca_file : NULL, &s->ack_hdrs) != 0)
            goto out;
    }
    snprintf(url, sizeof url, "%s/v1/ack", r->primary_url);
    curl_easy_setopt(s->ack_h, CURLOPT_URL, url);
    curl_easy_setopt(s->ack_h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(s->ack_h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(s->ack_h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(s->ack_h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->ack_h, CURLOPT_PROXY, "");
    curl_easy_setopt(s->ack_h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(s->ack_h, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(s->ack_h, CURLOPT_WRITEFUNCTION, discard_body);
    cc = curl_easy_perform(s->ack_h);
    curl_easy_getinfo(s->ack_h, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK || status != 200) {
        LV_DEBUG("replication: acknowledging to %s failed: %s", r->primary_url,
                 cc != CURLE_OK ? (errbuf[0] ? errbuf : curl_easy_strerror(cc)) : "not 200");
        goto out;
    }
    free(s->ack_last);
    s->ack_last = body;
    body = NULL;
out:
    free(body);
    free(st);
    json_decref(tx);
    json_decref(o);
}

/* The applier's handling of the bytes it took: decode, hand frames to rx,
 * apply.  0, or the session ended (abort_session called). */
static int take_bytes(struct rsess *s, const uint8_t *p, size_t n)
{
    struct replica *r = s->r;
    struct stream_frame f;
    char err[1200] = "";
    int rc;

    if (n && stream_dec_push(s->dec, p, n) != 0)
        return (int)abort_session(s, "out of memory") - 1;
    while ((rc = stream_dec_next(s->dec, &f)) == 1) {
        if (!s->hello) {
            if (f.type != ST_HELLO)
                return (int)abort_session(s, "the stream does not begin with HELLO (got %s)",
                                          stream_type_name(f.type)) - 1;
            if (on_hello(s, &f) != 0)
                return -1;
            continue;
        }
        if (f.type == ST_HELLO)
            return (int)abort_session(s, "a second HELLO in the stream") - 1;
        uint64_t min_term = __atomic_load_n(&r->min_term, __ATOMIC_ACQUIRE);
        if (s->term < min_term) /* a new term at the same URL (a VIP, a DNS name): its primary may be another */
            return (int)abort_session(s, "the lease names term %llu now, above the term %llu of the primary %s "
                                      "followed: it was deposed; reconnecting", (unsigned long long)min_term,
                                      (unsigned long long)s->term, r->primary_url) - 1;
        if (f.type == ST_ERROR)
            return (int)abort_session(s, "the primary ended the stream: %.400s", f.text) - 1;
        rc = repl_rx_frame(r->rx, &f, err, sizeof err);
        if (rc)
            return (int)abort_session(s, "%s", err[0] ? err : lv_strerror(rc)) - 1;
    }
    if (rc < 0)
        return (int)abort_session(s, "the stream is damaged: %s", stream_dec_error(s->dec)) - 1;
    rc = repl_rx_flush(r->rx, 0, err, sizeof err);
    /* Memory bound: stay here (the queue fills, then the socket is not
     * read) until the batches kept out by readers fit again -- unless the
     * transfer ended: the next session starts over from the positions. */
    while (rc == 0 && repl_rx_pending(r->rx) > r->max_pending && !worker_stopping(r->self) && !is_aborted(s) &&
           !is_eof(s))
        rc = repl_rx_flush(r->rx, 1, err, sizeof err);
    if (rc)
        return (int)abort_session(s, "%s", err[0] ? err : lv_strerror(rc)) - 1;
    if (s->acks)
        send_ack(s);
    return 0;
}

/* The applier: takes what the receiver queued, all of it at once, until
 * the transfer ended and the queue is empty, or the session is aborted.
 * With nothing queued it still wakes every apply-wait, so a batch kept out
 * by readers is tried again when due. */
static void applier_main(struct worker *w, void *arg)
{
    struct rsess *s = arg;
    uint8_t *mine = NULL;
    size_t mine_cap = 0;

    LV_UNUSED(w);
    for (;;) {
        size_t n;
        pthread_mutex_lock(&s->qmu);
        if (s->qlen == 0 && !s->eof && !s->aborted)
            lv_cond_wait_us(&s->qcv, &s->qmu, (int64_t)s->r->wait_ms * 1000);
        if (s->aborted || (s->eof && s->qlen == 0)) {
            pthread_mutex_unlock(&s->qmu);
            break;
        }
        /* Swap buffers: the receiver goes on filling an empty one. */
        uint8_t *t = s->q;
        size_t tc = s->qcap;
        n = s->qlen;
        s->q = mine;
        s->qcap = mine_cap;
        s->qlen = 0;
        mine = t;
        mine_cap = tc;
        pthread_cond_broadcast(&s->qcv);
        pthread_mutex_unlock(&s->qmu);
        if (worker_stopping(s->r->self)) {
            abort_session(s, "stopping");
            break;
        }
        if (take_bytes(s, mine, n) != 0)
            break;
    }
    free(mine);
    if (s->ack_h)
        curl_easy_cleanup(s->ack_h);
    curl_slist_free_all(s->ack_hdrs);
    free(s->ack_last);
    s->ack_h = NULL;
    s->ack_hdrs = NULL;
    s->ack_last = NULL;
}

/* Grow *buf (*cap bytes) to hold need bytes.  0 or LV_ENOMEM (unchanged). */
static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
    size_t nc = *cap ? *cap : 1u << 16;
    while (nc < need)
        nc *= 2;
    uint8_t *nb = realloc(*buf, nc);
    if (!nb)
        return LV_ENOMEM;
    *buf = nb;
    *cap = nc;
    return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct rsess *s = arg;
    struct replica *r = s->r;
    size_t n = size * nmemb;
    size_t rc = n;

    s->last_rx_mono = lv_mono_us();
    if (worker_stopping(r->self))
        return abort_session(s, "stopping");
    if (!s->checked) {
        curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
        s->checked = 1;
    }
    if (s->status != 200) {
        /* An error answer: keep (the start of) its body for the log. */
        size_t take = s->errlen + n > RP_ERRBODY_MAX ? RP_ERRBODY_MAX - s->errlen : n;
        char *nb = realloc(s->errbody, s->errlen + take + 1);
        if (nb) {
            memcpy(nb + s->errlen, ptr, take);
            s->errlen += take;
            nb[s->errlen] = 0;
            s->errbody = nb;
        }
        return n;
    }
    __atomic_add_fetch(&r->rx_bytes, n, __ATOMIC_RELAXED);
    if (!s->applier && worker_start("lv-repl-apply", applier_main, s, &s->applier) != 0)
        return abort_session(s, "cannot start the applier thread");
    pthread_mutex_lock(&s->qmu);
    /* Memory bound: a full queue waits for the applier. */
    while (s->qlen > 0 && s->qlen + n > RP_QUEUE_MAX && !s->aborted && !worker_stopping(r->self))
        lv_cond_wait_us(&s->qcv, &s->qmu, RP_QUEUE_WAIT_US);
    if (s->aborted || worker_stopping(r->self)) {
        rc = 0;
    } else if (s->qlen + n > s->qcap && reserve(&s->q, &s->qcap, s->qlen + n) != 0) {
        rc = 0;
    } else {
        memcpy(s->q + s->qlen, ptr, n);
        s->qlen += n;
        pthread_cond_broadcast(&s->qcv);
    }
    pthread_mutex_unlock(&s->qmu);
    if (rc == 0 && !is_aborted(s))
        abort_session(s, worker_stopping(r->self) ? "stopping" : "out of memory");
    s->last_rx_mono = lv_mono_us();
    return rc;
}

/* Called by libcurl about once a second and on progress: stop and stall checks. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    struct rsess *s = arg;

    LV_UNUSED(dltotal);
    LV_UNUSED(dlnow);
    LV_UNUSED(ultotal);
    LV_UNUSED(ulnow);
    if (worker_stopping(s->r->self)) {
        abort_session(s, "stopping");
        return 1;
    }
    if (is_aborted(s))
        return 1; /* the applier ended the session */
    if (lv_mono_us() - s->last_rx_mono > RP_STALL_US) {
        abort_session(s, "no byte from the primary for %lld s (it sends a heartbeat every second)",
                      (long long)(RP_STALL_US / 1000000));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ a session */

/* The request body: this node and its databases' positions.  malloc'ed or NULL. */
static char *request_body(struct replica *r, struct rsess *s, const struct db_info *l, size_t n)
{
    json_t *o = json_object(), *arr = json_array();
    char idh[33], ck[17], ch[33];
    char *body;

    for (size_t i = 0; i < n; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "name", json_string(l[i].name));
        json_object_set_new(e, "id", json_string(lv_hex(l[i].id, 16, idh)));
        json_object_set_new(e, "txid", json_integer((json_int_t)l[i].txid));
        snprintf(ck, sizeof ck, "%016" PRIx64, l[i].cksum);
        json_object_set_new(e, "cksum", json_string(ck));
        if (l[i].broken || repl_rx_resync(r->rx, l[i].name))
            json_object_set_new(e, "resync", json_true());
        json_array_append_new(arr, e);
    }
    json_object_set_new(o, "cluster", json_string(s->have_cluster ? lv_hex(s->cluster, 16, ch) : ""));
    json_object_set_new(o, "node", json_string(r->node));
    json_object_set_new(o, "url", json_string(r->url));
    json_object_set_new(o, "dbs", arr);
    body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return body;
}

/* Why the refused request was refused: the JSON error's message, or the body. */
static void refused_reason(const struct rsess *s, char *out, size_t n)
{
    json_error_t je;
    json_t *o = s->errbody ? json_loads(s->errbody, 0, &je) : NULL;
    const char *m = json_string_value(json_object_get(o, "error"));

    snprintf(out, n, "HTTP %ld%s%.400s", s->status, m || s->errbody ? ": " : "",
             m ? m : s->errbody ? s->errbody : "");
    json_decref(o);
}

/* Run one session.  Returns 1 if it made progress: a stream was followed
 * (HELLO accepted) for RP_PROGRESS_US at least. */
static int session(struct replica *r)
{
    struct rsess s;
    struct db_info *l = NULL;
    size_t n = 0;
    char *body = NULL, *url = NULL, errbuf[CURL_ERROR_SIZE] = "", msg[1000];
    struct curl_slist *hdrs = NULL;
    CURLcode cc;
    int rc;

    int64_t t0 = lv_mono_us();

    memset(&s, 0, sizeof s);
    s.r = r;
    pthread_mutex_init(&s.qmu, NULL);
    if (lv_cond_init(&s.qcv) != 0) {
        pthread_mutex_destroy(&s.qmu);
        return 0;
    }
    __atomic_add_fetch(&r->sessions, 1, __ATOMIC_RELAXED);
    rc = cluster_id_load(r->data_dir, s.cluster);
    if (rc != 0 && rc != LV_ENOENT) {
        snprintf(msg, sizeof msg, "cannot read %s/cluster-id (%s); fix or remove it", r->data_dir, lv_strerror(rc));
        goto fail;
    }
    s.have_cluster = rc == 0;
    if (s.have_cluster) {
        pthread_mutex_lock(&r->mu);
        lv_hex(s.cluster, 16, r->cluster_hex);
        pthread_mutex_unlock(&r->mu);
    }
    if (dbreg_list(r->reg, &l, &n) != 0 || repl_rx_session(r->rx, l, n) != 0 || stream_dec_new(0, &s.dec) != 0 ||
        !(body = request_body(r, &s, l, n)) || asprintf(&url, "%s/v1/stream", r->primary_url) < 0) {
        url = NULL;
        snprintf(msg, sizeof msg, "out of memory");
        goto fail;
    }
    pthread_once(&rp_curl_once, rp_curl_init);
    s.h = rp_curl_rc == CURLE_OK ? curl_easy_init() : NULL;
    if (!s.h) {
        snprintf(msg, sizeof msg, "cannot initialise libcurl");
        goto fail;
    }
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Accept: application/x-litevault-stream");
    hdrs = curl_slist_append(hdrs, "Expect:");
    /* The token header, the CA file, http/https only (base/http.h). */
    if (!hdrs || http_client_setup(s.h, r->token, r->ca_file[0] ? r->ca_file : NULL, &hdrs) != 0) {
        snprintf(msg, sizeof msg, "out of memory");
        goto fail;
    }
    curl_easy_setopt(s.h, CURLOPT_URL, url);
    curl_easy_setopt(s.h, CURLOPT_POST, 1L);
    curl_easy_setopt(s.h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(s.h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(s.h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(s.h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s.h, CURLOPT_PROXY, "");
    curl_easy_setopt(s.h, CURLOPT_CONNECTTIMEOUT, RP_CONNECT_TIMEOUT_S);
    curl_easy_setopt(s.h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(s.h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(s.h, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(s.h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(s.h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(s.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(s.h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(s.h, CURLOPT_XFERINFODATA, &s);
    s.last_rx_mono = lv_mono_us();
    cc = curl_easy_perform(s.h);
    /* The applier finishes what was queued (unless the session was
     * aborted) and is joined. */
    pthread_mutex_lock(&s.qmu);
    __atomic_store_n(&s.eof, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&s.qcv);
    pthread_mutex_unlock(&s.qmu);
    worker_stop(s.applier);
    s.applier = NULL;
    if (s.checked == 0)
        curl_easy_getinfo(s.h, CURLINFO_RESPONSE_CODE, &s.status);
    if (worker_stopping(r->self))
        goto out;
    if (s.status && s.status != 200) {
        char why[700];
        refused_reason(&s, why, sizeof why);
        snprintf(msg, sizeof msg, "the primary refused the stream: %s", why);
    } else if (s.aborted) {
        snprintf(msg, sizeof msg, "%s", s.why);
    } else if (cc != CURLE_OK) {
        snprintf(msg, sizeof msg, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
    } else {
        snprintf(msg, sizeof msg, "the primary ended the stream");
    }
    goto fail;
fail:
    /* The same failure again (a primary down for a while) is logged once a
     * minute, not at every attempt. */
    pthread_mutex_lock(&r->mu);
    int again = strcmp(r->last_error, msg) == 0 && lv_mono_us() - r->last_warn_mono < RP_REPEAT_WARN_US;
    if (!again)
        r->last_warn_mono = lv_mono_us();
    pthread_mutex_unlock(&r->mu);
    if (again)
        LV_DEBUG("replication from %s: %s; reconnecting", r->primary_url, msg);
    else
        LV_WARN("replication from %s: %s; reconnecting", r->primary_url, msg);
    set_error(r, msg);
out:
    set_connected(r, 0, NULL);
    if (s.h)
        curl_easy_cleanup(s.h);
    curl_slist_free_all(hdrs);
    if (body)
        explicit_bzero(body, strlen(body));
    free(body);
    free(url);
    free(s.errbody);
    free(s.q);
    pthread_cond_destroy(&s.qcv);
    pthread_mutex_destroy(&s.qmu);
    stream_dec_free(s.dec);
    free(l);
    return s.hello && lv_mono_us() - t0 >= RP_PROGRESS_US;
}

static void replica_main(struct worker *w, void *arg)
{
    struct replica *r = arg;
    int64_t backoff = 0;

    r->self = w;
    LV_INFO("replication: this node is a replica of %s", r->primary_url);
    while (!worker_stopping(w)) {
        if (session(r))
            backoff = 0; /* reset once a stream was followed for a while */
        backoff = repl_backoff_next(backoff);
        if (worker_nap(w, backoff))
            break;
    }
    pthread_mutex_lock(&r->mu);
    r->exited = 1;
    pthread_cond_broadcast(&r->exited_cv);
    pthread_mutex_unlock(&r->mu);
}

int replica_wait_stopped(struct replica *r, int ms)
{
    int64_t end = lv_mono_us() + (int64_t)ms * 1000;
    int done;

    if (!r)
        return 1;
    pthread_mutex_lock(&r->mu);
    while (!r->exited && lv_mono_us() < end)
        lv_cond_wait_us(&r->exited_cv, &r->mu, end - lv_mono_us());
    done = r->exited;
    pthread_mutex_unlock(&r->mu);
    return done;
}

/* ------------------------------------------------------------ status */

int replica_health(struct replica *r, char *reason, size_t n)
{
    struct repl_rx_stat *v = NULL;
    size_t nv = 0;
    int ok;

    pthread_mutex_lock(&r->mu);
    ok = r->connected;
    if (!ok)
        snprintf(reason, n, "not connected to the primary %s%s%s", r->primary_url, r->last_error[0] ? ": " : "",
                 r->last_error);
    pthread_mutex_unlock(&r->mu);
    if (!ok)
        return 0;
    if (repl_rx_stats(r->rx, lv_now_us(), &v, &nv) != 0) {
        snprintf(reason, n, "out of memory");
        return 0;
    }
    for (size_t i = 0; i < nv && ok; i++) {
        if (strcmp(v[i].state, "error") == 0) {
            snprintf(reason, n, "%s: %s", v[i].name, v[i].error);
            ok = 0;
        } else if (v[i].lag_us > r->max_lag_us) {
            snprintf(reason, n, "%s is %lld ms behind the primary (replication.max-lag is %lld ms; %s)", v[i].name,
                     (long long)(v[i].lag_us / 1000), (long long)(r->max_lag_us / 1000), v[i].state);
            ok = 0;
        }
    }
    free(v);
    return ok;
}

char *replica_status_json(struct replica *r)
{
    struct repl_rx_stat *v = NULL;
    size_t nv = 0;
    json_t *o = json_object(), *dbs = json_object();
    char t[40], *s;

    if (repl_rx_stats(r->rx, lv_now_us(), &v, &nv) != 0) {
        json_decref(o);
        json_decref(dbs);
        return NULL;
    }
    for (size_t i = 0; i < nv; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "txid", json_integer((json_int_t)v[i].txid));
        json_object_set_new(e, "lag_txids", json_integer((json_int_t)(v[i].recv_txid - v[i].txid)));
        json_object_set_new(e, "lag_ms", json_integer(v[i].lag_us / 1000));
        json_object_set_new(e, "state", json_string(v[i].state));
        if (v[i].error[0])
            json_object_set_new(e, "error", json_string(v[i].error));
        json_object_set_new(e, "records", json_integer((json_int_t)v[i].records));
        json_object_set_new(e, "busy", json_integer((json_int_t)v[i].busy));
        json_object_set_new(e, "lock_wait_ms", json_integer(v[i].lock_wait_us / 1000));
        json_object_set_new(dbs, v[i].name, e);
    }
    free(v);
    pthread_mutex_lock(&r->mu);
    json_object_set_new(o, "primary", json_string(r->primary_url));
    json_object_set_new(o, "connected", json_boolean(r->connected));
    json_object_set_new(o, "cluster", json_string(r->cluster_hex));
    json_object_set_new(o, "primary_node", json_string(r->primary_node));
    json_object_set_new(o, "since", r->since_us ? json_string(lv_fmt_time(r->since_us, t, sizeof t)) : json_null());
    json_object_set_new(o, "last_error", r->last_error[0] ? json_string(r->last_error) : json_null());
    pthread_mutex_unlock(&r->mu);
    json_object_set_new(o, "databases", dbs);
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static const struct metrics_family rm_families[] = {
    {"litevault_replication_connected", "gauge", "1 while this replica follows the primary's stream."},
    {"litevault_replication_received_bytes_total", "counter", "Replication stream bytes received."},
    {"litevault_replication_sessions_total", "counter", "Connections to the primary attempted."},
    {"litevault_replication_applied_records_total", "counter", "Records applied from the primary."},
    {"litevault_replication_snapshots_applied_total", "counter", "Snapshots from the primary installed."},
    {"litevault_replication_apply_busy_total", "counter", "Applies deferred because readers held SQLite's locks."},
    {"litevault_replication_lag_seconds", "gauge", "How far a database is behind the primary (see /status lag_ms)."},
    {"litevault_replication_lag_txids", "gauge", "Transactions received from the primary and not applied yet."},
    {"litevault_replication_pending_bytes", "gauge", "Record bytes received and not applied yet."},
};

int replica_metrics(struct replica *r, char **buf, size_t *len, size_t *cap)
{
    struct repl_rx_totals t;
    struct repl_rx_stat *v = NULL;
    size_t nv = 0;
    uint64_t vals[6];
    int rc = 0, connected;

    if (!r)
        return 0;
    pthread_mutex_lock(&r->mu);
    connected = r->connected;
    pthread_mutex_unlock(&r->mu);
    repl_rx_totals(r->rx, &t);
    vals[0] = (uint64_t)connected;
    vals[1] = __atomic_load_n(&r->rx_bytes, __ATOMIC_RELAXED);
    vals[2] = __atomic_load_n(&r->sessions, __ATOMIC_RELAXED);
    vals[3] = t.records;
    vals[4] = t.snapshots;
    vals[5] = t.busy;
    for (int k = 0; k < 6 && rc == 0; k++) {
        rc = metrics_family(buf, len, cap, &rm_families[k]);
        if (rc == 0)
            rc = metrics_appendf(buf, len, cap, "%s %" PRIu64 "\n", rm_families[k].name, vals[k]);
    }
    if (rc == 0)
        rc = repl_rx_stats(r->rx, lv_now_us(), &v, &nv);
    for (int k = 6; k < 8 && rc == 0 && nv > 0; k++) {
        rc = metrics_family(buf, len, cap, &rm_families[k]);
        for (size_t i = 0; i < nv && rc == 0; i++) {
            char db[2100];
            metrics_label_escape(v[i].name, db, sizeof db);
            if (k == 6)
                rc = metrics_appendf(buf, len, cap, "litevault_replication_lag_seconds{db=\"%s\"} %.6f\n", db,
                                     (double)v[i].lag_us / 1e6);
            else
                rc = metrics_appendf(buf, len, cap, "litevault_replication_lag_txids{db=\"%s\"} %" PRIu64 "\n", db,
                                     v[i].recv_txid - v[i].txid);
        }
    }
    free(v);
    if (rc == 0)
        rc = metrics_family(buf, len, cap, &rm_families[8]);
    if (rc == 0)
        rc = metrics_appendf(buf, len, cap, "litevault_replication_pending_bytes %zu\n", repl_rx_pending(r->rx));
    return rc;
}

const char *replica_primary_url(const struct replica *r)
{
    return r->primary_url;
}

/* ------------------------------------------------------------ life */

int replica_start(const struct replica_opts *o, struct replica **out)
{
    struct replica *r = calloc(1, sizeof *r);
    struct repl_sink sink;
    int rc;

    *out = NULL;
    if (!r)
        return LV_ENOMEM;
    r->reg = o->reg;
    snprintf(r->data_dir, sizeof r->data_dir, "%s", o->data_dir);
    snprintf(r->primary_url, sizeof r->primary_url, "%s", o->primary_url);
    /* "http://host:1/" and "http://host:1" are the same base. */
    size_t ul = strlen(r->primary_url);
    while (ul > 0 && r->primary_url[ul - 1] == '/')
        r->primary_url[--ul] = 0;
    snprintf(r->ca_file, sizeof r->ca_file, "%s", o->ca_file ? o->ca_file : "");
    snprintf(r->node, sizeof r->node, "%s", o->node_id ? o->node_id : "");
    snprintf(r->url, sizeof r->url, "%s", o->url ? o->url : "");
    r->min_term = o->min_term;
    r->wait_ms = (int)((o->apply_wait_us > 0 ? o->apply_wait_us : RP_DEFAULT_WAIT_US) / 1000);
    if (r->wait_ms < 1)
        r->wait_ms = 1;
    r->max_lag_us = o->max_lag_us > 0 ? o->max_lag_us : RP_DEFAULT_MAX_LAG_US;
    r->max_pending = o->max_pending ? o->max_pending : RP_MAX_PENDING;
    pthread_mutex_init(&r->mu, NULL);
    lv_cond_init(&r->exited_cv);
    if (o->token && !(r->token = strdup(o->token))) {
        replica_stop(r);
        return LV_ENOMEM;
    }
    if (o->sink)
        sink = *o->sink;
    else
        repl_sink_dbreg(o->reg, &sink);
    rc = repl_rx_new(&sink, &(struct repl_rx_opts){r->wait_ms, 0}, &r->rx);
    if (rc == 0)
        rc = worker_start("lv-replica", replica_main, r, &r->w);
    if (rc) {
        replica_stop(r);
        return rc;
    }
    *out = r;
    return 0;
}

void replica_raise_term(struct replica *r, uint64_t term)
{
    uint64_t cur = __atomic_load_n(&r->min_term, __ATOMIC_ACQUIRE);
    while (term > cur && !__atomic_compare_exchange_n(&r->min_term, &cur, term, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        ;
}

void replica_ask_stop(struct replica *r)
{
    if (r)
        worker_ask_stop(r->w);
}

void replica_stop(struct replica *r)
{
    if (!r)
        return;
    worker_stop(r->w);
    repl_rx_free(r->rx);
    if (r->token) {
        explicit_bzero(r->token, strlen(r->token));
        free(r->token);
    }
    pthread_cond_destroy(&r->exited_cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
