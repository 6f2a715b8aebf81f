/*
 * exports.c -- scheduled exports (config exports:, docs/DESIGN.md
 * "Scheduled exports", object names in docs/FORMAT.md).
 *
 * Jobs.  One struct exp_job per exports[] entry.  A job has a schedule
 * (cron.h, UTC), a destination store (archive/store.h, opened on first use
 * and reopened after a failed open, so a destination that is missing at
 * start-up is retried like any other failure), a format and a selection of
 * databases.  `on:` is checked by exp_job_runs_here(): today every node is
 * a primary, so a job always runs; a later `on: replica` only changes that
 * predicate (and the image source), not the job.
 *
 * A run (exp_run_job), at time NOW of the scheduler's clock:
 *   1. dbreg_list gives every live database with its last TXID;
 *   2. a selected database whose (database ID, TXID) equals the one last
 *      exported by this job (the job's saved state) is skipped: nothing
 *      changed since;
 *   3. format db: for each changed database, dbreg_image writes a
 *      consistent image (at a TXID >= the listed one) into
 *      data.dir/tmp/export-XXXXXX, the file is mmap'ed and stored as
 *      NAME/YYYYMMDDTHHMMSSZ-txid-TXID.db (NOW in UTC), the state is saved,
 *      and the database's exports beyond `keep` are deleted (oldest first,
 *      found with one LIST of NAME/).  Databases fail independently: the
 *      run goes on with the others and fails at the end;
 *      format tar.zst: when any selected database changed, ALL selected
 *      databases are imaged and written as one bundle (bundle.h)
 *      litevault-YYYYMMDDTHHMMSSZ.tar.zst, so every bundle is a complete,
 *      self-contained restore point; bundles beyond `keep` are deleted.
 *   4. success: the next run is the schedule's first time after the end of
 *      the run (missed times are not caught up one by one); failure: the
 *      run is retried after min(2^(k-1) s, 5 min) for the k-th consecutive
 *      failure, regardless of the schedule, until one succeeds.
 * Images are never held in anonymous memory: the temp file is mapped
 * read-only and handed to store_put (the S3 backend uploads large objects
 * in parts straight from the mapping).
 *
 * State.  data.dir/exports/NAME.json (published atomically with
 * publish_buf after every uploaded object and at the end of a
 * successful run that uploaded something; idle runs do not rewrite it):
 *   {"version":1, "job":NAME, "url":URL, "format":"db"|"tar.zst",
 *    "last_success_us":T,
 *    "databases": {DBNAME: {"id":32hex, "txid":N, "key":KEY, "time_us":T}}}
 * A state whose url or format differs from the config is ignored (the new
 * destination has none of the old exports).  The file lives outside
 * data.dir/meta/ because meta/ holds one directory per database name and
 * a database may be called "exports".
 *
 * Threads and locks.  One scheduler thread (exp_thread, a worker.h worker)
 * runs the due jobs one after the other, then naps until the earliest next
 * run (at most 60 s at a time, so a wall-clock step is noticed; the nap
 * itself is on the monotonic clock, and exports_stop ends it).  x->mu
 * guards every job field marked (mu); the scheduler holds it only for
 * short updates, never across I/O, so /status and /metrics never wait for
 * an upload.  Fields marked (thread) belong to whoever runs the jobs (the
 * thread, or a test calling exports_run_due; never both).
 *
 * Job states: WAITING (!running) --exp_run_job--> RUNNING --> WAITING,
 * after a success (consecutive = 0, next_us from the schedule) or a failure
 * (consecutive + 1, next_us = end + backoff).  Invariants, checked by
 * assert_job_state at both moves (x->mu held):
 *   J1. consecutive <= failures <= runs.
 *   J2. WAITING after a failure (consecutive > 0): last_error is set, and
 *       last_error_us >= last_run_us.
 *   J3. WAITING after a success (consecutive == 0, runs > 0):
 *       last_success_us == last_run_us.
 *   J4. WAITING: next_us >= last_run_us (the next run is never in the past
 *       of the last one).
 *
 * Clock.  x->now (injectable) gives the wall-clock time used for the
 * schedule, object names and status; tests pass a fake clock and call
 * exports_run_due themselves.  Waiting uses the real clock.
 */
#include <stddef.h>

#include "export/exports.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/cksum.h"
#include "export/cron.h"
#include "capture/db.h"
#include "base/lv.h"
#include "base/worker.h"
#include "base/lvlog.h"
#include "base/metrics.h"
#include "store/store.h"
#include "base/publish.h"
#include "base/sys.h"

#if defined(__has_include)
#if __has_include("bundle.h")
#include "export/bundle.h"
#define EXP_HAVE_BUNDLE 1
#endif
#endif
#ifndef EXP_HAVE_BUNDLE
#define EXP_HAVE_BUNDLE 0
#endif

#define EXP_IMAGE_TIMEOUT_MS 30000
#define EXP_BACKOFF_BASE_US 1000000LL
#define EXP_BACKOFF_MAX_US (300LL * 1000000)
#define EXP_MAX_SLEEP_US (60LL * 1000000)
#define EXP_ERR_MAX 1024
#define EXP_STAMP_CHARS EXPORTS_STAMP_CHARS
#define EXP_STAMP_LEN EXPORTS_STAMP_LEN

