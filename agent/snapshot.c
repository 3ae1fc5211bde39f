/* snapshot.c: the snapshot manager (see snapshot.h and docs/architecture.md §4). */
#include "agent/snapshot.h"
#include "agent/vmm_call.h"
#include "common/clone.h"
#include "common/cleanup.h"
#include "common/fault.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static char *snap_latest_path(const char *inst_dir)
{
  return cmn_asprintf("%s/" SNAP_DIR "/" SNAP_LATEST, inst_dir);
}

static char *snap_base_path(const char *inst_dir)
{
  return cmn_asprintf("%s/" SNAP_DIR "/" SNAP_BASE, inst_dir);
}

static bool snap_is_complete(const char *snap_dir)
{
  cleanup_free char *m = cmn_asprintf("%s/" SNAP_MARKER, snap_dir);
  return cmn_is_regular_file(m);
}

bool snap_latest_complete(const char *inst_dir)
{
  cleanup_free char *latest = snap_latest_path(inst_dir);
  return snap_is_complete(latest);
}

int snap_discard_incomplete(const char *inst_dir, cmn_error *err)
{
  cleanup_free char *latest = snap_latest_path(inst_dir);
  cleanup_free char *base = snap_base_path(inst_dir);
  int rc = 0;
  if (!snap_is_complete(latest) && cmn_rm_rf(latest, err) < 0)
    rc = -1;
  if (cmn_is_dir(base) && !snap_is_complete(base) && cmn_rm_rf(base, err) < 0)
    rc = -1;
  return rc;
}

int snap_discard_base(const char *inst_dir, cmn_error *err)
{
  cleanup_free char *base = snap_base_path(inst_dir);
  if (cmn_is_dir(base))
    return cmn_rm_rf(base, err);
  return 0;
}

int snap_mark_complete(const char *snap_dir, vmm_snap_kind kind, cmn_error *err)
{
  if (cmn_fsync_tree(snap_dir, err) < 0)
    return cmn_err_prefix(err, "make snapshot durable");
  /* Only the marker's presence counts (its content is informational), and it is
   * created after everything else is durable: creating it and an fsync of the
   * folder are enough, no temp file and rename. */
  cleanup_free char *m = cmn_asprintf("%s/" SNAP_MARKER, snap_dir);
  const char *body = kind == VMM_SNAP_DIFF ? "diff\n" : "full\n";
  cleanup_close int fd = cmn_open(m, O_WRONLY | O_CREAT | O_TRUNC, 0640);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "create %s", m);
  if (write(fd, body, strlen(body)) != (ssize_t)strlen(body))
    return cmn_err_errno(err, CMN_INTERNAL, errno, "write %s", m);
  return cmn_fsync_path(snap_dir, err);
}

int snap_unmark(const char *snap_dir, cmn_error *err)
{
  cleanup_free char *m = cmn_asprintf("%s/" SNAP_MARKER, snap_dir);
  if (unlink(m) < 0) {
    if (errno == ENOENT)
      return 0;
    return cmn_err_errno(err, CMN_INTERNAL, errno, "remove %s", m);
  }
  return cmn_fsync_path(snap_dir, err);
}

static int snap_ensure_root(const char *inst_dir, cmn_error *err)
{
  cleanup_free char *root = cmn_asprintf("%s/" SNAP_DIR, inst_dir);
  return cmn_mkdir_p(root, 0750, err);
}

int snap_discard_all(const char *inst_dir, cmn_error *err)
{
  cleanup_free char *latest = snap_latest_path(inst_dir);
  cleanup_free char *base = snap_base_path(inst_dir);
  if (cmn_rm_rf(latest, err) < 0 || cmn_rm_rf(base, err) < 0)
    return -1;
  /* An empty root goes too (a start refused for lack of space leaves no
   * trace); one still holding retired folders stays for the collector. */
  cleanup_free char *root = cmn_asprintf("%s/" SNAP_DIR, inst_dir);
  if (rmdir(root) == 0)
    return cmn_fsync_path(inst_dir, err);
  if (cmn_is_dir(root))
    return cmn_fsync_path(root, err);
  return 0;
}

void snap_explain_space(const char *inst_dir, cmn_error *err)
{
  if (err == NULL || err->code != CMN_RESOURCE_EXHAUSTED || strstr(err->msg, " free") != NULL)
    return;
  cmn_fs_space sp;
  cmn_error e2 = {0};
  if (cmn_fs_space_of(inst_dir, true, &sp, &e2) < 0)
    return;
  size_t n = strlen(err->msg);
  snprintf(err->msg + n, sizeof err->msg - n, " (%s has %llu MiB free of %llu MiB)", sp.desc,
           (unsigned long long)(sp.free_bytes >> 20), (unsigned long long)(sp.total_bytes >> 20));
  cmn_fs_space_free(&sp);
}

