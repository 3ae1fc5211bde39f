/* ref.h: image references "host[:port]/path/to/repo[:tag][@sha256:<hex>]".
 *
 * The registry host is required (ember has no default registry): the first
 * component names a host when it holds a '.' or a ':' or is "localhost" (the
 * distribution rule). Repository components are lowercase alphanumerics joined
 * by '.', '_', '__' or runs of '-'; a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127};
 * the tag defaults to "latest" when no digest is given. Whole reference at most
 * IMG_REF_MAX bytes; the name (host + repository) at most 255. */
#ifndef EMBER_IMAGE_REF_H
#define EMBER_IMAGE_REF_H

#include "common/error.h"

#define IMG_REF_MAX 512

typedef struct img_ref {
  char *registry;   /* "host" or "host:port" or "[v6]:port" */
  char *host;       /* registry without the port (brackets kept for IPv6) */
  int port;         /* 0 when none given */
  char *repository; /* "path/to/repo" */
  char *tag;        /* NULL when only a digest was given */
  char *digest;     /* "sha256:<hex>" or NULL */
} img_ref;

/* Parses s; on error fills err (INVALID_ARGUMENT, saying what is wrong) and
 * leaves out zeroed. */
int img_ref_parse(const char *s, img_ref *out, cmn_error *err);
void img_ref_free(img_ref *r);
/* The canonical string: registry/repository[:tag][@digest]. */
char *img_ref_string(const img_ref *r);
/* What to ask the registry for: the digest when given, else the tag. */
const char *img_ref_target(const img_ref *r);

#endif
