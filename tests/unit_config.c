/*
 * unit_config.c -- the YAML configuration (src/config.c): defaults, every
 * key, ${VAR} expansion, relative paths, and one test per error class with
 * the exact file:line:col of the message checked.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/config.h"
#include "base/lv.h"
#include "base/lvlog.h"

static char cft_dir[64];
static char cft_file[128];

static void cft_setup(void)
{
    lvlog_threshold = -1;
    strcpy(cft_dir, "/tmp/h1-cfg-XXXXXX");
    cr_assert_not_null(mkdtemp(cft_dir));
    snprintf(cft_file, sizeof cft_file, "%s/litevault.yml", cft_dir);
}

static void cft_teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cft_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", cft_dir);
}

TestSuite(config, .init = cft_setup, .fini = cft_teardown);

static void cft_write(const char *text)
{
    FILE *f = fopen(cft_file, "w");

    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* Load text; assert success. */
static void cft_load_ok(const char *text, struct config *cfg)
{
    char err[512] = "";
    int rc;

    cft_write(text);
    rc = config_load(cft_file, cfg, err, sizeof err);
    cr_assert_eq(rc, 0, "config_load failed (%d): %s", rc, err);
}

/* Load text; assert LV_ECONFIG and a message "FILE:LINE:COL: <want_prefix>...<want_sub>...". */
static void cft_load_err(const char *text, int line, int col, const char *want_prefix, const char *want_sub)
{
    struct config cfg;
    char err[512] = "", head[512];
    int rc;

    cft_write(text);
    rc = config_load(cft_file, &cfg, err, sizeof err);
    cr_assert_eq(rc, LV_ECONFIG, "expected LV_ECONFIG, got %d for:\n%s", rc, text);
    snprintf(head, sizeof head, "%s:%d:%d: %s", cft_file, line, col, want_prefix);
    cr_assert_eq(strncmp(err, head, strlen(head)), 0, "message\n  %s\ndoes not start with\n  %s", err, head);
    if (want_sub)
        cr_assert_not_null(strstr(err, want_sub), "message \"%s\" lacks \"%s\"", err, want_sub);
    cr_assert_null(strchr(err, '\n'), "one line expected: %s", err);
    cr_assert_null(cfg.fuse_dir, "nothing left allocated on error");
    config_free(&cfg); /* harmless after an error */
}

/* ---- defaults and happy paths ---- */

static void cft_assert_defaults(const struct config *c)
{
    cr_assert_str_eq(c->fuse_dir, "/var/lib/litevault/mnt");
    cr_assert_str_eq(c->data_dir, "/var/lib/litevault/data");
    cr_assert_str_eq(c->http_addr, "127.0.0.1:20202");
    cr_assert_eq(c->fuse_allow_other, 0);
    cr_assert_eq(c->log_level, LVLOG_INFO);
    cr_assert_eq(c->log_json, 0);
    cr_assert_eq(c->state_interval_us, 30LL * 1000000);
    cr_assert_eq(c->segment_size, 64LL << 20);
}

Test(config, defaults)
{
    struct config c;

    cr_assert_eq(config_defaults(&c), 0);
    cft_assert_defaults(&c);
    cr_assert_null(c.path);
    config_free(&c);
    cr_assert_null(c.fuse_dir);
    config_free(&c); /* idempotent */

    cr_assert_eq(config_load(NULL, &c, NULL, 0), 0, "no file: defaults");
    cft_assert_defaults(&c);
    config_free(&c);
}

Test(config, empty_and_comment_only_files_give_defaults)
{
    const char *texts[] = {"", "# nothing here\n\n", "---\n", "fuse:\ndata: ~\nhttp: null\nlog: {}\n"};

    for (size_t i = 0; i < LV_ARRAY_LEN(texts); i++) {
        struct config c;
        cft_load_ok(texts[i], &c);
        cft_assert_defaults(&c);
        cr_assert_str_eq(c.path, cft_file);
        config_free(&c);
    }
}

Test(config, every_key)
{
    struct config c;

    cft_load_ok("# full\n"
                "fuse:\n"
                "  dir: /srv/lv/mnt/\n"
                "  allow-other: yes\n"
                "data:\n"
                "  dir: /srv/lv/data\n"
                "  state-interval: 500ms\n"
                "  segment-size: 1GiB\n"
                "http:\n"
                "  addr: \"[::1]:8080\"\n"
                "log:\n"
                "  level: debug\n"
                "  format: json\n",
                &c);
    cr_assert_str_eq(c.fuse_dir, "/srv/lv/mnt", "trailing slash dropped");
    cr_assert_eq(c.fuse_allow_other, 1);
    cr_assert_str_eq(c.data_dir, "/srv/lv/data");
    cr_assert_str_eq(c.http_addr, "[::1]:8080");
    cr_assert_eq(c.log_level, LVLOG_DEBUG);
    cr_assert_eq(c.log_json, 1);
    cr_assert_eq(c.state_interval_us, 500000);
    cr_assert_eq(c.segment_size, 1LL << 30);
    config_free(&c);
}

Test(config, partial_file_keeps_other_defaults)
{
    struct config c;

    cft_load_ok("log:\n  level: warn\n", &c);
    cr_assert_eq(c.log_level, LVLOG_WARN);
    cr_assert_str_eq(c.fuse_dir, "/var/lib/litevault/mnt");
    cr_assert_eq(c.segment_size, 64LL << 20);
    config_free(&c);
}

Test(config, relative_dirs_resolve_against_the_file)
{
    struct config c;
    char want[PATH_MAX + 32], real[PATH_MAX], *cwd;

    cr_assert_not_null(realpath(cft_dir, real));
    /* Load from another cwd to show the cwd does not matter. */
    cwd = getcwd(NULL, 0);
    cr_assert_eq(chdir("/"), 0);
    cft_load_ok("fuse:\n  dir: ./mnt\ndata:\n  dir: sub/data\n", &c);
    cr_assert_eq(chdir(cwd), 0);
    free(cwd);
    snprintf(want, sizeof want, "%s/mnt", real);
    cr_assert_str_eq(c.fuse_dir, want);
    snprintf(want, sizeof want, "%s/sub/data", real);
    cr_assert_str_eq(c.data_dir, want);
    config_free(&c);

    cft_load_ok("data:\n  dir: .\n", &c);
    cr_assert_str_eq(c.data_dir, real);
    config_free(&c);
}

Test(config, env_expansion)
{
    struct config c;

    setenv("H1_ROOT", "/srv/h1", 1);
    setenv("H1_PORT", "9999", 1);
    setenv("H1_EMPTY", "", 1);
    cft_load_ok("data:\n  dir: ${H1_ROOT}/data${H1_EMPTY}\n"
                "http:\n  addr: 127.0.0.1:${H1_PORT}\n"
                "fuse:\n  dir: '/m/$${literal}/$x'\n",
                &c);
    cr_assert_str_eq(c.data_dir, "/srv/h1/data");
    cr_assert_str_eq(c.http_addr, "127.0.0.1:9999");
    cr_assert_str_eq(c.fuse_dir, "/m/${literal}/$x");
    config_free(&c);

    setenv("H1_LEVEL", "error", 1);
    cft_load_ok("log:\n  level: ${H1_LEVEL}\n", &c);
    cr_assert_eq(c.log_level, LVLOG_ERROR);
    config_free(&c);
}

