/*
 * api.c -- HTTP handlers of the daemon's API (see api.h).
 *
 * Image lifetime.  States of one image file:
 *   RESERVED  h_image checked room and added the expected size to
 *             g_img.bytes (under g_img.lock);
 *   WRITTEN   dbreg_image filled data.dir/tmp/image-XXXXXX; the
 *             reservation is corrected to the real size;
 *   HELD      the reply was sent; the client adopts or copies the file;
 *   (gone)    image_release: unlink (ENOENT when the client renamed it)
 *             and the reservation returned.  Runs when the client hangs
 *             up, when the daemon stops (http_free cuts holds), or at once
 *             when anything before HELD fails.
 * Invariants:
 *   A1. g_img.bytes is the sum of the sizes of images in RESERVED..HELD.
 *   A2. A new image is refused (507) when g_img.bytes + its expected size
 *       exceeds the limit: http.image-space, or, when 0, half of
 *       (free space of data.dir/tmp + g_img.bytes): images never take
 *       more than half of what is left for the application.
 *   A3. Every image reaches (gone) exactly once (http.c's H3).
 *
 * Images are written by the daemon itself, into data.dir/tmp/, rather than
 * streamed over HTTP: the copy runs at local disk speed, the CLI on the same
 * machine then renames the file into place (no second copy when the target
 * is on the same filesystem), and a slow reader never holds the database's
 * copy-on-write state open.  The file is created 0600 by mkstemp, so only
 * the daemon's user (and root) can read it.
 */
#include <stddef.h>

#include "daemon/api.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <jansson.h>

#include "base/cksum.h"
#include "archive/archiver.h"
#include "base/metrics.h"
#include "export/exports.h"
#include "capture/db.h"
#include "log/txlog.h"
#include "base/http.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "replica/lease.h"
#include "replica/primary.h"
#include "replica/replica.h"

#define API_WAIT_DEFAULT_US (5 * 1000000LL) /* GET /v1/wait without timeout= */
#define API_WAIT_MAX_US (60 * 1000000LL)    /* the longest timeout= honoured */
#define API_WAITERS_MAX 16                  /* GET /v1/wait requests at once; more get 503 */

static struct api_ctx g_api;    /* one daemon per process: the handlers' context (immutable once registered;
                                   its role fields are only the start: see g_role) */

/* The role, which a lease may change while the servers run (api_set_role). */
struct api_role {
    int replica;              /* 1: a replica */
    char primary_url[1024];   /* a replica's primary ("" unknown) */
    char cluster_hex[33];     /* the primary's cluster ID ("" unknown) */
    struct primary *primary;  /* the primary's streams, or NULL */
    struct archiver *arch;    /* archiver, or NULL */
    struct exports *exp;      /* scheduled exports, or NULL */
    struct lease *lease;      /* the lease, or NULL */
};
static pthread_mutex_t g_role_mu = PTHREAD_MUTEX_INITIALIZER; /* guards g_role */
static struct api_role g_role;  /* (g_role_mu); the objects it points to outlive the servers (daemon.c D2) */

/* A copy of the role now. */
static void role_get(struct api_role *out)
{
    pthread_mutex_lock(&g_role_mu);
    *out = g_role;
    pthread_mutex_unlock(&g_role_mu);
}

void api_set_role(const struct api_ctx *ctx)
{
    pthread_mutex_lock(&g_role_mu);
    g_role.replica = ctx->primary_url != NULL;
    snprintf(g_role.primary_url, sizeof g_role.primary_url, "%s", ctx->primary_url ? ctx->primary_url : "");
    snprintf(g_role.cluster_hex, sizeof g_role.cluster_hex, "%s", ctx->cluster_hex ? ctx->cluster_hex : "");
    g_role.primary = ctx->primary;
    g_role.arch = ctx->arch;
    g_role.exp = ctx->exp;
    g_role.lease = ctx->lease;
    pthread_mutex_unlock(&g_role_mu);
}
static volatile int g_serving;  /* /health: 1 while the mount serves, 2 once it stopped */
static struct replica *g_replica; /* a replica's client while it runs (atomic: api_set_replica) */

