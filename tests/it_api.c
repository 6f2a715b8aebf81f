/*
 * it_api.c -- who may use the daemon's HTTP API, and that no client can
 * starve the others.
 *
 *   owner_only        the admin socket data.dir/admin.sock is 0600: uid
 *                     65534 can neither connect to it (curl, setpriv) nor
 *                     export with the CLI; POST /v1/image on http.addr is
 *                     403; /status stays readable there and through the CLI.
 *   image_released    an image exists while its request holds the
 *                     connection and is deleted when the client hangs up.
 *   image_space       http.image-space bounds the images held together (507
 *                     with a message naming the key), and room comes back
 *                     when a client hangs up.
 *   health            /health on both listeners.
 *   slow_and_idle     70 clients trickling header lines and 200 idle ones
 *                     (from other loopback addresses) do not keep /status
 *                     from answering within seconds; the tricklers are
 *                     dropped after http.header-timeout; idle floods from the
 *                     CLI's own address do not reach the admin socket.
 *   images_vs_status  four image requests waiting on an open write
 *                     transaction do not stall /status.
 *   cli_timed_out     a daemon that accepts but never answers is reported
 *                     as "timed out", nothing listening as "no daemon answers".
 *   bad_keys          http.* keys are checked at start-up.
 *   s3_credentials    the "no credentials" message names the keys as the
 *                     parser spells them.
 *
 * Time bounds are generous (seconds where the fix answers in milliseconds
 * and the bug took 20-30 s); nothing asserts on a fixed sleep.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "base/http.h"
#include "lib/lvtest.h"

TestSuite(api, .fini = lvt_fini, .timeout = 180);

#define NOBODY "setpriv --reuid=65534 --regid=65534 --clear-groups"

/* A node whose http: section also has keys ("  key: value" lines); started unless start is 0. */
static struct lvnode *http_node(const char *keys, int start)
{
    struct lvnode *n = lvnode_new(NULL);
    char h[512];
    snprintf(h, sizeof h, "%s\n%s", n->http, keys);
    if (h[strlen(h) - 1] == '\n')
        h[strlen(h) - 1] = '\0';
    lvconf_write(n->config, n->mnt, n->data, h, NULL, NULL);
    if (start)
        lvnode_start(n);
    return n;
}

static void sock_path(const struct lvnode *n, char *buf, size_t len)
{
    snprintf(buf, len, "%s/admin.sock", n->data);
}

/* Let uid 65534 reach the node's files, so only the socket's own mode protects it. */
static void open_up(const struct lvnode *n)
{
    char cfg[400];
    cr_assert_eq(chmod(n->dir, 0755), 0);
    cr_assert_eq(chmod(n->data, 0755), 0);
    snprintf(cfg, sizeof cfg, "%s", n->config);
    cr_assert_eq(chmod(cfg, 0644), 0);
}

