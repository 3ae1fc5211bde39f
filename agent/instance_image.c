/* instance_image.c: instances booted from an image of the store; the
 * contract is in instance_image.h. */
#include "agent/instance_image.h"
#include "agent/instance_net.h"
#include "agent/image/bootcfg.h"
#include "agent/image/imgconfig.h"
#include "agent/image/rootfs.h"
#include "agent/image/store.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool ii_set(const char *s) { return s != NULL && s[0] != '\0'; }

bool agent_image_spec_set(const agent_image_spec *s) { return s != NULL && ii_set(s->ref); }

static void ii_strv_free(char **v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static char **ii_strv_copy(char *const *v, size_t n)
{
  char **out = cmn_calloc(n + 1, sizeof *out);
  for (size_t i = 0; i < n; i++)
    out[i] = cmn_strdup(v[i]);
  return out;
}

void agent_image_spec_free(agent_image_spec *s)
{
  if (s == NULL)
    return;
  free(s->ref);
  free(s->id);
  ii_strv_free(s->entrypoint, s->n_entrypoint);
  ii_strv_free(s->args, s->n_args);
  ii_strv_free(s->env, s->n_env);
  free(s->workdir);
  memset(s, 0, sizeof *s);
}

void agent_image_spec_copy(agent_image_spec *dst, const agent_image_spec *src)
{
  memset(dst, 0, sizeof *dst);
  if (src == NULL)
    return;
  dst->ref = src->ref ? cmn_strdup(src->ref) : NULL;
  dst->id = src->id ? cmn_strdup(src->id) : NULL;
  dst->entrypoint = ii_strv_copy(src->entrypoint, src->n_entrypoint);
  dst->n_entrypoint = src->n_entrypoint;
  dst->args = ii_strv_copy(src->args, src->n_args);
  dst->n_args = src->n_args;
  dst->env = ii_strv_copy(src->env, src->n_env);
  dst->n_env = src->n_env;
  dst->workdir = src->workdir ? cmn_strdup(src->workdir) : NULL;
}

static bool ii_str_eq(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

static bool ii_strv_eq(char *const *a, size_t na, char *const *b, size_t nb)
{
  if (na != nb)
    return false;
  for (size_t i = 0; i < na; i++)
    if (strcmp(a[i], b[i]) != 0)
      return false;
  return true;
}

bool agent_image_spec_eq(const agent_image_spec *a, const agent_image_spec *b)
{
  agent_image_spec z = {0};
  if (a == NULL)
    a = &z;
  if (b == NULL)
    b = &z;
  return ii_str_eq(a->ref, b->ref) &&
         ii_strv_eq(a->entrypoint, a->n_entrypoint, b->entrypoint, b->n_entrypoint) &&
         ii_strv_eq(a->args, a->n_args, b->args, b->n_args) &&
         ii_strv_eq(a->env, a->n_env, b->env, b->n_env) && ii_str_eq(a->workdir, b->workdir);
}

static void ii_json_strv(cJSON *o, const char *key, char *const *v, size_t n)
{
  cJSON *a = cJSON_AddArrayToObject(o, key);
  for (size_t i = 0; i < n; i++)
    cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
}

void agent_image_spec_to_json(cJSON *parent, const agent_image_spec *s)
{
  if (!agent_image_spec_set(s))
    return;
  cJSON *o = cJSON_AddObjectToObject(parent, "image");
  cJSON_AddStringToObject(o, "ref", s->ref);
  if (s->id)
    cJSON_AddStringToObject(o, "id", s->id);
  ii_json_strv(o, "entrypoint", s->entrypoint, s->n_entrypoint);
  ii_json_strv(o, "args", s->args, s->n_args);
  ii_json_strv(o, "env", s->env, s->n_env);
  if (ii_set(s->workdir))
    cJSON_AddStringToObject(o, "workdir", s->workdir);
}

static char **ii_strv_from_json(const cJSON *o, const char *key, size_t *n)
{
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
  int len = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
  char **v = cmn_calloc((size_t)len + 1, sizeof *v);
  size_t k = 0;
  for (int i = 0; i < len; i++) {
    const cJSON *e = cJSON_GetArrayItem(a, i);
    if (cJSON_IsString(e))
      v[k++] = cmn_strdup(e->valuestring);
  }
  *n = k;
  return v;
}

static char *ii_str_from_json(const cJSON *o, const char *key)
{
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(e) ? cmn_strdup(e->valuestring) : NULL;
}

void agent_image_spec_from_json(const cJSON *parent, agent_image_spec *s)
{
  memset(s, 0, sizeof *s);
  const cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, "image");
  if (!cJSON_IsObject(o))
    return;
  s->ref = ii_str_from_json(o, "ref");
  s->id = ii_str_from_json(o, "id");
  s->entrypoint = ii_strv_from_json(o, "entrypoint", &s->n_entrypoint);
  s->args = ii_strv_from_json(o, "args", &s->n_args);
  s->env = ii_strv_from_json(o, "env", &s->n_env);
  s->workdir = ii_str_from_json(o, "workdir");
}

/* The host's TSC rate in kHz (the first "cpu MHz" of /proc/cpuinfo), or 0.
 * A guest under TCG sees the host TSC; telling its kernel the rate avoids the
 * calibration that hangs there (docs/boot-kit.md). */
static long ii_host_tsc_khz(void)
{
  FILE *f = fopen("/proc/cpuinfo", "re");
  if (f == NULL)
    return 0;
  char line[256];
  long khz = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "cpu MHz", 7) == 0) {
      const char *colon = strchr(line, ':');
      if (colon != NULL)
        khz = (long)(strtod(colon + 1, NULL) * 1000.0);
      break;
    }
  }
  fclose(f);
  return khz > 0 && khz < 100000000 ? khz : 0;
}

