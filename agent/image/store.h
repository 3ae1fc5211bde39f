/* store.h: the content-addressed image store under <data_dir>/images/.
 *
 * Layout (docs/images.md):
 *   images/blobs/sha256/<hex>   verified blobs, shared by every image
 *   images/records/<hex>.json   one record per image (id = manifest digest, or the
 *                               file's digest for a plain kernel/initrd/disk)
 *   images/tmp/                 downloads and uploads in progress
 * A blob appears under blobs/ only after its bytes were fsync'ed and its digest
 * and size verified (write to tmp/, fsync, verify, link into place, fsync the
 * folder); a record is written atomically after all its blobs are committed.
 * Opening the store empties tmp/, drops records that are unreadable or name a
 * missing blob, and garbage-collects blobs no record references: whatever a
 * crash left behind is gone before the first request.
 *
 * Thread-safe: one mutex guards the in-memory record list, the in-flight table
 * and the accounting; no I/O of blob contents happens under it. Blobs that an
 * operation in progress needs are held by an img_lease, so a concurrent GC or
 * delete never removes them. Two writers of the same digest do not both fetch:
 * the second waits for the first and then finds the blob committed. */
#ifndef EMBER_IMAGE_STORE_H
#define EMBER_IMAGE_STORE_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/image/rootfs.h" /* img_layer */

typedef struct img_store img_store;
typedef struct img_lease img_lease;
typedef struct img_blob_writer img_blob_writer;

/* Asked before a delete: return true when an instance uses the image id
 * ("sha256:<hex>"), and write who (e.g. "instances/web-1") into who. Called
 * without the store's lock (it may take the manager's lock); it must not call
 * back into the store. For an answer that cannot race with an instance being
 * created, pin instead (img_store_pin): pins are checked under the lock. */
typedef bool (*img_in_use_fn)(void *opaque, const char *image_id, char *who, size_t who_len);

typedef struct img_store_opts {
  const char *data_dir; /* the store lives in <data_dir>/images */
  int64_t budget_bytes; /* total blob bytes allowed; 0 = unlimited */
  img_in_use_fn in_use; /* may be NULL: nothing is ever in use */
  void *in_use_opaque;
} img_store_opts;

enum img_kind {
  IMG_KIND_OCI = 0,    /* an OCI/Docker image: manifest + config + layers */
  IMG_KIND_KERNEL = 1, /* plain files imported for schedulers without a registry */
  IMG_KIND_INITRD = 2,
  IMG_KIND_DISK = 3,
};
const char *img_kind_name(int kind);
int img_kind_parse(const char *s);

typedef struct img_desc {
  char *digest;     /* "sha256:<hex>" */
  char *media_type; /* may be "" */
  int64_t size;
} img_desc;

/* An image record (a copy: callers own it and free it with img_record_free). */
typedef struct img_record {
  char *id;     /* "sha256:<hex>": manifest digest (OCI) or the file's digest */
  int kind;     /* enum img_kind */
  char **names; /* references it was pulled or imported as (may be none) */
  size_t n_names;
  img_desc manifest; /* OCI: the image manifest stored as a blob; FILE kinds: zeroed */
  img_desc config;   /* OCI: the image config blob; FILE kinds: zeroed */
  img_desc *layers;  /* OCI: the layers in order; FILE kinds: exactly one, the file */
  size_t n_layers;
  int64_t size;    /* sum of manifest, config and layer sizes */
  int64_t created; /* unix seconds when the record was committed */
} img_record;

struct cJSON;
/* r as the JSON object the store keeps in its record files (id, kind, names,
 * manifest and config for OCI, layers, size, created); the caller owns it
 * (cJSON_Delete). Also what tools print for a record. */
struct cJSON *img_record_json(const img_record *r);

void img_record_free(img_record *r);
void img_records_free(img_record *r, size_t n);

int img_store_open(const img_store_opts *opts, img_store **out, cmn_error *err);
void img_store_close(img_store *s);

/* The store's root (<data_dir>/images) and a blob's path (may not exist). */
const char *img_store_root(const img_store *s);
char *img_store_blob_path(const img_store *s, const char *digest);
bool img_store_has_blob(img_store *s, const char *digest);

/* ---- leases: blobs held for an operation in progress ---- */
img_lease *img_lease_new(img_store *s);
/* Holds digest (committed or not) until the lease is freed. */
void img_lease_hold(img_lease *l, const char *digest);
/* Releases every hold; NULL is fine. */
void img_lease_free(img_lease *l);
/* Reserves bytes against the budget for the lease's lifetime (or until
 * blobs are committed, which convert the reservation into usage). When the
 * store cannot fit them even after a GC: RESOURCE_EXHAUSTED with the figures. */
