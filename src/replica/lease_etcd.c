/*
 * lease_etcd.c -- the etcd lease (lease.type: etcd): candidates race for
 * one key with a TTL lease through etcd's v3 JSON gateway (libcurl +
 * jansson); the holder is the primary, everyone follows the URL its value
 * names, and a holder that cannot renew fences itself before the TTL ends.
 *
 * KEYS.  Every node keeps one etcd lease of lease.ttl alive, from start to
 * stop, and two keys hang on it (so etcd deletes both when the node dies,
 * and a clean stop revokes it: both go at once):
 *   lease.key (default /litevault/<cluster-id>/primary): created by the
 *       winner of the race; its value, like the node key's, says who holds
 *       it.  The term of a primary is this key's create_revision: etcd's
 *       store revision rises on every write, so a later term always has a
 *       larger number.
 *   <lease.key's directory>/nodes/<node ID>: every node's own key, put
 *       whenever its value changes:
 *     {"url": advertise-url, "node": node ID, "proxy": proxy URL or absent,
 *      "candidate": may still be elected, "txids": {"NAME": TXID, ...}}
 *   (base64 on the wire, as every etcd key and value).
 *
 * ONE ROUND (et_round, every TTL/4, or at once when the watch sees the
 * primary key change):
 *   1. keep the lease (et_keep): grant one if there is none, else
 *      keepalive; a keepalive answered without TTL means it expired: the
 *      role is lost (et_lose) and a new lease is granted next round;
 *   2. put the node key if its value changed (et_put_node);
 *   3. read the primary key (linearizable range): a keepalive alone does
 *      not prove the key exists (etcd before 3.4.31/3.4.38);
 *   4. ours: renew the deadline (et_hold); another's: follow it (et_lose
 *      if we held it); absent: if the handoff key (<dir>/handoff, put by a
 *      primary handing over: lease_handoff, on a lease of one TTL that is
 *      never renewed) names this node, it races at once; if it names
 *      another, it does not race while the key lives; else a candidate
 *      that was never deposed and that
 *      no other live candidate is strictly ahead of (et_most_advanced: at
 *      least our TXID on every database and more on one) races for it
 *      with a transaction that creates it only if absent (et_acquire) --
 *      but only once the key has been absent for ET_SETTLE_US (at most
 *      TTL/4), so that every node's node key carries the positions it has
 *      now, not those of up to TTL/4 ago (a stale key could make a
 *      lagging candidate look as advanced as one that is ahead).
 * The rule in 4 is what keeps a lagging replica from winning while a more
 * advanced one lives: the most advanced candidates race, one wins.
 *
 * REQUESTS (etcd 3.4; every int64 comes back as a string; an absent field
 * is zero): /v3/lease/grant, /v3/lease/keepalive (one per POST, as the
 * gateway answers only once the request body ends), /v3/kv/put,
 * /v3/kv/range, /v3/kv/txn (compare CREATE == 0, success put with the
 * lease, failure range: "succeeded" absent = someone holds it),
 * /v3/watch (one long response, one JSON object per line; it only wakes
 * the loop early), /v3/lease/revoke at a clean stop.  Every request
 * carries "Grpc-Metadata-hasleader: true", so that an etcd member without
 * quorum answers 503 at once instead of after 7 s; each has a timeout of
 * TTL/4 (capped at the deadline while holding); an unreachable endpoint
 * moves to the next one.
 *
 * AUTHENTICATION (lease.username, et_token).  Before its first request a
 * node POSTs /v3/auth/authenticate {"name", "password"} and sends the
 * token etcd answers as "Authorization: <token>" (raw, no "Bearer") on
 * every request, the watch included.  etcd 3.4.23 refuses a token it no
 * longer knows (its TTL, --auth-token-ttl, passed unused; the user's
 * password changed; a restart keeps them) with HTTP 401 "etcdserver:
 * invalid auth token" (the watch: 200, then a line "canceled" with a
 * cancel_reason "...Unauthenticated...", and the stream stays open), and a request without a token, once auth is
 * on, with 400 "etcdserver: user name is empty".  Either way the node
 * authenticates again and retries the request once (et_call), so an
 * expired token costs one round trip, not a round: the fencing rule is
 * unchanged.  Wrong credentials (400 "authentication failed, invalid user
 * ID or password") are a problem like an unreachable endpoint: noted (user
 * and endpoint, never the password), retried every round.  An etcd with
 * authentication disabled answers 412: the node then sends no token (a
 * token would get 401) until a request says one is needed.  The password
 * enters only the authenticate request's body (wiped after use); no
 * message, /status or /metrics line holds it.
 *
 * FENCING (the rule, on CLOCK_MONOTONIC).  Let T0 be the time just before
 * the last keepalive (or grant) that etcd answered with TTL > 0.  etcd never
 * expires the lease before T0 + TTL by its own clock, and no other candidate
 * acts before the key's DELETE.  The holder stops writes at
 *     D = T0 + TTL * (1 - 0.001) - M,   M = TTL / 4 (at least 200 ms)
 * (0.1% for clock-rate drift; M for the writes already inside the daemon
 * to finish, see dbreg_set_fenced).  A watchdog thread enforces D whatever
 * the loop is doing, and the daemon hands D to every write (the deadline
 * callback); one lost keepalive does not fence, two do.
 *
 * STATES of this node (e->state, under e->mu), and what moves them:
 *   FOLLOW   not the holder: holder_* name the primary if one is known.
 *            -> PRIMARY  our acquire txn succeeded, or a read finds the
 *                        key with our lease (et_hold)
 *   PRIMARY  the holder, inside D: lease_is_primary answers 1.
 *            -> FENCED   the watchdog found now >= D (et_watchdog)
 *            -> FOLLOW   a read found the key gone or another's, or the
 *                        lease expired (et_lose)
 *   FENCED   still the holder as far as etcd knows, but D passed: writes
 *            are refused while the loop keeps renewing.
 *            -> PRIMARY  a keepalive answered again and the key is still
 *                        ours (et_hold): etcd never let the lease lapse,
 *                        so no other primary can have existed
 *            -> FOLLOW   as from PRIMARY
 * Every transition that changes lease_is_primary or the primary's URL
 * calls the change callback, from the thread that made it.
 *
 * Invariants:
 *   E1. state PRIMARY implies lease_id != 0, term != 0 and now < deadline
 *       at the moment it was set (the watchdog keeps it so).
 *   E2. deadline only moves forward within a term.
 *   E3. The lease's ID, term and deadline change only under mu.
 *   E4. A node that lost a term (et_lose from PRIMARY or FENCED) never
 *       acquires again in this process: another primary may have taken
 *       writes since, which this node does not hold.  Its daemon stops
 *       and restarts as a replica of whoever holds the key.  (A FENCED
 *       holder whose keepalive succeeds again never lost the term: etcd
 *       kept its lease, so nobody else can have held the key.)
 */
#include "replica/lease_impl.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/http.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/worker.h"
#include "replica/cluster.h"
#include "replica/etcd_value.h"

#define ET_RESP_MAX (1u << 20)   /* bytes of one etcd answer we accept */
#define ET_DRIFT 0.001           /* clock-rate drift bound (rho) */
#define ET_MIN_MARGIN_US 200000  /* M at least */
#define ET_WATCH_RETRY_US 500000 /* pause between watch attempts */
#define ET_SETTLE_US 300000      /* after the primary key goes, before comparing positions (at most TTL/4) */

enum et_state { ET_FOLLOW, ET_PRIMARY, ET_FENCED };

