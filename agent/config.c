/* config.c: emberd's flags and JSON config file (see config.h). The file is
 * read once at start-up; unknown keys and wrong types are errors so that a
 * typo never silently falls back to a default. */
#include "agent/config.h"
#include "agent/console.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONFIG_FILE_MAX (1 << 20)

void agent_config_usage(FILE *out, const char *prog)
{
  fprintf(out,
          "Usage: %s [OPTIONS]\n"
          "emberd: the ember per-host VM agent; serves ember.v1.InstanceService over gRPC.\n"
          "\n"
          "Options (flags override the config file):\n"
          "  --config FILE            JSON config file; keys: listen, data_dir, workers,\n"
          "                           log_level, max_message_bytes, grace_seconds,\n"
          "                           console_max_bytes,\n"
          "                           max_instances, tls_cert, tls_key, tls_client_ca,\n"
          "                           insecure_tcp, metrics_listen, metrics_file,\n"
          "                           vmm_cgroup, host_file_roots (array of paths),\n"
          "                           allow_block_devices, mem_overcommit,\n"
          "                           mem_reserved_mib, vcpu_overcommit, disk_reserve_mib,\n"
          "                           image_store_budget, registry_ca_file, boot_kit_dir,\n"
          "                           networks (array of {name, bridge, subnet, gateway,\n"
          "                           mtu, nat, isolated, dns}; default: one network\n"
          "                           \"default\", " AGENT_NET_DEFAULT_SUBNET
          " on bridge " AGENT_NET_DEFAULT_BRIDGE ", NAT),\n"
          "                           netns_dir, netns_transit_subnet (default\n"
          "                           " AGENT_NET_DEFAULT_TRANSIT ")\n"
          "                           registry_credentials_file,\n"
          "                           insecure_registries (array of host[:port]),\n"
          "                           drivers (one object per hypervisor type,\n"
          "                           e.g. {\"drivers\":{\"qemu\":{\"accel\":\"tcg\"}}})\n"
          "  --listen ADDR            unix:/path/to.sock or host:port\n"
          "                           (default: unix:<data-dir>/emberd.sock)\n"
          "  --data-dir DIR           instance records and snapshots (created mode 0750;\n"
          "                           default /var/lib/ember as root, else\n"
          "                           $XDG_DATA_HOME/ember or ~/.local/share/ember)\n"
          "  --workers N              gRPC worker threads, 1-256 (default %d)\n"
          "  --log-level LEVEL        debug, info, warn or error (default info); logs are\n"
          "                           JSON lines on stderr\n"
          "  --max-message-bytes N    largest request accepted, 1024 B-1 GiB; K/M/G suffixes\n"
          "                           allowed (default 4M); larger requests get\n"
          "                           RESOURCE_EXHAUSTED\n"
          "  --console-max-bytes N    disk each instance's console.log may use before its\n"
          "                           oldest bytes are punched out (offsets stay), 64K-1024G\n"
          "                           (default 4M; docs/console.md)\n"
          "  --grace-seconds N        on SIGTERM/SIGINT, how long calls in flight may take\n"
          "                           before they are cancelled, 0-3600 (default %d); a\n"
          "                           second signal cancels at once\n"
          "  --max-instances N        admission limit (default: the manager's, 256)\n"
          "  --tls-cert FILE          PEM server certificate chain (TCP only)\n"
          "  --tls-key FILE           PEM private key of --tls-cert\n"
          "  --tls-client-ca FILE     PEM CA bundle; clients must present a certificate it\n"
          "                           signed (mutual TLS)\n"
          "  --insecure-tcp           allow plaintext gRPC on a TCP address (logs a warning)\n"
          "  --metrics-listen HOST:PORT\n"
          "                           serve Prometheus metrics at http://HOST:PORT/metrics\n"
          "                           (plain HTTP, no auth: use loopback, e.g.\n"
          "                           127.0.0.1:9464, or a private interface; default off)\n"
          "  --metrics-file PATH      write the same metrics text to PATH every 15 s,\n"
          "                           atomically, for node_exporter's textfile collector\n"
          "                           (name it *.prom; default off)\n"
          "  --vmm-cgroup NAME        move every VMM into the cgroup NAME (created under\n"
          "                           each hierarchy of /sys/fs/cgroup), out of emberd's\n"
          "                           own: a container runtime that stops emberd's\n"
          "                           container then leaves the guests running for the\n"
          "                           next emberd to re-adopt (default: off)\n"
          "  --host-file-root DIR     allow kernel, initrd and disk paths of requests only\n"
          "                           under DIR (a directory, or one file); repeat for\n"
          "                           several. Without any, every path outside emberd's\n"
          "                           data dir and own files, /proc, /sys, /dev, /etc and\n"
          "                           /run is allowed (see docs/host-paths.md); set it on\n"
          "                           any host whose API clients are not its operators\n"
          "  --allow-block-devices    disks may be block devices (under a --host-file-root;\n"
          "                           opened exclusively, so a mounted one is refused;\n"
          "                           default: regular files only)\n"
          "Admission (docs/capacity.md): create, start and restore are refused with\n"
          "RESOURCE_EXHAUSTED when the guest does not fit this host:\n"
          "  --mem-overcommit R       guest RAM admitted per MiB of host RAM left after\n"
          "                           --mem-reserved-mib, 0.1-100 (default %.1f: no\n"
          "                           overcommit); Running and Paused guests count\n"
          "  --mem-reserved-mib N     host RAM kept for the host (kernel, emberd, VMM\n"
          "                           overhead), 0-1048576 (default %d)\n"
          "  --vcpu-overcommit R      vCPUs admitted per online CPU, 0.1-64 (default %.1f)\n"
          "  --disk-reserve-mib N     free space kept in the data dir for state files on\n"
          "                           top of each guest's RAM file, 0-1048576 (default %d)\n"
          "  --image-store-budget SIZE\n"
          "                           most bytes of image blobs kept under <data-dir>/images\n"
          "                           (K/M/G suffixes; default 0: unlimited); a pull that\n"
          "                           cannot fit after a GC gets RESOURCE_EXHAUSTED\n"
          "  --registry-ca-file FILE  PEM CA bundle trusted for registries besides the\n"
          "                           system's (TLS verification is always on)\n"
          "  --registry-credentials-file FILE\n"
          "                           JSON {\"host[:port]\": {\"username\": ..., \"password\":\n"
          "                           ...}}: credentials per registry (Basic and Bearer\n"
          "                           token auth); read at each pull, keep it mode 0600\n"
          "  --insecure-registry HOST[:PORT]\n"
          "                           reach this registry over plain HTTP (repeat for\n"
          "                           several); loopback registries without TLS work anyway\n"
          "  --netns-dir DIR          where instance network namespaces are (default\n"
          "                           " AGENT_NET_DEFAULT_NETNS_DIR ", as `ip netns` uses)\n"
          "  --boot-kit-dir DIR       the boot kit (vmlinux, initramfs.cpio.gz) booted for\n"
          "                           InstanceSpec.image without a kernel_path (default\n"
          "                           " EMBER_BOOT_KIT_DIR ")\n"
          "  --help                   this text\n"
          "  --version                the version\n"
          "\n"
          "Signals: SIGTERM/SIGINT shut down gracefully (health NOT_SERVING, no new calls,\n"
          "calls in flight finish); VMMs keep running and are re-adopted on the next start.\n",
          prog, AGENT_DEFAULT_WORKERS, AGENT_DEFAULT_GRACE_SECONDS,
          AGENT_ADMIT_DEFAULT_MEM_OVERCOMMIT, AGENT_ADMIT_DEFAULT_MEM_RESERVED_MIB,
          AGENT_ADMIT_DEFAULT_VCPU_OVERCOMMIT, AGENT_ADMIT_DEFAULT_DISK_RESERVE_MIB);
}

