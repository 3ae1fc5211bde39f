/* rest_vmm.h: what the drivers of REST-controlled VMMs (Firecracker, Cloud
 * Hypervisor) share: spawning the VMM with the guest's serial output (the VMM's
 * stdout) appended to the console file, waiting until its API answers, and the
 * tail of its log for error messages. */
#ifndef EMBER_DRIVERS_REST_VMM_H
#define EMBER_DRIVERS_REST_VMM_H

#include "drivers/hypervisor.h"

/* The VMM binary: env_var if set, else config "binary", else default_name in
 * PATH; returned absolute (VMMs run with vm->dir as their working folder).
 * NULL with err (UNAVAILABLE) naming where the name came from. */
char *vmm_find_binary(const char *env_var, const cJSON *config, const char *default_name,
                      const char *type, cmn_error *err);

/* The last few hundred bytes of vm->vmm_log_path on one line ("(no VMM output)"
 * when empty). Caller frees. */
char *vmm_log_tail(const vmm_vm *vm);

/* Spawns vmm_argv (vmm_argv[0] the binary, NULL-terminated) in its own session
 * with cwd vm->dir, stdout appended to vm->console_path (through `/bin/sh -c
 * 'exec ...'`, so the pid is the VMM's own) and stderr to vm->vmm_log_path, and
 * sets vm->proc. Stale socket files (sock, and <vm->dir>/VMM_VSOCK_SOCK) are
 * removed first (a VMM cannot bind over them); a VMM already alive for vm is
 * refused. Then waits up to
 * timeout_ms until `GET ping_path` on sock answers 200. name ("firecracker")
 * is for messages. */
int vmm_rest_spawn(vmm_vm *vm, const char *name, const char *const vmm_argv[], const char *sock,
                   const char *ping_path, int timeout_ms, cmn_error *err);

#endif
