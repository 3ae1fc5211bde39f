/* snapshot.c: snapshot and restore through QEMU migration streams.
 *
 * QEMU 7.2 has no `file:` migration URI, so the driver opens <snap_dir>/state
 * itself and hands the descriptor over QMP (`getfd`, SCM_RIGHTS); the stream
 * then goes to or comes from `fd:<name>`. The migration bandwidth cap is
 * raised first (7.2's default of ~128 MiB/s makes saves several times slower).
 *
 * Two kinds of stream, recorded in <snap_dir>/qemu.json (meta.c):
 *   shared: guest RAM is the shared file <snap_dir>/memory and the stream has
 *           device state only (x-ignore-shared). This is a DIFF: the RAM file
 *           is the promoted base that the guest has been running on, and the
 *           agent's fsync of the folder flushes its dirty pages.
 *   stream: the stream holds all of guest RAM (FULL, or any snapshot of a VM
 *           with anonymous RAM).
 * Restore of a shared snapshot maps <snap_dir>/memory shared and sets
 * x-ignore-shared on the target before `migrate-incoming`; restore of a full
 * stream with base reuse fills a fresh <snap_dir>/memory from the stream, so
 * the restored guest runs on <snap_dir>/memory either way and the folder can
 * become the next base. `cont` is the last step: until then the guest has not
 * run and the snapshot is unmodified. After it, qemu.json is marked consumed
 * so the same folder is never restored twice.
 *
 * Frozen snapshots (save, restore_frozen) are the same two kinds, with
 * "frozen" in qemu.json: save writes the device-state stream and then, with
 * the VM still paused, copies the shared RAM file to <snap_dir>/memory
 * (cmn_file_clone: a reflink or a sparse copy); a VM with anonymous RAM gets
 * a full stream. restore_frozen maps <snap_dir>/memory PRIVATELY (share=off)
 * and loads the device-state stream with x-ignore-shared on: QEMU only skips
 * the pages of blocks that are shared on its own side, and this block is not,
 * but the source sent none of them, so the private map keeps the file's
 * content (verified with QEMU 7.2). Nothing is ever written into the folder,
 * so any number of clones restore from it, even at once. A private file
 * mapping still reads the file for every page the clone has not written yet:
 * the folder must stay unmodified for as long as a clone runs (unlinking or
 * replacing files whole is fine, writing into them is not). */
#include "drivers/qemu/internal.h"

#include "common/cleanup.h"
#include "common/clone.h"
#include "common/fault.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAP_FD_OUT "ember-snapshot"
#define SNAP_FD_IN "ember-restore"

static int snap_set_ignore_shared(const qemu_host *h, vmm_vm *vm, bool on, cmn_error *err)
{
  cJSON *args = cJSON_CreateObject();
  cJSON *caps = cJSON_AddArrayToObject(args, "capabilities");
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "capability", "x-ignore-shared");
  cJSON_AddBoolToObject(c, "state", on);
  cJSON_AddItemToArray(caps, c);
  return qemu_vm_cmd(h, vm, "migrate-set-capabilities", args, NULL, err);
}

/* Passes fd to QEMU under name (getfd); our copy stays ours to close. */
static int snap_pass_fd(const qemu_host *h, vmm_vm *vm, int fd, const char *name, cmn_error *err)
{
  qemu_qmp *q = qemu_vm_qmp(h, vm, err);
  if (q == NULL)
    return -1;
  cJSON *args = cJSON_CreateObject();
  cJSON_AddStringToObject(args, "fdname", name);
  return qemu_qmp_execute(q, "getfd", args, fd, h->command_timeout_ms, NULL, err);
}

/* Polls query-migrate until the migration ends. QEMU's reason for a failure
 * ("error-desc") becomes the error message. */
