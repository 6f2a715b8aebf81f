/*
 * it_misc.c -- integration tests for clients, big databases and the HTTP
 * API.
 *
 *   - a database larger than 1 GiB, whose lock page (the page holding byte
 *     0x40000000) SQLite never writes: integrity_check passes and the
 *     replayed log equals the file byte for byte;
 *   - `litevault mount -- CMD`: CMD's exit code (or 128+signal) is the
 *     daemon's, and the mount is gone afterwards;
 *   - the sqlite3 shell, Python's sqlite3 module and libsqlite3 on the same
 *     databases, one after another and concurrently;
 *   - HTTP: /metrics content, /status == `status --json`, and hostile
 *     requests (garbage bytes, 10 MB POSTs, unknown paths, a huge URL) do
 *     not hurt the daemon.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/cksum.h"
#include "lib/lvtest.h"

static struct lvnode *mN; /* this test's node (registry-owned) */

TestSuite(misc, .fini = lvt_fini, .timeout = 150);

#define mounted path_is_mounted

/* ------------------------------------------------------------------ */
/* Databases larger than 1 GiB                                         */
/* ------------------------------------------------------------------ */

/* Compare two files in 1 MiB blocks: -1 equal, else the first differing
 * offset (or the shorter length). */
static long long stream_cmp(const char *a, const char *b)
{
    int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
    cr_assert_geq(fa, 0, "open %s", a);
    cr_assert_geq(fb, 0, "open %s", b);
    size_t bs = 1 << 20;
    char *x = malloc(bs), *y = malloc(bs);
    cr_assert(x && y);
    long long off = 0, res = -1;
    for (;;) {
        ssize_t ra = pread(fa, x, bs, off), rb = pread(fb, y, bs, off);
        cr_assert(ra >= 0 && rb >= 0);
        if (ra != rb || memcmp(x, y, (size_t)ra) != 0) {
            ssize_t m = ra < rb ? ra : rb, i = 0;
            while (i < m && x[i] == y[i])
                i++;
            res = off + i;
            break;
        }
        if (ra == 0)
            break;
        off += ra;
    }
    free(x);
    free(y);
    close(fa);
    close(fb);
    return res;
}

static int page_is_zero(const char *path, long long pgno, int ps)
{
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    char *buf = malloc((size_t)ps);
    ssize_t r = pread(fd, buf, (size_t)ps, (off_t)((pgno - 1) * ps));
    close(fd);
    int zero = r == ps;
    for (int i = 0; zero && i < ps; i++)
        zero = buf[i] == 0;
    free(buf);
    return zero;
}

Test(misc, database_over_1gib_lock_page)
{
    const int ps = 65536;
    const long long lockpg = 0x40000000LL / ps + 1; /* 16385 */
    mN = lvnode_started(NULL);
    char *p = lvnode_path(mN, "huge.db");
    sql_exec(p, "PRAGMA page_size=65536; PRAGMA journal_mode=DELETE; "
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);", 0);
    /* 6 transactions x 190 rows of 1 MB: every 8th row random, the rest zeros */
    for (int i = 0; i < 6; i++)
        sql_exec(p, "BEGIN; WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<190) "
                    "INSERT INTO t(v) SELECT CASE WHEN i % 8 = 0 THEN randomblob(1000000) "
                    "ELSE zeroblob(1000000) END FROM c; COMMIT;", 0);
    /* rows straddling the lock page get rewritten */
    sql_exec(p, "UPDATE t SET v = randomblob(1000000) WHERE id BETWEEN 1060 AND 1080;", 0);
    long long pages = sql_int(p, "PRAGMA page_count");
    cr_assert_gt(pages, lockpg + 100, "database has only %lld pages", pages);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_gt(st.st_size, 0x40000000LL + ps);

    char *ic = NULL;
    cr_assert_eq(run_cmd(&ic, "sqlite3 '%s' 'PRAGMA integrity_check'", p), 0);
    cr_assert_str_eq(ic, "ok\n", "integrity_check: %s", ic);
    free(ic);
    cr_assert(page_is_zero(p, lockpg, ps), "the lock page holds data");

    char out[600];
    snprintf(out, sizeof out, "%s/replay-huge.db", mN->dir);
    cr_assert_eq(lvnode_replay(mN, "huge.db", 0, out), 0);
    long long d = stream_cmp(out, p);
    cr_assert_eq(d, -1, "replay differs from the database at byte %lld (page %lld)", d, d / ps + 1);
    uint64_t ck = file_db_checksum(p);
    cr_assert_eq(file_db_checksum(out), ck);
    struct lvdbstat ds;
    cr_assert_eq(lvnode_db_status(mN, "huge.db", &ds), 1);
    cr_assert_eq(ds.checksum, ck, "status checksum differs from the file's");
    cr_assert_eq((long long)ds.pages, pages);
    cr_assert_str_eq(ds.status, "ok");
    /* an earlier TXID replays too, from the same log */
    snprintf(out, sizeof out, "%s/replay-huge-2.db", mN->dir);
    cr_assert_eq(lvnode_replay(mN, "huge.db", 2, out), 0);
    cr_assert_eq(sql_int(out, "SELECT count(*) FROM t"), 190);
    unlink(out);
    snprintf(out, sizeof out, "%s/replay-huge.db", mN->dir);
    unlink(out);
    free(p);
}

