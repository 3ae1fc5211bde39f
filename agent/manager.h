/* manager.h: the instance manager: the state machine of docs/architecture.md §3, one
 * operation at a time per instance, records persisted in the store, events for
 * watchers. The RPC layer calls only this header; it never sees drivers or
 * snapshot folders.
 *
 * Threading: every function is safe to call from any thread. A lifecycle
 * operation holds only its own instance's operation lock, so operations on
 * different instances run in parallel, and get/list never wait for an
 * operation in progress (they read the last committed record).
 *
 * Errors (common/error.h codes = gRPC codes): INVALID_ARGUMENT for a bad request
 * (nothing on disk changes), NOT_FOUND, ALREADY_EXISTS (name taken),
 * FAILED_PRECONDITION for a wrong state (the message names the current state)
 * or an unavailable driver (the message names it), UNIMPLEMENTED when the
 * driver lacks the capability, RESOURCE_EXHAUSTED for admission limits,
 * INTERNAL for real faults. A call whose target state already holds returns 0
 * and changes nothing. */
#ifndef EMBER_AGENT_MANAGER_H
#define EMBER_AGENT_MANAGER_H

#include "agent/hostfiles.h"
#include "common/error.h"
#include "agent/admission.h"
#include "agent/types.h"
#include "drivers/hypervisor.h"
#include "drivers/registry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct agent_event {
  const agent_instance_view *instance; /* valid during the callback only */
  agent_state old_state;
  agent_state new_state;
  agent_op op;
  int64_t duration_us;
  int64_t timestamp_us;
  const char *reason; /* why emberd made the change on its own (idle
                         auto-standby); NULL for a client's operation */
} agent_event;

/* Called on the thread that made the change, after it is committed. Must not
 * block or call back into the manager. */
typedef void (*agent_event_fn)(void *ctx, const agent_event *ev);

typedef struct agent_manager_config {
  const char *data_dir;      /* absolute; instances live in <data_dir>/instances */
  int max_instances;         /* admission limit; 0 = default (256) */
  int stop_timeout_ms;       /* graceful VMM shutdown wait; 0 = default (10000) */
  int64_t console_max_bytes; /* console.log rotation (console.h); 0 = default (4 MiB) */
  bool monitor;              /* watch VMM processes and notice exits (default on in emberd) */
  const char *vmm_cgroup;    /* cgroup every VMM is moved into (cgroup.h); NULL: none */
  /* Fence for kernel/initrd/disk paths (hostfiles.h); NULL: the defaults
   * (deny-list only, no block devices). The data dir is always fenced. */
  const agent_host_policy *host_policy;
  const agent_admission_config *admission; /* ratios and reserves; NULL: defaults */
  agent_host_probe_fn host_probe;          /* host figures for admission; NULL: agent_host_probe */
  void *host_probe_ctx;
  struct img_store *images; /* image store for InstanceSpec.image; NULL: none */
  const char *boot_kit_dir; /* boot kit for image instances without a kernel */
  /* Managed networks (instance_net.h); NULL: none (the transit subnet default). */
  const struct agent_net_config *net_config;
  /* Warm VMM pools (warm.h, docs/wake.md); NULL or no pools: none. */
  const struct agent_warm_config *warm;
} agent_manager_config;

typedef struct agent_manager agent_manager;

/* Loads every record from the data dir, recovers half-done operations and
 * re-adopts live VMMs (docs/architecture.md §3–4). The registry must outlive the manager. */
agent_manager *agent_manager_create(const agent_manager_config *cfg, const vmm_registry *reg,
                                    cmn_error *err);
/* Stops the monitor, waits for operations in progress, releases driver
 * connections. VMMs keep running. */
void agent_manager_free(agent_manager *m);

/* Validates and creates an instance (Stopped; Running when start is set). */
int agent_manager_create_instance(agent_manager *m, const char *name, const char *hypervisor,
                                  const vmm_spec *spec, bool start, agent_instance_view *out,
                                  cmn_error *err);
/* The same with labels and an idempotency key. When an instance already has
 * this request_id (it survives restarts in the record) and the same name,
 * hypervisor, spec and labels, its current view is returned and nothing is
 * created; the same request_id with anything different is INVALID_ARGUMENT
 * (field "request_id"). labels need not be sorted; they are validated
 * (agent_labels_validate) and stored sorted. */
int agent_manager_create_req(agent_manager *m, const agent_create_req *req,
                             agent_instance_view *out, cmn_error *err);
/* id_or_name accepts the id or the name. */
int agent_manager_get(agent_manager *m, const char *id_or_name, agent_instance_view *out,
                      cmn_error *err);
/* All instances (or those in `state` unless UNSPECIFIED), ordered by name. */
int agent_manager_list(agent_manager *m, agent_state state, agent_instance_view **out, size_t *n,
                       cmn_error *err);
void agent_instance_views_free(agent_instance_view *v, size_t n);
/* op is one of START, STOP, PAUSE, RESUME, STANDBY, RESTORE. Runs to the end
 * even when the caller goes away. out (may be NULL) receives the record after. */
int agent_manager_op(agent_manager *m, const char *id_or_name, agent_op op,
                     agent_instance_view *out, cmn_error *err);
/* Stop with a graceful timeout for this call: how long the guest gets to power
 * off after the ACPI power button (and the VMM to exit when asked) before it
 * is killed. timeout_ms < 0: the configured stop_timeout_ms; 0: kill at once. */
int agent_manager_stop(agent_manager *m, const char *id_or_name, int timeout_ms,
                       agent_instance_view *out, cmn_error *err);
