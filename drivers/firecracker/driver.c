/* driver.c: the Firecracker driver (REST over the VMM's unix API socket).
 *
 * One firecracker process per VM, spawned in its own session with
 * `--api-sock <vm->dir>/firecracker.sock`. The binary is read once at init()
 * (`--version`) and the request bodies follow that version, because
 * Firecracker rejects unknown fields (serde deny_unknown_fields):
 *
 *   load memory          mem_backend {File} from 1.1 (mem_file_path before)
 *   load dirty tracking  enable_diff_snapshots before 1.13, track_dirty_pages
 *                        from 1.13 (the old name is deprecated there)
 *   Diff into the base   from 1.6 an existing memory file of the right size is
 *                        written in place (PR #4301); before, the file is
 *                        opened with truncate(true), so the diff goes to
 *                        memory.diff and is merged here (fc_merge.c)
 *
 * Console: the guest's serial port is Firecracker's stdout on every version
 * (PUT /serial exists only from 1.14, and it opens serial_out_path for writing
 * at offset 0 without O_APPEND, so a restored VMM would overwrite the console
 * history). The VMM is therefore started through `/bin/sh -c 'exec ...'` with
 * stdout appended to vm->console_path and stderr to vm->vmm_log_path; the
 * shell execs Firecracker in place, so the pid and start time are the VMM's.
 * Firecracker's own log goes to `--log-path <vm->dir>/firecracker.log`, a file
 * made fresh for each process (the previous one kept as firecracker.log.1),
 * because Firecracker writes it from offset 0 and because on stdout its lines
 * would cut the guest's console lines in two.
 *
 * Memory on restore: Firecracker maps the memory file privately, so the file
 * stays exactly the snapshot while the guest runs; the agent keeps the folder
 * as snapshot-base and the next standby writes a Diff into it.
 *
 * Fork (save, restore_frozen). save() is a Full /snapshot/create into the
 * empty folder, with the file names of the driver's own snapshots (state,
 * memory), so a file-by-file copy of a standby folder is the same thing.
 * restore_frozen() is a load with mem_backend File: Firecracker opens the
 * memory file read-only (File::open) and maps it MAP_PRIVATE, so the folder is
 * never written and any number of VMMs can load from it at once. The clone's
 * TAPs and vsock socket are its own, not the ones the snapshot recorded:
 * network_overrides (from 1.12) and vsock_override (from 1.16) re-point them;
 * an older release cannot, so a fork of a VM with NICs or vsock needs those.
 * On x86_64 from 1.8 (aarch64 from 1.9) Firecracker itself gives the guest a
 * new VMGenID generation ID on every snapshot load and notifies it
 * (docs/snapshotting/snapshot-support.md), so a clone's kernel reseeds its
 * random number generator without help from here.
 *
 * Dirty tracking and save. Every /snapshot/create resets Firecracker's dirty
 * page tracking: a Diff reads and clears the KVM dirty log, and from 1.8 a
 * Full clears it too (before 1.8 it left every page marked). After save() and
 * resume(), a Diff into the retained snapshot-base would therefore miss the
 * pages the guest wrote between loading that base and the save: the base
 * would silently become a corrupt image. So save() first creates
 * <vm->dir>/FC_FULL_NEXT, and while that file exists a DIFF request is
 * written as a Full snapshot into the base's memory file instead (every page;
 * from 1.6 Firecracker overwrites a same-size file in place, and this is the
 * case its own code documents for the file the VM was loaded from; before
 * 1.6 the Full goes to memory.diff and is merged like a Diff). The file is in
 * vm->dir, not in priv, so it survives an agent restart (release + adopt); it
 * is removed by the next snapshot that succeeds and whenever a fresh VMM is
 * spawned (whose tracking starts from what it loaded). restore_frozen() also
 * creates it: the clone's RAM is in no file of the instance, so a DIFF asked
 * of it by mistake still yields a whole image. */
#include "drivers/registry.h"
#include "drivers/rest_vmm.h"
#include "fc_merge.h"
#include "common/cleanup.h"
#include "common/fault.h"
#include "common/files.h"
#include "common/http_unix.h"
#include "common/log.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FC_SOCK_NAME "firecracker.sock"
/* While this file exists in vm->dir, the VM's dirty tracking no longer covers
 * everything since its base was loaded: the next snapshot is Full (see the
 * file comment). */
