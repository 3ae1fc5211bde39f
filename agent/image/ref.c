/* ref.c: parsing of image references (grammar in ref.h). Everything is
 * checked byte by byte; nothing is accepted that a registry URL could not
 * carry verbatim (no escaping is ever needed downstream). */
#include "agent/image/ref.h"
#include "agent/image/digest.h"
#include "common/mem.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool ref__lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

static bool ref__alnum(char c) { return ref__lower_alnum(c) || (c >= 'A' && c <= 'Z'); }

/* One repository path component [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* of n bytes. */
static bool ref__path_component(const char *p, size_t n)
{
  size_t i = 0;
  if (n == 0 || !ref__lower_alnum(p[0]))
    return false;
  while (i < n) {
    while (i < n && ref__lower_alnum(p[i]))
      i++;
    if (i == n)
      return true;
    size_t s = i;
    if (p[i] == '.') {
      i++;
    } else if (p[i] == '_') {
      i++;
      if (i < n && p[i] == '_')
        i++;
    } else if (p[i] == '-') {
      while (i < n && p[i] == '-')
        i++;
    } else {
      return false;
    }
    if (i == n || !ref__lower_alnum(p[i]) || i == s)
      return false;
  }
  return true;
}

/* host = domain components joined by '.', or "[v6 literal]"; optional :port. */
static int ref__domain(const char *p, size_t n, img_ref *r, cmn_error *err)
{
  size_t hostlen = n;
  const char *colon = NULL;
  if (n > 0 && p[0] == '[') {
    const char *close = memchr(p, ']', n);
    if (close == NULL || close == p + 1)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: bad IPv6 registry host");
    for (const char *q = p + 1; q < close; q++)
      if (!(ref__alnum(*q) || *q == ':' || *q == '.'))
        return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: bad IPv6 registry host");
    hostlen = (size_t)(close - p) + 1;
    if (hostlen < n) {
      if (p[hostlen] != ':')
        return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: bad registry host");
      colon = p + hostlen;
    }
  } else {
    colon = memchr(p, ':', n);
    if (colon != NULL)
      hostlen = (size_t)(colon - p);
    if (hostlen == 0)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: empty registry host");
    size_t i = 0;
    while (i < hostlen) { /* component: alnum, inner '-' */
      size_t s = i;
      while (i < hostlen && (ref__alnum(p[i]) || p[i] == '-'))
        i++;
      if (i == s || p[s] == '-' || p[i - 1] == '-')
        return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: bad registry host '%.*s'",
                           (int)hostlen, p);
      if (i < hostlen) {
        if (p[i] != '.')
          return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: bad registry host '%.*s'",
                             (int)hostlen, p);
        i++;
        if (i == hostlen)
          return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: bad registry host '%.*s'",
                             (int)hostlen, p);
      }
    }
  }
  int port = 0;
  if (colon != NULL) {
    const char *q = colon + 1;
    const char *end = p + n;
    if (q == end || end - q > 5)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: bad registry port");
    for (; q < end; q++) {
      if (*q < '0' || *q > '9')
        return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: bad registry port");
      port = port * 10 + (*q - '0');
    }
    if (port < 1 || port > 65535)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: registry port out of range");
  }
  r->registry = cmn_strndup(p, n);
  r->host = cmn_strndup(p, hostlen);
  r->port = port;
  return 0;
}

static bool ref__tag(const char *t)
{
  size_t n = strlen(t);
  if (n == 0 || n > 128)
    return false;
  if (!(ref__alnum(t[0]) || t[0] == '_'))
    return false;
  for (size_t i = 1; i < n; i++)
    if (!(ref__alnum(t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-'))
      return false;
  return true;
}

int img_ref_parse(const char *s, img_ref *out, cmn_error *err)
{
  memset(out, 0, sizeof(*out));
  if (s == NULL || s[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: empty");
  size_t len = strnlen(s, IMG_REF_MAX + 1);
  if (len > IMG_REF_MAX)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: longer than %d bytes", IMG_REF_MAX);
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "reference: byte %zu is a space, control or non-ASCII character", i);
  char *copy = cmn_strdup(s);
  img_ref r = {0};
  int ret = -1;
  char *at = strchr(copy, '@');
  if (at != NULL) {
    *at = '\0';
    if (img_digest_check(at + 1, "reference", err) < 0)
      goto out;
    r.digest = cmn_strdup(at + 1);
  }
  char *slash = strchr(copy, '/');
  if (slash == NULL) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "reference '%.100s': no registry host (write host[:port]/repository[:tag])", s);
    goto out;
  }
  size_t dlen = (size_t)(slash - copy);
  if (!(memchr(copy, '.', dlen) || memchr(copy, ':', dlen) ||
        (dlen == 9 && strncmp(copy, "localhost", 9) == 0))) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "reference '%.100s': '%.*s' is not a registry host (a host holds a '.' or a "
                "port, or is localhost; ember has no default registry)",
                s, (int)dlen, copy);
    goto out;
  }
  if (ref__domain(copy, dlen, &r, err) < 0)
    goto out;
  char *path = slash + 1;
  char *lastslash = strrchr(path, '/');
  char *colon = strrchr(lastslash ? lastslash : path, ':');
  if (colon != NULL) {
    *colon = '\0';
    if (!ref__tag(colon + 1)) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT,
                  "reference: tag '%.130s' is not [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", colon + 1);
      goto out;
    }
    r.tag = cmn_strdup(colon + 1);
  }
  if (path[0] == '\0') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: empty repository");
    goto out;
  }
  for (char *c = path;;) {
    char *e = strchr(c, '/');
    size_t n = e ? (size_t)(e - c) : strlen(c);
    if (!ref__path_component(c, n)) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT,
                  "reference: repository component '%.*s' must be lowercase letters and "
                  "digits joined by '.', '_' or '-'",
                  (int)(n > 100 ? 100 : n), c);
      goto out;
    }
    if (e == NULL)
      break;
    c = e + 1;
  }
  if (dlen + 1 + strlen(path) > 255) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "reference: name longer than 255 bytes");
    goto out;
  }
  r.repository = cmn_strdup(path);
  if (r.tag == NULL && r.digest == NULL)
    r.tag = cmn_strdup("latest");
  *out = r;
  memset(&r, 0, sizeof(r));
  ret = 0;
out:
  img_ref_free(&r);
  free(copy);
  return ret;
}

void img_ref_free(img_ref *r)
{
  free(r->registry);
  free(r->host);
  free(r->repository);
  free(r->tag);
  free(r->digest);
  memset(r, 0, sizeof(*r));
}

char *img_ref_string(const img_ref *r)
{
  return cmn_asprintf("%s/%s%s%s%s%s", r->registry, r->repository, r->tag ? ":" : "",
                      r->tag ? r->tag : "", r->digest ? "@" : "", r->digest ? r->digest : "");
}

const char *img_ref_target(const img_ref *r) { return r->digest ? r->digest : r->tag; }
