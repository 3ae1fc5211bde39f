/* bootcfg.h: the host writer of ember's boot config: what the guest init
 * (guest/init) runs, as which user, where, with which environment and
 * hostname. emberd writes one file per instance and hands it to the guest as
 * a read-only virtio-blk disk; the format is guest/bootcfg_format.h, shared
 * with the reader, and docs/boot-kit.md. */
#ifndef EMBER_AGENT_IMAGE_BOOTCFG_H
#define EMBER_AGENT_IMAGE_BOOTCFG_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* One network interface of the guest, configured by the init (no DHCP): the
 * NIC whose MAC is `mac` gets addr/prefix, the MTU when given, and a default
 * route through gateway when given. Addresses are IPv4 in host byte order
 * (10.88.0.2 is 0x0A580002). */
typedef struct img_bootcfg_net {
  const char *mac;  /* "02:e7:00:12:34:56": unicast, not zero (either case) */
  uint32_t addr;    /* not 0, 127/8 or 224/4+; not the subnet's network/broadcast */
  unsigned prefix;  /* 1..32 */
  uint32_t gateway; /* 0: none; else inside addr/prefix, not addr itself */
  unsigned mtu;     /* 0: the driver's default; else 68..65535 */
} img_bootcfg_net;

/* What the guest init runs. agent/instance_image.c fills it from an
 * img_run_config (imgconfig.h): argv/argc/env/envc/workdir/user map one to
 * one (user "" = root is accepted). All strings are borrowed; NULL/0 means
 * "default" (workdir "/", user root, hostname "ember", root device: the first
 * virtio disk that is not this one). */
typedef struct img_bootcfg {
  const char *const *argv; /* argc >= 1 strings: the process to run */
  size_t argc;
  const char *const *env; /* "KEY=VALUE" strings */
  size_t envc;
  const char *workdir; /* absolute */
  const char *user;    /* OCI User: "uid[:gid]" or "name[:group]" */
  const char *hostname;
  const char *root;           /* guest device path of the rootfs, e.g. "/dev/vda" */
  const img_bootcfg_net *net; /* nnet <= EMBER_BOOTCFG_MAX_NET (8) interfaces */
  size_t nnet;
  const uint32_t *dns; /* ndns <= EMBER_BOOTCFG_MAX_DNS (4) nameservers, host order */
  size_t ndns;
} img_bootcfg;

/* Encodes c into a malloc'ed buffer padded with zeros to a multiple of 64 KiB
 * (*len bytes). Refuses (INVALID_ARGUMENT) what the guest would reject: no
 * argv, a NUL-free string over the format's bounds, a relative workdir, an
 * env entry that is not KEY=VALUE; and what the guest would skip: a network
 * entry with a malformed or multicast MAC, a MAC given twice, a prefix not
 * 1..32, an address or gateway that is not a unicast host address, a gateway
 * outside the subnet, an MTU not 68..65535, a nameserver 0 or >= 224.0.0.0,
 * more than 8 interfaces or 4 nameservers. Returns 0 or -1 with err. */
int img_bootcfg_encode(const img_bootcfg *c, unsigned char **out, size_t *len, cmn_error *err);

/* Encodes c and writes it to path atomically (mode 0644). 0 or -1 with err. */
int img_bootcfg_write(const img_bootcfg *c, const char *path, cmn_error *err);

#endif
