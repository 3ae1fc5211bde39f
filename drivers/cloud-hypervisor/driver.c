/* driver.c: the Cloud Hypervisor driver (REST over the VMM's unix API socket).
 *
 * One cloud-hypervisor process per VM, spawned in its own session with
 * `--api-socket path=<vm->dir>/ch.sock` and no VM; the VM is then described
 * with PUT /api/v1/vm.create and started with vm.boot. The binary is read once
 * at init() (`--version`) and the bodies follow that version (sources:
 * vmm/src/api/openapi/cloud-hypervisor.yaml and vmm/src/{config,vm_config}.rs
 * at the release tags):
 *
 *   boot payload   v25 and before: kernel {path}, cmdline {args},
 *                  initramfs {path}; v26 adds payload {kernel, cmdline,
 *                  initramfs} next to them (deprecated); from v28 only
 *                  payload is read. Payload is sent from v26.
 *   error bodies   plain text before v47 (Debug, later Display of the
 *                  error); a JSON array of the error chain from v47.
 *
 * Cloud Hypervisor's config structs do not deny unknown fields: a field the
 * version does not know is silently ignored, so sending only what the version
 * reads matters (the contract fake rejects the rest).
 *
 * Console: serial mode File opens the file with File::create, which truncates
 * it, also on every restore (vmm/src/console_devices.rs, device_manager.rs
 * before v36), losing the console history. The serial port is therefore in
 * mode Tty (CH's stdout) and the VMM is started through
 * `/bin/sh -c 'exec ... >>console'`, so the console is appended across
 * restores; the shell execs the VMM in place, so pid and start time are CH's.
 * The virtio console is Off (its default, Tty, would share stdout).
 *
 * Snapshots: Cloud Hypervisor writes config.json, state.json and
 * memory-ranges (the whole guest RAM) into the folder named by
 * destination_url; there are no diff snapshots, so no VMM_CAP_BASE_REUSE.
 * vm.restore needs a VMM with no VM and leaves the VM paused: restore is a
 * fresh process, vm.restore, vm.resume. vmm.shutdown ends the VMM without
 * resuming the guest.
 *
 * Fork (save, restore_frozen). save() is the same vm.snapshot into the empty
 * folder. restore_frozen() is vm.restore: Cloud Hypervisor reads config.json
 * and state.json and copies memory-ranges into fresh guest RAM (read-only
 * opens; the default memory_restore_mode Copy), so the folder is never
 * written and several VMMs can restore from it at once. But config.json
 * names the source's host resources: its vsock socket (in the source's
 * instance folder, bound while the source runs), its TAPs and its disks, and
 * vm.restore has no way to override them. When they differ from this VM's
 * spec, the driver writes a corrected config.json into <vm->dir>/CH_RESTORE_DIR
 * next to symbolic links to the folder's state.json and memory-ranges, restores
 * from there, and removes it afterwards; the snapshot folder itself is only
 * read. Cloud Hypervisor has no VM generation ID device: the guest is not told
 * that it was cloned. */
#include "drivers/registry.h"
#include "drivers/rest_vmm.h"
#include "version.h"
#include "common/cleanup.h"
#include "common/fault.h"
#include "common/files.h"
#include "common/http_unix.h"
#include "common/log.h"
#include "common/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CH_SOCK_NAME "ch.sock"
/* The corrected view of a frozen snapshot for restore_frozen(), in vm->dir. */
#define CH_RESTORE_DIR "ch-restore"
#define CH_START_TIMEOUT_MS 10000
#define CH_SNAPSHOT_TIMEOUT_MS (10 * 60 * 1000)
#define CH_MIN_MAJOR 25

/* Read-only after init(): the binary and what its version accepts. */
typedef struct ch_host {
  char *binary;
  char *version_line; /* "cloud-hypervisor v40.0.0" */
  int major, minor, patch;
  bool payload; /* vm.create: payload {} (else kernel/cmdline/initramfs objects) */
} ch_host;

/* Per-VM driver state (vm->priv). */
typedef struct ch_vm {
  char *sock;
  /* A warm Cloud Hypervisor (vm->warm, restore_prepare): the snapshot folder
   * it was started for and whether for restore_frozen. */
  char *warm_dir;
  bool warm_frozen;
} ch_vm;

