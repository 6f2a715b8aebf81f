/*
 * api.h -- the daemon's HTTP API beyond /status and /metrics.
 *
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
struct config;

/* Register the routes above on s (before http_start); reg and cfg are
 * borrowed and must outlive the server.  0 or negative. */
int api_register(struct http_server *s, struct dbreg *reg, const struct config *cfg);

#endif /* API_H */
