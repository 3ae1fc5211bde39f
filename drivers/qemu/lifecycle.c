/* lifecycle.c: spawning QEMU and the plain lifecycle operations: start, adopt,
 * query, pause (`stop`), resume (`cont`), shutdown (`system_powerdown`, then
 * `quit`), release and cleanup. Snapshot and restore are in snapshot.c. */
#include "drivers/qemu/internal.h"

#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* How long a reconnect to an existing VMM's QMP socket may take. */
#define QEMU_RECONNECT_MS 3000
/* How long QEMU may take to exit after `quit`. */
#define QEMU_QUIT_WAIT_MS 5000

off_t qemu_log_size(const vmm_vm *vm)
{
  struct stat st;
  if (vm->vmm_log_path == NULL || stat(vm->vmm_log_path, &st) < 0)
    return 0;
  return st.st_size;
}

/* The last few non-empty lines QEMU wrote to its log after log_off, joined
 * with "; ". NULL when there are none. */
static char *qemu_log_tail(const vmm_vm *vm, off_t log_off)
{
  if (vm->vmm_log_path == NULL)
    return NULL;
  cleanup_close int fd = cmn_open(vm->vmm_log_path, O_RDONLY, 0);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= log_off)
    return NULL;
  off_t from = st.st_size - log_off > 2048 ? st.st_size - 2048 : log_off;
  char buf[2049];
  ssize_t n = pread(fd, buf, (size_t)(st.st_size - from), from);
  if (n <= 0)
    return NULL;
  buf[n] = '\0';
  /* Keep the last three lines. */
  const char *lines[3] = {NULL, NULL, NULL};
  int count = 0;
  for (char *save = NULL, *tok = strtok_r(buf, "\r\n", &save); tok != NULL;
       tok = strtok_r(NULL, "\r\n", &save)) {
    if (tok[strspn(tok, " \t")] == '\0')
      continue;
    if (count == 3) {
      lines[0] = lines[1];
      lines[1] = lines[2];
      count = 2;
    }
    lines[count++] = tok;
  }
  if (count == 0)
    return NULL;
  if (count == 1)
    return cmn_strdup(lines[0]);
  if (count == 2)
    return cmn_asprintf("%s; %s", lines[0], lines[1]);
  return cmn_asprintf("%s; %s; %s", lines[0], lines[1], lines[2]);
}

int qemu_err_add_log(vmm_vm *vm, off_t log_off, cmn_error *err)
{
  /* QEMU prints its reason and then exits; give it a moment to do both. */
  cmn_proc_wait_exit(&vm->proc, 1000);
  cleanup_free char *tail = qemu_log_tail(vm, log_off);
  if (tail != NULL && err != NULL) {
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n, " (QEMU: %s)", tail);
  }
  return -1;
}

static qemu_vm *qemu_priv(vmm_vm *vm)
{
  if (vm->priv == NULL)
    vm->priv = cmn_calloc(1, sizeof(qemu_vm));
  return vm->priv;
}

static void qemu_drop_qmp(vmm_vm *vm)
{
  qemu_vm *p = vm->priv;
  if (p != NULL && p->qmp != NULL) {
    qemu_qmp_close(p->qmp);
    p->qmp = NULL;
  }
}

qemu_qmp *qemu_vm_qmp(const qemu_host *h, vmm_vm *vm, cmn_error *err)
{
  qemu_vm *p = qemu_priv(vm);
  if (p->qmp != NULL)
    return p->qmp;
  if (vm->proc.pid <= 0)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "no QEMU process for this VM"), NULL;
  if (!cmn_proc_alive(&vm->proc))
    return cmn_err_set(err, CMN_UNAVAILABLE, "QEMU (pid %d) is not running", (int)vm->proc.pid),
           NULL;
  cleanup_free char *path = cmn_asprintf("%s/%s", vm->dir, QEMU_QMP_SOCK);
  int timeout =
      h->connect_timeout_ms < QEMU_RECONNECT_MS ? h->connect_timeout_ms : QEMU_RECONNECT_MS;
  if (qemu_qmp_connect(path, &vm->proc, timeout, &p->qmp, err) < 0)
    return NULL;
  return p->qmp;
}

