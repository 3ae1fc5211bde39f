/* manager_warm.c: the warm VMM pool of the instance manager (docs/wake.md).
 *
 * A thread of its own fills each hypervisor type's pool (warm.h): it picks
 * the most recently stood-by Standby instance that fits a pool with room,
 * takes that instance's operation lock only when it is free, and has the
 * driver start the VMM the instance's restore would start, left waiting
 * (snap_restore_prepare). The restore then finds it in inst->vm (vm.warm)
 * and only loads and resumes. It also reaps warm VMMs that died.
 *
 * A warm VMM is never the instance's committed state: the record keeps no
 * pid for it, and every operation but a restore, a delete and emberd's
 * shutdown end it first (mgr_warm_drop, with the operation lock held).
 * After a crash of emberd, recovery finds a leftover one by its command line
 * (it is a VMM waiting for an incoming stream of a Standby instance) and
 * ends it, as it ends any VMM that never resumed a snapshot. */
#include "agent/manager_internal.h"
#include "agent/snapshot.h"
#include "agent/vmm_call.h"
#include "common/log.h"
#include "common/mem.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often the pool is looked at when nothing wakes the thread. */
#define MANAGER_WARM_TICK_MS 500

static agent_warm_stats *mgr_warm_stats_of(agent_manager *m, const char *type)
{
  for (size_t i = 0; i < m->n_warm_stats; i++)
    if (strcmp(m->warm_stats[i].hypervisor, type) == 0)
      return &m->warm_stats[i];
  return NULL;
}

static agent_warm_stats *mgr_warm_stats_for(agent_manager *m, mgr_instance *inst)
{
  return inst->entry != NULL ? mgr_warm_stats_of(m, inst->entry->driver->type) : NULL;
}

/* Counts one event for inst's type (caller holds m->mu). */
#define MGR_WARM_COUNT(m, inst, field)                                                             \
  do {                                                                                             \
    agent_warm_stats *s_ = mgr_warm_stats_for((m), (inst));                                        \
    if (s_ != NULL)                                                                                \
      s_->field++;                                                                                 \
  } while (0)

void mgr_warm_wake(agent_manager *m)
{
  pthread_mutex_lock(&m->stop_mu);
  m->warm_kick = true;
  pthread_cond_broadcast(&m->warm_cv);
  pthread_mutex_unlock(&m->stop_mu);
}

void mgr_warm_drop(agent_manager *m, mgr_instance *inst, const char *why)
{
  if (!inst->vm.warm)
    return;
  cmn_info(inst->vm.id, "warm", "ending the warm VMM (pid %d): %s", (int)inst->vm.proc.pid, why);
  vmm_call_warm_discard(inst->entry, &inst->vm);
  inst->vm.warm = false; /* also when the driver became unavailable */
  pthread_mutex_lock(&m->mu);
  inst->warm = false;
  MGR_WARM_COUNT(m, inst, discarded);
  pthread_mutex_unlock(&m->mu);
}

void mgr_warm_restored(agent_manager *m, mgr_instance *inst, bool was_warm, bool ok)
{
  /* A restore that failed before the driver took it (host files, a missing
   * snapshot, an injected fault) leaves it to be ended here. */
  if (inst->vm.warm)
    mgr_warm_drop(m, inst, "the restore failed before it reached the VMM");
  pthread_mutex_lock(&m->mu);
  inst->warm = false;
  if (was_warm && ok && inst->vm.warm_used)
    MGR_WARM_COUNT(m, inst, used);
  else if (was_warm && ok)
    MGR_WARM_COUNT(m, inst, fallback);
  pthread_mutex_unlock(&m->mu);
  inst->vm.warm_used = false;
  if (was_warm)
    mgr_warm_wake(m); /* refill, or prepare again after a failure */
}

void mgr_warm_drop_all(agent_manager *m)
{
  for (size_t i = 0; i < m->n_insts; i++) {
    mgr_instance *inst = m->insts[i];
    pthread_mutex_lock(&inst->op_lock);
    mgr_warm_drop(m, inst, "emberd is shutting down");
    pthread_mutex_unlock(&inst->op_lock);
  }
}

/* Ends warm VMMs that died or whose instance left Standby some other way. */
static void mgr_warm_check(agent_manager *m, mgr_instance *inst)
{
  if (pthread_mutex_trylock(&inst->op_lock) != 0)
    return;
  if (inst->vm.warm) {
    pthread_mutex_lock(&m->mu);
    bool standby = !inst->deleted && inst->rec.view.state == AGENT_STATE_STANDBY;
    pthread_mutex_unlock(&m->mu);
    if (!cmn_proc_alive(&inst->vm.proc)) {
      cmn_warn(inst->vm.id, "warm", "the warm VMM (pid %d) has exited", (int)inst->vm.proc.pid);
      pthread_mutex_lock(&m->mu);
      MGR_WARM_COUNT(m, inst, lost);
      pthread_mutex_unlock(&m->mu);
      mgr_warm_drop(m, inst, "it exited");
    } else if (!standby) {
      mgr_warm_drop(m, inst, "the instance is not in standby");
    }
  }
  pthread_mutex_unlock(&inst->op_lock);
}

