/*
 * store.c -- the generic half of the object stores: URL dispatch, argument
 * checks, request counters, the last-error machinery and the retry
 * backoff shared by the backends (store_impl.h describes the split).
 *
 * Dispatch.  store_open() picks the backend by the URL scheme:
 *     file://PATH (absolute, or relative to the current directory)
 *       or a bare absolute PATH             -> store_file_backend
 *     s3://BUCKET[/PREFIX][?opt=v&...]        -> store_s3_backend
 * and lets it parse the rest.  Every other call checks its arguments
 * (keys through store_key_valid()), calls the backend, then counts:
 * one request of its type per call, payload bytes of successful calls,
 * and one error per failed call other than LV_ENOENT (a missing object is
 * an answer, not a failure).  Retries are counted by store_backoff().
 *
 * Last error.  A failing backend calls store_fail()/store_set_error().
 * The message, with every registered secret replaced by "***", goes to
 *   - the calling thread's slot tl_err (tagged with the store's id), and
 *   - the store's own err[] (under err_lock), the newest of any thread.
 * store_last_error() returns this thread's message when the thread's last
 * call was on this store ("" if that call succeeded: a success clears the
 * thread's slot, so an error of some later non-store step is never
 * reported with an older, unrelated store message), else a thread-local
 * copy of the store's newest message.  Either way the pointer stays valid until this thread's
 * next call into this module.
 *
 * Backoff.  Retry n (1-based) waits d = min(retry_max, retry_base * 2^(n-1))
 * scaled by a random factor in [0.5, 1] ("equal jitter": never zero, and
 * clients that failed together spread out).
 */
#include "store/store.h"
#include "store/store_impl.h"

#include "base/lv.h"
#include "base/lvlog.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define STORE_DEF_RETRIES 5
#define STORE_DEF_BASE_MS 200
#define STORE_DEF_MAX_MS 5000
#define STORE_KEY_MAX 1024

/* Source of store ids (never reused within a process). */
static atomic_uint_fast64_t store_next_id = 1;

/* This thread's last failure: which store, and the message. */
static __thread uint64_t tl_err_id;
static __thread char tl_err[STORE_ERR_MAX];

/* ---- small parsers shared by the backends ---- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

char *store_url_decode(const char *src, size_t n)
{
    char *out = malloc(n + 1), *o = out;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '%') {
            int h, l;
            if (i + 2 >= n) {
                free(out);
                return NULL;
            }
            h = hexval((unsigned char)src[i + 1]);
            l = hexval((unsigned char)src[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                free(out);
                return NULL;
            }
            c = (char)(h << 4 | l);
            i += 2;
        } else if (c == '+') {
            c = ' '; /* form encoding, as produced by most URL builders */
        }
        *o++ = c;
    }
    *o = '\0';
    return out;
}

int store_query_each(const char *query, int (*fn)(const char *, const char *, void *, char *, size_t), void *arg,
                     char *err, size_t errlen)
{
    const char *p = query;
    int rc = 0;

    while (p && *p && rc == 0) {
        const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        char *name, *value;

        if (end == p) { /* "&&" */
            p = amp ? amp + 1 : end;
            continue;
        }
        name = store_url_decode(p, (size_t)((eq ? eq : end) - p));
        value = eq ? store_url_decode(eq + 1, (size_t)(end - eq - 1)) : strdup("");
        if (!name || !value) {
            snprintf(err, errlen, "bad %%-escape in query parameter \"%.*s\"", (int)((eq ? eq : end) - p), p);
            rc = LV_EINVAL;
        } else {
            rc = fn(name, value, arg, err, errlen);
        }
        free(name);
        free(value);
        p = amp ? amp + 1 : end;
    }
    return rc;
}

int store_parse_bool(const char *v)
{
    static const char *const yes[] = {"true", "1", "yes", "on"}, *const no[] = {"false", "0", "no", "off"};

    for (size_t i = 0; i < LV_ARRAY_LEN(yes); i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return 1;
        if (strcasecmp(v, no[i]) == 0)
            return 0;
    }
    return -1;
}