/* One command on the VM's connection. A broken connection is dropped so the
 * next call reconnects (or learns that QEMU is gone). */
int qemu_vm_cmd(const qemu_host *h, vmm_vm *vm, const char *cmd, cJSON *args, cJSON **ret,
                cmn_error *err)
{
  qemu_qmp *q = qemu_vm_qmp(h, vm, err);
  if (q == NULL) {
    cJSON_Delete(args);
    return -1;
  }
  if (qemu_qmp_execute(q, cmd, args, -1, h->command_timeout_ms, ret, err) < 0) {
    if (err != NULL && err->code == CMN_UNAVAILABLE)
      qemu_drop_qmp(vm);
    return -1;
  }
  return 0;
}

int qemu_spawn(const qemu_host *h, vmm_vm *vm, const qemu_launch *l, const char *op, cmn_error *err)
{
  char **argv = qemu_args_build(h, vm, l, err);
  if (argv == NULL)
    return -1;
  /* Stale sockets from an earlier VMM would only be refused; remove them so
   * nothing can be mistaken for the new VMM's. QEMU unlinks them too. */
  const char *socks[] = {QEMU_QMP_SOCK, QEMU_SERIAL1_SOCK, VMM_AGENT_SOCK};
  for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++) {
    cleanup_free char *s = cmn_asprintf("%s/%s", vm->dir, socks[i]);
    unlink(s);
  }
  off_t log_off = qemu_log_size(vm);
  cmn_spawn_opts opts = {.log_path = vm->vmm_log_path,
                         .cwd = vm->dir,
                         .pass_fds = vm->host_fds,
                         .n_pass_fds = (int)vm->n_host_fds,
                         .netns_path = vm->netns_path};
  int rc = cmn_proc_spawn((const char *const *)argv, &opts, &vm->proc, err);
  qemu_args_free(argv);
  if (rc < 0)
    return cmn_err_prefix(err, "spawn QEMU");
  cmn_info(vm->id, op, "spawned QEMU pid %d (%s, %s RAM%s)", (int)vm->proc.pid,
           qemu_accel_name(h->accel),
           l->ram_path == NULL ? "anonymous"
           : l->ram_private    ? "private map of a file"
                               : "shared file",
           l->incoming ? ", incoming" : "");

  qemu_vm *p = qemu_priv(vm);
  qemu_drop_qmp(vm);
  cleanup_free char *qmp_path = cmn_asprintf("%s/%s", vm->dir, QEMU_QMP_SOCK);
  if (qemu_qmp_connect(qmp_path, &vm->proc, h->connect_timeout_ms, &p->qmp, err) < 0) {
    cmn_err_prefix(err, "QEMU did not start");
    qemu_err_add_log(vm, log_off, err);
    /* QEMU exited by itself: it refused this VM (the reason is in its log);
     * retrying the same call cannot help (docs/errors.md). */
    if (err != NULL && !cmn_proc_alive(&vm->proc))
      err->code = CMN_INTERNAL;
    return -1;
  }
  return 0;
}

/* Maps QEMU's RunState names onto the driver's three states. */
static vmm_run_state qemu_map_status(const char *s)
{
  if (strcmp(s, "running") == 0)
    return VMM_STATE_RUNNING;
  /* "postmigrate": paused after a completed snapshot; `cont` resumes it. */
  if (strcmp(s, "paused") == 0 || strcmp(s, "postmigrate") == 0)
    return VMM_STATE_PAUSED;
  return VMM_STATE_OTHER;
}

int qemu_query_state(const qemu_host *h, vmm_vm *vm, vmm_run_state *out, char **raw, cmn_error *err)
{
  cJSON *ret = NULL;
  if (qemu_vm_cmd(h, vm, "query-status", NULL, &ret, err) < 0)
    return -1;
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(ret, "status");
  if (!cJSON_IsString(st)) {
    cJSON_Delete(ret);
    return cmn_err_set(err, CMN_INTERNAL, "query-status: no status in QEMU's reply");
  }
  *out = qemu_map_status(st->valuestring);
  if (raw != NULL)
    *raw = cmn_strdup(st->valuestring);
  cJSON_Delete(ret);
  return 0;
}

