/* testvm_driver.c: the test-only driver (see testvm_driver.h). */
#include "test/unit/testvm_driver.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* Counters are shared by every instance's operations, which run in parallel. */
static int tv_fail(int *counter, const char *what, cmn_error *err)
{
  int v = __atomic_load_n(counter, __ATOMIC_RELAXED);
  while (v > 0) {
    if (__atomic_compare_exchange_n(counter, &v, v - 1, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      return cmn_err_set(err, CMN_INTERNAL, "testvm: injected %s failure", what);
  }
  return 0;
}

static int tv_init(const cJSON *config, void **state, cmn_error *err)
{
  (void)config;
  (void)err;
  *state = cmn_calloc(1, sizeof(testvm_state));
  return 0;
}

static void tv_fini(void *state) { free(state); }

static char *tv_describe(void *state) { return cmn_strdup("testvm 1.0"); }

static int tv_spawn(vmm_vm *vm, cmn_error *err)
{
  cleanup_free char *tag = cmn_asprintf("%s/testvm", vm->dir);
  const char *const argv[] = {"/bin/sh", "-c", "while :; do sleep 1; done", "testvm", tag, NULL};
  cmn_spawn_opts o = {.log_path = vm->vmm_log_path};
  return cmn_proc_spawn(argv, &o, &vm->proc, err);
}

static int tv_copy(const char *from, const char *to, cmn_error *err)
{
  cleanup_free char *buf = NULL;
  size_t len = 0;
  if (cmn_file_read(from, 1 << 20, &buf, &len, err) < 0)
    return -1;
  return cmn_file_write_atomic(to, buf, len, 0640, err);
}

static int tv_start(void *state, vmm_vm *vm, const char *mem_dir, cmn_error *err)
{
  testvm_state *s = state;
  if (tv_fail(&s->fail_start, "start", err) < 0)
    return -1;
  cleanup_free char *ram = cmn_asprintf("%s/ram", vm->dir);
  if (cmn_file_write_atomic(ram, "boot\n", 5, 0640, err) < 0)
    return -1;
  if (mem_dir != NULL) {
    cleanup_free char *mem = cmn_asprintf("%s/memory", mem_dir);
    if (cmn_file_write_atomic(mem, "live\n", 5, 0640, err) < 0)
      return -1;
  }
  return tv_spawn(vm, err);
}

static int tv_run_state(vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  if (!cmn_proc_alive(&vm->proc))
    return cmn_err_set(err, CMN_INTERNAL, "testvm: VMM is gone");
  cleanup_free char *p = cmn_asprintf("%s/paused", vm->dir);
  *out = cmn_path_exists(p) ? VMM_STATE_PAUSED : VMM_STATE_RUNNING;
  return 0;
}

static int tv_adopt(void *state, vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  testvm_state *s = state;
  if (tv_fail(&s->fail_adopt, "adopt", err) < 0)
    return -1;
  return tv_run_state(vm, out, err);
}

static int tv_query(void *state, vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  return tv_run_state(vm, out, err);
}

static int tv_pause(void *state, vmm_vm *vm, cmn_error *err)
{
  testvm_state *s = state;
  if (tv_fail(&s->fail_pause, "pause", err) < 0)
    return -1;
  cleanup_free char *p = cmn_asprintf("%s/paused", vm->dir);
  return cmn_file_write_atomic(p, "", 0, 0640, err);
}

static int tv_resume(void *state, vmm_vm *vm, cmn_error *err)
{
  testvm_state *s = state;
  if (tv_fail(&s->fail_resume, "resume", err) < 0)
    return -1;
  cleanup_free char *p = cmn_asprintf("%s/paused", vm->dir);
  return cmn_rm_rf(p, err);
}

static int tv_snapshot(void *state, vmm_vm *vm, const char *snap_dir, vmm_snap_kind kind,
                       cmn_error *err)
{
  testvm_state *s = state;
  cleanup_free char *ram = cmn_asprintf("%s/ram", vm->dir);
  cleanup_free char *mem = cmn_asprintf("%s/memory", snap_dir);
  cleanup_free char *st = cmn_asprintf("%s/state", snap_dir);
  if (kind == VMM_SNAP_DIFF && !cmn_is_regular_file(mem))
    return cmn_err_set(err, CMN_INTERNAL, "testvm: diff without a base memory file");
  if (kind == VMM_SNAP_FULL && cmn_path_exists(mem))
    return cmn_err_set(err, CMN_INTERNAL, "testvm: full snapshot into a non-empty folder");
  /* Half-write first, then fail: the manager must discard this target. */
  if (cmn_file_write_atomic(st, "partial\n", 8, 0640, err) < 0)
    return -1;
  if (tv_fail(&s->fail_snapshot, "snapshot", err) < 0)
    return -1;
  if (tv_copy(ram, mem, err) < 0 || cmn_file_write_atomic(st, "state\n", 6, 0640, err) < 0)
    return -1;
  if (kind == VMM_SNAP_DIFF)
    __atomic_fetch_add(&s->n_snapshot_diff, 1, __ATOMIC_RELAXED);
  else
    __atomic_fetch_add(&s->n_snapshot_full, 1, __ATOMIC_RELAXED);
  return 0;
}

/* Warm restore: a warm VMM is the same process a restore spawns; priv
 * remembers the folder it is for. */
static void tv_warm_discard(void *state, vmm_vm *vm)
{
  testvm_state *s = state;
  if (!vm->warm)
    return;
  vm->warm = false;
  if (vm->proc.pid > 0)
    cmn_proc_kill_reap(&vm->proc);
  memset(&vm->proc, 0, sizeof vm->proc);
  free(vm->priv);
  vm->priv = NULL;
  __atomic_fetch_add(&s->n_warm_discard, 1, __ATOMIC_RELAXED);
}

static int tv_restore_prepare(void *state, vmm_vm *vm, const char *snap_dir, bool frozen,
                              cmn_error *err)
{
  testvm_state *s = state;
  (void)frozen;
  if (vm->warm || cmn_proc_alive(&vm->proc))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "testvm: a VMM runs");
  __atomic_fetch_add(&s->n_prepare_calls, 1, __ATOMIC_RELAXED);
  if (tv_fail(&s->unimpl_prepare, "prepare", err) < 0) {
    err->code = CMN_UNIMPLEMENTED;
    return -1;
  }
  if (tv_fail(&s->fail_prepare, "prepare", err) < 0)
    return -1;
  if (tv_spawn(vm, err) < 0)
    return -1;
  vm->priv = cmn_strdup(snap_dir);
  vm->warm = true;
  __atomic_store_n(&s->warm_pid, (int)vm->proc.pid, __ATOMIC_RELAXED);
  __atomic_fetch_add(&s->n_prepare, 1, __ATOMIC_RELAXED);
  return 0;
}

/* The warm VMM when it is alive and for snap_dir, else a fresh one. */
static int tv_spawn_or_warm(testvm_state *s, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  vm->warm_used = false;
  if (vm->warm) {
    bool ok = cmn_proc_alive(&vm->proc) && vm->priv != NULL && strcmp(vm->priv, snap_dir) == 0;
    if (ok) {
      vm->warm = false;
      free(vm->priv);
      vm->priv = NULL;
      vm->warm_used = true;
      __atomic_fetch_add(&s->n_warm_used, 1, __ATOMIC_RELAXED);
      return 0;
    }
    tv_warm_discard(s, vm);
  }
  return tv_spawn(vm, err);
}

static int tv_restore(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  testvm_state *s = state;
  if (tv_fail(&s->fail_restore, "restore", err) < 0)
    return -1;
  cleanup_free char *ram = cmn_asprintf("%s/ram", vm->dir);
  cleanup_free char *mem = cmn_asprintf("%s/memory", snap_dir);
  cleanup_free char *paused = cmn_asprintf("%s/paused", vm->dir);
  if (tv_spawn_or_warm(s, vm, snap_dir, err) < 0)
    return -1;
  if (tv_fail(&s->fail_restore_after_spawn, "restore after spawn", err) < 0)
    return -1;
  if (tv_copy(mem, ram, err) < 0 || cmn_rm_rf(paused, err) < 0)
    return -1;
  __atomic_fetch_add(&s->n_restore, 1, __ATOMIC_RELAXED);
  return 0;
}

/* save: the paused VM's "RAM" into a frozen folder; the VM stays paused. */
static int tv_save(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  testvm_state *s = state;
  cleanup_free char *ram = cmn_asprintf("%s/ram", vm->dir);
  cleanup_free char *paused = cmn_asprintf("%s/paused", vm->dir);
  cleanup_free char *mem = cmn_asprintf("%s/memory", snap_dir);
  cleanup_free char *st = cmn_asprintf("%s/state", snap_dir);
  if (!cmn_path_exists(paused))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "testvm: save needs a paused VM");
  if (tv_fail(&s->fail_save, "save", err) < 0)
    return -1;
  if (tv_copy(ram, mem, err) < 0 || cmn_file_write_atomic(st, "state\n", 6, 0640, err) < 0)
    return -1;
  __atomic_fetch_add(&s->n_save, 1, __ATOMIC_RELAXED);
  return 0;
}

