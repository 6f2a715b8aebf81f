/*
 * restore_cli.c -- the `restore` and `archive` commands.
 *
 *   litevault restore [--from URL | -c FILE] --db NAME [-o] PATH
 *                     [--txid N | --timestamp T] [--lineage ID] [--parallel N]
 *                     [--force] [--if-db-not-exists] [--allow-partial]
 *                     [--no-integrity-check] [--dry-run] [--strict] [--json]
 *   litevault restore --seed [-c FILE] [--from URL] [--db NAME [--txid N | --timestamp T]]
 *                     [--parallel N] [--json]
 *   litevault archive ls     [--from URL | -c FILE] [--db NAME] [--json]
 *   litevault archive verify [--from URL | -c FILE] --db NAME [--lineage ID] [--parallel N] [--json]
 *
 * Exit codes: 0 ok, 1 runtime error (damage, unknown database, network),
 * 2 usage or configuration error.  Text goes to stdout, diagnostics to
 * stderr; --json prints one JSON object on stdout.  The engine is
 * restore/restore.c and restore/verify.c; this file only parses options
 * and prints; --seed drives restore/seed.c (the data.dir of FILE's node).
 */
#include "cli/restore_cli.h"
#include "cli/cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive/archiver.h"
#include "daemon/config.h"
#include "archive/current.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "archive/manifest.h"
#include "archive/tail.h"
#include "restore/plan.h"
#include "restore/restore.h"
#include "restore/seed.h"
#include "store/store.h"
#include "restore/verify.h"

enum { OPT_TXID = 256, OPT_TIME, OPT_LINEAGE, OPT_PARALLEL, OPT_FORCE, OPT_IFNX, OPT_PARTIAL, OPT_NOIC, OPT_DRY,
       OPT_JSON, OPT_FROM, OPT_DB, OPT_STRICT, OPT_SEED };

/* The commands of this file, as their errors name them. */
static const struct cli_cmd restore_cmds[] = {
    {"restore", "usage: litevault restore [--from URL | -c FILE] --db NAME [-o] PATH [OPTIONS]\n"
                "       litevault restore --seed [-c FILE] [--from URL] [--db NAME] [OPTIONS]", NULL},
    {"archive ls", "usage: litevault archive ls [--from URL | -c FILE] [--db NAME] [--json]", NULL},
    {"archive verify", "usage: litevault archive verify [--from URL | -c FILE] --db NAME [--lineage ID] "
                       "[--parallel N] [--json]", NULL},
    {"archive", "usage: litevault archive ls|verify [--from URL | -c FILE] [OPTIONS]", NULL},
};

static const struct cli_cmd *restore_cmd(const char *name)
{
    size_t i;

    for (i = 0; i + 1 < sizeof restore_cmds / sizeof restore_cmds[0]; i++)
        if (strcmp(restore_cmds[i].name, name) == 0)
            break;
    return &restore_cmds[i];
}

/* A usage error of command name: message, usage line, hint; exits 2. */
static int usage_err(const char *name, const char *msg)
{
    cli_usage_error(restore_cmd(name), "%s", msg);
}

static int exit_code(int rc)
{
    if (rc == 0)
        return LV_EXIT_OK;
    return rc == LV_EINVAL || rc == LV_ECONFIG || rc == LV_EUSAGE ? LV_EXIT_USAGE : LV_EXIT_RUNTIME;
}

/*
 * The archive when --from is absent: the first archive destination of the
 * configuration (-c FILE, else ./litevault.yml, else /etc/litevault.yml),
 * with its S3 options and credentials.  On success *cfg is loaded (the
 * caller frees it with config_free), *url and *so borrow from it.
 */
static int default_dest_from_config(const char *cfg_path, struct config *cfg, const char **url, struct store_opts *so,
                                    char *err, size_t errlen)
{
    const char *path = NULL;
    char cerr[1024] = "";
    int rc;

    memset(cfg, 0, sizeof *cfg);
    rc = cli_config_file(cfg_path, cfg, &path, cerr, sizeof cerr);
    if (rc == LV_ENOENT) {
        snprintf(err, errlen, "no --from URL given and no configuration file found%s%s (give --from URL, or -c FILE "
                 "with an archive: destination)", cfg_path ? " at " : "", cfg_path ? cfg_path : "");
        return LV_ECONFIG;
    }
    if (rc) {
        snprintf(err, errlen, "%s", cerr);
        return LV_ECONFIG;
    }
    if (cfg->narchive == 0) {
        snprintf(err, errlen, "no --from URL given and %s has no archive: destination (give --from URL)", path);
        config_free(cfg);
        return LV_ECONFIG;
    }
    archiver_store_opts(&cfg->archive[0], so);
    *url = cfg->archive[0].url;
    return 0;
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    unsigned long long x;

    if (!s[0] || s[0] == '-')
        return -1;
    x = strtoull(s, &end, 10);
    if (*end)
        return -1;
    *v = x;
    return 0;
}

static json_t *hex64(uint64_t v)
{
    char b[17];

    snprintf(b, sizeof b, "%016" PRIx64, v);
    return json_string(b);
}

static json_t *jtime(int64_t t)
{
    char b[40];

    return t ? json_string(lv_fmt_time(t, b, sizeof b)) : json_null();
}

static void print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));

    if (s) {
        printf("%s\n", s);
        free(s);
    }
    json_decref(o);
}

