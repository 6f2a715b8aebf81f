/*
 * rx.c -- the replica's receiving side (see rx.h).
 *
 * PER DATABASE (struct rxdb), states:
 *   STREAMING  nothing pending: every record received is applied.
 *   APPLYING   records pending (a batch being gathered from what the
 *              applier took at once, or too large for one call: applied
 *              batch_max at a time, counted by rec_cost: bytes received
 *              plus pages decoded, what dbreg_apply holds in memory).
 *   WAITING    the last apply found readers holding SQLite's locks past
 *              wait_ms (LV_EBUSY): the batch stays, grows with new
 *              records, and is tried again wait_ms later; other databases
 *              go on meanwhile.
 *   SNAPSHOT   between SNAP_BEGIN and an installed SNAP_END (snap_ending:
 *              the install waits for readers like a batch; records that
 *              arrive meanwhile queue behind it).
 *   FAILED     the database broke (LV_EBROKEN, LV_EIO, LV_ENOSPC, ...):
 *              logged, its frames are ignored until the next session.
 * A failure that means "this copy cannot continue the primary's history"
 * (LV_ECHAIN, LV_EGAP, LV_EMISMATCH, LV_ECORRUPT) drops the database's
 * pending records, sets resync (the next session asks the primary for a
 * snapshot of it: "resync":true in POST /v1/stream) and ends the session.
 *
 * Invariants:
 *   R1. A database's records are applied in the order received, each batch
 *       continuing the last applied TXID (dbreg_apply checks it too), and a
 *       batch holds only records that continue each other: a break in the
 *       chain is applied (and refused) on its own, after the valid run
 *       before it.
 *   R2. Nothing of a database is applied while its snapshot is being
 *       received or waits to be installed.
 *   R3. x->pending is the sum of the databases' pending record bytes.
 *
 * LAG (repl_rx_stats).  With records pending: now - commit time of the
 * oldest (the replica is at least that far behind).  Receiving a
 * snapshot: how long it has been receiving.  Otherwise: apply time -
 * commit time of the last record applied (the replication delay of the
 * last commit).  Commit times are the primary's clock: across machines
 * the figure includes their clock offset (clamped at 0).
 *
 * LOCKING.  x->mu guards the database array and every field repl_rx_stats
 * reads; the driving thread is the only writer, takes x->mu for its
 * writes and never holds it across a sink call.
 */
#include "replica/rx.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lv.h"
#include "base/lvlog.h"

#define RX_BATCH_DEFAULT (16u << 20)

struct rxdb {
    char name[1024];
    struct db_rec *recs;      /* pending records (raw copies owned) */
    size_t nrecs, cap;
    size_t bytes;             /* their bytes */
    size_t cost;              /* their rec_cost: what applying them all at once would hold in memory */
    uint64_t txid;            /* last TXID applied */
    uint64_t recv_txid;       /* last TXID received */
    int64_t last_lag_us;      /* apply time - commit time of the last record applied */
    struct db_snap *snap;     /* snapshot being received, or waiting to be installed */
    struct db_image_info snap_info;
    int snap_ending;          /* SNAP_END answered LV_EBUSY: install again when due */
    int64_t snap_since_us;    /* SNAP_BEGIN's arrival (wall clock) */
    int64_t next_try_mono;    /* WAITING: not before */
    int busy;                 /* WAITING */
    int failed;               /* FAILED */
    char error[256];          /* why */
    int resync;               /* asks for a snapshot next session */
    uint64_t records;         /* applied */
    uint64_t nbusy;           /* LV_EBUSY answers */
    int64_t lock_wait_us;     /* total */
};

struct repl_rx {
    struct repl_sink s;
    int wait_ms;
    size_t batch_max;
    pthread_mutex_t mu;
    struct rxdb *dbs;
    size_t n, cap;
    size_t pending;           /* R3 */
    struct repl_rx_totals tot;
};

/* ------------------------------------------------------------ entries */