/* Prepares a warm VMM for inst if it still qualifies (op_lock free). */
static void mgr_warm_prepare(agent_manager *m, mgr_instance *inst)
{
  if (pthread_mutex_trylock(&inst->op_lock) != 0)
    return; /* an operation runs: looked at again later */
  pthread_mutex_lock(&m->mu);
  bool ok = !inst->deleted && inst->rec.view.state == AGENT_STATE_STANDBY && !inst->vm.warm;
  pthread_mutex_unlock(&m->mu);
  if (ok) {
    snap_target t = mgr_target(m, inst);
    agent_host_files hf = {0};
    cmn_error err = {0};
    int64_t t0 = cmn_now_us();
    int rc = mgr_host_files_begin(m, inst, &hf, &err);
    if (rc == 0) {
      rc = snap_restore_prepare(&t, &err);
      mgr_host_files_end(inst, &hf);
    }
    pthread_mutex_lock(&m->mu);
    if (rc == 0) {
      inst->warm = true;
      MGR_WARM_COUNT(m, inst, prepared);
    } else if (err.code == CMN_UNIMPLEMENTED) {
      inst->warm_retry_us = INT64_MAX; /* this snapshot cannot be: the next standby's may */
    } else {
      inst->warm_retry_us = cmn_now_us() + AGENT_WARM_RETRY_US;
      MGR_WARM_COUNT(m, inst, failed);
    }
    pthread_mutex_unlock(&m->mu);
    if (rc == 0)
      cmn_debug(inst->vm.id, "warm", "warm VMM pid %d ready in %lld us", (int)inst->vm.proc.pid,
                (long long)(cmn_now_us() - t0));
    else if (err.code == CMN_UNIMPLEMENTED)
      cmn_info(inst->vm.id, "warm", "no warm VMM for this snapshot: %s", err.msg);
    else
      cmn_warn(inst->vm.id, "warm", "cannot prepare a warm VMM (retried in %lld s): %s (%s)",
               (long long)(AGENT_WARM_RETRY_US / 1000000), err.msg, cmn_code_name(err.code));
  }
  pthread_mutex_unlock(&inst->op_lock);
}

/* One pass: health checks, then one prepare. True when it prepared or
 * tried to (another pass may find more to do). */
static bool mgr_warm_pass(agent_manager *m)
{
  pthread_mutex_lock(&m->mu);
  size_t n = m->n_insts;
  mgr_instance **list = cmn_calloc(n + 1, sizeof *list);
  agent_warm_cand *c = cmn_calloc(n + 1, sizeof *c);
  for (size_t i = 0; i < n; i++) {
    mgr_instance *inst = m->insts[i];
    list[i] = inst;
    inst->refs++;
    c[i] = (agent_warm_cand){
        .hypervisor = inst->entry != NULL ? inst->entry->driver->type : NULL,
        .memory_mib = inst->rec.view.spec.memory_mib,
        .vcpus = inst->rec.view.spec.vcpus,
        .standby = !inst->deleted && inst->rec.view.state == AGENT_STATE_STANDBY,
        .can_warm = vmm_call_can(inst->entry, VMM_CALL_WARM),
        .warm = inst->warm,
        .standby_at = inst->rec.view.updated_at_us,
        .retry_at_us = inst->warm_retry_us,
    };
  }
  pthread_mutex_unlock(&m->mu);
  for (size_t i = 0; i < n; i++)
    if (c[i].warm)
      mgr_warm_check(m, list[i]);
  long pick = agent_warm_pick(&m->warm_cfg, c, n, cmn_now_us());
  if (pick >= 0)
    mgr_warm_prepare(m, list[pick]);
  for (size_t i = 0; i < n; i++)
    mgr_unref(m, list[i]);
  free(list);
  free(c);
  return pick >= 0;
}

void *mgr_warm_main(void *arg)
{
  agent_manager *m = arg;
  for (;;) {
    pthread_mutex_lock(&m->stop_mu);
    if (!m->stopping && !m->warm_kick) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += MANAGER_WARM_TICK_MS * 1000000L;
      ts.tv_sec += ts.tv_nsec / 1000000000L;
      ts.tv_nsec %= 1000000000L;
      pthread_cond_timedwait(&m->warm_cv, &m->stop_mu, &ts);
    }
    m->warm_kick = false;
    bool stop = m->stopping;
    pthread_mutex_unlock(&m->stop_mu);
    if (stop)
      return NULL;
    /* Prepares one at a time, until nothing is left to do or emberd stops. */
    for (int k = 0; k < AGENT_WARM_MAX_SIZE * 4 && mgr_warm_pass(m); k++) {
      pthread_mutex_lock(&m->stop_mu);
      stop = m->stopping;
      pthread_mutex_unlock(&m->stop_mu);
      if (stop)
        return NULL;
    }
  }
}

int agent_manager_warm_stats(agent_manager *m, agent_warm_stats **out, size_t *n)
{
  pthread_mutex_lock(&m->mu);
  *n = m->n_warm_stats;
  *out = *n > 0 ? cmn_calloc(*n, sizeof **out) : NULL;
  for (size_t i = 0; i < *n; i++) {
    (*out)[i] = m->warm_stats[i];
    (*out)[i].warm = 0;
  }
  for (size_t i = 0; i < m->n_insts; i++) {
    mgr_instance *inst = m->insts[i];
    if (!inst->warm || inst->entry == NULL)
      continue;
    for (size_t k = 0; k < *n; k++)
      if (strcmp((*out)[k].hypervisor, inst->entry->driver->type) == 0)
        (*out)[k].warm++;
  }
  pthread_mutex_unlock(&m->mu);
  return 0;
}
