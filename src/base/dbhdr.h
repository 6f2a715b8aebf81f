/*
 * dbhdr.h -- the fields of SQLite's 100-byte database header that litevault
 * reads (https://www.sqlite.org/fileformat.html#the_database_header):
 *
 *   0..15   "SQLite format 3\0"
 *   16..17  page size, big-endian; 1 means 65536; else a power of two 512..32768
 *   21..23  max/min/leaf payload fractions, always 64, 32, 32
 *   24..27  file change counter
 *   28..31  database size in pages ("in-header size"), valid only when
 *           92..95 (version-valid-for) equals the change counter
 *
 * Pure functions on a borrowed buffer of at least DBHDR_SIZE bytes.
 */
#ifndef DBHDR_H
#define DBHDR_H

#include <stdint.h>
#include <string.h>

#include "base/lv.h"

#define DBHDR_SIZE 100
#define DBHDR_MAGIC "SQLite format 3" /* 16 bytes with its NUL */

/* Is ps a page size SQLite can use (a power of two, 512..65536)? */
static inline int dbhdr_page_size_ok(uint32_t ps)
{
    return ps >= 512 && ps <= 65536 && (ps & (ps - 1)) == 0;
}

/* Does h start with the SQLite magic string? */
static inline int dbhdr_magic_ok(const uint8_t *h)
{
    return memcmp(h, DBHDR_MAGIC, 16) == 0;
}

/* Page size from bytes 16..17, or 0 if it is not a valid one. */
static inline uint32_t dbhdr_page_size(const uint8_t *h)
{
    uint32_t v = lv_get16(h + 16);

    if (v == 1)
        return 65536;
    return v <= 32768 && dbhdr_page_size_ok(v) ? v : 0;
}

/* Magic, a valid page size and the fixed payload fractions: a header SQLite would accept. */
static inline int dbhdr_valid(const uint8_t *h)
{
    return dbhdr_magic_ok(h) && dbhdr_page_size(h) != 0 && h[21] == 64 && h[22] == 32 && h[23] == 32;
}

/* Pages in the database: the in-header size when it is valid, else
 * file_size rounded up to whole pages of ps. */
static inline uint32_t dbhdr_pages(const uint8_t *h, uint64_t file_size, uint32_t ps)
{
    uint32_t n = lv_get32(h + 28);

    if (n > 0 && memcmp(h + 92, h + 24, 4) == 0)
        return n;
    return (uint32_t)((file_size + ps - 1) / ps);
}

#endif /* DBHDR_H */
