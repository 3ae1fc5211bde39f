/* snapshot.h: the snapshot manager (docs/architecture.md §4).
 *
 * It owns the folder transitions under <instance dir>/snapshots:
 *   snapshot-latest/  the visible standby artifact; exists exactly in Standby
 *   snapshot-base/    the hidden retained base (drivers with VMM_CAP_BASE_REUSE)
 * A folder counts as complete only once the marker file SNAP_MARKER, written and
 * fsynced after the driver's snapshot call (and after an fsync of every file
 * and folder in it), is present. Drivers only read and write inside the folder
 * they are handed. */
#ifndef EMBER_AGENT_SNAPSHOT_H
#define EMBER_AGENT_SNAPSHOT_H

#include "common/error.h"
#include "drivers/hypervisor.h"
#include "drivers/registry.h"

#include <stdbool.h>

#define SNAP_DIR "snapshots"
#define SNAP_LATEST "snapshot-latest"
#define SNAP_BASE "snapshot-base"
#define SNAP_MARKER ".complete"
/* In the snapshot-latest of a clone that has not run yet (ForkInstance):
 * the absolute path of the frozen snapshot folder it restores from
 * (manager_fork.c); nothing else but the marker is there. */
#define SNAP_FROZEN_LINK "frozen-from"

/* One VM and its driver, as the snapshot manager needs them. */
typedef struct snap_target {
  const vmm_entry *entry; /* driver calls go through agent/vmm_call.h */
  unsigned caps;          /* effective capabilities (vmm_entry.caps), possibly
                             narrowed by the caller (Stop without a graceful exit) */
  vmm_vm *vm;
  const char *inst_dir;
  int shutdown_timeout_ms; /* graceful VMM exit wait */
} snap_target;

/* Every decision about these folders (their paths, whether one is complete,
 * when one is removed) is taken here; the instance manager only calls the
 * functions below and never builds a snapshot path itself. */

/* Whether snapshot-latest of inst_dir is complete: the instance's standby
 * artifact exists. */
bool snap_latest_complete(const char *inst_dir);
/* fsyncs every file and folder in snap_dir, then writes and fsyncs the marker. */
int snap_mark_complete(const char *snap_dir, vmm_snap_kind kind, cmn_error *err);
/* Removes the marker first (durably), so a crash never leaves a folder that
 * looks complete while it is being rewritten. */
int snap_unmark(const char *snap_dir, cmn_error *err);

/* When err is RESOURCE_EXHAUSTED without figures (an ENOSPC from a small
 * write), appends the free and total space of the filesystem of inst_dir. */
void snap_explain_space(const char *inst_dir, cmn_error *err);

/* Before a cold boot: removes both folders; with LIVE_RAM_FILE creates an empty
 * snapshot-base and returns it in *mem_dir (else *mem_dir = NULL). */
int snap_prepare_boot(const snap_target *t, char **mem_dir, cmn_error *err);
/* After a successful cold boot: with LIVE_RAM_FILE the base holds the guest's
 * live RAM, so it is complete for a diff standby; mark it. */
int snap_after_boot(const snap_target *t, cmn_error *err);

/* Standby of a running or paused VM (docs/architecture.md §4 steps 1–5). On success the
 * VMM has ended and been reaped, snapshot-latest is complete and *kind says how
 * it was written. On failure the VM runs again if it was running before (it
 * stays paused if it was paused), the promoted target is discarded, and the
 * next standby will be full. */
int snap_standby(const snap_target *t, bool was_running, vmm_snap_kind *kind, cmn_error *err);
/* Restore from a complete snapshot-latest. On success the VM runs and latest
 * became snapshot-base (base reuse) or was removed. On failure the new VMM is
 * killed and reaped, its files removed, and snapshot-latest is untouched. */
int snap_restore(const snap_target *t, cmn_error *err);
/* For a Standby instance: has the driver start the VMM snap_restore would
 * start and leave it waiting (vm->warm; drivers/hypervisor.h
 * restore_prepare). snap_restore then uses it. Changes nothing on disk but
 * the driver's own files in the instance folder. */
int snap_restore_prepare(const snap_target *t, cmn_error *err);
/* After a restore whose VMM runs (also used by recovery): latest -> base, or
 * latest removed without base reuse. */
int snap_finish_restore(const snap_target *t, cmn_error *err);
/* Ends the VMM: graceful shutdown only where the driver has one, else SIGKILL
 * at once; always reaps; then release + cleanup of driver files. */
void snap_end_vmm(const snap_target *t);
/* Before an operation on a Running or Paused instance: a complete
 * snapshot-latest there was left by a restore whose guest runs but whose
 * latest could not be retired (snap_restore logged it); retire it now
 * (snap_finish_restore), so latest exists only in Standby. 0 when there was
 * none or it was retired; -1 with err when retiring failed (retried next time). */
int snap_retire_stale_latest(const snap_target *t, cmn_error *err);
/* Recovery with a live VMM: removes a half-written standby target, i.e. a
 * snapshot-latest that is not complete and a snapshot-base that exists but is
 * not complete. Complete folders stay. Tries both; -1 with err when one failed. */
int snap_discard_incomplete(const char *inst_dir, cmn_error *err);
/* Recovery with no VMM and a complete snapshot-latest (Standby): removes
 * snapshot-base, complete or not (no guest runs that a diff could continue). */
int snap_discard_base(const char *inst_dir, cmn_error *err);
/* Removes snapshot-latest and snapshot-base (Stop). */
int snap_discard_all(const char *inst_dir, cmn_error *err);
/* A clone made by ForkInstance: creates its snapshot-latest, complete,
 * holding only SNAP_FROZEN_LINK (frozen_dir, absolute), so the instance is in
 * Standby and its restore starts the VMM with restore_frozen() from
 * frozen_dir, never writing there. After that restore there is no base: the
 * clone's next standby is full, the ones after it diffs. */
int snap_prepare_clone(const char *inst_dir, const char *frozen_dir, cmn_error *err);
/* Copies the complete snapshot-latest of inst_dir, file by file
 * (cmn_file_clone), into dst (exists, empty), without changing it; for a
 * clone that has not run, the files of the frozen folder it points at. The
 * bytes written are added to *copied. */
int snap_copy_latest(const char *inst_dir, const char *dst, uint64_t *copied, cmn_error *err);

/* Removes folders retired by snap_finish_restore (snapshots/.retired-*). Deleting
 * a large snapshot takes tens of milliseconds, so it is kept off the restore's
 * critical path: the monitor and start-up call this instead. */
void snap_collect_garbage(const char *inst_dir);

#endif
