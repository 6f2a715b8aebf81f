/*
 * db_image.c -- CONSISTENT IMAGES (dbreg_image), for export and archive
 * snapshots.
 *
 * The image is the database just after TXID N, the last record when the
 * image is set up.  Its pages come from two places, fixed at set-up:
 *   - pages with a committed frame in the current WAL (frames before
 *     wal_next): the newest such frame (the overlay), read from the WAL;
 *   - every other page: the main file.
 * Set-up happens with d->mu held at a moment when the files hold exactly
 * TXID N: never inside a rollback transaction (journal_active or bulk
 * writes pending).  If a rollback transaction is open, the request waits
 * in img_want and is set up by db_img_serve() at the first quiescent moment,
 * which every db_on_* call checks before releasing d->mu.  In WAL mode the
 * main file changes only through checkpoints, which copy committed frames.
 *
 * The pages whose source is the WAL are copied at set-up, under d->mu
 * (after logging every commit the WAL holds): with kernel passthrough,
 * writes to the -wal never reach the daemon, so nothing could protect them
 * later.  Copy-on-write: from set-up until the copy ends, every write or
 * truncate of the main file (all of which run under d->mu) first copies
 * into the image the not-yet-copied pages whose source it would change
 * (db_img_cow_main).  The copier also holds d->mu for each chunk
 * it copies, so a page is copied exactly once, from an unchanged source.
 * The image keeps its own descriptors of the main file and the WAL, so
 * unlink and rename do not disturb it.  A failure to write the image
 * (ENOSPC) marks it failed; the application's write still proceeds.
 * Finally the XOR of the copied pages' checksums must equal N's
 * post-checksum, else LV_EMISMATCH: an image is never silently wrong.
 */
#include "capture/db.h"
#include "capture/db_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cksum.h"
#include "base/lv.h"
#include "base/lvlog.h"
#include "base/sys.h"
#include "base/worker.h"
#include "log/wal.h"

/* One image being made.  Lives on dbreg_image's stack; fields marked (mu)
 * are touched by writers' copy-on-write under the database's mu. */
struct db_image {
    int out_fd;            /* destination (borrowed from the caller; immutable) */
    int mainfd;            /* own descriptor of the main file (fixed at set-up) */
    int walfd;             /* own descriptor of the WAL, or -1 (fixed at set-up) */
    struct overlay ov;     /* pages whose content is in a WAL frame (fixed at set-up) */
    uint32_t ps;           /* page size (fixed at set-up) */
    uint32_t npages;       /* pages in the image (fixed at set-up) */
    uint64_t *copied;      /* bitmap: page p copied (bit p-1) (mu) */
    uint64_t cksum;        /* XOR of cksum_page of the pages copied so far (mu) */
    uint64_t want;         /* expected checksum: post-checksum of txid (fixed at set-up) */
    uint64_t term;         /* term of txid's record (fixed at set-up) */
    uint64_t txid;         /* TXID of the image (fixed at set-up) */
    int64_t time_us;       /* its commit time (fixed at set-up) */
    uint8_t id[16];        /* database ID (fixed at set-up) */
    int err;               /* sticky: first error writing the image (mu) */
    int ready;             /* set up (img_want served) (mu) */
    uint8_t *buf;          /* scratch for one page (COW) (mu) */
};