static long find_db(const struct repl_rx *x, const char *name)
{
    for (size_t i = 0; i < x->n; i++)
        if (strcmp(x->dbs[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* Index of name's entry, created if missing; -1 on ENOMEM. */
static long get_db(struct repl_rx *x, const char *name)
{
    long i = find_db(x, name);

    if (i >= 0)
        return i;
    pthread_mutex_lock(&x->mu);
    if (lv_grow((void **)&x->dbs, &x->cap, x->n, sizeof *x->dbs, 8) == 0) {
        struct rxdb *d = &x->dbs[x->n];
        memset(d, 0, sizeof *d);
        snprintf(d->name, sizeof d->name, "%s", name);
        i = (long)x->n++;
    }
    pthread_mutex_unlock(&x->mu);
    return i;
}

/* What applying record r holds in memory: its bytes as received and its
 * pages decoded.  batch_max bounds the sum over a batch. */
static size_t rec_cost(const struct db_rec *r)
{
    return r->len + (size_t)r->h.raw_len;
}

/* Drop the first k pending records of d (x->mu held). */
static void drop_first(struct repl_rx *x, struct rxdb *d, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        d->bytes -= d->recs[i].len;
        d->cost -= rec_cost(&d->recs[i]);
        x->pending -= d->recs[i].len;
        free((void *)d->recs[i].raw);
    }
    if (k < d->nrecs)
        memmove(d->recs, d->recs + k, (d->nrecs - k) * sizeof *d->recs);
    d->nrecs -= k;
    d->busy = d->nrecs ? d->busy : 0;
}

static void drop_pending(struct repl_rx *x, struct rxdb *d)
{
    pthread_mutex_lock(&x->mu);
    drop_first(x, d, d->nrecs);
    pthread_mutex_unlock(&x->mu);
}

static void abort_snap(struct repl_rx *x, struct rxdb *d)
{
    if (!d->snap)
        return;
    x->s.snap_abort(x->s.arg, d->snap);
    pthread_mutex_lock(&x->mu);
    d->snap = NULL;
    d->snap_ending = 0;
    pthread_mutex_unlock(&x->mu);
}

static void del_db(struct repl_rx *x, size_t i)
{
    struct rxdb *d = &x->dbs[i];

    abort_snap(x, d);
    pthread_mutex_lock(&x->mu);
    drop_first(x, d, d->nrecs);
    free(d->recs);
    memmove(&x->dbs[i], &x->dbs[i + 1], (x->n - i - 1) * sizeof *x->dbs);
    x->n--;
    pthread_mutex_unlock(&x->mu);
}

/* msg without a leading "name: " (the registry's messages name the
 * database; ours add the name once). */
static const char *unnamed(const char *name, const char *msg)
{
    size_t n = strlen(name);
    return strncmp(msg, name, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ' ? msg + n + 2 : msg;
}

/* Does rc mean "this copy cannot continue the primary's history"? */
static int needs_snapshot(int rc)
{
    return rc == LV_ECHAIN || rc == LV_EGAP || rc == LV_EMISMATCH || rc == LV_ECORRUPT || rc == LV_EVERSION;
}

/* The database broke: FAILED until the next session. */
static void fail_db(struct repl_rx *x, struct rxdb *d, int rc, const char *msg)
{
    msg = unnamed(d->name, msg);
    LV_ERROR("replication: %s: %s (%s); its updates are skipped until the next connection to the primary", d->name,
             msg, lv_strerror(rc));
    abort_snap(x, d);
    pthread_mutex_lock(&x->mu);
    drop_first(x, d, d->nrecs);
    d->failed = 1;
    snprintf(d->error, sizeof d->error, "%s (%s)", msg, lv_strerror(rc));
    pthread_mutex_unlock(&x->mu);
}

/* ------------------------------------------------------------ applying */

/* Install d's received snapshot (SNAP_END, or again after LV_EBUSY).  0, or
 * negative: the session must end. */
static int end_snap(struct repl_rx *x, struct rxdb *d, char *err, size_t errlen)
{
    char e[512] = "";
    int rc = x->s.snap_end(x->s.arg, d->snap, x->wait_ms, e, sizeof e);

    pthread_mutex_lock(&x->mu);
    if (rc == LV_EBUSY) {
        d->snap_ending = 1;
        d->busy = 1;
        d->nbusy++;
        x->tot.busy++;
        d->next_try_mono = lv_mono_us() + (int64_t)x->wait_ms * 1000;
        pthread_mutex_unlock(&x->mu);
        return 0;
    }
    d->snap = NULL; /* freed by snap_end whatever the result */
    d->snap_ending = 0;
    d->busy = 0;
    if (rc == 0) {
        d->txid = d->snap_info.txid;
        if (d->recv_txid < d->txid)
            d->recv_txid = d->txid;
        d->last_lag_us = 0;
        d->resync = 0;
        x->tot.snapshots++;
    } else {
        d->resync = 1;
    }
    pthread_mutex_unlock(&x->mu);
    if (rc == 0) {
        LV_INFO("replication: %s: snapshot installed at TXID %llu", d->name, (unsigned long long)d->snap_info.txid);
        return 0;
    }
    drop_pending(x, d);
    lv_seterr(err, errlen, "%s: installing the snapshot at TXID %llu: %s", d->name,
              (unsigned long long)d->snap_info.txid, e[0] ? unnamed(d->name, e) : lv_strerror(rc));
    return rc;
}

/* Does record b continue record a (TXID + 1, the checksum chain and a term
 * that does not go back; a SNAPSHOT record continues anything)? */
static int continues(const struct txlog_hdr *a, const struct txlog_hdr *b)
{
    return b->txid == a->txid + 1 &&
           ((b->flags & TXLOG_F_SNAPSHOT) || (b->pre_cksum == a->post_cksum && b->term >= a->term));
}

/* Apply what database i has pending, if due (or force).  0, or negative:
 * the session must end. */
static int apply_db(struct repl_rx *x, size_t i, int force, char *err, size_t errlen)
{
    struct rxdb *d = &x->dbs[i];
    int rc = 0;

    if (d->failed || (!d->snap_ending && d->nrecs == 0))
        return 0;
    if (!force && d->busy && lv_mono_us() < d->next_try_mono)
        return 0;
    if (d->snap_ending) {
        rc = end_snap(x, d, err, errlen);
        if (rc || d->snap_ending)
            return rc;
    }
    if (d->snap)
        return 0; /* R2 */
    while (d->nrecs > 0) {
        struct db_apply_stats st = {0, 0, 0};
        char e[512] = "";
        size_t k = 0, bytes = 0;
        /* A batch is a run of records that continue each other (R1): a
         * record that breaks the chain goes alone, after the run before it
         * was applied, so its refusal costs nothing that was valid. */
        while (k < d->nrecs && (k == 0 || (bytes + rec_cost(&d->recs[k]) <= x->batch_max &&
                                           continues(&d->recs[k - 1].h, &d->recs[k].h))))
            bytes += rec_cost(&d->recs[k++]);
        rc = x->s.apply(x->s.arg, d->name, d->recs, k, x->wait_ms, &st, e, sizeof e);
        int64_t now = lv_now_us();
        pthread_mutex_lock(&x->mu);
        d->lock_wait_us += st.lock_wait_us;
        if (rc == 0) {
            d->txid = d->recs[k - 1].h.txid;
            d->last_lag_us = now - d->recs[k - 1].h.time_us;
            d->records += k;
            x->tot.records += k;
            d->busy = 0;
            drop_first(x, d, k);
        } else if (rc == LV_EBUSY) {
            d->busy = 1;
            d->nbusy++;
            x->tot.busy++;
            d->next_try_mono = lv_mono_us() + (int64_t)x->wait_ms * 1000;
        }
        pthread_mutex_unlock(&x->mu);
        if (rc == LV_EBUSY)
            return 0;
        if (rc == 0)
            continue;
        if (needs_snapshot(rc)) {
            pthread_mutex_lock(&x->mu);
            d->resync = 1;
            drop_first(x, d, d->nrecs);
            pthread_mutex_unlock(&x->mu);
            lv_seterr(err, errlen, "%s: the records do not continue this replica's copy (%s); asking the primary "
                      "for a snapshot", d->name, e[0] ? unnamed(d->name, e) : lv_strerror(rc));
            return rc;
        }
        fail_db(x, d, rc, e[0] ? e : "applying records failed");
        return 0;
    }
    return 0;
}

int repl_rx_flush(struct repl_rx *x, int force, char *err, size_t errlen)
{
    for (size_t i = 0; i < x->n; i++) {
        int rc = apply_db(x, i, force, err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ frames */

static int on_record(struct repl_rx *x, const struct stream_frame *f, char *err, size_t errlen)
{
    long i = get_db(x, f->name);
    struct rxdb *d;
    void *copy;

    if (i < 0)
        return LV_ENOMEM;
    d = &x->dbs[i];
    if (d->failed)
        return 0;
    if (d->snap && !d->snap_ending) {
        lv_seterr(err, errlen, "%s: RECORD TXID %llu inside a snapshot (before its SNAP_END)", d->name,
                  (unsigned long long)f->hdr.txid);
        return LV_ECORRUPT;
    }
    copy = malloc(f->rec_len);
    if (!copy)
        return LV_ENOMEM;
    memcpy(copy, f->rec, f->rec_len);
    pthread_mutex_lock(&x->mu);
    if (lv_grow((void **)&d->recs, &d->cap, d->nrecs, sizeof *d->recs, 16) != 0) {
        pthread_mutex_unlock(&x->mu);
        free(copy);
        return LV_ENOMEM;
    }
    d->recs[d->nrecs++] = (struct db_rec){f->hdr, copy, f->rec_len};
    d->bytes += f->rec_len;
    d->cost += rec_cost(&d->recs[d->nrecs - 1]);
    x->pending += f->rec_len;
    if (f->hdr.txid > d->recv_txid)
        d->recv_txid = f->hdr.txid;
    pthread_mutex_unlock(&x->mu);
    /* A batch that reached batch_max goes now, without waiting for the end
     * of the network read. */
    return d->cost >= x->batch_max ? apply_db(x, (size_t)i, 0, err, errlen) : 0;
}

static int on_snap_begin(struct repl_rx *x, const struct stream_frame *f, char *err, size_t errlen)
{
    long i = get_db(x, f->name);
    struct rxdb *d;
    struct db_image_info info;
    struct db_snap *s = NULL;
    char e[512] = "";
    int rc;

    if (i < 0)
        return LV_ENOMEM;
    d = &x->dbs[i];
    /* The image replaces everything before it: pending records and an
     * earlier snapshot go. */
    abort_snap(x, d);
    drop_pending(x, d);
    memset(&info, 0, sizeof info);
    memcpy(info.id, f->dbid, 16);
    info.txid = f->txid;
    info.time_us = f->time_us;
    info.page_size = f->page_size;
    info.db_pages = f->db_pages;
    info.cksum = f->cksum;
    info.term = f->term;
    rc = x->s.snap_begin(x->s.arg, f->name, &info, &s, e, sizeof e);
    if (rc) {
        lv_seterr(err, errlen, "%s: cannot receive the snapshot at TXID %llu: %s", f->name,
                  (unsigned long long)f->txid, e[0] ? e : lv_strerror(rc));
        return rc;
    }
    LV_INFO("replication: %s: receiving a snapshot at TXID %llu (%u pages)", f->name, (unsigned long long)f->txid,
            f->db_pages);
    pthread_mutex_lock(&x->mu);
    d->snap = s;
    d->snap_info = info;
    d->snap_ending = 0;
    d->snap_since_us = lv_now_us();
    d->failed = 0;
    if (d->recv_txid < info.txid)
        d->recv_txid = info.txid;
    pthread_mutex_unlock(&x->mu);
    return 0;
}

/* The entry of a snapshot being received for f's name, or -1 (err set). */
static long snap_db(struct repl_rx *x, const struct stream_frame *f, char *err, size_t errlen)
{
    long i = find_db(x, f->name);

    if (i < 0 || !x->dbs[i].snap || x->dbs[i].snap_ending) {
        lv_seterr(err, errlen, "%s: %s without a SNAP_BEGIN", f->name, stream_type_name(f->type));
        return -1;
    }
    return i;
}

static int on_snap_pages(struct repl_rx *x, const struct stream_frame *f, char *err, size_t errlen)
{
    long i = snap_db(x, f, err, errlen);
    char e[512] = "";
    int rc;

    if (i < 0)
        return LV_ECORRUPT;
    struct rxdb *d = &x->dbs[i];
    if (f->page_size != d->snap_info.page_size) {
        lv_seterr(err, errlen, "%s: SNAP_PAGES of %u-byte pages in a snapshot of %u-byte pages", d->name,
                  f->page_size, d->snap_info.page_size);
        abort_snap(x, d);
        return LV_ECORRUPT;
    }
    rc = x->s.snap_pages(x->s.arg, d->snap, f->first_pgno, f->count, f->pages, e, sizeof e);
    if (rc) {
        lv_seterr(err, errlen, "%s: staging snapshot pages %u..%u: %s", d->name, f->first_pgno,
                  f->first_pgno + f->count - 1, e[0] ? e : lv_strerror(rc));
        abort_snap(x, d);
    }
    return rc;
}

static int on_drop(struct repl_rx *x, const struct stream_frame *f, char *err, size_t errlen)
{
    long i = find_db(x, f->name);
    char e[512] = "";
    int rc;

    if (i >= 0)
        del_db(x, (size_t)i);
    rc = x->s.drop(x->s.arg, f->name, e, sizeof e);
    if (rc == LV_ENOENT)
        rc = 0;
    if (rc)
        lv_seterr(err, errlen, "%s: deleting it as the primary did: %s", f->name, e[0] ? e : lv_strerror(rc));
    else
        LV_INFO("replication: %s: deleted (the primary deleted it)", f->name);
    return rc;
}

static int on_rename(struct repl_rx *x, const struct stream_frame *f, char *err, size_t errlen)
{
    long i = find_db(x, f->name), j;
    char e[512] = "";
    int rc;

    if (i >= 0 && x->dbs[i].snap_ending) {
        rc = end_snap(x, &x->dbs[i], err, errlen);
        if (rc == 0 && x->dbs[i].snap_ending) {
            lv_seterr(err, errlen, "%s: cannot rename it to %s while its snapshot waits for readers", f->name,
                      f->name2);
            rc = LV_EBUSY;
        }
        if (rc)
            return rc;
    }
    if (i >= 0)
        abort_snap(x, &x->dbs[i]);
    rc = x->s.rename(x->s.arg, f->name, f->name2, e, sizeof e);
    if (rc) {
        lv_seterr(err, errlen, "%s: renaming it to %s as the primary did: %s", f->name, f->name2,
                  e[0] ? e : lv_strerror(rc));
        return rc;
    }
    LV_INFO("replication: %s: renamed to %s (as on the primary)", f->name, f->name2);
    j = find_db(x, f->name2);
    if (j >= 0) {
        del_db(x, (size_t)j);
        i = find_db(x, f->name);
    }
    if (i >= 0) {
        /* Pending records follow the database to its new name. */
        pthread_mutex_lock(&x->mu);
        snprintf(x->dbs[i].name, sizeof x->dbs[i].name, "%s", f->name2);
        pthread_mutex_unlock(&x->mu);
    }
    return 0;
}

int repl_rx_frame(struct repl_rx *x, const struct stream_frame *f, char *err, size_t errlen)
{
    long i;

    switch (f->type) {
    case ST_RECORD:
        return on_record(x, f, err, errlen);
    case ST_SNAP_BEGIN:
        return on_snap_begin(x, f, err, errlen);
    case ST_SNAP_PAGES:
        return on_snap_pages(x, f, err, errlen);
    case ST_SNAP_END:
        i = snap_db(x, f, err, errlen);
        return i < 0 ? LV_ECORRUPT : end_snap(x, &x->dbs[i], err, errlen);
    case ST_DROP:
        return on_drop(x, f, err, errlen);
    case ST_RENAME:
        return on_rename(x, f, err, errlen);
    case ST_HEARTBEAT:
        return 0;
    default:
        lv_seterr(err, errlen, "unexpected %s frame", stream_type_name(f->type));
        return LV_EINVAL;
    }
}

/* ------------------------------------------------------------ sessions, status */

int repl_rx_session(struct repl_rx *x, const struct db_info *positions, size_t n)
{
    for (size_t i = x->n; i-- > 0;) {
        struct rxdb *d = &x->dbs[i];
        abort_snap(x, d);
        pthread_mutex_lock(&x->mu);
        drop_first(x, d, d->nrecs);
        d->failed = 0;
        d->error[0] = 0;
        d->busy = 0;
        pthread_mutex_unlock(&x->mu);
        int known = 0;
        for (size_t k = 0; k < n && !known; k++)
            known = strcmp(positions[k].name, d->name) == 0;
        if (!known && !d->resync)
            del_db(x, i);
    }
    for (size_t k = 0; k < n; k++) {
        long i = get_db(x, positions[k].name);
        if (i < 0)
            return LV_ENOMEM;
        pthread_mutex_lock(&x->mu);
        x->dbs[i].txid = x->dbs[i].recv_txid = positions[k].txid;
        pthread_mutex_unlock(&x->mu);
    }
    LV_ASSERT(x->pending == 0);
    return 0;
}

size_t repl_rx_pending(const struct repl_rx *x)
{
    return x->pending;
}

int repl_rx_resync(const struct repl_rx *x, const char *name)
{
    long i = find_db(x, name);
    return i >= 0 && x->dbs[i].resync;
}

static int stat_cmp(const void *a, const void *b)
{
    return strcmp(((const struct repl_rx_stat *)a)->name, ((const struct repl_rx_stat *)b)->name);
}

int repl_rx_stats(struct repl_rx *x, int64_t now_us, struct repl_rx_stat **out, size_t *n)
{
    struct repl_rx_stat *v;

    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&x->mu);
    v = calloc(x->n ? x->n : 1, sizeof *v);
    if (!v) {
        pthread_mutex_unlock(&x->mu);
        return LV_ENOMEM;
    }
    for (size_t i = 0; i < x->n; i++) {
        const struct rxdb *d = &x->dbs[i];
        struct repl_rx_stat *s = &v[i];
        snprintf(s->name, sizeof s->name, "%s", d->name);
        s->txid = d->txid;
        s->recv_txid = d->recv_txid > d->txid ? d->recv_txid : d->txid;
        s->records = d->records;
        s->busy = d->nbusy;
        s->lock_wait_us = d->lock_wait_us;
        if (d->failed) {
            s->state = "error";
            snprintf(s->error, sizeof s->error, "%s", d->error);
            s->lag_us = d->last_lag_us;
        } else if (d->snap) {
            s->state = "snapshot";
            s->lag_us = now_us - d->snap_since_us;
        } else if (d->nrecs) {
            s->state = d->busy ? "waiting-for-readers" : "applying";
            s->lag_us = now_us - d->recs[0].h.time_us;
        } else {
            s->state = "streaming";
            s->lag_us = d->last_lag_us;
        }
        if (s->lag_us < 0)
            s->lag_us = 0;
    }
    *n = x->n;
    pthread_mutex_unlock(&x->mu);
    qsort(v, *n, sizeof *v, stat_cmp);
    *out = v;
    return 0;
}

void repl_rx_totals(struct repl_rx *x, struct repl_rx_totals *t)
{
    pthread_mutex_lock(&x->mu);
    *t = x->tot;
    pthread_mutex_unlock(&x->mu);
}

int repl_rx_new(const struct repl_sink *s, const struct repl_rx_opts *o, struct repl_rx **out)
{
    struct repl_rx *x = calloc(1, sizeof *x);

    *out = NULL;
    if (!x)
        return LV_ENOMEM;
    x->s = *s;
    x->wait_ms = o->wait_ms > 0 ? o->wait_ms : 100;
    x->batch_max = o->batch_max ? o->batch_max : RX_BATCH_DEFAULT;
    pthread_mutex_init(&x->mu, NULL);
    *out = x;
    return 0;
}

void repl_rx_free(struct repl_rx *x)
{
    if (!x)
        return;
    while (x->n > 0)
        del_db(x, x->n - 1);
    free(x->dbs);
    pthread_mutex_destroy(&x->mu);
    free(x);
}

/* ------------------------------------------------------------ the registry as a sink */

static int sk_apply(void *arg, const char *name, const struct db_rec *recs, size_t n, int wait_ms,
                    struct db_apply_stats *st, char *err, size_t errlen)
{
    return dbreg_apply(arg, name, recs, n, wait_ms, st, err, errlen);
}

static int sk_snap_begin(void *arg, const char *name, const struct db_image_info *info, struct db_snap **out,
                         char *err, size_t errlen)
{
    return dbreg_snap_begin(arg, name, info, out, err, errlen);
}

static int sk_snap_pages(void *arg, struct db_snap *s, uint32_t first_pgno, uint32_t count, const void *pages,
                         char *err, size_t errlen)
{
    LV_UNUSED(arg);
    return dbreg_snap_pages(s, first_pgno, count, pages, err, errlen);
}

static int sk_snap_end(void *arg, struct db_snap *s, int wait_ms, char *err, size_t errlen)
{
    LV_UNUSED(arg);
    return dbreg_snap_end(s, wait_ms, err, errlen);
}

static void sk_snap_abort(void *arg, struct db_snap *s)
{
    LV_UNUSED(arg);
    dbreg_snap_abort(s);
}

static int sk_drop(void *arg, const char *name, char *err, size_t errlen)
{
    return dbreg_apply_drop(arg, name, err, errlen);
}

static int sk_rename(void *arg, const char *from, const char *to, char *err, size_t errlen)
{
    return dbreg_apply_rename(arg, from, to, err, errlen);
}

void repl_sink_dbreg(struct dbreg *reg, struct repl_sink *out)
{
    *out = (struct repl_sink){sk_apply, sk_snap_begin, sk_snap_pages, sk_snap_end, sk_snap_abort, sk_drop,
                              sk_rename, reg};
}
