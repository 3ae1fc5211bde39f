/* spec.c: the CreateInstanceRequest of `emberctl create` (see spec.h).
 *
 * The request is built as a heap protobuf-c message whose every string and
 * array comes from malloc (cmn_*), so protobuf_c_message_free_unpacked() with
 * the default allocator frees it whichever way it was put together. */
#include "agent/ctl/spec.h"

#include "agent/ctl/pbjson.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A spec file is small; anything larger is a mistake. */
#define CTL_SPEC_MAX_BYTES (1024 * 1024)

char *ctl_spec_abspath(const char *path, const char *base_dir)
{
  if (path[0] == '/' || path[0] == '\0')
    return cmn_strdup(path);
  if (base_dir != NULL)
    return cmn_asprintf("%s/%s", base_dir, path);
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof(cwd)) == NULL)
    return cmn_strdup(path); /* the server will report it as not absolute */
  return cmn_asprintf("%s/%s", cwd, path);
}

/* Replaces a string field, freeing the old value unless it is the shared
 * empty default of protobuf-c. */
static void ctl__set_str(char **field, char *owned)
{
  if (*field != NULL && *field != (char *)protobuf_c_empty_string)
    free(*field);
  *field = owned;
}

int ctl_spec_parse_disk(const char *arg, const char *base_dir, Ember__V1__Disk **out,
                        cmn_error *err)
{
  cleanup_free char *path = cmn_strdup(arg);
  bool ro = false;
  char *colon = strrchr(path, ':');
  if (colon != NULL && (strcmp(colon, ":ro") == 0 || strcmp(colon, ":rw") == 0)) {
    ro = strcmp(colon, ":ro") == 0;
    *colon = '\0';
  }
  if (path[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "--disk '%s': empty path", arg);
  Ember__V1__Disk *d = cmn_malloc(sizeof(*d));
  ember__v1__disk__init(d);
  d->path = ctl_spec_abspath(path, base_dir);
  d->read_only = ro;
  *out = d;
  return 0;
}

int ctl_spec_parse_tap(const char *arg, Ember__V1__NetworkInterface **out, cmn_error *err)
{
  const char *comma = strchr(arg, ',');
  size_t nl = comma != NULL ? (size_t)(comma - arg) : strlen(arg);
  if (nl == 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "--tap '%s': empty device name", arg);
  if (comma != NULL && comma[1] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "--tap '%s': empty MAC after ','", arg);
  if (comma != NULL && !ctl_mac_valid(comma + 1))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "--tap '%s': the MAC after ',' must be a unicast aa:bb:cc:dd:ee:ff", arg);
  Ember__V1__NetworkInterface *ni = cmn_malloc(sizeof(*ni));
  ember__v1__network_interface__init(ni);
  ni->tap_device = cmn_strndup(arg, nl);
  if (comma != NULL)
    ni->mac_address = cmn_strdup(comma + 1);
  *out = ni;
  return 0;
}

/* Reads the spec file into a request (an InstanceSpec is wrapped); NULL on
 * failure. */
static Ember__V1__CreateInstanceRequest *ctl__from_file(const char *file, cmn_error *err)
{
  Ember__V1__CreateInstanceRequest *out = NULL;
  cleanup_free char *text = NULL;
  size_t len = 0;
  if (cmn_file_read(file, CTL_SPEC_MAX_BYTES, &text, &len, err) < 0)
    return cmn_err_prefix(err, "--spec"), NULL;
  cJSON *root = cJSON_ParseWithLength(text, len);
  if (root == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "--spec %s: not valid JSON (near '%.20s')", file,
                       cJSON_GetErrorPtr() != NULL ? cJSON_GetErrorPtr() : ""),
           NULL;
  int r;
  ProtobufCMessage *m = NULL;
  if (cJSON_IsObject(root) && (cJSON_GetObjectItemCaseSensitive(root, "spec") != NULL ||
                               cJSON_GetObjectItemCaseSensitive(root, "name") != NULL)) {
    r = ctl_pb_from_json(root, &ember__v1__create_instance_request__descriptor, &m, err);
    if (r == 0)
      out = (Ember__V1__CreateInstanceRequest *)m;
  } else {
    r = ctl_pb_from_json(root, &ember__v1__instance_spec__descriptor, &m, err);
    if (r == 0) {
      Ember__V1__CreateInstanceRequest *req = cmn_malloc(sizeof(*req));
      ember__v1__create_instance_request__init(req);
      req->spec = (Ember__V1__InstanceSpec *)m;
      out = req;
    }
  }
  cJSON_Delete(root);
  if (r < 0)
    return cmn_err_prefix(err, "--spec %s", file), NULL;
  return out;
}

static void ctl__free_disks(Ember__V1__InstanceSpec *s)
{
  for (size_t i = 0; i < s->n_disks; i++)
    protobuf_c_message_free_unpacked(&s->disks[i]->base, NULL);
  free(s->disks);
  s->disks = NULL;
  s->n_disks = 0;
}