/* ------------------------------------------------------------------ */
/* litevault mount -- CMD                                              */
/* ------------------------------------------------------------------ */

static int mount_cmd(char **out, const char *cmd)
{
    return run_cmd(out, "timeout -s KILL 30 \"$LITEVAULT\" mount -c '%s' -- %s 2>&1", mN->config, cmd);
}

Test(misc, mount_run_command_exit_code)
{
    mN = lvnode_new(NULL);
    char *out = NULL;
    cr_assert_eq(mount_cmd(&out, "sh -c 'exit 7'"), 7, "output: %s", out);
    free(out);
    cr_assert(!mounted(mN->mnt), "mount left behind after the command exited");
    cr_assert_eq(mount_cmd(&out, "true"), 0, "output: %s", out);
    free(out);
    cr_assert(!mounted(mN->mnt));
    /* killed by a signal: 128 + signal */
    cr_assert_eq(mount_cmd(&out, "sh -c 'kill -9 $$'"), 137, "output: %s", out);
    free(out);
    cr_assert(!mounted(mN->mnt));
    /* a missing command */
    int rc = mount_cmd(&out, "/nonexistent/command");
    cr_assert_eq(rc, 127, "missing command gave %d: %s", rc, out);
    free(out);
    cr_assert(!mounted(mN->mnt));
    /* the command sees the mount and its writes are captured */
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "sh -c 'grep -q \" %s \" /proc/self/mountinfo || exit 50; "
             "sqlite3 %s/c.db \"CREATE TABLE t(x); INSERT INTO t VALUES(5); INSERT INTO t VALUES(6);\" || exit 51; "
             "exit 3'",
             mN->mnt, mN->mnt);
    rc = mount_cmd(&out, cmd);
    cr_assert_eq(rc, 3, "got %d: %s", rc, out);
    free(out);
    cr_assert(!mounted(mN->mnt));
    cr_assert_eq(lvnode_last_txid(mN, "c.db"), 3);
    lvnode_start(mN);
    char *p = lvnode_path(mN, "c.db");
    cr_assert_eq(sql_int(p, "SELECT sum(x) FROM t"), 11);
    lvnode_check_db(mN, "c.db");
    free(p);
}

/* ------------------------------------------------------------------ */
/* Clients: sqlite3 shell, Python, libsqlite3                          */
/* ------------------------------------------------------------------ */

static const char *py_path(void)
{
    return "/usr/bin/python3";
}

