/*
 * etcd_value.h -- what the etcd lease reads and writes in etcd's keys, as
 * pure functions (no I/O, no threads), so that they can be fuzzed: base64
 * (etcd's JSON gateway carries every key and value in it) and the value of
 * a node key or of the primary key (lease_etcd.c, "KEYS").
 */
#ifndef ETCD_VALUE_H
#define ETCD_VALUE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Encode n bytes of in as padded standard base64: malloc'ed (caller
 * frees), or NULL (out of memory). */
char *etcdv_b64_enc(const void *in, size_t n);

/* Decode padded standard base64 s into a NUL-terminated malloc'ed buffer
 * (caller frees) of *len bytes; NULL if s is malformed (or out of memory). */
char *etcdv_b64_dec(const char *s, size_t *len);

/* A node key's (or the primary key's) value, parsed. */
struct etcdv_member {
    char url[1024];   /* advertise URL */
    char node[64];    /* node ID ("" if absent) */
    char proxy[1024]; /* proxy URL ("" if absent) */
    int candidate;    /* may be elected ("candidate": true) */
    json_t *txids;    /* {"NAME": TXID} (a reference the member owns), or NULL */
    json_t *terms;    /* {"NAME": the term of that TXID's record} (owned), or NULL (an older node) */
};

/* Parse b64 (a base64 value) into *m.  0; LV_ECORRUPT (not base64, not a
 * JSON object, or no "url" string: m is cleared).  Release with
 * etcdv_member_clear either way. */
int etcdv_member_parse(const char *b64, struct etcdv_member *m);

/* Release what *m holds (it may be parsed again). */
void etcdv_member_clear(struct etcdv_member *m);

/* 1 if positions theirs are strictly ahead of mine: at least mine's TXID on
 * every database mine names, and more on one (a database missing counts
 * as TXID 0); else 0.  Either may be NULL (no databases). */
int etcdv_ahead(json_t *theirs, json_t *mine);

/* As etcdv_ahead, comparing each database by (term of its last record,
 * TXID) when both sides publish terms ({"NAME": TERM}; either NULL: TXIDs
 * alone): a node holding the latest term's records is ahead of one holding
 * more records of a deposed term. */
int etcdv_ahead_terms(json_t *theirs, json_t *their_terms, json_t *mine, json_t *my_terms);

#endif /* ETCD_VALUE_H */
