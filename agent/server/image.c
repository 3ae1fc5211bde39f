/* image.c: ember.v1.ImageService handlers (proto/ember/v1/image.proto) over
 * the image store (agent/image/store.h) that emberd opens next to the
 * manager (srv_options.images).
 *
 * PullImage (server stream) and ImportImage (client stream) run on their own
 * detached thread, counted in s->slow_threads like the lifecycle calls so the
 * server's free waits for them. PullImage pushes progress through the call's
 * bounded stream queue (a client that does not read is ended with
 * RESOURCE_EXHAUSTED by srv_stream_push_locked) and polls the call's close:
 * a client that cancels or whose deadline passes stops the download, and the
 * store keeps nothing of it. ImportImage receives its messages one at a time:
 * the import thread posts a RECV_MESSAGE and waits for its completion, so at
 * most one chunk is buffered per call. */
#include "agent/image/import.h"
#include "agent/image/registry.h"
#include "agent/image/rootfs.h"
#include "agent/image/store.h"
#include "agent/server/internal.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/mem.h"
#include "ember/v1/image.pb-c.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SRV_IMG_PAGE_DEFAULT 100
#define SRV_IMG_PAGE_MAX 1000
/* Least time between two "downloading" progress messages of one blob. */
#define SRV_IMG_PROGRESS_US 100000

static img_store *srv__img_store(srv_server *s, cmn_error *err)
{
  if (s->opts.images == NULL)
    cmn_err_set(err, CMN_UNIMPLEMENTED, "this emberd has no image store");
  return s->opts.images;
}

/* ---- Image messages ---- */

/* An Image message borrowing r's strings; free with srv__img_done. */
typedef struct srv__img_out {
  Ember__V1__Image img;
  Ember__V1__Descriptor manifest, config;
  Ember__V1__Descriptor *layers;
  Ember__V1__Descriptor **layer_ptrs;
  Google__Protobuf__Timestamp created;
} srv__img_out;

static int srv__img_kind(int kind)
{
  switch (kind) {
  case IMG_KIND_OCI:
    return EMBER__V1__IMAGE_KIND__IMAGE_KIND_OCI;
  case IMG_KIND_KERNEL:
    return EMBER__V1__IMAGE_KIND__IMAGE_KIND_KERNEL;
  case IMG_KIND_INITRD:
    return EMBER__V1__IMAGE_KIND__IMAGE_KIND_INITRD;
  case IMG_KIND_DISK:
    return EMBER__V1__IMAGE_KIND__IMAGE_KIND_DISK;
  default:
    return EMBER__V1__IMAGE_KIND__IMAGE_KIND_UNSPECIFIED;
  }
}

static void srv__img_desc(Ember__V1__Descriptor *d, const img_desc *src)
{
  ember__v1__descriptor__init(d);
  d->digest = (char *)(src->digest ? src->digest : "");
  d->media_type = (char *)(src->media_type ? src->media_type : "");
  d->size = src->size;
}

static void srv__img_fill(srv__img_out *o, const img_record *r)
{
  memset(o, 0, sizeof *o);
  ember__v1__image__init(&o->img);
  o->img.id = r->id;
  o->img.kind = srv__img_kind(r->kind);
  o->img.n_names = r->n_names;
  o->img.names = r->names;
  if (r->kind == IMG_KIND_OCI) {
    srv__img_desc(&o->manifest, &r->manifest);
    srv__img_desc(&o->config, &r->config);
    o->img.manifest = &o->manifest;
    o->img.config = &o->config;
  }
  o->layers = cmn_calloc(r->n_layers + 1, sizeof *o->layers);
  o->layer_ptrs = cmn_calloc(r->n_layers + 1, sizeof *o->layer_ptrs);
  for (size_t i = 0; i < r->n_layers; i++) {
    srv__img_desc(&o->layers[i], &r->layers[i]);
    o->layer_ptrs[i] = &o->layers[i];
  }
  o->img.n_layers = r->n_layers;
  o->img.layers = o->layer_ptrs;
  o->img.size = r->size;
  google__protobuf__timestamp__init(&o->created);
  o->created.seconds = r->created;
  o->img.create_time = &o->created;
}

