/* store.c: the content-addressed image store (contracts in store.h).
 *
 * Accounting: footprint = used (committed blobs) + reserved (what leases
 * reserved and have not written yet) + pending (bytes in tmp/ being written).
 * A write beyond a lease's reservation must fit the budget (after a GC). */
#include "agent/image/store.h"
#include "agent/image/digest.h"
#include "agent/image/ref.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RECORD_MAX (4 << 20)
#define MAX_NAMES 64

typedef char img_dstr[IMG_DIGEST_LEN + 1];

struct hold {
  img_dstr digest;
  int count;
};

struct pin {
  img_dstr id;
  char *who;
};

struct img_store {
  char *root, *blobs_dir, *records_dir, *tmp_dir;
  struct pin *pins; /* images in use, as the manager declared them */
  size_t n_pins;
  int64_t budget;
  img_in_use_fn in_use;
  void *in_use_opaque;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* signalled when an in-flight write ends */
  img_record *recs;
  size_t n_recs;
  struct hold *holds;
  size_t n_holds;
  img_dstr *inflight;
  size_t n_inflight;
  int64_t used, reserved, pending;
  size_t n_blobs;
};

struct img_lease {
  img_store *s;
  img_dstr *digests;
  size_t n;
  int64_t reserved; /* not yet written */
};

struct img_blob_writer {
  img_lease *l;
  char *tmp_path;
  int fd;
  img_sha256 *h;
  bool known;      /* expected digest given (and registered in flight) */
  img_dstr digest; /* expected */
  int64_t size;    /* expected, or -1 */
  int64_t max;
  int64_t written;
};

static const char *const kind_names[] = {"oci", "kernel", "initrd", "disk"};

const char *img_kind_name(int kind)
{
  return kind >= 0 && kind <= IMG_KIND_DISK ? kind_names[kind] : "unknown";
}

int img_kind_parse(const char *s)
{
  for (int i = 0; s != NULL && i <= IMG_KIND_DISK; i++)
    if (strcmp(s, kind_names[i]) == 0)
      return i;
  return -1;
}

static void desc_free(img_desc *d)
{
  free(d->digest);
  free(d->media_type);
  memset(d, 0, sizeof(*d));
}

static void desc_copy(img_desc *dst, const img_desc *src)
{
  dst->digest = cmn_strdup(src->digest);
  dst->media_type = cmn_strdup(src->media_type ? src->media_type : "");
  dst->size = src->size;
}

void img_record_free(img_record *r)
{
  if (r == NULL)
    return;
  free(r->id);
  for (size_t i = 0; i < r->n_names; i++)
    free(r->names[i]);
  free(r->names);
  desc_free(&r->manifest);
  desc_free(&r->config);
  for (size_t i = 0; i < r->n_layers; i++)
    desc_free(&r->layers[i]);
  free(r->layers);
  memset(r, 0, sizeof(*r));
}

void img_records_free(img_record *r, size_t n)
{
  for (size_t i = 0; i < n; i++)
    img_record_free(&r[i]);
  free(r);
}

static void record_copy(img_record *dst, const img_record *src)
{
  memset(dst, 0, sizeof(*dst));
  dst->id = cmn_strdup(src->id);
  dst->kind = src->kind;
  dst->n_names = src->n_names;
  dst->names = cmn_calloc(src->n_names + 1, sizeof(char *));
  for (size_t i = 0; i < src->n_names; i++)
    dst->names[i] = cmn_strdup(src->names[i]);
  if (src->manifest.digest)
    desc_copy(&dst->manifest, &src->manifest);
  if (src->config.digest)
    desc_copy(&dst->config, &src->config);
  dst->n_layers = src->n_layers;
  dst->layers = cmn_calloc(src->n_layers + 1, sizeof(img_desc));
  for (size_t i = 0; i < src->n_layers; i++)
    desc_copy(&dst->layers[i], &src->layers[i]);
  dst->size = src->size;
  dst->created = src->created;
}

/* ---------------- record (de)serialization ---------------- */

static cJSON *desc_json(const img_desc *d)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "digest", d->digest ? d->digest : "");
  cJSON_AddStringToObject(o, "mediaType", d->media_type ? d->media_type : "");
  cJSON_AddNumberToObject(o, "size", (double)d->size);
  return o;
}

cJSON *img_record_json(const img_record *r)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", r->id);
  cJSON_AddStringToObject(o, "kind", img_kind_name(r->kind));
  cJSON *names = cJSON_AddArrayToObject(o, "names");
  for (size_t i = 0; i < r->n_names; i++)
    cJSON_AddItemToArray(names, cJSON_CreateString(r->names[i]));
  if (r->kind == IMG_KIND_OCI) {
    cJSON_AddItemToObject(o, "manifest", desc_json(&r->manifest));
    cJSON_AddItemToObject(o, "config", desc_json(&r->config));
  }
  cJSON *layers = cJSON_AddArrayToObject(o, "layers");
  for (size_t i = 0; i < r->n_layers; i++)
    cJSON_AddItemToArray(layers, desc_json(&r->layers[i]));
  cJSON_AddNumberToObject(o, "size", (double)r->size);
  cJSON_AddNumberToObject(o, "created", (double)r->created);
  return o;
}