void agent_config_free(agent_config *cfg)
{
  free(cfg->vmm_cgroup);
  free(cfg->config_path);
  free(cfg->listen);
  free(cfg->data_dir);
  free(cfg->tls_cert);
  free(cfg->tls_key);
  free(cfg->tls_client_ca);
  free(cfg->metrics_listen);
  free(cfg->metrics_file);
  free(cfg->registry_ca_file);
  free(cfg->boot_kit_dir);
  agent_net_config_free(&cfg->net);
  agent_warm_config_free(&cfg->warm);
  free(cfg->registry_credentials_file);
  for (size_t i = 0; i < cfg->n_insecure_registries; i++)
    free(cfg->insecure_registries[i]);
  free(cfg->insecure_registries);
  cJSON_Delete(cfg->drivers);
  for (size_t i = 0; i < cfg->n_host_file_roots; i++)
    free(cfg->host_file_roots[i]);
  free(cfg->host_file_roots);
  memset(cfg, 0, sizeof(*cfg));
}

int agent_config_parse_size(const char *s, int64_t *out)
{
  if (s == NULL || *s < '0' || *s > '9')
    return -1;
  errno = 0;
  char *end = NULL;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || end == s)
    return -1;
  int64_t mult = 1;
  switch (*end) {
  case 'k':
  case 'K':
    mult = 1024;
    end++;
    break;
  case 'm':
  case 'M':
    mult = 1024 * 1024;
    end++;
    break;
  case 'g':
  case 'G':
    mult = 1024LL * 1024 * 1024;
    end++;
    break;
  default:
    break;
  }
  if (mult > 1 && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
    end += strlen(end);
  else if (mult == 1 && strcmp(end, "B") == 0)
    end++;
  if (*end != '\0' || v < 0 || v > INT64_MAX / mult)
    return -1;
  *out = (int64_t)v * mult;
  return 0;
}

