/*
 * lvlog.c -- leveled logging to stderr.
 *
 * Line formats (each line ends in '\n' and is handed to one write(2), so
 * lines of concurrent threads never interleave as long as a line fits in
 * the pipe/terminal buffer):
 *
 *   text:   2026-11-24T10:00:00.123456Z INFO message
 *           2026-11-24T10:00:00.123456Z DEBUG src/db.c:120 message
 *   json:   {"time":"2026-11-24T10:00:00.123456Z","level":"info","msg":"message"}
 *           {"time":...,"level":"debug","src":"src/db.c:120","msg":"message"}
 *
 * The source location is added to every line while the threshold is
 * LVLOG_DEBUG (running with log.level debug), and left out otherwise.
 * JSON escaping is done by jansson; bytes that are not valid UTF-8 are
 * replaced with '?' first, since JSON strings must be UTF-8.
 *
 * State: lvlog_threshold and log_json are written only by lvlog_setup(),
 * which runs at start-up before other threads exist; lvlog_write() only
 * reads them, so no lock is needed.  errno is preserved across
 * lvlog_write() so callers may log before inspecting it.
 */
#include "base/lvlog.h"

#include "base/lv.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int lvlog_threshold = LVLOG_INFO;
static int log_json; /* 1: JSON lines, 0: text; written only by lvlog_setup */

static const char *const level_upper[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const level_lower[] = {"error", "warn", "info", "debug"};

void lvlog_setup(int level, int fmt_json)
{
    if (level < LVLOG_ERROR)
        level = LVLOG_ERROR;
    if (level > LVLOG_DEBUG)
        level = LVLOG_DEBUG;
    lvlog_threshold = level;
    log_json = fmt_json ? 1 : 0;
}

int lvlog_parse_level(const char *s, int *level)
{
    if (!s)
        return -1;
    for (int i = 0; i < (int)LV_ARRAY_LEN(level_lower); i++) {
        if (strcasecmp(s, level_lower[i]) == 0) {
            *level = i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *level = LVLOG_WARN;
        return 0;
    }
    return -1;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* Replace every byte that does not start a valid UTF-8 sequence with '?', in place. */
static void utf8_sanitize(char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t k = utf8_seq_len((unsigned char *)s + i, n - i);
        if (k == 0) {
            s[i] = '?';
            k = 1;
        }
        i += k;
    }
}

/* Write all of buf to stderr: one write(2) normally; continues only after a partial write. */
static void write_stderr(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Build the JSON line for msg (msglen bytes, sanitized in place); malloc'ed, caller frees; NULL on OOM. */
static char *json_line(int level, const char *tbuf, const char *src, char *msg, size_t msglen)
{
    json_t *obj, *jmsg;
    char *out = NULL, *line;
    size_t n;

    utf8_sanitize(msg, msglen);
    obj = json_object();
    if (!obj)
        return NULL;
    json_object_set_new(obj, "time", json_string(tbuf));
    json_object_set_new(obj, "level", json_string(level_lower[level]));
    if (src)
        json_object_set_new(obj, "src", json_string(src));
    jmsg = json_stringn(msg, msglen);
    if (jmsg)
        json_object_set_new(obj, "msg", jmsg);
    out = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (!out)
        return NULL;
    n = strlen(out);
    line = realloc(out, n + 2);
    if (!line) {
        free(out);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    return line;
}

void lvlog_write(int level, const char *file, int line, const char *fmt, ...)
{
    int saved_errno = errno;
    char tbuf[40], srcbuf[256], stackmsg[1024], *msg = stackmsg, *heapmsg = NULL, *out = NULL;
    const char *src = NULL;
    va_list ap;
    int len;

    if (level < LVLOG_ERROR)
        level = LVLOG_ERROR;
    if (level > LVLOG_DEBUG)
        level = LVLOG_DEBUG;
    lv_fmt_time(lv_now_us(), tbuf, sizeof tbuf);
    if (lvlog_threshold >= LVLOG_DEBUG && file) {
        snprintf(srcbuf, sizeof srcbuf, "%s:%d", file, line);
        src = srcbuf;
    }

    va_start(ap, fmt);
    len = vsnprintf(stackmsg, sizeof stackmsg, fmt, ap);
    va_end(ap);
    if (len < 0) {
        len = 0;
        stackmsg[0] = '\0';
    } else if ((size_t)len >= sizeof stackmsg) {
        heapmsg = malloc((size_t)len + 1);
        if (heapmsg) {
            va_start(ap, fmt);
            vsnprintf(heapmsg, (size_t)len + 1, fmt, ap);
            va_end(ap);
            msg = heapmsg;
        } else {
            len = (int)sizeof stackmsg - 1; /* keep the truncated message */
        }
    }

    if (log_json) {
        out = json_line(level, tbuf, src, msg, (size_t)len);
        if (out)
            write_stderr(out, strlen(out));
        goto out_free_msg;
    }
    /* Text: prefix + message + '\n' in one buffer, for one write(2). */
    {
        char *text;
        size_t cap = strlen(tbuf) + 8 + (src ? strlen(src) + 1 : 0) + (size_t)len + 2;
        int n;

        text = malloc(cap);
        if (!text) {
            write_stderr(msg, (size_t)len);
            write_stderr("\n", 1);
            goto out_free_msg;
        }
        n = snprintf(text, cap, "%s %s %s%s%s\n", tbuf, level_upper[level], src ? src : "", src ? " " : "", msg);
        if (n > 0)
            write_stderr(text, (size_t)n < cap ? (size_t)n : cap - 1);
        free(text);
    }

out_free_msg:
    free(out);
    free(heapmsg);
    errno = saved_errno;
}