/* The etcd part of a lease (l->impl). */
struct etcd {
    struct lease *l;          /* the lease (for the change callback) */
    char **ep;                /* endpoints, "http[s]://host:port" (owned, immutable) */
    size_t nep;               /* entries in ep */
    char *key_b64;            /* the key, base64 (owned, immutable) */
    char *node_b64;           /* this node's key <dir of key>/nodes/<node ID>, base64 (owned, immutable) */
    char *nodes_b64;          /* the node keys' prefix, base64 (owned, immutable) */
    char *nodes_end_b64;      /* the end of their range (prefix + 1), base64 (owned, immutable) */
    char *handoff_b64;        /* <dir of key>/handoff, base64 (owned, immutable) */
    char *key;                /* the key (owned, immutable) */
    char *node_id;            /* this node's ID (owned, immutable) */
    char *proxy_url;          /* this node's proxy URL, or NULL (owned, immutable) */
    char *ca, *cert, *ckey;   /* TLS files, or NULL (owned, immutable) */
    char *user;               /* lease.username, or NULL: no authentication (owned, immutable) */
    char *password;           /* its password (owned, immutable; wiped at close; never in a message) */
    int64_t ttl_req_s;        /* lease.ttl asked for (immutable) */
    char *(*positions)(void *arg); /* the databases' TXIDs as a JSON object (malloc'ed), or NULL */
    void *positions_arg;      /* its argument, and deadline_fn's */
    void (*deadline_fn)(void *arg, int64_t mono_us); /* told every new deadline, or NULL (immutable) */
    pthread_mutex_t mu;       /* guards everything below */
    size_t cur;               /* endpoint in use */
    char *token;              /* etcd's auth token for user (owned): NULL none yet (or refused: authenticate
                                 again), "" etcd has authentication disabled (send none) */
    enum et_state state;      /* see the top */
    int64_t lease_id;         /* our etcd lease while we hold (or try to hold) the key, else 0 */
    int64_t ttl_us;           /* TTL etcd granted, microseconds */
    int64_t deadline_us;      /* D, CLOCK_MONOTONIC (E2) */
    uint64_t term;            /* the key's create_revision while we hold it, else 0 */
    char holder_url[1024];    /* the primary's URL ("" unknown) */
    char holder_proxy[1024];  /* the primary's proxy URL ("" unknown) */
    char holder_node[64];     /* the primary's node ID ("" unknown) */
    uint64_t holder_term;     /* the primary's term, its key's create_revision (0 unknown) */
    char last_err[256];       /* the last etcd problem, for /status ("" none) */
    int err_logged;           /* last_err was logged (a repeat is not) */
    int deposed;              /* this node lost a term: it never races for the key again in this process
                                 (the daemon restarts it as a replica: E4) */
    char *node_put;           /* the node key's value last put with lease_id (malloc'ed, any length), NULL: none */
    char defer_why[512];      /* why we last did not race for the key ("" we did) */
    int64_t absent_since;     /* loop thread only: when the primary key was first seen absent (0: present) */
    struct worker *loop;      /* et_loop */
    struct worker *watch;     /* et_watch */
    struct worker *dog;       /* et_watchdog */
};

/* ---- one request ---- */

struct et_buf {
    char *p;    /* bytes received (malloc'ed) */
    size_t n;   /* bytes in p */
    int over;   /* more than ET_RESP_MAX arrived */
};

static size_t et_collect(char *d, size_t sz, size_t nm, void *arg)
{
    struct et_buf *b = arg;
    size_t add = sz * nm;
    char *np;

    if (b->n + add > ET_RESP_MAX) {
        b->over = 1;
        return 0;
    }
    np = realloc(b->p, b->n + add + 1);
    if (!np)
        return 0;
    memcpy(np + b->n, d, add);
    b->p = np;
    b->n += add;
    b->p[b->n] = 0;
    return add;
}

/* Note problem why (also in the log, once per new text). */
static void et_problem(struct etcd *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void et_problem(struct etcd *e, const char *fmt, ...)
{
    char msg[sizeof e->last_err];
    va_list ap;
    int log;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&e->mu);
    log = strcmp(msg, e->last_err) != 0 || !e->err_logged;
    snprintf(e->last_err, sizeof e->last_err, "%s", msg);
    e->err_logged = 1;
    pthread_mutex_unlock(&e->mu);
    if (log)
        LV_WARN("lease: %s", msg);
}

/* Set up handle c for a request to path on the current endpoint, with the
 * auth token tok (NULL or "": none); hdrs is the caller's to free. */
static int et_setup(struct etcd *e, CURL *c, const char *path, const char *tok, struct curl_slist **hdrs, char *url,
                    size_t urln)
{
    char *auth = NULL;
    size_t cur;

    pthread_mutex_lock(&e->mu);
    cur = e->cur;
    pthread_mutex_unlock(&e->mu);
    snprintf(url, urln, "%s%s", e->ep[cur], path);
    curl_easy_reset(c);
    if (http_client_setup(c, NULL, e->ca, hdrs) != 0)
        return LV_ENOMEM;
    *hdrs = curl_slist_append(*hdrs, "Content-Type: application/json");
    *hdrs = *hdrs ? curl_slist_append(*hdrs, "Grpc-Metadata-hasleader: true") : NULL;
    if (*hdrs && tok && *tok) {
        if (asprintf(&auth, "Authorization: %s", tok) < 0)
            auth = NULL;
        *hdrs = auth ? curl_slist_append(*hdrs, auth) : NULL;
        free(auth);
    }
    if (!*hdrs)
        return LV_ENOMEM;
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    if (e->cert) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, e->cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, e->ckey);
    }
    return 0;
}

/* The next endpoint after a failure of endpoint `was`. */
static void et_rotate(struct etcd *e, size_t was)
{
    pthread_mutex_lock(&e->mu);
    if (e->cur == was)
        e->cur = (e->cur + 1) % e->nep;
    pthread_mutex_unlock(&e->mu);
}

/* The endpoint in use now (for messages). */
static const char *et_endpoint(struct etcd *e)
{
    size_t cur;

    pthread_mutex_lock(&e->mu);
    cur = e->cur;
    pthread_mutex_unlock(&e->mu);
    return e->ep[cur];
}

/* The text of etcd's error answer ans ("message"), or "(no message)". */
static const char *et_message(json_t *ans)
{
    json_t *m = json_object_get(ans, "message");

    return json_is_string(m) ? json_string_value(m) : "(no message)";
}

/* POST req (JSON text) to path with the auth token tok (NULL or "": none)
 * and parse the JSON answer into *out (caller decrefs).  0; LV_ENET
 * (unreachable, timed out, not 200: noted with et_problem); LV_EPERM
 * (only when status is not NULL: HTTP 400, 401, 403 or 412, the answers
 * authentication may explain, not noted: *status holds the HTTP status and
 * *out etcd's answer, or NULL; the caller decides); LV_ECORRUPT (200 but
 * not a JSON object: noted); LV_ENOMEM.  what names the call in messages. */
static int et_post(struct etcd *e, CURL *c, const char *path, const char *req, const char *tok, int64_t timeout_us,
                   const char *what, json_t **out, long *status)
{
    struct curl_slist *hdrs = NULL;
    struct et_buf b = {0};
    char url[1200], errbuf[CURL_ERROR_SIZE] = "";
    json_error_t jerr;
    long st = 0;
    size_t cur;
    CURLcode cc;
    int rc = LV_ENOMEM;

    *out = NULL;
    if (status)
        *status = 0;
    pthread_mutex_lock(&e->mu);
    cur = e->cur;
    pthread_mutex_unlock(&e->mu);
    if (et_setup(e, c, path, tok, &hdrs, url, sizeof url) != 0)
        goto out_free;
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(req));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_us < 50000 ? 50 : timeout_us / 1000));
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, et_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    rc = LV_ENET;
    if (cc != CURLE_OK) {
        et_problem(e, "etcd %s at %s failed: %s; trying %s next", what, e->ep[cur],
                   b.over ? "the answer is too large" : errbuf[0] ? errbuf : curl_easy_strerror(cc),
                   e->nep > 1 ? "the next endpoint" : "again");
        et_rotate(e, cur);
        goto out_free;
    }
    *out = b.p ? json_loadb(b.p, b.n, 0, &jerr) : NULL;
    if (status && (st == 400 || st == 401 || st == 403 || st == 412)) {
        *status = st;
        if (!json_is_object(*out)) {
            json_decref(*out);
            *out = NULL;
        }
        rc = LV_EPERM;
        goto out_free;
    }
    if (st != 200) {
        json_t *m = *out ? json_object_get(*out, "message") : NULL;
        et_problem(e, "etcd %s at %s answered HTTP %ld: %.120s", what, e->ep[cur], st,
                   json_is_string(m) ? json_string_value(m) : b.p ? b.p : "(no body)");
        json_decref(*out);
        *out = NULL;
        if (st >= 500)
            et_rotate(e, cur);
        goto out_free;
    }
    if (!json_is_object(*out)) {
        et_problem(e, "etcd %s at %s answered 200 with something that is not a JSON object (%.60s); is %s an "
                      "etcd v3 endpoint?", what, e->ep[cur], b.p ? b.p : "", e->ep[cur]);
        json_decref(*out);
        *out = NULL;
        rc = LV_ECORRUPT;
        et_rotate(e, cur);
        goto out_free;
    }
    rc = 0;
