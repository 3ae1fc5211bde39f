/* warm.h: the warm VMM pool's configuration and its choice of instance
 * (docs/wake.md).
 *
 * A warm VMM is the VMM a restore of one Standby instance would start,
 * started ahead of the restore and left waiting for the snapshot's load
 * (drivers/hypervisor.h restore_prepare): the restore then only loads and
 * resumes. Pools are per hypervisor type; each has a size (how many warm
 * VMMs of that type at most) and optional shapes (memory and vCPUs an
 * instance must have to get one; none: any). The manager
 * (manager_warm.c) fills pools in the background, most recently stood-by
 * instances first; this file is its pure part, so tests can feed it any
 * list of instances. */
#ifndef EMBER_AGENT_WARM_H
#define EMBER_AGENT_WARM_H

#include "common/error.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_WARM_MAX_SIZE 64
#define AGENT_WARM_MAX_SHAPES 16
/* After a failed prepare, the instance is not tried again for this long. */
#define AGENT_WARM_RETRY_US (30LL * 1000000)

typedef struct agent_warm_shape {
  uint64_t memory_mib; /* 0: any */
  uint32_t vcpus;      /* 0: any */
} agent_warm_shape;

typedef struct agent_warm_pool {
  char *hypervisor; /* driver type */
  int size;         /* warm VMMs of this type at most; 0: none */
  agent_warm_shape *shapes;
  size_t n_shapes; /* 0: every shape */
} agent_warm_pool;

typedef struct agent_warm_config {
  agent_warm_pool *pools;
  size_t n_pools;
} agent_warm_config;

/* Reads the config file's "warm_pool" object:
 *   {"qemu": {"size": 4, "shapes": [{"memory_mib": 256, "vcpus": 1}]}, ...}
 * INVALID_ARGUMENT naming the key ("warm_pool.qemu.size") on any bad value,
 * unknown key or duplicate. Replaces cfg's pools. */
int agent_warm_config_from_json(agent_warm_config *cfg, const cJSON *obj, cmn_error *err);
void agent_warm_config_free(agent_warm_config *cfg);
void agent_warm_config_copy(agent_warm_config *dst, const agent_warm_config *src);
/* The pool of a hypervisor type, or NULL (no warm VMMs for it). */
const agent_warm_pool *agent_warm_pool_of(const agent_warm_config *cfg, const char *hypervisor);
/* Whether an instance of this shape may get a warm VMM from pool p. */
bool agent_warm_fits(const agent_warm_pool *p, uint64_t memory_mib, uint32_t vcpus);

/* One instance as the choice sees it. */
typedef struct agent_warm_cand {
  const char *hypervisor;
  uint64_t memory_mib;
  uint32_t vcpus;
  bool standby;        /* committed state is Standby */
  bool can_warm;       /* its driver is available and has warm restore */
  bool warm;           /* it has a warm VMM now */
  int64_t standby_at;  /* when it went to Standby (any clock; larger is later) */
  int64_t retry_at_us; /* no prepare before this (monotonic; 0: any time) */
} agent_warm_cand;

/* The instance to give a warm VMM next: Standby, not warm, its driver able,
 * its pool not full and its shape fitting, not backing off (now_us), the
 * latest standby_at first (ties: the lower index). -1: none. */
long agent_warm_pick(const agent_warm_config *cfg, const agent_warm_cand *c, size_t n,
                     int64_t now_us);

#endif
