/*
 * db.c -- per-database state and transaction capture: the design, and the
 * pieces the capture module's files share (see db_impl.h for the files).
 *
 * WHAT IS CAPTURED
 * Every committed write transaction becomes one txlog record holding the
 * final content of each page whose content changed, the database size in
 * pages and the database checksum before and after (cksum.h).  A record's
 * page set is computed by comparing candidate pages against the per-page
 * checksum map, so a rolled-back transaction, a no-op commit, WAL padding
 * frames and a hot-journal rollback all produce no record.
 *
 * COMMIT DETECTION (all performed synchronously inside the FUSE request, so
 * the writer still holds SQLite's own locks: no other writer can interleave)
 *  - WAL mode: the commits are read from the backing -wal after they are
 *    written (db_wal_capture, with log/wal.c's cursor: frames validated
 *    as SQLite's recovery does, whole commits only, one record each; the
 *    last frame of each page wins).  With kernel passthrough the -wal's
 *    writes never reach the daemon; the WAL watcher (db_watch.c) wakes
 *    the capture right after each commit (inotify).  Through the daemon,
 *    the write that completes a commit frame captures before it returns.
 *    Either way the capture also runs, at the latest, before the
 *    application's fsync of the -wal, before any checkpoint write or
 *    truncate of the main file, before a truncate or unlink of the -wal,
 *    and when /status or an image asks.  Frames that SQLite overwrites in
 *    place within a transaction (wal.c iReCksum) lie after the last
 *    commit, where the cursor never stands.  A WAL restart (new salts) is
 *    noticed by the cursor: SQLite restarts only after a checkpoint copied
 *    every frame, and each checkpoint write captured first.
 *  - Rollback modes: writes to the database file while a journal is active
 *    (a journal header with the journal magic was written at offset 0) mark
 *    512-byte granules dirty.  The commit is the journal's unlink (DELETE),
 *    truncation to 0 (TRUNCATE) or a zeroed header (PERSIST, and any mode
 *    under locking_mode=EXCLUSIVE).  The capture runs BEFORE that operation
 *    is performed; if it fails the operation is refused with EIO, the
 *    journal stays hot, and SQLite rolls the transaction back.  Room for
 *    the record is reserved earlier, while SQLite writes the pages (C9),
 *    so that a full disk fails a write (SQLITE_FULL), not the commit.
 *  - Unjournaled ("bulk") writes: a new file (or one truncated) written
 *    without a journal, e.g. by cp, and writes with journal_mode=OFF or
 *    MEMORY, are captured when the writer fsyncs or closes the file, or
 *    starts a journaled transaction or a WAL (with synchronous=OFF several
 *    transactions may then merge into one record; a warning says so once).
 *  - A write that would overwrite a captured database's header with an
 *    invalid one is refused with EIO.
 *  - Checkpoint writes (WAL mode, no journal) are not captured: the pages
 *    they copy are already logged.
 *
 * DURABILITY: records are appended with one write(2) at commit.  The log is
 * fsynced only when the application fsyncs one of the database's files
 * (in parallel with that fsync, db_on_fsync), or its directory
 * (dbreg_sync_logs); precisely: C7 below.
 *
 * STATES of struct db (kind):  UNKNOWN (empty, new) -> SQLITE (db_promote,
 * from settle_kind on a SQLite, journal or WAL header, or db_load) or
 * PLAIN (settle_kind: not SQLite, passed through).  SQLITE -> PLAIN when
 * the database is deleted (retire_locked).  Any -> broken (sticky, set by
 * db_fail) on an uncertain I/O error or a damaged log; a broken database
 * refuses to open and every write fails.
 * Within SQLITE, the transaction in progress:
 *   idle --journal magic at offset 0 (write_journal)--> journal_active
 *   journal_active --unlink / truncate to 0 / zeroed header
 *        (journal_commit, after db_capture_rollback)--> idle
 *   idle --write to the main file with no journal, not a checkpoint
 *        (write_main), or a truncation (db_on_truncate)--> bulk
 *   bulk --fsync, close, journal or WAL start (bulk_commit)--> idle
 *   idle --checkpoint write in WAL mode (write_main)--> ckpt_dirty
 *   ckpt_dirty --WAL reset (ckpt_verify) or journal start--> idle
 * WAL position (wal_valid, wal_next, wcur) moves when db_wal_capture logs
 * a commit (wal_next = commit + 1) or adopts a new WAL generation
 * (wal_adopt: a header written through the daemon, or a restart the cursor
 * noticed; wal_next = 0).
 *
 * START-UP (db_load): open and verify the log, load the persisted checksum
 * map (meta/NAME/state) and roll it forward with the page checksums of
 * later records, then reconcile with the files: replay commits found in
 * the WAL after the last logged WAL position as RECOVERED records, then
 * compare candidate pages (those of records after the state, WAL pages and
 * growth) with the map and write one RECOVERED repair record if anything
 * differs.  A hot journal is left for SQLite to roll back through the mount;
 * the commit that ends that rollback also compares the freelist leaves,
 * which SQLite reuses without journaling them (db_dirty_free_leaves).
 *
 * LOCKING: dbreg.mu guards the table, names, refs and retired flags;
 * db.mu guards everything else in struct db.  Order: db.img_mu, dbreg.mu,
 * db.mu, dbreg.smu (the syncer queue).
 *
 * INVARIANTS (db_assert_state checks the O(1) ones under db.mu at the end
 * of every db_on_* call; db_emit checks C4 and C5 at each record)
 *  C3. db.mu serializes every change of a database's files made through
 *      the mount, its capture, and the image copier.
 *  C4. The checksum map describes the database just after record txid:
 *      map.total is that record's post checksum, and the log's last TXID
 *      is txid (unless broken).
 *  C5. A record is emitted with pre checksum == map.total, which is the
 *      previous record's post checksum (C4), and TXID txid + 1: records
 *      are appended in TXID order, each continuing the last (L1, L2 of
 *      log/txlog.c).  After db_emit returns 0, map.total == its post.
 *  C6. At most one transaction style at a time: never journal_active and
 *      bulk together.  SQLITE and not broken => the log is open.  The
 *      dirty set's range [dmin, dmax] lies within the allocated words.
 *
 * WHAT REPLICATION MAY RELY ON (a replica follows the log record by record)
 *  C1. Every write to a backing file goes through this mount: data.dir/
 *      files is written by nobody else while the daemon runs, so every
 *      change of a database reaches db_on_*.  (Not checkable here; the
 *      kernel cache settings in fs.c rely on it too.)  Changes made
 *      behind the daemon's back while it is stopped are found by start-up
 *      reconcile and logged as RECOVERED or snapshot records.
 *  C2. In rollback modes, capture runs while the writer holds SQLite's
 *      locks: a commit is detected and logged synchronously inside the
 *      FUSE request that commits (the journal's unlink, truncation or
 *      zeroing, before it is performed), so no other writer's commit can
 *      interleave, and the record is written to the log before the
 *      application sees its commit succeed.  If logging fails, that request
 *      fails, so no commit is acknowledged unlogged, and nothing of the
 *      refused commit stays behind (C8).  Unjournaled writes are the
 *      exception: they are logged at the next fsync or close (or
 *      journal/WAL start), so with synchronous=OFF several transactions may
 *      merge into one record.  In WAL mode a commit is never refused: it is
 *      logged from the WAL once written (COMMIT DETECTION), in commit order
 *      (the WAL is ordered), within about a millisecond with passthrough
 *      and before the commit's write returns through the daemon.  A commit
 *      that cannot be logged (a full log, data.max-log-size) waits in the
 *      WAL: wal_stalled refuses every operation that could drop it
 *      (wal_before_drop), so no committed transaction is ever lost.
 *  C8. In rollback modes a refused commit leaves no committed state behind
 *      for any connection, now or after a crash: the commit point (unlink,
 *      truncation, zeroing) is performed only after logging (C2).  The one
 *      exception is a journal on kernel passthrough in PERSIST or exclusive
 *      mode: the kernel zeroes its header, and the daemon logs the commit
 *      at the fsync that follows (db_journal_follow), before the commit
 *      returns to the application unless synchronous=OFF; a failure then
 *      breaks the database (start-up logs it as it is).
 *  C9. A full disk is SQLITE_FULL in every journal mode.  SQLite reports
 *      ENOSPC from a write as SQLITE_FULL, but errors of unlink, ftruncate
 *      and fsync as SQLITE_IOERR_*, and a rollback-mode commit point is one
 *      of those.  So, in rollback and unjournaled transactions, every write
 *      to the main file first reserves log room for the record (all pages
 *      dirtied so far, page size + 4 bytes each: reserve_dirty,
 *      txlog_reserve, L9 of log/txlog.c) and is refused with ENOSPC when
 *      it cannot be had; SQLite then rolls back (its playback writes are
 *      let through).  Per mode:
 *      - WAL: SQLITE_FULL only from SQLite's own -wal write; a commit whose
 *        record finds no room waits in the WAL (wal_stalled, C2).
 *      - DELETE, TRUNCATE, PERSIST, OFF/MEMORY (bulk): SQLITE_FULL from a
 *        page write before the commit point; the record's append then
 *        lands in reserved blocks.  Where the file system cannot
 *        preallocate, or the append fails otherwise (EIO), the commit
 *        point is refused with EIO as before (SQLITE_IOERR_*, the journal
 *        stays hot, SQLite rolls back): still nothing is committed.
 *  C5 (above): TXID order with pre checksum == previous post checksum;
 *      RECOVERED and snapshot records are part of that chain like any
 *      other, and a replica must apply them too.
 *  C7. Durability.  db_emit writes a record (write(2), page cache) when
 *      the commit is captured; it is fsynced (txlog_sync) only:
 *      - in db_on_fsync, on the application's fsync of any file of the
 *        database but its -wal, in parallel with it; the fsync returns only
 *        when both succeeded (a failed log fsync breaks the database and
 *        fails it);
 *      - before anything can drop WAL frames (wal_before_drop: a
 *        checkpoint's write, a truncate or unlink of the -wal, a restart
 *        through the daemon);
 *      - in dbreg_sync_logs, on the application's fsync of a directory,
 *        and by the archiver before each round (it ships only records the
 *        log has made durable);
 *      - at start-up after a repair, at close, and before retiring.
 *      So, per journal mode and synchronous setting:
 *      - WAL, synchronous=FULL/EXTRA: SQLite fsyncs the WAL after each
 *        commit; the daemon fsyncs the backing WAL (the WAL watcher captures
 *        the commit meanwhile), then captures what is left, and the WAL is
 *        the durable copy of its record until the log is fsynced: one fsync
 *        per commit.  Once per WAL generation (wal_anchored) the log is
 *        fsynced too, after the WAL, so that the durable log names the
 *        generation.  After a power failure, start-up reconcile logs the
 *        commits the log lost from the WAL as RECOVERED records, one per
 *        transaction (same TXIDs and checksums; the time of recovery).
 *      - WAL, synchronous=NORMAL or OFF: no fsync at commit; the record is
 *        as durable as SQLite's own commit (page cache) and becomes
 *        durable at the next fsync (NORMAL: checkpoints).  After a power
 *        failure a WAL commit frame may survive while its record did not:
 *        start-up reconcile logs it as a RECOVERED record.
 *      - DELETE/TRUNCATE/PERSIST: SQLite's fsyncs precede the commit point,
 *        which itself is not durable until the directory or journal is
 *        synced; the record is durable at the application's next fsync of
 *        any file of the database or its directory fsync
 *        (synchronous=EXTRA), i.e. exactly as durable as the commit; if a
 *        committed state reaches the disk without its record, reconcile
 *        logs it as RECOVERED.
 *      - journal_mode=OFF/MEMORY: the fsync that captures the bulk writes
 *        also syncs the record before it returns.
 *      A replica must never be ahead of the source's durable history:
 *      see C10.
 *  C10. Durable TXID.  durable_txid <= txid, and every record up to it
 *      survives a power loss: it is raised to txid by every successful
 *      txlog_sync (db_log_synced, and dbreg_durable_limit, whose fdatasync
 *      runs on the segment opened again without mu), and by the
 *      application's fsync of the -wal (db_on_fsync) when the log is
 *      anchored in this WAL generation (older generations' records were
 *      fsynced before their frames could go, C7) and no checkpoint is
 *      running (wal_ckpt_idle): then the caller is the writer, which holds
 *      the WAL write lock, so every frame captured was written before the
 *      fsync.  db_load starts it at txid after an fsync of the whole log
 *      (an earlier process's tail may have been in the page cache only).
 *      A replication stream that must wait (replication.wait-durable,
 *      dbreg_durable_limit) sends no record after it (primary.c).
 *  C11. WAL pre-sync.  With a commit hook (replication.sync-replicas, so
 *      no -wal is on passthrough), a synchronous=FULL writer's commit
 *      through the daemon arms a pre-sync (db_presync_arm): the FUSE thread
 *      fdatasyncs the -wal (db_wal_presync) while the record travels to the
 *      replicas, before it waits for their acknowledgement, instead of
 *      after it at the application's fsync.  The application's fdatasync
 *      of the -wal is skipped only while wal_presynced == wal_wgen + 1
 *      (0: no pre-sync ran; never on passthrough, whose writes are not
 *      counted), and
 *      wal_wgen is bumped after every write, truncate and fallocate of the
 *      -wal through the daemon (db_wal_changed) and read before the
 *      pre-sync's fdatasync starts: every change it counts was made before
 *      that fdatasync.  A failed pre-sync owes its error to the next fsync
 *      of the -wal through the same descriptor (wal_presync_err,
 *      wal_presync_fd; dropped when it closes): fdatasync reports a
 *      write-back error to a descriptor once, and the pre-sync used the
 *      application's.  Recognising a FULL writer needs the -shm on
 *      passthrough (wal_ckpt_idle); without it no pre-sync runs.
 */