Test(config, sample_file_loads)
{
    struct config c;
    char err[512] = "", want[PATH_MAX + 8], real[PATH_MAX];
    const char *sample = "config.yml.sample";

    if (access(sample, R_OK) != 0)
        cr_skip_test("run from the repository root to check %s", sample);
    cr_assert_eq(config_load(sample, &c, err, sizeof err), 0, "%s", err);
    cr_assert_not_null(realpath(".", real));
    snprintf(want, sizeof want, "%s/mnt", real);
    cr_assert_str_eq(c.fuse_dir, want);
    snprintf(want, sizeof want, "%s/data", real);
    cr_assert_str_eq(c.data_dir, want);
    cr_assert_str_eq(c.http_addr, "127.0.0.1:20202");
    cr_assert_eq(c.log_level, LVLOG_INFO);
    cr_assert_eq(c.state_interval_us, 30LL * 1000000);
    cr_assert_eq(c.segment_size, 64LL << 20);
    cr_assert_eq(c.max_log_size, 10LL << 30);
    cr_assert_eq(c.narchive, 1, "make run archives to a local directory");
    snprintf(want, sizeof want, "file://%s/backup", real);
    cr_assert_str_eq(c.archive[0].url, want);
    cr_assert_eq(c.archive[0].sync_interval_us, 1000000);
    cr_assert_eq(c.archive[0].ncompaction, 3);
    config_free(&c);
}

Test(config, example_file_loads)
{
    struct config c;
    char err[512] = "";
    const char *ex = "examples/litevault.yml";

    if (access(ex, R_OK) != 0)
        cr_skip_test("run from the repository root to check %s", ex);
    cr_assert_eq(config_load(ex, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.log_json, 1);
    cr_assert_eq(c.narchive, 2);
    cr_assert_str_eq(c.archive[0].s3.region, "eu-west-1");
    cr_assert_eq(c.archive[0].retention_us, 7LL * 86400 * 1000000);
    cr_assert_str_eq(c.archive[1].url, "file:///srv/backup/litevault");
    cr_assert_eq(c.nexports, 1);
    cr_assert_str_eq(c.exports[0].name, "nightly");
    cr_assert_eq(c.exports[0].format, EXPORTS_FMT_TAR_ZST);
    cr_assert_eq(c.exports[0].keep, 14);
    config_free(&c);
}

Test(config, find)
{
    cr_assert_str_eq(config_find("/x/explicit.yml"), "/x/explicit.yml");
    cr_assert_eq(chdir(cft_dir), 0);
    unlink("litevault.yml");
    const char *f = config_find(NULL);
    if (access("/etc/litevault.yml", F_OK) == 0)
        cr_assert_str_eq(f, "/etc/litevault.yml");
    else
        cr_assert_null(f);
    cft_write("");
    cr_assert_str_eq(config_find(NULL), "litevault.yml");
}

/* ---- errors, each with its position ---- */

Test(config, missing_file)
{
    struct config c;
    char err[512] = "", path[128];

    snprintf(path, sizeof path, "%s/nope.yml", cft_dir);
    cr_assert_eq(config_load(path, &c, err, sizeof err), LV_ENOENT);
    cr_assert_eq(strncmp(err, path, strlen(path)), 0, "%s", err);
    cr_assert_not_null(strstr(err, "No such file"), "%s", err);
}

Test(config, unknown_keys)
{
    cft_load_err("leases:\n  ttl: 1s\n", 1, 1, "leases: unknown key", "did you mean \"lease\"");
    cft_load_err("lease:\n  ttls: 1s\n", 2, 3, "lease.ttls: unknown key", "did you mean \"ttl\"");
    cft_load_err("lease:\n  kind: static\n", 2, 3, "lease.kind: unknown key", NULL);
    cft_load_err("replication:\n  max_lag: 1s\n", 2, 3, "replication.max_lag: unknown key",
                 "did you mean \"max-lag\"");
    cft_load_err("fuse:\n  dri: /x\n", 2, 3, "fuse.dri: unknown key", "did you mean \"dir\"");
    cft_load_err("data:\n  dir: /d\n  segment_size: 1MiB\n", 3, 3, "data.segment_size: unknown key",
                 "did you mean \"segment-size\"");
    cft_load_err("log:\n  level: info\n  colour: yes\n", 3, 3, "log.colour: unknown key", "level, format");
    cft_load_err("[fuse]: 1\n", 1, 1, "(top level): keys must be plain names", NULL);
}

Test(config, wrong_types)
{
    cft_load_err("log:\n  level:\n    a: b\n", 3, 5, "log.level: expected a single value", "found a mapping");
    cft_load_err("http:\n  addr: [a, b]\n", 2, 9, "http.addr: expected a single value", "found a list");
    cft_load_err("fuse: /mnt\n", 1, 7, "fuse: expected a mapping with keys dir", "found a single value");
    cft_load_err("data:\n  - dir\n", 2, 3, "data: expected a mapping", "found a list");
    cft_load_err("- fuse\n- data\n", 1, 1, "(top level): expected a mapping", "found a list");
    cft_load_err("just a string\n", 1, 1, "(top level): expected a mapping", NULL);
}

Test(config, bad_values)
{
    cft_load_err("data:\n  state-interval: 30\n", 2, 19, "data.state-interval: bad duration \"30\": missing unit",
                 "ms, s, m, h or d");
    cft_load_err("data:\n  state-interval: -5s\n", 2, 19, "data.state-interval: bad duration", "negative");
    cft_load_err("data:\n  state-interval: 0s\n", 2, 19, "data.state-interval: duration must be greater than zero",
                 NULL);
    cft_load_err("data:\n  state-interval: 99999999999999999d\n", 2, 19, "data.state-interval: bad duration",
                 "too large");
    cft_load_err("data:\n  segment-size: 64XB\n", 2, 17, "data.segment-size: bad size \"64XB\": unknown unit", "MiB");
    cft_load_err("data:\n  segment-size: 100\n", 2, 17, "data.segment-size: size 100 is too small", NULL);
    cft_load_err("log:\n  level: loud\n", 2, 10, "log.level: unknown level \"loud\"",
                 "error, warn, info or debug");
    cft_load_err("log:\n  format: xml\n", 2, 11, "log.format: unknown format \"xml\"", "text or json");
    cft_load_err("http:\n  addr: localhost\n", 2, 9, "http.addr: bad address \"localhost\"", "HOST:PORT");
    cft_load_err("http:\n  addr: localhost:99999\n", 2, 9, "http.addr: bad port", NULL);
    cft_load_err("fuse:\n  allow-other: everyone\n", 2, 16, "fuse.allow-other: expected true or false", NULL);
}

Test(config, empty_required_strings)
{
    cft_load_err("fuse:\n  dir: \"\"\n", 2, 8, "fuse.dir: empty value", "/var/lib/litevault/mnt");
    cft_load_err("fuse:\n  dir:\n", 2, 7, "fuse.dir: empty value", NULL);
    cft_load_err("data:\n  dir: ~\n", 2, 8, "data.dir: empty value", NULL);
    cft_load_err("http:\n  addr: ''\n", 2, 9, "http.addr: empty value", NULL);
    setenv("H1_BLANK", "", 1);
    cft_load_err("data:\n  dir: ${H1_BLANK}\n", 2, 8, "data.dir: empty value", NULL);
}

Test(config, env_errors)
{
    unsetenv("H1_UNSET_VAR");
    cft_load_err("data:\n  dir: /x/${H1_UNSET_VAR}/y\n", 2, 8, "data.dir: environment variable H1_UNSET_VAR is not set",
                 NULL);
    cft_load_err("data:\n  dir: /x/${H1\n", 2, 8, "data.dir: unterminated ${", NULL);
    cft_load_err("data:\n  dir: /x/${}\n", 2, 8, "data.dir: bad variable name", NULL);
    cft_load_err("data:\n  dir: /x/${A-B}\n", 2, 8, "data.dir: bad variable name \"A-B\"", NULL);
}

Test(config, duplicate_keys)
{
    cft_load_err("fuse:\n  dir: /a\n  dir: /b\n", 3, 3, "fuse.dir: duplicate key", "line 2");
    cft_load_err("log:\n  level: info\nfuse:\n  dir: /a\nlog:\n  format: json\n", 5, 1, "log: duplicate key", "line 1");
}

Test(config, syntax_errors)
{
    /* No key path is known for these; the message names the position. */
    cft_load_err("fuse:\n  dir: [unclosed\n", 3, 1, "syntax error: ", NULL);
    cft_load_err("log:\n  level: info\n bad: x\n", 3, 2, "syntax error: ", "indentation");
    cft_load_err("log:\n\tlevel: info\n", 2, 1, "syntax error: ", "tabs");
    cft_load_err("fuse:\n  dir: \"open\n", 3, 1, "syntax error: ", NULL);
    cft_load_err("data:\n  dir: *nowhere\n", 2, 8, "syntax error: ", "alias");
    cft_load_err("log: {level: info}\n---\nfuse: {}\n", 3, 1, "a second YAML document", NULL);
}

/* ---- durations and sizes ---- */

Test(config, durations)
{
    struct {
        const char *s;
        int64_t us;
    } ok[] = {
        {"0ms", 0},
        {"1ms", 1000},
        {"500ms", 500000},
        {"1s", 1000000},
        {"30s", 30000000},
        {"10m", 600000000},
        {"24h", 86400000000LL},
        {"7d", 604800000000LL},
        {"007s", 7000000},
        {"5 s", 5000000},
        {"9223372036854775ms", 9223372036854775000LL},
    };
    const char *bad[] = {"",     "s",     "10",  "-1s",   "+1s",   "1.5s",   "10x",   "1sec",  "1S",
                         "1 ",   " 1s",   "1s ", "1  s",  "1h30m", "1e3ms",  "0x10s", "ms10",
                         "9223372036854775808ms", "9223372036854776ms", "106751992d", "99999999999999999999s"};

    for (size_t i = 0; i < LV_ARRAY_LEN(ok); i++) {
        int64_t v = -1;
        cr_assert_eq(lv_parse_duration(ok[i].s, &v), 0, "\"%s\" rejected", ok[i].s);
        cr_assert_eq(v, ok[i].us, "\"%s\" = %lld, want %lld", ok[i].s, (long long)v, (long long)ok[i].us);
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        int64_t v = -77;
        cr_assert_eq(lv_parse_duration(bad[i], &v), LV_EINVAL, "\"%s\" accepted", bad[i]);
        cr_assert_eq(v, -77, "\"%s\" changed the output", bad[i]);
    }
    /* The largest whole number of days that fits, and one more. */
    int64_t v;
    cr_assert_eq(lv_parse_duration("106751991d", &v), 0);
    cr_assert_eq(v, 106751991LL * 86400 * 1000000);
    cr_assert_eq(lv_parse_duration(NULL, &v), LV_EINVAL);
}

Test(config, sizes)
{
    struct {
        const char *s;
        int64_t bytes;
    } ok[] = {
        {"0", 0},
        {"1024", 1024},
        {"1B", 1},
        {"4KiB", 4096},
        {"64MiB", 64LL << 20},
        {"1GiB", 1LL << 30},
        {"2TiB", 2LL << 40},
        {"1KB", 1000},
        {"5MB", 5000000},
        {"3GB", 3000000000LL},
        {"1TB", 1000000000000LL},
        {"64 MiB", 64LL << 20},
        {"9223372036854775807", INT64_MAX},
        {"8388607TiB", 8388607LL << 40},
    };
    const char *bad[] = {"",      "MiB",   "-1",    "-1MiB", "1.5MiB", "64mib", "64M",     "64K",
                         "1EiB",  "1 B ",  " 1",    "1KiBs", "8388608TiB", "9223372036854775808",
                         "9223372036854775807KiB", "12345678901234567890123"};

    for (size_t i = 0; i < LV_ARRAY_LEN(ok); i++) {
        int64_t v = -1;
        cr_assert_eq(lv_parse_size(ok[i].s, &v), 0, "\"%s\" rejected", ok[i].s);
        cr_assert_eq(v, ok[i].bytes, "\"%s\" = %lld, want %lld", ok[i].s, (long long)v, (long long)ok[i].bytes);
    }
    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        int64_t v = -77;
        cr_assert_eq(lv_parse_size(bad[i], &v), LV_EINVAL, "\"%s\" accepted", bad[i]);
        cr_assert_eq(v, -77, "\"%s\" changed the output", bad[i]);
    }
}