static char *record_json(const img_record *r)
{
  cJSON *o = img_record_json(r);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (s == NULL)
    abort();
  return s;
}

static int desc_parse(const cJSON *o, img_desc *d, const char *what, cmn_error *err)
{
  const cJSON *dg = cJSON_GetObjectItemCaseSensitive(o, "digest");
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(o, "mediaType");
  const cJSON *sz = cJSON_GetObjectItemCaseSensitive(o, "size");
  if (!cJSON_IsObject(o) || !cJSON_IsString(dg) || !cJSON_IsNumber(sz) || sz->valuedouble < 0 ||
      sz->valuedouble > 9.0e15 || (mt != NULL && !cJSON_IsString(mt)))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s: needs digest, size (and mediaType)", what);
  if (img_digest_check(dg->valuestring, what, err) < 0)
    return -1;
  d->digest = cmn_strdup(dg->valuestring);
  d->media_type = cmn_strdup(mt ? mt->valuestring : "");
  d->size = (int64_t)sz->valuedouble;
  return 0;
}

static int record_parse(const char *text, img_record *r, cmn_error *err)
{
  memset(r, 0, sizeof(*r));
  cJSON *o = cJSON_Parse(text);
  if (o == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "not JSON");
  int ret = -1;
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
  const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "kind");
  const cJSON *names = cJSON_GetObjectItemCaseSensitive(o, "names");
  const cJSON *layers = cJSON_GetObjectItemCaseSensitive(o, "layers");
  const cJSON *created = cJSON_GetObjectItemCaseSensitive(o, "created");
  if (!cJSON_IsString(id) || img_digest_check(id->valuestring, "id", err) < 0) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "bad id");
    goto out;
  }
  r->id = cmn_strdup(id->valuestring);
  r->kind = cJSON_IsString(kind) ? img_kind_parse(kind->valuestring) : -1;
  if (r->kind < 0 || !cJSON_IsArray(names) || !cJSON_IsArray(layers)) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "bad kind, names or layers");
    goto out;
  }
  int nn = cJSON_GetArraySize(names);
  r->names = cmn_calloc((size_t)nn + 1, sizeof(char *));
  for (const cJSON *n = names->child; n != NULL; n = n->next) {
    if (!cJSON_IsString(n)) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT, "bad name");
      goto out;
    }
    r->names[r->n_names++] = cmn_strdup(n->valuestring);
  }
  if (r->kind == IMG_KIND_OCI &&
      (desc_parse(cJSON_GetObjectItemCaseSensitive(o, "manifest"), &r->manifest, "manifest", err) <
           0 ||
       desc_parse(cJSON_GetObjectItemCaseSensitive(o, "config"), &r->config, "config", err) < 0))
    goto out;
  int nl = cJSON_GetArraySize(layers);
  r->layers = cmn_calloc((size_t)nl + 1, sizeof(img_desc));
  for (const cJSON *l = layers->child; l != NULL; l = l->next)
    if (desc_parse(l, &r->layers[r->n_layers++], "layer", err) < 0)
      goto out;
  if (r->kind != IMG_KIND_OCI && r->n_layers != 1) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "a file record needs exactly one blob");
    goto out;
  }
  r->created = cJSON_IsNumber(created) ? (int64_t)created->valuedouble : 0;
  r->size = r->manifest.size + r->config.size;
  for (size_t i = 0; i < r->n_layers; i++)
    r->size += r->layers[i].size;
  ret = 0;
out:
  cJSON_Delete(o);
  if (ret < 0)
    img_record_free(r);
  return ret;
}

/* True when the record references digest. */
static bool record_refs(const img_record *r, const char *digest)
{
  if (r->manifest.digest && strcmp(r->manifest.digest, digest) == 0)
    return true;
  if (r->config.digest && strcmp(r->config.digest, digest) == 0)
    return true;
  for (size_t i = 0; i < r->n_layers; i++)
    if (strcmp(r->layers[i].digest, digest) == 0)
      return true;
  return false;
}

/* ---------------- paths and helpers ---------------- */

const char *img_store_root(const img_store *s) { return s->root; }

char *img_store_blob_path(const img_store *s, const char *digest)
{
  return cmn_asprintf("%s/%s", s->blobs_dir, img_digest_hex(digest));
}

static char *record_path(const img_store *s, const char *id)
{
  return cmn_asprintf("%s/%s.json", s->records_dir, img_digest_hex(id));
}

