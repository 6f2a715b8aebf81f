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

#include "archive/archiver.h"
#include "export/exports.h"

struct config {
    char *path;        /* file the config was read from (owned), or NULL for defaults */
    char *fuse_dir;    /* fuse.dir: mount point (owned); default "/var/lib/litevault/mnt" */
    int fuse_allow_other; /* fuse.allow-other: users other than the daemon's may use the mount; default 0 */
    char *data_dir;    /* data.dir: backing files and logs (owned); default "/var/lib/litevault/data" */
    char *http_addr;   /* http.addr: host:port (owned); default "127.0.0.1:20202" */
    int http_public;   /* http.public: /status, /metrics, /health served on http.addr; default 1
                          (0: only on the admin socket data.dir/admin.sock) */
    int64_t http_image_space;       /* http.image-space: bytes images may hold in data.dir/tmp; 0 (auto,
                                       the default): half the free space */
    int64_t http_header_timeout_us; /* http.header-timeout: to send a request head; default 10s */
    int http_per_addr;              /* http.max-conns-per-address on http.addr; 0 = none; default 16 */
    int log_level;     /* log.level: an lvlog_level; default LVLOG_INFO */
    int log_json;      /* log.format: 1 for json, 0 for text (default) */
    int64_t state_interval_us;  /* data.state-interval: how often the checksum state is persisted; default 30s */
    int64_t segment_size;       /* data.segment-size: bytes before a log segment rolls over; default 64 MiB */
    struct exports_job *exports; /* exports: scheduled export jobs (owned array), NULL if none */
    size_t nexports;               /* entries in exports */
    int64_t max_log_size;       /* data.max-log-size: local log bytes (all databases) before writes are
                                   refused while an archive lags; 0 = no limit; default 10 GiB */
    struct archiver_dest *archive; /* archive: destinations (owned array) */
    size_t narchive;            /* entries in archive */
    /* TEMP(scaffold, helper B owns these; PLAN.md "Roles and config") */
    char *lease_type;
    int lease_candidate;
    char *advertise_url;
    char *primary_url;
    char *http_token;
    int http_allow_no_token;
    char *http_tls_cert, *http_tls_key, *http_tls_ca;
    int64_t repl_max_lag_us;
    int64_t repl_max_retain;
    int repl_seed;
    int64_t repl_apply_wait_us;
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

/* The admin socket of cfg's daemon, data.dir/admin.sock, into buf.  0 or LV_EINVAL (too long). */
int config_admin_socket(const struct config *cfg, char *buf, size_t len);

/* Free the strings owned by cfg; cfg itself is the caller's. */
void config_free(struct config *cfg);

#endif /* CONFIG_H */
