/* manager_recover.c: start-up of the instance manager: loads every record,
 * re-adopts live VMMs and finishes or undoes operations a crash cut short
 * (docs/architecture.md §3–4). Runs before the monitor thread and any RPC. */
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

/* ---- re-adoption and recovery (docs/architecture.md §3–4) ------------------------------ */

/* Finds a live process whose command line names the instance folder: a VMM
 * spawned just before a crash, before its pid reached the record. */
static cmn_proc mgr_scan_vmm(const char *inst_dir)
{
  cmn_proc found = {0};
  cleanup_free char *needle = cmn_asprintf("%s/", inst_dir);
  cleanup_closedir DIR *d = opendir("/proc");
  if (d == NULL)
    return found;
  struct dirent *de;
  pid_t self = getpid();
  while ((de = readdir(d)) != NULL) {
    char *end = NULL;
    long pid = strtol(de->d_name, &end, 10);
    if (end == de->d_name || *end != '\0' || pid <= 0 || pid == self)
      continue;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    cleanup_free char *buf = NULL;
    size_t len = 0;
    if (cmn_file_read(path, 1 << 16, &buf, &len, NULL) < 0)
      continue;
    for (size_t i = 0; i + 1 < len; i++)
      if (buf[i] == '\0')
        buf[i] = ' ';
    if (strstr(buf, needle) != NULL) {
      cmn_proc p = {(pid_t)pid, cmn_proc_start_time((pid_t)pid)};
      if (cmn_proc_alive(&p))
        return p;
    }
  }
  return found;
}

static void mgr_recover_one(agent_manager *m, mgr_instance *inst)
{
  agent_record r = {0};
  mgr_snapshot_record(m, inst, &r);
  const char *id = r.view.id;
  agent_state before = r.view.state;
  bool avail = inst->entry != NULL && inst->entry->available;
  snap_target t = avail ? mgr_target(m, inst) : (snap_target){0};
  bool latest_ok = snap_latest_complete(inst->dir);
  cmn_error err = {0};

  cmn_proc p = r.proc;
  if (!cmn_proc_alive(&p))
    p = mgr_scan_vmm(inst->dir);
  inst->vm.proc = cmn_proc_alive(&p) ? p : (cmn_proc){0};
  bool alive = inst->vm.proc.pid > 0;

  if (alive && !avail) {
    r.view.state = AGENT_STATE_UNKNOWN;
    mgr_set_status(&r, "a VMM is alive but its hypervisor driver is not available");
    goto commit;
  }
  if (alive) {
    vmm_run_state rs = VMM_STATE_OTHER;
    if (vmm_call_adopt(inst->entry, &inst->vm, &rs, &err) < 0) {
      r.view.state = AGENT_STATE_UNKNOWN;
      cleanup_free char *msg =
          cmn_asprintf("cannot reach VMM pid %d: %s", (int)inst->vm.proc.pid, err.msg);
      mgr_set_status(&r, msg);
      goto commit;
    }
    if (latest_ok && rs == VMM_STATE_RUNNING) {
      /* A restore whose guest runs, interrupted before latest was retired. */
      if (snap_finish_restore(&t, &err) < 0)
        cmn_warn(id, "recover", "retire snapshot-latest: %s", err.msg);
      r.view.state = AGENT_STATE_RUNNING;
    } else if (latest_ok) {
      /* A standby that finished writing (or a restore that never resumed):
       * the snapshot is the guest; the VMM goes. */
      snap_end_vmm(&t);
      snap_discard_incomplete(inst->dir, &err); /* latest is complete: only a base goes */
      r.view.state = AGENT_STATE_STANDBY;
    } else {
      /* Any half-written standby target is discarded; the VM lives on. */
      snap_discard_incomplete(inst->dir, &err);
      if (before == AGENT_STATE_STANDBY && rs != VMM_STATE_OTHER) {
        /* A restore interrupted after its guest resumed and latest was retired
         * (into snapshot-base, or removed without base reuse): only the record
         * is old. A committed Standby never has a live VMM. */
        r.view.state = rs == VMM_STATE_RUNNING ? AGENT_STATE_RUNNING : AGENT_STATE_PAUSED;
      } else if (before == AGENT_STATE_STOPPED || before == AGENT_STATE_STANDBY ||
                 rs == VMM_STATE_OTHER) {
        /* A start or restore cut short: no committed guest runs in it. */
        snap_end_vmm(&t);
        if (before != AGENT_STATE_STANDBY)
          snap_discard_all(inst->dir, &err);
        r.view.state = AGENT_STATE_STOPPED;
        if (before == AGENT_STATE_STANDBY)
          mgr_set_status(&r, "standby snapshot incomplete after an interrupted operation");
      } else if (rs == VMM_STATE_PAUSED && before == AGENT_STATE_RUNNING) {
        /* A standby interrupted after its pause: resume. */
        if (vmm_call_resume(inst->entry, &inst->vm, &err) < 0) {
          r.view.state = AGENT_STATE_PAUSED;
          cmn_warn(id, "recover", "resume after interrupted standby: %s", err.msg);
        } else {
          r.view.state = AGENT_STATE_RUNNING;
        }
      } else {
        r.view.state = rs == VMM_STATE_RUNNING ? AGENT_STATE_RUNNING : AGENT_STATE_PAUSED;
      }
    }
  } else {
    if (avail)
      vmm_call_cleanup(inst->entry, &inst->vm);
    if (latest_ok) {
      snap_discard_base(inst->dir, &err);
      r.view.state = AGENT_STATE_STANDBY;
    } else {
      snap_discard_all(inst->dir, &err);
      if (before == AGENT_STATE_RUNNING || before == AGENT_STATE_PAUSED)
        mgr_set_status(&r, "the VMM exited while emberd was not running");
      else if (before == AGENT_STATE_STANDBY)
        mgr_set_status(&r, "standby snapshot missing or incomplete");
      r.view.state = AGENT_STATE_STOPPED;
    }
  }
commit:
  if (r.view.state != before)
    cmn_info(id, "recover", "%s -> %s", agent_state_name(before), agent_state_name(r.view.state));
  /* Rewrite the record only when recovery changed something: an unchanged
   * instance keeps its updated_at (the time of its last state change). */
  const char *old_msg = inst->rec.view.status_message;
  const char *new_msg = r.view.status_message;
  bool same_msg = (old_msg == NULL && new_msg == NULL) ||
                  (old_msg != NULL && new_msg != NULL && strcmp(old_msg, new_msg) == 0);
  bool same = r.view.state == before && same_msg && inst->vm.proc.pid == r.proc.pid &&
              inst->vm.proc.start_time == r.proc.start_time;
  if (!same && mgr_commit(m, inst, &r, r.view.state != before ? AGENT_OP_OBSERVED : AGENT_OP_NONE,
                          0, &err) < 0)
    cmn_error_log(id, "recover", "%s", err.msg);
  agent_record_free(&r);
}

