/* config.h: emberd's configuration: command-line flags over an optional JSON
 * config file (--config FILE) over built-in defaults. Every value is
 * validated here, with a message that names the flag or key. */
#ifndef EMBER_AGENT_CONFIG_H
#define EMBER_AGENT_CONFIG_H

#include "agent/admission.h"
#include "agent/instance_net.h"
#include "agent/warm.h"
#include "common/error.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define AGENT_DEFAULT_WORKERS 4
#define AGENT_DEFAULT_MAX_MESSAGE_BYTES (4 * 1024 * 1024)
#define AGENT_DEFAULT_GRACE_SECONDS 30

typedef struct agent_config {
  char *config_path; /* --config; NULL when none */
  char *listen;      /* "unix:/path" or "host:port" */
  char *data_dir;    /* absolute */
  int workers;
  int log_level; /* enum cmn_log_level */
  int64_t max_message_bytes;
  int grace_seconds;
  int max_instances;         /* 0 = the manager's default */
  int64_t console_max_bytes; /* console.log rotation bound (docs/console.md) */
  char *vmm_cgroup;          /* cgroup VMMs are moved into; NULL: stay in ours */
  char *tls_cert;
  char *tls_key;
  char *tls_client_ca;
  bool insecure_tcp;
  char *metrics_listen;             /* HOST:PORT serving GET /metrics; NULL: off */
  char *metrics_file;               /* textfile-collector output; NULL: off */
  agent_admission_config admission; /* --mem-overcommit etc. (docs/capacity.md) */
  cJSON *drivers;                   /* the "drivers" object of the file; may be NULL */
  char **host_file_roots;           /* allowed roots for kernel/initrd/disk paths (absolute);
                                       none: any path outside the deny-list (docs/host-paths.md) */
  size_t n_host_file_roots;
  bool roots_from_flags;    /* private: the first --host-file-root replaces the file's list */
  bool allow_block_devices; /* disks may be block devices under host_file_roots */
  /* Image store and registries (docs/images.md). */
  int64_t image_store_budget;      /* bytes of blobs allowed; 0 = unlimited */
  char *registry_ca_file;          /* extra PEM CA bundle for registries; NULL: system */
  char *registry_credentials_file; /* JSON {"host[:port]": {"username","password"}} */
  char **insecure_registries;      /* "host[:port]" reached over plain HTTP */
  size_t n_insecure_registries;
  char *boot_kit_dir;       /* NULL: EMBER_BOOT_KIT_DIR (the installed kit) */
  agent_net_config net;     /* "networks", "netns_dir", "netns_transit_subnet" of the file,
                               --netns-dir (docs/networking.md) */
  agent_warm_config warm;   /* "warm_pool" of the file (warm.h, docs/wake.md) */
  bool insecure_from_flags; /* private: the first flag replaces the file's list */
  bool help;                /* --help was given: print usage, exit 0 */
  bool version;             /* --version */
} agent_config;

/* Fills cfg from defaults, the config file named by --config and the flags
 * (flags win). env_home/env_xdg/euid choose the default data dir (pass
 * getenv("HOME"), getenv("XDG_DATA_HOME"), geteuid()). Returns < 0 with err
 * filled (INVALID_ARGUMENT) on any bad value; cfg is then freed. */
int agent_config_load(agent_config *cfg, int argc, char *const *argv, const char *env_home,
                      const char *env_xdg, unsigned euid, cmn_error *err);
void agent_config_free(agent_config *cfg);
void agent_config_usage(FILE *out, const char *prog);

/* Parses a byte size: digits with an optional K, M or G suffix (binary,
 * optionally followed by "iB" or "B"). Exposed for tests. */
int agent_config_parse_size(const char *s, int64_t *out);

#endif
