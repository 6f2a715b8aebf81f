/*
 * worker.h -- the daemon's background threads, started, napped and stopped
 * one way; and condition-variable waits on CLOCK_MONOTONIC.
 *
 * A worker runs fn(w, arg) on its own thread.  A long-running fn loops on
 * `while (!worker_nap(w, interval_us)) { ... }`; a one-shot fn (a transfer
 * job) just returns.  worker_stop asks the loop to end, wakes its nap, joins
 * the thread and frees the handle.  Naps are measured on CLOCK_MONOTONIC, so
 * a wall-clock step (NTP, a VM resume) neither stalls nor hurries a worker.
 *
 * Threads: worker_wake and worker_stopping may be called from any thread;
 * worker_nap only from the worker's own fn; worker_stop from one thread,
 * once, never from the worker itself.
 */
#ifndef WORKER_H
#define WORKER_H

#include <pthread.h>
#include <stdint.h>

struct worker;

/* The body of a worker: runs once on the new thread; w is valid throughout. */
typedef void (*worker_fn)(struct worker *w, void *arg);

/* Start a thread named name (at most 15 characters are kept, for top -H)
 * running fn(w, arg).  *out is owned by the caller until worker_stop.
 * 0, or LV_ENOMEM (also when pthread_create fails; logged with name). */
int worker_start(const char *name, worker_fn fn, void *arg, struct worker **out);

/* Sleep up to us microseconds (us <= 0: just check), ending early on
 * worker_wake or worker_stop.  Returns 1 when the worker should stop, else 0. */
int worker_nap(struct worker *w, int64_t us);

/* Has worker_stop been called on w? */
int worker_stopping(struct worker *w);

/* End w's current (or next) nap early: there is new work. */
void worker_wake(struct worker *w);

/* Ask w to stop and wake it, without waiting: a caller with several
 * workers asks them all, so they wind down in parallel, then calls
 * worker_stop on each.  Any thread; NULL is fine. */
void worker_ask_stop(struct worker *w);

/* Ask w to stop, wake it, wait for fn to return, free w.  NULL is fine. */
void worker_stop(struct worker *w);

/* Initialise cv to time its waits on CLOCK_MONOTONIC.  0 or LV_ENOMEM. */
int lv_cond_init(pthread_cond_t *cv);

/* pthread_cond_timedwait on a cv from lv_cond_init, for at most us
 * microseconds from now.  0 when signalled (or spuriously woken), ETIMEDOUT. */
int lv_cond_wait_us(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t us);

#endif /* WORKER_H */