out_free:
    if (status)
        *status = *status ? *status : st;
    curl_slist_free_all(hdrs);
    free(b.p);
    return rc;
}

/* A copy of the auth token (malloc'ed), or NULL: none yet (or out of memory). */
static char *et_token_now(struct etcd *e)
{
    char *tok;

    pthread_mutex_lock(&e->mu);
    tok = e->token ? strdup(e->token) : NULL;
    pthread_mutex_unlock(&e->mu);
    return tok;
}

/* The auth token to send (*tok, malloc'ed; "" for none: etcd has
 * authentication disabled), authenticating as e->user when there is none.
 * 0; LV_EPERM (etcd refused the user or its password: noted, naming both
 * the user and the endpoint, never the password); LV_ENET, LV_ECORRUPT
 * (noted); LV_ENOMEM. */
static int et_token(struct etcd *e, CURL *c, int64_t timeout_us, char **tok)
{
    json_t *req = NULL, *ans = NULL, *t;
    char *body = NULL;
    const char *ep;
    long status = 0;
    int rc = LV_ENOMEM;

    if ((*tok = et_token_now(e)) != NULL)
        return 0;
    req = json_pack("{s:s,s:s}", "name", e->user, "password", e->password);
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    if (!body)
        goto out;
    ep = et_endpoint(e);
    rc = et_post(e, c, "/v3/auth/authenticate", body, NULL, timeout_us, "authentication", &ans, &status);
    if (rc == LV_EPERM && status == 412) { /* "authentication is not enabled" */
        LV_WARN("lease: etcd at %s has authentication disabled (%s); this node sends its requests without a token "
                "until etcd asks for one (then it authenticates as user %s)", ep, et_message(ans), e->user);
        *tok = strdup("");
        rc = *tok ? 0 : LV_ENOMEM;
    } else if (rc == LV_EPERM) {
        et_problem(e, "etcd at %s refused user %s (HTTP %ld: %.80s); check lease.username and lease.password or "
                      "lease.password-file against etcd's users (etcdctl user get %s)", ep, e->user, status,
                   et_message(ans), e->user);
    } else if (rc == 0) {
        t = json_object_get(ans, "token");
        if (!json_is_string(t) || !*json_string_value(t)) {
            et_problem(e, "etcd at %s answered the authentication of user %s without a token", ep, e->user);
            rc = LV_ECORRUPT;
            goto out;
        }
        *tok = strdup(json_string_value(t));
        rc = *tok ? 0 : LV_ENOMEM;
        if (*tok)
            LV_INFO("lease: authenticated to etcd at %s as user %s", ep, e->user);
    }
    if (rc == 0) {
        char *keep = strdup(*tok);
        pthread_mutex_lock(&e->mu);
        free(e->token);
        e->token = keep; /* NULL (out of memory): authenticate again next time */
        pthread_mutex_unlock(&e->mu);
    }
out:
    if (body)
        explicit_bzero(body, strlen(body));
    free(body);
    json_decref(ans);
    json_decref(req);
    return rc;
}

/* etcd refused token tok (see the top): forget it, unless another thread
 * already replaced it, so that the next request authenticates again. */
static void et_forget_token(struct etcd *e, const char *tok)
{
    pthread_mutex_lock(&e->mu);
    if (e->token && strcmp(e->token, tok) == 0) {
        free(e->token);
        e->token = NULL;
    }
    pthread_mutex_unlock(&e->mu);
}

/* Does the answer (HTTP status, etcd's answer ans) say that etcd wants
 * another token: ours is unknown to it (401), or we sent none and it
 * needs one (400 "user name is empty")? */
static int et_refused(long status, json_t *ans)
{
    return status == 401 || (status == 400 && strstr(et_message(ans), "user name is empty") != NULL);
}

/* POST body to path and parse the JSON answer into *out (caller decrefs).
 * With lease.username, the request carries the auth token; a refused token
 * is replaced (et_token) and the request sent once more.  0; LV_ENET
 * (unreachable, timed out, not 200: noted with et_problem); LV_EPERM
 * (etcd refused the credentials: noted); LV_ECORRUPT (200 but not a JSON
 * object: noted); LV_ENOMEM.  what names the call in messages. */
static int et_call(struct etcd *e, CURL *c, const char *path, json_t *body, int64_t timeout_us, const char *what,
                   json_t **out)
{
    char *req = json_dumps(body, JSON_COMPACT), *tok = NULL;
    long status = 0;
    int rc = LV_ENOMEM;

    *out = NULL;
    if (!req)
        goto out;
    if (!e->user) {
        rc = et_post(e, c, path, req, NULL, timeout_us, what, out, NULL);
        goto out;
    }
    for (int again = 0;; again = 1) {
        if ((rc = et_token(e, c, timeout_us, &tok)) != 0)
            break;
        rc = et_post(e, c, path, req, tok, timeout_us, what, out, &status);
        if (rc != LV_EPERM)
            break;
        if (!again && et_refused(status, *out)) {
            LV_INFO("lease: etcd at %s asks for a new auth token (%s): authenticating again as user "
                    "%s", et_endpoint(e), et_message(*out), e->user);
            et_forget_token(e, tok);
            json_decref(*out);
            *out = NULL;
            free(tok);
            tok = NULL;
            continue;
        }
        if (status == 403)
            et_problem(e, "etcd %s at %s answered HTTP 403: %.80s; give etcd user %s a role with readwrite on "
                          "litevault's keys (docs/DESIGN.md, \"The etcd lease and fencing\")", what, et_endpoint(e),
                       et_message(*out), e->user);
        else
            et_problem(e, "etcd %s at %s answered HTTP %ld: %.120s%s", what, et_endpoint(e), status,
                       et_message(*out), et_refused(status, *out) ? " (right after authenticating again)" : "");
        json_decref(*out);
        *out = NULL;
        rc = LV_ENET;
        break;
    }
out:
    free(tok);
    free(req);
    return rc;
}

/* An int64 field that etcd sends as a string (or a number); 0 if absent or malformed. */
static int64_t et_int(json_t *o, const char *name)
{
    json_t *v = o ? json_object_get(o, name) : NULL;

    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_string(v)) {
        char *end;
        long long x = strtoll(json_string_value(v), &end, 10);
        return *end ? 0 : (int64_t)x;
    }
    return 0;
}

/* ---- state changes ---- */

static void et_notify(struct etcd *e)
{
    lease_notify(e->l);
}

/* Tell the daemon the deadline d (0: none), if it asked. */
static void et_tell_deadline(struct etcd *e, int64_t d)
{
    if (e->deadline_fn)
        e->deadline_fn(e->positions_arg, d);
}

/* Become a follower of nobody known (the key is gone, another holds it, or our lease died). */
static void et_lose(struct etcd *e, const char *why)
{
    int was;

    pthread_mutex_lock(&e->mu);
    was = e->state;
    e->state = ET_FOLLOW;
    e->term = 0;
    if (was != ET_FOLLOW)
        e->deposed = 1; /* E4 */
    pthread_mutex_unlock(&e->mu);
    if (was != ET_FOLLOW) {
        et_tell_deadline(e, 1); /* already past: writes stop now, before the daemon hears of it */
        LV_WARN("lease: this node is no longer the primary: %s", why);
        et_notify(e);
    }
}

