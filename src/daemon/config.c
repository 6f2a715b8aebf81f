/*
 * config.c -- the YAML configuration file.
 *
 * The file is read whole into memory and loaded with libyaml's document
 * API (yaml_parser_load), then walked against a static key schema:
 *
 *   fuse:   dir, allow-other, wal-passthrough, journal-passthrough (section)
 *   data:   dir, state-interval, segment-size, max-log-size (section)
 *   http:   addr, public, image-space, header-timeout,
 *           max-conns-per-address, token, token-file, allow-no-token,
 *           tls-cert, tls-key, tls-ca            (section)
 *   log:    level, format                        (section)
 *   lease:  type, candidate, advertise-url, primary-url, endpoints, key,
 *           ttl, tls-ca, tls-cert, tls-key, username, password,
 *           password-file                        (section)
 *   replication: max-lag, max-retain, seed, apply-wait (section)
 *   proxy:  addr, target, db, passthrough, max-lag-wait, header-timeout,
 *           max-conns, advertise-url, primary-url (section)
 *   exports: name, schedule, url, format, databases, keep, on, endpoint,
 *            region, force-path-style, access-key-id, secret-access-key,
 *            session-token                       (list)
 *   archive: url, endpoint, region, ...          (list of destinations)
 *
 * Schema.  A schema is a NULL-terminated array of struct cfg_key.  Each
 * key is one of
 *   CFG_LEAF     a scalar, converted by key->parse into the field at
 *                key->off of the current object;
 *   CFG_SECTION  a mapping whose keys (key->sub) fill the same object;
 *   CFG_LIST     a sequence of mappings; each item becomes one element of
 *                key->elem_size bytes in a malloc'ed array whose pointer
 *                is at key->off and whose count (size_t) is at
 *                key->count_off; the item's keys (key->sub) fill that
 *                element (offsets relative to the element).
 * Adding the later sections is therefore a matter of a struct in
 * config.h, a key table and one line in top_keys[]: e.g.
 *   { .name = "archive", .kind = CFG_LIST, .sub = archive_keys,
 *     .off = offsetof(struct config, archive), .count_off = offsetof(struct config, narchive),
 *     .elem_size = sizeof(struct archiver_dest) }
 * config_free() walks the same schema to free owned strings and arrays.
 *
 * List items: key->elem_init (optional) sets an element's defaults before
 * its keys are walked (calloc'ed elements are otherwise all zero), and
 * key->elem_check (optional) validates the element as a whole after its
 * walk (keys that depend on each other, uniqueness against the earlier
 * elements), reporting at the item's position.
 * Leaves with .seq also accept a sequence of scalars.  CFG_SEQ_EACH: parse
 * runs once per item (p->keypath ends in "[j]" then); with .owned == 2 the
 * field is a malloc'ed char ** array whose size_t count is at
 * key->count_off, freed string by string (exports[].databases).
 * CFG_SEQ_JOIN: parse runs once on the items joined by ',' ("" for [])
 * (archive[].compaction).
 *
 * Walk invariants: p->keypath always holds the dotted path of the node
 * being checked ("data.segment-size", "archive[1].url"), so every error
 * can name it; every error names the file and the 1-based line:column of
 * the offending node (the key for unknown or duplicate keys, the value
 * otherwise).  The first error stops the walk.
 *
 * Scalars.  Before conversion, ${NAME} in a scalar value is replaced by
 * the environment variable NAME (an unset variable is an error); $${ gives
 * a literal ${.  A plain empty scalar, ~ or null is "no value": allowed as
 * an empty section or list, an error for a leaf.
 *
 * Relative fuse.dir and data.dir are resolved against the directory that
 * contains the config file, so the result never depends on the cwd.  So
 * are http.token-file, lease.password-file and the http.tls-* and
 * lease.tls-* files, which must exist (a
 * permission error is left to the daemon, so that other users' commands
 * still load a configuration whose key file they may not see).
 *
 * Whole-file checks.  After the walk, config_check validates what one key
 * alone cannot (keys that depend on each other), naming the key and its
 * position found again in the document (map_get): http.token or
 * http.token-file, not both (the file is read then: its contents, without
 * the trailing newline, become http_token); tls-cert with tls-key, and a
 * libmicrohttpd with TLS; lease.username with lease.password or
 * lease.password-file, one of them (the file is read then, like the token
 * file), and those keys only with lease.type etcd; a static replica
 * (candidate false, the default
 * when primary-url is set) needs primary-url; a non-loopback http.addr
 * that listens without a token needs http.allow-no-token; advertise-url
 * defaults to http[s]://<http.addr>; a replica's proxy needs
 * proxy.primary-url, and proxy.advertise-url defaults to
 * http://<proxy.addr>.
 *
 * Secrets.  The values of http.token and lease.password (or the
 * contents of their files) never enter a message (the parsers say what is
 * wrong with them, not what they are); config_free wipes both.
 */
#include <stddef.h> /* config.h uses size_t without including it */

#include "daemon/config.h"

#include "export/cron.h"
#include "base/http.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "daemon/proxy_http.h"
#include "capture/db.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define DEFAULT_FUSE_DIR "/var/lib/litevault/mnt"
#define DEFAULT_DATA_DIR "/var/lib/litevault/data"
#define DEFAULT_HTTP_ADDR "127.0.0.1:20202"
#define DEFAULT_HTTP_HEADER_TIMEOUT_US (10LL * 1000000)
#define DEFAULT_HTTP_PER_ADDR 16
#define DEFAULT_STATE_INTERVAL_US (30LL * 1000000)
#define DEFAULT_SEGMENT_SIZE (64LL << 20)
#define MIN_SEGMENT_SIZE (4LL << 10)
#define DEFAULT_MAX_LOG_SIZE (10LL << 30)
#define DEFAULT_SYNC_INTERVAL_US (1000000LL)
#define DEFAULT_SNAPSHOT_INTERVAL_US (86400LL * 1000000)
#define DEFAULT_RETENTION_US (7LL * 86400 * 1000000)
#define DEFAULT_PARALLEL 4
#define DEFAULT_DELETE_DELAY_US (300LL * 1000000)
#define DEFAULT_MANIFEST_INTERVAL_US (60LL * 1000000)
#define DEFAULT_SHUTDOWN_TIMEOUT_US (30LL * 1000000)
#define DEFAULT_LEASE_TYPE "static"
#define DEFAULT_REPL_MAX_LAG_US (10LL * 1000000)
#define DEFAULT_REPL_SYNC_TIMEOUT_US (5LL * 1000000)
#define DEFAULT_REPL_MAX_RETAIN (1LL << 30)
#define DEFAULT_REPL_APPLY_WAIT_US (100LL * 1000)
#define MAX_REPL_APPLY_WAIT_US (60LL * 1000000)
#define DEFAULT_PROXY_MAX_LAG_WAIT_US (5LL * 1000000)
#define MAX_PROXY_MAX_LAG_WAIT_US (60LL * 1000000)
#define DEFAULT_PROXY_HEADER_TIMEOUT_US (10LL * 1000000)
#define DEFAULT_PROXY_MAX_CONNS 256
#define MAX_PROXY_MAX_CONNS 100000
#define TOKEN_MIN 16   /* shortest http.token accepted */
#define TOKEN_MAX 4096 /* longest */
#define PASSWORD_MAX 4096 /* longest lease.password accepted */
static const int64_t default_levels_us[] = {30LL * 1000000, 300LL * 1000000, 3600LL * 1000000};

#define CFG_MAX_KEYS 32 /* keys per schema table */

struct cfg_parser;
struct cfg_key;

/* Convert the (expanded) scalar value of node into the field; 0 or LV_ECONFIG/LV_ENOMEM. */
typedef int (*cfg_parse_fn)(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                            void *field);

enum cfg_kind { CFG_LEAF, CFG_SECTION, CFG_LIST };
enum cfg_seq { CFG_SEQ_NONE = 0, CFG_SEQ_EACH = 1, CFG_SEQ_JOIN = 2 };

struct cfg_key {
    const char *name;           /* key as written in the file; NULL ends a table */
    enum cfg_kind kind;         /* leaf, section or list */
    cfg_parse_fn parse;         /* CFG_LEAF: converter */
    size_t off;                 /* CFG_LEAF: field offset; CFG_LIST: offset of the element array pointer */
    int owned;                  /* CFG_LEAF: 1: field is a malloc'ed char * freed by config_free;
                                   2: a malloc'ed char ** of malloc'ed strings, count at count_off */
    int seq;                    /* CFG_LEAF: a sequence of scalars is accepted too: CFG_SEQ_EACH calls
                                   parse once per item, CFG_SEQ_JOIN once with the items joined by ','
                                   (an empty list gives "") */
    int required;               /* must be present in its mapping */
    const char *example;        /* CFG_LEAF: an example value, for messages */
    const struct cfg_key *sub;  /* CFG_SECTION, CFG_LIST: keys of the nested mapping */
    size_t count_off;           /* CFG_LIST: offset of the size_t element count */
    size_t elem_size;           /* CFG_LIST: bytes per element */
    void (*elem_init)(void *elem, size_t i);  /* CFG_LIST: defaults of element i, or NULL */
    int (*elem_check)(struct cfg_parser *p, yaml_node_t *item, char *arr, size_t i); /* CFG_LIST: or NULL */
};

struct cfg_parser {
    const char *file;     /* file name used in messages (borrowed) */
    const char *basedir;  /* absolute directory of the file, for relative paths (borrowed) */
    yaml_document_t *doc; /* the loaded document (borrowed) */
    char *err;            /* message buffer (borrowed), errlen bytes */
    size_t errlen;
    char keypath[256];    /* dotted path of the node being checked */
    int syntax;           /* 1 while reporting a YAML syntax error (messages carry no key path) */
};

/* ---- messages ---- */

