/*
 * http.c -- see http.h.
 */
#include "http.h"

#include <stdlib.h>
#include <string.h>

#include "base/http.h"

char *lvnode_http_get(const struct lvnode *n, const char *path, long *status)
{
    char *body = NULL;
    size_t len = 0;
    long st = 0;
    if (http_get(n->http, path, &body, &len, &st) != 0) {
        free(body);
        body = NULL;
        st = 0;
    } else if (!body) {
        body = strdup("");
    }
    if (status)
        *status = st;
    return body;
}

json_t *lvnode_status(const struct lvnode *n)
{
    long st = 0;
    char *b = lvnode_http_get(n, "/status", &st);
    json_t *j = b && st == 200 ? json_loads(b, 0, NULL) : NULL;
    free(b);
    return j;
}

int lvnode_http_db(const struct lvnode *n, const char *db, struct lvdbstat *st)
{
    json_t *j = lvnode_status(n), *o;
    size_t i;
    int found = 0;
    memset(st, 0, sizeof *st);
    if (!j)
        return -1;
    json_array_foreach(json_object_get(j, "databases"), i, o)
    {
        const char *name = json_string_value(json_object_get(o, "name"));
        if (!found && name && strcmp(name, db) == 0) {
            lvdbstat_from_json(o, st);
            found = 1;
        }
    }
    json_decref(j);
    return found;
}

double metrics_value(const char *text, const char *series)
{
    size_t l = strlen(series);
    for (const char *s = text; s && *s; s = strchr(s, '\n') ? strchr(s, '\n') + 1 : NULL) {
        if (strncmp(s, series, l) == 0 && s[l] == ' ')
            return strtod(s + l + 1, NULL);
    }
    return -1;
}

double lvnode_metric(const struct lvnode *n, const char *series)
{
    long st = 0;
    char *b = lvnode_http_get(n, "/metrics", &st);
    double v = b && st == 200 ? metrics_value(b, series) : -1;
    free(b);
    return v;
}