static int config__int(const char *what, const char *s, long lo, long hi, int *out, cmn_error *err)
{
  errno = 0;
  char *end = NULL;
  long v = s != NULL ? strtol(s, &end, 10) : 0;
  if (s == NULL || *s == '\0' || errno != 0 || *end != '\0' || v < lo || v > hi)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s: '%s' is not an integer in %ld..%ld", what,
                       s ? s : "", lo, hi);
  *out = (int)v;
  return 0;
}

static int config__size(const char *what, const char *s, int64_t *out, cmn_error *err)
{
  int64_t v;
  if (agent_config_parse_size(s, &v) < 0 || v < 1024 || v > (1LL << 30))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "%s: '%s' is not a size between 1024 and 1G (digits, optional K/M/G)", what,
                       s ? s : "");
  *out = v;
  return 0;
}

static int config__ratio(const char *what, const char *s, double lo, double hi, double *out,
                         cmn_error *err)
{
  errno = 0;
  char *end = NULL;
  double v = s != NULL ? strtod(s, &end) : 0;
  if (s == NULL || *s == '\0' || errno != 0 || *end != '\0' || !(v >= lo && v <= hi))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s: '%s' is not a number in %g..%g", what,
                       s ? s : "", lo, hi);
  *out = v;
  return 0;
}

static int config__mib(const char *what, const char *s, uint64_t *out, cmn_error *err)
{
  int v = 0;
  if (config__int(what, s, 0, 1L << 20, &v, err) < 0)
    return -1;
  *out = (uint64_t)v;
  return 0;
}

/* Keys whose JSON value may be a fractional number. */
static bool config__is_ratio(const char *key)
{
  return strcmp(key, "mem_overcommit") == 0 || strcmp(key, "vcpu_overcommit") == 0;
}

static void config__set(char **dst, const char *v)
{
  free(*dst);
  *dst = cmn_strdup(v);
}

static int config__path(const char *what, const char *v, char **dst, cmn_error *err)
{
  if (v == NULL || v[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s: empty path", what);
  config__set(dst, v);
  return 0;
}

/* Appends one allowed root (host_file_roots); whether it exists is checked
 * when the fence is built (agent/hostfiles.c), where it is resolved. */
static int config__add_root(agent_config *cfg, const char *v, cmn_error *err)
{
  if (v == NULL || v[0] != '/')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "host_file_roots: '%s' is not an absolute path",
                       v ? v : "");
  for (const char *p = v; *p != '\0'; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "host_file_roots: a path holds a control character");
  if (cfg->n_host_file_roots >= 64)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "host_file_roots: at most 64 roots");
  cfg->host_file_roots =
      cmn_realloc(cfg->host_file_roots, (cfg->n_host_file_roots + 1) * sizeof(char *));
  cfg->host_file_roots[cfg->n_host_file_roots++] = cmn_strdup(v);
  return 0;
}

