/* fuzz_bootcfg.c: libFuzzer target of the guest's boot config reader
 * (guest/init/config.c), which parses a disk the host wrote but that a
 * compromised or buggy host could fill with anything. Every accepted input
 * must round-trip through the host writer to a config that parses equal. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/image/bootcfg.h"
#include "guest/bootcfg_format.h"
#include "guest/init/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_one(const uint8_t *data, size_t size)
{
  init_config c;
  char why[256];
  if (init_config_parse(data, size, &c, why, sizeof(why)) < 0)
    return;
  img_bootcfg w = {.argv = (const char *const *)c.argv,
                   .argc = c.argc,
                   .env = (const char *const *)c.env,
                   .envc = c.envc,
                   .workdir = c.workdir,
                   .user = c.user,
                   .hostname = c.hostname,
                   .root = c.root,
                   .dns = c.dns,
                   .ndns = c.ndns};
  /* the network records the reader kept: the writer takes them back as is */
  img_bootcfg_net nets[EMBER_BOOTCFG_MAX_NET];
  char macs[EMBER_BOOTCFG_MAX_NET][18];
  for (size_t i = 0; i < c.nnet; i++) {
    const uint8_t *m = c.net[i].mac;
    snprintf(macs[i], sizeof(macs[i]), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
             m[4], m[5]);
    nets[i] = (img_bootcfg_net){.mac = macs[i],
                                .addr = c.net[i].addr,
                                .prefix = c.net[i].prefix,
                                .gateway = c.net[i].gateway,
                                .mtu = c.net[i].mtu};
  }
  w.net = nets;
  w.nnet = c.nnet;
  unsigned char *buf = NULL;
  size_t len = 0;
  cmn_error err = {0};
  if (img_bootcfg_encode(&w, &buf, &len, &err) < 0)
    abort(); /* the writer refuses what the reader accepted */
  init_config d;
  if (init_config_parse(buf, len, &d, why, sizeof(why)) < 0 || d.argc != c.argc ||
      d.envc != c.envc || strcmp(d.workdir, c.workdir) != 0 || d.nnet != c.nnet ||
      d.ndns != c.ndns || d.nnotes != 0 || memcmp(d.net, c.net, c.nnet * sizeof(c.net[0])) != 0 ||
      memcmp(d.dns, c.dns, c.ndns * sizeof(c.dns[0])) != 0)
    abort();
  for (size_t i = 0; i < c.argc; i++)
    if (strcmp(d.argv[i], c.argv[i]) != 0)
      abort();
  init_config_free(&d);
  init_config_free(&c);
  free(buf);
}

/* The input as is, then with a valid CRC so that the records get fuzzed too. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  fuzz_one(data, size);
  if (size < EMBER_BOOTCFG_HEADER_SIZE)
    return 0;
  uint8_t *copy = malloc(size);
  memcpy(copy, data, size);
  uint32_t plen = ember_bootcfg_get32(copy + 16);
  if (plen <= size - EMBER_BOOTCFG_HEADER_SIZE) {
    ember_bootcfg_put32(copy + 20, ember_bootcfg_crc32(copy + EMBER_BOOTCFG_HEADER_SIZE, plen));
    fuzz_one(copy, size);
  }
  free(copy);
  return 0;
}
