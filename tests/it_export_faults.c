/*
 * it_export_faults.c -- `litevault export` and `litevault import` when the
 * disk fails while they publish their output (src/base/publish.h, through
 * the syscall seam; LV_FAULT in the command's environment arms the faults,
 * see src/base/sys.h).
 *
 * For every way a file is published:
 *   export --db, output on the data's filesystem  (the image is adopted and renamed)
 *   export --db, output on another filesystem     (copied into a temporary file; /dev/shm)
 *   export --db --vacuum                          (VACUUM INTO a temporary file, adopted)
 *   export --all -o OUT.tar                       (the bundle streamed into a temporary file)
 *   import --db NEW                               (a hidden temporary name on the mount,
 *                                                  renamed with RENAME_NOREPLACE)
 * and for ENOSPC and EIO (and a short write) injected into its writes, its
 * fsync and its rename, the command must
 *   - exit with 1,
 *   - print a message naming the output file,
 *   - leave no output file and no temporary file (the output's directory
 *     stays empty; for import, the mount has no new name), and no image in
 *     data.dir/tmp;
 * and the same command without faults must then succeed.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/lvtest.h"

static struct lvnode *fN;   /* this test's node (owned by the fixture registry) */
static char fBase[512];     /* scratch directory on the data's filesystem */
static char fShm[512];      /* scratch directory on /dev/shm ("" if it is the same filesystem) */

static void f_rm_shm(void *arg)
{
    (void)arg;
    if (fShm[0])
        run_cmd(NULL, "rm -rf '%s'", fShm);
    fShm[0] = 0;
}

TestSuite(export_faults, .fini = lvt_fini, .timeout = 300);

/* Start a node with two databases (WAL and DELETE mode) holding some rows. */
static void f_setup(void)
{
    fN = lvnode_started(NULL);
    char *a = lvnode_path(fN, "app.db"), *b = lvnode_path(fN, "other.db");
    cr_assert_eq(sql_exec(a, "PRAGMA journal_mode=wal; CREATE TABLE t(x); "
                             "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<8000) "
                             "INSERT INTO t SELECT randomblob(300) FROM c;", 0), 0);
    cr_assert_eq(sql_exec(b, "CREATE TABLE u(y); INSERT INTO u VALUES (1), (2), (3);", 0), 0);
    free(a);
    free(b);
    snprintf(fBase, sizeof fBase, "%s/faults", fN->dir);
    cr_assert_eq(mkdir(fBase, 0755), 0);
    struct stat s1, s2;
    snprintf(fShm, sizeof fShm, "/dev/shm/lvit-faults-%ld", (long)getpid());
    if (stat("/dev/shm", &s1) != 0 || stat(fBase, &s2) != 0 || s1.st_dev == s2.st_dev || mkdir(fShm, 0755) != 0) {
        cr_log_warn("/dev/shm is missing or on the data's filesystem: the copy path is not tested");
        fShm[0] = 0;
    } else {
        lvt_defer(LVT_UNDO, f_rm_shm, NULL);
    }
}

/* Entries of dir other than . and .., whose name contains part ("" for all). */
static int f_count(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    cr_assert_not_null(d, "opendir %s", dir);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strstr(e->d_name, part))
            n++;
    closedir(d);
    return n;
}

/* Run cmd (a litevault command line after "$LITEVAULT") with LV_FAULT=fault;
 * its exit code, and its stdout+stderr into *out (caller frees). */
static int f_run(const char *fault, const char *cmd, char **out)
{
    return run_cmd(out, "LV_FAULT='%s' \"$LITEVAULT\" %s 2>&1", fault, cmd);
}

/* One failing export into dir/name, then the same export without the fault. */
static void f_export_case(const char *dir, const char *name, const char *args, const char *fault)
{
    char out_path[1024], cmd[2048], tmpdir[600];
    char *out = NULL;

    snprintf(out_path, sizeof out_path, "%s/%s", dir, name);
    snprintf(cmd, sizeof cmd, "export -c '%s' %s -o '%s'", fN->config, args, out_path);
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", fN->data);
    int rc = f_run(fault, cmd, &out);
    cr_assert_eq(rc, 1, "[%s] %s: exit %d, expected 1: %s", fault, cmd, rc, out ? out : "");
    cr_assert(out && strstr(out, name), "[%s] %s: the message does not name %s: %s", fault, cmd, name,
              out ? out : "");
    cr_assert_eq(f_count(dir, ""), 0, "[%s] %s: files left in %s (output or temporary file): %s", fault, cmd, dir,
                 out);
    cr_assert_eq(f_count(tmpdir, "image-"), 0, "[%s] %s: the daemon's image was left in %s", fault, cmd, tmpdir);
    free(out);

    rc = f_run("", cmd, &out);
    cr_assert_eq(rc, 0, "%s without faults: exit %d: %s", cmd, rc, out ? out : "");
    cr_assert_eq(f_count(dir, ""), 1, "%s without faults: expected exactly %s in %s", cmd, name, dir);
    cr_assert_eq(unlink(out_path), 0);
    free(out);
}

