/* validate.c: request checks (see validate.h). */
#include "agent/validate.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool validate_name_char(char c)
{
  return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-';
}

/* The shared charset rule of names, ids and TAP device names. */
static int validate_token(const char *field, const char *name, cmn_error *err)
{
  if (name == NULL || name[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s is required", field);
  size_t n = strnlen(name, AGENT_NAME_MAX + 1);
  if (n > AGENT_NAME_MAX)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s is longer than %d characters", field,
                       AGENT_NAME_MAX);
  if (!isalnum((unsigned char)name[0]))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s must start with a letter or digit", field);
  for (size_t i = 0; i < n; i++)
    if (!validate_name_char(name[i]))
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "%s may hold only letters, digits, '.', '_' and '-' "
                         "(found byte 0x%02x at %zu)",
                         field, (unsigned char)name[i], i);
  return 0;
}

bool agent_is_id_form(const char *s)
{
  return s != NULL && strncmp(s, AGENT_ID_PREFIX, strlen(AGENT_ID_PREFIX)) == 0;
}

int agent_validate_name(const char *field, const char *name, cmn_error *err)
{
  if (validate_token(field, name, err) < 0)
    return -1;
  if (agent_is_id_form(name))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "%s may not start with \"" AGENT_ID_PREFIX "\": that prefix is reserved "
                       "for instance ids, so a name can never be mistaken for an id",
                       field);
  return 0;
}

int agent_validate_id(const char *field, const char *id, cmn_error *err)
{
  size_t pre = strlen(AGENT_ID_PREFIX);
  bool ok = agent_is_id_form(id) && strlen(id) == pre + AGENT_ID_HEX_DIGITS;
  for (size_t i = pre; ok && id[i] != '\0'; i++)
    ok = isxdigit((unsigned char)id[i]) && !isupper((unsigned char)id[i]);
  if (!ok)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "%s is not an instance id (\"" AGENT_ID_PREFIX "\" and %d lowercase hex "
                       "digits)",
                       field, AGENT_ID_HEX_DIGITS);
  return 0;
}

int agent_validate_id_or_name(const char *field, const char *s, cmn_error *err)
{
  return agent_is_id_form(s) ? agent_validate_id(field, s, err)
                             : agent_validate_name(field, s, err);
}

static int validate_text(const char *field, const char *s, size_t max, bool no_comma,
                         cmn_error *err)
{
  size_t n = strnlen(s, max + 1);
  if (n > max)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s is longer than %zu bytes", field, max);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s holds a control character at byte %zu",
                         field, i);
    if (no_comma && c == ',')
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "%s may not hold ',' (VMM options are comma-separated)", field);
  }
  return 0;
}

static int validate_file(const char *field, const char *path, cmn_error *err)
{
  if (path == NULL || path[0] == '\0')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s is required", field);
  if (validate_text(field, path, AGENT_PATH_MAX, true, err) < 0)
    return -1;
  if (path[0] != '/')
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s must be an absolute path: %s", field, path);
  /* What the path leads to is the fence's business (hostfiles.h). */
  return 0;
}

static int validate_mac(const char *mac, cmn_error *err)
{
  if (strlen(mac) != 17)
    goto bad;
  for (int i = 0; i < 17; i++) {
    if (i % 3 == 2) {
      if (mac[i] != ':')
        goto bad;
    } else if (!isxdigit((unsigned char)mac[i])) {
      goto bad;
    }
  }
  return 0;
bad:
  return cmn_err_set(err, CMN_INVALID_ARGUMENT, "mac_address must look like aa:bb:cc:dd:ee:ff");
}

int agent_validate_spec(const vmm_spec *spec, const agent_host_fence *fence, cmn_error *err)
{
  if (spec->vcpus < 1 || spec->vcpus > AGENT_VCPUS_MAX)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "spec.vcpus must be 1 to %d (got %u)",
                       AGENT_VCPUS_MAX, spec->vcpus);
  if (spec->memory_mib < AGENT_MEMORY_MIB_MIN || spec->memory_mib > AGENT_MEMORY_MIB_MAX)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "spec.memory_mib must be %d to %d (got %llu)",
                       AGENT_MEMORY_MIB_MIN, AGENT_MEMORY_MIB_MAX,
                       (unsigned long long)spec->memory_mib);
  if (validate_file("spec.kernel_path", spec->kernel, err) < 0)
    return -1;
  if (spec->initrd != NULL && spec->initrd[0] != '\0' &&
      validate_file("spec.initrd_path", spec->initrd, err) < 0)
    return -1;
  if (spec->cmdline != NULL &&
      validate_text("spec.cmdline", spec->cmdline, AGENT_CMDLINE_MAX, false, err) < 0)
    return -1;
  if (spec->n_disks > AGENT_DISKS_MAX)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "at most %d disks", AGENT_DISKS_MAX);
  for (size_t i = 0; i < spec->n_disks; i++) {
    char field[48];
    snprintf(field, sizeof field, "spec.disks[%zu].path", i);
    if (validate_file(field, spec->disks[i].path, err) < 0)
      return -1;
  }
  if (spec->vsock_cid != 0 && (spec->vsock_cid < 3 || spec->vsock_cid == 0xffffffffu))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                       "spec.vsock.guest_cid must be 3 to 4294967294 (got %u)", spec->vsock_cid);
  if (spec->n_nics > AGENT_NICS_MAX)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "at most %d network interfaces", AGENT_NICS_MAX);
  for (size_t i = 0; i < spec->n_nics; i++) {
    const char *tap = spec->nics[i].tap;
    if (tap == NULL || tap[0] == '\0' || strlen(tap) > 15)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "network_interfaces.tap_device must be 1 to 15 characters");
    if (validate_token("network_interfaces.tap_device", tap, err) < 0)
      return -1;
    if (spec->nics[i].mac != NULL && spec->nics[i].mac[0] != '\0' &&
        validate_mac(spec->nics[i].mac, err) < 0)
      return -1;
  }
  /* Last, the files themselves: opened and checked as Start will (the same
   * fence), so a path Start would refuse is refused now. */
  if (fence != NULL)
    return agent_host_files_check(fence, spec, CMN_INVALID_ARGUMENT, err);
  return 0;
}