static void clients_case(const char *db, int wal)
{
    char *p = lvnode_path(mN, db);
    char *out = NULL;
    int rc = run_cmd(&out, "sqlite3 '%s' \"PRAGMA journal_mode=%s; CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT, "
                           "v INT); INSERT INTO t(who, v) VALUES('shell', 1);\" 2>&1",
                     p, wal ? "WAL" : "DELETE");
    cr_assert_eq(rc, 0, "sqlite3 shell: %s", out);
    free(out);
    rc = run_cmd(&out,
                 "%s -c \"import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=10); "
                 "c.execute('INSERT INTO t(who, v) VALUES(?, ?)', ('python', 2)); c.commit(); "
                 "print(','.join(r[0] for r in c.execute('SELECT who FROM t ORDER BY id')))\" '%s' 2>&1",
                 py_path(), p);
    cr_assert_eq(rc, 0, "python: %s", out);
    cr_assert_str_eq(out, "shell,python\n");
    free(out);
    sql_exec(p, "INSERT INTO t(who, v) VALUES('libsqlite3', 3);", 0);
    rc = run_cmd(&out, "sqlite3 '%s' 'SELECT group_concat(who) FROM (SELECT who FROM t ORDER BY id)' 2>&1", p);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(out, "shell,python,libsqlite3\n");
    free(out);
    rc = run_cmd(&out, "%s -c \"import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
                       "print(c.execute('SELECT sum(v) FROM t').fetchone()[0])\" '%s' 2>&1",
                 py_path(), p);
    cr_assert_eq(rc, 0, "python: %s", out);
    cr_assert_str_eq(out, "6\n");
    free(out);
    uint64_t tx0 = lvnode_last_txid(mN, db);

    /* concurrently: 150 commits from the shell and 150 from Python */
    char script[600];
    snprintf(script, sizeof script, "%s/shell-%s.sql", mN->dir, db);
    FILE *f = fopen(script, "w");
    cr_assert_not_null(f);
    fprintf(f, ".timeout 20000\n");
    for (int i = 0; i < 150; i++)
        fprintf(f, "INSERT INTO t(who, v) VALUES('shell-c', %d);\n", i);
    fclose(f);
    rc = run_cmd(&out,
                 "sqlite3 '%s' < '%s' & "
                 "%s -c \"import sqlite3,sys\n"
                 "c=sqlite3.connect(sys.argv[1], timeout=20)\n"
                 "for i in range(150):\n"
                 "    c.execute('INSERT INTO t(who, v) VALUES(?, ?)', ('python-c', i)); c.commit()\n"
                 "\" '%s' || exit 9; wait $! || exit 10",
                 p, script, py_path(), p);
    cr_assert_eq(rc, 0, "concurrent writers failed (%d): %s", rc, out);
    free(out);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t WHERE who = 'shell-c'"), 150);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t WHERE who = 'python-c'"), 150);
    cr_assert_eq(lvnode_last_txid(mN, db), tx0 + 300, "expected one record per commit");
    rc = run_cmd(&out, "sqlite3 '%s' 'PRAGMA integrity_check'", p);
    cr_assert_str_eq(out, "ok\n");
    free(out);
    struct lvdbstat ds;
    cr_assert_eq(lvnode_db_status(mN, db, &ds), 1);
    cr_assert_str_eq(ds.journal_mode, wal ? "wal" : "delete");
    if (wal)
        sql_checkpoint(p, "TRUNCATE");
    lvnode_check_db(mN, db);
    free(p);
}

Test(misc, shell_python_and_library_clients)
{
    mN = lvnode_started(NULL);
    clients_case("cli-wal.db", 1);
    clients_case("cli-delete.db", 0);
    /* the data survives a restart */
    lvnode_stop(mN);
    lvnode_start(mN);
    char *p = lvnode_path(mN, "cli-wal.db");
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 303);
    free(p);
}

/* ------------------------------------------------------------------ */
/* HTTP                                                                */
/* ------------------------------------------------------------------ */

static int http_connect(const struct lvnode *n)
{
    char host[64];
    snprintf(host, sizeof host, "%s", n->http);
    char *colon = strrchr(host, ':');
    cr_assert_not_null(colon);
    *colon = 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(colon + 1));
    cr_assert_eq(inet_pton(AF_INET, host, &a.sin_addr), 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect %s: %s", n->http, strerror(errno));
    return fd;
}