struct exp_job {
    const struct exports_job *cfg; /* the job's configuration (borrowed, immutable) */
    struct cron sched;               /* parsed schedule (immutable) */
    char url[1024];                  /* destination without query options, for messages (immutable) */
    char state_path[PATH_MAX];       /* data.dir/exports/NAME.json (immutable) */
    struct store *store;             /* destination, NULL until opened (thread) */
    int warned_missing;              /* a listed database was missing and that was logged (thread) */
    json_t *state;                   /* saved state, see the design comment (mu) */
    int64_t next_us;                 /* next run time (mu) */
    int64_t last_run_us;             /* start of the last run, 0 if none (mu) */
    int64_t last_success_us;         /* start of the last successful run, 0 if none (mu) */
    int64_t last_error_us;           /* time of the last failure, 0 if none (mu) */
    char last_error[EXP_ERR_MAX];    /* message of the last failure, "" if none (mu) */
    uint64_t runs;                   /* runs started (mu) */
    uint64_t failures;               /* runs failed (mu) */
    uint64_t consecutive;            /* failures since the last success (mu) */
    uint64_t uploaded;               /* objects uploaded (mu) */
    uint64_t bytes;                  /* bytes uploaded (mu) */
    uint64_t skipped;                /* databases skipped because unchanged (mu) */
    uint64_t deleted;                /* old exports deleted (mu) */
    int running;                     /* a run is in progress (mu) */
};

struct exports {
    const char *data_dir;      /* data.dir (borrowed) */
    struct dbreg *reg;         /* databases (borrowed) */
    exports_clock_fn now;      /* wall clock (immutable) */
    void *now_arg;             /* its argument */
    struct exp_job *jobs;      /* one per cfg->exports[] (array immutable; fields as marked) */
    size_t n;                  /* jobs */
    pthread_mutex_t mu;        /* guards the (mu) job fields */
    struct worker *th;         /* scheduler thread, NULL if not started (exports_start/exports_stop) */
    struct worker *self;       /* the same worker as its thread knows it; NULL when a test runs
                                * the jobs (thread) */
};

/* Has exports_stop asked the scheduler to end?  (Never, when a test runs the jobs.) */
static int exp_stopping(struct exports *x)
{
    return x->self && worker_stopping(x->self);
}

static int64_t exp_real_clock(void *arg)
{
    LV_UNUSED(arg);
    return lv_now_us();
}

/* Does job j run on this node?  (on: primary; every node is a primary until replication exists.) */
static int exp_job_runs_here(const struct exp_job *j)
{
    return j->cfg->on == EXPORTS_ON_PRIMARY;
}

static const char *exp_format_name(int f)
{
    return f == EXPORTS_FMT_TAR_ZST ? "tar.zst" : "db";
}

/* YYYYMMDDTHHMMSSZ of t_us (UTC) into buf (>= 17 bytes). */
static char *exp_stamp(int64_t t_us, char *buf, size_t n)
{
    time_t t = (time_t)(t_us >= 0 ? t_us / 1000000 : (t_us - 999999) / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y%m%dT%H%M%SZ", &tm);
    return buf;
}

/* ---- object names ---- */

/* Is s (length len) YYYYMMDDTHHMMSSZ? */
static int exp_is_stamp(const char *s, size_t len)
{
    if (len != EXP_STAMP_CHARS)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (i == 8 ? s[i] != 'T' : i == 15 ? s[i] != 'Z' : (s[i] < '0' || s[i] > '9'))
            return 0;
    }
    return 1;
}

int exports_parse_key(const char *key, char *db, size_t dbn, char stamp[EXPORTS_STAMP_LEN], uint64_t *txid,
                      int *bundle)
{
    const char *slash = strrchr(key, '/'), *base = slash ? slash + 1 : key, *p;
    size_t blen = strlen(base);

    *txid = 0;
    if (!slash && strncmp(key, "litevault-", 10) == 0 && blen == 10 + EXP_STAMP_CHARS + 8 &&
        strcmp(key + 10 + EXP_STAMP_CHARS, ".tar.zst") == 0 && exp_is_stamp(key + 10, EXP_STAMP_CHARS)) {
        memcpy(stamp, key + 10, EXP_STAMP_CHARS);
        stamp[EXP_STAMP_CHARS] = '\0';
        db[0] = '\0';
        *bundle = 1;
        return 1;
    }
    if (!slash || slash == key || (size_t)(slash - key) >= dbn || blen < EXP_STAMP_CHARS + 6 + 1 + 3 ||
        !exp_is_stamp(base, EXP_STAMP_CHARS) || strncmp(base + EXP_STAMP_CHARS, "-txid-", 6) != 0 ||
        strcmp(base + blen - 3, ".db") != 0)
        return 0;
    p = base + EXP_STAMP_CHARS + 6;
    if (p == base + blen - 3)
        return 0;
    for (const char *q = p; q < base + blen - 3; q++) {
        if (*q < '0' || *q > '9')
            return 0;
        *txid = *txid * 10 + (uint64_t)(*q - '0');
    }
    memcpy(stamp, base, EXP_STAMP_CHARS);
    stamp[EXP_STAMP_CHARS] = '\0';
    memcpy(db, key, (size_t)(slash - key));
    db[slash - key] = '\0';
    *bundle = 0;
    return 1;
}

