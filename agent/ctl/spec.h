/* spec.h: builds the CreateInstanceRequest of `emberctl create` from a spec
 * file and/or flags.
 *
 * --spec FILE.json holds an InstanceSpec, or a whole CreateInstanceRequest
 * ({"name":..., "spec":{...}, "start":...}), in the proto3 JSON mapping.
 * Flags override the file field by field (--disk replaces the file's list,
 * --tap the file's TAP interfaces). --network, --ip, --mac, --publish and
 * --netns apply to the file's interface on a managed network (the first one
 * with `network`), --publish replacing its port forwards; --network adds
 * that interface, first in the list, when the file has none, and the others
 * need one (INVALID_ARGUMENT naming the flag otherwise). Relative paths are
 * made absolute, since emberd runs elsewhere: flag
 * paths against the current folder, file paths against the file's folder.
 * What neither gives defaults to hypervisor "qemu", 1 vCPU, 256 MiB. */
#ifndef EMBER_CTL_SPEC_H
#define EMBER_CTL_SPEC_H

#include "agent/ctl/ctl.h"
#include "common/error.h"
#include "ember/v1/instance.pb-c.h"

#define CTL_DEFAULT_HYPERVISOR "qemu"
#define CTL_DEFAULT_VCPUS 1
#define CTL_DEFAULT_MEMORY_MIB 256

/* name may be NULL when the spec file names the instance. On success *out is
 * freed with protobuf_c_message_free_unpacked(&(*out)->base, NULL). Errors are
 * INVALID_ARGUMENT (bad file or flag) or NOT_FOUND (missing spec file). */
int ctl_spec_build(const ctl_opts *o, const char *name, Ember__V1__CreateInstanceRequest **out,
                   cmn_error *err);

/* "PATH[:ro|:rw]" -> path and read_only. */
int ctl_spec_parse_disk(const char *arg, const char *base_dir, Ember__V1__Disk **out,
                        cmn_error *err);
/* "NAME[,MAC]" -> tap device and MAC (MAC: ctl_mac_valid). */
int ctl_spec_parse_tap(const char *arg, Ember__V1__NetworkInterface **out, cmn_error *err);
/* path made absolute against base_dir (NULL: the current folder). */
char *ctl_spec_abspath(const char *path, const char *base_dir);

#endif
