/* vmm_call.h: the one boundary between the agent and a driver's operations.
 *
 * Every call from the agent (manager, snapshot manager, recovery, monitor)
 * into a driver operation goes through these functions; no other agent file
 * dereferences a vmm_driver op (test/lint/driver_calls.sh enforces it). Each
 * call checks, in this order and with one wording:
 *   - the entry exists and its driver is available on this host, else
 *     FAILED_PRECONDITION "hypervisor T is not available: <reason>"
 *     (vmm_call_need_available adds the HYPERVISOR precondition detail);
 *   - the effective capabilities (vmm_entry.caps) include the ones the
 *     operation belongs to (pause/resume: PAUSE; snapshot/restore: SNAPSHOT;
 *     shutdown: GRACEFUL_SHUTDOWN), else UNIMPLEMENTED
 *     "hypervisor T does not support <what>";
 *   - the operation is not NULL, else the same UNIMPLEMENTED.
 * The registry already refuses a driver whose bits and ops disagree
 * (vmm_driver_check), so the last two are the same check seen twice.
 * release and cleanup return nothing: they do nothing when the driver is
 * unavailable or lacks them. */
#ifndef EMBER_AGENT_VMM_CALL_H
#define EMBER_AGENT_VMM_CALL_H

#include "common/error.h"
#include "drivers/hypervisor.h"
#include "drivers/registry.h"

#include <stdbool.h>

/* The optional operations a caller may ask about before choosing a path. */
typedef enum vmm_call_op {
  VMM_CALL_SHUTDOWN = 1,
  VMM_CALL_POWERDOWN = 2,
  VMM_CALL_DISK_OVERLAY = 3, /* disk_overlay and disk_flatten */
  VMM_CALL_WARM = 4,         /* restore_prepare and warm_discard (and SNAPSHOT) */
} vmm_call_op;

/* 0 when entry is set and available. Else FAILED_PRECONDITION naming the type
 * (`type` when entry is NULL: "hypervisor T is not compiled into this emberd")
 * with a precondition failure detail HYPERVISOR hypervisors/<type>. */
int vmm_call_need_available(const vmm_entry *entry, const char *type, cmn_error *err);
/* 0 when entry's effective capabilities include every bit of caps; else
 * UNIMPLEMENTED "hypervisor <type> does not support <what>". */
int vmm_call_need_caps(const vmm_entry *entry, const char *type, unsigned caps, const char *what,
                       cmn_error *err);
/* True when the entry is available, has the capability the op needs and the
 * op is not NULL: a call would reach the driver. */
bool vmm_call_can(const vmm_entry *entry, vmm_call_op op);

int vmm_call_start(const vmm_entry *entry, vmm_vm *vm, const char *mem_dir, cmn_error *err);
/* adopt, or query for a driver without adopt. */
int vmm_call_adopt(const vmm_entry *entry, vmm_vm *vm, vmm_run_state *out, cmn_error *err);
int vmm_call_pause(const vmm_entry *entry, vmm_vm *vm, cmn_error *err);
int vmm_call_resume(const vmm_entry *entry, vmm_vm *vm, cmn_error *err);
int vmm_call_snapshot(const vmm_entry *entry, vmm_vm *vm, const char *snap_dir, vmm_snap_kind kind,
                      cmn_error *err);
int vmm_call_restore(const vmm_entry *entry, vmm_vm *vm, const char *snap_dir, cmn_error *err);
/* VMM_CAP_FORK (drivers/hypervisor.h). */
int vmm_call_save(const vmm_entry *entry, vmm_vm *vm, const char *snap_dir, cmn_error *err);
int vmm_call_restore_frozen(const vmm_entry *entry, vmm_vm *vm, const char *snap_dir,
                            cmn_error *err);
int vmm_call_disk_overlay(const vmm_entry *entry, const char *backing, const char *path,
                          cmn_error *err);
int vmm_call_disk_flatten(const vmm_entry *entry, const char *src, bool src_overlay,
                          const char *path, cmn_error *err);
int vmm_call_shutdown(const vmm_entry *entry, vmm_vm *vm, int timeout_ms, cmn_error *err);
int vmm_call_powerdown(const vmm_entry *entry, vmm_vm *vm, int timeout_ms, cmn_error *err);
/* Warm restore (VMM_CALL_WARM): frozen picks restore_frozen's VMM. */
int vmm_call_restore_prepare(const vmm_entry *entry, vmm_vm *vm, const char *snap_dir, bool frozen,
                             cmn_error *err);
/* Nothing when vm->warm is false or the driver lacks it. */
void vmm_call_warm_discard(const vmm_entry *entry, vmm_vm *vm);
void vmm_call_release(const vmm_entry *entry, vmm_vm *vm);
void vmm_call_cleanup(const vmm_entry *entry, vmm_vm *vm);

#endif