static int cfg_error(struct cfg_parser *p, yaml_mark_t mark, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Write "FILE:LINE:COL: keypath: message" (no keypath for syntax errors) into p->err; returns LV_ECONFIG. */
static int cfg_error(struct cfg_parser *p, yaml_mark_t mark, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!p->err || p->errlen == 0)
        return LV_ECONFIG;
    if (p->syntax) /* no key path is known for a document that does not parse */
        n = snprintf(p->err, p->errlen, "%s:%zu:%zu: ", p->file, mark.line + 1, mark.column + 1);
    else
        n = snprintf(p->err, p->errlen, "%s:%zu:%zu: %s: ", p->file, mark.line + 1, mark.column + 1,
                     p->keypath[0] ? p->keypath : "(top level)");
    if (n >= 0 && (size_t)n < p->errlen) {
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return LV_ECONFIG;
}

static const char *node_kind_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a single value";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

/* "a, b, c" list of the keys of a table, into buf. */
static void key_list(const struct cfg_key *keys, char *buf, size_t n)
{
    size_t used = 0;
    int count = 0;

    buf[0] = '\0';
    while (keys[count].name)
        count++;
    for (int i = 0; i < count && used < n; i++) {
        const char *sep = i == 0 ? "" : ", ";
        int w = snprintf(buf + used, n - used, "%s%s", sep, keys[i].name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* Levenshtein distance of a and b, capped: returns > cap when larger. */
static int edit_distance(const char *a, const char *b, int cap)
{
    size_t la = strlen(a), lb = strlen(b);
    int row[64];

    if (lb >= LV_ARRAY_LEN(row) || (la > lb ? la - lb : lb - la) > (size_t)cap)
        return cap + 1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* ---- durations and sizes ---- */

/* ---- leaf converters ---- */

static int set_string(void *field, char *v)
{
    char **dst = field;

    free(*dst);
    *dst = v;
    return 0;
}

/* Absolute, normalized-enough form of path v relative to base: malloc'ed or NULL. */
static char *resolve_path(const char *base, const char *v)
{
    char *out;
    size_t n;

    if (v[0] == '/') {
        out = strdup(v);
    } else {
        while (v[0] == '.' && v[1] == '/') {
            v += 2;
            while (*v == '/')
                v++;
        }
        if (!*v || strcmp(v, ".") == 0)
            out = strdup(base);
        else if (asprintf(&out, "%s%s%s", base, base[strlen(base) - 1] == '/' ? "" : "/", v) < 0)
            out = NULL;
    }
    if (!out)
        return NULL;
    n = strlen(out);
    while (n > 1 && out[n - 1] == '/')
        out[--n] = '\0';
    return out;
}

static int parse_dir(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value, void *field)
{
    char *v;

    if (!*value)
        return cfg_error(p, node->start_mark, "empty value (set a directory path, or remove the key to use the default %s)",
                         k->example);
    v = resolve_path(p->basedir, value);
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
}

static int parse_addr(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value, void *field)
{
    const char *colon = strrchr(value, ':');
    char *end, *v;
    long port;

    if (!*value)
        return cfg_error(p, node->start_mark, "empty value (set HOST:PORT, or remove the key to use the default %s)",
                         k->example);
    if (!colon || colon == value)
        return cfg_error(p, node->start_mark, "bad address \"%s\" (use HOST:PORT, e.g. %s)", value, k->example);
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || errno || port < 1 || port > 65535)
        return cfg_error(p, node->start_mark, "bad port in \"%s\" (use HOST:PORT with a port from 1 to 65535, e.g. %s)",
                         value, k->example);
    v = strdup(value);
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
}

static int parse_level(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value, void *field)
{
    LV_UNUSED(k);
    if (lvlog_parse_level(value, field) < 0)
        return cfg_error(p, node->start_mark, "unknown level \"%s\" (use error, warn, info or debug)", value);
    return 0;
}

static int parse_format(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value, void *field)
{
    int *json = field;

    LV_UNUSED(k);
    if (strcmp(value, "text") == 0)
        *json = 0;
    else if (strcmp(value, "json") == 0)
        *json = 1;
    else
        return cfg_error(p, node->start_mark, "unknown format \"%s\" (use text or json)", value);
    return 0;
}

static int parse_interval(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                          void *field)
{
    const char *why;
    int64_t v;

    if (lv_parse_duration_why(value, &v, &why) < 0)
        return cfg_error(p, node->start_mark, "bad duration \"%s\": %s (use an integer with ms, s, m, h or d, e.g. %s)",
                         value, why, k->example);
    if (v <= 0)
        return cfg_error(p, node->start_mark, "duration must be greater than zero (e.g. %s)", k->example);
    *(int64_t *)field = v;
    return 0;
}

static int parse_segsize(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                         void *field)
{
    const char *why;
    int64_t v;

    if (lv_parse_size_why(value, &v, &why) < 0)
        return cfg_error(p, node->start_mark,
                         "bad size \"%s\": %s (use an integer with B, KiB, MiB, GiB, TiB, KB, MB, GB or TB, e.g. %s)",
                         value, why, k->example);
    if (v < MIN_SEGMENT_SIZE)
        return cfg_error(p, node->start_mark, "size %lld is too small (use at least 4KiB, e.g. %s)", (long long)v,
                         k->example);
    *(int64_t *)field = v;
    return 0;
}

static int parse_maxlog(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                        void *field)
{
    const char *why;
    int64_t v;

    if (lv_parse_size_why(value, &v, &why) < 0)
        return cfg_error(p, node->start_mark,
                         "bad size \"%s\": %s (use an integer with B, KiB, MiB, GiB, TiB, KB, MB, GB or TB, e.g. %s; "
                         "0 for no limit)", value, why, k->example);
    if (v != 0 && v < (1LL << 20))
        return cfg_error(p, node->start_mark, "size %lld is too small (use at least 1MiB, or 0 for no limit)",
                         (long long)v);
    *(int64_t *)field = v;
    return 0;
}

/* http.image-space: "auto" (0) or a size of at least 1MiB. */
static int parse_image_space(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                             void *field)
{
    const char *why;
    int64_t v;

    if (strcmp(value, "auto") == 0) {
        *(int64_t *)field = 0;
        return 0;
    }
    if (lv_parse_size_why(value, &v, &why) < 0)
        return cfg_error(p, node->start_mark,
                         "bad size \"%s\": %s (use auto, or an integer with B, KiB, MiB, GiB, TiB, KB, MB, GB or TB, "
                         "e.g. %s)", value, why, k->example);
    if (v < (1LL << 20))
        return cfg_error(p, node->start_mark, "size %lld is too small (use at least 1MiB, or auto)", (long long)v);
    *(int64_t *)field = v;
    return 0;
}

/* http.header-timeout: whole seconds, 1s..1h. */
static int parse_header_timeout(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                                void *field)
{
    int rc = parse_interval(p, k, node, value, field);

    if (rc == 0 && (*(int64_t *)field < 1000000 || *(int64_t *)field > 3600LL * 1000000))
        return cfg_error(p, node->start_mark, "header timeout must be between 1s and 1h (e.g. %s)", k->example);
    return rc;
}

/* http.max-conns-per-address: 1..1000, or 0 for no limit. */
static int parse_per_addr(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                          void *field)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < 0 || v > 1000)
        return cfg_error(p, node->start_mark, "expected a number from 0 (no limit) to 1000, found \"%s\" (e.g. %s)",
                         value, k->example);
    *(int *)field = (int)v;
    return 0;
}

/* Any non-empty string (URLs, names, credentials). */
static int parse_str(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value, void *field)
{
    char *v;

    if (!*value)
        return cfg_error(p, node->start_mark, "empty value (set e.g. %s, or remove the key)", k->example);
    v = strdup(value);
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
}

/* Archive URL: s3://BUCKET[/PREFIX][?...] or file://PATH, a relative PATH resolved like data.dir. */
static int parse_url(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value, void *field)
{
    char *v, *abs;

    if (!*value)
        return cfg_error(p, node->start_mark, "empty value (set a destination such as %s)", k->example);
    if (strncmp(value, "s3://", 5) == 0) {
        if (!value[5] || value[5] == '/' || value[5] == '?')
            return cfg_error(p, node->start_mark, "missing bucket in \"%s\" (use s3://BUCKET/PREFIX)", value);
        v = strdup(value);
    } else if (strncmp(value, "file://", 7) == 0) {
        if (!value[7])
            return cfg_error(p, node->start_mark, "missing path in \"%s\" (use file:///abs/dir or file://rel/dir)",
                             value);
        abs = resolve_path(p->basedir, value + 7);
        if (!abs)
            return LV_ENOMEM;
        if (asprintf(&v, "file://%s", abs) < 0)
            v = NULL;
        free(abs);
    } else {
        return cfg_error(p, node->start_mark, "unsupported URL \"%s\" (use file:///abs/dir or s3://BUCKET/PREFIX)",
                         value);
    }
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
}

static int parse_parallel(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                          void *field)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(value, &end, 10);
    if (!*value || *end || errno || v < 1 || v > 64)
        return cfg_error(p, node->start_mark, "expected an integer from 1 to 64, found \"%s\" (e.g. %s)", value,
                         k->example);
    *(int *)field = (int)v;
    return 0;
}

/* compaction: a list of durations ([30s, 5m, 1h]), joined by ',' by the walk; "" or [] = no compaction.
 * Each level's window must be longer than the previous one. */
static int parse_levels(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                        void *field)
{
    struct archiver_dest *a = (struct archiver_dest *)((char *)field - offsetof(struct archiver_dest, compaction_us));
    const char *s = value, *why;
    size_t n = 0;

    while (*s) {
        char item[64];
        size_t len = strcspn(s, ",");
        int64_t v;
        while (len && (*s == ' ')) {
            s++;
            len--;
        }
        if (len >= sizeof item || len == 0)
            return cfg_error(p, node->start_mark, "bad level list \"%s\" (use a list of durations, e.g. %s)", value,
                             k->example);
        memcpy(item, s, len);
        item[len] = '\0';
        while (len && item[len - 1] == ' ')
            item[--len] = '\0';
        if (n >= ARCHIVER_MAX_LEVELS)
            return cfg_error(p, node->start_mark, "at most %d compaction levels", ARCHIVER_MAX_LEVELS);
        if (lv_parse_duration_why(item, &v, &why) < 0 || v <= 0)
            return cfg_error(p, node->start_mark, "bad duration \"%s\" in compaction (use e.g. %s)", item,
                             k->example);
        if (n > 0 && v <= a->compaction_us[n - 1])
            return cfg_error(p, node->start_mark,
                             "compaction level %zu (%s) must be longer than the level before it", n + 1, item);
        a->compaction_us[n++] = v;
        s += strcspn(s, ",");
        if (*s == ',')
            s++;
    }
    a->ncompaction = n;
    a->compaction_set = 1;
    return 0;
}

/* What is wrong with token t (static text that never quotes it), or NULL if it is usable. */
static const char *token_problem(const char *t)
{
    size_t n = strlen(t);

    if (n < TOKEN_MIN)
        return "the token is shorter than 16 characters (make one with: openssl rand -hex 32)";
    if (n > TOKEN_MAX)
        return "the token is longer than 4096 characters";
    for (const char *c = t; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
            return "the token may hold only printable ASCII characters, without spaces (make one with: openssl "
                   "rand -hex 32)";
    return NULL;
}

/* http.token: a bearer token (see token_problem).  The value is never quoted in a message. */
static int parse_token(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value, void *field)
{
    const char *why;
    char *v;

    if (!*value)
        return cfg_error(p, node->start_mark, "empty value (set a token, e.g. %s, or remove the key)", k->example);
    why = token_problem(value);
    if (why)
        return cfg_error(p, node->start_mark, "%s", why);
    v = strdup(value);
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
}

/* lease.password: etcd's password for lease.username; any characters, at
 * most PASSWORD_MAX bytes.  The value is never quoted in a message. */
static int parse_password(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                          void *field)
{
    char *v;

    if (!*value)
        return cfg_error(p, node->start_mark, "empty value (set the password, e.g. %s, or remove the key)",
                         k->example);
    if (strlen(value) > PASSWORD_MAX)
        return cfg_error(p, node->start_mark, "the password is longer than %d bytes", PASSWORD_MAX);
    v = strdup(value);
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
}

/* A file that must exist (http.token-file, http.tls-*): its path, resolved
 * against the config's directory.  EACCES is not an error here (see the top). */
static int parse_file(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value, void *field)
{
    struct stat st;
    char *v;

    if (!*value)
        return cfg_error(p, node->start_mark, "empty value (set a file path, e.g. %s, or remove the key)", k->example);
    v = resolve_path(p->basedir, value);
    if (!v)
        return LV_ENOMEM;
    if (stat(v, &st) != 0 && errno != EACCES) {
        int e = errno;
        cfg_error(p, node->start_mark, "cannot use %s: %s (set the path of an existing file)", v, strerror(e));
        free(v);
        return LV_ECONFIG;
    }
    if (stat(v, &st) == 0 && S_ISDIR(st.st_mode)) {
        cfg_error(p, node->start_mark, "%s is a directory (set the path of a file)", v);
        free(v);
        return LV_ECONFIG;
    }
    return set_string(field, v);
}

static int parse_lease_type(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                            void *field)
{
    char *v;

    LV_UNUSED(k);
    if (strcmp(value, "static") != 0 && strcmp(value, "etcd") != 0)
        return cfg_error(p, node->start_mark, "unknown lease type \"%s\" (use static: fixed roles, or etcd: "
                                              "elected, with fail-over)", value);
    v = strdup(value);
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
}

/* lease.endpoints: one http[s]://HOST:PORT or a list of them (joined by ','
 * by the walk), each an etcd member's client URL without a path. */
static int parse_endpoints(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                           void *field)
{
    const char *s = value;
    char *v;

    if (!*value)
        return cfg_error(p, node->start_mark, "empty value (list etcd's client URLs, e.g. %s)", k->example);
    while (*s) {
        size_t len = strcspn(s, ","), skip = strncmp(s, "https://", 8) == 0 ? 8 : strncmp(s, "http://", 7) == 0 ? 7 : 0;
        while (len && s[len - 1] == '/')
            len--;
        if (memchr(s, '@', len)) /* never quoted: it may hold a password */
            return cfg_error(p, node->start_mark, "an etcd endpoint carries credentials (user@host): set "
                             "lease.username and lease.password (or lease.password-file) instead, e.g. %s",
                             k->example);
        if (!skip || len <= skip || memchr(s + skip, '/', len - skip) || memchr(s, ' ', len))
            return cfg_error(p, node->start_mark, "bad etcd endpoint \"%.*s\" (use http://HOST:PORT or "
                             "https://HOST:PORT, without a path or credentials, e.g. %s)", (int)strcspn(s, ","), s,
                             k->example);
        s += strcspn(s, ",");
        if (*s == ',')
            s++;
    }
    v = strdup(value);
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
}

/* lease.key: an absolute etcd key. */
static int parse_lease_key(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                           void *field)
{
    if (value[0] != '/' || strlen(value) > 512)
        return cfg_error(p, node->start_mark, "the lease key must start with '/' and be at most 512 bytes (e.g. %s)",
                         k->example);
    return parse_str(p, k, node, value, field);
}

/* lease.ttl: 2s to 5m, whole seconds (etcd counts in seconds). */
static int parse_lease_ttl(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                           void *field)
{
    const char *why;
    int64_t v;

    if (lv_parse_duration_why(value, &v, &why) < 0)
        return cfg_error(p, node->start_mark, "bad duration \"%s\": %s (e.g. %s)", value, why, k->example);
    if (v < 2000000 || v > 300000000 || v % 1000000)
        return cfg_error(p, node->start_mark, "expected whole seconds from 2s to 5m, found \"%s\" (e.g. %s)", value,
                         k->example);
    *(int64_t *)field = v;
    return 0;
}

/* lease.advertise-url, lease.primary-url: http[s]://HOST[:PORT][/PATH], no
 * credentials, query or fragment; trailing slashes dropped. */
static int parse_peer_url(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                          void *field)
{
    const char *host, *end, *colon;
    size_t n;
    char *v;

    if (!*value)
        return cfg_error(p, node->start_mark, "empty value (set a URL such as %s, or remove the key)", k->example);
    if (strncmp(value, "http://", 7) == 0)
        host = value + 7;
    else if (strncmp(value, "https://", 8) == 0)
        host = value + 8;
    else
        return cfg_error(p, node->start_mark, "unsupported URL \"%s\" (use http://HOST:PORT or https://HOST:PORT, "
                                              "e.g. %s)", value, k->example);
    for (const char *c = value; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '?' || *c == '#')
            return cfg_error(p, node->start_mark, "bad URL \"%s\": no spaces, query (?) or fragment (#) (e.g. %s)",
                             value, k->example);
    end = host + strcspn(host, "/");
    if (memchr(host, '@', (size_t)(end - host)))
        return cfg_error(p, node->start_mark, "the URL must not carry credentials (user@host): set http.token "
                                              "instead");
    if (end == host || *host == ':')
        return cfg_error(p, node->start_mark, "missing host in \"%s\" (e.g. %s)", value, k->example);
    colon = *host == '[' ? memchr(host, ']', (size_t)(end - host)) : host;
    if (!colon)
        return cfg_error(p, node->start_mark, "bad IPv6 host in \"%s\" (write http://[::1]:20202)", value);
    colon = memchr(colon, ':', (size_t)(end - colon));
    if (colon) {
        long port = 0;
        const char *d = colon + 1;
        for (; d < end && *d >= '0' && *d <= '9' && port <= 65535; d++)
            port = port * 10 + (*d - '0');
        if (d != end || d == colon + 1 || port < 1 || port > 65535)
            return cfg_error(p, node->start_mark, "bad port in \"%s\" (use a port from 1 to 65535, e.g. %s)",
                             value, k->example);
    }
    v = strdup(value);
    if (!v)
        return LV_ENOMEM;
    n = strlen(v);
    while (n > 0 && v[n - 1] == '/' && v + n - 1 >= v + (end - value))
        v[--n] = '\0';
    return set_string(field, v);
}

/* replication.max-retain: a size, 0 for none. */
static int parse_retain(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                        void *field)
{
    const char *why;
    int64_t v;

    if (lv_parse_size_why(value, &v, &why) < 0)
        return cfg_error(p, node->start_mark,
                         "bad size \"%s\": %s (use an integer with B, KiB, MiB, GiB, TiB, KB, MB, GB or TB, e.g. %s; "
                         "0 for none)", value, why, k->example);
    *(int64_t *)field = v;
    return 0;
}

/* replication.sync-replicas: 0 to 16. */
static int parse_sync_replicas(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                               void *field)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(value, &end, 10);
    if (!*value || *end || errno || v < 0 || v > 16)
        return cfg_error(p, node->start_mark, "expected an integer from 0 to 16, found \"%s\" (e.g. %s; 0: "
                                              "asynchronous)", value, k->example);
    *(int *)field = (int)v;
    return 0;
}

/* replication.wait-durable: auto, always or never. */
static int parse_wait_durable(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                              void *field)
{
    static const char *const names[] = {"auto", "always", "never"};
    static const int vals[] = {DBREG_DURABLE_AUTO, DBREG_DURABLE_ALWAYS, DBREG_DURABLE_NEVER};

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(value, names[i]) == 0) {
            *(int *)field = vals[i];
            return 0;
        }
    return cfg_error(p, node->start_mark, "expected auto, always or never, found \"%s\" (e.g. %s)", value,
                     k->example);
}

