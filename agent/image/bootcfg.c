/* bootcfg.c: encode an instance's boot config (guest/bootcfg_format.h) and
 * write it as the small disk image the guest init reads. */
#include "agent/image/bootcfg.h"

#include <stdint.h>
#include <stdio.h>
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

static void bootcfg_ipv4_text(uint32_t a, char out[16])
{
  snprintf(out, 16, "%u.%u.%u.%u", a >> 24, a >> 16 & 0xFFu, a >> 8 & 0xFFu, a & 0xFFu);
}

/* NET records (one per interface) and DNS records, checked with the reader's
 * own rules (guest/bootcfg_format.h) so the guest never has to skip one. */
static int bootcfg_net_records(const img_bootcfg *c, bootcfg_buf *b, cmn_error *err)
{
  if (c->nnet > EMBER_BOOTCFG_MAX_NET)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%zu network interfaces (at most %u)", c->nnet,
                       EMBER_BOOTCFG_MAX_NET);
  if (c->ndns > EMBER_BOOTCFG_MAX_DNS)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%zu nameservers (at most %u)", c->ndns,
                       EMBER_BOOTCFG_MAX_DNS);
  if ((c->nnet > 0 && c->net == NULL) || (c->ndns > 0 && c->dns == NULL))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "network entries counted but not given");
  ember_bootcfg_net parsed[EMBER_BOOTCFG_MAX_NET];
  for (size_t i = 0; i < c->nnet; i++) {
    const img_bootcfg_net *n = &c->net[i];
    ember_bootcfg_net *o = &parsed[i];
    const char *mac = n->mac != NULL ? n->mac : "";
    const char *p = mac;
    if (ember_bootcfg_parse_mac(&p, mac + strlen(mac), o->mac) < 0 || *p != '\0')
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "network interface %zu: MAC '%s' is not of the form xx:xx:xx:xx:xx:xx", i,
                         mac);
    o->addr = n->addr;
    o->prefix = n->prefix;
    o->gateway = n->gateway;
    o->mtu = n->mtu;
    const char *why = ember_bootcfg_check_net(o);
    if (why != NULL)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "network interface %zu (MAC %s): %s", i, mac,
                         why);
    for (size_t j = 0; j < i; j++)
      if (memcmp(parsed[j].mac, o->mac, sizeof(o->mac)) == 0)
        return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                           "network interfaces %zu and %zu have the same MAC %s", j, i, mac);
    char addr[16], gw[16] = "-", mtu[16] = "", text[128]; /* at most 62 used */
    bootcfg_ipv4_text(o->addr, addr);
    if (o->gateway != 0)
      bootcfg_ipv4_text(o->gateway, gw);
    if (o->mtu != 0)
      snprintf(mtu, sizeof(mtu), " mtu=%u", o->mtu);
    snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x %s/%u %s%s", o->mac[0], o->mac[1],
             o->mac[2], o->mac[3], o->mac[4], o->mac[5], addr, o->prefix, gw, mtu);
    if (bootcfg_add(b, EMBER_BOOTCFG_NET, text, EMBER_BOOTCFG_MAX_NET_TEXT, "a network interface",
                    err) < 0)
      return -1;
  }
  for (size_t i = 0; i < c->ndns; i++) {
    char addr[16];
    bootcfg_ipv4_text(c->dns[i], addr);
    if (!ember_bootcfg_unicast(c->dns[i]))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "nameserver %zu (%s) is not a unicast address (0.0.0.0, 224/4 and above)",
                         i, addr);
    if (bootcfg_add(b, EMBER_BOOTCFG_DNS, addr, EMBER_BOOTCFG_MAX_DNS_TEXT, "a nameserver", err) <
        0)
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
  if (bootcfg_records(c, &b, err) < 0 || bootcfg_net_records(c, &b, err) < 0) {
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
