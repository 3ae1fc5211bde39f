/* manager_fork.c: ForkInstance and saved snapshots (docs/fork.md).
 *
 * A fork takes a frozen snapshot of its source into the snapshot store
 * (snapstore.h): from a Running source the VMM saves it (paused meanwhile,
 * then resumed; hypervisor.h save()), from a Standby one its snapshot-latest
 * is copied file by file (reflinks where the filesystem has them). Each clone
 * is then a new instance in Standby whose snapshot-latest only points at the
 * frozen folder (snapshot.h SNAP_FROZEN_LINK), with copy-on-write copies of
 * the emberd-made disks, its own namespace on the source's network (same
 * guest address and MAC), and it is restored like any Standby instance: the
 * VMM maps the frozen memory privately (restore_frozen()).
 *
 * Crash safety: a snapshot is written under a temp name and renamed into
 * place; a clone is assembled in instances/.fork-<id> and renamed into place
 * once its record is written; the next start removes both kinds of leftover
 * (and a hidden snapshot no clone depends on). A Running source interrupted
 * while paused is resumed by recovery (paused VMM, Running record). */
#include "agent/instance_image.h"
#include "agent/manager_internal.h"
#include "agent/record.h"
#include "agent/snapshot.h"
#include "agent/snapstore.h"
#include "agent/validate.h"
#include "agent/vmm_call.h"
#include "common/cleanup.h"
#include "common/clone.h"
#include "common/fault.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void agent_snapshot_view_free(agent_snapshot_view *v)
{
  if (v == NULL)
    return;
  free(v->id);
  free(v->name);
  free(v->source_id);
  free(v->source_name);
  agent_instance_view_free(&v->source);
  for (size_t i = 0; i < v->n_clone_ids; i++)
    free(v->clone_ids[i]);
  free(v->clone_ids);
  memset(v, 0, sizeof *v);
}

void agent_snapshot_views_free(agent_snapshot_view *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    agent_snapshot_view_free(&v[i]);
  free(v);
}

void agent_fork_result_free(agent_fork_result *r)
{
  if (r == NULL)
    return;
  agent_instance_views_free(r->clones, r->n_clones);
  free(r->snapshot_id);
  memset(r, 0, sizeof *r);
}

/* ---- what can be forked ------------------------------------------------------ */

static int fork_not_state(const agent_instance_view *v, const char *what, cmn_error *err)
{
  cmn_err_set(err, CMN_FAILED_PRECONDITION,
              "cannot %s instance %s: it is %s (only Running and Standby instances can be)", what,
              v->name, agent_state_name(v->state));
  cleanup_free char *subject = cmn_asprintf("instances/%s", v->id);
  return cmn_err_precondition(err, "STATE", subject);
}

/* What a clone cannot share with its source: a writable disk the caller
 * named (no copy-on-write copy of a caller's file is made) and a TAP device
 * the caller made (one TAP serves one VMM; a managed network gives each clone
 * its own). */
static int fork_check_spec(const agent_instance_view *v, const char *what, cmn_error *err)
{
  for (size_t i = 0; i < v->spec.n_disks; i++)
    if (!v->spec.disks[i].read_only)
      return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                         "cannot %s instance %s: its disk %s is writable, and a clone cannot share "
                         "it (read-only disks and the root disk of an image can be cloned)",
                         what, v->name, v->spec.disks[i].path);
  if (v->spec.n_nics > 0)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                       "cannot %s instance %s: its network interface uses the TAP device %s, which "
                       "a clone cannot share (put it on a managed network instead)",
                       what, v->name, v->spec.nics[0].tap ? v->spec.nics[0].tap : "");
  return 0;
}

static int fork_check_driver(const vmm_entry *entry, const char *type, cmn_error *err)
{
  if (vmm_call_need_available(entry, type, err) < 0)
    return -1;
  return vmm_call_need_caps(entry, type, VMM_CAP_FORK | VMM_CAP_SNAPSHOT, "fork", err);
}

/* ---- taking the frozen snapshot of an instance --------------------------------- */

/* from_dir/name to to_dir/name with cmn_file_clone; the bytes written are
 * added to *copied. */