/* ---- exports (scheduled export jobs) ---- */

Test(config, exports_every_key_and_defaults)
{
    struct config c;
    char want[300];

    setenv("LVT_SECRET", "s3cr3t", 1);
    cft_load_ok("exports:\n"
                "  - schedule: \"*/15 * * * *\"\n"
                "    url: ./out\n"
                "  - name: nightly\n"
                "    schedule: '@daily'\n"
                "    url: s3://bucket/exports\n"
                "    format: tar.zst\n"
                "    databases: [app.db, dir/b.db]\n"
                "    keep: 3\n"
                "    on: primary\n"
                "    endpoint: http://127.0.0.1:9000\n"
                "    region: eu-west-1\n"
                "    force-path-style: true\n"
                "    access-key-id: AK\n"
                "    secret-access-key: ${LVT_SECRET}\n"
                "    session-token: tok\n"
                "  - schedule: '@every 1s'\n"
                "    url: file:///srv/x\n"
                "    databases: all\n"
                "    format: db\n"
                "  - schedule: '0 3 * * mon-fri'\n"
                "    url: s3://b2/p\n"
                "    force-path-style: false\n"
                "    databases:\n"
                "      - one.db\n",
                &c);
    unsetenv("LVT_SECRET");
    cr_assert_eq(c.nexports, 4);
    /* defaults */
    struct exports_job *e = &c.exports[0];
    cr_assert_str_eq(e->name, "job1");
    cr_assert_str_eq(e->schedule, "*/15 * * * *");
    snprintf(want, sizeof want, "%s/out", cft_dir);
    char real[PATH_MAX];
    cr_assert_not_null(realpath(cft_dir, real));
    snprintf(want, sizeof want, "%s/out", real);
    cr_assert_str_eq(e->url, want, "relative directory resolved against the config file");
    cr_assert_eq(e->format, EXPORTS_FMT_DB);
    cr_assert_null(e->databases);
    cr_assert_eq(e->ndatabases, 0);
    cr_assert_eq(e->keep, 7);
    cr_assert_eq(e->on, EXPORTS_ON_PRIMARY);
    cr_assert_eq(e->s3.force_path_style, -1);
    cr_assert_null(e->s3.endpoint);
    cr_assert_null(e->s3.access_key_id);
    /* every key */
    e = &c.exports[1];
    cr_assert_str_eq(e->name, "nightly");
    cr_assert_str_eq(e->schedule, "@daily");
    cr_assert_str_eq(e->url, "s3://bucket/exports");
    cr_assert_eq(e->format, EXPORTS_FMT_TAR_ZST);
    cr_assert_eq(e->ndatabases, 2);
    cr_assert_str_eq(e->databases[0], "app.db");
    cr_assert_str_eq(e->databases[1], "dir/b.db");
    cr_assert_eq(e->keep, 3);
    cr_assert_str_eq(e->s3.endpoint, "http://127.0.0.1:9000");
    cr_assert_str_eq(e->s3.region, "eu-west-1");
    cr_assert_eq(e->s3.force_path_style, 1);
    cr_assert_str_eq(e->s3.access_key_id, "AK");
    cr_assert_str_eq(e->s3.secret_access_key, "s3cr3t");
    cr_assert_str_eq(e->s3.session_token, "tok");
    e = &c.exports[2];
    cr_assert_str_eq(e->name, "job3");
    cr_assert_str_eq(e->url, "file:///srv/x");
    cr_assert_null(e->databases);
    e = &c.exports[3];
    cr_assert_eq(e->s3.force_path_style, 0);
    cr_assert_eq(e->ndatabases, 1);
    cr_assert_str_eq(e->databases[0], "one.db");
    config_free(&c);
    cr_assert_null(c.exports);
    cr_assert_eq(c.nexports, 0);

    cft_load_ok("exports:\n", &c);
    cr_assert_eq(c.nexports, 0);
    config_free(&c);
    cft_load_ok("exports: []\n", &c);
    cr_assert_eq(c.nexports, 0);
    config_free(&c);
}

