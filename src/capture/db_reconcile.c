/*
 * db_reconcile.c -- start-up: load a database's log and checksum state and
 * reconcile them with the files (db_load, called by the registry's scan).
 *
 * 1. db_load opens and verifies the log (txlog_open), reads the saved
 *    journal mode, loads the checksum map from meta/NAME/state and rolls
 *    it forward with the page checksums of the records after it
 *    (replay_hashes), which also marks their pages as candidates; the map
 *    must then equal the last record's post checksum (C4 of db.c).
 * 2. reconcile compares the files with the map:
 *    - a hot journal is left alone (SQLite rolls it back through the mount
 *      on its next open, and that is captured like any write; the commit
 *      that ends the rollback also compares the freelist leaves, which
 *      SQLite changes without journaling them: db_dirty_free_leaves);
 *    - commits in the WAL after the last logged WAL position become
 *      RECOVERED records, one per transaction;
 *    - candidate pages (records after the state, WAL pages, growth) are
 *      compared with the map: differences become one RECOVERED record; a
 *      database never captured, or of another page size, a snapshot.
 *    Every database logs the outcome ("log agrees with the database at
 *    TXID N (checked K pages)"): a disagreement is never silent.
 * Runs with d->mu held, before the mount serves requests.  Failures mark
 * the database broken; the others keep working.
 */
#include "capture/db.h"
#include "capture/db_impl.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cksum.h"
#include "base/dbhdr.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"
#include "log/txlog.h"
#include "log/wal.h"

/* Roll the map forward with the page checksums of records > from (marking
 * their pages as reconcile candidates).  0 or negative. */
static int replay_hashes(struct db *d, uint64_t from)
{
    char dir[PATH_MAX + 8];
    struct txlog_reader *r = NULL;
    struct txlog_hdr h;
    int rc;
    snprintf(dir, sizeof dir, "%s/log", d->metadir);
    rc = txlog_reader_open(dir, from + 1, &r);
    if (rc)
        return rc;
    while ((rc = txlog_reader_next(r, &h)) == 0) {
        if (h.flags & TXLOG_F_SNAPSHOT || d->map.page_size != h.page_size)
            cksum_map_reset(&d->map, h.page_size);
        rc = cksum_map_resize(&d->map, h.db_pages);
        if (rc)
            break;
        uint32_t pgno;
        const void *data;
        while ((rc = txlog_reader_page(r, &pgno, &data)) == 0) {
            cksum_map_set(&d->map, pgno, cksum_page(pgno, data, h.page_size));
            db_dirty_mark(d, (uint64_t)(pgno - 1) * h.page_size, h.page_size);
        }
        if (rc != LV_ENOENT)
            break;
        if (d->map.total != h.post_cksum) {
            LV_ERROR("%s: TXID %llu: pages do not add up to the post checksum", d->name,
                     (unsigned long long)h.txid);
            rc = LV_ECORRUPT;
            break;
        }
        rc = 0;
    }
    if (rc == LV_ENOENT)
        rc = 0;
    txlog_reader_close(r);
    return rc;
}

/* Sorted (pgno, offset) overlay of committed WAL frames. */

/* Is there a hot journal?  It is left alone: SQLite rolls it back through
 * the mount on its next open, and whatever that changes is logged. */
static int reconcile_hot_journal(struct db *d)
{
    char rel[PATH_MAX];
    uint8_t jm[8];
    int jfd;

    snprintf(rel, sizeof rel, "%s-journal", d->name);
    jfd = openat(d->reg->rootfd, rel, O_RDONLY | O_CLOEXEC);
    if (jfd < 0)
        return 0;
    if (pread(jfd, jm, 8, 0) == 8 && memcmp(jm, db_journal_magic, 8) == 0) {
        d->journal_active = 1;
        d->hot_rollback = 1;
        LV_WARN("%s: hot journal found; SQLite will roll it back on next open, and litevault logs "
                "whatever that changes",
                d->name);
    }
    close(jfd);
    return d->journal_active;
}