static bool is_hex64(const char *n, size_t len)
{
  if (len != IMG_DIGEST_HEX_LEN)
    return false;
  for (size_t i = 0; i < len; i++)
    if (!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
      return false;
  return true;
}

static bool blob_exists_locked(const img_store *s, const char *digest, int64_t *size)
{
  cleanup_free char *p = img_store_blob_path(s, digest);
  struct stat st;
  if (stat(p, &st) != 0 || !S_ISREG(st.st_mode))
    return false;
  if (size)
    *size = st.st_size;
  return true;
}

bool img_store_has_blob(img_store *s, const char *digest)
{
  if (!img_digest_valid(digest))
    return false;
  pthread_mutex_lock(&s->mu);
  bool r = blob_exists_locked(s, digest, NULL);
  pthread_mutex_unlock(&s->mu);
  return r;
}

static bool held_locked(const img_store *s, const char *digest)
{
  for (size_t i = 0; i < s->n_holds; i++)
    if (strcmp(s->holds[i].digest, digest) == 0)
      return true;
  for (size_t i = 0; i < s->n_inflight; i++)
    if (strcmp(s->inflight[i], digest) == 0)
      return true;
  return false;
}

static bool referenced_locked(const img_store *s, const char *digest)
{
  for (size_t i = 0; i < s->n_recs; i++)
    if (record_refs(&s->recs[i], digest))
      return true;
  return false;
}

/* Removes unreferenced, unheld blobs. Called with the lock held. */
static int gc_locked(img_store *s, int64_t *freed, size_t *removed, cmn_error *err)
{
  cleanup_closedir DIR *d = opendir(s->blobs_dir);
  if (d == NULL)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "open %s", s->blobs_dir);
  int64_t f = 0;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    img_dstr dg;
    if (!is_hex64(e->d_name, strlen(e->d_name))) {
      struct stat st;
      cmn_warn(NULL, "image-gc", "removing stray file %s/%s", s->blobs_dir, e->d_name);
      if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          unlinkat(dirfd(d), e->d_name, 0) == 0) {
        s->used -= st.st_size;
        s->n_blobs--;
      }
      continue;
    }
    memcpy(dg, "sha256:", 7);
    memcpy(dg + 7, e->d_name, IMG_DIGEST_HEX_LEN + 1);
    if (held_locked(s, dg) || referenced_locked(s, dg))
      continue;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
      continue;
    if (unlinkat(dirfd(d), e->d_name, 0) != 0)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "remove blob %s", dg);
    f += st.st_size;
    n++;
    s->used -= st.st_size;
    s->n_blobs--;
  }
  if (n > 0 && fsync(dirfd(d)) != 0)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "fsync %s", s->blobs_dir);
  if (freed)
    *freed += f;
  if (removed)
    *removed += n;
  return 0;
}

int img_store_gc(img_store *s, int64_t *freed, size_t *removed, cmn_error *err)
{
  if (freed)
    *freed = 0;
  if (removed)
    *removed = 0;
  pthread_mutex_lock(&s->mu);
  int r = gc_locked(s, freed, removed, err);
  pthread_mutex_unlock(&s->mu);
  return r;
}

/* Checks that `extra` more bytes fit the budget, GC-ing once if not. */
static int fit_locked(img_store *s, int64_t extra, cmn_error *err)
{
  if (s->budget <= 0)
    return 0;
  if (s->used + s->reserved + s->pending + extra <= s->budget)
    return 0;
  cmn_error gerr = {0};
  if (gc_locked(s, NULL, NULL, &gerr) < 0)
    cmn_warn(NULL, "image-gc", "%s", gerr.msg);
  if (s->used + s->reserved + s->pending + extra <= s->budget)
    return 0;
  return cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                     "image store budget exceeded: needs %lld more bytes; %lld used by "
                     "committed blobs, %lld reserved by pulls/imports in progress, %lld being "
                     "written, budget %lld (delete images or raise image_store_budget)",
                     (long long)extra, (long long)s->used, (long long)s->reserved,
                     (long long)s->pending, (long long)s->budget);
}

/* ---------------- open / close ---------------- */

static int clean_dir(const char *dir, cmn_error *err)
{
  cleanup_closedir DIR *d = opendir(dir);
  if (d == NULL)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "open %s", dir);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    cleanup_free char *p = cmn_asprintf("%s/%s", dir, e->d_name);
    if (cmn_rm_rf(p, err) < 0)
      return -1;
    n++;
  }
  if (n > 0)
    cmn_info(NULL, "image-store", "removed %d leftover(s) of interrupted downloads in %s", n, dir);
  return 0;
}

