/* import.c: ImportImage (contracts in import.h). libarchive reads the upload
 * through a callback that pulls chunks from the caller; each tar entry streams
 * straight into a store blob writer (nothing is spooled), small metadata files
 * (index.json, oci-layout, manifest.json) are kept in memory. When the archive
 * ends, the image is resolved from them and its record committed. */
#include "agent/image/import.h"
#include "agent/image/digest.h"
#include "agent/image/manifest.h"
#include "agent/image/ref.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define META_MAX (4 << 20)
#define MAX_ENTRIES 4096
#define NAME_MAX_LEN 256

struct entry {
  char *path;
  char *link; /* symlink/hardlink target (archive-relative), or NULL */
  char digest[IMG_DIGEST_LEN + 1];
  int64_t size;
};

typedef struct imp {
  img_store *s;
  img_lease *l;
  const img_import_opts *o;
  int64_t max;
  int64_t total;
  cmn_error rerr;
  bool rerr_set;
  char *index_json, *manifest_json;
  size_t index_len, manifest_len;
  bool oci_layout;
  struct entry *ents;
  size_t n_ents;
} imp;

static la_ssize_t imp_read(struct archive *a, void *ud, const void **buf)
{
  imp *im = ud;
  size_t len = 0;
  int r = im->o->read(im->o->opaque, buf, &len, &im->rerr);
  if (r < 0) {
    im->rerr_set = true;
    archive_set_error(a, EIO, "upload read failed");
    return -1;
  }
  if (r == 0)
    return 0;
  im->total += (int64_t)len;
  if (im->total > im->max) {
    cmn_err_set(&im->rerr, CMN_RESOURCE_EXHAUSTED, "upload larger than the limit of %lld bytes",
                (long long)im->max);
    im->rerr_set = true;
    archive_set_error(a, EFBIG, "upload too large");
    return -1;
  }
  return (la_ssize_t)len;
}

/* Normalizes an entry path lexically: drops "." and empty components,
 * resolves ".." against the components before it; refuses absolute paths and
 * any ".." that would climb above the archive's root. Returns NULL (err set)
 * on refusal. */
static char *norm_path(const char *p, cmn_error *err)
{
  if (p == NULL)
    return cmn_strdup("");
  if (p[0] == '/') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "archive entry '%.200s' has an absolute path", p);
    return NULL;
  }
  char *out = cmn_malloc(strlen(p) + 1);
  size_t o = 0;
  for (const char *c = p; *c != '\0';) {
    size_t n = strcspn(c, "/");
    if (n == 2 && c[0] == '.' && c[1] == '.') {
      if (o == 0) {
        free(out);
        cmn_err_set(err, CMN_INVALID_ARGUMENT, "archive entry '%.200s' leaves the archive (..)", p);
        return NULL;
      }
      while (o > 0 && out[o - 1] != '/')
        o--;
      if (o > 0)
        o--; /* the slash */
    } else if (!(n == 0 || (n == 1 && c[0] == '.'))) {
      if (o > 0)
        out[o++] = '/';
      memcpy(out + o, c, n);
      o += n;
    }
    c += n;
    if (*c == '/')
      c++;
  }
  out[o] = '\0';
  return out;
}

/* Reads the current entry's next data block: 1 with *b, *sz, *off set, 0 at
 * the entry's end, < 0 when the archive cannot be read (the reader's own error
 * when it set one, else INVALID_ARGUMENT "reading <name>: ..." or, with name
 * NULL, "archive: ..."). */
static int next_block(imp *im, struct archive *a, const void **b, size_t *sz, la_int64_t *off,
                      const char *name, cmn_error *err)
{
  int r = archive_read_data_block(a, b, sz, off);
  if (r == ARCHIVE_EOF)
    return 0;
  if (r >= ARCHIVE_WARN)
    return 1;
  if (im->rerr_set) {
    *err = im->rerr;
    return -1;
  }
  if (name != NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "reading %s: %s", name, archive_error_string(a));
  return cmn_err_set(err, CMN_INVALID_ARGUMENT, "archive: %s", archive_error_string(a));
}

