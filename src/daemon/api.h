/*
 * api.h -- every route of the daemon's HTTP API, in one place.
 *
 *   GET  /status             JSON: version, databases (dbreg_status_json),
 *                            exports and archive destinations.
 *   GET  /metrics            Prometheus text format: capture, archive,
 *                            exports and process metrics.
 *   POST /v1/image?db=NAME   write a consistent image of database NAME (see
 *                            dbreg_image) into a new file under
 *                            data.dir/tmp/ and answer, as JSON, its path and
 *                            facts: {"path","name","id","txid","time",
 *                            "time_us","page_size","pages","checksum"}.
 *                            The caller owns the file from then on: it
 *                            renames or copies it, then deletes it.  Files
 *                            left behind are removed at the next start.
 *
 * Errors are JSON {"error": "..."} with 400 (bad request), 404 (no such
 * database), 409 (busy or broken) or 500.
 */
#ifndef API_H
#define API_H

struct http_server;
struct dbreg;
struct exports;
struct archiver;

/* What the handlers read (all borrowed; each must outlive the server). */
struct api_ctx {
    struct dbreg *reg;          /* databases */
    struct exports *exp;        /* scheduled exports, NULL if none */
    struct archiver *arch;      /* archiver, NULL without destinations */
    const char *data_dir;       /* data.dir (images go to data.dir/tmp) */
};

/* Register every route above on s (before http_start); *ctx is copied, the
 * objects it points to are borrowed.  0 or LV_ENOMEM. */
int api_register(struct http_server *s, const struct api_ctx *ctx);

#endif /* API_H */