/* A database of about kib KiB on n's mount. */
static void make_db(const struct lvnode *n, const char *name, int kib)
{
    char sql[256], *db = lvnode_path(n, name);
    snprintf(sql, sizeof sql,
             "CREATE TABLE t(v); INSERT INTO t SELECT randomblob(1000) FROM "
             "(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < %d) SELECT i FROM c);",
             kib);
    sql_exec(db, sql, 0);
    free(db);
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

Test(api, owner_only)
{
    struct lvnode *n = lvnode_started(NULL);
    char sock[400], *out = NULL;
    struct stat st;

    make_db(n, "app.db", 50);
    open_up(n);
    sock_path(n, sock, sizeof sock);
    cr_assert_eq(stat(sock, &st), 0, "no admin socket %s", sock);
    cr_assert(S_ISSOCK(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0600, "admin socket mode %o", st.st_mode & 0777);

    /* Another user: no connection on the admin socket at all. */
    cr_assert_eq(run_cmd(&out, NOBODY " curl -s -o /dev/null -w '%%{http_code}' --unix-socket '%s' -X POST "
                               "'http://localhost/v1/image?db=app.db'", sock), 7, "curl as uid 65534: %s", out);
    free(out);
    /* ... and no image on http.addr. */
    cr_assert_eq(run_cmd(&out, NOBODY " curl -s -w ' %%{http_code}' -X POST 'http://%s/v1/image?db=app.db'", n->http),
                 0);
    cr_assert(strstr(out, " 403") && strstr(out, "admin socket"), "POST on http.addr: %s", out);
    free(out);
    cr_assert_eq(run_cmd(&out, NOBODY " %s export -c '%s' --db app.db -o /tmp/lvit-nobody-%d.db 2>&1", litevault_bin(),
                         n->config, (int)getpid()), 1);
    cr_assert(strstr(out, "only the daemon's user"), "export as uid 65534: %s", out);
    free(out);
    /* Nothing was written into data.dir/tmp. */
    run_cmd(&out, "ls -A '%s/tmp'", n->data);
    cr_assert_str_eq(out, "");
    free(out);
    /* /status stays readable as configured (http.public: true by default). */
    cr_assert_eq(run_cmd(&out, NOBODY " %s status -c '%s' 2>&1", litevault_bin(), n->config), 0, "%s", out);
    cr_assert(strstr(out, "app.db"), "%s", out);
    free(out);
    /* The owner exports through the socket. */
    char dst[400];
    snprintf(dst, sizeof dst, "%s/out.db", n->dir);
    cr_assert_eq(lvnode_cli(n, &out, "export", "--db app.db -o '%s'", dst), 0, "%s", out);
    free(out);
    cr_assert_eq(sql_int(dst, "SELECT count(*) FROM t"), 50);
    lvnode_stop(n);
    cr_assert(!file_exists(sock), "the admin socket outlived the daemon");
}

Test(api, public_false_serves_only_the_socket)
{
    struct lvnode *n = http_node("  public: false", 1);
    char sock[400], *out = NULL;
    long st = 0;

    sock_path(n, sock, sizeof sock);
    cr_assert_null(lvnode_http_get(n, "/status", &st), "http.addr answered with http.public: false");
    cr_assert_eq(lvnode_cli(n, &out, "status", " "), 0, "%s", out);
    free(out);
    lvnode_stop(n);
}

Test(api, image_released)
{
    struct lvnode *n = lvnode_started(NULL);
    char sock[400], *body = NULL;
    long st = 0;
    int conn = -1;

    make_db(n, "app.db", 100);
    sock_path(n, sock, sizeof sock);
    cr_assert_eq(http_post_hold(sock, "/v1/image?db=app.db", 60, &body, &st, &conn), 0);
    cr_assert_eq(st, 200, "%s", body);
    json_t *j = json_loads(body, JSON_DISABLE_EOF_CHECK, NULL);
    const char *path = json_string_value(json_object_get(j, "path"));
    cr_assert(path && file_exists(path), "no image while held: %s", body);
    sleep_ms(300);
    cr_assert(file_exists(path), "the image went away while its request held it");
    close(conn);
    cr_assert(WAIT_FOR(!file_exists(path), 10000), "image %s still there after the client hung up", path);
    json_decref(j);
    free(body);
    /* A failed request leaves nothing either. */
    cr_assert_eq(http_post_hold(sock, "/v1/image?db=nope.db", 60, &body, &st, &conn), 0);
    cr_assert_eq(st, 404);
    cr_assert_eq(conn, -1);
    free(body);
    char *ls = NULL;
    run_cmd(&ls, "ls -A '%s/tmp'", n->data);
    cr_assert_str_eq(ls, "");
    free(ls);
    lvnode_stop(n);
}

Test(api, image_space)
{
    struct lvnode *n = http_node("  image-space: 1MiB", 1);
    char sock[400], *b1 = NULL, *b2 = NULL, *out = NULL;
    long s1 = 0, s2 = 0;
    int c1 = -1, c2 = -1;

    make_db(n, "app.db", 600); /* ~600 KiB: one fits, two do not */
    sock_path(n, sock, sizeof sock);
    cr_assert_eq(http_post_hold(sock, "/v1/image?db=app.db", 60, &b1, &s1, &c1), 0);
    cr_assert_eq(s1, 200, "%s", b1);
    cr_assert_eq(http_post_hold(sock, "/v1/image?db=app.db", 60, &b2, &s2, &c2), 0);
    cr_assert_eq(s2, 507, "second image: %ld %s", s2, b2);
    cr_assert(strstr(b2, "http.image-space"), "%s", b2);
    free(b2);
    cr_assert_eq(lvnode_cli(n, &out, "export", "--db app.db -o '%s/x.db'", n->dir), 1);
    cr_assert(strstr(out, "http.image-space"), "export while full: %s", out);
    free(out);
    close(c1);
    free(b1);
    /* The room comes back when the first client hangs up. */
    cr_assert(WAIT_FOR(lvnode_cli(n, NULL, "export", "--db app.db -o '%s/x.db'", n->dir) == 0, 10000));
    lvnode_stop(n);
}

Test(api, health)
{
    struct lvnode *n = lvnode_started(NULL);
    char sock[400], *body = NULL;
    size_t len = 0;
    long st = 0;

    body = lvnode_http_get(n, "/health", &st);
    cr_assert_eq(st, 200, "%s", body ? body : "");
    cr_assert(strstr(body, "ok"));
    free(body);
    sock_path(n, sock, sizeof sock);
    cr_assert_eq(http_get(sock, "/health", &body, &len, &st), 0);
    cr_assert_eq(st, 200);
    free(body);
    lvnode_stop(n);
}

/* A TCP connection to addr from the loopback address src (127.0.0.x), or -1. */
static int connect_from(const char *src, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET}, b = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    inet_pton(AF_INET, src, &a.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &b.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || connect(fd, (struct sockaddr *)&b, sizeof b) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Clients that send a request line, then one header line per second, forever. */
struct trickle {
    int fds[70];
    int n;
    volatile int stop;
    pthread_t th;
};

static void *trickle_main(void *arg)
{
    struct trickle *t = arg;
    for (int round = 0; !t->stop; round++) {
        for (int i = 0; i < t->n; i++) {
            const char *line = round == 0 ? "GET /status HTTP/1.1\r\nHost: x\r\n" : "X-Slow: y\r\n";
            if (t->fds[i] >= 0)
                send(t->fds[i], line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        for (int k = 0; k < 10 && !t->stop; k++)
            sleep_ms(100);
    }
    return NULL;
}

/* Has the daemon closed fd (EOF or reset)? */
static int closed_by_peer(int fd)
{
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* GET /status from n's http.addr answered 200 within ms? */
static int status_within(const struct lvnode *n, int64_t ms)
{
    long st = 0;
    int64_t t0 = now_ms();
    char *b = lvnode_http_get(n, "/status", &st);
    int64_t dt = now_ms() - t0;
    free(b);
    if (st != 200 || dt > ms)
        cr_log_warn("GET /status: HTTP %ld after %lld ms", st, (long long)dt);
    return st == 200 && dt <= ms;
}

Test(api, slow_and_idle)
{
    struct lvnode *n = http_node("  header-timeout: 3s", 1);
    static struct trickle t;
    int idle[200], own[200];
    char *out = NULL;

    make_db(n, "app.db", 10);
    t.n = 70;
    for (int i = 0; i < t.n; i++)
        t.fds[i] = connect_from("127.0.0.2", n->port);
    cr_assert_eq(pthread_create(&t.th, NULL, trickle_main, &t), 0);
    for (int i = 0; i < 200; i++)
        idle[i] = connect_from("127.0.0.3", n->port);
    sleep_ms(500); /* let the daemon accept them (not an assertion bound) */
    for (int k = 0; k < 3; k++)
        cr_assert(status_within(n, 5000), "/status starved by slow and idle clients");
    int64_t t0 = now_ms();
    cr_assert_eq(lvnode_cli(n, &out, "status", " "), 0, "%s", out);
    cr_assert(now_ms() - t0 < 8000);
    free(out);
    /* The header timeout drops tricklers however regularly they send. */
    int first = -1;
    for (int i = 0; i < t.n && first < 0; i++)
        if (t.fds[i] >= 0 && !closed_by_peer(t.fds[i]))
            first = i;
    cr_assert_geq(first, 0, "no trickler is connected");
    cr_assert(WAIT_FOR(closed_by_peer(t.fds[first]), 20000), "a trickling client outlived http.header-timeout");
    t.stop = 1;
    pthread_join(t.th, NULL);
    for (int i = 0; i < t.n; i++)
        if (t.fds[i] >= 0)
            close(t.fds[i]);
    for (int i = 0; i < 200; i++)
        if (idle[i] >= 0)
            close(idle[i]);

    /* 200 idle connections from the CLI's own address: the CLI uses the admin socket. */
    for (int i = 0; i < 200; i++)
        own[i] = connect_from("127.0.0.1", n->port);
    t0 = now_ms();
    cr_assert_eq(lvnode_cli(n, &out, "status", " "), 0, "%s", out);
    cr_assert(now_ms() - t0 < 8000, "litevault status took %lld ms", (long long)(now_ms() - t0));
    free(out);
    for (int i = 0; i < 200; i++)
        if (own[i] >= 0)
            close(own[i]);
    lvnode_stop(n);
}

struct holder {
    const char *sock;
    long st;
    int conn;
    pthread_t th;
};

static void *holder_main(void *arg)
{
    struct holder *h = arg;
    char *b = NULL;
    if (http_post_hold(h->sock, "/v1/image?db=app.db", 120, &b, &h->st, &h->conn) != 0)
        h->st = -1;
    free(b);
    return NULL;
}

Test(api, images_vs_status)
{
    struct lvnode *n = lvnode_started(NULL);
    char sock[400], *out = NULL;
    struct holder h[4];

    make_db(n, "app.db", 50);
    sock_path(n, sock, sizeof sock);
    char *db = lvnode_path(n, "app.db");
    sqlite3 *w = sql_open(db);
    sqlh_exec(w, "BEGIN IMMEDIATE; INSERT INTO t VALUES (randomblob(5000));");
    for (int i = 0; i < 4; i++) {
        h[i] = (struct holder){.sock = sock, .conn = -1};
        cr_assert_eq(pthread_create(&h[i].th, NULL, holder_main, &h[i]), 0);
    }
    sleep_ms(500); /* the image requests are waiting for the transaction (not an assertion bound) */
    for (int k = 0; k < 3; k++)
        cr_assert(status_within(n, 5000), "/status stalled by image requests");
    int64_t t0 = now_ms();
    cr_assert_eq(lvnode_cli(n, &out, "status", " "), 0, "%s", out);
    cr_assert(now_ms() - t0 < 8000, "litevault status took %lld ms", (long long)(now_ms() - t0));
    free(out);
    sqlh_exec(w, "COMMIT;");
    sqlite3_close(w);
    for (int i = 0; i < 4; i++) {
        pthread_join(h[i].th, NULL);
        cr_assert_eq(h[i].st, 200, "image %d: %ld", i, h[i].st);
        close(h[i].conn);
    }
    free(db);
    lvnode_stop(n);
}

/* A listener that accepts connections (the kernel's backlog) and never answers. */
static int mute_unix(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 16) == 0);
    return fd;
}

Test(api, cli_timed_out)
{
    struct lvnode *n = lvnode_new(NULL); /* never started */
    char sock[400], *out = NULL;

    cr_assert_eq(lvnode_cli(n, &out, "status", " "), 1);
    cr_assert(strstr(out, "no daemon answers"), "%s", out);
    free(out);
    sock_path(n, sock, sizeof sock);
    cr_assert_eq(run_cmd(NULL, "mkdir -p '%s'", n->data), 0);
    int fd = mute_unix(sock);
    cr_assert_eq(lvnode_cli(n, &out, "status", " "), 1);
    cr_assert(strstr(out, "timed out"), "%s", out);
    cr_assert_null(strstr(out, "no daemon answers"), "%s", out);
    free(out);
    close(fd);
    unlink(sock);
}

Test(api, bad_keys)
{
    struct lvnode *n = http_node("  image-space: 1KiB", 0);
    cr_assert_eq(lvnode_start_expect_fail(n), 2);
    cr_assert(lvnode_log_contains(n, "http.image-space"));
    n = http_node("  header-timeout: 0s", 0);
    cr_assert_eq(lvnode_start_expect_fail(n), 2);
    cr_assert(lvnode_log_contains(n, "http.header-timeout"));
    n = http_node("  max-conns-per-address: lots", 0);
    cr_assert_eq(lvnode_start_expect_fail(n), 2);
    cr_assert(lvnode_log_contains(n, "http.max-conns-per-address"));
}

Test(api, s3_credentials_message)
{
    struct lvnode *n = lvnode_new("archive:\n  - url: s3://bucket/p?endpoint=http://127.0.0.1:9&region=us-east-1\n");
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    cr_assert_neq(lvnode_start_expect_fail(n), 0);
    cr_assert(lvnode_log_contains(n, "access-key-id and secret-access-key"), "no credentials message");
    cr_assert(!lvnode_log_contains(n, "access_key_id"));
}