#define FC_FULL_NEXT "firecracker.full-next"
#define FC_START_TIMEOUT_MS 10000
#define FC_SNAPSHOT_TIMEOUT_MS (10 * 60 * 1000)

/* Read-only after init(): the binary and what its version accepts. */
typedef struct fc_host {
  char *binary;
  char *version_line; /* "Firecracker v1.16.1" */
  int major, minor, patch;
  bool mem_backend;      /* load: mem_backend (else mem_file_path) */
  bool load_track_dirty; /* load: track_dirty_pages (else enable_diff_snapshots) */
  bool diff_in_place;    /* create Diff writes into an existing memory file */
} fc_host;

/* Per-VM driver state (vm->priv). */
typedef struct fc_vm {
  char *sock;
  /* A warm Firecracker (vm->warm, restore_prepare): the snapshot folder it
   * was started for and whether for restore_frozen. */
  char *warm_dir;
  bool warm_frozen;
} fc_vm;

static bool fc_at_least(const fc_host *h, int major, int minor)
{
  return h->major > major || (h->major == major && h->minor >= minor);
}

/* ---- init: the binary and its version ------------------------------------ */

/* Runs `<binary> --version` and returns its stdout (at most 4 KiB). */
static char *fc_run_version(const char *binary, cmn_error *err)
{
  const char *const argv[] = {binary, "--version", NULL};
  char *out = cmn_proc_capture(argv, 4096, 5000, err);
  if (out == NULL)
    cmn_err_prefix(err, "%s --version", binary);
  return out;
}

/* Parses "Firecracker vX.Y.Z[-suffix]" from the first line. */
static int fc_parse_version(fc_host *h, const char *text, cmn_error *err)
{
  size_t line_len = strcspn(text, "\n");
  h->version_line = cmn_strndup(text, line_len);
  const char *p = strstr(h->version_line, "Firecracker v");
  if (p == NULL)
    return cmn_err_set(err, CMN_UNAVAILABLE,
                       "%s --version printed \"%s\", not a Firecracker "
                       "version",
                       h->binary, h->version_line);
  p += strlen("Firecracker v");
  long v[3];
  for (int i = 0; i < 3; i++) {
    char *end = NULL;
    errno = 0;
    v[i] = strtol(p, &end, 10);
    if (errno != 0 || end == p || v[i] < 0 || v[i] > 100000 || (i < 2 && *end != '.'))
      return cmn_err_set(err, CMN_UNAVAILABLE, "cannot parse the version in \"%s\"",
                         h->version_line);
    p = end + 1;
  }
  h->major = (int)v[0];
  h->minor = (int)v[1];
  h->patch = (int)v[2];
  if (h->major != 1 || h->minor < 1)
    return cmn_err_set(err, CMN_UNAVAILABLE,
                       "Firecracker %d.%d.%d is not supported (this driver speaks the 1.x "
                       "API from 1.1)",
                       h->major, h->minor, h->patch);
  h->mem_backend = fc_at_least(h, 1, 1);
  h->load_track_dirty = fc_at_least(h, 1, 13);
  h->diff_in_place = fc_at_least(h, 1, 6);
  return 0;
}

static void fc_host_free(fc_host *h)
{
  if (h == NULL)
    return;
  free(h->binary);
  free(h->version_line);
  free(h);
}

static int fc_init(const cJSON *config, void **state, cmn_error *err)
{
  *state = NULL;
  fc_host *h = cmn_calloc(1, sizeof *h);
  h->binary = vmm_find_binary("EMBER_FIRECRACKER_BIN", config, "firecracker", "firecracker", err);
  if (h->binary == NULL) {
    fc_host_free(h);
    return -1;
  }
  cleanup_free char *text = fc_run_version(h->binary, err);
  if (text == NULL || fc_parse_version(h, text, err) < 0) {
    fc_host_free(h);
    return -1;
  }
  cmn_info(NULL, "init",
           "firecracker driver: %s (%s): mem_backend=%d track_dirty_pages=%d "
           "diff_in_place=%d",
           h->binary, h->version_line, h->mem_backend, h->load_track_dirty, h->diff_in_place);
  *state = h;
  return 0;
}

