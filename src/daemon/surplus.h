/*
 * surplus.h -- a former primary's databases set aside before it follows
 * another primary, so that transactions only it held (its "surplus": logged
 * after the point the new primary holds, acknowledged or not) are never
 * silently replaced by the new primary's snapshot.
 *
 * data.dir/last-term marks a node that was elected (etcd lease): written
 * when it is promoted, removed once its databases were copied aside.  At
 * the next start of such a node (after a kill, a deposition, or a clean
 * stop), before the registry opens, every file of data.dir/files (the
 * databases and their -wal/-journal, not the -shm) is copied to
 * data.dir/surplus/<UTC time>-term-<T>-<pid>/, keeping the tree, and each copy is named in
 * the log.  They are kept until the user deletes them.
 */
#ifndef SURPLUS_H
#define SURPLUS_H

#include <stddef.h>
#include <stdint.h>

/* Mark data_dir as a primary's of term (data.dir/last-term, published
 * atomically).  0 or negative LV_E* (logged). */
int surplus_mark(const char *data_dir, uint64_t term);

/* If data_dir is marked, copy its databases aside and remove the mark.
 * 0 (nothing marked, or copied: the directory in dir, n bytes, "" if none);
 * negative LV_E* (logged naming the file; the mark stays, so the next start
 * tries again). */
int surplus_set_aside(const char *data_dir, char *dir, size_t n);

#endif /* SURPLUS_H */
