/*
 * primary.c -- the primary's replication streams (see primary.h; the
 * protocol is in docs/DESIGN.md, "Replication").
 *
 * THREADS.  Each stream runs on its HTTP connection's own thread, inside
 * primary_conn_read (http_response.stream_fn): it builds frames into the
 * connection's output buffer and hands them out as the server asks; when
 * there is nothing to send it blocks in dbreg_wait_commit (at most until
 * the next heartbeat is due, at most 1 s), so a commit wakes it at once: no
 * polling timer sits between a commit and its RECORD frame.  A snapshot
 * image is written by a one-shot worker thread (dbreg_image may take long;
 * meanwhile the stream keeps sending other databases' records and
 * heartbeats, and checks the image every 50 ms).
 *
 * PER STREAM, PER DATABASE (struct pdb: the database as this replica has
 * it, as far as this stream knows).  States:
 *   UNSTARTED (!started): its position (reported by the replica, or none)
 *     is not yet checked; the primary has logged nothing for it yet, or
 *     the stream just began.
 *   STREAMING (started, snap == PS_NONE): rd, when open, is positioned
 *     after txid; records txid+1.. are sent as they appear.
 *   SNAPSHOT (snap != PS_NONE): QUEUED -> IMAGING (worker) -> SENDING
 *     (SNAP_BEGIN sent, pages in chunks of <= 4 MiB) -> STREAMING at the
 *     image's TXID after SNAP_END.
 *   FAILED: the primary could not read this database (logged once); the
 *     stream goes on for the others.
 * Moves: the scan (on every change of the commit sequence) lists the
 * databases, plans names (repl_plan_names: DROP and RENAME frames),
 * starts new databases (repl_plan_start) and sends new records.  A record
 * is sent only if it continues the replica's copy (repl_continues), so
 * the first record after any (re)positioning is checked against the
 * replica's checksum; when the log no longer holds the next record
 * (pruned, retired, a record too large for one frame), the database is
 * queued for a snapshot.
 * Invariants:
 *   P1. Frames of one database leave in its history's order: records only
 *       ever continue pdb->txid; a snapshot's pages sit between its
 *       SNAP_BEGIN and SNAP_END, and its records come after SNAP_END.
 *   P2. pdb->txid/cksum is exactly what the replica will hold once it has
 *       applied every frame sent so far.
 *   P3. At most one snapshot per stream is being imaged or sent.
 *
 * RETENTION.  Each pdb's ret_txid is the position retention protects: the
 * sent position as it was 10 to 20 s earlier (records still in flight or
 * in the replica's pending batch are kept too), or none while a snapshot
 * is queued.  A replica's entry (struct prep) outlives its stream by
 * PR_GRACE_US, so a quick reconnect finds its records.  primary_retain
 * takes the minimum over every entry and bounds what it keeps with
 * repl_retain_point.
 *
 * LOCKING.  p->mu guards the list of replicas (struct prep), their
 * counters and the position fields of their pdbs (name, id, have, txid,
 * cksum, ret_txid), which /status and the archiver's monitor read; the
 * stream's thread writes those under p->mu and reads them without it (it
 * is their only writer).  Everything else in a pdb and in a connection
 * belongs to the stream's thread.  A snapshot job has its own mutex
 * (done, rc, info).  No lock is held while calling into the registry.
 */
#include "replica/primary.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/http.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/metrics.h"
#include "base/sys.h"
#include "base/worker.h"
#include "capture/db.h"
#include "log/txlog.h"
#include "replica/plan.h"
#include "replica/stream.h"

#define PR_HEARTBEAT_US 1000000LL       /* a HEARTBEAT after this long without a frame */
#define PR_WAIT_MS 1000                 /* longest block in one primary_conn_read */
#define PR_IMAGE_POLL_MS 50             /* how often an imaging stream looks at the job */
#define PR_CHUNK (4u << 20)             /* snapshot page bytes per SNAP_PAGES frame */
#define PR_ROUND_BYTES (4u << 20)       /* frames built per round before they are handed out */
#define PR_ROUND_RECORDS 256            /* records of one database per round (fairness) */
#define PR_MAX_RECORD (STREAM_DEFAULT_MAX_FRAME - (1u << 16)) /* larger records go as a snapshot */
#define PR_GRACE_US (60 * 1000000LL)    /* a gone replica's positions are kept this long */
#define PR_RETAIN_CK_US (10 * 1000000LL) /* retention lags the sent position by 10 to 20 s */
#define PR_IMAGE_TIMEOUT_MS 30000       /* dbreg_image's wait for a transaction to end */
#define PR_SNAP_RETRY_US 1000000LL      /* a busy image is tried again after */
#define PR_SNAP_ROOM_RETRY_US 5000000LL /* an image refused for lack of room is tried again after */
#define PR_DEFAULT_RETAIN (1LL << 30)
#define PR_DEFAULT_SYNC_TIMEOUT_US (5 * 1000000LL) /* replication.sync-timeout unset */
#define PR_SYNC_POLL_US 50000                      /* a waiting commit looks at the fence this often */
#define PR_NO_RETAIN UINT64_MAX

enum { BT_RECORD = 0, BT_SNAPSHOT, BT_OTHER, BT_N };
static const char *const bt_names[BT_N] = {"record", "snapshot", "other"};

enum { PS_NONE = 0, PS_QUEUED, PS_IMAGING, PS_SENDING };

/* One database as one replica has it (see LOCKING for who touches what). */
struct pdb {
    char name[1024];          /* name on the replica (p->mu) */
    uint8_t id[16];           /* its ID (p->mu) */
    int have;                 /* the replica holds a copy (p->mu) */
    uint64_t txid, cksum;     /* its position after every frame sent (P2) (p->mu) */
    uint64_t ret_txid;        /* retention keeps the records after it; PR_NO_RETAIN: none (p->mu) */
    uint64_t acked;           /* the last TXID the replica says it holds (POST /v1/ack) (p->mu) */
    uint64_t ck_txid;         /* position at ck_mono, becomes ret_txid PR_RETAIN_CK_US later */
    int64_t ck_mono;
    int resync;               /* the replica asked for a snapshot */
    int started;              /* STREAMING or SNAPSHOT (see the state machine) */
    int snap;                 /* PS_* */
    int64_t snap_after;       /* QUEUED: not before (monotonic us) */
    int64_t est_bytes;        /* image size estimate when queued */
    int failed;               /* FAILED (logged) */
    int live;                 /* seen by the current scan */
    char logdir[4096];        /* the log rd reads */
    struct txlog_reader *rd;  /* positioned after txid, or NULL */
};

/* One replica, streaming or gone for less than PR_GRACE_US. */
struct prep {
    char node[72];            /* node ID it sent */
    char addr[128];           /* its address as the connection shows it (http_request.peer) */
    char url[512];            /* where it says it is (its advertise URL) */
    int connected;            /* its stream runs */
    int in_sync;              /* counts for sync-replicas: it acknowledged everything sent to it since its
                                 stream began, and has not let a commit wait out sync-timeout since (p->mu) */
    int superseded;           /* a newer stream of the same node replaced this one */
    int64_t since_us;         /* when the stream began (wall clock) */
    int64_t gone_mono;        /* when it ended (monotonic) */
    uint64_t bytes[BT_N];     /* frame bytes sent, by kind */
    uint64_t records;         /* RECORD frames sent */
    uint64_t snapshots;       /* snapshots begun */
    struct pdb *dbs;          /* its databases */
    size_t ndbs, cap;
    struct prep *next;
};

/* The image job of a stream (P3). */
struct psnap {
    int active;               /* PS_NONE, PS_IMAGING or PS_SENDING */
    char name[1024];          /* database being imaged or sent */
    int fd;                   /* image file (already unlinked), -1 */
    int64_t reserved;         /* bytes of the image-space budget held */
    struct worker *w;         /* the imaging thread while IMAGING */
    pthread_mutex_t mu;       /* guards done, rc, info */
    int done;                 /* the worker finished */
    int rc;                   /* dbreg_image's result */
    struct db_image_info info;
    uint32_t next_pgno;       /* SENDING: next page to send */
    struct dbreg *reg;        /* for the worker */
    int wait_durable;         /* for the worker: replication.wait-durable */
};

