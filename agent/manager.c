/* manager.c: the instance manager (see manager.h and docs/architecture.md §3):
 * the instance table, lookup, events, commits, admission, create/get/list/
 * delete, and manager create/free. The operations are in manager_ops.c,
 * start-up recovery in manager_recover.c, the VMM monitor in
 * manager_monitor.c; their shared types in manager_internal.h.
 *
 * Locking: m->mu guards the instance table, every instance's committed record
 * and the names of creates in progress; it is held only for short copies and
 * commits, never across I/O or a VMM call (so that no call waits behind
 * another instance's slow operation or a slow disk). Each
 * instance has an op_lock held for a whole lifecycle operation, which alone
 * touches inst->vm (the VMM process and driver connection). Lock order:
 * op_lock before mu. Events are delivered under m->subs_mu after mu is
 * released. */
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

const char *agent_state_name(agent_state s)
{
  static const char *const names[] = {"Unspecified", "Stopped", "Running",
                                      "Paused",      "Standby", "Unknown"};
  return (size_t)s < sizeof names / sizeof names[0] ? names[s] : "Invalid";
}

const char *agent_op_name(agent_op op)
{
  static const char *const names[] = {"none",   "create",  "start",   "stop",   "pause",
                                      "resume", "standby", "restore", "delete", "observed"};
  return (size_t)op < sizeof names / sizeof names[0] ? names[op] : "invalid";
}

const vmm_registry *agent_manager_registry(const agent_manager *m) { return m->reg; }

struct agent_net *agent_manager_net(agent_manager *m) { return m->net; }

/* The boot config's network settings of an image instance on a network. */
static int mgr_net_guest(agent_manager *m, const agent_instance_view *v, agent_net_guest *out,
                         cmn_error *err)
{
  memset(out, 0, sizeof *out);
  if (!agent_net_spec_set(&v->net))
    return 0;
  return agent_net_guest_config(m->net, &v->net, out, err);
}

void agent_instance_views_free(agent_instance_view *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    agent_instance_view_free(&v[i]);
  free(v);
}

/* ---- instance objects ---------------------------------------------------- */

static void mgr_vm_bind(mgr_instance *inst)
{
  /* vm points into the record's immutable strings (id, spec, paths). */
  cmn_proc proc = inst->vm.proc;
  void *priv = inst->vm.priv;
  inst->vm.id = inst->rec.view.id;
  inst->vm.dir = inst->dir;
  inst->vm.console_path = inst->rec.view.console_log_path;
  inst->vm.spec = &inst->rec.view.spec;
  inst->vm.proc = proc;
  inst->vm.priv = priv;
}

mgr_instance *mgr_instance_new(const agent_record *rec, const char *dir, const vmm_entry *entry)
{
  mgr_instance *inst = cmn_calloc(1, sizeof *inst);
  pthread_mutex_init(&inst->op_lock, NULL);
  pthread_mutex_init(&inst->guest_mu, NULL);
  agent_record_copy(&inst->rec, rec);
  /* Live figures are not inherited (a clone's record comes from its source). */
  memset(&inst->rec.view.idle, 0, sizeof inst->rec.view.idle);
  inst->dir = cmn_strdup(dir);
  inst->entry = entry;
  inst->stop_ms = -1;
  inst->vm.vmm_log_path = cmn_asprintf("%s/vmm.log", dir);
  inst->vm.proc = rec->proc;
  mgr_vm_bind(inst);
  return inst;
}

static void mgr_instance_free(mgr_instance *inst)
{
  if (inst == NULL)
    return;
  vmm_call_release(inst->entry, &inst->vm);
  agent_record_free(&inst->rec);
  free((char *)inst->vm.vmm_log_path);
  free(inst->netns_path);
  free(inst->dir);
  pthread_mutex_destroy(&inst->op_lock);
  pthread_mutex_destroy(&inst->guest_mu);
  free(inst);
}

/* Drops a reference; a deleted instance is freed by the last one, after mu is
 * released (freeing calls the driver's release). */
void mgr_unref(agent_manager *m, mgr_instance *inst)
{
  pthread_mutex_lock(&m->mu);
  bool last = --inst->refs == 0 && inst->deleted;
  pthread_mutex_unlock(&m->mu);
  if (last)
    mgr_instance_free(inst);
}

/* A string of the id form matches ids only, any other string names only:
 * names and ids are disjoint (validate.h), so no string matches two instances. */
static mgr_instance *mgr_find_locked(agent_manager *m, const char *id_or_name)
{
  bool by_id = agent_is_id_form(id_or_name);
  for (size_t i = 0; i < m->n_insts; i++) {
    mgr_instance *inst = m->insts[i];
    if (strcmp(by_id ? inst->rec.view.id : inst->rec.view.name, id_or_name) == 0)
      return inst;
  }
  return NULL;
}

