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

static void usage_log(void)
{
    printf("usage: litevault log ls     [-c FILE] --db NAME [--json]\n"
           "       litevault log dump   [-c FILE] --db NAME --txid N [--json]\n"
           "       litevault log replay [-c FILE] --db NAME [--txid N] -o PATH\n\n"
           "Read the local transaction log of database NAME (its path on the mount).\n"
           "  ls      one line per record: TXID, commit time (UTC), pages, database size,\n"
           "          pre and post checksums\n"
           "  dump    one record's header and page numbers\n"
           "  replay  rebuild the database as of TXID N (default: the last) into PATH,\n"
           "          verifying every checksum\n");
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
    json_object_set_new(o, "pre_checksum", json_string(cksum_hex(h->pre_cksum, a)));
    json_object_set_new(o, "post_checksum", json_string(cksum_hex(h->post_cksum, b)));
    json_object_set_new(o, "snapshot", json_boolean(h->flags & TXLOG_F_SNAPSHOT));
    json_object_set_new(o, "recovered", json_boolean(h->flags & TXLOG_F_RECOVERED));
    json_object_set_new(o, "stored_bytes", json_integer((json_int_t)h->stored_len));
    return o;
}

int cli_log(int argc, char **argv)
{
    static const struct option opts[] = {{"config", 1, 0, 'c'}, {"db", 1, 0, 'd'}, {"txid", 1, 0, 't'},
                                         {"output", 1, 0, 'o'}, {"json", 0, 0, 'j'}, {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cpath = NULL, *db = NULL, *outp = NULL, *sub;
    uint64_t txid = 0;
    int c, as_json = 0, rc = LV_EXIT_RUNTIME, have_txid = 0;
    struct config cfg;
    char dir[PATH_MAX * 2], err[1024] = "";

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage_log();
        return argc < 2 ? LV_EXIT_USAGE : 0;
    }
    sub = argv[1];
    argc--;
    argv++;
    while ((c = getopt_long(argc, argv, "c:d:t:o:jh", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'c': cpath = optarg; break;
        case 'd': db = optarg; break;
        case 'o': outp = optarg; break;
        case 'j': as_json = 1; break;
        case 't':
            errno = 0;
            txid = strtoull(optarg, &end, 10);
            if (errno || *end || !*optarg || optarg[0] == '-')
                cli_die_usage("log", "--txid takes a positive integer");
            have_txid = 1;
            break;
        case 'h': usage_log(); return 0;
        default: cli_die_usage("log", "unknown option");
        }
    }
    if (!db)
        cli_die_usage("log", "--db NAME is required");
    if (strcmp(sub, "ls") && strcmp(sub, "dump") && strcmp(sub, "replay"))
        cli_die_usage("log", "unknown subcommand (use ls, dump or replay)");
    if (strcmp(sub, "dump") == 0 && !have_txid)
        cli_die_usage("log", "dump needs --txid N");
    if (strcmp(sub, "replay") == 0 && !outp)
        cli_die_usage("log", "replay needs -o PATH");
    cli_load_config(cpath, &cfg);
    lvlog_setup(cfg.log_level < LVLOG_WARN ? cfg.log_level : LVLOG_WARN, 0);
    if (db[0] == '/')
        db++;
    log_dir_for(&cfg, db, dir, sizeof dir);
    struct stat st;
    if (stat(dir, &st) != 0) {
        fprintf(stderr, "litevault log: no log for database '%s' in %s (expected %s)\n", db, cfg.data_dir, dir);
        goto out;
    }
    if (strcmp(sub, "replay") == 0) {
        uint64_t got = 0, ck = 0;
        int r = txlog_replay(dir, txid, outp, &got, &ck, err, sizeof err);
        if (r) {
            fprintf(stderr, "litevault log replay: %s\n", err[0] ? err : lv_strerror(r));
            goto out;
        }
        char hx[17];
        if (as_json)
            printf("{\"txid\":%llu,\"checksum\":\"%s\",\"output\":\"%s\"}\n", (unsigned long long)got,
                   cksum_hex(ck, hx), outp);
        else
            printf("replayed %s to TXID %llu, checksum %s, into %s\n", db, (unsigned long long)got,
                   cksum_hex(ck, hx), outp);
        rc = 0;
        goto out;
    }
    struct txlog_reader *r = NULL;
    struct txlog_hdr h;
    int e = txlog_reader_open(dir, have_txid ? txid : 1, &r);
    if (e) {
        fprintf(stderr, "litevault log: cannot read %s: %s\n", dir, lv_strerror(e));
        goto out;
    }
    json_t *arr = json_array();
    int found = 0;
    if (!as_json && strcmp(sub, "ls") == 0)
        printf("%10s  %-27s %6s %10s  %-16s %-16s\n", "TXID", "COMMIT TIME (UTC)", "PAGES", "DB PAGES",
               "PRE", "POST");
    while ((e = txlog_reader_next(r, &h)) == 0) {
        char t[40], a[17], b[17];
        if (strcmp(sub, "ls") == 0) {
            if (as_json)
                json_array_append_new(arr, hdr_json(&h));
            else
                printf("%10llu  %-27s %6u %10u  %s %s%s\n", (unsigned long long)h.txid,
                       lv_fmt_time(h.time_us, t, sizeof t), h.npages, h.db_pages, cksum_hex(h.pre_cksum, a),
                       cksum_hex(h.post_cksum, b),
                       h.flags & TXLOG_F_SNAPSHOT ? "  snapshot" : (h.flags & TXLOG_F_RECOVERED ? "  recovered" : ""));
            continue;
        }
        if (h.txid != txid)
            break;
        found = 1;
        json_t *o = hdr_json(&h), *pages = json_array();
        uint32_t pg;
        const void *data;
        while ((e = txlog_reader_page(r, &pg, &data)) == 0)
            json_array_append_new(pages, json_integer(pg));
        if (e != LV_ENOENT) {
            uint64_t off;
            const char *w = txlog_reader_where(r, &off);
            fprintf(stderr, "litevault log dump: TXID %llu in %s at offset %llu: %s\n", (unsigned long long)txid,
                    w, (unsigned long long)off, lv_strerror(e));
            json_decref(o);
            json_decref(pages);
            break;
        }
        e = 0;
        if (as_json) {
            json_object_set_new(o, "page_numbers", pages);
            char *s = json_dumps(o, JSON_INDENT(2));
            puts(s);
            free(s);
        } else {
            printf("TXID          %llu\ncommit time   %s\npage size     %u\ndb pages      %u\npages         %u\n"
                   "pre checksum  %s\npost checksum %s\nflags         %s%s\nstored bytes  %llu\npage numbers ",
                   (unsigned long long)h.txid, lv_fmt_time(h.time_us, t, sizeof t), h.page_size, h.db_pages,
                   h.npages, cksum_hex(h.pre_cksum, a), cksum_hex(h.post_cksum, b),
                   h.flags & TXLOG_F_SNAPSHOT ? "snapshot " : "", h.flags & TXLOG_F_RECOVERED ? "recovered" : "",
                   (unsigned long long)h.stored_len);
            size_t i;
            json_t *v;
            json_array_foreach(pages, i, v) printf(" %lld", (long long)json_integer_value(v));
            printf("\n");
            json_decref(pages);
        }
        json_decref(o);
        break;
    }
    if (e != 0 && e != LV_ENOENT) {
        uint64_t off = 0;
        const char *w = txlog_reader_where(r, &off);
        fprintf(stderr, "litevault log: %s at offset %llu: %s\n", w ? w : dir, (unsigned long long)off,
                lv_strerror(e));
    } else if (strcmp(sub, "dump") == 0 && !found) {
        fprintf(stderr, "litevault log dump: TXID %llu is not in the log of %s\n", (unsigned long long)txid, db);
    } else {
        rc = 0;
    }
    if (as_json && strcmp(sub, "ls") == 0) {
        char *s = json_dumps(arr, JSON_INDENT(2));
        puts(s);
        free(s);
    }
    json_decref(arr);
    txlog_reader_close(r);
out:
    config_free(&cfg);
    return rc;
}