/* Reads the current entry's data into memory (at most META_MAX). */
static int read_meta(imp *im, struct archive *a, char **out, size_t *len, const char *name,
                     cmn_error *err)
{
  char *buf = NULL;
  size_t n = 0;
  for (;;) {
    const void *b;
    size_t sz;
    la_int64_t off;
    int r = next_block(im, a, &b, &sz, &off, name, err);
    if (r == 0)
      break;
    if (r < 0) {
      free(buf);
      return -1;
    }
    if ((size_t)off + sz > META_MAX) {
      free(buf);
      return cmn_err_set(err, CMN_RESOURCE_EXHAUSTED, "%s is larger than %d bytes", name, META_MAX);
    }
    if ((size_t)off + sz > n) {
      buf = cmn_realloc(buf, (size_t)off + sz + 1);
      memset(buf + n, 0, (size_t)off + sz - n);
      n = (size_t)off + sz;
    }
    memcpy(buf + off, b, sz);
  }
  buf = cmn_realloc(buf, n + 1);
  buf[n] = '\0';
  free(*out);
  *out = buf;
  *len = n;
  return 0;
}

/* Streams the current entry into a blob; digest NULL = compute. */
static int read_blob(imp *im, struct archive *a, const char *digest, int64_t size,
                     char got[IMG_DIGEST_LEN + 1], int64_t *written, cmn_error *err)
{
  img_blob_writer *w = NULL;
  int rc = img_blob_begin(im->l, digest, size, im->max, NULL, NULL, &w, err);
  if (rc < 0)
    return -1;
  if (rc == 1) { /* already in the store: skip the bytes */
    snprintf(got, IMG_DIGEST_LEN + 1, "%s", digest);
    *written = size;
    archive_read_data_skip(a);
    return 0;
  }
  int64_t off_expected = 0;
  for (;;) {
    const void *b;
    size_t sz;
    la_int64_t off;
    int r = next_block(im, a, &b, &sz, &off, NULL, err);
    if (r == 0)
      break;
    if (r < 0) {
      img_blob_abort(w);
      return -1;
    }
    if (off != off_expected) { /* a sparse entry: write the hole as zeros */
      static const char zeros[4096];
      while (off_expected < off) {
        size_t k = (size_t)(off - off_expected) < sizeof(zeros) ? (size_t)(off - off_expected)
                                                                : sizeof(zeros);
        if (img_blob_write(w, zeros, k, err) < 0) {
          img_blob_abort(w);
          return -1;
        }
        off_expected += (int64_t)k;
      }
    }
    if (img_blob_write(w, b, sz, err) < 0) {
      img_blob_abort(w);
      return -1;
    }
    off_expected += (int64_t)sz;
  }
  *written = img_blob_written(w);
  return img_blob_commit(w, got, err);
}

static bool is_blob_path(const char *p, char digest[IMG_DIGEST_LEN + 1])
{
  if (strncmp(p, "blobs/sha256/", 13) != 0)
    return false;
  snprintf(digest, IMG_DIGEST_LEN + 1, "sha256:%.64s", p + 13);
  return strlen(p + 13) == IMG_DIGEST_HEX_LEN && img_digest_valid(digest);
}