/* Appends one insecure registry "host[:port]" (insecure_registries). */
static int config__add_insecure(agent_config *cfg, const char *v, cmn_error *err)
{
  size_t n = v != NULL ? strlen(v) : 0;
  if (n == 0 || n > 255 ||
      strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") != n)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "insecure_registries: '%.100s' is not host[:port]", v ? v : "");
  if (cfg->n_insecure_registries >= 64)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "insecure_registries: at most 64");
  cfg->insecure_registries =
      cmn_realloc(cfg->insecure_registries, (cfg->n_insecure_registries + 1) * sizeof(char *));
  cfg->insecure_registries[cfg->n_insecure_registries++] = cmn_strdup(v);
  return 0;
}

/* One setting by its file key (flags map onto the same keys). */
static int config__apply(agent_config *cfg, const char *key, const char *v, cmn_error *err)
{
  if (strcmp(key, "listen") == 0) {
    if (v == NULL || v[0] == '\0' || strcmp(v, "unix:") == 0)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "listen: empty address");
    config__set(&cfg->listen, v);
    return 0;
  }
  if (strcmp(key, "data_dir") == 0)
    return config__path("data_dir", v, &cfg->data_dir, err);
  if (strcmp(key, "workers") == 0)
    return config__int("workers", v, 1, 256, &cfg->workers, err);
  if (strcmp(key, "log_level") == 0) {
    int l = v ? cmn_log_level_parse(v) : -1;
    if (l < 0)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "log_level: '%s' is not one of debug, info, warn, error", v ? v : "");
    cfg->log_level = l;
    return 0;
  }
  if (strcmp(key, "max_message_bytes") == 0)
    return config__size("max_message_bytes", v, &cfg->max_message_bytes, err);
  if (strcmp(key, "console_max_bytes") == 0) {
    int64_t b;
    if (agent_config_parse_size(v, &b) < 0 || b < AGENT_CONSOLE_MIN_MAX_BYTES || b > (1LL << 40))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "console_max_bytes: '%s' is not a size between 64K and 1024G (digits, "
                         "optional K/M/G)",
                         v ? v : "");
    cfg->console_max_bytes = b;
    return 0;
  }
  if (strcmp(key, "grace_seconds") == 0)
    return config__int("grace_seconds", v, 0, 3600, &cfg->grace_seconds, err);
  if (strcmp(key, "max_instances") == 0)
    return config__int("max_instances", v, 1, 100000, &cfg->max_instances, err);
  if (strcmp(key, "tls_cert") == 0)
    return config__path("tls_cert", v, &cfg->tls_cert, err);
  if (strcmp(key, "tls_key") == 0)
    return config__path("tls_key", v, &cfg->tls_key, err);
  if (strcmp(key, "tls_client_ca") == 0)
    return config__path("tls_client_ca", v, &cfg->tls_client_ca, err);
  if (strcmp(key, "insecure_tcp") == 0) {
    if (v == NULL || (strcmp(v, "true") != 0 && strcmp(v, "false") != 0))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "insecure_tcp: must be true or false");
    cfg->insecure_tcp = strcmp(v, "true") == 0;
    return 0;
  }
  if (strcmp(key, "metrics_listen") == 0) {
    const char *colon = v != NULL ? strrchr(v, ':') : NULL;
    if (colon == NULL || colon == v || colon[1] == '\0')
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "metrics_listen: '%s' is not HOST:PORT (e.g. 127.0.0.1:9464)", v ? v : "");
    config__set(&cfg->metrics_listen, v);
    return 0;
  }
  if (strcmp(key, "vmm_cgroup") == 0) {
    if (v == NULL || v[0] == '\0' || v[0] == '/' || strstr(v, "..") != NULL ||
        strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/") !=
            strlen(v))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "vmm_cgroup: '%s' must be a relative cgroup path of letters, digits, "
                         "'.', '_', '-' and '/' (e.g. ember-vmms)",
                         v ? v : "");
    config__set(&cfg->vmm_cgroup, v);
    return 0;
  }
  if (strcmp(key, "metrics_file") == 0)
    return config__path("metrics_file", v, &cfg->metrics_file, err);
  if (strcmp(key, "host_file_roots") == 0)
    return config__add_root(cfg, v, err);
  if (strcmp(key, "allow_block_devices") == 0) {
    if (v == NULL || (strcmp(v, "true") != 0 && strcmp(v, "false") != 0))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "allow_block_devices: must be true or false");
    cfg->allow_block_devices = strcmp(v, "true") == 0;
    return 0;
  }
  if (strcmp(key, "mem_overcommit") == 0)
    return config__ratio(key, v, 0.1, 100, &cfg->admission.mem_overcommit, err);
  if (strcmp(key, "vcpu_overcommit") == 0)
    return config__ratio(key, v, 0.1, 64, &cfg->admission.vcpu_overcommit, err);
  if (strcmp(key, "mem_reserved_mib") == 0)
    return config__mib(key, v, &cfg->admission.mem_reserved_mib, err);
  if (strcmp(key, "disk_reserve_mib") == 0)
    return config__mib(key, v, &cfg->admission.disk_reserve_mib, err);
  if (strcmp(key, "image_store_budget") == 0) {
    if (agent_config_parse_size(v, &cfg->image_store_budget) < 0)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "image_store_budget: '%s' is not a size (digits, optional K/M/G; 0 = "
                         "unlimited)",
                         v ? v : "");
    return 0;
  }
  if (strcmp(key, "boot_kit_dir") == 0)
    return config__path("boot_kit_dir", v, &cfg->boot_kit_dir, err);
  if (strcmp(key, "netns_dir") == 0)
    return config__path("netns_dir", v, &cfg->net.netns_dir, err);
  if (strcmp(key, "registry_ca_file") == 0)
    return config__path("registry_ca_file", v, &cfg->registry_ca_file, err);
  if (strcmp(key, "registry_credentials_file") == 0)
    return config__path("registry_credentials_file", v, &cfg->registry_credentials_file, err);
  if (strcmp(key, "insecure_registries") == 0)
    return config__add_insecure(cfg, v, err);
  return cmn_err_set(err, CMN_INVALID_ARGUMENT, "unknown setting '%s'", key);
}