/* One export found in a listing. */
struct exp_found {
    const struct store_obj *obj; /* the object (borrowed from the list) */
    char stamp[EXP_STAMP_LEN];   /* its time stamp */
    uint64_t txid;               /* its TXID (0 for bundles) */
};

static int exp_found_cmp(const void *a, const void *b)
{
    const struct exp_found *x = a, *y = b;
    int c = strcmp(x->stamp, y->stamp);
    if (c)
        return c;
    return x->txid < y->txid ? -1 : x->txid > y->txid;
}

/* Delete the exports of database db (bundles if db is NULL) beyond keep, oldest
 * first, never `newest` (the key just uploaded).  Failures are logged, not returned. */
static void exp_prune(struct exports *x, struct exp_job *j, const char *db, const char *newest)
{
    struct store_list l = {0};
    struct exp_found *v = NULL;
    char prefix[1100], name[1024], stamp[EXP_STAMP_LEN];
    size_t n = 0, deleted = 0;
    uint64_t txid;
    int bundle, rc;

    if (db)
        snprintf(prefix, sizeof prefix, "%s/", db);
    else
        snprintf(prefix, sizeof prefix, "litevault-");
    rc = store_list(j->store, prefix, &l);
    if (rc < 0) {
        LV_WARN("export %s: cannot list %s%s to delete old exports: %s", j->cfg->name, j->url, prefix,
                store_last_error(j->store));
        return;
    }
    v = calloc(l.n ? l.n : 1, sizeof *v);
    if (!v)
        goto out_free_list;
    for (size_t i = 0; i < l.n; i++) {
        if (!exports_parse_key(l.v[i].key, name, sizeof name, stamp, &txid, &bundle))
            continue;
        if (db ? (bundle || strcmp(name, db) != 0) : !bundle)
            continue;
        v[n].obj = &l.v[i];
        memcpy(v[n].stamp, stamp, sizeof stamp);
        v[n].txid = txid;
        n++;
    }
    qsort(v, n, sizeof *v, exp_found_cmp);
    for (size_t i = 0; i + (size_t)j->cfg->keep < n; i++) {
        if (newest && strcmp(v[i].obj->key, newest) == 0)
            continue;
        rc = store_delete(j->store, v[i].obj->key);
        if (rc < 0) {
            LV_WARN("export %s: cannot delete old export %s at %s: %s", j->cfg->name, v[i].obj->key, j->url,
                    store_last_error(j->store));
            continue;
        }
        LV_INFO("export %s: deleted old export %s (keep %d)", j->cfg->name, v[i].obj->key, j->cfg->keep);
        deleted++;
    }
    pthread_mutex_lock(&x->mu);
    j->deleted += deleted;
    pthread_mutex_unlock(&x->mu);
    free(v);
out_free_list:
    store_list_free(&l);
}

/* ---- state ---- */

/* Save j->state (caller does not hold mu).  Failures are logged: a lost state only
 * means unchanged databases are exported once more after a restart. */
static void exp_save_state(struct exports *x, struct exp_job *j)
{
    char dir[PATH_MAX];
    char *s;
    int rc;

    pthread_mutex_lock(&x->mu);
    s = json_dumps(j->state, JSON_INDENT(1) | JSON_SORT_KEYS);
    pthread_mutex_unlock(&x->mu);
    if (!s) {
        LV_WARN("export %s: out of memory saving %s", j->cfg->name, j->state_path);
        return;
    }
    snprintf(dir, sizeof dir, "%s/exports", x->data_dir);
    rc = sys_mkdir_p(dir);
    if (rc == 0)
        rc = publish_buf(j->state_path, s, strlen(s));
    if (rc < 0)
        LV_WARN("export %s: cannot save %s (%s); unchanged databases may be exported again after a restart",
                j->cfg->name, j->state_path, lv_strerror(rc));
    free(s);
}

/* A fresh state for j. */
static json_t *exp_new_state(const struct exp_job *j)
{
    return json_pack("{s:i, s:s, s:s, s:s, s:I, s:o}", "version", 1, "job", j->cfg->name, "url", j->cfg->url, "format",
                     exp_format_name(j->cfg->format), "last_success_us", (json_int_t)0, "databases", json_object());
}

/* Load data.dir/exports/NAME.json if it belongs to this job's destination and format. */
static json_t *exp_load_state(const struct exp_job *j)
{
    void *buf = NULL;
    size_t len = 0;
    json_t *o;
    json_error_t je;

    if (access(j->state_path, F_OK) != 0)
        return exp_new_state(j);
    if (sys_read_file(j->state_path, &buf, &len) < 0) {
        LV_WARN("export %s: cannot read %s; starting afresh", j->cfg->name, j->state_path);
        return exp_new_state(j);
    }
    o = json_loadb(buf, len, 0, &je);
    free(buf);
    if (!o || !json_is_object(json_object_get(o, "databases")) ||
        json_integer_value(json_object_get(o, "version")) != 1) {
        LV_WARN("export %s: %s is not a valid state file (%s); starting afresh", j->cfg->name, j->state_path,
                o ? "unexpected content" : je.text);
        json_decref(o);
        return exp_new_state(j);
    }
    const char *url = json_string_value(json_object_get(o, "url"));
    const char *fmt = json_string_value(json_object_get(o, "format"));
    if (!url || !fmt || strcmp(url, j->cfg->url) != 0 || strcmp(fmt, exp_format_name(j->cfg->format)) != 0) {
        LV_INFO("export %s: destination or format changed since the last run; every database will be exported",
                j->cfg->name);
        json_decref(o);
        return exp_new_state(j);
    }
    return o;
}