/* replication.sync-timeout: 10ms to 10m. */
static int parse_sync_timeout(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                              void *field)
{
    const char *why;
    int64_t v;

    if (lv_parse_duration_why(value, &v, &why) < 0)
        return cfg_error(p, node->start_mark, "bad duration \"%s\": %s (e.g. %s)", value, why, k->example);
    if (v < 10000 || v > 600000000)
        return cfg_error(p, node->start_mark, "expected a duration from 10ms to 10m, found \"%s\" (e.g. %s)", value,
                         k->example);
    *(int64_t *)field = v;
    return 0;
}

/* replication.apply-wait: a duration up to a minute. */
static int parse_apply_wait(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                            void *field)
{
    int rc = parse_interval(p, k, node, value, field);

    if (rc == 0 && *(int64_t *)field > MAX_REPL_APPLY_WAIT_US)
        return cfg_error(p, node->start_mark, "apply-wait must be at most 1m (e.g. %s)", k->example);
    return rc;
}

/* proxy.target: HOST:PORT or http://HOST:PORT[/]. */
static int parse_proxy_target(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                              void *field)
{
    char host[256], port[16], *v;
    const char *why;

    if (!*value)
        return cfg_error(p, node->start_mark, "empty value (set the application's address, e.g. %s)", k->example);
    if (pxh_hostport(value, host, sizeof host, port, sizeof port, &why) != 0)
        return cfg_error(p, node->start_mark, "bad address \"%s\": %s (e.g. %s)", value, why, k->example);
    v = strdup(value);
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
}

/* proxy.advertise-url, proxy.primary-url: http://HOST[:PORT], a trailing slash dropped. */
static int parse_proxy_url(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                           void *field)
{
    char host[256], port[16], *v;
    const char *why;
    size_t n;

    if (!*value)
        return cfg_error(p, node->start_mark, "empty value (set a URL such as %s, or remove the key)", k->example);
    if (strncmp(value, "http://", 7) != 0)
        return cfg_error(p, node->start_mark, "unsupported URL \"%s\" (use http://HOST:PORT: proxies forward to "
                                              "each other in plain HTTP; e.g. %s)", value, k->example);
    if (pxh_hostport(value, host, sizeof host, port, sizeof port, &why) != 0)
        return cfg_error(p, node->start_mark, "bad URL \"%s\": %s (e.g. %s)", value, why, k->example);
    v = strdup(value);
    if (!v)
        return LV_ENOMEM;
    n = strlen(v);
    if (n > 0 && v[n - 1] == '/')
        v[n - 1] = '\0';
    return set_string(field, v);
}

/* proxy.db: a database path on the mount. */
static int parse_proxy_db(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                          void *field)
{
    char *v;

    if (!*value || value[0] == '/' || strstr(value, "..") || value[strlen(value) - 1] == '/')
        return cfg_error(p, node->start_mark, "bad database name \"%s\" (use the path on the mount without a "
                                              "leading '/', e.g. %s)", value, k->example);
    v = strdup(value);
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
}

/* proxy.passthrough: one pattern or a list of them (fnmatch, on the request path). */
static int parse_passthrough(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                             void *field)
{
    char ***arr = field;
    size_t *count = (size_t *)((char *)field - k->off + k->count_off);
    char **na, *v;

    if (!*value)
        return cfg_error(p, node->start_mark, "empty pattern (use e.g. %s)", k->example);
    if (value[0] != '/' && value[0] != '*' && value[0] != '?' && value[0] != '[')
        return cfg_error(p, node->start_mark, "pattern \"%s\" can never match a request path, which starts with "
                                              "'/' (e.g. /static/* or *.css)", value);
    v = strdup(value);
    na = v ? realloc(*arr, (*count + 1) * sizeof *na) : NULL;
    if (!na) {
        free(v);
        return LV_ENOMEM;
    }
    na[(*count)++] = v;
    *arr = na;
    return 0;
}