#include "capture/db.h"
#include "capture/db_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cksum.h"
#include "base/dbhdr.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/publish.h"
#include "base/sys.h"
#include "log/txlog.h"
#include "log/wal.h"

const uint8_t db_journal_magic[8] = {0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7};
const char *const db_jmode_names[5] = {"unknown", "delete", "truncate", "persist", "wal"};

/* Checksum of an all-zero page (page size ps, page pgno). */
void db_assert_state(const struct db *d)
{
    LV_ASSERT(d->kind == DBK_UNKNOWN || d->kind == DBK_SQLITE || d->kind == DBK_PLAIN);
    LV_ASSERT(!(d->journal_active && d->bulk)); /* C6 */
    LV_ASSERT(d->broken || d->kind != DBK_SQLITE || d->log); /* C6 */
    LV_ASSERT(d->durable_txid <= d->txid); /* C10 */
    LV_ASSERT(!d->dirty_any || (d->dmin <= d->dmax && d->dmax / 64 < d->dirty_words)); /* C6 */
    LV_ASSERT(d->map.npages == 0 || dbhdr_page_size_ok(d->map.page_size));
    LV_ASSERT(!d->wal_valid || dbhdr_page_size_ok(d->wal_psz));
    LV_ASSERT(!d->img || d->kind == DBK_SQLITE);
    /* C9: a refusal for lack of log room belongs to an open transaction. */
    LV_ASSERT(!d->resv_refused || d->journal_active || d->bulk);
    /* C4: the log ends at the record the map describes. */
    LV_ASSERT(d->broken || d->kind != DBK_SQLITE || !d->log || txlog_last_txid(d->log) == d->txid);
}

