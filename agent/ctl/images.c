/* images.c: emberctl's ember.v1.ImageService commands: pull (with a
 * progress bar on a terminal, one line per blob event otherwise), images,
 * rmi and import (a client stream of the file's bytes). Rows of the command
 * table are in commands.c. */
#include "agent/ctl/ctl.h"

#include "agent/ctl/output.h"
#include "agent/ctl/pbjson.h"
#include "agent/ctl/rpc.h"
#include "common/cleanup.h"
#include "common/mem.h"
#include "ember/v1/image.pb-c.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CTL_IMG "/ember.v1.ImageService/"
#define CTL_IMPORT_CHUNK (1 << 20)

static void ctl__img_size(char *buf, size_t n, int64_t bytes)
{
  if (bytes >= (1 << 20))
    snprintf(buf, n, "%.1f MiB", (double)bytes / (1 << 20));
  else if (bytes >= 1024)
    snprintf(buf, n, "%.1f KiB", (double)bytes / 1024);
  else
    snprintf(buf, n, "%lld B", (long long)bytes);
}

static void ctl__print_image(FILE *out, const Ember__V1__Image *im)
{
  char size[32];
  ctl__img_size(size, sizeof size, im->size);
  fprintf(out, "id:      %s\n", im->id);
  for (size_t i = 0; i < im->n_names; i++)
    fprintf(out, "name:    %s\n", im->names[i]);
  fprintf(out, "size:    %s in %zu layer%s\n", size, im->n_layers, im->n_layers == 1 ? "" : "s");
}

/* ---- pull ---- */

typedef struct ctl__pull {
  FILE *out;
  const ctl_opts *o;
  bool tty;
  bool bar_shown;
  Ember__V1__Image *image; /* a copy of the final Image */
} ctl__pull;

static bool ctl__pull_msg(const ProtobufCMessage *msg, void *opaque)
{
  ctl__pull *p = opaque;
  const Ember__V1__PullImageProgress *m = (const Ember__V1__PullImageProgress *)msg;
  if (m->image != NULL) {
    size_t len = protobuf_c_message_get_packed_size(&m->image->base);
    uint8_t *buf = cmn_malloc(len + 1);
    protobuf_c_message_pack(&m->image->base, buf);
    p->image = ember__v1__image__unpack(NULL, len, buf);
    free(buf);
  }
  if (p->o->json) {
    ctl_print_json(p->out, msg, true);
    return true;
  }
  if (m->image != NULL)
    return true;
  if (p->tty) {
    char done[32], total[32];
    ctl__img_size(done, sizeof done, m->done);
    ctl__img_size(total, sizeof total, m->total);
    int width = 30, fill = m->total > 0 ? (int)(m->done * width / m->total) : 0;
    char bar[64];
    for (int i = 0; i < width; i++)
      bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(p->out, "\r[%s] %s / %s  blob %u/%u %-10s", bar, done, total,
            m->n_blobs ? m->blob_index + 1 : 0, m->n_blobs, m->phase);
    fflush(p->out);
    p->bar_shown = true;
  } else if (strcmp(m->phase, "downloading") != 0 || m->blob_done == 0) {
    /* Plain lines: phase changes only, not every byte count. */
    fprintf(p->out, "%s %s %lld/%lld bytes (total %lld/%lld)\n", m->phase,
            m->digest[0] ? m->digest : "-", (long long)m->blob_done, (long long)m->blob_total,
            (long long)m->done, (long long)m->total);
    fflush(p->out);
  }
  return true;
}

