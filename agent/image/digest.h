/* digest.h: SHA-256 content digests for the image store ("sha256:<64 hex>").
 *
 * A digest string is exactly "sha256:" followed by 64 lowercase hex digits;
 * other algorithms are refused (the store addresses blobs by sha256 only). */
#ifndef EMBER_IMAGE_DIGEST_H
#define EMBER_IMAGE_DIGEST_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

#define IMG_DIGEST_HEX_LEN 64
#define IMG_DIGEST_LEN (7 + IMG_DIGEST_HEX_LEN) /* "sha256:" + hex, without NUL */

/* Streaming hash; opaque (OpenSSL EVP underneath). */
typedef struct img_sha256 img_sha256;

img_sha256 *img_sha256_new(void);
void img_sha256_update(img_sha256 *h, const void *data, size_t len);
/* Writes "sha256:<hex>" + NUL into out; the hash may not be updated afterwards. */
void img_sha256_final(img_sha256 *h, char out[IMG_DIGEST_LEN + 1]);
void img_sha256_free(img_sha256 *h);

/* One-shot hash of a buffer. */
void img_sha256_buf(const void *data, size_t len, char out[IMG_DIGEST_LEN + 1]);
/* Hash of a whole file; *size (may be NULL) receives its length. */
int img_sha256_file(const char *path, char out[IMG_DIGEST_LEN + 1], long long *size,
                    cmn_error *err);

/* True for "sha256:" + 64 lowercase hex digits and nothing else. */
bool img_digest_valid(const char *s);
/* Like img_digest_valid, filling err (INVALID_ARGUMENT, naming what) when not. */
int img_digest_check(const char *s, const char *what, cmn_error *err);
/* The hex part of a valid digest (a pointer into s). */
const char *img_digest_hex(const char *s);

#endif
