/* vmm_call.c: the one boundary between the agent and driver operations (see
 * vmm_call.h): availability, capability and NULL-op checks in one place. */
#include "agent/vmm_call.h"
#include "common/cleanup.h"
#include "common/mem.h"

#include <stddef.h>

static const char *vc_type(const vmm_entry *entry, const char *type)
{
  if (entry != NULL && entry->driver != NULL && entry->driver->type != NULL)
    return entry->driver->type;
  return type != NULL ? type : "(none)";
}

int vmm_call_need_available(const vmm_entry *entry, const char *type, cmn_error *err)
{
  if (entry != NULL && entry->available)
    return 0;
  if (entry == NULL)
    cmn_err_set(err, CMN_FAILED_PRECONDITION, "hypervisor %s is not compiled into this emberd",
                vc_type(entry, type));
  else
    cmn_err_set(err, CMN_FAILED_PRECONDITION, "hypervisor %s is not available: %s",
                vc_type(entry, type), entry->detail ? entry->detail : "unknown reason");
  cleanup_free char *subject = cmn_asprintf("hypervisors/%s", vc_type(entry, type));
  return cmn_err_precondition(err, "HYPERVISOR", subject);
}

int vmm_call_need_caps(const vmm_entry *entry, const char *type, unsigned caps, const char *what,
                       cmn_error *err)
{
  if (entry != NULL && (entry->caps & caps) == caps)
    return 0;
  return cmn_err_set(err, CMN_UNIMPLEMENTED, "hypervisor %s does not support %s",
                     vc_type(entry, type), what);
}

/* The common gate of every call: available, capability, op present. */
static int vc_gate(const vmm_entry *entry, unsigned caps, bool has_op, const char *what,
                   cmn_error *err)
{
  if (vmm_call_need_available(entry, NULL, err) < 0)
    return -1;
  if (vmm_call_need_caps(entry, NULL, caps, what, err) < 0)
    return -1;
  if (!has_op)
    return cmn_err_set(err, CMN_UNIMPLEMENTED, "hypervisor %s does not support %s",
                       vc_type(entry, NULL), what);
  return 0;
}

bool vmm_call_can(const vmm_entry *entry, vmm_call_op op)
{
  if (entry == NULL || !entry->available)
    return false;
  switch (op) {
  case VMM_CALL_SHUTDOWN:
    return (entry->caps & VMM_CAP_GRACEFUL_SHUTDOWN) && entry->driver->shutdown != NULL;
  case VMM_CALL_POWERDOWN:
    return entry->driver->powerdown != NULL;
  case VMM_CALL_DISK_OVERLAY:
    return entry->driver->disk_overlay != NULL && entry->driver->disk_flatten != NULL;
  case VMM_CALL_WARM:
    return (entry->caps & VMM_CAP_SNAPSHOT) && entry->driver->restore_prepare != NULL &&
           entry->driver->warm_discard != NULL;
  }
  return false;
}

int vmm_call_start(const vmm_entry *entry, vmm_vm *vm, const char *mem_dir, cmn_error *err)
{
  if (vc_gate(entry, 0, entry != NULL && entry->driver->start != NULL, "start", err) < 0)
    return -1;
  return entry->driver->start(entry->state, vm, mem_dir, err);
}

int vmm_call_adopt(const vmm_entry *entry, vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  bool has = entry != NULL && (entry->driver->adopt != NULL || entry->driver->query != NULL);
  if (vc_gate(entry, 0, has, "adopting a running VMM", err) < 0)
    return -1;
  if (entry->driver->adopt != NULL)
    return entry->driver->adopt(entry->state, vm, out, err);
  return entry->driver->query(entry->state, vm, out, err);
}

int vmm_call_pause(const vmm_entry *entry, vmm_vm *vm, cmn_error *err)
{
  if (vc_gate(entry, VMM_CAP_PAUSE, entry != NULL && entry->driver->pause != NULL,
              "pause and resume", err) < 0)
    return -1;
  return entry->driver->pause(entry->state, vm, err);
}

int vmm_call_resume(const vmm_entry *entry, vmm_vm *vm, cmn_error *err)
{
  if (vc_gate(entry, VMM_CAP_PAUSE, entry != NULL && entry->driver->resume != NULL,
              "pause and resume", err) < 0)
    return -1;
  return entry->driver->resume(entry->state, vm, err);
}

