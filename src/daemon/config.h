/*
 * config.h -- the YAML configuration (libyaml), with ${VAR} expansion.
 *
 * Errors name file:line:column and the key, e.g.
 *   litevault.yml:3:9: log.level: unknown level "loud" (use error, warn, info or debug)
 * Unknown keys, wrong types (a mapping where a scalar is expected, a
 * non-number) and bad durations are rejected.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* exports[].format */
enum config_export_format {
    CONFIG_EXPORT_DB = 0,      /* "db": one SQLite file per database */
    CONFIG_EXPORT_TAR_ZST = 1, /* "tar.zst": one bundle (bundle.h) per run */
};

/* exports[].on: where the job runs. */
enum config_export_on {
    CONFIG_EXPORT_ON_PRIMARY = 0, /* "primary" (the only value accepted for now) */
};

/* One scheduled export job (exports[] in the file; see config.yml.sample). */
struct config_export {
    char *name;                /* name: [A-Za-z0-9._-]+, unique; default "jobN" (1-based position) (owned) */
    char *schedule;            /* schedule: cron expression, checked with cron_parse (owned); required */
    char *url;                 /* url: absolute directory, file:///dir or s3://BUCKET/PREFIX (owned); required */
    int format;                /* format: an enum config_export_format; default db */
    char **databases;          /* databases: NULL for all (default), else ndatabases names (owned) */
    size_t ndatabases;         /* entries in databases */
    int keep;                  /* keep: exports kept per database (db) or per job (tar.zst); default 7 */
    int on;                    /* on: an enum config_export_on; default primary */
    char *endpoint;            /* endpoint: S3 endpoint URL (owned) or NULL */
    char *region;              /* region: S3 region (owned) or NULL */
    int force_path_style;      /* force-path-style: 1 true, 0 false, -1 default (as in store_opts) */
    char *access_key_id;       /* access-key-id (owned, secret-adjacent; never logged) or NULL */
    char *secret_access_key;   /* secret-access-key (owned, never logged) or NULL */
    char *session_token;       /* session-token (owned, never logged) or NULL */
};

#define CONFIG_MAX_LEVELS 9 /* compaction levels above level 0 */

/* One archive destination (archive: list item).  Zero fields mean "the
 * default" until config_load fills the defaults in; strings are owned. */
struct config_archive {
    char *url;                  /* url: file:///abs (relative paths resolved like data.dir) or s3://BUCKET/PREFIX?... (required) */
    char *endpoint;             /* endpoint: S3 endpoint URL, NULL for AWS */
    char *region;               /* region: S3 region, NULL for the default */
    int force_path_style;       /* force-path-style: 1 true, 0 false, -1 default (as in store_opts) */
    char *access_key_id;        /* access-key-id: NULL to use AWS_ACCESS_KEY_ID */
    char *secret_access_key;    /* secret-access-key: never logged */
    char *session_token;        /* session-token: never logged */
    int64_t sync_interval_us;   /* sync-interval: default 1s */
    int64_t snapshot_interval_us; /* snapshot-interval: default 24h */
    int64_t retention_us;       /* retention: default 7d */
    int64_t compaction_us[CONFIG_MAX_LEVELS]; /* compaction: window of levels 1..n; default [30s, 5m, 1h] */
    size_t ncompaction;         /* levels in compaction_us (0: no compaction) */
    int compaction_set;         /* compaction: was given (possibly empty) */
    int parallel;               /* parallel: connections per destination; default 4 */
    int64_t delete_delay_us;    /* delete-delay: how long objects dropped from the manifest stay readable; default 5m */
    int64_t manifest_interval_us; /* manifest-interval: longest lag of manifest.json behind the uploaded segments; default 1m */
};

struct config {
    char *path;        /* file the config was read from (owned), or NULL for defaults */
    char *fuse_dir;    /* fuse.dir: mount point (owned); default "/var/lib/litevault/mnt" */
    int fuse_allow_other; /* fuse.allow-other: users other than the daemon's may use the mount; default 0 */
    char *data_dir;    /* data.dir: backing files and logs (owned); default "/var/lib/litevault/data" */
    char *http_addr;   /* http.addr: host:port (owned); default "127.0.0.1:20202" */
    int log_level;     /* log.level: an lvlog_level; default LVLOG_INFO */
    int log_json;      /* log.format: 1 for json, 0 for text (default) */
    int64_t state_interval_us;  /* data.state-interval: how often the checksum state is persisted; default 30s */
    int64_t segment_size;       /* data.segment-size: bytes before a log segment rolls over; default 64 MiB */
    struct config_export *exports; /* exports: scheduled export jobs (owned array), NULL if none */
    size_t nexports;               /* entries in exports */
    int64_t max_log_size;       /* data.max-log-size: local log bytes (all databases) before writes are
                                   refused while an archive lags; 0 = no limit; default 10 GiB */
    struct config_archive *archive; /* archive: destinations (owned array) */
    size_t narchive;            /* entries in archive */
};

/* Fill *cfg with defaults (strings owned by cfg). 0 or LV_ENOMEM. */
int config_defaults(struct config *cfg);

/* Load and validate path into *cfg (defaults first, then the file).  On error
 * returns LV_ECONFIG (or LV_ENOENT if path cannot be opened) and writes a
 * one-line message naming file:line:col and the key into err (size errlen). */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);

/* Find the config file: explicit (if non-NULL), else ./litevault.yml, else
 * /etc/litevault.yml.  Returns a static or borrowed string, or NULL if none exists. */
const char *config_find(const char *explicit_path);

/* Parse a duration such as 500ms, 1s, 10m, 24h, 7d into microseconds; 0 or LV_EINVAL. */
int config_parse_duration(const char *s, int64_t *us);

/* Parse a size such as 64MiB, 1GiB, 512KiB, 1024 into bytes; 0 or LV_EINVAL. */
int config_parse_size(const char *s, int64_t *bytes);

/* Free the strings owned by cfg; cfg itself is the caller's. */
void config_free(struct config *cfg);

#endif /* CONFIG_H */
