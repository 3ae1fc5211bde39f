/* snapstore.c: the store of frozen snapshots (see snapstore.h). */
#include "agent/snapstore.h"
#include "agent/snapshot.h"
#include "agent/validate.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAPSTORE_META "snapshot.json"

typedef struct snap_entry {
  agent_snap_meta meta;
  int holds;
  bool pending; /* being written: its name is reserved, it cannot be found */
  bool deleting;
} snap_entry;

struct agent_snapstore {
  char *root;
  pthread_mutex_t mu;
  snap_entry *e;
  size_t n;
};

void agent_snap_meta_free(agent_snap_meta *m)
{
  if (m == NULL)
    return;
  free(m->id);
  free(m->name);
  free(m->source_id);
  free(m->source_name);
  memset(m, 0, sizeof *m);
}

void agent_snap_meta_copy(agent_snap_meta *dst, const agent_snap_meta *src)
{
  *dst = *src;
  dst->id = cmn_strdup(src->id);
  dst->name = cmn_strdup(src->name);
  dst->source_id = cmn_strdup(src->source_id);
  dst->source_name = cmn_strdup(src->source_name);
}

void agent_snap_metas_free(agent_snap_meta *m, size_t n)
{
  for (size_t i = 0; i < n; i++)
    agent_snap_meta_free(&m[i]);
  free(m);
}

static char *snapstore_json(const agent_snap_meta *m)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", m->id);
  if (m->name != NULL && m->name[0] != '\0')
    cJSON_AddStringToObject(o, "name", m->name);
  cJSON_AddStringToObject(o, "source_id", m->source_id ? m->source_id : "");
  cJSON_AddStringToObject(o, "source_name", m->source_name ? m->source_name : "");
  cJSON_AddNumberToObject(o, "created_at_us", (double)m->created_at_us);
  cJSON_AddBoolToObject(o, "hidden", m->hidden);
  char *s = cJSON_Print(o);
  cJSON_Delete(o);
  if (s == NULL)
    abort();
  return s;
}

static const char *snapstore_str(const cJSON *o, const char *key)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int snapstore_parse(const char *text, agent_snap_meta *m, cmn_error *err)
{
  cJSON *o = cJSON_Parse(text);
  if (o == NULL)
    return cmn_err_set(err, CMN_DATA_LOSS, "not JSON");
  memset(m, 0, sizeof *m);
  m->id = cmn_strdup(snapstore_str(o, "id"));
  m->name = cmn_strdup(snapstore_str(o, "name"));
  m->source_id = cmn_strdup(snapstore_str(o, "source_id"));
  m->source_name = cmn_strdup(snapstore_str(o, "source_name"));
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "created_at_us");
  m->created_at_us = cJSON_IsNumber(t) ? (int64_t)t->valuedouble : 0;
  m->hidden = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "hidden"));
  cJSON_Delete(o);
  if (m->id == NULL) {
    agent_snap_meta_free(m);
    return cmn_err_set(err, CMN_DATA_LOSS, "no id");
  }
  return 0;
}

static snap_entry *snapstore_find_locked(agent_snapstore *st, const char *id_or_name,
                                         bool pending_too)
{
  for (size_t i = 0; i < st->n; i++) {
    snap_entry *e = &st->e[i];
    if ((e->pending && !pending_too) || e->deleting)
      continue;
    if (strcmp(e->meta.id, id_or_name) == 0 ||
        (e->meta.name != NULL && e->meta.name[0] != '\0' && strcmp(e->meta.name, id_or_name) == 0))
      return e;
  }
  return NULL;
}

static void snapstore_add_locked(agent_snapstore *st, const agent_snap_meta *m, bool pending)
{
  st->e = cmn_realloc(st->e, (st->n + 1) * sizeof *st->e);
  snap_entry *e = &st->e[st->n++];
  memset(e, 0, sizeof *e);
  agent_snap_meta_copy(&e->meta, m);
  e->pending = pending;
}