/* Images in data.dir/tmp that requests hold (A1). */
static struct {
    pthread_mutex_t lock;
    int64_t bytes;              /* reserved or written bytes of live images */
    int n;                      /* live images */
} g_img = {PTHREAD_MUTEX_INITIALIZER, 0, 0};

/* One live image: what image_release needs. */
struct api_image {
    char path[PATH_MAX + 32];   /* data.dir/tmp/image-XXXXXX */
    int64_t bytes;              /* its share of g_img.bytes */
};

/* (gone): delete the image unless the client renamed it, return its bytes (A3). */
static void image_release(void *arg)
{
    struct api_image *im = arg;

    if (im->path[0] && unlink(im->path) != 0 && errno != ENOENT)
        LV_WARN("image: unlink %s: %s", im->path, strerror(errno));
    pthread_mutex_lock(&g_img.lock);
    g_img.bytes -= im->bytes;
    g_img.n--;
    LV_ASSERT(g_img.bytes >= 0 && g_img.n >= 0);
    pthread_mutex_unlock(&g_img.lock);
    free(im);
}

/* Current size of database name (pages * page size), 0 if unknown. */
static int64_t db_bytes(struct dbreg *reg, const char *name)
{
    struct db_info *l = NULL;
    size_t n = 0;
    int64_t b = 0;

    if (dbreg_list(reg, &l, &n) != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(l[i].name, name) == 0)
            b = (int64_t)l[i].db_pages * l[i].page_size;
    free(l);
    return b;
}

/* Reserve want bytes of the image space in dir (A2).  0, or LV_ENOSPC with msg filled. */
static int budget_reserve(const struct api_ctx *a, const char *dir, int64_t want, char *msg, size_t msglen)
{
    struct statvfs sv;
    int64_t limit = a->image_space;
    int rc = 0;

    pthread_mutex_lock(&g_img.lock);
    if (limit == 0) {
        int64_t avail = statvfs(dir, &sv) == 0 ? (int64_t)sv.f_bavail * (int64_t)sv.f_frsize : 0;
        limit = (avail + g_img.bytes) / 2;
    }
    if (g_img.bytes + want > limit) {
        snprintf(msg, msglen,
                 "no room for a %lld-byte image: images in progress hold %lld bytes (%d) of the %lld allowed "
                 "(http.image-space%s); try again when they finish, or raise http.image-space",
                 (long long)want, (long long)g_img.bytes, g_img.n, (long long)limit,
                 a->image_space ? "" : ": half the free space of data.dir");
        rc = LV_ENOSPC;
    } else {
        g_img.bytes += want;
        g_img.n++;
    }
    pthread_mutex_unlock(&g_img.lock);
    return rc;
}

/* RESERVED: reserve want bytes for a new image (A2).  0, or LV_ENOSPC with msg filled. */
static int image_reserve(const struct api_ctx *a, const char *dir, int64_t want, struct api_image *im, char *msg,
                         size_t msglen)
{
    int rc = budget_reserve(a, dir, want, msg, msglen);

    if (rc == 0)
        im->bytes = want;
    return rc;
}

int api_image_reserve(void *arg, int64_t bytes, char *msg, size_t msglen)
{
    char dir[PATH_MAX];

    LV_UNUSED(arg);
    dbreg_tmp_dir(g_api.data_dir, dir, sizeof dir);
    return budget_reserve(&g_api, dir, bytes, msg, msglen);
}

void api_image_release(void *arg, int64_t bytes)
{
    LV_UNUSED(arg);
    pthread_mutex_lock(&g_img.lock);
    g_img.bytes -= bytes;
    g_img.n--;
    LV_ASSERT(g_img.bytes >= 0 && g_img.n >= 0);
    pthread_mutex_unlock(&g_img.lock);
}

