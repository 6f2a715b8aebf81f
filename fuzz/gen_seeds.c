/*
 * gen_seeds.c -- writes the binary seed corpora for the fuzz harnesses.
 *
 *   gen_seeds OUTDIR      creates OUTDIR/txlog, OUTDIR/txlog_open, OUTDIR/wal, OUTDIR/state,
 *                         OUTDIR/manifest, OUTDIR/stream
 *
 * The seeds are produced by the project's own writers (and SQLite), not
 * checked in, so they follow the formats as the code currently writes
 * them:
 *   txlog/  (and the same in txlog_open/) segment files from the log writer (txlog_open/append): a log
 *           starting at TXID 1 with a zstd record, a raw (incompressible)
 *           record, a size-only record and a RECOVERED record carrying WAL
 *           salts; a log starting with a SNAPSHOT record (page size 1024);
 *           a log with a small segment size that rolls over into several
 *           segments; plus a header-only segment and a bare 112-byte record
 *           header cut from the first one.  Database checksums are real
 *           (cksum_page XOR), so the pre/post chain holds.
 *   wal/    -wal files written by SQLite (512-byte pages, autocheckpoint
 *           off), copied while the connection is open, after 1 and after
 *           4 transactions, plus the same file cut inside its last frame.
 *   state/  state files from cksum_state_save: 0, 1 and 9 pages.
 *   manifest/  archive manifests from manifest_encode (empty; level-0 and
 *           level-1 segments with snapshots), a current.json pointer and a
 *           deleted.json.
 *   stream/  replication streams from the stream encoder (replica/stream.h):
 *           one with every frame type, whose RECORD frames carry the real
 *           records of the txlog seeds above (zstd, raw, size-only,
 *           RECOVERED, SNAPSHOT); the same cut inside its last frame; and
 *           each frame type on its own.
 * Text seeds (config, time) are checked in under fuzz/corpus/.
 *
 * Exit status 0 on success; any failure prints what failed and exits 1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cksum.h"
#include "archive/current.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "archive/manifest.h"
#include "base/sys.h"
#include "log/txlog.h"
#include "replica/stream.h"

#define DIE(...) do { fprintf(stderr, "gen_seeds: " __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

static const char *outdir;
static char tmpdir[64];

static void write_seed_one(const char *sub, const char *name, const void *buf, size_t len)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", outdir, sub);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        DIE("mkdir %s: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/%s/%s", outdir, sub, name);
    f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
        DIE("write %s: %s", path, strerror(errno));
}

/* Segment seeds serve both fuzz_txlog and fuzz_txlog_open. */
static void write_seed(const char *sub, const char *name, const void *buf, size_t len)
{
    write_seed_one(sub, name, buf, len);
    if (strcmp(sub, "txlog") == 0)
        write_seed_one("txlog_open", name, buf, len);
}

static void *read_whole(const char *path, size_t *len)
{
    void *buf = NULL;

    if (sys_read_file(path, &buf, len) != 0)
        DIE("read %s", path);
    return buf;
}

/* ---- txlog ---- */

/* A tiny in-memory database: pages and the real database checksum. */
struct db {
    uint32_t ps, npages;
    uint8_t pages[16][1024];
};

static uint64_t db_cksum(const struct db *d)
{
    uint64_t x = 0;

    for (uint32_t p = 1; p <= d->npages; p++)
        x ^= cksum_page(p, d->pages[p - 1], d->ps);
    return x;
}

static void fill_text(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)("litevault page "[(i + seed) % 15]);
}