uint64_t db_zero_page_cksum(uint32_t pgno, uint32_t ps)
{
    static const uint8_t zeros[65536];
    return cksum_page(pgno, zeros, ps);
}

/* Read ps bytes at off from fd; bytes past EOF read as zeros. */
int db_read_page(int fd, void *buf, uint32_t ps, uint64_t off)
{
    size_t got = 0;
    while (got < ps) {
        ssize_t r = pread(fd, (char *)buf + got, ps - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            LV_ERROR("pread at %llu: %s", (unsigned long long)(off + got), strerror(errno));
            return LV_EIO;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (got < ps)
        memset((char *)buf + got, 0, ps - got);
    return 0;
}

int db_read_mem(int fd, void *buf, uint32_t len, uint64_t off, const struct wal_frames *m, int mfd)
{
    if (m && fd == mfd && off >= m->off && off + len <= m->off + m->len) {
        memcpy(buf, m->buf + (off - m->off), len);
        return 0;
    }
    return db_read_page(fd, buf, len, off);
}

/* Mark a database broken: refuse everything until restart (sticky). */
void db_fail(struct db *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->why, sizeof d->why, fmt, ap);
    va_end(ap);
    d->broken = 1;
    LV_ERROR("%s: %s; this database refuses all access until litevault restarts", d->name, d->why);
}

int db_main_fd(struct db *d)
{
    if (d->fd < 0) {
        d->fd = openat(d->reg->rootfd, d->name, O_RDWR | O_CLOEXEC);
        if (d->fd < 0)
            LV_DEBUG("open %s/%s: %s", d->reg->files, d->name, strerror(errno));
    }
    return d->fd;
}


uint64_t db_map_before(const struct db *d, uint32_t p, uint32_t ps)
{
    return p <= d->map.npages ? cksum_map_get(&d->map, p) : db_zero_page_cksum(p, ps);
}

int db_hdr_geometry(struct db *d, int fd, uint64_t size, uint32_t *ps, uint32_t *npages, uint8_t hdr[100])
{
    int rc;

    if (size == 0) {
        *ps = d->map.page_size ? d->map.page_size : 4096;
        *npages = 0;
        return 0;
    }
    rc = db_read_page(fd, hdr, DBHDR_SIZE, 0);
    if (rc)
        return rc;
    if (!dbhdr_valid(hdr))
        return LV_ENOTSQLITE;
    *ps = dbhdr_page_size(hdr);
    *npages = dbhdr_pages(hdr, size, *ps);
    return 0;
}

int db_changes_add(struct changes *c, uint32_t pgno, int fd, uint64_t off, uint64_t h)
{
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        struct change *v = realloc(c->v, nc * sizeof *v);
        if (!v)
            return LV_ENOMEM;
        c->v = v;
        c->cap = nc;
    }
    c->v[c->n++] = (struct change){pgno, fd, off, h};
    return 0;
}

