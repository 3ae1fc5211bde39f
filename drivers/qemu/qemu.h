/* qemu.h: what the qemu driver offers beyond drivers/hypervisor.h.
 *
 * vmm_driver.caps is static, but this driver's capabilities depend on its
 * config ("base_reuse": false drops BASE_REUSE and LIVE_RAM_FILE). The static
 * caps of vmm_qemu_driver are those of the default (base reuse on); this
 * function reports the effective ones for an initialised state. With base
 * reuse off the driver stays correct when asked for a DIFF anyway (it writes a
 * full stream and ignores mem_dir). */
#ifndef EMBER_DRIVERS_QEMU_QEMU_H
#define EMBER_DRIVERS_QEMU_QEMU_H

/* state: from vmm_qemu_driver.init. Returns enum vmm_cap bits. */
unsigned vmm_qemu_caps(const void *state);

#endif
