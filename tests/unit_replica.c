/*
 * unit_replica.c -- replication: the pure decisions (src/replica/plan.c),
 * raw records from the log reader (txlog_reader_raw), and the primary's
 * stream (src/replica/primary.c) driven without HTTP against a real
 * registry whose databases are made with SQLite directly in data.dir/files
 * (the registry's start-up reconcile logs them, so no mount is needed).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "capture/db.h"
#include "log/txlog.h"
#include "replica/plan.h"
#include "replica/primary.h"
#include "replica/stream.h"
#include "lib/lvtest.h"

static void rp_init(void)
{
    lvlog_threshold = getenv("LV_TEST_LOG") ? LVLOG_DEBUG : -1;
}

TestSuite(replica, .init = rp_init, .fini = lvt_fini, .timeout = 60);

/* ------------------------------------------------------------ plan: names */

static struct repl_pos P(const char *name, int id, uint64_t txid, uint64_t cksum)
{
    struct repl_pos p;
    memset(&p, 0, sizeof p);
    snprintf(p.name, sizeof p.name, "%s", name);
    memset(p.id, id, 16);
    p.txid = txid;
    p.cksum = cksum;
    return p;
}

Test(replica, names_keep_drop_rename)
{
    struct repl_pos rep[] = {P("a.db", 1, 5, 0), P("old.db", 2, 3, 0), P("gone.db", 3, 1, 0), P("c.db", 9, 1, 0)};
    struct repl_pos prim[] = {P("a.db", 1, 7, 0), P("new.db", 2, 3, 0), P("c.db", 4, 1, 0)};
    struct repl_name_action *a = NULL;
    size_t n = 0;

    cr_assert_eq(repl_plan_names(rep, 4, prim, 3, &a, &n), 0);
    cr_assert_eq(n, 3);
    /* gone.db: ID unknown; c.db: the primary's c.db is another database. */
    cr_assert_eq(a[0].op, RN_DROP);
    cr_assert_str_eq(a[0].name, "gone.db");
    cr_assert_eq(a[1].op, RN_DROP);
    cr_assert_str_eq(a[1].name, "c.db");
    cr_assert_eq(a[2].op, RN_RENAME);
    cr_assert_str_eq(a[2].name, "old.db");
    cr_assert_str_eq(a[2].to, "new.db");
    cr_assert_str_eq(rep[0].name, "a.db");
    cr_assert_str_eq(rep[1].name, "new.db");
    cr_assert_eq(rep[2].name[0], 0);
    cr_assert_eq(rep[3].name[0], 0);
    free(a);
}

