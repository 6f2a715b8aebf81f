/*
 * it_testlib_bank.c -- the bank workload of tests/lib/bank.h on one node,
 * the readers on the same mount as the writer (the replication tests put
 * them on a replica's mount).
 *
 *   testlib_bank/wal, /delete   readers started before the database exists;
 *                    transfers, then every mixed step (schema changes,
 *                    VACUUM, journal-mode switches) by hand and then every
 *                    few transfers; pause/resume; the readers see no
 *                    violation and no error and see the tick move; the log
 *                    replays to the database (lvnode_check_db).
 *   testlib_bank/detects   the readers are not blind: a bank whose sum is
 *                    off is reported as violations, a file that is not a
 *                    database as fatal errors (no daemon, a plain file).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/bank.h"
#include "lib/lvtest.h"

TestSuite(testlib_bank, .fini = lvt_fini, .timeout = 240);

#define NACCT 500

static void bank_on_one_node(const char *mode)
{
    sql_set_tag(mode);
    struct lvnode *n = lvnode_started(NULL);
    char *path = lvnode_path(n, "bank.db");

    /* The readers come first: they wait for the file and the table. */
    struct bank_readers *r = bank_readers_start(path, 4, NACCT);
    sleep_ms(200);
    bank_create(path, NACCT, mode);
    struct bank_writer *w = bank_writer_start(path, NACCT);
    bank_writer_wait(w, 50);
    cr_assert(bank_readers_wait(r, 20, 5, LVT_WAIT_MS), "[%s] the readers made no progress", mode);

    /* Every kind of mixed step, twice, between transfers. */
    int done = 0, skipped = 0;
    for (int step = 0; step < 2 * BANK_MIXED_KINDS; step++) {
        long c0 = bank_writer_commits(w);
        if (bank_writer_mixed(w, step) == 0)
            done++;
        else
            skipped++;
        bank_writer_wait(w, c0 + 5);
    }
    /* Only the way back from WAL may be refused (the readers keep it open). */
    cr_assert_geq(done, 2 * BANK_MIXED_KINDS - 2, "[%s] %d mixed steps done, %d skipped", mode, done, skipped);

    /* Paused: nothing commits, and the database says what the writer did. */
    bank_writer_pause(w);
    long c1 = bank_writer_commits(w);
    struct bank_wstats ws = bank_writer_stats(w);
    cr_assert_eq(bank_verify(path, NACCT), ws.tick, "[%s] tick in the database != the writer's", mode);
    cr_assert(bank_readers_wait_tick(r, ws.tick, LVT_WAIT_MS), "[%s] the readers did not see tick %lld", mode, ws.tick);
    sleep_ms(300);
    cr_assert_eq(bank_writer_commits(w), c1, "[%s] the writer committed while paused", mode);
    bank_writer_resume(w);
    bank_writer_wait(w, c1 + 20);

    /* The writer runs the mixed steps itself now. */
    struct bank_wstats before = bank_writer_stop(w);
    struct bank_wopts o = {.mixed_every = 7};
    w = bank_writer_start_opt(path, NACCT, &o);
    bank_writer_wait(w, 60);
    cr_assert(bank_readers_wait(r, 40, 10, LVT_WAIT_MS), "[%s] the readers made no progress", mode);

    ws = bank_writer_stop(w);
    struct bank_result res = bank_readers_stop(r);
    bank_result_print(stderr, mode, &res);
    fprintf(stderr,
            "%s: writer: %ld + %ld transfers, mixed steps by hand %d done %d skipped, then %ld done %ld skipped\n", mode,
            before.commits, ws.commits, done, skipped, ws.mixed, ws.mixed_skipped);
    cr_assert_eq(before.errors, 0, "[%s] writer: %ld errors, first rc %d: %s", mode, before.errors, before.first_rc,
                 before.first_err);
    cr_assert_eq(ws.errors, 0, "[%s] writer: %ld errors, first rc %d: %s", mode, ws.errors, ws.first_rc, ws.first_err);
    cr_assert_gt(ws.mixed + ws.mixed_skipped, 5, "[%s] the writer ran %ld mixed steps", mode, ws.mixed);
    bank_result_assert(&res, mode, 20, 5);
    cr_assert_leq(res.tick_max, bank_verify(path, NACCT), "[%s] a reader saw a tick never committed", mode);
    lvnode_check_db(n, "bank.db");
    free(path);
}

Test(testlib_bank, wal)
{
    bank_on_one_node("wal");
}

Test(testlib_bank, delete)
{
    bank_on_one_node("delete");
}

Test(testlib_bank, detects)
{
    const char *dir = lvt_tmpdir("bank");
    char path[512], junk[512];
    snprintf(path, sizeof path, "%s/bad.db", dir);
    snprintf(junk, sizeof junk, "%s/junk.db", dir);
    bank_create(path, 50, "wal");
    sql_exec(path, "UPDATE acct SET bal = bal + 1 WHERE id = 7", 0);
    FILE *f = fopen(junk, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 4096; i++)
        fputc('x', f);
    fclose(f);

    struct bank_readers *bad = bank_readers_start(path, 2, 50);
    struct bank_readers *notdb = bank_readers_start(junk, 1, 50);
    cr_assert(WAIT_FOR(bank_readers_peek(bad).violations >= 4 && bank_readers_peek(notdb).fatal >= 2, LVT_WAIT_MS),
              "the readers did not report the broken banks");
    struct bank_result rb = bank_readers_stop(bad), rn = bank_readers_stop(notdb);
    bank_result_print(stderr, "off by one", &rb);
    bank_result_print(stderr, "not a database", &rn);
    cr_assert_eq(rb.ok, 0);
    cr_assert(strstr(rb.first_violation, "sums 50001 then 50001") != NULL, "first violation: %s", rb.first_violation);
    cr_assert_eq(rn.ok, 0);
    cr_assert(rn.nerr >= 1 && (rn.err[0].code & 0xff) == SQLITE_NOTADB, "errors: rc %d %s", rn.err[0].code,
              rn.err[0].first);
    cr_assert_not(bank_result_clean(&rb));
    cr_assert_not(bank_result_clean(&rn));
}
