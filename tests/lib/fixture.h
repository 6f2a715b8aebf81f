/*
 * fixture.h -- the per-test registry of things to undo.
 *
 * DESIGN.  Criterion runs every test in its own process and calls the
 * suite's .fini after the test body even when an assertion failed.  Instead
 * of each test file keeping its own static nodes, "used" flags and fini
 * function, every resource a test creates through tests/lib (a node, an
 * s3rver, a temporary directory, a mount, a child process) registers an undo
 * action here, and one function, lvt_fini, runs them.  Suites say
 *
 *     TestSuite(name, .fini = lvt_fini);
 *
 * (a suite that needs more cleanup calls lvt_fini from its own fini).
 *
 * Order: first every process registered with LVT_KILL is stopped (SIGKILL for
 * daemons and children, so no cleanup waits on a hung process), then the
 * other actions run newest first, so a directory is removed after what
 * lives in it.  Actions never assert: they run after the verdict.
 * LV_KEEP=1 in the environment keeps temporary directories for inspection.
 */
#ifndef TESTLIB_FIXTURE_H
#define TESTLIB_FIXTURE_H

enum lvt_phase {
    LVT_KILL, /* stop processes: runs before every LVT_UNDO action */
    LVT_UNDO, /* everything else, newest first */
};

/* An undo action: fn(arg); arg stays owned by whoever registered it. */
typedef void (*lvt_undo_fn)(void *arg);

/* Register fn(arg) to run at lvt_fini in phase ph. */
void lvt_defer(enum lvt_phase ph, lvt_undo_fn fn, void *arg);

/* Forget every action registered with this fn and arg (the resource was released early). */
void lvt_forget(lvt_undo_fn fn, void *arg);

/* Run every registered action (see the order above) and empty the registry.
 * Usable as a Criterion .fini, and idempotent. */
void lvt_fini(void);

/* Lazily unmount path (umount -l) at lvt_fini, after the daemons are gone.
 * path is copied. */
void lvt_defer_umount(const char *path);

/* SIGKILL and reap child pid at lvt_fini unless lvt_forget_child(pid) was called. */
void lvt_defer_kill(int pid);

/* The child pid was reaped by the test: nothing to do at lvt_fini. */
void lvt_forget_child(int pid);

/* 1 if LV_KEEP=1: keep temporary directories. */
int lvt_keep(void);

#endif /* TESTLIB_FIXTURE_H */
