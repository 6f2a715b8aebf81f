/*
 * store_s3.c -- the s3:// store: any S3-compatible service through
 * libcurl (SigV4 signing by CURLOPT_AWS_SIGV4) and libxml2 (responses).
 *
 * Addressing.  A store is s3://BUCKET/PREFIX; key K is the object
 * PREFIX/K.  The request URL is
 *     path style:     SCHEME://HOST[:PORT][BASE]/BUCKET/PREFIX/K
 *     virtual-hosted: SCHEME://BUCKET.HOST[:PORT][BASE]/PREFIX/K
 * with every byte outside [A-Za-z0-9-._~/] percent-encoded (uppercase
 * hex), which is also the canonical URI of SigV4 for S3.  Path style is
 * the default when an endpoint is given (MinIO, s3rver, Ceph...), virtual
 * hosting for AWS itself (endpoint s3.REGION.amazonaws.com).  https is
 * the default; http is accepted only for a loopback endpoint.
 *
 * Signing.  Every request carries
 *     x-amz-content-sha256: UNSIGNED-PAYLOAD
 * S3 rejects a SigV4 request without that header, and libcurl 7.88
 * (Debian 12) does not add it: it signs with the SHA-256 of the body but
 * sends no header.  When the header is present libcurl signs with its
 * value instead, so the two agree.  s3rver does not verify V4 signatures;
 * tests/unit_store.c (store_sigv4) checks every kind of request against an
 * independent SigV4 implementation.
 * Query strings are emitted already canonical (parameters sorted, values
 * encoded, "uploads=" rather than "uploads"), because libcurl 7.88 signs
 * the query as given.  A session token goes in x-amz-security-token
 * (signed, as all x-amz-* headers).
 *
 * Credentials.  Held in struct s3_config, handed to libcurl with
 * CURLOPT_USERNAME/CURLOPT_PASSWORD, registered with store_add_secret()
 * so that any message mentioning them is redacted.  CURLOPT_VERBOSE is
 * never set (its output would include the Authorization header).
 *
 * Connections.  A pool of CURL easy handles (pool[], pool_lock); a call
 * takes one per request attempt and gives it back, and curl_easy_reset()
 * keeps each handle's live connections, so consecutive requests reuse
 * TCP/TLS connections.  At most S3_POOL_MAX idle handles are kept.
 *
 * One request (s3_do) = attempts until success, a permanent failure or
 * max_retries retries:
 *     2xx (206 for ranges)                  -> success
 *     404 NoSuchKey / 404 on HEAD           -> LV_ENOENT, no log
 *     404 NoSuchBucket                      -> LV_ECONFIG   (permanent)
 *     401/403                               -> LV_EPERM     (permanent)
 *     400, 411, 416, other 4xx              -> LV_EINVAL / LV_ENET (permanent)
 *     400 RequestTimeout, 408, 429, 5xx     -> retry
 *     curl: connect/timeout/send/recv/partial/reset/DNS -> retry
 *     curl: malformed URL, TLS peer verification...     -> permanent
 * Permanent failures are reported at once through store_fail():
 *     "s3://bucket/prefix: PUT key: AccessDenied: Access Denied"
 * A retry logs one LV_WARN line and sleeps store_backoff().
 *
 * Large objects.  put of more than multipart_threshold bytes:
 *     CreateMultipartUpload (POST ?uploads=) -> UploadId
 *     UploadPart x N in `parallel` threads (PUT ?partNumber=I&uploadId=U) -> ETags
 *     CompleteMultipartUpload (POST ?uploadId=U, XML list of parts)
 *     on any failure: AbortMultipartUpload (DELETE ?uploadId=U)
 * Parts are part_size bytes (>= 5 MiB, grown to keep <= 10000 parts).
 * get of more than part_size bytes: ranged GETs of part_size bytes in
 * `parallel` threads, written in place into one buffer.  For a read to
 * the end the size and ETag come from a HEAD first; every range then
 * carries If-Match: ETAG, and the ETags of all responses must agree, so a
 * concurrent overwrite cannot produce a mix of two versions (the read
 * restarts, at most S3_GET_TRIES times).
 */
#include "store/store.h"
#include "store/store_impl.h"

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/worker.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S3_MIB (1024ull * 1024)
#define S3_DEF_THRESHOLD (16 * S3_MIB)
#define S3_DEF_PART (8 * S3_MIB)
#define S3_MIN_PART (5 * S3_MIB)
#define S3_MAX_PARTS 10000
#define S3_DEF_PARALLEL 4
#define S3_MAX_PARALLEL 64
#define S3_DEF_LIST_PAGE 1000
#define S3_POOL_MAX 16
#define S3_GET_TRIES 3
#define S3_ETAG_MAX 130

/* Backend state. */
struct s3_store {
    struct s3_config cfg;      /* parsed destination (immutable after open) */
    char sigv4[96];            /* "aws:amz:REGION:s3" for CURLOPT_AWS_SIGV4 (immutable) */
    pthread_mutex_t pool_lock; /* guards pool[] and npool */
    CURL *pool[S3_POOL_MAX];   /* idle easy handles, their connections kept alive */
    int npool;                 /* handles in pool[] */
};

static pthread_once_t s3_once = PTHREAD_ONCE_INIT;
static int s3_global_rc; /* result of curl_global_init (written once under s3_once) */

static void s3_global_init(void)
{
    s3_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : LV_ENET;
    xmlInitParser();
}

/* ------------------------------------------------------------------ */
/* Configuration                                                        */
/* ------------------------------------------------------------------ */

int store_host_is_loopback(const char *host)
{
    char buf[64];
    size_t n;
    struct in_addr a4;
    struct in6_addr a6;

    if (!host)
        return 0;
    n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, host, n);
    buf[n] = '\0';
    if (strcasecmp(buf, "localhost") == 0 || strcasecmp(buf, "localhost.") == 0)
        return 1;
    if (inet_pton(AF_INET, buf, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, buf, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) ||
               (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return 0;
}

/* Options collected from the struct and the query, before resolution. */
struct s3_raw {
    char *endpoint, *region;     /* owned copies or NULL */
    int path_style;              /* -1 default */
    uint64_t threshold, part;    /* 0 default */
    int parallel, list_page;     /* 0 default */
    int max_retries;             /* -1: keep the store's */
    const char *url;             /* for messages (borrowed) */
};

static int set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = strdup(v);
    return *dst ? 0 : LV_ENOMEM;
}

static int parse_int_opt(const char *url, const char *name, const char *v, int lo, int hi, int *out, char *err,
                         size_t errlen)
{
    char *end;
    long n = strtol(v, &end, 10);

    if (!*v || *end || n < lo || n > hi) {
        snprintf(err, errlen, "%s: %s must be an integer in [%d, %d], got \"%.40s\"", url, name, lo, hi, v);
        return LV_ECONFIG;
    }
    *out = (int)n;
    return 0;
}

/* One URL query parameter (store_query_each callback). */
static int s3_query_param(const char *name, const char *v, void *arg, char *err, size_t errlen)
{
    struct s3_raw *raw = arg;
    int b;

    if (strcmp(name, "endpoint") == 0)
        return set_str(&raw->endpoint, v);
    if (strcmp(name, "region") == 0)
        return set_str(&raw->region, v);
    if (strcmp(name, "force-path-style") == 0 || strcmp(name, "force_path_style") == 0) {
        if ((b = store_parse_bool(v)) < 0) {
            snprintf(err, errlen, "%s: force-path-style must be true or false, got \"%.40s\"", raw->url, v);
            return LV_ECONFIG;
        }
        raw->path_style = b;
        return 0;
    }
    if (strcmp(name, "multipart-threshold") == 0 || strcmp(name, "part-size") == 0) {
        uint64_t n;
        if (store_parse_size(v, &n) < 0 || n == 0) {
            snprintf(err, errlen, "%s: %s must be a size such as 16MiB, got \"%.40s\"", raw->url, name, v);
            return LV_ECONFIG;
        }
        *(name[0] == 'm' ? &raw->threshold : &raw->part) = n;
        return 0;
    }
    if (strcmp(name, "parallel") == 0)
        return parse_int_opt(raw->url, name, v, 1, S3_MAX_PARALLEL, &raw->parallel, err, errlen);
    if (strcmp(name, "max-retries") == 0)
        return parse_int_opt(raw->url, name, v, 0, 100, &raw->max_retries, err, errlen);
    if (strcmp(name, "access-key") == 0 || strcmp(name, "secret-key") == 0 || strcmp(name, "session-token") == 0 ||
        strcmp(name, "access_key") == 0 || strcmp(name, "secret_key") == 0 || strcmp(name, "session_token") == 0) {
        snprintf(err, errlen,
                 "%s: credentials are not accepted in the URL (parameter \"%s\"); use the configuration or "
                 "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN",
                 raw->url, name);
        return LV_ECONFIG;
    }
    snprintf(err, errlen,
             "%s: unknown query parameter \"%.64s\" (known: endpoint, region, force-path-style, "
             "multipart-threshold, part-size, parallel, max-retries)",
             raw->url, name);
    return LV_ECONFIG;
}

