/* manager_idle.c: idle auto-standby in the instance manager (docs/idle.md):
 * the monitor thread samples every Running instance with auto_standby about
 * once a second (idle.h decides), and runs the ordinary standby operation
 * once one has been idle long enough; HoldInstance and the server's session
 * counts keep an instance awake. The live figures are kept in the committed
 * record's view (view.idle, under m->mu, never persisted), so every view
 * copy shows them. */
#include "agent/idle.h"
#include "agent/instance_net.h"
#include "agent/manager_internal.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/proc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int agent_manager_hold(agent_manager *m, const char *id_or_name, int64_t duration_ms,
                       agent_instance_view *out, cmn_error *err)
{
  if (duration_ms < 0 || duration_ms > AGENT_HOLD_MAX_MS) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "duration must be 0 (release) to %lld s (got %lld ms)",
                (long long)(AGENT_HOLD_MAX_MS / 1000), (long long)duration_ms);
    return cmn_err_field(err, "duration");
  }
  mgr_instance *inst = mgr_lookup(m, id_or_name, err);
  if (inst == NULL)
    return -1;
  int64_t until = duration_ms > 0 ? cmn_wall_us() + duration_ms * 1000 : 0;
  pthread_mutex_lock(&m->mu);
  inst->rec.view.idle.hold_until_us = until;
  cleanup_free char *id = cmn_strdup(inst->rec.view.id);
  pthread_mutex_unlock(&m->mu);
  if (until > 0)
    cmn_info(id, "hold", "held awake for %lld ms", (long long)duration_ms);
  else
    cmn_info(id, "hold", "hold released");
  mgr_view_out(m, inst, out);
  mgr_unref(m, inst);
  return 0;
}

int agent_manager_session_begin(agent_manager *m, const char *id)
{
  cmn_error err = {0};
  mgr_instance *inst = mgr_lookup(m, id, &err);
  if (inst == NULL)
    return -1;
  pthread_mutex_lock(&m->mu);
  inst->rec.view.idle.sessions++;
  pthread_mutex_unlock(&m->mu);
  mgr_unref(m, inst);
  return 0;
}

void agent_manager_session_end(agent_manager *m, const char *id)
{
  cmn_error err = {0};
  mgr_instance *inst = mgr_lookup(m, id, &err);
  if (inst == NULL)
    return; /* deleted meanwhile: its count went with it */
  pthread_mutex_lock(&m->mu);
  if (inst->rec.view.idle.sessions > 0)
    inst->rec.view.idle.sessions--;
  pthread_mutex_unlock(&m->mu);
  mgr_unref(m, inst);
}

/* The TAP devices whose traffic counts: the caller's (spec.nics) and the
 * one of a managed network. Caller holds m->mu; free the names with free(). */
static size_t mgr_idle_taps_locked(mgr_instance *inst, char ***out)
{
  const agent_instance_view *v = &inst->rec.view;
  char **taps = cmn_calloc(v->spec.n_nics + 1, sizeof *taps);
  size_t n = 0;
  for (size_t i = 0; i < v->spec.n_nics; i++)
    if (v->spec.nics[i].tap != NULL)
      taps[n++] = cmn_strdup(v->spec.nics[i].tap);
  agent_net_status st;
  if (agent_net_spec_set(&v->net) && agent_net_describe(v->id, &v->net, &st) == 0 &&
      st.tap[0] != '\0')
    taps[n++] = cmn_strdup(st.tap);
  *out = taps;
  return n;
}

static void mgr_idle_taps_free(char **taps, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(taps[i]);
  free(taps);
}

/* Runs the standby that the decision asked for, with op_lock taken without
 * waiting (an operation in progress changes the picture: the next sample
 * looks again). Everything is checked again under op_lock. */
static void mgr_idle_standby(agent_manager *m, mgr_instance *inst, int32_t pid, const char *why)
{
  if (pthread_mutex_trylock(&inst->op_lock) != 0)
    return;
  pthread_mutex_lock(&m->mu);
  const agent_instance_view *v = &inst->rec.view;
  bool still = !inst->deleted && v->state == AGENT_STATE_RUNNING && v->vmm_pid == pid &&
               v->idle.sessions == 0 && v->idle.hold_until_us <= cmn_wall_us();
  cleanup_free char *id = cmn_strdup(v->id);
  pthread_mutex_unlock(&m->mu);
  if (!still) {
    pthread_mutex_unlock(&inst->op_lock);
    agent_idle_restart(&inst->idle);
    return;
  }
  cmn_info(id, "standby", "auto standby: %s", why);
  cmn_error err = {0};
  inst->op_reason = why;
  int rc = mgr_run_op(m, inst, AGENT_OP_STANDBY, &err);
  inst->op_reason = NULL;
  pthread_mutex_unlock(&inst->op_lock);
  if (rc < 0) {
    /* Tried again only after another idle period: a standby that fails at
     * once (no room for the snapshot, say) must not run every second. */
    cmn_warn(id, "standby", "auto standby failed: %s; tried again after another idle period",
             err.msg);
    agent_idle_restart(&inst->idle);
  }
}

void mgr_idle_tick(agent_manager *m, mgr_instance *inst, bool sample)
{
  int64_t wall = cmn_wall_us();
  pthread_mutex_lock(&m->mu);
  agent_instance_view *v = &inst->rec.view;
  if (v->idle.hold_until_us != 0 && v->idle.hold_until_us <= wall)
    v->idle.hold_until_us = 0; /* expired: no longer shown */
  agent_auto_standby cfg = v->auto_standby;
  bool on = !inst->deleted && cfg.idle_seconds > 0;
  agent_idle_input in = {
      .running = v->state == AGENT_STATE_RUNNING,
      .sessions = v->idle.sessions,
      .held = v->idle.hold_until_us > wall,
  };
  int32_t pid = v->vmm_pid;
  char **taps = NULL;
  size_t n_taps = on && sample ? mgr_idle_taps_locked(inst, &taps) : 0;
  pthread_mutex_unlock(&m->mu);
  if (!on || !sample) {
    mgr_idle_taps_free(taps, n_taps);
    return;
  }
  agent_idle_sample s;
  agent_idle_read(pid, (const char *const *)taps, n_taps, cmn_now_us(), &s);
  mgr_idle_taps_free(taps, n_taps);
  cleanup_free char *why = NULL;
  agent_idle_verdict verdict = agent_idle_decide(&inst->idle, &cfg, &in, &s, &why);
  pthread_mutex_lock(&m->mu);
  v->idle.idle_us = verdict == AGENT_IDLE_BUSY ? 0 : agent_idle_for_us(&inst->idle);
  v->idle.cpu_percent = inst->idle.cpu_percent;
  v->idle.net_bps = inst->idle.net_bps;
  pthread_mutex_unlock(&m->mu);
  if (verdict == AGENT_IDLE_STANDBY)
    mgr_idle_standby(m, inst, pid, why);
}