/* Send all bytes (stops quietly if the peer closes). */
static void send_all(int fd, const void *buf, size_t len)
{
    const char *b = buf;
    while (len > 0) {
        ssize_t w = send(fd, b, len, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        b += w;
        len -= (size_t)w;
    }
}

/* Read until the peer closes (or times out); malloc'ed, NUL-terminated. */
static char *recv_all(int fd, size_t *lenp)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    cr_assert_not_null(buf);
    for (;;) {
        if (cap - len < 16384) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            cr_assert_not_null(buf);
        }
        ssize_t r = recv(fd, buf + len, cap - len, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = 0;
    if (lenp)
        *lenp = len;
    return buf;
}

/* One request on a new connection; returns the HTTP status (0 if none) and
 * the body in *body (malloc'ed) when body != NULL. */
static int http_req(const struct lvnode *n, const char *raw, size_t rawlen, char **body)
{
    int fd = http_connect(n);
    send_all(fd, raw, rawlen);
    shutdown(fd, SHUT_WR);
    char *resp = recv_all(fd, NULL);
    close(fd);
    int status = 0;
    sscanf(resp, "HTTP/1.%*d %d", &status);
    if (body) {
        char *b = strstr(resp, "\r\n\r\n");
        *body = strdup(b ? b + 4 : "");
    }
    free(resp);
    return status;
}

static int http_get_path(const struct lvnode *n, const char *path, char **body)
{
    char req[512];
    int l = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, n->http);
    return http_req(n, req, (size_t)l, body);
}

#define metric metrics_value

static int daemon_answers(const struct lvnode *n)
{
    if (n->pid <= 0 || kill(n->pid, 0) != 0 || waitpid(n->pid, NULL, WNOHANG) == n->pid)
        return 0;
    char *b = NULL;
    int st = http_get_path(n, "/status", &b);
    free(b);
    return st == 200;
}

Test(misc, http_metrics_and_status)
{
    mN = lvnode_started(NULL);
    char *p = lvnode_path(mN, "m.db");
    char *q = lvnode_path(mN, "n.db");
    sql_exec(p, "CREATE TABLE t(x);", 0);
    for (int i = 0; i < 4; i++)
        sql_exec(p, "INSERT INTO t VALUES(randomblob(3000));", 0);
    sql_exec(q, "PRAGMA journal_mode=WAL; CREATE TABLE u(y); INSERT INTO u VALUES(1);", 0);
    uint64_t txm = lvnode_last_txid(mN, "m.db"), txn = lvnode_last_txid(mN, "n.db");
    cr_assert_eq(txm, 5);

    char *body = NULL;
    cr_assert_eq(http_get_path(mN, "/metrics", &body), 200);
    cr_assert_eq(metric(body, "litevault_db_txid{db=\"m.db\"}"), (double)txm, "metrics:\n%s", body);
    cr_assert_eq(metric(body, "litevault_db_txid{db=\"n.db\"}"), (double)txn);
    cr_assert_eq(metric(body, "litevault_db_commits_total{db=\"m.db\"}"), 5.0);
    cr_assert_eq(metric(body, "litevault_db_broken{db=\"m.db\"}"), 0.0);
    struct lvdbstat ds;
    cr_assert_eq(lvnode_db_status(mN, "m.db", &ds), 1);
    cr_assert_eq(metric(body, "litevault_db_pages{db=\"m.db\"}"), (double)ds.pages);
    double writes = metric(body, "litevault_fuse_ops_total{op=\"write\"}");
    double opens = metric(body, "litevault_fuse_ops_total{op=\"open\"}");
    cr_assert_gt(writes, 5, "FUSE write count %g", writes);
    cr_assert_gt(opens, 0, "FUSE open count %g", opens);
    double rss = metric(body, "litevault_process_rss_bytes");
    cr_assert_gt(rss, 1e6, "rss %g", rss);
    cr_assert_lt(rss, 4e9, "rss %g", rss);
    cr_assert(strstr(body, "# TYPE litevault_db_txid gauge") != NULL);
    free(body);
    /* a commit moves the counters */
    sql_exec(p, "INSERT INTO t VALUES(1);", 0);
    cr_assert_eq(http_get_path(mN, "/metrics", &body), 200);
    cr_assert_eq(metric(body, "litevault_db_txid{db=\"m.db\"}"), (double)txm + 1);
    cr_assert_eq(metric(body, "litevault_db_commits_total{db=\"m.db\"}"), 6.0);
    cr_assert_gt(metric(body, "litevault_fuse_ops_total{op=\"write\"}"), writes);
    free(body);

    /* GET /status equals `status --json` */
    char *cli = NULL;
    cr_assert_eq(run_cmd(&cli, "\"$LITEVAULT\" status -c '%s' --json", mN->config), 0);
    cr_assert_eq(http_get_path(mN, "/status", &body), 200);
    json_t *a = json_loads(cli, 0, NULL), *b = json_loads(body, 0, NULL);
    cr_assert_not_null(a, "status --json: %s", cli);
    cr_assert_not_null(b, "GET /status: %s", body);
    cr_assert(json_equal(a, b), "GET /status differs from status --json:\n%s\n---\n%s", body, cli);
    cr_assert_eq(json_array_size(json_object_get(b, "databases")), 2);
    json_decref(a);
    json_decref(b);
    free(cli);
    free(body);
    free(p);
    free(q);
}

