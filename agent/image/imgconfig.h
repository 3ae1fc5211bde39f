/* imgconfig.h: what an image runs, from its OCI config and the instance's
 * overrides (docs/rootfs.md, "Run configuration").
 *
 * Parsed from the image config JSON (image-spec config.md):
 * config.Entrypoint, Cmd, Env, WorkingDir, User. Overrides follow docker run
 * (and Kubernetes command/args):
 *  - argv = entrypoint + args, where entrypoint is the override if set, else
 *    the image's Entrypoint; args is the override if set, else the image's
 *    Cmd ONLY when the entrypoint was not overridden (an entrypoint override
 *    drops the image's Cmd, as `docker run --entrypoint` does). Setting an
 *    empty entrypoint override clears the image's Entrypoint (and its Cmd).
 *    An empty argv is INVALID_ARGUMENT.
 *  - env: the image's Env, then each override "KEY=VALUE" replaces the entry
 *    of the same KEY in place or is appended; PATH defaults to docker's
 *    /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin when
 *    neither sets it. Entries must be KEY=VALUE with a non-empty KEY.
 *  - workdir: the override, else WorkingDir, else "/"; must be absolute.
 *  - user: the image's User string kept as written ("" = root):
 *    "name[:group]" / "uid[:gid]" is resolved in the guest against the
 *    image's own /etc/passwd and /etc/group. */
#ifndef EMBER_AGENT_IMAGE_IMGCONFIG_H
#define EMBER_AGENT_IMAGE_IMGCONFIG_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct img_run_config {
  char **argv; /* argc strings + NULL */
  size_t argc;
  char **env; /* envc "KEY=VALUE" strings + NULL */
  size_t envc;
  char *workdir; /* absolute */
  char *user;    /* as in the image; "" = root */
} img_run_config;

/* The instance's overrides; a zeroed struct overrides nothing. */
typedef struct img_overrides {
  bool has_entrypoint; /* entrypoint given (possibly empty: clears the image's) */
  const char *const *entrypoint;
  size_t n_entrypoint;
  bool has_args; /* args given (possibly empty: clears the image's Cmd) */
  const char *const *args;
  size_t n_args;
  const char *const *env; /* "KEY=VALUE", merged by KEY */
  size_t n_env;
  const char *workdir; /* NULL or "": the image's */
} img_overrides;

/* Largest config JSON accepted (configs are a few KiB; docker caps at 8 MiB). */
#define IMG_CONFIG_MAX_BYTES (8u << 20)

/* Parses the image config `json` (len bytes) and applies ov (may be NULL)
 * into *out (zeroed first; free with img_run_config_free). Malformed JSON, a
 * field of the wrong type (named, e.g. "config.Cmd"), a bad Env entry or a
 * relative workdir are INVALID_ARGUMENT; nothing is allocated on failure. */
int img_config_resolve(const char *json, size_t len, const img_overrides *ov, img_run_config *out,
                       cmn_error *err);
/* Deep copy; dst is overwritten (not freed first). */
void img_run_config_copy(img_run_config *dst, const img_run_config *src);
/* Frees the members and zeroes *c; NULL-safe. */
void img_run_config_free(img_run_config *c);

#endif
