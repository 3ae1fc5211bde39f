/* bootcfg.h: the host writer of ember's boot config: what the guest init
 * (guest/init) runs, as which user, where, with which environment and
 * hostname. emberd writes one file per instance and hands it to the guest as
 * a read-only virtio-blk disk; the format is guest/bootcfg_format.h, shared
 * with the reader, and docs/boot-kit.md. */
#ifndef EMBER_AGENT_IMAGE_BOOTCFG_H
#define EMBER_AGENT_IMAGE_BOOTCFG_H

#include <stddef.h>

#include "common/error.h"

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
  const char *root; /* guest device path of the rootfs, e.g. "/dev/vda" */
} img_bootcfg;

/* Encodes c into a malloc'ed buffer padded with zeros to a multiple of 64 KiB
 * (*len bytes). Refuses (INVALID_ARGUMENT) what the guest would reject: no
 * argv, a NUL-free string over the format's bounds, a relative workdir, an
 * env entry that is not KEY=VALUE. Returns 0 or -1 with err. */
int img_bootcfg_encode(const img_bootcfg *c, unsigned char **out, size_t *len, cmn_error *err);

/* Encodes c and writes it to path atomically (mode 0644). 0 or -1 with err. */
int img_bootcfg_write(const img_bootcfg *c, const char *path, cmn_error *err);

#endif
