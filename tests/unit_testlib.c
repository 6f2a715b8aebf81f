/*
 * unit_testlib.c -- the test library itself (tests/lib/): a cluster's nodes
 * get distinct directories and ports and their own YAML; lvt_fini removes
 * what the registry holds; WAIT_FOR polls until its condition holds and
 * gives up after its bound.  No daemon is started here.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/lvtest.h"

TestSuite(testlib, .fini = lvt_fini, .timeout = 30);

/* 1 if the file at path contains needle. */
static int file_has(const char *path, const char *needle)
{
    char *t = file_read(path, NULL);
    int r = t && strstr(t, needle) != NULL;
    free(t);
    return r;
}

Test(testlib, cluster_nodes_are_distinct)
{
    const char *own[] = {"# node zero\n", NULL, "# node two\n"};
    struct lvcluster *c = lvcluster_new(3, "# common\n", own);
    char dirs[3][256];
    cr_assert_eq(c->n, 3);
    for (int i = 0; i < 3; i++) {
        struct lvnode *n = c->node[i];
        struct stat st;
        snprintf(dirs[i], sizeof dirs[i], "%s", n->dir);
        cr_assert_eq(stat(n->dir, &st), 0, "node %d: no directory %s", i, n->dir);
        cr_assert_eq(n->pid, 0, "node %d was started", i);
        cr_assert(file_has(n->config, "# common"), "node %d lacks the common YAML", i);
        cr_assert(file_has(n->config, n->mnt) && file_has(n->config, n->data) && file_has(n->config, n->http),
                  "node %d: config does not name its own paths and port", i);
        cr_assert_eq(file_has(n->config, "# node zero"), i == 0, "node %d: wrong own YAML", i);
        cr_assert_eq(file_has(n->config, "# node two"), i == 2, "node %d: wrong own YAML", i);
        for (int k = 0; k < i; k++) {
            cr_assert_str_neq(n->dir, c->node[k]->dir, "nodes %d and %d share a directory", k, i);
            cr_assert_neq(n->port, c->node[k]->port, "nodes %d and %d share port %d", k, i, n->port);
        }
    }
    lvt_fini();
    for (int i = 0; i < 3; i++)
        cr_assert_neq(access(dirs[i], F_OK), 0, "lvt_fini left %s behind", dirs[i]);
}

Test(testlib, registry_runs_undo_newest_first)
{
    const char *outer = lvt_tmpdir("outer");
    char inner[400];
    snprintf(inner, sizeof inner, "%s/inner", outer);
    cr_assert_eq(mkdir(inner, 0700), 0);
    char keep[400];
    snprintf(keep, sizeof keep, "%s", outer);
    lvt_fini();
    cr_assert_neq(access(keep, F_OK), 0, "the temporary directory survived lvt_fini");
    lvt_fini(); /* idempotent */
}

static int calls;
static int count_calls(void)
{
    return ++calls >= 3;
}

Test(testlib, wait_for_polls_and_gives_up)
{
    calls = 0;
    cr_assert(WAIT_FOR(count_calls(), 5000), "WAIT_FOR gave up on a condition that became true");
    cr_assert_eq(calls, 3);
    int64_t t0 = now_ms();
    cr_assert_not(WAIT_FOR(0, 200), "WAIT_FOR(0) held");
    cr_assert_geq(now_ms() - t0, 200, "WAIT_FOR gave up before its bound");
}

Test(testlib, set_http_keeps_the_other_parts)
{
    struct lvnode *n = lvnode_new_with("  # data key\n", "# extra\n");
    lvnode_set_http(n, "0.0.0.0", "  # http key\n");
    char want[64];
    snprintf(want, sizeof want, "addr: 0.0.0.0:%d\n  # http key\n", n->port);
    cr_assert(file_has(n->config, want), "no listen address with its http keys");
    cr_assert(file_has(n->config, "  # data key\n") && file_has(n->config, "# extra\n"), "lost the other parts");
    cr_assert(strstr(n->http, "0.0.0.0:") == n->http, "n->http %s", n->http);
    lvnode_reconfig(n, NULL, "# other\n"); /* keeps the address and http keys */
    cr_assert(file_has(n->config, want) && file_has(n->config, "# other\n"));
    cr_assert(!file_has(n->config, "# data key") && !file_has(n->config, "# extra"));
    lvnode_set_http(n, NULL, NULL);
    cr_assert(!file_has(n->config, "# http key") && file_has(n->config, "addr: 0.0.0.0:"));
}