static int fork_copy_file(const char *from_dir, const char *to_dir, const char *name,
                          uint64_t *copied, cmn_error *err)
{
  cleanup_free char *from = cmn_asprintf("%s/%s", from_dir, name);
  cleanup_free char *to = cmn_asprintf("%s/%s", to_dir, name);
  uint64_t n = 0;
  if (cmn_file_clone(from, to, NULL, &n, err) < 0)
    return -1;
  *copied += n;
  return 0;
}

/* Into a snapshot: standalone copies of the instance's emberd-made disks
 * (a clone's overlay is flattened, so no snapshot depends on another). */
static int fork_freeze_disks(const vmm_entry *entry, const char *inst_dir, const char *to_dir,
                             const agent_image_spec *img, uint64_t *copied, cmn_error *err)
{
  if (!agent_image_spec_set(img))
    return 0;
  cleanup_free char *overlay = cmn_asprintf("%s/" AGENT_IMAGE_ROOTFS_OVERLAY, inst_dir);
  cleanup_free char *root = cmn_asprintf("%s/" AGENT_IMAGE_ROOTFS, to_dir);
  if (cmn_is_regular_file(overlay)) {
    if (vmm_call_disk_flatten(entry, overlay, true, root, err) < 0)
      return -1;
    struct stat st;
    if (stat(root, &st) == 0)
      *copied += (uint64_t)st.st_blocks * 512u;
  } else if (fork_copy_file(inst_dir, to_dir, AGENT_IMAGE_ROOTFS, copied, err) < 0) {
    return -1;
  }
  return fork_copy_file(inst_dir, to_dir, AGENT_IMAGE_BOOTCFG, copied, err);
}

/* Into a clone: copy-on-write copies of the snapshot's disks: a reflink
 * where the filesystem has them, else the driver's overlay over the frozen
 * file (QEMU: qcow2), else a copy of the data ranges. *how says which. */
static int fork_clone_disks(const vmm_entry *entry, const char *snap_disks, const char *clone_dir,
                            const agent_image_spec *img, uint64_t *copied, const char **how,
                            cmn_error *err)
{
  *how = "none";
  if (!agent_image_spec_set(img))
    return 0;
  cleanup_free char *from = cmn_asprintf("%s/" AGENT_IMAGE_ROOTFS, snap_disks);
  cleanup_free char *root = cmn_asprintf("%s/" AGENT_IMAGE_ROOTFS, clone_dir);
  cmn_error e2 = {0};
  if (cmn_file_reflink(from, root, &e2) == 0) {
    *how = "reflink";
  } else if (e2.code != CMN_UNIMPLEMENTED) {
    *err = e2;
    return -1;
  } else {
    cleanup_free char *overlay = cmn_asprintf("%s/" AGENT_IMAGE_ROOTFS_OVERLAY, clone_dir);
    cmn_error e3 = {0};
    if (vmm_call_can(entry, VMM_CALL_DISK_OVERLAY) &&
        vmm_call_disk_overlay(entry, from, overlay, &e3) == 0) {
      *how = "overlay";
    } else {
      if (e3.code != CMN_OK && e3.code != CMN_UNIMPLEMENTED) {
        *err = e3;
        return -1;
      }
      if (fork_copy_file(snap_disks, clone_dir, AGENT_IMAGE_ROOTFS, copied, err) < 0)
        return -1;
      *how = "copy";
    }
  }
  return fork_copy_file(snap_disks, clone_dir, AGENT_IMAGE_BOOTCFG, copied, err);
}

/* With inst's op_lock held and its state Running or Standby: writes the
 * frozen snapshot into dir (a snapstore folder being written). A Running
 * VM is paused for it and resumed whatever happens; if it cannot be
 * resumed, it is recorded Paused (with why) and the error says so. */