/* ---- init ------------------------------------------------------------------ */

static void ch_host_free(ch_host *h)
{
  if (h == NULL)
    return;
  free(h->binary);
  free(h->version_line);
  free(h);
}

static int ch_init(const cJSON *config, void **state, cmn_error *err)
{
  *state = NULL;
  ch_host *h = cmn_calloc(1, sizeof *h);
  h->binary = vmm_find_binary("EMBER_CLOUD_HYPERVISOR_BIN", config, "cloud-hypervisor",
                              "cloud-hypervisor", err);
  if (h->binary == NULL) {
    ch_host_free(h);
    return -1;
  }
  cleanup_free char *text = ch_version_run(h->binary, err);
  if (text == NULL) {
    ch_host_free(h);
    return -1;
  }
  h->version_line = cmn_strndup(text, strcspn(text, "\n"));
  if (ch_version_parse(h->version_line, &h->major, &h->minor, &h->patch, err) < 0) {
    cmn_err_prefix(err, "%s --version", h->binary);
    ch_host_free(h);
    return -1;
  }
  if (h->major < CH_MIN_MAJOR) {
    cmn_err_set(err, CMN_UNAVAILABLE,
                "Cloud Hypervisor %d.%d is not supported (this driver speaks the API of v%d "
                "and later)",
                h->major, h->minor, CH_MIN_MAJOR);
    ch_host_free(h);
    return -1;
  }
  h->payload = h->major >= 26;
  cmn_info(NULL, "init", "cloud-hypervisor driver: %s (%s): payload=%d", h->binary, h->version_line,
           h->payload);
  *state = h;
  return 0;
}

static void ch_fini(void *state) { ch_host_free(state); }

static char *ch_describe(void *state)
{
  const ch_host *h = state;
  return cmn_asprintf("cloud-hypervisor %d.%d.%d (%s)", h->major, h->minor, h->patch, h->binary);
}

/* ---- API calls --------------------------------------------------------------- */

static ch_vm *ch_priv(vmm_vm *vm)
{
  if (vm->priv == NULL) {
    ch_vm *p = cmn_calloc(1, sizeof *p);
    p->sock = cmn_asprintf("%s/%s", vm->dir, CH_SOCK_NAME);
    vm->priv = p;
  }
  return vm->priv;
}

/* Cloud Hypervisor's error text: a JSON array of the error chain from v47
 * (joined with ": "), plain text before. Caller frees. */
static char *ch_error_text(const char *body)
{
  if (body == NULL || body[0] == '\0')
    return cmn_strdup("(no error text)");
  cJSON *j = cJSON_Parse(body);
  if (cJSON_IsArray(j)) {
    char *out = cmn_strdup("");
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
      if (!cJSON_IsString(e))
        continue;
      char *next = cmn_asprintf("%s%s%s", out, out[0] != '\0' ? ": " : "", e->valuestring);
      free(out);
      out = next;
    }
    cJSON_Delete(j);
    return out;
  }
  cJSON_Delete(j);
  size_t n = strlen(body);
  while (n > 0 && (body[n - 1] == '\n' || body[n - 1] == ' '))
    n--;
  return cmn_strndup(body, n);
}

/* One request to /api/v1/<op>; body (may be NULL) is serialised, not consumed.
 * A status >= 300 becomes an error that keeps Cloud Hypervisor's message.
 * *out (may be NULL) receives the parsed response of a 200. */
static int ch_call_t(vmm_vm *vm, const char *method, const char *op, const cJSON *body,
                     int timeout_ms, cJSON **out, cmn_error *err)
{
  if (out != NULL)
    *out = NULL;
  ch_vm *p = ch_priv(vm);
  cleanup_free char *path = cmn_asprintf("/api/v1/%s", op);
  cleanup_free char *json = body != NULL ? cJSON_PrintUnformatted(body) : NULL;
  if (body != NULL && json == NULL)
    return cmn_err_set(err, CMN_INTERNAL, "cannot serialise the body of %s", op);
  long status = 0;
  cleanup_free char *resp = NULL;
  if (cmn_http_request_timeout(p->sock, method, path, json, timeout_ms, &status, &resp, err) < 0)
    return cmn_err_prefix(err, "cloud-hypervisor API %s", op);
  if (status >= 300) {
    cleanup_free char *text = ch_error_text(resp);
    return cmn_err_set(err, CMN_INTERNAL, "cloud-hypervisor rejected %s (HTTP %ld): %s", op, status,
                       text);
  }
  if (out != NULL && status == 200) {
    *out = cJSON_Parse(resp);
    if (*out == NULL)
      return cmn_err_set(err, CMN_INTERNAL, "cloud-hypervisor sent invalid JSON for %s", op);
  }
  return 0;
}

