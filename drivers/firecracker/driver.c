/* driver.c: placeholder until the firecracker driver lands. */
#include "drivers/registry.h"

static int firecracker_init(const cJSON *config, void **state, cmn_error *err)
{
  (void)config;
  (void)state;
  return cmn_err_set(err, CMN_UNIMPLEMENTED, "the firecracker driver is not built yet");
}

const vmm_driver vmm_firecracker_driver = {
    .type = "firecracker",
    .caps = 0,
    .init = firecracker_init,
};
