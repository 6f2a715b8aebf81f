/*
 * it_auth.c -- who may use http.addr: the bearer token, public and private
 * routes, the refusal of an open non-loopback address, the token file,
 * HTTPS, and that the token never shows.
 *
 *   token_guards_private_routes  with http.token: /status, /metrics and
 *                     /health answer without it (http.public: true); POST
 *                     /v1/image (private) is 401 with WWW-Authenticate:
 *                     Bearer without it or with a wrong one, and reaches its
 *                     handler (403: admin socket only) with it.
 *   public_false      http.public: false with a token: every route on
 *                     http.addr needs it; the CLI still works, through the
 *                     admin socket for the owner and through http.addr with
 *                     the token for another user; without a token nothing
 *                     listens on http.addr.
 *   open_address      0.0.0.0 without a token is refused at start-up with a
 *                     message naming the keys; with a token, or with
 *                     http.allow-no-token: true, it starts.
 *   token_file        http.token-file works like http.token; a missing file
 *                     or both keys are refused at start-up.
 *   token_never_shown the token is in no reply (/status, /metrics, 401s),
 *                     no CLI output and no line of the daemon's log, at
 *                     debug level.
 *   tls               HTTPS on http.addr with a throwaway certificate
 *                     (openssl): curl --cacert and the project's client get
 *                     through, plain HTTP does not; a key that does not
 *                     match the certificate is refused at start-up.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/http.h"
#include "base/lv.h"
#include "lib/lvtest.h"

TestSuite(auth, .fini = lvt_fini, .timeout = 180);

#define TOKEN "7d3f5e0c9a1b2c4d6e8f00112233445566778899aabbccddeeff0011223344ab"
#define NOBODY "setpriv --reuid=65534 --regid=65534 --clear-groups"

/* Write n's config: http.addr addr (NULL: n->http) followed by http_keys
 * ("  key: value\n" lines, may be NULL), log level, then extra YAML. */
static void auth_conf(struct lvnode *n, const char *addr, const char *http_keys, const char *level, const char *extra)
{
    FILE *f = fopen(n->config, "w");

    cr_assert_not_null(f);
    fprintf(f, "fuse:\n  dir: %s\ndata:\n  dir: %s\nhttp:\n  addr: %s\n%slog:\n  level: %s\n  format: text\n%s",
            n->mnt, n->data, addr ? addr : n->http, http_keys ? http_keys : "", level ? level : "info",
            extra ? extra : "");
    cr_assert_eq(fclose(f), 0);
}

/* A node with http_keys in its http: section, started unless start is 0. */
static struct lvnode *auth_node(const char *http_keys, int start)
{
    struct lvnode *n = lvnode_new(NULL);

    auth_conf(n, NULL, http_keys, NULL, NULL);
    if (start)
        lvnode_start(n);
    return n;
}

/* HTTP status of `curl ARGS` (run as the test user), "000" if none, into code (>= 8 bytes). */
static void curl_status(char *code, size_t len, const char *args)
{
    char *out = NULL;

    run_cmd(&out, "curl -s -o /dev/null -w '%%{http_code}' --max-time 10 %s", args);
    snprintf(code, len, "%s", out ? out : "");
    free(out);
}

/* The response head and body of `curl -i ARGS` (malloc'ed). */
static char *curl_full(const char *args)
{
    char *out = NULL;

    run_cmd(&out, "curl -s -i --max-time 10 %s", args);
    return out ? out : strdup("");
}

/* app.db with one row on n's mount. */
static void make_db(const struct lvnode *n)
{
    char *p = lvnode_path(n, "app.db");

    sql_exec(p, "CREATE TABLE t(x); INSERT INTO t VALUES (1);", 0);
    free(p);
}

/* Let uid 65534 read the node's files (config, directories). */
static void open_up(const struct lvnode *n)
{
    cr_assert_eq(chmod(n->dir, 0755), 0);
    cr_assert_eq(chmod(n->data, 0755), 0);
    cr_assert_eq(chmod(n->config, 0644), 0);
}