static int snap_migrate_wait(const qemu_host *h, vmm_vm *vm, const char *what, cmn_error *err)
{
  int64_t deadline = cmn_now_us() + (int64_t)h->migrate_timeout_ms * 1000;
  int sleep_ms = 1;
  for (;;) {
    cJSON *ret = NULL;
    if (qemu_vm_cmd(h, vm, "query-migrate", NULL, &ret, err) < 0)
      return -1;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(ret, "status");
    const char *s = cJSON_IsString(st) ? st->valuestring : "none";
    if (strcmp(s, "completed") == 0) {
      cJSON_Delete(ret);
      return 0;
    }
    if (strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0) {
      const cJSON *desc = cJSON_GetObjectItemCaseSensitive(ret, "error-desc");
      const char *why = cJSON_IsString(desc) ? desc->valuestring : "QEMU gave no reason";
      /* QEMU reports a write that hit a full filesystem with strerror(ENOSPC). */
      cmn_err_set(err, strstr(why, "No space left") != NULL ? CMN_RESOURCE_EXHAUSTED : CMN_INTERNAL,
                  "%s %s: %s", what, s, why);
      cJSON_Delete(ret);
      return -1;
    }
    cJSON_Delete(ret);
    if (cmn_now_us() >= deadline) {
      cmn_error ignored = {0};
      qemu_vm_cmd(h, vm, "migrate_cancel", NULL, NULL, &ignored);
      return cmn_err_set(err, CMN_DEADLINE_EXCEEDED, "%s did not finish within %d ms", what,
                         h->migrate_timeout_ms);
    }
    cmn_sleep_ms(sleep_ms);
    if (sleep_ms < 20)
      sleep_ms *= 2;
  }
}

/* Gives a QEMU whose connection broke a moment to finish exiting; true when
 * it has ended. */
static bool snap_wait_exit(const vmm_vm *vm) { return cmn_proc_wait_exit(&vm->proc, 1000); }

/* True when path is the very file (device and inode) the VM's RAM lives in. */
static bool snap_is_ram_file(const char *path, const qemu_vm_meta *m)
{
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == m->ram_dev &&
         st.st_ino == m->ram_ino;
}

static off_t snap_file_size(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Most a migration stream can take: device state only (shared RAM), or all
 * of RAM plus a page header per page and the device state (full stream). */
static uint64_t snap_stream_bound(bool shared, uint64_t mib)
{
  uint64_t dev = 8ull << 20;
  return shared ? dev : (mib << 20) + (mib << 20) / 256 + dev;
}

/* Migrates the paused VM into a new stream file at state_path (open_flags
 * add O_TRUNC or O_EXCL to O_WRONLY | O_CREAT): device state only when
 * shared (x-ignore-shared), else all of RAM. Returns when QEMU has written
 * every byte; *len (may be NULL) is the stream's length. */
static int snap_migrate_out(const qemu_host *h, vmm_vm *vm, const char *state_path, int open_flags,
                            bool shared, off_t *len, cmn_error *err)
{
  /* The stream's space is reserved before it is written: on a full
   * filesystem the standby fails here, at once, with the figures, and never
   * half way through a stream. The file is cut to what QEMU wrote after. */
  cleanup_close int state_fd = cmn_open(state_path, O_WRONLY | O_CREAT | open_flags, 0600);
  if (state_fd < 0)
    return cmn_err_errno(err, errno == EEXIST ? CMN_FAILED_PRECONDITION : CMN_INTERNAL, errno,
                         "create %s", state_path);
  if (cmn_file_reserve(state_fd, state_path, snap_stream_bound(shared, vm->spec->memory_mib), err) <
      0)
    return cmn_err_prefix(err, "%s stream", shared ? "device state" : "full");
  if (snap_set_ignore_shared(h, vm, shared, err) < 0)
    return -1;
  cJSON *params = cJSON_CreateObject();
  cJSON_AddNumberToObject(params, "max-bandwidth", (double)h->max_bandwidth);
  if (qemu_vm_cmd(h, vm, "migrate-set-parameters", params, NULL, err) < 0)
    return -1;

  if (snap_pass_fd(h, vm, state_fd, SNAP_FD_OUT, err) < 0)
    return -1;
  cJSON *margs = cJSON_CreateObject();
  cJSON_AddStringToObject(margs, "uri", "fd:" SNAP_FD_OUT);
  if (qemu_vm_cmd(h, vm, "migrate", margs, NULL, err) < 0)
    return -1;
  if (snap_migrate_wait(h, vm, "snapshot migration", err) < 0)
    return -1;
  /* QEMU wrote through the same open file description (SCM_RIGHTS shares it),
   * so its offset is the stream's length; the reserved tail goes. */
  off_t stream_len = lseek(state_fd, 0, SEEK_CUR);
  if (stream_len <= 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "length of the stream in %s", state_path);
  if (ftruncate(state_fd, stream_len) < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "cut %s", state_path);
  if (len != NULL)
    *len = stream_len;
  return 0;
}

/* The VM must be paused (or stopped after a migration) for op. */
static int snap_check_paused(const qemu_host *h, vmm_vm *vm, const char *op, cmn_error *err)
{
  vmm_run_state rs;
  cleanup_free char *raw = NULL;
  if (qemu_query_state(h, vm, &rs, &raw, err) < 0)
    return cmn_err_prefix(err, "%s", op);
  if (rs != VMM_STATE_PAUSED)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "%s needs a paused VM; it is %s", op, raw);
  return 0;
}