static bool ctl__is_managed(const Ember__V1__NetworkInterface *ni)
{
  return ni->network != NULL && ni->network[0] != '\0';
}

/* Drops the TAP interfaces (those without `network`), keeping the order of
 * the rest. */
static void ctl__drop_taps(Ember__V1__InstanceSpec *s)
{
  size_t k = 0;
  for (size_t i = 0; i < s->n_network_interfaces; i++) {
    if (ctl__is_managed(s->network_interfaces[i]))
      s->network_interfaces[k++] = s->network_interfaces[i];
    else
      protobuf_c_message_free_unpacked(&s->network_interfaces[i]->base, NULL);
  }
  s->n_network_interfaces = k;
}

static void ctl__add_nic(Ember__V1__InstanceSpec *s, size_t at, Ember__V1__NetworkInterface *ni)
{
  s->network_interfaces = cmn_realloc(s->network_interfaces, (s->n_network_interfaces + 1) *
                                                                 sizeof(*s->network_interfaces));
  memmove(&s->network_interfaces[at + 1], &s->network_interfaces[at],
          (s->n_network_interfaces - at) * sizeof(*s->network_interfaces));
  s->network_interfaces[at] = ni;
  s->n_network_interfaces++;
}

/* The flag that needs an interface on a managed network, or NULL. */
static const char *ctl__managed_flag(const ctl_opts *o)
{
  if (o->ip != NULL)
    return "--ip";
  if (o->mac != NULL)
    return "--mac";
  if (o->n_publish > 0)
    return "--publish";
  if (o->netns)
    return "--netns";
  return NULL;
}

/* --network, --ip, --mac, --publish and --netns, field by field over the
 * spec file's managed interface (the first with `network`); --network makes
 * one, first in the list, when the file has none. */
static int ctl__apply_network(const ctl_opts *o, Ember__V1__InstanceSpec *s, cmn_error *err)
{
  Ember__V1__NetworkInterface *ni = NULL;
  for (size_t i = 0; i < s->n_network_interfaces && ni == NULL; i++)
    if (ctl__is_managed(s->network_interfaces[i]))
      ni = s->network_interfaces[i];
  if (ni == NULL && o->network != NULL) {
    ni = cmn_malloc(sizeof(*ni));
    ember__v1__network_interface__init(ni);
    ctl__add_nic(s, 0, ni);
  }
  const char *flag = ctl__managed_flag(o);
  if (ni == NULL) {
    if (flag != NULL)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "%s needs --network NAME (an interface on a network emberd manages: "
                         "see emberctl networks)%s",
                         flag,
                         strcmp(flag, "--mac") == 0 ? "; for a TAP device use --tap NAME,MAC" : "");
    return 0;
  }
  if (o->network != NULL)
    ctl__set_str(&ni->network, cmn_strdup(o->network));
  if (o->ip != NULL)
    ctl__set_str(&ni->ipv4_address, cmn_strdup(o->ip));
  const char *mac = o->mac != NULL ? o->mac : o->network_mac;
  if (mac != NULL)
    ctl__set_str(&ni->mac_address, cmn_strdup(mac));
  if (o->n_publish > 0) {
    for (size_t i = 0; i < ni->n_port_forwards; i++)
      protobuf_c_message_free_unpacked(&ni->port_forwards[i]->base, NULL);
    free(ni->port_forwards);
    ni->port_forwards = cmn_calloc((size_t)o->n_publish, sizeof(*ni->port_forwards));
    ni->n_port_forwards = (size_t)o->n_publish;
    for (int i = 0; i < o->n_publish; i++) {
      const ctl_publish *p = &o->publish[i];
      Ember__V1__PortForward *pf = cmn_malloc(sizeof(*pf));
      ember__v1__port_forward__init(pf);
      pf->protocol = p->udp ? EMBER__V1__PROTOCOL__PROTOCOL_UDP : EMBER__V1__PROTOCOL__PROTOCOL_TCP;
      pf->host_port = p->host_port;
      pf->guest_port = p->guest_port;
      if (p->host_address[0] != '\0')
        pf->host_address = cmn_strdup(p->host_address);
      ni->port_forwards[i] = pf;
    }
  }
  if (o->netns)
    s->network_namespace = true;
  return 0;
}

/* Makes the file's relative paths absolute against its folder. */
static void ctl__absolutize(Ember__V1__InstanceSpec *s, const char *base_dir)
{
  if (s->kernel_path[0] != '\0')
    ctl__set_str(&s->kernel_path, ctl_spec_abspath(s->kernel_path, base_dir));
  if (s->initrd_path[0] != '\0')
    ctl__set_str(&s->initrd_path, ctl_spec_abspath(s->initrd_path, base_dir));
  for (size_t i = 0; i < s->n_disks; i++)
    if (s->disks[i]->path[0] != '\0')
      ctl__set_str(&s->disks[i]->path, ctl_spec_abspath(s->disks[i]->path, base_dir));
}

