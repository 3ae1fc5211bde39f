/* admission.h: does a guest fit this host? (docs/capacity.md)
 *
 * One pure function, agent_admit(), answers it from three inputs: the
 * operator's ratios and reserves (agent_admission_config), the host's figures
 * (agent_host_figures: MemTotal, online CPUs, free space of the data dir, read
 * by agent_host_probe() or fed by a unit test) and what the other instances
 * already hold (agent_usage: Running and Paused guests hold RAM and vCPUs;
 * Standby guests hold disk, which the free space already shows). The manager
 * calls it at Create (does the spec fit this host at all, alone), Start and
 * Restore (does it fit next to the guests that run); a clone (Fork) is one
 * more Start-like point. A refusal is RESOURCE_EXHAUSTED with the figures. */
#ifndef EMBER_AGENT_ADMISSION_H
#define EMBER_AGENT_ADMISSION_H

#include "common/error.h"

#include <stdint.h>

#define AGENT_ADMIT_DEFAULT_MEM_OVERCOMMIT 1.0
#define AGENT_ADMIT_DEFAULT_MEM_RESERVED_MIB 512
#define AGENT_ADMIT_DEFAULT_VCPU_OVERCOMMIT 4.0
#define AGENT_ADMIT_DEFAULT_DISK_RESERVE_MIB 256

typedef struct agent_admission_config {
  double mem_overcommit;     /* guest RAM admitted per MiB of (MemTotal - reserved) */
  uint64_t mem_reserved_mib; /* kept for the host itself (kernel, emberd, VMM overhead) */
  double vcpu_overcommit;    /* vCPUs admitted per online CPU */
  uint64_t disk_reserve_mib; /* free space kept in the data dir for state files */
} agent_admission_config;

/* Fills the defaults above. */
void agent_admission_defaults(agent_admission_config *c);

typedef struct agent_host_figures {
  uint64_t mem_total_mib; /* MemTotal of /proc/meminfo */
  unsigned cpus;          /* online CPUs (sysconf _SC_NPROCESSORS_ONLN) */
  uint64_t disk_free_mib; /* statvfs of the data dir: what emberd may still write */
  uint64_t disk_total_mib;
} agent_host_figures;

/* Reads the real figures; data_dir is the folder whose filesystem counts. */
int agent_host_probe(const char *data_dir, agent_host_figures *out, cmn_error *err);

/* How host figures are obtained: the real probe, or fixed figures in tests. */
typedef int (*agent_host_probe_fn)(void *ctx, const char *data_dir, agent_host_figures *out,
                                   cmn_error *err);

typedef enum agent_admit_point {
  AGENT_ADMIT_CREATE,  /* the spec alone against the whole host */
  AGENT_ADMIT_START,   /* next to the running guests; disk for a new RAM file */
  AGENT_ADMIT_RESTORE, /* next to the running guests; disk when RAM is refilled */
} agent_admit_point;

/* What the other instances hold (never the one being admitted). */
typedef struct agent_usage {
  uint64_t mem_mib; /* sum over Running and Paused instances */
  unsigned vcpus;   /* sum over Running and Paused instances */
} agent_usage;

typedef struct agent_admit_request {
  agent_admit_point point;
  const char *name; /* for messages */
  uint64_t memory_mib;
  unsigned vcpus;
  uint64_t disk_mib; /* new space the operation writes (RAM file reservation) */
} agent_admit_request;

/* 0 when the request fits; else RESOURCE_EXHAUSTED naming the resource and the
 * figures, e.g. "needs 204800 MiB of RAM; this host admits 23040 MiB (23552
 * MiB total - 512 MiB reserved) x 1.0 overcommit, 0 MiB already committed". */
int agent_admit(const agent_admission_config *cfg, const agent_host_figures *host,
                const agent_usage *used, const agent_admit_request *req, cmn_error *err);

#endif