int qemu_ram_file_create(const char *path, uint64_t mib, qemu_vm_meta *m, cmn_error *err)
{
  if (unlink(path) < 0 && errno != ENOENT)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "remove stale %s", path);
  cleanup_close int fd = cmn_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "create %s", path);
  /* Every block is allocated before QEMU maps the file: a guest write to a
   * page of a sparse shared file on a full filesystem is a SIGBUS that kills
   * QEMU and the guest with it. On failure the file goes (nothing is left). */
  struct stat st;
  if (ftruncate(fd, (off_t)(mib << 20)) < 0) {
    cmn_err_errno(err, CMN_RESOURCE_EXHAUSTED, errno, "size %s", path);
    goto fail;
  }
  if (cmn_file_reserve(fd, path, mib << 20, err) < 0) {
    cmn_err_prefix(err, "guest RAM file");
    goto fail;
  }
  if (fstat(fd, &st) < 0) {
    cmn_err_errno(err, CMN_INTERNAL, errno, "stat %s", path);
    goto fail;
  }
  m->ram_shared = true;
  m->ram_dev = st.st_dev;
  m->ram_ino = st.st_ino;
  m->ram_reserved = true;
  return 0;
fail:
  unlink(path);
  return -1;
}

int qemu_ram_file_reserve(const char *path, uint64_t mib, cmn_error *err)
{
  cleanup_close int fd = cmn_open(path, O_RDWR, 0);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "open %s", path);
  if (cmn_file_reserve(fd, path, mib << 20, err) < 0)
    return cmn_err_prefix(err, "guest RAM file");
  return 0;
}

int qemu_start(void *state, vmm_vm *vm, const char *mem_dir, cmn_error *err)
{
  const qemu_host *h = state;
  if (vm->proc.pid > 0 && cmn_proc_alive(&vm->proc))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "a QEMU (pid %d) already runs this VM",
                       (int)vm->proc.pid);
  if (vmm_spec_check_host_files(vm->spec, true, err) < 0)
    return -1;
  qemu_vm_meta meta = {0};
  cleanup_free char *ram_path = NULL;
  if (h->base_reuse && mem_dir != NULL && mem_dir[0] != '\0') {
    cleanup_free char *abs_dir = mem_dir[0] == '/' ? cmn_strdup(mem_dir) : realpath(mem_dir, NULL);
    if (abs_dir == NULL)
      return cmn_err_errno(err, CMN_INVALID_ARGUMENT, errno, "memory folder %s", mem_dir);
    ram_path = cmn_asprintf("%s/%s", abs_dir, QEMU_SNAP_MEMORY);
    if (vm->spec == NULL || vm->spec->memory_mib == 0)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "memory must be > 0");
    if (qemu_ram_file_create(ram_path, vm->spec->memory_mib, &meta, err) < 0)
      return -1;
  }
  /* Every cold boot gets a generation ID where the guest can see one, so
   * that its snapshots can later tell a clone apart. */
  if (qemu_machine_has_vmgenid(h) && qemu_vmgenid_new(meta.vmgenid, err) < 0)
    return -1;
  if (qemu_vm_meta_write(vm, &meta, err) < 0)
    return -1;
  qemu_launch l = {.ram_path = ram_path, .incoming = false, .vmgenid = meta.vmgenid};
  off_t log_off = qemu_log_size(vm);
  if (qemu_spawn(h, vm, &l, "start", err) < 0)
    return -1;
  vmm_run_state rs;
  cleanup_free char *raw = NULL;
  if (qemu_query_state(h, vm, &rs, &raw, err) < 0)
    return qemu_err_add_log(vm, log_off, err);
  if (rs != VMM_STATE_RUNNING)
    return cmn_err_set(err, CMN_INTERNAL, "QEMU started but the VM is %s, not running", raw);
  return 0;
}

