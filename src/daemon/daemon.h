/*
 * daemon.h -- `litevault mount`: the daemon's wiring.  Opens the database
 * registry (capture), the scheduled exports, the archiver and the HTTP API,
 * then serves the FUSE mount until SIGINT/SIGTERM (or until the -- CMD
 * child exits), and tears everything down in reverse order.
 */
#ifndef DAEMON_H
#define DAEMON_H

struct config;

/* Run the daemon with configuration cfg (borrowed; the caller frees it
 * after the return).  cmd, if not NULL, is a NULL-terminated argv run once
 * the mount is ready; the daemon then exits when it does.  Returns the
 * process exit code: 0, LV_EXIT_RUNTIME, LV_EXIT_USAGE, or CMD's status. */
int daemon_run(const struct config *cfg, char **cmd);

#endif /* DAEMON_H */