/* WRITTEN: correct a reservation to the image's real size. */
static void image_resize(struct api_image *im, int64_t real)
{
    pthread_mutex_lock(&g_img.lock);
    g_img.bytes += real - im->bytes;
    im->bytes = real;
    pthread_mutex_unlock(&g_img.lock);
}

/* Reply status with the JSON object o (consumed). */
static int api_json(struct http_response *resp, int status, json_t *o)
{
    resp->status = status;
    resp->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return 0;
}

/* Reply {"error": msg} with status. */
static int api_error(struct http_response *resp, int status, const char *msg)
{
    return api_json(resp, status, json_pack("{s:s}", "error", msg));
}

static int h_image(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const struct api_ctx *a = ctx;
    const char *name = req->query(req, "db");
    char dir[PATH_MAX], msg[PATH_MAX + 512], idh[33], hex[17], t[40];
    struct db_image_info info;
    struct api_image *im = NULL;
    json_t *o = NULL;
    int fd, rc;

    json_t *js = name && *name ? json_string(name) : NULL; /* NULL: not UTF-8 */
    if (!js)
        return api_error(resp, 400, name && *name ? "query parameter db= is not a UTF-8 name"
                                                  : "missing query parameter db=NAME");
    json_decref(js);
    dbreg_tmp_dir(a->data_dir, dir, sizeof dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(msg, sizeof msg, "mkdir %s: %s", dir, strerror(errno));
        LV_ERROR("image: %s", msg);
        return api_error(resp, 500, msg);
    }
    im = calloc(1, sizeof *im);
    if (im == NULL)
        return api_error(resp, 500, "out of memory");
    if (image_reserve(a, dir, db_bytes(a->reg, name), im, msg, sizeof msg) != 0) {
        LV_WARN("image of %s refused: %s", name, msg);
        free(im);
        return api_error(resp, 507, msg);
    }
    snprintf(im->path, sizeof im->path, "%s/image-XXXXXX", dir);
    fd = mkstemp(im->path);
    if (fd < 0) {
        snprintf(msg, sizeof msg, "mkstemp %s: %s", im->path, strerror(errno));
        LV_ERROR("image: %s", msg);
        im->path[0] = 0;
        image_release(im);
        return api_error(resp, 500, msg);
    }
    rc = dbreg_image(a->reg, name, fd, 30000, &info, NULL, NULL);
    close(fd);
    if (rc) {
        image_release(im); /* (gone) at once */
        snprintf(msg, sizeof msg, "%s: %s%s", name, lv_strerror(rc),
                 rc == LV_ENOENT ? " (no such database, or nothing committed yet)" :
                 rc == LV_EBUSY ? " (a transaction stayed open; try again)" :
                 rc == LV_ENOSPC ? " (data.dir is full)" :
                 rc == LV_EMISMATCH ? " (the files disagree with the log; see the daemon log)" : "");
        return api_error(resp, rc == LV_ENOENT ? 404 : rc == LV_EBUSY || rc == LV_EBROKEN ? 409 :
                               rc == LV_ENOSPC ? 507 : 500, msg);
    }
    image_resize(im, (int64_t)info.db_pages * info.page_size);
    lv_hex(info.id, 16, idh);
    o = json_object();
    json_object_set_new(o, "path", json_string(im->path));
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "id", json_string(idh));
    json_object_set_new(o, "txid", json_integer((json_int_t)info.txid));
    json_object_set_new(o, "time", json_string(lv_fmt_time(info.time_us, t, sizeof t)));
    json_object_set_new(o, "time_us", json_integer(info.time_us));
    json_object_set_new(o, "page_size", json_integer(info.page_size));
    json_object_set_new(o, "pages", json_integer(info.db_pages));
    json_object_set_new(o, "checksum", json_string(cksum_hex(info.cksum, hex)));
    char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (line == NULL || asprintf(&resp->body, "%s\n", line) < 0) { /* one line: the client reads up to '\n' */
        free(line);
        resp->body = NULL;
        image_release(im);
        return api_error(resp, 500, "out of memory");
    }
    free(line);
    resp->hold_done = image_release; /* HELD: released when the client hangs up (A3) */
    resp->hold_arg = im;
    LV_INFO("%s: image at TXID %llu written to %s", name, (unsigned long long)info.txid, im->path);
    return 0;
}

