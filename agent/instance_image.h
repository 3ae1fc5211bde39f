/* instance_image.h: instances booted from an image of the store
 * (InstanceSpec.image, docs/images.md "Instances from images").
 *
 * At Create (agent_image_prepare, called by the manager once the instance
 * folder exists and before its record is written): the image is resolved in
 * the store (FAILED_PRECONDITION when it was not pulled or imported: emberd
 * never pulls implicitly), pinned for the instance's life ("instances/<id>"),
 * its run config resolved with the overrides (imgconfig.h), its root disk
 * built once per image (rootfs.h, cached under <data_dir>/images/rootfs) and
 * cloned into the instance folder as AGENT_IMAGE_ROOTFS, and the boot config
 * disk AGENT_IMAGE_BOOTCFG written (bootcfg.h). The spec gets the boot kit's
 * kernel, initramfs and command line where it names none.
 *
 * The two disks are emberd-made files inside the data dir, which the host
 * path fence refuses for request paths. They are NOT in the stored spec (a
 * client cannot name them): agent_image_host_files_open adds them in front of
 * the spec's disks (rootfs = /dev/vda, then the boot config, then the
 * request's disks) right before a VMM is spawned, opening exactly
 * <instance dir>/<fixed name> without following links, and fences the
 * request's paths as usual. The order depends only on the record, so a
 * snapshot restores against the same descriptor numbers. */
#ifndef EMBER_AGENT_INSTANCE_IMAGE_H
#define EMBER_AGENT_INSTANCE_IMAGE_H

#include "agent/hostfiles.h"
#include "agent/types.h"
#include "common/error.h"
#include "drivers/hypervisor.h"

#include <stdbool.h>
#include <stddef.h>

struct img_store;
struct cJSON;

#define AGENT_IMAGE_ROOTFS "rootfs.ext4"
#define AGENT_IMAGE_BOOTCFG "bootcfg.img"
/* A clone's root disk where the filesystem has no reflinks and the driver
 * makes overlays (docs/fork.md): in place of AGENT_IMAGE_ROOTFS. */
#define AGENT_IMAGE_ROOTFS_OVERLAY "rootfs.qcow2"
#define AGENT_IMAGE_CMDLINE "console=ttyS0 panic=-1 quiet"

bool agent_image_spec_set(const agent_image_spec *s);
void agent_image_spec_free(agent_image_spec *s);
void agent_image_spec_copy(agent_image_spec *dst, const agent_image_spec *src);
bool agent_image_spec_eq(const agent_image_spec *a, const agent_image_spec *b);
/* Record JSON ("image" object of record.json); absent when not set. */
void agent_image_spec_to_json(struct cJSON *parent, const agent_image_spec *s);
void agent_image_spec_from_json(const struct cJSON *parent, agent_image_spec *s);

/* Create, before validation: refuses overrides without an image and, with an
 * image, fills a copy of spec (*out) with the boot kit's kernel/initramfs
 * (boot_kit_dir) and AGENT_IMAGE_CMDLINE plus tsc_early_khz=<host TSC kHz>
 * where the spec names none. out is
 * zeroed (and unused) when spec has no image. */
int agent_image_spec_fill(const agent_image_spec *img, const vmm_spec *spec,
                          const char *boot_kit_dir, vmm_spec *out, cmn_error *err);

/* Create, with the instance folder `dir` made: resolves, pins, builds and
 * writes the disks; fills img->id. data_dir holds the rootfs cache. On
 * failure the pin is released (the caller removes dir). */
/* net (NULL: none) is the guest side of the instance's managed network,
 * written into the boot config for the init to configure. */
struct agent_net_guest;
int agent_image_prepare(struct img_store *st, const char *data_dir, const char *dir,
                        const char *instance_id, const char *hostname, agent_image_spec *img,
                        const struct agent_net_guest *net, cmn_error *err);
/* Load and Delete: pin again (after a restart) / release the pin. */
int agent_image_pin(struct img_store *st, const char *instance_id, const agent_image_spec *img,
                    cmn_error *err);
void agent_image_unpin(struct img_store *st, const char *instance_id, const agent_image_spec *img);

/* Start/Restore: agent_host_files_open of spec with, for an image-based
 * instance, the two emberd-made disks of dir in front of spec's disks (the
 * root disk is AGENT_IMAGE_ROOTFS_OVERLAY, marked overlay, when dir has it). */
int agent_image_host_files_open(const agent_host_fence *f, const vmm_spec *spec,
                                const agent_image_spec *img, const char *dir, int code,
                                agent_host_files *out, cmn_error *err);

#endif
