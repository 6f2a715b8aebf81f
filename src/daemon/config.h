/*
 * config.h -- the YAML configuration (libyaml), with ${VAR} expansion.
 *
 * Errors name file:line:column and the key, e.g.
 *   litevault.yml:3:9: log.level: unknown level "loud" (use error, warn, info or debug)
 * Unknown keys, wrong types (a mapping where a scalar is expected, a
 * non-number) and bad durations are rejected, and so are combinations that
 * cannot work (a replica without primary-url, tls-cert without tls-key, a
 * non-loopback http.addr open to anyone without a token).
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
    int fuse_wal_passthrough; /* fuse.wal-passthrough: -wal files use kernel passthrough where allowed; default 1 */
    int fuse_journal_passthrough; /* fuse.journal-passthrough: rollback journals use it where allowed; default 1 */
    char *data_dir;    /* data.dir: backing files and logs (owned); default "/var/lib/litevault/data" */
    char *http_addr;   /* http.addr: host:port (owned); default "127.0.0.1:20202" */
    int http_public;   /* http.public: /status, /metrics, /health served on http.addr without the token;
                          default 1 (0: they need the token there; without a token nothing listens on
                          http.addr: everything is on the admin socket data.dir/admin.sock) */
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
    /* Roles (lease:).  Without a lease section the node is a static primary. */
    char *lease_type;           /* lease.type: "static" (owned; the default) */
    int lease_candidate;        /* lease.candidate: 1 if this node may be the primary (static: it is); default
                                   1, or 0 when lease.primary-url is set */
    char *advertise_url;        /* lease.advertise-url: how others reach this node (owned); default
                                   http[s]://<http.addr> (the host name for 0.0.0.0 / [::]) */
    char *primary_url;          /* lease.primary-url: the primary a static replica follows (owned), NULL if
                                   none; required when lease_candidate is 0 */
    char *lease_endpoints;      /* lease.endpoints: etcd client URLs, comma-separated (owned), NULL if none */
    char *lease_key;            /* lease.key: the etcd key (owned), NULL: /litevault/<cluster-id>/primary */
    int64_t lease_ttl_us;       /* lease.ttl: the etcd lease's TTL; 0 if unset (10 s) */
    char *lease_tls_ca;         /* lease.tls-ca: PEM CA for etcd (owned), or NULL */
    char *lease_tls_cert;       /* lease.tls-cert: client certificate for etcd (owned), or NULL */
    char *lease_tls_key;        /* lease.tls-key: its key (owned), or NULL */
    /* etcd authentication.  The password is never logged nor shown. */
    char *lease_username;       /* lease.username: the etcd user (owned), NULL: no authentication */
    char *lease_password;       /* lease.password, or the contents of lease.password-file (owned), NULL: none */
    char *lease_password_file;  /* lease.password-file: the path read (owned), NULL if none */
    /* Access to http.addr.  The token is never logged nor shown. */
    char *http_token;           /* http.token, or the contents of http.token-file (owned), NULL: none */
    char *http_token_file;      /* http.token-file: the path read (owned), NULL if none */
    int http_allow_no_token;    /* http.allow-no-token: serve a non-loopback http.addr without a token */
    char *http_tls_cert;        /* http.tls-cert: PEM certificate chain for HTTPS on http.addr (owned), or NULL */
    char *http_tls_key;         /* http.tls-key: its PEM private key (owned), or NULL; set with tls-cert */
    char *http_tls_ca;          /* http.tls-ca: PEM CA file a replica checks the primary with (owned), or NULL */
    /* replication: */
    int64_t repl_max_lag_us;    /* replication.max-lag: a replica's /health is 503 above it; default 10s */
    int64_t repl_max_retain;    /* replication.max-retain: log bytes the primary keeps for a connected replica
                                   beyond the archive's need; default 1 GiB (0: none) */
    int repl_seed;              /* replication.seed: an empty replica with archive: seeds from it; default 1 */
    int64_t repl_apply_wait_us; /* replication.apply-wait: per attempt, lock wait for readers; default 100ms */
    int repl_sync_replicas;     /* replication.sync-replicas: a commit on the primary waits until this many
                                   replicas hold it; default 0 (asynchronous) */
    int64_t repl_sync_timeout_us; /* replication.sync-timeout: the longest a commit waits; default 5s */
    int repl_wait_durable;      /* replication.wait-durable: DBREG_DURABLE_AUTO (default), _ALWAYS or _NEVER */
    /* proxy: the built-in HTTP proxy (daemon/proxy.h); none without the section */
    char *proxy_addr;           /* proxy.addr: HOST:PORT it listens on (owned), NULL: no proxy (the default) */
    char *proxy_target;         /* proxy.target: the application, HOST:PORT or http://HOST:PORT (owned);
                                   required with the section */
    char *proxy_db;             /* proxy.db: the database (path on the mount) whose TXID the __txid cookie
                                   carries (owned); required with the section */
    char **proxy_passthrough;   /* proxy.passthrough: fnmatch patterns on request paths (owned array of owned
                                   strings), NULL: none */
    size_t nproxy_passthrough;  /* entries in proxy_passthrough */
    int64_t proxy_max_lag_wait_us;   /* proxy.max-lag-wait: a read's longest wait for its __txid; default 5s */
    int64_t proxy_header_timeout_us; /* proxy.header-timeout: a whole request head, and keep-alive idle; default 10s */
    int proxy_max_conns;        /* proxy.max-conns: client connections at once; default 256 */
    char *proxy_advertise_url;  /* proxy.advertise-url: how other nodes reach this proxy (owned); default
                                   http://<proxy.addr> (the host name for 0.0.0.0 / [::]); NULL without proxy */
    char *proxy_primary_url;    /* proxy.primary-url: the primary's proxy, for a static replica (owned), NULL if
                                   none; required with proxy.addr when lease.candidate is false */
};

/* Does cfg's daemon listen on http.addr?  Unless http.public is false and
 * no token is set (then everything is on the admin socket only). */
int config_http_listens(const struct config *cfg);

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