Test(auth, token_guards_private_routes)
{
    struct lvnode *n = auth_node("  token: " TOKEN "\n", 1);
    char args[512], code[16], *out;
    long st = 0;

    /* Public routes: no token needed (http.public: true, the default). */
    const char *pub[] = {"/health", "/status", "/metrics"};
    for (size_t i = 0; i < LV_ARRAY_LEN(pub); i++) {
        char *b = lvnode_http_get(n, pub[i], &st);
        cr_assert_eq(st, 200, "GET %s without the token: %ld %s", pub[i], st, b ? b : "");
        free(b);
    }
    /* A private route: 401 with WWW-Authenticate: Bearer, without or with a wrong token. */
    snprintf(args, sizeof args, "-X POST 'http://%s/v1/image?db=app.db'", n->http);
    out = curl_full(args);
    cr_assert(strstr(out, " 401 "), "no token: %s", out);
    cr_assert(strstr(out, "WWW-Authenticate: Bearer"), "no WWW-Authenticate: %s", out);
    cr_assert(strstr(out, "Authorization: Bearer"), "the 401 does not say what to send: %s", out);
    free(out);
    snprintf(args, sizeof args, "-H 'Authorization: Bearer %.63s0' -X POST 'http://%s/v1/image?db=app.db'", TOKEN,
             n->http);
    curl_status(code, sizeof code, args);
    cr_assert_str_eq(code, "401", "a wrong token");
    snprintf(args, sizeof args, "-H 'Authorization: Bearer %s' -X POST 'http://%s/v1/image?db=app.db'", TOKEN, n->http);
    out = curl_full(args);
    cr_assert(strstr(out, " 403 ") && strstr(out, "admin socket"), "the right token reaches the handler: %s", out);
    free(out);
    cr_assert(WAIT_FOR(lvnode_log_contains(n, "refused POST /v1/image from 127.0.0.1"), 5000),
              "the 401 is not logged with the client's address");
    cr_assert(!lvnode_log_contains(n, TOKEN), "the token is in the log");
    lvnode_stop(n);
}

Test(auth, public_false)
{
    struct lvnode *n = auth_node("  public: false\n  token: " TOKEN "\n", 1);
    struct http_client_opts o = {.token = TOKEN};
    char *body = NULL, *out = NULL;
    long st = 0;

    make_db(n);
    const char *paths[] = {"/health", "/status", "/metrics"};
    for (size_t i = 0; i < LV_ARRAY_LEN(paths); i++) {
        body = lvnode_http_get(n, paths[i], &st);
        cr_assert_eq(st, 401, "GET %s without the token: %ld %s", paths[i], st, body ? body : "");
        free(body);
        cr_assert_eq(http_get_ex(n->http, paths[i], &o, &body, NULL, &st), 0);
        cr_assert_eq(st, 200, "GET %s with the token: %ld %s", paths[i], st, body);
        free(body);
    }
    /* The owner's CLI uses the admin socket (no token there). */
    cr_assert_eq(lvnode_cli(n, &out, "status", "%s", ""), 0, "%s", out);
    cr_assert(strstr(out, "app.db"), "%s", out);
    free(out);
    /* Another user's CLI goes to http.addr, with the token from the configuration. */
    open_up(n);
    cr_assert_eq(run_cmd(&out, NOBODY " %s status -c '%s' 2>&1", litevault_bin(), n->config), 0, "%s", out);
    cr_assert(strstr(out, "app.db"), "%s", out);
    free(out);
    lvnode_stop(n);

    /* No token: nothing listens on http.addr at all. */
    n = auth_node("  public: false\n", 1);
    body = lvnode_http_get(n, "/health", &st);
    cr_assert_null(body, "http.addr answered %ld", st);
    cr_assert_eq(lvnode_cli(n, &out, "status", "%s", ""), 0, "%s", out);
    free(out);
    lvnode_stop(n);
}

Test(auth, open_address)
{
    struct lvnode *n = lvnode_new(NULL);
    char addr[64], code[16], args[256];

    snprintf(addr, sizeof addr, "0.0.0.0:%d", n->port);
    auth_conf(n, addr, NULL, NULL, NULL);
    cr_assert_eq(lvnode_start_expect_fail(n), 2, "an open address without a token started");
    cr_assert(lvnode_log_contains(n, "http.addr: 0.0.0.0:"), "the message does not name the key");
    cr_assert(lvnode_log_contains(n, "is not a loopback address and no http.token is set"));
    cr_assert(lvnode_log_contains(n, "set http.token (or http.token-file), or set http.allow-no-token: true"));
    cr_assert(!path_is_mounted(n->mnt));

    /* With a token it starts, and the private routes need it. */
    auth_conf(n, addr, "  token: " TOKEN "\n", NULL, NULL);
    lvnode_start(n);
    snprintf(args, sizeof args, "'http://127.0.0.1:%d/health'", n->port);
    curl_status(code, sizeof code, args);
    cr_assert_str_eq(code, "200");
    snprintf(args, sizeof args, "-X POST 'http://127.0.0.1:%d/v1/image?db=x'", n->port);
    curl_status(code, sizeof code, args);
    cr_assert_str_eq(code, "401");
    lvnode_stop(n);

    /* http.allow-no-token: true serves it open, as asked. */
    auth_conf(n, addr, "  allow-no-token: true\n", NULL, NULL);
    lvnode_start(n);
    snprintf(args, sizeof args, "-X POST 'http://127.0.0.1:%d/v1/image?db=x'", n->port);
    curl_status(code, sizeof code, args);
    cr_assert_str_eq(code, "403", "no token configured: the handler answers");
    lvnode_stop(n);
}