int db_change_cmp(const void *a, const void *b)
{
    const struct change *x = a, *y = b;
    return x->pgno < y->pgno ? -1 : x->pgno > y->pgno;
}


/* Escape name for a flat directory name: '%' -> %25, '/' -> %2F. */
static void escape_name(const char *name, char *out, size_t n)
{
    size_t j = 0;
    for (const char *p = name; *p && j + 4 < n; p++) {
        if (*p == '%' || *p == '/') {
            snprintf(out + j, n - j, "%%%02X", (unsigned char)*p);
            j += 3;
        } else {
            out[j++] = *p;
        }
    }
    out[j] = 0;
}


/* ---------------------------------------------------------- durability */

int db_wal_syncs_commits(const struct db *d)
{
    return d->wal_fsync_streak >= 2 && d->recs_since_wal_fsync <= 2;
}

void db_durable_to(struct db *d, uint64_t txid)
{
    if (txid > d->txid)
        txid = d->txid;
    if (txid <= d->durable_txid)
        return;
    __atomic_store_n(&d->durable_txid, txid, __ATOMIC_RELEASE);
    if (txid < d->txid)
        d->undurable_mono = lv_mono_us(); /* (at most: the oldest record left is younger) */
    if (d->durable_wanted) {
        d->durable_wanted = 0;
        dbreg_bump_seq(d->reg);
    }
}