static void fc_fini(void *state) { fc_host_free(state); }

static char *fc_describe(void *state)
{
  const fc_host *h = state;
  return cmn_asprintf("firecracker %d.%d.%d (%s)", h->major, h->minor, h->patch, h->binary);
}

/* ---- API calls ------------------------------------------------------------ */

static fc_vm *fc_priv(vmm_vm *vm)
{
  if (vm->priv == NULL) {
    fc_vm *p = cmn_calloc(1, sizeof *p);
    p->sock = cmn_asprintf("%s/%s", vm->dir, FC_SOCK_NAME);
    vm->priv = p;
  }
  return vm->priv;
}

/* One request; body (may be NULL) is serialised, not consumed. A status >= 300
 * becomes an error that keeps Firecracker's fault_message. *out (may be NULL)
 * receives the parsed response object of a 200. */
static int fc_call_t(vmm_vm *vm, const char *method, const char *path, const cJSON *body,
                     int timeout_ms, cJSON **out, cmn_error *err)
{
  if (out != NULL)
    *out = NULL;
  fc_vm *p = fc_priv(vm);
  cleanup_free char *json = body != NULL ? cJSON_PrintUnformatted(body) : NULL;
  if (body != NULL && json == NULL)
    return cmn_err_set(err, CMN_INTERNAL, "cannot serialise the body of %s %s", method, path);
  long status = 0;
  cleanup_free char *resp = NULL;
  if (cmn_http_request_timeout(p->sock, method, path, json, timeout_ms, &status, &resp, err) < 0)
    return cmn_err_prefix(err, "firecracker API");
  if (status >= 300) {
    cJSON *j = cJSON_Parse(resp);
    const cJSON *fm = cJSON_GetObjectItemCaseSensitive(j, "fault_message");
    cmn_err_set(err, CMN_INTERNAL, "firecracker rejected %s %s (HTTP %ld): %s", method, path,
                status, cJSON_IsString(fm) ? fm->valuestring : resp);
    cJSON_Delete(j);
    return -1;
  }
  if (out != NULL && status == 200) {
    *out = cJSON_Parse(resp);
    if (*out == NULL)
      return cmn_err_set(err, CMN_INTERNAL, "firecracker sent invalid JSON for %s %s", method,
                         path);
  }
  return 0;
}

static int fc_call(vmm_vm *vm, const char *method, const char *path, const cJSON *body, cJSON **out,
                   cmn_error *err)
{
  return fc_call_t(vm, method, path, body, CMN_HTTP_DEFAULT_TIMEOUT_MS, out, err);
}

/* PUT path with a freshly built body, which is freed. */
static int fc_put(vmm_vm *vm, const char *path, cJSON *body, cmn_error *err)
{
  int r = fc_call(vm, "PUT", path, body, NULL, err);
  cJSON_Delete(body);
  return r;
}

static int fc_set_vm_state(vmm_vm *vm, const char *state, cmn_error *err)
{
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "state", state);
  int r = fc_call(vm, "PATCH", "/vm", b, NULL, err);
  cJSON_Delete(b);
  return r;
}

static int fc_get_state(vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  cJSON *info = NULL;
  if (fc_call(vm, "GET", "/", NULL, &info, err) < 0)
    return -1;
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(info, "state");
  if (!cJSON_IsString(st)) {
    cJSON_Delete(info);
    return cmn_err_set(err, CMN_INTERNAL, "firecracker GET / has no \"state\"");
  }
  if (strcmp(st->valuestring, "Running") == 0)
    *out = VMM_STATE_RUNNING;
  else if (strcmp(st->valuestring, "Paused") == 0)
    *out = VMM_STATE_PAUSED;
  else
    *out = VMM_STATE_OTHER;
  cJSON_Delete(info);
  return 0;
}

/* ---- "next snapshot is Full" (see the file comment) ------------------------ */

static char *fc_full_next_path(const vmm_vm *vm)
{
  return cmn_asprintf("%s/%s", vm->dir, FC_FULL_NEXT);
}

static bool fc_full_next(const vmm_vm *vm)
{
  cleanup_free char *path = fc_full_next_path(vm);
  return cmn_path_exists(path);
}