static int fork_save(agent_manager *m, mgr_instance *inst, const agent_record *r, const char *dir,
                     uint64_t *copied, cmn_error *err)
{
  cleanup_free char *vm_dir = cmn_asprintf("%s/" AGENT_SNAP_VM_DIR, dir);
  cleanup_free char *disks_dir = cmn_asprintf("%s/" AGENT_SNAP_DISKS_DIR, dir);
  if (r->view.state == AGENT_STATE_STANDBY) {
    if (snap_copy_latest(inst->dir, vm_dir, copied, err) < 0 ||
        fork_freeze_disks(inst->entry, inst->dir, disks_dir, &r->view.image, copied, err) < 0)
      return -1;
    return 0;
  }
  /* A restore that left snapshot-latest behind: retire it first, so the
   * snapshot below is the only new thing in the instance's folders. */
  snap_target t = mgr_target(m, inst);
  cmn_error e2 = {0};
  if (snap_retire_stale_latest(&t, &e2) < 0)
    cmn_warn(r->view.id, "fork", "retire snapshot-latest: %s", e2.msg);
  if (vmm_call_pause(inst->entry, &inst->vm, err) < 0)
    return cmn_err_prefix(err, "pause before the snapshot");
  int rc = 0;
  if (cmn_fault("agent.fork.after_pause", err) < 0 ||
      vmm_call_save(inst->entry, &inst->vm, vm_dir, err) < 0 ||
      cmn_fault("agent.fork.after_save", err) < 0 ||
      fork_freeze_disks(inst->entry, inst->dir, disks_dir, &r->view.image, copied, err) < 0)
    rc = -1;
  if (vmm_call_resume(inst->entry, &inst->vm, &e2) < 0) {
    cmn_error_log(r->view.id, "fork", "resume after the snapshot: %s", e2.msg);
    agent_record p = {0};
    agent_record_copy(&p, r);
    p.view.state = AGENT_STATE_PAUSED;
    cleanup_free char *why = cmn_asprintf("could not resume after a fork's snapshot: %s", e2.msg);
    mgr_set_status(&p, why);
    cmn_error e3 = {0};
    mgr_commit(m, inst, &p, AGENT_OP_OBSERVED, 0, &e3);
    agent_record_free(&p);
    if (rc == 0)
      cmn_err_set(err, CMN_INTERNAL, "the snapshot was taken but the instance did not resume: %s",
                  e2.msg);
    return -1;
  }
  return rc;
}

/* Takes a frozen snapshot of the instance id_or_name into the store (named,
 * or hidden when name is NULL). */
static int fork_snapshot_of(agent_manager *m, const char *id_or_name, const char *name,
                            const char *what, agent_snap_meta *meta, uint64_t *copied,
                            int64_t *took_us, cmn_error *err)
{
  mgr_instance *inst = mgr_lookup(m, id_or_name, err);
  if (inst == NULL)
    return -1;
  pthread_mutex_lock(&inst->op_lock);
  agent_record r = {0};
  mgr_snapshot_record(m, inst, &r);
  int rc = -1;
  cleanup_free char *sid = NULL;
  cleanup_free char *dir = NULL;
  pthread_mutex_lock(&m->mu);
  bool gone = inst->deleted;
  pthread_mutex_unlock(&m->mu);
  if (gone) {
    cmn_err_set(err, CMN_NOT_FOUND, "instance %s not found", id_or_name);
    goto out;
  }
  if (fork_check_driver(inst->entry, r.view.hypervisor, err) < 0 ||
      fork_check_spec(&r.view, what, err) < 0)
    goto out;
  if (r.view.state != AGENT_STATE_RUNNING && r.view.state != AGENT_STATE_STANDBY) {
    fork_not_state(&r.view, what, err);
    goto out;
  }
  if (agent_snapstore_begin(m->snaps, name, &sid, &dir, err) < 0)
    goto out;
  int64_t t0 = cmn_now_us();
  if (fork_save(m, inst, &r, dir, copied, err) < 0 ||
      cmn_fault("agent.fork.before_commit_snapshot", err) < 0) {
    agent_snapstore_abort(m->snaps, sid, dir);
    goto out;
  }
  if (agent_snapstore_commit(m->snaps, sid, dir, &r, meta, err) < 0)
    goto out;
  *took_us = cmn_now_us() - t0;
  cmn_info(r.view.id, what, "snapshot %s of %s (%s) in %lld us, %llu bytes copied", sid,
           r.view.name, agent_state_name(r.view.state), (long long)*took_us,
           (unsigned long long)*copied);
  rc = 0;
out:
  if (rc < 0)
    snap_explain_space(m->data_dir, err);
  agent_record_free(&r);
  pthread_mutex_unlock(&inst->op_lock);
  mgr_unref(m, inst);
  return rc;
}