Test(misc, http_hostile_requests)
{
    mN = lvnode_started(NULL);
    char *p = lvnode_path(mN, "h.db");
    sql_exec(p, "CREATE TABLE t(x); INSERT INTO t VALUES(1);", 0);

    /* garbage bytes */
    unsigned char junk[8192];
    srand(4242);
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)rand();
    int st = http_req(mN, (const char *)junk, sizeof junk, NULL);
    cr_assert(st == 0 || (st >= 400 && st < 500), "garbage got status %d", st);
    cr_assert(daemon_answers(mN), "daemon down after garbage bytes");
    /* garbage that looks almost like HTTP */
    const char *bad = "GET /status HTTP/9.9\r\nHost\r\n: x\r\n\r\n";
    st = http_req(mN, bad, strlen(bad), NULL);
    cr_assert_neq(st, 200, "a malformed request got 200");
    cr_assert(daemon_answers(mN));

    /* unknown paths */
    char *body = NULL;
    cr_assert_eq(http_get_path(mN, "/nope", &body), 404);
    free(body);
    cr_assert_eq(http_get_path(mN, "/status/../../etc/passwd", &body), 404);
    cr_assert(strstr(body, "root:") == NULL);
    free(body);
    cr_assert_eq(http_get_path(mN, "/metrics%00x", &body), 404);
    free(body);

    /* a 10 MB POST with Content-Length, to a known and an unknown path */
    size_t big = 10u << 20;
    char *payload = malloc(big);
    cr_assert_not_null(payload);
    memset(payload, 'A', big);
    const char *paths[] = {"/status", "/upload"};
    for (int k = 0; k < 2; k++) {
        char hdr[256];
        int hl = snprintf(hdr, sizeof hdr,
                          "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                          "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                          paths[k], big);
        size_t tot = (size_t)hl + big;
        char *req = malloc(tot);
        memcpy(req, hdr, (size_t)hl);
        memcpy(req + hl, payload, big);
        st = http_req(mN, req, tot, NULL);
        free(req);
        cr_assert(st == 0 || (st >= 400 && st < 500), "10 MB POST %s got %d", paths[k], st);
        cr_assert(daemon_answers(mN), "daemon down after a 10 MB POST to %s", paths[k]);
    }
    /* the same as chunked transfer encoding (no length announced) */
    {
        int fd = http_connect(mN);
        const char *h = "POST /status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        send_all(fd, h, strlen(h));
        char chunkhdr[32];
        size_t csz = 1 << 16;
        int cl = snprintf(chunkhdr, sizeof chunkhdr, "%zx\r\n", csz);
        for (size_t sent = 0; sent < big; sent += csz) {
            send_all(fd, chunkhdr, (size_t)cl);
            send_all(fd, payload, csz);
            send_all(fd, "\r\n", 2);
        }
        send_all(fd, "0\r\n\r\n", 5);
        shutdown(fd, SHUT_WR);
        char *resp = recv_all(fd, NULL);
        int s2 = 0;
        sscanf(resp, "HTTP/1.%*d %d", &s2);
        cr_assert_neq(s2, 200, "a chunked 10 MB POST got 200");
        free(resp);
        close(fd);
        cr_assert(daemon_answers(mN), "daemon down after a chunked 10 MB POST");
    }
    free(payload);

    /* a huge URL and a header flood */
    {
        size_t ul = 200000;
        char *req = malloc(ul + 100);
        int l = snprintf(req, 100, "GET /");
        memset(req + l, 'x', ul);
        l += (int)ul;
        l += snprintf(req + l, 100, " HTTP/1.1\r\nHost: x\r\n\r\n");
        st = http_req(mN, req, (size_t)l, NULL);
        free(req);
        cr_assert(st == 0 || (st >= 400 && st < 500), "huge URL got %d", st);
        cr_assert(daemon_answers(mN));
        char *flood = malloc(1 << 20);
        size_t fl = (size_t)snprintf(flood, 64, "GET /status HTTP/1.1\r\nHost: x\r\n");
        for (int i = 0; fl < (1u << 20) - 64; i++)
            fl += (size_t)snprintf(flood + fl, 64, "X-H%d: %0*d\r\n", i, 30, i);
        fl += (size_t)snprintf(flood + fl, 8, "\r\n");
        st = http_req(mN, flood, fl, NULL);
        free(flood);
        cr_assert_neq(st, 200, "a 1 MB header block got 200");
        cr_assert(daemon_answers(mN));
    }
    /* many idle connections at once, then a normal request */
    {
        int fds[40];
        for (int i = 0; i < 40; i++) {
            fds[i] = http_connect(mN);
            send_all(fds[i], "GET /sta", 8);
        }
        for (int i = 0; i < 40; i++)
            close(fds[i]);
    }
    /* The per-address limit (http.max-conns-per-address) counts the closed
     * connections until the server has reaped them: wait for that. */
    cr_assert(WAIT_FOR(daemon_answers(mN), 30000), "daemon down after idle connections");
    /* the FUSE side never noticed */
    sql_exec(p, "INSERT INTO t VALUES(2);", 0);
    cr_assert_eq(sql_int(p, "SELECT sum(x) FROM t"), 3);
    lvnode_check_db(mN, "h.db");
    lvnode_stop(mN); /* asserts a clean exit */
    free(p);
}

