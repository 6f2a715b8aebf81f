/*
 * cluster.c -- the cluster-id and node-id files of data.dir (cluster.h).
 *
 * Design.  Both files have one format: 32 lower-case hex digits and "\n",
 * exactly 33 bytes, so a reader can tell a whole file from anything else
 * (an editor's trailing space, a truncated copy, upper case) and refuse the
 * latter rather than guess.  They are written only through publish_buf
 * (temporary file, fsync, rename, directory fsync): a crash leaves either
 * the old file, the new one, or none, never a torn one.  An ID is 128 bits
 * from getrandom(2) (blocking only before the kernel's pool is first
 * seeded, at early boot).
 *
 * Errors are logged here, naming the file and what the operator can do,
 * because the caller (the daemon's start-up, the replica's first contact)
 * can add nothing to that.  The daemon holds data.dir's lock, so no two
 * processes write these files at once.
 */
#include "replica/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "base/lv.h"
#include "base/lvlog.h"
#include "base/publish.h"

#define ID_FILE_LEN (CLUSTER_ID_HEX + 1) /* hex digits and the newline */

/* What to do about a damaged file, per name. */
static const char *fix_hint(const char *name)
{
    if (strcmp(name, "cluster-id") == 0)
        return "it names the cluster this node's databases belong to: copy data.dir/cluster-id from the primary "
               "(on a replica, deleting it makes the node adopt the primary's at its next connection)";
    return "delete it: the node makes a new ID at its next start (its primary then sees a new replica)";
}

/* Read data_dir/name (an ID file) into id.  0, LV_ENOENT, LV_ECORRUPT, LV_EIO (logged but LV_ENOENT). */
static int id_load(const char *data_dir, const char *name, uint8_t id[16])
{
    char path[PATH_MAX], buf[ID_FILE_LEN + 1];
    ssize_t n;
    size_t got = 0;
    int fd, rc = 0;

    if (snprintf(path, sizeof path, "%s/%s", data_dir, name) >= (int)sizeof path)
        return LV_EINVAL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return LV_ENOENT;
        LV_ERROR("cannot read %s: %s", path, strerror(errno));
        return LV_EIO;
    }
    while (got < sizeof buf) {
        n = read(fd, buf + got, sizeof buf - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            LV_ERROR("cannot read %s: %s", path, strerror(errno));
            rc = LV_EIO;
            goto out_close;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got != ID_FILE_LEN || buf[CLUSTER_ID_HEX] != '\n')
        goto corrupt;
    for (size_t i = 0; i < CLUSTER_ID_HEX; i++)
        if (!((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f')))
            goto corrupt;
    buf[CLUSTER_ID_HEX] = '\0';
    if (lv_unhex(buf, id, 16) != 0)
        goto corrupt;
    goto out_close;
corrupt:
    LV_ERROR("%s is damaged: it must hold exactly 32 lower-case hex digits and a newline (%zu byte(s) found); %s",
             path, got, fix_hint(name));
    rc = LV_ECORRUPT;
out_close:
    close(fd);
    return rc;
}

/* Publish id as data_dir/name.  0 or LV_E* (publish logs). */
static int id_save(const char *data_dir, const char *name, const uint8_t id[16])
{
    char path[PATH_MAX], buf[ID_FILE_LEN + 1];

    if (snprintf(path, sizeof path, "%s/%s", data_dir, name) >= (int)sizeof path)
        return LV_EINVAL;
    lv_hex(id, 16, buf);
    buf[CLUSTER_ID_HEX] = '\n';
    return publish_buf(path, buf, ID_FILE_LEN);
}

int cluster_id_random(uint8_t id[16])
{
    size_t got = 0;

    while (got < 16) {
        ssize_t n = getrandom(id + got, 16 - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            LV_ERROR("getrandom: %s", strerror(errno));
            return LV_EIO;
        }
        got += (size_t)n;
    }
    return 0;
}

/* Load data_dir/name, or make a random ID and save it there. */
static int id_ensure(const char *data_dir, const char *name, uint8_t id[16])
{
    char hex[CLUSTER_ID_HEX + 1];
    int rc = id_load(data_dir, name, id);

    if (rc != LV_ENOENT)
        return rc;
    rc = cluster_id_random(id);
    if (rc == 0)
        rc = id_save(data_dir, name, id);
    if (rc == 0)
        LV_INFO("made %s %s in %s", name, lv_hex(id, 16, hex), data_dir);
    return rc;
}

int cluster_id_load(const char *data_dir, uint8_t id[16])
{
    return id_load(data_dir, "cluster-id", id);
}

int cluster_id_save(const char *data_dir, const uint8_t id[16])
{
    return id_save(data_dir, "cluster-id", id);
}

int cluster_id_ensure(const char *data_dir, uint8_t id[16])
{
    return id_ensure(data_dir, "cluster-id", id);
}

int node_id_ensure(const char *data_dir, char out[33])
{
    uint8_t id[16];
    int rc = id_ensure(data_dir, "node-id", id);

    out[0] = '\0';
    if (rc == 0)
        lv_hex(id, 16, out);
    return rc;
}
