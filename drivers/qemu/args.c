/* args.c: the QEMU command line for one VM (see internal.h).
 *
 * Machine: microvm by default (fast to boot under TCG, PVH ELF kernel), q35 or
 * pc by config. No default devices (-nodefaults); exactly:
 *   ttyS0 (0x3f8, IRQ 4) -> vm->console_path (file chardev, appended)
 *   ttyS1 (0x2f8, IRQ 3) -> <vm->dir>/serial1.sock (socket server, wait=off)
 *   QMP                  -> <vm->dir>/qmp.sock
 *   disks as virtio-blk, NICs as virtio-net on TAP devices, vsock as vhost-vsock,
 *   the guest agent's channel (spec->guest_agent) as a virtio-serial port whose
 *   host side is the unix socket VMM_AGENT_SOCK
 * Guest RAM is the memory backend object "ram": a shared file when
 * l->ram_path is set (base reuse), a private (copy-on-write) mapping of it
 * with l->ram_private (a clone of a frozen snapshot), anonymous otherwise.
 * -no-reboot makes a guest reboot or panic end QEMU.
 *
 * A vmgenid device (l->vmgenid) tells the guest its VM generation ID; a new
 * ID on restore, through the device's post-load hook, tells it that it was
 * cloned. Only on pc and q35: see qemu_machine_has_vmgenid. */
#include "drivers/qemu/internal.h"

#include "common/cleanup.h"
#include "common/mem.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct qemu_argv {
  char **v;
  size_t n;
  size_t cap;
} qemu_argv;

static void argv_add_owned(qemu_argv *a, char *s)
{
  if (a->n + 2 > a->cap) {
    a->cap = a->cap ? a->cap * 2 : 32;
    a->v = cmn_realloc(a->v, a->cap * sizeof *a->v);
  }
  a->v[a->n++] = s;
  a->v[a->n] = NULL;
}

static void argv_add(qemu_argv *a, const char *s) { argv_add_owned(a, cmn_strdup(s)); }

static void argv_add2(qemu_argv *a, const char *opt, char *owned_value)
{
  argv_add(a, opt);
  argv_add_owned(a, owned_value);
}

void qemu_args_free(char **argv)
{
  if (argv == NULL)
    return;
  for (char **p = argv; *p != NULL; p++)
    free(*p);
  free(argv);
}

char *qemu_opt_escape(const char *s)
{
  size_t commas = 0;
  for (const char *p = s; *p; p++)
    commas += *p == ',';
  char *out = cmn_malloc(strlen(s) + commas + 1);
  char *o = out;
  for (const char *p = s; *p; p++) {
    *o++ = *p;
    if (*p == ',')
      *o++ = ',';
  }
  *o = '\0';
  return out;
}

static bool args_is_microvm(const qemu_host *h) { return strcmp(h->machine, "microvm") == 0; }

static bool args_empty(const char *s) { return s == NULL || s[0] == '\0'; }

/* QEMU 7.2 accepts the device on microvm too, but its microvm ACPI tables
 * (hw/i386/acpi-microvm.c) have no VMGENID device: the guest never finds the
 * ID nor gets the change notification, so the device would be dead weight.
 * On pc and q35 SeaBIOS loads the ACPI tables that place the ID in guest RAM
 * (also with -kernel) and Linux's vmgenid driver binds to it (verified with
 * Debian's 6.1 kernel: "crng reseeded due to virtual machine fork" after a
 * restore with a new ID). */
bool qemu_machine_has_vmgenid(const qemu_host *h) { return !args_is_microvm(h); }