static int ch_call(vmm_vm *vm, const char *method, const char *op, const cJSON *body, cJSON **out,
                   cmn_error *err)
{
  return ch_call_t(vm, method, op, body, CMN_HTTP_DEFAULT_TIMEOUT_MS, out, err);
}

/* PUT op with a freshly built body (may be NULL), which is freed. */
static int ch_put(vmm_vm *vm, const char *op, cJSON *body, int timeout_ms, cmn_error *err)
{
  int r = ch_call_t(vm, "PUT", op, body, timeout_ms, NULL, err);
  cJSON_Delete(body);
  return r;
}

static int ch_get_state(vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  cJSON *info = NULL;
  if (ch_call(vm, "GET", "vm.info", NULL, &info, err) < 0)
    return -1;
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(info, "state");
  if (!cJSON_IsString(st)) {
    cJSON_Delete(info);
    return cmn_err_set(err, CMN_INTERNAL, "cloud-hypervisor vm.info has no \"state\"");
  }
  if (strcmp(st->valuestring, "Running") == 0)
    *out = VMM_STATE_RUNNING;
  else if (strcmp(st->valuestring, "Paused") == 0)
    *out = VMM_STATE_PAUSED;
  else
    *out = VMM_STATE_OTHER; /* Created, Shutdown */
  cJSON_Delete(info);
  return 0;
}

/* Spawns a fresh cloud-hypervisor (no VM) and waits until vmm.ping answers. */
static int ch_spawn(const ch_host *h, vmm_vm *vm, cmn_error *err)
{
  ch_vm *p = ch_priv(vm);
  cleanup_free char *sockarg = cmn_asprintf("path=%s", p->sock);
  const char *const argv[] = {h->binary, "--api-socket", sockarg, NULL};
  return vmm_rest_spawn(vm, "cloud-hypervisor", argv, p->sock, "/api/v1/vmm.ping",
                        CH_START_TIMEOUT_MS, err);
}

static bool ch_set(const char *s) { return s != NULL && s[0] != '\0'; }

/* The VmConfig of vm.create for the host's version. */
static cJSON *ch_vm_config(const ch_host *h, const vmm_spec *s, const char *vm_dir)
{
  cJSON *c = cJSON_CreateObject();
  cJSON *cpus = cJSON_AddObjectToObject(c, "cpus");
  cJSON_AddNumberToObject(cpus, "boot_vcpus", s->vcpus);
  cJSON_AddNumberToObject(cpus, "max_vcpus", s->vcpus);
  cJSON *mem = cJSON_AddObjectToObject(c, "memory");
  cJSON_AddNumberToObject(mem, "size", (double)(s->memory_mib << 20)); /* bytes */
  if (h->payload) {
    cJSON *pl = cJSON_AddObjectToObject(c, "payload");
    cJSON_AddStringToObject(pl, "kernel", s->kernel);
    if (ch_set(s->cmdline))
      cJSON_AddStringToObject(pl, "cmdline", s->cmdline);
    if (ch_set(s->initrd))
      cJSON_AddStringToObject(pl, "initramfs", s->initrd);
  } else {
    cJSON_AddStringToObject(cJSON_AddObjectToObject(c, "kernel"), "path", s->kernel);
    if (ch_set(s->cmdline))
      cJSON_AddStringToObject(cJSON_AddObjectToObject(c, "cmdline"), "args", s->cmdline);
    if (ch_set(s->initrd))
      cJSON_AddStringToObject(cJSON_AddObjectToObject(c, "initramfs"), "path", s->initrd);
  }
  if (s->n_disks > 0) {
    cJSON *disks = cJSON_AddArrayToObject(c, "disks");
    for (size_t i = 0; i < s->n_disks; i++) {
      cJSON *d = cJSON_CreateObject();
      cJSON_AddStringToObject(d, "path", s->disks[i].path);
      cJSON_AddBoolToObject(d, "readonly", s->disks[i].read_only);
      cJSON_AddItemToArray(disks, d);
    }
  }
  if (s->n_nics > 0) {
    cJSON *net = cJSON_AddArrayToObject(c, "net");
    for (size_t i = 0; i < s->n_nics; i++) {
      cJSON *n = cJSON_CreateObject();
      cJSON_AddStringToObject(n, "tap", s->nics[i].tap);
      if (ch_set(s->nics[i].mac))
        cJSON_AddStringToObject(n, "mac", s->nics[i].mac);
      cJSON_AddItemToArray(net, n);
    }
  }
  if (s->vsock_cid != 0) {
    cleanup_free char *uds = cmn_asprintf("%s/%s", vm_dir, VMM_VSOCK_SOCK);
    cJSON *v = cJSON_AddObjectToObject(c, "vsock");
    cJSON_AddNumberToObject(v, "cid", s->vsock_cid);
    cJSON_AddStringToObject(v, "socket", uds);
  }
  /* See the file comment: Tty is CH's stdout, appended to the console file. */
  cJSON_AddStringToObject(cJSON_AddObjectToObject(c, "serial"), "mode", "Tty");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(c, "console"), "mode", "Off");
  return c;
}

