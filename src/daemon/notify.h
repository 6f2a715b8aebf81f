/*
 * notify.h -- telling systemd (Type=notify) how the daemon is doing, via
 * sd_notify(3) from libsystemd.  Without $NOTIFY_SOCKET (not started by
 * systemd, or Type=simple) every call does nothing.
 */
#ifndef NOTIFY_H
#define NOTIFY_H

/* READY=1 plus STATUS=<status>: the mount answers.  status is borrowed. */
void notify_ready(const char *status);

/* STOPPING=1 plus STATUS=<status>: shutdown has begun.  status is borrowed. */
void notify_stopping(const char *status);

/* STATUS=<printf-formatted line>: what the daemon is doing now. */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* NOTIFY_H */
