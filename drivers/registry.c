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

int vmm_driver_check(const vmm_driver *drv, unsigned caps, cmn_error *err)
{
  static const struct {
    unsigned cap;
    const char *name;
  } names[] = {
      {VMM_CAP_SNAPSHOT, "SNAPSHOT"},           {VMM_CAP_PAUSE, "PAUSE"},
      {VMM_CAP_BASE_REUSE, "BASE_REUSE"},       {VMM_CAP_GRACEFUL_SHUTDOWN, "GRACEFUL_SHUTDOWN"},
      {VMM_CAP_LIVE_RAM_FILE, "LIVE_RAM_FILE"}, {VMM_CAP_FORK, "FORK"},
  };
  const char *type = drv->type != NULL ? drv->type : "(unnamed)";
  unsigned known = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    known |= names[i].cap;
  if ((caps & ~known) != 0)
    return cmn_err_set(err, CMN_INTERNAL, "driver %s declares unknown capability bits 0x%x", type,
                       caps & ~known);
  /* One row per rule: the capability, whether the ops it needs are there. */
  const struct {
    bool needed;
    bool present;
    const char *what;
  } rules[] = {
      {true, drv->type != NULL && drv->type[0] != '\0', "a type name"},
      {true, drv->start != NULL, "the start op"},
      {true, drv->query != NULL, "the query op"},
      {(caps & VMM_CAP_SNAPSHOT) != 0, drv->snapshot != NULL && drv->restore != NULL,
       "snapshot and restore ops (capability SNAPSHOT)"},
      {(caps & VMM_CAP_PAUSE) != 0, drv->pause != NULL && drv->resume != NULL,
       "pause and resume ops (capability PAUSE)"},
      {(caps & VMM_CAP_GRACEFUL_SHUTDOWN) != 0, drv->shutdown != NULL,
       "the shutdown op (capability GRACEFUL_SHUTDOWN)"},
      {drv->shutdown != NULL, (caps & VMM_CAP_GRACEFUL_SHUTDOWN) != 0,
       "capability GRACEFUL_SHUTDOWN (it has a shutdown op the agent would never call)"},
      {(caps & VMM_CAP_BASE_REUSE) != 0, (caps & VMM_CAP_SNAPSHOT) != 0,
       "capability SNAPSHOT (BASE_REUSE needs it)"},
      {(caps & VMM_CAP_LIVE_RAM_FILE) != 0, (caps & VMM_CAP_BASE_REUSE) != 0,
       "capability BASE_REUSE (LIVE_RAM_FILE needs it)"},
      {(caps & VMM_CAP_FORK) != 0,
       drv->save != NULL && drv->restore_frozen != NULL && (caps & VMM_CAP_SNAPSHOT) != 0,
       "save and restore_frozen ops and capability SNAPSHOT (capability FORK)"},
      {drv->save != NULL || drv->restore_frozen != NULL, (caps & VMM_CAP_FORK) != 0,
       "capability FORK (it has a save or restore_frozen op the agent would never call)"},
      {drv->restore_prepare != NULL || drv->warm_discard != NULL,
       drv->restore_prepare != NULL && drv->warm_discard != NULL && (caps & VMM_CAP_SNAPSHOT) != 0,
       "both restore_prepare and warm_discard and capability SNAPSHOT (warm restore)"},
  };
  for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
    if (rules[i].needed && !rules[i].present)
      return cmn_err_set(err, CMN_INTERNAL, "driver %s lacks %s", type, rules[i].what);
  return 0;
}

static int registry_add(vmm_registry *reg, const vmm_driver *drv, const cJSON *cfg, cmn_error *err)
{
  if (vmm_driver_check(drv, drv->caps, err) < 0)
    return -1;
  vmm_entry *e = &reg->entries[reg->n++];
  e->driver = drv;
  cmn_error why = {0}; /* an init failure makes the type unavailable, not fatal */
  const cJSON *section = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, drv->type) : NULL;
  if (drv->init == NULL || drv->init(section, &e->state, &why) == 0) {
    e->available = true;
    e->caps = drv->effective_caps ? drv->effective_caps(e->state) : drv->caps;
    e->detail = drv->describe ? drv->describe(e->state) : cmn_strdup(drv->type);
    if ((e->caps & ~drv->caps) != 0)
      return cmn_err_set(err, CMN_INTERNAL,
                         "driver %s reports effective capabilities 0x%x beyond its declared 0x%x",
                         drv->type, e->caps, drv->caps);
    if (vmm_driver_check(drv, e->caps, err) < 0)
      return -1;
    cmn_info(NULL, NULL, "driver %s available: %s", drv->type, e->detail);
  } else {
    e->available = false;
    e->caps = drv->caps;
    e->state = NULL;
    e->detail = cmn_strdup(why.msg);
    cmn_warn(NULL, NULL, "driver %s unavailable: %s", drv->type, e->detail);
  }
  return 0;
}

vmm_registry *vmm_registry_create(const cJSON *drivers_config, const vmm_driver *const *extra,
                                  size_t n_extra, cmn_error *err)
{
  size_t nb = sizeof registry_builtin / sizeof registry_builtin[0];
  vmm_registry *reg = cmn_calloc(1, sizeof *reg);
  reg->entries = cmn_calloc(nb + n_extra, sizeof *reg->entries);
  for (size_t i = 0; i < nb + n_extra; i++) {
    const vmm_driver *drv = i < nb ? registry_builtin[i] : extra[i - nb];
    if (registry_add(reg, drv, drivers_config, err) < 0) {
      vmm_registry_free(reg);
      return NULL;
    }
  }
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