/* ---- operations ---------------------------------------------------------------- */

static int ch_start(void *state, vmm_vm *vm, const char *mem_dir, cmn_error *err)
{
  const ch_host *h = state;
  (void)mem_dir; /* no VMM_CAP_LIVE_RAM_FILE */
  if (vm->spec == NULL || !ch_set(vm->spec->kernel))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "cloud-hypervisor needs a kernel image");
  if (vmm_spec_check_host_files(vm->spec, true, err) < 0)
    return -1;
  if (ch_spawn(h, vm, err) < 0)
    return -1;
  if (ch_put(vm, "vm.create", ch_vm_config(h, vm->spec, vm->dir), CMN_HTTP_DEFAULT_TIMEOUT_MS,
             err) < 0)
    return -1;
  if (cmn_fault("ch.start.before_boot", err) < 0)
    return -1;
  if (ch_put(vm, "vm.boot", NULL, CMN_HTTP_DEFAULT_TIMEOUT_MS, err) < 0)
    return -1;
  cmn_info(vm->id, "start", "cloud-hypervisor pid %d started", (int)vm->proc.pid);
  return 0;
}

static int ch_adopt(void *state, vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  (void)state;
  if (!cmn_proc_alive(&vm->proc))
    return cmn_err_set(err, CMN_UNAVAILABLE, "cloud-hypervisor pid %d is gone", (int)vm->proc.pid);
  if (ch_get_state(vm, out, err) < 0)
    return cmn_err_prefix(err, "adopting cloud-hypervisor pid %d", (int)vm->proc.pid);
  return 0;
}

static int ch_query(void *state, vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  (void)state;
  return ch_get_state(vm, out, err);
}

static int ch_pause(void *state, vmm_vm *vm, cmn_error *err)
{
  (void)state;
  return ch_put(vm, "vm.pause", NULL, CMN_HTTP_DEFAULT_TIMEOUT_MS, err);
}

static int ch_resume(void *state, vmm_vm *vm, cmn_error *err)
{
  (void)state;
  return ch_put(vm, "vm.resume", NULL, CMN_HTTP_DEFAULT_TIMEOUT_MS, err);
}

static int ch_snapshot(void *state, vmm_vm *vm, const char *snap_dir, vmm_snap_kind kind,
                       cmn_error *err)
{
  (void)state;
  if (kind != VMM_SNAP_FULL)
    return cmn_err_set(err, CMN_UNIMPLEMENTED,
                       "cloud-hypervisor writes full snapshots only (no diff snapshots)");
  if (snap_dir[0] != '/')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "snapshot folder %s is not absolute", snap_dir);
  if (cmn_fault("ch.snapshot.before", err) < 0)
    return -1;
  cJSON *b = cJSON_CreateObject();
  cleanup_free char *url = cmn_asprintf("file://%s", snap_dir);
  cJSON_AddStringToObject(b, "destination_url", url);
  int64_t t0 = cmn_now_us();
  if (ch_put(vm, "vm.snapshot", b, CH_SNAPSHOT_TIMEOUT_MS, err) < 0)
    return -1;
  cmn_info(vm->id, "snapshot", "full snapshot into %s in %lld us", snap_dir,
           (long long)(cmn_now_us() - t0));
  return 0;
}