static int fc_full_next_set(vmm_vm *vm, cmn_error *err)
{
  cleanup_free char *path = fc_full_next_path(vm);
  /* No fsync: the VMM whose tracking it describes does not survive a host
   * crash either. */
  cleanup_close int fd = cmn_open(path, O_WRONLY | O_CREAT, 0640);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "creating %s", path);
  return 0;
}

static int fc_full_next_clear(vmm_vm *vm, cmn_error *err)
{
  cleanup_free char *path = fc_full_next_path(vm);
  if (unlink(path) < 0 && errno != ENOENT)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "removing %s", path);
  return 0;
}

/* Spawns a fresh firecracker for vm and waits until its API answers. */
static int fc_spawn(const fc_host *h, vmm_vm *vm, cmn_error *err)
{
  fc_vm *p = fc_priv(vm);
  /* A fresh process tracks dirty pages from what it boots or loads. */
  if (fc_full_next_clear(vm, err) < 0)
    return -1;
  cleanup_free char *fc_log = cmn_asprintf("%s/firecracker.log", vm->dir);
  cleanup_free char *fc_log_old = cmn_asprintf("%s/firecracker.log.1", vm->dir);
  if (rename(fc_log, fc_log_old) < 0 && errno != ENOENT)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "rotating %s", fc_log);
  cleanup_close int log_fd = cmn_open(fc_log, O_WRONLY | O_CREAT | O_EXCL, 0640);
  if (log_fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "creating %s", fc_log);
  const char *const argv[] = {h->binary, "--api-sock", p->sock, "--log-path", fc_log, NULL};
  return vmm_rest_spawn(vm, "firecracker", argv, p->sock, "/", FC_START_TIMEOUT_MS, err);
}

/* ---- operations ------------------------------------------------------------ */

static int fc_configure_boot(const fc_host *h, vmm_vm *vm, cmn_error *err)
{
  const vmm_spec *s = vm->spec;
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "kernel_image_path", s->kernel);
  if (s->cmdline != NULL && s->cmdline[0] != '\0')
    cJSON_AddStringToObject(b, "boot_args", s->cmdline);
  if (s->initrd != NULL && s->initrd[0] != '\0')
    cJSON_AddStringToObject(b, "initrd_path", s->initrd);
  if (fc_put(vm, "/boot-source", b, err) < 0)
    return -1;

  b = cJSON_CreateObject();
  cJSON_AddNumberToObject(b, "vcpu_count", s->vcpus);
  cJSON_AddNumberToObject(b, "mem_size_mib", (double)s->memory_mib);
  /* Dirty page tracking from boot: the first standby is Full, but tracking
   * must already run for the Diff after a restore to be possible. */
  cJSON_AddBoolToObject(b, "track_dirty_pages", true);
  if (fc_put(vm, "/machine-config", b, err) < 0)
    return -1;

  for (size_t i = 0; i < s->n_disks; i++) {
    char id[32], path[64];
    snprintf(id, sizeof id, "drive%zu", i);
    snprintf(path, sizeof path, "/drives/%s", id);
    b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "drive_id", id);
    cJSON_AddStringToObject(b, "path_on_host", s->disks[i].path);
    /* The first disk is the root device (Firecracker adds root=/dev/vda). */
    cJSON_AddBoolToObject(b, "is_root_device", i == 0);
    /* Required before 1.6, optional after: always sent. */
    cJSON_AddBoolToObject(b, "is_read_only", s->disks[i].read_only);
    if (fc_put(vm, path, b, err) < 0)
      return -1;
  }
  for (size_t i = 0; i < s->n_nics; i++) {
    char id[32], path[64];
    snprintf(id, sizeof id, "eth%zu", i);
    snprintf(path, sizeof path, "/network-interfaces/%s", id);
    b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "iface_id", id);
    cJSON_AddStringToObject(b, "host_dev_name", s->nics[i].tap);
    if (s->nics[i].mac != NULL && s->nics[i].mac[0] != '\0')
      cJSON_AddStringToObject(b, "guest_mac", s->nics[i].mac);
    if (fc_put(vm, path, b, err) < 0)
      return -1;
  }
  if (s->vsock_cid != 0) {
    /* vsock_id is deprecated since 1.0 and optional: not sent. */
    cleanup_free char *uds = cmn_asprintf("%s/%s", vm->dir, VMM_VSOCK_SOCK);
    b = cJSON_CreateObject();
    cJSON_AddNumberToObject(b, "guest_cid", s->vsock_cid);
    cJSON_AddStringToObject(b, "uds_path", uds);
    if (fc_put(vm, "/vsock", b, err) < 0)
      return -1;
  }
  (void)h;
  return 0;
}

