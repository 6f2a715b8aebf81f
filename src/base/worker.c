/*
 * worker.c -- background threads with a stop flag and monotonic naps
 * (see worker.h).
 *
 * States of a worker (w->state, guarded by w->mu):
 *   RUNNING  fn is running                      (worker_start)
 *   STOPPING worker_stop was called; fn should return soon (worker_stop)
 *   EXITED   fn returned; the thread is joinable (thread_main)
 * Invariants (LV_ASSERT):
 *   W1. The state only moves forward: RUNNING -> STOPPING -> EXITED, or
 *       RUNNING -> EXITED when fn returns by itself (a one-shot worker).
 *   W2. worker_nap is called on the worker's own thread.
 *   W3. worker_stop joins exactly once, and never from the worker's thread.
 */
#include "base/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/lv.h"
#include "base/lvlog.h"

enum worker_state { WORKER_RUNNING = 0, WORKER_STOPPING, WORKER_EXITED };

struct worker {
    pthread_t th;          /* the thread (immutable after worker_start) */
    char name[16];         /* thread name (immutable) */
    worker_fn fn;          /* body (immutable) */
    void *arg;             /* its argument (immutable) */
    pthread_mutex_t mu;    /* guards state, woken */
    pthread_cond_t cv;     /* signalled on wake and stop (monotonic clock) */
    int state;             /* an enum worker_state (mu) */
    int woken;             /* worker_wake since the last nap began (mu) */
};

int lv_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    int rc;

    if (pthread_condattr_init(&a) != 0)
        return LV_ENOMEM;
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    rc = pthread_cond_init(cv, &a) == 0 ? 0 : LV_ENOMEM;
    pthread_condattr_destroy(&a);
    return rc;
}

int lv_cond_wait_us(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t us)
{
    struct timespec ts;
    int64_t ns;

    if (us < 0)
        us = 0;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ns = (int64_t)ts.tv_nsec + (us % 1000000) * 1000;
    ts.tv_sec += (time_t)(us / 1000000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return pthread_cond_timedwait(cv, mu, &ts) == ETIMEDOUT ? ETIMEDOUT : 0;
}

static void *thread_main(void *p)
{
    struct worker *w = p;

    w->fn(w, w->arg);
    pthread_mutex_lock(&w->mu);
    w->state = WORKER_EXITED;
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int worker_start(const char *name, worker_fn fn, void *arg, struct worker **out)
{
    struct worker *w = calloc(1, sizeof *w);
    int e;

    *out = NULL;
    if (!w)
        return LV_ENOMEM;
    snprintf(w->name, sizeof w->name, "%s", name);
    w->fn = fn;
    w->arg = arg;
    pthread_mutex_init(&w->mu, NULL);
    if (lv_cond_init(&w->cv) != 0) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        return LV_ENOMEM;
    }
    e = pthread_create(&w->th, NULL, thread_main, w);
    if (e != 0) {
        LV_ERROR("cannot start thread %s: pthread_create: %s", w->name, strerror(e));
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return LV_ENOMEM; /* EAGAIN: out of threads, or memory for a stack */
    }
    pthread_setname_np(w->th, w->name);
    *out = w;
    return 0;
}

int worker_nap(struct worker *w, int64_t us)
{
    int64_t end = lv_mono_us() + (us > 0 ? us : 0), left;
    int stop;

    LV_ASSERT(pthread_equal(pthread_self(), w->th)); /* W2 */

    pthread_mutex_lock(&w->mu);
    /* Loop: a spurious wake-up does not end the nap early. */
    while (w->state == WORKER_RUNNING && !w->woken && (left = end - lv_mono_us()) > 0)
        lv_cond_wait_us(&w->cv, &w->mu, left);
    w->woken = 0;
    stop = w->state != WORKER_RUNNING;
    pthread_mutex_unlock(&w->mu);
    return stop;
}

int worker_stopping(struct worker *w)
{
    int stop;

    pthread_mutex_lock(&w->mu);
    stop = w->state != WORKER_RUNNING;
    pthread_mutex_unlock(&w->mu);
    return stop;
}

void worker_wake(struct worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->woken = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void worker_ask_stop(struct worker *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    if (w->state == WORKER_RUNNING)
        w->state = WORKER_STOPPING; /* W1 */
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void worker_stop(struct worker *w)
{
    if (!w)
        return;
    LV_ASSERT(!pthread_equal(pthread_self(), w->th)); /* W3 */
    worker_ask_stop(w);
    pthread_join(w->th, NULL);
    LV_ASSERT(w->state == WORKER_EXITED); /* W1 */
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