/* Record the holder described by kv (a range answer's key-value), or none (kv NULL). */
static void et_set_holder(struct etcd *e, json_t *kv)
{
    char url[1024] = "", proxy[1024] = "", node[64] = "";
    uint64_t term = 0;
    int changed;

    if (kv) {
        json_t *val = json_object_get(kv, "value");
        struct etcdv_member m = {0};
        if (!json_is_string(val) || etcdv_member_parse(json_string_value(val), &m) != 0)
            et_problem(e, "the lease key %s holds a value that is not litevault's ({\"url\":...}); another program "
                          "uses this key? set lease.key to a key of litevault's own", e->key);
        else {
            snprintf(url, sizeof url, "%s", m.url);
            snprintf(proxy, sizeof proxy, "%s", m.proxy);
            snprintf(node, sizeof node, "%s", m.node);
            term = (uint64_t)et_int(kv, "create_revision");
        }
        etcdv_member_clear(&m);
    }
    pthread_mutex_lock(&e->mu);
    changed = strcmp(url, e->holder_url) != 0 || term != e->holder_term;
    e->holder_term = term;
    snprintf(e->holder_url, sizeof e->holder_url, "%s", url);
    snprintf(e->holder_proxy, sizeof e->holder_proxy, "%s", proxy);
    snprintf(e->holder_node, sizeof e->holder_node, "%s", node);
    pthread_mutex_unlock(&e->mu);
    if (changed) {
        if (url[0])
            LV_INFO("lease: the primary is %s (node %s)", url, node[0] ? node : "?");
        else
            LV_INFO("lease: no primary holds %s now", e->key);
        et_notify(e);
    }
}

/* Read the key (linearizable).  0 with *kv (a new reference, or NULL when
 * the key is absent); else an et_call error. */
static int et_read(struct etcd *e, CURL *c, int64_t timeout_us, json_t **kv)
{
    json_t *req = json_pack("{s:s}", "key", e->key_b64), *ans = NULL;
    int rc = req ? et_call(e, c, "/v3/kv/range", req, timeout_us, "range", &ans) : LV_ENOMEM;

    *kv = NULL;
    if (rc == 0) {
        json_t *kvs = json_object_get(ans, "kvs");
        if (json_is_array(kvs) && json_array_size(kvs) > 0)
            *kv = json_incref(json_array_get(kvs, 0));
    }
    json_decref(ans);
    json_decref(req);
    return rc;
}

/* Our node key's value (JSON, malloc'ed), or NULL: URL, node ID, proxy,
 * whether we may still be elected, and the databases' positions. */
static char *et_value(struct etcd *e)
{
    json_t *o = json_pack("{s:s,s:s}", "url", lease_advertise_url(e->l), "node", e->node_id);
    char *pos = e->positions ? e->positions(e->positions_arg) : NULL, *s;
    int deposed;

    pthread_mutex_lock(&e->mu);
    deposed = e->deposed;
    pthread_mutex_unlock(&e->mu);
    if (o && e->proxy_url)
        json_object_set_new(o, "proxy", json_string(e->proxy_url));
    if (o)
        json_object_set_new(o, "candidate", json_boolean(lease_candidate(e->l) && !deposed));
    json_t *p = pos ? json_loads(pos, 0, NULL) : NULL;
    if (o && json_is_object(json_object_get(p, "txids")))
        json_object_set(o, "txids", json_object_get(p, "txids"));
    if (o && json_is_object(json_object_get(p, "terms")))
        json_object_set(o, "terms", json_object_get(p, "terms"));
    json_decref(p);
    s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    free(pos);
    json_decref(o);
    return s;
}

/* Keep our etcd lease alive, granting one when we have none.  0 with *t0
 * (monotonic time just before the request that proved it alive) and *ttl
 * (seconds it has left); else an error (unreachable: nothing changes; the
 * lease gone: it is dropped, and the role with it). */
static int et_keep(struct etcd *e, CURL *c, int64_t step_us, int64_t *t0, int64_t *ttl)
{
    json_t *req = NULL, *ans = NULL;
    int64_t id, deadline;
    int rc = LV_ENOMEM;

    pthread_mutex_lock(&e->mu);
    id = e->lease_id;
    deadline = e->state == ET_FOLLOW ? 0 : e->deadline_us;
    pthread_mutex_unlock(&e->mu);
    *t0 = lv_mono_us();
    if (deadline > *t0 && deadline - *t0 < step_us)
        step_us = deadline - *t0 > 50000 ? deadline - *t0 : 50000; /* a late answer is no use */
    req = id ? json_pack("{s:I}", "ID", (json_int_t)id) : json_pack("{s:I}", "TTL", (json_int_t)e->ttl_req_s);
    if (!req)
        goto out;
    if (!id) {
        if ((rc = et_call(e, c, "/v3/lease/grant", req, step_us, "lease grant", &ans)) != 0)
            goto out;
        id = et_int(ans, "ID");
        *ttl = et_int(ans, "TTL");
        if (id == 0 || *ttl <= 0) {
            et_problem(e, "etcd's lease grant answer has no ID or TTL");
            rc = LV_ECORRUPT;
            goto out;
        }
        pthread_mutex_lock(&e->mu);
        e->lease_id = id;
        e->ttl_us = *ttl * 1000000;
        free(e->node_put); /* the node key must be put again, with this lease */
        e->node_put = NULL;
        pthread_mutex_unlock(&e->mu);
        goto out;
    }
    if ((rc = et_call(e, c, "/v3/lease/keepalive", req, step_us, "keepalive", &ans)) != 0)
        goto out;
    *ttl = et_int(json_object_get(ans, "result"), "TTL");
    if (*ttl <= 0) {
        et_lose(e, "etcd says its lease expired (keepalive answered without TTL)");
        pthread_mutex_lock(&e->mu);
        if (e->lease_id == id)
            e->lease_id = 0;
        pthread_mutex_unlock(&e->mu);
        rc = LV_ENOENT;
        goto out;
    }
    pthread_mutex_lock(&e->mu);
    e->ttl_us = *ttl * 1000000;
    pthread_mutex_unlock(&e->mu);
out:
    json_decref(ans);
    json_decref(req);
    return rc;
}

/* Publish our node key (when its value changed, or the lease did) with lease id. */
static void et_put_node(struct etcd *e, CURL *c, int64_t id, int64_t step_us)
{
    char *v = et_value(e), *vb = NULL;
    json_t *req = NULL, *ans = NULL;
    int same;

    if (!v)
        return;
    pthread_mutex_lock(&e->mu);
    same = e->node_put && strcmp(v, e->node_put) == 0;
    pthread_mutex_unlock(&e->mu);
    vb = same ? NULL : etcdv_b64_enc(v, strlen(v));
    req = vb ? json_pack("{s:s,s:s,s:I}", "key", e->node_b64, "value", vb, "lease", (json_int_t)id) : NULL;
    if (req && et_call(e, c, "/v3/kv/put", req, step_us, "node key put", &ans) == 0) {
        pthread_mutex_lock(&e->mu);
        free(e->node_put);
        e->node_put = v; /* (handed over) */
        v = NULL;
        pthread_mutex_unlock(&e->mu);
    }
    json_decref(ans);
    json_decref(req);
    free(vb);
    free(v);
}

/* May we race for the key?  Not when another live candidate is strictly
 * ahead of us: at least our TXID on every database and more on one (its
 * node key says so).  Then it should win, and we would lose what it holds
 * beyond us.  1 yes, 0 no (logged once per change of mind). */
