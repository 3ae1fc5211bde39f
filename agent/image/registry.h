/* registry.h: pulling images over the OCI distribution API (libcurl).
 *
 * img_pull resolves a reference (ref.h) to a manifest (an index or Docker
 * manifest list is resolved to linux/amd64), fetches the config and layers
 * that the store does not have yet, verifying every byte against its
 * descriptor's size and digest while it streams, and commits an image record.
 * On any failure nothing of the pull remains in the store.
 *
 * Transport: HTTPS with TLS verification (system CAs, or ca_file); plain HTTP
 * only for registries listed in `insecure`, and for loopback registries when
 * their HTTPS handshake fails. Redirects are followed (at most 5, never from
 * HTTPS to HTTP); credentials are never sent to a redirect target.
 * Auth: anonymous, Basic, or the Bearer token flow (WWW-Authenticate: Bearer
 * realm,service,scope -> token endpoint, with Basic credentials when known).
 *
 * Errors: NOT_FOUND (no such repository/tag, or no linux/amd64 in an index:
 * the message lists the platforms there), PERMISSION_DENIED (auth refused or
 * needed), UNAVAILABLE (connection failed or cut, truncated download, digest
 * mismatch, protocol violations), DEADLINE_EXCEEDED (a registry that stalls
 * longer than low_speed_time_s or the whole pull exceeding pull_timeout_s),
 * RESOURCE_EXHAUSTED (oversized manifest, store budget or disk), CANCELLED,
 * INVALID_ARGUMENT (bad reference, unsupported media types). */
#ifndef EMBER_IMAGE_REGISTRY_H
#define EMBER_IMAGE_REGISTRY_H

#include "agent/image/store.h"
#include "common/error.h"

typedef struct img_registry_opts {
  const char *ca_file;          /* extra PEM CA bundle for registries; NULL: system CAs */
  const char *credentials_file; /* JSON {"host[:port]": {"username": .., "password": ..}} */
  const char *const *insecure;  /* registries ("host[:port]") reached over plain HTTP */
  size_t n_insecure;
  long connect_timeout_s; /* TCP + TLS handshake; 0 = 15 */
  long low_speed_time_s;  /* abort after this long below 1 byte/s; 0 = 30 */
  long pull_timeout_s;    /* whole pull; 0 = 3600 */
  int64_t manifest_max;   /* 0 = IMG_MANIFEST_MAX (4 MiB) */
  int64_t blob_max;       /* largest single blob; 0 = 64 GiB */
} img_registry_opts;

typedef struct img_pull_progress {
  const char *phase;  /* "resolving", "downloading", "cached", "committed", "done" */
  const char *digest; /* the blob, or NULL */
  int64_t blob_done, blob_total;
  int64_t done, total; /* bytes of every blob to download in this pull */
  size_t blob_index, n_blobs;
} img_pull_progress;

typedef struct img_pull_opts {
  const char *username; /* per-request credentials; override the credentials file */
  const char *password;
  void (*progress)(void *opaque, const img_pull_progress *p); /* may be NULL */
  img_cancel_fn cancelled; /* polled during transfers; true stops the pull (CANCELLED) */
  void *opaque;
} img_pull_opts;

/* Pulls reference into the store; out (may be NULL) receives the record. */
int img_pull(img_store *s, const img_registry_opts *ro, const char *reference,
             const img_pull_opts *po, img_record *out, cmn_error *err);

#endif