int store_parse_size(const char *v, uint64_t *out)
{
    char *end;
    unsigned long long n;
    uint64_t mul = 1;

    if (!v || !isdigit((unsigned char)*v))
        return LV_EINVAL;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno)
        return LV_EINVAL;
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'K': mul = 1ull << 10; break;
        case 'M': mul = 1ull << 20; break;
        case 'G': mul = 1ull << 30; break;
        default: return LV_EINVAL;
        }
        end++;
        if (toupper((unsigned char)*end) == 'I') /* "MiB" */
            end++;
        if (toupper((unsigned char)*end) == 'B')
            end++;
        if (*end)
            return LV_EINVAL;
    }
    if (n > UINT64_MAX / mul)
        return LV_EINVAL;
    *out = (uint64_t)n * mul;
    return 0;
}

int store_key_valid(const char *key)
{
    size_t n;
    const char *c;

    if (!key)
        return 0;
    n = strlen(key);
    if (n == 0 || n > STORE_KEY_MAX || key[0] == '/' || key[n - 1] == '/')
        return 0;
    for (const char *p = key; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\')
            return 0;
    /* Check every component: not empty, not "." and not "..". */
    for (c = key;;) {
        const char *slash = strchr(c, '/');
        size_t len = slash ? (size_t)(slash - c) : strlen(c);
        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        if (!slash)
            break;
        c = slash + 1;
    }
    return 1;
}

/* ---- errors ---- */

int store_add_secret(struct store *s, const char *secret)
{
    if (!secret || !*secret)
        return 0;
    for (int i = 0; i < STORE_MAX_SECRETS; i++) {
        if (!s->secrets[i]) {
            s->secrets[i] = strdup(secret);
            return s->secrets[i] ? 0 : LV_ENOMEM;
        }
    }
    return LV_EINVAL;
}

void store_redact(const struct store *s, char *msg, size_t cap)
{
    char *out;
    size_t o = 0;

    if (cap == 0)
        return;
    msg[cap - 1] = '\0';
    out = malloc(cap);
    if (!out) {
        msg[0] = '\0'; /* cannot redact: say nothing rather than leak */
        return;
    }
    /* Copy msg to out, writing "***" for every occurrence of a secret. */
    for (const char *p = msg; *p && o + 1 < cap;) {
        size_t skip = 0;
        for (int i = 0; i < STORE_MAX_SECRETS && !skip; i++) {
            size_t sl = s->secrets[i] ? strlen(s->secrets[i]) : 0;
            if (sl && strncmp(p, s->secrets[i], sl) == 0)
                skip = sl;
        }
        if (skip) {
            for (int k = 0; k < 3 && o + 1 < cap; k++)
                out[o++] = '*';
            p += skip;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    memcpy(msg, out, o + 1);
    free(out);
}

static void store_verror(struct store *s, int log, const char *fmt, va_list ap)
{
    char msg[STORE_ERR_MAX + 8];

    vsnprintf(msg, sizeof msg, fmt, ap);
    store_redact(s, msg, sizeof msg);
    msg[STORE_ERR_MAX - 1] = '\0';
    memcpy(tl_err, msg, STORE_ERR_MAX);
    tl_err_id = s->id;
    pthread_mutex_lock(&s->err_lock);
    memcpy(s->err, msg, STORE_ERR_MAX);
    pthread_mutex_unlock(&s->err_lock);
    if (log)
        LV_ERROR("%s", msg);
}

void store_fail(struct store *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    store_verror(s, 1, fmt, ap);
    va_end(ap);
}

void store_set_error(struct store *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    store_verror(s, 0, fmt, ap);
    va_end(ap);
}

const char *store_last_error(const struct store *s)
{
    struct store *ms = (struct store *)s; /* the lock is not part of the logical state */

    if (!s)
        return "";
    if (tl_err_id == s->id)
        return tl_err;
    pthread_mutex_lock(&ms->err_lock);
    memcpy(tl_err, s->err, STORE_ERR_MAX);
    pthread_mutex_unlock(&ms->err_lock);
    tl_err_id = s->id;
    return tl_err;
}

/* ---- backoff ---- */

uint32_t store_backoff(struct store *s, int attempt)
{
    uint64_t d = s->retry_base_ms;
    uint32_t ms;
    unsigned int seed;
    struct timespec ts;

    for (int i = 1; i < attempt && d < s->retry_max_ms; i++)
        d *= 2;
    if (d > s->retry_max_ms)
        d = s->retry_max_ms;
    /* Per-call seed from the clock and the thread: good enough for jitter. */
    seed = (unsigned int)lv_mono_us() ^ (unsigned int)(uintptr_t)&seed ^ (unsigned int)attempt;
    ms = (uint32_t)(d / 2 + (d - d / 2) * (uint64_t)(rand_r(&seed) % 1001) / 1000);
    __atomic_add_fetch(&s->n_retries, 1, __ATOMIC_RELAXED);
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    return ms;
}

/* ---- open / close ---- */

int store_open(const char *url, const struct store_opts *opts, struct store **out, char *err, size_t errlen)
{
    static const struct store_opts no_opts;
    const struct store_backend *be;
    struct store *s;
    int rc;

    *out = NULL;
    if (errlen)
        err[0] = '\0';
    if (!url || !*url) {
        snprintf(err, errlen, "empty store URL");
        return LV_ECONFIG;
    }
    if (!opts)
        opts = &no_opts;
    if (strncmp(url, "file://", 7) == 0 || url[0] == '/') {
        be = &store_file_backend;
    } else if (strncmp(url, "s3://", 5) == 0) {
        be = &store_s3_backend;
    } else {
        const char *colon = strstr(url, "://");
        snprintf(err, errlen, "%.*s: unsupported store URL scheme (use file:// or s3://)",
                 colon ? (int)(colon - url) + 3 : 64, url);
        return LV_ECONFIG;
    }
    if (opts->max_retries < 0 || opts->parallel < 0 || opts->list_page_size < 0) {
        snprintf(err, errlen, "store options: negative max_retries, parallel or list_page_size");
        return LV_ECONFIG;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return LV_ENOMEM;
    }
    pthread_mutex_init(&s->err_lock, NULL);
    s->be = be;
    s->id = atomic_fetch_add(&store_next_id, 1);
    s->max_retries = opts->max_retries ? opts->max_retries : STORE_DEF_RETRIES;
    s->retry_base_ms = opts->retry_base_ms ? opts->retry_base_ms : STORE_DEF_BASE_MS;
    s->retry_max_ms = opts->retry_max_ms ? opts->retry_max_ms : STORE_DEF_MAX_MS;
    if (s->retry_max_ms < s->retry_base_ms)
        s->retry_max_ms = s->retry_base_ms;
    rc = be->open(s, url, opts, err, errlen);
    if (rc < 0) {
        /* Backends leave s->impl NULL on failure, but may have set url/secrets. */
        if (errlen)
            store_redact(s, err, errlen);
        s->impl = NULL;
        store_close(s);
        return rc;
    }
    LV_DEBUG("store: opened %s", s->url);
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->impl)
        s->be->close(s);
    for (int i = 0; i < STORE_MAX_SECRETS; i++) {
        if (s->secrets[i]) {
            explicit_bzero(s->secrets[i], strlen(s->secrets[i]));
            free(s->secrets[i]);
        }
    }
    if (tl_err_id == s->id)
        tl_err_id = 0;
    pthread_mutex_destroy(&s->err_lock);
    free(s->url);
    free(s);
}

const char *store_url(const struct store *s)
{
    return s && s->url ? s->url : "";
}

/* ---- dispatch ---- */

#define STAT_ADD(s, field, n) __atomic_add_fetch(&(s)->field, (uint64_t)(n), __ATOMIC_RELAXED)

/* Count a failed call (not LV_ENOENT) and return rc. */
static int store_result(struct store *s, int rc)
{
    if (rc < 0 && rc != LV_ENOENT)
        STAT_ADD(s, n_errors, 1);
    if (rc == 0) {
        /* this thread's last call on s succeeded: no message of an older call lingers */
        tl_err[0] = '\0';
        tl_err_id = s->id;
    }
    return rc;
}

/* Reject an invalid key with a message; 0 if valid. */
static int store_check_key(struct store *s, const char *op, const char *key)
{
    if (store_key_valid(key))
        return 0;
    store_set_error(s, "%s: %s: invalid key \"%.200s\"", s->url, op, key ? key : "(null)");
    LV_WARN("%s", tl_err);
    return LV_EINVAL;
}

int store_put(struct store *s, const char *key, const void *data, size_t len)
{
    int rc;

    STAT_ADD(s, n_puts, 1);
    if ((rc = store_check_key(s, "PUT", key)) < 0 || (len && !data))
        return store_result(s, rc < 0 ? rc : LV_EINVAL);
    rc = s->be->put(s, key, data, len);
    if (rc == 0)
        STAT_ADD(s, n_bytes_up, len);
    return store_result(s, rc);
}

int store_get(struct store *s, const char *key, uint64_t off, uint64_t len, void **out, size_t *outlen)
{
    int rc;

    *out = NULL;
    *outlen = 0;
    STAT_ADD(s, n_gets, 1);
    if ((rc = store_check_key(s, "GET", key)) < 0)
        return store_result(s, rc);
    if (len > SIZE_MAX || off > UINT64_MAX - len) {
        store_set_error(s, "%s: GET %s: range out of bounds", s->url, key);
        return store_result(s, LV_EINVAL);
    }
    rc = s->be->get(s, key, off, len, out, outlen);
    if (rc == 0)
        STAT_ADD(s, n_bytes_down, *outlen);
    return store_result(s, rc);
}

int store_head(struct store *s, const char *key, struct store_obj *info)
{
    int rc;

    memset(info, 0, sizeof *info);
    STAT_ADD(s, n_heads, 1);
    if ((rc = store_check_key(s, "HEAD", key)) < 0)
        return store_result(s, rc);
    return store_result(s, s->be->head(s, key, info));
}

static int obj_cmp(const void *a, const void *b)
{
    return strcmp(((const struct store_obj *)a)->key, ((const struct store_obj *)b)->key);
}

int store_list(struct store *s, const char *prefix, struct store_list *out)
{
    int rc;

    out->v = NULL;
    out->n = 0;
    STAT_ADD(s, n_lists, 1);
    if (!prefix)
        prefix = "";
    if (prefix[0] == '/' || strlen(prefix) > STORE_KEY_MAX) {
        store_set_error(s, "%s: LIST: invalid prefix \"%.200s\"", s->url, prefix);
        return store_result(s, LV_EINVAL);
    }
    rc = s->be->list(s, prefix, out);
    if (rc < 0) {
        store_list_free(out);
        return store_result(s, rc);
    }
    if (out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, obj_cmp);
    return 0;
}

int store_probe(struct store *s, int *empty, char *err, size_t errlen)
{
    int rc;

    *empty = 0;
    if (errlen)
        err[0] = '\0';
    STAT_ADD(s, n_lists, 1);
    rc = s->be->probe(s, empty);
    if (rc < 0)
        snprintf(err, errlen, "%s", store_last_error(s) && *store_last_error(s) ? store_last_error(s)
                                                                                 : lv_strerror(rc));
    return store_result(s, rc);
}

int store_list_err(struct store *s, const char *prefix, struct store_list *out, char *err, size_t errlen)
{
    int rc = store_list(s, prefix, out);

    if (rc)
        lv_seterr(err, errlen, "%s: cannot list %s: %s (%s)", store_url(s), prefix, lv_strerror(rc),
                  store_last_error(s) ? store_last_error(s) : "");
    return rc;
}

void store_list_free(struct store_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].key);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int store_delete(struct store *s, const char *key)
{
    int rc;

    STAT_ADD(s, n_deletes, 1);
    if ((rc = store_check_key(s, "DELETE", key)) < 0)
        return store_result(s, rc);
    rc = s->be->del(s, key);
    return store_result(s, rc == LV_ENOENT ? 0 : rc);
}

void store_get_stats(const struct store *s, struct store_stats *st)
{
    st->puts = __atomic_load_n(&s->n_puts, __ATOMIC_RELAXED);
    st->gets = __atomic_load_n(&s->n_gets, __ATOMIC_RELAXED);
    st->lists = __atomic_load_n(&s->n_lists, __ATOMIC_RELAXED);
    st->deletes = __atomic_load_n(&s->n_deletes, __ATOMIC_RELAXED);
    st->heads = __atomic_load_n(&s->n_heads, __ATOMIC_RELAXED);
    st->bytes_up = __atomic_load_n(&s->n_bytes_up, __ATOMIC_RELAXED);
    st->bytes_down = __atomic_load_n(&s->n_bytes_down, __ATOMIC_RELAXED);
    st->errors = __atomic_load_n(&s->n_errors, __ATOMIC_RELAXED);
    st->retries = __atomic_load_n(&s->n_retries, __ATOMIC_RELAXED);
}

/* ---- options from the config file ---- */

void store_conf_opts(const struct store_conf *c, struct store_opts *o)
{
    *o = (struct store_opts){.endpoint = c->endpoint, .region = c->region, .force_path_style = c->force_path_style,
                             .access_key = c->access_key_id, .secret_key = c->secret_access_key,
                             .session_token = c->session_token};
}