static int load_records(img_store *s, cmn_error *err)
{
  cleanup_closedir DIR *d = opendir(s->records_dir);
  if (d == NULL)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "open %s", s->records_dir);
  struct dirent *e;
  bool removed = false;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    size_t len = strlen(e->d_name);
    cleanup_free char *p = cmn_asprintf("%s/%s", s->records_dir, e->d_name);
    if (len != IMG_DIGEST_HEX_LEN + 5 || !is_hex64(e->d_name, IMG_DIGEST_HEX_LEN) ||
        strcmp(e->d_name + IMG_DIGEST_HEX_LEN, ".json") != 0) {
      cmn_info(NULL, "image-store", "removing half-written record %s", p);
      cmn_rm_rf(p, err);
      removed = true;
      continue;
    }
    cleanup_free char *text = NULL;
    size_t tl = 0;
    cmn_error rerr = {0};
    img_record r = {0};
    bool ok =
        cmn_file_read(p, RECORD_MAX, &text, &tl, &rerr) == 0 && record_parse(text, &r, &rerr) == 0;
    if (ok && strncmp(img_digest_hex(r.id), e->d_name, IMG_DIGEST_HEX_LEN) != 0) {
      cmn_err_set(&rerr, CMN_INVALID_ARGUMENT, "id does not match the file name");
      ok = false;
    }
    for (size_t i = 0; ok && i < r.n_layers + 2; i++) {
      const char *dg = i < r.n_layers    ? r.layers[i].digest
                       : i == r.n_layers ? r.manifest.digest
                                         : r.config.digest;
      if (dg != NULL && !blob_exists_locked(s, dg, NULL)) {
        cmn_err_set(&rerr, CMN_NOT_FOUND, "blob %s is missing", dg);
        ok = false;
      }
    }
    if (!ok) {
      cmn_warn(NULL, "image-store", "dropping image record %s: %s", p, rerr.msg);
      img_record_free(&r);
      unlink(p);
      removed = true;
      continue;
    }
    s->recs = cmn_realloc(s->recs, (s->n_recs + 1) * sizeof(img_record));
    s->recs[s->n_recs++] = r;
  }
  if (removed)
    cmn_fsync_path(s->records_dir, err);
  return 0;
}

static int count_blobs(img_store *s, cmn_error *err)
{
  cleanup_closedir DIR *d = opendir(s->blobs_dir);
  if (d == NULL)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "open %s", s->blobs_dir);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    struct stat st;
    if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
      continue;
    s->used += st.st_size;
    s->n_blobs++;
  }
  return 0;
}

int img_store_open(const img_store_opts *opts, img_store **out, cmn_error *err)
{
  *out = NULL;
  if (opts == NULL || opts->data_dir == NULL || opts->data_dir[0] != '/')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "image store: data dir must be absolute");
  if (opts->budget_bytes < 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "image store: negative budget");
  img_store *s = cmn_calloc(1, sizeof(*s));
  s->root = cmn_asprintf("%s/images", opts->data_dir);
  s->blobs_dir = cmn_asprintf("%s/blobs/sha256", s->root);
  s->records_dir = cmn_asprintf("%s/records", s->root);
  s->tmp_dir = cmn_asprintf("%s/tmp", s->root);
  s->budget = opts->budget_bytes;
  s->in_use = opts->in_use;
  s->in_use_opaque = opts->in_use_opaque;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  if (cmn_mkdir_p(s->blobs_dir, 0750, err) < 0 || cmn_mkdir_p(s->records_dir, 0750, err) < 0 ||
      cmn_mkdir_p(s->tmp_dir, 0750, err) < 0 || clean_dir(s->tmp_dir, err) < 0 ||
      count_blobs(s, err) < 0 || load_records(s, err) < 0) {
    cmn_err_prefix(err, "image store %s", s->root);
    img_store_close(s);
    return -1;
  }
  int64_t freed = 0;
  size_t removed = 0;
  if (gc_locked(s, &freed, &removed, err) < 0) {
    cmn_err_prefix(err, "image store %s", s->root);
    img_store_close(s);
    return -1;
  }
  if (removed > 0)
    cmn_info(NULL, "image-store", "removed %zu unreferenced blob(s), %lld bytes", removed,
             (long long)freed);
  *out = s;
  return 0;
}

void img_store_close(img_store *s)
{
  if (s == NULL)
    return;
  img_records_free(s->recs, s->n_recs);
  for (size_t i = 0; i < s->n_pins; i++)
    free(s->pins[i].who);
  free(s->pins);
  free(s->holds);
  free(s->inflight);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->root);
  free(s->blobs_dir);
  free(s->records_dir);
  free(s->tmp_dir);
  free(s);
}

/* ---------------- leases ---------------- */

img_lease *img_lease_new(img_store *s)
{
  img_lease *l = cmn_calloc(1, sizeof(*l));
  l->s = s;
  return l;
}

static void hold_locked(img_lease *l, const char *digest)
{
  img_store *s = l->s;
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->digests[i], digest) == 0)
      return;
  l->digests = cmn_realloc(l->digests, (l->n + 1) * sizeof(img_dstr));
  snprintf(l->digests[l->n++], sizeof(img_dstr), "%s", digest);
  for (size_t i = 0; i < s->n_holds; i++)
    if (strcmp(s->holds[i].digest, digest) == 0) {
      s->holds[i].count++;
      return;
    }
  s->holds = cmn_realloc(s->holds, (s->n_holds + 1) * sizeof(struct hold));
  snprintf(s->holds[s->n_holds].digest, sizeof(img_dstr), "%s", digest);
  s->holds[s->n_holds++].count = 1;
}

void img_lease_hold(img_lease *l, const char *digest)
{
  if (!img_digest_valid(digest))
    return;
  pthread_mutex_lock(&l->s->mu);
  hold_locked(l, digest);
  pthread_mutex_unlock(&l->s->mu);
}