/* ------------------------------------------------------------------ */
/* A checkpoint that disagrees with the log                            */
/* ------------------------------------------------------------------ */

static void m_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, err ? err : sqlite3_errstr(rc));
}

/*
 * SQLite's wal6 test 4.3 overwrites the start of a WAL whose first frames
 * were already checkpointed, losing a committed transaction.  When the WAL
 * is then reset, the pages checkpoints wrote no longer equal the logged
 * ones: the daemon must say so, count it, and log the database as it now
 * is, so that replay equals the file again.
 */
Test(misc, checkpoint_disagreeing_with_log)
{
    mN = lvnode_started(NULL);
    char *p = lvnode_path(mN, "w6.db"), wal[600];
    snprintf(wal, sizeof wal, "%s-wal", p);
    sqlite3 *db, *db2;
    cr_assert_eq(sqlite3_open(p, &db), SQLITE_OK);
    m_exec(db, "PRAGMA page_size=1024; PRAGMA journal_mode=WAL; CREATE TABLE t1(a, b); CREATE TABLE t2(a, b);"
               "PRAGMA wal_checkpoint(TRUNCATE);");
    m_exec(db, "INSERT INTO t1 VALUES(1, 2)");
    cr_assert_eq(sqlite3_open(p, &db2), SQLITE_OK);
    m_exec(db, "BEGIN; INSERT INTO t2 VALUES(3, 4);");
    m_exec(db2, "PRAGMA wal_checkpoint(PASSIVE)");
    m_exec(db, "COMMIT");
    sqlite3_close(db2);
    /* Damage the WAL's first 2000 bytes through the mount, as wal6 does. */
    int fd = open(wal, O_WRONLY);
    cr_assert_geq(fd, 0, "open %s: %s", wal, strerror(errno));
    char zeros[2000] = {0};
    cr_assert_eq(pwrite(fd, zeros, sizeof zeros, 0), (ssize_t)sizeof zeros);
    close(fd);
    cr_assert_eq(sqlite3_open(p, &db2), SQLITE_OK);
    sqlite3_exec(db2, "SELECT * FROM t1; SELECT * FROM t2;", NULL, NULL, NULL); /* t2 may be malformed */
    sqlite3_close(db2);
    sqlite3_close(db);
    struct stat st;
    cr_assert(stat(wal, &st) != 0 || st.st_size == 0, "the WAL should be gone after the last close");

    cr_assert(lvnode_log_contains(mN, "checkpointed pages disagree with the log"),
              "the daemon did not report the checkpoint that disagrees with the log");
    char *metrics = NULL;
    cr_assert_eq(run_cmd(&metrics, "curl -s http://%s/metrics", mN->http), 0);
    char *line = strstr(metrics, "litevault_db_checkpoint_mismatch_total{db=\"w6.db\"} ");
    cr_assert(line, "no checkpoint mismatch metric for w6.db");
    cr_assert_gt(atoll(line + strlen("litevault_db_checkpoint_mismatch_total{db=\"w6.db\"} ")), 0);
    free(metrics);
    /* The log follows the database as it now is. */
    char rp[600];
    snprintf(rp, sizeof rp, "%s/w6-replay.db", mN->dir);
    cr_assert_eq(lvnode_replay(mN, "w6.db", 0, rp), 0);
    cr_assert(files_equal(rp, p), "replay differs from the database after the recovered record");
    free(p);
    lvnode_stop(mN);
}