int agent_image_spec_fill(const agent_image_spec *img, const vmm_spec *spec,
                          const char *boot_kit_dir, vmm_spec *out, cmn_error *err)
{
  memset(out, 0, sizeof *out);
  if (!agent_image_spec_set(img)) {
    if (img != NULL && (img->n_entrypoint || img->n_args || img->n_env || ii_set(img->workdir))) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT,
                  "spec.image_overrides need spec.image (the image whose config they change)");
      return cmn_err_field(err, "spec.image_overrides");
    }
    return 0;
  }
  if (strlen(img->ref) > 512) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "spec.image is longer than 512 bytes");
    return cmn_err_field(err, "spec.image");
  }
  vmm_spec_copy(out, spec);
  if (!ii_set(spec->kernel)) {
    if (!ii_set(boot_kit_dir)) {
      vmm_spec_free(out);
      return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                         "spec.image without spec.kernel_path needs emberd's boot kit "
                         "(boot_kit_dir is not set)");
    }
    free(out->kernel);
    out->kernel = cmn_asprintf("%s/vmlinux", boot_kit_dir);
    if (!ii_set(spec->initrd)) {
      free(out->initrd);
      out->initrd = cmn_asprintf("%s/initramfs.cpio.gz", boot_kit_dir);
    }
    if (access(out->kernel, R_OK) < 0 || access(out->initrd, R_OK) < 0) {
      cmn_err_errno(err, CMN_FAILED_PRECONDITION, errno,
                    "spec.image without spec.kernel_path needs emberd's boot kit, but %s or "
                    "%s cannot be read (build it: cmake --build build --target bootkit; "
                    "point emberd at it: --boot-kit-dir)",
                    out->kernel, out->initrd);
      vmm_spec_free(out);
      return -1;
    }
  }
  if (!ii_set(spec->cmdline)) {
    free(out->cmdline);
    long khz = ii_host_tsc_khz();
    out->cmdline = khz > 0 ? cmn_asprintf(AGENT_IMAGE_CMDLINE " tsc_early_khz=%ld", khz)
                           : cmn_strdup(AGENT_IMAGE_CMDLINE);
  }
  return 0;
}

int agent_image_pin(img_store *st, const char *instance_id, const agent_image_spec *img,
                    cmn_error *err)
{
  if (!agent_image_spec_set(img) || st == NULL)
    return 0;
  cleanup_free char *who = cmn_asprintf("instances/%s", instance_id);
  return img_store_pin(st, ii_set(img->id) ? img->id : img->ref, who, NULL, err);
}

void agent_image_unpin(img_store *st, const char *instance_id, const agent_image_spec *img)
{
  if (!agent_image_spec_set(img) || st == NULL || !ii_set(img->id))
    return;
  cleanup_free char *who = cmn_asprintf("instances/%s", instance_id);
  img_store_unpin(st, img->id, who);
}