int qemu_snapshot(void *state, vmm_vm *vm, const char *snap_dir, vmm_snap_kind kind, cmn_error *err)
{
  const qemu_host *h = state;
  int64_t t0 = cmn_now_us();
  if (kind != VMM_SNAP_FULL && kind != VMM_SNAP_DIFF)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "unknown snapshot kind %d", (int)kind);
  if (snap_check_paused(h, vm, "snapshot", err) < 0)
    return -1;

  qemu_vm_meta vm_meta = {0};
  cmn_error merr = {0};
  if (qemu_vm_meta_read(vm, &vm_meta, &merr) < 0) {
    /* Without the record, a full stream is the kind that is always right. */
    cmn_warn(vm->id, "snapshot", "%s; writing a full stream", merr.msg);
    memset(&vm_meta, 0, sizeof vm_meta);
  }
  cleanup_free char *mem_path = cmn_asprintf("%s/%s", snap_dir, QEMU_SNAP_MEMORY);
  cleanup_free char *state_path = cmn_asprintf("%s/%s", snap_dir, QEMU_SNAP_STATE);
  cleanup_free char *meta_path = cmn_asprintf("%s/%s", snap_dir, QEMU_SNAP_META);
  bool shared = false;
  if (kind == VMM_SNAP_DIFF && vm_meta.ram_shared) {
    if (!snap_is_ram_file(mem_path, &vm_meta))
      return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                         "diff snapshot: %s is not the file this VM's RAM lives in", mem_path);
    shared = true;
  } else if (cmn_path_exists(mem_path) && !snap_is_ram_file(mem_path, &vm_meta)) {
    /* A full stream into a folder holding an old RAM file (a DIFF asked of a
     * VM with anonymous RAM): the file is not part of this snapshot. */
    if (unlink(mem_path) < 0)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "remove stale %s", mem_path);
  }
  /* qemu.json describes a finished stream only. */
  if (unlink(meta_path) < 0 && errno != ENOENT)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "remove %s", meta_path);

  if (cmn_fault("qemu.snapshot.before_migrate", err) < 0)
    return -1;
  if (snap_migrate_out(h, vm, state_path, O_TRUNC, shared, NULL, err) < 0)
    return cmn_err_prefix(err, "snapshot");
  if (cmn_fault("qemu.snapshot.after_migrate", err) < 0)
    return -1;

  qemu_snap_meta sm = {.ram_shared = shared,
                       .memory_mib = vm->spec->memory_mib,
                       .ram_reserved = shared && vm_meta.ram_reserved};
  memcpy(sm.vmgenid, vm_meta.vmgenid, sizeof sm.vmgenid);
  if (qemu_snap_meta_write(snap_dir, &sm, err) < 0)
    return -1;
  if (cmn_fault("qemu.snapshot.after_meta", err) < 0)
    return -1;
  cmn_info(vm->id, "snapshot", "%s snapshot (%s) in %lld ms, state %lld bytes",
           kind == VMM_SNAP_DIFF ? "diff" : "full",
           shared ? "device state, shared RAM" : "full stream",
           (long long)((cmn_now_us() - t0) / 1000), (long long)snap_file_size(state_path));
  return 0;
}

/* The running QEMU's own descriptor of the VM's RAM file, as a path
 * (/proc/<pid>/fd/<n>): QEMU keeps the file of a memory-backend-file open,
 * and this finds it wherever the agent has moved the folder since, even
 * after the name was removed. NULL when there is none. */
static char *snap_ram_fd_path(const vmm_vm *vm, const qemu_vm_meta *m)
{
  if (vm->proc.pid <= 0)
    return NULL;
  cleanup_free char *fd_dir = cmn_asprintf("/proc/%d/fd", (int)vm->proc.pid);
  DIR *d = opendir(fd_dir);
  if (d == NULL)
    return NULL;
  char *found = NULL;
  struct dirent *e;
  while (found == NULL && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char *p = cmn_asprintf("%s/%s", fd_dir, e->d_name);
    if (snap_is_ram_file(p, m))
      found = p;
    else
      free(p);
  }
  closedir(d);
  return found;
}

