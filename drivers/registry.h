/* registry.h: the hypervisor drivers of this build, by type.
 *
 * Built once at start-up (vmm_registry_create initialises every compiled-in
 * driver with its config section) and read-only afterwards, so any thread may
 * look drivers up without locks. */
#ifndef EMBER_DRIVERS_REGISTRY_H
#define EMBER_DRIVERS_REGISTRY_H

#include "drivers/hypervisor.h"

typedef struct vmm_registry vmm_registry;

typedef struct vmm_entry {
  const vmm_driver *driver;
  void *state; /* from driver->init; NULL when unavailable */
  bool available;
  unsigned caps; /* effective capabilities (enum vmm_cap bits) */
  char *detail;  /* version line when available, reason when not */
} vmm_entry;

/* drivers_config: the "drivers" object of the agent config, holding one
 * object per type (may be NULL). extra: additional drivers (tests), may be NULL.
 * Refuses (NULL, INTERNAL naming the driver) a driver whose capability bits do
 * not match its operations (vmm_driver_check): that is a bug in the driver,
 * and emberd must not start with it rather than crash on a NULL op later. */
vmm_registry *vmm_registry_create(const cJSON *drivers_config, const vmm_driver *const *extra,
                                  size_t n_extra, cmn_error *err);
/* The contract between capability bits and operations: every driver has start
 * and query; SNAPSHOT needs snapshot and restore; PAUSE needs pause and resume;
 * GRACEFUL_SHUTDOWN needs shutdown and shutdown needs it (an op the agent would
 * never call is a declaration error); BASE_REUSE needs SNAPSHOT; LIVE_RAM_FILE
 * needs BASE_REUSE. `caps` are the bits to check: the declared ones, or the
 * effective ones after init, which must be a subset of the declared ones. */
int vmm_driver_check(const vmm_driver *drv, unsigned caps, cmn_error *err);
void vmm_registry_free(vmm_registry *reg);
/* NULL when the type is not compiled in. */
const vmm_entry *vmm_registry_get(const vmm_registry *reg, const char *type);
size_t vmm_registry_count(const vmm_registry *reg);
const vmm_entry *vmm_registry_at(const vmm_registry *reg, size_t i);

/* The drivers compiled into emberd (defined in each driver folder). */
extern const vmm_driver vmm_qemu_driver;
extern const vmm_driver vmm_firecracker_driver;
extern const vmm_driver vmm_cloud_hypervisor_driver;

#endif