/* proxy.max-lag-wait: a duration up to a minute. */
static int parse_lag_wait(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                          void *field)
{
    int rc = parse_interval(p, k, node, value, field);

    if (rc == 0 && *(int64_t *)field > MAX_PROXY_MAX_LAG_WAIT_US)
        return cfg_error(p, node->start_mark, "max-lag-wait must be at most 1m (e.g. %s)", k->example);
    return rc;
}

/* proxy.max-conns: 1..100000. */
static int parse_max_conns(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                           void *field)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < 1 || v > MAX_PROXY_MAX_CONNS)
        return cfg_error(p, node->start_mark, "expected a number from 1 to %d, found \"%s\" (e.g. %s)",
                         MAX_PROXY_MAX_CONNS, value, k->example);
    *(int *)field = (int)v;
    return 0;
}

/* Fill the defaults of archive destinations after the walk. */
static void archive_defaults(struct config *cfg)
{
    for (size_t i = 0; i < cfg->narchive; i++) {
        struct archiver_dest *a = &cfg->archive[i];
        if (!a->sync_interval_us)
            a->sync_interval_us = DEFAULT_SYNC_INTERVAL_US;
        if (!a->snapshot_interval_us)
            a->snapshot_interval_us = DEFAULT_SNAPSHOT_INTERVAL_US;
        if (!a->retention_us)
            a->retention_us = DEFAULT_RETENTION_US;
        if (!a->parallel)
            a->parallel = DEFAULT_PARALLEL;
        if (!a->delete_delay_us)
            a->delete_delay_us = DEFAULT_DELETE_DELAY_US;
        if (!a->manifest_interval_us)
            a->manifest_interval_us = DEFAULT_MANIFEST_INTERVAL_US;
        if (!a->shutdown_timeout_us)
            a->shutdown_timeout_us = DEFAULT_SHUTDOWN_TIMEOUT_US;
        if (!a->compaction_set) {
            for (size_t j = 0; j < LV_ARRAY_LEN(default_levels_us); j++)
                a->compaction_us[j] = default_levels_us[j];
            a->ncompaction = LV_ARRAY_LEN(default_levels_us);
        }
    }
}

/* ---- schema ---- */

static int parse_bool(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                      void *field);

static const struct cfg_key fuse_keys[] = {
    {.name = "dir", .parse = parse_dir, .off = offsetof(struct config, fuse_dir), .owned = 1, .example = DEFAULT_FUSE_DIR},
    {.name = "allow-other", .parse = parse_bool, .off = offsetof(struct config, fuse_allow_other), .example = "false"},
    {.name = "wal-passthrough", .parse = parse_bool, .off = offsetof(struct config, fuse_wal_passthrough), .example = "true"},
    {.name = "journal-passthrough", .parse = parse_bool, .off = offsetof(struct config, fuse_journal_passthrough), .example = "true"},
    {.name = NULL},
};

static const struct cfg_key data_keys[] = {
    {.name = "dir", .parse = parse_dir, .off = offsetof(struct config, data_dir), .owned = 1, .example = DEFAULT_DATA_DIR},
    {.name = "state-interval", .parse = parse_interval, .off = offsetof(struct config, state_interval_us), .example = "30s"},
    {.name = "segment-size", .parse = parse_segsize, .off = offsetof(struct config, segment_size), .example = "64MiB"},
    {.name = "max-log-size", .parse = parse_maxlog, .off = offsetof(struct config, max_log_size), .example = "10GiB"},
    {.name = NULL},
};

static const struct cfg_key http_keys[] = {
    {.name = "addr", .parse = parse_addr, .off = offsetof(struct config, http_addr), .owned = 1, .example = DEFAULT_HTTP_ADDR},
    {.name = "public", .parse = parse_bool, .off = offsetof(struct config, http_public), .example = "true"},
    {.name = "image-space", .parse = parse_image_space, .off = offsetof(struct config, http_image_space), .example = "auto"},
    {.name = "header-timeout", .parse = parse_header_timeout, .off = offsetof(struct config, http_header_timeout_us), .example = "10s"},
    {.name = "max-conns-per-address", .parse = parse_per_addr, .off = offsetof(struct config, http_per_addr), .example = "16"},
    {.name = "token", .parse = parse_token, .off = offsetof(struct config, http_token), .owned = 1, .example = "${LITEVAULT_TOKEN}"},
    {.name = "token-file", .parse = parse_file, .off = offsetof(struct config, http_token_file), .owned = 1, .example = "/etc/litevault/token"},
    {.name = "allow-no-token", .parse = parse_bool, .off = offsetof(struct config, http_allow_no_token), .example = "false"},
    {.name = "tls-cert", .parse = parse_file, .off = offsetof(struct config, http_tls_cert), .owned = 1, .example = "/etc/litevault/cert.pem"},
    {.name = "tls-key", .parse = parse_file, .off = offsetof(struct config, http_tls_key), .owned = 1, .example = "/etc/litevault/key.pem"},
    {.name = "tls-ca", .parse = parse_file, .off = offsetof(struct config, http_tls_ca), .owned = 1, .example = "/etc/litevault/ca.pem"},
    {.name = NULL},
};

static const struct cfg_key lease_keys[] = {
    {.name = "type", .parse = parse_lease_type, .off = offsetof(struct config, lease_type), .owned = 1, .example = "static"},
    {.name = "candidate", .parse = parse_bool, .off = offsetof(struct config, lease_candidate), .example = "true"},
    {.name = "advertise-url", .parse = parse_peer_url, .off = offsetof(struct config, advertise_url), .owned = 1, .example = "http://db1.internal:20202"},
    {.name = "primary-url", .parse = parse_peer_url, .off = offsetof(struct config, primary_url), .owned = 1, .example = "http://db1.internal:20202"},
    {.name = "endpoints", .parse = parse_endpoints, .seq = CFG_SEQ_JOIN, .off = offsetof(struct config, lease_endpoints), .owned = 1, .example = "[http://10.0.0.1:2379, http://10.0.0.2:2379]"},
    {.name = "key", .parse = parse_lease_key, .off = offsetof(struct config, lease_key), .owned = 1, .example = "/litevault/app/primary"},
    {.name = "ttl", .parse = parse_lease_ttl, .off = offsetof(struct config, lease_ttl_us), .example = "10s"},
    {.name = "tls-ca", .parse = parse_file, .off = offsetof(struct config, lease_tls_ca), .owned = 1, .example = "/etc/litevault/etcd-ca.pem"},
    {.name = "tls-cert", .parse = parse_file, .off = offsetof(struct config, lease_tls_cert), .owned = 1, .example = "/etc/litevault/etcd-client.pem"},
    {.name = "tls-key", .parse = parse_file, .off = offsetof(struct config, lease_tls_key), .owned = 1, .example = "/etc/litevault/etcd-client-key.pem"},
    {.name = "username", .parse = parse_str, .off = offsetof(struct config, lease_username), .owned = 1, .example = "litevault"},
    {.name = "password", .parse = parse_password, .off = offsetof(struct config, lease_password), .owned = 1, .example = "${ETCD_PASSWORD}"},
    {.name = "password-file", .parse = parse_file, .off = offsetof(struct config, lease_password_file), .owned = 1, .example = "/etc/litevault/etcd-password"},
    {.name = NULL},
};

static const struct cfg_key replication_keys[] = {
    {.name = "max-lag", .parse = parse_interval, .off = offsetof(struct config, repl_max_lag_us), .example = "10s"},
    {.name = "max-retain", .parse = parse_retain, .off = offsetof(struct config, repl_max_retain), .example = "1GiB"},
    {.name = "seed", .parse = parse_bool, .off = offsetof(struct config, repl_seed), .example = "true"},
    {.name = "apply-wait", .parse = parse_apply_wait, .off = offsetof(struct config, repl_apply_wait_us), .example = "100ms"},
    {.name = "sync-replicas", .parse = parse_sync_replicas, .off = offsetof(struct config, repl_sync_replicas), .example = "1"},
    {.name = "sync-timeout", .parse = parse_sync_timeout, .off = offsetof(struct config, repl_sync_timeout_us), .example = "5s"},
    {.name = "wait-durable", .parse = parse_wait_durable, .off = offsetof(struct config, repl_wait_durable), .example = "auto"},
    {.name = NULL},
};

static const struct cfg_key proxy_keys[] = {
    {.name = "addr", .parse = parse_addr, .off = offsetof(struct config, proxy_addr), .owned = 1, .required = 1, .example = "0.0.0.0:8080"},
    {.name = "target", .parse = parse_proxy_target, .off = offsetof(struct config, proxy_target), .owned = 1, .required = 1, .example = "127.0.0.1:8081"},
    {.name = "db", .parse = parse_proxy_db, .off = offsetof(struct config, proxy_db), .owned = 1, .required = 1, .example = "app.db"},
    {.name = "passthrough", .parse = parse_passthrough, .off = offsetof(struct config, proxy_passthrough), .owned = 2,
     .seq = CFG_SEQ_EACH, .count_off = offsetof(struct config, nproxy_passthrough), .example = "/static/*"},
    {.name = "max-lag-wait", .parse = parse_lag_wait, .off = offsetof(struct config, proxy_max_lag_wait_us), .example = "5s"},
    {.name = "header-timeout", .parse = parse_header_timeout, .off = offsetof(struct config, proxy_header_timeout_us), .example = "10s"},
    {.name = "max-conns", .parse = parse_max_conns, .off = offsetof(struct config, proxy_max_conns), .example = "256"},
    {.name = "advertise-url", .parse = parse_proxy_url, .off = offsetof(struct config, proxy_advertise_url), .owned = 1, .example = "http://db1.internal:8080"},
    {.name = "primary-url", .parse = parse_proxy_url, .off = offsetof(struct config, proxy_primary_url), .owned = 1, .example = "http://db1.internal:8080"},
    {.name = NULL},
};

static const struct cfg_key log_keys[] = {
    {.name = "level", .parse = parse_level, .off = offsetof(struct config, log_level), .example = "info"},
    {.name = "format", .parse = parse_format, .off = offsetof(struct config, log_json), .example = "text"},
    {.name = NULL},
};

/* ---- exports (scheduled export jobs) ---- */

#define DEFAULT_EXPORT_KEEP 7
#define MAX_EXPORT_KEEP 100000

static int parse_export_name(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                             void *field)
{
    char *v;

    LV_UNUSED(k);
    if (!*value || strlen(value) > 64 || value[0] == '.')
        goto bad;
    for (const char *c = value; *c; c++) {
        if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' && *c != '-')
            goto bad;
    }
    v = strdup(value);
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
bad:
    return cfg_error(p, node->start_mark,
                     "bad job name \"%s\" (use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.')",
                     value);
}