int qemu_save(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  const qemu_host *h = state;
  int64_t t0 = cmn_now_us();
  if (snap_check_paused(h, vm, "save", err) < 0)
    return -1;
  qemu_vm_meta vm_meta = {0};
  cmn_error merr = {0};
  if (qemu_vm_meta_read(vm, &vm_meta, &merr) < 0) {
    cmn_warn(vm->id, "save", "%s; writing a full stream", merr.msg);
    memset(&vm_meta, 0, sizeof vm_meta);
  }
  cleanup_free char *ram_src = NULL;
  if (vm_meta.ram_shared && (ram_src = snap_ram_fd_path(vm, &vm_meta)) == NULL)
    cmn_warn(vm->id, "save", "QEMU (pid %d) has no RAM file open; writing a full stream",
             (int)vm->proc.pid);
  bool shared = ram_src != NULL;
  cleanup_free char *mem_path = cmn_asprintf("%s/%s", snap_dir, QEMU_SNAP_MEMORY);
  cleanup_free char *state_path = cmn_asprintf("%s/%s", snap_dir, QEMU_SNAP_STATE);
  cleanup_free char *meta_path = cmn_asprintf("%s/%s", snap_dir, QEMU_SNAP_META);
  if (cmn_path_exists(mem_path) || cmn_path_exists(meta_path))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "save: %s is not empty", snap_dir);

  if (cmn_fault("qemu.save.before_migrate", err) < 0)
    return -1;
  off_t stream_len = 0;
  if (snap_migrate_out(h, vm, state_path, O_EXCL, shared, &stream_len, err) < 0)
    return cmn_err_prefix(err, "save");
  if (cmn_fault("qemu.save.after_migrate", err) < 0)
    return -1;
  int64_t t1 = cmn_now_us();
  /* Only now: the guest is paused and QEMU wrote everything it had, so the
   * file is exactly the RAM the device state belongs to. */
  cmn_clone_method method = CMN_CLONE_NONE;
  uint64_t copied = 0;
  if (shared && cmn_file_clone(ram_src, mem_path, &method, &copied, err) < 0)
    return cmn_err_prefix(err, "save: guest RAM");
  if (cmn_fault("qemu.save.after_copy", err) < 0)
    return -1;
  int64_t t2 = cmn_now_us();

  qemu_snap_meta sm = {.ram_shared = shared, .memory_mib = vm->spec->memory_mib, .frozen = true};
  memcpy(sm.vmgenid, vm_meta.vmgenid, sizeof sm.vmgenid);
  if (qemu_snap_meta_write(snap_dir, &sm, err) < 0)
    return cmn_err_prefix(err, "save");
  if (cmn_fault("qemu.save.after_meta", err) < 0)
    return -1;
  if (shared)
    cmn_info(vm->id, "save",
             "saved (device state %lld bytes in %lld ms; RAM %llu MiB by %s, %llu bytes copied, "
             "in %lld ms)",
             (long long)stream_len, (long long)((t1 - t0) / 1000),
             (unsigned long long)vm->spec->memory_mib, cmn_clone_method_name(method),
             (unsigned long long)copied, (long long)((t2 - t1) / 1000));
  else
    cmn_info(vm->id, "save", "saved (full stream, %lld bytes) in %lld ms", (long long)stream_len,
             (long long)((t2 - t0) / 1000));
  return 0;
}

/* Checks that an existing shared RAM file has exactly the VM's size. */
static int snap_check_ram_file(const char *path, uint64_t mib, qemu_vm_meta *m, cmn_error *err)
{
  struct stat st;
  if (stat(path, &st) < 0)
    return cmn_err_errno(err, errno == ENOENT ? CMN_DATA_LOSS : CMN_INTERNAL, errno,
                         "snapshot RAM file %s", path);
  if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != mib << 20)
    return cmn_err_set(err, CMN_DATA_LOSS, "snapshot RAM file %s has %lld bytes, expected %llu",
                       path, (long long)st.st_size, (unsigned long long)(mib << 20));
  m->ram_shared = true;
  m->ram_dev = st.st_dev;
  m->ram_ino = st.st_ino;
  return 0;
}

static void snap_unlink_created(char **path)
{
  if (*path != NULL) {
    unlink(*path);
    free(*path);
  }
}

