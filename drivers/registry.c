/* registry.c: the compiled-in drivers by type (see registry.h). */
#include "drivers/registry.h"
#include "common/log.h"
#include "common/mem.h"

#include <stdlib.h>
#include <string.h>

static const vmm_driver *const registry_builtin[] = {
    &vmm_qemu_driver,
    &vmm_firecracker_driver,
    &vmm_cloud_hypervisor_driver,
};

struct vmm_registry {
  vmm_entry *entries;
  size_t n;
};

static void registry_add(vmm_registry *reg, const vmm_driver *drv, const cJSON *cfg)
{
  vmm_entry *e = &reg->entries[reg->n++];
  e->driver = drv;
  cmn_error err = {0};
  const cJSON *section = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, drv->type) : NULL;
  if (drv->init == NULL || drv->init(section, &e->state, &err) == 0) {
    e->available = true;
    e->caps = drv->effective_caps ? drv->effective_caps(e->state) : drv->caps;
    e->detail = drv->describe ? drv->describe(e->state) : cmn_strdup(drv->type);
    cmn_info(NULL, NULL, "driver %s available: %s", drv->type, e->detail);
  } else {
    e->available = false;
    e->caps = drv->caps;
    e->state = NULL;
    e->detail = cmn_strdup(err.msg);
    cmn_warn(NULL, NULL, "driver %s unavailable: %s", drv->type, e->detail);
  }
}

vmm_registry *vmm_registry_create(const cJSON *drivers_config,
                                  const vmm_driver *const *extra, size_t n_extra)
{
  size_t nb = sizeof registry_builtin / sizeof registry_builtin[0];
  vmm_registry *reg = cmn_calloc(1, sizeof *reg);
  reg->entries = cmn_calloc(nb + n_extra, sizeof *reg->entries);
  for (size_t i = 0; i < nb; i++)
    registry_add(reg, registry_builtin[i], drivers_config);
  for (size_t i = 0; i < n_extra; i++)
    registry_add(reg, extra[i], drivers_config);
  return reg;
}

void vmm_registry_free(vmm_registry *reg)
{
  if (reg == NULL)
    return;
  for (size_t i = 0; i < reg->n; i++) {
    vmm_entry *e = &reg->entries[i];
    if (e->available && e->driver->fini != NULL)
      e->driver->fini(e->state);
    free(e->detail);
  }
  free(reg->entries);
  free(reg);
}

const vmm_entry *vmm_registry_get(const vmm_registry *reg, const char *type)
{
  if (type == NULL)
    return NULL;
  /* Later entries (test drivers) win over built-ins of the same type. */
  for (size_t i = reg->n; i > 0; i--)
    if (strcmp(reg->entries[i - 1].driver->type, type) == 0)
      return &reg->entries[i - 1];
  return NULL;
}

size_t vmm_registry_count(const vmm_registry *reg) { return reg->n; }

const vmm_entry *vmm_registry_at(const vmm_registry *reg, size_t i)
{
  return i < reg->n ? &reg->entries[i] : NULL;
}