static int et_most_advanced(struct etcd *e, CURL *c, int64_t step_us)
{
    json_t *req = json_pack("{s:s,s:s}", "key", e->nodes_b64, "range_end", e->nodes_end_b64), *ans = NULL, *kv;
    char *pos = e->positions ? e->positions(e->positions_arg) : NULL;
    json_t *mine = pos ? json_loads(pos, 0, NULL) : json_object();
    char ahead[512] = "";
    size_t i;

    if (!req || !mine || et_call(e, c, "/v3/kv/range", req, step_us, "node keys range", &ans) != 0) {
        snprintf(ahead, sizeof ahead, "the other nodes' positions are unknown");
        goto out;
    }
    json_array_foreach(json_object_get(ans, "kvs"), i, kv)
    {
        json_t *val = json_object_get(kv, "value");
        struct etcdv_member m = {0};

        if (json_is_string(val) && etcdv_member_parse(json_string_value(val), &m) == 0 && m.candidate &&
            strcmp(m.node, e->node_id) != 0 &&
            etcdv_ahead_terms(m.txids, m.terms, json_object_get(mine, "txids"), json_object_get(mine, "terms")))
            snprintf(ahead, sizeof ahead, "node %s (%s) is ahead", m.node[0] ? m.node : "?", m.url);
        etcdv_member_clear(&m);
        if (ahead[0])
            break;
    }
out:
    pthread_mutex_lock(&e->mu);
    int log = strcmp(ahead, e->defer_why) != 0;
    snprintf(e->defer_why, sizeof e->defer_why, "%s", ahead);
    pthread_mutex_unlock(&e->mu);
    if (log && ahead[0])
        LV_INFO("lease: not racing for %s: %s; it should win", e->key, ahead);
    json_decref(mine);
    json_decref(ans);
    json_decref(req);
    free(pos);
    return ahead[0] == 0;
}

static int et_hold(struct etcd *e, int64_t id, uint64_t term, int64_t t0, int64_t ttl);

/* Is the lease being handed over (the handoff key, lease_handoff)?  0 no
 * (or unknown), 1 to this node, 2 to another (which should take it: this
 * node does not race while the key lives, one TTL). */
static int et_handoff_to(struct etcd *e, CURL *c, int64_t step_us)
{
    json_t *req = json_pack("{s:s}", "key", e->handoff_b64), *ans = NULL, *o = NULL, *val;
    char *raw = NULL;
    size_t len = 0;
    int r = 0;

    if (!req || et_call(e, c, "/v3/kv/range", req, step_us, "handoff key range", &ans) != 0)
        goto out;
    val = json_object_get(json_array_get(json_object_get(ans, "kvs"), 0), "value");
    raw = json_is_string(val) ? etcdv_b64_dec(json_string_value(val), &len) : NULL;
    o = raw ? json_loadb(raw, len, 0, NULL) : NULL;
    if (json_is_string(json_object_get(o, "to")))
        r = strcmp(json_string_value(json_object_get(o, "to")), e->node_id) == 0 ? 1 : 2;
    if (r == 2) {
        char why[512];
        snprintf(why, sizeof why, "the lease is being handed over to node %s", json_string_value(json_object_get(o, "to")));
        pthread_mutex_lock(&e->mu);
        int log = strcmp(why, e->defer_why) != 0;
        snprintf(e->defer_why, sizeof e->defer_why, "%s", why);
        pthread_mutex_unlock(&e->mu);
        if (log)
            LV_INFO("lease: not racing for %s: %s", e->key, why);
    }
out:
    json_decref(o);
    free(raw);
    json_decref(ans);
    json_decref(req);
    return r;
}

/* The key is absent, we are a candidate and nobody is ahead: try to create
 * it with our lease id, alive at t0 with ttl seconds left.  1 if we won
 * (state PRIMARY), 0 if not. */
static int et_acquire(struct etcd *e, CURL *c, int64_t step_us, int64_t id, int64_t t0, int64_t ttl)
{
    json_t *req = NULL, *ans = NULL;
    char *v = et_value(e), *val = v ? etcdv_b64_enc(v, strlen(v)) : NULL;
    int64_t rev;
    int won = 0;

    req = val ? json_pack("{s:[{s:s,s:s,s:s,s:s}],s:[{s:{s:s,s:s,s:I}}],s:[{s:{s:s}}]}", "compare", "key",
                          e->key_b64, "target", "CREATE", "result", "EQUAL", "create_revision", "0", "success",
                          "request_put", "key", e->key_b64, "value", val, "lease", (json_int_t)id, "failure",
                          "request_range", "key", e->key_b64)
              : NULL;
    if (!req || et_call(e, c, "/v3/kv/txn", req, step_us, "acquire txn", &ans) != 0)
        goto out; /* an unknown outcome: the next read of the key tells (a key with our lease is ours) */
    rev = et_int(json_object_get(ans, "header"), "revision");
    if (!json_is_true(json_object_get(ans, "succeeded")) || rev <= 0)
        goto out; /* someone was faster: the next read names them */
    won = et_hold(e, id, (uint64_t)rev, t0, ttl);
out:
    free(val);
    free(v);
    json_decref(ans);
    json_decref(req);
    return won;
}

/* The key is ours (lease id, create revision term) and the lease was alive
 * at t0 with ttl seconds left: set the deadline and become (or stay, or
 * again become) the primary.  1 if writes may be taken. */
static int et_hold(struct etcd *e, int64_t id, uint64_t term, int64_t t0, int64_t ttl)
{
    int64_t d = t0 + (int64_t)((double)ttl * 1e6 * (1 - ET_DRIFT)) - lease_margin_us(ttl * 1000000);
    int was, now_primary;

    pthread_mutex_lock(&e->mu);
    was = e->state;
    if (e->lease_id != id || (was != ET_FOLLOW && e->term != term) || (was == ET_FOLLOW && e->deposed)) { /* E4 */
        pthread_mutex_unlock(&e->mu);
        return 0;
    }
    e->term = term;
    if (was == ET_FOLLOW || d > e->deadline_us) /* E2 */
        e->deadline_us = d;
    e->state = lv_mono_us() < e->deadline_us ? ET_PRIMARY : ET_FENCED;
    now_primary = e->state == ET_PRIMARY;
    e->last_err[0] = 0;
    d = e->deadline_us;
    pthread_mutex_unlock(&e->mu);
    et_tell_deadline(e, d);
    worker_wake(e->dog);
    if (was == ET_FOLLOW) {
        LV_INFO("lease: this node won %s (term %llu, TTL %lld s)%s", e->key, (unsigned long long)term,
                (long long)ttl, now_primary ? "" : " but too late to take writes; renewing");
        et_set_holder(e, NULL); /* the holder URL is ours now: et_primary_url answers from state */
    } else if (was == ET_FENCED && now_primary) {
        LV_INFO("lease: renewed %s again (term %llu): this node takes writes again", e->key,
                (unsigned long long)term);
    }
    if (was != (int)e->state)
        et_notify(e);
    return now_primary;
}

/* One round: keep the lease, publish the node key, look at the primary key
 * and act.  Returns how long to wait before the next round. */
static int64_t et_round(struct etcd *e, CURL *c)
{
    int64_t step, t0 = 0, ttl = 0, id;
    uint64_t term;
    json_t *kv = NULL;
    int holding, may;

    pthread_mutex_lock(&e->mu);
    step = (e->ttl_us ? e->ttl_us : e->ttl_req_s * 1000000) / 4;
    pthread_mutex_unlock(&e->mu);
    if (et_keep(e, c, step, &t0, &ttl) != 0)
        return step; /* the watchdog fences if this goes on */
    pthread_mutex_lock(&e->mu);
    id = e->lease_id;
    term = e->term;
    holding = e->state != ET_FOLLOW;
    may = lease_candidate(e->l) && !e->deposed; /* E4 */
    pthread_mutex_unlock(&e->mu);
    et_put_node(e, c, id, step);
    if (et_read(e, c, step, &kv) != 0)
        return step;
    if (kv && et_int(kv, "lease") == id && (!holding || (uint64_t)et_int(kv, "create_revision") == term)) {
        /* ours (also when an acquire whose answer was lost did succeed) */
        if (holding || may)
            et_hold(e, id, (uint64_t)et_int(kv, "create_revision"), t0, ttl);
    } else {
        if (holding)
            et_lose(e, kv ? "another node holds the lease key" : "the lease key is gone");
        et_set_holder(e, kv);
        if (kv) {
            e->absent_since = 0;
        } else if (may) {
            /* Settle: every node puts its fresh positions on seeing the key
             * go (step 2 of its next round); compare only after that. */
            int64_t now = lv_mono_us(), settle = step < ET_SETTLE_US ? step : ET_SETTLE_US;
            int h = et_handoff_to(e, c, step);
            if (e->absent_since == 0)
                e->absent_since = now;
            if (h == 1 && et_acquire(e, c, step, id, t0, ttl))
                step = 0; /* handed to us: no settle, no comparison */
            else if (h == 1 || h == 2)
                step = step < 100000 ? step : 100000; /* handed to another: look again soon */
            else if (now - e->absent_since < settle)
                step = settle - (now - e->absent_since);
            else if (et_most_advanced(e, c, step) && et_acquire(e, c, step, id, t0, ttl))
                step = 0; /* confirm the key at once */
        }
    }
    json_decref(kv);
    return step;
}