static void srv__img_done(srv__img_out *o)
{
  free(o->layers);
  free(o->layer_ptrs);
}

static int srv__img_check_id(const char *id, cmn_error *err)
{
  if (id == NULL || id[0] == '\0') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "id is required (an image id or name)");
    return cmn_err_field(err, "id");
  }
  if (strlen(id) > 600) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "id is longer than any image id or name");
    return cmn_err_field(err, "id");
  }
  return 0;
}

/* ---- unary: Get, List, Delete ---- */

int srv_unary_image_get(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                        uint8_t **resp, size_t *rl, cmn_error *err)
{
  img_store *st = srv__img_store(s, err);
  if (st == NULL)
    return -1;
  cleanup_pbmsg Ember__V1__GetImageRequest *r =
      srv_unpack(&ember__v1__get_image_request__descriptor, req, len, err);
  if (r == NULL || srv__img_check_id(r->id, err) < 0)
    return -1;
  img_record rec = {0};
  if (img_store_get(st, r->id, &rec, err) < 0)
    return -1;
  srv__img_out o;
  srv__img_fill(&o, &rec);
  int rc = srv_pack(&o.img.base, resp, rl);
  srv__img_done(&o);
  img_record_free(&rec);
  return rc < 0 ? cmn_err_set(err, CMN_INTERNAL, "cannot pack the image") : 0;
}

int srv_unary_image_list(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                         uint8_t **resp, size_t *rl, cmn_error *err)
{
  img_store *st = srv__img_store(s, err);
  if (st == NULL)
    return -1;
  cleanup_pbmsg Ember__V1__ListImagesRequest *r =
      srv_unpack(&ember__v1__list_images_request__descriptor, req, len, err);
  if (r == NULL)
    return -1;
  size_t page;
  if (srv_page_size(r->page_size, SRV_IMG_PAGE_DEFAULT, SRV_IMG_PAGE_MAX, &page, err) < 0)
    return -1;
  /* The token is the last id of the previous page: ids are digests, so a
   * token that is not one is refused. */
  const char *after = r->page_token;
  if (after[0] != '\0' && (strncmp(after, "sha256:", 7) != 0 || strlen(after) != 71)) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "page_token: it is not a next_page_token of ListImages");
    return cmn_err_field(err, "page_token");
  }
  img_record *recs = NULL;
  size_t n = 0;
  if (img_store_list(st, &recs, &n, err) < 0)
    return -1;
  /* Ordered by id (the store's order is not promised). */
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && strcmp(recs[j - 1].id, recs[j].id) > 0; j--) {
      img_record t = recs[j];
      recs[j] = recs[j - 1];
      recs[j - 1] = t;
    }
  size_t first = 0;
  while (first < n && after[0] != '\0' && strcmp(recs[first].id, after) <= 0)
    first++;
  size_t count = n - first < page ? n - first : page;
  srv__img_out *outs = cmn_calloc(count + 1, sizeof *outs);
  Ember__V1__Image **ptrs = cmn_calloc(count + 1, sizeof *ptrs);
  for (size_t i = 0; i < count; i++) {
    srv__img_fill(&outs[i], &recs[first + i]);
    ptrs[i] = &outs[i].img;
  }
  Ember__V1__ListImagesResponse out = EMBER__V1__LIST_IMAGES_RESPONSE__INIT;
  out.n_images = count;
  out.images = ptrs;
  out.next_page_token = (char *)(first + count < n ? recs[first + count - 1].id : "");
  int rc = srv_pack(&out.base, resp, rl);
  for (size_t i = 0; i < count; i++)
    srv__img_done(&outs[i]);
  free(outs);
  free(ptrs);
  img_records_free(recs, n);
  return rc < 0 ? cmn_err_set(err, CMN_INTERNAL, "cannot pack the images") : 0;
}