static int config__load_file(agent_config *cfg, const char *path, cmn_error *err)
{
  cleanup_free char *text = NULL;
  size_t len = 0;
  if (cmn_file_read(path, CONFIG_FILE_MAX, &text, &len, err) < 0) {
    err->code = CMN_INVALID_ARGUMENT; /* a bad flag, whatever the I/O cause */
    return cmn_err_prefix(err, "config file %s", path);
  }
  const char *bad = NULL;
  cJSON *root = cJSON_ParseWithOpts(text, &bad, true);
  if (root == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "config file %s: invalid JSON near byte %ld",
                       path, bad ? (long)(bad - text) : 0L);
  int ret = 0;
  if (!cJSON_IsObject(root)) {
    ret = cmn_err_set(err, CMN_INVALID_ARGUMENT, "config file %s: the top level must be an object",
                      path);
    goto out;
  }
  for (cJSON *it = root->child; it != NULL && ret == 0; it = it->next) {
    const char *key = it->string;
    char buf[64];
    const char *v = NULL;
    if (strcmp(key, "drivers") == 0) {
      if (!cJSON_IsObject(it)) {
        ret = cmn_err_set(err, CMN_INVALID_ARGUMENT,
                          "config file %s: drivers must be an object "
                          "of per-type objects",
                          path);
        break;
      }
      for (cJSON *d = it->child; d != NULL; d = d->next)
        if (!cJSON_IsObject(d)) {
          ret = cmn_err_set(err, CMN_INVALID_ARGUMENT,
                            "config file %s: drivers.%s must be an "
                            "object",
                            path, d->string);
          break;
        }
      if (ret == 0) {
        cJSON_Delete(cfg->drivers);
        cfg->drivers = cJSON_Duplicate(it, true);
      }
      continue;
    }
    if (strcmp(key, "host_file_roots") == 0) {
      if (!cJSON_IsArray(it)) {
        ret = cmn_err_set(err, CMN_INVALID_ARGUMENT,
                          "config file %s: host_file_roots must be "
                          "an array of absolute paths",
                          path);
        break;
      }
      for (cJSON *r = it->child; r != NULL && ret == 0; r = r->next) {
        if (!cJSON_IsString(r))
          ret = cmn_err_set(err, CMN_INVALID_ARGUMENT,
                            "config file %s: host_file_roots must "
                            "hold strings",
                            path);
        else if (config__add_root(cfg, r->valuestring, err) < 0)
          ret = cmn_err_prefix(err, "config file %s", path);
      }
      continue;
    }
    if (strcmp(key, "networks") == 0 || strcmp(key, "netns_transit_subnet") == 0)
      continue; /* read below, as a whole */
    if (strcmp(key, "warm_pool") == 0) {
      if (agent_warm_config_from_json(&cfg->warm, it, err) < 0)
        ret = cmn_err_prefix(err, "config file %s", path);
      continue;
    }
    if (strcmp(key, "insecure_registries") == 0) {
      if (!cJSON_IsArray(it)) {
        ret = cmn_err_set(err, CMN_INVALID_ARGUMENT,
                          "config file %s: insecure_registries must "
                          "be an array of host[:port]",
                          path);
        break;
      }
      for (cJSON *r = it->child; r != NULL && ret == 0; r = r->next)
        if (config__add_insecure(cfg, cJSON_IsString(r) ? r->valuestring : NULL, err) < 0)
          ret = cmn_err_prefix(err, "config file %s", path);
      continue;
    }
    if (cJSON_IsString(it)) {
      v = it->valuestring;
    } else if (cJSON_IsBool(it)) {
      v = cJSON_IsTrue(it) ? "true" : "false";
    } else if (cJSON_IsNumber(it)) {
      double d = it->valuedouble;
      if (config__is_ratio(key)) {
        snprintf(buf, sizeof(buf), "%.17g", d);
        v = buf;
      } else if (!(d >= (double)LLONG_MIN && d < (double)LLONG_MAX) ||
                 fabs(modf(d, &(double){0})) > 0) { /* out of range or a fraction */
        ret = cmn_err_set(err, CMN_INVALID_ARGUMENT, "config file %s: %s must be an integer", path,
                          key);
        break;
      } else {
        snprintf(buf, sizeof(buf), "%lld", (long long)d);
        v = buf;
      }
    } else {
      ret = cmn_err_set(err, CMN_INVALID_ARGUMENT, "config file %s: %s has the wrong type", path,
                        key);
      break;
    }
    if (config__apply(cfg, key, v, err) < 0)
      ret = cmn_err_prefix(err, "config file %s", path);
  }
  if (ret == 0 && agent_net_config_from_json(&cfg->net, root, err) < 0)
    ret = cmn_err_prefix(err, "config file %s", path);
out:
  cJSON_Delete(root);
  return ret;
}