/* 1 if database (id, txid) is what j last exported for name (caller holds mu). */
static int exp_unchanged(const struct exp_job *j, const char *name, const uint8_t id[16], uint64_t txid)
{
    json_t *e = json_object_get(json_object_get(j->state, "databases"), name);
    char hex[33];
    const char *sid = json_string_value(json_object_get(e, "id"));

    lv_hex(id, 16, hex);
    return e && sid && strcmp(sid, hex) == 0 && (uint64_t)json_integer_value(json_object_get(e, "txid")) == txid;
}

/* Record that name was exported at (id, txid) as key (caller holds mu). */
static void exp_record(struct exp_job *j, const char *name, const uint8_t id[16], uint64_t txid, int64_t time_us,
                       const char *key)
{
    char hex[33];
    lv_hex(id, 16, hex);
    json_object_set_new(json_object_get(j->state, "databases"), name,
                        json_pack("{s:s, s:I, s:s, s:I}", "id", hex, "txid", (json_int_t)txid, "key", key, "time_us",
                                  (json_int_t)time_us));
}

/* ---- one run ---- */

/* Append "msg" to the run's error text err (first errors win when it fills up). */
static void exp_adderr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void exp_adderr(char *err, size_t errlen, const char *fmt, ...)
{
    size_t used = strlen(err);
    va_list ap;

    if (used && used + 3 < errlen) {
        strcat(err, "; ");
        used += 2;
    }
    if (used + 1 >= errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err + used, errlen - used, fmt, ap);
    va_end(ap);
}

/* Write a consistent image of name into a new temp file under data.dir/tmp
 * (path into tmp).  0 or negative with a message in err. */
static int exp_image(struct exports *x, const char *name, char *tmp, size_t n, struct db_image_info *info, char *err,
                     size_t errlen)
{
    char dir[PATH_MAX];
    int fd, rc;

    dbreg_tmp_dir(x->data_dir, dir, sizeof dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        LV_ERROR("mkdir(%s): %s", dir, strerror(errno));
        exp_adderr(err, errlen, "%s: cannot create %s: %s", name, dir, strerror(errno));
        return lv_from_errno(errno);
    }
    snprintf(tmp, n, "%s/export-XXXXXX", dir);
    fd = mkstemp(tmp);
    if (fd < 0) {
        LV_ERROR("mkstemp(%s): %s", tmp, strerror(errno));
        exp_adderr(err, errlen, "%s: cannot create a temp file in %s: %s", name, dir, strerror(errno));
        return lv_from_errno(errno);
    }
    rc = dbreg_image(x->reg, name, fd, EXP_IMAGE_TIMEOUT_MS, info, NULL, NULL);
    close(fd);
    if (rc < 0) {
        unlink(tmp);
        tmp[0] = '\0';
        exp_adderr(err, errlen, "%s: cannot take an image: %s%s", name, lv_strerror(rc),
                   rc == LV_EBUSY ? " (a transaction stayed open)" :
                   rc == LV_EMISMATCH ? " (the files disagree with the log; see the daemon log)" : "");
    }
    return rc;
}

/* Store the file at path as key, mapped read-only (never copied into anonymous memory). */
static int exp_upload(struct exp_job *j, const char *path, const char *key, uint64_t *bytes, char *err, size_t errlen)
{
    struct stat st;
    void *map;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = lv_from_errno(errno);
        LV_ERROR("open(%s): %s", path, strerror(errno));
        exp_adderr(err, errlen, "cannot read %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if (st.st_size == 0) {
        close(fd);
        exp_adderr(err, errlen, "%s: empty file", path);
        return LV_EINVAL;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        LV_ERROR("mmap(%s): %s", path, strerror(errno));
        exp_adderr(err, errlen, "cannot map %s: %s", path, strerror(errno));
        return lv_from_errno(errno);
    }
    madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
    rc = store_put(j->store, key, map, (size_t)st.st_size);
    munmap(map, (size_t)st.st_size);
    if (rc < 0) {
        exp_adderr(err, errlen, "upload of %s to %s failed: %s", key, j->url, store_last_error(j->store));
        return rc;
    }
    *bytes = (uint64_t)st.st_size;
    return 0;
}

/* Is info selected by j?  (all, or listed by name) */
static int exp_selected(const struct exp_job *j, const char *name)
{
    if (!j->cfg->databases)
        return 1;
    for (size_t i = 0; i < j->cfg->ndatabases; i++) {
        if (strcmp(j->cfg->databases[i], name) == 0)
            return 1;
    }
    return 0;
}

/* Warn (once until they appear) about listed databases that do not exist. */
static void exp_check_missing(struct exp_job *j, const struct db_info *v, size_t n)
{
    int missing = 0;

    for (size_t i = 0; j->cfg->databases && i < j->cfg->ndatabases; i++) {
        size_t k;
        for (k = 0; k < n && strcmp(v[k].name, j->cfg->databases[i]) != 0; k++)
            ;
        if (k == n) {
            missing = 1;
            if (!j->warned_missing)
                LV_WARN("export %s: database %s is listed in databases but does not exist (yet); skipping it",
                        j->cfg->name, j->cfg->databases[i]);
        }
    }
    j->warned_missing = missing;
}

