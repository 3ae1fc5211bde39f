/* meta.c: the driver's two small JSON files (see internal.h).
 *
 * <snap_dir>/qemu.json says which kind of stream <snap_dir>/state is:
 *   {"format":1, "ram":"shared"|"stream", "memory_mib":N, "consumed":bool,
 *    "ram_reserved":bool, "frozen":bool, "vmgenid":"<uuid>"}
 *   "shared": the stream holds device state only (x-ignore-shared) and guest
 *             RAM is the file <snap_dir>/memory;
 *   "stream": the stream holds all of guest RAM.
 *   "consumed": a restored guest has run on <snap_dir>/memory since, so the
 *             state no longer matches it and a second restore is refused.
 *   "frozen":   written by save(); the folder is only ever read (clones map
 *               <snap_dir>/memory privately), so restore() refuses it.
 *   "vmgenid":  the VM's generation ID when it had a vmgenid device (absent
 *               otherwise, and in snapshots of older emberd versions).
 * <vm->dir>/qemu-vm.json says how the running VM's RAM is backed, so that a
 * re-adopted VM (agent restart) is snapshotted correctly:
 *   {"format":1, "ram":"shared"|"anonymous", "ram_dev":N, "ram_ino":N,
 *    "vmgenid":"<uuid>"}
 * Both are written atomically (temp file, rename). Only qemu.json's "consumed"
 * mark is written durably (fsyncs): as a snapshot writes qemu.json, the snapshot
 * manager fsyncs the whole folder before it marks it complete, and qemu-vm.json
 * only matters for a live VMM, which a host crash would have ended anyway. */
#include "drivers/qemu/internal.h"

#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>

#define META_FORMAT 1
#define META_MAX 65536

static int meta_write(const char *path, cJSON *obj, bool durable, cmn_error *err)
{
  cleanup_free char *text = cJSON_Print(obj);
  cJSON_Delete(obj);
  if (text == NULL)
    return cmn_err_set(err, CMN_INTERNAL, "cannot encode %s", path);
  cleanup_free char *line = cmn_asprintf("%s\n", text);
  return durable ? cmn_file_write_atomic(path, line, strlen(line), 0644, err)
                 : cmn_file_replace(path, line, strlen(line), 0644, err);
}

static cJSON *meta_read(const char *path, cmn_error *err)
{
  cleanup_free char *text = NULL;
  size_t len = 0;
  if (cmn_file_read(path, META_MAX, &text, &len, err) < 0)
    return NULL;
  cJSON *obj = cJSON_ParseWithLength(text, len);
  if (!cJSON_IsObject(obj)) {
    cJSON_Delete(obj);
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "%s is not valid JSON", path), NULL;
  }
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, "format");
  if (!cJSON_IsNumber(f) || f->valueint != META_FORMAT ||
      fabs(modf(f->valuedouble, &(double){0})) > 0) {
    cJSON_Delete(obj);
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "%s has an unknown format", path), NULL;
  }
  return obj;
}

static const char *meta_string(const cJSON *obj, const char *key)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Device and inode numbers are stored as decimal strings: they may exceed
 * the 2^53 that a JSON number holds exactly. */
static uint64_t meta_u64(const cJSON *obj, const char *key)
{
  const char *s = meta_string(obj, key);
  return s != NULL ? strtoull(s, NULL, 10) : 0;
}

static void meta_add_u64(cJSON *obj, const char *key, uint64_t v)
{
  char buf[32];
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
  cJSON_AddStringToObject(obj, key, buf);
}

/* Copies a well-formed UUID (8-4-4-4-12 hex digits) from key into out; ""
 * when absent. A malformed one is an error: it would reach QEMU's command
 * line. */
static int meta_guid(const cJSON *obj, const char *key, char out[QEMU_GUID_LEN + 1],
                     const char *path, cmn_error *err)
{
  out[0] = '\0';
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (v == NULL)
    return 0;
  const char *s = cJSON_IsString(v) ? v->valuestring : "";
  bool ok = strlen(s) == QEMU_GUID_LEN;
  for (size_t i = 0; ok && i < QEMU_GUID_LEN; i++)
    ok = (i == 8 || i == 13 || i == 18 || i == 23) ? s[i] == '-' : isxdigit((unsigned char)s[i]);
  if (!ok)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "%s: %s is not a UUID", path, key);
  memcpy(out, s, QEMU_GUID_LEN + 1);
  return 0;
}

