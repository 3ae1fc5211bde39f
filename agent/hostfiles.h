/* hostfiles.h: the fence around host files named by a request (kernel,
 * initrd, disks), see docs/host-paths.md.
 *
 * A path from a request is never trusted as a name: it is opened (following
 * links, once), and what was actually opened is checked — its type (fstat) and
 * its resolved path (/proc/self/fd/N) — against the fence:
 *   - never inside emberd's data dir (other guests' RAM, records, the lock);
 *   - never one of emberd's own files (config, TLS files, socket, metrics file),
 *     compared by device and inode as well as by name;
 *   - never under /proc or /sys;
 *   - a regular file, or a block device when allow_block_devices is set (then
 *     only under an allowed root, and opened O_EXCL: a mounted or claimed
 *     device is refused);
 *   - with allowed roots configured: under one of them (a root is a directory,
 *     meaning everything below it, or a single file); without: not under the
 *     system trees /dev, /etc, /run either.
 * The checked descriptors are what the VMM receives (vmm_vm.host_fds), so swapping
 * a name after the check redirects nothing. Create runs the same check early so
 * a bad path fails fast; Start and Restore run it again right before the VMM
 * is spawned, because the names may have changed in between. */
#ifndef EMBER_AGENT_HOSTFILES_H
#define EMBER_AGENT_HOSTFILES_H

#include "common/error.h"
#include "common/proc.h"
#include "drivers/hypervisor.h"

#include <stdbool.h>
#include <stddef.h>

/* Numbers the VMM finds the files at: kernel, initrd, then disk i. They depend
 * only on the spec, so a snapshot that stored /proc/self/fd/N finds the same
 * file again at restore. High enough that nothing of the VMM's start-up
 * (stdio, a shell's redirections) collides with them. */
#define AGENT_HOSTFD_KERNEL 64
#define AGENT_HOSTFD_INITRD 65
#define AGENT_HOSTFD_DISK0 66

/* What the operator configured (agent/config.c). All may be empty. */
typedef struct agent_host_policy {
  const char *const *roots; /* allowed roots, absolute; none: any path outside the deny-list */
  size_t n_roots;
  bool allow_block_devices;     /* needs roots */
  const char *const *own_files; /* emberd's own files (config, TLS, socket, metrics file) */
  size_t n_own_files;
} agent_host_policy;

typedef struct agent_host_fence agent_host_fence;

/* Builds the fence for data_dir (which must exist) and policy (NULL: no roots,
 * no block devices, no extra own files). Roots are resolved now and must
 * exist (INVALID_ARGUMENT otherwise). */
agent_host_fence *agent_host_fence_new(const char *data_dir, const agent_host_policy *policy,
                                       cmn_error *err);
void agent_host_fence_free(agent_host_fence *f);

/* The checked files of one spec, open, and a copy of the spec naming them. */
typedef struct agent_host_files {
  vmm_spec spec;    /* kernel/initrd/disk paths are /proc/self/fd/<child_fd> */
  cmn_fd_pass *fds; /* our descriptors and the numbers the VMM gets them at */
  size_t n_fds;
} agent_host_files;

/* Opens and checks every host file of spec. A refusal carries `code`
 * (INVALID_ARGUMENT for a request, FAILED_PRECONDITION for Start/Restore of
 * a stored spec) and names the field, e.g. "spec.disks[1].path /tmp/x resolves
 * to /var/lib/ember/instances/i-1/record.json, inside emberd's data dir
 * /var/lib/ember". On failure nothing stays open. */
int agent_host_files_open(const agent_host_fence *f, const vmm_spec *spec, int code,
                          agent_host_files *out, cmn_error *err);
/* A disk emberd made itself inside an instance folder (an image's root disk
 * and boot config, instance_image.h): never named by a request. */
typedef struct agent_host_made {
  const char *name; /* a plain file name inside the folder */
  bool read_only;
  bool overlay; /* vmm_disk.overlay: the driver's copy-on-write format */
} agent_host_made;
/* agent_host_files_open with the n_made disks of made_dir in front of spec's
 * disks (disk numbers 0..n_made-1): each is opened as made_dir/name without
 * following a link and must be a regular file; the data-dir fence does not
 * apply to them (they are emberd's), and spec's own paths are fenced as usual. */
int agent_host_files_open_made(const agent_host_fence *f, const vmm_spec *spec,
                               const char *made_dir, const agent_host_made *made, size_t n_made,
                               int code, agent_host_files *out, cmn_error *err);
/* Closes the descriptors and frees the copy; safe on a zeroed struct. */
void agent_host_files_close(agent_host_files *h);
/* Open, check, close: the early check of Create. */
int agent_host_files_check(const agent_host_fence *f, const vmm_spec *spec, int code,
                           cmn_error *err);

#endif