/* POST /v1/image on http.addr: refused, saying where it is served. */
static int h_image_public(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const struct api_ctx *a = ctx;
    char msg[PATH_MAX + 200];

    LV_UNUSED(req);
    snprintf(msg, sizeof msg, "POST /v1/image is served only on the admin socket %s/admin.sock (the daemon's user "
                              "and root); use 'litevault export' as that user", a->data_dir);
    return api_error(resp, 403, msg);
}

/* Why this replica does not follow its primary closely enough, into
 * reason (n bytes); "" when it does.  A replica is healthy when its client
 * runs, is connected and every database is within replication.max-lag. */
static void replica_unhealthy(char *reason, size_t n)
{
    struct replica *rep = __atomic_load_n(&g_replica, __ATOMIC_ACQUIRE);

    reason[0] = 0;
    if (!rep)
        snprintf(reason, n, "the replication client has not started");
    else if (replica_health(rep, reason, n))
        reason[0] = 0;
}

static int h_health(void *ctx, const struct http_request *req, struct http_response *resp)
{
    struct api_role r;
    int sv = g_serving;
    char reason[1200];

    LV_UNUSED(req);
    role_get(&r);
    if (sv == 1 && r.replica) {
        replica_unhealthy(reason, sizeof reason);
        if (reason[0])
            return api_json(resp, 503, json_pack("{s:s,s:s,s:s}", "status", "unhealthy", "role", "replica", "reason",
                                                 reason));
    }
    if (sv == 1 && !r.replica && dbreg_stalled(((const struct api_ctx *)ctx)->reg, reason, sizeof reason) > 0)
        return api_json(resp, 200, json_pack("{s:s,s:s,s:s,s:s}", "status", "degraded", "role", "primary", "reason",
                                             "WAL commits cannot be logged, checkpoints are refused", "databases",
                                             reason));
    resp->status = sv == 1 ? 200 : 503;
    resp->body = strdup(sv == 1 ? "{\"status\":\"ok\"}" : sv == 0 ? "{\"status\":\"starting\"}" : "{\"status\":\"stopping\"}");
    return 0;
}

/* GET /primary: 200 only on the node that takes writes now (a load
 * balancer's check for where writes go). */
static int h_primary(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const struct api_ctx *a = ctx;
    struct api_role r;
    int sv = g_serving;

    LV_UNUSED(req);
    role_get(&r);
    if (sv != 1)
        return api_json(resp, 503, json_pack("{s:s,s:s}", "role", r.replica ? "replica" : "primary", "reason",
                                             sv == 0 ? "starting" : "stopping"));
    if (r.replica)
        return api_json(resp, 503, json_pack("{s:s,s:s,s:s}", "role", "replica", "primary", r.primary_url,
                                             "reason", r.primary_url[0] ? "this node is a replica; writes go to its "
                                             "primary" : "this node is a replica and no primary is elected"));
    if (dbreg_is_fenced(a->reg))
        return api_json(resp, 503, json_pack("{s:s,s:s}", "role", "primary", "reason", "the lease could not be "
                                             "renewed in time: writes are refused (fenced)"));
    return api_json(resp, 200, json_pack("{s:s}", "role", "primary"));
}

/* GET /replica: 200 only on a replica that follows its primary within
 * replication.max-lag (where reads may go). */