/* Reads the config blob (bounded by IMG_CONFIG_MAX_BYTES). */
static char *ii_read_config(const char *path, size_t *len, cmn_error *err)
{
  cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    cmn_err_errno(err, CMN_INTERNAL, errno, "open the image config %s", path);
    return NULL;
  }
  size_t cap = 4096, n = 0;
  char *buf = cmn_malloc(cap + 1);
  for (;;) {
    if (n == cap) {
      if (cap >= IMG_CONFIG_MAX_BYTES) {
        free(buf);
        cmn_err_set(err, CMN_INVALID_ARGUMENT, "the image config is larger than %u bytes",
                    IMG_CONFIG_MAX_BYTES);
        return NULL;
      }
      cap *= 2;
      buf = cmn_realloc(buf, cap + 1);
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      free(buf);
      cmn_err_errno(err, CMN_INTERNAL, errno, "read the image config %s", path);
      return NULL;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

int agent_image_prepare(img_store *st, const char *data_dir, const char *dir,
                        const char *instance_id, const char *hostname, agent_image_spec *img,
                        const struct agent_net_guest *net, cmn_error *err)
{
  if (!agent_image_spec_set(img))
    return 0;
  if (st == NULL)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "this emberd has no image store");
  cleanup_free char *who = cmn_asprintf("instances/%s", instance_id);
  char id[80] = "";
  if (img_store_pin(st, img->ref, who, id, err) < 0) {
    if (err->code == CMN_NOT_FOUND) {
      cmn_err_set(err, CMN_FAILED_PRECONDITION,
                  "spec.image %s is not in this host's image store: pull it first "
                  "(ImageService.PullImage, emberctl pull) or import it",
                  img->ref);
      cleanup_free char *subject = cmn_asprintf("images/%s", img->ref);
      cmn_err_precondition(err, "IMAGE_NOT_PRESENT", subject);
    }
    return -1;
  }
  free(img->id);
  img->id = cmn_strdup(id);
  img_image_layers L = {0};
  img_run_config rc = {0};
  cleanup_free char *cfg_json = NULL;
  cleanup_free char *cache_path = NULL;
  cleanup_free char *cache_dir = cmn_asprintf("%s/images/rootfs", data_dir);
  cleanup_free char *rootfs = cmn_asprintf("%s/%s", dir, AGENT_IMAGE_ROOTFS);
  cleanup_free char *bootcfg = cmn_asprintf("%s/%s", dir, AGENT_IMAGE_BOOTCFG);
  size_t cfg_len = 0;
  bool built = false;
  cmn_clone_method how = CMN_CLONE_NONE;
  int64_t t0 = cmn_now_us();
  if (img_store_image_layers(st, id, &L, err) < 0)
    goto fail;
  if ((cfg_json = ii_read_config(L.config_path, &cfg_len, err)) == NULL)
    goto fail;
  img_overrides ov = {
      .has_entrypoint = img->n_entrypoint > 0,
      .entrypoint = (const char *const *)img->entrypoint,
      .n_entrypoint = img->n_entrypoint,
      .has_args = img->n_args > 0,
      .args = (const char *const *)img->args,
      .n_args = img->n_args,
      .env = (const char *const *)img->env,
      .n_env = img->n_env,
      .workdir = img->workdir,
  };
  if (img_config_resolve(cfg_json, cfg_len, &ov, &rc, err) < 0) {
    cmn_err_prefix(err, "spec.image %s", img->ref);
    goto fail;
  }
  img_rootfs_opts ro = {0};
  if (img_rootfs_build(&ro, cache_dir, id, L.layers, L.n_layers, &cache_path, &built, NULL, err) <
      0) {
    cmn_err_prefix(err, "root disk of %s", id);
    goto fail;
  }
  if (cmn_file_clone(cache_path, rootfs, &how, NULL, err) < 0)
    goto fail;
  /* The managed network's guest side: the init configures it (no DHCP). */
  img_bootcfg_net bnet = {0};
  if (net != NULL)
    bnet = (img_bootcfg_net){.mac = net->mac,
                             .addr = net->ipv4,
                             .prefix = (unsigned)net->prefix,
                             .gateway = net->gateway,
                             .mtu = net->mtu};
  img_bootcfg bc = {
      .argv = (const char *const *)rc.argv,
      .argc = rc.argc,
      .env = (const char *const *)rc.env,
      .envc = rc.envc,
      .workdir = rc.workdir,
      .user = rc.user,
      .hostname = hostname,
      .root = "/dev/vda",
      .net = net != NULL ? &bnet : NULL,
      .nnet = net != NULL ? 1 : 0,
      .dns = net != NULL ? net->dns : NULL,
      .ndns = net != NULL ? net->n_dns : 0,
  };
  if (img_bootcfg_write(&bc, bootcfg, err) < 0)
    goto fail;
  cmn_info(instance_id, "create", "image %s (%s): root disk %s (%s), %s copy, in %lld ms", img->ref,
           id, cache_path, built ? "built" : "cached", cmn_clone_method_name(how),
           (long long)((cmn_now_us() - t0) / 1000));
  img_run_config_free(&rc);
  img_image_layers_free(&L);
  return 0;
fail:
  img_run_config_free(&rc);
  img_image_layers_free(&L);
  img_store_unpin(st, id, who);
  return -1;
}

int agent_image_host_files_open(const agent_host_fence *f, const vmm_spec *spec,
                                const agent_image_spec *img, const char *dir, int code,
                                agent_host_files *out, cmn_error *err)
{
  if (!agent_image_spec_set(img))
    return agent_host_files_open(f, spec, code, out, err);
  static const agent_host_made made[] = {{AGENT_IMAGE_ROOTFS, false, false},
                                         {AGENT_IMAGE_BOOTCFG, true, false}};
  static const agent_host_made made_overlay[] = {{AGENT_IMAGE_ROOTFS_OVERLAY, false, true},
                                                 {AGENT_IMAGE_BOOTCFG, true, false}};
  cleanup_free char *overlay = cmn_asprintf("%s/" AGENT_IMAGE_ROOTFS_OVERLAY, dir);
  bool o = cmn_is_regular_file(overlay);
  return agent_host_files_open_made(f, spec, dir, o ? made_overlay : made, 2, code, out, err);
}
