/* manager_guest.c: the guest agent link (agent/guestlink) of each instance
 * whose spec has the agent channel, kept in step with its VMM: one link per
 * VMM process (a restore makes a new VMM and so a new link), none while no
 * VMM runs. The link's readiness is the instance's live GuestAgentStatus
 * (inst->rec.view.guest_agent, never persisted), published as an OBSERVED
 * event when it changes.
 *
 * Who calls: mgr_commit after every committed change, the monitor every
 * round (which also covers VMMs re-adopted at start-up), and the operations
 * that end a VMM (standby, stop, delete) before they do, so execs in flight
 * end with a message naming the operation rather than "connection lost".
 * Such a stop holds the link off (link_hold) until the operation commits:
 * the monitor must not reconnect to a VMM that is being ended.
 *
 * Locks: inst->guest_mu serializes the start/stop decisions of one instance
 * and is never held by the link's thread; the link's state callback takes
 * m->mu only. gl_link_stop (which joins the link's thread) is therefore never
 * called with m->mu held. */
#include "agent/guestlink/guestlink.h"
#include "agent/manager_internal.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/mem.h"

#include <stdlib.h>
#include <string.h>

/* What the link's callback needs; lives as long as the link. */
typedef struct mgr_guest_ctx {
  agent_manager *m;
  mgr_instance *inst;
  uint64_t gen;
} mgr_guest_ctx;

static void mgr_guest_set_locked(mgr_instance *inst, bool ready, const char *version,
                                 const char *why)
{
  agent_guest_status *g = &inst->rec.view.guest_agent;
  bool was = g->ready;
  free(g->version);
  free(g->message);
  g->ready = ready;
  g->version = ready && version != NULL ? cmn_strdup(version) : NULL;
  g->message = !ready && why != NULL && why[0] != '\0' ? cmn_strdup(why) : NULL;
  if (ready && !was)
    g->ready_us = cmn_wall_us();
  else if (!ready)
    g->ready_us = 0;
}

static void mgr_guest_on_state(void *opaque, bool ready, const char *version, const char *why)
{
  mgr_guest_ctx *x = opaque;
  agent_manager *m = x->m;
  mgr_instance *inst = x->inst;
  pthread_mutex_lock(&m->mu);
  if (inst->link_gen != x->gen || inst->deleted) {
    pthread_mutex_unlock(&m->mu);
    return;
  }
  bool changed = inst->rec.view.guest_agent.ready != ready;
  mgr_guest_set_locked(inst, ready, version, why);
  agent_instance_view v;
  agent_view_copy(&v, &inst->rec.view);
  pthread_mutex_unlock(&m->mu);
  if (changed) {
    if (ready)
      cmn_info(v.id, "guest-agent", "the guest agent answered (version %s)",
               version != NULL ? version : "?");
    else
      cmn_info(v.id, "guest-agent", "the guest agent is not reachable: %s",
               why != NULL ? why : "?");
    mgr_emit_observed(m, &v);
  }
  agent_instance_view_free(&v);
}

/* Detaches the current link (m->mu held); the caller stops it. */
static gl_link *mgr_guest_detach_locked(mgr_instance *inst, const char *why, mgr_guest_ctx **ctx)
{
  gl_link *l = inst->link;
  *ctx = inst->link_ctx;
  inst->link = NULL;
  inst->link_ctx = NULL;
  inst->link_pid = 0;
  inst->link_gen++;
  mgr_guest_set_locked(inst, false, NULL, why);
  inst->link_hold = true;
  return l;
}

static void mgr_guest_stop_locked_mu(agent_manager *m, mgr_instance *inst, const char *why)
{
  mgr_guest_ctx *ctx = NULL;
  pthread_mutex_lock(&m->mu);
  gl_link *l = mgr_guest_detach_locked(inst, why, &ctx);
  pthread_mutex_unlock(&m->mu);
  if (l != NULL)
    gl_link_stop(l, why);
  free(ctx);
}

void mgr_guest_stop(agent_manager *m, mgr_instance *inst, const char *why)
{
  pthread_mutex_lock(&inst->guest_mu);
  mgr_guest_stop_locked_mu(m, inst, why);
  pthread_mutex_unlock(&inst->guest_mu);
}