int vmm_call_snapshot(const vmm_entry *entry, vmm_vm *vm, const char *snap_dir, vmm_snap_kind kind,
                      cmn_error *err)
{
  if (vc_gate(entry, VMM_CAP_SNAPSHOT, entry != NULL && entry->driver->snapshot != NULL, "standby",
              err) < 0)
    return -1;
  return entry->driver->snapshot(entry->state, vm, snap_dir, kind, err);
}

int vmm_call_restore(const vmm_entry *entry, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  if (vc_gate(entry, VMM_CAP_SNAPSHOT, entry != NULL && entry->driver->restore != NULL, "restore",
              err) < 0)
    return -1;
  return entry->driver->restore(entry->state, vm, snap_dir, err);
}

int vmm_call_restore_prepare(const vmm_entry *entry, vmm_vm *vm, const char *snap_dir, bool frozen,
                             cmn_error *err)
{
  if (vc_gate(entry, VMM_CAP_SNAPSHOT, vmm_call_can(entry, VMM_CALL_WARM), "warm restore", err) < 0)
    return -1;
  return entry->driver->restore_prepare(entry->state, vm, snap_dir, frozen, err);
}

void vmm_call_warm_discard(const vmm_entry *entry, vmm_vm *vm)
{
  if (vm->warm && vmm_call_can(entry, VMM_CALL_WARM))
    entry->driver->warm_discard(entry->state, vm);
}

int vmm_call_save(const vmm_entry *entry, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  if (vc_gate(entry, VMM_CAP_FORK, entry != NULL && entry->driver->save != NULL, "saved snapshots",
              err) < 0)
    return -1;
  return entry->driver->save(entry->state, vm, snap_dir, err);
}

int vmm_call_restore_frozen(const vmm_entry *entry, vmm_vm *vm, const char *snap_dir,
                            cmn_error *err)
{
  if (vc_gate(entry, VMM_CAP_FORK, entry != NULL && entry->driver->restore_frozen != NULL, "fork",
              err) < 0)
    return -1;
  return entry->driver->restore_frozen(entry->state, vm, snap_dir, err);
}

int vmm_call_disk_overlay(const vmm_entry *entry, const char *backing, const char *path,
                          cmn_error *err)
{
  if (vc_gate(entry, 0, entry != NULL && entry->driver->disk_overlay != NULL, "disk overlays",
              err) < 0)
    return -1;
  return entry->driver->disk_overlay(entry->state, backing, path, err);
}

int vmm_call_disk_flatten(const vmm_entry *entry, const char *src, bool src_overlay,
                          const char *path, cmn_error *err)
{
  if (vc_gate(entry, 0, entry != NULL && entry->driver->disk_flatten != NULL, "disk overlays",
              err) < 0)
    return -1;
  return entry->driver->disk_flatten(entry->state, src, src_overlay, path, err);
}

int vmm_call_shutdown(const vmm_entry *entry, vmm_vm *vm, int timeout_ms, cmn_error *err)
{
  if (vc_gate(entry, VMM_CAP_GRACEFUL_SHUTDOWN, entry != NULL && entry->driver->shutdown != NULL,
              "graceful VMM shutdown", err) < 0)
    return -1;
  return entry->driver->shutdown(entry->state, vm, timeout_ms, err);
}

int vmm_call_powerdown(const vmm_entry *entry, vmm_vm *vm, int timeout_ms, cmn_error *err)
{
  if (vc_gate(entry, 0, entry != NULL && entry->driver->powerdown != NULL, "guest power-off", err) <
      0)
    return -1;
  return entry->driver->powerdown(entry->state, vm, timeout_ms, err);
}

void vmm_call_release(const vmm_entry *entry, vmm_vm *vm)
{
  if (entry != NULL && entry->available && entry->driver->release != NULL)
    entry->driver->release(entry->state, vm);
}

void vmm_call_cleanup(const vmm_entry *entry, vmm_vm *vm)
{
  if (entry != NULL && entry->available && entry->driver->cleanup != NULL)
    entry->driver->cleanup(entry->state, vm);
}
