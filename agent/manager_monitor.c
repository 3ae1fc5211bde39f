/* manager_monitor.c: the VMM monitor thread of the instance manager: notices a
 * VMM that ended on its own (Stopped, with the exit status), saves records a
 * commit could not save, collects retired snapshot folders, and runs idle
 * auto-standby (manager_idle.c). */
#include "agent/console.h"
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

/* ---- VMM monitor --------------------------------------------------------------- */

/* Saves a committed record that mgr_commit could not save (caller holds
 * op_lock); clears the warning once it is on disk. */
static void mgr_repair_record(agent_manager *m, mgr_instance *inst)
{
  pthread_mutex_lock(&m->mu);
  bool gone = inst->deleted;
  pthread_mutex_unlock(&m->mu);
  if (!inst->record_dirty || gone)
    return;
  agent_record r = {0};
  mgr_snapshot_record(m, inst, &r);
  const char *msg = r.view.status_message;
  if (msg != NULL && strncmp(msg, MANAGER_UNSAVED, strlen(MANAGER_UNSAVED)) == 0)
    mgr_set_status(&r, NULL);
  cmn_error err = {0};
  mgr_commit(m, inst, &r, AGENT_OP_NONE, 0, &err);
  if (!inst->record_dirty)
    cmn_info(r.view.id, "record", "record saved");
  agent_record_free(&r);
}

static void mgr_check_exit(agent_manager *m, mgr_instance *inst)
{
  if (pthread_mutex_trylock(&inst->op_lock) != 0)
    return; /* an operation owns it and will see the exit itself */
  mgr_repair_record(m, inst);
  snap_collect_garbage(inst->dir);
  pthread_mutex_lock(&m->mu);
  bool live_state = !inst->deleted && (inst->rec.view.state == AGENT_STATE_RUNNING ||
                                       inst->rec.view.state == AGENT_STATE_PAUSED);
  pthread_mutex_unlock(&m->mu);
  int status = 0;
  /* A VMM that has ended is reaped before the instance forgets it; one that is
   * still exiting (not yet waitable) is looked at again on the next tick. */
  if (live_state && inst->vm.proc.pid > 0 && !cmn_proc_alive(&inst->vm.proc) &&
      cmn_proc_wait(&inst->vm.proc, MANAGER_MONITOR_MS, &status) == 0) {
    agent_record r = {0};
    mgr_snapshot_record(m, inst, &r);
    cleanup_free char *msg = WIFSIGNALED(status)
                                 ? cmn_asprintf("the VMM (pid %d) was killed by signal %d",
                                                (int)inst->vm.proc.pid, WTERMSIG(status))
                                 : cmn_asprintf("the VMM (pid %d) exited with status %d",
                                                (int)inst->vm.proc.pid, WEXITSTATUS(status));
    cmn_warn(r.view.id, "observed", "%s", msg);
    memset(&inst->vm.proc, 0, sizeof inst->vm.proc);
    if (inst->entry != NULL && inst->entry->available) {
      snap_target t = mgr_target(m, inst);
      snap_end_vmm(&t);
    }
    cmn_error err = {0};
    snap_discard_all(inst->dir, &err);
    r.view.state = AGENT_STATE_STOPPED;
    mgr_set_status(&r, msg);
    if (mgr_commit(m, inst, &r, AGENT_OP_OBSERVED, 0, &err) < 0)
      cmn_error_log(r.view.id, "observed", "%s", err.msg);
    agent_record_free(&r);
  }
  pthread_mutex_unlock(&inst->op_lock);
}

/* Rotates the console of a live instance (console.h) when it outgrew
 * console_max_bytes. No lock held; the file is only appended by the VMM. */
static void mgr_console_rotate(agent_manager *m, mgr_instance *inst)
{
  pthread_mutex_lock(&m->mu);
  bool live = !inst->deleted && (inst->rec.view.state == AGENT_STATE_RUNNING ||
                                 inst->rec.view.state == AGENT_STATE_PAUSED);
  cleanup_free char *path =
      live && inst->rec.view.console_log_path ? cmn_strdup(inst->rec.view.console_log_path) : NULL;
  cleanup_free char *id = path != NULL ? cmn_strdup(inst->rec.view.id) : NULL;
  pthread_mutex_unlock(&m->mu);
  if (path == NULL || inst->console_nopunch)
    return;
  cmn_error err = {0};
  int64_t start = 0;
  int rc = agent_console_rotate(path, m->console_max_bytes, &start, &err);
  if (rc == 1)
    cmn_debug(id, "console", "rotated: bytes before %lld punched out", (long long)start);
  if (rc < 0) {
    inst->console_nopunch = true; /* said once; the file keeps growing */
    cmn_warn(id, "console", "%s", err.msg);
  }
}

void *mgr_monitor_main(void *arg)
{
  agent_manager *m = arg;
  /* Consoles are looked at every MANAGER_CONSOLE_TICKS-th tick (~1 s). */
  enum { MANAGER_CONSOLE_TICKS = 1000 / MANAGER_MONITOR_MS };
  unsigned tick = 0;
  for (;;) {
    pthread_mutex_lock(&m->stop_mu);
    if (!m->stopping) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += MANAGER_MONITOR_MS * 1000000L;
      ts.tv_sec += ts.tv_nsec / 1000000000L;
      ts.tv_nsec %= 1000000000L;
      pthread_cond_timedwait(&m->stop_cv, &m->stop_mu, &ts);
    }
    bool stop = m->stopping;
    pthread_mutex_unlock(&m->stop_mu);
    if (stop)
      return NULL;
    pthread_mutex_lock(&m->mu);
    size_t n = m->n_insts;
    mgr_instance **list = cmn_calloc(n, sizeof *list);
    for (size_t i = 0; i < n; i++) {
      list[i] = m->insts[i];
      list[i]->refs++;
    }
    pthread_mutex_unlock(&m->mu);
    bool consoles = ++tick % MANAGER_CONSOLE_TICKS == 0;
    /* Idle auto-standby samples every MANAGER_IDLE_TICKS-th tick (~1 s). */
    enum { MANAGER_IDLE_TICKS = AGENT_IDLE_SAMPLE_US / (MANAGER_MONITOR_MS * 1000) };
    bool idle_sample = tick % MANAGER_IDLE_TICKS == 0;
    for (size_t i = 0; i < n; i++) {
      mgr_check_exit(m, list[i]);
      if (consoles)
        mgr_console_rotate(m, list[i]);
      mgr_guest_sync(m, list[i], false);
      mgr_idle_tick(m, list[i], idle_sample);
      mgr_unref(m, list[i]);
    }
    free(list);
  }
}
