/*
 * cksum.h -- page and database checksums, and the persisted checksum map.
 *
 * Page checksum: XXH3-64 of the page bytes with seed = page number.
 * Database checksum: XOR of the page checksums of pages 1..npages (0 for an
 * empty database).  Changing page p from A to B updates the database
 * checksum as  total ^= h(p,A) ^ h(p,B), so it is maintained incrementally.
 *
 * The map holds one 64-bit checksum per page; it is persisted to a state
 * file (format in docs/FORMAT.md, "State file") so start-up does not read
 * the database.
 */
#ifndef CKSUM_H
#define CKSUM_H

#include <stddef.h>
#include <stdint.h>

/* Checksum of one page: XXH3-64(page, size, seed = pgno). */
uint64_t cksum_page(uint32_t pgno, const void *page, size_t size);

/* XXH3-64 of a buffer with seed 0 (used for headers, payloads, objects). */
uint64_t cksum_buf(const void *buf, size_t len);

/* Per-page checksums of one database.  Not thread-safe: the owner locks. */
struct cksum_map {
    uint32_t page_size; /* bytes per page; 0 when the database is empty and unknown */
    uint32_t npages;    /* pages in the database */
    uint32_t cap;       /* allocated entries in h */
    uint64_t *h;        /* h[i] = checksum of page i+1 (owned) */
    uint64_t total;     /* XOR of h[0..npages-1] */
};

/* Initialise an empty map (no allocation). */
void cksum_map_init(struct cksum_map *m);

/* Free the map's storage; the struct itself is the caller's. */
void cksum_map_free(struct cksum_map *m);

/* Reset to empty with page size ps (frees nothing until needed). */
void cksum_map_reset(struct cksum_map *m, uint32_t page_size);

/* Set the checksum of page pgno (1-based, <= npages after resize); updates total. */
void cksum_map_set(struct cksum_map *m, uint32_t pgno, uint64_t h);

/* Grow or shrink to npages.  New pages get the checksum of an all-zero page.
 * 0 or LV_ENOMEM. */
int cksum_map_resize(struct cksum_map *m, uint32_t npages);

/* Checksum of page pgno (must be <= npages). */
static inline uint64_t cksum_map_get(const struct cksum_map *m, uint32_t pgno) { return m->h[pgno - 1]; }

/* Deep copy src into dst (dst initialised); 0 or LV_ENOMEM. */
int cksum_map_copy(struct cksum_map *dst, const struct cksum_map *src);

/* Build the map by reading a whole database file (fd) of page size ps.
 * Used only when no state exists.  0 or negative LV_E*. */
int cksum_map_scan_fd(struct cksum_map *m, int fd, uint32_t page_size, uint32_t npages, const char *path);

/* Persist the map atomically to path with the database ID and the TXID it
 * reflects.  0 or negative LV_E*. */
int cksum_state_save(const char *path, const struct cksum_map *m, const uint8_t dbid[16], uint64_t txid);

/* Load a state file.  On success fills m (initialised by caller), dbid and
 * *txid.  LV_ENOENT if missing, LV_ECORRUPT if it fails its checks. */
int cksum_state_load(const char *path, struct cksum_map *m, uint8_t dbid[16], uint64_t *txid);

/* Format a checksum as 16 lower-case hex digits into buf (>= 17 bytes). */
char *cksum_hex(uint64_t c, char *buf);

#endif /* CKSUM_H */