static int parse_schedule(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                          void *field)
{
    struct cron c;
    char why[256];
    char *v;

    LV_UNUSED(k);
    if (cron_parse(value, &c, why, sizeof why) < 0)
        return cfg_error(p, node->start_mark, "bad schedule \"%s\": %s (schedules are in UTC)", value, why);
    v = strdup(value);
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
}

static int parse_export_url(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                            void *field)
{
    char *v;

    if (!*value)
        return cfg_error(p, node->start_mark, "empty value (set a directory, file:///dir or s3://BUCKET/PREFIX, e.g. %s)",
                         k->example);
    if (strstr(value, "://")) {
        if (strncmp(value, "s3://", 5) == 0) {
            if (!value[5] || value[5] == '/' || value[5] == '?')
                return cfg_error(p, node->start_mark, "s3 URL \"%s\" has no bucket (use s3://BUCKET/PREFIX)", value);
        } else if (strncmp(value, "file://", 7) == 0) {
            if (value[7] != '/')
                return cfg_error(p, node->start_mark, "file URL \"%s\" needs an absolute path (file:///dir)", value);
        } else {
            return cfg_error(p, node->start_mark,
                             "unsupported URL \"%s\" (use a directory, file:///dir or s3://BUCKET/PREFIX)", value);
        }
        v = strdup(value);
    } else {
        v = resolve_path(p->basedir, value); /* a directory, relative to the config file */
    }
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
}

static int parse_export_format(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                               void *field)
{
    LV_UNUSED(k);
    if (strcmp(value, "db") == 0)
        *(int *)field = EXPORTS_FMT_DB;
    else if (strcmp(value, "tar.zst") == 0)
        *(int *)field = EXPORTS_FMT_TAR_ZST;
    else
        return cfg_error(p, node->start_mark, "unknown format \"%s\" (use db or tar.zst)", value);
    return 0;
}

/* databases: "all", or (called once per item) one name of a list. */
static int parse_export_databases(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                                  void *field)
{
    char ***arr = field;
    size_t *count = (size_t *)((char *)field - k->off + k->count_off), len = strlen(p->keypath);
    char **na, *v;

    if (len == 0 || p->keypath[len - 1] != ']') { /* a single value */
        if (strcmp(value, "all") == 0)
            return 0;
        return cfg_error(p, node->start_mark, "expected all, or a list of database names such as [app.db, dir/b.db]"
                                              ", found \"%s\"", value);
    }
    if (!*value || value[0] == '/' || strstr(value, "..") || value[strlen(value) - 1] == '/')
        return cfg_error(p, node->start_mark,
                         "bad database name \"%s\" (use the path on the mount without a leading '/', e.g. dir/app.db)",
                         value);
    for (size_t i = 0; i < *count; i++) {
        if (strcmp((*arr)[i], value) == 0)
            return cfg_error(p, node->start_mark, "database \"%s\" is listed twice", value);
    }
    v = strdup(value);
    na = v ? realloc(*arr, (*count + 1) * sizeof *na) : NULL;
    if (!na) {
        free(v);
        return LV_ENOMEM;
    }
    na[(*count)++] = v;
    *arr = na;
    return 0;
}

static int parse_export_keep(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                             void *field)
{
    char *end;
    long v;

    LV_UNUSED(k);
    errno = 0;
    v = strtol(value, &end, 10);
    if (!*value || *end || errno || v < 1 || v > MAX_EXPORT_KEEP)
        return cfg_error(p, node->start_mark, "bad count \"%s\" (use an integer from 1 to %d, e.g. %d)", value,
                         MAX_EXPORT_KEEP, DEFAULT_EXPORT_KEEP);
    *(int *)field = (int)v;
    return 0;
}

static int parse_export_on(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                           void *field)
{
    LV_UNUSED(k);
    if (strcmp(value, "primary") == 0) {
        *(int *)field = EXPORTS_ON_PRIMARY;
        return 0;
    }
    if (strcmp(value, "replica") == 0)
        return cfg_error(p, node->start_mark, "on: replica is not supported yet (replication does not exist yet; "
                                              "use primary)");
    return cfg_error(p, node->start_mark, "unknown value \"%s\" (use primary)", value);
}

/* true/yes/on or false/no/off, into an int. */
static int parse_bool(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *node, const char *value,
                             void *field)
{
    LV_UNUSED(k);
    if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "on") == 0)
        *(int *)field = 1;
    else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "off") == 0)
        *(int *)field = 0;
    else
        return cfg_error(p, node->start_mark, "expected true or false, found \"%s\"", value);
    return 0;
}

static void export_init(void *elem, size_t i)
{
    struct exports_job *e = elem;

    e->keep = DEFAULT_EXPORT_KEEP;
    e->s3.force_path_style = -1;
    e->format = EXPORTS_FMT_DB;
    e->on = EXPORTS_ON_PRIMARY;
    if (asprintf(&e->name, "job%zu", i + 1) < 0)
        e->name = NULL; /* checked in export_check */
}

static int export_check(struct cfg_parser *p, yaml_node_t *item, char *arr, size_t i)
{
    struct exports_job *v = (struct exports_job *)arr, *e = &v[i];

    if (!e->name)
        return LV_ENOMEM;
    for (size_t j = 0; j < i; j++) {
        if (strcmp(v[j].name, e->name) == 0)
            return cfg_error(p, item->start_mark, "job name \"%s\" is also used by exports[%zu] (names must be "
                                                  "unique: each job keeps its state under that name)", e->name, j);
    }
    if (strncmp(e->url, "s3://", 5) != 0 && store_conf_any(&e->s3))
        return cfg_error(p, item->start_mark, "endpoint, region, force-path-style and credentials apply only to an "
                                              "s3:// url (url is %s)", e->url);
    if (!e->s3.access_key_id != !e->s3.secret_access_key)
        return cfg_error(p, item->start_mark, "set both access-key-id and secret-access-key, or neither (to use "
                                              "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)");
    return 0;
}

/* The S3 keys of an archive[] or exports[] item, into its struct store_conf
 * at member M of type T (one table for both lists). */
#define CFG_S3_KEYS(T, M)                                                                                          \
    {.name = "endpoint", .parse = parse_str, .off = offsetof(T, M.endpoint), .owned = 1,                           \
     .example = "http://127.0.0.1:9000"},                                                                          \
    {.name = "region", .parse = parse_str, .off = offsetof(T, M.region), .owned = 1, .example = "us-east-1"},      \
    {.name = "force-path-style", .parse = parse_bool, .off = offsetof(T, M.force_path_style), .example = "true"},  \
    {.name = "access-key-id", .parse = parse_str, .off = offsetof(T, M.access_key_id), .owned = 1,                 \
     .example = "${AWS_ACCESS_KEY_ID}"},                                                                           \
    {.name = "secret-access-key", .parse = parse_str, .off = offsetof(T, M.secret_access_key), .owned = 1,         \
     .example = "${AWS_SECRET_ACCESS_KEY}"},                                                                       \
    {.name = "session-token", .parse = parse_str, .off = offsetof(T, M.session_token), .owned = 1,                 \
     .example = "${AWS_SESSION_TOKEN}"}

static const struct cfg_key export_keys[] = {
    {.name = "name", .parse = parse_export_name, .off = offsetof(struct exports_job, name), .owned = 1, .example = "nightly"},
    {.name = "schedule", .parse = parse_schedule, .off = offsetof(struct exports_job, schedule), .owned = 1,
     .required = 1, .example = "@daily"},
    {.name = "url", .parse = parse_export_url, .off = offsetof(struct exports_job, url), .owned = 1, .required = 1,
     .example = "s3://bucket/exports"},
    {.name = "format", .parse = parse_export_format, .off = offsetof(struct exports_job, format), .example = "db"},
    {.name = "databases", .parse = parse_export_databases, .off = offsetof(struct exports_job, databases),
     .owned = 2, .seq = CFG_SEQ_EACH, .count_off = offsetof(struct exports_job, ndatabases), .example = "all"},
    {.name = "keep", .parse = parse_export_keep, .off = offsetof(struct exports_job, keep), .example = "7"},
    {.name = "on", .parse = parse_export_on, .off = offsetof(struct exports_job, on), .example = "primary"},
    CFG_S3_KEYS(struct exports_job, s3),
    {.name = NULL},
};

/* Defaults of an archive[] item that zero cannot express (the rest are
 * filled after the walk). */
static void archive_init(void *elem, size_t i)
{
    LV_UNUSED(i);
    ((struct archiver_dest *)elem)->s3.force_path_style = -1;
}

#define AOFF(f) offsetof(struct archiver_dest, f)
static const struct cfg_key archive_keys[] = {
    {.name = "url", .parse = parse_url, .off = AOFF(url), .owned = 1, .required = 1, .example = "file:///var/lib/litevault/archive"},
    CFG_S3_KEYS(struct archiver_dest, s3),
    {.name = "sync-interval", .parse = parse_interval, .off = AOFF(sync_interval_us), .example = "1s"},
    {.name = "snapshot-interval", .parse = parse_interval, .off = AOFF(snapshot_interval_us), .example = "24h"},
    {.name = "retention", .parse = parse_interval, .off = AOFF(retention_us), .example = "7d"},
    {.name = "compaction", .parse = parse_levels, .off = AOFF(compaction_us), .seq = CFG_SEQ_JOIN, .example = "[30s, 5m, 1h]"},
    {.name = "parallel", .parse = parse_parallel, .off = AOFF(parallel), .example = "4"},
    {.name = "delete-delay", .parse = parse_interval, .off = AOFF(delete_delay_us), .example = "5m"},
    {.name = "manifest-interval", .parse = parse_interval, .off = AOFF(manifest_interval_us), .example = "1m"},
    {.name = "shutdown-timeout", .parse = parse_interval, .off = AOFF(shutdown_timeout_us), .example = "30s"},
    {.name = NULL},
};

/* Top level. */
static const struct cfg_key top_keys[] = {
    {.name = "fuse", .kind = CFG_SECTION, .sub = fuse_keys},
    {.name = "data", .kind = CFG_SECTION, .sub = data_keys},
    {.name = "http", .kind = CFG_SECTION, .sub = http_keys},
    {.name = "log", .kind = CFG_SECTION, .sub = log_keys},
    {.name = "lease", .kind = CFG_SECTION, .sub = lease_keys},
    {.name = "replication", .kind = CFG_SECTION, .sub = replication_keys},
    {.name = "proxy", .kind = CFG_SECTION, .sub = proxy_keys},
    {.name = "exports", .kind = CFG_LIST, .sub = export_keys, .off = offsetof(struct config, exports),
     .count_off = offsetof(struct config, nexports), .elem_size = sizeof(struct exports_job),
     .elem_init = export_init, .elem_check = export_check},
    {.name = "archive", .kind = CFG_LIST, .sub = archive_keys, .off = offsetof(struct config, archive),
     .count_off = offsetof(struct config, narchive), .elem_size = sizeof(struct archiver_dest),
     .elem_init = archive_init},
    {.name = NULL},
};

