/*
 * cluster.h -- TEMP(scaffold): helper B owns this header; the prototypes of
 * PLAN.md ("Roles and config"), so that the replication code builds before
 * the merge.  Take B's version at merge.
 */
#ifndef CLUSTER_H
#define CLUSTER_H

#include <stdint.h>

int cluster_id_load(const char *data_dir, uint8_t id[16]);        /* 0, LV_ENOENT (none yet), LV_ECORRUPT */
int cluster_id_save(const char *data_dir, const uint8_t id[16]);  /* atomic publish */
int cluster_id_ensure(const char *data_dir, uint8_t id[16]);      /* primary: load, or create random 128 bits */
int node_id_ensure(const char *data_dir, char out[33]);           /* load or create */

#endif /* CLUSTER_H */