/* Copy page p into the image if not copied yet.  d->mu held. */
static int img_copy_page(struct db *d, struct db_image *im, uint32_t p)
{
    uint64_t bit = (uint64_t)(p - 1);
    if (p == 0 || p > im->npages || (im->copied[bit / 64] >> (bit % 64) & 1) || im->err)
        return im->err;
    const struct change *c = db_overlay_find(&im->ov, p);
    int rc = c ? sys_pread_all(im->walfd, im->buf, im->ps, (off_t)c->off, d->name)
               : db_read_page(im->mainfd, im->buf, im->ps, (uint64_t)(p - 1) * im->ps);
    /* The WAL's pages are copied at set-up, while the map is the image's
     * state: a frame that no longer holds the logged page was overwritten
     * by a restart (passthrough: unseen), which SQLite makes only after a
     * checkpoint copied every frame, so the main file holds the page. */
    if (rc == 0 && c && cksum_page(p, im->buf, im->ps) != cksum_map_get(&d->map, p))
        rc = db_read_page(im->mainfd, im->buf, im->ps, (uint64_t)(p - 1) * im->ps);
    if (rc == 0)
        rc = sys_pwrite_all(im->out_fd, im->buf, im->ps, (off_t)(p - 1) * im->ps, "image");
    if (rc) {
        im->err = rc < 0 ? rc : LV_EIO;
        return im->err;
    }
    im->cksum ^= cksum_page(p, im->buf, im->ps);
    im->copied[bit / 64] |= 1ull << (bit % 64);
    return 0;
}

/* The main file's bytes [off, off+len) are about to change: save the
 * image's pages there whose source is the main file.  len 0 = to the end. */
void db_img_cow_main(struct db *d, uint64_t off, uint64_t len)
{
    struct db_image *im = d->img;
    if (!im || im->err || im->npages == 0)
        return;
    uint64_t first = off / im->ps + 1, last = len ? (off + len - 1) / im->ps + 1 : im->npages;
    if (last > im->npages)
        last = im->npages;
    for (uint64_t p = first; p <= last && !im->err; p++)
        if (!db_overlay_find(&im->ov, (uint32_t)p))
            img_copy_page(d, im, (uint32_t)p);
}

/* Release what an image owns (not out_fd). */
static void img_free(struct db_image *im)
{
    if (im->mainfd >= 0)
        close(im->mainfd);
    if (im->walfd >= 0)
        close(im->walfd);
    free(im->ov.v);
    free(im->copied);
    free(im->buf);
    im->ov.v = NULL;
    im->copied = NULL;
    im->buf = NULL;
    im->mainfd = im->walfd = -1;
}

/* Fix the image at the current state (TXID d->txid).  d->mu held, the
 * database quiescent.  0 or negative. */
static int img_setup(struct db *d, struct db_image *im)
{
    char rel[PATH_MAX + 8];
    int rc = 0;

    if (d->hdr_wal && (rc = db_wal_capture(d)) != 0)
        return rc; /* the image is at the last commit: every commit in the WAL is logged first */
    im->ps = d->map.page_size;
    im->npages = d->map.npages;
    im->want = d->map.total;
    im->txid = d->txid;
    im->term = d->log ? txlog_last_term(d->log) : 0;
    im->time_us = d->last_time;
    memcpy(im->id, d->id, 16);
    im->mainfd = openat(d->reg->rootfd, d->name, O_RDONLY | O_CLOEXEC);
    if (im->mainfd < 0) {
        LV_ERROR("%s: image: open %s/%s: %s", d->name, d->reg->files, d->name, strerror(errno));
        return lv_from_errno(errno);
    }
    /* Emptied here, before any page is copied into it (the WAL's pages
     * below, copy-on-write from now on). */
    if (sys_ftruncate(im->out_fd, 0, "image") != 0)
        return LV_EIO;
    im->copied = calloc((size_t)im->npages / 64 + 1, sizeof(uint64_t));
    im->buf = malloc(im->ps ? im->ps : 512);
    if (!im->copied || !im->buf)
        return LV_ENOMEM;
    if (d->wal_valid && d->wal_next > 0 && d->wal_psz == im->ps) {
        snprintf(rel, sizeof rel, "%s-wal", d->name);
        im->walfd = openat(d->reg->rootfd, rel, O_RDONLY | O_CLOEXEC);
        if (im->walfd < 0) {
            LV_ERROR("%s: image: open %s/%s: %s", d->name, d->reg->files, rel, strerror(errno));
            return lv_from_errno(errno);
        }
        rc = db_overlay_build(im->walfd, im->ps, d->wal_next, &im->ov);
        if (rc)
            return rc;
        /* The WAL's pages are copied now: with kernel passthrough the
         * daemon does not see the writes that may overwrite them after a
         * WAL restart (the main file's checkpoint writes it does see). */
        for (size_t i = 0; i < im->ov.n && !im->err; i++)
            img_copy_page(d, im, im->ov.v[i].pgno);
        if (im->err)
            return im->err;
    }
    im->ready = 1;
    d->img = im;
    return 0;
}