/* Counter family{op="op"} on a running node, 0 when not listed: family is
 * litevault_fuse_ops_total (the daemon's operations) or
 * litevault_fuse_requests_total (the kernel's requests, by opcode). */
static double fuse_counter(const struct lvnode *n, const char *family, const char *op)
{
    char *body = NULL, series[96];
    cr_assert_eq(http_get_path(n, "/metrics", &body), 200);
    snprintf(series, sizeof series, "%s{op=\"%s\"}", family, op);
    double v = metric(body, series);
    free(body);
    return v < 0 ? 0 : v;
}
#define fuse_ops(n, op) fuse_counter(n, "litevault_fuse_ops_total", op)
#define fuse_requests(n, op) fuse_counter(n, "litevault_fuse_requests_total", op)

/* 1 if the mount at dir carries the mount option opt. */
static int mount_has_option(const char *dir, const char *opt)
{
    return run_cmd(NULL, "grep ' %s ' /proc/self/mounts | grep -q '[,(]*%s[,) ]'", dir, opt) == 0;
}

/*
 * Opening and closing a WAL-mode connection costs round trips that the
 * mount avoids: no FLUSH on close (-wal, -shm, and the main file of a
 * WAL-mode database), and with kernel passthrough no -shm reads or writes
 * through the daemon.  A main-file handle opened without O_TRUNC that is
 * then truncated and written like cp still gets captured, at its release.
 * The default mount is private (no allow_other, no default_permissions);
 * fuse.allow-other: true shares it.
 */