/* Split the endpoint into cfg->scheme/host/port/base_path, enforcing https
 * for non-loopback hosts.  display is the URL for messages. */
static int parse_endpoint(const char *display, const char *endpoint, struct s3_config *cfg, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *full = NULL, *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *user = NULL, *query = NULL;
    int rc = LV_ECONFIG;

    if (!u)
        return LV_ENOMEM;
    if (asprintf(&full, "%s%s", strstr(endpoint, "://") ? "" : "https://", endpoint) < 0) {
        full = NULL;
        rc = LV_ENOMEM;
        goto out;
    }
    if (curl_url_set(u, CURLUPART_URL, full, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        snprintf(err, errlen, "%s: endpoint \"%.200s\" is not a valid URL", display, endpoint);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK && user) {
        snprintf(err, errlen, "%s: the endpoint must not contain user information (credentials)", display);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK && query) {
        snprintf(err, errlen, "%s: the endpoint must not have a query string", display);
        goto out;
    }
    if (strcasecmp(scheme, "https") != 0 && strcasecmp(scheme, "http") != 0) {
        snprintf(err, errlen, "%s: endpoint scheme \"%.20s\" unsupported (use https)", display, scheme);
        goto out;
    }
    if (strcasecmp(scheme, "http") == 0 && !store_host_is_loopback(host)) {
        snprintf(err, errlen,
                 "%s: plain http endpoint %.200s refused: http is allowed only for a loopback endpoint "
                 "(127.0.0.0/8, ::1, localhost); use https",
                 display, endpoint);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
        port = NULL;
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        path = NULL;
    {
        size_t pl = path ? strlen(path) : 0;
        while (pl > 0 && path[pl - 1] == '/')
            path[--pl] = '\0';
        for (char *c = scheme; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        cfg->scheme = strdup(scheme);
        cfg->host = strdup(host);
        if (port) {
            if (asprintf(&cfg->port, ":%s", port) < 0)
                cfg->port = NULL;
        } else {
            cfg->port = strdup("");
        }
        cfg->base_path = strdup(path ? path : "");
    }
    rc = (cfg->scheme && cfg->host && cfg->port && cfg->base_path) ? 0 : LV_ENOMEM;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(user);
    curl_free(query);
    free(full);
    curl_url_cleanup(u);
    return rc;
}

/* 1 if host is an IPv4 literal or a bracketed IPv6 literal. */
static int host_is_ip(const char *host)
{
    struct in_addr a4;

    return host[0] == '[' || inet_pton(AF_INET, host, &a4) == 1;
}

static int bucket_name_ok(const char *b)
{
    size_t n = strlen(b);

    if (n < 3 || n > 63)
        return 0;
    for (const char *p = b; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
            return 0;
    return isalnum((unsigned char)b[0]) && isalnum((unsigned char)b[n - 1]);
}

static int header_safe(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || *v == 0x7f)
            return 0;
    return 1;
}

/* Bucket and prefix of url into cfg (the prefix decoded, without a leading
 * '/', stored with one trailing '/'), *display the URL for messages
 * (malloc'ed) and *query the "?..." part or NULL.  0 or negative. */
static int s3_parse_location(const char *url, struct s3_config *cfg, char **display, const char **query, char *err,
                             size_t errlen)
{
    const char *p = url + 5, *q = strchr(p, '?'), *slash = strchr(p, '/');
    char *prefix = NULL;
    int rc = LV_ECONFIG;

    *display = NULL;
    *query = q;
    if (slash && q && slash > q)
        slash = NULL;
    cfg->bucket = strndup(p, slash ? (size_t)(slash - p) : q ? (size_t)(q - p) : strlen(p));
    if (!cfg->bucket)
        return LV_ENOMEM;
    if (!bucket_name_ok(cfg->bucket)) {
        snprintf(err, errlen, "%.200s: invalid bucket name \"%.80s\" (3-63 of a-z 0-9 . - _)", url, cfg->bucket);
        return LV_ECONFIG;
    }
    if (slash) {
        prefix = store_url_decode(slash + 1, q ? (size_t)(q - slash - 1) : strlen(slash + 1));
        if (!prefix) {
            snprintf(err, errlen, "%.200s: bad %%-escape in the prefix", url);
            return LV_ECONFIG;
        }
        while (*prefix && prefix[strlen(prefix) - 1] == '/')
            prefix[strlen(prefix) - 1] = '\0';
    }
    if (prefix && *prefix && !store_key_valid(prefix)) {
        snprintf(err, errlen, "%.200s: invalid prefix \"%.200s\"", url, prefix);
        goto out;
    }
    if (prefix && *prefix) {
        if (asprintf(&cfg->prefix, "%s/", prefix) < 0)
            cfg->prefix = NULL;
        if (asprintf(display, "s3://%s/%s", cfg->bucket, prefix) < 0)
            *display = NULL;
    } else {
        cfg->prefix = strdup("");
        if (asprintf(display, "s3://%s", cfg->bucket) < 0)
            *display = NULL;
    }
    rc = cfg->prefix && *display ? 0 : LV_ENOMEM;
out:
    free(prefix);
    return rc;
}

/* Region, endpoint and addressing style from raw into cfg.  0 or negative. */
static int s3_parse_endpoint_opts(const char *display, const struct s3_raw *raw, struct s3_config *cfg, char *err,
                                  size_t errlen)
{
    char *aws = NULL;
    int rc;

    if (set_str(&cfg->region, raw->region && *raw->region ? raw->region : "us-east-1") < 0)
        return LV_ENOMEM;
    for (const char *c = cfg->region; *c; c++) {
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_') {
            snprintf(err, errlen, "%s: invalid region \"%.40s\"", display, cfg->region);
            return LV_ECONFIG;
        }
    }
    if (raw->endpoint && *raw->endpoint) {
        if ((rc = parse_endpoint(display, raw->endpoint, cfg, err, errlen)) < 0)
            return rc;
        cfg->path_style = raw->path_style < 0 ? 1 : raw->path_style;
        if (!cfg->path_style && host_is_ip(cfg->host)) {
            /* BUCKET.127.0.0.1 cannot resolve: an IP endpoint means path style. */
            LV_DEBUG("%s: endpoint is an IP address: using path-style addressing", display);
            cfg->path_style = 1;
        }
    } else {
        if (asprintf(&aws, "https://s3.%s.amazonaws.com", cfg->region) < 0)
            return LV_ENOMEM;
        rc = parse_endpoint(display, aws, cfg, err, errlen);
        free(aws);
        if (rc < 0)
            return rc;
        cfg->path_style = raw->path_style < 0 ? 0 : raw->path_style;
    }
    if (!cfg->path_style && strchr(cfg->bucket, '_')) {
        snprintf(err, errlen, "%s: bucket name with '_' needs force-path-style=true", display);
        return LV_ECONFIG;
    }
    return 0;
}

/* Part sizes, parallelism and list page size from raw into cfg.  0 or LV_ECONFIG. */
static int s3_parse_sizes(const char *display, const struct s3_raw *raw, struct s3_config *cfg, char *err,
                          size_t errlen)
{
    cfg->multipart_threshold = raw->threshold ? raw->threshold : S3_DEF_THRESHOLD;
    cfg->part_size = raw->part ? raw->part : S3_DEF_PART;
    if (cfg->part_size < S3_MIN_PART) {
        snprintf(err, errlen, "%s: part size %llu is below the S3 minimum of 5 MiB", display,
                 (unsigned long long)cfg->part_size);
        return LV_ECONFIG;
    }
    cfg->parallel = raw->parallel ? raw->parallel : S3_DEF_PARALLEL;
    if (cfg->parallel > S3_MAX_PARALLEL)
        cfg->parallel = S3_MAX_PARALLEL;
    cfg->list_page = raw->list_page ? raw->list_page : S3_DEF_LIST_PAGE;
    if (cfg->list_page > 1000)
        cfg->list_page = 1000;
    cfg->max_retries = raw->max_retries;
    return 0;
}

/* Credentials: the options, else the environment (never both halves mixed).  0 or negative. */
static int s3_parse_credentials(const char *display, const struct store_opts *o, struct s3_config *cfg, char *err,
                                size_t errlen)
{
    const char *ak, *sk, *tok;

    if (o->access_key || o->secret_key) {
        ak = o->access_key;
        sk = o->secret_key;
        tok = o->session_token;
    } else {
        ak = getenv("AWS_ACCESS_KEY_ID");
        sk = getenv("AWS_SECRET_ACCESS_KEY");
        tok = o->session_token ? o->session_token : getenv("AWS_SESSION_TOKEN");
    }
    if (!ak || !*ak || !sk || !*sk) {
        snprintf(err, errlen,
                 "%s: no credentials: set access-key-id and secret-access-key in the configuration, or "
                 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                 display);
        return LV_ECONFIG;
    }
    if (!header_safe(ak) || !header_safe(sk) || (tok && !header_safe(tok))) {
        snprintf(err, errlen, "%s: credentials contain control characters", display);
        return LV_ECONFIG;
    }
    cfg->access_key = strdup(ak);
    cfg->secret_key = strdup(sk);
    cfg->session_token = tok && *tok ? strdup(tok) : NULL;
    if (!cfg->access_key || !cfg->secret_key || (tok && *tok && !cfg->session_token))
        return LV_ENOMEM;
    return 0;
}

int store_s3_parse(const char *url, const struct store_opts *o, struct s3_config *cfg, char *err, size_t errlen)
{
    static const struct store_opts none;
    struct s3_raw raw = {.path_style = -1, .max_retries = -1, .url = url};
    const char *q = NULL;
    char *display = NULL;
    int rc;

    memset(cfg, 0, sizeof *cfg);
    if (!o)
        o = &none;
    if (strncmp(url, "s3://", 5) != 0) {
        snprintf(err, errlen, "%.200s: not an s3:// URL", url);
        return LV_ECONFIG;
    }
    rc = s3_parse_location(url, cfg, &display, &q, err, errlen);
    if (rc < 0)
        goto out;
    raw.url = display;
    /* Options: the struct first, then the query overrides. */
    if ((o->endpoint && set_str(&raw.endpoint, o->endpoint) < 0) || (o->region && set_str(&raw.region, o->region) < 0)) {
        rc = LV_ENOMEM;
        goto out;
    }
    raw.path_style = o->force_path_style;
    raw.threshold = o->multipart_threshold;
    raw.part = o->part_size;
    raw.parallel = o->parallel;
    raw.list_page = o->list_page_size;
    if (q && (rc = store_query_each(q + 1, s3_query_param, &raw, err, errlen)) < 0)
        goto out;
    if ((rc = s3_parse_endpoint_opts(display, &raw, cfg, err, errlen)) < 0 ||
        (rc = s3_parse_sizes(display, &raw, cfg, err, errlen)) < 0 ||
        (rc = s3_parse_credentials(display, o, cfg, err, errlen)) < 0)
        goto out;
    rc = 0;
out:
    if (rc < 0)
        store_s3_config_free(cfg);
    free(raw.endpoint);
    free(raw.region);
    free(display);
    return rc;
}

void store_s3_config_free(struct s3_config *cfg)
{
    free(cfg->bucket);
    free(cfg->prefix);
    free(cfg->scheme);
    free(cfg->host);
    free(cfg->port);
    free(cfg->base_path);
    free(cfg->region);
    if (cfg->access_key)
        explicit_bzero(cfg->access_key, strlen(cfg->access_key));
    if (cfg->secret_key)
        explicit_bzero(cfg->secret_key, strlen(cfg->secret_key));
    if (cfg->session_token)
        explicit_bzero(cfg->session_token, strlen(cfg->session_token));
    free(cfg->access_key);
    free(cfg->secret_key);
    free(cfg->session_token);
    memset(cfg, 0, sizeof *cfg);
}

/* Append s percent-encoded (keep '/' if keep_slash) to the string *dst
 * (malloc'ed, grown); 0 or LV_ENOMEM. */
static int enc_append(char **dst, size_t *len, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *d = realloc(*dst, *len + 3 * n + 1);

    if (!d)
        return LV_ENOMEM;
    *dst = d;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' || (keep_slash && *p == '/')) {
            d[(*len)++] = (char)*p;
        } else {
            d[(*len)++] = '%';
            d[(*len)++] = hex[*p >> 4];
            d[(*len)++] = hex[*p & 15];
        }
    }
    d[*len] = '\0';
    return 0;
}