/* Ends the VMM and removes the instance folder. *id_out (may be NULL) gets
 * the deleted id. */
int agent_manager_delete(agent_manager *m, const char *id_or_name, char **id_out, cmn_error *err);

/* Event subscription; returns a handle > 0 for unsubscribe. */
int agent_manager_subscribe(agent_manager *m, agent_event_fn fn, void *ctx);
void agent_manager_unsubscribe(agent_manager *m, int handle);

/* The managed networks (for ListNetworks and NetworkStatus). */
struct agent_net *agent_manager_net(agent_manager *m);
/* The registry this manager uses (for ListHypervisors). */
const vmm_registry *agent_manager_registry(const agent_manager *m);

/* ---- forks and saved snapshots (manager_fork.c, docs/fork.md) ---- */

/* A snapshot as ListSnapshots shows it. */
typedef struct agent_snapshot_view {
  char *id;
  char *name; /* NULL: the hidden snapshot of a fork */
  char *source_id;
  char *source_name;
  agent_instance_view source; /* the source's record when it was taken */
  int64_t created_at_us;
  uint64_t size_bytes;
  char **clone_ids; /* instances that depend on it */
  size_t n_clone_ids;
} agent_snapshot_view;
void agent_snapshot_view_free(agent_snapshot_view *v); /* members only */
void agent_snapshot_views_free(agent_snapshot_view *v, size_t n);

#define AGENT_FORK_MAX 64

typedef struct agent_fork_req {
  const char *source;   /* instance id or name; NULL or "": from snapshot */
  const char *snapshot; /* saved snapshot id or name; NULL or "": from source */
  const char *const *names;
  size_t n_names; /* 1 to AGENT_FORK_MAX, unique */
  bool standby;   /* leave the clones in Standby */
  const agent_label *labels;
  size_t n_labels;
} agent_fork_req;

typedef struct agent_fork_result {
  agent_instance_view *clones; /* the clones made, in the order of names */
  size_t n_clones;
  char *snapshot_id;
  int64_t snapshot_us; /* the source's snapshot; 0 from a saved one */
} agent_fork_result;
void agent_fork_result_free(agent_fork_result *r);

/* Makes clones of a Running or Standby instance (through a hidden snapshot)
 * or of a saved snapshot. On failure *out still lists the clones made before
 * it (complete instances), and err says how many were made. */
int agent_manager_fork(agent_manager *m, const agent_fork_req *req, agent_fork_result *out,
                       cmn_error *err);
/* Saves a named snapshot of a Running or Standby instance. */
int agent_manager_snapshot_create(agent_manager *m, const char *id_or_name, const char *name,
                                  agent_snapshot_view *out, cmn_error *err);
/* Saved snapshots (named ones; hidden ones only while clones depend on
 * them), ordered by name. */
int agent_manager_snapshot_list(agent_manager *m, agent_snapshot_view **out, size_t *n,
                                cmn_error *err);
/* FAILED_PRECONDITION while an instance depends on it. */
int agent_manager_snapshot_delete(agent_manager *m, const char *id_or_name, char **id_out,
                                  cmn_error *err);

/* ---- idle auto-standby (manager_idle.c, docs/idle.md) ---- */

/* HoldInstance: keeps the instance awake (no idle auto-standby) until now +
 * duration_ms; 0 releases the hold. Any state; kept in memory only.
 * INVALID_ARGUMENT (field "duration") beyond AGENT_HOLD_MAX_MS (idle.h) or
 * negative. */
/* The warm VMM pool of one hypervisor type (docs/wake.md, metrics). */
typedef struct agent_warm_stats {
  const char *hypervisor; /* the driver's type name (static) */
  int size;               /* configured size */
  int warm;               /* warm VMMs now */
  uint64_t prepared;      /* warm VMMs started */
  uint64_t used;          /* restores that ran in a warm VMM */
  uint64_t fallback;      /* restores that found one unusable and started a fresh VMM */
  uint64_t discarded;     /* ended unused (another operation, delete, shutdown, exit) */
  uint64_t lost;          /* of those: exited on their own while waiting */
  uint64_t failed;        /* prepares that failed */
} agent_warm_stats;

/* One entry per registered hypervisor type; caller frees *out. */
int agent_manager_warm_stats(agent_manager *m, agent_warm_stats **out, size_t *n);

int agent_manager_hold(agent_manager *m, const char *id_or_name, int64_t duration_ms,
                       agent_instance_view *out, cmn_error *err);
/* An exec, copy or console session on the instance opens or closes (the
 * server calls them): while one is open the instance is never idle. begin
 * returns < 0 (nothing counted) when there is no such instance; every begin
 * that returned 0 is matched by one end with the same id (the instance's id,
 * not its name). */
int agent_manager_session_begin(agent_manager *m, const char *id);
void agent_manager_session_end(agent_manager *m, const char *id);

struct gl_link;
/* The guest agent link (agent/guestlink/guestlink.h) of a Running instance,
 * with a reference the caller drops with gl_link_unref; *id_out (may be
 * NULL) gets the instance's id. NOT_FOUND; FAILED_PRECONDITION (state) when
 * no VMM runs (the message names the state) or the instance has no agent
 * channel (spec.guest_agent). The link may be not ready yet
 * (gl_link_wait_ready); it fails its channels with UNAVAILABLE once the VMM
 * stops or goes to standby. */
struct gl_link *agent_manager_guest_link(agent_manager *m, const char *id_or_name, char **id_out,
                                         cmn_error *err);

#endif