Test(misc, wal_connection_round_trips)
{
    mN = lvnode_started(NULL);
    cr_assert(!mount_has_option(mN->mnt, "allow_other"), "the default mount should be private");
    cr_assert(!mount_has_option(mN->mnt, "default_permissions"));
    char *p = lvnode_path(mN, "rt.db");
    sql_exec(p, "PRAGMA journal_mode=WAL; CREATE TABLE t(a INTEGER PRIMARY KEY, b);"
                "INSERT INTO t VALUES(1, 'one');", 0);
    cr_assert_eq(sql_int(p, "SELECT count(*) FROM t"), 1);
    double flush0 = fuse_ops(mN, "flush"), write0 = fuse_ops(mN, "write"), read0 = fuse_ops(mN, "read");
    double kflush0 = fuse_requests(mN, "flush"), kopen0 = fuse_requests(mN, "open");
    for (int i = 0; i < 20; i++) {
        sqlite3 *db;
        cr_assert_eq(sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        for (int j = 0; j < 5; j++)
            m_exec(db, "SELECT b FROM t WHERE a = 1");
        cr_assert_eq(sqlite3_close(db), SQLITE_OK);
    }
    cr_assert_eq(fuse_ops(mN, "flush"), flush0, "closing a WAL-mode connection sent FLUSH requests");
    cr_assert_eq(fuse_requests(mN, "flush"), kflush0, "the kernel sent FLUSH requests");
    cr_assert_geq(fuse_requests(mN, "open") - kopen0, 20, "the device read hook counts no OPEN requests");
    /* Every -shm open asks for passthrough: the daemon says which way it went. */
    int pt_on = lvnode_log_contains(mN, "FUSE passthrough is on");
    cr_assert(pt_on || lvnode_log_contains(mN, "FUSE passthrough is not available"),
              "no -shm open asked for kernel passthrough");
    if (pt_on) {
        cr_assert_eq(fuse_ops(mN, "write"), write0, "-shm writes went through the daemon");
        cr_assert_eq(fuse_ops(mN, "read"), read0, "-shm reads went through the daemon");
    }
    sql_exec(p, "INSERT INTO t VALUES(2, 'two');", 0);
    lvnode_check_db(mN, "rt.db");

    /* Overwrite the WAL-mode database through a handle opened without
     * O_TRUNC: ftruncate, write a rollback-mode database, close. */
    char src[600];
    snprintf(src, sizeof src, "%s/src.db", mN->dir);
    sql_exec(src, "CREATE TABLE u(x); INSERT INTO u VALUES(42);", 0);
    uint64_t before = lvnode_last_txid(mN, "rt.db");
    char *img = NULL;
    size_t len = 0;
    FILE *f = fopen(src, "rb");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    len = (size_t)ftell(f);
    rewind(f);
    img = malloc(len);
    cr_assert_eq(fread(img, 1, len, f), len);
    fclose(f);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0, "open %s: %s", p, strerror(errno));
    cr_assert_eq(ftruncate(fd, 0), 0, "ftruncate: %s", strerror(errno));
    cr_assert_eq(pwrite(fd, img, len, 0), (ssize_t)len, "pwrite: %s", strerror(errno));
    cr_assert_eq(close(fd), 0);
    free(img);
    /* The release that captures it reaches the daemon after close(2). */
    WAIT_FOR(lvnode_last_txid(mN, "rt.db") != before, LVT_WAIT_MS);
    cr_assert_gt(lvnode_last_txid(mN, "rt.db"), before, "the overwrite was not captured");
    cr_assert_eq(sql_int(p, "SELECT x FROM u"), 42);
    lvnode_check_db(mN, "rt.db");
    free(p);
    lvnode_stop(mN);

    /* fuse.allow-other: true shares the mount, with the kernel checking permissions. */
    cr_assert_eq(run_cmd(NULL, "sed -i '/^fuse:/a\\  allow-other: true' '%s'", mN->config), 0);
    lvnode_start(mN);
    cr_assert(mount_has_option(mN->mnt, "allow_other"), "fuse.allow-other: true did not share the mount");
    cr_assert(mount_has_option(mN->mnt, "default_permissions"));
    p = lvnode_path(mN, "rt.db");
    cr_assert_eq(sql_int(p, "SELECT x FROM u"), 42);
    free(p);
    lvnode_stop(mN);
}