/* ---- clones ---------------------------------------------------------------------- */

/* The record of a new clone of src, in Standby, with its own namespace on
 * the source's network (same address and MAC, no port forwards: a host port
 * forwards to one guest). */
static void fork_clone_record(const agent_record *src, const agent_snap_meta *sm, const char *id,
                              const char *name, const char *dir, const agent_fork_req *req,
                              agent_record *out)
{
  memset(out, 0, sizeof *out);
  agent_instance_view *v = &out->view;
  v->id = cmn_strdup(id);
  v->name = cmn_strdup(name);
  v->hypervisor = cmn_strdup(src->view.hypervisor);
  vmm_spec_copy(&v->spec, &src->view.spec);
  v->state = AGENT_STATE_STANDBY;
  v->has_snapshot = true;
  v->last_snapshot_kind = AGENT_SNAP_FULL;
  v->console_log_path = cmn_asprintf("%s/console.log", dir);
  v->created_at_us = v->updated_at_us = cmn_wall_us();
  agent_labels_copy_sorted(&v->labels, &v->n_labels, req->labels, req->n_labels);
  agent_image_spec_copy(&v->image, &src->view.image);
  v->auto_standby = src->view.auto_standby; /* plain values */
  agent_net_spec_copy(&v->net, &src->view.net);
  if (agent_net_spec_set(&v->net)) {
    v->net.netns = true;
    v->net.ipv4_given = true;
    v->net.mac_given = true;
    v->net.veth_host_ip = 0;
    free(v->net.forwards);
    v->net.forwards = NULL;
    v->net.n_forwards = 0;
  }
  v->fork_snapshot = cmn_strdup(sm->id);
  v->fork_source = cmn_strdup(sm->source_id);
}

/* Makes one clone (Standby) and puts it in the table; *out is referenced. */
static int fork_make_clone(agent_manager *m, const agent_record *src, const agent_snap_meta *sm,
                           const char *snap_dir, const vmm_entry *entry, const char *name,
                           const agent_fork_req *req, mgr_instance **out, cmn_error *err)
{
  *out = NULL;
  if (agent_validate_name("names", name, err) < 0)
    return cmn_err_field(err, "names");
  agent_create_req cr = {.name = name};
  mgr_instance *same = NULL;
  if (mgr_reserve_name(m, &cr, &same, err) != 0) {
    if (same != NULL)
      mgr_unref(m, same);
    return -1;
  }
  cleanup_free char *id = mgr_new_id();
  cleanup_free char *dir = cmn_asprintf("%s/%s", m->instances_dir, id);
  cleanup_free char *tmp = cmn_asprintf("%s/.fork-%s", m->instances_dir, id);
  cleanup_free char *frozen = cmn_asprintf("%s/" AGENT_SNAP_VM_DIR, snap_dir);
  agent_record rec;
  fork_clone_record(src, sm, id, name, dir, req, &rec);
  bool net = agent_net_spec_set(&rec.view.net);
  bool pinned = false;
  int rc = -1;
  if (net && agent_net_alloc(m->net, id, &rec.view.net, err) < 0) {
    net = false;
    goto fail;
  }
  if (mkdir(tmp, 0750) < 0) {
    cmn_err_errno(err, CMN_INTERNAL, errno, "create %s", tmp);
    goto fail;
  }
  {
    cleanup_free char *disks = cmn_asprintf("%s/" AGENT_SNAP_DISKS_DIR, snap_dir);
    uint64_t copied = 0;
    const char *how = NULL;
    if (fork_clone_disks(entry, disks, tmp, &rec.view.image, &copied, &how, err) < 0)
      goto fail;
    if (agent_image_spec_set(&rec.view.image))
      cmn_info(id, "fork", "root disk: %s (%llu bytes copied)", how, (unsigned long long)copied);
  }
  if (agent_image_spec_set(&rec.view.image)) {
    if (agent_image_pin(m->images, id, &rec.view.image, err) < 0)
      goto fail;
    pinned = true;
  }
  if (snap_prepare_clone(tmp, frozen, err) < 0 || (net && agent_net_ensure(m->net, id, err) < 0) ||
      cmn_fault("agent.fork.before_record", err) < 0 || agent_record_save(tmp, &rec, err) < 0 ||
      cmn_fault("agent.fork.before_rename", err) < 0 || cmn_rename_durable(tmp, dir, err) < 0)
    goto fail;
  {
    mgr_instance *inst = mgr_instance_new(&rec, dir, entry);
    pthread_mutex_lock(&m->mu);
    mgr_release_name_locked(m, name);
    mgr_insert_locked(m, inst);
    inst->refs++;
    pthread_mutex_unlock(&m->mu);
    *out = inst;
  }
  cmn_info(id, "fork", "created %s, a clone of %s from snapshot %s", name, sm->source_name, sm->id);
  mgr_emit(m, &rec.view, AGENT_STATE_UNSPECIFIED, AGENT_OP_CREATE, 0);
  agent_record_free(&rec);
  return 0;
fail:
  rc = -1;
  {
    cmn_error e2 = {0};
    if (net)
      agent_net_remove(m->net, id, &e2);
    if (pinned)
      agent_image_unpin(m->images, id, &rec.view.image);
    cmn_rm_rf(tmp, &e2);
    snap_explain_space(m->data_dir, err);
  }
  pthread_mutex_lock(&m->mu);
  mgr_release_name_locked(m, name);
  pthread_mutex_unlock(&m->mu);
  agent_record_free(&rec);
  return rc;
}