void mgr_guest_sync(agent_manager *m, mgr_instance *inst, bool committed)
{
  pthread_mutex_lock(&inst->guest_mu);
  pthread_mutex_lock(&m->mu);
  if (committed)
    inst->link_hold = false;
  if (inst->link_hold) {
    pthread_mutex_unlock(&m->mu);
    pthread_mutex_unlock(&inst->guest_mu);
    return;
  }
  const agent_instance_view *v = &inst->rec.view;
  bool vmm = v->state == AGENT_STATE_RUNNING || v->state == AGENT_STATE_PAUSED;
  int32_t pid = v->vmm_pid;
  bool want = !inst->deleted && v->spec.guest_agent && vmm && pid > 0;
  bool have = inst->link != NULL;
  bool same = have && inst->link_pid == pid;
  bool qemu = strcmp(v->hypervisor, "qemu") == 0;
  cleanup_free char *id = cmn_strdup(v->id);
  pthread_mutex_unlock(&m->mu);
  if (have && !(want && same)) {
    mgr_guest_stop_locked_mu(m, inst,
                             want ? "the instance's VMM was replaced" : "the instance's VMM ended");
    pthread_mutex_lock(&m->mu);
    inst->link_hold = false; /* a stop of our own, not an operation's */
    pthread_mutex_unlock(&m->mu);
  }
  if (want && !(have && same)) {
    mgr_guest_ctx *ctx = cmn_calloc(1, sizeof *ctx);
    ctx->m = m;
    ctx->inst = inst;
    cleanup_free char *path =
        cmn_asprintf("%s/%s", inst->dir, qemu ? VMM_AGENT_SOCK : VMM_VSOCK_SOCK);
    pthread_mutex_lock(&m->mu);
    ctx->gen = ++inst->link_gen;
    pthread_mutex_unlock(&m->mu);
    gl_opts o = {
        .transport = qemu ? GL_UNIX : GL_HYBRID_VSOCK,
        .path = path,
        .on_state = mgr_guest_on_state,
        .opaque = ctx,
    };
    cmn_error err = {0};
    gl_link *l = gl_link_start(&o, &err);
    if (l == NULL) {
      cmn_warn(id, "guest-agent", "cannot start the guest agent link: %s", err.msg);
      free(ctx);
    } else {
      pthread_mutex_lock(&m->mu);
      inst->link = l;
      inst->link_ctx = ctx;
      inst->link_pid = pid;
      mgr_guest_set_locked(inst, false, NULL, "waiting for the guest agent to answer");
      pthread_mutex_unlock(&m->mu);
    }
  }
  pthread_mutex_unlock(&inst->guest_mu);
}

struct gl_link *agent_manager_guest_link(agent_manager *m, const char *id_or_name, char **id_out,
                                         cmn_error *err)
{
  mgr_instance *inst = mgr_lookup(m, id_or_name, err);
  if (inst == NULL)
    return NULL;
  gl_link *l = NULL;
  for (int round = 0; round < 2 && l == NULL; round++) {
    pthread_mutex_lock(&m->mu);
    const agent_instance_view *v = &inst->rec.view;
    if (!v->spec.guest_agent) {
      cmn_err_set(err, CMN_FAILED_PRECONDITION,
                  "instance %s has no guest agent channel (spec.guest_agent is off)", v->name);
      cmn_err_precondition(err, "HYPERVISOR", "spec.guest_agent");
    } else if (v->state != AGENT_STATE_RUNNING) {
      cmn_err_set(err, CMN_FAILED_PRECONDITION,
                  "instance %s is %s: the guest agent is reached only while it is Running", v->name,
                  agent_state_name(v->state));
      cmn_err_precondition(err, "STATE", v->name);
    } else if (inst->link != NULL) {
      l = gl_link_ref(inst->link);
      if (id_out != NULL)
        *id_out = cmn_strdup(v->id);
    }
    bool failed = err->code != CMN_OK;
    pthread_mutex_unlock(&m->mu);
    if (failed)
      break;
    if (l == NULL)
      mgr_guest_sync(m, inst, false); /* a commit that has not synced yet */
  }
  if (l == NULL && err->code == CMN_OK)
    cmn_err_set(err, CMN_UNAVAILABLE, "the guest agent link of %s could not be started",
                id_or_name);
  mgr_unref(m, inst);
  return l;
}
