/*
 * peer_catchup.c -- before a newly elected primary opens writes, it takes
 * the records that more advanced nodes hold.
 *
 * WHY.  The election (lease_etcd.c, "Who may win") keeps a candidate from
 * racing while another live *candidate* is ahead of it, but a replica with
 * `candidate: false` may be the most advanced survivor: it received
 * records from the dead primary that no candidate did.  Those records may
 * have been acknowledged to applications (synchronous replication counts
 * every replica).  Each node's etcd node key publishes its TXIDs per
 * database, so the new primary knows who holds what (lease_peers).
 *
 * WHAT (promote in src/daemon/daemon.c calls peer_catchup after the
 * replication client stopped, before the archive's tail and before writes
 * open), per database of the registry:
 *   1. the peer whose node key names the largest TXID for it, if larger
 *      than the local one;
 *   2. GET <its url>/v1/log?db=NAME&after=T (src/daemon/api.c, h_log):
 *      its own log's records after T, back to back, at most about 8 MiB;
 *   3. the records are applied through dbreg_apply (catchup_apply_records:
 *      the replica's applier, which checks database ID, TXID and checksum
 *      chain, post checksums and terms -- a peer is as untrusted as a
 *      primary), and 2 repeats from the new T until the peer's TXID is
 *      reached, or it answers nothing new, or fails.
 * A peer that cannot be reached (it died too), pruned its log (410), or
 * holds another history, is logged and left: the node opens writes with
 * what it has (availability), as the archive's catch-up does.
 *
 * INVARIANTS
 *   P1. Every byte a peer sends passes dbreg_apply's checks before it is
 *       applied (as K1 in restore/catchup.c).
 *   P2. Each loop iteration either advances the local TXID or ends the
 *       loop, so a peer that keeps answering the same records cannot hold
 *       a promotion forever; each request has a timeout, and the whole
 *       catch-up a budget.
 *   P3. Peers are tried most advanced first; one that fails (unreachable,
 *       410, another history) hands over to the next one ahead of the
 *       local TXID.  A peer found unreachable is not asked again.
 *   P4. Databases this node lacks but peers hold (created on the dead
 *       primary) are taken too, from TXID 1 or the peer's snapshot record;
 *       their names follow the stream's NAME rules (stream_name_ok), and
 *       one whose ID is a local database's (renamed here, not yet there)
 *       is not made again.  A database that the dead primary dropped and
 *       a lagging peer still holds cannot be told from a new one: it comes
 *       back (nothing is lost; the user drops it again).
 */
#include "replica/peer_catchup.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/http.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "capture/db.h"
#include "log/txlog.h"
#include "replica/stream.h"

#define PC_MAX_BODY (64u << 20) /* bytes accepted in one answer (the server sends about 8 MiB) */

/* An answer of GET /v1/log: its body (b.max = PC_MAX_BODY) and status. */
struct pc_buf {
    struct http_sink b; /* the body (http_sink_write) */
    long status;        /* the HTTP status (0: no answer) */
};

/* GET url/v1/log?db=name&after=txid into *b.  0, or LV_ENET with err (the
 * status and the peer's message when it answered). */
static int pc_get(CURL *c, const char *url, const char *name, uint64_t txid, int timeout_ms, struct pc_buf *b,
                  char *err, size_t errlen)
{
    char *q = curl_easy_escape(c, name, 0), *full = NULL, cerr[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode cc;
    int rc = LV_ENET;

    if (!q || asprintf(&full, "%s/v1/log?db=%s&after=%" PRIu64, url, q, txid) < 0) {
        full = NULL;
        lv_seterr(err, errlen, "out of memory");
        rc = LV_ENOMEM;
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b->b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 1000 ? timeout_ms : 1000));
    /* A frozen node (its kernel accepts, nothing answers) is given up after
     * about 3 s of silence, not after the whole timeout. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 3L); /* (the peer reads its log before it answers) */
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL); /* cerr ends with this call */
    b->status = status;
    if (cc != CURLE_OK && !b->b.too_big)
        lv_seterr(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(cc));
    else if (b->b.too_big)
        lv_seterr(err, errlen, "the answer is larger than %u bytes", PC_MAX_BODY);
    else if (status != 200)
        lv_seterr(err, errlen, "HTTP %ld: %.300s", status, b->b.buf ? b->b.buf : "");
    else
        rc = 0;