/* Format db: one object per changed database.  0, or negative with err filled. */
static int exp_run_db(struct exports *x, struct exp_job *j, const struct db_info *v, size_t n, const char *stamp,
                      char *err, size_t errlen)
{
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        const struct db_info *d = &v[i];
        struct db_image_info info;
        char tmp[PATH_MAX], key[1200];
        uint64_t bytes = 0;
        int unchanged, r;

        if (!exp_selected(j, d->name) || d->txid == 0)
            continue;
        pthread_mutex_lock(&x->mu);
        unchanged = exp_unchanged(j, d->name, d->id, d->txid);
        if (unchanged)
            j->skipped++;
        pthread_mutex_unlock(&x->mu);
        if (exp_stopping(x)) {
            exp_adderr(err, errlen, "interrupted by shutdown");
            return LV_EBUSY;
        }
        if (unchanged) {
            LV_DEBUG("export %s: %s unchanged at TXID %llu; skipped", j->cfg->name, d->name,
                     (unsigned long long)d->txid);
            continue;
        }
        if (d->broken) {
            exp_adderr(err, errlen, "%s: the database is broken (see the daemon log)", d->name);
            rc = LV_EBROKEN;
            continue;
        }
        r = exp_image(x, d->name, tmp, sizeof tmp, &info, err, errlen);
        if (r < 0) {
            rc = r;
            continue;
        }
        snprintf(key, sizeof key, "%s/%s-txid-%llu.db", d->name, stamp, (unsigned long long)info.txid);
        r = exp_upload(j, tmp, key, &bytes, err, errlen);
        unlink(tmp);
        if (r < 0) {
            rc = r;
            continue;
        }
        LV_INFO("export %s: %s at TXID %llu stored as %s (%llu bytes)", j->cfg->name, d->name,
                (unsigned long long)info.txid, key, (unsigned long long)bytes);
        pthread_mutex_lock(&x->mu);
        exp_record(j, d->name, info.id, info.txid, info.time_us, key);
        j->uploaded++;
        j->bytes += bytes;
        pthread_mutex_unlock(&x->mu);
        exp_save_state(x, j);
        exp_prune(x, j, d->name, key);
    }
    return rc;
}

#if EXP_HAVE_BUNDLE
/* Whether any selected database of v[n] changed since the job's last
 * export; when none did, they all count as skipped. */
static int exp_bundle_changed(struct exports *x, struct exp_job *j, const struct db_info *v, size_t n)
{
    size_t nsel = 0, nchanged = 0;

    pthread_mutex_lock(&x->mu);
    for (size_t i = 0; i < n; i++) {
        if (!exp_selected(j, v[i].name) || v[i].txid == 0)
            continue;
        nsel++;
        if (!exp_unchanged(j, v[i].name, v[i].id, v[i].txid))
            nchanged++;
    }
    if (nchanged == 0)
        j->skipped += nsel;
    pthread_mutex_unlock(&x->mu);
    return nchanged > 0;
}

/* An image of every selected database of v[n] into tmps[] and the bundle
 * entries ents[] (*ne of them).  A broken database or a failed image is
 * left out (the run then fails).  0 or negative with the reasons in err. */
static int exp_bundle_images(struct exports *x, struct exp_job *j, const struct db_info *v, size_t n,
                             struct bundle_entry *ents, char (*tmps)[PATH_MAX], size_t *ne, char *err, size_t errlen)
{
    int rc = 0, r;

    for (size_t i = 0; i < n; i++) {
        struct db_image_info info;
        if (!exp_selected(j, v[i].name) || v[i].txid == 0)
            continue;
        if (v[i].broken) {
            exp_adderr(err, errlen, "%s: the database is broken (see the daemon log); left out of the bundle",
                       v[i].name);
            rc = LV_EBROKEN;
            continue;
        }
        r = exp_image(x, v[i].name, tmps[*ne], sizeof tmps[*ne], &info, err, errlen);
        if (r < 0) {
            rc = r;
            continue;
        }
        ents[*ne] = (struct bundle_entry){.name = v[i].name, .path = tmps[*ne], .txid = info.txid,
                                          .time_us = info.time_us, .cksum = info.cksum, .page_size = info.page_size,
                                          .db_pages = info.db_pages};
        memcpy(ents[*ne].id, info.id, 16);
        (*ne)++;
    }
    return rc;
}

/* Write ents[ne] as the bundle litevault-STAMP.tar.zst into data.dir/tmp
 * (bpath, PATH_MAX bytes: "" when none was made), upload it, record it in
 * the state and prune old bundles.  0 or negative with the reason in err. */