static int read_archive(imp *im, cmn_error *err)
{
  struct archive *a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  archive_read_support_format_gnutar(a);
  int ret = 0;
  if (archive_read_open(a, im, NULL, imp_read, NULL) != ARCHIVE_OK) {
    ret = im->rerr_set ? (*err = im->rerr, -1)
                       : cmn_err_set(err, CMN_INVALID_ARGUMENT, "upload is not a tar: %s",
                                     archive_error_string(a));
    archive_read_free(a);
    return ret;
  }
  struct archive_entry *e;
  for (;;) {
    int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF)
      break;
    if (r < ARCHIVE_WARN) {
      ret = im->rerr_set ? (*err = im->rerr, -1)
                         : cmn_err_set(err, CMN_INVALID_ARGUMENT, "upload is not a valid tar: %s",
                                       archive_error_string(a));
      break;
    }
    cleanup_free char *path = norm_path(archive_entry_pathname(e), err);
    if (path == NULL) {
      ret = -1;
      break;
    }
    mode_t type = archive_entry_filetype(e);
    const char *hl = archive_entry_hardlink(e);
    if (hl != NULL || type == AE_IFLNK) {
      /* Links only matter as aliases of layer files in docker-archives. */
      cleanup_free char *target = NULL;
      if (hl != NULL) {
        target = norm_path(hl, err);
      } else {
        const char *t = archive_entry_symlink(e);
        if (t == NULL || t[0] == '/') {
          continue; /* absolute symlinks are ignored: never followed */
        }
        const char *slash = strrchr(path, '/');
        cleanup_free char *joined =
            slash ? cmn_asprintf("%.*s/%s", (int)(slash - path), path, t) : cmn_strdup(t);
        target = norm_path(joined, err);
      }
      if (target == NULL) {
        ret = -1;
        break;
      }
      if (im->n_ents >= MAX_ENTRIES) {
        ret = cmn_err_set(err, CMN_RESOURCE_EXHAUSTED, "more than %d files", MAX_ENTRIES);
        break;
      }
      im->ents = cmn_realloc(im->ents, (im->n_ents + 1) * sizeof(struct entry));
      im->ents[im->n_ents++] = (struct entry){.path = steal_ptr(path), .link = steal_ptr(target)};
      continue;
    }
    if (type != AE_IFREG)
      continue;
    char dg[IMG_DIGEST_LEN + 1];
    if (strcmp(path, "index.json") == 0) {
      ret = read_meta(im, a, &im->index_json, &im->index_len, "index.json", err);
    } else if (strcmp(path, "manifest.json") == 0) {
      ret = read_meta(im, a, &im->manifest_json, &im->manifest_len, "manifest.json", err);
    } else if (strcmp(path, "oci-layout") == 0) {
      im->oci_layout = true;
      archive_read_data_skip(a);
    } else if (strcmp(path, "repositories") == 0) {
      archive_read_data_skip(a);
    } else {
      bool named = is_blob_path(path, dg);
      int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
      char got[IMG_DIGEST_LEN + 1];
      int64_t written = 0;
      if (im->n_ents >= MAX_ENTRIES) {
        ret = cmn_err_set(err, CMN_RESOURCE_EXHAUSTED, "more than %d files", MAX_ENTRIES);
        break;
      }
      ret = read_blob(im, a, named ? dg : NULL, size, got, &written, err);
      if (ret < 0) {
        cmn_err_prefix(err, "archive entry %.200s", path);
        break;
      }
      im->ents = cmn_realloc(im->ents, (im->n_ents + 1) * sizeof(struct entry));
      struct entry *en = &im->ents[im->n_ents++];
      *en = (struct entry){.path = steal_ptr(path), .size = written};
      memcpy(en->digest, got, sizeof(got));
    }
    if (ret < 0)
      break;
  }
  archive_read_free(a);
  return ret;
}

/* Finds a file of the archive by path, following links (bounded). */
static const struct entry *find_entry(const imp *im, const char *path)
{
  cleanup_free char *p = cmn_strdup(path);
  for (int hops = 0; hops < 8; hops++) {
    const struct entry *hit = NULL;
    for (size_t i = 0; i < im->n_ents && hit == NULL; i++)
      if (strcmp(im->ents[i].path, p) == 0)
        hit = &im->ents[i];
    if (hit == NULL || hit->link == NULL)
      return hit;
    free(p);
    p = cmn_strdup(hit->link);
  }
  return NULL;
}

/* Reads a committed blob held by the lease into memory (at most max). */
static int read_blob_file(imp *im, const char *digest, size_t max, char **out, size_t *len,
                          cmn_error *err)
{
  if (!img_store_has_blob(im->s, digest))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "blob %s is not in the archive", digest);
  img_lease_hold(im->l, digest);
  cleanup_free char *p = img_store_blob_path(im->s, digest);
  return cmn_file_read(p, max, out, len, err);
}

static char *name_of(const char *given, const char *fallback)
{
  const char *n = given && given[0] ? given : fallback;
  if (n == NULL || strlen(n) > NAME_MAX_LEN)
    return NULL;
  for (const char *c = n; *c; c++)
    if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
      return NULL;
  img_ref r;
  cmn_error e = {0};
  if (img_ref_parse(n, &r, &e) == 0) {
    char *s = img_ref_string(&r);
    img_ref_free(&r);
    return s;
  }
  return cmn_strdup(n);
}