/* What restore and restore_frozen check and open before they spawn QEMU. */
typedef struct snap_source {
  char *dir; /* absolute snap_dir */
  qemu_snap_meta sm;
  int state_fd; /* <dir>/state, read-only */
  char *state_path;
  char *mem_path;
} snap_source;

static void snap_source_free(snap_source *src)
{
  free(src->dir);
  free(src->state_path);
  free(src->mem_path);
  if (src->state_fd >= 0)
    close(src->state_fd);
}

/* Checks the VM and the snapshot folder and opens its stream. Everything
 * missing or unreadable in the folder is DATA_LOSS (docs/errors.md). */
static int snap_source_open(const vmm_vm *vm, const char *snap_dir_in, const char *op,
                            snap_source *src, cmn_error *err)
{
  *src = (snap_source){.state_fd = -1};
  if (!vm->warm && vm->proc.pid > 0 && cmn_proc_alive(&vm->proc))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "a QEMU (pid %d) already runs this VM",
                       (int)vm->proc.pid);
  if (vm->spec == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s needs the VM's spec", op);
  if (vmm_spec_check_host_files(vm->spec, true, err) < 0)
    return -1;
  src->dir = snap_dir_in[0] == '/' ? cmn_strdup(snap_dir_in) : realpath(snap_dir_in, NULL);
  if (src->dir == NULL)
    return cmn_err_errno(err, CMN_DATA_LOSS, errno, "snapshot folder %s", snap_dir_in);
  if (qemu_snap_meta_read(src->dir, &src->sm, err) < 0) {
    if (err != NULL && err->code != CMN_INTERNAL)
      err->code = CMN_DATA_LOSS;
    return cmn_err_prefix(err, "%s: not a complete QEMU snapshot", op);
  }
  if (src->sm.consumed)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                       "%s: a guest has already run on %s/%s since this snapshot; it "
                       "cannot be restored again",
                       op, src->dir, QEMU_SNAP_MEMORY);
  if (src->sm.memory_mib != vm->spec->memory_mib)
    return cmn_err_set(
        err, CMN_INVALID_ARGUMENT, "%s: snapshot has %llu MiB of RAM, the spec asks for %llu", op,
        (unsigned long long)src->sm.memory_mib, (unsigned long long)vm->spec->memory_mib);
  src->state_path = cmn_asprintf("%s/%s", src->dir, QEMU_SNAP_STATE);
  src->mem_path = cmn_asprintf("%s/%s", src->dir, QEMU_SNAP_MEMORY);
  src->state_fd = cmn_open(src->state_path, O_RDONLY, 0);
  if (src->state_fd < 0)
    return cmn_err_errno(err, errno == ENOENT ? CMN_DATA_LOSS : CMN_INTERNAL, errno, "%s: %s", op,
                         src->state_path);
  return 0;
}

/* What one restore loads and how its QEMU is launched. */
typedef struct snap_plan {
  snap_source src;
  qemu_launch l;
  char vmgenid[QEMU_GUID_LEN + 1];
  char *created_ram; /* a RAM file made for this restore; goes unless the guest ran */
} snap_plan;

static void snap_plan_free(snap_plan *p)
{
  snap_source_free(&p->src);
  snap_unlink_created(&p->created_ram);
}

static const char *snap_op(bool frozen) { return frozen ? "fork" : "restore"; }

/* Checks the folder, makes or reserves the RAM file and writes qemu-vm.json:
 * everything a restore (frozen: restore_frozen) does before it spawns. */