static bool snap_live_ram(const snap_target *t)
{
  return (t->caps & VMM_CAP_BASE_REUSE) && (t->caps & VMM_CAP_LIVE_RAM_FILE);
}

int snap_prepare_boot(const snap_target *t, char **mem_dir, cmn_error *err)
{
  *mem_dir = NULL;
  if (snap_discard_all(t->inst_dir, err) < 0)
    return -1;
  if (!snap_live_ram(t))
    return 0;
  /* The driver reserves the RAM file (every block, before the guest runs);
   * this check only refuses early, with the figures, before any folder is
   * made. */
  uint64_t ram = t->vm->spec != NULL ? t->vm->spec->memory_mib << 20 : 0;
  if (cmn_fs_need(t->inst_dir, ram, "the guest's RAM file", err) < 0)
    return -1;
  cleanup_free char *base = snap_base_path(t->inst_dir);
  if (snap_ensure_root(t->inst_dir, err) < 0 || cmn_mkdir_p(base, 0750, err) < 0) {
    cmn_error e2 = {0};
    snap_discard_all(t->inst_dir, &e2);
    return -1;
  }
  *mem_dir = steal_ptr(base);
  return 0;
}

int snap_after_boot(const snap_target *t, cmn_error *err)
{
  if (!snap_live_ram(t))
    return 0;
  cleanup_free char *base = snap_base_path(t->inst_dir);
  return snap_mark_complete(base, VMM_SNAP_DIFF, err);
}

void snap_end_vmm(const snap_target *t)
{
  vmm_vm *vm = t->vm;
  if (vm->proc.pid > 0) {
    bool gone = false;
    if ((t->caps & VMM_CAP_GRACEFUL_SHUTDOWN) && vmm_call_can(t->entry, VMM_CALL_SHUTDOWN)) {
      cmn_error err = {0};
      if (vmm_call_shutdown(t->entry, vm, t->shutdown_timeout_ms, &err) == 0)
        gone = cmn_proc_wait(&vm->proc, t->shutdown_timeout_ms, NULL) == 0;
      else
        cmn_warn(vm->id, NULL, "graceful VMM exit failed, killing it: %s", err.msg);
    }
    if (!gone)
      cmn_proc_kill_reap(&vm->proc);
  }
  vmm_call_release(t->entry, vm);
  vmm_call_cleanup(t->entry, vm);
  memset(&vm->proc, 0, sizeof vm->proc);
}

/* Step 4 of a standby: the VM must keep running; the promoted target (or the
 * fresh full target) is discarded entirely so the next standby is full. */
static void snap_standby_undo(const snap_target *t, const char *latest, bool was_running)
{
  cmn_error e2 = {0};
  if (cmn_rm_rf(latest, &e2) < 0)
    cmn_error_log(t->vm->id, "standby", "discard failed target: %s", e2.msg);
  if (was_running && vmm_call_resume(t->entry, t->vm, &e2) < 0)
    cmn_error_log(t->vm->id, "standby", "resume after failed standby: %s", e2.msg);
}