struct primary_conn {
    struct primary *p;
    struct prep *rep;         /* its entry in p->reps */
    uint8_t *out;             /* frames built, not yet handed out */
    size_t out_len, out_off, out_cap;
    int hello_sent;
    int ending;               /* hand out what is left, then end */
    int more;                 /* a round stopped early: scan again without waiting */
    uint64_t seq;             /* commit sequence of the last scan */
    int64_t rescan_mono;      /* scan again at (monotonic us), 0: only on a commit */
    int64_t last_emit_mono;   /* last frame built */
    struct psnap snap;
};

struct primary {
    struct dbreg *reg;
    char data_dir[PATH_MAX];
    char tmpdir[PATH_MAX];
    uint8_t cluster[16];
    char cluster_hex[33];
    char node[72];
    char url[1024];
    uint64_t max_retain;
    int (*image_reserve)(void *arg, int64_t bytes, char *msg, size_t msglen);
    void (*image_release)(void *arg, int64_t bytes);
    void *image_arg;
    pthread_mutex_t mu;       /* see LOCKING */
    struct prep *reps;
    int stopping;             /* atomic */
    uint64_t bytes[BT_N];     /* atomic: frame bytes sent, all streams */
    uint64_t records;         /* atomic */
    uint64_t snapshots;       /* atomic */
    uint64_t streams;         /* atomic: streams opened */
    uint64_t retain_cuts;     /* atomic: max-retain gave up a replica's records */
    int64_t last_cut_warn;    /* rate limit of that warning (p->mu) */
    int sync_n;               /* replication.sync-replicas (immutable) */
    int acks;                 /* replicas acknowledge even without sync_n (a lease that hands over) (immutable) */
    int64_t sync_timeout_us;  /* replication.sync-timeout (immutable) */
    int wait_durable;         /* replication.wait-durable: DBREG_DURABLE_* (immutable) */
    pthread_cond_t ack_cv;    /* broadcast on every acknowledgement and stream end (p->mu); CLOCK_MONOTONIC */
    int sync_short;           /* the last wait found fewer than sync_n replicas in sync (p->mu; logs once) */
    uint64_t sync_waits;      /* atomic: commits that waited for acknowledgements */
    uint64_t sync_timeouts;   /* atomic: waits that ran out of sync-timeout */
    uint64_t sync_skipped;    /* atomic: commits that did not wait (fewer than sync_n replicas in sync) */
    long test_delay_us;       /* test seam LV_TEST_STREAM_DELAY_US: each stream waits this long after a
                                 commit wakes it, as over a slow network (0 in production; immutable) */
};

/* ------------------------------------------------------------ replicas */

static void pdb_close(struct pdb *d)
{
    txlog_reader_close(d->rd);
    d->rd = NULL;
}

static void prep_free(struct prep *r)
{
    for (size_t i = 0; i < r->ndbs; i++)
        pdb_close(&r->dbs[i]);
    free(r->dbs);
    free(r);
}

/* Drop entries gone for longer than the grace period.  p->mu held. */
static void reap_gone(struct primary *p)
{
    int64_t now = lv_mono_us();

    for (struct prep **pp = &p->reps; *pp;) {
        struct prep *r = *pp;
        if (!r->connected && now - r->gone_mono > PR_GRACE_US) {
            *pp = r->next;
            prep_free(r);
        } else {
            pp = &r->next;
        }
    }
}

static struct pdb *find_pdb(struct prep *r, const char *name)
{
    for (size_t i = 0; i < r->ndbs; i++)
        if (strcmp(r->dbs[i].name, name) == 0)
            return &r->dbs[i];
    return NULL;
}

/* Append a database entry (p->mu held: the array may move). */
static struct pdb *add_pdb(struct prep *r, const char *name, const uint8_t id[16])
{
    if (lv_grow((void **)&r->dbs, &r->cap, r->ndbs, sizeof *r->dbs, 8) != 0)
        return NULL;
    struct pdb *d = &r->dbs[r->ndbs++];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    memcpy(d->id, id, 16);
    d->ret_txid = PR_NO_RETAIN;
    d->ck_mono = lv_mono_us();
    return d;
}

/* Remove entry i (p->mu held). */
static void del_pdb(struct prep *r, size_t i)
{
    pdb_close(&r->dbs[i]);
    memmove(&r->dbs[i], &r->dbs[i + 1], (r->ndbs - i - 1) * sizeof *r->dbs);
    r->ndbs--;
}

/* The replica's copy of d now ends at txid/cksum (P2).  p->mu held. */
static void pdb_advance(struct pdb *d, uint64_t txid, uint64_t cksum)
{
    int64_t now = lv_mono_us();

    d->have = 1;
    d->txid = txid;
    d->cksum = cksum;
    if (d->ret_txid == PR_NO_RETAIN) {
        d->ret_txid = d->ck_txid = txid;
        d->ck_mono = now;
    } else if (now - d->ck_mono >= PR_RETAIN_CK_US) {
        d->ret_txid = d->ck_txid;
        d->ck_txid = txid;
        d->ck_mono = now;
    }
}

/* ------------------------------------------------------------ output */

/* Queue frame f (len bytes, taken over) of kind bt. */
static int emit(struct primary_conn *c, uint8_t *f, size_t len, int bt)
{
    struct primary *p = c->p;

    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + len > c->out_cap) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + len > c->out_cap) {
            size_t nc = c->out_cap ? c->out_cap : 65536;
            while (nc < c->out_len + len)
                nc *= 2;
            uint8_t *nb = realloc(c->out, nc);
            if (!nb) {
                free(f);
                return LV_ENOMEM;
            }
            c->out = nb;
            c->out_cap = nc;
        }
    }
    memcpy(c->out + c->out_len, f, len);
    c->out_len += len;
    free(f);
    c->last_emit_mono = lv_mono_us();
    __atomic_add_fetch(&p->bytes[bt], len, __ATOMIC_RELAXED);
    pthread_mutex_lock(&p->mu);
    c->rep->bytes[bt] += len;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* Encode-and-queue helpers: rc of the encoder or of emit. */
static int emit_enc(struct primary_conn *c, int rc, uint8_t *f, size_t len, int bt)
{
    if (rc) {
        free(f);
        return rc;
    }
    return emit(c, f, len, bt);
}

static int emit_hello(struct primary_conn *c)
{
    struct primary *p = c->p;
    json_t *o = json_pack("{s:i,s:s,s:s,s:s,s:I,s:b,s:I}", "version", 2, "cluster", p->cluster_hex, "node",
                          p->node, "url", p->url, "time_us", (json_int_t)lv_now_us(), "acks",
                          p->sync_n > 0 || p->acks, "term", (json_int_t)dbreg_term(p->reg));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    uint8_t *f = NULL;
    size_t len = 0;
    int rc = s ? stream_enc_text(ST_HELLO, s, &f, &len) : LV_ENOMEM;

    free(s);
    json_decref(o);
    return emit_enc(c, rc, f, len, BT_OTHER);
}

static int emit_error_text(struct primary_conn *c, const char *msg)
{
    uint8_t *f = NULL;
    size_t len = 0;
    int rc = stream_enc_text(ST_ERROR, msg, &f, &len);

    return emit_enc(c, rc, f, len, BT_OTHER);
}

/* ------------------------------------------------------------ snapshots */

static void image_main(struct worker *w, void *arg)
{
    struct psnap *s = arg;
    struct db_image_info info;
    int rc;

    LV_UNUSED(w);
    memset(&info, 0, sizeof info);
    rc = dbreg_image(s->reg, s->name, s->fd, PR_IMAGE_TIMEOUT_MS, &info, NULL, NULL);
    /* The image goes out only once its TXID may be sent (C10 of db.c). */
    for (int64_t end = lv_mono_us() + PR_IMAGE_TIMEOUT_MS * 1000LL; rc == 0;) {
        uint64_t limit = 0;
        int64_t retry = 0;
        rc = dbreg_durable_limit(s->reg, s->name, s->wait_durable, &limit, &retry);
        if (rc || limit >= info.txid)
            break;
        if (lv_mono_us() >= end) {
            rc = LV_EBUSY; /* tried again later */
            break;
        }
        usleep(retry ? 1000 : 100);
    }
    pthread_mutex_lock(&s->mu);
    s->rc = rc;
    s->info = info;
    s->done = 1;
    pthread_mutex_unlock(&s->mu);
}

