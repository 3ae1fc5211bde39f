/* driver.c: placeholder until the qemu driver lands. */
#include "drivers/registry.h"

static int qemu_init(const cJSON *config, void **state, cmn_error *err)
{
  (void)config;
  (void)state;
  return cmn_err_set(err, CMN_UNIMPLEMENTED, "the qemu driver is not built yet");
}

const vmm_driver vmm_qemu_driver = {
    .type = "qemu",
    .caps = 0,
    .init = qemu_init,
};