int ctl_run_pull(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Ember__V1__PullImageRequest req = EMBER__V1__PULL_IMAGE_REQUEST__INIT;
  req.reference = o->args[0];
  ctl__pull p = {.out = out, .o = o, .tty = isatty(fileno(out)) == 1};
  int r = ctl_rpc_stream(rpc, CTL_IMG "PullImage", &req.base,
                         &ember__v1__pull_image_progress__descriptor, NULL, ctl__pull_msg, &p, err);
  if (p.bar_shown)
    fputc('\n', out);
  if (r < 0) {
    if (p.image != NULL)
      ember__v1__image__free_unpacked(p.image, NULL);
    return ctl_fail(err);
  }
  if (p.image == NULL) {
    cmn_err_set(err, CMN_CANCELLED, "pull of %s interrupted", o->args[0]);
    return CMN_CANCELLED;
  }
  if (!o->json) {
    fprintf(out, "pulled %s\n", o->args[0]);
    ctl__print_image(out, p.image);
  }
  ember__v1__image__free_unpacked(p.image, NULL);
  return 0;
}

/* ---- images, rmi ---- */

int ctl_run_images(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Ember__V1__ListImagesRequest req = EMBER__V1__LIST_IMAGES_REQUEST__INIT;
  req.page_size = 1000;
  cJSON *all = o->json ? cJSON_CreateArray() : NULL;
  static const char *const head[] = {"ID", "NAMES", "SIZE", "LAYERS", "CREATED"};
  ctl_table *t = o->json ? NULL : ctl_table_new(5, head);
  char *token = NULL;
  int rc = 0;
  do {
    req.page_token = token != NULL ? token : (char *)"";
    ProtobufCMessage *resp = NULL;
    if (ctl_rpc_unary(rpc, CTL_IMG "ListImages", &req.base,
                      &ember__v1__list_images_response__descriptor, &resp, err) < 0) {
      rc = ctl_fail(err);
      break;
    }
    Ember__V1__ListImagesResponse *lr = (Ember__V1__ListImagesResponse *)resp;
    for (size_t i = 0; i < lr->n_images; i++) {
      const Ember__V1__Image *im = lr->images[i];
      if (all != NULL) {
        cJSON_AddItemToArray(all, ctl_pb_to_json(&im->base));
        continue;
      }
      char id[20], size[32], layers[16], created[64];
      snprintf(id, sizeof id, "%.19s", im->id);
      ctl__img_size(size, sizeof size, im->size);
      snprintf(layers, sizeof layers, "%zu", im->n_layers);
      ctl_fmt_time(created, sizeof created,
                   im->create_time ? im->create_time->seconds * 1000000 : 0);
      cleanup_free char *names = cmn_strdup(im->n_names ? im->names[0] : "-");
      for (size_t k = 1; k < im->n_names; k++) {
        char *more = cmn_asprintf("%s,%s", names, im->names[k]);
        free(names);
        names = more;
      }
      const char *row[] = {id, names, size, layers, created};
      ctl_table_add(t, row);
    }
    free(token);
    token = lr->next_page_token[0] ? cmn_strdup(lr->next_page_token) : NULL;
    protobuf_c_message_free_unpacked(resp, NULL);
  } while (token != NULL);
  free(token);
  if (rc == 0 && all != NULL) {
    cJSON *o2 = cJSON_CreateObject();
    cJSON_AddItemToObject(o2, "images", all);
    all = NULL;
    char *s = cJSON_Print(o2);
    fprintf(out, "%s\n", s);
    free(s);
    cJSON_Delete(o2);
  } else if (rc == 0) {
    ctl_table_print(t, out);
  }
  cJSON_Delete(all);
  ctl_table_free(t);
  return rc;
}

int ctl_run_rmi(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  Ember__V1__DeleteImageRequest req = EMBER__V1__DELETE_IMAGE_REQUEST__INIT;
  req.id = o->args[0];
  req.allow_missing = o->allow_missing;
  ProtobufCMessage *resp = NULL;
  if (ctl_rpc_unary(rpc, CTL_IMG "DeleteImage", &req.base,
                    &ember__v1__delete_image_response__descriptor, &resp, err) < 0)
    return ctl_fail(err);
  if (o->json) {
    ctl_print_json(out, resp, false);
  } else {
    char freed[32];
    ctl__img_size(freed, sizeof freed, ((Ember__V1__DeleteImageResponse *)resp)->freed_bytes);
    fprintf(out, "deleted %s (%s freed)\n", o->args[0], freed);
  }
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}