static int fc_start(void *state, vmm_vm *vm, const char *mem_dir, cmn_error *err)
{
  const fc_host *h = state;
  (void)mem_dir; /* no VMM_CAP_LIVE_RAM_FILE */
  if (vm->spec == NULL || vm->spec->kernel == NULL || vm->spec->kernel[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "firecracker needs a kernel image");
  if (vmm_spec_check_host_files(vm->spec, true, err) < 0)
    return -1;
  if (fc_spawn(h, vm, err) < 0)
    return -1;
  if (fc_configure_boot(h, vm, err) < 0)
    return -1;
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "action_type", "InstanceStart");
  if (fc_put(vm, "/actions", b, err) < 0)
    return -1;
  cmn_info(vm->id, "start", "firecracker pid %d started", (int)vm->proc.pid);
  return 0;
}

static int fc_adopt(void *state, vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  (void)state;
  if (!cmn_proc_alive(&vm->proc))
    return cmn_err_set(err, CMN_UNAVAILABLE, "firecracker pid %d is gone", (int)vm->proc.pid);
  if (fc_get_state(vm, out, err) < 0)
    return cmn_err_prefix(err, "adopting firecracker pid %d", (int)vm->proc.pid);
  return 0;
}

static int fc_query(void *state, vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  (void)state;
  return fc_get_state(vm, out, err);
}

static int fc_pause(void *state, vmm_vm *vm, cmn_error *err)
{
  (void)state;
  return fc_set_vm_state(vm, "Paused", err);
}

static int fc_resume(void *state, vmm_vm *vm, cmn_error *err)
{
  (void)state;
  return fc_set_vm_state(vm, "Resumed", err);
}

static int fc_snapshot(void *state, vmm_vm *vm, const char *snap_dir, vmm_snap_kind kind,
                       cmn_error *err)
{
  const fc_host *h = state;
  cleanup_free char *state_path = cmn_asprintf("%s/state", snap_dir);
  cleanup_free char *mem_path = cmn_asprintf("%s/memory", snap_dir);
  cleanup_free char *diff_path = cmn_asprintf("%s/memory.diff", snap_dir);
  bool merge = false;
  const char *target = mem_path;
  /* After save() the dirty tracking misses pages: the "diff" is a Full
   * snapshot into the base (same target, every page). */
  bool forced_full = kind == VMM_SNAP_DIFF && fc_full_next(vm);
  if (kind == VMM_SNAP_DIFF) {
    struct stat st;
    if (stat(mem_path, &st) < 0)
      return cmn_err_errno(err, CMN_FAILED_PRECONDITION, errno,
                           "diff snapshot: the base memory %s is missing", mem_path);
    uint64_t want = vm->spec != NULL ? vm->spec->memory_mib << 20 : 0;
    if (want != 0 && (uint64_t)st.st_size != want)
      return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                         "diff snapshot: base memory %s has %lld bytes, the VM has %llu", mem_path,
                         (long long)st.st_size, (unsigned long long)want);
    /* In place from 1.6 (same-size file is not truncated); before, a diff
     * aimed at the base would truncate it, so it goes aside and is merged. */
    if (!h->diff_in_place) {
      merge = true;
      target = diff_path;
      if (unlink(diff_path) < 0 && errno != ENOENT)
        return cmn_err_errno(err, CMN_INTERNAL, errno, "removing stale %s", diff_path);
    }
  }
  if (cmn_fault("fc.snapshot.before_create", err) < 0)
    return -1;
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "snapshot_type",
                          kind == VMM_SNAP_DIFF && !forced_full ? "Diff" : "Full");
  cJSON_AddStringToObject(b, "snapshot_path", state_path);
  cJSON_AddStringToObject(b, "mem_file_path", target);
  int64_t t0 = cmn_now_us();
  int r = fc_call_t(vm, "PUT", "/snapshot/create", b, FC_SNAPSHOT_TIMEOUT_MS, NULL, err);
  cJSON_Delete(b);
  if (r < 0)
    return -1;
  int64_t t1 = cmn_now_us();
  uint64_t copied = 0;
  if (merge) {
    if (cmn_fault("fc.snapshot.before_merge", err) < 0)
      return -1;
    if (fc_merge_diff(diff_path, mem_path, &copied, err) < 0)
      return cmn_err_prefix(err, "merging the diff snapshot");
  }
  /* Tracking now starts from what this folder holds. Left behind, the file
   * only makes the next snapshot Full again. */
  cmn_error cerr = {0};
  if (fc_full_next_clear(vm, &cerr) < 0)
    cmn_warn(vm->id, "snapshot", "%s", cerr.msg);
  cmn_info(vm->id, "snapshot", "%s snapshot in %lld us%s (merged %llu bytes in %lld us)",
           forced_full             ? "full (into the base: tracking was reset by a save)"
           : kind == VMM_SNAP_DIFF ? "diff"
                                   : "full",
           (long long)(t1 - t0), kind == VMM_SNAP_DIFF && !merge ? ", written in place" : "",
           (unsigned long long)copied, (long long)(cmn_now_us() - t1));
  return 0;
}