static void fill_random(uint8_t *p, size_t n, unsigned seed)
{
    uint32_t x = 2463534242u ^ seed;

    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

/* Append one record: pages listed in pg[0..n-1] (already updated in d). */
static void append(struct txlog *l, struct db *d, uint64_t txid, uint16_t flags, uint64_t pre, const uint32_t *pg,
                   uint32_t n, uint32_t salt1)
{
    struct txlog_hdr h;
    int rc;

    memset(&h, 0, sizeof h);
    h.txid = txid;
    h.flags = flags;
    h.time_us = 1790000000000000LL + (int64_t)txid * 1000;
    h.page_size = d->ps;
    h.db_pages = d->npages;
    h.pre_cksum = pre;
    h.post_cksum = db_cksum(d);
    h.wal_salt1 = salt1;
    h.wal_salt2 = salt1 ? salt1 ^ 0x5a5a5a5a : 0;
    h.wal_frame = salt1 ? (uint32_t)txid * 3 : 0;
    rc = txlog_append_begin(l, &h);
    for (uint32_t i = 0; rc == 0 && i < n; i++)
        rc = txlog_append_page(l, pg[i], d->pages[pg[i] - 1]);
    if (rc == 0)
        rc = txlog_append_end(l);
    if (rc != 0)
        DIE("append TXID %llu: %s", (unsigned long long)txid, lv_strerror(rc));
}

static struct txlog *open_log(const char *sub, uint8_t tag, uint64_t seg_size)
{
    char dir[128], err[512];
    uint8_t dbid[16];
    struct txlog *l;
    struct txlog_tail tail;
    int rc;

    for (int i = 0; i < 16; i++)
        dbid[i] = (uint8_t)(tag * 16 + i);
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, sub);
    rc = txlog_open(dir, dbid, seg_size, &l, &tail, err, sizeof err);
    if (rc != 0)
        DIE("txlog_open %s: %s: %s", dir, lv_strerror(rc), err);
    return l;
}