/* ---- import ---- */

typedef struct ctl__import {
  int fd;
  int format;
  const char *name;
  bool sent_meta;
  uint8_t *buf;
} ctl__import;

static int ctl__import_next(void *opaque, ProtobufCMessage **msg, cmn_error *err)
{
  ctl__import *x = opaque;
  Ember__V1__ImportImageRequest *m = cmn_malloc(sizeof *m);
  ember__v1__import_image_request__init(m);
  if (!x->sent_meta) {
    x->sent_meta = true;
    Ember__V1__ImportImageMetadata *md = cmn_malloc(sizeof *md);
    ember__v1__import_image_metadata__init(md);
    md->name = cmn_strdup(x->name ? x->name : "");
    md->format = x->format;
    m->content_case = EMBER__V1__IMPORT_IMAGE_REQUEST__CONTENT_METADATA;
    m->metadata = md;
    *msg = &m->base;
    return 1;
  }
  ssize_t n;
  do
    n = read(x->fd, x->buf, CTL_IMPORT_CHUNK);
  while (n < 0 && errno == EINTR);
  if (n <= 0) {
    free(m);
    if (n < 0)
      return cmn_err_errno(err, CMN_INVALID_ARGUMENT, errno, "read");
    return 0;
  }
  m->content_case = EMBER__V1__IMPORT_IMAGE_REQUEST__CONTENT_CHUNK;
  m->chunk.data = cmn_malloc((size_t)n);
  memcpy(m->chunk.data, x->buf, (size_t)n);
  m->chunk.len = (size_t)n;
  *msg = &m->base;
  return 1;
}

static int ctl__import_format(const char *kind)
{
  static const struct {
    const char *name;
    int format;
  } kinds[] = {{"oci", EMBER__V1__IMPORT_FORMAT__IMPORT_FORMAT_OCI_LAYOUT},
               {"docker-archive", EMBER__V1__IMPORT_FORMAT__IMPORT_FORMAT_DOCKER_ARCHIVE},
               {"kernel", EMBER__V1__IMPORT_FORMAT__IMPORT_FORMAT_KERNEL},
               {"initrd", EMBER__V1__IMPORT_FORMAT__IMPORT_FORMAT_INITRD},
               {"disk", EMBER__V1__IMPORT_FORMAT__IMPORT_FORMAT_DISK}};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (kind != NULL && strcmp(kind, kinds[i].name) == 0)
      return kinds[i].format;
  return -1;
}

int ctl_run_import(ctl_rpc *rpc, const ctl_opts *o, FILE *out, cmn_error *err)
{
  int format = ctl__import_format(o->import_kind);
  if (format < 0) {
    cmn_err_set(err, CTL_EXIT_USAGE,
                "--kind is required: oci, docker-archive, kernel, initrd or disk");
    return CTL_EXIT_USAGE;
  }
  cleanup_close int fd = open(o->args[0], O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    cmn_err_errno(err, CMN_NOT_FOUND, errno, "open %s", o->args[0]);
    return CMN_NOT_FOUND;
  }
  ctl__import x = {
      .fd = fd, .format = format, .name = o->import_name, .buf = cmn_malloc(CTL_IMPORT_CHUNK)};
  ProtobufCMessage *resp = NULL;
  int r = ctl_rpc_client_stream(rpc, CTL_IMG "ImportImage", ctl__import_next, &x,
                                &ember__v1__image__descriptor, &resp, err);
  free(x.buf);
  if (r < 0)
    return ctl_fail(err);
  if (o->json) {
    ctl_print_json(out, resp, false);
  } else {
    fprintf(out, "imported %s\n", o->args[0]);
    ctl__print_image(out, (Ember__V1__Image *)resp);
  }
  protobuf_c_message_free_unpacked(resp, NULL);
  return 0;
}