static int finish_oci(imp *im, img_record *rec, char **refname, cmn_error *err)
{
  cleanup_free char *pick = NULL;
  if (img_index_pick(im->index_json, im->index_len, CMN_INVALID_ARGUMENT, im->o->name, &pick,
                     refname, err) < 0)
    return cmn_err_prefix(err, "index.json");
  cleanup_free char *body = NULL;
  size_t len = 0;
  if (read_blob_file(im, pick, IMG_MANIFEST_MAX, &body, &len, err) < 0)
    return cmn_err_prefix(err, "OCI layout");
  if (img_manifest_is_index(body, len, NULL)) { /* nested index: one more level */
    cleanup_free char *outer = steal_ptr(pick);
    if (img_index_pick(body, len, CMN_INVALID_ARGUMENT, NULL, &pick, NULL, err) < 0)
      return cmn_err_prefix(err, "index %s", outer);
    free(body);
    body = NULL;
    if (read_blob_file(im, pick, IMG_MANIFEST_MAX, &body, &len, err) < 0)
      return cmn_err_prefix(err, "OCI layout");
  }
  int64_t max = im->max;
  if (img_manifest_parse(body, len, pick, NULL, max, CMN_INVALID_ARGUMENT, rec, err) < 0)
    return cmn_err_prefix(err, "OCI layout");
  return 0;
}

