/* hypervisor.h: the one interface between the agent and hypervisor drivers.
 *
 * A driver is a const struct of operations plus a static capability bitfield,
 * registered by type ("qemu", "firecracker", "cloud-hypervisor") in the registry
 * (registry.h). The agent talks to drivers only through this header; a driver
 * never includes agent headers.
 *
 * Ownership of files: the agent owns the instance folder and every snapshot
 * folder transition (snapshot-latest, snapshot-base). A driver creates files
 * only inside vm->dir (its sockets, pid files) and inside the snapshot folder
 * it is handed for one call; it never renames or removes snapshot folders.
 *
 * Errors follow common/error.h: < 0 and err filled, QEMU's or Firecracker's own
 * message kept in err->msg. An operation a driver lacks is a NULL entry; the
 * agent reports it as UNIMPLEMENTED and never calls it. */
#ifndef EMBER_DRIVERS_HYPERVISOR_H
#define EMBER_DRIVERS_HYPERVISOR_H

#include "common/error.h"
#include "common/proc.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Static capabilities of a driver type; known without a running VM. */
enum vmm_cap {
  VMM_CAP_SNAPSHOT = 1u << 0,          /* snapshot + restore */
  VMM_CAP_PAUSE = 1u << 1,             /* pause + resume */
  VMM_CAP_BASE_REUSE = 1u << 2,        /* diff snapshots into a retained base */
  VMM_CAP_GRACEFUL_SHUTDOWN = 1u << 3, /* shutdown() asks the VMM to exit cleanly */
  /* Guest RAM lives from boot in <mem_dir>/memory (shared file mapping), so the
   * snapshot-base folder exists while the VM runs and a diff standby writes
   * device state and flushes the file. Only meaningful with BASE_REUSE. */
  VMM_CAP_LIVE_RAM_FILE = 1u << 4,
  /* save() and restore_frozen(): saved snapshots and ForkInstance. */
  VMM_CAP_FORK = 1u << 5,
};

typedef enum vmm_snap_kind {
  VMM_SNAP_FULL = 1, /* whole memory + device state into an empty folder */
  VMM_SNAP_DIFF = 2, /* dirty pages into the promoted base's memory file + state */
} vmm_snap_kind;

typedef enum vmm_run_state {
  VMM_STATE_RUNNING = 1,
  VMM_STATE_PAUSED = 2,
  VMM_STATE_OTHER = 3, /* alive but neither (e.g. waiting for an incoming migration) */
} vmm_run_state;

typedef struct vmm_disk {
  char *path;
  bool read_only;
  /* A copy-on-write overlay made by the driver's disk_overlay() (QEMU: qcow2
   * over a raw backing file); else a raw image. Set by the agent for the
   * disks it made, never by a request. */
  bool overlay;
} vmm_disk;

typedef struct vmm_nic {
  char *tap;
  char *mac; /* may be NULL or "" */
} vmm_nic;

/* What to run. Strings may be NULL or "" when absent (initrd, cmdline). */
typedef struct vmm_spec {
  uint32_t vcpus;
  uint64_t memory_mib;
  char *kernel;
  char *initrd;
  char *cmdline;
  vmm_disk *disks;
  size_t n_disks;
  vmm_nic *nics;
  size_t n_nics;
  uint32_t vsock_cid; /* 0: no vsock device; host side <vm->dir>/vsock.sock */
  /* The guest agent's channel (guest/agent_proto.h): QEMU adds a
   * virtio-serial port named EMBER_GA_PORT_NAME whose host side is the unix
   * socket <vm->dir>/VMM_AGENT_SOCK (QEMU listens, emberd connects); the
   * vsock drivers need vsock_cid (the agent listens on its vsock port). */
  bool guest_agent;
} vmm_spec;

#define VMM_AGENT_SOCK "agent.sock"
/* The host side of a guest's vsock device (hybrid vsock: connect, then send
 * "CONNECT <port>\n"), in vm->dir. The VMM binds it at boot and at restore. */
#define VMM_VSOCK_SOCK "vsock.sock"
/* The name of the guest agent's virtio-serial port (guest/agent_proto.h
 * EMBER_GA_PORT_NAME; test_guestlink checks they agree). */
#define VMM_AGENT_PORT_NAME "org.ember.agent.0"

/* One VM as the driver sees it. The agent fills id, dir, paths and spec, and
 * keeps proc across calls (persisting it); the driver fills proc when it spawns
 * a VMM and may keep a connection or other state in priv (freed by release()). */
/* Host files the agent opened and checked reach the VMM as inherited
 * descriptors; the spec a driver sees names them as VMM_HOST_FD_PREFIX "N". */