static const char *const ch_snap_files[] = {"config.json", "state.json", "memory-ranges"};

static void ch_release(void *state, vmm_vm *vm);
static void ch_cleanup(void *state, vmm_vm *vm);

static void ch_warm_discard(void *state, vmm_vm *vm)
{
  if (!vm->warm)
    return;
  vm->warm = false;
  vmm_proc_end(vm);
  ch_release(state, vm);
  ch_cleanup(state, vm);
}

/* The warm Cloud Hypervisor when it was started for this snapshot folder and
 * answers vmm.ping; else it goes and a fresh one is spawned. */
static int ch_take_or_spawn(const ch_host *h, vmm_vm *vm, const char *snap_dir, bool frozen,
                            cmn_error *err)
{
  vm->warm_used = false;
  if (vm->warm) {
    ch_vm *p = vm->priv;
    cmn_error why = {0};
    if (p == NULL || p->warm_dir == NULL || strcmp(p->warm_dir, snap_dir) != 0 ||
        p->warm_frozen != frozen)
      cmn_err_set(&why, CMN_FAILED_PRECONDITION, "prepared for another snapshot");
    else if (!cmn_proc_alive(&vm->proc))
      cmn_err_set(&why, CMN_UNAVAILABLE, "it has exited");
    else if (ch_call(vm, "GET", "vmm.ping", NULL, NULL, &why) == 0) {
      free(p->warm_dir);
      p->warm_dir = NULL;
      vm->warm = false;
      vm->warm_used = true;
      return 0;
    }
    cmn_warn(vm->id, frozen ? "fork" : "restore", "warm cloud-hypervisor (pid %d) not used: %s",
             (int)vm->proc.pid, why.msg);
    ch_warm_discard((void *)h, vm);
  }
  return ch_spawn(h, vm, err);
}

/* A VMM (the warm one for snap_dir, else a fresh one) restoring from source
 * (a folder: snap_dir or a corrected view of it), left paused. */
static int ch_restore_from(const ch_host *h, vmm_vm *vm, const char *snap_dir, bool frozen,
                           const char *source, const char *fault, cmn_error *err)
{
  if (ch_take_or_spawn(h, vm, snap_dir, frozen, err) < 0)
    return -1;
  if (cmn_fault(fault, err) < 0)
    return -1;
  cJSON *b = cJSON_CreateObject();
  cleanup_free char *url = cmn_asprintf("file://%s", source);
  cJSON_AddStringToObject(b, "source_url", url);
  /* prefault (populate guest RAM while restoring) stays at its default, off;
   * sent explicitly because every supported version knows it. */
  cJSON_AddBoolToObject(b, "prefault", false);
  return ch_put(vm, "vm.restore", b, CH_SNAPSHOT_TIMEOUT_MS, err);
}

/* DATA_LOSS unless snap_dir (absolute) holds the three snapshot files. */
static int ch_check_snapshot(const char *snap_dir, cmn_error *err)
{
  for (size_t i = 0; i < sizeof ch_snap_files / sizeof ch_snap_files[0]; i++) {
    cleanup_free char *f = cmn_asprintf("%s/%s", snap_dir, ch_snap_files[i]);
    if (!cmn_is_regular_file(f))
      return cmn_err_set(err, CMN_DATA_LOSS, "snapshot %s lacks %s", snap_dir, ch_snap_files[i]);
  }
  if (snap_dir[0] != '/')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "snapshot folder %s is not absolute", snap_dir);
  return 0;
}

