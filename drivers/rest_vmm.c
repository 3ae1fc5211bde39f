/* rest_vmm.c: spawning and reaching REST-controlled VMMs (see rest_vmm.h). */
#include "drivers/rest_vmm.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/http_unix.h"
#include "common/mem.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *vmm_find_binary(const char *env_var, const cJSON *config, const char *default_name,
                      const char *type, cmn_error *err)
{
  const char *want = getenv(env_var);
  cleanup_free char *from = cmn_strdup(env_var);
  if (want == NULL || want[0] == '\0') {
    const cJSON *b = config != NULL ? cJSON_GetObjectItemCaseSensitive(config, "binary") : NULL;
    want = cJSON_IsString(b) ? b->valuestring : default_name;
    free(from);
    from = cJSON_IsString(b) ? cmn_asprintf("config drivers.%s.binary", type) : cmn_strdup("PATH");
  }
  cleanup_free char *found = cmn_which(want);
  if (found == NULL) {
    cmn_err_set(err, CMN_UNAVAILABLE, "no %s binary: \"%s\" (from %s) is not an executable file",
                type, want, from);
    return NULL;
  }
  char *abs = realpath(found, NULL);
  return abs != NULL ? abs : steal_ptr(found);
}

char *vmm_log_tail(const vmm_vm *vm)
{
  cleanup_free char *buf = NULL;
  size_t len = 0;
  if (vm->vmm_log_path == NULL || cmn_file_read(vm->vmm_log_path, 1u << 20, &buf, &len, NULL) < 0 ||
      len == 0)
    return cmn_strdup("(no VMM output)");
  size_t keep = len > 400 ? 400 : len;
  char *t = cmn_strdup(buf + len - keep);
  for (char *c = t; *c != '\0'; c++)
    if (*c == '\n')
      *c = ' ';
  return t;
}

int vmm_rest_spawn(vmm_vm *vm, const char *name, const char *const vmm_argv[], const char *sock,
                   const char *ping_path, int timeout_ms, cmn_error *err)
{
  if (vm->proc.pid > 0 && cmn_proc_alive(&vm->proc))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                       "a %s process (pid %d) already runs for "
                       "this VM",
                       name, (int)vm->proc.pid);
  cleanup_free char *vsock = cmn_asprintf("%s/%s", vm->dir, VMM_VSOCK_SOCK);
  const char *stale[] = {sock, vsock};
  for (size_t i = 0; i < 2; i++)
    if (unlink(stale[i]) < 0 && errno != ENOENT)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "removing stale %s", stale[i]);

  size_t n = 0;
  while (vmm_argv[n] != NULL)
    n++;
  cleanup_free char *tag = cmn_asprintf("ember-%s", name);
  cleanup_free const char **argv = cmn_calloc(n + 6, sizeof *argv);
  argv[0] = "/bin/sh";
  argv[1] = "-c";
  argv[2] = "c=$1; shift; exec \"$@\" >>\"$c\"";
  argv[3] = tag;
  argv[4] = vm->console_path != NULL ? vm->console_path : "/dev/null";
  memcpy(&argv[5], vmm_argv, n * sizeof *argv);
  cmn_spawn_opts opts = {.log_path = vm->vmm_log_path,
                         .cwd = vm->dir,
                         .pass_fds = vm->host_fds,
                         .n_pass_fds = (int)vm->n_host_fds,
                         .netns_path = vm->netns_path};
  if (cmn_proc_spawn(argv, &opts, &vm->proc, err) < 0)
    return cmn_err_prefix(err, "starting %s", vmm_argv[0]);

  int64_t deadline = cmn_now_us() + (int64_t)timeout_ms * 1000;
  for (;;) {
    if (!cmn_proc_alive(&vm->proc)) {
      cleanup_free char *tail = vmm_log_tail(vm);
      return cmn_err_set(err, CMN_INTERNAL, "%s exited at start-up: %s", name, tail);
    }
    if (access(sock, F_OK) == 0) {
      long status = 0;
      cmn_error e2 = {0};
      if (cmn_http_request_timeout(sock, "GET", ping_path, NULL, 1000, &status, NULL, &e2) == 0 &&
          status == 200)
        return 0;
    }
    if (cmn_now_us() > deadline)
      return cmn_err_set(err, CMN_DEADLINE_EXCEEDED,
                         "%s's API socket %s did not answer within %d ms", name, sock, timeout_ms);
    cmn_sleep_ms(2);
  }
}