#define VMM_HOST_FD_PREFIX "/proc/self/fd/"

typedef struct vmm_vm {
  const char *id;           /* instance id, for logs */
  const char *dir;          /* absolute instance folder; driver files go here */
  const char *console_path; /* guest serial console output file */
  const char *vmm_log_path; /* VMM stdout/stderr */
  const vmm_spec *spec;
  /* Host files of the spec (kernel, initrd, disks), opened and checked by the
   * agent just before start() and restore(). While they are set, the spec's
   * paths name them as /proc/self/fd/<child_fd>, and a driver that spawns a
   * VMM passes them on (cmn_spawn_opts.pass_fds) so the VMM opens exactly the
   * files that were checked, whatever happens to the names meanwhile. The
   * numbers depend only on the spec, so a snapshot that recorded such a path
   * finds the same file at restore. NULL/0 outside those calls. */
  const cmn_fd_pass *host_fds;
  size_t n_host_fds;
  /* Network namespace (a file such as /run/netns/ember-<key>) a VMM spawned
   * by start() or restore() runs in, so it finds its TAP device there; NULL:
   * emberd's own. Set like host_fds, only during those calls. */
  const char *netns_path;
  cmn_proc proc; /* the VMM process; pid 0 when none */
  void *priv;    /* driver-owned per-VM state */
  /* Set by restore_prepare(): proc is a VMM waiting for the load of one
   * snapshot (a warm VMM), not a running guest. Cleared by restore(),
   * restore_frozen() and warm_discard(). */
  bool warm;
  /* Set by restore() and restore_frozen(): the guest runs in the warm VMM
   * (false: a fresh one was spawned). */
  bool warm_used;
} vmm_vm;