static int ch_restore_prepare(void *state, vmm_vm *vm, const char *snap_dir, bool frozen,
                              cmn_error *err)
{
  const ch_host *h = state;
  if (vm->warm || (vm->proc.pid > 0 && cmn_proc_alive(&vm->proc)))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                       "a cloud-hypervisor (pid %d) already runs this VM", (int)vm->proc.pid);
  if (ch_check_snapshot(snap_dir, err) < 0 || vmm_spec_check_host_files(vm->spec, false, err) < 0)
    return -1;
  if (ch_spawn(h, vm, err) < 0) {
    vmm_proc_end(vm);
    ch_release(state, vm);
    ch_cleanup(state, vm);
    return cmn_err_prefix(err, "prepare a warm cloud-hypervisor");
  }
  ch_vm *p = ch_priv(vm);
  p->warm_dir = cmn_strdup(snap_dir);
  p->warm_frozen = frozen;
  vm->warm = true;
  cmn_info(vm->id, "warm", "cloud-hypervisor pid %d waits for %s", (int)vm->proc.pid, snap_dir);
  return 0;
}

static int ch_restore(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  const ch_host *h = state;
  if (ch_check_snapshot(snap_dir, err) < 0)
    return -1;
  if (vmm_spec_check_host_files(vm->spec, false, err) < 0)
    return -1;
  if (ch_restore_from(h, vm, snap_dir, false, snap_dir, "ch.restore.before_restore", err) < 0)
    return -1;
  if (cmn_fault("ch.restore.before_resume", err) < 0)
    return -1;
  if (ch_put(vm, "vm.resume", NULL, CMN_HTTP_DEFAULT_TIMEOUT_MS, err) < 0)
    return -1;
  cmn_info(vm->id, "restore", "cloud-hypervisor pid %d restored from %s", (int)vm->proc.pid,
           snap_dir);
  return 0;
}

static int ch_save(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  if (!cmn_is_dir(snap_dir))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "save: folder %s does not exist", snap_dir);
  if (cmn_fault("ch.save.before", err) < 0)
    return -1;
  /* A Cloud Hypervisor snapshot has no tie to the VM's later snapshots (no
   * diffs, no dirty tracking): the standby path's full snapshot is exactly a
   * save. */
  if (ch_snapshot(state, vm, snap_dir, VMM_SNAP_FULL, err) < 0)
    return cmn_err_prefix(err, "save into %s", snap_dir);
  return 0;
}

/* Sets obj[key] to the string want; *changed when it was different. */
static void ch_set_str(cJSON *obj, const char *key, const char *want, bool *changed)
{
  const cJSON *cur = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (cJSON_IsString(cur) && strcmp(cur->valuestring, want) == 0)
    return;
  *changed = true;
  if (cur != NULL)
    cJSON_ReplaceItemInObjectCaseSensitive(obj, key, cJSON_CreateString(want));
  else
    cJSON_AddStringToObject(obj, key, want);
}

/* False when a number in j cannot survive a parse and print through a double
 * (Cloud Hypervisor's u64 fields would receive another value). */
static bool ch_numbers_exact(const cJSON *j)
{
  if (cJSON_IsNumber(j))
    return j->valuedouble < 9007199254740992.0 && j->valuedouble > -9007199254740992.0;
  for (const cJSON *c = j != NULL ? j->child : NULL; c != NULL; c = c->next)
    if (!ch_numbers_exact(c))
      return false;
  return true;
}

/* Points the saved config's host resources at this VM's (vsock socket, TAPs,
 * disks, by position). *changed: anything differed. */
static int ch_patch_config(const vmm_vm *vm, cJSON *c, bool *changed, cmn_error *err)
{
  const vmm_spec *s = vm->spec;
  *changed = false;
  cJSON *vsock = cJSON_GetObjectItemCaseSensitive(c, "vsock");
  if (cJSON_IsObject(vsock) != (s->vsock_cid != 0))
    return cmn_err_set(
        err, CMN_FAILED_PRECONDITION, "the snapshot %s a vsock device and this VM %s",
        cJSON_IsObject(vsock) ? "has" : "has no", s->vsock_cid != 0 ? "has one" : "has none");
  if (cJSON_IsObject(vsock)) {
    cleanup_free char *uds = cmn_asprintf("%s/%s", vm->dir, VMM_VSOCK_SOCK);
    ch_set_str(vsock, "socket", uds, changed);
  }
  struct {
    const char *key, *field, *what;
    size_t n;
  } lists[] = {{"net", "tap", "network interfaces", s->n_nics},
               {"disks", "path", "disks", s->n_disks}};
  for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++) {
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(c, lists[l].key);
    size_t have = cJSON_IsArray(arr) ? (size_t)cJSON_GetArraySize(arr) : 0;
    if (have != lists[l].n)
      return cmn_err_set(err, CMN_FAILED_PRECONDITION, "the snapshot has %zu %s and this VM %zu",
                         have, lists[l].what, lists[l].n);
    for (size_t i = 0; i < have; i++) {
      cJSON *e = cJSON_GetArrayItem(arr, (int)i);
      const char *want = l == 0 ? s->nics[i].tap : s->disks[i].path;
      if (!cJSON_IsObject(e) || want == NULL)
        return cmn_err_set(err, CMN_FAILED_PRECONDITION, "the snapshot's %s[%zu] is unusable",
                           lists[l].key, i);
      ch_set_str(e, lists[l].field, want, changed);
    }
  }
  return 0;
}

