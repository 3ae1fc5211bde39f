/* record.c: an instance's persistent record as JSON (see record.h). */
#include "agent/record.h"
#include "agent/idle.h"
#include "agent/instance_image.h"
#include "agent/instance_net.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/mem.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RECORD_VERSION 1
#define RECORD_MAX_BYTES (1u << 20)

static const char *const record_state_names[] = {"unspecified", "stopped", "running",
                                                 "paused",      "standby", "unknown"};
static const char *const record_kind_names[] = {"none", "full", "diff"};

void agent_instance_view_free(agent_instance_view *v)
{
  if (v == NULL)
    return;
  free(v->id);
  free(v->name);
  free(v->hypervisor);
  vmm_spec_free(&v->spec);
  free(v->console_log_path);
  free(v->status_message);
  agent_labels_free(v->labels, v->n_labels);
  free(v->request_id);
  free(v->fork_snapshot);
  free(v->fork_source);
  agent_image_spec_free(&v->image);
  agent_net_spec_free(&v->net);
  agent_guest_status_free(&v->guest_agent);
  memset(v, 0, sizeof *v);
}

void agent_labels_free(agent_label *l, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(l[i].key);
    free(l[i].value);
  }
  free(l);
}

static int record_label_cmp(const void *a, const void *b)
{
  return strcmp(((const agent_label *)a)->key, ((const agent_label *)b)->key);
}

void agent_labels_copy_sorted(agent_label **dst, size_t *dst_n, const agent_label *src, size_t n)
{
  *dst = NULL;
  *dst_n = 0;
  if (n == 0)
    return;
  agent_label *l = cmn_calloc(n, sizeof *l);
  for (size_t i = 0; i < n; i++) {
    l[i].key = cmn_strdup(src[i].key);
    l[i].value = cmn_strdup(src[i].value != NULL ? src[i].value : "");
  }
  qsort(l, n, sizeof *l, record_label_cmp);
  *dst = l;
  *dst_n = n;
}

const char *agent_labels_get(const agent_label *l, size_t n, const char *key)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp(l[i].key, key) == 0)
      return l[i].value;
  return NULL;
}

/* A label name or value: up to 63 bytes of [A-Za-z0-9._-], first and last a
 * letter or digit; empty only when allow_empty. */
static bool record_label_name_ok(const char *s, size_t n, bool allow_empty)
{
  if (n == 0)
    return allow_empty;
  if (n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(isalnum(c) || c == '.' || c == '_' || c == '-'))
      return false;
  }
  return true;
}

static bool record_label_prefix_ok(const char *s, size_t n)
{
  if (n == 0 || n > 253 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!((isdigit(c) || islower(c)) || c == '-' || c == '.'))
      return false;
  }
  return true;
}

int agent_labels_validate(const agent_label *l, size_t n, cmn_error *err)
{
  if (n > AGENT_LABELS_MAX) {
    cmn_err_set(err, CMN_INVALID_ARGUMENT, "labels: at most %d labels (got %zu)", AGENT_LABELS_MAX,
                n);
    return cmn_err_field(err, "labels");
  }
  for (size_t i = 0; i < n; i++) {
    const char *k = l[i].key != NULL ? l[i].key : "";
    const char *v = l[i].value != NULL ? l[i].value : "";
    size_t kn = strnlen(k, 320), vn = strnlen(v, 64);
    const char *slash = memchr(k, '/', kn);
    const char *name = slash ? slash + 1 : k;
    size_t nn = kn - (size_t)(name - k);
    if (kn >= 320 || (slash && !record_label_prefix_ok(k, (size_t)(slash - k))) ||
        !record_label_name_ok(name, nn, false)) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT,
                  "labels: key '%.80s' is not [prefix/]name: name 1 to 63 characters of "
                  "[A-Za-z0-9._-] starting and ending with a letter or digit, prefix a "
                  "lower-case DNS subdomain",
                  k);
      return cmn_err_field(err, "labels");
    }
    if (!record_label_name_ok(v, vn, true)) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT,
                  "labels: the value of '%.80s' must be empty or 1 to 63 characters of "
                  "[A-Za-z0-9._-] starting and ending with a letter or digit",
                  k);
      return cmn_err_field(err, "labels");
    }
    for (size_t j = 0; j < i; j++)
      if (l[j].key != NULL && strcmp(l[j].key, k) == 0) {
        cmn_err_set(err, CMN_INVALID_ARGUMENT, "labels: key '%.80s' is given twice", k);
        return cmn_err_field(err, "labels");
      }
  }
  return 0;
}

