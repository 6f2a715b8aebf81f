/*
 * store.h -- object storage backends behind one small interface.
 *
 * A store is opened from a destination URL:
 *   file:///abs/path                     a local directory (the default);
 *   file://rel/path, file://./path       relative to the current directory
 *   s3://BUCKET/PREFIX?endpoint=URL&region=R&force-path-style=true
 * Options may also come from a struct store_opts (YAML keys of an archive
 * destination); URL query parameters override them.  Credentials come from
 * the options, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 * AWS_SESSION_TOKEN; they are never logged.
 *
 * Keys are relative to the store's prefix ("app.db/<id>/seg/..."), use '/'
 * as separator and never start with '/' or contain "..".
 *
 * Thread safety: one struct store may be used from several threads at once
 * (each call takes its own connection from an internal pool).
 * Errors: 0 or negative LV_E*; LV_ENOENT for a missing object; transient
 * failures are retried inside the backend (exponential backoff with
 * jitter); a permanent failure (bad credentials, missing bucket, access
 * denied) returns at once with a message in the store's last error.
 */
#ifndef STORE_H
#define STORE_H

#include <stddef.h>
#include <stdint.h>

/* Options of a destination (all strings borrowed for the call to store_open). */
struct store_opts {
    const char *endpoint;      /* S3 endpoint URL (http://127.0.0.1:9000), NULL for AWS */
    const char *region;        /* S3 region, NULL for us-east-1 */
    int force_path_style;      /* 1: http://endpoint/bucket/key; 0: virtual-hosted; -1: default
                                  (path style with an endpoint, virtual-hosted on AWS).  NOTE: a
                                  zeroed struct means virtual-hosted: set -1 for the default.  An
                                  IP-address endpoint always gets path style. */
    const char *access_key;    /* credentials, NULL to use the environment */
    const char *secret_key;
    const char *session_token;
    uint64_t multipart_threshold; /* bytes; 0 = default 16 MiB */
    int parallel;              /* connections for multipart/ranged transfers; 0 = default 4 */
    int max_retries;           /* 0 = default 5 */
    /* Additions (h9); zero means the default for each. */
    uint64_t part_size;        /* bytes of a multipart part / parallel ranged GET; 0 = 8 MiB (>= 5 MiB) */
    int list_page_size;        /* S3 ListObjectsV2 max-keys; 0 = 1000 */
    uint32_t retry_base_ms;    /* first retry delay; 0 = 200 ms (doubles each retry) */
    uint32_t retry_max_ms;     /* cap of one retry delay; 0 = 5000 ms */
    int no_create;             /* file://: do not create the directory (readers: restore, archive ls/verify);
                                  store_probe then reports it missing.  0 = create it (writers) */
};

/* The S3 keys of a destination as written in the config file (archive[]
 * and exports[] share them; config.c parses both through one table).
 * Strings are owned; zeroed plus force_path_style = -1 means "none given". */
struct store_conf {
    char *endpoint;            /* endpoint: S3 endpoint URL, NULL for AWS */
    char *region;              /* region: S3 region, NULL for the default */
    int force_path_style;      /* force-path-style: 1 true, 0 false, -1 default (as in store_opts) */
    char *access_key_id;       /* access-key-id: NULL to use AWS_ACCESS_KEY_ID (never logged) */
    char *secret_access_key;   /* secret-access-key: never logged */
    char *session_token;       /* session-token: never logged */
};

/* Fill *o from c: endpoint, region, addressing and credentials (strings
 * borrowed from c, valid while c is); every other field 0, the defaults. */
void store_conf_opts(const struct store_conf *c, struct store_opts *o);

/* Does c name any S3 option (endpoint, region, addressing or credentials)? */
static inline int store_conf_any(const struct store_conf *c)
{
    return c->endpoint || c->region || c->force_path_style != -1 || c->access_key_id || c->secret_access_key ||
           c->session_token;
}

/* One listed object. */
struct store_obj {
    char *key;                 /* key relative to the prefix (owned by the list) */
    uint64_t size;             /* bytes */
    int64_t mtime_us;          /* last modified, microseconds since epoch (0 if unknown) */
};

/* A list result (free with store_list_free). */
struct store_list {
    struct store_obj *v;       /* objects, sorted by key */
    size_t n;                  /* count */
};

/* Request counters of a store (for metrics), monotonic. */
struct store_stats {
    uint64_t puts, gets, lists, deletes, heads; /* requests by type */
    uint64_t bytes_up, bytes_down;              /* payload bytes */
    uint64_t errors, retries;                   /* failed requests, retried attempts */
};

struct store;

/* Open the destination named by url (query options override opts, which may be NULL).
 * On error writes a message naming the URL (never credentials) into err. */
int store_open(const char *url, const struct store_opts *opts, struct store **out, char *err, size_t errlen);

/* Close and free. */
void store_close(struct store *s);

/* The URL without credentials, for messages (borrowed, valid until store_close). */
const char *store_url(const struct store *s);

/* Write an object atomically (readers see the old or the new content). */
int store_put(struct store *s, const char *key, const void *data, size_t len);

/* Read bytes [off, off+len) of an object (len 0 = to the end) into a
 * malloc'ed buffer *out of *outlen bytes (caller frees). */
int store_get(struct store *s, const char *key, uint64_t off, uint64_t len, void **out, size_t *outlen);

/* Size and mtime of an object; LV_ENOENT if missing. */
int store_head(struct store *s, const char *key, struct store_obj *info);

/* List objects whose key starts with prefix (all pages, continuation handled). */
int store_list(struct store *s, const char *prefix, struct store_list *out);

/* store_list, with a failure described in err as
 * "URL: cannot list PREFIX: ERROR (the store's last error)". */
int store_list_err(struct store *s, const char *prefix, struct store_list *out, char *err, size_t errlen);

/* Free a list result. */
void store_list_free(struct store_list *l);

/* Delete an object (deleting a missing object is not an error). */
int store_delete(struct store *s, const char *key);

/* Does the destination exist?  0 when its directory (file://) or bucket
 * (s3://) exists, with *empty set to 1 when no object is stored under it
 * (its prefix); LV_ENOENT when the directory or bucket does not exist,
 * other negative when the store cannot tell.  On failure err gets a
 * message naming the URL and what is missing.  One LIST request on S3. */
int store_probe(struct store *s, int *empty, char *err, size_t errlen);

/* Copy of the request counters. */
void store_get_stats(const struct store *s, struct store_stats *st);

/* Last error message of this store (borrowed; thread-local to the last failing call's thread). */
const char *store_last_error(const struct store *s);

#endif /* STORE_H */
