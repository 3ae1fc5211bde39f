/* manager_ops.c: the lifecycle operations of the instance manager (start, stop,
 * pause, resume, standby, restore): state checks, admission, the driver calls
 * through vmm_call.h and the snapshot manager, and the commit. Locking as in
 * manager.c: the caller holds the instance's op_lock. */
#include "agent/manager_internal.h"
#include "agent/record.h"
#include "agent/snapshot.h"
#include "agent/validate.h"
#include "agent/vmm_call.h"
#include "common/cgroup.h"
#include "common/cleanup.h"
#include "common/fault.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- operations ------------------------------------------------------------ */

/* Moves a new VMM out of emberd's cgroup when configured, so that stopping
 * emberd's container does not kill the guest. A failure is logged: the guest
 * runs either way, it is only less protected. */
static void mgr_vmm_place(agent_manager *m, mgr_instance *inst)
{
  if (m->vmm_cgroup == NULL || inst->vm.proc.pid <= 0)
    return;
  cmn_error err = {0};
  if (cmn_cgroup_place("/sys/fs/cgroup", m->vmm_cgroup, inst->vm.proc.pid, &err) < 0)
    cmn_warn(inst->vm.id, "cgroup", "VMM pid %d stays in emberd's cgroup: %s",
             (int)inst->vm.proc.pid, err.msg);
}

static int mgr_need_driver(mgr_instance *inst, cmn_error *err)
{
  return vmm_call_need_available(inst->entry, inst->rec.view.hypervisor, err);
}

static int mgr_need_cap(mgr_instance *inst, unsigned cap, const char *what, cmn_error *err)
{
  return vmm_call_need_caps(inst->entry, inst->rec.view.hypervisor, cap, what, err);
}

static int mgr_wrong_state(mgr_instance *inst, agent_op op, agent_state st, cmn_error *err)
{
  const char *why = inst->rec.view.status_message;
  if (why != NULL && why[0] == '\0')
    why = NULL;
  cmn_err_set(err, CMN_FAILED_PRECONDITION, "cannot %s instance %s: it is %s%s%s%s",
              agent_op_name(op), inst->rec.view.name, agent_state_name(st), why ? " (" : "",
              why ? why : "", why ? ")" : "");
  cleanup_free char *subject = cmn_asprintf("instances/%s", inst->rec.view.id);
  return cmn_err_precondition(err, "STATE", subject);
}

/* Opens and checks the spec's host files right before a VMM is spawned
 * (hostfiles.h) and lends them to the driver through inst->vm; the record's
 * spec (the user's paths) is untouched. mgr_host_files_end undoes it. */
int mgr_host_files_begin(agent_manager *m, mgr_instance *inst, agent_host_files *hf, cmn_error *err)
{
  if (agent_image_host_files_open(m->fence, &inst->rec.view.spec, &inst->rec.view.image, inst->dir,
                                  CMN_FAILED_PRECONDITION, hf, err) < 0)
    return -1;
  free(inst->netns_path);
  inst->netns_path = NULL;
  if (agent_net_vm_begin(m->net, inst->rec.view.id, &inst->rec.view.net, &hf->spec,
                         &inst->netns_path, err) < 0) {
    agent_host_files_close(hf);
    return -1;
  }
  inst->vm.netns_path = inst->netns_path;
  inst->vm.spec = &hf->spec;
  inst->vm.host_fds = hf->fds;
  inst->vm.n_host_fds = hf->n_fds;
  return 0;
}

void mgr_host_files_end(mgr_instance *inst, agent_host_files *hf)
{
  inst->vm.spec = &inst->rec.view.spec;
  inst->vm.netns_path = NULL;
  inst->vm.host_fds = NULL;
  inst->vm.n_host_fds = 0;
  agent_host_files_close(hf);
}

static int mgr_do_start(agent_manager *m, mgr_instance *inst, agent_record *r, cmn_error *err)
{
  snap_target t = mgr_target(m, inst);
  cleanup_free char *mem_dir = NULL;
  int64_t t0 = cmn_now_us();
  agent_host_files hf = {0};
  if (mgr_host_files_begin(m, inst, &hf, err) < 0)
    return cmn_err_prefix(err, "start");
  if (snap_prepare_boot(&t, &mem_dir, err) < 0) {
    mgr_host_files_end(inst, &hf);
    return -1;
  }
  memset(&inst->vm.proc, 0, sizeof inst->vm.proc);
  int drc = vmm_call_start(inst->entry, &inst->vm, mem_dir, err);
  mgr_host_files_end(inst, &hf);
  if (drc < 0 || cmn_fault("agent.start.after_driver", err) < 0 || snap_after_boot(&t, err) < 0 ||
      cmn_fault("agent.start.before_commit", err) < 0) {
    snap_end_vmm(&t);
    cmn_error e2 = {0};
    snap_discard_all(inst->dir, &e2);
    snap_explain_space(inst->dir, err);
    return cmn_err_prefix(err, "start");
  }
  mgr_vmm_place(m, inst);
  r->view.state = AGENT_STATE_RUNNING;
  mgr_set_status(r, NULL);
  return mgr_commit(m, inst, r, AGENT_OP_START, cmn_now_us() - t0, err);
}