/* End the job (joining its worker), close the image, return its room. */
static void snap_release(struct primary_conn *c)
{
    struct psnap *s = &c->snap;
    struct primary *p = c->p;

    worker_stop(s->w);
    s->w = NULL;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    if (s->reserved && p->image_release)
        p->image_release(p->image_arg, s->reserved);
    s->reserved = 0;
    s->active = PS_NONE;
    s->done = 0;
}

/* Queue database d for a snapshot (the replica's copy cannot continue). */
static void queue_snapshot(struct primary_conn *c, struct pdb *d, const char *why, int64_t est_bytes)
{
    LV_INFO("replication to %s: %s: %s; sending a snapshot", c->rep->node, d->name, why);
    pdb_close(d);
    pthread_mutex_lock(&c->p->mu);
    d->ret_txid = PR_NO_RETAIN;
    pthread_mutex_unlock(&c->p->mu);
    d->started = 1;
    d->snap = PS_QUEUED;
    d->snap_after = 0;
    if (est_bytes > 0)
        d->est_bytes = est_bytes;
}

/* QUEUED -> IMAGING for the first database due.  0 or LV_ENOMEM. */
static int snap_start(struct primary_conn *c)
{
    struct primary *p = c->p;
    struct psnap *s = &c->snap;
    int64_t now = lv_mono_us();
    struct pdb *d = NULL;
    char path[PATH_MAX + 32], msg[512] = "";

    for (size_t i = 0; i < c->rep->ndbs && !d; i++)
        if (c->rep->dbs[i].snap == PS_QUEUED && c->rep->dbs[i].snap_after <= now)
            d = &c->rep->dbs[i];
    if (!d)
        return 0;
    if (p->image_reserve && d->est_bytes > 0 && p->image_reserve(p->image_arg, d->est_bytes, msg, sizeof msg) != 0) {
        LV_WARN("replication to %s: %s: no room for a snapshot image (%s); trying again in %lld s", c->rep->node,
                d->name, msg, (long long)(PR_SNAP_ROOM_RETRY_US / 1000000));
        d->snap_after = now + PR_SNAP_ROOM_RETRY_US;
        return 0;
    }
    s->reserved = p->image_reserve ? d->est_bytes : 0;
    snprintf(path, sizeof path, "%s/repl-snap-XXXXXX", p->tmpdir);
    s->fd = mkstemp(path);
    if (s->fd < 0) {
        LV_ERROR("replication to %s: %s: cannot create a snapshot image in %s: %s", c->rep->node, d->name, p->tmpdir,
                 strerror(errno));
        snap_release(c);
        d->snap_after = now + PR_SNAP_ROOM_RETRY_US;
        return 0;
    }
    unlink(path); /* the open descriptor keeps it; nothing is left behind */
    snprintf(s->name, sizeof s->name, "%s", d->name);
    s->reg = p->reg;
    s->wait_durable = p->wait_durable;
    s->done = 0;
    s->rc = 0;
    s->active = PS_IMAGING;
    if (worker_start("lv-repl-image", image_main, s, &s->w) != 0) {
        snap_release(c);
        d->snap_after = now + PR_SNAP_RETRY_US;
        return 0;
    }
    d->snap = PS_IMAGING;
    return 0;
}

/* Advance the stream's snapshot by one step: start one, look at the
 * image, send SNAP_BEGIN, one chunk of pages, or SNAP_END.  0 or negative
 * (the stream must end). */
static int snap_step(struct primary_conn *c)
{
    struct primary *p = c->p;
    struct psnap *s = &c->snap;
    struct pdb *d;
    uint8_t *f = NULL;
    size_t len = 0;
    int rc, done;

    if (s->active == PS_NONE)
        return snap_start(c);
    d = find_pdb(c->rep, s->name);
    LV_ASSERT(d && d->snap == s->active);
    if (s->active == PS_IMAGING) {
        pthread_mutex_lock(&s->mu);
        done = s->done;
        pthread_mutex_unlock(&s->mu);
        if (!done)
            return 0;
        worker_stop(s->w);
        s->w = NULL;
        if (s->rc) {
            int64_t now = lv_mono_us();
            if (s->rc == LV_EBUSY) {
                d->snap = PS_QUEUED;
                d->snap_after = now + PR_SNAP_RETRY_US;
            } else if (s->rc == LV_ENOENT) {
                d->snap = PS_NONE; /* gone, or nothing committed: the next scan decides */
                d->started = 0;
            } else {
                LV_ERROR("replication to %s: %s: cannot image the database for a snapshot (%s); this stream "
                         "skips it", c->rep->node, d->name, lv_strerror(s->rc));
                d->snap = PS_NONE;
                d->failed = 1;
            }
            snap_release(c);
            return 0;
        }
        /* A snapshot starts the replica's log afresh, made by this primary in
         * its term: never a term below it, so that a replica holding a
         * deposed term's surplus takes the image (FORMAT.md, "Record"). */
        uint64_t term = dbreg_term(p->reg) > s->info.term ? dbreg_term(p->reg) : s->info.term;
        rc = stream_enc_snap_begin(s->name, s->info.id, s->info.txid, s->info.time_us, s->info.page_size,
                                   s->info.db_pages, s->info.cksum, term, &f, &len);
        rc = emit_enc(c, rc, f, len, BT_SNAPSHOT);
        if (rc)
            return rc;
        pthread_mutex_lock(&p->mu);
        d->ret_txid = d->ck_txid = s->info.txid;
        d->ck_mono = lv_mono_us();
        c->rep->snapshots++;
        pthread_mutex_unlock(&p->mu);
        __atomic_add_fetch(&p->snapshots, 1, __ATOMIC_RELAXED);
        LV_INFO("replication to %s: %s: snapshot at TXID %" PRIu64 " (%u pages of %u bytes)", c->rep->node, s->name,
                s->info.txid, s->info.db_pages, s->info.page_size);
        s->active = d->snap = PS_SENDING;
        s->next_pgno = 1;
        return 0;
    }
    if (s->next_pgno > s->info.db_pages) {
        rc = stream_enc_name(ST_SNAP_END, s->name, &f, &len);
        rc = emit_enc(c, rc, f, len, BT_SNAPSHOT);
        if (rc)
            return rc;
        pdb_close(d);
        pthread_mutex_lock(&p->mu);
        memcpy(d->id, s->info.id, 16);
        d->ret_txid = PR_NO_RETAIN;
        pdb_advance(d, s->info.txid, s->info.cksum);
        pthread_mutex_unlock(&p->mu);
        d->snap = PS_NONE;
        d->resync = 0;
        d->started = 1;
        snap_release(c);
        c->more = 1; /* the records after the image */
        return 0;
    }
    uint32_t ps = s->info.page_size;
    uint32_t count = PR_CHUNK / ps;
    if (count > s->info.db_pages - s->next_pgno + 1)
        count = s->info.db_pages - s->next_pgno + 1;
    size_t bytes = (size_t)count * ps;
    uint8_t *buf = malloc(bytes);
    if (!buf)
        return LV_ENOMEM;
    rc = sys_pread_all(s->fd, buf, bytes, (off_t)(s->next_pgno - 1) * ps, "snapshot image");
    if (rc == 0)
        rc = stream_enc_snap_pages(s->name, s->next_pgno, count, ps, buf, &f, &len);
    free(buf);
    if (rc) {
        LV_ERROR("replication to %s: %s: reading the snapshot image: %s", c->rep->node, s->name, lv_strerror(rc));
        free(f);
        return rc;
    }
    s->next_pgno += count;
    return emit(c, f, len, BT_SNAPSHOT);
}

/* ------------------------------------------------------------ records */

/* Send the records of d after its position, at most PR_ROUND_RECORDS (then
 * c->more), and none after info->durable_txid (durable_now: what
 * replication.wait-durable lets go, C10 of db.c).  info: the registry's
 * view of it.  0 or negative (the stream must end). */
