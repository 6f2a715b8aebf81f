/*
 * it_replica_bank.c -- a primary and two replicas under a mixed workload,
 * in every journal mode, with reader processes on each replica checking an
 * invariant in every read transaction (tests/lib/bank.h): the sum of the
 * balances under random transfers never changes, a transaction sees one
 * tick throughout, ticks never go backwards.
 *
 * After each pause of the writer, every replica's checksum and content
 * equal the primary's.  The readers must see no violation, no
 * SQLITE_CORRUPT, no SQLITE_IOERR, no "malformed", and they must see the
 * database move (many distinct ticks): a replica that stopped applying, or
 * applied without SQLite's locks, fails here (see docs/DESIGN.md,
 * "Applying a record on a replica").
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/lvtest.h"
#include "lib/repl.h"

TestSuite(replica_bank, .fini = lvt_fini, .timeout = 400);

#define NACCT 2000
#define PHASES 4

static void bank_run(const char *mode)
{
    struct lvcluster *c = repl_cluster(2, NULL);
    char *p = lvnode_path(c->node[0], "bank.db");
    bank_create(p, NACCT, mode);
    struct bank_readers *rd[2];
    for (int i = 0; i < 2; i++) {
        char *q = lvnode_path(c->node[1 + i], "bank.db");
        rd[i] = bank_readers_start(q, 3, NACCT);
        free(q);
    }
    struct bank_wopts wo = {.mixed_every = 40};
    struct bank_writer *w = bank_writer_start_opt(p, NACCT, &wo);
    for (int ph = 0; ph < PHASES; ph++) {
        bank_writer_wait(w, (long)(ph + 1) * 300);
        bank_writer_pause(w);
        repl_wait_caught_up(c, "bank.db");
        repl_assert_same(c, "bank.db");
        bank_writer_resume(w);
    }
    struct bank_wstats ws = bank_writer_stop(w);
    cr_assert_eq(ws.errors, 0, "the writer failed: %s", ws.first_err);
    repl_wait_caught_up(c, "bank.db");
    repl_assert_same(c, "bank.db");
    for (int i = 0; i < 2; i++) {
        cr_assert(bank_readers_wait_tick(rd[i], ws.tick, LVT_WAIT_MS),
                  "the readers of replica %d never saw tick %lld", i + 1, ws.tick);
        struct bank_result res = bank_readers_stop(rd[i]);
        char what[64];
        snprintf(what, sizeof what, "%s, replica %d", mode, i + 1);
        bank_result_print(stderr, what, &res);
        bank_result_assert(&res, what, 200, 20);
    }
    free(p);
}

Test(replica_bank, wal) { bank_run("wal"); }
Test(replica_bank, delete) { bank_run("delete"); }
Test(replica_bank, truncate) { bank_run("truncate"); }
Test(replica_bank, persist) { bank_run("persist"); }
