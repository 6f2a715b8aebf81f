/*
 * notify.c -- sd_notify(3) messages to systemd (see notify.h).
 *
 * Invariants:
 *   N1. A message is one datagram: READY=1 and STOPPING=1 travel with their
 *       STATUS= line, so a reader never sees one without the other.
 *   N2. A failure to notify is logged once at debug level and never stops
 *       the daemon (systemd may have gone, or the socket be unreadable).
 */
#include "daemon/notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "base/lvlog.h"

static void notify_send(const char *msg)
{
    static int warned;
    int rc = sd_notify(0, msg);

    if (rc < 0 && !warned) { /* N2 */
        warned = 1;
        LV_DEBUG("sd_notify: %s", strerror(-rc));
    }
}

void notify_ready(const char *status)
{
    char msg[1024];

    snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", status); /* N1 */
    notify_send(msg);
}

void notify_stopping(const char *status)
{
    char msg[1024];

    snprintf(msg, sizeof msg, "STOPPING=1\nSTATUS=%s", status); /* N1 */
    notify_send(msg);
}

void notify_status(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    int n = snprintf(msg, sizeof msg, "STATUS=");

    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    notify_send(msg);
}
