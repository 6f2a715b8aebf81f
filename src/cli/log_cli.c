/*
 * log_cli.c -- `litevault log ls|dump|replay`: read a database's local
 * transaction log directly from data.dir (no daemon needed).
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "capture/db.h"
#include "daemon/config.h"
#include "log/txlog.h"

static void log_dir_for(const struct config *cfg, const char *db, char *out, size_t n)
{
    char meta[PATH_MAX * 2];
    db_metadir_path(cfg->data_dir, db, meta, sizeof meta);
    snprintf(out, n, "%s/log", meta);
}

/* Each subcommand as its errors name it, then `log` itself. */
static const struct cli_cmd log_cmds[] = {
    {"log ls", "usage: litevault log ls [-c FILE] --db NAME [--txid N] [--json]", NULL},
    {"log dump", "usage: litevault log dump [-c FILE] --db NAME --txid N [--json]", NULL},
    {"log replay", "usage: litevault log replay [-c FILE] --db NAME [--txid N] -o PATH [--json]", NULL},
    {"log", "usage: litevault log ls|dump|replay [-c FILE] --db NAME [OPTIONS]", NULL},
};

static const struct cli_cmd *log_cmd(const char *sub)
{
    size_t i;

    for (i = 0; i + 1 < sizeof log_cmds / sizeof log_cmds[0]; i++)
        if (strcmp(log_cmds[i].name + 4, sub) == 0)
            break;
    return &log_cmds[i];
}

static void usage_log(void)
{
    printf("usage: litevault log ls     [-c FILE] --db NAME [--txid N] [--json]\n"
           "       litevault log dump   [-c FILE] --db NAME --txid N [--json]\n"
           "       litevault log replay [-c FILE] --db NAME [--txid N] -o PATH [--json]\n\n"
           "Read the local transaction log of database NAME (its path on the mount).\n"
           "  ls      one line per record: TXID, commit time (UTC), pages, database size,\n"
           "          pre and post checksums\n"
           "  dump    one record's header and page numbers\n"
           "  replay  rebuild the database as of TXID N (default: the last) into PATH,\n"
           "          verifying every checksum\n\n"
           "  -c, --config FILE   configuration file (default ./litevault.yml, then /etc/litevault.yml)\n"
           "  -d, --db NAME       the database: its path on the mount\n"
           "  -t, --txid N        ls: start at TXID N; dump: the record; replay: the target\n"
           "  -o, --output PATH   replay: the file to write\n"
           "  -j, --json          print the result as JSON\n"
           "  -h, --help          show this help\n\n"
           "Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error.\n");
}

static json_t *hdr_json(const struct txlog_hdr *h)
{
    char t[40], a[17], b[17];
    json_t *o = json_object();
    json_object_set_new(o, "txid", json_integer((json_int_t)h->txid));
    json_object_set_new(o, "time", json_string(lv_fmt_time(h->time_us, t, sizeof t)));
    json_object_set_new(o, "time_us", json_integer(h->time_us));
    json_object_set_new(o, "pages", json_integer(h->npages));
    json_object_set_new(o, "db_pages", json_integer(h->db_pages));
    json_object_set_new(o, "page_size", json_integer(h->page_size));
    json_object_set_new(o, "term", json_integer((json_int_t)h->term));
    json_object_set_new(o, "pre_checksum", json_string(cksum_hex(h->pre_cksum, a)));
    json_object_set_new(o, "post_checksum", json_string(cksum_hex(h->post_cksum, b)));
    json_object_set_new(o, "snapshot", json_boolean(h->flags & TXLOG_F_SNAPSHOT));
    json_object_set_new(o, "recovered", json_boolean(h->flags & TXLOG_F_RECOVERED));
    json_object_set_new(o, "stored_bytes", json_integer((json_int_t)h->stored_len));
    return o;
}

/* The command line of `litevault log`. */
struct log_args {
    const char *sub;       /* ls, dump or replay */
    const char *cpath;     /* -c FILE, or NULL */
    const char *db;        /* --db NAME (without a leading '/') */
    const char *outp;      /* -o PATH (replay) */
    uint64_t txid;         /* --txid N */
    int have_txid;         /* --txid given */
    int as_json;           /* --json */
};

/* Parse argv (argv[0] is "log") into *a; exits 2 on a usage error.
 * Returns 1 when the help was printed (exit 0), else 0. */