Test(export_faults, export_publish_fails_cleanly)
{
    /* fault, and whether it applies to each way of publishing */
    static const struct {
        const char *fault;
        int adopt, copy, vacuum, bundle;
    } cases[] = {
        {"write:ENOSPC:match=%s", 0, 1, 0, 1},
        {"write:EIO:match=%s", 0, 1, 0, 1},
        {"write:SHORT:match=%s", 0, 1, 0, 1},
        {"write:ENOSPC:after=1:match=%s", 0, 1, 0, 1},
        {"fsync:ENOSPC:match=%s", 0, 1, 1, 1},
        {"fsync:EIO:match=%s", 0, 1, 1, 1},
        {"fsync:EIO:match=/image-", 1, 0, 0, 0},
        {"rename:ENOSPC:match=%s", 1, 1, 1, 1},
        {"rename:EIO:match=%s", 1, 1, 1, 1},
    };
    char same[600], fault[256];

    f_setup();
    snprintf(same, sizeof same, "%s/same", fBase);
    cr_assert_eq(mkdir(same, 0755), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].adopt) {
            snprintf(fault, sizeof fault, cases[i].fault, "export.db");
            f_export_case(same, "export.db", "--db app.db", fault);
        }
        if (cases[i].copy && fShm[0]) {
            snprintf(fault, sizeof fault, cases[i].fault, "export.db");
            f_export_case(fShm, "export.db", "--db app.db", fault);
        }
        if (cases[i].vacuum) {
            snprintf(fault, sizeof fault, cases[i].fault, "vacuumed.db");
            f_export_case(same, "vacuumed.db", "--db app.db --vacuum", fault);
        }
        if (cases[i].bundle) {
            snprintf(fault, sizeof fault, cases[i].fault, "all.tar");
            f_export_case(same, "all.tar", "--all", fault);
        }
    }
}

Test(export_faults, import_publish_fails_cleanly)
{
    static const char *faults[] = {
        "write:ENOSPC:match=.import-", "write:EIO:match=.import-",   "write:SHORT:match=.import-",
        "fsync:ENOSPC:match=.import-", "fsync:EIO:match=.import-",   "rename:ENOSPC:match=.import-",
        "rename:EIO:match=.import-",
    };
    char in[600], cmd[2048], subdir[600];
    char *out = NULL;

    f_setup();
    snprintf(in, sizeof in, "%s/in.db", fBase);
    cr_assert_eq(sql_exec(in, "CREATE TABLE v(z); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c "
                              "WHERE i<3000) INSERT INTO v SELECT randomblob(300) FROM c;", 0), 0);
    snprintf(subdir, sizeof subdir, "%s/sub", fN->mnt);
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        for (int nested = 0; nested < 2; nested++) {
            const char *name = nested ? "sub/new.db" : "new.db";
            snprintf(cmd, sizeof cmd, "import -c '%s' --db %s '%s'", fN->config, name, in);
            int rc = f_run(faults[i], cmd, &out);
            cr_assert_eq(rc, 1, "[%s] %s: exit %d, expected 1: %s", faults[i], cmd, rc, out ? out : "");
            cr_assert(out && strstr(out, "new.db"), "[%s] %s: the message does not name new.db: %s", faults[i],
                      cmd, out ? out : "");
            cr_assert_eq(f_count(nested ? subdir : fN->mnt, "new.db"), 0,
                         "[%s] %s: new.db or its temporary file is on the mount: %s", faults[i], cmd, out);
            free(out);
        }
    }
    snprintf(cmd, sizeof cmd, "import -c '%s' --db new.db '%s'", fN->config, in);
    int rc = f_run("", cmd, &out);
    cr_assert_eq(rc, 0, "%s without faults: exit %d: %s", cmd, rc, out ? out : "");
    free(out);
    cr_assert_eq(f_count(fN->mnt, "new.db"), 1, "import without faults: expected new.db alone");
    char *p = lvnode_path(fN, "new.db");
    cr_assert_eq(file_db_checksum(p), file_db_checksum(in), "the imported database differs from the input");
    free(p);
}