/* A quiescent moment: set up a waiting image.  d->mu held. */
void db_img_serve(struct db *d)
{
    struct db_image *im = d->img_want;
    if (!im || d->journal_active || d->bulk)
        return;
    d->img_want = NULL;
    int rc = img_setup(d, im);
    if (rc)
        im->err = rc;
    im->ready = 1;
    pthread_cond_broadcast(&d->img_cv);
}

/* Take the image at the current state, or wait (at most timeout_ms) for
 * the rollback transaction in progress to end.  d->mu held on entry and
 * on return (the wait releases it). */
static int img_start(struct db *d, struct db_image *im, int timeout_ms)
{
    int64_t deadline = lv_mono_us() + (int64_t)timeout_ms * 1000;

    if (d->kind != DBK_SQLITE || d->txid == 0)
        return d->broken ? LV_EBROKEN : LV_ENOENT;
    if (d->broken)
        return LV_EBROKEN;
    if (d->jpt)
        (void)db_journal_follow(d, 0); /* a commit the daemon did not see ends the transaction */
    if (!d->journal_active && !d->bulk)
        return img_setup(d, im);
    d->img_want = im;
    while (!im->ready && !d->broken) {
        int64_t left = deadline - lv_mono_us();
        if (left <= 0 || lv_cond_wait_us(&d->img_cv, &d->mu, left) == ETIMEDOUT)
            break;
    }
    if (im->ready)
        return im->err;
    d->img_want = NULL;
    if (d->broken)
        return LV_EBROKEN;
    LV_WARN("%s: image: a transaction stayed open for %d ms; try again", d->name, timeout_ms);
    return LV_EBUSY;
}

/* Copy pages p0 .. p0+n-1 that copy-on-write has not saved yet, reading
 * runs of the main file with one pread (chunk: n pages).  d->mu held. */
static int img_copy_chunk(struct db *d, struct db_image *im, uint8_t *chunk, uint32_t p0, uint32_t n)
{
    uint32_t run0 = 0, runlen = 0; /* pending run of pages to write from chunk */
    int rc = im->err;

    if (rc == 0 && d->broken)
        rc = LV_EBROKEN;
    if (rc == 0)
        rc = db_read_page(im->mainfd, chunk, n * im->ps, (uint64_t)(p0 - 1) * im->ps);
    for (uint32_t i = 0; i <= n && rc == 0; i++) {
        uint32_t p = p0 + i;
        uint64_t bit = p - 1;
        if (i == n || (im->copied[bit / 64] >> (bit % 64) & 1)) {
            if (runlen)
                rc = sys_pwrite_all(im->out_fd, chunk + (size_t)run0 * im->ps, (size_t)runlen * im->ps,
                                    (off_t)(p0 - 1 + run0) * im->ps, "image");
            runlen = 0;
            continue;
        }
        const struct change *c = db_overlay_find(&im->ov, p);
        if (c)
            rc = sys_pread_all(im->walfd, chunk + (size_t)i * im->ps, im->ps, (off_t)c->off, d->name);
        if (rc)
            break;
        im->cksum ^= cksum_page(p, chunk + (size_t)i * im->ps, im->ps);
        im->copied[bit / 64] |= 1ull << (bit % 64);
        if (!runlen)
            run0 = i;
        runlen++;
    }
    return rc ? rc : im->err;
}

/* Copy the whole image in chunks of about 1 MiB, each under d->mu (writers
 * wait at most one chunk).  d->mu not held on entry nor on return. */
