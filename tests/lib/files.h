/*
 * files.h -- temporary directories and checks on plain files: byte
 * comparison, the database checksum of a file as the log computes it, and
 * the freelist of a database file read without SQLite.
 *
 * DESIGN.  Temporary directories are made under /tmp with mkdtemp and
 * removed by lvt_fini (fixture.h), so a test never cleans up by hand and a
 * failed test leaves nothing behind (LV_KEEP=1 keeps them).  The file
 * checks read files directly (no WAL, no SQLite connection), which is what
 * the tests compare the log's replay against.
 */
#ifndef TESTLIB_FILES_H
#define TESTLIB_FILES_H

#include <stddef.h>
#include <stdint.h>

/* A new directory /tmp/lvit.<tag>.XXXXXX, removed (rm -rf) at lvt_fini.
 * The returned path is owned by the registry and valid until lvt_fini. */
const char *lvt_tmpdir(const char *tag);

/* Whole file as a NUL-terminated string (malloc'ed, caller frees), *lenp its
 * length if lenp != NULL; NULL if it cannot be read. */
char *file_read(const char *path, size_t *lenp);

/* 1 if the two files have identical bytes. */
int files_equal(const char *a, const char *b);

/* Compare two files: 0 equal, 1 different (*offset = first differing byte, or the
 * shorter length), -1 if one cannot be read. */
int files_first_diff(const char *a, const char *b, long long *offset);

/* XOR the byte at offset off of path with mask (damage a file in place); asserts. */
void file_xor_byte(const char *path, long long off, unsigned char mask);

/* Page size from a 100-byte SQLite header; 0 if not a valid header. */
uint32_t sqlite_hdr_page_size(const unsigned char *h);

/* Database checksum (XOR of cksum_page over pages) of a plain file with page size taken
 * from its header; the file is read as SQLite sees it WITHOUT a WAL.  0 for an empty file. */
uint64_t file_db_checksum(const char *path);

/* Freelist pages (trunks and leaves) of a database file read directly (no WAL):
 * malloc'ed sorted array in *pages (caller frees); returns the count or -1. */
int file_freelist_pages(const char *path, uint32_t **pages);

#endif /* TESTLIB_FILES_H */