static const struct {
  const char *flag;
  const char *key; /* NULL: handled specially */
  bool has_arg;
} config__flags[] = {
    {"--config", NULL, true},
    {"--listen", "listen", true},
    {"--data-dir", "data_dir", true},
    {"--workers", "workers", true},
    {"--log-level", "log_level", true},
    {"--max-message-bytes", "max_message_bytes", true},
    {"--console-max-bytes", "console_max_bytes", true},
    {"--grace-seconds", "grace_seconds", true},
    {"--max-instances", "max_instances", true},
    {"--tls-cert", "tls_cert", true},
    {"--tls-key", "tls_key", true},
    {"--tls-client-ca", "tls_client_ca", true},
    {"--insecure-tcp", "insecure_tcp", false},
    {"--metrics-listen", "metrics_listen", true},
    {"--metrics-file", "metrics_file", true},
    {"--vmm-cgroup", "vmm_cgroup", true},
    {"--host-file-root", "host_file_roots", true},
    {"--allow-block-devices", "allow_block_devices", false},
    {"--mem-overcommit", "mem_overcommit", true},
    {"--mem-reserved-mib", "mem_reserved_mib", true},
    {"--vcpu-overcommit", "vcpu_overcommit", true},
    {"--disk-reserve-mib", "disk_reserve_mib", true},
    {"--image-store-budget", "image_store_budget", true},
    {"--registry-ca-file", "registry_ca_file", true},
    {"--boot-kit-dir", "boot_kit_dir", true},
    {"--netns-dir", "netns_dir", true},
    {"--registry-credentials-file", "registry_credentials_file", true},
    {"--insecure-registry", "insecure_registries", true},
    {"--help", NULL, false},
    {"-h", NULL, false},
    {"--version", NULL, false},
};