char **qemu_args_build(const qemu_host *h, const vmm_vm *vm, const qemu_launch *l, cmn_error *err)
{
  const vmm_spec *spec = vm->spec;
  if (spec == NULL || args_empty(spec->kernel))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "a kernel is required"), NULL;
  if (spec->memory_mib == 0 || spec->vcpus == 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "vcpus and memory must be > 0"), NULL;
  if (vm->console_path == NULL || vm->console_path[0] != '/')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "console path must be absolute"), NULL;
  if (l->ram_path != NULL && l->ram_path[0] != '/')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "RAM file path must be absolute"), NULL;

  bool micro = args_is_microvm(h);
  const char *mmio = micro ? "device" : "pci";
  qemu_argv a = {0};
  argv_add(&a, h->binary);

  cleanup_free char *id = qemu_opt_escape(vm->id != NULL ? vm->id : "vm");
  argv_add2(&a, "-name", cmn_asprintf("ember-%s", id));
  argv_add(&a, "-nodefaults");
  argv_add(&a, "-no-user-config");
  argv_add(&a, "-nographic");
  argv_add(&a, "-no-reboot");
  if (l->incoming) {
    argv_add(&a, "-S");
    argv_add2(&a, "-incoming", cmn_strdup("defer"));
  }

  /* microvm: our own ISA serial ports replace its single built-in one;
   * option ROMs are of no use to a direct kernel boot. */
  if (micro)
    argv_add2(&a, "-machine",
              cmn_strdup("microvm,isa-serial=off,x-option-roms=off,memory-backend=ram"));
  else
    argv_add2(&a, "-machine", cmn_asprintf("%s,memory-backend=ram", h->machine));
  if (h->accel == QEMU_ACCEL_TCG && h->tcg_tb_size_mib > 0)
    argv_add2(&a, "-accel", cmn_asprintf("tcg,tb-size=%u", h->tcg_tb_size_mib));
  else
    argv_add2(&a, "-accel", cmn_strdup(qemu_accel_name(h->accel)));
  const char *cpu = h->cpu;
  if (cpu == NULL && h->accel == QEMU_ACCEL_KVM && !h->kvm_pvm)
    cpu = "host";
  if (cpu != NULL)
    argv_add2(&a, "-cpu", cmn_strdup(cpu));
  argv_add2(&a, "-smp", cmn_asprintf("%u", spec->vcpus));
  argv_add2(&a, "-m", cmn_asprintf("%lluM", (unsigned long long)spec->memory_mib));
  if (l->ram_path != NULL) {
    cleanup_free char *p = qemu_opt_escape(l->ram_path);
    /* share=off maps the file MAP_PRIVATE: guest writes stay in this QEMU.
     * QEMU 7.2 still opens the file O_RDWR (readonly=on would map guest RAM
     * read-only: the guest hangs at its first write; `rom=off` to combine
     * the two came in QEMU 8.2), but never writes through a private map. */
    argv_add2(&a, "-object",
              cmn_asprintf("memory-backend-file,id=ram,size=%lluM,mem-path=%s,share=%s",
                           (unsigned long long)spec->memory_mib, p, l->ram_private ? "off" : "on"));
  } else {
    argv_add2(
        &a, "-object",
        cmn_asprintf("memory-backend-ram,id=ram,size=%lluM", (unsigned long long)spec->memory_mib));
  }

  if (!args_empty(l->vmgenid)) {
    /* A GUID has no commas to escape; meta.c only accepts well-formed ones. */
    argv_add2(&a, "-device", cmn_asprintf("vmgenid,id=vmgenid0,guid=%s", l->vmgenid));
  }

  /* -kernel and friends take plain file names (no option parsing). */
  argv_add2(&a, "-kernel", cmn_strdup(spec->kernel));
  if (!args_empty(spec->initrd))
    argv_add2(&a, "-initrd", cmn_strdup(spec->initrd));
  if (!args_empty(spec->cmdline))
    argv_add2(&a, "-append", cmn_strdup(spec->cmdline));

  cleanup_free char *con = qemu_opt_escape(vm->console_path);
  argv_add2(&a, "-chardev", cmn_asprintf("file,id=con,path=%s,append=on", con));
  argv_add2(&a, "-device", cmn_strdup("isa-serial,chardev=con,index=0"));
  argv_add2(&a, "-chardev",
            cmn_strdup("socket,id=ctl,path=" QEMU_SERIAL1_SOCK ",server=on,wait=off"));
  argv_add2(&a, "-device", cmn_strdup("isa-serial,chardev=ctl,index=1"));
  argv_add2(&a, "-chardev", cmn_strdup("socket,id=qmp,path=" QEMU_QMP_SOCK ",server=on,wait=off"));
  argv_add2(&a, "-mon", cmn_strdup("chardev=qmp,mode=control"));

  for (size_t i = 0; i < spec->n_disks; i++) {
    const vmm_disk *d = &spec->disks[i];
    if (args_empty(d->path)) {
      qemu_args_free(a.v);
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "disk %zu has no path", i), NULL;
    }
    cleanup_free char *p = qemu_opt_escape(d->path);
    argv_add2(&a, "-drive",
              cmn_asprintf("file=%s,if=none,id=disk%zu,format=%s,readonly=%s", p, i,
                           d->overlay ? "qcow2" : "raw", d->read_only ? "on" : "off"));
    argv_add2(&a, "-device", cmn_asprintf("virtio-blk-%s,drive=disk%zu", mmio, i));
  }
  for (size_t i = 0; i < spec->n_nics; i++) {
    const vmm_nic *n = &spec->nics[i];
    if (args_empty(n->tap)) {
      qemu_args_free(a.v);
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "NIC %zu has no TAP device", i), NULL;
    }
    cleanup_free char *tap = qemu_opt_escape(n->tap);
    argv_add2(&a, "-netdev",
              cmn_asprintf("tap,id=net%zu,ifname=%s,script=no,downscript=no", i, tap));
    if (!args_empty(n->mac)) {
      cleanup_free char *mac = qemu_opt_escape(n->mac);
      argv_add2(&a, "-device", cmn_asprintf("virtio-net-%s,netdev=net%zu,mac=%s", mmio, i, mac));
    } else {
      argv_add2(&a, "-device", cmn_asprintf("virtio-net-%s,netdev=net%zu", mmio, i));
    }
  }
  if (spec->vsock_cid != 0) {
    /* QEMU's vsock is vhost-vsock: the host kernel must offer it. */
    if (access("/dev/vhost-vsock", R_OK | W_OK) < 0) {
      qemu_args_free(a.v);
      return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                         "vsock needs /dev/vhost-vsock, which this host lacks "
                         "(modprobe vhost_vsock), or another hypervisor"),
             NULL;
    }
    argv_add2(&a, "-device", cmn_asprintf("vhost-vsock-%s,guest-cid=%u", mmio, spec->vsock_cid));
  }
  if (spec->guest_agent) {
    /* The guest agent's port; QEMU listens, emberd connects (and reconnects
     * after an emberd restart: server=on keeps accepting). */
    argv_add2(&a, "-device", cmn_asprintf("virtio-serial-%s,id=ga0", mmio));
    argv_add2(&a, "-chardev",
              cmn_strdup("socket,id=ga,path=" VMM_AGENT_SOCK ",server=on,wait=off"));
    argv_add2(&a, "-device",
              cmn_strdup("virtserialport,bus=ga0.0,chardev=ga,name=" VMM_AGENT_PORT_NAME));
  }
  return a.v;
}
