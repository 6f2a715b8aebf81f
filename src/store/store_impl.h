/*
 * store_impl.h -- what a store backend implements, and the services that
 * store.c offers to backends (error reporting with credential redaction,
 * retry backoff, counters).  Internal to archive/: only store.c,
 * store_file.c, store_s3.c and tests/unit_store.c include it.
 *
 * Shape (in the manner of Redis's rio.h): struct store is the generic part
 * and holds a pointer to a constant table of backend functions plus the
 * backend's private state.  store.c validates arguments, counts requests
 * and dispatches through the table; a backend only does I/O.
 *
 * Backend contract:
 *   - keys reaching a backend are already validated (store_key_valid);
 *   - every function returns 0 or a negative LV_E*; on failure other than
 *     LV_ENOENT it calls store_fail() exactly once with a message (which
 *     also logs it at LV_ERROR), so that store_last_error() is meaningful;
 *   - transient failures are retried inside the backend, which calls
 *     store_backoff() before each retry (that call counts the retry);
 *   - payload bytes are counted by store.c from the results; a backend
 *     adds nothing to the stats except through store_backoff().
 */
#ifndef STORE_IMPL_H
#define STORE_IMPL_H

#include "store/store.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>

/* Backend function table (one constant instance per backend). */
struct store_backend {
    const char *scheme; /* "file" or "s3" */
    /* Parse url + opts and set s->impl (and s->url).  err as in store_open. */
    int (*open)(struct store *s, const char *url, const struct store_opts *opts, char *err, size_t errlen);
    void (*close)(struct store *s); /* free s->impl */
    int (*put)(struct store *s, const char *key, const void *data, size_t len);
    int (*get)(struct store *s, const char *key, uint64_t off, uint64_t len, void **out, size_t *outlen);
    int (*head)(struct store *s, const char *key, struct store_obj *info);
    int (*list)(struct store *s, const char *prefix, struct store_list *out);
    int (*del)(struct store *s, const char *key);
    /* store_probe: 0 (and *empty) if the root (directory, bucket) exists;
     * LV_ENOENT if it does not, with the message set by store_set_error. */
    int (*probe)(struct store *s, int *empty);
};

#define STORE_MAX_SECRETS 3  /* access key, secret key, session token */
#define STORE_ERR_MAX 1024   /* bytes of an error message, with NUL */

/* Generic part of an open store. */
struct store {
    const struct store_backend *be; /* backend table (immutable) */
    void *impl;                     /* backend state (owned by the backend) */
    char *url;                      /* display URL without credentials (owned; set by be->open) */
    uint64_t id;                    /* unique per process, names this store in thread-local errors */
    uint32_t retry_base_ms;         /* first backoff delay (immutable after open) */
    uint32_t retry_max_ms;          /* backoff cap (immutable after open) */
    int max_retries;                /* retries after the first attempt (immutable after open) */
    char *secrets[STORE_MAX_SECRETS]; /* strings never to appear in messages (owned), guarded by nothing: set during open */
    pthread_mutex_t err_lock;       /* guards err */
    char err[STORE_ERR_MAX];        /* last error of any thread (guarded by err_lock) */
    /* Counters, updated with __atomic builtins (no lock). */
    uint64_t n_puts, n_gets, n_lists, n_deletes, n_heads;
    uint64_t n_bytes_up, n_bytes_down, n_errors, n_retries;
    /* Backend request accounting for tests (S3: HTTP requests), __atomic too. */
    uint64_t n_requests;            /* requests sent, every attempt counted */
    uint64_t n_connects;            /* new connections opened for them (reuse shows as fewer) */
    int n_inflight;                 /* requests in progress now */
    int max_inflight;               /* most requests ever in progress at once */
};

extern const struct store_backend store_file_backend;
extern const struct store_backend store_s3_backend;

/* Register a string that must never appear in messages (copied; NULL/"" ignored). */
int store_add_secret(struct store *s, const char *secret);

/* Record a failure of this store: format, replace registered secrets by
 * "***", store as the last error (this thread's and the store's) and log
 * at LV_ERROR.  Message conventionally starts with store_url(s). */
void store_fail(struct store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Same, without logging (for messages the caller logs at another level). */
void store_set_error(struct store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Redact registered secrets from msg in place (always NUL-terminated). */
void store_redact(const struct store *s, char *msg, size_t cap);

/* Sleep before retry number attempt (1 = first retry): exponential from
 * retry_base_ms, capped at retry_max_ms, with "equal jitter" (a random
 * delay in [d/2, d]); counts one retry.  Returns the milliseconds slept. */
uint32_t store_backoff(struct store *s, int attempt);

/* 1 if key is acceptable: 1..1024 bytes, no leading '/', no empty, "." or
 * ".." component, no trailing '/', no control characters. */
int store_key_valid(const char *key);

/* Percent-decode src[0..n) into a malloc'ed NUL-terminated string (caller
 * frees); NULL on a bad escape, an embedded NUL or OOM. */
char *store_url_decode(const char *src, size_t n);

/* Call fn(name, value, arg) for each "name=value" pair of a URL query
 * (both decoded; value "" when there is no '=').  Stops at the first
 * non-zero return of fn and returns it; LV_EINVAL on a bad escape (a
 * message naming the parameter is written to err). */
int store_query_each(const char *query, int (*fn)(const char *name, const char *value, void *arg, char *err,
                                                    size_t errlen),
                     void *arg, char *err, size_t errlen);

/* Parse a boolean option value: true/false/1/0/yes/no; 1, 0, or -1 if invalid. */
int store_parse_bool(const char *v);

/* Parse an unsigned size with optional K/M/G (binary) suffix; 0 or LV_EINVAL. */
int store_parse_size(const char *v, uint64_t *out);

/* ---- S3 internals exposed for tests (store_s3.c) ---- */

/* Parsed and resolved S3 destination (strings owned). */
struct s3_config {
    char *bucket;         /* bucket name */
    char *prefix;         /* key prefix inside the bucket, "" or ending in '/' */
    char *scheme;         /* "https" or "http" (http only for loopback) */
    char *host;           /* endpoint host (IPv6 in brackets), no port */
    char *port;           /* ":9000" or "" */
    char *base_path;      /* endpoint path without trailing '/', "" usually */
    char *region;         /* e.g. us-east-1 */
    int path_style;       /* 1: scheme://host/bucket/key; 0: scheme://bucket.host/key */
    char *access_key;     /* credentials (never logged) */
    char *secret_key;
    char *session_token;  /* NULL if none */
    uint64_t multipart_threshold; /* bytes; objects above it go up in parts */
    uint64_t part_size;   /* bytes of a multipart part or a parallel ranged GET */
    int parallel;         /* worker threads for parts */
    int list_page;        /* max-keys of ListObjectsV2 */
    int max_retries;      /* from the URL query, -1 if not given there */
};

/* Parse url ("s3://BUCKET[/PREFIX][?k=v&...]") with opts (may be NULL) and
 * the environment into cfg; 0, or LV_ECONFIG/LV_EINVAL with a message in err. */
int store_s3_parse(const char *url, const struct store_opts *opts, struct s3_config *cfg, char *err, size_t errlen);

/* Free the strings of cfg. */
void store_s3_config_free(struct s3_config *cfg);

/* URL of key (already relative to the prefix, or NULL for the bucket
 * itself) plus an optional canonical query; malloc'ed, caller frees. */
char *store_s3_object_url(const struct s3_config *cfg, const char *key, const char *query);

/* 1 if host (as in a URL, IPv6 possibly in brackets) is a loopback name or address. */
int store_host_is_loopback(const char *host);

#endif /* STORE_IMPL_H */