static const char *layer_media_of(const char *path)
{
  unsigned char m[4] = {0};
  cleanup_close int fd = cmn_open(path, O_RDONLY, 0);
  if (fd >= 0 && read(fd, m, 4) == 4) {
    if (m[0] == 0x1f && m[1] == 0x8b)
      return "application/vnd.oci.image.layer.v1.tar+gzip";
    if (m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
      return "application/vnd.oci.image.layer.v1.tar+zstd";
  }
  return "application/vnd.oci.image.layer.v1.tar";
}

/* docker-archive: manifest.json -> config + layers; synthesizes an OCI
 * manifest stored as a blob. */
static int finish_docker(imp *im, img_record *rec, char **refname, cmn_error *err)
{
  cJSON *m = cJSON_ParseWithLength(im->manifest_json, im->manifest_len);
  const cJSON *first = cJSON_IsArray(m) ? m->child : NULL;
  const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(first, "Config");
  const cJSON *layers = cJSON_GetObjectItemCaseSensitive(first, "Layers");
  const cJSON *tags = cJSON_GetObjectItemCaseSensitive(first, "RepoTags");
  int ret = -1;
  cJSON *conf = NULL, *out = NULL;
  cleanup_free char *conf_text = NULL;
  cleanup_free char *cpath = NULL;
  cleanup_free char *text = NULL;
  if (!cJSON_IsString(cfg) || !cJSON_IsArray(layers) ||
      cJSON_GetArraySize(layers) > IMG_MAX_LAYERS) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "docker-archive manifest.json: needs [{\"Config\": ..., \"Layers\": [...]}]");
    goto out;
  }
  if (cJSON_IsArray(tags) && cJSON_IsString(tags->child))
    *refname = cmn_strdup(tags->child->valuestring);
  cpath = norm_path(cfg->valuestring, err);
  const struct entry *ce = cpath ? find_entry(im, cpath) : NULL;
  if (ce == NULL || ce->link != NULL) {
    if (cpath != NULL)
      cmn_err_set(err, CMN_INVALID_ARGUMENT, "docker-archive: config %.200s is not in the archive",
                  cfg->valuestring);
    goto out;
  }
  size_t clen = 0;
  if (read_blob_file(im, ce->digest, IMG_CONFIG_MAX, &conf_text, &clen, err) < 0)
    goto out;
  conf = cJSON_ParseWithLength(conf_text, clen);
  const cJSON *diff = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(conf, "rootfs"), "diff_ids");
  if (!cJSON_IsArray(diff) || cJSON_GetArraySize(diff) != cJSON_GetArraySize(layers)) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "docker-archive: config rootfs.diff_ids does not list one id per layer");
    goto out;
  }
  rec->kind = IMG_KIND_OCI;
  rec->config = (img_desc){cmn_strdup(ce->digest), cmn_strdup(IMG_MT_OCI_CONFIG), ce->size};
  rec->layers = cmn_calloc((size_t)cJSON_GetArraySize(layers) + 1, sizeof(img_desc));
  out = cJSON_CreateObject();
  cJSON_AddNumberToObject(out, "schemaVersion", 2);
  cJSON_AddStringToObject(out, "mediaType", IMG_MT_OCI_MANIFEST);
  cJSON *oc = cJSON_AddObjectToObject(out, "config");
  cJSON_AddStringToObject(oc, "mediaType", IMG_MT_OCI_CONFIG);
  cJSON_AddStringToObject(oc, "digest", ce->digest);
  cJSON_AddNumberToObject(oc, "size", (double)ce->size);
  cJSON *ol = cJSON_AddArrayToObject(out, "layers");
  const cJSON *d = diff->child;
  for (const cJSON *l = layers->child; l != NULL; l = l->next, d = d->next) {
    cleanup_free char *lp = cJSON_IsString(l) ? norm_path(l->valuestring, err) : NULL;
    const struct entry *le = lp ? find_entry(im, lp) : NULL;
    if (le == NULL || le->link != NULL) {
      if (!cJSON_IsString(l) || lp != NULL)
        cmn_err_set(err, CMN_INVALID_ARGUMENT,
                    "docker-archive: layer %.200s is not in the "
                    "archive",
                    cJSON_IsString(l) ? l->valuestring : "(not a string)");
      goto out;
    }
    img_lease_hold(im->l, le->digest);
    cleanup_free char *bp = img_store_blob_path(im->s, le->digest);
    const char *mt = layer_media_of(bp);
    if (strcmp(mt, "application/vnd.oci.image.layer.v1.tar") == 0 &&
        (!cJSON_IsString(d) || strcmp(d->valuestring, le->digest) != 0)) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT,
                  "docker-archive: layer %.200s has digest %s but the config's diff_id is %.80s",
                  l->valuestring, le->digest, cJSON_IsString(d) ? d->valuestring : "?");
      goto out;
    }
    rec->layers[rec->n_layers++] = (img_desc){cmn_strdup(le->digest), cmn_strdup(mt), le->size};
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "mediaType", mt);
    cJSON_AddStringToObject(x, "digest", le->digest);
    cJSON_AddNumberToObject(x, "size", (double)le->size);
    cJSON_AddItemToArray(ol, x);
  }
  text = cJSON_PrintUnformatted(out);
  img_blob_writer *w = NULL;
  char mdg[IMG_DIGEST_LEN + 1];
  if (img_blob_begin(im->l, NULL, -1, 0, NULL, NULL, &w, err) < 0)
    goto out;
  if (img_blob_write(w, text, strlen(text), err) < 0) {
    img_blob_abort(w);
    goto out;
  }
  if (img_blob_commit(w, mdg, err) < 0)
    goto out;
  rec->manifest =
      (img_desc){cmn_strdup(mdg), cmn_strdup(IMG_MT_OCI_MANIFEST), (int64_t)strlen(text)};
  ret = 0;
out:
  cJSON_Delete(m);
  cJSON_Delete(conf);
  cJSON_Delete(out);
  return ret;
}

static int import_file(imp *im, img_record *rec, cmn_error *err)
{
  img_blob_writer *w = NULL;
  if (img_blob_begin(im->l, NULL, -1, im->max, NULL, NULL, &w, err) < 0)
    return -1;
  for (;;) {
    const void *buf;
    size_t len = 0;
    int r = im->o->read(im->o->opaque, &buf, &len, err);
    if (r < 0) {
      img_blob_abort(w);
      return -1;
    }
    if (r == 0)
      break;
    if (img_blob_write(w, buf, len, err) < 0) {
      img_blob_abort(w);
      return -1;
    }
  }
  int64_t size = img_blob_written(w);
  if (size == 0) {
    img_blob_abort(w);
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "empty upload");
  }
  char dg[IMG_DIGEST_LEN + 1];
  if (img_blob_commit(w, dg, err) < 0)
    return -1;
  rec->kind = im->o->kind;
  rec->layers = cmn_calloc(2, sizeof(img_desc));
  rec->layers[0] = (img_desc){cmn_strdup(dg), cmn_strdup("application/octet-stream"), size};
  rec->n_layers = 1;
  return 0;
}