/*
 * The rollback of a hot journal found at start-up is ending (journal_commit).
 * The journal's pages are dirty already (the rollback wrote them back), and
 * pages past the original size are truncated away; but SQLite does not
 * journal a freelist leaf that a transaction reuses (PAGER_GET_NOCONTENT:
 * its old content does not matter), so the dead transaction may have left
 * such a page changed, by a write made before the restart that no dirty set
 * remembers.  Those pages are leaves of the freelist as it is after the
 * rollback (the transaction's start): mark them dirty, so that the commit
 * compares them with the log.  A freelist that cannot be walked (a loop, a
 * page number past the end) marks every page.
 */
int db_dirty_free_leaves(struct db *d)
{
    uint8_t hdr[DBHDR_SIZE];
    uint8_t *buf = NULL;
    struct stat st;
    uint32_t ps, npages, trunk, seen = 0, leaves = 0;
    int fd = db_main_fd(d), rc, bad = 0;

    if (fd < 0 || fstat(fd, &st) != 0)
        return LV_EIO;
    rc = db_hdr_geometry(d, fd, (uint64_t)st.st_size, &ps, &npages, hdr);
    if (rc == LV_ENOTSQLITE)
        return 0; /* db_capture_rollback refuses the commit */
    if (rc || npages == 0)
        return rc;
    buf = malloc(ps);
    if (!buf)
        return LV_ENOMEM;
    for (trunk = lv_get32(hdr + 32); trunk && !bad && rc == 0; trunk = lv_get32(buf)) {
        if (trunk > npages || ++seen > npages) {
            bad = 1;
            break;
        }
        rc = db_read_page(fd, buf, ps, (uint64_t)(trunk - 1) * ps);
        uint32_t n = rc ? 0 : lv_get32(buf + 4);
        if (n > ps / 4 - 2) {
            bad = 1;
            break;
        }
        for (uint32_t i = 0; i < n && !bad && rc == 0; i++) {
            uint32_t leaf = lv_get32(buf + 8 + 4 * i);
            if (leaf == 0 || leaf > npages)
                bad = 1;
            else
                rc = db_dirty_mark(d, (uint64_t)(leaf - 1) * ps, ps);
        }
        leaves += n;
    }
    if (bad) {
        LV_WARN("%s: the freelist cannot be walked after the rollback of a hot journal; comparing every page "
                "with the log", d->name);
        rc = db_dirty_mark(d, 0, (uint64_t)npages * ps);
    } else if (rc == 0 && leaves) {
        LV_INFO("%s: the rollback of a hot journal ended; comparing the %u free pages with the log", d->name,
                leaves);
    }
    free(buf);
    return rc;
}

/* What start-up found in the WAL. */
struct recon_wal {
    int fd;                 /* the WAL, read-only, or -1 */
    struct wal_hdr wh;      /* its header (magic 0: none) */
    struct wal_commit *cm;  /* its committed transactions (owned) */
    size_t ncm;             /* their number */
};

/* Open and scan the WAL; adopt its header as the current WAL position. */
static int reconcile_wal_open(struct db *d, struct recon_wal *w)
{
    char rel[PATH_MAX];
    int rc;

    snprintf(rel, sizeof rel, "%s-wal", d->name);
    w->fd = openat(d->reg->rootfd, rel, O_RDONLY | O_CLOEXEC);
    if (w->fd < 0)
        return 0;
    rc = wal_scan(w->fd, rel, &w->wh, &w->cm, &w->ncm);
    if (rc || !w->wh.magic)
        return rc;
    d->wal_valid = 1;
    d->wal_psz = w->wh.page_size;
    d->wal_salt1 = w->wh.salt1;
    d->wal_salt2 = w->wh.salt2;
    d->wal_next = w->ncm ? w->cm[w->ncm - 1].last + 1 : 0;
    d->wal_magic = w->wh.magic;
    /* the capture goes on after the WAL's last commit (reconcile_wal_commits
     * logs those the log lacks) */
    memset(&d->wcur, 0, sizeof d->wcur);
    d->wcur.h = w->wh;
    d->wcur.next = d->wal_next;
    d->wcur.s[0] = w->ncm ? w->cm[w->ncm - 1].ck[0] : w->wh.ck1;
    d->wcur.s[1] = w->ncm ? w->cm[w->ncm - 1].ck[1] : w->wh.ck2;
    return 0;
}