static int exp_bundle_store(struct exports *x, struct exp_job *j, const struct bundle_entry *ents, size_t ne,
                            const char *stamp, char *bpath, char *err, size_t errlen)
{
    char key[64], dir[PATH_MAX], berr[512] = "";
    uint64_t bytes = 0;
    int r, fd;

    dbreg_tmp_dir(x->data_dir, dir, sizeof dir);
    snprintf(bpath, PATH_MAX, "%s/export-bundle-XXXXXX", dir);
    fd = mkstemp(bpath);
    if (fd < 0) {
        LV_ERROR("mkstemp(%s): %s", bpath, strerror(errno));
        exp_adderr(err, errlen, "cannot create a temp file in %s: %s", dir, strerror(errno));
        bpath[0] = '\0';
        return lv_from_errno(errno);
    }
    snprintf(key, sizeof key, "litevault-%s.tar.zst", stamp);
    r = bundle_write(fd, key, ents, ne, NULL, NULL, berr, sizeof berr);
    close(fd);
    if (r < 0) {
        exp_adderr(err, errlen, "cannot write the bundle: %s", berr[0] ? berr : lv_strerror(r));
        return r;
    }
    r = exp_upload(j, bpath, key, &bytes, err, errlen);
    if (r < 0)
        return r;
    LV_INFO("export %s: %zu database(s) stored as %s (%llu bytes)", j->cfg->name, ne, key, (unsigned long long)bytes);
    pthread_mutex_lock(&x->mu);
    for (size_t i = 0; i < ne; i++)
        exp_record(j, ents[i].name, ents[i].id, ents[i].txid, ents[i].time_us, key);
    j->uploaded++;
    j->bytes += bytes;
    pthread_mutex_unlock(&x->mu);
    exp_save_state(x, j);
    exp_prune(x, j, NULL, key);
    return 0;
}
#endif

/* Format tar.zst: one bundle of every selected database when any changed. */
static int exp_run_bundle(struct exports *x, struct exp_job *j, const struct db_info *v, size_t n, const char *stamp,
                          char *err, size_t errlen)
{
#if EXP_HAVE_BUNDLE
    struct bundle_entry *ents = calloc(n ? n : 1, sizeof *ents);
    char (*tmps)[PATH_MAX] = calloc(n ? n : 1, sizeof *tmps);
    char bpath[PATH_MAX] = "";
    size_t ne = 0;
    int rc = 0, r;

    if (!ents || !tmps) {
        exp_adderr(err, errlen, "out of memory");
        rc = LV_ENOMEM;
        goto out;
    }
    if (!exp_bundle_changed(x, j, v, n)) {
        LV_DEBUG("export %s: no selected database changed; skipped", j->cfg->name);
        goto out;
    }
    rc = exp_bundle_images(x, j, v, n, ents, tmps, &ne, err, errlen);
    if (ne == 0)
        goto out;
    r = exp_bundle_store(x, j, ents, ne, stamp, bpath, err, errlen);
    if (r < 0)
        rc = r;
out:
    for (size_t i = 0; tmps && i < ne; i++)
        unlink(tmps[i]);
    if (bpath[0])
        unlink(bpath);
    free(ents);
    free(tmps);
    return rc;
#else
    LV_UNUSED(x);
    LV_UNUSED(j);
    LV_UNUSED(v);
    LV_UNUSED(n);
    LV_UNUSED(stamp);
    exp_adderr(err, errlen, "format tar.zst is not available in this build (the bundle module is missing); "
                            "use format: db");
    return LV_EINVAL;
#endif
}

/* One attempt of job j.  0 or negative with the reason in err. */
static int exp_attempt(struct exports *x, struct exp_job *j, int64_t now, char *err, size_t errlen)
{
    struct db_info *v = NULL;
    size_t n = 0;
    char stamp[EXP_STAMP_LEN], oerr[512] = "";
    struct store_opts o = {0};
    int rc;

    if (!j->store) {
        store_conf_opts(&j->cfg->s3, &o);
        rc = store_open(j->cfg->url, &o, &j->store, oerr, sizeof oerr);
        if (rc < 0) {
            exp_adderr(err, errlen, "cannot open the destination: %s", oerr[0] ? oerr : lv_strerror(rc));
            return rc;
        }
    }
    rc = dbreg_list(x->reg, &v, &n);
    if (rc < 0) {
        exp_adderr(err, errlen, "cannot list the databases: %s", lv_strerror(rc));
        return rc;
    }
    exp_check_missing(j, v, n);
    exp_stamp(now, stamp, sizeof stamp);
    if (j->cfg->format == EXPORTS_FMT_TAR_ZST)
        rc = exp_run_bundle(x, j, v, n, stamp, err, errlen);
    else
        rc = exp_run_db(x, j, v, n, stamp, err, errlen);
    free(v);
    if (rc < 0) {
        /* Reopen the destination on the retry: a directory that was replaced, a reset connection pool. */
        store_close(j->store);
        j->store = NULL;
    }
    return rc;
}

/* Run job j once now, then schedule its next run. */
/* J1-J4 of the design comment for job j; x->mu held.  Compiled out of
 * release builds. */
static void assert_job_state(const struct exp_job *j)
{
    LV_ASSERT(j->running == 0 || j->running == 1);
    LV_ASSERT(j->consecutive <= j->failures && j->failures <= j->runs); /* J1 */
    if (j->running || j->runs == 0)
        return;
    if (j->consecutive > 0) /* J2 */
        LV_ASSERT(j->last_error[0] != '\0' && j->last_error_us >= j->last_run_us);
    else /* J3 */
        LV_ASSERT(j->last_success_us == j->last_run_us);
    LV_ASSERT(j->next_us >= j->last_run_us); /* J4 */
}