static void usage_restore(void)
{
    printf("usage: litevault restore [--from URL | -c FILE] --db NAME [-o] PATH [OPTIONS]\n"
           "       litevault restore --seed [-c FILE] [--from URL] [--db NAME] [OPTIONS]\n\n"
           "Rebuild database NAME from the archive at URL into PATH, as of the latest archived\n"
           "transaction, a TXID or a point in time.  Every object, record and checksum is verified;\n"
           "on any damage nothing is written (see --allow-partial).\n\n"
           "With --seed, build the data.dir of FILE's node instead: every database of the archive\n"
           "(its files/ must be empty), or --db NAME (which it must not hold), each as of the\n"
           "latest archived TXID (or --txid/--timestamp, with --db).  The node then starts with\n"
           "each database at that TXID, its ID and checksum, and continues at the next TXID: a\n"
           "replica asks its primary only for what follows.  Every database is installed, or none.\n"
           "The daemon must not be running.  Checksums are verified end to end; PRAGMA\n"
           "integrity_check is not run (the result is the primary's database, byte for byte).\n"
           "Options for --seed: -c, --from, --db, --txid, --timestamp, --parallel, --json.\n\n"
           "  --from URL            archive destination (file:///dir, s3://bucket/prefix?endpoint=...)\n"
           "  -c, --config FILE     take the URL from the config's first archive destination\n"
           "  --db NAME             database name in the archive (its path on the mount)\n"
           "  -o, --output PATH     file to create (or give PATH as the last argument)\n"
           "  --txid N              restore as of TXID N\n"
           "  --timestamp T         restore as of time T (RFC 3339, e.g. 2026-11-24T10:00:00.5Z or +01:00):\n"
           "                        the last transaction committed at or before T\n"
           "  --lineage ID          use this lineage (database ID) instead of the current one\n"
           "  --parallel N          download N objects at once (default 4)\n"
           "  --force               replace a non-empty PATH; remove stale PATH-wal/PATH-shm\n"
           "  --if-db-not-exists    do nothing (exit 0) if PATH exists\n"
           "  --allow-partial       on damage or a gap, restore the last verifiable TXID before it\n"
           "  --no-integrity-check  skip PRAGMA integrity_check on the result\n"
           "  --dry-run             print the plan (objects, bytes, resulting TXID); download nothing\n"
           "  --strict              fail (exit 1) when the --timestamp lies after the last archived\n"
           "                        transaction, instead of restoring that one with a note\n"
           "  --seed                fill the data.dir of FILE's node (see above) instead of writing PATH\n"
           "  --json                machine-readable output\n"
           "  -h, --help            show this help\n\n"
           "Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error.\n");
}

static void usage_archive(void)
{
    printf("usage: litevault archive ls     [--from URL | -c FILE] [--db NAME] [--json]\n"
           "       litevault archive verify [--from URL | -c FILE] --db NAME [--lineage ID] [--parallel N] [--json]\n\n"
           "  ls      list the archived databases, their lineages (* = current), TXID and time\n"
           "          ranges, snapshots and sizes\n"
           "  verify  download and check every object of a lineage (current, or --lineage):\n"
           "          object checksums, every record, chains within and across objects,\n"
           "          snapshot contents, overlapping compaction levels; exit 1 naming each bad object\n\n"
           "  --from URL            archive destination (file:///dir, s3://bucket/prefix?endpoint=...)\n"
           "  -c, --config FILE     take the URL from the config's first archive destination\n"
           "  --db NAME             database name in the archive (ls: only this one)\n"
           "  --lineage ID          verify: this lineage instead of the current one\n"
           "  --parallel N          verify: download N objects at once (default 4)\n"
           "  --json                machine-readable output\n"
           "  -h, --help            show this help\n\n"
           "Exit codes: 0 ok, 1 runtime error or damage found, 2 usage or configuration error.\n");
}