/* (a) Commits in the WAL after the last logged one become records, one
 * per transaction.  The last record names the WAL generation (salts) and
 * frame it came from.  The same generation: the commits after that frame
 * are new.  The next generation (salt-1 one more: SQLite's restart of that
 * WAL): SQLite restarted it only after a checkpoint copied every frame of
 * the old one, and the log was fsynced before that checkpoint's first
 * write (C7 of db.c), so every commit of the current WAL is new (a power
 * loss took their records with the log's unsynced tail).  Anything else
 * (a WAL of an older or unrelated generation, or a last record that names
 * no WAL: a repair, a snapshot, a rollback-mode commit) is left to the
 * comparison of candidate pages.  With synchronous=FULL the log is fsynced
 * at the first commit of each generation, so the durable tail names the
 * current one. */
static int reconcile_wal_commits(struct db *d, const struct txlog_tail *tail, const struct recon_wal *w)
{
    uint32_t from;
    int rc;

    if (!w->ncm || !tail->last_wal_frame || d->map.npages == 0)
        return 0;
    if (tail->last_wal_salt1 == w->wh.salt1 && tail->last_wal_salt2 == w->wh.salt2)
        from = tail->last_wal_frame;
    else if (w->wh.salt1 == tail->last_wal_salt1 + 1)
        from = 0;
    else
        return 0;
    for (size_t i = 0; i < w->ncm; i++) {
        if (w->cm[i].last + 1 <= from)
            continue;
        rc = db_capture_wal(d, w->fd, w->cm[i].first, w->cm[i].last, w->cm[i].db_pages, TXLOG_F_RECOVERED, NULL);
        if (rc)
            return rc;
    }
    return 0;
}

/* Page size and size of the logical database (the WAL's last commit, else
 * the main file), and the overlay of its committed WAL frames. */
static int reconcile_geometry(struct db *d, int fd, uint64_t size, const struct recon_wal *w, uint32_t *ps,
                              uint32_t *npages, struct overlay *ov)
{
    uint8_t hdr[DBHDR_SIZE];
    int rc;

    if (w->ncm) {
        *ps = w->wh.page_size;
        *npages = w->cm[w->ncm - 1].db_pages;
        return db_overlay_build(w->fd, *ps, w->cm[w->ncm - 1].last + 1, ov);
    }
    rc = db_hdr_geometry(d, fd, size, ps, npages, hdr);
    if (rc == LV_ENOTSQLITE)
        db_fail(d, "the database file does not start with a valid SQLite header");
    return rc;
}

/* Candidate pages and the pages they are compared with. */
struct recon_pages {
    int fd;                    /* the main file */
    int walfd;                 /* the WAL, or -1 */
    const struct overlay *ov;  /* committed WAL frames: their pages are read there */
    uint32_t ps, npages;       /* the logical database */
    int snapshot;              /* compare every page and log them all */
    uint32_t checked;          /* pages read */
};

/* (b) Compare the candidate pages of the logical database with the map
 * (every page for a snapshot); the differing ones go into c. */
static int reconcile_compare(struct db *d, struct recon_pages *k, struct changes *c)
{
    uint32_t ps = k->ps;
    uint8_t *buf = malloc(ps);
    int rc = 0;

    if (!buf)
        return LV_ENOMEM;
    if (!k->snapshot) {
        for (size_t i = 0; i < k->ov->n; i++)
            db_dirty_mark(d, (uint64_t)(k->ov->v[i].pgno - 1) * ps, ps);
        if (k->npages > d->map.npages)
            db_dirty_mark(d, (uint64_t)d->map.npages * ps, (uint64_t)(k->npages - d->map.npages) * ps);
    }
    for (uint32_t p = 1; p <= k->npages && rc == 0; p++) {
        if (!k->snapshot && !db_dirty_page(d, p, ps))
            continue;
        const struct change *o = db_overlay_find(k->ov, p);
        int sfd = o ? k->walfd : k->fd;
        uint64_t off = o ? o->off : (uint64_t)(p - 1) * ps;
        rc = db_read_page(sfd, buf, ps, off);
        if (rc)
            break;
        uint64_t h = cksum_page(p, buf, ps);
        k->checked++;
        if (!k->snapshot && h == db_map_before(d, p, ps))
            continue;
        rc = db_changes_add(c, p, sfd, off, h);
    }
    free(buf);
    return rc;
}