/* Finds and references an instance; NOT_FOUND or INVALID_ARGUMENT otherwise. */
mgr_instance *mgr_lookup(agent_manager *m, const char *id_or_name, cmn_error *err)
{
  if (agent_validate_id_or_name("id", id_or_name, err) < 0)
    return NULL;
  pthread_mutex_lock(&m->mu);
  mgr_instance *inst = mgr_find_locked(m, id_or_name);
  if (inst != NULL)
    inst->refs++;
  pthread_mutex_unlock(&m->mu);
  if (inst == NULL)
    cmn_err_set(err, CMN_NOT_FOUND, "instance %s not found", id_or_name);
  return inst;
}

void mgr_insert_locked(agent_manager *m, mgr_instance *inst)
{
  if (m->n_insts == m->cap_insts) {
    m->cap_insts = m->cap_insts ? m->cap_insts * 2 : 16;
    m->insts = cmn_realloc(m->insts, m->cap_insts * sizeof *m->insts);
  }
  m->insts[m->n_insts++] = inst;
  inst->refs++; /* the table's reference */
}

static void mgr_remove_locked(agent_manager *m, mgr_instance *inst)
{
  for (size_t i = 0; i < m->n_insts; i++) {
    if (m->insts[i] == inst) {
      memmove(&m->insts[i], &m->insts[i + 1], (m->n_insts - i - 1) * sizeof *m->insts);
      m->n_insts--;
      inst->deleted = true;
      inst->refs--; /* the table's; the caller still holds one (mgr_unref frees) */
      return;
    }
  }
}

/* ---- events -------------------------------------------------------------- */

static void mgr_emit_why(agent_manager *m, const agent_instance_view *v, agent_state old_state,
                         agent_op op, int64_t duration_us, const char *reason)
{
  agent_event ev = {
      .instance = v,
      .old_state = old_state,
      .new_state = v->state,
      .op = op,
      .duration_us = duration_us,
      .timestamp_us = cmn_wall_us(),
      .reason = reason,
  };
  pthread_mutex_lock(&m->subs_mu);
  for (size_t i = 0; i < m->n_subs; i++)
    m->subs[i].fn(m->subs[i].ctx, &ev);
  pthread_mutex_unlock(&m->subs_mu);
}

void mgr_emit(agent_manager *m, const agent_instance_view *v, agent_state old_state, agent_op op,
              int64_t duration_us)
{
  mgr_emit_why(m, v, old_state, op, duration_us, NULL);
}

void mgr_emit_observed(agent_manager *m, const agent_instance_view *v)
{
  mgr_emit(m, v, v->state, AGENT_OP_OBSERVED, 0);
}

int agent_manager_subscribe(agent_manager *m, agent_event_fn fn, void *ctx)
{
  pthread_mutex_lock(&m->subs_mu);
  m->subs = cmn_realloc(m->subs, (m->n_subs + 1) * sizeof *m->subs);
  int h = ++m->next_sub;
  m->subs[m->n_subs++] = (mgr_sub){h, fn, ctx};
  pthread_mutex_unlock(&m->subs_mu);
  return h;
}

void agent_manager_unsubscribe(agent_manager *m, int handle)
{
  pthread_mutex_lock(&m->subs_mu);
  for (size_t i = 0; i < m->n_subs; i++) {
    if (m->subs[i].handle == handle) {
      memmove(&m->subs[i], &m->subs[i + 1], (m->n_subs - i - 1) * sizeof *m->subs);
      m->n_subs--;
      break;
    }
  }
  pthread_mutex_unlock(&m->subs_mu);
}

/* ---- commits --------------------------------------------------------------- */

void mgr_set_status(agent_record *r, const char *msg)
{
  char *copy = cmn_strdup(msg);
  free(r->view.status_message);
  r->view.status_message = copy;
}

/* Persists a new committed record for inst (caller holds op_lock), then makes
 * it visible and emits an event when the state changed or op is set.
 *
 * The change has happened (a VMM started or ended, a snapshot was written), so
 * it is committed and reported even when the record cannot be saved: the
 * operation succeeds, status_message says the record is not saved yet, and
 * the monitor saves it again on every tick until the disk takes it
 * (mgr_repair_record). A restart before that derives the state from the VMM
 * and the snapshot folders (recovery). Always returns 0; err is untouched. */