static int snap_plan_make(const qemu_host *h, vmm_vm *vm, const char *snap_dir_in, bool frozen,
                          snap_plan *p, cmn_error *err)
{
  const char *op = snap_op(frozen);
  if (snap_source_open(vm, snap_dir_in, op, &p->src, err) < 0)
    return -1;
  const qemu_snap_meta *sm = &p->src.sm;
  const char *mem_path = p->src.mem_path;
  qemu_vm_meta vm_meta = {0};
  if (!frozen) {
    /* Clones may be mapping a frozen folder's memory file privately: it must
     * never be mapped shared or grow a RAM file (restore_frozen only). */
    if (sm->frozen)
      return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                         "restore: %s is a saved (frozen) snapshot; only a fork restores from it",
                         p->src.dir);
    if (sm->ram_shared) {
      /* Reserved when it was made (qemu.json says so), unless made by an
       * older emberd: then the blocks are reserved now, before QEMU maps it.
       * (Reserving again is not free: ~25 ms for 256 MiB of a fragmented
       * ext4 file, a page walk on tmpfs.) */
      if (snap_check_ram_file(mem_path, sm->memory_mib, &vm_meta, err) < 0 ||
          (!sm->ram_reserved && qemu_ram_file_reserve(mem_path, sm->memory_mib, err) < 0))
        return cmn_err_prefix(err, "restore");
      vm_meta.ram_reserved = true;
      p->l.ram_path = mem_path;
    } else if (h->base_reuse) {
      /* A RAM file made here for a full stream goes again on any failure,
       * so a refused restore leaves the snapshot folder as it found it. */
      if (qemu_ram_file_create(mem_path, sm->memory_mib, &vm_meta, err) < 0)
        return cmn_err_prefix(err, "restore");
      p->l.ram_path = mem_path;
      p->created_ram = cmn_strdup(mem_path);
    }
    /* The same generation ID as at the snapshot: this is the same VM going
     * on. A snapshot without one (older emberd, microvm) gets no device. */
    memcpy(vm_meta.vmgenid, sm->vmgenid, sizeof vm_meta.vmgenid);
  } else {
    if (sm->ram_shared) {
      /* QEMU would create a missing file (in the folder), and map a short
       * one up to a SIGBUS: both are checked first. */
      struct stat st;
      if (stat(mem_path, &st) < 0)
        return cmn_err_errno(err, errno == ENOENT ? CMN_DATA_LOSS : CMN_INTERNAL, errno,
                             "fork: snapshot RAM file %s", mem_path);
      if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != sm->memory_mib << 20)
        return cmn_err_set(err, CMN_DATA_LOSS,
                           "fork: snapshot RAM file %s has %lld bytes, expected %llu", mem_path,
                           (long long)st.st_size, (unsigned long long)(sm->memory_mib << 20));
      p->l.ram_path = mem_path;
      p->l.ram_private = true;
    }
    /* The clone's RAM is in no file it owns (a private map, or anonymous),
     * so its next snapshot is a full stream. A new generation ID tells the
     * guest it is a copy, when the snapshot's VM had the device at all. */
    if (sm->vmgenid[0] != '\0' && qemu_vmgenid_new(vm_meta.vmgenid, err) < 0)
      return -1;
  }
  if (qemu_vm_meta_write(vm, &vm_meta, err) < 0)
    return -1;
  memcpy(p->vmgenid, vm_meta.vmgenid, sizeof p->vmgenid);
  p->l.incoming = true;
  p->l.vmgenid = p->vmgenid;
  return 0;
}

/* Spawns the incoming QEMU of a plan and sets x-ignore-shared as the
 * snapshot's source had it. */
static int snap_spawn_incoming(const qemu_host *h, vmm_vm *vm, const snap_plan *p, const char *op,
                               cmn_error *err)
{
  off_t log_off = qemu_log_size(vm);
  if (qemu_spawn(h, vm, &p->l, op, err) < 0)
    return cmn_err_prefix(err, "%s", op);
  if (snap_set_ignore_shared(h, vm, p->src.sm.ram_shared, err) < 0) {
    cmn_err_prefix(err, "%s", op);
    return qemu_err_add_log(vm, log_off, err);
  }
  return 0;
}

/* Loads the stream into the waiting QEMU and sends `cont`. On return 0 the
 * guest runs. */
static int snap_load_and_cont(const qemu_host *h, vmm_vm *vm, snap_source *src, const char *op,
                              const char *fault_before_cont, cmn_error *err)
{
  off_t log_off = qemu_log_size(vm);
  if (snap_pass_fd(h, vm, src->state_fd, SNAP_FD_IN, err) < 0) {
    cmn_err_prefix(err, "%s", op);
    return qemu_err_add_log(vm, log_off, err);
  }
  close(steal_fd(src->state_fd));
  cJSON *args = cJSON_CreateObject();
  cJSON_AddStringToObject(args, "uri", "fd:" SNAP_FD_IN);
  if (qemu_vm_cmd(h, vm, "migrate-incoming", args, NULL, err) < 0 ||
      snap_migrate_wait(h, vm, "incoming migration", err) < 0) {
    /* QEMU 7.2 exits when an incoming stream fails to load, after printing
     * why; that reason goes into the error. */
    if (!snap_wait_exit(vm))
      cmn_err_prefix(err, "%s from %s", op, src->state_path);
    else
      cmn_err_set(err, CMN_INTERNAL, "%s from %s: QEMU exited while loading the snapshot", op,
                  src->state_path);
    return qemu_err_add_log(vm, log_off, err);
  }
  if (cmn_fault(fault_before_cont, err) < 0)
    return -1;
  if (qemu_vm_cmd(h, vm, "cont", NULL, NULL, err) < 0) {
    /* A lost reply is not a failed cont: if the guest runs, the snapshot is
     * consumed and the restore has happened. */
    vmm_run_state rs = VMM_STATE_OTHER;
    cmn_error qerr = {0};
    if (qemu_query_state(h, vm, &rs, NULL, &qerr) < 0 || rs != VMM_STATE_RUNNING) {
      cmn_err_prefix(err, "%s", op);
      return qemu_err_add_log(vm, log_off, err);
    }
    cmn_warn(vm->id, op, "cont reported %s, but the guest runs", err->msg);
    cmn_err_clear(err);
  }
  return 0;
}