/* Copy every segment of tmpdir/sub into the txlog corpus as <sub>-<file>. */
static void copy_segments(const char *sub)
{
    char dir[128], path[512], name[300];
    struct dirent *e;
    DIR *dp;
    int found = 0;

    snprintf(dir, sizeof dir, "%s/%s", tmpdir, sub);
    dp = opendir(dir);
    if (!dp)
        DIE("opendir %s: %s", dir, strerror(errno));
    while ((e = readdir(dp)) != NULL) {
        size_t len, nl = strlen(e->d_name);
        void *buf;
        if (nl < 6 || strcmp(e->d_name + nl - 6, ".lvseg") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        buf = read_whole(path, &len);
        snprintf(name, sizeof name, "%s-%s", sub, e->d_name);
        write_seed("txlog", name, buf, len);
        if (strcmp(sub, "basic") == 0 && len >= TXLOG_SEG_HDR_SIZE + TXLOG_HDR_SIZE) {
            write_seed("txlog", "header-only.lvseg", buf, TXLOG_SEG_HDR_SIZE);
            write_seed("txlog", "record-header.bin", (uint8_t *)buf + TXLOG_SEG_HDR_SIZE, TXLOG_HDR_SIZE);
        }
        free(buf);
        found++;
    }
    closedir(dp);
    if (!found)
        DIE("no segments in %s", dir);
}

static void gen_txlog(void)
{
    static struct db d;
    struct txlog *l;
    uint64_t pre;
    uint32_t pg[16];

    /* basic: TXID 1..4 in one segment. */
    memset(&d, 0, sizeof d);
    d.ps = 512;
    l = open_log("basic", 1, 1 << 20);
    d.npages = 4;
    for (uint32_t p = 1; p <= 4; p++) {
        fill_text(d.pages[p - 1], d.ps, p);
        pg[p - 1] = p;
    }
    append(l, &d, 1, 0, 0, pg, 4, 0); /* compressible: zstd */
    pre = db_cksum(&d);
    fill_random(d.pages[1], d.ps, 7);
    pg[0] = 2;
    append(l, &d, 2, 0, pre, pg, 1, 0); /* incompressible: stored raw */
    pre = db_cksum(&d);
    d.npages = 2;
    append(l, &d, 3, 0, pre, pg, 0, 0); /* truncation: no pages */
    pre = db_cksum(&d);
    d.npages = 3;
    fill_text(d.pages[2], d.ps, 11);
    pg[0] = 1;
    pg[1] = 3;
    fill_random(d.pages[0], 64, 3);
    append(l, &d, 4, TXLOG_F_RECOVERED, pre, pg, 2, 0x11223344);
    txlog_close(l);
    copy_segments("basic");

    /* snap: starts with a snapshot at TXID 10, then one change. */
    memset(&d, 0, sizeof d);
    d.ps = 1024;
    d.npages = 2;
    l = open_log("snap", 2, 1 << 20);
    fill_text(d.pages[0], d.ps, 1);
    fill_random(d.pages[1], d.ps, 2);
    pg[0] = 1;
    pg[1] = 2;
    append(l, &d, 10, TXLOG_F_SNAPSHOT, 0x0123456789abcdefULL, pg, 2, 0);
    pre = db_cksum(&d);
    fill_text(d.pages[1], d.ps, 5);
    pg[0] = 2;
    append(l, &d, 11, 0, pre, pg, 1, 0);
    txlog_close(l);
    copy_segments("snap");

    /* roll: small segment size, several segments. */
    memset(&d, 0, sizeof d);
    d.ps = 512;
    l = open_log("roll", 3, 4096);
    pre = 0;
    for (uint64_t t = 1; t <= 8; t++) {
        d.npages = (uint32_t)(t < 4 ? t + 2 : 6);
        fill_random(d.pages[t % 6], d.ps, (unsigned)t);
        pg[0] = (uint32_t)(t % 6) + 1;
        if (pg[0] > d.npages)
            pg[0] = d.npages;
        fill_random(d.pages[pg[0] - 1], d.ps, (unsigned)t);
        append(l, &d, t, 0, pre, pg, 1, (uint32_t)t);
        pre = db_cksum(&d);
    }
    txlog_close(l);
    copy_segments("roll");
}

/* ---- replication stream ---- */

struct sbuf {
    uint8_t *p;
    size_t n;
};

/* Append the frame *f of *n bytes that an encoder returned (rc) to b, and
 * write it alone as stream/<name> too (name NULL: not).  Pointers, read
 * after the encoder ran: put_frame(b, name, enc(..., &f, &n), &f, &n). */
static void put_frame(struct sbuf *b, const char *name, int rc, uint8_t **f, size_t *n)
{
    if (rc != 0)
        DIE("stream %s: %s", name ? name : "frame", lv_strerror(rc));
    if (name)
        write_seed("stream", name, *f, *n);
    b->p = realloc(b->p, b->n + *n);
    if (!b->p)
        DIE("out of memory");
    memcpy(b->p + b->n, *f, *n);
    b->n += *n;
    free(*f);
    *f = NULL;
}

/* A RECORD frame for each record of the segment file tmpdir/sub/file. */
static void put_records(struct sbuf *b, const char *sub, const char *file, const char *dbname)
{
    char path[512];
    size_t len, off = TXLOG_SEG_HDR_SIZE;
    uint8_t *seg, *f;
    size_t n;

    snprintf(path, sizeof path, "%s/%s/%s", tmpdir, sub, file);
    seg = read_whole(path, &len);
    while (len - off >= TXLOG_HDR_SIZE) {
        uint64_t stored = lv_get64(seg + off + 72);
        size_t rlen = TXLOG_HDR_SIZE + (size_t)stored + TXLOG_TRAILER_SIZE;
        if (stored > len - off || rlen > len - off)
            DIE("%s: record at %zu does not fit", path, off);
        put_frame(b, off == TXLOG_SEG_HDR_SIZE ? (sub[0] == 'b' ? "record.bin" : "record-snapshot.bin") : NULL,
                  stream_enc_record(dbname, seg + off, rlen, &f, &n), &f, &n);
        off += rlen;
    }
    free(seg);
}

static void gen_stream(void)
{
    struct sbuf b = {0};
    uint8_t *f, dbid[16], pages[2 * 1024];
    size_t n;

    for (size_t i = 0; i < sizeof pages; i++)
        pages[i] = (uint8_t)("litevault page "[i % 15]);
    for (int i = 0; i < 16; i++)
        dbid[i] = (uint8_t)(0xa0 + i);
    put_frame(&b, "hello.bin", stream_enc_text(ST_HELLO, "{\"version\":2,\"term\":7,\"cluster\":\"00112233445566778899aabbccddeeff\","
              "\"node\":\"n1\",\"url\":\"http://127.0.0.1:8080\",\"time_us\":1790000000000000}", &f, &n), &f, &n);
    put_records(&b, "basic", "0000000000000001.lvseg", "app.db");
    put_frame(&b, "snap-begin.bin", stream_enc_snap_begin("sub/b.db", dbid, 10, 1790000000000010LL, 1024, 2,
              0x0123456789abcdefULL, 7, &f, &n), &f, &n);
    put_frame(&b, "snap-pages.bin", stream_enc_snap_pages("sub/b.db", 1, 2, 1024, pages, &f, &n), &f, &n);
    put_frame(&b, "snap-end.bin", stream_enc_name(ST_SNAP_END, "sub/b.db", &f, &n), &f, &n);
    put_records(&b, "snap", "000000000000000a.lvseg", "sub/b.db");
    put_frame(&b, "heartbeat.bin", stream_enc_heartbeat(1790000001000000LL, 17, &f, &n), &f, &n);
    put_frame(&b, "drop.bin", stream_enc_name(ST_DROP, "old.db", &f, &n), &f, &n);
    put_frame(&b, "rename.bin", stream_enc_rename("sub/b.db", "sub/c.db", &f, &n), &f, &n);
    put_frame(&b, "error.bin", stream_enc_text(ST_ERROR, "the primary is shutting down", &f, &n), &f, &n);
    write_seed("stream", "all.bin", b.p, b.n);
    write_seed("stream", "cut.bin", b.p, b.n - 7);
    free(b.p);
}

/* ---- WAL ---- */

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        DIE("sqlite: %s: %s", sql, msg ? msg : "?");
}