int mgr_commit(agent_manager *m, mgr_instance *inst, agent_record *next, agent_op op,
               int64_t duration_us, cmn_error *err)
{
  (void)err;
  /* updated_at is the time of the last state change: a commit that changes
   * neither state nor operation (a record repair) keeps it. inst->rec is
   * stable here: only op_lock holders write it. */
  if (op != AGENT_OP_NONE || next->view.state != inst->rec.view.state)
    next->view.updated_at_us = cmn_wall_us();
  next->proc = inst->vm.proc;
  next->view.vmm_pid = inst->vm.proc.pid;
  next->view.has_snapshot = next->view.state == AGENT_STATE_STANDBY;
  cmn_error serr = {0};
  if (cmn_fault("agent.commit.save", &serr) < 0 || agent_record_save(inst->dir, next, &serr) < 0) {
    cmn_err_prefix(&serr, "persist instance record");
    cmn_error_log(next->view.id, agent_op_name(op), "%s", serr.msg);
    /* Another warning (e.g. a stop whose snapshots could not be removed)
     * stays in front of this one. */
    const char *prev = next->view.status_message;
    bool keep = prev != NULL && prev[0] != '\0' &&
                strncmp(prev, MANAGER_UNSAVED, strlen(MANAGER_UNSAVED)) != 0;
    cleanup_free char *msg =
        keep ? cmn_asprintf("%s; " MANAGER_UNSAVED " (%s); emberd retries", prev, serr.msg)
             : cmn_asprintf(MANAGER_UNSAVED " (%s); emberd retries", serr.msg);
    mgr_set_status(next, msg);
    inst->record_dirty = true;
  } else {
    inst->record_dirty = false;
  }
  int rc = 0;
  pthread_mutex_lock(&m->mu);
  agent_state old = inst->rec.view.state;
  /* The guest agent's status is live (manager_guest.c), not part of next. */
  agent_guest_status live = inst->rec.view.guest_agent;
  agent_idle_status live_idle = inst->rec.view.idle; /* manager_idle.c's, live too */
  memset(&inst->rec.view.guest_agent, 0, sizeof live);
  agent_record_free(&inst->rec);
  agent_record_copy(&inst->rec, next);
  agent_guest_status_free(&inst->rec.view.guest_agent);
  inst->rec.view.guest_agent = live;
  inst->rec.view.idle = live_idle;
  mgr_vm_bind(inst);
  agent_instance_view copy;
  agent_view_copy(&copy, &inst->rec.view);
  pthread_mutex_unlock(&m->mu);
  if (old != copy.state || op != AGENT_OP_NONE)
    mgr_emit_why(m, &copy, old, op, duration_us, inst->op_reason);
  agent_instance_view_free(&copy);
  mgr_guest_sync(m, inst, true);
  return rc;
}

/* Copies the committed record (caller holds op_lock, so it cannot change). */
void mgr_snapshot_record(agent_manager *m, mgr_instance *inst, agent_record *out)
{
  pthread_mutex_lock(&m->mu);
  agent_record_copy(out, &inst->rec);
  pthread_mutex_unlock(&m->mu);
}

snap_target mgr_target(agent_manager *m, mgr_instance *inst)
{
  return (snap_target){
      .entry = inst->entry,
      .caps = inst->entry->caps,
      .vm = &inst->vm,
      .inst_dir = inst->dir,
      .shutdown_timeout_ms = m->stop_timeout_ms,
  };
}

/* ---- admission (admission.h) ------------------------------------------------ */

static int mgr_host_probe_real(void *ctx, const char *data_dir, agent_host_figures *out,
                               cmn_error *err)
{
  (void)ctx;
  return agent_host_probe(data_dir, out, err);
}

/* New space in the data dir the operation writes: the guest's RAM file, for
 * drivers that keep RAM in one (reserved in full before the guest runs). A
 * restore of a diff snapshot maps the RAM file already there. */
static uint64_t mgr_disk_need_mib(const vmm_entry *entry, const vmm_spec *spec,
                                  agent_admit_point point, agent_snap_kind last)
{
  unsigned live = VMM_CAP_BASE_REUSE | VMM_CAP_LIVE_RAM_FILE;
  if (entry == NULL || (entry->caps & live) != live)
    return 0;
  if (point == AGENT_ADMIT_RESTORE && last == AGENT_SNAP_DIFF)
    return 0;
  return spec->memory_mib;
}

/* Admits spec at point (inst: the instance itself, never counted; NULL at
 * create). On success for START and RESTORE the request is held in
 * m->admitting until mgr_admit_done, so two concurrent starts cannot both
 * take the last room. */