static const struct option restore_longopts[] = {
    {"from", required_argument, NULL, OPT_FROM},
    {"config", required_argument, NULL, 'c'},
    {"db", required_argument, NULL, OPT_DB},
    {"output", required_argument, NULL, 'o'},
    {"txid", required_argument, NULL, OPT_TXID},
    {"timestamp", required_argument, NULL, OPT_TIME},
    {"lineage", required_argument, NULL, OPT_LINEAGE},
    {"parallel", required_argument, NULL, OPT_PARALLEL},
    {"force", no_argument, NULL, OPT_FORCE},
    {"if-db-not-exists", no_argument, NULL, OPT_IFNX},
    {"allow-partial", no_argument, NULL, OPT_PARTIAL},
    {"no-integrity-check", no_argument, NULL, OPT_NOIC},
    {"dry-run", no_argument, NULL, OPT_DRY},
    {"strict", no_argument, NULL, OPT_STRICT},
    {"seed", no_argument, NULL, OPT_SEED},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* The archive's end and whether the time target lies after it, into j. */
static void json_archive_end(json_t *j, const struct restore_result *r)
{
    json_object_set_new(j, "archive_last_txid", json_integer((json_int_t)r->archive_last_txid));
    json_object_set_new(j, "archive_last_time", jtime(r->archive_last_time_us));
    json_object_set_new(j, "target_after_end", json_boolean(r->after_end));
}

/* Say on stderr that the time target lies after the archive's last commit. */
static void note_after_end(const struct restore_opts *o, const struct restore_result *r)
{
    char tb[40], lb[40];

    if (!r->after_end)
        return;
    fprintf(stderr, "litevault restore: note: the target %s lies after the last archived transaction of '%s', "
                    "TXID %" PRIu64 " committed at %s; restoring that one (the latest). Transactions committed "
                    "after it, if any, never reached the archive; --strict makes this an error.\n",
            lv_fmt_time(o->target.time_us, tb, sizeof tb), o->db, r->archive_last_txid,
            lv_fmt_time(r->archive_last_time_us, lb, sizeof lb));
}

static void print_restore(const struct restore_opts *o, const struct restore_result *r, int json)
{
    char tb[40], tb2[40], ck[17];
    size_t i;

    if (json) {
        json_t *objs = json_array(), *j = json_object();
        for (i = 0; i < r->nobjs; i++)
            json_array_append_new(objs, json_pack("{s:s,s:I,s:b,s:b,s:I,s:I}", "key", r->objs[i].key, "size",
                                                  (json_int_t)r->objs[i].size, "snapshot", r->objs[i].snapshot,
                                                  "tail", r->objs[i].tail, "first_txid",
                                                  (json_int_t)r->objs[i].first_txid, "last_txid",
                                                  (json_int_t)r->objs[i].last_txid));
        json_object_set_new(j, "db", json_string(o->db));
        json_object_set_new(j, "lineage", json_string(r->dbid));
        json_object_set_new(j, "lineage_listed", json_boolean(r->lineage_listed));
        json_object_set_new(j, "deleted", r->deleted_us ? jtime(r->deleted_us) : json_null());
        json_object_set_new(j, "manifest_txid", json_integer((json_int_t)r->manifest_txid));
        json_object_set_new(j, "tail_objects", json_integer((json_int_t)r->tail_objects));
        json_object_set_new(j, "dry_run", json_boolean(o->dry_run));
        json_object_set_new(j, "skipped", json_boolean(r->skipped));
        if (o->out_path)
            json_object_set_new(j, "path", json_string(o->out_path));
        if (o->dry_run) {
            json_object_set_new(j, "txid_min", json_integer((json_int_t)r->target_min));
            json_object_set_new(j, "txid_max", json_integer((json_int_t)r->target_max));
            json_object_set_new(j, "txid", r->target_min == r->target_max ? json_integer((json_int_t)r->target_max)
                                                                          : json_null());
            json_object_set_new(j, "time", jtime(r->target_min == r->target_max ? r->target_time_us : 0));
        } else {
            json_object_set_new(j, "txid", json_integer((json_int_t)r->txid));
            json_object_set_new(j, "time", jtime(r->time_us));
            json_object_set_new(j, "checksum", hex64(r->cksum));
            json_object_set_new(j, "page_size", json_integer(r->page_size));
            json_object_set_new(j, "pages", json_integer(r->db_pages));
        }
        json_object_set_new(j, "start_txid", json_integer((json_int_t)r->start_txid));
        json_object_set_new(j, "objects", objs);
        json_object_set_new(j, "bytes", json_integer((json_int_t)r->bytes));
        json_object_set_new(j, "bytes_downloaded", json_integer((json_int_t)r->bytes_fetched));
        json_object_set_new(j, "partial", json_boolean(r->partial));
        json_object_set_new(j, "partial_reason", r->partial ? json_string(r->partial_msg) : json_null());
        json_archive_end(j, r);
        json_object_set_new(j, "seconds", json_real(r->seconds));
        print_json(j);
        return;
    }
    if (r->skipped) {
        printf("%s exists; nothing done (--if-db-not-exists)\n", o->out_path);
        return;
    }
    if (r->deleted_us)
        fprintf(stderr, "litevault restore: note: the archive says '%s' (lineage %s) was deleted at %s; %s it all "
                "the same\n", o->db, r->dbid, lv_fmt_time(r->deleted_us, tb, sizeof tb),
                o->dry_run ? "planning to restore" : "restored");
    if (o->dry_run) {
        printf("plan: restore '%s' (lineage %s%s) from %s\n", o->db, r->dbid,
               r->lineage_listed ? ", found by listing" : "", o->url);
        printf("  start: %s\n", r->start_txid ? "snapshot" : "empty database (TXID 0)");
        for (i = 0; i < r->nobjs; i++)
            printf("  %-64s %12" PRIu64 " bytes  TXID %" PRIu64 "..%" PRIu64 "%s\n", r->objs[i].key,
                   r->objs[i].size, r->objs[i].first_txid, r->objs[i].last_txid,
                   r->objs[i].tail ? "  (tail: not yet in the manifest)" : "");
        printf("  total: %zu objects, %" PRIu64 " bytes\n", r->nobjs, r->bytes);
        if (r->tail_objects)
            printf("  manifest: up to TXID %" PRIu64 "; %zu tail object(s) after it found by listing\n",
                   r->manifest_txid, r->tail_objects);
        if (r->target_min == r->target_max)
            printf("  result: TXID %" PRIu64 "%s%s\n", r->target_max, r->target_time_us ? " committed at " : "",
                   r->target_time_us ? lv_fmt_time(r->target_time_us, tb, sizeof tb) : "");
        else
            printf("  result: TXID %" PRIu64 "..%" PRIu64 " (the last commit at or before %s, resolved while "
                   "applying)\n", r->target_min, r->target_max, lv_fmt_time(o->target.time_us, tb2, sizeof tb2));
        if (r->partial)
            printf("  %s\n", r->partial_msg);
        note_after_end(o, r);
        return;
    }
    snprintf(ck, sizeof ck, "%016" PRIx64, r->cksum);
    printf("restored '%s' (lineage %s) to %s: TXID %" PRIu64 " committed at %s, checksum %s, %zu objects, %" PRIu64
           " bytes in %.2f s\n", o->db, r->dbid, o->out_path, r->txid, lv_fmt_time(r->time_us, tb, sizeof tb), ck,
           r->nobjs, r->bytes_fetched, r->seconds);
    if (r->partial)
        fprintf(stderr, "litevault restore: WARNING: %s\n", r->partial_msg);
    note_after_end(o, r);
}

/* ---------------------------------------------------------------- restore --seed */

static void print_seed(const struct seed_opts *o, const struct seed_result *r, int json)
{
    char tb[40];

    if (json) {
        json_t *dbs = json_array(), *j = json_object();
        for (size_t i = 0; i < r->n; i++) {
            const struct seed_db *d = &r->dbs[i];
            json_t *e = json_object();
            json_object_set_new(e, "db", json_string(d->name));
            json_object_set_new(e, "id", json_string(d->id));
            json_object_set_new(e, "lineage", json_string(d->lineage));
            json_object_set_new(e, "txid", json_integer((json_int_t)d->txid));
            json_object_set_new(e, "time", jtime(d->time_us));
            json_object_set_new(e, "checksum", hex64(d->cksum));
            json_object_set_new(e, "page_size", json_integer(d->page_size));
            json_object_set_new(e, "pages", json_integer(d->db_pages));
            json_object_set_new(e, "bytes_downloaded", json_integer((json_int_t)d->bytes));
            json_object_set_new(e, "seconds", json_real(d->seconds));
            json_array_append_new(dbs, e);
        }
        json_object_set_new(j, "data_dir", json_string(o->data_dir));
        json_object_set_new(j, "from", json_string(o->url));
        json_object_set_new(j, "databases", dbs);
        json_object_set_new(j, "bytes_downloaded", json_integer((json_int_t)r->bytes));
        json_object_set_new(j, "seconds", json_real(r->seconds));
        print_json(j);
        return;
    }
    if (r->n == 0) {
        printf("the archive at %s holds no database; nothing seeded\n", o->url);
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        const struct seed_db *d = &r->dbs[i];
        printf("seeded '%s' at TXID %" PRIu64 " committed at %s, checksum %016" PRIx64 ", %u pages of %u bytes "
               "(id %s), %" PRIu64 " bytes downloaded in %.2f s\n", d->name, d->txid,
               lv_fmt_time(d->time_us, tb, sizeof tb), d->cksum, d->db_pages, d->page_size, d->id, d->bytes,
               d->seconds);
    }
    printf("seeded %zu database%s into %s in %.2f s; the node continues each at the TXID after it\n", r->n,
           r->n == 1 ? "" : "s", o->data_dir, r->seconds);
}

/* `restore --seed`: fill the data.dir of the configuration's node.  ro
 * holds the options parsed (url, db, target, parallel).  Exit code. */
static int seed_cli(const char *cfg_path, const struct restore_opts *ro, int json)
{
    struct config cfg;
    struct store_opts so;
    struct seed_opts o = {.url = ro->url, .db = ro->db, .target = ro->target, .parallel = ro->parallel};
    struct seed_result r;
    const char *found = NULL;
    char err[2048] = "";
    int rc;

    memset(&cfg, 0, sizeof cfg);
    memset(&r, 0, sizeof r);
    rc = cli_config_file(cfg_path, &cfg, &found, err, sizeof err);
    if (rc == LV_ENOENT) {
        fprintf(stderr, "litevault restore: --seed fills the data.dir of a node's configuration, and %s; give "
                        "-c FILE\n", cfg_path ? "that file does not exist" : "none was found");
        return LV_EXIT_USAGE;
    }
    if (rc) {
        fprintf(stderr, "litevault restore: %s\n", err);
        return LV_EXIT_USAGE;
    }
    o.data_dir = cfg.data_dir;
    if (!o.url) {
        if (cfg.narchive == 0) {
            fprintf(stderr, "litevault restore: no --from URL given and %s has no archive: destination (give "
                            "--from URL)\n", found);
            config_free(&cfg);
            return LV_EXIT_USAGE;
        }
        archiver_store_opts(&cfg.archive[0], &so);
        o.url = cfg.archive[0].url;
        o.sopts = &so;
    }
    o.progress = !json && isatty(STDERR_FILENO);
    rc = seed_run(&o, &r, err, sizeof err);
    if (rc) {
        fprintf(stderr, "litevault restore: %s\n", err[0] ? err : lv_strerror(rc));
        if (json) {
            json_t *j = json_pack("{s:s,s:s,s:s}", "data_dir", o.data_dir, "error", err[0] ? err : lv_strerror(rc),
                                  "code", lv_strerror(rc));
            print_json(j);
        }
    } else {
        print_seed(&o, &r, json);
    }
    seed_result_free(&r);
    config_free(&cfg);
    return exit_code(rc);
}

/* The options --seed does not take (named in the usage error), or NULL. */
static const char *seed_conflict(const struct restore_opts *o, int have_path)
{
    if (have_path || o->out_path)
        return "--seed writes into the data.dir of -c FILE: give no output PATH";
    if (o->force || o->if_not_exists)
        return "--seed never replaces a database: --force and --if-db-not-exists do not apply";
    if (o->allow_partial || o->dry_run || o->strict || o->lineage || o->no_integrity_check)
        return "--seed takes only -c, --from, --db, --txid, --timestamp, --parallel and --json";
    if (o->target.kind != PLAN_LATEST && !o->db)
        return "--txid and --timestamp with --seed need --db NAME";
    return NULL;
}

int restore_cli_restore(int argc, char **argv)
{
    struct restore_opts o;
    struct restore_result r;
    char err[2048] = "";
    struct config dcfg;
    struct store_opts dso;
    int have_dcfg = 0;
    const char *cfg = NULL;
    int c, json = 0, have_txid = 0, have_time = 0, seed = 0, rc;

    memset(&o, 0, sizeof o);
    o.target.kind = PLAN_LATEST;
    optind = 1;
    while ((c = cli_getopt(restore_cmd("restore"), argc, argv, "c:o:h", restore_longopts)) != -1) {
        switch (c) {
        case OPT_FROM: o.url = optarg; break;
        case 'c': cfg = optarg; break;
        case OPT_DB: o.db = optarg; break;
        case 'o': o.out_path = optarg; break;
        case OPT_TXID:
            if (parse_u64(optarg, &o.target.txid) || o.target.txid == 0)
                return usage_err("restore", "--txid takes a positive integer");
            o.target.kind = PLAN_TXID;
            have_txid = 1;
            break;
        case OPT_TIME:
            if (lv_parse_time(optarg, &o.target.time_us))
                return usage_err("restore", "--timestamp takes an RFC 3339 time, e.g. 2026-11-24T10:00:00Z");
            o.target.kind = PLAN_TIME;
            have_time = 1;
            break;
        case OPT_LINEAGE: o.lineage = optarg; break;
        case OPT_PARALLEL: {
            uint64_t n;
            if (parse_u64(optarg, &n) || n < 1 || n > 64)
                return usage_err("restore", "--parallel takes an integer 1..64");
            o.parallel = (int)n;
            break;
        }
        case OPT_FORCE: o.force = 1; break;
        case OPT_IFNX: o.if_not_exists = 1; break;
        case OPT_PARTIAL: o.allow_partial = 1; break;
        case OPT_NOIC: o.no_integrity_check = 1; break;
        case OPT_DRY: o.dry_run = 1; break;
        case OPT_STRICT: o.strict = 1; break;
        case OPT_SEED: seed = 1; break;
        case OPT_JSON: json = 1; break;
        case 'h': usage_restore(); return LV_EXIT_OK;
        default: return usage_err("restore", "unknown option");
        }
    }
    if (optind < argc) {
        if (o.out_path || optind + 1 < argc)
            return usage_err("restore", "give one output PATH");
        o.out_path = argv[optind];
    }
    if (have_txid && have_time)
        return usage_err("restore", "--txid and --timestamp exclude each other");
    if (seed) {
        const char *why = seed_conflict(&o, optind < argc);
        if (why)
            return usage_err("restore", why);
        if (o.db && !o.db[0])
            return usage_err("restore", "--db takes a database name");
        return seed_cli(cfg, &o, json);
    }
    if (!o.db || !o.db[0])
        return usage_err("restore", "--db NAME is required");
    if (!o.out_path && !o.dry_run)
        return usage_err("restore", "an output PATH is required (-o PATH)");
    if (o.force && o.if_not_exists)
        return usage_err("restore", "--force and --if-db-not-exists exclude each other");
    if (!o.url) {
        rc = default_dest_from_config(cfg, &dcfg, &o.url, &dso, err, sizeof err);
        if (rc) {
            fprintf(stderr, "litevault restore: %s\n", err);
            return exit_code(rc);
        }
        have_dcfg = 1;
        o.sopts = &dso;
    }
    o.progress = !json && isatty(STDERR_FILENO);
    rc = restore_run(&o, &r, err, sizeof err);
    if (rc) {
        fprintf(stderr, "litevault restore: %s\n", err[0] ? err : lv_strerror(rc));
        if (json) {
            json_t *j = json_pack("{s:s,s:s,s:s}", "db", o.db, "error", err[0] ? err : lv_strerror(rc), "code",
                                  lv_strerror(rc));
            if (r.after_end)
                json_archive_end(j, &r);
            print_json(j);
        }
    } else {
        print_restore(&o, &r, json);
    }
    restore_result_free(&r);
    if (have_dcfg)
        config_free(&dcfg);
    return exit_code(rc);
}

/* ---------------------------------------------------------------- archive ls */

struct ls_db {
    char *name;          /* database name (owned) */
    char **ids;          /* lineages with a manifest (owned) */
    size_t nids;
    int has_current;     /* current.json present */
};

static struct ls_db *ls_get(struct ls_db **v, size_t *n, const char *name, size_t len)
{
    struct ls_db *d;
    size_t i;

    for (i = 0; i < *n; i++)
        if (strlen((*v)[i].name) == len && strncmp((*v)[i].name, name, len) == 0)
            return &(*v)[i];
    d = realloc(*v, (*n + 1) * sizeof *d);
    if (!d)
        return NULL;
    *v = d;
    d = &d[(*n)++];
    memset(d, 0, sizeof *d);
    d->name = strndup(name, len);
    return d->name ? d : NULL;
}

static int ls_is_id(const char *s)
{
    for (int i = 0; i < MANIFEST_ID_HEX; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* Group the keys of l by database (name filter db, may be NULL): each
 * "<name>/<id>/manifest.json" adds a lineage, "<name>/current.json" marks
 * the pointer.  0 or LV_ENOMEM. */
static int ls_collect(const struct store_list *l, const char *db, struct ls_db **dbs, size_t *ndbs)
{
    const size_t tail = 1 + MANIFEST_ID_HEX + 1 + strlen(MANIFEST_OBJECT); /* "/<id>/manifest.json" */
    const size_t ctail = 1 + strlen(ARCHIVE_CURRENT_OBJECT);               /* "/current.json" */

    for (size_t i = 0; i < l->n; i++) {
        const char *key = l->v[i].key;
        size_t len = strlen(key);
        struct ls_db *d;

        if (len > tail && key[len - tail] == '/' && key[len - tail + 1 + MANIFEST_ID_HEX] == '/' &&
            strcmp(key + len - strlen(MANIFEST_OBJECT), MANIFEST_OBJECT) == 0 && ls_is_id(key + len - tail + 1)) {
            if (db && (len - tail != strlen(db) || strncmp(key, db, len - tail)))
                continue;
            d = ls_get(dbs, ndbs, key, len - tail);
            if (!d)
                return LV_ENOMEM;
            char **ids = realloc(d->ids, (d->nids + 1) * sizeof *ids);
            if (!ids)
                return LV_ENOMEM;
            d->ids = ids;
            d->ids[d->nids] = strndup(key + len - tail + 1, MANIFEST_ID_HEX);
            if (!d->ids[d->nids++])
                return LV_ENOMEM;
        } else if (len > ctail && strcmp(key + len - ctail, "/" ARCHIVE_CURRENT_OBJECT) == 0) {
            if (db && (len - ctail != strlen(db) || strncmp(key, db, len - ctail)))
                continue;
            d = ls_get(dbs, ndbs, key, len - ctail);
            if (!d)
                return LV_ENOMEM;
            d->has_current = 1;
        }
    }
    return 0;
}

/* The earliest restorable TXID of m and its time: 1 when segments start
 * the log, else the oldest snapshot (older segments cannot be applied). */
static void ls_first(const struct manifest *m, uint64_t *first, int64_t *first_t)
{
    *first = 0;
    *first_t = 0;
    if (m->nsnaps) {
        *first = m->snaps[0].txid;
        *first_t = m->snaps[0].time_us;
    }
    if (m->nsegs && m->segs[0].first_txid == 1) {
        *first = 1;
        *first_t = m->segs[0].first_time_us;
    }
}

/* One lineage of `archive ls --json`. */
static json_t *ls_lineage_json(const char *id, int is_cur, const struct manifest *m, const struct tail_result *tr)
{
    json_t *snaps = json_array(), *jo;
    uint64_t last, first;
    int64_t last_t, first_t;

    manifest_last(m, &last, &last_t);
    ls_first(m, &first, &first_t);
    for (size_t s = 0; s < m->nsnaps; s++)
        json_array_append_new(snaps, json_pack("{s:I,s:o,s:I}", "txid", (json_int_t)m->snaps[s].txid, "time",
                                               jtime(m->snaps[s].time_us), "size", (json_int_t)m->snaps[s].size));
    jo = json_pack("{s:s,s:b,s:I,s:I,s:o,s:o,s:I,s:I,s:o,s:I,s:I}", "lineage", id, "current", is_cur,
                   "first_txid", (json_int_t)first, "last_txid", (json_int_t)last, "first_time", jtime(first_t),
                   "last_time", jtime(last_t), "segments", (json_int_t)m->nsegs, "snapshot_count",
                   (json_int_t)m->nsnaps, "snapshots", snaps, "bytes", (json_int_t)manifest_total_bytes(m),
                   "generation", (json_int_t)m->generation);
    json_object_set_new(jo, "manifest_txid", json_integer((json_int_t)tr->manifest_last));
    json_object_set_new(jo, "tail_objects", json_integer((json_int_t)tr->n));
    json_object_set_new(jo, "tail_error", tr->stop != TAIL_END ? json_string(tr->msg) : json_null());
    return jo;
}

/* One lineage of `archive ls` as text. */
static void ls_lineage_text(const char *id, int is_cur, const struct manifest *m, const struct tail_result *tr)
{
    uint64_t last, first;
    int64_t last_t, first_t;
    char tb1[40], tb2[40];

    manifest_last(m, &last, &last_t);
    ls_first(m, &first, &first_t);
    printf("  %c %s  TXID %" PRIu64 "..%" PRIu64 "  %s .. %s  %zu segments, %zu snapshots, %" PRIu64 " bytes\n",
           is_cur ? '*' : ' ', id, first, last, first_t ? lv_fmt_time(first_t, tb1, sizeof tb1) : "-",
           last_t ? lv_fmt_time(last_t, tb2, sizeof tb2) : "-", m->nsegs, m->nsnaps, manifest_total_bytes(m));
    if (tr->n)
        printf("      %zu segment(s) not yet in the manifest (manifest up to TXID %" PRIu64 ")\n", tr->n,
               tr->manifest_last);
    if (tr->stop != TAIL_END)
        printf("      WARNING: %s\n", tr->msg);
    for (size_t s = 0; s < m->nsnaps; s++)
        printf("      snapshot TXID %" PRIu64 " at %s, %" PRIu64 " bytes\n", m->snaps[s].txid,
               lv_fmt_time(m->snaps[s].time_us, tb1, sizeof tb1), m->snaps[s].size);
}

/* List lineage id of database d (appended to jl with --json, else printed).
 * 0, or 1 when its manifest cannot be read (reported in the listing). */
static int ls_lineage(struct store *st, const struct ls_db *d, const char *id, const char *cur, int json, json_t *jl)
{
    struct manifest m;
    struct tail_result tr;
    int is_cur = strcmp(cur, id) == 0;
    char err[1024];

    if (restore_load_manifest(st, d->name, id, &m, err, sizeof err) != 0) {
        if (json)
            json_array_append_new(jl, json_pack("{s:s,s:b,s:s}", "lineage", id, "current", is_cur, "error", err));
        else
            printf("  %c %s  ERROR: %s\n", is_cur ? '*' : ' ', id, err);
        return 1;
    }
    /* Segments stored after the manifest's last write (the manifest may lag). */
    if (restore_load_tail(st, d->name, id, &m, &tr, err, sizeof err) != 0) {
        fprintf(stderr, "litevault archive ls: %s\n", err);
        memset(&tr, 0, sizeof tr);
    }
    if (json)
        json_array_append_new(jl, ls_lineage_json(id, is_cur, &m, &tr));
    else
        ls_lineage_text(id, is_cur, &m, &tr);
    tail_result_free(&tr);
    manifest_free(&m);
    return 0;
}

/* List database d's lineages; its JSON object into jdbs.  Returns 1 if one was unreadable. */
static int ls_database(struct store *st, const struct ls_db *d, int json, json_t *jdbs)
{
    char cur[MANIFEST_ID_HEX + 1] = "", err[1024];
    int listed = 0, bad = 0;
    json_t *jd = json_object(), *jl = json_array();

    int64_t deleted = 0;
    char tb[40], del[80] = "", why[16] = "";

    if (d->has_current && restore_find_lineage(st, d->name, NULL, cur, &listed, err, sizeof err) == 0 && listed)
        cur[0] = '\0'; /* the pointer was unreadable */
    if (cur[0] && restore_deleted(st, d->name, cur, &deleted, why) <= 0)
        deleted = 0;
    if (deleted) /* (format 1 objects give no reason: "deleted", as they said) */
        snprintf(del, sizeof del, "  (%s at %s)",
                 strcmp(why, "renamed") == 0 ? "renamed away" : strcmp(why, "replaced") == 0 ? "replaced" : "deleted",
                 lv_fmt_time(deleted, tb, sizeof tb));
    if (!json)
        printf("%s%s%s\n", d->name, cur[0] ? "" : "  (no current.json)", del);
    for (size_t k = 0; k < d->nids; k++)
        bad |= ls_lineage(st, d, d->ids[k], cur, json, jl);
    json_object_set_new(jd, "name", json_string(d->name));
    json_object_set_new(jd, "current", cur[0] ? json_string(cur) : json_null());
    json_object_set_new(jd, "deleted", deleted ? jtime(deleted) : json_null());
    json_object_set_new(jd, "deleted_reason", deleted && why[0] ? json_string(why) : json_null());
    json_object_set_new(jd, "lineages", jl);
    json_array_append_new(jdbs, jd);
    return bad;
}

static int archive_ls(struct store *st, const char *db, int json)
{
    struct store_list l = {0};
    struct ls_db *dbs = NULL;
    size_t ndbs = 0, i, k;
    char *prefix = NULL;
    json_t *jdbs = json_array();
    int rc, bad = 0;

    if (db && asprintf(&prefix, "%s/", db) < 0)
        return LV_ENOMEM;
    rc = store_list(st, prefix ? prefix : "", &l);
    if (rc) {
        fprintf(stderr, "litevault archive ls: %s: cannot list: %s (%s)\n", store_url(st), lv_strerror(rc),
                store_last_error(st) ? store_last_error(st) : "");
        goto out;
    }
    rc = ls_collect(&l, db, &dbs, &ndbs);
    if (rc)
        goto out;
    if (db && ndbs == 0) {
        fprintf(stderr, "litevault archive ls: %s: database '%s' is not in the archive\n", store_url(st), db);
        rc = LV_ENOENT;
        goto out;
    }
    if (!db && ndbs == 0 && l.n > 0) {
        fprintf(stderr, "litevault archive ls: %s holds %zu object(s) (e.g. %s) but no litevault archive: no "
                        "<db>/current.json and no <db>/<lineage>/manifest.json; check the path or prefix of the URL\n",
                store_url(st), l.n, l.v[0].key);
        rc = LV_ENOENT;
        goto out;
    }
    if (!json && ndbs == 0)
        printf("%s: no databases\n", store_url(st));
    for (i = 0; i < ndbs; i++)
        bad |= ls_database(st, &dbs[i], json, jdbs);
    if (json) {
        json_t *j = json_pack("{s:s,s:O}", "url", store_url(st), "databases", jdbs);
        print_json(j);
    }
    rc = bad ? LV_ECORRUPT : 0;
out:
    json_decref(jdbs);
    for (i = 0; i < ndbs; i++) {
        for (k = 0; k < dbs[i].nids; k++)
            free(dbs[i].ids[k]);
        free(dbs[i].ids);
        free(dbs[i].name);
    }
    free(dbs);
    store_list_free(&l);
    free(prefix);
    return rc;
}

/* ---------------------------------------------------------------- archive verify */

static int archive_verify(const char *url, const struct store_opts *so, const char *db, const char *lineage,
                          int parallel, int json)
{
    struct verify_result r;
    char err[2048] = "";
    size_t i;
    int rc = verify_lineage(url, so, db, lineage, parallel, &r, err, sizeof err);

    if (rc) {
        fprintf(stderr, "litevault archive verify: %s\n", err[0] ? err : lv_strerror(rc));
        return rc;
    }
    if (json) {
        json_t *bad = json_array();
        for (i = 0; i < r.nbad; i++)
            json_array_append_new(bad, json_pack("{s:s,s:s}", "key", r.bad[i].key, "error", r.bad[i].why));
        json_t *jv = json_pack("{s:s,s:s,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:f,s:b}", "db", db, "lineage", r.dbid,
                               "lineage_listed", r.lineage_listed, "objects", (json_int_t)r.objects, "segments",
                               (json_int_t)r.segments, "snapshots", (json_int_t)r.snapshots, "records",
                               (json_int_t)r.records, "bytes", (json_int_t)r.bytes, "first_txid",
                               (json_int_t)r.first_txid, "last_txid", (json_int_t)r.last_txid, "bad", bad, "seconds",
                               r.seconds, "ok", r.nbad == 0);
        json_object_set_new(jv, "tail_objects", json_integer((json_int_t)r.tail));
        json_object_set_new(jv, "manifest_txid", json_integer((json_int_t)r.manifest_txid));
        print_json(jv);
    } else {
        for (i = 0; i < r.nbad; i++)
            printf("BAD %s: %s\n", r.bad[i].key, r.bad[i].why);
        printf("%s: '%s' lineage %s: %zu objects (%zu segments, %zu snapshots), %" PRIu64 " records, TXID %" PRIu64
               "..%" PRIu64 ", %" PRIu64 " bytes: %s\n", url, db, r.dbid, r.objects, r.segments, r.snapshots,
               r.records, r.first_txid, r.last_txid, r.bytes, r.nbad ? "DAMAGED" : "ok");
        if (r.tail)
            printf("  %zu of them not yet in the manifest (it names up to TXID %" PRIu64 ")\n", r.tail,
                   r.manifest_txid);
    }
    rc = r.nbad ? LV_ECORRUPT : 0;
    if (r.nbad)
        fprintf(stderr, "litevault archive verify: %zu bad object(s)\n", r.nbad);
    verify_result_free(&r);
    return rc;
}

int restore_cli_archive(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"from", required_argument, NULL, OPT_FROM},
        {"config", required_argument, NULL, 'c'},
        {"db", required_argument, NULL, OPT_DB},
        {"lineage", required_argument, NULL, OPT_LINEAGE},
        {"parallel", required_argument, NULL, OPT_PARALLEL},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *sub, *url = NULL, *db = NULL, *lineage = NULL, *cfg = NULL;
    char err[1024] = "";
    struct store *st = NULL;
    struct config dcfg;
    struct store_opts dso, *so = NULL;
    int c, json = 0, parallel = 4, rc, have_dcfg = 0;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage_archive();
        return argc < 2 ? LV_EXIT_USAGE : LV_EXIT_OK;
    }
    sub = argv[1];
    if (strcmp(sub, "ls") && strcmp(sub, "verify"))
        return usage_err("archive", "unknown subcommand (use ls or verify)");
    const char *acmd = strcmp(sub, "ls") == 0 ? "archive ls" : "archive verify";
    optind = 1;
    while ((c = cli_getopt(restore_cmd(acmd), argc - 1, argv + 1, "c:h", longopts)) != -1) {
        switch (c) {
        case OPT_FROM: url = optarg; break;
        case 'c': cfg = optarg; break;
        case OPT_DB: db = optarg; break;
        case OPT_LINEAGE: lineage = optarg; break;
        case OPT_PARALLEL: {
            uint64_t n;
            if (parse_u64(optarg, &n) || n < 1 || n > 64)
                return usage_err(acmd, "--parallel takes an integer 1..64");
            parallel = (int)n;
            break;
        }
        case OPT_JSON: json = 1; break;
        case 'h': usage_archive(); return LV_EXIT_OK;
        default: return usage_err(acmd, "unknown option");
        }
    }
    if (optind < argc - 1)
        return usage_err(acmd, "unexpected argument");
    if (strcmp(sub, "verify") == 0 && (!db || !db[0]))
        return usage_err(acmd, "verify needs --db NAME");
    if (lineage && strcmp(sub, "ls") == 0)
        return usage_err(acmd, "--lineage is for verify");
    if (!url) {
        rc = default_dest_from_config(cfg, &dcfg, &url, &dso, err, sizeof err);
        if (rc) {
            fprintf(stderr, "litevault archive: %s\n", err);
            return exit_code(rc);
        }
        have_dcfg = 1;
        so = &dso;
    }
    if (strcmp(sub, "verify") == 0) {
        rc = archive_verify(url, so, db, lineage, parallel, json);
    } else {
        rc = restore_open_archive(url, so, &st, NULL, err, sizeof err);
        if (rc)
            fprintf(stderr, "litevault archive ls: %s\n", err);
        else
            rc = archive_ls(st, db, json);
        store_close(st);
    }
    if (have_dcfg)
        config_free(&dcfg);
    return exit_code(rc);
}