static void exp_run_job(struct exports *x, struct exp_job *j)
{
    int64_t start = x->now(x->now_arg), end, next;
    char err[EXP_ERR_MAX] = "";
    uint64_t consecutive, uploaded_before;
    int rc;

    pthread_mutex_lock(&x->mu);
    assert_job_state(j);
    LV_ASSERT(!j->running); /* WAITING -> RUNNING */
    uploaded_before = j->uploaded;
    j->running = 1;
    j->runs++;
    j->last_run_us = start;
    pthread_mutex_unlock(&x->mu);

    rc = exp_attempt(x, j, start, err, sizeof err);

    end = x->now(x->now_arg);
    if (end < start)
        end = start;
    pthread_mutex_lock(&x->mu);
    j->running = 0;
    if (rc == 0) {
        j->consecutive = 0;
        j->last_success_us = start;
        json_object_set_new(j->state, "last_success_us", json_integer(start));
        if (cron_next(&j->sched, end, &next) < 0)
            next = INT64_MAX;
    } else {
        int k = j->consecutive < 20 ? (int)j->consecutive : 20;
        int64_t delay = EXP_BACKOFF_BASE_US << k;
        j->failures++;
        j->consecutive++;
        j->last_error_us = end;
        snprintf(j->last_error, sizeof j->last_error, "%s", err[0] ? err : lv_strerror(rc));
        next = end + (delay < EXP_BACKOFF_MAX_US ? delay : EXP_BACKOFF_MAX_US);
    }
    j->next_us = next;
    assert_job_state(j); /* RUNNING -> WAITING */
    consecutive = j->consecutive;
    int save = rc == 0 && j->uploaded != uploaded_before; /* idle runs do not rewrite the file */
    pthread_mutex_unlock(&x->mu);
    if (save) {
        exp_save_state(x, j);
    } else if (rc < 0) {
        char t[40];
        LV_WARN("export %s: run failed (%llu in a row): %s; retrying at %s", j->cfg->name,
                (unsigned long long)consecutive, err[0] ? err : lv_strerror(rc), lv_fmt_time(next, t, sizeof t));
    }
}

int64_t exports_run_due(struct exports *x)
{
    int64_t earliest = INT64_MAX;

    if (!x)
        return earliest;
    for (size_t i = 0; i < x->n; i++) {
        struct exp_job *j = &x->jobs[i];
        int64_t next;

        if (exp_stopping(x))
            break;
        pthread_mutex_lock(&x->mu);
        next = j->next_us;
        pthread_mutex_unlock(&x->mu);
        if (exp_job_runs_here(j) && next <= x->now(x->now_arg)) {
            exp_run_job(x, j);
            pthread_mutex_lock(&x->mu);
            next = j->next_us;
            pthread_mutex_unlock(&x->mu);
        }
        if (exp_job_runs_here(j) && next < earliest)
            earliest = next;
    }
    return earliest;
}

/* The scheduler: run the due jobs, nap until the earliest next run (at
 * most EXP_MAX_SLEEP_US, so a wall-clock step is noticed), again. */
static void exp_thread(struct worker *w, void *arg)
{
    struct exports *x = arg;
    int64_t wait;

    x->self = w;
    do {
        wait = exports_run_due(x) - x->now(x->now_arg);
        if (wait > EXP_MAX_SLEEP_US)
            wait = EXP_MAX_SLEEP_US;
    } while (!worker_nap(w, wait));
}

/* ---- life cycle ---- */

int exports_new(const struct exports_job *jobs, size_t njobs, const char *data_dir, struct dbreg *reg,
                exports_clock_fn now, void *now_arg, struct exports **out, char *err, size_t errlen)
{
    struct exports *x;
    char cerr[256];
    int64_t t;

    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (njobs == 0)
        return 0;
    x = calloc(1, sizeof *x);
    if (!x || !(x->jobs = calloc(njobs, sizeof *x->jobs))) {
        free(x);
        snprintf(err, errlen, "out of memory");
        return LV_ENOMEM;
    }
    x->data_dir = data_dir;
    x->reg = reg;
    x->now = now ? now : exp_real_clock;
    x->now_arg = now_arg;
    x->n = njobs;
    pthread_mutex_init(&x->mu, NULL);
    t = x->now(x->now_arg);
    for (size_t i = 0; i < x->n; i++) {
        struct exp_job *j = &x->jobs[i];
        char *q;
        j->cfg = &jobs[i];
        if (cron_parse(j->cfg->schedule, &j->sched, cerr, sizeof cerr) < 0) {
            snprintf(err, errlen, "exports[%zu].schedule: bad schedule \"%s\": %s", i, j->cfg->schedule, cerr);
            exports_stop(x);
            return LV_ECONFIG;
        }
        snprintf(j->url, sizeof j->url, "%s", j->cfg->url);
        if ((q = strchr(j->url, '?')) != NULL)
            *q = '\0';
        snprintf(j->state_path, sizeof j->state_path, "%s/exports/%s.json", data_dir, j->cfg->name);
        j->state = exp_load_state(j);
        if (!j->state) {
            snprintf(err, errlen, "out of memory");
            exports_stop(x);
            return LV_ENOMEM;
        }
        j->last_success_us = json_integer_value(json_object_get(j->state, "last_success_us"));
        if (cron_next(&j->sched, t, &j->next_us) < 0)
            j->next_us = INT64_MAX;
        if (j->cfg->format == EXPORTS_FMT_TAR_ZST && !EXP_HAVE_BUNDLE)
            LV_WARN("export %s: format tar.zst is not available in this build; its runs will fail", j->cfg->name);
        char nt[40];
        LV_INFO("export %s: %s every \"%s\" (UTC) to %s, keep %d; first run at %s", j->cfg->name,
                exp_format_name(j->cfg->format), j->cfg->schedule, j->url, j->cfg->keep,
                lv_fmt_time(j->next_us, nt, sizeof nt));
    }
    *out = x;
    return 0;
}