static void snapstore_drop_locked(agent_snapstore *st, const char *id)
{
  for (size_t i = 0; i < st->n; i++) {
    if (strcmp(st->e[i].meta.id, id) == 0) {
      agent_snap_meta_free(&st->e[i].meta);
      memmove(&st->e[i], &st->e[i + 1], (st->n - i - 1) * sizeof *st->e);
      st->n--;
      return;
    }
  }
}

agent_snapstore *agent_snapstore_open(const char *data_dir, cmn_error *err)
{
  cleanup_free char *root = cmn_asprintf("%s/snapshots", data_dir);
  if (cmn_mkdir_p(root, 0750, err) < 0)
    return NULL;
  agent_snapstore *st = cmn_calloc(1, sizeof *st);
  st->root = steal_ptr(root);
  pthread_mutex_init(&st->mu, NULL);
  cleanup_closedir DIR *d = opendir(st->root);
  if (d == NULL) {
    cmn_err_errno(err, CMN_INTERNAL, errno, "open %s", st->root);
    agent_snapstore_free(st);
    return NULL;
  }
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    cleanup_free char *dir = cmn_asprintf("%s/%s", st->root, de->d_name);
    cmn_error e2 = {0};
    if (strncmp(de->d_name, ".tmp-", 5) == 0 || strncmp(de->d_name, ".deleting-", 10) == 0) {
      /* A snapshot cut short while written, or a delete cut short. */
      if (cmn_rm_rf(dir, &e2) < 0)
        cmn_warn(de->d_name, "snapshots", "removing %s: %s", dir, e2.msg);
      else
        cmn_info(de->d_name, "snapshots", "removed %s, left by an interrupted operation", dir);
      continue;
    }
    cleanup_free char *marker = cmn_asprintf("%s/" SNAP_MARKER, dir);
    cleanup_free char *meta_path = cmn_asprintf("%s/" SNAPSTORE_META, dir);
    cleanup_free char *text = NULL;
    size_t len = 0;
    agent_snap_meta m;
    if (!cmn_is_regular_file(marker) || cmn_file_read(meta_path, 1 << 16, &text, &len, &e2) < 0 ||
        snapstore_parse(text, &m, &e2) < 0) {
      cmn_warn(de->d_name, "snapshots", "skipping %s: not a complete snapshot (%s)", dir,
               e2.msg[0] ? e2.msg : "no marker");
      continue;
    }
    if (strcmp(m.id, de->d_name) != 0) {
      cmn_warn(de->d_name, "snapshots", "skipping %s: it says it is %s", dir, m.id);
      agent_snap_meta_free(&m);
      continue;
    }
    snapstore_add_locked(st, &m, false);
    agent_snap_meta_free(&m);
  }
  return st;
}

void agent_snapstore_free(agent_snapstore *st)
{
  if (st == NULL)
    return;
  for (size_t i = 0; i < st->n; i++)
    agent_snap_meta_free(&st->e[i].meta);
  free(st->e);
  pthread_mutex_destroy(&st->mu);
  free(st->root);
  free(st);
}

static char *snapstore_new_id(void)
{
  unsigned char b[8];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
    abort();
  return cmn_asprintf(AGENT_SNAP_ID_PREFIX "%02x%02x%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                      b[3], b[4], b[5], b[6], b[7]);
}

int agent_snapstore_begin(agent_snapstore *st, const char *name, char **id, char **dir,
                          cmn_error *err)
{
  *id = NULL;
  *dir = NULL;
  bool hidden = name == NULL || name[0] == '\0';
  if (!hidden) {
    if (agent_validate_name("name", name, err) < 0)
      return cmn_err_field(err, "name");
    if (strncmp(name, AGENT_SNAP_ID_PREFIX, strlen(AGENT_SNAP_ID_PREFIX)) == 0) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT, "name must not start with \"%s\" (snapshot ids do)",
                  AGENT_SNAP_ID_PREFIX);
      return cmn_err_field(err, "name");
    }
  }
  cleanup_free char *new_id = snapstore_new_id();
  pthread_mutex_lock(&st->mu);
  if (!hidden && snapstore_find_locked(st, name, true) != NULL) {
    pthread_mutex_unlock(&st->mu);
    return cmn_err_set(err, CMN_ALREADY_EXISTS, "a snapshot named %s already exists", name);
  }
  agent_snap_meta m = {.id = new_id, .name = hidden ? NULL : (char *)name, .hidden = hidden};
  snapstore_add_locked(st, &m, true);
  pthread_mutex_unlock(&st->mu);
  cleanup_free char *tmp = cmn_asprintf("%s/.tmp-%s", st->root, new_id);
  cleanup_free char *vm = cmn_asprintf("%s/" AGENT_SNAP_VM_DIR, tmp);
  cleanup_free char *disks = cmn_asprintf("%s/" AGENT_SNAP_DISKS_DIR, tmp);
  if (cmn_mkdir_p(vm, 0750, err) < 0 || cmn_mkdir_p(disks, 0750, err) < 0) {
    agent_snapstore_abort(st, new_id, tmp);
    return -1;
  }
  *id = steal_ptr(new_id);
  *dir = steal_ptr(tmp);
  return 0;
}