Test(config, exports_errors_name_the_key)
{
    cft_load_err("exports:\n  - url: /x\n", 2, 5, "exports[0].schedule: required key is missing", NULL);
    cft_load_err("exports:\n  - schedule: '@daily'\n", 2, 5, "exports[0].url: required key is missing", NULL);
    cft_load_err("exports:\n  - schedule: '61 * * * *'\n    url: /x\n", 2, 15, "exports[0].schedule: bad schedule",
                 "minute field \"61\"");
    cft_load_err("exports:\n  - schedule: '0 0 30 2 *'\n    url: /x\n", 2, 15, "exports[0].schedule: bad schedule",
                 "never");
    cft_load_err("exports:\n  - schedule: '@every 10'\n    url: /x\n", 2, 15, "exports[0].schedule:", "@every");
    cft_load_err("exports:\n  - schedule: '* * *'\n    url: /x\n", 2, 15, "exports[0].schedule:", "expected 5 fields");
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: ftp://x/y\n", 3, 10, "exports[0].url: unsupported URL",
                 NULL);
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: s3:///p\n", 3, 10, "exports[0].url:", "no bucket");
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: file://rel\n", 3, 10, "exports[0].url:", "absolute");
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n    format: zip\n", 4, 13,
                 "exports[0].format: unknown format \"zip\"", "db or tar.zst");
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n    keep: 0\n", 4, 11, "exports[0].keep: bad count",
                 NULL);
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n    keep: many\n", 4, 11, "exports[0].keep:", NULL);
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n    on: replica\n", 4, 9, "exports[0].on:",
                 "not supported yet");
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n    on: moon\n", 4, 9, "exports[0].on:", "primary");
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n    databases: some\n", 4, 16,
                 "exports[0].databases: expected all", NULL);
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n    databases: [a.db, /b.db]\n", 4, 23,
                 "exports[0].databases[1]: bad database name", NULL);
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n    databases: [a.db, a.db]\n", 4, 23,
                 "exports[0].databases[1]: database \"a.db\" is listed twice", NULL);
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n    databases: []\n", 4, 16,
                 "exports[0].databases: empty list", NULL);
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n    databases: [[a]]\n", 4, 17,
                 "exports[0].databases[0]: expected a single value", NULL);
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n    name: 'a b'\n", 4, 11,
                 "exports[0].name: bad job name", NULL);
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n  - schedule: '@daily'\n    url: /y\n    name: job1\n",
                 4, 5, "exports[1]: job name \"job1\" is also used by exports[0]", NULL);
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n    endpoint: http://h\n", 2, 5,
                 "exports[0]: endpoint, region", "s3://");
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: s3://b\n    access-key-id: A\n", 2, 5,
                 "exports[0]: set both access-key-id and secret-access-key", NULL);
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: s3://b\n    force-path-style: maybe\n", 4, 23,
                 "exports[0].force-path-style: expected true or false", NULL);
    cft_load_err("exports:\n  - schedule: '@daily'\n    url: /x\n    keap: 3\n", 4, 5, "exports[0].keap: unknown key",
                 "did you mean \"keep\"");
    cft_load_err("exports:\n  schedule: '@daily'\n", 2, 3, "exports: expected a list of mappings", NULL);
    cft_load_err("exports:\n  - '@daily'\n", 2, 5, "exports[0]: expected a mapping", NULL);
}

/* ---- archive: destinations and data.max-log-size ---- */

Test(config, archive_defaults_and_every_key)
{
    struct config c;

    cft_load_ok("data:\n"
                "  max-log-size: 2GiB\n"
                "archive:\n"
                "  - url: file:///srv/archive\n"
                "  - url: s3://bucket/prefix?region=eu-west-1\n"
                "    endpoint: http://127.0.0.1:9000\n"
                "    region: us-east-1\n"
                "    force-path-style: false\n"
                "    access-key-id: AK\n"
                "    secret-access-key: SK\n"
                "    session-token: ST\n"
                "    sync-interval: 250ms\n"
                "    snapshot-interval: 1h\n"
                "    retention: 30d\n"
                "    compaction: [10s, 2m]\n"
                "    parallel: 8\n"
                "    delete-delay: 1m\n"
                "    manifest-interval: 10s\n"
                "    shutdown-timeout: 5s\n"
                "  - url: file://rel/dir\n"
                "    compaction: []\n",
                &c);
    cr_assert_eq(c.max_log_size, 2LL << 30);
    cr_assert_eq(c.narchive, 3);
    const struct archiver_dest *a = &c.archive[0];
    cr_assert_str_eq(a->url, "file:///srv/archive");
    cr_assert_null(a->s3.endpoint);
    cr_assert_eq(a->s3.force_path_style, -1);
    cr_assert_eq(a->sync_interval_us, 1000000);
    cr_assert_eq(a->snapshot_interval_us, 86400LL * 1000000);
    cr_assert_eq(a->retention_us, 7LL * 86400 * 1000000);
    cr_assert_eq(a->ncompaction, 3);
    cr_assert_eq(a->compaction_us[0], 30LL * 1000000);
    cr_assert_eq(a->compaction_us[1], 300LL * 1000000);
    cr_assert_eq(a->compaction_us[2], 3600LL * 1000000);
    cr_assert_eq(a->parallel, 4);
    cr_assert_eq(a->delete_delay_us, 300LL * 1000000);
    cr_assert_eq(a->manifest_interval_us, 60LL * 1000000, "manifest-interval defaults to 1m");
    cr_assert_eq(a->shutdown_timeout_us, 30LL * 1000000, "shutdown-timeout defaults to 30s");
    a = &c.archive[1];
    cr_assert_str_eq(a->url, "s3://bucket/prefix?region=eu-west-1");
    cr_assert_str_eq(a->s3.endpoint, "http://127.0.0.1:9000");
    cr_assert_str_eq(a->s3.region, "us-east-1");
    cr_assert_eq(a->s3.force_path_style, 0);
    cr_assert_str_eq(a->s3.access_key_id, "AK");
    cr_assert_str_eq(a->s3.secret_access_key, "SK");
    cr_assert_str_eq(a->s3.session_token, "ST");
    cr_assert_eq(a->sync_interval_us, 250000);
    cr_assert_eq(a->snapshot_interval_us, 3600LL * 1000000);
    cr_assert_eq(a->retention_us, 30LL * 86400 * 1000000);
    cr_assert_eq(a->ncompaction, 2);
    cr_assert_eq(a->compaction_us[0], 10LL * 1000000);
    cr_assert_eq(a->compaction_us[1], 120LL * 1000000);
    cr_assert_eq(a->parallel, 8);
    cr_assert_eq(a->delete_delay_us, 60LL * 1000000);
    cr_assert_eq(a->manifest_interval_us, 10LL * 1000000);
    cr_assert_eq(a->shutdown_timeout_us, 5LL * 1000000);
    a = &c.archive[2];
    char want[PATH_MAX + 16], real[PATH_MAX];
    cr_assert_not_null(realpath(cft_dir, real));
    snprintf(want, sizeof want, "file://%s/rel/dir", real);
    cr_assert_str_eq(a->url, want, "relative file:// paths resolve like data.dir");
    cr_assert_eq(a->ncompaction, 0, "compaction: [] disables compaction");
    config_free(&c);
    cr_assert_null(c.archive);

    cft_load_ok("archive:\n  - url: s3://b\n    compaction: 1s, 1m\n", &c);
    cr_assert_eq(c.archive[0].ncompaction, 2, "a comma-separated string works too");
    config_free(&c);
    cft_load_ok("data:\n  max-log-size: 0\n", &c);
    cr_assert_eq(c.max_log_size, 0, "0: no limit");
    cr_assert_eq(c.narchive, 0);
    config_free(&c);
    cft_load_ok("log:\n  level: warn\n", &c);
    cr_assert_eq(c.max_log_size, 10LL << 30, "default 10GiB");
    config_free(&c);
}