/* Log what reconcile_compare found: a snapshot (first capture, or the
 * database differs in page size or wholesale) or one repair record. */
static int reconcile_log(struct db *d, const struct recon_pages *k, struct changes *c, uint64_t txid0)
{
    int rc = 0;

    if (k->snapshot) {
        uint64_t total = 0;
        for (size_t i = 0; i < c->n; i++)
            total ^= c->v[i].h;
        if (d->txid > 0 && total == d->map.total && k->npages == d->map.npages && k->ps == d->map.page_size)
            return 0; /* full check found agreement */
        if (k->npages == 0 && d->txid == 0)
            return 0;
        rc = db_emit(d, TXLOG_F_SNAPSHOT | (d->txid ? TXLOG_F_RECOVERED : 0), k->ps, k->npages, c, 0, 0, 0);
        if (rc)
            return rc;
        if (txid0 > 0)
            LV_WARN("%s: the database differed from the log; wrote snapshot record TXID %llu", d->name,
                    (unsigned long long)d->txid);
        else
            LV_INFO("%s: first capture of an existing database: snapshot record TXID %llu (%u pages)", d->name,
                    (unsigned long long)d->txid, k->npages);
    } else if (c->n > 0 || k->npages != d->map.npages) {
        rc = db_emit(d, TXLOG_F_RECOVERED, k->ps, k->npages, c, 0, 0, 0);
        if (rc)
            return rc;
        LV_WARN("%s: repaired: %zu pages differed from the log; wrote record TXID %llu", d->name, c->n,
                (unsigned long long)d->txid);
    }
    return rc;
}

/*
 * Reconcile the map (state after the last record) with the files.  See
 * the design comment.  full: compare every page (no state was available).
 */
static int reconcile(struct db *d, const struct txlog_tail *tail, int full)
{
    struct recon_wal w = {.fd = -1};
    struct recon_pages k = {.walfd = -1};
    struct overlay ov = {0};
    struct changes c = {0};
    struct stat st;
    uint64_t txid0 = d->txid;
    int rc;

    k.fd = db_main_fd(d);
    if (k.fd < 0 || fstat(k.fd, &st) != 0) {
        rc = LV_EIO;
        goto out_free;
    }
    if (reconcile_hot_journal(d)) {
        rc = 0;
        goto out_free;
    }
    rc = reconcile_wal_open(d, &w);
    if (!rc)
        rc = reconcile_wal_commits(d, tail, &w);
    if (!rc)
        rc = reconcile_geometry(d, k.fd, (uint64_t)st.st_size, &w, &k.ps, &k.npages, &ov);
    if (rc)
        goto out_free;
    k.walfd = w.fd;
    k.ov = &ov;
    k.snapshot = full || d->map.npages == 0 || d->map.page_size != k.ps;
    rc = reconcile_compare(d, &k, &c);
    if (!rc)
        rc = reconcile_log(d, &k, &c, txid0);
    if (rc)
        goto out_free;
    if (d->txid > txid0)
        rc = txlog_sync(d->log);
    LV_INFO("%s: log agrees with the database at TXID %llu (checked %u pages%s)", d->name,
            (unsigned long long)d->txid, k.checked, d->txid > txid0 ? ", after repair" : "");
out_free:
    db_dirty_clear(d);
    free(c.v);
    free(ov.v);
    free(w.cm);
    if (w.fd >= 0)
        close(w.fd);
    return rc;
}

/* The journal mode saved in meta/NAME/journal-mode, if any. */
static void load_jmode(struct db *d)
{
    char path[PATH_MAX + 16];
    void *jm = NULL;
    size_t jl = 0;

    snprintf(path, sizeof path, "%s/journal-mode", d->metadir);
    if (sys_read_file(path, &jm, &jl) != 0)
        return;
    for (int i = 1; i < (int)LV_ARRAY_LEN(db_jmode_names); i++)
        if (jl >= strlen(db_jmode_names[i]) && strncmp(jm, db_jmode_names[i], strlen(db_jmode_names[i])) == 0)
            d->jmode = d->jmode_saved = (enum jmode)i;
    free(jm);
}

