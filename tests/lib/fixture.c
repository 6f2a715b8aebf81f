/*
 * fixture.c -- see fixture.h.  A fixed-size array is enough: a test holds a
 * handful of resources, and running out is a test bug worth an assertion.
 */
#include "fixture.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <criterion/criterion.h>

#define LVT_MAX 128

static struct {
    enum lvt_phase ph;
    lvt_undo_fn fn;
    void *arg;
} undo[LVT_MAX];
static int nundo;

void lvt_defer(enum lvt_phase ph, lvt_undo_fn fn, void *arg)
{
    cr_assert(nundo < LVT_MAX, "tests/lib: more than %d resources in one test", LVT_MAX);
    undo[nundo].ph = ph;
    undo[nundo].fn = fn;
    undo[nundo].arg = arg;
    nundo++;
}

void lvt_forget(lvt_undo_fn fn, void *arg)
{
    int k = 0;
    for (int i = 0; i < nundo; i++)
        if (!(undo[i].fn == fn && undo[i].arg == arg))
            undo[k++] = undo[i];
    nundo = k;
}

void lvt_fini(void)
{
    /* Take the list first: an action may register or forget others. */
    int n = nundo;
    static __typeof__(undo) run;
    memcpy(run, undo, sizeof undo);
    nundo = 0;
    for (int i = n - 1; i >= 0; i--)
        if (run[i].ph == LVT_KILL)
            run[i].fn(run[i].arg);
    for (int i = n - 1; i >= 0; i--)
        if (run[i].ph == LVT_UNDO)
            run[i].fn(run[i].arg);
}

int lvt_keep(void)
{
    const char *k = getenv("LV_KEEP");
    return k && *k == '1';
}

static void do_umount(void *arg)
{
    if (umount2((char *)arg, MNT_DETACH) != 0) {
        /* fall back to the command (it knows about mtab helpers) */
        char cmd[600];
        snprintf(cmd, sizeof cmd, "umount -l '%s' 2>/dev/null", (char *)arg);
        if (system(cmd) != 0) {
            /* nothing more to do: the test is over */
        }
    }
    free(arg);
}

void lvt_defer_umount(const char *path)
{
    char *p = strdup(path);
    cr_assert_not_null(p);
    lvt_defer(LVT_UNDO, do_umount, p);
}

static void do_kill(void *arg)
{
    pid_t pid = (pid_t)(intptr_t)arg;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

void lvt_defer_kill(int pid)
{
    lvt_defer(LVT_KILL, do_kill, (void *)(intptr_t)pid);
}

void lvt_forget_child(int pid)
{
    lvt_forget(do_kill, (void *)(intptr_t)pid);
}