static int mgr_do_stop(agent_manager *m, mgr_instance *inst, agent_record *r, cmn_error *err)
{
  int64_t t0 = cmn_now_us();
  if (cmn_fault("agent.stop.before_vmm", err) < 0)
    return -1;
  /* The graceful timeout of this Stop: 0 kills the VMM at once. */
  int wait_ms = inst->stop_ms >= 0 ? inst->stop_ms : m->stop_timeout_ms;
  if (inst->entry != NULL) {
    snap_target t = mgr_target(m, inst);
    t.shutdown_timeout_ms = wait_ms;
    if (wait_ms == 0) {
      t.caps &= ~(unsigned)VMM_CAP_GRACEFUL_SHUTDOWN;
      if (inst->vm.proc.pid > 0)
        cmn_info(inst->vm.id, "stop", "graceful timeout 0: killing the VMM without a power-off");
    } else if (inst->vm.proc.pid > 0 && vmm_call_can(inst->entry, VMM_CALL_POWERDOWN) &&
               r->view.state == AGENT_STATE_RUNNING) {
      cmn_error e2 = {0};
      if (vmm_call_powerdown(inst->entry, &inst->vm, wait_ms, &e2) < 0)
        cmn_info(inst->vm.id, "stop", "guest power-off did not finish in %d ms: %s", wait_ms,
                 e2.msg);
    }
    if (inst->entry->available)
      snap_end_vmm(&t);
    else if (inst->vm.proc.pid > 0)
      cmn_proc_kill_reap(&inst->vm.proc);
  } else if (inst->vm.proc.pid > 0) {
    cmn_proc_kill_reap(&inst->vm.proc);
  }
  memset(&inst->vm.proc, 0, sizeof inst->vm.proc);
  /* The VMM is gone: from here the instance is Stopped whatever else fails. */
  cmn_fault_exit_only("agent.stop.after_vmm");
  r->view.state = AGENT_STATE_STOPPED;
  if (snap_discard_all(inst->dir, err) < 0) {
    cmn_error e2 = {0};
    mgr_set_status(r, err->msg);
    mgr_commit(m, inst, r, AGENT_OP_STOP, cmn_now_us() - t0, &e2);
    return -1;
  }
  mgr_set_status(r, NULL);
  return mgr_commit(m, inst, r, AGENT_OP_STOP, cmn_now_us() - t0, err);
}

static int mgr_do_standby(agent_manager *m, mgr_instance *inst, agent_record *r, cmn_error *err)
{
  snap_target t = mgr_target(m, inst);
  vmm_snap_kind kind = VMM_SNAP_FULL;
  int64_t t0 = cmn_now_us();
  if (snap_standby(&t, r->view.state == AGENT_STATE_RUNNING, &kind, err) < 0)
    return cmn_err_prefix(err, "standby");
  cmn_fault_exit_only("agent.standby.before_commit");
  int64_t dt = cmn_now_us() - t0;
  r->view.state = AGENT_STATE_STANDBY;
  r->view.last_snapshot_kind = kind == VMM_SNAP_DIFF ? AGENT_SNAP_DIFF : AGENT_SNAP_FULL;
  r->view.last_standby_us = dt;
  /* An idle auto-standby (manager_idle.c) says why in the status too. */
  cleanup_free char *why =
      inst->op_reason != NULL ? cmn_asprintf("auto standby: %s", inst->op_reason) : NULL;
  mgr_set_status(r, why);
  cmn_info(inst->vm.id, "standby", "standby (%s) took %lld us",
           kind == VMM_SNAP_DIFF ? "diff" : "full", (long long)dt);
  int rc = mgr_commit(m, inst, r, AGENT_OP_STANDBY, dt, err);
  pthread_mutex_lock(&m->mu);
  inst->warm_retry_us = 0; /* a new snapshot: the warm pool may try it */
  pthread_mutex_unlock(&m->mu);
  mgr_warm_wake(m); /* a new candidate for the warm pool */
  return rc;
}