void agent_snapstore_abort(agent_snapstore *st, const char *id, const char *dir)
{
  cmn_error e2 = {0};
  if (dir != NULL && cmn_rm_rf(dir, &e2) < 0)
    cmn_warn(id, "snapshots", "removing %s: %s", dir, e2.msg);
  pthread_mutex_lock(&st->mu);
  snapstore_drop_locked(st, id);
  pthread_mutex_unlock(&st->mu);
}

int agent_snapstore_commit(agent_snapstore *st, const char *id, const char *dir,
                           const agent_record *source, agent_snap_meta *out, cmn_error *err)
{
  agent_snap_meta m = {0};
  pthread_mutex_lock(&st->mu);
  snap_entry *e = snapstore_find_locked(st, id, true);
  if (e != NULL) {
    e->meta.source_id = cmn_strdup(source->view.id);
    e->meta.source_name = cmn_strdup(source->view.name);
    e->meta.created_at_us = cmn_wall_us();
    agent_snap_meta_copy(&m, &e->meta);
  }
  pthread_mutex_unlock(&st->mu);
  if (e == NULL)
    return cmn_err_set(err, CMN_INTERNAL, "snapshot %s is not being written", id);
  agent_record src = {0};
  agent_record_copy(&src, source);
  memset(&src.proc, 0, sizeof src.proc);
  src.view.vmm_pid = 0;
  cleanup_free char *json = snapstore_json(&m);
  cleanup_free char *meta_path = cmn_asprintf("%s/" SNAPSTORE_META, dir);
  cleanup_free char *final = cmn_asprintf("%s/%s", st->root, id);
  int rc = -1;
  if (agent_record_save(dir, &src, err) < 0 ||
      cmn_file_write_atomic(meta_path, json, strlen(json), 0640, err) < 0 ||
      snap_mark_complete(dir, VMM_SNAP_FULL, err) < 0 || cmn_rename_durable(dir, final, err) < 0) {
    agent_snapstore_abort(st, id, dir);
  } else {
    pthread_mutex_lock(&st->mu);
    e = snapstore_find_locked(st, id, true);
    if (e != NULL)
      e->pending = false;
    pthread_mutex_unlock(&st->mu);
    rc = 0;
  }
  agent_record_free(&src);
  if (rc == 0 && out != NULL)
    agent_snap_meta_copy(out, &m);
  agent_snap_meta_free(&m);
  return rc;
}

int agent_snapstore_hold(agent_snapstore *st, const char *id_or_name, agent_snap_meta *meta,
                         agent_record *source, char **dir, cmn_error *err)
{
  pthread_mutex_lock(&st->mu);
  snap_entry *e = snapstore_find_locked(st, id_or_name, false);
  if (e == NULL) {
    pthread_mutex_unlock(&st->mu);
    return cmn_err_set(err, CMN_NOT_FOUND, "snapshot %s not found", id_or_name);
  }
  e->holds++;
  agent_snap_meta m;
  agent_snap_meta_copy(&m, &e->meta);
  pthread_mutex_unlock(&st->mu);
  cleanup_free char *d = cmn_asprintf("%s/%s", st->root, m.id);
  if (source != NULL && agent_record_load(d, source, err) < 0) {
    agent_snapstore_release(st, m.id);
    agent_snap_meta_free(&m);
    if (err->code == CMN_NOT_FOUND)
      err->code = CMN_DATA_LOSS;
    return cmn_err_prefix(err, "snapshot %s", id_or_name);
  }
  if (dir != NULL)
    *dir = steal_ptr(d);
  if (meta != NULL)
    *meta = m;
  else
    agent_snap_meta_free(&m);
  return 0;
}

