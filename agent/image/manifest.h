/* manifest.h: parsing of OCI / Docker v2 image manifests and indexes, shared by
 * pulls (registry.c) and imports (import.c). bad_code is the status for a
 * malformed document (UNAVAILABLE for a registry's, INVALID_ARGUMENT for an
 * upload's); messages say what is wrong, callers prefix where it came from. */
#ifndef EMBER_IMAGE_MANIFEST_H
#define EMBER_IMAGE_MANIFEST_H

#include "agent/image/store.h"
#include "common/error.h"

#include <stdbool.h>

#define IMG_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define IMG_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define IMG_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define IMG_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define IMG_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define IMG_CONFIG_MAX (16 << 20)
#define IMG_MANIFEST_MAX (4 << 20) /* default cap on a manifest or index */
#define IMG_MAX_LAYERS 1024

/* True when the document is an index / manifest list (by mediaType, else by
 * ctype, else by having "manifests"). */
bool img_manifest_is_index(const char *body, size_t len, const char *ctype);
/* Picks linux/amd64 (variant ignored) from an index: *digest gets its digest;
 * NOT_FOUND listing the platforms there when absent. An entry without a
 * platform (OCI layouts) is taken when it is the only candidate. want_ref (may
 * be NULL): when some entries' org.opencontainers.image.ref.name annotation
 * equals it or its tag, only those are candidates. *ref_name (may be NULL)
 * gets the chosen entry's annotation, or NULL. */
int img_index_pick(const char *body, size_t len, int bad_code, const char *want_ref, char **digest,
                   char **ref_name, cmn_error *err);
/* Parses an image manifest into rec (kind OCI; manifest = digest, len, media
 * type; config; layers with supported tar media types, sizes <= blob_max). */
int img_manifest_parse(const char *body, size_t len, const char *digest, const char *ctype,
                       int64_t blob_max, int bad_code, img_record *rec, cmn_error *err);

#endif
