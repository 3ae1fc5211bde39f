/* internal.h: state and helpers shared by the files of the qemu driver.
 *
 *   driver.c    init/fini/describe and the ops table
 *   accel.c     host probe for KVM vs TCG
 *   args.c      the QEMU command line
 *   qmp.c       the QMP client
 *   meta.c      small JSON files: <snap_dir>/qemu.json and <vm->dir>/qemu-vm.json
 *   lifecycle.c start, adopt, query, pause, resume, shutdown, release, cleanup
 *   snapshot.c  snapshot, restore, save and restore_frozen (migration to and
 *               from <snap_dir>/state)
 *
 * Files the driver owns in vm->dir: qmp.sock, serial1.sock, qemu-vm.json.
 * QEMU runs with its working directory in vm->dir and is given the socket
 * names relative to it, so long instance paths never hit the 108-byte limit
 * of unix socket addresses. */
#ifndef EMBER_DRIVERS_QEMU_INTERNAL_H
#define EMBER_DRIVERS_QEMU_INTERNAL_H

#include "drivers/hypervisor.h"
#include "drivers/qemu/accel.h"
#include "drivers/qemu/qmp.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define QEMU_QMP_SOCK "qmp.sock"
#define QEMU_SERIAL1_SOCK "serial1.sock"
#define QEMU_VM_META "qemu-vm.json"
#define QEMU_SNAP_META "qemu.json"
#define QEMU_SNAP_STATE "state"
#define QEMU_SNAP_MEMORY "memory"
/* A VM generation ID as QEMU's vmgenid device takes it: a UUID in its
 * 36-character text form. */
#define QEMU_GUID_LEN 36

/* Read-only host state from init(). */
typedef struct qemu_host {
  char *binary;   /* absolute path */
  char *qemu_img; /* absolute path of qemu-img (disk overlays); NULL: not found */
  char *version;  /* e.g. "7.2.22" */
  char *machine;  /* "microvm" (default), "q35" or "pc" */
  char *cpu;      /* NULL: "host" under KVM (not PVM), else QEMU's default */
  qemu_accel accel;
  bool kvm_pvm; /* /dev/kvm is PVM-backed */
  char *accel_why;
  bool base_reuse;
  uint64_t max_bandwidth;   /* bytes/s for migrate-set-parameters */
  uint32_t tcg_tb_size_mib; /* 0: QEMU's default */
  int connect_timeout_ms;   /* QMP socket after spawn */
  int command_timeout_ms;   /* one ordinary QMP command */
  int migrate_timeout_ms;   /* a whole snapshot or restore stream */
} qemu_host;

/* Per-VM driver state (vm->priv). */
typedef struct qemu_vm {
  qemu_qmp *qmp;
  /* A warm QEMU (vm->warm, restore_prepare): the absolute folder it waits
   * for, which kind of restore, the RAM file it mapped (identity), and a RAM
   * file restore_prepare made for a full stream (removed with the VMM). */
  char *warm_dir;
  bool warm_frozen;
  bool warm_ram;
  dev_t warm_ram_dev;
  ino_t warm_ram_ino;
  char *warm_created_ram;
} qemu_vm;

/* How guest RAM is backed, recorded per VM in qemu-vm.json. */
typedef struct qemu_vm_meta {
  bool ram_shared; /* memory-backend-file share=on */
  dev_t ram_dev;   /* identity of the RAM file, to check a DIFF target */
  ino_t ram_ino;
  bool ram_reserved; /* every block of the RAM file is allocated (fallocate) */
  /* The vmgenid device's GUID; "" when the VM has no such device. */
  char vmgenid[QEMU_GUID_LEN + 1];
} qemu_vm_meta;

/* What a snapshot folder holds, recorded in <snap_dir>/qemu.json. */
typedef struct qemu_snap_meta {
  bool ram_shared; /* state holds device state only; RAM is <snap_dir>/memory */
  uint64_t memory_mib;
  bool consumed;     /* a guest has run on <snap_dir>/memory since */
  bool ram_reserved; /* <snap_dir>/memory was reserved in full by this driver
                      * (never punched since: QEMU here never discards RAM) */
  /* Written by save(): no VMM ever maps <snap_dir>/memory shared or writes
   * to the folder; only restore_frozen() may start from it. */
  bool frozen;
  /* The vmgenid device's GUID at the snapshot; "" when the VM had none (and
   * then a restore must not add one: device sets must match the stream). */
  char vmgenid[QEMU_GUID_LEN + 1];
} qemu_snap_meta;