Test(config, archive_errors)
{
    cft_load_err("archive:\n  - sync-interval: 1s\n", 2, 5, "archive[0].url: required key is missing", NULL);
    cft_load_err("archive:\n  - url: ftp://x\n", 2, 10, "archive[0].url: unsupported URL", "s3://");
    cft_load_err("archive:\n  - url: s3:///x\n", 2, 10, "archive[0].url: missing bucket", NULL);
    cft_load_err("archive:\n  - url: s3://b\n  - url: s3://b\n    compaction: [5m, 30s]\n", 4, 17,
                 "archive[1].compaction: compaction level 2", "longer");
    cft_load_err("archive:\n  - url: s3://b\n    compaction: [5x]\n", 3, 17, "archive[0].compaction: bad duration",
                 NULL);
    cft_load_err("archive:\n  - url: s3://b\n    force-path-style: maybe\n", 3, 23,
                 "archive[0].force-path-style: expected true or false", NULL);
    cft_load_err("archive:\n  - url: s3://b\n    parallel: 0\n", 3, 15, "archive[0].parallel: expected an integer", NULL);
    cft_load_err("archive:\n  - url: s3://b\n    retension: 1d\n", 3, 5, "archive[0].retension: unknown key",
                 "did you mean \"retention\"");
    cft_load_err("archive:\n  url: s3://b\n", 2, 3, "archive: expected a list of mappings", NULL);
    cft_load_err("data:\n  max-log-size: 10KiB\n", 2, 17, "data.max-log-size: size 10240 is too small", NULL);
}

/* ---- roles, access and replication ---- */

#define CFT_TOKEN "0123456789abcdef0123456789abcdef"

/* Write text into the file name in cft_dir; its path into path (PATH_MAX). */
static void cft_put(const char *name, const char *text, char *path)
{
    FILE *f;

    snprintf(path, PATH_MAX, "%s/%s", cft_dir, name);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(config, roles_defaults)
{
    struct config c;

    cr_assert_eq(config_defaults(&c), 0);
    cr_assert_str_eq(c.lease_type, "static");
    cr_assert_eq(c.lease_candidate, 1, "a node without lease: is a static primary");
    cr_assert_str_eq(c.advertise_url, "http://127.0.0.1:20202");
    cr_assert_null(c.primary_url);
    cr_assert_null(c.http_token);
    cr_assert_null(c.http_token_file);
    cr_assert_eq(c.http_allow_no_token, 0);
    cr_assert_null(c.http_tls_cert);
    cr_assert_null(c.http_tls_key);
    cr_assert_null(c.http_tls_ca);
    cr_assert_eq(c.repl_max_lag_us, 10LL * 1000000);
    cr_assert_eq(c.repl_max_retain, 1LL << 30);
    cr_assert_eq(c.repl_seed, 1);
    cr_assert_eq(c.repl_apply_wait_us, 100000);
    cr_assert_eq(config_http_listens(&c), 1);
    config_free(&c);
    cr_assert_null(c.lease_type);
    cr_assert_null(c.advertise_url);

    cft_load_ok("http:\n  addr: 127.0.0.1:7000\n", &c);
    cr_assert_str_eq(c.advertise_url, "http://127.0.0.1:7000", "advertise-url follows http.addr");
    config_free(&c);
    cft_load_ok("lease:\n  primary-url: http://db1:20202\n", &c);
    cr_assert_eq(c.lease_candidate, 0, "a node told whom to follow is a replica");
    config_free(&c);
    cft_load_ok("lease:\n  candidate: true\n  primary-url: http://db1:20202\n", &c);
    cr_assert_eq(c.lease_candidate, 1, "unless it says otherwise (one file for every node)");
    config_free(&c);
    cft_load_ok("http:\n  public: false\n", &c);
    cr_assert_eq(config_http_listens(&c), 0, "public false, no token: nothing on http.addr");
    config_free(&c);
}

Test(config, roles_every_key)
{
    struct config c;
    char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX], want[PATH_MAX + 32], text[4096];

    cft_put("cert.pem", "-----BEGIN CERTIFICATE-----\n", cert);
    cft_put("key.pem", "-----BEGIN PRIVATE KEY-----\n", key);
    cft_put("ca.pem", "-----BEGIN CERTIFICATE-----\n", ca);
    snprintf(text, sizeof text,
             "http:\n"
             "  addr: 0.0.0.0:7443\n"
             "  public: false\n"
             "  token: " CFT_TOKEN "\n"
             "  tls-cert: cert.pem\n"
             "  tls-key: ./key.pem\n"
             "  tls-ca: %s\n"
             "lease:\n"
             "  type: static\n"
             "  candidate: no\n"
             "  advertise-url: https://db2.internal:7443/\n"
             "  primary-url: https://[fd00::1]:7443/litevault//\n"
             "replication:\n"
             "  max-lag: 2s\n"
             "  max-retain: 0\n"
             "  seed: false\n"
             "  apply-wait: 250ms\n",
             ca);
    cft_load_ok(text, &c);
    cr_assert_str_eq(c.http_token, CFT_TOKEN);
    cr_assert_eq(c.http_public, 0);
    cr_assert_eq(config_http_listens(&c), 1, "a token opens http.addr");
    cr_assert_str_eq(c.http_tls_cert, cert, "relative to the config's directory");
    cr_assert_str_eq(c.http_tls_key, key);
    cr_assert_str_eq(c.http_tls_ca, ca);
    cr_assert_str_eq(c.lease_type, "static");
    cr_assert_eq(c.lease_candidate, 0);
    cr_assert_str_eq(c.advertise_url, "https://db2.internal:7443", "trailing slashes dropped");
    cr_assert_str_eq(c.primary_url, "https://[fd00::1]:7443/litevault");
    cr_assert_eq(c.repl_max_lag_us, 2000000);
    cr_assert_eq(c.repl_max_retain, 0);
    cr_assert_eq(c.repl_seed, 0);
    cr_assert_eq(c.repl_apply_wait_us, 250000);
    config_free(&c);

    /* HTTPS changes the default advertise-url's scheme; 0.0.0.0 becomes the host name. */
    snprintf(text, sizeof text, "http:\n  addr: 0.0.0.0:7443\n  allow-no-token: true\n  tls-cert: %s\n"
                                "  tls-key: %s\n", cert, key);
    cft_load_ok(text, &c);
    char host[256];
    cr_assert_eq(gethostname(host, sizeof host), 0);
    snprintf(want, sizeof want, "https://%s:7443", host);
    cr_assert_str_eq(c.advertise_url, want);
    cr_assert_eq(c.http_allow_no_token, 1);
    cr_assert_null(c.http_token);
    config_free(&c);

    /* etcd: every key. */
    snprintf(text, sizeof text, "lease:\n  type: etcd\n  endpoints: [http://e1:2379, https://e2:2379/]\n"
                                "  key: /app/primary\n  ttl: 4s\n  tls-ca: %s\n  tls-cert: %s\n  tls-key: %s\n",
             ca, cert, key);
    cft_load_ok(text, &c);
    cr_assert_str_eq(c.lease_type, "etcd");
    cr_assert_eq(c.lease_candidate, 1, "every etcd node is a candidate by default");
    cr_assert_str_eq(c.lease_endpoints, "http://e1:2379,https://e2:2379/");
    cr_assert_str_eq(c.lease_key, "/app/primary");
    cr_assert_eq(c.lease_ttl_us, 4000000);
    cr_assert_str_eq(c.lease_tls_ca, ca);
    cr_assert_str_eq(c.lease_tls_cert, cert);
    cr_assert_str_eq(c.lease_tls_key, key);
    config_free(&c);
    cft_load_ok("lease:\n  type: etcd\n  endpoints: http://e1:2379\n  candidate: false\n", &c);
    cr_assert_str_eq(c.lease_endpoints, "http://e1:2379", "one endpoint without a list");
    cr_assert_eq(c.lease_candidate, 0);
    cr_assert_null(c.lease_key);
    cr_assert_eq(c.lease_ttl_us, 0, "unset: the lease's default");
    config_free(&c);
}