int img_import(img_store *s, const img_import_opts *o, img_record *out, cmn_error *err)
{
  if (out)
    memset(out, 0, sizeof(*out));
  if (o->kind < IMG_KIND_OCI || o->kind > IMG_KIND_DISK)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "import: unknown kind %d", o->kind);
  cleanup_free char *given = NULL;
  if (o->name != NULL && o->name[0] != '\0' && (given = name_of(o->name, NULL)) == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "import: name must be 1-%d printable ASCII bytes without spaces",
                       NAME_MAX_LEN),
           cmn_err_field(err, "name");
  imp im = {.s = s, .o = o, .max = o->max_bytes > 0 ? o->max_bytes : (int64_t)64 << 30};
  im.l = img_lease_new(s);
  img_record rec = {0};
  cleanup_free char *refname = NULL;
  int ret;
  if (o->kind == IMG_KIND_OCI) {
    ret = read_archive(&im, err);
    if (ret == 0) {
      if (im.index_json != NULL)
        ret = finish_oci(&im, &rec, &refname, err);
      else if (im.manifest_json != NULL)
        ret = finish_docker(&im, &rec, &refname, err);
      else
        ret = cmn_err_set(err, CMN_INVALID_ARGUMENT,
                          "upload is neither an OCI image layout (index.json) nor a "
                          "docker-archive (manifest.json)");
    }
    for (size_t i = 0; ret == 0 && i < rec.n_layers + 2; i++) {
      const char *dg = i < rec.n_layers    ? rec.layers[i].digest
                       : i == rec.n_layers ? rec.config.digest
                                           : rec.manifest.digest;
      if (!img_store_has_blob(s, dg))
        ret = cmn_err_set(err, CMN_INVALID_ARGUMENT, "blob %s is not in the archive", dg);
      else
        img_lease_hold(im.l, dg);
    }
  } else {
    ret = import_file(&im, &rec, err);
  }
  if (ret == 0) {
    cleanup_free char *name = given ? steal_ptr(given) : name_of(refname, NULL);
    if (name != NULL) {
      rec.names = cmn_calloc(2, sizeof(char *));
      rec.names[rec.n_names++] = steal_ptr(name);
    }
    ret = img_store_commit_record(im.l, &rec, out, err);
  }
  img_record_free(&rec);
  img_lease_free(im.l);
  /* Whatever the archive held beyond the image (other platforms, stray files)
   * and, on failure, everything it brought, goes now. */
  cmn_error gerr = {0};
  if (img_store_gc(s, NULL, NULL, &gerr) < 0)
    cmn_warn(NULL, "image-import", "gc after an import: %s", gerr.msg);
  for (size_t i = 0; i < im.n_ents; i++) {
    free(im.ents[i].path);
    free(im.ents[i].link);
  }
  free(im.ents);
  free(im.index_json);
  free(im.manifest_json);
  return ret < 0 ? cmn_err_prefix(err, "import") : 0;
}

struct fd_src {
  int fd;
  char buf[1 << 16];
};

static int fd_read(void *opaque, const void **buf, size_t *len, cmn_error *err)
{
  struct fd_src *f = opaque;
  for (;;) {
    ssize_t n = read(f->fd, f->buf, sizeof(f->buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return cmn_err_errno(err, CMN_INTERNAL, errno, "read upload");
    *buf = f->buf;
    *len = (size_t)n;
    return n > 0 ? 1 : 0;
  }
}

int img_import_fd(img_store *s, int kind, const char *name, int64_t max_bytes, int fd,
                  img_record *out, cmn_error *err)
{
  struct fd_src *f = cmn_calloc(1, sizeof(*f));
  f->fd = fd;
  img_import_opts o = {
      .kind = kind, .name = name, .max_bytes = max_bytes, .read = fd_read, .opaque = f};
  int r = img_import(s, &o, out, err);
  free(f);
  return r;
}