int agent_request_id_validate(const char *id, cmn_error *err)
{
  size_t n = strnlen(id, AGENT_REQUEST_ID_MAX + 1);
  bool ok = n > 0 && n <= AGENT_REQUEST_ID_MAX;
  for (size_t i = 0; ok && i < n; i++) {
    unsigned char c = (unsigned char)id[i];
    ok = isalnum(c) || c == '.' || c == '_' || c == ':' || c == '-';
  }
  if (ok)
    return 0;
  cmn_err_set(err, CMN_INVALID_ARGUMENT,
              "request_id must be 1 to %d characters of [A-Za-z0-9._:-] (a UUID, for example)",
              AGENT_REQUEST_ID_MAX);
  return cmn_err_field(err, "request_id");
}

static bool record_str_eq(const char *a, const char *b)
{
  /* NULL and "" are the same: optional strings are stored either way. */
  return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static bool record_spec_eq(const vmm_spec *a, const vmm_spec *b)
{
  if (a->vcpus != b->vcpus || a->memory_mib != b->memory_mib || a->vsock_cid != b->vsock_cid ||
      a->guest_agent != b->guest_agent || !record_str_eq(a->kernel, b->kernel) ||
      !record_str_eq(a->initrd, b->initrd) || !record_str_eq(a->cmdline, b->cmdline) ||
      a->n_disks != b->n_disks || a->n_nics != b->n_nics)
    return false;
  for (size_t i = 0; i < a->n_disks; i++)
    if (!record_str_eq(a->disks[i].path, b->disks[i].path) ||
        a->disks[i].read_only != b->disks[i].read_only)
      return false;
  for (size_t i = 0; i < a->n_nics; i++)
    if (!record_str_eq(a->nics[i].tap, b->nics[i].tap) ||
        !record_str_eq(a->nics[i].mac, b->nics[i].mac))
      return false;
  return true;
}

bool agent_view_matches_create(const agent_instance_view *v, const agent_create_req *req)
{
  if (!record_str_eq(v->name, req->name) || !record_str_eq(v->hypervisor, req->hypervisor) ||
      !record_spec_eq(&v->spec, req->spec) || v->n_labels != req->n_labels ||
      !agent_image_spec_eq(&v->image, req->image) || !agent_net_spec_eq_request(&v->net, req->net))
    return false;
  /* Both normalized (agent_auto_standby_normalize): defaults filled in. */
  agent_auto_standby none = {0};
  const agent_auto_standby *a = &v->auto_standby,
                           *b = req->auto_standby != NULL ? req->auto_standby : &none;
  if (a->idle_seconds != b->idle_seconds || a->max_cpu_percent < b->max_cpu_percent ||
      a->max_cpu_percent > b->max_cpu_percent || a->max_net_bps != b->max_net_bps)
    return false;
  for (size_t i = 0; i < req->n_labels; i++) {
    const char *have = agent_labels_get(v->labels, v->n_labels, req->labels[i].key);
    if (have == NULL || !record_str_eq(have, req->labels[i].value))
      return false;
  }
  return true;
}

void agent_view_copy(agent_instance_view *dst, const agent_instance_view *src)
{
  *dst = *src;
  dst->id = cmn_strdup(src->id);
  dst->name = cmn_strdup(src->name);
  dst->hypervisor = cmn_strdup(src->hypervisor);
  vmm_spec_copy(&dst->spec, &src->spec);
  dst->console_log_path = cmn_strdup(src->console_log_path);
  dst->status_message = cmn_strdup(src->status_message);
  agent_labels_copy_sorted(&dst->labels, &dst->n_labels, src->labels, src->n_labels);
  dst->request_id = cmn_strdup(src->request_id);
  dst->fork_snapshot = cmn_strdup(src->fork_snapshot);
  dst->fork_source = cmn_strdup(src->fork_source);
  agent_image_spec_copy(&dst->image, &src->image);
  agent_net_spec_copy(&dst->net, &src->net);
  agent_guest_status_copy(&dst->guest_agent, &src->guest_agent);
}

void agent_guest_status_free(agent_guest_status *g)
{
  free(g->version);
  free(g->message);
  memset(g, 0, sizeof *g);
}

void agent_guest_status_copy(agent_guest_status *dst, const agent_guest_status *src)
{
  *dst = *src;
  dst->version = cmn_strdup(src->version);
  dst->message = cmn_strdup(src->message);
}

void agent_record_free(agent_record *r)
{
  if (r == NULL)
    return;
  agent_instance_view_free(&r->view);
  memset(r, 0, sizeof *r);
}

void agent_record_copy(agent_record *dst, const agent_record *src)
{
  agent_view_copy(&dst->view, &src->view);
  dst->proc = src->proc;
}

static void record_add_str(cJSON *o, const char *key, const char *val)
{
  if (val != NULL)
    cJSON_AddStringToObject(o, key, val);
}

char *agent_record_to_json(const agent_record *r)
{
  const agent_instance_view *v = &r->view;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "version", RECORD_VERSION);
  record_add_str(o, "id", v->id);
  record_add_str(o, "name", v->name);
  record_add_str(o, "hypervisor", v->hypervisor);
  cJSON *spec = cJSON_AddObjectToObject(o, "spec");
  cJSON_AddNumberToObject(spec, "vcpus", v->spec.vcpus);
  cJSON_AddNumberToObject(spec, "memory_mib", (double)v->spec.memory_mib);
  record_add_str(spec, "kernel", v->spec.kernel);
  record_add_str(spec, "initrd", v->spec.initrd);
  record_add_str(spec, "cmdline", v->spec.cmdline);
  if (v->spec.vsock_cid != 0)
    cJSON_AddNumberToObject(spec, "vsock_cid", v->spec.vsock_cid);
  if (v->spec.guest_agent)
    cJSON_AddBoolToObject(spec, "guest_agent", true);
  cJSON *disks = cJSON_AddArrayToObject(spec, "disks");
  for (size_t i = 0; i < v->spec.n_disks; i++) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "path", v->spec.disks[i].path);
    cJSON_AddBoolToObject(d, "read_only", v->spec.disks[i].read_only);
    cJSON_AddItemToArray(disks, d);
  }
  cJSON *nics = cJSON_AddArrayToObject(spec, "nics");
  for (size_t i = 0; i < v->spec.n_nics; i++) {
    cJSON *n = cJSON_CreateObject();
    cJSON_AddStringToObject(n, "tap", v->spec.nics[i].tap);
    record_add_str(n, "mac", v->spec.nics[i].mac);
    cJSON_AddItemToArray(nics, n);
  }
  int st = (size_t)v->state <= AGENT_STATE_UNKNOWN ? (int)v->state : 0;
  cJSON_AddStringToObject(o, "state", record_state_names[st]);
  int kind = (size_t)v->last_snapshot_kind <= AGENT_SNAP_DIFF ? (int)v->last_snapshot_kind : 0;
  cJSON_AddStringToObject(o, "last_snapshot_kind", record_kind_names[kind]);
  cJSON_AddNumberToObject(o, "last_standby_us", (double)v->last_standby_us);
  cJSON_AddNumberToObject(o, "last_restore_us", (double)v->last_restore_us);
  cJSON_AddNumberToObject(o, "created_at_us", (double)v->created_at_us);
  cJSON_AddNumberToObject(o, "updated_at_us", (double)v->updated_at_us);
  record_add_str(o, "console_log_path", v->console_log_path);
  record_add_str(o, "status_message", v->status_message);
  record_add_str(o, "request_id", v->request_id);
  record_add_str(o, "fork_snapshot", v->fork_snapshot);
  record_add_str(o, "fork_source", v->fork_source);
  agent_image_spec_to_json(o, &v->image);
  agent_net_spec_to_json(o, &v->net);
  if (v->auto_standby.idle_seconds > 0) {
    cJSON *a = cJSON_AddObjectToObject(o, "auto_standby");
    cJSON_AddNumberToObject(a, "idle_seconds", v->auto_standby.idle_seconds);
    cJSON_AddNumberToObject(a, "max_cpu_percent", v->auto_standby.max_cpu_percent);
    cJSON_AddNumberToObject(a, "max_net_bps", (double)v->auto_standby.max_net_bps);
  }
  cJSON *labels = cJSON_AddObjectToObject(o, "labels");
  for (size_t i = 0; i < v->n_labels; i++)
    cJSON_AddStringToObject(labels, v->labels[i].key, v->labels[i].value);
  cJSON *vmm = cJSON_AddObjectToObject(o, "vmm");
  cJSON_AddNumberToObject(vmm, "pid", r->proc.pid);
  cJSON_AddNumberToObject(vmm, "start_time", (double)r->proc.start_time);
  char *out = cJSON_Print(o);
  cJSON_Delete(o);
  if (out == NULL)
    abort();
  return out;
}

