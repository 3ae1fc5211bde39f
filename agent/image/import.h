/* import.h: ImportImage: an upload, read as a stream of chunks, committed into
 * the store exactly like a pull (every blob verified, nothing kept on error).
 *
 * IMG_KIND_OCI: a tar (optionally gzip/zstd/xz-compressed) holding either an
 * OCI image layout (oci-layout, index.json, blobs/sha256/<hex>: each blob is
 * verified against its name) or a docker-archive (manifest.json, the config
 * JSON and layer tars; digests are computed and checked against the config's
 * rootfs.diff_ids). An index is resolved to linux/amd64 like a pull. Entries
 * with absolute paths or ".." are refused (INVALID_ARGUMENT); links and other
 * entries the formats do not use are ignored.
 * IMG_KIND_KERNEL/INITRD/DISK: the bytes are one plain file, stored as a blob
 * with a record of that kind (for schedulers without a registry). */
#ifndef EMBER_IMAGE_IMPORT_H
#define EMBER_IMAGE_IMPORT_H

#include "agent/image/store.h"
#include "common/error.h"

/* Yields the next chunk of the upload: returns 1 with *buf and *len set (valid
 * until the next call), 0 at the end, < 0 on error (err filled, e.g.
 * CANCELLED when the client went away). */
typedef int (*img_import_read_fn)(void *opaque, const void **buf, size_t *len, cmn_error *err);

typedef struct img_import_opts {
  int kind;          /* enum img_kind */
  const char *name;  /* the name to record (e.g. "my-kernel:6.1"); may be NULL */
  int64_t max_bytes; /* the whole upload (compressed) and any one file; 0 = 64 GiB */
  img_import_read_fn read;
  void *opaque;
} img_import_opts;

int img_import(img_store *s, const img_import_opts *o, img_record *out, cmn_error *err);

/* Convenience for tools and tests: the upload is read from fd. */
int img_import_fd(img_store *s, int kind, const char *name, int64_t max_bytes, int fd,
                  img_record *out, cmn_error *err);

#endif