void img_lease_free(img_lease *l)
{
  if (l == NULL)
    return;
  img_store *s = l->s;
  pthread_mutex_lock(&s->mu);
  for (size_t j = 0; j < l->n; j++)
    for (size_t i = 0; i < s->n_holds; i++)
      if (strcmp(s->holds[i].digest, l->digests[j]) == 0) {
        if (--s->holds[i].count == 0)
          s->holds[i] = s->holds[--s->n_holds];
        break;
      }
  s->reserved -= l->reserved;
  pthread_mutex_unlock(&s->mu);
  free(l->digests);
  free(l);
}

int img_lease_reserve(img_lease *l, int64_t bytes, cmn_error *err)
{
  if (bytes <= 0)
    return 0;
  img_store *s = l->s;
  pthread_mutex_lock(&s->mu);
  int r = fit_locked(s, bytes, err);
  if (r == 0) {
    l->reserved += bytes;
    s->reserved += bytes;
  }
  pthread_mutex_unlock(&s->mu);
  return r;
}

/* ---------------- blob writers ---------------- */

static void inflight_remove_locked(img_store *s, const char *digest)
{
  for (size_t i = 0; i < s->n_inflight; i++)
    if (strcmp(s->inflight[i], digest) == 0) {
      memcpy(s->inflight[i], s->inflight[--s->n_inflight], sizeof(img_dstr));
      break;
    }
  pthread_cond_broadcast(&s->cv);
}

int img_blob_begin(img_lease *l, const char *digest, int64_t size, int64_t max,
                   img_cancel_fn cancel, void *cancel_opaque, img_blob_writer **w, cmn_error *err)
{
  *w = NULL;
  img_store *s = l->s;
  if (digest != NULL && img_digest_check(digest, "blob", err) < 0)
    return -1;
  if (digest != NULL) {
    pthread_mutex_lock(&s->mu);
    for (;;) {
      bool busy = false;
      for (size_t i = 0; i < s->n_inflight && !busy; i++)
        busy = strcmp(s->inflight[i], digest) == 0;
      if (!busy)
        break;
      if (cancel != NULL && cancel(cancel_opaque)) {
        pthread_mutex_unlock(&s->mu);
        return cmn_err_set(err, CMN_CANCELLED, "cancelled while waiting for blob %s", digest);
      }
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 200 * 1000 * 1000;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    hold_locked(l, digest);
    int64_t have = 0;
    if (blob_exists_locked(s, digest, &have) && (size < 0 || have == size)) {
      pthread_mutex_unlock(&s->mu);
      return 1;
    }
    s->inflight = cmn_realloc(s->inflight, (s->n_inflight + 1) * sizeof(img_dstr));
    snprintf(s->inflight[s->n_inflight++], sizeof(img_dstr), "%s", digest);
    pthread_mutex_unlock(&s->mu);
  }
  img_blob_writer *bw = cmn_calloc(1, sizeof(*bw));
  bw->l = l;
  bw->size = size;
  bw->max = max;
  bw->fd = -1;
  if (digest != NULL) {
    bw->known = true;
    snprintf(bw->digest, sizeof(bw->digest), "%s", digest);
  }
  bw->tmp_path = cmn_asprintf("%s/blob.XXXXXX", s->tmp_dir);
  bw->fd = mkostemp(bw->tmp_path, O_CLOEXEC);
  if (bw->fd < 0) {
    int e = errno;
    img_blob_abort(bw);
    return cmn_err_errno(err, CMN_INTERNAL, e, "create a temp file in %s", s->tmp_dir);
  }
  fchmod(bw->fd, 0640);
  bw->h = img_sha256_new();
  *w = bw;
  return 0;
}

int64_t img_blob_written(const img_blob_writer *w) { return w->written; }

int img_blob_write(img_blob_writer *w, const void *data, size_t len, cmn_error *err)
{
  if (len == 0)
    return 0;
  int64_t n = (int64_t)len;
  if (w->size >= 0 && w->written + n > w->size)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "blob %s is larger than its descriptor says (%lld bytes)",
                       w->known ? w->digest : "", (long long)w->size);
  if (w->size < 0 && w->max > 0 && w->written + n > w->max)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "blob larger than the limit of %lld bytes",
                       (long long)w->max);
  img_store *s = w->l->s;
  pthread_mutex_lock(&s->mu);
  int64_t take = w->l->reserved < n ? w->l->reserved : n;
  int r = 0;
  if (n - take > 0)
    r = fit_locked(s, n - take, err);
  if (r == 0) {
    w->l->reserved -= take;
    s->reserved -= take;
    s->pending += n;
    w->written += n;
  }
  pthread_mutex_unlock(&s->mu);
  if (r < 0)
    return -1;
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t k = write(w->fd, p, left);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0) {
      int e = errno;
      return cmn_err_errno(err, e == ENOSPC ? CMN_RESOURCE_EXHAUSTED : CMN_INTERNAL, e, "write %s",
                           w->tmp_path);
    }
    p += k;
    left -= (size_t)k;
  }
  img_sha256_update(w->h, data, len);
  return 0;
}