/* What a load of snap_dir needs before any VMM is spawned for it. */
static int fc_load_check(const fc_host *h, vmm_vm *vm, const char *snap_dir, bool frozen,
                         cmn_error *err)
{
  cleanup_free char *state_path = cmn_asprintf("%s/state", snap_dir);
  cleanup_free char *mem_path = cmn_asprintf("%s/memory", snap_dir);
  if (!cmn_is_regular_file(state_path) || !cmn_is_regular_file(mem_path))
    return cmn_err_set(err, CMN_DATA_LOSS, "snapshot %s lacks state or memory", snap_dir);
  const vmm_spec *s = vm->spec;
  if (frozen && s != NULL && s->n_nics > 0 && !fc_at_least(h, 1, 12))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                       "a fork with network interfaces needs Firecracker 1.12 or later "
                       "(network_overrides); this is %d.%d.%d",
                       h->major, h->minor, h->patch);
  if (frozen && s != NULL && s->vsock_cid != 0 && !fc_at_least(h, 1, 16))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                       "a fork with a vsock device needs Firecracker 1.16 or later "
                       "(vsock_override); this is %d.%d.%d",
                       h->major, h->minor, h->patch);
  return vmm_spec_check_host_files(vm->spec, false, err);
}

static void fc_release(void *state, vmm_vm *vm);
static void fc_cleanup(void *state, vmm_vm *vm);

static void fc_warm_discard(void *state, vmm_vm *vm)
{
  if (!vm->warm)
    return;
  vm->warm = false;
  vmm_proc_end(vm);
  fc_release(state, vm);
  fc_cleanup(state, vm);
}

static int fc_restore_prepare(void *state, vmm_vm *vm, const char *snap_dir, bool frozen,
                              cmn_error *err)
{
  const fc_host *h = state;
  if (vm->warm || (vm->proc.pid > 0 && cmn_proc_alive(&vm->proc)))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "a firecracker (pid %d) already runs this VM",
                       (int)vm->proc.pid);
  if (fc_load_check(h, vm, snap_dir, frozen, err) < 0)
    return -1;
  if (fc_spawn(h, vm, err) < 0) {
    vmm_proc_end(vm);
    fc_release(state, vm);
    fc_cleanup(state, vm);
    return cmn_err_prefix(err, "prepare a warm firecracker");
  }
  fc_vm *p = fc_priv(vm);
  p->warm_dir = cmn_strdup(snap_dir);
  p->warm_frozen = frozen;
  vm->warm = true;
  cmn_info(vm->id, "warm", "firecracker pid %d waits for %s", (int)vm->proc.pid, snap_dir);
  return 0;
}

/* The warm Firecracker when it was started for this load, is alive and has
 * not started a VM; else it goes and a fresh one is spawned. */