void db_durable_reset(struct db *d)
{
    __atomic_store_n(&d->durable_txid, 0, __ATOMIC_RELEASE);
    d->undurable_mono = lv_mono_us();
}

void db_log_synced(struct db *d)
{
    d->log_unsynced = 0;
    d->wal_anchored |= d->tail_in_wal;
    db_durable_to(d, d->txid);
}

/* ---------------------------------------------------------------- dirty set */

int db_dirty_mark(struct db *d, uint64_t off, uint64_t len)
{
    if (len == 0)
        return 0;
    uint64_t g0 = off / DB_GRANULE, g1 = (off + len - 1) / DB_GRANULE;
    size_t need = (size_t)(g1 / 64 + 1);
    if (need > d->dirty_words) {
        size_t nw = d->dirty_words ? d->dirty_words : 64;
        while (nw < need)
            nw *= 2;
        uint64_t *v = realloc(d->dirty, nw * sizeof *v);
        if (!v)
            return LV_ENOMEM;
        memset(v + d->dirty_words, 0, (nw - d->dirty_words) * sizeof *v);
        d->dirty = v;
        d->dirty_words = nw;
    }
    for (uint64_t g = g0; g <= g1; g++)
        d->dirty[g / 64] |= 1ull << (g % 64);
    if (!d->dirty_any || g0 < d->dmin)
        d->dmin = g0;
    if (!d->dirty_any || g1 > d->dmax)
        d->dmax = g1;
    d->dirty_any = 1;
    return 0;
}