int srv_unary_image_delete(srv_server *s, srv_op_probe *probe, const uint8_t *req, size_t len,
                           uint8_t **resp, size_t *rl, cmn_error *err)
{
  img_store *st = srv__img_store(s, err);
  if (st == NULL)
    return -1;
  cleanup_pbmsg Ember__V1__DeleteImageRequest *r =
      srv_unpack(&ember__v1__delete_image_request__descriptor, req, len, err);
  if (r == NULL || srv__img_check_id(r->id, err) < 0)
    return -1;
  int64_t freed = 0;
  img_record before = {0};
  bool had = img_store_get(st, r->id, &before, err) == 0;
  memset(err, 0, sizeof *err);
  if (img_store_delete(st, r->id, &freed, err) < 0) {
    img_record_free(&before);
    if (!(r->allow_missing && err->code == CMN_NOT_FOUND))
      return -1;
    memset(err, 0, sizeof *err);
  } else if (had) {
    /* The image is gone (not just one of its names): its cached root disk
     * (instance_image.c, <store>/rootfs/) goes too; instances have their
     * own copies. */
    img_record still = {0};
    cmn_error e2 = {0};
    if (img_store_get(st, before.id, &still, &e2) < 0) {
      cleanup_free char *name = img_rootfs_cache_name(before.id, &e2);
      cleanup_free char *path =
          name ? cmn_asprintf("%s/rootfs/%s", img_store_root(st), name) : NULL;
      if (path != NULL && unlink(path) == 0)
        cmn_info(NULL, "image", "removed the cached root disk %s", path);
    } else {
      img_record_free(&still);
    }
    img_record_free(&before);
  }
  Ember__V1__DeleteImageResponse out = EMBER__V1__DELETE_IMAGE_RESPONSE__INIT;
  out.freed_bytes = freed;
  if (srv_pack(&out.base, resp, rl) < 0)
    return cmn_err_set(err, CMN_INTERNAL, "cannot pack the response");
  cmn_info(NULL, "image", "deleted %s (%lld bytes freed)", r->id, (long long)freed);
  return 0;
}

/* ---- threads of the streaming calls ---- */

/* ---- PullImage ---- */

typedef struct srv__pull {
  srv_call *c;
  char *last_phase;
  char *last_digest;
  int64_t last_us;
} srv__pull;

static void srv__pull_push(srv_call *c, const img_pull_progress *p, const Ember__V1__Image *img)
{
  Ember__V1__PullImageProgress m = EMBER__V1__PULL_IMAGE_PROGRESS__INIT;
  m.phase = (char *)(p->phase ? p->phase : "");
  m.digest = (char *)(p->digest ? p->digest : "");
  m.blob_done = p->blob_done;
  m.blob_total = p->blob_total;
  m.done = p->done;
  m.total = p->total;
  m.blob_index = (uint32_t)p->blob_index;
  m.n_blobs = (uint32_t)p->n_blobs;
  m.image = (Ember__V1__Image *)img;
  grpc_byte_buffer *bb = srv_pack_bb(&m.base);
  pthread_mutex_lock(&c->mu);
  srv_stream_push_locked(c, bb);
  pthread_mutex_unlock(&c->mu);
}