/* The main loop: follow, acquire, renew. */
static void et_loop(struct worker *w, void *arg)
{
    struct etcd *e = arg;
    CURL *c = curl_easy_init();
    int64_t step = 0;

    if (!c) {
        LV_ERROR("lease: out of memory (curl)");
        return;
    }
    do
        step = et_round(e, c);
    while (!worker_nap(w, step));
    pthread_mutex_lock(&e->mu);
    int64_t id = e->lease_id;
    e->state = ET_FOLLOW;
    e->lease_id = 0;
    pthread_mutex_unlock(&e->mu);
    if (id) { /* a clean close hands the key over at once, and removes the node key */
        json_t *req = json_pack("{s:I}", "ID", (json_int_t)id), *ans = NULL;
        if (req && et_call(e, c, "/v3/lease/revoke", req, 2000000, "revoke", &ans) == 0)
            LV_INFO("lease: revoked this node's etcd lease (%s and its node key go at once)", e->key);
        json_decref(ans);
        json_decref(req);
    }
    curl_easy_cleanup(c);
}

/* Fence at the deadline, whatever the loop is doing. */
static void et_watchdog(struct worker *w, void *arg)
{
    struct etcd *e = arg;
    int64_t nap = 1000000;

    while (!worker_nap(w, nap)) {
        int fenced = 0;
        int64_t now = lv_mono_us();
        pthread_mutex_lock(&e->mu);
        if (e->state == ET_PRIMARY && now >= e->deadline_us) {
            e->state = ET_FENCED;
            fenced = 1;
        }
        nap = e->state == ET_PRIMARY ? e->deadline_us - now : 1000000;
        pthread_mutex_unlock(&e->mu);
        if (fenced) {
            LV_WARN("lease: could not renew %s in time: this node stops taking writes (fenced) before its lease "
                    "can expire; it takes them again if etcd renews the lease, else it follows the next primary",
                    e->key);
            et_notify(e);
        }
    }
}

struct et_watch_ctx {
    struct etcd *e;      /* the lease */
    struct worker *w;    /* the watch worker */
    int canceled;        /* etcd canceled the watch (a compaction, the auth token, ...): it is ended */
    int refused;         /* ... for its auth token (see the top) */
    char line[4096];     /* the line being received */
    size_t n;            /* bytes in line */
};

static size_t et_watch_data(char *d, size_t sz, size_t nm, void *arg)
{
    struct et_watch_ctx *x = arg;
    size_t add = sz * nm;

    for (size_t i = 0; i < add; i++) {
        if (d[i] != '\n') {
            if (x->n < sizeof x->line - 1)
                x->line[x->n++] = d[i];
            continue;
        }
        x->line[x->n] = 0;
        if (strstr(x->line, "\"events\"") || strstr(x->line, "\"canceled\""))
            worker_wake(x->e->loop); /* re-read the key now */
        if (strstr(x->line, "\"canceled\"")) {
            /* The stream stays open but watches nothing: end it (a new
             * watch starts after ET_WATCH_RETRY_US). */
            x->canceled = 1;
            x->refused = strstr(x->line, "Unauthenticated") || strstr(x->line, "user name is empty");
        }
        x->n = 0;
        if (x->canceled)
            return 0;
    }
    if (x->n && strstr(x->line, "\"error\"")) /* a stream error has no trailing newline */
        worker_wake(x->e->loop);
    return add;
}

static int et_watch_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    struct et_watch_ctx *x = arg;

    LV_UNUSED(a);
    LV_UNUSED(b);
    LV_UNUSED(c);
    LV_UNUSED(d);
    return worker_stopping(x->w);
}

/* Watch the key: any event wakes the loop, which re-reads it. */
static void et_watch(struct worker *w, void *arg)
{
    struct etcd *e = arg;
    CURL *c = curl_easy_init();
    struct et_watch_ctx x = {.e = e, .w = w};
    char url[1200], *body;
    json_t *req = json_pack("{s:{s:s}}", "create_request", "key", e->key_b64);

    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!c || !body) {
        LV_ERROR("lease: out of memory (watch)");
        goto out;
    }
    do {
        struct curl_slist *hdrs = NULL;
        char *tok = e->user ? et_token_now(e) : NULL;
        x.n = 0;
        x.refused = 0;
        x.canceled = 0;
        if (e->user && !tok)
            continue; /* no token yet: the loop authenticates (the nap below, then look again) */
        if (et_setup(e, c, "/v3/watch", tok, &hdrs, url, sizeof url) == 0) {
            curl_easy_setopt(c, CURLOPT_POST, 1L);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
            curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, et_watch_data);
            curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
            curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
            curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, et_watch_progress);
            curl_easy_setopt(c, CURLOPT_XFERINFODATA, &x);
            curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
            curl_easy_perform(c); /* returns when the watch ends, fails, or we stop */
        }
        if (x.refused && tok) {
            LV_INFO("lease: etcd at %s canceled the watch: it no longer accepts this node's auth token; "
                    "authenticating again as user %s", et_endpoint(e), e->user);
            et_forget_token(e, tok);
        }
        free(tok);
        curl_slist_free_all(hdrs);
        worker_wake(e->loop);
    } while (!worker_nap(w, ET_WATCH_RETRY_US));
out:
    free(body);
    if (c)
        curl_easy_cleanup(c);
}

/* ---- the ops ---- */

static int et_is_primary(struct lease *l)
{
    struct etcd *e = lease_impl(l);
    int p;

    pthread_mutex_lock(&e->mu);
    p = e->state == ET_PRIMARY;
    pthread_mutex_unlock(&e->mu);
    return p;
}

static int et_primary_url(struct lease *l, char *buf, size_t n)
{
    struct etcd *e = lease_impl(l);
    char url[1024];

    pthread_mutex_lock(&e->mu);
    snprintf(url, sizeof url, "%s", e->state != ET_FOLLOW ? lease_advertise_url(l) : e->holder_url);
    pthread_mutex_unlock(&e->mu);
    if (!url[0])
        return LV_ENOENT;
    if (strlen(url) >= n)
        return LV_EINVAL;
    memcpy(buf, url, strlen(url) + 1);
    return 0;
}

static void et_info(struct lease *l, struct lease_info *out)
{
    struct etcd *e = lease_impl(l);

    pthread_mutex_lock(&e->mu);
    out->state = e->state == ET_PRIMARY ? "primary" : e->state == ET_FENCED ? "fenced" : e->deposed ? "deposed"
                                                                                           : "follower";
    out->holding = e->state != ET_FOLLOW;
    out->term = e->term;
    out->primary_term = e->state != ET_FOLLOW ? e->term : e->holder_term;
    out->deadline_ms = e->state == ET_FOLLOW ? 0 : (e->deadline_us - lv_mono_us()) / 1000;
    snprintf(out->primary_proxy, sizeof out->primary_proxy, "%s",
             e->state != ET_FOLLOW ? (e->proxy_url ? e->proxy_url : "") : e->holder_proxy);
    snprintf(out->error, sizeof out->error, "%s", e->last_err);
    pthread_mutex_unlock(&e->mu);
}

