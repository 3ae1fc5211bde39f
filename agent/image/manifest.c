/* manifest.c: image manifest and index parsing (see manifest.h). */
#include "agent/image/manifest.h"
#include "agent/image/digest.h"
#include "common/mem.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *json_str(const cJSON *o, const char *k)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool media_is_index(const char *mt)
{
  return mt && (strcmp(mt, IMG_MT_OCI_INDEX) == 0 || strcmp(mt, IMG_MT_DOCKER_LIST) == 0);
}

static bool media_is_manifest(const char *mt)
{
  return mt && (strcmp(mt, IMG_MT_OCI_MANIFEST) == 0 || strcmp(mt, IMG_MT_DOCKER_MANIFEST) == 0);
}

bool img_manifest_is_index(const char *body, size_t len, const char *ctype)
{
  cJSON *o = cJSON_ParseWithLength(body, len);
  const char *mt = json_str(o, "mediaType");
  bool r = mt      ? media_is_index(mt)
           : ctype ? media_is_index(ctype)
                   : cJSON_GetObjectItemCaseSensitive(o, "manifests") != NULL;
  cJSON_Delete(o);
  return r;
}

#define REF_NAME_KEY "org.opencontainers.image.ref.name"

/* Whether an index entry's ref name annotation names want: equal to it, or to
 * its tag (the part after the last ':' that follows the last '/'). */
static bool ref_matches(const cJSON *m, const char *want)
{
  const char *rn = json_str(cJSON_GetObjectItemCaseSensitive(m, "annotations"), REF_NAME_KEY);
  if (rn == NULL || want == NULL)
    return false;
  if (strcmp(rn, want) == 0)
    return true;
  const char *slash = strrchr(want, '/');
  const char *colon = strrchr(slash ? slash : want, ':');
  return colon != NULL && strcmp(rn, colon + 1) == 0;
}

int img_index_pick(const char *body, size_t len, int bad_code, const char *want_ref, char **digest,
                   char **ref_name, cmn_error *err)
{
  *digest = NULL;
  if (ref_name)
    *ref_name = NULL;
  cJSON *o = cJSON_ParseWithLength(body, len);
  const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "manifests");
  if (!cJSON_IsArray(ms)) {
    cJSON_Delete(o);
    return cmn_err_set(err, bad_code, "index without a manifests array");
  }
  bool filter = false;
  for (const cJSON *m = ms->child; m != NULL && !filter; m = m->next)
    filter = ref_matches(m, want_ref);
  char seen[512] = "";
  size_t off = 0;
  const cJSON *pick = NULL, *bare = NULL;
  int n_bare = 0;
  for (const cJSON *m = ms->child; m != NULL && pick == NULL; m = m->next) {
    if (filter && !ref_matches(m, want_ref))
      continue;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(m, "platform");
    const char *os = json_str(p, "os");
    const char *arch = json_str(p, "architecture");
    if (os && arch && strcmp(os, "linux") == 0 && strcmp(arch, "amd64") == 0) {
      pick = m;
      break;
    }
    if (p == NULL) { /* no platform (OCI layouts): fine if it is the only one */
      bare = m;
      n_bare++;
    }
    if (off < sizeof(seen) - 80) {
      const char *rn = json_str(cJSON_GetObjectItemCaseSensitive(m, "annotations"), REF_NAME_KEY);
      int k = p ? snprintf(seen + off, sizeof(seen) - off, "%s%.24s/%.24s", off ? ", " : "",
                           os ? os : "?", arch ? arch : "?")
                : snprintf(seen + off, sizeof(seen) - off, "%s%.40s (no platform)", off ? ", " : "",
                           rn ? rn : "unnamed");
      if (k > 0)
        off += (size_t)k;
    }
  }
  if (pick == NULL && n_bare == 1)
    pick = bare;
  if (pick == NULL) {
    cJSON_Delete(o);
    if (n_bare > 1)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "the index holds several images without a platform (%s); name the "
                         "one to take by its ref name",
                         seen);
    return cmn_err_set(err, CMN_NOT_FOUND, "no linux/amd64 manifest in the index; it has: %s",
                       off ? seen : "(nothing)");
  }
  const char *dg = json_str(pick, "digest");
  if (img_digest_check(dg, "index entry", err) < 0) {
    err->code = bad_code;
    cJSON_Delete(o);
    return -1;
  }
  *digest = cmn_strdup(dg);
  if (ref_name) {
    const char *rn = json_str(cJSON_GetObjectItemCaseSensitive(pick, "annotations"), REF_NAME_KEY);
    *ref_name = rn ? cmn_strdup(rn) : NULL;
  }
  cJSON_Delete(o);
  return 0;
}