/* ---- warm restore ----------------------------------------------------------------- */

static void snap_warm_forget(qemu_vm *q)
{
  free(q->warm_dir);
  q->warm_dir = NULL;
  free(q->warm_created_ram);
  q->warm_created_ram = NULL;
}

int qemu_restore_prepare(void *state, vmm_vm *vm, const char *snap_dir, bool frozen, cmn_error *err)
{
  const qemu_host *h = state;
  const char *op = snap_op(frozen);
  if (vm->warm || (vm->proc.pid > 0 && cmn_proc_alive(&vm->proc)))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "a QEMU (pid %d) already runs this VM",
                       (int)vm->proc.pid);
  /* A full stream restored with base reuse needs a RAM file of the guest's
   * size made in the folder: not ahead of the restore, where it would take
   * that much disk (and be copied by a fork or a saved snapshot of the
   * Standby instance) for as long as the instance waits. */
  qemu_snap_meta peek = {0};
  if (!frozen && h->base_reuse && qemu_snap_meta_read(snap_dir, &peek, NULL) == 0 &&
      !peek.ram_shared)
    return cmn_err_set(err, CMN_UNIMPLEMENTED,
                       "%s holds a full stream: its restore makes the RAM file, not done ahead",
                       snap_dir);
  __attribute__((cleanup(snap_plan_free))) snap_plan p = {.src.state_fd = -1};
  if (snap_plan_make(h, vm, snap_dir, frozen, &p, err) < 0 ||
      snap_spawn_incoming(h, vm, &p, op, err) < 0) {
    vmm_proc_end(vm);
    qemu_release(state, vm);
    qemu_cleanup(state, vm);
    return cmn_err_prefix(err, "prepare a warm QEMU");
  }
  qemu_vm *q = vm->priv;
  q->warm_dir = cmn_strdup(p.src.dir);
  q->warm_frozen = frozen;
  q->warm_ram = p.l.ram_path != NULL;
  q->warm_ram_ino = 0;
  struct stat st;
  if (p.l.ram_path != NULL && stat(p.l.ram_path, &st) == 0) {
    q->warm_ram_dev = st.st_dev;
    q->warm_ram_ino = st.st_ino;
  }
  q->warm_created_ram = p.created_ram; /* goes with the VMM unless a guest runs on it */
  p.created_ram = NULL;
  vm->warm = true;
  cmn_info(vm->id, "warm", "QEMU pid %d waits for %s", (int)vm->proc.pid, p.src.dir);
  return 0;
}

void qemu_warm_discard(void *state, vmm_vm *vm)
{
  if (!vm->warm)
    return;
  vm->warm = false;
  vmm_proc_end(vm);
  qemu_vm *q = vm->priv;
  if (q != NULL && q->warm_created_ram != NULL)
    unlink(q->warm_created_ram);
  if (q != NULL)
    snap_warm_forget(q);
  qemu_release(state, vm);
  qemu_cleanup(state, vm);
}

/* Whether the warm QEMU in vm can load snap_dir: prepared for that folder
 * and kind, alive, still waiting for a stream, and the RAM file it mapped is
 * the folder's. Fills p as snap_plan_make would have. A reason on false. */