Test(replica, names_swap_breaks_cycle_with_a_drop)
{
    /* The primary swapped a and b: one rename cannot run before the other. */
    struct repl_pos rep[] = {P("a", 1, 1, 0), P("b", 2, 1, 0)};
    struct repl_pos prim[] = {P("a", 2, 1, 0), P("b", 1, 1, 0)};
    struct repl_name_action *a = NULL;
    size_t n = 0;

    cr_assert_eq(repl_plan_names(rep, 2, prim, 2, &a, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(a[0].op, RN_DROP);
    cr_assert_str_eq(a[0].name, "a");
    cr_assert_eq(a[1].op, RN_RENAME);
    cr_assert_str_eq(a[1].name, "b");
    cr_assert_str_eq(a[1].to, "a");
    free(a);
}

Test(replica, names_chain_of_renames_in_order)
{
    /* a -> b and b -> c on the primary: b must move out first. */
    struct repl_pos rep[] = {P("a", 1, 1, 0), P("b", 2, 1, 0)};
    struct repl_pos prim[] = {P("b", 1, 1, 0), P("c", 2, 1, 0)};
    struct repl_name_action *a = NULL;
    size_t n = 0;

    cr_assert_eq(repl_plan_names(rep, 2, prim, 2, &a, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(a[0].op, RN_RENAME);
    cr_assert_str_eq(a[0].name, "b");
    cr_assert_str_eq(a[0].to, "c");
    cr_assert_eq(a[1].op, RN_RENAME);
    cr_assert_str_eq(a[1].name, "a");
    cr_assert_str_eq(a[1].to, "b");
    free(a);
}

Test(replica, names_duplicate_id_keeps_the_one_in_place)
{
    struct repl_pos rep[] = {P("copy", 1, 1, 0), P("a", 1, 1, 0)};
    struct repl_pos prim[] = {P("a", 1, 1, 0)};
    struct repl_name_action *a = NULL;
    size_t n = 0;

    cr_assert_eq(repl_plan_names(rep, 2, prim, 1, &a, &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(a[0].op, RN_DROP);
    cr_assert_str_eq(a[0].name, "copy");
    free(a);
    cr_assert_eq(repl_plan_names(rep, 0, prim, 1, &a, &n), 0);
    cr_assert_eq(n, 0);
    cr_assert_null(a);
}

/* ------------------------------------------------------------ plan: start */

Test(replica, start_decisions)
{
    struct repl_pos prim = P("a", 1, 10, 0xAA), rep;
    uint64_t from = 99;

    cr_assert_eq(repl_plan_start(&prim, NULL, &from), RST_RECORDS);
    cr_assert_eq(from, 1);
    rep = P("a", 1, 10, 0xAA);
    cr_assert_eq(repl_plan_start(&prim, &rep, &from), RST_WAIT);
    rep.cksum = 0xAB;
    cr_assert_eq(repl_plan_start(&prim, &rep, &from), RST_SNAPSHOT);
    rep = P("a", 1, 11, 0xAA);
    cr_assert_eq(repl_plan_start(&prim, &rep, &from), RST_SNAPSHOT, "a replica ahead of the primary");
    rep = P("a", 1, 4, 0x44);
    cr_assert_eq(repl_plan_start(&prim, &rep, &from), RST_RECORDS);
    cr_assert_eq(from, 5);
    rep.resync = 1;
    cr_assert_eq(repl_plan_start(&prim, &rep, &from), RST_SNAPSHOT);
    rep = P("a", 1, 0, 0);
    cr_assert_eq(repl_plan_start(&prim, &rep, &from), RST_RECORDS);
    cr_assert_eq(from, 1);
    prim.txid = 0;
    cr_assert_eq(repl_plan_start(&prim, NULL, &from), RST_WAIT, "nothing logged yet");
}

Test(replica, continues)
{
    struct txlog_hdr h;

    memset(&h, 0, sizeof h);
    h.txid = 5;
    h.pre_cksum = 0x44;
    cr_assert(repl_continues(&h, 4, 0x44));
    cr_assert_not(repl_continues(&h, 4, 0x45));
    cr_assert_not(repl_continues(&h, 3, 0x44), "a gap");
    h.flags = TXLOG_F_SNAPSHOT;
    cr_assert(repl_continues(&h, 4, 0x45), "a snapshot record replaces everything");
    h.txid = 1;
    h.flags = 0;
    cr_assert(repl_continues(&h, 0, 0x99), "an empty copy takes TXID 1");
    h.txid = 2;
    cr_assert_not(repl_continues(&h, 0, 0), "an empty copy cannot take TXID 2");
}

/* ------------------------------------------------------------ plan: retention */

Test(replica, retain_point)
{
    /* Segments 1-99, 100-199, 200-299, 300- (newest, never pruned). */
    struct repl_seg s[] = {{1, 1000}, {100, 2000}, {200, 4000}, {300, 50}};
    int cut = 9;

    cr_assert_eq(repl_retain_point(s, 4, 250, 300, 0, &cut), 250, "want past upto: upto");
    cr_assert_eq(cut, 0);
    /* Replica at 150: keeps 100-199 and 200-299 (6000 bytes) that the archive would prune. */
    cr_assert_eq(repl_retain_point(s, 4, 299, 150, 6000, &cut), 150);
    cr_assert_eq(cut, 0);
    cr_assert_eq(repl_retain_point(s, 4, 299, 150, 5000, &cut), 199, "over the bound: the oldest goes");
    cr_assert_eq(cut, 1);
    /* Replica at 50 needs 1-99, 100-199, 200-299: 7000 bytes. */
    cr_assert_eq(repl_retain_point(s, 4, 299, 50, 6000, &cut), 99, "give up 1-99 only");
    cr_assert_eq(cut, 1);
    cr_assert_eq(repl_retain_point(s, 4, 299, 50, 5000, &cut), 199);
    /* Bound 0: nothing kept for replicas. */
    cr_assert_eq(repl_retain_point(s, 4, 299, 50, 0, &cut), 299);
    cr_assert_eq(cut, 1);
    /* upto inside a segment: 200-299 is not prunable at 250 anyway. */
    cr_assert_eq(repl_retain_point(s, 4, 250, 50, 2500, &cut), 99);
    cr_assert_eq(repl_retain_point(s, 4, 250, 50, 3000, &cut), 50);
    /* One segment: nothing prunable, nothing held. */
    cr_assert_eq(repl_retain_point(s + 3, 1, 400, 310, 0, &cut), 310);
    cr_assert_eq(cut, 0);
}

Test(replica, backoff)
{
    int64_t b = 0;
    int64_t want[] = {100000, 200000, 400000, 800000, 1600000, 3200000, 5000000, 5000000};

    for (size_t i = 0; i < LV_ARRAY_LEN(want); i++) {
        b = repl_backoff_next(b);
        cr_assert_eq(b, want[i], "step %zu: %lld", i, (long long)b);
    }
}

/* ------------------------------------------------------------ txlog_reader_raw */

static const uint8_t RID[16] = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};

/* Append a record changing pages pg[0..n) of a 1024-byte-page database to fill. */
static void rec_append(struct txlog *l, struct cksum_map *m, uint64_t txid, const uint32_t *pg, int n, int fill)
{
    uint8_t page[1024];
    struct txlog_hdr h;

    memset(&h, 0, sizeof h);
    h.txid = txid;
    h.time_us = 1700000000000000ll + (int64_t)txid;
    h.page_size = 1024;
    h.pre_cksum = m->total;
    uint32_t np = m->npages;
    for (int i = 0; i < n; i++)
        if (pg[i] > np)
            np = pg[i];
    cr_assert_eq(cksum_map_resize(m, np), 0);
    for (int i = 0; i < n; i++) {
        memset(page, fill + i, sizeof page);
        cksum_map_set(m, pg[i], cksum_page(pg[i], page, sizeof page));
    }
    h.db_pages = np;
    h.post_cksum = m->total;
    cr_assert_eq(txlog_append_begin(l, &h), 0);
    for (int i = 0; i < n; i++) {
        memset(page, fill + i, sizeof page);
        cr_assert_eq(txlog_append_page(l, pg[i], page), 0);
    }
    cr_assert_eq(txlog_append_end(l), 0);
}

Test(replica, reader_raw_is_the_stored_record)
{
    const char *dir = lvt_tmpdir("raw");
    struct txlog *l = NULL;
    struct txlog_tail t;
    struct cksum_map m;
    char err[512], seg[4200];
    struct txlog_reader *r = NULL;
    struct txlog_hdr h, h2;
    void *raw = NULL;
    size_t len = 0, flen = 0;
    uint32_t pgno;
    const void *data;

    cksum_map_init(&m);
    cksum_map_reset(&m, 1024);
    cr_assert_eq(txlog_open(dir, RID, 1 << 20, &l, &t, err, sizeof err), 0, "%s", err);
    rec_append(l, &m, 1, (uint32_t[]){1, 2, 3}, 3, 'a');
    rec_append(l, &m, 2, (uint32_t[]){2}, 1, 'x');
    rec_append(l, &m, 3, (uint32_t[]){1, 4}, 2, 'q');
    txlog_close(l);
    snprintf(seg, sizeof seg, "%s/%016x.lvseg", dir, 1);
    char *file = file_read(seg, &flen);
    cr_assert_not_null(file);

    cr_assert_eq(txlog_reader_open(dir, 1, &r), 0);
    cr_assert_eq(txlog_reader_raw(r, &raw, &len), LV_EINVAL, "no current record yet");
    cr_assert_eq(txlog_reader_next(r, &h), 0);
    cr_assert_eq(txlog_reader_raw(r, &raw, &len), 0);
    cr_assert_eq(len, TXLOG_HDR_SIZE + h.stored_len + TXLOG_TRAILER_SIZE);
    cr_assert_eq(memcmp(raw, file + TXLOG_SEG_HDR_SIZE, len), 0, "byte for byte what the writer stored");
    cr_assert_eq(txlog_hdr_decode(raw, &h2), 0);
    cr_assert_eq(h2.txid, 1);
    cr_assert_eq(txlog_reader_page(r, &pgno, &data), LV_ENOENT, "the reader moved past the record");
    size_t off1 = TXLOG_SEG_HDR_SIZE + len;
    free(raw);

    /* After some pages were read, raw still returns the whole record. */
    cr_assert_eq(txlog_reader_next(r, &h), 0);
    cr_assert_eq(h.txid, 2);
    cr_assert_eq(txlog_reader_page(r, &pgno, &data), 0);
    cr_assert_eq(txlog_reader_raw(r, &raw, &len), 0);
    cr_assert_eq(memcmp(raw, file + off1, len), 0);
    size_t off2 = off1 + len;
    free(raw);
    txlog_reader_close(r);

    /* A damaged payload is refused by raw (the header still decodes). */
    file_xor_byte(seg, (long long)(off2 + TXLOG_HDR_SIZE + 3), 0x10);
    cr_assert_eq(txlog_reader_open(dir, 3, &r), 0);
    cr_assert_eq(txlog_reader_next(r, &h), 0);
    cr_assert_eq(h.txid, 3);
    cr_assert_eq(txlog_reader_raw(r, &raw, &len), LV_ECORRUPT);
    cr_assert_null(raw);
    cr_assert(strstr(txlog_reader_error(r), "checksum"), "%s", txlog_reader_error(r));
    txlog_reader_close(r);
    free(file);
    cksum_map_free(&m);
}

/* ------------------------------------------------------------ the primary's stream */

struct tframe {
    int type;
    char name[1100], name2[1100];
    struct txlog_hdr hdr;
    uint8_t dbid[16];
    uint64_t txid, cksum, seq;
    uint32_t page_size, db_pages, first_pgno, count;
    uint8_t *pages;      /* SNAP_PAGES copy */
    char *text;          /* HELLO / ERROR copy */
};

struct tstream {
    struct primary_conn *c;
    struct stream_dec *dec;
    struct tframe f[4096];
    int n;
    int ended;
};


/* Read frames until one of type stop_type arrives (0: none), the stream
 * ends, or ms pass. */
static void ts_read(struct tstream *t, int stop_type, int ms)
{
    static char buf[1 << 16];
    int64_t end = lv_mono_us() + (int64_t)ms * 1000;

    while (!t->ended && lv_mono_us() < end) {
        long n = primary_conn_read(t->c, buf, sizeof buf);
        if (n < 0) {
            t->ended = 1;
            break;
        }
        cr_assert_eq(stream_dec_push(t->dec, buf, (size_t)n), 0);
        struct stream_frame fr;
        int rc, stop = 0;
        while ((rc = stream_dec_next(t->dec, &fr)) == 1) {
            cr_assert(t->n < (int)LV_ARRAY_LEN(t->f));
            struct tframe *f = &t->f[t->n++];
            memset(f, 0, sizeof *f);
            f->type = fr.type;
            if (fr.name)
                snprintf(f->name, sizeof f->name, "%s", fr.name);
            if (fr.name2)
                snprintf(f->name2, sizeof f->name2, "%s", fr.name2);
            f->hdr = fr.hdr;
            memcpy(f->dbid, fr.dbid, 16);
            f->txid = fr.txid;
            f->cksum = fr.cksum;
            f->seq = fr.seq;
            f->page_size = fr.page_size;
            f->db_pages = fr.db_pages;
            f->first_pgno = fr.first_pgno;
            f->count = fr.count;
            if (fr.type == ST_SNAP_PAGES) {
                f->pages = malloc((size_t)fr.count * fr.page_size);
                memcpy(f->pages, fr.pages, (size_t)fr.count * fr.page_size);
            }
            if (fr.text)
                f->text = strdup(fr.text);
            if ((int)fr.type == stop_type)
                stop = 1;
        }
        cr_assert_eq(rc, 0, "decode: %s", stream_dec_error(t->dec));
        if (stop)
            break;
    }
}

static int ts_count(const struct tstream *t, int type)
{
    int k = 0;
    for (int i = 0; i < t->n; i++)
        k += t->f[i].type == type;
    return k;
}

static void ts_close(struct tstream *t)
{
    primary_conn_close(t->c);
    stream_dec_free(t->dec);
    for (int i = 0; i < t->n; i++) {
        free(t->f[i].pages);
        free(t->f[i].text);
    }
    free(t);
}

struct tprim {
    const char *data;
    char db[4300];
    struct dbreg *reg;
    struct primary *p;
    uint8_t cluster[16];
    char cluster_hex[33];
};

static void tp_open_reg(struct tprim *tp)
{
    char err[512] = "";
    cr_assert_eq(dbreg_open(&(struct dbreg_opts){tp->data, 1 << 20, 0, 0}, &tp->reg, err, sizeof err), 0, "%s", err);
}

/* A data.dir with files/a.db (made by SQLite, rollback journal) and its registry. */
static void tp_setup(struct tprim *tp)
{
    char files[4200];

    memset(tp, 0, sizeof *tp);
    tp->data = lvt_tmpdir("prim");
    snprintf(files, sizeof files, "%s/files", tp->data);
    cr_assert_eq(mkdir(files, 0755), 0);
    snprintf(tp->db, sizeof tp->db, "%s/a.db", files);
    sql_exec(tp->db, "PRAGMA journal_mode=DELETE; CREATE TABLE t(x); INSERT INTO t VALUES(randomblob(3000));", 0);
    tp_open_reg(tp);
    memset(tp->cluster, 0x5c, 16);
    lv_hex(tp->cluster, 16, tp->cluster_hex);
    cr_assert_eq(primary_new(&(struct primary_opts){.reg = tp->reg, .data_dir = tp->data, .cluster = tp->cluster,
                                                    .node_id = "aaaa", .url = "http://primary:1"},
                             &tp->p),
                 0);
}

static void tp_teardown(struct tprim *tp)
{
    primary_free(tp->p);
    dbreg_close(tp->reg);
}

/* The registry's view of name. */
static struct db_info tp_info(struct tprim *tp, const char *name)
{
    struct db_info *l = NULL, r;
    size_t n = 0;

    memset(&r, 0, sizeof r);
    cr_assert_eq(dbreg_list(tp->reg, &l, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(l[i].name, name) == 0)
            r = l[i];
    free(l);
    cr_assert(r.name[0], "no database %s", name);
    return r;
}

/* Open a stream with body; expect status (200: the stream). */
static struct tstream *ts_open(struct tprim *tp, const char *body, int want_status, char **errjson)
{
    struct tstream *t = calloc(1, sizeof *t);
    int status = 0;
    char *err = NULL;
    int rc = primary_conn_open(tp->p, body, strlen(body), "test", &t->c, &status, &err);

    cr_assert_eq(status, want_status, "status %d: %s", status, err ? err : "");
    if (want_status != 200) {
        cr_assert_neq(rc, 0);
        cr_assert_not_null(err);
        if (errjson)
            *errjson = err;
        else
            free(err);
        free(t);
        return NULL;
    }
    cr_assert_eq(rc, 0);
    cr_assert_eq(stream_dec_new(0, &t->dec), 0);
    return t;
}

static char *body_with(struct tprim *tp, const char *cluster, const char *name, const struct db_info *i,
                       uint64_t txid, uint64_t cksum)
{
    char *b = NULL, idh[33];
    if (!i)
        cr_assert(asprintf(&b, "{\"cluster\":\"%s\",\"node\":\"bbbb\",\"dbs\":[]}", cluster) > 0);
    else
        cr_assert(asprintf(&b, "{\"cluster\":\"%s\",\"node\":\"bbbb\",\"url\":\"http://replica:2\",\"dbs\":[{\"name\":"
                               "\"%s\",\"id\":\"%s\",\"txid\":%llu,\"cksum\":\"%016llx\"}]}",
                           cluster, name, lv_hex(i->id, 16, idh), (unsigned long long)txid,
                           (unsigned long long)cksum) > 0);
    LV_UNUSED(tp);
    return b;
}

Test(replica, primary_streams_whole_log_to_an_empty_replica)
{
    struct tprim tp;
    tp_setup(&tp);
    struct db_info a = tp_info(&tp, "a.db");
    cr_assert_geq(a.txid, 1);
    struct tstream *t = ts_open(&tp, "{\"cluster\":\"\",\"node\":\"bbbb\",\"dbs\":[]}", 200, NULL);

    ts_read(t, ST_HEARTBEAT, 5000);
    cr_assert_geq(t->n, 2);
    cr_assert_eq(t->f[0].type, ST_HELLO);
    cr_assert(strstr(t->f[0].text, tp.cluster_hex), "%s", t->f[0].text);
    cr_assert(strstr(t->f[0].text, "\"node\":\"aaaa\""), "%s", t->f[0].text);
    uint64_t next = 1;
    for (int i = 1; i < t->n; i++) {
        if (t->f[i].type != ST_RECORD)
            continue;
        cr_assert_str_eq(t->f[i].name, "a.db");
        cr_assert_eq(t->f[i].hdr.txid, next, "records in order from TXID 1");
        next++;
    }
    cr_assert_eq(next, a.txid + 1);
    cr_assert_eq(t->f[t->n - 1].type, ST_HEARTBEAT);
    cr_assert_eq(ts_count(t, ST_SNAP_BEGIN), 0);

    char *st = primary_status_json(tp.p);
    cr_assert(strstr(st, "\"node\":\"bbbb\""), "%s", st);
    cr_assert(strstr(st, "\"snapshot\":0"), "%s", st);
    free(st);
    /* The retention hook holds this replica's position... */
    cr_assert_eq(primary_retain(tp.p, &a, 1000), a.txid);
    ts_close(t);
    /* ... and still for a while after it disconnected. */
    cr_assert_eq(primary_retain(tp.p, &a, 1000), a.txid);
    tp_teardown(&tp);
}

Test(replica, primary_sends_only_the_tail)
{
    struct tprim tp;
    tp_setup(&tp);
    struct db_info a1 = tp_info(&tp, "a.db");

    /* A commit made while the daemon is down becomes a RECOVERED record. */
    dbreg_close(tp.reg);
    sql_exec(tp.db, "INSERT INTO t VALUES(randomblob(5000));", 0);
    primary_free(tp.p);
    tp_open_reg(&tp);
    cr_assert_eq(primary_new(&(struct primary_opts){.reg = tp.reg, .data_dir = tp.data, .cluster = tp.cluster,
                                                    .node_id = "aaaa", .url = "u"},
                             &tp.p),
                 0);
    struct db_info a2 = tp_info(&tp, "a.db");
    cr_assert_gt(a2.txid, a1.txid);

    char *body = body_with(&tp, tp.cluster_hex, "a.db", &a1, a1.txid, a1.cksum);
    struct tstream *t = ts_open(&tp, body, 200, NULL);
    free(body);
    ts_read(t, ST_HEARTBEAT, 5000);
    cr_assert_eq(ts_count(t, ST_SNAP_BEGIN), 0);
    cr_assert_eq(ts_count(t, ST_RECORD), (int)(a2.txid - a1.txid));
    for (int i = 0, k = 0; i < t->n; i++)
        if (t->f[i].type == ST_RECORD) {
            cr_assert_eq(t->f[i].hdr.txid, a1.txid + 1 + (uint64_t)k++);
            if (k == 1)
                cr_assert_eq(t->f[i].hdr.pre_cksum, a1.cksum);
        }
    char *st = primary_status_json(tp.p);
    cr_assert(strstr(st, "\"snapshot\":0"), "%s", st);
    cr_assert_null(strstr(st, "\"record\":0,"), "%s", st);
    free(st);
    ts_close(t);

    /* A replica already at the end gets nothing but heartbeats. */
    body = body_with(&tp, tp.cluster_hex, "a.db", &a2, a2.txid, a2.cksum);
    t = ts_open(&tp, body, 200, NULL);
    free(body);
    ts_read(t, ST_HEARTBEAT, 5000);
    cr_assert_eq(t->n, 2, "HELLO, HEARTBEAT");
    ts_close(t);
    tp_teardown(&tp);
}

Test(replica, primary_snapshot_when_the_copy_differs)
{
    struct tprim tp;
    tp_setup(&tp);
    struct db_info a = tp_info(&tp, "a.db");
    char *body = body_with(&tp, tp.cluster_hex, "a.db", &a, a.txid, a.cksum ^ 1);
    struct tstream *t = ts_open(&tp, body, 200, NULL);
    free(body);

    ts_read(t, ST_HEARTBEAT, 10000);
    cr_assert_eq(ts_count(t, ST_SNAP_BEGIN), 1);
    cr_assert_eq(ts_count(t, ST_SNAP_END), 1);
    cr_assert_eq(ts_count(t, ST_RECORD), 0);
    /* The pages rebuild the file. */
    size_t flen = 0;
    char *file = file_read(tp.db, &flen);
    int begin = -1;
    uint32_t got = 0;
    for (int i = 0; i < t->n; i++) {
        struct tframe *f = &t->f[i];
        if (f->type == ST_SNAP_BEGIN) {
            begin = i;
            cr_assert_eq(f->txid, a.txid);
            cr_assert_eq(f->cksum, a.cksum);
            cr_assert_eq(memcmp(f->dbid, a.id, 16), 0);
            cr_assert_eq((size_t)f->db_pages * f->page_size, flen);
        }
        if (f->type == ST_SNAP_PAGES) {
            cr_assert_gt(begin, 0);
            cr_assert_eq(f->first_pgno, got + 1);
            cr_assert_eq(memcmp(f->pages, file + (size_t)got * f->page_size, (size_t)f->count * f->page_size), 0);
            got += f->count;
        }
        if (f->type == ST_SNAP_END)
            cr_assert_eq(got, t->f[begin].db_pages);
    }
    free(file);
    char *st = primary_status_json(tp.p);
    cr_assert(strstr(st, "\"snapshots\":1"), "%s", st);
    free(st);
    ts_close(t);
    tp_teardown(&tp);
}

Test(replica, primary_drops_and_renames)
{
    struct tprim tp;
    tp_setup(&tp);
    struct db_info a = tp_info(&tp, "a.db"), other = a;
    char *body = NULL, idh[33], idh2[33];

    memset(other.id, 0xEE, 16);
    cr_assert(asprintf(&body,
                       "{\"cluster\":\"%s\",\"node\":\"bbbb\",\"dbs\":[{\"name\":\"old.db\",\"id\":\"%s\",\"txid\":%llu,"
                       "\"cksum\":\"%016llx\"},{\"name\":\"x/gone.db\",\"id\":\"%s\",\"txid\":3,\"cksum\":\"0000000000000001\"}]}",
                       tp.cluster_hex, lv_hex(a.id, 16, idh), (unsigned long long)a.txid, (unsigned long long)a.cksum,
                       lv_hex(other.id, 16, idh2)) > 0);
    struct tstream *t = ts_open(&tp, body, 200, NULL);
    free(body);
    ts_read(t, ST_HEARTBEAT, 5000);
    cr_assert_eq(t->n, 4, "HELLO DROP RENAME HEARTBEAT, got %d frames", t->n);
    cr_assert_eq(t->f[1].type, ST_DROP);
    cr_assert_str_eq(t->f[1].name, "x/gone.db");
    cr_assert_eq(t->f[2].type, ST_RENAME);
    cr_assert_str_eq(t->f[2].name, "old.db");
    cr_assert_str_eq(t->f[2].name2, "a.db");
    ts_close(t);
    tp_teardown(&tp);
}

Test(replica, primary_refuses_other_cluster_and_unknown_databases)
{
    struct tprim tp;
    tp_setup(&tp);
    struct db_info a = tp_info(&tp, "a.db");
    char *err = NULL;

    ts_open(&tp, "{\"cluster\":\"0123456789abcdef0123456789abcdef\",\"node\":\"bbbb\",\"dbs\":[]}", 409, &err);
    cr_assert(strstr(err, tp.cluster_hex) && strstr(err, "0123456789abcdef0123456789abcdef"), "%s", err);
    free(err);

    /* No cluster-id and a database this primary never had: not adopted. */
    memset(a.id, 0x77, 16);
    char *body = body_with(&tp, "", "mine.db", &a, 3, 1);
    ts_open(&tp, body, 409, &err);
    cr_assert(strstr(err, "mine.db") && strstr(err, "adopt"), "%s", err);
    free(err);
    free(body);

    ts_open(&tp, "not json", 400, NULL);
    ts_open(&tp, "{\"node\":\"bbbb\",\"dbs\":[{\"name\":\"a\"}]}", 400, NULL);
    ts_open(&tp, "{\"node\":\"../x\",\"dbs\":[]}", 400, NULL);
    tp_teardown(&tp);
}

Test(replica, primary_stop_ends_streams_with_error)
{
    struct tprim tp;
    tp_setup(&tp);
    struct db_info a = tp_info(&tp, "a.db");
    char *body = body_with(&tp, tp.cluster_hex, "a.db", &a, a.txid, a.cksum);
    struct tstream *t = ts_open(&tp, body, 200, NULL);
    free(body);

    ts_read(t, ST_HEARTBEAT, 5000);
    cr_assert_eq(t->n, 2);
    primary_stop_streams(tp.p);
    ts_read(t, 0, 3000);
    cr_assert(t->ended);
    cr_assert_eq(t->f[t->n - 1].type, ST_ERROR);
    ts_close(t);
    tp_teardown(&tp);
}

/* ------------------------------------------------------------ the replica's receiver (rx) */

#include "replica/rx.h"

/* A fake sink: records what it is asked and answers from a script. */
struct fsink {
    char log[8192];          /* "apply a 1-3;" ... */
    int busy_left;           /* answer LV_EBUSY this many times (apply and snap_end) */
    int fail_rc;             /* answer this once from apply (0: none) */
    int snaps;               /* live fake snapshots */
    uint32_t pages;          /* pages staged */
};

static struct fsink FS;

static void fs_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fs_log(const char *fmt, ...)
{
    va_list ap;
    size_t l = strlen(FS.log);
    va_start(ap, fmt);
    vsnprintf(FS.log + l, sizeof FS.log - l, fmt, ap);
    va_end(ap);
}

static int fk_apply(void *arg, const char *name, const struct db_rec *recs, size_t n, int wait_ms,
                    struct db_apply_stats *st, char *err, size_t errlen)
{
    LV_UNUSED(arg);
    LV_UNUSED(wait_ms);
    st->lock_wait_us = 7;
    if (FS.busy_left > 0) {
        FS.busy_left--;
        fs_log("busy %s;", name);
        return LV_EBUSY;
    }
    if (FS.fail_rc) {
        int rc = FS.fail_rc;
        FS.fail_rc = 0;
        fs_log("fail %s;", name);
        lv_seterr(err, errlen, "%s: scripted failure", name);
        return rc;
    }
    for (size_t i = 1; i < n; i++)
        cr_assert_eq(recs[i].h.txid, recs[i - 1].h.txid + 1);
    fs_log("apply %s %llu-%llu;", name, (unsigned long long)recs[0].h.txid, (unsigned long long)recs[n - 1].h.txid);
    return 0;
}

static int fk_snap_begin(void *arg, const char *name, const struct db_image_info *info, struct db_snap **out,
                         char *err, size_t errlen)
{
    LV_UNUSED(arg);
    LV_UNUSED(err);
    LV_UNUSED(errlen);
    fs_log("begin %s %llu;", name, (unsigned long long)info->txid);
    FS.snaps++;
    *out = (struct db_snap *)malloc(1);
    return 0;
}

static int fk_snap_pages(void *arg, struct db_snap *s, uint32_t first_pgno, uint32_t count, const void *pages,
                         char *err, size_t errlen)
{
    LV_UNUSED(arg);
    LV_UNUSED(s);
    LV_UNUSED(pages);
    LV_UNUSED(err);
    LV_UNUSED(errlen);
    cr_assert_eq(first_pgno, FS.pages + 1);
    FS.pages += count;
    return 0;
}

static int fk_snap_end(void *arg, struct db_snap *s, int wait_ms, char *err, size_t errlen)
{
    LV_UNUSED(arg);
    LV_UNUSED(wait_ms);
    LV_UNUSED(err);
    LV_UNUSED(errlen);
    if (FS.busy_left > 0) {
        FS.busy_left--;
        fs_log("endbusy;");
        return LV_EBUSY;
    }
    fs_log("end;");
    free(s);
    FS.snaps--;
    return 0;
}

static void fk_snap_abort(void *arg, struct db_snap *s)
{
    LV_UNUSED(arg);
    fs_log("abort;");
    free(s);
    FS.snaps--;
}

static int fk_drop(void *arg, const char *name, char *err, size_t errlen)
{
    LV_UNUSED(arg);
    LV_UNUSED(err);
    LV_UNUSED(errlen);
    fs_log("drop %s;", name);
    return 0;
}

static int fk_rename(void *arg, const char *from, const char *to, char *err, size_t errlen)
{
    LV_UNUSED(arg);
    LV_UNUSED(err);
    LV_UNUSED(errlen);
    fs_log("rename %s %s;", from, to);
    return 0;
}

static struct repl_rx *rx_new(size_t batch_max)
{
    struct repl_sink s = {fk_apply, fk_snap_begin, fk_snap_pages, fk_snap_end, fk_snap_abort, fk_drop, fk_rename,
                          NULL};
    struct repl_rx *x = NULL;

    memset(&FS, 0, sizeof FS);
    cr_assert_eq(repl_rx_new(&s, &(struct repl_rx_opts){20, batch_max}, &x), 0);
    return x;
}

static uint8_t rx_bytes[1000];

/* Feed a RECORD frame of txid for name (time: now - age_ms). */
static int rx_rec(struct repl_rx *x, const char *name, uint64_t txid, int64_t age_ms, char *err)
{
    struct stream_frame f;
    memset(&f, 0, sizeof f);
    f.type = ST_RECORD;
    f.name = name;
    f.hdr.txid = txid;
    f.hdr.time_us = lv_now_us() - age_ms * 1000;
    f.rec = rx_bytes;
    f.rec_len = 100;
    return repl_rx_frame(x, &f, err, 512);
}

static int rx_simple(struct repl_rx *x, int type, const char *name, const char *name2, char *err)
{
    struct stream_frame f;
    static uint8_t pages[2048];
    memset(&f, 0, sizeof f);
    f.type = type;
    f.name = name;
    f.name2 = name2;
    f.txid = 40;
    f.page_size = 1024;
    f.db_pages = 4;
    f.first_pgno = FS.pages + 1;
    f.count = 2;
    f.pages = pages;
    return repl_rx_frame(x, &f, err, 512);
}

static struct repl_rx_stat rx_stat(struct repl_rx *x, const char *name)
{
    struct repl_rx_stat *v = NULL, r;
    size_t n = 0;
    memset(&r, 0, sizeof r);
    cr_assert_eq(repl_rx_stats(x, lv_now_us(), &v, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            r = v[i];
    free(v);
    cr_assert(r.name[0], "no stats for %s", name);
    return r;
}

Test(replica, rx_batches_per_database)
{
    struct repl_rx *x = rx_new(0);
    char err[512] = "";

    for (int i = 1; i <= 3; i++)
        cr_assert_eq(rx_rec(x, "a", (uint64_t)i, 0, err), 0);
    cr_assert_eq(rx_rec(x, "b", 8, 0, err), 0);
    cr_assert_eq(rx_rec(x, "b", 9, 0, err), 0);
    cr_assert_eq(repl_rx_pending(x), 500);
    cr_assert_str_eq(FS.log, "", "nothing is applied before the flush");
    cr_assert_eq(repl_rx_flush(x, 0, err, sizeof err), 0);
    cr_assert_str_eq(FS.log, "apply a 1-3;apply b 8-9;");
    cr_assert_eq(repl_rx_pending(x), 0);
    struct repl_rx_stat s = rx_stat(x, "a");
    cr_assert_eq(s.txid, 3);
    cr_assert_str_eq(s.state, "streaming");
    cr_assert_eq(s.records, 3);
    cr_assert_eq(s.lock_wait_us, 7);
    repl_rx_free(x);

    /* batch_max splits a long batch, and a full batch goes at once. */
    x = rx_new(250);
    for (int i = 1; i <= 5; i++)
        cr_assert_eq(rx_rec(x, "a", (uint64_t)i, 0, err), 0);
    cr_assert_str_eq(FS.log, "apply a 1-2;apply a 3-3;", "a batch reaching batch_max is applied without a flush");
    cr_assert_eq(repl_rx_flush(x, 0, err, sizeof err), 0);
    cr_assert_str_eq(FS.log, "apply a 1-2;apply a 3-3;apply a 4-5;");
    repl_rx_free(x);
}

/* batch_max counts the pages a record decodes to, not only its bytes as
 * received: a catch-up of well-compressed records stays within it. */
Test(replica, rx_batch_bound_counts_decoded_pages)
{
    struct repl_rx *x = rx_new(650);
    char err[512] = "";
    struct stream_frame f;

    for (int i = 1; i <= 5; i++) {
        memset(&f, 0, sizeof f);
        f.type = ST_RECORD;
        f.name = "a";
        f.hdr.txid = (uint64_t)i;
        f.hdr.time_us = lv_now_us();
        f.hdr.raw_len = 200; /* + 100 received: 300 per record, two per batch */
        f.rec = rx_bytes;
        f.rec_len = 100;
        cr_assert_eq(repl_rx_frame(x, &f, err, sizeof err), 0, "%s", err);
    }
    cr_assert_eq(repl_rx_flush(x, 0, err, sizeof err), 0);
    /* the third record brought the pending cost past 650: 1-2 went at once (and 3
     * with them, alone); the flush applies the rest */
    cr_assert_str_eq(FS.log, "apply a 1-2;apply a 3-3;apply a 4-5;");
    cr_assert_eq(repl_rx_pending(x), 0);
    repl_rx_free(x);
}

Test(replica, rx_busy_batch_waits_while_others_go_on)
{
    struct repl_rx *x = rx_new(0);
    char err[512] = "";

    cr_assert_eq(rx_rec(x, "a", 1, 0, err), 0);
    FS.busy_left = 1;
    cr_assert_eq(repl_rx_flush(x, 0, err, sizeof err), 0);
    cr_assert_str_eq(FS.log, "busy a;");
    cr_assert_str_eq(rx_stat(x, "a").state, "waiting-for-readers");
    cr_assert_eq(rx_rec(x, "a", 2, 0, err), 0);
    cr_assert_eq(rx_rec(x, "b", 5, 0, err), 0);
    cr_assert_eq(repl_rx_flush(x, 0, err, sizeof err), 0);
    cr_assert_str_eq(FS.log, "busy a;apply b 5-5;", "a is not tried again before wait_ms");
    cr_assert_eq(repl_rx_pending(x), 200);
    sleep_ms(30);
    cr_assert_eq(repl_rx_flush(x, 0, err, sizeof err), 0);
    cr_assert_str_eq(FS.log, "busy a;apply b 5-5;apply a 1-2;");
    cr_assert_str_eq(rx_stat(x, "a").state, "streaming");
    cr_assert_eq(rx_stat(x, "a").busy, 1);
    cr_assert_eq(repl_rx_pending(x), 0);
    repl_rx_free(x);
}

Test(replica, rx_lag)
{
    struct repl_rx *x = rx_new(0);
    char err[512] = "";

    cr_assert_eq(rx_rec(x, "a", 1, 3000, err), 0);
    struct repl_rx_stat s = rx_stat(x, "a");
    cr_assert_geq(s.lag_us, 3000000, "pending: now - oldest commit");
    cr_assert_str_eq(s.state, "applying");
    cr_assert_eq(s.recv_txid, 1);
    cr_assert_eq(s.txid, 0);
    cr_assert_eq(repl_rx_flush(x, 0, err, sizeof err), 0);
    s = rx_stat(x, "a");
    cr_assert_geq(s.lag_us, 3000000, "applied: the last record's delay");
    cr_assert_lt(s.lag_us, 4000000);
    cr_assert_eq(rx_rec(x, "a", 2, 0, err), 0);
    cr_assert_eq(repl_rx_flush(x, 0, err, sizeof err), 0);
    cr_assert_lt(rx_stat(x, "a").lag_us, 500000);
    repl_rx_free(x);
}

Test(replica, rx_chain_break_asks_for_a_snapshot)
{
    struct repl_rx *x = rx_new(0);
    char err[512] = "";
    struct db_info pos;

    cr_assert_eq(rx_rec(x, "a", 7, 0, err), 0);
    FS.fail_rc = LV_ECHAIN;
    cr_assert_eq(repl_rx_flush(x, 0, err, sizeof err), LV_ECHAIN);
    cr_assert(strstr(err, "a:") && strstr(err, "snapshot"), "%s", err);
    cr_assert(repl_rx_resync(x, "a"));
    cr_assert_eq(repl_rx_pending(x), 0);
    memset(&pos, 0, sizeof pos);
    snprintf(pos.name, sizeof pos.name, "a");
    pos.txid = 6;
    cr_assert_eq(repl_rx_session(x, &pos, 1), 0);
    cr_assert(repl_rx_resync(x, "a"), "still asks in the next session");
    cr_assert_eq(rx_simple(x, ST_SNAP_BEGIN, "a", NULL, err), 0);
    cr_assert_eq(rx_simple(x, ST_SNAP_PAGES, "a", NULL, err), 0);
    cr_assert_eq(rx_simple(x, ST_SNAP_PAGES, "a", NULL, err), 0);
    cr_assert_eq(rx_simple(x, ST_SNAP_END, "a", NULL, err), 0);
    cr_assert_not(repl_rx_resync(x, "a"), "the snapshot answered it");
    cr_assert_eq(rx_stat(x, "a").txid, 40);
    cr_assert_eq(FS.pages, 4);
    repl_rx_free(x);
}

Test(replica, rx_broken_database_is_skipped_not_fatal)
{
    struct repl_rx *x = rx_new(0);
    char err[512] = "";

    cr_assert_eq(rx_rec(x, "a", 1, 0, err), 0);
    cr_assert_eq(rx_rec(x, "b", 1, 0, err), 0);
    FS.fail_rc = LV_EIO;
    cr_assert_eq(repl_rx_flush(x, 0, err, sizeof err), 0);
    cr_assert_str_eq(FS.log, "fail a;apply b 1-1;");
    struct repl_rx_stat s = rx_stat(x, "a");
    cr_assert_str_eq(s.state, "error");
    cr_assert(strstr(s.error, "scripted"), "%s", s.error);
    cr_assert_eq(rx_rec(x, "a", 2, 0, err), 0);
    cr_assert_eq(repl_rx_pending(x), 0, "a's frames are ignored");
    cr_assert_eq(repl_rx_session(x, NULL, 0), 0);
    cr_assert_eq(rx_rec(x, "a", 1, 0, err), 0);
    cr_assert_eq(repl_rx_flush(x, 0, err, sizeof err), 0);
    cr_assert_str_eq(FS.log, "fail a;apply b 1-1;apply a 1-1;", "a new session tries again");
    repl_rx_free(x);
}

Test(replica, rx_snapshot_order)
{
    struct repl_rx *x = rx_new(0);
    char err[512] = "";

    cr_assert_eq(rx_simple(x, ST_SNAP_PAGES, "a", NULL, err), LV_ECORRUPT, "pages without a begin");
    cr_assert(strstr(err, "SNAP_BEGIN"), "%s", err);
    cr_assert_eq(rx_rec(x, "a", 3, 0, err), 0);
    cr_assert_eq(rx_simple(x, ST_SNAP_BEGIN, "a", NULL, err), 0);
    cr_assert_eq(repl_rx_pending(x), 0, "the image replaces what was pending");
    cr_assert_eq(rx_rec(x, "a", 41, 0, err), LV_ECORRUPT, "a record inside a snapshot");
    cr_assert_str_eq(rx_stat(x, "a").state, "snapshot");
    cr_assert_eq(rx_simple(x, ST_SNAP_PAGES, "a", NULL, err), 0);
    cr_assert_eq(rx_simple(x, ST_SNAP_PAGES, "a", NULL, err), 0);
    FS.busy_left = 1;
    cr_assert_eq(rx_simple(x, ST_SNAP_END, "a", NULL, err), 0);
    cr_assert_str_eq(FS.log, "begin a 40;endbusy;");
    /* Records after the image wait behind its installation. */
    cr_assert_eq(rx_rec(x, "a", 41, 0, err), 0);
    cr_assert_eq(rx_rec(x, "a", 42, 0, err), 0);
    cr_assert_eq(repl_rx_flush(x, 1, err, sizeof err), 0);
    cr_assert_str_eq(FS.log, "begin a 40;endbusy;end;apply a 41-42;");
    cr_assert_eq(FS.snaps, 0);

    /* A new snapshot replaces one in progress. */
    cr_assert_eq(rx_simple(x, ST_SNAP_BEGIN, "b", NULL, err), 0);
    cr_assert_eq(rx_simple(x, ST_SNAP_BEGIN, "b", NULL, err), 0);
    cr_assert_eq(FS.snaps, 1);
    repl_rx_free(x);
    cr_assert_eq(FS.snaps, 0, "freeing aborts it");
}

Test(replica, rx_drop_and_rename)
{
    struct repl_rx *x = rx_new(0);
    char err[512] = "";

    cr_assert_eq(rx_rec(x, "a", 1, 0, err), 0);
    cr_assert_eq(rx_rec(x, "c", 1, 0, err), 0);
    cr_assert_eq(rx_simple(x, ST_RENAME, "a", "b", err), 0);
    cr_assert_eq(rx_simple(x, ST_DROP, "c", NULL, err), 0);
    cr_assert_eq(repl_rx_pending(x), 100);
    cr_assert_eq(repl_rx_flush(x, 0, err, sizeof err), 0);
    cr_assert_str_eq(FS.log, "rename a b;drop c;apply b 1-1;", "pending records follow the rename");
    cr_assert_eq(rx_simple(x, ST_HELLO, NULL, NULL, err), LV_EINVAL);
    repl_rx_free(x);
}

/* ------------------------------------------------------------ the replica's client against a fake server */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "replica/replica.h"

/* A one-connection-at-a-time HTTP server that answers POST /v1/stream:
 * mode 's' streams from a real primary_conn, '4' answers 409, 'q' sends
 * HELLO then nothing, 'g' sends garbage. */
struct fakesrv {
    int lfd, port;
    char mode;
    struct primary *p;
    pthread_t th;
    volatile int stop;
    pthread_mutex_t mu;
    char req[8192];          /* the last request (head and body) */
    int conns;
};

static int fs_write(int fd, const void *b, size_t n)
{
    const char *p = b;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fs_chunk(int fd, const void *b, size_t n)
{
    char h[32];
    snprintf(h, sizeof h, "%zx\r\n", n);
    return fs_write(fd, h, strlen(h)) || fs_write(fd, b, n) || fs_write(fd, "\r\n", 2) ? -1 : 0;
}

static void fs_serve(struct fakesrv *s, int fd)
{
    char req[8192];
    size_t got = 0;
    char *end = NULL;
    long clen = 0;

    while (got < sizeof req - 1) {
        ssize_t r = recv(fd, req + got, sizeof req - 1 - got, 0);
        if (r <= 0)
            return;
        got += (size_t)r;
        req[got] = 0;
        end = strstr(req, "\r\n\r\n");
        if (end) {
            const char *cl = strcasestr(req, "Content-Length:");
            clen = cl ? atol(cl + 15) : 0;
            if (got >= (size_t)(end + 4 - req) + (size_t)clen)
                break;
        }
    }
    pthread_mutex_lock(&s->mu);
    memcpy(s->req, req, got + 1);
    s->conns++;
    pthread_mutex_unlock(&s->mu);
    const char *body = end ? end + 4 : "";
    if (s->mode == '4') {
        const char *b = "{\"error\":\"cluster mismatch: test\"}";
        char h[256];
        snprintf(h, sizeof h, "HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                              "Connection: close\r\n\r\n", strlen(b));
        fs_write(fd, h, strlen(h));
        fs_write(fd, b, strlen(b));
        return;
    }
    const char *h = "HTTP/1.1 200 OK\r\nContent-Type: application/x-litevault-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
    if (fs_write(fd, h, strlen(h)))
        return;
    if (s->mode == 'g') {
        fs_chunk(fd, "this is not a frame at all....", 30);
        sleep_ms(2000);
        return;
    }
    struct primary_conn *c = NULL;
    int status = 0;
    char *err = NULL;
    if (primary_conn_open(s->p, body, (size_t)clen, "fake", &c, &status, &err) != 0) {
        free(err);
        return;
    }
    static char buf[1 << 16];
    int sent_hello = 0;
    while (!s->stop) {
        long n = primary_conn_read(c, buf, s->mode == 'q' && !sent_hello ? 16 : sizeof buf);
        if (n < 0)
            break;
        if (s->mode == 'q') {
            /* HELLO only: its header then its payload, then silence. */
            if (sent_hello >= 2) {
                sleep_ms(50);
                continue;
            }
            sent_hello++;
        }
        if (n > 0 && fs_chunk(fd, buf, (size_t)n))
            break;
    }
    primary_conn_close(c);
}

static void *fs_main(void *arg)
{
    struct fakesrv *s = arg;
    while (!s->stop) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        fs_serve(s, fd);
        close(fd);
    }
    return NULL;
}

static void fakesrv_start(struct fakesrv *s, char mode, struct primary *p)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    struct timeval tv = {0, 200000};

    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->p = p;
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(s->lfd, 4), 0);
    cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
    setsockopt(s->lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    s->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&s->th, NULL, fs_main, s), 0);
}

static void fakesrv_stop(struct fakesrv *s)
{
    s->stop = 1;
    pthread_join(s->th, NULL);
    close(s->lfd);
}

struct trep {
    const char *data;
    struct dbreg *reg;
    struct replica *r;
};

static void trep_start(struct trep *t, int port, const char *token)
{
    char err[512] = "", url[64];
    static const struct repl_sink fake = {fk_apply, fk_snap_begin, fk_snap_pages, fk_snap_end, fk_snap_abort,
                                          fk_drop, fk_rename, NULL};

    memset(t, 0, sizeof *t);
    t->data = lvt_tmpdir("repl");
    cr_assert_eq(dbreg_open(&(struct dbreg_opts){t->data, 1 << 20, 0, 0}, &t->reg, err, sizeof err), 0, "%s", err);
    dbreg_set_replica(t->reg, "http://primary");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    cr_assert_eq(replica_start(&(struct replica_opts){.reg = t->reg, .data_dir = t->data, .primary_url = url,
                                                      .token = token, .node_id = "cccc", .url = "http://me:3",
                                                      .apply_wait_us = 20000, .max_lag_us = 1000000,
                                                      .sink = &fake},
                               &t->r),
                 0);
}

static void trep_stop(struct trep *t)
{
    int64_t t0 = lv_mono_us();
    replica_stop(t->r);
    cr_assert_lt(lv_mono_us() - t0, 3000000, "replica_stop returns within about a second");
    dbreg_close(t->reg);
}

/* Wait up to ms for the status JSON to contain needle; returns it (malloc'ed). */
static char *trep_wait_status(struct trep *t, const char *needle, int ms)
{
    char *st = NULL;
    for (int i = 0; i < ms / 20; i++) {
        free(st);
        st = replica_status_json(t->r);
        if (st && strstr(st, needle))
            return st;
        sleep_ms(20);
    }
    cr_assert_fail("status never contained %s: %s", needle, st ? st : "(null)");
    return st;
}

Test(replica, client_follows_and_adopts_the_cluster)
{
    struct tprim tp;
    struct fakesrv fs;
    struct trep t;
    char reason[512] = "", cid[4200];

    memset(&FS, 0, sizeof FS);
    tp_setup(&tp);
    fakesrv_start(&fs, 's', tp.p);
    trep_start(&t, fs.port, "s3cret");
    char *st = trep_wait_status(&t, "\"connected\":true", 5000);
    cr_assert(strstr(st, tp.cluster_hex), "the replica adopted the primary's cluster: %s", st);
    free(st);
    snprintf(cid, sizeof cid, "%s/cluster-id", t.data);
    char *c = file_read(cid, NULL);
    cr_assert(c && strncmp(c, tp.cluster_hex, 32) == 0, "cluster-id file: %s", c ? c : "(none)");
    free(c);
    pthread_mutex_lock(&fs.mu);
    cr_assert(strstr(fs.req, "POST /v1/stream "), "%s", fs.req);
    cr_assert(strstr(fs.req, "Authorization: Bearer s3cret"), "%s", fs.req);
    cr_assert(strstr(fs.req, "\"cluster\":\"\""), "no cluster-id yet: %s", fs.req);
    cr_assert(strstr(fs.req, "\"node\":\"cccc\""), "%s", fs.req);
    pthread_mutex_unlock(&fs.mu);
    /* The records reached the sink (a fake here), and the replica is healthy. */
    st = trep_wait_status(&t, "\"streaming\"", 5000);
    free(st);
    cr_assert(strstr(FS.log, "apply a.db 1-1;"), "%s", FS.log);
    cr_assert_eq(replica_health(t.r, reason, sizeof reason), 1, "%s", reason);
    /* Heartbeats keep the stream alive past the 5 s stall limit. */
    sleep_ms(6000);
    pthread_mutex_lock(&fs.mu);
    cr_assert_eq(fs.conns, 1, "one stream all along");
    pthread_mutex_unlock(&fs.mu);
    char *m = NULL;
    size_t ml = 0, mc = 0;
    cr_assert_eq(replica_metrics(t.r, &m, &ml, &mc), 0);
    cr_assert(strstr(m, "litevault_replication_connected 1"), "%s", m);
    cr_assert(strstr(m, "litevault_replication_lag_seconds{db=\"a.db\"}"), "%s", m);
    free(m);
    trep_stop(&t);
    fakesrv_stop(&fs);
    tp_teardown(&tp);
}

Test(replica, client_backs_off_when_refused)
{
    struct fakesrv fs;
    struct trep t;
    char reason[512] = "";

    fakesrv_start(&fs, '4', NULL);
    trep_start(&t, fs.port, NULL);
    sleep_ms(1700);
    char *st = replica_status_json(t.r);
    cr_assert(strstr(st, "\"connected\":false") && strstr(st, "HTTP 409: cluster mismatch: test"), "%s", st);
    free(st);
    pthread_mutex_lock(&fs.mu);
    /* Attempts at 0, 0.1, 0.3, 0.7, 1.5 s: 5 (a little slack either way). */
    cr_assert(fs.conns >= 4 && fs.conns <= 6, "%d attempts", fs.conns);
    cr_assert_null(strstr(fs.req, "Authorization"), "no token, no header");
    pthread_mutex_unlock(&fs.mu);
    cr_assert_eq(replica_health(t.r, reason, sizeof reason), 0);
    cr_assert(strstr(reason, "not connected") && strstr(reason, "409"), "%s", reason);
    trep_stop(&t);
    fakesrv_stop(&fs);
}

Test(replica, client_reconnects_on_garbage_and_silence)
{
    struct tprim tp;
    struct fakesrv fs;
    struct trep t;

    fakesrv_start(&fs, 'g', NULL);
    trep_start(&t, fs.port, NULL);
    char *st = trep_wait_status(&t, "damaged", 5000);
    free(st);
    trep_stop(&t);
    fakesrv_stop(&fs);

    tp_setup(&tp);
    fakesrv_start(&fs, 'q', tp.p);
    trep_start(&t, fs.port, NULL);
    st = trep_wait_status(&t, "\"connected\":true", 5000);
    free(st);
    st = trep_wait_status(&t, "no byte from the primary", 9000);
    cr_assert(strstr(st, "\"connected\":false"), "%s", st);
    free(st);
    trep_stop(&t);
    fakesrv_stop(&fs);
    tp_teardown(&tp);
}

Test(replica, rx_chain_break_goes_alone)
{
    struct repl_rx *x = rx_new(0);
    char err[512] = "";
    struct stream_frame f;

    cr_assert_eq(rx_rec(x, "a", 1, 0, err), 0);
    cr_assert_eq(rx_rec(x, "a", 2, 0, err), 0);
    cr_assert_eq(rx_rec(x, "a", 4, 0, err), 0);
    /* TXID 5 with a pre checksum that is not 4's post checksum. */
    memset(&f, 0, sizeof f);
    f.type = ST_RECORD;
    f.name = "a";
    f.hdr.txid = 5;
    f.hdr.pre_cksum = 0x99;
    f.rec = rx_bytes;
    f.rec_len = 100;
    cr_assert_eq(repl_rx_frame(x, &f, err, sizeof err), 0);
    cr_assert_eq(repl_rx_flush(x, 0, err, sizeof err), 0);
    cr_assert_str_eq(FS.log, "apply a 1-2;apply a 4-4;apply a 5-5;",
                     "the valid run first, each break alone (the registry refuses those)");
    repl_rx_free(x);
}
