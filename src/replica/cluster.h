/*
 * cluster.h -- the node's identity files in data.dir.
 *
 *   data.dir/cluster-id  the cluster this node's databases belong to: 128
 *                        random bits made by the first primary; a replica
 *                        adopts its primary's at first contact and refuses
 *                        a primary of another cluster afterwards.
 *   data.dir/node-id     this node: 128 random bits made at its first start.
 * Each file is exactly 32 lower-case hex digits and a newline (33 bytes),
 * published atomically (base/publish.h), so it is either absent or whole.
 * Random bits come from getrandom(2).
 */
#ifndef CLUSTER_H
#define CLUSTER_H

#include <stdint.h>

#define CLUSTER_ID_HEX 32 /* hex digits of an ID (plus a NUL: 33 bytes) */

/* Read data_dir/cluster-id into id.  0; LV_ENOENT (none yet); LV_ECORRUPT
 * (not 32 lower-case hex digits and a newline: logged, naming the file and
 * what to do); LV_EIO (cannot read: logged). */
int cluster_id_load(const char *data_dir, uint8_t id[16]);

/* Publish id as data_dir/cluster-id (replacing one).  0 or LV_E* (logged). */
int cluster_id_save(const char *data_dir, const uint8_t id[16]);

/* The primary's way: load data_dir/cluster-id, or make 128 random bits and
 * save them when there is none.  0 or LV_E* as cluster_id_load/_save. */
int cluster_id_ensure(const char *data_dir, uint8_t id[16]);

/* 128 random bits (getrandom) into id.  0 or LV_EIO (logged). */
int cluster_id_random(uint8_t id[16]);

/* This node's ID as 32 lower-case hex digits into out (NUL-terminated):
 * loaded from data_dir/node-id, or made and saved at the first start.
 * 0; LV_ECORRUPT (logged, naming the file); LV_E* (I/O, logged). */
int node_id_ensure(const char *data_dir, char out[33]);

#endif /* CLUSTER_H */