/* Restores the new clones, a few at a time (each restore is mostly the VMM
 * starting and loading; more than a few at once only queue on the CPUs). */
#define FORK_RESTORE_WORKERS 4

typedef struct fork_restores {
  agent_manager *m;
  mgr_instance **insts;
  cmn_error *errs;
  int *rcs;
  size_t n;
  size_t next;
  pthread_mutex_t mu;
} fork_restores;

static void *fork_restore_worker(void *arg)
{
  fork_restores *fr = arg;
  for (;;) {
    pthread_mutex_lock(&fr->mu);
    size_t i = fr->next < fr->n ? fr->next++ : fr->n;
    pthread_mutex_unlock(&fr->mu);
    if (i >= fr->n)
      return NULL;
    mgr_instance *inst = fr->insts[i];
    pthread_mutex_lock(&inst->op_lock);
    fr->rcs[i] = mgr_run_op(fr->m, inst, AGENT_OP_RESTORE, &fr->errs[i]);
    pthread_mutex_unlock(&inst->op_lock);
  }
}

static int fork_restore_all(agent_manager *m, mgr_instance **insts, size_t n, cmn_error *err)
{
  fork_restores fr = {.m = m, .insts = insts, .n = n};
  fr.errs = cmn_calloc(n, sizeof *fr.errs);
  fr.rcs = cmn_calloc(n, sizeof *fr.rcs);
  pthread_mutex_init(&fr.mu, NULL);
  pthread_t th[FORK_RESTORE_WORKERS - 1];
  size_t started = 0;
  /* The calling thread is one of the workers. */
  for (size_t i = 0; i + 1 < FORK_RESTORE_WORKERS && i + 1 < n; i++)
    if (pthread_create(&th[started], NULL, fork_restore_worker, &fr) == 0)
      started++;
  fork_restore_worker(&fr);
  for (size_t i = 0; i < started; i++)
    pthread_join(th[i], NULL);
  pthread_mutex_destroy(&fr.mu);
  int rc = 0;
  size_t failed = 0;
  for (size_t i = 0; i < n; i++) {
    if (fr.rcs[i] == 0)
      continue;
    if (failed++ == 0) {
      *err = fr.errs[i];
      cmn_err_prefix(err, "clone %s was made but did not restore (it is in Standby)",
                     insts[i]->rec.view.name);
    }
    rc = -1;
  }
  if (failed > 1) {
    size_t l = strlen(err->msg);
    snprintf(err->msg + l, sizeof err->msg - l, " (and %zu more)", failed - 1);
  }
  free(fr.errs);
  free(fr.rcs);
  return rc;
}