static int ctl__apply_flags(const ctl_opts *o, Ember__V1__InstanceSpec *s, cmn_error *err)
{
  if (o->hypervisor != NULL)
    ctl__set_str(&s->hypervisor, cmn_strdup(o->hypervisor));
  if (o->given & CTL_OPT_VCPUS)
    s->vcpus = o->vcpus;
  if (o->given & CTL_OPT_MEMORY)
    s->memory_mib = o->memory_mib;
  if (o->kernel != NULL)
    ctl__set_str(&s->kernel_path, ctl_spec_abspath(o->kernel, NULL));
  if (o->initrd != NULL)
    ctl__set_str(&s->initrd_path, ctl_spec_abspath(o->initrd, NULL));
  if (o->cmdline != NULL)
    ctl__set_str(&s->cmdline, cmn_strdup(o->cmdline));
  if (o->n_disks > 0) {
    ctl__free_disks(s);
    s->disks = cmn_calloc((size_t)o->n_disks, sizeof(*s->disks));
    for (int i = 0; i < o->n_disks; i++) {
      if (ctl_spec_parse_disk(o->disks[i], NULL, &s->disks[i], err) < 0)
        return -1;
      s->n_disks++;
    }
  }
  if (o->given & CTL_OPT_VSOCK) {
    if (s->vsock == NULL) {
      s->vsock = cmn_malloc(sizeof(*s->vsock));
      ember__v1__vsock__init(s->vsock);
    }
    s->vsock->guest_cid = o->vsock_cid;
  }
  if (o->image != NULL)
    ctl__set_str(&s->image, cmn_strdup(o->image));
  if (o->n_entrypoint > 0 || o->n_image_args > 0 || o->n_env > 0 || o->workdir != NULL) {
    if (s->image_overrides == NULL) {
      s->image_overrides = cmn_malloc(sizeof(*s->image_overrides));
      ember__v1__image_overrides__init(s->image_overrides);
    }
    Ember__V1__ImageOverrides *ov = s->image_overrides;
    struct {
      const char **from;
      int n;
      char ***to;
      size_t *n_to;
    } lists[] = {{o->entrypoint, o->n_entrypoint, &ov->entrypoint, &ov->n_entrypoint},
                 {o->image_args, o->n_image_args, &ov->args, &ov->n_args},
                 {o->env, o->n_env, &ov->env, &ov->n_env}};
    for (size_t k = 0; k < sizeof lists / sizeof lists[0]; k++) {
      if (lists[k].n == 0)
        continue;
      for (size_t i = 0; i < *lists[k].n_to; i++)
        free((*lists[k].to)[i]);
      free(*lists[k].to);
      *lists[k].to = cmn_calloc((size_t)lists[k].n, sizeof(char *));
      for (int i = 0; i < lists[k].n; i++)
        (*lists[k].to)[i] = cmn_strdup(lists[k].from[i]);
      *lists[k].n_to = (size_t)lists[k].n;
    }
    if (o->workdir != NULL)
      ctl__set_str(&ov->workdir, cmn_strdup(o->workdir));
  }
  if (o->n_taps > 0) {
    ctl__drop_taps(s);
    for (int i = 0; i < o->n_taps; i++) {
      Ember__V1__NetworkInterface *ni = NULL;
      if (ctl_spec_parse_tap(o->taps[i], &ni, err) < 0)
        return -1;
      ctl__add_nic(s, s->n_network_interfaces, ni);
    }
  }
  return ctl__apply_network(o, s, err);
}

int ctl_spec_build(const ctl_opts *o, const char *name, Ember__V1__CreateInstanceRequest **out,
                   cmn_error *err)
{
  Ember__V1__CreateInstanceRequest *req = NULL;
  *out = NULL;
  if (o->spec_file != NULL) {
    req = ctl__from_file(o->spec_file, err);
    if (req == NULL)
      return -1;
    if (req->spec != NULL) {
      cleanup_free char *copy = cmn_strdup(o->spec_file);
      cleanup_free char *dir = ctl_spec_abspath(dirname(copy), NULL);
      ctl__absolutize(req->spec, dir);
    }
  } else {
    req = cmn_malloc(sizeof(*req));
    ember__v1__create_instance_request__init(req);
  }
  if (req->spec == NULL) {
    req->spec = cmn_malloc(sizeof(*req->spec));
    ember__v1__instance_spec__init(req->spec);
  }
  Ember__V1__InstanceSpec *s = req->spec;
  if (ctl__apply_flags(o, s, err) < 0)
    goto fail;
  if (name != NULL)
    ctl__set_str(&req->name, cmn_strdup(name));
  if (o->start)
    req->start = true;
  if (req->name[0] == '\0') {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "no instance name: give it as `emberctl create NAME` or \"name\" in --spec");
    goto fail;
  }
  if (s->hypervisor[0] == '\0')
    ctl__set_str(&s->hypervisor, cmn_strdup(CTL_DEFAULT_HYPERVISOR));
  if (s->vcpus == 0)
    s->vcpus = CTL_DEFAULT_VCPUS;
  if (s->memory_mib == 0)
    s->memory_mib = CTL_DEFAULT_MEMORY_MIB;
  *out = req;
  return 0;
fail:
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return -1;
}