void db_dirty_clear(struct db *d)
{
    if (d->dirty_any)
        memset(d->dirty + d->dmin / 64, 0, (size_t)(d->dmax / 64 - d->dmin / 64 + 1) * sizeof(uint64_t));
    d->dirty_any = 0;
    d->size_changed = 0;
    d->resv_pages = 0;
    d->resv_refused = 0;
}

/* Is any granule of page p (size ps) dirty? */
int db_dirty_page(const struct db *d, uint32_t p, uint32_t ps)
{
    uint64_t g = (uint64_t)(p - 1) * ps / DB_GRANULE;

    if (!d->dirty_any)
        return 0;
    for (uint64_t k = g; k < g + (ps + DB_GRANULE - 1) / DB_GRANULE; k++)
        if (k / 64 < d->dirty_words && (d->dirty[k / 64] >> (k % 64) & 1))
            return 1;
    return 0;
}

/* Call fn for every page (of size ps) that has a dirty granule, ascending. */
int db_dirty_pages(struct db *d, uint32_t ps, int (*fn)(void *, uint32_t), void *arg)
{
    uint32_t last = 0;
    if (!d->dirty_any)
        return 0;
    for (uint64_t w = d->dmin / 64; w <= d->dmax / 64; w++) {
        uint64_t bits = d->dirty[w];
        while (bits) {
            int b = __builtin_ctzll(bits);
            bits &= bits - 1;
            uint64_t g = w * 64 + (uint64_t)b;
            uint32_t p = (uint32_t)(g * DB_GRANULE / ps + 1);
            if (p != last) {
                int rc = fn(arg, p);
                if (rc)
                    return rc;
                last = p;
            }
        }
    }
    return 0;
}

/* Overlay of the committed frames 0..nframes-1 of the WAL walfd. */
int db_overlay_build(int walfd, uint32_t ps, uint32_t nframes, struct overlay *o)
{
    struct changes c = {0};
    uint8_t fh[WAL_FRAME_HDR_SIZE];
    int rc = 0;
    for (uint32_t i = 0; i < nframes; i++) {
        uint64_t off = wal_frame_off(i, ps);
        rc = sys_pread_all(walfd, fh, sizeof fh, (off_t)off, "wal");
        if (rc)
            break;
        rc = db_changes_add(&c, lv_get32(fh), walfd, off + WAL_FRAME_HDR_SIZE, i);
        if (rc)
            break;
    }
    qsort(c.v, c.n, sizeof *c.v, db_change_cmp);
    size_t j = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (j > 0 && c.v[j - 1].pgno == c.v[i].pgno) {
            if (c.v[i].h > c.v[j - 1].h)
                c.v[j - 1] = c.v[i];
            continue;
        }
        c.v[j++] = c.v[i];
    }
    o->v = c.v;
    o->n = j;
    return rc;
}

const struct change *db_overlay_find(const struct overlay *o, uint32_t pgno)
{
    size_t lo = 0, hi = o->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (o->v[mid].pgno < pgno)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < o->n && o->v[lo].pgno == pgno ? &o->v[lo] : NULL;
}


/* ---------------------------------------------------------------- identity */

/* meta/NAME/id: the database ID in 32 hex digits and a newline. */
int db_write_id(struct db *d)
{
    char path[PATH_MAX + 8], hex[34];
    lv_hex(d->id, 16, hex);
    hex[32] = '\n';
    hex[33] = 0;
    snprintf(path, sizeof path, "%s/id", d->metadir);
    return publish_buf(path, hex, 33);
}

int db_read_id(struct db *d)
{
    char path[PATH_MAX + 8];
    void *data = NULL;
    size_t len = 0;
    int rc;
    snprintf(path, sizeof path, "%s/id", d->metadir);
    rc = sys_read_file(path, &data, &len);
    if (rc)
        return rc;
    rc = LV_ECORRUPT;
    if (len >= 32) {
        char hex[33];
        memcpy(hex, data, 32);
        hex[32] = 0;
        rc = lv_unhex(hex, d->id, 16) == 0 ? 0 : LV_ECORRUPT;
    }
    free(data);
    return rc;
}