/* Percent-encode s fully (for query values); malloc'ed or NULL. */
static char *enc_dup(const char *s)
{
    char *d = NULL;
    size_t len = 0;

    return enc_append(&d, &len, s, 0) < 0 ? NULL : d;
}

char *store_s3_object_url(const struct s3_config *cfg, const char *key, const char *query)
{
    char *u = NULL, *full = NULL;
    size_t len;
    int n;

    if (cfg->path_style)
        n = asprintf(&u, "%s://%s%s%s/%s%s", cfg->scheme, cfg->host, cfg->port, cfg->base_path, cfg->bucket,
                     key ? "/" : "");
    else
        n = asprintf(&u, "%s://%s.%s%s%s/", cfg->scheme, cfg->bucket, cfg->host, cfg->port, cfg->base_path);
    if (n < 0)
        return NULL;
    len = (size_t)n;
    if (key) {
        if (asprintf(&full, "%s%s", cfg->prefix, key) < 0 || enc_append(&u, &len, full, 1) < 0)
            goto fail;
        free(full);
        full = NULL;
    }
    if (query && *query) {
        char *w = realloc(u, len + strlen(query) + 2);
        if (!w)
            goto fail;
        u = w;
        u[len++] = '?';
        strcpy(u + len, query);
    }
    return u;
fail:
    free(full);
    free(u);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Requests                                                             */
/* ------------------------------------------------------------------ */

/* Growing byte buffer. */
struct s3_buf {
    char *p;    /* bytes (malloc'ed), NUL-terminated when non-NULL */
    size_t n;   /* used */
    size_t cap; /* allocated */
};

/* One logical request and its response (filled by s3_do). */
struct s3_req {
    /* Request (borrowed). */
    struct store *store;   /* set by s3_do */
    const char *method;    /* GET PUT POST DELETE HEAD */
    const char *op;        /* name in messages: "PUT", "LIST"... */
    const char *key;       /* object key relative to the store prefix; NULL: the bucket */
    const char *what;      /* subject in messages when key is NULL (LIST: the prefix) */
    const char *query;     /* canonical query string, or NULL */
    const uint8_t *body;   /* upload payload (PUT/POST) */
    size_t body_len;       /* bytes of body */
    const char *ctype;     /* Content-Type of the body, or NULL */
    char range[64];        /* "bytes=A-B", or "" */
    const char *if_match;  /* ETag to require, or NULL */
    uint8_t *dst;          /* if set, the response body goes here (at most dst_cap bytes) */
    size_t dst_cap;
    int ok_416;            /* 416 is an answer (range beyond the end), not an error */
    int ok_412;            /* 412 is an answer (If-Match failed) */
    int body_error_check;  /* a 200 whose body is <Error> is an error (CompleteMultipartUpload) */
    int quiet_no_bucket;   /* a missing bucket is an answer (store_probe): LV_ENOENT, not logged */
    /* Response. */
    long status;           /* HTTP status of the last attempt */
    struct s3_buf resp;    /* response body when dst is NULL */
    size_t dst_n;          /* bytes written into dst */
    int overflow;          /* body larger than dst_cap */
    char etag[S3_ETAG_MAX]; /* ETag header (with quotes), "" if none */
    int64_t mtime_us;      /* Last-Modified, 0 if none */
    long hdr_status;       /* status of the response being received (from its status line) */
    uint64_t clen;         /* Content-Length of the response (-1 if none) */
    int has_clen;
    int attempts;          /* attempts made */
    size_t up_pos;         /* upload read position of the current attempt */
};

static struct s3_store *s3_of(struct store *s) { return s->impl; }

static CURL *pool_take(struct s3_store *b)
{
    CURL *h = NULL;

    pthread_mutex_lock(&b->pool_lock);
    if (b->npool > 0)
        h = b->pool[--b->npool];
    pthread_mutex_unlock(&b->pool_lock);
    if (h)
        curl_easy_reset(h); /* keeps live connections and caches */
    else
        h = curl_easy_init();
    return h;
}

static void pool_give(struct s3_store *b, CURL *h, int broken)
{
    if (!h)
        return;
    pthread_mutex_lock(&b->pool_lock);
    if (!broken && b->npool < S3_POOL_MAX) {
        b->pool[b->npool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&b->pool_lock);
    if (h)
        curl_easy_cleanup(h);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct s3_req *r = arg;
    size_t n = size * nmemb;

    if (r->dst && r->hdr_status >= 200 && r->hdr_status < 300) { /* error bodies go to resp */
        if (r->dst_n + n > r->dst_cap) {
            r->overflow = 1;
            return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
        }
        memcpy(r->dst + r->dst_n, data, n);
        r->dst_n += n;
        return n;
    }
    if (r->resp.n + n + 1 > r->resp.cap) {
        size_t cap = r->resp.cap ? r->resp.cap : 4096;
        char *p;
        while (cap < r->resp.n + n + 1)
            cap *= 2;
        p = realloc(r->resp.p, cap);
        if (!p)
            return 0;
        r->resp.p = p;
        r->resp.cap = cap;
    }
    memcpy(r->resp.p + r->resp.n, data, n);
    r->resp.n += n;
    r->resp.p[r->resp.n] = '\0';
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct s3_req *r = arg;
    size_t n = size * nmemb;

    if (n > 9 && strncmp(data, "HTTP/", 5) == 0) {
        const char *sp = memchr(data, ' ', n);
        if (sp && sp + 4 <= data + n)
            r->hdr_status = strtol(sp + 1, NULL, 10);
    } else if (n > 5 && strncasecmp(data, "ETag:", 5) == 0) {
        const char *v = data + 5;
        size_t vl = n - 5;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            vl--;
        if (vl < sizeof r->etag) {
            memcpy(r->etag, v, vl);
            r->etag[vl] = '\0';
        }
    }
    return n;
}

static size_t on_upload(char *buf, size_t size, size_t nmemb, void *arg)
{
    struct s3_req *r = arg;
    size_t n = size * nmemb, left = r->body_len - r->up_pos;

    if (n > left)
        n = left;
    memcpy(buf, r->body + r->up_pos, n);
    r->up_pos += n;
    return n;
}

static int on_seek(void *arg, curl_off_t off, int origin)
{
    struct s3_req *r = arg;

    if (origin != SEEK_SET || off < 0 || (uint64_t)off > r->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    r->up_pos = (size_t)off;
    return CURL_SEEKFUNC_OK;
}

/* Find the first child element of n named name (local name, any namespace). */
static xmlNode *xml_child(xmlNode *n, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, name) == 0)
            return c;
    return NULL;
}

/* Text of child name of n, malloc'ed (NULL if absent or OOM). */
static char *xml_child_text(xmlNode *n, const char *name)
{
    xmlNode *c = xml_child(n, name);
    xmlChar *t;
    char *s;

    if (!c)
        return NULL;
    t = xmlNodeGetContent(c);
    if (!t)
        return NULL;
    s = strdup((const char *)t);
    xmlFree(t);
    return s;
}

static xmlDoc *xml_parse(const char *p, size_t n)
{
    if (!p || n == 0 || n > INT32_MAX)
        return NULL;
    return xmlReadMemory(p, (int)n, "s3.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

/* Parse an S3 <Error> body into code/msg (truncated, "" if absent). */
static void parse_error_body(const struct s3_req *r, char *code, size_t codelen, char *msg, size_t msglen)
{
    xmlDoc *doc;
    xmlNode *root;

    code[0] = msg[0] = '\0';
    if (!r->resp.p)
        return;
    doc = xml_parse(r->resp.p, r->resp.n);
    if (!doc)
        return;
    root = xmlDocGetRootElement(doc);
    if (root && strcmp((const char *)root->name, "Error") == 0) {
        char *c = xml_child_text(root, "Code"), *m = xml_child_text(root, "Message");
        snprintf(code, codelen, "%s", c ? c : "");
        snprintf(msg, msglen, "%s", m ? m : "");
        free(c);
        free(m);
    }
    xmlFreeDoc(doc);
}

static int curl_transient(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_READ_ERROR:
    case CURLE_BAD_CONTENT_ENCODING:
        return 1;
    default:
        return 0;
    }
}

/* Message key of a request: "key" or the query for bucket requests. */
static const char *req_what(const struct s3_req *r)
{
    return r->key ? r->key : r->what ? r->what : "";
}

/* Clear what a previous attempt of r left in its response fields. */
static void s3_req_reset(struct s3_req *r)
{
    r->status = 0;
    r->hdr_status = 0;
    r->resp.n = 0;
    if (r->resp.p)
        r->resp.p[0] = '\0';
    r->dst_n = 0;
    r->overflow = 0;
    r->etag[0] = '\0';
    r->mtime_us = 0;
    r->has_clen = 0;
    r->up_pos = 0;
}

/* Append "NAME: VALUE" to *hdrs; 0, or -1 when out of memory (the list stays valid). */
static int s3_header(struct curl_slist **hdrs, const char *name, const char *value)
{
    char line[512];
    struct curl_slist *t;

    snprintf(line, sizeof line, "%s: %s", name, value);
    t = curl_slist_append(*hdrs, line);
    if (!t)
        return -1;
    *hdrs = t;
    return 0;
}

/* The request headers of r (the session token is wiped from our copy once
 * libcurl has its own).  The list into *out (caller frees with
 * curl_slist_free_all); CURLE_OK or CURLE_OUT_OF_MEMORY. */
static CURLcode s3_headers(const struct s3_store *b, const struct s3_req *r, struct curl_slist **out)
{
    struct curl_slist *hdrs = NULL, *t;
    int bad = 0;

    bad |= s3_header(&hdrs, "x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    t = bad ? NULL : curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
    if (t)
        hdrs = t;
    else
        bad = 1;
    if (!bad && b->cfg.session_token) {
        char *tok = NULL;
        if (asprintf(&tok, "x-amz-security-token: %s", b->cfg.session_token) < 0) {
            bad = 1;
        } else {
            t = curl_slist_append(hdrs, tok); /* copies; the copy is freed (not wiped) with the list */
            explicit_bzero(tok, strlen(tok));
            free(tok);
            if (t)
                hdrs = t;
            else
                bad = 1;
        }
    }
    if (!bad && r->range[0])
        bad |= s3_header(&hdrs, "Range", r->range);
    if (!bad && r->if_match && *r->if_match)
        bad |= s3_header(&hdrs, "If-Match", r->if_match);
    if (!bad && r->body)
        bad |= s3_header(&hdrs, "Content-Type", r->ctype ? r->ctype : "application/octet-stream");
    if (bad) {
        curl_slist_free_all(hdrs);
        return CURLE_OUT_OF_MEMORY;
    }
    *out = hdrs;
    return CURLE_OK;
}

/* Set every option of handle h for r at url, with headers hdrs (borrowed until the perform). */
static void s3_setopts(const struct s3_store *b, struct s3_req *r, CURL *h, const char *url, struct curl_slist *hdrs)
{
    curl_easy_setopt(h, CURLOPT_VERBOSE, 0L); /* never: it would print the Authorization header */
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, b->sigv4);
    curl_easy_setopt(h, CURLOPT_USERNAME, b->cfg.access_key);
    curl_easy_setopt(h, CURLOPT_PASSWORD, b->cfg.secret_key);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L); /* < 1 KiB/s ... */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);    /* ... for 30 s: a stalled connection */
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_FILETIME, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "litevault/" LV_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_upload);
        curl_easy_setopt(h, CURLOPT_READDATA, r);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
    } else if (strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body ? (const char *)r->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    }
}