/* ---- the walk ---- */

static int is_null_scalar(const yaml_node_t *n)
{
    const char *v = (const char *)n->data.scalar.value;

    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

/* Expand ${NAME} in the scalar of node; *out is malloc'ed (caller frees). 0 or an error. */
static int expand_env(struct cfg_parser *p, yaml_node_t *node, char **out)
{
    const char *s = (const char *)node->data.scalar.value;
    size_t len = node->data.scalar.length, cap = len + 1, used = 0;
    char *buf = malloc(cap), *nb;
    int rc = 0;

    if (!buf)
        return LV_ENOMEM;
    for (size_t i = 0; i < len;) {
        const char *piece = s + i, *val;
        size_t plen = 1;
        char name[128];

        if (s[i] == '$' && i + 2 < len && s[i + 1] == '$' && s[i + 2] == '{') {
            piece = "${"; /* $${ is a literal ${ */
            plen = 2;
            i += 3;
        } else if (s[i] == '$' && i + 1 < len && s[i + 1] == '{') {
            const char *close = memchr(s + i + 2, '}', len - i - 2);
            size_t nlen;
            if (!close) {
                rc = cfg_error(p, node->start_mark, "unterminated ${ (write ${NAME}, or $${ for a literal ${)");
                goto out_free_buf;
            }
            nlen = (size_t)(close - (s + i + 2));
            if (nlen == 0 || nlen >= sizeof name) {
                rc = cfg_error(p, node->start_mark, "bad variable name in ${} (write ${NAME})");
                goto out_free_buf;
            }
            memcpy(name, s + i + 2, nlen);
            name[nlen] = '\0';
            for (size_t j = 0; j < nlen; j++) {
                char c = name[j];
                if (!(c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (j > 0 && c >= '0' && c <= '9'))) {
                    rc = cfg_error(p, node->start_mark,
                                   "bad variable name \"%s\" (use letters, digits and _, e.g. ${HOME})", name);
                    goto out_free_buf;
                }
            }
            val = getenv(name);
            if (!val) {
                rc = cfg_error(p, node->start_mark,
                               "environment variable %s is not set (set it, or write $${ for a literal ${)", name);
                goto out_free_buf;
            }
            piece = val;
            plen = strlen(val);
            i += nlen + 3;
        } else {
            i++;
        }
        if (used + plen + 1 > cap) {
            cap = (used + plen + 1) * 2;
            nb = realloc(buf, cap);
            if (!nb) {
                rc = LV_ENOMEM;
                goto out_free_buf;
            }
            buf = nb;
        }
        memcpy(buf + used, piece, plen);
        used += plen;
    }
    buf[used] = '\0';
    *out = buf;
    return 0;

out_free_buf:
    free(buf);
    return rc;
}

static int walk_mapping(struct cfg_parser *p, yaml_node_t *map, const struct cfg_key *keys, char *base);

/* Append ".name" (or "name" at the top) to p->keypath; returns the old length to restore. */
static size_t push_key(struct cfg_parser *p, const char *name)
{
    size_t old = strlen(p->keypath);

    snprintf(p->keypath + old, sizeof p->keypath - old, "%s%s", old ? "." : "", name);
    return old;
}

static int walk_leaf(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *val, char *base)
{
    char *v = NULL;
    int rc;

    if (val->type == YAML_SEQUENCE_NODE && k->seq == CFG_SEQ_EACH) {
        size_t old = strlen(p->keypath), n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
        rc = 0;
        if (n == 0)
            return cfg_error(p, val->start_mark, "empty list (list at least one value, or remove the key)");
        for (size_t j = 0; j < n && rc == 0; j++) {
            yaml_node_t *item = yaml_document_get_node(p->doc, val->data.sequence.items.start[j]);
            snprintf(p->keypath + old, sizeof p->keypath - old, "[%zu]", j);
            if (item->type != YAML_SCALAR_NODE || is_null_scalar(item))
                rc = cfg_error(p, item->start_mark, "expected a single value such as %s, found %s", k->example,
                               item->type == YAML_SCALAR_NODE ? "nothing" : node_kind_name(item));
            else if ((rc = expand_env(p, item, &v)) == 0) {
                rc = k->parse(p, k, item, v, base + k->off);
                free(v);
                v = NULL;
            }
        }
        p->keypath[old] = '\0';
        return rc;
    }
    if (val->type == YAML_SEQUENCE_NODE && k->seq == CFG_SEQ_JOIN) {
        size_t used = 0, cap = 1;
        v = calloc(1, 1);
        for (yaml_node_item_t *it = val->data.sequence.items.start; v && it < val->data.sequence.items.top; it++) {
            yaml_node_t *item = yaml_document_get_node(p->doc, *it);
            char *iv = NULL, *nv;
            if (item->type != YAML_SCALAR_NODE || is_null_scalar(item)) {
                free(v);
                return cfg_error(p, item->start_mark, "expected a list of single values such as %s", k->example);
            }
            rc = expand_env(p, item, &iv);
            if (rc < 0) {
                free(v);
                return rc;
            }
            cap = used + strlen(iv) + 2;
            nv = realloc(v, cap);
            if (!nv) {
                free(iv);
                free(v);
                return LV_ENOMEM;
            }
            v = nv;
            used += (size_t)sprintf(v + used, "%s%s", used ? "," : "", iv);
            free(iv);
        }
        if (!v)
            return LV_ENOMEM;
        rc = k->parse(p, k, val, v, base + k->off);
        free(v);
        return rc;
    }
    if (val->type != YAML_SCALAR_NODE)
        return cfg_error(p, val->start_mark, "expected a single value such as %s, found %s", k->example,
                         node_kind_name(val));
    if (is_null_scalar(val)) {
        v = strdup("");
        if (!v)
            return LV_ENOMEM;
    } else {
        rc = expand_env(p, val, &v);
        if (rc < 0)
            return rc;
    }
    rc = k->parse(p, k, val, v, base + k->off);
    free(v);
    return rc;
}

static int walk_list(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *val, char *base)
{
    char **arr = (char **)(base + k->off);
    size_t *count = (size_t *)(base + k->count_off), n, old = strlen(p->keypath);
    char listkeys[256];
    int rc = 0;

    if (is_null_scalar(val))
        return 0;
    key_list(k->sub, listkeys, sizeof listkeys);
    if (val->type != YAML_SEQUENCE_NODE)
        return cfg_error(p, val->start_mark, "expected a list of mappings (keys %s), found %s", listkeys,
                         node_kind_name(val));
    n = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
    if (n == 0)
        return 0;
    *arr = calloc(n, k->elem_size);
    if (!*arr)
        return LV_ENOMEM;
    *count = n;
    for (size_t i = 0; i < n && rc == 0; i++) {
        yaml_node_t *item = yaml_document_get_node(p->doc, val->data.sequence.items.start[i]);
        snprintf(p->keypath + old, sizeof p->keypath - old, "[%zu]", i);
        if (k->elem_init)
            k->elem_init(*arr + i * k->elem_size, i);
        if (item->type != YAML_MAPPING_NODE)
            rc = cfg_error(p, item->start_mark, "expected a mapping (keys %s), found %s", listkeys, node_kind_name(item));
        else
            rc = walk_mapping(p, item, k->sub, *arr + i * k->elem_size);
        if (rc == 0 && k->elem_check)
            rc = k->elem_check(p, item, *arr, i);
    }
    p->keypath[old] = '\0';
    return rc;
}

/* Check every pair of map against keys, filling the object at base. */
static int walk_mapping(struct cfg_parser *p, yaml_node_t *map, const struct cfg_key *keys, char *base)
{
    yaml_node_pair_t *pair;
    size_t seen_line[CFG_MAX_KEYS] = {0}; /* 1-based line where key i was set; 0: not seen */
    char valid[256];
    int rc = 0;

    key_list(keys, valid, sizeof valid);
    for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *kn = yaml_document_get_node(p->doc, pair->key);
        yaml_node_t *vn = yaml_document_get_node(p->doc, pair->value);
        const struct cfg_key *k = NULL;
        const char *name;
        size_t old;
        int idx;

        if (kn->type != YAML_SCALAR_NODE)
            return cfg_error(p, kn->start_mark, "keys must be plain names, found %s (valid keys: %s)",
                             node_kind_name(kn), valid);
        name = (const char *)kn->data.scalar.value;
        for (idx = 0; keys[idx].name; idx++) {
            if (strcmp(keys[idx].name, name) == 0) {
                k = &keys[idx];
                break;
            }
        }
        old = push_key(p, name);
        if (!k) {
            const char *best = NULL;
            int bestd = 3;
            for (int i = 0; keys[i].name; i++) {
                int d = edit_distance(name, keys[i].name, 2);
                if (d < bestd) {
                    bestd = d;
                    best = keys[i].name;
                }
            }
            if (best)
                rc = cfg_error(p, kn->start_mark, "unknown key (did you mean \"%s\"? valid keys here: %s)", best, valid);
            else
                rc = cfg_error(p, kn->start_mark, "unknown key (valid keys here: %s)", valid);
            goto out_pop;
        }
        if (seen_line[idx]) {
            rc = cfg_error(p, kn->start_mark, "duplicate key (already set on line %zu; keep only one)", seen_line[idx]);
            goto out_pop;
        }
        seen_line[idx] = kn->start_mark.line + 1;

        switch (k->kind) {
        case CFG_LEAF:
            rc = walk_leaf(p, k, vn, base);
            break;
        case CFG_SECTION:
            if (is_null_scalar(vn))
                break; /* "fuse:" alone: an empty section, all defaults */
            if (vn->type != YAML_MAPPING_NODE) {
                char sub[256];
                key_list(k->sub, sub, sizeof sub);
                rc = cfg_error(p, vn->start_mark, "expected a mapping with keys %s, found %s", sub, node_kind_name(vn));
                break;
            }
            rc = walk_mapping(p, vn, k->sub, base);
            break;
        case CFG_LIST:
            rc = walk_list(p, k, vn, base);
            break;
        }
    out_pop:
        p->keypath[old] = '\0';
        if (rc < 0)
            return rc;
    }
    for (int i = 0; keys[i].name; i++) {
        if (keys[i].required && !seen_line[i]) {
            size_t old = push_key(p, keys[i].name);
            rc = cfg_error(p, map->start_mark, "required key is missing (add %s: ...)", keys[i].name);
            p->keypath[old] = '\0';
            return rc;
        }
    }
    return 0;
}

/* Free what the schema says base owns. */
static void free_schema(const struct cfg_key *keys, char *base)
{
    for (const struct cfg_key *k = keys; k->name; k++) {
        if (k->kind == CFG_LEAF && k->owned == 2) {
            char ***a = (char ***)(base + k->off);
            size_t *count = (size_t *)(base + k->count_off);
            for (size_t i = 0; *a && i < *count; i++)
                free((*a)[i]);
            free(*a);
            *a = NULL;
            *count = 0;
        } else if (k->kind == CFG_LEAF && k->owned) {
            char **s = (char **)(base + k->off);
            free(*s);
            *s = NULL;
        } else if (k->kind == CFG_SECTION) {
            free_schema(k->sub, base);
        } else if (k->kind == CFG_LIST) {
            char **arr = (char **)(base + k->off);
            size_t *count = (size_t *)(base + k->count_off);
            for (size_t i = 0; *arr && i < *count; i++)
                free_schema(k->sub, *arr + i * k->elem_size);
            free(*arr);
            *arr = NULL;
            *count = 0;
        }
    }
}