static int parse_desc(const cJSON *o, img_desc *d, int64_t max, const char *what, int bad_code,
                      cmn_error *err)
{
  const cJSON *sz = cJSON_GetObjectItemCaseSensitive(o, "size");
  const char *dg = json_str(o, "digest");
  const char *mt = json_str(o, "mediaType");
  if (!cJSON_IsObject(o) || dg == NULL || !cJSON_IsNumber(sz))
    return cmn_err_set(err, bad_code, "%s descriptor lacks digest or size", what);
  if (img_digest_check(dg, what, err) < 0) {
    err->code = bad_code;
    return -1;
  }
  if (sz->valuedouble < 0 || sz->valuedouble > (double)max ||
      fabs(modf(sz->valuedouble, &(double){0})) > 0)
    return cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                       "%s %s has size %.0f: over the limit of %lld bytes", what, dg,
                       sz->valuedouble, (long long)max);
  d->digest = cmn_strdup(dg);
  d->media_type = cmn_strdup(mt ? mt : "");
  d->size = (int64_t)sz->valuedouble;
  return 0;
}

static bool layer_media_ok(const char *mt)
{
  static const char *const ok[] = {
      "application/vnd.oci.image.layer.v1.tar",
      "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.diff.tar",
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
    if (strcmp(mt, ok[i]) == 0)
      return true;
  return false;
}

int img_manifest_parse(const char *body, size_t len, const char *digest, const char *ctype,
                       int64_t blob_max, int bad_code, img_record *rec, cmn_error *err)
{
  memset(rec, 0, sizeof(*rec));
  cJSON *m = cJSON_ParseWithLength(body, len);
  if (!cJSON_IsObject(m)) {
    cJSON_Delete(m);
    return cmn_err_set(err, bad_code, "manifest %s is not a JSON object", digest);
  }
  int ret = -1;
  const char *mt = json_str(m, "mediaType");
  if (mt == NULL)
    mt = ctype;
  const cJSON *sv = cJSON_GetObjectItemCaseSensitive(m, "schemaVersion");
  const cJSON *layers = cJSON_GetObjectItemCaseSensitive(m, "layers");
  if (!cJSON_IsNumber(sv) || sv->valueint != 2 || !cJSON_IsArray(layers) ||
      (mt != NULL && !media_is_manifest(mt))) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "%s is not an image manifest (schemaVersion 2, OCI or Docker; media type %s)",
                digest, mt ? mt : "none");
    goto out;
  }
  int nl = cJSON_GetArraySize(layers);
  if (nl > IMG_MAX_LAYERS) {
    cmn_err_set(err, CMN_RESOURCE_EXHAUSTED, "manifest has %d layers (max %d)", nl, IMG_MAX_LAYERS);
    goto out;
  }
  rec->kind = IMG_KIND_OCI;
  rec->manifest.digest = cmn_strdup(digest);
  rec->manifest.media_type = cmn_strdup(mt ? mt : IMG_MT_OCI_MANIFEST);
  rec->manifest.size = (int64_t)len;
  if (parse_desc(cJSON_GetObjectItemCaseSensitive(m, "config"), &rec->config, IMG_CONFIG_MAX,
                 "config", bad_code, err) < 0)
    goto out;
  rec->layers = cmn_calloc((size_t)nl + 1, sizeof(img_desc));
  for (const cJSON *l = layers->child; l != NULL; l = l->next) {
    if (parse_desc(l, &rec->layers[rec->n_layers], blob_max, "layer", bad_code, err) < 0)
      goto out;
    if (!layer_media_ok(rec->layers[rec->n_layers++].media_type)) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT,
                  "layer media type '%.100s' is not a tar layer ember can apply",
                  rec->layers[rec->n_layers - 1].media_type);
      goto out;
    }
  }
  ret = 0;
out:
  cJSON_Delete(m);
  if (ret < 0)
    img_record_free(rec);
  return ret;
}