Test(config, token_file)
{
    struct config c;
    char tok[PATH_MAX], text[PATH_MAX + 64], err[512];

    cft_put("token", CFT_TOKEN "\n", tok);
    cft_load_ok("http:\n  token-file: token\n", &c);
    cr_assert_str_eq(c.http_token, CFT_TOKEN, "read at load, newline dropped");
    cr_assert_str_eq(c.http_token_file, tok);
    config_free(&c);
    cft_put("token", CFT_TOKEN "\r\n", tok);
    cft_load_ok("http:\n  token-file: token\n", &c);
    cr_assert_str_eq(c.http_token, CFT_TOKEN, "CRLF too");
    config_free(&c);
    cft_put("token", CFT_TOKEN, tok);
    cft_load_ok("http:\n  token-file: token\n", &c);
    cr_assert_str_eq(c.http_token, CFT_TOKEN, "no newline at all");
    config_free(&c);

    cft_load_err("http:\n  token: " CFT_TOKEN "\n  token-file: token\n", 3, 3, "http.token-file: set http.token or "
                 "http.token-file, not both", NULL);
    cft_load_err("http:\n  token-file: nope\n", 2, 15, "http.token-file: cannot use ", "No such file");
    cft_put("token", "\n", tok);
    cft_load_err("http:\n  token-file: token\n", 2, 15, "http.token-file: ", "is empty");
    cft_put("token", "short\n", tok);
    cft_load_err("http:\n  token-file: token\n", 2, 15, "http.token-file: ", "shorter than 16");
    cft_put("token", CFT_TOKEN "\n" CFT_TOKEN "\n", tok);
    cft_load_err("http:\n  token-file: token\n", 2, 15, "http.token-file: ", "printable");
    if (geteuid() != 0) {
        cft_put("token", CFT_TOKEN "\n", tok);
        cr_assert_eq(chmod(tok, 0), 0);
        snprintf(text, sizeof text, "http:\n  token-file: %s\n", tok);
        cft_write(text);
        cr_assert_eq(config_load(cft_file, &c, err, sizeof err), LV_ECONFIG);
        cr_assert_not_null(strstr(err, "http.token-file: cannot read"), "%s", err);
        cr_assert_not_null(strstr(err, tok), "the message names the file: %s", err);
        cr_assert_not_null(strstr(err, "Permission denied"), "%s", err);
    }
}

/* Messages say what is wrong with a token, never what it is. */
Test(config, token_never_in_messages)
{
    const char *bad[] = {"abc", "0123456789abcdef 0123456789", "0123456789abcdef\t0123456789", "0123456789abcdéf0123"};
    char text[256], err[512];
    struct config c;

    for (size_t i = 0; i < LV_ARRAY_LEN(bad); i++) {
        snprintf(text, sizeof text, "http:\n  token: \"%s\"\n", bad[i]);
        cft_write(text);
        cr_assert_eq(config_load(cft_file, &c, err, sizeof err), LV_ECONFIG, "token '%s' accepted", bad[i]);
        cr_assert_eq(strncmp(strchr(err, ':'), ":2:10: http.token: ", 19), 0, "%s", err);
        cr_assert_null(strstr(err, bad[i]), "the token is in the message: %s", err);
        cr_assert_null(strstr(err, "0123456789"), "part of the token is in the message: %s", err);
    }
}

/* lease.username with lease.password or lease.password-file (read at
 * load, newline dropped); the errors name the key; no message holds the
 * password. */
Test(config, lease_auth)
{
    struct config c;
    char pwf[PATH_MAX], err[512];
#define CFT_ETCD "lease:\n  type: etcd\n  endpoints: [http://e1:2379]\n"
#define CFT_PW "Pa55-w0rd secret"

    cft_load_ok(CFT_ETCD "  username: lv\n  password: " CFT_PW "\n", &c);
    cr_assert_str_eq(c.lease_username, "lv");
    cr_assert_str_eq(c.lease_password, CFT_PW);
    cr_assert_null(c.lease_password_file);
    config_free(&c);
    cr_assert_null(c.lease_password);
    cft_put("etcd-pw", CFT_PW "\n", pwf);
    cft_load_ok(CFT_ETCD "  username: lv\n  password-file: etcd-pw\n", &c);
    cr_assert_str_eq(c.lease_password, CFT_PW, "read at load, newline dropped");
    cr_assert_str_eq(c.lease_password_file, pwf, "resolved against the config's directory");
    config_free(&c);
    cft_put("etcd-pw", CFT_PW "\r\n", pwf);
    cft_load_ok(CFT_ETCD "  username: lv\n  password-file: etcd-pw\n", &c);
    cr_assert_str_eq(c.lease_password, CFT_PW, "CRLF too");
    config_free(&c);
    cft_load_ok(CFT_ETCD, &c);
    cr_assert_null(c.lease_username, "no authentication by default");
    cr_assert_null(c.lease_password);
    config_free(&c);

    cft_load_err(CFT_ETCD "  username: lv\n  password: " CFT_PW "\n  password-file: etcd-pw\n", 6, 3,
                 "lease.password-file: set lease.password or lease.password-file, not both", NULL);
    cft_load_err(CFT_ETCD "  username: lv\n", 4, 3, "lease.username: etcd authentication needs the user's password",
                 "lease.password-file");
    cft_load_err(CFT_ETCD "  password: " CFT_PW "\n", 4, 3, "lease.password: a password needs lease.username",
                 NULL);
    cft_load_err(CFT_ETCD "  password-file: etcd-pw\n", 4, 3, "lease.password-file: a password needs "
                 "lease.username", NULL);
    cft_load_err(CFT_ETCD "  username: lv\n  password: ''\n", 5, 13, "lease.password: empty value", NULL);
    cft_load_err(CFT_ETCD "  username: ''\n  password: x\n", 4, 13, "lease.username: empty value", NULL);
    cft_load_err(CFT_ETCD "  username: lv\n  password-file: nope\n", 5, 18, "lease.password-file: cannot use ",
                 "No such file");
    cft_put("etcd-pw", "\n", pwf);
    cft_load_err(CFT_ETCD "  username: lv\n  password-file: etcd-pw\n", 5, 18, "lease.password-file: ", "is empty");
    cft_load_err("lease:\n  username: lv\n  password: x\n", 2, 3, "lease.username: only used with lease.type etcd",
                 NULL);
    cft_load_err("lease:\n  password-file: etcd-pw\n", 2, 3, "lease.password-file: only used with lease.type etcd",
                 NULL);

    /* The password in no message: too long, in a file too long, in an endpoint URL. */
    char *lng = malloc(5000);
    cr_assert_not_null(lng);
    memset(lng, 'q', 4999);
    lng[4999] = 0;
    memcpy(lng, "SeCrEt", 6);
    char *big = NULL;
    cr_assert_geq(asprintf(&big, CFT_ETCD "  username: lv\n  password: %s\n", lng), 0);
    cft_write(big);
    cr_assert_eq(config_load(cft_file, &c, err, sizeof err), LV_ECONFIG);
    cr_assert_not_null(strstr(err, "lease.password: the password is longer than 4096 bytes"), "%s", err);
    cr_assert_null(strstr(err, "SeCrEt"), "the password is in the message: %s", err);
    cft_put("etcd-pw", lng, pwf);
    cft_write(CFT_ETCD "  username: lv\n  password-file: etcd-pw\n");
    cr_assert_eq(config_load(cft_file, &c, err, sizeof err), LV_ECONFIG);
    cr_assert_not_null(strstr(err, "lease.password-file: "), "%s", err);
    cr_assert_not_null(strstr(err, "longer than 4096"), "%s", err);
    cr_assert_null(strstr(err, "SeCrEt"), "the password is in the message: %s", err);
    free(big);
    free(lng);
    cft_write("lease:\n  type: etcd\n  endpoints: [http://lv:SeCrEt@e1:2379]\n");
    cr_assert_eq(config_load(cft_file, &c, err, sizeof err), LV_ECONFIG);
    cr_assert_not_null(strstr(err, "carries credentials"), "%s", err);
    cr_assert_not_null(strstr(err, "lease.username"), "%s", err);
    cr_assert_null(strstr(err, "SeCrEt"), "the password is in the message: %s", err);
#undef CFT_ETCD
#undef CFT_PW
}