static void writer_free(img_blob_writer *w, bool unlink_tmp)
{
  img_store *s = w->l->s;
  if (w->fd >= 0)
    close(w->fd);
  if (unlink_tmp && w->tmp_path != NULL)
    unlink(w->tmp_path);
  pthread_mutex_lock(&s->mu);
  s->pending -= w->written;
  if (w->known)
    inflight_remove_locked(s, w->digest);
  pthread_mutex_unlock(&s->mu);
  img_sha256_free(w->h);
  free(w->tmp_path);
  free(w);
}

void img_blob_abort(img_blob_writer *w)
{
  if (w != NULL)
    writer_free(w, true);
}

int img_blob_commit(img_blob_writer *w, char *digest_out, cmn_error *err)
{
  img_store *s = w->l->s;
  img_dstr got;
  img_sha256_final(w->h, got);
  if (w->size >= 0 && w->written != w->size) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "blob %s is truncated: %lld of %lld bytes",
                w->known ? w->digest : got, (long long)w->written, (long long)w->size);
    writer_free(w, true);
    return -1;
  }
  if (w->known && strcmp(got, w->digest) != 0) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "blob digest mismatch: expected %s, got %s", w->digest,
                got);
    writer_free(w, true);
    return -1;
  }
  if (fsync(w->fd) != 0) {
    cmn_err_errno(err, CMN_INTERNAL, errno, "fsync %s", w->tmp_path);
    writer_free(w, true);
    return -1;
  }
  cleanup_free char *dst = img_store_blob_path(s, got);
  pthread_mutex_lock(&s->mu);
  hold_locked(w->l, got);
  int64_t have = 0;
  bool exists = blob_exists_locked(s, got, &have);
  int ret = 0;
  if (exists) {
    unlink(w->tmp_path); /* the same bytes are there (an unknown-digest write) */
  } else if (rename(w->tmp_path, dst) != 0) {
    ret = cmn_err_errno(err, CMN_INTERNAL, errno, "rename %s to %s", w->tmp_path, dst);
    unlink(w->tmp_path);
  } else {
    s->used += w->written;
    s->n_blobs++;
  }
  pthread_mutex_unlock(&s->mu);
  if (ret == 0 && !exists)
    ret = cmn_fsync_path(s->blobs_dir, err);
  if (ret == 0 && digest_out != NULL)
    memcpy(digest_out, got, sizeof(got));
  free(w->tmp_path);
  w->tmp_path = NULL;
  writer_free(w, false);
  return ret;
}

/* ---------------- records ---------------- */

static img_record *find_locked(img_store *s, const char *key)
{
  const char *hex = NULL;
  if (img_digest_valid(key))
    hex = img_digest_hex(key);
  else if (is_hex64(key, strlen(key)))
    hex = key;
  for (size_t i = 0; hex != NULL && i < s->n_recs; i++)
    if (strcmp(img_digest_hex(s->recs[i].id), hex) == 0)
      return &s->recs[i];
  cleanup_free char *canon = NULL;
  img_ref ref;
  cmn_error e = {0};
  if (img_ref_parse(key, &ref, &e) == 0) {
    canon = img_ref_string(&ref);
    img_ref_free(&ref);
  }
  for (size_t i = 0; i < s->n_recs; i++)
    for (size_t j = 0; j < s->recs[i].n_names; j++)
      if (strcmp(s->recs[i].names[j], key) == 0 ||
          (canon != NULL && strcmp(s->recs[i].names[j], canon) == 0))
        return &s->recs[i];
  return NULL;
}

static int write_record_locked(img_store *s, const img_record *r, cmn_error *err)
{
  cleanup_free char *path = record_path(s, r->id);
  cleanup_free char *text = record_json(r);
  return cmn_file_write_atomic(path, text, strlen(text), 0640, err);
}

static void record_drop_name(img_record *r, const char *name)
{
  for (size_t j = 0; j < r->n_names; j++)
    if (strcmp(r->names[j], name) == 0) {
      free(r->names[j]);
      r->names[j] = r->names[--r->n_names];
      return;
    }
}

