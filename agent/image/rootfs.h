/* rootfs.h: from an image's layers to a bootable root disk (docs/rootfs.md).
 *
 * An image's layers (verified blobs in the store) are applied in order, with
 * the OCI rules, into a private staging tree plus an in-memory manifest of
 * every entry's owner, mode, times, xattrs and device numbers (layers.h); the
 * ext4 image is then made with e2fsprogs (`mkfs.ext4 -d` for the content)
 * and the manifest's metadata written into it with libext2fs, so owners,
 * modes, xattrs and device nodes come out the same whether emberd runs as
 * root or not, and no setuid file or device node ever exists on the host.
 *
 * One image per key digest, cached: img_rootfs_build() builds it once into
 * <cache_dir>/<algo>-<hex>.ext4 (temp name, fsync, rename), concurrent
 * builders of one digest serialise on a lock and the later ones reuse it.
 * Each instance gets its own writable copy (cmn_file_clone, common/clone.h): a reflink
 * where the filesystem allows, else a sparse copy. */
#ifndef EMBER_AGENT_IMAGE_ROOTFS_H
#define EMBER_AGENT_IMAGE_ROOTFS_H

#include "common/clone.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One layer as the store hands it over: path is a verified blob file;
 * media_type picks the decompressor (application/vnd.oci.image.layer.v1.tar,
 * ...tar+gzip, ...tar+zstd, the nondistributable variants, docker's
 * application/vnd.docker.image.rootfs.diff.tar.gzip; NULL: detected from the
 * content among plain, gzip and zstd); digest "sha256:<hex>" names the layer
 * in errors. */
typedef struct img_layer {
  const char *path;
  const char *media_type;
  const char *digest;
} img_layer;

/* Bounds against hostile layers (zip bombs, entry floods). 0: the default. */
typedef struct img_rootfs_limits {
  uint64_t max_bytes;   /* uncompressed file content, all layers; default 8 GiB */
  uint64_t max_entries; /* tar entries, all layers; default 1,000,000 */
} img_rootfs_limits;

#define IMG_ROOTFS_DEFAULT_MAX_BYTES (8ULL << 30)
#define IMG_ROOTFS_DEFAULT_MAX_ENTRIES 1000000ULL

typedef struct img_rootfs_opts {
  img_rootfs_limits limits;
  /* Free space in the image beyond its content: headroom_bytes plus
   * headroom_pct percent of the content. Both 0: 256 MiB + 10 %. The image
   * file is sparse, so headroom costs no host space until the guest writes. */
  uint64_t headroom_bytes;
  unsigned headroom_pct;
  /* mkfs.ext4 to run; NULL: "mkfs.ext4" looked up in PATH (then /sbin). */
  const char *mkfs_ext4;
  /* Seconds mkfs.ext4 may take; 0: 600. */
  int mkfs_timeout_s;
} img_rootfs_opts;

/* Figures of one build (all zero when the cached image was reused). */
typedef struct img_rootfs_stats {
  uint64_t entries;       /* entries in the final tree */
  uint64_t content_bytes; /* regular file bytes in the final tree */
  uint64_t image_bytes;   /* apparent size of the image file */
  int64_t apply_us;       /* layers -> staging tree + manifest */
  int64_t mkfs_us;        /* mkfs.ext4 -d */
  int64_t fixup_us;       /* owners/modes/xattrs/devices via libext2fs */
} img_rootfs_stats;

/* Builds (or finds) the root disk of the image whose key is `digest`
 * ("<algo>:<hex>", e.g. the manifest or config digest; anything else is
 * INVALID_ARGUMENT) from its layers, bottom first. cache_dir is created
 * (0700) if missing. On success *out_path (caller frees) names
 * <cache_dir>/<algo>-<hex>.ext4 and *built (may be NULL) says whether this
 * call built it. On failure nothing is left in cache_dir but the lock-free
 * state it had before: no temp file, no staging tree. Hostile layers
 * (`..`, absolute names, links out of the root, writes through a symlink,
 * sizes beyond the limits) fail with INVALID_ARGUMENT naming the layer and
 * the entry; RESOURCE_EXHAUSTED for the limits. stats may be NULL. */
int img_rootfs_build(const img_rootfs_opts *opts, const char *cache_dir, const char *digest,
                     const img_layer *layers, size_t n_layers, char **out_path, bool *built,
                     img_rootfs_stats *stats, cmn_error *err);

/* The file name the cache uses for digest, "<algo>-<hex>.ext4" (caller frees);
 * NULL (INVALID_ARGUMENT) when digest is not "<algo>:<hex>". */
char *img_rootfs_cache_name(const char *digest, cmn_error *err);

#endif