/* restore_frozen: reads the frozen folder, writes only the VM's own files. */
static int tv_restore_frozen(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  testvm_state *s = state;
  if (tv_fail(&s->fail_restore, "restore", err) < 0)
    return -1;
  cleanup_free char *ram = cmn_asprintf("%s/ram", vm->dir);
  cleanup_free char *mem = cmn_asprintf("%s/memory", snap_dir);
  cleanup_free char *paused = cmn_asprintf("%s/paused", vm->dir);
  if (!cmn_is_regular_file(mem))
    return cmn_err_set(err, CMN_DATA_LOSS, "testvm: %s is missing", mem);
  if (tv_spawn_or_warm(s, vm, snap_dir, err) < 0)
    return -1;
  if (tv_copy(mem, ram, err) < 0 || cmn_rm_rf(paused, err) < 0)
    return -1;
  __atomic_fetch_add(&s->n_restore_frozen, 1, __ATOMIC_RELAXED);
  return 0;
}

static int tv_shutdown(void *state, vmm_vm *vm, int timeout_ms, cmn_error *err)
{
  testvm_state *s = state;
  __atomic_fetch_add(&s->n_shutdown, 1, __ATOMIC_RELAXED);
  cmn_proc_signal(&vm->proc, SIGTERM);
  return 0;
}

