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
  void *state;         /* from driver->init; NULL when unavailable */
  bool available;
  unsigned caps;       /* effective capabilities (enum vmm_cap bits) */
  char *detail;        /* version line when available, reason when not */
} vmm_entry;

/* drivers_config: the "drivers" object of the agent config, holding one
 * object per type (may be NULL). extra: additional drivers (tests), may be NULL. */
vmm_registry *vmm_registry_create(const cJSON *drivers_config,
                                  const vmm_driver *const *extra, size_t n_extra);
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
