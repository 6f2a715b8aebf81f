/*
 * api.c -- HTTP handlers of the daemon's API (see api.h).
 *
 * Images are written by the daemon itself, into data.dir/tmp/, rather than
 * streamed over HTTP: the copy runs at local disk speed, the CLI on the same
 * machine then renames the file into place (no second copy when the target
 * is on the same filesystem), and a slow reader never holds the database's
 * copy-on-write state open.  The file is created 0600 by mkstemp, so only
 * the daemon's user (and root) can read it.
 */
#include <stddef.h>

#include "daemon/api.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/cksum.h"
#include "archive/archiver.h"
#include "base/metrics.h"
#include "export/exports.h"
#include "capture/db.h"
#include "base/http.h"
#include "base/lv.h"
#include "base/lvlog.h"

static struct api_ctx g_api;    /* one daemon per process: the handlers' context (immutable once registered) */

/* Reply {"error": msg} with status. */
static int api_error(struct http_response *resp, int status, const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    resp->status = status;
    resp->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return 0;
}

static int h_image(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const struct api_ctx *a = ctx;
    const char *name = req->query(req, "db");
    char dir[PATH_MAX], path[PATH_MAX + 32], msg[PATH_MAX + 256], idh[33], hex[17], t[40];
    struct db_image_info info;
    int fd, rc;

    if (!name || !*name)
        return api_error(resp, 400, "missing query parameter db=NAME");
    dbreg_tmp_dir(a->data_dir, dir, sizeof dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(msg, sizeof msg, "mkdir %s: %s", dir, strerror(errno));
        LV_ERROR("image: %s", msg);
        return api_error(resp, 500, msg);
    }
    snprintf(path, sizeof path, "%s/image-XXXXXX", dir);
    fd = mkstemp(path);
    if (fd < 0) {
        snprintf(msg, sizeof msg, "mkstemp %s: %s", path, strerror(errno));
        LV_ERROR("image: %s", msg);
        return api_error(resp, 500, msg);
    }
    rc = dbreg_image(a->reg, name, fd, 30000, &info, NULL, NULL);
    close(fd);
    if (rc) {
        unlink(path);
        snprintf(msg, sizeof msg, "%s: %s%s", name, lv_strerror(rc),
                 rc == LV_ENOENT ? " (no such database, or nothing committed yet)" :
                 rc == LV_EBUSY ? " (a transaction stayed open; try again)" :
                 rc == LV_EMISMATCH ? " (the files disagree with the log; see the daemon log)" : "");
        return api_error(resp, rc == LV_ENOENT ? 404 : rc == LV_EBUSY || rc == LV_EBROKEN ? 409 : 500, msg);
    }
    lv_hex(info.id, 16, idh);
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(path));
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "id", json_string(idh));
    json_object_set_new(o, "txid", json_integer((json_int_t)info.txid));
    json_object_set_new(o, "time", json_string(lv_fmt_time(info.time_us, t, sizeof t)));
    json_object_set_new(o, "time_us", json_integer(info.time_us));
    json_object_set_new(o, "page_size", json_integer(info.page_size));
    json_object_set_new(o, "pages", json_integer(info.db_pages));
    json_object_set_new(o, "checksum", json_string(cksum_hex(info.cksum, hex)));
    resp->body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    LV_INFO("%s: image at TXID %llu written to %s", name, (unsigned long long)info.txid, path);
    return 0;
}


static int h_status(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const struct api_ctx *dm = ctx;
    char *dbs = dbreg_status_json(dm->reg);
    json_t *o = json_object();
    json_object_set_new(o, "version", json_string(LV_VERSION));
    json_object_set_new(o, "databases", dbs ? json_loads(dbs, 0, NULL) : json_array());
    json_object_set_new(o, "exports", exports_status_json(dm->exp));
    free(dbs);
    char *ar = archiver_status_json(dm->arch);
    json_object_set_new(o, "archive", ar ? json_loads(ar, 0, NULL) : json_array());
    free(ar);
    resp->body = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    resp->content_type = "application/json";
    return 0;
}

static int h_metrics(void *ctx, const struct http_request *req, struct http_response *resp)
{
    const struct api_ctx *dm = ctx;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (dbreg_metrics(dm->reg, &buf, &len, &cap) != 0 || archiver_metrics(dm->arch, &buf, &len, &cap) != 0 ||
        exports_metrics(dm->exp, &buf, &len, &cap) != 0 || metrics_render_process(&buf, &len, &cap) != 0) {
        free(buf);
        resp->status = 500;
        resp->body = strdup("{\"error\":\"out of memory\"}");
        return 0;
    }
    resp->body = buf;
    resp->body_len = len;
    resp->content_type = "text/plain; version=0.0.4";
    return 0;
}

int api_register(struct http_server *s, const struct api_ctx *ctx)
{
    g_api = *ctx;
    if (http_route(s, "GET", "/status", h_status, &g_api) != 0 ||
        http_route(s, "GET", "/metrics", h_metrics, &g_api) != 0 ||
        http_route(s, "POST", "/v1/image", h_image, &g_api) != 0)
        return LV_ENOMEM;
    return 0;
}