int snap_standby(const snap_target *t, bool was_running, vmm_snap_kind *kind, cmn_error *err)
{
  vmm_vm *vm = t->vm;
  if (vmm_call_need_caps(t->entry, NULL, VMM_CAP_SNAPSHOT | (was_running ? VMM_CAP_PAUSE : 0),
                         "standby", err) < 0)
    return -1;
  if (snap_ensure_root(t->inst_dir, err) < 0)
    return -1;
  cleanup_free char *latest = snap_latest_path(t->inst_dir);
  cleanup_free char *base = snap_base_path(t->inst_dir);

  /* 1. Pause. */
  int64_t t0 = cmn_now_us();
  if (was_running) {
    if (vmm_call_pause(t->entry, vm, err) < 0)
      return cmn_err_prefix(err, "pause before standby");
  }
  int64_t t_pause = cmn_now_us();
  if (cmn_fault("snap.standby.after_pause", err) < 0)
    goto fail;

  /* 2. Choose the target: promote a complete base (diff) or a fresh folder (full). */
  if (cmn_rm_rf(latest, err) < 0)
    goto fail;
  *kind = VMM_SNAP_FULL;
  if ((t->caps & VMM_CAP_BASE_REUSE) && snap_is_complete(base)) {
    /* Unmark before the rename: a crash must never leave a complete-looking
     * latest whose diff was not written. */
    if (snap_unmark(base, err) < 0 || cmn_fault("snap.standby.after_unmark", err) < 0 ||
        cmn_rename_durable(base, latest, err) < 0)
      goto fail;
    *kind = VMM_SNAP_DIFF;
  } else {
    /* A base that is not complete is never reused. For a LIVE_RAM_FILE driver it
     * may be the running guest's RAM: unlinking it is safe (the mapping stays)
     * and the full snapshot below carries all of RAM. */
    if (cmn_rm_rf(base, err) < 0 || cmn_mkdir_p(latest, 0750, err) < 0)
      goto fail;
  }
  int64_t t_target = cmn_now_us();
  if (cmn_fault("snap.standby.after_promote", err) < 0)
    goto fail;

  /* 3. The driver writes into latest. */
  if (vmm_call_snapshot(t->entry, vm, latest, *kind, err) < 0) {
    cmn_err_prefix(err, "%s snapshot", *kind == VMM_SNAP_DIFF ? "diff" : "full");
    goto fail;
  }
  int64_t t_snap = cmn_now_us();
  if (cmn_fault("snap.standby.after_snapshot", err) < 0)
    goto fail;

  /* 5. Durable, then marked. */
  if (snap_mark_complete(latest, *kind, err) < 0)
    goto fail;
  /* The snapshot is complete on disk: from here the standby only finishes. */
  cmn_fault_exit_only("snap.standby.after_mark");
  int64_t t_durable = cmn_now_us();
  snap_end_vmm(t);
  /* Where a standby's time goes, for operators and benchmarks. */
  cmn_debug(vm->id, "standby",
            "phases (us): pause %lld, target %lld, snapshot %lld, durable %lld, vmm exit %lld",
            (long long)(t_pause - t0), (long long)(t_target - t_pause),
            (long long)(t_snap - t_target), (long long)(t_durable - t_snap),
            (long long)(cmn_now_us() - t_durable));
  return 0;

fail:
  snap_standby_undo(t, latest, was_running);
  snap_explain_space(t->inst_dir, err);
  return -1;
}

void snap_collect_garbage(const char *inst_dir)
{
  cleanup_free char *root = cmn_asprintf("%s/" SNAP_DIR, inst_dir);
  cleanup_closedir DIR *d = opendir(root);
  if (d == NULL)
    return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strncmp(de->d_name, ".retired-", 9) != 0)
      continue;
    cleanup_free char *p = cmn_asprintf("%s/%s", root, de->d_name);
    cmn_error err = {0};
    if (cmn_rm_rf(p, &err) < 0)
      cmn_warn(NULL, "gc", "%s", err.msg);
  }
}

/* The frozen folder a clone's snapshot-latest points at, or NULL (not a
 * clone's, or unreadable: then it is restored as an ordinary snapshot, which
 * fails cleanly). */
static char *snap_frozen_of(const char *latest)
{
  cleanup_free char *link = cmn_asprintf("%s/" SNAP_FROZEN_LINK, latest);
  char *buf = NULL;
  size_t len = 0;
  if (cmn_file_read(link, 4096, &buf, &len, NULL) < 0)
    return NULL;
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\0'))
    buf[--len] = '\0';
  if (len == 0 || buf[0] != '/' || strlen(buf) != len) {
    free(buf);
    return NULL;
  }
  return buf;
}

int snap_prepare_clone(const char *inst_dir, const char *frozen_dir, cmn_error *err)
{
  cleanup_free char *latest = snap_latest_path(inst_dir);
  cleanup_free char *link = cmn_asprintf("%s/" SNAP_FROZEN_LINK, latest);
  cleanup_free char *body = cmn_asprintf("%s\n", frozen_dir);
  if (snap_ensure_root(inst_dir, err) < 0 || cmn_mkdir_p(latest, 0750, err) < 0 ||
      cmn_file_write_atomic(link, body, strlen(body), 0640, err) < 0)
    return -1;
  return snap_mark_complete(latest, VMM_SNAP_FULL, err);
}

int snap_copy_latest(const char *inst_dir, const char *dst, uint64_t *copied, cmn_error *err)
{
  cleanup_free char *latest = snap_latest_path(inst_dir);
  if (!snap_is_complete(latest))
    return cmn_err_set(err, CMN_DATA_LOSS, "no complete snapshot in %s", latest);
  cleanup_free char *frozen = snap_frozen_of(latest);
  const char *src = frozen != NULL ? frozen : latest;
  cleanup_closedir DIR *d = opendir(src);
  if (d == NULL)
    return cmn_err_errno(err, errno == ENOENT ? CMN_DATA_LOSS : CMN_INTERNAL, errno, "open %s",
                         src);
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' && (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                                 strcmp(de->d_name, SNAP_MARKER) == 0))
      continue;
    cleanup_free char *from = cmn_asprintf("%s/%s", src, de->d_name);
    cleanup_free char *to = cmn_asprintf("%s/%s", dst, de->d_name);
    if (!cmn_is_regular_file(from))
      return cmn_err_set(err, CMN_INTERNAL, "snapshot %s holds %s, which is not a file", src,
                         de->d_name);
    uint64_t n = 0;
    if (cmn_file_clone(from, to, NULL, &n, err) < 0)
      return -1;
    *copied += n;
  }
  return 0;
}