static int send_records(struct primary_conn *c, struct pdb *d, const struct db_info *info)
{
    struct primary *p = c->p;
    int reopened = 0, rc = 0;
    int64_t est = (int64_t)info->db_pages * info->page_size;
    uint64_t limit = info->durable_txid;

    /* Up to what the registry listed: reading past it would only find the
     * end of the log, which costs the reader a look for a newer segment. */
    for (int k = 0; k < PR_ROUND_RECORDS && (d->txid < limit || (!d->have && limit > 0)); k++) {
        struct txlog_hdr h;
        void *raw = NULL;
        size_t rlen = 0;
        uint8_t *f = NULL;
        size_t flen = 0;

        if (!d->rd) {
            rc = txlog_reader_open(d->logdir, d->txid + 1, &d->rd);
            if (rc == LV_ENOENT) {
                queue_snapshot(c, d, "its log holds no segment any more", est);
                return 0;
            }
            if (rc) {
                LV_ERROR("replication to %s: %s: cannot read the log %s (%s); this stream skips it", c->rep->node,
                         d->name, d->logdir, lv_strerror(rc));
                d->failed = 1;
                return 0;
            }
            reopened = 1;
        }
        rc = txlog_reader_next(d->rd, &h);
        if (rc == LV_ENOENT) {
            /* The end for now -- unless the registry knows more: the open
             * segment was pruned while newer ones appeared, or the log
             * moved; read again from the position, once per round. */
            if (limit <= d->txid)
                return 0;
            if (reopened) {
                /* Listed but not readable yet: look again shortly. */
                c->rescan_mono = lv_mono_us() + 10000;
                return 0;
            }
            pdb_close(d);
            k--;
            continue;
        }
        if (rc) {
            char why[600];
            snprintf(why, sizeof why, "cannot read its log (%s)", txlog_reader_error(d->rd));
            queue_snapshot(c, d, why, est);
            return 0;
        }
        if (h.txid > limit) {
            pdb_close(d); /* not durable yet (a first record past it): read again from the position */
            return 0;
        }
        if (!repl_continues(&h, d->have ? d->txid : 0, d->cksum)) {
            char why[200];
            snprintf(why, sizeof why, "the log no longer holds the records after TXID %" PRIu64
                     " of the replica's copy (next found: TXID %" PRIu64 ")", d->have ? d->txid : 0, h.txid);
            queue_snapshot(c, d, why, est);
            return 0;
        }
        if (h.stored_len > PR_MAX_RECORD) {
            char why[200];
            snprintf(why, sizeof why, "TXID %" PRIu64 " holds %" PRIu64 " bytes, more than one frame carries",
                     h.txid, h.stored_len);
            queue_snapshot(c, d, why, est);
            return 0;
        }
        rc = txlog_reader_raw(d->rd, &raw, &rlen);
        if (rc == 0)
            rc = stream_enc_record(d->name, raw, rlen, &f, &flen);
        free(raw);
        if (rc == LV_ENOMEM) {
            free(f);
            return rc;
        }
        if (rc) {
            char why[600];
            free(f);
            snprintf(why, sizeof why, "cannot read TXID %" PRIu64 " (%s)", h.txid, txlog_reader_error(d->rd));
            queue_snapshot(c, d, why, est);
            return 0;
        }
        rc = emit(c, f, flen, BT_RECORD);
        if (rc)
            return rc;
        __atomic_add_fetch(&p->records, 1, __ATOMIC_RELAXED);
        pthread_mutex_lock(&p->mu);
        memcpy(d->id, info->id, 16);
        pdb_advance(d, h.txid, h.post_cksum);
        c->rep->records++;
        pthread_mutex_unlock(&p->mu);
        if (c->out_len - c->out_off >= PR_ROUND_BYTES) {
            c->more = 1;
            return 0;
        }
    }
    if (d->txid < limit)
        c->more = 1; /* PR_ROUND_RECORDS sent: the next round goes on */
    return 0;
}

/* ------------------------------------------------------------ the scan */

static void to_pos(struct repl_pos *o, const char *name, const uint8_t id[16], uint64_t txid, uint64_t cksum)
{
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    memcpy(o->id, id, 16);
    o->txid = txid;
    o->cksum = cksum;
}

/* Names: DROP and RENAME frames so that the replica's databases (those it
 * has and that no snapshot is changing) match the primary's list. */
static int scan_names(struct primary_conn *c, const struct repl_pos *prim, size_t n)
{
    struct primary *p = c->p;
    struct prep *r = c->rep;
    struct repl_pos *view = NULL;
    size_t *idx = NULL, nv = 0, na = 0;
    struct repl_name_action *acts = NULL;
    int rc = 0;

    if (r->ndbs == 0)
        return 0;
    view = calloc(r->ndbs, sizeof *view);
    idx = calloc(r->ndbs, sizeof *idx);
    if (!view || !idx) {
        rc = LV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < r->ndbs; i++)
        if (r->dbs[i].have && r->dbs[i].snap == PS_NONE) {
            to_pos(&view[nv], r->dbs[i].name, r->dbs[i].id, r->dbs[i].txid, r->dbs[i].cksum);
            idx[nv++] = i;
        }
    rc = repl_plan_names(view, nv, prim, n, &acts, &na);
    for (size_t i = 0; i < na && rc == 0; i++) {
        uint8_t *f = NULL;
        size_t len = 0;
        if (acts[i].op == RN_DROP) {
            LV_INFO("replication to %s: %s: not on the primary (any more): DROP", r->node, acts[i].name);
            rc = stream_enc_name(ST_DROP, acts[i].name, &f, &len);
        } else {
            LV_INFO("replication to %s: %s renamed to %s on the primary: RENAME", r->node, acts[i].name, acts[i].to);
            rc = stream_enc_rename(acts[i].name, acts[i].to, &f, &len);
        }
        rc = emit_enc(c, rc, f, len, BT_OTHER);
    }
    if (rc || na == 0)
        goto out;
    /* The replica's state after the actions: renamed entries, dropped ones
     * removed (from the end, so the indices stay valid). */
    pthread_mutex_lock(&p->mu);
    for (size_t k = 0; k < nv; k++) {
        struct pdb *d = &r->dbs[idx[k]];
        if (view[k].name[0] && strcmp(view[k].name, d->name) != 0) {
            snprintf(d->name, sizeof d->name, "%s", view[k].name);
            d->logdir[0] = 0; /* the log moved with the name: reopen */
        }
    }
    for (size_t k = nv; k-- > 0;)
        if (!view[k].name[0])
            del_pdb(r, idx[k]);
    pthread_mutex_unlock(&p->mu);
out:
    free(acts);
    free(view);
    free(idx);
    return rc;
}

/* How far this stream may send info's database (replication.wait-durable,
 * C10 of db.c), into info->durable_txid: a log fsync may run now, or,
 * under synchronous=FULL, the stream looks again once the -wal's fsync is
 * due (c->rescan_mono).  A database that another stream is making durable
 * moves the commit sequence when it is. */
static void durable_now(struct primary_conn *c, struct db_info *info)
{
    uint64_t limit = 0;
    int64_t retry = 0;

    if (info->durable_txid >= info->txid)
        return;
    if (!dbreg_durable_wait(c->p->wait_durable, info->syncs_commits)) {
        info->durable_txid = info->txid; /* no wait: no call that takes the database's lock */
        return;
    }
    if (dbreg_durable_limit(c->p->reg, info->name, c->p->wait_durable, &limit, &retry) != 0)
        return; /* broken or gone: the next scan sees it */
    if (limit > info->durable_txid)
        info->durable_txid = limit < info->txid ? limit : info->txid;
    if (retry && (!c->rescan_mono || retry < c->rescan_mono))
        c->rescan_mono = retry;
}