int mgr_admit(agent_manager *m, mgr_instance *inst, const char *name, const vmm_entry *entry,
              const vmm_spec *spec, agent_admit_point point, agent_snap_kind last, cmn_error *err)
{
  agent_host_figures host;
  if (m->host_probe(m->host_probe_ctx, m->data_dir, &host, err) < 0)
    return cmn_err_prefix(err, "admission: host figures");
  agent_admit_request req = {
      .point = point,
      .name = name,
      .memory_mib = spec->memory_mib,
      .vcpus = spec->vcpus,
      .disk_mib = mgr_disk_need_mib(entry, spec, point, last),
  };
  pthread_mutex_lock(&m->mu);
  agent_usage used = m->admitting;
  for (size_t i = 0; i < m->n_insts; i++) {
    const mgr_instance *o = m->insts[i];
    if (o == inst ||
        (o->rec.view.state != AGENT_STATE_RUNNING && o->rec.view.state != AGENT_STATE_PAUSED))
      continue;
    used.mem_mib += o->rec.view.spec.memory_mib;
    used.vcpus += o->rec.view.spec.vcpus;
  }
  int rc = agent_admit(&m->admission, &host, &used, &req, err);
  if (rc == 0 && point != AGENT_ADMIT_CREATE) {
    m->admitting.mem_mib += req.memory_mib;
    m->admitting.vcpus += req.vcpus;
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

void mgr_admit_done(agent_manager *m, const vmm_spec *spec)
{
  pthread_mutex_lock(&m->mu);
  m->admitting.mem_mib -= spec->memory_mib;
  m->admitting.vcpus -= spec->vcpus;
  pthread_mutex_unlock(&m->mu);
}

/* ---- create, get, list, delete --------------------------------------------- */

char *mgr_new_id(void)
{
  unsigned char b[8];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
    abort();
  return cmn_asprintf(AGENT_ID_PREFIX "%02x%02x%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
                      b[4], b[5], b[6], b[7]);
}

static mgr_instance *mgr_find_request_locked(agent_manager *m, const agent_create_req *req,
                                             cmn_error *err, bool *differs);

/* Reserves req's name for a create in progress: ALREADY_EXISTS when an
 * instance or another create has it, RESOURCE_EXHAUSTED when the host is
 * full. A create with a request_id whose name another create is writing waits
 * for it, then answers as a retry would: returns 1 with *same (referenced)
 * when that create made the instance this request asks for. */
int mgr_reserve_name(agent_manager *m, const agent_create_req *req, mgr_instance **same,
                     cmn_error *err)
{
  const char *name = req->name;
  int rc = -1;
  *same = NULL;
  pthread_mutex_lock(&m->mu);
again:;
  bool differs = false;
  mgr_instance *prev = mgr_find_request_locked(m, req, err, &differs);
  if (prev != NULL) {
    prev->refs++;
    *same = prev;
    rc = 1;
    goto out;
  }
  if (differs)
    goto out;
  for (size_t i = 0; i < m->n_insts; i++) {
    if (strcmp(m->insts[i]->rec.view.name, name) == 0) {
      cmn_err_set(err, CMN_ALREADY_EXISTS, "an instance named %s already exists (%s)", name,
                  m->insts[i]->rec.view.id);
      goto out;
    }
  }
  for (size_t i = 0; i < m->n_creating; i++) {
    if (strcmp(m->creating[i], name) == 0) {
      if (req->request_id != NULL && req->request_id[0] != '\0') {
        /* Perhaps the first try of this very request: wait for its outcome. */
        pthread_cond_wait(&m->created_cv, &m->mu);
        goto again;
      }
      cmn_err_set(err, CMN_ALREADY_EXISTS, "an instance named %s is being created", name);
      goto out;
    }
  }
  if (m->n_insts + m->n_creating >= (size_t)m->max_instances) {
    cmn_err_set(err, CMN_RESOURCE_EXHAUSTED, "this host already has %zu instances (limit %d)",
                m->n_insts + m->n_creating, m->max_instances);
    goto out;
  }
  m->creating = cmn_realloc(m->creating, (m->n_creating + 1) * sizeof *m->creating);
  m->creating[m->n_creating++] = cmn_strdup(name);
  rc = 0;
out:
  pthread_mutex_unlock(&m->mu);
  return rc;
}

void mgr_release_name_locked(agent_manager *m, const char *name)
{
  for (size_t i = 0; i < m->n_creating; i++) {
    if (strcmp(m->creating[i], name) == 0) {
      free(m->creating[i]);
      memmove(&m->creating[i], &m->creating[i + 1], (m->n_creating - i - 1) * sizeof *m->creating);
      m->n_creating--;
      pthread_cond_broadcast(&m->created_cv);
      return;
    }
  }
}

int agent_manager_create_instance(agent_manager *m, const char *name, const char *hypervisor,
                                  const vmm_spec *spec, bool start, agent_instance_view *out,
                                  cmn_error *err)
{
  agent_create_req req = {.name = name, .hypervisor = hypervisor, .spec = spec, .start = start};
  return agent_manager_create_req(m, &req, out, err);
}

/* The instance created by an earlier request with req's request_id, or NULL
 * (then err is untouched). m->mu held. Fails when the earlier request differs. */
static mgr_instance *mgr_find_request_locked(agent_manager *m, const agent_create_req *req,
                                             cmn_error *err, bool *differs)
{
  *differs = false;
  if (req->request_id == NULL || req->request_id[0] == '\0')
    return NULL;
  for (size_t i = 0; i < m->n_insts; i++) {
    const agent_instance_view *v = &m->insts[i]->rec.view;
    if (m->insts[i]->deleted || v->request_id == NULL ||
        strcmp(v->request_id, req->request_id) != 0)
      continue;
    if (!agent_view_matches_create(v, req)) {
      *differs = true;
      cmn_err_set(err, CMN_INVALID_ARGUMENT,
                  "request_id %s was used by another CreateInstance request (instance %s, "
                  "name %s): a retry must repeat the request unchanged",
                  req->request_id, v->id, v->name);
      cmn_err_field(err, "request_id");
      return NULL;
    }
    return m->insts[i];
  }
  return NULL;
}

static int mgr_create_req(agent_manager *m, const agent_create_req *req, agent_instance_view *out,
                          cmn_error *err);

/* A retry of an image create (req's request_id names an image instance):
 * fills *out with req's spec completed from that instance's record the way
 * the boot kit completed the first request's, and returns true. The retry is
 * then answered without the kit, which may have moved since, and whose
 * command line names the host's TSC rate, which drifts between two reads. */
static bool mgr_retry_spec(agent_manager *m, const agent_create_req *req, vmm_spec *out)
{
  if (req->request_id == NULL || req->request_id[0] == '\0' || !agent_image_spec_set(req->image))
    return false;
  bool found = false;
  pthread_mutex_lock(&m->mu);
  for (size_t i = 0; i < m->n_insts && !found; i++) {
    const agent_instance_view *v = &m->insts[i]->rec.view;
    if (m->insts[i]->deleted || v->request_id == NULL ||
        strcmp(v->request_id, req->request_id) != 0 || !agent_image_spec_set(&v->image))
      continue;
    found = true;
    vmm_spec_copy(out, req->spec);
    const vmm_spec *first = &v->spec;
    if (req->spec->kernel == NULL || req->spec->kernel[0] == '\0') {
      free(out->kernel);
      out->kernel = cmn_strdup(first->kernel);
      if (req->spec->initrd == NULL || req->spec->initrd[0] == '\0') {
        free(out->initrd);
        out->initrd = cmn_strdup(first->initrd);
      }
    }
    if (req->spec->cmdline == NULL || req->spec->cmdline[0] == '\0') {
      free(out->cmdline);
      out->cmdline = cmn_strdup(first->cmdline);
    }
  }
  pthread_mutex_unlock(&m->mu);
  return found;
}

int agent_manager_create_req(agent_manager *m, const agent_create_req *req,
                             agent_instance_view *out, cmn_error *err)
{
  /* An image instance: the boot kit fills what its spec leaves out. */
  vmm_spec kit_spec;
  agent_create_req req_kit = *req;
  /* Idle auto-standby with its defaults filled in, as the record keeps it
   * (so that a retry compares equal). */
  agent_auto_standby idle = {0};
  if (req->auto_standby != NULL && agent_auto_standby_normalize(req->auto_standby, &idle, err) < 0)
    return -1;
  req_kit.auto_standby = &idle;
  if (mgr_retry_spec(m, req, &kit_spec)) {
    req_kit.spec = &kit_spec;
  } else {
    if (agent_image_spec_fill(req->image, req->spec, m->boot_kit_dir, &kit_spec, err) < 0)
      return -1;
    if (agent_image_spec_set(req->image))
      req_kit.spec = &kit_spec;
  }
  int ret = mgr_create_req(m, &req_kit, out, err);
  vmm_spec_free(&kit_spec);
  return ret;
}

static int mgr_create_req(agent_manager *m, const agent_create_req *req, agent_instance_view *out,
                          cmn_error *err)
{
  const char *name = req->name, *hypervisor = req->hypervisor;
  const vmm_spec *spec = req->spec;
  bool start = req->start;
  if (req->request_id != NULL && req->request_id[0] != '\0' &&
      agent_request_id_validate(req->request_id, err) < 0)
    return -1;
  /* A retry: answer with what the first request made, before anything else
   * (its spec was valid then; a file may have moved since). */
  pthread_mutex_lock(&m->mu);
  bool differs;
  mgr_instance *prev = mgr_find_request_locked(m, req, err, &differs);
  if (prev != NULL) {
    if (out != NULL)
      agent_view_copy(out, &prev->rec.view);
    cmn_info(prev->rec.view.id, "create", "request_id %s repeated: returning %s", req->request_id,
             prev->rec.view.name);
  }
  pthread_mutex_unlock(&m->mu);
  if (prev != NULL)
    return 0;
  if (differs)
    return -1;
  if (agent_validate_name("name", name, err) < 0)
    return cmn_err_field(err, "name");
  if (agent_labels_validate(req->labels, req->n_labels, err) < 0)
    return -1;
  if (hypervisor == NULL || hypervisor[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "spec.hypervisor is required (for example \"qemu\")");
  const vmm_entry *entry = vmm_registry_get(m->reg, hypervisor);
  if (entry == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "spec.hypervisor: unknown hypervisor '%.64s'",
                       hypervisor);
  if (agent_validate_spec(spec, m->fence, err) < 0)
    return -1;
  if (req->auto_standby != NULL && req->auto_standby->idle_seconds > 0 &&
      vmm_call_need_caps(entry, hypervisor, VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE, "idle auto-standby",
                         err) < 0)
    return cmn_err_field(err, "spec.auto_standby");
  /* Refused here rather than at the first operation: a scheduler learns at
   * once that this host cannot run the type (the detail names the missing
   * binary or the reason). Records created before the driver went missing
   * still load and answer Start/Restore with the same FAILED_PRECONDITION. */
  if (!entry->available)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                       "spec.hypervisor: %s is not available on this host: %s", hypervisor,
                       entry->detail ? entry->detail : "unknown reason");
  if (mgr_admit(m, NULL, name, entry, spec, AGENT_ADMIT_CREATE, AGENT_SNAP_FULL, err) < 0)
    return -1;

  cleanup_free char *id = mgr_new_id();
  cleanup_free char *dir = cmn_asprintf("%s/%s", m->instances_dir, id);
  agent_record rec = {0};
  rec.view.id = cmn_strdup(id);
  rec.view.name = cmn_strdup(name);
  rec.view.hypervisor = cmn_strdup(hypervisor);
  vmm_spec_copy(&rec.view.spec, spec);
  rec.view.state = AGENT_STATE_STOPPED;
  rec.view.console_log_path = cmn_asprintf("%s/console.log", dir);
  rec.view.created_at_us = rec.view.updated_at_us = cmn_wall_us();
  agent_labels_copy_sorted(&rec.view.labels, &rec.view.n_labels, req->labels, req->n_labels);
  if (req->request_id != NULL && req->request_id[0] != '\0')
    rec.view.request_id = cmn_strdup(req->request_id);
  agent_image_spec_copy(&rec.view.image, req->image);
  agent_net_spec_copy(&rec.view.net, req->net);
  if (req->auto_standby != NULL)
    rec.view.auto_standby = *req->auto_standby;
  if (agent_net_spec_set(&rec.view.net) && agent_net_alloc(m->net, id, &rec.view.net, err) < 0) {
    agent_record_free(&rec);
    return -1;
  }

  /* Name check and admission under mu, with the name reserved; the folder and
   * its durable record are written outside mu (fsyncs can take seconds on a
   * busy disk, and mu must never wait for I/O: every Get and List takes it). */
  mgr_instance *same = NULL;
  int reserved = mgr_reserve_name(m, req, &same, err);
  if (reserved != 0) {
    agent_net_release(m->net, id);
    agent_record_free(&rec);
    if (same != NULL) {
      mgr_view_out(m, same, out);
      mgr_unref(m, same);
    }
    return reserved < 0 ? -1 : 0;
  }
  int rc = -1;
  mgr_instance *inst = NULL;
  agent_net_guest guest;
  const agent_net_guest *guest_p = agent_net_spec_set(&rec.view.net) ? &guest : NULL;
  if (mkdir(dir, 0750) < 0) {
    cmn_err_errno(err, CMN_INTERNAL, errno, "create %s", dir);
  } else if (mgr_net_guest(m, &rec.view, &guest, err) < 0 ||
             agent_image_prepare(m->images, m->data_dir, dir, id, name, &rec.view.image, guest_p,
                                 err) < 0) {
    cmn_error e2 = {0};
    cmn_rm_rf(dir, &e2);
  } else if ((agent_net_spec_set(&rec.view.net) && agent_net_ensure(m->net, id, err) < 0) ||
             cmn_fault("agent.create.after_net", err) < 0 ||
             agent_record_save(dir, &rec, err) < 0 || cmn_fsync_parent(dir, err) < 0) {
    /* The host objects go with the allocation; a crash before this point
     * leaves orphans that the next start-up's reconcile removes. */
    cmn_error e2 = {0};
    agent_net_remove(m->net, id, &e2);
    agent_image_unpin(m->images, id, &rec.view.image);
    cmn_rm_rf(dir, &e2);
  } else {
    inst = mgr_instance_new(&rec, dir, entry);
    rc = 0;
  }
  pthread_mutex_lock(&m->mu);
  mgr_release_name_locked(m, name);
  if (inst != NULL) {
    mgr_insert_locked(m, inst);
    inst->refs++; /* ours, until the end of this function */
  }
  pthread_mutex_unlock(&m->mu);
  agent_record_free(&rec);
  if (rc < 0) {
    agent_net_release(m->net, id);
    return -1;
  }
  cmn_info(id, "create", "created %s (%s)", name, hypervisor);
  {
    agent_instance_view v;
    mgr_view_out(m, inst, &v);
    mgr_emit(m, &v, AGENT_STATE_UNSPECIFIED, AGENT_OP_CREATE, 0);
    agent_instance_view_free(&v);
  }
  if (start) {
    pthread_mutex_lock(&inst->op_lock);
    rc = mgr_run_op(m, inst, AGENT_OP_START, err);
    pthread_mutex_unlock(&inst->op_lock);
    if (rc < 0)
      cmn_err_prefix(err, "instance %s was created (Stopped) but did not start", id);
  }
  if (rc == 0)
    mgr_view_out(m, inst, out);
  mgr_unref(m, inst);
  return rc;
}

int agent_manager_get(agent_manager *m, const char *id_or_name, agent_instance_view *out,
                      cmn_error *err)
{
  mgr_instance *inst = mgr_lookup(m, id_or_name, err);
  if (inst == NULL)
    return -1;
  mgr_view_out(m, inst, out);
  mgr_unref(m, inst);
  return 0;
}

static int mgr_cmp_view(const void *a, const void *b)
{
  const agent_instance_view *x = a, *y = b;
  return strcmp(x->name, y->name);
}

int agent_manager_list(agent_manager *m, agent_state state, agent_instance_view **out, size_t *n,
                       cmn_error *err)
{
  if (state < AGENT_STATE_UNSPECIFIED || state > AGENT_STATE_UNKNOWN)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "unknown state %d", state);
  pthread_mutex_lock(&m->mu);
  agent_instance_view *v = cmn_calloc(m->n_insts, sizeof *v);
  size_t k = 0;
  for (size_t i = 0; i < m->n_insts; i++)
    if (state == AGENT_STATE_UNSPECIFIED || m->insts[i]->rec.view.state == state)
      agent_view_copy(&v[k++], &m->insts[i]->rec.view);
  pthread_mutex_unlock(&m->mu);
  qsort(v, k, sizeof *v, mgr_cmp_view);
  *out = v;
  *n = k;
  return 0;
}

int agent_manager_delete(agent_manager *m, const char *id_or_name, char **id_out, cmn_error *err)
{
  mgr_instance *inst = mgr_lookup(m, id_or_name, err);
  if (inst == NULL)
    return -1;
  int64_t t0 = cmn_now_us();
  pthread_mutex_lock(&inst->op_lock);
  int rc = -1;
  cleanup_free char *trash = NULL;
  pthread_mutex_lock(&m->mu);
  bool gone = inst->deleted;
  pthread_mutex_unlock(&m->mu);
  if (gone) {
    cmn_err_set(err, CMN_NOT_FOUND, "instance %s not found", id_or_name);
    goto out;
  }
  mgr_guest_stop(m, inst, "the instance is being deleted");
  mgr_warm_drop(m, inst, "the instance is being deleted");
  /* End the VMM first; the folder goes only once nothing runs from it. */
  if (inst->vm.proc.pid > 0) {
    if (inst->entry != NULL && inst->entry->available) {
      snap_target t = mgr_target(m, inst);
      snap_end_vmm(&t);
    } else {
      cmn_proc_kill_reap(&inst->vm.proc);
    }
  }
  if (cmn_fault("agent.delete.before_remove", err) < 0)
    goto stopped;
  /* Rename out of the way first so a crash mid-removal never leaves a
   * half-deleted instance that would be loaded again. */
  trash = cmn_asprintf("%s/.deleting-%s", m->instances_dir, inst->rec.view.id);
  if (cmn_rename_durable(inst->dir, trash, err) < 0)
    goto stopped;
  cmn_fault_exit_only("agent.delete.after_rename");
  cmn_error e2 = {0};
  if (cmn_rm_rf(trash, &e2) < 0)
    cmn_warn(inst->rec.view.id, "delete", "removing %s: %s", trash, e2.msg);
  pthread_mutex_lock(&m->mu);
  agent_instance_view v;
  agent_view_copy(&v, &inst->rec.view);
  if (id_out != NULL)
    *id_out = cmn_strdup(inst->rec.view.id);
  mgr_remove_locked(m, inst);
  pthread_mutex_unlock(&m->mu);
  agent_state old = v.state;
  v.state = AGENT_STATE_UNSPECIFIED;
  agent_image_unpin(m->images, v.id, &v.image);
  if (agent_net_spec_set(&v.net) && agent_net_remove(m->net, v.id, &e2) < 0)
    cmn_warn(v.id, "delete", "%s", e2.msg);
  mgr_emit(m, &v, old, AGENT_OP_DELETE, cmn_now_us() - t0);
  if (v.fork_snapshot != NULL)
    mgr_fork_collect(m, v.fork_snapshot);
  agent_instance_view_free(&v);
  cmn_info(id_or_name, "delete", "deleted");
  rc = 0;
  goto out;
stopped:
  /* The VMM is gone but the folder stays: the instance is Stopped (its
   * snapshots too are dropped, as delete asked) and the delete can be retried. */
  if (inst->rec.view.state != AGENT_STATE_STOPPED) {
    agent_record r = {0};
    cmn_error e3 = {0};
    mgr_snapshot_record(m, inst, &r);
    snap_discard_all(inst->dir, &e3);
    r.view.state = AGENT_STATE_STOPPED;
    mgr_set_status(&r, "a delete failed after its VMM ended; delete again");
    mgr_commit(m, inst, &r, AGENT_OP_DELETE, cmn_now_us() - t0, &e3);
    agent_record_free(&r);
  }
out:
  if (rc < 0)
    mgr_guest_sync(m, inst, true); /* the instance stays: lift the delete's hold */
  pthread_mutex_unlock(&inst->op_lock);
  mgr_unref(m, inst);
  return rc;
}

/* ---- create / free ---------------------------------------------------------- */

agent_manager *agent_manager_create(const agent_manager_config *cfg, const vmm_registry *reg,
                                    cmn_error *err)
{
  if (cfg->data_dir == NULL || cfg->data_dir[0] != '/') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "data dir must be an absolute path");
    return NULL;
  }
  agent_manager *m = cmn_calloc(1, sizeof *m);
  m->data_dir = cmn_strdup(cfg->data_dir);
  m->instances_dir = cmn_asprintf("%s/instances", cfg->data_dir);
  m->max_instances = cfg->max_instances > 0 ? cfg->max_instances : MANAGER_DEFAULT_MAX;
  m->stop_timeout_ms = cfg->stop_timeout_ms > 0 ? cfg->stop_timeout_ms : MANAGER_DEFAULT_STOP_MS;
  m->console_max_bytes =
      cfg->console_max_bytes > 0 ? cfg->console_max_bytes : AGENT_CONSOLE_DEFAULT_MAX_BYTES;
  m->reg = reg;
  m->vmm_cgroup = cmn_strdup(cfg->vmm_cgroup);
  if (cfg->admission != NULL)
    m->admission = *cfg->admission;
  else
    agent_admission_defaults(&m->admission);
  m->host_probe = cfg->host_probe != NULL ? cfg->host_probe : mgr_host_probe_real;
  m->host_probe_ctx = cfg->host_probe_ctx;
  m->images = cfg->images;
  m->boot_kit_dir = cfg->boot_kit_dir ? cmn_strdup(cfg->boot_kit_dir) : NULL;
  {
    agent_net_config none;
    agent_net_config_default(&none);
    for (size_t i = 0; i < none.n_nets; i++) {
      free(none.nets[i].name);
      free(none.nets[i].bridge);
    }
    none.n_nets = 0;
    int nrc = agent_net_new(cfg->net_config != NULL ? cfg->net_config : &none, &m->net, err);
    agent_net_config_free(&none);
    if (nrc < 0) {
      free(m->boot_kit_dir);
      free(m->vmm_cgroup);
      free(m->instances_dir);
      free(m->data_dir);
      free(m);
      return NULL;
    }
  }
  pthread_mutex_init(&m->mu, NULL);
  pthread_mutex_init(&m->subs_mu, NULL);
  pthread_mutex_init(&m->stop_mu, NULL);
  pthread_cond_init(&m->stop_cv, NULL);
  pthread_cond_init(&m->created_cv, NULL);
  pthread_cond_init(&m->warm_cv, NULL);
  agent_warm_config_copy(&m->warm_cfg, cfg->warm);
  m->n_warm_stats = vmm_registry_count(reg);
  m->warm_stats = cmn_calloc(m->n_warm_stats + 1, sizeof *m->warm_stats);
  for (size_t i = 0; i < m->n_warm_stats; i++) {
    const char *type = vmm_registry_at(reg, i)->driver->type;
    const agent_warm_pool *pool = agent_warm_pool_of(&m->warm_cfg, type);
    m->warm_stats[i].hypervisor = type;
    m->warm_stats[i].size = pool != NULL ? pool->size : 0;
  }
  if (cmn_mkdir_p(m->data_dir, 0750, err) < 0 || cmn_mkdir_p(m->instances_dir, 0750, err) < 0 ||
      (m->fence = agent_host_fence_new(m->data_dir, cfg->host_policy, err)) == NULL ||
      (m->snaps = agent_snapstore_open(m->data_dir, err)) == NULL || mgr_load_all(m, err) < 0) {
    agent_manager_free(m);
    return NULL;
  }
  if (cfg->monitor) {
    if (pthread_create(&m->monitor, NULL, mgr_monitor_main, m) != 0) {
      cmn_err_set(err, CMN_INTERNAL, "cannot start the VMM monitor thread");
      agent_manager_free(m);
      return NULL;
    }
    m->monitor_running = true;
  }
  bool any_pool = false;
  for (size_t i = 0; i < m->warm_cfg.n_pools; i++)
    any_pool |= m->warm_cfg.pools[i].size > 0;
  if (cfg->monitor && any_pool) {
    if (pthread_create(&m->warm_thread, NULL, mgr_warm_main, m) != 0) {
      cmn_err_set(err, CMN_INTERNAL, "cannot start the warm VMM pool thread");
      agent_manager_free(m);
      return NULL;
    }
    m->warm_running = true;
  }
  cmn_info(NULL, NULL, "instance manager ready: %zu instances in %s", m->n_insts, m->instances_dir);
  return m;
}