/* Walks argv; pass 0 only picks --config/--help/--version, pass 1 applies the
 * rest. */
static int config__flags_pass(agent_config *cfg, int argc, char *const *argv, int pass,
                              cmn_error *err)
{
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *eq = strchr(a, '=');
    size_t nlen = eq && strncmp(a, "--", 2) == 0 ? (size_t)(eq - a) : strlen(a);
    size_t k;
    size_t nflags = sizeof(config__flags) / sizeof(config__flags[0]);
    for (k = 0; k < nflags; k++)
      if (strlen(config__flags[k].flag) == nlen && strncmp(config__flags[k].flag, a, nlen) == 0)
        break;
    if (k == nflags)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "unknown option '%s' (see --help)", a);
    const char *v = NULL;
    if (config__flags[k].has_arg) {
      if (eq != NULL && nlen < strlen(a)) {
        v = eq + 1;
      } else if (i + 1 < argc) {
        v = argv[++i];
      } else {
        return cmn_err_set(err, CMN_INVALID_ARGUMENT, "option %s needs a value",
                           config__flags[k].flag);
      }
    } else if (nlen < strlen(a)) {
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "option %s takes no value",
                         config__flags[k].flag);
    }
    const char *flag = config__flags[k].flag;
    if (config__flags[k].key == NULL) {
      if (pass != 0)
        continue;
      if (strcmp(flag, "--config") == 0) {
        if (v[0] == '\0')
          return cmn_err_set(err, CMN_INVALID_ARGUMENT, "--config: empty path");
        config__set(&cfg->config_path, v);
      } else if (strcmp(flag, "--version") == 0) {
        cfg->version = true;
      } else {
        cfg->help = true;
      }
      continue;
    }
    if (pass == 0)
      continue;
    if (strcmp(config__flags[k].key, "host_file_roots") == 0 && !cfg->roots_from_flags) {
      /* Flags win: the first --host-file-root replaces the file's list. */
      for (size_t r = 0; r < cfg->n_host_file_roots; r++)
        free(cfg->host_file_roots[r]);
      cfg->n_host_file_roots = 0;
      cfg->roots_from_flags = true;
    }
    if (strcmp(config__flags[k].key, "insecure_registries") == 0 && !cfg->insecure_from_flags) {
      for (size_t r = 0; r < cfg->n_insecure_registries; r++)
        free(cfg->insecure_registries[r]);
      cfg->n_insecure_registries = 0;
      cfg->insecure_from_flags = true;
    }
    if (config__apply(cfg, config__flags[k].key, v ? v : "true", err) < 0)
      return cmn_err_prefix(err, "%s", flag);
  }
  return 0;
}

static char *config__default_data_dir(const char *home, const char *xdg, unsigned euid,
                                      cmn_error *err)
{
  if (euid == 0)
    return cmn_strdup("/var/lib/ember");
  if (xdg != NULL && xdg[0] == '/')
    return cmn_asprintf("%s/ember", xdg);
  if (home != NULL && home[0] == '/')
    return cmn_asprintf("%s/.local/share/ember", home);
  cmn_err_set(err, CMN_INVALID_ARGUMENT, "no default data dir: HOME is not set (pass --data-dir)");
  return NULL;
}