int mgr_load_all(agent_manager *m, cmn_error *err)
{
  cleanup_closedir DIR *d = opendir(m->instances_dir);
  if (d == NULL)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "open %s", m->instances_dir);
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') {
      /* A delete, or a clone being assembled (manager_fork.c), cut short. */
      if (strncmp(de->d_name, ".deleting-", 10) == 0 || strncmp(de->d_name, ".fork-", 6) == 0) {
        cleanup_free char *p = cmn_asprintf("%s/%s", m->instances_dir, de->d_name);
        cmn_error e2 = {0};
        cmn_rm_rf(p, &e2);
      }
      continue;
    }
    cleanup_free char *dir = cmn_asprintf("%s/%s", m->instances_dir, de->d_name);
    if (!cmn_is_dir(dir))
      continue;
    agent_record rec = {0};
    cmn_error e2 = {0};
    if (agent_record_load(dir, &rec, &e2) < 0) {
      cmn_error_log(de->d_name, "load", "skipping instance folder: %s", e2.msg);
      continue;
    }
    if (strcmp(rec.view.id, de->d_name) != 0 || agent_validate_id("id", rec.view.id, &e2) < 0) {
      cmn_error_log(de->d_name, "load", "skipping instance folder: id mismatch");
      agent_record_free(&rec);
      continue;
    }
    mgr_instance *inst = mgr_instance_new(&rec, dir, vmm_registry_get(m->reg, rec.view.hypervisor));
    if (agent_image_pin(m->images, rec.view.id, &rec.view.image, &e2) < 0)
      cmn_warn(rec.view.id, "load", "image %s: %s", rec.view.image.ref, e2.msg);
    if (agent_net_claim(m->net, rec.view.id, &rec.view.net, &e2) < 0)
      cmn_warn(rec.view.id, "load", "network %s: %s", rec.view.net.network, e2.msg);
    agent_record_free(&rec);
    pthread_mutex_lock(&m->mu);
    mgr_insert_locked(m, inst);
    pthread_mutex_unlock(&m->mu);
  }
  /* Host networking matches the records before any VMM is restarted (a VMM
   * found alive keeps its TAP: it is not an orphan). A failure is logged:
   * every spawn ensures its instance's objects again. */
  {
    int made = 0, removed = 0;
    cmn_error e2 = {0};
    if (agent_net_reconcile(m->net, &made, &removed, &e2) < 0)
      cmn_warn(NULL, "network", "reconcile at start-up: %s", e2.msg);
    else if (made > 0 || removed > 0)
      cmn_info(NULL, "network", "reconciled host networking: %d objects made, %d removed", made,
               removed);
  }
  for (size_t i = 0; i < m->n_insts; i++) {
    snap_collect_garbage(m->insts[i]->dir);
    mgr_recover_one(m, m->insts[i]);
  }
  /* The snapshot of a fork whose clones are all gone (or were never made). */
  mgr_fork_collect_all(m);
  return 0;
}
