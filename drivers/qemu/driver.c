/* driver.c: the qemu driver's ops table, and host set-up (init/fini/describe).
 *
 * Config (the "qemu" object of the agent's "drivers" config; all optional):
 *   "binary"             QEMU program (default qemu-system-x86_64 from PATH)
 *   "accel"              "auto" (default) | "kvm" | "tcg"; the environment
 *                        variable EMBER_QEMU_ACCEL overrides it
 *   "machine"            "microvm" (default) | "q35" | "pc"
 *   "cpu"                -cpu model (default: host under KVM, QEMU's under TCG
 *                        and under PVM-backed KVM)
 *   "base_reuse"         bool, default true: guest RAM in a shared file, diff
 *                        snapshots of device state only
 *   "bandwidth_mib"      migration bandwidth cap in MiB/s (default 1048576,
 *                        i.e. effectively none)
 *   "tcg_tb_size_mib"    TCG translation cache size (default QEMU's)
 *   "connect_timeout_ms" QMP socket after spawn (default 10000)
 *   "command_timeout_ms" one QMP command (default 10000)
 *   "migrate_timeout_ms" one snapshot or restore stream (default 600000)
 *   "qemu_img"           qemu-img program for clones' disk overlays (default
 *                        qemu-img from PATH; without it clones' disks are
 *                        copies) */
#include "drivers/qemu/internal.h"
#include "drivers/registry.h"

#include "common/cleanup.h"
#include "common/log.h"
#include "common/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QEMU_CAPS_BASE_REUSE                                                                       \
  (VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE | VMM_CAP_BASE_REUSE | VMM_CAP_GRACEFUL_SHUTDOWN |             \
   VMM_CAP_LIVE_RAM_FILE | VMM_CAP_FORK)
#define QEMU_CAPS_PLAIN                                                                            \
  (VMM_CAP_SNAPSHOT | VMM_CAP_PAUSE | VMM_CAP_GRACEFUL_SHUTDOWN | VMM_CAP_FORK)

static void qemu_host_free(qemu_host *h)
{
  if (h == NULL)
    return;
  free(h->binary);
  free(h->qemu_img);
  free(h->version);
  free(h->machine);
  free(h->cpu);
  free(h->accel_why);
  free(h);
}

/* Runs `<binary> --version` and returns the version number ("7.2.22"). */
static char *qemu_probe_version(const char *binary, cmn_error *err)
{
  const char *const argv[] = {binary, "--version", NULL};
  cleanup_free char *buf = cmn_proc_capture(argv, 1024, 10000, err);
  if (buf == NULL) {
    err->code = CMN_FAILED_PRECONDITION;
    return cmn_err_prefix(err, "%s --version", binary), NULL;
  }
  const char *tag = "version ";
  char *v = strstr(buf, tag);
  if (v == NULL)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "%s --version printed no version", binary),
           NULL;
  v += strlen(tag);
  return cmn_strndup(v, strcspn(v, " \r\n("));
}

static int cfg_string(const cJSON *cfg, const char *key, const char *def, char **out,
                      cmn_error *err)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
  if (v == NULL || cJSON_IsNull(v)) {
    *out = cmn_strdup(def);
    return 0;
  }
  if (!cJSON_IsString(v) || v->valuestring[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "qemu config: %s must be a non-empty string",
                       key);
  *out = cmn_strdup(v->valuestring);
  return 0;
}

static int cfg_number(const cJSON *cfg, const char *key, double def, double min, double max,
                      double *out, cmn_error *err)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
  if (v == NULL || cJSON_IsNull(v)) {
    *out = def;
    return 0;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble < min || v->valuedouble > max)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "qemu config: %s must be a number in [%g, %g]",
                       key, min, max);
  *out = v->valuedouble;
  return 0;
}