static int fc_take_or_spawn(const fc_host *h, vmm_vm *vm, const char *snap_dir, bool frozen,
                            cmn_error *err)
{
  vm->warm_used = false;
  if (vm->warm) {
    fc_vm *p = vm->priv;
    cmn_error why = {0};
    cJSON *info = NULL;
    bool ok = false;
    if (p == NULL || p->warm_dir == NULL || strcmp(p->warm_dir, snap_dir) != 0 ||
        p->warm_frozen != frozen)
      cmn_err_set(&why, CMN_FAILED_PRECONDITION, "prepared for another snapshot");
    else if (!cmn_proc_alive(&vm->proc))
      cmn_err_set(&why, CMN_UNAVAILABLE, "it has exited");
    else if (fc_call(vm, "GET", "/", NULL, &info, &why) == 0) {
      const cJSON *st = cJSON_GetObjectItemCaseSensitive(info, "state");
      ok = cJSON_IsString(st) && strcmp(st->valuestring, "Not started") == 0;
      if (!ok)
        cmn_err_set(&why, CMN_FAILED_PRECONDITION, "its VM is %s, not waiting",
                    cJSON_IsString(st) ? st->valuestring : "in no known state");
    }
    cJSON_Delete(info);
    if (ok) {
      free(p->warm_dir);
      p->warm_dir = NULL;
      vm->warm = false;
      vm->warm_used = true;
      return 0;
    }
    cmn_warn(vm->id, frozen ? "fork" : "restore", "warm firecracker (pid %d) not used: %s",
             (int)vm->proc.pid, why.msg);
    fc_warm_discard((void *)h, vm);
  }
  return fc_spawn(h, vm, err);
}

/* A VMM loading the snapshot in snap_dir (paused, not resumed): the warm one
 * when it waits for this load, else a fresh one. frozen: for
 * restore_frozen(), the clone's own TAPs and vsock socket replace the ones
 * the snapshot recorded. */
static int fc_load(const fc_host *h, vmm_vm *vm, const char *snap_dir, bool frozen, cmn_error *err)
{
  cleanup_free char *state_path = cmn_asprintf("%s/state", snap_dir);
  cleanup_free char *mem_path = cmn_asprintf("%s/memory", snap_dir);
  const vmm_spec *s = vm->spec;
  bool nets = frozen && s != NULL && s->n_nics > 0;
  bool vsock = frozen && s != NULL && s->vsock_cid != 0;
  if (fc_load_check(h, vm, snap_dir, frozen, err) < 0) {
    fc_warm_discard((void *)h, vm);
    return -1;
  }
  if (fc_take_or_spawn(h, vm, snap_dir, frozen, err) < 0)
    return -1;
  if (cmn_fault(frozen ? "fc.restore_frozen.before_load" : "fc.restore.before_load", err) < 0)
    return -1;
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "snapshot_path", state_path);
  if (h->mem_backend) {
    cJSON *mb = cJSON_AddObjectToObject(b, "mem_backend");
    cJSON_AddStringToObject(mb, "backend_type", "File");
    cJSON_AddStringToObject(mb, "backend_path", mem_path);
  } else {
    cJSON_AddStringToObject(b, "mem_file_path", mem_path);
  }
  /* Tracking on, so the next standby can be a Diff into this base (for a
   * frozen restore: into the base its first, Full, standby writes). */
  cJSON_AddBoolToObject(b, h->load_track_dirty ? "track_dirty_pages" : "enable_diff_snapshots",
                        true);
  /* Resumed separately, so that a failed load and a failed resume are told
   * apart (and fc.restore.before_resume sits between them). */
  cJSON_AddBoolToObject(b, "resume_vm", false);
  if (nets) {
    /* iface_id as fc_configure_boot named them. */
    cJSON *ov = cJSON_AddArrayToObject(b, "network_overrides");
    for (size_t i = 0; i < s->n_nics; i++) {
      char id[32];
      snprintf(id, sizeof id, "eth%zu", i);
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "iface_id", id);
      cJSON_AddStringToObject(o, "host_dev_name", s->nics[i].tap);
      cJSON_AddItemToArray(ov, o);
    }
  }
  if (vsock) {
    cleanup_free char *uds = cmn_asprintf("%s/%s", vm->dir, VMM_VSOCK_SOCK);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(b, "vsock_override"), "uds_path", uds);
  }
  int r = fc_call_t(vm, "PUT", "/snapshot/load", b, FC_SNAPSHOT_TIMEOUT_MS, NULL, err);
  cJSON_Delete(b);
  return r;
}