out:
    free(full);
    curl_free(q);
    return rc;
}

/* A peer's number for database name in its map key ("txids", "terms"): 0
 * if absent or not a positive integer. */
static uint64_t pc_num(json_t *peer, const char *key, const char *name)
{
    json_t *v = json_object_get(json_object_get(peer, key), name);

    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

long peer_catchup_best(json_t *peers, const char *name, uint64_t txid, const char *tried, const char *dead,
                       uint64_t *theirs)
{
    uint64_t best_term = 0;
    long best = -1;
    size_t i;
    json_t *p;

    *theirs = txid;
    json_array_foreach(peers, i, p)
    {
        uint64_t t = pc_num(p, "txids", name), term = pc_num(p, "terms", name);
        const char *u = json_string_value(json_object_get(p, "url"));
        if (tried[i] || dead[i] || t <= txid || !u || !*u)
            continue;
        if (best < 0 || term > best_term || (term == best_term && t > *theirs)) {
            best = (long)i;
            best_term = term;
            *theirs = t;
        }
    }
    return best;
}

/* P4: a database this node lacks must not be one it has under another
 * name (a rename that the peer has not applied yet): the ID of the peer's
 * first record, in b, against the local databases'.  0, or LV_EREFUSED
 * with err. */
static int pc_not_renamed(const struct db_info *dbs, size_t n, const char *name, const struct pc_buf *b, char *err,
                          size_t errlen)
{
    struct txlog_hdr h;

    if (b->b.len < TXLOG_HDR_SIZE || txlog_hdr_decode((const uint8_t *)b->b.buf, &h) != 0)
        return 0; /* nothing, or damage: catchup_apply_records says so */
    for (size_t i = 0; i < n; i++)
        if (memcmp(dbs[i].id, h.dbid, 16) == 0) {
            snprintf(err, errlen, "its database ID is this node's %s (renamed since): not made again", dbs[i].name);
            return LV_EREFUSED;
        }
    LV_UNUSED(name);
    return 0;
}

/* Catch database name (local TXID txid, 0: this node lacks it) up from the
 * peers, the most advanced first, the next when one fails (P3).  1
 * advanced, 0 nothing to do, negative: left (logged). */
static int pc_db(CURL *c, json_t *peers, char *dead, struct dbreg *reg, const struct db_info *dbs, size_t ndbs,
                 const char *name, uint64_t txid, int64_t deadline, int timeout_ms, int wait_ms,
                 struct catchup_result *res)
{
    size_t np = json_array_size(peers);
    char *tried = calloc(np ? np : 1, 1), err[1024] = "";
    uint64_t from = txid, target = txid;
    long i;
    int rc = 0, any = 0;

    if (!tried)
        return LV_ENOMEM;
    while ((i = peer_catchup_best(peers, name, txid, tried, dead, &target)) >= 0) {
        if (lv_mono_us() >= deadline) {
            snprintf(err, sizeof err, "the catch-up's time ran out");
            LV_WARN("catch-up: %s: not caught up beyond TXID %" PRIu64 " of the %" PRIu64 " another node holds: "
                    "the catch-up's time ran out", name, txid, target);
            rc = LV_EBUSY;
            any = 1;
            break;
        }
        json_t *p = json_array_get(peers, (size_t)i);
        const char *url = json_string_value(json_object_get(p, "url"));
        const char *node = json_string_value(json_object_get(p, "node"));
        tried[i] = 1;
        any = 1;
        LV_INFO("catch-up: node %s (%s) holds %s up to TXID %" PRIu64 ", this node up to %" PRIu64
                ": taking its records before writes open", node ? node : "?", url, name, target, txid);
        rc = 0;
        while (rc == 0 && txid < target && lv_mono_us() < deadline) {
            struct pc_buf b = {.b.max = PC_MAX_BODY};
            uint64_t before = txid;
            int64_t left_ms = (deadline - lv_mono_us()) / 1000 + 1;
            rc = pc_get(c, url, name, txid, left_ms < timeout_ms ? (int)left_ms : timeout_ms, &b, err, sizeof err);
            if (rc == LV_ENET && b.status == 0)
                dead[i] = 1; /* unreachable: not asked again for another database */
            if (rc == 0 && from == 0 && txid == 0) /* P4 */
                rc = pc_not_renamed(dbs, ndbs, name, &b, err, sizeof err);
            if (rc == 0) {
                res->bytes += b.b.len;
                rc = catchup_apply_records(reg, name, url, (const uint8_t *)b.b.buf, b.b.len, &txid, wait_ms, &res->records, err,
                                           sizeof err);
            }
            free(b.b.buf);
            if (rc == 0 && txid == before) /* P2 */
                break;
        }
        if (rc)
            LV_WARN("catch-up: %s: node %s (%s) could not continue it from TXID %" PRIu64 " (%s)%s", name,
                    node ? node : "?", url, txid, err[0] ? err : lv_strerror(rc),
                    peer_catchup_best(peers, name, txid, tried, dead, &target) >= 0 ? "; trying the next node" : "");
        else if (txid >= target)
            break;
    }
    free(tried);
    if (any && txid > from)
        LV_INFO("catch-up: %s advanced from TXID %" PRIu64 " to %" PRIu64 " with other nodes' records", name, from,
                txid);
    if (any && txid == from)
        LV_WARN("catch-up: %s stays at TXID %" PRIu64 ": no node gave its records%s; writes open with this "
                "node's history", name, txid, lv_mono_us() >= deadline ? " in time" : "");
    return txid > from ? 1 : any ? (rc ? rc : LV_ENET) : 0;
}

/* Is name one of the n local databases? */
static int pc_local(const struct db_info *dbs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(dbs[i].name, name) == 0)
            return 1;
    return 0;
}