static int h_replica(void *ctx, const struct http_request *req, struct http_response *resp)
{
    struct api_role r;
    char reason[1200];

    LV_UNUSED(req);
    LV_UNUSED(ctx);
    role_get(&r);
    if (!r.replica)
        return api_json(resp, 503, json_pack("{s:s,s:s}", "role", "primary", "reason", "this node is the primary"));
    if (g_serving != 1)
        snprintf(reason, sizeof reason, "%s", g_serving == 0 ? "starting" : "stopping");
    else
        replica_unhealthy(reason, sizeof reason);
    if (reason[0])
        return api_json(resp, 503, json_pack("{s:s,s:s,s:s}", "role", "replica", "primary", r.primary_url,
                                             "reason", reason));
    return api_json(resp, 200, json_pack("{s:s,s:s}", "role", "replica", "primary", r.primary_url));
}

/* TXID of database name here, or -1 if this node has no such database. */
static int64_t local_txid(struct dbreg *reg, const char *name)
{
    uint64_t t = 0;
    return dbreg_txid(reg, name, &t) == 0 ? (int64_t)t : -1;
}

/* GET /v1/wait?db=NAME&txid=N[&timeout=T]: answer once this node holds
 * TXID N of NAME (committed here, or applied from the primary), so that a
 * proxy can give a client read-your-writes on a replica.  200
 * {"db","txid"} (the TXID held, >= N); after the timeout (default 5s, at
 * most 60s) 504 with the TXID held (-1: no such database yet).  At most
 * API_WAITERS_MAX wait at once (each holds a connection's thread): more
 * get 503 at once, so waits cannot take every connection from /health and
 * the replication streams.  A stopping daemon ends the waits within a
 * second. */
static int g_waiters; /* atomic: requests in h_wait */
static int wait_txid(void *ctx, const struct http_request *req, struct http_response *resp);

static int h_wait(void *ctx, const struct http_request *req, struct http_response *resp)
{
    int rc;
    if (__atomic_add_fetch(&g_waiters, 1, __ATOMIC_ACQ_REL) > API_WAITERS_MAX) {
        char msg[200];
        snprintf(msg, sizeof msg, "too many waits at once (%d); try again shortly", API_WAITERS_MAX);
        rc = api_error(resp, 503, msg);
    } else {
        rc = wait_txid(ctx, req, resp);
    }
    __atomic_sub_fetch(&g_waiters, 1, __ATOMIC_ACQ_REL);
    return rc;
}

static int wait_txid(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const struct api_ctx *a = ctx;
    const char *name = req->query(req, "db"), *ts = req->query(req, "txid"), *to = req->query(req, "timeout");
    const char *why = NULL;
    int64_t timeout_us = API_WAIT_DEFAULT_US, want, have;
    char *end = NULL, msg[400];

    if (!name || !*name)
        return api_error(resp, 400, "missing query parameter db=NAME");
    errno = 0;
    want = ts && *ts >= '0' && *ts <= '9' ? (int64_t)strtoll(ts, &end, 10) : -1;
    if (want < 0 || errno || *end)
        return api_error(resp, 400, "missing or bad query parameter txid=N (a TXID, a whole number)");
    if (to && lv_parse_duration_why(to, &timeout_us, &why) != 0) {
        snprintf(msg, sizeof msg, "bad query parameter timeout: %s (write it as 500ms, 2s, ...)",
                 why ? why : "not a duration");
        return api_error(resp, 400, msg);
    }
    if (timeout_us > API_WAIT_MAX_US)
        timeout_us = API_WAIT_MAX_US;
    int64_t deadline = lv_mono_us() + timeout_us;
    for (;;) {
        uint64_t seq = dbreg_commit_seq(a->reg); /* before the look: a commit after it wakes the wait */
        have = local_txid(a->reg, name);
        int64_t left = deadline - lv_mono_us();
        if (have >= want || left <= 0 || g_serving == 2)
            break;
        dbreg_wait_commit(a->reg, seq, left > 1000000 ? 1000 : (int)((left + 999) / 1000));
    }
    return api_json(resp, have >= want ? 200 : 504,
                    json_pack("{s:s,s:I,s:I}", "db", name, "txid", (json_int_t)have, "waited_for", (json_int_t)want));
}

