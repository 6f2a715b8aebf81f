/*
 * util.h -- process and timing primitives every other tests/lib module
 * builds on: run a shell command and capture its output, sleep, a monotonic
 * clock, and WAIT_FOR, the one way tests wait for something.
 *
 * DESIGN.  Tests must not assume how fast the machine is: a test that needs
 * the daemon to reach a state polls for that state with WAIT_FOR and a
 * generous bound (LVT_WAIT_MS by default), and asserts on the outcome; a
 * fixed sleep is only right before asserting that something did NOT happen
 * (and then it should wait for evidence that the opportunity came, e.g. a
 * job's run counter, rather than for a number of seconds).
 *
 * Assertions use Criterion's cr_assert family, so these helpers must be
 * called from a test's own process (not from a forked child).
 */
#ifndef TESTLIB_UTIL_H
#define TESTLIB_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Default bound for WAIT_FOR in the integration tests: long enough for a
 * busy two-core machine running two test processes and a build. */
#define LVT_WAIT_MS 60000

/* Milliseconds on the monotonic clock. */
int64_t now_ms(void);

/* Sleep ms milliseconds (restarted after signals). */
void sleep_ms(int ms);

/* Poll cond every 50 ms until it holds or ms milliseconds have passed;
 * evaluates to 1 if it held, 0 on timeout.  cond is evaluated at least once
 * and once more after the deadline, so a slow poll never loses the last try. */
#define WAIT_FOR(cond, ms)                                                                                          \
    __extension__({                                                                                                 \
        int64_t wf_end_ = now_ms() + (ms);                                                                          \
        int wf_ok_;                                                                                                 \
        while (!(wf_ok_ = !!(cond)) && now_ms() < wf_end_)                                                          \
            sleep_ms(50);                                                                                           \
        if (!wf_ok_)                                                                                                \
            wf_ok_ = !!(cond);                                                                                      \
        wf_ok_;                                                                                                     \
    })

/* Run a shell command (sh -c), returning its exit status (WEXITSTATUS, or 128+sig).
 * Output is captured into *out (malloc'ed, caller frees) if out != NULL. */
int run_cmd(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* run_cmd of an already formatted cmd (borrowed), in the network namespace
 * nsfd (an open /run/netns/NAME; -1: this one). */
int run_cmd_ns(int nsfd, char **out, const char *cmd);

/* Exit status of a wait(2) status word: the exit code, 128+signal, or 255. */
int status_code(int wstatus);

/* Wait up to ms for child pid to exit: its wait status, -1 on timeout, -2 if not our child. */
int wait_exit(int pid, int ms);

/* Start argv (argv[0] looked up in PATH) as a child with stdout and stderr
 * appended to log; SIGKILLed at lvt_fini (fixture.h).  Its pid; asserts. */
int lvt_spawn(char *const argv[], const char *log);

/* Path of the litevault binary under test ($LITEVAULT; asserts it is set). Borrowed. */
const char *litevault_bin(void);

#endif /* TESTLIB_UTIL_H */