/* Builds <vm->dir>/CH_RESTORE_DIR (corrected config.json, links to the
 * other files) when the saved config names other host resources than this
 * VM's. *source: the folder to restore from (snap_dir when nothing changes). */
static int ch_frozen_source(const vmm_vm *vm, const char *snap_dir, char **source, cmn_error *err)
{
  *source = NULL;
  cleanup_free char *cfg_path = cmn_asprintf("%s/config.json", snap_dir);
  cleanup_free char *text = NULL;
  if (cmn_file_read(cfg_path, 16u << 20, &text, NULL, err) < 0)
    return cmn_err_prefix(err, "reading the saved VM config");
  cJSON *c = cJSON_Parse(text);
  if (!cJSON_IsObject(c)) {
    cJSON_Delete(c);
    return cmn_err_set(err, CMN_DATA_LOSS, "snapshot %s: config.json is not a JSON object",
                       snap_dir);
  }
  bool changed = false;
  if (ch_patch_config(vm, c, &changed, err) < 0) {
    cJSON_Delete(c);
    return cmn_err_prefix(err, "snapshot %s", snap_dir);
  }
  if (!changed) {
    cJSON_Delete(c);
    *source = cmn_strdup(snap_dir);
    return 0;
  }
  if (!ch_numbers_exact(c)) {
    cJSON_Delete(c);
    return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                       "snapshot %s: config.json holds a number this driver cannot rewrite "
                       "exactly",
                       snap_dir);
  }
  cleanup_free char *out = cJSON_Print(c);
  cJSON_Delete(c);
  if (out == NULL)
    return cmn_err_set(err, CMN_INTERNAL, "cannot serialise the corrected VM config");
  cleanup_free char *dir = cmn_asprintf("%s/%s", vm->dir, CH_RESTORE_DIR);
  if (cmn_rm_rf(dir, err) < 0 || cmn_mkdir_p(dir, 0700, err) < 0)
    return -1;
  cleanup_free char *cfg_out = cmn_asprintf("%s/config.json", dir);
  if (cmn_file_replace(cfg_out, out, strlen(out), 0600, err) < 0)
    return -1;
  for (size_t i = 1; i < sizeof ch_snap_files / sizeof ch_snap_files[0]; i++) {
    cleanup_free char *target = cmn_asprintf("%s/%s", snap_dir, ch_snap_files[i]);
    cleanup_free char *link = cmn_asprintf("%s/%s", dir, ch_snap_files[i]);
    if (symlink(target, link) < 0)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "linking %s to %s", link, target);
  }
  *source = cmn_strdup(dir);
  return 0;
}

static int ch_restore_frozen(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err)
{
  const ch_host *h = state;
  if (ch_check_snapshot(snap_dir, err) < 0)
    return -1;
  if (vm->spec == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "restore_frozen needs the VM's spec");
  if (vmm_spec_check_host_files(vm->spec, false, err) < 0)
    return -1;
  cleanup_free char *source = NULL;
  if (ch_frozen_source(vm, snap_dir, &source, err) < 0)
    return -1;
  int r = ch_restore_from(h, vm, snap_dir, true, source, "ch.restore_frozen.before_restore", err);
  /* Read in full by vm.restore (Copy mode): the corrected view can go. */
  if (strcmp(source, snap_dir) != 0) {
    cmn_error rerr = {0};
    if (cmn_rm_rf(source, &rerr) < 0)
      cmn_warn(vm->id, "restore", "%s", rerr.msg);
  }
  if (r < 0)
    return -1;
  if (cmn_fault("ch.restore_frozen.before_resume", err) < 0)
    return -1;
  if (ch_put(vm, "vm.resume", NULL, CMN_HTTP_DEFAULT_TIMEOUT_MS, err) < 0)
    return -1;
  cmn_info(vm->id, "restore", "cloud-hypervisor pid %d cloned from %s%s", (int)vm->proc.pid,
           snap_dir, strcmp(source, snap_dir) != 0 ? " (host resources re-pointed)" : "");
  return 0;
}