void db_metadir_path(const char *data_dir, const char *name, char *out, size_t n)
{
    char esc[PATH_MAX];
    escape_name(name, esc, sizeof esc);
    if (strlen(esc) > 200) {
        char hx[17];
        cksum_hex(cksum_buf(name, strlen(name)), hx);
        snprintf(esc + 150, sizeof esc - 150, "~%s", hx);
    }
    snprintf(out, n, "%s/meta/%s", data_dir, esc);
}

void db_set_metadir(struct db *d)
{
    db_metadir_path(d->reg->data_dir, d->name, d->metadir, sizeof d->metadir);
}

int db_open_log(struct db *d, struct txlog_tail *tail)
{
    char dir[PATH_MAX + 8], err[512] = "";
    snprintf(dir, sizeof dir, "%s/log", d->metadir);
    int rc = txlog_open(dir, d->id, d->reg->segment_size, &d->log, tail, err, sizeof err);
    if (rc)
        db_fail(d, "the transaction log is damaged: %s (move %s aside to start a new history, or restore it)",
             err[0] ? err : lv_strerror(rc), dir);
    return rc;
}

/* Move the metadata directory dir into retired/ as <its name>.<tag>; 0 or LV_EIO. */
int db_retire_dir(struct dbreg *r, const char *dir, const char *tag)
{
    char dst[PATH_MAX * 2];
    const char *base = strrchr(dir, '/');
    base = base ? base + 1 : dir;
    snprintf(dst, sizeof dst, "%s/%.*s.%s", r->retired, 180, base, tag);
    if (rename(dir, dst) != 0) {
        LV_ERROR("rename %s -> %s: %s", dir, dst, strerror(errno));
        return LV_EIO;
    }
    LV_INFO("moved %s to %s", dir, dst);
    return 0;
}

/* UNKNOWN -> SQLITE: new identity, meta directory and empty log. */
int db_promote(struct db *d) { return db_promote_id(d, NULL); }

int db_promote_id(struct db *d, const uint8_t *id)
{
    struct txlog_tail tail;
    int rc;
    if (id)
        memcpy(d->id, id, sizeof d->id);
    else if (getrandom(d->id, sizeof d->id, 0) != (ssize_t)sizeof d->id) {
        LV_ERROR("getrandom: %s", strerror(errno));
        return LV_EIO;
    }
    db_set_metadir(d);
    struct stat st;
    if (stat(d->metadir, &st) == 0) {
        /* Metadata of an earlier database of this name that was not
         * retired: keep it, but never mix it with the new history. */
        char tag[48];
        snprintf(tag, sizeof tag, "stale-%lld", (long long)lv_now_us());
        if (db_retire_dir(d->reg, d->metadir, tag) != 0)
            return LV_EIO;
    }
    rc = sys_mkdir_p(d->metadir);
    if (rc == 0)
        rc = db_write_id(d);
    if (rc) {
        LV_ERROR("%s: cannot create %s: %s", d->name, d->metadir, lv_strerror(rc));
        return rc;
    }
    rc = db_open_log(d, &tail);
    if (rc)
        return rc;
    d->kind = DBK_SQLITE;
    cksum_map_init(&d->map);
    d->txid = 0;
    db_durable_reset(d); /* C10 */
    char hex[33];
    lv_hex(d->id, 16, hex);
    LV_INFO("%s: new database, id %s", d->name, hex);
    return 0;
}


int db_classify(const char *rel, enum db_filekind *kind, char *dbname, size_t n)
{
    static const struct { const char *suf; enum db_filekind k; } sufs[] = {
        {"-journal", DBF_JOURNAL}, {"-wal", DBF_WAL}, {"-shm", DBF_SHM}};
    size_t len = strlen(rel);
    if (len + 1 > n)
        return -1;
    *kind = DBF_MAIN;
    memcpy(dbname, rel, len + 1);
    for (size_t i = 0; i < LV_ARRAY_LEN(sufs); i++) {
        size_t sl = strlen(sufs[i].suf);
        if (len > sl && strcmp(rel + len - sl, sufs[i].suf) == 0) {
            *kind = sufs[i].k;
            dbname[len - sl] = 0;
            break;
        }
    }
    return 0;
}

/* Scan one directory level of files/ (relative dir rel, "" for the root). */