static int fork_check_names(const agent_fork_req *req, cmn_error *err)
{
  if (req->n_names == 0 || req->n_names > AGENT_FORK_MAX) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "give 1 to %d clone names (got %zu)", AGENT_FORK_MAX,
                req->n_names);
    return cmn_err_field(err, "names");
  }
  for (size_t i = 0; i < req->n_names; i++) {
    if (agent_validate_name("names", req->names[i], err) < 0)
      return cmn_err_field(err, "names");
    for (size_t j = 0; j < i; j++)
      if (strcmp(req->names[i], req->names[j]) == 0) {
        cmn_err_set(err, CMN_INVALID_ARGUMENT, "the name %s is given twice", req->names[i]);
        return cmn_err_field(err, "names");
      }
  }
  return agent_labels_validate(req->labels, req->n_labels, err);
}

int agent_manager_fork(agent_manager *m, const agent_fork_req *req, agent_fork_result *out,
                       cmn_error *err)
{
  memset(out, 0, sizeof *out);
  bool from_inst = req->source != NULL && req->source[0] != '\0';
  bool from_snap = req->snapshot != NULL && req->snapshot[0] != '\0';
  if (from_inst == from_snap) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "give exactly one of id (an instance) and snapshot");
    return cmn_err_field(err, from_inst ? "snapshot" : "id");
  }
  if (fork_check_names(req, err) < 0)
    return -1;
  /* No clone name may be taken before anything is done (the creates below
   * check again under the lock). */
  pthread_mutex_lock(&m->mu);
  for (size_t i = 0; i < req->n_names; i++)
    for (size_t k = 0; k < m->n_insts; k++)
      if (strcmp(m->insts[k]->rec.view.name, req->names[i]) == 0) {
        pthread_mutex_unlock(&m->mu);
        return cmn_err_set(err, CMN_ALREADY_EXISTS, "an instance named %s already exists (%s)",
                           req->names[i], m->insts[k]->rec.view.id);
      }
  if (m->n_insts + m->n_creating + req->n_names > (size_t)m->max_instances) {
    size_t have = m->n_insts + m->n_creating;
    pthread_mutex_unlock(&m->mu);
    return cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                       "this host has %zu instances; %zu clones would pass the limit of %d", have,
                       req->n_names, m->max_instances);
  }
  pthread_mutex_unlock(&m->mu);

  agent_snap_meta sm = {0};
  uint64_t copied = 0;
  if (from_inst) {
    if (agent_validate_id_or_name("id", req->source, err) < 0)
      return -1;
    if (fork_snapshot_of(m, req->source, NULL, "fork", &sm, &copied, &out->snapshot_us, err) < 0)
      return -1;
  }
  const char *snap_ref = from_inst ? sm.id : req->snapshot;
  agent_record src = {0};
  cleanup_free char *snap_dir = NULL;
  agent_snap_meta held = {0};
  if (agent_snapstore_hold(m->snaps, snap_ref, &held, &src, &snap_dir, err) < 0) {
    agent_snap_meta_free(&sm);
    return -1;
  }
  agent_snap_meta_free(&sm);
  out->snapshot_id = cmn_strdup(held.id);
  int rc = -1;
  mgr_instance **insts = cmn_calloc(req->n_names, sizeof *insts);
  size_t made = 0;
  const vmm_entry *entry = vmm_registry_get(m->reg, src.view.hypervisor);
  if (!from_inst && held.hidden) {
    cmn_err_set(err, CMN_FAILED_PRECONDITION,
                "snapshot %s was taken by a fork and goes with its last clone: fork one of its "
                "clones, or save a named snapshot (CreateSnapshot)",
                held.id);
    goto out;
  }
  if (fork_check_driver(entry, src.view.hypervisor, err) < 0)
    goto out;
  if (!req->standby) {
    /* Every clone must fit before any is made, so a fork refused for room
     * leaves nothing behind; each clone's restore below admits it again. */
    vmm_spec all = {.vcpus = src.view.spec.vcpus * (uint32_t)req->n_names,
                    .memory_mib = src.view.spec.memory_mib * req->n_names};
    if (mgr_admit(m, NULL, req->names[0], entry, &all, AGENT_ADMIT_RESTORE, AGENT_SNAP_DIFF, err) <
        0) {
      cmn_err_prefix(err, "%zu clones of %s", req->n_names, src.view.name);
      goto out;
    }
    mgr_admit_done(m, &all);
  }
  for (; made < req->n_names; made++) {
    if (fork_make_clone(m, &src, &held, snap_dir, entry, req->names[made], req, &insts[made], err) <
        0) {
      if (made > 0)
        cmn_err_prefix(err, "%zu of %zu clones made, then", made, req->n_names);
      goto out;
    }
  }
  cmn_info(held.id, "fork", "%zu clones of %s made (%llu bytes copied for the snapshot)", made,
           held.source_name, (unsigned long long)copied);
  rc = req->standby ? 0 : fork_restore_all(m, insts, made, err);