Test(config, roles_errors)
{
    char cert[PATH_MAX], text[PATH_MAX + 128];

    cft_load_err("lease:\n  type: etcd\n", 2, 9, "lease.endpoints: required with lease.type etcd", "endpoints:");
    cft_load_err("lease:\n  type: raft\n", 2, 9, "lease.type: unknown lease type \"raft\"", "use static");
    cft_load_err("lease:\n  type: etcd\n  endpoints: [http://e1:2379]\n  primary-url: http://db1:20202\n", 2, 9,
                 "lease.primary-url: not used with lease.type etcd", NULL);
    cft_load_err("lease:\n  endpoints: http://e1:2379\n", 2, 3, "lease.endpoints: only used with lease.type etcd", NULL);
    cft_load_err("lease:\n  type: etcd\n  endpoints: [e1:2379]\n", 3, 14, "lease.endpoints: bad etcd endpoint \"e1:2379\"",
                 NULL);
    cft_load_err("lease:\n  type: etcd\n  endpoints: [http://e1:2379/v3]\n", 3, 14, "lease.endpoints: bad etcd endpoint",
                 "without a path");
    cft_load_err("lease:\n  type: etcd\n  endpoints: [http://e1:2379]\n  ttl: 1s\n", 4, 8,
                 "lease.ttl: expected whole seconds from 2s to 5m", NULL);
    cft_load_err("lease:\n  type: etcd\n  endpoints: [http://e1:2379]\n  ttl: 2500ms\n", 4, 8,
                 "lease.ttl: expected whole seconds", NULL);
    cft_load_err("lease:\n  type: etcd\n  endpoints: [http://e1:2379]\n  key: litevault/p\n", 4, 8,
                 "lease.key: the lease key must start with '/'", NULL);
    cft_load_err("lease:\n  candidate: false\n", 2, 3, "lease.primary-url: required when lease.candidate is false",
                 "primary-url: http://");
    cft_load_err("lease:\n  candidate: maybe\n", 2, 14, "lease.candidate: expected true or false", NULL);
    cft_load_err("lease:\n  primary-url: ftp://db1:20202\n", 2, 16, "lease.primary-url: unsupported URL",
                 "http://HOST:PORT or https://");
    cft_load_err("lease:\n  primary-url: db1:20202\n", 2, 16, "lease.primary-url: unsupported URL", NULL);
    cft_load_err("lease:\n  primary-url: http://\n", 2, 16, "lease.primary-url: missing host", NULL);
    cft_load_err("lease:\n  primary-url: http://:80\n", 2, 16, "lease.primary-url: missing host", NULL);
    cft_load_err("lease:\n  primary-url: http://u:pw@db1:20202\n", 2, 16, "lease.primary-url: the URL must not "
                 "carry credentials", "http.token");
    cft_load_err("lease:\n  primary-url: http://db1:0\n", 2, 16, "lease.primary-url: bad port", NULL);
    cft_load_err("lease:\n  primary-url: http://db1:99999\n", 2, 16, "lease.primary-url: bad port", NULL);
    cft_load_err("lease:\n  primary-url: http://db1:2x\n", 2, 16, "lease.primary-url: bad port", NULL);
    cft_load_err("lease:\n  primary-url: \"http://db1:1/?a=b\"\n", 2, 16, "lease.primary-url: bad URL", "query");
    cft_load_err("lease:\n  primary-url: \"http://db 1:1\"\n", 2, 16, "lease.primary-url: bad URL", NULL);
    cft_load_err("lease:\n  primary-url: http://[fd00::1:1\n", 2, 16, "lease.primary-url: bad IPv6 host", NULL);
    cft_load_err("lease:\n  advertise-url: ''\n", 2, 18, "lease.advertise-url: empty value", NULL);
    cft_load_err("replication:\n  max-lag: 0s\n", 2, 12, "replication.max-lag: duration must be greater than zero",
                 NULL);
    cft_load_err("replication:\n  max-retain: lots\n", 2, 15, "replication.max-retain: bad size", "0 for none");
    cft_load_err("replication:\n  seed: sometimes\n", 2, 9, "replication.seed: expected true or false", NULL);
    cft_load_err("replication:\n  apply-wait: 2m\n", 2, 15, "replication.apply-wait: apply-wait must be at most 1m",
                 NULL);
    cft_load_err("http:\n  token: ''\n", 2, 10, "http.token: empty value", NULL);
    cft_load_err("http:\n  tls-cert: /nonexistent/cert.pem\n", 2, 13, "http.tls-cert: cannot use "
                 "/nonexistent/cert.pem: No such file", NULL);
    cft_load_err("http:\n  tls-ca: /tmp\n", 2, 11, "http.tls-ca: /tmp is a directory", NULL);
    cft_put("cert.pem", "-----BEGIN CERTIFICATE-----\n", cert);
    snprintf(text, sizeof text, "http:\n  tls-cert: %s\n", cert);
    cft_load_err(text, 2, 3, "http.tls-cert: set both http.tls-cert and http.tls-key", NULL);
    snprintf(text, sizeof text, "http:\n  addr: 127.0.0.1:1\n  tls-key: %s\n", cert);
    cft_load_err(text, 3, 3, "http.tls-key: set both http.tls-cert and http.tls-key", NULL);
}

/* A non-loopback http.addr without a token is refused unless allowed. */
Test(config, open_addr_needs_a_token)
{
    struct config c;

    cft_load_err("http:\n  addr: 0.0.0.0:20202\n", 2, 9, "http.addr: 0.0.0.0:20202 is not a loopback address and no "
                 "http.token is set", "set http.token (or http.token-file), or set http.allow-no-token: true");
    cft_load_err("http:\n  public: true\n  addr: 10.1.2.3:20202\n", 3, 9, "http.addr: 10.1.2.3:20202 is not a "
                 "loopback", NULL);
    cft_load_err("http:\n  addr: \"[::]:20202\"\n", 2, 9, "http.addr: [::]:20202 is not a loopback", NULL);
    cft_load_ok("http:\n  addr: 0.0.0.0:20202\n  allow-no-token: true\n", &c);
    config_free(&c);
    cft_load_ok("http:\n  addr: 0.0.0.0:20202\n  token: " CFT_TOKEN "\n", &c);
    config_free(&c);
    cft_load_ok("http:\n  addr: 0.0.0.0:20202\n  public: false\n", &c); /* nothing listens there */
    config_free(&c);
    cft_load_ok("http:\n  addr: \"[::1]:20202\"\n", &c);
    config_free(&c);
    cft_load_ok("http:\n  addr: localhost:20202\n", &c);
    config_free(&c);
}

/* ---- proxy: ---- */

