/*
 * current.h -- the per-database pointer object <db name>/current.json.
 *
 * It names the database's current lineage so that a restore needs no
 * LIST: {"format":1,"dbid":"<32 hex>","updated":"<RFC 3339 UTC>"}.
 * The archiver rewrites it (store_put, atomic) whenever the lineage of a
 * database changes; restore reads it.  Format: docs/FORMAT.md,
 * "Current lineage pointer".  No I/O here.
 */
#ifndef ARCHIVE_CURRENT_H
#define ARCHIVE_CURRENT_H

#include <stddef.h>
#include <stdint.h>

#define ARCHIVE_CURRENT_FORMAT 1            /* "format" written and understood */
#define ARCHIVE_CURRENT_OBJECT "current.json" /* object name under <db name>/ */

/* Decoded pointer. */
struct archive_current {
    int format;          /* ARCHIVE_CURRENT_FORMAT */
    char dbid[33];       /* current lineage: database ID, 32 lower-case hex + NUL */
    int64_t updated_us;  /* when the pointer was written, microseconds since the epoch */
};

/* Key of the pointer object of database name: "<name>/current.json"
 * (malloc'ed, caller frees), or NULL on out of memory. */
char *archive_current_key(const char *name);

/* Encode c as one line of JSON plus "\n" into *out (malloc'ed, caller
 * frees; NUL-terminated), *len without the terminator.  0, LV_EINVAL (bad
 * dbid) or LV_ENOMEM. */
int archive_current_encode(const struct archive_current *c, char **out, size_t *len);

/* Decode len bytes into *c.  0; LV_ECORRUPT with a message naming the
 * member in err (not JSON, missing/unknown member, bad ID or time);
 * LV_EVERSION for a format newer than ARCHIVE_CURRENT_FORMAT. */
int archive_current_decode(const void *buf, size_t len, struct archive_current *c, char *err, size_t errlen);

/* <db name>/deleted.json: the lineage dbid of this name belongs to a
 * database that left the name at deleted_us: deleted, replaced by another
 * database (a rename over it), or renamed away (reason).  It counts while
 * current.json names the same lineage; the archiver removes it if that
 * lineage is archived under this name again.  Format: docs/FORMAT.md,
 * "Deleted databases". */
#define ARCHIVE_DELETED_OBJECT "deleted.json"
#define ARCHIVE_DELETED_FORMAT 2            /* 2: with "reason" (1: without, still read) */
#define ARCHIVE_LEFT_DELETED "deleted"      /* reasons */
#define ARCHIVE_LEFT_RENAMED "renamed"
#define ARCHIVE_LEFT_REPLACED "replaced"

struct archive_deleted {
    int format;          /* ARCHIVE_DELETED_FORMAT when encoded; 1 or 2 decoded */
    char dbid[33];       /* the lineage deleted: 32 lower-case hex + NUL */
    int64_t deleted_us;  /* when, microseconds since the epoch */
    char reason[16];     /* ARCHIVE_LEFT_*; "" decoded from format 1 (unknown) */
};

/* "<name>/deleted.json" (malloc'ed, caller frees), or NULL on out of memory. */
char *archive_deleted_key(const char *name);

/* As archive_current_encode / archive_current_decode, for deleted.json
 * (an unknown reason decodes as LV_EVERSION: a newer litevault's). */
int archive_deleted_encode(const struct archive_deleted *t, char **out, size_t *len);
int archive_deleted_decode(const void *buf, size_t len, struct archive_deleted *t, char *err, size_t errlen);

#endif /* ARCHIVE_CURRENT_H */