void agent_manager_free(agent_manager *m)
{
  if (m == NULL)
    return;
  pthread_mutex_lock(&m->stop_mu);
  m->stopping = true;
  pthread_cond_broadcast(&m->stop_cv);
  pthread_cond_broadcast(&m->warm_cv);
  pthread_mutex_unlock(&m->stop_mu);
  if (m->monitor_running)
    pthread_join(m->monitor, NULL);
  if (m->warm_running)
    pthread_join(m->warm_thread, NULL);
  /* Warm VMMs are no guest's: they go with emberd (docs/wake.md). */
  mgr_warm_drop_all(m);
  /* Wait for operations in progress, then drop everything; VMMs keep running. */
  for (size_t i = 0; i < m->n_insts; i++) {
    pthread_mutex_lock(&m->insts[i]->op_lock);
    pthread_mutex_unlock(&m->insts[i]->op_lock);
    mgr_guest_stop(m, m->insts[i], "emberd is shutting down");
    mgr_instance_free(m->insts[i]);
  }
  free(m->insts);
  free(m->creating);
  free(m->subs);
  pthread_mutex_destroy(&m->mu);
  pthread_mutex_destroy(&m->subs_mu);
  pthread_mutex_destroy(&m->stop_mu);
  pthread_cond_destroy(&m->stop_cv);
  pthread_cond_destroy(&m->created_cv);
  pthread_cond_destroy(&m->warm_cv);
  agent_warm_config_free(&m->warm_cfg);
  free(m->warm_stats);
  free(m->instances_dir);
  free(m->data_dir);
  free(m->boot_kit_dir);
  free(m->vmm_cgroup);
  agent_host_fence_free(m->fence);
  agent_net_free(m->net);
  agent_snapstore_free(m->snaps);
  free(m);
}