out:
  /* The clones are in the table (they depend on the snapshot) before the
   * hold goes: a delete can never slip in between. */
  agent_snapstore_release(m->snaps, held.id);
  out->clones = cmn_calloc(made + 1, sizeof *out->clones);
  for (size_t i = 0; i < made; i++) {
    mgr_view_out(m, insts[i], &out->clones[i]);
    mgr_unref(m, insts[i]);
  }
  out->n_clones = made;
  free(insts);
  if (made == 0 && held.hidden)
    mgr_fork_collect(m, held.id);
  agent_record_free(&src);
  agent_snap_meta_free(&held);
  return rc;
}

/* ---- saved snapshots ------------------------------------------------------------- */

/* The ids of the instances that depend on snapshot id (under m->mu). */
static size_t fork_clones_locked(agent_manager *m, const char *id, char ***ids)
{
  size_t n = 0;
  if (ids != NULL)
    *ids = NULL;
  for (size_t i = 0; i < m->n_insts; i++) {
    const char *f = m->insts[i]->rec.view.fork_snapshot;
    if (f == NULL || strcmp(f, id) != 0)
      continue;
    if (ids != NULL) {
      *ids = cmn_realloc(*ids, (n + 1) * sizeof **ids);
      (*ids)[n] = cmn_strdup(m->insts[i]->rec.view.id);
    }
    n++;
  }
  return n;
}

static void fork_view_of(agent_manager *m, const agent_snap_meta *meta, agent_snapshot_view *v)
{
  memset(v, 0, sizeof *v);
  v->id = cmn_strdup(meta->id);
  v->name = meta->hidden ? NULL : cmn_strdup(meta->name);
  v->source_id = cmn_strdup(meta->source_id);
  v->source_name = cmn_strdup(meta->source_name);
  v->created_at_us = meta->created_at_us;
  v->size_bytes = agent_snapstore_size(m->snaps, meta->id);
  agent_record src = {0};
  cmn_error e2 = {0};
  if (agent_snapstore_hold(m->snaps, meta->id, NULL, &src, NULL, &e2) == 0) {
    agent_view_copy(&v->source, &src.view);
    agent_record_free(&src);
    agent_snapstore_release(m->snaps, meta->id);
  }
  pthread_mutex_lock(&m->mu);
  v->n_clone_ids = fork_clones_locked(m, meta->id, &v->clone_ids);
  pthread_mutex_unlock(&m->mu);
}

int agent_manager_snapshot_create(agent_manager *m, const char *id_or_name, const char *name,
                                  agent_snapshot_view *out, cmn_error *err)
{
  if (agent_validate_id_or_name("id", id_or_name, err) < 0)
    return -1;
  if (name == NULL || name[0] == '\0') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "a snapshot needs a name");
    return cmn_err_field(err, "name");
  }
  agent_snap_meta meta = {0};
  uint64_t copied = 0;
  int64_t took = 0;
  if (fork_snapshot_of(m, id_or_name, name, "snapshot", &meta, &copied, &took, err) < 0)
    return -1;
  if (out != NULL)
    fork_view_of(m, &meta, out);
  agent_snap_meta_free(&meta);
  return 0;
}