int img_lease_reserve(img_lease *l, int64_t bytes, cmn_error *err);

/* ---- writing blobs ---- */
/* Cancellation check used while waiting for another writer of the same digest. */
typedef bool (*img_cancel_fn)(void *opaque);

/* Starts writing a blob for lease l. digest: the expected "sha256:<hex>", or
 * NULL when unknown (computed; see img_blob_commit). size: the expected length,
 * or -1 when unknown; max: a cap on the length when size is -1 (0 = none).
 * Returns 1 when the blob is already committed (held by l; nothing to write;
 * *w is NULL), 0 with *w to write into, < 0 on error. If another writer is
 * writing the same digest, waits for it first (checking cancel every 200 ms). */
int img_blob_begin(img_lease *l, const char *digest, int64_t size, int64_t max,
                   img_cancel_fn cancel, void *cancel_opaque, img_blob_writer **w, cmn_error *err);
/* Appends bytes; refuses more than the expected size or cap (the error says
 * "larger than"), and bytes the budget cannot hold (RESOURCE_EXHAUSTED). */
int img_blob_write(img_blob_writer *w, const void *data, size_t len, cmn_error *err);
int64_t img_blob_written(const img_blob_writer *w);
/* fsyncs, verifies size and digest, links into blobs/ and fsyncs the folder.
 * digest_out (may be NULL) receives the digest. Frees w in every case; on a
 * mismatch nothing is kept and the error names the expected and actual digest
 * (or size). The blob stays held by the lease. */
int img_blob_commit(img_blob_writer *w, char *digest_out, cmn_error *err);
/* Drops what was written; frees w; NULL is fine. */
void img_blob_abort(img_blob_writer *w);

/* ---- records ---- */
/* Commits a record whose blobs are all committed and held by l; its id, size
 * and created time are filled here. A record with the same id is merged
 * (names added). Each name moves to this record (removed from any other).
 * out (may be NULL) receives a copy. */
int img_store_commit_record(img_lease *l, const img_record *r, img_record *out, cmn_error *err);
/* Finds by id ("sha256:<hex>" or the bare hex) or by name. NOT_FOUND otherwise. */
int img_store_get(img_store *s, const char *key, img_record *out, cmn_error *err);
int img_store_list(img_store *s, img_record **out, size_t *n, cmn_error *err);
/* Deletes a record (by the same keys as get): FAILED_PRECONDITION (precondition
 * "IN_USE", subject "images/<id>") when it is pinned or the in-use callback says
 * an instance uses it; then removes its unreferenced blobs. *freed (may be NULL) gets the bytes.
 * By a name when the image has other names too: only that name is removed
 * (untag; nothing freed, no in-use check). By id: the image and all its names. */
int img_store_delete(img_store *s, const char *key, int64_t *freed, cmn_error *err);
/* Marks an image (same keys as get) as used by who (e.g. "instances/web-1"):
 * delete refuses it with FAILED_PRECONDITION naming who until unpinned. In
 * memory only: the manager pins its instances' images again at start. One pin
 * per call (pins of the same who stack). id_out (may be NULL, 72 bytes) gets
 * the image id. NOT_FOUND when there is no such image. */
int img_store_pin(img_store *s, const char *key, const char *who, char *id_out, cmn_error *err);
void img_store_unpin(img_store *s, const char *id, const char *who);
/* Removes every blob no record references and no lease holds. */
int img_store_gc(img_store *s, int64_t *freed, size_t *removed, cmn_error *err);

typedef struct img_store_usage {
  int64_t used_bytes;     /* committed blob bytes */
  int64_t reserved_bytes; /* reserved by operations in progress */
  int64_t budget_bytes;   /* 0 = unlimited */
  size_t blobs;
  size_t images;
} img_store_usage;
void img_store_usage_get(img_store *s, img_store_usage *u);

/* ---- handing an image to the rootfs builder ---- */
/* The layers of an OCI image (paths of verified blobs, in order) and its config
 * blob's path, held until img_image_layers_free: a delete or GC meanwhile
 * does not remove them. FAILED_PRECONDITION for a FILE-kind image. */
typedef struct img_image_layers {
  img_layer *layers;
  size_t n_layers;
  char *config_path;
  char *config_digest;
  char *image_id;
  img_lease *lease; /* private */
} img_image_layers;
int img_store_image_layers(img_store *s, const char *key, img_image_layers *out, cmn_error *err);
void img_image_layers_free(img_image_layers *l);

#endif