/* List the databases and bring every one forward: names, starts, records. */
static int scan(struct primary_conn *c)
{
    struct primary *p = c->p;
    struct prep *r = c->rep;
    struct db_info *l = NULL;
    struct repl_pos *prim = NULL;
    size_t n = 0;
    int rc;

    rc = dbreg_list_logged(p->reg, &l, &n); /* (a capture woke this scan: no capture of its own) */
    if (rc)
        return rc;
    prim = calloc(n ? n : 1, sizeof *prim);
    if (!prim) {
        free(l);
        return LV_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        to_pos(&prim[i], l[i].name, l[i].id, l[i].txid, l[i].cksum);
    rc = scan_names(c, prim, n);
    if (rc)
        goto out;
    for (size_t i = 0; i < r->ndbs; i++)
        r->dbs[i].live = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct db_info *info = &l[i];
        struct pdb *d = find_pdb(r, info->name);
        if (info->broken)
            continue;
        if (d && d->have && d->snap == PS_NONE && memcmp(d->id, info->id, 16) != 0)
            continue; /* not reached: scan_names dropped it */
        if (!d) {
            pthread_mutex_lock(&p->mu);
            d = add_pdb(r, info->name, info->id);
            pthread_mutex_unlock(&p->mu);
            if (!d) {
                rc = LV_ENOMEM;
                break;
            }
        }
        d->live = 1;
        if (!d->have && memcmp(d->id, info->id, 16) != 0) {
            pthread_mutex_lock(&p->mu);
            memcpy(d->id, info->id, 16);
            pthread_mutex_unlock(&p->mu);
        }
        if (strcmp(d->logdir, info->logdir) != 0) {
            pdb_close(d);
            snprintf(d->logdir, sizeof d->logdir, "%s", info->logdir);
        }
        if (d->failed || d->snap != PS_NONE)
            continue;
        if (!d->started) {
            struct repl_pos me;
            uint64_t from;
            to_pos(&me, d->name, d->id, d->txid, d->cksum);
            me.resync = d->resync;
            switch (repl_plan_start(&prim[i], d->have ? &me : NULL, &from)) {
            case RST_WAIT:
                if (info->txid == 0)
                    continue; /* nothing logged yet: decide when there is */
                d->started = 1;
                continue;
            case RST_SNAPSHOT:
                queue_snapshot(c, d, d->resync ? "the replica asked for one"
                                     : "the replica's copy is not a prefix of this history",
                               (int64_t)info->db_pages * info->page_size);
                continue;
            case RST_RECORDS:
                d->started = 1;
                break;
            }
        }
        if (info->txid > d->txid || !d->have) {
            durable_now(c, info);
            rc = send_records(c, d, info);
        }
        if (d->snap == PS_QUEUED && d->est_bytes == 0)
            d->est_bytes = (int64_t)info->db_pages * info->page_size;
    }
    /* Entries of databases the replica does not have and the primary no
     * longer lists (created and deleted before anything was sent). */
    pthread_mutex_lock(&p->mu);
    for (size_t i = r->ndbs; rc == 0 && i-- > 0;)
        if (!r->dbs[i].live && !r->dbs[i].have && r->dbs[i].snap == PS_NONE)
            del_pdb(r, i);
    pthread_mutex_unlock(&p->mu);
out:
    free(prim);
    free(l);
    return rc;
}

/* ------------------------------------------------------------ the stream */

/* One round: HELLO, a scan when the commit sequence moved (or the last
 * round stopped early), one snapshot step, a heartbeat when due.  0 or
 * negative. */
static int produce(struct primary_conn *c)
{
    struct primary *p = c->p;
    uint64_t seq;
    int rc;

    if (!c->hello_sent) {
        rc = emit_hello(c);
        if (rc)
            return rc;
        c->hello_sent = 1;
        c->more = 1;
    }
    seq = dbreg_commit_seq(p->reg); /* before the scan: a commit during it triggers the next */
    if (seq != c->seq || c->more || (c->rescan_mono && lv_mono_us() >= c->rescan_mono)) {
        c->seq = seq;
        c->more = 0;
        c->rescan_mono = 0;
        rc = scan(c);
        if (rc)
            return rc;
    }
    rc = snap_step(c);
    if (rc)
        return rc;
    if (c->out_off == c->out_len && lv_mono_us() - c->last_emit_mono >= PR_HEARTBEAT_US) {
        uint8_t *f = NULL;
        size_t len = 0;
        rc = stream_enc_heartbeat(lv_now_us(), seq, &f, &len);
        rc = emit_enc(c, rc, f, len, BT_OTHER);
    }
    return rc;
}

/* Block until there may be something to send: a commit, the heartbeat,
 * the image job, a queued snapshot's time. */
static void wait_work(struct primary_conn *c)
{
    int64_t now = lv_mono_us();
    int64_t ms = (c->last_emit_mono + PR_HEARTBEAT_US - now) / 1000 + 1;

    if (ms > PR_WAIT_MS)
        ms = PR_WAIT_MS;
    if (c->snap.active == PS_IMAGING && ms > PR_IMAGE_POLL_MS)
        ms = PR_IMAGE_POLL_MS;
    for (size_t i = 0; i < c->rep->ndbs; i++)
        if (c->rep->dbs[i].snap == PS_QUEUED && c->snap.active == PS_NONE) {
            int64_t due = (c->rep->dbs[i].snap_after - now) / 1000 + 1;
            if (due < ms)
                ms = due < 1 ? 1 : due;
        }
    if (c->rescan_mono) {
        int64_t due = (c->rescan_mono - now) / 1000 + 1;
        if (due < ms)
            ms = due;
    }
    if (ms <= 0 || c->more)
        return;
    if (dbreg_wait_commit(c->p->reg, c->seq, (int)ms) != c->seq && c->p->test_delay_us > 0)
        usleep((useconds_t)c->p->test_delay_us); /* test seam: a slow network (LV_TEST_STREAM_DELAY_US) */
}

long primary_conn_read(void *arg, char *buf, size_t max)
{
    struct primary_conn *c = arg;
    struct primary *p = c->p;
    int superseded;

    for (int round = 0;; round++) {
        if (c->out_off < c->out_len) {
            size_t n = c->out_len - c->out_off;
            if (n > max)
                n = max;
            memcpy(buf, c->out + c->out_off, n);
            c->out_off += n;
            return (long)n;
        }
        if (c->ending)
            return HTTP_STREAM_END;
        pthread_mutex_lock(&p->mu);
        superseded = c->rep->superseded;
        pthread_mutex_unlock(&p->mu);
        if (__atomic_load_n(&p->stopping, __ATOMIC_ACQUIRE) || superseded) {
            c->ending = 1;
            if (emit_error_text(c, superseded ? "a newer stream of this replica replaced this one"
                                              : "this node stopped serving as the primary") != 0)
                return HTTP_STREAM_ERROR;
            continue;
        }
        int rc = produce(c);
        if (rc) {
            LV_ERROR("replication to %s: the stream fails: %s", c->rep->node, lv_strerror(rc));
            c->ending = 1;
            if (emit_error_text(c, "the primary failed to build the stream (see its log)") != 0)
                return HTTP_STREAM_ERROR;
            continue;
        }
        if (c->out_off < c->out_len)
            continue;
        if (round > 0)
            return 0;
        wait_work(c);
    }
}

void primary_conn_close(void *arg)
{
    struct primary_conn *c = arg;
    struct primary *p;

    if (!c)
        return;
    p = c->p;
    snap_release(c);
    pthread_mutex_destroy(&c->snap.mu);
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < c->rep->ndbs; i++) {
        struct pdb *d = &c->rep->dbs[i];
        pdb_close(d);
        if (d->snap != PS_NONE) {
            d->snap = PS_NONE;
            d->ret_txid = PR_NO_RETAIN;
        }
    }
    c->rep->connected = 0;
    c->rep->in_sync = 0;
    c->rep->gone_mono = lv_mono_us();
    pthread_cond_broadcast(&p->ack_cv);
    pthread_mutex_unlock(&p->mu);
    LV_INFO("replication to %s (%s): stream ended", c->rep->node, c->rep->addr);
    free(c->out);
    free(c);
}

/* ------------------------------------------------------------ opening */

/* A {"error": msg} body. */
static char *err_json(const char *msg)
{
    json_t *o = json_pack("{s:s}", "error", msg);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    return s;
}

/* Parse the request body into *node, *cluster (0: none) and the
 * replica's databases.  0, or LV_EINVAL with msg. */