static int img_copy_all(struct db *d, struct db_image *im, db_image_progress_fn progress, void *arg)
{
    uint32_t per = im->ps ? (uint32_t)((1u << 20) / im->ps) : 1;
    uint8_t *chunk;
    int rc = 0;

    if (per == 0)
        per = 1;
    chunk = malloc((size_t)per * (im->ps ? im->ps : 512));
    if (!chunk)
        return LV_ENOMEM;
    /* Test seam: LV_TEST_IMAGE_DELAY_US slows the copy between chunks so
     * that tests can make writers overlap it (unset in production). */
    const char *delay_env = getenv("LV_TEST_IMAGE_DELAY_US");
    long delay_us = delay_env ? atol(delay_env) : 0;
    for (uint32_t p0 = 1; p0 <= im->npages && rc == 0; p0 += per) {
        uint32_t n = im->npages - p0 + 1 < per ? im->npages - p0 + 1 : per;
        if (delay_us > 0 && p0 > 1)
            usleep((useconds_t)delay_us);
        pthread_mutex_lock(&d->mu);
        rc = img_copy_chunk(d, im, chunk, p0, n);
        pthread_mutex_unlock(&d->mu);
        /* Start writing back what was copied (every ~8 MiB) while the copy
         * goes on, so that the caller's fsync of the image finds little
         * left to write.  Advisory: errors surface at that fsync. */
        if (rc == 0 && ((uint64_t)(p0 - 1 + n) * im->ps) / (8u << 20) != ((uint64_t)(p0 - 1) * im->ps) / (8u << 20))
            (void)sync_file_range(im->out_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        if (rc == 0 && progress)
            progress(arg, (uint64_t)(p0 - 1 + n), im->npages);
    }
    free(chunk);
    return rc;
}

/* Cut the image to its size and check its checksum against the log's
 * post checksum of its TXID.  d->mu held. */
static int img_finish(struct db *d, struct db_image *im, struct db_image_info *info)
{
    char a[17], b[17];

    if (sys_ftruncate(im->out_fd, (off_t)im->npages * im->ps, "image") != 0)
        return LV_EIO;
    if (im->cksum != im->want) {
        LV_ERROR("%s: image at TXID %llu has checksum %s, the log says %s: the files disagree with the log; "
                 "the image is discarded",
                 d->name, (unsigned long long)im->txid, cksum_hex(im->cksum, a), cksum_hex(im->want, b));
        return LV_EMISMATCH;
    }
    if (info) {
        memcpy(info->id, im->id, 16);
        info->txid = im->txid;
        info->time_us = im->time_us;
        info->page_size = im->ps;
        info->db_pages = im->npages;
        info->cksum = im->cksum;
        info->term = im->term;
    }
    return 0;
}

int dbreg_image(struct dbreg *r, const char *name, int out_fd, int timeout_ms, struct db_image_info *info,
                db_image_progress_fn progress, void *arg)
{
    struct db_image im = {.out_fd = out_fd, .mainfd = -1, .walfd = -1};
    struct db *d = dbreg_get(r, name, 0);
    int rc;

    if (!d)
        return LV_ENOENT;
    pthread_mutex_lock(&d->img_mu);
    pthread_mutex_lock(&d->mu);
    rc = img_start(d, &im, timeout_ms);
    if (rc)
        goto out_clear_img;
    pthread_mutex_unlock(&d->mu);
    rc = img_copy_all(d, &im, progress, arg);
    pthread_mutex_lock(&d->mu);
    if (rc == 0 && im.npages == 0 && progress)
        progress(arg, 0, 0);
    if (rc == 0)
        rc = img_finish(d, &im, info);
out_clear_img:
    if (d->img == &im)
        d->img = NULL;
    pthread_mutex_unlock(&d->mu);
    pthread_mutex_unlock(&d->img_mu);
    img_free(&im);
    db_put(d);
    return rc;
}
