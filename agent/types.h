/* types.h: the vocabulary of the agent: the types shared by the instance
 * manager (manager.h), the records (record.h) and the server (server/), with
 * the numbers of the public API (ember.v1). It includes nothing of the agent:
 * every agent header may include it, and no header includes a layer above
 * itself (record.h does not include manager.h). agent_state_name and
 * agent_op_name are defined in manager.c, agent_instance_view_free in record.c. */
#ifndef EMBER_AGENT_TYPES_H
#define EMBER_AGENT_TYPES_H

#include "drivers/hypervisor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Same numbers as ember.v1.InstanceState. */
typedef enum agent_state {
  AGENT_STATE_UNSPECIFIED = 0,
  AGENT_STATE_STOPPED = 1,
  AGENT_STATE_RUNNING = 2,
  AGENT_STATE_PAUSED = 3,
  AGENT_STATE_STANDBY = 4,
  AGENT_STATE_UNKNOWN = 5,
} agent_state;

/* Same numbers as ember.v1.Operation. */
typedef enum agent_op {
  AGENT_OP_NONE = 0,
  AGENT_OP_CREATE = 1,
  AGENT_OP_START = 2,
  AGENT_OP_STOP = 3,
  AGENT_OP_PAUSE = 4,
  AGENT_OP_RESUME = 5,
  AGENT_OP_STANDBY = 6,
  AGENT_OP_RESTORE = 7,
  AGENT_OP_DELETE = 8,
  AGENT_OP_OBSERVED = 9,
} agent_op;

/* Same numbers as ember.v1.SnapshotKind. */
typedef enum agent_snap_kind {
  AGENT_SNAP_NONE = 0,
  AGENT_SNAP_FULL = 1,
  AGENT_SNAP_DIFF = 2,
} agent_snap_kind;

/* One caller-chosen label (ember.v1.Instance.labels). */
typedef struct agent_label {
  char *key;
  char *value;
} agent_label;

/* A copy of one instance's committed record; owned by the caller. */
/* InstanceSpec.image and image_overrides, plus the resolved image id
 * (instance_image.h works on it). */
typedef struct agent_image_spec {
  char *ref;         /* as given (id or name); NULL or "": not from an image */
  char *id;          /* "sha256:<hex>", filled by agent_image_prepare */
  char **entrypoint; /* override when n_entrypoint > 0 */
  size_t n_entrypoint;
  char **args; /* override when n_args > 0 */
  size_t n_args;
  char **env; /* "KEY=VALUE" merged by KEY */
  size_t n_env;
  char *workdir; /* NULL or "": the image's */
} agent_image_spec;

/* A port forward of a managed interface (ember.v1.PortForward). */
typedef struct agent_port_forward {
  int proto; /* ember.v1.Protocol: 1 TCP, 2 UDP */
  uint32_t host_port;
  uint32_t guest_port;
  uint32_t host_addr; /* IPv4, host order; 0: any local address */
} agent_port_forward;

/* The interface on a network emberd manages (NetworkInterface.network, at
 * most one per instance) and InstanceSpec.network_namespace, with what emberd
 * allocated for it at Create (instance_net.h works on it). It is not among
 * vmm_spec.nics: it is put back at `nic_index` right before a VMM spawns. */
typedef struct agent_net_spec {
  char *network;    /* NULL or "": none */
  size_t nic_index; /* its position among the instance's interfaces */
  uint32_t ipv4;    /* host order; 0 in a request: allocate */
  bool ipv4_given;  /* the request named the address */
  char *mac;        /* "02:..." generated when the request named none */
  bool mac_given;
  agent_port_forward *forwards;
  size_t n_forwards;
  int prefix;            /* the network's, at allocation */
  uint32_t gateway;      /* the network's, at allocation */
  bool netns;            /* InstanceSpec.network_namespace */
  uint32_t veth_host_ip; /* with netns: allocated /31 pair, host end */
} agent_net_spec;

/* The guest agent as the manager sees it (Instance.guest_agent; enabled is
 * spec.guest_agent). Live state, never persisted. */
typedef struct agent_guest_status {
  bool ready;       /* answered on the current VMM */
  char *version;    /* NULL unless ready */
  int64_t ready_us; /* wall clock, microseconds; 0 unless ready */
  char *message;    /* why not ready; may be NULL */
} agent_guest_status;

/* InstanceSpec.auto_standby (idle.h): idle_seconds 0 is off; the record keeps
 * the thresholds with their defaults filled in. */
typedef struct agent_auto_standby {
  uint32_t idle_seconds;
  double max_cpu_percent;
  uint64_t max_net_bps;
} agent_auto_standby;

/* Instance.idle: live, never persisted (manager_idle.c keeps it). */
typedef struct agent_idle_status {
  int64_t idle_us;       /* idle without a break so far */
  int64_t hold_until_us; /* wall clock; 0: no hold */
  uint32_t sessions;     /* exec, copy and console sessions open */
  double cpu_percent;    /* last sample */
  uint64_t net_bps;      /* last sample */
} agent_idle_status;

typedef struct agent_instance_view {
  char *id;
  char *name;
  char *hypervisor;
  vmm_spec spec;
  agent_state state;
  bool has_snapshot;
  agent_snap_kind last_snapshot_kind;
  int64_t last_standby_us;
  int64_t last_restore_us;
  char *console_log_path;
  int64_t created_at_us;
  int64_t updated_at_us;
  int32_t vmm_pid;
  char *status_message; /* may be NULL */
  agent_label *labels;  /* sorted by key, unique keys */
  size_t n_labels;
  char *request_id;       /* the CreateInstance request_id; may be NULL */
  agent_image_spec image; /* InstanceSpec.image (instance_image.h); ref NULL: none */
  agent_net_spec net;     /* managed interface (instance_net.h); network NULL: none */
  agent_guest_status guest_agent;
  /* A clone (ForkInstance): the snapshot it depends on until it is deleted
   * (manager_fork.c) and the instance that snapshot was taken of; NULL for
   * other instances. */
  char *fork_snapshot;
  char *fork_source;
  agent_auto_standby auto_standby; /* persisted with the spec */
  agent_idle_status idle;          /* live */
} agent_instance_view;

void agent_instance_view_free(agent_instance_view *v); /* members only */
void agent_guest_status_free(agent_guest_status *g);   /* members only */
void agent_guest_status_copy(agent_guest_status *dst, const agent_guest_status *src);

/* A CreateInstance request as the manager takes it (agent_manager_create_req
 * in manager.h has the contract). */
typedef struct agent_create_req {
  const char *name;
  const char *hypervisor;
  const vmm_spec *spec;
  bool start;
  const agent_label *labels;
  size_t n_labels;
  const char *request_id;                 /* NULL or "": none */
  const agent_image_spec *image;          /* NULL or no ref: not from an image */
  const agent_net_spec *net;              /* NULL or no network: none */
  const agent_auto_standby *auto_standby; /* NULL or idle_seconds 0: off */
} agent_create_req;

const char *agent_state_name(agent_state s); /* "Running", ... */
const char *agent_op_name(agent_op op);      /* "standby", ... */

#endif