void api_set_serving(int serving)
{
    g_serving = serving ? 1 : g_serving == 1 ? 2 : 0;
}

void api_set_replica(struct replica *r)
{
    __atomic_store_n(&g_replica, r, __ATOMIC_RELEASE);
}

/* Role and replication facts into the /status object o. */
static void status_role(const struct api_ctx *a, const struct api_role *role, json_t *o)
{
    struct replica *rep = __atomic_load_n(&g_replica, __ATOMIC_ACQUIRE);

    json_object_set_new(o, "node", json_string(a->node_id ? a->node_id : ""));
    if (role->lease) {
        struct lease_info li;
        lease_info(role->lease, &li);
        json_object_set_new(o, "lease", json_pack("{s:s,s:I,s:I,s:s}", "state", li.state, "term", (json_int_t)li.term,
                                                  "renew_deadline_ms", (json_int_t)li.deadline_ms, "error", li.error));
    }
    if (!role->replica) {
        char *r = primary_status_json(role->primary);
        json_object_set_new(o, "role", json_string("primary"));
        json_object_set_new(o, "fenced", json_boolean(dbreg_is_fenced(a->reg)));
        json_object_set_new(o, "cluster", json_string(role->cluster_hex));
        json_object_set_new(o, "replicas", r ? json_loads(r, 0, NULL) : json_array());
        free(r);
        return;
    }
    json_object_set_new(o, "role", json_string("replica"));
    json_object_set_new(o, "primary", json_string(role->primary_url));
    char *rs = rep ? replica_status_json(rep) : NULL;
    json_t *ro = rs ? json_loads(rs, 0, NULL) : NULL;
    free(rs);
    json_object_set_new(o, "connected", json_boolean(json_is_true(json_object_get(ro, "connected"))));
    const char *cl = json_string_value(json_object_get(ro, "cluster"));
    json_object_set_new(o, "cluster", json_string(cl ? cl : ""));
    /* Each database gets its "replication" entry. */
    json_t *per = json_object_get(ro, "databases"), *arr = json_object_get(o, "databases"), *e;
    size_t i;
    json_array_foreach(arr, i, e)
    {
        json_t *r = json_object_get(per, json_string_value(json_object_get(e, "name")));
        if (r)
            json_object_set(e, "replication", r);
    }
    if (ro) {
        json_object_del(ro, "databases");
        json_object_set(o, "replication", ro);
    }
    json_decref(ro);
}

static int h_status(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const struct api_ctx *dm = ctx;
    char *dbs = dbreg_status_json(dm->reg);
    json_t *o = json_object();
    struct api_role r;

    role_get(&r);
    json_object_set_new(o, "version", json_string(LV_VERSION));
    json_object_set_new(o, "databases", dbs ? json_loads(dbs, 0, NULL) : json_array());
    status_role(dm, &r, o);
    json_object_set_new(o, "exports", exports_status_json(r.exp));
    free(dbs);
    char *ar = archiver_status_json(r.arch);
    json_object_set_new(o, "archive", ar ? json_loads(ar, 0, NULL) : json_array());
    free(ar);
    resp->body = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    resp->content_type = "application/json";
    return 0;
}

static int h_metrics(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const struct api_ctx *dm = ctx;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    struct api_role r;

    role_get(&r);
    if (dbreg_metrics(dm->reg, &buf, &len, &cap) != 0 || archiver_metrics(r.arch, &buf, &len, &cap) != 0 ||
        exports_metrics(r.exp, &buf, &len, &cap) != 0 || primary_metrics(r.primary, &buf, &len, &cap) != 0 ||
        replica_metrics(__atomic_load_n(&g_replica, __ATOMIC_ACQUIRE), &buf, &len, &cap) != 0 ||
        metrics_render_process(&buf, &len, &cap) != 0) {
        free(buf);
        resp->status = 500;
        resp->body = strdup("{\"error\":\"out of memory\"}");
        return 0;
    }
    resp->body = buf;
    resp->body_len = len;
    resp->content_type = "text/plain; version=0.0.4";
    return 0;
}