typedef struct vmm_driver {
  const char *type;
  unsigned caps; /* enum vmm_cap bits */

  /* Host set-up, once at agent start-up, before threads. config is the
   * driver's section of the agent config (may be NULL). Fills *state with
   * read-only host state (binary path, version, chosen acceleration). A
   * failure makes the type unavailable, with err->msg as the reason. */
  int (*init)(const cJSON *config, void **state, cmn_error *err);
  void (*fini)(void *state);
  /* One line for ListHypervisors: binary and version. Caller frees. */
  char *(*describe)(void *state);
  /* Optional: the capabilities on this host after init(), when the config can
   * narrow them (QEMU with base_reuse off). NULL means `caps`. The registry
   * reads it once; the agent uses vmm_entry.caps, never driver->caps. */
  unsigned (*effective_caps)(const void *state);

  /* Boots the VM; on return the VMM runs and the guest runs. For
   * VMM_CAP_LIVE_RAM_FILE, guest RAM goes to <mem_dir>/memory. On failure the
   * driver may leave vm->proc set; the agent then kills and reaps it. */
  int (*start)(void *state, vmm_vm *vm, const char *mem_dir, cmn_error *err);
  /* Reconnects to a VMM found alive after an agent restart (vm->proc set) and
   * reports its run state. */
  int (*adopt)(void *state, vmm_vm *vm, vmm_run_state *out, cmn_error *err);
  int (*query)(void *state, vmm_vm *vm, vmm_run_state *out, cmn_error *err);
  int (*pause)(void *state, vmm_vm *vm, cmn_error *err);
  int (*resume)(void *state, vmm_vm *vm, cmn_error *err);
  /* With the VM paused, writes a snapshot into snap_dir (which exists). FULL:
   * snap_dir is empty. DIFF: snap_dir is the promoted base, whose memory file
   * receives the dirty pages. Returns when every byte is written (the agent
   * fsyncs and marks the folder). The VM stays paused. */
  int (*snapshot)(void *state, vmm_vm *vm, const char *snap_dir, vmm_snap_kind kind,
                  cmn_error *err);
  /* Starts a fresh VMM from the complete snapshot in snap_dir and resumes the
   * guest. Sets vm->proc as soon as a VMM is spawned. The snapshot folder is
   * only read, except that a LIVE_RAM_FILE driver maps <snap_dir>/memory
   * shared, after which the guest writes to it. */
  int (*restore)(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err);
  /* Fork and saved snapshots (VMM_CAP_FORK; NULL without it).
   *
   * save: with the VM paused, writes a frozen snapshot of it into snap_dir
   * (which exists and is empty): device state and all of guest memory, in
   * files that no VMM will ever map shared or write. Guest RAM that lives in
   * a file (LIVE_RAM_FILE) is copied with cmn_file_clone (common/clone.h: a
   * reflink where the filesystem has them, else only its data blocks). The
   * VM stays paused and can be resumed (resume()) or snapshotted again; its
   * own snapshot folders are not touched. The folder is also what the agent
   * gets by copying a complete standby snapshot of the same driver file by
   * file, so restore_frozen() must accept both.
   *
   * restore_frozen: starts a fresh VMM from such a frozen folder and resumes
   * the guest, never writing into snap_dir (other VMMs may be restoring from
   * it at the same time): guest memory is mapped privately (copy-on-write) or
   * read into the VMM's own. Sets vm->proc as soon as a VMM is spawned. The
   * VM's RAM is then in no file of the instance, so its next snapshot is a
   * FULL one (the agent makes sure no base is reused). Where the VMM can tell
   * the guest that it was cloned (a new VM generation ID), it does. */
  int (*save)(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err);
  int (*restore_frozen)(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err);
  /* Optional warm restore (both or neither; agent/manager_warm.c).
   *
   * restore_prepare: while the VM is in standby, spawns exactly the VMM that
   * restore() (frozen: restore_frozen()) of snap_dir would spawn, with the
   * same command line, files, sockets and network namespace, and leaves it
   * waiting for the snapshot's load: vm->proc, vm->priv and vm->warm set. It
   * changes no file content in snap_dir (QEMU reserves the blocks of an older
   * emberd's RAM file, as restore() would). UNIMPLEMENTED when this
   * snapshot cannot be prepared ahead (QEMU: a full stream with base reuse,
   * whose restore makes a RAM file in the folder); the agent then does not
   * ask again until the next standby. On any failure nothing of it is left
   * (process reaped, its files removed).
   *
   * restore()/restore_frozen() of the same folder then load the snapshot
   * into that VMM (vm->warm_used), after checking it is still alive and
   * waiting; one that is not is discarded and a fresh VMM spawned, so a warm
   * VMM never changes what a restore can do, only how long it takes.
   *
   * warm_discard: ends a prepared VMM that will not be used (kill, reap,
   * remove the files prepare made); nothing when vm->warm is false. */
  int (*restore_prepare)(void *state, vmm_vm *vm, const char *snap_dir, bool frozen,
                         cmn_error *err);
  void (*warm_discard)(void *state, vmm_vm *vm);
  /* Optional: the disks of clones in the VMM's own copy-on-write format,
   * where the filesystem has no reflinks. disk_overlay makes path (which
   * must not exist) an overlay over backing, a raw file that is never written
   * again; the agent then marks that disk `overlay`. disk_flatten writes a
   * standalone raw copy of src (an overlay when src_overlay) to path (which
   * must not exist), its data ranges only. Both leave nothing at path on
   * failure. */
  int (*disk_overlay)(void *state, const char *backing, const char *path, cmn_error *err);
  int (*disk_flatten)(void *state, const char *src, bool src_overlay, const char *path,
                      cmn_error *err);
  /* Asks the VMM process to exit cleanly (only with VMM_CAP_GRACEFUL_SHUTDOWN;
   * QEMU: QMP `quit`) WITHOUT running the guest any further: after a standby the
   * guest must not touch its memory again. Waits up to timeout_ms. The agent
   * reaps it, and kills it if this fails. */
  int (*shutdown)(void *state, vmm_vm *vm, int timeout_ms, cmn_error *err);
  /* Optional: asks the guest to power off (QEMU: `system_powerdown`) and waits up
   * to timeout_ms for the VMM to exit. Used by Stop before shutdown/SIGKILL. */
  int (*powerdown)(void *state, vmm_vm *vm, int timeout_ms, cmn_error *err);
  /* Drops driver-side per-VM state (connections, priv) without touching the
   * VMM process. Safe to call more than once. */
  void (*release)(void *state, vmm_vm *vm);
  /* After the VMM has ended: removes the driver's own files in vm->dir
   * (sockets, pid files). Never touches snapshot folders. */
  void (*cleanup)(void *state, vmm_vm *vm);
} vmm_driver;

/* Helpers shared by all drivers. */
void vmm_spec_free(vmm_spec *spec); /* frees the members, not spec */
/* Kills and reaps vm->proc when set, then clears it (a warm VMM that goes,
 * a prepare that failed). */
void vmm_proc_end(vmm_vm *vm);
void vmm_spec_copy(vmm_spec *dst, const vmm_spec *src);
/* Checks that the host files a VMM is about to open exist and can be opened:
 * the kernel and initrd (when with_kernel) and every disk (read-write unless
 * read_only). FAILED_PRECONDITION naming the first one that cannot: the
 * request was valid when made, the host changed (docs/errors.md). */
int vmm_spec_check_host_files(const vmm_spec *spec, bool with_kernel, cmn_error *err);

#endif