/* ---- whole-file checks (see the top) ---- */

/* The value node of key in the mapping map (NULL if map is NULL, not a
 * mapping, or lacks key); *kn (if kn) its key node. */
static yaml_node_t *map_get(struct cfg_parser *p, yaml_node_t *map, const char *key, yaml_node_t **kn)
{
    if (kn)
        *kn = NULL;
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(p->doc, pair->key);
        if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0) {
            if (kn)
                *kn = k;
            return yaml_document_get_node(p->doc, pair->value);
        }
    }
    return NULL;
}

/* Report at the first non-NULL of a, b, c (nodes), naming keypath. */
static int check_error(struct cfg_parser *p, const char *keypath, yaml_node_t *a, yaml_node_t *b, yaml_node_t *c,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int check_error(struct cfg_parser *p, const char *keypath, yaml_node_t *a, yaml_node_t *b, yaml_node_t *c,
                       const char *fmt, ...)
{
    yaml_node_t *at = a ? a : b ? b : c;
    yaml_mark_t m = at ? at->start_mark : (yaml_mark_t){0};
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->keypath, sizeof p->keypath, "%s", keypath);
    return cfg_error(p, m, "%s", msg);
}

/* Read the secret file path (key: its key path, at: its value node, for
 * messages) into buf (size bytes): at most size - 1 bytes of it, without
 * the trailing newline (\n or \r\n), *n bytes (so with size = MAX + 3,
 * *n > MAX means the file holds more than MAX).  0; or LV_ECONFIG (the
 * file cannot be read, or holds a NUL byte: reported).  The caller checks
 * the contents (never quoting them) and wipes buf. */
static int read_secret_file(struct cfg_parser *p, const char *key, yaml_node_t *at, const char *path, char *buf,
                            size_t size, size_t *n)
{
    FILE *f = fopen(path, "r");
    int rc = 0;

    *n = 0;
    buf[0] = '\0';
    if (!f)
        return check_error(p, key, at, NULL, NULL, "cannot read %s: %s (the daemon's user, and whoever runs "
                           "litevault commands with this configuration, must be able to read it)", path,
                           strerror(errno));
    *n = fread(buf, 1, size - 1, f);
    if (ferror(f))
        rc = check_error(p, key, at, NULL, NULL, "cannot read %s: %s", path, strerror(errno));
    fclose(f);
    if (rc)
        return rc;
    buf[*n] = '\0';
    while (*n > 0 && (buf[*n - 1] == '\n' || buf[*n - 1] == '\r'))
        buf[--*n] = '\0';
    if (strlen(buf) != *n)
        return check_error(p, key, at, NULL, NULL, "%s: the file holds a NUL byte", path);
    return 0;
}

/* Read http.token-file (cfg->http_token_file) into cfg->http_token: one line,
 * its trailing newline dropped.  at: the value node, for messages. */
static int read_token_file(struct cfg_parser *p, yaml_node_t *at, struct config *cfg)
{
    const char *path = cfg->http_token_file, *why;
    char buf[TOKEN_MAX + 3];
    size_t n;
    int rc = read_secret_file(p, "http.token-file", at, path, buf, sizeof buf, &n);

    if (rc)
        goto out;
    if (n == 0) {
        rc = check_error(p, "http.token-file", at, NULL, NULL, "%s is empty (write the token into it, e.g. openssl "
                         "rand -hex 32 > %s)", path, path);
        goto out;
    }
    if ((why = token_problem(buf)) != NULL) {
        rc = check_error(p, "http.token-file", at, NULL, NULL, "%s: %s", path, why);
        goto out;
    }
    cfg->http_token = strdup(buf);
    if (!cfg->http_token)
        rc = LV_ENOMEM;
out:
    explicit_bzero(buf, sizeof buf);
    return rc;
}

/* Read lease.password-file (cfg->lease_password_file) into
 * cfg->lease_password: one line, its trailing newline dropped.  at: the
 * value node, for messages. */
static int read_password_file(struct cfg_parser *p, yaml_node_t *at, struct config *cfg)
{
    const char *path = cfg->lease_password_file;
    char buf[PASSWORD_MAX + 3];
    size_t n;
    int rc = read_secret_file(p, "lease.password-file", at, path, buf, sizeof buf, &n);

    if (rc)
        goto out;
    if (n == 0) {
        rc = check_error(p, "lease.password-file", at, NULL, NULL, "%s is empty (write etcd's password for "
                         "lease.username into it, one line)", path);
        goto out;
    }
    if (n > PASSWORD_MAX) {
        rc = check_error(p, "lease.password-file", at, NULL, NULL, "%s: the password is longer than %d bytes", path,
                         PASSWORD_MAX);
        goto out;
    }
    cfg->lease_password = strdup(buf);
    if (!cfg->lease_password)
        rc = LV_ENOMEM;
out:
    explicit_bzero(buf, sizeof buf);
    return rc;
}

/* etcd authentication: lease.username with lease.password or
 * lease.password-file, one of them (the file is read here). */
static int check_lease_auth(struct cfg_parser *p, yaml_node_t *root, yaml_node_t *lease, struct config *cfg)
{
    yaml_node_t *kn, *vn;

    if (cfg->lease_password && cfg->lease_password_file) {
        map_get(p, lease, "password-file", &kn);
        return check_error(p, "lease.password-file", kn, lease, root, "set lease.password or lease.password-file, "
                           "not both");
    }
    if (cfg->lease_username && !cfg->lease_password && !cfg->lease_password_file) {
        map_get(p, lease, "username", &kn);
        return check_error(p, "lease.username", kn, lease, root, "etcd authentication needs the user's password "
                           "too (add lease.password-file: FILE, or lease.password: ${ENV_VAR}), or remove username");
    }
    if (!cfg->lease_username && (cfg->lease_password || cfg->lease_password_file)) {
        const char *key = cfg->lease_password ? "password" : "password-file";
        map_get(p, lease, key, &kn);
        return check_error(p, cfg->lease_password ? "lease.password" : "lease.password-file", kn, lease, root,
                           "a password needs lease.username too (the etcd user it belongs to), or remove %s", key);
    }
    if (cfg->lease_password_file) {
        vn = map_get(p, lease, "password-file", NULL);
        return read_password_file(p, vn, cfg);
    }
    return 0;
}

/* scheme://<addr> into *field, the host name standing for 0.0.0.0 or [::]. */
static int default_url(const char *addr, const char *scheme, char **field)
{
    const char *port = strrchr(addr, ':');
    char host[256];
    char *v;

    if (port && (strncmp(addr, "0.0.0.0:", 8) == 0 || strncmp(addr, "[::]:", 5) == 0) &&
        gethostname(host, sizeof host) == 0) {
        host[sizeof host - 1] = '\0';
        if (asprintf(&v, "%s://%s%s", scheme, host, port) < 0)
            v = NULL;
    } else if (asprintf(&v, "%s://%s", scheme, addr) < 0) {
        v = NULL;
    }
    if (!v)
        return LV_ENOMEM;
    return set_string(field, v);
}

/* Default advertise-url: http[s]://<http.addr>, the host name standing for 0.0.0.0 or [::]. */
static int default_advertise(struct config *cfg)
{
    return default_url(cfg->http_addr, cfg->http_tls_cert ? "https" : "http", &cfg->advertise_url);
}

/* The proxy's keys that depend on others: a static replica's proxy needs
 * primary-url; advertise-url defaults to http://<proxy.addr>. */
static int check_proxy(struct cfg_parser *p, yaml_node_t *root, struct config *cfg)
{
    yaml_node_t *proxy = map_get(p, root, "proxy", NULL), *kn;

    if (!cfg->proxy_addr)
        return 0;
    if (strcmp(cfg->lease_type, "etcd") == 0 && cfg->proxy_primary_url) {
        map_get(p, proxy, "primary-url", &kn);
        return check_error(p, "proxy.primary-url", kn, proxy, root, "not used with lease.type etcd: the primary "
                           "publishes its proxy.advertise-url with its lease (remove primary-url)");
    }
    if (strcmp(cfg->lease_type, "etcd") != 0 && !cfg->lease_candidate && !cfg->proxy_primary_url) {
        map_get(p, proxy, "addr", &kn);
        return check_error(p, "proxy.primary-url", kn, proxy, root, "required on a replica (lease.candidate false) "
                           "that serves proxy.addr: writes go to the primary's proxy at this URL (add primary-url: "
                           "http://PRIMARY-HOST:PORT, the primary's proxy.addr)");
    }
    if (!cfg->proxy_advertise_url)
        return default_url(cfg->proxy_addr, "http", &cfg->proxy_advertise_url);
    return 0;
}

