/* spec.c: copying and freeing vmm_spec, and checking the host files it names
 * (see hypervisor.h). */
#include "drivers/hypervisor.h"
#include "common/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int spec_check_file(const char *what, const char *path, int mode, cmn_error *err)
{
  if (path == NULL || path[0] == '\0')
    return 0;
  /* A descriptor the agent opened, checked and hands to the VMM at this
   * number (vmm_vm.host_fds): it names a file of the child, not of ours. */
  if (strncmp(path, VMM_HOST_FD_PREFIX, strlen(VMM_HOST_FD_PREFIX)) == 0)
    return 0;
  struct stat st;
  if (stat(path, &st) < 0 || access(path, mode) < 0)
    return cmn_err_errno(err, CMN_FAILED_PRECONDITION, errno, "%s %s", what, path);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "%s %s is not a file or block device", what,
                       path);
  return 0;
}

int vmm_spec_check_host_files(const vmm_spec *spec, bool with_kernel, cmn_error *err)
{
  if (spec == NULL)
    return 0;
  if (with_kernel && (spec_check_file("kernel", spec->kernel, R_OK, err) < 0 ||
                      spec_check_file("initrd", spec->initrd, R_OK, err) < 0))
    return -1;
  for (size_t i = 0; i < spec->n_disks; i++)
    if (spec_check_file("disk", spec->disks[i].path, spec->disks[i].read_only ? R_OK : R_OK | W_OK,
                        err) < 0)
      return -1;
  return 0;
}

void vmm_proc_end(vmm_vm *vm)
{
  if (vm->proc.pid > 0)
    cmn_proc_kill_reap(&vm->proc);
  memset(&vm->proc, 0, sizeof vm->proc);
}

void vmm_spec_free(vmm_spec *spec)
{
  if (spec == NULL)
    return;
  free(spec->kernel);
  free(spec->initrd);
  free(spec->cmdline);
  for (size_t i = 0; i < spec->n_disks; i++)
    free(spec->disks[i].path);
  free(spec->disks);
  for (size_t i = 0; i < spec->n_nics; i++) {
    free(spec->nics[i].tap);
    free(spec->nics[i].mac);
  }
  free(spec->nics);
  memset(spec, 0, sizeof *spec);
}

void vmm_spec_copy(vmm_spec *dst, const vmm_spec *src)
{
  memset(dst, 0, sizeof *dst);
  dst->vcpus = src->vcpus;
  dst->memory_mib = src->memory_mib;
  dst->vsock_cid = src->vsock_cid;
  dst->guest_agent = src->guest_agent;
  dst->kernel = cmn_strdup(src->kernel);
  dst->initrd = cmn_strdup(src->initrd);
  dst->cmdline = cmn_strdup(src->cmdline);
  dst->n_disks = src->n_disks;
  dst->disks = cmn_calloc(src->n_disks, sizeof *dst->disks);
  for (size_t i = 0; i < src->n_disks; i++) {
    dst->disks[i].path = cmn_strdup(src->disks[i].path);
    dst->disks[i].read_only = src->disks[i].read_only;
    dst->disks[i].overlay = src->disks[i].overlay;
  }
  dst->n_nics = src->n_nics;
  dst->nics = cmn_calloc(src->n_nics, sizeof *dst->nics);
  for (size_t i = 0; i < src->n_nics; i++) {
    dst->nics[i].tap = cmn_strdup(src->nics[i].tap);
    dst->nics[i].mac = cmn_strdup(src->nics[i].mac);
  }
}