/* What one spawn is for. */
typedef struct qemu_launch {
  const char *ram_path; /* NULL: anonymous RAM */
  /* ram_path mapped privately (share=off): copy-on-write, never written
   * back; restore_frozen() starts clones so from one frozen snapshot. */
  bool ram_private;
  bool incoming;       /* -incoming defer, and -S so `cont` is ours to send */
  const char *vmgenid; /* NULL or "": no vmgenid device */
} qemu_launch;

/* args.c */
char **qemu_args_build(const qemu_host *h, const vmm_vm *vm, const qemu_launch *l, cmn_error *err);
void qemu_args_free(char **argv);
/* QEMU option values double every comma. */
char *qemu_opt_escape(const char *s);
/* Whether the guest can see a vmgenid device on this machine type. */
bool qemu_machine_has_vmgenid(const qemu_host *h);

/* meta.c */
int qemu_vm_meta_write(const vmm_vm *vm, const qemu_vm_meta *m, cmn_error *err);
int qemu_vm_meta_read(const vmm_vm *vm, qemu_vm_meta *m, cmn_error *err);
int qemu_snap_meta_write(const char *snap_dir, const qemu_snap_meta *m, cmn_error *err);
int qemu_snap_meta_read(const char *snap_dir, qemu_snap_meta *m, cmn_error *err);
/* A new random (version 4) UUID for a vmgenid device. */
int qemu_vmgenid_new(char out[QEMU_GUID_LEN + 1], cmn_error *err);

/* lifecycle.c, used by snapshot.c */
/* Spawns QEMU for vm and connects QMP; sets vm->proc and vm->priv. */
int qemu_spawn(const qemu_host *h, vmm_vm *vm, const qemu_launch *l, const char *op,
               cmn_error *err);
/* The VM's QMP connection, reconnecting when there is none. */
qemu_qmp *qemu_vm_qmp(const qemu_host *h, vmm_vm *vm, cmn_error *err);
/* One command on the VM's connection (args consumed); a broken connection is
 * dropped so the next call reconnects. */
int qemu_vm_cmd(const qemu_host *h, vmm_vm *vm, const char *cmd, cJSON *args, cJSON **ret,
                cmn_error *err);
/* Adds QEMU's own last words from vm->vmm_log_path (written after log_off) to
 * err, waiting briefly for the process to end first. Returns -1. */
int qemu_err_add_log(vmm_vm *vm, off_t log_off, cmn_error *err);
off_t qemu_log_size(const vmm_vm *vm);
/* Creates a fresh RAM file of mib MiB at path (a stale one, from an earlier
 * boot or failed restore, is removed first), every block reserved
 * (cmn_file_reserve), and records its identity in *m. Every RAM file QEMU maps
 * shared comes from here or from qemu_ram_file_reserve: a guest never runs on
 * a sparse file. On failure (RESOURCE_EXHAUSTED with the figures when the
 * filesystem is full) no file is left at path. */
int qemu_ram_file_create(const char *path, uint64_t mib, qemu_vm_meta *m, cmn_error *err);
/* Reserves every block of an existing RAM file (a snapshot's, about to be
 * mapped again); its content is unchanged, on failure too. */
int qemu_ram_file_reserve(const char *path, uint64_t mib, cmn_error *err);
int qemu_query_state(const qemu_host *h, vmm_vm *vm, vmm_run_state *out, char **raw,
                     cmn_error *err);

/* snapshot.c */
int qemu_snapshot(void *state, vmm_vm *vm, const char *snap_dir, vmm_snap_kind kind,
                  cmn_error *err);
int qemu_restore(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err);
int qemu_save(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err);
/* disk.c: qcow2 overlays for clones' disks, and flattening them (qemu-img). */
int qemu_disk_overlay(void *state, const char *backing, const char *path, cmn_error *err);
int qemu_disk_flatten(void *state, const char *src, bool src_overlay, const char *path,
                      cmn_error *err);
int qemu_restore_frozen(void *state, vmm_vm *vm, const char *snap_dir, cmn_error *err);

/* lifecycle.c ops */
int qemu_start(void *state, vmm_vm *vm, const char *mem_dir, cmn_error *err);
int qemu_adopt(void *state, vmm_vm *vm, vmm_run_state *out, cmn_error *err);
int qemu_query(void *state, vmm_vm *vm, vmm_run_state *out, cmn_error *err);
int qemu_pause(void *state, vmm_vm *vm, cmn_error *err);
int qemu_resume(void *state, vmm_vm *vm, cmn_error *err);
int qemu_shutdown(void *state, vmm_vm *vm, int timeout_ms, cmn_error *err);
void qemu_release(void *state, vmm_vm *vm);
int qemu_restore_prepare(void *state, vmm_vm *vm, const char *snap_dir, bool frozen,
                         cmn_error *err);
void qemu_warm_discard(void *state, vmm_vm *vm);
void qemu_cleanup(void *state, vmm_vm *vm);

#endif
