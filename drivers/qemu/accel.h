/* accel.h: choosing QEMU's accelerator for this host.
 *
 * "auto" picks KVM only where a stock Linux guest really runs on it: /dev/kvm
 * must open read-write, and it must not be backed by PVM (kvm_pvm), which
 * boots tiny freestanding guests but not Linux. Otherwise TCG. */
#ifndef EMBER_DRIVERS_QEMU_ACCEL_H
#define EMBER_DRIVERS_QEMU_ACCEL_H

#include "common/error.h"

#include <stdbool.h>

typedef enum qemu_accel {
  QEMU_ACCEL_TCG = 1,
  QEMU_ACCEL_KVM = 2,
} qemu_accel;

/* Resolves a request ("auto", "kvm", "tcg"; NULL means "auto") to an
 * accelerator. *why (caller frees) says how the choice was made, for
 * describe(). "kvm" is honoured even on PVM (for tiny guests) but fails
 * when /dev/kvm cannot be opened. */
int qemu_accel_choose(const char *request, qemu_accel *out, char **why, cmn_error *err);
const char *qemu_accel_name(qemu_accel a);
/* True when /dev/kvm is backed by PVM (kvm_pvm module). PVM refuses some MSRs
 * that `-cpu host` sets (e.g. IA32_ARCH_CAPABILITIES), so there the driver
 * keeps QEMU's default CPU model. */
bool qemu_accel_kvm_is_pvm(void);

#endif