Test(config, proxy_defaults)
{
    struct config c;

    cr_assert_eq(config_defaults(&c), 0);
    cr_assert_null(c.proxy_addr, "no proxy without the section");
    cr_assert_null(c.proxy_target);
    cr_assert_null(c.proxy_db);
    cr_assert_null(c.proxy_passthrough);
    cr_assert_eq(c.nproxy_passthrough, 0);
    cr_assert_eq(c.proxy_max_lag_wait_us, 5LL * 1000000);
    cr_assert_eq(c.proxy_header_timeout_us, 10LL * 1000000);
    cr_assert_eq(c.proxy_max_conns, 256);
    cr_assert_null(c.proxy_advertise_url);
    cr_assert_null(c.proxy_primary_url);
    config_free(&c);

    cft_load_ok("proxy:\n  addr: 127.0.0.1:8080\n  target: 127.0.0.1:8081\n  db: app.db\n", &c);
    cr_assert_str_eq(c.proxy_addr, "127.0.0.1:8080");
    cr_assert_str_eq(c.proxy_target, "127.0.0.1:8081");
    cr_assert_str_eq(c.proxy_db, "app.db");
    cr_assert_str_eq(c.proxy_advertise_url, "http://127.0.0.1:8080", "advertise-url follows proxy.addr");
    cr_assert_eq(c.proxy_max_conns, 256);
    config_free(&c);
    cr_assert_null(c.proxy_addr);
    cr_assert_null(c.proxy_advertise_url);

    cft_load_ok("proxy:\n  addr: 0.0.0.0:8080\n  target: http://localhost:8081/\n  db: d/app.db\n"
                "  passthrough: '*.css'\n", &c);
    char host[256], want[300];
    cr_assert_eq(gethostname(host, sizeof host), 0);
    snprintf(want, sizeof want, "http://%s:8080", host);
    cr_assert_str_eq(c.proxy_advertise_url, want, "0.0.0.0 becomes the host name");
    cr_assert_eq(c.nproxy_passthrough, 1, "one pattern without a list");
    cr_assert_str_eq(c.proxy_passthrough[0], "*.css");
    config_free(&c);
}

Test(config, proxy_every_key)
{
    struct config c;

    cft_load_ok("lease:\n  primary-url: http://db1:20202\n"
                "proxy:\n"
                "  addr: 127.0.0.1:8080\n"
                "  target: '[::1]:8081'\n"
                "  db: app.db\n"
                "  passthrough: [/static/*, '*.js']\n"
                "  max-lag-wait: 250ms\n"
                "  header-timeout: 3s\n"
                "  max-conns: 17\n"
                "  advertise-url: http://db2.internal:8080/\n"
                "  primary-url: http://db1.internal:8080\n",
                &c);
    cr_assert_eq(c.lease_candidate, 0);
    cr_assert_str_eq(c.proxy_target, "[::1]:8081");
    cr_assert_eq(c.nproxy_passthrough, 2);
    cr_assert_str_eq(c.proxy_passthrough[0], "/static/*");
    cr_assert_str_eq(c.proxy_passthrough[1], "*.js");
    cr_assert_eq(c.proxy_max_lag_wait_us, 250000);
    cr_assert_eq(c.proxy_header_timeout_us, 3000000);
    cr_assert_eq(c.proxy_max_conns, 17);
    cr_assert_str_eq(c.proxy_advertise_url, "http://db2.internal:8080", "trailing slash dropped");
    cr_assert_str_eq(c.proxy_primary_url, "http://db1.internal:8080");
    config_free(&c);
    cr_assert_null(c.proxy_passthrough);
    cr_assert_eq(c.nproxy_passthrough, 0);
}

Test(config, proxy_errors_name_the_key)
{
    const char *base = "proxy:\n  addr: 127.0.0.1:8080\n  target: 127.0.0.1:8081\n  db: app.db\n";
    char text[512];

    cft_load_err("proxy:\n  target: 127.0.0.1:8081\n  db: app.db\n", 2, 3, "proxy.addr: required key is missing",
                 NULL);
    cft_load_err("proxy:\n  addr: 127.0.0.1:8080\n  db: app.db\n", 2, 3, "proxy.target: required key is missing",
                 NULL);
    cft_load_err("proxy:\n  addr: 127.0.0.1:8080\n  target: 127.0.0.1:8081\n", 2, 3,
                 "proxy.db: required key is missing", NULL);
    cft_load_err("proxy:\n  addr: 8080\n  target: 127.0.0.1:8081\n  db: app.db\n", 2, 9, "proxy.addr: bad address",
                 NULL);
    cft_load_err("proxy:\n  addr: 127.0.0.1:8080\n  target: https://app:8081\n  db: app.db\n", 3, 11,
                 "proxy.target: bad address", "https is not supported");
    cft_load_err("proxy:\n  addr: 127.0.0.1:8080\n  target: app\n  db: app.db\n", 3, 11, "proxy.target: bad address",
                 "missing port");
    cft_load_err("proxy:\n  addr: 127.0.0.1:8080\n  target: http://app:8081/x\n  db: app.db\n", 3, 11,
                 "proxy.target: bad address", "no path");
    cft_load_err("proxy:\n  addr: 127.0.0.1:8080\n  target: 127.0.0.1:8081\n  db: /abs.db\n", 4, 7,
                 "proxy.db: bad database name", NULL);
    snprintf(text, sizeof text, "%s  passthrough: static/*\n", base);
    cft_load_err(text, 5, 16, "proxy.passthrough: pattern \"static/*\" can never match", NULL);
    snprintf(text, sizeof text, "%s  passthrough: [/a, '']\n", base);
    cft_load_err(text, 5, 21, "proxy.passthrough[1]: empty pattern", NULL);
    snprintf(text, sizeof text, "%s  max-lag-wait: 2m\n", base);
    cft_load_err(text, 5, 17, "proxy.max-lag-wait: max-lag-wait must be at most 1m", NULL);
    snprintf(text, sizeof text, "%s  max-lag-wait: soon\n", base);
    cft_load_err(text, 5, 17, "proxy.max-lag-wait: bad duration", NULL);
    snprintf(text, sizeof text, "%s  header-timeout: 0s\n", base);
    cft_load_err(text, 5, 19, "proxy.header-timeout:", NULL);
    snprintf(text, sizeof text, "%s  max-conns: 0\n", base);
    cft_load_err(text, 5, 14, "proxy.max-conns: expected a number from 1 to 100000", NULL);
    snprintf(text, sizeof text, "%s  advertise-url: https://db1:8080\n", base);
    cft_load_err(text, 5, 18, "proxy.advertise-url: unsupported URL", "plain HTTP");
    snprintf(text, sizeof text, "%s  primary-url: http://db1:8080/p\n", base);
    cft_load_err(text, 5, 16, "proxy.primary-url: bad URL", "no path");
    snprintf(text, sizeof text, "%s  port: 1\n", base);
    cft_load_err(text, 5, 3, "proxy.port: unknown key", NULL);
    snprintf(text, sizeof text, "lease:\n  candidate: false\n  primary-url: http://db1:20202\n%s", base);
    cft_load_err(text, 5, 3, "proxy.primary-url: required on a replica", "the primary's proxy");
}

/* Every key the sample documents (commented out) loads, with the values shown. */
Test(config, proxy_sample_section_loads)
{
    FILE *f = fopen("config.yml.sample", "r");
    char line[512], text[8192] = "lease:\n  candidate: false\n  primary-url: http://db1:20202\n";
    size_t n = strlen(text);
    int in = 0;
    struct config c;

    if (!f)
        cr_skip_test("run from the repository root to check config.yml.sample");
    while (fgets(line, sizeof line, f)) {
        if (strcmp(line, "#proxy:\n") == 0)
            in = 1;
        else if (in && line[0] != '#')
            break;
        if (in)
            n += (size_t)snprintf(text + n, sizeof text - n, "%s", line + 1);
    }
    fclose(f);
    cr_assert(in, "config.yml.sample has no #proxy: section");
    cft_load_ok(text, &c);
    cr_assert_str_eq(c.proxy_addr, "0.0.0.0:8080");
    cr_assert_str_eq(c.proxy_target, "127.0.0.1:8081");
    cr_assert_str_eq(c.proxy_db, "app.db");
    cr_assert_eq(c.nproxy_passthrough, 3);
    cr_assert_eq(c.proxy_max_lag_wait_us, 5LL * 1000000, "the sample shows the default");
    cr_assert_eq(c.proxy_header_timeout_us, 10LL * 1000000, "the sample shows the default");
    cr_assert_eq(c.proxy_max_conns, 256, "the sample shows the default");
    cr_assert_str_eq(c.proxy_advertise_url, "http://db1.internal:8080");
    cr_assert_str_eq(c.proxy_primary_url, "http://db1.internal:8080");
    config_free(&c);
}