static bool srv__str_eq(const char *a, const char *b)
{
  return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

/* The registry's progress callback: every phase change is sent; bytes of
 * one blob at most every SRV_IMG_PROGRESS_US and at its end, so a fast pull
 * does not flood the bounded queue. */
static void srv__pull_progress(void *opaque, const img_pull_progress *p)
{
  srv__pull *pl = opaque;
  if (p->phase != NULL && strcmp(p->phase, "done") == 0)
    return; /* the last message, with the Image, is sent by srv__pull_main */
  int64_t now = srv_now_us();
  bool change = !srv__str_eq(pl->last_phase, p->phase) || !srv__str_eq(pl->last_digest, p->digest);
  bool end = p->blob_total > 0 && p->blob_done == p->blob_total;
  if (!change && !end && now - pl->last_us < SRV_IMG_PROGRESS_US)
    return;
  pl->last_us = now;
  free(pl->last_phase);
  free(pl->last_digest);
  pl->last_phase = p->phase ? cmn_strdup(p->phase) : NULL;
  pl->last_digest = p->digest ? cmn_strdup(p->digest) : NULL;
  srv__pull_push(pl->c, p, NULL);
}

/* The pull's cancel check (its opaque is the srv__pull, as for progress). */
static bool srv__pull_gone(void *opaque)
{
  srv__pull *pl = opaque;
  return srv_call_gone(pl->c);
}

static void *srv__pull_main(void *arg)
{
  srv_call *c = arg;
  srv_server *s = c->srv;
  cmn_error err = {0};
  Ember__V1__PullImageRequest *r =
      srv_unpack(&ember__v1__pull_image_request__descriptor, c->req, c->req_len, &err);
  img_store *st = r != NULL ? srv__img_store(s, &err) : NULL;
  if (r != NULL && st != NULL && (r->reference[0] == '\0')) {
    cmn_err_set(&err, CMN_INVALID_ARGUMENT, "reference is required (host[:port]/repo[:tag])");
    cmn_err_field(&err, "reference");
    st = NULL;
  }
  if (st != NULL) {
    srv__pull pl = {.c = c};
    img_pull_opts po = {
        .username = r->username[0] ? r->username : NULL,
        .password = r->password[0] ? r->password : NULL,
        .progress = srv__pull_progress,
        .cancelled = srv__pull_gone,
        .opaque = &pl,
    };
    /* Headers go out now: the client sees the call accepted. */
    pthread_mutex_lock(&c->mu);
    srv_stream_push_locked(c, NULL);
    pthread_mutex_unlock(&c->mu);
    img_record rec = {0};
    int64_t t0 = srv_now_us();
    int rc = img_pull(st, s->opts.registry, r->reference, &po, &rec, &err);
    free(pl.last_phase);
    free(pl.last_digest);
    if (rc == 0) {
      srv__img_out o;
      srv__img_fill(&o, &rec);
      img_pull_progress last = {.phase = "done", .done = rec.size, .total = rec.size};
      srv__pull_push(c, &last, &o.img);
      srv__img_done(&o);
      cmn_info(NULL, "image", "pulled %s as %s (%lld bytes) in %lld ms", r->reference, rec.id,
               (long long)rec.size, (long long)((srv_now_us() - t0) / 1000));
      img_record_free(&rec);
      pthread_mutex_lock(&c->mu);
      srv_stream_end_locked(c, 0, NULL);
      pthread_mutex_unlock(&c->mu);
    } else {
      cmn_info(NULL, "image", "pull of %s failed: %s", r->reference, err.msg);
    }
  }
  if (err.code != CMN_OK)
    srv_call_finish_error(c, &err);
  if (r != NULL)
    protobuf_c_message_free_unpacked(&r->base, NULL);
  srv_call_thread_done(c);
  return NULL;
}

void srv_image_pull_start(srv_call *c) { srv_call_spawn(c, srv__pull_main); }

/* ---- ImportImage ---- */

/* One receive at a time on the import thread (recv.c); rx comes first. */
typedef struct srv__imp {
  srv_grecv rx;
  uint8_t *chunk; /* the current message, flattened */
  Ember__V1__ImportImageRequest *msg;
} srv__imp;

static void srv__imp_free(void *p)
{
  srv__imp *im = p;
  if (im == NULL)
    return;
  srv_grecv_fini(&im->rx);
  if (im->msg != NULL)
    protobuf_c_message_free_unpacked(&im->msg->base, NULL);
  free(im->chunk);
  free(im);
}

/* Receives the next message: 1 with im->msg set, 0 at the client's
 * half-close, < 0 (CANCELLED / INVALID_ARGUMENT) otherwise. */
static int srv__imp_next(srv_call *c, srv__imp *im, cmn_error *err)
{
  if (im->msg != NULL) {
    protobuf_c_message_free_unpacked(&im->msg->base, NULL);
    im->msg = NULL;
  }
  free(im->chunk);
  im->chunk = NULL;
  size_t len = 0;
  int r = srv_grecv_next(c, &im->rx, &im->chunk, &len, err);
  if (r < 0 && err->code == CMN_CANCELLED)
    cmn_err_set(err, CMN_CANCELLED, "the client went away during the upload");
  if (r <= 0)
    return r;
  im->msg = srv_unpack(&ember__v1__import_image_request__descriptor, im->chunk, len, err);
  return im->msg != NULL ? 1 : -1;
}

typedef struct srv__imp_ctx {
  srv_call *c;
  srv__imp *im;
  bool first; /* the chunk of the current message was not handed out yet */
} srv__imp_ctx;

static int srv__imp_read(void *opaque, const void **buf, size_t *len, cmn_error *err)
{
  srv__imp_ctx *x = opaque;
  for (;;) {
    if (x->first) {
      x->first = false;
      Ember__V1__ImportImageRequest *m = x->im->msg;
      if (m->content_case != EMBER__V1__IMPORT_IMAGE_REQUEST__CONTENT_CHUNK) {
        cmn_err_set(err, CMN_INVALID_ARGUMENT,
                    "only the first message of ImportImage carries metadata; the following "
                    "ones carry chunk");
        return cmn_err_field(err, "metadata");
      }
      if (m->chunk.len == 0)
        continue;
      *buf = m->chunk.data;
      *len = m->chunk.len;
      return 1;
    }
    int r = srv__imp_next(x->c, x->im, err);
    if (r <= 0)
      return r;
    x->first = true;
  }
}

static int srv__imp_kind(int format, cmn_error *err)
{
  switch (format) {
  case EMBER__V1__IMPORT_FORMAT__IMPORT_FORMAT_OCI_LAYOUT:
  case EMBER__V1__IMPORT_FORMAT__IMPORT_FORMAT_DOCKER_ARCHIVE:
    return IMG_KIND_OCI;
  case EMBER__V1__IMPORT_FORMAT__IMPORT_FORMAT_KERNEL:
    return IMG_KIND_KERNEL;
  case EMBER__V1__IMPORT_FORMAT__IMPORT_FORMAT_INITRD:
    return IMG_KIND_INITRD;
  case EMBER__V1__IMPORT_FORMAT__IMPORT_FORMAT_DISK:
    return IMG_KIND_DISK;
  default:
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "metadata.format is required: OCI_LAYOUT, DOCKER_ARCHIVE, KERNEL, INITRD or "
                "DISK");
    cmn_err_field(err, "metadata.format");
    return -1;
  }
}