/* POST /v1/stream: the primary's streams (replica/primary.h); a replica
 * sends the asker to its primary. */
static int h_stream(void *ctx, const struct http_request *req, struct http_response *resp)
{
    struct api_role r;
    char msg[1200];

    LV_UNUSED(ctx);
    role_get(&r);
    if (!r.replica && r.primary)
        return primary_stream(r.primary, req, resp);
    if (!r.replica)
        snprintf(msg, sizeof msg, "this node is starting as the primary; try again shortly");
    else if (r.primary_url[0])
        snprintf(msg, sizeof msg, "this node is a replica of %s: replicas stream from the primary", r.primary_url);
    else
        snprintf(msg, sizeof msg, "this node is a replica and no primary is elected yet; try again shortly");
    return api_error(resp, 503, msg);
}

#define API_LOG_MAX (8u << 20)          /* record bytes per GET /v1/log answer (then ask again) */
#define API_LOG_RECORD_MAX (48u << 20)  /* a larger record is not sent (the asker takes 64 MiB at most) */

/* GET /v1/log?db=NAME&after=T: the records of this node's own log after
 * TXID T, back to back exactly as stored (FORMAT.md, "Record"), about
 * API_LOG_MAX bytes at most (ask again from the last one): how a node being
 * promoted takes what a more advanced replica holds (src/replica/peer_catchup.c).
 * Any role.  200 (possibly empty: nothing after T; with T = 0 the log may
 * start with a snapshot record), 400, 404 (no such database), 410 (the log
 * no longer holds TXID T+1), 413 (the next record is over
 * API_LOG_RECORD_MAX), 500. */
static int h_log(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const struct api_ctx *a = ctx;
    const char *name = req->query(req, "db"), *ts = req->query(req, "after");
    struct db_info *dbs = NULL;
    struct txlog_reader *rd = NULL;
    struct txlog_hdr h;
    struct http_sink out = {0}; /* the records, back to back */
    char *end = NULL, msg[700];
    size_t n = 0, i;
    uint64_t after;
    int st = 200, rc;

    errno = 0;
    after = ts && *ts >= '0' && *ts <= '9' ? strtoull(ts, &end, 10) : UINT64_MAX;
    if (!name || !*name || after == UINT64_MAX || errno || *end)
        return api_error(resp, 400, "expected query parameters db=NAME and after=TXID (a whole number)");
    if (dbreg_list(a->reg, &dbs, &n) != 0)
        return api_error(resp, 500, "out of memory");
    for (i = 0; i < n && strcmp(dbs[i].name, name) != 0; i++)
        ;
    if (i == n) {
        st = 404;
        snprintf(msg, sizeof msg, "no database %.500s on this node", name);
        goto out;
    }
    if (dbs[i].txid <= after)
        goto out; /* nothing after T */
    rc = txlog_reader_open(dbs[i].logdir, after + 1, &rd);
    while (rc == 0 && out.len < API_LOG_MAX && (rc = txlog_reader_next(rd, &h)) == 0) {
        void *raw = NULL;
        size_t rl = 0;
        if (out.len == 0 && h.txid != after + 1 && !(after == 0 && (h.flags & TXLOG_F_SNAPSHOT))) {
            st = 410; /* (from nothing, a log that starts with a snapshot record will do) */
            snprintf(msg, sizeof msg, "the log of %.500s no longer holds TXID %" PRIu64 " (it starts at %" PRIu64 ")",
                     name, after + 1, h.txid);
            goto out;
        }
        if (h.stored_len > API_LOG_RECORD_MAX) {
            if (out.len > 0)
                break; /* what came before goes; the next ask meets it first */
            st = 413;
            snprintf(msg, sizeof msg, "%.500s: TXID %" PRIu64 " holds %" PRIu64 " bytes, more than one answer carries",
                     name, h.txid, h.stored_len);
            goto out;
        }
        if ((rc = txlog_reader_raw(rd, &raw, &rl)) != 0)
            break;
        if (http_sink_write(raw, 1, rl, &out) != rl)
            rc = LV_ENOMEM;
        free(raw);
    }
    if (rc != 0 && (rc != LV_ENOENT || !rd) && out.len == 0) {
        st = rc == LV_ENOENT ? 410 : 500;
        snprintf(msg, sizeof msg, "cannot read the log of %.500s after TXID %" PRIu64 ": %s", name, after,
                 rd ? txlog_reader_error(rd) : lv_strerror(rc));
    }
out:
    txlog_reader_close(rd);
    free(dbs);
    if (st != 200) {
        free(out.buf);
        return api_error(resp, st, msg);
    }
    resp->content_type = "application/x-litevault-records";
    resp->body = out.buf ? out.buf : strdup("");
    resp->body_len = out.len;
    return 0;
}