int qemu_vmgenid_new(char out[QEMU_GUID_LEN + 1], cmn_error *err)
{
  unsigned char b[16];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "getrandom");
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  snprintf(out, QEMU_GUID_LEN + 1,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
           b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return 0;
}

int qemu_vm_meta_write(const vmm_vm *vm, const qemu_vm_meta *m, cmn_error *err)
{
  cleanup_free char *path = cmn_asprintf("%s/%s", vm->dir, QEMU_VM_META);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "format", META_FORMAT);
  cJSON_AddStringToObject(o, "ram", m->ram_shared ? "shared" : "anonymous");
  meta_add_u64(o, "ram_dev", (uint64_t)m->ram_dev);
  meta_add_u64(o, "ram_ino", (uint64_t)m->ram_ino);
  cJSON_AddBoolToObject(o, "ram_reserved", m->ram_reserved);
  if (m->vmgenid[0] != '\0')
    cJSON_AddStringToObject(o, "vmgenid", m->vmgenid);
  /* Only read to re-adopt a live QEMU after an agent restart, when the page
   * cache is intact; a host crash ends the VMM too. So no fsync. */
  return meta_write(path, o, false, err);
}

int qemu_vm_meta_read(const vmm_vm *vm, qemu_vm_meta *m, cmn_error *err)
{
  cleanup_free char *path = cmn_asprintf("%s/%s", vm->dir, QEMU_VM_META);
  cJSON *o = meta_read(path, err);
  if (o == NULL)
    return -1;
  const char *ram = meta_string(o, "ram");
  m->ram_shared = ram != NULL && strcmp(ram, "shared") == 0;
  m->ram_dev = (dev_t)meta_u64(o, "ram_dev");
  m->ram_ino = (ino_t)meta_u64(o, "ram_ino");
  m->ram_reserved = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ram_reserved"));
  int rc = meta_guid(o, "vmgenid", m->vmgenid, path, err);
  cJSON_Delete(o);
  return rc;
}

int qemu_snap_meta_write(const char *snap_dir, const qemu_snap_meta *m, cmn_error *err)
{
  cleanup_free char *path = cmn_asprintf("%s/%s", snap_dir, QEMU_SNAP_META);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "format", META_FORMAT);
  cJSON_AddStringToObject(o, "ram", m->ram_shared ? "shared" : "stream");
  cJSON_AddNumberToObject(o, "memory_mib", (double)m->memory_mib);
  cJSON_AddBoolToObject(o, "consumed", m->consumed);
  if (m->ram_shared)
    cJSON_AddBoolToObject(o, "ram_reserved", m->ram_reserved);
  if (m->frozen)
    cJSON_AddBoolToObject(o, "frozen", true);
  if (m->vmgenid[0] != '\0')
    cJSON_AddStringToObject(o, "vmgenid", m->vmgenid);
  return meta_write(path, o, m->consumed, err);
}

int qemu_snap_meta_read(const char *snap_dir, qemu_snap_meta *m, cmn_error *err)
{
  cleanup_free char *path = cmn_asprintf("%s/%s", snap_dir, QEMU_SNAP_META);
  cJSON *o = meta_read(path, err);
  if (o == NULL)
    return -1;
  const char *ram = meta_string(o, "ram");
  const cJSON *mib = cJSON_GetObjectItemCaseSensitive(o, "memory_mib");
  if (ram == NULL || (strcmp(ram, "shared") != 0 && strcmp(ram, "stream") != 0) ||
      !cJSON_IsNumber(mib) || mib->valuedouble < 1) {
    cJSON_Delete(o);
    return cmn_err_set(err, CMN_FAILED_PRECONDITION, "%s is incomplete", path);
  }
  m->ram_shared = strcmp(ram, "shared") == 0;
  m->memory_mib = (uint64_t)mib->valuedouble;
  m->consumed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "consumed"));
  m->ram_reserved = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ram_reserved"));
  m->frozen = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "frozen"));
  int rc = meta_guid(o, "vmgenid", m->vmgenid, path, err);
  cJSON_Delete(o);
  return rc;
}