static void *srv__import_main(void *arg)
{
  srv_call *c = arg;
  srv__imp *im = c->priv;
  cmn_error err = {0};
  img_store *st = srv__img_store(c->srv, &err);
  int kind = -1;
  if (st != NULL) {
    int r = srv__imp_next(c, im, &err);
    if (r == 0)
      cmn_err_set(&err, CMN_INVALID_ARGUMENT, "the upload ended before its metadata message");
    else if (r > 0 && im->msg->content_case != EMBER__V1__IMPORT_IMAGE_REQUEST__CONTENT_METADATA) {
      cmn_err_set(&err, CMN_INVALID_ARGUMENT,
                  "the first message of ImportImage must carry metadata");
      cmn_err_field(&err, "metadata");
    } else if (r > 0) {
      kind = srv__imp_kind(im->msg->metadata->format, &err);
    }
  }
  if (kind >= 0) {
    cleanup_free char *name =
        im->msg->metadata->name[0] ? cmn_strdup(im->msg->metadata->name) : NULL;
    srv__imp_ctx x = {.c = c, .im = im, .first = false};
    img_import_opts o = {.kind = kind, .name = name, .read = srv__imp_read, .opaque = &x};
    img_record rec = {0};
    int64_t t0 = srv_now_us();
    if (img_import(st, &o, &rec, &err) == 0) {
      /* Drain to the client's half-close: a unary response ends the call. */
      srv__img_out out;
      srv__img_fill(&out, &rec);
      cmn_info(NULL, "image", "imported %s%s%s (%lld bytes) in %lld ms", rec.id, name ? " as " : "",
               name ? name : "", (long long)rec.size, (long long)((srv_now_us() - t0) / 1000));
      srv_call_finish(c, srv_pack_bb(&out.img.base), 0, NULL);
      srv__img_done(&out);
      img_record_free(&rec);
    } else {
      cmn_info(NULL, "image", "import failed: %s", err.msg);
    }
  }
  if (err.code != CMN_OK)
    srv_call_finish_error(c, &err);
  srv_call_thread_done(c);
  return NULL;
}

void srv_image_import_start(srv_call *c)
{
  srv__imp *im = cmn_calloc(1, sizeof *im);
  srv_grecv_init(&im->rx);
  srv_grecv_attach(c, &im->rx, srv__imp_free);
  srv_call_spawn(c, srv__import_main);
}
