/*
 * util.c -- see util.h.
 */
#include "util.h"

#include "fixture.h"

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 255;
}

int wait_exit(int pid, int ms)
{
    int64_t end = now_ms() + ms;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 && errno != EINTR)
            return -2; /* not our child any more */
        if (now_ms() > end)
            return -1;
        sleep_ms(10);
    }
}

const char *litevault_bin(void)
{
    const char *b = getenv("LITEVAULT");
    cr_assert(b && *b, "LITEVAULT is not set (run through `make it-test`)");
    return b;
}

int run_cmd_ns(int nsfd, char **out, const char *cmd)
{
    if (out)
        *out = NULL;

    int pfd[2] = {-1, -1};
    if (out)
        cr_assert(pipe2(pfd, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t p = fork();
    cr_assert(p >= 0, "fork: %s", strerror(errno));
    if (p == 0) {
        if (out)
            dup2(pfd[1], 1);
        if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) != 0)
            _exit(126);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    if (out) {
        close(pfd[1]);
        size_t len = 0, cap = 4096;
        char *buf = malloc(cap + 1);
        cr_assert(buf != NULL);
        for (;;) {
            if (cap - len < 4096) {
                cap *= 2;
                buf = realloc(buf, cap + 1);
                cr_assert(buf != NULL);
            }
            ssize_t k = read(pfd[0], buf + len, cap - len);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                break;
            len += (size_t)k;
        }
        buf[len] = 0;
        close(pfd[0]);
        *out = buf;
    }
    int st;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR)
        ;
    return status_code(st);
}

int run_cmd(char **out, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    cr_assert(r >= 0, "vasprintf");
    int rc = run_cmd_ns(-1, out, cmd);
    free(cmd);
    return rc;
}

int lvt_spawn(char *const argv[], const char *log)
{
    int pid = fork();
    cr_assert_geq(pid, 0, "fork");
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    lvt_defer_kill(pid);
    return pid;
}
