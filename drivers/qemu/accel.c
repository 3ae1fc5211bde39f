/* accel.c: host probe for the QEMU accelerator (see accel.h). */
#include "drivers/qemu/accel.h"

#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

const char *qemu_accel_name(qemu_accel a) { return a == QEMU_ACCEL_KVM ? "kvm" : "tcg"; }

/* PVM registers the kvm_pvm module; /sys/module shows built-in and loaded
 * modules alike, and /proc/modules (absent in some containers) loaded ones. */
bool qemu_accel_kvm_is_pvm(void)
{
  if (cmn_is_dir("/sys/module/kvm_pvm"))
    return true;
  cleanup_free char *mods = NULL;
  if (cmn_file_read("/proc/modules", 1u << 20, &mods, NULL, NULL) == 0) {
    if (strncmp(mods, "kvm_pvm ", 8) == 0 || strstr(mods, "\nkvm_pvm ") != NULL)
      return true;
  }
  return false;
}

static int accel_kvm_usable(int *errnum)
{
  int fd = cmn_open("/dev/kvm", O_RDWR, 0);
  if (fd < 0) {
    *errnum = errno;
    return -1;
  }
  close(fd);
  return 0;
}

int qemu_accel_choose(const char *request, qemu_accel *out, char **why, cmn_error *err)
{
  if (request == NULL || request[0] == '\0')
    request = "auto";
  int errnum = 0;
  if (strcmp(request, "tcg") == 0) {
    *out = QEMU_ACCEL_TCG;
    *why = cmn_strdup("tcg (requested)");
    return 0;
  }
  if (strcmp(request, "kvm") == 0) {
    if (accel_kvm_usable(&errnum) < 0)
      return cmn_err_errno(err, CMN_FAILED_PRECONDITION, errnum,
                           "accel kvm requested but /dev/kvm cannot be opened");
    *out = QEMU_ACCEL_KVM;
    *why = cmn_strdup(qemu_accel_kvm_is_pvm() ? "kvm (requested; PVM-backed)" : "kvm (requested)");
    return 0;
  }
  if (strcmp(request, "auto") != 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "accel must be \"auto\", \"kvm\" or \"tcg\", not \"%s\"", request);
  if (accel_kvm_usable(&errnum) < 0) {
    *out = QEMU_ACCEL_TCG;
    *why = cmn_asprintf("tcg (auto: /dev/kvm unusable: %s)", cmn_strerror(errnum));
  } else if (qemu_accel_kvm_is_pvm()) {
    *out = QEMU_ACCEL_TCG;
    *why = cmn_strdup("tcg (auto: /dev/kvm is PVM-backed, cannot boot Linux guests)");
  } else {
    *out = QEMU_ACCEL_KVM;
    *why = cmn_strdup("kvm (auto)");
  }
  return 0;
}