static int qemu_parse_config(const cJSON *cfg, qemu_host *h, char **accel_req, cmn_error *err)
{
  if (cfg != NULL && !cJSON_IsObject(cfg))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "qemu config must be an object");
  cleanup_free char *binary = NULL;
  if (cfg_string(cfg, "binary", "qemu-system-x86_64", &binary, err) < 0 ||
      cfg_string(cfg, "accel", "auto", accel_req, err) < 0 ||
      cfg_string(cfg, "machine", "microvm", &h->machine, err) < 0)
    return -1;
  if (strcmp(h->machine, "microvm") != 0 && strcmp(h->machine, "q35") != 0 &&
      strcmp(h->machine, "pc") != 0)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "qemu config: machine must be microvm, q35 or pc, not %s", h->machine);
  const cJSON *cpu = cJSON_GetObjectItemCaseSensitive(cfg, "cpu");
  if (cpu != NULL && !cJSON_IsNull(cpu) && cfg_string(cfg, "cpu", NULL, &h->cpu, err) < 0)
    return -1;
  const cJSON *br = cJSON_GetObjectItemCaseSensitive(cfg, "base_reuse");
  if (br != NULL && !cJSON_IsBool(br))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "qemu config: base_reuse must be a boolean");
  h->base_reuse = br == NULL || cJSON_IsTrue(br);
  double bw, tb, ct, cmdt, mt;
  if (cfg_number(cfg, "bandwidth_mib", 1048576, 1, 16777216, &bw, err) < 0 ||
      cfg_number(cfg, "tcg_tb_size_mib", 0, 0, 65536, &tb, err) < 0 ||
      cfg_number(cfg, "connect_timeout_ms", 10000, 100, 600000, &ct, err) < 0 ||
      cfg_number(cfg, "command_timeout_ms", 10000, 100, 600000, &cmdt, err) < 0 ||
      cfg_number(cfg, "migrate_timeout_ms", 600000, 1000, 86400000, &mt, err) < 0)
    return -1;
  h->max_bandwidth = (uint64_t)bw << 20;
  h->tcg_tb_size_mib = (uint32_t)tb;
  h->connect_timeout_ms = (int)ct;
  h->command_timeout_ms = (int)cmdt;
  h->migrate_timeout_ms = (int)mt;
  h->binary = cmn_which(binary);
  if (h->binary == NULL)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "QEMU binary %s not found", binary);
  /* qemu-img makes the clones' qcow2 overlays (disk.c); without it a clone's
   * disk is a copy. */
  cleanup_free char *img = NULL;
  if (cfg_string(cfg, "qemu_img", "qemu-img", &img, err) < 0)
    return -1;
  h->qemu_img = cmn_which(img);
  return 0;
}

static int qemu_init(const cJSON *config, void **state, cmn_error *err)
{
  qemu_host *h = cmn_calloc(1, sizeof *h);
  cleanup_free char *accel_req = NULL;
  if (qemu_parse_config(config, h, &accel_req, err) < 0) {
    qemu_host_free(h);
    return -1;
  }
  const char *env = getenv("EMBER_QEMU_ACCEL");
  if (env != NULL && env[0] != '\0') {
    free(accel_req);
    accel_req = cmn_strdup(env);
  }
  if (qemu_accel_choose(accel_req, &h->accel, &h->accel_why, err) < 0 ||
      (h->version = qemu_probe_version(h->binary, err)) == NULL) {
    qemu_host_free(h);
    return -1;
  }
  h->kvm_pvm = qemu_accel_kvm_is_pvm();
  if (env != NULL && env[0] != '\0') {
    char *why = cmn_asprintf("%s via EMBER_QEMU_ACCEL", h->accel_why);
    free(h->accel_why);
    h->accel_why = why;
  }
  cmn_info(NULL, "init", "qemu %s at %s, machine %s, accel %s, base reuse %s", h->version,
           h->binary, h->machine, h->accel_why, h->base_reuse ? "on" : "off");
  *state = h;
  return 0;
}

static void qemu_fini(void *state) { qemu_host_free(state); }

static char *qemu_describe(void *state)
{
  const qemu_host *h = state;
  return cmn_asprintf("QEMU %s (%s), machine %s, accel %s, base reuse %s", h->version, h->binary,
                      h->machine, h->accel_why, h->base_reuse ? "on" : "off");
}

static unsigned qemu_effective_caps(const void *state)
{
  const qemu_host *h = state;
  return h != NULL && !h->base_reuse ? QEMU_CAPS_PLAIN : QEMU_CAPS_BASE_REUSE;
}

const vmm_driver vmm_qemu_driver = {
    .type = "qemu",
    .caps = QEMU_CAPS_BASE_REUSE,
    .init = qemu_init,
    .fini = qemu_fini,
    .describe = qemu_describe,
    .effective_caps = qemu_effective_caps,
    .start = qemu_start,
    .adopt = qemu_adopt,
    .query = qemu_query,
    .pause = qemu_pause,
    .resume = qemu_resume,
    .snapshot = qemu_snapshot,
    .restore = qemu_restore,
    .save = qemu_save,
    .restore_frozen = qemu_restore_frozen,
    .restore_prepare = qemu_restore_prepare,
    .warm_discard = qemu_warm_discard,
    .disk_overlay = qemu_disk_overlay,
    .disk_flatten = qemu_disk_flatten,
    .shutdown = qemu_shutdown,
    .release = qemu_release,
    .cleanup = qemu_cleanup,
};