Test(auth, token_file)
{
    struct lvnode *n = lvnode_new(NULL);
    char tok[400], keys[512], args[512], code[16];
    FILE *f;

    snprintf(tok, sizeof tok, "%s/token", n->dir);
    f = fopen(tok, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", TOKEN);
    fclose(f);
    cr_assert_eq(chmod(tok, 0600), 0);
    auth_conf(n, NULL, "  token-file: token\n", NULL, NULL); /* relative to the config's directory */
    lvnode_start(n);
    snprintf(args, sizeof args, "-X POST 'http://%s/v1/image?db=x'", n->http);
    curl_status(code, sizeof code, args);
    cr_assert_str_eq(code, "401");
    snprintf(args, sizeof args, "-H 'Authorization: Bearer %s' -X POST 'http://%s/v1/image?db=x'", TOKEN, n->http);
    curl_status(code, sizeof code, args);
    cr_assert_str_eq(code, "403", "the file's token, without its newline");
    lvnode_stop(n);

    /* A missing file, or both keys, stop the start with the key named. */
    auth_conf(n, NULL, "  token-file: nope\n", NULL, NULL);
    cr_assert_eq(lvnode_start_expect_fail(n), 2);
    snprintf(keys, sizeof keys, "http.token-file: cannot use %s/nope", n->dir);
    cr_assert(lvnode_log_contains(n, keys), "the message does not name the file");
    auth_conf(n, NULL, "  token: " TOKEN "\n  token-file: token\n", NULL, NULL);
    cr_assert_eq(lvnode_start_expect_fail(n), 2);
    cr_assert(lvnode_log_contains(n, "set http.token or http.token-file, not both"));
    cr_assert(!lvnode_log_contains(n, TOKEN), "the token is in the log");
}

Test(auth, token_never_shown)
{
    struct lvnode *n = lvnode_new(NULL);
    char args[512], code[16], *out = NULL, *body;
    struct http_client_opts o = {.token = TOKEN};
    long st = 0;

    auth_conf(n, NULL, "  token: " TOKEN "\n", "debug", NULL);
    lvnode_start(n);
    make_db(n);
    const char *paths[] = {"/status", "/metrics", "/health"};
    for (size_t i = 0; i < LV_ARRAY_LEN(paths); i++) {
        cr_assert_eq(http_get_ex(n->http, paths[i], &o, &body, NULL, &st), 0);
        cr_assert_eq(st, 200);
        cr_assert_null(strstr(body, TOKEN), "%s shows the token", paths[i]);
        cr_assert_null(strstr(body, "Bearer"), "%s shows an Authorization header", paths[i]);
        free(body);
    }
    /* Refused requests: wrong tokens (one a prefix of the right one), none. */
    snprintf(args, sizeof args, "-H 'Authorization: Bearer %.40s' -X POST 'http://%s/v1/image?db=x'", TOKEN, n->http);
    curl_status(code, sizeof code, args);
    cr_assert_str_eq(code, "401");
    out = curl_full(args);
    cr_assert_null(strstr(out, "7d3f5e0c9a1b"), "a 401 shows the token: %s", out);
    free(out);
    snprintf(args, sizeof args, "-H 'Authorization: Bearer %s' -X POST 'http://%s/v1/image?db=x'", TOKEN, n->http);
    curl_status(code, sizeof code, args);
    cr_assert_str_eq(code, "403");
    cr_assert_eq(lvnode_cli(n, &out, "status", "--json"), 0);
    cr_assert_null(strstr(out, TOKEN), "status --json shows the token");
    free(out);
    lvnode_stop(n);
    char *log = lvnode_log_text(n);
    cr_assert(strstr(log, "DEBUG"), "the daemon did not log at debug level");
    cr_assert_null(strstr(log, "7d3f5e0c9a1b"), "the daemon's log shows (part of) the token");
    free(log);
}

/* A throwaway self-signed certificate for 127.0.0.1 in dir (cert.pem,
 * key.pem; other.pem: a key that matches nothing).  0, or -1 without openssl. */
static int make_cert(const char *dir)
{
    char *out = NULL;
    int rc;

    if (run_cmd(NULL, "command -v openssl >/dev/null 2>&1") != 0)
        return -1;
    rc = run_cmd(&out, "cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
                       "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout key.pem -out cert.pem 2>&1 && "
                       "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out other.pem 2>&1", dir);
    cr_assert_eq(rc, 0, "openssl: %s", out);
    free(out);
    return 0;
}

Test(auth, tls)
{
    struct lvnode *n = lvnode_new(NULL);
    char args[1024], code[16], cert[400], *out = NULL, *body = NULL;
    long st = 0;

    if (!http_tls_supported())
        cr_skip_test("this libmicrohttpd has no TLS");
    if (make_cert(n->dir) != 0)
        cr_skip_test("openssl is not installed (apt-get install openssl)");
    snprintf(cert, sizeof cert, "%s/cert.pem", n->dir);
    auth_conf(n, NULL, "  token: " TOKEN "\n  tls-cert: cert.pem\n  tls-key: key.pem\n", NULL, NULL);
    lvnode_start(n);
    cr_assert(lvnode_log_contains(n, "(HTTPS)"), "the listening line does not say HTTPS");
    snprintf(args, sizeof args, "--cacert '%s' 'https://%s/health'", cert, n->http);
    curl_status(code, sizeof code, args);
    cr_assert_str_eq(code, "200", "GET /health over HTTPS");
    snprintf(args, sizeof args, "--cacert '%s' -X POST 'https://%s/v1/image?db=x'", cert, n->http);
    curl_status(code, sizeof code, args);
    cr_assert_str_eq(code, "401");
    snprintf(args, sizeof args, "--cacert '%s' -H 'Authorization: Bearer %s' -X POST 'https://%s/v1/image?db=x'", cert,
             TOKEN, n->http);
    curl_status(code, sizeof code, args);
    cr_assert_str_eq(code, "403");
    /* Without the CA, or in plain HTTP: no answer. */
    snprintf(args, sizeof args, "'https://%s/health'", n->http);
    curl_status(code, sizeof code, args);
    cr_assert_str_eq(code, "000", "an untrusted certificate was accepted");
    snprintf(args, sizeof args, "'http://%s/health'", n->http);
    curl_status(code, sizeof code, args);
    cr_assert_neq(strcmp(code, "200"), 0, "plain HTTP answered on an HTTPS address");
    /* The project's client, as a replica uses it. */
    struct http_client_opts o = {.token = TOKEN, .https = 1, .ca_file = cert};
    cr_assert_eq(http_get_ex(n->http, "/status", &o, &body, NULL, &st), 0);
    cr_assert_eq(st, 200);
    free(body);
    /* Another user's CLI reaches http.addr over HTTPS (the self-signed certificate is its own CA). */
    open_up(n);
    cr_assert_eq(chmod(cert, 0644), 0);
    cr_assert_eq(run_cmd(&out, NOBODY " %s status -c '%s' 2>&1", litevault_bin(), n->config), 0, "%s", out);
    free(out);
    lvnode_stop(n);

    /* A key that does not match the certificate: refused at start-up, naming the keys. */
    auth_conf(n, NULL, "  token: " TOKEN "\n  tls-cert: cert.pem\n  tls-key: other.pem\n", NULL, NULL);
    cr_assert_eq(lvnode_start_expect_fail(n), 1);
    cr_assert(lvnode_log_contains(n, "cannot serve HTTPS on http.addr"), "no start-up message");
    cr_assert(lvnode_log_contains(n, "http.tls-cert and http.tls-key are not a valid, matching certificate and key"));
    /* tls-cert alone: a configuration error. */
    auth_conf(n, NULL, "  tls-cert: cert.pem\n", NULL, NULL);
    cr_assert_eq(lvnode_start_expect_fail(n), 2);
    cr_assert(lvnode_log_contains(n, "set both http.tls-cert and http.tls-key"));
}
