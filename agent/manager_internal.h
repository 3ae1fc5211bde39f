/* manager_internal.h: private to the instance manager's files (manager.c,
 * manager_ops.c, manager_recover.c, manager_monitor.c); nothing else includes
 * it. The instance table, the instance object and the helpers those files
 * share. Locking rules: manager.c's opening comment. */
#ifndef EMBER_AGENT_MANAGER_INTERNAL_H
#define EMBER_AGENT_MANAGER_INTERNAL_H

#include "agent/manager.h"
#include "agent/record.h"
#include "agent/instance_image.h"
#include "agent/idle.h"
#include "agent/instance_net.h"
#include "agent/snapshot.h"
#include "agent/snapstore.h"
#include "agent/warm.h"
#include "agent/hostfiles.h"

#include <pthread.h>

#define MANAGER_DEFAULT_MAX 256
#define MANAGER_DEFAULT_STOP_MS 10000
#define MANAGER_MONITOR_MS 200
/* status_message of a state whose record could not be saved (docs/errors.md). */
#define MANAGER_UNSAVED "the record of this state is not saved yet"

typedef struct mgr_instance {
  pthread_mutex_t op_lock;
  agent_record rec;       /* committed record; guarded by m->mu */
  char *dir;              /* immutable after creation */
  vmm_vm vm;              /* guarded by op_lock */
  const vmm_entry *entry; /* driver; immutable */
  int refs;               /* guarded by m->mu */
  bool deleted;           /* guarded by m->mu */
  int stop_ms;            /* graceful timeout of the Stop in progress, -1: the
                             configured one; guarded by op_lock */
  bool record_dirty;      /* the committed record is not on disk; guarded by op_lock */
  char *netns_path;       /* network namespace of the VMM being spawned; op_lock */
  /* The guest agent link (manager_guest.c): link, link_ctx, link_pid and
   * link_gen are guarded by m->mu; guest_mu serializes starting/stopping. */
  pthread_mutex_t guest_mu;
  struct gl_link *link;
  void *link_ctx;
  int32_t link_pid;
  uint64_t link_gen;
  bool link_hold;       /* an operation stopped the link: no restart before its commit */
  bool console_nopunch; /* its console cannot be rotated (logged once); monitor only */
  /* Idle auto-standby (manager_idle.c): the decision's memory (monitor
   * only), and the reason an operation run by emberd on its own gives its
   * event and status (op_lock). */
  agent_idle_state idle;
  const char *op_reason;
  /* The warm VMM pool (manager_warm.c): whether vm holds a warm VMM, for
   * readers without op_lock, and when a failed prepare may be retried;
   * both guarded by m->mu. */
  bool warm;
  int64_t warm_retry_us;
} mgr_instance;

typedef struct mgr_sub {
  int handle;
  agent_event_fn fn;
  void *ctx;
} mgr_sub;

struct agent_manager {
  char *data_dir;
  char *instances_dir;
  int max_instances;
  int stop_timeout_ms;
  int64_t console_max_bytes;
  char *vmm_cgroup;
  agent_host_fence *fence;  /* host file paths (hostfiles.h); immutable */
  struct img_store *images; /* InstanceSpec.image (instance_image.h); may be NULL */
  agent_net *net;           /* managed networks (instance_net.h); never NULL */
  agent_snapstore *snaps;   /* frozen snapshots for forks (snapstore.h); never NULL */
  char *boot_kit_dir;
  const vmm_registry *reg;
  agent_admission_config admission;
  agent_host_probe_fn host_probe;
  void *host_probe_ctx;
  agent_usage admitting; /* admitted starts/restores not yet committed; under mu */

  pthread_mutex_t mu;
  mgr_instance **insts;
  size_t n_insts;
  size_t cap_insts;
  /* Names of creates writing their folder (outside mu): reserved so that two
   * creates of one name cannot both succeed, and counted for admission. */
  char **creating;
  size_t n_creating;
  pthread_cond_t created_cv; /* a create released its name (with mu) */

  pthread_mutex_t subs_mu;
  mgr_sub *subs;
  size_t n_subs;
  int next_sub;

  pthread_t monitor;
  bool monitor_running;
  /* Warm VMM pools (manager_warm.c): the config (immutable), the counters
   * per registered type (under mu), the thread and its wake-up (warm_cv
   * and warm_kick under stop_mu). */
  agent_warm_config warm_cfg;
  agent_warm_stats *warm_stats;
  size_t n_warm_stats;
  pthread_t warm_thread;
  bool warm_running;
  pthread_cond_t warm_cv;
  bool warm_kick;
  pthread_mutex_t stop_mu;
  pthread_cond_t stop_cv;
  bool stopping;
};

