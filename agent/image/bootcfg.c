/* bootcfg.c: encode an instance's boot config (guest/bootcfg_format.h) and
 * write it as the small disk image the guest init reads. */
#include "agent/image/bootcfg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"
#include "guest/bootcfg_format.h"

typedef struct bootcfg_buf {
  unsigned char *p;
  size_t len;
  size_t cap;
} bootcfg_buf;

static void bootcfg_grow(bootcfg_buf *b, size_t more)
{
  if (b->len + more <= b->cap)
    return;
  size_t ncap = b->cap == 0 ? 4096 : b->cap;
  while (ncap < b->len + more)
    ncap *= 2;
  b->p = cmn_realloc(b->p, ncap);
  b->cap = ncap;
}

static int bootcfg_add(bootcfg_buf *b, unsigned tag, const char *v, size_t max, const char *what,
                       cmn_error *err)
{
  size_t n = strlen(v);
  if (n > max)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s is %zu bytes long (at most %zu)", what, n,
                       max);
  if (b->len - EMBER_BOOTCFG_HEADER_SIZE + EMBER_BOOTCFG_RECORD_HEADER + n >
      EMBER_BOOTCFG_MAX_PAYLOAD)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "the boot config exceeds %u bytes (command line and environment too "
                       "large)",
                       EMBER_BOOTCFG_MAX_PAYLOAD);
  bootcfg_grow(b, EMBER_BOOTCFG_RECORD_HEADER + n);
  unsigned char *r = b->p + b->len;
  ember_bootcfg_put16(r, (uint16_t)tag);
  ember_bootcfg_put16(r + 2, 0);
  ember_bootcfg_put32(r + 4, (uint32_t)n);
  memcpy(r + EMBER_BOOTCFG_RECORD_HEADER, v, n);
  b->len += EMBER_BOOTCFG_RECORD_HEADER + n;
  return 0;
}

static int bootcfg_records(const img_bootcfg *c, bootcfg_buf *b, cmn_error *err)
{
  if (c->argc == 0 || c->argv == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "no command to run: the image has no Entrypoint/Cmd and none was given");
  if (c->argc > EMBER_BOOTCFG_MAX_ARGS)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%zu arguments (at most %u)", c->argc,
                       EMBER_BOOTCFG_MAX_ARGS);
  if (c->envc > EMBER_BOOTCFG_MAX_ENV)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%zu environment variables (at most %u)", c->envc,
                       EMBER_BOOTCFG_MAX_ENV);
  for (size_t i = 0; i < c->argc; i++) {
    if (c->argv[i] == NULL)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "argument %zu is missing", i);
    if (bootcfg_add(b, EMBER_BOOTCFG_ARG, c->argv[i], EMBER_BOOTCFG_MAX_VALUE, "an argument", err) <
        0)
      return -1;
  }
  for (size_t i = 0; i < c->envc; i++) {
    const char *e = c->env != NULL ? c->env[i] : NULL;
    if (e == NULL || e[0] == '=' || strchr(e, '=') == NULL)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "environment entry %zu is not KEY=VALUE", i);
    if (bootcfg_add(b, EMBER_BOOTCFG_ENV, e, EMBER_BOOTCFG_MAX_VALUE, "an environment variable",
                    err) < 0)
      return -1;
  }
  if (c->workdir != NULL && c->workdir[0] != '\0') {
    if (c->workdir[0] != '/')
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "working directory '%s' is not an absolute path", c->workdir);
    if (bootcfg_add(b, EMBER_BOOTCFG_WORKDIR, c->workdir, EMBER_BOOTCFG_MAX_PATH,
                    "the working directory", err) < 0)
      return -1;
  }
  if (c->user != NULL && c->user[0] != '\0' &&
      bootcfg_add(b, EMBER_BOOTCFG_USER, c->user, EMBER_BOOTCFG_MAX_USER, "the user", err) < 0)
    return -1;
  if (c->hostname != NULL && c->hostname[0] != '\0' &&
      bootcfg_add(b, EMBER_BOOTCFG_HOSTNAME, c->hostname, EMBER_BOOTCFG_MAX_HOSTNAME,
                  "the hostname", err) < 0)
    return -1;
  if (c->root != NULL && c->root[0] != '\0') {
    if (c->root[0] != '/')
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "root device '%s' is not a path", c->root);
    if (bootcfg_add(b, EMBER_BOOTCFG_ROOT, c->root, EMBER_BOOTCFG_MAX_PATH, "the root device",
                    err) < 0)
      return -1;
  }
  return 0;
}

int img_bootcfg_encode(const img_bootcfg *c, unsigned char **out, size_t *len, cmn_error *err)
{
  *out = NULL;
  *len = 0;
  bootcfg_buf b = {0};
  bootcfg_grow(&b, EMBER_BOOTCFG_HEADER_SIZE);
  b.len = EMBER_BOOTCFG_HEADER_SIZE;
  if (bootcfg_records(c, &b, err) < 0) {
    free(b.p);
    return cmn_err_prefix(err, "boot config");
  }
  size_t plen = b.len - EMBER_BOOTCFG_HEADER_SIZE;
  memset(b.p, 0, EMBER_BOOTCFG_HEADER_SIZE);
  memcpy(b.p, EMBER_BOOTCFG_MAGIC, EMBER_BOOTCFG_MAGIC_LEN);
  ember_bootcfg_put32(b.p + 8, EMBER_BOOTCFG_VERSION);
  ember_bootcfg_put32(b.p + 12, EMBER_BOOTCFG_HEADER_SIZE);
  ember_bootcfg_put32(b.p + 16, (uint32_t)plen);
  ember_bootcfg_put32(b.p + 20, ember_bootcfg_crc32(b.p + EMBER_BOOTCFG_HEADER_SIZE, plen));
  size_t padded = (b.len + EMBER_BOOTCFG_ALIGN - 1) / EMBER_BOOTCFG_ALIGN * EMBER_BOOTCFG_ALIGN;
  bootcfg_grow(&b, padded - b.len);
  memset(b.p + b.len, 0, padded - b.len);
  *out = b.p;
  *len = padded;
  return 0;
}

int img_bootcfg_write(const img_bootcfg *c, const char *path, cmn_error *err)
{
  cleanup_free unsigned char *buf = NULL;
  size_t len = 0;
  if (img_bootcfg_encode(c, &buf, &len, err) < 0)
    return -1;
  if (cmn_file_write_atomic(path, buf, len, 0644, err) < 0)
    return cmn_err_prefix(err, "boot config %s", path);
  return 0;
}