int exports_start(struct exports *x)
{
    if (!x)
        return 0;
    return worker_start("lv-exports", exp_thread, x, &x->th); /* logged if it fails */
}

void exports_stop(struct exports *x)
{
    if (!x)
        return;
    worker_stop(x->th);
    for (size_t i = 0; x->jobs && i < x->n; i++) {
        store_close(x->jobs[i].store);
        json_decref(x->jobs[i].state);
    }
    pthread_mutex_destroy(&x->mu);
    free(x->jobs);
    free(x);
}

/* ---- status and metrics ---- */

static json_t *exp_time_json(int64_t t)
{
    char buf[40];
    if (t <= 0 || t == INT64_MAX)
        return json_null();
    return json_string(lv_fmt_time(t, buf, sizeof buf));
}

json_t *exports_status_json(struct exports *x)
{
    json_t *arr = json_array();

    if (!x || !arr)
        return arr;
    pthread_mutex_lock(&x->mu);
    for (size_t i = 0; i < x->n; i++) {
        struct exp_job *j = &x->jobs[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(j->cfg->name));
        json_object_set_new(o, "schedule", json_string(j->cfg->schedule));
        json_object_set_new(o, "url", json_string(j->url));
        json_object_set_new(o, "format", json_string(exp_format_name(j->cfg->format)));
        json_object_set_new(o, "keep", json_integer(j->cfg->keep));
        json_object_set_new(o, "on", json_string("primary"));
        json_object_set_new(o, "running", json_boolean(j->running));
        json_object_set_new(o, "last_run", exp_time_json(j->last_run_us));
        json_object_set_new(o, "last_success", exp_time_json(j->last_success_us));
        json_object_set_new(o, "last_error", j->last_error[0] ? json_string(j->last_error) : json_null());
        json_object_set_new(o, "last_error_time", exp_time_json(j->last_error_us));
        json_object_set_new(o, "next_run", exp_time_json(j->next_us));
        json_object_set_new(o, "runs", json_integer((json_int_t)j->runs));
        json_object_set_new(o, "failures", json_integer((json_int_t)j->failures));
        json_object_set_new(o, "consecutive_failures", json_integer((json_int_t)j->consecutive));
        json_object_set_new(o, "uploaded", json_integer((json_int_t)j->uploaded));
        json_object_set_new(o, "uploaded_bytes", json_integer((json_int_t)j->bytes));
        json_object_set_new(o, "skipped", json_integer((json_int_t)j->skipped));
        json_object_set_new(o, "deleted", json_integer((json_int_t)j->deleted));
        json_object_set_new(o, "databases", json_deep_copy(json_object_get(j->state, "databases")));
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&x->mu);
    return arr;
}

int exports_metrics(struct exports *x, char **buf, size_t *len, size_t *cap)
{
    static const struct metrics_family m[] = {
        {"litevault_export_runs_total", "counter", "Scheduled export runs started."},
        {"litevault_export_failures_total", "counter", "Scheduled export runs that failed."},
        {"litevault_export_consecutive_failures", "gauge", "Failed runs since the last success."},
        {"litevault_export_uploaded_total", "counter", "Export objects uploaded."},
        {"litevault_export_uploaded_bytes_total", "counter", "Bytes of export objects uploaded."},
        {"litevault_export_skipped_total", "counter", "Databases skipped because unchanged since their last export."},
        {"litevault_export_deleted_total", "counter", "Old exports deleted beyond keep."},
        {"litevault_export_last_success_timestamp_seconds", "gauge", "Start of the last successful run (0: none)."},
        {"litevault_export_last_error_timestamp_seconds", "gauge", "Time of the last failed run (0: none)."},
        {"litevault_export_next_run_timestamp_seconds", "gauge", "When the job runs next."},
    };
    int rc = 0;

    if (!x)
        return 0;
    pthread_mutex_lock(&x->mu);
    for (size_t k = 0; k < LV_ARRAY_LEN(m) && rc == 0; k++) {
        rc = metrics_family(buf, len, cap, &m[k]);
        for (size_t i = 0; i < x->n && rc == 0; i++) {
            const struct exp_job *j = &x->jobs[i];
            uint64_t u[] = {j->runs, j->failures, j->consecutive, j->uploaded, j->bytes, j->skipped, j->deleted};
            char esc[512];
            metrics_label_escape(j->cfg->name, esc, sizeof esc);
            if (k < LV_ARRAY_LEN(u)) {
                rc = metrics_appendf(buf, len, cap, "%s{job=\"%s\"} %llu\n", m[k].name, esc,
                                     (unsigned long long)u[k]);
            } else {
                int64_t t = k == 7 ? j->last_success_us : k == 8 ? j->last_error_us : j->next_us;
                if (t == INT64_MAX)
                    t = 0;
                rc = metrics_appendf(buf, len, cap, "%s{job=\"%s\"} %.3f\n", m[k].name, esc, (double)t / 1e6);
            }
        }
    }
    pthread_mutex_unlock(&x->mu);
    return rc;
}