/* POST /v1/ack: a replica tells the primary what it holds (synchronous replication). */
static int h_ack(void *ctx, const struct http_request *req, struct http_response *resp)
{
    struct api_role r;
    char msg[256] = "";
    int rc;

    LV_UNUSED(ctx);
    role_get(&r);
    if (r.replica || !r.primary)
        return api_error(resp, 503, "this node is not the primary");
    rc = primary_ack(r.primary, req->body ? req->body : "", req->body_len, msg, sizeof msg);
    if (rc)
        return api_error(resp, rc == LV_EINVAL ? 400 : 404, msg);
    resp->body = strdup("{}");
    return 0;
}

/* POST /v1/promote [{"node": ID}]: a graceful hand-over (api_ctx.promote). */
static int h_promote(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const struct api_ctx *a = ctx;
    json_t *o = req->body_len ? json_loadb(req->body, req->body_len, 0, NULL) : NULL;
    const char *node = json_string_value(json_object_get(o, "node"));
    char msg[1200] = "";
    int st;

    if ((req->body_len && !json_is_object(o)) ||
        (node && *node && (strlen(node) != 32 || strspn(node, "0123456789abcdef") != 32))) {
        json_decref(o);
        return api_error(resp, 400, "expected no body, or {\"node\": NODE-ID} (32 lower-case hex digits)");
    }
    if (!a->promote)
        st = 503, snprintf(msg, sizeof msg, "this daemon cannot hand over yet");
    else
        st = a->promote(a->promote_arg, node ? node : "", msg, sizeof msg);
    json_decref(o);
    if (st != 200)
        return api_error(resp, st, msg);
    return api_json(resp, 200, json_pack("{s:s}", "result", msg));
}

int api_register(struct http_server *s, const struct api_ctx *ctx, int admin)
{
    g_api = *ctx;
    api_set_role(ctx);
    if (http_route(s, "GET", "/status", h_status, &g_api) != 0 ||
        http_route(s, "GET", "/metrics", h_metrics, &g_api) != 0 ||
        http_route(s, "GET", "/health", h_health, &g_api) != 0 ||
        http_route(s, "GET", "/primary", h_primary, &g_api) != 0 ||
        http_route(s, "GET", "/replica", h_replica, &g_api) != 0 ||
        http_route(s, "GET", "/v1/wait", h_wait, &g_api) != 0 ||
        http_route_ex(s, "POST", "/v1/image", admin ? h_image : h_image_public, &g_api, HTTP_R_PRIVATE) != 0 ||
        (!admin && http_route_ex(s, "POST", "/v1/stream", h_stream, &g_api, HTTP_R_PRIVATE) != 0) ||
        (!admin && http_route_ex(s, "POST", "/v1/ack", h_ack, &g_api, HTTP_R_PRIVATE) != 0) ||
        (!admin && http_route_ex(s, "GET", "/v1/log", h_log, &g_api, HTTP_R_PRIVATE) != 0) ||
        http_route_ex(s, "POST", "/v1/promote", h_promote, &g_api, HTTP_R_PRIVATE) != 0)
        return LV_ENOMEM;
    return 0;
}