static int mgr_do_restore(agent_manager *m, mgr_instance *inst, agent_record *r, cmn_error *err)
{
  snap_target t = mgr_target(m, inst);
  int64_t t0 = cmn_now_us();
  agent_host_files hf = {0};
  bool was_warm = inst->vm.warm;
  if (mgr_host_files_begin(m, inst, &hf, err) < 0) {
    mgr_warm_restored(m, inst, was_warm, false);
    return cmn_err_prefix(err, "restore");
  }
  int src = snap_restore(&t, err);
  mgr_host_files_end(inst, &hf);
  mgr_warm_restored(m, inst, was_warm, src == 0);
  if (src < 0)
    return cmn_err_prefix(err, "restore");
  mgr_vmm_place(m, inst);
  cmn_fault_exit_only("agent.restore.before_commit");
  int64_t dt = cmn_now_us() - t0;
  r->view.state = AGENT_STATE_RUNNING;
  r->view.last_restore_us = dt;
  mgr_set_status(r, NULL);
  cmn_info(inst->vm.id, "restore", "restore took %lld us", (long long)dt);
  return mgr_commit(m, inst, r, AGENT_OP_RESTORE, dt, err);
}

static int mgr_do_pause_resume(agent_manager *m, mgr_instance *inst, agent_record *r, bool pause,
                               cmn_error *err)
{
  int64_t t0 = cmn_now_us();
  int rc = pause ? vmm_call_pause(inst->entry, &inst->vm, err)
                 : vmm_call_resume(inst->entry, &inst->vm, err);
  if (rc < 0)
    return cmn_err_prefix(err, pause ? "pause" : "resume");
  r->view.state = pause ? AGENT_STATE_PAUSED : AGENT_STATE_RUNNING;
  return mgr_commit(m, inst, r, pause ? AGENT_OP_PAUSE : AGENT_OP_RESUME, cmn_now_us() - t0, err);
}

/* Runs one operation with the instance's op_lock held. */
int mgr_run_op(agent_manager *m, mgr_instance *inst, agent_op op, cmn_error *err)
{
  agent_record r = {0};
  mgr_snapshot_record(m, inst, &r);
  agent_state st = r.view.state;
  int rc = -1;

  /* A restore whose guest runs but whose snapshot-latest could not be retired
   * (snap_restore logged it): retire it now, so latest exists only in Standby. */
  if ((st == AGENT_STATE_RUNNING || st == AGENT_STATE_PAUSED) && inst->entry != NULL &&
      inst->entry->available) {
    snap_target t = mgr_target(m, inst);
    cmn_error e2 = {0};
    if (snap_retire_stale_latest(&t, &e2) < 0)
      cmn_warn(inst->rec.view.id, agent_op_name(op), "retire snapshot-latest: %s", e2.msg);
  }

  /* A warm VMM serves only a restore: any other operation ends it first. */
  if (op != AGENT_OP_RESTORE && inst->vm.warm)
    mgr_warm_drop(m, inst, agent_op_name(op));

  /* Target state already holds: OK, nothing changes. */
  if ((op == AGENT_OP_START && st == AGENT_STATE_RUNNING) ||
      (op == AGENT_OP_STOP && st == AGENT_STATE_STOPPED) ||
      (op == AGENT_OP_PAUSE && st == AGENT_STATE_PAUSED) ||
      (op == AGENT_OP_RESUME && st == AGENT_STATE_RUNNING) ||
      (op == AGENT_OP_STANDBY && st == AGENT_STATE_STANDBY) ||
      (op == AGENT_OP_RESTORE && st == AGENT_STATE_RUNNING)) {
    rc = 0;
    goto out;
  }
  /* Execs and copies in flight end with a message naming the operation. */
  if (op == AGENT_OP_STANDBY && st == AGENT_STATE_RUNNING)
    mgr_guest_stop(m, inst, "the instance is going to standby");
  else if (op == AGENT_OP_STOP && (st == AGENT_STATE_RUNNING || st == AGENT_STATE_PAUSED))
    mgr_guest_stop(m, inst, "the instance is being stopped");
  if (op == AGENT_OP_STOP) {
    rc = mgr_do_stop(m, inst, &r, err);
    goto out;
  }
  if (st == AGENT_STATE_UNKNOWN) {
    mgr_wrong_state(inst, op, st, err);
    goto out;
  }
  if (mgr_need_driver(inst, err) < 0)
    goto out;
  switch (op) {
  case AGENT_OP_START:
    if (st != AGENT_STATE_STOPPED) {
      mgr_wrong_state(inst, op, st, err);
    } else if (mgr_admit(m, inst, r.view.name, inst->entry, &r.view.spec, AGENT_ADMIT_START,
                         r.view.last_snapshot_kind, err) == 0) {
      rc = mgr_do_start(m, inst, &r, err);
      mgr_admit_done(m, &r.view.spec);
    }
    break;
  case AGENT_OP_PAUSE:
  case AGENT_OP_RESUME:
    if (mgr_need_cap(inst, VMM_CAP_PAUSE, "pause and resume", err) < 0)
      break;
    if (st != (op == AGENT_OP_PAUSE ? AGENT_STATE_RUNNING : AGENT_STATE_PAUSED))
      mgr_wrong_state(inst, op, st, err);
    else
      rc = mgr_do_pause_resume(m, inst, &r, op == AGENT_OP_PAUSE, err);
    break;
  case AGENT_OP_STANDBY:
    if (mgr_need_cap(inst, VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE, "standby", err) < 0)
      break;
    if (st != AGENT_STATE_RUNNING && st != AGENT_STATE_PAUSED)
      mgr_wrong_state(inst, op, st, err);
    else
      rc = mgr_do_standby(m, inst, &r, err);
    break;
  case AGENT_OP_RESTORE:
    if (mgr_need_cap(inst, VMM_CAP_SNAPSHOT, "restore", err) < 0)
      break;
    if (st != AGENT_STATE_STANDBY) {
      mgr_wrong_state(inst, op, st, err);
    } else if (mgr_admit(m, inst, r.view.name, inst->entry, &r.view.spec, AGENT_ADMIT_RESTORE,
                         r.view.last_snapshot_kind, err) == 0) {
      rc = mgr_do_restore(m, inst, &r, err);
      mgr_admit_done(m, &r.view.spec);
    }
    break;
  default:
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "operation %d is not a lifecycle operation", op);
    break;
  }