static void gen_wal(void)
{
    char path[128], wal[160];
    sqlite3 *db;
    void *buf;
    size_t len;

    snprintf(path, sizeof path, "%s/w.db", tmpdir);
    snprintf(wal, sizeof wal, "%s-wal", path);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        DIE("sqlite3_open %s", path);
    exec_sql(db, "PRAGMA page_size=512; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
                 "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);");
    buf = read_whole(wal, &len);
    write_seed("wal", "one-tx.wal", buf, len);
    free(buf);
    exec_sql(db, "INSERT INTO t(b) VALUES('one'),('two');"
                 "BEGIN; INSERT INTO t(b) SELECT hex(randomblob(300)) FROM t; COMMIT;"
                 "UPDATE t SET b = 'x' WHERE a = 1;");
    buf = read_whole(wal, &len);
    write_seed("wal", "four-tx.wal", buf, len);
    if (len > 100)
        write_seed("wal", "torn.wal", buf, len - 100);
    free(buf);
    sqlite3_close(db);
}

/* ---- state ---- */

static void gen_state(void)
{
    struct cksum_map m;
    uint8_t dbid[16], page[512];
    char path[128];
    void *buf;
    size_t len;
    const uint32_t sizes[] = {0, 1, 9};

    memset(dbid, 0xab, sizeof dbid);
    snprintf(path, sizeof path, "%s/state", tmpdir);
    for (size_t k = 0; k < LV_ARRAY_LEN(sizes); k++) {
        char name[32];
        cksum_map_init(&m);
        cksum_map_reset(&m, sizes[k] ? 512 : 0);
        if (cksum_map_resize(&m, sizes[k]) != 0)
            DIE("cksum_map_resize");
        for (uint32_t p = 1; p <= sizes[k]; p++) {
            fill_random(page, sizeof page, p);
            cksum_map_set(&m, p, cksum_page(p, page, sizeof page));
        }
        if (cksum_state_save(path, &m, dbid, 40 + k) != 0)
            DIE("cksum_state_save %s", path);
        buf = read_whole(path, &len);
        snprintf(name, sizeof name, "pages-%u.state", sizes[k]);
        write_seed("state", name, buf, len);
        free(buf);
        cksum_map_free(&m);
    }
}