static int parse_request(const void *body, size_t len, char *node, size_t nodelen, char *url, size_t urllen,
                         uint8_t cluster[16], int *has_cluster, struct repl_pos **dbs, size_t *ndbs, char *msg,
                         size_t msglen)
{
    json_error_t je;
    json_t *o = body && len ? json_loadb(body, len, 0, &je) : NULL;
    json_t *arr, *e;
    const char *s;
    size_t i;
    int rc = LV_EINVAL;

    *dbs = NULL;
    *ndbs = 0;
    *has_cluster = 0;
    if (!json_is_object(o)) {
        lv_seterr(msg, msglen, "the request body must be a JSON object {\"cluster\",\"node\",\"dbs\"}");
        goto out;
    }
    s = json_string_value(json_object_get(o, "node"));
    if (!s || !*s || strlen(s) >= nodelen || strspn(s, "0123456789abcdefABCDEF-") != strlen(s)) {
        lv_seterr(msg, msglen, "\"node\" must be the replica's node ID (hex digits)");
        goto out;
    }
    snprintf(node, nodelen, "%s", s);
    s = json_string_value(json_object_get(o, "url"));
    snprintf(url, urllen, "%s", s ? s : "");
    s = json_string_value(json_object_get(o, "cluster"));
    if (s && *s) {
        if (strlen(s) != 32 || lv_unhex(s, cluster, 16) != 0) {
            lv_seterr(msg, msglen, "\"cluster\" must be 32 hex digits or empty");
            goto out;
        }
        *has_cluster = 1;
    }
    arr = json_object_get(o, "dbs");
    if (arr && !json_is_array(arr)) {
        lv_seterr(msg, msglen, "\"dbs\" must be an array");
        goto out;
    }
    if (json_array_size(arr) > 0) {
        *dbs = calloc(json_array_size(arr), sizeof **dbs);
        if (!*dbs) {
            rc = LV_ENOMEM;
            lv_seterr(msg, msglen, "out of memory");
            goto out;
        }
    }
    json_array_foreach(arr, i, e)
    {
        struct repl_pos *d = &(*dbs)[i];
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *id = json_string_value(json_object_get(e, "id"));
        const char *ck = json_string_value(json_object_get(e, "cksum"));
        json_t *tx = json_object_get(e, "txid");
        if (!name || !*name || strlen(name) >= sizeof d->name || name[0] == '/' || !id || strlen(id) != 32 ||
            lv_unhex(id, d->id, 16) != 0 || !json_is_integer(tx) || json_integer_value(tx) < 0 || !ck ||
            strlen(ck) != 16 || lv_unhex(ck, (uint8_t[8]){0}, 8) != 0) {
            lv_seterr(msg, msglen, "dbs[%zu] must be {\"name\",\"id\":32 hex,\"txid\":N,\"cksum\":16 hex}", i);
            goto out;
        }
        snprintf(d->name, sizeof d->name, "%s", name);
        d->txid = (uint64_t)json_integer_value(tx);
        d->cksum = strtoull(ck, NULL, 16);
        d->resync = json_is_true(json_object_get(e, "resync"));
    }
    *ndbs = json_array_size(arr);
    rc = 0;
out:
    if (rc) {
        free(*dbs);
        *dbs = NULL;
        *ndbs = 0;
    }
    json_decref(o);
    return rc;
}

/* A replica without a cluster ID is adopted only if every database it
 * holds is one of ours (by ID): a replica pointed at the wrong primary
 * must not have its databases dropped.  0, or LV_EREFUSED with msg. */