void agent_snapstore_release(agent_snapstore *st, const char *id)
{
  pthread_mutex_lock(&st->mu);
  snap_entry *e = snapstore_find_locked(st, id, true);
  if (e != NULL && e->holds > 0)
    e->holds--;
  pthread_mutex_unlock(&st->mu);
}

static int snapstore_cmp(const void *a, const void *b)
{
  const agent_snap_meta *x = a, *y = b;
  int c = strcmp(x->name ? x->name : "", y->name ? y->name : "");
  return c != 0 ? c : strcmp(x->id, y->id);
}

int agent_snapstore_list(agent_snapstore *st, agent_snap_meta **out, size_t *n)
{
  pthread_mutex_lock(&st->mu);
  agent_snap_meta *v = cmn_calloc(st->n + 1, sizeof *v);
  size_t k = 0;
  for (size_t i = 0; i < st->n; i++)
    if (!st->e[i].pending && !st->e[i].deleting)
      agent_snap_meta_copy(&v[k++], &st->e[i].meta);
  pthread_mutex_unlock(&st->mu);
  qsort(v, k, sizeof *v, snapstore_cmp);
  *out = v;
  *n = k;
  return 0;
}

static uint64_t snapstore_du(const char *path)
{
  struct stat st;
  if (lstat(path, &st) < 0)
    return 0;
  uint64_t total = (uint64_t)st.st_blocks * 512u;
  if (!S_ISDIR(st.st_mode))
    return total;
  cleanup_closedir DIR *d = opendir(path);
  if (d == NULL)
    return total;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    cleanup_free char *p = cmn_asprintf("%s/%s", path, de->d_name);
    total += snapstore_du(p);
  }
  return total;
}

uint64_t agent_snapstore_size(agent_snapstore *st, const char *id)
{
  cleanup_free char *d = cmn_asprintf("%s/%s", st->root, id);
  return snapstore_du(d);
}

int agent_snapstore_mark_deleting(agent_snapstore *st, const char *id, cmn_error *err)
{
  pthread_mutex_lock(&st->mu);
  snap_entry *e = snapstore_find_locked(st, id, false);
  int rc = 0;
  if (e == NULL)
    rc = cmn_err_set(err, CMN_NOT_FOUND, "snapshot %s not found", id);
  else if (e->holds > 0)
    rc = cmn_err_set(err, CMN_FAILED_PRECONDITION,
                     "snapshot %s is in use by a fork in progress; try again", id);
  else
    e->deleting = true;
  pthread_mutex_unlock(&st->mu);
  return rc;
}

int agent_snapstore_delete(agent_snapstore *st, const char *id, cmn_error *err)
{
  /* Renamed out of the way first: a crash mid-removal never leaves a half
   * snapshot that would be loaded again. */
  cleanup_free char *dir = cmn_asprintf("%s/%s", st->root, id);
  cleanup_free char *trash = cmn_asprintf("%s/.deleting-%s", st->root, id);
  if (cmn_rename_durable(dir, trash, err) < 0) {
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < st->n; i++)
      if (strcmp(st->e[i].meta.id, id) == 0)
        st->e[i].deleting = false;
    pthread_mutex_unlock(&st->mu);
    return -1;
  }
  cmn_error e2 = {0};
  if (cmn_rm_rf(trash, &e2) < 0)
    cmn_warn(id, "snapshots", "removing %s: %s", trash, e2.msg);
  pthread_mutex_lock(&st->mu);
  snapstore_drop_locked(st, id);
  pthread_mutex_unlock(&st->mu);
  return 0;
}