int agent_manager_snapshot_list(agent_manager *m, agent_snapshot_view **out, size_t *n,
                                cmn_error *err)
{
  (void)err;
  agent_snap_meta *metas = NULL;
  size_t k = 0;
  agent_snapstore_list(m->snaps, &metas, &k);
  agent_snapshot_view *v = cmn_calloc(k + 1, sizeof *v);
  for (size_t i = 0; i < k; i++)
    fork_view_of(m, &metas[i], &v[i]);
  agent_snap_metas_free(metas, k);
  *out = v;
  *n = k;
  return 0;
}

/* Marks snapshot id deleting once no instance depends on it (checked and
 * marked under m->mu: a fork inserts its clones under mu before it lets go
 * of its hold, so none can appear unseen). */
static int fork_mark_unused(agent_manager *m, const char *id, bool hidden_only, cmn_error *err)
{
  pthread_mutex_lock(&m->mu);
  char **ids = NULL;
  size_t n = fork_clones_locked(m, id, &ids);
  int rc;
  if (n > 0) {
    char list[512] = "";
    for (size_t i = 0, off = 0; i < n && off < sizeof list; i++) {
      int w = snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "", ids[i]);
      if (w < 0)
        break;
      off += (size_t)w;
    }
    rc = cmn_err_set(err, CMN_FAILED_PRECONDITION,
                     "snapshot %s is in use: %zu instance%s forked from it still exist%s (%s); "
                     "delete them first",
                     id, n, n == 1 ? "" : "s", n == 1 ? "s" : "", list);
    cleanup_free char *subject = cmn_asprintf("snapshots/%s", id);
    cmn_err_precondition(err, "IN_USE", subject);
  } else if (hidden_only) {
    agent_snap_meta *metas = NULL;
    size_t k = 0;
    agent_snapstore_list(m->snaps, &metas, &k);
    bool hidden = false;
    for (size_t i = 0; i < k; i++)
      if (strcmp(metas[i].id, id) == 0)
        hidden = metas[i].hidden;
    agent_snap_metas_free(metas, k);
    rc = hidden ? agent_snapstore_mark_deleting(m->snaps, id, err)
                : cmn_err_set(err, CMN_FAILED_PRECONDITION, "snapshot %s is a saved one", id);
  } else {
    rc = agent_snapstore_mark_deleting(m->snaps, id, err);
  }
  pthread_mutex_unlock(&m->mu);
  for (size_t i = 0; i < n; i++)
    free(ids[i]);
  free(ids);
  return rc;
}

int agent_manager_snapshot_delete(agent_manager *m, const char *id_or_name, char **id_out,
                                  cmn_error *err)
{
  if (id_or_name == NULL || id_or_name[0] == '\0') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "snapshot is required (an id or a name)");
    return cmn_err_field(err, "snapshot");
  }
  agent_snap_meta meta = {0};
  if (agent_snapstore_hold(m->snaps, id_or_name, &meta, NULL, NULL, err) < 0)
    return -1;
  agent_snapstore_release(m->snaps, meta.id);
  int rc = -1;
  if (fork_mark_unused(m, meta.id, false, err) == 0 &&
      agent_snapstore_delete(m->snaps, meta.id, err) == 0) {
    cmn_info(meta.id, "snapshot", "deleted snapshot %s", meta.name ? meta.name : meta.id);
    if (id_out != NULL)
      *id_out = cmn_strdup(meta.id);
    rc = 0;
  }
  agent_snap_meta_free(&meta);
  return rc;
}

void mgr_fork_collect(agent_manager *m, const char *snap_id)
{
  cmn_error err = {0};
  if (fork_mark_unused(m, snap_id, true, &err) < 0)
    return; /* still used, saved, held or gone: nothing to do */
  if (agent_snapstore_delete(m->snaps, snap_id, &err) < 0)
    cmn_warn(snap_id, "fork", "removing the snapshot of a fork: %s", err.msg);
  else
    cmn_info(snap_id, "fork", "removed the snapshot of a fork: its last clone is gone");
}

void mgr_fork_collect_all(agent_manager *m)
{
  agent_snap_meta *metas = NULL;
  size_t k = 0;
  agent_snapstore_list(m->snaps, &metas, &k);
  for (size_t i = 0; i < k; i++)
    if (metas[i].hidden)
      mgr_fork_collect(m, metas[i].id);
  agent_snap_metas_free(metas, k);
}