int qemu_adopt(void *state, vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  const qemu_host *h = state;
  if (vm->proc.pid <= 0 || !cmn_proc_alive(&vm->proc))
    return cmn_err_set(err, CMN_NOT_FOUND, "QEMU (pid %d) is not running", (int)vm->proc.pid);
  qemu_drop_qmp(vm);
  cleanup_free char *raw = NULL;
  if (qemu_query_state(h, vm, out, &raw, err) < 0)
    return cmn_err_prefix(err, "adopt QEMU pid %d", (int)vm->proc.pid);
  cmn_info(vm->id, "adopt", "re-adopted QEMU pid %d (%s)", (int)vm->proc.pid, raw);
  return 0;
}

int qemu_query(void *state, vmm_vm *vm, vmm_run_state *out, cmn_error *err)
{
  return qemu_query_state(state, vm, out, NULL, err);
}

int qemu_pause(void *state, vmm_vm *vm, cmn_error *err)
{
  return qemu_vm_cmd(state, vm, "stop", NULL, NULL, err);
}

int qemu_resume(void *state, vmm_vm *vm, cmn_error *err)
{
  return qemu_vm_cmd(state, vm, "cont", NULL, NULL, err);
}

/* Polls (without reaping: the agent reaps) until QEMU has ended. */
static bool qemu_wait_gone(const vmm_vm *vm, int timeout_ms)
{
  return cmn_proc_wait_exit(&vm->proc, timeout_ms);
}

int qemu_shutdown(void *state, vmm_vm *vm, int timeout_ms, cmn_error *err)
{
  const qemu_host *h = state;
  if (vm->proc.pid <= 0 || !cmn_proc_alive(&vm->proc)) {
    qemu_drop_qmp(vm);
    return 0;
  }
  vmm_run_state rs = VMM_STATE_OTHER;
  cmn_error qerr = {0};
  if (qemu_query_state(h, vm, &rs, NULL, &qerr) < 0)
    rs = VMM_STATE_OTHER;
  /* Only a running guest can act on the power button. A paused one (e.g.
   * right after a standby snapshot) must not run again at all: its RAM file
   * is the snapshot now. */
  if (rs == VMM_STATE_RUNNING && qemu_vm_cmd(h, vm, "system_powerdown", NULL, NULL, &qerr) == 0 &&
      qemu_wait_gone(vm, timeout_ms)) {
    cmn_info(vm->id, "shutdown", "guest powered off");
    qemu_drop_qmp(vm);
    return 0;
  }
  /* `quit` may end QEMU before its reply arrives; the process is the truth. */
  qemu_vm_cmd(h, vm, "quit", NULL, NULL, &qerr);
  bool gone = qemu_wait_gone(vm, QEMU_QUIT_WAIT_MS);
  qemu_drop_qmp(vm);
  if (!gone)
    return cmn_err_set(err, CMN_DEADLINE_EXCEEDED, "QEMU (pid %d) did not exit after quit",
                       (int)vm->proc.pid);
  cmn_info(vm->id, "shutdown", "QEMU quit%s",
           rs == VMM_STATE_RUNNING ? " after powerdown timeout" : "");
  return 0;
}

void qemu_release(void *state, vmm_vm *vm)
{
  (void)state;
  qemu_drop_qmp(vm);
  qemu_vm *q = vm->priv;
  if (q != NULL) {
    free(q->warm_dir);
    free(q->warm_created_ram);
  }
  free(vm->priv);
  vm->priv = NULL;
}

void qemu_cleanup(void *state, vmm_vm *vm)
{
  (void)state;
  const char *files[] = {QEMU_QMP_SOCK, QEMU_SERIAL1_SOCK, VMM_AGENT_SOCK, QEMU_VM_META};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    cleanup_free char *p = cmn_asprintf("%s/%s", vm->dir, files[i]);
    if (unlink(p) < 0 && errno != ENOENT)
      cmn_warn(vm->id, "cleanup", "cannot remove %s: %s", p, cmn_strerror(errno));
  }
}