/* After a perform: status, connections made, modification time and length into r. */
static void s3_collect(struct s3_req *r, CURL *h)
{
    curl_off_t ft = -1, cl = -1;
    long nconn = 0;

    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK && nconn > 0)
        __atomic_add_fetch(&r->store->n_connects, (uint64_t)nconn, __ATOMIC_RELAXED);
    if (curl_easy_getinfo(h, CURLINFO_FILETIME_T, &ft) == CURLE_OK && ft >= 0)
        r->mtime_us = (int64_t)ft * 1000000;
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK && cl >= 0) {
        r->clen = (uint64_t)cl;
        r->has_clen = 1;
    }
}

/* One attempt.  Returns the CURLcode; r->status is set on a response. */
static CURLcode s3_attempt(struct s3_store *b, struct s3_req *r, CURL *h, const char *url)
{
    struct curl_slist *hdrs = NULL;
    CURLcode cc;

    s3_req_reset(r);
    cc = s3_headers(b, r, &hdrs);
    if (cc != CURLE_OK)
        return cc;
    s3_setopts(b, r, h, url, hdrs);
    cc = curl_easy_perform(h);
    s3_collect(r, h);
    /* Forget the credentials and headers on this handle before it idles in the pool. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_USERNAME, NULL);
    curl_easy_setopt(h, CURLOPT_PASSWORD, NULL);
    curl_slist_free_all(hdrs);
    return cc;
}

/* Result classes of one attempt. */
enum s3_class { S3_OK, S3_RETRY, S3_FAIL };

/* Run r with retries; 0, LV_ENOENT (missing object/upload, not logged) or
 * a negative LV_E* after store_fail(). */
/* One attempt of r, counted in the store's request and in-flight gauges. */
static CURLcode s3_counted_attempt(struct store *s, struct s3_store *b, struct s3_req *r, CURL *h, const char *url)
{
    int now = __atomic_add_fetch(&s->n_inflight, 1, __ATOMIC_RELAXED);
    int max = __atomic_load_n(&s->max_inflight, __ATOMIC_RELAXED);
    CURLcode cc;

    while (now > max &&
           !__atomic_compare_exchange_n(&s->max_inflight, &max, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    __atomic_add_fetch(&s->n_requests, 1, __ATOMIC_RELAXED);
    cc = s3_attempt(b, r, h, url);
    __atomic_sub_fetch(&s->n_inflight, 1, __ATOMIC_RELAXED);
    return cc;
}

/* The class of an HTTP answer with status st (S3 error code in code, message
 * in msg), its reason into reason and the error it maps to into *rc. */
static enum s3_class s3_classify_status(const struct s3_req *r, long st, const char *code, const char *msg,
                                        char *reason, size_t rn, int *rc)
{
    if (code[0])
        snprintf(reason, rn, "%s: %s", code, msg[0] ? msg : "(no message)");
    else
        snprintf(reason, rn, "HTTP %ld", st);
    if (st >= 500 || st == 429 || st == 408 || (st == 400 && strcmp(code, "RequestTimeout") == 0)) {
        *rc = LV_ENET;
        return S3_RETRY;
    }
    if (st == 404 && strcmp(code, "NoSuchBucket") == 0)
        *rc = r->quiet_no_bucket ? LV_ENOENT : LV_ECONFIG;
    else if (st == 404)
        *rc = LV_ENOENT; /* NoSuchKey, NoSuchUpload, or a HEAD without body */
    else if (st == 401 || st == 403)
        *rc = LV_EPERM;
    else if (st == 400 || st == 411 || st == 416)
        *rc = LV_EINVAL;
    else
        *rc = LV_ENET;
    return S3_FAIL;
}

/* The class of one attempt that ended with cc: its reason into reason (size
 * rn), the S3 error code into code (size 128) and the error it maps to into *rc. */
static enum s3_class s3_classify(struct s3_req *r, CURLcode cc, char *reason, size_t rn, char *code, int *rc)
{
    char msg[400] = "";
    long st = r->status;

    code[0] = '\0';
    if (cc == CURLE_WRITE_ERROR && r->overflow) {
        snprintf(reason, rn, "response larger than expected (server ignored Range?)");
        *rc = LV_ENET;
        return S3_FAIL;
    }
    if (cc != CURLE_OK) {
        snprintf(reason, rn, "%s", curl_easy_strerror(cc));
        *rc = cc == CURLE_OUT_OF_MEMORY ? LV_ENOMEM : LV_ENET;
        return curl_transient(cc) ? S3_RETRY : S3_FAIL;
    }
    if (!((st >= 200 && st < 300) || (st == 416 && r->ok_416) || (st == 412 && r->ok_412))) {
        parse_error_body(r, code, 128, msg, sizeof msg);
        return s3_classify_status(r, st, code, msg, reason, rn, rc);
    }
    if (st == 200 && r->body_error_check) {
        parse_error_body(r, code, 128, msg, sizeof msg);
        if (code[0]) { /* CompleteMultipartUpload failed after the 200 */
            snprintf(reason, rn, "%s: %s", code, msg);
            *rc = LV_ENET;
            return strcmp(code, "InternalError") == 0 || strcmp(code, "SlowDown") == 0 ? S3_RETRY : S3_FAIL;
        }
    }
    return S3_OK;
}

static int s3_do(struct store *s, struct s3_req *r)
{
    struct s3_store *b = s3_of(s);
    char *url = store_s3_object_url(&b->cfg, r->key, r->query);
    char reason[600], code[128];
    int rc = 0;

    if (!url) {
        store_fail(s, "%s: %s %s: out of memory", s->url, r->op, req_what(r));
        return LV_ENOMEM;
    }
    r->store = s;
    for (r->attempts = 1;; r->attempts++) {
        CURL *h = pool_take(b);
        CURLcode cc;
        enum s3_class cls;

        if (!h) {
            rc = LV_ENOMEM;
            store_fail(s, "%s: %s %s: cannot create a curl handle", s->url, r->op, req_what(r));
            break;
        }
        cc = s3_counted_attempt(s, b, r, h, url);
        pool_give(b, h, cc != CURLE_OK);
        cls = s3_classify(r, cc, reason, sizeof reason, code, &rc);
        if (cls == S3_OK) {
            rc = 0;
            break;
        }
        if (cls == S3_FAIL) {
            if (rc == LV_ENOENT && (strcmp(code, "NoSuchBucket") != 0 || r->quiet_no_bucket)) {
                store_set_error(s, "%s: %s %s: %s", s->url, r->op, req_what(r), reason);
                LV_DEBUG("%s", store_last_error(s));
            } else {
                store_fail(s, "%s: %s %s: %s", s->url, r->op, req_what(r), reason);
            }
            break;
        }
        if (r->attempts > s->max_retries) {
            store_fail(s, "%s: %s %s: giving up after %d attempts: %s", s->url, r->op, req_what(r), r->attempts,
                       reason);
            rc = LV_ENET;
            break;
        }
        char warn[STORE_ERR_MAX];
        snprintf(warn, sizeof warn, "%s: %s %s: %s; retry %d of %d", s->url, r->op, req_what(r), reason,
                 r->attempts, s->max_retries);
        store_redact(s, warn, sizeof warn);
        LV_WARN("%s", warn);
        store_backoff(s, r->attempts);
    }
    free(url);
    return rc;
}

static void req_free(struct s3_req *r)
{
    free(r->resp.p);
    r->resp.p = NULL;
}

/* ------------------------------------------------------------------ */
/* Parallel jobs                                                        */
/* ------------------------------------------------------------------ */

/* A set of n independent jobs run by up to `parallel` threads. */
struct s3_jobs {
    struct store *s;                              /* the store */
    int (*fn)(struct s3_jobs *j, size_t i);       /* runs job i; 0 or negative */
    void *arg;                                    /* job-specific context */
    size_t n;                                     /* number of jobs */
    atomic_size_t next;                           /* next job to claim */
    atomic_int rc;                                /* first failure, 0 if none */
};

/* Claim and run jobs until none is left or one failed. */
static void jobs_work(struct s3_jobs *j)
{
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        int rc;
        if (i >= j->n || atomic_load(&j->rc) != 0)
            break;
        rc = j->fn(j, i);
        if (rc < 0) {
            int zero = 0;
            atomic_compare_exchange_strong(&j->rc, &zero, rc);
        }
    }
}

/* A helper thread of jobs_run (a one-shot worker.h worker). */
static void jobs_worker(struct worker *w, void *arg)
{
    LV_UNUSED(w);
    jobs_work(arg);
}

/* Run all jobs; the caller's thread works too.  Returns the first failure. */
static int jobs_run(struct s3_jobs *j)
{
    struct worker *th[S3_MAX_PARALLEL];
    int nth = s3_of(j->s)->cfg.parallel - 1, started = 0;

    atomic_init(&j->next, 0);
    atomic_init(&j->rc, 0);
    if ((size_t)nth > j->n - 1)
        nth = (int)(j->n - 1);
    for (int i = 0; i < nth; i++)
        if (worker_start("lv-s3-job", jobs_worker, j, &th[started]) == 0)
            started++; /* a thread that cannot start is logged; the others do its share */
    jobs_work(j);
    for (int i = 0; i < started; i++)
        worker_stop(th[i]); /* joins: the job loop has returned or is about to */
    return atomic_load(&j->rc);
}

/* ------------------------------------------------------------------ */
/* Operations                                                           */
/* ------------------------------------------------------------------ */

/* State of one multipart upload. */
struct s3_mpu {
    const char *key;      /* object key */
    const uint8_t *data;  /* whole object */
    size_t len;           /* bytes */
    size_t part;          /* bytes per part (last may be shorter) */
    char *upload_id_enc;  /* UploadId, percent-encoded (owned) */
    char **etags;         /* ETag of each part (owned strings) */
};

static int mpu_part(struct s3_jobs *j, size_t i)
{
    struct s3_mpu *m = j->arg;
    struct s3_req r = {.method = "PUT", .op = "PUT(part)", .key = m->key};
    char query[512];
    size_t off = i * m->part;
    int rc;

    snprintf(query, sizeof query, "partNumber=%zu&uploadId=%s", i + 1, m->upload_id_enc);
    r.query = query;
    r.body = m->data + off;
    r.body_len = m->len - off < m->part ? m->len - off : m->part;
    rc = s3_do(j->s, &r);
    if (rc == 0) {
        if (!r.etag[0]) {
            store_fail(j->s, "%s: PUT %s: part %zu: no ETag in the response", j->s->url, m->key, i + 1);
            rc = LV_ENET;
        } else if (!(m->etags[i] = strdup(r.etag))) {
            rc = LV_ENOMEM;
        }
    } else if (rc == LV_ENOENT) {
        store_fail(j->s, "%s: PUT %s: part %zu: upload vanished (NoSuchUpload)", j->s->url, m->key, i + 1);
        rc = LV_ENET;
    }
    req_free(&r);
    return rc;
}

/* CreateMultipartUpload of key: the upload ID into *upload_id (malloc'ed,
 * caller frees).  0 or negative (store_fail called). */
static int mpu_create(struct store *s, const char *key, char **upload_id)
{
    struct s3_req r = {.method = "POST", .op = "PUT(create multipart)", .key = key, .query = "uploads="};
    xmlDoc *doc;
    int rc;

    *upload_id = NULL;
    rc = s3_do(s, &r);
    if (rc < 0)
        goto out;
    doc = xml_parse(r.resp.p, r.resp.n);
    if (doc) {
        *upload_id = xml_child_text(xmlDocGetRootElement(doc), "UploadId");
        xmlFreeDoc(doc);
    }
    if (!*upload_id || !**upload_id) {
        store_fail(s, "%s: PUT %s: CreateMultipartUpload returned no UploadId", s->url, key);
        rc = LV_ENET;
    }
out:
    req_free(&r);
    return rc;
}

/* The CompleteMultipartUpload body for the nparts ETags of m: *xml
 * (malloc'ed, caller frees) of *xlen bytes.  0 or LV_ENOMEM. */
static int mpu_complete_body(const struct s3_mpu *m, size_t nparts, char **xml, size_t *xlen)
{
    FILE *f = open_memstream(xml, xlen);

    if (!f)
        return LV_ENOMEM;
    fputs("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">", f);
    for (size_t i = 0; i < nparts; i++)
        fprintf(f, "<Part><PartNumber>%zu</PartNumber><ETag>%s</ETag></Part>", i + 1, m->etags[i]);
    fputs("</CompleteMultipartUpload>", f);
    return fclose(f) == 0 ? 0 : LV_ENOMEM;
}

/* CompleteMultipartUpload of the len bytes uploaded as m's nparts parts.
 * 0 or negative (store_fail called). */
static int mpu_complete(struct store *s, const struct s3_mpu *m, size_t nparts, size_t len)
{
    struct s3_req r = {.method = "POST", .op = "PUT(complete multipart)", .key = m->key,
                       .ctype = "application/xml", .body_error_check = 1};
    char *xml = NULL, *query = NULL;
    size_t xlen = 0;
    int rc;

    rc = mpu_complete_body(m, nparts, &xml, &xlen);
    if (rc < 0)
        goto out;
    if (asprintf(&query, "uploadId=%s", m->upload_id_enc) < 0) {
        query = NULL;
        rc = LV_ENOMEM;
        goto out;
    }
    r.query = query;
    r.body = (const uint8_t *)xml;
    r.body_len = xlen;
    rc = s3_do(s, &r);
    if (rc == LV_ENOENT && r.attempts > 1) {
        /* A retried Complete whose first try succeeded finds no upload:
         * accept if the object now has the expected size. */
        struct s3_req h = {.method = "HEAD", .op = "HEAD", .key = m->key};
        if (s3_do(s, &h) == 0 && h.has_clen && h.clen == len)
            rc = 0;
        req_free(&h);
    }
    if (rc == LV_ENOENT) {
        store_fail(s, "%s: PUT %s: CompleteMultipartUpload: NoSuchUpload", s->url, m->key);
        rc = LV_ENET;
    }
out:
    req_free(&r);
    free(query);
    free(xml);
    return rc;
}

/* AbortMultipartUpload of m, keeping the store's last error (the cause, not the abort). */
static void mpu_abort(struct store *s, const struct s3_mpu *m)
{
    struct s3_req a = {.method = "DELETE", .op = "PUT(abort multipart)", .key = m->key};
    char keep[STORE_ERR_MAX], *aq = NULL;

    if (asprintf(&aq, "uploadId=%s", m->upload_id_enc) < 0)
        return;
    snprintf(keep, sizeof keep, "%s", store_last_error(s));
    a.query = aq;
    if (s3_do(s, &a) < 0)
        LV_WARN("%s: PUT %s: could not abort multipart upload (it may linger until a lifecycle rule "
                "removes it)", s->url, m->key);
    store_set_error(s, "%s", keep);
    free(aq);
    req_free(&a);
}

static int s3_put_multipart(struct store *s, const char *key, const void *data, size_t len)
{
    struct s3_store *b = s3_of(s);
    struct s3_mpu m = {.key = key, .data = data, .len = len};
    struct s3_jobs j = {.s = s, .fn = mpu_part, .arg = &m};
    char *upload_id = NULL;
    size_t nparts;
    int rc;

    m.part = b->cfg.part_size;
    if ((len + m.part - 1) / m.part > S3_MAX_PARTS)
        m.part = (len + S3_MAX_PARTS - 1) / S3_MAX_PARTS;
    nparts = (len + m.part - 1) / m.part;

    rc = mpu_create(s, key, &upload_id);
    if (rc < 0)
        goto out;
    m.upload_id_enc = enc_dup(upload_id);
    m.etags = calloc(nparts, sizeof *m.etags);
    if (!m.upload_id_enc || !m.etags) {
        rc = LV_ENOMEM;
        goto out_abort;
    }
    LV_DEBUG("%s: PUT %s: multipart upload of %zu bytes in %zu parts", s->url, key, len, nparts);
    j.n = nparts;
    if ((rc = jobs_run(&j)) < 0)
        goto out_abort;
    rc = mpu_complete(s, &m, nparts, len);
    if (rc == 0)
        goto out;
out_abort:
    if (m.upload_id_enc)
        mpu_abort(s, &m);
out:
    if (m.etags)
        for (size_t i = 0; i < nparts; i++)
            free(m.etags[i]);
    free(m.etags);
    free(m.upload_id_enc);
    free(upload_id);
    return rc;
}

static int s3_put(struct store *s, const char *key, const void *data, size_t len)
{
    struct s3_req r = {.method = "PUT", .op = "PUT", .key = key, .body = data, .body_len = len};
    int rc;

    if (len > s3_of(s)->cfg.multipart_threshold)
        return s3_put_multipart(s, key, data, len);
    if (!data)
        r.body = (const uint8_t *)"";
    rc = s3_do(s, &r);
    if (rc == LV_ENOENT) { /* a 404 on PUT: the bucket (or path) does not exist */
        store_fail(s, "%s: PUT %s: %s", s->url, key, "HTTP 404");
        rc = LV_ECONFIG;
    }
    req_free(&r);
    return rc;
}

static int s3_head(struct store *s, const char *key, struct store_obj *info)
{
    struct s3_req r = {.method = "HEAD", .op = "HEAD", .key = key};
    int rc = s3_do(s, &r);

    if (rc == 0) {
        info->size = r.has_clen ? r.clen : 0;
        info->mtime_us = r.mtime_us;
    }
    req_free(&r);
    return rc;
}

/* A ranged read split into chunks of part_size. */
struct s3_rget {
    const char *key;     /* object key */
    uint64_t off;        /* first byte wanted */
    uint64_t n;          /* bytes wanted (buffer size) */
    uint64_t part;       /* chunk size */
    uint8_t *buf;        /* destination, n bytes */
    const char *etag;    /* If-Match, or NULL */
    size_t *got;         /* bytes received per chunk */
    int *status;         /* HTTP status per chunk */
    char (*etags)[S3_ETAG_MAX]; /* ETag per chunk */
};

static int rget_chunk(struct s3_jobs *j, size_t i)
{
    struct s3_rget *g = j->arg;
    uint64_t coff = (uint64_t)i * g->part, clen = g->n - coff < g->part ? g->n - coff : g->part;
    struct s3_req r = {.method = "GET", .op = "GET", .key = g->key, .if_match = g->etag, .ok_416 = 1, .ok_412 = 1};
    int rc;

    r.dst = g->buf + coff;
    r.dst_cap = (size_t)clen;
    snprintf(r.range, sizeof r.range, "bytes=%llu-%llu", (unsigned long long)(g->off + coff),
             (unsigned long long)(g->off + coff + clen - 1));
    rc = s3_do(j->s, &r);
    if (rc == 0) {
        g->got[i] = r.status == 416 || r.status == 412 ? 0 : r.dst_n;
        g->status[i] = (int)r.status;
        snprintf(g->etags[i], S3_ETAG_MAX, "%s", r.etag);
        if (r.status == 200 && (coff > 0 || g->off > 0)) {
            store_fail(j->s, "%s: GET %s: server ignored the Range header", j->s->url, g->key);
            rc = LV_ENET;
        }
    }
    req_free(&r);
    return rc;
}

/* The size to read to the end of key from off, and its version: one HEAD.
 * g->n and g->etag (pointing into etag) set.  0 or negative. */
static int rget_head(struct store *s, const char *key, uint64_t off, struct s3_rget *g, char etag[S3_ETAG_MAX])
{
    struct s3_req h = {.method = "HEAD", .op = "GET(head)", .key = key};
    int rc = s3_do(s, &h);

    snprintf(etag, S3_ETAG_MAX, "%s", h.etag);
    req_free(&h);
    if (rc < 0)
        return rc;
    if (off > 0 && off >= h.clen) {
        store_set_error(s, "%s: GET %s: range starts at %llu, beyond the object's %llu bytes", s->url, key,
                        (unsigned long long)off, (unsigned long long)h.clen);
        return LV_EINVAL;
    }
    g->n = h.clen - off;
    g->etag = etag[0] ? etag : NULL;
    return 0;
}

/* A whole small object in one plain GET (no Range) into g->buf; *changed
 * when it is not the version the HEAD saw.  0 or negative. */
static int rget_whole(struct store *s, const char *key, struct s3_rget *g, const char *etag, int *changed)
{
    struct s3_req r = {.method = "GET", .op = "GET", .key = key, .if_match = g->etag, .ok_412 = 1};
    int rc;

    r.dst = g->buf;
    r.dst_cap = (size_t)g->n;
    rc = s3_do(s, &r);
    if (rc == LV_ENET && r.overflow)
        *changed = 1; /* it grew since the HEAD */
    else if (rc == 0 && (r.status == 412 || r.dst_n != g->n || (etag[0] && strcmp(r.etag, etag) != 0)))
        *changed = 1;
    req_free(&r);
    return rc < 0 && !*changed ? rc : 0;
}

/* Ranged GETs of nch chunks in parallel into g->buf; *total the bytes up
 * to where the object ends, *changed when the chunks disagree on the
 * version or the end (or, exact, the size is not the HEAD's).  0 or negative. */
static int rget_ranged(struct store *s, const char *key, uint64_t off, int exact, struct s3_rget *g, size_t nch,
                       uint64_t *total, int *changed)
{
    struct s3_jobs j = {.s = s, .fn = rget_chunk, .arg = g, .n = nch};
    int rc = LV_ENOMEM, ended = 0;

    g->got = calloc(nch, sizeof *g->got);
    g->status = calloc(nch, sizeof *g->status);
    g->etags = calloc(nch, sizeof *g->etags);
    if (g->got && g->status && g->etags)
        rc = jobs_run(&j);
    for (size_t i = 0; rc == 0 && i < nch && !*changed; i++) {
        /* Chunks must agree on the version and end at one point. */
        uint64_t want = g->n - (uint64_t)i * g->part < g->part ? g->n - (uint64_t)i * g->part : g->part;
        if (g->status[i] == 412 || (g->etags[i][0] && g->etags[0][0] && strcmp(g->etags[i], g->etags[0])))
            *changed = 1;
        else if (ended && g->got[i] > 0)
            *changed = 1;
        else if (!ended)
            *total += g->got[i];
        if (g->got[i] < want)
            ended = 1;
    }
    if (rc == 0 && !*changed && g->status[0] == 416 && off > 0) {
        store_set_error(s, "%s: GET %s: range starts at %llu, beyond the end of the object", s->url, key,
                        (unsigned long long)off);
        rc = LV_EINVAL;
    }
    if (rc == 0 && exact && *total != g->n)
        *changed = 1;
    free(g->got);
    free(g->status);
    free(g->etags);
    g->got = NULL;
    g->status = NULL;
    g->etags = NULL;
    return rc;
}

/* GET len bytes of key from off (len 0: to the end), in parallel ranged
 * chunks above the part size; read again, up to S3_GET_TRIES times, when
 * the object changes meanwhile. */
static int s3_get(struct store *s, const char *key, uint64_t off, uint64_t len, void **out, size_t *outlen)
{
    struct s3_store *b = s3_of(s);
    int rc = 0;

    for (int tries = 0; tries < S3_GET_TRIES; tries++) {
        struct s3_rget g = {.key = key, .off = off, .part = b->cfg.part_size, .n = len};
        char etag[S3_ETAG_MAX] = "";
        int exact = len == 0, changed = 0;
        uint64_t total = 0;
        size_t nch;

        if (exact && (rc = rget_head(s, key, off, &g, etag)) < 0)
            return rc;
        if (g.n > SIZE_MAX - 1)
            return LV_ENOMEM;
        g.buf = malloc(g.n ? (size_t)g.n : 1);
        if (!g.buf)
            return LV_ENOMEM;
        if (g.n == 0) {
            *out = g.buf;
            *outlen = 0;
            return 0;
        }
        nch = (size_t)((g.n + g.part - 1) / g.part);
        if (exact && off == 0 && nch == 1) {
            rc = rget_whole(s, key, &g, etag, &changed);
            total = g.n;
        } else {
            rc = rget_ranged(s, key, off, exact, &g, nch, &total, &changed);
        }
        if (rc < 0) {
            free(g.buf);
            return rc;
        }
        if (changed) {
            free(g.buf);
            LV_INFO("%s: GET %s: object changed while being read; reading again", s->url, key);
            continue;
        }
        if (total < g.n) {
            void *p = realloc(g.buf, total ? (size_t)total : 1);
            if (p)
                g.buf = p;
        }
        *out = g.buf;
        *outlen = (size_t)total;
        return 0;
    }
    store_fail(s, "%s: GET %s: object kept changing while being read (%d tries)", s->url, key, S3_GET_TRIES);
    return LV_EIO;
}

static int s3_del(struct store *s, const char *key)
{
    struct s3_req r = {.method = "DELETE", .op = "DELETE", .key = key};
    int rc = s3_do(s, &r);

    req_free(&r);
    return rc == LV_ENOENT ? 0 : rc;
}

/* Append the <Contents> of one ListObjectsV2 page to out; sets *next to
 * the continuation token (malloc'ed) when the listing is truncated. */
static int list_parse(struct store *s, const char *body, size_t n, struct store_list *out, size_t *cap, char **next)
{
    struct s3_store *b = s3_of(s);
    size_t plen = strlen(b->cfg.prefix);
    xmlDoc *doc = xml_parse(body, n);
    xmlNode *root;
    char *trunc;
    int rc = 0;

    *next = NULL;
    if (!doc || !(root = xmlDocGetRootElement(doc)) || strcmp((const char *)root->name, "ListBucketResult") != 0) {
        if (doc)
            xmlFreeDoc(doc);
        store_fail(s, "%s: LIST: unparsable ListObjectsV2 response", s->url);
        return LV_ENET;
    }
    for (xmlNode *c = root->children; c && rc == 0; c = c->next) {
        char *k, *sz, *lm;
        if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "Contents") != 0)
            continue;
        k = xml_child_text(c, "Key");
        sz = xml_child_text(c, "Size");
        lm = xml_child_text(c, "LastModified");
        if (k && strncmp(k, b->cfg.prefix, plen) == 0 && k[plen]) {
            rc = lv_grow((void **)&out->v, cap, out->n, sizeof *out->v, 256);
            if (rc == 0) {
                struct store_obj *o = &out->v[out->n];
                int64_t t = 0;
                o->key = strdup(k + plen);
                o->size = sz ? strtoull(sz, NULL, 10) : 0;
                o->mtime_us = lm && lv_parse_time(lm, &t) == 0 ? t : 0;
                if (o->key)
                    out->n++;
                else
                    rc = LV_ENOMEM;
            }
        }
        free(k);
        free(sz);
        free(lm);
    }
    trunc = xml_child_text(root, "IsTruncated");
    if (rc == 0 && trunc && strcmp(trunc, "true") == 0) {
        *next = xml_child_text(root, "NextContinuationToken");
        if (!*next || !**next) {
            free(*next);
            *next = NULL;
            store_fail(s, "%s: LIST: truncated listing without NextContinuationToken", s->url);
            rc = LV_ENET;
        }
    }
    free(trunc);
    xmlFreeDoc(doc);
    return rc;
}

static int s3_list(struct store *s, const char *prefix, struct store_list *out)
{
    struct s3_store *b = s3_of(s);
    char *full = NULL, *enc_prefix = NULL, *token = NULL;
    size_t cap = 0;
    int rc = 0;

    const char *what = *prefix ? prefix : "(all)";

    if (asprintf(&full, "%s%s", b->cfg.prefix, prefix) < 0 || !(enc_prefix = enc_dup(full))) {
        free(full);
        return LV_ENOMEM;
    }
    do {
        struct s3_req r = {.method = "GET", .op = "LIST", .key = NULL, .what = what};
        char *enc_tok = token ? enc_dup(token) : NULL, *query = NULL, *next = NULL;

        if ((token && !enc_tok) ||
            asprintf(&query, "%s%s%slist-type=2&max-keys=%d&prefix=%s", token ? "continuation-token=" : "",
                     token ? enc_tok : "", token ? "&" : "", b->cfg.list_page, enc_prefix) < 0) {
            free(enc_tok);
            rc = LV_ENOMEM;
            break;
        }
        r.query = query;
        rc = s3_do(s, &r);
        if (rc == LV_ENOENT) { /* a 404 on the bucket without a code */
            store_fail(s, "%s: LIST %s: HTTP 404", s->url, what);
            rc = LV_ECONFIG;
        }
        if (rc == 0)
            rc = list_parse(s, r.resp.p, r.resp.n, out, &cap, &next);
        if (rc == 0 && next && token && strcmp(next, token) == 0) {
            store_fail(s, "%s: LIST %s: the server repeated a continuation token", s->url, what);
            rc = LV_ENET;
        }
        req_free(&r);
        free(query);
        free(enc_tok);
        free(token);
        token = next;
    } while (rc == 0 && token);
    free(token);
    free(enc_prefix);
    free(full);
    return rc;
}

/* store_probe: one LIST of at most one key under the prefix. */
static int s3_probe(struct store *s, int *empty)
{
    struct s3_store *b = s3_of(s);
    struct store_list l = {0};
    size_t cap = 0;
    char *enc = enc_dup(b->cfg.prefix), *query = NULL, *next = NULL;
    struct s3_req r = {.method = "GET", .op = "LIST", .key = NULL, .what = "(probe)", .quiet_no_bucket = 1};
    int rc;

    if (!enc || asprintf(&query, "list-type=2&max-keys=1&prefix=%s", enc) < 0) {
        free(enc);
        return LV_ENOMEM;
    }
    r.query = query;
    rc = s3_do(s, &r);
    if (rc == LV_ENOENT)
        store_set_error(s, "%s: bucket '%s' does not exist (NoSuchBucket at %s://%s%s)", s->url, b->cfg.bucket,
                        b->cfg.scheme, b->cfg.host, b->cfg.port);
    if (rc == 0)
        rc = list_parse(s, r.resp.p, r.resp.n, &l, &cap, &next);
    if (rc == 0)
        *empty = l.n == 0;
    store_list_free(&l);
    free(next);
    req_free(&r);
    free(query);
    free(enc);
    return rc;
}

static int s3_open(struct store *s, const char *url, const struct store_opts *opts, char *err, size_t errlen)
{
    struct s3_store *b;
    int rc;

    pthread_once(&s3_once, s3_global_init);
    if (s3_global_rc < 0) {
        snprintf(err, errlen, "curl_global_init failed");
        return s3_global_rc;
    }
    b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return LV_ENOMEM;
    }
    rc = store_s3_parse(url, opts, &b->cfg, err, errlen);
    if (rc < 0) {
        free(b);
        return rc;
    }
    if (b->cfg.max_retries >= 0) /* max-retries from the query */
        s->max_retries = b->cfg.max_retries;
    if (store_add_secret(s, b->cfg.access_key) < 0 || store_add_secret(s, b->cfg.secret_key) < 0 ||
        store_add_secret(s, b->cfg.session_token) < 0 ||
        (b->cfg.prefix[0] ? asprintf(&s->url, "s3://%s/%.*s", b->cfg.bucket, (int)strlen(b->cfg.prefix) - 1,
                                     b->cfg.prefix)
                          : asprintf(&s->url, "s3://%s", b->cfg.bucket)) < 0) {
        s->url = NULL;
        store_s3_config_free(&b->cfg);
        free(b);
        snprintf(err, errlen, "out of memory");
        return LV_ENOMEM;
    }
    snprintf(b->sigv4, sizeof b->sigv4, "aws:amz:%s:s3", b->cfg.region);
    pthread_mutex_init(&b->pool_lock, NULL);
    s->impl = b;
    LV_DEBUG("%s: endpoint %s://%s%s%s, region %s, %s addressing", s->url, b->cfg.scheme, b->cfg.host, b->cfg.port,
             b->cfg.base_path, b->cfg.region, b->cfg.path_style ? "path-style" : "virtual-hosted");
    return 0;
}

static void s3_close(struct store *s)
{
    struct s3_store *b = s3_of(s);

    for (int i = 0; i < b->npool; i++)
        curl_easy_cleanup(b->pool[i]);
    pthread_mutex_destroy(&b->pool_lock);
    store_s3_config_free(&b->cfg);
    free(b);
    s->impl = NULL;
}

const struct store_backend store_s3_backend = {
    .scheme = "s3",
    .open = s3_open,
    .close = s3_close,
    .put = s3_put,
    .get = s3_get,
    .head = s3_head,
    .list = s3_list,
    .del = s3_del,
    .probe = s3_probe,
};