out:
  agent_record_free(&r);
  if (rc < 0)
    cmn_warn(inst->rec.view.id, agent_op_name(op), "%s failed: %s (%s)", agent_op_name(op),
             err->msg, cmn_code_name(err->code));
  mgr_guest_sync(m, inst, true); /* lifts the hold of a failed standby or stop */
  return rc;
}

void mgr_view_out(agent_manager *m, mgr_instance *inst, agent_instance_view *out)
{
  if (out == NULL)
    return;
  pthread_mutex_lock(&m->mu);
  agent_view_copy(out, &inst->rec.view);
  pthread_mutex_unlock(&m->mu);
}

static int mgr_op_call(agent_manager *m, const char *id_or_name, agent_op op, int stop_ms,
                       agent_instance_view *out, cmn_error *err);

int agent_manager_op(agent_manager *m, const char *id_or_name, agent_op op,
                     agent_instance_view *out, cmn_error *err)
{
  return mgr_op_call(m, id_or_name, op, -1, out, err);
}

int agent_manager_stop(agent_manager *m, const char *id_or_name, int timeout_ms,
                       agent_instance_view *out, cmn_error *err)
{
  return mgr_op_call(m, id_or_name, AGENT_OP_STOP, timeout_ms < 0 ? -1 : timeout_ms, out, err);
}

static int mgr_op_call(agent_manager *m, const char *id_or_name, agent_op op, int stop_ms,
                       agent_instance_view *out, cmn_error *err)
{
  if (op < AGENT_OP_START || op > AGENT_OP_RESTORE)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "operation %d is not a lifecycle operation", op);
  mgr_instance *inst = mgr_lookup(m, id_or_name, err);
  if (inst == NULL)
    return -1;
  pthread_mutex_lock(&inst->op_lock);
  int rc;
  pthread_mutex_lock(&m->mu);
  bool gone = inst->deleted;
  pthread_mutex_unlock(&m->mu);
  if (gone) {
    rc = cmn_err_set(err, CMN_NOT_FOUND, "instance %s not found", id_or_name);
  } else {
    inst->stop_ms = stop_ms;
    rc = mgr_run_op(m, inst, op, err);
    inst->stop_ms = -1;
  }
  pthread_mutex_unlock(&inst->op_lock);
  if (rc == 0)
    mgr_view_out(m, inst, out);
  mgr_unref(m, inst);
  return rc;
}