static int config_check(struct cfg_parser *p, yaml_node_t *root, struct config *cfg)
{
    yaml_node_t *http = map_get(p, root, "http", NULL), *lease = map_get(p, root, "lease", NULL);
    yaml_node_t *kn, *vn, *kn2, *vn2;
    int rc;

    if (cfg->http_token_file) {
        vn = map_get(p, http, "token-file", &kn);
        if (cfg->http_token)
            return check_error(p, "http.token-file", kn, NULL, NULL, "set http.token or http.token-file, not both");
        rc = read_token_file(p, vn, cfg);
        if (rc)
            return rc;
    }
    if (!cfg->http_tls_cert != !cfg->http_tls_key) {
        vn = map_get(p, http, cfg->http_tls_cert ? "tls-cert" : "tls-key", &kn);
        return check_error(p, cfg->http_tls_cert ? "http.tls-cert" : "http.tls-key", kn, NULL, NULL,
                           "set both http.tls-cert and http.tls-key (HTTPS needs the certificate and its private "
                           "key), or neither");
    }
    if (cfg->http_tls_cert && !http_tls_supported()) {
        map_get(p, http, "tls-cert", &kn);
        return check_error(p, "http.tls-cert", kn, NULL, NULL, "this libmicrohttpd was built without TLS, so "
                           "http.addr cannot serve HTTPS (install a libmicrohttpd with GnuTLS, or remove tls-cert and "
                           "tls-key and put a TLS proxy in front)");
    }
    vn = map_get(p, lease, "candidate", &kn);
    if (!vn) /* not set: a node told whom to follow is a replica */
        cfg->lease_candidate = cfg->primary_url == NULL;
    if (strcmp(cfg->lease_type, "etcd") == 0) {
        vn = map_get(p, lease, "type", &kn);
        if (!cfg->lease_endpoints)
            return check_error(p, "lease.endpoints", vn, lease, root, "required with lease.type etcd: the client URLs "
                               "of the etcd members (add endpoints: [http://ETCD-HOST:2379])");
        if (cfg->primary_url)
            return check_error(p, "lease.primary-url", vn, lease, root, "not used with lease.type etcd: the "
                               "primary is whoever holds the lease (remove primary-url)");
        if (!cfg->lease_tls_cert != !cfg->lease_tls_key)
            return check_error(p, cfg->lease_tls_cert ? "lease.tls-cert" : "lease.tls-key", vn, lease, root,
                               "set both lease.tls-cert and lease.tls-key (etcd's client certificate and its key), "
                               "or neither");
        rc = check_lease_auth(p, root, lease, cfg);
        if (rc)
            return rc;
    } else if (cfg->lease_endpoints || cfg->lease_key || cfg->lease_ttl_us || cfg->lease_username ||
               cfg->lease_password || cfg->lease_password_file) {
        const char *key = cfg->lease_endpoints ? "endpoints" : cfg->lease_key ? "key" : cfg->lease_ttl_us ? "ttl"
                          : cfg->lease_username ? "username" : cfg->lease_password ? "password" : "password-file";
        char path[32];
        vn = map_get(p, lease, key, &kn);
        snprintf(path, sizeof path, "lease.%s", key);
        return check_error(p, path, kn, lease, root, "only used with lease.type etcd (set type: etcd, or remove the "
                           "key)");
    } else if (!cfg->lease_candidate && !cfg->primary_url)
        return check_error(p, "lease.primary-url", kn, lease, root, "required when lease.candidate is false: a "
                           "static replica follows the primary at this URL (add primary-url: "
                           "http://PRIMARY-HOST:20202)");
    if (config_http_listens(cfg) && !cfg->http_token && !cfg->http_allow_no_token &&
        !http_addr_is_loopback(cfg->http_addr)) {
        vn = map_get(p, http, "addr", &kn);
        vn2 = map_get(p, http, "public", &kn2);
        return check_error(p, "http.addr", vn, http, root, "%s is not a loopback address and no http.token is set: "
                           "anyone who reaches it could read /status and /metrics and follow every database as a "
                           "replica; set http.token (or http.token-file), or set http.allow-no-token: true to serve "
                           "it without one%s", cfg->http_addr, vn2 ? "" : " (or http.public: false to listen only on "
                           "the admin socket)");
    }
    rc = check_proxy(p, root, cfg);
    if (rc)
        return rc;
    if (!map_get(p, lease, "advertise-url", NULL))
        return default_advertise(cfg);
    return 0;
}

/* ---- public ---- */

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    if (cfg->http_token)
        explicit_bzero(cfg->http_token, strlen(cfg->http_token));
    if (cfg->lease_password)
        explicit_bzero(cfg->lease_password, strlen(cfg->lease_password));
    free_schema(top_keys, (char *)cfg);
    free(cfg->path);
    cfg->path = NULL;
}

int config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->fuse_dir = strdup(DEFAULT_FUSE_DIR);
    cfg->fuse_wal_passthrough = 1;
    cfg->fuse_journal_passthrough = 1;
    cfg->data_dir = strdup(DEFAULT_DATA_DIR);
    cfg->http_addr = strdup(DEFAULT_HTTP_ADDR);
    cfg->http_public = 1;
    cfg->http_header_timeout_us = DEFAULT_HTTP_HEADER_TIMEOUT_US;
    cfg->http_per_addr = DEFAULT_HTTP_PER_ADDR;
    cfg->log_level = LVLOG_INFO;
    cfg->log_json = 0;
    cfg->state_interval_us = DEFAULT_STATE_INTERVAL_US;
    cfg->segment_size = DEFAULT_SEGMENT_SIZE;
    cfg->max_log_size = DEFAULT_MAX_LOG_SIZE;
    cfg->lease_type = strdup(DEFAULT_LEASE_TYPE);
    cfg->lease_candidate = 1;
    cfg->lease_ttl_us = 0; /* lease.ttl unset (etcd: DEFAULT_LEASE_TTL_US) */
    cfg->advertise_url = strdup("http://" DEFAULT_HTTP_ADDR);
    cfg->repl_max_lag_us = DEFAULT_REPL_MAX_LAG_US;
    cfg->repl_max_retain = DEFAULT_REPL_MAX_RETAIN;
    cfg->repl_seed = 1;
    cfg->repl_apply_wait_us = DEFAULT_REPL_APPLY_WAIT_US;
    cfg->repl_sync_timeout_us = DEFAULT_REPL_SYNC_TIMEOUT_US;
    cfg->proxy_max_lag_wait_us = DEFAULT_PROXY_MAX_LAG_WAIT_US;
    cfg->proxy_header_timeout_us = DEFAULT_PROXY_HEADER_TIMEOUT_US;
    cfg->proxy_max_conns = DEFAULT_PROXY_MAX_CONNS;
    if (!cfg->fuse_dir || !cfg->data_dir || !cfg->http_addr || !cfg->lease_type || !cfg->advertise_url) {
        config_free(cfg);
        return LV_ENOMEM;
    }
    return 0;
}

int config_http_listens(const struct config *cfg)
{
    return cfg->http_public || cfg->http_token != NULL;
}

int config_admin_socket(const struct config *cfg, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/admin.sock", cfg->data_dir);

    return n < 0 || (size_t)n >= len ? LV_EINVAL : 0;
}

const char *config_find(const char *explicit_path)
{
    if (explicit_path)
        return explicit_path;
    if (access("litevault.yml", F_OK) == 0)
        return "litevault.yml";
    if (access("/etc/litevault.yml", F_OK) == 0)
        return "/etc/litevault.yml";
    return NULL;
}

/* Read all of f into a malloc'ed buffer; NULL on error (errno set). */
static char *slurp(FILE *f, size_t *len)
{
    size_t cap = 4096, used = 0;
    char *buf = malloc(cap), *nb;

    while (buf) {
        size_t n = fread(buf + used, 1, cap - used, f);
        used += n;
        if (n == 0) {
            if (ferror(f)) {
                free(buf);
                return NULL;
            }
            *len = used;
            return buf;
        }
        if (used == cap) {
            nb = realloc(buf, cap * 2);
            if (!nb)
                free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    errno = ENOMEM;
    return NULL;
}

/* Line:column (0-based) of byte offset off in buf, for reader errors that carry only an offset. */
static yaml_mark_t mark_at(const char *buf, size_t len, size_t off)
{
    yaml_mark_t m = {0};

    for (size_t i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') {
            m.line++;
            m.column = 0;
        } else {
            m.column++;
        }
    }
    m.index = off;
    return m;
}

/* Read the file path into *buf (*len bytes, malloc'ed) and its directory,
 * absolute, into *dir (malloc'ed), for relative paths in it.  0 or
 * LV_ENOENT with the message in err. */
static int cfg_read(const char *path, char **buf, size_t *len, char **dir, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *slash;

    *buf = *dir = NULL;
    if (!f) {
        if (err)
            snprintf(err, errlen, "%s: cannot open: %s (check the path given with -c)", path, strerror(errno));
        return LV_ENOENT;
    }
    *buf = slurp(f, len);
    fclose(f);
    if (!*buf) {
        if (err)
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return LV_ENOENT;
    }
    *dir = realpath(path, NULL);
    if (!*dir) {
        if (err)
            snprintf(err, errlen, "%s: cannot resolve path: %s", path, strerror(errno));
        free(*buf);
        *buf = NULL;
        return LV_ENOENT;
    }
    slash = strrchr(*dir, '/');
    if (slash == *dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    return 0;
}

/* Parse buf (len bytes) into *doc: exactly one YAML document (a second
 * "---" is most likely a mistake).  0 (*doc to be deleted by the caller),
 * or negative with the error reported through p (no document then). */
static int cfg_parse(struct cfg_parser *p, yaml_parser_t *parser, const char *buf, size_t len, yaml_document_t *doc)
{
    yaml_document_t extra;
    int rc;

    yaml_parser_set_input_string(parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(parser, doc)) {
        yaml_mark_t m = parser->error == YAML_READER_ERROR ? mark_at(buf, len, parser->problem_offset)
                                                           : parser->problem_mark;
        int tab = m.index < len && buf[m.index] == '\t';
        p->syntax = 1;
        rc = cfg_error(p, m, "syntax error: %s%s%s (%s)", parser->problem ? parser->problem : "unknown problem",
                       parser->context ? " " : "", parser->context ? parser->context : "",
                       tab ? "YAML does not allow tabs for indentation: use spaces"
                           : "fix the YAML: check indentation, colons and quotes");
        return parser->error == YAML_MEMORY_ERROR ? LV_ENOMEM : rc;
    }
    if (!yaml_document_get_root_node(doc))
        return 0; /* empty file: all defaults */
    if (!yaml_parser_load(parser, &extra)) {
        p->syntax = 1;
        rc = cfg_error(p, parser->problem_mark, "syntax error: %s (fix the YAML)",
                       parser->problem ? parser->problem : "unknown problem");
        yaml_document_delete(doc);
        return rc;
    }
    if (yaml_document_get_root_node(&extra)) {
        p->syntax = 1;
        rc = cfg_error(p, yaml_document_get_root_node(&extra)->start_mark,
                       "a second YAML document is not allowed (remove the extra \"---\" and what follows)");
        yaml_document_delete(&extra);
        yaml_document_delete(doc);
        return rc;
    }
    yaml_document_delete(&extra);
    return 0;
}

int config_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
    struct cfg_parser p = {.file = path, .err = err, .errlen = errlen};
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    char *buf = NULL, *dir = NULL;
    size_t len = 0;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    rc = config_defaults(cfg);
    if (rc < 0 || !path)
        return rc;
    cfg->path = strdup(path);
    if (!cfg->path) {
        rc = LV_ENOMEM;
        goto out_fail;
    }
    rc = cfg_read(path, &buf, &len, &dir, err, errlen);
    if (rc)
        goto out_fail;
    p.basedir = dir;
    if (!yaml_parser_initialize(&parser)) {
        rc = LV_ENOMEM;
        goto out_free;
    }
    rc = cfg_parse(&p, &parser, buf, len, &doc);
    if (rc)
        goto out_delete_parser;
    p.doc = &doc;
    root = yaml_document_get_root_node(&doc);
    if (!root || is_null_scalar(root)) {
        rc = 0;
    } else if (root->type != YAML_MAPPING_NODE) {
        char valid[256];
        key_list(top_keys, valid, sizeof valid);
        rc = cfg_error(&p, root->start_mark, "expected a mapping with keys %s, found %s", valid, node_kind_name(root));
    } else {
        rc = walk_mapping(&p, root, top_keys, (char *)cfg);
        if (rc == 0)
            archive_defaults(cfg);
        if (rc == 0)
            rc = config_check(&p, root, cfg);
    }
    yaml_document_delete(&doc);
out_delete_parser:
    yaml_parser_delete(&parser);
out_free:
    free(dir);
    free(buf);
    if (rc == 0)
        return 0;
out_fail:
    config_free(cfg);
    return rc;
}