int snap_finish_restore(const snap_target *t, cmn_error *err)
{
  cleanup_free char *latest = snap_latest_path(t->inst_dir);
  cleanup_free char *base = snap_base_path(t->inst_dir);
  cleanup_free char *frozen = snap_frozen_of(latest);
  if (!(t->caps & VMM_CAP_BASE_REUSE) || frozen != NULL) {
    /* A clone's first restore leaves no base: its RAM is a private mapping of
     * the frozen folder, which is never written. */
    if (frozen != NULL && cmn_rm_rf(base, err) < 0)
      return -1;
    /* One durable rename now; the removal later (snap_collect_garbage). */
    cleanup_free char *retired =
        cmn_asprintf("%s/" SNAP_DIR "/.retired-%lld", t->inst_dir, (long long)cmn_wall_us());
    return cmn_rename_durable(latest, retired, err);
  }
  if (cmn_rm_rf(base, err) < 0)
    return -1;
  if (cmn_fault("snap.restore.before_rename", err) < 0)
    return -1;
  return cmn_rename_durable(latest, base, err);
}

int snap_retire_stale_latest(const snap_target *t, cmn_error *err)
{
  if (!snap_latest_complete(t->inst_dir))
    return 0;
  return snap_finish_restore(t, err);
}

int snap_restore_prepare(const snap_target *t, cmn_error *err)
{
  vmm_vm *vm = t->vm;
  cleanup_free char *latest = snap_latest_path(t->inst_dir);
  if (!snap_is_complete(latest))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "no complete snapshot in %s", latest);
  cleanup_free char *frozen = snap_frozen_of(latest);
  if (frozen != NULL && !cmn_is_dir(frozen))
    return cmn_err_set(err, CMN_DATA_LOSS, "the snapshot %s this clone restores from is missing",
                       frozen);
  memset(&vm->proc, 0, sizeof vm->proc);
  return vmm_call_restore_prepare(t->entry, vm, frozen != NULL ? frozen : latest, frozen != NULL,
                                  err);
}

int snap_restore(const snap_target *t, cmn_error *err)
{
  vmm_vm *vm = t->vm;
  if (vmm_call_need_caps(t->entry, NULL, VMM_CAP_SNAPSHOT, "restore", err) < 0)
    return -1;
  cleanup_free char *latest = snap_latest_path(t->inst_dir);
  if (!snap_is_complete(latest))
    return cmn_err_set(err, CMN_DATA_LOSS,
                       "no complete snapshot in %s: the standby artifact is missing", latest);
  if (!vm->warm) /* a warm VMM (snap_restore_prepare) is the driver's to use */
    memset(&vm->proc, 0, sizeof vm->proc);
  int64_t t0 = cmn_now_us();
  cleanup_free char *frozen = snap_frozen_of(latest);
  if (frozen != NULL && !cmn_is_dir(frozen))
    return cmn_err_set(err, CMN_DATA_LOSS, "the snapshot %s this clone restores from is missing",
                       frozen);
  if (cmn_fault("snap.restore.before_driver", err) < 0 ||
      (frozen != NULL ? vmm_call_restore_frozen(t->entry, vm, frozen, err)
                      : vmm_call_restore(t->entry, vm, latest, err)) < 0) {
    /* Kill and reap the new VMM, remove its files; latest stays untouched so
     * the instance is still Standby and the restore can be retried. */
    if (vm->proc.pid > 0)
      cmn_proc_kill_reap(&vm->proc);
    vmm_call_release(t->entry, vm);
    vmm_call_cleanup(t->entry, vm);
    memset(&vm->proc, 0, sizeof vm->proc);
    snap_explain_space(t->inst_dir, err);
    return -1;
  }
  /* The guest runs (and may already write to a LIVE_RAM_FILE snapshot): past
   * the point of no return. Failing to retire latest now must not kill it: the
   * caller records Running and the next operation or recovery retries. */
  cmn_fault_exit_only("snap.restore.after_driver");
  int64_t t_driver = cmn_now_us();
  cmn_error e2 = {0};
  if (snap_finish_restore(t, &e2) < 0)
    cmn_warn(vm->id, "restore", "retiring snapshot-latest failed (retried later): %s", e2.msg);
  cmn_debug(vm->id, "restore", "phases (us): driver %lld, retire snapshot-latest %lld",
            (long long)(t_driver - t0), (long long)(cmn_now_us() - t_driver));
  return 0;
}