int agent_config_load(agent_config *cfg, int argc, char *const *argv, const char *env_home,
                      const char *env_xdg, unsigned euid, cmn_error *err)
{
  memset(cfg, 0, sizeof(*cfg));
  agent_net_config_default(&cfg->net);
  cfg->workers = AGENT_DEFAULT_WORKERS;
  cfg->log_level = CMN_LOG_INFO;
  cfg->max_message_bytes = AGENT_DEFAULT_MAX_MESSAGE_BYTES;
  cfg->console_max_bytes = AGENT_CONSOLE_DEFAULT_MAX_BYTES;
  cfg->grace_seconds = AGENT_DEFAULT_GRACE_SECONDS;
  cfg->admission = (agent_admission_config){
      .mem_overcommit = AGENT_ADMIT_DEFAULT_MEM_OVERCOMMIT,
      .mem_reserved_mib = AGENT_ADMIT_DEFAULT_MEM_RESERVED_MIB,
      .vcpu_overcommit = AGENT_ADMIT_DEFAULT_VCPU_OVERCOMMIT,
      .disk_reserve_mib = AGENT_ADMIT_DEFAULT_DISK_RESERVE_MIB,
  };
  if (config__flags_pass(cfg, argc, argv, 0, err) < 0)
    goto fail;
  if (cfg->help || cfg->version)
    return 0;
  if (cfg->config_path != NULL && config__load_file(cfg, cfg->config_path, err) < 0)
    goto fail;
  if (config__flags_pass(cfg, argc, argv, 1, err) < 0)
    goto fail;
  if (cfg->data_dir == NULL) {
    cfg->data_dir = config__default_data_dir(env_home, env_xdg, euid, err);
    if (cfg->data_dir == NULL)
      goto fail;
  }
  if (cfg->data_dir[0] != '/') {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
      cmn_err_errno(err, CMN_INVALID_ARGUMENT, errno, "data dir: cannot resolve '%s'",
                    cfg->data_dir);
      goto fail;
    }
    char *abs = cmn_asprintf("%s/%s", cwd, cfg->data_dir);
    free(cfg->data_dir);
    cfg->data_dir = abs;
  }
  /* Trailing slashes would make "<data_dir>/emberd.sock" look odd; drop them. */
  for (size_t n = strlen(cfg->data_dir); n > 1 && cfg->data_dir[n - 1] == '/'; n--)
    cfg->data_dir[n - 1] = '\0';
  if (cfg->listen == NULL)
    cfg->listen = cmn_asprintf("unix:%s/emberd.sock", cfg->data_dir);
  bool unix_addr = strncmp(cfg->listen, "unix:", 5) == 0;
  if (!unix_addr && strchr(cfg->listen, ':') == NULL) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "listen: '%s' is neither unix:/path nor host:port",
                cfg->listen);
    goto fail;
  }
  if ((cfg->tls_cert != NULL) != (cfg->tls_key != NULL)) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "--tls-cert and --tls-key must be given together");
    goto fail;
  }
  if (cfg->tls_client_ca != NULL && cfg->tls_cert == NULL) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "--tls-client-ca needs --tls-cert and --tls-key");
    goto fail;
  }
  if (unix_addr && (cfg->tls_cert != NULL || cfg->insecure_tcp)) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "--tls-* and --insecure-tcp apply to TCP addresses, not to %s", cfg->listen);
    goto fail;
  }
  if (!unix_addr && cfg->tls_cert == NULL && !cfg->insecure_tcp) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "listen: TCP address %s needs --tls-cert and --tls-key, or --insecure-tcp for "
                "plaintext",
                cfg->listen);
    goto fail;
  }
  if (cfg->allow_block_devices && cfg->n_host_file_roots == 0) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT,
                "allow_block_devices needs host_file_roots (--host-file-root) naming where the "
                "devices are, e.g. /dev/ember or one device such as /dev/loop7");
    goto fail;
  }
  if (cfg->tls_cert != NULL && cfg->insecure_tcp) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "--insecure-tcp and --tls-cert exclude each other");
    goto fail;
  }
  return 0;
fail:
  agent_config_free(cfg);
  return -1;
}