static int log_parse_args(int argc, char **argv, struct log_args *a)
{
    static const struct option opts[] = {{"config", 1, 0, 'c'}, {"db", 1, 0, 'd'}, {"txid", 1, 0, 't'},
                                         {"output", 1, 0, 'o'}, {"json", 0, 0, 'j'}, {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;

    memset(a, 0, sizeof *a);
    a->sub = argv[1];
    const struct cli_cmd *cc = log_cmd(a->sub);
    argc--;
    argv++;
    while ((c = cli_getopt(cc, argc, argv, "c:d:t:o:jh", opts)) != -1) {
        char *end;
        switch (c) {
        case 'c': a->cpath = optarg; break;
        case 'd': a->db = optarg; break;
        case 'o': a->outp = optarg; break;
        case 'j': a->as_json = 1; break;
        case 't':
            errno = 0;
            a->txid = strtoull(optarg, &end, 10);
            if (errno || *end || !*optarg || optarg[0] == '-')
                cli_usage_error(cc, "--txid takes a positive integer");
            a->have_txid = 1;
            break;
        case 'h': usage_log(); return 1;
        }
    }
    if (strcmp(a->sub, "ls") && strcmp(a->sub, "dump") && strcmp(a->sub, "replay"))
        cli_usage_error(cc, "unknown subcommand '%s' (use ls, dump or replay)", a->sub);
    if (optind < argc)
        cli_usage_error(cc, "unexpected argument '%s'", argv[optind]);
    if (!a->db)
        cli_usage_error(cc, "--db NAME is required");
    if (strcmp(a->sub, "dump") == 0 && !a->have_txid)
        cli_usage_error(cc, "dump needs --txid N");
    if (strcmp(a->sub, "replay") == 0 && !a->outp)
        cli_usage_error(cc, "replay needs -o PATH");
    if (a->db[0] == '/')
        a->db++;
    return 0;
}

/* `log replay`: rebuild the database into a->outp.  Exit code. */
static int log_replay(const char *dir, const struct log_args *a)
{
    uint64_t got = 0, ck = 0;
    char err[1024] = "", hx[17];
    int r = txlog_replay(dir, a->txid, a->outp, &got, &ck, err, sizeof err);

    if (r) {
        fprintf(stderr, "litevault log replay: %s\n", err[0] ? err : lv_strerror(r));
        return LV_EXIT_RUNTIME;
    }
    if (a->as_json)
        printf("{\"txid\":%llu,\"checksum\":\"%s\",\"output\":\"%s\"}\n", (unsigned long long)got, cksum_hex(ck, hx),
               a->outp);
    else
        printf("replayed %s to TXID %llu, checksum %s, into %s\n", a->db, (unsigned long long)got, cksum_hex(ck, hx),
               a->outp);
    return 0;
}

/* `log ls`: one line (or JSON object) per record.  The reader's last result. */
static int log_ls(struct txlog_reader *r, int as_json)
{
    json_t *arr = json_array();
    struct txlog_hdr h;
    int e;

    if (!as_json)
        printf("%10s  %-27s %6s %10s %8s  %-16s %-16s\n", "TXID", "COMMIT TIME (UTC)", "PAGES", "DB PAGES", "TERM",
               "PRE", "POST");
    while ((e = txlog_reader_next(r, &h)) == 0) {
        char t[40], a[17], b[17];
        if (as_json)
            json_array_append_new(arr, hdr_json(&h));
        else
            printf("%10llu  %-27s %6u %10u %8llu  %s %s%s\n", (unsigned long long)h.txid,
                   lv_fmt_time(h.time_us, t, sizeof t), h.npages, h.db_pages, (unsigned long long)h.term,
                   cksum_hex(h.pre_cksum, a),
                   cksum_hex(h.post_cksum, b),
                   h.flags & TXLOG_F_SNAPSHOT ? "  snapshot" : (h.flags & TXLOG_F_RECOVERED ? "  recovered" : ""));
    }
    if (as_json) {
        char *s = json_dumps(arr, JSON_INDENT(2));
        puts(s);
        free(s);
    }
    json_decref(arr);
    return e;
}

/* The text form of `log dump` for record h with its page numbers. */
static void log_dump_text(const struct txlog_hdr *h, json_t *pages)
{
    char t[40], a[17], b[17];
    size_t i;
    json_t *v;

    printf("TXID          %llu\ncommit time   %s\nterm          %llu\npage size     %u\ndb pages      %u\n"
           "pages         %u\npre checksum  %s\npost checksum %s\nflags         %s%s\nstored bytes  %llu\n"
           "page numbers ",
           (unsigned long long)h->txid, lv_fmt_time(h->time_us, t, sizeof t), (unsigned long long)h->term,
           h->page_size, h->db_pages, h->npages,
           cksum_hex(h->pre_cksum, a), cksum_hex(h->post_cksum, b), h->flags & TXLOG_F_SNAPSHOT ? "snapshot " : "",
           h->flags & TXLOG_F_RECOVERED ? "recovered" : "", (unsigned long long)h->stored_len);
    json_array_foreach(pages, i, v) printf(" %lld", (long long)json_integer_value(v));
    printf("\n");
}

/* `log dump`: record txid, the reader positioned at it; *found set when it
 * is there.  The reader's last result (0 when the record was shown). */
static int log_dump(struct txlog_reader *r, uint64_t txid, int as_json, int *found)
{
    struct txlog_hdr h;
    json_t *o, *pages;
    uint32_t pg;
    const void *data;
    int e = txlog_reader_next(r, &h);

    *found = 0;
    if (e != 0 || h.txid != txid)
        return e;
    *found = 1;
    o = hdr_json(&h);
    pages = json_array();
    while ((e = txlog_reader_page(r, &pg, &data)) == 0)
        json_array_append_new(pages, json_integer(pg));
    if (e != LV_ENOENT) {
        uint64_t off;
        const char *w = txlog_reader_where(r, &off);
        fprintf(stderr, "litevault log dump: TXID %llu in %s at offset %llu: %s\n", (unsigned long long)txid, w,
                (unsigned long long)off, lv_strerror(e));
        json_decref(o);
        json_decref(pages);
        return e;
    }
    if (as_json) {
        json_object_set_new(o, "page_numbers", pages);
        char *s = json_dumps(o, JSON_INDENT(2));
        puts(s);
        free(s);
    } else {
        log_dump_text(&h, pages);
        json_decref(pages);
    }
    json_decref(o);
    return 0;
}

/* `log ls` or `log dump` on the log in dir.  Exit code. */
static int log_read(const char *dir, const struct log_args *a)
{
    struct txlog_reader *r = NULL;
    int e = txlog_reader_open(dir, a->have_txid ? a->txid : 1, &r), found = 1, rc = LV_EXIT_RUNTIME;

    if (e) {
        fprintf(stderr, "litevault log: cannot read %s: %s\n", dir, lv_strerror(e));
        return LV_EXIT_RUNTIME;
    }
    e = strcmp(a->sub, "ls") == 0 ? log_ls(r, a->as_json) : log_dump(r, a->txid, a->as_json, &found);
    if (e != 0 && e != LV_ENOENT) {
        uint64_t off = 0;
        const char *w = txlog_reader_where(r, &off);
        fprintf(stderr, "litevault log: %s at offset %llu: %s\n", w ? w : dir, (unsigned long long)off,
                lv_strerror(e));
    } else if (!found) {
        fprintf(stderr, "litevault log dump: TXID %llu is not in the log of %s\n", (unsigned long long)a->txid, a->db);
    } else {
        rc = 0;
    }
    txlog_reader_close(r);
    return rc;
}

int cli_log(int argc, char **argv)
{
    struct log_args a;
    struct config cfg;
    struct stat st;
    char dir[PATH_MAX * 2];
    int rc;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage_log();
        return argc < 2 ? LV_EXIT_USAGE : 0;
    }
    if (log_parse_args(argc, argv, &a))
        return 0;
    cli_load_config(a.cpath, &cfg);
    lvlog_setup(cfg.log_level < LVLOG_WARN ? cfg.log_level : LVLOG_WARN, 0);
    log_dir_for(&cfg, a.db, dir, sizeof dir);
    if (stat(dir, &st) != 0) {
        fprintf(stderr, "litevault log: no log for database '%s' in %s (expected %s)\n", a.db, cfg.data_dir, dir);
        rc = LV_EXIT_RUNTIME;
    } else {
        rc = strcmp(a.sub, "replay") == 0 ? log_replay(dir, &a) : log_read(dir, &a);
    }
    config_free(&cfg);
    return rc;
}