static bool snap_warm_take(const qemu_host *h, vmm_vm *vm, const char *snap_dir_in, bool frozen,
                           snap_plan *p, cmn_error *why)
{
  qemu_vm *q = vm->priv;
  const char *op = snap_op(frozen);
  if (q == NULL || q->warm_dir == NULL || q->warm_frozen != frozen)
    return cmn_err_set(why, CMN_FAILED_PRECONDITION, "prepared for another kind of restore"), false;
  if (!cmn_proc_alive(&vm->proc))
    return cmn_err_set(why, CMN_UNAVAILABLE, "its QEMU (pid %d) has exited", (int)vm->proc.pid),
           false;
  if (snap_source_open(vm, snap_dir_in, op, &p->src, why) < 0)
    return false;
  if (strcmp(p->src.dir, q->warm_dir) != 0)
    return cmn_err_set(why, CMN_FAILED_PRECONDITION, "prepared for %s", q->warm_dir), false;
  if (q->warm_ram) {
    struct stat st;
    if (stat(p->src.mem_path, &st) < 0 || st.st_dev != q->warm_ram_dev ||
        st.st_ino != q->warm_ram_ino)
      return cmn_err_set(why, CMN_FAILED_PRECONDITION, "%s is not the file it mapped",
                         p->src.mem_path),
             false;
  }
  cleanup_free char *raw = NULL;
  vmm_run_state rs = VMM_STATE_OTHER;
  if (qemu_query_state(h, vm, &rs, &raw, why) < 0)
    return false;
  if (strcmp(raw, "inmigrate") != 0)
    return cmn_err_set(why, CMN_FAILED_PRECONDITION, "its QEMU is %s, not waiting", raw), false;
  p->l.ram_path = q->warm_ram ? p->src.mem_path : NULL;
  p->created_ram = q->warm_created_ram; /* a failed load removes it, as a cold one does */
  q->warm_created_ram = NULL;
  snap_warm_forget(q);
  return true;
}

/* restore and restore_frozen: a warm QEMU when one waits for this folder,
 * else a fresh one; then the load, `cont`, and (restore) the folder marked
 * consumed. */
static int snap_restore_into(const qemu_host *h, vmm_vm *vm, const char *snap_dir_in, bool frozen,
                             cmn_error *err)
{
  int64_t t0 = cmn_now_us();
  const char *op = snap_op(frozen);
  __attribute__((cleanup(snap_plan_free))) snap_plan p = {.src.state_fd = -1};
  bool warm = false;
  vm->warm_used = false;
  if (vm->warm) {
    cmn_error why = {0};
    warm = snap_warm_take(h, vm, snap_dir_in, frozen, &p, &why);
    if (!warm) {
      cmn_warn(vm->id, op, "warm QEMU (pid %d) not used: %s", (int)vm->proc.pid, why.msg);
      qemu_warm_discard((void *)h, vm);
      snap_plan_free(&p);
      p = (snap_plan){.src.state_fd = -1};
    }
    vm->warm = false;
  }
  if (!warm && (snap_plan_make(h, vm, snap_dir_in, frozen, &p, err) < 0 ||
                snap_spawn_incoming(h, vm, &p, op, err) < 0))
    return -1;
  int64_t t1 = cmn_now_us();
  if (snap_load_and_cont(h, vm, &p.src, op,
                         frozen ? "qemu.restore_frozen.before_cont" : "qemu.restore.before_cont",
                         err) < 0)
    return -1;
  vm->warm_used = warm;
  /* From here on the guest runs on <snap_dir>/memory when there is one. */
  if (!frozen && p.l.ram_path != NULL) {
    p.src.sm.consumed = true;
    cmn_error merr = {0};
    if (qemu_snap_meta_write(p.src.dir, &p.src.sm, &merr) < 0)
      cmn_warn(vm->id, "restore", "cannot mark %s consumed: %s", p.src.dir, merr.msg);
  }
  free(p.created_ram); /* the guest runs on it: it stays */
  p.created_ram = NULL;
  cmn_fault_exit_only(frozen ? "qemu.restore_frozen.after_cont" : "qemu.restore.after_cont");
  int64_t t2 = cmn_now_us();
  cmn_info(vm->id, op, "%s %s (%s) in %lld ms (%s QEMU %lld ms, load and cont %lld ms)",
           frozen ? "started from" : "restored from", p.src.dir,
           !p.src.sm.ram_shared ? "full stream"
           : frozen             ? "private map of its RAM file"
                                : "shared RAM",
           (long long)((t2 - t0) / 1000), warm ? "warm" : "fresh", (long long)((t1 - t0) / 1000),
           (long long)((t2 - t1) / 1000));
  return 0;
}

int qemu_restore(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  return snap_restore_into(state, vm, snap_dir, false, err);
}

int qemu_restore_frozen(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  return snap_restore_into(state, vm, snap_dir, true, err);
}