static void et_close(struct lease *l)
{
    struct etcd *e = lease_impl(l);

    if (!e)
        return;
    worker_ask_stop(e->watch);
    worker_stop(e->watch); /* it wakes the loop: first */
    worker_stop(e->loop);  /* revokes the lease: the key goes at once; it wakes the watchdog */
    worker_stop(e->dog);
    for (size_t i = 0; i < e->nep; i++)
        free(e->ep[i]);
    free(e->ep);
    free(e->key);
    free(e->key_b64);
    free(e->node_b64);
    free(e->node_put);
    free(e->nodes_b64);
    free(e->nodes_end_b64);
    free(e->handoff_b64);
    free(e->node_id);
    free(e->proxy_url);
    free(e->ca);
    free(e->cert);
    free(e->ckey);
    free(e->user);
    if (e->password)
        explicit_bzero(e->password, strlen(e->password));
    free(e->password);
    free(e->token);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

/* The last etcd problem (et_problem) into buf. */
static void et_last_err(struct etcd *e, char *buf, size_t n)
{
    pthread_mutex_lock(&e->mu);
    snprintf(buf, n, "%s", e->last_err[0] ? e->last_err : "no answer");
    pthread_mutex_unlock(&e->mu);
}

/* "<the lease key's directory>/<rel><name>" (malloc'ed), or NULL: the node
 * keys and the handoff key live beside the lease key. */
static char *et_dir_key(const struct etcd *e, const char *rel, const char *name)
{
    const char *slash = strrchr(e->key, '/');
    char *k = NULL;

    if (asprintf(&k, "%.*s/%s%s", slash ? (int)(slash - e->key) : 0, e->key, rel, name) < 0)
        return NULL;
    return k;
}

/* 1 if node's key says it is a live candidate, else 0 (absent, not a candidate, or etcd failed). */
static int et_node_candidate(struct etcd *e, CURL *c, const char *node, int64_t step_us)
{
    char *key = et_dir_key(e, "nodes/", node), *kb = NULL;
    json_t *req = NULL, *ans = NULL, *val;
    struct etcdv_member m = {0};
    int yes = 0;

    if (!key)
        return 0;
    kb = etcdv_b64_enc(key, strlen(key));
    req = kb ? json_pack("{s:s}", "key", kb) : NULL;
    if (req && et_call(e, c, "/v3/kv/range", req, step_us, "node key range", &ans) == 0) {
        val = json_object_get(json_array_get(json_object_get(ans, "kvs"), 0), "value");
        yes = json_is_string(val) && etcdv_member_parse(json_string_value(val), &m) == 0 && m.candidate;
    }
    etcdv_member_clear(&m);
    json_decref(ans);
    json_decref(req);
    free(kb);
    free(key);
    return yes;
}

/* Hand over (lease_handoff): name `to` in the handoff key, on a lease of
 * its own that is never renewed (it lasts one TTL), then revoke ours (the
 * primary key and our node key go with it). */
static int et_handoff(struct lease *l, const char *to, char *err, size_t errlen)
{
    struct etcd *e = lease_impl(l);
    CURL *c = curl_easy_init();
    json_t *req = NULL, *ans = NULL, *v = NULL;
    char *val = NULL, *vb = NULL, why[256];
    int64_t id, hid, step;
    int rc = LV_ENOMEM;

    pthread_mutex_lock(&e->mu);
    id = e->state != ET_FOLLOW ? e->lease_id : 0;
    step = (e->ttl_us ? e->ttl_us : e->ttl_req_s * 1000000) / 4;
    pthread_mutex_unlock(&e->mu);
    if (!id) {
        lv_seterr(err, errlen, "this node does not hold the lease");
        rc = LV_EREFUSED;
        goto out;
    }
    if (!c || !(req = json_pack("{s:I}", "TTL", (json_int_t)e->ttl_req_s)))
        goto out;
    if (!et_node_candidate(e, c, to, step)) {
        lv_seterr(err, errlen, "node %s is not a candidate that etcd knows (lease.candidate false, or not running)",
                  to);
        rc = LV_EREFUSED;
        goto out;
    }
    if ((rc = et_call(e, c, "/v3/lease/grant", req, step, "handoff lease grant", &ans)) != 0 ||
        (hid = et_int(ans, "ID")) == 0) {
        et_last_err(e, why, sizeof why);
        lv_seterr(err, errlen, "etcd did not grant the handoff's lease: %s", why);
        rc = LV_ENET;
        goto out;
    }
    json_decref(req);
    json_decref(ans);
    ans = NULL;
    v = json_pack("{s:s,s:s}", "to", to, "from", e->node_id);
    val = v ? json_dumps(v, JSON_COMPACT) : NULL;
    vb = val ? etcdv_b64_enc(val, strlen(val)) : NULL;
    req = vb ? json_pack("{s:s,s:s,s:I}", "key", e->handoff_b64, "value", vb, "lease", (json_int_t)hid) : NULL;
    rc = LV_ENOMEM;
    if (!req)
        goto out;
    if ((rc = et_call(e, c, "/v3/kv/put", req, step, "handoff key put", &ans)) != 0) {
        json_t *rq = json_pack("{s:I}", "ID", (json_int_t)hid), *an = NULL;
        et_last_err(e, why, sizeof why);
        lv_seterr(err, errlen, "etcd did not take the handoff key: %s", why);
        if (rq) /* in case the put landed after all: its key goes with its lease */
            et_call(e, c, "/v3/lease/revoke", rq, step, "handoff lease revoke", &an);
        json_decref(an);
        json_decref(rq);
        rc = LV_ENET;
        goto out;
    }
    pthread_mutex_lock(&e->mu);
    e->deposed = 1; /* E4: from here on this node never races */
    pthread_mutex_unlock(&e->mu);
    et_lose(e, "handed over");
    json_decref(req);
    json_decref(ans);
    ans = NULL;
    req = json_pack("{s:I}", "ID", (json_int_t)id);
    if (req && et_call(e, c, "/v3/lease/revoke", req, step, "revoke", &ans) != 0) {
        et_last_err(e, why, sizeof why);
        LV_WARN("lease: could not revoke the lease; %s goes when it expires (%s)", e->key, why);
    }
    pthread_mutex_lock(&e->mu);
    if (e->lease_id == id)
        e->lease_id = 0; /* the loop grants a new one for the node key */
    pthread_mutex_unlock(&e->mu);
    LV_INFO("lease: handed %s over to node %s", e->key, to);
    rc = 0;
out:
    free(vb);
    free(val);
    json_decref(v);
    json_decref(ans);
    json_decref(req);
    if (c)
        curl_easy_cleanup(c);
    return rc;
}

/* lease_peers: the node keys of the other live nodes. */
static char *et_peers(struct lease *l)
{
    struct etcd *e = lease_impl(l);
    CURL *c = curl_easy_init();
    json_t *req = json_pack("{s:s,s:s}", "key", e->nodes_b64, "range_end", e->nodes_end_b64), *ans = NULL, *kv;
    json_t *arr = json_array();
    char *out = NULL;
    int64_t step;
    size_t i;

    pthread_mutex_lock(&e->mu);
    step = (e->ttl_us ? e->ttl_us : e->ttl_req_s * 1000000) / 4;
    pthread_mutex_unlock(&e->mu);
    if (!c || !req || !arr || et_call(e, c, "/v3/kv/range", req, step, "node keys range", &ans) != 0)
        goto out;
    json_array_foreach(json_object_get(ans, "kvs"), i, kv)
    {
        json_t *val = json_object_get(kv, "value");
        struct etcdv_member m = {0};
        if (json_is_string(val) && etcdv_member_parse(json_string_value(val), &m) == 0 &&
            strcmp(m.node, e->node_id) != 0)
            json_array_append_new(arr, json_pack("{s:s,s:s,s:b,s:o,s:o}", "node", m.node, "url", m.url, "candidate",
                                                 m.candidate, "txids",
                                                 m.txids ? json_incref(m.txids) : json_object(), "terms",
                                                 m.terms ? json_incref(m.terms) : json_object()));
        etcdv_member_clear(&m);
    }
    out = json_dumps(arr, JSON_COMPACT);
out:
    json_decref(arr);
    json_decref(ans);
    json_decref(req);
    if (c)
        curl_easy_cleanup(c);
    return out;
}

static const struct lease_ops etcd_ops = {et_is_primary, et_primary_url, et_info, et_handoff, et_peers, et_close};

/* The node keys: <the lease key's directory>/nodes/<node ID>. */
static int et_node_keys(struct etcd *e, const char *node)
{
    char *mine = et_dir_key(e, "nodes/", node), *prefix = et_dir_key(e, "nodes/", "");
    char *handoff = et_dir_key(e, "handoff", "");
    int rc = LV_ENOMEM;

    if (!mine || !prefix || !handoff)
        goto out;
    e->node_b64 = etcdv_b64_enc(mine, strlen(mine));
    e->nodes_b64 = etcdv_b64_enc(prefix, strlen(prefix));
    prefix[strlen(prefix) - 1]++; /* "/" + 1 = "0": the end of the prefix's range */
    e->nodes_end_b64 = etcdv_b64_enc(prefix, strlen(prefix));
    e->handoff_b64 = etcdv_b64_enc(handoff, strlen(handoff));
    rc = e->node_b64 && e->nodes_b64 && e->nodes_end_b64 && e->handoff_b64 ? 0 : LV_ENOMEM;
out:
    free(prefix);
    free(mine);
    free(handoff);
    return rc;
}

/* Split the comma-separated endpoints into e->ep.  0 or an error in err. */
static int et_endpoints(struct etcd *e, const char *list, char *err, size_t errlen)
{
    const char *s = list;

    while (s && *s) {
        size_t len = strcspn(s, ",");
        char **np = realloc(e->ep, (e->nep + 1) * sizeof *np);
        if (!np)
            return LV_ENOMEM;
        e->ep = np;
        while (len && s[len - 1] == '/')
            len--;
        if (!(e->ep[e->nep] = strndup(s, len)))
            return LV_ENOMEM;
        e->nep++;
        s += strcspn(s, ",");
        if (*s == ',')
            s++;
    }
    if (e->nep == 0) {
        lv_seterr(err, errlen, "lease.type etcd needs lease.endpoints (e.g. [http://127.0.0.1:2379])");
        return LV_ECONFIG;
    }
    return 0;
}

int lease_etcd_open(struct lease *l, const struct lease_conf *c, char *err, size_t errlen)
{
    struct etcd *e = calloc(1, sizeof *e);
    int rc = LV_ENOMEM;

    if (!e)
        return LV_ENOMEM;
    e->l = l;
    pthread_mutex_init(&e->mu, NULL);
    lease_set_impl(l, &etcd_ops, e);
    if ((rc = et_endpoints(e, c->endpoints, err, errlen)) != 0)
        return rc;
    if (c->key)
        e->key = strdup(c->key);
    else if (c->cluster_hex && asprintf(&e->key, "/litevault/%s/primary", c->cluster_hex) < 0)
        e->key = NULL;
    if (!e->key) {
        if (!c->key && !c->cluster_hex)
            lv_seterr(err, errlen, "an etcd lease without lease.key needs the cluster ID");
        return c->key || c->cluster_hex ? LV_ENOMEM : LV_ECONFIG;
    }
    e->key_b64 = etcdv_b64_enc(e->key, strlen(e->key));
    if ((rc = et_node_keys(e, c->node_id ? c->node_id : "")) != 0)
        return rc;
    e->node_id = strdup(c->node_id ? c->node_id : "");
    e->proxy_url = c->proxy_url ? strdup(c->proxy_url) : NULL;
    e->ca = c->ca_file ? strdup(c->ca_file) : NULL;
    e->cert = c->cert_file ? strdup(c->cert_file) : NULL;
    e->ckey = c->key_file ? strdup(c->key_file) : NULL;
    e->user = c->username ? strdup(c->username) : NULL;
    e->password = c->username ? strdup(c->password ? c->password : "") : NULL;
    e->ttl_req_s = c->ttl_us > 0 ? (c->ttl_us + 999999) / 1000000 : 10;
    e->positions = c->positions;
    e->positions_arg = c->positions_arg;
    e->deadline_fn = c->deadline;
    if (!e->key_b64 || !e->node_id || (c->username && (!e->user || !e->password)))
        return LV_ENOMEM;
    if (worker_start("lv-lease-dog", et_watchdog, e, &e->dog) != 0 ||
        worker_start("lv-lease", et_loop, e, &e->loop) != 0 || worker_start("lv-lease-watch", et_watch, e, &e->watch) != 0)
        return LV_ENOMEM;
    LV_INFO("lease: etcd %s, key %s, TTL %lld s, %s%s%s", c->endpoints, e->key, (long long)e->ttl_req_s,
            lease_candidate(l) ? "candidate" : "never the primary (lease.candidate false)",
            e->user ? ", as etcd user " : "", e->user ? e->user : "");
    return 0;
}

int lease_etcd_cluster(const struct lease_conf *c, char hex[33], int have, int64_t timeout_us, char *err,
                       size_t errlen)
{
    struct etcd e = {.ca = (char *)c->ca_file, .cert = (char *)c->cert_file, .ckey = (char *)c->key_file,
                     .user = (char *)c->username, .password = (char *)(c->password ? c->password : "")};
    static const char key[] = "/litevault/cluster-id";
    char *kb = etcdv_b64_enc(key, strlen(key)), *vb = have ? etcdv_b64_enc(hex, strlen(hex)) : NULL, *got = NULL;
    int64_t end = lv_mono_us() + timeout_us;
    CURL *h = curl_easy_init();
    json_t *req = NULL, *ans = NULL;
    size_t glen;
    int rc = LV_ENOMEM;

    pthread_mutex_init(&e.mu, NULL);
    if (!kb || !h || (have && !vb) || (rc = et_endpoints(&e, c->endpoints, err, errlen)) != 0)
        goto out;
    if (!have) { /* a fresh node proposes a new random ID; the first proposal wins */
        uint8_t id[16];
        if ((rc = cluster_id_random(id)) != 0)
            goto out;
        lv_hex(id, sizeof id, hex);
        if (!(vb = etcdv_b64_enc(hex, strlen(hex)))) {
            rc = LV_ENOMEM;
            goto out;
        }
    }
    req = json_pack("{s:[{s:s,s:s,s:s,s:s}],s:[{s:{s:s,s:s}}],s:[{s:{s:s}}]}", "compare", "key", kb, "target",
                    "CREATE", "result", "EQUAL", "create_revision", "0", "success", "request_put", "key", kb, "value",
                    vb, "failure", "request_range", "key", kb);
    rc = LV_ENOMEM;
    if (!req)
        goto out;
    for (;;) {
        rc = et_call(&e, h, "/v3/kv/txn", req, 2000000, "cluster-id txn", &ans);
        if (rc == 0 || lv_mono_us() >= end)
            break;
        sleep(1);
    }
    if (rc) {
        lv_seterr(err, errlen, "cannot agree on the cluster ID through etcd at %s: %s", c->endpoints,
                  e.last_err[0] ? e.last_err : lv_strerror(rc));
        goto out;
    }
    if (!json_is_true(json_object_get(ans, "succeeded"))) {
        json_t *kvs = json_object_get(json_object_get(json_array_get(json_object_get(ans, "responses"), 0),
                                                      "response_range"), "kvs");
        json_t *v = json_object_get(json_array_get(kvs, 0), "value");
        got = json_is_string(v) ? etcdv_b64_dec(json_string_value(v), &glen) : NULL;
        if (!got || glen != 32 || strspn(got, "0123456789abcdef") != 32) {
            lv_seterr(err, errlen, "etcd key %s does not hold a cluster ID (32 hex digits); fix or delete it, or set "
                                   "lease.key", key);
            rc = LV_ECORRUPT;
            goto out;
        }
        if (have && strcmp(got, hex) != 0) {
            lv_seterr(err, errlen, "this node belongs to cluster %s (data.dir/cluster-id) but etcd's %s names cluster "
                                   "%s; point lease.endpoints at this cluster's etcd, or set lease.key", hex, key, got);
            rc = LV_EREFUSED;
            goto out;
        }
        memcpy(hex, got, 33);
    }
    rc = 0;
out:
    for (size_t i = 0; i < e.nep; i++)
        free(e.ep[i]);
    free(e.ep);
    free(e.token);
    pthread_mutex_destroy(&e.mu);
    json_decref(ans);
    json_decref(req);
    if (h)
        curl_easy_cleanup(h);
    free(kb);
    free(vb);
    free(got);
    return rc;
}