/* Load meta/NAME/state into the map; *stxid gets the TXID it reflects (0
 * and an empty map when it is missing, damaged, foreign or ahead of the
 * log: then *full is set). */
static void load_state(struct db *d, const struct txlog_tail *tail, uint64_t *stxid, int *full)
{
    char path[PATH_MAX + 8];
    uint8_t sid[16];
    int rc;

    cksum_map_init(&d->map);
    snprintf(path, sizeof path, "%s/state", d->metadir);
    rc = cksum_state_load(path, &d->map, sid, stxid);
    if (rc == 0 && (memcmp(sid, d->id, 16) != 0 || *stxid > tail->last_txid)) {
        LV_WARN("%s: state file is ahead of or foreign to the log (TXID %llu > %llu); rebuilding it from the log",
                d->name, (unsigned long long)*stxid, (unsigned long long)tail->last_txid);
        cksum_map_free(&d->map);
        cksum_map_init(&d->map);
        rc = LV_ENOENT;
    }
    if (rc != 0) {
        if (rc != LV_ENOENT)
            LV_WARN("%s: state file %s is damaged (%s); rebuilding it from the log", d->name, path,
                    lv_strerror(rc));
        *stxid = 0;
        *full = 1;
    }
}

/* Open the log and bring the map to its last record (C4).  0, or the
 * database is broken. */
static int load_log(struct db *d, struct txlog_tail *tail, int *full)
{
    uint64_t stxid = 0;
    int rc;

    if (db_read_id(d) != 0) {
        db_fail(d, "%s/id is missing or damaged", d->metadir);
        return LV_ECORRUPT;
    }
    d->kind = DBK_SQLITE;
    rc = db_open_log(d, tail);
    if (rc)
        return rc;
    load_jmode(d);
    load_state(d, tail, &stxid, full);
    rc = replay_hashes(d, stxid);
    if (rc == 0 && tail->last_txid && d->map.total != tail->last_post)
        rc = LV_ECORRUPT;
    if (rc) {
        db_fail(d, "the transaction log does not add up (%s); move %s aside to start a new history",
                lv_strerror(rc), d->metadir);
        return rc;
    }
    d->txid = tail->last_txid;
    db_durable_reset(d); /* C10: durable once db_load fsyncs the log */
    d->last_time = tail->last_time_us;
    d->saved_txid = stxid;
    d->saved_valid = stxid > 0;
    if (tail->torn_bytes)
        *full = 0; /* candidates from the log suffice; the WAL covers the rest */
    return 0;
}

/* Load an existing SQLite database at start-up.  Failures mark it broken. */
void db_load(struct db *d)
{
    struct txlog_tail tail;
    struct stat st;
    int rc, full = 0;

    memset(&tail, 0, sizeof tail);
    db_set_metadir(d);
    if (stat(d->metadir, &st) != 0) {
        if (db_promote(d) != 0) {
            db_fail(d, "cannot set up its metadata directory %s", d->metadir);
            return;
        }
        full = 1;
    } else if (load_log(d, &tail, &full) != 0) {
        return;
    }
    if (full && d->txid > 0) {
        /* No state: every page the log touched is a candidate already; a
         * snapshot comparison is only needed for a first capture. */
        full = 0;
    }
    rc = reconcile(d, &tail, full || d->txid == 0 || d->reg->verify_files);
    if (rc && !d->broken)
        db_fail(d, "start-up reconcile failed: %s", lv_strerror(rc));
    /* What the log holds now is durable from here on (C10 of db.c): the tail an
     * earlier process wrote may have been in the page cache only. */
    if (!d->broken && d->log) {
        if (txlog_sync(d->log) == 0)
            db_log_synced(d);
        else
            db_fail(d, "fsync of the transaction log failed");
    }
    db_assert_state(d);
}