int img_store_commit_record(img_lease *l, const img_record *in, img_record *out, cmn_error *err)
{
  img_store *s = l->s;
  if (out)
    memset(out, 0, sizeof(*out));
  if (in->n_names > MAX_NAMES)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "image: more than %d names", MAX_NAMES);
  img_record r;
  record_copy(&r, in);
  if (r.kind == IMG_KIND_OCI) {
    free(r.id);
    r.id = cmn_strdup(r.manifest.digest);
  } else {
    if (r.n_layers != 1)
      return img_record_free(&r),
             cmn_err_set(err, CMN_INVALID_ARGUMENT, "a file image has exactly one blob");
    free(r.id);
    r.id = cmn_strdup(r.layers[0].digest);
  }
  r.created = (int64_t)time(NULL);
  r.size = r.manifest.size + r.config.size;
  for (size_t i = 0; i < r.n_layers; i++)
    r.size += r.layers[i].size;
  pthread_mutex_lock(&s->mu);
  int ret = 0;
  for (size_t i = 0; i < r.n_layers + 2 && ret == 0; i++) {
    const char *dg = i < r.n_layers    ? r.layers[i].digest
                     : i == r.n_layers ? r.manifest.digest
                                       : r.config.digest;
    if (dg != NULL && !blob_exists_locked(s, dg, NULL))
      ret = cmn_err_set(err, CMN_INTERNAL, "image record: blob %s is not committed", dg);
  }
  img_record *old = ret == 0 ? find_locked(s, r.id) : NULL;
  if (old != NULL) { /* merge: keep the first created time, add names */
    r.created = old->created;
    for (size_t j = 0; j < old->n_names; j++) {
      bool dup = false;
      for (size_t k = 0; k < r.n_names && !dup; k++)
        dup = strcmp(r.names[k], old->names[j]) == 0;
      if (!dup && r.n_names < MAX_NAMES) {
        r.names = cmn_realloc(r.names, (r.n_names + 2) * sizeof(char *));
        r.names[r.n_names++] = cmn_strdup(old->names[j]);
      }
    }
  }
  if (ret == 0)
    ret = write_record_locked(s, &r, err);
  if (ret == 0) {
    /* The names move here: rewrite the records that had them. */
    for (size_t i = 0; i < s->n_recs; i++) {
      if (strcmp(s->recs[i].id, r.id) == 0)
        continue;
      bool changed = false;
      for (size_t k = 0; k < r.n_names; k++) {
        size_t before = s->recs[i].n_names;
        record_drop_name(&s->recs[i], r.names[k]);
        changed |= before != s->recs[i].n_names;
      }
      cmn_error e2 = {0};
      if (changed && write_record_locked(s, &s->recs[i], &e2) < 0)
        cmn_warn(NULL, "image-store", "rewrite of %s: %s", s->recs[i].id, e2.msg);
    }
    old = find_locked(s, r.id);
    if (old != NULL) {
      img_record_free(old);
      *old = r;
    } else {
      s->recs = cmn_realloc(s->recs, (s->n_recs + 1) * sizeof(img_record));
      s->recs[s->n_recs++] = r;
    }
    if (out)
      record_copy(out, find_locked(s, r.id));
  } else {
    img_record_free(&r);
  }
  pthread_mutex_unlock(&s->mu);
  return ret;
}