static int fc_restore(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  const fc_host *h = state;
  if (fc_load(h, vm, snap_dir, false, err) < 0)
    return -1;
  if (cmn_fault("fc.restore.before_resume", err) < 0)
    return -1;
  if (fc_set_vm_state(vm, "Resumed", err) < 0)
    return -1;
  cmn_info(vm->id, "restore", "firecracker pid %d restored from %s (%s)", (int)vm->proc.pid,
           snap_dir, vm->warm_used ? "warm" : "fresh");
  return 0;
}

static int fc_save(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  (void)state;
  if (!cmn_is_dir(snap_dir))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "save: folder %s does not exist", snap_dir);
  cleanup_free char *state_path = cmn_asprintf("%s/state", snap_dir);
  cleanup_free char *mem_path = cmn_asprintf("%s/memory", snap_dir);
  /* Before the create: once Firecracker has started it, the tracking may be
   * reset even if the call then fails. */
  if (fc_full_next_set(vm, err) < 0)
    return -1;
  if (cmn_fault("fc.save.before_create", err) < 0)
    return -1;
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "snapshot_type", "Full");
  cJSON_AddStringToObject(b, "snapshot_path", state_path);
  cJSON_AddStringToObject(b, "mem_file_path", mem_path);
  int64_t t0 = cmn_now_us();
  int r = fc_call_t(vm, "PUT", "/snapshot/create", b, FC_SNAPSHOT_TIMEOUT_MS, NULL, err);
  cJSON_Delete(b);
  if (r < 0)
    return cmn_err_prefix(err, "save into %s", snap_dir);
  cmn_info(vm->id, "save", "full snapshot into %s in %lld us; the next standby is full", snap_dir,
           (long long)(cmn_now_us() - t0));
  return 0;
}

static int fc_restore_frozen(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  const fc_host *h = state;
  if (fc_load(h, vm, snap_dir, true, err) < 0)
    return -1;
  /* The clone's RAM is in no file of this instance: never a Diff. */
  if (fc_full_next_set(vm, err) < 0)
    return -1;
  if (cmn_fault("fc.restore_frozen.before_resume", err) < 0)
    return -1;
  if (fc_set_vm_state(vm, "Resumed", err) < 0)
    return -1;
  cmn_info(vm->id, "restore", "firecracker pid %d cloned from %s", (int)vm->proc.pid, snap_dir);
  return 0;
}

static void fc_release(void *state, vmm_vm *vm)
{
  (void)state;
  fc_vm *p = vm->priv;
  if (p == NULL)
    return;
  free(p->sock);
  free(p->warm_dir);
  free(p);
  vm->priv = NULL;
}

static void fc_cleanup(void *state, vmm_vm *vm)
{
  (void)state;
  const char *names[] = {FC_SOCK_NAME, VMM_VSOCK_SOCK, FC_FULL_NEXT};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    cleanup_free char *sock = cmn_asprintf("%s/%s", vm->dir, names[i]);
    if (unlink(sock) < 0 && errno != ENOENT)
      cmn_warn(vm->id, "cleanup", "removing %s: %s", sock, cmn_strerror(errno));
  }
}

const vmm_driver vmm_firecracker_driver = {
    .type = "firecracker",
    .caps = VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE | VMM_CAP_BASE_REUSE | VMM_CAP_FORK,
    .init = fc_init,
    .fini = fc_fini,
    .describe = fc_describe,
    .start = fc_start,
    .adopt = fc_adopt,
    .query = fc_query,
    .pause = fc_pause,
    .resume = fc_resume,
    .snapshot = fc_snapshot,
    .restore = fc_restore,
    .save = fc_save,
    .restore_frozen = fc_restore_frozen,
    .restore_prepare = fc_restore_prepare,
    .warm_discard = fc_warm_discard,
    .shutdown = NULL, /* Firecracker has no graceful VMM shutdown */
    .release = fc_release,
    .cleanup = fc_cleanup,
};