static const char *record_get_str(const cJSON *o, const char *key)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* The number at key as an integer (fraction dropped); 0 when absent, not a
 * number or outside int64_t (converting such a double is undefined). */
static int64_t record_get_int(const cJSON *o, const char *key)
{
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  double d = cJSON_IsNumber(it) ? it->valuedouble : 0;
  if (!(d >= (double)INT64_MIN && d < (double)INT64_MAX))
    return 0;
  return (int64_t)d;
}

static int record_lookup(const char *const *names, int n, const char *s)
{
  for (int i = 0; s != NULL && i < n; i++)
    if (strcmp(names[i], s) == 0)
      return i;
  return -1;
}

int agent_record_from_json(const char *json, agent_record *r, cmn_error *err)
{
  memset(r, 0, sizeof *r);
  cJSON *o = cJSON_Parse(json);
  if (o == NULL || !cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return cmn_err_set(err, CMN_INTERNAL, "record is not a JSON object");
  }
  agent_instance_view *v = &r->view;
  int rc = -1;
  /* Older versions are read (an upgraded emberd keeps every instance); a newer
   * one is refused rather than misread. */
  int version = (int)record_get_int(o, "version");
  if (version < 1 || version > RECORD_VERSION) {
    cmn_err_set(err, CMN_FAILED_PRECONDITION,
                "record version %d: this emberd reads versions 1 to %d", version, RECORD_VERSION);
    goto out;
  }
  v->id = cmn_strdup(record_get_str(o, "id"));
  v->name = cmn_strdup(record_get_str(o, "name"));
  v->hypervisor = cmn_strdup(record_get_str(o, "hypervisor"));
  if (v->id == NULL || v->name == NULL || v->hypervisor == NULL) {
    cmn_err_set(err, CMN_INTERNAL, "record lacks id, name or hypervisor");
    goto out;
  }
  const cJSON *spec = cJSON_GetObjectItemCaseSensitive(o, "spec");
  v->spec.vcpus = (uint32_t)record_get_int(spec, "vcpus");
  v->spec.memory_mib = (uint64_t)record_get_int(spec, "memory_mib");
  v->spec.kernel = cmn_strdup(record_get_str(spec, "kernel"));
  v->spec.initrd = cmn_strdup(record_get_str(spec, "initrd"));
  v->spec.cmdline = cmn_strdup(record_get_str(spec, "cmdline"));
  v->spec.vsock_cid = (uint32_t)record_get_int(spec, "vsock_cid");
  v->spec.guest_agent = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(spec, "guest_agent"));
  const cJSON *disks = cJSON_GetObjectItemCaseSensitive(spec, "disks");
  int nd = cJSON_IsArray(disks) ? cJSON_GetArraySize(disks) : 0;
  v->spec.disks = cmn_calloc((size_t)nd, sizeof *v->spec.disks);
  for (int i = 0; i < nd; i++) {
    const cJSON *d = cJSON_GetArrayItem(disks, i);
    v->spec.disks[i].path = cmn_strdup(record_get_str(d, "path"));
    v->spec.disks[i].read_only = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "read_only"));
    if (v->spec.disks[i].path == NULL) {
      v->spec.n_disks = (size_t)i;
      cmn_err_set(err, CMN_INTERNAL, "record disk %d has no path", i);
      goto out;
    }
  }
  v->spec.n_disks = (size_t)nd;
  const cJSON *nics = cJSON_GetObjectItemCaseSensitive(spec, "nics");
  int nn = cJSON_IsArray(nics) ? cJSON_GetArraySize(nics) : 0;
  v->spec.nics = cmn_calloc((size_t)nn, sizeof *v->spec.nics);
  for (int i = 0; i < nn; i++) {
    const cJSON *n = cJSON_GetArrayItem(nics, i);
    v->spec.nics[i].tap = cmn_strdup(record_get_str(n, "tap"));
    v->spec.nics[i].mac = cmn_strdup(record_get_str(n, "mac"));
    if (v->spec.nics[i].tap == NULL) {
      v->spec.n_nics = (size_t)i + 1;
      cmn_err_set(err, CMN_INTERNAL, "record nic %d has no tap", i);
      goto out;
    }
  }
  v->spec.n_nics = (size_t)nn;
  int st = record_lookup(record_state_names, 6, record_get_str(o, "state"));
  int kind = record_lookup(record_kind_names, 3, record_get_str(o, "last_snapshot_kind"));
  if (st <= 0 || kind < 0) {
    cmn_err_set(err, CMN_INTERNAL, "record has a bad state or snapshot kind");
    goto out;
  }
  v->state = (agent_state)st;
  v->last_snapshot_kind = (agent_snap_kind)kind;
  v->last_standby_us = record_get_int(o, "last_standby_us");
  v->last_restore_us = record_get_int(o, "last_restore_us");
  v->created_at_us = record_get_int(o, "created_at_us");
  v->updated_at_us = record_get_int(o, "updated_at_us");
  v->console_log_path = cmn_strdup(record_get_str(o, "console_log_path"));
  v->status_message = cmn_strdup(record_get_str(o, "status_message"));
  v->request_id = cmn_strdup(record_get_str(o, "request_id"));
  v->fork_snapshot = cmn_strdup(record_get_str(o, "fork_snapshot"));
  v->fork_source = cmn_strdup(record_get_str(o, "fork_source"));
  agent_image_spec_from_json(o, &v->image);
  agent_net_spec_from_json(o, &v->net);
  {
    /* Idle auto-standby (absent before it existed, and when off). A value
     * out of bounds turns it off rather than failing the whole record. */
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "auto_standby");
    const cJSON *cpu = cJSON_GetObjectItemCaseSensitive(a, "max_cpu_percent");
    agent_auto_standby in = {
        .idle_seconds = (uint32_t)record_get_int(a, "idle_seconds"),
        .max_cpu_percent = cJSON_IsNumber(cpu) ? cpu->valuedouble : 0,
        .max_net_bps = (uint64_t)record_get_int(a, "max_net_bps"),
    };
    cmn_error e2 = {0};
    if (record_get_int(a, "idle_seconds") < 0 ||
        agent_auto_standby_normalize(&in, &v->auto_standby, &e2) < 0)
      memset(&v->auto_standby, 0, sizeof v->auto_standby);
  }
  /* Labels (absent in records written before they existed: none). */
  const cJSON *labels = cJSON_GetObjectItemCaseSensitive(o, "labels");
  int nl = cJSON_IsObject(labels) ? cJSON_GetArraySize(labels) : 0;
  if (nl > 0) {
    agent_label *l = cmn_calloc((size_t)nl, sizeof *l);
    size_t k = 0;
    for (const cJSON *it = labels->child; it != NULL && k < (size_t)nl; it = it->next)
      if (it->string != NULL && cJSON_IsString(it)) {
        l[k].key = it->string;
        l[k].value = it->valuestring;
        k++;
      }
    int bad = agent_labels_validate(l, k, err);
    if (bad == 0)
      agent_labels_copy_sorted(&v->labels, &v->n_labels, l, k);
    free(l);
    if (bad < 0) {
      cmn_err_prefix(err, "record");
      err->code = CMN_INTERNAL;
      goto out;
    }
  }
  const cJSON *vmm = cJSON_GetObjectItemCaseSensitive(o, "vmm");
  r->proc.pid = (pid_t)record_get_int(vmm, "pid");
  r->proc.start_time = (uint64_t)record_get_int(vmm, "start_time");
  v->vmm_pid = r->proc.pid;
  rc = 0;
out:
  cJSON_Delete(o);
  if (rc < 0)
    agent_record_free(r);
  return rc;
}

int agent_record_save(const char *dir, const agent_record *r, cmn_error *err)
{
  cleanup_free char *json = agent_record_to_json(r);
  cleanup_free char *path = cmn_asprintf("%s/%s", dir, AGENT_RECORD_FILE);
  return cmn_file_write_atomic(path, json, strlen(json), 0640, err);
}

int agent_record_load(const char *dir, agent_record *r, cmn_error *err)
{
  cleanup_free char *path = cmn_asprintf("%s/%s", dir, AGENT_RECORD_FILE);
  cleanup_free char *json = NULL;
  if (cmn_file_read(path, RECORD_MAX_BYTES, &json, NULL, err) < 0)
    return -1;
  if (agent_record_from_json(json, r, err) < 0)
    return cmn_err_prefix(err, "%s", path);
  return 0;
}