int img_store_get(img_store *s, const char *key, img_record *out, cmn_error *err)
{
  memset(out, 0, sizeof(*out));
  if (key == NULL || key[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "image: empty id or name");
  pthread_mutex_lock(&s->mu);
  img_record *r = find_locked(s, key);
  if (r != NULL)
    record_copy(out, r);
  pthread_mutex_unlock(&s->mu);
  if (r == NULL)
    return cmn_err_set(err, CMN_NOT_FOUND, "image '%.200s' not found", key);
  return 0;
}

int img_store_list(img_store *s, img_record **out, size_t *n, cmn_error *err)
{
  pthread_mutex_lock(&s->mu);
  *out = cmn_calloc(s->n_recs + 1, sizeof(img_record));
  *n = s->n_recs;
  for (size_t i = 0; i < s->n_recs; i++)
    record_copy(&(*out)[i], &s->recs[i]);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

static const struct pin *pin_find_locked(const img_store *s, const char *id)
{
  for (size_t i = 0; i < s->n_pins; i++)
    if (strcmp(s->pins[i].id, id) == 0)
      return &s->pins[i];
  return NULL;
}

int img_store_pin(img_store *s, const char *key, const char *who, char *id_out, cmn_error *err)
{
  if (key == NULL || key[0] == '\0' || who == NULL || who[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "image pin: empty image or user");
  pthread_mutex_lock(&s->mu);
  img_record *r = find_locked(s, key);
  if (r != NULL) {
    s->pins = cmn_realloc(s->pins, (s->n_pins + 1) * sizeof(struct pin));
    snprintf(s->pins[s->n_pins].id, sizeof(img_dstr), "%s", r->id);
    s->pins[s->n_pins++].who = cmn_strdup(who);
    if (id_out != NULL)
      snprintf(id_out, IMG_DIGEST_LEN + 1, "%s", r->id);
  }
  pthread_mutex_unlock(&s->mu);
  if (r == NULL)
    return cmn_err_set(err, CMN_NOT_FOUND, "image '%.200s' not found", key);
  return 0;
}

void img_store_unpin(img_store *s, const char *id, const char *who)
{
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n_pins; i++)
    if (strcmp(s->pins[i].id, id) == 0 && strcmp(s->pins[i].who, who) == 0) {
      free(s->pins[i].who);
      s->pins[i] = s->pins[--s->n_pins];
      break;
    }
  pthread_mutex_unlock(&s->mu);
}

static int in_use_error(const char *id, const char *who, cmn_error *err)
{
  char subject[100];
  snprintf(subject, sizeof(subject), "images/%s", id);
  cmn_err_set(err, CMN_FAILED_PRECONDITION, "image %s is in use%s%s; delete %s first", id,
              who[0] ? " by " : "", who, who[0] ? who : "its instances");
  return cmn_err_precondition(err, "IN_USE", subject);
}

int img_store_delete(img_store *s, const char *key, int64_t *freed, cmn_error *err)
{
  if (freed)
    *freed = 0;
  if (key == NULL || key[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "image: empty id or name");
  cleanup_free char *canon = NULL;
  img_ref ref;
  cmn_error perr = {0};
  if (img_ref_parse(key, &ref, &perr) == 0) {
    canon = img_ref_string(&ref);
    img_ref_free(&ref);
  }
  bool by_id = img_digest_valid(key) || is_hex64(key, strlen(key));
  img_dstr id = "";
  /* The manager's callback runs without the store's lock (it may take the
   * manager's, which is held around calls into the store). */
  if (s->in_use != NULL) {
    pthread_mutex_lock(&s->mu);
    img_record *r = find_locked(s, key);
    bool untag = r != NULL && !by_id && r->n_names > 1;
    if (r != NULL)
      snprintf(id, sizeof(id), "%s", r->id);
    pthread_mutex_unlock(&s->mu);
    char who[128] = "";
    if (id[0] != '\0' && !untag && s->in_use(s->in_use_opaque, id, who, sizeof(who)))
      return in_use_error(id, who, err);
  }
  pthread_mutex_lock(&s->mu);
  int ret = 0;
  img_record *r = find_locked(s, key);
  const struct pin *pin = r != NULL ? pin_find_locked(s, r->id) : NULL;
  if (r == NULL) {
    ret = cmn_err_set(err, CMN_NOT_FOUND, "image '%.200s' not found", key);
  } else if (!by_id && r->n_names > 1) {
    /* One of several names: untag only (the image stays under its others). */
    for (size_t j = 0; j < r->n_names; j++)
      if (strcmp(r->names[j], key) == 0 || (canon != NULL && strcmp(r->names[j], canon) == 0)) {
        record_drop_name(r, r->names[j]);
        break;
      }
    ret = write_record_locked(s, r, err);
  } else if (pin != NULL) {
    ret = in_use_error(r->id, pin->who, err);
  } else {
    cleanup_free char *path = record_path(s, r->id);
    if (unlink(path) != 0 && errno != ENOENT) {
      ret = cmn_err_errno(err, CMN_INTERNAL, errno, "remove %s", path);
    } else {
      cmn_fsync_path(s->records_dir, err);
      img_record_free(r);
      *r = s->recs[--s->n_recs];
      ret = gc_locked(s, freed, NULL, err);
    }
  }
  pthread_mutex_unlock(&s->mu);
  return ret;
}

void img_store_usage_get(img_store *s, img_store_usage *u)
{
  pthread_mutex_lock(&s->mu);
  u->used_bytes = s->used;
  u->reserved_bytes = s->reserved + s->pending;
  u->budget_bytes = s->budget;
  u->blobs = s->n_blobs;
  u->images = s->n_recs;
  pthread_mutex_unlock(&s->mu);
}

/* ---------------- layers for the rootfs builder ---------------- */

int img_store_image_layers(img_store *s, const char *key, img_image_layers *out, cmn_error *err)
{
  memset(out, 0, sizeof(*out));
  img_record r;
  if (img_store_get(s, key, &r, err) < 0)
    return -1;
  if (r.kind != IMG_KIND_OCI) {
    cmn_err_set(err, CMN_FAILED_PRECONDITION, "image %s is a %s file, not an OCI image", r.id,
                img_kind_name(r.kind));
    img_record_free(&r);
    return -1;
  }
  img_lease *l = img_lease_new(s);
  pthread_mutex_lock(&s->mu);
  /* Hold under the lock, then check the record still exists (a delete may have
   * run between the get and here). */
  for (size_t i = 0; i < r.n_layers; i++)
    hold_locked(l, r.layers[i].digest);
  hold_locked(l, r.config.digest);
  hold_locked(l, r.manifest.digest);
  bool still = find_locked(s, r.id) != NULL;
  pthread_mutex_unlock(&s->mu);
  if (!still) {
    cmn_err_set(err, CMN_NOT_FOUND, "image '%.200s' was deleted", key);
    img_lease_free(l);
    img_record_free(&r);
    return -1;
  }
  out->layers = cmn_calloc(r.n_layers + 1, sizeof(img_layer));
  for (size_t i = 0; i < r.n_layers; i++) {
    out->layers[i].path = img_store_blob_path(s, r.layers[i].digest);
    out->layers[i].media_type = cmn_strdup(r.layers[i].media_type);
    out->layers[i].digest = cmn_strdup(r.layers[i].digest);
  }
  out->n_layers = r.n_layers;
  out->config_path = img_store_blob_path(s, r.config.digest);
  out->config_digest = cmn_strdup(r.config.digest);
  out->image_id = cmn_strdup(r.id);
  out->lease = l;
  img_record_free(&r);
  return 0;
}

void img_image_layers_free(img_image_layers *l)
{
  for (size_t i = 0; i < l->n_layers; i++) {
    free((char *)l->layers[i].path);
    free((char *)l->layers[i].media_type);
    free((char *)l->layers[i].digest);
  }
  free(l->layers);
  free(l->config_path);
  free(l->config_digest);
  free(l->image_id);
  img_lease_free(l->lease);
  memset(l, 0, sizeof(*l));
}