/* ---- manifest ---- */

static void put_manifest(const char *name, const struct manifest *m)
{
    char *enc = NULL, err[256];
    size_t len = 0;
    if (manifest_encode(m, &enc, &len, err, sizeof err) != 0)
        DIE("manifest_encode: %s", err);
    write_seed("manifest", name, enc, len);
    free(enc);
}

static void gen_manifest(void)
{
    static const char id[] = "0123456789abcdef0123456789abcdef";
    struct manifest m;
    struct archive_current c = {.format = ARCHIVE_CURRENT_FORMAT, .updated_us = 1795514400123456LL};
    char *enc = NULL;
    size_t len = 0;
    uint64_t ck = 0x1111;

    if (manifest_init(&m, "dir/app.db", id, 1795514400000000LL) != 0)
        DIE("manifest_init");
    put_manifest("empty.json", &m);
    for (uint64_t f = 1; f <= 40; f += 10) { /* level 0: 1-10, 11-20, ... */
        struct manifest_seg sg = {.level = 0, .first_txid = f, .last_txid = f + 9,
                                  .first_time_us = 1795514400000000LL + (int64_t)f * 1000,
                                  .last_time_us = 1795514400000000LL + (int64_t)(f + 9) * 1000,
                                  .pre_cksum = ck, .post_cksum = ck + 1, .size = 4096, .xxh3 = f};
        ck++;
        if (manifest_add_segment(&m, &sg) != 0)
            DIE("manifest_add_segment");
    }
    put_manifest("level0.json", &m);
    struct manifest_seg l1 = {.level = 1, .first_txid = 1, .last_txid = 20, .first_time_us = 1795514400001000LL,
                              .last_time_us = 1795514400020000LL, .pre_cksum = 0x1111, .post_cksum = 0x1113,
                              .size = 8192, .xxh3 = 99};
    struct manifest_snap sn = {.txid = 20, .time_us = 1795514400020000LL, .page_size = 4096, .db_pages = 3,
                               .db_cksum = 0x1113, .size = 5000, .xxh3 = 7};
    if (manifest_add_segment(&m, &l1) != 0 || manifest_add_snapshot(&m, &sn) != 0)
        DIE("manifest_add");
    put_manifest("levels-snapshot.json", &m);
    manifest_free(&m);
    memcpy(c.dbid, id, sizeof c.dbid);
    if (archive_current_encode(&c, &enc, &len) != 0)
        DIE("archive_current_encode");
    write_seed("manifest", "current.json", enc, len);
    free(enc);
    struct archive_deleted t = {.format = ARCHIVE_DELETED_FORMAT, .deleted_us = 1795514400223456LL,
                                .reason = ARCHIVE_LEFT_RENAMED};
    memcpy(t.dbid, id, sizeof t.dbid);
    if (archive_deleted_encode(&t, &enc, &len) != 0)
        DIE("archive_deleted_encode");
    write_seed("manifest", "deleted.json", enc, len);
    free(enc);
    static const char v1[] = "{\"dbid\":\"0123456789abcdef0123456789abcdef\",\"deleted\":\"2026-11-24T16:00:00Z\","
                             "\"format\":1}\n";
    write_seed("manifest", "deleted-format1.json", v1, sizeof v1 - 1);
}

int main(int argc, char **argv)
{
    char cmd[128];

    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds OUTDIR\n");
        return 2;
    }
    lvlog_threshold = LVLOG_WARN;
    outdir = argv[1];
    if (sys_mkdir_p(outdir) != 0)
        DIE("mkdir %s", outdir);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lvfuzz-seeds-XXXXXX");
    if (!mkdtemp(tmpdir))
        DIE("mkdtemp: %s", strerror(errno));
    gen_txlog();
    gen_wal();
    gen_state();
    gen_manifest();
    gen_stream();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "gen_seeds: could not remove %s\n", tmpdir);
    return 0;
}