static int ch_shutdown(void *state, vmm_vm *vm, int timeout_ms, cmn_error *err)
{
  (void)state;
  if (!cmn_proc_alive(&vm->proc))
    return 0;
  int64_t t0 = cmn_now_us();
  cmn_error e2 = {0};
  /* The VMM may exit before the reply is complete: judge by the process. */
  if (ch_put(vm, "vmm.shutdown", NULL, timeout_ms > 0 ? timeout_ms : 1000, &e2) < 0 &&
      e2.code != CMN_UNAVAILABLE)
    return cmn_err_set(err, e2.code, "%s", e2.msg);
  int left = timeout_ms - (int)((cmn_now_us() - t0) / 1000);
  if (cmn_proc_wait(&vm->proc, left > 0 ? left : 0, NULL) < 0)
    return cmn_err_set(err, CMN_DEADLINE_EXCEEDED,
                       "cloud-hypervisor pid %d did not exit within %d ms of vmm.shutdown%s%s",
                       (int)vm->proc.pid, timeout_ms, e2.code != CMN_OK ? ": " : "", e2.msg);
  return 0;
}

static int ch_powerdown(void *state, vmm_vm *vm, int timeout_ms, cmn_error *err)
{
  (void)state;
  if (!cmn_proc_alive(&vm->proc))
    return 0;
  /* The guest powers off through ACPI; Cloud Hypervisor then exits. */
  if (ch_put(vm, "vm.power-button", NULL, CMN_HTTP_DEFAULT_TIMEOUT_MS, err) < 0)
    return -1;
  if (cmn_proc_wait(&vm->proc, timeout_ms, NULL) < 0)
    return cmn_err_set(err, CMN_DEADLINE_EXCEEDED,
                       "the guest did not power off within %d ms of the power button", timeout_ms);
  return 0;
}

static void ch_release(void *state, vmm_vm *vm)
{
  (void)state;
  ch_vm *p = vm->priv;
  if (p == NULL)
    return;
  free(p->sock);
  free(p->warm_dir);
  free(p);
  vm->priv = NULL;
}

static void ch_cleanup(void *state, vmm_vm *vm)
{
  (void)state;
  const char *names[] = {CH_SOCK_NAME, VMM_VSOCK_SOCK};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    cleanup_free char *sock = cmn_asprintf("%s/%s", vm->dir, names[i]);
    if (unlink(sock) < 0 && errno != ENOENT)
      cmn_warn(vm->id, "cleanup", "removing %s: %s", sock, cmn_strerror(errno));
  }
  cleanup_free char *staging = cmn_asprintf("%s/%s", vm->dir, CH_RESTORE_DIR);
  cmn_error err = {0};
  if (cmn_rm_rf(staging, &err) < 0)
    cmn_warn(vm->id, "cleanup", "%s", err.msg);
}

/* No VMM_CAP_BASE_REUSE: Cloud Hypervisor snapshots are always full. */
const vmm_driver vmm_cloud_hypervisor_driver = {
    .type = "cloud-hypervisor",
    .caps = VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE | VMM_CAP_GRACEFUL_SHUTDOWN | VMM_CAP_FORK,
    .init = ch_init,
    .fini = ch_fini,
    .describe = ch_describe,
    .start = ch_start,
    .adopt = ch_adopt,
    .query = ch_query,
    .pause = ch_pause,
    .resume = ch_resume,
    .snapshot = ch_snapshot,
    .restore = ch_restore,
    .save = ch_save,
    .restore_frozen = ch_restore_frozen,
    .restore_prepare = ch_restore_prepare,
    .warm_discard = ch_warm_discard,
    .shutdown = ch_shutdown,
    .powerdown = ch_powerdown,
    .release = ch_release,
    .cleanup = ch_cleanup,
};