int peer_catchup(struct dbreg *reg, const char *peers_json, const char *token, const char *ca_file, int timeout_ms,
                 int wait_ms, int64_t budget_us, struct catchup_result *res)
{
    json_t *peers = peers_json ? json_loads(peers_json, 0, NULL) : NULL, *p, *others = json_object();
    struct db_info *dbs = NULL;
    struct curl_slist *hdrs = NULL;
    CURL *c = NULL;
    char *dead = NULL;
    const char *name;
    size_t n = 0, k;
    json_t *t;
    int64_t t0 = lv_mono_us(), deadline = t0 + budget_us;
    int rc = 0;

    memset(res, 0, sizeof *res);
    if (!json_is_array(peers)) {
        rc = LV_ECORRUPT;
        goto out;
    }
    if (json_array_size(peers) == 0)
        goto out;
    if (!others || !(dead = calloc(json_array_size(peers), 1)) || !(c = curl_easy_init()) ||
        http_client_setup(c, token, ca_file, &hdrs) != 0 || dbreg_list(reg, &dbs, &n)) {
        rc = LV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (dbs[i].broken)
            continue;
        res->dbs++;
        int r = pc_db(c, peers, dead, reg, dbs, n, dbs[i].name, dbs[i].txid, deadline, timeout_ms, wait_ms, res);
        if (r > 0)
            res->advanced++;
        else if (r < 0)
            res->skipped++;
    }
    /* P4: databases other nodes hold and this one lacks (created on the dead
     * primary, replicated to some): taken from TXID 1 or a snapshot record. */
    json_array_foreach(peers, k, p)
    {
        json_object_foreach(json_object_get(p, "txids"), name, t)
        {
            if (!pc_local(dbs, n, name) && stream_name_ok(name))
                json_object_set_new(others, name, json_true());
        }
    }
    json_object_foreach(others, name, t)
    {
        res->dbs++;
        int r = pc_db(c, peers, dead, reg, dbs, n, name, 0, deadline, timeout_ms, wait_ms, res);
        if (r > 0)
            res->advanced++;
        else if (r < 0)
            res->skipped++;
    }
out:
    free(dbs);
    free(dead);
    if (c)
        curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    json_decref(others);
    json_decref(peers);
    res->seconds = (double)(lv_mono_us() - t0) / 1e6;
    return rc;
}
