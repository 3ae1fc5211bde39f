/* digest.c: SHA-256 over OpenSSL EVP, and digest-string validation
 * (see digest.h). */
#include "agent/image/digest.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct img_sha256 {
  EVP_MD_CTX *ctx;
};

img_sha256 *img_sha256_new(void)
{
  img_sha256 *h = cmn_calloc(1, sizeof(*h));
  h->ctx = EVP_MD_CTX_new();
  if (h->ctx == NULL || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
    abort(); /* allocation failure inside OpenSSL: same policy as cmn_malloc */
  return h;
}

void img_sha256_update(img_sha256 *h, const void *data, size_t len)
{
  if (len > 0)
    EVP_DigestUpdate(h->ctx, data, len);
}

void img_sha256_final(img_sha256 *h, char out[IMG_DIGEST_LEN + 1])
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(h->ctx, md, &n);
  static const char hex[] = "0123456789abcdef";
  memcpy(out, "sha256:", 7);
  for (unsigned int i = 0; i < n && i < 32; i++) {
    out[7 + 2 * i] = hex[md[i] >> 4];
    out[7 + 2 * i + 1] = hex[md[i] & 15];
  }
  out[IMG_DIGEST_LEN] = '\0';
}

void img_sha256_free(img_sha256 *h)
{
  if (h == NULL)
    return;
  EVP_MD_CTX_free(h->ctx);
  free(h);
}

void img_sha256_buf(const void *data, size_t len, char out[IMG_DIGEST_LEN + 1])
{
  img_sha256 *h = img_sha256_new();
  img_sha256_update(h, data, len);
  img_sha256_final(h, out);
  img_sha256_free(h);
}

int img_sha256_file(const char *path, char out[IMG_DIGEST_LEN + 1], long long *size, cmn_error *err)
{
  cleanup_close int fd = cmn_open(path, O_RDONLY, 0);
  if (fd < 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "open %s", path);
  img_sha256 *h = img_sha256_new();
  char buf[65536];
  long long total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      img_sha256_free(h);
      return cmn_err_errno(err, CMN_INTERNAL, e, "read %s", path);
    }
    if (n == 0)
      break;
    img_sha256_update(h, buf, (size_t)n);
    total += n;
  }
  img_sha256_final(h, out);
  img_sha256_free(h);
  if (size != NULL)
    *size = total;
  return 0;
}

bool img_digest_valid(const char *s)
{
  if (s == NULL || strncmp(s, "sha256:", 7) != 0)
    return false;
  const char *p = s + 7;
  size_t n = 0;
  for (; p[n] != '\0'; n++)
    if (n >= IMG_DIGEST_HEX_LEN || !((p[n] >= '0' && p[n] <= '9') || (p[n] >= 'a' && p[n] <= 'f')))
      return false;
  return n == IMG_DIGEST_HEX_LEN;
}

int img_digest_check(const char *s, const char *what, cmn_error *err)
{
  if (img_digest_valid(s))
    return 0;
  if (s != NULL && strchr(s, ':') != NULL && strncmp(s, "sha256:", 7) != 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "%s: digest algorithm of '%.80s' is not supported (only sha256)", what, s);
  return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                     "%s: '%.80s' is not a digest (sha256: and 64 lowercase hex digits)", what,
                     s ? s : "");
}

const char *img_digest_hex(const char *s) { return s + 7; }