static int check_adoption(struct primary *p, const struct repl_pos *dbs, size_t n, const char *node, char *msg,
                          size_t msglen)
{
    struct db_info *l = NULL;
    size_t nl = 0;
    int rc = 0;

    if (n == 0)
        return 0;
    rc = dbreg_list(p->reg, &l, &nl);
    if (rc) {
        lv_seterr(msg, msglen, "cannot list the databases: %s", lv_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        int known = 0;
        for (size_t k = 0; k < nl && !known; k++)
            known = memcmp(l[k].id, dbs[i].id, 16) == 0;
        if (!known) {
            char idh[33];
            lv_seterr(msg, msglen,
                      "replica %s has no cluster-id and holds database %s (id %s) that this primary (cluster %s) "
                      "does not have: refusing to adopt it (its databases would be dropped); empty the replica's "
                      "data.dir or give it this cluster's cluster-id file", node, dbs[i].name,
                      lv_hex(dbs[i].id, 16, idh), p->cluster_hex);
            rc = LV_EREFUSED;
        }
    }
    free(l);
    return rc;
}

int primary_conn_open(struct primary *p, const void *body, size_t len, const char *addr,
                      struct primary_conn **out, int *status, char **errjson)
{
    struct repl_pos *dbs = NULL;
    size_t ndbs = 0;
    char node[72], url[1024], msg[1536];
    uint8_t cluster[16];
    int has_cluster = 0, rc;
    struct primary_conn *c = NULL;
    struct prep *r = NULL;

    *out = NULL;
    *status = 200;
    *errjson = NULL;
    if (__atomic_load_n(&p->stopping, __ATOMIC_ACQUIRE)) {
        *status = 503;
        *errjson = err_json("this node does not serve as the primary (any more)");
        return LV_EREFUSED;
    }
    rc = parse_request(body, len, node, sizeof node, url, sizeof url, cluster, &has_cluster, &dbs, &ndbs, msg,
                       sizeof msg);
    if (rc) {
        *status = rc == LV_ENOMEM ? 500 : 400;
        goto fail;
    }
    if (has_cluster && memcmp(cluster, p->cluster, 16) != 0) {
        char theirs[33];
        lv_seterr(msg, sizeof msg, "cluster mismatch: this primary belongs to cluster %s, replica %s to cluster %s; "
                  "a replica follows only the primary of its own cluster", p->cluster_hex, node,
                  lv_hex(cluster, 16, theirs));
        *status = 409;
        rc = LV_EREFUSED;
        goto fail;
    }
    if (!has_cluster && (rc = check_adoption(p, dbs, ndbs, node, msg, sizeof msg)) != 0) {
        *status = rc == LV_EREFUSED ? 409 : 500;
        goto fail;
    }
    c = calloc(1, sizeof *c);
    r = calloc(1, sizeof *r);
    if (!c || !r) {
        rc = LV_ENOMEM;
        *status = 500;
        lv_seterr(msg, sizeof msg, "out of memory");
        goto fail;
    }
    snprintf(r->node, sizeof r->node, "%s", node);
    snprintf(r->addr, sizeof r->addr, "%s", addr ? addr : "");
    snprintf(r->url, sizeof r->url, "%s", url);
    r->connected = 1;
    r->since_us = lv_now_us();
    for (size_t i = 0; i < ndbs; i++) {
        struct pdb *d = add_pdb(r, dbs[i].name, dbs[i].id);
        if (!d) {
            rc = LV_ENOMEM;
            *status = 500;
            lv_seterr(msg, sizeof msg, "out of memory");
            goto fail;
        }
        d->have = 1;
        d->txid = d->ret_txid = d->ck_txid = dbs[i].txid;
        d->cksum = dbs[i].cksum;
        d->resync = dbs[i].resync;
    }
    c->p = p;
    c->rep = r;
    c->snap.fd = -1;
    pthread_mutex_init(&c->snap.mu, NULL);
    c->last_emit_mono = lv_mono_us();
    pthread_mutex_lock(&p->mu);
    reap_gone(p);
    for (struct prep *o = p->reps; o; o = o->next)
        if (strcmp(o->node, node) == 0)
            o->superseded = 1; /* its stream ends at its next step; entry reaped later */
    r->next = p->reps;
    p->reps = r;
    pthread_mutex_unlock(&p->mu);
    __atomic_add_fetch(&p->streams, 1, __ATOMIC_RELAXED);
    LV_INFO("replication: replica %s (%s, %s) connected%s, %zu databases reported", node, r->addr,
            r->url[0] ? r->url : "no url",
            has_cluster ? "" : " without a cluster-id (it adopts this cluster's)", ndbs);
    free(dbs);
    *out = c;
    return 0;
fail:
    LV_WARN("replication: stream request refused (%d): %s", *status, msg);
    *errjson = err_json(msg);
    free(dbs);
    free(c);
    if (r)
        prep_free(r);
    return rc;
}

static int h_stream(void *ctx, const struct http_request *req, struct http_response *resp)
{
    struct primary *p = ctx;
    struct primary_conn *c = NULL;
    char *err = NULL;
    int status = 0;

    if (primary_conn_open(p, req->body, req->body_len, req->peer, &c, &status, &err) != 0) {
        resp->status = status;
        resp->body = err;
        return 0;
    }
    resp->status = 200;
    resp->content_type = "application/x-litevault-stream";
    resp->stream_fn = primary_conn_read;
    resp->stream_free = primary_conn_close;
    resp->stream_arg = c;
    return 0;
}

int primary_stream(struct primary *p, const struct http_request *req, struct http_response *resp)
{
    return h_stream(p, req, resp);
}

/* ------------------------------------------------------------ retention */

static int seg_cmp(const void *a, const void *b)
{
    const struct repl_seg *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* The segments of the log in dir (FORMAT.md: <first TXID, 16 hex>.lvseg). */
static int list_segs(const char *dir, struct repl_seg **out, size_t *n)
{
    DIR *dh = opendir(dir);
    struct dirent *de;
    size_t cap = 0;
    int rc = 0;

    *out = NULL;
    *n = 0;
    if (!dh)
        return LV_ENOENT;
    while ((de = readdir(dh)) != NULL && rc == 0) {
        char path[PATH_MAX + 300], *end = NULL;
        struct stat st;
        if (strlen(de->d_name) != 22 || strcmp(de->d_name + 16, ".lvseg") != 0)
            continue;
        uint64_t first = strtoull(de->d_name, &end, 16);
        if (end != de->d_name + 16)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stat(path, &st) != 0)
            continue; /* pruned meanwhile */
        rc = lv_grow((void **)out, &cap, *n, sizeof **out, 16);
        if (rc == 0)
            (*out)[(*n)++] = (struct repl_seg){first, (uint64_t)st.st_size};
    }
    closedir(dh);
    if (rc == 0 && *n)
        qsort(*out, *n, sizeof **out, seg_cmp);
    return rc;
}

uint64_t primary_retain(void *arg, const struct db_info *info, uint64_t upto)
{
    struct primary *p = arg;
    uint64_t want = upto, point;
    char who[72] = "";
    struct repl_seg *segs = NULL;
    size_t n = 0;
    int cut = 0;

    if (!p)
        return upto;
    pthread_mutex_lock(&p->mu);
    reap_gone(p);
    for (struct prep *r = p->reps; r; r = r->next)
        for (size_t i = 0; i < r->ndbs; i++) {
            const struct pdb *d = &r->dbs[i];
            if (d->ret_txid != PR_NO_RETAIN && memcmp(d->id, info->id, 16) == 0 && d->ret_txid < want) {
                want = d->ret_txid;
                snprintf(who, sizeof who, "%s", r->node);
            }
        }
    pthread_mutex_unlock(&p->mu);
    if (want >= upto)
        return upto;
    if (list_segs(info->logdir, &segs, &n) != 0)
        return want;
    point = repl_retain_point(segs, n, upto, want, p->max_retain, &cut);
    free(segs);
    if (cut) {
        __atomic_add_fetch(&p->retain_cuts, 1, __ATOMIC_RELAXED);
        pthread_mutex_lock(&p->mu);
        int64_t now = lv_mono_us();
        int warn = now - p->last_cut_warn >= 60 * 1000000LL || p->last_cut_warn == 0;
        if (warn)
            p->last_cut_warn = now;
        pthread_mutex_unlock(&p->mu);
        if (warn)
            LV_WARN("replication: %s: replica %s is at TXID %" PRIu64 ", more than replication.max-retain (%" PRIu64
                    " bytes) of log behind what the archive needs; pruning up to TXID %" PRIu64
                    " anyway: it will get a snapshot", info->name, who, want, p->max_retain, point);
    }
    return point;
}

/* ------------------------------------------------------------ status, metrics */

char *primary_status_json(struct primary *p)
{
    json_t *arr = json_array();
    char t[40];

    if (!p || !arr) {
        json_decref(arr);
        return p ? NULL : strdup("[]");
    }
    pthread_mutex_lock(&p->mu);
    reap_gone(p);
    for (struct prep *r = p->reps; r; r = r->next) {
        json_t *o = json_object(), *b = json_object(), *dbs = json_array();
        for (int k = 0; k < BT_N; k++)
            json_object_set_new(b, bt_names[k], json_integer((json_int_t)r->bytes[k]));
        for (size_t i = 0; i < r->ndbs; i++)
            if (r->dbs[i].have)
                json_array_append_new(dbs, json_pack("{s:s,s:I,s:I}", "name", r->dbs[i].name, "txid",
                                                     (json_int_t)r->dbs[i].txid, "acked",
                                                     (json_int_t)r->dbs[i].acked));
        json_object_set_new(o, "node", json_string(r->node));
        json_object_set_new(o, "addr", json_string(r->addr));
        json_object_set_new(o, "url", json_string(r->url));
        json_object_set_new(o, "connected", json_boolean(r->connected && !r->superseded));
        if (p->sync_n > 0)
            json_object_set_new(o, "in_sync", json_boolean(r->connected && !r->superseded && r->in_sync));
        json_object_set_new(o, "since", json_string(lv_fmt_time(r->since_us, t, sizeof t)));
        json_object_set_new(o, "bytes", b);
        json_object_set_new(o, "records", json_integer((json_int_t)r->records));
        json_object_set_new(o, "snapshots", json_integer((json_int_t)r->snapshots));
        json_object_set_new(o, "databases", dbs);
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&p->mu);
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}

static const struct metrics_family pm_families[] = {
    {"litevault_replication_sent_bytes_total", "counter", "Replication stream bytes sent to replicas, by frame kind."},
    {"litevault_replication_sent_records_total", "counter", "Records streamed to replicas."},
    {"litevault_replication_snapshots_sent_total", "counter", "Snapshots streamed to replicas."},
    {"litevault_replication_streams_total", "counter", "Replication streams opened by replicas."},
    {"litevault_replication_retain_cuts_total", "counter",
     "Times replication.max-retain let the archiver prune records a replica still needed."},
    {"litevault_replication_replicas", "gauge", "Replicas streaming from this primary."},
    {"litevault_replication_replica_sent_bytes_total", "counter",
     "Replication stream bytes sent to one replica, by frame kind."},
    {"litevault_replication_sync_waits_total", "counter",
     "Commits that waited for replicas' acknowledgements (replication.sync-replicas)."},
    {"litevault_replication_sync_timeouts_total", "counter",
     "Commit waits that ran out of replication.sync-timeout."},
    {"litevault_replication_sync_skipped_total", "counter",
     "Commits that did not wait: fewer than sync-replicas replicas were connected and in sync."},
};

int primary_metrics(struct primary *p, char **buf, size_t *len, size_t *cap)
{
    uint64_t v[7];
    int rc = 0, connected = 0, nv;

    if (!p)
        return 0;
    rc = metrics_family(buf, len, cap, &pm_families[0]);
    for (int k = 0; k < BT_N && rc == 0; k++)
        rc = metrics_appendf(buf, len, cap, "litevault_replication_sent_bytes_total{type=\"%s\"} %" PRIu64 "\n",
                             bt_names[k], __atomic_load_n(&p->bytes[k], __ATOMIC_RELAXED));
    v[0] = __atomic_load_n(&p->records, __ATOMIC_RELAXED);
    v[1] = __atomic_load_n(&p->snapshots, __ATOMIC_RELAXED);
    v[2] = __atomic_load_n(&p->streams, __ATOMIC_RELAXED);
    v[3] = __atomic_load_n(&p->retain_cuts, __ATOMIC_RELAXED);
    v[4] = __atomic_load_n(&p->sync_waits, __ATOMIC_RELAXED);
    v[5] = __atomic_load_n(&p->sync_timeouts, __ATOMIC_RELAXED);
    v[6] = __atomic_load_n(&p->sync_skipped, __ATOMIC_RELAXED);
    nv = p->sync_n > 0 ? 7 : 4;
    for (int k = 0; k < nv && rc == 0; k++) {
        const struct metrics_family *f = &pm_families[k < 4 ? 1 + k : 3 + k];
        rc = metrics_family(buf, len, cap, f);
        if (rc == 0)
            rc = metrics_appendf(buf, len, cap, "%s %" PRIu64 "\n", f->name, v[k]);
    }
    pthread_mutex_lock(&p->mu);
    for (struct prep *r = p->reps; r; r = r->next)
        connected += r->connected && !r->superseded;
    if (rc == 0)
        rc = metrics_family(buf, len, cap, &pm_families[5]);
    if (rc == 0)
        rc = metrics_appendf(buf, len, cap, "litevault_replication_replicas %d\n", connected);
    if (rc == 0 && p->reps)
        rc = metrics_family(buf, len, cap, &pm_families[6]);
    for (struct prep *r = p->reps; r && rc == 0; r = r->next) {
        char node[160];
        metrics_label_escape(r->node, node, sizeof node);
        for (int k = 0; k < BT_N && rc == 0; k++)
            rc = metrics_appendf(buf, len, cap,
                                 "litevault_replication_replica_sent_bytes_total{node=\"%s\",type=\"%s\"} %" PRIu64
                                 "\n", node, bt_names[k], r->bytes[k]);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* ------------------------------------------------------------ life */

int primary_new(const struct primary_opts *o, struct primary **out)
{
    struct primary *p = calloc(1, sizeof *p);

    *out = NULL;
    if (!p)
        return LV_ENOMEM;
    p->reg = o->reg;
    snprintf(p->data_dir, sizeof p->data_dir, "%s", o->data_dir);
    dbreg_tmp_dir(o->data_dir, p->tmpdir, sizeof p->tmpdir);
    memcpy(p->cluster, o->cluster, 16);
    lv_hex(p->cluster, 16, p->cluster_hex);
    snprintf(p->node, sizeof p->node, "%s", o->node_id ? o->node_id : "");
    snprintf(p->url, sizeof p->url, "%s", o->url ? o->url : "");
    p->max_retain = o->max_retain >= 0 ? (uint64_t)o->max_retain : (uint64_t)PR_DEFAULT_RETAIN;
    p->image_reserve = o->image_reserve;
    p->image_release = o->image_release;
    p->image_arg = o->image_arg;
    p->sync_n = o->sync_replicas > 0 ? o->sync_replicas : 0;
    const char *delay = getenv("LV_TEST_STREAM_DELAY_US"); /* test seam, unset in production */
    p->test_delay_us = delay ? atol(delay) : 0;
    if (p->test_delay_us > 0)
        LV_WARN("replication: LV_TEST_STREAM_DELAY_US=%ld (a test seam) delays every stream after each commit; "
                "unset it outside tests", p->test_delay_us);
    p->acks = o->acks;
    p->sync_timeout_us = o->sync_timeout_us > 0 ? o->sync_timeout_us : PR_DEFAULT_SYNC_TIMEOUT_US;
    p->wait_durable = o->wait_durable;
    pthread_mutex_init(&p->mu, NULL);
    if (lv_cond_init(&p->ack_cv) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return LV_ENOMEM;
    }
    sys_mkdir_p(p->tmpdir);
    *out = p;
    return 0;
}

/* ------------------------------------------------------ synchronous replication */

/* Does replica r hold everything its stream sent (every database's acked >= sent txid)? */
static int prep_caught_up(const struct prep *r)
{
    for (size_t i = 0; i < r->ndbs; i++)
        if (r->dbs[i].have && r->dbs[i].acked < r->dbs[i].txid)
            return 0;
    return 1;
}

int primary_ack(struct primary *p, const void *body, size_t len, char *msg, size_t msglen)
{
    json_t *o = json_loadb(body, len, 0, NULL), *tx = json_object_get(o, "txids"), *v;
    const char *node = json_string_value(json_object_get(o, "node")), *name;
    struct prep *r;
    int rc = LV_ENOENT;

    if (!node || !json_is_object(tx)) {
        snprintf(msg, msglen, "expected {\"node\": ID, \"txids\": {NAME: TXID, ...}}");
        json_decref(o);
        return LV_EINVAL;
    }
    pthread_mutex_lock(&p->mu);
    for (r = p->reps; r; r = r->next)
        if (r->connected && !r->superseded && strcmp(r->node, node) == 0)
            break;
    if (r) {
        json_object_foreach(tx, name, v)
        {
            struct pdb *d = find_pdb(r, name);
            if (d && json_is_integer(v) && json_integer_value(v) > 0 && (uint64_t)json_integer_value(v) > d->acked)
                d->acked = (uint64_t)json_integer_value(v);
        }
        if (!r->in_sync && prep_caught_up(r)) {
            r->in_sync = 1;
            LV_INFO("replication: replica %s (%s) holds everything sent to it: it counts for sync-replicas", r->node,
                    r->url);
        }
        pthread_cond_broadcast(&p->ack_cv);
        rc = 0;
    } else {
        snprintf(msg, msglen, "no stream of node %.72s runs here", node);
    }
    pthread_mutex_unlock(&p->mu);
    json_decref(o);
    return rc;
}

int primary_handoff_wait(struct primary *p, const char *node, const char *const *skip, size_t nskip,
                         const struct db_info *dbs, size_t n, int64_t timeout_us, char *out, size_t outlen)
{
    int64_t end = lv_mono_us() + timeout_us;
    int rc = LV_EBUSY;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct prep *best = NULL;
        for (struct prep *r = p->reps; r; r = r->next) {
            size_t have = 0;
            int skipped = 0;
            for (size_t k = 0; k < nskip; k++)
                skipped |= strcmp(r->node, skip[k]) == 0;
            if (!r->connected || r->superseded || skipped || (node && *node && strcmp(r->node, node) != 0))
                continue;
            for (size_t i = 0; i < n; i++) {
                struct pdb *d = find_pdb(r, dbs[i].name);
                have += d && d->acked >= dbs[i].txid;
            }
            if (have == n) {
                best = r;
                break;
            }
        }
        if (best) {
            snprintf(out, outlen, "%s", best->node);
            rc = 0;
            break;
        }
        int64_t left = end - lv_mono_us();
        if (left <= 0)
            break;
        lv_cond_wait_us(&p->ack_cv, &p->mu, left);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int primary_sync_enabled(const struct primary *p)
{
    return p && p->sync_n > 0;
}

int primary_sync_wait(void *arg, const char *name, uint64_t txid)
{
    struct primary *p = arg;
    int64_t end = lv_mono_us() + p->sync_timeout_us;
    int waited = 0, acked = 0;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        int in_sync = 0, have = 0;
        for (struct prep *r = p->reps; r; r = r->next) {
            struct pdb *d;
            if (!r->connected || r->superseded || !r->in_sync)
                continue;
            in_sync++;
            if ((d = find_pdb(r, name)) != NULL && d->acked >= txid)
                have++;
        }
        if (have >= p->sync_n) {
            acked = 1;
            if (p->sync_short)
                LV_INFO("replication: %d replica(s) in sync again: commits wait for sync-replicas (%d)", in_sync,
                        p->sync_n);
            p->sync_short = 0;
            break;
        }
        if (dbreg_is_fenced(p->reg))
            break; /* no use waiting: refused below */
        if (in_sync < p->sync_n || __atomic_load_n(&p->stopping, __ATOMIC_ACQUIRE)) {
            if (!p->sync_short)
                LV_WARN("replication: sync-replicas is %d but only %d replica(s) are connected and in sync: commits "
                        "do not wait (asynchronous) until enough catch up", p->sync_n, in_sync);
            p->sync_short = 1;
            __atomic_add_fetch(&p->sync_skipped, 1, __ATOMIC_RELAXED);
            break;
        }
        int64_t left = end - lv_mono_us();
        if (left <= 0) {
            for (struct prep *r = p->reps; r; r = r->next) {
                struct pdb *d = r->connected && r->in_sync ? find_pdb(r, name) : NULL;
                if (r->connected && r->in_sync && (!d || d->acked < txid)) {
                    r->in_sync = 0; /* until it holds everything sent to it again */
                    LV_WARN("replication: replica %s (%s) did not acknowledge TXID %" PRIu64 " of %s within "
                            "sync-timeout (%lld ms): it no longer counts for sync-replicas until it catches up",
                            r->node, r->url, txid, name, (long long)(p->sync_timeout_us / 1000));
                }
            }
            __atomic_add_fetch(&p->sync_timeouts, 1, __ATOMIC_RELAXED);
            continue; /* counts again: fewer in sync now */
        }
        waited = 1;
        lv_cond_wait_us(&p->ack_cv, &p->mu, left < PR_SYNC_POLL_US ? left : PR_SYNC_POLL_US); /* and the fence */
    }
    pthread_mutex_unlock(&p->mu);
    if (waited)
        __atomic_add_fetch(&p->sync_waits, 1, __ATOMIC_RELAXED);
    if (!acked && dbreg_is_fenced(p->reg)) {
        /* Fenced meanwhile and no replica holds it: the new primary may not
         * have it, so the application must not be told it committed. */
        LV_WARN("replication: TXID %" PRIu64 " of %s is not acknowledged to the application (an I/O error): no "
                "replica confirmed it before this node was fenced", txid, name);
        return LV_EREFUSED;
    }
    return 0;
}

void primary_stop_streams(struct primary *p)
{
    if (p)
        __atomic_store_n(&p->stopping, 1, __ATOMIC_RELEASE);
}

void primary_free(struct primary *p)
{
    if (!p)
        return;
    pthread_cond_destroy(&p->ack_cv);
    while (p->reps) {
        struct prep *r = p->reps;
        LV_ASSERT(!r->connected);
        p->reps = r->next;
        prep_free(r);
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
}