static void tv_cleanup(void *state, vmm_vm *vm)
{
  cleanup_free char *p = cmn_asprintf("%s/paused", vm->dir);
  cmn_rm_rf(p, NULL);
}

#define TESTVM_OPS                                                                                 \
  .init = tv_init, .fini = tv_fini, .describe = tv_describe, .start = tv_start, .adopt = tv_adopt, \
  .query = tv_query, .pause = tv_pause, .resume = tv_resume, .snapshot = tv_snapshot,              \
  .restore = tv_restore, .cleanup = tv_cleanup

const vmm_driver testvm_driver = {
    .type = "testvm",
    .caps = VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE | VMM_CAP_BASE_REUSE | VMM_CAP_FORK,
    TESTVM_OPS,
    .save = tv_save,
    .restore_frozen = tv_restore_frozen,
    .restore_prepare = tv_restore_prepare,
    .warm_discard = tv_warm_discard,
};

const vmm_driver testvm_live_driver = {
    .type = "testlive",
    .caps = VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE | VMM_CAP_BASE_REUSE | VMM_CAP_LIVE_RAM_FILE |
            VMM_CAP_GRACEFUL_SHUTDOWN | VMM_CAP_FORK,
    TESTVM_OPS,
    .save = tv_save,
    .restore_frozen = tv_restore_frozen,
    .restore_prepare = tv_restore_prepare,
    .warm_discard = tv_warm_discard,
    .shutdown = tv_shutdown,
};

const vmm_driver testvm_full_driver = {
    .type = "testfull",
    .caps = VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE,
    TESTVM_OPS,
};

const vmm_driver testvm_nosnap_driver = {
    .type = "testbare",
    .caps = 0,
    .init = tv_init,
    .fini = tv_fini,
    .start = tv_start,
    .adopt = tv_adopt,
    .query = tv_query,
    .cleanup = tv_cleanup,
};

/* A type whose binary is missing: init fails, so the registry marks it
 * unavailable with this reason (as a real driver does without its VMM). */
static int tv_gone_init(const cJSON *config, void **state, cmn_error *err)
{
  (void)config;
  (void)state;
  return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                     "no testgone binary: \"/nonexistent/testgone\" is not an executable file");
}

const vmm_driver testvm_gone_driver = {
    .type = "testgone",
    .caps = VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE,
    .init = tv_gone_init,
    .fini = tv_fini,
    .start = tv_start,
    .adopt = tv_adopt,
    .query = tv_query,
    .pause = tv_pause,
    .resume = tv_resume,
    .snapshot = tv_snapshot,
    .restore = tv_restore,
    .cleanup = tv_cleanup,
};