/* manager.c: the instance table and commits. */
mgr_instance *mgr_instance_new(const agent_record *rec, const char *dir, const vmm_entry *entry);
/* Drops a reference taken by mgr_lookup (or the monitor). */
void mgr_unref(agent_manager *m, mgr_instance *inst);
/* Finds and references an instance; NOT_FOUND or INVALID_ARGUMENT otherwise. */
mgr_instance *mgr_lookup(agent_manager *m, const char *id_or_name, cmn_error *err);
void mgr_insert_locked(agent_manager *m, mgr_instance *inst);
void mgr_set_status(agent_record *r, const char *msg);
/* Persists and publishes next (caller holds op_lock); always 0. */
int mgr_commit(agent_manager *m, mgr_instance *inst, agent_record *next, agent_op op,
               int64_t duration_us, cmn_error *err);
/* Copies the committed record (caller holds op_lock). */
void mgr_snapshot_record(agent_manager *m, mgr_instance *inst, agent_record *out);
snap_target mgr_target(agent_manager *m, mgr_instance *inst);
void mgr_view_out(agent_manager *m, mgr_instance *inst, agent_instance_view *out);
int mgr_admit(agent_manager *m, mgr_instance *inst, const char *name, const vmm_entry *entry,
              const vmm_spec *spec, agent_admit_point point, agent_snap_kind last, cmn_error *err);
void mgr_admit_done(agent_manager *m, const vmm_spec *spec);

/* manager.c: creates share these with forks (manager_fork.c). */
char *mgr_new_id(void);
int mgr_reserve_name(agent_manager *m, const agent_create_req *req, mgr_instance **same,
                     cmn_error *err);
void mgr_release_name_locked(agent_manager *m, const char *name);
void mgr_emit(agent_manager *m, const agent_instance_view *v, agent_state old_state, agent_op op,
              int64_t duration_us);

/* manager_ops.c: runs one lifecycle operation with op_lock held. */
int mgr_run_op(agent_manager *m, mgr_instance *inst, agent_op op, cmn_error *err);

/* manager_fork.c: after a clone is deleted (and at start-up, for every
 * hidden snapshot): deletes the hidden snapshot snap_id once no instance
 * depends on it. No lock held. */
void mgr_fork_collect(agent_manager *m, const char *snap_id);
void mgr_fork_collect_all(agent_manager *m);

/* manager_recover.c: loads every record and recovers each instance. */
int mgr_load_all(agent_manager *m, cmn_error *err);

/* manager.c: publishes an OBSERVED event with the state unchanged (the guest
 * agent's readiness changed); no lock held. */
void mgr_emit_observed(agent_manager *m, const agent_instance_view *v);

/* manager_guest.c: the guest agent link of an instance. sync starts or stops
 * it to match the committed record (no lock held; may be called from any
 * thread; committed: called by a commit, which lifts an operation's hold);
 * stop ends it with `why` for the channels in flight and holds it off until
 * the next commit. */
void mgr_guest_sync(agent_manager *m, mgr_instance *inst, bool committed);
void mgr_guest_stop(agent_manager *m, mgr_instance *inst, const char *why);

/* manager_idle.c: one idle auto-standby step for an instance (monitor
 * thread, no lock held); sample: take a new sample (about once a second). */
void mgr_idle_tick(agent_manager *m, mgr_instance *inst, bool sample);

/* manager_ops.c: the spec's host files and network, opened and lent to the
 * driver through inst->vm right before a VMM is spawned (op_lock held). */
int mgr_host_files_begin(agent_manager *m, mgr_instance *inst, agent_host_files *hf,
                         cmn_error *err);
void mgr_host_files_end(mgr_instance *inst, agent_host_files *hf);

/* manager_warm.c (op_lock held for drop and restored): ends inst's warm VMM
 * if it has one; after a restore attempt that had one (was_warm): ends it if
 * the driver never took it, counts `used` or `fallback` and wakes the pool
 * to refill; wakes the pool thread; ends every warm VMM (shutdown, no lock
 * held); the pool thread's body. */
void mgr_warm_drop(agent_manager *m, mgr_instance *inst, const char *why);
void mgr_warm_restored(agent_manager *m, mgr_instance *inst, bool was_warm, bool ok);
void mgr_warm_wake(agent_manager *m);
void mgr_warm_drop_all(agent_manager *m);
void *mgr_warm_main(void *arg);

/* manager_monitor.c: the monitor thread's body (arg: the manager). */
void *mgr_monitor_main(void *arg);

#endif
